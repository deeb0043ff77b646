"""Health endpoints for Python services: `/livez` (the process itself) and `/readyz`
(its dependencies), for WSGI and ASGI, standard library only.

    from selfheal.health import HealthRegistry, make_wsgi_app, tcp

    health = HealthRegistry()
    health.add_liveness("worker", worker_thread.is_alive)
    health.add_readiness("db", tcp("db.internal", 5432), timeout=0.5)
    application = make_wsgi_app(health, application)
"""

from __future__ import annotations

from .asgi import make_asgi_app
from .probes import (
    POSTGRES_DRIVER_MISSING,
    CheckFailed,
    DependencyProbe,
    event_loop_responsive,
    http,
    postgres,
    tcp,
    thread_alive,
)
from .redact import redact
from .registry import (
    DEFAULT_TIMEOUT,
    DEFAULT_TTL,
    FAIL,
    LIVENESS,
    OK,
    READINESS,
    CheckResult,
    HealthRegistry,
    HealthReport,
)
from .wsgi import make_wsgi_app

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_TTL",
    "FAIL",
    "LIVENESS",
    "OK",
    "POSTGRES_DRIVER_MISSING",
    "READINESS",
    "CheckFailed",
    "CheckResult",
    "DependencyProbe",
    "HealthRegistry",
    "HealthReport",
    "event_loop_responsive",
    "http",
    "make_asgi_app",
    "make_wsgi_app",
    "postgres",
    "redact",
    "tcp",
    "thread_alive",
]
