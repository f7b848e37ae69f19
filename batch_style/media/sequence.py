"""Image sequences as videos: a folder, a glob or a printf pattern (`shot_%04d.png`) of numbered
frames, probed like a video file and read frame by frame (docs/video.md, "Image sequences")."""

from __future__ import annotations

import dataclasses
import glob
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch_style.errors import UserError
from batch_style.media import images
from batch_style.media.video import VideoInfo, probe_video, select_frames

# A sequence has no frame rate of its own; without `fps:` it plays at film's 24, the default of
# compositing tools. Only the MP4/GIF's timing and start/end (in seconds) depend on it.
DEFAULT_FPS = 24.0
EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_PRINTF = re.compile(r"%(0?)(\d*)d")      # %04d, %4d, %d
_GLOB_MAGIC = re.compile(r"[*?[]")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")     # a file name's last run of digits: its frame number
MAX_PIXELS = 50_000_000                    # settings.max_pixels' default
_PNG16 = (b"\x89PNG\r\n\x1a\n", 24)        # PNG signature; IHDR's bit depth byte is at 24


@dataclass(frozen=True)
class SequenceInfo(VideoInfo):
    """A VideoInfo for numbered image files: frame k is files[k], numbered numbers[k]."""

    files: tuple[Path, ...] = ()
    numbers: tuple[int, ...] = ()
    bit_depth: int = 8             # 16: every frame a 16-bit PNG (the frames are written so)


def is_pattern(text: str | Path) -> bool:
    """Whether a `video:` names frames by a printf pattern or a glob (a folder is told by
    looking at the disk)."""
    name = Path(text).name
    return bool(_PRINTF.search(name) or _GLOB_MAGIC.search(name))


def is_sequence(path: Path) -> bool:
    return is_pattern(path) or Path(path).is_dir()


def name(path: Path) -> str:
    """What a sequence's results are named after: the pattern's text before the number
    (`shot_%04d.png` → shot), else the folder's name."""
    path = Path(path)
    if not is_pattern(path):
        return path.name if path.is_dir() else path.stem
    head = re.split(r"%|[*?[]", path.name, maxsplit=1)[0].rstrip("._- ")
    return head or path.parent.name


def stem(path: Path) -> str:
    """A video job's result stem: a video file's stem, or a sequence's name."""
    return name(path) if is_sequence(path) else Path(path).stem


def is_info(info) -> bool:
    return isinstance(info, SequenceInfo)


def at_fps(info: SequenceInfo, fps: float | None) -> SequenceInfo:
    """`info` played at `fps` (None: DEFAULT_FPS)."""
    rate = float(fps or DEFAULT_FPS)
    return dataclasses.replace(info, fps=rate, duration=info.n_frames / rate)


def probe(path: Path, fps: float | None = None, max_pixels: int | None = None) -> VideoInfo:
    """probe_video() for a video file, probe_sequence() for a sequence."""
    if is_sequence(path):
        return probe_sequence(path, fps, max_pixels)
    return probe_video(path)


def probe_sequence(path: Path, fps: float | None = None,
                   max_pixels: int | None = None) -> SequenceInfo:
    """The numbered frames a folder, glob or printf pattern names, in frame-number order, at
    `fps` (None: DEFAULT_FPS). Raises UserError (one line) for no frames, a file without a
    number, a number twice, or frames of different sizes or bit depths."""
    path = Path(path)
    numbered = _numbered_files(path)
    if not numbered:
        raise UserError("no numbered image frames" + (" in the folder" if path.is_dir() else
                                                      " match the pattern"), file=path)
    numbered.sort()
    for (a, first), (b, second) in zip(numbered, numbered[1:]):
        if a == b:
            raise UserError(f"frame {a} twice: '{first.name}' and '{second.name}'", file=path)
    files = tuple(p for _, p in numbered)
    sizes = {images.probe_image(p, max_pixels or MAX_PIXELS): p for p in files}
    if len(sizes) > 1:
        (s1, p1), (s2, p2) = list(sizes.items())[:2]
        raise UserError(f"frames of different sizes: '{p1.name}' {s1[0]}×{s1[1]}, '{p2.name}' "
                        f"{s2[0]}×{s2[1]}", file=path)
    depths = {_bit_depth(p) for p in files}
    if len(depths) > 1:
        raise UserError("frames of different bit depths (8 and 16): expected one", file=path)
    rate = float(fps or DEFAULT_FPS)
    return SequenceInfo(path=path, fps=rate, n_frames=len(files), duration=len(files) / rate,
                        size=next(iter(sizes)), has_audio=False, files=files,
                        numbers=tuple(n for n, _ in numbered), bit_depth=depths.pop())


def _numbered_files(path: Path) -> list[tuple[int, Path]]:
    printf = _PRINTF.search(path.name)
    if printf is not None:
        zero, width = printf.groups()
        digits = rf"\d{{{int(width)}}}" if zero and width else r"\d+"
        head, tail = path.name[:printf.start()], path.name[printf.end():]
        wanted = re.compile(re.escape(head) + f"({digits})" + re.escape(tail))
        folder = path.parent
        candidates = ([(wanted.fullmatch(p.name), p) for p in folder.iterdir()]
                      if folder.is_dir() else [])
        return [(int(m.group(1)), p) for m, p in candidates if m and p.is_file()]
    if _GLOB_MAGIC.search(path.name):
        found = [Path(p) for p in glob.glob(str(path))]
    else:
        found = list(path.iterdir())
    found = [p for p in found if p.is_file() and p.suffix.lower() in EXTENSIONS]
    numbered = []
    for p in found:
        match = _NUMBER.search(p.stem)
        if match is None:
            raise UserError(f"'{p.name}' has no frame number; expected numbered frames such as "
                            f"'shot_0001.png'", file=path)
        numbered.append((int(match.group(1)), p))
    return numbered


def _bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(_PNG16[1] + 1)
    return 16 if head.startswith(_PNG16[0]) and head[_PNG16[1]:_PNG16[1] + 1] == b"\x10" else 8


def load_frame(path: Path, max_pixels: int) -> np.ndarray:
    """A frame as float32 RGB in [0,1]; a 16-bit PNG with its 16 bits (Pillow reads 16-bit RGB
    as 8-bit)."""
    if _bit_depth(path) != 16:
        return images.load_image(path, max_pixels)
    import cv2

    images.probe_image(path, max_pixels)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UserError("truncated or corrupt image", file=path)
    if raw.ndim == 2:
        raw = np.repeat(raw[..., None], 3, axis=2)
    rgb = raw[..., 2::-1] if raw.shape[2] >= 3 else np.repeat(raw[..., :1], 3, axis=2)
    rgb = rgb[..., :3].astype(np.float32) / 65535.0
    if raw.shape[2] == 4:  # onto white, as images.load_image does
        alpha = raw[..., 3:4].astype(np.float32) / 65535.0
        rgb = rgb * alpha + (1.0 - alpha)
    return np.ascontiguousarray(rgb, np.float32)


def iter_frames(info: SequenceInfo, start: float = 0.0, end: float | None = None,
                fps: float | None = None, max_pixels: int = MAX_PIXELS,
                ) -> Iterator[tuple[int, float, np.ndarray]]:
    """video.iter_frames for a sequence: (k, time, frame) of the frames start..end selects."""
    for k, (index, t) in enumerate(select_frames(info, start, end, fps)):
        yield k, t, load_frame(info.files[index], max_pixels)
