"""Video over the long term (docs/video.md, "Long-term consistency and drift"): generated clips
(a still photo filmed hand-held, an occluder that keeps hiding and showing a photo), the warping
error between stylized frames t−k and t at k = 1, 10, 30 over the input's own, the detail and
contrast from the first frames to the last, and the last frame's style distance (the Gram ruler
of benchmarks/masks.py) against the same frame made alone.

    python -m benchmarks.video_long --clip handheld-tubingen --frames 40 --size 128 \
        --steps 100 --frame-steps 20 --mode today=... --out bench-results/video-long.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CLIP_SIZE = (192, 144)      # generated clips' frames, px; the run resizes them to --size
FPS = 30.0
KS = (1, 10, 30)            # frame distances of the long-term warping error
EDGE = 10                   # frames at each end compared for the detail and contrast ratios
# name → (photo filmed, photo an occluder is cut from or None, seed of the camera's path)
CLIPS = {"handheld-tubingen": ("photos/tubingen.jpg", None, 1),
         "handheld-golden_gate": ("photos/golden_gate.jpg", None, 2),
         "occluder-golden_gate": ("photos/golden_gate.jpg", "photos/tubingen.jpg", 3),
         "occluder-tubingen": ("photos/tubingen.jpg", "photos/golden_gate.jpg", 4)}


# -- clips --------------------------------------------------------------------------------------
def _path(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """A smooth random walk, frames × 4 (dx, dy in px of the clip, angle in degrees, log-zoom):
    three slow sines per axis with random phases, the shake of a hand holding a camera still."""
    t = np.arange(frames, dtype=np.float64)[:, None]
    out = np.zeros((frames, 4))
    scale = np.array([amplitude, amplitude, 1.5, 0.03])
    for period in (70.0, 29.0, 11.0):
        phase = rng.uniform(0, 2 * np.pi, 4)
        out += scale * (period / 70.0) ** 0.7 * np.sin(2 * np.pi * t / period + phase)
    return out


def make_clip(name: str, frames: int, path: Path) -> Path:
    """Write clip `name` (CLIPS) of `frames` frames as an MP4, deterministically."""
    import cv2

    from batch_style.media import encode, images

    photo_name, occluder_name, seed = CLIPS[name]
    rng = np.random.default_rng(seed)
    w, h = CLIP_SIZE
    photo = images.load_image(SAMPLES / photo_name, 50_000_000)
    # The clip shows the middle ~70% of the photo, resampled from it at 1.5× the clip's scale.
    span = 0.7 * min(photo.shape[1] / w, photo.shape[0] / h)
    source = images.resize(photo, (round(photo.shape[1] * 1.5 / span),
                                   round(photo.shape[0] * 1.5 / span)))
    cx, cy = source.shape[1] / 2, source.shape[0] / 2
    moves = _path(rng, frames, amplitude=6.0)
    occluder = None
    if occluder_name:
        cut = images.load_image(SAMPLES / occluder_name, 50_000_000)
        occluder = images.resize(cut, (w // 2, h * 3 // 4))
        yy, xx = np.mgrid[0:occluder.shape[0], 0:occluder.shape[1]]
        ry, rx = occluder.shape[0] / 2, occluder.shape[1] / 2
        shape = (((yy - ry) / ry) ** 2 + ((xx - rx) / rx) ** 2 <= 1.0).astype(np.float32)
    shown = []
    for i, (dx, dy, angle, zoom) in enumerate(moves):
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.5 * np.exp(zoom))
        m[:, 2] += (w / 2 - cx + dx, h / 2 - cy + dy)
        frame = cv2.warpAffine(source, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        if occluder is not None:
            # Back and forth across the middle every 24 frames: the photo behind keeps being
            # hidden and shown again (half a second and a second apart at 30 fps).
            x = int(round(w / 2 + 0.55 * w * np.sin(2 * np.pi * i / 24.0) - occluder.shape[1] / 2))
            y = (h - occluder.shape[0]) // 2
            x0, x1 = max(x, 0), min(x + occluder.shape[1], w)
            if x1 > x0:
                a = shape[:, x0 - x:x1 - x, None]
                frame[y:y + occluder.shape[0], x0:x1] = (
                    a * occluder[:, x0 - x:x1 - x] + (1 - a) * frame[y:y + occluder.shape[0], x0:x1])
        shown.append(np.clip(frame, 0, 1))
    encode.write_mp4(shown, path, FPS)
    return path


# -- figures ------------------------------------------------------------------------------------
def detail(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels, 0..255."""
    x = np.asarray(image, np.float64) * 255.0
    return float((np.mean(np.abs(np.diff(x, axis=0))) + np.mean(np.abs(np.diff(x, axis=1)))) / 2)


def contrast(image: np.ndarray) -> float:
    """Pixel standard deviation, 0..255."""
    return float(np.std(np.asarray(image, np.float64) * 255.0))


def long_term_errors(stylized: list[np.ndarray], inputs: list[np.ndarray],
                     ks=KS) -> dict[int, dict[str, float]]:
    """Per k: the mean over t of the warping error between stylized frames t−k and t, the same
    for the input, and their ratio; flow computed directly between input frames t−k and t, on
    its consistent pixels only (flow.consistency_mask). Frames warped bilinearly (the ruler of
    flow.coherence); ratio_lanczos: warped with Lanczos, a ruler that does not favour blur."""
    from batch_style.media import flow

    out = {}
    for k in ks:
        if k >= len(inputs):
            continue
        errors, input_errors = {False: [], True: []}, {False: [], True: []}
        for t in range(k, len(inputs)):
            forward = flow.compute_flow(inputs[t - k], inputs[t])
            backward = flow.compute_flow(inputs[t], inputs[t - k])
            weight = flow.consistency_mask(forward, backward)[..., None]
            kept = max(float(weight.sum()) * 3, 1.0)
            for sharp in (False, True):  # bilinear warps (flow.coherence's), and Lanczos
                errors[sharp].append(float(np.sum(weight * (stylized[t] - flow.warp(
                    stylized[t - k], backward, sharp)) ** 2)) / kept)
                input_errors[sharp].append(float(np.sum(weight * (inputs[t] - flow.warp(
                    inputs[t - k], backward, sharp)) ** 2)) / kept)
        ratio = {sharp: float(np.mean(errors[sharp]) / max(np.mean(input_errors[sharp]), 1e-12))
                 for sharp in (False, True)}
        out[k] = {"error": float(np.mean(errors[False])),
                  "input_error": float(np.mean(input_errors[False])), "ratio": ratio[False],
                  "ratio_lanczos": ratio[True]}
    return out


def clip_figures(stylized: list[np.ndarray], inputs: list[np.ndarray]) -> dict:
    """Long-term warping errors, detail and contrast of a stylized clip against its input."""
    edge = min(EDGE, len(stylized) // 2)

    def ratio(f, frames):
        return float(np.mean([f(x) for x in frames[-edge:]]) / np.mean([f(x) for x in frames[:edge]]))

    return {"warp": {str(k): v for k, v in long_term_errors(stylized, inputs).items()},
            "steady_floor": steady_floor(stylized, inputs),
            "detail_ratio": ratio(detail, stylized), "input_detail_ratio": ratio(detail, inputs),
            "contrast_ratio": ratio(contrast, stylized),
            "input_contrast_ratio": ratio(contrast, inputs),
            "detail_first_last": [detail(stylized[0]), detail(stylized[-1])],
            "contrast_first_last": [contrast(stylized[0]), contrast(stylized[-1])],
            "flicker": _flicker(stylized, inputs)}


def _flicker(stylized: list[np.ndarray], inputs: list[np.ndarray]) -> float:
    return float(np.mean([np.mean(np.abs(b - a)) for a, b in zip(stylized, stylized[1:])])
                 / np.mean([np.mean(np.abs(b - a)) for a, b in zip(inputs, inputs[1:])]))


def steady_floor(stylized: list[np.ndarray], inputs: list[np.ndarray]) -> dict[str, float]:
    """What the k = 1 warping error (bilinear ruler) and the flicker would be if every frame t
    were exactly stylized frame t−1 carried along the flow with a Lanczos warp: perfectly steady
    strokes that keep their detail. The ruler's floor for a result that does not wash out."""
    from batch_style.media import flow

    errors, input_errors, changes = [], [], []
    for t in range(1, len(inputs)):
        forward = flow.compute_flow(inputs[t - 1], inputs[t])
        backward = flow.compute_flow(inputs[t], inputs[t - 1])
        weight = flow.consistency_mask(forward, backward)[..., None]
        kept = max(float(weight.sum()) * 3, 1.0)
        steady = flow.warp(stylized[t - 1], backward, True)
        for out, now, then in ((errors, steady, stylized[t - 1]), (input_errors, inputs[t], inputs[t - 1])):
            out.append(float(np.sum(weight * (now - flow.warp(then, backward)) ** 2)) / kept)
        changes.append(float(np.mean(np.abs(steady - stylized[t - 1]))))
    moves = np.mean([np.mean(np.abs(b - a)) for a, b in zip(inputs, inputs[1:])])
    return {"ratio": float(np.mean(errors) / max(np.mean(input_errors), 1e-12)),
            "flicker": float(np.mean(changes) / moves)}


def style_distance(frame: np.ndarray, style: np.ndarray, ruler) -> float:
    """The frame's Gram distance to the style on benchmarks/masks.py's ruler."""
    from batch_style.media import images
    from benchmarks.masks import gram_distance, grams

    size = images.fit_size(style.shape[1], style.shape[0], max(frame.shape[:2]))
    return gram_distance(grams(ruler, frame), grams(ruler, images.resize(style, size)))


# -- runs ---------------------------------------------------------------------------------------
def run_clip(clip: Path, style: Path, settings: dict, frames: int, folder: Path, args):
    """Stylize `clip`'s first `frames` frames with `settings` through the pipeline; (stylized
    frames, input frames, seconds)."""
    from batch_style import orchestrator as runner
    from batch_style.media import flow
    from batch_style.pipeline import plan as planning
    from batch_style.pipeline.read import manifest

    settings = dict(settings)
    patches = {k: settings.pop(k) for k in list(settings) if k.startswith("_")}
    job = {"name": "clip", "video": str(clip), "style": str(style), "end": frames / FPS,
           "outputs": ["frames"], "settings": settings}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "output": "out", "jobs": [job]}))
    started = time.perf_counter()
    # In this process (workers=0), so that a mode's "_sharp_warp" or "_anchor" can set the
    # worker's SHARP_WARP or ANCHOR (ablations, not settings).
    from batch_style.pipeline.workers import worker

    names = {"_sharp_warp": "SHARP_WARP", "_anchor": "ANCHOR", "_previous_share": "PREVIOUS_SHARE",
             "_anchor_frames": "ANCHOR_FRAMES", "_keep_detail": "KEEP_DETAIL"}
    saved = {name: getattr(worker, name) for name in names.values() if hasattr(worker, name)}
    for key, value in patches.items():
        setattr(worker, names[key], value)
    try:
        summary = runner.run([path], runner.RunOptions(workers=0, device="cpu",
                                                       weights=args.weights, tiny=args.tiny,
                                                       force=True))
    finally:
        for name, value in saved.items():
            setattr(worker, name, value)
    wall = time.perf_counter() - started
    if summary.exit_code != 0:
        raise SystemExit(f"run failed: {summary.failed or summary.stopped}")
    (vp,) = planning.make_plan(manifest.load(path)).videos
    outputs = [flow.load_frame(u.output, vp.size, 10**9) for u in vp.units]
    contents = [flow.load_frame(u.content, vp.size, 10**9) for u in vp.units]
    return outputs, contents, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.video_long", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", action="append", required=True,
                        help=f"a generated clip ({', '.join(CLIPS)}) or a video file; repeatable")
    parser.add_argument("--style", default=str(SAMPLES / "paintings" / "starry-night.jpg"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--frame-steps", type=int, default=20)
    parser.add_argument("--mode", action="append", default=[],
                        help="NAME or NAME=YAML settings over the bench's (e.g. "
                             "'short={temporal_frames: 1}'); repeatable; default: the defaults")
    parser.add_argument("--alone", action="store_true",
                        help="also the last frame made alone, and each mode's style distance")
    parser.add_argument("--out", default="bench-results/video-long.json")
    parser.add_argument("--weights", default=None, help="VGG19 weights file")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)
    from batch_style.media import images
    from benchmarks.bench import machine

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    modes = {}
    for given in args.mode or ["defaults"]:
        name, _, extra = given.partition("=")
        modes[name] = yaml.safe_load(extra) if extra else {}
    base = {"size": args.size, "steps": args.steps, "frame_steps": args.frame_steps}
    results = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "settings": base, "style": Path(args.style).name, "frames": args.frames, "clips": {}}
    style = images.load_image(Path(args.style), 50_000_000)
    ruler = None
    if args.alone:
        from batch_style.engine.weights import load_feature_model
        from benchmarks.masks import RULER

        ruler = load_feature_model(RULER, args.weights, tiny=args.tiny)
    with tempfile.TemporaryDirectory(prefix="video-long-", dir=out.parent) as tmp:
        work = Path(tmp)
        for given in args.clip:
            clip = (make_clip(given, args.frames, work / f"{given}.mp4") if given in CLIPS
                    else Path(given).resolve())
            entry = results["clips"].setdefault(given, {})
            last_input = None
            for name, extra in modes.items():
                stylized, inputs, wall = run_clip(clip, Path(args.style).resolve(),
                                                  {**base, **extra}, args.frames,
                                                  work / given / name, args)
                figures = clip_figures(stylized, inputs)
                figures |= {"settings": extra, "wall_s": round(wall, 1)}
                if ruler is not None:
                    figures["style_distance_last"] = style_distance(stylized[-1], style, ruler)
                    figures["style_distance_first"] = style_distance(stylized[0], style, ruler)
                entry[name] = figures
                last_input = inputs[-1]
                print(f"{given} {name}: {json.dumps(figures)}", file=sys.stderr, flush=True)
                out.write_text(json.dumps(results, indent=1))
            if ruler is not None and last_input is not None:
                entry["alone"] = {"style_distance_last": _alone(last_input, style, args, ruler)}
                out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


def _alone(frame: np.ndarray, style: np.ndarray, args, ruler) -> float:
    """The style distance of `frame` stylized on its own with the first frame's budget."""
    from batch_style.engine.painter import Painter
    from batch_style.settings import resolve

    settings = resolve({"size": args.size, "steps": args.steps})
    stylizer = Painter(args.weights, tiny=args.tiny).stylizer(settings)
    image = stylizer.stylize(frame, [style], settings).image
    return style_distance(image, style, ruler)


if __name__ == "__main__":
    sys.exit(main())
