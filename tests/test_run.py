"""Tests for batch_style.orchestrator: the whole pipeline with the tiny random VGG19, resumes, workers."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import (
    CLIP_FPS,
    CLIP_FRAMES,
    SMALL,
    folder_manifest,
    group_alive,
    kill_group,
    ledger_records,
    temporaries,
    wait_for,
)
from PIL import Image

from batch_style import console
from batch_style import orchestrator as runner
from batch_style.atomic import TMP_MARK
from batch_style.errors import UserError
from batch_style.media import video
from batch_style.pipeline.state import ledger, run_lock
from batch_style.pipeline.state.run_folder import STATE_DIR
from batch_style.views import status

SERIAL = runner.RunOptions(workers=0, tiny=True)


def standard_jobs(media_dir: Path) -> list[dict]:
    """A pair with its progress GIF, a folder of three images, the 36-frame clip with sound."""
    style = str(media_dir / "style.png")
    return [
        {"name": "pair", "content": str(media_dir / "photo.png"), "style": style,
         "outputs": ["image", "progress_gif"]},
        {"name": "fold", "content": str(media_dir / "folder"), "style": style},
        {"name": "clip", "video": str(media_dir / "clip.mp4"), "style": style,
         "outputs": ["mp4", "gif", "frames"]},
    ]


def expected_outputs(out: Path) -> list[Path]:
    frames = [out / "clip" / "frames" / "clip" / f"{i:06d}.png" for i in range(CLIP_FRAMES)]
    return [out / "pair" / "photo.png", out / "pair" / "photo.progress.gif",
            *(out / "fold" / f"{n}.png" for n in "abc"),
            out / "clip" / "clip.mp4", out / "clip" / "clip.gif", *frames]


def write(path: Path, jobs: list[dict], output: Path, defaults=None) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "output": str(output),
                                    "defaults": defaults or SMALL, "jobs": jobs}))
    return path


def mtimes(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in expected_outputs(out)}


def done_records(out: Path, key: str | None = None) -> list[dict]:
    return [r for r in ledger_records(out) if r["status"] == "done" and key in (None, r["key"])]


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# -- one full run, shared by the checks of what it wrote -----------------------------------------
@pytest.fixture(scope="module")
def full_run(media_dir, tmp_path_factory):
    """The standard jobs run once in-process; returns (folder, summary). Tests that change
    anything work on a copy (`copy_of_full_run`)."""
    folder = tmp_path_factory.mktemp("full")
    manifest = write(folder / "manifest.yaml", standard_jobs(media_dir), folder / "out")
    summary = runner.run([manifest], SERIAL)
    return folder, summary


@pytest.fixture
def resumable(full_run, media_dir, tmp_path):
    """A copy of the full run's output folder (mtimes kept) and a manifest writing into it."""
    shutil.copytree(full_run[0] / "out", tmp_path / "out", copy_function=shutil.copy2)
    return write(tmp_path / "manifest.yaml", standard_jobs(media_dir), tmp_path / "out"), \
        tmp_path / "out"


def test_full_run_writes_every_output(full_run):
    folder, summary = full_run
    out = folder / "out"
    assert summary.exit_code == 0 and not summary.failed
    assert (summary.done, summary.skipped, summary.assembled) == (1 + 3 + CLIP_FRAMES, 0, 1)
    for path in expected_outputs(out):
        assert path.is_file(), path
    # longest side 48 px, aspect ratio kept
    assert read_rgb(out / "pair" / "photo.png").shape == (36, 48, 3)
    assert all(read_rgb(p).shape == (34, 48, 3) for p in (out / "fold").iterdir())
    # Nothing but the results in the job folders; state and log in OUTPUT/.
    assert sorted(p.name for p in (out / "fold").iterdir()) == ["a.png", "b.png", "c.png"]
    assert sorted(p.name for p in (out / "pair").iterdir()) == ["photo.png", "photo.progress.gif"]
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["clip.gif", "clip.mp4", "frames"]
    assert (out / "run.log").is_file() and (out / STATE_DIR / "ledger.jsonl").is_file()
    assert not temporaries(folder)


def test_full_run_video_outputs(full_run):
    out = full_run[0] / "out"
    info = video.ffprobe_like(out / "clip" / "clip.mp4")
    streams = {s["type"]: s for s in info["streams"]}
    assert info["frames"] == CLIP_FRAMES
    assert streams["video"]["fps"] == pytest.approx(CLIP_FPS)
    assert streams["video"]["size"] == (48, 36)
    assert "audio" in streams
    assert info["duration"] == pytest.approx(CLIP_FRAMES / CLIP_FPS, abs=0.05)
    with Image.open(out / "clip" / "clip.gif") as gif:
        assert gif.n_frames == CLIP_FRAMES
        assert gif.size == (48, 36)
    with Image.open(out / "pair" / "photo.progress.gif") as gif:
        # start, a snapshot every step (snapshot_every 1), the result
        assert gif.n_frames >= 2


def test_full_run_ledger_and_plan(full_run):
    out = full_run[0] / "out"
    records = ledger_records(out)
    assert all(r["status"] == "done" for r in records)
    assert len({r["key"] for r in records}) == len(records) == 1 + 3 + CLIP_FRAMES + 1
    frames = [r for r in records if r["key"].startswith("clip/clip/")]
    # Warm start: frame 0 has the full budget, every later frame starts from the one before.
    assert [r["steps"] for r in frames] == [SMALL["steps"]] + [SMALL["frame_steps"]] * 35
    plan = json.loads((out / STATE_DIR / "plan.json").read_text())
    assert [u["key"] for u in plan["units"]][:4] == ["pair/photo", "fold/a", "fold/b", "fold/c"]
    st = status.read_status(out)
    # status counts pictures and frames; the video's assembly (its own record) apart
    assert (st.done, st.failed, st.pending, st.running_pid) == (len(records) - 1, 0, 0, None)


# -- resume -----------------------------------------------------------------------------------------
def test_second_run_does_nothing(resumable):
    manifest, out = resumable
    before = mtimes(out)
    summary = runner.run([manifest], SERIAL)
    assert (summary.done, summary.skipped, summary.assembled, summary.exit_code) == \
        (0, 1 + 3 + CLIP_FRAMES, 0, 0)
    assert mtimes(out) == before


def test_changed_settings_redo_only_that_job(resumable, media_dir):
    manifest, out = resumable
    before = mtimes(out)
    jobs = standard_jobs(media_dir)
    jobs[1]["settings"] = {"steps": 2}
    write(manifest, jobs, out)
    summary = runner.run([manifest], SERIAL)
    assert (summary.done, summary.skipped, summary.assembled) == (3, 1 + CLIP_FRAMES, 0)
    after = mtimes(out)
    assert {p for p in before if before[p] != after[p]} == {out / "fold" / f"{n}.png"
                                                            for n in "abc"}
    assert [r["steps"] for r in done_records(out, "fold/b")] == [SMALL["steps"], 2]


def test_deleted_output_redoes_only_that_unit(resumable):
    manifest, out = resumable
    (out / "fold" / "b.png").unlink()
    (out / "pair" / "photo.progress.gif").unlink()  # one of a unit's outputs is enough
    summary = runner.run([manifest], SERIAL)
    assert (summary.done, summary.assembled) == (2, 0)
    assert [r["key"] for r in ledger_records(out)[-2:]] == ["pair/photo", "fold/b"]
    assert (out / "fold" / "b.png").is_file() and (out / "pair" / "photo.progress.gif").is_file()


def test_redone_frame_warm_starts_and_video_is_reassembled(resumable):
    manifest, out = resumable
    frame = out / "clip" / "frames" / "clip" / "000005.png"
    original = read_rgb(frame)
    mp4 = out / "clip" / "clip.mp4"
    mp4_time = mp4.stat().st_mtime_ns
    frame.unlink()
    summary = runner.run([manifest], SERIAL)
    assert (summary.done, summary.assembled) == (1, 1)
    record = done_records(out, "clip/clip/000005")[-1]
    # It started from frame 4's output, with the per-frame budget, as in the first run: same image.
    assert record["steps"] == SMALL["frame_steps"]
    assert np.array_equal(read_rgb(frame), original)
    assert mp4.stat().st_mtime_ns != mp4_time
    assert runner.run([manifest], SERIAL).assembled == 0


def test_frame_redone_by_a_run_killed_before_assembly_makes_video_stale(resumable):
    # A run redid frame 7 (its output was lost) and was killed before assembling: the ledger has
    # the new frame record, the MP4 and GIF still show the old frame. The next run must see it.
    manifest, out = resumable
    frame = out / "clip" / "frames" / "clip" / "000007.png"
    Image.new("RGB", (48, 36), (255, 0, 0)).save(frame)
    old = done_records(out, "clip/clip/000007")[-1]
    ledger.Ledger.for_output(out).append({k: v for k, v in old.items() if k != "time"})
    summary = runner.run([manifest], SERIAL)
    assert (summary.done, summary.assembled) == (0, 1)
    with Image.open(out / "clip" / "clip.gif") as gif:
        gif.seek(7)
        red, green, blue = np.asarray(gif.convert("RGB"), np.float32).mean(axis=(0, 1))
    assert red > 200 and green < 60 and blue < 60


def test_corrupt_ledger_lines_are_ignored_and_their_units_redone(resumable):
    manifest, out = resumable
    path = ledger.ledger_path(out)
    lines = path.read_bytes().split(b"\n")
    b = next(i for i, line in enumerate(lines) if b'"key":"fold/b"' in line)
    lines[b] = b'{"key":"fold/b","status":"do\xff\xfe garbage'
    assert lines[-1] == b"" and b"#video" in lines[-2]
    data = b"\n".join(lines[:-1])  # the video's record is the last line: cut it short
    path.write_bytes(data[: len(data) - 20])
    summary = runner.run([manifest], SERIAL)
    assert (summary.done, summary.assembled, summary.exit_code) == (1, 1, 0)
    assert [r["key"] for r in ledger_records(out)[-2:]] == ["fold/b", "clip/clip#video"]
    assert "corrupt ledger lines" in (out / "run.log").read_text()


def test_video_window_change_reextracts_and_drops_stale_frames(resumable, media_dir):
    manifest, out = resumable
    jobs = standard_jobs(media_dir)
    jobs[2]["fps"] = 10
    write(manifest, jobs, out)
    summary = runner.run([manifest], SERIAL)
    assert (summary.done, summary.assembled) == (CLIP_FRAMES // 3, 1)
    work = out / STATE_DIR / "work" / "clip" / "clip"
    assert len(list(work.iterdir())) == 1  # the 36-frame extraction is gone
    assert len(list((out / "clip" / "frames" / "clip").iterdir())) == CLIP_FRAMES // 3
    assert video.ffprobe_like(out / "clip" / "clip.mp4")["frames"] == CLIP_FRAMES // 3


# -- failures -------------------------------------------------------------------------------------
def test_undecodable_input_fails_that_unit_only(media_dir, write_manifest):
    style = str(media_dir / "style.png")
    manifest = write_manifest([
        {"name": "good", "content": str(media_dir / "photo.png"), "style": style},
        {"name": "bad", "content": [str(media_dir / "broken.png"),
                                    str(media_dir / "folder" / "a.png")], "style": style},
    ])
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 1
    assert summary.done == 2
    ((key, reason),) = summary.failed
    assert key == "bad/broken" and "truncated or corrupt image" in reason
    out = manifest.parent / "out"
    assert not (out / "bad" / "broken.png").exists()
    (record,) = [r for r in ledger_records(out) if r["status"] == "failed"]
    assert record["error_kind"] == "input"
    st = status.read_status(out)
    assert (st.done, st.failed, st.pending) == (2, 1, 0)
    bad = next(j for j in st.jobs if j.name == "bad")
    assert bad.failures == [("bad/broken", record["error"])]
    assert "failed bad/broken" in console.format_status(st)


def test_unwritable_output_fails_the_unit_and_the_run_goes_on(media_dir, write_manifest,
                                                              monkeypatch):
    from batch_style import atomic

    manifest = folder_manifest(write_manifest, media_dir)
    original = atomic._fsync_file

    def fsync(path):
        if ".b.png" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return original(path)

    monkeypatch.setattr(atomic, "_fsync_file", fsync)
    summary = runner.run([manifest], SERIAL)
    assert summary.done == 2 and summary.exit_code == 1 and not summary.stopped
    ((key, reason),) = summary.failed
    assert key == "fold/b" and reason.startswith("Permission denied: ")
    (record,) = [r for r in ledger_records(manifest.parent / "out") if r["status"] == "failed"]
    assert record["error_kind"] == "io"


def test_video_frames_get_the_init_image_and_the_temporal_term(media_dir, write_manifest):
    manifest = write_manifest([{"name": "clip", "video": str(media_dir / "clip.mp4"),
                                "style": str(media_dir / "style.png"), "end": 0.1,
                                "outputs": ["frames"],
                                "settings": {"init": str(media_dir / "folder" / "a.png"),
                                             "temporal_weight": 100.0, "frame_steps": 3}}])
    summary = runner.run([manifest], SERIAL)  # an init path once failed every frame 0
    assert summary.exit_code == 0 and summary.done == 3
    first, *rest = ledger_records(manifest.parent / "out")
    assert first["losses"]["temporal"] == 0.0  # nothing before the first frame
    # Later frames start from the one before and are held near it: the term is 0 at the start
    # and positive once the image has moved (losses are those of the last step's image).
    assert all(r["losses"]["temporal"] > 0.0 for r in rest)


def test_run_from_another_thread(media_dir, write_manifest):
    import threading

    manifest = write_manifest(standard_jobs(media_dir)[:1])
    result = {}
    thread = threading.Thread(target=lambda: result.update(s=runner.run([manifest], SERIAL)))
    thread.start()
    thread.join(120)
    assert result["s"].exit_code == 0 and result["s"].done == 1


# -- workers: serial is the oracle; GPU pinning ------------------------------------------------------
def parallel_jobs(media_dir: Path) -> list[dict]:
    jobs = standard_jobs(media_dir)
    jobs[2]["end"] = 0.2  # 6 frames
    return jobs


# A MIG device as drivers before 470 name it: the "/" once broke the GPU claim files' names.
MIG = "MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0"


@pytest.fixture(scope="module")
def serial_and_parallel(media_dir, tmp_path_factory):
    """The same manifest run in-process and by two loky workers pinned to simulated GPUs: GPU 0
    and a MIG device."""
    folder = tmp_path_factory.mktemp("parallel")
    serial = write(folder / "serial.yaml", parallel_jobs(media_dir), folder / "serial")
    parallel = write(folder / "parallel.yaml", parallel_jobs(media_dir), folder / "parallel")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BATCH_STYLE_GPUS", f"0,{MIG}")
        mp.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
        parallel_summary = runner.run([parallel], dataclasses.replace(SERIAL, workers=2))
    serial_summary = runner.run([serial], SERIAL)
    return folder, serial_summary, parallel_summary


def test_parallel_workers_match_serial(serial_and_parallel):
    folder, serial, parallel = serial_and_parallel
    assert serial.exit_code == parallel.exit_code == 0
    assert serial.done == parallel.done == 1 + 3 + 6
    names = sorted(p.relative_to(folder / "serial") for p in (folder / "serial").rglob("*.png")
                   if STATE_DIR not in p.parts)
    assert len(names) == 1 + 3 + 6
    for name in names:
        a, b = read_rgb(folder / "serial" / name), read_rgb(folder / "parallel" / name)
        # Same code, same seed, same float32 CPU kernels: equal to within one level of 255.
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, name
    info = video.ffprobe_like(folder / "parallel" / "clip" / "clip.mp4")
    assert info["frames"] == 6


def test_each_worker_is_pinned_to_its_own_gpu_before_tensorflow(serial_and_parallel):
    folder = serial_and_parallel[0]
    records = [r for r in ledger_records(folder / "parallel") if "worker" in r]
    gpu_of = {r["worker"]: r["gpu"] for r in records}
    assert len(gpu_of) == 2, "both workers ran units"
    assert sorted(gpu_of.values()) == ["0", MIG]  # each its own
    for r in records:
        assert gpu_of[r["worker"]] == r["gpu"]  # a worker keeps its GPU
        assert r["cuda_visible_devices"] == r["gpu"]
        assert r["tf_loaded_before_pinning"] is False
    serial_records = [r for r in ledger_records(folder / "serial") if "worker" in r]
    assert all(r["gpu"] is None and r["tf_loaded_before_pinning"] is None
               for r in serial_records)


def test_more_workers_than_gpus_is_a_usage_error(media_dir, write_manifest, monkeypatch):
    monkeypatch.setenv("BATCH_STYLE_GPUS", "0")
    manifest = write_manifest(standard_jobs(media_dir)[:1])
    with pytest.raises(UserError, match="only 1 GPUs"):
        runner.run([manifest], dataclasses.replace(SERIAL, workers=2))
    assert not (manifest.parent / "out").exists()


# -- a worker that dies: retries, bounded -----------------------------------------------------------
class FlakyPool(runner.InProcessExecutor):
    """In-process executor whose units for some keys are 'lost' (as if their worker died)."""

    def __init__(self, lose: dict[str, int], interrupt_after: int | None, submitted: list):
        self.lose, self.interrupt_after, self.submitted = lose, interrupt_after, submitted

    def submit(self, fn, /, unit, config):
        self.submitted.append(unit.key)
        if self.interrupt_after is not None and len(self.submitted) > self.interrupt_after:
            raise KeyboardInterrupt
        if self.lose.get(unit.key, 0) > 0:
            self.lose[unit.key] -= 1
            future = cf.Future()
            future.set_exception(BrokenProcessPool("a worker died"))
            return future
        return super().submit(fn, unit, config)


@pytest.fixture
def flaky(monkeypatch):
    """flaky(lose={key: times}, interrupt_after=None) → the list of submitted keys; and how many
    pools were made in flaky.pools."""
    submitted: list[str] = []
    settings = {}
    pools = []

    def make_executor(workers, config):
        pools.append(1)
        return FlakyPool(settings["lose"], settings["interrupt_after"], submitted)

    monkeypatch.setattr(runner, "make_executor", make_executor)

    def configure(lose=None, interrupt_after=None):
        settings.update(lose=dict(lose or {}), interrupt_after=interrupt_after)
        submitted.clear()
        pools.clear()
        return submitted
    configure.pools = pools
    return configure


def test_lost_unit_is_retried_in_a_fresh_pool(flaky, media_dir, write_manifest, monkeypatch):
    manifest = folder_manifest(write_manifest, media_dir)
    out = manifest.parent / "out"
    submitted = flaky(lose={"fold/b": 1})
    # The lost worker was writing when it died: its temporary must not outlive the run.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dispatch = runner._dispatch

    def dispatch_beside_a_dead_writer(*args, **kwargs):
        out.mkdir(parents=True, exist_ok=True)
        (out / f".b.png{TMP_MARK}{int(dead.stdout)}-0badf00d.png").write_bytes(b"partial")
        return dispatch(*args, **kwargs)

    monkeypatch.setattr(runner, "_dispatch", dispatch_beside_a_dead_writer)
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 0 and summary.done == 3
    assert submitted == ["fold/a", "fold/b", "fold/b", "fold/c"]
    assert len(flaky.pools) == 2
    assert done_records(out, "fold/b")[0]["attempts"] == 2
    assert not temporaries(out)


def test_unit_that_always_loses_its_worker_fails_after_max_attempts(flaky, media_dir,
                                                                    write_manifest):
    manifest = folder_manifest(write_manifest, media_dir)
    submitted = flaky(lose={"fold/b": 99})
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 1 and summary.done == 2
    assert submitted.count("fold/b") == runner.MAX_ATTEMPTS
    (record,) = [r for r in ledger_records(manifest.parent / "out") if r["status"] == "failed"]
    assert (record["key"], record["error_kind"], record["attempts"]) == \
        ("fold/b", "crash", runner.MAX_ATTEMPTS)
    assert "died 3 times" in record["error"]


def test_a_unit_that_kills_its_worker_fails_alone(media_dir, write_manifest, monkeypatch):
    # Four GPUs, one worker each, four units at once; fold/b kills its worker every time (a host
    # OOM, a CUDA abort). Only fold/b fails; the units beside it finish at their first attempt.
    original = runner.run_unit

    def run_unit(unit, config):
        if unit.key == "fold/b":
            os.kill(os.getpid(), signal.SIGKILL)
        return original(unit, config)

    monkeypatch.setattr(runner, "run_unit", run_unit)  # pickled by value for the workers
    monkeypatch.setenv("BATCH_STYLE_GPUS", "0,1,2,3")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    manifest = write_manifest(small_jobs(media_dir)[:2])  # a pair and a folder of three
    summary = runner.run([manifest], dataclasses.replace(SERIAL, workers=None))
    assert [key for key, _ in summary.failed] == ["fold/b"] and summary.done == 3
    records = ledger_records(manifest.parent / "out")
    (failed,) = [r for r in records if r["status"] == "failed"]
    assert (failed["error_kind"], failed["attempts"]) == ("crash", runner.MAX_ATTEMPTS)
    assert f"died {runner.MAX_ATTEMPTS} times" in failed["error"]
    done = {r["key"]: r for r in records if r["status"] == "done"}
    assert sorted(done) == ["fold/a", "fold/c", "pair/photo"]
    assert {r["attempts"] for r in done.values()} == {1}
    for r in done.values():
        assert r["gpu"] in {"0", "1", "2", "3"} and r["cuda_visible_devices"] == r["gpu"]


def test_attempts_do_not_leak_into_the_next_run(flaky, media_dir, write_manifest):
    manifest = folder_manifest(write_manifest, media_dir)
    # Run 1: b loses its worker twice, then Ctrl-C.
    flaky(lose={"fold/b": 2}, interrupt_after=3)
    summary = runner.run([manifest], SERIAL)
    assert summary.interrupted and summary.exit_code == 130
    # Run 2: b loses its worker twice again; with a fresh count its third attempt is allowed.
    submitted = flaky(lose={"fold/b": 2})
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 0
    assert submitted.count("fold/b") == 3
    assert done_records(manifest.parent / "out", "fold/b")[-1]["attempts"] == 3


def test_pool_broken_at_submit_is_retried(flaky, media_dir, write_manifest, monkeypatch):
    manifest = folder_manifest(write_manifest, media_dir)
    submitted = flaky()
    calls = []
    original = FlakyPool.submit

    def submit(self, fn, /, unit, config):
        calls.append(unit.key)
        if len(calls) == 2:
            raise BrokenProcessPool("broken since the last wait")
        return original(self, fn, unit, config)

    monkeypatch.setattr(FlakyPool, "submit", submit)
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 0 and summary.done == 3
    assert calls == ["fold/a", "fold/b", "fold/b", "fold/c"]
    assert submitted == ["fold/a", "fold/b", "fold/c"]


def test_a_bug_in_a_unit_fails_it_and_the_run_goes_on(media_dir, write_manifest, monkeypatch):
    manifest = folder_manifest(write_manifest, media_dir)

    def run_unit(unit, config):
        if unit.key == "fold/b":
            raise RuntimeError("a bug")
        return original(unit, config)

    original = runner.run_unit
    monkeypatch.setattr(runner, "run_unit", run_unit)
    summary = runner.run([manifest], SERIAL)
    assert summary.done == 2 and summary.exit_code == 1
    assert summary.failed == [("fold/b", "internal error: RuntimeError: a bug")]
    assert "Traceback" in (manifest.parent / "out" / "run.log").read_text()


def test_failed_frame_lets_the_next_start_afresh(media_dir, write_manifest, monkeypatch):
    style = str(media_dir / "style.png")
    manifest = write_manifest([{"name": "clip", "video": str(media_dir / "clip.mp4"),
                                "style": style, "end": 0.1, "outputs": ["frames"]}])
    seen = {}

    def run_unit(unit, config):
        seen[unit.key] = unit
        if unit.key.endswith("000001"):
            return runner.UnitResult(key=unit.key, ok=False, error="boom", error_kind="input")
        return original(unit, config)

    original = runner.run_unit
    monkeypatch.setattr(runner, "run_unit", run_unit)
    summary = runner.run([manifest], SERIAL)
    assert summary.done == 2 and [k for k, _ in summary.failed] == ["clip/clip/000001"]
    after = seen["clip/clip/000002"]
    assert after.previous_output is None and after.steps is None
    assert done_records(manifest.parent / "out", "clip/clip/000002")[0]["steps"] == SMALL["steps"]


# -- full disk ------------------------------------------------------------------------------------
def enospc(path):
    return OSError(28, "No space left on device", str(path))


def small_jobs(media_dir: Path) -> list[dict]:
    """A pair, a folder of three images, the clip's first 3 frames."""
    jobs = standard_jobs(media_dir)
    jobs[0]["outputs"] = ["image"]
    jobs[2]["end"] = 0.1
    return jobs


@pytest.mark.parametrize("fault", ["rename", "partial-write", "assembly"])
def test_disk_full_stops_the_run_cleanly(media_dir, write_manifest, monkeypatch, fault):
    from batch_style import atomic

    manifest = write_manifest(small_jobs(media_dir))
    out = manifest.parent / "out"
    target = "clip.mp4" if fault == "assembly" else "b.png"
    if fault == "partial-write":
        original = Image.Image.save

        def save(self, fp, *args, **kwargs):
            if f".{target}{atomic.TMP_MARK}" in str(fp):
                Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n half")
                raise enospc(fp)
            return original(self, fp, *args, **kwargs)

        monkeypatch.setattr(Image.Image, "save", save)
    else:
        original = atomic._fsync_file

        def fsync(path):
            if f".{target}{atomic.TMP_MARK}" in str(path):
                raise enospc(path)  # the whole file was written; flushing it fails
            return original(path)

        monkeypatch.setattr(atomic, "_fsync_file", fsync)
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 1 and summary.stopped and "disk full" in summary.stopped
    # the unit's output, or (the orchestrator's own writing) the folder it was writing into
    assert str(out / ("clip" if fault == "assembly" else "fold/b.png")) in summary.stopped
    assert not list(out.rglob(target)) and not temporaries(out)
    assert (out / "pair" / "photo.png").is_file() and (out / "fold" / "a.png").is_file()
    if fault == "assembly":
        assert summary.done == 1 + 3 + 3 and not summary.failed
    else:
        assert summary.done == 2 and not (out / "fold" / "c.png").exists()
        assert [k for k, _ in summary.failed] == ["fold/b"]
    assert "stopping the run: disk full" in (out / "run.log").read_text()
    monkeypatch.undo()
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 0 and summary.assembled == 1
    assert summary.skipped == (1 + 3 + 3 if fault == "assembly" else 2)


# -- two runs on one output folder --------------------------------------------------------------------
def test_second_run_on_the_same_folder_is_refused_until_the_first_dies(media_dir, write_manifest,
                                                                      cli):
    manifest = write_manifest(standard_jobs(media_dir))
    out = manifest.parent / "out"
    first = cli.spawn("run", manifest, "--tiny", "--workers", "1")
    pid = wait_for(lambda: run_lock.running_pid(out), 30, "the first run to take the lock")
    assert pid == first.pid
    with pytest.raises(UserError, match=f"another batch-style run \\(pid {first.pid} "):
        runner.run([manifest], SERIAL)
    kill_group(first)
    first.wait(timeout=30)
    wait_for(lambda: not group_alive(first.pid), 30, "the first run's workers to go")
    with run_lock.RunLock(out):
        pass
    assert run_lock.running_pid(out) is None


def test_an_output_folder_without_flock_still_runs(media_dir, write_manifest, monkeypatch,
                                                   caplog):
    import errno
    import fcntl

    def flock(fd, operation):  # an NFS mount without its lock daemon
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", flock)
    manifest = write_manifest(small_jobs(media_dir)[:1])
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 0 and summary.done == 1
    assert "does not support flock" in caplog.text


# -- Ctrl-C and SIGTERM ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_keeps_finished_work(media_dir, write_manifest, cli, how):
    jobs = standard_jobs(media_dir)
    jobs[2]["end"] = 0.4  # 12 frames: still work left after the first unit, less to finish
    manifest = write_manifest(jobs)
    out = manifest.parent / "out"
    process = cli.spawn("run", manifest, "--tiny", "--workers", "1")
    wait_for(lambda: done_records(out) if ledger.ledger_path(out).exists() else None, 60,
             "the first finished unit")
    if how == "ctrl-c":
        kill_group(process, signal.SIGINT)  # the terminal sends it to the whole group
    else:
        os.kill(process.pid, signal.SIGTERM)  # `kill PID`, or a scheduler's stop
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted; run the same command to resume" in stderr
    assert "Traceback" not in stderr
    wait_for(lambda: not group_alive(process.pid), 30, "the workers to stop")
    finished = done_records(out)
    assert 0 < len(finished) < 1 + 3 + 12
    for record in finished:
        for path in record["outputs"]:
            Image.open(path).load()
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 0 and summary.skipped == len(finished)
    assert not temporaries(out)


# What a GPU out of memory raises: the exception type, and its message.
OUT_OF_MEMORY = {
    "resource exhausted": ("ResourceExhaustedError", "OOM when allocating tensor with shape"),
    "dst tensor": ("InternalError", "Dst tensor is not initialized."),
    "cudnn workspace": ("UnknownError", "Failed to get convolution algorithm. This is probably "
                                        "because cuDNN failed to initialize, so try looking to "
                                        "see if a warning log message was printed above."),
    "cuda": ("InternalError", "Failed copying input tensor: CUDA_ERROR_OUT_OF_MEMORY: out of "
                              "memory"),
}


def raise_out_of_memory(kind: str):
    tf = pytest.importorskip("tensorflow")
    name, message = OUT_OF_MEMORY[kind]
    raise getattr(tf.errors, name)(None, None, message)


@pytest.mark.parametrize("kind", OUT_OF_MEMORY)
def test_a_size_too_big_for_the_gpu_finishes_on_the_cpu_with_the_cpus_choices(
        media_dir, write_manifest, monkeypatch, fake_gpu, kind):
    """Out of memory on the GPU at once and again in smaller tiles: the CPU finishes it."""
    from batch_style.engine import policy, stylizer

    tf = pytest.importorskip("tensorflow")
    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])
    original, tries = stylizer.Stylizer.stylize, []

    def stylize(self, content, styles, settings, **kwargs):  # the GPU runs out of memory
        tries.append((tf.constant(0.0).device, policy.effective_precision(settings)))
        if len(tries) <= 2:
            raise_out_of_memory(kind)
        return original(self, content, styles, settings, **kwargs)

    monkeypatch.setattr(stylizer.Stylizer, "stylize", stylize)
    summary = runner.run([manifest], SERIAL)
    assert summary.done == 1 and not summary.failed
    # On the GPU: bfloat16 for the bulk (Ampere); on its CPU (no native bfloat16): float32.
    assert tries[0][1] == tries[1][1] == "mixed"
    assert "CPU:0" in tries[2][0] and tries[2][1] == "float32"
    record = done_records(manifest.parent / "out")[0]
    assert record["gpu"] == "0"
    assert "did not fit GPU 0's memory: ran on the CPU" in record["note"]
    # what it really ran with: the CPU's choices, on the CPU
    assert (record["device"], record["precision"]) == ("cpu", "float32")
    assert "ran on the CPU" in (manifest.parent / "out" / "run.log").read_text()


def test_a_size_too_big_for_the_gpu_at_once_is_made_in_tiles_on_the_gpu(
        media_dir, write_manifest, monkeypatch, fake_gpu):
    """Out of memory once: the unit is tried again on the GPU with half the memory budget (so in
    tiles where the picture does not fit), not sent to the CPU."""
    from batch_style.engine import stylizer
    from batch_style.pipeline.workers import memory

    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])
    monkeypatch.setattr(memory, "budget_bytes", lambda settings, gpu, workers: 8 << 30)
    original, budgets = stylizer.Stylizer.stylize, []

    def stylize(self, content, styles, settings, **kwargs):
        budgets.append(kwargs["memory"])
        if len(budgets) == 1:
            raise_out_of_memory("resource exhausted")
        return original(self, content, styles, settings, **kwargs)

    monkeypatch.setattr(stylizer.Stylizer, "stylize", stylize)
    summary = runner.run([manifest], SERIAL)
    assert summary.done == 1 and budgets == [8 << 30, 4 << 30]
    record = done_records(manifest.parent / "out")[0]
    assert record["gpu"] == "0" and "made in smaller tiles" in record["note"]


@pytest.mark.parametrize("kind", OUT_OF_MEMORY)
def test_out_of_memory_on_the_cpu_fails_the_unit_with_a_clear_message(
        media_dir, write_manifest, monkeypatch, kind):
    from batch_style.engine import stylizer

    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])

    def stylize(self, *args, **kwargs):
        raise_out_of_memory(kind)

    monkeypatch.setattr(stylizer.Stylizer, "stylize", stylize)
    summary = runner.run([manifest], SERIAL)
    assert summary.done == 0
    assert summary.failed == [("pair/photo", "out of memory (try a smaller size or fewer workers)")]
    (record,) = ledger_records(manifest.parent / "out")
    assert record["error_kind"] == "oom" and record["gpu"] is None


def test_in_process_on_the_cpu_leaves_the_gpus_alone(media_dir, write_manifest, precisions,
                                                      fake_gpu):
    # --workers 0 --device cpu: TensorFlow is told not to use the GPU before it sets it up (no
    # memory growth, no context), and the unit makes the CPU's choices.
    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])
    summary = runner.run([manifest], dataclasses.replace(SERIAL, device="cpu"))
    assert summary.done == 1
    assert fake_gpu["set_visible_devices"] == [([], "GPU")]
    assert fake_gpu["set_memory_growth"] == []
    assert precisions and set(precisions) == {"float32"}
    assert done_records(manifest.parent / "out")[0]["gpu"] is None


def test_gpu_memory_growth_after_tensorflow_started_elsewhere(media_dir, write_manifest,
                                                              monkeypatch, fake_gpu):
    # TensorFlow imported and its GPUs set up by someone else (a library caller, an earlier
    # test): memory growth can no longer be set, and the units still run.
    tf = pytest.importorskip("tensorflow")

    def set_memory_growth(device, on):
        raise RuntimeError("Physical devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", set_memory_growth)
    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])
    summary = runner.run([manifest], SERIAL)
    assert summary.done == 1 and not summary.failed
    assert done_records(manifest.parent / "out")[0]["gpu"] == "0"


def test_a_run_with_style_masks_protect_and_a_mask_video(media_dir, tmp_path):
    """Two styles split left/right on a photo with a protected patch, and a clip whose style
    follows a mask video: every output is written, the plan and the report show the masks."""
    from batch_style.media import encode

    w, h = 64, 48
    left = np.zeros((h, w), np.uint8)
    left[:, : w // 2] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(255 - left).save(tmp_path / "right.png")
    Image.fromarray(left[:, ::-1][:, :, None].repeat(3, 2)).save(tmp_path / "protect.png")
    encode.write_mp4((np.full((h, w, 3), i / CLIP_FRAMES, np.float32)
                      for i in range(CLIP_FRAMES)), tmp_path / "fade.mp4", CLIP_FPS)
    style = str(media_dir / "style.png")
    jobs = [{"name": "two", "content": str(media_dir / "photo.png"),
             "style": [{"image": style, "mask": str(tmp_path / "left.png")},
                       {"image": str(media_dir / "folder/a.png"),
                        "mask": str(tmp_path / "right.png")}],
             "protect": str(tmp_path / "protect.png"), "settings": {"pooling": "avg"}},
            {"name": "clip", "video": str(media_dir / "clip.mp4"), "end": 0.2,
             "style": {"image": style, "mask": str(tmp_path / "fade.mp4")},
             "outputs": ["mp4"]}]
    manifest = write(tmp_path / "masks.yaml", jobs, tmp_path / "out")
    summary = runner.run([manifest], SERIAL)
    assert summary.exit_code == 0, summary
    out = tmp_path / "out"
    assert (out / "two/photo.png").is_file() and (out / "clip/clip.mp4").is_file()
    plan = json.loads((out / STATE_DIR / "plan.json").read_text())
    two = next(u for u in plan["units"] if u["job"] == "two")
    assert two["masks"] == [str(tmp_path / "left.png"), str(tmp_path / "right.png")]
    assert two["protect"] == str(tmp_path / "protect.png")
    frame = next(u for u in plan["units"] if u["job"] == "clip")
    assert Path(frame["masks"][0]).parent.name.startswith("mask-")
    report = (out / "report.html").read_text()
    assert report.count("its mask") >= 2 and "protected" in report
    assert "(mask left.png)" in report
