"""What the report shows, read from the run folder: each job's units with their records."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from batch_style.pipeline.state import run_reader


@dataclass
class UnitView:
    key: str
    job: str
    plan: dict              # the unit as plan.json has it
    record: dict | None     # its latest ledger record for these inputs, if any

    @property
    def status(self) -> str:
        return self.record["status"] if self.record else "pending"


@dataclass
class JobView:
    name: str
    plan: dict
    units: list[UnitView] = field(default_factory=list)
    videos: list[UnitView] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Images or frames with this status (videos are counted apart)."""
        return sum(u.status == status for u in self.units)

    @property
    def seconds(self) -> float:
        return sum(float((u.record or {}).get("seconds") or 0) for u in self.units + self.videos)


def load_jobs(output_dir: Path) -> tuple[dict, list[JobView]]:
    """The plan and, per job, its units with their latest ledger records (same inputs only)."""
    folder = run_reader.read(output_dir)
    plan, latest = folder.plan, folder.latest
    jobs = {j["name"]: JobView(j["name"], j) for j in plan["jobs"]}
    # plan.json names files where the run wrote them; the folder may have been moved since.
    root = _planned_root(plan)
    if root is not None and root != output_dir.resolve():
        plan["units"] = [_relocated(u, root, output_dir) for u in plan["units"]]
        plan["videos"] = [_relocated(v, root, output_dir) for v in plan["videos"]]

    def view(entry: dict) -> UnitView:
        # A record for other inputs or settings, or a done one whose outputs are gone, says
        # nothing about this unit: the next run redoes it.
        record = latest.get(entry["key"]) if folder.state(entry) != "pending" else None
        job = jobs.setdefault(entry["job"], JobView(entry["job"], {"name": entry["job"]}))
        return UnitView(entry["key"], job.name, entry, record)

    for entry in plan["units"]:
        unit = view(entry)
        jobs[unit.job].units.append(unit)
    for entry in plan["videos"]:
        if not entry.get("outputs"):
            continue  # neither mp4 nor gif asked for: nothing to assemble, the frames say it all
        unit = view(entry)
        jobs[unit.job].videos.append(unit)
    return plan, list(jobs.values())


# -- small helpers ----------------------------------------------------------------------------
def _planned_root(plan: dict) -> Path | None:
    """The output folder the run wrote into: OUTPUT/JOB/STEM.png is an image unit's output."""
    image_jobs = {j["name"] for j in plan["jobs"] if j.get("kind") != "video"}
    for unit in plan["units"]:
        if unit["job"] in image_jobs:
            return Path(unit["output"]).parents[1]
    for video in plan["videos"]:
        for path in (video.get("outputs") or {}).values():
            return Path(path).parents[1]
    return None


def _relocated(entry: dict, root: Path, output_dir: Path) -> dict:
    """The plan entry with its paths under the run's `root` moved to `output_dir`."""
    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str) and value.startswith(str(root) + os.sep):
            return str(output_dir / Path(value).relative_to(root))
        return value

    return {k: (v if k in ("key", "job", "hash") else move(v)) for k, v in entry.items()}
