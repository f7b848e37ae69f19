"""What the images and videos a manifest names hold: readable, of a size VGG19 can take."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from yaml.nodes import Node

from batch_style.engine import schedule
from batch_style.engine.model import layers_needed
from batch_style.engine.schedule import level_sizes
from batch_style.errors import UserError
from batch_style.media import images, video
from batch_style.media.images import fit_size, pixels_text
from batch_style.media.sequence import probe_sequence
from batch_style.pipeline.read.paths import Files
from batch_style.pipeline.read.yaml_nodes import Nodes
from batch_style.settings import Settings


class Media:
    """Probes the images and videos a manifest names (once each) and checks their sizes."""

    def __init__(self, nodes: Nodes, files: Files, verify_pixels: bool = False):
        self.nodes = nodes
        self.files = files
        self.verify_pixels = verify_pixels  # read whole images, not only their headers
        # (image, max_pixels) -> ((width, height), None) or (None, what is wrong with it)
        self._probed: dict[tuple[Path, int], tuple[tuple[int, int] | None, str | None]] = {}

    def probe_images(self, images: list[tuple[Path, Node | int, str, str]],
                     max_pixels: int) -> list[tuple[Path, Node | int, str, str, tuple[int, int]]]:
        """Report unreadable images; the others with their (width, height)."""
        sized = []
        for path, where, field, role in images:
            size, problem = self.probe_image(path, max_pixels)
            if problem:
                self.nodes.error(where, field, f"'{self.files.shown_path(path)}': {problem}")
            else:
                sized.append((path, where, field, role, size))
        return sized

    def probe_image(self, path: Path,
                    max_pixels: int) -> tuple[tuple[int, int] | None, str | None]:
        """(size, None), or (None, what is wrong): from the header, and with verify_pixels from
        a cheap read of the whole file; cached (several jobs share images)."""
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
        """The sizes the optimizer will work at (engine/schedule.py), from the images' headers: every
        side at least VGG19's minimum for the layers asked for, and no more pixels than
        max_pixels (assembly reads the results back under that limit).

        Content and video frames give the result, `size` px on its longest side; coarse-to-fine
        levels too small for VGG19 are skipped, so only the last one must fit. A style is
        resized to style_scale × the result's longest side at each level, never under the
        minimum: it must fit at the coarsest level any content of the job is optimized at.
        """
        deepest, need = min_side(settings.content_layers + settings.style_layers)
        too_small = f"too small for VGG19's {deepest} (needs \u2265 {need} px a side)"
        over = f"over the limit of {pixels_text(settings.max_pixels)} (setting max_pixels)"
        size = settings.size
        coarsest = None  # longest side of the coarsest level any content is optimized at
        for path, where, field, role, (w, h) in sized:
            if role not in ("content", "frames"):
                continue
            shown = self.files.shown_path(path)
            what = f"'{shown}' is" if role == "content" else f"the frames of '{shown}' are"
            if w * h > settings.max_pixels:  # an image's own size was checked by probe_image
                self.nodes.error(where, field, f"{what} {w}\u00d7{h} = {pixels_text(w * h)}, {over}")
                continue
            what += f" {w}\u00d7{h}; at size {size} the result would be"
            levels = level_sizes(w, h, settings, need)
            rw, rh = fit_size(w, h, size)
            if not levels:
                self.nodes.error(where, field, f"{what} {rw}\u00d7{rh}, {too_small}; raise size")
                continue
            if rw * rh > settings.max_pixels:
                self.nodes.error(where, field, f"{what} {rw}\u00d7{rh} = {pixels_text(rw * rh)}, "
                                 f"{over}; lower size")
            coarsest = min(coarsest or size, max(levels[0]))
            problem = _plan_problem(levels[-1], settings)
            if problem:
                self.nodes.error(where, field, f"{what} {rw}\u00d7{rh}; {problem}")
        for path, where, field, role, (w, h) in sized:
            if role != "style" or coarsest is None:
                continue
            what = f"'{self.files.shown_path(path)}' is {w}\u00d7{h}"
            smallest = max(round(coarsest * settings.style_scale), need)
            sw, sh = fit_size(w, h, smallest)
            lw, lh = fit_size(w, h, max(round(size * settings.style_scale), need))
            if min(sw, sh) < need:
                self.nodes.error(where, field, f"{what}; resized to {smallest} px on its longest side "
                                 f"it would be {sw}\u00d7{sh}, {too_small}")
            elif lw * lh > settings.max_pixels:
                self.nodes.error(where, field, f"{what}; at size {size} \u00d7 style_scale "
                                 f"{settings.style_scale:g} it would be {lw}\u00d7{lh} = "
                                 f"{pixels_text(lw * lh)}, {over}")

    def probe_video(self, path: Path, node: Node, field: str) -> Any:
        """video.VideoInfo, or None when the file is not a usable video (reported)."""
        try:
            return video.probe_video(path)
        except UserError as error:
            self.nodes.error(node, field, f"'{self.files.shown_path(path)}': {error.message}")
            return None

    def probe_sequence(self, path: Path, node: Node, field: str) -> Any:
        """sequence.SequenceInfo at the default fps, or None when it names no usable frames
        (reported)."""
        try:
            return probe_sequence(path)
        except UserError as error:
            self.nodes.error(node, field, f"'{self.files.shown_path(path)}': {error.message}")
            return None

    def check_frames(self, info: Any, entries: dict, field: str, start: float,
                     end: float | None, fps: float | None) -> None:
        """The frames start, end and fps select (video.select_frames): none is a problem of the
        manifest, found now rather than half-way through a run."""
        try:
            video.select_frames(info, start, end, fps)
        except UserError as error:
            key = next((k for k in ("start", "end", "fps") if k in entries), None)
            node = entries[key][1] if key else entries["video"][1]
            self.nodes.error(node, f"{field}.{key or 'video'}", error.message)


def min_side(layers: Iterable[str]) -> tuple[str, int]:
    """(deepest layer, least px a side): VGG19 halves the map at each pooling layer up to the
    deepest layer asked for, and a map needs one pixel (model.FeatureModel.min_size)."""
    needed = layers_needed(list(layers))
    return needed[-1][0], 2 ** sum(1 for _, kind in needed if kind == "pool")


def _plan_problem(size: tuple[int, int], settings: Settings) -> str | None:
    """Why the tiles or the memory budget the settings ask for cannot make a picture of `size`
    (engine/schedule.plan), found now rather than by a worker; None when they can or say
    nothing (the default budget depends on the machine that runs the unit)."""
    if not (settings.tile_size or settings.memory_budget):
        return None
    layers = settings.content_layers + settings.style_layers
    try:
        schedule.plan(schedule.Level(size, 1), settings, layers,
                      settings.memory_budget << 20 or None)
    except UserError as error:
        return f"{error.field}: {error.message}"
    return None
