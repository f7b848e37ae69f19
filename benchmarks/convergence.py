"""How the stopping rule was chosen: runs stopped by `tolerance` against the full step budget,
and (`--trajectory`) how far the picture still moves along one full run."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.bench import PAIRS, SAMPLES, machine

# (window in steps, tolerance): the rule stops a phase when its objective improved by less than
# `tolerance` of itself over the last `window` steps.
CANDIDATES = ((10, 1e-3), (10, 3e-4), (20, 1e-3), (20, 3e-4), (20, 1e-4))
TRAJECTORY_EVERY = 50  # steps between the trajectory's rows (snapshots are taken every 10)
BLUR_SIGMA = 8  # px: the difference left after this blur is a change of whole regions, not texture


def _blur(image: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageFilter

    blurred = Image.fromarray(np.round(image * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(BLUR_SIGMA))
    return np.asarray(blurred, np.float32) / 255


def trajectory_rows(snapshots: dict[int, np.ndarray], objective: list[float],
                    every: int = TRAJECTORY_EVERY) -> list[str]:
    """Markdown rows: at every `every` steps, the objective, the picture's distance to the last
    snapshot's (mean |difference|, also after a blur, and of the mean colour per channel), its
    change over the 10 steps before, and its edge energy (mean |horizontal difference|); all in
    1/255."""
    last = snapshots[max(snapshots)]
    last_blurred = _blur(last)
    rows = []
    for step in sorted(k for k in snapshots if k % every == 0):
        image = snapshots[step]
        before = snapshots.get(step - 10)
        change = "–" if before is None else f"{np.abs(image - before).mean() * 255:.2f}"
        shift = (last - image).mean(axis=(0, 1)) * 255
        rows.append(
            f"| {step} | {objective[step - 1]:.4e} | {np.abs(last - image).mean() * 255:.2f} "
            f"| {np.abs(last_blurred - _blur(image)).mean() * 255:.2f} "
            f"| {' '.join(f'{c:+.1f}' for c in shift)} | {change} "
            f"| {np.abs(np.diff(image, axis=1)).mean() * 255:.1f} |")
    return rows


def trajectory(model, content, style, settings) -> list[str]:
    """One run to the step cap with tolerance 0, snapshots every 10 steps: trajectory_rows."""
    snapshots, objective = {}, []

    def seen(progress) -> None:
        objective.append(progress.losses.total)
        if progress.snapshot is not None:
            snapshots[progress.step] = progress.snapshot

    model.stylize(content, [style], settings.replace(snapshot_every=10), callback=seen)
    return trajectory_rows(snapshots, objective)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.convergence", description=__doc__)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--candidates", nargs="+", default=[f"{w}:{t:g}" for w, t in CANDIDATES],
                        metavar="WINDOW:TOLERANCE", help="rules to try against the full run")
    parser.add_argument("--trajectory", action="store_true",
                        help="instead: how far the picture moves along one full run")
    parser.add_argument("--out", type=Path, default=Path("bench-results/convergence.md"))
    args = parser.parse_args(argv)

    from batch_style.engine import stylizer as stylizer_module
    from batch_style.engine.painter import Painter
    from batch_style.media import images
    from batch_style.settings import resolve

    base = resolve({"size": args.size, "steps": args.steps, "tolerance": 0.0})
    model = Painter().stylizer(base)
    if args.trajectory:
        return _write(args.out, _trajectories(args, model, base))
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
    return _write(args.out, rows)


def _trajectories(args, model, base) -> list[str]:
    from batch_style.media import images

    rows = [f"Measured on {machine()}, {args.size} px, {args.steps} steps, tolerance 0; "
            f"distances to the step-{args.steps} picture and changes in 1/255; blurred: after a "
            f"Gaussian blur of σ {BLUR_SIGMA} px; colour shift: the last picture's mean R, G, B "
            f"minus this one's; edges: mean |horizontal difference|."]
    for pair in args.pairs:
        content_path, style_path = (SAMPLES / p for p in PAIRS[pair])
        content = images.load_image(content_path, base.max_pixels)
        style = images.load_image(style_path, base.max_pixels)
        rows += ["", f"**{pair}**", "",
                 "| step | objective | to the last | blurred | colour shift | last 10 steps "
                 "| edges |", "| --- | --- | --- | --- | --- | --- | --- |"]
        rows += trajectory(model, content, style, base)
        print("\n".join(rows[-5:]), flush=True)
    return rows


def _write(out: Path, rows: list[str]) -> int:
    text = "\n".join(rows) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
