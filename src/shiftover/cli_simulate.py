"""`shiftover simulate` (being written)."""

from __future__ import annotations

from shiftover.errors import BadInput


def simulate() -> None:
    """Not written yet."""
    raise BadInput("shiftover simulate is not written yet")
