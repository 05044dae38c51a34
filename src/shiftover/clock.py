"""Time, injected. The engine and analysis never read the clock directly.

``Clock.now()`` returns seconds (float, monotonic within a run is not required:
the journal stores wall time so that runs can be resumed by another process).
``Clock.sleep()`` lets tests fast-forward: :class:`shiftover.testing.FakeClock`
advances instantly.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock just advances)."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
