"""Tests for batch_style.pipeline.watch and snapshots: report.html is live while a run goes."""

from __future__ import annotations

import html.parser
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import wait_for
from PIL import Image

from batch_style import orchestrator as runner
from batch_style.pipeline import watch as live
from batch_style.pipeline.state import snapshots


class Page(html.parser.HTMLParser):
    """A report read back: it must be a whole page (parsed to its end, every element closed)."""

    VOID = {"meta", "img", "br", "input", "link", "polyline", "path", "line", "rect", "circle"}

    def __init__(self, text: str):
        super().__init__()
        self.open: list[str] = []
        self.images: list[str] = []
        self.meta_refresh = False
        assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>\n"), text[-80:]
        self.feed(text)
        self.close()
        assert self.open == [], self.open

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "meta" and attrs.get("http-equiv") == "refresh":
            self.meta_refresh = True
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag not in self.VOID:
            assert self.open and self.open[-1] == tag, (self.open[-3:], tag)
            self.open.pop()


class Reader:
    """Reads report.html over and over from a thread of its own while a run goes, parsing every
    copy; `pages` keeps each distinct one."""

    def __init__(self, path: Path):
        self.path, self.reads, self.pages = path, 0, {}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop.wait(0.002):  # often, but leaving the run its share of the GIL
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            try:
                self.pages.setdefault(text, Page(text))
            except BaseException as e:  # a half-written page: the test fails with it
                self.errors.append(e)
                return
            self.reads += 1

    def close(self):
        self.stop.set()
        self.thread.join()
        assert not self.errors, self.errors[0]


def _png(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC).save(path)
    return path


@pytest.fixture
def gated(monkeypatch):
    """Each unit stops at its first snapshot, once written, until the test opens its gate:
    gates[key] is set by the test, reached[key] by the unit."""
    reached: dict[str, threading.Event] = {}
    gates: dict[str, threading.Event] = {}
    original = snapshots.LiveSnapshot.update
    keys = iter(["two/a", "two/b"])

    def update(self, progress):
        original(self, progress)
        if progress.snapshot is not None and not getattr(self, "gated", False):
            self.gated, key = True, next(keys)
            reached.setdefault(key, threading.Event()).set()
            assert gates.setdefault(key, threading.Event()).wait(120), "the test never came"

    monkeypatch.setattr(snapshots.LiveSnapshot, "update", update)
    monkeypatch.setattr(snapshots, "SNAPSHOT_EVERY_S", 0.0)
    monkeypatch.setattr(live, "REFRESH_EVERY_S", 0.05)
    return reached, gates


def test_the_report_is_live_while_the_run_goes(tmp_path, gated):
    reached, gates = gated
    pytest.importorskip("tensorflow")  # loaded before the clock of the waits below starts
    _png(tmp_path / "style.png", (32, 32), seed=1)
    (tmp_path / "photos").mkdir()
    for name, seed in (("a", 2), ("b", 3)):
        _png(tmp_path / "photos" / f"{name}.png", (32, 24), seed=seed)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({
        "version": 1, "output": "out", "jobs": [{"name": "two", "content": "photos/",
                                                 "style": "style.png"}],
        "defaults": {"size": 32, "steps": 4, "optimizer": "adam", "snapshot_every": 2}}))
    out = tmp_path / "out"
    report = out / "report.html"
    reader = Reader(report)
    result: dict = {}
    run = threading.Thread(target=lambda: result.update(summary=runner.run(
        [manifest], runner.RunOptions(tiny=True, workers=0))), daemon=True)
    run.start()
    snapshot = f".batch_style/snapshots/{os.getpid()}.jpg"  # workers=0: this process paints
    try:
        # The first unit at its first snapshot: the page shows its picture, reloading itself.
        assert reached.setdefault("two/a", threading.Event()).wait(120)
        text = wait_for(lambda: next((t for t in list(reader.pages)
                                      if f'src="{snapshot}"' in t and "two/a" in t), None),
                        60, "the page to show the first unit's snapshot")
        page = reader.pages[text]
        assert page.meta_refresh and "Running: 0 of 2 units done" in text
        assert page.images.count(snapshot) == 2  # above the jobs, and in the unit's row
        with Image.open(out / snapshot) as im:
            assert im.format == "JPEG" and max(im.size) <= snapshots.SNAPSHOT_PX
        gates.setdefault("two/a", threading.Event()).set()
        # The first done, the second busy: the page says so, with a time left.
        assert reached.setdefault("two/b", threading.Event()).wait(120)
        wait_for(lambda: any("Running: 1 of 2 units done · about" in t and "two/b" in t
                             for t in list(reader.pages)), 60, "the page after the first unit")
        gates.setdefault("two/b", threading.Event()).set()
        run.join(120)
    finally:
        for gate in gates.values():
            gate.set()
        reader.close()
    assert result["summary"].exit_code == 0
    assert reader.reads >= len(reader.pages) >= 3
    # The last page is still: no reload, no snapshot; the run's snapshots are gone.
    final = Page(report.read_text(encoding="utf-8"))
    assert not final.meta_refresh and not any("snapshots" in s for s in final.images)
    assert list((out / ".batch_style" / "snapshots").iterdir()) == []


def test_a_failing_page_does_not_stop_the_run(tmp_path, monkeypatch):
    written: list[live.LiveView] = []

    def write(view):
        written.append(view)
        raise OSError("no space left for the page")

    report = live.LiveReport(tmp_path, write, every_s=0.01)
    report.event("start", {"total": 1, "todo": 1, "skipped": 0, "costs": {"j/a": 1.0}})
    report.event("unit_start", {"key": "j/a", "attempt": 1})
    wait_for(lambda: len(written) >= 2, 30, "a second write")
    report.event("unit_done", {"key": "j/a", "status": "done", "seconds": 1.0})
    report.close()
    assert written[0].total == 1 and written[0].busy == ()
    assert any(v.busy and v.busy[0].key == "j/a" and v.busy[0].snapshot is None
               for v in written)
    assert report.warned  # said once, in the log; the run went on


def test_writes_are_spaced_by_their_cost(tmp_path):
    # A page that takes long to write (a big night's) is written less often, so that the live
    # report takes at most RENDER_SHARE of a core from the workers.
    report = live.LiveReport(tmp_path, lambda view: time.sleep(0.05), every_s=0.01)
    report._write()
    assert report.interval >= 0.05 / live.RENDER_SHARE


def test_snapshots_are_small_jpegs_of_the_unit_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshots, "SNAPSHOT_EVERY_S", 0.0)

    class Step:
        def __init__(self, picture):
            self.snapshot = picture

    state = tmp_path / ".batch_style"
    shot = snapshots.LiveSnapshot(state)
    assert shot.path == snapshots.snapshot_path(tmp_path, os.getpid())
    shot.update(Step(None))
    assert not shot.path.exists()  # no picture at this step: nothing written
    shot.update(Step(np.full((600, 300, 3), 0.5, np.float32)))
    with Image.open(shot.path) as im:
        assert im.format == "JPEG" and im.size == (128, 256)
    snapshots.LiveSnapshot(state)  # the worker's next unit: the old picture goes
    assert not shot.path.exists()
    shot.update(Step(np.zeros((8, 8, 3), np.float32)))
    assert shot.path.exists()
    shot.done()
    assert not shot.path.exists()
    shot.update(Step(np.zeros((8, 8, 3), np.float32)))
    (shot.path.parent / "notes.txt").write_text("not ours")
    snapshots.clear(tmp_path)  # a run's start and end: no worker is busy
    assert [p.name for p in shot.path.parent.iterdir()] == ["notes.txt"]
    assert snapshots.LiveSnapshot(None).path is None  # `stylize`: nothing to write
