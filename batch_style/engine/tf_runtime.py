"""TensorFlow, imported and configured once per process with its start-up chatter filtered out."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import ctypes
import functools
import logging
import os
import platform
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from importlib import metadata

from batch_style.engine.cache_dir import cache_folder

log = logging.getLogger("batch_style")

# TensorFlow's C++ start-up logs go to stderr before absl's logging is configured, so
# TF_CPP_MIN_LOG_LEVEL does not silence them (TF 2.18+). These lines say nothing a user can act on;
# anything else TensorFlow prints while loading is passed through.
_NOISE = re.compile(
    r"^(I0000 |WARNING: All log messages before absl::InitializeLog\(\)"
    r"|E0000 .*(cuInit|cuda_platform|Unable to register|XlaSerializedCacheEntry"
    r"|Target machine feature \+prefer-no-(gather|scatter) is not +supported)"
    r"|.*(oneDNN custom operations are on|Could not find cuda drivers"
    r"|rebuild TensorFlow with the appropriate compiler flags"
    r"|This TensorFlow binary is optimized to use available CPU instructions))")
# Where a pool worker's TensorFlow start-up stderr is captured (pools.py sets it per worker): if
# the start-up aborts the process (a CUDA error is often fatal), the file is what it said last.
STARTUP_LOG = "BATCH_STYLE_STARTUP_LOG"

# XLA's compiled programs (the Winograd layers, ~10 s of a first step) kept between processes:
# a second run's first step needs ~3 s (docs/benchmarks.md). BATCH_STYLE_XLA_CACHE=0: off.
XLA_CACHE = "BATCH_STYLE_XLA_CACHE"

_configured: set[bool] = set()  # the `gpus` arguments TensorFlow was configured for
_quiet: list[threading.Thread] = []  # the thread of quiet_stderr(), once installed
_ON_CPU = contextvars.ContextVar("batch_style_on_cpu", default=False)


def said(text: str) -> list[str]:
    """The lines of TensorFlow's start-up stderr worth showing (the noise filtered out)."""
    return [line for line in text.splitlines() if line.strip() and not _NOISE.match(line)]


def quiet_stderr() -> None:
    """Keep TensorFlow's and XLA's chatter (_NOISE) off stderr for this process's life and its
    children's: XLA logs its first compile and every persistent-cache hit whatever
    TF_CPP_MIN_LOG_LEVEL says. fd 2 becomes a pipe that a thread reads, line by line, forwarding
    what is not noise. For programs (the command line), not for libraries."""
    if _quiet:
        return
    read_end, write_end = os.pipe()
    original = os.dup(2)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    # Our own lines go straight to the real stderr: a progress bar redrawn in place needs
    # isatty() of the terminal (not of the pipe) and no wait for a newline.
    sys.stderr = open(os.dup(original), "w", buffering=1, encoding=sys.stderr.encoding,
                      errors=sys.stderr.errors)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not _NOISE.match(line.decode("utf-8", "replace")):
                    os.write(original, line)

    thread = threading.Thread(target=forward, name="batch-style-stderr", daemon=True)
    thread.start()
    _quiet.append(thread)

    def restore() -> None:  # at exit: the pipe closes, the thread writes what is left
        sys.stderr.flush()
        os.dup2(original, 2)
        thread.join(timeout=1.0)

    atexit.register(restore)


def _xla_cache() -> None:
    """Point XLA's persistent cache at our cache folder, unless told not to (or already set)."""
    if os.environ.get(XLA_CACHE, "1") == "0" or "tf_xla_persistent_cache" in \
            os.environ.get("TF_XLA_FLAGS", ""):
        return
    folder = cache_folder() / "xla" / _machine_key()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # no cache: every process compiles, as before
    flags = os.environ.get("TF_XLA_FLAGS", "")
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()


def cpu_signature() -> str:
    """The CPU's instruction sets, hashed: what compiled code and timings depend on, where the
    model name does not tell ("Intel(R) Xeon(R) Processor" on many a VM)."""
    import hashlib

    flags = " ".join(sorted(cpu_flags())) or platform.processor()
    return hashlib.sha256(flags.encode()).hexdigest()[:12]


def _machine_key() -> str:
    """The XLA cache's folder name: programs compiled for one CPU and TensorFlow are never
    loaded by another that shares the cache folder (a home on NFS), where they could stop the
    process with an illegal instruction."""
    return f"{cpu_signature()}-tf{tf_version()}"


def tf_version() -> str:
    """TensorFlow's version, without importing it where it is not loaded yet (the dry-run)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"].__version__
    for package in ("tensorflow", "tensorflow-cpu", "tensorflow-macos"):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def import_tensorflow(*, gpus: bool = True):
    """`import tensorflow`, configured (configure()), with the start-up noise removed from stderr;
    returns the module. gpus=False: this process is not to use the GPUs (--device cpu)."""
    if "tensorflow" not in sys.modules:
        _import_quietly(gpus)
    tf = sys.modules["tensorflow"]
    if gpus not in _configured:
        configure(tf, gpus)
    return tf


def _import_quietly(gpus: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _xla_cache()
    sys.stderr.flush()
    saved = os.dup(2)
    path = os.environ.get(STARTUP_LOG)
    with (open(path, "w+b") if path else tempfile.TemporaryFile(mode="w+b")) as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            configure(tf, gpus)  # before the first operation initializes the devices
            tf.constant(0.0)  # device discovery logs too
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            # Also when the import failed: what TensorFlow said is why (a CUDA error on a busy
            # card, a missing library), and a worker that only says "died" helps nobody.
            captured.seek(0)
            for line in said(captured.read().decode("utf-8", "replace")):
                print(line, file=sys.stderr)
            if path:  # kept only when the process dies before it gets here
                os.unlink(path)


def configure(tf, gpus: bool = True) -> None:
    """What every process computing with TensorFlow sets, as far as it still can."""
    if not gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # already initialized elsewhere: on_cpu() keeps the work off them
            log.debug("TensorFlow had initialized its GPUs already; units run under on_cpu()")
    for gpu in tf.config.list_physical_devices("GPU") if gpus else ():
        # Take GPU memory as needed, so a small unit does not reserve the whole card. Only
        # possible before TensorFlow initializes the devices: a process that imported it and
        # computed before (a library caller, --workers 0 after other work) keeps what it has.
        try:
            if not tf.config.experimental.get_memory_growth(gpu):
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as e:  # "Physical devices cannot be modified after being initialized"
            log.info("GPU memory growth left as it was: %s", e)
    # float32 means float32: TF32 (Ampere and later, on by default) rounds matmul and convolution
    # inputs to a 10-bit mantissa, which the float32 polish, the Grams and L-BFGS's inner
    # products are there to avoid.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    # Its Python warnings are advice to TensorFlow's programmers ("triggered tf.function
    # retracing": a tiled level's edge tiles have their own shapes, by design), not to ours.
    tf.get_logger().setLevel(logging.ERROR)
    _configured.add(gpus)


def _tensorflow():
    """TensorFlow as this process configured it (imported with the defaults if not yet)."""
    return sys.modules["tensorflow"] if _configured else import_tensorflow()


@contextlib.contextmanager
def on_cpu() -> Iterator[None]:
    """Compute on the CPU inside (the fallback of a unit too big for its GPU, --device cpu), and
    let has_gpu()/native_bfloat16() answer for the CPU, so its precision and convolutions are
    chosen for the CPU."""
    tf = _tensorflow()
    token = _ON_CPU.set(True)
    try:
        with tf.device("/CPU:0"):
            yield
    finally:
        _ON_CPU.reset(token)


def computing_on_cpu() -> bool:
    """Whether this code runs inside on_cpu()."""
    return _ON_CPU.get()


def has_gpu() -> bool:
    """Whether this process computes on a GPU (a worker sees only its own), here and now."""
    return not _ON_CPU.get() and bool(_tensorflow().config.get_visible_devices("GPU"))


def native_bfloat16() -> bool:
    """Whether this process computes bfloat16 convolutions natively, so they pay.

    NVIDIA GPUs from Ampere on (compute capability 8.0) have bfloat16 tensor cores; x86 CPUs
    with AVX-512 BF16 or AMX do it in hardware (oneDNN uses them). Elsewhere bfloat16 is
    emulated and slower than float32. A worker sees only its own GPU; inside on_cpu(), none.
    """
    if has_gpu():
        tf = _tensorflow()
        gpu = tf.config.get_visible_devices("GPU")[0]
        details = tf.config.experimental.get_device_details(gpu)
        return tuple(details.get("compute_capability") or (0, 0)) >= (8, 0)
    return cpu_bfloat16()


def cpu_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX): no TensorFlow
    needed to know it."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


# What a GPU running out of memory raises: ResourceExhaustedError mostly, but an allocation that
# fails while copying to the device, or cuDNN that cannot get its workspace, say it otherwise.
_OUT_OF_MEMORY = re.compile(
    r"OOM when allocating|Dst tensor is not initialized|Failed to get convolution algorithm"
    r"|cuDNN failed to initialize|CUDNN_STATUS_(ALLOC_FAILED|NOT_INITIALIZED)"
    r"|CUDA_ERROR_OUT_OF_MEMORY|out of memory")


def out_of_memory(error: BaseException) -> bool:
    """Whether TensorFlow raised `error` because memory ran out (its errors are OpErrors)."""
    names = {c.__name__ for c in type(error).__mro__}
    return "ResourceExhaustedError" in names or (
        "OpError" in names and bool(_OUT_OF_MEMORY.search(str(error))))


# The instruction sets the speed of a step depends on: /proc/cpuinfo's flag → how we name it.
CPU_FEATURES = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512",
                "avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX"}


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where Linux does not give it)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (Features on ARM; empty elsewhere)."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    """The CPU's model name as Linux reports it (else what Python's platform knows)."""
    return (_cpuinfo().get("model name") or platform.processor() or platform.machine()
            or "unknown CPU")


def cpu_features() -> str:
    """The CPU_FEATURES this CPU has, by name."""
    flags = cpu_flags()
    return ", ".join(name for flag, name in CPU_FEATURES.items() if flag in flags) or "none of note"


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system where glibc can (malloc_trim): the maps
    of a level just made, freed, otherwise stay in the process's memory under the next level's
    (docs/prints.md, "Memory with the defaults")."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
