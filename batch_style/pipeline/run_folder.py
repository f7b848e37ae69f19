"""The run folder: what a run keeps under OUTPUT, and the rules that keep its writing there."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from batch_style import atomic
from batch_style.errors import UserError

STATE_DIR = ".batch_style"      # OUTPUT/.batch_style: the run's own state
LEDGER_NAME = "ledger.jsonl"    # finished units (ledger.py)
LOCK_NAME = "lock"              # one run per output folder (ledger.RunLock)
EVENTS_NAME = "events.jsonl"    # the event log (events.py)
PLAN_NAME = "plan.json"         # the jobs and units of every manifest run here
WORKERS_DIR = "workers"         # live progress: PID.json per busy worker (events.WorkerBeat)
WORK_DIR = "work"               # work/JOB/STEM/: a video's extracted frames, flow, lead-ins
LOG_NAME = "run.log"            # OUTPUT/run.log
REPORT_NAME = "report.html"     # OUTPUT/report.html
# A job's results go to OUTPUT/JOB, so the run's own files in OUTPUT cannot name a job.
RESERVED_NAMES = frozenset({LOG_NAME, REPORT_NAME})

# Reading state never trusts its size: a plan.json swapped for a huge file (or a link to
# /dev/zero) must not take the machine's memory. The caps are far above real runs: a plan is
# ~0.5 KB a unit, a ledger record ~4 KB (its loss history).
MAX_PLAN_BYTES = 1 << 30
MAX_LEDGER_BYTES = 4 << 30
MAX_SMALL_BYTES = 1 << 16       # a lock holder's or a worker's progress file


def state_dir(out: Path) -> Path:
    return Path(out) / STATE_DIR


def plan_path(out: Path) -> Path:
    return state_dir(out) / PLAN_NAME


def ledger_path(out: Path) -> Path:
    return state_dir(out) / LEDGER_NAME


def lock_path(out: Path) -> Path:
    return state_dir(out) / LOCK_NAME


def events_path(out: Path) -> Path:
    return state_dir(out) / EVENTS_NAME


def workers_dir(out: Path) -> Path:
    return state_dir(out) / WORKERS_DIR


def work_dir(out: Path, job: str, stem: str) -> Path:
    return state_dir(out) / WORK_DIR / job / stem


def log_path(out: Path) -> Path:
    return Path(out) / LOG_NAME


def report_path(out: Path) -> Path:
    return Path(out) / REPORT_NAME


# -- staying inside --------------------------------------------------------------------------
def leads_out(path: Path, root: Path) -> str | None:
    """Where `path` really is when that is outside `root` (through a symbolic link), else None.

    Both are resolved, so an output folder that is itself a link, and links that stay inside
    it, are fine. Parts of `path` that do not exist yet are taken as they are written.
    """
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    return None if os.path.commonpath([real_root, real]) == real_root else real


def owned(out: Path, jobs: Iterable[str]) -> list[tuple[Path, bool, str | None]]:
    """What a run writes under `out`: (path, is a folder, the job it belongs to or None)."""
    out = Path(out)
    return ([(state_dir(out), True, None), (log_path(out), False, None),
             (report_path(out), False, None)]
            + [(out / job, True, job) for job in jobs])


def problems(out: Path, jobs: Iterable[str]) -> list[tuple[Path, str, str | None]]:
    """What in the run's own paths under `out` would make it write elsewhere or block:
    (path, what is wrong, the job it belongs to or None), for every path the run would write
    (its state folder, run.log, report.html and each job's folder) and everything inside them.

    A symbolic link is fine when it stays inside `out`; one that leads out is not, at any depth
    (a link under work/JOB/STEM/ would send frames elsewhere). Anything that is neither a folder
    nor a regular file (a FIFO would block the run, a device would be read) is not either.
    """
    out = Path(out)
    jobs = list(jobs)
    found: list[tuple[Path, str, str | None]] = []
    seen: set[str] = set()

    def job_of(path: Path, default: str | None) -> str | None:
        # .batch_style/work/JOB/… belongs to that job: its problems are shown at its name.
        try:
            parts = path.relative_to(out).parts
        except ValueError:
            return default
        if len(parts) > 2 and parts[:2] == (STATE_DIR, WORK_DIR) and parts[2] in jobs:
            return parts[2]
        return default

    def check(path: Path, folder: bool | None, job: str | None) -> None:
        try:
            info = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            found.append((path, f"cannot be read: {e.strerror}", job_of(path, job)))
            return
        if stat.S_ISLNK(info.st_mode):
            target = leads_out(path, out)
            if target is not None:
                found.append((path, f"is a symbolic link to '{target}', outside the output "
                                    f"folder", job_of(path, job)))
                return
            try:
                info = path.stat()
            except OSError:
                return  # a dangling link inside: writing replaces the link itself
        if stat.S_ISDIR(info.st_mode):
            if folder is False:
                found.append((path, "exists and is a folder, not a file", job_of(path, job)))
                return
            real = os.path.realpath(path)
            if real in seen:
                return
            seen.add(real)
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except OSError as e:
                found.append((path, f"cannot be listed: {e.strerror}", job_of(path, job)))
                return
            for entry in entries:
                check(Path(entry.path), None, job)
        elif folder is True:
            found.append((path, "exists and is not a folder", job_of(path, job)))
        elif not stat.S_ISREG(info.st_mode):
            found.append((path, "is not a regular file (a FIFO, socket or device); remove it",
                          job_of(path, job)))

    for path, folder, job in owned(out, jobs):
        check(path, folder, job)
    return found


def check_inside(out: Path, jobs: Iterable[str]) -> None:
    """Raise UserError for the first of problems(): the run checks again under its lock."""
    found = problems(out, jobs)
    if found:
        path, message, _ = found[0]
        raise UserError(f"{message}; results are written only under '{out}'", file=path)


def sweep_temporaries(out: Path, jobs: Iterable[str]) -> int:
    """Remove what killed writers left in the run's own paths (atomic.clean_temporaries), and
    nowhere else: a user's files beside the run's are not ours to judge."""
    return sum(atomic.clean_temporaries(path, recursive=folder)
               for path, folder, _ in owned(out, jobs) if folder) + \
        atomic.clean_temporaries(Path(out), recursive=False)


# -- plan.json -----------------------------------------------------------------------------------
_NO_RUN = "no batch-style run here (no .batch_style/plan.json); give the `output` folder of a manifest"


def read_plan(out: Path) -> dict:
    """plan.json of the run folder `out`, checked: {"jobs": [...], "units": [...], "videos": [...]}
    with the fields readers rely on. UserError when there is none or it is not one."""
    path = plan_path(out)
    try:
        plan = json.loads(read_capped(path, MAX_PLAN_BYTES, "a run plan"))
        problem = _plan_problem(plan)
    except FileNotFoundError:
        raise UserError(_NO_RUN, file=out) from None
    except ValueError as e:
        problem = str(e)
    if problem:
        raise UserError(f"unreadable run plan ({problem}); run the manifest again to rewrite it",
                        file=path)
    return plan


def _plan_problem(plan) -> str | None:
    if not isinstance(plan, dict):
        return f"expected a mapping, got {type(plan).__name__}"
    fields = {"jobs": ("name",), "units": ("key", "job", "hash", "output", "content"),
              "videos": ("key", "job", "hash")}
    for part, keys in fields.items():
        entries = plan.get(part)
        if not isinstance(entries, list):
            return f"'{part}' is not a list"
        for entry in entries:
            if not isinstance(entry, dict) or \
                    not all(isinstance(entry.get(k), str) for k in keys):
                return f"an entry of '{part}' lacks {', '.join(keys)}"
            if part == "videos" and not isinstance(entry.get("outputs", {}), dict):
                return "a video's 'outputs' is not a mapping"
            if part == "units" and not (isinstance(entry.get("styles"), list) and
                                        all(isinstance(p, str) for p in entry["styles"])):
                return "a unit's 'styles' is not a list of paths"
    return None


def write_plan(out: Path, plan: dict) -> None:
    """Write plan.json for one manifest's run, keeping the jobs other manifests ran into the
    same folder (a job of the same name is this manifest's now), so `status` and the report
    show every job the folder holds."""
    try:
        old = read_plan(out)
    except UserError:
        old = {"jobs": [], "units": [], "videos": []}
    ours = {job["name"] for job in plan["jobs"]}
    kept = {job["name"] for job in old["jobs"]
            if job["name"] not in ours and job.get("manifest") != plan.get("manifest")}
    merged = {**plan}
    for part in ("jobs", "units", "videos"):
        key = "name" if part == "jobs" else "job"
        merged[part] = [e for e in old[part] if e[key] in kept] + plan[part]
    state_dir(out).mkdir(parents=True, exist_ok=True)
    atomic.atomic_write_text(plan_path(out), json.dumps(merged, indent=1))


# -- opening state files -----------------------------------------------------------------------
def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open for a regular file, never blocking: a FIFO where a file is expected would stop
    the run for good (open() waits for a writer), a device would be read without end.

    Raises UserError naming the file when it is anything else than a regular file.
    """
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError("is not a regular file (a FIFO, socket or device); remove it",
                            file=path)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_capped(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; UserError otherwise (FileNotFoundError
    passes through: a missing file is for the caller to judge)."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UserError(f"larger than {max_bytes // 2**20} MB; not {what}", file=path)
    return data
