"""haproxy_stats provider: how often traffic HAProxy sent to one server failed.

Read straight from HAProxy's ``show stat`` (no Prometheus needed), which makes
this the gate for a laptop rehearsal or for sites that do not scrape HAProxy.

What counts, and why
--------------------
A server's own ``hrsp_5xx`` only counts 5xx responses *the server sent*. A new
environment that is dead or hanging sends no responses at all, so a gate on
``hrsp_5xx / hrsp_*`` sees "no responses", stays INCONCLUSIVE, and nothing rolls
back while clients get 503s. Measured on HAProxy 2.6 (backend ``web``, old and
new at 50/50, 20 requests, new server broken; the full table is in the tests'
docstring, ``tests/providers/test_haproxy_stats.py``):

==========================  ===============================  =========================
new server                   its own row                      BACKEND row, clients
==========================  ===============================  =========================
answers 500                  ``hrsp_5xx`` 10                  ``hrsp_5xx`` 10
killed (refused), retries 3  ``econ`` 10, ``wretr`` 30         ``hrsp_5xx`` 10 (503s)
killed, ``redispatch``       ``wredis`` 20                    0 errors: sent to old
hangs (``timeout server``)   ``eresp`` 3 of 6                 ``hrsp_5xx`` 3 (504s)
invalid response             ``eresp`` 10                     ``hrsp_5xx`` 10 (502s)
resets the connection        ``eresp`` 10 (``srv_abrt`` 10)   connection closed
DOWN by ``check``            nothing at all                   0 errors: sent to old
==========================  ===============================  =========================

So every time HAProxy hands a request to the server, the attempt ends in
exactly one of: a response (``hrsp_1xx`` .. ``hrsp_other``), a connection error
(``econ``), a response error (``eresp``: timeouts, resets, invalid responses;
``srv_abrt`` is included in it), a retry on the same server (``wretr``) or a
redispatch to another one (``wredis``). Measured: ``stot`` (sessions handed to
the server, retries included) equals that sum in every case above. Hence:

- attempts = Δ(responses + econ + eresp + wretr + wredis), the sample count;
- failures = Δ(hrsp_5xx + econ + eresp + wretr + wredis);
- value = failures / attempts, always within 0..1.

A retry or redispatch is a failure of *this* server even when the client was
served by another one in the end: the new environment did not answer.

HAProxy's own 502/503/504s are counted on the BACKEND row's ``hrsp_5xx``, never
on the server's: each one follows from an ``econ`` or ``eresp`` of the server
that was tried, which is where they are counted here (adding the BACKEND row's
5xx as well would count them twice, and would blame the new server for the old
one's failures). What the BACKEND row has beyond its servers' 5xx
(``haproxy_5xx``) is reported in ``details`` as evidence; the share of it the
servers' errors do not explain (a backend queue timeout, "no server available")
is ``haproxy_5xx_unattributed``, reported, not charged to any one server.

A server that takes no traffic although its weight says it should: DOWN by
health check, MAINT, DRAIN or NOLB with a weight above 0, while the backend
served requests in the interval. Its share of those requests went elsewhere
(or got 503s), so the value is 1.0 and the samples are its share of the
backend's sessions by weight (at least its own attempts, at least 1). A server
at weight 0 with no traffic is ``NoData``: at 0% there is nothing to judge.

Intervals and windows
---------------------
HAProxy's counters are cumulative since its start. A ratio over all time would
hide a fresh failure behind hours of good traffic, so the provider keeps the
previous reading and measures the *interval* since it. With ``window`` set, it
keeps the readings of the last ``window`` seconds and measures from the newest
one at least that old: at 1% of 200 req/s a 1 s interval holds 2 requests, a
5 s window holds 10. Every reading is one ``show stat``, so the server's and the
BACKEND row's counters come from the same instant.

Consequences, all deliberate:

- The first call only takes a baseline and raises ``NoData`` ("a ratio needs
  two"); the engine treats that as INCONCLUSIVE, never as a pass. Errors that
  make the gate unusable (no such backend or server, a ``mode tcp`` backend, a
  runtime API that does not answer) are ``ProviderError`` from the first call,
  so ``shiftover validate`` can tell them from "no data yet".
- An interval in which nothing was sent to the server is ``NoData``, not a
  ratio of 0. So is one in which requests were sent but none has finished: a
  server that hangs is a failure once HAProxy gives up on it (``timeout
  server``: an ``eresp`` and a 504, even if the client left earlier), not
  before; ``details`` shows the ``sessions`` handed to it and those
  ``in_flight``.
- Counters that went down mean HAProxy was reloaded or restarted: the new
  reading becomes the baseline and the call is ``NoData``.
- The window is aged with the ``now`` the engine passes in (its clock), never
  compared with another host's clock, so clock *skew* cannot fool it. A clock
  that stepped *back* (``now`` earlier than the last reading) would make the
  window span too much: the provider then measures since the last reading only
  and says so in ``details``.

Every counter used is in ``details`` (deltas over the measured interval), so the
journal shows the evidence. Runtime API failures surface as ``ProviderError``
(the provider never judges, and never fails the run itself).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from shiftover.errors import NoData, ProviderError, RouterError
from shiftover.haproxy_api import BackendStat, HAProxyRuntime
from shiftover.spec import Duration, FiniteFloat, GateSpecBase, MinSamples, SpecModel, Timeout, rule
from shiftover.types import EnvCounts, Measurement

RESPONSE_COLUMNS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
# a server's attempts that ended without a response from it: name in details -> column
ERROR_COLUMNS = {
    "connection_errors": "econ",
    "response_errors": "eresp",
    "retries": "wretr",
    "redispatches": "wredis",
}
# ``status`` words (first word of the column) of a server that takes no new traffic
OUT_OF_SERVICE = ("DOWN", "MAINT", "DRAIN", "NOLB")


class HAProxyStatsGate(GateSpecBase):
    """Per-server counters read straight from HAProxy (no Prometheus needed).

    ``metric: error_ratio`` is failed / attempted requests of the server (its 5xx,
    connection and response errors, retries and redispatches away from it) over
    the last interval, or over the last ``window`` when set (more samples at low
    traffic); 1.0 while it is DOWN/MAINT/DRAIN with a weight > 0 and the backend
    serves traffic; no data at weight 0.
    """

    type: Literal["haproxy_stats"]
    socket: str = Field(min_length=1)
    backend: str = Field(min_length=1)
    server: str = Field(min_length=1)
    metric: Literal["error_ratio"] = "error_ratio"
    max: FiniteFloat = Field(ge=0)
    min_samples: MinSamples = 0
    window: Duration | None = Field(
        default=None,
        description="judge the last `window` of traffic (e.g. 5s); default: the interval since the previous check",
    )
    timeout: Timeout = 2.0


@dataclass(frozen=True)
class _Counters:
    """Cumulative counters at one reading (or, subtracted, their deltas)."""

    sessions: int = 0  # stot: handed to the server, finished or not
    responses: int = 0
    responses_5xx: int = 0
    connection_errors: int = 0
    response_errors: int = 0
    retries: int = 0
    redispatches: int = 0
    backend_sessions: int = 0
    backend_5xx: int = 0
    servers_5xx: int = 0
    servers_errors: int = 0  # econ + eresp over all of the backend's servers

    def __sub__(self, other: _Counters) -> _Counters:
        return _Counters(
            **{
                f.name: getattr(self, f.name) - getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )

    def negative(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) < 0]

    @property
    def no_response(self) -> int:
        """Attempts that ended without a response from the server."""
        return self.connection_errors + self.response_errors + self.retries + self.redispatches

    @property
    def attempts(self) -> int:
        return self.responses + self.no_response

    @property
    def failures(self) -> int:
        return self.responses_5xx + self.no_response


@dataclass(frozen=True)
class _Reading:
    counters: _Counters
    status: str = "no check"  # the server's ``status`` column: UP, DOWN, MAINT, ...
    weight: int = 0  # the user weight (what ``set server ... weight`` wrote)
    share: Fraction = Fraction(0)  # of the weight of its backend's servers
    in_flight: int = 0  # scur: sessions on the server right now

    @property
    def out_of_service(self) -> bool:
        words = self.status.split()
        return bool(words) and words[0] in OUT_OF_SERVICE


class HAProxyStatsProvider:
    """Failed / attempted requests of one HAProxy server over the interval since
    the last call (see the module docstring for what counts)."""

    Spec: ClassVar[type[HAProxyStatsGate]] = HAProxyStatsGate

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

    # --- reading ---------------------------------------------------------------

    @property
    def _name(self) -> str:
        return f"{self.backend}/{self.server}"

    def _count(self, row: dict[str, str], column: str, what: str) -> int:
        raw = row.get(column, "")
        try:
            value = int(raw) if raw else 0
        except ValueError:
            raise ProviderError(
                f"HAProxy at {self.address} gave {column}={raw!r} for {what}, not a count",
                hint="this does not look like HAProxy's `show stat`: check the gate's socket",
            ) from None
        if value < 0:
            raise ProviderError(
                f"HAProxy at {self.address} gave {column}={raw!r} for {what}, a negative count",
                hint="this does not look like HAProxy's `show stat`: check the gate's socket",
            )
        return value

    def _stat(self) -> BackendStat:
        try:
            return self.runtime.backend_stat(self.backend, self.server)
        except RouterError as e:
            raise ProviderError(e.message, hint=e.hint) from None

    def _read(self, stat: BackendStat | None = None) -> _Reading:
        """This server's reading from one ``show stat`` (taken now unless given)."""
        stat = stat or self._stat()
        row, total = stat.server, stat.backend
        if row.get("mode", "http") == "tcp" or total.get("mode", "http") == "tcp":
            raise ProviderError(
                f"backend {self.backend!r} at {self.address} is `mode tcp`: HAProxy sees no HTTP "
                f"responses there, so {self._name} has no error ratio to measure",
                hint="set `mode http` on the backend, or judge it with a prometheus gate on "
                "haproxy_server_connection_errors_total",
            )
        if not any(row.get(c) for c in RESPONSE_COLUMNS):
            raise ProviderError(
                f"HAProxy at {self.address} reports no HTTP response counters for {self._name}",
                hint="the backend must be `mode http`: in tcp mode HAProxy does not see status codes",
            )
        responses = {c: self._count(row, c, self._name) for c in RESPONSE_COLUMNS}
        errors = {name: self._count(row, col, self._name) for name, col in ERROR_COLUMNS.items()}
        what = f"{self.backend}/BACKEND"
        counters = _Counters(
            sessions=self._count(row, "stot", self._name),
            responses=sum(responses.values()),
            responses_5xx=responses["hrsp_5xx"],
            backend_sessions=self._count(total, "stot", what),
            backend_5xx=self._count(total, "hrsp_5xx", what),
            servers_5xx=sum(
                self._count(r, "hrsp_5xx", f"{self.backend}/{r.get('svname')}") for r in stat.servers
            ),
            servers_errors=sum(
                self._count(r, c, f"{self.backend}/{r.get('svname')}")
                for r in stat.servers
                for c in ("econ", "eresp")
            ),
            **errors,
        )
        weight = self._weight(row)
        # its share of the weight among the servers of its kind (active or backup),
        # counting those that are down: the share it is *meant* to take
        kind = row.get("bck", "0")
        weights = sum(self._weight(r) for r in stat.servers if r.get("bck", "0") == kind)
        share = Fraction(weight, weights) if weights else Fraction(0)
        return _Reading(
            counters,
            status=row.get("status", "").strip(),
            weight=weight,
            share=share,
            in_flight=self._count(row, "scur", self._name),
        )

    def _weight(self, r: dict[str, str]) -> int:
        """A server's user weight (``uweight`` since HAProxy 2.4, ``weight`` before)."""
        return self._count(r, "uweight" if "uweight" in r else "weight",
                           f"{self.backend}/{r.get('svname')}")

    def _baseline(self, now: float) -> tuple[float, _Reading] | None:
        """The reading to measure from: the previous one, or with a window the
        newest one at least ``window`` old (the oldest kept, early on)."""
        if not self._readings:
            return None
        if self.window is None:
            previous = self._readings[-1]
            self._readings.clear()
            return previous
        cutoff = now - self.window
        while len(self._readings) > 1 and self._readings[1][0] <= cutoff:
            self._readings.popleft()
        return self._readings[0]

    # --- measuring -------------------------------------------------------------

    def measure(self, *, now: float) -> Measurement:
        current = self._read()
        notes: list[str] = []
        previous: tuple[float, _Reading] | None
        if self._readings and now < self._readings[-1][0]:
            # the clock stepped back: a window aged by it would span too much
            previous = self._readings[-1]
            self._readings.clear()
            notes.append(
                f"the clock went back {previous[0] - now:.3f}s since the last check: "
                "measured since that check only"
            )
        else:
            previous = self._baseline(now)
        self._readings.append((now, current))
        if previous is None:
            raise NoData(
                f"first reading of {self._name} at {self.address}: a ratio needs two",
                hint="the next check measures the interval since this one",
            )
        since, before = previous
        d = current.counters - before.counters
        went_down = d.negative()
        if went_down:
            self._readings.clear()
            self._readings.append((now, current))
            raise NoData(
                f"HAProxy counters for {self._name} went down ({', '.join(went_down)}): "
                "HAProxy was reloaded or restarted; taking a new baseline",
                hint="the next check measures the interval since this one",
            )
        details = self._details(current, d, now - since, notes)
        if current.out_of_service and current.weight > 0 and d.backend_sessions > 0:
            meant = math.ceil(d.backend_sessions * current.share)
            samples = max(d.attempts, meant, 1)
            details["not_serving"] = (
                f"{self._name} is {current.status} with weight {current.weight}: about {meant} of the "
                f"backend's {d.backend_sessions} sessions were meant for it and went elsewhere or failed"
            )
            return Measurement(value=1.0, at=now, samples=samples, details=details)
        if d.attempts == 0:
            if current.weight == 0:
                raise NoData(
                    f"{self._name} has weight 0 and got no traffic since the last check: nothing to judge at 0%",
                    hint="the gate measures once the router sends the server traffic",
                )
            if d.sessions > 0 or current.in_flight > 0:
                raise NoData(
                    f"{d.sessions} requests were sent to {self._name} since the last check and none "
                    f"has finished ({current.in_flight} in flight)",
                    hint="a server that hangs is counted (response errors, 504s) once HAProxy's "
                    "`timeout server` expires: a later check sees it",
                )
            state = f" ({current.status})" if current.out_of_service else ""
            raise NoData(
                f"no requests were sent to {self._name}{state} since the last check "
                f"(the backend had {d.backend_sessions})",
                hint="send traffic before judging it, or set `window:` to judge more than one interval",
            )
        return Measurement(value=d.failures / d.attempts, at=now, samples=d.attempts, details=details)

    def _details(self, current: _Reading, d: _Counters, seconds: float, notes: list[str]) -> dict[str, Any]:
        haproxy_5xx = max(0, d.backend_5xx - d.servers_5xx)
        details: dict[str, Any] = {
            "server": self._name,
            "status": current.status,
            "weight": current.weight,
            "weight_share": float(current.share),
            "interval_seconds": round(seconds, 3) if seconds >= 0 else None,
            "sessions": d.sessions,
            "in_flight": current.in_flight,
            "attempts": d.attempts,
            "failures": d.failures,
            "responses": d.responses,
            "responses_5xx": d.responses_5xx,
            "connection_errors": d.connection_errors,
            "response_errors": d.response_errors,
            "retries": d.retries,
            "redispatches": d.redispatches,
            "backend_sessions": d.backend_sessions,
            "backend_5xx": d.backend_5xx,
            "haproxy_5xx": haproxy_5xx,
            # HAProxy's 5xx that no server's connection or response errors explain
            # (queue timeouts, no server available): evidence, not charged to this one
            "haproxy_5xx_unattributed": max(0, haproxy_5xx - d.servers_errors),
        }
        if notes:
            details["notes"] = notes
        return details


class HAProxyCountsSpec(SpecModel):
    """A ``compare`` gate's counts from HAProxy: the old and the new server of one
    backend, both read from the same ``show stat``. Requests are the attempts
    HAProxy made on each server and errors the attempts that failed, as the
    ``haproxy_stats`` gate counts them (5xx, connection and response errors,
    retries and redispatches away from the server)."""

    type: Literal["haproxy_stats"]
    socket: str = Field(min_length=1)
    backend: str = Field(min_length=1)
    old: str = Field(min_length=1, description="the old environment's server in the backend")
    new: str = Field(min_length=1, description="the new environment's server in the backend")
    timeout: Timeout = 2.0

    @model_validator(mode="after")
    def _two_servers(self) -> HAProxyCountsSpec:
        if self.old == self.new:
            raise rule(f"old and new are both {self.old!r}: a comparison needs the two "
                       "environments' servers", ("new",))
        return self


@dataclass
class _Tally:
    """One server's cumulative requests and errors since the source was made, with
    HAProxy's reloads (counters that go down) absorbed."""

    requests: int = 0
    errors: int = 0
    last: _Counters | None = None

    def add(self, now: _Counters, extra: int = 0) -> None:
        before = self.last or _Counters()
        d = now - before
        if d.negative():  # reloaded: HAProxy counts again from 0
            d = now
        self.requests += d.attempts + extra
        self.errors += d.failures + extra
        self.last = now


class HAProxyCounts:
    """Requests and errors of the old and the new server since a step started
    (the :class:`~shiftover.providers.base.CountSource` of ``compare`` gates).

    A new server that takes no traffic although its weight says it should (DOWN
    by health check, MAINT, DRAIN with a weight above 0) while the backend
    serves: its share of the backend's sessions by weight is counted as requests
    of new that failed, as the ``haproxy_stats`` gate reads it (a server the
    health check took out is broken, not idle)."""

    Spec: ClassVar[type[HAProxyCountsSpec]] = HAProxyCountsSpec

    def __init__(self, address: str, backend: str, old: str, new: str, *,
                 timeout: float = 2.0) -> None:
        self._new = HAProxyStatsProvider(address, backend, new, timeout=timeout)
        self._old = HAProxyStatsProvider(address, backend, old, timeout=timeout)
        self._tallies = {"old": _Tally(), "new": _Tally()}
        self._base: tuple[float, EnvCounts] | None = None  # the span's start
        self._last: tuple[float, EnvCounts] | None = None  # the latest reading

    @classmethod
    def from_spec(cls, spec: HAProxyCountsSpec) -> HAProxyCounts:
        return cls(spec.socket, spec.backend, spec.old, spec.new, timeout=spec.timeout)

    def describe(self) -> str:
        return (f"haproxy_stats {self._new.backend}: {self._old.server} (old) vs "
                f"{self._new.server} (new) via {self._new.address}")

    def _totals(self) -> EnvCounts:
        stat = self._new._stat()
        old_row = next((r for r in stat.servers if r.get("svname") == self._old.server), None)
        if old_row is None:
            known = ", ".join(sorted(str(r.get("svname", "")) for r in stat.servers)) or "none"
            raise ProviderError(
                f"HAProxy at {self._new.address} has no server {self._old.server!r} in backend "
                f"{self._new.backend!r}", hint=f"servers in {self._new.backend}: {known}")
        new = self._new._read(stat)
        old = self._old._read(BackendStat(server=old_row, backend=stat.backend,
                                          servers=stat.servers))
        tally = self._tallies["new"]
        extra = 0
        if tally.last is not None and new.out_of_service and new.weight > 0:
            served = new.counters.backend_sessions - tally.last.backend_sessions
            extra = math.ceil(served * new.share) if served > 0 else 0
        tally.add(new.counters, extra)
        self._tallies["old"].add(old.counters)
        o, n = self._tallies["old"], self._tallies["new"]
        return EnvCounts(o.requests, o.errors, n.requests, n.errors)

    def counts(self, *, since: float, now: float) -> EnvCounts:
        totals = self._totals()
        # HAProxy keeps no history: a span starts at a reading this source took, the
        # step's own mark or (a new step counted from the check before it) the last one
        if self._base is not None and self._base[0] == since:
            base = self._base[1]
        elif self._last is not None and self._last[0] == since:
            base = self._last[1]
        elif since == now:
            base = totals
        else:
            self._last = (now, totals)
            raise NoData("no reading of HAProxy at the step's start: counting from now",
                         hint="the next check counts from this one")
        self._base, self._last = (since, base), (now, totals)
        return totals - base


__all__ = ["HAProxyCounts", "HAProxyStatsProvider"]
