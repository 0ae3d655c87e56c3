"""Bar charts as plain geometry for an inline SVG (``templates/chart.html``): no chart library."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, GAP = 600.0, 140.0, 4.0
MIN_SLOTS = 14
"""A chart has room for at least two weeks of days, so a lone day is one narrow bar."""


@dataclass
class Bar:
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float


@dataclass
class BarChart:
    title: str
    bars: list[Bar]
    top: float
    width: float = WIDTH
    height: float = HEIGHT


def bars(points: list[tuple[str, float]], title: str) -> BarChart:
    """One bar per ``(label, value)``, scaled to the largest value."""
    top = max((v for _, v in points), default=0.0) or 1.0
    step = WIDTH / max(len(points), MIN_SLOTS)
    out = []
    for i, (label, value) in enumerate(points):
        height = HEIGHT * value / top
        out.append(Bar(label, value, i * step + GAP / 2, HEIGHT - height, step - GAP, height))
    return BarChart(title, out, top)
