"""Style masks (guided Grams), protected regions, the colour options and average pooling in the
engine, on the tiny random VGG19."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import relative

tf = pytest.importorskip("tensorflow")

from batch_style.engine import losses, tiled_objective  # noqa: E402
from batch_style.engine.model import TINY_WIDTHS, FeatureModel, carry_down  # noqa: E402
from batch_style.engine.regions import Regions  # noqa: E402
from batch_style.engine.stylizer import Stylizer, colour_inputs, style_guides_of  # noqa: E402
from batch_style.engine.tile_layout import TileLayout  # noqa: E402
from batch_style.media import images  # noqa: E402
from batch_style.settings import Settings, resolve  # noqa: E402

CONTENT = Settings().content_layers
STYLE = Settings().style_layers
LAYERS = CONTENT + STYLE
WIDE = (64, 64, 64, 64, 64)  # every layer but block1_conv1 a Winograd one (test_winograd.py)


@pytest.fixture(scope="module")
def tiny():
    return Stylizer(FeatureModel(LAYERS, None, TINY_WIDTHS, seed=1))


def _images(w, h, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    content = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1).astype(np.float32)
    styles = [rng.random((40, 52, 3)).astype(np.float32),
              np.clip(rng.random((44, 44, 3)) * [1.0, 0.3, 0.2], 0, 1).astype(np.float32)]
    return content, styles


def _halves(w, h, soft=0):
    """A left mask (white on the left) and its complement, with a linear ramp `soft` px wide."""
    ramp = np.clip((np.arange(w) - (w - soft) / 2) / max(soft, 1), 0, 1) if soft else \
        (np.arange(w) >= w // 2).astype(float)
    right = np.tile(ramp, (h, 1)).astype(np.float32)
    return 1.0 - right, right


def _evaluate(stylizer, x, content, styles, settings, regions=None, arithmetic="float32"):
    args = stylizer._objective_args(content, styles, None, settings, None, arithmetic,
                                    regions=regions)
    return stylizer.objective(arithmetic).evaluate(tf.constant(x[None]), *args), args


# -- the guided Gram --------------------------------------------------------------------------
def test_guided_gram_of_an_all_ones_guide_is_the_gram():
    f = tf.constant(np.random.default_rng(0).standard_normal((1, 9, 11, 6)), tf.float32)
    ones = tf.ones((1, 9, 11, 1))
    upstream = tf.constant(np.random.default_rng(1).standard_normal((6, 6)), tf.float32)
    values, gradients = [], []
    for gram in (losses.gram, lambda v: losses.guided_gram(v, ones)):
        with tf.GradientTape() as tape:
            tape.watch(f)
            g = gram(f)
            product = tf.reduce_sum(g * upstream)
        values.append(g.numpy())
        gradients.append(tape.gradient(product, f).numpy())
    np.testing.assert_array_equal(values[0], values[1])
    np.testing.assert_array_equal(gradients[0], gradients[1])


def test_guided_gram_is_the_weighted_mean_over_the_region_and_its_gradient_the_derivative():
    rng = np.random.default_rng(2)
    f = tf.constant(rng.standard_normal((1, 5, 7, 4)), tf.float32)
    guide = np.zeros((1, 5, 7, 1), np.float32)
    guide[:, :, :3] = rng.random((1, 5, 3, 1))  # soft, and zero on the right
    flat = f.numpy().reshape(35, 4)
    weights = guide.reshape(35)
    expected = (flat * weights[:, None]).T @ flat / weights.sum()
    np.testing.assert_allclose(losses.guided_gram(f, tf.constant(guide)).numpy(), expected,
                               rtol=1e-5)
    # Normalized by the guide's sum: the region's own statistics, however small it is.
    region = f.numpy()[:, :, :3].reshape(15, 4)
    binary = (guide > 0).astype(np.float32)
    np.testing.assert_allclose(losses.guided_gram(f, tf.constant(binary)).numpy(),
                               region.T @ region / 15, rtol=1e-5)
    upstream = tf.constant(rng.standard_normal((4, 4)), tf.float32)

    def plain(v):
        w = tf.reshape(tf.constant(guide), (-1, 1))
        flat_v = tf.reshape(v, (-1, 4))
        return tf.matmul(flat_v * w, flat_v, transpose_a=True) / tf.reduce_sum(w)

    gradients = []
    for gram in (lambda v: losses.guided_gram(v, tf.constant(guide)), plain):
        with tf.GradientTape() as tape:
            tape.watch(f)
            product = tf.reduce_sum(gram(f) * upstream)
        gradients.append(tape.gradient(product, f).numpy())
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-5, atol=1e-6)
    assert not np.any(gradients[0][:, :, 3:])  # no pull outside the region


def test_an_empty_guide_gives_zeros_not_nan():
    f = tf.ones((1, 4, 4, 3))
    assert not np.any(losses.guided_gram(f, tf.zeros((1, 4, 4, 1))).numpy())


def test_masks_are_carried_down_by_averaging_over_the_pools():
    mask = np.zeros((37, 50), np.float32)
    mask[:, 25:] = 1.0
    maps = carry_down(mask, LAYERS)
    features = FeatureModel(LAYERS, None, TINY_WIDTHS)(tf.zeros((1, 37, 50, 3)))
    for name in LAYERS:
        assert maps[name].shape[1:3] == features[name].shape[1:3], name
    np.testing.assert_array_equal(maps["block1_conv1"][0, ..., 0], mask)
    # block2 is one pool down: 2×2 means (the odd last row dropped), the seam between 12 and 13.
    assert maps["block2_conv1"].shape[1:3] == (18, 25)
    np.testing.assert_array_equal(maps["block2_conv1"][0, 0, :, 0], [0.0] * 12 + [0.5] + [1] * 12)
    for name, m in carry_down(np.full((37, 50), 0.3, np.float32), LAYERS).items():
        np.testing.assert_allclose(m, 0.3, rtol=1e-6, err_msg=name)


def test_overlapping_masks_share_and_blend_weights_scale_each_guide():
    left, right = _halves(8, 4)
    guides = style_guides_of([left, np.ones((4, 8), np.float32)], (1.0, 1.0), (8, 4),
                             ["block1_conv1"])
    np.testing.assert_allclose(guides[0]["block1_conv1"][0, :, :4, 0], 0.5)  # both: half each
    np.testing.assert_allclose(guides[1]["block1_conv1"][0, :, 4:, 0], 1.0)  # alone: all of it
    weighted = style_guides_of([left, right], (3.0, 1.0), (8, 4), ["block1_conv1"])
    assert weighted[0]["block1_conv1"].max() == pytest.approx(1.5)  # n·b/Σb = 2·3/4
    assert weighted[1]["block1_conv1"].max() == pytest.approx(0.5)


# -- the objective ----------------------------------------------------------------------------
def test_an_all_ones_mask_leaves_the_objective_and_its_gradient_unchanged(tiny):
    content, styles = _images(64, 48)
    settings = resolve({"size": 64})
    x = np.random.default_rng(3).random((48, 64, 3)).astype(np.float32)
    plain, _ = _evaluate(tiny, x, content, styles[:1], settings)
    ones = np.ones((30, 40), np.float32)  # any size: resized with the picture
    masked, args = _evaluate(tiny, x, content, styles[:1], settings,
                             Regions(styles=(ones,), protect=np.zeros((48, 64), np.float32)))
    assert args[6] and args[7] is not None  # the guided path and the protect path ran
    np.testing.assert_allclose(masked[0].numpy(), plain[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(masked[1].numpy(), plain[1].numpy(), rtol=1e-6)
    assert relative(masked[2], plain[2]) < 1e-6  # float32 rounding: another order of products
    # Two styles, both everywhere: the blend's gradient (the value differs by a constant, the
    # targets' spread about their blend).
    blend = settings.replace(style_blend=(1.0, 3.0))
    plain, _ = _evaluate(tiny, x, content, styles, blend)
    masked, _ = _evaluate(tiny, x, content, styles, blend, Regions(styles=(ones, ones)))
    assert relative(masked[2], plain[2]) < 1e-5
    assert masked[0] > plain[0]


def test_no_mask_covers_a_region_no_style_pulls_there(tiny):
    """Where no mask is white only the content term (and TV) act: with their weights 0 and
    shallow style layers (whose receptive fields reach ~6 px), the far side gets no gradient."""
    content, styles = _images(64, 48)
    settings = resolve({"size": 64, "content_weight": 0.0, "tv_weight": 0.0,
                        "style_layers": ["block1_conv1", "block2_conv1"]})
    x = np.random.default_rng(4).random((48, 64, 3)).astype(np.float32)
    left = np.zeros((48, 64), np.float32)
    left[:, :16] = 1.0
    (_, terms, grad), _ = _evaluate(tiny, x, content, styles[:1], settings,
                                    Regions(styles=(left,)))
    grad = np.abs(grad.numpy()[0]).sum(axis=(0, 2))
    assert terms[1] > 0 and grad[:16].min() > 0
    assert not np.any(grad[24:])


def test_each_half_is_pulled_towards_its_own_style(tiny):
    """The style term of a left/right pair is lower for an image whose halves carry their own
    styles' statistics than for one with the halves swapped."""
    w, h = 64, 48
    content, styles = _images(w, h)
    settings = resolve({"size": w})
    left, right = _halves(w, h)
    regions = Regions(styles=(left, right))
    a = images.resize(styles[0], (w // 2, h))
    b = images.resize(styles[1], (w // 2, h))
    own = np.concatenate([a, b], axis=1)
    swapped = np.concatenate([b, a], axis=1)
    (_, own_terms, _), _ = _evaluate(tiny, own, content, styles, settings, regions)
    (_, swapped_terms, _), _ = _evaluate(tiny, swapped, content, styles, settings, regions)
    assert own_terms[1] < 0.8 * swapped_terms[1]


@pytest.mark.parametrize("size, tile_size", [((97, 131), 16), ((229, 195), 48)])
def test_the_tiled_objective_equals_the_whole_pictures_with_masks(tiny, size, tile_size):
    w, h = size
    content, styles = _images(w, h, seed=5)
    rng = np.random.default_rng(6)
    left, right = _halves(w, h, soft=w // 3)
    corner = np.zeros((40, 52), np.float32)
    corner[:20, :30] = rng.random((20, 30))
    protect = np.zeros((h, w), np.float32)
    protect[h // 3:, : w // 2] = 1.0
    regions = Regions(styles=(left, right), images=(corner, None), protect=protect)
    settings = resolve({"size": max(w, h), "style_scale": 0.5})
    x = rng.random((h, w, 3)).astype(np.float32)
    args = tiny._objective_args(content, styles, None, settings, None, "float32",
                                regions=regions)
    _, terms, _ = tiny.objective("float32").evaluate(tf.constant(x[None]), *args)
    terms = terms.numpy()
    unit = np.divide(1.0, terms, out=np.zeros_like(terms), where=terms > 0)  # each term 1
    args = (*args[:3], tf.constant(unit), *args[4:])
    whole = tiny.objective("float32").evaluate(tf.constant(x[None]), *args)
    layout = TileLayout(size, tile_size, LAYERS)
    got = tiled_objective.tiled_loss_and_grad(tiny.model, layout, x, *args)
    assert relative(got[0], whole[0]) < 1e-4
    assert max(relative(a, b) for a, b in zip(got[1].numpy()[:3], whole[1].numpy()[:3])) < 1e-4
    assert relative(got[2], whole[2]) < 1e-4
    # Each part alone, so that no part hides in another's.
    for part in (0, 1):
        weights = tf.constant(np.where(np.arange(4) == part, args[3].numpy(), 0.0), tf.float32)
        one = (*args[:3], weights, *args[4:])
        got = tiled_objective.tiled_loss_and_grad(tiny.model, layout, x, *one)
        whole = tiny.objective("float32").evaluate(tf.constant(x[None]), *one)
        assert relative(got[2], whole[2]) < 1e-4, part


def test_protect_lowers_the_protected_regions_content_distance(tiny):
    content, styles = _images(64, 48)
    settings = resolve({"size": 64, "steps": 30})
    protect = np.zeros((48, 64), np.float32)
    protect[8:40, 8:32] = 1.0

    def distance(image):
        maps = carry_down(protect, CONTENT)[CONTENT[0]]
        got = tiny.content_targets(image, CONTENT)[CONTENT[0]].numpy()
        target = tiny.content_targets(content, CONTENT)[CONTENT[0]].numpy()
        return float((maps * (got - target) ** 2).sum() / maps.sum())

    free = tiny.stylize(content, styles[:1], settings)
    held = tiny.stylize(content, styles[:1], settings, regions=Regions(protect=protect))
    assert distance(held.image) < 0.5 * distance(free.image)


# -- pooling ----------------------------------------------------------------------------------
def test_average_pooling_changes_the_features_and_runs_through_winograd():
    layers = ["block1_conv1", "block3_conv1", "block5_conv1"]
    x = tf.constant(np.random.default_rng(7).random((1, 64, 48, 3)), tf.float32)
    max_model = FeatureModel(layers, None, WIDE, seed=3)
    avg_model = FeatureModel(layers, max_model.conv_weights(), WIDE, pooling="avg")
    winograd = avg_model.twin("float32", winograd=True)
    assert winograd.winograd_layers > 0 and winograd.pooling == "avg"
    assert not any("Compiled" in type(layer).__name__ for layer in winograd.keras_model.layers)
    by_max, by_avg, by_winograd = (m(x) for m in (max_model, avg_model, winograd))
    np.testing.assert_array_equal(by_max["block1_conv1"], by_avg["block1_conv1"])  # no pool yet
    for name in layers[1:]:
        assert relative(by_avg[name], by_max[name]) > 0.1, name
        assert relative(by_winograd[name], by_avg[name]) < 1e-5, name


def test_the_stylizer_refuses_a_model_that_pools_otherwise(tiny):
    content, styles = _images(32, 32)
    with pytest.raises(ValueError, match="pools by max"):
        tiny.stylize(content, styles[:1], resolve({"size": 32, "steps": 1, "pooling": "avg"}))


# -- colours ----------------------------------------------------------------------------------
def test_histogram_and_style_colors_recolour_the_inputs():
    content, styles = _images(64, 48)
    settings = resolve({"preserve_colors": "histogram"})
    same, recoloured, keys = colour_inputs(content, styles, settings, None, ["a", "b"])
    assert same is content and keys is None  # recoloured styles are not cached
    mean, cov = images.color_stats(content)
    for style in recoloured:
        got_mean, got_cov = images.color_stats(style)
        np.testing.assert_allclose(got_mean, mean, atol=0.03)
        np.testing.assert_allclose(got_cov, cov, atol=0.01)
    # style_colors with masks: each half takes its own painting's colours, the rest the photo's.
    left = np.zeros((48, 64), np.float32)
    left[:, :20] = 1.0
    right = np.zeros((48, 64), np.float32)
    right[:, 44:] = 1.0
    photo, kept, _ = colour_inputs(content, styles, resolve({"style_colors": True}),
                                   Regions(styles=(left, right)), None)
    assert kept[0] is styles[0]
    np.testing.assert_array_equal(photo[:, 20:44], content[:, 20:44])
    red = images.color_stats(styles[1])[0]
    assert np.abs(photo[:, 44:].mean(axis=(0, 1)) - red).max() < 0.1


def test_the_tiled_guided_grams_of_a_style_image_are_the_whole_ones(tiny):
    """A large style image with an image_mask is made in tiles like the picture."""
    image = np.random.default_rng(8).random((131, 97, 3)).astype(np.float32)
    mask = np.zeros((131, 97), np.float32)
    mask[20:90, 10:60] = np.random.default_rng(9).random((70, 50))
    whole = tiny.style_grams(image, 131, STYLE, mask=mask)
    tiles = tiny.style_grams(image, 131, STYLE, tile=32, mask=mask)
    plain = tiny.style_grams(image, 131, STYLE)
    for name in STYLE:
        assert relative(tiles[name], whole[name]) < 1e-4, name
        assert relative(whole[name], plain[name]) > 0.01, name  # the mask made a difference
