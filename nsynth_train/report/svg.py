"""Line charts as inline SVG text (no script, no network): the report's learning curves and
``nsynth runs --html``'s overlaid curves."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

# Colour-blind-safe categorical colours (Okabe and Ito), cycled for many runs
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float], str]], title: str, ylabel: str,
               width: int = 420, height: int = 260, y_range: tuple[float, float] | None = None) -> str:
    """An SVG chart of ``series``: ``(label, xs, ys, style)`` with ``style`` ``"solid"`` or
    ``"dashed"``, each label's colour from :data:`COLOURS` in order of first appearance.
    Non-finite values are left out. ``y_range`` fixes the y axis (default: the data's)."""
    labels = list(dict.fromkeys(label for label, *_ in series))
    per_row = max(1, (width - 60) // 130)  # legend entries of 130 px in rows below the axis
    legend_rows = -(-len(labels) // per_row)
    left, right, top, bottom = 52, 12, 26, 40 + 15 * legend_rows
    height += 15 * legend_rows
    points = [(x, y) for _, xs, ys, _ in series for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if not points:
        return f'<p class="muted">{html.escape(title)}: no data</p>'
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = y_range or (min(p[1] for p in points), max(p[1] for p in points))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    w, h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}" class="chart">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" class="title">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for i in range(5):  # y ticks
        v = y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" text-anchor="end" class="tick">{v:.3g}</text>')
    ticks = range(round(x0), round(x1) + 1) if x1 - x0 <= 12 else {round(x0), round(x1), round((x0 + x1) / 2)}
    for v in sorted(ticks):
        parts.append(f'<text x="{sx(v):.1f}" y="{top + h + 14}" text-anchor="middle" class="tick">{v:g}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{top + h + 28}" text-anchor="middle" class="tick">epoch</text>')
    parts.append(f'<text x="12" y="{top + h / 2}" text-anchor="middle" class="tick" '
                 f'transform="rotate(-90 12 {top + h / 2})">{html.escape(ylabel)}</text>')
    colours: dict[str, str] = {}
    for label, xs, ys, style in series:
        colour = colours.setdefault(label, COLOURS[len(colours) % len(COLOURS)])
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys, strict=True) if math.isfinite(y))
        dash = ' stroke-dasharray="5 3"' if style == "dashed" else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}>'
                     f"<title>{html.escape(label)}</title></polyline>")
    for i, (label, colour) in enumerate(colours.items()):  # legend: rows below the axis label
        x, y = left + 130 * (i % per_row), top + h + 46 + 15 * (i // per_row)
        parts.append(f'<line x1="{x}" x2="{x + 14}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{x + 18}" y="{y}" class="tick">{html.escape(label[:18])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def learning_curves(history: Sequence[dict[str, float]], label: str = "") -> tuple[str, str]:
    """(loss chart, accuracy chart) of one run's history: train solid, valid dashed."""
    prefix = f"{label} " if label else ""
    epochs = [h["epoch"] for h in history]
    loss = [(f"{prefix}train", epochs, [h["train_loss"] for h in history], "solid"),
            (f"{prefix}valid", epochs, [h["valid_loss"] for h in history], "dashed")]
    acc = [(f"{prefix}train", epochs, [h["train_accuracy"] for h in history], "solid"),
           (f"{prefix}valid", epochs, [h["valid_accuracy"] for h in history], "dashed")]
    return line_chart(loss, "loss (train solid, valid dashed)", "loss"), \
        line_chart(acc, "accuracy (train solid, valid dashed)", "accuracy", y_range=(0.0, 1.0))
