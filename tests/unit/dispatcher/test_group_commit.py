"""The event loop's side of the group commit: the requests of one loop iteration share one
hand-off and one transaction, each gets its own results, and a submission the store refuses
fails alone."""

from __future__ import annotations

import asyncio
import json

import pytest
from unit.dispatcher.helpers import am_alert, am_body

from selfheal.alerts import normalise
from selfheal.errors import SelfhealError


def _alerts(name: str, n: int = 1) -> list:
    body = am_body(*(am_alert({"alertname": name, "instance": f"web{i}"}) for i in range(n)))
    return normalise("alertmanager", json.dumps(body).encode())


def _batches(d) -> int:
    return sum(d.metrics.accept_batch._counts)


def test_one_loop_iteration_is_one_transaction(make_dispatcher) -> None:
    d, _ = make_dispatcher()
    submissions = [_alerts(f"Group{i}", n=1 + i % 3) for i in range(20)]
    before = _batches(d)

    async def submit_all():
        # no await between the submissions: they all arrive in one loop iteration
        futures = [d.submit_async(alerts) for alerts in submissions]
        return await asyncio.gather(*futures)

    results = asyncio.run(submit_all())
    assert _batches(d) - before == 1
    for alerts, got in zip(submissions, results, strict=True):
        assert [r.fingerprint for r in got] == [a.fingerprint for a in alerts]
        assert all(r.decision == "new" for r in got)
    ids = [r.alert_id for got in results for r in got]
    assert len(set(ids)) == len(ids) == sum(len(a) for a in submissions)


def test_refused_submission_fails_alone(make_dispatcher, monkeypatch) -> None:
    d, _ = make_dispatcher()
    real_accept = d.store.accept

    def accept(alerts, **kw):
        if any(a.name == "Poison" for a in alerts):
            raise SelfhealError("refused")
        return real_accept(alerts, **kw)

    monkeypatch.setattr(d.store, "accept", accept)
    good = [_alerts("Fine1"), _alerts("Fine2", n=2)]
    bad = _alerts("Poison")

    async def submit_all():
        futures = [d.submit_async(good[0]), d.submit_async(bad), d.submit_async(good[1])]
        return await asyncio.gather(*futures, return_exceptions=True)

    first, poisoned, second = asyncio.run(submit_all())
    assert isinstance(poisoned, SelfhealError)
    assert [r.decision for r in first] == ["new"]
    assert [r.decision for r in second] == ["new", "new"]
    stored = {i.name for i in d.store.list_incidents()}
    assert {"Fine1", "Fine2"} <= stored and "Poison" not in stored


@pytest.mark.parametrize("count", [1, 200])
def test_thread_submissions_still_work(make_dispatcher, count) -> None:
    d, _ = make_dispatcher()
    results = d.accept_now(_alerts("FromThread", n=count))
    assert len(results) == count and {r.decision for r in results} == {"new"}
