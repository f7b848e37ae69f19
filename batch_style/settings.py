"""Stylization settings: one frozen dataclass, each default written once, validated once."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batch_style.errors import UserError, UserErrors

# Layer names are Keras' VGG19 names, the public contract (keras.applications.vgg19).
VGG19_CONV_LAYERS = (
    "block1_conv1", "block1_conv2",
    "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4",
)
VGG19_POOL_LAYERS = tuple(f"block{b}_pool" for b in range(1, 6))
VGG19_LAYERS = VGG19_CONV_LAYERS + VGG19_POOL_LAYERS

OPTIMIZERS = ("lbfgs", "adam")
PRECISIONS = ("auto", "float32", "bfloat16", "mixed")
CONVOLUTIONS = ("auto", "direct", "winograd")
INITS = ("painting-colors", "content", "noise")  # or a path to an image
POOLINGS = ("max", "avg")  # VGG19's pools: its own max, or Gatys et al.'s smoother average
# preserve_colors: false, or how the photo's colours are kept (true means luminance, as before
# there was a choice): engine/stylizer.py, media/images.py.
COLOR_METHODS = ("luminance", "histogram")
BACKENDS = ("local", "dask")  # where a run's units run (pipeline/workers/executors.py: EXECUTORS)


def _spec(default, help: str, *, lo=None, hi=None, choices=None, kind=None, multiple=None):
    """A settings field with its validation rule and its one-line help (shown by the CLI)."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "kind": kind,
            "multiple": multiple}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """How one image (or one video frame) is stylized.

    The objective is the TensorFlow tutorial's (docs/design.md, engine/losses.py).
    """

    size: int = _spec(512, "longest side of the result, px (aspect ratio kept)", lo=16, hi=8192)
    steps: int = _spec(500, "optimizer steps per scale (a step: one evaluation of the "
                               "objective and its gradient)", lo=1, hi=100_000)
    optimizer: str = _spec("lbfgs", "lbfgs | adam", choices=OPTIMIZERS)
    learning_rate: float = _spec(0.02, "Adam step size (pixels in [0,1])", lo=1e-6, hi=10.0)
    # The seed's 1e4 : 1e-2 ratio leaves the photo almost unchanged (docs/design.md); 1e4 : 1 paints.
    content_weight: float = _spec(1.0e4, "alpha: weight of the content loss", lo=0.0, hi=1e12)
    style_weight: float = _spec(1.0, "beta: weight of the style loss", lo=0.0, hi=1e12)
    tv_weight: float = _spec(30.0, "weight of the total-variation loss", lo=0.0, hi=1e12)
    content_layers: tuple[str, ...] = _spec(("block4_conv2",), "VGG19 layers for content",
                                            choices=VGG19_LAYERS, kind="layers")
    style_layers: tuple[str, ...] = _spec(
        ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
        "VGG19 layers for style", choices=VGG19_LAYERS, kind="layers")
    style_layer_weights: tuple[float, ...] | None = _spec(
        None, "relative weight per style layer (default: equal)", lo=0.0, hi=1e12,
        kind="floats")
    style_blend: tuple[float, ...] | None = _spec(
        None, "relative weight per style image when several are given (default: equal)",
        lo=0.0, hi=1e12, kind="floats")
    style_scale: float = _spec(1.0, "style image size relative to the result's size",
                               lo=0.05, hi=8.0)
    preserve_colors: bool | str = _spec(
        False, "keep the photo's colours: luminance (the result's luminance with the photo's "
               "colours; true means this) or histogram (the painting recoloured to the photo's "
               "colours first)", choices=COLOR_METHODS, kind="colors")
    # painting-colors stopped 7-12% sooner at 128 px but not at 256 (docs/benchmarks.md, "Fewer
    # steps to done"): not the default.
    init: str = _spec("content", "content | painting-colors (the photo in the painting's "
                                 "colours) | noise | path to an image", kind="init")
    seed: int = _spec(0, "random seed (noise init, reproducible runs)", lo=0, hi=2**31 - 1)
    scales: int = _spec(1, "coarse-to-fine levels, each half the size of the next", lo=1, hi=6)
    # Prints (docs/prints.md): a result larger than base_size is first made at base_size, where
    # the look is set, then refined level by level up to `size`; a level too large for the
    # memory budget is computed in tiles, exactly (engine/tiled_objective.py).
    base_size: int = _spec(512, "longest side, px, at which a larger result's look is set: it is "
                                "made there first, then refined up to size (0: off)",
                           lo=0, hi=8192)
    tile_size: int = _spec(0, "tiles of at most this side, px (a multiple of 16), for pictures "
                              "larger than memory (0: chosen from memory_budget)",
                           lo=0, hi=8192, multiple=16)
    memory_budget: int = _spec(0, "MB a worker may use; a larger picture is made in tiles (0: "
                                  "the GPU's free memory, or a share of the RAM)",
                               lo=0, hi=10**8)
    bit_depth: int = _spec(8, "bits per channel of PNG results: 8, or 16 for prints",
                           choices=(8, 16))
    # The picture is done when 10 steps improve the loss by < 0.1%: the result's content and style
    # terms within 1% of 500 steps' in ~55% of the steps (docs/benchmarks.md, "When to stop").
    tolerance: float = _spec(1e-3, "stop when the loss improves by less than this fraction "
                                  "over 10 steps (0: run all steps)", lo=0.0, hi=1.0)
    snapshot_every: int = _spec(10, "steps between frames of the progress GIF", lo=1, hi=100_000)
    # Video (issue: temporal coherence).
    # Follows `steps` unless given (resolve(): steps × FRAME_STEPS_SHARE); 100 for the default 500.
    frame_steps: int = _spec(100, "steps for video frames after the first of a shot "
                                  "(default: steps / 5)", lo=1, hi=100_000)
    warm_start: bool = _spec(True, "video: start each frame from the previous stylized frame")
    # 3e12, not 1e11: with worker.KEEP_DETAIL, 0.6-0.9× the warping error at k = 1 and 10 on clips
    # not tuned on, the detail kept (docs/video.md, "Short-term steadiness and detail").
    temporal_weight: float = _spec(3.0e12, "video: weight keeping a frame close to the previous one",
                                   lo=0.0, hi=1e15)
    # Ruder et al.'s long-term term: held to frames t-1, t-2, t-4, ... (this many); a pixel t-1
    # missed to the latest that saw it (docs/video.md, "Long-term consistency ..."); 1: t-1 only.
    temporal_frames: int = _spec(6, "video: earlier frames a frame is held to (t-1, t-2, t-4, "
                                    "...; 1: the previous one only)", lo=1, hi=12)
    # Where the VGG19 convolutions compute in bfloat16 (Keras' mixed_bfloat16); the image, Grams
    # and losses stay float32. "mixed": bfloat16 for the first MIXED_BULK of the steps, float32
    # for the rest (policy.py); "auto": on a CPU with native bfloat16 (AVX-512 BF16/AMX) mixed or
    # float32, whichever a step measured here costs less (engine/autotune.py), float32 on other
    # CPUs; on a GPU mixed from Ampere on, else float32.
    precision: str = _spec("auto", "auto | float32 | bfloat16 | mixed (bfloat16, then float32)",
                           choices=PRECISIONS)
    # How float32 convolutions are computed: "direct" is Keras' Conv2D (and MaxPooling2D);
    # "winograd" is Winograd's F(4×4, 3×3) for the layers where it pays, and the pools after
    # them with their gradient compiled (model.py, winograd.py, pooling.py; the same objective
    # to ~5e-6); "auto": on a CPU the faster of the two as measured here (engine/autotune.py),
    # direct on GPUs (cuDNN picks its own algorithm).
    convolution: str = _spec("auto", "auto | direct | winograd: how float32 convolutions are "
                             "computed (auto: on a CPU the faster one as timed here, direct on "
                             "a GPU)",
                             choices=CONVOLUTIONS)
    max_pixels: int = _spec(50_000_000, "refuse input images with more pixels than this",
                            lo=1, hi=2_000_000_000)
    preset: str | None = _spec(None, "a named bundle of settings (see PRESETS)", kind="preset")
    # Regional and colour control (docs/masks.md).
    style_colors: bool = _spec(False, "recolour the photo with the painting's colours (mean and "
                                      "covariance) before stylizing")
    pooling: str = _spec("max", "max | avg: VGG19's pooling (avg: smoother, Gatys et al.)",
                         choices=POOLINGS)
    # What multiplies the content term inside a `protect` mask: 10 held a protected region's
    # content distance at 0.13× its unprotected value (3: 0.35×, 30: 0.05×; docs/masks.md).
    protect_weight: float = _spec(10.0, "content weight multiplier inside a protect mask",
                                  lo=1.0, hi=1e6)

    def __post_init__(self):
        if self.preserve_colors is True:  # `true` from before there was a choice of method
            object.__setattr__(self, "preserve_colors", "luminance")

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


# Named bundles applied under a job's own settings (defaults < preset < explicit).
PRESETS: dict[str, dict[str, Any]] = {
    # The seed / TensorFlow tutorial schedule: content init, Adam lr 0.02 (beta1 0.99, eps 0.1 are
    # fixed in engine/adam.py), 1000 steps at one scale, no early stop.
    "seed": {"optimizer": "adam", "learning_rate": 0.02, "steps": 1000, "scales": 1,
             "tolerance": 0.0, "precision": "float32", "convolution": "direct",
             "init": "content"},
    # Small and quick: for trying a manifest before the overnight run.
    "draft": {"size": 256, "steps": 100},
}

FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Settings)}
# A video frame that starts from the previous one needs a fraction of the first frame's steps.
FRAME_STEPS_SHARE = 0.2


def did_you_mean(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_value(name: str, value: Any) -> tuple[Any, str | None]:
    """Validate and normalize one setting. Returns (normalized value, error message or None)."""
    if name not in FIELDS:
        return value, f"unknown setting{did_you_mean(name, FIELDS)}"
    f = FIELDS[name]
    meta = f.metadata
    kind = meta["kind"]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()

    def got(v):
        return f"got {v!r} ({type(v).__name__})"

    if value is None:
        if default is None:
            return None, None
        return value, f"expected a value, {got(value)}"
    if kind == "layers":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            return value, f"expected a non-empty list of VGG19 layer names, {got(value)}"
        for layer in value:
            if layer not in meta["choices"]:
                hint = did_you_mean(str(layer), meta["choices"])
                return value, f"unknown VGG19 layer {layer!r}{hint}"
        return tuple(value), None
    if kind == "floats":
        if not isinstance(value, (list, tuple)) or not value:
            return value, f"expected a non-empty list of numbers, {got(value)}"
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return value, f"expected numbers, {got(v)}"
            if not meta["lo"] <= v <= meta["hi"]:
                return value, f"expected numbers between {meta['lo']:g} and {meta['hi']:g}, got {v}"
            out.append(float(v))
        if sum(out) <= 0:
            return value, "expected at least one positive weight"
        return tuple(out), None
    if kind == "preset":
        if value not in PRESETS:
            return value, f"unknown preset {value!r}; expected one of {', '.join(PRESETS)}"
        return value, None
    if kind == "colors":
        if value is False or value in meta["choices"]:
            return value, None
        if value is True:
            return "luminance", None
        hint = did_you_mean(str(value), meta["choices"]) if isinstance(value, str) else ""
        return value, (f"expected true, false, {' or '.join(meta['choices'])}, "
                       f"{got(value)}{hint}")
    if kind == "init":
        if not isinstance(value, str) or not value:
            return value, f"expected {', '.join(map(repr, INITS))} or an image path, {got(value)}"
        return value, None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return value, f"expected true or false, {got(value)}"
        return value, None
    if isinstance(default, int) or f.type in ("int",):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return value, f"expected a whole number, {got(value)}"
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"expected a number, {got(value)}"
        value = float(value)
        if not math.isfinite(value):
            return value, f"expected a finite number, got {value}"
    elif isinstance(default, str):
        if not isinstance(value, str):
            return value, f"expected text, {got(value)}"
    if meta["choices"] is not None and value not in meta["choices"]:
        names = [str(c) for c in meta["choices"]]
        return value, (f"unknown value {value!r}{did_you_mean(str(value), names)}; "
                       f"expected one of {', '.join(names)}")
    lo, hi = meta["lo"], meta["hi"]
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        return value, f"expected a value {rng}, got {value}"
    if meta["multiple"] and value % meta["multiple"]:
        return value, f"expected a multiple of {meta['multiple']}, got {value}"
    return value, None


def check_settings(mapping: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Validate a mapping of settings. Returns (normalized mapping, [(name, message)])."""
    clean, problems = {}, []
    for name, value in mapping.items():
        value, problem = check_value(str(name), value)
        if problem:
            problems.append((str(name), problem))
        else:
            clean[name] = value
    return clean, problems


def checked(given: Mapping[str, Any], name_of: Callable[[str], str] = str) -> dict[str, Any]:
    """check_settings(), every mistake raised at once as a UserError naming `name_of(setting)`
    (the command line names its options, the library its keywords)."""
    values, problems = check_settings(given)
    if problems:
        errors = [UserError(message, field=name_of(name)) for name, message in problems]
        raise errors[0] if len(errors) == 1 else UserErrors(errors)
    return values


def resolve(*layers: Mapping[str, Any]) -> Settings:
    """Settings from validated layers of overrides, lowest priority first.

    A `preset` named in any layer is applied just above the defaults. Consistency between fields
    (one weight per style layer) is checked here, after merging.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    preset = merged.get("preset")
    values = dict(PRESETS[preset]) if preset else {}
    values.update(merged)
    if "frame_steps" not in values and "steps" in values:
        values["frame_steps"] = max(1, round(values["steps"] * FRAME_STEPS_SHARE))
    settings = Settings(**values)
    if settings.content_weight == 0 and settings.style_weight == 0:
        raise ValueError("style_weight: content_weight and style_weight are both 0: there is "
                         "nothing to optimize")
    if settings.preserve_colors and settings.style_colors:
        raise ValueError("style_colors: the opposite of preserve_colors (the photo takes the "
                         "painting's colours); give one of them")
    if settings.style_layer_weights is not None and \
            len(settings.style_layer_weights) != len(settings.style_layers):
        raise ValueError(f"style_layer_weights: expected {len(settings.style_layers)} weights "
                         f"(one per style layer), got {len(settings.style_layer_weights)}")
    return settings


def blend_problem(settings: Settings, styles: int) -> str | None:
    """What is wrong with settings.style_blend for `styles` style images, or None."""
    blend = settings.style_blend
    if blend is not None and len(blend) != styles:
        return f"expected {styles} weights (one per style), got {len(blend)}"
    return None


def choose_backend(backend: str | None, scheduler: str | None, manifest_backend: str | None = None,
           manifest_scheduler: str | None = None) -> tuple[str, str | None]:
    """(back end, scheduler) of a run: the command line's if it names either, else the manifest's,
    else local. A scheduler address alone means Dask."""
    if backend is None and scheduler is None:
        backend, scheduler, where = manifest_backend, manifest_scheduler, "manifest"
    else:
        where = "command line"
    if backend is None:
        backend = "dask" if scheduler is not None else "local"
    if backend not in BACKENDS:
        raise UserError(f"unknown back end {backend!r}; expected one of {', '.join(BACKENDS)}",
                        field="--backend")
    if scheduler is not None and backend != "dask":
        raise UserError(f"a scheduler address ({where}) is for the dask back end, not {backend!r}",
                        field="--scheduler")
    return backend, scheduler
