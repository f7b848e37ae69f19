"""Tests for benchmarks.gpu_check (`make gpu-check`) where no GPU is needed: the report, the
refusals, and the order of its measurements."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO, cli_env

from batch_style.views import doctor


@pytest.fixture(scope="module")
def gpu_check():
    return importlib.import_module("benchmarks.gpu_check")


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path):
    env = cli_env(PATH="/usr/bin:/bin")  # no nvidia-smi; no simulated GPUs (cli_env drops them)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out",
                           str(tmp_path / "r.md")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "gpu-check: no GPU here (nvidia-smi lists none, or CUDA_VISIBLE_DEVICES hides them); "
        "run it on a GPU machine. `batch-style doctor` says what this one offers."]
    assert not (tmp_path / "r.md").exists()


def test_problems_found_by_doctor_stop_it(gpu_check, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check.gpus, "visible_gpus", lambda: ("0",))
    monkeypatch.setattr(gpu_check.doctor, "examine", lambda output, weights: doctor.Checkup(
        (("TensorFlow", "2.18.0"),), ("GPU 0 is visible to nvidia-smi but not to TensorFlow: "
                                      "the CUDA libraries are missing; install `.[gpu]`",)))
    assert gpu_check.main(["--out", str(tmp_path / "r.md")]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "gpu-check: fix the problems above first"


def results(kind, gpu, *args):
    """What the children would report on two A100s: 256² and 1024² px per variant."""
    if kind == "pinned":
        return {"gpu": gpu, "device": "NVIDIA A100-SXM4-40GB", "seconds": 4.5, "steps": 100,
                "objective": 1.74e9, "peak_mb": 900.0}
    variant, size = args[0], args[1]
    per_step = {"bfloat16": 0.004, "float32": 0.009} if variant == "mixed" else {"float32": 0.01}
    return {"variant": variant, "size": [size, size * 3 // 4], "seconds_per_step": per_step,
            "peak_mb": 600.0 + 2000.0 * size * size * 3 / 4 / 1e6, "objective": 1.7e9}


def test_a_gpu_machine_gets_every_measurement_in_its_report(gpu_check, monkeypatch, tmp_path):
    calls = []

    def in_child(kind, gpu, *args):
        calls.append((kind, gpu, *args[:2]))
        return results(kind, gpu, *args)

    monkeypatch.setattr(gpu_check.gpus, "visible_gpus", lambda: ("0", "1"))
    monkeypatch.setattr(gpu_check.doctor, "examine",
                        lambda output, weights: doctor.Checkup((("GPU 0", "A100"),), ()))
    monkeypatch.setattr(gpu_check, "_in_child", in_child)
    out = tmp_path / "gpu-check.md"
    assert gpu_check.main(["--out", str(out)]) == 0
    assert calls[:2] == [("pinned", "0", "0", 256), ("pinned", "1", "1", 256)]
    assert [c[2:] for c in calls[2:]] == [(v, s) for s in (256, 1024)
                                          for v in ("float32", "float32, TF32 on", "mixed")]
    assert {c[1] for c in calls[2:]} == {"0"}
    text = out.read_text()
    assert "| 0 | NVIDIA A100-SXM4-40GB | 4.5 | 100 | 1.74e+09 | 900 MiB |" in text
    assert "| 1024×768 | mixed | 0.0040 bfloat16, 0.0090 float32 | 2173 MiB |" in text
    # 2000 MiB for each further megapixel, in every variant
    assert "float32: 2000 MiB; float32, TF32 on: 2000 MiB; mixed: 2000 MiB." in text


def test_a_failed_measurement_is_a_row_that_says_so(gpu_check):
    pinned = [gpu_check.Pinned(gpu="1", error="TensorFlow sees no GPU in a process pinned to it")]
    timings = [gpu_check.Timing(variant="mixed", size=(1024, 768), seconds_per_step={},
                                error="ResourceExhaustedError: OOM when allocating tensor")]
    text = gpu_check.render("no problems found", pinned, timings, 50, "2026-12-05 10:00")
    assert "| 1 | failed: TensorFlow sees no GPU in a process pinned to it |" in text
    assert "| 1024×768 | mixed | failed: ResourceExhaustedError: OOM when allocating" in text
    assert "not measured." in text
