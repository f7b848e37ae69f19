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


def content_loss(features: Mapping[str, tf.Tensor],
                 targets: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Mean over content layers of the mean over H×W×C of (F(x) − F(content))²."""
    return tf.add_n([tf.reduce_mean(tf.square(features[n] - targets[n])) for n in targets]) \
        / float(len(targets))


def tv_loss(image: tf.Tensor) -> tf.Tensor:
    """Total variation: the sum of absolute differences between neighbouring pixels."""
    return tf.reduce_sum(tf.image.total_variation(image))
