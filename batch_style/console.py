"""What people see in the terminal: progress that knows whether it is on a TTY, plans, status."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import TextIO

from batch_style import interrupts
from batch_style.pipeline.state import events
from batch_style.pipeline.state.progress import RunProgress, plan_line
from batch_style.text import duration, printable

PLAIN_EVERY_S = 30.0   # seconds between `stylize` step lines when not on a terminal (nohup, cron)
PLAIN_PROGRESS_S = 60.0  # seconds between a run's progress lines when not on a terminal
POLL_S = 1.0           # seconds between redraws of a run's live area on a terminal
TICK_S = 1.0           # seconds between redraws of `stylize`'s bar on a terminal


def _is_tty(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled)


class StepBar:
    """One line redrawn in place on a terminal, at each step and every TICK_S seconds between
    (a slow step, the loading and compiling before the first: the time still moves); a line
    every PLAIN_EVERY_S seconds otherwise; with `every`, a line every `every` steps wherever it
    goes (the peers' `-print_iter`)."""

    def __init__(self, stream: TextIO, quiet: bool = False, every: int | None = None):
        self.stream, self.quiet, self.every = stream, quiet, every
        self.tty = _is_tty(stream) and not every
        self.last_plain = 0.0
        self.started = time.monotonic()
        self.shown = ("", "starting", 0.0)  # (bar, text, elapsed) as last drawn, and when
        self.shown_at = self.started
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ticker: threading.Thread | None = None
        if self.tty and not quiet:
            self.ticker = threading.Thread(target=self._tick, name="batch-style-bar", daemon=True)
            self.ticker.start()

    def phase(self, text: str) -> None:
        """What happens before the first step (loading the model, compiling)."""
        if self.tty and not self.quiet:
            with self.lock:
                self.shown, self.shown_at = ("", text, time.monotonic() - self.started), \
                    time.monotonic()
                self._draw()

    def update(self, event) -> None:
        interrupts.check()  # a Ctrl-C swallowed on its way still stops `stylize`
        if self.quiet:
            return
        scale = f" scale {event.scale + 1}/{event.scales}" if event.scales > 1 else ""
        w, h = event.size
        line = (f"step {event.step}/{event.steps}{scale} {w}×{h}  loss {event.losses.total:.4g}"
                f"  {duration(event.elapsed)}")
        if self.tty:
            with self.lock:
                text = line.rsplit("  ", 1)[0]
                self.shown = (_bar(event.step / max(event.steps, 1)) + " ", text, event.elapsed)
                self.shown_at = time.monotonic()
                self._draw()
        elif self.every:
            if event.step % self.every == 0 or event.step == event.steps:
                self.stream.write(line + "\n")
                self.stream.flush()
        elif time.monotonic() - self.last_plain >= PLAIN_EVERY_S or event.step == event.steps:
            self.last_plain = time.monotonic()
            self.stream.write(line + "\n")
            self.stream.flush()

    def _draw(self) -> None:
        bar, text, elapsed = self.shown
        elapsed += time.monotonic() - self.shown_at
        self.stream.write(f"\r{bar}{text}  {duration(elapsed)}\033[K")
        self.stream.flush()

    def _tick(self) -> None:
        while not self.stopping.wait(TICK_S):
            with self.lock:
                if not self.stopping.is_set():
                    self._draw()

    def close(self) -> None:
        self.stopping.set()
        with self.lock:
            if self.tty and not self.quiet:
                self.stream.write("\n")
                self.stream.flush()


class RunDisplay:
    """Progress of a whole run: a line per finished unit, and how far along the run is.

    On a terminal, under those lines: an overall bar (units finished / total, ETA) and a line per
    busy worker (unit, step, loss, from the workers' progress files), redrawn every `poll_s`
    seconds. Elsewhere (nohup, cron, a pipe): plain lines only, never a carriage return or an
    escape code: one per finished unit and, at most every `plain_every_s` seconds, a progress
    line.
    """

    def __init__(self, stream: TextIO, poll_s: float = POLL_S,
                 plain_every_s: float = PLAIN_PROGRESS_S, tty: bool | None = None):
        self.stream = stream
        self.tty = _is_tty(stream) if tty is None else tty
        self.poll_s, self.plain_every_s = poll_s, plain_every_s
        self.progress = RunProgress()
        self.started = time.monotonic()
        self.last_plain = self.started
        self.output: Path | None = None       # the folder whose workers' progress files we read
        self.reports: dict[Path, str | None] = {}  # each manifest's output folder → its report
        self.beats: list[dict] = []
        self.drawn = 0                          # lines of the live area now on screen (TTY)
        self.lock = threading.RLock()           # the poller thread draws too
        self.stopping = threading.Event()
        self.poller: threading.Thread | None = None

    # -- events from the run --------------------------------------------------------------------
    def event(self, kind: str, data: dict) -> None:
        interrupts.check()  # a Ctrl-C swallowed on its way still stops the run
        with self.lock:
            self.progress.event(kind, data, time.monotonic())
            self._event(kind, data)
            self._refresh()

    def _event(self, kind: str, data: dict) -> None:
        if kind == "start":
            self.output = Path(data["output"]) if data.get("output") else self.output
            if self.output is not None:
                self.reports.setdefault(self.output, None)
            self._start_poller()
            self._write(plan_line(data["total"], data["skipped"], data["todo"],
                                  data.get("videos") or 0, data.get("expected")))
        elif kind == "unit_done" and data["status"] == "done":
            stopped = f"  {data['stopped']}" if data.get("stopped") else ""
            self._write(f"done    {data['key']}  {data['seconds']:.1f} s  "
                        f"loss {data['losses'].get('total', float('nan')):.4g}{stopped}")
        elif kind == "unit_done":
            self._write(f"FAILED  {data['key']}: {data['error']}")
        elif kind == "video_done":
            self._write(f"video   {data['key']}: " + ", ".join(data["outputs"]))
        elif kind == "report" and self.output is not None:
            self.reports[self.output] = data["path"]

    # -- drawing ----------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        """A permanent line (above the live area on a terminal)."""
        self._clear()
        self.stream.write(printable(text) + "\n")
        self._draw()
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self.drawn:
            up = f"\033[{self.drawn - 1}A" if self.drawn > 1 else ""
            self.stream.write(f"\r{up}\033[J")
            self.drawn = 0

    def _draw(self) -> None:
        if not self.tty or not self.progress.total:
            return
        width = max(shutil.get_terminal_size((100, 24)).columns - 1, 20)
        lines = [self._status_line()] + [f"  {line}" for line in self._worker_lines()]
        self.stream.write("\n".join(printable(line)[:width] for line in lines))
        self.drawn = len(lines)

    def _refresh(self) -> None:
        """Redraw the live area (terminal), or write a progress line when one is due (plain)."""
        if self.output is not None:
            self.beats = events.busy_workers(self.output, set(self.progress.in_flight))
        if self.tty:
            self._clear()
            self._draw()
            self.stream.flush()
        elif self.progress.total and time.monotonic() - self.last_plain >= self.plain_every_s:
            self.last_plain = time.monotonic()
            busy = "; ".join(self._worker_lines())
            self.stream.write(printable(f"progress: {self._counts()}{self._eta()}"
                                        f"{f'; busy: {busy}' if busy else ''}") + "\n")
            self.stream.flush()

    def _counts(self) -> str:
        p = self.progress
        return (f"{p.done + p.failed}/{p.total} units"
                f"{f', {p.failed} failed' if p.failed else ''}")

    def _eta(self) -> str:
        left = self.progress.seconds_left(self.beats)
        return f", ETA {duration(left)}" if left is not None else ""

    def _status_line(self) -> str:
        p = self.progress
        return f"{_bar((p.done + p.failed) / max(p.total, 1))} {self._counts()}{self._eta()}"

    def _worker_lines(self) -> list[str]:
        beats = {b["key"]: b for b in self.beats}
        lines = []
        for key, since in sorted(self.progress.in_flight.items(), key=lambda item: item[1]):
            beat = beats.get(key)
            if beat is None or not beat.get("steps"):
                doing = (beat or {}).get("phase") or "starting"
                lines.append(f"{key}  {doing} ({duration(time.monotonic() - since)})")
                continue
            scale = (f" (scale {beat['scale'] + 1}/{beat['scales']})"
                     if (beat.get("scales") or 1) > 1 else "")
            gpu = f", GPU {beat['gpu']}" if beat.get("gpu") is not None else ""
            loss = f"  loss {beat['loss']:.4g}" if isinstance(beat.get("loss"), (int, float)) \
                else ""
            lines.append(f"{key}  step {beat['step']}/{beat['steps']}{scale}{loss}  "
                         f"[{beat.get('worker', '?')}{gpu}]")
        return lines

    def _start_poller(self) -> None:
        if self.poller is not None or self.poll_s <= 0:
            return
        self.poller = threading.Thread(target=self._poll, name="batch-style-display",
                                       daemon=True)
        self.poller.start()

    def _poll(self) -> None:
        while not self.stopping.wait(self.poll_s):
            with self.lock:
                self._refresh()

    def close(self, summary) -> None:
        self.stopping.set()
        if self.poller is not None:
            self.poller.join()
        with self.lock:
            self._clear()
            self._write_summary(summary)

    def _write_summary(self, summary) -> None:
        elapsed = duration(time.monotonic() - self.started)
        parts = [f"{summary.done} done", f"{summary.skipped} already done"]
        if summary.assembled:
            parts.append(f"{plural(summary.assembled, 'video')} assembled")
        if summary.failed:
            parts.append(f"{len(summary.failed)} failed")
        self.stream.write(f"batch-style: {', '.join(parts)} in {elapsed}\n")
        if summary.failed:
            for key, reason in summary.failed:
                self.stream.write(printable(f"  failed: {key}: {reason}") + "\n")
        if summary.stopped:
            self.stream.write(printable(f"batch-style: stopped: {summary.stopped}") + "\n")
        if summary.interrupted:
            self.stream.write("batch-style: interrupted; run the same command to resume\n")
        # Where it all is, last: the results, then the page that shows them.
        for output, report in self.reports.items():
            self.stream.write(printable(f"batch-style: results in {output}{os.sep}") + "\n")
            if report:
                self.stream.write(printable(f"batch-style: report: {report}") + "\n")
        self.stream.flush()


PLAN_PATHS_SHOWN = 12  # per job, in `run --dry-run`: a folder of 500 photos is summed up


def describe_plan(run) -> str:
    """`run --dry-run`'s text for a dry_run.RunPreview: per job its units, result size, steps,
    every file it would write (a long list summed up), how it computes and how long it takes."""
    lines = [f"{run.manifest} → {run.output}"]
    for job in run.jobs:
        s = job.settings
        size = f"longest side {s.size} px" if job.size is None else \
            f"{job.size[0]}×{job.size[1]}" + (" (first)" if job.units > 1 else "")
        steps = (f"{'up to ' if s.tolerance > 0 else ''}{s.steps} steps ({s.optimizer}"
                 + (f", {s.scales} scales" if s.scales > 1 else "")
                 + (", stops when converged" if s.tolerance > 0 else "") + ")")
        if job.kind == "video" and s.warm_start and job.units > 1:
            steps += f", then {s.frame_steps} per frame"
        noun = "frame" if job.kind == "video" else "image"
        loop = f" ({job.looped} of them repaint the first frames, closing the loop)" \
            if job.looped else ""
        lines.append(f"  {job.name}: {plural(job.units, noun)}{loop}, {job.done} done, "
                     f"{job.units - job.done} to run; {size}; {steps}; writes:")
        lines += [f"    {path}" for path in _summed_up(job)]
        lines.append("    computes with: " + job.computes_with)
        lines.append(f"    time: about {duration(job.seconds)} (this machine's cached timings)"
                     if job.seconds else "    time: measured at the first unit"
                     if job.done < job.units else "    time: nothing to run")
    lines.append(f"  and the run's own: {run.own[0]}, {run.own[1]}, {run.own[2]}{os.sep}")
    return "\n".join(lines)


def _summed_up(job) -> list[str]:
    """A job's files as the dry run lists them: a long list summed up, a video's frames as a span."""
    files = [str(p) for p in job.paths]
    if job.frames is not None:
        first, last, n = job.frames
        files.append(str(first) + (f" … {last.name} ({plural(n, 'frame')})" if n > 1 else ""))
    if len(files) > PLAN_PATHS_SHOWN:
        more = len(files) - PLAN_PATHS_SHOWN + 1
        files = files[:PLAN_PATHS_SHOWN - 1] + [f"… and {plural(more, 'more file')} in "
                                                 f"{job.name}{os.sep}"]
    return files


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _videos(counts) -> str:
    """`; video 0 of 1 assembled`: videos counted apart from the units (pictures and frames)."""
    if not counts.videos:
        return ""
    return f"; {'video' if counts.videos == 1 else 'videos'} {counts.videos_done} of " \
           f"{counts.videos} assembled"


def format_status(status) -> str:
    """`batch-style status`: counts per job, failures, busy workers and the time left."""
    state = ""
    if status.running_pid:
        state = f" — running (pid {status.running_pid})" if status.running_pid > 0 else \
            " — running"
    elif status.pending or status.videos_left:
        state = " — not running: run the same command to finish"
    lines = [f"{status.output}: {status.done} done, {status.failed} failed, "
             f"{status.pending} pending{_videos(status)}{state}"]
    for job in status.jobs:
        lines.append(f"  {job.name}: {job.done} done, {job.failed} failed, {job.pending} pending"
                     f"{_videos(job)}; {duration(job.seconds)} spent")
        for key, reason in job.failures:
            lines.append(f"    failed {key}: {reason}")
    spent = sum(job.seconds for job in status.jobs)
    if status.started is not None:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(status.started))
        lines.append(f"  time spent: {duration(spent)} in units, since {when}")
    for beat in getattr(status, "workers", []):
        steps = f"step {beat.get('step')}/{beat['steps']}" if beat.get("steps") else \
            beat.get("phase") or "starting"
        loss = f"  loss {beat['loss']:.4g}" if isinstance(beat.get("loss"), (int, float)) else ""
        gpu = f", GPU {beat['gpu']}" if beat.get("gpu") is not None else ""
        lines.append(f"  busy: {beat['key']}  {steps}{loss}  [{beat.get('worker', '?')}{gpu}]")
    if status.eta_seconds is not None:
        lines.append(f"  estimated time left: {duration(status.eta_seconds)}"
                     + ("" if status.running_pid else " (when run again)"))
    return "\n".join(lines)
