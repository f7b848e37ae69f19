"""The library's face: `stylize` a picture, `paint` one with its record, `run` a manifest."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from batch_style import orchestrator
from batch_style.engine import tf_runtime
from batch_style.engine.painter import MASK_FIELDS, Painter
from batch_style.errors import UserError
from batch_style.media import gif, images, profiles
from batch_style.pipeline.read import overwrites
from batch_style.pipeline.workers import memory
from batch_style.settings import INITS, Settings, blend_problem, checked, resolve

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
    photo_path: Path | None = None      # the photo's file, whose colour profile the result keeps

    def picture(self) -> Image.Image:
        """The result as an 8-bit RGB PIL image."""
        return Image.fromarray(images.to_uint8(self.image))

    def save(self, path: str | Path) -> Path:
        """Write the result (PNG, JPEG, …; 16-bit PNG with settings.bit_depth 16), atomically,
        with the photo's colour profile when it has a sane RGB one (media/profiles.py)."""
        profile = profiles.result_profile(self.photo_path) if self.photo_path else None
        with overwrites.writing(Path(path)):
            images.save_image(self.image, Path(path), bit_depth=self.settings.bit_depth,
                              icc_profile=profile)
        return Path(path)

    def save_progress_gif(self, path: str | Path) -> Path:
        """The optimization as it painted: the photo, a frame every snapshot_every steps, the end."""
        gif.save_progress_gif(self.start, self.snapshots, self.image, Path(path))
        return Path(path)


def settings_of(given: Mapping[str, Any], field: Callable[[str], str] = str) -> Settings:
    """Settings from keyword values, each checked as in a manifest; every mistake is a
    UserError naming `field(name)` (the command line names its options)."""
    values = checked(given, field)
    try:
        return resolve(values)
    except ValueError as e:
        name, _, message = str(e).partition(": ")
        raise UserError(message or name, field=field(name) if message else None) from None


def paint(content: Source, style: Source | Sequence[Source], settings: Settings | None = None,
          *, progress: Callable | None = None, phase: Callable[[str], None] | None = None,
          keep_snapshots: bool = False,
          save_every: int | None = None, save_as: str | Path | None = None,
          masks: Sequence[Source | None] = (), image_masks: Sequence[Source | None] = (),
          protect: Source | None = None, device: str = "auto", weights: str | Path | None = None,
          tiny: bool = False, painter=None, option_names: dict[str, str] | None = None) -> Painting:
    """Stylize `content` with one style or several (`settings.style_blend` weighs them).

    `progress(event)` is called after every step with an engine.stylizer.Progress (its
    `snapshot` holds the picture every settings.snapshot_every steps), `phase(text)` before
    each stage of the start (loading TensorFlow, the model, …); `keep_snapshots` keeps
    those for a progress GIF; `save_every` N writes the picture every N steps beside `save_as`
    (numbered(): RESULT.0050.png). `masks` (one per style, None for none) say where each style goes,
    `image_masks` which part of each painting it comes from, `protect` which part of the photo
    keeps its look (docs/masks.md). `device`: auto | cpu | gpu. `weights`: a VGG19 file (else
    resolved as the README says); `tiny`: a small random network (tests). `painter`: an
    engine.painter.Painter to reuse between calls (models and style pictures stay loaded).
    `option_names`: how mistakes name the arguments (the command line gives its options').
    """
    settings = settings or Settings()
    every = settings.snapshot_every
    if save_every:
        # The optimizer hands out pictures every `snapshot_every` steps: often enough for both.
        settings = settings.replace(snapshot_every=math.gcd(every, save_every))
    styles_given = [style] if isinstance(style, (str, Path, np.ndarray, Image.Image)) else \
        list(style)

    def fields(name: str) -> str:
        return (option_names or {}).get(name, name)

    if device not in DEVICES:
        raise UserError(f"expected one of {', '.join(DEVICES)}, got {device!r}",
                        field=fields("device"))
    if blend_problem(settings, len(styles_given)):
        raise UserError(blend_problem(settings, len(styles_given)), field=fields("style_blend"))
    # Every picture and mask is read and checked before TensorFlow loads (seconds, not minutes).
    painter = painter or Painter(weights, tiny=tiny)
    limit = settings.max_pixels
    photo = painter.picture(content, limit)
    styles = [painter.picture(s, limit, keep=True) for s in styles_given]
    init = None if settings.init in INITS else painter.picture(settings.init, limit)
    regions = painter.regions(settings, photo, styles, masks, image_masks, protect,
                              fields={**MASK_FIELDS, **(option_names or {})})
    say = phase or (lambda text: None)
    say("loading TensorFlow")
    if device == "gpu" and not tf_runtime.import_tensorflow().config.get_visible_devices("GPU"):
        raise UserError("no GPU that TensorFlow can use (`batch-style doctor` says why)",
                        field=fields("device"))
    tf_runtime.import_tensorflow(gpus=device != "cpu")  # device cpu: the GPUs stay untouched
    snapshots: list[np.ndarray] = []

    def on_progress(event) -> None:
        if progress is not None:
            progress(event)
        if event.snapshot is None:
            return
        if keep_snapshots and (event.step % every == 0 or event.step == event.steps):
            snapshots.append(images.to_uint8(event.snapshot))
        if save_every and event.step % save_every == 0:
            with overwrites.writing(numbered(Path(save_as), event)) as path:
                images.save_image(event.snapshot, path)

    with tf_runtime.on_cpu() if device == "cpu" else contextlib.nullcontext():
        if not painter.holds(settings):
            say("loading the model")
            painter.stylizer(settings)
        say("measuring this machine and compiling")
        budget = memory.budget_bytes(settings, "0" if tf_runtime.has_gpu() else None)
        result = painter.paint(photo, styles, settings, init=init, regions=regions,
                               callback=on_progress, memory=budget)
    h, w = result.image.shape[:2]
    return Painting(image=result.image, settings=settings.replace(snapshot_every=every),
                    result=result, start=images.resize(photo, (w, h)), snapshots=tuple(snapshots),
                    photo_path=Path(content) if isinstance(content, (str, Path)) else None)


def numbered(path: Path, event) -> Path:
    """Where `save_every` writes the picture at a step, next to `path`: RESULT.0050.png (with
    several scales, RESULT.scale1.0050.png: each scale counts its steps from 1)."""
    scale = f".scale{event.scale + 1}" if event.scales > 1 else ""
    return path.with_name(f"{path.stem}{scale}.{event.step:04d}{path.suffix}")


def stylize(content: Source, style: Source | Sequence[Source], *,
            progress: Callable | None = None, weights: str | Path | None = None,
            device: str = "auto", tiny: bool = False, **settings: Any) -> Image.Image:
    """`content` painted in the style of `style` (a path, an array or a PIL image; a list of
    them blends several), as a PIL image. Settings are keywords, as in a manifest:

        >>> import batch_style
        >>> picture = batch_style.stylize("photo.jpg", "painting.jpg", size=256, steps=100)
        >>> picture.save("result.png")

    `progress(event)` is called after every step (engine.stylizer.Progress: step, steps, losses,
    elapsed); `masks=`, `image_masks=` and `protect=` are paint()'s. paint() returns the record
    behind the picture (steps, losses, progress frames).
    """
    options = {k: settings.pop(k) for k in ("masks", "image_masks", "protect") if k in settings}
    return paint(content, style, settings_of(settings), progress=progress, weights=weights,
                 device=device, tiny=tiny, **options).picture()


def run(manifest: str | Path | Mapping | Sequence[str | Path | Mapping], *,
        workers: int | None = None, device: str = "auto", force: bool = False,
        weights: str | Path | None = None, tiny: bool = False,
        on_event: Callable[[str, dict], None] | None = None, **settings: Any):
    """Run a manifest — a YAML file, or the same as a mapping (its paths relative to the current
    folder) — or several, as `batch-style run` does: finished units are skipped, the results and
    report.html go to the manifest's `output`. Keyword settings override every job's, as the
    command line's options do. Returns the orchestrator's RunSummary (done, skipped, failed,
    exit_code); raises UserError (or UserErrors) for a manifest's mistakes.

        >>> batch_style.run({"version": 1, "output": "out", "jobs": [
        ...     {"name": "one", "content": "photo.jpg", "style": "painting.jpg"}]}, size=256)
    """
    manifests = [manifest] if isinstance(manifest, (str, Path, Mapping)) else list(manifest)
    options = orchestrator.RunOptions(workers=workers, device=device, force=force,
                                      weights=None if weights is None else str(weights),
                                      tiny=tiny, settings=checked(settings))
    return orchestrator.run(manifests, options, on_event=on_event)
