"""TensorFlow, imported once per process with its start-up chatter filtered out."""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile

# TensorFlow's C++ start-up logs go to stderr before absl's logging is configured, so
# TF_CPP_MIN_LOG_LEVEL does not silence them (TF 2.18+). These lines say nothing a user can act on;
# anything else TensorFlow prints while loading is passed through.
_NOISE = re.compile(
    r"^(I0000 |WARNING: All log messages before absl::InitializeLog\(\)"
    r"|E0000 .*(cuInit|cuda_platform|Unable to register)"
    r"|.*(oneDNN custom operations are on|Could not find cuda drivers"
    r"|rebuild TensorFlow with the appropriate compiler flags"
    r"|This TensorFlow binary is optimized to use available CPU instructions))")


def import_tensorflow():
    """`import tensorflow` with the start-up noise removed from stderr; returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            # Take GPU memory as needed, so a small unit does not reserve the whole card. It
            # must be set before the first operation below initializes the devices: afterwards
            # set_memory_growth raises "Physical devices cannot be modified after being
            # initialized" (worker._configure_tensorflow's own call is then a no-op).
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
            tf.constant(0.0)  # device discovery logs too
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        for line in captured.read().decode("utf-8", "replace").splitlines():
            if line.strip() and not _NOISE.match(line):
                print(line, file=sys.stderr)
    return tf


def has_gpu() -> bool:
    """Whether this process computes on a GPU (a worker sees only the GPU it claimed)."""
    return bool(import_tensorflow().config.list_physical_devices("GPU"))


def native_bfloat16() -> bool:
    """Whether this process computes bfloat16 convolutions natively, so they pay.

    NVIDIA GPUs from Ampere on (compute capability 8.0) have bfloat16 tensor cores; x86 CPUs
    with AVX-512 BF16 or AMX do it in hardware (oneDNN uses them). Elsewhere bfloat16 is
    emulated and slower than float32. A worker sees only the GPU it claimed.
    """
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return tuple(details.get("compute_capability") or (0, 0)) >= (8, 0)
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()
