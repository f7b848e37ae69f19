"""Looped videos (`loop: true`): clips whose camera returns to where it started, generated from the
sample photos, stylized without and with the closing pass; the seam (last frame → first) against
the median change between consecutive frames. The numbers go into docs/video.md ("Loops").

    python -m benchmarks.loop --photos tubingen --size 128 --frames 24   # tune on one clip
    python -m benchmarks.loop --photos golden_gate,realshort              # report the others
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PHOTOS = {"tubingen": SAMPLES / "photos" / "tubingen.jpg",
          "golden_gate": SAMPLES / "photos" / "golden_gate.jpg",
          "realshort": SAMPLES / "clips" / "realshort.mp4"}   # its first frame, as a still
CLIP_SIZE = (256, 192)   # (w, h) of the generated clip; the job's `size` scales it down
FPS = 24.0


def _still(name: str) -> np.ndarray:
    from batch_style.media import images

    path = PHOTOS[name]
    return _first_frame(path) if path.suffix == ".mp4" else images.load_image(path, 10**8)


def _first_frame(path: Path) -> np.ndarray:
    from batch_style.media import video

    for _, _, frame in video.iter_frames(path):
        frame = np.asarray(frame)
        return frame.astype(np.float32) / (255.0 if frame.dtype == np.uint8 else 1.0)
    raise SystemExit(f"{path}: no frames")


def loop_clip(name: str, frames: int, path: Path, motion: float = 1.0, seed: int = 0) -> Path:
    """A still photo "filmed hand-held" along a closed path: a drift round an ellipse with a
    little rotation and zoom, plus a jitter of higher harmonics, all scaled by `motion`; every
    motion is periodic in `frames`, so frame `frames` would be frame 0 again: the clip loops."""
    from PIL import Image

    from batch_style.media import encode, images

    photo = _still(name)
    w, h = CLIP_SIZE
    # The photo at twice the clip's height, so the path and the zoom stay inside it.
    scale = 2.0 * h / photo.shape[0]
    big = images.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)))
    source = Image.fromarray(images.to_uint8(big))
    rng = np.random.default_rng(seed)
    jitter = [(k, motion * rng.normal(0, 1.2 / k, 2), rng.uniform(0, 2 * np.pi, 2))
              for k in range(2, 6)]
    cx, cy = big.shape[1] / 2, big.shape[0] / 2
    out = []
    for t in range(frames):
        theta = 2 * np.pi * t / frames
        # A wide drift: most of the view is new half-way round, as in a hand-held orbit.
        dx = motion * 0.25 * w * np.sin(theta) + sum(a[0] * np.sin(k * theta + p[0]) for k, a, p in jitter)
        dy = motion * 0.12 * h * np.sin(theta + 1.0) + sum(a[1] * np.sin(k * theta + p[1])
                                                   for k, a, p in jitter)
        angle = np.deg2rad(motion * 3.0 * np.sin(theta + 0.5))
        zoom = 1.0 + motion * 0.08 * np.sin(theta + 2.0)
        # Output pixel (u, v) → source pixel: rotate and zoom about the frame's centre.
        c, s = np.cos(angle) / zoom, np.sin(angle) / zoom
        ox, oy = cx + dx - (c * w / 2 - s * h / 2), cy + dy - (s * w / 2 + c * h / 2)
        frame = source.transform((w, h), Image.Transform.AFFINE, (c, -s, ox, s, c, oy),
                                 resample=Image.Resampling.BICUBIC)
        out.append(np.asarray(frame, np.float32) / 255.0)
    encode.write_mp4(out, path, FPS)
    return path


@dataclass
class Outcome:
    clip: str
    mode: str
    seam: float           # |S_0 − S_N-1| over the median |S_t − S_t-1|
    largest: float        # the largest consecutive change over that median (where it is worst)
    flicker: float
    steps: tuple[int, ...]   # frames after the first, as shown
    seconds: float        # this mode's run, wall


def jumps(paths: list[Path], size: tuple[int, int]) -> tuple[float, float]:
    """(seam, largest consecutive change), each over the median consecutive change."""
    from batch_style.media import flow

    frames = [flow.load_frame(p, size, 10**9) for p in paths]
    changes = [float(np.mean(np.abs(b - a))) for a, b in zip(frames, frames[1:])]
    median = statistics.median(changes)
    return float(np.mean(np.abs(frames[0] - frames[-1]))) / median, max(changes) / median


def run(folder: Path, clip: Path, args, loop: bool, loop_frames: int | None = None
        ) -> tuple[object, dict, float]:
    from batch_style import orchestrator as runner
    from batch_style.pipeline import plan as planning
    from batch_style.pipeline.read import manifest
    from batch_style.pipeline.state import ledger

    settings = {"size": args.size, "steps": args.steps, "frame_steps": args.frame_steps}
    job = {"name": "clip", "video": str(clip), "style": str(Path(args.style).resolve()),
           "outputs": ["mp4", "frames"], "loop": loop, "settings": settings}
    path = folder / "manifest.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "output": "out", "jobs": [job]}))
    saved = planning.LOOP_FRAMES
    if loop_frames is not None:
        planning.LOOP_FRAMES = loop_frames  # the plan is made in this process
    try:
        started = time.perf_counter()
        summary = runner.run([path], runner.RunOptions(workers=1, device="cpu",
                                                       weights=args.weights, tiny=args.tiny))
        seconds = time.perf_counter() - started
        (vp,) = planning.make_plan(manifest.load(path)).videos
    finally:
        planning.LOOP_FRAMES = saved
    if summary.exit_code != 0:
        raise SystemExit(f"{folder}: failed: {summary.failed or summary.stopped}")
    return vp, ledger.Ledger.for_output(folder / "out").latest(), seconds


def measure(name: str, args, work: Path) -> list[Outcome]:
    clip = loop_clip(name, args.frames, work / f"{name}.mp4", args.motion)
    outcomes = []
    plain = work / name / "plain"
    vp, latest, seconds = run(plain, clip, args, loop=False)
    seam, largest = jumps([u.content for u in vp.units], vp.size)
    outcomes.append(Outcome(name, "input", seam, largest, 1.0, (), 0.0))

    def outcome(mode, vp, latest, seconds):
        seam, largest = jumps([u.output for u in vp.units], vp.size)
        later = [u for u in vp.units if not (u.key.endswith("/000000") and not u.loop)]
        return Outcome(name, mode, seam, largest, latest[vp.key]["metrics"]["flicker"],
                       tuple(latest[u.key]["steps"] for u in later), seconds)

    outcomes.append(outcome("loop: false", vp, latest, seconds))
    for k in args.loop_frames:
        # The closing pass on top of the same run: frames from k on are done already.
        folder = work / name / f"loop-{k}"
        shutil.copytree(plain, folder)
        outcomes.append(outcome(f"loop: true, {k} frames", *run(folder, clip, args, True, k)))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    head = ["clip", "mode", "seam / median change", "largest change / median", "flicker",
            "steps of frames after the first: median (max)", "s (extra for the loop)"]
    rows = [head, ["---"] * len(head)]
    for o in outcomes:
        rows.append([o.clip, o.mode, f"{o.seam:.2f}×", f"{o.largest:.2f}×",
                     "—" if o.mode == "input" else f"{o.flicker:.2f}",
                     f"{statistics.median(o.steps):g} ({max(o.steps)})" if o.steps else "—",
                     f"{o.seconds:.0f}" if o.seconds else "—"])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main(argv: list[str] | None = None) -> int:
    from batch_style.atomic import atomic_write_text
    from benchmarks.bench import machine

    parser = argparse.ArgumentParser(prog="python -m benchmarks.loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="golden_gate,realshort",
                        help=f"comma-separated, of {', '.join(PHOTOS)}")
    parser.add_argument("--style", default=str(SAMPLES / "paintings" / "starry-night.jpg"))
    parser.add_argument("--size", type=int, default=128, help="longest side, px")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--motion", type=float, default=1.0,
                        help="the camera path's size: 1 a wide orbit (±25%% of the width), "
                             "0.2 a slow hand-held sway")
    parser.add_argument("--steps", type=int, default=200, help="the first frame's steps")
    parser.add_argument("--frame-steps", type=int, default=100, help="the cap of later frames")
    parser.add_argument("--loop-frames", default="4", help="closing pass lengths, comma-separated")
    parser.add_argument("--out", default="bench-results/bench-loop.md", help="table (markdown)")
    parser.add_argument("--weights", default=None, help="VGG19 weights file")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)
    args.loop_frames = [int(k) for k in args.loop_frames.split(",")]
    names = args.photos.split(",")
    unknown = set(names) - set(PHOTOS)
    if unknown:
        parser.error(f"unknown photo {sorted(unknown)[0]!r}; expected one of {', '.join(PHOTOS)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="bench-loop-", dir=out.parent)).resolve()
    try:
        outcomes = []
        for name in names:
            outcomes += measure(name, args, work)
            print(table(outcomes), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = (f"# batch-style loop bench ({started})\n\nMachine: {machine()}\n"
            f"Clips: {args.frames} frames of a hand-held path that returns to its start over each "
            f"photo (motion {args.motion:g}); style {Path(args.style).name}, {args.size} px, "
            f"steps {args.steps}, frame_steps {args.frame_steps}, every other setting its "
            f"default. Seam: the mean absolute difference from the last frame to the first, "
            f"over the median between consecutive frames (1.0: no seam to see).\n\n"
            + table(outcomes) + "\n")
    print(text)
    atomic_write_text(out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
