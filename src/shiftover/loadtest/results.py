"""Judging a load test: per-step verdicts, the knee, capacity per pod, the --json document.

The child process measures; this module judges. Everything here is pure (values
in, values out: no I/O, no clock), so every rule is tested without a server.

Rules of a step, in the order applied (:func:`judge_steps`):

1. **partial** — the run was stopped during the step (Ctrl-C, ``--watch`` abort):
   its figures are shown but never judged, and never pass.
2. **no data** — no request completed and none was dropped. No data never passes.
3. The failing checks, each against the user's criteria:

   - **errors** — ``(failures + dropped) / (requests + dropped) > --max-errors``.
     An arrival that no Locust user could send within the request timeout is
     ``dropped``; it counts as a failure, since a real client would have waited
     just as long. A step whose every arrival was dropped is therefore
     "errors" (100 %), not "no data" (or "rate" under ``--max-errors 100%``).
   - **latency** — ``p99 > --slo-p99``. Latency is counted from each arrival's
     intended time (no coordinated omission).
   - **rate** — ``achieved < (1 - rate_tolerance) x target``: the target did not
     keep up with the arrivals (5 % by default, the issue's bar).

   The verdict is the first that fails, in that order; the reason lists every
   one that failed, in the user's words ("p99 412 ms > SLO 250 ms").
4. **generator** — the load generator itself was the bottleneck during the
   step: its CPU reached ``cpu_limit`` (90 %) or its dispatcher issued
   arrivals late all along (the *median* lag above the limit below: a
   sustained lag; one stall of a busy machine moves the p99, not the median,
   and only adds its own milliseconds to a few requests' latency). When a step
   would otherwise fail on latency, rate or dropped arrivals, it is
   "generator": inconclusive, the target was not shown to fail. Errors the
   target answered itself (5xx, refused connections) stay "errors": a slow
   generator does not make a server answer 500.
   When it passes anyway it passes: latency is counted from the intended time,
   so a late generator can only over-report latency, never hide it. Such a
   pass carries a warning (``StepVerdict.generator``).

   The lag limit, unless given: ``max(10 ms, half the inter-arrival time at the
   step's rate)``. Lag below half a gap does not pile arrivals up; 10 ms is
   below any latency SLO worth load-testing and above a busy 2-core machine's
   scheduling noise.
5. Otherwise **pass**.

The knee (:func:`find_knee`) is the last step of the unbroken run of passes
from the first step: a pass after a failure does not count (the target broke
once; a later lucky step does not un-break it). :func:`first_failure` is the
step that ended that run, whatever its verdict.

Capacity per pod is the knee's *achieved* rate over ``--pods`` (what the pods
really served within the SLO, not what was asked). Pods needed for
``--peak`` with ``--headroom`` h: ``ceil(peak / (per_pod x (1 - h)))``.

The --json document (:func:`load_document`, ``"kind": "shiftover.load/v1"``)
carries the keys ``shiftover scale`` reads: ``web.capacity_rps`` (only when a
knee and ``--pods`` are known) and ``slo.latency`` (seconds) /
``slo.objective`` (0.99: the SLO is on p99), so
``shiftover scale simulate --capacity-from load.json`` takes the measured
capacity as is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shiftover.errors import BadInput
from shiftover.loadtest.schedule import Schedule

__all__ = [
    "DOCUMENT_KIND",
    "VERDICTS",
    "Capacity",
    "Knee",
    "StepFigures",
    "StepVerdict",
    "capacity",
    "default_lag_limit_ms",
    "find_knee",
    "first_failure",
    "judge_steps",
    "knee_text",
    "load_document",
    "parse_error_ratio",
    "table_rows",
]

DOCUMENT_KIND = "shiftover.load/v1"
VERDICTS = ("pass", "latency", "errors", "rate", "generator", "no data", "partial")
SLO_OBJECTIVE = 0.99  # the SLO is on p99: 99 % of requests within it
MIN_LAG_LIMIT_MS = 10.0


# --- formatting (shared by reasons, the table and the text) --------------------


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f} ms"
    if x >= 10:
        return f"{x:.0f} ms"
    return f"{x:.1f} ms"


def _rate(x: float) -> str:
    """A rate in req/s: 500, 72.5, 0.25."""
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _pct(x: float) -> str:
    """A ratio as a percentage: 0 -> 0%, 0.0123 -> 1.23%, 0.5 -> 50%."""
    p = x * 100
    if p == 0:
        return "0%"
    if p < 0.01:
        return "<0.01%"
    return f"{p:.3g}%"


# --- the child's figures ---------------------------------------------------------


@dataclass(frozen=True)
class StepFigures:
    """What the generator measured in one step (the child emits exactly these keys)."""

    index: int
    target_rate: float  # Step.rate
    start_rate: float
    end_rate: float
    seconds: float  # how long the step actually ran (shorter when stopped early)
    requests: int  # completed requests whose arrival fell in this step
    failures: int  # status >= 400 or connection error/timeout
    achieved_rate: float  # requests answered while the step ran / seconds (its throughput)
    p50_ms: float | None  # None: no requests
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: Mapping[str, int]  # "500": 12, "ConnectionRefusedError": 3 ...
    dropped: int  # arrivals never sent: no Locust user free within the request timeout
    lag_p99_ms: float  # p99 of how late the generator issued arrivals
    cpu_percent: float | None  # highest CPU use of any generator process during the step
    complete: bool  # False when the run was stopped during this step
    lag_p50_ms: float = 0.0  # median of how late the generator issued arrivals (sustained lag)
    service_p99_ms: float | None = None  # p99 of the target's own answer time (no client-side wait)
    wait_p99_ms: float = 0.0  # p99 of how long arrivals waited for a free Locust user

    @property
    def error_ratio(self) -> float:
        """``(failures + dropped) / (requests + dropped)``; 0 when nothing was attempted."""
        attempted = self.requests + self.dropped
        return (self.failures + self.dropped) / attempted if attempted else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "target_rate": self.target_rate,
            "start_rate": self.start_rate,
            "end_rate": self.end_rate,
            "seconds": self.seconds,
            "requests": self.requests,
            "failures": self.failures,
            "achieved_rate": self.achieved_rate,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "errors": dict(self.errors),
            "dropped": self.dropped,
            "lag_p99_ms": self.lag_p99_ms,
            "lag_p50_ms": self.lag_p50_ms,
            "service_p99_ms": self.service_p99_ms,
            "wait_p99_ms": self.wait_p99_ms,
            "cpu_percent": self.cpu_percent,
            "complete": self.complete,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepFigures:
        """Read the child's figures (extra keys, such as a document's verdict, are ignored)."""

        def opt(key: str) -> float | None:
            v = d[key]
            return None if v is None else float(v)

        try:
            errors = d["errors"]
            if not isinstance(errors, Mapping):
                raise TypeError("errors must be a mapping")
            return cls(
                index=int(d["index"]),
                target_rate=float(d["target_rate"]),
                start_rate=float(d["start_rate"]),
                end_rate=float(d["end_rate"]),
                seconds=float(d["seconds"]),
                requests=int(d["requests"]),
                failures=int(d["failures"]),
                achieved_rate=float(d["achieved_rate"]),
                p50_ms=opt("p50_ms"),
                p95_ms=opt("p95_ms"),
                p99_ms=opt("p99_ms"),
                max_ms=opt("max_ms"),
                errors={str(k): int(v) for k, v in errors.items()},
                dropped=int(d["dropped"]),
                lag_p99_ms=float(d["lag_p99_ms"]),
                lag_p50_ms=float(d.get("lag_p50_ms", 0.0)),
                service_p99_ms=None if d.get("service_p99_ms") is None else float(d["service_p99_ms"]),
                wait_p99_ms=float(d.get("wait_p99_ms") or 0.0),
                cpu_percent=opt("cpu_percent"),
                complete=bool(d["complete"]),
            )
        except KeyError as e:
            raise BadInput(f"not a load test step: the key {e} is missing") from None
        except (TypeError, ValueError) as e:
            raise BadInput(f"not a load test step: {e}") from None


# --- judging ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepVerdict:
    figures: StepFigures
    verdict: str  # one of VERDICTS
    reason: str  # one line, in the user's words: "p99 412 ms > SLO 250 ms"
    generator: str | None = None  # the generator was the bottleneck: why ("CPU 97%")

    @property
    def ok(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.figures.to_dict(),
            "verdict": self.verdict,
            "reason": self.reason,
            "ok": self.ok,
            "generator_bound": self.generator,
        }


def default_lag_limit_ms(target_rate: float) -> float:
    """``max(10 ms, half the inter-arrival time at the step's rate)``."""
    if target_rate <= 0:
        return MIN_LAG_LIMIT_MS
    return max(MIN_LAG_LIMIT_MS, 500.0 / target_rate)


def _check_criteria(
    slo_p99_ms: float, max_errors: float, rate_tolerance: float, cpu_limit: float
) -> None:
    if not (math.isfinite(slo_p99_ms) and slo_p99_ms > 0):
        raise BadInput(
            f"--slo-p99 must be above 0 (got {slo_p99_ms:g} ms)", hint="e.g. --slo-p99 250ms"
        )
    if not (math.isfinite(max_errors) and 0 <= max_errors <= 1):
        raise BadInput(
            f"--max-errors must be a ratio from 0 to 1 (got {max_errors:g})",
            hint="e.g. --max-errors 1%",
        )
    if not (math.isfinite(rate_tolerance) and 0 <= rate_tolerance < 1):
        raise BadInput(f"the rate tolerance must be from 0 to below 1 (got {rate_tolerance:g})")
    if not (math.isfinite(cpu_limit) and cpu_limit > 0):
        raise BadInput(f"the generator CPU limit must be above 0 (got {cpu_limit:g})")


def judge_steps(
    steps: Sequence[StepFigures],
    *,
    slo_p99_ms: float,
    max_errors: float,
    rate_tolerance: float = 0.05,
    lag_limit_ms: float | None = None,
    cpu_limit: float = 90.0,
) -> list[StepVerdict]:
    """One :class:`StepVerdict` per step, in order; the rules are in the module docstring.

    ``max_errors`` is a ratio (0.01 for 1 %); ``lag_limit_ms`` None means
    :func:`default_lag_limit_ms` of each step's target rate.
    """
    _check_criteria(slo_p99_ms, max_errors, rate_tolerance, cpu_limit)
    return [
        _judge(f, slo_p99_ms=slo_p99_ms, max_errors=max_errors, rate_tolerance=rate_tolerance,
               lag_limit_ms=lag_limit_ms, cpu_limit=cpu_limit)
        for f in steps
    ]  # fmt: skip


def _generator_bound(
    f: StepFigures, lag_limit_ms: float | None, cpu_limit: float, slo_p99_ms: float
) -> tuple[str, str] | None:
    """Why the generator was the bottleneck, and what to do about it; None if it was not."""
    reasons = []
    remedies = []
    if f.cpu_percent is not None and f.cpu_percent >= cpu_limit:
        reasons.append(f"CPU {f.cpu_percent:.0f}%")
    limit = default_lag_limit_ms(f.target_rate) if lag_limit_ms is None else lag_limit_ms
    if f.lag_p50_ms > limit:
        reasons.append(f"arrivals issued {_ms(f.lag_p50_ms)} late at the median (p99 "
                       f"{_ms(f.lag_p99_ms)}), above {_ms(limit)}")
    if reasons:
        remedies.append("add --workers")
    # too few Locust users: arrivals queue on the client for a free one while the target
    # answers within the SLO; the wait alone pushed p99 over it (a real client population
    # would have sent those requests, and the target would have seen more in flight)
    if (f.p99_ms is not None and f.p99_ms > slo_p99_ms and f.service_p99_ms is not None
            and f.service_p99_ms <= slo_p99_ms and f.wait_p99_ms > limit):
        reasons.append(f"every Locust user was busy: arrivals waited p99 {_ms(f.wait_p99_ms)} for a "
                       f"free one while the target answered in p99 {_ms(f.service_p99_ms)}")
        remedies.append("raise --users")
    if not reasons:
        return None
    return ", ".join(reasons), " and ".join(remedies)


#: Failures that prove the target failed even when the generator was starved: an HTTP
#: status it answered, or a connection its host refused. Timeouts, resets and
#: RetriesExceeded can be the starved client's own (it did not read the answer in time).
def _target_failures(f: StepFigures) -> int:
    return sum(n for k, n in f.errors.items() if k.isdigit() or k == "ConnectionRefusedError")


def _error_text(f: StepFigures, max_errors: float) -> str:
    kinds = sorted(f.errors.items(), key=lambda kv: (-kv[1], kv[0]))
    parts = [f"{n:,} x {k}" for k, n in kinds[:3]]
    if len(kinds) > 3:
        parts.append(f"{sum(n for _, n in kinds[3:]):,} other")
    if f.dropped:
        parts.append(f"{f.dropped:,} dropped")
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"errors {_pct(f.error_ratio)} > {_pct(max_errors)}{detail}"


def _judge(
    f: StepFigures,
    *,
    slo_p99_ms: float,
    max_errors: float,
    rate_tolerance: float,
    lag_limit_ms: float | None,
    cpu_limit: float,
) -> StepVerdict:
    why = _generator_bound(f, lag_limit_ms, cpu_limit, slo_p99_ms)
    bound, remedy = why if why is not None else (None, "")
    if not f.complete:
        return StepVerdict(
            f, "partial", f"stopped {f.seconds:.3g} s into the step: not judged", bound
        )
    if f.requests == 0 and f.dropped == 0:
        return StepVerdict(f, "no data", "no request completed in this step", bound)

    failed: list[tuple[str, str]] = []
    if f.error_ratio > max_errors:
        failed.append(("errors", _error_text(f, max_errors)))
    if f.p99_ms is not None and f.p99_ms > slo_p99_ms:
        failed.append(("latency", f"p99 {_ms(f.p99_ms)} > SLO {_ms(slo_p99_ms)}"))
    floor = (1 - rate_tolerance) * f.target_rate
    if f.achieved_rate < floor:
        share = f.achieved_rate / f.target_rate if f.target_rate > 0 else 0.0
        failed.append(
            (
                "rate",
                f"achieved {_rate(f.achieved_rate)} of {_rate(f.target_rate)} req/s "
                f"({share:.1%}, below {1 - rate_tolerance:.0%})",
            )
        )

    if failed:
        reason = "; ".join(text for _, text in failed)
        # errors the target answered (500s, refused connections) are its own whatever the
        # generator did; latency, rate, dropped arrivals and client-side timeouts of a
        # starved generator can be the generator's
        attempted = f.requests + f.dropped
        if failed[0][0] == "errors" and (
            bound is None or (attempted and _target_failures(f) / attempted > max_errors)
        ):
            return StepVerdict(f, "errors", reason, bound)
        if bound:
            return StepVerdict(
                f,
                "generator",
                f"the load generator could not keep the rate ({bound}): {remedy}; "
                f"not judged: {reason}",
                bound,
            )
        return StepVerdict(f, failed[0][0], reason, None)

    p99 = f"p99 {_ms(f.p99_ms)} <= {_ms(slo_p99_ms)}"
    reason = f"{p99}, errors {_pct(f.error_ratio)}, {_rate(f.achieved_rate)} of {_rate(f.target_rate)} req/s"
    if bound:
        reason += f" (generator bound: {bound}; latency may be over-reported)"
    return StepVerdict(f, "pass", reason, bound)


# --- knee and capacity -------------------------------------------------------------


@dataclass(frozen=True)
class Knee:
    step: int
    target_rate: float
    achieved_rate: float
    p99_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "target_rate": self.target_rate,
            "achieved_rate": self.achieved_rate,
            "p99_ms": self.p99_ms,
        }


def find_knee(verdicts: Sequence[StepVerdict]) -> Knee | None:
    """The last step of the unbroken run of passes from the first step; None if the first fails."""
    knee: StepVerdict | None = None
    for v in verdicts:
        if not v.ok:
            break
        knee = v
    if knee is None:
        return None
    f = knee.figures
    return Knee(
        step=f.index, target_rate=f.target_rate, achieved_rate=f.achieved_rate, p99_ms=f.p99_ms
    )


def first_failure(verdicts: Sequence[StepVerdict]) -> StepVerdict | None:
    """The step that ended the run of passes (any verdict but pass); None if all passed."""
    return next((v for v in verdicts if not v.ok), None)


@dataclass(frozen=True)
class Capacity:
    pods: int
    per_pod_rps: float
    peak_rps: float | None
    headroom: float
    pods_needed: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pods": self.pods,
            "per_pod_rps": self.per_pod_rps,
            "peak_rps": self.peak_rps,
            "headroom": self.headroom,
            "pods_needed": self.pods_needed,
        }


def capacity(
    knee: Knee | None, *, pods: int | None, peak: float | None, headroom: float
) -> Capacity | None:
    """Capacity per pod at the knee, and pods needed for ``peak``; None without a knee or --pods.

    ``headroom`` is the share of each pod kept free (0.3: plan pods at 70 % of
    their measured capacity).
    """
    if pods is not None and (isinstance(pods, bool) or pods < 1):
        raise BadInput(f"--pods must be 1 or more (got {pods})", hint="e.g. --pods 2")
    if peak is not None and not (math.isfinite(peak) and peak > 0):
        raise BadInput(
            f"--peak must be above 0 requests per second (got {peak:g})", hint="e.g. --peak 2000"
        )
    if not (math.isfinite(headroom) and 0 <= headroom < 1):
        raise BadInput(
            f"--headroom must be from 0 to below 1 (got {headroom:g})",
            hint="e.g. --headroom 0.3 (30%)",
        )
    if knee is None or pods is None:
        return None
    per_pod = knee.achieved_rate / pods
    needed = None
    if peak is not None and per_pod > 0:
        needed = max(1, math.ceil(peak / (per_pod * (1 - headroom)) - 1e-9))
    return Capacity(
        pods=pods, per_pod_rps=per_pod, peak_rps=peak, headroom=headroom, pods_needed=needed
    )


def parse_error_ratio(value: str | float) -> float:
    """``--max-errors``: ``1%`` or ``0.01`` -> 0.01; from 0 to 1."""
    text = str(value).strip()
    try:
        ratio = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise BadInput(
            f"--max-errors {value!r} is not a ratio", hint="--max-errors 1% (or 0.01)"
        ) from None
    if not (math.isfinite(ratio) and 0 <= ratio <= 1):
        raise BadInput(
            f"--max-errors {value!r} is not from 0% to 100%", hint="--max-errors 1% (or 0.01)"
        )
    return ratio


# --- the --json document ------------------------------------------------------------

_CRITERIA_KEYS = ("slo_p99_ms", "max_errors")


def load_document(
    *,
    target: Mapping[str, Any],
    schedule: Schedule,
    verdicts: Sequence[StepVerdict],
    knee: Knee | None,
    capacity: Capacity | None,
    criteria: Mapping[str, Any],
    watch: Sequence[Mapping[str, Any]] = (),
    generator: Mapping[str, Any],
    stopped_early: bool,
    started: str,
    ended: str,
) -> dict[str, Any]:
    """The ``--json`` document. ``criteria`` must hold ``slo_p99_ms`` and ``max_errors``
    (a ratio); anything else in it (rate_tolerance, cpu_limit, ...) is kept as given.
    ``watch`` holds one row per step (``WatchRow.to_dict()``), in step order."""
    missing = [k for k in _CRITERIA_KEYS if k not in criteria]
    if missing:
        raise ValueError(f"load_document: criteria lacks {', '.join(missing)}")
    slo_p99_ms = float(criteria["slo_p99_ms"])
    first = first_failure(verdicts)
    doc: dict[str, Any] = {
        "kind": DOCUMENT_KIND,
        "started": started,
        "ended": ended,
        "stopped_early": stopped_early,
        "target": dict(target),
        "schedule": schedule.to_dict(),
        "criteria": dict(criteria),
        "generator": dict(generator),
        "steps": [v.to_dict() for v in verdicts],
        "knee": knee.to_dict() if knee is not None else None,
        "first_failure": None
        if first is None
        else {
            "step": first.figures.index,
            "target_rate": first.figures.target_rate,
            "verdict": first.verdict,
            "reason": first.reason,
        },
        "capacity": capacity.to_dict() if capacity is not None else None,
        "slo": {"latency": slo_p99_ms / 1000, "objective": SLO_OBJECTIVE},
        "watch": [dict(w) for w in watch],
    }
    if capacity is not None:
        doc["web"] = {"capacity_rps": capacity.per_pod_rps}
    return doc


# --- what the CLI prints ---------------------------------------------------------------

#: Units are in the headers and the cells are bare numbers, so the table fits 80
#: columns (a CI log, a pipe) with every figure whole: the headers' words wrap,
#: the cells never need to.
COLUMNS = (
    "step",
    "target req/s",
    "achieved req/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "dropped",
    "gen CPU",
    "verdict",
)


def _bare_ms(x: float | None) -> str:
    """A latency in ms without its unit (the header has it): 1,500, 23, 2.5."""
    return _ms(x).removesuffix(" ms")


def _watch_cells(row: Mapping[str, Any] | None) -> dict[str, str]:
    cells: dict[str, str] = {}
    if row is None:
        return cells
    for g in row.get("gates") or ():
        value = g.get("value")
        verdict = str(g.get("verdict", "?"))
        cells[f"gate {g.get('name')}"] = (
            f"{verdict} {value}" if value not in (None, "") else verdict
        )
    for q in row.get("queries") or ():
        v = q.get("value")
        cells[str(q.get("name"))] = (
            "error" if q.get("error") else ("-" if v is None else f"{float(v):g}")
        )
    return cells


def _watch_by_step(doc: Mapping[str, Any]) -> list[Mapping[str, Any] | None]:
    """Watch rows lined up with the steps: by each row's ``step`` key, else by position."""
    steps = doc.get("steps") or []
    rows = list(doc.get("watch") or [])
    out: list[Mapping[str, Any] | None] = [None] * len(steps)
    for pos, row in enumerate(rows):
        i = row.get("step", pos)
        if isinstance(i, int) and 0 <= i < len(out):
            out[i] = row
    return out


def table_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-step table as strings: ``(columns, rows)``; watch columns follow the verdict."""
    steps = doc.get("steps") or []
    knee = doc.get("knee")
    watch = _watch_by_step(doc)
    watch_cells = [_watch_cells(w) for w in watch]
    extra: list[str] = []
    for cells in watch_cells:
        extra.extend(k for k in cells if k not in extra)
    columns = [*COLUMNS, *extra]
    rows: list[list[str]] = []
    for s, cells in zip(steps, watch_cells, strict=True):
        f = StepFigures.from_dict(s)
        if f.start_rate != f.end_rate:
            target = f"{_rate(f.start_rate)}-{_rate(f.end_rate)}"
        else:
            target = _rate(f.target_rate)
        verdict = str(s.get("verdict", ""))
        if knee is not None and knee.get("step") == f.index:
            verdict += " knee"
        rows.append(
            [
                str(f.index + 1),
                target,
                _rate(f.achieved_rate),
                _bare_ms(f.p50_ms),
                _bare_ms(f.p95_ms),
                _bare_ms(f.p99_ms),
                _pct(f.error_ratio) if f.requests + f.dropped else "-",
                f"{f.dropped:,}",
                "-" if f.cpu_percent is None else f"{f.cpu_percent:.0f}%",
                verdict,
                *(cells.get(c, "") for c in extra),
            ]
        )
    return columns, rows


def knee_text(doc: Mapping[str, Any]) -> list[str]:
    """The lines printed under the table: knee, first failure, capacity, pods needed,
    generator warnings, watch gates' first failures, an early stop."""
    lines: list[str] = []
    steps = doc.get("steps") or []
    slo = float((doc.get("criteria") or {}).get("slo_p99_ms", float("nan")))
    max_errors = (doc.get("criteria") or {}).get("max_errors")
    criteria = f"p99 <= {_ms(slo)}" + (
        f", errors <= {_pct(float(max_errors))}" if max_errors is not None else ""
    )
    knee = doc.get("knee")
    first = doc.get("first_failure")
    peak_rate = (doc.get("schedule") or {}).get("peak_rate")

    if knee is not None:
        lines.append(
            f"knee: step {knee['step'] + 1}, {_rate(knee['target_rate'])} req/s target, "
            f"{_rate(knee['achieved_rate'])} req/s achieved, p99 {_ms(knee['p99_ms'])} ({criteria})"
        )
        if first is None:
            top = f" ({_rate(peak_rate)} req/s)" if peak_rate is not None else ""
            lines.append(
                f"every step passed: the knee is at or above the schedule's peak{top}; "
                "raise --rate to find it"
            )
        if first is not None and first.get("verdict") == "generator":
            lines.append(
                f"the knee is only a lower bound: step {first['step'] + 1} measured the load "
                "generator's limit, not the target's (and so does the capacity below)"
            )
    elif not steps:
        lines.append("no knee: no step ran")
    elif first is not None and first["step"] == steps[0]["index"]:
        lines.append(f"no knee: the first step did not pass ({criteria})")
    if first is not None and first["verdict"] == "partial":  # stopped, not failed
        lines.append(
            f"stopped during step {first['step'] + 1} ({_rate(first['target_rate'])} req/s): "
            f"{first['reason']}; the knee is at least the last step that passed"
        )
    elif first is not None:
        lines.append(
            f"first failure: step {first['step'] + 1} ({_rate(first['target_rate'])} req/s): "
            f"{first['verdict']}: {first['reason']}"
        )

    cap = doc.get("capacity")
    if cap is not None:
        lines.append(
            f"capacity: {_rate(cap['per_pod_rps'])} req/s per pod "
            f"({_rate(cap['per_pod_rps'] * cap['pods'])} req/s over {cap['pods']} "
            f"pod{'s' if cap['pods'] != 1 else ''})"
        )
        if cap.get("pods_needed") is not None:
            lines.append(
                f"pods needed for {_rate(cap['peak_rps'])} req/s with {cap['headroom']:.0%} headroom: "
                f"{cap['pods_needed']}"
            )
    elif knee is not None:
        lines.append("capacity per pod: pass --pods N (the pods behind the target during the test)")

    for s in steps:
        if s.get("verdict") == "generator":
            lines.append(f"generator: step {s['index'] + 1} is inconclusive: {s['reason']}")
        elif s.get("generator_bound") and s.get("verdict") == "pass":
            lines.append(
                f"generator: step {s['index'] + 1} passed with the generator at its limit "
                f"({s['generator_bound']}); add --workers for a clean measure"
            )
        elif s.get("generator_bound") and s.get("verdict") not in ("no data", "partial"):
            lines.append(
                f"generator: step {s['index'] + 1} failed ({s.get('verdict')}) with the generator "
                f"at its limit ({s['generator_bound']}): the target's own errors count, its "
                "latency and rate are not a clean measure; add --workers"
            )

    rates = {s["index"]: s["target_rate"] for s in steps}
    seen: set[str] = set()
    for pos, row in enumerate(_watch_by_step(doc)):
        for g in (row or {}).get("gates") or ():
            name = str(g.get("name"))
            if g.get("verdict") == "FAIL" and name not in seen:
                seen.add(name)
                at = f" ({_rate(rates[pos])} req/s)" if pos in rates else ""
                why = f": {g['reason']}" if g.get("reason") else ""
                lines.append(f"watch: gate {name} first failed at step {pos + 1}{at}{why}")

    if doc.get("stopped_early"):
        done = sum(1 for s in steps if s.get("complete"))
        lines.append(
            f"stopped early: {done} of {len((doc.get('schedule') or {}).get('steps') or steps)} steps ran in full"
        )
    return lines
