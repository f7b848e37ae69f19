"""Image sequences as video jobs: a folder, a glob or a printf pattern of numbered frames in;
frames out under the input's numbers and bit depth; resume; one-line manifest errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, ledger_records
from test_flow import texture

from batch_style import orchestrator as runner
from batch_style.errors import UserErrors
from batch_style.media import images, sequence, video
from batch_style.pipeline.plan import make_plan
from batch_style.pipeline.read import manifest

SERIAL = runner.RunOptions(workers=0, tiny=True)
NUMBERS = (101, 102, 103, 105, 106)  # a gap at 104: a frame the renderer skipped


def _write_shot(folder: Path, bit_depth: int) -> Path:
    """A 64×48 pan over a texture as shot_0101.png ... shot_0106.png, 104 missing."""
    folder.mkdir()
    wide = texture(7, (96, 48))
    for n in NUMBERS:
        t = n - NUMBERS[0]
        images.save_image(wide[:, 2 * t:2 * t + 64], folder / f"shot_{n:04d}.png",
                          bit_depth=bit_depth)
    return folder


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("shots")
    return {8: _write_shot(root / "shot8", 8), 16: _write_shot(root / "shot16", 16)}


def _png_depth(path: Path) -> int:
    return path.read_bytes()[24]  # IHDR's bit depth


@pytest.mark.parametrize("given", ["{}", "{}/shot_%04d.png", "{}/shot_*.png", "{}/*.png"])
def test_folder_glob_and_pattern_name_the_same_numbered_frames(shots, given):
    info = sequence.probe(Path(given.format(shots[8])))
    assert info.numbers == NUMBERS and info.n_frames == 5
    assert [p.name for p in info.files] == [f"shot_{n:04d}.png" for n in NUMBERS]
    assert info.fps == sequence.DEFAULT_FPS and info.size == (64, 48) and info.bit_depth == 8
    assert not info.has_audio
    assert sequence.stem(Path(given.format(shots[8]))) == ("shot8" if given in ("{}", "{}/*.png")
                                                           else "shot")
    # fps: the sequence's rate; every frame is kept, whatever the rate.
    assert video.select_frames(sequence.at_fps(info, 12.0), 0.0, None, 12.0) == \
        [(k, k / 12.0) for k in range(5)]


def test_sixteen_bit_frames_are_read_with_their_sixteen_bits(shots):
    info = sequence.probe(shots[16])
    assert info.bit_depth == 16
    frame = sequence.load_frame(info.files[0], 10**6)
    levels = np.unique(np.round(frame * 65535).astype(np.int64))
    assert np.any(levels % 257 != 0)  # not 8-bit values scaled up
    assert np.allclose(frame, images.load_image(info.files[0], 10**6), atol=1 / 255)


def test_sequence_job_runs_keeps_numbers_and_depth_and_resumes(shots, write_manifest, cli):
    path = write_manifest([{"name": "seq", "video": f"{shots[16]}/shot_%04d.png", "fps": 12,
                            "style": str(shots[8] / "shot_0101.png"),
                            "outputs": ["frames", "mp4"]}])
    done = cli.run("run", path, "--tiny", "--workers", "0")
    assert done.returncode == 0, done.stderr
    out = path.parent / "out" / "seq"
    written = sorted((out / "frames" / "shot").iterdir())
    assert [p.name for p in written] == [f"shot_{n:04d}.png" for n in NUMBERS]
    assert all(_png_depth(p) == 16 for p in written)
    mp4 = video.probe_video(out / "shot.mp4")
    assert mp4.n_frames == 5 and mp4.fps == pytest.approx(12.0)
    # Frames after the first were warm-started along the flow (a chain, despite the gap).
    steps = [r["steps"] for r in ledger_records(path.parent / "out") if "#video" not in r["key"]]
    assert steps == [SMALL["steps"]] + [SMALL["frame_steps"]] * 4
    stamps = {p: p.stat().st_mtime_ns for p in written}

    again = runner.run([path], SERIAL)
    assert again.exit_code == 0 and again.done == 0 and again.skipped == 5
    assert again.assembled == 0  # the MP4 is not written again
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())


def test_a_changed_frame_file_is_not_taken_as_done(shots, tmp_path, write_manifest):
    folder = tmp_path / "copy"
    folder.mkdir()
    for p in shots[8].iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    path = write_manifest([{"name": "seq", "video": str(folder), "style": str(folder /
                           "shot_0101.png"), "outputs": ["frames"]}])
    assert runner.run([path], SERIAL).exit_code == 0
    (vp,) = make_plan(manifest.load(path)).videos
    before = {u.output.name: u.hash for u in vp.units}
    images.save_image(texture(9, (64, 48)), folder / "shot_0105.png")
    (vp,) = make_plan(manifest.load(path)).videos
    assert vp.fps == sequence.DEFAULT_FPS
    changed = {u.output.name for u in vp.units if before[u.output.name] != u.hash}
    # A sequence's hash covers its files as a video's covers its bytes: every frame is redone.
    assert changed == set(before)


@pytest.mark.parametrize("setup, video_text, expected", [
    (None, "{}/none_%04d.png", "no numbered image frames match the pattern"),
    ("unnumbered", "{}", "'cover.png' has no frame number"),
    ("sizes", "{}", "frames of different sizes"),
    ("depths", "{}", "frames of different bit depths"),
])
def test_bad_sequences_give_one_line_naming_the_field(shots, tmp_path, write_manifest, setup,
                                                      video_text, expected):
    folder = tmp_path / "frames"
    folder.mkdir()
    for p in shots[8].iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    if setup == "unnumbered":
        images.save_image(texture(1, (64, 48)), folder / "cover.png")
    elif setup == "sizes":
        images.save_image(texture(1, (32, 24)), folder / "shot_0200.png")
    elif setup == "depths":
        images.save_image(texture(1, (64, 48)), folder / "shot_0200.png", bit_depth=16)
    path = write_manifest([{"name": "seq", "video": video_text.format(folder),
                            "style": str(folder / "shot_0101.png")}])
    with pytest.raises(UserErrors) as caught:
        manifest.load(path)
    (error,) = caught.value.errors
    line = str(error)
    assert "\n" not in line and "jobs[0].video" in line and expected in line, line
    assert line.startswith(f"{path}:")


def test_fps_below_one_is_refused_for_a_sequence_too(shots, write_manifest):
    path = write_manifest([{"name": "seq", "video": str(shots[8]), "fps": 0.5,
                            "style": str(shots[8] / "shot_0101.png")}])
    with pytest.raises(UserErrors) as caught:
        manifest.load(path)
    assert "jobs[0].fps" in str(caught.value)


def test_start_and_end_count_seconds_at_the_rate_and_old_frames_go(shots, write_manifest):
    job = {"name": "seq", "video": f"{shots[8]}/shot_*.png", "fps": 10,
           "style": str(shots[8] / "shot_0101.png"), "outputs": ["frames"]}
    path = write_manifest([job])
    assert runner.run([path], SERIAL).exit_code == 0
    folder = path.parent / "out" / "seq" / "frames" / "shot"
    assert len(list(folder.iterdir())) == 5
    path = write_manifest([{**job, "start": 0.1, "end": 0.4}])  # frames 1, 2, 3: 102, 103, 105
    summary = runner.run([path], SERIAL)
    assert summary.exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["shot_0102.png", "shot_0103.png",
                                                        "shot_0105.png"]
