"""`make bench`'s per-step fixed cost: seconds per step by size, steps run one call each against
many to a call (engine/chunked.py), interleaved in one process, and the cost a step pays
whatever its size (the intercept of seconds per step against pixels)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchmarks.bench import PAIRS, SAMPLES, machine

LOOPS = {"one call a step": False, "chunked": True}  # chunked.ENABLED for each


def per_step(stylizer, content, style, settings) -> tuple[float, int, float]:
    """(seconds per step after the first, steps, final objective) of one stylize call."""
    elapsed = []
    result = stylizer.stylize(content, [style], settings, style_keys=["style"],
                              callback=lambda e: elapsed.append(e.elapsed))
    return (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1), result.steps, result.losses.total


def fixed_cost(sizes: list[int], seconds: list[float]) -> float:
    """The intercept of a least-squares line through (pixels, seconds per step)."""
    if len(sizes) < 2:
        return float("nan")
    mean_x, mean_y = statistics.fmean(sizes), statistics.fmean(seconds)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(sizes, seconds))
             / sum((x - mean_x) ** 2 for x in sizes))
    return mean_y - slope * mean_x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fixed_cost", description=__doc__)
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--pair", default="tubingen+starry-night", choices=sorted(PAIRS))
    parser.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="other settings (precision=float32, convolution=direct, ...)")
    parser.add_argument("--out", default="bench-results/fixed-cost.md")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)

    from batch_style.engine import chunked
    from batch_style.engine.painter import Painter
    from batch_style.media import images
    from batch_style.settings import resolve

    extra = dict(item.split("=", 1) for item in args.set)
    base = {"steps": args.steps, "optimizer": args.optimizer, "tolerance": 0.0, "scales": 1,
            "snapshot_every": 10, **extra}
    settings = {size: resolve({**base, "size": size}) for size in args.sizes}
    first = settings[args.sizes[0]]
    content, style = (images.load_image(SAMPLES / p, first.max_pixels) for p in PAIRS[args.pair])
    stylizer = Painter(args.weights, tiny=args.tiny).stylizer(first)
    times: dict[tuple[int, str], list[float]] = {}
    finals: dict[tuple[int, str], float] = {}
    pixels = {}
    for size in args.sizes:  # traced and compiled before anything is timed
        for enabled in LOOPS.values():
            chunked.ENABLED = enabled
            per_step(stylizer, content, style, settings[size])
    for round_ in range(args.rounds):
        for size in args.sizes:
            for loop, enabled in LOOPS.items():
                chunked.ENABLED = enabled
                seconds, steps, final = per_step(stylizer, content, style, settings[size])
                times.setdefault((size, loop), []).append(seconds)
                finals[size, loop] = final
                print(f"  round {round_ + 1}, {size} px, {loop}: {seconds:.4f} s/step "
                      f"({steps} steps)", file=sys.stderr)
    chunked.ENABLED = True
    for size in args.sizes:
        w, h = images.fit_size(content.shape[1], content.shape[0], size)
        pixels[size] = w * h
    median = {key: statistics.median(value) for key, value in times.items()}
    names = list(LOOPS)
    rows = [["size", *(f"{n} s/step" for n in names), "ratio", "same objective"],
            ["---"] * (len(names) + 3)]
    for size in args.sizes:
        w, h = images.fit_size(content.shape[1], content.shape[0], size)
        rows.append([f"{w}×{h}", *(f"{median[size, n]:.4f}" for n in names),
                     f"{median[size, names[1]] / median[size, names[0]]:.2f}",
                     "yes" if finals[size, names[0]] == finals[size, names[1]] else
                     f"{finals[size, names[1]] / finals[size, names[0]] - 1:+.2e}"])
    intercepts = [fixed_cost([pixels[s] for s in args.sizes],
                             [median[s, n] for s in args.sizes]) for n in names]
    rows.append(["fixed cost (intercept)", *(f"{c:.4f}" for c in intercepts),
                 f"{intercepts[1] / intercepts[0]:.2f}" if intercepts[0] > 0 else "—", ""])
    choice = stylizer.choice(first)
    text = (f"# Per-step fixed cost ({time.strftime('%Y-%m-%d %H:%M')})\n\nMachine: {machine()}\n"
            f"{args.pair}, {args.optimizer}, {args.steps} steps, tolerance 0, one scale, "
            f"{choice.convolution} convolutions, {choice.precision}"
            f"{' ' + ' '.join(args.set) if args.set else ''}; seconds per step after the "
            f"first, median of {args.rounds} interleaved rounds; ratio = chunked / one call a "
            f"step.\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n")
    print(text)
    from batch_style.atomic import atomic_write_text

    atomic_write_text(Path(args.out), text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
