"""`selfheal report`: MTTD/MTTR, automation success rate and outcome mix over a period, as a
table, JSON, or (`--html FILE`) a self-contained HTML page with charts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from selfheal.errors import ConfigError
from selfheal.policy.model import parse_duration, parse_time
from selfheal.reporting import collect, summarise
from selfheal.reporting.cli_common import open_existing_store
from selfheal.reporting.facts import fmt_duration
from selfheal.reporting.summary import slo_burn


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="incident statistics: MTTD, MTTR, outcomes, runbooks",
        description="MTTD and MTTR (median, p90) per service and per runbook, the "
        "automation success rate, the outcome mix, and runbooks never used or failing "
        "often, for incidents opened in [--since, --until).",
    )
    parser.add_argument("--store", required=True, metavar="PATH", help="store file or URL")
    parser.add_argument("--since", metavar="TIME", help="ISO 8601 (default: the beginning)")
    parser.add_argument("--until", metavar="TIME", help="ISO 8601 (default: now)")
    parser.add_argument(
        "--policy", metavar="FILE", help="policy.yml, to list runbooks that never ran"
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format"
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        help="also write the report as an HTML page with SVG charts to FILE (self-contained)",
    )
    parser.add_argument("--title", default=None, help="the HTML page's title")
    parser.add_argument(
        "--slo-mttr",
        metavar="DURATION",
        help="time-to-resolve SLO objective, e.g. 15m: report how much of the error budget"
        " the period burned",
    )
    parser.add_argument(
        "--slo-target",
        type=float,
        default=0.95,
        metavar="RATIO",
        help="share of incidents that must meet --slo-mttr (default 0.95)",
    )
    parser.set_defaults(func=run)


def _stat_row(name: str, row: dict) -> str:
    mttd, mttr = row["mttd_s"], row["mttr_s"]
    cells = [
        fmt_duration(mttd["median"]),
        fmt_duration(mttd["p90"]),
        fmt_duration(mttr["median"]),
        fmt_duration(mttr["p90"]),
    ]
    return f"  {name:<24} {row['incidents']:>9} " + " ".join(f"{c:>10}" for c in cells)


def render_table(data: dict) -> str:
    auto = data["automation"]
    rate = "-" if auto["success_rate"] is None else f"{auto['success_rate'] * 100:.1f}%"
    lines = [
        f"incidents: {data['incidents']}",
        f"automation: {auto['succeeded']}/{auto['attempted']} succeeded ({rate})",
        "",
        "outcomes:",
    ]
    lines += [f"  {name:<24} {count:>6}" for name, count in data["outcomes"].items()]
    header = f"  {'':<24} {'incidents':>9} " + " ".join(
        f"{h:>10}" for h in ("MTTD p50", "MTTD p90", "MTTR p50", "MTTR p90")
    )
    for title, key in (("per service:", "by_service"), ("per runbook:", "by_runbook")):
        lines += ["", title, header]
        lines += [_stat_row(name, row) for name, row in data[key].items()] or ["  (none)"]
    books = data["runbooks"]
    lines += ["", "runbooks never used: " + (", ".join(books["never_used"]) or "-")]
    failing = [
        f"{b['runbook']} ({b['failed']}/{b['attempts']} attempts failed)"
        for b in books["failing_often"]
    ]
    lines.append("runbooks failing often: " + (", ".join(failing) or "-"))
    cost = data["cost"]
    if cost["known"]:
        budget = "-" if cost["daily_budget"] is None else f"{cost['daily_budget']:g}/day"
        lines += ["", f"cost of automated actions: {cost['total']:g} (budget {budget})"]
        lines += [f"  {a['day']}  {a['cost']:g}  {a['why']}" for a in cost["anomalies"]]
    loops = [
        f"{r['runbook']} on {r['target']} ({r['attempts']} attempts on {r['day']})"
        for r in data["runaway"]
    ]
    lines.append("runaway loops: " + (", ".join(loops) or "-"))
    slo = data.get("slo")
    if slo:
        lines.append(slo_line(slo))
    return "\n".join(lines) + "\n"


def slo_line(slo: dict) -> str:
    goal = f"{slo['target'] * 100:g}% resolved within {fmt_duration(slo['objective_s'])}"
    if not slo["counted"]:
        return f"SLO {goal}: no incident to count yet"
    burn = slo["budget_burn"]
    return (
        f"SLO {goal}: {slo['met']}/{slo['counted']} ({slo['ratio'] * 100:.1f}%),"
        f" error budget burned {burn * 100:.0f}%" + (" (overspent)" if burn > 1 else "")
    )


def run(args) -> int:
    from selfheal.cli import ExitCode

    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    runbooks: list[str] = []
    costs: dict[str, float] = {}
    budget = None
    if args.policy:
        from selfheal.policy.model import load_policy

        policy = load_policy(args.policy)
        runbooks = list(policy.runbooks)
        costs = {name: book.cost for name, book in policy.runbooks.items()}
        budget = policy.limits.daily_cost_budget
    objective = None
    if args.slo_mttr:
        try:
            objective = parse_duration(args.slo_mttr).total_seconds()
        except ValueError as exc:
            raise ConfigError(str(exc), "--slo-mttr") from None
        if objective <= 0:
            raise ConfigError("must be a positive duration", "--slo-mttr")
    if not 0.0 < args.slo_target < 1.0:
        raise ConfigError("must be between 0 and 1 (exclusive)", "--slo-target")
    with open_existing_store(args.store) as store:
        facts = collect(store, since, until)
    slo = None
    if objective is not None:
        slo = slo_burn(facts, objective, args.slo_target, until or datetime.now(UTC))
    data = summarise(facts, runbooks, costs=costs, daily_budget=budget, slo=slo)
    if args.html:
        from pathlib import Path

        from selfheal.reporting.html import DEFAULT_TITLE, render_report_html

        page = render_report_html(data, title=args.title or DEFAULT_TITLE)
        try:
            Path(args.html).write_text(page, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write ({exc.strerror})", args.html) from exc
    if args.format == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render_table(data), end="")
    return ExitCode.OK
