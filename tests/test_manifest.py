"""Tests for batch_style.pipeline.read.manifest: loading, expanding and checking job manifests."""

from __future__ import annotations

import os
import textwrap
import types
from pathlib import Path

import pytest
from PIL import Image

from batch_style.errors import UserError, UserErrors
from batch_style.media import video
from batch_style.pipeline.jobs import Job, Manifest
from batch_style.pipeline.read.manifest import load, load_all
from batch_style.settings import Settings


def _fake_probe_video(path: Path) -> object:
    """Videos are decoded elsewhere; here a file is a video unless it says it is not."""
    if Path(path).read_bytes() == b"not a video":
        raise UserError("not a video: no video stream", file=path)
    return types.SimpleNamespace(path=path, fps=25.0, n_frames=50, duration=2.0)


@pytest.fixture(autouse=True)
def probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real images.probe_image; video.probe_video faked (test_real_video_probe is real)."""
    monkeypatch.setattr(video, "probe_video", _fake_probe_video)


def png(path: Path, size: tuple[int, int] = (32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 80, 40)).save(path)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with a manifest's inputs: photos, a folder of three images, styles, a clip."""
    png(tmp_path / "photos/tubingen.png")
    png(tmp_path / "folder/c1.png")
    png(tmp_path / "folder/c2.jpg")
    png(tmp_path / "folder/c3.PNG", (24, 32))
    (tmp_path / "folder/notes.txt").write_text("not an image, and not listed")
    png(tmp_path / "folder/.hidden.png")  # skipped, like macOS '._x.jpg' files
    png(tmp_path / "folder/sub/deeper.png")  # folders are not searched recursively
    png(tmp_path / "globbed/g1.png")
    png(tmp_path / "globbed/g2.png")
    png(tmp_path / "globbed/h1.png")
    png(tmp_path / "styles/starry.png")
    png(tmp_path / "styles/kandinsky.png")
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips/clip.mp4").write_bytes(b"a video, as far as the fake probe knows")
    (tmp_path / "empty").mkdir()
    return tmp_path


def write(folder: Path, text: str, name: str = "jobs.yaml") -> str:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


VALID = """
version: 1
output: out/demo
defaults:
  preset: draft            # size 256, steps 100
  steps: 50                # manifest defaults beat the preset
  content_weight: 1.0e4    # YAML 1.1 would read this as text
  style_weight: 1e-1
jobs:
  - name: pair
    content: photos/tubingen.png
    style: styles/starry.png
    outputs: [image, progress_gif]
  - name: folder
    content: folder/
    style: [styles/starry.png, styles/kandinsky.png]
    style_blend: [0.7, 0.3]
    settings: {steps: 20, optimizer: adam}
  - name: globbed
    content: ["globbed/g*.png", photos/tubingen.png, globbed/g1.png]
    style: styles/kandinsky.png
    settings:
      init: photos/tubingen.png
      preset: seed         # a job's preset still sits under the manifest defaults
  - name: clip
    video: clips/clip.mp4
    start: 0.5
    end: 2
    fps: 15
    style: styles/starry.png
    outputs: [mp4, gif, frames]
    settings: {size: 128, warm_start: false}
"""


def test_valid_manifest_loads_into_jobs(tree: Path) -> None:
    manifest = load(write(tree, VALID))

    assert manifest.path == tree / "jobs.yaml"
    assert manifest.output == tree / "out/demo"
    pair, folder, globbed, clip = manifest.jobs
    # frame_steps follows steps (steps / 5) where a manifest does not set it.
    draft = Settings(size=256, steps=50, frame_steps=10, content_weight=1e4, style_weight=0.1,
                     preset="draft")

    assert pair == Job(name="pair", kind="images", contents=(tree / "photos/tubingen.png",),
                       video=None, start=0.0, end=None, fps=None,
                       styles=(tree / "styles/starry.png",), outputs=("image", "progress_gif"),
                       settings=draft, line=9)

    assert folder.contents == tuple(tree / "folder" / n for n in ("c1.png", "c2.jpg", "c3.PNG"))
    assert folder.styles == (tree / "styles/starry.png", tree / "styles/kandinsky.png")
    assert folder.outputs == ("image",)
    assert folder.settings == draft.replace(steps=20, frame_steps=4, optimizer="adam",
                                            style_blend=(0.7, 0.3))
    assert folder.line == 13

    # Sorted and de-duplicated across the list.
    assert globbed.contents == (tree / "globbed/g1.png", tree / "globbed/g2.png",
                                tree / "photos/tubingen.png")
    # The job's preset replaces the manifest's, and still ranks under the manifest's defaults.
    assert globbed.settings == Settings(optimizer="adam", learning_rate=0.02, steps=50,
                                        frame_steps=10, scales=1,
                                        precision="float32", convolution="direct", tolerance=0.0,
                                        content_weight=1e4,
                                        style_weight=0.1,
                                        init=str(tree / "photos/tubingen.png"), preset="seed")

    assert (clip.kind, clip.contents, clip.video) == ("video", (), tree / "clips/clip.mp4")
    assert (clip.start, clip.end, clip.fps) == (0.5, 2.0, 15.0)
    assert isinstance(clip.end, float)
    assert clip.outputs == ("mp4", "gif", "frames")
    assert clip.settings == draft.replace(size=128, warm_start=False)
    assert all(p.is_absolute() for job in manifest.jobs for p in job.contents + job.styles)


def test_video_defaults_and_home_paths(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree / "photos"))
    path = write(tree, """
        version: 1
        output: ~/results
        jobs:
          - name: clip
            video: clips/clip.mp4
            style: ~/tubingen.png
    """)
    (clip,) = load(path).jobs
    assert load(path).output == tree / "photos/results"
    assert clip.styles == (tree / "photos/tubingen.png",)
    assert (clip.start, clip.end, clip.fps, clip.outputs) == (0.0, None, None, ("mp4",))
    assert clip.settings == Settings()


def test_manifest_elsewhere_resolves_paths_from_its_own_folder(tree: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    (tree / "jobs").mkdir()
    path = write(tree / "jobs", """
        version: 1
        output: ../out
        jobs: [{name: a, content: ../photos/tubingen.png, style: ../styles/starry.png}]
    """)
    monkeypatch.chdir(tree / "empty")
    manifest = load(os.path.relpath(path))
    assert manifest.path == tree / "jobs/jobs.yaml"
    assert manifest.output == tree / "out"
    assert manifest.jobs[0].contents == (tree / "photos/tubingen.png",)


def test_merge_keys_share_settings_between_jobs(tree: Path) -> None:
    path = write(tree, """
        version: 1
        output: out
        jobs:
          - &base
            name: a
            content: photos/tubingen.png
            style: styles/starry.png
            settings: {steps: 7}
          - <<: *base
            name: b
    """)
    a, b = load(path).jobs
    assert (a.name, b.name) == ("a", "b")
    assert b.contents == a.contents and b.settings.steps == 7


HEAD = "version: 1\noutput: out\njobs:\n"
JOB = "  - name: a\n    content: photos/tubingen.png\n    style: styles/starry.png\n"  # lines 4-6
TWO_STYLES = "  - name: a\n    content: photos/tubingen.png\n" \
             "    style: [styles/starry.png, styles/kandinsky.png]\n"

BAD = [
    pytest.param("version: 1\noutput: out: here\n", "2: invalid YAML: mapping values are not "
                 "allowed here", id="yaml-syntax"),
    pytest.param("version: 1\njobs: [{name: a\n", "3: invalid YAML: expected ',' or '}', but "
                 "got '<stream end>' (while parsing a flow mapping on line 2)", id="yaml-unclosed"),
    pytest.param("", "1: empty manifest; expected a mapping with 'version', 'output' and 'jobs'",
                 id="empty"),
    pytest.param("# only a comment\n", "1: empty manifest; expected a mapping with 'version', "
                 "'output' and 'jobs'", id="only-comments"),
    pytest.param("- version: 1\n", "1: expected a mapping with 'version', 'output' and 'jobs', "
                 "got a list", id="top-list"),
    pytest.param("output: out\njobs:\n" + JOB,
                 "1: version: missing; expected 'version: 1'", id="version-missing"),
    pytest.param(HEAD.replace("1", "2") + JOB,
                 "1: version: unsupported manifest version 2; expected 1", id="version-2"),
    pytest.param(HEAD.replace("1", "'1'") + JOB,
                 "1: version: unsupported manifest version '1'; expected 1", id="version-text"),
    pytest.param("version: 1\njobs:\n" + JOB,
                 "1: output: missing; expected the results folder, e.g. 'output: out'",
                 id="output-missing"),
    pytest.param("version: 1\noutput: out\n", "1: jobs: missing; expected a non-empty list of jobs",
                 id="jobs-missing"),
    pytest.param("version: 1\noutput: out\njobs: []\n",
                 "3: jobs: expected a non-empty list of jobs, got a list", id="jobs-empty"),
    pytest.param("version: 1\noutput: out\ndefualts: {}\njobs:\n" + JOB,
                 "3: defualts: unknown key (did you mean 'defaults'?); expected one of version, "
                 "output, defaults, jobs, backend, scheduler", id="unknown-top-key"),
    pytest.param("version: 1\noutput: out\noutput: again\njobs:\n" + JOB,
                 "3: output: duplicate key (first on line 2)", id="duplicate-key"),
    pytest.param(HEAD + JOB + "    ouputs: [image]\n",
                 "7: jobs[0].ouputs: unknown key (did you mean 'outputs'?); expected one of name, "
                 "content, video, style, style_blend, outputs, start, end, fps, loop, protect, "
                 "settings",
                 id="unknown-job-key"),
    pytest.param(HEAD + JOB + "    size: 512\n",
                 "7: jobs[0].size: a setting: put it under `settings:`", id="job-level-setting"),
    pytest.param("version: 1\noutput: out\nsteps: 10\njobs:\n" + JOB,
                 "3: steps: a setting: put it under `defaults:`", id="top-level-setting"),
    pytest.param(HEAD + JOB.replace("tubingen.png", "tubigen.png"),
                 "5: jobs[0].content: no such file or folder 'photos/tubigen.png' (did you mean "
                 "'photos/tubingen.png'?)", id="file-name-typo"),
    pytest.param(HEAD + JOB + "    settings: {stpes: 10}\n",
                 "7: jobs[0].settings.stpes: unknown setting (did you mean 'steps'?)",
                 id="unknown-setting"),
    pytest.param("version: 1\noutput: out\ndefaults:\n  optimiser: adam\njobs:\n" + JOB,
                 "4: defaults.optimiser: unknown setting (did you mean 'optimizer'?)",
                 id="unknown-default"),
    pytest.param(HEAD + JOB + "    settings:\n      steps: many\n",
                 "8: jobs[0].settings.steps: expected a whole number, got 'many' (str)",
                 id="wrong-type"),
    pytest.param(HEAD + JOB + "    settings: {size: 0}\n",
                 "7: jobs[0].settings.size: expected a value between 16 and 8192, got 0",
                 id="size-0"),
    pytest.param(HEAD + JOB + "    settings: {size: 100000}\n",
                 "7: jobs[0].settings.size: expected a value between 16 and 8192, got 100000",
                 id="size-100000"),
    pytest.param(HEAD + JOB + "    settings: {optimizer: sgd}\n",
                 "7: jobs[0].settings.optimizer: unknown value 'sgd'; expected one of lbfgs, adam",
                 id="unknown-optimizer"),
    pytest.param(HEAD + JOB + "    settings: {content_layers: [block4_conv7]}\n",
                 "7: jobs[0].settings.content_layers: unknown VGG19 layer 'block4_conv7' "
                 "(did you mean 'block4_conv4'?)", id="unknown-layer"),
    pytest.param(HEAD + JOB + "    settings: {style_layer_weights: [1, 2]}\n",
                 "7: jobs[0].settings.style_layer_weights: expected 5 weights (one per style "
                 "layer), got 2", id="style-layer-weights-length"),
    pytest.param(HEAD + JOB + "    settings: {init: photos/nope.png}\n",
                 "7: jobs[0].settings.init: no such file 'photos/nope.png'", id="init-missing"),
    pytest.param(HEAD + JOB + "    outputs: [image, mp4]\n",
                 "7: jobs[0].outputs[1]: unknown output format 'mp4' for image jobs ('mp4' is for "
                 "video jobs); expected one of image, progress_gif", id="output-for-kind"),
    pytest.param(HEAD + "  - name: a\n    video: clips/clip.mp4\n    style: styles/starry.png\n"
                 "    outputs: [mp4, gfi]\n",
                 "7: jobs[0].outputs[1]: unknown output format 'gfi' for video jobs "
                 "(did you mean 'gif'?); expected one of mp4, gif, frames", id="output-unknown"),
    pytest.param(HEAD + JOB + JOB,
                 "7: jobs[1].name: duplicate job name 'a' (first on line 4)", id="duplicate-name"),
    pytest.param(HEAD + JOB + "    video: clips/clip.mp4\n",
                 "4: jobs[0]: give either 'content' or 'video', not both", id="content-and-video"),
    pytest.param(HEAD + "  - name: a\n    style: styles/starry.png\n",
                 "4: jobs[0]: missing 'content' or 'video'", id="no-content-no-video"),
    pytest.param(HEAD + "  - content: photos/tubingen.png\n    style: styles/starry.png\n",
                 "4: jobs[0].name: missing; every job needs a unique name (it names the job's "
                 "output folder)", id="name-missing"),
    pytest.param(HEAD + "  - name: a\n    content: photos/tubingen.png\n",
                 "4: jobs[0].style: missing; expected a style image or a list of them",
                 id="style-missing"),
    pytest.param(HEAD + JOB.replace("styles/starry", "styles/nope"),
                 "6: jobs[0].style: no such file 'styles/nope.png'", id="missing-style"),
    pytest.param(HEAD + JOB.replace("photos/tubingen.png", "[photos/tubingen.png, nope.jpg]"),
                 "5: jobs[0].content[1]: no such file or folder 'nope.jpg'", id="missing-content"),
    pytest.param(HEAD + JOB.replace("styles/starry.png", "styles"),
                 "6: jobs[0].style: 'styles' is a folder; expected a file", id="style-folder"),
    pytest.param(HEAD + JOB.replace("photos/tubingen.png", "empty"),
                 "5: jobs[0].content: no images in folder 'empty' (looked for .jpg .jpeg .png "
                 ".bmp .webp .tif .tiff)", id="empty-folder"),
    pytest.param(HEAD + JOB.replace("photos/tubingen.png", "'photos/*.jpg'"),
                 "5: jobs[0].content: glob 'photos/*.jpg' matches no images", id="glob-nothing"),
    pytest.param(HEAD + TWO_STYLES + "    style_blend: [1]\n",
                 "7: jobs[0].style_blend: expected 2 weights (one per style), got 1",
                 id="style-blend-length"),
    pytest.param(HEAD + TWO_STYLES + "    style_blend: [1, -1]\n",
                 "7: jobs[0].style_blend: expected numbers between 0 and 1e+12, got -1",
                 id="style-blend-negative"),
    pytest.param("version: 1\noutput: out\ndefaults: {style_blend: [1, 1]}\njobs:\n"
                 + JOB.replace("name: a", "name: one"),
                 "3: defaults.style_blend: expected 1 weights (one per style), got 2 (job one)",
                 id="default-style-blend-length"),
    pytest.param(HEAD + JOB + "    start: 1\n",
                 "7: jobs[0].start: only for video jobs", id="start-for-images"),
    pytest.param(HEAD + "  - name: a\n    video: clips/clip.mp4\n    style: styles/starry.png\n"
                 "    start: 1\n    end: 0.5\n",
                 "8: jobs[0].end: expected a value > start (1.0), got 0.5", id="end-before-start"),
    pytest.param(HEAD + "  - name: a\n    video: clips/clip.mp4\n    style: styles/starry.png\n"
                 "    start: 2\n", "7: jobs[0].start: expected a value before the end of the video "
                 "(2 s), got 2", id="start-past-end"),
    pytest.param(HEAD + "  - name: a\n    video: clips/clip.mp4\n    style: styles/starry.png\n"
                 "    fps: 0\n", "7: jobs[0].fps: expected at least 1 frame per second, got 0", id="fps-0"),
    pytest.param(HEAD + "  - name: a\n    video: clips/nope.mp4\n    style: styles/starry.png\n",
                 "5: jobs[0].video: no such file 'clips/nope.mp4'", id="missing-video"),
    pytest.param(HEAD + JOB.replace("name: a", "name: ../evil"),
                 "4: jobs[0].name: '../evil' cannot name a folder: use letters, digits, '.', '_' "
                 "and '-', not starting with '.'", id="name-dotdot"),
    pytest.param(HEAD + JOB.replace("name: a", "name: a/b"),
                 "4: jobs[0].name: 'a/b' cannot name a folder: use letters, digits, '.', '_' "
                 "and '-', not starting with '.'", id="name-slash"),
    pytest.param(HEAD + JOB.replace("name: a", "name: '..'"),
                 "4: jobs[0].name: '..' cannot name a folder: use letters, digits, '.', '_' "
                 "and '-', not starting with '.'", id="name-dotdot-alone"),
    pytest.param(HEAD + JOB.replace("name: a", "name: 2024"),
                 "4: jobs[0].name: expected text, got 2024 (int)", id="name-number"),
    pytest.param(HEAD + "  - photos/tubingen.png\n",
                 "4: jobs[0]: expected a mapping with 'name', 'content' or 'video', and 'style', "
                 "got 'photos/tubingen.png'", id="job-not-mapping"),
]


@pytest.mark.parametrize("text, expected", BAD)
def test_bad_manifest_gives_one_line(tree: Path, text: str, expected: str) -> None:
    path = write(tree, text)
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert str(caught.value) == f"{path}:{expected}"
    assert len(caught.value.errors) == 1


def test_python_tags_are_refused_and_not_run(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    path = write(tree, HEAD + JOB.replace("photos/tubingen.png",
                                          '!!python/object/apply:os.system ["touch PWNED"]'))
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert str(caught.value) == (f"{path}:5: jobs[0].content: YAML tag "
                                 "'!!python/object/apply:os.system' is not allowed; a manifest "
                                 "holds plain data only")
    assert not (tree / "PWNED").exists()


def test_python_tag_on_the_whole_manifest_is_refused(tree: Path) -> None:
    path = write(tree, "!!python/object:batch_style.settings.Settings {size: 4}\n")
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert str(caught.value) == (f"{path}:1: expected a mapping with 'version', 'output' and "
                                 "'jobs', got a mapping tagged '!!python/object:batch_style."
                                 "settings.Settings'")


def test_every_problem_in_a_file_is_reported_in_line_order(tree: Path) -> None:
    path = write(tree, """
        version: 1
        output: out
        defaults: {stpes: 3}
        jobs:
          - name: a
            content: photos/nope.png
            style: styles/starry.png
            settings: {size: 0, optimizer: sgd}
          - name: a
            video: clips/clip.mp4
            style: styles/starry.png
            outputs: [image]
    """)
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert [(e.line, e.field) for e in caught.value.errors] == [
        (3, "defaults.stpes"),
        (6, "jobs[0].content"),
        (8, "jobs[0].settings.size"),
        (8, "jobs[0].settings.optimizer"),
        (9, "jobs[1].name"),
        (12, "jobs[1].outputs[0]"),
    ]
    assert str(caught.value).count("\n") == 5


def test_inputs_are_checked_even_when_settings_do_not_add_up(tree: Path) -> None:
    (tree / "photos/fake.png").write_text("just text")
    path = write(tree, HEAD + JOB.replace("tubingen", "fake")
                 + "    settings: {style_layer_weights: [1]}\n")
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert [(e.line, e.field) for e in caught.value.errors] == [
        (5, "jobs[0].content"), (7, "jobs[0].settings.style_layer_weights")]


def test_a_bad_default_is_reported_once_for_many_jobs(tree: Path) -> None:
    path = write(tree, "version: 1\noutput: out\ndefaults: {init: nope.png}\njobs:\n" + JOB
                 + JOB.replace("name: a", "name: b"))
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert str(caught.value) == f"{path}:3: defaults.init: no such file 'nope.png'"


def test_same_file_name_from_two_folders_is_refused(tree: Path) -> None:
    png(tree / "clash/x.png")
    png(tree / "clash/x.jpg")  # same stem, different name: plan.stems tells them apart
    png(tree / "other/x.png")
    path = write(tree, HEAD + JOB.replace("photos/tubingen.png", "[clash, other]"))
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert str(caught.value) == (f"{path}:5: jobs[0].content: 'clash/x.png' and 'other/x.png' "
                                 "have the same file name; their results would overwrite each "
                                 "other")


def test_not_an_image_is_reported_at_its_line(tree: Path) -> None:
    (tree / "photos/fake.png").write_text("just text")
    path = write(tree, HEAD + JOB.replace("tubingen", "fake"))
    with pytest.raises(UserErrors) as caught:
        load(path)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.field) == (path, 5, "jobs[0].content")
    assert error.message.startswith("'photos/fake.png': ")
    assert "image" in error.message


def test_too_many_pixels_uses_the_jobs_max_pixels(tree: Path) -> None:
    path = write(tree, HEAD + JOB + "    settings: {max_pixels: 500}\n")  # images are 32x24
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert [(e.line, e.field) for e in caught.value.errors] == [
        (5, "jobs[0].content"), (6, "jobs[0].style")]


def test_not_a_video_is_reported_at_its_line(tree: Path) -> None:
    (tree / "clips/bad.mp4").write_bytes(b"not a video")
    path = write(tree, HEAD + "  - name: a\n    video: clips/bad.mp4\n    style: styles/starry.png\n")
    with pytest.raises(UserErrors) as caught:
        load(path)
    assert str(caught.value) == f"{path}:5: jobs[0].video: 'clips/bad.mp4': not a video: no video " \
                                "stream"


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(UserErrors) as caught:
        load(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_load_all_collects_problems_across_files(tree: Path) -> None:
    good = write(tree, HEAD + JOB, "good.yaml")
    bad = write(tree, HEAD + JOB.replace("name: a", "name: b").replace("starry", "nope"),
                "bad.yaml")
    worse = write(tree, "version: 2\n", "worse.yaml")
    with pytest.raises(UserErrors) as caught:
        load_all([good, bad, worse])
    assert [(e.file, e.line) for e in caught.value.errors] == [
        (bad, 6), (worse, 1), (worse, 1), (worse, 1)]


def test_load_all_refuses_two_manifests_writing_the_same_job_folder(tree: Path) -> None:
    first = write(tree, HEAD + JOB, "first.yaml")
    (tree / "more").mkdir()
    second = write(tree / "more", "version: 1\noutput: ../out\njobs:\n"
                   + JOB.replace("photos/", "../photos/").replace("styles/", "../styles/"),
                   "second.yaml")
    with pytest.raises(UserErrors) as caught:
        load_all([first, second])
    assert str(caught.value) == (f"{second}:4: jobs[0].name: job 'a' writes into the same folder, "
                                 f"'{tree / 'out/a'}', as the job on {first}:4")


def test_load_all_accepts_distinct_folders_and_reads_a_repeated_manifest_once(tree: Path) -> None:
    first = write(tree, HEAD + JOB, "first.yaml")
    second = write(tree, HEAD.replace("output: out", "output: elsewhere") + JOB, "second.yaml")
    manifests = load_all([first, second, first])
    assert [m.path.name for m in manifests] == ["first.yaml", "second.yaml"]
    assert all(isinstance(m, Manifest) for m in manifests)


def test_jobs_pickle(tree: Path) -> None:
    import pickle

    manifest = load(write(tree, VALID))
    assert pickle.loads(pickle.dumps(manifest)) == manifest


def test_real_video_probe(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against video.probe_video itself, with a tiny clip written by imageio's ffmpeg."""
    monkeypatch.undo()  # drop the fake probes
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    import numpy as np

    frames = np.zeros((5, 32, 32, 3), np.uint8)
    iio.imwrite(tree / "clips/tiny.mp4", frames, fps=5, codec="libx264", macro_block_size=16)
    (tree / "clips/text.mp4").write_text("not a video at all")
    job = "  - name: NAME\n    video: clips/FILE\n    style: styles/starry.png\n"
    path = write(tree, HEAD + job.replace("NAME", "a").replace("FILE", "tiny.mp4")
                 + job.replace("NAME", "b").replace("FILE", "text.mp4"))
    with pytest.raises(UserErrors) as caught:
        load(path)
    (error,) = caught.value.errors
    assert (error.line, error.field) == (8, "jobs[1].video")
    assert error.message.startswith("'clips/text.mp4': ")
    assert "video" in error.message



def test_style_masks_image_masks_and_protect_load(tree: Path) -> None:
    """Styles with masks next to plain ones; a folder of masks matched to the photos by stem
    (c3 is portrait, so is its mask); masks of another size but the same shape are fine."""
    png(tree / "masks/sky.png", (64, 48))
    for name, size in (("c1.png", (32, 24)), ("c2.png", (64, 48)), ("c3.jpg", (24, 32))):
        png(tree / "faces" / name, size)
    png(tree / "styles/starry-sky.png", (32, 24))
    (manifest_job, folder_job) = load(write(tree, """
        version: 1
        output: out
        jobs:
          - name: two
            content: photos/tubingen.png
            style:
              - {image: styles/starry.png, mask: masks/sky.png, image_mask: styles/starry-sky.png}
              - styles/kandinsky.png
            style_blend: [2, 1]
          - name: faces
            content: folder/
            style: {image: styles/starry.png, mask: faces}
            protect: faces
    """)).jobs
    assert manifest_job.styles == (tree / "styles/starry.png", tree / "styles/kandinsky.png")
    assert manifest_job.masks.styles == (tree / "masks/sky.png", None)
    assert manifest_job.masks.images == (tree / "styles/starry-sky.png", None)
    assert manifest_job.masks.protect is None and manifest_job.settings.style_blend == (2.0, 1.0)
    assert folder_job.masks.protect == tree / "faces"
    assert folder_job.masks.styles == (tree / "faces",) and folder_job.masks.images == ()


def test_every_mask_problem_of_a_manifest_at_once(tree: Path) -> None:
    png(tree / "masks/square.png", (30, 30))
    png(tree / "faces/c1.png", (32, 24))
    path = write(tree, """
        version: 1
        output: out
        jobs:
          - name: a
            content: photos/tubingen.png
            style: [{image: styles/starry.png, mask: masks/square.png, maks: x}]
          - name: b
            content: folder/
            style: styles/starry.png
            protect: faces
    """)
    with pytest.raises(UserErrors) as caught:
        load(path)
    lines = [str(e) for e in caught.value.errors]
    assert lines == [
        f"{path}:6: jobs[0].style[0].maks: unknown key (did you mean 'mask'?); expected one of "
        f"image, mask, image_mask",
        f"{path}:6: jobs[0].style[0].mask: 'masks/square.png' is 30×30 and "
        f"'photos/tubingen.png' is 32×24: a mask must have its picture's aspect ratio (within "
        f"1%; it is resized with the picture)",
        f"{path}:10: jobs[1].protect: no mask for 'c2.jpg', 'c3.PNG' in 'faces' (a mask is found "
        f"by its photo's name without the extension, e.g. 'c2.png')"]
