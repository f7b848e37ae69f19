"""What people see in the terminal: progress that knows whether it is on a TTY, plans, status."""

from __future__ import annotations

import time
from typing import TextIO

PLAIN_EVERY_S = 30.0   # seconds between progress lines when not on a terminal (nohup, cron)


def _is_tty(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled)


class StepBar:
    """One line redrawn in place on a terminal; a line every PLAIN_EVERY_S seconds otherwise."""

    def __init__(self, stream: TextIO, quiet: bool = False):
        self.stream, self.quiet, self.tty = stream, quiet, _is_tty(stream)
        self.last_plain = 0.0

    def update(self, event) -> None:
        if self.quiet:
            return
        scale = f" scale {event.scale + 1}/{event.scales}" if event.scales > 1 else ""
        w, h = event.size
        line = (f"step {event.step}/{event.steps}{scale} {w}×{h}  loss {event.losses.total:.4g}"
                f"  {_duration(event.elapsed)}")
        if self.tty:
            fraction = event.step / max(event.steps, 1)
            self.stream.write(f"\r{_bar(fraction)} {line}\033[K")
            self.stream.flush()
        elif time.monotonic() - self.last_plain >= PLAIN_EVERY_S or event.step == event.steps:
            self.last_plain = time.monotonic()
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


class RunDisplay:
    """Progress of a whole run: units done of total with an ETA, one line per finished unit."""

    def __init__(self, stream: TextIO):
        self.stream, self.tty = stream, _is_tty(stream)
        self.total = self.done = self.failed = 0
        self.started = time.monotonic()
        self.unit_seconds: list[float] = []

    def _write(self, text: str) -> None:
        prefix = "\r\033[K" if self.tty else ""
        self.stream.write(prefix + text + "\n")
        if self.tty:
            self.stream.write(self._status_line())
        self.stream.flush()

    def _status_line(self) -> str:
        finished = self.done + self.failed
        eta = ""
        if self.unit_seconds and finished < self.total:
            elapsed = time.monotonic() - self.started
            eta = f"  ETA {_duration(elapsed / finished * (self.total - finished))}"
        return (f"{_bar(finished / max(self.total, 1))} {finished}/{self.total} units"
                f"{f', {self.failed} failed' if self.failed else ''}{eta}")

    def event(self, kind: str, data: dict) -> None:
        if kind == "start":
            self.total += data["todo"]
            if data["skipped"]:
                self._write(f"{data['skipped']} of {data['total']} units already done; "
                            f"resuming with {data['todo']}")
        elif kind == "unit_done":
            if data["status"] == "done":
                self.done += 1
                self.unit_seconds.append(data["seconds"])
                self._write(f"done    {data['key']}  {data['seconds']:.1f} s  "
                            f"loss {data['losses'].get('total', float('nan')):.4g}")
            else:
                self.failed += 1
                self._write(f"FAILED  {data['key']}: {data['error']}")
        elif kind == "video_done":
            self._write(f"video   {data['key']}: " + ", ".join(data["outputs"]))

    def close(self, summary) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        elapsed = _duration(time.monotonic() - self.started)
        parts = [f"{summary.done} done", f"{summary.skipped} already done"]
        if summary.assembled:
            parts.append(f"{summary.assembled} videos assembled")
        if summary.failed:
            parts.append(f"{len(summary.failed)} failed")
        self.stream.write(f"batch-style: {', '.join(parts)} in {elapsed}\n")
        if summary.failed:
            for key, reason in summary.failed:
                self.stream.write(f"  failed: {key}: {reason}\n")
        if summary.stopped:
            self.stream.write(f"batch-style: stopped: {summary.stopped}\n")
        if summary.interrupted:
            self.stream.write("batch-style: interrupted; run the same command to resume\n")
        self.stream.flush()


def describe_plan(manifest, force: bool = False) -> str:
    """`run --dry-run`: what would run, per job (units, result size, steps, outputs)."""
    from batch_style import ledger, media
    from batch_style import plan as planning
    from batch_style import run as runner

    plan = planning.make_plan(manifest)
    book = ledger.Ledger(ledger.ledger_path(manifest.output))
    lines = [f"{manifest.path} → {manifest.output}"]
    for job in manifest.jobs:
        units = [u for u in plan.units if u.job == job.name]
        done = 0 if force else sum(runner.unit_done(u, book) for u in units)
        s = job.settings
        first = units[0].content if units and job.kind != "video" else None
        size = ""
        if first is not None:
            w, h = media.fit_size(*media.probe_image(first, s.max_pixels), s.size)
            size = f"{w}×{h}" + (" (first)" if len(units) > 1 else "")
        else:
            size = f"longest side {s.size} px"
        steps = f"{s.steps} steps ({s.optimizer}" + (f", {s.scales} scales" if s.scales > 1
                                                     else "") + ")"
        if job.kind == "video" and s.warm_start and len(units) > 1:
            steps += f", then {s.frame_steps} per frame"
        lines.append(f"  {job.name}: {len(units)} {'frames' if job.kind == 'video' else 'images'}"
                     f", {done} done, {len(units) - done} to run; {size}; {steps}; "
                     f"outputs: {', '.join(job.outputs)}")
    return "\n".join(lines)


def format_status(status) -> str:
    lines = [f"{status.output}: {status.done} done, {status.failed} failed, "
             f"{status.pending} pending"
             + (f" — running (pid {status.running_pid})" if status.running_pid else "")]
    for job in status.jobs:
        lines.append(f"  {job.name}: {job.done} done, {job.failed} failed, {job.pending} pending"
                     f"; {_duration(job.seconds)} spent")
        for key, reason in job.failures:
            lines.append(f"    failed {key}: {reason}")
    if status.eta_seconds is not None:
        lines.append(f"  estimated time left: {_duration(status.eta_seconds)}")
    return "\n".join(lines)
