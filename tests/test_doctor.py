"""Tests for batch_style.views.doctor and `batch-style doctor`: what it says, and when it exits 1."""

from __future__ import annotations

import platform
import shutil
from types import SimpleNamespace

import pytest

from batch_style.pipeline.workers import gpus
from batch_style.views import doctor

HEALTHY = gpus.TensorFlowView(
    version="2.18.0", cuda_build=True, cuda="12.5.1", cudnn="9",
    gpus=({"name": "NVIDIA A100-SXM4-40GB", "compute_capability": [8, 0], "error": None},
          {"name": "NVIDIA A100-SXM4-40GB", "compute_capability": [8, 0], "error": None}))


@pytest.fixture
def weights_file(tmp_path, monkeypatch):
    """A weights file named by $BATCH_STYLE_WEIGHTS, so the checkup does not depend on the
    machine's caches."""
    path = tmp_path / "vgg19.npz"
    path.write_bytes(b"weights")
    monkeypatch.setenv("BATCH_STYLE_WEIGHTS", str(path))
    return path


def facts(checkup: doctor.Checkup) -> dict[str, str]:
    return dict(checkup.facts)


def test_a_healthy_gpu_machine(fake_nvidia_smi, monkeypatch, tmp_path, weights_file):
    fake_nvidia_smi()
    monkeypatch.setattr(gpus, "probe", lambda ids=(): HEALTHY)
    checkup = doctor.examine(tmp_path / "out")
    assert checkup.problems == () and checkup.exit_code == 0
    found = facts(checkup)
    assert found["TensorFlow"] == "2.18.0, built with CUDA 12.5.1 and cuDNN 9"
    assert found["GPU 0"] == ("NVIDIA A100-SXM4-40GB, 40960 MiB, compute capability 8.0, "
                              "bfloat16 native, TF32 off (float32 stays float32), TensorFlow: ok")
    assert found["A run here"].startswith("2 workers, one per GPU (0, 1); precision auto → mixed")
    assert found["VGG19 weights"].startswith(str(weights_file))
    assert "GB free under" in found["Disk"]
    assert checkup.text().endswith("no problems found")


def test_gpus_tensorflow_cannot_use_are_a_problem_with_its_fix(fake_nvidia_smi, monkeypatch,
                                                               tmp_path, weights_file):
    fake_nvidia_smi()
    view = gpus.TensorFlowView(version="2.18.0", cuda_build=True, cuda="12.5.1", cudnn="9",
                               log=("W0000 gpu_device.cc:2344] Cannot dlopen some GPU "
                                    "libraries.",))
    monkeypatch.setattr(gpus, "probe", lambda ids=(): view)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,1")
    checkup = doctor.examine(tmp_path)
    assert checkup.exit_code == 1
    assert checkup.problems == (
        "CUDA_VISIBLE_DEVICES=0,-1,1: CUDA stops at '-1', which names no GPU, so it and what "
        "follows are hidden; list only GPUs `nvidia-smi -L` shows",
        "GPU 0 is visible to nvidia-smi but not to TensorFlow: the CUDA libraries are missing; "
        "install `.[gpu]` (.venv/bin/pip install -e '.[gpu]')")
    assert facts(checkup)["GPU 1"].endswith("hidden by CUDA_VISIBLE_DEVICES")
    assert "problem: GPU 0 is visible to nvidia-smi but not to TensorFlow" in checkup.text()


def test_missing_weights_a_failing_nvidia_smi_and_a_full_disk(fake_nvidia_smi, monkeypatch,
                                                             tmp_path):
    fake_nvidia_smi(fails="NVIDIA-SMI has failed because it couldn't communicate with the "
                          "NVIDIA driver.")
    monkeypatch.setattr(gpus, "probe", lambda ids=(): gpus.TensorFlowView(version="2.18.0"))
    monkeypatch.setenv("BATCH_STYLE_WEIGHTS", str(tmp_path / "nowhere.npz"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=10**8))
    checkup = doctor.examine(tmp_path / "out")
    assert checkup.exit_code == 1 and len(checkup.problems) == 3
    smi, weights, disk = checkup.problems
    assert smi.startswith("nvidia-smi fails (NVIDIA-SMI has failed because it couldn't "
                          "communicate with the NVIDIA driver.)")
    assert "no such weights file" in weights
    assert disk.startswith(f"only 0.1 GB free under {tmp_path / 'out'}")


def test_doctor_on_this_machine(cli, tmp_path, weights_file):
    # The real thing, as a user runs it: no mocks but the weights file.
    tf = pytest.importorskip("tensorflow")
    result = cli.run("doctor", tmp_path / "out", BATCH_STYLE_WEIGHTS=str(weights_file))
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["Python", platform.python_version()]
    assert lines[1].split()[:2] == ["TensorFlow", tf.__version__ + ","]
    if shutil.which("nvidia-smi") is None:
        assert result.returncode == 0, result.stdout
        assert "none: nvidia-smi is not installed; runs use the CPU" in result.stdout
        assert "1 worker on the CPU" in result.stdout
        assert lines[-1] == "no problems found"
