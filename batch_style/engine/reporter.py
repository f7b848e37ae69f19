"""What a level reports as it goes, and when it stops: the tolerance rule, and above base_size the
look rule (a finer level refines until its picture, seen at base size, would stop looking like
the draft: docs/prints.md, "Coarse to fine")."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from batch_style.engine import chunked
from batch_style.engine.objective import Losses
from batch_style.engine.schedule import Level
from batch_style.media import images

TOLERANCE_WINDOW = chunked.WINDOW  # steps over which `tolerance` measures the improvement
# The look rule: every LOOK_EVERY steps of a finer level its picture is taken down to the base
# level's size and that level's style term evaluated there; past (1 + LOOK_MARGIN) times the first
# finer level's start's, the level stops and keeps the last picture within it. Upsampled and taken
# down again the draft already reads ~2.5× its own term (a blur the ruler barely sees: 1.035×),
# and a level can leave the look within 3 steps (docs/prints.md, "The look rule and the memory
# bound").
LOOK_EVERY = 2
LOOK_MARGIN = 0.1


@dataclass(frozen=True)
class Progress:
    """One step of the optimization, reported to the caller's callback."""

    step: int               # steps done at this scale (1-based)
    steps: int              # step budget at this scale
    scale: int              # 0 = coarsest
    scales: int
    size: tuple[int, int]   # (width, height) at this scale, px
    losses: Losses
    elapsed: float          # seconds since stylize() began
    snapshot: np.ndarray | None  # the current image (HxWx3 float32) every `snapshot_every` steps


class LookWatch:
    """The look rule for the levels above the first: `style_term(image)` of a picture at the
    base size (the base level's objective, its style term), read as a ratio to the draft's and
    judged against the first finer level's start's (the draft upsampled: what refining leaves)."""

    def __init__(self, style_term: Callable[[np.ndarray], float], draft: np.ndarray):
        self.style_term, self.size = style_term, draft.shape[1::-1]
        self.margin, self.every = LOOK_MARGIN, LOOK_EVERY
        self.draft = style_term(draft)
        self.reference: float | None = None  # the first finer level's start's reading
        self.kept, self.left, self.looks = draft, False, []

    def start(self, image: np.ndarray) -> None:
        """A new level starts from `image` (kept; its reading the first of `looks`, which the
        rule does not judge: the start is what the level keeps at worst)."""
        self.kept, self.left, self.looks = image, False, [self.ratio(image)]
        if self.reference is None:
            self.reference = self.looks[0]

    def ratio(self, image: np.ndarray) -> float:
        """The style term of `image` seen at base size, ÷ the draft's."""
        return self.style_term(images.resize(image, self.size)) / max(self.draft, 1e-30)

    def leaves(self, image: np.ndarray) -> bool:
        """Look at `image` (the level's picture now): True when it has left the draft's look;
        else it is kept."""
        ratio = self.ratio(image)
        self.looks.append(ratio)
        self.left = ratio > (self.reference or 1.0) * (1.0 + self.margin)
        if not self.left:
            self.kept = image
        return self.left


class Reporter:
    """Turns each step into a Progress event and applies the stopping rules: the tolerance
    rule, and the look rule where a LookWatch is given."""

    def __init__(self, callback, settings, scale, scales, size, steps, started, color_source,
                 watch: LookWatch | None = None):
        self.callback, self.settings = callback, settings
        self.scale, self.scales, self.size, self.steps = scale, scales, size, steps
        self.started, self.color_source, self.watch = started, color_source, watch
        self.history: list[float] = []
        self.halted = False  # the look rule stopped the level: no phase after this one
        self.phase_start = 0  # where the current precision's readings begin in history

    def new_phase(self) -> None:
        """The readings change precision: the tolerance rule compares within one precision."""
        self.phase_start = len(self.history)

    def looks_at(self, n: int) -> bool:
        """Whether the look rule looks at the picture after step `n`."""
        return self.watch is not None and n % self.watch.every == 0

    def step(self, losses_now: Losses, image_fn: Callable[[], np.ndarray],
             when: float | None = None) -> bool:
        """Record a step (taken at perf_counter() `when`, default now); True when the
        tolerance rule or the look rule says to stop."""
        self.history.append(losses_now.total)
        n = len(self.history)
        if self.callback is not None:
            snapshot = None
            if n % self.settings.snapshot_every == 0 or n == self.steps:
                snapshot = image_fn()
                if self.color_source is not None:
                    snapshot = images.preserve_colors(snapshot, self.color_source)
            self.callback(Progress(step=n, steps=self.steps, scale=self.scale,
                                   scales=self.scales, size=self.size, losses=losses_now,
                                   elapsed=(time.perf_counter() if when is None
                                            else when) - self.started,
                                   snapshot=snapshot))
        if self.looks_at(n) and self.watch.leaves(image_fn()):
            self.halted = True
            return True
        tol = self.settings.tolerance
        if tol > 0 and n - self.phase_start > TOLERANCE_WINDOW:
            before = self.history[-1 - TOLERANCE_WINDOW]
            if before - losses_now.total < tol * abs(before):
                return True
        return False


def ran(level: Level, steps: int, converged: bool, watch: LookWatch | None) -> Level:
    """`level` with what its run did: the steps taken and why it stopped."""
    looked = watch is not None and watch.left
    return dataclasses.replace(
        level, taken=steps, looks=tuple(watch.looks) if watch is not None else (),
        stop="look" if looked else "converged" if converged else "cap")
