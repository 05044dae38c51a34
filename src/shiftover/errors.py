"""Every error shiftover raises on purpose, in one place.

    ShiftoverError                 base; ``exit_code`` is what the CLI returns
    ├── BadInput (2)               the user can fix it: a flag, a file, a value
    │   └── PlanError (2)          a plan file problem, with file:line:col
    ├── RouterError (1)            the traffic backend refused or cannot be reached
    │   └── RouterConfigError (2)  the backend answers, but its target is not what the
    │       │                      plan says (no such record, listener or server)
    │       └── UnknownSplit (2)   its weights say no split (both 0, out of range, a third
    │                              target taking traffic): a write to 0% goes over it
    ├── ProviderError (1)          a metrics/alerts/probe backend failed to answer
    │   └── NoData                 it answered, but with nothing to judge
    ├── StoreError (1)             the journal or lease store failed
    │   └── StoreMissing           a read-only command found no state file (nothing ran yet)
    └── LeaseHeld (5)              another live run holds the router target's lease
        └── LeaseLost (5)          this run's own lease expired, was taken over, or its
                                   state file vanished: it must not write again

Every message says what was wrong, where, and how to fix it. The CLI prints
``str(error)`` and exits with ``error.exit_code``; it never shows a traceback
for these.
"""

from __future__ import annotations


class ShiftoverError(Exception):
    """Base of all deliberate shiftover errors."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class BadInput(ShiftoverError):
    """Input the user can fix (flags, files, values)."""

    exit_code = 2


class PlanError(BadInput):
    """A problem in a plan file. ``location`` is ``file:line:col`` when known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        where = self.location
        text = f"{where}: {message}" if where else message
        if field:
            text = f"{text} (field: {field})"
        super().__init__(text, hint=hint)
        self.reason = message

    @property
    def location(self) -> str:
        parts = [p for p in (self.file, self.line, self.column) if p is not None]
        return ":".join(str(p) for p in parts)


class RouterError(ShiftoverError):
    """The traffic router cannot be read or written."""


class RouterConfigError(RouterError):
    """The router's backend answered, and its target is not what the plan says (a
    record, listener, rule or target group that does not exist, record types that
    differ, two targets of two load balancers): the plan or the backend must be
    fixed; retrying will not help. Exit code 2 at preflight; during a run it holds
    like any unreadable router."""

    exit_code = 2


class UnknownSplit(RouterConfigError):
    """The backend's weights do not say what the split is: both 0 (Route53 then splits
    equally), a weight outside the backend's range, a third target taking traffic. A
    run refuses to start on it (exit 2; ``shiftover rollback`` repairs it), a running
    run holds; a write to 0% goes over it, so a rollback is never blocked by it."""


class ProviderError(ShiftoverError):
    """A provider could not get a measurement (connection, query or protocol error)."""


class NoData(ProviderError):
    """The provider answered but had nothing to measure (empty result, no samples)."""


class StoreError(ShiftoverError):
    """The journal or lease store failed."""


class StoreMissing(StoreError):
    """The SQLite state file does not exist and the store was opened with
    ``create=False`` (read-only commands never create one)."""


class LeaseHeld(ShiftoverError):
    """Another live run holds the lease on this service."""

    exit_code = 5


class LeaseLost(LeaseHeld):
    """This run no longer holds its lease (expired, taken over, released by someone
    else, or the state file it lives in was deleted or replaced). Whoever gets this
    must stop writing to the router; moving toward 0% stays allowed."""
