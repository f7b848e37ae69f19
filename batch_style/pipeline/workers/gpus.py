"""GPUs without importing TensorFlow: what nvidia-smi and CUDA_VISIBLE_DEVICES show, pinning, a probe."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

from batch_style.errors import UserError

log = logging.getLogger("batch_style")

SIMULATED = "BATCH_STYLE_GPUS"      # comma-separated ids: GPUs that tests pretend this machine has
VISIBLE = "CUDA_VISIBLE_DEVICES"
SMI_TIMEOUT_S = 30
PROBE_TIMEOUT_S = 300               # TensorFlow's import and a first convolution on each GPU
INSTALL_GPU = "install `.[gpu]` (.venv/bin/pip install -e '.[gpu]')"


@dataclass(frozen=True)
class Gpu:
    """A device a worker can be pinned to, as nvidia-smi lists it."""

    id: str                         # what CUDA_VISIBLE_DEVICES takes to show it alone: nvidia-smi's
                                    # index, or a MIG device's UUID
    name: str
    uuid: str | None = None         # GPU-… or MIG-… (old drivers: MIG-GPU-…/GI/CI)
    memory_mib: int | None = None
    compute_capability: str | None = None  # "8.0"; nvidia-smi reports it from driver 510 on
    index: int | None = None        # nvidia-smi's index of the physical GPU (a MIG device's parent)
    mig: bool = False               # a MIG slice of the GPU `index`
    has_mig: bool = False           # a physical GPU split into MIG devices (which run instead)


class SmiFailed(Exception):
    """nvidia-smi is installed but does not answer (no driver loaded, a driver/library mismatch)."""


# -- nvidia-smi ---------------------------------------------------------------------------------
_GPU_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: (GPU-[^)]+)\)\s*$")
_MIG_LINE = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)]+)\)\s*$")


def parse_listing(text: str) -> list[Gpu]:
    """`nvidia-smi -L`: physical GPUs, each followed by its MIG devices if it is split."""
    devices: list[Gpu] = []
    for line in text.splitlines():
        if match := _GPU_LINE.match(line):
            index, name, uuid = int(match[1]), match[2].strip(), match[3]
            devices.append(Gpu(id=str(index), name=name, uuid=uuid, index=index))
        elif (match := _MIG_LINE.match(line)) and devices:
            parent = next(d for d in reversed(devices) if not d.mig)
            if not parent.has_mig:
                devices[devices.index(parent)] = parent = replace(parent, has_mig=True)
            size = re.search(r"\.(\d+)gb$", match[1])  # the profile, e.g. 3g.20gb
            devices.append(Gpu(id=match[3], name=f"{parent.name} MIG {match[1]}", uuid=match[3],
                               memory_mib=int(size[1]) * 1024 if size else None,
                               compute_capability=parent.compute_capability,
                               index=parent.index, mig=True))
    return devices


def parse_query(text: str) -> dict[int, tuple[int | None, str | None]]:
    """`nvidia-smi --query-gpu=index,memory.total[,compute_cap] --format=csv,noheader,nounits`:
    index → (memory in MiB, compute capability)."""
    found = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        memory = int(fields[1]) if fields[1].isdigit() else None
        capability = fields[2] if len(fields) > 2 and re.fullmatch(r"\d+\.\d+", fields[2]) else None
        found[int(fields[0])] = (memory, capability)
    return found


def _smi(*args: str) -> str:
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True,
                              timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        raise SmiFailed(str(e)) from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().splitlines()
        raise SmiFailed(said[0] if said else f"exit status {done.returncode}")
    return done.stdout


def nvidia_smi() -> list[Gpu] | None:
    """Every GPU and MIG device nvidia-smi lists, with memory and compute capability where it says;
    None without nvidia-smi. Raises SmiFailed when it is there but fails."""
    if shutil.which("nvidia-smi") is None:
        return None
    devices = parse_listing(_smi("-L"))
    try:
        details = parse_query(_smi("--query-gpu=index,memory.total,compute_cap",
                                   "--format=csv,noheader,nounits"))
    except SmiFailed:  # drivers before 510 know no compute_cap field
        try:
            details = parse_query(_smi("--query-gpu=index,memory.total",
                                       "--format=csv,noheader,nounits"))
        except SmiFailed:
            details = {}
    out = []
    for d in devices:
        memory, capability = details.get(d.index, (None, None))
        out.append(replace(d, memory_mib=d.memory_mib if d.mig else memory,
                            compute_capability=capability))
    return out


def schedulable(devices: Sequence[Gpu]) -> list[Gpu]:
    """What workers run on: each GPU, or the MIG devices of a GPU that is split into them."""
    return [d for d in devices if not d.has_mig]


# -- CUDA_VISIBLE_DEVICES -----------------------------------------------------------------------
def named(entry: str, devices: Sequence[Gpu]) -> Gpu | None:
    """The device a CUDA_VISIBLE_DEVICES entry names, as CUDA reads it: an index, or a GPU-/MIG-
    UUID (or a unique prefix of one); None for anything else (-1, an index out of range)."""
    if entry.isdigit():
        physical = [d for d in devices if not d.mig]
        return next((d for d in physical if d.index == int(entry)), None)
    if entry.startswith(("GPU-", "MIG-")):
        matches = [d for d in devices if d.uuid and d.uuid.startswith(entry)]
        return matches[0] if len(matches) == 1 else None
    return None


def cuda_visible(value: str, devices: Sequence[Gpu]) -> tuple[tuple[str, ...], str | None]:
    """(the entries of CUDA_VISIBLE_DEVICES that show a device, the first entry that does not).

    As CUDA reads it: the list ends at the first entry that names no device, so `0,-1,1` shows GPU
    0 only; "" and "-1" show none. The entries are kept as written: CUDA reads an index in its own
    order (CUDA_DEVICE_ORDER), and a worker pinned to the same entry sees the same device.
    """
    if not value.strip():
        return (), None
    shown: list[str] = []
    seen: set[str] = set()
    for entry in (e.strip() for e in value.split(",")):
        device = named(entry, devices)
        # A device named twice would get two workers: the list is cut there too.
        if device is None or device.id in seen:
            return tuple(shown), entry
        seen.add(device.id)
        shown.append(entry)
    return tuple(shown), None


def simulated() -> bool:
    """Whether the GPUs are pretended (tests): nothing real can be probed then."""
    return SIMULATED in os.environ


def visible_gpus() -> tuple[str, ...]:
    """The GPUs a run here gets, one worker each (ids for CUDA_VISIBLE_DEVICES), without importing
    TensorFlow (the orchestrator must stay free to pin its workers).

    BATCH_STYLE_GPUS (comma-separated ids) overrides detection; tests use it to simulate GPUs.
    Without nvidia-smi there are none. Else each GPU nvidia-smi lists (the MIG devices of a split
    one), or those CUDA_VISIBLE_DEVICES shows of them.
    """
    override = os.environ.get(SIMULATED)
    if override is not None:
        return tuple(g.strip() for g in override.split(",") if g.strip())
    try:
        devices = nvidia_smi()
    except SmiFailed as e:
        log.warning("nvidia-smi fails (%s): no GPU is used; `batch-style doctor` says more", e)
        return ()
    if devices is None:
        return ()
    if VISIBLE in os.environ:
        shown, stop = cuda_visible(os.environ[VISIBLE], devices)
        if stop is not None and stop != "-1":
            log.warning("%s=%s: CUDA stops at %r, which names no GPU; the GPUs after it are "
                        "hidden", VISIBLE, os.environ[VISIBLE], stop)
        return shown
    return tuple(d.id for d in schedulable(devices))


def worker_env(gpu: str | None, device: str = "auto") -> dict[str, str]:
    """The environment that pins one worker process, applied before anything loads: its GPU
    alone; none with --device cpu; else as it is (no GPU known: CUDA_VISIBLE_DEVICES stays unset,
    since "" would hide every GPU from a worker that TensorFlow could otherwise use)."""
    if device == "cpu":
        return {VISIBLE: "-1"}
    if gpu is None:
        return {}
    env = {VISIBLE: gpu}
    if VISIBLE not in os.environ and not simulated() and gpu.isdigit():
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # nvidia-smi's numbering, which `gpu` comes from
    return env


def given_gpu() -> str | None:
    """The GPU this process was given by its environment (a Dask worker started with
    CUDA_VISIBLE_DEVICES=N, or this process): the first entry CUDA would show; None if unset."""
    value = os.environ.get(VISIBLE)
    if value is None:
        return None
    first = value.split(",")[0].strip()
    return first if first.isdigit() or first.startswith(("GPU-", "MIG-")) else None


# -- does TensorFlow see them? --------------------------------------------------------------------
@dataclass(frozen=True)
class TensorFlowView:
    """What TensorFlow, started in a subprocess pinned like the workers, makes of the GPUs."""

    version: str | None = None      # None: it does not import
    import_error: str | None = None
    cuda_build: bool = False
    cuda: str | None = None         # the CUDA and cuDNN versions it was built with
    cudnn: str | None = None
    gpus: tuple[dict, ...] = ()     # per GPU it sees: name, compute_capability [major, minor],
                                    # error (a first convolution on it failed)
    log: tuple[str, ...] = ()       # its start-up stderr


# Run in a fresh interpreter (so the orchestrator never imports TensorFlow): TensorFlow's start-up
# messages, which say why it finds no GPU, go to its stderr.
_PROBE = r"""
import json, sys
try:
    import tensorflow as tf
except Exception as e:
    print(json.dumps({"import_error": f"{type(e).__name__}: {e}"}))
    sys.exit(0)
info = tf.sysconfig.get_build_info()
gpus = tf.config.list_physical_devices("GPU")
for gpu in gpus:
    tf.config.experimental.set_memory_growth(gpu, True)
seen = []
for i, gpu in enumerate(gpus):
    details = tf.config.experimental.get_device_details(gpu)
    error = None
    try:
        with tf.device(f"/GPU:{i}"):
            x = tf.nn.conv2d(tf.ones((1, 16, 16, 3)), tf.ones((3, 3, 3, 8)), 1, "SAME")
            float(tf.reduce_sum(x))
    except Exception as e:
        error = f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0]
    seen.append({"name": details.get("device_name"),
                 "compute_capability": list(details.get("compute_capability") or ()),
                 "error": error})
print(json.dumps({"version": tf.__version__, "cuda_build": bool(info.get("is_cuda_build")),
                  "cuda": info.get("cuda_version"), "cudnn": info.get("cudnn_version"),
                  "gpus": seen}))
"""


def probe(gpus: Sequence[str] = ()) -> TensorFlowView:
    """Start TensorFlow in a subprocess that sees `gpus` (as the workers would; none given: the
    environment as it is) and report what it sees."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}  # its warnings say why a GPU is missing
    if gpus:
        # CUDA shows one MIG device per process: the first stands for the rest.
        shown = list(gpus[:1]) if any(g.startswith("MIG-") for g in gpus) else list(gpus)
        env.update(worker_env(shown[0]))
        env[VISIBLE] = ",".join(shown)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              env=env, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return TensorFlowView(import_error=f"TensorFlow did not start within {PROBE_TIMEOUT_S} s")
    log_lines = tuple(line for line in done.stderr.splitlines() if line.strip())
    lines = done.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, ValueError):
        last = log_lines[-1] if log_lines else f"exit status {done.returncode}"
        return TensorFlowView(import_error=f"TensorFlow died while starting: {last}",
                              log=log_lines)
    return TensorFlowView(version=data.get("version"), import_error=data.get("import_error"),
                          cuda_build=data.get("cuda_build", False), cuda=data.get("cuda"),
                          cudnn=data.get("cudnn"), gpus=tuple(data.get("gpus", ())),
                          log=log_lines)


# (pattern in TensorFlow's start-up log, why it sees no GPU; what to do), first match wins.
_WHY = [
    (r"Cannot dlopen some GPU libraries|Could not load dynamic library|libcudnn|libcublas",
     f"the CUDA libraries are missing; {INSTALL_GPU}"),
    (r"Could not find cuda drivers|libcuda\.so",
     "TensorFlow cannot load the NVIDIA driver's libcuda.so.1; check the driver installation "
     "(in a container: start it with the GPUs, e.g. `docker run --gpus all`)"),
    (r"driver version is insufficient|CUDA_ERROR_SYSTEM_DRIVER_MISMATCH|"
     r"CUDA_ERROR_COMPAT_NOT_SUPPORTED|does not match DSO version",
     "the NVIDIA driver is older than the CUDA {cuda} this TensorFlow was built with; update "
     "the driver"),
    (r"CUDA_ERROR_OUT_OF_MEMORY",
     "its memory is taken (CUDA_ERROR_OUT_OF_MEMORY); stop what nvidia-smi shows running on it"),
    (r"Ignoring visible gpu device|minimum required Cuda capability",
     "its compute capability is below what this TensorFlow supports; use another GPU or "
     "--device cpu"),
    (r"CUDA_ERROR_NO_DEVICE",
     "CUDA finds no device (check CUDA_VISIBLE_DEVICES, and the driver with nvidia-smi)"),
]


def why_unseen(view: TensorFlowView) -> str:
    """Why TensorFlow sees fewer GPUs than nvidia-smi, with what to do, from its build and log."""
    if view.version is None:
        return f"TensorFlow does not start ({view.import_error}); run `make setup`, then " \
               f"{INSTALL_GPU}"
    if not view.cuda_build:
        return f"this TensorFlow {view.version} is built without CUDA; {INSTALL_GPU}"
    if view.version == "2.16.1":
        return ("TensorFlow 2.16.1 does not find the CUDA libraries pip installs (tensorflow "
                "issues 63362, 65842); upgrade it: .venv/bin/pip install -U -e '.[gpu]'")
    text = "\n".join(view.log)
    for pattern, why in _WHY:
        if re.search(pattern, text):
            return why.format(cuda=view.cuda or "?")
    return "TensorFlow does not say why; `batch-style doctor` shows its start-up log"


def problems(gpus: Sequence[str], view: TensorFlowView) -> list[str]:
    """One line per GPU that TensorFlow cannot use, with the fix (none: every one works)."""
    expected = list(gpus[:1]) if any(g.startswith("MIG-") for g in gpus) else list(gpus)
    found = []
    if len(view.gpus) < len(expected):
        missing = expected[len(view.gpus)]
        found.append(f"GPU {missing} is visible to nvidia-smi but not to TensorFlow: "
                     f"{why_unseen(view)}")
    for gpu, seen in zip(expected, view.gpus):
        if seen.get("error"):
            found.append(f"GPU {gpu}: TensorFlow sees it but cannot compute on it "
                         f"({seen['error']}); `batch-style doctor` shows its start-up log")
    return found


@functools.cache
def _probe_once(gpus: tuple[str, ...]) -> TensorFlowView:
    return probe(gpus)


def require_usable(gpus: Sequence[str]) -> None:
    """Refuse to start a run on GPUs TensorFlow cannot use (it would run everything on the CPU
    while the records say GPU): UserError with one line. Simulated GPUs are not checked."""
    if not gpus or simulated():
        return
    found = problems(gpus, _probe_once(tuple(gpus)))
    if found:
        raise UserError(f"{found[0]} (or run with --device cpu)")
