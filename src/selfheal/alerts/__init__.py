"""Alert intake: validate and normalise webhook bodies from many senders into one `Alert`.

    from selfheal.alerts import normalise, PayloadError, SubscriptionConfirmation

    alerts = normalise("alertmanager", body_bytes)   # list[Alert], or PayloadError

Sources: alertmanager, cloudwatch_sns, cloudwatch_eventbridge, azure_monitor, grafana and
generic (a JSON body read through a field mapping). See docs/alerts.md.
"""

from selfheal.alerts._parse import DEFAULT_LIMITS, Limits, parse_json
from selfheal.alerts.model import (
    SOURCES,
    STATUSES,
    Alert,
    PayloadError,
    SubscriptionConfirmation,
    compute_fingerprint,
)
from selfheal.alerts.normalise import DEFAULT_MAPPING, compile_mapping, normalise

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAPPING",
    "SOURCES",
    "STATUSES",
    "Alert",
    "Limits",
    "PayloadError",
    "SubscriptionConfirmation",
    "compile_mapping",
    "compute_fingerprint",
    "normalise",
    "parse_json",
]
