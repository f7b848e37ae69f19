"""The morning report: OUTPUT/report.html, one static page built from the plan and the ledger."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from batch_style import atomic
from batch_style.pipeline.state.run_folder import REPORT_NAME, STATE_DIR
from batch_style.pipeline.watch import LiveView
from batch_style.views import report_live
from batch_style.views.markup import anchor, e
from batch_style.views.report_data import load_jobs
from batch_style.views.report_html import Head, JobSheet, Thumbs, badge_counts

CSS = resources.files("batch_style.views").joinpath("report.css").read_text(encoding="utf-8")


def write_report(output_dir: Path, live: LiveView | None = None) -> Path:
    """Write OUTPUT/report.html (atomically: a reader never sees half of it) from the run's plan
    and ledger, and with `live` (pipeline/watch.py) as the run goes; return its path."""
    output_dir = Path(output_dir)
    path = output_dir / REPORT_NAME
    atomic.atomic_write_text(path, render(output_dir, live))
    return path


def render(output_dir: Path, live: LiveView | None = None) -> str:
    output_dir = Path(output_dir)
    plan, jobs = load_jobs(output_dir)
    head, thumbs = Head(output_dir), Thumbs(output_dir)
    sheet = JobSheet(thumbs, {u.key: u for u in live.busy} if live else {})
    body = [head.header(plan, jobs, running=live is not None),
            report_live.progress(live, thumbs.href) if live else "", head.failures(jobs)]
    if len(jobs) > 1:
        body.append('<nav class="jobs">' + "".join(
            f'<a href="#{anchor(j.name)}">{e(j.name)}{badge_counts(j, short=True)}</a>'
            for j in jobs) + "</nav>")
    body += [sheet.job(j) for j in jobs]
    body.append(f'<footer>Made by batch-style from {e(STATE_DIR)}/plan.json and the ledger; '
                f'run <code>batch-style report {e(str(output_dir))}</code> to rebuild it. '
                f'The run&#8217;s log: <a href="run.log">run.log</a>.</footer>')
    title = f"batch-style report: {output_dir.name or output_dir}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'{report_live.refresh_meta(live)}'
            f'<title>{e(title)}</title><style>{CSS}{thumbs.style_css()}</style></head>\n'
            f'<body>\n' + "\n".join(b for b in body if b) + "\n</body></html>\n")
