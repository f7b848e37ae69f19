"""HD frames: a warm-started frame made coarse to fine (base_size) keeping the previous frame's
detail, through the stylizer and through a run; the HD benchmark on the tiny network."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SMALL, ledger_records

pytest.importorskip("tensorflow")

from batch_style import orchestrator as runner  # noqa: E402
from batch_style.engine.model import TINY_WIDTHS, FeatureModel  # noqa: E402
from batch_style.engine.stylizer import Stylizer  # noqa: E402
from batch_style.media import images  # noqa: E402
from batch_style.settings import Settings, resolve  # noqa: E402

LAYERS = Settings().content_layers + Settings().style_layers


def test_a_warm_frames_finer_levels_keep_the_detail_of_its_start():
    stylizer = Stylizer(FeatureModel(LAYERS, None, TINY_WIDTHS, seed=1))
    rng = np.random.default_rng(3)
    content, style = (rng.uniform(0, 1, (96, 128, 3)).astype(np.float32) for _ in range(2))
    start = rng.uniform(0, 1, (96, 128, 3)).astype(np.float32)  # fine detail everywhere
    # Adam's steps of 1e-6 leave each level where it starts: what is left is the schedule.
    settings = resolve({"size": 128, "base_size": 64, "steps": 1, "optimizer": "adam",
                        "learning_rate": 1e-6, "tolerance": 0.0, "precision": "float32",
                        "convolution": "direct"})
    kept = stylizer.stylize(content, [style], settings, init=start, detail=start)
    plain = stylizer.stylize(content, [style], settings, init=start)
    assert [lv.size for lv in kept.levels] == [(64, 48), (128, 96)]
    assert np.abs(kept.image - start).max() < 1e-3  # the draft plus the start's own detail
    blurred = images.resize(images.resize(start, (64, 48)), (128, 96))
    assert np.abs(plain.image - blurred).max() < 1e-3  # the draft upsampled only
    assert np.abs(plain.image - start).mean() > 0.05


def test_warm_frames_above_base_size_are_made_coarse_to_fine(media_dir, write_manifest):
    path = write_manifest([{"name": "clip", "video": str(media_dir / "clip.mp4"),
                            "style": str(media_dir / "style.png"), "end": 0.1,
                            "outputs": ["frames"]}],
                          defaults={**SMALL, "base_size": 32, "tolerance": 0.0})
    summary = runner.run([path], runner.RunOptions(workers=0, tiny=True))
    assert summary.exit_code == 0 and summary.done == 3
    steps = [r["steps"] for r in ledger_records(path.parent / "out") if "#" not in r["key"]]
    # 32 px, then 48 px (a tenth of the budget, at least one step): the first frame 3 + 1, each
    # warm frame frame_steps + 1.
    assert steps == [SMALL["steps"] + 1] + [SMALL["frame_steps"] + 1] * 2


@pytest.mark.slow  # a bench's smoke run: `make test-slow`
def test_the_hd_bench_compares_the_ways_and_reports_memory(tmp_path):
    from benchmarks import video_hd

    out = tmp_path / "video-hd.md"
    assert video_hd.main(["--tiny", "--frames", "3", "--size", "64", "--base-size", "32",
                          "--steps", "3", "--frame-steps", "2", "--hd-size", "64",
                          "--hd-frames", "2", "--hd-steps", "--out", str(out)]) == 0
    text = out.read_text()
    for way in video_hd.WAYS:
        assert f"| {way} | 4, then " in text  # 32 px, then 64 px: 3 + 1 steps first
    assert "64×36 frames" in text and "Peak RSS of the run's process" in text
    # At 64 px, under the default base_size: one level, 3 steps then 2.
    assert "| 0 | 3 |" in text and "| 1 | 2 |" in text
