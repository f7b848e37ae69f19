"""Which arithmetic computes the features here: the precision and the convolutions, by phase."""

from __future__ import annotations

from batch_style.engine import tf_runtime
from batch_style.settings import Settings

# precision "mixed": the share of each scale's steps run with bfloat16 convolutions before the
# float32 polish. A bfloat16 step costs 30-40% of a float32 one here; against targets computed in
# bfloat16, L-BFGS in bfloat16 goes on to ~0.6% above float32's final (tubingen + starry-night,
# 256 px, 500 steps). Of 55/65/75/85%, 75% reached the seed's final objective with the least work
# (docs/benchmarks.md).
MIXED_BULK = 0.75


def family_precision(precision: str, native_bfloat16: bool) -> str:
    """`precision` with "auto" decided by the hardware's family: mixed where bfloat16 is native.
    (autotune.py times the candidates instead where it can.)"""
    if precision != "auto":
        return precision
    return "mixed" if native_bfloat16 else "float32"


def effective_precision(settings: Settings) -> str:
    """settings.precision with "auto" decided by the family of this process's hardware."""
    if settings.precision != "auto":
        return settings.precision
    return family_precision(settings.precision, tf_runtime.native_bfloat16())


def effective_winograd(settings: Settings) -> bool:
    """Whether float32 features are computed by Winograd's algorithm: settings.convolution,
    with "auto" decided by this process's hardware's family (yes on a CPU, no on a GPU)."""
    if settings.convolution != "auto":
        return settings.convolution == "winograd"
    return not tf_runtime.has_gpu()


def phases(precision: str, steps: int, winograd: bool = False) -> list[tuple[str, int]]:
    """(arithmetic of the features (ARITHMETICS), steps) in order, for one scale's budget."""
    float32 = "winograd" if winograd else "float32"
    if precision != "mixed":
        return [(float32 if precision == "float32" else precision, steps)]
    bulk = round(MIXED_BULK * steps)
    return [(p, n) for p, n in (("bfloat16", bulk), (float32, steps - bulk)) if n > 0]
