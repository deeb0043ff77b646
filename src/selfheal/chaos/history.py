"""Experiment results, one JSON line per run in <lab state dir>/chaos/history.jsonl."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

SUMMARY_FIELDS = (
    "id",
    "experiment",
    "title",
    "status",
    "started_at",
    "finished_at",
    "mttd",
    "mttr",
    "missed",
    "rollback_strategy",
    "timings",
)


def history_path(chaos_dir: Path) -> Path:
    return chaos_dir / "history.jsonl"


def append(path: Path, report: dict) -> dict:
    entry = {k: report.get(k) for k in SUMMARY_FIELDS}
    entry["detection_source"] = (report.get("detection") or {}).get("source")
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())  # one write on O_APPEND: lines never interleave
    finally:
        os.close(fd)
    return entry


def read(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a torn last line: skip it
        if isinstance(item, dict):
            out.append(item)
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def trends(entries: list[dict]) -> list[dict]:
    """Per experiment: runs, passes, MTTD/MTTR medians and the latest result."""
    by_name: dict[str, list[dict]] = {}
    for e in entries:
        by_name.setdefault(str(e.get("experiment")), []).append(e)
    rows = []
    for name, runs in sorted(by_name.items()):
        mttd = [float(r["mttd"]) for r in runs if r.get("mttd") is not None]
        mttr = [float(r["mttr"]) for r in runs if r.get("mttr") is not None]
        rows.append(
            {
                "experiment": name,
                "runs": len(runs),
                "passed": sum(1 for r in runs if r.get("status") == "passed"),
                "mttd_median": _median(mttd),
                "mttr_median": _median(mttr),
                "last_status": runs[-1].get("status"),
                "last_run": runs[-1].get("started_at"),
            }
        )
    return rows
