"""`make bench` (video): independent frames against the coherent mode on one clip, side by side."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@dataclass(frozen=True)
class Mode:
    """One way of stylizing the clip: its settings over the bench's, and how many workers."""

    settings: dict
    label: str                   # in the side-by-side video
    workers: int = 1
    overlap: int | None = None   # chunk lead-in frames (plan.CHUNK_OVERLAP) when workers > 1


def modes(steps: int, frame_steps: int, temporal_weight: float | None) -> dict[str, Mode]:
    coherent = {"warm_start": True, "frame_steps": frame_steps,
                **({} if temporal_weight is None else {"temporal_weight": temporal_weight})}
    return {
        # The comparison baseline: every frame on its own, with the full budget.
        "independent": Mode({"warm_start": False, "temporal_weight": 0.0}, "independent"),
        # The default for video: warm start along the flow and the temporal term.
        "coherent": Mode(coherent, "coherent"),
        # Two workers: two chunks, with and without the lead-in hand-over at the border.
        "coherent-2-chunks": Mode(coherent, "2 chunks", workers=2),
        "coherent-2-chunks-no-overlap": Mode(coherent, "abutting chunks", workers=2,
                                             overlap=0),
    }


@dataclass(frozen=True)
class Outcome:
    mode: str
    label: str
    frames: int
    flicker: float              # mean |S_t - S_t-1| / the input's (flow.coherence)
    warp_error: float           # Ruder et al.'s, on consistent pixels
    input_warp_error: float
    objective: tuple[float, ...]    # per frame, without the temporal term, evaluated afresh
    seconds: tuple[float, ...]      # per frame, as the workers measured (the first loads VGG19)
    steps: tuple[int, ...]
    wall: float                 # the whole run, s
    border_jump: float | None   # largest change near a chunk border over the median elsewhere
    long_term: dict             # benchmarks/video_long.py: warping error at k = 1, 10, 30, detail
    outputs: tuple[Path, ...]   # stylized frames, in order
    contents: tuple[Path, ...]  # extracted input frames
    mp4: Path


def run_mode(name: str, mode: Mode, args, work: Path, fps: float) -> Outcome:
    from batch_style import orchestrator as runner
    from batch_style.media import flow
    from batch_style.pipeline import plan as planning
    from batch_style.pipeline.read import manifest
    from batch_style.pipeline.state import ledger
    from benchmarks import video_long

    folder = work / name
    settings = {"size": args.size, "steps": args.steps, **mode.settings}
    job = {"name": "clip", "video": str(Path(args.video).resolve()),
           "style": str(Path(args.style).resolve()), "end": args.frames / fps,
           "outputs": ["mp4", "frames"], "settings": settings}
    path = folder / "manifest.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "output": "out", "jobs": [job]}))
    saved_overlap = planning.CHUNK_OVERLAP
    if mode.overlap is not None:
        planning.CHUNK_OVERLAP = mode.overlap  # the plan is made in this process
    try:
        started = time.perf_counter()
        summary = runner.run([path], runner.RunOptions(workers=mode.workers, device="cpu",
                                                       weights=args.weights, tiny=args.tiny,
                                                       force=True))
        wall = time.perf_counter() - started
        (vp,) = planning.make_plan(manifest.load(path), chains=mode.workers).videos
    finally:
        planning.CHUNK_OVERLAP = saved_overlap
    if summary.exit_code != 0:
        raise SystemExit(f"bench mode {name} failed: {summary.failed or summary.stopped}")
    latest = ledger.Ledger.for_output(folder / "out").latest()
    records = [latest[u.key] for u in vp.units]
    metrics = latest[vp.key]["metrics"]
    frames = [flow.load_frame(u.output, vp.size, 10**9) for u in vp.units]
    contents = [flow.load_frame(u.content, vp.size, 10**9) for u in vp.units]
    # Transition t is frame t-1 → t. Near a chunk border (its hand-over, or the border itself
    # when chunks abut) the largest change, against the typical change elsewhere: 1.0 is a
    # border nobody can find, 2 or more a visible pop.
    changes = {t: float(np.mean(np.abs(frames[t] - frames[t - 1]))) for t in range(1, len(frames))}
    near = {t for c in vp.chunks[1:] for t in range(c.lead, c.start + 1)}
    jump = None
    if near:
        elsewhere = [v for t, v in changes.items() if t not in near]
        jump = max(changes[t] for t in near) / float(np.median(elsewhere))
    return Outcome(mode=name, label=mode.label, frames=len(vp.units), flicker=metrics["flicker"],
                   warp_error=metrics["warp_error"], input_warp_error=metrics["input_warp_error"],
                   objective=(), seconds=tuple(r["seconds"] for r in records),
                   steps=tuple(r["steps"] for r in records), wall=wall, border_jump=jump,
                   long_term=video_long.clip_figures(frames, contents),
                   outputs=tuple(u.output for u in vp.units),
                   contents=tuple(u.content for u in vp.units), mp4=vp.outputs["mp4"])


def objectives(outcomes: list[Outcome], args) -> list[Outcome]:
    """The objective (docs/design.md) of every stylized frame (no temporal term), in float32, afresh."""
    import dataclasses

    from batch_style.engine.painter import Painter
    from batch_style.media import images
    from batch_style.settings import resolve

    reference = resolve({"size": args.size})
    stylizer = Painter(args.weights, tiny=args.tiny).stylizer(reference)
    style = images.load_image(Path(args.style), reference.max_pixels)
    done = []
    for o in outcomes:
        values = tuple(stylizer.evaluate(images.load_image(out, reference.max_pixels),
                                         images.load_image(content, reference.max_pixels),
                                         [style], reference, style_keys=["style"]).total
                       for out, content in zip(o.outputs, o.contents))
        done.append(dataclasses.replace(o, objective=values))
    return done


def side_by_side(outcomes: list[Outcome], path: Path, fps: float) -> None:
    """One MP4: the input, then each mode, left to right, each labelled."""
    from PIL import Image, ImageDraw

    from batch_style.media import encode, images

    def labelled(image: np.ndarray, text: str) -> np.ndarray:
        """The frame under a black strip with its label."""
        strip = Image.new("RGB", (image.shape[1], 14))
        ImageDraw.Draw(strip).text((3, 1), text, fill=(255, 255, 255))
        return np.concatenate([np.asarray(strip), images.to_uint8(image)], axis=0)

    first = outcomes[0]

    def frames():
        for t in range(first.frames):
            ref = images.load_image(first.outputs[t], 10**9)
            size = ref.shape[1::-1]
            panels = [labelled(images.resize(images.load_image(first.contents[t], 10**9), size),
                               "input")]
            panels += [labelled(images.resize(images.load_image(o.outputs[t], 10**9), size),
                                o.label) for o in outcomes]
            yield np.concatenate(panels, axis=1)

    encode.write_mp4(frames(), path, fps)


def table(outcomes: list[Outcome], steps: int) -> str:
    base = outcomes[0]
    head = ["mode", "steps per frame", "flicker (1.0 = input)", "warping error",
            "objective, mean per frame", "objective vs independent, mean (worst frame)",
            "s/frame after the first (median)", "first frame s", "wall s",
            "chunk border jump", "warping error k = 1, 10, 30 (× input's)",
            "detail, last 10 frames / first 10"]
    rows = [head, ["---"] * len(head)]
    for o in outcomes:
        ratios = [a / b for a, b in zip(o.objective, base.objective)]
        later = o.steps[1:] or o.steps
        budget = (f"{o.steps[0]}, then {round(float(np.mean(later)))}"
                  if len(set(o.steps)) > 1 else str(o.steps[0]))
        rows.append([o.mode, budget, f"{o.flicker:.2f}", f"{o.warp_error:.2e}",
                     f"{np.mean(o.objective):.4g}",
                     f"{np.mean(ratios):.3f} ({max(ratios):.3f})",
                     f"{np.median(o.seconds[1:] or o.seconds):.2f}", f"{o.seconds[0]:.1f}",
                     f"{o.wall:.0f}",
                     "—" if o.border_jump is None else f"{o.border_jump:.2f}×",
                     ", ".join(f"{o.long_term['warp'][k]['ratio']:.2f}"
                               for k in ("1", "10", "30") if k in o.long_term["warp"]),
                     f"{o.long_term['detail_ratio']:.2f} (input "
                     f"{o.long_term['input_detail_ratio']:.2f})"])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main(argv: list[str] | None = None) -> int:
    from batch_style.atomic import atomic_write_text
    from benchmarks.bench import machine

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_video", description=__doc__)
    parser.add_argument("--video", default=str(SAMPLES / "clips" / "realshort.mp4"))
    parser.add_argument("--style", default=str(SAMPLES / "paintings" / "starry-night.jpg"))
    parser.add_argument("--size", type=int, default=128, help="longest side, px")
    parser.add_argument("--frames", type=int, default=16, help="the clip's first N frames")
    parser.add_argument("--steps", type=int, default=90, help="steps of independent frames, "
                        "and of the first frame of the coherent mode")
    parser.add_argument("--frame-steps", type=int, default=30,
                        help="steps of the coherent mode's later frames")
    parser.add_argument("--temporal-weight", type=float, default=None,
                        help="coherent mode's temporal_weight (default: the setting's default)")
    parser.add_argument("--chunks", action="store_true",
                        help="also two workers on the clip, with and without the chunk hand-over")
    parser.add_argument("--overlap", type=int, default=None,
                        help="lead-in frames of a chunk with --chunks (default plan.CHUNK_OVERLAP; "
                             "lower it for short clips)")
    parser.add_argument("--out", default="bench-results/bench-video.md", help="table (markdown)")
    parser.add_argument("--weights", default=None, help="VGG19 weights file")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only
    args = parser.parse_args(argv)

    from batch_style.media import video

    info = video.probe_video(Path(args.video))
    all_modes = modes(args.steps, args.frame_steps, args.temporal_weight)
    chosen = ["independent", "coherent"] + (
        ["coherent-2-chunks", "coherent-2-chunks-no-overlap"] if args.chunks else [])
    out = Path(args.out)
    started = time.strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="bench-video-", dir=out.parent if out.parent.is_dir()
                                 else None))
    try:
        outcomes = []
        for name in chosen:
            mode = all_modes[name]
            if name.startswith("coherent-2-chunks") and mode.overlap is None and args.overlap:
                mode = Mode(mode.settings, mode.label, mode.workers, args.overlap)
            outcomes.append(run_mode(name, mode, args, work, info.fps))
            o = outcomes[-1]
            print(f"  {name}: {o.wall:.0f} s, flicker {o.flicker:.2f}", file=sys.stderr)
        outcomes = objectives(outcomes, args)
        out.parent.mkdir(parents=True, exist_ok=True)
        side_by_side(outcomes, out.with_suffix(".mp4"), info.fps)
        for o in outcomes:
            shutil.copyfile(o.mp4, out.with_name(f"{out.stem}-{o.mode}.mp4"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from batch_style.settings import Settings

    weight = args.temporal_weight if args.temporal_weight is not None else \
        Settings().temporal_weight
    text = (f"# batch-style video bench ({started})\n\nMachine: {machine()}\n"
            f"Clip: {Path(args.video).name}, first {outcomes[0].frames} frames at {args.size} px; "
            f"style {Path(args.style).name}; L-BFGS, default weights; coherent mode: warm start "
            f"along the flow, temporal_weight {weight:g}. Objective: docs/design.md's (no temporal "
            f"term), evaluated in float32 on each final frame. Seconds as each worker measured "
            f"its frames (other work on the machine slows them all alike within one run). Chunk "
            f"border jump: the largest change between consecutive frames near a chunk border (its "
            f"hand-over) over the median change elsewhere; 1.0: no border to see. Warping error "
            f"at k: between stylized frames t−k and t over the input's own, flow computed "
            f"directly between them, consistent pixels only (benchmarks/video_long.py). Detail: "
            f"mean neighbour difference.\n"
            f"Side by side: {out.with_suffix('.mp4').name} (input | "
            + " | ".join(o.mode for o in outcomes) + ").\n\n" + table(outcomes, args.steps) + "\n")
    print(text)
    atomic_write_text(out, text)
    print(f"written to {out} and {out.with_suffix('.mp4')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
