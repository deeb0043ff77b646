"""Log-rate anomaly: error lines per minute against their baseline."""

from __future__ import annotations

import json

from unit.logs.samples import nginx_burst

from selfheal.cli import main
from selfheal.logs.parsers import load_definitions
from selfheal.logs.rate import error_rate_series, score_series

END = 1_772_449_200  # 2026-03-02 11:00 UTC


def _series(text: str):
    parser = load_definitions()["nginx"]
    return error_rate_series((parser.parse(line), "nginx") for line in text.splitlines())


def test_errors_are_counted_per_minute_with_zeros_between() -> None:
    series, summary = _series(nginx_burst(minutes=150, burst_at=148, end=END))
    assert len(series) == 150
    assert [t for t, _ in series] == [series[0][0] + 60 * i for i in range(150)]
    assert series[148][1] >= 40
    assert summary.errors == sum(v for _, v in series)
    assert summary.parsed == summary.lines


def test_a_burst_after_a_quiet_baseline_is_the_only_anomaly() -> None:
    series, _ = _series(nginx_burst(minutes=150, burst_at=148, end=END))
    detections = score_series(series, "5xx lines/min")
    anomalous = [i for i, d in enumerate(detections) if d.anomalous]
    assert anomalous == [148]
    assert "5xx lines/min" in detections[148].reason


def test_no_burst_no_anomaly() -> None:
    series, _ = _series(nginx_burst(minutes=150, burst_at=-1, end=END))
    assert not any(d.anomalous for d in score_series(series))


def test_cli_rate(tmp_path, capsys) -> None:
    log = tmp_path / "access.log"
    log.write_text(nginx_burst(minutes=150, burst_at=148, end=END))
    assert main(["logs", "rate", str(log), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["anomalies"] == 1 and out["minutes"] == 150
    assert out["points"][0]["value"] >= 40
    log.write_text(nginx_burst(minutes=150, burst_at=-1, end=END))
    assert main(["logs", "rate", str(log), "--format", "nginx"]) == 0
    assert "0 anomalies" in capsys.readouterr().out
