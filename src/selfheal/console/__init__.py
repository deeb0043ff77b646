"""The operator console: a static web UI served by `selfheal serve` at ``/ui/``, and the few
read endpoints it needs beyond the dispatcher's API (``/whoami``, ``/freeze``, ``/runs``,
``/runs/{id}/log``, ``/incidents/{id}/timeline``, the report page). See docs/console.md.

Every permission is checked by the API (the token's scopes, from its console role); the UI
only hides what the role may not do.
"""

from __future__ import annotations

from selfheal.console.roles import console_role_of

__all__ = ["console_role_of"]
