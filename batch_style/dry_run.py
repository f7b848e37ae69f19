"""`run --dry-run`: what a manifest's run would do, job by job, without doing it (console.py
formats it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batch_style import orchestrator
from batch_style.engine import autotune
from batch_style.media import images
from batch_style.pipeline import plan as planning
from batch_style.pipeline.jobs import Job, Manifest
from batch_style.pipeline.state import ledger, run_folder
from batch_style.pipeline.workers import gpus
from batch_style.settings import Settings


@dataclass(frozen=True)
class JobPreview:
    """One job of a dry run."""

    name: str
    kind: str                         # image | video
    settings: Settings
    units: int
    done: int                         # already done (0 with --force)
    looped: int                       # of `units`, a looped video's closing pass (loop: true)
    size: tuple[int, int] | None      # the first picture's result, px (None: a video's frames)
    paths: tuple[Path, ...]           # the files its units write, relative to the output folder
    frames: tuple[Path, Path, int] | None  # a video's frames output: first, last, how many
    computes_with: str                # the convolution and precision (autotune.preview)
    seconds: float | None             # expected, from this machine's cached timings (None: not known)


@dataclass(frozen=True)
class RunPreview:
    manifest: Path
    output: Path
    jobs: tuple[JobPreview, ...]
    own: tuple[str, ...]              # the run's own files and folder under the output folder


def preview(manifest: Manifest, force: bool = False, *, device: str = "auto",
            tiny: bool = False) -> RunPreview:
    """What `run` would do with `manifest` on this machine: per job its units, how many are done,
    the result's size, the files it writes, how it computes and how long it should take."""
    plan = planning.make_plan(manifest)
    book = ledger.Ledger(ledger.ledger_path(manifest.output))
    latest = book.latest()
    on_gpu = device != "cpu" and bool(gpus.visible_gpus())
    jobs = []
    for job in manifest.jobs:
        units = [u for u in plan.units if u.job == job.name]
        todo = units if force else \
            [u for u in units if not orchestrator.unit_done(u, book, latest)]
        s = job.settings
        size, longest = None, s.size
        if units and job.kind != "video":
            size = images.fit_size(*images.probe_image(units[0].content, s.max_pixels), s.size)
            longest = max(size)
        paths, frames = _written(job, units, plan, manifest.output)
        seconds = None if tiny or on_gpu else \
            autotune.expected_seconds([(u.settings.size, u.cost) for u in todo])
        jobs.append(JobPreview(
            name=job.name, kind=job.kind, settings=s, units=len(units),
            done=len(units) - len(todo),
            looped=sum(bool(u.loop) for u in units), size=size, paths=paths, frames=frames,
            computes_with=autotune.preview(s, longest, test_network=tiny, gpu=on_gpu),
            seconds=seconds))
    state = run_folder.state_dir(manifest.output).name
    return RunPreview(manifest=manifest.path, output=manifest.output, jobs=tuple(jobs),
                      own=(run_folder.REPORT_NAME, run_folder.LOG_NAME, state))


def _written(job: Job, units, plan, out: Path):
    """The files a job's units and videos write, relative to `out`; a video's frames apart."""
    video = next((v for v in plan.videos if v.job == job.name), None)
    if video is not None:
        paths = tuple(Path(p).relative_to(out) for p in video.outputs.values())
        frames = None
        if "frames" in job.outputs and video.units:
            frames = (Path(video.units[0].output).relative_to(out),
                      Path(video.units[-1].output).relative_to(out), len(video.units))
        return paths, frames
    return tuple(Path(p).relative_to(out) for u in units for p in (u.output, u.progress_gif)
                 if p), None
