"""``shiftover load --watch``: what the environment did while the load rose.

The load test answers "where does latency break"; the rehearsal also needs
"did the pods and nodes scale out, did an alert fire, which part of the normal
state gave way first". At the end of every step the parent calls
:meth:`Watch.observe` once; each call is one :class:`WatchRow`: the router's
split, every normal-state gate of a plan judged once, and any extra Prometheus
queries (``NAME=PROMQL``: replicas, nodes, queue length).

Why it is built this way:

- **The gates are judged exactly as ``shiftover validate``'s preflight judges
  them** (:func:`shiftover.engine.build.preflight`): the router is read first
  (split-aware gates need the split), then each gate measures at the clock's
  ``now`` and its own judge decides. There is no second, load-test flavour of
  a gate to drift from the one the cutover uses. The :class:`Gate` objects are
  built once and kept for the whole test, as a run keeps them, so a
  ``compare`` gate's sequential test accumulates over the steps as it would
  over a cutover's checks.
- **Observing never raises for what it observes.** A gate whose provider
  fails is INCONCLUSIVE with ``error`` set (what preflight records), a query
  that fails has its error text, an unreadable router has ``router_error``.
  A load test must not die because Prometheus hiccuped at step 7; the row
  says what happened and the table shows it. Anything unexpected from a
  provider (a bug, not a ProviderError) is recorded the same way, with the
  exception's type.
- **Bad input is refused before the load starts**: a malformed ``NAME=PROMQL``,
  two queries with one name (each is a column of the table), queries with no
  Prometheus to ask, a ``--prometheus`` that is not an http(s) URL. Plan errors are the plan loader's own
  (file:line:col); nothing here re-words them.
- **Queries are summed.** A watch query asks "how many": replicas over pods,
  nodes over zones. The value is the sum of the returned vector's values (or
  the scalar), so ``kube_deployment_status_replicas{deployment="web"}`` works
  without a ``sum()``. An empty vector is ``None`` with the note "no series"
  (Prometheus's "absent", which is not 0: write ``count(...) or vector(0)``
  when absent means none); NaN and infinities are ``None`` with their name as
  the note (JSON has no NaN).
- **Where queries go**: ``--prometheus URL``, else the URL of the plan's first
  gate that reads Prometheus (a ``prometheus`` gate, or a ``compare`` /
  ``compare_latency`` gate whose source is Prometheus). ``prometheus_alerts``
  gates are not used: their URL may be Alertmanager.
- **Secrets**: every text of a row (gate names, values, reasons, thresholds,
  the router's error, query errors) goes through the plan's redactor
  (``${VAR}`` values), and URLs lose their user info (``redact_url``).
  :attr:`Watch.secrets` are the plan's secrets, for the CLI's own redactor.

Gates and queries are evaluated one after another, as preflight does (a
provider's client is not assumed to be thread-safe), so one observation can
take up to the sum of the gates' and queries' timeouts when backends hang:
call it off the thread that draws the progress display.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shiftover.clock import Clock, SystemClock
from shiftover.engine.build import build_gates
from shiftover.engine.run import Gate
from shiftover.errors import BadInput, ProviderError
from shiftover.plan import LoadedPlan, load_plan
from shiftover.providers.http import redact_url, scrub_userinfo
from shiftover.providers.prometheus import _Api, _query_data
from shiftover.providers.prometheus import _number as _prometheus_number
from shiftover.routers import build_router
from shiftover.routers.base import Router
from shiftover.types import GateResult, Weights

QUERY_FLAG = "--watch-query"
PROMETHEUS_FLAG = "--watch-prometheus"
QUERY_EXAMPLE = "replicas='sum(kube_deployment_status_replicas{deployment=\"web\"})'"
DEFAULT_QUERY_TIMEOUT = 5.0

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

Redact = Callable[[str], str]


def _same(text: str) -> str:
    return text


# --- what one observation holds ------------------------------------------------


@dataclass(frozen=True)
class GateObservation:
    """One gate judged once. ``verdict``: PASS, FAIL or INCONCLUSIVE; ``value`` the
    measured number as text (None when nothing was measured); ``error``: the gate
    could not be evaluated at all (its provider failed), as in ``validate``."""

    name: str
    verdict: str
    value: str | None
    reason: str
    threshold: str | None = None
    samples: int | None = None
    error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "value": self.value,
            "reason": self.reason,
            "threshold": self.threshold,
            "samples": self.samples,
            "error": self.error,
        }

    @classmethod
    def of(cls, result: GateResult, redact: Redact = _same) -> GateObservation:
        value = None if result.value is None else f"{result.value:.4g}"
        return cls(
            name=redact(result.gate),
            verdict=result.verdict.value.upper(),
            value=value,
            reason=redact(result.reason),
            threshold=None if result.threshold is None else redact(result.threshold),
            samples=result.samples,
            error=result.error,
        )


@dataclass(frozen=True)
class QueryObservation:
    """One watch query evaluated once: ``value`` is the sum of the vector's values
    (or the scalar); None with ``error`` when the query failed, None with ``note``
    when it answered without a number ("no series", "NaN", "+Inf").
    ``series``: how many series were summed (None for a scalar or an error)."""

    name: str
    value: float | None
    error: str | None
    note: str | None = None
    series: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "error": self.error,
            "note": self.note,
            "series": self.series,
        }


@dataclass(frozen=True)
class WatchRow:
    """What the environment looked like at ``t`` (the clock's seconds since the
    epoch), after step ``step`` (0-based, as :class:`~shiftover.loadtest.schedule.Step`
    counts; None when the caller did not say). ``new_percent``: the router's split
    (percent on new) when a plan's router was read; ``router_error`` when it could
    not be."""

    t: float
    gates: tuple[GateObservation, ...]
    queries: tuple[QueryObservation, ...]
    step: int | None = None
    new_percent: float | None = None
    router_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t}
        if self.step is not None:
            out["step"] = self.step
        out["new_percent"] = self.new_percent
        out["router_error"] = self.router_error
        out["gates"] = [g.to_dict() for g in self.gates]
        out["queries"] = [q.to_dict() for q in self.queries]
        return out


# --- input ---------------------------------------------------------------------


def parse_queries(texts: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["NAME=PROMQL", ...]`` as ``((name, promql), ...)``; BadInput naming the
    flag with a pasteable example when one is malformed or a name repeats. The
    name ends at the first ``=``: PromQL's own ``{a="b"}`` stays in the query."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for text in texts:
        name, eq, query = text.partition("=")
        name, query = name.strip(), query.strip()
        if not eq or not name or not query:
            raise BadInput(
                f"{QUERY_FLAG} {text!r} is not NAME=PROMQL",
                hint=f"name the query, then the PromQL: {QUERY_FLAG} {QUERY_EXAMPLE}",
            )
        if not _NAME.match(name):
            raise BadInput(
                f"{QUERY_FLAG} {text!r}: {name!r} is not a name (letters, digits, _ . -, "
                "starting with a letter)",
                hint=f"put a short name before the first '=': {QUERY_FLAG} {QUERY_EXAMPLE}",
            )
        if name in seen:
            raise BadInput(
                f"{QUERY_FLAG} name {name!r} is given twice",
                hint="give each query its own name: it is a column of the table",
            )
        seen.add(name)
        out.append((name, query))
    return tuple(out)


def _check_prometheus_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            f"{PROMETHEUS_FLAG} {redact_url(url)!r} is not an http(s) URL",
            hint=f"give Prometheus's base URL: {PROMETHEUS_FLAG} http://127.0.0.1:9090",
        )
    return url.rstrip("/")


def plan_prometheus_url(loaded: LoadedPlan) -> tuple[str, str] | None:
    """``(url, gate name)`` of the plan's first gate that reads Prometheus, or None."""
    for spec in loaded.plan.normal_state:
        url: Any = None
        if spec.type == "prometheus":
            url = getattr(spec, "url", None)
        else:
            source = getattr(spec, "source", None)
            if getattr(source, "type", None) == "prometheus":
                url = getattr(source, "url", None)
        if isinstance(url, str) and url:
            return url.rstrip("/"), spec.name
    return None


# --- the watch -----------------------------------------------------------------


@dataclass
class Watch:
    """The plan's gates and the extra queries, evaluated once per :meth:`observe`.
    Build it with :meth:`open` (from a plan path) or :meth:`from_plan` (a plan the
    caller loaded already)."""

    queries: tuple[tuple[str, str], ...] = ()
    prometheus: str | None = None  # the queries' Prometheus (may hold user info)
    prometheus_from: str | None = None  # "--prometheus" or "plan gate NAME"
    plan: LoadedPlan | None = None
    router: Router | None = None
    gates: tuple[Gate, ...] = ()
    clock: Clock = field(default_factory=SystemClock)
    timeout: float = DEFAULT_QUERY_TIMEOUT

    @classmethod
    def open(
        cls,
        plan: Path | None,
        queries: Sequence[str],
        prometheus: str | None,
        *,
        clock: Clock | None = None,
        timeout: float = DEFAULT_QUERY_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> Watch:
        """Load the plan (its errors are the loader's, with file:line:col), parse
        the ``NAME=PROMQL`` queries and settle their Prometheus URL: BadInput on
        anything malformed, before any load is sent. ``env``: the plan's
        ``${VAR}`` values (default: the process environment)."""
        parsed = parse_queries(queries)  # flags first: cheaper than a plan
        loaded = None if plan is None else load_plan(plan, env=env)
        return cls._build(loaded, parsed, prometheus, clock=clock, timeout=timeout)

    @classmethod
    def from_plan(
        cls,
        loaded: LoadedPlan | None,
        queries: Sequence[str],
        prometheus: str | None,
        *,
        clock: Clock | None = None,
        timeout: float = DEFAULT_QUERY_TIMEOUT,
    ) -> Watch:
        """Like :meth:`open` for a plan loaded already (the CLI's, whose secrets
        joined its redactor)."""
        return cls._build(loaded, parse_queries(queries), prometheus, clock=clock, timeout=timeout)

    @classmethod
    def _build(
        cls,
        loaded: LoadedPlan | None,
        parsed: tuple[tuple[str, str], ...],
        prometheus: str | None,
        *,
        clock: Clock | None,
        timeout: float,
    ) -> Watch:
        if not (timeout > 0 and math.isfinite(timeout)):
            raise BadInput(f"query timeout {timeout!r} must be a positive number of seconds")
        url: str | None = None
        source: str | None = None
        if prometheus is not None:
            url, source = _check_prometheus_url(prometheus), PROMETHEUS_FLAG
        elif loaded is not None:
            found = plan_prometheus_url(loaded)
            if found is not None:
                url, source = found[0], f"plan gate {loaded.redact(found[1])!r}"
        if parsed and url is None:
            where = (
                f"the plan {loaded.path} has no gate that reads Prometheus"
                if loaded is not None
                else "no plan was given"
            )
            raise BadInput(
                f"{QUERY_FLAG} needs a Prometheus to ask, and {where}",
                hint=f"add {PROMETHEUS_FLAG} http://127.0.0.1:9090 (Prometheus's base URL)",
            )
        router = None if loaded is None else build_router(loaded.plan.members)
        gates = () if loaded is None else tuple(build_gates(loaded.plan))
        return cls(
            queries=parsed,
            prometheus=url,
            prometheus_from=source,
            plan=loaded,
            router=router,
            gates=gates,
            clock=clock if clock is not None else SystemClock(),
            timeout=timeout,
        )

    # --- what the caller shows ------------------------------------------------

    def redact(self, text: str) -> str:
        return self.plan.redact(text) if self.plan is not None else text

    @property
    def secrets(self) -> frozenset[str]:
        """The plan's secret values (``${VAR}``s), for the caller's own redactor."""
        return self.plan.secrets if self.plan is not None else frozenset()

    def describe(self) -> str:
        """One line for the start of the test: what is watched, where."""
        parts: list[str] = []
        if self.plan is not None:
            n = len(self.gates)
            parts.append(f"{n} gate{'s' if n != 1 else ''} of {self.plan.path}")
        if self.queries:
            n = len(self.queries)
            assert self.prometheus is not None
            parts.append(
                f"{n} quer{'ies' if n != 1 else 'y'} on {redact_url(self.prometheus)}"
                f" ({self.prometheus_from})"
            )
        if not parts:
            return "watching nothing"
        return self.redact("watching " + " and ".join(parts) + " at the end of every step")

    def summary(self) -> dict[str, Any]:
        """What is watched, JSON-ready, redacted (for the load document)."""
        return {
            "plan": None if self.plan is None else str(self.plan.path),
            "router": None if self.router is None else self.redact(self.router.describe()),
            "gates": [{"name": self.redact(g.spec.name), "type": g.spec.type} for g in self.gates],
            "queries": [{"name": n, "query": self.redact(q)} for n, q in self.queries],
            "prometheus": None if self.prometheus is None else redact_url(self.prometheus),
            "prometheus_from": self.prometheus_from,
        }

    # --- observing ------------------------------------------------------------

    def observe(self, *, step: int | None = None) -> WatchRow:
        """The router read, every gate judged once, every query run once. Never
        raises for what it observes: failures are in the row."""
        weights: Weights | None = None
        router_error: str | None = None
        if self.router is not None:
            try:
                weights = self.router.read()
            except Exception as exc:  # recorded, like every other failure here
                router_error = self.redact(_exc_text(exc))
        gates = tuple(self._judge(gate, weights) for gate in self.gates)
        queries = tuple(self._query(name, q) for name, q in self.queries)
        return WatchRow(
            t=self.clock.now(),
            gates=gates,
            queries=queries,
            step=step,
            new_percent=None if weights is None else float(weights.new_percent),
            router_error=router_error,
        )

    def _judge(self, gate: Gate, weights: Weights | None) -> GateObservation:
        now = self.clock.now()
        outcome: Any
        try:
            outcome = gate.measure(now=now, split=weights)
        except ProviderError as exc:
            outcome = exc
        except Exception as exc:  # a provider bug must not end the load test
            outcome = ProviderError(f"{type(exc).__name__}: {exc}")
        return GateObservation.of(gate.judge(outcome, now=now), self.redact)

    def _query(self, name: str, query: str) -> QueryObservation:
        assert self.prometheus is not None  # _build refuses queries without one
        try:
            return self._run_query(name, query)
        except ProviderError as exc:
            # the providers' hints speak of "the gate's url"; a query's URL is not a gate's
            text = _exc_text(exc).replace("the gate's url", f"the URL of {self.prometheus_from}")
            return QueryObservation(name, None, self.redact(text))
        except Exception as exc:  # recorded, never raised
            text = scrub_userinfo(f"{type(exc).__name__}: {exc}", self.prometheus)
            return QueryObservation(name, None, self.redact(text))

    def _run_query(self, name: str, query: str) -> QueryObservation:
        assert self.prometheus is not None
        api = _Api(self.prometheus, self.timeout, None, "Prometheus")
        params = {"query": query, "timeout": f"{self.timeout:g}"}
        _, data = _query_data(api, query, params)
        kind, result = data.get("resultType"), data.get("result")
        where = f"{api.shown}/api/v1/query"
        if kind == "scalar" and isinstance(result, list) and len(result) == 2:
            return _finite(name, _number(result[1], query, where), None)
        if kind == "vector" and isinstance(result, list):
            values = []
            for series in result:
                raw = series.get("value") if isinstance(series, dict) else None
                if not isinstance(raw, list) or len(raw) != 2:
                    raise ProviderError(
                        f"Prometheus at {where} sent a malformed vector for {query!r}",
                        hint=f"check that {PROMETHEUS_FLAG} is Prometheus's base URL",
                    )
                values.append(_number(raw[1], query, where))
            if not values:
                return QueryObservation(name, None, None, note="no series", series=0)
            return _finite(name, sum(values), len(values))
        if kind == "matrix":
            raise ProviderError(
                f"query {query!r} returns a range vector, not a number",
                hint="wrap the range in a function, e.g. sum(rate(x[1m])) instead of x[1m]",
            )
        raise ProviderError(
            f"query {query!r} at {where} returned a {kind!s}, not a number",
            hint="a watch query must return a scalar or an instant vector",
        )


def _number(raw: Any, query: str, where: str) -> float:
    return _prometheus_number(raw, query, where, hint=f"check that {PROMETHEUS_FLAG} is Prometheus's base URL")


def _finite(name: str, value: float, series: int | None) -> QueryObservation:
    if math.isnan(value):
        return QueryObservation(name, None, None, note="NaN", series=series)
    if math.isinf(value):
        return QueryObservation(
            name, None, None, note="+Inf" if value > 0 else "-Inf", series=series
        )
    return QueryObservation(name, value, None, series=series)


def _exc_text(exc: BaseException) -> str:
    """One line: the message, then the hint in brackets (as gate reasons put it)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", None)
    return f"{message} (hint: {hint})" if hint else str(message)


# --- reading the rows ----------------------------------------------------------


def first_failures(rows: Sequence[WatchRow]) -> dict[str, int]:
    """Gate name -> index (in ``rows``) of the first row where it FAILed, in the
    order the failures came; gates that never failed are absent."""
    out: dict[str, int] = {}
    for i, row in enumerate(rows):
        for g in row.gates:
            if g.verdict == "FAIL" and g.name not in out:
                out[g.name] = i
    return out


def watch_text(rows: Sequence[WatchRow], *, gates: bool = True) -> list[str]:
    """Lines for under the table: each gate's first failure (or that it passed
    throughout, or never had a verdict), how each query moved (first and last
    value, range, the step it first changed), and a split that moved during the
    test. Steps are counted from 1 as the table shows them. ``gates=False``
    leaves the gate lines out (for a caller that prints first failures itself)."""
    if not rows:
        return []

    def at(i: int) -> str:
        step = rows[i].step
        return f"step {step + 1}" if step is not None else f"check {i + 1}"

    lines: list[str] = []
    fails = first_failures(rows)
    names: list[str] = []
    for row in rows:
        names.extend(g.name for g in row.gates if g.name not in names)
    passed: list[str] = []
    for name in names if gates else ():
        seen = [(i, g) for i, row in enumerate(rows) for g in row.gates if g.name == name]
        if name in fails:
            i = fails[name]
            g = next(g for j, g in seen if j == i)
            value = f" ({g.value})" if g.value is not None else ""
            lines.append(f"gate {name} first failed at {at(i)}{value}: {g.reason}")
        elif all(g.verdict == "PASS" for _, g in seen):
            passed.append(name)
        elif not any(g.verdict == "PASS" for _, g in seen):
            final = seen[-1][1]
            lines.append(f"gate {name} never had a verdict: {final.reason}")
        else:
            n = sum(1 for _, g in seen if g.verdict != "PASS")
            lines.append(
                f"gate {name} was inconclusive at {n} of {len(seen)} checks, passed at the others"
            )
    if passed:
        lines.append(f"passed at every step: {', '.join(passed)}")

    qnames: list[str] = []
    for row in rows:
        qnames.extend(q.name for q in row.queries if q.name not in qnames)
    for name in qnames:
        seen_q = [(i, q) for i, row in enumerate(rows) for q in row.queries if q.name == name]
        numbers = [(i, q.value) for i, q in seen_q if q.value is not None]
        errors = [q.error for _, q in seen_q if q.error is not None]
        if numbers:
            first_i, first = numbers[0]
            last = numbers[-1][1]
            changed = next((i for i, v in numbers if v != first), None)
            lo, hi = min(v for _, v in numbers), max(v for _, v in numbers)
            if changed is None:
                text = f"query {name}: {first:g} throughout"
            else:
                text = (
                    f"query {name}: {first:g} -> {last:g} (min {lo:g}, max {hi:g}), "
                    f"first changed at {at(changed)}"
                )
            if first_i > 0:
                text += f"; no number before {at(first_i)}"
            lines.append(text)
        elif errors:
            lines.append(f"query {name}: failed at every check: {errors[-1]}")
        else:
            lines.append(f"query {name}: no number at any check ({seen_q[-1][1].note or '-'})")
        if numbers and errors:
            lines.append(
                f"query {name}: failed at {len(errors)} of {len(seen_q)} checks: {errors[-1]}"
            )

    splits = [(i, r.new_percent) for i, r in enumerate(rows) if r.new_percent is not None]
    if splits and any(p != splits[0][1] for _, p in splits):
        moved = next(i for i, p in splits if p != splits[0][1])
        lines.append(
            f"router: the split moved during the test ({splits[0][1]:g}% -> "
            f"{splits[-1][1]:g}% on new, first at {at(moved)}): the load was not "
            "measured on one configuration"
        )
    router_errors = [r.router_error for r in rows if r.router_error is not None]
    if router_errors:
        lines.append(
            f"router: could not be read at {len(router_errors)} of {len(rows)} checks: "
            f"{router_errors[-1]}"
        )
    return lines


__all__ = [
    "PROMETHEUS_FLAG",
    "QUERY_FLAG",
    "GateObservation",
    "QueryObservation",
    "Watch",
    "WatchRow",
    "first_failures",
    "parse_queries",
    "plan_prometheus_url",
    "watch_text",
]
