"""The library's face: `stylize` a picture, `paint` one with its record, `run` a manifest."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from batch_style.errors import UserError, UserErrors
from batch_style.settings import INITS, Settings, blend_problem, check_settings, resolve

Source = Any  # a file path, an array H×W×3 in [0,1] or 8-bit, or a PIL image (engine/painter.py)
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Painting:
    """A stylized picture and how it was made."""

    image: np.ndarray                   # H×W×3 float32 in [0,1], settings.size on its longest side
    settings: Settings
    result: Any                         # engine.stylizer.Result: steps, losses, stop reason, levels
    start: np.ndarray                   # the photo at the result's size (the progress GIF's first)
    snapshots: tuple[np.ndarray, ...]   # 8-bit pictures every snapshot_every steps, when kept

    def picture(self) -> Image.Image:
        """The result as an 8-bit RGB PIL image."""
        from batch_style.media import images

        return Image.fromarray(images.to_uint8(self.image))

    def save(self, path: str | Path, icc_profile: bytes | None = None) -> Path:
        """Write the result (PNG, JPEG, …; 16-bit PNG with settings.bit_depth 16), atomically."""
        from batch_style.media import images

        images.save_image(self.image, Path(path), bit_depth=self.settings.bit_depth,
                          icc_profile=icc_profile)
        return Path(path)

    def save_progress_gif(self, path: str | Path) -> Path:
        """The optimization as it painted: the photo, a frame every snapshot_every steps, the end."""
        from batch_style.media import images

        h, w = self.image.shape[:2]
        frames = [self.start, *(images.resize(f.astype(np.float32) / 255.0, (w, h))
                                for f in self.snapshots), self.image]
        images.save_gif(frames, Path(path), duration_ms=100, hold_last_ms=1500)
        return Path(path)


def settings_of(given: Mapping[str, Any], field: Callable[[str], str] = str) -> Settings:
    """Settings from keyword values, each checked as in a manifest; every mistake is a
    UserError naming `field(name)` (the command line names its options)."""
    values, problems = check_settings(given)
    if problems:
        errors = [UserError(message, field=field(name)) for name, message in problems]
        raise errors[0] if len(errors) == 1 else UserErrors(errors)
    try:
        return resolve(values)
    except ValueError as e:
        name, _, message = str(e).partition(": ")
        raise UserError(message or name, field=field(name) if message else None) from None


def paint(content: Source, style: Source | Sequence[Source], settings: Settings | None = None,
          *, progress: Callable | None = None, keep_snapshots: bool = False,
          masks: Sequence[Source | None] = (), image_masks: Sequence[Source | None] = (),
          protect: Source | None = None, device: str = "auto", weights: str | Path | None = None,
          tiny: bool = False, painter=None, mask_fields: dict[str, str] | None = None) -> Painting:
    """Stylize `content` with one style or several (`settings.style_blend` weighs them).

    `progress(event)` is called after every step with an engine.stylizer.Progress (its
    `snapshot` holds the picture every settings.snapshot_every steps); `keep_snapshots` keeps
    those for a progress GIF. `masks` (one per style, None for none) say where each style goes,
    `image_masks` which part of each painting it comes from, `protect` which part of the photo
    keeps its look (docs/masks.md). `device`: auto | cpu | gpu. `weights`: a VGG19 file (else
    resolved as the README says); `tiny`: a small random network (tests). `painter`: an
    engine.painter.Painter to reuse between calls (models and style pictures stay loaded).
    """
    settings = settings or Settings()
    styles_given = [style] if isinstance(style, (str, Path, np.ndarray, Image.Image)) else \
        list(style)
    if device not in DEVICES:
        raise UserError(f"expected one of {', '.join(DEVICES)}, got {device!r}", field="device")
    if blend_problem(settings, len(styles_given)):
        raise UserError(blend_problem(settings, len(styles_given)),
                        field=(mask_fields or {}).get("style_blend", "style_blend"))
    from batch_style.engine import tf_runtime

    if device == "gpu" and not tf_runtime.import_tensorflow().config.get_visible_devices("GPU"):
        raise UserError("no GPU that TensorFlow can use (`batch-style doctor` says why)",
                        field="device")
    tf_runtime.import_tensorflow(gpus=device != "cpu")  # device cpu: the GPUs stay untouched
    from batch_style.engine.painter import MASK_FIELDS, Painter
    from batch_style.media import images
    from batch_style.pipeline.workers import memory

    painter = painter or Painter(weights, tiny=tiny)
    limit = settings.max_pixels
    photo = painter.picture(content, limit)
    styles = [painter.picture(s, limit, keep=True) for s in styles_given]
    init = None if settings.init in INITS else painter.picture(settings.init, limit)
    regions = painter.regions(settings, photo, styles, masks, image_masks, protect,
                              fields=mask_fields or MASK_FIELDS)
    snapshots: list[np.ndarray] = []

    def on_progress(event) -> None:
        if progress is not None:
            progress(event)
        if keep_snapshots and event.snapshot is not None and (
                event.step % settings.snapshot_every == 0 or event.step == event.steps):
            snapshots.append(images.to_uint8(event.snapshot))

    with tf_runtime.on_cpu() if device == "cpu" else contextlib.nullcontext():
        budget = memory.budget_bytes(settings, "0" if tf_runtime.has_gpu() else None)
        result = painter.paint(photo, styles, settings, init=init, regions=regions,
                               callback=on_progress, memory=budget)
    h, w = result.image.shape[:2]
    return Painting(image=result.image, settings=settings, result=result,
                    start=images.resize(photo, (w, h)), snapshots=tuple(snapshots))


def stylize(content: Source, style: Source | Sequence[Source], *,
            progress: Callable | None = None, weights: str | Path | None = None,
            device: str = "auto", tiny: bool = False, **settings: Any) -> Image.Image:
    """`content` painted in the style of `style` (a path, an array or a PIL image; a list of
    them blends several), as a PIL image. Settings are keywords, as in a manifest:

        >>> import batch_style
        >>> picture = batch_style.stylize("photo.jpg", "painting.jpg", size=256, steps=100)
        >>> picture.save("result.png")

    `progress(event)` is called after every step (engine.stylizer.Progress: step, steps, losses,
    elapsed). paint() returns the record behind the picture (steps, losses, progress frames).
    """
    options = {k: settings.pop(k) for k in ("masks", "image_masks", "protect") if k in settings}
    return paint(content, style, settings_of(settings), progress=progress, weights=weights,
                 device=device, tiny=tiny, **options).picture()
