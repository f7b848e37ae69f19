"""How far a run is: work done and left per job, and the time left at the run's own pace."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from batch_style.text import duration


@dataclass
class JobProgress:
    """One job's images or frames (videos apart), and their planned work (Unit.cost)."""

    name: str
    done: int = 0
    failed: int = 0
    pending: int = 0
    done_cost: float = 0.0      # planned work of the done units (steps × px², Unit.cost)
    done_seconds: float = 0.0   # the seconds those took
    pending_cost: float = 0.0   # planned work of the pending units

    def finished(self, ok: bool, cost: float, seconds: float) -> None:
        """A unit of this job finished (it was pending, or running)."""
        self.pending = max(self.pending - 1, 0)
        self.pending_cost = max(self.pending_cost - cost, 0.0)
        if ok:
            self.done += 1
            self.done_cost += cost
            self.done_seconds += seconds
        else:
            self.failed += 1


def job_of(key: str) -> str:
    """The job of a unit key ("JOB/STEM", "JOB/STEM/000012")."""
    return key.split("/", 1)[0]


def busy_work(beats: Iterable[Mapping], costs: Mapping[str, float]) -> dict[str, float]:
    """Planned work the busy units have done so far, per job, from their workers' progress
    files (events.busy_workers): the share of their steps done times their cost."""
    work: dict[str, float] = {}
    for beat in beats:
        key = str(beat.get("key"))
        if beat.get("steps") and key in costs:
            fraction = ((beat.get("scale") or 0) + beat["step"] / beat["steps"]) \
                / (beat.get("scales") or 1)
            work[job_of(key)] = work.get(job_of(key), 0.0) + costs[key] * min(fraction, 1.0)
    return work


def seconds_left(jobs: Iterable[JobProgress], busy: Mapping[str, float] | None = None,
                 workers: int = 1) -> float | None:
    """Seconds left: each job's pending work, less what its busy units have done (busy_work),
    at that job's own seconds per unit of work, or at the pace over all jobs for a job with
    nothing done yet; shared among `workers`. None when nothing is pending or nothing is known.

    In planned work rather than units: a run whose first units are its big ones would otherwise
    promise hours for minutes; and with the busy units' steps, it does not grow between one
    unit's end and the next one's.
    """
    jobs = list(jobs)
    busy = busy or {}
    done_cost = sum(j.done_cost for j in jobs)
    if not done_cost or not any(j.pending_cost for j in jobs):
        return None
    overall = sum(j.done_seconds for j in jobs) / done_cost
    total = sum(max(j.pending_cost - busy.get(j.name, 0.0), 0.0)
                * (j.done_seconds / j.done_cost if j.done_cost else overall) for j in jobs)
    return total / max(workers, 1)


def paced_seconds(record: Mapping) -> float:
    """A finished unit's seconds at the pace of its steps: without the loading and compiling a
    worker's first unit spends first (its `warmup`), which the next units do not repeat."""
    return max(float(record.get("seconds") or 0.0) - float(record.get("warmup") or 0.0), 0.0)


def plan_line(total: int, skipped: int, todo: int, videos: int = 0,
              expected: float | None = None) -> str:
    """The run's first line: what it will do and how long that should take. Units are the
    pictures and frames; a video's assembly is counted apart, as `status` and the report do."""
    what = f"{total} unit{'' if total == 1 else 's'} (pictures and frames)"
    if videos:
        what += f" + {videos} video{'' if videos == 1 else 's'} to assemble"
    time = (f"; about {duration(expected)} at this machine's measured pace" if expected
            else "; the time left is shown once steps are timed" if todo else "")
    return f"{what}: {skipped} already done, {todo} to do{time}"


class RunProgress:
    """A run's progress as its events tell it (start, unit_start, unit_done): what the terminal
    display and the live report show. Units are counted per job, in their planned work."""

    def __init__(self):
        self.jobs: dict[str, JobProgress] = {}
        self.costs: dict[str, float] = {}       # unit key → planned work (Unit.cost)
        self.in_flight: dict[str, float] = {}   # unit key → when it was handed to a worker
        self.workers = 1

    def event(self, kind: str, data: Mapping, now: float) -> None:
        if kind == "start":
            # Without costs (a caller that sends none) every unit counts the same, in one job.
            costs = data.get("costs") or {}
            self.costs.update(costs)
            for key, cost in costs.items():
                job = self._job(job_of(key))
                job.pending += 1
                job.pending_cost += cost
            if not costs:
                job = self._job("")
                job.pending += data["todo"]
                job.pending_cost += data["todo"]
            self.workers = max(int(data.get("workers") or 1), 1)
        elif kind == "unit_start":
            self.in_flight[data["key"]] = now
        elif kind == "unit_done":
            key = data["key"]
            self.in_flight.pop(key, None)
            job = self.jobs.get(job_of(key)) or self._job("")
            job.finished(data["status"] == "done", self.costs.get(key, 1.0), paced_seconds(data))

    def _job(self, name: str) -> JobProgress:
        return self.jobs.setdefault(name, JobProgress(name))

    @property
    def done(self) -> int:
        return sum(j.done for j in self.jobs.values())

    @property
    def failed(self) -> int:
        return sum(j.failed for j in self.jobs.values())

    @property
    def total(self) -> int:
        return sum(j.done + j.failed + j.pending for j in self.jobs.values())

    def seconds_left(self, beats: Iterable[Mapping] = ()) -> float | None:
        """seconds_left() of the pending work, the busy units' steps (their beats) counted."""
        busy = [b for b in beats if b.get("key") in self.in_flight]
        return seconds_left(self.jobs.values(), busy_work(busy, self.costs), self.workers)
