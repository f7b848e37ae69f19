"""The look rule (engine/reporter.py): a level above base_size refines until its picture, seen at
base size, would stop looking like the draft; the share of steps is its cap."""

from __future__ import annotations

import numpy as np
import pytest

from batch_style.engine import chunked, reporter
from batch_style.engine.objective import Losses
from batch_style.engine.reporter import LookWatch, Reporter
from batch_style.settings import resolve


def _watch(monkeypatch, margin=0.1):
    monkeypatch.setattr(reporter, "LOOK_MARGIN", margin)
    draft = np.full((6, 8, 3), 0.5, np.float32)
    return LookWatch(lambda image: float(image.mean()), draft)  # a "style term": the mean


def test_a_level_stops_where_its_look_leaves_the_drafts_and_keeps_the_last_within(monkeypatch):
    watch = _watch(monkeypatch)
    start = np.full((12, 16, 3), 0.55, np.float32)  # upsampled, the draft reads 1.1× its own
    watch.start(start)
    near, far = start + 0.03, start + 0.1  # 1.16× and 1.3× the draft's "style term"
    assert not watch.leaves(near) and watch.kept is near  # within 1.1 × 1.1 = 1.21
    assert watch.leaves(far) and watch.kept is near and watch.left
    assert watch.looks == pytest.approx([1.1, 1.16, 1.3])  # the start's, then each look's
    watch.start(near)  # the next level: judged against the first finer level's start still
    assert not watch.left and watch.kept is near and watch.looks == pytest.approx([1.16])
    assert watch.leaves(start + 0.07) and watch.kept is near  # 1.24 > 1.21


def test_the_reporter_looks_every_few_steps_and_halts_the_level(monkeypatch):
    watch = _watch(monkeypatch)
    monkeypatch.setattr(watch, "every", 5)
    watch.start(np.full((12, 16, 3), 0.5, np.float32))
    report = Reporter(None, resolve({"tolerance": 0.0}), 1, 2, (16, 12), 50, 0.0, None, watch)
    images = iter([np.full((12, 16, 3), v, np.float32) for v in (0.52, 0.6)])
    looked = []

    def image():
        looked.append(len(report.history))
        return next(images)

    stops = [report.step(Losses(1.0, 0, 0, 0), image) for _ in range(12)]
    assert looked == [5, 10]
    assert stops.index(True) == 10 - 1 and report.halted
    # chunks of steps end where the rule looks, as where a snapshot is due
    assert [chunked.next_snapshot(report, n) for n in (0, 4, 5, 12)] == [5, 5, 10, 15]


@pytest.mark.parametrize("optimizer", ["lbfgs", pytest.param("adam", marks=pytest.mark.slow)])
def test_a_print_records_each_levels_steps_and_why_it_stopped(stylizer, monkeypatch, optimizer):
    from batch_style.media import images

    rng = np.random.default_rng(5)
    photo, painting = (rng.uniform(0, 1, shape).astype(np.float32)
                       for shape in ((72, 96, 3), (40, 40, 3)))
    given = {"base_size": 48, "steps": 30, "tolerance": 0.0, "optimizer": optimizer,
             "precision": "float32"}
    settings = resolve({**given, "size": 96})
    monkeypatch.setattr(reporter, "LOOK_MARGIN", 1e9)  # never leaves: the cap
    capped = stylizer.stylize(photo, [painting], settings)
    assert [lv.stop for lv in capped.levels] == ["cap", "cap"]
    assert capped.levels[1].taken == 3  # a tenth of 30
    assert len(capped.levels[1].looks) == 1 + 3 // reporter.LOOK_EVERY  # the start's too
    draft = stylizer.stylize(photo, [painting], resolve({**given, "size": 48})).image
    monkeypatch.setattr(reporter, "LOOK_MARGIN", -1.0)  # leaves at the first look
    for enabled in (True, False):  # steps many to a call, and one a call
        monkeypatch.setattr(chunked, "ENABLED", enabled)
        looked = stylizer.stylize(photo, [painting], settings)
        assert (looked.levels[1].taken, looked.levels[1].stop) == (reporter.LOOK_EVERY, "look")
        assert looked.stop_reason.startswith("the look rule at step")
        # nothing was kept within the margin: the finer level's start, the draft upsampled
        assert np.allclose(looked.image, images.resize(draft, (96, 72)), atol=1e-5)
