"""benchmarks/prints.py (`make bench-prints`): its fresh processes, and a whole run with the tiny
network, each measurement in this process."""

import operator
import os
import time

import pytest


def test_a_measurement_in_a_fresh_process_returns_its_value_or_why_not():
    from benchmarks.prints import isolated

    assert isolated(60, operator.add, 1, 2) == (True, 3)
    ok, why = isolated(60, operator.truediv, 1, 0)
    assert not ok and why.startswith("ZeroDivisionError")
    ok, why = isolated(60, os._exit, 3)
    assert not ok and "exit code 3" in why
    started = time.perf_counter()
    ok, why = isolated(2, time.sleep, 60)
    assert not ok and why == "timed out after 2 s" and time.perf_counter() - started < 30


def test_a_picture_the_planner_expects_not_to_fit_is_not_started():
    from benchmarks import prints

    args = prints._parser().parse_args(["--tiny"])
    assert prints._measured(args, None, None, None, need=1 << 60)[3].startswith(
        "skipped: needs ~")


def test_a_tiny_run_writes_every_part(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tensorflow")
    from benchmarks import prints

    monkeypatch.setattr(prints, "isolated", lambda timeout, function, *args: (True, function(*args)))
    out = tmp_path / "prints.md"
    assert prints.main(["--tiny", "--sizes", "64", "--tile", "32", "--steps", "2",
                        "--exact-size", "96", "--exact-tile", "32", "--print-size", "96",
                        "--print-steps", "2", "--look-steps", "2", "--look-pairs",
                        "golden_gate+kandinsky", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# batch-style prints bench") and "Machine: " in text
    assert "## Memory and time per step" in capsys.readouterr().out  # printed as it goes
    for heading in ("Memory and time per step", "Tiled against whole", "A finished print",
                    "The look of a print"):
        assert f"## {heading}" in text
    assert "| 64×48 | whole | whole |" in text and "| 64×48 | tiled | 32 |" in text
    assert "| 96×72 | 32 px (9) |" in text  # 3×3 tiles
    assert "| golden_gate+kandinsky | tuned |" in text  # the look ratio per pair
    assert (tmp_path / "prints-96.png").is_file()
    assert (tmp_path / "prints-look-golden_gate+kandinsky-512.png").is_file()


def test_a_prints_look_is_judged_against_its_draft_made_alone(stylizer):
    import numpy as np

    from batch_style.settings import resolve
    from benchmarks import prints

    rng = np.random.default_rng(2)
    photo, painting = (rng.uniform(0, 1, shape).astype(np.float32)
                       for shape in ((72, 96, 3), (40, 40, 3)))
    settings = resolve({"size": 96, "base_size": 48, "steps": 4, "precision": "float32"})
    draft = stylizer.stylize(photo, [painting], settings.replace(size=48)).image
    # the draft made again inside, the same: its own look
    assert prints.print_look(stylizer, photo, painting, settings, draft, None,
                             True) == pytest.approx(1.0, rel=1e-3)
    assert prints.print_look(stylizer, photo, painting, settings, photo, None, True) > 1.0
