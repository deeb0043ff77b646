"""`selfheal chaos list|validate|inject|run|history`: fault injection and chaos experiments
on the lab fleet (see docs/chaos.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from selfheal.cli import ExitCode


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chaos",
        help="inject faults into the lab fleet and run chaos experiments",
        description="Faults (playbooks/chaos/*.yml) against hosts of the lab inventory, and "
        "experiments (steady state, method, expected healing, rollbacks) with MTTD/MTTR.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    inv = argparse.ArgumentParser(add_help=False)
    inv.add_argument(
        "--inventory",
        type=Path,
        help="the lab's generated inventory (default: the default lab's, "
        "<state-dir>/inventory/hosts.yml)",
    )
    inv.add_argument("--json", action="store_true", help="print JSON")

    p = actions.add_parser("list", help="the faults and the experiments")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_list)

    p = actions.add_parser("validate", parents=[inv], help="check experiment files")
    p.add_argument("experiments", nargs="+", metavar="EXPERIMENT", help="file or name")
    p.add_argument("--no-inventory", action="store_true", help="check the file only, not its hosts")
    p.set_defaults(func=run_validate)

    p = actions.add_parser(
        "inject", parents=[inv], help="one fault: inject, hold, roll back (always)"
    )
    p.add_argument("fault", help="a fault name (see `selfheal chaos list`)")
    p.add_argument("--target", required=True, help="a host of the inventory")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PARAM=VALUE",
        help="a fault parameter (repeatable)",
    )
    p.add_argument("--hold", type=float, default=10.0, help="seconds to keep the fault (10)")
    p.set_defaults(func=run_inject)

    p = actions.add_parser("run", parents=[inv], help="run an experiment")
    p.add_argument("experiment", help="an experiment file, or a name from `chaos list`")
    p.add_argument(
        "--rollback",
        choices=("always", "deviated", "never"),
        default="always",
        help="when to roll the faults back (default always; a failed method step or an "
        "interruption always rolls back)",
    )
    p.add_argument(
        "--audit-trail",
        type=Path,
        help="the audit trail to read the healing from (default $SELFHEAL_AUDIT_TRAIL)",
    )
    p.add_argument("--no-history", action="store_true", help="do not append to the history")
    p.set_defaults(func=run_run)

    p = actions.add_parser("history", parents=[inv], help="past runs and trends")
    p.add_argument("--experiment", help="only this experiment")
    p.add_argument("--limit", type=int, default=20, help="last N runs (20)")
    p.set_defaults(func=run_history)


def _inventory(args):
    from selfheal.chaos.inventory import LabInventory

    return LabInventory.load(args.inventory)


def _log(quiet: bool):
    def log(message: str) -> None:
        if not quiet:
            stamp = dt.datetime.now().strftime("%H:%M:%S")
            print(f"{stamp} {message}", file=sys.stderr, flush=True)

    return log


# -- list -----------------------------------------------------------------------------------
def run_list(args) -> int:
    from selfheal.chaos.experiment import list_experiments, load_experiment
    from selfheal.chaos.faults import FAULTS
    from selfheal.errors import ConfigError

    faults = [
        {
            "name": f.name,
            "playbook": f"playbooks/chaos/{f.playbook}",
            "does": f.summary,
            "rollback": f.rollback,
            "params": {
                p.name: {"default": p.default, "min": p.minimum, "max": p.maximum} for p in f.params
            },
            **({"sets": f.fixed} if f.fixed else {}),
            **({"netns_only": True} if f.netns_only else {}),
        }
        for f in FAULTS.values()
    ]
    experiments = []
    for path in list_experiments():
        try:
            exp = load_experiment(path)
            experiments.append(
                {
                    "name": exp.name,
                    "title": exp.title,
                    "faults": [s.label for s in exp.method],
                    "heal": exp.heal.playbook if exp.heal else None,
                }
            )
        except ConfigError as exc:
            experiments.append({"name": path.stem, "error": str(exc)})
    if args.json:
        print(json.dumps({"faults": faults, "experiments": experiments}, indent=2))
        return ExitCode.OK
    print("FAULTS")
    for f in faults:
        params = ", ".join(
            f"{k}={v['default']}" + (f" (max {v['max']:g})" if v["max"] is not None else "")
            for k, v in f["params"].items()
        )
        print(f"  {f['name']:18} {f['does']}")
        print(f"  {'':18} rollback: {f['rollback']}" + (f"; params: {params}" if params else ""))
    print("EXPERIMENTS")
    for e in experiments:
        if "error" in e:
            print(f"  {e['name']:28} INVALID: {e['error']}")
        else:
            heal = f" (heal: {e['heal']})" if e["heal"] else ""
            print(f"  {e['name']:28} {e['title']}{heal}")
    return ExitCode.OK


# -- validate -------------------------------------------------------------------------------
def run_validate(args) -> int:
    from selfheal.chaos.experiment import load_experiment
    from selfheal.errors import ConfigError

    inventory = None if args.no_inventory else _inventory(args)
    bad = 0
    results = []
    for name in args.experiments:
        try:
            exp = load_experiment(name)
            if inventory is not None:
                try:
                    exp.check_against(inventory)
                except ConfigError as exc:
                    raise ConfigError(str(exc), exp.path.name if exp.path else None) from None
            results.append({"experiment": name, "ok": True})
        except ConfigError as exc:
            bad += 1
            results.append({"experiment": name, "ok": False, "error": str(exc)})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['experiment']}: ok" if r["ok"] else r["error"])
    return ExitCode.USAGE if bad else ExitCode.OK


# -- inject ---------------------------------------------------------------------------------
def _param_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def run_inject(args) -> int:
    from selfheal.chaos.engine import Interrupted, PlaybookExecutor, SignalGuard
    from selfheal.chaos.experiment import Step
    from selfheal.chaos.faults import get_fault
    from selfheal.errors import ConfigError

    inventory = _inventory(args)
    fault = get_fault(args.fault, "fault")
    inventory.check_host(args.target, "--target")
    raw = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"expected PARAM=VALUE (got {item!r})", "--set")
        raw[key] = _param_value(value)
    params = fault.check_params(raw, "--set")
    if service := fault.service(params):
        inventory.check_service(args.target, service, "--set service")
    if not 0 <= args.hold <= 600:
        raise ConfigError("must be between 0 and 600 seconds", "--hold")
    step = Step(fault, args.target, params)
    log = _log(args.json)
    base = Path(tempfile.mkdtemp(prefix="selfheal-chaos-"))
    executor = PlaybookExecutor(inventory, base)
    report: dict = {"fault": fault.name, "target": args.target, "params": params}
    code = ExitCode.OK
    guard = SignalGuard(log)
    try:
        with guard:
            try:
                log(f"{step.label}: injecting")
                outcome = executor.fault(step, "inject")
                report["inject"] = outcome.to_dict()
                log(f"{step.label}: {outcome.status} {outcome.reason}".rstrip())
                if outcome.status == "done":
                    guard.sleep(args.hold)
                elif outcome.status == "failed":
                    code = ExitCode.FAILURE
            except Interrupted as exc:
                report["interrupted"] = str(exc)
                code = 128 + exc.signum
            finally:
                guard.protected = True
                log(f"{step.label}: rolling back")
                rollback = executor.fault(step, "rollback")
                report["rollback"] = rollback.to_dict()
                log(f"{step.label}: rollback {rollback.status} {rollback.reason}".rstrip())
                if rollback.status == "failed":
                    code = ExitCode.FAILURE
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        inject, rollback = report.get("inject") or {}, report.get("rollback") or {}
        held = "interrupted" if "interrupted" in report else f"held {args.hold:g}s"
        if inject.get("status") != "done":
            held = inject.get("reason") or inject.get("status", "not injected")
        print(
            f"{step.label}: {inject.get('status', 'not injected')} ({held}); "
            f"rollback {rollback.get('status', 'not run')}"
        )
    return code


# -- run ------------------------------------------------------------------------------------
def _fmt(seconds) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"


def print_report(report: dict, out=sys.stdout) -> None:
    def line(text: str = "") -> None:
        print(text, file=out)

    line(f"experiment {report['experiment']}: {report['title']}")
    line(f"result: {report['status'].upper()}")
    before = report["steady_state_before"]
    line(f"steady state before: {'met' if all(r['ok'] for r in before) else 'NOT met'}")
    for r in before:
        line(f"  {'ok  ' if r['ok'] else 'FAIL'} {r['name']}: {r['detail']}")
    for m in report["method"]:
        extra = f" ({m['reason']})" if m.get("reason") else ""
        line(f"method: {m['fault']} on {m['target']}: {m['status']}{extra}")
    det = report.get("detection") or {}
    if det:
        line(f"detection ({det.get('source')}): {det.get('detail', '-')}")
    if report.get("heal"):
        heal = report["heal"]
        line(f"heal: {heal['playbook']}: {heal['status']} {_fmt(heal.get('seconds'))}")
    if report.get("steady_state_after"):
        after = report["steady_state_after"]
        line(f"steady state after: {'met' if all(r['ok'] for r in after) else 'NOT met'}")
    line(f"MTTD: {_fmt(report.get('mttd'))} (fault -> detection by {det.get('source', '-')})")
    line(f"MTTR: {_fmt(report.get('mttr'))} (fault -> steady state again)")
    automation = report.get("automation") or {}
    if automation.get("source"):
        line(f"automation ({automation['source']}):")
        for item in automation.get("actions") or ["  nothing recorded"]:
            line(f"  {item}")
    elif automation.get("note"):
        line(f"automation: {automation['note']}")
    for e in report.get("expectations", []):
        mark = {True: "met   ", False: "MISSED", None: "skip  "}[e["met"]]
        line(f"  {mark} {e['expectation']}" + (f" ({e['note']})" if e.get("note") else ""))
    for r in report.get("rollbacks", []):
        extra = f" ({r['reason']})" if r.get("reason") else ""
        line(f"rollback: {r['fault']} on {r['target']}: {r['status']}{extra}")
    if report.get("steady_state_after_rollback"):
        ok = all(r["ok"] for r in report["steady_state_after_rollback"])
        line(f"steady state after rollback: {'met' if ok else 'NOT met'}")
    for note in report.get("notes", []):
        line(f"note: {note}")
    if report.get("missed"):
        line("missed:")
        for item in report["missed"]:
            line(f"  - {item}")


def run_run(args) -> int:
    from selfheal.chaos import audit, history
    from selfheal.chaos.engine import ExperimentRunner, PlaybookExecutor
    from selfheal.chaos.experiment import load_experiment

    exp = load_experiment(args.experiment)
    inventory = _inventory(args)
    exp.check_against(inventory)
    base = Path(tempfile.mkdtemp(prefix="selfheal-chaos-"))
    try:
        runner = ExperimentRunner(
            exp,
            inventory,
            PlaybookExecutor(inventory, base),
            rollback=args.rollback,
            audit=audit.configured(args.audit_trail),
            log=_log(args.json),
        )
        run = runner.run()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report = run.to_dict()
    if not args.no_history:
        history.append(history.history_path(inventory.chaos_dir), report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    if run.status == "interrupted" and runner.guard.received:
        return 128 + runner.guard.received
    if run.status in ("passed", "skipped"):
        return ExitCode.OK
    return ExitCode.NEGATIVE


# -- history --------------------------------------------------------------------------------
def run_history(args) -> int:
    from selfheal.chaos import history

    inventory = _inventory(args)
    entries = history.read(history.history_path(inventory.chaos_dir))
    if args.experiment:
        entries = [e for e in entries if e.get("experiment") == args.experiment]
    trends = history.trends(entries)
    recent = entries[-args.limit :] if args.limit > 0 else entries
    if args.json:
        print(json.dumps({"runs": recent, "trends": trends}, indent=2))
        return ExitCode.OK
    if not entries:
        print(f"no chaos runs recorded in {history.history_path(inventory.chaos_dir)}")
        return ExitCode.OK
    header = ("WHEN (UTC)", "EXPERIMENT", "RESULT", "MTTD", "MTTR", "MISSED")
    rows = []
    for e in recent:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.get("started_at") or 0))
        missed = "; ".join(e.get("missed") or []) or "-"
        rows.append(
            (
                when,
                str(e.get("experiment")),
                str(e.get("status")),
                _fmt(e.get("mttd")),
                _fmt(e.get("mttr")),
                missed[:70],
            )
        )
    _table(header, rows)
    print()
    header = ("EXPERIMENT", "RUNS", "PASSED", "MTTD MEDIAN", "MTTR MEDIAN", "LAST")
    _table(
        header,
        [
            (
                t["experiment"],
                str(t["runs"]),
                str(t["passed"]),
                _fmt(t["mttd_median"]),
                _fmt(t["mttr_median"]),
                str(t["last_status"]),
            )
            for t in trends
        ],
    )
    return ExitCode.OK


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
