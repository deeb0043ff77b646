"""The JSONL history and its trends."""

from __future__ import annotations

from pathlib import Path

from selfheal.chaos import history


def test_append_read_trends(tmp_path: Path) -> None:
    path = history.history_path(tmp_path / "chaos")
    for i, (status, mttd, mttr) in enumerate(
        [("passed", 1.0, 10.0), ("failed", 2.0, None), ("passed", 3.0, 12.0)]
    ):
        history.append(
            path,
            {
                "id": str(i),
                "experiment": "kill",
                "status": status,
                "mttd": mttd,
                "mttr": mttr,
                "started_at": i,
                "detection": {"source": "probe"},
                "huge": "x" * 1000,
            },
        )
    history.append(path, {"experiment": "other", "status": "aborted"})
    with path.open("a") as f:
        f.write('{"torn": ')  # an interrupted writer
    entries = history.read(path)
    assert len(entries) == 4 and "huge" not in entries[0]
    assert entries[0]["detection_source"] == "probe"
    kill, other = history.trends(entries)
    assert kill == {
        "experiment": "kill",
        "runs": 3,
        "passed": 2,
        "mttd_median": 2.0,
        "mttr_median": 11.0,
        "last_status": "passed",
        "last_run": 2,
    }
    assert other["runs"] == 1 and other["mttd_median"] is None
    assert history.read(tmp_path / "none.jsonl") == []
