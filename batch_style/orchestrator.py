"""Orchestrator: plan, skip what is done, dispatch units to workers, record, assemble."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_style import interrupts
from batch_style.engine import autotune
from batch_style.errors import UserError
from batch_style.media.encode import FfmpegError
from batch_style.media.flow import FlowFiles
from batch_style.pipeline import assemble
from batch_style.pipeline import plan as planning
from batch_style.pipeline.jobs import Manifest
from batch_style.pipeline.plan import Plan, VideoPlan
from batch_style.pipeline.read.manifest import load_all
from batch_style.pipeline.state import events, ledger, run_folder, run_lock, safe_files
from batch_style.pipeline.state.progress import plan_line
from batch_style.pipeline.units import DISK_FULL, Unit, UnitResult, WorkerConfig
from batch_style.pipeline.watch import LiveReport
from batch_style.pipeline.workers import dispatch, executors
from batch_style.pipeline.workers.gpus import require_usable, visible_gpus
from batch_style.pipeline.workers.worker import run_unit
from batch_style.settings import choose_backend
from batch_style.text import EscapingFormatter
from batch_style.views import report

log = logging.getLogger("batch_style")

MAX_ATTEMPTS = 3        # a unit whose worker died is retried in a fresh worker up to this often

Latest = dict[str, dict]  # the ledger's last record per key (ledger.Ledger.latest)


@dataclass(frozen=True)
class RunOptions:
    workers: int | None = None      # worker processes; None: one per GPU, else 1; 0: in-process
    device: str = "auto"            # auto | cpu | gpu
    force: bool = False             # redo finished units too
    weights: str | None = None      # explicit VGG19 weights file
    tiny: bool = False              # tiny random VGG19 (tests)
    max_attempts: int = MAX_ATTEMPTS
    backend: str | None = None      # local | dask; None: the manifest's (else local)
    scheduler: str | None = None    # Dask scheduler, tcp://HOST:8786 (implies dask); dask without
                                    # one: a Dask cluster of `workers` processes on this machine
    settings: Mapping[str, Any] = field(default_factory=dict)  # checked, over every job's own


@dataclass
class RunSummary:
    done: int = 0                   # finished in this run
    skipped: int = 0                # already finished before
    failed: list[tuple[str, str]] = field(default_factory=list)   # (key, reason)
    assembled: int = 0
    interrupted: bool = False
    stopped: str | None = None      # why the run stopped early (disk full)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed or self.stopped else 0


# -- devices ----------------------------------------------------------------------------------
def worker_setup(options: RunOptions, state_dir: Path,
                 manifest: Manifest | None = None) -> tuple[int, WorkerConfig]:
    """(units in flight at once, the workers' config) for a manifest's run; usage errors here."""
    backend, scheduler = choose_backend(options.backend, options.scheduler,
                                         *((manifest.backend, manifest.scheduler) if manifest
                                           else ()))
    common = dict(weights=options.weights, tiny=options.tiny, device=options.device,
                  state_dir=str(state_dir), backend=backend, scheduler=scheduler,
                  max_attempts=options.max_attempts)
    if scheduler is not None:
        # A cluster's workers bring their own GPUs (one each, CUDA_VISIBLE_DEVICES set where they
        # are started); this machine's do not count.
        return executors.cluster_slots(scheduler, options.workers), \
            executors.BackendConfig(**common)
    gpus = () if options.device == "cpu" else visible_gpus()
    if options.device == "gpu" and not gpus:
        raise UserError("--device gpu: no GPU is visible (nvidia-smi finds none, or "
                        "CUDA_VISIBLE_DEVICES hides them)", field="device")
    require_usable(gpus)  # TensorFlow can compute on them (checked in a subprocess)
    workers = options.workers if options.workers is not None else max(len(gpus), 1)
    if gpus and workers > len(gpus):
        raise UserError(f"--workers {workers}: only {len(gpus)} GPUs, and a worker needs one "
                        f"(use --device cpu for CPU workers)", field="workers")
    if backend == "dask" and workers < 1:
        raise UserError(f"--workers {workers}: a Dask cluster on this machine needs 1 or more "
                        f"worker processes", field="workers")
    return workers, executors.BackendConfig(gpu_ids=gpus, workers=max(workers, 1), **common)


# -- executors --------------------------------------------------------------------------------
InProcessExecutor = executors.InProcessExecutor  # `--workers 0`


def make_executor(workers: int, config: WorkerConfig) -> cf.Executor:
    """The executor of the run's back end (executors.EXECUTORS): loky processes, this process, or a
    Dask cluster, all behind concurrent.futures."""
    return executors.make_executor(workers, config)


def unit_done(unit: Unit, book: ledger.Ledger, latest: Latest | None = None) -> bool:
    """run_folder.state() of a unit is done. Pass `latest` (book.latest()) when asking for many
    units: it is the ledger read once."""
    record = (book.latest() if latest is None else latest).get(unit.key)
    outputs = [unit.output] + ([unit.progress_gif] if unit.progress_gif else [])
    return run_folder.state(record, unit.hash, outputs) == "done"


def video_done(vp: VideoPlan, book: ledger.Ledger, latest: Latest | None = None) -> bool:
    """run_folder.state() of a video is done: assembled from its frames as they are now."""
    latest = book.latest() if latest is None else latest
    frames = run_folder.frames_fingerprint([u.key for u in vp.units], latest)
    return run_folder.state(latest.get(vp.key), vp.hash, vp.outputs.values(), frames) == "done"


def run(manifest_paths: list[Path], options: RunOptions,
        on_event: Callable[[str, dict], None] | None = None) -> RunSummary:
    """Run every job of the manifests. Raises UserError for invalid manifests or usage."""
    manifests = load_all(manifest_paths, overrides=options.settings)
    summary = RunSummary()
    # Signal handlers can only be set from the main thread; a library caller in another thread
    # keeps SIGTERM's default.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, _sigterm_as_interrupt) \
        if in_main_thread else None
    try:
        for manifest in manifests:
            _run_manifest(manifest, options, summary, on_event or (lambda kind, data: None))
            if summary.interrupted or summary.stopped:
                break
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
    return summary


def _sigterm_as_interrupt(signum, frame):
    # An overnight run stopped by `kill` (or a scheduler's SIGTERM) ends like Ctrl-C: cleanly.
    raise KeyboardInterrupt


def _run_manifest(manifest: Manifest, options: RunOptions, summary: RunSummary, emit) -> None:
    out = manifest.output
    state = run_folder.state_dir(out)
    workers, config = worker_setup(options, state, manifest)  # usage errors before anything is written
    jobs = [job.name for job in manifest.jobs]
    # Validation checked the run's paths; they are checked again before anything is written:
    # they may have changed since.
    with _checked(out, jobs), run_lock.RunLock(out), _log_to(run_folder.log_path(out)), \
            events.recording(out, emit, summary, manifest.path) as emit:
        live = LiveReport(out, lambda view: report.write_report(out, view))  # report.html, live
        emit = live.tap(emit)
        try:
            _run_plan(manifest, workers, config, options, summary, emit)
        except KeyboardInterrupt:
            interrupts.handled()
            summary.interrupted = True
            # The display says it once, last; the log file keeps it.
            log.warning("interrupted: finished work is kept; run the same command to resume",
                        extra={"displayed": True})
        except OSError as e:
            # A worker's disk-full is a unit result (see _dispatch); this is the orchestrator's
            # own writing: extracted frames, the ledger, plan.json, assembled videos.
            if e.errno not in DISK_FULL:
                raise
            # e.filename is usually a temporary name; its folder is what a person can act on.
            where = Path(e.filename).parent if e.filename else out
            summary.stopped = f"disk full while writing into {where}"
            log.error("stopping the run: %s; free some space and run the same command again",
                      summary.stopped)
        finally:
            live.close()
            _write_report(out, emit)


def _write_report(out: Path, emit) -> None:
    """The report, however the run ended. A view of the run: losing it must not lose the run
    (`batch-style report OUTPUT` writes it again)."""
    try:
        if run_folder.plan_path(out).exists():
            emit("report", {"path": str(report.write_report(out))})
    except Exception as e:
        log.warning("could not write the report (run `batch-style report %s` to retry): %s: %s",
                    out, type(e).__name__, e)


def _run_plan(manifest: Manifest, workers: int, config: WorkerConfig, options: RunOptions,
              summary: RunSummary, emit) -> None:
    out = manifest.output
    jobs = [job.name for job in manifest.jobs]
    removed = run_folder.sweep_temporaries(out, jobs)
    if removed:
        log.info("removed %d unfinished temporary files from an earlier run", removed)
    # One warm-started chain per worker: a video is split into that many chunks.
    plan = planning.make_plan(manifest, chains=max(workers, 1))
    book = ledger.Ledger.for_output(out)
    latest = book.latest()
    if book.skipped:
        log.warning("ignored %d corrupt ledger lines; those units will be redone", book.skipped)
    _write_plan(manifest, plan, out)
    todo = [u for u in plan.units if options.force or not unit_done(u, book, latest)]
    summary.skipped += len(plan.units) - len(todo)
    videos = [v for v in plan.videos if v.outputs]
    expected = _expected_seconds(todo, config, options)
    start = {"total": len(plan.units), "todo": len(todo), "skipped": len(plan.units) - len(todo),
             "videos": len(videos), "expected": expected}
    log.info("run %s: %s", manifest.path, plan_line(**start), extra={"displayed": True})
    emit("start", {**start, "costs": {u.key: u.cost for u in todo}, "workers": max(workers, 1)})
    todo_keys = {u.key for u in todo}
    flow_jobs = []
    for vp in plan.videos:
        if any(u.key in todo_keys for u in vp.units + vp.leads):
            assemble.extract_frames(vp)
            assemble.remove_stale_frames(vp)
            flow_jobs += assemble.flow_jobs(vp, todo_keys)
    # Optical flow is computed by a few threads here while the workers optimize; a frame that
    # starts from the one before is submitted once its flow file exists.
    with FlowFiles(flow_jobs) as flows:
        _dispatch(todo, workers, config, options, book, summary, emit, gate=_flow_gate(flows))
    if summary.stopped:
        return
    latest = book.latest()
    for vp in plan.videos:
        _assemble_video(vp, book, latest, options, summary, emit)
    # A worker killed during this run (a lost Dask worker, the kernel's OOM killer) may have
    # left a temporary; its unit ran again elsewhere.
    removed = run_folder.sweep_temporaries(out, jobs)
    if removed:
        log.info("removed %d temporary files left by workers that died during this run", removed)


def _expected_seconds(todo: list[Unit], config: WorkerConfig, options: RunOptions
                      ) -> float | None:
    """The units' time on this machine's CPU from autotune's cached figures (none on GPUs,
    a cluster or the test network, whose pace is not those figures')."""
    if options.tiny or getattr(config, "gpu_ids", ()) or getattr(config, "scheduler", None):
        return None
    return autotune.expected_seconds([(u.settings.size, u.cost) for u in todo])


def _flow_gate(flows: FlowFiles):
    """gate(unit) → (the unit to submit, None) or (unit, a future to wait for): its flow files.
    A frame at a scene cut, or whose flow could not be made, starts afresh; an earlier frame
    (long-term) that the flow cannot explain, or whose flow failed, is left out."""
    def gate(unit: Unit) -> tuple[Unit, cf.Future | None]:
        if unit.flow is None:
            return unit, None
        for path in (unit.flow, *(e[2] for e in unit.earlier)):
            if not (pending := flows.future(path)).done():
                return unit, pending
        kept = tuple(e for e in unit.earlier if _flow_usable(flows.future(e[2]), unit.key))
        if kept != unit.earlier:
            unit = dataclasses.replace(unit, earlier=kept)
        future = flows.future(unit.flow)
        error = future.exception()
        if error is None and not future.result():
            return unit, None
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            raise error  # the orchestrator's own writing: stops the run (_run_manifest)
        if error is not None:
            log.warning("%s: no optical flow (%s: %s); it starts afresh", unit.key,
                        type(error).__name__, error)
        else:
            log.info("%s: scene cut; it starts afresh", unit.key)
        return unit.afresh(), None
    return gate


def _flow_usable(future: cf.Future, key: str) -> bool:
    """Whether a long-term flow file is there and relates its frames (no cut between them)."""
    error = future.exception()
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        raise error
    if error is not None:
        log.warning("%s: no long-term optical flow (%s: %s); that frame is left out", key,
                    type(error).__name__, error)
    return error is None and not future.result()


def _dispatch(todo: list[Unit], workers: int, config: WorkerConfig, options: RunOptions,
              book: ledger.Ledger, summary: RunSummary, emit,
              gate: Callable[[Unit], tuple[Unit, cf.Future | None]] | None = None) -> None:
    """Run the units (dispatch.run), each result recorded as it comes; a full disk stops."""
    def finished(unit: Unit, result: UnitResult, attempt: int) -> bool:
        _record(unit, result, attempt, book, summary, emit)
        if result.error_kind == "disk-full":
            summary.stopped = result.error
            log.error("stopping the run: %s; free some space and run the same command again",
                      result.error)
            return True
        return False

    dispatch.run(todo, max(workers, 1), lambda: make_executor(workers, config),
                 lambda executor, unit: executor.submit(run_unit, unit, config),
                 lambda unit, attempt: emit("unit_start", {"key": unit.key, "attempt": attempt}),
                 finished, gate=gate, max_attempts=options.max_attempts)


def _record(unit: Unit, result: UnitResult, attempt: int, book: ledger.Ledger,
            summary: RunSummary, emit) -> None:
    record = {"key": unit.key, "job": unit.job, "hash": unit.hash, "attempts": attempt,
              "status": "done" if result.ok else "failed", "seconds": round(result.seconds, 3),
              "steps": result.steps, "losses": result.losses, "history": list(result.history),
              "worker": result.worker, "gpu": result.gpu,
              "cuda_visible_devices": result.cuda_visible_devices,
              "tf_loaded_before_pinning": result.tf_loaded_before_pinning,
              **{k: getattr(result, k) for k in ("precision", "convolution", "choice", "device",
                                                 "stopped", "warmup")}}
    if result.ok:
        record["outputs"] = [str(p) for p in (unit.output, unit.progress_gif) if p]
        summary.done += 1
        if result.note:
            record["note"] = result.note
            log.warning("%s: %s", unit.key, result.note)
        log.info("%s: done in %.1f s, %d steps, loss %.4g (worker %s)", unit.key,
                 result.seconds, result.steps, result.losses.get("total", float("nan")),
                 result.worker)
    else:
        record.update(error=result.error, error_kind=result.error_kind)
        summary.failed.append((unit.key, result.error or "failed"))
        # The run display shows failures itself: keep this record out of the terminal.
        log.error("%s: failed: %s", unit.key, result.error, extra={"displayed": True})
        if result.detail:
            log.debug("%s", result.detail, extra={"block": True})
    book.append(record)  # after the outputs: the record is the proof they are complete
    emit("unit_done", record)


def _assemble_video(vp: VideoPlan, book: ledger.Ledger, latest: Latest, options: RunOptions,
                    summary: RunSummary, emit) -> None:
    if not vp.outputs or (not options.force and video_done(vp, book, latest)):
        return
    missing = [u.key for u in vp.units if not unit_done(u, book, latest)]
    if missing:
        reason = f"not assembled: {len(missing)} of {len(vp.units)} frames failed"
        summary.failed.append((vp.key, reason))
        book.append({"key": vp.key, "hash": vp.hash, "status": "failed", "error": reason,
                     "job": vp.job})
        log.error("%s: %s", vp.key, reason)
        return
    started = time.perf_counter()
    try:
        metrics = assemble.assemble_video(vp)
    except (UserError, FfmpegError) as e:
        # One video that cannot be written fails alone; the run's other videos still are.
        reason = str(e).splitlines()[0]
        summary.failed.append((vp.key, reason))
        book.append({"key": vp.key, "hash": vp.hash, "status": "failed", "error": reason,
                     "job": vp.job})
        log.error("%s: %s", vp.key, reason)
        if isinstance(e, FfmpegError):
            log.debug("%s", e, extra={"block": True})
        return
    record = {"key": vp.key, "job": vp.job, "hash": vp.hash, "status": "done",
              "frames": run_folder.frames_fingerprint([u.key for u in vp.units], latest),
              "outputs": [str(p) for p in vp.outputs.values()],
              "seconds": round(time.perf_counter() - started, 3)}
    if metrics:
        record["metrics"] = {k: round(v, 6) for k, v in metrics.items()}  # flow.coherence
    book.append(record)
    summary.assembled += 1
    log.info("%s: assembled %s", vp.key, ", ".join(p.name for p in vp.outputs.values()))
    emit("video_done", record)


def _write_plan(manifest: Manifest, plan: Plan, out: Path) -> None:
    """The run's jobs and units, for `batch-style status` (pending work) and the report."""
    def unit(u: Unit) -> dict:
        return {"key": u.key, "job": u.job, "hash": u.hash, "content": str(u.content),
                "styles": [str(p) for p in u.styles], "output": str(u.output),
                "progress_gif": str(u.progress_gif) if u.progress_gif else None,
                "cost": u.cost,
                "masks": [str(p) if p else None for p in u.masks],
                "protect": str(u.protect) if u.protect else None}

    data = {"manifest": str(manifest.path),
            "jobs": [{"name": j.name, "manifest": str(manifest.path), "kind": j.kind,
                      "outputs": list(j.outputs),
                      "styles": [str(p) for p in j.styles],
                      "masks": [str(p) if p else None for p in j.masks.styles],
                      "protect": str(j.masks.protect) if j.masks.protect else None,
                      "video": str(j.video) if j.video else None,
                      "settings": j.settings.to_dict()} for j in manifest.jobs],
            "units": [unit(u) for u in plan.units],
            "videos": [{"key": v.key, "job": v.job, "hash": v.hash, "frames": len(v.units),
                        "frame_keys": [u.key for u in v.units],
                        "source": str(v.source), "fps": v.fps,
                        "outputs": {k: str(p) for k, p in v.outputs.items()}}
                       for v in plan.videos]}
    run_folder.write_plan(out, data)


@contextlib.contextmanager
def _checked(out: Path, jobs: list[str]):
    run_folder.check_inside(out, jobs)
    yield


class _log_to:
    """Context manager: the run's log file in the output folder, for the run's duration."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = safe_files.open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        # A file name that is not UTF-8 (or holds a newline) must neither break nor forge a line.
        self.handler = logging.StreamHandler(
            os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace"))
        self.handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(message)s"))
        self.handler.setLevel(logging.DEBUG)
        log.addHandler(self.handler)
        log.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        log.removeHandler(self.handler)
        self.handler.close()
        self.handler.stream.close()
        return False
