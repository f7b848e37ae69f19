"""engine/autotune.py: `auto` chosen from timings kept per machine. Nothing is timed here: the
figures are given, and the tiny networks are never timed."""

from __future__ import annotations

import html
import json
from types import SimpleNamespace

import numpy as np
import pytest

from batch_style.engine import autotune, tf_runtime
from batch_style.engine.model import TINY_WIDTHS, VGG19_WIDTHS
from batch_style.settings import resolve

VGG19 = SimpleNamespace(widths=VGG19_WIDTHS, winograd_differs=True)  # what choose() reads
TINY = SimpleNamespace(widths=TINY_WIDTHS, winograd_differs=False)
FIGURES = {"float32": 0.46, "winograd": 0.36, "bfloat16": 0.15}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The cache folder in tmp_path: autotune.json's path."""
    monkeypatch.setenv("BATCH_STYLE_CACHE", str(tmp_path))
    return tmp_path / autotune.CACHE_NAME


@pytest.fixture
def cpu(monkeypatch):
    """cpu(native): this process computes on a CPU, with or without native bfloat16."""
    def on(native: bool = False) -> None:
        monkeypatch.setattr(tf_runtime, "has_gpu", lambda: False)
        monkeypatch.setattr(tf_runtime, "native_bfloat16", lambda: native)
    return on


def never_timed(arithmetic, size):
    raise AssertionError(f"timed {arithmetic} at {size}")


# -- the cache ------------------------------------------------------------------------------------
def test_buckets_and_the_key_name_the_machine():
    assert [autotune.bucket(n) for n in (48, 256, 257, 512, 4096)] == [256, 256, 512, 512, 512]
    assert autotune.timed_size(256) == (256, 192) and autotune.timed_size(512) == (384, 288)
    key = autotune.cache_key(256)
    assert key == (f"{autotune.tf_runtime.cpu_model()} [{autotune.tf_runtime.cpu_signature()}] | "
                   f"TF {autotune.tf_runtime.tf_version()} | 256 px")
    assert autotune.tf_runtime.cpu_model() and autotune.tf_runtime.tf_version() != "unknown"


def test_figures_round_trip_per_bucket_and_other_machines_are_kept(cache):
    cache.write_text(json.dumps({"Another CPU | TF 2.0 | 256 px": {"float32": 1.0}}))
    autotune.remember(256, FIGURES)
    assert autotune.cached(256) == FIGURES
    assert autotune.cached(512) == {}
    data = json.loads(cache.read_text())
    assert set(data) == {"Another CPU | TF 2.0 | 256 px", autotune.cache_key(256)}
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".")]  # no temporaries


@pytest.mark.parametrize("text", ["\x00{not json", "[1, 2]", '{"k": "v"}', ""])
def test_a_corrupt_cache_is_ignored_and_rewritten(cache, text):
    cache.write_text(text)
    assert autotune.cached(256) == {}
    autotune.remember(256, FIGURES)
    assert autotune.cached(256) == FIGURES


def test_figures_that_are_not_seconds_are_dropped(cache):
    cache.write_text(json.dumps({autotune.cache_key(256): {"float32": "fast", "winograd": -1,
                                                           "bfloat16": 0.2, "other": 0.1}}))
    assert autotune.cached(256) == {"bfloat16": 0.2}


# -- the choice, from figures ---------------------------------------------------------------------
@pytest.mark.parametrize("precision, convolution, native, expected", [
    ("auto", "auto", False, ["float32", "winograd"]),
    ("auto", "auto", True, ["float32", "winograd", "bfloat16"]),
    ("float32", "auto", True, ["float32", "winograd"]),
    ("mixed", "auto", False, ["float32", "winograd"]),
    ("auto", "direct", True, ["float32", "bfloat16"]),
    ("auto", "direct", False, []),  # nothing left to choose
    ("float32", "winograd", True, []),
    ("bfloat16", "auto", True, []),
])
def test_what_a_choice_needs_timed(precision, convolution, native, expected):
    assert autotune.candidates(precision, convolution, native) == expected


@pytest.mark.parametrize("figures, precision, convolution, native, chosen, reason", [
    ({"float32": 0.46, "winograd": 0.36}, "auto", "auto", False, ("winograd", "float32"),
     "winograd 0.36 s/step < direct 0.46 s; float32 (no native bfloat16)"),
    ({"float32": 0.30, "winograd": 0.40}, "auto", "auto", False, ("direct", "float32"),
     "direct 0.30 s/step < winograd 0.40 s; float32 (no native bfloat16)"),
    # mixed: 0.75·0.15 + 0.25·0.36 = 0.2025 s a step
    (FIGURES, "auto", "auto", True, ("winograd", "mixed"),
     "winograd 0.36 s/step < direct 0.46 s; mixed 0.20 s/step < float32 0.36 s (bfloat16 0.15 "
     "s/step for 75% of the steps)"),
    ({**FIGURES, "bfloat16": 0.60}, "auto", "auto", True, ("winograd", "float32"),
     "winograd 0.36 s/step < direct 0.46 s; float32 0.36 s/step < mixed 0.54 s (bfloat16 0.60 "
     "s/step for 75% of the steps)"),
    ({"float32": 0.46, "winograd": 0.36}, "mixed", "auto", True, ("winograd", "mixed"),
     "winograd 0.36 s/step < direct 0.46 s; mixed (as set)"),
    ({"float32": 0.46, "bfloat16": 0.15}, "auto", "direct", True, ("direct", "mixed"),
     "direct (as set); mixed 0.23 s/step < float32 0.46 s (bfloat16 0.15 s/step for 75% of the "
     "steps)"),
    ({}, "float32", "winograd", True, ("winograd", "float32"),
     "winograd (as set); float32 (as set)"),
    ({}, "bfloat16", "auto", True, ("direct", "bfloat16"),
     "bfloat16 (as set), whose convolutions are direct"),
])
def test_the_choice_is_the_cheapest_expected_step(figures, precision, convolution, native, chosen,
                                                  reason):
    choice = autotune.decide(figures, precision, convolution, native)
    assert (choice.convolution, choice.precision) == chosen
    assert choice.reason == reason
    assert choice.winograd is (chosen[0] == "winograd")


def test_the_reason_says_where_it_was_measured():
    choice = autotune.decide(FIGURES, "auto", "auto", False, autotune.where((256, 192)))
    assert choice.reason.endswith(f"; timed on a 256×192 px sample on "
                                  f"{autotune.tf_runtime.cpu_model()}, "
                                  f"TF {autotune.tf_runtime.tf_version()}")
    assert str(choice).startswith("winograd convolutions, float32: winograd 0.36 s/step")


# -- when it is timed -----------------------------------------------------------------------------
def test_explicit_settings_are_never_timed(cache, cpu):
    cpu(native=True)
    settings = resolve({"precision": "float32", "convolution": "direct"})
    choice = autotune.choose(settings, 256, never_timed, VGG19)
    assert (choice.convolution, choice.precision, choice.reason) == (
        "direct", "float32", "direct (as set); float32 (as set)")
    assert not cache.exists()


def test_the_real_network_is_timed_once_per_bucket_then_read(cache, cpu, monkeypatch):
    cpu(native=False)
    timed = []

    def timer(arithmetic, size):
        timed.append((arithmetic, size))
        return lambda: None

    monkeypatch.setattr(autotune, "measure", lambda calls: {a: FIGURES[a] for a in calls})
    settings = resolve({})
    first = autotune.choose(settings, 200, timer, VGG19)
    assert timed == [("float32", (256, 192)), ("winograd", (256, 192))]
    assert (first.convolution, first.precision) == ("winograd", "float32")
    assert first.reason.startswith("winograd 0.36 s/step < direct 0.46 s; float32 (no native")
    assert autotune.cached(256) == {"float32": 0.46, "winograd": 0.36}
    again = autotune.choose(settings, 256, never_timed, VGG19)  # from the cache
    assert again == autotune.Choice(first.convolution, first.precision, first.reason + " (cached)")
    autotune.choose(settings, 2048, timer, VGG19)  # another bucket: timed at 384 px
    assert timed[2:] == [("float32", (384, 288)), ("winograd", (384, 288))]


def test_a_test_network_or_a_gpu_keeps_the_family_rule(cache, cpu, monkeypatch):
    cpu(native=False)
    choice = autotune.choose(resolve({}), 256, never_timed, TINY)
    assert (choice.convolution, choice.precision) == ("direct", "float32")
    assert choice.reason.startswith("not measured (test network)")
    monkeypatch.setattr(tf_runtime, "has_gpu", lambda: True)
    monkeypatch.setattr(tf_runtime, "native_bfloat16", lambda: True)  # an Ampere card
    choice = autotune.choose(resolve({}), 256, never_timed, VGG19)
    assert (choice.convolution, choice.precision) == ("direct", "mixed")
    assert choice.reason.startswith("not measured on a GPU")
    assert not cache.exists()


def test_the_stylizer_says_what_it_chose(cache):
    from batch_style.engine.model import FeatureModel
    from batch_style.engine.stylizer import Stylizer

    settings = resolve({"size": 48, "steps": 2, "optimizer": "adam", "precision": "float32"})
    stylizer = Stylizer(FeatureModel(settings.content_layers + settings.style_layers, None,
                                     TINY_WIDTHS))
    picture = np.random.default_rng(0).uniform(0, 1, (36, 48, 3)).astype(np.float32)
    result = stylizer.stylize(picture, [picture], settings)
    assert result.choice == stylizer.choice(settings, 48)
    assert result.choice.reason.startswith("not measured (test network)")
    assert not cache.exists()


# -- where it is shown ----------------------------------------------------------------------------
def test_the_dry_run_shows_the_measured_choice_or_that_it_is_to_come(cache, media_dir,
                                                                     write_manifest):
    from batch_style import console, dry_run
    from batch_style.pipeline.read.manifest import load_all

    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])
    (loaded,) = load_all([manifest])
    lines = console.describe_plan(dry_run.preview(loaded, device="cpu")).splitlines()
    assert lines[3] == ("    computes with: auto: measured at the first unit (not yet timed "
                        "on this machine on a 256×192 px sample)")
    assert lines[4] == "    time: measured at the first unit"
    autotune.remember(256, FIGURES)
    computes = console.describe_plan(dry_run.preview(loaded, device="cpu")).splitlines()[3]
    assert computes.startswith("    computes with: winograd convolutions, ")
    assert "winograd 0.36 s/step < direct 0.46 s; " in computes
    assert computes.endswith(f"; {autotune.where((256, 192))} (cached)")
    explicit = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}],
                              defaults={"convolution": "direct", "precision": "float32"},
                              name="explicit.yaml")
    (loaded,) = load_all([explicit])
    assert console.describe_plan(dry_run.preview(loaded, device="cpu")).splitlines()[3] == (
        "    computes with: direct convolutions, float32: direct (as set); float32 (as set)")


def test_the_dry_run_adds_up_the_time_from_the_cached_timings(cache, media_dir, write_manifest):
    from batch_style import console, dry_run
    from batch_style.pipeline.read.manifest import load_all

    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}],
                              defaults={"size": 128, "steps": 400})
    (loaded,) = load_all([manifest])
    assert console.describe_plan(dry_run.preview(loaded, device="cpu")).splitlines()[4] == \
        "    time: measured at the first unit"
    autotune.remember(256, FIGURES)
    # 400 steps at 128 px, at winograd's 0.36 s per step of the 256-px bucket: 400 × 0.36 / 4
    assert console.describe_plan(dry_run.preview(loaded, device="cpu")).splitlines()[4] == \
        "    time: about 36s (this machine's cached timings)"


def test_the_report_shows_each_jobs_choice_once():
    from batch_style.views.report_data import JobView, UnitView
    from batch_style.views.report_html import chosen

    job = JobView("pair", {})
    reason = "winograd 0.36 s/step < direct 0.46 s; float32 (no native bfloat16)"
    job.units = [UnitView(f"pair/{n}", "pair", {}, {"status": "done", "choice": reason})
                 for n in "ab"] + [UnitView("pair/c", "pair", {}, None)]
    assert chosen(job) == f'<p class="meta">convolution and precision: {html.escape(reason)}</p>'
    assert chosen(JobView("empty", {})) == ""


# -- a cache that others hold, or that is not a file --------------------------------------------
@pytest.fixture
def held(cache):
    """Another process holding the measurers' lock (one suspended with Ctrl-Z as it measures)."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)",
         str(cache.with_suffix(".lock"))], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    yield holder
    holder.kill()
    holder.wait()


def choose_within(seconds: float, *args):
    """autotune.choose(*args) in a thread: its choice, or a failure when it is still waiting."""
    import threading

    box = []
    thread = threading.Thread(target=lambda: box.append(autotune.choose(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "choose() still waits for the lock"
    return box[0]


def test_cached_figures_are_read_while_another_process_holds_the_lock(cache, cpu, held):
    cpu(native=False)
    autotune.remember(256, FIGURES)
    choice = choose_within(60, resolve({}), 256, never_timed, VGG19)
    assert choice.reason.endswith("(cached)")


def test_a_held_lock_is_waited_for_with_a_bound_and_said(cache, cpu, held, monkeypatch, caplog):
    cpu(native=False)
    monkeypatch.setattr(autotune, "LOCK_WAIT_SECONDS", 0.4)
    choice = choose_within(60, resolve({}), 256, never_timed, VGG19)
    assert choice.reason.startswith("not measured: another process held the autotune lock")
    said = [r.getMessage() for r in caplog.records if r.name == "batch_style"]
    assert said[0].startswith("autotune: another process is measuring this machine")
    assert "waiting up to 0.4 s" in said[0] and "still held after 0.4 s" in said[1]


def test_a_fifo_for_the_cache_blocks_nothing(tmp_path, media_dir, write_manifest, cli):
    import os

    os.mkfifo(tmp_path / autotune.CACHE_NAME)
    os.mkfifo(tmp_path / "autotune.lock")
    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])
    dry = cli.run("run", "--dry-run", manifest, BATCH_STYLE_CACHE=str(tmp_path))
    assert dry.returncode == 0, dry.stderr
    assert "not yet timed on this machine" in dry.stdout + dry.stderr
    assert autotune.read_cache(tmp_path / autotune.CACHE_NAME) == {}
    doctor = cli.run("doctor", BATCH_STYLE_CACHE=str(tmp_path))
    assert "Traceback" not in doctor.stderr and "internal error" not in doctor.stderr
