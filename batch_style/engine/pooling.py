"""VGG19's 2×2 max pooling with its gradient compiled by XLA: the pooling of the CPU network.

TensorFlow's MaxPoolGrad on a CPU is slow next to the rest of a step: at 256×192 the four
pools' forward + backward took 74 ms (41 ms at 192×256×64 alone), the compiled routing below
25 ms, in one process, the same gradient to the bit. The forward stays TensorFlow's MaxPool.
Used after the Winograd layers (model.py), so on CPUs; GPUs keep Keras' MaxPooling2D (cuDNN's).
"""

from __future__ import annotations

import functools

from batch_style.engine.tf_runtime import import_tensorflow

tf = import_tensorflow()


def _route(x, dy):
    """The gradient of a 2×2, stride 2, 'valid' max pool of x (N,H,W,C): each window's upstream
    gradient dy goes to its largest input, the first in row-major order on ties (as
    MaxPoolGrad); a last odd row or column, which the pool drops, gets zeros."""
    n, h, w, c = tf.unstack(tf.shape(x))
    ho, wo = h // 2, w // 2
    window = tf.reshape(x[:, :2 * ho, :2 * wo], [n, ho, 2, wo, 2, c])
    corners = [window[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]  # (n, ho, wo, c) each
    y = functools.reduce(tf.maximum, corners)
    routed, taken = [], tf.zeros_like(y, dtype=tf.bool)
    for corner in corners:
        here = (corner == y) & ~taken
        taken |= here
        routed.append(tf.where(here, dy, tf.zeros_like(dy)))
    rows = [tf.stack(routed[:2], 3), tf.stack(routed[2:], 3)]             # (n, ho, wo, 2, c)
    dx = tf.reshape(tf.stack(rows, 2), [n, 2 * ho, 2 * wo, c])
    return tf.pad(dx, [[0, 0], [0, h - 2 * ho], [0, w - 2 * wo], [0, 0]])


# Traced once for every shape, as winograd._compiled; XLA compiles each shape it meets.
_compiled_route = tf.function(_route, jit_compile=True,
                              input_signature=[tf.TensorSpec([None] * 4)] * 2)


@tf.custom_gradient
def max_pool2x2(x):
    """Keras' MaxPooling2D(2, strides=2) of x (N,H,W,C), its gradient compiled."""
    def grad(dy):
        return tf.ensure_shape(_compiled_route(x, dy), x.shape)

    return tf.nn.max_pool2d(x, 2, 2, "VALID"), grad


@functools.cache
def layer_class():
    """The Keras layer (made on first use: Keras is imported where the model is built)."""
    import keras

    class CompiledMaxPool2D(keras.layers.Layer):
        """Keras' MaxPooling2D(2, strides=2) in float32, computed by max_pool2x2."""

        def call(self, x):
            return max_pool2x2(x)

        def compute_output_shape(self, input_shape):
            n, h, w, c = input_shape
            return (n, None if h is None else h // 2, None if w is None else w // 2, c)

    return CompiledMaxPool2D
