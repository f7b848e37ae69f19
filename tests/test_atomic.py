"""Tests for batch_style.atomic."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from batch_style.atomic import (
    TMP_MARK,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    clean_temporaries,
    scratch_path,
    temporary_name,
)


def test_temporary_name_is_hidden_in_same_folder_with_same_suffix(tmp_path):
    final = tmp_path / "x.png"
    tmp = temporary_name(final)
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(".x.png" + TMP_MARK + str(os.getpid()) + "-")
    assert tmp.suffix == ".png"
    assert temporary_name(final) != tmp


def test_atomic_path_moves_into_place(tmp_path):
    final = tmp_path / "out.txt"
    with atomic_path(final) as tmp:
        tmp.write_text("done")
        assert not final.exists()
    assert final.read_text() == "done"
    assert list(tmp_path.iterdir()) == [final]


def test_atomic_path_leaves_nothing_when_the_body_raises(tmp_path):
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="boom"), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_old_file_when_the_body_raises(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(final) as tmp:
        tmp.write_text("new, half written")
        raise KeyboardInterrupt
    assert final.read_text() == "old"
    assert list(tmp_path.iterdir()) == [final]


def test_atomic_write_bytes_and_text_replace(tmp_path):
    final = tmp_path / "a.txt"
    atomic_write_bytes(final, b"one")
    atomic_write_text(final, "zwei \u00fc")
    assert final.read_text(encoding="utf-8") == "zwei \u00fc"
    assert list(tmp_path.iterdir()) == [final]


def test_scratch_path_is_always_removed(tmp_path):
    with scratch_path(tmp_path / "v.mp4") as tmp:
        tmp.write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []


def test_clean_temporaries_removes_leftovers_of_dead_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    nested = tmp_path / "job" / "frames"
    nested.mkdir(parents=True)
    leftovers = [tmp_path / f".a.png{TMP_MARK}{dead_pid}-0badf00d.png",
                 nested / f".000001.png{TMP_MARK}{dead_pid}-12345678.png"]
    for path in leftovers:
        path.write_bytes(b"partial")
    keep = [tmp_path / "a.png", nested / "000001.png",
            tmp_path / f".b.png{TMP_MARK}{os.getpid()}-00000000.png"]  # ours: still writing
    for path in keep:
        path.write_bytes(b"whole")

    assert clean_temporaries(tmp_path) == 2
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in keep)
    assert clean_temporaries(tmp_path / "missing") == 0
