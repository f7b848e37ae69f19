"""While a run goes: how far it is, what each busy unit paints, and when to show it again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batch_style.pipeline.state import events, snapshots
from batch_style.pipeline.state.progress import RunProgress

log = logging.getLogger("batch_style")

REFRESH_EVERY_S = 3.0   # seconds, at least, between two writes of the live page
RENDER_SHARE = 0.1      # and at most this share of the time spent writing it (big runs' pages)


@dataclass(frozen=True)
class BusyUnit:
    """A unit a worker is on, as its progress file and its snapshot tell it."""

    key: str
    started: float              # unix time it was handed to a worker
    step: int | None = None     # steps done at its current scale (None: not started yet)
    steps: int | None = None
    scale: int = 0
    scales: int = 1
    loss: float | None = None
    worker: str | None = None   # host:pid
    gpu: str | None = None
    snapshot: Path | None = None  # its latest picture (snapshots.LiveSnapshot), when there is one


@dataclass(frozen=True)
class LiveView:
    """What the live page shows besides the ledger: this run's progress and its busy units."""

    done: int                   # units of this run finished, failed ones apart
    failed: int
    total: int                  # units this run has to do
    seconds_left: float | None  # the one progress model's estimate (progress.RunProgress)
    busy: tuple[BusyUnit, ...]
    refresh_s: int              # the page reloads itself this often


class LiveReport:
    """Keeps OUTPUT/report.html live during a manifest's run: `write(view)` is called when the
    run starts, then after units start and finish and, while units are busy, to show their steps
    and pictures; at most every REFRESH_EVERY_S seconds (more when writing takes long), from a
    thread of its own. `tap(emit)` feeds it the run's events; `close()` stops it, so that the
    run's final, still page is the last word. A failed write is logged and the run goes on."""

    def __init__(self, output_dir: Path, write: Callable[[LiveView], object],
                 every_s: float | None = None):
        self.output_dir = Path(output_dir)
        self.write, self.every_s = write, REFRESH_EVERY_S if every_s is None else every_s
        self.progress = RunProgress()
        self.since: dict[str, float] = {}       # unit key → unix time it started
        self.lock = threading.Lock()
        self.wake, self.closing = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None
        self.interval = self.every_s
        self.last = 0.0
        self.warned = False

    def tap(self, emit: events.Emit) -> events.Emit:
        def tapped(kind: str, data: dict) -> None:
            emit(kind, data)
            self.event(kind, data)
        return tapped

    def event(self, kind: str, data: dict) -> None:
        with self.lock:
            self.progress.event(kind, data, time.monotonic())
            if kind == "unit_start":
                self.since[data["key"]] = time.time()
        if kind == "start":
            snapshots.clear(self.output_dir)
            self._write()  # the page exists from the start
            self.thread = threading.Thread(target=self._loop, name="batch-style-report",
                                           daemon=True)
            self.thread.start()
        elif kind in ("unit_start", "unit_done", "video_done"):
            self.wake.set()

    def close(self) -> None:
        self.closing.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join()
        snapshots.clear(self.output_dir)

    # -- the writer's thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.closing.is_set():
            woken = self.wake.wait(self.every_s)
            # at most every `interval`: a burst of events makes one write
            if self.closing.wait(max(self.last + self.interval - time.monotonic(), 0)):
                return
            self.wake.clear()
            with self.lock:
                busy = bool(self.progress.in_flight)
            if woken or busy:
                self._write()

    def _write(self) -> None:
        started = time.monotonic()
        try:
            self.write(self.view())
        except Exception as e:  # a view of the run: losing it must not lose the run
            if not self.warned:
                log.warning("could not write the live report (the run goes on): %s: %s",
                            type(e).__name__, e)
                self.warned = True
        self.last = time.monotonic()
        self.interval = max(self.every_s, (self.last - started) / RENDER_SHARE)

    def view(self) -> LiveView:
        with self.lock:
            keys = set(self.progress.in_flight)
        beats = events.busy_workers(self.output_dir, keys)  # files: read outside the lock
        with self.lock:
            p = self.progress
            left = p.seconds_left(beats)
            counts = (p.done, p.failed, p.total)
            since = {k: self.since.get(k, time.time()) for k in p.in_flight}
        by_key = {b["key"]: b for b in beats}
        busy = []
        for key, started in sorted(since.items(), key=lambda item: item[1]):
            beat = by_key.get(key) or {}
            picture = snapshots.snapshot_path(self.output_dir, beat["pid"]) if beat else None
            busy.append(BusyUnit(
                key=key, started=started, step=beat.get("step") if beat.get("steps") else None,
                steps=beat.get("steps"), scale=beat.get("scale") or 0,
                scales=beat.get("scales") or 1, loss=beat.get("loss"),
                worker=beat.get("worker"), gpu=beat.get("gpu"),
                snapshot=picture if picture is not None and picture.is_file() else None))
        return LiveView(done=counts[0], failed=counts[1], total=counts[2], seconds_left=left,
                        busy=tuple(busy), refresh_s=max(round(self.every_s), 1) + 2)
