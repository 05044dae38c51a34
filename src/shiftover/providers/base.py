"""The Provider contract: where evidence comes from. Providers never judge.

``measure(now=...)`` returns a :class:`~shiftover.types.Measurement` or raises
:class:`~shiftover.errors.NoData` (answered, nothing to measure) or
:class:`~shiftover.errors.ProviderError` (could not answer). Turning a
measurement into PASS/FAIL/INCONCLUSIVE is the job of :mod:`shiftover.analysis`.

Providers are built once per run from a gate spec and may keep state between
calls (the HAProxy stats provider turns cumulative counters into per-interval
deltas this way).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shiftover.types import Measurement


@runtime_checkable
class Provider(Protocol):
    def measure(self, *, now: float) -> Measurement: ...
