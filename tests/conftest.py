"""Shared fixtures (small generated media, manifests, batch-style as a subprocess) and helpers.

Tests import the helpers with `from conftest import ...` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = REPO / "samples" / "clips" / "realshort.mp4"  # 36 frames, 30 fps, 320×240, AAC

CLIP_FRAMES = 36
CLIP_FPS = 30
CLIP_SIZE = (64, 48)  # (w, h)

# Settings that make a unit take a fraction of a second with the tiny random VGG19.
SMALL = {"size": 48, "steps": 3, "frame_steps": 1, "optimizer": "adam", "snapshot_every": 1}


def _noise_png(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A smooth random colour field (w, h): noise upscaled, so it is image-like and compresses."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def _png_cut_inside(path: Path) -> Path:
    """A 64×48 PNG whose compressed pixels stop half-way, in chunks with the right lengths and
    CRCs: `validate` (images.check_image, which checks chunks without decompressing) passes it,
    decoding fails. A file damaged like this after validation is what the run must survive."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(9)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    chunks, pos = [data[:8]], 8  # the signature, then length, type, body, CRC per chunk
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IDAT":
            body = body[: len(body) // 2]
        chunks.append(struct.pack(">I", len(body)) + kind + body
                      + struct.pack(">I", zlib.crc32(kind + body)))
    path.write_bytes(b"".join(chunks))
    return path


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Inputs shared by the pipeline tests (read-only): style.png, photo.png (64×48),
    folder/{a,b,c}.png (56×40), broken.png (see _png_cut_inside), clip.mp4 (36 frames of 64×48 at
    30 fps with the sample clip's audio)."""
    from batch_style.media import encode

    folder = tmp_path_factory.mktemp("media")
    _noise_png(folder / "style.png", (64, 64), seed=1)
    _noise_png(folder / "photo.png", (64, 48), seed=2)
    (folder / "folder").mkdir()
    for seed, name in enumerate("abc", start=3):
        _noise_png(folder / "folder" / f"{name}.png", (56, 40), seed=seed)
    _png_cut_inside(folder / "broken.png")
    w, h = CLIP_SIZE
    ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)
    frames = (np.stack([np.tile(np.roll(ramp, 2 * i), (h, 1)),
                        np.full((h, w), i / CLIP_FRAMES, np.float32),
                        np.tile(ramp[::-1, None][:h], (1, w))], axis=2)
              for i in range(CLIP_FRAMES))
    encode.write_mp4(frames, folder / "clip.mp4", CLIP_FPS, audio_from=SAMPLE_CLIP,
                    audio_duration=CLIP_FRAMES / CLIP_FPS)
    return folder


@pytest.fixture
def write_manifest(tmp_path) -> Callable[..., Path]:
    """write_manifest(jobs, output="out", defaults=SMALL, name="manifest.yaml") → its path.

    Written in the test's tmp_path; `output` is relative to it.
    """
    def write(jobs: list[dict], output: str | Path = "out", defaults: dict | None = None,
              name: str = "manifest.yaml") -> Path:
        path = tmp_path / name
        data = {"version": 1, "output": str(output),
                "defaults": dict(SMALL if defaults is None else defaults), "jobs": jobs}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path
    return write


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a batch-style subprocess: quiet TensorFlow, no simulated GPUs unless
    asked for."""
    env = {k: v for k, v in os.environ.items() if k != "BATCH_STYLE_GPUS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def _default_sigint() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and Python then
    # keeps ignoring it; the Ctrl-C tests need the default (KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def cli():
    """cli.run(*args, timeout=) → CompletedProcess; cli.spawn(*args) → Popen in its own process
    group (so the test can signal the orchestrator and its workers together). Processes still
    running at the end of the test are killed, group and all."""
    class Cli:
        def __init__(self):
            self.spawned: list[subprocess.Popen] = []

        @staticmethod
        def command(*args) -> list[str]:
            return [sys.executable, "-m", "batch_style", *map(str, args)]

        def run(self, *args, timeout: float = 120, **env) -> subprocess.CompletedProcess:
            return subprocess.run(self.command(*args), capture_output=True, text=True,
                                  timeout=timeout, env=cli_env(**env), cwd=REPO,
                                  stdin=subprocess.DEVNULL, preexec_fn=_default_sigint)

        def spawn(self, *args, **env) -> subprocess.Popen:
            process = subprocess.Popen(self.command(*args), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=cli_env(**env),
                                       cwd=REPO, stdin=subprocess.DEVNULL,
                                       start_new_session=True, preexec_fn=_default_sigint)
            self.spawned.append(process)
            return process

        def close(self):
            for process in self.spawned:
                if process.poll() is None:
                    kill_group(process)
                process.communicate()

    helper = Cli()
    yield helper
    helper.close()


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the process group of a process started by cli.spawn."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval=0.05):
    """Poll until condition() is truthy; return its value, or fail the test naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies count as gone)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            return True
    return False


def temporaries(folder: Path) -> list[Path]:
    """Files anywhere under `folder` that carry atomic.TMP_MARK (unfinished writes)."""
    from batch_style.atomic import TMP_MARK

    return [p for p in Path(folder).rglob("*") if TMP_MARK in p.name]


def ledger_records(output: Path) -> list[dict]:
    from batch_style.pipeline.state import ledger

    return ledger.Ledger.for_output(Path(output)).records()


def folder_manifest(write_manifest, media_dir) -> Path:
    """A manifest of one job: the folder of three images in one style."""
    return write_manifest([{"name": "fold", "content": str(media_dir / "folder"),
                            "style": str(media_dir / "style.png")}])


@pytest.fixture
def fake_gpu(monkeypatch) -> dict[str, list]:
    """TensorFlow in this process pretends to see one Ampere GPU (compute capability 8.0: native
    bfloat16) while it computes on the CPU, and the CPU pretends to lack native bfloat16 (AVX2
    only): the decisions of a GPU worker, and of its CPU fallback, can be told apart. Returns the
    calls made to TensorFlow's device configuration, by function name."""
    from batch_style.engine import tf_runtime

    tf = pytest.importorskip("tensorflow")
    gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    calls: dict[str, list] = {"set_visible_devices": [], "set_memory_growth": []}
    hidden: list[bool] = []
    real_list = tf.config.list_physical_devices
    real_visible = tf.config.get_visible_devices
    real_details = tf.config.experimental.get_device_details

    def list_physical_devices(device_type=None):
        return [gpu] if device_type == "GPU" else real_list(device_type)

    def get_visible_devices(device_type=None):
        return ([] if hidden else [gpu]) if device_type == "GPU" else real_visible(device_type)

    def set_visible_devices(devices, device_type=None):
        calls["set_visible_devices"].append((list(devices), device_type))
        if device_type == "GPU" and not devices:
            hidden.append(True)

    def get_device_details(device):
        if device == gpu:
            return {"compute_capability": (8, 0), "device_name": "NVIDIA A100-SXM4-40GB"}
        return real_details(device)

    monkeypatch.setattr(tf.config, "list_physical_devices", list_physical_devices)
    monkeypatch.setattr(tf.config, "get_visible_devices", get_visible_devices)
    monkeypatch.setattr(tf.config, "set_visible_devices", set_visible_devices)
    monkeypatch.setattr(tf.config.experimental, "get_device_details", get_device_details)
    monkeypatch.setattr(tf.config.experimental, "get_memory_growth", lambda device: False)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth",
                        lambda device, on: calls["set_memory_growth"].append((device.name, on)))
    monkeypatch.setattr(tf_runtime, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(tf_runtime, "_configured", set(), raising=False)  # configured afresh
    return calls


# What `nvidia-smi -L` and its memory/compute-capability query print on a machine with two GPUs.
TWO_GPUS = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-8932f937-d72c-4106-c12f-20bd9faed9f6)
"""
TWO_GPUS_QUERY = "0, 40960, 8.0\n1, 40960, 8.0\n"


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch) -> Callable[..., Path]:
    """fake_nvidia_smi(listing=TWO_GPUS, query=TWO_GPUS_QUERY, fails=None) puts an `nvidia-smi`
    that prints them (or, with `fails`, says that and exits 9) first on PATH; returns its path.
    CUDA_VISIBLE_DEVICES and BATCH_STYLE_GPUS are unset."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("BATCH_STYLE_GPUS", raising=False)

    def install(listing: str = TWO_GPUS, query: str = TWO_GPUS_QUERY,
                fails: str | None = None) -> Path:
        folder = tmp_path / "fake-bin"
        folder.mkdir(exist_ok=True)
        (folder / "listing.txt").write_text(listing)
        (folder / "query.txt").write_text(query)
        script = folder / "nvidia-smi"
        body = (f"echo {fails!r}; exit 9" if fails else
                f'case "$1" in\n  -L) cat "{folder}/listing.txt" ;;\n'
                f'  --query-gpu=*) cat "{folder}/query.txt" ;;\n  *) exit 2 ;;\nesac')
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return script
    return install


@pytest.fixture
def precisions(monkeypatch) -> list[str]:
    """The precisions policy.effective_precision decided during the test, in order."""
    from batch_style.engine import policy

    decided: list[str] = []
    original = policy.effective_precision

    def effective_precision(settings):
        decided.append(original(settings))
        return decided[-1]

    monkeypatch.setattr(policy, "effective_precision", effective_precision)
    return decided


@pytest.fixture(scope="module")
def stylizer():
    """A Stylizer on the tiny random VGG19 (seed 1) with the default layers, one per test module
    (its traced functions and style targets are shared by the module's tests)."""
    from batch_style.engine.model import TINY_WIDTHS, FeatureModel
    from batch_style.engine.stylizer import Stylizer
    from batch_style.settings import Settings

    layers = Settings().content_layers + Settings().style_layers
    return Stylizer(FeatureModel(layers, None, TINY_WIDTHS, seed=1))


def relative(a, b) -> float:
    """max |a − b| / max |b|: how far a computed array is from the one it should equal."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())
