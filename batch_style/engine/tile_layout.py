"""Tiles of a picture for VGG19: where each reads and what it owns, and what memory it takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batch_style.engine.model import VGG19_WIDTHS, layers_needed


# -- geometry ---------------------------------------------------------------------------------
def _reach(layers: Sequence[str]) -> dict[str, tuple[int, int]]:
    """name → (pools before its map, how far in px from a crop's cut edge its map is wrong),
    for every layer the network computes up to the deepest of `layers`.

    A 3×3 'same' convolution reads zeros at a cut edge where the picture has pixels: one more
    cell of its map goes wrong (a cell is 2^pools px). A 2×2 pool of a crop that starts on the
    grid keeps a window right when both its cells are: ceil(wrong / 2) cells of the pooled map.
    For VGG19 up to block5_conv1 that is 5 cells of 16 px: 80 px (its receptive field, 156 px
    wide, would say 78, which the 16-px grid rounds up to the same 80).
    """
    pools, wrong, reach = 0, 0, {}
    for name, kind in layers_needed(layers):
        if kind == "conv":
            wrong += 1
        else:
            pools, wrong = pools + 1, -(-wrong // 2)
        reach[name] = (pools, wrong << pools)
    return reach


def deepest(layers: Sequence[str]) -> str:
    return layers_needed(layers)[-1][0]


def grid(layers: Sequence[str]) -> int:
    """The pooling grid, px, of the network up to the deepest of `layers`: tiles and crops start
    on it, so max pooling sees the same windows as in the whole picture."""
    return 1 << max(pools for pools, _ in _reach(layers).values())


def halo(layers: Sequence[str]) -> int:
    """The pixels a tile reads beyond its interior on each side (up to the picture's edge) so
    that every map of `layers` is right over the interior: a multiple of grid(layers)."""
    step = grid(layers)
    return -(-max(wrong for _, wrong in _reach(layers).values()) // step) * step


@dataclass(frozen=True)
class Tile:
    """One tile: its interior, the pixels whose features it owns, and its crop, the pixels it
    reads (the interior and the halo, clipped to the picture), each (x0, y0, x1, y1) px."""

    interior: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]

    def box(self, pools: int) -> tuple[int, int, int, int, int, int]:
        """The interior on the map after `pools` pools: (row, column) in the whole picture's
        map, (row, column) in the crop's map, (rows, columns).

        The pools floor odd sides: an interior that ends at the picture's edge ends where the
        whole map does (⌊W / 2^pools⌋, which is what repeated halving leaves); any other ends on
        the grid. A narrow last tile may own no position of a deep map, only of shallower ones.
        """
        x0, y0, x1, y1 = self.interior
        crop_x, crop_y = self.crop[:2]
        column, row = x0 >> pools, y0 >> pools
        return (row, column, row - (crop_y >> pools), column - (crop_x >> pools),
                (y1 >> pools) - row, (x1 >> pools) - column)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) px of the crop."""
        x0, y0, x1, y1 = self.crop
        return y1 - y0, x1 - x0


def _spans(side: int, tile_size: int, halo_px: int) -> list[tuple[int, int, int, int]]:
    """(start, end, crop start, crop end) along one side: tiles of tile_size from 0, the last
    one what is left; crops clipped at the picture's edges."""
    return [(start, min(start + tile_size, side), max(0, start - halo_px),
             min(side, start + tile_size + halo_px)) for start in range(0, side, tile_size)]


class TileLayout:
    """The tiles of a (width, height) picture whose interiors are at most `tile_size` px a
    side, for a network computing `layers` (the model's layer names: its deepest layer sets the
    halo and the grid). Row-major; every pixel is in exactly one interior."""

    def __init__(self, size: tuple[int, int], tile_size: int, layers: Sequence[str]):
        width, height = size
        self.size = (int(width), int(height))
        self.tile_size = int(tile_size)
        self.layers = tuple(dict.fromkeys(layers))
        self.grid, self.halo = grid(self.layers), halo(self.layers)
        self.pools = {name: pools for name, (pools, _) in _reach(self.layers).items()}
        last = deepest(self.layers)
        if self.tile_size < self.grid or self.tile_size % self.grid:
            raise ValueError(f"tile_size {tile_size} px: tiles must be a positive multiple of "
                             f"{self.grid} px ({self.grid}, {2 * self.grid}, …), VGG19's "
                             f"pooling grid up to {last}")
        if min(self.size) < self.grid:
            raise ValueError(f"a {width}×{height} picture is too small for VGG19 up to "
                             f"{last}: each side must be at least {self.grid} px")
        self.tiles = tuple(Tile((x0, y0, x1, y1), (cx0, cy0, cx1, cy1))
                           for y0, y1, cy0, cy1 in _spans(height, self.tile_size, self.halo)
                           for x0, x1, cx0, cx1 in _spans(width, self.tile_size, self.halo))

    def __len__(self) -> int:
        return len(self.tiles)

    def __repr__(self) -> str:
        w, h = self.size
        return (f"TileLayout({w}×{h}, tile_size={self.tile_size}, {len(self)} tiles, "
                f"halo={self.halo}, grid={self.grid})")

    @property
    def crop_shapes(self) -> set[tuple[int, int]]:
        """The distinct crop shapes (the Winograd layers compile once for each)."""
        return {tile.shape for tile in self.tiles}

    def map_size(self, name: str) -> tuple[int, int]:
        """(rows, columns) of layer `name`'s map of the whole picture."""
        pools = self.pools[name]
        return self.size[1] >> pools, self.size[0] >> pools


# -- memory -----------------------------------------------------------------------------------
# One forward and backward pass keeps every map up to the deepest layer for the gradient; what
# it takes beyond the runtime and the weights, measured as peak RSS over the RSS after loading
# the real VGG19 (one evaluation at 1024×768 whole, and tiles of 256 and 512 px whose largest
# crops are 416² and 592², a fresh process each, 2-core Xeon, the larger of two runs), against
# those maps in float32 ("kept", 211, 428 and 960 MiB): direct convolutions 522, 961 and
# 1742 MiB, Winograd's 710, 1151 and 2670 MiB (its transformed tiles are larger than the maps).
# The factors below cover each measurement, with BASE for what does not scale (traced graphs,
# scratch).
KEPT_FACTOR = {"direct": 2.0, "winograd": 2.8}
BASE_BYTES = 150 << 20


def tile_memory_bytes(tile_side: int, layers: Sequence[str],
                      widths: Sequence[int] = VGG19_WIDTHS, precision: str = "float32", *,
                      winograd: bool = False) -> int:
    """An estimate of the peak memory one tile's forward and backward pass adds: a tile of
    `tile_side` px with its halo on both sides (the largest crop a layout has)."""
    side = tile_side + 2 * halo(layers)
    return pass_memory_bytes((side, side), layers, widths, precision, winograd=winograd)


def pass_memory_bytes(size: tuple[int, int], layers: Sequence[str],
                      widths: Sequence[int] = VGG19_WIDTHS, precision: str = "float32", *,
                      winograd: bool = False) -> int:
    """An estimate of the peak memory one forward and backward pass over a (w, h) image (a
    crop, or a whole picture) adds to the runtime and the weights; picture-sized buffers (the
    image, its gradient, the optimizer's state, the targets) not counted.

    bfloat16 is estimated as float32: not measured; its maps are half the size, but the
    requested ones come back in float32 and CPUs without native bfloat16 convert.
    """
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"unknown precision {precision!r}")
    width, height = size
    kept = sum((height >> pools) * (width >> pools) * widths[int(name[5]) - 1] * 4
               for name, (pools, _) in _reach(layers).items())
    factor = KEPT_FACTOR["winograd" if winograd and precision == "float32" else "direct"]
    return int(factor * kept) + BASE_BYTES
