"""Atomic file writes: a file appears under its final name only when it is complete."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

# Every temporary name carries this mark of ours, so that leftovers of a killed run can be told
# from anybody else's files: `.NAME.batch-style-tmp-PID-RANDOM.SUFFIX`. A sweep removes nothing
# that does not match it to the letter (TEMPORARY).
TMP_MARK = ".batch-style-tmp-"
_RANDOM_BYTES = 4  # 8 hex digits: two writers in one process never collide in practice
_MAX_PID_DIGITS = 9  # Linux pids stay below 2**22; longer digit runs are not pids
TEMPORARY = re.compile(r"\.(?P<name>.*)" + re.escape(TMP_MARK)
                       + rf"(?P<pid>\d{{1,{_MAX_PID_DIGITS}}})-[0-9a-f]{{{2 * _RANDOM_BYTES}}}"
                       r"(?:\.[^./]*)?")
NAME_MAX = 255  # bytes of a file name on the usual file systems (ext4, XFS, APFS, NTFS)


def temporary_name(final: Path) -> Path:
    """`.NAME.batch-style-tmp-PID-RANDOM.SUFFIX` next to `final`.

    Hidden (leading dot) so globs like `*.png` do not pick it up, and ending in the final suffix so
    writers that choose a format from the extension (Pillow, ffmpeg) still choose the right one.
    NAME is shortened where needed so that the temporary fits in a name wherever `final` does.
    """
    final = Path(final)
    token = secrets.token_hex(_RANDOM_BYTES)
    tail = f"{TMP_MARK}{os.getpid()}-{token}{final.suffix}"
    room = NAME_MAX - 1 - len(os.fsencode(tail))
    name = os.fsencode(final.name)[:room].decode(errors="ignore")  # whole characters only
    return final.with_name(f".{name}{tail}")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success move the finished file onto `final`.

    The folder is created if needed. The body must create the file at the yielded path. On
    success the file is fsynced, renamed over `final` (os.replace is atomic within one file
    system, hence the same folder) and the folder is fsynced so the rename survives a power
    cut. On any exception the temporary is
    removed and the exception propagates; `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        # BaseException too: Ctrl-C or a worker being stopped must not leave a temporary behind.
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


@contextlib.contextmanager
def scratch_path(near: Path) -> Iterator[Path]:
    """Yield a temporary path next to `near` that is always removed afterwards.

    For intermediate files (e.g. a video before its audio is muxed in). Named like atomic_path's
    temporaries, so clean_temporaries() removes any a killed process left.
    """
    tmp = temporary_name(Path(near))
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write `data` to `final` atomically."""
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(final: Path, text: str) -> None:
    """Write `text` (UTF-8) to `final` atomically."""
    atomic_write_bytes(final, text.encode("utf-8"))


def clean_temporaries(folder: Path, *, recursive: bool = True) -> int:
    """Remove temporaries left by killed writers in `folder` (and below it, when `recursive`);
    return how many.

    Only files named by temporary_name() go, so a user's own `.x.tmp-old` stays. A temporary
    whose writer process is still alive is kept: removing it would make that writer's final
    rename fail (several workers may share an output folder). Symbolic links to folders are not
    followed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    paths = folder.rglob(f".*{TMP_MARK}*") if recursive else folder.glob(f".*{TMP_MARK}*")
    for path in paths:
        match = TEMPORARY.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_file() or \
                process_alive(int(match["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` is running on this machine (the writer of a temporary, the holder
    of a lock, a busy worker)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError as e:
        return e.errno not in (errno.ESRCH, errno.EINVAL)
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file's name in `folder` durable."""
    # Directories can only be opened and fsynced on POSIX; elsewhere the rename is the best we get.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
