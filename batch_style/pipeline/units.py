"""The orchestrator–worker contract: a unit of work, its result, the workers' configuration."""

from __future__ import annotations

import dataclasses
import errno
from dataclasses import dataclass, field
from pathlib import Path

from batch_style.settings import Settings

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left, or over the user's quota


@dataclass(frozen=True)
class Unit:
    """One optimization: a small picklable record of paths and settings."""

    key: str                      # unique in a run: "JOB/STEM" or "JOB/STEM/000012"
    job: str
    content: Path                 # image file (a video frame is extracted to a file first)
    styles: tuple[Path, ...]
    settings: Settings
    output: Path                  # final PNG
    progress_gif: Path | None = None
    init: Path | None = None      # settings.init given as a path
    steps: int | None = None      # overrides settings.steps (video frames after the first)
    previous: str | None = None   # key of the unit this one starts from (video warm start)
    previous_output: Path | None = None
    flow: Path | None = None      # flow file from the previous frame to this one (flow.py)
    # Long-term: (key, output, flow file from it to this one) of earlier frames of its chain
    # before `previous`, nearest first (plan.py; docs/video.md, "Long-term consistency ...").
    earlier: tuple[tuple[str, Path, Path], ...] = ()
    partner: str | None = None    # chunk overlap: key of the next chunk's lead-in of this frame
    partner_output: Path | None = None
    blend: float = 0.0            # how far this frame is handed over to the partner, 0..1
    loop: bool = False            # a frame of a looped video's closing pass (plan.py)
    hash: str = ""                # of inputs and settings: the ledger's "same work" test
    masks: tuple[Path | None, ...] = ()        # per style: its mask on this picture (None: everywhere)
    image_masks: tuple[Path | None, ...] = ()  # per style: its mask on the style image
    masks_move: bool = False      # `masks` are frames of a mask video: a black one hides its style
    protect: Path | None = None   # where the content term is raised (settings.protect_weight)

    @property
    def budget(self) -> int:
        """Its step budget: frame_steps for a frame that starts from the previous one."""
        return self.settings.steps if self.steps is None else self.steps

    @property
    def cost(self) -> float:
        """Planned work, the measure time left is estimated in: steps × (longest side)², as a
        step's time grows with the pixels."""
        return float(max(self.budget, 1)) * float(self.settings.size) ** 2

    @property
    def waits_for(self) -> tuple[str, ...]:
        """Keys of the units whose outputs this one reads."""
        return tuple(k for k in (self.previous, self.partner, *(e[0] for e in self.earlier))
                     if k is not None)

    def afresh(self) -> Unit:
        """This frame not starting from the previous one (a scene cut, or the previous frame
        failed): the full step budget, no warm start, no temporal term towards it. A closing
        pass's frame then is its partner's (the clip does not return to its start)."""
        return dataclasses.replace(self, previous_output=None, steps=None, flow=None, earlier=(),
                                   blend=1.0 if self.loop else self.blend)

    def without(self, key: str) -> Unit:
        """This unit once unit `key` has failed: it must not read a stale file of an older run."""
        unit = self.afresh() if key == self.previous else self
        if any(e[0] == key for e in unit.earlier):
            unit = dataclasses.replace(unit, earlier=tuple(e for e in unit.earlier if e[0] != key))
        return dataclasses.replace(unit, partner_output=None, blend=0.0) \
            if key == self.partner else unit


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker of a run needs to know; picklable."""

    weights: str | None = None          # explicit VGG19 weights file (else resolved)
    tiny: bool = False                  # a tiny random VGG19 (tests only)
    device: str = "auto"                # auto | cpu | gpu
    gpu_ids: tuple[str, ...] = ()       # the GPUs of the run's workers, one each (pools.py)
    state_dir: str | None = None        # OUTPUT/.batch_style: workers' progress files
    workers: int = 1                    # workers of the run on this machine (memory.py)


@dataclass(frozen=True)
class UnitResult:
    """What a unit returns: ok, or why not (failures are data here, and only here)."""

    key: str
    ok: bool
    error: str | None = None            # one line for people
    error_kind: str | None = None       # input | disk-full | io | oom | internal (| crash: orchestrator.py)
    detail: str | None = None           # traceback of an internal error, for the log
    seconds: float = 0.0
    warmup: float = 0.0                 # of those, loading and compiling before the steps' pace
    steps: int = 0
    losses: dict = field(default_factory=dict)
    history: tuple[float, ...] = ()     # total loss per step, subsampled to <= 200 points
    worker: str = ""                    # host:pid
    gpu: str | None = None              # the GPU the unit ran on (None: the CPU)
    cuda_visible_devices: str | None = None  # as the worker's TensorFlow saw it
    tf_loaded_before_pinning: bool | None = None  # True is a bug; None: not a pool worker
    note: str | None = None             # something the operator should know about a done unit
    # What the run resolved `auto` to, and why it ended (the ledger and the report show them):
    precision: str | None = None        # float32 | bfloat16 | mixed
    convolution: str | None = None      # direct | winograd (the float32 steps')
    choice: str | None = None           # why that precision and convolution (autotune.py)
    device: str | None = None           # "cpu" or "gpu:N"
    stopped: str | None = None          # "step cap" | "converged at step N"
