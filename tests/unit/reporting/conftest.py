"""Fixtures: a real store and audit trail (see helpers)."""

from unit.reporting.helpers import keyring, store, trail_dir  # noqa: F401
