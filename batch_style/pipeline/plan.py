"""Plan: manifests → work units (one image or one video frame) and video assemblies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from batch_style.media import images, sequence, video
from batch_style.media.flow import FLOW_VERSION
from batch_style.pipeline.jobs import IMAGE_EXTENSIONS, Job, Manifest, Masks
from batch_style.pipeline.read.paths import mask_for
from batch_style.pipeline.state import ledger, run_folder
from batch_style.pipeline.state.run_folder import (
    EXTRACT_KEY_LEN,
    EXTRACT_PREFIX,
    FLOW_FROM_NAME,
    FLOW_NAME,
    FRAME_NAME,
    LEAD_DIR,
    LOOP_DIR,
    OPEN_DIR,
    SEAM_FLOW,
    result_names,
)
from batch_style.pipeline.units import Unit
from batch_style.settings import INITS, Settings

# Several workers on one video: each chunk but the first starts CHUNK_OVERLAP frames early (its
# lead-in), and the chunk before hands its last frames over to that lead-in, so the border is a
# gradual hand-over instead of a jump between two chains' strokes (split_chunks).
CHUNK_OVERLAP = 8                 # frames
# `loop: true`: the first LOOP_FRAMES frames are painted again after the last, starting from it
# and handed over to their first painting, so the clip's end leads into its start (docs/video.md).
LOOP_FRAMES = 4                   # frames, at most half the clip (docs/video.md#loops: 4 as good as 8)


@dataclass(frozen=True)
class Chunk:
    """A contiguous run of frames stylized as one warm-started chain (one per worker)."""

    start: int                    # first frame shown from this chunk
    stop: int                     # one past its last frame
    lead: int                     # first frame of its chain: start - overlap, or 0 for the first


def earlier_distances(temporal_frames: int) -> tuple[int, ...]:
    """How far back the long-term term looks besides the previous frame: 2, 4, 8, ... (Ruder et
    al.'s set of earlier frames, doubling: a few flow files reach far; docs/video.md)."""
    return tuple(2 ** n for n in range(1, temporal_frames))


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
    leads: tuple[Unit, ...] = ()  # work units whose outputs only feed others: chunk lead-ins,
                                  # and with a loop the first frames as first painted
    chunks: tuple[Chunk, ...] = ()
    mask_videos: tuple[tuple[Path, Path], ...] = ()  # (mask video, where its frames go)
    loop: int = 0                 # frames the closing pass paints again (loop: true); 0: none
    sequence: tuple[Path, ...] = ()  # an image sequence's file per kept frame (else a video)


@dataclass(frozen=True)
class Plan:
    output: Path
    units: tuple[Unit, ...]       # images and frames, in manifest order
    videos: tuple[VideoPlan, ...]

    def __len__(self) -> int:
        return len(self.units)


def _init_path(settings: Settings) -> Path | None:
    """settings.init when it names an image (the manifest made it absolute and checked it)."""
    return None if settings.init in INITS else Path(settings.init)


def _mask_fields(masks: Masks, content: Path, frames: dict[Path, Path] | None = None,
                 frame: int = 0) -> dict:
    """A unit's masks: folders resolved to the file for `content` (by stem), mask videos to
    their extracted frame `frame` (`frames`: mask video → its frames folder)."""
    def one(given: Path | None) -> Path | None:
        if frames and given in frames:
            return frames[given] / FRAME_NAME.format(frame)
        return mask_for(given, content)

    return {"masks": tuple(one(p) for p in masks.styles),
            "masks_move": bool(frames) and any(p in frames for p in masks.styles),
            "image_masks": masks.images, "protect": one(masks.protect)}


def _masks_extra(unit: Unit) -> dict:
    """What a unit's hash adds for its masks: each one's bytes, in its place (none: nothing)."""
    if not (unit.masks or unit.image_masks or unit.protect):
        return {}

    def digests(paths):
        return [ledger.file_digest(p) if p else None for p in paths]

    return {"masks": digests(unit.masks), "image_masks": digests(unit.image_masks),
            "protect": digests([unit.protect])[0]}


def image_units(job: Job, out: Path) -> list[Unit]:
    folder = out / job.name
    units = []
    init = _init_path(job.settings)
    for path, stem in zip(job.contents, result_names(job.contents)):
        gif = folder / f"{stem}.progress.gif" if "progress_gif" in job.outputs else None
        inputs = [path, *job.styles, *([init] if init else [])]
        unit = Unit(key=f"{job.name}/{stem}", job=job.name, content=path, styles=job.styles,
                    settings=job.settings, output=folder / f"{stem}.png", progress_gif=gif,
                    init=init, **_mask_fields(job.masks, path))
        units.append(dataclasses.replace(unit, hash=ledger.unit_hash(
            inputs, job.settings.to_dict(),
            {"outputs": sorted(job.outputs), **_masks_extra(unit)})))
    return units


def video_plan(job: Job, out: Path, chains: int = 1, overlap: int | None = None) -> VideoPlan:
    """A video's frames as units: one warm-started chain per chunk, `chains` chunks at most,
    each but the first with a lead-in of `overlap` frames (default CHUNK_OVERLAP)."""
    overlap = CHUNK_OVERLAP if overlap is None else overlap
    info = sequence.probe(job.video, job.fps, job.settings.max_pixels)
    # An image sequence: its files are the inputs, and each frame keeps its file's name.
    sources = list(getattr(info, "files", ())) or [job.video]
    frames = tuple(video.select_frames(info, job.start, job.end, job.fps))
    # select_frames never duplicates frames, so a job fps above the source's keeps the source's.
    fps = min(job.fps, info.fps) if job.fps else info.fps
    stem = sequence.stem(job.video)
    work = run_folder.work_dir(out, job.name, stem)
    window = {"start": job.start, "end": job.end, "fps": job.fps}
    # Extracted frames are named by position (000000.png, ...), so the folder is named for the
    # source and the window: another window, or a replaced source, must not reuse them.
    frames_dir = work / f"{EXTRACT_PREFIX}{ledger.unit_hash(sources, {}, window)[:EXTRACT_KEY_LEN]}"
    out_dir = (out / job.name / "frames" / stem) if "frames" in job.outputs else work / "out"
    s = job.settings
    if getattr(info, "bit_depth", 8) == 16:  # 16-bit frames in, 16-bit frames out
        s = dataclasses.replace(s, bit_depth=16)

    def frame_name(i: int) -> str:
        """A result frame's file: an image sequence's keeps its input's name."""
        return (sources[frames[i][0]].stem + ".png" if sequence.is_info(info)
                else FRAME_NAME.format(i))
    init = _init_path(s)
    # A mask video's frames are extracted next to the video's, named for its bytes.
    mask_videos = {p: frames_dir / f"mask-{ledger.unit_hash([p], {})[:EXTRACT_KEY_LEN]}"
                   for p in (*job.masks.styles, job.masks.protect)
                   if p is not None and p.suffix.lower() not in IMAGE_EXTENSIONS}
    video_hash = ledger.unit_hash([*sources, *job.styles, *([init] if init else []),
                                   *job.masks.files()], s.to_dict(),
                                  {**window, "masks": _mask_roles(job.masks)} if job.masks
                                  else window)
    size = images.fit_size(*info.size, s.size)
    flow_dir = frames_dir / f"flow-{FLOW_VERSION}-{size[0]}x{size[1]}"
    # A frame follows the one before when it starts from it (warm start) or is held near it
    # (temporal term); otherwise every frame is on its own and any worker may take any frame.
    chained = s.warm_start or s.temporal_weight > 0
    chunks = split_chunks(len(frames), chains if chained else 1, overlap)
    # Independent frames have no chain to close: each frame is as it would be anyway.
    loop = min(LOOP_FRAMES, len(frames) // 2) if job.loop and chained else 0

    def frame_unit(i: int, key: str, output: Path, chain: int, previous: Unit | None, *,
                   lead: bool = False, partner: Unit | None = None, blend: float = 0.0,
                   before: dict[int, Unit] | None = None, after: Unit | None = None) -> Unit:
        linked = chained and previous is not None
        # Long-term: earlier frames of the same chain (`before`: its units by frame), each with
        # the flow computed directly from it to this frame.
        earlier = tuple((before[i - d].key, before[i - d].output,
                         flow_dir / FLOW_FROM_NAME.format(i, i - d))
                        for d in earlier_distances(s.temporal_frames)
                        if linked and before and i - d >= chain and i - d in before)
        # A chained frame's result depends on where its chain starts (and on the flow method),
        # and a handed-over frame's on its partner, so they are part of its hash: another chunk
        # layout redoes only the frames it changes.
        extra = {"chain": chain, "flow": FLOW_VERSION} if chained else {}
        extra |= {"lead": True} if lead else {}
        extra |= {"partner": partner.hash, "blend": blend} if partner else {}
        # A closing pass's frame (`after` the clip's last frame) is redone when that one is.
        extra |= {"loop": loop, "after": after.hash} if after else {}
        seam = after is not None and previous is after  # its flow crosses from the last frame
        return Unit(key=key, job=job.name, content=frames_dir / FRAME_NAME.format(i),
                    styles=job.styles, settings=s, output=output, init=init,
                    **_mask_fields(job.masks, job.video, mask_videos, i),
                    steps=s.frame_steps if linked and s.warm_start else None,
                    previous=previous.key if linked else None,
                    previous_output=previous.output if linked else None,
                    flow=flow_dir / (SEAM_FLOW if seam else FLOW_NAME.format(i)) if linked else None,
                    earlier=earlier, loop=after is not None,
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
                chunk.lead, previous, lead=True, before=leads)
    units: list[Unit] = []
    for j, chunk in enumerate(chunks):
        previous = leads.get(chunk.start - 1) if chunk.lead < chunk.start else None
        chain = {i: leads[i] for i in range(chunk.lead, chunk.start)}  # its frames so far
        for i in range(chunk.start, chunk.stop):
            partner, blend = leads.get(i), 0.0
            if partner is not None:
                # The last frames of a chunk are handed over to the next chunk's lead-in:
                # blend 1/overlap, 2/overlap, ... 1 (its last frame is the lead-in's own).
                after = chunks[j + 1]
                blend = (i - after.lead + 1) / (after.start - after.lead)
            # A loop's first frames as first painted feed the closing pass; it replaces them.
            key, output = ((f"{job.name}/{stem}/{OPEN_DIR}/{i:06d}", work / OPEN_DIR /
                            FRAME_NAME.format(i)) if i < loop else
                           (f"{job.name}/{stem}/{i:06d}", out_dir / frame_name(i)))
            previous = frame_unit(i, key, output, chunk.lead, previous,
                                  partner=partner, blend=blend, before=chain)
            chain[i] = previous
            units.append(previous)
    opened, units = units[:loop], units[loop:]
    if loop:
        # The closing pass: frames 0..loop-1 again, a chain that starts from the last frame
        # warped across the seam and is handed over to the first painting a little more each
        # frame, (k+1)/(loop+1), so both its ends differ from their neighbours by 1/(loop+1).
        previous = last = units[-1]
        closing = []
        for i in range(loop):
            previous = frame_unit(i, f"{job.name}/{stem}/{LOOP_DIR}/{i:06d}",
                                  out_dir / frame_name(i), chunks[-1].lead, previous,
                                  partner=opened[i], blend=(i + 1) / (loop + 1), after=last)
            closing.append(previous)
        units = closing + units
    duration = len(frames) / fps
    outputs = {fmt: out / job.name / f"{stem}.{fmt}" for fmt in ("mp4", "gif")
               if fmt in job.outputs}
    return VideoPlan(key=f"{job.name}/{stem}#video", job=job.name, source=job.video,
                     window=(job.start, job.end, job.fps), fps=fps,
                     start=frames[0][1] if frames else job.start, duration=duration,
                     has_audio=info.has_audio, frames=frames, frames_dir=frames_dir,
                     units=tuple(units), outputs=outputs,
                     hash=ledger.unit_hash([], {}, {"video": video_hash,
                                                    "outputs": sorted(outputs),
                                                    **({"loop": loop} if loop else {})}),
                     size=size, flow_dir=flow_dir,
                     leads=tuple(leads[i] for i in sorted(leads)) + tuple(opened),
                     chunks=tuple(chunks), mask_videos=tuple(mask_videos.items()), loop=loop,
                     sequence=tuple(sources[i] for i, _ in frames) if sequence.is_info(info)
                     else ())


def _mask_roles(masks: Masks) -> list:
    """Which mask is which (the inputs' list says only what bytes they hold)."""
    return [[p is not None for p in masks.styles], [p is not None for p in masks.images],
            masks.protect is not None]


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
