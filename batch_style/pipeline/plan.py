"""Plan: manifests → work units (one image or one video frame) and video assemblies."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from batch_style.media.flow import FLOW_VERSION
from batch_style.pipeline import ledger, run_folder
from batch_style.pipeline.manifest import Job, Manifest
from batch_style.settings import Settings

FRAME_NAME = "{:06d}.png"
FLOW_NAME = "{:06d}.npz"          # flow from frame N-1 to frame N (flow.save_pair)
EXTRACT_PREFIX = "in-"            # work/JOB/STEM/in-KEY: a video's extracted frames
EXTRACT_KEY_LEN = 12              # hex digits of the source-and-window hash in that name
LEAD_DIR = "lead"                 # work/JOB/STEM/lead/: chunk lead-in frames (see split_chunks)
# Several workers on one video: each chunk but the first starts CHUNK_OVERLAP frames early (its
# lead-in), and the chunk before hands its last frames over to that lead-in, so the border is a
# gradual hand-over instead of a jump between two chains' strokes (split_chunks).
CHUNK_OVERLAP = 8                 # frames


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
    flow: Path | None = None      # flow file from the previous frame to this one (flow.py)
    partner: str | None = None    # chunk overlap: key of the next chunk's lead-in of this frame
    partner_output: Path | None = None
    blend: float = 0.0            # how far this frame is handed over to the partner, 0..1
    hash: str = ""                # of inputs and settings: the ledger's "same work" test

    @property
    def cost(self) -> float:
        """Planned work, the measure time left is estimated in: steps × (longest side)², as a
        step's time grows with the pixels (a warm-started video frame has frame_steps)."""
        steps = self.settings.steps if self.steps is None else self.steps
        return float(max(steps, 1)) * float(self.settings.size) ** 2

    @property
    def waits_for(self) -> tuple[str, ...]:
        """Keys of the units whose outputs this one reads."""
        return tuple(k for k in (self.previous, self.partner) if k is not None)

    def afresh(self) -> Unit:
        """This frame not starting from the previous one (a scene cut, or the previous frame
        failed): the full step budget, no warm start, no temporal term towards it."""
        return dataclasses.replace(self, previous_output=None, steps=None, flow=None)

    def without(self, key: str) -> Unit:
        """This unit once unit `key` has failed: it must not read a stale file of an older run."""
        unit = self.afresh() if key == self.previous else self
        return dataclasses.replace(unit, partner_output=None, blend=0.0) \
            if key == self.partner else unit


@dataclass(frozen=True)
class Chunk:
    """A contiguous run of frames stylized as one warm-started chain (one per worker)."""

    start: int                    # first frame shown from this chunk
    stop: int                     # one past its last frame
    lead: int                     # first frame of its chain: start - overlap, or 0 for the first


def split_chunks(frames: int, chains: int, overlap: int = CHUNK_OVERLAP) -> list[Chunk]:
    """Contiguous chunks of `frames`, one per chain, as even as frame counts allow.

    Chunk j > 0 begins its chain `overlap` frames before its first frame (its lead-in, stylized
    but not shown), and chunk j-1 hands its last `overlap` frames over to that lead-in; so a
    chunk must be longer than the overlap: at most frames // max(2·overlap, 2) chunks.
    """
    count = max(1, min(chains, frames // max(2 * overlap, 2)))
    starts = [j * frames // count for j in range(count)] + [frames]
    return [Chunk(start=starts[j], stop=starts[j + 1], lead=max(starts[j] - overlap, 0))
            for j in range(count)]


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
    units: tuple[Unit, ...]       # one per frame, in order: what the video shows
    outputs: dict[str, Path]      # "mp4" / "gif" → final path (frames are the units' outputs)
    hash: str = ""
    size: tuple[int, int] = (0, 0)  # (w, h) of the stylized frames
    flow_dir: Path | None = None  # flow files, FLOW_NAME per frame after the first
    leads: tuple[Unit, ...] = ()  # chunk lead-ins: work units whose outputs only feed others
    chunks: tuple[Chunk, ...] = ()


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


def planned_outputs(job: Job, out: Path) -> list[Path]:
    """The result files a job writes (its frames as their folder), without probing anything."""
    folder = out / job.name
    if job.kind == "video":
        stem = job.video.stem
        return ([folder / f"{stem}.{fmt}" for fmt in ("mp4", "gif") if fmt in job.outputs]
                + ([folder / "frames" / stem] if "frames" in job.outputs else []))
    names = stems(job.contents)
    return ([folder / f"{stem}.png" for stem in names]
            + [folder / f"{stem}.progress.gif" for stem in names if "progress_gif" in job.outputs])


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


def video_plan(job: Job, out: Path, chains: int = 1, overlap: int | None = None) -> VideoPlan:
    """A video's frames as units: one warm-started chain per chunk, `chains` chunks at most,
    each but the first with a lead-in of `overlap` frames (default CHUNK_OVERLAP)."""
    from batch_style.media import images, video

    overlap = CHUNK_OVERLAP if overlap is None else overlap
    info = video.probe_video(job.video)
    frames = tuple(video.select_frames(info, job.start, job.end, job.fps))
    # select_frames never duplicates frames, so a job fps above the source's keeps the source's.
    fps = min(job.fps, info.fps) if job.fps else info.fps
    stem = job.video.stem
    work = run_folder.work_dir(out, job.name, stem)
    window = {"start": job.start, "end": job.end, "fps": job.fps}
    # Extracted frames are named by position (000000.png, ...), so the folder is named for the
    # source and the window: another window, or a replaced source, must not reuse them.
    frames_dir = work / f"{EXTRACT_PREFIX}{ledger.unit_hash([job.video], {}, window)[:EXTRACT_KEY_LEN]}"
    out_dir = (out / job.name / "frames" / stem) if "frames" in job.outputs else work / "out"
    s = job.settings
    init = _init_path(s)
    video_hash = ledger.unit_hash([job.video, *job.styles, *([init] if init else [])],
                                  s.to_dict(), window)
    size = images.fit_size(*info.size, s.size)
    flow_dir = frames_dir / f"flow-{FLOW_VERSION}-{size[0]}x{size[1]}"
    # A frame follows the one before when it starts from it (warm start) or is held near it
    # (temporal term); otherwise every frame is on its own and any worker may take any frame.
    chained = s.warm_start or s.temporal_weight > 0
    chunks = split_chunks(len(frames), chains if chained else 1, overlap)

    def frame_unit(i: int, key: str, output: Path, chain: int, previous: Unit | None, *,
                   lead: bool = False, partner: Unit | None = None, blend: float = 0.0) -> Unit:
        linked = chained and previous is not None
        # A chained frame's result depends on where its chain starts (and on the flow method),
        # and a handed-over frame's on its partner, so they are part of its hash: another chunk
        # layout redoes only the frames it changes.
        extra = {"chain": chain, "flow": FLOW_VERSION} if chained else {}
        extra |= {"lead": True} if lead else {}
        extra |= {"partner": partner.hash, "blend": blend} if partner else {}
        return Unit(key=key, job=job.name, content=frames_dir / FRAME_NAME.format(i),
                    styles=job.styles, settings=s, output=output, init=init,
                    steps=s.frame_steps if linked and s.warm_start else None,
                    previous=previous.key if linked else None,
                    previous_output=previous.output if linked else None,
                    flow=flow_dir / FLOW_NAME.format(i) if linked else None,
                    partner=partner.key if partner else None,
                    partner_output=partner.output if partner else None, blend=blend,
                    hash=ledger.unit_hash([], {}, {"video": video_hash, "frame": i,
                                                   "t": frames[i][1], **extra}))

    leads: dict[int, Unit] = {}   # frame index → the lead-in unit of the chunk after its own
    for chunk in chunks[1:]:
        previous = None
        for i in range(chunk.lead, chunk.start):
            leads[i] = previous = frame_unit(
                i, f"{job.name}/{stem}/{LEAD_DIR}/{i:06d}", work / LEAD_DIR / FRAME_NAME.format(i),
                chunk.lead, previous, lead=True)
    units: list[Unit] = []
    for j, chunk in enumerate(chunks):
        previous = leads.get(chunk.start - 1) if chunk.lead < chunk.start else None
        for i in range(chunk.start, chunk.stop):
            partner, blend = leads.get(i), 0.0
            if partner is not None:
                # The last frames of a chunk are handed over to the next chunk's lead-in:
                # blend 1/overlap, 2/overlap, ... 1 (its last frame is the lead-in's own).
                after = chunks[j + 1]
                blend = (i - after.lead + 1) / (after.start - after.lead)
            previous = frame_unit(i, f"{job.name}/{stem}/{i:06d}", out_dir / FRAME_NAME.format(i),
                                  chunk.lead, previous, partner=partner, blend=blend)
            units.append(previous)
    duration = len(frames) / fps
    outputs = {fmt: out / job.name / f"{stem}.{fmt}" for fmt in ("mp4", "gif")
               if fmt in job.outputs}
    return VideoPlan(key=f"{job.name}/{stem}#video", job=job.name, source=job.video,
                     window=(job.start, job.end, job.fps), fps=fps,
                     start=frames[0][1] if frames else job.start, duration=duration,
                     has_audio=info.has_audio, frames=frames, frames_dir=frames_dir,
                     units=tuple(units), outputs=outputs,
                     hash=ledger.unit_hash([], {}, {"video": video_hash,
                                                    "outputs": sorted(outputs)}),
                     size=size, flow_dir=flow_dir, leads=tuple(leads[i] for i in sorted(leads)),
                     chunks=tuple(chunks))


def make_plan(manifest: Manifest, chains: int = 1) -> Plan:
    """The manifest's units; each video in up to `chains` chunks (one per worker)."""
    units: list[Unit] = []
    videos: list[VideoPlan] = []
    for job in manifest.jobs:
        if job.kind == "video":
            vp = video_plan(job, manifest.output, chains)
            videos.append(vp)
            units.extend(vp.units + vp.leads)
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
