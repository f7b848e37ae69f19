"""Files the run writes or reads, opened so that they cannot lead it astray: never out of its
folder through a link, never a FIFO or a device, never of any size."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from batch_style.errors import UserError


def leads_out(path: Path, root: Path) -> str | None:
    """Where `path` really is when that is outside `root` (through a symbolic link), else None.

    Both are resolved, so an output folder that is itself a link, and links that stay inside
    it, are fine. Parts of `path` that do not exist yet are taken as they are written.
    """
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    return None if os.path.commonpath([real_root, real]) == real_root else real


def walk_problems(root: Path, paths: Iterable[tuple[Path, bool, str | None]],
                  owner: Callable[[Path, str | None], str | None]
                  ) -> list[tuple[Path, str, str | None]]:
    """What under `paths` would make a run write outside `root`, or block: (path, what is wrong,
    its owner), `paths` being (path, whether it is a folder, its owner), `owner(path, default)`
    naming the owner of a path found inside them.

    A symbolic link is fine when it stays inside `root`; one that leads out is not, at any depth.
    Anything that is neither a folder nor a regular file (a FIFO would block the run, a device
    would be read) is not either.
    """
    found: list[tuple[Path, str, str | None]] = []
    seen: set[str] = set()

    def check(path: Path, folder: bool | None, job: str | None) -> None:
        try:
            info = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            found.append((path, f"cannot be read: {e.strerror}", owner(path, job)))
            return
        if stat.S_ISLNK(info.st_mode):
            target = leads_out(path, root)
            if target is not None:
                found.append((path, f"is a symbolic link to '{target}', outside the output "
                                    f"folder", owner(path, job)))
                return
            try:
                info = path.stat()
            except OSError:
                return  # a dangling link inside: writing replaces the link itself
        if stat.S_ISDIR(info.st_mode):
            if folder is False:
                found.append((path, "exists and is a folder, not a file", owner(path, job)))
                return
            real = os.path.realpath(path)
            if real in seen:
                return
            seen.add(real)
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except OSError as e:
                found.append((path, f"cannot be listed: {e.strerror}", owner(path, job)))
                return
            for entry in entries:
                check(Path(entry.path), None, job)
        elif folder is True:
            found.append((path, "exists and is not a folder", owner(path, job)))
        elif not stat.S_ISREG(info.st_mode):
            found.append((path, "is not a regular file (a FIFO, socket or device); remove it",
                          owner(path, job)))

    for path, folder, owner_of_path in paths:
        check(path, folder, owner_of_path)
    return found


def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open for a regular file, never blocking: a FIFO where a file is expected would stop
    the run for good (open() waits for a writer), a device would be read without end.

    Raises UserError naming the file when it is anything else than a regular file.
    """
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError("is not a regular file (a FIFO, socket or device); remove it",
                            file=path)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_capped(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; UserError otherwise (FileNotFoundError
    passes through: a missing file is for the caller to judge)."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UserError(f"larger than {max_bytes // 2**20} MB; not {what}", file=path)
    return data
