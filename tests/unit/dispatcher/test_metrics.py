"""The Prometheus text format of the dispatcher's metrics."""

from __future__ import annotations

from selfheal.dispatcher.metrics import Metrics


def test_render_text_format() -> None:
    m = Metrics(lambda: 3, lambda: 0)
    m.alerts.inc(source="grafana")
    m.alerts.inc(source="grafana")
    m.decisions.inc(mode="deny", reason='say "no"\n')
    m.mttr.observe(42)
    text = m.render().decode()
    assert 'selfheal_alerts_received_total{source="grafana"} 2' in text
    assert 'selfheal_decisions_total{mode="deny",reason="say \\"no\\"\\n"} 1' in text
    assert 'selfheal_mttr_seconds_bucket{le="30"} 0' in text
    assert 'selfheal_mttr_seconds_bucket{le="60"} 1' in text
    assert 'selfheal_mttr_seconds_bucket{le="+Inf"} 1' in text
    assert "selfheal_mttr_seconds_count 1" in text
    assert "selfheal_run_queue_depth 3" in text
    assert "# TYPE selfheal_mttd_seconds histogram" in text
