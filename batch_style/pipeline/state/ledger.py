"""The ledger of finished work units, input hashing, and the one-run-per-output-folder lock."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from batch_style.atomic import fsync_dir
from batch_style.pipeline.state import run_folder, safe_files
from batch_style.pipeline.state.run_folder import ledger_path

log = logging.getLogger("batch_style")

STATUSES = frozenset({"done", "failed"})


def _is_valid_record(record: Any) -> bool:
    """True for a dict with the fields every ledger record must carry, of the right types."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("key"), str)
        and record.get("status") in STATUSES
        and isinstance(record.get("hash"), str)
        # bool is an int subclass; `true` is not a time.
        and isinstance(record.get("time"), (int, float))
        and not isinstance(record.get("time"), bool)
    )


def _parse_ledger(data: bytes) -> tuple[list[dict], int]:
    """The valid records in `data`, in order, and how many non-blank lines were not valid records."""
    lines = data.split(b"\n")
    # A last piece without its "\n" is a write cut short by a crash: never trust it, even if it
    # happens to parse (a cut inside a number still parses, with the wrong value).
    truncated = lines.pop()
    records: list[dict] = []
    skipped = 1 if truncated.strip() else 0
    for line in lines:
        if not line.strip():
            continue  # blank lines hold no unit, so nothing is lost by ignoring them
        try:
            record = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError (binary garbage) alike
            skipped += 1
            continue
        if _is_valid_record(record):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


class Ledger:
    """An append-only JSON-lines record of which units a run has finished, so a re-run resumes.

    One line per record; a unit's latest record wins. A crash can leave at most one truncated last
    line, which readers skip (and count in `skipped`) and the next append starts after.

    Appends must come from one process only (the orchestrator): workers return results, and the
    orchestrator records them. Reads are safe from anywhere (`batch-style status`). Reading never
    creates anything; the parent folders are made by the first append.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.skipped = 0  # corrupt lines ignored by the last read
        # Parsed file, keyed on its stat, so planning thousands of units with is_done() reads the
        # file once instead of once per unit.
        self._cache: tuple[tuple[int, int, int], list[dict], int] | None = None
        self._latest: tuple[object, dict[str, dict]] | None = None  # (for which _cache, map)

    @classmethod
    def for_output(cls, output_dir: Path) -> Ledger:
        """The ledger of the run writing into `output_dir`."""
        return cls(ledger_path(output_dir))

    def append(self, record: Mapping[str, Any]) -> None:
        """Durably add one record (`key`, `status`, `hash` required; `time` defaults to now)."""
        record = {"time": time.time(), **record}
        if not _is_valid_record(record):
            raise ValueError(f"not a ledger record (needs str key and hash, status in "
                             f"{sorted(STATUSES)}, numeric time): {record!r}")
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = safe_files.open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            if not _ends_with_newline(fd):
                line = "\n" + line  # end the truncated line so this record starts on its own
            _write_all(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)  # the new file's name must survive a crash too

    def records(self) -> list[dict]:
        """All valid records in file order; sets `skipped` to the number of corrupt lines."""
        records, self.skipped = self._load()
        return list(records)

    def latest(self) -> dict[str, dict]:
        """The last record for each key (built once per version of the file)."""
        records, self.skipped = self._load()
        if self._latest is None or self._latest[0] is not self._cache:
            self._latest = (self._cache, {record["key"]: record for record in records})
        return dict(self._latest[1])

    def is_done(self, key: str, hash: str) -> bool:
        """True iff the latest record for `key` says done, for these exact inputs and settings."""
        self.latest()
        record = self._latest[1].get(key)
        return record is not None and record["status"] == "done" and record["hash"] == hash

    def _load(self) -> tuple[list[dict], int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return [], 0
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._cache is None or self._cache[0] != signature:
            data = safe_files.read_capped(self.path, run_folder.MAX_LEDGER_BYTES, "a ledger")
            self._cache = (signature, *_parse_ledger(data))
        return self._cache[1], self._cache[2]


def _ends_with_newline(fd: int) -> bool:
    """True if the file is empty or its last byte is a newline."""
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _write_all(fd: int, data: bytes) -> None:
    # One os.write is the normal case and keeps the line whole. A regular file can still take a
    # short write (signal, nearly full disk); finish the line rather than leave it cut.
    while data:
        written = os.write(fd, data)
        data = data[written:]


# Resolved path -> ((size, mtime_ns, inode, ctime_ns), sha256 hex). One entry per file, so it
# stays as small as the set of inputs. Besides the size and mtime, the inode catches a file
# replaced by rename and the ctime a rewrite whose mtime was set back; both only cost a re-hash.
_digest_memo: dict[Path, tuple[tuple[int, int, int, int], str]] = {}


def file_digest(path: Path) -> str:
    """sha256 (hex) of the file's bytes, remembered while the file is unchanged.

    Every frame of a video unit and every image of a folder job hashes the same inputs; the memo
    keeps a run from reading them again for each unit.
    """
    resolved = Path(path).resolve()
    st = resolved.stat()
    signature = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    memo = _digest_memo.get(resolved)
    if memo is not None and memo[0] == signature:
        return memo[1]
    digest = _hash_file(resolved)
    _digest_memo[resolved] = (signature, digest)
    return digest


def _hash_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _json_default(value: Any) -> Any:
    """Make the non-JSON values that settings legitimately hold canonical; anything else is a bug."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot hash a setting of type {type(value).__name__}: {value!r}")


def unit_hash(inputs: Iterable[Path], settings: Mapping, extra: Mapping | None = None) -> str:
    """sha256 (hex) identifying a unit's work: its input files' bytes, its settings and `extra`.

    Inputs count in the given order, by content only (a touched or renamed file hashes the same).
    Floats are written as repr, so 0.1 and 0.10000000000000002 differ; 1 and 1.0 differ too, which
    is fine because settings are validated into fixed types once, when the manifest is loaded.
    """
    payload = {
        "inputs": [file_digest(path) for path in inputs],
        "settings": dict(settings),
        "extra": dict(extra) if extra is not None else {},
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
