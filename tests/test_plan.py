"""Tests for batch_style.pipeline.plan: units from a manifest, their paths, hashes and warm-start chains."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import CLIP_FPS, CLIP_FRAMES, SMALL
from PIL import Image

from batch_style.media import video
from batch_style.pipeline import assemble
from batch_style.pipeline.plan import make_plan
from batch_style.pipeline.read import manifest
from batch_style.pipeline.state.run_folder import FRAME_NAME, STATE_DIR, frames_fingerprint
from batch_style.pipeline.state.run_folder import result_names as stems


def plan_of(write_manifest, jobs, **kwargs):
    m = manifest.load(write_manifest(jobs, **kwargs))
    return m, make_plan(m)


def pair_job(media_dir, **extra):
    return {"name": "pair", "content": str(media_dir / "photo.png"),
            "style": str(media_dir / "style.png"), **extra}


def clip_job(media_dir, **extra):
    return {"name": "clip", "video": str(media_dir / "clip.mp4"),
            "style": str(media_dir / "style.png"), **extra}


def test_image_units_keys_and_layout(media_dir, write_manifest):
    m, plan = plan_of(write_manifest, [
        pair_job(media_dir, outputs=["image", "progress_gif"]),
        {"name": "fold", "content": str(media_dir / "folder"), "style": str(media_dir / "style.png")},
    ])
    out = m.output
    assert [u.key for u in plan.units] == ["pair/photo", "fold/a", "fold/b", "fold/c"]
    pair, *folder = plan.units
    assert pair.output == out / "pair" / "photo.png"
    assert pair.progress_gif == out / "pair" / "photo.progress.gif"
    assert pair.content == media_dir / "photo.png"
    assert pair.styles == (media_dir / "style.png",)
    assert [u.output for u in folder] == [out / "fold" / f"{n}.png" for n in "abc"]
    assert all(u.progress_gif is None for u in folder)  # not asked for
    assert all(u.previous is None and u.steps is None for u in plan.units)
    assert plan.videos == ()
    assert len({u.hash for u in plan.units}) == len(plan.units)


def test_video_layout_with_frames(media_dir, write_manifest):
    m, plan = plan_of(write_manifest, [clip_job(media_dir, outputs=["mp4", "gif", "frames"])])
    (vp,) = plan.videos
    out = m.output
    assert vp.key == "clip/clip#video"
    assert vp.outputs == {"mp4": out / "clip" / "clip.mp4", "gif": out / "clip" / "clip.gif"}
    assert len(vp.units) == CLIP_FRAMES and plan.units == vp.units
    assert [u.key for u in vp.units][:2] == ["clip/clip/000000", "clip/clip/000001"]
    assert [u.output for u in vp.units] == [out / "clip" / "frames" / "clip" / FRAME_NAME.format(i)
                                            for i in range(CLIP_FRAMES)]
    # Inputs are the frames extracted under the run's state folder, never in the results.
    assert all(u.content.parent == vp.frames_dir for u in vp.units)
    assert vp.frames_dir.is_relative_to(out / STATE_DIR)
    assert vp.fps == pytest.approx(CLIP_FPS) and vp.has_audio


def test_video_frames_stay_in_the_state_folder_unless_asked_for(media_dir, write_manifest):
    m, plan = plan_of(write_manifest, [clip_job(media_dir, outputs=["mp4"])])
    (vp,) = plan.videos
    assert list(vp.outputs) == ["mp4"]
    assert all(u.output.is_relative_to(m.output / STATE_DIR) for u in vp.units)


@pytest.mark.parametrize("window, expected", [
    ({}, [(i, i / CLIP_FPS) for i in range(CLIP_FRAMES)]),
    ({"start": 0.5, "end": 0.7}, [(i, i / CLIP_FPS) for i in range(15, 21)]),
    ({"fps": 10}, [(i, i / CLIP_FPS) for i in range(0, CLIP_FRAMES, 3)]),
    ({"start": 0.2, "end": 1.0, "fps": 15}, [(i, i / CLIP_FPS) for i in range(6, 30, 2)]),
    ({"fps": 60}, [(i, i / CLIP_FPS) for i in range(CLIP_FRAMES)]),  # never above the source
])
def test_video_frame_selection(media_dir, write_manifest, window, expected):
    _, plan = plan_of(write_manifest, [clip_job(media_dir, **window)])
    (vp,) = plan.videos
    assert [i for i, _ in vp.frames] == [i for i, _ in expected]
    assert [t for _, t in vp.frames] == pytest.approx([t for _, t in expected])
    assert len(vp.units) == len(expected)
    assert vp.fps == pytest.approx(min(window.get("fps", CLIP_FPS), CLIP_FPS))
    assert vp.start == pytest.approx(expected[0][1])
    assert vp.duration == pytest.approx(len(expected) / vp.fps)


def test_warm_start_chains_each_frame_to_the_one_before(media_dir, write_manifest):
    _, plan = plan_of(write_manifest, [clip_job(media_dir, end=0.2)])
    first, *rest = plan.units
    assert first.previous is None and first.previous_output is None and first.steps is None
    for before, unit in zip(plan.units, rest):
        assert unit.previous == before.key
        assert unit.previous_output == before.output
        assert unit.steps == SMALL["frame_steps"]


def test_cost_is_planned_steps_times_pixels(media_dir, write_manifest):
    """What time left is estimated in: a warm-started frame has frame_steps, not steps, and a
    job at twice the size has 4× the pixels."""
    _, plan = plan_of(write_manifest, [clip_job(media_dir, end=0.2),
                                       pair_job(media_dir, settings={"size": 2 * SMALL["size"]})])
    first, second, *_ = plan.units
    pair = plan.units[-1]
    assert first.cost == SMALL["steps"] * SMALL["size"] ** 2
    assert second.cost == SMALL["frame_steps"] * SMALL["size"] ** 2
    assert pair.cost == SMALL["steps"] * (2 * SMALL["size"]) ** 2


def test_without_warm_start_frames_are_independent(media_dir, write_manifest):
    # The comparison baseline: no warm start and no temporal term (it holds a frame near the one
    # before, so it chains frames too).
    _, plan = plan_of(write_manifest, [clip_job(media_dir, end=0.2,
                                                settings={"warm_start": False,
                                                          "temporal_weight": 0.0})])
    assert all(u.previous is None and u.previous_output is None and u.steps is None
               for u in plan.units)


def test_init_image_reaches_image_and_video_units(media_dir, write_manifest):
    init = str(media_dir / "folder" / "a.png")
    _, plan = plan_of(write_manifest, [pair_job(media_dir), clip_job(media_dir, end=0.1)],
                      defaults={**SMALL, "init": init})
    assert all(u.init == Path(init) for u in plan.units)
    # A named start is no file: the manifest reads it as a name, not a path to check.
    _, plan = plan_of(write_manifest, [pair_job(media_dir)],
                      defaults={**SMALL, "init": "painting-colors"})
    assert all(u.init is None and u.settings.init == "painting-colors" for u in plan.units)


# -- hashes: the ledger's "same work" test ----------------------------------------------------
def hashes(write_manifest, media_dir, settings=None, **job):
    _, plan = plan_of(write_manifest, [pair_job(media_dir, **job), clip_job(media_dir, end=0.1)],
                      defaults={**SMALL, **(settings or {})})
    return [u.hash for u in plan.units] + [v.hash for v in plan.videos]


def test_hashes_are_stable(media_dir, write_manifest, tmp_path):
    before = hashes(write_manifest, media_dir)
    # Same manifest written again, inputs touched (mtime only), another output folder: same work.
    for path in (media_dir / "photo.png", media_dir / "style.png", media_dir / "clip.mp4"):
        os.utime(path, None)
    assert hashes(write_manifest, media_dir) == before
    _, plan = plan_of(write_manifest, [pair_job(media_dir), clip_job(media_dir, end=0.1)],
                      output=tmp_path / "elsewhere")
    assert [u.hash for u in plan.units] + [v.hash for v in plan.videos] == before


@pytest.mark.parametrize("settings", [{"steps": 4}, {"style_weight": 2.0}, {"size": 40},
                                      {"seed": 1}, {"optimizer": "lbfgs"}])
def test_hashes_change_with_settings(media_dir, write_manifest, settings):
    before = hashes(write_manifest, media_dir)
    after = hashes(write_manifest, media_dir, settings)
    assert all(a != b for a, b in zip(before, after))


def test_hashes_change_with_outputs_asked_for(media_dir, write_manifest):
    before = hashes(write_manifest, media_dir)
    after = hashes(write_manifest, media_dir, outputs=["image", "progress_gif"])
    assert before[0] != after[0]
    assert before[1:] == after[1:]


@pytest.mark.parametrize("changed", ["photo.png", "style.png"])
def test_hashes_change_with_input_bytes(media_dir, write_manifest, tmp_path, changed):
    # A private copy of the inputs, so the shared media stay as they are.
    inputs = tmp_path / "inputs"
    shutil.copytree(media_dir, inputs)
    before = hashes(write_manifest, inputs)
    with Image.open(inputs / changed) as im:
        pixels = np.asarray(im.convert("RGB")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(inputs / changed)
    after = hashes(write_manifest, inputs)
    assert before[0] != after[0]  # the pair uses both files
    assert (before[1:] != after[1:]) == (changed == "style.png")  # the clip uses the style only


# -- names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("names, expected", [
    (["a.png", "b.jpg"], ["a", "b"]),
    (["a.jpg", "a.png", "b.png"], ["a_jpg", "a_png", "b"]),
    (["my.photo.jpg", "my.photo.png"], ["my_photo_jpg", "my_photo_png"]),
    # a_png.png's own stem meets the renamed a.png: the later one is numbered
    (["a.jpg", "a.png", "a_png.png"], ["a_jpg", "a_png", "a_png-2"]),
    (["a.png", "a.jpg", "a_png.png", "a_png-2.png"], ["a_png", "a_jpg", "a_png-3", "a_png-2"]),
])
def test_stems_are_unique(names, expected):
    result = stems([Path("/in") / n for n in names])
    assert result == expected
    assert len(set(result)) == len(result)


def test_colliding_stems_in_a_job(media_dir, write_manifest, tmp_path):
    folder = tmp_path / "same"
    folder.mkdir()
    for name in ("x.png", "x.jpg"):
        Image.open(media_dir / "photo.png").convert("RGB").save(folder / name)
    m, plan = plan_of(write_manifest, [{"name": "same", "content": str(folder),
                                        "style": str(media_dir / "style.png")}])
    assert [u.key for u in plan.units] == ["same/x_jpg", "same/x_png"]
    assert [u.output.name for u in plan.units] == ["x_jpg.png", "x_png.png"]


# -- extraction and assembly bookkeeping ---------------------------------------------------------
def test_extracted_frames_are_kept_apart_per_window(media_dir, write_manifest, tmp_path):
    _, plan_all = plan_of(write_manifest, [clip_job(media_dir, end=0.2)])
    _, plan_same = plan_of(write_manifest, [clip_job(media_dir, end=0.2)])
    _, plan_fps = plan_of(write_manifest, [clip_job(media_dir, end=0.2, fps=10)])
    (vp,), (same,), (other,) = plan_all.videos, plan_same.videos, plan_fps.videos
    assert vp.frames_dir == same.frames_dir
    assert vp.frames_dir != other.frames_dir and vp.frames_dir.parent == other.frames_dir.parent

    assert assemble.extract_frames(vp) == len(vp.units)
    assert assemble.extract_frames(vp) == 0  # resumable: frames on disk are kept
    assert assemble.extract_frames(other) == len(other.units)
    assert not vp.frames_dir.exists()  # the other window's frames are stale now
    # Frame k of the fps-10 window is source frame 3k, not source frame k.
    source = dict(enumerate(f for _, _, f in video.iter_frames(media_dir / "clip.mp4", 0, 0.2)))
    for k, (index, _) in enumerate(other.frames):
        with Image.open(other.frames_dir / FRAME_NAME.format(k)) as im:
            extracted = np.asarray(im, np.float32) / 255
        assert np.abs(extracted - source[index]).max() < 1 / 255 + 1e-6


def test_frames_fingerprint_follows_the_frame_records():
    keys = ["v/c/000000", "v/c/000001"]
    latest = {k: {"key": k, "status": "done", "hash": "h", "time": 1.0} for k in keys}
    before = frames_fingerprint(keys, latest)
    assert frames_fingerprint(keys, dict(latest)) == before
    redone = dict(latest, **{keys[1]: {**latest[keys[1]], "time": 2.0}})
    assert frames_fingerprint(keys, redone) != before
    failed = dict(latest, **{keys[1]: {**latest[keys[1]], "status": "failed"}})
    assert frames_fingerprint(keys, failed) != before


def _mask_png(path: Path, size, left: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = np.zeros((h, w), np.uint8)
    pixels[:, : w // 2] = 255 if left else 0
    pixels[:, w // 2:] = 0 if left else 255
    Image.fromarray(pixels).save(path)
    return path


def _mask_clip(path: Path, frames: int = CLIP_FRAMES) -> Path:
    """A mask video of the clip's size: white on a band that moves right a pixel a frame."""
    from batch_style.media import encode

    w, h = 64, 48
    def frame(i):
        image = np.zeros((h, w, 3), np.float32)
        image[:, i:i + 16] = 1.0
        return image
    encode.write_mp4((frame(i) for i in range(frames)), path, CLIP_FPS)
    return path


def test_masks_are_matched_to_photos_and_in_the_hash(media_dir, write_manifest, tmp_path):
    masks = tmp_path / "masks"
    for name in "abc":
        _mask_png(masks / f"{name}.png", (56, 40), left=name != "b")
    left = _mask_png(tmp_path / "left.png", (64, 48))
    job = {"name": "fold", "content": str(media_dir / "folder"),
           "style": [{"image": str(media_dir / "style.png"), "mask": str(masks)},
                     str(media_dir / "style.png")],
           "protect": str(masks)}
    pair = pair_job(media_dir, style={"image": str(media_dir / "style.png"), "mask": str(left),
                                      "image_mask": str(_mask_png(tmp_path / "s.png", (64, 64)))})
    _, plan = plan_of(write_manifest, [job, pair])
    a, b, c, photo = plan.units
    assert a.masks == (masks / "a.png", None) and b.masks == (masks / "b.png", None)
    assert (a.protect, c.protect) == (masks / "a.png", masks / "c.png")
    assert photo.masks == (left,) and photo.image_masks == (tmp_path / "s.png",)
    before = photo.hash
    # Same bytes, same work; other bytes in a mask, another unit.
    assert plan_of(write_manifest, [job, pair])[1].units[3].hash == before
    _mask_png(left, (64, 48), left=False)
    assert plan_of(write_manifest, [job, pair])[1].units[3].hash != before
    # A job without masks hashes as before masks existed.
    plain = plan_of(write_manifest, [pair_job(media_dir)])[1].units[0]
    assert plain.masks == () and plain.protect is None


def test_a_mask_video_follows_the_frames(media_dir, write_manifest, tmp_path):
    moving = _mask_clip(tmp_path / "band.mp4")
    still = _mask_png(tmp_path / "still.png", (64, 48))
    m, plan = plan_of(write_manifest, [clip_job(
        media_dir, style={"image": str(media_dir / "style.png"), "mask": str(moving)},
        protect=str(still), start=0.5, fps=10)])
    (vp,) = plan.videos
    (source, folder), = vp.mask_videos
    assert source == moving and folder.parent == vp.frames_dir
    for i, unit in enumerate(vp.units):
        assert unit.masks == (folder / FRAME_NAME.format(i),) and unit.protect == still
    assemble.extract_frames(vp)
    for i, (index, _) in enumerate(vp.frames):
        mask = np.asarray(Image.open(folder / FRAME_NAME.format(i)).convert("L")) / 255.0
        # The band starts at the source frame's index: the mask of the frame, not of frame i.
        assert np.argmax(mask.mean(axis=0) > 0.5) == pytest.approx(index, abs=1)
