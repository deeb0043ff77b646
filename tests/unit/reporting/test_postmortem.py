"""The postmortem draft: sections, MTTD/MTTR, timeline, audit, redaction, CLI."""

from __future__ import annotations

import json
from pathlib import Path

from unit.reporting.helpers import at, fire, resolve, run_to_end, selection

from selfheal.audit import list_segments
from selfheal.cli import ExitCode, main
from selfheal.reporting import build, gather, load_audit, to_html, to_markdown

SECRET = "hunter2-very-secret"


def _scenario(store, tmp_path: Path) -> int:
    """Alert starts at T0, incident opens at +90 s, the runbook succeeds, resolved at +300 s."""
    i = fire(store, "HighLatency", "web", 0, 90)
    store.record_decision(
        i,
        "auto",
        [
            {"code": "rule", "message": "rule web-latency matched", "effect": "auto"},
            selection("web", "restart-web", "web1"),
        ],
        at=at(95),
    )
    pdd = tmp_path / "runs" / "run-1-1"
    (pdd / "artifacts" / "abc").mkdir(parents=True)
    stdout = "TASK [restart web] ok: [web1]\n" + "x" * 6000 + f"\ndb_password={SECRET}\ndone\n"
    (pdd / "artifacts" / "abc" / "stdout").write_text(stdout)
    run_to_end(store, i, "restart-web", "web1", "succeeded", 0, 100, 200, pdd, "verified")
    resolve(store, "HighLatency", "web", 0, 300)
    child = fire(store, "WebErrors", "api", 50, 120)
    store.fold(child, i, "api depends on web")
    return i


def test_markdown_sections_and_numbers(store, tmp_path) -> None:
    i = _scenario(store, tmp_path)
    facts = gather(store, store.get_incident(i))
    assert facts.mttd_s == 90.0
    assert facts.mttr_s == 210.0
    text = to_markdown(build(facts))
    for title in (
        "Summary",
        "Impact",
        "Detection",
        "Timeline",
        "What the automation tried",
        "What the runbook did",
        "Root-cause candidates",
        "Action items",
    ):
        assert f"\n## {title}\n" in text
    assert "Time to detect (MTTD): 1m30s" in text
    assert "Time to resolve (MTTR): 3m30s" in text
    assert "Outcome: auto-resolved" in text
    assert "rule: rule web-latency matched" in text
    assert "run succeeded" in text and "rc 0" in text
    assert "| verification |" in text
    assert "incident resolved" in text
    assert f"#{i + 1} WebErrors" in text  # the folded symptom is a root-cause candidate
    # the timeline is in time order
    timeline = text.split("## Timeline")[1].split("## What")[0]
    assert timeline.index("alert starts") < timeline.index("incident opened")
    assert timeline.index("run started") < timeline.index("incident resolved")


def test_runbook_output_redacted_and_truncated(store, tmp_path) -> None:
    i = _scenario(store, tmp_path)
    text = to_markdown(build(gather(store, store.get_incident(i))))
    assert SECRET not in text
    assert "db_password=********" in text
    assert "[... truncated ...]" in text
    assert "x" * 4001 not in text


def test_audit_records_of_the_incident(store, tmp_path, trail_dir, keyring) -> None:
    i = _scenario(store, tmp_path)
    audit = load_audit(str(trail_dir), keyring[0], i)
    assert audit.ok
    assert [r["action"] for r in audit.records] == ["dispatcher.decision", "run.finish"]
    text = to_markdown(build(gather(store, store.get_incident(i)), audit))
    assert "Audit trail: verified intact (3 records" in text
    assert "audit: run.finish" in text


def test_tampered_trail_is_reported(store, tmp_path, trail_dir, keyring) -> None:
    i = _scenario(store, tmp_path)
    segment = list_segments(trail_dir)[0]
    lines = segment.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["outcome"] = "failed"
    lines[1] = json.dumps(record).encode() + b"\n"
    segment.write_bytes(b"".join(lines))
    audit = load_audit(str(trail_dir), keyring[0], i)
    assert not audit.ok
    assert "VERIFICATION FAILED" in audit.summary
    out = tmp_path / "pm.md"
    rc = main(
        [
            "postmortem",
            str(i),
            "--store",
            str(store.path),
            "--audit",
            str(trail_dir),
            "--key-file",
            str(keyring[1]),
            "--out",
            str(out),
        ]
    )
    assert rc == ExitCode.NEGATIVE
    assert "VERIFICATION FAILED" in out.read_text()


def test_html_is_self_contained_and_escaped(store, tmp_path) -> None:
    i = _scenario(store, tmp_path)
    page = to_html(build(gather(store, store.get_incident(i))))
    assert page.startswith("<!DOCTYPE html>")
    assert "<h2>Timeline</h2>" in page and "<table>" in page
    assert "<script" not in page and "http" not in page.split("<body>")[0]
    assert SECRET not in page


def test_cli_writes_markdown_and_html(store, tmp_path, trail_dir, keyring, capsys) -> None:
    i = _scenario(store, tmp_path)
    base = ["postmortem", str(i), "--store", str(store.path)]
    assert main(base) == ExitCode.OK
    assert "# Postmortem draft: incident #1 HighLatency" in capsys.readouterr().out
    out = tmp_path / "pm.html"
    args = [*base, "--audit", str(trail_dir), "--key-file", str(keyring[1])]
    assert main([*args, "--format", "html", "--out", str(out)]) == ExitCode.OK
    assert "verified intact" in out.read_text()


def test_cli_unknown_incident_and_missing_store(store, tmp_path, capsys) -> None:
    assert main(["postmortem", "999", "--store", str(store.path)]) == ExitCode.USAGE
    assert "no incident 999" in capsys.readouterr().err
    missing = tmp_path / "nothing.db"
    assert main(["postmortem", "1", "--store", str(missing)]) == ExitCode.USAGE
    assert not missing.exists()
