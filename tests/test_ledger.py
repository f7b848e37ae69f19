"""Tests for batch_style.pipeline.state.ledger: the ledger, input hashing and the run lock."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batch_style.errors import UserError
from batch_style.pipeline.state import ledger as ledger_module
from batch_style.pipeline.state import run_lock
from batch_style.pipeline.state.ledger import Ledger, file_digest, ledger_path, unit_hash
from batch_style.pipeline.state.run_lock import RunLock

REPO_ROOT = Path(__file__).resolve().parents[1]


def line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


def record(key: str, status: str = "done", hash: str = "h1", **more: object) -> dict:
    return {"key": key, "status": status, "hash": hash, "time": 1700000000.5, **more}


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(ledger_path(tmp_path / "out"))


def test_round_trip_creates_folders_and_keeps_order(ledger: Ledger) -> None:
    first = record("job/a", outputs=["job/a.png"], losses={"total": 1.25}, attempts=1)
    second = record("job/b", status="failed", error="OOM")
    ledger.append(first)
    ledger.append(second)

    reloaded = Ledger(ledger.path)
    assert reloaded.records() == [first, second]
    assert reloaded.skipped == 0
    assert ledger.path == ledger.path.parents[1] / ".batch_style" / "ledger.jsonl"


def test_lines_are_canonical_json(ledger: Ledger) -> None:
    ledger.append({"status": "done", "key": "k", "time": 2, "hash": "h"})
    assert ledger.path.read_text() == '{"hash":"h","key":"k","status":"done","time":2}\n'


def test_append_fills_in_time_and_rejects_incomplete_records(ledger: Ledger) -> None:
    ledger.append({"key": "k", "status": "done", "hash": "h"})
    assert isinstance(ledger.records()[0]["time"], float)
    with pytest.raises(ValueError):
        ledger.append({"key": "k", "status": "finished", "hash": "h"})
    with pytest.raises(ValueError):
        ledger.append({"key": "k", "status": "done"})
    assert len(ledger.records()) == 1


def test_missing_ledger_reads_empty_and_creates_nothing(tmp_path: Path) -> None:
    ledger = Ledger(ledger_path(tmp_path / "out"))
    assert ledger.records() == []
    assert ledger.latest() == {}
    assert not ledger.is_done("k", "h")
    assert not (tmp_path / "out").exists()


def test_latest_record_per_key_wins(ledger: Ledger) -> None:
    ledger.append(record("a", status="failed", hash="h1"))
    ledger.append(record("b", hash="h1"))
    ledger.append(record("a", status="done", hash="h2"))
    latest = ledger.latest()
    assert set(latest) == {"a", "b"}
    assert latest["a"]["status"] == "done" and latest["a"]["hash"] == "h2"


def test_is_done_needs_done_status_and_same_hash(ledger: Ledger) -> None:
    ledger.append(record("a", hash="h1"))
    ledger.append(record("b", status="failed", hash="h1"))
    assert ledger.is_done("a", "h1")
    assert not ledger.is_done("a", "h2")  # inputs or settings changed since
    assert not ledger.is_done("b", "h1")  # failed is not done
    assert not ledger.is_done("c", "h1")  # never seen
    ledger.append(record("a", status="failed", hash="h1"))
    assert not ledger.is_done("a", "h1")  # a later failure supersedes the earlier success


def test_corrupt_lines_are_skipped_and_counted(ledger: Ledger) -> None:
    good = [record("a"), record("b"), record("c")]
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_bytes(
        line(good[0])
        + b'{"key":"x","status":"do\n'  # truncated JSON
        + b"\x00\xff\xfe garbage \x89PNG\n"  # binary garbage, not UTF-8
        + line(good[1])
        + b'["key","a"]\n'  # a JSON array, not an object
        + b'{"status":"done","hash":"h","time":1}\n'  # missing key
        + b'{"key":"y","status":"running","hash":"h","time":1}\n'  # unknown status
        + b'{"key":7,"status":"done","hash":"h","time":1}\n'  # key of the wrong type
        + b"\n"  # a blank line loses nothing, so it is not counted
        + line(good[2])
    )
    assert ledger.records() == good
    assert ledger.skipped == 6


def test_trailing_line_without_newline_counts_as_truncated(ledger: Ledger) -> None:
    ledger.append(record("a"))
    # Even if the cut-off piece parses, it was never finished: a number cut short still parses.
    with open(ledger.path, "ab") as f:
        f.write(b'{"hash":"h1","key":"b","status":"done","time":17}')
    assert [r["key"] for r in ledger.records()] == ["a"]
    assert ledger.skipped == 1


def test_append_after_truncated_line_starts_a_fresh_line(ledger: Ledger) -> None:
    ledger.append(record("a"))
    with open(ledger.path, "ab") as f:
        f.write(b'{"key":"b","stat')  # the crash
    ledger.append(record("c"))
    assert [r["key"] for r in ledger.records()] == ["a", "c"]
    assert ledger.skipped == 1
    assert ledger.path.read_bytes().endswith(b"\n")


def test_reads_see_appends_from_another_ledger_object(ledger: Ledger) -> None:
    ledger.append(record("a"))
    assert ledger.is_done("a", "h1")
    Ledger(ledger.path).append(record("a", status="failed"))
    assert not ledger.is_done("a", "h1")


def test_unit_hash_follows_bytes_and_settings_not_mtime(tmp_path: Path) -> None:
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    content.write_bytes(b"content bytes")
    style.write_bytes(b"style bytes")
    settings = {"size": 256, "style_weight": 0.01, "layers": ["block1_conv1"]}
    base = unit_hash([content, style], settings)

    assert unit_hash([content, style], dict(reversed(settings.items()))) == base  # key order
    assert unit_hash([style, content], settings) != base  # input order matters
    assert unit_hash([content, style], {**settings, "size": 512}) != base
    assert unit_hash([content, style], {**settings, "style_weight": 0.010000000000000002}) != base
    assert unit_hash([content, style], settings, extra={"frame": 3}) != base

    st = content.stat()
    os.utime(content, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert unit_hash([content, style], settings) == base

    content.write_bytes(b"content bytez")  # same size, other bytes
    assert unit_hash([content, style], settings) != base


def test_unit_hash_accepts_paths_in_settings(tmp_path: Path) -> None:
    init = tmp_path / "init.png"
    assert unit_hash([], {"init": init}) == unit_hash([], {"init": str(init)})
    with pytest.raises(TypeError):
        unit_hash([], {"init": object()})


def test_file_digest_is_sha256_and_memoized(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real_hash_file = ledger_module._hash_file

    def counting_hash_file(path: Path) -> str:
        calls.append(path)
        return real_hash_file(path)

    monkeypatch.setattr(ledger_module, "_hash_file", counting_hash_file)
    frame = tmp_path / "frame.png"
    frame.write_bytes(b"one")
    assert file_digest(frame) == hashlib.sha256(b"one").hexdigest()
    assert file_digest(tmp_path / "." / "frame.png") == hashlib.sha256(b"one").hexdigest()
    assert len(calls) == 1  # the second call (same file, other spelling) came from the memo


def test_file_digest_memo_is_invalidated_when_the_file_changes(tmp_path: Path) -> None:
    frame = tmp_path / "frame.png"
    frame.write_bytes(b"one")
    before = file_digest(frame)
    frame.write_bytes(b"three")  # new size and mtime
    assert file_digest(frame) != before

    # Replaced by rename (how atomic writers work) with the same size and the old mtime: the
    # memo keys on the inode too, so it still notices.
    st = frame.stat()
    replacement = tmp_path / "frame.png.tmp"
    replacement.write_bytes(b"THREE")
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, frame)
    assert file_digest(frame) == hashlib.sha256(b"THREE").hexdigest()


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from batch_style.pipeline.state.run_lock import RunLock
with RunLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def lock_holder(tmp_path: Path):
    """A child process holding the RunLock on tmp_path/out, until the test kills it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    child = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "out")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first_line = child.stdout.readline()
        if first_line != "locked\n":
            child.kill()
            pytest.fail(f"lock holder did not start: {child.communicate(timeout=10)}")
        yield child
    finally:
        child.kill()
        child.communicate(timeout=10)


def test_second_run_is_refused_with_the_holders_pid(tmp_path: Path, lock_holder) -> None:
    with pytest.raises(UserError) as caught:
        RunLock(tmp_path / "out").acquire()
    message = str(caught.value)
    assert f"pid {lock_holder.pid} on " in message
    assert "another batch-style run" in message and "wait for it or stop it" in message
    assert caught.value.file == str(tmp_path / "out")


def test_killed_run_leaves_no_stuck_lock(tmp_path: Path, lock_holder) -> None:
    lock_holder.send_signal(signal.SIGKILL)
    lock_holder.wait(timeout=10)
    with RunLock(tmp_path / "out") as lock:
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid()


def test_lock_is_released_on_exit_and_exclusive_within_a_process(tmp_path: Path) -> None:
    # flock belongs to the open file, so even this process cannot take it twice.
    with RunLock(tmp_path / "out"), pytest.raises(UserError, match=f"pid {os.getpid()} "):
        RunLock(tmp_path / "out").acquire()
    with RunLock(tmp_path / "out"):
        pass  # released by the first `with`, so it can be taken again


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_file_system_without_flock_warns_and_goes_on(tmp_path: Path, monkeypatch, caplog,
                                                       code) -> None:
    # NFS without its lock daemon, Lustre without `-o flock`: flock fails outright, with a plain
    # OSError. The run must not break over it; `batch-style status` still names the holder.

    def flock(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", flock)
    with caplog.at_level(logging.WARNING, "batch_style"), RunLock(tmp_path / "out"):
        assert run_lock.running_pid(tmp_path / "out") == os.getpid()
    assert "does not support flock" in caplog.text
