"""make bench's choice of what to measure, and how it reads a run."""

import pytest


def test_bench_skips_bfloat16_methods_where_bfloat16_is_emulated():
    from benchmarks.bench import runnable

    asked = ["seed", "default", "lbfgs", "lbfgs-mixed", "lbfgs-bf16"]
    assert runnable(asked, native_bfloat16=True) == (asked, [])
    # "default" stays: its precision is "auto", which picks float32 on such hardware.
    assert runnable(asked, native_bfloat16=False) == (["seed", "default", "lbfgs"],
                                                      ["lbfgs-mixed", "lbfgs-bf16"])


def test_judged_history_scales_float32_readings_by_the_next_snapshot():
    from benchmarks.bench import judged_history

    readings = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0]
    # Judged at steps 3 and 6 (0.5% and 1% under the readings): steps between take the ratio
    # of the snapshot after them.
    steps, values = judged_history(readings, {3: 7.96, 6: 4.95}, [True] * 6)
    assert steps == [1, 2, 3, 4, 5, 6]
    assert values == pytest.approx([10.0 * 0.995, 9.0 * 0.995, 7.96, 7.0 * 0.99, 6.0 * 0.99, 4.95])


def test_judged_history_keeps_only_snapshots_of_bfloat16_steps():
    from benchmarks.bench import judged_history

    readings = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0]
    # Steps 1-3 bfloat16 (judged at 2), 4-6 float32 (judged at 6): no ratio crosses the switch.
    steps, values = judged_history(readings, {2: 9.5, 6: 4.95}, [False] * 3 + [True] * 3)
    assert steps == [2, 4, 5, 6]
    assert values == pytest.approx([9.5, 7.0 * 0.99, 6.0 * 0.99, 4.95])


def test_masks_bench_sees_a_hard_seam_and_splits_the_halves():
    import numpy as np

    from benchmarks.masks import halves, seam, seam_band

    rng = np.random.default_rng(0)
    texture = 0.5 + 0.05 * rng.standard_normal((40, 64, 3))
    left = np.clip((40 - np.arange(64)) / 16, 0, 1)[None].repeat(40, 0)  # soft from 24 to 40
    band = seam_band(left, (64, 40))
    assert band == (22, 42)  # the steps between columns 22…41: the ramp is 25…39
    hard = texture.copy()
    hard[:, 32:] += 0.3                       # a step inside the band
    assert seam(hard, band)["ratio"] > 3 and seam(hard, band)["percentile"] == 100
    assert seam(texture, band)["ratio"] < 1.5
    a, b = halves(texture, left)
    assert a.shape[1] == 25 and b.shape[1] == 24  # columns 0-24 all left, 40-63 all right


def test_whole_process_table_compares_each_pair_with_its_own_seed_run():
    from benchmarks.bench import WholeRun, whole_table

    runs = [WholeRun("a", "seed", 300.0, 4.2e9, "1000 steps (step cap)"),
            WholeRun("a", "default", 60.0, 4.1e9, "converged at step 341"),
            WholeRun("b", "seed", 100.0, 3.0e9, "1000 steps (step cap)"),
            WholeRun("b", "default", 50.0, 2.9e9, "converged at step 280")]
    rows = whole_table(runs).splitlines()[2:]
    assert [r.split(" | ")[-1].rstrip(" |") for r in rows] == ["1.0×", "5.0×", "1.0×", "2.0×"]
    assert "converged at step 341" in rows[1]
    assert "| -2.38% |" in rows[1] and "| +0.00% |" in rows[2]  # the objective against the seed's


def test_bench_refuses_to_skip_both_the_race_and_the_whole_process(capsys):
    from benchmarks.bench import main

    with pytest.raises(SystemExit) as exit_:
        main(["--no-race", "--no-whole"])
    assert exit_.value.code == 2
    assert "leaves nothing to measure" in capsys.readouterr().err


def test_trajectory_measures_the_distance_left_and_the_last_ten_steps():
    import numpy as np

    from benchmarks.convergence import trajectory_rows

    base = np.full((32, 48, 3), 0.5, np.float32)
    base[:, ::2] = 0.4  # stripes: edge energy 0.1 = 25.5/255
    # The picture's blue falls by 1/255 every 10 steps from step 10 to step 100.
    snapshots = {k: base - [0, 0, k / 10 / 255] for k in range(10, 101, 10)}
    rows = trajectory_rows(snapshots, [1e9 - k for k in range(100)])
    assert len(rows) == 2  # steps 50 and 100
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[0] == "50" and cells[1] == f"{1e9 - 49:.4e}"
    assert float(cells[2]) == pytest.approx(5 / 3, abs=0.01)  # 5/255 in one channel of three
    assert float(cells[3]) == pytest.approx(5 / 3, abs=0.4)   # a shift of the whole survives a blur
    assert cells[4] == "+0.0 +0.0 -5.0"
    assert float(cells[5]) == pytest.approx(1 / 3, abs=0.01)
    assert float(cells[6]) == pytest.approx(25.5, abs=0.1)
    assert [c.strip() for c in rows[1].strip("|").split("|")][2:4] == ["0.00", "0.00"]


@pytest.mark.slow  # a bench's smoke run: `make test-slow`
def test_video_long_bench_sees_drift_and_long_term_changes(tmp_path):
    """benchmarks/video_long.py: a result that follows its input exactly scores 1 at every k; one
    whose contrast fades scores its fade in the detail ratio, one that changes slowly a warping
    error that grows with k."""
    import json

    import cv2
    import numpy as np

    from batch_style.media import video
    from benchmarks import video_long

    clip = video_long.make_clip("occluder-tubingen", 36, tmp_path / "clip.mp4")
    frames = [f for _, _, f in video.iter_frames(clip)]
    assert len(frames) == 36 and frames[0].shape == (144, 192, 3)
    again = video_long.make_clip("occluder-tubingen", 36, tmp_path / "again.mp4")
    assert np.array_equal(frames[5], [f for _, _, f in video.iter_frames(again)][5])
    same = video_long.clip_figures(frames, frames)
    assert set(same["warp"]) == {"1", "10", "30"}
    assert all(v["ratio"] == pytest.approx(1.0) for v in same["warp"].values())
    assert same["detail_ratio"] == pytest.approx(same["input_detail_ratio"])
    fading = [0.5 + (f - 0.5) * (1 - t / 50) for t, f in enumerate(frames)]
    faded = video_long.clip_figures(fading, frames)
    assert faded["detail_ratio"] < 0.7 * same["detail_ratio"]
    drifting = [np.clip(f + 0.005 * t, 0, 1) for t, f in enumerate(frames)]  # a slow change
    drifted = video_long.clip_figures(drifting, frames)["warp"]
    assert 1.0 < drifted["1"]["ratio"] < drifted["10"]["ratio"] < drifted["30"]["ratio"]
    # The bilinear ruler's floor: the input carried along its own flow changes as the input does;
    # a blurred copy scores lower there (the ruler favours blur), a flat one scores nothing.
    carried = video_long.steady_floor(frames[:12], frames[:12])
    assert carried["flicker"] == pytest.approx(1.0, abs=0.1)
    blurred = [cv2.GaussianBlur(f, (0, 0), 1.5) for f in frames[:12]]
    assert video_long.steady_floor(blurred, frames[:12])["ratio"] < 0.5 * carried["ratio"]
    flat = video_long.steady_floor([np.full_like(f, 0.5) for f in frames[:12]], frames[:12])
    assert flat["ratio"] < 1e-6 and flat["flicker"] < 1e-6
    # Through the pipeline with the tiny network: the figures and the style distances.
    out = tmp_path / "long.json"
    assert video_long.main(["--clip", "handheld-tubingen", "--frames", "12", "--size", "32",
                            "--steps", "3", "--frame-steps", "2", "--tiny", "--alone",
                            "--mode", "short={temporal_frames: 1}", "--mode", "long",
                            "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["clips"]["handheld-tubingen"]
    assert set(entry) == {"short", "long", "alone"}
    assert set(entry["long"]["warp"]) == {"1", "10"} and entry["alone"]["style_distance_last"] > 0
    assert set(entry["long"]["steady_floor"]) == {"ratio", "flicker"}


@pytest.mark.slow  # a bench's smoke run (~35 s on a shared 2-core CPU): `make test-slow`
def test_steps_bench_compares_the_starts_on_the_ruler():
    """benchmarks/steps.py on the tiny network: a row per start, the colour-matched one as
    ratios to the photo's, and the start it gives the optimizer is the painting's colours."""
    import numpy as np

    from batch_style.media import images
    from benchmarks import steps

    content, style = (images.load_image(steps.SAMPLES / p, 10**6)
                      for p in steps.PAIRS["tubingen+starry-night"])
    first = steps.starts(content, style)
    np.testing.assert_allclose(images.color_stats(first["channels"])[0],
                               images.color_stats(style)[0], atol=0.03)
    # float32 and direct convolutions: no timing of `auto`'s choices in a test.
    rows = steps.measure("tubingen+starry-night", 48, ["content", "colour"], 0, None, True,
                         {"steps": 6, "precision": "float32", "convolution": "direct"})
    assert [r["start"] for r in rows] == ["content", "colour"] and rows[0]["ruler_style"] > 0
    lines = steps.table(rows).splitlines()[2:]
    assert lines[1].split(" | ")[4].startswith(("+", "-"))  # the objective, relative
