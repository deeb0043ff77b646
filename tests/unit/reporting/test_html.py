"""The HTML report: self-contained, accessible, one chart per figure with its data table."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from unit.reporting.helpers import at, fire, resolve, run_to_end, selection

from selfheal.cli import ExitCode, main
from selfheal.reporting import OUTCOMES, collect, summarise
from selfheal.reporting.html import render_report_html


def _fill(store) -> None:
    """web: two auto-resolved incidents on two days; db: one whose runbook failed."""
    a = fire(store, "Down", "web", 0, 60)
    store.record_decision(a, "auto", [selection("web", "restart-web", "web1")], at=at(61))
    run_to_end(store, a, "restart-web", "web1", "succeeded", 0, 62, 100)
    resolve(store, "Down", "web", 0, 360)
    b = fire(store, "Down", "web", 90000, 90120)
    store.record_decision(b, "auto", [selection("web", "restart-web", "web1")], at=at(90121))
    run_to_end(store, b, "restart-web", "web1", "succeeded", 0, 90122, 90200)
    resolve(store, "Down", "web", 90000, 90720)
    c = fire(store, "DbDown", "db", 90100, 90130)
    store.record_decision(c, "auto", [selection("db", "failover-db", "db1")], at=at(90131))
    run = run_to_end(store, c, "failover-db", "db1", "failed", 2, 90132, 90200)
    store.retry_run(run.id, now=at(90201))
    store.claim_next_run("w1", 600, now=at(90202))
    store.finish_run(run.id, "failed", rc=2, worker_id="w1", reason="failed", now=at(90300))


class _Outline(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.stack: list[str] = []
        self.svg_parents: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
        if tag == "svg":
            self.svg_parents.append(self.stack[-1] if self.stack else "")
        self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass


def test_page_has_a_figure_and_a_table_per_chart(store) -> None:
    _fill(store)
    data = summarise(collect(store), runbooks=["restart-web", "failover-db", "clear-cache"])
    page = render_report_html(data, title="Week 2 <report>")
    outline = _Outline()
    outline.feed(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Week 2 &lt;report&gt;</title>" in page
    assert outline.urls == [] and "script" not in outline.tags  # self-contained
    svgs = outline.tags.count("svg")
    assert svgs == 6  # outcomes, MTTD, MTTR, per-day columns, success line, runbooks
    assert outline.svg_parents == ["figure"] * svgs
    assert outline.tags.count("figcaption") == outline.tags.count("figure") == svgs
    assert outline.tags.count("table") == 5
    # the charts carry the numbers of the data
    charts = [page[i : page.index("</svg>", i) + 6] for i in _find_all(page, "<svg ")]
    outcome_bars = _bar_values(charts[0])
    assert outcome_bars == [float(data["outcomes"][n]) for n in OUTCOMES]
    assert _bar_values(charts[2]) == [450.0, 600.0]  # MTTR: db none yet; web p50, p90
    assert _bar_values(charts[3]) == [1.0, 1.0, 2.0, 1.0]  # day 1: 1/1, day 2: 2/1
    assert _bar_values(charts[5]) == [1.0, 2.0, 0.0]  # failover-db, restart-web, clear-cache
    assert "failing often (2/2 attempts)" in page
    assert "2/3 (66.7%)" in page


def _find_all(text: str, needle: str) -> list[int]:
    out, i = [], text.find(needle)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + 1)
    return out


def _bar_values(svg: str) -> list[float]:
    root = ET.fromstring(svg)
    return [
        float(r.get("data-value"))
        for r in root.iter("{http://www.w3.org/2000/svg}rect")
        if r.get("class") == "bar"
    ]


def test_empty_period_renders(store) -> None:
    page = render_report_html(summarise([]))
    assert page.count("<svg") == 1  # only the outcome mix, all zero
    assert "No incidents in the period." in page


def test_cli_html(store, tmp_path, capsys) -> None:
    _fill(store)
    out = tmp_path / "report.html"
    args = ["report", "--store", str(store.path), "--html", str(out), "--format", "json"]
    assert main(args) == ExitCode.OK
    assert '"incidents": 3' in capsys.readouterr().out  # the JSON still goes to stdout
    assert out.read_text().count("<figure>") == 6
    bad = ["report", "--store", str(store.path), "--html", str(tmp_path / "no/dir/r.html")]
    assert main(bad) == ExitCode.USAGE


def test_cost_section_charts_each_day_against_the_budget(store) -> None:
    _fill(store)  # day 1: restart-web once; day 2: restart-web once, failover-db twice
    data = summarise(
        collect(store), costs={"restart-web": 1.0, "failover-db": 5.0}, daily_budget=10.0
    )
    page = render_report_html(data)
    section = page.split('id="cost"', 1)[1].split("</section>", 1)[0]
    assert "Cost of automated actions per day" in section
    assert "daily budget 10." in section
    assert "over the daily budget of 10" in section  # day 2 spent 11
    assert section.count("<svg") == 1
    without = render_report_html(summarise(collect(store)))
    assert "give --policy" in without.split('id="cost"', 1)[1]


def test_slo_figure_shows_the_burned_budget(store) -> None:
    from selfheal.reporting.summary import slo_burn

    _fill(store)
    facts = collect(store)
    slo = slo_burn(facts, objective_s=600, target=0.9, now=at(100000))
    page = render_report_html(summarise(facts, slo=slo))
    assert "time-to-resolve SLO (90% within 10m00s)" in page
    assert f"{slo['met']}/{slo['counted']}, error budget burned" in page
    assert "time-to-resolve SLO" not in render_report_html(summarise(facts))
