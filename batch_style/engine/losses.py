"""The objective of Gatys et al. as pure functions of tensors (docs/design.md, "The objective")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf


@tf.custom_gradient
def gram(features: tf.Tensor) -> tf.Tensor:
    """Gram matrix FᵀF / (H·W) of one (1,H,W,C) feature map, as (C,C).

    Normalized by the number of positions only, as in the TensorFlow tutorial, so the style term
    does not grow with the image size; Gatys et al. divide the loss by 4·N²·M² instead.

    Its gradient is F·(dG + dGᵀ) / (H·W): one matrix product where differentiating the product
    FᵀF takes two (one per factor) and their sum: the Grams' forward and backward in a 256 px
    step took 94 ms that way, 73 ms this way.
    """
    channels = tf.shape(features)[-1]
    flat = tf.reshape(features, (-1, channels))
    positions = tf.cast(tf.shape(flat)[0], features.dtype)

    def grad(upstream):
        both = upstream + tf.transpose(upstream)
        return tf.reshape(tf.matmul(flat, both) / positions, tf.shape(features))

    return tf.matmul(flat, flat, transpose_a=True) / positions, grad


@tf.custom_gradient
def guided_gram(features: tf.Tensor, guide: tf.Tensor) -> tf.Tensor:
    """Guided Gram matrix Fᵀ·diag(g)·F / Σg of one (1,H,W,C) map and its (1,H,W,1) guide g ≥ 0
    (Gatys et al. 2017, "Controlling perceptual factors"): the Gram of the guided region alone.

    Divided by the guide's sum, not by H·W: a region's Gram is the mean over its own positions,
    so a small region is matched to its style as closely as a large one (neural-style-tf divides
    by the whole map, which makes a small region's Gram, and its style, faint). Gatys et al.'s
    code weights positions by g², normalized likewise; we weight by g, so that where two soft
    masks meet at 0.5 each style counts half. An all-ones guide gives gram(features) exactly.
    An empty guide gives zeros (its term's weight, the guide's mean, is zero too).
    """
    channels = tf.shape(features)[-1]
    flat = tf.reshape(features, (-1, channels))
    weights = tf.reshape(guide, (-1, 1))
    total = tf.maximum(tf.reduce_sum(weights), 1e-30)  # an empty guide: zeros, not NaN
    weighted = flat * weights

    def grad(upstream):
        both = upstream + tf.transpose(upstream)
        return tf.reshape(tf.matmul(weighted, both) / total, tf.shape(features)), None

    return tf.matmul(weighted, flat, transpose_a=True) / total, grad


def blend_grams(grams_per_style: Sequence[Mapping[str, tf.Tensor]],
                blend: Sequence[float]) -> dict[str, tf.Tensor]:
    """Style targets of several styles mixed with weights: a weighted mean of their Grams."""
    total = float(sum(blend))
    names = grams_per_style[0].keys()
    return {n: tf.add_n([g[n] * (w / total) for g, w in zip(grams_per_style, blend)])
            for n in names}


def style_loss(grams: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor],
               layer_weights: Mapping[str, float]) -> tf.Tensor:
    """Weighted mean over style layers of the mean over C×C of (G(x) − G(style))²."""
    total = float(sum(layer_weights.values()))
    return tf.add_n([tf.reduce_mean(tf.square(grams[n] - targets[n])) * (w / total)
                     for n, w in layer_weights.items()])


def guided_style_loss(grams: Sequence[Mapping[str, tf.Tensor]],
                      targets: Sequence[Mapping[str, tf.Tensor]],
                      shares: Sequence[Mapping[str, tf.Tensor]],
                      layer_weights: Mapping[str, float]) -> tf.Tensor:
    """style_loss with a term per style: each style k's guided Grams against its own targets,
    weighted by its guide's mean on that layer (`shares`, the region's share of the map times
    the style's blend share). A position's pull towards style k is then its guide value, as an
    unguided style's pull is 1: a style is as strong in its region as it is on a whole picture.
    With one all-ones guide this is style_loss, exactly."""
    total = float(sum(layer_weights.values()))
    return tf.add_n([tf.reduce_mean(tf.square(g[n] - a[n])) * share[n] * (w / total)
                     for n, w in layer_weights.items()
                     for g, a, share in zip(grams, targets, shares)])


def content_loss(features: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor],
                 weights: Mapping[str, tf.Tensor] | None = None) -> tf.Tensor:
    """Mean over content layers of the mean over H×W×C of (F(x) − F(content))², each position
    times its (1,H,W,1) weight when `weights` are given (a protected region's are higher)."""
    if weights is None:
        return tf.add_n([tf.reduce_mean(tf.square(features[n] - targets[n]))
                         for n in targets]) / float(len(targets))
    return tf.add_n([tf.reduce_mean(weights[n] * tf.square(features[n] - targets[n]))
                     for n in targets]) / float(len(targets))


def tv_loss(image: tf.Tensor) -> tf.Tensor:
    """Total variation: the sum of absolute differences between neighbouring pixels."""
    return tf.reduce_sum(tf.image.total_variation(image))
