"""`batch-style status`: done / failed / pending units of a run, from its plan and ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batch_style.pipeline.state import events, run_reader
from batch_style.pipeline.state.progress import JobProgress, busy_work, paced_seconds, seconds_left
from batch_style.pipeline.state.run_lock import running_pid


@dataclass
class JobStatus(JobProgress):
    """A job's units (pictures and frames), and its videos to assemble counted apart (as `run`
    and the report count them)."""

    videos: int = 0                 # videos to assemble (an mp4 or gif asked for)
    videos_done: int = 0
    videos_failed: int = 0
    seconds: float = 0.0            # time spent in this job's units and video assembly
    failures: list[tuple[str, str]] = field(default_factory=list)   # (key, why)


@dataclass
class RunStatus:
    output: Path
    jobs: list[JobStatus]
    running_pid: int | None
    eta_seconds: float | None
    workers: list[dict] = field(default_factory=list)  # busy workers' progress, while running
    started: float | None = None    # unix time the first finished unit started
    updated: float | None = None    # unix time of the latest ledger record

    @property
    def done(self) -> int:
        return sum(j.done for j in self.jobs)

    @property
    def failed(self) -> int:
        return sum(j.failed for j in self.jobs)

    @property
    def pending(self) -> int:
        return sum(j.pending for j in self.jobs)

    @property
    def videos(self) -> int:
        return sum(j.videos for j in self.jobs)

    @property
    def videos_done(self) -> int:
        return sum(j.videos_done for j in self.jobs)

    @property
    def videos_left(self) -> int:
        """Videos neither assembled nor failed: a run of the manifest assembles them."""
        return sum(j.videos - j.videos_done - j.videos_failed for j in self.jobs)


def read_status(output: Path) -> RunStatus:
    """Counts per job from the plan and the ledger; works during a run and after it."""
    folder = run_reader.read(output)
    plan, latest = folder.plan, folder.latest
    entries = plan["units"] + [v for v in plan["videos"] if v.get("outputs")]
    jobs: dict[str, JobStatus] = {j["name"]: JobStatus(j["name"]) for j in plan.get("jobs", [])}
    times: list[tuple[float, float]] = []   # (started, finished) of each record
    costs: dict[str, float] = {}            # unit key → planned work
    # A video with neither mp4 nor gif asked for has nothing to assemble: its frames say it all.
    for unit in entries:
        job = jobs.setdefault(unit["job"], JobStatus(unit["job"]))
        is_video = "#video" in unit["key"]
        # Unit.cost; a plan written before units had one is estimated per unit.
        cost = 0.0 if is_video else float(unit.get("cost", 1.0))
        record = latest.get(unit["key"])
        costs[unit["key"]] = cost
        job.videos += is_video
        if folder.state(unit) == "pending":
            job.pending += not is_video
            job.pending_cost += cost
            continue
        seconds = float(record.get("seconds") or 0.0)
        job.seconds += seconds
        times.append((record["time"] - seconds, record["time"]))
        if is_video:
            job.videos_done += record["status"] == "done"
            job.videos_failed += record["status"] != "done"
        elif record["status"] == "done":
            job.done += 1
            job.done_seconds += paced_seconds(record)
            job.done_cost += cost
        else:
            job.failed += 1
        if record["status"] != "done":
            job.failures.append((unit["key"], record.get("error", "failed")))
    pid = running_pid(output)
    workers = events.busy_workers(output) if pid else []
    left = seconds_left(jobs.values(), busy_work(workers, costs), max(len(workers), 1))
    return RunStatus(output=output, jobs=list(jobs.values()), running_pid=pid, eta_seconds=left,
                     workers=workers, started=min((t[0] for t in times), default=None),
                     updated=max((t[1] for t in times), default=None))
