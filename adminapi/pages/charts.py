"""Charts drawn on the server as plain SVG: no script, no CDN, readable without CSS.

Each chart is an `<svg role="img">` with a `<title>` and `<desc>` (screen readers), every bar
has a `<title>` (its number on hover), and the page shows a table of the same numbers beside
it. Labels arrive translated; every text is escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PASS_COLOUR = "#15803d"
FAIL_COLOUR = "#b42318"
TEXT_COLOUR = "#4b5563"
GRID_COLOUR = "#dfe3e8"
FONT = "font-family=\"system-ui, sans-serif\" font-size=\"12\""


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    colour: str


def _nice_max(value: float) -> int:
    """A round axis maximum at or above `value` (1, 2, 5 times a power of ten)."""
    if value <= 0:
        return 1
    power = 1
    while power * 10 <= value:
        power *= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    parts = []
    for series_item in series:
        parts.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" '
                     f'fill="{series_item.colour}"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="{y:.1f}" fill="{TEXT_COLOUR}" {FONT}>'
                     f"{escape(series_item.label)}</text>")
        x += 24 + 7.5 * len(series_item.label)
    return parts


def _svg(width: int, height: int, title: str, description: str, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
            f'<title>{escape(title)}</title><desc>{escape(description)}</desc>')
    return Markup(head + "".join(body) + "</svg>")


def stacked_columns(
    labels: Sequence[str], values: Sequence[Sequence[int]], series: Sequence[Series], *,
    title: str, description: str, width: int = 720, height: int = 260,
) -> Markup:
    """One column per label (a day), stacked by series (passed, failed)."""
    left, right, top, bottom = 56, 12, 28, 40
    plot_width, plot_height = width - left - right, height - top - bottom
    maximum = _nice_max(max((sum(column) for column in values), default=0))
    body = _legend(series, left, 16)
    for step in range(5):
        share = step / 4
        y = top + plot_height * (1 - share)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{GRID_COLOUR}"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                    f'fill="{TEXT_COLOUR}" {FONT}>{round(maximum * share)}</text>')
    count = max(len(labels), 1)
    slot = plot_width / count
    bar = max(min(slot * 0.7, 48), 2)
    every = max(1, round(count / 12))  # at most about 12 labels on the axis
    for index, (label, column) in enumerate(zip(labels, values, strict=True)):
        x = left + slot * index + (slot - bar) / 2
        y = top + plot_height
        for value, series_item in zip(column, series, strict=True):
            if value <= 0:
                continue
            size = plot_height * value / maximum
            y -= size
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{size:.1f}" '
                        f'fill="{series_item.colour}"><title>{escape(label)}: '
                        f'{escape(series_item.label)} {value}</title></rect>')
        if index % every == 0:
            body.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" '
                        f'text-anchor="middle" fill="{TEXT_COLOUR}" {FONT}>'
                        f"{escape(label)}</text>")
    return _svg(width, height, title, description, body)


def stacked_rows(
    labels: Sequence[str], values: Sequence[Sequence[int]], series: Sequence[Series], *,
    title: str, description: str, width: int = 720,
) -> Markup:
    """One horizontal bar per label (a receiver, a source), stacked by series."""
    label_width, right, top, row = 220, 60, 30, 26
    height = top + row * max(len(labels), 1) + 8
    plot_width = width - label_width - right
    maximum = max((sum(column) for column in values), default=0) or 1
    body = _legend(series, label_width, 16)
    for index, (label, column) in enumerate(zip(labels, values, strict=True)):
        y = top + row * index
        shown = label if len(label) <= 32 else label[:31] + "…"
        body.append(f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" '
                    f'fill="{TEXT_COLOUR}" {FONT}>{escape(shown)}</text>')
        x = float(label_width)
        for value, series_item in zip(column, series, strict=True):
            if value <= 0:
                continue
            size = plot_width * value / maximum
            body.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{max(size, 1):.1f}" '
                        f'height="{row - 8}" fill="{series_item.colour}"><title>'
                        f"{escape(label)}: {escape(series_item.label)} {value}</title></rect>")
            x += size
        body.append(f'<text x="{x + 6:.1f}" y="{y + 15}" fill="{TEXT_COLOUR}" {FONT}>'
                    f"{sum(column)}</text>")
    return _svg(width, height, title, description, body)
