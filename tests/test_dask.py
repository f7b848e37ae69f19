"""Tests for pipeline/workers/executors.py's Dask back end: a real cluster of workers on this machine."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SMALL, ledger_records, temporaries, wait_for
from PIL import Image

from batch_style import orchestrator as runner
from batch_style.errors import UserError
from batch_style.media import video
from batch_style.pipeline import plan as planning
from batch_style.pipeline.read.manifest import load
from batch_style.pipeline.state import run_folder
from batch_style.pipeline.workers import executors
from batch_style.settings import choose_backend

distributed = pytest.importorskip("distributed")

SERIAL = runner.RunOptions(workers=0, tiny=True)


def jobs(media_dir: Path, clip_end: float) -> list[dict]:
    """A pair with its progress GIF, a folder of three images, the clip's first frames."""
    style = str(media_dir / "style.png")
    return [
        {"name": "pair", "content": str(media_dir / "photo.png"), "style": style,
         "outputs": ["image", "progress_gif"]},
        {"name": "fold", "content": str(media_dir / "folder"), "style": style},
        {"name": "clip", "video": str(media_dir / "clip.mp4"), "style": style, "end": clip_end,
         "outputs": ["mp4", "gif", "frames"]},
    ]


def write(path: Path, jobs: list[dict], **top) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "output": str(path.parent / path.stem), **top,
                                    "defaults": SMALL, "jobs": jobs}, sort_keys=False))
    return path


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def check_complete(out: Path, frames: int) -> list[dict]:
    """Every unit done exactly once (one done record, however often Dask ran it), every output
    decodes, the MP4 and GIF have every frame, no temporary is left; returns the records."""
    records = ledger_records(out)
    assert all(r["status"] == "done" for r in records), [r for r in records if r["status"] != "done"]
    counts = Counter(r["key"] for r in records)
    assert set(counts.values()) == {1}, [k for k, n in counts.items() if n > 1]
    assert len(counts) == 1 + 3 + frames + 1  # and the video's assembly
    for record in records:
        for path in map(Path, record["outputs"]):
            if path.suffix == ".mp4":
                assert video.ffprobe_like(path)["frames"] == frames
            else:
                with Image.open(path) as im:
                    im.load()
                    if path.suffix == ".gif" and path.parent.name == "clip":
                        assert im.n_frames == frames
    assert not temporaries(out)
    return records


@pytest.fixture(scope="module")
def cluster():
    """Two Dask worker processes, one thread and one GPU resource each: what README's
    `dask worker … --nworkers 1 --nthreads 1 --resources GPU=1` starts on a GPU machine."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  resources={executors.RESOURCE: 1}, dashboard_address=None,
                                  silence_logs=logging.ERROR,
                                  env={"TF_CPP_MIN_LOG_LEVEL": "3"}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield cluster, client


def worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def test_dask_matches_local_and_keeps_state_per_worker(cluster, media_dir, tmp_path):
    cluster, client = cluster

    def count_model_loads():
        # In each Dask worker: forget any state of an earlier test, count VGG19 loads from now.
        from batch_style.engine import weights
        from batch_style.pipeline.workers import worker

        worker._STATE = None
        original = getattr(weights, "_uncounted_load", weights.load_feature_model)
        weights._uncounted_load, weights.loads = original, 0

        def counted(*args, **kwargs):
            weights.loads += 1
            return original(*args, **kwargs)
        weights.load_feature_model = counted

    def state_of_worker():
        from batch_style.engine import weights
        from batch_style.pipeline.workers import worker

        state = worker._STATE
        return {"loads": weights.loads,
                # (style, size, layers) computed, whatever the precisions they were computed in
                "style_targets": sum(len({key[:-1] for key in s._style_cache})
                                     for s in state.painter._stylizers.values())
                if state else 0}

    client.run(count_model_loads)
    frames = 6  # the clip's first 0.2 s
    serial = write(tmp_path / "serial.yaml", jobs(media_dir, 0.2))
    dask = write(tmp_path / "dask.yaml", jobs(media_dir, 0.2))
    options = runner.RunOptions(tiny=True, scheduler=cluster.scheduler_address)
    summary = runner.run([dask], options)
    assert summary.exit_code == 0 and summary.done == 1 + 3 + frames and summary.assembled == 1
    assert runner.run([serial], SERIAL).exit_code == 0

    # Serial is the oracle. Same code, same seed, same float32 CPU kernels in both processes:
    # equal to within one level of 255 (bit-identical on this machine so far).
    out_serial, out_dask = tmp_path / "serial", tmp_path / "dask"
    names = sorted(p.relative_to(out_serial) for p in out_serial.rglob("*.png")
                   if run_folder.STATE_DIR not in p.parts)
    assert len(names) == 1 + 3 + frames
    for name in names:
        assert np.abs(read_rgb(out_serial / name) - read_rgb(out_dask / name)).max() <= 1, name

    records = check_complete(out_dask, frames)
    # Units ran in the Dask workers (records name host:pid), both of them, each loading VGG19
    # and computing the style's targets once for all its units.
    pids = worker_pids(client)
    ran_on = {r["key"]: int(r["worker"].rsplit(":", 1)[1]) for r in records if "worker" in r}
    assert set(ran_on.values()) == set(pids.values())
    states = client.run(state_of_worker)
    units_of = Counter(ran_on.values())
    assert max(units_of.values()) >= 2
    for address, pid in pids.items():
        assert states[address] == {"loads": 1, "style_targets": 1}, (address, units_of[pid])
    # A frame that starts from the frame before runs where that one ran.
    for unit in planning.make_plan(load(dask)).units:
        if unit.previous is not None:
            assert ran_on[unit.key] == ran_on[unit.previous], unit.key


def test_killed_worker_loses_no_unit_and_records_none_twice(cluster, media_dir, tmp_path):
    cluster, client = cluster
    frames = 12  # the clip's first 0.4 s
    manifest = write(tmp_path / "dask.yaml", jobs(media_dir, 0.4))
    out = tmp_path / "dask"
    result = {}

    def run():
        result["summary"] = runner.run([manifest], runner.RunOptions(
            tiny=True, scheduler=cluster.scheduler_address))

    def lost_tasks(dask_scheduler):
        # How many times a worker died while it held one of our tasks (Dask's own count, by key
        # prefix; backends names each task stylize-HEX).
        prefix = dask_scheduler.task_prefixes.get("stylize")
        return prefix.suspicious if prefix is not None else 0

    lost_before = client.run_on_scheduler(lost_tasks)
    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: ledger_records(out) if (out / run_folder.STATE_DIR / "ledger.jsonl")
                 .exists() else None, 60, "the first finished unit")
        # SIGKILL a worker that has a unit: Dask runs that unit again on a live worker.
        busy = wait_for(lambda: next((a for a, keys in client.processing().items() if keys),
                                     None), 30, "a busy worker")
        os.kill(worker_pids(client)[busy], signal.SIGKILL)
        done_at_kill = len(ledger_records(out))
    finally:
        thread.join(120)
    assert not thread.is_alive()
    summary = result["summary"]
    assert done_at_kill < 1 + 3 + frames, "the kill came after the last unit"
    assert client.run_on_scheduler(lost_tasks) > lost_before, "the kill hit no unit"
    assert summary.exit_code == 0 and summary.done == 1 + 3 + frames and not summary.failed
    check_complete(out, frames)
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, 60,
             "the nanny to restart the killed worker")


def test_cluster_started_here_and_a_unit_that_kills_its_workers(media_dir, tmp_path,
                                                               monkeypatch):
    # `backend: dask` in the manifest and no scheduler: run() starts a Dask cluster of --workers
    # processes here. A unit whose worker dies each time fails after max_attempts runs; the run
    # goes on, like a unit whose local worker always dies.
    original = runner.run_unit

    def run_unit(unit, config):
        if unit.key == "fold/b":
            os._exit(1)
        return original(unit, config)

    monkeypatch.setattr(runner, "run_unit", run_unit)  # pickled by value for the workers
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    manifest = write(tmp_path / "here.yaml", jobs(media_dir, 0.1)[1:2], backend="dask")
    summary = runner.run([manifest], runner.RunOptions(tiny=True, workers=1, max_attempts=2))
    assert summary.exit_code == 1 and summary.done == 2
    assert [k for k, _ in summary.failed] == ["fold/b"]
    records = {r["key"]: r for r in ledger_records(tmp_path / "here")}
    assert (records["fold/b"]["status"], records["fold/b"]["error_kind"]) == ("failed", "crash")
    assert "died 2 times" in records["fold/b"]["error"]
    assert records["fold/a"]["status"] == records["fold/c"]["status"] == "done"
    assert int(records["fold/a"]["worker"].rsplit(":", 1)[1]) != os.getpid()


def test_dask_workers_record_their_gpu_fall_back_to_the_cpu_and_honour_device_cpu(
        cluster, media_dir, tmp_path, monkeypatch):
    # Workers started as README says, `CUDA_VISIBLE_DEVICES=3 dask worker …` (GPU 3 simulated:
    # TensorFlow here has none). They set themselves up like local workers: the GPU goes into
    # the records, and a unit too big for it finishes on the CPU instead of failing as `oom`.
    cluster, client = cluster

    def environment(**values):
        def apply():
            for name, value in values.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return apply

    original = runner.run_unit

    def run_unit(unit, config):  # pair/photo does not fit the GPU's memory
        from batch_style.engine import stylizer

        real, calls = stylizer.Stylizer.stylize, []

        def stylize(self, *args, **kwargs):
            calls.append(1)
            if len(calls) <= 2 and unit.key == "pair/photo":  # at once, then in tiles
                import tensorflow as tf

                raise tf.errors.InternalError(None, None, "Dst tensor is not initialized.")
            return real(self, *args, **kwargs)

        stylizer.Stylizer.stylize = stylize
        try:
            return original(unit, config)
        finally:
            stylizer.Stylizer.stylize = real

    monkeypatch.setattr(runner, "run_unit", run_unit)  # pickled by value for the workers
    client.run(environment(CUDA_VISIBLE_DEVICES="3", BATCH_STYLE_GPUS="3"))
    try:
        manifest = write(tmp_path / "gpu.yaml", jobs(media_dir, 0.1)[:2])
        summary = runner.run([manifest], runner.RunOptions(
            tiny=True, scheduler=cluster.scheduler_address))
        assert summary.exit_code == 0 and summary.done == 1 + 3
        records = {r["key"]: r for r in ledger_records(tmp_path / "gpu")}
        assert {r["gpu"] for r in records.values()} == {"3"}
        assert "did not fit GPU 3's memory: ran on the CPU" in records["pair/photo"]["note"]
        # --device cpu with a scheduler: the same workers keep off their GPU.
        manifest = write(tmp_path / "cpu.yaml", jobs(media_dir, 0.1)[1:2])
        summary = runner.run([manifest], runner.RunOptions(
            tiny=True, scheduler=cluster.scheduler_address, device="cpu"))
        assert summary.exit_code == 0 and summary.done == 3
        assert {r["gpu"] for r in ledger_records(tmp_path / "cpu")} == {None}
    finally:
        client.run(environment(CUDA_VISIBLE_DEVICES=None, BATCH_STYLE_GPUS=None))


# -- usage ------------------------------------------------------------------------------------------
def test_backend_choice(media_dir, tmp_path, cli):
    assert choose_backend(None, None) == ("local", None)
    assert choose_backend(None, "tcp://h:8786") == ("dask", "tcp://h:8786")
    # The command line's backend and scheduler replace the manifest's.
    assert choose_backend("local", None, "dask", "tcp://h:8786") == ("local", None)
    assert choose_backend(None, None, "dask", "tcp://h:8786") == ("dask", "tcp://h:8786")
    manifest = write(tmp_path / "m.yaml", jobs(media_dir, 0.1)[:1])
    result = cli.run("run", manifest, "--tiny", "--backend", "local", "--scheduler", "tcp://h:1")
    assert result.returncode == 2
    assert "--scheduler: a scheduler address (command line) is for the dask back end" in \
        result.stderr
    bad = write(tmp_path / "bad.yaml", jobs(media_dir, 0.1)[:1], backend="spark",
                scheduler="tcp://h:1")
    result = cli.run("validate", bad)
    assert result.returncode == 2
    assert "bad.yaml:3: backend: unknown back end 'spark'; expected one of local, dask" in \
        result.stderr


def test_unreachable_scheduler_is_a_usage_error(media_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1)
    manifest = write(tmp_path / "m.yaml", jobs(media_dir, 0.1)[:1])
    with pytest.raises(UserError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        runner.run([manifest], runner.RunOptions(tiny=True, scheduler="tcp://127.0.0.1:9"))
    assert not (tmp_path / "m").exists()  # before anything is written

