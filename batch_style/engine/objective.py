"""The objective of Gatys et al. for one feature model: its value, terms and gradient, traced."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from batch_style.engine import losses
from batch_style.engine.model import FeatureModel


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
class Temporal:
    """Video coherence term: keep pixels where `mask` is 1 close to `previous` (Ruder et al.)."""

    previous: np.ndarray    # HxWx3, the previous stylized frame warped to this one
    mask: np.ndarray        # HxW or HxWx1 in [0,1]


def losses_of(total, terms) -> Losses:
    """Losses from the objective's total and its four terms (tensors)."""
    c, s, t, tt = (float(v) for v in np.asarray(terms))
    return Losses(total=float(total), content=c, style=s, tv=t, temporal=tt)


def loss_and_grad(model, x, content_targets, style_targets, layer_weights, weights,
                  temporal_previous, temporal_mask, style_guides=(), content_guides=None):
    """Total loss, its terms and d(total)/dx (the objective as docs/design.md defines it).

    With `style_guides` (one {layer: (1,h,w,1) guide} per style, docs/masks.md) `style_targets`
    holds one {layer: target} per style and the style term is one guided term per style;
    `content_guides` ({layer: (1,h,w,1)}) weights the content term's positions (protect).
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        features = model(x)
        content = losses.content_loss({n: features[n] for n in content_targets},
                                      content_targets, content_guides)
        if style_guides:
            style = losses.guided_style_loss(
                [{n: losses.guided_gram(features[n], g[n]) for n in g} for g in style_guides],
                style_targets, [{n: tf.reduce_mean(g[n]) for n in g} for g in style_guides],
                layer_weights)
        else:
            style = losses.style_loss({n: losses.gram(features[n]) for n in style_targets},
                                      style_targets, layer_weights)
        tv = losses.tv_loss(x)
        temporal = tf.reduce_mean(temporal_mask * tf.square(x - temporal_previous))
        total = (weights[0] * content + weights[1] * style + weights[2] * tv
                 + weights[3] * temporal)
    return total, tf.stack([content, style, tv, temporal]), tape.gradient(total, x)


class Objective:
    """The objective for one feature model, traced by TensorFlow once per image size.

    `evaluate(x, *args)` gives (total, terms, gradient) for a (1, H, W, 3) image; the optimizers
    trace their compound steps around it with `traced(step)` (once per step function).
    """

    chunked = True  # its steps may run many to a call (chunked.py)

    def __init__(self, model: FeatureModel):
        self.model = model
        self.evaluate = tf.function(functools.partial(loss_and_grad, model),
                                    reduce_retracing=False)
        self._traced: dict[Callable, Callable] = {}

    def traced(self, step: Callable) -> Callable:
        """tf.function of `step(evaluate, *args)` with this objective's evaluate bound."""
        if step not in self._traced:
            self._traced[step] = tf.function(functools.partial(step, self.evaluate))
        return self._traced[step]
