"""The journal (append-only events) and the lease, on SQLAlchemy Core.

SQLite file by default (``default_state_url``: one per host, or ``$SHIFTOVER_STATE``),
PostgreSQL by URL. See :mod:`shiftover.store.journal` for the API and why it is
built the way it is.
"""

from __future__ import annotations

from shiftover.store.journal import (
    DEFAULT_BUSY_TIMEOUT,
    SCHEMA_VERSION,
    STATE_ENV_VAR,
    Event,
    Lease,
    Store,
    StoreMissing,
    default_state_url,
    open_store,
    operator_identity,
    state_url,
)

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "STATE_ENV_VAR",
    "Event",
    "Lease",
    "Store",
    "StoreMissing",
    "default_state_url",
    "open_store",
    "operator_identity",
    "state_url",
]
