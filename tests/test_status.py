"""Tests for batch_style.views.status, the run's terminal display and the workers' progress files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from batch_style import console
from batch_style.cli import main
from batch_style.errors import UserError
from batch_style.orchestrator import RunSummary
from batch_style.pipeline.state import events, ledger, run_lock
from batch_style.views import status


def _unit(out: Path, job: str, stem: str) -> dict:
    return {"key": f"{job}/{stem}", "job": job, "hash": f"h-{job}-{stem}",
            "content": f"/in/{stem}.png", "styles": ["/in/style.png"],
            "output": str(out / job / f"{stem}.png"), "progress_gif": None}


@pytest.fixture
def out(tmp_path) -> Path:
    """A run's output folder as a run leaves it after planning: plan.json, no ledger yet.

    Jobs: `pics` (a, b, c, d) and `slow` (x, y), whose units take longer.
    """
    out = tmp_path / "out"
    units = [_unit(out, "pics", s) for s in "abcd"] + [_unit(out, "slow", s) for s in "xy"]
    plan = {"manifest": str(tmp_path / "m.yaml"),
            "jobs": [{"name": "pics", "kind": "images", "outputs": ["image"], "styles": [],
                      "video": None, "settings": {}},
                     {"name": "slow", "kind": "images", "outputs": ["image"], "styles": [],
                      "video": None, "settings": {}}],
            "units": units, "videos": []}
    (out / ".batch_style").mkdir(parents=True)
    (out / ".batch_style" / "plan.json").write_text(json.dumps(plan))
    return out


def finish(out: Path, job: str, stem: str, seconds: float, ok: bool = True, **more) -> None:
    """What the run does when a unit finishes: its output, then its ledger record."""
    record = {"key": f"{job}/{stem}", "job": job, "hash": f"h-{job}-{stem}",
              "status": "done" if ok else "failed", "seconds": seconds, "steps": 10,
              "losses": {"total": 1.0}, "worker": "host:1", "gpu": None, "attempts": 1, **more}
    if ok:
        path = out / job / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
    else:
        record.setdefault("error", "photo.png: truncated or corrupt image")
    ledger.Ledger.for_output(out).append(record)


def counts(s: status.RunStatus) -> dict[str, tuple[int, int, int]]:
    return {j.name: (j.done, j.failed, j.pending) for j in s.jobs}


def test_during_a_run(out):
    finish(out, "pics", "a", 10.0)
    finish(out, "pics", "b", 20.0)
    finish(out, "pics", "c", 0.5, ok=False)
    with run_lock.RunLock(out):   # the run is still going
        s = status.read_status(out)
        assert s.running_pid == os.getpid()
    assert counts(s) == {"pics": (2, 1, 1), "slow": (0, 0, 2)}
    assert (s.done, s.failed, s.pending) == (2, 1, 3)
    # pics/d at pics' mean (15 s); slow has none done yet: the mean over all done units (15 s)
    assert s.eta_seconds == pytest.approx(45.0)
    assert s.jobs[0].failures == [("pics/c", "photo.png: truncated or corrupt image")]
    text = console.format_status(s)
    assert f"running (pid {os.getpid()})" in text
    assert "pics: 2 done, 1 failed, 1 pending" in text
    assert "failed pics/c: photo.png: truncated or corrupt image" in text
    assert "estimated time left: 45s" in text


def test_after_a_run(out):
    for stem, seconds in zip("abcd", (10, 20, 30, 40)):
        finish(out, "pics", stem, seconds)
    finish(out, "slow", "x", 100.0)
    finish(out, "slow", "y", 1.0, ok=False, error="out of memory")
    s = status.read_status(out)
    assert counts(s) == {"pics": (4, 0, 0), "slow": (1, 1, 0)}
    assert s.running_pid is None and s.eta_seconds is None
    assert s.jobs[1].seconds == pytest.approx(101.0)
    text = console.format_status(s)
    assert "running" not in text and "estimated" not in text
    assert "slow: 1 done, 1 failed, 0 pending; 1m41s spent" in text
    assert "time spent: 3m21s in units" in text


def test_eta_uses_each_jobs_own_pace(out):
    finish(out, "pics", "a", 2.0)
    finish(out, "slow", "x", 100.0)
    s = status.read_status(out)
    assert s.eta_seconds == pytest.approx(3 * 2.0 + 1 * 100.0)
    assert "(when run again)" in console.format_status(s)  # stopped: nothing is running


def test_eta_weighs_units_by_their_planned_cost(tmp_path):
    """Units carry their cost (plan.Unit.cost, steps × pixels): a job with nothing done yet is
    estimated at the pace of the others per unit of cost, not per unit."""
    out = tmp_path / "out"
    frames = [{**_unit(out, "clip", f"c/{i:06d}"), "cost": 1.0 if i else 4.0} for i in range(5)]
    big = [{**_unit(out, "big", s), "cost": 16.0} for s in "ab"]
    plan = {"jobs": [{"name": "clip", "kind": "video"}, {"name": "big", "kind": "images"}],
            "units": frames + big,
            "videos": [{"key": "clip/c#video", "job": "clip", "hash": "v", "outputs": {},
                        "frame_keys": [u["key"] for u in frames]}]}
    (out / ".batch_style").mkdir(parents=True)
    (out / ".batch_style" / "plan.json").write_text(json.dumps(plan))
    finish(out, "clip", "c/000000", 8.0)    # cost 4: 2 s per unit of cost
    # four frames of cost 1 (4 × 2 s), two big images of cost 16 at the same pace (2 × 32 s)
    assert status.read_status(out).eta_seconds == pytest.approx(4 * 2.0 + 2 * 32.0)
    finish(out, "big", "a", 10.0)           # big's own pace from now on
    assert status.read_status(out).eta_seconds == pytest.approx(4 * 2.0 + 10.0)


def test_a_redo_or_a_lost_output_is_pending(out):
    finish(out, "pics", "a", 1.0)
    finish(out, "pics", "b", 1.0)
    ledger.Ledger.for_output(out).append({"key": "pics/a", "hash": "other inputs",
                                          "status": "done"})
    (out / "pics" / "b.png").unlink()
    assert counts(status.read_status(out))["pics"] == (0, 0, 4)


def test_no_run_here(tmp_path):
    with pytest.raises(UserError, match="no batch-style run here"):
        status.read_status(tmp_path)


def test_cli_status(out, capsys):
    finish(out, "pics", "a", 3.0)
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 done, 0 failed, 5 pending" in printed and "not running" in printed


# -- workers' progress files ------------------------------------------------------------------
def progress(step: int, steps: int = 100, loss: float = 123.0):
    return SimpleNamespace(step=step, steps=steps, scale=0, scales=1, elapsed=1.0,
                           losses=SimpleNamespace(total=loss))


def test_worker_beat_writes_throttled_and_clears(out):
    state = out / ".batch_style"
    beat = events.WorkerBeat(state, "pics/d", gpu="0")
    path = state / "workers" / f"{os.getpid()}.json"
    assert json.loads(path.read_text())["step"] == 0   # shows up as soon as the unit starts
    beat.last = 0.0
    beat.update(progress(5))
    assert json.loads(path.read_text())["step"] == 5
    beat.update(progress(6))                           # within BEAT_EVERY_S: not written
    assert json.loads(path.read_text())["step"] == 5
    beat.done()
    assert not path.exists()
    events.WorkerBeat(None, "x").update(progress(1))   # `stylize`: no state folder, no file


def test_status_shows_busy_workers(out):
    finish(out, "pics", "a", 1.0)
    state = out / ".batch_style"
    beat = events.WorkerBeat(state, "pics/b", gpu="1")
    beat.last = 0.0
    beat.update(progress(40, 150, 2.5e5))
    # A file left by a unit that has finished since, and one of a dead worker: neither is busy.
    (state / "workers" / "1.json").write_text(json.dumps(
        {**beat.info, "key": "pics/a", "started": 0, "step": 9, "steps": 9}))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (state / "workers" / f"{dead}.json").write_text(json.dumps(
        {"pid": int(dead), "key": "pics/c", "started": time.time(), "step": 3, "steps": 9}))
    with run_lock.RunLock(out):
        s = status.read_status(out)
    assert [w["key"] for w in s.workers] == ["pics/b"]
    assert "busy: pics/b  step 40/150  loss 2.5e+05" in console.format_status(s)
    assert "GPU 1" in console.format_status(s)


# -- the run's display ------------------------------------------------------------------------
EVENTS = [("start", {"total": 4, "todo": 3, "skipped": 1}),
          ("unit_start", {"key": "pics/b", "attempt": 1}),
          ("unit_done", {"key": "pics/b", "status": "done", "seconds": 2.0,
                         "losses": {"total": 5.0}}),
          ("unit_start", {"key": "pics/c", "attempt": 1}),
          ("unit_done", {"key": "pics/c", "status": "failed", "seconds": 0.1, "losses": {},
                         "error": "photo.png: truncated"}),
          ("video_done", {"key": "clip/x#video", "outputs": ["out/clip/x.mp4"]})]


def play(display: console.RunDisplay, output: Path | None = None) -> str:
    for kind, data in EVENTS:
        if kind == "start" and output is not None:
            data = {**data, "output": str(output)}
        display.event(kind, data)
    display.close(RunSummary(done=1, skipped=1, failed=[("pics/c", "photo.png: truncated")]))
    return display.stream.getvalue()


def test_display_without_a_terminal_writes_plain_lines():
    text = play(console.RunDisplay(io.StringIO(), poll_s=0))
    assert "\r" not in text and "\x1b" not in text
    assert text.startswith("4 units (pictures and frames): 1 already done, 3 to do;")
    assert "done    pics/b  2.0 s  loss 5" in text
    assert "FAILED  pics/c: photo.png: truncated" in text
    assert "progress:" not in text   # at most one progress line a minute: none in a short run
    assert text.endswith("  failed: pics/c: photo.png: truncated\n")


def test_display_eta_weighs_units_by_their_cost():
    """A run whose first unit is its big one: the ETA counts the work left, not the units."""
    display = console.RunDisplay(io.StringIO(), poll_s=0, plain_every_s=0)
    display.event("start", {"total": 3, "todo": 3, "skipped": 0,
                            "costs": {"pics/big": 100.0, "pics/a": 10.0, "pics/b": 10.0}})
    display.started -= 100.0                # the big unit took 100 s
    display.event("unit_done", {"key": "pics/big", "status": "done", "seconds": 100.0,
                                "losses": {"total": 1.0}})
    eta = display.stream.getvalue().rsplit("ETA ", 1)[1].split(";")[0].strip()
    assert eta == "20s"                     # per unit it would have said 3m20s
    display.close(RunSummary(done=1))


def test_display_eta_counts_the_busy_units_steps(out):
    """Between one unit's end and the next one's, the ETA goes down as the busy units step."""
    display = console.RunDisplay(io.StringIO(), poll_s=0, plain_every_s=0)
    display.event("start", {"total": 3, "todo": 3, "skipped": 0, "output": str(out),
                            "costs": {"pics/a": 100.0, "pics/b": 10.0, "pics/c": 10.0}})
    display.started -= 100.0
    display.event("unit_done", {"key": "pics/a", "status": "done", "seconds": 100.0,
                                "losses": {"total": 1.0}})
    beat = events.WorkerBeat(out / ".batch_style", "pics/b")
    beat.last = 0.0
    beat.update(progress(5, 10, 3.0))       # half of pics/b's 10 done
    display.event("unit_start", {"key": "pics/b", "attempt": 1})
    eta = display.stream.getvalue().rsplit("ETA ", 1)[1].split(";")[0].strip()
    # 1 s per unit of work (pics/a), 15 left once pics/b's 5 done count: 15 s (without the busy
    # unit's steps: 20 s). The terminal and `status` estimate alike (pipeline/state/progress.py).
    assert eta == "15s"
    display.close(RunSummary(done=1))


def test_display_without_a_terminal_progress_lines(out):
    beat = events.WorkerBeat(out / ".batch_style", "pics/b")
    beat.last = 0.0
    beat.update(progress(7, 10, 3.0))
    display = console.RunDisplay(io.StringIO(), poll_s=0, plain_every_s=0)
    display.event("start", {"total": 4, "todo": 3, "skipped": 1, "output": str(out)})
    display.event("unit_start", {"key": "pics/b", "attempt": 1})
    text = display.stream.getvalue()
    assert "progress: 0/3 units; busy: pics/b  step 7/10  loss 3" in text
    assert "\r" not in text and "\x1b" not in text


def test_display_polls_in_the_background_without_a_terminal(out):
    display = console.RunDisplay(io.StringIO(), poll_s=0.05, plain_every_s=0.05)
    display.event("start", {"total": 2, "todo": 2, "skipped": 0, "output": str(out)})
    time.sleep(0.3)
    display.close(RunSummary())
    text = display.stream.getvalue()
    assert text.count("progress: 0/2 units") >= 2   # written by the poller, no event needed
    assert "\r" not in text and "\x1b" not in text


def test_display_on_a_terminal_shows_bar_and_busy_workers(out):
    beat = events.WorkerBeat(out / ".batch_style", "pics/b", gpu="0")
    beat.last = 0.0
    beat.update(progress(12, 150, 4.2e4))
    display = console.RunDisplay(io.StringIO(), poll_s=0, tty=True)
    display.event("start", {"total": 4, "todo": 4, "skipped": 0, "output": str(out)})
    display.event("unit_start", {"key": "pics/b", "attempt": 1})
    display.event("unit_start", {"key": "pics/c", "attempt": 1})
    screen = display.stream.getvalue()
    last = screen.rsplit("\x1b[J", 1)[1]   # what is on screen after the last redraw
    assert last.splitlines() == ["░" * 24 + " 0/4 units",
                                 "  pics/b  step 12/150  loss 4.2e+04  [" + beat.info["worker"]
                                 + ", GPU 0]",
                                 "  pics/c  starting (0s)"]
    display.event("unit_done", {"key": "pics/b", "status": "done", "seconds": 3.0,
                                "losses": {"total": 1.0}})
    last = display.stream.getvalue().rsplit("\x1b[J", 1)[1]
    assert "pics/b" not in last and "1/4 units" in last and "ETA" in last
    display.event("report", {"path": str(out / "report.html")})
    display.close(RunSummary(done=1))
    # the summary, then where the results are; the last line names the report
    assert display.stream.getvalue().endswith(
        f"batch-style: 1 done, 0 already done in 0s\nbatch-style: results in {out}/\n"
        f"batch-style: report: {out / 'report.html'}\n")


def test_display_eta_leaves_out_the_first_units_loading_and_compiling():
    """A worker's first unit loads TensorFlow and compiles (its `warmup`); the next units do not:
    the ETA is at the steps' pace, not twice as long."""
    display = console.RunDisplay(io.StringIO(), poll_s=0, plain_every_s=0)
    display.event("start", {"total": 3, "todo": 3, "skipped": 0,
                            "costs": {"pics/a": 10.0, "pics/b": 10.0, "pics/c": 10.0}})
    display.event("unit_done", {"key": "pics/a", "status": "done", "seconds": 30.0,
                                "warmup": 20.0, "losses": {"total": 1.0}})
    eta = display.stream.getvalue().rsplit("ETA ", 1)[1].split(";")[0].strip()
    assert eta == "20s"                     # with the start-up counted: 1m00s
    display.close(RunSummary(done=1))


def test_status_counts_a_videos_assembly_apart_from_its_frames(out):
    from batch_style.views.status import JobStatus, RunStatus

    job = JobStatus("clip", done=3, pending=32, videos=1)
    text = console.format_status(RunStatus(output=out, jobs=[job], running_pid=None,
                                           eta_seconds=None))
    assert text.splitlines()[0] == (f"{out}: 3 done, 0 failed, 32 pending; video 0 of 1 "
                                    f"assembled — not running: run the same command to finish")


def test_a_worker_says_what_it_does_before_its_first_step(out):
    """Loading TensorFlow and the model, measuring and compiling take a first unit tens of
    seconds: its line says which, then its steps as soon as the first one ends."""
    beat = events.WorkerBeat(out / ".batch_style", "pics/b")
    beat.phase("loading the model")
    display = console.RunDisplay(io.StringIO(), poll_s=0, plain_every_s=0)
    display.event("start", {"total": 1, "todo": 1, "skipped": 0, "output": str(out)})
    display.event("unit_start", {"key": "pics/b", "attempt": 1})
    assert "busy: pics/b  loading the model (0s)" in display.stream.getvalue()
    beat.update(progress(1, 10, 3.0))       # at once, however soon after the phase
    display.event("unit_start", {"key": "pics/b", "attempt": 1})
    assert "busy: pics/b  step 1/10  loss 3" in display.stream.getvalue()
    display.close(RunSummary())
