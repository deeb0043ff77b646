"""The report as one self-contained HTML page: inline SVG charts (`charts.py`) and CSS, no
scripts, no external assets, so it can be mailed, archived or served as it is.

Every chart is a ``<figure>`` with a ``<figcaption>``, and its numbers are also in a data
table beside it (screen readers, copy and paste). `render_report_html(data)` takes what
`selfheal.reporting.summarise()` returns.
"""

from __future__ import annotations

from html import escape
from typing import Any

from selfheal.reporting.charts import Series, column_chart, hbar_chart, line_chart
from selfheal.reporting.facts import fmt_duration
from selfheal.reporting.summary import RUNAWAY_ATTEMPTS

DEFAULT_TITLE = "selfheal incident report"

_CSS = """
:root { color-scheme: light; --ink: #1b1b1b; --muted: #555; --rule: #d0d0d0; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.6rem; margin: 0 0 16px; }
h2 { font-size: 1.2rem; margin: 32px 0 8px; border-bottom: 1px solid var(--rule); }
.figures { display: flex; gap: 16px; flex-wrap: wrap; margin: 0; padding: 0; }
.figures > div { flex: 1 1 300px; background: #fff; border: 1px solid var(--rule);
  border-radius: 6px; padding: 12px 16px; }
.figures dt { color: var(--muted); font-size: .85rem; }
.figures dd { margin: 0; font-size: 1.5rem; font-weight: 600; }
.pair { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 0; background: #fff; border: 1px solid var(--rule); border-radius: 6px;
  padding: 12px; flex: 0 1 auto; max-width: 100%; overflow-x: auto; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: 6px; max-width: 640px; }
table { border-collapse: collapse; background: #fff; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid var(--rule); padding: 4px 8px; text-align: right; }
th[scope=row], thead th:first-child { text-align: left; }
svg text { fill: var(--ink); font-family: inherit; }
.empty { color: var(--muted); font-style: italic; }
"""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = []
    for row in rows:
        cells = f'<th scope="row">{escape(row[0])}</th>' + "".join(
            f"<td>{escape(c)}</td>" for c in row[1:]
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _figure(svg: str, caption: str, table: str) -> str:
    return (
        f'<div class="pair"><figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>'
        f"{table}</div>"
    )


def _section(anchor: str, heading: str, body: str) -> str:
    return (
        f'<section aria-labelledby="{anchor}"><h2 id="{anchor}">{escape(heading)}</h2>'
        f"{body}</section>"
    )


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _outcomes(data: dict[str, Any]) -> str:
    names = list(data["outcomes"])
    counts = [float(data["outcomes"][n]) for n in names]
    svg = hbar_chart("Outcome mix: incidents per outcome", names, [Series("incidents", counts)])
    table = _table(
        "Outcome mix",
        ["outcome", "incidents"],
        [[n, str(int(c))] for n, c in zip(names, counts, strict=True)],
    )
    return _figure(svg, "How each incident ended (one outcome class per incident).", table)


def _times(data: dict[str, Any], key: str, label: str, what: str) -> str:
    groups = data["by_service"]
    if not groups:
        return _empty("No incidents in the period.")
    names = list(groups)
    p50 = [groups[n][key]["median"] for n in names]
    p90 = [groups[n][key]["p90"] for n in names]
    svg = hbar_chart(
        f"{label} per service (p50 and p90)",
        names,
        [Series("p50", p50), Series("p90", p90)],
        fmt=fmt_duration,
    )
    rows = [
        [n, str(groups[n]["incidents"]), fmt_duration(a), fmt_duration(b)]
        for n, a, b in zip(names, p50, p90, strict=True)
    ]
    table = _table(f"{label} per service", ["service", "incidents", "p50", "p90"], rows)
    return _figure(svg, f"{label}: {what}. No bar: no incident with that time yet.", table)


def _over_time(data: dict[str, Any]) -> str:
    days = data.get("by_day") or []
    if not days:
        return _empty("No incidents in the period.")
    names = [d["day"] for d in days]
    attempted = [float(d["attempted"]) for d in days]
    succeeded = [float(d["succeeded"]) for d in days]
    rates = [d["succeeded"] / d["attempted"] if d["attempted"] else None for d in days]
    columns = column_chart(
        "Automation per day: remediations attempted and succeeded",
        names,
        [Series("attempted", attempted), Series("succeeded", succeeded)],
    )
    line = line_chart(
        "Automation success rate per day", names, rates, fmt=lambda v: f"{v * 100:.0f}%"
    )
    rows = [
        [d["day"], str(d["incidents"]), str(d["attempted"]), str(d["succeeded"]), _pct(r)]
        for d, r in zip(days, rates, strict=True)
    ]
    table = _table(
        "Automation per day", ["day (UTC)", "incidents", "attempted", "succeeded", "rate"], rows
    )
    return _figure(
        columns, "Remediations attempted and succeeded, by the day the incident opened.", table
    ) + _figure(line, "Success rate: succeeded / attempted (no point: nothing attempted).", "")


def _runbooks(data: dict[str, Any]) -> str:
    used = data["by_runbook"]
    never = data["runbooks"]["never_used"]
    failing = {f["runbook"]: f for f in data["runbooks"]["failing_often"]}
    names = [*used, *never]
    if not names:
        return _empty("No runbook ran in the period.")
    counts = [float(used[n]["incidents"]) if n in used else 0.0 for n in names]
    svg = hbar_chart("Runbook usage: incidents per runbook", names, [Series("incidents", counts)])
    rows = []
    for name, count in zip(names, counts, strict=True):
        note = "never used" if name in never else ""
        if name in failing:
            note = f"failing often ({failing[name]['failed']}/{failing[name]['attempts']} attempts)"
        mttr = used[name]["mttr_s"]["median"] if name in used else None
        rows.append([name, str(int(count)), fmt_duration(mttr), note or "-"])
    table = _table("Runbook usage", ["runbook", "incidents", "MTTR p50", "note"], rows)
    return _figure(svg, "Incidents whose remediation used each runbook.", table)


def _slo_figure(slo: dict[str, Any] | None) -> str:
    if not slo or not slo.get("counted"):
        return ""
    goal = f"{slo['target'] * 100:g}% within {fmt_duration(slo['objective_s'])}"
    return (
        f"<div><dt>time-to-resolve SLO ({escape(goal)})</dt>"
        f"<dd>{slo['met']}/{slo['counted']}, error budget burned"
        f" {slo['budget_burn'] * 100:.0f}%</dd></div>"
    )


def _cost_and_loops(data: dict[str, Any]) -> str:
    cost = data.get("cost") or {}
    parts = []
    if cost.get("known") and cost.get("by_day"):
        days = [row["day"] for row in cost["by_day"]]
        values = [float(row["cost"]) for row in cost["by_day"]]
        svg = hbar_chart("Cost of automated actions per day", days, [Series("cost", values)])
        budget = cost.get("daily_budget")
        over = {a["day"]: a["why"] for a in cost.get("anomalies", [])}
        rows = [[d, f"{v:g}", over.get(d, "-")] for d, v in zip(days, values, strict=True)]
        table = _table("Cost per day", ["day (UTC)", "cost", "anomaly"], rows)
        caption = "Each started attempt costs its runbook's cost from the policy; " + (
            f"daily budget {budget:g}." if budget is not None else "no daily budget set."
        )
        parts.append(_figure(svg, caption, table))
    elif not cost.get("known"):
        parts.append(_empty("Costs unknown: give --policy for the runbooks' costs and budget."))
    else:
        parts.append(_empty("No automated action ran in the period."))
    loops = data.get("runaway") or []
    if loops:
        rows = [[r["runbook"], r["target"], r["day"], str(r["attempts"])] for r in loops]
        parts.append(_table("Runaway loops", ["runbook", "target", "day (UTC)", "attempts"], rows))
    else:
        parts.append(
            "<p>No runaway loop: no runbook was retried on one target"
            f" {RUNAWAY_ATTEMPTS} or more times in a day.</p>"
        )
    return "".join(parts)


def render_report_html(data: dict[str, Any], *, title: str = DEFAULT_TITLE) -> str:
    """The report page for `data` (what `summarise()` returns)."""
    auto = data["automation"]
    figures = (
        '<dl class="figures">'
        f"<div><dt>incidents</dt><dd>{data['incidents']}</dd></div>"
        f"<div><dt>automation succeeded</dt><dd>{auto['succeeded']}/{auto['attempted']}"
        f" ({_pct(auto['success_rate'])})</dd></div>"
        f"<div><dt>runbooks failing often</dt><dd>{len(data['runbooks']['failing_often'])}"
        "</dd></div>" + _slo_figure(data.get("slo")) + "</dl>"
    )
    body = [
        f"<h1>{escape(title)}</h1>",
        figures,
        _section("outcomes", "Outcomes", _outcomes(data)),
        _section(
            "mttd",
            "Time to detect",
            _times(data, "mttd_s", "MTTD", "first alert start to incident opened"),
        ),
        _section(
            "mttr", "Time to resolve", _times(data, "mttr_s", "MTTR", "incident opened to resolved")
        ),
        _section("automation", "Automation over time", _over_time(data)),
        _section("runbooks", "Runbooks", _runbooks(data)),
        _section("cost", "Cost and runaway loops", _cost_and_loops(data)),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
