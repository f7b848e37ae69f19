"""Tests for batch_style.views.report (and the run's event log): a real tiny run with a failure."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import imageio_ffmpeg
import numpy as np
import pytest
import yaml
from PIL import Image

from batch_style import orchestrator as runner
from batch_style.cli import main
from batch_style.errors import UserError
from batch_style.pipeline.state import events
from batch_style.views import markup, plots, report, report_html

ODD_NAME = 'a <b>&"quoted" name'  # a content file name that must be escaped in the page


def _png(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def _clip(path: Path, frames: int = 4) -> Path:
    writer = imageio_ffmpeg.write_frames(str(path), (48, 32), fps=10, quality=8,
                                         macro_block_size=1)
    writer.send(None)
    for i in range(frames):
        writer.send(np.full((32, 48, 3), 40 * i + 20, np.uint8))
    writer.close()
    return path


def _manifest(folder: Path, output: str = "out") -> Path:
    jobs = [{"name": "pics", "content": "photos/", "style": "style.png",
             "outputs": ["image", "progress_gif"]},
            {"name": "clip", "video": "clip.mp4", "style": "style.png",
             "outputs": ["mp4", "gif"]}]
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "output": output,
                                    "defaults": {"size": 48, "steps": 2, "tv_weight": 7.5},
                                    "jobs": jobs}, sort_keys=False))
    return path


def _broken_at_start(path: Path):
    """An on_event that cuts `path` in half once the run has planned (validated and hashed) it,
    so that its unit fails in the worker, as a file damaged during a long run would."""
    def on_event(kind: str, data: dict) -> None:
        if kind == "start":
            data_bytes = path.read_bytes()
            path.write_bytes(data_bytes[: len(data_bytes) // 2])
    return on_event


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The output folder of a finished tiny run: pics/{a, ODD_NAME, broken} (broken fails) and a
    4-frame clip assembled into mp4 and gif."""
    folder = tmp_path_factory.mktemp("run")
    (folder / "photos").mkdir()
    _png(folder / "style.png", (48, 48), seed=1)
    _png(folder / "photos" / "a.png", (48, 36), seed=2)
    _png(folder / "photos" / f"{ODD_NAME}.png", (40, 40), seed=3)
    _png(folder / "photos" / "broken.png", (48, 36), seed=4)
    _clip(folder / "clip.mp4")
    summary = runner.run([_manifest(folder)], runner.RunOptions(tiny=True, workers=0),
                         on_event=_broken_at_start(folder / "photos" / "broken.png"))
    assert summary.done == 6 and [key for key, _ in summary.failed] == ["pics/broken"]
    return folder / "out"


@pytest.fixture(scope="module")
def page(finished) -> str:
    return (finished / "report.html").read_text(encoding="utf-8")


def _plan(output: Path) -> dict:
    return json.loads((output / ".batch_style" / "plan.json").read_text())


def _latest(output: Path) -> dict[str, dict]:
    from batch_style.pipeline.state import ledger

    return ledger.Ledger.for_output(output).latest()


def test_the_run_writes_the_report_with_every_unit(finished, page):
    plan = _plan(finished)
    assert len(plan["units"]) == 7
    for unit in plan["units"]:
        assert f'id="{markup.anchor(unit["key"])}"' in page, unit["key"]
        short = unit["key"].split("/", 1)[1]
        assert html.escape(short) in page, short
    for job in ("pics", "clip"):
        assert f">{job} <span" in page


def test_failures_come_first_with_their_reason(finished, page):
    error = _latest(finished)["pics/broken"]["error"]
    assert "truncated" in error
    failures = page.index('<section class="failures"')
    assert failures < page.index('<section class="job"')
    section = page[failures:page.index("</section>", failures)]
    assert "pics/broken" in section and html.escape(error) in section
    assert report_html.FAILURE_HINTS["input"] in section
    assert "1 failure" in page  # the header says so too


def test_names_are_escaped(page):
    assert ODD_NAME not in page and "<b>&" not in page
    assert html.escape(ODD_NAME) in page


def test_page_is_self_contained(finished, page):
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    refs = re.findall(r'(?:src|href)="([^"#][^"]*)"', page)
    assert refs
    for ref in refs:
        if ref.startswith("data:image/jpeg;base64,"):
            continue
        target = finished / unquote(html.unescape(ref))
        assert target.exists(), ref
    assert page.count("data:image/jpeg;base64,") >= 6  # content and result thumbnails
    # the style's pixels go in once, however many rows show it
    assert page.count("background-image:url(data:image/jpeg") == 1


def test_media_inline(page):
    assert '<video controls' in page and 'src="clip/clip.mp4"' in page
    assert 'src="clip/clip.gif"' in page
    assert 'src="pics/a.progress.gif"' in page


def test_loss_curves_and_numbers(finished, page):
    done = [r for r in _latest(finished).values() if r["status"] == "done" and r.get("history")]
    assert len(re.findall(r'<svg class="curve"[^>]*>.*?<polyline points="[\d., ]+"/></svg>',
                          page)) >= len(done)
    assert "per step (log scale)" in page
    assert "time and losses per unit" in page and "final loss per frame" in page


def test_settings_appear(page):
    assert "settings (" in page
    assert "<span>tv_weight</span><b>7.5</b>" in page   # changed from the default: shown
    assert "<span>content_layers</span><b>block4_conv2</b>" in page


def test_event_log_records_the_run(finished):
    kinds = [e["kind"] for e in events.read_events(finished)]
    assert kinds[0] == "start" and kinds[-2:] == ["report", "end"]
    assert {"unit_start", "unit_done", "video_done"} <= set(kinds)
    start = events.read_events(finished)[0]["data"]
    assert start["output"] == str(finished) and start["total"] == 7
    end = events.read_events(finished)[-1]["data"]
    assert end == {"done": 6, "failed": 1, "interrupted": False, "stopped": None, "error": None}
    log = (finished / "run.log").read_text()
    assert "pics/a: started (attempt 1)" in log and "final losses" in log


def test_pending_units_show_as_not_run(finished, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    ledger_file = copy / ".batch_style" / "ledger.jsonl"
    lines = ledger_file.read_text().splitlines(keepends=True)
    ledger_file.write_text(lines[0])  # as if stopped after the first unit
    page = report.render(copy)
    assert "not run yet" in page and "units to go" in page
    assert "video not assembled yet" in page


def test_a_moved_output_folder_still_has_its_pictures(finished, tmp_path, page):
    moved = tmp_path / "moved"
    shutil.copytree(finished, moved)
    plan = _plan(moved)
    # Every result path as the run wrote it: a result only counts inside the folder read.
    plan["units"] = [{**u, "output": u["output"].replace(str(finished), "/nowhere/out"),
                      "progress_gif": u["progress_gif"] and u["progress_gif"].replace(
                          str(finished), "/nowhere/out"),
                      "content": u["content"]} for u in plan["units"]]
    plan["videos"] = [{**v, "outputs": {k: p.replace(str(finished), "/nowhere/out")
                                        for k, p in v["outputs"].items()}}
                      for v in plan["videos"]]
    (moved / ".batch_style" / "plan.json").write_text(json.dumps(plan))
    moved_page = report.render(moved)
    assert moved_page.count("data:image/jpeg;base64,") == page.count("data:image/jpeg;base64,")
    assert 'src="clip/clip.mp4"' in moved_page


def test_cli_report(finished, tmp_path, capsys):
    (finished / "report.html").unlink()
    assert main(["report", str(finished)]) == 0
    assert (finished / "report.html").exists()
    assert "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 1
    assert "no batch-style run here" in capsys.readouterr().err


def test_write_report_without_a_plan(tmp_path):
    with pytest.raises(UserError, match="no batch-style run here"):
        report.write_report(tmp_path)


def test_a_report_failure_does_not_fail_the_run(tmp_path, monkeypatch):
    (tmp_path / "photos").mkdir()
    _png(tmp_path / "style.png", (32, 32), seed=1)
    _png(tmp_path / "photos" / "a.png", (32, 24), seed=2)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({
        "version": 1, "output": "out", "defaults": {"size": 32, "steps": 1},
        "jobs": [{"name": "one", "content": "photos/", "style": "style.png"}]}))

    def broken(output_dir):
        raise OSError("no space left for the report")

    monkeypatch.setattr(report, "write_report", broken)
    summary = runner.run([manifest], runner.RunOptions(tiny=True, workers=0))
    assert summary.exit_code == 0 and summary.done == 1
    assert "could not write the report" in (tmp_path / "out" / "run.log").read_text()
    assert [e["kind"] for e in events.read_events(tmp_path / "out")][-1] == "end"


def test_curve_svg():
    assert plots.curve_svg([], 100, 20) == "" and plots.curve_svg([5.0], 100, 20) == ""
    svg = plots.curve_svg([1000.0, float("nan"), 100.0, 10.0], 100, 20)
    points = re.search(r'points="([^"]+)"', svg).group(1).split()
    ys = [float(p.split(",")[1]) for p in points]
    assert len(points) == 3 and ys[0] < ys[1] < ys[2]
    assert abs((ys[1] - ys[0]) - (ys[2] - ys[1])) < 0.2  # log scale: equal steps per decade
    # a huge early line-search trial is drawn at the top edge, not given the whole height
    spiky = plots.curve_svg([100.0, 1e9, 50.0, 10.0], 100, 20)
    ys = [float(p.split(",")[1]) for p in re.search(r'points="([^"]+)"', spiky).group(1).split()]
    assert ys[0] == ys[1] and ys[3] > ys[2] > ys[0]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or \
    shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_report_renders_in_a_browser(finished, tmp_path):
    """Headless Chromium opens the page offline and draws it: thumbnails, curves, the video."""
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1280,1600", (finished / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert image.shape[:2] == (1600, 1280)
    # The failure panel's red and the thumbnails' many colours are there: the page was drawn,
    # not left blank.
    reds = (image[..., 0] > 180) & (image[..., 1] < 90) & (image[..., 2] < 90)
    assert reds.sum() > 50
    assert len(np.unique(image.reshape(-1, 3)[::7], axis=0)) > 500


def test_each_unit_says_how_it_ran(finished, page):
    # What `auto` resolved to, where and why it stopped: in the ledger, and shown per unit.
    done = [r for r in _latest(finished).values() if r["status"] == "done" and "#" not in r["key"]]
    assert len(done) == 6
    for record in done:
        assert record["precision"] in ("float32", "mixed", "bfloat16"), record
        assert record["convolution"] in ("direct", "winograd"), record
        assert record["device"] == "cpu" and record["stopped"] == "step cap", record
    a = _latest(finished)["pics/a"]
    assert f"{a['steps']} steps (step cap)" in page
    assert html.escape(f"{a['precision']}, {a['convolution']} convolutions, on the CPU") in page


def test_results_link_to_their_full_size_files(page):
    assert '<a href="pics/a.png"><img class="thumb"' in page
    # a video's frames, when `frames` is not an output, are under the run's state folder
    assert '<a href=".batch_style/work/clip/clip/out/000000.png"><img class="thumb"' in page


def test_a_unit_stopped_by_tolerance_says_so(tmp_path):
    _png(tmp_path / "style.png", (32, 32), seed=1)
    _png(tmp_path / "a.png", (32, 24), seed=2)
    manifest = tmp_path / "m.yaml"
    # tolerance 1: any improvement over 10 steps is "too little": the unit stops at step 11
    manifest.write_text(yaml.safe_dump({
        "version": 1, "output": "out", "jobs": [{"name": "one", "content": "a.png",
                                                 "style": "style.png"}],
        "defaults": {"size": 32, "steps": 40, "optimizer": "adam", "tolerance": 1.0}}))
    assert runner.run([manifest], runner.RunOptions(tiny=True, workers=0)).exit_code == 0
    record = _latest(tmp_path / "out")["one/a"]
    assert record["stopped"] == f"converged at step {record['steps']}" and record["steps"] < 40
    assert record["stopped"] in (tmp_path / "out" / "report.html").read_text()
