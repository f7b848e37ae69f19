"""Units to workers: each once the units it reads are done, results handed on as they come, a
unit whose worker died tried again in a fresh one."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

from batch_style.pipeline.units import Unit, UnitResult
from batch_style.pipeline.workers.pools import WorkerDied

log = logging.getLogger("batch_style")

Gate = Callable[[Unit], tuple[Unit, "cf.Future | None"]]


class _Order:
    """Which units are ready: a video frame waits for the units it reads (the frame it starts
    from, a chunk's lead-in it hands over to)."""

    def __init__(self, todo: list[Unit]):
        self.waiting: dict[str, Unit] = {}           # key → a unit waiting for others
        self.remaining: dict[str, int] = {}          # key → how many it still waits for
        self.waiting_on: dict[str, list[str]] = {}   # key → keys of the units waiting for it
        self.ready: deque[Unit] = deque()
        keys = {u.key for u in todo}
        for unit in todo:
            needs = [k for k in unit.waits_for if k in keys]
            if needs:
                self.waiting[unit.key], self.remaining[unit.key] = unit, len(needs)
                for key in needs:
                    self.waiting_on.setdefault(key, []).append(unit.key)
            else:
                self.ready.append(unit)

    def release(self, unit: Unit, ok: bool) -> None:
        """`unit` finished: the units waiting for it go first, so a video's chain keeps moving.
        When it failed, they do without it (Unit.without), not from a stale file of an older run."""
        freed = []
        for key in self.waiting_on.pop(unit.key, []):
            follower = self.waiting[key] if ok else self.waiting[key].without(unit.key)
            self.remaining[key] -= 1
            if self.remaining[key]:
                self.waiting[key] = follower
            else:
                del self.waiting[key], self.remaining[key]
                freed.append(follower)
        self.ready.extendleft(reversed(freed))


def run(todo: list[Unit], capacity: int, new_executor: Callable[[], cf.Executor],
        submit: Callable[[cf.Executor, Unit], cf.Future],
        started: Callable[[Unit, int], None],
        finished: Callable[[Unit, UnitResult, int], bool],
        gate: Gate | None = None, max_attempts: int = 3) -> None:
    """Run `todo`, at most `capacity` units at a time, in executors made by `new_executor`.

    `submit(executor, unit)` hands a unit over; `started(unit, attempt)` and `finished(unit,
    result, attempt)` are told of each; `finished` returns True to stop the run (a full disk).
    `gate(unit)` may hold a ready unit back until a future is done (its flow file) or change
    it. A unit whose worker died is tried again until it has had `max_attempts`. Attempts are
    counted per run: an interrupted run leaves no count behind.
    """
    if not todo:
        return
    order = _Order(todo)
    gated: dict[cf.Future, list[Unit]] = {}  # units waiting for a gate's future
    attempts: dict[str, int] = {}
    in_flight: dict[cf.Future, Unit] = {}

    def died(unit: Unit, why: str) -> bool:
        # Its worker died while running it: tried again in a fresh worker until max_attempts.
        if attempts[unit.key] >= max_attempts:
            result = UnitResult(key=unit.key, ok=False, error_kind="crash",
                                error=f"its worker died {attempts[unit.key]} times ({why})")
            order.release(unit, ok=False)
            return finished(unit, result, attempts[unit.key])
        log.warning("%s: its worker died; retrying (%s)", unit.key, why)
        order.ready.appendleft(unit)
        return False

    executor = new_executor()
    try:
        while order.ready or in_flight or gated:
            lost: list[Unit] = []
            while order.ready and len(in_flight) < capacity and not lost:
                unit = order.ready.popleft()
                if gate is not None:
                    unit, pending = gate(unit)
                    if pending is not None:
                        gated.setdefault(pending, []).append(unit)
                        continue
                attempts[unit.key] = attempts.get(unit.key, 0) + 1
                started(unit, attempts[unit.key])
                try:
                    in_flight[submit(executor, unit)] = unit
                except BrokenProcessPool:
                    lost.append(unit)  # a worker died since the last wait
            if (in_flight or gated) and not lost:
                done, _ = cf.wait([*in_flight, *gated], return_when=cf.FIRST_COMPLETED)
                for future in done:
                    if future in gated:
                        order.ready.extendleft(reversed(gated.pop(future)))
                        continue
                    unit = in_flight.pop(future)
                    error = future.exception()
                    if isinstance(error, WorkerDied):  # its own worker: no other unit is charged
                        if died(unit, str(error)):
                            return
                        continue
                    if isinstance(error, BrokenProcessPool):  # loky's subclass it too
                        lost.append(unit)
                        continue
                    result = future.result() if error is None else _internal_error(unit, error)
                    order.release(unit, result.ok)
                    if finished(unit, result, attempts[unit.key]):
                        return
            if lost:
                # The executor broke (a lost Dask scheduler; a pool that does not say whose worker
                # died): every unit in it is lost, each is charged an attempt and tried again in
                # a fresh executor until it has had max_attempts.
                lost.extend(in_flight.values())
                in_flight.clear()
                executor.shutdown(wait=True, kill_workers=True)
                executor = new_executor()
                for unit in reversed(lost):
                    if died(unit, "killed, or out of memory"):
                        return
    finally:
        executor.shutdown(wait=False, kill_workers=True)


def _internal_error(unit: Unit, error: BaseException) -> UnitResult:
    """run_unit raised: a bug of ours. The unit fails with the traceback in the log; the run goes
    on. Ctrl-C and the like are not failures of the unit: they stop the run."""
    if not isinstance(error, Exception):
        raise error
    return UnitResult(key=unit.key, ok=False, error_kind="internal",
                      error=f"internal error: {type(error).__name__}: {error}".splitlines()[0],
                      detail="".join(traceback.format_exception(error)))
