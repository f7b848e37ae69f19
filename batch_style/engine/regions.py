"""Where each style goes and what is protected: masks as the engine takes them (no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Regions:
    """Where each style goes and where the photo is protected: masks in [0,1], white = yes,
    each at any size with its image's aspect ratio (resized with the picture).

    `styles[k]` is style k's mask on the result (None: everywhere); `images[k]` its mask on
    the style image, the part its style is taken from (None: all of it); `protect` where the
    content term is raised by settings.protect_weight. docs/masks.md has the formulas.
    """

    styles: tuple[np.ndarray | None, ...] = ()
    images: tuple[np.ndarray | None, ...] = ()
    protect: np.ndarray | None = None

    @property
    def guided(self) -> bool:
        """Whether any style has a mask (its style term is then one guided term per style)."""
        return any(m is not None for m in (*self.styles, *self.images))
