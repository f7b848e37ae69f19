"""Assembler: video frames in (extracted for the workers) and videos out (MP4, GIF)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from batch_style import media, video
from batch_style.plan import EXTRACT_PREFIX, FRAME_NAME, VideoPlan

_FRAME_FILE = re.compile(r"\d{6}\.png")  # FRAME_NAME's files


def extract_frames(vp: VideoPlan) -> int:
    """Decode the kept frames of a video to PNG files for the workers (streaming; resumable).

    Returns how many were written; frames already on disk from an earlier run are kept. Frames
    extracted for another window or an older source (a sibling folder) are removed.
    """
    _remove_stale_extractions(vp.frames_dir)
    paths = [vp.frames_dir / FRAME_NAME.format(i) for i in range(len(vp.frames))]
    if all(p.exists() for p in paths):
        return 0
    vp.frames_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for index, _, frame in video.iter_frames(vp.source, *vp.window):
        if index >= len(paths):
            break
        if not paths[index].exists():
            media.save_image(frame, paths[index])
            written += 1
    return written


def remove_stale_frames(vp: VideoPlan) -> int:
    """Remove stylized frames that an earlier plan of this video left beyond this plan's frames
    (another window or frame rate), so `frames/STEM/` holds this video's frames only."""
    if not vp.units or not vp.units[0].output.parent.is_dir():
        return 0
    keep = {u.output.name for u in vp.units}
    removed = 0
    for path in vp.units[0].output.parent.iterdir():
        if _FRAME_FILE.fullmatch(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _remove_stale_extractions(frames_dir: Path) -> None:
    if not frames_dir.parent.is_dir():
        return
    for folder in frames_dir.parent.iterdir():
        stale = folder.name.startswith(EXTRACT_PREFIX) or folder.name == "in"  # "in": before keys
        if stale and folder.is_dir() and folder != frames_dir:
            shutil.rmtree(folder, ignore_errors=True)


def _stylized_frames(vp: VideoPlan) -> Iterator[np.ndarray]:
    for unit in vp.units:
        yield media.load_image(unit.output, unit.settings.max_pixels)


WRITERS: dict[str, Callable[[VideoPlan, Path], None]] = {
    "mp4": lambda vp, path: video.write_mp4(
        _stylized_frames(vp), path, vp.fps, audio_from=vp.source if vp.has_audio else None,
        audio_start=vp.start, audio_duration=vp.duration),
    "gif": lambda vp, path: video.write_gif(_stylized_frames(vp), path, vp.fps),
}


def assemble_video(vp: VideoPlan) -> None:
    """Write each asked-for video output from the stylized frames (each atomically)."""
    for fmt, path in vp.outputs.items():
        WRITERS[fmt](vp, path)
