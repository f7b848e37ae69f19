"""Tests for batch_style.cli: validate, run --dry-run, status and --debug, as a user runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import SMALL
from PIL import Image

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
    # per job: its units (counted right), then every file it will write under the output folder
    assert lines[1].startswith("  pair: 1 image, 0 done, 1 to run; 48×36;")
    assert lines[1].endswith("; writes:") and lines[2] == "    pair/photo.png"
    # then what its units compute with, and why (engine/autotune.py): the tiny network is not timed
    assert lines[3] == lines[9] == lines[13]
    assert lines[3].startswith("    computes with: direct convolutions, ")  # float32 or mixed
    assert lines[3].endswith(": not measured (test network): the rule of the CPU's family")
    # and the time it should take: the tiny network's is only known once it steps
    assert lines[4] == lines[10] == lines[14] == "    time: measured at the first unit"
    assert lines[5].startswith("  fold: 3 images, 0 done, 3 to run; 48×34 (first);")
    assert lines[6:9] == [f"    fold/{name}.png" for name in "abc"]
    assert lines[11].startswith("  clip: 6 frames, 0 done, 6 to run;")
    assert (f"up to {SMALL['steps']} steps (adam, stops when converged), then "
            f"{SMALL['frame_steps']} per frame") in lines[11]
    assert lines[12] == "    clip/clip.mp4"
    assert lines[15:] == ["  and the run's own: report.html, run.log, .batch_style/"]
    assert not (manifest.parent / "out").exists()
    assert files_under(manifest.parent) == before


def test_dry_run_after_a_run_counts_what_is_done(media_dir, write_manifest, cli):
    manifest = write_manifest(good_jobs(media_dir)[:2])
    runner.run([manifest], runner.RunOptions(workers=0, tiny=True))
    (manifest.parent / "out" / "fold" / "b.png").unlink()
    before = files_under(manifest.parent)
    result = cli.run("run", manifest, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "  pair: 1 image, 1 done, 0 to run;" in result.stdout
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


def test_stylize_on_the_cpu_leaves_the_gpus_alone(media_dir, tmp_path, fake_gpu, precisions):
    # `stylize --device cpu` on a GPU machine: TensorFlow is told not to use the GPU before it
    # sets it up (no memory growth, no context), and the CPU's precision is chosen.
    out = tmp_path / "result.png"
    assert cli_module.main(["stylize", str(media_dir / "photo.png"), str(media_dir / "style.png"),
                            "-o", str(out), "--tiny", "--device", "cpu", "--size", "48",
                            "--steps", "2", "-q"]) == 0
    assert out.is_file()
    assert fake_gpu == {"set_visible_devices": [([], "GPU")], "set_memory_growth": []}
    assert precisions and set(precisions) == {"float32"}


# -- the command line of the field ------------------------------------------------------------
def test_a_peers_option_is_one_line_that_names_ours(cli):
    # neural-style-tf's name for the step budget: what a newcomer types first.
    result = cli.run("stylize", "c.jpg", "s.jpg", "--max_iterations", "5")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "batch-style: error: --max_iterations: unknown option (did you mean --steps?)"]


@pytest.mark.parametrize("words, meant", [
    (["-num_iterations", "5"], "did you mean --steps?"),          # neural-style(-pt)
    (["--iterations", "5"], "did you mean --steps?"),             # style-transfer-pytorch
    (["--original_colors"], "did you mean --preserve-colors?"),   # neural-style-tf
    (["-original_colors", "1"], "did you mean --preserve-colors?"),  # not `-o riginal_colors`
    (["--image_size", "256"], "did you mean --size?"),
    (["--max_size", "256"], "did you mean --size?"),
    (["--init_img_type", "noise"], "did you mean --init?"),
    (["-save_iter", "50"], "did you mean --save-every?"),
    (["-print_iter", "50"], "did you mean --print-every?"),
    (["-output_image", "x.png"], "did you mean -o?"),
    (["--style_imgs_weights", "1", "1"], "did you mean --style-blend?"),
    (["--stpes", "5"], "did you mean --steps?"),                  # a typo of ours
    (["--content_img", "c.jpg"], "the photo is stylize's first argument"),
    (["--style_imgs", "s.jpg"], "styles are stylize's arguments after the photo"),
])
def test_unknown_options_say_what_was_meant(capsys, words, meant):
    with pytest.raises(SystemExit) as exit_:
        cli_module.main(["stylize", "c.jpg", "s.jpg", *words])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"batch-style: error: {words[0]}: unknown option ({meant}"), lines


def test_a_peers_option_given_to_run_names_ours(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_module.main(["run", "x.yaml", "--max_iterations", "5"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "batch-style: error: --max_iterations: unknown option (did you mean --steps?)"]


def test_the_manifests_spellings_and_yes_no_words_are_options():
    """`--style_weight` as the manifest writes it; a yes/no setting takes true/false/1/0/yes/no
    as a manifest does, and --preserve-colors true is luminance (false: off)."""
    args = cli_module.build_parser().parse_args([
        "stylize", "c.jpg", "--style_weight", "3", "--tv_weight=1", "--warm-start", "false",
        "--style_colors", "YES", "--preserve-colors", "true", "s.jpg", "--pooling", "avg"])
    assert (args.style_weight, args.tv_weight, args.warm_start, args.style_colors,
            args.preserve_colors, args.style) == (3.0, 1.0, False, True, "luminance", ["s.jpg"])
    args = cli_module.build_parser().parse_args([
        "stylize", "c.jpg", "s.jpg", "--warm-start=0", "--style-colors", "--preserve-colors", "no"])
    assert (args.warm_start, args.style_colors, args.preserve_colors) == (False, True, False)
    args = cli_module.build_parser().parse_args(["stylize", "c.jpg", "--warm-start", "s.jpg"])
    assert (args.warm_start, args.style) == (True, ["s.jpg"])  # a path is not a yes/no


def test_abbreviations_argparse_takes_still_pass():
    args = cli_module.build_parser().parse_args(["stylize", "c.jpg", "s.jpg", "--ste", "5",
                                                 "-oresult.png", "--content-weight", "-1"])
    assert (args.steps, args.output, args.content_weight) == (5, "result.png", -1.0)


def test_an_unknown_command_and_extra_words(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_module.main(["stylise", "c.jpg", "s.jpg"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["batch-style: error: 'stylise': unknown command (did you mean "
                                "stylize? commands: run, validate, stylize, weights, doctor, "
                                "status, report, serve)"]
    with pytest.raises(SystemExit):
        cli_module.main(["status", "out", "more"])
    err = capsys.readouterr().err
    assert err.startswith("usage: batch-style status ")  # the command's own usage
    assert err.splitlines()[-1] == "batch-style status: error: unrecognized arguments: more"


def test_help_speaks_the_readmes_notation(capsys):
    with pytest.raises(SystemExit):
        cli_module.main(["stylize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 1e4)", "(default: 3e12)", "(default: 30)", "(default: 0.02)",
                  "(default: 5e7)", "(default: false)", "--preset {seed,draft}",
                  "draft: size 256, steps 100 (default: none)", "--optimizer {lbfgs,adam}",
                  "optimizer steps per scale", "--device {auto,cpu,gpu} where to compute",
                  ".png, .jpg, .jpeg, .webp", "--save-every N", "--print-every N"):
        assert shown in text, shown
    assert "10000.0" not in text and "3000000000000.0" not in text
    with pytest.raises(SystemExit):
        cli_module.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "MANIFEST a YAML job list" in text and "--device {auto,cpu,gpu} where to compute" in text


def test_stylize_writes_webp_numbered_steps_and_prints_every_n(media_dir, tmp_path, capsys):
    out = tmp_path / "r.webp"
    assert cli_module.main(["stylize", str(media_dir / "photo.png"), str(media_dir / "style.png"),
                            "-o", str(out), "--tiny", "--size", "32", "--steps", "6",
                            "--optimizer", "adam", "--save-every", "2", "--print-every", "3",
                            "--snapshot-every", "5", "--progress-gif", str(tmp_path)]) == 0
    assert Image.open(out).format == "WEBP"
    assert sorted(p.name for p in tmp_path.glob("r.*.webp")) == ["r.0002.webp", "r.0004.webp",
                                                                  "r.0006.webp"]
    assert Image.open(tmp_path / "r.0004.webp").size == Image.open(out).size
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in err] == ["3/6", "6/6"]
    # the GIF keeps its own pace (every 5 steps and the last): start, 5, 6, result
    gif = Image.open(tmp_path / "photo_style.progress.gif")
    assert gif.n_frames <= 4


def test_comma_separated_styles(media_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    style, photo = str(media_dir / "style.png"), str(media_dir / "photo.png")
    assert cli_module.main(["stylize", photo, f"{style},{style}", "--tiny", "--size", "32",
                            "--steps", "1", "--style-blend", "1", "3", "-q"]) == 0
    assert (tmp_path / "photo_style.png").is_file()  # split: two styles, two blend weights
    assert cli_module.main(["stylize", photo, "a.png,b.png", "--tiny"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "batch-style: error: STYLE: no such file 'a.png,b.png'; give several styles as separate "
        "arguments: batch-style stylize CONTENT STYLE STYLE…")


def test_dry_run_lists_frames_and_sums_up_long_folders(media_dir, tmp_path, write_manifest, cli):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(14):
        (photos / f"p{i:02d}.png").write_bytes((media_dir / "photo.png").read_bytes())
    style = str(media_dir / "style.png")
    manifest = write_manifest([
        {"name": "many", "content": str(photos), "style": style, "outputs": ["image", "progress_gif"]},
        {"name": "clip", "video": str(media_dir / "clip.mp4"), "style": style, "end": 0.2,
         "outputs": ["gif", "frames"]}])
    result = cli.run("run", manifest, "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("  many: 14 images, 0 done, 14 to run;")
    assert lines[2:4] == ["    many/p00.png", "    many/p00.progress.gif"]
    assert lines[13] == "    … and 17 more files in many/"  # 28 files: 11 shown, then the rest
    assert lines[14].startswith("    computes with: ")
    assert lines[15].startswith("    time: ")
    assert lines[16].startswith("  clip: 6 frames,")
    assert lines[17:19] == ["    clip/clip.gif", "    clip/frames/clip/000000.png … 000005.png (6 frames)"]


def test_a_run_ends_with_where_its_results_and_report_are(media_dir, write_manifest, cli):
    manifest = write_manifest(good_jobs(media_dir)[:1])
    out = manifest.parent / "out"
    result = cli.run("run", manifest, "--tiny", "--workers", "0")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-2:] == [f"batch-style: results in {out}/",
                                              f"batch-style: report: {out / 'report.html'}"]


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


# -- settings for a whole run, and stylize's -o ---------------------------------------------------
def test_run_settings_and_preset_win_over_the_manifests_and_make_other_units(media_dir,
                                                                             write_manifest, cli):
    """`run M --preset draft` is the manifest at the draft's size and steps (over its own
    `defaults`); a unit made with --steps 2 is done for --steps 2 only, never for the manifest."""
    manifest = write_manifest(good_jobs(media_dir)[:1])
    draft = cli.run("run", manifest, "--preset", "draft", "--dry-run", "--tiny")
    assert draft.returncode == 0, draft.stderr
    lines = draft.stdout.splitlines()
    assert lines[0] == ("settings from the command line, over every job's: preset draft, "
                        "size 256, steps 100")
    assert lines[2].startswith("  pair: 1 image, 0 done, 1 to run; 256×192; up to 100 steps (adam")
    done = cli.run("run", manifest, "--steps", "2", "--workers", "0", "--tiny")
    assert done.returncode == 0, done.stderr
    report = (manifest.parent / "out" / "report.html").read_text(encoding="utf-8")
    assert '<div class="set"><span>steps</span><b>2</b></div>' in report  # the job's settings
    assert "  pair: 1 image, 1 done, 0 to run;" in cli.run("run", manifest, "--steps", "2",
                                                            "--dry-run").stdout
    assert "  pair: 1 image, 0 done, 1 to run;" in cli.run("run", manifest, "--dry-run").stdout


def test_run_settings_are_checked_as_a_manifests_in_one_line(media_dir, write_manifest, cli):
    manifest = write_manifest(good_jobs(media_dir)[:1])
    for words, line in [
            (["--preset", "drafy"], "--preset: expected seed or draft, got 'drafy' "
                                    "(did you mean draft?)"),
            (["--size", "5"], "--size: expected a value between 16 and 8192, got 5"),
            (["--init", "nope.png"], "--init: no such file 'nope.png'")]:
        result = cli.run("run", manifest, *words, "--dry-run")
        assert (result.returncode, result.stdout) == (2, ""), words
        assert result.stderr.splitlines() == [f"batch-style: error: {line}"]
    result = cli.run("run", manifest, "--style-layer-weights", "1", "2", "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    job_line = manifest.read_text().splitlines().index("- name: pair") + 1  # shown at the job
    assert result.stderr.splitlines() == [f"{manifest}:{job_line}: --style-layer-weights: "
                                          f"expected 5 weights (one per style layer), got 2"]


def test_stylize_takes_yes_no_words_and_a_new_folder_or_a_bare_name(media_dir, tmp_path, cli):
    photo, style = media_dir / "photo.png", media_dir / "style.png"
    tiny = ["--tiny", "--size", "48", "--steps", "2", "-q"]
    result = cli.run("stylize", photo, style, "--preserve-colors", "true", "--style_weight", "2",
                     "-o", f"{tmp_path}/new/", *tiny)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "new" / "photo_style.png").size == (48, 36)
    result = cli.run("stylize", photo, style, "--warm-start", "no", "-o", tmp_path / "result",
                     *tiny)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "result.png").format == "PNG"
    result = cli.run("stylize", photo, style, "-o", tmp_path / "result.tga", *tiny)
    assert (result.returncode, result.stderr.splitlines()) == (2, [
        f"batch-style: error: --output: expected a file name ending in .png or .jpg or .jpeg or "
        f".webp, or a folder (ending in /), got '{tmp_path / 'result.tga'}'"])
