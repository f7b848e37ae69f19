"""Optical flow between video frames (OpenCV's DIS), warping, consistency masks and flicker."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch_style.atomic import atomic_path
from batch_style.media import images

log = logging.getLogger("batch_style")

# Cached flow files live in FRAMES_DIR/flow-v1-WxH/ (the extracted frames' folder, so a changed
# window or source drops them with the frames); the version changes when the algorithm does.
FLOW_VERSION = "v1"
FLOW_THREADS = 2        # scheduler-side threads computing flow while the workers optimize

# Forward-backward consistency (Ruder, Dosovitskiy & Brox 2016, eq. 6-7), flows in pixels:
# a pixel of frame t is disoccluded when following the backward flow and then the forward flow
# does not bring it back, |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5, and on a motion boundary when
# the backward flow changes fast, |∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002.
OCCLUSION_RELATIVE = 0.01
OCCLUSION_ABSOLUTE = 0.5    # px²
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002   # px² per px²

# Scene cuts: frame t starts afresh when the flow cannot explain it from frame t-1, i.e. the mean
# absolute difference (RGB in [0,1], at the result's size) between frame t and frame t-1 warped
# along the flow is over CUT_CHANGE. Measured at 128 px: the hand-held pan of realshort.mp4 leaves
# 0.008-0.015 between consecutive frames and 0.035 between frames 20 apart; a flat synthetic ramp
# that flow cannot follow, 0.065; cuts between unrelated pictures, 0.23-0.26. The fraction of
# consistent pixels is no test: on textureless frames forward and backward flow disagree
# everywhere (down to 0) without any cut.
CUT_CHANGE = 0.1


# -- flow, warping, the consistency mask --------------------------------------------------------
def _gray(image: np.ndarray) -> np.ndarray:
    """An RGB float image in [0,1] as 8-bit luma, what DIS works on."""
    luma = np.asarray(image, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(luma * 255.0), 0, 255).astype(np.uint8)


def compute_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dense flow from `source` to `target` (H×W×2 float32, pixels, x then y): the content at
    pixel p of `source` is at p + flow(p) in `target`. OpenCV's DIS, medium preset."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(source), _gray(target), None)


def _sample_positions(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray, sharp: bool = False) -> np.ndarray:
    """`image` sampled at p + flow(p) for each pixel p (bilinear; edges repeated).

    With `flow` the backward flow from frame t to frame t-1, warp(frame t-1) lines frame t-1 up
    with frame t: warp(b, compute_flow(a, b)) ≈ a. `sharp`: Lanczos (8×8) instead of bilinear,
    clipped to [0,1], for stylized frames warped again and again (a warm start's start).
    """
    import cv2

    map_x, map_y = _sample_positions(np.asarray(flow, np.float32))
    src = np.ascontiguousarray(image, np.float32)
    kernel = cv2.INTER_LANCZOS4 if sharp else cv2.INTER_LINEAR
    out = cv2.remap(src, map_x, map_y, kernel, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(out, 0.0, 1.0) if sharp else out


def outside(backward: np.ndarray) -> np.ndarray:
    """H×W bool: pixels of frame t whose backward flow points out of frame t-1 (they came into
    view: frame t-1 has nothing for them)."""
    h, w = backward.shape[:2]
    x, y = _sample_positions(np.asarray(backward, np.float32))
    return (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)


def consistency_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s weights c for frame t (H×W float32, 1 keep, 0 drop): pixels whose backward
    flow leaves the frame, is not undone by the forward flow (disocclusions) or lies on a motion
    boundary get 0. `forward`: frame t-1 → t; `backward`: frame t → t-1."""
    backward = np.asarray(backward, np.float32)
    forward_there = warp(forward, backward)  # w̃: the forward flow where each pixel came from
    round_trip = np.sum((forward_there + backward) ** 2, axis=2)
    lengths = np.sum(forward_there ** 2, axis=2) + np.sum(backward ** 2, axis=2)
    occluded = round_trip > OCCLUSION_RELATIVE * lengths + OCCLUSION_ABSOLUTE
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    gradient = du_x ** 2 + du_y ** 2 + dv_x ** 2 + dv_y ** 2
    boundary = gradient > BOUNDARY_RELATIVE * np.sum(backward ** 2, axis=2) + BOUNDARY_ABSOLUTE
    return (~(occluded | boundary | outside(backward))).astype(np.float32)


@dataclass(frozen=True)
class FramePair:
    """How frame t follows frame t-1, at the result's size."""

    backward: np.ndarray    # H×W×2 float32: flow frame t → frame t-1 (warps t-1 onto t)
    mask: np.ndarray        # H×W float32: 1 where frame t-1 warped is trusted (consistency)
    change: float           # mean |frame t − warped frame t-1|, RGB in [0,1]
    consistent: float       # fraction of pixels with mask 1
    cut: bool               # frame t starts a new shot: it must not start from frame t-1

    @property
    def size(self) -> tuple[int, int]:
        return self.backward.shape[1], self.backward.shape[0]


def frame_pair(previous: np.ndarray, current: np.ndarray) -> FramePair:
    """Flow both ways between two frames of the same size, the mask, and the scene-cut test."""
    forward = compute_flow(previous, current)
    backward = compute_flow(current, previous)
    mask = consistency_mask(forward, backward)
    change = float(np.mean(np.abs(current - warp(previous, backward))))
    consistent = float(mask.mean())
    return FramePair(backward=backward, mask=mask, change=change, consistent=consistent,
                     cut=change > CUT_CHANGE)


def save_pair(pair: FramePair, path: Path) -> None:
    """Write a pair's flow file atomically (float16 flow, uint8 mask: ~10 bytes a pixel)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, backward=pair.backward.astype(np.float16),
                            mask=(pair.mask > 0.5).astype(np.uint8),
                            stats=np.array([pair.change, pair.consistent, pair.cut], np.float64))


def load_pair(path: Path) -> FramePair:
    with np.load(path) as data:
        change, consistent, cut = data["stats"]
        return FramePair(backward=data["backward"].astype(np.float32),
                         mask=data["mask"].astype(np.float32), change=float(change),
                         consistent=float(consistent), cut=bool(cut))


def read_cut(path: Path) -> bool:
    """Whether a flow file marks a scene cut, without decoding its flow."""
    with np.load(path) as data:
        return bool(data["stats"][2])


# -- the scheduler side: flow files computed while the workers optimize -------------------------
@dataclass(frozen=True)
class FlowJob:
    """One flow file to make: frames t-1 and t (extracted PNGs) at the result's size."""

    previous: Path
    current: Path
    size: tuple[int, int]   # (w, h) of the stylized frames
    path: Path              # the flow file
    max_pixels: int


def load_frame(path: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    image = images.load_image(path, max_pixels)
    return image if image.shape[1::-1] == tuple(size) else images.resize(image, size)


def make_flow_file(job: FlowJob) -> bool:
    """Compute and write a flow file unless it is there already; return whether it marks a cut."""
    if job.path.exists():
        return read_cut(job.path)
    pair = frame_pair(load_frame(job.previous, job.size, job.max_pixels),
                      load_frame(job.current, job.size, job.max_pixels))
    save_pair(pair, job.path)
    return pair.cut


def remove_stale_flows(flow_dir: Path) -> None:
    """Flow folders beside `flow_dir` made for another size or flow version."""
    if not flow_dir.parent.is_dir():
        return
    for folder in flow_dir.parent.glob("flow-*"):
        if folder.is_dir() and folder != flow_dir:
            shutil.rmtree(folder, ignore_errors=True)


class FlowFiles:
    """Flow files computed by a few threads of the orchestrator (OpenCV releases the GIL) while
    the workers optimize; a unit that needs one is submitted once it exists (gate()).

    `jobs` in the order they are wanted (each chain's next frame first). A file already on disk
    costs a read of its cut flag. Use as a context manager: leaving it stops the threads.
    """

    def __init__(self, jobs: Iterable[FlowJob], threads: int = FLOW_THREADS):
        self._jobs = {job.path: job for job in jobs}
        self._futures: dict[Path, cf.Future] = {}
        self._pool: cf.ThreadPoolExecutor | None = None
        self._threads = threads
        self._lock = threading.Lock()

    def __enter__(self) -> FlowFiles:
        if self._jobs:
            import cv2

            # Our threads are the parallelism; OpenCV's own would fight the workers for cores.
            cv2.setNumThreads(1)
            self._pool = cf.ThreadPoolExecutor(self._threads, thread_name_prefix="flow")
            for path in self._jobs:
                self.future(path)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def future(self, path: Path) -> cf.Future:
        """The computation of flow file `path` (started now if it was not queued)."""
        with self._lock:
            if path not in self._futures:
                if self._pool is None:
                    raise KeyError(f"no flow job for {path}")
                self._futures[path] = self._pool.submit(make_flow_file, self._jobs[path])
            return self._futures[path]

    def wait_all(self) -> None:
        cf.wait(list(self._futures.values()))


# -- how steady a stylized video is -------------------------------------------------------------
def coherence(frames: Iterable[tuple[np.ndarray, np.ndarray, FramePair | None]]
              ) -> dict[str, float]:
    """Flicker and warping error of a stylized clip against its input, streaming.

    `frames`: (stylized frame, input frame, pair relating it to the frame before; None for the
    first) in order, all at one size. Transitions at scene cuts are left out. flicker: mean
    |S_t − S_t-1| over the same for the input (1.0: as steady as the input). warp_error: Ruder
    et al.'s temporal error, the mean over t of the mean squared difference between S_t and
    S_t-1 warped along the flow, on consistent pixels; input_warp_error: the same for the input,
    what the flow itself leaves.
    """
    moved, input_moved, errors, input_errors, cuts = [], [], [], [], 0
    before = None
    for stylized, content, pair in frames:
        if before is not None and pair is not None and pair.cut:
            cuts += 1
        elif before is not None and pair is not None:
            old_stylized, old_content = before
            moved.append(float(np.mean(np.abs(stylized - old_stylized))))
            input_moved.append(float(np.mean(np.abs(content - old_content))))
            weight = pair.mask[..., None]
            kept = max(float(weight.sum()) * 3, 1.0)
            errors.append(float(np.sum(weight * (stylized - warp(old_stylized, pair.backward))
                                       ** 2)) / kept)
            input_errors.append(float(np.sum(weight * (content - warp(old_content, pair.backward))
                                             ** 2)) / kept)
        before = (stylized, content)
    if not moved:
        return {}
    input_change = float(np.mean(input_moved))
    return {"flicker": float(np.mean(moved)) / input_change if input_change > 0 else float("inf"),
            "change": float(np.mean(moved)), "input_change": input_change,
            "warp_error": float(np.mean(errors)), "input_warp_error": float(np.mean(input_errors)),
            "transitions": len(moved), "cuts": cuts}
