"""The run's event log (JSON lines, for tools) and the workers' live progress files.

OUTPUT/.batch_style/events.jsonl gets one line per event, `{"time": UNIX_SECONDS, "kind": KIND,
"data": {...}}`, appended by the orchestrator only. Kinds and their data:

- `start`: a manifest's run begins: `manifest`, `output`, `total` (units planned), `todo`,
  `skipped` (already done).
- `unit_start`: a unit is handed to a worker: `key`, `attempt` (1, then 2… after its worker died).
- `unit_done`: a unit finished, the ledger record as written: `key`, `job`, `status` (done |
  failed), `seconds`, `steps`, `losses` {total, content, style, tv, temporal}, `history` (total
  loss per step, ≤ 200 points), `worker` (host:pid), `gpu`, `device`, `precision`,
  `convolution`, `choice` (why those two: autotune.py), `stopped`, `attempts`, and `outputs`
  when done or
  `error` (one line for people) and `error_kind` (input | disk-full | oom | crash | internal)
  when failed.
- `video_done`: a video was assembled: `key` ("JOB/STEM#video"), `job`, `outputs`, `seconds`.
- `report`: the report was written: `path`.
- `end`: the manifest's run is over: `done`, `failed` (units of this manifest's run),
  `interrupted`, `stopped` (why the run stopped early, or null), `error` (an exception that ended
  it, or null).

Live progress: each worker keeps OUTPUT/.batch_style/workers/PID.json up to date with the unit it
is on (`WorkerBeat`), at most every BEAT_EVERY_S seconds; `busy_workers` reads them back for the
terminal display and `batch-style status`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from batch_style import atomic
from batch_style.errors import UserError
from batch_style.pipeline.state import ledger, run_folder, safe_files
from batch_style.pipeline.state.run_folder import WORKERS_DIR, events_path, workers_dir

log = logging.getLogger("batch_style")

BEAT_EVERY_S = 2.0      # seconds between a worker's progress-file writes
MAX_EVENTS_BYTES = 4 << 30  # events.jsonl holds about what the ledger does
_BEAT_NAME = re.compile(r"\d{1,9}\.json")  # PID.json: the only files of ours in workers/

Emit = Callable[[str, dict], None]


class EventLog:
    """Appends events to events.jsonl; one line per event, flushed as it happens."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = safe_files.open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, kind: str, data: dict) -> None:
        line = json.dumps({"time": time.time(), "kind": kind, "data": data},
                          separators=(",", ":"), default=str)
        # No fsync: the ledger is the durable record; this log is for watching and tools.
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_events(output_dir: Path) -> list[dict]:
    """The events of every run into `output_dir`, oldest first (a cut last line is skipped)."""
    try:
        data = safe_files.read_capped(events_path(output_dir), MAX_EVENTS_BYTES, "an event log")
    except FileNotFoundError:
        return []
    events = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "kind" in event:
            events.append(event)
    return events


@contextlib.contextmanager
def recording(output_dir: Path, emit: Emit, summary=None, manifest: Path | None = None
              ) -> Iterator[Emit]:
    """For one manifest's run: log its events, and the `end` event however the run ends.

    Yields `emit` wrapped so that every event also goes to events.jsonl (and a unit's start and
    its final losses to run.log). Use inside the run lock and the run.log handler.
    """
    output_dir = Path(output_dir)
    events = EventLog(events_path(output_dir))
    before = (summary.done, len(summary.failed)) if summary is not None else (0, 0)
    _clear_beats(output_dir)

    def wrapped(kind: str, data: dict) -> None:
        if kind == "start":
            data = {"manifest": str(manifest) if manifest else None, "output": str(output_dir),
                    **data}
        events.write(kind, data)
        _log_event(kind, data)
        emit(kind, data)

    error = None
    try:
        yield wrapped
    except BaseException as e:
        error = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        raise
    finally:
        end = {"done": summary.done - before[0] if summary is not None else None,
               "failed": len(summary.failed) - before[1] if summary is not None else None,
               "interrupted": bool(summary is not None and summary.interrupted)
               or error == "interrupted",
               "stopped": summary.stopped if summary is not None else None,
               "error": None if error == "interrupted" else error}
        try:
            events.write("end", end)
            events.close()
        except OSError as e:  # a full disk must not hide the run's own, clean outcome
            log.warning("could not write the event log: %s", e)
        _clear_beats(output_dir)


def _log_event(kind: str, data: dict) -> None:
    # orchestrator.py logs each unit's outcome; these add its start and the detail of its result.
    if kind == "unit_start":
        log.info("%s: started (attempt %s)", data.get("key"), data.get("attempt"))
    elif kind == "unit_done" and data.get("status") == "done":
        losses = data.get("losses") or {}
        terms = ", ".join(f"{name} {losses[name]:.4g}" for name in
                          ("content", "style", "tv", "temporal")
                          if losses.get(name) is not None and (name != "temporal" or losses[name]))
        log.info("%s: final losses %s; worker %s, GPU %s", data.get("key"), terms or "n/a",
                 data.get("worker") or "?", data.get("gpu") or "none")


# -- live worker progress ---------------------------------------------------------------------
class WorkerBeat:
    """A worker's current unit, step and loss in OUTPUT/.batch_style/workers/PID.json.

    `update(progress)` from the optimizer's callback writes at most every BEAT_EVERY_S seconds
    (the first call writes at once); `done()` removes the file. Without a state folder (the
    `stylize` command) it does nothing. Stale files (a unit that raised, a dead worker) are
    harmless: readers keep only live pids on units the ledger has not finished since.
    """

    def __init__(self, state_dir: str | os.PathLike | None, key: str, gpu: str | None = None):
        self.path = Path(state_dir) / WORKERS_DIR / f"{os.getpid()}.json" if state_dir else None
        self.info = {"pid": os.getpid(), "worker": f"{socket.gethostname()}:{os.getpid()}",
                     "gpu": gpu, "key": key, "started": time.time()}
        self.last = 0.0
        self.phased = False
        if self.path is not None:
            self._write({"step": 0, "steps": None, "loss": None})

    def update(self, progress) -> None:
        if self.path is None or (time.monotonic() - self.last < BEAT_EVERY_S
                                 and not self.phased):
            return
        self.phased = False  # the first step after a phase is shown at once
        self._write({"step": progress.step, "steps": progress.steps, "scale": progress.scale,
                     "scales": progress.scales, "loss": progress.losses.total,
                     "elapsed": progress.elapsed})

    def phase(self, text: str) -> None:
        """What the worker does before the unit's first step (loading, compiling), shown in
        place of a step count."""
        if self.path is not None:
            self.phased = True
            self._write({"step": 0, "steps": None, "loss": None, "phase": text})

    def done(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _write(self, state: dict) -> None:
        self.last = time.monotonic()
        data = json.dumps({**self.info, **state, "updated": time.time()})
        # Renamed into place (readers never see half a file) but not fsynced: it is a progress
        # display, rewritten every few seconds, and a lost update costs nothing.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = atomic.temporary_name(self.path)
            tmp.write_text(data, encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a full disk shows up where it matters (the unit's outputs), not here


def busy_workers(output_dir: Path, keys: set[str] | None = None) -> list[dict]:
    """Progress of the workers now on a unit, by unit key.

    `keys`: the units known to be in flight (the run's own display knows them); without it,
    a file counts while its process lives and the ledger has nothing newer for its unit.
    """
    folder = workers_dir(output_dir)
    if not folder.is_dir():
        return []
    latest = None if keys is not None else ledger.Ledger.for_output(output_dir).latest()
    beats = []
    for path in _beat_files(folder):
        try:
            beat = json.loads(safe_files.read_capped(path, run_folder.MAX_SMALL_BYTES,
                                                     "a progress file"))
            key, pid, started = str(beat["key"]), int(beat["pid"]), float(beat["started"])
        except (OSError, UserError, ValueError, KeyError, TypeError):
            continue  # removed or replaced while we read it, or not ours
        if keys is not None:
            if key not in keys:
                continue
        else:
            record = latest.get(key)
            if not atomic.process_alive(pid) or (record is not None and record["time"] >= started):
                continue
        beats.append(beat)
    return sorted(beats, key=lambda b: str(b["key"]))


def _beat_files(folder: Path) -> list[Path]:
    """The progress files in `folder`: PID.json only (a run removes nothing else there), and
    never through a link to another folder."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    return [path for path in folder.iterdir() if _BEAT_NAME.fullmatch(path.name)]


def _clear_beats(output_dir: Path) -> None:
    for path in _beat_files(workers_dir(output_dir)):
        path.unlink(missing_ok=True)
