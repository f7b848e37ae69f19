"""`batch-style doctor`: what this machine offers, what a run would do with it, and what to fix."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from batch_style.engine import autotune, tf_runtime
from batch_style.engine import weights as vgg_weights  # examine() has a `weights` argument
from batch_style.errors import UserError
from batch_style.pipeline.workers import gpus
from batch_style.settings import Settings

MIN_FREE_GB = 1.0  # below this under the output folder, a run is likely to stop on a full disk
# pip's CUDA libraries (`.[gpu]`), as TensorFlow finds them: (distribution, what it is).
CUDA_WHEELS = (("nvidia-cuda-runtime-cu12", "CUDA runtime"), ("nvidia-cudnn-cu12", "cuDNN"))


@dataclass(frozen=True)
class Checkup:
    """The machine as a run would find it: facts, and problems with their fixes."""

    facts: tuple[tuple[str, str], ...]  # (topic, one line)
    problems: tuple[str, ...]           # one line each: what is wrong; what to do

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def text(self) -> str:
        width = max(len(topic) for topic, _ in self.facts)
        lines = [f"{topic:<{width}}  {fact}" for topic, fact in self.facts]
        lines.append("")
        lines += [f"problem: {p}" for p in self.problems] or ["no problems found"]
        return "\n".join(lines)


def examine(output: Path | None = None, weights: str | None = None) -> Checkup:
    """Look at Python, TensorFlow and CUDA, the GPUs and the CPU, the weights, the disk under
    `output` (default: here) and Dask. Starts TensorFlow in a subprocess only; downloads nothing."""
    facts: list[tuple[str, str]] = [("Python", f"{platform.python_version()} ({sys.executable})")]
    problems: list[str] = []
    devices, smi_error = _nvidia_smi()
    ids = _visible(devices, problems)
    view = gpus.probe(ids)
    facts.append(("TensorFlow", _tensorflow(view)))
    if devices:
        facts.append(("CUDA from pip", _cuda_wheels()))
    facts += _gpu_facts(devices, smi_error, ids, view)
    if smi_error:
        problems.append(f"nvidia-smi fails ({smi_error}): the NVIDIA driver is not loaded or does "
                        f"not match its tools; reinstall the driver (or reboot after an update)")
    if view.version is None:
        problems.append(gpus.why_unseen(view))
    elif ids:
        problems += gpus.problems(ids, view)
    facts.append(("CPU", _cpu()))
    facts.append(("A run here", _plan(ids, view)))
    facts.append(("VGG19 weights", _weights(weights, problems)))
    facts.append(("Disk", _disk(Path(output or "."), problems)))
    facts.append(("Dask", _dask()))
    return Checkup(tuple(facts), tuple(problems))


def _nvidia_smi() -> tuple[list[gpus.Gpu] | None, str | None]:
    try:
        return gpus.nvidia_smi(), None
    except gpus.SmiFailed as e:
        return None, str(e)


def _visible(devices: list[gpus.Gpu] | None, problems: list[str]) -> tuple[str, ...]:
    """The GPUs a run would use (as CUDA_VISIBLE_DEVICES entries); one that ends the list by
    mistake, hiding the GPUs after it, is a problem."""
    if devices is None:
        return ()
    value = os.environ.get(gpus.VISIBLE)
    if value is None:
        return tuple(d.id for d in gpus.schedulable(devices))
    shown, stop = gpus.cuda_visible(value, devices)
    entries = [e.strip() for e in value.split(",")]
    if stop is not None and (stop != "-1" or entries[entries.index(stop) + 1:]):
        problems.append(f"{gpus.VISIBLE}={value}: CUDA stops at {stop!r}, which names no GPU, so "
                        f"it and what follows are hidden; list only GPUs `nvidia-smi -L` shows")
    return shown


def _tensorflow(view: gpus.TensorFlowView) -> str:
    if view.version is None:
        return f"does not start: {view.import_error}"
    if not view.cuda_build:
        return f"{view.version}, built without CUDA (CPU only)"
    return f"{view.version}, built with CUDA {view.cuda} and cuDNN {view.cudnn}"


def _cuda_wheels() -> str:
    found = []
    for distribution, what in CUDA_WHEELS:
        try:
            found.append(f"{what} {importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{what} not installed")
    return ", ".join(found)


def _gpu_facts(devices, smi_error, ids, view) -> list[tuple[str, str]]:
    if smi_error:
        return [("GPUs", "unknown: nvidia-smi fails")]
    if devices is None:
        return [("GPUs", "none: nvidia-smi is not installed; runs use the CPU")]
    if not devices:
        return [("GPUs", "none: nvidia-smi lists none; runs use the CPU")]
    probed = list(ids[:1]) if any(i.startswith("MIG-") for i in ids) else list(ids)
    entry_of = {gpus.named(entry, devices).id: entry for entry in ids}
    seen_by_tf = dict(zip(probed, view.gpus))  # TensorFlow lists what it sees in their order
    out = []
    for d in devices:
        label = f"GPU {d.id}" if d.mig else f"GPU {d.index}"
        if d.has_mig:
            out.append((label, f"{d.name}, split into MIG devices (below)"))
            continue
        entry = entry_of.get(d.id)
        by_tf = seen_by_tf.get(entry)
        capability = d.compute_capability or (
            ".".join(map(str, by_tf["compute_capability"])) if by_tf else None)
        parts = [d.name, f"{d.memory_mib} MiB" if d.memory_mib else "memory unknown",
                 f"compute capability {capability or 'unknown'}"]
        if capability:
            ampere = tuple(int(x) for x in capability.split(".")) >= (8, 0)
            parts.append("bfloat16 native" if ampere else "bfloat16 emulated")
            # Workers turn TF32 off (tf_runtime.configure): their float32 is float32.
            parts.append("TF32 off (float32 stays float32)" if ampere else "no TF32")
        if entry is None:
            parts.append(f"hidden by {gpus.VISIBLE}")
        elif by_tf is not None:
            parts.append("TensorFlow: " + ("cannot compute on it" if by_tf.get("error") else "ok"))
        elif entry in probed:
            parts.append("TensorFlow: does not see it")
        else:
            parts.append("TensorFlow: not checked (CUDA shows a process one MIG device)")
        out.append((label, ", ".join(parts)))
    return out


def _cpu() -> str:
    name = tf_runtime.cpu_model()
    flags = tf_runtime.cpu_flags()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    features = ", ".join(f"{label} {'yes' if flag in flags else 'no'}"
                         for flag, label in tf_runtime.CPU_FEATURES.items())
    return f"{name}, {usable} cores usable of {os.cpu_count()}; {features}"


def _plan(ids: tuple[str, ...], view: gpus.TensorFlowView) -> str:
    """What `batch-style run` would start, and the `auto` settings it would pick."""
    if ids and view.gpus:
        capability = tuple(view.gpus[0].get("compute_capability") or (0, 0))
        precision = "mixed (bfloat16 tensor cores)" if capability >= (8, 0) else "float32"
        return (f"{len(ids)} worker{'s' if len(ids) > 1 else ''}, one per GPU "
                f"({', '.join(ids)}); precision auto → {precision}, convolution auto → direct "
                f"(cuDNN)")
    # auto is timed by the first unit of each size bucket, then read from the cache
    return f"1 worker on the CPU; at {autotune.BUCKETS[0]} px: " + autotune.preview(
        Settings(), autotune.BUCKETS[0])


def _weights(explicit: str | None, problems: list[str]) -> str:
    try:
        source = vgg_weights.resolve(explicit, fetch=False)
    except UserError as e:
        problems.append(str(e))
        return "not found"
    return f"{source.path} ({source.origin}: {source.note})"


def _disk(output: Path, problems: list[str]) -> str:
    folder = output.resolve()
    while not folder.exists():
        folder = folder.parent
    free_gb = shutil.disk_usage(folder).free / 1e9
    if free_gb < MIN_FREE_GB:
        problems.append(f"only {free_gb:.1f} GB free under {output}: a run writes every image and "
                        f"video frame there; free some space or choose another output folder")
    return f"{free_gb:.1f} GB free under {output}"


def _dask() -> str:
    try:
        return f"distributed {importlib.metadata.version('distributed')} (--backend dask)"
    except importlib.metadata.PackageNotFoundError:
        return "not installed (only for --backend dask: pip install -e '.[dask]')"
