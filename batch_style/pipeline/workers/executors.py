"""Back ends: where units run — worker processes on this machine, or a Dask cluster."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from batch_style.errors import UserError
from batch_style.pipeline.units import UnitResult, WorkerConfig
from batch_style.pipeline.workers import gpus
from batch_style.pipeline.workers.pools import WorkerPools

log = logging.getLogger("batch_style")

RESOURCE = "GPU"          # the Dask worker resource a unit holds: one GPU runs one unit at a time
CONNECT_TIMEOUT_S = 30    # to reach a Dask scheduler
WAIT_FOR_WORKERS_S = 60   # for a first worker offering the resource, when the cluster has none yet
INSTALL = "pip install 'batch_style[dask]'  (Dask's `distributed`)"


@dataclass(frozen=True)
class BackendConfig(WorkerConfig):
    """A WorkerConfig that also says where the units run.

    orchestrator._dispatch hands `make_executor` only (workers, config); carrying the back end in the config
    keeps that one code path for every back end. Workers ignore these fields.
    """

    backend: str = "local"          # a key of BACKENDS
    scheduler: str | None = None    # dask: the scheduler's address; None: a cluster started here
    max_attempts: int = 3           # dask, cluster started here: runs of a unit whose worker died


# -- local: worker processes on this machine ------------------------------------------------------
class InProcessExecutor(cf.Executor):
    """`--workers 0`: units run in this process, one after another, on the same code path."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the caller through the future, like a pool
            if isinstance(e, KeyboardInterrupt):
                raise
            future.set_exception(e)
        return future

    def shutdown(self, wait=True, *, cancel_futures=False, kill_workers=False):
        pass


def local_executor(workers: int, config: WorkerConfig) -> cf.Executor:
    """`workers` worker processes, one per GPU (or on the CPU), each in a pool of its own
    (pools.WorkerPools); 0: this process."""
    if workers == 0:
        return InProcessExecutor()
    return WorkerPools(workers, config)


# -- dask: a cluster ------------------------------------------------------------------------------
class ClusterLost(BrokenProcessPool):
    """The connection to the Dask scheduler was lost: like a broken pool, the orchestrator
    connects again and retries the units that were in flight."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise UserError(f"the dask back end needs Dask: {INSTALL}", field="--backend") from None
    return distributed


def _connect(address):
    distributed = _distributed()
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise UserError(f"cannot reach the Dask scheduler at {address}: {e}",
                        field="--scheduler") from None


def _slots_on(dask_scheduler) -> int:
    return int(sum(ws.resources.get(RESOURCE, 0) for ws in dask_scheduler.workers.values()))


def cluster_slots(address: str, workers: int | None) -> int:
    """Units to keep in flight on the cluster at `address`: `workers` when given, else its workers'
    GPU resources when the run starts (waiting up to WAIT_FOR_WORKERS_S for a first one)."""
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: the dask back end runs units on its workers; give "
                        f"1 or more units in flight, or leave it out", field="--workers")
    with _connect(address) as client:
        deadline = time.monotonic() + WAIT_FOR_WORKERS_S
        # Counted on the scheduler: it knows every worker's resources, whatever the version.
        while (slots := client.run_on_scheduler(_slots_on)) == 0:
            if time.monotonic() > deadline:
                raise UserError(f"no Dask worker at {address} offers a {RESOURCE} resource; start "
                                f"one per GPU with `dask worker {address} --nworkers 1 "
                                f"--nthreads 1 --resources {RESOURCE}=1`", field="--scheduler")
            time.sleep(0.5)
    return workers if workers is not None else slots


def _local_cluster(workers: int, config: BackendConfig):
    """A scheduler and `workers` worker processes on this machine, one per GPU (each sees only its
    own, like `CUDA_VISIBLE_DEVICES=N dask worker …` on a cluster), or on the CPU."""
    distributed = _distributed()

    def env(i: int) -> dict[str, str]:
        return gpus.worker_env(config.gpu_ids[i] if config.gpu_ids else None, config.device)

    worker_spec = {i: {"cls": distributed.Nanny,
                       "options": {"nthreads": 1, "resources": {RESOURCE: 1}, "env": env(i),
                                   "host": "127.0.0.1",
                                   # No memory limit: the default share of RAM per thread is
                                   # small, and a worker over it would be restarted mid-unit.
                                   "memory_limit": 0,
                                   # Workers warn when TensorFlow's import blocks their event
                                   # loop; the run's own log says what people need.
                                   "silence_logs": logging.ERROR,
                                   "preload": [__name__]}}  # dask_setup below
                   for i in range(workers)}
    scheduler = {"cls": distributed.Scheduler,
                 "options": {"host": "127.0.0.1", "dashboard": False,
                             # its HTTP server (health checks) on any free port, not 8787
                             "dashboard_address": "127.0.0.1:0",
                             # Dask counts the runs after the first.
                             "allowed_failures": max(config.max_attempts - 1, 0)}}
    return distributed.SpecCluster(scheduler=scheduler, workers=worker_spec,
                                   silence_logs=logging.ERROR, name="batch-style")


def dask_setup(worker) -> None:
    """Preload of the worker processes of a cluster started here (Dask calls it in their main
    thread): Ctrl-C reaches the whole process group, and the orchestrator alone handles it and
    stops them, as init_worker does for local workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _on_worker(fn: Callable, unit, config) -> tuple[str, UnitResult]:
    """The Dask task: run the unit; say where it ran, so the next frame of its chain goes there."""
    from distributed import get_worker

    return get_worker().address, fn(unit, config)


class DaskExecutor(cf.Executor):
    """Units as Dask tasks holding one GPU resource each, behind concurrent.futures futures.

    The orchestrator waits with cf.wait and records each result once, when its future completes,
    whatever Dask did to get it: a task whose worker died is run again on another worker, and
    its future completes once. A task given up by Dask (its workers died `allowed-failures` + 1
    times) completes as a crash result, like a unit whose local worker always died.
    """

    def __init__(self, workers: int, config: BackendConfig):
        self._cluster = _local_cluster(workers, config) if config.scheduler is None else None
        try:
            self._client = _connect(config.scheduler or self._cluster)
        except BaseException:
            if self._cluster is not None:
                self._cluster.close()
            raise
        self._pending: dict[object, cf.Future] = {}   # Dask future → what _dispatch waits on
        self._ran_on: dict[str, str] = {}            # unit key → Dask worker that ran it
        self._closing = False

    @property
    def scheduler_address(self) -> str:
        return self._client.scheduler.address

    def submit(self, fn, /, unit, config):
        if self._closing:
            raise RuntimeError("cannot submit after shutdown")
        # A video's chained frames stay on the worker of the frame before (its stylizer and style
        # targets are warm there); Dask may run one elsewhere when that worker is gone.
        where = self._ran_on.pop(unit.previous, None) if unit.previous else None
        placement = {"workers": [where], "allow_other_workers": True} if where else {}
        try:
            task = self._client.submit(_on_worker, fn, unit, config, resources={RESOURCE: 1},
                                       key=f"stylize-{uuid.uuid4().hex}", pure=False,
                                       **placement)
        except (OSError, TimeoutError) as e:  # the scheduler went away between waits
            raise ClusterLost(f"lost the Dask scheduler: {e}") from e
        future = cf.Future()
        self._pending[task] = future
        task.add_done_callback(lambda task: self._complete(unit, task))
        return future

    def _complete(self, unit, task) -> None:
        """Hand the Dask task's outcome to the orchestrator's future (in Dask's callback thread)."""
        from distributed import KilledWorker

        future = self._pending.pop(task, None)
        if future is None or future.done():
            return
        try:
            if task.status == "finished":
                where, result = task.result()
                self._ran_on[unit.key] = where
                future.set_result(result)
            elif task.status == "cancelled":
                if self._closing:
                    future.cancel()
                    future.set_running_or_notify_cancel()
                else:  # not by us: the client lost its scheduler
                    future.set_exception(ClusterLost("the Dask scheduler was lost"))
            elif isinstance(error := task.exception(), KilledWorker):
                # Dask gave up on it: a failure of the unit, data like every other failure.
                future.set_result(UnitResult(
                    key=unit.key, ok=False, error_kind="crash",
                    error=f"its Dask worker died {getattr(error, 'allowed_failures', 0) + 1} "
                          f"times while running it (killed, or out of memory)"))
            else:
                future.set_exception(error)
        except BaseException as e:  # never leave the orchestrator waiting on a future
            if not future.done():
                future.set_exception(e)

    def shutdown(self, wait=True, *, cancel_futures=False, kill_workers=False):
        """Cancel what has not finished (a unit already running on a worker finishes there, not
        recorded: the next run does it again) and disconnect; stop the cluster if we started it."""
        if self._closing:
            return
        self._closing = True
        tasks = list(self._pending)
        if tasks:
            self._client.cancel(tasks)
        for future in list(self._pending.values()):
            if future.cancel():
                future.set_running_or_notify_cancel()
        self._pending.clear()
        self._client.close()
        if self._cluster is not None:
            # A worker process with TensorFlow loaded can take seconds to exit; its nanny then
            # kills it with a warning that is no news here (the work is recorded or cancelled).
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                self._cluster.close()
            finally:
                nanny.setLevel(level)


# -- the registry: settings.BACKENDS names them -------------------------------------------------
EXECUTORS: dict[str, Callable[[int, WorkerConfig], cf.Executor]] = {
    "local": local_executor,
    "dask": DaskExecutor,
}


def make_executor(workers: int, config: WorkerConfig) -> cf.Executor:
    return EXECUTORS[getattr(config, "backend", "local")](workers, config)
