"""A checked manifest and its jobs: what the rest of the pipeline is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batch_style.settings import Settings

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Output formats by job kind; the first is the default when a job gives no `outputs`.
OUTPUTS = {"images": ("image", "progress_gif"), "video": ("mp4", "gif", "frames")}


@dataclass(frozen=True)
class Masks:
    """A job's masks as its manifest names them, absolute and checked (docs/masks.md).

    A mask on the result is an image; for an image job also a folder of them, matched to the
    photos by file stem; for a video job also a mask video with one frame per frame.
    """

    styles: tuple[Path | None, ...] = ()   # per style: where it goes (None: everywhere)
    images: tuple[Path | None, ...] = ()   # per style: the part of the painting it is taken from
    protect: Path | None = None            # where the photo's content is held closer

    def __bool__(self) -> bool:
        return any(p is not None for p in (*self.styles, *self.images, self.protect))

    def files(self) -> list[Path]:
        """Every mask given, in order: styles', style images', protect."""
        return [p for p in (*self.styles, *self.images, self.protect) if p is not None]


@dataclass(frozen=True)
class Job:
    """One job of a manifest, checked: every path exists and is absolute."""

    name: str                  # unique in its manifest; the folder of its results under `output`
    kind: str                  # "images" (files, folders, globs) or "video"
    contents: tuple[Path, ...]  # images: the content images, absolute, sorted, unique; video: ()
    video: Path | None         # video: the source video, absolute; images: None
    start: float               # video: first second to stylize (frames with start <= t < end)
    end: float | None          # video: second to stop at (None: the end of the video)
    fps: float | None          # video: resample to this many frames per second (None: source fps)
    styles: tuple[Path, ...]   # one or more style images, absolute, in the manifest's order
    outputs: tuple[str, ...]   # formats to write, from OUTPUTS[kind]
    settings: Settings         # defaults < preset < manifest `defaults` < job `settings`
    line: int                  # line of the job in the manifest (1-based)
    masks: Masks = Masks()     # style masks and protected regions (none by default)
    loop: bool = False         # video: the last frame leads into the first (plan.LOOP_FRAMES)


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: where its results go and its jobs."""

    path: Path             # the manifest file, absolute
    output: Path           # results folder, absolute
    jobs: tuple[Job, ...]  # in the manifest's order
    backend: str | None = None    # where units run (settings.BACKENDS); None: not given
    scheduler: str | None = None  # Dask scheduler address; None: not given
