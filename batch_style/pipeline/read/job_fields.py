"""One job of a manifest, read key by key, and the settings it is given."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from yaml.nodes import Node, ScalarNode

from batch_style.media import sequence
from batch_style.pipeline.jobs import OUTPUTS, Job
from batch_style.pipeline.read.masks import MaskReader, StyleEntry
from batch_style.pipeline.read.media_probe import Media
from batch_style.pipeline.read.paths import MAX_CONTENTS, Files
from batch_style.pipeline.read.yaml_nodes import INVALID, NULL, Nodes, got, is_number, line_of
from batch_style.pipeline.state import run_folder
from batch_style.settings import (
    FIELDS,
    INITS,
    Settings,
    blend_problem,
    check_value,
    did_you_mean,
    resolve,
)

JOB_KEYS = ("name", "content", "video", "style", "style_blend", "outputs", "start", "end", "fps",
            "loop", "protect", "settings")
VIDEO_KEYS = ("start", "end", "fps")
# A job name becomes a folder under `output`: one safe path component, never hidden or '..'.
JOB_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
MAX_NAME = 100  # characters of a job name (file systems allow 255 bytes per path component)
MIN_FPS = 1.0        # frames per second of a video job's result: below it, a slide show
_MAX_PIXELS = Settings().max_pixels
_KIND_NAMES = {"images": "image", "video": "video"}
_UNITS = {"start": "seconds", "end": "seconds", "fps": "frames per second"}


class Given(NamedTuple):
    """A checked setting and where the manifest gave it."""

    value: Any
    line: int
    field: str


class SettingsReader:
    """Settings as a manifest gives them (`defaults`, a job's `settings`), with their lines."""

    def __init__(self, nodes: Nodes, files: Files, overrides: Mapping[str, Any] | None = None):
        self.nodes = nodes
        self.files = files
        self.overrides = dict(overrides or {})  # the command line's, over every job's settings

    def settings_layer(self, node: Node, field: str) -> dict[str, Given]:
        """Checked settings of one mapping (`defaults` or a job's `settings`), with their lines."""
        if isinstance(node, ScalarNode) and node.tag == NULL:  # `defaults:` left empty
            return {}
        entries = self.nodes.entries(node, field, None, "a mapping of settings")
        layer: dict[str, Given] = {}
        for name, (key_node, value_node) in (entries or {}).items():
            sub = f"{field}.{name}"
            value = self.nodes.value(value_node, sub)
            if value is INVALID:
                continue
            value, problem = check_value(name, value)
            if problem:
                self.nodes.error(value_node if name in FIELDS else key_node, sub, problem)
                continue
            if name == "init" and value not in INITS:
                path = self.files.image_file(value, value_node, sub)
                if path is None:
                    continue
                value = str(path)
            layer[name] = Given(value, line_of(value_node), sub)
        return layer

    def job_settings(self, entries: dict, node: Node, field: str, defaults: dict[str, Given],
                     name: str | None, n_styles: int) -> tuple[Settings | None, dict]:
        """The job's settings, and where each was given (for the errors found after merging)."""
        layer = {}
        if "settings" in entries:
            layer = self.settings_layer(entries["settings"][1], f"{field}.settings")
        if "style_blend" in entries:
            self.style_blend(entries["style_blend"], field, layer)
        # A mistake only the command line's settings make is shown at the job, naming the option.
        given = {**defaults, **layer, **{k: Given(v, line_of(node), "--" + k.replace("_", "-"))
                                         for k, v in self.overrides.items()}}
        try:
            settings = resolve({k: g.value for k, g in defaults.items()},
                               {k: g.value for k, g in layer.items()}, self.overrides)
        except ValueError as error:
            self.settings_error(str(error), given, node, field)
            return None, given
        if n_styles and blend_problem(settings, n_styles):
            where = given["style_blend"]
            job = "" if where.field.startswith(field + ".") else f" (job {name or field})"
            self.nodes.error(where.line, where.field, blend_problem(settings, n_styles) + job)
            return None, given
        return settings, given

    def style_blend(self, entry: tuple[Node, Node], field: str, layer: dict[str, Given]) -> None:
        """The job key `style_blend` is the job setting of that name, written next to `style`."""
        key_node, node = entry
        field += ".style_blend"
        if "style_blend" in layer:
            self.nodes.error(key_node, field, f"given twice: here and as {layer['style_blend'].field}")
            return
        value = self.nodes.value(node, field)
        if value is INVALID:
            return
        value, problem = check_value("style_blend", value)
        if problem:
            self.nodes.error(node, field, problem)
        else:
            layer["style_blend"] = Given(value, line_of(node), field)

    def settings_error(self, message: str, given: dict[str, Given], node: Node,
                       field: str) -> None:
        """A ValueError from settings.resolve, shown at the setting it names ('NAME: problem')."""
        name, _, rest = message.partition(": ")
        if name in given and rest:
            self.nodes.error(given[name].line, given[name].field, rest)
        else:
            self.nodes.error(node, f"{field}.settings", message)


class VideoReader:
    """A video job's `video`, `start`, `end`, `fps` and `loop`."""

    def __init__(self, nodes: Nodes, files: Files, media: Media):
        self.nodes, self.files, self.media = nodes, files, media

    def video(self, entry: tuple[Node, Node], field: str) -> tuple[Path | None, Any]:
        """The video file and its VideoInfo (None, None when reported as a problem)."""
        field += ".video"
        node = entry[1]
        text = self.nodes.value(node, field)
        if text is INVALID:
            return None, None
        if not isinstance(text, str) or not text:
            self.nodes.error(node, field, f"expected a video file or numbered frames (a folder, "
                             f"a glob, shot_%04d.png), {got(text)}")
            return None, None

        if sequence.is_pattern(text) or os.path.isdir(self.files.path(text)):
            # numbered frames (docs/video.md, "Image sequences"): fps is applied by job()
            path = self.files.checked_path(text, node, field)
            probe = self.media.probe_sequence
        else:
            path = self.files.file(text, node, field)
            probe = self.media.probe_video
        if path is not None and self.files.in_results(path, node, field):
            return None, None
        info = probe(path, node, field) if path is not None else None
        return (path, info) if info is not None else (None, None)

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
                self.nodes.error(key_node, sub, "only for video jobs")
                continue
            value = self.nodes.value(node, sub)
            if value is INVALID:
                continue
            if value is None and key != "start":  # `end: null`: to the end; `fps: null`: source's
                continue
            if not is_number(value):
                self.nodes.error(node, sub, f"expected a number of {_UNITS[key]}, {got(value)}")
            elif key == "start" and value < 0:
                self.nodes.error(node, sub, f"expected a value >= 0, got {value}")
            elif key == "start" and info is not None and value >= info.duration:
                # Caught here, not as a job with no frames half-way through a run.
                self.nodes.error(node, sub, f"expected a value before the end of the video "
                                 f"({info.duration:g} s), got {value}")
            elif key == "fps" and not MIN_FPS <= value <= 1e6:
                self.nodes.error(node, sub, f"expected at least {MIN_FPS:g} frame per second, got "
                                 f"{value}" if value < MIN_FPS else
                                 f"expected at most 1000000 frames per second, got {value}")
            elif key == "end" and values["start"] is not None and value <= values["start"]:
                self.nodes.error(node, sub, f"expected a value > start ({values['start']}), got {value}")
            else:
                values[key] = float(value)
                continue
            values[key] = None  # so that a bad start does not also make `end` look wrong
        return values["start"] or 0.0, values["end"], values["fps"]

    def loop(self, entries: dict, field: str, kind: str | None) -> bool:
        """`loop` of a video job: true makes its last frame lead into its first."""
        if "loop" not in entries:
            return False
        key_node, node = entries["loop"]
        value = self.nodes.value(node, f"{field}.loop")
        if kind == "images":
            self.nodes.error(key_node, f"{field}.loop", "only for video jobs")
        elif value is not INVALID and not isinstance(value, bool):
            self.nodes.error(node, f"{field}.loop", f"expected true or false, {got(value)}")
        return value is True


class JobReader:
    """Reads one job: its name, inputs, outputs and settings, each problem where it was written."""

    def __init__(self, nodes: Nodes, files: Files, media: Media, settings: SettingsReader):
        self.nodes, self.files, self.media, self.settings = nodes, files, media, settings
        self.videos = VideoReader(nodes, files, media)
        self.mask_reader = MaskReader(nodes, files, media)
        self.names: dict[str, tuple[Node, str]] = {}  # job name → (its node, its field)

    def job(self, index: int, node: Node, defaults: dict[str, Given],
            names: dict[str, tuple[str, int]]) -> Job | None:
        field = f"jobs[{index}]"
        entries = self.nodes.entries(node, field, JOB_KEYS,
                                     "a mapping with 'name', 'content' or 'video', and 'style'",
                                     settings_under="settings")
        if entries is None:
            return None
        errors_before = len(self.nodes.errors)
        name = self.job_name(entries, node, field, names)
        kind = self.kind(entries, node, field)
        # (image, node or line, field, role) to probe once the settings are known
        images: list[tuple[Path, Node | int, str, str]] = []
        contents = self.contents(entries["content"], field, images) if kind == "images" else ()
        video, info = self.videos.video(entries["video"], field) if kind == "video" else (None, None)
        style_entries = self.styles(entries, node, field, images)
        styles = tuple(path for path, _ in style_entries if path is not None)
        outputs = self.outputs(entries, field, kind)

        # A sequence's duration depends on its fps: start is checked against it by check_frames.
        start, end, fps = self.videos.video_range(entries, field, kind,
                                                  None if sequence.is_info(info) else info)
        if sequence.is_info(info):
            info = sequence.at_fps(info, fps)
        loop = self.videos.loop(entries, field, kind)
        settings, given = self.settings.job_settings(entries, node, field, defaults, name, len(styles))
        init = given.get("init")
        if init is not None and init.value not in INITS:
            images.append((Path(init.value), init.line, init.field, "init"))
        # Probed even when the settings do not add up, so that one run shows every problem.
        max_pixels = (settings.max_pixels if settings is not None else
                      given["max_pixels"].value if "max_pixels" in given else _MAX_PIXELS)
        sized = self.media.probe_images(images, max_pixels)
        if info is not None and getattr(info, "size", None):
            sized.append((video, entries["video"][1], f"{field}.video", "frames", info.size))
        if settings is not None:
            self.media.check_sizes(sized, settings)
        if info is not None:
            self.media.check_frames(info, entries, field, start, end, fps)
        masks = self.mask_reader.masks(kind, contents, video, info, style_entries,
                                       entries.get("protect", (None, None))[1], field,
                                       max_pixels)
        if name is not None:
            self.files.check_result_names(name, contents, video, outputs, entries, field)
        if len(self.nodes.errors) > errors_before:
            return None
        return Job(name=name, kind=kind, contents=contents, video=video, start=start, end=end,
                   fps=fps, styles=styles, outputs=outputs, settings=settings, line=line_of(node),
                   masks=masks, loop=loop)

    def job_name(self, entries: dict, node: Node, field: str,
                 names: dict[str, tuple[str, int]]) -> str | None:
        if "name" not in entries:
            self.nodes.error(node, f"{field}.name", "missing; every job needs a unique name "
                             "(it names the job's output folder)")
            return None
        value_node = entries["name"][1]
        value = self.nodes.value(value_node, f"{field}.name")
        if value is INVALID:
            return None
        folded = value.casefold() if isinstance(value, str) else None
        if not isinstance(value, str):
            self.nodes.error(value_node, f"{field}.name", f"expected text, {got(value)}")
        elif not JOB_NAME.fullmatch(value):
            self.nodes.error(value_node, f"{field}.name",
                             f"{value!r} cannot name a folder: use letters, digits, '.', '_' and '-', "
                             f"not starting with '.'")
        elif len(value) > MAX_NAME:
            self.nodes.error(value_node, f"{field}.name",
                             f"expected at most {MAX_NAME} characters, got {len(value)}")
        elif folded in {n.casefold() for n in run_folder.RESERVED_NAMES}:
            self.nodes.error(value_node, f"{field}.name",
                             f"{value!r} is the name of one of the run's own files in the output "
                             f"folder; choose another name")
        elif folded in names:
            first, line = names[folded]
            same = "" if first == value else f" (as {first!r}: they differ only in case, and " \
                                              f"share a folder where case is ignored)"
            self.nodes.error(value_node, f"{field}.name",
                             f"duplicate job name {value!r}{same} (first on line {line})")
        else:
            names[folded] = (value, line_of(value_node))
            self.names[value] = (value_node, f"{field}.name")
            return value
        return None

    def kind(self, entries: dict, node: Node, field: str) -> str | None:
        if "content" in entries and "video" in entries:
            self.nodes.error(node, field, "give either 'content' or 'video', not both")
            return None
        if "content" not in entries and "video" not in entries:
            self.nodes.error(node, field, "missing 'content' or 'video'")
            return None
        return "images" if "content" in entries else "video"

    def contents(self, entry: tuple[Node, Node], field: str,
                 images: list[tuple[Path, Node, str]]) -> tuple[Path, ...]:
        field += ".content"
        value_node = entry[1]
        items = self.nodes.items(value_node, field)
        if not items:
            self.nodes.error(value_node, field, "expected a file, a folder or a glob pattern, "
                             "or a non-empty list of them; got an empty list")
        found: dict[str, Path] = {}  # resolved → as named: a file named twice counts once
        for node, sub in items:
            text = self.nodes.value(node, sub)
            if text is INVALID:
                continue
            if not isinstance(text, str) or not text:
                self.nodes.error(node, sub, f"expected a file, a folder or a glob pattern, {got(text)}")
                continue
            for path in self.files.expand(text, node, sub):
                real = os.path.realpath(path)
                if real not in found:
                    found[real] = path
                    images.append((path, node, sub, "content"))
            if len(found) > MAX_CONTENTS:
                self.nodes.error(node, sub, f"more than {MAX_CONTENTS:,} images in one job; split it")
                return ()
        self.files.check_names(found.values(), value_node, field)
        return tuple(sorted(found.values()))

    def styles(self, entries: dict, node: Node, field: str, images: list[tuple[Path, Node, str]],
               ) -> list[tuple[Path | None, StyleEntry]]:
        """Each style item's image (None: reported) and its entry (with its masks' nodes)."""
        field += ".style"
        if "style" not in entries:
            self.nodes.error(node, field, "missing; expected a style image or a list of them")
            return []
        value_node = entries["style"][1]
        items = self.nodes.items(value_node, field)
        if not items:
            self.nodes.error(value_node, field, "expected a style image or a non-empty list of them, "
                             "got an empty list")
        styles = []
        for item, sub in items:
            entry = self.mask_reader.style_entry(item, sub)
            if entry is None:
                continue
            path = self.files.image_file(self.nodes.value(entry.image, entry.field), entry.image,
                                         entry.field)
            if path is not None:
                images.append((path, entry.image, entry.field, "style"))
            styles.append((path, entry))
        return styles

    def outputs(self, entries: dict, field: str, kind: str | None) -> tuple[str, ...]:
        if kind is None:  # content or video is missing (reported): formats depend on it
            return ()
        valid = OUTPUTS[kind]
        if "outputs" not in entries:
            return valid[:1]
        field += ".outputs"
        value_node = entries["outputs"][1]
        items = self.nodes.items(value_node, field)
        if not items:
            self.nodes.error(value_node, field, f"expected a non-empty list of output formats, "
                             f"from: {', '.join(valid)}")
        outputs: dict[str, None] = {}
        for item, sub in items:
            value = self.nodes.value(item, sub)
            if value is INVALID:
                continue
            if value in valid:
                outputs[value] = None
                continue
            other = next((k for k, formats in OUTPUTS.items() if value in formats), None)
            hint = (f" ('{value}' is for {_KIND_NAMES[other]} jobs)" if other
                    else did_you_mean(str(value), valid))
            self.nodes.error(item, sub, f"unknown output format {value!r} for {_KIND_NAMES[kind]} "
                             f"jobs{hint}; expected one of {', '.join(valid)}")
        return tuple(outputs)
