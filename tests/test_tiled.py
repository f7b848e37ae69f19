"""The tiled objective and targets against the whole picture's: the tiny, Winograd, bfloat16 and
real VGG19."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import relative

tf = pytest.importorskip("tensorflow")

from batch_style.engine import losses, tile_layout, tiled_objective  # noqa: E402
from batch_style.engine.model import TINY_WIDTHS, FeatureModel  # noqa: E402
from batch_style.engine.objective import Temporal  # noqa: E402
from batch_style.engine.stylizer import Stylizer  # noqa: E402
from batch_style.engine.tile_layout import TileLayout  # noqa: E402
from batch_style.engine.weights import load_feature_model  # noqa: E402
from batch_style.settings import Settings, resolve  # noqa: E402

CONTENT = Settings().content_layers  # block4_conv2
STYLE = Settings().style_layers      # block1_conv1 … block5_conv1
LAYERS = CONTENT + STYLE
SHALLOW = (("block2_conv2",), ("block1_conv1", "block2_conv1", "block3_conv1"))
WIDE = (64, 64, 64, 64, 64)  # every layer but block1_conv1 a Winograd one (test_winograd.py)
EXACT = 1e-4  # the bound, relative


@pytest.fixture(scope="module")
def tiny():
    return Stylizer(FeatureModel(LAYERS, None, TINY_WIDTHS, seed=1))


def _problem(stylizer: Stylizer, size, content_layers=CONTENT, style_layers=STYLE,
             arithmetic="float32", seed=0):
    """A random image x of `size` (w, h) and its objective's arguments (as Stylizer builds
    them, temporal term included), the weights set so each weighted term is 1 at x."""
    w, h = size
    rng = np.random.default_rng(seed)
    content = rng.random((h, w, 3)).astype(np.float32)
    style = rng.random((70, 90, 3)).astype(np.float32)
    temporal = Temporal(rng.random((h, w, 3)).astype(np.float32),
                        rng.random((h, w)).astype(np.float32))
    settings = resolve({"content_layers": list(content_layers),
                        "style_layers": list(style_layers), "style_scale": 0.5})
    args = stylizer._objective_args(content, [style], None, settings, temporal, arithmetic)
    x = tf.constant(rng.random((1, h, w, 3)), tf.float32)
    _, terms, _ = stylizer.objective(arithmetic).evaluate(x, *args[:3], tf.ones(4), *args[4:])
    return x, (*args[:3], tf.constant(1.0 / terms.numpy()), *args[4:])


def _assert_exact(whole, tiled_result, bound=EXACT, gradient_bound=EXACT) -> dict[str, float]:
    """Tiled total, terms and gradient against the whole picture's; returns the errors."""
    errors = {"total": relative(tiled_result[0], whole[0]),
              "terms": max(relative(t, w) for t, w in zip(tiled_result[1].numpy(),
                                                           whole[1].numpy())),
              "gradient": relative(tiled_result[2], whole[2])}
    assert tiled_result[2].shape == whole[2].shape
    assert errors["total"] <= bound and errors["terms"] <= bound, errors
    assert errors["gradient"] <= gradient_bound, errors
    return errors


# -- the layout -------------------------------------------------------------------------------
def test_halo_and_grid_follow_the_deepest_layer():
    assert (tile_layout.halo(LAYERS), tile_layout.grid(LAYERS)) == (80, 16)
    assert (tile_layout.halo(["block3_conv1"]), tile_layout.grid(["block3_conv1"])) == (12, 4)
    assert (tile_layout.halo(["block2_conv2", "block1_conv1"]), tile_layout.grid(["block2_conv2"])) == (6, 2)
    assert (tile_layout.halo(["block1_conv1"]), tile_layout.grid(["block1_conv1"])) == (1, 1)
    assert (tile_layout.halo(["block5_pool"]), tile_layout.grid(["block5_pool"])) == (128, 32)


@pytest.mark.parametrize("layer", ["block5_conv1", "block3_conv1", "block2_conv2"])
def test_halo_is_the_smallest_on_the_grid_that_holds_the_receptive_field(layer):
    """How far beyond its own cell a feature's input gradient reaches, measured: within the
    halo, and beyond one grid cell less."""
    model = FeatureModel([layer], None, TINY_WIDTHS, seed=1)
    x = tf.constant(np.random.default_rng(0).random((1, 256, 256, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        features = model(x)[layer]
        i = features.shape[1] // 2
        value = tf.reduce_sum(features[:, i, i, :])
    columns = np.nonzero(np.abs(tape.gradient(value, x).numpy()).sum(axis=(0, 1, 3)))[0]
    cell = 256 // features.shape[1]
    reach = max(cell * i - columns.min(), columns.max() - (cell * i + cell - 1))
    assert tile_layout.halo([layer]) - tile_layout.grid([layer]) < reach <= tile_layout.halo([layer])


@pytest.mark.parametrize("size, tile_size", [((229, 195), 48), ((256, 240), 32),
                                             ((97, 131), 16), ((64, 48), 256)])
def test_every_pixel_is_in_one_interior_and_crops_are_the_halo_clipped(size, tile_size):
    layout = TileLayout(size, tile_size, LAYERS)
    w, h = size
    owners = np.zeros((h, w), int)
    g, halo = layout.grid, layout.halo
    for tile in layout.tiles:
        x0, y0, x1, y1 = tile.interior
        owners[y0:y1, x0:x1] += 1
        assert x0 % g == 0 and y0 % g == 0  # on the pooling grid
        assert (x1 % g == 0 or x1 == w) and (y1 % g == 0 or y1 == h)
        assert 0 < x1 - x0 <= tile_size and 0 < y1 - y0 <= tile_size
        assert tile.crop == (max(0, x0 - halo), max(0, y0 - halo), min(w, x1 + halo),
                             min(h, y1 + halo))
        assert tile.crop[0] % g == 0 and tile.crop[1] % g == 0
        assert tile.shape == (tile.crop[3] - tile.crop[1], tile.crop[2] - tile.crop[0])
    np.testing.assert_array_equal(owners, 1)
    assert len(layout) == -(-w // tile_size) * -(-h // tile_size)
    all_round = [t for t in layout.tiles
                 if t.shape == (t.interior[3] - t.interior[1] + 2 * halo,
                                t.interior[2] - t.interior[0] + 2 * halo)]
    assert bool(all_round) == (size == (256, 240))  # only there is a tile halo'd all round


def test_interiors_on_each_map_partition_it():
    """Odd sides: the pools floor them, and the interiors' boxes still cover each map once."""
    layout = TileLayout((229, 195), 48, LAYERS)
    for name in ("block1_conv1", "block2_conv1", "block4_conv2", "block5_conv1"):
        rows, columns = layout.map_size(name)
        owners = np.zeros((rows, columns), int)
        for tile in layout.tiles:
            row, column, crop_row, crop_column, n_rows, n_columns = tile.box(layout.pools[name])
            owners[row:row + n_rows, column:column + n_columns] += 1
            # In the crop's map, after the halo (or at the crop's picture edge).
            scale = 1 << layout.pools[name]
            assert crop_row * scale == tile.interior[1] - tile.crop[1]
            assert crop_column * scale == tile.interior[0] - tile.crop[0]
        np.testing.assert_array_equal(owners, 1)
    assert layout.map_size("block5_conv1") == (195 // 16, 229 // 16)


@pytest.mark.parametrize("tile_size", [40, 8, 0, -16])
def test_a_tile_size_off_the_grid_is_an_error_naming_the_setting(tile_size):
    with pytest.raises(ValueError, match="tile_size.*positive multiple of 16 px"):
        TileLayout((256, 256), tile_size, LAYERS)
    TileLayout((256, 256), 48, LAYERS)  # a multiple of the grid is fine


def test_a_picture_smaller_than_the_grid_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        TileLayout((15, 200), 64, LAYERS)


# -- the objective ----------------------------------------------------------------------------
# Odd sides and last tiles narrower than the others (37 and 3 px; 16 px; 1 and 3 px), tiles with
# a halo on all four sides (256×240), and one tile, the whole picture.
@pytest.mark.parametrize("size, tile_size", [((229, 195), 48), ((256, 240), 32),
                                             ((97, 131), 16), ((64, 48), 256)])
def test_tiled_objective_is_the_whole_pictures(tiny, size, tile_size):
    x, args = _problem(tiny, size)
    layout = TileLayout(size, tile_size, LAYERS)
    last = layout.tiles[-1].interior
    assert len(layout) == 1 or min(last[2] - last[0], last[3] - last[1]) < tile_size
    _assert_exact(tiny.objective("float32").evaluate(x, *args),
                  tiled_objective.tiled_loss_and_grad(tiny.model, layout, x, *args))
    # Each part of the gradient alone (content, style), so that no part hides in another's.
    for part in (0, 1):
        weights = np.where(np.arange(4) == part, args[3].numpy(), 0.0)
        one = (*args[:3], tf.constant(weights, tf.float32), *args[4:])
        _assert_exact(tiny.objective("float32").evaluate(x, *one),
                      tiled_objective.tiled_loss_and_grad(tiny.model, layout, x, *one))


def test_a_halo_one_grid_cell_short_is_not_exact(tiny, monkeypatch):
    """The tests above would see a halo too narrow: crops of 64 px where 80 are needed."""
    x, args = _problem(tiny, (256, 176))
    monkeypatch.setattr(tile_layout, "halo", lambda layers: 64)  # the layout's
    monkeypatch.setattr(tiled_objective, "halo", lambda layers: 64)  # and the check's
    layout = TileLayout((256, 176), 32, LAYERS)
    assert layout.halo == 64
    short = tiled_objective.tiled_loss_and_grad(tiny.model, layout, x, *args)
    whole = tiny.objective("float32").evaluate(x, *args)
    assert relative(short[2], whole[2]) > 100 * EXACT
    assert relative(short[1][1], whole[1][1]) > EXACT  # the style term (its Grams)


def test_other_layer_sets(tiny):
    """Layers up to block3 only: their own halo (12 px) and grid (4 px), tiles of 12 px."""
    content_layers, style_layers = SHALLOW
    stylizer = Stylizer(FeatureModel(content_layers + style_layers, None, TINY_WIDTHS, seed=2))
    x, args = _problem(stylizer, (101, 67), content_layers, style_layers)
    layout = TileLayout((101, 67), 12, stylizer.model.layer_names)
    assert (layout.halo, layout.grid, len(layout)) == (12, 4, 9 * 6)
    _assert_exact(stylizer.objective("float32").evaluate(x, *args),
                  tiled_objective.tiled_loss_and_grad(stylizer.model, layout, x, *args))
    # A layout for shallower layers than the model computes would pool its crops to nothing.
    with pytest.raises(ValueError, match="make the layout from the model's layers"):
        tiled_objective.tiled_grams(tiny.model, layout, x, style_layers)


def test_winograd_twin():
    """Winograd's convolutions and the compiled pools (two crop shapes: few XLA compiles)."""
    content_layers, style_layers = CONTENT, ("block1_conv1", "block3_conv1", "block5_conv1")
    stylizer = Stylizer(FeatureModel(content_layers + style_layers, None, WIDE, seed=4))
    x, args = _problem(stylizer, (256, 189), content_layers, style_layers, "winograd")
    twin = stylizer._model("winograd")
    assert twin.winograd_layers > 0
    layout = TileLayout((256, 189), 128, twin.layer_names)
    assert len(layout.crop_shapes) == 2 and len(layout) == 4
    _assert_exact(stylizer.objective("winograd").evaluate(x, *args),
                  tiled_objective.tiled_loss_and_grad(twin, layout, x, *args))


def test_bfloat16_twin_is_exact_to_its_own_rounding(tiny):
    """The forward pass (terms) is the same; the gradient's backward pass rounds the halos'
    partial sums to bfloat16 per tile, which the whole picture sums before rounding: ~1%
    apart, against bfloat16's own departure from float32's gradient of ~30% here."""
    x, args = _problem(tiny, (229, 195), arithmetic="bfloat16")
    whole = tiny.objective("bfloat16").evaluate(x, *args)
    layout = TileLayout((229, 195), 64, LAYERS)
    result = tiled_objective.tiled_loss_and_grad(tiny._model("bfloat16"), layout, x, *args)
    _assert_exact(whole, result, gradient_bound=0.05)

    def distance(a, b):
        return float(tf.norm(a - b) / tf.norm(b))

    assert distance(result[2], whole[2]) < 0.02
    float32 = tiny.objective("float32").evaluate(x, *args)
    assert distance(result[2], whole[2]) < 0.1 * distance(float32[2], whole[2])


def test_tiles_share_traces_and_run_from_python_only(tiny):
    x, args = _problem(tiny, (229, 195), seed=3)
    layout = TileLayout((229, 195), 32, LAYERS)
    assert len(layout.crop_shapes) > 10
    functions = tiled_objective._functions(tiny.model)
    before = functions.gradient.experimental_get_tracing_count()
    tiled_objective.tiled_loss_and_grad(tiny.model, layout, x, *args)
    # A fresh function traces for the first shape, then relaxes its shapes (reduce_retracing):
    # three traces at most for the > 10 crop shapes, where one per shape would be > 10.
    assert functions.gradient.experimental_get_tracing_count() - before <= 3

    @tf.function
    def inside(x):
        return tiled_objective.tiled_loss_and_grad(tiny.model, layout, x, *args)[0]

    with pytest.raises(RuntimeError, match="from Python"):
        inside(x)


# -- targets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size, tile_size", [((229, 195), 48), ((97, 131), 16)])
def test_tiled_targets_are_the_whole_pictures(tiny, size, tile_size):
    w, h = size
    image = np.random.default_rng(5).random((h, w, 3)).astype(np.float32)
    layout = TileLayout(size, tile_size, LAYERS)
    features = tiny.model(tf.constant(image[None]))
    maps = tiled_objective.tiled_features(tiny.model, layout, image, ["block1_conv1", *CONTENT])
    grams = tiled_objective.tiled_grams(tiny.model, layout, image, STYLE)
    for name, got in maps.items():
        assert got.shape == features[name].shape
        assert relative(got, features[name]) <= 1e-5, name
    for name, got in grams.items():
        assert relative(got, losses.gram(features[name])) <= 1e-5, name
    # The Stylizer's own targets, as its objective takes them.
    assert relative(tiled_objective.tiled_features(tiny.model, layout, image, CONTENT)[CONTENT[0]],
                     tiny.content_targets(image, CONTENT)[CONTENT[0]]) <= 1e-5


# -- the real network ---------------------------------------------------------------------------
def test_real_vgg19_tiled_objective_is_the_whole_pictures():
    """The real weights at 224×176 in tiles of 64 px (12 tiles, ~10 s)."""
    stylizer = Stylizer(load_feature_model(LAYERS))
    x, args = _problem(stylizer, (224, 176))
    layout = TileLayout((224, 176), 64, LAYERS)
    _assert_exact(stylizer.objective("float32").evaluate(x, *args),
                  tiled_objective.tiled_loss_and_grad(stylizer.model, layout, x, *args))


# -- memory -----------------------------------------------------------------------------------
def test_tile_memory_estimate_grows_with_the_tile_and_counts_the_halo():
    by_tile = [tile_layout.tile_memory_bytes(side, LAYERS) for side in (64, 128, 256, 512, 1024)]
    assert by_tile == sorted(by_tile) and len(set(by_tile)) == len(by_tile)
    assert tile_layout.tile_memory_bytes(256, LAYERS) == tile_layout.pass_memory_bytes((416, 416), LAYERS)
    # The maps kept for the gradient: (H·W)·(64+64 + (64+128+128)/4 + …) values, ~quadratic.
    growth = (by_tile[-1] - tile_layout.BASE_BYTES) / (by_tile[-2] - tile_layout.BASE_BYTES)
    assert 3.0 < growth < 4.0
    assert tile_layout.tile_memory_bytes(256, LAYERS, winograd=True) > by_tile[2]
    tiny_maps = tile_layout.tile_memory_bytes(256, LAYERS, TINY_WIDTHS) - tile_layout.BASE_BYTES
    assert tiny_maps < (by_tile[2] - tile_layout.BASE_BYTES) / 10
    # A shallower network needs less halo and keeps fewer maps.
    assert tile_layout.tile_memory_bytes(256, SHALLOW[1]) < by_tile[2]
    with pytest.raises(ValueError, match="precision"):
        tile_layout.tile_memory_bytes(256, LAYERS, precision="float16")


# -- the Stylizer in tiles ---------------------------------------------------------------------
def _pictures(size=(128, 96), seed=3):
    rng = np.random.default_rng(seed)
    w, h = size
    content = rng.random((h // 8, w // 8, 3)).astype(np.float32)
    content = np.kron(content, np.ones((8, 8, 1), np.float32))  # smooth: a photo, not noise
    return content, rng.random((64, 64, 3)).astype(np.float32)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_picture_made_in_tiles_is_the_picture_made_whole(tiny, optimizer):
    """The issue's check (≤ 1/255 on average) with the tiny network: tiles of 32 px."""
    content, style = _pictures()
    base = {"size": 128, "steps": 10, "optimizer": optimizer, "precision": "float32",
            "convolution": "direct", "tolerance": 0.0, "learning_rate": 0.05}
    whole = tiny.stylize(content, [style], resolve(base))
    tiled_result = tiny.stylize(content, [style], resolve({**base, "tile_size": 32}))
    assert [lv.tile for lv in tiled_result.levels] == [32]
    assert [lv.tile for lv in whole.levels] == [None]
    assert np.abs(tiled_result.image - whole.image).mean() <= 1 / 255
    assert tiled_result.losses.total == pytest.approx(whole.losses.total, rel=1e-3)


def test_a_memory_budget_makes_tiles_and_bounds_the_lbfgs_pairs(tiny):
    content, style = _pictures()
    settings = resolve({"size": 128, "steps": 4, "precision": "float32",
                        "convolution": "direct"})
    plan = tiny.plan(128, 96, settings, settings.steps, memory=1500 << 20)
    whole = tiny.plan(128, 96, settings, settings.steps, memory=None)
    assert whole[0].tile is None and whole[0].pairs_bytes is None
    # 1500 MB: the runtime's 1300 MB and the picture's buffers leave the tiny network's passes
    # room for the whole picture; the pairs get what is left.
    assert plan[0].pairs_bytes is not None and plan[0].pairs_bytes < 1500 << 20
    result = tiny.stylize(content, [style], settings, memory=1500 << 20)
    assert result.steps == 4 and result.image.shape == (96, 128, 3)


def test_a_result_above_base_size_is_made_coarse_to_fine(tiny):
    content, style = _pictures((256, 192))
    settings = resolve({"size": 128, "base_size": 64, "steps": 20, "precision": "float32",
                        "convolution": "direct", "tolerance": 0.0})
    result = tiny.stylize(content, [style], settings)
    assert [(lv.size, lv.steps) for lv in result.levels] == [((64, 48), 20), ((128, 96), 2)]
    assert result.steps == 22 and result.image.shape == (96, 128, 3)
    assert result.stop_reason == "step cap"


@pytest.mark.slow
def test_a_384_px_picture_in_tiles_of_128_with_the_real_weights():
    """The issue's judged check with VGG19 itself: 20 steps, tiles of 128 px, ≤ 1/255."""
    stylizer = Stylizer(load_feature_model(LAYERS))
    content, style = _pictures((384, 288), seed=5)
    base = {"size": 384, "steps": 20, "precision": "float32", "convolution": "direct",
            "tolerance": 0.0}
    whole = stylizer.stylize(content, [style], resolve(base))
    tiled_result = stylizer.stylize(content, [style], resolve({**base, "tile_size": 128}))
    assert np.abs(tiled_result.image - whole.image).mean() <= 1 / 255
