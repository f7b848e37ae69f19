"""Steps run many to a traced call (engine/chunked.py) give what the step-by-step loops give."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from batch_style.engine import chunked  # noqa: E402
from batch_style.engine.reporter import Reporter  # noqa: E402
from batch_style.settings import resolve  # noqa: E402


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(3)
    return (rng.uniform(0, 1, (48, 64, 3)).astype(np.float32),
            rng.uniform(0, 1, (40, 40, 3)).astype(np.float32))


def _both(stylizer, pair, settings, monkeypatch):
    """(result, events) of the step-by-step loop, then of the chunked one."""
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(chunked, "ENABLED", enabled)
        events = []
        result = stylizer.stylize(pair[0], [pair[1]], settings, callback=events.append)
        runs.append((result, events))
    return runs


@pytest.mark.parametrize("optimizer, tolerance, precision", [
    ("lbfgs", 0.0, "float32"), ("lbfgs", 0.01, "float32"), ("lbfgs", 0.0, "mixed"),
    ("adam", 0.0, "float32"), ("adam", 0.002, "float32"), ("adam", 0.0, "mixed")])
def test_chunked_steps_give_the_step_by_step_result(stylizer, pair, monkeypatch, optimizer,
                                                     tolerance, precision):
    settings = resolve({"size": 48, "steps": 40, "optimizer": optimizer, "tolerance": tolerance,
                        "precision": precision, "snapshot_every": 7, "scales": 1})
    (old, old_events), (new, new_events) = _both(stylizer, pair, settings, monkeypatch)
    assert new.steps == old.steps and new.stop_reason == old.stop_reason
    np.testing.assert_allclose(new.image, old.image, rtol=0, atol=1e-6)
    np.testing.assert_allclose(new.history, old.history, rtol=1e-6)
    assert new.losses.total == pytest.approx(old.losses.total, rel=1e-6)
    # The callback sees every step, in order, with an image at the same steps.
    assert [e.step for e in new_events] == [e.step for e in old_events] == list(
        range(1, new.steps + 1))
    shown = [e.step for e in new_events if e.snapshot is not None]
    assert shown == [e.step for e in old_events if e.snapshot is not None]
    assert shown and all(s % 7 == 0 or s == 40 for s in shown)
    for a, b in zip(old_events, new_events):
        if a.snapshot is not None:
            np.testing.assert_allclose(b.snapshot, a.snapshot, atol=1e-6)
    assert all(b.elapsed >= a.elapsed for a, b in zip(new_events, new_events[1:]))


def test_the_tolerance_rule_stops_both_loops_at_the_same_step(stylizer, pair, monkeypatch):
    settings = resolve({"size": 48, "steps": 200, "optimizer": "lbfgs", "tolerance": 0.01,
                        "scales": 1, "precision": "float32"})
    (old, _), (new, _) = _both(stylizer, pair, settings, monkeypatch)
    assert old.stopped_early and new.stopped_early
    assert new.steps == old.steps < 200


def test_chunks_end_where_the_callback_wants_an_image():
    settings = resolve({"snapshot_every": 10})
    report = Reporter(lambda event: None, settings, 0, 1, (8, 6), 25, 0.0, None)
    assert [chunked.next_snapshot(report, n) for n in (0, 9, 10, 19, 20, 24)] == [
        10, 10, 20, 20, 25, 25]
    clock = chunked.Clock()
    assert clock.limit(report, 0, 25) == 1  # the first chunk traces: one step
    clock.ran(4, 0.004, first=False)  # 1 ms a step: as many as fit, to the next image
    assert clock.limit(report, 3, 25) == 7 and clock.limit(report, 20, 25) == 5
    quiet = Reporter(None, settings, 0, 1, (8, 6), 200, 0.0, None)
    assert chunked.next_snapshot(quiet, 3) is None
    assert clock.limit(quiet, 3, 200) == chunked.MAX_CHUNK


def test_the_fixed_cost_is_the_intercept_of_seconds_against_pixels():
    from benchmarks.fixed_cost import fixed_cost

    # 0.08 s a step whatever the size, plus 1 µs a pixel: the bench's line recovers the 0.08.
    pixels = [64 * 43, 128 * 85, 256 * 170]
    assert fixed_cost(pixels, [0.08 + 1e-6 * p for p in pixels]) == pytest.approx(0.08)


def test_stylize_shows_every_step_and_writes_every_numbered_picture(cli, media_dir, tmp_path):
    # What the user meets: steps run in chunks, yet each step prints its line and the numbered
    # pictures fall on their steps.
    out = tmp_path / "r.png"
    done = cli.run("stylize", media_dir / "photo.png", media_dir / "style.png", "-o", out,
                   "--tiny", "--size", "32", "--steps", "10", "--optimizer", "lbfgs",
                   "--tolerance", "0", "--save-every", "3", "--print-every", "1", timeout=300)
    assert done.returncode == 0, done.stderr
    steps = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("step ")]
    assert steps == [f"{n}/10" for n in range(1, 11)]
    assert sorted(p.name for p in tmp_path.glob("r.*.png")) == ["r.0003.png", "r.0006.png",
                                                                 "r.0009.png"]
