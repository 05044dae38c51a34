"""The journal (append-only events) and the lease, on SQLAlchemy Core.

SQLite file by default (``default_state_url``), PostgreSQL by URL. See
:mod:`shiftover.store.journal` for why it is built the way it is.
"""

from __future__ import annotations

from shiftover.store.journal import (
    DEFAULT_BUSY_TIMEOUT,
    SCHEMA_VERSION,
    Event,
    Lease,
    Store,
    default_state_url,
    open_store,
    operator_identity,
)

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "Event",
    "Lease",
    "Store",
    "default_state_url",
    "open_store",
    "operator_identity",
]
