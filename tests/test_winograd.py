"""Winograd's F(4×4, 3×3) and the compiled max pool against Keras' / TensorFlow's layers."""

import numpy as np
import pytest

from batch_style.engine.tf_runtime import import_tensorflow

tf = import_tensorflow()

from batch_style.engine import pooling, winograd  # noqa: E402
from batch_style.engine.model import TINY_WIDTHS, FeatureModel, winograd_pays  # noqa: E402
from batch_style.engine.policy import effective_winograd, phases  # noqa: E402
from batch_style.engine.stylizer import Stylizer  # noqa: E402
from batch_style.settings import resolve  # noqa: E402

# Enough channels (≥ 64) that every layer but block1_conv1 is a Winograd layer; maps kept small.
WIDE = (64, 64, 64, 64, 64)
LAYERS = ["block1_conv1", "block2_conv1", "block4_conv2", "block5_conv1"]


def _relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _with_input_gradient(layer, x, dy):
    """layer(x) and the gradient at x of the layer's output taken against dy."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * dy)
    return y, tape.gradient(loss, x)


# Sides that are and are not multiples of the 4-pixel output tile, down to one pixel.
@pytest.mark.parametrize("height, width", [(8, 12), (7, 10), (13, 5), (1, 1), (4, 6)])
def test_convolution_and_input_gradient_match_conv2d(height, width):
    rng = np.random.default_rng(height * 100 + width)
    x = tf.constant(rng.standard_normal((2, height, width, 5)), tf.float32)
    kernel = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    u, u_t = (tf.constant(t) for t in winograd.transform_kernel(kernel))
    dy = tf.constant(rng.standard_normal((2, height, width, 7)), tf.float32)

    expected, expected_grad = _with_input_gradient(lambda v: tf.nn.conv2d(v, kernel, 1, "SAME"),
                                                   x, dy)
    got, got_grad = _with_input_gradient(lambda v: winograd.conv3x3(v, u, u_t), x, dy)
    assert got.shape == expected.shape and got_grad.shape == x.shape
    assert _relative(got, expected) < 1e-5
    assert _relative(got_grad, expected_grad) < 1e-5


# Even and odd sides (a last odd row or column is dropped by the pool and gets no gradient);
# values from a few levels, so windows hold ties (the first in row-major order takes the
# gradient, as in MaxPoolGrad), and a constant image, where every window is one tie.
@pytest.mark.parametrize("height, width", [(8, 12), (7, 10), (2, 3), (3, 2)])
@pytest.mark.parametrize("values", ["levels", "constant"])
def test_max_pool_and_its_gradient_match_tensorflows(height, width, values):
    rng = np.random.default_rng(height * 100 + width)
    shape = (2, height, width, 5)
    x = tf.constant(rng.integers(0, 3, shape) if values == "levels" else np.ones(shape),
                    tf.float32)
    dy = tf.constant(rng.standard_normal((2, height // 2, width // 2, 5)), tf.float32)

    expected, expected_grad = _with_input_gradient(lambda v: tf.nn.max_pool2d(v, 2, 2, "VALID"),
                                                   x, dy)
    got, got_grad = _with_input_gradient(pooling.max_pool2x2, x, dy)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_grad, expected_grad)
    # Each window's gradient went to exactly one of its inputs.
    assert np.count_nonzero(got_grad) == np.count_nonzero(dy)


def test_kernel_transform_is_g_kernel_g_transposed():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 4, 6))
    u, u_t = winograd.transform_kernel(kernel)
    g = winograd._G
    expected = np.einsum("ai,ijcn,bj->abcn", g, kernel, g).reshape(36, 4, 6)
    turned = np.einsum("ai,ijcn,bj->abcn", g, kernel[::-1, ::-1].transpose(0, 1, 3, 2), g)
    np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(u_t, turned.reshape(36, 6, 4), rtol=1e-6, atol=1e-6)


def test_winograd_model_has_the_direct_models_features_and_weights():
    direct = FeatureModel(LAYERS, None, WIDE, seed=3)
    twin = direct.twin("float32", winograd=True)
    # Every convolution with 64 inputs or more: all but block1_conv1, of the 13 needed.
    assert twin.winograd_layers == 12 and direct.winograd_layers == 0 and direct.winograd_differs
    # The pools after Winograd layers are the compiled ones: all four here.
    compiled = pooling.layer_class()
    assert [type(layer) is compiled for layer in twin.keras_model.layers
            if layer.name.endswith("_pool")] == [True] * 4
    assert not any(type(layer) is compiled for layer in direct.keras_model.layers)
    assert not winograd_pays(3) and winograd_pays(64)
    for name, (kernel, bias) in direct.conv_weights().items():
        np.testing.assert_array_equal(twin.conv_weights()[name][0], kernel)
        np.testing.assert_array_equal(twin.conv_weights()[name][1], bias)
    images = tf.constant(np.random.default_rng(1).random((1, 40, 56, 3)), tf.float32)
    expected, got = direct(images), twin(images)
    for name in LAYERS:
        assert _relative(got[name], expected[name]) < 1e-5, name
    # bfloat16 keeps Conv2D: the transforms' factors up to ~100 would swamp its 8-bit mantissa.
    assert direct.twin("bfloat16", winograd=True).winograd_layers == 0
    assert twin.twin("float32", winograd=True) is twin


def test_stylizer_with_winograd_reaches_the_direct_result():
    """A few L-BFGS steps on the same objective: the same losses to float32 noise."""
    rng = np.random.default_rng(2)
    content = rng.random((48, 64, 3)).astype(np.float32)
    style = rng.random((48, 48, 3)).astype(np.float32)
    stylizer = Stylizer(FeatureModel(LAYERS, None, WIDE, seed=4))
    base = {"size": 64, "steps": 6, "content_layers": ["block4_conv2"],
            "style_layers": ["block1_conv1", "block2_conv1", "block5_conv1"],
            "precision": "float32"}
    results = {c: stylizer.stylize(content, [style], resolve({**base, "convolution": c}))
               for c in ("direct", "winograd")}
    assert stylizer._model("winograd").winograd_layers > 0
    direct, fast = results["direct"], results["winograd"]
    assert fast.steps == direct.steps == 6
    assert fast.history[-1] < fast.history[0]
    np.testing.assert_allclose(fast.history, direct.history, rtol=1e-3)


def test_convolution_setting(monkeypatch):
    assert resolve({"preset": "seed"}).convolution == "direct"  # as the seed computed it
    settings = resolve({})
    assert settings.convolution == "auto"
    monkeypatch.setattr("batch_style.engine.tf_runtime.has_gpu", lambda: False)
    assert effective_winograd(settings)
    monkeypatch.setattr("batch_style.engine.tf_runtime.has_gpu", lambda: True)  # cuDNN picks its own
    assert not effective_winograd(settings)
    assert effective_winograd(settings.replace(convolution="winograd"))
    assert not effective_winograd(resolve({"preset": "seed"}))
    assert phases("float32", 7, winograd=True) == [("winograd", 7)]
    assert phases("mixed", 100, winograd=True) == [("bfloat16", 75), ("winograd", 25)]
    assert phases("bfloat16", 5, winograd=True) == [("bfloat16", 5)]
    # A network with no layer where Winograd pays (the tiny test one) keeps plain float32.
    monkeypatch.setattr("batch_style.engine.tf_runtime.has_gpu", lambda: False)
    float32 = settings.replace(precision="float32")
    assert Stylizer(FeatureModel(LAYERS, None, WIDE)).phases(float32, 3) == [("winograd", 3)]
    tiny = Stylizer(FeatureModel(LAYERS, None, TINY_WIDTHS))
    assert tiny.phases(float32, 3) == [("float32", 3)]
