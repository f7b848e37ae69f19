"""Tests for batch_style.engine.tf_runtime: TensorFlow's start-up, its configuration, CPU or GPU decisions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batch_style.engine import tf_runtime
from batch_style.settings import resolve

REPO = Path(__file__).resolve().parents[1]
BUSY_CARD = "F0000 00:00:1.5 7 gpu_device.cc:9] CUDA_ERROR_OUT_OF_MEMORY: out of memory"


def fake_tensorflow(folder: Path, ending: str) -> Path:
    """A `tensorflow` package that says what TensorFlow says on a busy card, then `ending`."""
    package = folder / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'I0000 00:00:1.0 7 cuda_executor.cc:1] start-up noise\\n')\n"
        f"os.write(2, {BUSY_CARD!r}.encode() + b'\\n')\n"
        f"{ending}\n")
    return folder


def import_in_a_child(fake: Path, **env) -> subprocess.CompletedProcess:
    code = "from batch_style.engine.tf_runtime import import_tensorflow; import_tensorflow()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env,
                                           "PYTHONPATH": os.pathsep.join([str(fake), str(REPO)])})


def test_what_tensorflow_said_is_shown_when_its_import_fails(tmp_path):
    done = import_in_a_child(fake_tensorflow(tmp_path, "raise ImportError('libcudart.so.12')"))
    assert done.returncode != 0
    assert BUSY_CARD in done.stderr and "start-up noise" not in done.stderr


def test_what_tensorflow_said_outlives_a_start_up_that_aborts(tmp_path):
    # A fatal CUDA error aborts the process: the pool reads the worker's start-up log (pools.py).
    log_file = tmp_path / "worker.startup.log"
    done = import_in_a_child(fake_tensorflow(tmp_path, "os.abort()"),
                             **{tf_runtime.STARTUP_LOG: str(log_file)})
    assert done.returncode != 0
    assert tf_runtime.said(log_file.read_text()) == [BUSY_CARD]


def test_float32_stays_float32_on_ampere():
    tf = tf_runtime.import_tensorflow()
    assert tf.config.experimental.tensor_float_32_execution_enabled() is False


@pytest.mark.parametrize(("name", "message", "expected"), [
    ("ResourceExhaustedError", "OOM when allocating tensor with shape[1,64,1024,1024]", True),
    ("InternalError", "Dst tensor is not initialized.", True),
    ("UnknownError", "Failed to get convolution algorithm. This is probably because cuDNN "
                     "failed to initialize", True),
    ("InternalError", "CUDA_ERROR_OUT_OF_MEMORY: out of memory", True),
    ("InternalError", "Blas GEMM launch failed", False),
    ("InvalidArgumentError", "Incompatible shapes: [1,3] vs. [1,4]", False),
])
def test_out_of_memory_by_class_or_message(name, message, expected):
    tf = tf_runtime.import_tensorflow()
    assert tf_runtime.out_of_memory(getattr(tf.errors, name)(None, None, message)) is expected
    assert tf_runtime.out_of_memory(RuntimeError(message)) is False  # not TensorFlow's


def test_the_cpu_decides_for_the_cpu_inside_on_cpu(fake_gpu):
    # A GPU worker's CPU fallback: the GPU (Ampere) would run mixed precision with cuDNN's
    # convolutions; its host CPU (AVX2 only) must get float32 and Winograd instead.
    from batch_style.engine.policy import effective_precision, effective_winograd

    settings = resolve({})
    assert tf_runtime.has_gpu() and tf_runtime.native_bfloat16()
    assert (effective_precision(settings), effective_winograd(settings)) == ("mixed", False)
    with tf_runtime.on_cpu():
        assert not tf_runtime.has_gpu() and not tf_runtime.native_bfloat16()
        assert (effective_precision(settings), effective_winograd(settings)) == ("float32", True)
        assert "CPU:0" in tf_runtime.import_tensorflow().constant(1.0).device
    assert tf_runtime.has_gpu()


def test_without_the_gpus_nothing_is_set_up_on_them(fake_gpu):
    tf_runtime.import_tensorflow(gpus=False)
    assert fake_gpu == {"set_visible_devices": [([], "GPU")], "set_memory_growth": []}
    assert not tf_runtime.has_gpu()


def test_the_program_keeps_tensorflows_chatter_off_stderr():
    """XLA logs its compiles (and each persistent-cache hit) whatever TF_CPP_MIN_LOG_LEVEL says;
    quiet_stderr() forwards every other line, also a child process's."""
    code = textwrap.dedent("""
        import os, subprocess, sys
        from batch_style.engine import tf_runtime
        tf_runtime.quiet_stderr()
        os.write(2, b"I0000 00:00:1 device_compiler.h:208] Compiled cluster using XLA!\\n")
        os.write(2, b"E0000 00:00:1 Error parsing text-format tensorflow.XlaSerializedCacheEntry\\n")
        print("a line for people", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "import sys; print('from a child', file=sys.stderr)"])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0
    assert done.stderr.splitlines() == ["a line for people", "from a child"]


def test_xla_keeps_its_compiled_programs_per_machine_and_can_be_told_not_to(tmp_path, monkeypatch):
    """A cache folder shared by machines (a home on NFS) must not hand one CPU's programs to
    another: the folder is named by the CPU's instruction sets and TensorFlow's version."""
    from batch_style.engine import tf_runtime, weights

    monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path))
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")
    tf_runtime._xla_cache()
    flags = os.environ["TF_XLA_FLAGS"]
    folder = tmp_path / "xla" / tf_runtime._machine_key()
    assert flags == f"--tf_xla_auto_jit=0 --tf_xla_persistent_cache_directory={folder}"
    assert folder.is_dir()

    monkeypatch.setenv("TF_XLA_FLAGS", "")
    monkeypatch.setenv(tf_runtime.XLA_CACHE, "0")
    tf_runtime._xla_cache()
    assert os.environ["TF_XLA_FLAGS"] == ""
