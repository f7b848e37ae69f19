"""`batch-style status`: done / failed / pending units of a run, from its plan and ledger."""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass, field
from pathlib import Path

from batch_style import ledger
from batch_style.errors import UserError
from batch_style.plan import STATE_DIR


@dataclass
class JobStatus:
    name: str
    done: int = 0
    failed: int = 0
    pending: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RunStatus:
    output: Path
    jobs: list[JobStatus]
    running_pid: int | None
    eta_seconds: float | None

    @property
    def done(self) -> int:
        return sum(j.done for j in self.jobs)

    @property
    def failed(self) -> int:
        return sum(j.failed for j in self.jobs)

    @property
    def pending(self) -> int:
        return sum(j.pending for j in self.jobs)


def running_pid(output: Path) -> int | None:
    """The pid of a run holding the output folder's lock, or None."""
    path = output / STATE_DIR / ledger.LOCK_NAME
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                return int(json.loads(handle.read() or "{}").get("pid", 0)) or -1
            except (ValueError, AttributeError):
                return -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def read_status(output: Path) -> RunStatus:
    plan_file = output / STATE_DIR / "plan.json"
    if not plan_file.exists():
        raise UserError("no batch-style run here (no .batch_style/plan.json); give the "
                        "`output` folder of a manifest", file=output)
    plan = json.loads(plan_file.read_text())
    latest = ledger.Ledger(ledger.ledger_path(output)).latest()
    jobs: dict[str, JobStatus] = {}
    done_seconds: list[float] = []
    for unit in plan["units"] + plan["videos"]:
        job = jobs.setdefault(unit["job"], JobStatus(unit["job"]))
        record = latest.get(unit["key"])
        if record is None or record.get("hash") != unit["hash"]:
            job.pending += 1
            continue
        job.seconds += float(record.get("seconds", 0.0))
        if record["status"] == "done":
            job.done += 1
            if "#video" not in unit["key"]:
                done_seconds.append(float(record.get("seconds", 0.0)))
        else:
            job.failed += 1
            job.failures.append((unit["key"], record.get("error", "failed")))
    pending = sum(j.pending for j in jobs.values())
    eta = (sum(done_seconds) / len(done_seconds) * pending) if done_seconds and pending else None
    return RunStatus(output=output, jobs=list(jobs.values()), running_pid=running_pid(output),
                     eta_seconds=eta)
