"""VGG19 feature extractor: Keras layer names, truncated after the deepest layer asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# (block, number of 3x3 convolutions) of VGG19 (Simonyan & Zisserman, configuration E).
_BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
VGG19_WIDTHS = (64, 128, 256, 512, 512)  # output channels per block
# A VGG19 with 1/16 of the channels: same names, same shapes of maps, for tests of everything
# that does not need ImageNet features (the pipeline, the bookkeeping, the optimizers' plumbing).
TINY_WIDTHS = (4, 8, 16, 32, 32)


def _layer_sequence():
    """Yield (name, kind) in network order: kind is 'conv' or 'pool'."""
    for block, n_convs in _BLOCKS:
        for i in range(1, n_convs + 1):
            yield f"block{block}_conv{i}", "conv"
        yield f"block{block}_pool", "pool"


def layers_needed(layer_names: Sequence[str]) -> list[tuple[str, str]]:
    """The network's layers up to and including the deepest of `layer_names`."""
    sequence = list(_layer_sequence())
    order = [name for name, _ in sequence]
    last = max(order.index(n) for n in layer_names)
    return sequence[: last + 1]


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
    weights, used by tests with `widths=TINY_WIDTHS`.
    """

    def __init__(self, layer_names: Sequence[str],
                 weights: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 widths: Sequence[int] = VGG19_WIDTHS, seed: int = 0,
                 precision: str = "float32"):
        import keras

        self.layer_names = tuple(dict.fromkeys(layer_names))  # unique, order kept
        self.widths = tuple(widths)
        self.precision = precision
        # "bfloat16": convolutions in bfloat16 with float32 weights (Keras' mixed_bfloat16
        # policy); the maps are returned as float32, so Grams and losses stay float32.
        policy = {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]
        inputs = keras.Input(shape=(None, None, 3), name="image")
        x = inputs
        outputs = {}
        initializer = keras.initializers.HeNormal(seed=seed)
        for name, kind in layers_needed(self.layer_names):
            block = int(name[5])
            if kind == "conv":
                x = keras.layers.Conv2D(self.widths[block - 1], 3, padding="same",
                                        activation="relu", name=name, dtype=policy,
                                        kernel_initializer=initializer)(x)
            else:
                x = keras.layers.MaxPooling2D(2, strides=2, name=name, dtype=policy)(x)
            if name in self.layer_names:
                outputs[name] = keras.ops.cast(x, "float32")
        self.keras_model = keras.Model(inputs, outputs, name="vgg19_features")
        self.keras_model.trainable = False
        if weights is not None:
            self._set_weights(weights)

    def twin(self, precision: str) -> FeatureModel:
        """The same network and weights computing in another precision (e.g. bfloat16)."""
        if precision == self.precision:
            return self
        other = FeatureModel(self.layer_names, None, self.widths, precision=precision)
        for mine, theirs in zip(self.keras_model.layers, other.keras_model.layers):
            theirs.set_weights(mine.get_weights())
        return other

    def _set_weights(self, weights: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for layer in self.keras_model.layers:
            if not layer.name.startswith("block") or "conv" not in layer.name:
                continue
            if layer.name not in weights:
                raise ValueError(f"VGG19 weights: no weights for layer {layer.name!r}")
            kernel, bias = weights[layer.name]
            expected = tuple(v.shape for v in layer.get_weights())
            if (kernel.shape, bias.shape) != expected:
                raise ValueError(f"VGG19 weights: layer {layer.name!r} expected shapes "
                                 f"{expected}, got {(kernel.shape, bias.shape)}")
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])

    def __call__(self, images):
        """Feature maps {name: (N,H,W,C) float32} for a batch of RGB images in [0,1]."""
        return self.keras_model(preprocess(images), training=False)

    @property
    def min_size(self) -> int:
        """The smallest image side that leaves every requested map at least 1 px."""
        return 2 ** sum(1 for _, kind in layers_needed(self.layer_names) if kind == "pool")


def load_feature_model(layer_names: Sequence[str], weights_path=None, *, tiny: bool = False,
                       seed: int = 0) -> FeatureModel:
    """The real VGG19 (weights resolved as DESIGN.md says) or, with tiny=True, a random tiny one.

    In float32; the Stylizer makes a lower-precision twin when the settings ask for one.
    """
    if tiny:
        return FeatureModel(layer_names, None, TINY_WIDTHS, seed=seed)
    from batch_style import weights as vgg_weights

    source = vgg_weights.resolve(weights_path)
    return FeatureModel(layer_names, vgg_weights.load(source))
