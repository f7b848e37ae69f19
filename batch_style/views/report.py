"""The morning report: OUTPUT/report.html, one static page built from the plan and the ledger."""

from __future__ import annotations

import base64
import html
import io
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from batch_style import atomic
from batch_style.pipeline import ledger, run_folder
from batch_style.pipeline.run_folder import REPORT_NAME, STATE_DIR
from batch_style.pipeline.run_lock import running_pid
from batch_style.text import duration

THUMB_PX = 256          # longest side of a thumbnail, px (shown at up to 200 px: sharp on HiDPI)
SMALL_THUMB_PX = 128    # for jobs with more than MANY_UNITS images, to keep the page light
MANY_UNITS = 60
VIDEO_SAMPLES = 6       # frames shown from each video (input above, result below)
TABLE_OPEN_ROWS = 24    # a unit table longer than this starts folded
CURVE_W, CURVE_H = 220, 56      # loss plot in a contact-sheet row, px
SPARK_W, SPARK_H = 120, 24      # loss plot in a table row, px

# What each kind of failure means, and what to do about it.
FAILURE_HINTS = {
    "input": "a problem with an input file: fix or replace it, then run the same command again",
    "disk-full": "the disk filled up: free some space, then run the same command again",
    "oom": "out of memory: use a smaller size or fewer workers",
    "crash": "its worker process died (killed, or out of memory); it was retried, then given up",
    "internal": "an internal error in batch-style: the traceback is in run.log; please report it",
    "video": "a video is assembled once all its frames are done: see its failed frames",
}


@dataclass
class UnitView:
    key: str
    job: str
    plan: dict              # the unit as plan.json has it
    record: dict | None     # its latest ledger record for these inputs, if any

    @property
    def status(self) -> str:
        return self.record["status"] if self.record else "pending"


@dataclass
class JobView:
    name: str
    plan: dict
    units: list[UnitView] = field(default_factory=list)
    videos: list[UnitView] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Images or frames with this status (videos are counted apart)."""
        return sum(u.status == status for u in self.units)

    @property
    def seconds(self) -> float:
        return sum(float((u.record or {}).get("seconds") or 0) for u in self.units + self.videos)


def write_report(output_dir: Path) -> Path:
    """Write OUTPUT/report.html (atomically) from the run's plan and ledger; return its path."""
    output_dir = Path(output_dir)
    path = output_dir / REPORT_NAME
    atomic.atomic_write_text(path, render(output_dir))
    return path


def load_jobs(output_dir: Path) -> tuple[dict, list[JobView]]:
    """The plan and, per job, its units with their latest ledger records (same inputs only)."""
    plan = run_folder.read_plan(output_dir)
    latest = ledger.Ledger.for_output(output_dir).latest()
    jobs = {j["name"]: JobView(j["name"], j) for j in plan["jobs"]}
    # plan.json names files where the run wrote them; the folder may have been moved since.
    root = _planned_root(plan)
    if root is not None and root != output_dir.resolve():
        plan["units"] = [_relocated(u, root, output_dir) for u in plan["units"]]
        plan["videos"] = [_relocated(v, root, output_dir) for v in plan["videos"]]

    def view(entry: dict) -> UnitView:
        # A record for other inputs or settings, or a done one whose outputs are gone, says
        # nothing about this unit: the next run redoes it.
        record = latest.get(entry["key"]) if run_folder.entry_state(entry, latest) != "pending" else None
        job = jobs.setdefault(entry["job"], JobView(entry["job"], {"name": entry["job"]}))
        return UnitView(entry["key"], job.name, entry, record)

    for entry in plan["units"]:
        unit = view(entry)
        jobs[unit.job].units.append(unit)
    for entry in plan["videos"]:
        if not entry.get("outputs"):
            continue  # neither mp4 nor gif asked for: nothing to assemble, the frames say it all
        unit = view(entry)
        jobs[unit.job].videos.append(unit)
    return plan, list(jobs.values())


def render(output_dir: Path) -> str:
    output_dir = Path(output_dir)
    plan, jobs = load_jobs(output_dir)
    page = _Page(output_dir)
    body = [page.header(plan, jobs), page.failures(jobs)]
    if len(jobs) > 1:
        body.append('<nav class="jobs">' + "".join(
            f'<a href="#{_anchor(j.name)}">{_e(j.name)}{_badge_counts(j, short=True)}</a>'
            for j in jobs) + "</nav>")
    body += [page.job(j) for j in jobs]
    body.append(f'<footer>Made by batch-style from {_e(STATE_DIR)}/plan.json and the ledger; '
                f'run <code>batch-style report {_e(str(output_dir))}</code> to rebuild it. '
                f'The run&#8217;s log: <a href="run.log">run.log</a>.</footer>')
    title = f"batch-style report: {output_dir.name or output_dir}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)}</title><style>{CSS}{page.style_css()}</style></head>\n'
            f'<body>\n' + "\n".join(b for b in body if b) + "\n</body></html>\n")


class _Page:
    """Renders the parts of the page; remembers style thumbnails, which every row of a job shares."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.styles: dict[str, tuple[str, str | None]] = {}   # path → (css class, data URI)

    # -- parts --------------------------------------------------------------------------------
    def header(self, plan: dict, jobs: list[JobView]) -> str:
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
            state += f", {_plural(failures, 'failure')}"
        pid = running_pid(self.output_dir)
        if pid is not None and pid != os.getpid():
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
        cards += (f'<div class="stat"><b>{_e(duration(seconds))}</b><span>time in units'
                  f'</span></div>')
        if started is not None:
            end = _clock(finished)
            if end[:10] == _clock(started)[:10]:
                end = end[11:]  # the same day: the time is enough
            cards += (f'<div class="stat"><b>{_e(duration(finished - started))}</b>'
                      f'<span>wall clock, {_e(_clock(started))} → {_e(end)}</span></div>')
        return (f'<header><h1>batch-style report <small>{_e(state)}</small></h1>'
                f'<p class="where">{_e(str(self.output_dir))} · from '
                f'<code>{_e(plan.get("manifest") or "?")}</code> · written '
                f'{_e(_clock(time.time()))}</p><div class="stats">{cards}</div></header>')

    def failures(self, jobs: list[JobView]) -> str:
        failed = [u for j in jobs for u in j.units + j.videos if u.status == "failed"]
        if not failed:
            return ""
        rows = []
        for u in failed:
            kind = u.record.get("error_kind") or ("video" if "#video" in u.key else None)
            hint = FAILURE_HINTS.get(kind, "")
            rows.append(f'<tr><td><a href="#{_anchor(u.key)}">{_e(u.key)}</a></td>'
                        f'<td class="reason">{_e(u.record.get("error") or "failed")}</td>'
                        f'<td class="hint">{_e(hint)}</td></tr>')
        s = "" if len(failed) == 1 else "s"
        return (f'<section class="failures" id="failures"><h2>{len(failed)} failure{s}</h2>'
                f'<p>These did not finish. Fix the cause and run the same command again: '
                f'finished units are kept, and only the failed and pending ones run.</p>'
                f'<table><thead><tr><th>unit</th><th>what went wrong</th><th>what it means'
                f'</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>')

    def job(self, job: JobView) -> str:
        kind = job.plan.get("kind", "images")
        styles = job.plan.get("styles") or (job.units[0].plan["styles"] if job.units else [])
        head = (f'<h2>{_e(job.name)} <span class="kind">{_e(kind)}</span>'
                f'{_badge_counts(job)}</h2>'
                f'<p class="meta">{_plural(len(job.units), "frame" if kind == "video" else "image")}'
                f' · {_e(duration(job.seconds))} in units · style: '
                f'{_e(", ".join(Path(s).name for s in styles))} · outputs: '
                f'{_e(", ".join(job.plan.get("outputs", [])))}</p>')
        if kind == "video":
            sheet = "".join(self.video(job, v) for v in job.videos) or self.video(job, None)
        else:
            px = THUMB_PX if len(job.units) <= MANY_UNITS else SMALL_THUMB_PX
            sheet = '<div class="sheet">' + "".join(self.row(u, px) for u in job.units) + "</div>"
        return (f'<section class="job" id="{_anchor(job.name)}">{head}{sheet}'
                f'{self.unit_table(job)}{settings_table(job.plan)}</section>')

    def row(self, unit: UnitView, px: int) -> str:
        """One contact-sheet row: content → style(s) → result (→ progress GIF), and its numbers."""
        p, r = unit.plan, unit.record or {}
        cells = [self.thumb(p["content"], "content", px), '<i class="arrow">→</i>',
                 "".join(self.style_thumb(s) for s in p["styles"]), '<i class="arrow">→</i>']
        if unit.status == "done":
            cells.append(self.thumb(p["output"], "result", px))
            gif = p.get("progress_gif")
            if gif and Path(gif).exists():
                cells.append(f'<figure><img class="thumb" loading="lazy" src="{self.href(gif)}" '
                             f'alt="progress of {_e(unit.key)}"><figcaption>progress'
                             f'</figcaption></figure>')
        elif unit.status == "failed":
            cells.append(f'<figure><div class="thumb failed"><b>failed</b>'
                         f'<span>{_e(r.get("error") or "")}</span></div>'
                         f'<figcaption>result</figcaption></figure>')
        else:
            cells.append('<figure><div class="thumb pending"><b>not run yet</b></div>'
                         '<figcaption>result</figcaption></figure>')
        return (f'<div class="row {unit.status}" id="{_anchor(unit.key)}">'
                f'<div class="cells">{"".join(cells)}</div>'
                f'<div class="info"><h3>{_e(_short(unit))}</h3>{self.numbers(unit)}'
                f'{loss_plot(r)}</div></div>')

    def numbers(self, unit: UnitView) -> str:
        r = unit.record
        if r is None:
            return '<p class="nums muted">pending</p>'
        losses = r.get("losses") or {}
        parts = [duration(float(r.get("seconds") or 0))]
        if r.get("steps"):
            parts.append(f"{r['steps']} steps")
        if (r.get("attempts") or 1) > 1:
            parts.append(f"{r['attempts']} attempts")
        if losses.get("total") is not None:
            parts.append(f"loss {_num(losses['total'])}")
        where = f"worker {r['worker']}" if r.get("worker") else ""
        if r.get("gpu") is not None:
            where += f" · GPU {r['gpu']}"
        return (f'<p class="nums">{_e(" · ".join(parts))}</p>'
                + (f'<p class="nums muted">{_e(where)}</p>' if where else ""))

    def video(self, job: JobView, video: UnitView | None) -> str:
        parts = []
        outputs = (video.plan.get("outputs") or {}) if video else {}
        mp4, gif = outputs.get("mp4"), outputs.get("gif")
        # Chunk lead-ins (several workers on one video) are work, not frames of the video.
        units = [u for u in job.units if f"/{run_folder.LEAD_DIR}/" not in u.key]
        frames = [u for u in units if u.status == "done"]
        poster = self.data_uri(frames[0].plan["output"], THUMB_PX * 2) if frames else None
        done = video is not None and video.status == "done"
        if done and mp4 and Path(mp4).exists():
            # With a poster (the first stylized frame) nothing need load before Play.
            poster_attr = f' poster="{poster}" preload="none"' if poster else ' preload="metadata"'
            parts.append(f'<figure><video controls muted loop playsinline'
                         f'{poster_attr} src="{self.href(mp4)}"></video>'
                         f'<figcaption><a href="{self.href(mp4)}">{_e(Path(mp4).name)}</a>'
                         f'</figcaption></figure>')
        if done and gif and Path(gif).exists():
            parts.append(f'<figure><img class="gif" loading="lazy" src="{self.href(gif)}" '
                         f'alt="{_e(Path(gif).name)}"><figcaption><a href="{self.href(gif)}">'
                         f'{_e(Path(gif).name)}</a></figcaption></figure>')
        if video is not None and video.status == "failed":
            parts.append(f'<div class="thumb failed wide"><b>video not assembled</b><span>'
                         f'{_e(video.record.get("error") or "")}</span></div>')
        elif video is not None and video.status == "pending" and outputs:
            parts.append('<div class="thumb pending wide"><b>video not assembled yet</b></div>')
        # A few frames across the clip: the input above, the result below.
        picks = _spread(units, VIDEO_SAMPLES)
        strip = '<div class="frame labels"><span>input</span><span>result</span></div>' + "".join(
            f'<div class="frame">{self.thumb(u.plan["content"], "", THUMB_PX // 2)}'
            + (self.thumb(u.plan["output"], "", THUMB_PX // 2) if u.status == "done" else
               f'<figure><div class="thumb {u.status}"><b>{_e(u.status)}</b></div></figure>')
            + f'<span>{_e(_short(u))}</span></div>' for u in picks)
        source = Path(video.plan.get("source", "")).name if video else ""
        title = f'<h3>{_e(source)}</h3>' if source else ""
        fps = f' · {video.plan["fps"]:g} fps' if video and video.plan.get("fps") else ""
        # How steady the result is (flow.coherence, measured when the video was assembled).
        metrics = (video.record or {}).get("metrics") or {} if done else {}
        steady = (f' · flicker {metrics["flicker"]:.2f}× the input\u2019s (1.0: as steady as the '
                  f'input) · warping error {metrics["warp_error"]:.2g}'
                  if "flicker" in metrics and "warp_error" in metrics else "")
        return (f'<div class="video" id="{_anchor(video.key) if video else ""}">{title}'
                f'<p class="meta">{len(units)} frames{_e(fps)}{_e(steady)}</p>'
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
            where = (r.get("worker") or "") + (f" · GPU {r['gpu']}" if r.get("gpu") else "")
            anchor = f' id="{_anchor(u.key)}"' if anchored and u in job.units else ""
            seconds = duration(float(r["seconds"])) if "seconds" in r else ""
            rows.append(
                f'<tr class="{u.status}"{anchor}><td>{_e(_short(u))}</td>'
                f'<td><span class="pill {u.status}">{u.status}</span></td>'
                f'<td class="n">{_e(seconds)}</td><td class="n">{_e(r.get("steps", ""))}</td>'
                f'<td class="n">{_e(r.get("attempts", ""))}</td><td>{_e(where)}</td>'
                + "".join(f'<td class="n">{_e(_num(losses.get(k)))}</td>'
                          for k in ("total", "content", "style", "tv"))
                + f'<td>{curve_svg(r.get("history") or [], SPARK_W, SPARK_H)}</td>'
                f'<td class="reason">{_e(r.get("error") or "")}</td></tr>')
        table = ('<table class="units"><thead><tr><th>unit</th><th>status</th><th>time</th>'
                 '<th>steps</th><th>tries</th><th>worker</th><th>loss</th><th>content</th>'
                 '<th>style</th><th>tv</th><th>curve</th><th></th></tr></thead><tbody>'
                 + "".join(rows) + "</tbody></table>")
        opened = " open" if len(rows) <= TABLE_OPEN_ROWS or job.count("failed") else ""
        return (f'<details class="table"{opened}><summary>time and losses per unit '
                f'({len(rows)})</summary>{table}</details>')

    # -- images ---------------------------------------------------------------------------------
    def thumb(self, path: str, caption: str, px: int) -> str:
        uri = self.data_uri(path, px)
        cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
        name = _e(Path(path).name)
        if uri is None:
            return (f'<figure><div class="thumb missing" title="{_e(path)}"><b>no image</b>'
                    f'<span>{name}</span></div>{cap}</figure>')
        return f'<figure><img class="thumb" src="{uri}" alt="{name}" title="{name}">{cap}</figure>'

    def style_thumb(self, path: str) -> str:
        # Every row of a job shows the same style: its pixels go once into the page's CSS.
        if path not in self.styles:
            self.styles[path] = (f"st{len(self.styles)}", self.data_uri(path, THUMB_PX))
        cls, uri = self.styles[path]
        name = _e(Path(path).name)
        if uri is None:
            return (f'<figure><div class="thumb missing"><b>no image</b><span>{name}</span>'
                    f'</div><figcaption>style</figcaption></figure>')
        return (f'<figure><div class="thumb style {cls}" role="img" aria-label="style: {name}" '
                f'title="{name}"></div><figcaption>style</figcaption></figure>')

    def style_css(self) -> str:
        return "".join(f".{cls}{{background-image:url({uri})}}"
                       for cls, uri in self.styles.values() if uri)

    def data_uri(self, path: str, px: int) -> str | None:
        """A small JPEG of the image as a data: URI, or None when it cannot be read."""
        from PIL import Image, ImageOps

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    im.draft("RGB", (px, px))  # JPEG: decode at a fraction of the size
                    im = ImageOps.exif_transpose(im).convert("RGB")
                    im.thumbnail((px, px), Image.Resampling.LANCZOS)
                    buffer = io.BytesIO()
                    im.save(buffer, "JPEG", quality=82, optimize=True)
        except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError):
            return None  # a missing or damaged file: the row says so instead
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    def href(self, path: str) -> str:
        """The file's address relative to the report (the report lives in OUTPUT/)."""
        rel = os.path.relpath(Path(path).resolve(), self.output_dir.resolve())
        return _e(quote(os.fsencode(Path(rel).as_posix())))  # a name's own bytes, %-escaped


# -- plots ------------------------------------------------------------------------------------
def curve_svg(values: list, width: int, height: int, log_scale: bool = True) -> str:
    """A line plot of `values` as an inline SVG polyline; '' without two plottable values.

    Log scale (a loss history): the top is the starting loss, or the 90th percentile when that
    is higher, not the maximum: L-BFGS's line search tries a few huge losses early, which would
    flatten the rest of the curve; those points are drawn at the top edge.
    """
    values = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)
              and (v > 0 or not log_scale)]
    if len(values) < 2:
        return ""
    y = [math.log10(v) for v in values] if log_scale else values
    top = max(y[0], sorted(y)[int(0.9 * (len(y) - 1))]) if log_scale else max(y)
    low = min(y)
    if top <= low:  # a short history that only went up
        top = max(y)
    span = top - low or 1.0
    pad = 3
    points = " ".join(
        f"{pad + i * (width - 2 * pad) / (len(y) - 1):.1f},"
        f"{pad + (height - 2 * pad) * (1 - (min(v, top) - low) / span):.1f}"
        for i, v in enumerate(y))
    title = (f"{_num(values[0])} → {_num(values[-1])} over {len(values)} points"
             + (" (log scale)" if log_scale else ""))
    return (f'<svg class="curve" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
            f'<polyline points="{points}"/></svg>')


def loss_plot(record: dict) -> str:
    """The loss curve of a contact-sheet row, with what it shows in words."""
    history = record.get("history") or []
    svg = curve_svg(history, CURVE_W, CURVE_H)
    if not svg:
        return ""
    # The record's loss is the result's; the history's last point can differ (it is subsampled,
    # and an optimizer's last evaluation may be a trial step).
    final = (record.get("losses") or {}).get("total", history[-1])
    return (f'<figure class="plot">{svg}<figcaption>loss {_e(_num(history[0]))} → '
            f'{_e(_num(final))}, per step (log scale)</figcaption></figure>')


def frame_losses_svg(units: list[UnitView]) -> str:
    """A video's final loss per frame (a jump shows a cut, or a frame that started afresh)."""
    finals = [(u.record.get("losses") or {}).get("total") for u in units if u.status == "done"]
    finals = [v for v in finals if isinstance(v, (int, float))]
    svg = curve_svg(finals, 480, 56, log_scale=False)
    if not svg:
        return ""
    return (f'<figure class="plot">{svg}<figcaption>final loss per frame: '
            f'{_e(_num(min(finals)))} to {_e(_num(max(finals)))}</figcaption></figure>')


def settings_table(job: dict) -> str:
    """The job's settings; those that differ from the defaults first, in bold."""
    from batch_style.settings import Settings

    settings = job.get("settings") or {}
    defaults = Settings().to_dict()
    extra = {"styles": ", ".join(Path(s).name for s in job.get("styles") or []),
             "video": Path(job["video"]).name if job.get("video") else None}
    items = [(k, v, True) for k, v in extra.items() if v]
    changed = [(k, v, True) for k, v in settings.items() if defaults.get(k, object()) != v]
    same = [(k, v, False) for k, v in settings.items() if defaults.get(k, object()) == v]
    cells = "".join(f'<div class="{"set" if bold else "default"}"><span>{_e(k)}</span>'
                    f'<b>{_e(_value(v))}</b></div>' for k, v, bold in items + changed + same)
    return (f'<details class="settings"><summary>settings ({len(changed)} changed from the '
            f'defaults)</summary><div class="grid">{cells}</div></details>') if settings else ""


# -- small helpers ----------------------------------------------------------------------------
def _planned_root(plan: dict) -> Path | None:
    """The output folder the run wrote into: OUTPUT/JOB/STEM.png is an image unit's output."""
    image_jobs = {j["name"] for j in plan["jobs"] if j.get("kind") != "video"}
    for unit in plan["units"]:
        if unit["job"] in image_jobs:
            return Path(unit["output"]).parents[1]
    for video in plan["videos"]:
        for path in (video.get("outputs") or {}).values():
            return Path(path).parents[1]
    return None


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _relocated(entry: dict, root: Path, output_dir: Path) -> dict:
    """The plan entry with its paths under the run's `root` moved to `output_dir`."""
    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str) and value.startswith(str(root) + os.sep):
            return str(output_dir / Path(value).relative_to(root))
        return value

    return {k: (v if k in ("key", "job", "hash") else move(v)) for k, v in entry.items()}


def _e(text) -> str:
    # A file name that is not UTF-8 shows its odd bytes as \udcff: the page stays UTF-8.
    shown = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return html.escape(shown, quote=True)


def _anchor(key: str) -> str:
    return "u-" + quote(os.fsencode(key), safe="")


def _short(unit: UnitView) -> str:
    prefix = unit.job + "/"
    return unit.key[len(prefix):] if unit.key.startswith(prefix) else unit.key


def _badge_counts(job: JobView, short: bool = False) -> str:
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


def _spread(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def _num(value) -> str:
    if value is None or not isinstance(value, (int, float)):
        return ""
    return f"{value:.3g}"


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "—" if value is None else str(value)


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


CSS = """
:root{--ink:#1d2430;--muted:#6b7585;--line:#e3e6eb;--bg:#f6f7f9;--card:#fff;--ok:#1f8a4c;
--bad:#c0392b;--warn:#b7791f;--accent:#3451b2}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
code{font:12px ui-monospace,"DejaVu Sans Mono",monospace}
h1{font-size:24px;margin:0 0 2px}h1 small{font-size:14px;font-weight:500;color:var(--muted);
margin-left:8px}
h2{font-size:18px;margin:0 0 4px}h3{font-size:14px;margin:0 0 4px;word-break:break-all}
.where,.meta{color:var(--muted);margin:0 0 12px;word-break:break-all}
.stats{display:flex;flex-wrap:wrap;gap:12px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 16px;
min-width:110px}
a.stat{color:inherit;text-decoration:none}
.stat b{display:block;font-size:22px}.stat span{color:var(--muted);font-size:12px}
.stat.ok b{color:var(--ok)}.stat.bad b{color:var(--bad)}.stat.warn b{color:var(--warn)}
.stat.muted b{color:#aab1bd}
header{margin-bottom:20px}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 20px;
margin:0 0 20px}
section.failures{border-color:#f0b7b0;background:#fff6f5}
section.failures h2{color:var(--bad)}
nav.jobs{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 20px}
nav.jobs a{background:var(--card);border:1px solid var(--line);border-radius:20px;padding:4px 12px}
.kind{font-size:12px;font-weight:500;color:var(--muted);border:1px solid var(--line);
border-radius:6px;padding:1px 6px;margin-left:4px;vertical-align:middle}
.pill{font-size:12px;font-weight:600;border-radius:10px;padding:1px 8px;vertical-align:middle}
.pill.done{background:#e3f4ea;color:var(--ok)}.pill.failed{background:#fde8e6;color:var(--bad)}
.pill.pending{background:#fdf3e1;color:var(--warn)}
.sheet{display:flex;flex-direction:column;gap:10px}
.row{display:flex;gap:20px;align-items:center;border-top:1px solid var(--line);padding-top:10px}
.row.failed .info h3{color:var(--bad)}
.cells{display:flex;align-items:center;gap:8px;flex-wrap:wrap}
figure{margin:0;text-align:center}
figcaption{font-size:11px;color:var(--muted);margin-top:2px}
.thumb{display:block;width:200px;height:150px;object-fit:contain;background:#eef0f3;
border-radius:6px}
.thumb.style{width:110px;background-size:contain;background-repeat:no-repeat;
background-position:center}
.thumb.failed,.thumb.pending,.thumb.missing{display:flex;flex-direction:column;
justify-content:center;align-items:center;padding:10px;font-size:12px;overflow:hidden;
word-break:break-word}
.thumb.failed{background:#fde8e6;color:var(--bad);border:1px dashed #e6a59d}
.thumb.pending{background:#fdf6ea;color:var(--warn);border:1px dashed #ebcf9c}
.thumb.missing{color:var(--muted);border:1px dashed #cfd4db}
.thumb.wide{width:320px;height:120px}
.arrow{font-style:normal;color:#aab1bd;font-size:18px}
.info{min-width:220px}.nums{margin:0 0 4px;font-variant-numeric:tabular-nums}
.muted{color:var(--muted)}
svg.curve{display:block;background:#fafbfc;border:1px solid var(--line);border-radius:4px}
svg.curve polyline{fill:none;stroke:var(--accent);stroke-width:1.5;stroke-linejoin:round}
svg.curve text{font-size:9px;fill:var(--muted)}
.video .players{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start;margin-bottom:10px}
.video video,.video img.gif{display:block;width:400px;height:auto;max-height:320px;
object-fit:contain;border-radius:6px;background:#000}
.frame.labels span{height:96px;display:flex;align-items:center;font-weight:600}
.strip{display:flex;gap:8px;flex-wrap:wrap;margin-bottom:8px}
.frame{display:flex;flex-direction:column;gap:4px;align-items:center;font-size:11px;
color:var(--muted)}
.frame .thumb{width:128px;height:96px}
.plot{display:inline-block;text-align:left;margin:4px 0 0}
details{margin-top:12px}summary{cursor:pointer;color:var(--muted);font-weight:600}
table{border-collapse:collapse;width:100%;margin-top:8px;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);
padding:4px 8px}
td{border-bottom:1px solid var(--line);padding:4px 8px;vertical-align:middle}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.reason{color:var(--bad)}td.hint{color:var(--muted)}
.failures td{vertical-align:top}
.settings .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:4px 16px;
margin-top:8px}
.settings .grid div{display:flex;justify-content:space-between;gap:8px;border-bottom:1px dotted
var(--line);padding:2px 0;font-size:13px}
.settings .grid span{color:var(--muted)}.settings .default b{font-weight:400;color:var(--muted)}
.settings b{word-break:break-all;text-align:right}
footer{color:var(--muted);font-size:12px}
"""
