"""Assembler: video frames in (extracted for the workers) and videos out (MP4, GIF)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from batch_style.media import encode, flow, images, sequence, video
from batch_style.pipeline.plan import VideoPlan
from batch_style.pipeline.state.run_folder import EXTRACT_PREFIX, FLOW_NAME, FRAME_NAME, SEAM_FLOW

_FRAME_FILE = re.compile(r"\d{6}\.png")  # FRAME_NAME's files


def extract_frames(vp: VideoPlan) -> int:
    """Decode the kept frames of a video to PNG files for the workers (streaming; resumable).

    Returns how many were written; frames already on disk from an earlier run are kept. Frames
    extracted for another window or an older source (a sibling folder) are removed.
    """
    _remove_stale_extractions(vp.frames_dir)
    paths = [vp.frames_dir / FRAME_NAME.format(i) for i in range(len(vp.frames))]
    written = _extract_masks(vp)
    if all(p.exists() for p in paths):
        return written
    vp.frames_dir.mkdir(parents=True, exist_ok=True)
    if vp.sequence:  # an image sequence: its files, 16-bit ones kept in 16 bits
        depth = vp.units[0].settings.bit_depth if vp.units else 8
        for path, source in zip(paths, vp.sequence):
            if not path.exists():
                frame = sequence.load_frame(source, vp.units[0].settings.max_pixels)
                images.save_image(frame, path, bit_depth=depth)
                written += 1
        return written
    for index, _, frame in video.iter_frames(vp.source, *vp.window):
        if index >= len(paths):
            break
        if not paths[index].exists():
            images.save_image(frame, paths[index])
            written += 1
    return written


def _extract_masks(vp: VideoPlan) -> int:
    """Each mask video's frames at the source frames the video keeps (by index: a mask video
    has one frame per frame of the video), as the video's own; older mask folders go."""
    keep = {folder for _, folder in vp.mask_videos}
    if vp.frames_dir.is_dir():
        for folder in vp.frames_dir.glob("mask-*"):
            if folder not in keep:
                shutil.rmtree(folder, ignore_errors=True)
    written = 0
    wanted = {source: i for i, (source, _) in enumerate(vp.frames)}
    for mask_video, folder in vp.mask_videos:
        paths = [folder / FRAME_NAME.format(i) for i in range(len(vp.frames))]
        if all(p.exists() for p in paths):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for source, _, frame in video.iter_frames(mask_video):
            i = wanted.get(source)
            if i is not None and not paths[i].exists():
                images.save_image(frame, paths[i])
                written += 1
            if source >= vp.frames[-1][0]:
                break
    return written


def remove_stale_frames(vp: VideoPlan) -> int:
    """Remove stylized frames that an earlier plan of this video left beyond this plan's frames
    (another window or frame rate), so `frames/STEM/` holds this video's frames only."""
    if not vp.units or not vp.units[0].output.parent.is_dir():
        return 0
    keep = {u.output.name for u in vp.units}
    removed = 0
    for path in vp.units[0].output.parent.iterdir():
        # an image sequence's frames keep their inputs' names: any PNG in its folder is one
        ours = _FRAME_FILE.fullmatch(path.name) or (vp.sequence and path.suffix == ".png")
        if ours and path.name not in keep:
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


def flow_jobs(vp: VideoPlan, todo: set[str] | frozenset[str] = frozenset()) -> list[flow.FlowJob]:
    """The flow files of a video (one per frame after the first, and each frame's long-term ones
    from earlier frames), in the order they are needed:
    those of frames still to do first, then by position in their chain, so every chain's next
    frame has its flow before frames further on. Stale flow folders (another size) go."""
    if vp.flow_dir is None or len(vp.frames) < 2:
        return []
    flow.remove_stale_flows(vp.flow_dir)
    position: dict[int, int] = {}
    for chunk in vp.chunks:
        for i in range(chunk.lead + 1, chunk.stop):
            position[i] = min(position.get(i, i), i - chunk.lead)
    pending = {int(u.key.rsplit("/", 1)[1]) for u in vp.units + vp.leads if u.key in todo}
    order = sorted(range(1, len(vp.frames)), key=lambda i: (i not in pending, position.get(i, i), i))
    max_pixels = vp.units[0].settings.max_pixels
    # Long-term flow files (Unit.earlier) come right after their frame's flow from the one before.
    longer: dict[int, dict[Path, int]] = {}
    for unit in vp.units + vp.leads:
        for key, _, path in unit.earlier:
            longer.setdefault(int(unit.key[-6:]), {})[path] = int(key[-6:])

    def job(source: int, i: int, path: Path) -> flow.FlowJob:
        return flow.FlowJob(previous=vp.frames_dir / FRAME_NAME.format(source),
                            current=vp.frames_dir / FRAME_NAME.format(i), size=vp.size,
                            path=path, max_pixels=max_pixels)

    # A loop's closing pass starts across the seam: from the last frame to the first, needed last.
    seam = [job(len(vp.frames) - 1, 0, vp.flow_dir / SEAM_FLOW)] if vp.loop else []
    return [j for i in order for j in (
        job(i - 1, i, vp.flow_dir / FLOW_NAME.format(i)),
        *(job(source, i, path) for path, source in longer.get(i, {}).items()))] + seam


def coherence(vp: VideoPlan) -> dict[str, float]:
    """The stylized video's flicker and warping error against its input (flow.coherence), from
    the frames and flow files (made here if missing); {} when the input frames are gone."""
    jobs = {job.path: job for job in flow_jobs(vp)}
    if not jobs or not all(vp.frames_dir.joinpath(FRAME_NAME.format(i)).exists()
                           for i in range(len(vp.frames))):
        return {}
    max_pixels = vp.units[0].settings.max_pixels

    def frames():
        for i, unit in enumerate(vp.units):
            pair = None
            if i > 0:
                path = vp.flow_dir / FLOW_NAME.format(i)
                flow.make_flow_file(jobs[path])
                pair = flow.load_pair(path)
            yield (flow.load_frame(unit.output, vp.size, max_pixels),
                   flow.load_frame(unit.content, vp.size, max_pixels), pair)

    return flow.coherence(frames())


def loop_seam(vp: VideoPlan) -> dict[str, float]:
    """How far a looped video jumps from its last frame back to its first: the mean absolute
    difference between them over the median between consecutive frames (1.0: no seam to see),
    for the result (`seam`) and the input (`input_seam`); {} for a video that does not loop."""
    if not vp.loop or len(vp.units) < 3 or not all(u.content.exists() for u in vp.units):
        return {}
    max_pixels = vp.units[0].settings.max_pixels
    found = {}
    for name, paths in (("seam", [u.output for u in vp.units]),
                        ("input_seam", [u.content for u in vp.units])):
        first = before = flow.load_frame(paths[0], vp.size, max_pixels)
        jumps = []
        for path in paths[1:]:
            frame = flow.load_frame(path, vp.size, max_pixels)
            jumps.append(float(np.mean(np.abs(frame - before))))
            before = frame
        median = float(np.median(jumps))
        found[name] = float(np.mean(np.abs(first - before))) / median if median > 0 else 0.0
    return found


def _stylized_frames(vp: VideoPlan) -> Iterator[np.ndarray]:
    for unit in vp.units:
        yield images.load_image(unit.output, unit.settings.max_pixels)


WRITERS: dict[str, Callable[[VideoPlan, Path], None]] = {
    "mp4": lambda vp, path: encode.write_mp4(
        _stylized_frames(vp), path, vp.fps, audio_from=vp.source if vp.has_audio else None,
        audio_start=vp.start, audio_duration=vp.duration),
    "gif": lambda vp, path: encode.write_gif(_stylized_frames(vp), path, vp.fps),
}


def assemble_video(vp: VideoPlan) -> dict[str, float]:
    """Write each asked-for video output from the stylized frames (each atomically); return how
    steady the result is (coherence())."""
    for fmt, path in vp.outputs.items():
        WRITERS[fmt](vp, path)
    return coherence(vp) | loop_seam(vp)
