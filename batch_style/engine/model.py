"""VGG19 feature extractor: Keras layer names, truncated after the deepest layer asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from batch_style.settings import POOLINGS, VGG19_CONV_LAYERS

Shape = tuple[int, int, int, int]  # a Keras conv kernel: (kh, kw, in, out)
Weights = dict[str, tuple[np.ndarray, np.ndarray]]  # layer -> (kernel (kh, kw, in, out), bias (out,))

# (block, number of 3x3 convolutions) of VGG19 (Simonyan & Zisserman, configuration E).
_BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
VGG19_WIDTHS = (64, 128, 256, 512, 512)  # output channels per block
# A VGG19 with 1/16 of the channels: same names, same shapes of maps, for tests of everything
# that does not need ImageNet features (the pipeline, the bookkeeping, the optimizers' plumbing).
TINY_WIDTHS = (4, 8, 16, 32, 32)


def _vgg19_shapes() -> dict[str, Shape]:
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    return {layer: (3, 3, channels[i], channels[i + 1]) for i, layer in enumerate(VGG19_CONV_LAYERS)}


# The layers and kernel shapes every weights file must hold (keras.applications.vgg19, no top).
VGG19_SHAPES: dict[str, Shape] = _vgg19_shapes()
# How the features are computed ("arithmetic", named per optimization phase):
# name → FeatureModel's (precision, winograd).
ARITHMETICS = {"float32": ("float32", False), "bfloat16": ("bfloat16", False),
               "winograd": ("float32", True)}


def _layer_sequence():
    """Yield (name, kind) in network order: kind is 'conv' or 'pool'."""
    for block, n_convs in _BLOCKS:
        for i in range(1, n_convs + 1):
            yield f"block{block}_conv{i}", "conv"
        yield f"block{block}_pool", "pool"


def winograd_pays(in_channels: int) -> bool:
    """Where Winograd's convolution measured faster than Keras' Conv2D on a CPU (winograd.py):
    with 64 input channels or more (all but block1_conv1; never in the tiny test network)."""
    return in_channels >= 64


def _computes_winograd(precision: str, winograd: bool) -> bool:
    """Whether a model asked for Winograd's convolutions computes them: in float32 only (the
    transforms scale values by up to ~100, more than bfloat16's mantissa carries)."""
    return winograd and precision == "float32"


def layers_needed(layer_names: Sequence[str]) -> list[tuple[str, str]]:
    """The network's layers up to and including the deepest of `layer_names`."""
    sequence = list(_layer_sequence())
    order = [name for name, _ in sequence]
    last = max(order.index(n) for n in layer_names)
    return sequence[: last + 1]


def carry_down(mask: np.ndarray, layer_names: Sequence[str]) -> dict[str, np.ndarray]:
    """{name: (1,h,w,1) float32} a mask (H×W at the image's size) on each named layer's map.

    At each pool the mask is averaged over the pool's 2×2 windows (odd last rows and columns
    dropped, as the pools drop them); a convolution keeps it as it is. Averaging keeps a soft
    mask soft and a region's share of the map what it was in pixels. Gatys et al. (2017) also
    offer an eroded form (a position counts only where its whole receptive field is inside the
    region); at block5_conv1 that field is 156 px wide, so a region narrower than that would get
    no style there, and a soft seam would become a band without style: not used.
    """
    m = np.asarray(mask, np.float32)
    maps = {}
    for name, kind in layers_needed(layer_names):
        if kind == "pool":
            h, w = m.shape[0] // 2, m.shape[1] // 2
            m = m[:2 * h, :2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
        if name in layer_names:
            maps[name] = m[None, :, :, None].copy()
    return maps


def preprocess(x):
    """RGB in [0,1] → what VGG19 was trained on: Keras' vgg19.preprocess_input(255·x).

    ('caffe' mode: RGB→BGR and ImageNet mean subtracted, no scaling), kept as a call to Keras so
    the definition stays Keras' own.
    """
    import keras

    return keras.applications.vgg19.preprocess_input(x * 255.0)


class FeatureModel:
    """VGG19 convolutional layers returning the named feature maps of an RGB [0,1] batch.

    `weights` maps layer name → (kernel (3,3,in,out), bias); None gives random (He-normal)
    weights, used by tests with `widths=TINY_WIDTHS`. `pooling` "avg" replaces every 2×2 max
    pool by an average pool (Gatys et al.'s smoother variant).
    """

    def __init__(self, layer_names: Sequence[str],
                 weights: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 widths: Sequence[int] = VGG19_WIDTHS, seed: int = 0,
                 precision: str = "float32", winograd: bool = False, pooling: str = "max"):
        import keras

        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
        self.layer_names = tuple(dict.fromkeys(layer_names))  # unique, order kept
        self.widths = tuple(widths)
        self.precision = precision
        self.pooling = pooling
        # "bfloat16": convolutions in bfloat16 with float32 weights (Keras' mixed_bfloat16
        # policy); the maps are returned as float32, so Grams and losses stay float32.
        policy = {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]
        self.winograd = _computes_winograd(precision, winograd)
        inputs = keras.Input(shape=(None, None, 3), name="image")
        x = inputs
        outputs = {}
        initializer = keras.initializers.HeNormal(seed=seed)
        channels, pays = 3, []
        for name, kind in layers_needed(self.layer_names):
            block = int(name[5])
            if kind == "conv":
                pays.append(winograd_pays(channels))
            if kind == "conv" and self.winograd and pays[-1]:
                from batch_style.engine import winograd  # loads TensorFlow: only when asked for

                x = winograd.layer_class()(self.widths[block - 1], initializer, name=name)(x)
            elif kind == "conv":
                x = keras.layers.Conv2D(self.widths[block - 1], 3, padding="same",
                                        activation="relu", name=name, dtype=policy,
                                        kernel_initializer=initializer)(x)
            elif pooling == "avg":  # its gradient is cheap everywhere: no compiled twin needed
                x = keras.layers.AveragePooling2D(2, strides=2, name=name, dtype=policy)(x)
            elif self.winograd and pays[-1]:  # after a Winograd layer: the CPU network's pool
                from batch_style.engine import pooling as compiled_pooling  # loads TensorFlow

                x = compiled_pooling.layer_class()(name=name)(x)
            else:
                x = keras.layers.MaxPooling2D(2, strides=2, name=name, dtype=policy)(x)
            channels = self.widths[block - 1]
            if name in self.layer_names:
                outputs[name] = keras.ops.cast(x, "float32")
        self.winograd_differs = any(pays)  # whether a Winograd twin would differ from this
        self.winograd_layers = sum(pays) if self.winograd else 0
        self.keras_model = keras.Model(inputs, outputs, name="vgg19_features")
        self.keras_model.trainable = False
        # Random weights are set like real ones, so Winograd layers transform them too.
        self._set_weights(self.conv_weights() if weights is None else weights)

    def twin(self, precision: str, winograd: bool = False) -> FeatureModel:
        """The same network and weights computing in another precision (e.g. bfloat16) or,
        in float32, by Winograd's algorithm where it pays."""
        if (precision, _computes_winograd(precision, winograd)) == (self.precision, self.winograd):
            return self
        return FeatureModel(self.layer_names, self.conv_weights(), self.widths,
                            precision=precision, winograd=winograd, pooling=self.pooling)

    def _conv_layers(self):
        return [layer for layer in self.keras_model.layers
                if layer.name.startswith("block") and "conv" in layer.name]

    def conv_weights(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """layer name → (kernel, bias), as `weights` takes them."""
        return {layer.name: (layer.kernel.numpy(), layer.bias.numpy())
                for layer in self._conv_layers()}

    def _set_weights(self, weights: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for layer in self._conv_layers():
            if layer.name not in weights:
                raise ValueError(f"VGG19 weights: no weights for layer {layer.name!r}")
            kernel, bias = weights[layer.name]
            expected = (tuple(layer.kernel.shape), tuple(layer.bias.shape))
            if (kernel.shape, bias.shape) != expected:
                raise ValueError(f"VGG19 weights: layer {layer.name!r} expected shapes "
                                 f"{expected}, got {(kernel.shape, bias.shape)}")
            kernel, bias = kernel.astype(np.float32), bias.astype(np.float32)
            if hasattr(layer, "set_kernel"):  # a Winograd layer: keeps its transforms in step
                layer.set_kernel(kernel, bias)
            else:
                layer.set_weights([kernel, bias])

    def __call__(self, images):
        """Feature maps {name: (N,H,W,C) float32} for a batch of RGB images in [0,1]."""
        return self.keras_model(preprocess(images), training=False)

    @property
    def min_size(self) -> int:
        """The smallest image side that leaves every requested map at least 1 px."""
        return 2 ** sum(1 for _, kind in layers_needed(self.layer_names) if kind == "pool")

