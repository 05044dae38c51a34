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

import math
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from shiftover.errors import ProviderError
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

    ``since`` is a time the source was already called with as ``now``: the
    ``now`` of the previous call (a new step is counted from the check before
    it, so the interval in which the step began is not lost), or, without one,
    ``now`` itself (``counts(since=t, now=t)`` marks a step's start: all zeros).
    A source without history (HAProxy's cumulative counters) keeps its latest
    reading for this. Counter resets (a reload, a
    restarted pod) are the source's to absorb: counts over a span never go down
    as ``now`` moves on. Raises ``NoData`` (nothing to count yet) or
    ``ProviderError`` (could not answer); never judges."""

    def counts(self, *, since: float, now: float) -> EnvCounts: ...

    def describe(self) -> str: ...


def whole_count(total: float, what: str, hint: str) -> int:
    """A summed metric as a count (CloudWatch's and Datadog's sums): rounded only when
    within 1e-6 of a whole number; anything else is a ProviderError saying what."""
    if not math.isfinite(total) or total < 0:
        raise ProviderError(f"{what} summed to {total:g}, which is not a count", hint=hint)
    count = round(total)
    if abs(total - count) > 1e-6:
        raise ProviderError(f"{what} summed to {total:g}, not a whole number of requests",
                            hint=hint)
    return int(count)


def env_counts(sums: Mapping[str, int], *, span: str, name: Callable[[str], str],
               hint: str) -> EnvCounts:
    """``sums`` keyed ``old_requests`` .. ``new_errors`` as EnvCounts; an environment's
    errors above its requests is a ProviderError naming both (``name(key)``): the errors
    must count a subset of the requests, which ``hint`` says how to write."""
    for env in ("old", "new"):
        requests, errors = sums[f"{env}_requests"], sums[f"{env}_errors"]
        if errors > requests:
            raise ProviderError(
                f"{env}: {name(env + '_errors')} summed to {errors} {span}, more than the "
                f"{requests} requests of {name(env + '_requests')}", hint=hint)
    return EnvCounts(sums["old_requests"], sums["old_errors"],
                     sums["new_requests"], sums["new_errors"])
