"""Plan: manifests → work units (one image or one video frame) and video assemblies."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from batch_style import ledger
from batch_style.manifest import Job, Manifest
from batch_style.settings import Settings

STATE_DIR = ledger.STATE_DIR      # OUTPUT/.batch_style: ledger, lock, log, work files
FRAME_NAME = "{:06d}.png"
EXTRACT_PREFIX = "in-"            # work/JOB/STEM/in-KEY: a video's extracted frames
EXTRACT_KEY_LEN = 12              # hex digits of the source-and-window hash in that name


@dataclass(frozen=True)
class Unit:
    """One optimization: a small picklable record of paths and settings (STYLE.md habit 5)."""

    key: str                      # unique in a run: "JOB/STEM" or "JOB/STEM/000012"
    job: str
    content: Path                 # image file (a video frame is extracted to a file first)
    styles: tuple[Path, ...]
    settings: Settings
    output: Path                  # final PNG
    progress_gif: Path | None = None
    init: Path | None = None      # settings.init given as a path
    steps: int | None = None      # overrides settings.steps (video frames after the first)
    previous: str | None = None   # key of the unit this one starts from (video warm start)
    previous_output: Path | None = None
    hash: str = ""                # of inputs and settings: the ledger's "same work" test


@dataclass(frozen=True)
class VideoPlan:
    """One video of a job: its frames to extract, their units, and what to assemble."""

    key: str                      # "JOB/STEM#video"
    job: str
    source: Path
    window: tuple[float, float | None, float | None]   # the job's (start, end, fps) selection
    fps: float                    # output frame rate
    start: float                  # seconds into the source of the first frame kept
    duration: float               # seconds covered by the kept frames
    has_audio: bool
    frames: tuple[tuple[int, float], ...]   # (source frame index, time) per kept frame
    frames_dir: Path              # extracted input frames (named for the source and window)
    units: tuple[Unit, ...]
    outputs: dict[str, Path]      # "mp4" / "gif" → final path (frames are the units' outputs)
    hash: str = ""


@dataclass(frozen=True)
class Plan:
    output: Path
    units: tuple[Unit, ...]       # images and frames, in manifest order
    videos: tuple[VideoPlan, ...]

    def __len__(self) -> int:
        return len(self.units)


def stems(paths: Sequence[Path]) -> list[str]:
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


def _init_path(settings: Settings) -> Path | None:
    """settings.init when it names an image (the manifest made it absolute and checked it)."""
    return None if settings.init in ("content", "noise") else Path(settings.init)


def image_units(job: Job, out: Path) -> list[Unit]:
    folder = out / job.name
    units = []
    init = _init_path(job.settings)
    for path, stem in zip(job.contents, stems(job.contents)):
        gif = folder / f"{stem}.progress.gif" if "progress_gif" in job.outputs else None
        inputs = [path, *job.styles, *([init] if init else [])]
        unit = Unit(key=f"{job.name}/{stem}", job=job.name, content=path, styles=job.styles,
                    settings=job.settings, output=folder / f"{stem}.png", progress_gif=gif,
                    init=init)
        units.append(dataclasses.replace(unit, hash=ledger.unit_hash(
            inputs, job.settings.to_dict(),
            {"outputs": sorted(job.outputs)})))
    return units


def video_plan(job: Job, out: Path) -> VideoPlan:
    from batch_style import video

    info = video.probe_video(job.video)
    frames = tuple(video.select_frames(info, job.start, job.end, job.fps))
    # select_frames never duplicates frames, so a job fps above the source's keeps the source's.
    fps = min(job.fps, info.fps) if job.fps else info.fps
    stem = job.video.stem
    work = out / STATE_DIR / "work" / job.name / stem
    window = {"start": job.start, "end": job.end, "fps": job.fps}
    # Extracted frames are named by position (000000.png, ...), so the folder is named for the
    # source and the window: another window, or a replaced source, must not reuse them.
    frames_dir = work / f"{EXTRACT_PREFIX}{ledger.unit_hash([job.video], {}, window)[:EXTRACT_KEY_LEN]}"
    out_dir = (out / job.name / "frames" / stem) if "frames" in job.outputs else work / "out"
    s = job.settings
    init = _init_path(s)
    video_hash = ledger.unit_hash([job.video, *job.styles, *([init] if init else [])],
                                  s.to_dict(), window)
    units, previous = [], None
    for i, (_, t) in enumerate(frames):
        name = FRAME_NAME.format(i)
        # Warm start chains each frame to the one before: it starts from that stylized frame,
        # so its own hash includes the frame index and the chain it belongs to.
        chained = s.warm_start and previous is not None
        unit = Unit(key=f"{job.name}/{stem}/{i:06d}", job=job.name,
                    content=frames_dir / name, styles=job.styles, settings=s,
                    output=out_dir / name, init=init,
                    steps=s.frame_steps if chained else None,
                    previous=previous.key if chained else None,
                    previous_output=previous.output if chained else None,
                    hash=ledger.unit_hash([], {}, {"video": video_hash, "frame": i, "t": t}))
        units.append(unit)
        previous = unit
    duration = len(frames) / fps
    outputs = {fmt: out / job.name / f"{stem}.{fmt}" for fmt in ("mp4", "gif")
               if fmt in job.outputs}
    return VideoPlan(key=f"{job.name}/{stem}#video", job=job.name, source=job.video,
                     window=(job.start, job.end, job.fps), fps=fps,
                     start=frames[0][1] if frames else job.start, duration=duration,
                     has_audio=info.has_audio, frames=frames, frames_dir=frames_dir,
                     units=tuple(units), outputs=outputs,
                     hash=ledger.unit_hash([], {}, {"video": video_hash,
                                                    "outputs": sorted(outputs)}))


def make_plan(manifest: Manifest) -> Plan:
    units: list[Unit] = []
    videos: list[VideoPlan] = []
    for job in manifest.jobs:
        if job.kind == "video":
            vp = video_plan(job, manifest.output)
            videos.append(vp)
            units.extend(vp.units)
        else:
            units.extend(image_units(job, manifest.output))
    return Plan(output=manifest.output, units=tuple(units), videos=tuple(videos))


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
