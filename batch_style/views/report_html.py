"""The report's page, part by part: header, failures, a contact sheet per job, tables."""

from __future__ import annotations

import base64
import functools
import io
import os
import stat
import statistics
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from batch_style.errors import UserError
from batch_style.pipeline.state import run_folder, run_reader, safe_files
from batch_style.pipeline.state.run_lock import running_pid
from batch_style.pipeline.watch import BusyUnit
from batch_style.settings import Settings
from batch_style.text import duration
from batch_style.views.markup import anchor, clock, e, num, plural, spread, value_text
from batch_style.views.plots import SPARK_H, SPARK_W, curve_svg, frame_losses_svg, loss_plot
from batch_style.views.report_data import JobView, UnitView
from batch_style.views.report_live import busy_figure

THUMB_PX = 256          # longest side of a thumbnail, px (shown at up to 200 px: sharp on HiDPI)
SMALL_THUMB_PX = 128    # for jobs with more than MANY_UNITS images, to keep the page light
MANY_UNITS = 60
VIDEO_SAMPLES = 6       # frames shown from each video (input above, result below)
TABLE_OPEN_ROWS = 24    # a unit table longer than this starts folded


# What each kind of failure means, and what to do about it.
FAILURE_HINTS = {
    "input": "a problem with an input file: fix or replace it, then run the same command again",
    "disk-full": "the disk filled up: free some space, then run the same command again",
    "oom": "out of memory: use a smaller size or fewer workers",
    "crash": "its worker process died (killed, or out of memory); it was retried, then given up",
    "internal": "an internal error in batch-style: the traceback is in run.log; please report it",
    "video": "a video is assembled once all its frames are done: see its failed frames",
}


class Thumbs:
    """Images as small inline JPEGs; each style once, in the page's CSS (every row shares it)."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.styles: dict[str, tuple[str, str | None]] = {}   # path → (css class, data URI)

    # -- images ---------------------------------------------------------------------------------
    def thumb(self, path: str, caption: str, px: int, link: bool = False) -> str:
        """A thumbnail; with `link`, it opens the full-size file (a result, under OUTPUT)."""
        uri = self.data_uri(path, px)
        cap = f"<figcaption>{e(caption)}</figcaption>" if caption else ""
        name = e(Path(path).name)
        if uri is None:
            return (f'<figure><div class="thumb missing" title="{e(path)}"><b>no image</b>'
                    f'<span>{name}</span></div>{cap}</figure>')
        img = f'<img class="thumb" src="{uri}" alt="{name}" title="{name}">'
        if link:
            img = f'<a href="{self.href(path)}">{img}</a>'
        return f'<figure>{img}{cap}</figure>'

    def style_thumb(self, path: str) -> str:
        # Every row of a job shows the same style: its pixels go once into the page's CSS.
        if path not in self.styles:
            self.styles[path] = (f"st{len(self.styles)}", self.data_uri(path, THUMB_PX))
        cls, uri = self.styles[path]
        name = e(Path(path).name)
        if uri is None:
            return (f'<figure><div class="thumb missing"><b>no image</b><span>{name}</span>'
                    f'</div><figcaption>style</figcaption></figure>')
        return (f'<figure><div class="thumb style {cls}" role="img" aria-label="style: {name}" '
                f'title="{name}"></div><figcaption>style</figcaption></figure>')

    def style_css(self) -> str:
        return "".join(f".{cls}{{background-image:url({uri})}}"
                       for cls, uri in self.styles.values() if uri)

    def data_uri(self, path: str, px: int) -> str | None:
        """A small JPEG of the image as a data: URI, or None when it cannot be read: a regular
        file only (a FIFO would hang the report), and under OUTPUT only inside it (a result
        that links out would put another picture in the page). Inputs may live anywhere."""
        try:
            under = os.path.commonpath([os.path.abspath(path), os.path.abspath(
                self.output_dir)]) == os.path.abspath(self.output_dir)
            if under and not run_reader.regular_file(path, self.output_dir):
                return None
            info = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return _jpeg_uri(str(path), px, info.st_mtime_ns, info.st_size)

    def href(self, path: str) -> str:
        """The file's address relative to the report (the report lives in OUTPUT/)."""
        rel = os.path.relpath(Path(path).resolve(), self.output_dir.resolve())
        return e(quote(os.fsencode(Path(rel).as_posix())))  # a name's own bytes, %-escaped


@functools.lru_cache(maxsize=2048)
def _jpeg_uri(path: str, px: int, mtime_ns: int, size: int) -> str | None:
    """Thumbs.data_uri's work, kept while the file is unchanged (its time and size in the key):
    the live report is written again every few seconds, its pictures mostly the same."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with os.fdopen(safe_files.open_regular(Path(path), os.O_RDONLY), "rb") as f, \
                    Image.open(f) as im:
                im.draft("RGB", (px, px))  # JPEG: decode at a fraction of the size
                im = ImageOps.exif_transpose(im).convert("RGB")
                im.thumbnail((px, px), Image.Resampling.LANCZOS)
                buffer = io.BytesIO()
                im.save(buffer, "JPEG", quality=82, optimize=True)
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError, UserError):
        return None  # a missing or damaged file: the row says so instead
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Head:
    """The page's header (where, when, how far) and its list of failures."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir

    # -- parts --------------------------------------------------------------------------------
    def header(self, plan: dict, jobs: list[JobView], running: bool = False) -> str:
        units = [u for j in jobs for u in j.units]
        videos = [v for j in jobs for v in j.videos]
        done, failed = (sum(u.status == s for u in units) for s in ("done", "failed"))
        pending = len(units) - done - failed
        records = [u.record for u in units + videos if u.record]
        seconds = sum(float(r.get("seconds") or 0) for r in records)
        started = min((r["time"] - float(r.get("seconds") or 0) for r in records), default=None)
        finished = max((r["time"] for r in records), default=None)
        state = "finished" if not pending else f"stopped with {pending} units to go"
        failures = failed + sum(v.status == "failed" for v in videos)
        if failures:
            state += f", {plural(failures, 'failure')}"
        pid = running_pid(self.output_dir)
        if running:
            state = "running"  # the run's own live page
        elif pid is not None and pid != os.getpid():
            state = "running" + (f" (pid {pid})" if pid > 0 else "") + ": this is a snapshot"
        stats = [("done", done, "ok" if done else "muted"),
                 ("failed", failed, "bad" if failed else "muted"),
                 ("pending", pending, "warn" if pending else "muted")]
        cards = "".join(
            (f'<a class="stat {cls}" href="#failures">' if label == "failed" and n else
             f'<div class="stat {cls}">') + f'<b>{n}</b><span>{label}</span>'
            + ("</a>" if label == "failed" and n else "</div>") for label, n, cls in stats)
        if videos:
            made = sum(v.status == "done" for v in videos)
            cls = "bad" if any(v.status == "failed" for v in videos) else ""
            cards += (f'<div class="stat {cls}"><b>{made}/{len(videos)}</b>'
                      f'<span>videos assembled</span></div>')
        cards += (f'<div class="stat"><b>{e(duration(seconds))}</b><span>time in units'
                  f'</span></div>')
        if started is not None:
            end = clock(finished)
            if end[:10] == clock(started)[:10]:
                end = end[11:]  # the same day: the time is enough
            cards += (f'<div class="stat"><b>{e(duration(finished - started))}</b>'
                      f'<span>wall clock, {e(clock(started))} → {e(end)}</span></div>')
        return (f'<header><h1>batch-style report <small>{e(state)}</small></h1>'
                f'<p class="where">{e(str(self.output_dir))} · from '
                f'<code>{e(plan.get("manifest") or "?")}</code> · written '
                f'{e(clock(time.time()))}</p><div class="stats">{cards}</div></header>')

    def failures(self, jobs: list[JobView]) -> str:
        failed = [u for j in jobs for u in j.units + j.videos if u.status == "failed"]
        if not failed:
            return ""
        rows = []
        for u in failed:
            kind = u.record.get("error_kind") or ("video" if "#video" in u.key else None)
            hint = FAILURE_HINTS.get(kind, "")
            rows.append(f'<tr><td><a href="#{anchor(u.key)}">{e(u.key)}</a></td>'
                        f'<td class="reason">{e(u.record.get("error") or "failed")}</td>'
                        f'<td class="hint">{e(hint)}</td></tr>')
        s = "" if len(failed) == 1 else "s"
        return (f'<section class="failures" id="failures"><h2>{len(failed)} failure{s}</h2>'
                f'<p>These did not finish. Fix the cause and run the same command again: '
                f'finished units are kept, and only the failed and pending ones run.</p>'
                f'<table><thead><tr><th>unit</th><th>what went wrong</th><th>what it means'
                f'</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>')


class JobSheet:
    """One job's section: its contact sheet (or videos), its table of units, its settings."""

    def __init__(self, thumbs: Thumbs, busy: dict[str, BusyUnit] | None = None):
        self.thumbs = thumbs
        self.busy = busy or {}      # units being painted now (live report), by key

    def job(self, job: JobView) -> str:
        kind = job.plan.get("kind", "images")
        styles = job.plan.get("styles") or (job.units[0].plan["styles"] if job.units else [])
        head = (f'<h2>{e(job.name)} <span class="kind">{e(kind)}</span>'
                f'{badge_counts(job)}</h2>'
                f'<p class="meta">{plural(len(job.units), "frame" if kind == "video" else "image")}'
                f' · {e(duration(job.seconds))} in units · style: '
                f'{e(", ".join(styles_text(styles, job.plan)))} · outputs: '
                f'{e(", ".join(job.plan.get("outputs", [])))}</p>' + chosen(job))
        if kind == "video":
            sheet = "".join(self.video(job, v) for v in job.videos) or self.video(job, None)
        else:
            px = THUMB_PX if len(job.units) <= MANY_UNITS else SMALL_THUMB_PX
            sheet = '<div class="sheet">' + "".join(self.row(u, px) for u in job.units) + "</div>"
        return (f'<section class="job" id="{anchor(job.name)}">{head}{sheet}'
                f'{self.unit_table(job)}{settings_table(job.plan)}</section>')

    def row(self, unit: UnitView, px: int) -> str:
        """One contact-sheet row: content → style(s) → result (→ progress GIF), and its numbers."""
        p, r = unit.plan, unit.record or {}
        masks = p.get("masks") or [None] * len(p["styles"])
        cells = [self.thumbs.thumb(p["content"], "content", px)]
        if p.get("protect"):
            cells.append(self.thumbs.thumb(p["protect"], "protected", px // 2))
        # Each style with its mask beside it: where on the picture that style goes.
        cells += ['<i class="arrow">→</i>',
                  "".join(self.thumbs.style_thumb(s) + (self.thumbs.thumb(m, "its mask", px // 2)
                                                        if m else "")
                          for s, m in zip(p["styles"], masks)),
                  '<i class="arrow">→</i>']
        if unit.status == "done":
            cells.append(self.thumbs.thumb(p["output"], "result", px, link=True))
            gif = p.get("progress_gif")
            if gif and Path(gif).exists():
                cells.append(f'<figure><img class="thumb" loading="lazy" src="{self.thumbs.href(gif)}" '
                             f'alt="progress of {e(unit.key)}"><figcaption>progress'
                             f'</figcaption></figure>')
        elif unit.status == "failed":
            cells.append(f'<figure><div class="thumb failed"><b>failed</b>'
                         f'<span>{e(r.get("error") or "")}</span></div>'
                         f'<figcaption>result</figcaption></figure>')
        elif unit.key in self.busy:
            cells.append(busy_figure(self.busy[unit.key], self.thumbs.href))
        else:
            cells.append('<figure><div class="thumb pending"><b>not run yet</b></div>'
                         '<figcaption>result</figcaption></figure>')
        return (f'<div class="row {unit.status}" id="{anchor(unit.key)}">'
                f'<div class="cells">{"".join(cells)}</div>'
                f'<div class="info"><h3>{e(short(unit))}</h3>{self.numbers(unit)}'
                f'{loss_plot(r)}</div></div>')

    def numbers(self, unit: UnitView) -> str:
        r = unit.record
        if r is None:
            return '<p class="nums muted">pending</p>'
        losses = r.get("losses") or {}
        parts = [duration(float(r.get("seconds") or 0))]
        if r.get("steps"):
            stopped = r.get("stopped") or ""
            parts.append(stopped if stopped.startswith("converged") else
                         f"{r['steps']} steps" + (f" ({stopped})" if stopped else ""))
        if (r.get("attempts") or 1) > 1:
            parts.append(f"{r['attempts']} attempts")
        if losses.get("total") is not None:
            parts.append(f"loss {num(losses['total'])}")
        where = " · ".join(filter(None, [ran_as(r), f"worker {r['worker']}" if r.get("worker")
                                         else ""]))
        return (f'<p class="nums">{e(" · ".join(parts))}</p>'
                + (f'<p class="nums muted">{e(where)}</p>' if where else ""))

    def video(self, job: JobView, video: UnitView | None) -> str:
        parts = []
        outputs = (video.plan.get("outputs") or {}) if video else {}
        mp4, gif = outputs.get("mp4"), outputs.get("gif")
        # Chunk lead-ins (several workers on one video) and the frames a loop's closing pass
        # painted again are work, not frames of the video.
        units = [u for u in job.units if f"/{run_folder.LEAD_DIR}/" not in u.key
                 and f"/{run_folder.OPEN_DIR}/" not in u.key]
        frames = [u for u in units if u.status == "done"]
        poster = self.thumbs.data_uri(frames[0].plan["output"], THUMB_PX * 2) if frames else None
        done = video is not None and video.status == "done"
        if done and mp4 and Path(mp4).exists():
            # With a poster (the first stylized frame) nothing need load before Play.
            poster_attr = f' poster="{poster}" preload="none"' if poster else ' preload="metadata"'
            parts.append(f'<figure><video controls muted loop playsinline'
                         f'{poster_attr} src="{self.thumbs.href(mp4)}"></video>'
                         f'<figcaption><a href="{self.thumbs.href(mp4)}">{e(Path(mp4).name)}</a>'
                         f'</figcaption></figure>')
        if done and gif and Path(gif).exists():
            parts.append(f'<figure><img class="gif" loading="lazy" src="{self.thumbs.href(gif)}" '
                         f'alt="{e(Path(gif).name)}"><figcaption><a href="{self.thumbs.href(gif)}">'
                         f'{e(Path(gif).name)}</a></figcaption></figure>')
        if video is not None and video.status == "failed":
            parts.append(f'<div class="thumb failed wide"><b>video not assembled</b><span>'
                         f'{e(video.record.get("error") or "")}</span></div>')
        elif video is not None and video.status == "pending" and outputs:
            parts.append('<div class="thumb pending wide"><b>video not assembled yet</b></div>')
        # A few frames across the clip: the input above, the result below.
        picks = spread(units, VIDEO_SAMPLES)
        strip = '<div class="frame labels"><span>input</span><span>result</span></div>' + "".join(
            f'<div class="frame">{self.thumbs.thumb(u.plan["content"], "", THUMB_PX // 2)}'
            + (self.thumbs.thumb(u.plan["output"], "", THUMB_PX // 2, link=True)
               if u.status == "done" else
               f'<figure><div class="thumb {u.status}"><b>{e(u.status)}</b></div></figure>')
            + f'<span>{e(short(u))}</span></div>' for u in picks)
        source = Path(video.plan.get("source", "")).name if video else ""
        title = f'<h3>{e(source)}</h3>' if source else ""
        fps = f' · {video.plan["fps"]:g} fps' if video and video.plan.get("fps") else ""
        # How steady the result is (flow.coherence, measured when the video was assembled).
        metrics = (video.record or {}).get("metrics") or {} if done else {}
        steady = (f' · flicker {metrics["flicker"]:.2f}× the input\u2019s (1.0: as steady as the '
                  f'input) · warping error {metrics["warp_error"]:.2g}'
                  if "flicker" in metrics and "warp_error" in metrics else "")
        steady += (f' · loop seam {metrics["seam"]:.2f}× the median change between frames'
                   if "seam" in metrics else "")
        return (f'<div class="video" id="{anchor(video.key) if video else ""}">{title}'
                f'<p class="meta">{len(units)} frames{e(fps)}{e(steady)}'
                f'{e(frame_steps(job, frames))}</p>'
                f'<div class="players">{"".join(parts)}</div>'
                f'<div class="strip">{strip}</div>'
                f'{frame_losses_svg(units)}</div>')

    def unit_table(self, job: JobView) -> str:
        # Video frames have no contact-sheet row: links to a frame land on its table row.
        anchored = job.plan.get("kind") == "video"
        rows = []
        for u in job.units + job.videos:
            r = u.record or {}
            losses = r.get("losses") or {}
            where = " · ".join(filter(None, [ran_as(r), r.get("worker")]))
            row_id = f' id="{anchor(u.key)}"' if anchored and u in job.units else ""
            seconds = duration(float(r["seconds"])) if "seconds" in r else ""
            rows.append(
                f'<tr class="{u.status}"{row_id}><td>{e(short(u))}</td>'
                f'<td><span class="pill {u.status}">{u.status}</span></td>'
                f'<td class="n">{e(seconds)}</td><td class="n">{e(r.get("steps", ""))}</td>'
                f'<td class="n">{e(r.get("attempts", ""))}</td><td>{e(where)}</td>'
                + "".join(f'<td class="n">{e(num(losses.get(k)))}</td>'
                          for k in ("total", "content", "style", "tv"))
                + f'<td>{curve_svg(r.get("history") or [], SPARK_W, SPARK_H)}</td>'
                f'<td class="reason">{e(r.get("error") or "")}</td></tr>')
        table = ('<table class="units"><thead><tr><th>unit</th><th>status</th><th>time</th>'
                 '<th>steps</th><th>tries</th><th>ran as, where</th><th>loss</th><th>content</th>'
                 '<th>style</th><th>tv</th><th>curve</th><th></th></tr></thead><tbody>'
                 + "".join(rows) + "</tbody></table>")
        opened = " open" if len(rows) <= TABLE_OPEN_ROWS or job.count("failed") else ""
        return (f'<details class="table"{opened}><summary>time and losses per unit '
                f'({len(rows)})</summary>{table}</details>')


def settings_table(job: dict) -> str:
    """The job's settings; those that differ from the defaults first, in bold."""
    settings = job.get("settings") or {}
    defaults = Settings().to_dict()
    extra = {"styles": ", ".join(Path(s).name for s in job.get("styles") or []),
             "video": Path(job["video"]).name if job.get("video") else None}
    items = [(k, v, True) for k, v in extra.items() if v]
    changed = [(k, v, True) for k, v in settings.items() if defaults.get(k, object()) != v]
    same = [(k, v, False) for k, v in settings.items() if defaults.get(k, object()) == v]
    cells = "".join(f'<div class="{"set" if bold else "default"}"><span>{e(k)}</span>'
                    f'<b>{e(value_text(v))}</b></div>' for k, v, bold in items + changed + same)
    return (f'<details class="settings"><summary>settings ({len(changed)} changed from the '
            f'defaults)</summary><div class="grid">{cells}</div></details>') if settings else ""


def ran_as(record: dict) -> str:
    """How a unit ran, as its record says: `float32, winograd convolutions, on the CPU`."""
    device = record.get("device")
    if device is None and record.get("gpu") is not None:
        device = f"gpu:{record['gpu']}"  # a record from before devices were recorded
    place = {None: "", "cpu": "on the CPU"}.get(device, f"on GPU {str(device)[4:]}")
    parts = [record.get("precision"),
             f"{record['convolution']} convolutions" if record.get("convolution") else None,
             place]
    return ", ".join(p for p in parts if p)


def chosen(job: JobView) -> str:
    """One line: why the job's units computed with their convolution and precision (the
    records' `choice`, autotune.py), each distinct reason once."""
    reasons = dict.fromkeys(u.record["choice"] for u in job.units
                            if u.record and u.record.get("choice"))
    return (f'<p class="meta">convolution and precision: {e(" | ".join(reasons))}</p>'
            if reasons else "")


def styles_text(styles: list, job: dict) -> list[str]:
    """Each style's name, with where it goes when it has a mask; then what is protected."""
    masks = job.get("masks") or [None] * len(styles)
    names = [Path(s).name + (f" (mask {Path(m).name})" if m else "")
             for s, m in zip(styles, masks)]
    if job.get("protect"):
        names.append(f"protected: {Path(job['protect']).name}")
    return names


def frame_steps(job: JobView, frames: list[UnitView]) -> str:
    """The steps the frames after the first took (they stop by `tolerance`, frame_steps at most)."""
    def first(u: UnitView) -> bool:  # the clip's first frame as painted first: `steps`
        return u.key.endswith("/000000") and f"/{run_folder.LOOP_DIR}/" not in u.key

    steps = [int(u.record.get("steps") or 0) for u in frames if not first(u)]
    cap = (job.plan.get("settings") or {}).get("frame_steps")
    if not steps:
        return ""
    return (f" · frames after the first: median {statistics.median(steps):g} steps, max "
            f"{max(steps)}" + (f" (frame_steps {cap})" if cap else ""))


def short(unit: UnitView) -> str:
    prefix = unit.job + "/"
    return unit.key[len(prefix):] if unit.key.startswith(prefix) else unit.key


def badge_counts(job: JobView, short: bool = False) -> str:
    out = ""
    for status in ("done", "failed", "pending"):
        n = job.count(status)
        if n or (status == "done" and not short):
            out += f' <span class="pill {status}">{n}{"" if short else " " + status}</span>'
    if not short:
        for video in job.videos:
            label = {"done": "video made", "failed": "video failed"}.get(video.status,
                                                                          "video to make")
            out += f' <span class="pill {video.status}">{label}</span>'
    return out


