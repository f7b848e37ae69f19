"""Probing, frame-accurate reading and H.264/GIF writing of videos with imageio-ffmpeg's ffmpeg."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from batch_style.errors import UserError

# ffmpeg reads local files and our own pipes only: no network, no other protocol, whatever a
# container or playlist inside the file points at.
INPUT_PROTOCOLS = "file,pipe"

# Counting frames exactly means decoding the whole clip; below this many decoded pixels (frames ×
# width × height, ~1000 frames of 1080p, a few seconds of decoding) we count, above it we estimate
# round(duration × fps).
EXACT_COUNT_MAX_PIXELS = 2_000_000_000


_TIME_EPS = 1e-6  # in frames: start/end that land exactly on a frame's time include/exclude it
_NTSC_BASES = (24, 30, 48, 60, 120)  # ffmpeg prints 30000/1001 as "29.97"; snap back to exact
_NTSC_SNAP = 0.006  # fps

# Demuxers that ffmpeg would happily read but that are not a video for us.
_STILL_IMAGE_FORMATS = {"image2", "image2pipe"}  # plus every "*_pipe" (png_pipe, jpeg_pipe, ...)
_PLAYLIST_FORMATS = {"hls", "applehttp", "concat", "dash", "tty", "lavfi", "sdp"}
_PLAYLIST_SUFFIXES = {".m3u8", ".m3u", ".ffconcat", ".sdp", ".mpd"}
# First bytes of text files that make ffmpeg open other files (whatever the file's name):
# HLS and M3U playlists, ffconcat scripts, DASH manifests, SDP session descriptions. They are
# refused before ffmpeg sees them: the protocol whitelist keeps it off the network, but a
# playlist could still point it at other local files.
_PLAYLIST_MAGIC = (b"#EXTM3U", b"#EXTINF", b"ffconcat version", b"<?xml", b"<MPD", b"v=0\n",
                   b"v=0\r\n")
_SNIFF_BYTES = 64
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # "http:", "concat:", ...; not "C:"


@dataclass(frozen=True)
class VideoInfo:
    path: Path  # the file probed
    fps: float  # frames per second (the average for variable-rate sources such as GIFs)
    n_frames: int  # frames ffmpeg decodes (exact up to EXACT_COUNT_MAX_PIXELS, else estimated)
    duration: float  # seconds
    size: tuple[int, int]  # (width, height) of decoded frames, rotation metadata applied
    has_audio: bool  # at least one audio stream


# ----- probing


def probe_video(path: Path) -> VideoInfo:
    """What a video file holds. Any video ffmpeg reads, animated GIFs included.

    Raises UserError for a URL or playlist, a missing file, a file that is not a video (ffmpeg
    cannot read it, a still image, no video stream) and a video with no decodable frame.
    """
    path = local_file(path)
    header = ffprobe_like(path, count_frames=False)
    video = _video_stream(header, path)
    if not header["frames"]:
        raise UserError("no decodable video frames", file=path)
    size = header["decoded_size"] or video["size"]
    fps = video["fps"]
    duration = header["duration"]
    if _count_is_cheap(duration, fps, size):
        n_frames = ffprobe_like(path, count_frames=True)["frames"]
    else:
        n_frames = max(1, round(duration * fps))
    if duration and ("gif" in header["format"] or fps is None):
        # GIF delays vary per frame; ffmpeg's fps is a guess, while the delays add up to duration.
        fps = n_frames / duration
    if fps is None:
        raise UserError("cannot tell the video's frame rate", file=path)
    return VideoInfo(path=path, fps=fps, n_frames=n_frames,
                     duration=duration if duration else n_frames / fps,
                     size=size, has_audio=any(s["type"] == "audio" for s in header["streams"]))


def _count_is_cheap(duration: float | None, fps: float | None, size: tuple[int, int]) -> bool:
    if duration is None or fps is None:
        return True  # nothing to estimate from
    return duration * fps * size[0] * size[1] <= EXACT_COUNT_MAX_PIXELS


def ffprobe_like(path: Path, count_frames: bool = True) -> dict:
    """What `ffmpeg -i` says about a file (imageio-ffmpeg ships no ffprobe).

    Keys: format (demuxer names), duration (s or None), streams (dicts with index, type, codec,
    and for video size, fps and pix_fmt), decoded_size ((w, h) that ffmpeg outputs, rotation
    applied), frames (video frames decoded: all with count_frames, else at most 1; None when
    there is no video) and error (ffmpeg's complaint, or None). No URL check here: input goes
    through probe_video.
    """
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin",
           "-protocol_whitelist", INPUT_PROTOCOLS, "-i", str(Path(path).absolute()),
           # passthrough: one output frame per decoded frame (ffmpeg would otherwise duplicate or
           # drop frames of variable-rate sources to make them constant-rate)
           "-map", "0:v:0?", "-fps_mode", "passthrough"]
    cmd += [] if count_frames else ["-frames:v", "1"]
    cmd += ["-f", "null", "-"]
    # check=False: ffmpeg exits non-zero for unreadable input, which the parsed log reports.
    log = subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, errors="replace").stderr
    return _parse_ffmpeg_log(log)


def local_file(path: Path) -> Path:
    """`path` as an absolute local file, refusing URLs and playlists before ffmpeg sees them."""
    text = str(path)
    # Path("http://x") collapses to "http:/x", so look for a scheme, not for "://" only.
    if "://" in text or _URL_LIKE.match(text) or Path(text).suffix.lower() in _PLAYLIST_SUFFIXES:
        raise UserError("only local video files are read, not URLs or playlists", file=text)
    path = Path(path)
    if not path.is_file():
        raise UserError("no such file" if not path.exists() else "not a file", file=path)
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if not head:
        raise UserError("not a video: the file is empty (0 bytes)", file=path)
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(_PLAYLIST_MAGIC):
        raise UserError("not a video: a playlist or script that names other files; only "
                        "local video files are read", file=path)
    # Absolute, so ffmpeg never reads "a:b.mp4" as protocol "a" or "-x.mp4" as an option.
    return path.absolute()


def _video_stream(header: dict, path: Path) -> dict:
    formats = header["format"]
    if not formats:
        raise UserError(f"not a video: ffmpeg cannot read it ({header['error']})", file=path)
    if any(f in _STILL_IMAGE_FORMATS or f.endswith("_pipe") for f in formats):
        raise UserError(f"not a video: a still image ({','.join(formats)})", file=path)
    if any(f in _PLAYLIST_FORMATS for f in formats):
        raise UserError(f"not a video: a playlist or generated input ({','.join(formats)})",
                        file=path)
    videos = [s for s in header["streams"] if s["type"] == "video"]
    if not videos:
        raise UserError("not a video: no video stream", file=path)
    return videos[0]


_INPUT = re.compile(r"^Input #0, (.+?), from ")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:(\d+)\S*: (Video|Audio|Subtitle|Data|Attachment): ([^\s,]+)")
_PIX_FMT = re.compile(r"Video: [^,]+, (\w+)")
_SIZE = re.compile(r", (\d+)x(\d+)[\s,\[]")
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)")
_FRAMES = re.compile(r"^frame=\s*(\d+)")


def _parse_ffmpeg_log(log: str) -> dict:
    info = {"format": [], "duration": None, "streams": [], "decoded_size": None, "frames": None,
            "error": None}
    section = None  # "input" or "output": which file the Stream lines describe
    for line in re.split(r"[\r\n]+", log):
        stripped = line.strip()
        stream = _STREAM.search(line)
        if match := _INPUT.match(line):
            section, info["format"] = "input", match.group(1).split(",")
        elif line.startswith("Output #"):
            section = "output"
        elif stream and section == "input":
            info["streams"].append(_stream_info(stream, line))
        elif stream and section == "output" and stream.group(2) == "Video":
            info["decoded_size"] = info["decoded_size"] or _size(line)
        elif match := _DURATION.search(line):
            hours, minutes, seconds = match.groups()
            info["duration"] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        elif match := _FRAMES.match(stripped):
            info["frames"] = int(match.group(1))
        elif "Error" in line or "Invalid data" in line:
            info["error"] = stripped
    if not any(s["type"] == "video" for s in info["streams"]):
        info["frames"] = None
    elif info["frames"] is None:
        info["frames"] = 0
    return info


def _stream_info(match: re.Match, line: str) -> dict:
    stream = {"index": int(match.group(1)), "type": match.group(2).lower(),
              "codec": match.group(3)}
    if stream["type"] == "video":
        stream["size"] = _size(line)
        stream["fps"] = _rate(line)
        pix_fmt = _PIX_FMT.search(line)
        stream["pix_fmt"] = pix_fmt.group(1) if pix_fmt else None
    return stream


def _size(line: str) -> tuple[int, int] | None:
    match = _SIZE.search(line)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _rate(line: str) -> float | None:
    """The stream's frame rate: 'fps' (average) when printed, else 'tbr' (base rate)."""
    rates = {kind: float(value) * (1000 if kilo else 1)
             for value, kilo, kind in _RATE.findall(line)}
    rate = rates.get("fps") or rates.get("tbr")
    if not rate:
        return None
    for base in _NTSC_BASES:
        if abs(rate - base * 1000 / 1001) < _NTSC_SNAP:
            return base * 1000 / 1001
    return rate


# ----- choosing and reading frames


def select_frames(info: VideoInfo, start: float = 0.0, end: float | None = None,
                  fps: float | None = None) -> list[tuple[int, float]]:
    """(source frame index, time in s) of the frames to use, in order, without decoding.

    Source frame i is at i / info.fps; frames with start <= t < end are candidates. With `fps`
    below the source's, output frame k is the candidate nearest to start + k / fps (frames are
    dropped, never repeated); otherwise every candidate is used. Raises UserError when the range
    is empty or the arguments make no sense.
    """
    _check_range(info, start, end, fps)
    first = max(0, math.ceil(start * info.fps - _TIME_EPS))
    stop = info.n_frames
    if end is not None:
        stop = min(stop, math.ceil(end * info.fps - _TIME_EPS))
    if fps is None or fps >= info.fps:
        chosen = list(range(first, stop))
    else:
        chosen = _nearest_frames(info.fps, first, stop, start, fps)
    if not chosen:
        until = "the end" if end is None else f"{end:g} s"
        raise UserError(f"no frames between {start:g} s and {until}: the video has {info.n_frames} "
                        f"frames at {info.fps:.3f} fps ({info.duration:.2f} s)", file=info.path,
                        field="start")
    return [(index, index / info.fps) for index in chosen]


def _check_range(info: VideoInfo, start: float, end: float | None, fps: float | None) -> None:
    if start < 0:
        raise UserError(f"expected a time >= 0 s, got {start!r}", file=info.path, field="start")
    if end is not None and end <= start:
        raise UserError(f"expected an end after start ({start:g} s), got {end!r}", file=info.path,
                        field="end")
    if fps is not None and fps <= 0:
        raise UserError(f"expected a frame rate > 0, got {fps!r}", file=info.path, field="fps")


def _nearest_frames(source_fps: float, first: int, stop: int, start: float,
                    fps: float) -> list[int]:
    chosen: list[int] = []
    for k in itertools.count():
        position = (start + k / fps) * source_fps  # in source frames
        if position >= stop - _TIME_EPS:
            break
        index = min(max(math.floor(position + 0.5), first), stop - 1)
        if not chosen or index > chosen[-1]:  # drop, never duplicate
            chosen.append(index)
    return chosen


def iter_frames(path: Path, start: float = 0.0, end: float | None = None,
                fps: float | None = None,
                info: VideoInfo | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode the frames select_frames() picks, streaming: (k, source time in s, float32 RGB
    H×W×3 in [0,1]) with k = 0, 1, ... Pass `info` to skip probing again.

    Decoding starts at the first frame (exact indices beat fast seeking) and stops after the last
    selected one. If the file holds fewer frames than probed (only possible when n_frames was
    estimated), iteration ends early.
    """
    info = info or probe_video(path)
    plan = select_frames(info, start, end, fps)
    reader = imageio_ffmpeg.read_frames(
        str(info.path.absolute()),
        input_params=["-protocol_whitelist", INPUT_PROTOCOLS],
        output_params=["-map", "0:v:0", "-fps_mode", "passthrough",
                       "-frames:v", str(plan[-1][0] + 1)])
    try:
        width, height = _next_or_fail(reader, info.path)["size"]
        wanted = iter(enumerate(plan))
        k, (index, t) = next(wanted)
        for source_index in itertools.count():
            raw = _next_or_fail(reader, info.path)
            if raw is None:
                return
            if source_index < index:
                continue
            frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
            yield k, t, frame.astype(np.float32) / 255.0
            step = next(wanted, None)
            if step is None:
                return
            k, (index, t) = step
    finally:
        reader.close()  # stops ffmpeg when the consumer stops early


def _next_or_fail(reader: Iterator, path: Path):
    """The reader's next item (None at the end), its decode failures as UserError."""
    try:
        return next(reader, None)
    except (OSError, RuntimeError) as e:  # what imageio-ffmpeg raises for unreadable input
        raise UserError(f"cannot decode video: {str(e).splitlines()[0]}", file=path) from None
