"""The one reader of a run folder for `status`, `report` and `serve`: plan.json and the ledger,
checked for shape, and the run's files taken only where `run` itself would take them (regular
files inside OUTPUT, never through a link out of it, never a FIFO)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from batch_style.errors import UserError
from batch_style.pipeline.state import ledger, run_folder, safe_files

_NUMBER = (int, float)
_TEXT = (str,)
# Optional fields the views read, and their types; None is always allowed.
_PLAN_FIELDS: dict[str, dict[str, tuple]] = {
    "jobs": {"settings": (dict,), "styles": (list,), "masks": (list,), "protect": _TEXT,
             "video": _TEXT, "kind": _TEXT, "outputs": (list,), "manifest": _TEXT},
    "units": {"progress_gif": _TEXT, "cost": _NUMBER},
    "videos": {"frame_keys": (list,), "source": _TEXT, "fps": _NUMBER},
}
_RECORD_FIELDS: dict[str, tuple] = {
    "seconds": _NUMBER, "steps": (int,), "attempts": (int,), "error": _TEXT, "choice": _TEXT,
    "precision": _TEXT, "convolution": _TEXT, "device": _TEXT, "worker": _TEXT,
    "stopped": _TEXT, "note": _TEXT, "frames": _TEXT, "gpu": (str, int), "losses": (dict,),
    "metrics": (dict,), "history": (list,), "outputs": (list,),
}


@dataclass
class RunFolder:
    """A run folder as read once: its checked plan and each unit's latest ledger record."""

    out: Path
    plan: dict
    latest: dict[str, dict]

    def is_ours(self, path: Path | str) -> bool:
        """Whether `path` is a regular file inside OUTPUT (what a result must be to count)."""
        return regular_file(path, self.out)

    def state(self, entry: dict) -> str:
        """done | failed | pending of a plan entry, a result counting only where is_ours()."""
        return run_folder.entry_state(entry, self.latest, present=self.is_ours)


def read(out: Path) -> RunFolder:
    """The run folder `out`; UserError (one line, naming the file) when it is none or its plan
    is not one."""
    out = Path(out)
    for path in (run_folder.state_dir(out), run_folder.plan_path(out),
                 run_folder.ledger_path(out), run_folder.lock_path(out),
                 run_folder.workers_dir(out)):
        target = safe_files.leads_out(path, out)
        if target is not None:  # `run` refuses such a folder too: nothing is read out there
            raise UserError(f"is a symbolic link to '{target}', outside the output folder; "
                            f"remove it", file=path)
    plan = run_folder.read_plan(out)
    problem = _optional_problem(plan)
    if problem:
        raise UserError(f"unreadable run plan ({problem}); run the manifest again to rewrite it",
                        file=run_folder.plan_path(out))
    latest = {key: _checked_record(r)
              for key, r in ledger.Ledger.for_output(out).latest().items()}
    return RunFolder(out, plan, latest)


def regular_file(path: Path | str, root: Path) -> bool:
    """Whether `path` is a regular file whose real place is inside `root`."""
    try:
        if safe_files.leads_out(Path(path), root) is not None:
            return False
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _optional_problem(plan: dict) -> str | None:
    for part, fields in _PLAN_FIELDS.items():
        for entry in plan[part]:
            for name, types in fields.items():
                value = entry.get(name)
                if value is not None and (not isinstance(value, types)
                                          or isinstance(value, bool)):
                    return f"an entry of '{part}' has a '{name}' that is not a " \
                           f"{_type_name(types)}"
                if isinstance(value, list) and not all(
                        isinstance(v, str) or (v is None and name == "masks") for v in value):
                    return f"an entry of '{part}' has a '{name}' that is not a list of names"
    for video in plan["videos"]:
        if not all(isinstance(p, str) for p in (video.get("outputs") or {}).values()):
            return "a video's 'outputs' are not paths"
    return None


def _type_name(types: tuple) -> str:
    return {dict: "mapping", list: "list", str: "text", int: "number",
            float: "number"}[types[0]]


def _checked_record(record: dict) -> dict:
    """The record with each optional field the views read kept only when of its type (a record
    is a line that anyone may have edited; the required fields ledger.py checks already)."""
    kept = {}
    for name, value in record.items():
        types = _RECORD_FIELDS.get(name)
        if types is not None and (not isinstance(value, types) or isinstance(value, bool)):
            continue
        if isinstance(value, Mapping) and name in ("losses", "metrics"):
            value = {k: v for k, v in value.items()
                     if isinstance(v, _NUMBER) and not isinstance(v, bool)}
        elif name == "history":
            value = [v for v in value if isinstance(v, _NUMBER) and not isinstance(v, bool)]
        elif name == "outputs":
            value = [v for v in value if isinstance(v, str)]
        kept[name] = value
    return kept
