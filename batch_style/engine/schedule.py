"""How a picture is made: its levels, coarse to fine, and whether each is computed whole or in tiles."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from batch_style.engine import tile_layout
from batch_style.engine.model import VGG19_WIDTHS
from batch_style.errors import UserError
from batch_style.media import images
from batch_style.settings import Settings

log = logging.getLogger("batch_style")

# Steps of each level above base_size, as a share of `steps`: the look is set at base_size, a
# finer level only adds detail to an upsampled picture that is already close. More steps there
# pull the print toward the less painted look of its own size: a 512-px print from base_size 128
# was 1.37× further from the style than the 128-px draft with 0.25, 1.10× with 0.1, 1.03× with
# 0.05 (docs/prints.md); 0.1 keeps the look and leaves the detail 50 steps at the defaults.
REFINE_SHARE = 0.1
LEVEL_FACTOR = 2  # each level above base_size is this many times the one below (the last: size)
# What a tile's side may be when tiles are chosen by memory: a multiple of the pooling grid;
# above MAX_AUTO_TILE the halo's overhead has become small and a tile only costs more memory.
MIN_TILE = 64       # px
# Where the default budget cannot hold even a picture's own buffers (a 4096-px print under a CPU
# worker's 3.5 GB), tiles of this side: the budget is exceeded by what the picture needs, not refused.
FALLBACK_TILE = 256  # px
MAX_AUTO_TILE = 1024  # px
# Per pixel of the picture, besides the network's passes (float32 RGB values): the image, its
# gradient, a trial point and its gradient, the direction, Adam's two moments, the targets and
# the temporal arguments, about twelve copies; and each of L-BFGS's pairs (s and y).
PICTURE_BYTES_PER_PX = 12 * 3 * 4
PAIR_BYTES_PER_PX = 2 * 3 * 4
MIN_PAIRS = 5       # L-BFGS keeps at least these many pairs when memory is short
# TensorFlow, the weights and the traced functions of a worker. A 2048-px print peaks ~650 MB
# above the estimate with it; raising it (smaller tiles) raised the peak (docs/prints.md,
# "Memory with the defaults").
RUNTIME_BYTES = 1300 << 20


@dataclass(frozen=True)
class Level:
    """One level of a picture's optimization."""

    size: tuple[int, int]       # (width, height), px
    steps: int                  # step budget at this level
    tile: int | None = None     # tile side, px (engine/tile_layout.py); None: the whole picture
    pairs_bytes: int | None = None  # memory L-BFGS's pairs may take (None: their own cap)
    # Once made (stylizer.Result.levels): the steps taken, why the level stopped ("cap",
    # "converged", or "look": the look rule, engine/reporter.py) and the look rule's readings.
    taken: int | None = None
    stop: str = ""
    looks: tuple[float, ...] = ()


def level_sizes(width: int, height: int, settings: Settings, min_side: int,
                coarse: bool = True) -> list[tuple[int, int]]:
    """(w, h) of each level for a width×height picture, coarsest first, the last at
    settings.size; levels with a side under `min_side` are left out (so the list is empty when
    even the last is too small).

    `scales` > 1: each level half the next (as before base_size). Else, with a result larger
    than `base_size`, the first level is at base_size, where the look is set, and each next one
    LEVEL_FACTOR times larger up to the result. `coarse=False`: the result's size alone (a video
    frame that starts from the previous one, already at its size).
    """
    if coarse and settings.scales > 1:
        return images.scale_sizes(width, height, settings.size, settings.scales, min_side)
    longest = [settings.size]
    if coarse and settings.base_size and settings.size > settings.base_size:
        longest = [settings.base_size]
        while longest[-1] * LEVEL_FACTOR < settings.size:
            longest.append(longest[-1] * LEVEL_FACTOR)
        longest.append(settings.size)
    sizes = [images.fit_size(width, height, n) for n in longest]
    return [s for s in sizes if min(s) >= min_side]


def levels(width: int, height: int, settings: Settings, min_side: int, steps: int,
           coarse: bool = True) -> list[Level]:
    """level_sizes() with their step budgets: `steps` at the first level; at each finer level
    above base_size, REFINE_SHARE of it; with `scales`, `steps` at every level (its meaning)."""
    sizes = level_sizes(width, height, settings, min_side, coarse)
    if not sizes:
        w, h = images.fit_size(width, height, settings.size)
        raise UserError(f"the result would be {w}×{h} px, too small for VGG19: each side must be "
                        f"at least {min_side} px for the layers asked for; raise size",
                        field="size")
    refine = steps if settings.scales > 1 else max(1, round(steps * REFINE_SHARE))
    return [Level(size, steps if i == 0 else refine) for i, size in enumerate(sizes)]


def need_bytes(size: tuple[int, int], pass_bytes: int, pairs: int = MIN_PAIRS) -> int:
    """The planner's estimate of a level's peak memory: the worker's runtime, the picture's
    buffers, one pass (`pass_bytes`: the whole picture's, or a tile's) and `pairs` of L-BFGS's
    (plan() fits it with the fewest to the budget; benchmarks/prints.py, with those a run keeps,
    sets it beside the measured peak)."""
    w, h = size
    return RUNTIME_BYTES + w * h * (PICTURE_BYTES_PER_PX + pairs * PAIR_BYTES_PER_PX) \
        + pass_bytes


def plan(level: Level, settings: Settings, layers: Sequence[str], memory: int | None, *,
         widths: Sequence[int] = VGG19_WIDTHS, winograd: bool = False) -> Level:
    """`level` with its tile side and L-BFGS memory chosen for a budget of `memory` bytes
    (None: no limit): the whole picture where it fits, else the largest tile that does.

    settings.tile_size forces tiles of at most that side. Raises UserError when even the
    smallest tile does not fit the budget.
    """
    w, h = level.size
    picture = w * h * PICTURE_BYTES_PER_PX + RUNTIME_BYTES
    pairs = w * h * PAIR_BYTES_PER_PX

    def fits(pass_bytes: int) -> bool:
        return memory is None or need_bytes(level.size, pass_bytes) <= memory

    def chosen(tile: int | None, pass_bytes: int) -> Level:
        left = None if memory is None else max(memory - picture - pass_bytes, MIN_PAIRS * pairs)
        return Level(level.size, level.steps, tile, left)

    step = tile_layout.grid(layers)
    if settings.tile_size:
        tile = settings.tile_size if settings.tile_size < max(w, h) else None
        if tile is not None and tile % step:
            raise UserError(f"expected a multiple of {step} px (VGG19's pooling grid up to "
                            f"{tile_layout.deepest(layers)}), got {tile}", field="tile_size")
        pass_bytes = (tile_layout.tile_memory_bytes(tile, layers, widths, winograd=winograd)
                      if tile else tile_layout.pass_memory_bytes((w, h), layers, widths,
                                                           winograd=winograd))
        return chosen(tile, pass_bytes)
    whole = tile_layout.pass_memory_bytes((w, h), layers, widths, winograd=winograd)
    if fits(whole):
        return chosen(None, whole)
    largest = min(MAX_AUTO_TILE, max(w, h)) // step * step
    for tile in range(largest, MIN_TILE - 1, -step):
        pass_bytes = tile_layout.tile_memory_bytes(tile, layers, widths, winograd=winograd)
        if fits(pass_bytes):
            return chosen(tile, pass_bytes)
    if not settings.memory_budget:  # our own default, not the user's word: exceed it
        pass_bytes = tile_layout.tile_memory_bytes(FALLBACK_TILE, layers, widths, winograd=winograd)
        log.info("the default memory budget (%d MB) cannot hold a %d×%d picture's own buffers: "
                 "tiles of %d px, about %d MB", memory >> 20, w, h, FALLBACK_TILE,
                 need_bytes(level.size, pass_bytes) >> 20)
        return chosen(FALLBACK_TILE if FALLBACK_TILE < max(w, h) else None, pass_bytes)
    need = need_bytes(level.size, tile_layout.tile_memory_bytes(MIN_TILE, layers, widths,
                                                          winograd=winograd))
    raise UserError(f"a {w}×{h} px picture needs at least {need / 2**20:.0f} MB even in tiles of "
                    f"{MIN_TILE} px; the memory budget is {memory / 2**20:.0f} MB: raise it, or "
                    f"lower size", field="memory_budget")
