"""The report while its run goes: how far along, and the picture each busy unit is painting."""

from __future__ import annotations

import time
from collections.abc import Callable

from batch_style.pipeline.watch import BusyUnit, LiveView
from batch_style.text import duration
from batch_style.views.markup import anchor, e, num, plural


def refresh_meta(live: LiveView | None) -> str:
    # Only while the run goes: the finished page is written without it, and stays still.
    return f'<meta http-equiv="refresh" content="{live.refresh_s}">' if live else ""


def progress(live: LiveView, href: Callable[[str], str]) -> str:
    """This run's units done and left, the time left (the one progress model's), and what the
    busy units paint; `href` gives a file's address from the report."""
    finished = live.done + live.failed
    left = f"about {duration(live.seconds_left)} left" if live.seconds_left is not None else \
        "time left: after the first unit"
    failed = f", {live.failed} failed" if live.failed else ""
    share = 100 * finished / live.total if live.total else 100
    return (f'<section class="live"><h2>Running: {finished} of {plural(live.total, "unit")} '
            f'done{e(failed)} · {e(left)}</h2>'
            f'<div class="bar"><i style="width:{share:.1f}%"></i></div>'
            f'<p class="meta">This page reloads itself every {live.refresh_s} s while the run '
            f'goes; the last one, when it ends, stays still.</p>'
            + ('<div class="busy">' + "".join(busy_figure(u, href) for u in live.busy)
               + "</div>" if live.busy else "") + '</section>')


def busy_figure(unit: BusyUnit, href: Callable[[str], str]) -> str:
    """A busy unit's latest picture (its worker rewrites the file; the page links to it, so a
    reload shows the newest) and how far it is."""
    if unit.snapshot is not None:
        picture = (f'<img class="thumb snapshot" src="{href(str(unit.snapshot))}" '
                   f'alt="{e(unit.key)} as it paints">')
    else:
        picture = '<div class="thumb pending"><b>starting</b></div>'
    return (f'<figure class="painting">{picture}<figcaption><a href="#{anchor(unit.key)}">'
            f'{e(unit.key)}</a><br>{e(how_far(unit))}</figcaption></figure>')


def how_far(unit: BusyUnit) -> str:
    parts = [f"painting for {duration(time.time() - unit.started)}"]
    if unit.step is not None and unit.steps:
        scale = f" (scale {unit.scale + 1}/{unit.scales})" if unit.scales > 1 else ""
        parts.append(f"step {unit.step}/{unit.steps}{scale}")
    if isinstance(unit.loss, (int, float)):
        parts.append(f"loss {num(unit.loss)}")
    if unit.worker:
        parts.append(f"worker {unit.worker}" + (f", GPU {unit.gpu}" if unit.gpu else ""))
    return " · ".join(parts)
