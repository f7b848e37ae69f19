"""Tests for pipeline/workers/gpus.py: nvidia-smi, CUDA_VISIBLE_DEVICES, pinning, and TensorFlow's view."""

from __future__ import annotations

import pytest
from conftest import TWO_GPUS

from batch_style import orchestrator as runner
from batch_style.errors import UserError
from batch_style.pipeline.workers import gpus

MIG_LISTING = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
  MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
  MIG 3g.20gb     Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-8932f937-d72c-4106-c12f-20bd9faed9f6)
"""
# Drivers before 470 name MIG devices after their GPU, instance and compute instance.
OLD_MIG_LISTING = """\
GPU 0: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
  MIG 1g.5gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0)
"""


def test_listing_and_query():
    devices = gpus.parse_listing(TWO_GPUS)
    assert [(d.id, d.index, d.uuid[:12]) for d in devices] == [
        ("0", 0, "GPU-5d5ba0d6"), ("1", 1, "GPU-8932f937")]
    assert devices[0].name == "NVIDIA A100-SXM4-40GB"
    assert gpus.parse_query("0, 40960, 8.0\n1, 24576, [N/A]\n") == {0: (40960, "8.0"),
                                                                   1: (24576, None)}


def test_mig_devices_are_what_workers_run_on():
    devices = gpus.parse_listing(MIG_LISTING)
    assert [d.id for d in gpus.schedulable(devices)] == [
        "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb",
        "1"]
    mig = devices[1]
    assert (mig.mig, mig.index, mig.memory_mib) == (True, 0, 20 * 1024)
    assert mig.name == "NVIDIA A100-SXM4-40GB MIG 3g.20gb" and devices[0].has_mig
    (old,) = gpus.schedulable(gpus.parse_listing(OLD_MIG_LISTING))
    assert old.id == "MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0"


@pytest.mark.parametrize(("value", "shown", "stop"), [
    ("1,0", ("1", "0"), None),
    ("0,-1,1", ("0",), "-1"),        # CUDA stops at the first entry that names no device
    ("-1", (), "-1"),
    ("", (), None),
    ("0,7,1", ("0",), "7"),          # no GPU 7
    ("GPU-8932f937,0", ("GPU-8932f937", "0"), None),  # a unique prefix of a UUID
    ("GPU-,1", (), "GPU-"),          # a prefix of both: names none
    ("0,0", ("0",), "0"),            # twice the same GPU would be two workers on it
    ("MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb", ("MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb",),
     None),
])
def test_cuda_visible_devices_as_cuda_reads_it(value, shown, stop):
    devices = gpus.parse_listing(MIG_LISTING)
    assert gpus.cuda_visible(value, devices) == (shown, stop)


def test_visible_gpus(fake_nvidia_smi, monkeypatch):
    assert gpus.visible_gpus() == ()  # nvidia-smi is nowhere (this machine, CI)
    fake_nvidia_smi()
    assert gpus.visible_gpus() == ("0", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,0")
    assert gpus.visible_gpus() == ("1",)
    monkeypatch.setenv("BATCH_STYLE_GPUS", "3,4")  # simulated, for tests
    assert gpus.visible_gpus() == ("3", "4")
    fake_nvidia_smi(MIG_LISTING)
    monkeypatch.delenv("BATCH_STYLE_GPUS")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpus.visible_gpus()[0] == "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"
    fake_nvidia_smi(fails="NVIDIA-SMI has failed because it couldn't communicate with the "
                          "NVIDIA driver.")
    assert gpus.visible_gpus() == ()


def test_nvidia_smi_details(fake_nvidia_smi):
    fake_nvidia_smi(MIG_LISTING, "0, 40960, 8.0\n1, 40960, 8.0\n")
    devices = gpus.nvidia_smi()
    assert [(d.id, d.memory_mib, d.compute_capability) for d in devices] == [
        ("0", 40960, "8.0"), ("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", 20480, "8.0"),
        ("MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb", 20480, "8.0"), ("1", 40960, "8.0")]


def test_worker_environment(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("BATCH_STYLE_GPUS", raising=False)
    assert gpus.worker_env(None) == {}  # no GPU known: left unset, never "" (which hides all)
    assert gpus.worker_env(None, "cpu") == {"CUDA_VISIBLE_DEVICES": "-1"}
    # An nvidia-smi index, read in nvidia-smi's order by CUDA too.
    assert gpus.worker_env("1") == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    mig = "MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0"
    assert gpus.worker_env(mig) == {"CUDA_VISIBLE_DEVICES": mig}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")  # the user's entries, in CUDA's own order
    assert gpus.worker_env("1") == {"CUDA_VISIBLE_DEVICES": "1"}
    assert gpus.given_gpu() == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert gpus.given_gpu() is None


LIBRARIES_MISSING = ("W0000 00:00:1.0 7 gpu_device.cc:2344] Cannot dlopen some GPU libraries. "
                     "Please make sure the missing libraries mentioned above are installed "
                     "properly if you would like to use GPU.")


@pytest.mark.parametrize(("view", "why"), [
    (gpus.TensorFlowView(version="2.18.0", cuda_build=True, log=(LIBRARIES_MISSING,)),
     "the CUDA libraries are missing; install `.[gpu]`"),
    (gpus.TensorFlowView(version="2.16.1", cuda_build=True, log=(LIBRARIES_MISSING,)),
     "TensorFlow 2.16.1 does not find the CUDA libraries pip installs"),
    (gpus.TensorFlowView(version="2.18.0", cuda_build=False), "built without CUDA"),
    (gpus.TensorFlowView(version="2.18.0", cuda_build=True, cuda="12.5.1", log=(
        "E0000 cuda_diagnostics.cc:1] kernel version 470.1.0 does not match DSO version "
        "550.54.14",)), "the NVIDIA driver is older than the CUDA 12.5.1"),
    (gpus.TensorFlowView(version="2.18.0", cuda_build=True, log=(
        "E0000 gpu_device.cc:1] failed to create context: CUDA_ERROR_OUT_OF_MEMORY",)),
     "its memory is taken"),
    (gpus.TensorFlowView(import_error="ModuleNotFoundError: No module named 'tensorflow'"),
     "TensorFlow does not start"),
])
def test_why_tensorflow_does_not_see_a_gpu(view, why):
    (line,) = gpus.problems(["0", "1"], view)
    assert line.startswith("GPU 0 is visible to nvidia-smi but not to TensorFlow: ")
    assert why in line and "\n" not in line


def test_a_gpu_tensorflow_sees_but_cannot_compute_on():
    view = gpus.TensorFlowView(version="2.18.0", cuda_build=True, gpus=(
        {"name": "A100", "compute_capability": [8, 0], "error": None},
        {"name": "A100", "compute_capability": [8, 0],
         "error": "InternalError: cuDNN failed to initialize"}))
    assert gpus.problems(["0", "1"], view) == [
        "GPU 1: TensorFlow sees it but cannot compute on it (InternalError: cuDNN failed to "
        "initialize); `batch-style doctor` shows its start-up log"]


@pytest.fixture
def probed(monkeypatch) -> list:
    """gpus.probe replaced by one that says TensorFlow sees no GPU (CUDA libraries missing);
    returns the GPUs it was asked about, per call."""
    asked = []

    def probe(ids=()):
        asked.append(tuple(ids))
        return gpus.TensorFlowView(version="2.18.0", cuda_build=True, log=(LIBRARIES_MISSING,))

    monkeypatch.setattr(gpus, "probe", probe)
    gpus._probe_once.cache_clear()
    yield asked
    gpus._probe_once.cache_clear()


def test_a_run_refuses_gpus_tensorflow_cannot_use(media_dir, write_manifest, fake_nvidia_smi,
                                                  probed):
    fake_nvidia_smi()
    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])
    with pytest.raises(UserError, match=r"^GPU 0 is visible to nvidia-smi but not to TensorFlow: "
                                        r"the CUDA libraries are missing; .* --device cpu\)$"):
        runner.run([manifest], runner.RunOptions(tiny=True))
    assert probed == [("0", "1")]
    assert not (manifest.parent / "out").exists()  # before anything is written
    # --device cpu: the GPUs are not used, so not checked.
    summary = runner.run([manifest], runner.RunOptions(tiny=True, workers=0, device="cpu"))
    assert summary.exit_code == 0 and probed == [("0", "1")]


def test_simulated_gpus_are_not_probed(monkeypatch, probed, tmp_path):
    monkeypatch.setenv("BATCH_STYLE_GPUS", "0,1")
    workers, config = runner.worker_setup(runner.RunOptions(tiny=True), tmp_path)
    assert (workers, config.gpu_ids, probed) == (2, ("0", "1"), [])


def test_run_refuses_with_one_line_and_exit_2(media_dir, write_manifest, fake_nvidia_smi, cli):
    # The real thing: TensorFlow here (no CUDA driver) cannot see the GPU nvidia-smi reports.
    pytest.importorskip("tensorflow")
    fake_nvidia_smi("GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-"
                    "9e3d8d2b8a77)\n", "0, 40960, 8.0\n")
    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}])
    result = cli.run("run", manifest, "--tiny")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("batch-style: error: GPU 0 is visible to nvidia-smi but not to "
                           "TensorFlow: ") and line.endswith("(or run with --device cpu)")
    assert not (manifest.parent / "out").exists()
