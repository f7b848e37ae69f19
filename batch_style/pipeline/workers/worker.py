"""Worker: stylizes one unit at a time in a process that keeps VGG19 and style targets loaded."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Nothing imported here loads TensorFlow: a worker must be pinned to its GPU
# (CUDA_VISIBLE_DEVICES) before it loads, and unpickling this module's functions comes first.
from batch_style.engine import tf_runtime
from batch_style.engine.painter import Painter
from batch_style.errors import UserError
from batch_style.media import flow, gif, images, profiles
from batch_style.pipeline.state import events, ledger
from batch_style.pipeline.state.snapshots import LiveSnapshot
from batch_style.pipeline.units import DISK_FULL, Unit, UnitResult, WorkerConfig
from batch_style.pipeline.workers import gpus, memory


class _WorkerState:
    """Heavy per-process state: the painter (feature models, style pictures and their masks)."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.painter = Painter(config.weights, tiny=config.tiny)


_STATE: _WorkerState | None = None
_GPU: str | None = None  # the GPU this process computes on (None: the CPU)
_POOL_GPU: str | None = None  # the GPU a pool worker was started on (init_worker)
_POOL_WORKER = False
_GPU_LOST: str | None = None  # why TensorFlow here cannot use the GPU this process was given
_RUN_PID: int | None = None  # the `run` process a pool worker works for (init_worker)
WATCH_SECONDS = 0.25  # how often a pool worker looks whether its run is still there
TF_LOADED_BEFORE_PINNING: bool | None = None  # checked by tests
# Stylized frames are warped with Lanczos, not bilinear: each bilinear warp blurred a frame by
# ~25% of its detail and warm starts compounded it (the drift; docs/video.md, "Drift").
SHARP_WARP = True
# Pixels frame t-1 saw are held to the mean of it and every earlier frame that saw them too: with
# t-1 alone the strokes crept (warping error at k = 10: 3.7× the input's, 2.1× with this;
# docs/video.md, "Long-term consistency and drift"). False: Ruder et al.'s c_long alone.
ANCHOR = True
# The anchor keeps t-1's own detail below this blur sigma, px (its mean of warped frames is softer):
# with temporal_weight 3e12, detail 0.95-0.96 kept on clips not tuned on (0.88-0.92 without),
# warping error at k = 1 0.6-0.9× that without (docs/video.md, "Short-term steadiness and
# detail"). None: off.
KEEP_DETAIL: float | None = 2.0
# Ablations of the anchor (same section), not settings: t-1's share of it (None: an equal
# share), how many earlier frames join it (None: all).
PREVIOUS_SHARE: float | None = None
ANCHOR_FRAMES: int | None = None


def init_worker(config: WorkerConfig, gpu: str | None = None, run_pid: int | None = None) -> None:
    """Initializer of a pool worker (pools.py), which loky started with its environment pinning
    it to `gpu` (CUDA_VISIBLE_DEVICES) before any module loaded; None: a CPU worker. `run_pid`:
    the `run` process that started it; the worker ends when that is gone."""
    global _POOL_GPU, _POOL_WORKER, _RUN_PID, TF_LOADED_BEFORE_PINNING
    from joblib.externals.loky import process_executor

    TF_LOADED_BEFORE_PINNING = "tensorflow" in sys.modules
    _POOL_WORKER, _POOL_GPU = True, gpu
    # Ctrl-C reaches the whole process group; the orchestrator alone handles it and stops the
    # workers, so a worker never dies half-way through a unit with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # With psutil installed, loky replaces a worker whose memory grew by 300 MB after its first
    # task: here that is TensorFlow's and VGG19's working set, and each replacement would load
    # them again (and on a GPU, start a CUDA context again).
    process_executor._USE_PSUTIL = False
    if run_pid is not None:
        _RUN_PID = run_pid
        threading.Thread(target=_watch_run, name="watch-run", daemon=True).start()


def _watch_run() -> None:
    # A `run` killed alone (kill -9, the OOM killer) leaves its workers to init: they would go on
    # computing for an hour and write a unit into a folder that a new run may own by then.
    while True:
        stop_if_orphaned()
        time.sleep(WATCH_SECONDS)


def stop_if_orphaned() -> None:
    """End this pool worker at once, writing nothing more, when its `run` process is gone: the
    worker was its child, so another parent (init, a subreaper) means the run died."""
    if _RUN_PID is not None and os.getppid() != _RUN_PID:
        os._exit(1)


def _start(config: WorkerConfig) -> None:
    """Configure TensorFlow for `config` and find out which GPU this process computes on: a pool
    worker's own, a Dask worker's (CUDA_VISIBLE_DEVICES where it was started), or this process's
    first (--workers 0). Every kind of worker goes through here before its first unit."""
    global _GPU, _GPU_LOST
    tf_gpus = config.device != "cpu"
    tf_runtime.import_tensorflow(gpus=tf_gpus)
    given = _POOL_GPU if _POOL_WORKER else gpus.given_gpu()
    _GPU, _GPU_LOST = None, None
    if not tf_gpus:
        return
    if tf_runtime.has_gpu():
        _GPU = given or "0"  # not pinned: TensorFlow computes on the first GPU it sees
    elif given is not None and gpus.simulated():
        _GPU = given  # tests pretend GPUs; TensorFlow here has none
    elif given is not None and _POOL_WORKER:
        # The orchestrator checked that TensorFlow can use the GPUs (gpus.require_usable); a
        # worker whose card it still cannot use says so on every unit rather than pretend.
        _GPU_LOST = f"TensorFlow here cannot use GPU {given} ({gpus.VISIBLE}=" \
                    f"{os.environ.get(gpus.VISIBLE)}): ran on the CPU; see `batch-style doctor`"


def worker_info() -> dict:
    """Where this worker runs (tests check GPU pinning with this)."""
    return {"pid": os.getpid(), "gpu": _GPU,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "tf_loaded_before_pinning": TF_LOADED_BEFORE_PINNING}


def run_unit(unit: Unit, config: WorkerConfig) -> UnitResult:
    """Stylize one unit and write its outputs; never raises for a failure of the unit itself."""
    global _STATE

    started = time.perf_counter()

    def where() -> dict:
        return {"worker": f"{socket.gethostname()}:{os.getpid()}", "gpu": _GPU,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "tf_loaded_before_pinning": TF_LOADED_BEFORE_PINNING}


    beat = events.WorkerBeat(config.state_dir, unit.key, gpu=_GPU)  # live progress file
    try:
        if _STATE is None or _STATE.config != config:
            beat.phase("loading TensorFlow")
            _start(config)
            beat.info["gpu"] = _GPU
            _STATE = _WorkerState(config)
        # --device cpu where TensorFlow had set up its GPUs before (a Dask worker, this process)
        with tf_runtime.on_cpu() if config.device == "cpu" else contextlib.nullcontext():
            result = _stylize_unit(unit, _STATE, beat, started)
        if _GPU_LOST:
            result["note"] = "; ".join(n for n in (_GPU_LOST, result["note"]) if n)
        return UnitResult(key=unit.key, ok=True, seconds=time.perf_counter() - started,
                          **result, **where())
    except UserError as e:
        kind, message, detail = "input", str(e), None
    except OSError as e:
        # Unreadable inputs are UserErrors (images.load_image); this is writing, or the system.
        if e.errno in DISK_FULL:
            kind, message = "disk-full", f"disk full while writing {unit.output}"
        else:
            kind, message = "io", f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        detail = traceback.format_exc()
    except Exception as e:  # the unit boundary: anything else is reported as a bug of ours
        if tf_runtime.out_of_memory(e):
            kind, message = "oom", "out of memory (try a smaller size or fewer workers)"
        else:
            kind, message = "internal", f"internal error: {type(e).__name__}: {e}"
        detail = traceback.format_exc()
    return UnitResult(key=unit.key, ok=False, error=message.splitlines()[0], error_kind=kind,
                      detail=detail, seconds=time.perf_counter() - started, **where())


def _stylize_unit(unit: Unit, state: _WorkerState, beat, started: float) -> dict:
    from batch_style.engine.objective import Temporal  # loads TensorFlow: after GPU pinning

    s = unit.settings
    painter = state.painter
    content = painter.picture(unit.content, s.max_pixels)
    styles = [painter.picture(p, s.max_pixels, keep=True) for p in unit.styles]
    init, temporal, warm = None, None, False
    start = _frame_start(unit, content)
    if start is not None and s.warm_start:
        init, warm = start.image, start.warm
    elif unit.init is not None:
        init = images.load_image(unit.init, s.max_pixels)
    if start is not None and s.temporal_weight > 0:
        temporal = Temporal(previous=start.target, mask=start.mask)
    snapshots = []
    live = LiveSnapshot(state.config.state_dir)  # and the picture as it paints, for the report
    stamps: list[float] = []  # when the first and the latest step ended: the unit's pace

    def on_progress(event):
        stop_if_orphaned()  # before each write of the progress file and the snapshot
        now = time.perf_counter()
        stamps[:] = [stamps[0] if stamps else now, now]
        beat.update(event)
        live.update(event)
        if unit.progress_gif is not None and event.snapshot is not None:
            snapshots.append(images.to_uint8(event.snapshot))

    first = not painter.holds_any()
    if not painter.holds(s):
        beat.phase("loading the model")
    stylizer = painter.stylizer(s)
    # The manifest's masks were checked when it was read (pipeline/read/masks.py).
    regions = painter.regions(s, content, styles, unit.masks, unit.image_masks, unit.protect,
                              check=False, masks_move=unit.masks_move)
    beat.phase("measuring this machine and compiling" if first else "preparing")

    def stylize(memory):
        # A frame warm-started from the previous one takes its own budget, coarse to fine like
        # the first (base_size), its finer levels keeping the previous frame's detail: 4-7×
        # less time than at its size alone, half its warping error (docs/video.md, "HD frames").
        return painter.paint(content, styles, s, init=init, temporal=temporal,
                             steps=unit.budget if warm else None,
                             coarse=not warm or s.scales == 1, detail=init if warm else None,
                             regions=regions,
                             style_keys=[ledger.file_digest(p) for p in unit.styles],
                             callback=on_progress, memory=memory)

    note, ran = None, None
    device = "cpu" if _GPU is None or tf_runtime.computing_on_cpu() else f"gpu:{_GPU}"
    on_gpu = device != "cpu"
    budget = memory.budget_bytes(s, _GPU if on_gpu else None, state.config.workers)
    try:
        result = stylize(budget)
    except Exception as e:
        if not on_gpu or not tf_runtime.out_of_memory(e):
            raise
        w, h = images.fit_size(content.shape[1], content.shape[0], s.size)
        snapshots.clear()
        try:
            # The estimate was short of what this card had free: in smaller tiles, on the GPU.
            result = stylize(budget // 2 if budget else 4 << 30)
            note = f"{w}×{h} px did not fit GPU {_GPU}'s memory at once: made in smaller tiles"
        except Exception as again:
            if not tf_runtime.out_of_memory(again):
                raise
            # Finish the unit on the CPU (slower, but it finishes) rather than fail it; the note
            # tells the operator. on_cpu() makes the CPU's choices too (float32 where bfloat16
            # is emulated, Winograd) and its own memory budget.
            note = f"{w}×{h} px did not fit GPU {_GPU}'s memory: ran on the CPU instead"
            snapshots.clear()
            with tf_runtime.on_cpu():
                result = stylize(memory.budget_bytes(s, None, state.config.workers))
                ran, device = ran_as(stylizer, s, result), "cpu"
    ran = ran or ran_as(stylizer, s, result)
    stop_if_orphaned()
    beat.done()
    live.done()
    images.save_image(result.image, unit.output, bit_depth=s.bit_depth,
                      icc_profile=profiles.result_profile(unit.content))
    if unit.progress_gif is not None:
        stop_if_orphaned()
        gif.save_progress_gif(content, snapshots, result.image, unit.progress_gif)
    step = max(1, len(result.history) // 200)
    # Loading, measuring and compiling (the first step) are not the pace of the next units.
    warmup = 0.0
    if len(stamps) == 2 and result.steps > 1:
        pace = (stamps[1] - stamps[0]) / (result.steps - 1)
        warmup = max(stamps[0] - started - pace, 0.0)
    return {"steps": result.steps, "losses": result.losses.as_dict(), "warmup": round(warmup, 3),
            "history": tuple(result.history[::step]), "note": note, "device": device,
            "stopped": result.stop_reason, **ran}


def ran_as(stylizer, settings, result) -> dict:
    """The precision and convolution the unit's steps ran with (Stylizer.phases: `auto` resolved
    for this process), and why (autotune.Choice), for the ledger and the report."""
    longest = max(result.image.shape[:2])
    kinds = {arithmetic for arithmetic, n in
             stylizer.phases(settings, result.levels[0].steps, longest) if n}
    float32 = kinds - {"bfloat16"}
    precision = ("mixed" if "bfloat16" in kinds and float32 else
                 "bfloat16" if "bfloat16" in kinds else "float32")
    return {"precision": precision, "convolution": "winograd" if "winograd" in kinds else "direct",
            "choice": result.choice.reason if result.choice else None}


@dataclass(frozen=True)
class FrameStart:
    """Where a video frame starts and what the temporal term holds it to (Ruder et al.)."""

    image: np.ndarray   # H×W×3 at the result's size: the warm start
    target: np.ndarray  # H×W×3: what consistent pixels are held near
    mask: np.ndarray    # H×W in [0,1]: how much each pixel is held
    warm: bool          # started from the previous frame: the smaller frame_steps budget


def _frame_start(unit: Unit, content: np.ndarray) -> FrameStart | None:
    """The previous stylized frame warped along the flow to this one, with its consistency
    mask; in a chunk overlap, blended with the next chunk's lead-in of this frame. None for a
    frame that starts on its own (the first of a chain, a scene cut, or after a failed frame:
    the orchestrator then clears previous_output)."""
    def there(path: Path | None) -> Path | None:
        return path if path is not None and path.exists() else None

    previous_path, partner_path = there(unit.previous_output), there(unit.partner_output)
    if previous_path is None and partner_path is None:
        return None
    s = unit.settings
    size = images.fit_size(content.shape[1], content.shape[0], s.size)
    fill = images.resize(content, size)
    previous = flow.load_frame(previous_path, size, s.max_pixels) if previous_path else None
    partner = flow.load_frame(partner_path, size, s.max_pixels) if partner_path else None
    if previous is not None:
        if unit.flow is not None:
            pair = flow.load_pair(unit.flow)  # the orchestrator submits this unit once it exists
            if pair.size != size:
                raise ValueError(f"flow file {unit.flow} is {pair.size}, the frame {size}")
            target, mask = flow.warp(previous, pair.backward, SHARP_WARP), pair.mask
            entered = flow.outside(pair.backward)
        else:  # no flow known: the previous frame as it is, every pixel held
            target, mask = previous, np.ones(previous.shape[:2], np.float32)
            entered = np.zeros(previous.shape[:2], bool)
        # Pixels that came into view have nothing to come from: they start from the content.
        # Elsewhere the start is the warped frame, also where the mask keeps the temporal term
        # off (occlusions, motion boundaries): a stroke warped there beats a patch of unpainted
        # photo, which the frame's few steps must repaint (realshort.mp4, 128 px, 60 then 20
        # steps: starting from the warped frame everywhere gave flicker 1.40 against 1.48 and an
        # objective 1.7% lower than filling every masked pixel from the content). Ruder et al.
        # too start from the whole warped frame.
        image = np.where(entered[..., None], fill, target)
        if unit.earlier and unit.flow is not None:
            # Long-term (Ruder et al. 2018): what frame t-1 did not see, from the latest earlier
            # frame that did, target and start alike: a region that comes back keeps its strokes.
            target, mask, seen = _long_term(unit.earlier, size, s.max_pixels, target, mask)
            image = np.where(seen[..., None], target, image)
    if partner is not None:
        # A chunk's last frames hand over to the next chunk's lead-in, a little more each frame,
        # so the two chains' strokes meet gradually instead of jumping at the border.
        w = float(unit.blend)
        if previous is None:
            image, target, mask = (1 - w) * fill + w * partner, partner, np.full(
                partner.shape[:2], w, np.float32)
        else:
            image = (1 - w) * image + w * partner
            target = (1 - w) * target + w * partner
            mask = (1 - w) * mask + w
    return FrameStart(image=image.astype(np.float32), target=target.astype(np.float32),
                      mask=mask.astype(np.float32), warm=previous is not None)


def _long_term(earlier, size, max_pixels, target, mask):
    """A pixel frame t-1 did not see is held to the latest earlier frame that saw it: frame j
    (nearest first) takes the pixels its consistency mask keeps and no later frame had, Ruder et
    al.'s c_long(j) = max(0, c(j) − Σ_{k<j} c(k)). A pixel t-1 saw is held to the mean of t-1
    and the earlier frames that saw it too (ANCHOR). Returns the target, the mask, and the
    pixels an earlier frame took. A file gone (a failed frame, a flow not made) leaves that
    frame out."""
    taken = np.zeros(mask.shape, bool)
    held = mask > 0.5
    anchored = held.copy() if ANCHOR else np.zeros(mask.shape, bool)
    previous = target
    total, count = np.where(held[..., None], target, 0.0), held.astype(np.float32)
    for i, (_, output, path) in enumerate(earlier):
        if not (output.exists() and path.exists()):
            continue
        pair = flow.load_pair(path)
        if pair.cut or pair.size != size:
            continue
        seen = pair.mask > 0.5
        joins = anchored if ANCHOR_FRAMES is None or i < ANCHOR_FRAMES else False
        take = seen & (joins | ~held)
        if take.any():
            frame = flow.load_frame(output, size, max_pixels)
            total += take[..., None] * flow.warp(frame, pair.backward, SHARP_WARP)
            count += take
            taken |= seen & ~held
            held |= take
    target = np.where(held[..., None], total / np.maximum(count, 1.0)[..., None], target)
    both = (anchored & (count > 1))[..., None]
    if PREVIOUS_SHARE is not None:
        rest = (total - previous) / np.maximum(count - 1, 1.0)[..., None]
        target = np.where(both, PREVIOUS_SHARE * previous + (1 - PREVIOUS_SHARE) * rest, target)
    if KEEP_DETAIL is not None:
        import cv2

        def blur(x):
            return cv2.GaussianBlur(np.asarray(x, np.float32), (0, 0), KEEP_DETAIL)

        target = np.where(both, blur(target) + previous - blur(previous), target)
    return target, held.astype(np.float32), taken
