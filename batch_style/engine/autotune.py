"""`convolution: auto` and `precision: auto` decided by timing a step of each candidate here.

Which arithmetic is fastest depends on the machine at hand more than on its CPU's family: a
Winograd step was 2.1× faster than a direct one on a 2-core AVX2 EPYC, ~1.3× on an AVX-512 Xeon
(docs/benchmarks.md). So at the first unit of a size bucket a worker times one objective
evaluation (value and gradient) of each candidate: direct and Winograd float32 convolutions, and
bfloat16 where the hardware has it natively. It chooses the smallest expected cost per step and
keeps the figures in the cache folder (autotune.json), keyed by CPU model, TensorFlow version and
size bucket, so later processes only read them. Only the real VGG19 is timed, and only on a CPU:
GPUs keep the rule of their family (cuDNN picks its own algorithms), and the tiny test networks
keep their CPU family's rule, so tests never pay for a measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from batch_style.atomic import atomic_write_text
from batch_style.engine import policy, tf_runtime
from batch_style.engine.cache_dir import cache_folder
from batch_style.engine.model import VGG19_WIDTHS
from batch_style.settings import Settings

CACHE_NAME = "autotune.json"  # in the cache folder (cache_dir.py), beside the converted weights
# Results up to 256 px are timed at 256 px, larger ones at 384 px: a step's cost per pixel has
# about settled there (bigger pictures are made in tiles of about that size, or larger), and the
# first measurement stays under ~15 s (docs/benchmarks.md).
BUCKETS = (256, 512)
TIMED_SIDE = {256: 256, 512: 384}
TIMED_CALLS = 2  # per candidate, after one call that traces and compiles it; the median counts
# The arithmetics timed (model.ARITHMETICS' names) and how the text calls them.
NAMES = {"float32": "direct", "winograd": "winograd", "bfloat16": "bfloat16"}
MAX_CACHE_BYTES = 1 << 20  # autotune.json holds a few lines per machine and TensorFlow version
# A measurement takes ~15 s a bucket; a lock held much longer is a stopped or stuck process.
LOCK_WAIT_SECONDS = 120.0
LOCK_POLL_SECONDS = 0.2

Figures = dict[str, float]  # arithmetic → seconds per objective evaluation


@dataclass(frozen=True)
class Choice:
    """The convolution and precision a unit's steps run with, and why (with the figures)."""

    convolution: str  # direct | winograd (of the float32 steps)
    precision: str    # float32 | bfloat16 | mixed
    reason: str

    @property
    def winograd(self) -> bool:
        return self.convolution == "winograd"

    def __str__(self) -> str:
        return f"{self.convolution} convolutions, {self.precision}: {self.reason}"


# -- the cache ------------------------------------------------------------------------------------
def bucket(longest: int) -> int:
    """The size bucket of a result whose longest side is `longest` px (BUCKETS)."""
    return next((b for b in BUCKETS if longest <= b), BUCKETS[-1])


def timed_size(size_bucket: int) -> tuple[int, int]:
    """(w, h) of the picture a bucket is timed on: 4:3, as most photos are."""
    side = TIMED_SIDE[size_bucket]
    return side, side * 3 // 4


def cache_key(size_bucket: int) -> str:
    return (f"{tf_runtime.cpu_model()} [{tf_runtime.cpu_signature()}] | "
            f"TF {tf_runtime.tf_version()} | {size_bucket} px")


def cache_path() -> Path:
    return cache_folder() / CACHE_NAME


def read_cache(path: Path | None = None) -> dict[str, Figures]:
    """Every key's figures; {} when the file is missing, unreadable or not ours (it is rewritten
    whole at the next measurement)."""
    try:
        fd = _open_regular(path or cache_path(), os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(MAX_CACHE_BYTES + 1))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: {a: float(s) for a, s in figures.items() if a in NAMES
                  and isinstance(s, (int, float)) and s > 0}
            for key, figures in data.items() if isinstance(figures, dict)}


def cached(size_bucket: int, path: Path | None = None) -> Figures:
    """This machine's figures for a bucket ({} where none were measured yet)."""
    return read_cache(path).get(cache_key(size_bucket), {})


def remember(size_bucket: int, figures: Figures, path: Path | None = None) -> None:
    """Keep a bucket's figures (the file written whole, atomically); a cache that cannot be
    written only means measuring again in the next process."""
    path = path or cache_path()
    data = read_cache(path)
    data[cache_key(size_bucket)] = {a: round(s, 4) for a, s in figures.items()}
    try:
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError as e:
        tf_runtime.log.info("autotune: cannot write %s (%s)", path, e)


# -- the choice -----------------------------------------------------------------------------------
def candidates(precision: str, convolution: str, native_bfloat16: bool) -> list[str]:
    """The arithmetics a choice needs timed ([] where the settings leave nothing to choose):
    both float32 convolutions where `convolution` is auto, and bfloat16 where `precision` is auto
    and bfloat16 is native (else mixed cannot pay: emulated bfloat16 is slower than float32)."""
    if precision == "bfloat16":
        return []  # bfloat16 steps always convolve directly (model.py)
    floats = [a for a in ("float32", "winograd") if convolution in ("auto", NAMES[a])]
    mixed = precision == "auto" and native_bfloat16
    return floats + ["bfloat16"] if mixed else floats if len(floats) > 1 else []


def decide(figures: Figures, precision: str, convolution: str, native_bfloat16: bool,
           where: str = "") -> Choice:
    """The choice for these settings given the figures (seconds per evaluation by arithmetic):
    the smallest expected cost per step, mixed's being MIXED_BULK of a bfloat16 step and the rest
    of the best float32 one. `where` says where the figures were measured."""
    if precision == "bfloat16":
        chosen = "direct" if convolution == "auto" else convolution
        return Choice(chosen, precision, "bfloat16 (as set), whose convolutions are direct")
    floats = [a for a in ("float32", "winograd") if convolution in ("auto", NAMES[a])]
    best = min(floats, key=lambda a: figures[a]) if len(floats) > 1 else floats[0]
    reasons = [_ranked({NAMES[a]: figures[a] for a in floats}) if len(floats) > 1
               else f"{convolution} (as set)"]
    chosen = precision
    if precision != "auto":
        reasons.append(f"{precision} (as set)")
    elif not native_bfloat16:
        chosen = "float32"
        reasons.append("float32 (no native bfloat16)")
    else:
        mixed = policy.MIXED_BULK * figures["bfloat16"] + (1 - policy.MIXED_BULK) * figures[best]
        chosen = "mixed" if mixed < figures[best] else "float32"
        reasons.append(_ranked({"mixed": mixed, "float32": figures[best]})
                       + f" (bfloat16 {figures['bfloat16']:.2f} s/step for "
                       f"{policy.MIXED_BULK:.0%} of the steps)")
    return Choice(NAMES[best], chosen, "; ".join(reasons + ([where] if where else [])))


def _ranked(costs: dict[str, float]) -> str:
    """`winograd 0.36 s/step < direct 0.46 s`: the candidates, cheapest first."""
    order = sorted(costs, key=costs.__getitem__)
    return " < ".join(f"{name} {costs[name]:.2f} s" + ("/step" if i == 0 else "")
                      for i, name in enumerate(order))


def family_choice(settings: Settings, why: str, winograd_pays: bool = True) -> Choice:
    """Not measured: the rule of the hardware's family (policy.effective_*)."""
    winograd = winograd_pays and policy.effective_winograd(settings)
    return Choice("winograd" if winograd else "direct", policy.effective_precision(settings),
                  why)


def choose(settings: Settings, longest: int, timer: Callable[[str, tuple[int, int]], Callable],
           model, path: Path | None = None) -> Choice:
    """The convolution and precision for a result `longest` px wide on `model` (a FeatureModel),
    timing what is not cached.

    `timer(arithmetic, size)` makes a call of one objective evaluation on a picture of `size`
    (traced and compiled by then). Only the real VGG19 is timed; explicit settings never are."""
    native = tf_runtime.native_bfloat16()
    needed = candidates(settings.precision, settings.convolution, native)
    if needed and tf_runtime.has_gpu():
        return family_choice(settings, "not measured on a GPU: the rule of its family (direct "
                                       "convolutions, as cuDNN picks its own algorithm; mixed "
                                       "precision where it has bfloat16 tensor cores)")
    if needed and not is_vgg19(model.widths):
        return family_choice(settings, "not measured (test network): the rule of the CPU's "
                                       "family", model.winograd_differs)
    if not needed:
        return decide({}, settings.precision, settings.convolution, native)
    size_bucket = bucket(longest)
    size = timed_size(size_bucket)
    figures = cached(size_bucket, path)  # no lock to read: figures once written stay whole
    missing = [a for a in needed if a not in figures]
    if missing:
        with _one_measurer(path or cache_path()) as alone:  # workers starting together
            if not alone:
                return family_choice(settings, f"not measured: another process held the "
                                               f"autotune lock for {LOCK_WAIT_SECONDS:g} s; "
                                               f"the rule of the CPU's family")
            figures = cached(size_bucket, path)  # the process we waited for may have measured
            missing = [a for a in needed if a not in figures]
            if missing:
                figures = {**figures, **measure({a: timer(a, size) for a in missing})}
                remember(size_bucket, figures, path)
    return decide(figures, settings.precision, settings.convolution, native,
                  where(size) + ("" if missing else " (cached)"))


def preview(settings: Settings, longest: int, *, test_network: bool = False,
            gpu: bool = False, path: Path | None = None) -> str:
    """What the first unit of a result `longest` px wide will choose, for `run --dry-run`, which
    does not load TensorFlow: the choice from this machine's cached figures, or that they are
    yet to be measured."""
    native = tf_runtime.cpu_bfloat16()
    needed = candidates(settings.precision, settings.convolution, native)
    if needed and gpu:
        return ("auto on a GPU, not measured: direct convolutions (cuDNN picks its algorithm), "
                "mixed precision where the GPU has bfloat16 tensor cores, else float32")
    if needed and test_network:  # the tiny network: no layer where Winograd pays
        convolution = "direct" if settings.convolution == "auto" else settings.convolution
        return str(Choice(convolution, policy.family_precision(settings.precision, native),
                          "not measured (test network): the rule of the CPU's family"))
    if not needed:
        return str(decide({}, settings.precision, settings.convolution, native))
    size = timed_size(bucket(longest))
    figures = cached(bucket(longest), path)
    if any(a not in figures for a in needed):
        return (f"auto: measured at the first unit (not yet timed on this machine on a "
                f"{size[0]}×{size[1]} px sample)")
    return str(decide(figures, settings.precision, settings.convolution, native,
                      where(size) + " (cached)"))


@contextlib.contextmanager
def _one_measurer(path: Path) -> Iterator[bool]:
    """Hold a lock beside the cache while measuring: CPU workers that start together would time
    each other's work. Yields True once this process holds it (or where there is no lock: no
    fcntl, a read-only folder; each measures then, as before), False when another process held
    it for LOCK_WAIT_SECONDS (one suspended with Ctrl-Z would hold it for good); the wait is
    announced in one line."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_regular(path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    except (ImportError, OSError):
        yield True
        return
    try:
        waited = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waited == 0.0:
                    tf_runtime.log.warning(
                        "autotune: another process is measuring this machine (%s held); "
                        "waiting up to %g s for its figures", path.with_suffix(".lock"),
                        LOCK_WAIT_SECONDS)
                if waited >= LOCK_WAIT_SECONDS:
                    tf_runtime.log.warning("autotune: %s still held after %g s: not measured, "
                                           "the rule of the CPU's family instead",
                                           path.with_suffix(".lock"), LOCK_WAIT_SECONDS)
                    yield False
                    return
                time.sleep(LOCK_POLL_SECONDS)
                waited += LOCK_POLL_SECONDS
        yield True
    finally:
        os.close(fd)


def _open_regular(path: Path, flags: int) -> int:
    """os.open for a regular file only, never blocking: a FIFO at the cache's name would hang
    every stylize, `run --dry-run` and `doctor` on open() (OSError otherwise)."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


def where(size: tuple[int, int]) -> str:
    # The sample's size, said as such: it is not the result's (which may be larger).
    return (f"timed on a {size[0]}×{size[1]} px sample on {tf_runtime.cpu_model()}, "
            f"TF {tf_runtime.tf_version()}")


def expected_seconds(work: list[tuple[int, float]], path: Path | None = None) -> float | None:
    """Seconds this machine's CPU should take for units of (longest side, Unit.cost: steps ×
    side²): the faster float32 convolution's cached time per step (mixed precision, where it
    is chosen, only shortens it), scaled by the pixels; None where a size was never timed here
    (the first unit times it)."""
    figures = read_cache(path)
    total = 0.0
    for side, cost in work:
        size_bucket = bucket(side)
        floats = [s for a, s in figures.get(cache_key(size_bucket), {}).items() if a != "bfloat16"]
        if not floats:
            return None
        total += cost * min(floats) / TIMED_SIDE[size_bucket] ** 2
    return total if work else None


def measure(calls: dict[str, Callable]) -> Figures:
    """Seconds per call of each, the median of TIMED_CALLS taken in turns (a shared machine's
    speed drifts: each candidate sees the same drift)."""
    times: dict[str, list[float]] = {a: [] for a in calls}
    for _ in range(TIMED_CALLS):
        for arithmetic, call in calls.items():
            started = time.perf_counter()
            call()
            times[arithmetic].append(time.perf_counter() - started)
    return {a: statistics.median(t) for a, t in times.items()}


def is_vgg19(widths) -> bool:
    """Whether a model of these layer widths is the real VGG19 (the only one worth timing)."""
    return tuple(widths) == VGG19_WIDTHS
