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

from shiftover.types import EnvCounts, Measurement, Weights


@runtime_checkable
class Provider(Protocol):
    def measure(self, *, now: float) -> Measurement: ...


@runtime_checkable
class SplitAwareProvider(Protocol):
    """A provider that must know the router's split: a ``compare`` gate restarts
    its test when the split changes (a new step). The engine passes the split it
    read this tick (None when the router could not be read)."""

    def measure(self, *, now: float, split: Weights | None = None) -> Measurement: ...


@runtime_checkable
class CountSource(Protocol):
    """Where a ``compare`` gate's counts come from: requests and errors of the old
    and the new environment in the span ``(since, now]``, exact integers.

    ``since`` is a time the source was already called with as ``now`` (the
    compare gate first calls ``counts(since=t, now=t)`` to mark a step's start,
    which is all zeros), so a source without history (HAProxy's cumulative
    counters) can keep the reading it took then. Counter resets (a reload, a
    restarted pod) are the source's to absorb: counts over a span never go down
    as ``now`` moves on. Raises ``NoData`` (nothing to count yet) or
    ``ProviderError`` (could not answer); never judges."""

    def counts(self, *, since: float, now: float) -> EnvCounts: ...

    def describe(self) -> str: ...
