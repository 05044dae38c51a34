"""Every rule of the run, as one pure function.

``decide(plan, state, observation, now) -> Decision``: no I/O, no clock, no sleeps.
``run.py`` observes (router weights, gate verdicts), calls this, journals the
events the decision carries, and performs its action.

The rules, in the order they are applied:

1. **Rollback first.** Once a rollback has started (by the failure limit or an
   operator), every tick asks for 0% until the router confirms it, then the
   campaign ends ``rolled_back``. It needs nothing but the router.
2. **The router is the truth.** If the router cannot be read, hold (and say so).
   If it shows a weight other than the journal's last confirmed one, reconcile:
   a *lower* weight is accepted (someone moved traffic back: the step becomes the
   largest one at or below it, and bake restarts); a *higher* weight is never
   accepted — we return to the last confirmed step first (this covers a run
   killed between applying a weight and confirming it).
3. **Failures.** A tick with any FAIL counts one consecutive failure and restarts
   bake (a step must stay normal for the whole bake). A tick with all PASS resets
   the count. INCONCLUSIVE (no data, too few samples) neither counts nor resets
   the failures, but restarts bake too: a step's bake counts only time in which
   every check passed. At ``failure_limit`` the plan's ``on_failure`` runs:
   rollback, or pause.
4. **Operators.** A rollback request starts a rollback. While paused, the run
   checks but never advances.
5. **Advance** only when bake has passed since the step was confirmed (or since
   the last check that did not pass), AND the last tick passed every gate (each with its minimum sample size), AND the next
   step's approval, if the plan asks for one, was given. At 100% the same
   conditions promote.
6. Before the first step (0%), the run starts once no gate FAILs (no data is
   expected there: the new environment has no traffic yet). Failures there count
   like anywhere else: at the limit a rollback ends the campaign without ever
   having shifted traffic (the router is set to 0%, which it already is).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from shiftover.analysis.judge import summarize
from shiftover.engine import events as ev
from shiftover.engine.events import RunState
from shiftover.plan import Plan
from shiftover.types import GateResult, Verdict, Weights

ZERO = Weights(0)


class Action(enum.Enum):
    WAIT = "wait"            # nothing to do until the next tick
    APPLY = "apply"          # set the router to ``target`` (a step, or a reconcile)
    ROLLBACK = "rollback"    # set the router to 0% and retry until it confirms
    PROMOTE = "promote"      # 100% confirmed and baked: the campaign ends
    ROLLED_BACK = "rolled_back"  # 0% confirmed after a rollback: the campaign ends


@dataclass(frozen=True)
class Observation:
    """What one tick saw. ``weights`` is None when the router could not be read."""

    weights: Weights | None
    router_error: str | None = None
    results: tuple[GateResult, ...] | None = None  # None: gates not evaluated


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    target: Weights | None = None
    step_index: int | None = None
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    status: str = ""  # one word for views: baking, holding, paused, waiting_approval, ...


def step_weight(plan: Plan, index: int) -> Weights:
    return ZERO if index < 0 else Weights(str(plan.steps[index]))


def step_at_or_below(plan: Plan, weights: Weights) -> int:
    """Index of the largest step <= weights (-1 when below the first step)."""
    idx = -1
    for i, s in enumerate(plan.steps):
        if Weights(str(s)) <= weights:
            idx = i
    return idx


def _pct(w: Weights) -> float:
    return float(w.new_percent)


def decide(plan: Plan, state: RunState, obs: Observation, now: float) -> Decision:
    # 1. rollback in progress, or asked for
    if state.rolling_back or state.rollback_requested:
        return _rollback(state, obs, now)

    # 2. the router is the truth
    if obs.weights is None:
        return Decision(Action.WAIT, f"router unreadable: {obs.router_error}", status="holding",
                        events=((ev.ROUTER_ERROR, {"error": obs.router_error}),))
    events: list[tuple[str, dict[str, Any]]] = []
    confirmed = state.confirmed
    step_index = state.step_index
    if confirmed is None or obs.weights != confirmed:
        if confirmed is not None and obs.weights > confirmed:
            return Decision(
                Action.APPLY,
                f"router has {obs.weights}, above the last confirmed {confirmed}: returning to it",
                target=confirmed, step_index=step_index, status="reconciling",
            )
        step_index = step_at_or_below(plan, obs.weights)
        events.append((ev.RECONCILED, {
            "journal_percent": None if confirmed is None else _pct(confirmed),
            "router_percent": _pct(obs.weights), "step_index": step_index}))
        events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(obs.weights),
                                         "reason": "reconciled with the router"}))
        return Decision(Action.WAIT, f"reconciled with the router at {obs.weights}",
                        step_index=step_index, events=tuple(events), status="reconciling")

    # 3. failures
    results = obs.results
    verdict = summarize(results) if results is not None else None
    failures = state.consecutive_failures
    bake_since = state.bake_since
    if verdict is not None and results is not None:
        if verdict is Verdict.FAIL:
            failures += 1
        elif verdict is Verdict.PASS:
            failures = 0
        events.append((ev.CHECK, {"verdict": verdict.value, "consecutive_failures": failures,
                                  "results": [r.to_dict() for r in results]}))
        if verdict is Verdict.FAIL:
            failed = [r for r in results if r.verdict is Verdict.FAIL]
            why = "; ".join(f"{r.gate}: {r.reason}" for r in failed)
            if failures >= plan.failure_limit:
                if plan.on_failure == "rollback":
                    return _start_rollback(events, f"{failures} consecutive failed checks: {why}",
                                           [r.to_dict() for r in failed])
                if not state.paused:
                    events.append((ev.ENGINE_PAUSED, {"reason": f"failure limit reached: {why}"}))
                    return Decision(Action.WAIT, f"paused: {why}", events=tuple(events), status="paused")
            if step_index >= 0:
                events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(confirmed),
                                                 "reason": f"failed check: {why}"}))
            return Decision(Action.WAIT, f"failed check {failures}/{plan.failure_limit}: {why}",
                            events=tuple(events), status="failing")
    if verdict is Verdict.INCONCLUSIVE and step_index >= 0:
        # no evidence is not normal: the bake counts only time with every gate passing
        events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(confirmed),
                                         "reason": "inconclusive: "
                                         + _inconclusive_reason(results or ())}))
        bake_since = now
    elif bake_since is None and step_index >= 0:
        events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(confirmed),
                                         "reason": "run started"}))
        bake_since = now

    # 4. operators
    if state.paused:
        return Decision(Action.WAIT, f"paused{': ' + state.pause_reason if state.pause_reason else ''}",
                        events=tuple(events), status="paused")

    # 6. before the first step
    if step_index < 0:
        if verdict is None:
            return Decision(Action.WAIT, "checking the normal state before the first step",
                            events=tuple(events), status="starting")
        return _advance(plan, state, step_index, confirmed, events, "starting the first step")

    # 5. advance
    assert bake_since is not None
    baked = now - bake_since
    if baked < plan.bake:
        return Decision(Action.WAIT, f"baking {confirmed}: {baked:.0f}s of {plan.bake:g}s",
                        events=tuple(events), status="baking")
    if verdict is not Verdict.PASS:
        why = "no check yet" if verdict is None else _inconclusive_reason(results or ())
        return Decision(Action.WAIT, f"holding {confirmed}: {why}", events=tuple(events),
                        status="holding")
    if step_index == len(plan.steps) - 1:
        return Decision(Action.PROMOTE, f"{confirmed} baked {baked:.0f}s with every gate passing",
                        events=tuple(events), status="promoting")
    return _advance(plan, state, step_index, confirmed, events,
                    f"{confirmed} baked {baked:.0f}s with every gate passing")


def _inconclusive_reason(results: tuple[GateResult, ...]) -> str:
    held = [r for r in results if r.verdict is Verdict.INCONCLUSIVE]
    return "; ".join(f"{r.gate}: {r.reason}" for r in held) or "inconclusive"


def _advance(plan: Plan, state: RunState, step_index: int, confirmed: Weights,
             events: list[tuple[str, dict[str, Any]]], why: str) -> Decision:
    nxt = step_index + 1
    target = step_weight(plan, nxt)
    step = plan.steps[nxt]
    if step in plan.approvals and float(step) not in state.approved:
        if state.waiting_approval != float(step):
            events.append((ev.APPROVAL_WAITING, {"step": step}))
        return Decision(Action.WAIT, f"waiting for approval of the {step:g}% step "
                        f"(shiftover approve --step {step:g})", events=tuple(events),
                        status="waiting_approval")
    events.append((ev.STEP_ADVANCED, {"from_percent": _pct(confirmed), "to_percent": _pct(target),
                                      "step_index": nxt}))
    return Decision(Action.APPLY, f"{why}: moving to {target}", target=target, step_index=nxt,
                    events=tuple(events), status="advancing")


def _start_rollback(events: list[tuple[str, dict[str, Any]]], reason: str,
                    gates: list[dict[str, Any]]) -> Decision:
    events.append((ev.ROLLBACK_STARTED, {"reason": reason, "gates": gates}))
    return Decision(Action.ROLLBACK, reason, target=ZERO, step_index=-1, events=tuple(events),
                    status="rolling_back")


def _rollback(state: RunState, obs: Observation, now: float) -> Decision:
    if not state.rolling_back:  # an operator asked; start it
        reason = f"operator requested rollback{': ' + state.rollback_reason if state.rollback_reason else ''}"
        return _start_rollback([], reason, [])
    if obs.weights is not None and obs.weights == ZERO and state.confirmed == ZERO:
        started = state.rollback_started_at if state.rollback_started_at is not None else now
        return Decision(Action.ROLLED_BACK, f"rolled back: {state.rollback_reason}",
                        events=((ev.ROLLED_BACK, {"seconds": round(now - started, 3),
                                                  "reason": state.rollback_reason}),),
                        status="rolled_back")
    return Decision(Action.ROLLBACK, state.rollback_reason, target=ZERO, step_index=-1,
                    status="rolling_back")
