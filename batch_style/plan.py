"""Plan: manifests → work units (one image or one video frame) and video assemblies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from batch_style import ledger
from batch_style.manifest import Job, Manifest
from batch_style.settings import Settings

STATE_DIR = ledger.STATE_DIR      # OUTPUT/.batch_style: ledger, lock, log, work files
FRAME_NAME = "{:06d}.png"


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
    frames_dir: Path              # extracted input frames
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


def stems(paths: tuple[Path, ...]) -> list[str]:
    """Output names for content images; `a.jpg` and `a.png` in one job become `a.jpg`/`a.png`."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return [p.name.replace(".", "_") if counts[p.stem] > 1 else p.stem for p in paths]


def image_units(job: Job, out: Path) -> list[Unit]:
    folder = out / job.name
    units = []
    inputs_extra = [job.settings.init] if job.settings.init not in ("content", "noise") else []
    for path, stem in zip(job.contents, stems(job.contents)):
        gif = folder / f"{stem}.progress.gif" if "progress_gif" in job.outputs else None
        inputs = [path, *job.styles, *map(Path, inputs_extra)]
        unit = Unit(key=f"{job.name}/{stem}", job=job.name, content=path, styles=job.styles,
                    settings=job.settings, output=folder / f"{stem}.png", progress_gif=gif,
                    init=Path(inputs_extra[0]) if inputs_extra else None)
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
    frames_dir = work / "in"
    out_dir = (out / job.name / "frames" / stem) if "frames" in job.outputs else work / "out"
    s = job.settings
    video_hash = ledger.unit_hash([job.video, *job.styles], s.to_dict(),
                                  {"start": job.start, "end": job.end, "fps": job.fps})
    units, previous = [], None
    for i, (_, t) in enumerate(frames):
        name = FRAME_NAME.format(i)
        # Warm start chains each frame to the one before: it starts from that stylized frame,
        # so its own hash includes the frame index and the chain it belongs to.
        chained = s.warm_start and previous is not None
        unit = Unit(key=f"{job.name}/{stem}/{i:06d}", job=job.name,
                    content=frames_dir / name, styles=job.styles, settings=s,
                    output=out_dir / name,
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
