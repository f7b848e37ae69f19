"""The memory a worker may use: the budget its pictures are planned against (engine/schedule.py)."""

from __future__ import annotations

import os

from batch_style.pipeline.workers import gpus
from batch_style.settings import Settings

# By default a CPU worker takes this share of the machine's memory (the workers of a run share
# it), at most RAM_CAP: a night's run leaves the machine usable, and a print's peak stays the
# same on every machine (a 2048-px print then costs ~1.3-2× per step at its last level against
# the whole picture: docs/prints.md). A GPU worker takes this share of its card's, the rest for
# CUDA's own needs and fragmentation.
RAM_SHARE = 0.25
RAM_CAP = 3584 << 20
GPU_SHARE = 0.9


def budget_bytes(settings: Settings, gpu: str | None = None, workers: int = 1) -> int | None:
    """settings.memory_budget, else the default for a worker on `gpu` (None: the CPU) among
    `workers`; None when nothing is known (a GPU nvidia-smi does not describe)."""
    if settings.memory_budget:
        return settings.memory_budget << 20
    if gpu is not None:
        device = gpus.named(gpu, gpus.nvidia_smi() or [])
        return int(device.memory_mib * GPU_SHARE) << 20 if device and device.memory_mib else None
    total = ram_bytes()
    return min(int(total * RAM_SHARE / max(workers, 1)), RAM_CAP) if total else RAM_CAP


def ram_bytes() -> int | None:
    """The machine's memory (Linux and the like), or None."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
