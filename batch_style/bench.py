"""`make bench`: optimizers side by side on the same objective, as a table printed and saved."""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PAIRS = {
    "tubingen+starry-night": ("photos/tubingen.jpg", "paintings/starry-night.jpg"),
    "golden_gate+kandinsky": ("photos/golden_gate.jpg", "paintings/kandinsky.jpg"),
    "tubingen+kandinsky": ("photos/tubingen.jpg", "paintings/kandinsky.jpg"),
}
# Each method minimizes the same objective (the default weights); only how differs.
METHODS = {
    "adam": {"optimizer": "adam", "learning_rate": 0.02, "tolerance": 0.0, "scales": 1},
    "lbfgs": {"optimizer": "lbfgs", "tolerance": 0.0, "scales": 1},
}


@dataclass(frozen=True)
class Measurement:
    pair: str
    method: str
    size: tuple[int, int]
    steps: int
    seconds: float              # optimization wall time (model load and targets excluded)
    seconds_per_step: float     # after the first step (which traces the function)
    objective: float            # DESIGN.md's objective of the final image, evaluated afresh
    checkpoints: dict[int, float]   # objective after N steps
    elapsed: tuple[float, ...]  # wall time after each step
    history: tuple[float, ...]  # objective after each step
    peak_rss_mb: float          # peak resident memory of the measuring process
    model_rss_mb: float         # resident memory once the model and images were loaded


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def measure(pair: str, method: str, size: int, steps: int, checkpoints: tuple[int, ...],
            weights: str | None, tiny: bool) -> Measurement:
    """One method on one pair, in this process (bench() runs each in a fresh process)."""
    from batch_style.backend import import_tensorflow

    import_tensorflow()
    from batch_style import media
    from batch_style.model import load_feature_model
    from batch_style.optimize import Stylizer
    from batch_style.settings import resolve

    settings = resolve({"size": size, "steps": steps, **METHODS[method]})
    content_path, style_path = (SAMPLES / p for p in PAIRS[pair])
    content = media.load_image(content_path, settings.max_pixels)
    style = media.load_image(style_path, settings.max_pixels)
    stylizer = Stylizer(load_feature_model(settings.content_layers + settings.style_layers,
                                           weights, tiny=tiny))
    model_rss = _rss_mb()
    elapsed: list[float] = []
    result = stylizer.stylize(content, [style], settings,
                              callback=lambda e: elapsed.append(e.elapsed))
    objective = stylizer.evaluate(result.image, content, [style], settings).total
    per_step = ((elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)) if len(elapsed) > 1 else 0.0
    h, w = result.image.shape[:2]
    return Measurement(pair=pair, method=method, size=(w, h), steps=result.steps,
                       seconds=result.seconds, seconds_per_step=per_step, objective=objective,
                       checkpoints={n: result.history[n - 1] for n in checkpoints
                                    if n <= len(result.history)},
                       elapsed=tuple(elapsed), history=result.history,
                       peak_rss_mb=_rss_mb(), model_rss_mb=model_rss)


def _measure_in_child(args) -> Measurement:
    return measure(*args)


def time_to_reach(m: Measurement, target: float) -> float | None:
    """Seconds until `m` first reached an objective at or below `target`."""
    for t, value in zip(m.elapsed, m.history):
        if value <= target:
            return t
    return None


def _sci(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def table(results: list[Measurement], checkpoints: tuple[int, ...]) -> str:
    head = (["pair", "method", "size", "steps", "wall s", "s/step"]
            + [f"objective@{n}" for n in checkpoints]
            + ["final objective", "peak RSS MB", "model RSS MB", "reaches adam's final in"])
    rows = [head, ["---"] * len(head)]
    finals = {(m.pair, m.method): m.objective for m in results}
    for m in results:
        adam_final = finals.get((m.pair, "adam"))
        reach = (m.seconds if m.method == "adam" else
                 time_to_reach(m, adam_final) if adam_final is not None else None)
        rows.append([m.pair, m.method, f"{m.size[0]}×{m.size[1]}", str(m.steps),
                     f"{m.seconds:.1f}", f"{m.seconds_per_step:.3f}"]
                    + [_sci(m.checkpoints.get(n)) for n in checkpoints]
                    + [_sci(m.objective), f"{m.peak_rss_mb:.0f}", f"{m.model_rss_mb:.0f}",
                       "—" if reach is None else f"{reach:.1f} s"])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch_style.bench", description=__doc__)
    parser.add_argument("--size", type=int, default=256, help="longest side, px")
    parser.add_argument("--steps", type=int, default=100, help="steps per method")
    parser.add_argument("--pairs", nargs="+", default=["tubingen+starry-night"],
                        choices=sorted(PAIRS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=sorted(METHODS))
    parser.add_argument("--out", default="bench-results/bench.md", help="table file (markdown)")
    parser.add_argument("--weights", default=None, help="VGG19 weights file")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)
    checkpoints = tuple(n for n in (25, 50, 100, 200, 500, 1000) if n <= args.steps)
    # Each measurement in a fresh process: peak memory is its own, and no cache or trace of one
    # method helps the next.
    context = multiprocessing.get_context("spawn")
    results = []
    started = time.strftime("%Y-%m-%d %H:%M")
    for pair in args.pairs:
        for method in args.methods:
            with context.Pool(1) as pool:
                results.append(pool.apply(_measure_in_child, ((
                    pair, method, args.size, args.steps, checkpoints, args.weights,
                    args.tiny),)))
            print(f"  measured {pair} / {method}", file=sys.stderr)
    text = (f"# batch-style bench ({started})\n\nMachine: {machine()}\n"
            f"Objective: DESIGN.md's, default weights; same content init for every method.\n\n"
            + table(results, checkpoints) + "\n")
    print(text)
    out = Path(args.out)
    from batch_style.atomic import atomic_write_text

    atomic_write_text(out, text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
