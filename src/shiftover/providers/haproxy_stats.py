"""haproxy_stats provider: a server's 5xx ratio read straight from HAProxy.

HAProxy keeps cumulative per-server counters (``hrsp_1xx`` .. ``hrsp_5xx``,
``hrsp_other``) since its start. A ratio over all time would hide a fresh
failure behind hours of good traffic, so the provider keeps the previous
reading and measures the *interval* since it: value = Δ5xx / Δresponses,
samples = Δresponses. With ``window`` set, it keeps the readings of the last
``window`` seconds and measures from the newest one at least that old: at 1%
of 200 req/s a 1 s interval holds 2 responses, a 5 s window holds 10.

Consequences, all deliberate:

- The first call only takes a baseline and raises ``NoData`` ("a ratio needs
  two"); the engine treats that as INCONCLUSIVE, never as a pass.
- An interval with no responses is ``NoData``, not a ratio of 0.
- Counters that went down mean HAProxy was reloaded or restarted: the new
  reading becomes the baseline and the call is ``NoData``.

No Prometheus is needed, which makes this the gate for a laptop rehearsal or
for sites that do not scrape HAProxy. Runtime API failures surface as
``ProviderError`` (the provider never judges, and never fails the run itself).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from shiftover.errors import NoData, ProviderError, RouterError
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.plan import HAProxyStatsGate
from shiftover.types import Measurement

RESPONSE_COLUMNS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")


@dataclass(frozen=True)
class _Reading:
    errors: int
    responses: int


class HAProxyStatsProvider:
    """5xx / responses of one HAProxy server over the interval since the last call."""

    def __init__(
        self,
        address: str,
        backend: str,
        server: str,
        *,
        metric: str = "error_ratio",
        timeout: float = 2.0,
        window: float | None = None,
    ) -> None:
        if metric != "error_ratio":
            raise ProviderError(
                f"haproxy_stats metric {metric!r} is not supported",
                hint="known metrics: error_ratio",
            )
        try:
            self.runtime = HAProxyRuntime(address, timeout)
        except RouterError as e:
            raise ProviderError(e.message, hint=e.hint) from None
        self.address = address
        self.backend = backend
        self.server = server
        self.window = window
        self._readings: deque[tuple[float, _Reading]] = deque()

    @classmethod
    def from_spec(cls, spec: HAProxyStatsGate) -> HAProxyStatsProvider:
        return cls(spec.socket, spec.backend, spec.server, metric=spec.metric,
                   timeout=spec.timeout, window=spec.window)

    def describe(self) -> str:
        return f"haproxy_stats {self.backend}/{self.server} error_ratio via {self.address}"

    def _read(self) -> _Reading:
        try:
            row = self.runtime.stat_row(self.backend, self.server)
        except RouterError as e:
            raise ProviderError(e.message, hint=e.hint) from None
        counts: dict[str, int] = {}
        for col in RESPONSE_COLUMNS:
            raw = row.get(col, "")
            try:
                counts[col] = int(raw) if raw else 0
            except ValueError:
                raise ProviderError(
                    f"HAProxy at {self.address} gave {col}={raw!r} for {self.backend}/{self.server}, not a count"
                ) from None
        if not any(row.get(c) for c in RESPONSE_COLUMNS):
            raise ProviderError(
                f"HAProxy at {self.address} reports no HTTP response counters for {self.backend}/{self.server}",
                hint="the backend must be `mode http`: in tcp mode HAProxy does not see status codes",
            )
        return _Reading(errors=counts["hrsp_5xx"], responses=sum(counts.values()))

    def _baseline(self, now: float) -> _Reading | None:
        """The reading to measure from: the previous one, or with a window the
        newest one at least ``window`` old (the oldest kept, early on)."""
        if not self._readings:
            return None
        if self.window is None:
            reading = self._readings[-1][1]
            self._readings.clear()
            return reading
        cutoff = now - self.window
        while len(self._readings) > 1 and self._readings[1][0] <= cutoff:
            self._readings.popleft()
        return self._readings[0][1]

    def measure(self, *, now: float) -> Measurement:
        current = self._read()
        previous = self._baseline(now)
        self._readings.append((now, current))
        if previous is None:
            raise NoData(
                f"first reading of {self.backend}/{self.server} at {self.address}: a ratio needs two",
                hint="the next check measures the interval since this one",
            )
        responses = current.responses - previous.responses
        errors = current.errors - previous.errors
        if responses < 0 or errors < 0:
            self._readings.clear()
            self._readings.append((now, current))
            raise NoData(
                f"HAProxy counters for {self.backend}/{self.server} went down (reload or restart?): taking a new baseline",
                hint="the next check measures the interval since this one",
            )
        if responses == 0:
            raise NoData(
                f"no responses from {self.backend}/{self.server} since the last check",
                hint="the server gets no traffic: check its weight, or send traffic before judging it",
            )
        return Measurement(
            value=errors / responses,
            at=now,
            samples=responses,
            details={
                "errors_5xx": errors,
                "responses": responses,
                "server": f"{self.backend}/{self.server}",
            },
        )


__all__ = ["HAProxyStatsProvider"]
