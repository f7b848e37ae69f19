"""The first picture of an optimization, as settings.init says (docs/design.md, "The start")."""

from __future__ import annotations

import numpy as np

from batch_style.media import images
from batch_style.settings import Settings


def recolours_start(settings: Settings) -> bool:
    """Whether the start is the photo in the paintings' colours: `init: painting-colors`, where
    the colour options neither keep the photo's colours nor have moved them already."""
    return (settings.init == "painting-colors" and not settings.preserve_colors
            and not settings.style_colors)


def initial_image(photo: np.ndarray, size: tuple[int, int], settings: Settings,
                  init: np.ndarray | None) -> np.ndarray:
    """The start at `size` (w, h): `init` when given (any size); else `photo` (for `content`,
    and for `painting-colors` the photo recoloured as recolours_start says), or uniform noise
    drawn with settings.seed."""
    w, h = size
    if init is not None:
        return images.resize(init, (w, h))
    if settings.init in ("content", "painting-colors"):
        return images.resize(photo, (w, h))
    if settings.init == "noise":
        rng = np.random.default_rng(settings.seed)
        return rng.uniform(0.0, 1.0, (h, w, 3)).astype(np.float32)
    # A path: the manifest validated it; callers pass the loaded image as `init`.
    raise ValueError("settings.init is a path: load it and pass it as init=")
