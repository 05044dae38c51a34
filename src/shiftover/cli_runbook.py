"""`shiftover runbook` (being written)."""

from __future__ import annotations

from shiftover.errors import BadInput


def runbook() -> None:
    """Not written yet."""
    raise BadInput("shiftover runbook is not written yet")
