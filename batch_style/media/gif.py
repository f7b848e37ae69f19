"""Writing animated GIFs (progress GIFs, GIF outputs of videos) from float32 RGB frames."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from batch_style.atomic import atomic_path
from batch_style.media.images import resize, to_float, to_uint8

# GIF timing: delays are stored in centiseconds, and browsers replace delays under 20 ms by
# 100 ms, so each frame gets a multiple of 10 ms and at least 20 ms.
GIF_TICK_MS = 10
GIF_MIN_DELAY_MS = 20
GIF_COLORS = 256
GIF_PALETTE_SIDE = 256  # px: the palette is computed on a thumbnail this size (colours, not detail)


def save_gif(frames: Iterable[np.ndarray], path: Path, duration_ms: float | list[float],
             loop: int = 0, hold_last_ms: float = 0.0) -> None:
    """Write an animated GIF atomically.

    `duration_ms` is the display time of every frame, or one per frame, in milliseconds; the last
    frame is shown `hold_last_ms` longer (a progress GIF pauses on the result). `loop` 0 repeats
    forever. Frames are quantized one at a time (own adaptive palette each) and resized to the
    first frame's size when they differ, so a generator works; Pillow keeps the 8-bit palette
    frames (1 byte a pixel) until it writes. Pillow merges a frame identical to the one before
    into it (adding the delays), so a GIF can hold fewer frames than were given.
    """
    path = Path(path)
    delays = _gif_delays(duration_ms)
    palette_frames = _with_delays(_quantized(frames), delays, hold_last_ms)
    first = next(palette_frames, None)
    if first is None:
        raise ValueError("save_gif needs at least one frame")
    with atomic_path(path) as tmp:
        # No `duration=` here: each frame carries its own in .info, which Pillow reads when the
        # keyword is absent. That lets the last frame's hold be set once the generator ends.
        first.save(tmp, format="GIF", save_all=True, append_images=palette_frames, loop=loop)


def _quantized(frames: Iterable[np.ndarray]) -> Iterator[Image.Image]:
    size = None  # (w, h) of the first frame
    for frame in frames:
        if size is not None and frame.shape[1::-1] != size:
            frame = resize(to_float(frame), size)
        rgb = Image.fromarray(to_uint8(frame))
        size = rgb.size
        yield _quantize(rgb)


def _quantize(rgb: Image.Image) -> Image.Image:
    """An adaptive median-cut palette, applied with Floyd–Steinberg dithering.

    Pillow's quantize() ignores `dither` when it also builds the palette, so the palette is built
    first (on a thumbnail: it depends on the colours, not on detail, and is 10× faster) and then
    applied with dithering, which trades visible banding in smooth areas for fine noise.
    """
    thumb = rgb.copy()
    thumb.thumbnail((GIF_PALETTE_SIDE, GIF_PALETTE_SIDE))
    palette = thumb.quantize(GIF_COLORS, method=Image.Quantize.MEDIANCUT)
    return rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)


def _gif_delays(duration_ms: float | list[float]) -> Iterator[int]:
    """Per-frame delays in whole centiseconds whose running sum tracks the requested times.

    GIF stores delays in 10 ms ticks; truncating 33.3 ms to 30 ms every frame would play a 30 fps
    clip 11% fast, so the rounding error is carried over (30, 30, 40, 30, 30, 40 ms, ...).
    """
    per_frame = itertools.repeat(float(duration_ms)) if np.isscalar(duration_ms) else (
        float(d) for d in duration_ms)
    elapsed_ms = 0.0
    shown_ms = 0
    for wanted in per_frame:
        elapsed_ms += wanted
        delay = GIF_TICK_MS * math.floor(elapsed_ms / GIF_TICK_MS + 0.5) - shown_ms
        delay = max(GIF_MIN_DELAY_MS, delay)
        shown_ms += delay
        yield delay


def _with_delays(frames: Iterator[Image.Image], delays: Iterator[int],
                 hold_last_ms: float) -> Iterator[Image.Image]:
    """Attach each frame's delay to its .info; the last frame (found by looking one ahead) also
    gets `hold_last_ms`."""
    previous = None
    for frame in frames:
        delay = next(delays, None)
        if delay is None:
            raise ValueError("save_gif: fewer durations than frames")
        frame.info["duration"] = delay
        if previous is not None:
            yield previous
        previous = frame
    if previous is not None:
        hold = GIF_TICK_MS * math.floor(hold_last_ms / GIF_TICK_MS + 0.5)
        previous.info["duration"] += hold
        yield previous
