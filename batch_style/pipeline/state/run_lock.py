"""One run per output folder: an flock on OUTPUT/.batch_style/lock, and who holds it."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Self

from batch_style.atomic import process_alive
from batch_style.errors import UserError
from batch_style.pipeline.state.run_folder import MAX_SMALL_BYTES, lock_path
from batch_style.pipeline.state.safe_files import open_regular, read_capped

log = logging.getLogger("batch_style")


class RunLock:
    """Only one batch-style run may write into an output folder at a time.

    An exclusive `flock` on OUTPUT/.batch_style/lock. The kernel drops it when the holder's
    process dies, however it dies, so a crashed or killed run never leaves a stale lock; the file
    itself stays and only carries the holder's pid, host and start time for the message.
    The lock belongs to the open file, so a child made by a bare fork() would share it: workers must
    be started by spawn/exec (joblib's loky does), which closes the non-inheritable descriptor.
    flock may not work across machines on network file systems; where it fails outright (ENOLCK,
    EOPNOTSUPP…) the run warns and goes on without the lock.
    """

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir)
        self.path = lock_path(self.output_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise UserError naming the run that holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # No O_TRUNC: until we hold the lock, the file describes the run that does.
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            raise UserError(f"cannot write the run state here: {e.strerror}",
                            file=self.output_dir) from e
        try:
            _flock_briefly_waiting(fd)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(f"another batch-style run{holder} is using this output folder; "
                            "wait for it or stop it", file=self.output_dir) from None
        except OSError as e:
            # NFS without its lock daemon, Lustre mounted without `flock`: no locks here at all.
            # Refusing would make such folders unusable; the run goes on unguarded.
            log.warning("cannot lock %s (%s): this file system does not support flock; make "
                        "sure no other batch-style run writes into %s", self.path,
                        e.strerror or e, self.output_dir)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _write_holder(fd)

    def release(self) -> None:
        """Let the lock go (closing the file releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _write_holder(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    data = json.dumps(info).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read_holder(fd: int) -> str:
    """' (pid 1234 on host, started 2026-11-28 08:00)', or '' if the holder has not written it yet."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(info["started"])))
        return f" (pid {int(info['pid'])} on {info['host']}, started {started})"
    except (ValueError, TypeError, KeyError, OverflowError, OSError):
        # Between its flock and its write the holder's file is empty; the message just says less.
        return ""


def running_pid(output: Path) -> int | None:
    """The pid of a run holding the output folder's lock, or None.

    Probing the lock takes it for a moment, and a run starting in that moment would be refused;
    so the lock is probed only when its file names a process that is alive. A run writes its
    pid there right after taking the lock; before that the file names the last run (or nobody).
    """
    path = lock_path(output)
    try:
        holder = json.loads(read_capped(path, MAX_SMALL_BYTES, "a lock")
                            or b"{}")
        pid, host = int(holder.get("pid", 0)), holder.get("host")
    except (OSError, UserError, ValueError, TypeError, AttributeError):
        return None
    if not pid or (host == socket.gethostname() and not process_alive(pid)):
        return None
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return pid
        except OSError:  # no flock on this file system (NFS, Lustre): the live holder it names
            return pid
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _flock_briefly_waiting(fd: int, wait_s: float = 1.0) -> None:
    """flock(LOCK_EX) that waits up to `wait_s`: `batch-style status` holds the lock for an
    instant to see whether a run is alive, which must not make a starting run refuse."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
