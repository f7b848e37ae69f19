"""Worker processes on this machine: one single-worker loky pool per GPU (or per CPU worker)."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import shutil
import tempfile
import threading
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path

from batch_style import interrupts
from batch_style.engine import tf_runtime
from batch_style.pipeline.state import run_folder
from batch_style.pipeline.units import WorkerConfig
from batch_style.pipeline.workers import gpus
from batch_style.pipeline.workers.worker import init_worker

log = logging.getLogger("batch_style")

LAST_WORDS = 3  # lines of a dead worker's start-up stderr quoted in its unit's error


class WorkerDied(BrokenProcessPool):
    """The worker process running this unit died (killed, out of host memory, a CUDA abort).

    Each worker runs one unit at a time in a pool of its own, so the death is this unit's alone:
    the orchestrator charges it, and only it, an attempt. (A BrokenProcessPool, so code that
    knows only pools still sees a lost unit.)
    """


@dataclass
class _Slot:
    """One worker: its GPU (None: the CPU), its environment, its pool and the unit it runs."""

    gpu: str | None
    env: dict[str, str]
    startup_log: Path
    pool: object | None = None          # a loky ProcessPoolExecutor of one process
    running: cf.Future | None = None    # the future of the unit it runs (done: free)
    broken: bool = False                # its worker died: the next unit gets a fresh one


def _scratch(config: WorkerConfig) -> Path:
    """The workers' scratch folder: their start-up logs, and their TMPDIR, since TensorFlow's
    autograph leaves a source file there for every function it traces unless the process exits
    cleanly, which a pool's worker does not. Under the run's state folder, where the next run
    clears what a killed one left (run_folder.sweep_temporaries); removed at shutdown."""
    if config.state_dir is None:  # a pool outside a run (tests, benchmarks)
        return Path(tempfile.mkdtemp(prefix="batch_style-workers-"))
    folder = Path(config.state_dir) / run_folder.SCRATCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class WorkerPools(cf.Executor):
    """`workers` worker processes, each in a loky pool of one whose environment pins it to its GPU
    before any module loads (CUDA_VISIBLE_DEVICES; no lock files to claim a GPU with, so nothing
    to go wrong on NFS or with MIG names). A dead worker is replaced when its slot gets its next
    unit; the others go on. At most one unit per worker is submitted at a time (the orchestrator
    keeps `workers` in flight); submit raises RuntimeError beyond that.
    """

    def __init__(self, workers: int, config: WorkerConfig):
        if workers < 1:
            raise ValueError("WorkerPools needs at least one worker")
        if config.gpu_ids and workers > len(config.gpu_ids):
            raise ValueError(f"{workers} workers for {len(config.gpu_ids)} GPUs")
        self._config = config
        self._folder = _scratch(config)
        ids = list(config.gpu_ids[:workers]) if config.gpu_ids else [None] * workers
        self._slots = [_Slot(gpu, gpus.worker_env(gpu, config.device),
                             self._folder / f"worker-{i}.startup.log")
                       for i, gpu in enumerate(ids)]
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            slot = next((s for s in self._slots if s.running is None or s.running.done()), None)
            if slot is None:
                raise RuntimeError("every worker is busy: submit one unit per worker at a time")
            outer = cf.Future()
            slot.running = outer
        try:
            # Started before SIGINT is blocked: the stdlib's resource tracker (which loky starts)
            # unblocks it as its own start ends (Python 3.11).
            resource_tracker.ensure_running()
            with interrupts.kept_from_children():  # a worker starts here: Ctrl-C is ours alone
                try:
                    inner = self._pool(slot).submit(fn, *args, **kwargs)
                except BrokenProcessPool:  # it died while idle (or while starting): a fresh one
                    slot.broken = True
                    inner = self._pool(slot).submit(fn, *args, **kwargs)
        except BaseException:
            slot.running = None
            raise
        inner.add_done_callback(lambda done: self._hand_over(slot, done, outer))
        return outer

    def _pool(self, slot: _Slot):
        from joblib.externals.loky import ProcessPoolExecutor

        if slot.pool is not None and not slot.broken:
            return slot.pool
        if slot.pool is not None:
            slot.pool.shutdown(wait=True, kill_workers=True)
        # joblib's loky: spawned (not forked) processes, so TensorFlow state never leaks in; a
        # worker that dies is reported as TerminatedWorkerError instead of hanging the pool.
        slot.pool = ProcessPoolExecutor(
            max_workers=1, initializer=init_worker, initargs=(self._config, slot.gpu, os.getpid()),
            env={**slot.env, tf_runtime.STARTUP_LOG: str(slot.startup_log),
                 "TMPDIR": str(self._folder)})
        slot.broken = False
        return slot.pool

    def _hand_over(self, slot: _Slot, inner: cf.Future, outer: cf.Future) -> None:
        """The worker's outcome to the orchestrator's future (in loky's manager thread)."""
        try:
            if inner.cancelled():
                outer.cancel()
                return
            error = inner.exception()
            if isinstance(error, BrokenProcessPool):
                slot.broken = True
                outer.set_exception(WorkerDied(self._why(slot, error)))
            elif error is not None:
                outer.set_exception(error)
            else:
                outer.set_result(inner.result())
        except BaseException as e:  # never leave the orchestrator waiting on a future
            if not outer.done():
                outer.set_exception(e)

    @staticmethod
    def _why(slot: _Slot, error: BaseException) -> str:
        """Killed, or out of memory; with what it said last if it died starting TensorFlow."""
        why = "killed, or out of memory"
        try:
            text = slot.startup_log.read_text(encoding="utf-8", errors="replace")
            slot.startup_log.unlink()
        except OSError:
            text = ""
        # loky's workers dump their Python stack on a fatal signal (faulthandler): that is where
        # the process was, not what went wrong, which TensorFlow said before it.
        words = tf_runtime.said(text.split("Fatal Python error:")[0])
        if words:
            why = "while starting TensorFlow; it said: " + " / ".join(words[-LAST_WORDS:])
        log.debug("worker on %s died: %s (%s)", slot.gpu or "the CPU", why, error)
        return why

    def shutdown(self, wait=True, *, cancel_futures=False, kill_workers=False):
        with self._lock:
            self._closed = True
        for slot in self._slots:
            if slot.pool is not None:
                slot.pool.shutdown(wait=wait, kill_workers=kill_workers)
        shutil.rmtree(self._folder, ignore_errors=True)
