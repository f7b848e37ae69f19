"""A busy unit's latest picture, for the live report: OUTPUT/.batch_style/snapshots/PID.jpg."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from PIL import Image

from batch_style import atomic
from batch_style.media import images
from batch_style.pipeline.state.run_folder import SNAPSHOTS_DIR, snapshots_dir

SNAPSHOT_EVERY_S = 2.0  # seconds between a worker's snapshot writes, whatever snapshot_every says
SNAPSHOT_PX = 256       # longest side of a snapshot (the report shows it at up to 200 px)
_NAME = re.compile(r"\d{1,9}\.jpg")  # PID.jpg: the only files of ours in snapshots/


def snapshot_path(output_dir: Path, pid: int) -> Path:
    return snapshots_dir(output_dir) / f"{int(pid)}.jpg"


class LiveSnapshot:
    """Writes the picture a worker's unit is painting, as the optimizer hands it out (every
    `snapshot_every` steps), to PID.jpg beside the worker's progress file: a small JPEG, renamed
    into place (the report may be read at any moment), at most every SNAPSHOT_EVERY_S seconds,
    the first at once. One per unit: it starts by removing the previous unit's picture, and
    `done()` removes its own. Without a state folder (`stylize`) it does nothing."""

    def __init__(self, state_dir: str | os.PathLike | None):
        self.path = Path(state_dir) / SNAPSHOTS_DIR / f"{os.getpid()}.jpg" if state_dir else None
        self.last: float | None = None
        self.done()

    def update(self, progress) -> None:
        if self.path is None or progress.snapshot is None:
            return
        if self.last is not None and time.monotonic() - self.last < SNAPSHOT_EVERY_S:
            return
        self.last = time.monotonic()
        picture = Image.fromarray(images.to_uint8(progress.snapshot))
        picture.thumbnail((SNAPSHOT_PX, SNAPSHOT_PX), Image.Resampling.BILINEAR)
        # Renamed into place but not fsynced: it is a view, rewritten every few seconds.
        tmp = atomic.temporary_name(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            picture.save(tmp, "JPEG", quality=85)
            os.replace(tmp, self.path)
        except OSError:  # a full disk shows up where it matters (the unit's outputs), not here
            tmp.unlink(missing_ok=True)

    def done(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def clear(output_dir: Path) -> None:
    """Remove every snapshot (a run starts and ends with none: no worker is busy then)."""
    folder = snapshots_dir(output_dir)
    if folder.is_dir() and not folder.is_symlink():
        for path in folder.iterdir():
            if _NAME.fullmatch(path.name):
                path.unlink(missing_ok=True)
