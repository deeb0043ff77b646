"""The SVG charts: bars proportional to their values, labels escaped, accessible names."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from selfheal.reporting.charts import Series, column_chart, hbar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def _bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]


def test_horizontal_bars_are_proportional_and_labelled() -> None:
    svg = hbar_chart(
        "Outcome mix", ["auto-resolved", "manual-only", "none"], [Series("n", [8, 2, 0])]
    )
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.get("aria-label") == "Outcome mix"
    assert root.find(f"{SVG}title").text == "Outcome mix"
    bars = _bars(svg)
    assert [float(b.get("data-value")) for b in bars] == [8, 2, 0]
    widths = [float(b.get("width")) for b in bars]
    assert widths[0] > 0 and widths[2] == 0
    assert abs(widths[1] / widths[0] - 0.25) < 1e-3
    assert bars[0].find(f"{SVG}title").text == "auto-resolved: 8"
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "category"]
    assert labels == ["auto-resolved", "manual-only", "none"]


def test_grouped_bars_skip_missing_values_and_share_one_scale() -> None:
    svg = hbar_chart(
        "MTTR", ["web", "db"], [Series("p50", [60, None]), Series("p90", [120, 30])], fmt=str
    )
    bars = _bars(svg)
    assert [(b.get("data-series"), float(b.get("data-value"))) for b in bars] == [
        ("p50", 60),
        ("p90", 120),
        ("p90", 30),
    ]
    w = {float(b.get("data-value")): float(b.get("width")) for b in bars}
    assert abs(w[60] / w[120] - 0.5) < 1e-3 and abs(w[30] / w[120] - 0.25) < 1e-3
    assert "p50" in svg and "p90" in svg  # the legend


def test_labels_from_alerts_are_escaped() -> None:
    evil = '<script>alert(1)</script>"&'
    svg = hbar_chart(evil, [evil], [Series(evil, [1])])
    assert "<script>" not in svg
    ET.fromstring(svg)  # still well-formed XML


def test_columns_are_proportional_in_height() -> None:
    svg = column_chart(
        "per day", ["d1", "d2"], [Series("attempted", [4, 2]), Series("succeeded", [3, 0])]
    )
    bars = _bars(svg)
    assert len(bars) == 4
    h = [float(b.get("height")) for b in bars]
    assert abs(h[1] / h[0] - 0.75) < 1e-3 and abs(h[2] / h[0] - 0.5) < 1e-3 and h[3] == 0
    # columns stand on one baseline
    assert len({round(float(b.get("y")) + float(b.get("height")), 2) for b in bars}) == 1


def test_line_points_follow_the_scale() -> None:
    svg = line_chart("rate", ["a", "b", "c"], [1.0, None, 0.5], low=0, high=1)
    root = ET.fromstring(svg)
    points = [c for c in root.iter(f"{SVG}circle")]
    assert [float(p.get("data-value")) for p in points] == [1.0, 0.5]
    polyline = root.find(f"{SVG}polyline")
    ys = [float(xy.split(",")[1]) for xy in polyline.get("points").split()]
    base = 220 - 36  # height - bottom margin: where 0 sits
    assert abs((base - ys[1]) / (base - ys[0]) - 0.5) < 1e-3
    assert re.search(r"<title>c: 0.5</title>", svg)
