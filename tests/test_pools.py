"""Tests for batch_style.pipeline.workers.pools: one single-worker loky pool per GPU (or CPU worker)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_tf_runtime import BUSY_CARD, fake_tensorflow

from batch_style.pipeline.state import run_folder
from batch_style.pipeline.units import WorkerConfig
from batch_style.pipeline.workers import worker
from batch_style.pipeline.workers.pools import WorkerDied, WorkerPools


@pytest.fixture
def pools():
    """pools(workers, config) → a WorkerPools, shut down (workers killed) after the test."""
    made = []

    def make(workers: int, config: WorkerConfig) -> WorkerPools:
        made.append(WorkerPools(workers, config))
        return made[-1]
    yield make
    for pool in made:
        pool.shutdown(wait=True, kill_workers=True)


def ask(pool: WorkerPools, fn, *args):
    return pool.submit(fn, *args).result(timeout=120)


def test_a_cpu_worker_leaves_cuda_alone_and_is_never_recycled(pools, monkeypatch):
    pytest.importorskip("psutil")  # what makes loky recycle workers that grew
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("BATCH_STYLE_GPUS", raising=False)
    pool = pools(1, WorkerConfig())
    info = ask(pool, worker.worker_info)
    assert info["cuda_visible_devices"] is None  # unset, not "": "" hides every GPU
    assert info["tf_loaded_before_pinning"] is False
    # loky would restart a worker whose memory grew by 300 MB: TensorFlow and VGG19 again.
    assert ask(pool, lambda: __import__(
        "joblib.externals.loky.process_executor", fromlist=["_"])._USE_PSUTIL) is False


def test_workers_are_pinned_by_their_environment(pools, monkeypatch):
    monkeypatch.setenv("BATCH_STYLE_GPUS", "2,MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f")
    pool = pools(2, WorkerConfig(gpu_ids=("2", "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f")))
    first = pool.submit(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    second = pool.submit(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert {first.result(timeout=120), second.result(timeout=120)} == {
        "2", "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"}
    assert ask(pools(1, WorkerConfig(device="cpu")),
               lambda: os.environ.get("CUDA_VISIBLE_DEVICES")) == "-1"


def test_a_dead_worker_is_its_units_alone_and_is_replaced(pools):
    pool = pools(2, WorkerConfig())
    busy = pool.submit(_wait_for_file, "")  # the other worker, mid-unit when its neighbour dies
    pid = ask(pool, os.getpid)
    with pytest.raises(WorkerDied, match="killed, or out of memory"):
        ask(pool, os.kill, pid, 9)
    assert not busy.done()
    assert ask(pool, os.getpid) != pid  # a fresh worker took the dead one's place
    busy.cancel()


def _wait_for_file(path: str) -> None:
    import time

    while not (path and Path(path).exists()):
        time.sleep(0.05)


def test_a_worker_that_dies_starting_tensorflow_says_why(pools, tmp_path):
    # A busy card: TensorFlow's start-up hits CUDA_ERROR_OUT_OF_MEMORY and aborts the process.
    # The unit's error quotes it, instead of a bare "its worker died".
    fake = str(fake_tensorflow(tmp_path, "os.abort()"))

    def start_tensorflow():
        import sys

        sys.path.insert(0, fake)
        from batch_style.engine.tf_runtime import import_tensorflow

        import_tensorflow()

    pool = pools(1, WorkerConfig())
    with pytest.raises(WorkerDied) as died:
        ask(pool, start_tensorflow)
    assert "while starting TensorFlow" in str(died.value) and BUSY_CARD in str(died.value)
    assert "start-up noise" not in str(died.value)


def test_a_worker_on_a_gpu_tensorflow_cannot_use_says_so(pools, media_dir, write_manifest,
                                                         monkeypatch):
    # Pinned to GPU 0, which TensorFlow in the worker does not see (none here; on a GPU machine,
    # a card that broke after the run's own check): the unit runs on the CPU, and says so.
    from batch_style.pipeline import plan
    from batch_style.pipeline.read.manifest import load

    monkeypatch.delenv("BATCH_STYLE_GPUS", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    manifest = load(write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                     "style": str(media_dir / "style.png")}]))
    (unit,) = plan.make_plan(manifest, chains=1).units
    config = WorkerConfig(tiny=True, gpu_ids=("0",),
                          state_dir=str(run_folder.state_dir(manifest.output)))
    result = ask(pools(1, config), worker.run_unit, unit, config)
    assert result.ok and result.gpu is None and result.cuda_visible_devices == "0"
    assert result.note.startswith("TensorFlow here cannot use GPU 0 (CUDA_VISIBLE_DEVICES=0): "
                                  "ran on the CPU")
