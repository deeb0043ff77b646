"""Helpers shared by `selfheal postmortem` and `selfheal report`."""

from __future__ import annotations

from pathlib import Path

from selfheal.errors import ConfigError
from selfheal.store import Store, open_store


def open_existing_store(location: str) -> Store:
    """Open the store at `location`; a SQLite path must already exist (reports never create
    an empty database)."""
    if not location.startswith(("postgresql://", "postgres://")) and not Path(location).is_file():
        raise ConfigError("no such store", location)
    return open_store(location)
