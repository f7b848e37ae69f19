"""Assembler: video frames in (extracted for the workers) and videos out (MP4, GIF)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from batch_style import media, video
from batch_style.plan import EXTRACT_PREFIX, FRAME_NAME, VideoPlan


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
