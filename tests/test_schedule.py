"""Levels coarse to fine, and the choice between the whole picture and tiles (no TensorFlow)."""

from __future__ import annotations

import pytest

from batch_style.engine import schedule, tile_layout
from batch_style.engine.schedule import Level
from batch_style.errors import UserError
from batch_style.settings import resolve

LAYERS = ("block4_conv2", "block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
          "block5_conv1")


def test_a_result_above_base_size_is_made_there_first_then_refined():
    settings = resolve({"size": 2048, "base_size": 512, "steps": 400})
    levels = schedule.levels(4000, 3000, settings, 16, settings.steps)
    assert [lv.size for lv in levels] == [(512, 384), (1024, 768), (2048, 1536)]
    assert [lv.steps for lv in levels] == [400, 40, 40]


def test_the_last_level_is_the_size_even_between_doublings():
    settings = resolve({"size": 1500, "base_size": 512})
    assert [max(s) for s in schedule.level_sizes(3000, 2000, settings, 16)] == [512, 1024, 1500]


def test_at_or_below_base_size_one_level_as_before():
    settings = resolve({"size": 512, "steps": 300})
    assert schedule.levels(800, 600, settings, 16, 300) == [Level((512, 384), 300)]
    off = resolve({"size": 1024, "base_size": 0})
    assert schedule.level_sizes(800, 600, off, 16) == [(1024, 768)]


def test_scales_keep_their_meaning_and_a_frame_that_starts_warm_has_one_level():
    settings = resolve({"size": 1024, "scales": 3, "steps": 50})
    levels = schedule.levels(1024, 768, settings, 16, 50)
    assert [lv.size for lv in levels] == [(256, 192), (512, 384), (1024, 768)]
    assert [lv.steps for lv in levels] == [50, 50, 50]  # steps per scale
    assert schedule.level_sizes(1024, 768, resolve({"size": 1024}), 16, coarse=False) == \
        [(1024, 768)]


def test_the_whole_picture_when_it_fits_else_the_largest_tile_that_does():
    settings = resolve({})
    level = Level((2048, 1536), 100)
    assert schedule.plan(level, settings, LAYERS, None).tile is None  # no budget: whole
    whole = tile_layout.pass_memory_bytes((2048, 1536), LAYERS)
    roomy = schedule.plan(level, settings, LAYERS, whole + (4 << 30))
    assert roomy.tile is None
    tight = schedule.plan(level, settings, LAYERS, 3 << 30)
    assert tight.tile is not None and tight.tile % tile_layout.grid(LAYERS) == 0
    tighter = schedule.plan(level, settings, LAYERS, int(2.6 * 2**30))
    assert tighter.tile < tight.tile
    assert tight.pairs_bytes >= schedule.MIN_PAIRS * 2048 * 1536 * schedule.PAIR_BYTES_PER_PX


def test_need_bytes_is_the_budget_at_which_the_planner_switches_to_tiles():
    settings, level = resolve({}), Level((1024, 768), 100)
    need = schedule.need_bytes(level.size, tile_layout.pass_memory_bytes(level.size, LAYERS))
    assert schedule.plan(level, settings, LAYERS, need).tile is None
    assert schedule.plan(level, settings, LAYERS, need - 1).tile is not None


def test_a_budget_below_the_smallest_tile_names_the_setting():
    with pytest.raises(UserError) as caught:
        schedule.plan(Level((4096, 3072), 10), resolve({"memory_budget": 1024}), LAYERS, 1 << 30)
    assert caught.value.field == "memory_budget"
    assert "even in tiles of 64 px" in caught.value.message


def test_the_default_budget_is_exceeded_by_what_the_picture_needs_not_refused():
    # A 4096-px print's own buffers and runtime outgrow a CPU worker's default 3.5 GB.
    level = schedule.plan(Level((4096, 3072), 10), resolve({}), LAYERS, 3584 << 20)
    assert level.tile == schedule.FALLBACK_TILE
    assert level.pairs_bytes == schedule.MIN_PAIRS * 4096 * 3072 * schedule.PAIR_BYTES_PER_PX


def test_tile_size_forces_tiles_of_at_most_that_side():
    settings = resolve({"tile_size": 128})
    assert schedule.plan(Level((384, 288), 20), settings, LAYERS, None).tile == 128
    assert schedule.plan(Level((96, 64), 20), settings, LAYERS, None).tile is None  # one tile
    deep = LAYERS + ("block5_pool",)  # a 32 px grid
    with pytest.raises(UserError, match="expected a multiple of 32"):
        schedule.plan(Level((384, 288), 20), resolve({"tile_size": 48}), deep, None)


def test_a_cpu_workers_default_budget_is_a_share_of_the_ram_capped(monkeypatch):
    from batch_style.pipeline.workers import memory

    monkeypatch.setattr(memory, "ram_bytes", lambda: 8 << 30)
    assert memory.budget_bytes(resolve({}), None, workers=2) == 1 << 30  # 25% of 8 GB, halved
    monkeypatch.setattr(memory, "ram_bytes", lambda: 256 << 30)
    assert memory.budget_bytes(resolve({}), None) == memory.RAM_CAP
    assert memory.budget_bytes(resolve({"memory_budget": 20_000}), None) == 20_000 << 20
