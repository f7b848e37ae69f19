"""Where a command may write, checked before any work: only where files can be made, and
never onto a file the command reads (`stylize`'s result, progress GIF and numbered pictures;
a manifest's output folder)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from batch_style.errors import UserError
from batch_style.pipeline.units import DISK_FULL


def unwritable(folder: Path, shown: Callable[[Path], str] = str) -> str | None:
    """Why no file can be made in `folder` (which need not exist yet), found without writing:
    its nearest existing ancestor is not a folder, or cannot be written (permissions, a
    read-only mount); None when it can. `shown` writes a path for the message."""
    existing = Path(os.path.abspath(folder))
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"'{shown(existing)}' is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only(existing) else "permission denied"
        return f"cannot write into '{shown(existing)}': {why}"
    return None


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _names(path: str | os.PathLike) -> set[str]:
    """The file as given (a link replaced by a write is the input its name meant) and as it is."""
    return {os.path.abspath(path), os.path.realpath(path)}


def input_at(path: Path, inputs: Iterable[str | os.PathLike]) -> str | None:
    """The input a file written at `path` would replace (None: none)."""
    written = _names(path)
    return next((str(i) for i in inputs if _names(i) & written), None)


def numbered_input(result: Path, inputs: Iterable[str | os.PathLike]) -> str | None:
    """The input that a numbered picture beside `result` (`--save-every`:
    STEM[.scaleN].NNNN.SUFFIX, any step) would replace (None: none)."""
    pattern = re.compile(re.escape(result.stem) + r"(\.scale\d+)?\.\d{4,}" + re.escape(result.suffix))
    folder = os.path.realpath(result.parent)
    for given in inputs:
        for name in _names(given):
            if os.path.realpath(os.path.dirname(name)) == folder and \
                    pattern.fullmatch(os.path.basename(name)):
                return str(given)
    return None


def output_file(text: str, flag: str, suffixes: tuple[str, ...], default_name: str,
                 inputs: list[str]) -> Path:
    """Where `stylize` writes, checked before any work: a folder (one that exists, or any name
    ending in /) gets `default_name` in it, a name without an extension gets its extension; the
    name must end in one of `suffixes`, must not be an input, and its folder must be writable."""
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        path = path / default_name  # a folder, made with the result if it is not there yet
    elif not path.suffix:
        path = path.with_name(path.name + Path(default_name).suffix)  # `-o result`: result.png
    if path.suffix.lower() not in suffixes:
        raise UserError(f"expected a file name ending in {' or '.join(suffixes)}, or a folder "
                        f"(ending in /), got {text!r}", field=flag)
    if input_at(path, inputs):
        raise UserError(f"{str(path)!r} is an input; the result would overwrite it", field=flag)
    if path.exists() and not path.is_file():
        raise UserError(f"{str(path)!r} exists and is not a regular file", field=flag)
    problem = unwritable(path.parent)
    if problem:
        raise UserError(problem, field=flag)
    return path


@contextlib.contextmanager
def writing(path: Path) -> Iterator[Path]:
    """A full disk while writing `path`: one line naming it (exit 1), not an internal error."""
    try:
        yield path
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise UserError(f"cannot write it: {(e.strerror or 'no space left').lower()}; free some "
                        f"space and run again", file=path) from None
