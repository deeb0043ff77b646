from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from selfheal.alerts import Alert, compute_fingerprint
from selfheal.store import SQLiteStore

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def make_alert(
    instance: str = "web1",
    status: str = "firing",
    *,
    name: str = "ServiceDown",
    starts_at: datetime | None = T0,
    ends_at: datetime | None = None,
    raw: object = None,
) -> Alert:
    labels = {"alertname": name, "instance": instance}
    return Alert(
        source="generic",
        status=status,
        name=name,
        labels=labels,
        annotations={"summary": f"{name} on {instance}"},
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=compute_fingerprint("generic", labels),
        generator_url="",
        received_at=T0,
        raw={"instance": instance, "status": status} if raw is None else raw,
    )


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path):
    with SQLiteStore(tmp_path / "state.db") as db:
        yield db
