"""Steps to done by start: the default run from the photo against candidate starts, each judged
by where the tolerance rule stops it and by the independent ruler of benchmarks/masks.py
(docs/benchmarks.md, "Fewer steps to done")."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks import masks
from benchmarks.bench import PAIRS, SAMPLES, machine


def starts(content: np.ndarray, style: np.ndarray) -> dict[str, np.ndarray]:
    """The candidate first pictures: the photo, and the photo with the painting's colours
    (mean and covariance: images.match_colors; per channel: mean and standard deviation)."""
    from batch_style.media import images

    mean, cov = images.color_stats(style)
    own_mean, own_cov = images.color_stats(content)
    scale = np.sqrt(np.diag(cov) / np.maximum(np.diag(own_cov), 1e-12))
    per_channel = np.clip((content - own_mean) * scale + mean, 0.0, 1.0).astype(np.float32)
    return {"content": content, "colour": images.match_colors(content, mean, cov),
            "channels": per_channel}


def judge(ruler, image: np.ndarray, content: np.ndarray, style: np.ndarray) -> dict[str, float]:
    """On the ruler: the style distance to the painting (at the picture's size), the content
    distance to the photo at block4_conv2 and block3_conv2."""
    from batch_style.media import images

    h, w = image.shape[:2]
    target = masks.grams(ruler, images.resize(style, images.fit_size(
        style.shape[1], style.shape[0], max(w, h))))
    return {"ruler_style": masks.gram_distance(masks.grams(ruler, image), target),
            **masks.content_distance(ruler, image, content, np.ones((h, w), np.float32))}


def measure(pair: str, size: int, candidates: list[str], long_steps: int, weights, tiny: bool,
            settings_extra: dict | None = None) -> list[dict]:
    """Each candidate start's default run on `pair`: steps, seconds, objective and terms (float32,
    against the photo), the ruler's distances; with `long_steps`, the terms of a run of that many
    steps from the photo (tolerance 0), the "done" reference."""
    from batch_style.engine.painter import Painter
    from batch_style.engine.weights import load_feature_model
    from batch_style.media import images
    from batch_style.settings import resolve

    # The init each start replaces is the photo: init=content keeps the seed preset's meaning.
    settings = resolve({"size": size, "init": "content", **(settings_extra or {})})
    content, style = (images.load_image(SAMPLES / p, settings.max_pixels) for p in PAIRS[pair])
    stylizer = Painter(weights, tiny=tiny).stylizer(settings)
    ruler = load_feature_model((*masks.RULER, "block4_conv2"), weights, tiny=tiny)
    rows = []
    first = starts(content, style)
    for name in candidates:
        started = time.perf_counter()
        result = stylizer.stylize(content, [style], settings, init=first[name])
        seconds = time.perf_counter() - started
        terms = stylizer.evaluate(result.image, content, [style], settings)
        rows.append({"pair": pair, "start": name, "steps": result.steps, "seconds": seconds,
                     "objective": terms.total, "content": terms.content, "style": terms.style,
                     **judge(ruler, result.image, content, style)})
        print(rows[-1], flush=True)
    if long_steps:
        long = stylizer.stylize(content, [style], settings.replace(steps=long_steps,
                                                                   tolerance=0.0))
        terms = stylizer.evaluate(long.image, content, [style], settings)
        rows.append({"pair": pair, "start": f"content, {long_steps} steps", "steps": long.steps,
                     "seconds": 0.0, "objective": terms.total, "content": terms.content,
                     "style": terms.style, **judge(ruler, long.image, content, style)})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: each start against its pair's first (the photo), as ratios."""
    head = ["pair", "start", "steps", "seconds", "objective", "content term", "style term",
            "ruler style", "ruler content b4c2", "b3c2"]
    lines = [head, ["---"] * len(head)]
    first: dict[str, dict] = {}
    for r in rows:
        ref = first.setdefault(r["pair"], r)

        def rel(key, r=r, ref=ref):
            return f"{r[key]:.4g}" if r is ref else f"{r[key] / ref[key] - 1:+.1%}"

        lines.append([r["pair"], r["start"], str(r["steps"]),
                      f"{r['seconds']:.1f}" if r is ref or not r["seconds"]
                      else f"{r['seconds'] / ref['seconds']:.2f}×",
                      rel("objective"), rel("content"), rel("style"), rel("ruler_style"),
                      rel("block4_conv2"), rel("block3_conv2")])
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.steps", description=__doc__)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=sorted(PAIRS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--starts", nargs="+", default=["content", "colour", "channels"],
                        choices=("content", "colour", "channels"), help="the first is the reference")
    parser.add_argument("--long", type=int, default=0, help="steps of a reference run (0: none)")
    parser.add_argument("--steps", type=int, default=None, help="the step cap (default: settings')")
    parser.add_argument("--out", type=Path, default=Path("bench-results/steps.md"))
    parser.add_argument("--weights", default=None)
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = []
    for pair in args.pairs:
        rows += measure(pair, args.size, args.starts, args.long, args.weights, args.tiny,
                        {} if args.steps is None else {"steps": args.steps})
    text = (f"Measured on {machine()}, {args.size} px, the default settings "
            f"({time.strftime('%Y-%m-%d %H:%M')}).\n\n" + table(rows) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
