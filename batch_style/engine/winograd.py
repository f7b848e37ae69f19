"""3×3 'same' convolutions by Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray 2016).

A 6×6 input tile, transformed, times the transformed kernel, transformed back, gives a 4×4
output tile: 36 multiplies per input channel for 16 outputs where direct convolution does 144,
so the products are 4× fewer. The kernel transforms are computed once, when the weights are
set; the products are one batched matrix product per layer, (36 × tiles × in) · (36 × in × out).

Why: on an AVX2 CPU oneDNN's direct convolution already runs a VGG19 step at ~80% of a matrix
product's FLOP/s (its Winograd kernels are AVX-512 only), so doing fewer multiplies is what is
left. Measured on a 2-core AMD EPYC (Zen 1), float32, forward + input gradient: 1.3× faster
than Conv2D at block1_conv2 (64 channels over the whole image, where the transforms' memory
traffic eats most of the gain), 1.6–2.6× for the deeper layers, and a whole 256×192 step of
the objective 2.1× faster (0.61 s against 1.27 s). GPUs keep Conv2D: cuDNN picks its own
algorithm, Winograd among them. Float32 only: the transforms scale values by up
to ~100 (the 4s and 8s of Bᵀ and Aᵀ), which bfloat16's 8-bit mantissa does not survive.

Accuracy: within ~5e-6 of Conv2D relative to a layer's largest output (tests/test_winograd.py
asks for 1e-5); the objective's gradient at the image within ~1e-4 of Conv2D's.
"""

from __future__ import annotations

import functools

import numpy as np

from batch_style.engine.tf_runtime import import_tensorflow

tf = import_tensorflow()

# Lavin & Gray's F(4, 3) matrices: y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A for a 6×6 tile d, 3×3 kernel g.
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]])
TILE, OUT = 6, 4  # input tile side, output tile side


def _input_transform(d):
    """Bᵀd for the six rows d0…d5 of a tile (written out: under XLA these fuse into one pass)."""
    d0, d1, d2, d3, d4, d5 = d
    return [4 * d0 - 5 * d2 + d4,
            -4 * (d1 + d2) + d3 + d4,
            4 * (d1 - d2) - d3 + d4,
            2 * (d3 - d1) - d2 + d4,
            2 * (d1 - d3) - d2 + d4,
            4 * d1 - 5 * d3 + d5]


def _output_transform(m):
    """Aᵀm for the six rows m0…m5 of a transformed tile: four output rows."""
    m0, m1, m2, m3, m4, m5 = m
    plus, minus = m1 + m2, m1 - m2
    plus2, minus2 = m3 + m4, m3 - m4
    return [m0 + plus + plus2, minus + 2 * minus2, plus + 4 * plus2, minus + 8 * minus2 + m5]


def transform_kernel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3,3,in,out) kernel → its transforms (36,in,out) for the convolution and for its input
    gradient (the kernel turned 180° with in and out swapped: a 'same' convolution's transpose),
    computed in float64 and stored in float32."""
    kernel = np.asarray(kernel, np.float64)

    def transform(g):  # G g Gᵀ for every (in, out), as two contiguous matrix products
        inputs, outputs = g.shape[2:]
        gg = np.matmul(_G, g.reshape(3, 3, inputs * outputs))           # (i, b, in·out)
        u = np.matmul(_G, gg.reshape(3, TILE * inputs * outputs))       # (a, b·in·out)
        return u.reshape(TILE * TILE, inputs, outputs).astype(np.float32)

    return transform(kernel), transform(kernel[::-1, ::-1].transpose(0, 1, 3, 2))


def _convolve(x, u):
    """The 'same' 3×3 correlation of x (N,H,W,in) with the kernel whose transform is u.

    The transforms are written on stacked axes: XLA compiles that in ~0.7 s a layer, against
    ~2 s for the same arithmetic on 36 separate slices, and runs it as fast.
    """
    n, h, w, c = tf.unstack(tf.shape(x))
    k = tf.shape(u)[-1]
    th, tw = (h + OUT - 1) // OUT, (w + OUT - 1) // OUT
    # One pixel of zeros before (the 'same' padding) and enough after for 4·t + 4 rows, so the
    # overlapping 6-row windows at stride 4 are two reshapes of aligned slices: rows 4t…4t+3 and
    # 4t+4…4t+5 (no gather, whose gradient would be a scatter).
    x = tf.pad(x, [[0, 0], [1, OUT * th + 3 - h], [1, OUT * tw + 3 - w], [0, 0]])
    width = OUT * tw + OUT
    first = tf.reshape(x[:, :OUT * th], [n, th, OUT, width, c])
    second = tf.reshape(x[:, OUT:OUT * th + OUT], [n, th, OUT, width, c])[:, :, :TILE - OUT]
    d = tf.concat([first, second], 2)                                       # (n, th, 6, W, c)
    d = tf.stack(_input_transform(tf.unstack(d, axis=2)), 1)                # (n, 6, th, W, c)
    first = tf.reshape(d[:, :, :, :OUT * tw], [n, TILE, th, tw, OUT, c])
    second = tf.reshape(d[:, :, :, OUT:OUT * tw + OUT],
                        [n, TILE, th, tw, OUT, c])[:, :, :, :, :TILE - OUT]
    d = tf.concat([first, second], 4)                                       # (n, 6, th, tw, 6, c)
    d = tf.stack(_input_transform(tf.unstack(d, axis=4)), 0)                # (6, n, 6, th, tw, c)
    v = tf.reshape(tf.transpose(d, [2, 0, 1, 3, 4, 5]), [TILE * TILE, n * th * tw, c])
    m = tf.reshape(tf.matmul(v, u), [TILE, TILE, n, th, tw, k])
    y = tf.stack(_output_transform(tf.unstack(m, axis=0)), 0)              # (4, 6, n, th, tw, k)
    y = tf.stack(_output_transform(tf.unstack(y, axis=1)), 0)              # (4j, 4i, n, th, tw, k)
    y = tf.transpose(y, [2, 3, 1, 4, 0, 5])                                 # (n, th, 4i, tw, 4j, k)
    return tf.reshape(y, [n, OUT * th, OUT * tw, k])[:, :h, :w]


@tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None, None, None, None]),
                                                tf.TensorSpec([TILE * TILE, None, None])])
def _compiled(x, u):
    """_convolve compiled by XLA, once per layer shape: XLA fuses the transforms into a few
    passes over memory; as dozens of separate TensorFlow ops the same layer ran 2× slower than
    Conv2D. (Fusing the bias, the ReLU and its mask in as well measured no faster: 0.608 vs
    0.615 s a step, and cost a compile per direction instead of one per shape.)

    Traced once for every shape (the signature leaves them open; XLA still compiles each shape
    it meets): traced per shape, the eleven shapes of a 256 px VGG19 step took 5.3 s of its
    first step to trace, ~2 s this way."""
    return _convolve(x, u)


@tf.custom_gradient
def conv3x3(x, u, u_transposed):
    """The 3×3 'same' convolution of x (N,H,W,in), the kernel given by transform_kernel's pair.

    The input gradient is the transposed convolution, itself a Winograd convolution with the
    turned kernel: measured 2× faster than differentiating through the transforms; a square
    layer's shapes are the same both ways, so one compiled function serves both. The kernel is
    a constant of the objective: no gradient flows to it.
    """
    def grad(dy):
        return tf.ensure_shape(_compiled(dy, u_transposed), x.shape), None, None

    # The shapes _compiled's open signature leaves unknown, given back to the graph.
    return tf.ensure_shape(_compiled(x, u), [*x.shape[:-1], u.shape[-1]]), grad


@functools.cache
def layer_class():
    """The Keras layer (made on first use: Keras is imported where the model is built)."""
    import keras

    class WinogradConv2D(keras.layers.Layer):
        """Keras' Conv2D(filters, 3, padding="same", activation="relu") in float32, computed
        by conv3x3. Its kernel and bias are set through set_kernel, which computes the
        transforms the convolution uses."""

        def __init__(self, filters: int, kernel_initializer="he_normal", **kwargs):
            super().__init__(**kwargs)
            self.filters = filters
            self.kernel_initializer = keras.initializers.get(kernel_initializer)

        def build(self, input_shape):
            inputs = input_shape[-1]
            self.kernel = self.add_weight(shape=(3, 3, inputs, self.filters), name="kernel",
                                          initializer=self.kernel_initializer, trainable=False)
            self.bias = self.add_weight(shape=(self.filters,), name="bias", initializer="zeros",
                                        trainable=False)
            cells = TILE * TILE
            # Zero until set_kernel computes them (FeatureModel always calls it).
            self.transformed = self.add_weight(shape=(cells, inputs, self.filters),
                                               name="transformed", initializer="zeros",
                                               trainable=False)
            self.transformed_t = self.add_weight(shape=(cells, self.filters, inputs),
                                                 name="transformed_t", initializer="zeros",
                                                 trainable=False)

        def set_kernel(self, kernel: np.ndarray, bias: np.ndarray) -> None:
            self.kernel.assign(kernel)
            self.bias.assign(bias)
            u, u_t = transform_kernel(kernel)
            self.transformed.assign(u)
            self.transformed_t.assign(u_t)

        def call(self, x):
            return tf.nn.relu(conv3x3(x, self.transformed, self.transformed_t) + self.bias)

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], self.filters)

    return WinogradConv2D
