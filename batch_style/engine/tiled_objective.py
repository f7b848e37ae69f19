"""The objective, its gradient and the targets computed tile by tile, equal to the whole picture's."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence

import numpy as np

from batch_style.engine import losses
from batch_style.engine.model import FeatureModel
from batch_style.engine.tf_runtime import import_tensorflow
from batch_style.engine.tile_layout import Tile, TileLayout, deepest, grid, halo

tf = import_tensorflow()

# Why tiles can give the whole picture's objective exactly (where other tools blend overlapping
# tiles, each with its own Grams): a style Gram is a sum over the map's positions, divided by the
# whole map's H·W, so it is the sum of the tiles' interiors' shares; the content term is a mean
# over positions, likewise; TV and the temporal term are pixel-wise and cheap, so they are taken
# on the whole image. Pass 1 runs each tile forward and adds up its interior's share of every
# Gram; then the style loss and its derivative dL/dG per layer are known; pass 2 runs each tile
# forward and back with the upstream gradient that dL/dG gives its interior's features (the
# derivative of ⟨dL/dG, G(interior)⟩, G's own one-product rule as in losses.gram) and adds the
# tile's gradient into the picture's. A feature at an interior position comes out of its crop
# the same function of the same pixels as out of the whole picture when the crop carries a halo
# at least as wide as the zeros at its cut edges reach, and starts on the pooling grid so every
# max pool pairs the same cells; a crop at the picture's own edge stops there, where the whole
# picture's 'same' padding has the same zeros.


def _boxes(layout: TileLayout, tile: Tile, names) -> dict[str, tf.Tensor]:
    """name → tile.box at that layer's depth, as the per-tile functions take it."""
    return {n: tf.constant(tile.box(layout.pools[n]), tf.int32) for n in names}


# -- the passes over one tile -----------------------------------------------------------------
# Each is a tf.function that tiles of every shape share: TensorFlow traces it for the first crop
# shape, then once or twice with the sides left open (reduce_retracing), as winograd._compiled
# leaves its shapes open. Traced per shape, the 25 crop shapes of a 229×195 picture in tiles of
# 48 px made the tiny network's first evaluation take 14 s; left open, 2.3 s (the Winograd
# layers' XLA still compiles each shape it meets, ~0.7 s a layer: TileLayout.crop_shapes). The
# interior's place in the crop and in the map comes as tensors. Tiles run one after another
# from Python: a tile's maps and tape live inside its call and are freed when it returns, so
# memory is bounded by one tile, not the picture (peak RSS at 2048×1536 in tiles of 256 px:
# 1.5 GB, at 1024×768 1.26 GB; whole, 1024×768 took 2.4 GB).
def _in_crop(features, box):
    """A tile's interior of one of its crop's maps."""
    return features[:, box[2]:box[2] + box[4], box[3]:box[3] + box[5], :]


def _in_map(whole, box):
    """The tile's interior of a whole picture's map (a content target)."""
    return whole[:, box[0]:box[0] + box[4], box[1]:box[1] + box[5], :]


def _gram_sum(interior, guide=None):
    """FᵀF over an interior's positions (C,C), not yet divided by the whole map's H·W; with a
    guide (the interior's part of a (1,h,w,1) map), Fᵀ·diag(g)·F, not yet divided by Σg."""
    flat = tf.reshape(interior, (-1, tf.shape(interior)[-1]))
    weighted = flat if guide is None else flat * tf.reshape(guide, (-1, 1))
    return tf.matmul(weighted, flat, transpose_a=True)


def _tile_sums(model, crop, style_boxes, content_boxes, content_targets, style_guides=(),
               content_guides=None):
    """Pass 1, forward only: each style layer's FᵀF (one per guide with `style_guides`) and
    each content layer's Σ (F − target)² (each position weighted with `content_guides`) over
    the tile's interior."""
    features = model(crop)
    if style_guides:
        grams = [{n: _gram_sum(_in_crop(features[n], box), _in_map(guide[n], box))
                  for n, box in style_boxes.items()} for guide in style_guides]
    else:
        grams = {n: _gram_sum(_in_crop(features[n], box)) for n, box in style_boxes.items()}
    content = {}
    for n, box in content_boxes.items():
        squared = tf.square(_in_crop(features[n], box) - _in_map(content_targets[n], box))
        if content_guides is not None:
            squared = squared * _in_map(content_guides[n], box)
        content[n] = tf.reduce_sum(squared)
    return grams, content


def _tile_gradient(model, crop, style_boxes, content_boxes, content_targets, style_factors,
                   content_factors, style_guides=(), content_guides=None):
    """Pass 2: d(objective)/d(crop) through the tile's interior, the whole picture's Grams
    known. The upstream gradient at a style layer's interior features F is F·factor, factor =
    w_style·(dL/dG + dL/dGᵀ)/(H·W) — the gradient of ⟨stop_gradient(dL/dG), G(interior)⟩ —
    and at a content layer's w_content·2(F − target)/(H·W·C·layers). With guides, a style's
    factor has Σg for H·W and its F rows are weighted by g (summed over the styles), and the
    content term's positions by their content guide."""
    with tf.GradientTape() as tape:
        tape.watch(crop)
        features = model(crop)
        interiors = {n: _in_crop(features[n], box)
                     for n, box in {**style_boxes, **content_boxes}.items()}
    upstream = {}
    for n in style_boxes:
        flat = tf.reshape(interiors[n], (-1, tf.shape(interiors[n])[-1]))
        if style_guides:
            part = tf.add_n([tf.matmul(flat * tf.reshape(_in_map(guide[n], style_boxes[n]),
                                                         (-1, 1)), factors[n])
                             for guide, factors in zip(style_guides, style_factors)])
        else:
            part = tf.matmul(flat, style_factors[n])
        upstream[n] = tf.reshape(part, tf.shape(interiors[n]))
    for n, factor in content_factors.items():
        part = factor * (interiors[n] - _in_map(content_targets[n], content_boxes[n]))
        if content_guides is not None:
            part = part * _in_map(content_guides[n], content_boxes[n])
        upstream[n] = upstream[n] + part if n in upstream else part
    names = list(upstream)
    return tape.gradient([interiors[n] for n in names], crop,
                         output_gradients=[upstream[n] for n in names])


def _tile_maps(model, crop, boxes):
    """The tile's interiors of the maps named in `boxes`, forward only."""
    features = model(crop)
    return {n: _in_crop(features[n], box) for n, box in boxes.items()}


def _pixel_terms(x, weights, temporal_previous, temporal_mask):
    """TV and the temporal term on the whole image, and their weighted gradient."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        tv = losses.tv_loss(x)
        temporal = tf.reduce_mean(temporal_mask * tf.square(x - temporal_previous))
        part = weights[2] * tv + weights[3] * temporal
    return tv, temporal, tape.gradient(part, x)


class _Functions:
    """One model's traced per-tile passes. They reach the model through a weak proxy, so the
    cache below lets go of a model nobody else holds."""

    def __init__(self, model: FeatureModel):
        proxy = weakref.proxy(model)
        self.sums = tf.function(functools.partial(_tile_sums, proxy), reduce_retracing=True)
        self.gradient = tf.function(functools.partial(_tile_gradient, proxy),
                                    reduce_retracing=True)
        self.maps = tf.function(functools.partial(_tile_maps, proxy), reduce_retracing=True)
        self.pixel_terms = tf.function(_pixel_terms, reduce_retracing=True)


_functions_of: weakref.WeakKeyDictionary[FeatureModel, _Functions] = weakref.WeakKeyDictionary()


def _functions(model: FeatureModel) -> _Functions:
    if model not in _functions_of:
        _functions_of[model] = _Functions(model)
    return _functions_of[model]


def _check(model: FeatureModel, layout: TileLayout, names, size: tuple[int, int]) -> None:
    """The layout fits this picture and every map the model computes, not only those used."""
    missing = set(names) - set(model.layer_names)
    if missing:
        raise ValueError(f"the feature model lacks layers {sorted(missing)}")
    if layout.size != size:
        raise ValueError(f"the layout is for a {layout.size[0]}×{layout.size[1]} picture, "
                         f"not {size[0]}×{size[1]}")
    # A crop too small for the model's deeper layers would pool a map to nothing (oneDNN fails).
    if layout.halo < halo(model.layer_names) or layout.grid % grid(model.layer_names):
        raise ValueError(f"the layout was made for layers up to {deepest(layout.layers)}; "
                         f"the model computes up to {deepest(model.layer_names)}: make the "
                         f"layout from the model's layers")


def _picture(image) -> tf.Tensor:
    """(1,H,W,3) float32 from an (H,W,3) or (1,H,W,3) array, tensor or variable."""
    x = tf.convert_to_tensor(image, tf.float32)
    return x[None] if x.shape.rank == 3 else x


def _crop(x, tile: Tile):
    x0, y0, x1, y1 = tile.crop
    return x[:, y0:y1, x0:x1, :]


# -- the objective ----------------------------------------------------------------------------
def tiled_loss_and_grad(model: FeatureModel, layout: TileLayout, x, content_targets,
                        style_targets, layer_weights, weights, temporal_previous,
                        temporal_mask, style_guides=(), content_guides=None):
    """Stylizer._loss_and_grad computed tile by tile: (total, [content, style, tv, temporal],
    d(total)/dx), the same to float32 rounding, for the same arguments after the model (the
    guides of masks and protected regions too: a guided Gram is a weighted sum over positions,
    split over the tiles' interiors like the plain one).

    Runs eagerly, tiles one after another (memory bounded by one tile): call it from Python,
    not inside a tf.function, where all tiles would become one graph.
    """
    if not tf.executing_eagerly():
        raise RuntimeError("tiled_loss_and_grad runs its tiles one after another from Python; "
                           "inside a tf.function they would all be one graph")
    x = _picture(x)  # a variable is read once
    guided = bool(style_guides)
    per_style = list(style_targets) if guided else [style_targets]
    style_names = list(layer_weights)
    _check(model, layout, [*content_targets, *style_names], (x.shape[2], x.shape[1]))
    functions = _functions(model)
    weights = tf.convert_to_tensor(weights, tf.float32)
    # What each style's Gram sums are divided by: the map's positions, or its guide's sum.
    if guided:
        norms = [{n: tf.maximum(tf.reduce_sum(g[n]), 1e-30) for n in style_names}
                 for g in style_guides]
    else:
        norms = [{n: float(np.prod(layout.map_size(n))) for n in style_names}]
    entries = {n: float(np.prod(content_targets[n].shape)) for n in content_targets}
    guide_args = (style_guides, content_guides) if guided or content_guides is not None else ()

    # Pass 1: the Grams and the content term over all the tiles' interiors.
    gram_sums = [{n: 0.0 for n in style_names} for _ in per_style]
    content_sums = {n: 0.0 for n in content_targets}
    for tile in layout.tiles:
        grams, content = functions.sums(_crop(x, tile), _boxes(layout, tile, style_names),
                                        _boxes(layout, tile, content_targets), content_targets,
                                        *guide_args)
        grams = grams if guided else [grams]
        gram_sums = [{n: sums[n] + g[n] for n in style_names} for sums, g in zip(gram_sums, grams)]
        content_sums = {n: content_sums[n] + content[n] for n in content_targets}
    grams = [{n: sums[n] / norm[n] for n in style_names} for sums, norm in zip(gram_sums, norms)]
    content = tf.add_n([content_sums[n] / entries[n] for n in content_targets]) \
        / float(len(content_targets))
    with tf.GradientTape() as tape:
        tape.watch(grams)
        if guided:
            style = losses.guided_style_loss(
                grams, per_style, [{n: tf.reduce_mean(g[n]) for n in style_names}
                                   for g in style_guides], layer_weights)
        else:
            style = losses.style_loss(grams[0], style_targets, layer_weights)
    d_grams = tape.gradient(style, grams)
    style_factors = [{n: weights[1] * (d[n] + tf.transpose(d[n])) / norm[n] for n in style_names}
                     for d, norm in zip(d_grams, norms)]
    content_factors = {n: weights[0] * (2.0 / (entries[n] * len(content_targets)))
                       for n in content_targets}
    tv, temporal, pixel_grad = functions.pixel_terms(x, weights, temporal_previous,
                                                     temporal_mask)
    total = (weights[0] * content + weights[1] * style + weights[2] * tv
             + weights[3] * temporal)

    # Pass 2: each tile's gradient added where its crop lies.
    grad = tf.Variable(pixel_grad, trainable=False)
    for tile in layout.tiles:
        tile_grad = functions.gradient(_crop(x, tile), _boxes(layout, tile, style_names),
                                       _boxes(layout, tile, content_targets), content_targets,
                                       style_factors if guided else style_factors[0],
                                       content_factors, *guide_args)
        x0, y0, x1, y1 = tile.crop
        grad[:, y0:y1, x0:x1, :].assign(grad[:, y0:y1, x0:x1, :] + tile_grad)
    return total, tf.stack([content, style, tv, temporal]), tf.convert_to_tensor(grad)


# -- targets ----------------------------------------------------------------------------------
def tiled_features(model: FeatureModel, layout: TileLayout, image,
                   layers: Sequence[str]) -> dict[str, tf.Tensor]:
    """{name: (1,h,w,C)} maps of `layers` for a whole picture in [0,1] ((H,W,3) or (1,H,W,3)),
    tile by tile, forward only: model(image)'s to float32 rounding (content targets)."""
    x = _picture(image)
    _check(model, layout, layers, (x.shape[2], x.shape[1]))
    functions = _functions(model)
    maps = {n: np.zeros((1, *layout.map_size(n), model.widths[int(n[5]) - 1]), np.float32)
            for n in layers}
    for tile in layout.tiles:
        interiors = functions.maps(_crop(x, tile), _boxes(layout, tile, layers))
        for n, interior in interiors.items():
            row, column, _, _, rows, columns = tile.box(layout.pools[n])
            maps[n][:, row:row + rows, column:column + columns] = interior.numpy()
    return {n: tf.convert_to_tensor(m) for n, m in maps.items()}


def tiled_grams(model: FeatureModel, layout: TileLayout, image, layers: Sequence[str],
                guides: dict | None = None) -> dict[str, tf.Tensor]:
    """{name: (C,C)} Grams (losses.gram) of `layers` for a whole picture in [0,1], tile by
    tile, forward only (the style targets of a large style image); with `guides` ({name:
    (1,h,w,1)}, a mask on the style image carried down) its guided Grams (losses.guided_gram)."""
    x = _picture(image)
    _check(model, layout, layers, (x.shape[2], x.shape[1]))
    functions = _functions(model)
    sums = {n: 0.0 for n in layers}
    for tile in layout.tiles:
        if guides is None:
            grams, _ = functions.sums(_crop(x, tile), _boxes(layout, tile, layers), {}, {})
        else:
            (grams,), _ = functions.sums(_crop(x, tile), _boxes(layout, tile, layers), {}, {},
                                         (guides,))
        sums = {n: sums[n] + grams[n] for n in layers}
    if guides is None:
        return {n: sums[n] / float(np.prod(layout.map_size(n))) for n in layers}
    return {n: sums[n] / tf.maximum(tf.reduce_sum(guides[n]), 1e-30) for n in layers}


class TiledObjective:
    """An Objective (engine/objective.py) computed tile by tile: the same values and gradient,
    memory bounded by one tile. Evaluated eagerly, tile after tile; the optimizers' compound
    steps around it are plain Python (traced, they would hold every tile's tape at once)."""

    def __init__(self, model: FeatureModel, layout: TileLayout):
        self.model, self.layout = model, layout

    def evaluate(self, x, *objective_args):
        return tiled_loss_and_grad(self.model, self.layout, x, *objective_args)

    def traced(self, step):
        """`step(evaluate, *args)` with this objective's evaluate bound, run eagerly."""
        return functools.partial(step, self.evaluate)
