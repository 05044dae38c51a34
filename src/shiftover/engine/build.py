"""Wiring: a loaded plan becomes a router, gates and a runner. Also the preflight
that `shiftover validate` runs (router reachable, each gate evaluated once)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from shiftover.clock import Clock
from shiftover.engine.rollback import tail_seconds
from shiftover.engine.run import GATE_GRACE, Gate, Runner, slowest_gate
from shiftover.errors import ProviderError, ShiftoverError
from shiftover.hooks import command_problems
from shiftover.plan import Plan, latency_warm_up
from shiftover.providers import build_provider
from shiftover.routers import build_router
from shiftover.routers.base import Router
from shiftover.store import Store
from shiftover.types import GateResult, Verdict, Weights


def build_gates(plan: Plan) -> list[Gate]:
    return [Gate(spec, build_provider(spec)) for spec in plan.normal_state]


def plan_summary(plan: Plan) -> dict[str, Any]:
    """What the journal records about the plan (no URLs or secrets: names and numbers)."""
    return {
        "service": plan.service,
        "router": "+".join(m.type for m in plan.members),
        "steps": plan.steps,
        "steps_exact": [w.exact for w in plan.step_weights],
        "bake": plan.bake,
        "interval": plan.interval,
        "gates": [{"name": g.name, "type": g.type} for g in plan.normal_state],
        "failure_limit": plan.failure_limit,
        "error_limit": plan.error_limit,
        "inconclusive_limit": plan.inconclusive_limit,
        "on_failure": plan.on_failure,
        "approvals": plan.approvals,
    }


def minimum_duration(plan: Plan) -> float:
    """The shortest possible run: every step baked once (approvals not counted), a bake
    lasting until the first check at or after it. A
    ``compare_latency`` gate holds each step below 100% for the checks it needs before
    it can pass (a bake counts only time in which every check passed); a ``compare``
    gate's ``min_requests`` depends on traffic and is not counted."""
    return plan_timeline(plan)[-1].earliest_end


def build_runner(
    plan: Plan,
    store: Store,
    clock: Clock,
    *,
    router: Router | None = None,
    redact: Callable[[str], str] = lambda s: s,
    **kw: Any,
) -> Runner:
    return Runner(plan, router or build_router(plan.members), build_gates(plan), store, clock,
                  redact=redact, plan_summary=plan_summary(plan), **kw)


@dataclass(frozen=True)
class TimelineStep:
    """One step of the timeline a plan implies, offsets in seconds from the start."""

    percent: float
    split: Weights          # as the router(s) set it exactly
    bake: float
    approval: bool
    earliest_start: float   # the soonest this step can be set (approvals given at once)
    earliest_end: float     # ... and baked

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.percent, "exact": self.split.exact, "bake_seconds": self.bake,
                "approval": self.approval, "earliest_start_seconds": self.earliest_start,
                "earliest_end_seconds": self.earliest_end}


def plan_timeline(plan: Plan) -> list[TimelineStep]:
    """Each step with its earliest start and end, by the arithmetic of
    :func:`minimum_duration` (its sum is the last step's ``earliest_end``)."""
    gates: list[Any] = list(plan.normal_state)
    warm_up = max((latency_warm_up(g) for g in gates if g.JUDGE == "compare_latency"),
                  default=0)
    out: list[TimelineStep] = []
    t = 0.0
    # checks fall every interval from the step's confirmed write: a bake completes at
    # the first check at or after it (a 100 s bake checked every 30 s takes 120 s)
    checked = math.ceil(plan.bake / plan.interval - 1e-9) * plan.interval
    if math.isclose(checked, plan.bake, abs_tol=1e-9):
        checked = plan.bake  # a whole number of intervals: as written
    for percent, split in zip(plan.steps, plan.step_weights, strict=True):
        bake = checked + (warm_up * plan.interval if split.new_percent < 100 else 0.0)
        out.append(TimelineStep(percent, split, bake, percent in plan.approvals, t, t + bake))
        t += bake
    return out


@dataclass(frozen=True)
class RollbackBound:
    """The longest a rollback can take, counted from the first failing measurement:
    ``failure_limit`` checks to decide (one interval apart, each up to the slowest
    gate's timeout), one router write (for Route53, until the change is INSYNC: up to
    its ``insync_timeout``), then clients still reaching the new environment for
    ``tail`` seconds (DNS resolvers caching the old answer: the records' TTL, which
    only the router can read)."""

    detect: float
    write: float
    tail: float

    @property
    def total(self) -> float:
        return self.detect + self.write + self.tail

    def to_dict(self) -> dict[str, Any]:
        return {"detect_seconds": self.detect, "write_seconds": self.write,
                "tail_seconds": self.tail, "total_seconds": self.total}


def rollback_bound(plan: Plan, tail: float = 0.0) -> RollbackBound:
    detect = plan.failure_limit * plan.interval + slowest_gate(plan) + GATE_GRACE
    write = max(float(getattr(m, "timeout", 2.0)) + float(getattr(m, "insync_timeout", 0.0))
                for m in plan.members)
    return RollbackBound(detect, write, tail)


@dataclass(frozen=True)
class RouterFacts:
    """What a router can tell about its target beyond the split, for ``validate``:
    one line per record / target group (``details``), what the operator should know
    (``warnings``, e.g. a DNS TTL longer than a minute) and how long clients may keep
    reaching the new environment after the router confirms 0% (``tail_seconds``:
    resolvers caching the old answer for the records' TTL; 0 for HAProxy).

    Routers offer these through optional methods ``details()``, ``warnings()`` and
    ``tail_seconds()``; a router without them has nothing to add."""

    details: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    tail_seconds: float = 0.0


def router_facts(router: Router, *, redact: Callable[[str], str] = lambda s: s,
                 bake: float | None = None) -> RouterFacts:
    """The facts of a router, or of each member of a lockstep group (never raises:
    a router that cannot be read has its error in the preflight already)."""
    members = getattr(router, "members", None) or [router]
    details: list[str] = []
    warnings: list[str] = []
    for m in members:
        prefix = f"{m.describe()}: " if len(members) > 1 else ""
        for name, out in (("details", details), ("warnings", warnings)):
            fn = getattr(m, name, None)
            if fn is None:
                continue
            try:
                # a router may weigh its warnings against the bake (ALB stickiness)
                takes_bake = "bake" in inspect.signature(fn).parameters
                lines = fn(bake=bake) if takes_bake and bake is not None else fn()
                out.extend(redact(prefix + str(line)) for line in lines)
            except ShiftoverError:
                pass
    return RouterFacts(tuple(details), tuple(warnings), tail_seconds(router))


@dataclass(frozen=True)
class Preflight:
    router: str
    weights: Weights | None
    router_error: str | None
    results: tuple[GateResult, ...]
    facts: RouterFacts = RouterFacts()
    hook_problems: tuple[str, ...] = ()   # hook commands that could not start from here

    @property
    def ok(self) -> bool:
        """Router readable, no gate FAILs and no gate *errors*, every hook command
        startable. No data is fine (the new environment has no traffic yet); a gate
        that cannot be evaluated at all (refused, bad query, several series, unknown
        server) is not."""
        return self.router_error is None and not self.hook_problems and all(
            r.verdict is not Verdict.FAIL and not r.error for r in self.results)


def preflight(plan: Plan, clock: Clock, *, redact: Callable[[str], str] = lambda s: s) -> Preflight:
    router = build_router(plan.members)
    try:
        weights, err = router.read(), None
    except ShiftoverError as exc:
        weights, err = None, redact(str(exc))
    results = []
    for spec in plan.normal_state:
        now = clock.now()
        gate = Gate(spec, build_provider(spec))
        try:
            outcome: Any = gate.measure(now=now, split=weights)
        except ProviderError as exc:
            outcome = exc
        r = gate.judge(outcome, now=now)
        results.append(replace(r, reason=redact(r.reason),
                               threshold=None if r.threshold is None else redact(r.threshold)))
    facts = router_facts(router, redact=redact, bake=plan.bake) if err is None else RouterFacts()
    return Preflight(redact(router.describe()), weights, err, tuple(results), facts,
                     tuple(redact(p) for p in command_problems(plan.hooks)))
