"""`selfheal report --html` rendered by a real headless Chromium: every chart is an SVG that
lays out with a non-zero size, with one bar per value of the report's data, and the page
loads nothing from anywhere (it is self-contained).

Set SELFHEAL_REPORT_SCREENSHOT=FILE to save a screenshot of the page (docs/img/report.png).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import CHROMIUM, CHROMIUM_ARGS
from unit.reporting.helpers import at, fire, resolve, run_to_end, selection, store  # noqa: F401

from selfheal.cli import ExitCode, main
from selfheal.reporting import OUTCOMES

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed"),
]
DAY = 86400


def _week(store) -> None:  # noqa: F811
    """A week of incidents: web and api mostly healed automatically, db failing over badly,
    a manual cache alert; detection and resolution times spread per service."""
    plan = [
        # day, service, runbook, detect s, run outcome, resolve s after opening
        (0, "web", "restart-web", 40, "succeeded", 240),
        (0, "api", "restart-api", 25, "succeeded", 150),
        (1, "web", "restart-web", 60, "succeeded", 420),
        (1, "db", "failover-db", 90, "failed", None),
        (2, "web", "restart-web", 35, "succeeded", 200),
        (2, "api", "restart-api", 30, "failed", 1500),
        (3, "db", "failover-db", 120, "succeeded", 900),
        (3, "web", "restart-web", 45, "succeeded", 260),
        (4, "api", "restart-api", 20, "succeeded", 130),
        (4, "cache", None, 15, None, 600),
        (5, "db", "failover-db", 80, "failed", None),
        (6, "web", "restart-web", 50, "succeeded", 310),
    ]
    for i, (day, service, runbook, detect, outcome, fix) in enumerate(plan):
        start = day * DAY + i * 600
        incident = fire(store, f"Down{i}", service, start, start + detect)
        opened = start + detect
        mode = "auto" if runbook else "manual"
        store.record_decision(
            incident, mode, [selection(service, runbook, f"{service}1")], at=at(opened + 1)
        )
        if runbook:
            run_to_end(store, incident, runbook, f"{service}1", outcome, 0, opened + 2, opened + 60)
        if fix is not None:
            resolve(store, f"Down{i}", service, start, opened + fix)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_report_charts_render_in_chromium(store, tmp_path, browser, capsys) -> None:  # noqa: F811
    _week(store)
    out = tmp_path / "report.html"
    args = ["report", "--store", str(store.path), "--format", "json", "--html", str(out)]
    args += ["--title", "selfheal: incidents, week 2"]
    assert main(args) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.set_content(out.read_text(), wait_until="load")
    assert requests == []  # nothing fetched: inline SVG and CSS only
    assert page.title() == "selfheal: incidents, week 2"

    charts = page.locator("figure > svg")
    assert charts.count() == 6
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 30, box
        assert charts.nth(i).get_attribute("aria-label")
    assert page.locator("figure > figcaption").count() == 6

    def bars(index: int) -> list[dict]:
        return charts.nth(index).evaluate(
            """svg => [...svg.querySelectorAll('rect.bar')].map(r => {
                const b = r.getBoundingClientRect();
                return {value: +r.dataset.value, width: b.width, height: b.height};
            })"""
        )

    outcome = bars(0)
    assert [b["value"] for b in outcome] == [data["outcomes"][n] for n in OUTCOMES]
    longest = max(outcome, key=lambda b: b["value"])
    for bar in outcome:  # laid out proportionally by the browser too
        assert abs(bar["width"] - longest["width"] * bar["value"] / longest["value"]) < 1
    services = data["by_service"]
    mttr_values = [
        services[s]["mttr_s"][k] for s in services for k in ("median", "p90")
    ]  # grouped: p50 then p90 per service
    assert len(bars(2)) == sum(v is not None for v in mttr_values)
    assert all(b["width"] > 0 for b in bars(1))  # every service has an MTTD
    per_day = bars(3)
    assert len(per_day) == 2 * len(data["by_day"]) == 14
    assert [b["value"] for b in per_day[::2]] == [d["attempted"] for d in data["by_day"]]
    points = charts.nth(4).locator("circle.point")
    assert points.count() == sum(1 for d in data["by_day"] if d["attempted"])
    usage = bars(5)
    assert [b["value"] for b in usage] == [
        data["by_runbook"][n]["incidents"] for n in data["by_runbook"]
    ]
    # data tables beside the charts
    assert page.locator("table").count() == 5
    assert page.get_by_role("img", name="Outcome mix: incidents per outcome").count() == 1

    shot = os.environ.get("SELFHEAL_REPORT_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)
    context.close()
