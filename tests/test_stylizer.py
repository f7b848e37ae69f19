"""The objective's math and both optimizers, on the tiny random VGG19."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from batch_style.engine import losses  # noqa: E402
from batch_style.engine.model import TINY_WIDTHS, FeatureModel, layers_needed  # noqa: E402
from batch_style.engine.policy import effective_precision, phases  # noqa: E402
from batch_style.engine.schedule import level_sizes  # noqa: E402
from batch_style.engine.stylizer import Stylizer, Temporal  # noqa: E402
from batch_style.errors import UserError  # noqa: E402
from batch_style.media import images  # noqa: E402
from batch_style.settings import Settings, resolve  # noqa: E402

LAYERS = Settings().content_layers + Settings().style_layers


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64] / 64.0
    content = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1).astype(np.float32)
    style = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
    return content, style


# -- the math ---------------------------------------------------------------------------------
def test_gram_is_ftf_over_positions():
    f = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    flat = f.reshape(6, 4)
    np.testing.assert_allclose(losses.gram(tf.constant(f)).numpy(), flat.T @ flat / 6, rtol=1e-6)


def test_gram_gradient_is_the_derivative_of_ftf_over_positions():
    """gram's one-product gradient against TensorFlow's derivative of the plain formula, for an
    upstream gradient that is not symmetric (a style loss's is; the rule must not rely on it)."""
    rng = np.random.default_rng(0)
    f = tf.constant(rng.standard_normal((1, 5, 7, 4)), tf.float32)
    upstream = tf.constant(rng.standard_normal((4, 4)), tf.float32)

    def plain(features):
        flat = tf.reshape(features, (-1, 4))
        return tf.matmul(flat, flat, transpose_a=True) / 35.0

    gradients = []
    for function in (losses.gram, plain):
        with tf.GradientTape() as tape:
            tape.watch(f)
            value = tf.reduce_sum(function(f) * upstream)
        gradients.append(tape.gradient(value, f).numpy())
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-5, atol=1e-6)


def test_style_loss_is_weighted_mean_of_layer_mses():
    a = {"x": tf.ones((2, 2)), "y": tf.zeros((3, 3))}
    b = {"x": tf.zeros((2, 2)), "y": tf.fill((3, 3), 2.0)}
    # Layer MSEs are 1 and 4.
    assert losses.style_loss(a, b, {"x": 1.0, "y": 1.0}).numpy() == pytest.approx(2.5)
    assert losses.style_loss(a, b, {"x": 3.0, "y": 1.0}).numpy() == pytest.approx(1.75)


def test_content_loss_is_mean_over_layers_of_mse():
    a = {"p": tf.fill((1, 2, 2, 3), 3.0), "q": tf.zeros((1, 1, 1, 2))}
    b = {"p": tf.fill((1, 2, 2, 3), 1.0), "q": tf.ones((1, 1, 1, 2))}
    assert losses.content_loss(a, b).numpy() == pytest.approx((4.0 + 1.0) / 2)


def test_tv_loss_is_sum_of_absolute_neighbour_differences():
    x = np.random.default_rng(3).uniform(size=(1, 5, 7, 3)).astype(np.float32)
    expected = np.abs(np.diff(x, axis=1)).sum() + np.abs(np.diff(x, axis=2)).sum()
    assert losses.tv_loss(tf.constant(x)).numpy() == pytest.approx(expected, rel=1e-5)


def test_blend_of_grams_is_their_weighted_mean():
    g1, g2 = {"l": tf.ones((2, 2))}, {"l": tf.fill((2, 2), 5.0)}
    blended = losses.blend_grams([g1, g2], [3.0, 1.0])
    np.testing.assert_allclose(blended["l"].numpy(), np.full((2, 2), 2.0))


# -- the model --------------------------------------------------------------------------------
def test_model_is_truncated_after_deepest_layer():
    names = [n for n, _ in layers_needed(["block2_conv1"])]
    assert names == ["block1_conv1", "block1_conv2", "block1_pool", "block2_conv1"]
    model = FeatureModel(["block2_conv1"], None, TINY_WIDTHS)
    assert {layer.name for layer in model.keras_model.layers} >= set(names)
    assert not any(layer.name.startswith("block3") for layer in model.keras_model.layers)
    assert model.min_size == 2


def test_too_small_for_vgg_is_a_user_error(stylizer, pair):
    content, style = pair
    with pytest.raises(UserError, match="too small for VGG19"):
        stylizer.stylize(content, [style], resolve({"size": 16, "steps": 1}))


def test_scale_sizes_keep_aspect_and_end_at_size():
    sizes = level_sizes(1024, 768, resolve({"size": 256, "scales": 3}), 16)
    assert sizes == [(64, 48), (128, 96), (256, 192)]


# -- the optimizers ---------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_objective_decreases_and_pixels_stay_in_bounds(stylizer, pair, optimizer):
    content, style = pair
    settings = resolve({"size": 64, "steps": 15, "optimizer": optimizer, "learning_rate": 0.05})
    events = []
    result = stylizer.stylize(content, [style], settings, callback=events.append)
    assert result.image.shape == (48, 64, 3)
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert result.steps == 15 and len(result.history) == 15
    assert result.losses.total < result.history[0]
    assert [e.step for e in events] == list(range(1, 16))
    # A snapshot every `snapshot_every` (10) steps and at the end.
    assert [e.step for e in events if e.snapshot is not None] == [10, 15]


def test_one_trace_per_size_and_cached_style_targets(pair):
    content, style = pair
    stylizer = Stylizer(FeatureModel(LAYERS, None, TINY_WIDTHS))
    settings = resolve({"size": 64, "steps": 4, "precision": "mixed"})
    for _ in range(3):
        stylizer.stylize(content, [style], settings, style_keys=["s"])
    traces = {p: o.evaluate.experimental_get_tracing_count()
              for p, o in stylizer._objectives.items()}
    assert traces == {"bfloat16": 1, "float32": 1}
    # One set of Grams per precision: each phase optimizes against targets in its own.
    assert sorted(key[-1] for key in stylizer._style_cache) == ["bfloat16", "float32"]
    stylizer.stylize(content, [style], settings.replace(size=80), style_keys=["s"])
    assert stylizer.objective("float32").evaluate.experimental_get_tracing_count() == 2


def test_same_seed_same_result(stylizer, pair):
    content, style = pair
    settings = resolve({"size": 64, "steps": 5, "init": "noise", "seed": 7})
    a = stylizer.stylize(content, [style], settings).image
    b = stylizer.stylize(content, [style], settings).image
    c = stylizer.stylize(content, [style], settings.replace(seed=8)).image
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3


def test_zero_steps_returns_the_content_init(stylizer, pair):
    content, style = pair
    result = stylizer.stylize(content, [style], resolve({"size": 64, "steps": 0,
                                                         "init": "content"}))
    np.testing.assert_allclose(result.image, images.resize(content, (64, 48)), atol=1e-6)
    assert result.steps == 0 and result.losses.total > 0


def test_painting_colors_start_is_the_photo_in_the_paintings_colours(stylizer, pair):
    _, style = pair
    yy, xx = np.mgrid[0:48, 0:64] / 64.0  # three independent channels: a full covariance
    content = np.stack([0.2 + 0.5 * xx, 0.1 + yy, 0.3 + 0.2 * np.sin(9 * xx * yy)],
                       axis=-1).astype(np.float32)
    chosen = resolve({"size": 64, "steps": 0, "init": "painting-colors"})
    start = stylizer.stylize(content, [style], chosen).image
    mean, cov = images.color_stats(style)
    got_mean, got_cov = images.color_stats(start)
    np.testing.assert_allclose(got_mean, mean, atol=0.02)  # clipping to [0,1] moves it a little
    np.testing.assert_allclose(got_cov, cov, atol=0.01)
    assert np.abs(images.color_stats(content)[0] - mean).max() > 0.1  # the photo's were not
    # Its structure is the photo's: one affine map of the colours where it is not clipped.
    inside = ((start > 0) & (start < 1)).all(axis=-1)
    photo = np.c_[images.resize(content, (64, 48))[inside], np.ones(inside.sum())]
    fit, *_ = np.linalg.lstsq(photo, start[inside], rcond=None)
    assert inside.mean() > 0.3 and np.abs(photo @ fit - start[inside]).max() < 1e-3
    # Where the photo's colours are kept, the start is the photo.
    kept = stylizer.stylize(content, [style], chosen.replace(preserve_colors="histogram")).image
    np.testing.assert_allclose(kept, images.resize(content, (64, 48)), atol=1e-6)


def test_style_blend_weights_select_the_style(stylizer, pair):
    content, style = pair
    other = 1.0 - style
    s = resolve({"size": 64, "steps": 0})
    only_first = stylizer.evaluate(images.resize(content, (64, 48)), content, [style, other],
                                   s.replace(style_blend=(1.0, 0.0)))
    single = stylizer.evaluate(images.resize(content, (64, 48)), content, [style], s)
    assert only_first.style == pytest.approx(single.style, rel=1e-5)


def test_tolerance_stops_early(stylizer, pair):
    content, style = pair
    settings = resolve({"size": 64, "steps": 200, "tolerance": 0.5})
    result = stylizer.stylize(content, [style], settings)
    assert result.stopped_early and result.steps < 200


def test_preserve_colors_keeps_content_chroma(stylizer, pair):
    content, style = pair
    settings = resolve({"size": 64, "steps": 5, "preserve_colors": True})
    result = stylizer.stylize(content, [style], settings)
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    chroma_result = (result.image @ yiq.T)[..., 1:]
    chroma_content = (images.resize(content, (64, 48)) @ yiq.T)[..., 1:]
    # Clipping to [0,1] after recombination may move chroma a little.
    assert np.abs(chroma_result - chroma_content).mean() < 0.02


def test_temporal_term_pulls_towards_previous_frame(stylizer, pair):
    content, style = pair
    previous = np.full((48, 64, 3), 0.5, np.float32)
    base = resolve({"size": 64, "steps": 10, "optimizer": "adam", "learning_rate": 0.05})
    free = stylizer.stylize(content, [style], base).image
    held = stylizer.stylize(content, [style], base.replace(temporal_weight=1e9),
                            temporal=Temporal(previous, np.ones((48, 64), np.float32))).image
    assert np.abs(held - previous).mean() < np.abs(free - previous).mean()


def test_bfloat16_convolutions_reach_the_float32_objective(stylizer, pair):
    content, style = pair
    settings = resolve({"size": 64, "steps": 20, "precision": "float32"})
    reference = stylizer.stylize(content, [style], settings)
    bf16 = stylizer.stylize(content, [style], settings.replace(precision="bfloat16"))
    # Judged in float32: bfloat16 features may cost a little, never the picture.
    judged = stylizer.evaluate(bf16.image, content, [style], settings).total
    assert judged < 1.1 * reference.losses.total
    assert judged < 0.5 * reference.history[0]


def test_the_bfloat16_twin_shares_the_weights(stylizer, pair):
    content, _ = pair
    twin = stylizer.model.twin("bfloat16")
    assert twin.precision == "bfloat16" and stylizer.model.twin("float32") is stylizer.model
    x = tf.constant(content[None])
    for name, mine in stylizer.model(x).items():
        theirs = twin(x)[name]
        assert theirs.dtype == tf.float32  # maps come back in float32 for the Grams
        scale = float(tf.reduce_max(tf.abs(mine))) + 1e-6
        assert float(tf.reduce_max(tf.abs(theirs - mine))) < 0.05 * scale, name


def test_mixed_precision_polishes_in_float32(stylizer, pair):
    content, style = pair
    assert phases("mixed", 100) == [("bfloat16", 75), ("float32", 25)]
    assert phases("mixed", 1) == [("bfloat16", 1)]
    assert phases("float32", 7) == [("float32", 7)]
    # From the photo: the painting's colours would start it nearer the end than half-way.
    settings = resolve({"size": 64, "steps": 20, "precision": "mixed", "init": "content"})
    for optimizer in ("lbfgs", "adam"):
        result = stylizer.stylize(content, [style], settings.replace(optimizer=optimizer))
        judged = stylizer.evaluate(result.image, content, [style], settings).total
        if optimizer == "lbfgs":  # (Adam reports the point before its last update)
            # The last phase reads in float32: the result's losses are the objective itself.
            assert result.losses.total == pytest.approx(judged, rel=1e-4)
        assert result.steps == 20 and len(result.history) == 20
        assert judged < 0.5 * result.history[0], optimizer


def test_auto_precision_follows_the_hardware(monkeypatch):
    from batch_style.engine import tf_runtime

    settings = resolve({})
    assert settings.precision == "auto"
    monkeypatch.setattr(tf_runtime, "native_bfloat16", lambda: True)
    assert effective_precision(settings) == "mixed"
    assert effective_precision(settings.replace(precision="float32")) == "float32"
    monkeypatch.setattr(tf_runtime, "native_bfloat16", lambda: False)
    assert effective_precision(settings) == "float32"
    assert effective_precision(resolve({"preset": "seed"})) == "float32"


def test_native_bfloat16_on_cpus_with_avx512_bf16_or_amx(monkeypatch):
    from batch_style.engine import tf_runtime

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("decided by the GPU here")
    for flags, expected in (({"avx2", "avx512f"}, False), ({"avx512_bf16"}, True),
                            ({"amx_bf16", "amx_tile"}, True), (set(), False)):
        monkeypatch.setattr(tf_runtime, "cpu_flags", lambda f=flags: f)
        assert tf_runtime.native_bfloat16() is expected


def test_tolerance_compares_readings_of_one_precision():
    from batch_style.engine.objective import Losses
    from batch_style.engine.reporter import Reporter

    settings = resolve({"tolerance": 1e-3})
    report = Reporter(None, settings, 0, 1, (64, 48), 100, 0.0, None)
    values = [100.0 - i for i in range(12)]  # improving fast
    assert not any(report.step(Losses(v, 0, 0, 0), lambda: None) for v in values)
    report.new_phase()  # float32 reads a little higher than bfloat16 did
    later = [95.0 - 0.5 * i for i in range(10)]
    assert not any(report.step(Losses(v, 0, 0, 0), lambda: None) for v in later)
    assert report.step(Losses(later[-1], 0, 0, 0), lambda: None) is False  # still improving
    flat = [report.step(Losses(later[-1], 0, 0, 0), lambda: None) for _ in range(10)]
    assert flat[-1] is True


# -- L-BFGS's parts ---------------------------------------------------------------------------
def _two_loop(q, pairs, h0_scale):
    """Nocedal & Wright's Algorithm 7.4 (the reference the compact form must equal), its initial
    inverse Hessian h0_scale · s·y / y·y of the newest pair."""
    alphas = []
    for s, y in reversed(pairs):
        a = (s @ q) / (s @ y)
        q = q - a * y
        alphas.append(a)
    s, y = pairs[-1]
    r = h0_scale * (s @ y) / (y @ y) * q
    for (s, y), a in zip(pairs, reversed(alphas)):
        r = r + (a - (y @ r) / (s @ y)) * s
    return r


def _remember_all(pairs, rows, n):
    """A memory of `rows` pairs that was handed `pairs` in order, and its variable."""
    from batch_style.engine.lbfgs import _lbfgs_direction, _lbfgs_memory

    memory, variable = _lbfgs_memory(rows, n)
    x, grad = tf.fill((1, n), 0.5), tf.ones((1, n))
    for s, y in pairs:
        _, _, memory = _lbfgs_direction(x, grad, memory, variable, tf.constant(s),
                                        tf.constant(y))
    return memory, variable


def _by_age(memory, variable):
    """The stored s and y rows, oldest first (the ring's slots rolled so the newest is last)."""
    rows = memory.sy.shape[0]
    vectors = np.roll(variable.numpy().reshape(2, rows, -1), -(int(memory.newest) + 1), axis=1)
    return vectors[0], vectors[1]


# 1 and 3 of 5 rows leave older pairs in rows the memory no longer uses; 8 pairs go round the
# ring more than once.
@pytest.mark.parametrize("count, handed", [(1, 3), (3, 5), (5, 7), (5, 8)])
def test_compact_lbfgs_direction_is_the_two_loop_recursion(count, handed):
    from batch_style.engine.lbfgs import L_BFGS_H0_SCALE, _lbfgs_direction

    rng = np.random.default_rng(count * 10 + handed)
    n, rows = 40, 5
    curvature = rng.uniform(0.5, 3.0, n)  # a convex quadratic's Hessian: y = A s
    pairs = [(s, (curvature * s).astype(np.float32))
             for s in rng.normal(size=(handed, n)).astype(np.float32)]
    memory, variable = _remember_all(pairs, rows, n)
    assert int(memory.count) == min(handed, rows)
    memory = memory._replace(count=tf.constant(count))  # the newest `count` pairs
    x = np.full((1, 4, 10, 1), 0.5, np.float32)  # no pixel at a bound
    grad = rng.normal(size=x.shape).astype(np.float32)
    direction, largest, kept = _lbfgs_direction(tf.constant(x), tf.constant(grad), memory,
                                                variable)
    expected = -_two_loop(grad.ravel().astype(np.float64), pairs[-count:], L_BFGS_H0_SCALE)
    np.testing.assert_allclose(direction.numpy().ravel(), expected, rtol=1e-4, atol=1e-5)
    assert int(kept.count) == count and float(largest) == pytest.approx(np.abs(expected).max(), 1e-4)


def test_lbfgs_takes_the_new_pair_in_before_its_direction():
    """Handed (s, y), the direction is the one from the memory holding that pair last."""
    from batch_style.engine.lbfgs import _lbfgs_direction

    rng = np.random.default_rng(7)
    n, rows = 24, 4
    pairs = [(s, (rng.uniform(0.5, 3.0, n) * s).astype(np.float32))
             for s in rng.normal(size=(6, n)).astype(np.float32)]
    x, grad = tf.fill((1, n), 0.5), tf.constant(rng.normal(size=(1, n)).astype(np.float32))
    memory, variable = _remember_all(pairs[:-1], rows, n)
    fused, _, fused_memory = _lbfgs_direction(x, grad, memory, variable, *pairs[-1])
    memory, variable = _remember_all(pairs, rows, n)
    plain, _, plain_memory = _lbfgs_direction(x, grad, memory, variable)
    np.testing.assert_allclose(fused.numpy(), plain.numpy(), rtol=1e-5, atol=1e-6)
    assert int(fused_memory.count) == int(plain_memory.count) == rows
    assert int(fused_memory.newest) == int(plain_memory.newest) == (6 - 1) % rows


def test_lbfgs_direction_holds_pixels_pushed_against_a_bound():
    from batch_style.engine.lbfgs import _lbfgs_direction, _lbfgs_memory

    x = tf.constant([[[[0.0], [1.0], [0.0], [0.5]]]])
    grad = tf.constant([[[[1.0], [-1.0], [-1.0], [2.0]]]])  # the first two push outward
    direction, _, memory = _lbfgs_direction(x, grad, *_lbfgs_memory(3, 4))
    np.testing.assert_allclose(direction.numpy().ravel(), [0.0, 0.0, 1.0, -2.0])
    assert int(memory.count) == 0


class _Quadratic:
    """Stands in for an Objective: f(x) = Σ a·(x − t)², minimized over [0,1] at clip(t)."""

    def __init__(self, shape, seed=0):
        rng = np.random.default_rng(seed)
        self.a = tf.constant(rng.uniform(0.2, 20.0, shape).astype(np.float32))
        self.t = tf.constant(rng.uniform(-0.5, 1.5, shape).astype(np.float32))
        self.calls = 0

    def traced(self, step):

        def loss_and_grad(x):
            self.calls += 1
            r = x - self.t
            return tf.reduce_sum(self.a * r * r), tf.zeros(4), 2 * self.a * r

        return lambda *args: step(loss_and_grad, *args)


def test_each_precision_optimizes_against_targets_computed_in_it(stylizer, pair):
    # At the content image the content term is zero in either precision: bfloat16 maps are
    # compared with bfloat16 targets, not with float32 ones they differ from by rounding.
    content, style = pair
    settings = resolve({"size": 64})
    x = tf.constant(content[None])
    for precision in ("bfloat16", "float32"):
        args = stylizer._objective_args(content, [style], None, settings, None, precision)
        _, terms, _ = stylizer.objective(precision).evaluate(x, *args)
        assert float(terms[0]) == 0.0, precision
    float32_targets = stylizer._objective_args(content, [style], None, settings, None)
    _, terms, _ = stylizer.objective("bfloat16").evaluate(x, *float32_targets)
    assert float(terms[0]) > 0.0  # what the bfloat16 phase was measured against before


def test_lbfgs_finds_the_minimum_of_a_box_constrained_quadratic():
    from batch_style.engine.lbfgs import run_lbfgs
    from batch_style.engine.reporter import Reporter

    problem = _Quadratic((1, 6, 8, 3))
    settings = resolve({"steps": 80, "tolerance": 0.0})  # to the minimum, not "done"
    report = Reporter(None, settings, 0, 1, (8, 6), 80, 0.0, None)
    start = np.full((6, 8, 3), 0.5, np.float32)
    image, last, steps, early = run_lbfgs(start, settings, [(problem, 80, ())], report)
    expected = np.clip(problem.t.numpy()[0], 0.0, 1.0)
    # float32 tells the total (~75, from the pixels held at a bound) only to ~1e-7 of itself:
    # a pixel with the lowest curvature (a = 0.2) is located no better than ±6e-3.
    np.testing.assert_allclose(image, expected, atol=6e-3)
    assert steps == problem.calls <= 80 and not early
    floor = float(tf.reduce_sum(problem.a * tf.square(expected - problem.t)))
    assert last.total == pytest.approx(floor, rel=1e-4)
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_lbfgs_phases_each_read_the_image_and_share_the_budget():
    from batch_style.engine.lbfgs import run_lbfgs
    from batch_style.engine.reporter import Reporter

    problem = _Quadratic((1, 6, 8, 3), seed=1)
    report = Reporter(None, resolve({}), 0, 1, (8, 6), 30, 0.0, None)
    start = np.full((6, 8, 3), 0.5, np.float32)
    _, _, steps, _ = run_lbfgs(start, resolve({}), [(problem, 10, ()), (problem, 20, ())],
                               report)
    assert steps == problem.calls == len(report.history) <= 30
    assert report.phase_start == 10  # the second phase began after the first one's 10 readings


@pytest.mark.parametrize("curvature", [1e-3, 1.0, 1e12])
def test_lbfgs_keeps_pairs_whatever_the_objective_scale(curvature):
    from batch_style.engine.lbfgs import _lbfgs_memory

    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(4):
        s = rng.normal(size=12).astype(np.float32)
        pairs.append((s, (curvature * rng.uniform(0.5, 2.0, 12) * s).astype(np.float32)))
    memory, variable = _remember_all(pairs, 3, 12)
    assert int(memory.count) == 3  # all kept, the oldest of four dropped
    np.testing.assert_allclose(_by_age(memory, variable)[0][-1], s)
    # A pair with s·y ≤ 0 (negative curvature) is left out, and the memory is not written.
    s, y = pairs[-1]
    before = variable.numpy()
    kept = _remember_all([(s, -y)], 3, 12)[0].count
    from batch_style.engine.lbfgs import _lbfgs_direction

    _, _, after = _lbfgs_direction(tf.fill((1, 12), 0.5), tf.ones((1, 12)), memory, variable,
                                   tf.constant(s), tf.constant(-y))
    assert int(kept) == 0 and int(after.count) == 3 and int(after.newest) == int(memory.newest)
    np.testing.assert_array_equal(variable.numpy(), before)
    assert _lbfgs_memory(3, 12)[1].shape == (6, 12)


def test_lbfgs_memory_keeps_its_inner_products_up_to_date():
    rng = np.random.default_rng(1)
    pairs = []
    for handed in range(1, 7):  # past the memory's size: the ring goes round
        s = rng.normal(size=9).astype(np.float32)
        pairs.append((s, s * rng.uniform(0.5, 2.0, 9).astype(np.float32)))
        memory, variable = _remember_all(pairs, 4, 9)
        s_rows, y_rows = _by_age(memory, variable)
        expected_s = np.array([s for s, _ in pairs[-4:]])
        np.testing.assert_array_equal(s_rows[4 - min(handed, 4):], expected_s)
        np.testing.assert_allclose(memory.sy.numpy(), s_rows @ y_rows.T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(memory.yy.numpy(), y_rows @ y_rows.T, rtol=1e-5, atol=1e-5)


def test_lbfgs_history_fits_its_memory_budget(monkeypatch):
    from batch_style.engine import lbfgs

    monkeypatch.setattr(lbfgs, "L_BFGS_MEMORY_BYTES", 8 * 1000 * 50)
    assert lbfgs.history_rows(1000) == min(50, lbfgs.L_BFGS_HISTORY)
    assert lbfgs.history_rows(10**9) == lbfgs.L_BFGS_MIN_HISTORY  # never fewer

