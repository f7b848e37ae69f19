"""The Stylizer: an image made to match one image's content and another's style (Gatys et al.)."""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from batch_style.engine import autotune, losses, schedule, tf_runtime
from batch_style.engine.adam import run_adam
from batch_style.engine.autotune import Choice
from batch_style.engine.lbfgs import run_lbfgs
from batch_style.engine.model import ARITHMETICS, FeatureModel, carry_down
from batch_style.engine.objective import Losses, Objective, Temporal, losses_of
from batch_style.engine.policy import phases
from batch_style.engine.regions import Regions
from batch_style.engine.reporter import LookWatch, Progress, Reporter, ran
from batch_style.engine.schedule import Level
from batch_style.engine.start import initial_image, recolours_start
from batch_style.engine.tile_layout import TileLayout
from batch_style.engine.tiled_objective import TiledObjective, tiled_features, tiled_grams
from batch_style.errors import UserError
from batch_style.media import images
from batch_style.settings import OPTIMIZERS, Settings, blend_problem


@dataclass(frozen=True)
class Result:
    image: np.ndarray       # HxWx3 float32 in [0,1], at settings.size
    losses: Losses          # at the last step
    steps: int              # objective evaluations over all scales
    seconds: float
    stopped_early: bool     # the tolerance rule ended the last level before its budget
    history: tuple[float, ...]  # total loss after each step, all levels in order
    stop_reason: str = ""   # "converged at step N" or "step cap"
    levels: tuple[Level, ...] = ()  # how it was made: sizes, steps, tiles
    choice: Choice | None = None  # its convolution and precision, and why (autotune.py)


Callback = Callable[[Progress], None]


class Stylizer:
    """Holds a VGG19 feature model and reuses it, its traced functions and style targets.

    A worker process makes one and stylizes many units with it: the cost per unit is the
    optimization, not start-up. Style targets are cached per (style key, size, layers).
    """

    def __init__(self, model: FeatureModel):
        if model.precision != "float32":
            raise ValueError("Stylizer wants the float32 model; it makes its own twins")
        self.model = model
        self._models = {"float32": model}
        self._style_cache: dict[Hashable, dict[str, tf.Tensor]] = {}
        self._objectives: dict[str, Objective] = {}
        self._tiled_objectives: dict[tuple, TiledObjective] = {}
        self._choices: dict[tuple, Choice] = {}

    def objective(self, arithmetic: str) -> Objective:
        """The objective with features computed in `arithmetic` (model.ARITHMETICS)."""
        if arithmetic not in self._objectives:
            self._objectives[arithmetic] = Objective(self._model(arithmetic))
        return self._objectives[arithmetic]

    def _model(self, arithmetic: str) -> FeatureModel:
        if arithmetic not in self._models:
            self._models[arithmetic] = self.model.twin(*ARITHMETICS[arithmetic])
        return self._models[arithmetic]

    def _tiled(self, arithmetic: str, size: tuple[int, int], tile: int) -> TiledObjective:
        key = (arithmetic, size, tile)
        if key not in self._tiled_objectives:
            self._tiled_objectives[key] = TiledObjective(
                self._model(arithmetic), TileLayout(size, tile, self.model.layer_names))
        return self._tiled_objectives[key]

    def choice(self, settings: Settings, longest: int | None = None) -> Choice:
        """The convolution and precision for a result `longest` px wide (settings.size when
        None) on this process's hardware, `auto` timed once per size bucket (autotune.py)."""
        longest = settings.size if longest is None else longest
        key = (settings.precision, settings.convolution, autotune.bucket(longest),
               tf_runtime.computing_on_cpu())
        if key not in self._choices:
            self._choices[key] = autotune.choose(
                settings, longest, lambda a, size: self.step_timer(settings, a, size), self.model)
        return self._choices[key]

    def step_timer(self, settings: Settings, arithmetic: str, size: tuple[int, int]):
        """A call of one objective evaluation (value and gradient) in `arithmetic` on a picture
        of `size` with a style of its own: what a step costs, bar the optimizer's few vector
        operations. Traced and compiled by its first call, made here."""
        w, h = size
        rng = np.random.default_rng(0)
        content, style = (images.resize(rng.uniform(0, 1, (4, 4, 3)).astype(np.float32), (w, h))
                          for _ in range(2))
        x = tf.constant(content[None])
        args = self._objective_args(content, [style], None, settings, None, arithmetic)
        evaluate = self.objective(arithmetic).evaluate

        def call() -> float:
            return float(evaluate(x, *args)[0])  # float(): waits for the result

        call()
        return call

    def phases(self, settings: Settings, steps: int, longest: int | None = None,
               ) -> list[tuple[str, int]]:
        """(arithmetic, steps) in order for one level's budget of a result `longest` px wide
        (settings.size when None) on this process's hardware."""
        return phases(self.choice(settings, longest).precision, steps,
                      self._winograd(settings, longest))

    def _winograd(self, settings: Settings, longest: int | None) -> bool:
        return self.model.winograd_differs and self.choice(settings, longest).winograd

    def plan(self, width: int, height: int, settings: Settings, steps: int, *,
             coarse: bool = True, memory: int | None = None) -> list[Level]:
        """The levels a width×height content is made in (schedule.levels) for a budget of
        `steps`, each whole or in tiles for a budget of `memory` bytes (schedule.plan)."""
        levels = schedule.levels(width, height, settings, self.model.min_size, steps, coarse)
        winograd = self._winograd(settings, max(levels[-1].size))
        return [schedule.plan(level, settings, self.model.layer_names, memory,
                              widths=self.model.widths, winograd=winograd) for level in levels]

    # -- targets ----------------------------------------------------------------------------
    # Targets come from the model in the precision that optimizes against them. bfloat16 maps
    # carry rounding noise, whose square biases every Gram: measured against float32 targets
    # that bias alone left the bfloat16 gradient at cosine 0.25 to the float32 one halfway
    # (tubingen + starry-night, 256 px), 0.97 against bfloat16 targets. Winograd's float32
    # features are the direct ones to ~5e-6: its phases take targets from the direct model,
    # which spares compiling its layers for the style image's shape (~0.7 s a layer).
    def style_grams(self, style: np.ndarray, longest: int, layers: Sequence[str],
                    key: Hashable | None = None, precision: str = "float32",
                    tile: int | None = None, mask: np.ndarray | None = None,
                    ) -> dict[str, tf.Tensor]:
        """Gram matrices of a style image resized to `longest` px, cached when `key` is given;
        computed in tiles of `tile` px where the picture is (the same Grams); with `mask` (H×W
        on the style image) the guided Grams of its white part."""
        cache_key = None if key is None else (key, longest, tuple(layers), precision)
        if cache_key is not None and mask is not None:
            cache_key += (hashlib.sha256(np.ascontiguousarray(mask, np.float32)).hexdigest(),)
        if cache_key in self._style_cache:
            return self._style_cache[cache_key]
        h, w = style.shape[:2]
        size = images.fit_size(w, h, longest)
        resized = images.resize(style, size)
        guides = None
        if mask is not None:
            guides = {n: tf.constant(g)
                      for n, g in carry_down(images.resize(mask, size), layers).items()}
        if tile is not None and tile < max(size):
            layout = TileLayout(size, tile, self.model.layer_names)
            grams = tiled_grams(self._model(precision), layout, resized[None], list(layers),
                                guides)
        else:
            features = self._model(precision)(tf.constant(resized[None]))
            grams = {n: losses.gram(features[n]) if guides is None else
                     losses.guided_gram(features[n], guides[n]) for n in layers}
        if cache_key is not None:
            self._style_cache[cache_key] = grams
        return grams

    def content_targets(self, content: np.ndarray, layers: Sequence[str],
                        precision: str = "float32", tile: int | None = None,
                        ) -> dict[str, tf.Tensor]:
        if tile is not None:
            layout = TileLayout(content.shape[1::-1], tile, self.model.layer_names)
            return tiled_features(self._model(precision), layout, content[None], list(layers))
        features = self._model(precision)(tf.constant(content[None]))
        return {n: features[n] for n in layers}

    # -- the whole optimization -------------------------------------------------------------
    def stylize(self, content: np.ndarray, styles: Sequence[np.ndarray], settings: Settings, *,
                style_keys: Sequence[Hashable] | None = None, init: np.ndarray | None = None,
                steps: int | None = None, coarse: bool = True, detail: np.ndarray | None = None,
                temporal: Temporal | None = None, regions: Regions | None = None,
                callback: Callback | None = None, memory: int | None = None) -> Result:
        """Stylize `content` (HxWx3 in [0,1], any size) with `styles`, as `settings` say.

        `init` (any size) replaces settings.init; `steps` replaces settings.steps (a video
        frame's frame_steps); `coarse=False` makes the picture at its size alone, without the
        coarser levels of base_size or `scales`; `temporal` adds the video coherence term;
        `detail` (a warm frame's start, any size): each level above the first starts from the
        one below upsampled plus `detail`'s own finer detail at its size, so the frame keeps the
        previous one's fine strokes (docs/video.md, "HD frames"); `regions` says where each
        style goes and which parts of the photo are protected; `memory`: the bytes a level may
        take, beyond which it is made in tiles (None: no limit).
        """
        missing = set(settings.content_layers + settings.style_layers) - set(
            self.model.layer_names)
        if missing:
            raise ValueError(f"the feature model lacks layers {sorted(missing)}")
        if settings.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {settings.optimizer!r}; expected one of "
                            f"{', '.join(OPTIMIZERS)}", field="optimizer")
        self._check(settings, styles, regions)
        photo = content
        content, styles, style_keys = colour_inputs(content, styles, settings, regions,
                                                    style_keys)
        started = time.perf_counter()
        height, width = content.shape[:2]
        plan = self.plan(width, height, settings, settings.steps if steps is None else steps,
                         coarse=coarse, memory=memory)
        longest = max(plan[-1].size)
        first = content  # init: painting-colors, measured in docs/benchmarks.md
        if recolours_start(settings):
            first = colour_inputs(photo, styles, settings.replace(style_colors=True), regions,
                                  None)[0]
        image = initial_image(first, plan[0].size, settings, init)
        if blend_problem(settings, len(styles)):
            raise UserError(blend_problem(settings, len(styles)), field="style_blend")
        history: list[float] = []
        evaluations, converged, last, watch = 0, False, None, None
        for number, level in enumerate(plan):
            w, h = level.size
            content_here = images.resize(content, (w, h))
            if image.shape[:2] != (h, w):
                below = image.shape[1::-1]
                image = images.resize(image, (w, h))
                if detail is not None:  # what the level below cannot hold: detail's, here
                    image = np.clip(image + images.resize(detail, (w, h)) - images.resize(
                        images.resize(detail, below), (w, h)), 0.0, 1.0)
            schedule = [(self.objective(p) if level.tile is None else
                         self._tiled(p, level.size, level.tile), n,
                         self._objective_args(content_here, styles, style_keys, settings,
                                              temporal, p, level.tile, regions))
                        for p, n in self.phases(settings, level.steps, longest)]
            run = RUNS[settings.optimizer]
            luminance = settings.preserve_colors == "luminance"
            if watch is not None:
                watch.start(image)
            report = Reporter(callback, settings, number, len(plan), (w, h), level.steps,
                              started, content_here if luminance else None, watch)
            image, last, n, converged = run(image, settings, schedule, report,
                                            memory_bytes=level.pairs_bytes)
            image = watch.kept if watch is not None and watch.left else image
            history.extend(report.history)
            evaluations += n
            plan[number] = ran(level, n, converged, watch)
            if number + 1 < len(plan):
                self._release(level.size)
            if number == 0 and len(plan) > 1 and coarse and settings.scales == 1:
                watch = LookWatch(self._style_term(*schedule[-1]), image)  # above base_size
        if settings.preserve_colors == "luminance":
            image = images.preserve_colors(image, images.resize(photo, image.shape[1::-1]))
        if last is None:  # zero steps: report the objective of the initial image
            last = self._evaluate(image, content, styles, settings, style_keys, regions)
        return Result(image=image.astype(np.float32), losses=last, steps=evaluations,
                      seconds=time.perf_counter() - started, stopped_early=converged,
                      history=tuple(history), levels=tuple(plan),
                      choice=self.choice(settings, longest),
                      stop_reason={"look": f"the look rule at step {evaluations}",
                                   "converged": f"converged at step {evaluations}"}.get(
                                       plan[-1].stop, "step cap"))

    def _release(self, size: tuple[int, int]) -> None:
        """Free what only a level of `size` used (its tiled objectives, the heap its maps took)
        before the next, larger one: a 2048-px print's peak 4664 → 4219 MiB (docs/prints.md,
        "Memory with the defaults")."""
        for key in [k for k in self._tiled_objectives if k[1] == size]:
            del self._tiled_objectives[key]
        gc.collect()
        tf_runtime.trim_heap()

    @staticmethod
    def _style_term(objective, _steps, args) -> Callable[[np.ndarray], float]:
        """The style term of a picture at the size of `objective`'s arguments (the look rule's
        measure: reporter.LookWatch)."""
        return lambda image: float(objective.evaluate(tf.constant(image[None]), *args)[1][1])

    def evaluate(self, image: np.ndarray, content: np.ndarray, styles: Sequence[np.ndarray],
                 settings: Settings, *, style_keys=None, regions: Regions | None = None) -> Losses:
        """The objective of `image` (already at the result's size) — the bench's common measure.
        The colour options' recolouring is applied to `content` and `styles` as stylize does."""
        self._check(settings, styles, regions)
        content, styles, style_keys = colour_inputs(content, styles, settings, regions,
                                                    style_keys)
        return self._evaluate(image, content, styles, settings, style_keys, regions)

    def _evaluate(self, image, content, styles, settings, style_keys, regions) -> Losses:
        h, w = image.shape[:2]
        total, terms, _ = self.objective("float32").evaluate(
            tf.constant(image[None], tf.float32),
            *self._objective_args(images.resize(content, (w, h)), styles, style_keys, settings,
                                  None, "float32", None, regions))
        return losses_of(total, terms)

    def _check(self, settings: Settings, styles: Sequence[np.ndarray],
               regions: Regions | None) -> None:
        if settings.pooling != self.model.pooling:
            raise ValueError(f"the feature model pools by {self.model.pooling}, the settings "
                             f"ask for {settings.pooling}: load the model with pooling="
                             f"{settings.pooling!r}")
        if regions is not None and (len(regions.styles) not in (0, len(styles))
                                    or len(regions.images) not in (0, len(styles))):
            raise ValueError(f"regions give masks for {len(regions.styles)} styles and "
                             f"{len(regions.images)} style images; there are {len(styles)} "
                             f"styles")

    def _objective_args(self, content: np.ndarray, styles: Sequence[np.ndarray], style_keys,
                        settings: Settings, temporal: Temporal | None,
                        arithmetic: str = "float32", tile: int | None = None,
                        regions: Regions | None = None) -> tuple:
        """The objective's arguments besides the image, for `content` already at its size and
        features computed in `arithmetic`'s precision (in tiles of `tile` px, when given)."""
        precision = ARITHMETICS[arithmetic][0]
        h, w = content.shape[:2]
        style_longest = max(round(max(w, h) * settings.style_scale), self.model.min_size)
        keys = list(style_keys) if style_keys is not None else [None] * len(styles)
        blend = settings.style_blend or (1.0,) * len(styles)
        layer_weights = dict(zip(settings.style_layers, settings.style_layer_weights
                                 or (1.0,) * len(settings.style_layers)))
        regions = regions or Regions()
        style_guides: tuple = ()
        if regions.guided:
            image_masks = regions.images or (None,) * len(styles)
            style_targets = tuple(
                self.style_grams(s, style_longest, settings.style_layers, k, precision, tile,
                                 mask) for s, k, mask in zip(styles, keys, image_masks))
            style_guides = tuple({n: tf.constant(g) for n, g in guide.items()}
                                 for guide in style_guides_of(regions.styles, blend, (w, h),
                                                              settings.style_layers))
        else:
            grams = [self.style_grams(s, style_longest, settings.style_layers, k, precision,
                                      tile) for s, k in zip(styles, keys)]
            style_targets = losses.blend_grams(grams, blend) if len(grams) > 1 else grams[0]
        content_guides = None
        if regions.protect is not None:
            protect = images.resize(regions.protect, (w, h))
            content_guides = {n: tf.constant(g) for n, g in carry_down(
                1.0 + (settings.protect_weight - 1.0) * protect, settings.content_layers).items()}
        return (self.content_targets(content, settings.content_layers, precision, tile),
                style_targets,
                layer_weights,
                tf.constant([settings.content_weight, settings.style_weight, settings.tv_weight,
                             settings.temporal_weight if temporal else 0.0], tf.float32),
                *self._temporal_args(temporal, (w, h)), style_guides, content_guides)

    @staticmethod
    def _temporal_args(temporal: Temporal | None, size: tuple[int, int]):
        w, h = size
        if temporal is None:
            zeros = tf.zeros((1, h, w, 3), tf.float32)
            return zeros, zeros
        previous = images.resize(temporal.previous, (w, h))
        mask = temporal.mask.astype(np.float32)
        mask = mask[..., None] if mask.ndim == 2 else mask
        mask = images.resize(np.repeat(mask, 3, axis=-1), (w, h))
        return tf.constant(previous[None]), tf.constant(mask[None])


def style_guides_of(masks: Sequence[np.ndarray | None], blend: Sequence[float],
                    size: tuple[int, int], layers: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """Each style's guide on each of `layers` (docs/masks.md): its mask at `size` (None: all
    ones), divided where the masks add up to more than 1 by their sum there (overlapping styles
    share a position, as a blend does), times the style's blend share n·b_k/Σb (1 for equal
    weights), carried down the network (model.carry_down)."""
    w, h = size
    n = len(blend)
    masks = list(masks) or [None] * n
    resized = [np.ones((h, w), np.float32) if m is None else images.resize(m, (w, h))
               for m in masks]
    overlap = np.maximum(1.0, np.sum(resized, axis=0))
    total = float(sum(blend))
    return [carry_down(m / overlap * (n * b / total), layers) for m, b in zip(resized, blend)]


def colour_inputs(content: np.ndarray, styles: Sequence[np.ndarray], settings: Settings,
                  regions: Regions | None, style_keys):
    """(content, styles, style_keys) recoloured as the colour options say, before stylizing.

    preserve_colors: histogram: each painting's colours moved to the photo's mean and
    covariance (Gatys et al. 2016, colour histogram matching), the photo's in the style's region
    when it has a mask. style_colors: the photo's colours moved to the painting's, region by
    region when the styles have masks (uncovered parts keep the photo's); several unmasked
    styles give the mixture of their colours by blend weight. Recoloured styles are not cached
    (their colours depend on the photo): their keys become None.
    """
    regions = regions or Regions()
    h, w = content.shape[:2]
    style_masks = [None if m is None else images.resize(m, (w, h))
                   for m in regions.styles or (None,) * len(styles)]
    image_masks = [None if m is None else images.resize(m, s.shape[1::-1])
                   for m, s in zip(regions.images or (None,) * len(styles), styles)]
    if settings.preserve_colors == "histogram":
        styles = [images.match_colors(s, *images.color_stats(content, where), weights=own)
                  for s, where, own in zip(styles, style_masks, image_masks)]
        return content, styles, None
    if not settings.style_colors:
        return content, list(styles), style_keys
    stats = [images.color_stats(s, own) for s, own in zip(styles, image_masks)]
    if not any(m is not None for m in style_masks):
        blend = settings.style_blend or (1.0,) * len(styles)
        return images.match_colors(content, *images.mixed_stats(stats, blend)), list(styles), \
            style_keys
    # Each masked region takes its own painting's colours; overlaps share, as guides do.
    masks = [np.ones((h, w), np.float32) if m is None else m for m in style_masks]
    overlap = np.maximum(1.0, np.sum(masks, axis=0))
    recoloured = content * (1.0 - np.sum(masks, axis=0) / overlap)[..., None]
    for mask, (mean, cov) in zip(masks, stats):
        matched = images.match_colors(content, mean, cov, weights=mask)
        recoloured = recoloured + matched * (mask / overlap)[..., None]
    return np.clip(recoloured, 0.0, 1.0).astype(np.float32), list(styles), style_keys


RUNS = {"adam": run_adam, "lbfgs": run_lbfgs}  # the optimizers settings.OPTIMIZERS names
