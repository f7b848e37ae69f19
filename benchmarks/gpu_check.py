"""`make gpu-check`: doctor, a stylization pinned to each GPU, per-step times and GPU memory → markdown."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from batch_style.pipeline.workers import gpus
from batch_style.views import doctor

PAIR = "tubingen+starry-night"
SIZES = (256, 1024)             # longest side, px
PIN_SIZE, PIN_STEPS = 256, 100  # the stylization run on each GPU: the project's settings
# (row, bench method, TF32 on): float32 as workers run it, the same with TensorFlow's default
# TF32 (what the workers turn off: is it worth it?), and mixed precision.
VARIANTS = (("float32", "lbfgs", False), ("float32, TF32 on", "lbfgs", True),
            ("mixed", "lbfgs-mixed", False))
CHILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Pinned:
    """A stylization in a process pinned to one GPU, as a run's worker is."""

    gpu: str                    # what CUDA_VISIBLE_DEVICES said
    device: str = ""            # the device TensorFlow computed on, as it names it
    seconds: float = 0.0
    steps: int = 0
    objective: float = 0.0
    peak_mb: float = 0.0        # peak GPU memory, MiB
    error: str | None = None


@dataclass(frozen=True)
class Timing:
    """One bench measurement (benchmarks.bench.measure) on the first GPU."""

    variant: str                # a row of VARIANTS
    size: tuple[int, int]       # (w, h), px
    seconds_per_step: dict[str, float]  # per arithmetic (bfloat16, float32)
    peak_mb: float = 0.0        # peak GPU memory, MiB
    objective: float = 0.0      # the final image's, evaluated in the same process
    error: str | None = None

    @property
    def megapixels(self) -> float:
        return self.size[0] * self.size[1] / 1e6


# -- the children: each measurement in a fresh process pinned like a worker ----------------------
def _pinned_child(gpu: str, size: int, steps: int, weights: str | None, tiny: bool) -> dict:
    from batch_style.engine.painter import Painter
    from batch_style.engine.tf_runtime import import_tensorflow
    from batch_style.media import images
    from batch_style.settings import resolve
    from benchmarks import bench

    tf = import_tensorflow()
    visible = tf.config.get_visible_devices("GPU")
    if not visible:
        return {"gpu": gpu, "error": "TensorFlow sees no GPU in a process pinned to it"}
    device = tf.config.experimental.get_device_details(visible[0]).get("device_name", "")
    settings = resolve({"size": size, "steps": steps})
    content, style = (images.load_image(bench.SAMPLES / p, settings.max_pixels)
                      for p in bench.PAIRS[PAIR])
    stylizer = Painter(weights, tiny=tiny).stylizer(settings)
    tf.config.experimental.reset_memory_stats("GPU:0")
    result = stylizer.stylize(content, [style], settings)
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return asdict(Pinned(gpu=gpu, device=device, seconds=result.seconds, steps=result.steps,
                         objective=result.losses.total, peak_mb=peak))


def _bench_child(variant: str, size: int, steps: int, weights: str | None, tiny: bool) -> dict:
    from batch_style.engine.tf_runtime import import_tensorflow
    from benchmarks import bench

    _, method, tf32 = next(v for v in VARIANTS if v[0] == variant)
    tf = import_tensorflow()
    tf.config.experimental.enable_tensor_float_32_execution(tf32)
    tf.config.experimental.reset_memory_stats("GPU:0")
    m = bench.measure(PAIR, method, size, steps, (), weights, tiny)
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return asdict(Timing(variant=variant, size=m.size, seconds_per_step=m.seconds_per_step,
                         peak_mb=peak, objective=m.objective))


CHILDREN = {"pinned": _pinned_child, "bench": _bench_child}


def _in_child(kind: str, gpu: str, *args) -> dict:
    """CHILDREN[kind](*args) in a fresh interpreter whose environment pins it to `gpu` before
    TensorFlow loads (gpus.worker_env, as the run's workers get it)."""
    env = {**os.environ, **gpus.worker_env(gpu)}
    try:
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps([kind, *args])],
                              capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {CHILD_TIMEOUT_S} s"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        said = [line for line in done.stderr.splitlines() if line.strip()]
        return {"error": said[-1] if said else f"exit status {done.returncode}"}


# -- the report -----------------------------------------------------------------------------------
def memory_per_megapixel(timings: list[Timing]) -> dict[str, float]:
    """Per variant: the peak GPU memory each further megapixel costs (MiB), from its smallest and
    largest size (the model and the other fixed costs cancel out)."""
    slopes = {}
    for variant, _, _ in VARIANTS:
        done = sorted((t for t in timings if t.variant == variant and t.error is None),
                      key=lambda t: t.megapixels)
        if len(done) >= 2 and done[-1].megapixels > done[0].megapixels:
            slopes[variant] = ((done[-1].peak_mb - done[0].peak_mb)
                               / (done[-1].megapixels - done[0].megapixels))
    return slopes


def _per_step(t: Timing) -> str:
    return ", ".join(f"{s:.4f} {arithmetic}" for arithmetic, s in t.seconds_per_step.items()) \
        or "—"


def render(checkup: str, pinned: list[Pinned], timings: list[Timing], steps: int,
           started: str) -> str:
    """The markdown file: doctor's summary, then one table per measurement."""
    lines = [f"# batch-style gpu-check ({started})", "", "`batch-style doctor`:", "", "```text",
             checkup, "```", "",
             f"## A stylization pinned to each GPU ({PAIR}, {PIN_SIZE} px, {PIN_STEPS} steps, "
             f"the default settings)", "",
             "| GPU | TensorFlow's device | seconds | steps | objective | peak GPU memory |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p in pinned:
        if p.error:
            lines.append(f"| {p.gpu} | failed: {p.error} | — | — | — | — |")
        else:
            lines.append(f"| {p.gpu} | {p.device} | {p.seconds:.1f} | {p.steps} | "
                         f"{p.objective:.4g} | {p.peak_mb:.0f} MiB |")
    lines += ["", f"## Seconds per step ({PAIR}, L-BFGS, {steps} steps, first GPU)", "",
              "| size | precision | s/step | peak GPU memory | MiB per Mpx | final objective |",
              "| --- | --- | --- | --- | --- | --- |"]
    for t in timings:
        if t.error:
            lines.append(f"| {t.size[0]}×{t.size[1]} | {t.variant} | failed: {t.error} | — | — "
                         f"| — |")
            continue
        lines.append(f"| {t.size[0]}×{t.size[1]} | {t.variant} | {_per_step(t)} | "
                     f"{t.peak_mb:.0f} MiB | {t.peak_mb / t.megapixels:.0f} | "
                     f"{t.objective:.4g} |")
    slopes = memory_per_megapixel(timings)
    lines += ["", "## GPU memory per megapixel", "",
              "Each further megapixel (between the smallest and the largest size, so the model "
              "and other fixed costs cancel): "
              + ("; ".join(f"{v}: {s:.0f} MiB" for v, s in slopes.items()) or "not measured")
              + ".", "",
              "The TF32 row is TensorFlow's default on Ampere and later, which batch-style "
              "workers turn off; its objective is evaluated with TF32 on too."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--out", default="bench-results/gpu-check.md", help="the markdown file")
    parser.add_argument("--steps", type=int, default=50, help="L-BFGS steps per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="longest sides, px")
    parser.add_argument("--weights", default=None, help="VGG19 weights file")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *child_args = json.loads(args.child)
        print(json.dumps(CHILDREN[kind](*child_args)))
        return 0
    ids = gpus.visible_gpus()
    if not ids:
        print("gpu-check: no GPU here (nvidia-smi lists none, or CUDA_VISIBLE_DEVICES hides "
              "them); run it on a GPU machine. `batch-style doctor` says what this one offers.",
              file=sys.stderr)
        return 2
    started = time.strftime("%Y-%m-%d %H:%M")
    out = Path(args.out)
    checkup = doctor.examine(out.parent, args.weights)
    print(checkup.text(), file=sys.stderr)
    if checkup.problems:
        print("gpu-check: fix the problems above first", file=sys.stderr)
        return 1
    pinned = []
    for gpu in ids:
        pinned.append(Pinned(**_in_child("pinned", gpu, gpu, PIN_SIZE, PIN_STEPS, args.weights,
                                         args.tiny) | {"gpu": gpu}))
        print(f"  GPU {gpu}: {pinned[-1].error or f'{pinned[-1].seconds:.1f} s'}",
              file=sys.stderr)
    timings = []
    for size in args.sizes:
        for variant, _, _ in VARIANTS:
            found = _in_child("bench", ids[0], variant, size, args.steps, args.weights,
                              args.tiny)
            found.setdefault("variant", variant)
            found.setdefault("size", (size, size))
            found.setdefault("seconds_per_step", {})
            timings.append(Timing(**{**found, "size": tuple(found["size"])}))
            print(f"  {size} px, {variant}: {timings[-1].error or _per_step(timings[-1])}",
                  file=sys.stderr)
    text = render(checkup.text(), pinned, timings, args.steps, started)
    from batch_style.atomic import atomic_write_text

    atomic_write_text(out, text)
    print(text)
    print(f"written to {out}: paste it into the README's Benchmark section", file=sys.stderr)
    return 0 if not any(p.error for p in pinned) else 1


if __name__ == "__main__":
    sys.exit(main())
