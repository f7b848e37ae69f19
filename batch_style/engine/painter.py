"""A painter: VGG19 loaded once per layer set and the pictures it keeps — what the library, the
command line and a worker each hold to stylize one picture after another."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from batch_style.engine.regions import Regions
from batch_style.errors import UserError
from batch_style.media import images
from batch_style.settings import Settings

if TYPE_CHECKING:
    from batch_style.engine.stylizer import Result, Stylizer

# A file, or a picture: an array H×W×3 (a mask: H×W) in [0,1] or 8-bit, or a PIL image.
Source = str | Path | np.ndarray | Image.Image

# Where a mask problem is reported: the library's keyword names; the command line passes its
# option names.
MASK_FIELDS = {"masks": "masks", "image_masks": "image_masks", "protect": "protect"}


class Painter:
    """Feature models and their Stylizers per (layers, pooling), made at first use, and the
    style pictures and style-image masks it was given by path, kept for the next picture."""

    def __init__(self, weights: str | Path | None = None, *, tiny: bool = False):
        self.weights, self.tiny = weights, tiny
        self._stylizers: dict[tuple, Stylizer] = {}
        self._kept: dict[tuple, np.ndarray] = {}

    @staticmethod
    def _key(settings: Settings) -> tuple:
        return tuple(dict.fromkeys(settings.content_layers + settings.style_layers)), \
            settings.pooling

    def holds(self, settings: Settings) -> bool:
        """Whether the model these settings need is loaded already."""
        return self._key(settings) in self._stylizers

    def holds_any(self) -> bool:
        return bool(self._stylizers)

    def stylizer(self, settings: Settings) -> Stylizer:
        key = self._key(settings)
        layers, pooling = key
        if key not in self._stylizers:
            # Here, not at the top: pictures and masks are read and checked before TensorFlow
            # loads (seconds), and a GPU worker is pinned before it does.
            from batch_style.engine.stylizer import Stylizer
            from batch_style.engine.weights import load_feature_model

            self._stylizers[key] = Stylizer(load_feature_model(
                layers, self.weights, tiny=self.tiny, pooling=pooling))
        return self._stylizers[key]

    def picture(self, source: Source, max_pixels: int, *, keep: bool = False) -> np.ndarray:
        """An image as H×W×3 float32 in [0,1]: read from a file (kept for later calls with
        `keep`), or an array checked and converted."""
        if not isinstance(source, (str, Path)):
            return _array(source, 3)
        return self._read(("image", str(source), max_pixels), keep,
                          lambda: images.load_image(Path(source), max_pixels))

    def mask(self, source: Source | None, max_pixels: int, *, keep: bool = False,
             ) -> np.ndarray | None:
        """A mask as H×W float32 in [0,1] (white: yes), or None for none."""
        if source is None:
            return None
        if not isinstance(source, (str, Path)):
            return _array(source, 1)
        return self._read(("mask", str(source), max_pixels), keep,
                          lambda: images.load_mask(Path(source), max_pixels))

    def _read(self, key: tuple, keep: bool, load) -> np.ndarray:
        if key in self._kept:
            return self._kept[key]
        loaded = load()
        if keep:
            self._kept[key] = loaded
        return loaded

    def regions(self, settings: Settings, content: np.ndarray, styles: Sequence[np.ndarray],
                masks: Sequence[Source | None] = (), image_masks: Sequence[Source | None] = (),
                protect: Source | None = None, *, fields: dict[str, str] = MASK_FIELDS,
                check: bool = True, masks_move: bool = False) -> Regions | None:
        """Style masks on the result and on the style images (each once per style, None for a
        style without one) and the protected region, as the engine takes them; None when none is
        given. With `check`, each must have its picture's aspect ratio, as in a manifest. An
        all-black style mask is refused, but where `masks_move` (frames of a mask video: a style
        that fades in starts from black)."""
        limit = settings.max_pixels

        def per_style(given, name, pictures, keep):
            if not given:
                return ()
            if len(given) != len(styles):
                raise UserError(f"expected one per style ({len(styles)}; `none` for a style "
                                f"without one), got {len(given)}", field=fields[name])
            return tuple(checked(self.mask(m, limit, keep=keep), m, name, p)
                         for m, p in zip(given, pictures))

        def checked(loaded, source, name, picture):
            if loaded is None:
                return None
            what = f"'{source}'" if isinstance(source, (str, Path)) else "the mask"
            (h, w), (ph, pw) = loaded.shape, picture.shape[:2]
            if check and images.aspect_differs((w, h), (pw, ph)):
                raise UserError(f"{what} is {w}\u00d7{h} and its picture {pw}\u00d7{ph}: a "
                                f"mask must have its picture's aspect ratio (within 1%)",
                                field=fields[name])
            # A style sent nowhere, or taken from nowhere, is a mistake, not a quiet no-op (an
            # empty protect mask only protects nothing).
            if name != "protect" and not (name == "masks" and masks_move) and \
                    images.is_black(loaded):
                kind = "style" if name == "image_masks" else "result"
                if not check:  # a manifest's mask, named as its file (the unit fails, in one line)
                    raise UserError(images.BLACK_MASK[kind], file=str(source))
                raise UserError(f"{what} {images.BLACK_MASK[kind]}", field=fields[name])
            return loaded

        regions = Regions(
            styles=per_style(masks, "masks", [content] * len(styles), False),
            images=per_style(image_masks, "image_masks", styles, True),
            protect=checked(self.mask(protect, limit), protect, "protect", content))
        return regions if regions.guided or regions.protect is not None else None

    def paint(self, content: np.ndarray, styles: Sequence[np.ndarray], settings: Settings,
              **options) -> Result:
        """Stylizer.stylize with the stylizer for these settings' layers (its options as there)."""
        return self.stylizer(settings).stylize(content, styles, settings, **options)


def _array(picture, channels: int) -> np.ndarray:
    """A picture given as an array: H×W×3 (or H×W for a mask), floats in [0,1] or 8-bit."""
    if isinstance(picture, Image.Image):
        picture = picture.convert("RGB" if channels == 3 else "L")
    array = np.asarray(picture)
    if channels == 1 and array.ndim == 3 and array.shape[2] in (1, 3):
        array = array.mean(axis=2)
    shape_ok = array.ndim == 2 if channels == 1 else array.ndim == 3 and array.shape[2] == 3
    if not shape_ok or min(array.shape[:2]) < 1:
        raise UserError(f"expected an array H×W{'' if channels == 1 else '×3'}, got shape "
                        f"{array.shape}", field="picture")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise UserError("expected values in [0, 1] (floats) or 0-255 (uint8)", field="picture")
    return array
