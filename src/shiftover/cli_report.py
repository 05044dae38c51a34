"""`shiftover report` (being written)."""

from __future__ import annotations

from shiftover.errors import BadInput


def report() -> None:
    """Not written yet."""
    raise BadInput("shiftover report is not written yet")
