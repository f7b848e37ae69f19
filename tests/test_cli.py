"""Tests for batch_style.cli: validate, run --dry-run, status and --debug, as a user runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import SMALL

from batch_style import cli as cli_module
from batch_style import orchestrator as runner
from batch_style.views import status

PROBLEM_LINE = re.compile(r"^[^:]+\.yaml:\d+: [\w.\[\]]+: .+$")  # FILE:LINE: FIELD: message


def files_under(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def good_jobs(media_dir: Path) -> list[dict]:
    style = str(media_dir / "style.png")
    return [{"name": "pair", "content": str(media_dir / "photo.png"), "style": style},
            {"name": "fold", "content": str(media_dir / "folder"), "style": style},
            {"name": "clip", "video": str(media_dir / "clip.mp4"), "style": style, "end": 0.2}]


BROKEN = {
    "unknown top-level key": (lambda m: {"colour": "red"}, ["colour"]),
    "bad setting": (lambda m: {"defaults": {**SMALL, "steps": "many"}}, ["defaults.steps"]),
    "missing style and duplicate name": (
        lambda m: {"jobs": [{"name": "one", "content": str(m / "photo.png"),
                             "style": "missing.png"},
                            {"name": "one", "content": str(m / "photo.png"),
                             "style": str(m / "style.png")}]},
        ["jobs[0].style", "jobs[1].name"]),
    "video output on an image job": (
        lambda m: {"jobs": [{"name": "one", "content": str(m / "photo.png"),
                             "style": str(m / "style.png"), "outputs": ["mp4"]}]},
        ["jobs[0].outputs[0]"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_validate_reports_each_problem_on_one_line(media_dir, tmp_path, cli, case):
    change, fields = BROKEN[case]
    data = {"version": 1, "output": "out", "defaults": SMALL, "jobs": good_jobs(media_dir)[:1]}
    data.update(change(media_dir))
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    before = files_under(tmp_path)
    result = cli.run("validate", manifest)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == len(fields), result.stderr
    for line, field in zip(lines, fields):
        assert PROBLEM_LINE.match(line), line
        assert line.startswith(f"{manifest}:") and f": {field}: " in line
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert files_under(tmp_path) == before  # nothing written, no output folder
    # `run` refuses the same way, before writing anything.
    result = cli.run("run", manifest, "--tiny")
    assert result.returncode == 2 and result.stderr.splitlines() == lines
    assert files_under(tmp_path) == before


def test_validate_accepts_a_good_manifest(media_dir, write_manifest, cli):
    manifest = write_manifest(good_jobs(media_dir))
    result = cli.run("validate", manifest)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{manifest}: ok, 3 jobs → {manifest.parent / 'out'}"
    assert not (manifest.parent / "out").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(media_dir, write_manifest, cli):
    manifest = write_manifest(good_jobs(media_dir))
    before = files_under(manifest.parent)
    result = cli.run("run", manifest, "--dry-run", "--tiny")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{manifest} → {manifest.parent / 'out'}"
    assert lines[1].startswith("  pair: 1 images, 0 done, 1 to run; 48×36;")
    assert lines[2].startswith("  fold: 3 images, 0 done, 3 to run; 48×34 (first);")
    assert lines[3].startswith("  clip: 6 frames, 0 done, 6 to run;")
    assert f"{SMALL['steps']} steps (adam), then {SMALL['frame_steps']} per frame" in lines[3]
    assert not (manifest.parent / "out").exists()
    assert files_under(manifest.parent) == before


def test_dry_run_after_a_run_counts_what_is_done(media_dir, write_manifest, cli):
    manifest = write_manifest(good_jobs(media_dir)[:2])
    runner.run([manifest], runner.RunOptions(workers=0, tiny=True))
    (manifest.parent / "out" / "fold" / "b.png").unlink()
    before = files_under(manifest.parent)
    result = cli.run("run", manifest, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "  pair: 1 images, 1 done, 0 to run;" in result.stdout
    assert "  fold: 3 images, 2 done, 1 to run;" in result.stdout
    assert "  fold: 3 images, 0 done, 3 to run;" in cli.run("run", manifest, "--dry-run",
                                                             "--force").stdout
    assert files_under(manifest.parent) == before


def test_status_lists_done_failed_and_pending(media_dir, write_manifest, cli):
    style = str(media_dir / "style.png")
    manifest = write_manifest([
        {"name": "good", "content": str(media_dir / "folder"), "style": style},
        {"name": "bad", "content": str(media_dir / "broken.png"), "style": style},
    ])
    out = manifest.parent / "out"
    summary = runner.run([manifest], runner.RunOptions(workers=0, tiny=True))
    assert summary.exit_code == 1
    (out / "good" / "c.png").unlink()  # lost: pending again
    result = cli.run("status", out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"{out}: 2 done, 1 failed, 1 pending — not running: run the same "
                        f"command to finish")
    assert lines[1].startswith("  good: 2 done, 0 failed, 1 pending;")
    assert lines[2].startswith("  bad: 0 done, 1 failed, 0 pending;")
    assert re.match(r"^    failed bad/broken: .*broken\.png: truncated or corrupt image", lines[3])
    st = status.read_status(out)
    assert (st.done, st.failed, st.pending, st.running_pid) == (2, 1, 1, None)


def test_status_of_a_folder_without_a_run(tmp_path, cli):
    result = cli.run("status", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"{tmp_path}: no batch-style run here (no "
                                      f".batch_style/plan.json); give the `output` folder of a "
                                      f"manifest")
    assert list(tmp_path.iterdir()) == []


def test_status_of_a_damaged_plan_is_a_user_error(tmp_path, cli):
    (tmp_path / ".batch_style").mkdir()
    (tmp_path / ".batch_style" / "plan.json").write_text('{"units": [')
    result = cli.run("status", tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "unreadable run plan" in result.stderr and "run the manifest again" in result.stderr


@pytest.fixture
def internal_error(monkeypatch):
    def read_status(output):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(status, "read_status", read_status)


def test_internal_error_is_one_line_without_debug(tmp_path, capsys, internal_error):
    assert cli_module.main(["status", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["batch-style: internal error: RuntimeError: a bug\\nover two "
                                "lines (run again with --debug for the traceback)"]


@pytest.mark.parametrize("argv", [["--debug", "status"], ["status", "--debug"]])
def test_internal_error_shows_its_traceback_with_debug(tmp_path, internal_error, argv):
    with pytest.raises(RuntimeError, match="a bug"):
        cli_module.main([*argv, str(tmp_path)])


def test_stylize_on_the_cpu_leaves_the_gpus_alone(media_dir, tmp_path, fake_gpu, monkeypatch):
    # `stylize --device cpu` on a GPU machine: TensorFlow is told not to use the GPU before it
    # sets it up (no memory growth, no context), and the CPU's precision is chosen.
    from batch_style.engine import stylizer

    precisions = []
    original = stylizer.effective_precision

    def effective_precision(settings):
        precisions.append(original(settings))
        return precisions[-1]

    monkeypatch.setattr(stylizer, "effective_precision", effective_precision)
    out = tmp_path / "result.png"
    assert cli_module.main(["stylize", str(media_dir / "photo.png"), str(media_dir / "style.png"),
                            "-o", str(out), "--tiny", "--device", "cpu", "--size", "48",
                            "--steps", "2", "-q"]) == 0
    assert out.is_file()
    assert fake_gpu == {"set_visible_devices": [([], "GPU")], "set_memory_growth": []}
    assert precisions and set(precisions) == {"float32"}


def _stylize_with(media_dir, tmp_path, *options):
    style = str(media_dir / "style.png")
    return cli_module.main(["stylize", str(media_dir / "photo.png"), style, style, "-o",
                            str(tmp_path / "r.png"), "--tiny", "--size", "48", "--steps", "2",
                            "-q", *options])


def test_stylize_takes_style_masks_protect_and_colour_options(media_dir, tmp_path, monkeypatch):
    from PIL import Image

    from batch_style.engine.stylizer import Stylizer

    Image.new("L", (64, 48), 255).save(tmp_path / "sky.png")
    Image.new("L", (32, 24), 0).save(tmp_path / "face.png")
    seen = {}
    original = Stylizer.stylize

    def stylize(self, content, styles, settings, **kwargs):
        seen.update(settings=settings, regions=kwargs["regions"])
        return original(self, content, styles, settings, **kwargs)

    monkeypatch.setattr(Stylizer, "stylize", stylize)
    assert _stylize_with(media_dir, tmp_path, "--style-mask", str(tmp_path / "sky.png"),
                         "--style-mask", "none", "--protect", str(tmp_path / "face.png"),
                         "--preserve-colors", "--pooling", "avg") == 0
    assert (tmp_path / "r.png").is_file()
    regions = seen["regions"]
    assert regions.styles[0].shape == (48, 64) and regions.styles[1] is None
    assert regions.protect.shape == (24, 32) and regions.images == ()
    assert (seen["settings"].preserve_colors, seen["settings"].pooling) == ("luminance", "avg")
    assert _stylize_with(media_dir, tmp_path, "--preserve-colors", "histogram") == 0
    assert seen["settings"].preserve_colors == "histogram" and seen["regions"] is None


@pytest.mark.parametrize("options, code, line", [
    (["--style-mask", "SKY"], 2, "batch-style: error: --style-mask: expected one per style (2; "
                              "`none` for a style without one), got 1"),
    (["--style-mask", "SQUARE", "--style-mask", "none"], 2,
     "batch-style: error: --style-mask: 'SQUARE' is 30×30 and its picture 64×48: a mask must "
     "have its picture's aspect ratio (within 1%)"),
    # Found once the options are combined: exit 1, as docs/design.md says.
    (["--preserve-colors", "--style-colors"], 1, "batch-style: error: style_colors: the "
                                                 "opposite of preserve_colors"),
])
def test_stylize_refuses_bad_masks_before_any_work(media_dir, tmp_path, capsys, options, code,
                                                  line):
    from PIL import Image

    Image.new("L", (64, 48), 255).save(tmp_path / "sky.png")
    Image.new("L", (30, 30), 255).save(tmp_path / "square.png")
    swaps = {"SKY": str(tmp_path / "sky.png"), "SQUARE": str(tmp_path / "square.png")}
    options = [swaps.get(o, o) for o in options]
    assert _stylize_with(media_dir, tmp_path, *options) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith(line.replace("SQUARE", swaps["SQUARE"])), err
    assert not (tmp_path / "r.png").exists()
