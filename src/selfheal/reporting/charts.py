"""Small, dependency-free SVG charts for the HTML report.

Each function returns one ``<svg>`` element (inline in the page: no external assets) with
``role="img"``, an ``aria-label`` and a ``<title>``, and a ``<title>`` on every bar or point
so the value is there on hover and for screen readers. Bars carry ``class="bar"`` and
``data-value``; their length is proportional to the value (the longest bar spans the plot).
Every label is escaped: names come from alert labels, which are untrusted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# Colour-blind-safe (Okabe-Ito); series also differ by legend order and position.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000")
FONT = 12
ROW = 22  # height of one bar in a horizontal chart
GAP = 10  # between groups


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # one per category; None: no data (no bar)


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def _svg_open(width: float, height: float, title: str, css_class: str) -> list[str]:
    label = escape(title, quote=True)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" role="img"'
        f' aria-label="{label}" width="{width:g}" height="{height:g}"'
        f' viewBox="0 0 {width:g} {height:g}">',
        f"<title>{escape(title)}</title>",
    ]


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out = ['<g class="legend">']
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        out.append(
            f'<rect x="{x:g}" y="{y + i * 16:g}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14:g}" y="{y + i * 16 + 9:g}" font-size="{FONT}">'
            f"{escape(s.name)}</text>"
        )
    out.append("</g>")
    return out


def hbar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str] = _fmt,
    width: int = 640,
    label_width: int = 170,
) -> str:
    """Horizontal grouped bars: one group per category, one bar per series."""
    legend_w = 120 if len(series) > 1 else 0
    plot_x = label_width
    plot_w = width - label_width - legend_w - 70  # room for the value text
    group_h = ROW * len(series) + GAP
    height = max(40, group_h * len(categories) + GAP)
    peak = max((v for s in series for v in s.values if v is not None), default=0) or 1
    out = _svg_open(width, height, title, "hbar")
    out.append(f'<line x1="{plot_x}" y1="0" x2="{plot_x}" y2="{height}" stroke="#555"/>')
    for c, name in enumerate(categories):
        top = GAP + c * group_h
        out.append(
            f'<text class="category" x="{plot_x - 6}" y="{top + group_h / 2:g}" font-size="{FONT}"'
            f' text-anchor="end" dominant-baseline="middle">{escape(name)}</text>'
        )
        for i, s in enumerate(series):
            value = s.values[c]
            if value is None:
                continue
            length = plot_w * value / peak
            y = top + i * ROW
            colour = PALETTE[i % len(PALETTE)]
            tip = f"{name} {s.name}: {fmt(value)}" if len(series) > 1 else f"{name}: {fmt(value)}"
            out.append(
                f'<rect class="bar" data-series="{escape(s.name, quote=True)}"'
                f' data-value="{value:g}" x="{plot_x}" y="{y:g}" width="{length:.2f}"'
                f' height="{ROW - 4}" fill="{colour}"><title>{escape(tip)}</title></rect>'
                f'<text class="value" x="{plot_x + length + 4:.2f}" y="{y + (ROW - 4) / 2:g}"'
                f' font-size="{FONT}" dominant-baseline="middle">{escape(fmt(value))}</text>'
            )
    if legend_w:
        out += _legend(series, width - legend_w + 10, GAP)
    out.append("</svg>")
    return "".join(out)


def column_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str] = _fmt,
    width: int = 640,
    height: int = 260,
) -> str:
    """Vertical grouped columns (time on the x axis), with a legend."""
    legend_w = 120 if len(series) > 1 else 0
    left, bottom, top = 40, 40, 16
    plot_w = width - left - legend_w - 10
    plot_h = height - bottom - top
    peak = max((v for s in series for v in s.values if v is not None), default=0) or 1
    slot = plot_w / max(1, len(categories))
    bar_w = max(2.0, (slot - 8) / max(1, len(series)))
    out = _svg_open(width, height, title, "columns")
    base = top + plot_h
    out.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w:g}" y2="{base}" stroke="#555"/>')
    out.append(
        f'<text x="{left - 4}" y="{top + 4}" font-size="{FONT}" text-anchor="end">'
        f"{escape(fmt(peak))}</text>"
        f'<text x="{left - 4}" y="{base}" font-size="{FONT}" text-anchor="end">0</text>'
    )
    for c, name in enumerate(categories):
        x0 = left + c * slot + 4
        for i, s in enumerate(series):
            value = s.values[c]
            if value is None:
                continue
            h = plot_h * value / peak
            colour = PALETTE[i % len(PALETTE)]
            out.append(
                f'<rect class="bar" data-series="{escape(s.name, quote=True)}"'
                f' data-value="{value:g}" x="{x0 + i * bar_w:.2f}" y="{base - h:.2f}"'
                f' width="{bar_w - 1:.2f}" height="{h:.2f}" fill="{colour}">'
                f"<title>{escape(f'{name} {s.name}: {fmt(value)}')}</title></rect>"
            )
        out.append(
            f'<text class="category" x="{x0 + slot / 2 - 4:.2f}" y="{base + 16}"'
            f' font-size="{FONT - 1}" text-anchor="middle">{escape(name)}</text>'
        )
    if legend_w:
        out += _legend(series, width - legend_w + 10, top)
    out.append("</svg>")
    return "".join(out)


def line_chart(
    title: str,
    categories: Sequence[str],
    values: Sequence[float | None],
    *,
    low: float = 0.0,
    high: float = 1.0,
    fmt: Callable[[float], str] = _fmt,
    width: int = 640,
    height: int = 220,
) -> str:
    """One line over categories on a fixed [low, high] scale; a point per known value."""
    left, bottom, top, right = 48, 36, 16, 44
    plot_w = width - left - right
    plot_h = height - bottom - top
    step = plot_w / max(1, len(categories) - 1) if len(categories) > 1 else 0
    span = (high - low) or 1
    out = _svg_open(width, height, title, "line")
    base = top + plot_h
    for tick in (low, (low + high) / 2, high):
        y = base - plot_h * (tick - low) / span
        out.append(
            f'<line x1="{left}" y1="{y:.2f}" x2="{left + plot_w}" y2="{y:.2f}" stroke="#ddd"/>'
            f'<text x="{left - 4}" y="{y + 4:.2f}" font-size="{FONT}" text-anchor="end">'
            f"{escape(fmt(tick))}</text>"
        )
    points, marks = [], []
    for c, (name, value) in enumerate(zip(categories, values, strict=True)):
        x = left + (c * step if len(categories) > 1 else plot_w / 2)
        out.append(
            f'<text class="category" x="{x:.2f}" y="{base + 16}" font-size="{FONT - 1}"'
            f' text-anchor="middle">{escape(name)}</text>'
        )
        if value is None:
            continue
        y = base - plot_h * (min(max(value, low), high) - low) / span
        points.append(f"{x:.2f},{y:.2f}")
        marks.append(
            f'<circle class="point" data-value="{value:g}" cx="{x:.2f}" cy="{y:.2f}" r="4"'
            f' fill="{PALETTE[2]}"><title>{escape(f"{name}: {fmt(value)}")}</title></circle>'
        )
    if len(points) > 1:  # the line under its points
        out.append(
            f'<polyline fill="none" stroke="{PALETTE[2]}" stroke-width="2"'
            f' points="{" ".join(points)}"/>'
        )
    out += marks
    out.append("</svg>")
    return "".join(out)
