"""Style masks and protected regions measured with the real VGG19; the numbers go into docs/masks.md."""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
DOC = ROOT / "docs" / "masks.md"
PICTURE = ROOT / "docs" / "masks-golden-gate.png"
RESULTS = ROOT / "docs" / "masks-results.json"
# The ruler: Grams on layers the objective does not optimize (its style layers are the first
# convolution of each block, its content layer block4_conv2), computed afresh on the result.
RULER = ("block1_conv2", "block2_conv2", "block3_conv2", "block4_conv3")
OWN_MAX = 0.8          # each half's distance to its own style ≤ 0.8 × to the other style
SEAM_MAX = 1.5         # the seam's gradient ≤ 1.5 × the image's typical (median) column's
PROTECT_MAX = 0.5      # a protected region's content distance ≤ half of its unprotected one
SEAM_HALF = 2          # px each side of the soft seam's band that count as the seam too
# Left/right pairs: (name, photo, left painting, right painting). Neither was tuned on: every
# setting is a default, the masks are the generic samples/masks/left.png and right.png.
PAIRS = (("golden_gate", "photos/golden_gate.jpg", "paintings/starry-night.jpg",
          "paintings/kandinsky.jpg"),
         ("tubingen", "photos/tubingen.jpg", "paintings/kandinsky.jpg",
          "paintings/starry-night.jpg"))
PROTECT_PHOTO, PROTECT_STYLE = "photos/golden_gate.jpg", "paintings/starry-night.jpg"
PROTECT_WEIGHTS = (3.0, 10.0, 30.0)


@dataclass
class Bench:
    stylizer: object
    size: int
    steps: int

    def run(self, photo, styles, regions=None, **settings):
        from batch_style.settings import resolve

        chosen = resolve({"size": self.size, "steps": self.steps, **settings})
        started = time.perf_counter()
        result = self.stylizer.stylize(photo, styles, chosen, regions=regions)
        return result.image, time.perf_counter() - started


def load(path: str) -> np.ndarray:
    from batch_style.media import images

    return images.load_image(SAMPLES / path, 50_000_000)


def mask(name: str) -> np.ndarray:
    from batch_style.media import images

    return images.load_mask(SAMPLES / "masks" / name, 50_000_000)


def grams(model, image: np.ndarray) -> dict[str, np.ndarray]:
    from batch_style.engine import losses

    features = model(image[None])
    return {n: losses.gram(features[n]).numpy() for n in RULER}


def gram_distance(a: dict, b: dict) -> float:
    """Mean over the ruler's layers of ‖G_a − G_b‖² / ‖G_b‖² (each layer counts alike)."""
    return float(np.mean([np.sum((a[n] - b[n]) ** 2) / np.sum(b[n] ** 2) for n in RULER]))


def halves(image: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns where the left mask is all left (≥ 0.99) and all right (≤ 0.01)."""
    from batch_style.media import images

    h, w = image.shape[:2]
    columns = images.resize(left, (w, h)).mean(axis=0)
    return image[:, columns >= 0.99], image[:, columns <= 0.01]


def seam_band(left: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """The columns between which the seam lies: where the left mask is neither all left nor all
    right, SEAM_HALF more on each side (a hard mask's band is its edge ± SEAM_HALF)."""
    from batch_style.media import images

    w, h = size
    columns = images.resize(left, (w, h)).mean(axis=0)
    mixed = np.nonzero((columns > 0.01) & (columns < 0.99))[0]
    lo, hi = (mixed.min(), mixed.max() + 1) if len(mixed) else (w // 2, w // 2)
    return max(0, lo - 1 - SEAM_HALF), min(w - 1, hi + SEAM_HALF)


def seam(image: np.ndarray, band: tuple[int, int]) -> dict[str, float]:
    """The steepest column-to-column step (mean |Δ| over rows and colours) inside the seam's
    band against the image's median column, and its percentile among all the image's columns:
    a hard edge tops them."""
    per_column = np.abs(np.diff(image.astype(np.float64), axis=1)).mean(axis=(0, 2))
    at_seam = per_column[band[0]:band[1]].max()
    return {"ratio": float(at_seam / np.median(per_column)),
            "percentile": float((per_column <= at_seam).mean() * 100)}


def content_distance(model, image, photo, where) -> dict[str, float]:
    """Mean (F(x) − F(p))² over the region (weighted by the mask carried down) at the content
    layer and, as a second ruler, at block3_conv2."""
    from batch_style.engine.model import carry_down
    from batch_style.media import images

    h, w = image.shape[:2]
    photo = images.resize(photo, (w, h))
    layers = ("block4_conv2", "block3_conv2")
    guides = carry_down(images.resize(where, (w, h)), layers)
    got, want = model(image[None]), model(photo[None])
    return {n: float(np.sum(guides[n] * (got[n].numpy() - want[n].numpy()) ** 2)
                     / (np.sum(guides[n]) * got[n].shape[-1])) for n in layers}


def measure(bench: Bench, ruler_model, quick: bool = False) -> dict:
    from batch_style.engine.regions import Regions
    from batch_style.media import images

    left, right = mask("left.png"), mask("right.png")
    results: dict = {"size": bench.size, "steps": bench.steps, "ruler": list(RULER), "pairs": []}
    for name, photo_path, left_path, right_path in PAIRS[:1] if quick else PAIRS:
        photo, styles = load(photo_path), [load(left_path), load(right_path)]
        image, seconds = bench.run(photo, styles, Regions(styles=(left, right)))
        if name == "golden_gate" and not quick:
            images.save_image(image, PICTURE)
        h, w = image.shape[:2]
        style_grams = [grams(ruler_model, images.resize(s, images.fit_size(
            s.shape[1], s.shape[0], max(w, h)))) for s in styles]
        left_half, right_half = halves(image, left)
        own = [gram_distance(grams(ruler_model, left_half), style_grams[0]),
               gram_distance(grams(ruler_model, right_half), style_grams[1])]
        other = [gram_distance(grams(ruler_model, left_half), style_grams[1]),
                 gram_distance(grams(ruler_model, right_half), style_grams[0])]
        hard_left = (np.arange(w) < w // 2).astype(np.float32)[None].repeat(h, 0)
        hard, hard_seconds = bench.run(photo, styles, Regions(styles=(hard_left, 1 - hard_left)))
        band = seam_band(left, (w, h))
        results["pairs"].append({
            "pair": name, "left": Path(left_path).stem, "right": Path(right_path).stem,
            "size": [w, h], "seconds": seconds + hard_seconds,
            "own": own, "other": other, "ratios": [o / x for o, x in zip(own, other)],
            "seam_band": [int(band[0]), int(band[1])], "seam_soft": seam(image, band),
            "seam_hard": seam(hard, band), "seam_photo": seam(images.resize(photo, (w, h)), band)})
    photo, style = load(PROTECT_PHOTO), load(PROTECT_STYLE)
    where = mask("centre.png")
    free, _ = bench.run(photo, [style])
    base = content_distance(ruler_model, free, photo, where)
    results["protect"] = {"photo": Path(PROTECT_PHOTO).stem, "style": Path(PROTECT_STYLE).stem,
                          "unprotected": base, "protected": {}}
    for weight in PROTECT_WEIGHTS[1:2] if quick else PROTECT_WEIGHTS:
        held, _ = bench.run(photo, [style], Regions(protect=where), protect_weight=weight)
        results["protect"]["protected"][f"{weight:g}"] = content_distance(
            ruler_model, held, photo, where)
    return results


def report(r: dict) -> str:
    """The results as the Markdown section of docs/masks.md."""
    def verdict(ok):
        return "**pass**" if ok else "**fail**"

    lines = [f"Measured by `python -m benchmarks.masks`: the real VGG19, {r['size']} px, "
             f"{r['steps']} L-BFGS steps, every other setting its default; the ruler's layers "
             f"{', '.join(r['ruler'])}.", "",
             "| pair (left \\| right style) | half | distance to own style | to the other | "
             "ratio (≤ 0.8) | |", "| --- | --- | --- | --- | --- | --- |"]
    for p in r["pairs"]:
        for side, style, own, other, ratio in zip(("left", "right"), (p["left"], p["right"]),
                                                  p["own"], p["other"], p["ratios"]):
            lines.append(f"| {p['pair']} ({p['left']} \\| {p['right']}) | {side} ({style}) | "
                         f"{own:.4f} | {other:.4f} | {ratio:.3f} | {verdict(ratio <= OWN_MAX)} |")
    lines += ["", "Seam: the steepest column-to-column step inside the soft seam's band (± 2 px) "
              "÷ the image's median column step (≤ 1.5), and its percentile among all columns; "
              "the same band of the result with hard masks and of the photo for comparison.",
              "", "| pair | band (columns) | soft masks | its percentile | hard masks | the "
              "photo | |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in r["pairs"]:
        soft, hard, photo = p["seam_soft"], p["seam_hard"], p["seam_photo"]
        lines.append(f"| {p['pair']} | {p['seam_band'][0]}–{p['seam_band'][1]} | "
                     f"{soft['ratio']:.3f} | {soft['percentile']:.0f} | "
                     f"{hard['ratio']:.3f} (percentile {hard['percentile']:.0f}) | "
                     f"{photo['ratio']:.3f} (percentile {photo['percentile']:.0f}) | "
                     f"{verdict(soft['ratio'] <= SEAM_MAX)} |")
    pr = r["protect"]
    base = pr["unprotected"]
    lines += ["", f"Protect ({pr['photo']} with {pr['style']}, samples/masks/centre.png): content "
              f"distance inside the mask, protected ÷ unprotected (≤ 0.5).", "",
              "| protect_weight | block4_conv2 (the content layer) | block3_conv2 | |",
              "| --- | --- | --- | --- |",
              f"| none | {base['block4_conv2']:.2f} | {base['block3_conv2']:.2f} | |"]
    for weight, d in pr["protected"].items():
        ratio, ratio3 = (d[n] / max(base[n], 1e-30) for n in ("block4_conv2", "block3_conv2"))
        lines.append(f"| {weight} | {d['block4_conv2']:.2f} ({ratio:.3f}) | "
                     f"{d['block3_conv2']:.2f} ({ratio3:.3f}) | {verdict(ratio <= PROTECT_MAX)} |")
    return "\n".join(lines)


def write_doc(section: str) -> None:
    """Replace what stands between the results markers of docs/masks.md."""
    text = DOC.read_text()
    new, found = re.subn(r"(<!-- results -->\n).*?(<!-- /results -->)",
                         lambda m: m.group(1) + section + "\n" + m.group(2), text, flags=re.S)
    if not found:
        raise SystemExit(f"{DOC}: no <!-- results --> … <!-- /results --> markers")
    DOC.write_text(new)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--tiny", action="store_true",
                        help="the tiny random network, one pair: checks that the script runs")
    parser.add_argument("--report-only", action="store_true",
                        help="write docs/masks.md's section again from docs/masks-results.json")
    args = parser.parse_args(argv)
    if args.report_only:
        write_doc(report(json.loads(RESULTS.read_text())))
        return
    from batch_style.engine.painter import Painter
    from batch_style.engine.weights import load_feature_model
    from batch_style.settings import Settings

    stylizer = Painter(tiny=args.tiny).stylizer(Settings())
    ruler = load_feature_model((*RULER, "block4_conv2"), tiny=args.tiny)
    results = measure(Bench(stylizer, args.size, args.steps), ruler, quick=args.tiny)
    section = report(results)
    print(section)
    if not args.tiny:
        RESULTS.write_text(json.dumps(results, indent=1))
        write_doc(section)


if __name__ == "__main__":
    main()
