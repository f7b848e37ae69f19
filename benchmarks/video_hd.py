"""HD video frames (docs/video.md, "HD frames"): how a warm-started frame is made above
base_size, compared at a small size, and a 720p clip with the defaults: seconds per frame and the
run's peak memory.

Parts:
- `levels`: one clip at --size with --base-size, three ways of making a warm frame: at its size
  alone (before HD frames), coarse to fine from the draft upsampled, and coarse to fine keeping
  the previous frame's detail (the default); flicker, warping error, the objective, s/frame.
- `hd`: a --hd-size clip (1280: 720p) with the default settings bar `size`, --frames frames, run
  as a run does in a fresh process (one CPU worker, in-process): s/frame, levels and tiles, and
  the process's peak RSS (an upper bound on the worker's: the run's own bookkeeping and the flow
  threads are in it too).

The clips are made here, deterministically, as image sequences: a still photo "filmed
hand-held" (a small smooth random translation, rotation and zoom per frame, resampled from a
larger crop), or --video.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
argv_given: list[str] | None = None  # main()'s arguments, handed to the hd part's process
# How a warm frame is made: Stylizer.stylize's options for it (the worker's are "detail").
WAYS = {
    "at-size": {"coarse": False, "detail": False},     # before HD frames: its size alone
    "upsampled": {"coarse": True, "detail": False},    # levels; a finer level from the draft
    "detail": {"coarse": True, "detail": True},        # levels keeping the previous detail
}


def handheld(photo: Path, out: Path, frames: int, size: tuple[int, int], seed: int = 0) -> Path:
    """`frames` PNG frames (shot_0001.png …) of `photo` as a hand-held camera sees it: a smooth
    random drift of a few px a frame, ±1° of roll and ±2% of zoom, from a crop 85% of the photo."""
    import cv2

    from batch_style.media import images

    rng = np.random.default_rng(seed)
    picture = images.load_image(photo, 10**9)
    ph, pw = picture.shape[:2]
    w, h = size
    scale = 0.85 * min(pw / w, ph / h)  # photo px per frame px
    t = np.arange(frames, dtype=np.float64)

    def wobble(amplitude: float) -> np.ndarray:  # a sum of slow sines: smooth, not periodic
        return sum(amplitude / k * np.sin(2 * np.pi * t / rng.uniform(20, 60) * k
                                          + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3))

    dx, dy = wobble(0.04 * pw), wobble(0.03 * ph)
    roll, zoom = wobble(1.0), 1 + wobble(0.02)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        # frame px → photo px: about the photo's centre, drifted, rolled and zoomed
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(roll[i]), 1.0 / (scale * zoom[i]))
        m = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        m[:, 2] += [pw / 2 + dx[i] - w / 2 * m[0, 0] - h / 2 * m[0, 1],
                    ph / 2 + dy[i] - w / 2 * m[1, 0] - h / 2 * m[1, 1]]
        frame = cv2.warpAffine(picture, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
        images.save_image(np.clip(frame, 0, 1), out / f"shot_{i + 1:04d}.png")
    return out


def _force(way: dict):
    """Stylizer.stylize made to treat warm frames (those given `steps`) as `way` says."""
    from batch_style.engine.stylizer import Stylizer

    original = Stylizer.stylize

    def stylize(self, content, styles, settings, **options):
        if options.get("steps") is not None:
            options["coarse"] = way["coarse"]
            if not way["detail"]:
                options["detail"] = None
        return original(self, content, styles, settings, **options)

    Stylizer.stylize = stylize
    return lambda: setattr(Stylizer, "stylize", original)


def run_job(folder: Path, video: str, style: str, settings: dict, frames: int, fps: float,
            weights: str | None, tiny: bool) -> dict:
    """One video job in this process (one in-process CPU worker): its ledger's per-frame
    seconds, steps, and the video's metrics."""
    from batch_style import orchestrator as runner
    from batch_style.pipeline.plan import make_plan
    from batch_style.pipeline.read import manifest
    from batch_style.pipeline.state import ledger

    video, style = str(Path(video).resolve()), str(Path(style).resolve())
    job = {"name": "clip", "video": video, "style": style, "end": frames / fps,
           "outputs": ["mp4", "frames"], "settings": settings}
    if Path(video).is_dir():  # a sequence: fps is its rate
        job["fps"] = fps
    else:
        from batch_style.media.video import probe_video

        job["end"] = frames / probe_video(Path(video)).fps
    path = folder / "manifest.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "output": "out", "jobs": [job]}))
    started = time.perf_counter()
    summary = runner.run([path], runner.RunOptions(workers=0, device="cpu", weights=weights,
                                                   tiny=tiny, force=True))
    wall = time.perf_counter() - started
    if summary.exit_code != 0:
        raise SystemExit(f"bench run failed: {summary.failed or summary.stopped}")
    (vp,) = make_plan(manifest.load(path)).videos
    latest = ledger.Ledger.for_output(folder / "out").latest()
    records = [latest[u.key] for u in vp.units]
    return {"seconds": [r["seconds"] for r in records], "steps": [r["steps"] for r in records],
            "metrics": latest[vp.key]["metrics"], "wall": wall,
            "outputs": [str(u.output) for u in vp.units], "mp4": str(vp.outputs["mp4"]),
            "contents": [str(u.content) for u in vp.units]}


def levels_part(args, work: Path) -> str:
    from batch_style.engine.painter import Painter
    from batch_style.media import images
    from batch_style.settings import resolve

    video = args.video or str(handheld(Path(args.photo), work / "clip", args.frames,
                                       _size(args.size)))
    settings = {"size": args.size, "base_size": args.base_size, "steps": args.steps,
                "frame_steps": args.frame_steps}
    reference = resolve(settings)
    rows = []
    for name in args.ways:
        restore = _force(WAYS[name])
        try:
            got = run_job(work / name, video, args.style, settings, args.frames, args.fps,
                          args.weights, args.tiny)
        finally:
            restore()
        rows.append((name, got))
        print(f"  {name}: {got['wall']:.0f} s, flicker {got['metrics']['flicker']:.2f}",
              file=sys.stderr)
    stylizer = Painter(args.weights, tiny=args.tiny).stylizer(reference)
    style = images.load_image(Path(args.style), 10**9)

    def objective(got, longest: int) -> list[float]:
        """Each frame's objective with the result at `longest` px (base_size: the look)."""
        values = []
        for o, c in zip(got["outputs"], got["contents"]):
            image = images.load_image(Path(o), 10**9)
            image = images.resize(image, images.fit_size(*image.shape[1::-1], longest))
            values.append(stylizer.evaluate(image, images.load_image(Path(c), 10**9), [style],
                                            reference, style_keys=["style"]).total)
        return values

    full = {name: objective(got, args.size) for name, got in rows}
    look = {name: objective(got, args.base_size) for name, got in rows}
    first = rows[0][0]

    def versus(values: dict, name: str) -> str:
        ratios = [a / b for a, b in zip(values[name][1:], values[first][1:])]
        return f"{np.mean(ratios):.3f} ({max(ratios):.3f})"

    head = ["warm frames", "steps per frame", "flicker (1.0 = input)", "warping error",
            f"objective vs {first}, later frames: mean (worst)", "the same at base_size",
            "objective, last frame ÷ first", "s/frame after the first (median)", "first frame s"]
    lines = [head, ["---"] * len(head)]
    for name, got in rows:
        m = got["metrics"]
        lines.append([name, f"{got['steps'][0]}, then {round(float(np.median(got['steps'][1:])))}",
                      f"{m['flicker']:.2f}", f"{m['warp_error']:.2e}", versus(full, name),
                      versus(look, name), f"{full[name][-1] / full[name][0]:.2f}",
                      f"{np.median(got['seconds'][1:]):.1f}", f"{got['seconds'][0]:.1f}"])
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(got["mp4"], out.with_name(f"{out.stem}-{name}.mp4"))
    clip = Path(args.video).name if args.video else f"{Path(args.photo).name} filmed hand-held"
    return (f"## Warm frames above base_size\n\n{clip}, {args.frames} frames at {args.size} px, "
            f"base_size {args.base_size}, {args.steps} then {args.frame_steps} steps; style "
            f"{Path(args.style).name}\n\n" + _table(lines))


def hd_run(args, work: Path) -> dict:
    """The `hd` part's run (in its own process but with --tiny): its figures and peak RSS."""
    video = args.video or str(handheld(Path(args.photo), work / "clip", args.hd_frames,
                                       _size(args.hd_size)))
    settings = {"size": args.hd_size, **({"steps": args.steps} if args.hd_steps else {}),
                **({"frame_steps": args.frame_steps} if args.hd_steps else {})}
    levels: list[list[list]] = []  # per frame, per level: [w, h, steps, seconds]
    restore = _timed(levels)
    try:
        got = run_job(work / "run", video, args.style, settings, args.hd_frames, args.fps,
                      args.weights, args.tiny)
    finally:
        restore()
    return {**got, "levels": levels,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10}


def _timed(levels: list):
    """Stylizer.stylize made to note each level's size, steps and seconds in `levels`."""
    from batch_style.engine.stylizer import Stylizer

    original = Stylizer.stylize

    def stylize(self, content, styles, settings, **options):
        given, frame = options.get("callback"), []

        def callback(event):
            if not frame or frame[-1][4] != event.scale:
                frame.append([*event.size, 0, 0.0, event.scale])
            frame[-1][2] = event.step
            frame[-1][3] = event.elapsed - sum(level[3] for level in frame[:-1])
            if given is not None:
                given(event)

        result = original(self, content, styles, settings, **{**options, "callback": callback})
        levels.append([level[:4] for level in frame])
        return result

    Stylizer.stylize = stylize
    return lambda: setattr(Stylizer, "stylize", original)


def hd_part(args, work: Path) -> str:
    from batch_style.engine import schedule
    from batch_style.engine.model import VGG19_WIDTHS
    from batch_style.pipeline.workers import memory
    from batch_style.settings import resolve

    (work / "hd").mkdir(parents=True, exist_ok=True)
    if args.tiny:  # tests: the tiny network, in this process
        got = hd_run(args, work / "hd")
    else:  # a fresh process: its own peak memory
        command = [sys.executable, "-m", "benchmarks.video_hd", "--child", str(work / "hd"),
                   *(argv_given or [])]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the hd run failed:\n{done.stderr[-2000:]}")
        got = json.loads(done.stdout.strip().splitlines()[-1])
    settings = resolve({"size": args.hd_size})
    budget = memory.budget_bytes(settings)
    w, h = _size(args.hd_size)
    layers = settings.content_layers + settings.style_layers
    planned = [schedule.plan(level, settings, layers, budget, widths=VGG19_WIDTHS)
               for level in schedule.levels(w, h, settings, 16, settings.frame_steps)]
    plan = ", ".join(f"{lv.size[0]}×{lv.size[1]} " + (f"in tiles of {lv.tile}" if lv.tile
                                                       else "whole") for lv in planned)
    clip = Path(args.video).name if args.video else f"{Path(args.photo).name} filmed hand-held"
    steps = (f"{args.steps} then {args.frame_steps} steps" if args.hd_steps
             else "the default steps")
    rows = [["frame", "steps", "seconds", "per level: size, steps, s/step"], ["---"] * 4]
    rows += [[str(i), str(n), f"{t:.0f}", "; ".join(f"{w}×{h}: {k}, {sec / max(k, 1):.1f}"
                                                    for w, h, k, sec in frame)]
             for i, (n, t, frame) in enumerate(zip(got["steps"], got["seconds"], got["levels"]))]
    return (f"## {w}×{h} frames\n\n{clip}, {len(got['seconds'])} frames at {args.hd_size} px, "
            f"the defaults otherwise ({steps}); style {Path(args.style).name}; one CPU worker, "
            f"memory budget {budget >> 20} MB: levels {plan} (the planner's choice without "
            f"Winograd)\n\n{_table(rows)}\n\nPeak RSS of the run's process: "
            f"**{got['peak_rss'] / 2**30:.2f} GiB**; wall {got['wall']:.0f} s; flicker "
            f"{got['metrics'].get('flicker', float('nan')):.2f}")


def _size(longest: int) -> tuple[int, int]:
    return longest, round(longest * 9 / 16)


def _table(rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main(argv: list[str] | None = None) -> int:
    from batch_style.atomic import atomic_write_text

    parser = argparse.ArgumentParser(prog="python -m benchmarks.video_hd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--parts", nargs="+", default=["levels", "hd"], choices=["levels", "hd"])
    add("--photo", default=str(SAMPLES / "photos" / "tubingen.jpg"),
        help="the still photo a clip is filmed from")
    add("--video", default=None, help="a clip (video file or sequence) instead of the photo's")
    add("--style", default=str(SAMPLES / "paintings" / "starry-night.jpg"))
    add("--frames", type=int, default=12, help="frames of each clip")
    add("--fps", type=float, default=24.0)
    add("--size", type=int, default=320, help="levels part: longest side, px")
    add("--base-size", type=int, default=128, help="levels part: base_size, px")
    add("--steps", type=int, default=150, help="first frame's steps (hd: with --hd-steps)")
    add("--frame-steps", type=int, default=50, help="later frames' steps (hd: with --hd-steps)")
    add("--ways", nargs="+", default=list(WAYS), choices=list(WAYS),
        help="levels part: how warm frames are made; the first is the reference")
    add("--hd-size", type=int, default=1280, help="hd part: longest side, px (1280: 720p)")
    add("--hd-frames", type=int, default=3, help="hd part: frames of its clip")
    add("--hd-steps", action="store_true", help="hd part: --steps/--frame-steps, not the "
                                                "defaults")
    add("--out", default="bench-results/video-hd.md", help="tables (markdown)")
    add("--weights", default=None, help="VGG19 weights file")
    add("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    add("--child", default=None, help=argparse.SUPPRESS)  # the hd part's own process
    global argv_given
    argv_given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.child:  # the hd part's process: its figures as JSON on the last line
        print(json.dumps(hd_run(args, Path(args.child))))
        return 0
    from benchmarks.bench import machine

    out = Path(args.out)
    started = time.strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="bench-video-hd-"))
    try:
        parts = [{"levels": levels_part, "hd": hd_part}[p](args, work) for p in args.parts]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = f"# batch-style HD video bench ({started})\n\nMachine: {machine()}\n\n" + \
        "\n\n".join(p for p in parts if p) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
