"""Video coherence through the pipeline: chunk bookkeeping, warm start along the flow, scene
cuts, chains resumed after a kill, the flicker measure in the ledger and the report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, group_alive, kill_group, ledger_records, wait_for
from test_flow import texture

from batch_style import orchestrator as runner
from batch_style.media import encode, flow, images
from batch_style.pipeline import plan as planning
from batch_style.pipeline.plan import CHUNK_OVERLAP, Chunk, make_plan, split_chunks
from batch_style.pipeline.read import manifest
from batch_style.pipeline.state import run_folder
from batch_style.pipeline.units import Unit
from batch_style.pipeline.workers import worker

SERIAL = runner.RunOptions(workers=0, tiny=True)


def clip_job(path: Path, style: Path, **extra) -> dict:
    return {"name": "clip", "video": str(path), "style": str(style), "outputs": ["mp4", "frames"],
            **extra}


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    """10 frames of 64×48 at 30 fps: a textured pan, then a cut to another pan at frame 5."""
    folder = tmp_path_factory.mktemp("cut")
    a, b = texture(21, (96, 48)), texture(22, (96, 48))
    frames = [a[:, 2 * t:2 * t + 64] for t in range(5)] + [b[:, 2 * t:2 * t + 64] for t in range(5)]
    encode.write_mp4(frames, folder / "cut.mp4", 30)
    return folder / "cut.mp4"


# -- chunks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("frames, chains, overlap", [
    (36, 2, 8), (100, 3, 8), (36, 4, 8), (31, 2, 8), (10, 3, 2), (7, 3, 0), (1, 2, 8), (50, 1, 8)])
def test_chunks_cover_every_frame_once(frames, chains, overlap):
    chunks = split_chunks(frames, chains, overlap)
    assert len(chunks) == max(1, min(chains, frames // max(2 * overlap, 2)))
    assert chunks[0] == Chunk(start=0, stop=chunks[0].stop, lead=0)
    assert chunks[-1].stop == frames
    for before, after in zip(chunks, chunks[1:]):
        assert before.stop == after.start
        # The lead-in lies inside the chunk before, which is longer than it.
        assert after.lead == after.start - overlap and after.lead > before.start
    lengths = [c.stop - c.start for c in chunks]
    assert max(lengths) - min(lengths) <= 1


def test_plan_splits_a_video_into_chains_with_lead_ins(media_dir, write_manifest):
    m = manifest.load(write_manifest([clip_job(media_dir / "clip.mp4", media_dir / "style.png")]))
    one, two = make_plan(m, chains=1), make_plan(m, chains=2)
    (vp1,), (vp,) = one.videos, two.videos
    assert vp1.chunks == (Chunk(0, 36, 0),) and vp1.leads == ()
    assert vp.chunks == (Chunk(0, 18, 0), Chunk(18, 36, 18 - CHUNK_OVERLAP))
    lead_from = 18 - CHUNK_OVERLAP
    assert [u.key for u in vp.leads] == [f"clip/clip/lead/{i:06d}" for i in range(lead_from, 18)]
    assert len(two.units) == 36 + CHUNK_OVERLAP and len({u.key for u in two.units}) == len(two.units)
    assert all(u.output.parent.name == "lead" and run_folder.STATE_DIR in u.output.parts
               for u in vp.leads)
    # Each chain: its first unit starts on its own with the full budget, the others from the unit
    # before, with frame_steps and the flow file from that frame to this one.
    first_lead, *leads = vp.leads
    assert first_lead.previous is None and first_lead.steps is None and first_lead.flow is None
    for before, unit in zip([first_lead, *leads], [*leads, vp.units[18]]):
        assert (unit.previous, unit.previous_output) == (before.key, before.output)
        assert unit.steps == SMALL["frame_steps"]
        assert unit.flow == vp.flow_dir / f"{int(unit.key[-6:]):06d}.npz"
    assert vp.flow_dir.parent == vp.frames_dir and vp.flow_dir.name == "flow-v1-48x36"
    # The first chunk's last frames are handed over to the lead-in, ending fully on it.
    for i, unit in enumerate(vp.units):
        if lead_from <= i < 18:
            assert unit.partner == vp.leads[i - lead_from].key
            assert unit.blend == pytest.approx((i - lead_from + 1) / CHUNK_OVERLAP)
        else:
            assert unit.partner is None and unit.blend == 0.0
    # Frame 17 reads frame 16, the lead-in's 17 and (long-term) frames 15, 13, 9 and 1.
    assert set(vp.units[17].waits_for) == {vp.units[16].key, vp.leads[-1].key,
                                           *(vp.units[i].key for i in (15, 13, 9, 1))}
    # Another worker count redoes only the frames whose chain changed.
    same = [a.hash == b.hash for a, b in zip(vp1.units, vp.units)]
    assert same == [True] * lead_from + [False] * (36 - lead_from)


def test_independent_frames_need_no_chain_nor_flow(media_dir, write_manifest):
    m = manifest.load(write_manifest([clip_job(media_dir / "clip.mp4", media_dir / "style.png",
                                               settings={"warm_start": False,
                                                         "temporal_weight": 0.0})]))
    (vp,) = make_plan(m, chains=4).videos
    assert vp.chunks == (Chunk(0, 36, 0),) and vp.leads == ()
    assert all(u.previous is None and u.flow is None and u.steps is None for u in vp.units)
    # The temporal term alone chains frames too (they are held near the one before).
    m = manifest.load(write_manifest([clip_job(
        media_dir / "clip.mp4", media_dir / "style.png",
        settings={"warm_start": False, "temporal_weight": 10.0})]))
    (vp,) = make_plan(m).videos
    assert all(u.previous is not None and u.flow is not None and u.steps is None
               for u in vp.units[1:])


def test_chunked_run_respects_every_dependency(media_dir, write_manifest, monkeypatch):
    monkeypatch.setattr(planning, "CHUNK_OVERLAP", 2)
    original = planning.make_plan
    monkeypatch.setattr(planning, "make_plan", lambda m, chains=1: original(m, chains=2))
    path = write_manifest([clip_job(media_dir / "clip.mp4", media_dir / "style.png", end=0.4)])
    summary = runner.run([path], SERIAL)
    assert summary.exit_code == 0 and summary.done == 12 + 2 and summary.assembled == 1
    out = path.parent / "out"
    (vp,) = original(manifest.load(path), chains=2).videos
    assert vp.chunks == (Chunk(0, 6, 0), Chunk(6, 12, 4))
    records = ledger_records(out)
    order = [r["key"] for r in records]
    for unit in vp.units + vp.leads:
        assert all(order.index(k) < order.index(unit.key) for k in unit.waits_for), unit.key
    steps = {r["key"]: r.get("steps") for r in records if r["status"] == "done"}
    lead, frame = "clip/clip/lead/{:06d}", "clip/clip/{:06d}"
    assert steps[lead.format(4)] == steps[frame.format(0)] == SMALL["steps"]
    assert all(steps[frame.format(i)] == SMALL["frame_steps"] for i in range(1, 12))
    # The hand-over ends on the lead-in: the last frame of chunk 0 is the lead-in's frame 5,
    # optimized from it.
    last, lead_in = (images.load_image(p, 10**6) for p in (vp.units[5].output, vp.leads[1].output))
    first = images.load_image(vp.units[0].output, 10**6)
    assert np.abs(last - lead_in).mean() < 0.5 * np.abs(last - first).mean()


# -- the worker's start: the previous frame warped, disocclusions from the content --------------
def test_frame_start_warps_the_previous_frame_and_fills_disocclusions(tmp_path):
    base = texture(30, (64, 36))
    before, now = base[:, 4:52], base[:, 0:48]  # the view pans left: content moves 4 px right
    pair = flow.frame_pair(before, now)
    flow.save_pair(pair, tmp_path / "flow.npz")
    previous = texture(31, (48, 36))  # "stylized" frame t-1
    images.save_image(previous, tmp_path / "previous.png")
    content = np.full((36, 48, 3), 0.5, np.float32)
    unit = Unit(key="v/c/000001", job="v", content=tmp_path / "c.png", styles=(),
                         settings=planning.Settings(size=48), output=tmp_path / "out.png",
                         steps=7, previous="v/c/000000", previous_output=tmp_path / "previous.png",
                         flow=tmp_path / "flow.npz")
    start = worker._frame_start(unit, content)
    saved = images.load_image(tmp_path / "previous.png", 10**6)
    warped = flow.warp(saved, flow.load_pair(tmp_path / "flow.npz").backward, sharp=True)
    mask = flow.load_pair(tmp_path / "flow.npz").mask
    assert start.warm and np.array_equal(start.mask, mask)
    assert np.allclose(start.target, warped, atol=1e-6)
    # The strip that came into view starts from the content, the rest from the warped frame
    # (also where the mask keeps the temporal term off).
    came = flow.outside(flow.load_pair(tmp_path / "flow.npz").backward)
    assert came[:, :3].all() and not came[4:-4, 6:].any() and not mask[:, :3].any()
    assert np.allclose(start.image[came], 0.5, atol=1e-6)
    assert np.allclose(start.image[~came], warped[~came], atol=1e-6)
    # Warped, frame t-1 lines up with frame t: its pixels moved 4 px right.
    assert np.abs(warped[4:-4, 10:-4] - saved[4:-4, 6:-8]).mean() < 0.02
    # In a chunk overlap the lead-in is blended in, image, target and mask alike.
    partner = texture(32, (48, 36))
    images.save_image(partner, tmp_path / "partner.png")
    partner = images.load_image(tmp_path / "partner.png", 10**6)
    blended = worker._frame_start(dataclasses.replace(
        unit, partner="v/c/lead/000001", partner_output=tmp_path / "partner.png", blend=0.25),
        content)
    assert np.allclose(blended.image, 0.75 * start.image + 0.25 * partner, atol=1e-5)
    assert np.allclose(blended.target, 0.75 * start.target + 0.25 * partner, atol=1e-5)
    assert np.allclose(blended.mask, 0.75 * mask + 0.25)
    # Without a previous frame (first of a chain, cut, failure) a frame starts on its own.
    assert worker._frame_start(unit.afresh(), content) is None


# -- scene cuts, metrics, resume --------------------------------------------------------------------
def test_scene_cut_starts_afresh_and_metrics_reach_ledger_and_report(cut_clip, media_dir,
                                                                      write_manifest):
    from batch_style.views import report
    # Two steps a frame: the losses recorded are those before the last step, and the temporal
    # term is 0 at the warm start itself.
    settings = {**SMALL, "frame_steps": 2, "temporal_weight": 100.0}
    path = write_manifest([clip_job(cut_clip, media_dir / "style.png")], defaults=settings)
    summary = runner.run([path], SERIAL)
    assert summary.exit_code == 0 and summary.done == 10
    out = path.parent / "out"
    records = {r["key"]: r for r in ledger_records(out)}
    steps = [records[f"clip/cut/{i:06d}"]["steps"] for i in range(10)]
    assert steps == [SMALL["steps"]] + [2] * 4 + [SMALL["steps"]] + [2] * 4
    assert "clip/cut/000005: scene cut; it starts afresh" in (out / "run.log").read_text()
    assert records["clip/cut/000005"]["losses"]["temporal"] == 0.0
    assert all(records[f"clip/cut/{i:06d}"]["losses"]["temporal"] > 0 for i in (1, 6, 9))
    metrics = records["clip/cut#video"]["metrics"]
    assert metrics["cuts"] == 1 and metrics["transitions"] == 8
    assert metrics["flicker"] > 0 and metrics["warp_error"] >= 0
    assert "flicker" in report.render(out)


def test_killed_run_resumes_mid_chain(media_dir, write_manifest, cli):
    path = write_manifest([clip_job(media_dir / "clip.mp4", media_dir / "style.png", end=0.4)])
    out = path.parent / "out"

    def frames_done():
        if not (out / run_folder.STATE_DIR / "ledger.jsonl").exists():
            return 0
        return sum(r["status"] == "done" for r in ledger_records(out))

    process = cli.spawn("run", path, "--tiny", "--workers", "1")
    wait_for(lambda: frames_done() >= 4 or process.poll() is not None, 120, "4 finished frames")
    kill_group(process)
    process.wait(timeout=30)
    wait_for(lambda: not group_alive(process.pid), 30, "the killed run's workers to go")
    done_before = frames_done()
    assert 4 <= done_before < 12, "the run finished before the kill"
    (vp,) = make_plan(manifest.load(path)).videos
    flows = {p: p.stat().st_mtime_ns for p in vp.flow_dir.glob("*.npz")}
    assert len(flows) >= done_before - 1  # computed ahead of the chain

    summary = runner.run([path], SERIAL)
    assert summary.exit_code == 0 and summary.skipped == done_before
    records = [r for r in ledger_records(out) if r["status"] == "done"]
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 12 + 1  # no frame done twice
    # The chain went on from the last finished frame: every frame after the first warm-started.
    assert [r["steps"] for r in records if r["key"] != "clip/clip#video"] == \
        [SMALL["steps"]] + [SMALL["frame_steps"]] * 11
    # Flow files made before the kill were read, not computed again.
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in flows.items())
    # The long-term flow files too (from frames 2, 4, 8 before; test_plan_gives_each_frame_...).
    assert len(list(vp.flow_dir.glob("*.npz"))) == 11 + sum(len(u.earlier) for u in vp.units) \
        == 11 + 10 + 8 + 4


# -- long-term: earlier frames, each pixel held to the latest one that saw it ---------------------
def test_long_term_holds_a_pixel_to_the_latest_frame_that_saw_it(tmp_path, monkeypatch):
    h, w = 8, 12
    still = np.zeros((h, w, 2), np.float32)  # synthetic flows: nothing moves

    def earlier(name: str, value: float, seen: np.ndarray) -> tuple[str, Path, Path]:
        images.save_image(np.full((h, w, 3), value, np.float32), tmp_path / f"{name}.png")
        flow.save_pair(flow.FramePair(backward=still, mask=seen.astype(np.float32), change=0.0,
                                      consistent=float(seen.mean()), cut=False),
                       tmp_path / f"{name}.npz")
        return f"v/c/{name}", tmp_path / f"{name}.png", tmp_path / f"{name}.npz"

    # Frame t-1 saw the left half; t-2 columns 0-8 (so 6-8 are held to it, 0-5 stay with t-1);
    # t-4 everything (columns 9-10 go to it, not 6-8: t-2 is more recent); column 11 was hidden
    # in every frame but t-4, whose flow file marks a cut: it is held to none.
    columns = np.arange(w)[None].repeat(h, 0)
    seen_1 = columns < 6
    images.save_image(np.full((h, w, 3), 0.2, np.float32), tmp_path / "p.png")
    flow.save_pair(flow.FramePair(backward=still, mask=seen_1.astype(np.float32), change=0.0,
                                  consistent=0.5, cut=False), tmp_path / "p.npz")
    two = earlier("000002", 0.4, columns < 9)
    four = earlier("000000", 0.8, columns < 11)
    cut = earlier("cut", 0.6, np.ones((h, w), bool))
    flow.save_pair(dataclasses.replace(flow.load_pair(cut[2]), cut=True), cut[2])
    unit = Unit(key="v/c/000004", job="v", content=tmp_path / "c.png", styles=(),
                settings=planning.Settings(size=w), output=tmp_path / "out.png", steps=3,
                previous="v/c/000003", previous_output=tmp_path / "p.png",
                flow=tmp_path / "p.npz", earlier=(two, four, cut))
    monkeypatch.setattr(worker, "KEEP_DETAIL", None)  # flat frames: test_anchor_keeps_... has it
    start = worker._frame_start(unit, np.full((h, w, 3), 0.9, np.float32))
    row = np.round(start.target[0, :, 0], 2)
    # Columns 0-5, which t-1 saw, are anchored: the mean of t-1, t-2 and t-4 (ANCHOR).
    assert list(row[:6]) == [round((0.2 + 0.4 + 0.8) / 3, 2)] * 6
    assert list(row[6:9]) == [0.4] * 3 and list(row[9:11]) == [0.8] * 2
    assert list(start.mask[0]) == [1.0] * 11 + [0.0]
    # The warm start takes the remembered strokes too; the rest still starts from frame t-1.
    assert np.allclose(start.image[:, 6:11], start.target[:, 6:11])
    assert np.allclose(start.image[:, :6], 0.2, atol=0.01)
    assert np.allclose(start.image[:, 11], 0.2, atol=0.01)
    # The anchor's ablations (docs/video.md): t-1 given half the anchor, the rest to t-2 and t-4;
    # only the nearest earlier frame joining it. Pixels t-1 did not see are held as before.
    monkeypatch.setattr(worker, "PREVIOUS_SHARE", 0.5)
    shared = worker._frame_start(unit, np.full((h, w, 3), 0.9, np.float32))
    assert list(np.round(shared.target[0, :, 0], 2)) == [0.4] * 9 + [0.8] * 2 + [0.2]
    monkeypatch.setattr(worker, "PREVIOUS_SHARE", None)
    monkeypatch.setattr(worker, "ANCHOR_FRAMES", 1)
    nearest = worker._frame_start(unit, np.full((h, w, 3), 0.9, np.float32))
    assert list(np.round(nearest.target[0, :, 0], 2)) == [0.3] * 6 + [0.4] * 3 + [0.8] * 2 + [0.2]
    monkeypatch.setattr(worker, "ANCHOR_FRAMES", None)
    # Ruder et al.'s c_long alone: what t-1 saw is held to t-1 only.
    monkeypatch.setattr(worker, "ANCHOR", False)
    latest = worker._frame_start(unit, np.full((h, w, 3), 0.9, np.float32))
    assert list(np.round(latest.target[0, :, 0], 2)) == [0.2] * 6 + [0.4] * 3 + [0.8] * 2 + [0.2]
    # Without earlier frames (temporal_frames: 1) the pixels t-1 did not see are held to nothing.
    short = worker._frame_start(dataclasses.replace(unit, earlier=()), np.zeros((h, w, 3)))
    assert list(short.mask[0]) == [1.0] * 6 + [0.0] * 6


def test_anchor_keeps_the_previous_frames_detail(tmp_path, monkeypatch):
    """The anchor (the mean of t-1 and earlier frames, each warped: softer than one) holds a
    pixel to its mean's coarse picture plus t-1's own fine detail (KEEP_DETAIL)."""
    h, w = 24, 24
    still = np.zeros((h, w, 2), np.float32)
    every = flow.FramePair(backward=still, mask=np.ones((h, w), np.float32), change=0.0,
                           consistent=1.0, cut=False)
    checks = (np.indices((h, w)).sum(0) % 2)[..., None].repeat(3, 2).astype(np.float32)
    images.save_image(0.3 + 0.4 * checks, tmp_path / "p.png")  # t-1: fine strokes
    images.save_image(np.full((h, w, 3), 0.8, np.float32), tmp_path / "e.png")  # t-2: flat
    for name in ("p", "e"):
        flow.save_pair(every, tmp_path / f"{name}.npz")
    unit = Unit(key="v/c/000002", job="v", content=tmp_path / "c.png", styles=(),
                settings=planning.Settings(size=w), output=tmp_path / "out.png", steps=3,
                previous="v/c/000001", previous_output=tmp_path / "p.png",
                flow=tmp_path / "p.npz", earlier=(("v/c/000000", tmp_path / "e.png",
                                                   tmp_path / "e.npz"),))
    middle = (slice(6, -6), slice(6, -6), 0)

    def target():
        return worker._frame_start(unit, np.zeros((h, w, 3), np.float32)).target[middle]

    kept = target()
    assert np.mean(kept) == pytest.approx((0.5 + 0.8) / 2, abs=0.01)  # the anchor's mean
    assert np.ptp(kept) == pytest.approx(0.4, abs=0.03)  # t-1's checks at full strength
    monkeypatch.setattr(worker, "KEEP_DETAIL", None)
    assert np.ptp(target()) == pytest.approx(0.2, abs=0.03)  # the plain mean halves them


def test_plan_gives_each_frame_earlier_frames_of_its_own_chain(media_dir, write_manifest,
                                                               monkeypatch):
    from batch_style.pipeline import assemble

    monkeypatch.setattr(planning, "CHUNK_OVERLAP", 2)
    job = clip_job(media_dir / "clip.mp4", media_dir / "style.png", end=0.4,
                   settings={"temporal_frames": 4})
    (vp,) = make_plan(manifest.load(write_manifest([job])), chains=2).videos
    assert vp.chunks == (Chunk(0, 6, 0), Chunk(6, 12, 4))
    by_key = {u.key: u for u in vp.units + vp.leads}
    for unit in vp.units + vp.leads:
        i = int(unit.key[-6:])
        chain_start = 4 if unit in vp.leads or i >= 6 else 0
        distances = [i - int(k[-6:]) for k, _, _ in unit.earlier]
        assert distances == [d for d in (2, 4, 8) if i - d >= chain_start and unit.previous]
        for key, output, path in unit.earlier:
            assert by_key[key].output == output and key in unit.waits_for
            assert path == vp.flow_dir / f"{i:06d}-{int(key[-6:]):06d}.npz"
            # Chunk 1 reads its own lead-in (frames 4, 5), never chunk 0's frames.
            assert (key.split("/")[2] == "lead") == (int(key[-6:]) < 6 and chain_start == 4)
    # Every flow file a unit reads is made, each right after its frame's flow from the one before.
    paths = [j.path for j in assemble.flow_jobs(vp)]
    wanted = {u.flow for u in vp.units + vp.leads if u.flow} | {
        e[2] for u in vp.units + vp.leads for e in u.earlier}
    assert set(paths) == wanted and len(paths) == len(wanted)
    assert paths.index(vp.flow_dir / "000009-000007.npz") == \
        paths.index(vp.flow_dir / "000009.npz") + 1
    # A failed earlier frame is left out; a scene cut drops them all.
    unit = vp.units[9]
    assert [k for k, _, _ in unit.without(unit.earlier[0][0]).earlier] == \
        [k for k, _, _ in unit.earlier[1:]]
    assert unit.afresh().earlier == ()
    one = clip_job(media_dir / "clip.mp4", media_dir / "style.png", end=0.4,
                   settings={"temporal_frames": 1})
    (short,) = make_plan(manifest.load(write_manifest([one]))).videos
    assert all(u.earlier == () for u in short.units)


def test_temporal_frames_out_of_range_is_one_line_naming_the_field(media_dir, write_manifest,
                                                                   cli):
    job = clip_job(media_dir / "clip.mp4", media_dir / "style.png",
                   settings={"temporal_frames": 13})
    path = write_manifest([job])
    result = cli.run("validate", path)
    assert result.returncode == 2
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith(f"{path}:") and "jobs[0].settings.temporal_frames" in line
    assert "between 1 and 12, got 13" in line


def test_flow_gate_waits_for_every_flow_file_and_drops_an_earlier_frame_across_a_cut(tmp_path):
    import concurrent.futures as cf

    futures = {name: cf.Future() for name in ("1", "2", "4")}

    class Flows:
        @staticmethod
        def future(path):
            return futures[path.name]

    unit = Unit(key="v/c/000004", job="v", content=tmp_path / "c.png", styles=(),
                settings=planning.Settings(size=16), output=tmp_path / "o.png", steps=1,
                previous="v/c/000003", previous_output=tmp_path / "3.png", flow=tmp_path / "1",
                earlier=(("v/c/000002", tmp_path / "2.png", tmp_path / "2"),
                         ("v/c/000000", tmp_path / "0.png", tmp_path / "4")))
    gate = runner._flow_gate(Flows())
    futures["1"].set_result(False)
    futures["2"].set_result(False)
    assert gate(unit) == (unit, futures["4"])  # held back until its last flow file is made
    futures["4"].set_result(True)  # frames 0 and 4: the flow cannot explain one from the other
    gated, pending = gate(unit)
    assert pending is None and gated.earlier == unit.earlier[:1] and gated.flow == unit.flow
