"""H.264 MP4 (with the source's audio) and GIF writing with imageio-ffmpeg's ffmpeg."""

from __future__ import annotations

import itertools
import subprocess
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import IO

import imageio_ffmpeg
import numpy as np

from batch_style.atomic import atomic_path, scratch_path
from batch_style.media import gif, images
from batch_style.media.video import INPUT_PROTOCOLS, ffprobe_like, local_file

H264_CRF = 18  # constant quality, 0 (lossless) .. 51; 18 is visually near-lossless
H264_PRESET = "medium"
AAC_BITRATE = "160k"  # bits per second
# sRGB frames are converted with the BT.709 matrix and tagged as such, so players do not guess.
_YUV_FILTER = ("scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
               "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709")
_LOG_TAIL = 2000  # characters of ffmpeg's log quoted in an error


def write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float,
              audio_from: Path | None = None, audio_start: float = 0.0,
              audio_duration: float | None = None) -> int:
    """Encode frames (float [0,1] or uint8, H×W×3) as H.264 MP4, atomically; return the count.

    yuv420p needs even sides: an odd width or height is padded by one pixel that repeats the
    last column or row (padding keeps every stylized pixel; cropping would drop some). Frames of
    another size than the first are resized to it. When `audio_from` has an audio stream, its
    audio from `audio_start` for `audio_duration` seconds (to its end when None) is re-encoded to
    AAC and muxed in, padded with silence or cut so that it ends with the video.
    """
    path = Path(path)
    audio = _audio_source(audio_from, audio_start)
    with atomic_path(path) as out:
        if audio is None:
            return _encode_h264(frames, out, fps)
        with scratch_path(path) as video_only:
            count = _encode_h264(frames, video_only, fps)
            _mux_audio(video_only, audio, out, audio_start, audio_duration, count / fps)
        return count


def write_gif(frames: Iterable[np.ndarray], path: Path, fps: float,
              hold_last_ms: float = 0.0) -> None:
    """An animated GIF at `fps` (see gif.save_gif)."""
    gif.save_gif(frames, path, duration_ms=1000.0 / fps, hold_last_ms=hold_last_ms)


def _audio_source(audio_from: Path | None, audio_start: float) -> Path | None:
    """`audio_from` as a local file when it has audio after `audio_start`, else None."""
    if audio_from is None:
        return None
    source = local_file(audio_from)
    header = ffprobe_like(source, count_frames=False)
    if not any(s["type"] == "audio" for s in header["streams"]):
        return None
    if header["duration"] is not None and audio_start >= header["duration"]:
        return None
    return source


def _encode_h264(frames: Iterable[np.ndarray], out: Path, fps: float) -> int:
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_mp4 needs at least one frame")
    height, width = first.shape[:2]
    rate = Fraction(fps).limit_denominator()  # exact rationals: 30000/1001 stays 30000/1001
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-y", "-loglevel", "error",
           "-protocol_whitelist", "pipe", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width + width % 2}x{height + height % 2}", "-r", str(rate), "-i", "pipe:0",
           "-map", "0:v:0", "-vf", _YUV_FILTER, "-c:v", "libx264", "-preset", H264_PRESET,
           "-crf", str(H264_CRF), "-movflags", "+faststart", "-f", "mp4", str(out)]
    with tempfile.TemporaryFile() as log:
        # Unbuffered stdin: a write fails at once if ffmpeg died, and close() has nothing to flush.
        process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=log, bufsize=0)
        count = 0
        try:
            for frame in itertools.chain([first], frames):
                process.stdin.write(_rgb24(frame, (width, height)).tobytes())
                count += 1
        except BrokenPipeError:
            pass  # ffmpeg exited early; its exit status and log, checked below, say why
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdin.close()
        _check_ffmpeg(process.wait(), log, cmd)
    return count


def _rgb24(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A frame as contiguous uint8 RGB of `size` (w, h), padded to even sides."""
    if frame.shape[1::-1] != size:
        frame = images.resize(images.to_float(frame), size)
    pixels = images.to_uint8(frame)
    width, height = size
    if width % 2 or height % 2:
        pixels = np.pad(pixels, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(pixels)


def _mux_audio(video: Path, audio: Path, out: Path, start: float, duration: float | None,
               video_duration: float) -> None:
    """Copy `video`'s stream and add `audio`'s first audio stream cut to [start, start+duration].

    -ss/-t before the audio input trim while decoding (sample-accurate, no keyframe snapping);
    AAC re-encoding is what makes a cut at any time possible. apad plus the output -t make the
    audio end exactly with the video whatever the source's length.
    """
    trim = ["-ss", f"{start:.6f}"] + ([] if duration is None else ["-t", f"{duration:.6f}"])
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
           "-protocol_whitelist", INPUT_PROTOCOLS, "-i", str(video),
           "-protocol_whitelist", INPUT_PROTOCOLS, *trim, "-i", str(audio),
           "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", AAC_BITRATE,
           "-af", "apad", "-t", f"{video_duration:.6f}", "-movflags", "+faststart",
           "-f", "mp4", str(out)]
    with tempfile.TemporaryFile() as log:
        code = subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=log).returncode
        _check_ffmpeg(code, log, cmd)


class FfmpegError(RuntimeError):
    """ffmpeg refused to write a video: the first line says why, the rest is its log."""


def _check_ffmpeg(code: int, log: IO[bytes], cmd: list[str]) -> None:
    if code == 0:
        return
    log.seek(0)
    said = log.read().decode("utf-8", "replace")[-_LOG_TAIL:]
    last = next((line for line in reversed(said.splitlines()) if line.strip()), "no message")
    raise FfmpegError(f"ffmpeg failed (exit status {code}): {last.strip()}\n"
                      f"{' '.join(cmd)}\n{said}")
