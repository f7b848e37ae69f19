"""Tests for batch_style's library face (library.py): stylize, paint, run, Settings."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import ledger_records
from PIL import Image

import batch_style
from batch_style import cli as cli_module
from batch_style import library
from batch_style.errors import UserError, UserErrors

TINY = {"size": 48, "steps": 2, "tiny": True, "device": "cpu"}


def test_stylize_takes_paths_and_returns_a_picture_of_the_asked_size(media_dir):
    picture = batch_style.stylize(media_dir / "photo.png", str(media_dir / "style.png"), **TINY)
    assert isinstance(picture, Image.Image) and picture.mode == "RGB"
    assert max(picture.size) == 48


def test_arrays_and_pil_images_are_pictures_too(media_dir):
    photo = np.asarray(Image.open(media_dir / "photo.png").convert("RGB"))
    style = Image.open(media_dir / "style.png")
    from_files = batch_style.paint(media_dir / "photo.png", media_dir / "style.png",
                                   library.settings_of({"size": 48, "steps": 2}),
                                   tiny=True, device="cpu")
    from_memory = batch_style.paint(photo, style, library.settings_of({"size": 48, "steps": 2}),
                                    tiny=True, device="cpu")
    # 8-bit arrays and PIL images read as the files do: the same picture, the same result.
    np.testing.assert_allclose(from_memory.image, from_files.image, atol=1e-4)
    floats = batch_style.stylize(photo / 255.0, style, **TINY)
    assert floats.size == from_files.picture().size


@pytest.mark.parametrize("picture, message", [
    (np.zeros((8, 8)), "expected an array H×W×3, got shape (8, 8)"),
    (np.full((8, 8, 3), 2.0), "expected values in [0, 1] (floats) or 0-255 (uint8)"),
])
def test_a_bad_array_is_a_user_error(media_dir, picture, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        batch_style.stylize(picture, media_dir / "style.png", **TINY)


def test_settings_are_checked_by_their_keyword_names(media_dir):
    with pytest.raises(UserErrors) as caught:
        batch_style.stylize(media_dir / "photo.png", media_dir / "style.png", size=-3,
                            optimiser="adam", tiny=True)
    fields = sorted(e.field for e in caught.value.errors)
    assert fields == ["optimiser", "size"]
    assert "did you mean 'optimizer'?" in str(caught.value)
    assert batch_style.Settings().steps == library.settings_of({}).steps


def test_paint_keeps_the_progress_for_a_gif_and_reports_every_step(media_dir, tmp_path):
    seen = []
    painting = batch_style.paint(media_dir / "photo.png", media_dir / "style.png",
                                 library.settings_of({"size": 48, "steps": 4,
                                                      "snapshot_every": 2,
                                                      "optimizer": "adam"}),
                                 progress=seen.append, keep_snapshots=True, tiny=True,
                                 device="cpu")
    assert [e.step for e in seen] == [1, 2, 3, 4]
    assert len(painting.snapshots) == 2 and painting.result.steps == 4
    gif = painting.save_progress_gif(tmp_path / "p.gif")
    with Image.open(gif) as image:
        # The photo, the snapshot at step 2, and the one at step 4 — which is the result: the GIF
        # writer keeps one frame of two that are the same, held as long as both.
        assert image.n_frames == 3


def test_run_takes_a_mapping_and_resumes(media_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = {"version": 1, "output": "out", "jobs": [
        {"name": "one", "content": str(media_dir / "photo.png"),
         "style": str(media_dir / "style.png")}]}
    first = batch_style.run(manifest, workers=0, tiny=True, size=48, steps=2)
    assert (first.done, first.exit_code) == (1, 0)
    assert (tmp_path / "out" / "one" / "photo.png").is_file()
    again = batch_style.run(manifest, workers=0, tiny=True, size=48, steps=2)
    assert (again.done, again.skipped) == (0, 1)
    # The keyword settings are part of each unit's identity: other settings are other work.
    assert batch_style.run(manifest, workers=0, tiny=True, size=48, steps=3).done == 1
    assert len(ledger_records(tmp_path / "out")) >= 2


def test_a_mapping_with_a_mistake_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserErrors) as caught:
        batch_style.run({"version": 1, "output": "out", "jobs": [
            {"name": "one", "content": "missing.jpg", "style": "missing.jpg"}]}, tiny=True)
    assert all(e.file == "manifest" for e in caught.value.errors)
    assert "jobs[0].content" in str(caught.value)


def test_the_command_lines_stylize_is_the_librarys_paint(media_dir, tmp_path, monkeypatch):
    calls = []
    original = library.paint

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(library, "paint", spy)
    out = tmp_path / "r.png"
    assert cli_module.main(["stylize", str(media_dir / "photo.png"), str(media_dir / "style.png"),
                            "-o", str(out), "--tiny", "--device", "cpu", "--size", "48",
                            "--steps", "2", "-q"]) == 0
    assert len(calls) == 1 and out.is_file()


def test_a_manifest_file_and_its_mapping_plan_the_same_units(media_dir, tmp_path, monkeypatch):
    from batch_style.pipeline import plan
    from batch_style.pipeline.read.manifest import load_all

    monkeypatch.chdir(tmp_path)
    mapping = {"version": 1, "output": "out", "jobs": [
        {"name": "one", "content": str(media_dir / "photo.png"),
         "style": str(media_dir / "style.png"), "settings": {"size": 48}}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping))
    from_file, from_mapping = (plan.make_plan(m) for m in load_all([tmp_path / "m.yaml"]) +
                               load_all([mapping]))
    assert [u.hash for u in from_file.units] == [u.hash for u in from_mapping.units]
