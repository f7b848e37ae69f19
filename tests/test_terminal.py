"""What a person at a terminal meets: the progress bar on a real pseudo-terminal (and plain lines
without one), the run's first line, Ctrl-C at any moment, a closed pipe, a manifest given where
the output folder was meant."""

from __future__ import annotations

import os
import random
import re
import select
import signal
import subprocess
import sys

import pytest
from conftest import (
    REPO,
    _default_sigint,
    cli_env,
    folder_manifest,
    kill_group,
    ledger_records,
    temporaries,
)
from PIL import Image

REDRAW = re.compile(r"\r(?!\n)")  # a carriage return of a redraw (a pty turns \n into \r\n)


def run_in_pty(command: list[str], timeout: float = 180) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as its stdin, stdout and stderr, as in a terminal
    window; (exit status, everything it wrote there)."""
    master, slave = os.openpty()
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave,
                               env=cli_env(COLUMNS="120"), cwd=REPO, start_new_session=True,
                               preexec_fn=_default_sigint)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                kill_group(process)
                pytest.fail(f"no output for {timeout} s from {command}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has ended
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def stylize_args(media_dir, out, steps: int = 12) -> list:
    return ["stylize", media_dir / "photo.png", media_dir / "style.png", "-o", out, "--tiny",
            "--size", "48", "--steps", str(steps), "--optimizer", "adam"]


# -- the bar ----------------------------------------------------------------------------------
def test_stylize_on_a_terminal_redraws_one_bar_line_in_place(cli, media_dir, tmp_path):
    code, text = run_in_pty(cli.command(*stylize_args(media_dir, tmp_path / "r.png")))
    assert code == 0, text
    redraws = [part for part in REDRAW.split(text) if "step " in part]
    assert len(redraws) >= 3, text      # a step after another, on the same line
    assert "\x1b[K" in text and "step 12/12" in text
    assert "wrote " in text


def test_stylize_without_a_terminal_writes_plain_lines(cli, media_dir, tmp_path):
    done = cli.run(*stylize_args(media_dir, tmp_path / "r.png"))
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    assert "step 12/12" in done.stderr


def test_run_on_a_terminal_shows_its_bar_and_a_line_per_busy_worker(cli, media_dir,
                                                                    write_manifest):
    manifest = folder_manifest(write_manifest, media_dir)
    code, text = run_in_pty(cli.command("run", manifest, "--tiny", "--workers", "1"))
    assert code == 0, text
    assert "\x1b[J" in text                             # the live area, cleared and redrawn
    assert re.search(r"[█░]{24} \d/3 units", text), text  # the overall bar
    assert re.search(r"\n  fold/[abc]  ", text.replace("\r\n", "\n")), text  # a busy worker
    assert "3 done, 0 already done" in text


def test_run_without_a_terminal_writes_plain_lines(cli, media_dir, write_manifest):
    manifest = folder_manifest(write_manifest, media_dir)
    done = cli.run("run", manifest, "--tiny", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    assert "done    fold/a" in done.stderr


# -- the first line -----------------------------------------------------------------------------
def test_run_says_its_plan_before_tensorflow_loads(cli, media_dir, write_manifest):
    """The first line comes at once: before any process of the run imports TensorFlow (Python's
    import-time lines, written as each module loads, mark the moment)."""
    manifest = folder_manifest(write_manifest, media_dir)
    done = cli.run("run", manifest, "--tiny", "--workers", "1", PYTHONPROFILEIMPORTTIME="1")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    plan = next(i for i, line in enumerate(lines) if line.startswith("3 units (pictures and "
                                                                       "frames): 0 already done, "
                                                                       "3 to do"))
    tensorflow = next(i for i, line in enumerate(lines) if re.search(r"\|\s+tensorflow$", line))
    assert plan < tensorflow
    log = (manifest.parent / "out" / "run.log").read_text()
    assert "3 units (pictures and frames): 0 already done, 3 to do" in log


# -- Ctrl-C ---------------------------------------------------------------------------------------
def interrupt_at(cli, seconds: float, *args) -> subprocess.CompletedProcess:
    """Start batch-style, send Ctrl-C (SIGINT to its process group, as a terminal does) after
    `seconds`, and wait for it to end."""
    process = cli.spawn(*args)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        kill_group(process, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_interrupted(done: subprocess.CompletedProcess, when: float) -> None:
    what = f"Ctrl-C at {when:.2f} s: {done.stderr[-1500:]}"
    assert done.returncode == 130, what
    assert done.stderr.count("interrupted") == 1, what
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, what


def interrupt_stylize(cli, media_dir, tmp_path, when: float) -> None:
    out = tmp_path / f"at{when:.2f}.png"
    # --tolerance 0: the tiny network would otherwise converge, and finish, within seconds
    done = interrupt_at(cli, when, *stylize_args(media_dir, out, steps=100000),
                        "--progress-gif", tmp_path / f"at{when:.2f}.gif", "--tolerance", "0")
    assert_interrupted(done, when)
    assert not out.exists() and not temporaries(tmp_path)


def interrupt_run(cli, media_dir, write_manifest, when: float) -> bool:
    """Ctrl-C a run at `when`; whether it was interrupted (False: it had finished)."""
    manifest = write_manifest([{"name": "fold", "content": str(media_dir / "folder"),
                                "style": str(media_dir / "style.png")}],
                              # tolerance 0: on a quiet CPU the tiny network converges in seconds
                              defaults={"size": 48, "steps": 100000, "optimizer": "adam",
                                        "tolerance": 0},
                              name=f"at{when:.2f}.yaml", output=f"out{when:.2f}")
    out = manifest.parent / f"out{when:.2f}"
    done = interrupt_at(cli, when, "run", manifest, "--tiny", "--workers", "1")
    if done.returncode == 0:
        return False  # finished first: nothing was interrupted
    assert_interrupted(done, when)
    assert not temporaries(out)
    if out.exists():
        for record in ledger_records(out):
            for path in record.get("outputs", []):
                Image.open(path).load()  # every file the ledger calls done is whole
    return True


def test_ctrl_c_always_ends_as_interrupted(cli, media_dir, tmp_path, write_manifest):
    interrupt_stylize(cli, media_dir, tmp_path, 0.4)    # while Python loads our modules
    interrupt_stylize(cli, media_dir, tmp_path, 6.0)    # while TensorFlow loads or steps
    interrupt_run(cli, media_dir, write_manifest, 5.0)


@pytest.mark.slow
def test_twenty_ctrl_cs_at_random_moments_all_end_as_interrupted(cli, media_dir, tmp_path,
                                                                  write_manifest):
    rng = random.Random(os.environ.get("BATCH_STYLE_TEST_SEED", "ctrl-c"))
    interrupted = 0
    for i in range(20):
        when = rng.uniform(0.2, 12.0)
        if i % 2:
            interrupted += interrupt_run(cli, media_dir, write_manifest, when)
        else:
            interrupt_stylize(cli, media_dir, tmp_path, when)
            interrupted += 1
    print(f"{interrupted} of 20 Ctrl-Cs interrupted (the rest came after the run had ended)")
    assert interrupted >= 18


# -- pipes and slips --------------------------------------------------------------------------
@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_a_reader_that_closes_the_pipe_ends_it_quietly(reader):
    """`… | head -1`, and a reader gone before the first line (`true`), as `head` expects: no
    message, exit 0 or 141 (SIGPIPE's)."""
    command = f"'{sys.executable}' -m batch_style stylize --help"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | {reader}"],
                          capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=120)
    assert done.stdout == ("usage: batch-style stylize [-h] [-o OUTPUT] [--progress-gif PATH]\n"
                           if reader == "head -1" else "")
    assert done.stderr == ""
    assert done.returncode in (0, 141)


def test_status_and_report_given_the_manifest_follow_it_to_its_output(cli, media_dir,
                                                                       write_manifest):
    manifest = folder_manifest(write_manifest, media_dir)
    for command in ("status", "report"):
        done = cli.run(command, manifest)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert "does not exist yet: run it first" in done.stderr
    assert cli.run("run", manifest, "--tiny", "--workers", "0").returncode == 0
    status = cli.run("status", manifest)
    assert status.returncode == 0, status.stderr
    assert "3 done, 0 failed, 0 pending" in status.stdout
    assert f"its output folder is {manifest.parent / 'out'}" in status.stderr
    report = cli.run("report", manifest)
    assert report.returncode == 0 and "report.html" in report.stdout
    # `status OUT | head -1`, its reader gone before the first line (unbuffered: each line
    # meets the closed pipe at once)
    command = f"'{sys.executable}' -m batch_style status '{manifest.parent / 'out'}'"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | (exec 0<&-; sleep 2)"],
                          capture_output=True, text=True, env=cli_env(PYTHONUNBUFFERED="1"),
                          cwd=REPO, timeout=120)
    assert (done.returncode, done.stderr) in ((0, ""), (141, ""))


def test_status_given_a_file_that_is_no_manifest_says_so_in_one_line(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("not a manifest: [\n")
    done = cli.run("status", tmp_path / "notes.txt")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("a file; expected a run's output folder (the `output:` "
                                        "of its manifest)")
    assert done.stderr.count("\n") == 1
