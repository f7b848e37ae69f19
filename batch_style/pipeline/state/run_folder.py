"""The run folder: where a run keeps what under OUTPUT, its plan, and when a unit is done."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from batch_style import atomic
from batch_style.errors import UserError
from batch_style.media.sequence import stem as video_stem
from batch_style.pipeline.state import safe_files

if TYPE_CHECKING:
    from batch_style.pipeline.jobs import Job

STATE_DIR = ".batch_style"      # OUTPUT/.batch_style: the run's own state
LEDGER_NAME = "ledger.jsonl"    # finished units (ledger.py)
LOCK_NAME = "lock"              # one run per output folder (run_lock.py)
EVENTS_NAME = "events.jsonl"    # the event log (events.py)
PLAN_NAME = "plan.json"         # the jobs and units of every manifest run here
WORKERS_DIR = "workers"         # live progress: PID.json per busy worker (events.WorkerBeat)
SNAPSHOTS_DIR = "snapshots"     # PID.jpg: a busy worker's latest picture (snapshots.py)
WORK_DIR = "work"               # work/JOB/STEM/: a video's extracted frames, flow, lead-ins
SCRATCH_DIR = "scratch"         # the workers' temporary files (pools.WorkerPools), while they run
LOG_NAME = "run.log"            # OUTPUT/run.log
REPORT_NAME = "report.html"     # OUTPUT/report.html
# A job's results go to OUTPUT/JOB, so the run's own files in OUTPUT cannot name a job.
RESERVED_NAMES = frozenset({LOG_NAME, REPORT_NAME})
# Inside work/JOB/STEM/ (plan.video_plan):
FRAME_NAME = "{:06d}.png"       # a frame, by its position in the job's selection
FLOW_NAME = "{:06d}.npz"        # flow from frame N-1 to frame N (flow.save_pair)
FLOW_FROM_NAME = "{:06d}-{:06d}.npz"  # N-M: flow from an earlier frame M to frame N (long-term)
EXTRACT_PREFIX = "in-"          # in-KEY/: a video's extracted frames
EXTRACT_KEY_LEN = 12            # hex digits of the source-and-window hash in that name
LEAD_DIR = "lead"               # lead/: chunk lead-in frames (plan.split_chunks)
LOOP_DIR = "loop"               # keys JOB/STEM/loop/N: a looped video's closing pass (plan.py)
OPEN_DIR = "open"               # open/: the frames the closing pass replaces, as first painted
SEAM_FLOW = "seam.npz"          # flow from the last frame to the first (loop: true)

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


def snapshots_dir(out: Path) -> Path:
    return state_dir(out) / SNAPSHOTS_DIR


def scratch_dir(out: Path) -> Path:
    return state_dir(out) / SCRATCH_DIR


def work_dir(out: Path, job: str, stem: str) -> Path:
    return state_dir(out) / WORK_DIR / job / stem


def log_path(out: Path) -> Path:
    return Path(out) / LOG_NAME


def report_path(out: Path) -> Path:
    return Path(out) / REPORT_NAME


# -- results ------------------------------------------------------------------------------------
def result_names(paths: Sequence[Path]) -> list[str]:
    """Output names for a job's content images, unique within the job.

    A file's stem (`a` for `a.jpg`) when no other content shares it, else its name with dots as
    underscores (`a.jpg`, `a.png` → `a_jpg`, `a_png`). The manifest refuses two files of the same
    name, but a renamed `a.png` can still meet another file's own stem (`a_png.png`); the later
    of those is numbered (`a_png-2`).
    """
    counts = Counter(p.stem for p in paths)
    names = [p.stem if counts[p.stem] == 1 else p.name.replace(".", "_") for p in paths]
    wanted = set(names)
    taken: set[str] = set()
    unique_names = []
    for name in names:
        unique, n = name, 1
        while unique in taken or (unique != name and unique in wanted):
            n += 1
            unique = f"{name}-{n}"
        taken.add(unique)
        unique_names.append(unique)
    return unique_names


def result_paths(job: Job, out: Path) -> list[Path]:
    """The result files a job writes (its frames as their folder), without probing anything."""
    folder = Path(out) / job.name
    if job.kind == "video":
        stem = video_stem(job.video)
        return ([folder / f"{stem}.{fmt}" for fmt in ("mp4", "gif") if fmt in job.outputs]
                + ([folder / "frames" / stem] if "frames" in job.outputs else []))
    names = result_names(job.contents)
    return ([folder / f"{stem}.png" for stem in names]
            + [folder / f"{stem}.progress.gif" for stem in names if "progress_gif" in job.outputs])


# -- staying inside -------------------------------------------------------------------------------
def owned(out: Path, jobs: Iterable[str]) -> list[tuple[Path, bool, str | None]]:
    """What a run writes under `out`: (path, is a folder, the job it belongs to or None)."""
    out = Path(out)
    return ([(state_dir(out), True, None), (log_path(out), False, None),
             (report_path(out), False, None)]
            + [(out / job, True, job) for job in jobs])


def problems(out: Path, jobs: Iterable[str]) -> list[tuple[Path, str, str | None]]:
    """What in the run's own paths under `out` would make it write elsewhere or block: (path,
    what is wrong, the job it belongs to or None), for every path the run would write (its state
    folder, run.log, report.html and each job's folder) and everything inside them."""
    out = Path(out)
    jobs = list(jobs)

    def job_of(path: Path, default: str | None) -> str | None:
        # .batch_style/work/JOB/… belongs to that job: its problems are shown at its name.
        try:
            parts = path.relative_to(out).parts
        except ValueError:
            return default
        if len(parts) > 2 and parts[:2] == (STATE_DIR, WORK_DIR) and parts[2] in jobs:
            return parts[2]
        return default

    return safe_files.walk_problems(out, owned(out, jobs), job_of)


def check_inside(out: Path, jobs: Iterable[str]) -> None:
    """Raise UserError for the first of problems(): the run checks again before it writes."""
    found = problems(out, jobs)
    if found:
        path, message, _ = found[0]
        raise UserError(f"{message}; results are written only under '{out}'", file=path)


def sweep_temporaries(out: Path, jobs: Iterable[str]) -> int:
    """Remove what killed writers left in the run's own paths (atomic.clean_temporaries), and
    nowhere else: a user's files beside the run's are not ours to judge. A killed run's workers'
    scratch folder goes too (the caller holds the run lock: no live worker uses it)."""
    shutil.rmtree(scratch_dir(out), ignore_errors=True)
    return sum(atomic.clean_temporaries(path, recursive=folder)
               for path, folder, _ in owned(out, jobs) if folder) + \
        atomic.clean_temporaries(Path(out), recursive=False)


# -- when a unit is done --------------------------------------------------------------------------
def state(record: Mapping | None, hash: str, outputs: Iterable[Path | str],
          frames: str | None = None,
          present: Callable[[Path | str], bool] = lambda p: Path(p).exists()) -> str:
    """done | failed | pending: the one rule for a unit or a video, given its latest ledger record.

    Done is a fact on disk: a record that says done for these inputs and settings (`hash`), every
    output file there, and for a video the frames it was assembled from (`frames`, a
    frames_fingerprint) still the frames done now. A record for other inputs, or a done record
    whose outputs are gone or stale, leaves the unit pending: the next run does it again.
    `present(path)` says whether an output is there (the readers of a run folder: run_reader).
    """
    if record is None or record.get("hash") != hash:
        return "pending"
    if record["status"] == "done" and not (
            (frames is None or record.get("frames") == frames)
            and all(present(p) for p in outputs)):
        return "pending"
    return record["status"]


def frames_fingerprint(frame_keys: Sequence[str], latest: Mapping[str, dict]) -> str:
    """Which finished frame records an assembled video was made from (sha256 hex).

    A video's own hash says what it should show; this says which renderings of its frames it
    shows. A frame redone (its output lost, or a run killed between a frame and the assembly)
    gets a new record, so the fingerprint changes and the MP4 and GIF are assembled again.
    """
    parts = []
    for key in frame_keys:
        record = latest.get(key)
        stamp = record["time"] if record is not None and record["status"] == "done" else None
        parts.append(f"{key}\t{stamp!r}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def entry_state(entry: dict, latest: Mapping[str, dict],
                present: Callable[[Path | str], bool] = lambda p: Path(p).exists()) -> str:
    """state() of a unit or video as plan.json holds it."""
    record = latest.get(entry["key"])
    if isinstance(entry.get("outputs"), dict):  # a video
        frames = (frames_fingerprint(entry["frame_keys"], latest) if "frame_keys" in entry
                  else None)
        return state(record, entry["hash"], entry["outputs"].values(), frames, present)
    outputs = [entry["output"]] + ([entry["progress_gif"]] if entry.get("progress_gif") else [])
    return state(record, entry["hash"], outputs, present=present)


# -- plan.json ------------------------------------------------------------------------------------
_NO_RUN = "no batch-style run here (no .batch_style/plan.json); give the `output` folder of a manifest"


def read_plan(out: Path) -> dict:
    """plan.json of the run folder `out`, checked: {"jobs": [...], "units": [...], "videos": [...]}
    with the fields readers rely on. UserError when there is none or it is not one."""
    path = plan_path(out)
    try:
        plan = json.loads(safe_files.read_capped(path, MAX_PLAN_BYTES, "a run plan"))
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


