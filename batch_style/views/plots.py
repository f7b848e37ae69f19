"""Loss curves as inline SVG: small, with no plotting library."""

from __future__ import annotations

import math

from batch_style.views.markup import e, num
from batch_style.views.report_data import UnitView

CURVE_W, CURVE_H = 220, 56      # loss plot in a contact-sheet row, px
SPARK_W, SPARK_H = 120, 24      # loss plot in a table row, px


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
    title = (f"{num(values[0])} → {num(values[-1])} over {len(values)} points"
             + (" (log scale)" if log_scale else ""))
    return (f'<svg class="curve" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{e(title)}"><title>{e(title)}</title>'
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
    return (f'<figure class="plot">{svg}<figcaption>loss {e(num(history[0]))} → '
            f'{e(num(final))}, per step (log scale)</figcaption></figure>')


def frame_losses_svg(units: list[UnitView]) -> str:
    """A video's final loss per frame (a jump shows a cut, or a frame that started afresh)."""
    finals = [(u.record.get("losses") or {}).get("total") for u in units if u.status == "done"]
    finals = [v for v in finals if isinstance(v, (int, float))]
    svg = curve_svg(finals, 480, 56, log_scale=False)
    if not svg:
        return ""
    return (f'<figure class="plot">{svg}<figcaption>final loss per frame: '
            f'{e(num(min(finals)))} to {e(num(max(finals)))}</figcaption></figure>')
