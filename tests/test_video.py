"""Tests for batch_style.video: tiny generated clips in a temp folder, plus the sample clip."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from batch_style.errors import UserError
from batch_style.media import encode, gif, video
from batch_style.media.video import VideoInfo

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "clips" / "realshort.mp4"
needs_sample = pytest.mark.skipif(not SAMPLE.is_file(), reason="sample clip not available")

CLIP_FPS = 20
CLIP_FRAMES = 20
GREY_STEP = 12  # frame i of the generated clip is uniformly grey i * GREY_STEP (out of 255)


def ffmpeg(*args):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    *args], check=True, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder with clip.mp4 (64×48, 20 frames at 20 fps, 1 s sine audio), silent.mp4 (same
    frames, no audio) and tone.wav (audio only)."""
    folder = tmp_path_factory.mktemp("clips")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(folder / "tone.wav"))
    for name, audio in [("clip.mp4", folder / "tone.wav"), ("silent.mp4", None)]:
        writer = imageio_ffmpeg.write_frames(
            str(folder / name), (64, 48), fps=CLIP_FPS, quality=10, macro_block_size=1,
            audio_path=None if audio is None else str(audio), audio_codec="aac")
        writer.send(None)
        for index in range(CLIP_FRAMES):
            writer.send(np.full((48, 64, 3), index * GREY_STEP, np.uint8))
        writer.close()
    return folder


def audio_rms(path: Path, rate=8000) -> np.ndarray:
    """RMS level of the first audio stream per 50 ms block, as a fraction of full scale."""
    pcm = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                          "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(rate),
                          "-f", "s16le", "-"], check=True, capture_output=True).stdout
    samples = np.frombuffer(pcm, np.int16).astype(np.float64) / 32768
    block = rate // 20
    usable = len(samples) // block * block
    return np.sqrt((samples[:usable].reshape(-1, block) ** 2).mean(axis=1))


def grey_index(frame: np.ndarray) -> int:
    """Which generated frame this is, from its grey level."""
    return round(float(frame.mean()) * 255 / GREY_STEP)


def gradient_frames(count, width=64, height=48):
    x = np.linspace(0, 1, width, dtype=np.float32)
    for index in range(count):
        frame = np.empty((height, width, 3), np.float32)
        frame[..., 0] = x
        frame[..., 1] = np.linspace(0, 1, height, dtype=np.float32)[:, None]
        frame[..., 2] = index / max(1, count - 1)
        yield frame


# ----- probing


def test_probe_generated_clip(clips):
    info = video.probe_video(clips / "clip.mp4")
    assert info.fps == pytest.approx(CLIP_FPS)
    assert info.n_frames == CLIP_FRAMES
    assert info.size == (64, 48)
    assert info.duration == pytest.approx(1.0, abs=0.06)
    assert info.has_audio
    assert not video.probe_video(clips / "silent.mp4").has_audio


@needs_sample
def test_probe_sample_clip():
    info = video.probe_video(SAMPLE)
    # ffmpeg reports 30.02 fps: the frames really are 2998/90000 s apart.
    assert info.fps == pytest.approx(30.02, abs=0.005)
    assert info.n_frames == 36
    assert info.size == (320, 240)
    assert info.duration == pytest.approx(1.2, abs=0.01)
    assert info.has_audio


def test_probe_animated_gif(tmp_path):
    path = tmp_path / "a.gif"
    gif.save_gif(gradient_frames(6), path, duration_ms=[100, 100, 200, 100, 100, 200])
    info = video.probe_video(path)
    assert info.n_frames == 6
    assert info.duration == pytest.approx(0.8)
    assert info.fps == pytest.approx(6 / 0.8)  # from the frame delays
    assert not info.has_audio


@pytest.mark.parametrize("name", ["http://example.com/v.mp4", "https://example.com/v.mp4",
                                  "concat:a.mp4|b.mp4", "file:clip.mp4"])
def test_probe_refuses_urls(name):
    for path in (name, Path(name)):  # Path() turns "http://x" into "http:/x"
        with pytest.raises(UserError, match="only local video files"):
            video.probe_video(path)


def test_probe_refuses_playlists(tmp_path):
    playlist = tmp_path / "list.m3u8"
    playlist.write_text("#EXTM3U\nhttp://example.com/seg0.ts\n")
    with pytest.raises(UserError, match="only local video files"):
        video.probe_video(playlist)


def test_probe_refuses_non_videos(tmp_path, clips):
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    still = tmp_path / "still.png"
    Image.new("RGB", (8, 8)).save(still)
    cases = [(text, "not a video: ffmpeg cannot read it"), (still, "not a video: a still image"),
             (clips / "tone.wav", "not a video: no video stream"),
             (tmp_path / "missing.mp4", "no such file")]
    for path, message in cases:
        with pytest.raises(UserError, match=message) as err:
            video.probe_video(path)
        assert err.value.file is not None


def test_ffprobe_like_reports_streams(clips):
    info = video.ffprobe_like(clips / "clip.mp4")
    assert [s["type"] for s in info["streams"]] == ["video", "audio"]
    assert info["streams"][0]["codec"] == "h264"
    assert info["streams"][1]["codec"] == "aac"
    assert info["frames"] == CLIP_FRAMES
    assert video.ffprobe_like(clips / "clip.mp4", count_frames=False)["frames"] == 1


# ----- selecting frames


def info_at(fps, n_frames):
    return VideoInfo(path=Path("v.mp4"), fps=fps, n_frames=n_frames, duration=n_frames / fps,
                     size=(64, 48), has_audio=False)


@pytest.mark.parametrize("start, end, fps, indices", [
    (0.0, None, None, list(range(36))),
    (0.5, 1.0, None, list(range(15, 30))),  # start <= t < end
    (0.0, None, 10, list(range(0, 36, 3))),
    (0.0, 0.5, 12, [0, 3, 5, 8, 10, 13]),  # nearest to k/12 s: 2.5 frames apart
    (0.0, None, 60, list(range(36))),  # above the source rate: every frame once
    (1.1, None, 1, [33]),
])
def test_select_frames(start, end, fps, indices):
    info = info_at(30.0, 36)
    chosen = video.select_frames(info, start, end, fps)
    assert [index for index, _ in chosen] == indices
    assert all(t == pytest.approx(index / 30.0) for index, t in chosen)


def test_select_frames_never_duplicates():
    for source_fps, fps in [(30.0, 29.0), (30000 / 1001, 24.0), (25.0, 24.9), (10.0, 3.3)]:
        info = info_at(source_fps, 200)
        indices = [index for index, _ in video.select_frames(info, 0.3, 5.0, fps)]
        assert indices == sorted(set(indices))
        assert len(indices) == pytest.approx((5.0 - 0.3) * fps, abs=1)


@pytest.mark.parametrize("start, end, fps, field", [
    (2.0, None, None, "start"), (-1.0, None, None, "start"), (0.5, 0.5, None, "end"),
    (0.0, None, 0.0, "fps"),
])
def test_select_frames_refuses_empty_or_bad_ranges(start, end, fps, field):
    with pytest.raises(UserError) as err:
        video.select_frames(info_at(30.0, 36), start, end, fps)
    assert err.value.field == field


# ----- reading


def test_iter_frames_all(clips):
    frames = list(video.iter_frames(clips / "clip.mp4"))
    assert [k for k, _, _ in frames] == list(range(CLIP_FRAMES))
    assert [grey_index(f) for _, _, f in frames] == list(range(CLIP_FRAMES))
    assert frames[5][1] == pytest.approx(5 / CLIP_FPS)
    assert frames[0][2].dtype == np.float32 and frames[0][2].shape == (48, 64, 3)


def test_iter_frames_uses_select_frames(clips):
    info = video.probe_video(clips / "clip.mp4")
    plan = video.select_frames(info, 0.2, 0.9, 6)
    frames = list(video.iter_frames(clips / "clip.mp4", 0.2, 0.9, 6, info=info))
    assert [(k, t) for k, t, _ in frames] == [(k, t) for k, (_, t) in enumerate(plan)]
    assert [grey_index(f) for _, _, f in frames] == [index for index, _ in plan]


def test_iter_frames_stops_when_the_consumer_stops(clips):
    frames = video.iter_frames(clips / "clip.mp4")
    first = next(frames)
    frames.close()  # ffmpeg is stopped, not left running
    assert first[0] == 0


@needs_sample
@pytest.mark.parametrize("start, end, fps", [(0.0, None, None), (0.2, 1.0, 15), (0.5, None, 10)])
def test_iter_frames_sample_counts(start, end, fps):
    info = video.probe_video(SAMPLE)
    frames = list(video.iter_frames(SAMPLE, start, end, fps))
    assert len(frames) == len(video.select_frames(info, start, end, fps))
    assert all(start <= t < (end or 99) for _, t, _ in frames)
    if fps is not None:
        assert len(frames) == pytest.approx(((end or info.duration) - start) * fps, abs=1)


# ----- writing


@needs_sample
def test_write_mp4_with_the_sample_audio(tmp_path):
    info = video.probe_video(SAMPLE)
    out = tmp_path / "out.mp4"
    frames = (frame for _, _, frame in video.iter_frames(SAMPLE))
    assert encode.write_mp4(frames, out, info.fps, audio_from=SAMPLE) == 36
    written = video.probe_video(out)
    assert written.n_frames == 36
    assert written.fps == pytest.approx(30.0, abs=0.05)
    assert written.has_audio
    assert written.size[0] % 2 == 0 and written.size[1] % 2 == 0
    streams = video.ffprobe_like(out)["streams"]
    assert (streams[0]["codec"], streams[0]["pix_fmt"]) == ("h264", "yuv420p")
    assert streams[1]["codec"] == "aac"
    assert written.duration == pytest.approx(36 / info.fps, abs=0.05)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_write_mp4_round_trip_and_odd_size(tmp_path):
    out = tmp_path / "odd.mp4"
    frames = list(gradient_frames(8, width=33, height=25))
    assert encode.write_mp4(iter(frames), out, fps=12) == 8
    info = video.probe_video(out)
    assert info.size == (34, 26)  # padded by one pixel
    assert info.n_frames == 8 and info.fps == pytest.approx(12)
    assert not info.has_audio
    decoded = [f for _, _, f in video.iter_frames(out, info=info)]
    for got, want in zip(decoded, frames, strict=True):
        assert np.abs(got[:25, :33] - want).mean() < 0.02
        assert np.abs(got[:, 33] - got[:, 32]).mean() < 0.03  # the pad repeats the edge


def test_write_mp4_trims_the_audio(tmp_path, clips):
    out = tmp_path / "trimmed.mp4"
    encode.write_mp4(gradient_frames(10), out, fps=CLIP_FPS, audio_from=clips / "clip.mp4",
                    audio_start=0.5, audio_duration=0.5)
    info = video.probe_video(out)
    assert info.has_audio and info.n_frames == 10
    assert info.duration == pytest.approx(0.5, abs=0.05)
    rms = audio_rms(out)
    assert len(rms) == pytest.approx(10, abs=1)  # 50 ms blocks: the audio is 0.5 s long
    assert rms[1:-1].min() > 0.05  # and it is the tone all through


def test_write_mp4_audio_shorter_than_video_is_padded(tmp_path, clips):
    out = tmp_path / "long.mp4"
    encode.write_mp4(gradient_frames(30), out, fps=CLIP_FPS, audio_from=clips / "clip.mp4",
                    audio_start=0.8)  # 0.2 s of audio under 1.5 s of video
    info = video.probe_video(out)
    assert info.has_audio and info.n_frames == 30
    assert info.duration == pytest.approx(1.5, abs=0.05)
    rms = audio_rms(out)
    assert len(rms) == pytest.approx(30, abs=1)  # audio as long as the video
    assert rms[:3].min() > 0.05  # the tone's last 0.2 s ...
    assert rms[6:].max() < 0.001  # ... then silence


def test_write_mp4_without_audio_in_the_source(tmp_path, clips):
    out = tmp_path / "quiet.mp4"
    encode.write_mp4(gradient_frames(4), out, fps=10, audio_from=clips / "silent.mp4")
    assert not video.probe_video(out).has_audio


def test_write_mp4_failure_leaves_nothing(tmp_path, clips):
    def broken():
        yield from gradient_frames(3)
        raise RuntimeError("worker died")
    with pytest.raises(RuntimeError, match="worker died"):
        encode.write_mp4(broken(), tmp_path / "x.mp4", fps=10, audio_from=clips / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


def test_write_gif(tmp_path):
    out = tmp_path / "clip.gif"
    encode.write_gif(gradient_frames(6), out, fps=10)
    with Image.open(out) as im:
        assert im.n_frames == 6
        delays = []
        for index in range(im.n_frames):
            im.seek(index)
            delays.append(im.info["duration"])
    assert delays == [100] * 6
    info = video.probe_video(out)
    assert (info.n_frames, info.fps) == (6, pytest.approx(10))
