"""Kill tests for batch_style.orchestrator: SIGKILL the run or one worker, then check what is on disk."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    SMALL,
    folder_manifest,
    group_alive,
    kill_group,
    ledger_records,
    temporaries,
    wait_for,
)
from PIL import Image

from batch_style import orchestrator as runner
from batch_style.media import video
from batch_style.pipeline.state import ledger, run_folder

FRAMES = 12  # the clip's first 0.4 s
UNITS = 1 + 3 + FRAMES


def kill_jobs(media_dir: Path) -> list[dict]:
    style = str(media_dir / "style.png")
    return [
        {"name": "pair", "content": str(media_dir / "photo.png"), "style": style,
         "outputs": ["image", "progress_gif"]},
        {"name": "fold", "content": str(media_dir / "folder"), "style": style},
        {"name": "clip", "video": str(media_dir / "clip.mp4"), "style": style, "end": 0.4,
         "outputs": ["mp4", "gif", "frames"]},
    ]


def done_count(out: Path) -> int:
    if not ledger.ledger_path(out).exists():
        return 0
    return sum(r["status"] == "done" for r in ledger_records(out))


def check_complete(out: Path) -> None:
    """Every output decodes (the MP4 and GIF with all frames), no temporary is left, and no unit
    was done twice: a done record is written after its outputs, so nothing behind one is redone."""
    records = ledger_records(out)
    latest = {r["key"]: r for r in records}
    assert len(latest) == UNITS + 1 and all(r["status"] == "done" for r in latest.values())
    for record in latest.values():
        for path in map(Path, record["outputs"]):
            if path.suffix == ".mp4":
                assert video.ffprobe_like(path)["frames"] == FRAMES
            else:
                with Image.open(path) as im:
                    im.load()
                    if path.name == "clip.gif":
                        assert im.n_frames == FRAMES
    # A frame redone after a kill starts from the frame before, like every frame but the first.
    frames = sorted(k for k in latest if k.startswith("clip/clip/"))
    assert [latest[k]["steps"] for k in frames] == [SMALL["steps"]] + \
        [SMALL["frame_steps"]] * (FRAMES - 1)
    done_twice = [k for k, n in Counter((r["key"], r["hash"]) for r in records
                                        if r["status"] == "done").items() if n > 1]
    assert not done_twice
    assert not temporaries(out)


def kill_run_once(cli, manifest: Path, rng: random.Random) -> int:
    """Start the run and SIGKILL it with its workers at a random moment; return the finished
    units then."""
    out = manifest.parent / "out"
    process = cli.spawn("run", manifest, "--tiny", "--workers", "1")
    if rng.random() < 0.25:
        time.sleep(rng.uniform(0.2, 3.0))  # start-up: planning, extraction, TensorFlow loading
    else:
        # During the work: after a random number of further units (all of them: assembly).
        target = min(done_count(out) + rng.randint(1, 6), UNITS)
        wait_for(lambda: done_count(out) >= target or process.poll() is not None, 120,
                 f"{target} finished units")
        time.sleep(rng.uniform(0.0, 0.3))
    if process.poll() is not None and process.returncode != 0:
        pytest.fail(f"the run ended by itself ({process.returncode}): {process.communicate()[1]}")
    kill_group(process, signal.SIGKILL)
    process.wait(timeout=30)
    wait_for(lambda: not group_alive(process.pid), 30, "the killed run's workers to go")
    return done_count(out)


def run_killed_repeatedly(media_dir, write_manifest, cli, seed: int, kills: int) -> list[int]:
    """Kill the run `kills` times at seeded random moments, then finish it (in-process) and
    check everything; return the finished units after each kill."""
    rng = random.Random(seed)
    manifest = write_manifest(kill_jobs(media_dir))
    progress = [kill_run_once(cli, manifest, rng) for _ in range(kills)]
    summary = runner.run([manifest], runner.RunOptions(workers=0, tiny=True))
    assert summary.exit_code == 0
    assert not run_folder.scratch_dir(manifest.parent / "out").exists()  # the killed workers'
    assert summary.skipped == min(progress[-1], UNITS)
    check_complete(manifest.parent / "out")
    return progress


def test_run_survives_sigkill_at_random_moments(media_dir, write_manifest, cli):
    progress = run_killed_repeatedly(media_dir, write_manifest, cli, seed=7, kills=2)
    # Seed 7: the first kill lands during the work, the second during start-up (2.5 s in; on a
    # slow machine that may already be during the work). Finished work only ever grows.
    assert 0 < progress[0] <= progress[1]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_run_survives_many_sigkills(media_dir, write_manifest, cli, seed):
    run_killed_repeatedly(media_dir, write_manifest, cli, seed=seed, kills=6)


# -- one worker killed while the orchestrator lives ----------------------------------------------
def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def is_worker(pid: int) -> bool:
    """A loky worker (not loky's resource tracker), and not yet a zombie."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"popen_loky_posix" in cmdline and state != "Z"


def kill_workers(process, times: int) -> list[int]:
    """SIGKILL the run's worker `times` times, each time the next fresh one; return their pids."""
    killed: list[int] = []
    for _ in range(times):
        pid = wait_for(lambda: next((c for c in children(process.pid)
                                     if c not in killed and is_worker(c)), None), 120,
                       "a fresh worker")
        time.sleep(0.3)  # it has its unit by now: workers start when a unit is submitted
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    return killed


def test_killed_worker_is_replaced_and_its_unit_retried(media_dir, write_manifest, cli, tmp_path):
    manifest = folder_manifest(write_manifest, media_dir)
    out = manifest.parent / "out"
    temp = tmp_path / "tmp"
    temp.mkdir()
    process = cli.spawn("run", manifest, "--tiny", "--workers", "1", TMPDIR=str(temp))
    kill_workers(process, 1)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    # Nothing of the run outlives it: not TensorFlow's autograph files (a worker that does not
    # exit cleanly leaves one per traced function), not the killed worker's scratch.
    assert list(temp.iterdir()) == []
    assert not run_folder.scratch_dir(out).exists()
    records = ledger_records(out)
    assert [(r["key"], r["status"], r["attempts"]) for r in records] == \
        [("fold/a", "done", 2), ("fold/b", "done", 1), ("fold/c", "done", 1)]
    assert "fold/a: its worker died; retrying" in (out / "run.log").read_text()


def test_unit_whose_worker_always_dies_fails_and_the_run_goes_on(media_dir, write_manifest, cli):
    manifest = folder_manifest(write_manifest, media_dir)
    out = manifest.parent / "out"
    process = cli.spawn("run", manifest, "--tiny", "--workers", "1")
    kill_workers(process, runner.MAX_ATTEMPTS)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 1, stderr
    records = ledger_records(out)
    assert [(r["key"], r["status"], r["attempts"]) for r in records] == \
        [("fold/a", "failed", 3), ("fold/b", "done", 1), ("fold/c", "done", 1)]
    assert records[0]["error_kind"] == "crash"
    assert f"failed: fold/a: its worker died {runner.MAX_ATTEMPTS} times" in stderr
    wait_for(lambda: not group_alive(process.pid), 30, "the workers to go")


# -- the run killed alone, its workers left behind -----------------------------------------------
def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def test_a_run_killed_alone_takes_its_worker_with_it(media_dir, write_manifest, cli):
    """kill -9 of `run` only (the OOM killer's way): its worker, adopted by init, stops within
    seconds and writes nothing more into OUT (it used to compute its unit to the end)."""
    manifest = write_manifest(
        [{"name": "pair", "content": str(media_dir / "photo.png"),
          "style": str(media_dir / "style.png")}],
        defaults={**SMALL, "steps": 100000, "tolerance": 0.0})
    out = manifest.parent / "out"
    process = cli.spawn("run", manifest, "--tiny", "--workers", "1")
    worker = wait_for(lambda: next((c for c in children(process.pid) if is_worker(c)), None), 120,
                      "the worker")
    # Busy with the unit: its progress file is there.
    wait_for(lambda: any((out / ".batch_style/workers").glob("*.json")), 120,
             "the worker's progress")
    os.kill(process.pid, signal.SIGKILL)  # the run alone, not its group
    process.wait(timeout=30)
    try:
        wait_for(lambda: not is_worker(worker), 20, "the orphaned worker to stop")
        after = files_under(out)
        wait_for(lambda: not group_alive(process.pid), 20, "every process of the run to go")
        assert files_under(out) == after
        assert not (out / "pair/photo.png").exists()
    finally:
        kill_group(process)
