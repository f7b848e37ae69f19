"""The files a manifest names: paths, folders and globs, never one of its own results."""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from yaml.nodes import Node

from batch_style.media.sequence import stem as video_stem
from batch_style.pipeline.jobs import IMAGE_EXTENSIONS
from batch_style.pipeline.read.yaml_nodes import INVALID, Nodes, got
from batch_style.pipeline.state import run_folder
from batch_style.text import close_file_name

# A job's content may be a glob or a folder: past these many images it is not a job of photos but
# a pattern gone wrong (a `**` over a whole disk).
MAX_CONTENTS = 100_000
# Paths as the file systems take them: a part of a path (a file or folder name) and a whole path.
NAME_MAX = 255       # bytes
PATH_MAX = 4095      # bytes
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # "http:", "concat:", ...; not "C:"
_GLOB_MAGIC = re.compile(r"[*?[]")


class Files:
    """Paths of a manifest made absolute and checked; results folders known to the manifest."""

    def __init__(self, nodes: Nodes, folder: Path):
        self.nodes = nodes
        self.folder = folder    # relative paths in the manifest are relative to this folder
        self.out: Path | None = None  # the output folder, once known
        # Folders the run writes into (resolved): a job's results, the run's state. Their files
        # are never taken as content, and content named there is refused.
        self.result_dirs: dict[str, str] = {}  # resolved folder → the job (or '') writing it

    def path(self, text: str) -> Path:
        return Path(os.path.abspath(self.folder / os.path.expanduser(text)))

    def checked_path(self, text: str, node: Node, field: str) -> Path | None:
        """path(text), or None when the text cannot be a path on this system (reported)."""
        problem = _path_problem(text)
        if problem is not None:
            self.nodes.error(node, field, f"{_shown_text(text)} {problem}")
            return None
        return self.path(text)

    def shown_path(self, path: Path) -> str:
        """A path as short as the manifest would write it: relative to its folder when inside."""
        relative = os.path.relpath(path, self.folder)
        return str(path) if relative.startswith("..") else relative

    def file(self, text: str, node: Node, field: str) -> Path | None:
        path = self.checked_path(text, node, field)
        if path is None:
            return None
        kind = _kind(path)
        if kind == "file":
            return path
        if kind == "folder":
            self.nodes.error(node, field, f"{text!r} is a folder; expected a file")
        elif kind == "other":
            self.nodes.error(node, field, f"{text!r} is not a regular file")
        elif kind == "missing":
            self.nodes.error(node, field, missing(text, "file", path))
        else:
            self.nodes.error(node, field, f"{text!r} cannot be read: {kind}")
        return None

    def image_file(self, text: Any, node: Node, field: str) -> Path | None:
        if text is INVALID:
            return None
        if not isinstance(text, str) or not text:
            self.nodes.error(node, field, f"expected an image file, {got(text)}")
            return None
        return self.file(text, node, field)

    def expand(self, text: str, node: Node, field: str) -> list[Path]:
        """The content images a manifest entry names: a file, every image in a folder, or a glob.

        Folders and globs skip the folders this manifest writes results into (a glob over the
        output folder would otherwise take last night's results as tonight's photos); a file
        or folder named there is refused. A file reached by two names (a link) counts once.
        """
        path = self.checked_path(text, node, field)
        if path is None:
            return []
        kind = _kind(path)
        if kind in ("file", "folder") and self.in_results(path, node, field):
            return []
        if kind == "file":
            return [path]
        if kind == "folder":
            images = self.images_in(path, node, field)
            if images == []:
                self.nodes.error(node, field, f"no images in folder {text!r} "
                                 f"(looked for {' '.join(IMAGE_EXTENSIONS)})")
            return images or []
        if kind == "missing" and _GLOB_MAGIC.search(text):
            try:
                matches = _glob(self.path(text), MAX_CONTENTS)
            except _TooMany:
                self.nodes.error(node, field, f"glob {text!r} matches more than {MAX_CONTENTS:,} "
                                 f"files; narrow it down")
                return []
            except OSError as error:
                self.nodes.error(node, field, f"glob {text!r}: {error.strerror}: '{error.filename}'")
                return []
            images = _unique_files(p for p in matches
                                   if is_image_file(p) and not self.result_of(p))
            if not images:
                also = f" (it matches {len(matches)} other files)" if matches else ""
                self.nodes.error(node, field, f"glob {text!r} matches no images{also}")
            return images
        if kind == "missing":
            self.nodes.error(node, field, missing(text, "file or folder", path))
        elif kind == "other":
            self.nodes.error(node, field, f"{text!r} is not a regular file")
        else:
            self.nodes.error(node, field, f"{text!r} cannot be read: {kind}")
        return []

    def images_in(self, folder: Path, node: Node, field: str) -> list[Path] | None:
        try:
            return _unique_files(p for p in folder.iterdir()
                                 if is_image_file(p) and not self.result_of(p))
        except OSError as error:
            self.nodes.error(node, field, f"cannot list folder '{self.shown_path(folder)}': "
                             f"{error.strerror}")
            return None

    def result_of(self, path: Path) -> str | None:
        """The job whose results folder holds `path` ('' for the run's state), or None."""
        real = os.path.realpath(path)
        for folder, job in self.result_dirs.items():
            if os.path.commonpath([folder, real]) == folder:
                return job
        return None

    def in_results(self, path: Path, node: Node, field: str) -> bool:
        """Report content named inside a folder the run writes into."""
        job = self.result_of(path)
        if job is None:
            return False
        folder = self.out / job if job else run_folder.state_dir(self.out)
        where = f"where job '{job}' writes its results" if job else "the run's own state"
        self.nodes.error(node, field, f"'{self.shown_path(path)}' is inside "
                         f"'{self.shown_path(folder)}', {where}: results would overwrite "
                         f"their own inputs; choose another `output` folder or job name")
        return True

    def check_names(self, contents: Iterable[Path], node: Node, field: str) -> None:
        """Results are named after the content file (plan.stems), so one name may come only once.

        a.jpg and a.png can share a job (plan names them a_jpg, a_png); two folders' a.jpg cannot.
        """
        first: dict[str, Path] = {}
        for path in sorted(contents):
            if path.name in first:
                self.nodes.error(node, field, f"'{self.shown_path(first[path.name])}' and "
                                 f"'{self.shown_path(path)}' have the same file name; their "
                                 f"results would overwrite each other")
            else:
                first[path.name] = path

    def check_result_names(self, name: str, contents: tuple[Path, ...], video: Path | None,
                           outputs: tuple[str, ...], entries: dict, field: str) -> None:
        """Every result's file name fits in a file name (NAME_MAX bytes)."""
        if video is not None:
            stem = video_stem(video)
            named = [(video, f"{stem}.{fmt}") for fmt in ("mp4", "gif") if fmt in outputs]
            named.append((video, stem))
            key = "video"
        else:
            suffix = ".progress.gif" if "progress_gif" in outputs else ".png"
            named = [(path, stem + suffix) for path, stem in zip(contents, run_folder.result_names(contents))]
            key = "content"
        for path, result in named:
            size = len(os.fsencode(result))
            if size > NAME_MAX:
                self.nodes.error(entries[key][1], f"{field}.{key}",
                                 f"'{self.shown_path(path)}': its result would be named "
                                 f"'{result[:40]}…', {size} bytes; file names hold at most "
                                 f"{NAME_MAX}: rename the file")
                return


def _shown_text(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:40] + "…" + shown[-12:]


def _path_problem(text: str) -> str | None:
    """Why `text` cannot be a path here (a NUL, a name or path longer than file systems hold)."""
    if "\0" in text:
        return "contains a NUL character; it cannot name a file"
    encoded = os.fsencode(text)
    if len(encoded) > PATH_MAX:
        return f"is {len(encoded)} bytes long; paths hold at most {PATH_MAX}"
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return (f"has a part of {len(longest)} bytes; a file or folder name holds at most "
                f"{NAME_MAX}")
    return None


def _kind(path: Path) -> str:
    """'file', 'folder', 'other' (FIFO, device, ...), 'missing', or why it cannot be looked at."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        if error.errno in (errno.ENOTDIR, errno.ELOOP):
            return "missing"
        return error.strerror or str(error)
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "other"


class _TooMany(Exception):
    """A glob matched more files than a job can hold."""


def _glob(pattern: Path, limit: int) -> list[Path]:
    """The files and folders an absolute glob pattern matches, like glob.glob(recursive=True)
    (names starting with '.' only where the pattern's part does), except that `**` never goes
    through a symbolic link to a folder: a link to a parent would make it endless.
    Raises _TooMany past `limit` matches."""
    parts = pattern.parts
    first = next((i for i, part in enumerate(parts) if _GLOB_MAGIC.search(part)), len(parts))
    places = [Path(*parts[:first])]
    for i, part in enumerate(parts[first:], first):
        last = i == len(parts) - 1
        found: list[Path] = []
        for place in places:
            if part == "**":
                found += _walk(place, limit, dirs_only=not last)
            elif _GLOB_MAGIC.search(part):
                found += _matching(place, part, dirs_only=not last)
            elif (place / part).exists() or os.path.lexists(place / part):
                found.append(place / part)
            if len(found) > limit:
                raise _TooMany
        places = found
    return places


def _matching(folder: Path, part: str, dirs_only: bool) -> list[Path]:
    hidden = part.startswith(".")
    try:
        entries = list(os.scandir(folder))
    except (NotADirectoryError, FileNotFoundError):
        return []
    return [Path(e.path) for e in entries
            if (hidden or not e.name.startswith(".")) and fnmatch.fnmatchcase(e.name, part)
            and (not dirs_only or e.is_dir())]


def _walk(folder: Path, limit: int, dirs_only: bool) -> list[Path]:
    """`folder` and everything below it (no hidden names, no links to folders followed)."""
    if not folder.is_dir():
        return []
    found = [folder]
    for root, dirs, files in os.walk(folder):  # followlinks=False
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, d) for d in dirs]
        if not dirs_only:
            found += [Path(root, f) for f in sorted(files) if not f.startswith(".")]
        if len(found) > limit:
            raise _TooMany
    return found


def _unique_files(paths: Iterable[Path]) -> list[Path]:
    """Sorted, each file once however many names reach it."""
    seen: dict[str, Path] = {}
    for path in sorted(paths):
        seen.setdefault(os.path.realpath(path), path)
    return sorted(seen.values())


def missing(text: str, what: str, path: Path | None = None) -> str:
    if "://" in text or _URL.match(text):
        return f"{text!r} is a URL or a protocol, not a local {what}; only local files are read"
    close = close_file_name(path) if path is not None else None
    if close:
        return f"no such {what} {text!r} (did you mean {text[:len(text) - len(path.name)] + close!r}?)"
    return f"no such {what} {text!r}"


def is_image_file(path: Path) -> bool:
    # Hidden files are skipped like glob skips them: '._x.jpg' is macOS metadata, not an image.
    return (path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
            and path.is_file())


def kind_of(path: Path) -> str:
    """'file', 'folder', 'other', 'missing', or why it cannot be looked at."""
    return _kind(path)


def stem_matches(folder: Path, content: Path) -> list[Path]:
    """The images in `folder` named like `content` but for the extension (a mask folder's
    files are matched to the photos by stem: a.jpg takes a.png), sorted."""
    return [p for p in _images_by_stem(folder, _mtime(folder)).get(content.stem, ())]


def mask_for(given: Path | None, content: Path) -> Path | None:
    """The mask file a mask given as `given` (a file, or a folder matched by stem) holds for
    `content`; None for none given or none found (validation reports that)."""
    if given is None or not given.is_dir():
        return given
    found = stem_matches(given, content)
    return found[0] if len(found) == 1 else None


def _mtime(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return 0


@functools.lru_cache(maxsize=64)
def _images_by_stem(folder: Path, mtime: int) -> dict[str, tuple[Path, ...]]:
    """stem → images of the folder (one listing per folder and version of it)."""
    stems: dict[str, list[Path]] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return {}
    for path in entries:
        if is_image_file(path):
            stems.setdefault(path.stem, []).append(path)
    return {stem: tuple(paths) for stem, paths in stems.items()}
