"""TensorFlow, imported once per process with its start-up chatter filtered out."""

from __future__ import annotations

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
