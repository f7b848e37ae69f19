"""How the stopping rule was chosen: runs stopped by `tolerance` against the full step budget."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.bench import PAIRS, SAMPLES, machine

# (window in steps, tolerance): the rule stops a phase when its objective improved by less than
# `tolerance` of itself over the last `window` steps.
CANDIDATES = ((10, 1e-3), (10, 3e-4), (20, 1e-3), (20, 3e-4), (20, 1e-4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.convergence", description=__doc__)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--candidates", nargs="+", default=[f"{w}:{t:g}" for w, t in CANDIDATES],
                        metavar="WINDOW:TOLERANCE", help="rules to try against the full run")
    parser.add_argument("--out", type=Path, default=Path("bench-results/convergence.md"))
    args = parser.parse_args(argv)

    from batch_style.engine import stylizer as stylizer_module
    from batch_style.engine.model import load_feature_model
    from batch_style.engine.stylizer import Stylizer
    from batch_style.media import images
    from batch_style.settings import resolve

    base = resolve({"size": args.size, "steps": args.steps, "tolerance": 0.0})
    model = Stylizer(load_feature_model(base.content_layers + base.style_layers))
    rows = [f"Measured on {machine()}, {args.size} px, budget {args.steps} steps; distances of "
            f"the stopped result to the full run's: mean |difference| in 1/255, content and "
            f"style terms (float32) relative.", "",
            "| pair | window | tolerance | steps | seconds | MAD (1/255) | content | style |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for pair in args.pairs:
        content_path, style_path = (SAMPLES / p for p in PAIRS[pair])
        content = images.load_image(content_path, base.max_pixels)
        style = images.load_image(style_path, base.max_pixels)
        started = time.perf_counter()
        full = model.stylize(content, [style], base)
        seconds = time.perf_counter() - started
        reference = model.evaluate(full.image, content, [style], base)
        rows.append(f"| {pair} | – | 0 | {full.steps} | {seconds:.0f} | 0 | – | – |")
        for window, tolerance in ((int(w), float(t)) for w, t in
                                  (c.split(":") for c in args.candidates)):
            stylizer_module.TOLERANCE_WINDOW = window
            started = time.perf_counter()
            stopped = model.stylize(content, [style], base.replace(tolerance=tolerance))
            seconds = time.perf_counter() - started
            terms = model.evaluate(stopped.image, content, [style], base)
            mad = float(np.abs(stopped.image - full.image).mean() * 255)
            rows.append(f"| {pair} | {window} | {tolerance:g} | {stopped.steps} | {seconds:.0f} "
                        f"| {mad:.2f} | {terms.content / reference.content - 1:+.2%} "
                        f"| {terms.style / reference.style - 1:+.2%} |")
            print(rows[-1], flush=True)
    text = "\n".join(rows) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
