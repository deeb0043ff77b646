"""The one Alert model every intake source is normalised to, and its fingerprint rule."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from selfheal.errors import ConfigError

SOURCES = (
    "alertmanager",
    "cloudwatch_sns",
    "cloudwatch_eventbridge",
    "azure_monitor",
    "grafana",
    "generic",
)
STATUSES = ("firing", "resolved")


class PayloadError(ConfigError):
    """An alert payload that cannot be accepted. The message names the bad field path,
    e.g. ``alerts[0].labels: must be an object of strings``; ``path`` holds the path alone."""


def compute_fingerprint(source: str, labels: Mapping[str, str]) -> str:
    """sha256 (hex) over the source and the sorted identifying labels.

    Annotations, timestamps and status are left out on purpose: the firing and the resolved
    notification of one alert get the same fingerprint.
    """
    body = json.dumps([source, sorted(labels.items())], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Alert:
    """One normalised alert. Content is untrusted data: plain strings, never evaluated.

    ``labels`` identify the alert (they make the fingerprint); ``annotations`` describe it.
    Both are read-only mappings of str to str. ``raw`` is the sender's own JSON object for
    this alert (for the audit trail); treat it as read-only.
    """

    source: str
    status: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    fingerprint: str
    generator_url: str
    received_at: datetime
    raw: Any = field(default=None, compare=False, repr=False)
    # Who delivered it: the intake token's name, or "source:<name>" for a signed or open
    # source. Set by the server, never by the payload; the requester of its remediation.
    sender: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        for name in ("starts_at", "ends_at", "received_at"):
            value = getattr(self, name)
            if value is not None:
                if value.utcoffset() is None:
                    raise ValueError(f"{name} must be an aware datetime")
                object.__setattr__(self, name, value.astimezone(UTC))
        # Private read-only copies: a caller mutating its dict cannot change the alert.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))

    __hash__ = None  # type: ignore[assignment]  # carries mappings; compare, do not hash

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as RFC 3339 UTC strings), raw included."""

        def ts(value: datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value else None

        return {
            "source": self.source,
            "status": self.status,
            "name": self.name,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": ts(self.starts_at),
            "ends_at": ts(self.ends_at),
            "fingerprint": self.fingerprint,
            "generator_url": self.generator_url,
            "received_at": ts(self.received_at),
            "raw": self.raw,
        }


@dataclass(frozen=True)
class SubscriptionConfirmation:
    """An AWS SNS ``SubscriptionConfirmation`` (or ``UnsubscribeConfirmation``) message.

    Not an alert: the server confirms the subscription by fetching ``subscribe_url`` (after
    verifying the message signature). Nothing here fetches anything.
    """

    kind: str  # SubscriptionConfirmation | UnsubscribeConfirmation
    topic_arn: str
    subscribe_url: str
    token: str
    message_id: str
    raw: Any = field(default=None, compare=False, repr=False)
