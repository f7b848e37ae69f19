"""Optimizer steps run in chunks: many steps in one traced call, reported to Python afterwards.

One call runs steps until the chunk's length, the budget, a snapshot step or the tolerance rule
stops it, keeping the optimizer's state on the device and every step's objective in arrays; the
reporter then sees each step in order (the same events, the bar and progress files updated after
each chunk, a chunk kept to ~CHUNK_SECONDS). The tolerance rule is evaluated inside, in float64
on the float32 readings, as reporter.Reporter does, so a run stops at the same step (docs/benchmarks.md,
"The fixed cost of a step", for what it saves).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from batch_style.engine.objective import Losses, losses_of

ENABLED = True  # False: the step-by-step loops (the bench flips it to measure both in one run)
CHUNK_SECONDS = 0.5  # a chunk's target length: the bar and progress files update at least 1/s
MAX_CHUNK = 64  # steps in one call at most
WINDOW = 10  # steps over which `tolerance` measures the relative improvement


def used_for(objective) -> bool:
    """Chunks where the objective is traced whole (not tiled: its tiles run eagerly)."""
    return ENABLED and getattr(objective, "chunked", False)


class Tolerance(NamedTuple):
    """The tolerance rule's state inside a chunk: the last WINDOW readings of this precision
    (float64, oldest first) and how many readings this precision has had."""

    window: tf.Tensor
    seen: tf.Tensor

    @staticmethod
    def of(report) -> Tolerance:
        readings = report.history[report.phase_start:][-WINDOW:]
        padded = [np.nan] * (WINDOW - len(readings)) + list(readings)
        return Tolerance(tf.constant(padded, tf.float64),
                         tf.constant(len(report.history) - report.phase_start))

    def read(self, total, tolerance):
        """(converged, the state after the reading `total`): Reporter.step's rule."""
        total = tf.cast(total, tf.float64)
        seen = self.seen + 1
        before = self.window[0]
        converged = tf.logical_and(
            tf.logical_and(tolerance > 0.0, seen > WINDOW),
            before - total < tolerance * tf.abs(before))
        return converged, Tolerance(tf.concat([self.window[1:], [total]], 0), seen)


def next_snapshot(report, n: int) -> int | None:
    """The first step after `n` at which `report` (reporter.Reporter) reads the image: its
    callback's every settings.snapshot_every steps and the level's last, or the look rule's
    (None: neither)."""
    due = []
    if report.callback is not None:
        following = (n // report.settings.snapshot_every + 1) * report.settings.snapshot_every
        due.append(min(following, report.steps) if n < report.steps else following)
    if report.watch is not None:
        due.append((n // report.watch.every + 1) * report.watch.every)
    return min(due) if due else None


class Clock:
    """The length of the next chunk: what fits in CHUNK_SECONDS at the last chunk's pace, cut at
    the next snapshot step and at the budget."""

    def __init__(self):
        self.per_step: float | None = None  # None until a chunk after the first (traced) one

    def limit(self, report, n: int, end: int) -> int:
        length = 1 if self.per_step is None else int(CHUNK_SECONDS / max(self.per_step, 1e-6))
        length = min(max(length, 1), MAX_CHUNK, end - n)
        snapshot = next_snapshot(report, n)
        return length if snapshot is None else max(1, min(length, snapshot - n))

    def ran(self, steps: int, seconds: float, first: bool) -> None:
        if not first and steps:
            self.per_step = seconds / steps


def replay(report, totals, terms, steps: int, image_fn, started: float,
           finished: float) -> Losses | None:
    """Report a chunk's `steps` steps in order, their times spread over the chunk; the last
    step's image is `image_fn()` (chunks end where a snapshot is due). Returns the last losses."""
    totals, terms = totals.numpy(), terms.numpy()
    last = None

    def no_image():
        raise RuntimeError("a snapshot fell inside a chunk")

    for i in range(steps):
        last = losses_of(totals[i], terms[i])
        report.step(last, image_fn if i == steps - 1 else no_image,
                    when=started + (finished - started) * (i + 1) / steps)
    return last


def run(chunk, report, clock: Clock, n: int, end: int, state, image_of, *args):
    """Chunks of `chunk(state, end, limit, *args)` until its state says done; returns the last
    state, n and the last step's losses. `image_of(state)` is the image a snapshot shows."""
    first, last = True, None
    while not bool(state.done):
        limit = clock.limit(report, n, end)
        started = time.perf_counter()
        state, totals, terms = chunk(state, tf.constant(end), tf.constant(limit), *args)
        steps = int(state.n) - n
        finished = time.perf_counter()
        last = replay(report, totals, terms, steps, lambda s=state: image_of(s), started,
                      finished) or last
        clock.ran(steps, finished - started, first)
        n, first = n + steps, False
        if report.halted:  # the look rule (the tolerance rule ends a chunk by itself)
            break
    return state, n, last
