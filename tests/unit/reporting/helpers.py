"""Build a real SQLiteStore and audit trail through their public APIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from selfheal.alerts import normalise
from selfheal.audit import AuditTrail, Keyring
from selfheal.store import SQLiteStore

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rfc(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def alerts(name: str, labels: dict, status: str, starts: datetime, received: datetime):
    """Alertmanager-shaped webhook body, normalised."""
    body = {
        "version": "4",
        "status": status,
        "receiver": "selfheal",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": name, **labels},
                "annotations": {"summary": f"{name} on {labels.get('instance')}"},
                "startsAt": rfc(starts),
                "endsAt": rfc(received) if status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph",
            }
        ],
    }
    return normalise("alertmanager", body, received_at=received)


def fire(store, name: str, service: str, starts: float, opened: float) -> int:
    labels = {"service": service, "instance": f"{service}1"}
    result = store.accept(alerts(name, labels, "firing", at(starts), at(opened)), now=at(opened))
    return result[0].incident_id


def resolve(store, name: str, service: str, starts: float, resolved: float) -> None:
    labels = {"service": service, "instance": f"{service}1"}
    store.accept(alerts(name, labels, "resolved", at(starts), at(resolved)), now=at(resolved))


def selection(service: str, runbook: str | None, target: str) -> dict:
    return {
        "code": "selection",
        "message": "what the decision selected",
        "effect": "info",
        "service": service,
        "runbook": runbook,
        "target": target,
    }


def run_to_end(store, incident_id, runbook, target, status, rc, start, end, pdd=None, reason=""):
    run = store.enqueue_run(incident_id, runbook, target, now=at(start))
    claimed = store.claim_next_run("w1", 600, now=at(start + 1))
    assert claimed is not None and claimed.id == run.id
    if pdd is not None:
        store.set_private_data_dir(run.id, str(pdd))
    return store.finish_run(
        run.id, status, rc=rc, worker_id="w1", reason=reason or status, now=at(end)
    )


@pytest.fixture
def store(tmp_path: Path):
    with SQLiteStore(tmp_path / "state" / "selfheal.db") as s:
        yield s


@pytest.fixture
def keyring(tmp_path: Path) -> tuple[Keyring, Path]:
    ring = Keyring.generate()
    path = tmp_path / "audit.key"
    ring.save(path)
    return ring, path


@pytest.fixture
def trail_dir(tmp_path: Path, keyring) -> Path:
    path = tmp_path / "trail"
    with AuditTrail(path, keyring[0]) as trail:
        trail.append({"action": "dispatcher.decision", "incident_id": "1", "outcome": "auto"})
        trail.append({"action": "run.finish", "incident_id": "1", "outcome": "succeeded"})
        trail.append({"action": "dispatcher.decision", "incident_id": "2", "outcome": "manual"})
    return path
