"""Looped videos (`loop: true`: the closing pass) and video frames that stop by `tolerance`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SMALL, ledger_records
from test_flow import texture

from batch_style import orchestrator as runner
from batch_style.media import encode
from batch_style.pipeline.plan import LOOP_FRAMES, make_plan
from batch_style.pipeline.read import manifest
from batch_style.pipeline.state import run_folder

SERIAL = runner.RunOptions(workers=0, tiny=True)
FRAMES = 10


@pytest.fixture(scope="module")
def loop_clip(tmp_path_factory) -> Path:
    """10 frames of 64×48: a textured pan right, then back, ending 2 px from where it began."""
    folder = tmp_path_factory.mktemp("loop")
    scene = texture(40, (80, 48))
    offsets = [0, 3, 6, 9, 12, 14, 11, 8, 5, 2]
    encode.write_mp4([scene[:, x:x + 64] for x in offsets], folder / "loop.mp4", 30)
    return folder / "loop.mp4"


def loop_job(clip: Path, style: Path, **extra) -> dict:
    return {"name": "clip", "video": str(clip), "style": str(style), "outputs": ["mp4", "frames"],
            "loop": True, **extra}


def test_plan_closes_the_loop_with_a_pass_of_its_own(loop_clip, media_dir, write_manifest):
    (vp,) = make_plan(manifest.load(write_manifest([loop_job(loop_clip, media_dir / "style.png")]))
                      ).videos
    k = min(LOOP_FRAMES, FRAMES // 2)
    assert vp.loop == k
    # What the video shows: the closing pass's frames, then the chain's own from frame k on.
    assert [u.key for u in vp.units] == [f"clip/loop/loop/{i:06d}" for i in range(k)] + [
        f"clip/loop/{i:06d}" for i in range(k, FRAMES)]
    assert [u.output.name for u in vp.units] == [f"{i:06d}.png" for i in range(FRAMES)]
    assert all(u.output.parent == vp.units[-1].output.parent for u in vp.units)
    # The chain's first painting of frames 0..k-1 is work under the state folder, fed onwards.
    opened = vp.leads
    assert [u.key for u in opened] == [f"clip/loop/open/{i:06d}" for i in range(k)]
    assert all(run_folder.STATE_DIR in u.output.parts for u in opened)
    assert vp.units[k].previous == opened[-1].key
    # The closing pass starts from the last frame, across the seam, and hands over to the first
    # painting a little more each frame.
    last = vp.units[-1]
    closing = vp.units[:k]
    assert closing[0].previous_output == last.output
    assert closing[0].flow == vp.flow_dir / run_folder.SEAM_FLOW
    for i, unit in enumerate(closing):
        assert unit.loop and unit.steps == SMALL["frame_steps"]
        assert (unit.partner, unit.partner_output) == (opened[i].key, opened[i].output)
        assert unit.blend == pytest.approx((i + 1) / (k + 1))
        if i:
            assert unit.previous == closing[i - 1].key
            assert unit.flow == vp.flow_dir / f"{i:06d}.npz"
        assert set(unit.waits_for) == {unit.previous, opened[i].key}
    # Without the loop the frames from k on are the same work: only the first k are redone.
    (plain,) = make_plan(manifest.load(write_manifest(
        [loop_job(loop_clip, media_dir / "style.png", loop=False)]))).videos
    assert plain.loop == 0 and plain.leads == ()
    assert [a.hash == b.hash for a, b in zip(plain.units, vp.units)] == [False] * k + [True] * (
        FRAMES - k)
    assert plain.hash != vp.hash
    # Independent frames have no chain to close.
    (alone,) = make_plan(manifest.load(write_manifest([loop_job(
        loop_clip, media_dir / "style.png",
        settings={"warm_start": False, "temporal_weight": 0.0})]))).videos
    assert alone.loop == 0 and len(alone.units) == FRAMES


def test_looped_run_closes_the_seam_and_resumes(loop_clip, media_dir, write_manifest):
    from batch_style.views import report

    path = write_manifest([loop_job(loop_clip, media_dir / "style.png")],
                          defaults={**SMALL, "frame_steps": 2, "temporal_weight": 100.0})
    summary = runner.run([path], SERIAL)
    k = min(LOOP_FRAMES, FRAMES // 2)
    assert summary.exit_code == 0 and summary.done == FRAMES + k and summary.assembled == 1
    out = path.parent / "out"
    (vp,) = make_plan(manifest.load(path)).videos
    records = ledger_records(out)
    order = [r["key"] for r in records]
    # The closing pass ran after the clip's last frame, each frame after its first painting.
    for i in range(k):
        loop_key = f"clip/loop/loop/{i:06d}"
        assert order.index(loop_key) > order.index(f"clip/loop/{FRAMES - 1:06d}")
        assert order.index(loop_key) > order.index(f"clip/loop/open/{i:06d}")
    latest = {r["key"]: r for r in records}
    assert latest["clip/loop/loop/000000"]["losses"]["temporal"] > 0  # held to the last frame
    assert (vp.flow_dir / run_folder.SEAM_FLOW).exists()
    # The frames folder and the video hold the closing pass's frames.
    frames = out / "clip" / "frames" / "loop"
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:06d}.png" for i in range(FRAMES)]
    assert {str(frames / f"{i:06d}.png") for i in range(k)} == {
        latest[f"clip/loop/loop/{i:06d}"]["outputs"][0] for i in range(k)}
    metrics = latest["clip/loop#video"]["metrics"]
    assert metrics["seam"] > 0 and metrics["input_seam"] > 0
    assert "loop seam" in report.render(out)

    # Run again: nothing to do. Lose one frame of the closing pass: only it is painted again.
    again = runner.run([path], SERIAL)
    assert again.exit_code == 0 and again.done == 0 and again.skipped == FRAMES + k
    (frames / "000002.png").unlink()
    again = runner.run([path], SERIAL)
    assert again.exit_code == 0 and again.done == 1 and again.assembled == 1
    assert ledger_records(out)[-2]["key"] == "clip/loop/loop/000002"


@pytest.mark.parametrize("job, message", [
    ({"loop": 1}, "jobs[0].loop: expected true or false, got 1 (int)"),
    ({"loop": "yes please"}, "jobs[0].loop: expected true or false"),
    ({"content": "IMAGE", "loop": True}, "jobs[0].loop: only for video jobs"),
])
def test_loop_key_is_checked(job, message, loop_clip, media_dir, write_manifest, cli):
    fields = {"name": "clip", "style": str(media_dir / "style.png"), **job}
    if fields.get("content") == "IMAGE":
        fields["content"] = str(media_dir / "photo.png")
    else:
        fields["video"] = str(loop_clip)
    path = write_manifest([fields])
    result = cli.run("run", path, "--tiny")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], result.stderr


def test_frames_stop_by_tolerance_with_frame_steps_as_cap(loop_clip, media_dir, write_manifest):
    from batch_style.views import report

    # A tolerance this loose stops a level as soon as the rule can look back its 10 steps.
    loose = {**SMALL, "tolerance": 0.9, "precision": "float32"}  # one precision: one stop
    for frame_steps, expected in ((30, 11), (5, 5)):
        path = write_manifest([{"name": f"f{frame_steps}", "video": str(loop_clip),
                                "style": str(media_dir / "style.png"), "outputs": ["mp4"]}],
                              defaults={**loose, "frame_steps": frame_steps},
                              output=f"out{frame_steps}")
        summary = runner.run([path], SERIAL)
        assert summary.exit_code == 0
        out = path.parent / f"out{frame_steps}"
        records = {r["key"]: r for r in ledger_records(out)}
        later = [records[f"f{frame_steps}/loop/{i:06d}"] for i in range(1, FRAMES)]
        assert [r["steps"] for r in later] == [expected] * (FRAMES - 1)
        assert all(r["stopped"] == ("step cap" if expected == frame_steps else
                                    f"converged at step {expected}") for r in later)
        assert (f"frames after the first: median {expected} steps, max {expected} "
                f"(frame_steps {frame_steps})") in report.render(out)


def test_a_seam_the_flow_cannot_cross_leaves_the_first_painting(tmp_path):
    """A clip that does not return to its start (a cut at the seam) or whose last frame failed:
    the closing pass's first frame starts from, and is held to, the frame it replaces."""
    import numpy as np

    from batch_style.media import images
    from batch_style.pipeline.units import Unit
    from batch_style.pipeline.workers import worker
    from batch_style.settings import Settings

    opened = texture(41, (48, 36))
    images.save_image(opened, tmp_path / "open.png")
    unit = Unit(key="v/c/loop/000000", job="v", content=tmp_path / "c.png", styles=(),
                settings=Settings(size=48), output=tmp_path / "out.png", steps=7,
                previous="v/c/000009", previous_output=tmp_path / "last.png",
                flow=tmp_path / "seam.npz", partner="v/c/open/000000",
                partner_output=tmp_path / "open.png", blend=1 / 9, loop=True)
    for alone in (unit.afresh(), unit.without("v/c/000009")):
        assert alone.blend == 1.0 and alone.previous_output is None and alone.steps is None
        start = worker._frame_start(alone, np.full((36, 48, 3), 0.5, np.float32))
        saved = images.load_image(tmp_path / "open.png", 10**6)
        assert np.allclose(start.image, saved, atol=1e-6) and np.allclose(start.mask, 1.0)


def test_the_dry_run_says_the_video_loops(loop_clip, media_dir, write_manifest):
    from batch_style import console, dry_run

    loaded = manifest.load(write_manifest([loop_job(loop_clip, media_dir / "style.png")]))
    line = console.describe_plan(dry_run.preview(loaded, device="cpu", tiny=True)).splitlines()[1]
    k = min(LOOP_FRAMES, FRAMES // 2)
    assert line.startswith(f"  clip: {FRAMES + k} frames ({k} of them repaint the first frames, "
                           "closing the loop), 0 done")
