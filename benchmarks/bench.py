"""`make bench`: ways of minimizing the same objective, side by side, as a table printed and saved."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PAIRS = {
    "tubingen+starry-night": ("photos/tubingen.jpg", "paintings/starry-night.jpg"),
    "golden_gate+kandinsky": ("photos/golden_gate.jpg", "paintings/kandinsky.jpg"),
    "tubingen+kandinsky": ("photos/tubingen.jpg", "paintings/kandinsky.jpg"),
    # Pairs no setting was tuned on (docs/benchmarks.md, "Fewer steps to done").
    "chelsea+the-scream": ("extra/photos/chelsea.jpg", "extra/paintings/the-scream.jpg"),
    "grace_hopper+woman-with-hat": ("extra/photos/grace_hopper.jpg",
                                    "extra/paintings/woman-with-hat.jpg"),
}
# make bench's pairs: two the defaults were tuned on, two they were not.
BENCH_PAIRS = ("tubingen+starry-night", "golden_gate+kandinsky", "chelsea+the-scream",
               "grace_hopper+woman-with-hat")
# Each method minimizes the same objective (the default weights); only how differs. The first
# method of a run is the reference whose final objective the others race to reach.
METHODS = {
    "seed": {"preset": "seed"},     # the seed's schedule: Adam lr 0.02, 1000 steps, one scale
    "default": {},                  # the project's defaults, whatever they are
    "adam": {"optimizer": "adam", "learning_rate": 0.02, "tolerance": 0.0, "scales": 1,
             "precision": "float32"},
    "lbfgs": {"optimizer": "lbfgs", "tolerance": 0.0, "scales": 1, "precision": "float32"},
    "lbfgs-mixed": {"optimizer": "lbfgs", "tolerance": 0.0, "scales": 1, "precision": "mixed"},
    "lbfgs-bf16": {"optimizer": "lbfgs", "tolerance": 0.0, "scales": 1, "precision": "bfloat16"},
}
OWN_SCHEDULE = {"seed", "default"}  # --steps does not apply to these
LOW_PRECISION = {"bfloat16", "mixed"}  # asked for explicitly; "auto" decides by itself
MATMUL_N = 2048                     # size of the matrix product measured as the machine's peak


@dataclass(frozen=True)
class Measurement:
    pair: str
    method: str
    size: tuple[int, int]
    steps: int
    seconds: float              # optimization wall time (model load and targets excluded)
    seconds_per_step: dict[str, float]  # per precision of the features, after each phase's
                                        # first step (which traces the function)
    objective: float            # the objective (docs/design.md) of the final image, evaluated afresh (fp32)
    checkpoints: dict[int, float]   # objective after N steps
    # The race to the reference's objective: wall time and objective after each step, as the
    # optimizer read it, or, for runs judged by snapshots, as judged_history gives them.
    elapsed: tuple[float, ...]
    history: tuple[float, ...]
    peak_rss_mb: float          # peak resident memory of the measuring process
    model_rss_mb: float         # resident memory once the model and images were loaded
    step_gflop: float           # convolution GFLOP of one step at the final size (direct)
    step_gflop_done: dict[str, float]  # per arithmetic: the GFLOP it performs for that work


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def step_flops(layer_names, size: tuple[int, int], widths=None, winograd: bool = False) -> float:
    """Convolution FLOPs of one step: the truncated VGG19 forward plus the input-gradient backward.

    Each 3×3 convolution costs 2·9·H·W·Cin·Cout FLOPs forward and the same again to carry the
    gradient back to its input (no weight gradients are needed). Pooling and ReLU are ignored.
    With `winograd`, the layers computed by Winograd's F(4×4, 3×3) count the products it does
    instead: 2·36·⌈H/4⌉·⌈W/4⌉·Cin·Cout each way (its transforms, a few % more, are left out).
    """
    from batch_style.engine.model import VGG19_WIDTHS, layers_needed, winograd_pays

    widths = widths or VGG19_WIDTHS
    w, h = size
    channels, total = 3, 0.0
    for name, kind in layers_needed(layer_names):
        if kind == "pool":
            w, h = w // 2, h // 2
            continue
        out = widths[int(name[5]) - 1]
        if winograd and winograd_pays(channels):
            total += 2 * 2 * 36 * -(-w // 4) * -(-h // 4) * channels * out
        else:
            total += 2 * 2 * 9 * w * h * channels * out
        channels = out
    return total


def matmul_gflops(dtype: str = "float32", n: int = MATMUL_N, repeats: int = 5) -> float:
    """The machine's achievable rate: a large matrix product, best of a few."""
    from batch_style.engine.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    product = tf.function(lambda x: tf.matmul(x, x), autograph=False)
    product(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        product(a).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def measure(pair: str, method: str, size: int, steps: int, checkpoints: tuple[int, ...],
            weights: str | None, tiny: bool) -> Measurement:
    """One method on one pair, in this process (main() runs each in a fresh process)."""
    from batch_style.engine.tf_runtime import import_tensorflow

    import_tensorflow()
    from batch_style.engine.model import ARITHMETICS, TINY_WIDTHS
    from batch_style.engine.painter import Painter
    from batch_style.media import images
    from batch_style.settings import resolve

    own = {} if method in OWN_SCHEDULE else {"steps": steps}
    # Snapshots every 5 steps serve the float32 judging of lower-precision methods.
    settings = resolve({"size": size, "snapshot_every": 5, **own, **METHODS[method]})
    reference = resolve({"size": size})  # the objective every method is judged by
    content_path, style_path = (SAMPLES / p for p in PAIRS[pair])
    content = images.load_image(content_path, settings.max_pixels)
    style = images.load_image(style_path, settings.max_pixels)
    layers = settings.content_layers + settings.style_layers
    stylizer = Painter(weights, tiny=tiny).stylizer(settings)
    # Every arithmetic but float32 Conv2D reads its own objective (bfloat16 0.2–1% off, Winograd
    # ~1e-5): those runs are judged by their snapshots, evaluated like the final image.
    judged = {a for a, _ in stylizer.phases(settings, settings.steps)} != {"float32"}
    model_rss = _rss_mb()
    elapsed: list[float] = []
    snapshots: list[tuple[int, float, object]] = []

    def on_progress(event):
        elapsed.append(event.elapsed)
        if event.snapshot is not None and judged:
            snapshots.append((event.step, event.elapsed, event.snapshot))

    result = stylizer.stylize(content, [style], settings, callback=on_progress)
    objective = stylizer.evaluate(result.image, content, [style], reference).total
    per_step, begin = {}, 0
    for arithmetic, n in stylizer.phases(settings, result.steps):  # one scale: the bench's
        times = elapsed[begin:begin + n]
        if len(times) > 1:
            per_step[arithmetic] = (times[-1] - times[0]) / (len(times) - 1)
        begin += n
    history = result.history
    if snapshots:
        # Race with the objectives judged at the snapshots (and the steps between, judged_history).
        checkpoint_values = {step: stylizer.evaluate(image, content, [style], reference).total
                             for step, _, image in snapshots}
        float32 = [ARITHMETICS[a][0] == "float32"
                   for a, n in stylizer.phases(settings, result.steps) for _ in range(n)]
        steps, history = judged_history(result.history, checkpoint_values, float32)
        elapsed = [elapsed[k - 1] for k in steps]
    else:
        checkpoint_values = {n: history[n - 1] for n in range(1, len(history) + 1)}
    h, w = result.image.shape[:2]
    widths = TINY_WIDTHS if tiny else None
    gflop = step_flops(layers, (w, h), widths) / 1e9
    done = {a: step_flops(layers, (w, h), widths, ARITHMETICS[a][1]) / 1e9 for a in per_step}
    return Measurement(pair=pair, method=method, size=(w, h), steps=result.steps,
                       seconds=result.seconds, seconds_per_step=per_step, objective=objective,
                       checkpoints={n: checkpoint_values[n] for n in checkpoints
                                    if n in checkpoint_values},
                       elapsed=tuple(elapsed), history=tuple(history),
                       peak_rss_mb=_rss_mb(), model_rss_mb=model_rss, step_gflop=gflop,
                       step_gflop_done=done)


def judged_history(readings, judged: dict[int, float],
                   float32: list[bool]) -> tuple[list[int], list[float]]:
    """(steps, objectives) to race with, where the run's own readings are not the judged
    objective: `judged` holds it at the snapshot steps (every few); between two, a step whose
    reading was computed in float32 (Winograd's: within ~1e-5 of Conv2D's) counts as its reading
    times the next snapshot's judged / read ratio, so the race is decided to the step. Other
    steps (bfloat16 readings, 0.2–1% off) count only at snapshots. `readings[k - 1]` and
    `float32[k - 1]` are after step k."""
    steps, values, scale = [], [], None
    for k in range(len(readings), 0, -1):  # backwards: the next snapshot's ratio is known
        if k in judged:
            scale = judged[k] / readings[k - 1] if float32[k - 1] else None
            steps.append(k)
            values.append(judged[k])
        elif scale is not None and float32[k - 1]:
            steps.append(k)
            values.append(readings[k - 1] * scale)
        else:
            scale = None  # a phase boundary: no ratio across it
    return steps[::-1], values[::-1]


def _in_child(function, *args):
    return function(*args)


def runnable(methods: list[str], native_bfloat16: bool) -> tuple[list[str], list[str]]:
    """(methods to run, methods skipped): bfloat16 where the hardware only emulates it runs ~7×
    slower than float32 (AMD EPYC with AVX2 only) and would measure the emulation."""
    if native_bfloat16:
        return list(methods), []
    skipped = [m for m in methods if METHODS[m].get("precision") in LOW_PRECISION]
    return [m for m in methods if m not in skipped], skipped


def time_to_reach(m: Measurement, target: float) -> float | None:
    """Seconds until `m` first reached an objective at or below `target`."""
    for t, value in zip(m.elapsed, m.history):
        if value <= target:
            return t
    return None


def _sci(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


_SHORT = {"float32": "fp32", "bfloat16": "bf16", "winograd": "fp32 Winograd"}  # arithmetics


def table(results: list[Measurement], checkpoints: tuple[int, ...],
          peak_gflops: dict[str, float]) -> str:
    """Markdown; a step's GFLOP/s is compared with the matrix product in its own precision,
    counting the FLOPs its arithmetic performs (Winograd: its products, step_flops)."""
    from batch_style.engine.model import ARITHMETICS

    reference = results[0].method
    head = (["pair", "method", "size", "steps", "wall s", "s/step", "GFLOP/s (% of matmul)"]
            + [f"objective@{n}" for n in checkpoints]
            + ["final objective", "peak RSS MB", "MB/Mpx", f"reaches {reference}'s final in",
               "speed-up"])
    rows = [head, ["---"] * len(head)]
    by_key = {(m.pair, m.method): m for m in results}
    for m in results:
        ref = by_key.get((m.pair, reference))
        reach = m.seconds if m.method == reference else (
            time_to_reach(m, ref.objective) if ref is not None else None)
        mpx = m.size[0] * m.size[1] / 1e6
        per_step = ", ".join(f"{t:.3f} {_SHORT[p]}" for p, t in m.seconds_per_step.items())
        rates = ", ".join(
            f"{m.step_gflop_done[p] / t:.0f} {_SHORT[p]} "
            f"({100 * m.step_gflop_done[p] / t / peak_gflops[ARITHMETICS[p][0]]:.0f}%)"
            for p, t in m.seconds_per_step.items() if t > 0)
        rows.append([m.pair, m.method, f"{m.size[0]}×{m.size[1]}", str(m.steps),
                     f"{m.seconds:.1f}", per_step or "—", rates or "—"]
                    + [_sci(m.checkpoints.get(n)) for n in checkpoints]
                    + [_sci(m.objective), f"{m.peak_rss_mb:.0f}",
                       f"{(m.peak_rss_mb - m.model_rss_mb) / mpx:.0f}",
                       "—" if reach is None else f"{reach:.1f} s",
                       "—" if reach is None or ref is None else f"{ref.seconds / reach:.1f}×"])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


@dataclass(frozen=True)
class WholeRun:
    """What a user waits for: one `batch-style stylize` process, start-up and writing included."""
    pair: str
    method: str
    seconds: float
    objective: float    # of the written PNG, evaluated like Measurement.objective
    stopped: str        # why the optimization ended, as the command's output line said


def whole_process(pair: str, method: str, size: int, weights: str | None, tiny: bool,
                  folder: Path) -> tuple[float, Path, str]:
    """Time `batch-style stylize` on one pair as a user would run it (the seed preset, or the
    defaults); (seconds, the result's path, the output line's stop reason)."""
    content, style = (str(SAMPLES / p) for p in PAIRS[pair])
    out = folder / f"{pair}-{method}.png"
    command = [sys.executable, "-m", "batch_style", "stylize", content, style, "-o", str(out),
               "--size", str(size)] + (["--preset", "seed"] if method == "seed" else [])
    command += (["--weights", weights] if weights else []) + (["--tiny"] if tiny else [])
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    line = (done.stdout + done.stderr).strip().splitlines()
    reason = next((part.strip() for text in reversed(line) for part in text.split(",")
                   if "converged" in part or "step cap" in part), "—")
    return seconds, out, reason


def objectives(pairs_and_paths: list[tuple[str, Path]], size: int, weights: str | None,
               tiny: bool) -> list[float]:
    """The objective of each written result, against its pair, with the default weights."""
    from batch_style.engine.painter import Painter
    from batch_style.media import images
    from batch_style.settings import resolve

    reference = resolve({"size": size})
    stylizer = Painter(weights, tiny=tiny).stylizer(reference)
    values = []
    for pair, path in pairs_and_paths:
        content, style = (images.load_image(SAMPLES / p, reference.max_pixels)
                          for p in PAIRS[pair])
        image = images.load_image(path, reference.max_pixels)
        values.append(stylizer.evaluate(image, content, [style], reference).total)
    return values


def whole_table(runs: list[WholeRun]) -> str:
    """Markdown: each pair's whole-process figure against the first method's: the speed-up and
    the objective's difference (the issue's bar: 5× at an objective within 1%)."""
    rows = [["pair", "method", "whole process s", "ended", "objective", "objective vs first",
             "speed-up"], ["---"] * 7]
    first = {}
    for run in runs:
        ref = first.setdefault(run.pair, run)
        rows.append([run.pair, run.method, f"{run.seconds:.1f}", run.stopped,
                     _sci(run.objective), f"{run.objective / ref.objective - 1:+.2%}",
                     f"{ref.seconds / run.seconds:.1f}×"])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def machine() -> str:
    from batch_style.engine.tf_runtime import cpu_features, cpu_model

    return (f"{cpu_model()} ({cpu_features()}), {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")


def whole_runs(args, size: int, context) -> list[WholeRun]:
    """The seed preset and the defaults (those of args.methods), each pair as one process."""
    methods = [m for m in args.methods if m in OWN_SCHEDULE]
    timed = []
    with tempfile.TemporaryDirectory(prefix="bench-whole-") as folder:
        for pair in args.pairs:
            for method in methods:
                timed.append((pair, method, *whole_process(pair, method, size, args.weights,
                                                           args.tiny, Path(folder))))
                print(f"  {pair} / {method}, whole process: {timed[-1][2]:.1f} s",
                      file=sys.stderr)
        with context.Pool(1) as pool:
            values = pool.apply(_in_child, (objectives, [(p, out) for p, _, _, out, _ in timed],
                                            size, args.weights, args.tiny))
    return [WholeRun(pair=p, method=m, seconds=t, objective=v, stopped=why)
            for (p, m, t, _, why), v in zip(timed, values)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="512 px instead of 256")
    parser.add_argument("--size", type=int, default=None, help="longest side, px (default 256)")
    parser.add_argument("--steps", type=int, default=100,
                        help="steps for the adam/lbfgs methods (seed and default keep theirs)")
    parser.add_argument("--pairs", nargs="+", default=list(BENCH_PAIRS), choices=sorted(PAIRS))
    parser.add_argument("--methods", nargs="+", default=["seed", "default"],
                        choices=list(METHODS), help="the first is the reference")
    parser.add_argument("--out", default="bench-results/bench.md", help="table file (markdown)")
    parser.add_argument("--weights", default=None, help="VGG19 weights file")
    parser.add_argument("--no-whole", dest="whole", action="store_false",
                        help="skip the whole-process runs of the seed preset and the defaults")
    parser.add_argument("--no-race", dest="race", action="store_false",
                        help="skip the in-process race: only the whole-process figures")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)
    if not (args.race or args.whole):
        parser.error("--no-race with --no-whole leaves nothing to measure")
    size = args.size or (512 if args.full else 256)
    checkpoints = (20, 50, 100, 200, 500)  # multiples of the snapshot interval
    # Each measurement in a fresh process: peak memory is its own, and no cache or trace of one
    # method helps the next.
    context = multiprocessing.get_context("spawn")
    started = time.strftime("%Y-%m-%d %H:%M")
    from batch_style.engine.tf_runtime import native_bfloat16

    with context.Pool(1) as pool:
        methods, skipped = runnable(args.methods, pool.apply(_in_child, (native_bfloat16,)))
    if not methods:
        parser.error(f"bfloat16 is emulated on this machine: nothing left to run of "
                     f"{' '.join(args.methods)}")
    for method in skipped:
        print(f"  skipped {method}: bfloat16 is emulated on this machine (no AVX-512 BF16 or "
              f"AMX, no Ampere or later GPU)", file=sys.stderr)
    peak = {}
    for dtype in ("float32", "bfloat16"):
        with context.Pool(1) as pool:
            peak[dtype] = pool.apply(_in_child, (matmul_gflops, dtype))
    results = []
    for pair in args.pairs if args.race else ():
        for method in methods:
            with context.Pool(1) as pool:
                results.append(pool.apply(_in_child, (
                    measure, pair, method, size, args.steps, checkpoints, args.weights,
                    args.tiny)))
            m = results[-1]
            print(f"  {pair} / {method}: {m.seconds:.1f} s, objective {m.objective:.4g}",
                  file=sys.stderr)
    whole = whole_runs(args, size, context) if args.whole else []
    race = "" if not results else (
        f"Objective: docs/design.md's, with the default weights, evaluated in float32 on each "
        f"final image; every method starts from the content image.\n"
        f"GFLOP/s counts the convolution FLOPs an arithmetic performs: a direct step "
        f"{results[0].step_gflop:.0f} GFLOP; Winograd's F(4×4, 3×3) does 1/4 of the "
        f"products in its layers.\n"
        + "".join(f"Skipped {m}: bfloat16 is emulated on this machine.\n" for m in skipped)
        + "\n" + table(results, checkpoints, peak) + "\n")
    text = (f"# batch-style bench ({started})\n\nMachine: {machine()}; "
            f"{MATMUL_N}² matrix product: {peak['float32']:.0f} GFLOP/s in float32, "
            f"{peak['bfloat16']:.0f} in bfloat16\n" + race
            + ("\nWhole process (what a user waits for): `batch-style stylize` at "
               f"{size} px, start-up, model load and writing included; the objective of the "
               "written PNG.\n\n" + whole_table(whole) + "\n" if whole else ""))
    print(text)
    out = Path(args.out)
    from batch_style.atomic import atomic_write_text

    atomic_write_text(out, text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
