"""The optimizer: an image made to match one image's content and another's style (Gatys et al.)."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from batch_style.engine import losses
from batch_style.engine.model import ARITHMETICS, FeatureModel
from batch_style.errors import UserError
from batch_style.media import images
from batch_style.settings import OPTIMIZERS, Settings

# Adam as in the seed and the TensorFlow tutorial (beta1 0.99, epsilon 0.1 on pixels in [0,1]).
ADAM_BETA1 = 0.99
ADAM_BETA2 = 0.999
ADAM_EPSILON = 0.1
# Correction pairs L-BFGS keeps (SciPy's default is 10): up to L_BFGS_HISTORY as long as they fit
# in L_BFGS_MEMORY_BYTES, never fewer than L_BFGS_MIN_HISTORY. Steps to reach the seed's final
# objective (tubingen + starry-night, 256 px, float32): 5 pairs: not by step 450, 20: 428,
# 100: 352; 200 and 400 were a few steps ahead of 100 at step 325-350, for 2-4x the memory.
# golden_gate + kandinsky, to 4.166e9: 20 pairs 287 steps, 100: 251 (README, Benchmark). The
# objective's slow tail is where the longer memory pays.
L_BFGS_HISTORY = 100
L_BFGS_MIN_HISTORY = 20
L_BFGS_MEMORY_BYTES = 1 << 30
# L-BFGS's initial inverse Hessian γ·I: γ = L_BFGS_H0_SCALE · s·y / y·y of the newest pair. With
# the textbook scale 1 every unit step passed the Armijo test, and the slope at the new point was
# still ~0.24 of the slope at the old one (median, tubingen + starry-night, 256 px): each step
# stopped short of the minimum along its line. Steps to reach the seed's final objective at 256 px
# (float32, 100 pairs), scale 1 → 1.5: tubingen + starry-night 379 → 356, golden_gate + kandinsky
# 251 → 227, tubingen + kandinsky 229 → 209. 2.5: 369 on the first; 2.0 was behind 1.5 on the
# second; s·s / s·y (the longer Barzilai-Borwein step) and ‖s‖/‖y‖ lost ground from the start.
L_BFGS_H0_SCALE = 1.5
FIRST_STEP = 0.05  # L-BFGS's first step (and any after a reset) moves no pixel further than this
ARMIJO = 1e-4  # sufficient decrease: accept a step that gains this share of what the slope predicts
TOLERANCE_WINDOW = 10  # steps over which `tolerance` measures the relative improvement
# precision "mixed": the share of each scale's steps run with bfloat16 convolutions before the
# float32 polish. A bfloat16 step costs 30-40% of a float32 one here; against targets computed in
# bfloat16, L-BFGS in bfloat16 goes on to ~0.6% above float32's final (tubingen + starry-night,
# 256 px, 500 steps). Of 55/65/75/85%, 75% reached the seed's final objective with the least work
# (README, Benchmark).
MIXED_BULK = 0.75


@dataclass(frozen=True)
class Losses:
    """The objective's terms, unweighted, and the weighted total."""

    total: float
    content: float
    style: float
    tv: float
    temporal: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"total": self.total, "content": self.content, "style": self.style,
                "tv": self.tv, "temporal": self.temporal}


@dataclass(frozen=True)
class Progress:
    """One step of the optimization, reported to the caller's callback."""

    step: int               # steps done at this scale (1-based)
    steps: int              # step budget at this scale
    scale: int              # 0 = coarsest
    scales: int
    size: tuple[int, int]   # (width, height) at this scale, px
    losses: Losses
    elapsed: float          # seconds since stylize() began
    snapshot: np.ndarray | None  # the current image (HxWx3 float32) every `snapshot_every` steps


@dataclass(frozen=True)
class Result:
    image: np.ndarray       # HxWx3 float32 in [0,1], at settings.size
    losses: Losses          # at the last step
    steps: int              # objective evaluations over all scales
    seconds: float
    stopped_early: bool     # the tolerance rule ended a scale before its budget
    history: tuple[float, ...]  # total loss after each step, all scales in order


@dataclass(frozen=True)
class Temporal:
    """Video coherence term: keep pixels where `mask` is 1 close to `previous` (Ruder et al.)."""

    previous: np.ndarray    # HxWx3, the previous stylized frame warped to this one
    mask: np.ndarray        # HxW or HxWx1 in [0,1]


Callback = Callable[[Progress], None]


def scale_sizes(width: int, height: int, settings: Settings, min_side: int) -> list[tuple[int, int]]:
    """(w, h) per scale, coarsest first: each half the next, the last at settings.size.

    The same rule `validate` applies (images.scale_sizes), so what validates runs.
    """
    sizes = images.scale_sizes(width, height, settings.size, settings.scales, min_side)
    if not sizes:
        w, h = images.fit_size(width, height, settings.size)
        raise UserError(f"the result would be {w}×{h} px, too small for VGG19: each side must be "
                        f"at least {min_side} px for the layers asked for; raise size",
                        field="size")
    return sizes


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
        self._evaluate_in: dict[str, Callable] = {}
        self._adam_step_in: dict[str, Callable] = {}
        self._lbfgs_trial_in: dict[str, Callable] = {}

    def _functions(self, arithmetic: str) -> tuple[Callable, Callable, Callable]:
        """(objective and gradient, Adam step, L-BFGS trial) with features computed in
        `arithmetic` (ARITHMETICS)."""
        if arithmetic not in self._evaluate_in:
            evaluate = tf.function(functools.partial(self._loss_and_grad,
                                                     self._model(arithmetic)),
                                   reduce_retracing=False)
            self._evaluate_in[arithmetic] = evaluate
            self._adam_step_in[arithmetic] = tf.function(
                functools.partial(self._adam_update, evaluate))
            self._lbfgs_trial_in[arithmetic] = tf.function(
                functools.partial(_lbfgs_trial, evaluate))
        return (self._evaluate_in[arithmetic], self._adam_step_in[arithmetic],
                self._lbfgs_trial_in[arithmetic])

    def _model(self, arithmetic: str) -> FeatureModel:
        if arithmetic not in self._models:
            self._models[arithmetic] = self.model.twin(*ARITHMETICS[arithmetic])
        return self._models[arithmetic]

    def phases(self, settings: Settings, steps: int) -> list[tuple[str, int]]:
        """(arithmetic, steps) in order for one scale's budget on this process's hardware."""
        winograd = self.model.winograd_differs and effective_winograd(settings)
        return phases(effective_precision(settings), steps, winograd)

    def _evaluate(self, x, *objective_args):
        """Objective, terms and gradient in float32 (the objective as DESIGN.md defines it)."""
        return self._functions("float32")[0](x, *objective_args)

    # -- the objective ----------------------------------------------------------------------
    @staticmethod
    def _loss_and_grad(model, x, content_targets, style_targets, layer_weights, weights,
                       temporal_previous, temporal_mask):
        """Total loss, its terms and d(total)/dx. Traced once per image size."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            features = model(x)
            content = losses.content_loss({n: features[n] for n in content_targets},
                                          content_targets)
            style = losses.style_loss({n: losses.gram(features[n]) for n in style_targets},
                                      style_targets, layer_weights)
            tv = losses.tv_loss(x)
            temporal = tf.reduce_mean(temporal_mask * tf.square(x - temporal_previous))
            total = (weights[0] * content + weights[1] * style + weights[2] * tv
                     + weights[3] * temporal)
        return total, tf.stack([content, style, tv, temporal]), tape.gradient(total, x)

    @staticmethod
    def _adam_update(loss_and_grad, x, m, v, t, learning_rate, *objective_args):
        """One Adam step, Keras' formulation (epsilon outside the bias correction), then [0,1]."""
        total, terms, grad = loss_and_grad(x, *objective_args)
        m.assign(ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad)
        v.assign(ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad))
        t = tf.cast(t, tf.float32)
        rate = learning_rate * tf.sqrt(1 - ADAM_BETA2 ** t) / (1 - ADAM_BETA1 ** t)
        x.assign(tf.clip_by_value(x - rate * m / (tf.sqrt(v) + ADAM_EPSILON), 0.0, 1.0))
        return total, terms

    # -- targets ----------------------------------------------------------------------------
    # Targets come from the model in the precision that optimizes against them. bfloat16 maps
    # carry rounding noise, whose square biases every Gram: measured against float32 targets
    # that bias alone left the bfloat16 gradient at cosine 0.25 to the float32 one halfway
    # (tubingen + starry-night, 256 px), 0.97 against bfloat16 targets. Winograd's float32
    # features are the direct ones to ~5e-6: its phases take targets from the direct model,
    # which spares compiling its layers for the style image's shape (~0.7 s a layer).
    def style_grams(self, style: np.ndarray, longest: int, layers: Sequence[str],
                    key: Hashable | None = None, precision: str = "float32",
                    ) -> dict[str, tf.Tensor]:
        """Gram matrices of a style image resized to `longest` px, cached when `key` is given."""
        cache_key = None if key is None else (key, longest, tuple(layers), precision)
        if cache_key in self._style_cache:
            return self._style_cache[cache_key]
        h, w = style.shape[:2]
        resized = images.resize(style, images.fit_size(w, h, longest))
        features = self._model(precision)(tf.constant(resized[None]))
        grams = {n: losses.gram(features[n]) for n in layers}
        if cache_key is not None:
            self._style_cache[cache_key] = grams
        return grams

    def content_targets(self, content: np.ndarray, layers: Sequence[str],
                        precision: str = "float32") -> dict[str, tf.Tensor]:
        features = self._model(precision)(tf.constant(content[None]))
        return {n: features[n] for n in layers}

    # -- the whole optimization -------------------------------------------------------------
    def stylize(self, content: np.ndarray, styles: Sequence[np.ndarray], settings: Settings, *,
                style_keys: Sequence[Hashable] | None = None, init: np.ndarray | None = None,
                steps: int | None = None, temporal: Temporal | None = None,
                callback: Callback | None = None) -> Result:
        """Stylize `content` (HxWx3 in [0,1], any size) with `styles`, as `settings` say.

        `init` (any size) replaces settings.init; `steps` replaces settings.steps (video frames
        after the first use frame_steps); `temporal` adds the video coherence term.
        """
        missing = set(settings.content_layers + settings.style_layers) - set(
            self.model.layer_names)
        if missing:
            raise ValueError(f"the feature model lacks layers {sorted(missing)}")
        if settings.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {settings.optimizer!r}; expected one of "
                            f"{', '.join(OPTIMIZERS)}", field="optimizer")
        started = time.perf_counter()
        budget = settings.steps if steps is None else steps
        height, width = content.shape[:2]
        sizes = scale_sizes(width, height, settings, self.model.min_size)
        image = self._initial_image(content, sizes[0], settings, init)
        if settings.style_blend and len(settings.style_blend) != len(styles):
            raise UserError(f"expected {len(styles)} weights (one per style), got "
                            f"{len(settings.style_blend)}", field="style_blend")
        history: list[float] = []
        evaluations, stopped_early, last = 0, False, None
        for scale, (w, h) in enumerate(sizes):
            content_here = images.resize(content, (w, h))
            image = images.resize(image, (w, h)) if image.shape[:2] != (h, w) else image
            schedule = [(p, n, self._objective_args(content_here, styles, style_keys, settings,
                                                    temporal, p))
                        for p, n in self.phases(settings, budget)]
            run = _OPTIMIZERS[settings.optimizer]
            report = _Reporter(callback, settings, scale, len(sizes), (w, h), budget, started,
                               content_here if settings.preserve_colors else None)
            image, last, n, early = run(self, image, settings, schedule, report)
            history.extend(report.history)
            evaluations += n
            stopped_early |= early
        if settings.preserve_colors:
            image = images.preserve_colors(image, images.resize(content, image.shape[1::-1]))
        if last is None:  # zero steps: report the objective of the initial image
            last = self.evaluate(image, content, styles, settings, style_keys=style_keys)
        return Result(image=image.astype(np.float32), losses=last, steps=evaluations,
                      seconds=time.perf_counter() - started, stopped_early=stopped_early,
                      history=tuple(history))

    def evaluate(self, image: np.ndarray, content: np.ndarray, styles: Sequence[np.ndarray],
                 settings: Settings, *, style_keys=None) -> Losses:
        """The objective of `image` (already at the result's size) — the bench's common measure."""
        h, w = image.shape[:2]
        total, terms, _ = self._evaluate(
            tf.constant(image[None], tf.float32),
            *self._objective_args(images.resize(content, (w, h)), styles, style_keys, settings,
                                  None))
        return _losses(total, terms)

    def _objective_args(self, content: np.ndarray, styles: Sequence[np.ndarray], style_keys,
                        settings: Settings, temporal: Temporal | None,
                        arithmetic: str = "float32") -> tuple:
        """The objective's arguments besides the image, for `content` already at its size and
        features computed in `arithmetic`'s precision."""
        precision = ARITHMETICS[arithmetic][0]
        h, w = content.shape[:2]
        style_longest = max(round(max(w, h) * settings.style_scale), self.model.min_size)
        keys = list(style_keys) if style_keys is not None else [None] * len(styles)
        grams = [self.style_grams(s, style_longest, settings.style_layers, k, precision)
                 for s, k in zip(styles, keys)]
        blend = settings.style_blend or (1.0,) * len(styles)
        layer_weights = dict(zip(settings.style_layers, settings.style_layer_weights
                                 or (1.0,) * len(settings.style_layers)))
        return (self.content_targets(content, settings.content_layers, precision),
                losses.blend_grams(grams, blend) if len(grams) > 1 else grams[0],
                layer_weights,
                tf.constant([settings.content_weight, settings.style_weight, settings.tv_weight,
                             settings.temporal_weight if temporal else 0.0], tf.float32),
                *self._temporal_args(temporal, (w, h)))

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

    @staticmethod
    def _initial_image(content: np.ndarray, size: tuple[int, int], settings: Settings,
                       init: np.ndarray | None) -> np.ndarray:
        w, h = size
        if init is not None:
            return images.resize(init, (w, h))
        if settings.init == "content":
            return images.resize(content, (w, h))
        if settings.init == "noise":
            rng = np.random.default_rng(settings.seed)
            return rng.uniform(0.0, 1.0, (h, w, 3)).astype(np.float32)
        # A path: the manifest validated it; callers pass the loaded image as `init`.
        raise ValueError("settings.init is a path: load it and pass it as init=")


def _losses(total, terms) -> Losses:
    c, s, t, tt = (float(v) for v in np.asarray(terms))
    return Losses(total=float(total), content=c, style=s, tv=t, temporal=tt)


class _Reporter:
    """Turns each step into a Progress event and applies the tolerance stopping rule."""

    def __init__(self, callback, settings, scale, scales, size, steps, started, color_source):
        self.callback, self.settings = callback, settings
        self.scale, self.scales, self.size, self.steps = scale, scales, size, steps
        self.started, self.color_source = started, color_source
        self.history: list[float] = []
        self.phase_start = 0  # where the current precision's readings begin in history

    def new_phase(self) -> None:
        """The readings change precision: the tolerance rule compares within one precision."""
        self.phase_start = len(self.history)

    def step(self, losses_now: Losses, image_fn: Callable[[], np.ndarray]) -> bool:
        """Record a step; True when the tolerance rule says to stop."""
        self.history.append(losses_now.total)
        n = len(self.history)
        if self.callback is not None:
            snapshot = None
            if n % self.settings.snapshot_every == 0 or n == self.steps:
                snapshot = image_fn()
                if self.color_source is not None:
                    snapshot = images.preserve_colors(snapshot, self.color_source)
            self.callback(Progress(step=n, steps=self.steps, scale=self.scale,
                                   scales=self.scales, size=self.size, losses=losses_now,
                                   elapsed=time.perf_counter() - self.started,
                                   snapshot=snapshot))
        tol = self.settings.tolerance
        if tol > 0 and n - self.phase_start > TOLERANCE_WINDOW:
            before = self.history[-1 - TOLERANCE_WINDOW]
            if before - losses_now.total < tol * abs(before):
                return True
        return False


def effective_precision(settings: Settings) -> str:
    """settings.precision with "auto" decided for this process's hardware."""
    if settings.precision != "auto":
        return settings.precision
    from batch_style.engine.tf_runtime import native_bfloat16

    return "mixed" if native_bfloat16() else "float32"


def effective_winograd(settings: Settings) -> bool:
    """Whether float32 features are computed by Winograd's algorithm: settings.convolution,
    with "auto" deciding for this process's hardware (yes on a CPU, no on a GPU)."""
    if settings.convolution != "auto":
        return settings.convolution == "winograd"
    from batch_style.engine.tf_runtime import has_gpu

    return not has_gpu()


def phases(precision: str, steps: int, winograd: bool = False) -> list[tuple[str, int]]:
    """(arithmetic of the features (ARITHMETICS), steps) in order, for one scale's budget."""
    float32 = "winograd" if winograd else "float32"
    if precision != "mixed":
        return [(float32 if precision == "float32" else precision, steps)]
    bulk = round(MIXED_BULK * steps)
    return [(p, n) for p, n in (("bfloat16", bulk), (float32, steps - bulk)) if n > 0]


def _run_adam(stylizer: Stylizer, image, settings, schedule, report):
    x = tf.Variable(image[None], dtype=tf.float32)
    m = tf.Variable(tf.zeros_like(x))
    v = tf.Variable(tf.zeros_like(x))
    rate = tf.constant(settings.learning_rate, tf.float32)
    last, n = None, 0
    for i, (arithmetic, steps, objective_args) in enumerate(schedule):
        if i:
            report.new_phase()
        adam_step = stylizer._functions(arithmetic)[1]
        for _ in range(steps):
            n += 1
            total, terms = adam_step(x, m, v, tf.constant(n), rate, *objective_args)
            last = _losses(total, terms)
            if report.step(last, lambda: x.numpy()[0]):
                return x.numpy()[0], last, n, True
    return x.numpy()[0], last, n, False


def _lbfgs_trial(loss_and_grad, x, grad, direction, step, *objective_args):
    """The objective at the projected point clip(x + step·direction), and the change in the
    objective that the gradient at x predicts for it (the Armijo test's slope term)."""
    trial = tf.clip_by_value(x + step * direction, 0.0, 1.0)
    total, terms, trial_grad = loss_and_grad(trial, *objective_args)
    return trial, total, terms, trial_grad, tf.reduce_sum(grad * (trial - x))


class _Memory(NamedTuple):
    """L-BFGS's curvature pairs: the vectors s and y live in a variable `pairs` beside this
    (S in rows 0…m-1, Y in rows m…2m-1), each new pair written over the oldest (a ring: slot
    `newest` holds the newest), so a step never copies the memory. Their inner products are kept
    here by age, oldest first, up to date as pairs come and go (recomputing S·Yᵀ and Y·Yᵀ at
    every step would cost 4·m²·pixels FLOPs: 8% of a step at m = 100, 256 px)."""

    sy: tf.Tensor      # (m, m): sy[i, j] = s_i·y_j, by age (the last row is the newest pair)
    yy: tf.Tensor      # (m, m): yy[i, j] = y_i·y_j
    count: tf.Tensor   # pairs in use, the newest; 0: steepest descent
    newest: tf.Tensor  # the slot of the newest pair in `pairs`


def _lbfgs_memory(rows: int, n_pixels: int) -> tuple[_Memory, tf.Variable]:
    """An empty memory of `rows` pairs and the variable that holds its vectors."""
    products = tf.zeros((rows, rows))
    return (_Memory(products, products, tf.constant(0), tf.constant(rows - 1)),
            tf.Variable(tf.zeros((2 * rows, n_pixels)), trainable=False))


def history_rows(n_pixels: int) -> int:
    """Correction pairs L-BFGS keeps for an image of `n_pixels` values (H·W·3)."""
    fits = L_BFGS_MEMORY_BYTES // (2 * 4 * n_pixels)  # s and y in float32
    return int(min(L_BFGS_HISTORY, max(L_BFGS_MIN_HISTORY, fits)))


@tf.function
def _lbfgs_direction(x, grad, memory: _Memory, pairs: tf.Variable, s=None, y=None):
    """-H·g over the free pixels, H the L-BFGS inverse Hessian in compact form; first, given
    the last step s and its change of gradient y, the memory takes that pair in.

    H is built from the memory's newest `count` pairs in compact form (Byrd, Nocedal & Schnabel
    1994, as in Nocedal & Wright eq. 7.24: a handful of (m×n)·n products instead of the two-loop
    recursion's 4m vector passes). The memory is read twice: once for the products of every
    stored s and y with g and with the new pair (one matrix product), once for the direction.
    (Separate products and a memory shifted by copying took 67 ms a step at 256 px, m = 100, 9%
    of a Winograd step; README, Benchmark.) Pixels held at a bound by a gradient pointing out of
    [0,1] are fixed for this step. Returns the direction, its largest pixel move and the memory,
    its count set to 0 when it gave no descent direction and was dropped for steepest descent.

    A pair with s·y ≤ 0 is left out: it would make H indefinite (the curvature condition, which
    Armijo steps do not ensure). The test is on the cosine of s and y, free of the objective's
    scale: at 96 px with the default weights y·y / s·y is ~1e10, and a test of s·y against
    1e-10·y·y threw away every pair after the second one.
    """
    shape = tf.shape(x)
    g = tf.reshape(grad, (1, -1))
    at_bound = ((x <= 0.0) & (grad > 0.0)) | ((x >= 1.0) & (grad < 0.0))
    free = tf.reshape(tf.cast(~at_bound, tf.float32), (1, -1))
    q = g * free
    rows = memory.sy.shape[0]
    vectors = [q] if s is None else [q, tf.reshape(s, (1, -1)), tf.reshape(y, (1, -1))]
    # (2, m, k): S·v and Y·v for each vector v, by age. The memory is read without a copy:
    # after its first row update a variable is otherwise copied on every read (TensorFlow's
    # copy-on-read mode for sparsely updated variables: 75 ms a read here). The update below
    # waits for this product, so the read sees the memory as it was.
    unordered = tf.matmul(pairs.read_value_no_copy(), tf.concat(vectors, 0), transpose_b=True)
    products = tf.roll(tf.reshape(unordered, (2, rows, len(vectors))), -(memory.newest + 1),
                       axis=1)
    p_s, p_y = products[0, :, :1], products[1, :, :1]  # S·q, Y·q (m, 1)
    if s is not None:
        s, y = vectors[1], vectors[2]
        s_y = tf.reduce_sum(s * y)
        if s_y > 1e-6 * tf.norm(s) * tf.norm(y):
            slot = (memory.newest + 1) % rows  # the oldest pair's
            with tf.control_dependencies([unordered]):
                pairs.scatter_update(tf.IndexedSlices(tf.concat([s, y], 0),
                                                      tf.stack([slot, rows + slot])))
            # The products with the new memory: the oldest pair's dropped, the new one's last.
            new_row = tf.concat([products[1, 1:, 1], [s_y]], 0)[None, :]     # s·y_j
            new_column = tf.concat([products[0, 1:, 2], [s_y]], 0)[:, None]  # s_i·y
            y_row = tf.concat([products[1, 1:, 2], [tf.reduce_sum(y * y)]], 0)[None, :]
            memory = _Memory(
                tf.concat([tf.concat([memory.sy[1:, 1:], new_column[:-1]], 1), new_row], 0),
                tf.concat([tf.concat([memory.yy[1:, 1:], tf.transpose(y_row[:, :-1])], 1),
                           y_row], 0),
                tf.minimum(memory.count + 1, rows), slot)
            p_s = tf.concat([p_s[1:], [[tf.reduce_sum(s * q)]]], 0)
            p_y = tf.concat([p_y[1:], [[tf.reduce_sum(y * q)]]], 0)
    count = memory.count
    active = tf.cast(tf.range(rows) >= rows - count, tf.float32)  # by age
    mask = active[:, None] * active[None, :]  # rows not in use are masked out
    sy, yy = memory.sy * mask, memory.yy * mask
    d = tf.linalg.diag_part(sy)
    gamma = tf.where(count > 0, L_BFGS_H0_SCALE * d[-1] / tf.maximum(yy[-1, -1], 1e-30), 1.0)
    r = tf.linalg.band_part(sy, 0, -1) + tf.linalg.diag(1.0 - active)  # unused rows: identity
    p_s = p_s * active[:, None]
    p_y = gamma * p_y * active[:, None]
    r_inv_p_s = tf.linalg.triangular_solve(r, p_s, lower=False)
    a = tf.linalg.triangular_solve(
        r, d[:, None] * r_inv_p_s + gamma * tf.matmul(yy, r_inv_p_s) - p_y, lower=False,
        adjoint=True)  # rows not in use are 0 in both solutions: r is the identity there
    # H·q = γ·q + Sᵀ·a − γ·Yᵀ·R⁻¹·p_s: the coefficients back in slot order, one product.
    coefficients = tf.roll(tf.stack([a, -gamma * r_inv_p_s]), memory.newest + 1, axis=1)
    hq = gamma * q + tf.matmul(tf.reshape(coefficients, (2 * rows, 1)),
                               pairs.read_value_no_copy(), transpose_a=True)
    direction = -hq * free
    if tf.reduce_sum(g * direction) >= 0.0:
        count = tf.zeros_like(count)
        direction = -q
    return (tf.reshape(direction, shape), tf.reduce_max(tf.abs(direction)),
            memory._replace(count=count))


def _run_lbfgs(stylizer: Stylizer, image, settings, schedule, report):
    """L-BFGS (Gatys et al.'s choice) with box bounds [0,1], kept where the model runs.

    Projected L-BFGS: pixels at a bound whose gradient points outward stay put, the step is
    projected onto [0,1], and a backtracking line search (Armijo, quadratic interpolation)
    picks its length. The optimizer's state (image, gradient, curvature memory) stays on the
    device; each evaluation returns two scalars to Python. Measured as good per evaluation as
    SciPy's L-BFGS-B, whose host-side work grows as m²·pixels (README, Benchmark). A step is one
    objective evaluation, line searches included, so step budgets cost the same for Adam.

    With several phases (precision "mixed") the curvature memory carries over: a new phase
    reads the current image in its precision (a step) and goes on from there. A line search
    that cannot gain anything even along the steepest descent (bfloat16 noise can do that)
    ends its phase early.
    """
    x = tf.constant(image[None], tf.float32)
    n_pixels = int(np.prod(x.shape))
    memory, pairs = _lbfgs_memory(history_rows(n_pixels), n_pixels)
    zero = tf.zeros_like(x)
    n, best = 0, (math.inf, None, x)

    def record(total, terms, point) -> bool:
        """One evaluation: count it, keep the best, report; True when the tolerance stops."""
        nonlocal n, best
        n += 1
        losses_now = _losses(total, terms)
        if losses_now.total < best[0]:
            best = (losses_now.total, losses_now, point)
        return report.step(losses_now, lambda: point.numpy()[0])

    for i, (arithmetic, steps, objective_args) in enumerate(schedule):
        if steps <= 0:
            continue
        trial = stylizer._functions(arithmetic)[2]
        end = n + steps
        if i:
            report.new_phase()
            best = (math.inf, None, x)  # readings in another precision are not comparable
        _, f, terms, g, _ = trial(x, zero, zero, tf.constant(0.0), *objective_args)  # read x
        if record(f, terms, x):
            return best[2].numpy()[0], best[1], n, True
        f = float(f)
        direction, largest, memory = _lbfgs_direction(x, g, memory, pairs)
        while n < end:
            step = 1.0 if int(memory.count) else min(1.0, FIRST_STEP / max(float(largest), 1e-12))
            accepted = False
            while n < end:
                point, total, terms, point_g, predicted = trial(
                    x, g, direction, tf.constant(step, tf.float32), *objective_args)
                if record(total, terms, point):
                    return best[2].numpy()[0], best[1], n, True
                total, predicted = float(total), float(predicted)  # one read from the device
                if total <= f + ARMIJO * predicted:
                    accepted = True
                    break
                curvature = total - f - predicted
                guess = -predicted * step / (2 * curvature) if curvature > 0 else 0.0
                step = min(max(guess, 0.1 * step), 0.5 * step)
                if step * float(largest) < 1e-7:  # no pixel would move more than 1e-7
                    break
            if not accepted:
                if n >= end or not int(memory.count):
                    break  # out of budget, or even steepest descent gains nothing here
                # The memory's direction failed: try steepest descent.
                direction, largest, memory = _lbfgs_direction(
                    x, g, memory._replace(count=tf.constant(0)), pairs)
                continue
            s, y = point - x, point_g - g
            x, g, f = point, point_g, total
            direction, largest, memory = _lbfgs_direction(x, g, memory, pairs, s, y)
    # The best point read in the last precision: a line search may have ended on a worse one.
    return best[2].numpy()[0], best[1], n, False


_OPTIMIZERS = {"adam": _run_adam, "lbfgs": _run_lbfgs}
