"""Load and validate YAML job manifests (version 1) into frozen Jobs."""

from __future__ import annotations

import errno
import fnmatch
import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from batch_style.engine.model import layers_needed
from batch_style.errors import UserError, UserErrors
from batch_style.pipeline import run_folder
from batch_style.settings import FIELDS, INITS, Settings, check_value, did_you_mean, resolve

VERSION = 1
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Output formats by job kind; the first is the default when a job gives no `outputs`.
OUTPUTS = {"images": ("image", "progress_gif"), "video": ("mp4", "gif", "frames")}
TOP_KEYS = ("version", "output", "defaults", "jobs", "backend", "scheduler")
JOB_KEYS = ("name", "content", "video", "style", "style_blend", "outputs", "start", "end", "fps",
            "settings")
VIDEO_KEYS = ("start", "end", "fps")
EMPTY = "empty manifest; expected a mapping with 'version', 'output' and 'jobs'"

# A job name becomes a folder under `output`: one safe path component, never hidden or '..'.
_JOB_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
MAX_NAME = 100  # characters of a job name (file systems allow 255 bytes per path component)
MAX_MANIFEST_BYTES = 10 * 2**20  # a manifest is a page of text; this is not one
# Values a document may hold once its aliases are expanded: `&a [*b, *b, ...]` chains (the
# "billion laughs") stay small as nodes but would blow up every repr() and loop over them.
MAX_VALUES = 1_000_000
# A job's content may be a glob or a folder: past these many images it is not a job of photos but
# a pattern gone wrong (a `**` over a whole disk).
MAX_CONTENTS = 100_000
# Paths as the file systems take them: a part of a path (a file or folder name) and a whole path.
NAME_MAX = 255       # bytes
PATH_MAX = 4095      # bytes
MIN_FPS = 1.0        # frames per second of a video job's result: below it, a slide show
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # "http:", "concat:", ...; not "C:"
_GLOB_MAGIC = re.compile(r"[*?[]")
_TAG = "tag:yaml.org,2002:"
_MAP, _SEQ, _NULL, _MERGE = (_TAG + t for t in ("map", "seq", "null", "merge"))
# Tags SafeConstructor builds plain data from; anything else (!!python/..., !custom) is refused.
_SAFE_TAGS = frozenset(t for t in SafeConstructor.yaml_constructors if t is not None)
_INVALID = object()  # a value already reported as a problem
_MAX_PIXELS = Settings().max_pixels
_KIND_NAMES = {"images": "image", "video": "video"}
_UNITS = {"start": "seconds", "end": "seconds", "fps": "frames per second"}


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e4 and 1.0e4 as numbers.

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent, so the natural
    `content_weight: 1.0e4` would be the text '1.0e4'. YAML 1.2 (and every user) says number.
    """


_Loader.add_implicit_resolver(
    _TAG + "float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


@dataclass(frozen=True)
class Job:
    """One job of a manifest, checked: every path exists and is absolute."""

    name: str                  # unique in its manifest; the folder of its results under `output`
    kind: str                  # "images" (files, folders, globs) or "video"
    contents: tuple[Path, ...]  # images: the content images, absolute, sorted, unique; video: ()
    video: Path | None         # video: the source video, absolute; images: None
    start: float               # video: first second to stylize (frames with start <= t < end)
    end: float | None          # video: second to stop at (None: the end of the video)
    fps: float | None          # video: resample to this many frames per second (None: source fps)
    styles: tuple[Path, ...]   # one or more style images, absolute, in the manifest's order
    outputs: tuple[str, ...]   # formats to write, from OUTPUTS[kind]
    settings: Settings         # defaults < preset < manifest `defaults` < job `settings`
    line: int                  # line of the job in the manifest (1-based)


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: where its results go and its jobs."""

    path: Path             # the manifest file, absolute
    output: Path           # results folder, absolute
    jobs: tuple[Job, ...]  # in the manifest's order
    backend: str | None = None    # where units run (backends.BACKENDS); None: not given
    scheduler: str | None = None  # Dask scheduler address; None: not given


def load(path: str | os.PathLike, *, verify_pixels: bool = False) -> Manifest:
    """Read and check one manifest; raises UserErrors listing every problem found.

    Images are checked from their headers (kind, size); with `verify_pixels` their data is read
    too, so that a truncated or corrupt image is a problem of the manifest (`validate`) rather
    than the failure of its unit (`run`, which goes on with the other units).
    """
    manifest, errors = _load(path, verify_pixels)
    if errors:
        raise UserErrors(errors)
    return manifest


def load_all(paths: Iterable[str | os.PathLike], *,
             verify_pixels: bool = False) -> list[Manifest]:
    """Read and check several manifests; raises UserErrors with the problems of all of them.

    Besides each manifest's own problems, two manifests may not write a job of the same name
    into the same output folder (each would overwrite, and mark done, the other's results).
    `verify_pixels`: as for load().
    """
    loaded: list[tuple[str, Manifest]] = []
    errors: list[UserError] = []
    seen: set[str] = set()
    for path in paths:
        # The same manifest named twice would collide with itself; running it once is what's meant.
        key = os.path.realpath(os.path.expanduser(path))
        if key in seen:
            continue
        seen.add(key)
        manifest, problems = _load(path, verify_pixels)
        errors += problems
        if manifest is not None:
            loaded.append((os.fspath(path), manifest))
    errors += _collisions(loaded)
    if errors:
        raise UserErrors(errors)
    return [manifest for _, manifest in loaded]


def _collisions(loaded: list[tuple[str, Manifest]]) -> list[UserError]:
    first: dict[tuple[str, str], tuple[str, int]] = {}
    errors = []
    for shown, manifest in loaded:
        for index, job in enumerate(manifest.jobs):
            key = (os.path.realpath(manifest.output), job.name)
            if key in first:
                other, line = first[key]
                errors.append(UserError(
                    f"job {job.name!r} writes into the same folder, "
                    f"'{manifest.output / job.name}', as the job on {other}:{line}",
                    file=shown, line=job.line, field=f"jobs[{index}].name"))
            else:
                first[key] = (shown, job.line)
    return errors


def _load(path: str | os.PathLike,
          verify_pixels: bool = False) -> tuple[Manifest | None, list[UserError]]:
    shown = os.fspath(path)
    file = Path(os.path.abspath(os.path.expanduser(shown)))
    try:
        root = _compose(_read_text(file, shown), shown)
    except UserError as error:
        return None, [error]
    reader = _Reader(shown, file.parent, verify_pixels)
    manifest = reader.manifest(root, file)
    errors = _unique(reader.errors)
    return (None if errors else manifest), errors


def _read_text(file: Path, shown: str) -> str:
    if file.is_dir():
        raise UserError("is a folder; expected a YAML manifest", file=shown)
    if file.exists() and not file.is_file():  # a FIFO would block for good, a device never end
        raise UserError("is not a regular file; expected a YAML manifest", file=shown)
    try:
        with open(file, "rb") as f:  # capped: a file can still grow while it is read
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise UserError("no such file", file=shown) from None
    except OSError as error:
        raise UserError(f"cannot read: {error.strerror}", file=shown) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise UserError(f"larger than {MAX_MANIFEST_BYTES // 2**20} MB; expected a YAML manifest",
                        file=shown)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UserError("not UTF-8 text; a manifest is a YAML text file", file=shown,
                        line=line) from None


def _compose(text: str, shown: str) -> Node | None:
    """The YAML node tree, which keeps the line of every value (yaml.load would lose them)."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except RecursionError:  # PyYAML composes recursively: [[[[...]]]] a few hundred deep
        raise UserError("invalid YAML: nested too deeply", file=shown) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = f"invalid YAML: {error.problem or error.context}"
        if error.context and error.context_mark and error.context_mark.line != mark.line:
            message += f" ({error.context} on line {error.context_mark.line + 1})"
        raise UserError(message, file=shown, line=mark.line + 1) from None
    except yaml.reader.ReaderError as error:
        line = text[:error.position].count("\n") + 1
        raise UserError(f"invalid YAML: {error.reason} (character {error.character!r})",
                        file=shown, line=line) from None
    problem = _alias_problem(root) if root is not None else None
    if problem is not None:
        node, message = problem
        raise UserError(f"invalid YAML: {message}", file=shown, line=_line(node))
    return root


def _alias_problem(root: Node) -> tuple[Node, str] | None:
    """An alias that contains itself, or more than MAX_VALUES values once aliases are expanded.

    Depth-first over the node graph, each node once, counting the values under it with aliases
    expanded (a node met again is shared, not copied, so its count is reused).
    """
    counts: dict[int, int] = {}  # finished nodes: values under them, expanded
    open_nodes: set[int] = set()  # on the current path
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = (node.value if isinstance(node, SequenceNode) else
                    [n for pair in node.value for n in pair] if isinstance(node, MappingNode)
                    else [])
        if finished:
            open_nodes.discard(id(node))
            counts[id(node)] = 1 + sum(counts[id(child)] for child in children)
            if counts[id(node)] > MAX_VALUES:
                return node, (f"its aliases expand to more than {MAX_VALUES:,} values; "
                              f"a manifest is not that big")
            continue
        if id(node) in counts:
            continue
        if id(node) in open_nodes:
            return node, "an alias refers to a value that contains it"
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children))
    return None


def _unique(errors: list[UserError]) -> list[UserError]:
    """Errors in line order, each once (a bad `defaults` entry is found again for every job)."""
    seen, out = set(), []
    for error in sorted(errors, key=lambda e: e.line or 0):
        if str(error) not in seen:
            seen.add(str(error))
            out.append(error)
    return out


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _got(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"got {text} ({type(value).__name__})"


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return repr(node.value) if node.tag == _TAG + "str" else node.value


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _unsafe_tag(node: Node) -> Node | None:
    """The first node under `node` with a tag that would build something other than plain data."""
    stack, seen = [node], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:  # aliases can make the tree a graph, even a cyclic one
            continue
        seen.add(id(node))
        if node.tag not in _SAFE_TAGS and node.tag != _MERGE:
            return node
        if isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, MappingNode):
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
    return None


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


class _Given(NamedTuple):
    """A checked setting and where the manifest gave it."""

    value: Any
    line: int
    field: str


class _Reader:
    """Walks one manifest's YAML nodes, collecting every problem instead of stopping at the first."""

    def __init__(self, shown: str, folder: Path, verify_pixels: bool = False):
        self.shown = shown      # the manifest's path as the user wrote it, for messages
        self.folder = folder    # relative paths in the manifest are relative to this folder
        self.errors: list[UserError] = []
        self.out: Path | None = None  # the output folder, once known
        self.verify_pixels = verify_pixels  # read whole images, not only their headers
        self.names: dict[str, tuple[Node, str]] = {}  # job name → (its node, its field)
        # Folders the run writes into (resolved): a job's results, the run's state. Their files
        # are never taken as content, and content named there is refused.
        self.result_dirs: dict[str, str] = {}  # resolved folder → the job (or '') writing it
        # (image, max_pixels) -> ((width, height), None) or (None, what is wrong with it)
        self._probed: dict[tuple[Path, int], tuple[tuple[int, int] | None, str | None]] = {}

    def error(self, where: Node | int, field: str, message: str) -> None:
        line = where if isinstance(where, int) else _line(where)
        self.errors.append(UserError(message, file=self.shown, line=line, field=field or None))

    # --- YAML nodes -----------------------------------------------------------------------------

    def value(self, node: Node, field: str) -> Any:
        """The plain data of a node, or _INVALID (reported) when a tag would build an object."""
        bad = _unsafe_tag(node)
        if bad is not None:
            self.error(bad, field, f"YAML tag {_short_tag(bad.tag)!r} is not allowed; "
                                   "a manifest holds plain data only")
            return _INVALID
        try:
            return SafeConstructor().construct_document(node)
        except ConstructorError as error:  # e.g. a malformed !!timestamp or !!binary
            mark = error.problem_mark or node.start_mark
            self.error(mark.line + 1, field, f"invalid value: {error.problem}")
            return _INVALID

    def entries(self, node: Node, field: str, allowed: Iterable[str] | None, expected: str,
                merging: frozenset[int] = frozenset()) -> dict[str, tuple[Node, Node]] | None:
        """A mapping node's (key node, value node) by key; reports bad, duplicate, unknown keys.

        `<<: *anchor` merge keys are honoured (keys written here win over merged ones);
        `merging` holds the mappings being merged already, as an anchor can merge itself.
        """
        if not isinstance(node, MappingNode) or node.tag != _MAP:
            tag = "" if node.tag in _SAFE_TAGS else f" tagged {_short_tag(node.tag)!r}"
            self.error(node, field, f"expected {expected}, got {_describe(node)}{tag}")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged += value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                continue
            key = self.value(key_node, field)
            if key is _INVALID:
                continue
            sub = f"{field}.{key}" if field else str(key)
            if not isinstance(key, str):
                self.error(key_node, field, f"expected text keys, {_got(key)}")
            elif key in out:
                self.error(key_node, sub, f"duplicate key (first on line {_line(out[key][0])})")
            elif allowed is not None and key not in allowed:
                self.error(key_node, sub, f"unknown key{did_you_mean(key, allowed)}; "
                                          f"expected one of {', '.join(allowed)}")
            else:
                out[key] = (key_node, value_node)
        merging |= {id(node)}
        for source in merged:
            if id(source) in merging:
                continue
            source_entries = self.entries(source, field, allowed, expected, merging) or {}
            for key, pair in source_entries.items():
                out.setdefault(key, pair)
        return out

    def items(self, node: Node, field: str) -> list[tuple[Node, str]]:
        """(node, field) of each element of a list, or of the value itself when it is not a list."""
        if isinstance(node, SequenceNode) and node.tag == _SEQ:
            return [(item, f"{field}[{i}]") for i, item in enumerate(node.value)]
        return [(node, field)]

    def path(self, text: str) -> Path:
        return Path(os.path.abspath(self.folder / os.path.expanduser(text)))

    def checked_path(self, text: str, node: Node, field: str) -> Path | None:
        """path(text), or None when the text cannot be a path on this system (reported)."""
        problem = _path_problem(text)
        if problem is not None:
            self.error(node, field, f"{_shown_text(text)} {problem}")
            return None
        return self.path(text)

    def shown_path(self, path: Path) -> str:
        """A path as short as the manifest would write it: relative to its folder when inside."""
        relative = os.path.relpath(path, self.folder)
        return str(path) if relative.startswith("..") else relative

    # --- top level ------------------------------------------------------------------------------

    def manifest(self, root: Node | None, file: Path) -> Manifest | None:
        if root is None:  # an empty file, or only comments
            self.error(1, "", EMPTY)
            return None
        top = self.entries(root, "", TOP_KEYS,
                           "a mapping with 'version', 'output' and 'jobs'")
        if top is None:
            return None
        self.version(top, root)
        output = self.output(top, root)
        self.out = output
        defaults = self.settings_layer(top["defaults"][1], "defaults") if "defaults" in top else {}
        jobs = self.jobs(top, root, defaults)
        if output is not None and (output.is_dir() or not output.exists()):
            self.check_run_folder(top["output"][1])
            self.check_overwrites(jobs)
        backend, scheduler = self.backend(top)
        if self.errors:
            return None
        return Manifest(path=file, output=output, jobs=jobs, backend=backend, scheduler=scheduler)

    def backend(self, top: dict) -> tuple[str | None, str | None]:
        """`backend: local | dask` and `scheduler: ADDRESS` (the command line's options win)."""
        # Imported here: backends imports worker, which imports plan, which imports this module.
        from batch_style.pipeline.executors import BACKENDS, choose

        given = {}
        for name in ("backend", "scheduler"):
            if name in top:
                node = top[name][1]
                value = self.value(node, name)
                if value is not _INVALID and (not isinstance(value, str) or not value.strip()
                                              or any(c.isspace() for c in value)):
                    what = "one of " + ", ".join(BACKENDS) if name == "backend" else \
                        "an address like tcp://HOST:8786"
                    self.error(node, name, f"expected {what}, {_got(value)}")
                elif value is not _INVALID:
                    given[name] = (value, node)
        backend, scheduler = (given.get(name, (None, None))[0] for name in ("backend", "scheduler"))
        try:
            choose(None, None, backend, scheduler)
        except UserError as error:
            node = given["backend"][1]
            self.error(node, "backend", error.message)
        return backend, scheduler

    def version(self, top: dict, root: Node) -> None:
        if "version" not in top:
            self.error(root, "version", f"missing; expected 'version: {VERSION}'")
            return
        node = top["version"][1]
        value = self.value(node, "version")
        if value is not _INVALID and (type(value) is not int or value != VERSION):
            self.error(node, "version",
                       f"unsupported manifest version {value!r}; expected {VERSION}")

    def output(self, top: dict, root: Node) -> Path | None:
        if "output" not in top:
            self.error(root, "output", "missing; expected the results folder, e.g. 'output: out'")
            return None
        node = top["output"][1]
        value = self.value(node, "output")
        if value is _INVALID:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(node, "output", f"expected a folder path, {_got(value)}")
            return None
        path = self.checked_path(value, node, "output")
        if path is not None and path.exists() and not path.is_dir():
            self.error(node, "output", f"{value!r} exists and is not a folder")
        return path

    def settings_layer(self, node: Node, field: str) -> dict[str, _Given]:
        """Checked settings of one mapping (`defaults` or a job's `settings`), with their lines."""
        if isinstance(node, ScalarNode) and node.tag == _NULL:  # `defaults:` left empty
            return {}
        entries = self.entries(node, field, None, "a mapping of settings")
        layer: dict[str, _Given] = {}
        for name, (key_node, value_node) in (entries or {}).items():
            sub = f"{field}.{name}"
            value = self.value(value_node, sub)
            if value is _INVALID:
                continue
            value, problem = check_value(name, value)
            if problem:
                self.error(value_node if name in FIELDS else key_node, sub, problem)
                continue
            if name == "init" and value not in INITS:
                path = self.image_file(value, value_node, sub)
                if path is None:
                    continue
                value = str(path)
            layer[name] = _Given(value, _line(value_node), sub)
        return layer

    def jobs(self, top: dict, root: Node, defaults: dict[str, _Given]) -> tuple[Job, ...]:
        if "jobs" not in top:
            self.error(root, "jobs", "missing; expected a non-empty list of jobs")
            return ()
        node = top["jobs"][1]
        if not isinstance(node, SequenceNode) or node.tag != _SEQ or not node.value:
            self.error(node, "jobs", f"expected a non-empty list of jobs, got {_describe(node)}")
            return ()
        names: dict[str, tuple[str, int]] = {}  # casefolded name -> (name, line)
        if self.out is not None:
            self.result_dirs = {os.path.realpath(run_folder.state_dir(self.out)): ""}
            for item in node.value:
                name = _scalar_entry(item, "name")
                if name is not None and _JOB_NAME.fullmatch(name):
                    self.result_dirs[os.path.realpath(self.out / name)] = name
        jobs = (self.job(i, item, defaults, names) for i, item in enumerate(node.value))
        return tuple(job for job in jobs if job is not None)

    # --- one job --------------------------------------------------------------------------------

    def job(self, index: int, node: Node, defaults: dict[str, _Given],
            names: dict[str, tuple[str, int]]) -> Job | None:
        field = f"jobs[{index}]"
        entries = self.entries(node, field, JOB_KEYS,
                               "a mapping with 'name', 'content' or 'video', and 'style'")
        if entries is None:
            return None
        errors_before = len(self.errors)
        name = self.job_name(entries, node, field, names)
        kind = self.kind(entries, node, field)
        # (image, node or line, field, role) to probe once the settings are known
        images: list[tuple[Path, Node | int, str, str]] = []
        contents = self.contents(entries["content"], field, images) if kind == "images" else ()
        video, info = self.video(entries["video"], field) if kind == "video" else (None, None)
        styles = self.styles(entries, node, field, images)
        outputs = self.outputs(entries, field, kind)
        start, end, fps = self.video_range(entries, field, kind, info)
        settings, given = self.job_settings(entries, node, field, defaults, name, len(styles))
        init = given.get("init")
        if init is not None and init.value not in INITS:
            images.append((Path(init.value), init.line, init.field, "init"))
        # Probed even when the settings do not add up, so that one run shows every problem.
        max_pixels = (settings.max_pixels if settings is not None else
                      given["max_pixels"].value if "max_pixels" in given else _MAX_PIXELS)
        sized = self.probe_images(images, max_pixels)
        if info is not None and getattr(info, "size", None):
            sized.append((video, entries["video"][1], f"{field}.video", "frames", info.size))
        if settings is not None:
            self.check_sizes(sized, settings)
        if info is not None:
            self.check_frames(info, entries, field, start, end, fps)
        if name is not None:
            self.check_result_names(name, contents, video, outputs, entries, field)
        if len(self.errors) > errors_before:
            return None
        return Job(name=name, kind=kind, contents=contents, video=video, start=start, end=end,
                   fps=fps, styles=styles, outputs=outputs, settings=settings, line=_line(node))

    def job_name(self, entries: dict, node: Node, field: str,
                 names: dict[str, tuple[str, int]]) -> str | None:
        if "name" not in entries:
            self.error(node, f"{field}.name", "missing; every job needs a unique name "
                                              "(it names the job's output folder)")
            return None
        value_node = entries["name"][1]
        value = self.value(value_node, f"{field}.name")
        if value is _INVALID:
            return None
        folded = value.casefold() if isinstance(value, str) else None
        if not isinstance(value, str):
            self.error(value_node, f"{field}.name", f"expected text, {_got(value)}")
        elif not _JOB_NAME.fullmatch(value):
            self.error(value_node, f"{field}.name",
                       f"{value!r} cannot name a folder: use letters, digits, '.', '_' and '-', "
                       f"not starting with '.'")
        elif len(value) > MAX_NAME:
            self.error(value_node, f"{field}.name",
                       f"expected at most {MAX_NAME} characters, got {len(value)}")
        elif folded in {n.casefold() for n in run_folder.RESERVED_NAMES}:
            self.error(value_node, f"{field}.name",
                       f"{value!r} is the name of one of the run's own files in the output "
                       f"folder; choose another name")
        elif folded in names:
            first, line = names[folded]
            same = "" if first == value else f" (as {first!r}: they differ only in case, and " \
                                              f"share a folder where case is ignored)"
            self.error(value_node, f"{field}.name",
                       f"duplicate job name {value!r}{same} (first on line {line})")
        else:
            names[folded] = (value, _line(value_node))
            self.names[value] = (value_node, f"{field}.name")
            return value
        return None

    def kind(self, entries: dict, node: Node, field: str) -> str | None:
        if "content" in entries and "video" in entries:
            self.error(node, field, "give either 'content' or 'video', not both")
            return None
        if "content" not in entries and "video" not in entries:
            self.error(node, field, "missing 'content' or 'video'")
            return None
        return "images" if "content" in entries else "video"

    def contents(self, entry: tuple[Node, Node], field: str,
                 images: list[tuple[Path, Node, str]]) -> tuple[Path, ...]:
        field += ".content"
        value_node = entry[1]
        items = self.items(value_node, field)
        if not items:
            self.error(value_node, field, "expected a file, a folder or a glob pattern, "
                                          "or a non-empty list of them; got an empty list")
        found: dict[str, Path] = {}  # resolved → as named: a file named twice counts once
        for node, sub in items:
            text = self.value(node, sub)
            if text is _INVALID:
                continue
            if not isinstance(text, str) or not text:
                self.error(node, sub, f"expected a file, a folder or a glob pattern, {_got(text)}")
                continue
            for path in self.expand(text, node, sub):
                real = os.path.realpath(path)
                if real not in found:
                    found[real] = path
                    images.append((path, node, sub, "content"))
            if len(found) > MAX_CONTENTS:
                self.error(node, sub, f"more than {MAX_CONTENTS:,} images in one job; split it")
                return ()
        self.check_names(found.values(), value_node, field)
        return tuple(sorted(found.values()))

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
                self.error(node, field, f"no images in folder {text!r} "
                                        f"(looked for {' '.join(IMAGE_EXTENSIONS)})")
            return images or []
        if kind == "missing" and _GLOB_MAGIC.search(text):
            try:
                matches = _glob(self.path(text), MAX_CONTENTS)
            except _TooMany:
                self.error(node, field, f"glob {text!r} matches more than {MAX_CONTENTS:,} "
                                        f"files; narrow it down")
                return []
            except OSError as error:
                self.error(node, field, f"glob {text!r}: {error.strerror}: '{error.filename}'")
                return []
            images = _unique_files(p for p in matches
                                   if _is_image_file(p) and not self.result_of(p))
            if not images:
                also = f" (it matches {len(matches)} other files)" if matches else ""
                self.error(node, field, f"glob {text!r} matches no images{also}")
            return images
        if kind == "missing":
            self.error(node, field, _missing(text, "file or folder"))
        elif kind == "other":
            self.error(node, field, f"{text!r} is not a regular file")
        else:
            self.error(node, field, f"{text!r} cannot be read: {kind}")
        return []

    def images_in(self, folder: Path, node: Node, field: str) -> list[Path] | None:
        try:
            return _unique_files(p for p in folder.iterdir()
                                 if _is_image_file(p) and not self.result_of(p))
        except OSError as error:
            self.error(node, field, f"cannot list folder '{self.shown_path(folder)}': "
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
        self.error(node, field, f"'{self.shown_path(path)}' is inside "
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
                self.error(node, field, f"'{self.shown_path(first[path.name])}' and "
                                        f"'{self.shown_path(path)}' have the same file name; their "
                                        f"results would overwrite each other")
            else:
                first[path.name] = path

    def video(self, entry: tuple[Node, Node], field: str) -> tuple[Path | None, Any]:
        """The video file and its VideoInfo (None, None when reported as a problem)."""
        field += ".video"
        node = entry[1]
        text = self.value(node, field)
        if text is _INVALID:
            return None, None
        if not isinstance(text, str) or not text:
            self.error(node, field, f"expected a video file, {_got(text)}")
            return None, None
        path = self.file(text, node, field)
        if path is not None and self.in_results(path, node, field):
            return None, None
        info = self.probe_video(path, node, field) if path is not None else None
        return (path, info) if info is not None else (None, None)

    def styles(self, entries: dict, node: Node, field: str,
               images: list[tuple[Path, Node, str]]) -> tuple[Path, ...]:
        field += ".style"
        if "style" not in entries:
            self.error(node, field, "missing; expected a style image or a list of them")
            return ()
        value_node = entries["style"][1]
        items = self.items(value_node, field)
        if not items:
            self.error(value_node, field, "expected a style image or a non-empty list of them, "
                                          "got an empty list")
        styles = []
        for item, sub in items:
            path = self.image_file(self.value(item, sub), item, sub)
            if path is not None:
                styles.append(path)
                images.append((path, item, sub, "style"))
        return tuple(styles)

    def outputs(self, entries: dict, field: str, kind: str | None) -> tuple[str, ...]:
        if kind is None:  # content or video is missing (reported): formats depend on it
            return ()
        valid = OUTPUTS[kind]
        if "outputs" not in entries:
            return valid[:1]
        field += ".outputs"
        value_node = entries["outputs"][1]
        items = self.items(value_node, field)
        if not items:
            self.error(value_node, field, f"expected a non-empty list of output formats, "
                                          f"from: {', '.join(valid)}")
        outputs: dict[str, None] = {}
        for item, sub in items:
            value = self.value(item, sub)
            if value is _INVALID:
                continue
            if value in valid:
                outputs[value] = None
                continue
            other = next((k for k, formats in OUTPUTS.items() if value in formats), None)
            hint = (f" ('{value}' is for {_KIND_NAMES[other]} jobs)" if other
                    else did_you_mean(str(value), valid))
            self.error(item, sub, f"unknown output format {value!r} for {_KIND_NAMES[kind]} "
                                  f"jobs{hint}; expected one of {', '.join(valid)}")
        return tuple(outputs)

    def video_range(self, entries: dict, field: str, kind: str | None,
                    info: Any) -> tuple[float, float | None, float | None]:
        """start, end and fps of a video job; `info` (video.VideoInfo) bounds start when known."""
        values: dict[str, float | None] = {"start": 0.0, "end": None, "fps": None}
        for key in VIDEO_KEYS:
            if key not in entries:
                continue
            key_node, node = entries[key]
            sub = f"{field}.{key}"
            if kind == "images":
                self.error(key_node, sub, "only for video jobs")
                continue
            value = self.value(node, sub)
            if value is _INVALID:
                continue
            if value is None and key != "start":  # `end: null`: to the end; `fps: null`: source's
                continue
            if not _is_number(value):
                self.error(node, sub, f"expected a number of {_UNITS[key]}, {_got(value)}")
            elif key == "start" and value < 0:
                self.error(node, sub, f"expected a value >= 0, got {value}")
            elif key == "start" and info is not None and value >= info.duration:
                # Caught here, not as a job with no frames half-way through a run.
                self.error(node, sub, f"expected a value before the end of the video "
                                      f"({info.duration:g} s), got {value}")
            elif key == "fps" and not MIN_FPS <= value <= 1e6:
                self.error(node, sub, f"expected at least {MIN_FPS:g} frame per second, got "
                                      f"{value}" if value < MIN_FPS else
                           f"expected at most 1000000 frames per second, got {value}")
            elif key == "end" and values["start"] is not None and value <= values["start"]:
                self.error(node, sub, f"expected a value > start ({values['start']}), got {value}")
            else:
                values[key] = float(value)
                continue
            values[key] = None  # so that a bad start does not also make `end` look wrong
        return values["start"] or 0.0, values["end"], values["fps"]

    def job_settings(self, entries: dict, node: Node, field: str, defaults: dict[str, _Given],
                     name: str | None, n_styles: int) -> tuple[Settings | None, dict]:
        """The job's settings, and where each was given (for the errors found after merging)."""
        layer = {}
        if "settings" in entries:
            layer = self.settings_layer(entries["settings"][1], f"{field}.settings")
        if "style_blend" in entries:
            self.style_blend(entries["style_blend"], field, layer)
        given = {**defaults, **layer}
        try:
            settings = resolve({k: g.value for k, g in defaults.items()},
                               {k: g.value for k, g in layer.items()})
        except ValueError as error:
            self.settings_error(str(error), given, node, field)
            return None, given
        blend = settings.style_blend
        if blend is not None and n_styles and len(blend) != n_styles:
            where = given["style_blend"]
            job = "" if where.field.startswith(field + ".") else f" of job {name or field}"
            self.error(where.line, where.field, f"expected {n_styles} weights, one per style "
                                                f"image{job}, got {len(blend)}")
            return None, given
        return settings, given

    def style_blend(self, entry: tuple[Node, Node], field: str, layer: dict[str, _Given]) -> None:
        """The job key `style_blend` is the job setting of that name, written next to `style`."""
        key_node, node = entry
        field += ".style_blend"
        if "style_blend" in layer:
            self.error(key_node, field, f"given twice: here and as {layer['style_blend'].field}")
            return
        value = self.value(node, field)
        if value is _INVALID:
            return
        value, problem = check_value("style_blend", value)
        if problem:
            self.error(node, field, problem)
        else:
            layer["style_blend"] = _Given(value, _line(node), field)

    def settings_error(self, message: str, given: dict[str, _Given], node: Node,
                       field: str) -> None:
        """A ValueError from settings.resolve, shown at the setting it names ('NAME: problem')."""
        name, _, rest = message.partition(": ")
        if name in given and rest:
            self.error(given[name].line, given[name].field, rest)
        else:
            self.error(node, f"{field}.settings", message)

    # --- files ----------------------------------------------------------------------------------

    def file(self, text: str, node: Node, field: str) -> Path | None:
        path = self.checked_path(text, node, field)
        if path is None:
            return None
        kind = _kind(path)
        if kind == "file":
            return path
        if kind == "folder":
            self.error(node, field, f"{text!r} is a folder; expected a file")
        elif kind == "other":
            self.error(node, field, f"{text!r} is not a regular file")
        elif kind == "missing":
            self.error(node, field, _missing(text, "file"))
        else:
            self.error(node, field, f"{text!r} cannot be read: {kind}")
        return None

    def image_file(self, text: Any, node: Node, field: str) -> Path | None:
        if text is _INVALID:
            return None
        if not isinstance(text, str) or not text:
            self.error(node, field, f"expected an image file, {_got(text)}")
            return None
        return self.file(text, node, field)

    def probe_images(self, images: list[tuple[Path, Node | int, str, str]],
                     max_pixels: int) -> list[tuple[Path, Node | int, str, str, tuple[int, int]]]:
        """Report unreadable images; the others with their (width, height)."""
        sized = []
        for path, where, field, role in images:
            size, problem = self.probe_image(path, max_pixels)
            if problem:
                self.error(where, field, f"'{self.shown_path(path)}': {problem}")
            else:
                sized.append((path, where, field, role, size))
        return sized

    def probe_image(self, path: Path,
                    max_pixels: int) -> tuple[tuple[int, int] | None, str | None]:
        """(size, None), or (None, what is wrong): from the header, and with verify_pixels from
        a cheap read of the whole file; cached (several jobs share images)."""
        # Imported when needed: media and video pull in imaging and ffmpeg libraries.
        from batch_style.media import images

        key = (path, max_pixels)
        if key not in self._probed:
            try:
                check = images.check_image if self.verify_pixels else images.probe_image
                self._probed[key] = (check(path, max_pixels), None)
            except UserError as error:
                self._probed[key] = (None, error.message)
        return self._probed[key]

    def check_sizes(self, sized: list[tuple[Path, Node | int, str, str, tuple[int, int]]],
                    settings: Settings) -> None:
        """The sizes the optimizer will work at (optimize.py), from the images' headers: every
        side at least VGG19's minimum for the layers asked for, and no more pixels than
        max_pixels (assembly reads the results back under that limit).

        Content and video frames give the result, `size` px on its longest side; coarse-to-fine
        levels too small for VGG19 are skipped, so only the last one must fit. A style is
        resized to style_scale × the result's longest side at each level, never under the
        minimum: it must fit at the coarsest level any content of the job is optimized at.
        """
        from batch_style.media.images import fit_size, pixels_text, scale_sizes

        deepest, need = _min_side(settings.content_layers + settings.style_layers)
        too_small = f"too small for VGG19's {deepest} (needs \u2265 {need} px a side)"
        over = f"over the limit of {pixels_text(settings.max_pixels)} (setting max_pixels)"
        size = settings.size
        coarsest = None  # longest side of the coarsest level any content is optimized at
        for path, where, field, role, (w, h) in sized:
            if role not in ("content", "frames"):
                continue
            shown = self.shown_path(path)
            what = f"'{shown}' is" if role == "content" else f"the frames of '{shown}' are"
            if w * h > settings.max_pixels:  # an image's own size was checked by probe_image
                self.error(where, field, f"{what} {w}\u00d7{h} = {pixels_text(w * h)}, {over}")
                continue
            what += f" {w}\u00d7{h}; at size {size} the result would be"
            levels = scale_sizes(w, h, size, settings.scales, need)
            rw, rh = fit_size(w, h, size)
            if not levels:
                self.error(where, field, f"{what} {rw}\u00d7{rh}, {too_small}; raise size")
                continue
            if rw * rh > settings.max_pixels:
                self.error(where, field, f"{what} {rw}\u00d7{rh} = {pixels_text(rw * rh)}, "
                                         f"{over}; lower size")
            coarsest = min(coarsest or size, max(levels[0]))
        for path, where, field, role, (w, h) in sized:
            if role != "style" or coarsest is None:
                continue
            what = f"'{self.shown_path(path)}' is {w}\u00d7{h}"
            smallest = max(round(coarsest * settings.style_scale), need)
            sw, sh = fit_size(w, h, smallest)
            lw, lh = fit_size(w, h, max(round(size * settings.style_scale), need))
            if min(sw, sh) < need:
                self.error(where, field, f"{what}; resized to {smallest} px on its longest side "
                                         f"it would be {sw}\u00d7{sh}, {too_small}")
            elif lw * lh > settings.max_pixels:
                self.error(where, field, f"{what}; at size {size} \u00d7 style_scale "
                                         f"{settings.style_scale:g} it would be {lw}\u00d7{lh} = "
                                         f"{pixels_text(lw * lh)}, {over}")

    def check_run_folder(self, output_node: Node) -> None:
        """The paths the run will write (run_folder.problems): never a symbolic link out of the
        output folder, nothing but folders and regular files. Shown at the job they belong to."""
        for path, message, job in run_folder.problems(self.out, self.names):
            node, field = self.names[job] if job else (output_node, "output")
            self.error(node, field, f"'{self.shown_path(path)}' {message}")

    def check_overwrites(self, jobs: Iterable[Job]) -> None:
        """No result may be written over an input of this manifest (a style or an init image
        in another job's results folder, under the name of one of that job's results)."""
        from batch_style.pipeline.plan import planned_outputs

        outputs: dict[str, str] = {}
        for job in jobs:
            for path in planned_outputs(job, self.out):
                outputs[os.path.realpath(path)] = job.name
        for job in jobs:
            node, field = self.names.get(job.name, (None, None))
            inputs = [*job.contents, *job.styles, *([job.video] if job.video else [])]
            if job.settings.init not in INITS:
                inputs.append(Path(job.settings.init))
            for path in inputs:
                other = outputs.get(os.path.realpath(path))
                if other is not None:
                    self.error(node, field, f"'{self.shown_path(path)}', an input of this job, "
                                            f"would be overwritten by a result of job '{other}'; "
                                            f"choose another `output` folder")

    def check_frames(self, info: Any, entries: dict, field: str, start: float,
                     end: float | None, fps: float | None) -> None:
        """The frames start, end and fps select (video.select_frames): none is a problem of the
        manifest, found now rather than half-way through a run."""
        from batch_style.media.video import select_frames

        try:
            select_frames(info, start, end, fps)
        except UserError as error:
            key = next((k for k in ("start", "end", "fps") if k in entries), None)
            node = entries[key][1] if key else entries["video"][1]
            self.error(node, f"{field}.{key or 'video'}", error.message)

    def check_result_names(self, name: str, contents: tuple[Path, ...], video: Path | None,
                           outputs: tuple[str, ...], entries: dict, field: str) -> None:
        """Every result's file name fits in a file name (NAME_MAX bytes)."""
        from batch_style.pipeline.plan import stems

        if video is not None:
            named = [(video, f"{video.stem}.{fmt}") for fmt in ("mp4", "gif") if fmt in outputs]
            named.append((video, video.stem))
            key = "video"
        else:
            suffix = ".progress.gif" if "progress_gif" in outputs else ".png"
            named = [(path, stem + suffix) for path, stem in zip(contents, stems(contents))]
            key = "content"
        for path, result in named:
            size = len(os.fsencode(result))
            if size > NAME_MAX:
                self.error(entries[key][1], f"{field}.{key}",
                           f"'{self.shown_path(path)}': its result would be named "
                           f"'{result[:40]}…', {size} bytes; file names hold at most "
                           f"{NAME_MAX}: rename the file")
                return

    def probe_video(self, path: Path, node: Node, field: str) -> Any:
        """video.VideoInfo, or None when the file is not a usable video (reported)."""
        from batch_style.media.video import probe_video

        try:
            return probe_video(path)
        except UserError as error:
            self.error(node, field, f"'{self.shown_path(path)}': {error.message}")
            return None


def _min_side(layers: Iterable[str]) -> tuple[str, int]:
    """(deepest layer, least px a side): VGG19 halves the map at each pooling layer up to the
    deepest layer asked for, and a map needs one pixel (model.FeatureModel.min_size)."""
    needed = layers_needed(list(layers))
    return needed[-1][0], 2 ** sum(1 for _, kind in needed if kind == "pool")


def _scalar_entry(node: Node, key: str) -> str | None:
    """The text value of `key` in a mapping node, without checking anything else."""
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key and \
                    isinstance(value_node, ScalarNode) and value_node.tag == _TAG + "str":
                return value_node.value
    return None


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


def _missing(text: str, what: str) -> str:
    if "://" in text or _URL.match(text):
        return f"{text!r} is a URL or a protocol, not a local {what}; only local files are read"
    return f"no such {what} {text!r}"


def _is_image_file(path: Path) -> bool:
    # Hidden files are skipped like glob skips them: '._x.jpg' is macOS metadata, not an image.
    return (path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
            and path.is_file())
