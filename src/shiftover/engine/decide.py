"""Every rule of the run, as one pure function.

``decide(plan, state, observation, now) -> Decision``: no I/O, no clock, no sleeps.
``run.py`` observes (router weights, gate verdicts), calls this, journals the
events the decision carries, and performs its action.

The rules, in the order they are applied:

1. **Rollback first.** Once a rollback has started (by a limit or an operator),
   every tick asks for 0% until the router has *verified* 0% since the rollback
   started (``verify(0%)`` needs no ``read``: a server someone put in
   maintenance cannot hold a rollback up), then the campaign ends
   ``rolled_back``. It needs nothing but the router: no gate, no lease.
2. **Evidence is counted, every check.** A check (every ``interval``) counts:
   a FAIL adds one consecutive failure, an all-PASS check resets the count, an
   INCONCLUSIVE one does neither. A check in which a gate's provider could not
   answer at all, or the router could not be read, adds one consecutive error
   (any other check resets it). A check without a verdict for want of data (no
   data, too few samples) adds one consecutive inconclusive check while traffic
   is on the new environment (before the first step there is no traffic, so no
   data is expected there); a PASS or FAIL resets it. The
   counts survive a restart of the run; only an operator's ``resume`` clears
   them. Evidence is counted even while the router cannot be read: a new
   environment that FAILs is rolled back whatever its router says.
3. **Limits.** At ``failure_limit`` failures the plan's ``on_failure`` runs
   (rollback by default, or pause). A FAIL marked *final* (a ``compare``
   gate's sequential test: its false-FAIL probability over the whole step is
   already bounded by its ``alpha``, however often it looks, and its p-value
   never goes back up) runs it at once: waiting for more failed checks would
   add intervals, not safety. At ``error_limit`` errors or
   ``inconclusive_limit`` checks without a verdict the run is **stuck**: it
   cannot tell whether the new environment is normal, and holding forever
   without evidence is not safe either, so ``on_failure`` runs too, with a
   reason that says "stuck".
4. **The router is the truth.** If it cannot be read, hold (the error is
   journalled when it changes, not every tick), and when it can be read again
   the bake starts over: time without knowing the split is not time at a step.
   If it shows a split other than the last confirmed one, reconcile, comparing
   exact splits (the journal stores them exactly):
   - *higher*: never accepted; return to the last confirmed split first (a run
     killed between applying and confirming, someone's hand);
   - *0%* while a step above 0% was confirmed: an operator's emergency drain.
     Accept it, and **pause**: the run does not climb back until ``resume``;
   - *lower*: accept it; the step becomes the largest one at or below it, and
     its bake starts over.
   Routers in lockstep are read as their highest member (so "higher" holds for
   every member) and their lowest: a member below the confirmed split is a
   *lower* (or *0%*) reading, judged before "higher" (the safe side first); the
   next tick then finds the others above the accepted split and brings the whole
   group to it.
   A new campaign starts from the split the last one left confirmed (0% after a
   rollback, 100% after a promotion): a higher split is not accepted then
   either, and a drop to 0% between campaigns is simply where the new one
   starts. Only the very first campaign of a journal takes whatever the router
   has as its starting point (there is nothing to compare it with).
5. **A step bakes only on evidence.** Whenever traffic is on the new
   environment (any split above 0%, a step or not), the bake restarts at every
   check that is not all-PASS (a FAIL or no verdict) and when the run
   (re)starts: a split's bake counts only time in which every check passed and
   the split was known.
6. **Operators.** A rollback request starts a rollback. While paused the run
   checks (and counts, and may still roll back at a limit) but never advances.
7. **Hooks** (``hooks:``) run at their place, one at a time in plan order, and
   the run goes on from a place only once every hook there has succeeded:
   ``start`` hooks before the first step (after a check with no FAIL and no
   error), a step's hooks as soon as the router confirms that step (its bake
   starts over when they are done: a step bakes with its hooks done),
   ``promoted`` hooks once 100% has baked, before the campaign ends promoted.
   A hook that fails counts as one failed check (at the next check, once per
   attempt) and runs again after it, so ``failure_limit`` and ``on_failure``
   apply to it as to any gate; a hook still running makes a check without a
   verdict. A hook whose result nobody knows (a run died while it ran) runs
   again only if the plan says it is ``idempotent``; otherwise the run holds
   until an operator says what happened (``shiftover ack``). Nothing new starts
   while paused. On rollback, every hook that ran is undone in reverse order,
   after the router confirms 0% (engine/run.py; :func:`~shiftover.engine.events.pending_undos`).
8. **At 0%**, before the first step, the run starts once a check has no FAIL
   and no error (no data is expected there, an error is not: a gate that cannot
   work at all must not let traffic move). A split above 0% but below the first
   step (an operator's partial drain, a plan whose first step was raised) is
   not 0%: it bakes, and moves to the first step only like any step advances.
9. **Advance** only when the bake has passed, the check of this tick passed
   every gate (each with its minimum sample size), the step's hooks are done,
   and the next step's approval, if the plan asks for one, was given. At 100%
   the same conditions, and the ``promoted`` hooks, promote.

The step is always derived from the confirmed split and the plan's steps (as
the router sets them exactly), never from a stored index: a plan edited between
runs resumes from the step at or below the confirmed split, and the next move
is at most one step up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from shiftover.analysis.judge import summarize
from shiftover.engine import events as ev
from shiftover.engine.events import RunState, current_step, weight_data
from shiftover.hooks import EVERY_STEP
from shiftover.plan import Plan
from shiftover.types import GateResult, Verdict, Weights

ZERO = Weights(0)


class Action(enum.Enum):
    WAIT = "wait"            # nothing to do until the next tick
    APPLY = "apply"          # set the router to ``target`` (a step, or a reconcile)
    ROLLBACK = "rollback"    # set the router to 0% and retry until it confirms
    PROMOTE = "promote"      # 100% confirmed and baked: the campaign ends
    ROLLED_BACK = "rolled_back"  # 0% confirmed after a rollback: the campaign ends
    HOOK = "hook"            # start the plan's hook ``hook`` (name, place) in the background


@dataclass(frozen=True)
class Observation:
    """What one tick saw. ``weights`` is None when the router could not be read;
    ``results`` is None when no check was due this tick."""

    weights: Weights | None
    router_error: str | None = None
    results: tuple[GateResult, ...] | None = None
    # routers in lockstep: ``weights`` is the highest member's split, ``lowest`` the
    # lowest one's (None: a single router, the same as ``weights``)
    lowest: Weights | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    target: Weights | None = None
    step_index: int | None = None
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    status: str = ""  # one word for views: baking, holding, reconciling, paused, stuck, ...
    hook: tuple[str, str] | None = None  # Action.HOOK: (hook name, place)


def step_weight(plan: Plan, index: int) -> Weights:
    return ZERO if index < 0 else plan.step_weights[index]


def step_at_or_below(plan: Plan, weights: Weights) -> int:
    """Index of the largest step <= weights (-1 when below the first step)."""
    return current_step(plan.step_weights, weights)


def decide(plan: Plan, state: RunState, obs: Observation, now: float) -> Decision:
    # 1. rollback in progress, or asked for
    if state.rolling_back or state.rollback_requested:
        return _rollback(state, obs, now)

    events: list[tuple[str, dict[str, Any]]] = []
    confirmed = state.confirmed
    step_index = step_at_or_below(plan, confirmed) if confirmed is not None else -1

    # 2. count the evidence of this check
    results = obs.results
    verdict: Verdict | None = None
    failures = state.consecutive_failures
    counted: list[list[Any]] = []
    bake_verdict: Verdict | None = None
    if results is not None:
        # a hook that failed counts as a failed check (once per attempt); one running
        # or about to run again leaves the check without a verdict
        hook_results, counted, promoted = _hook_results(plan, state,
                                                        _places(plan, state, past=True), now)
        results = results + hook_results
        verdict = summarize(results)
        # a promoted hook's failure counts, but 100% has baked: it does not start over
        rest = [r for r in results if r.gate not in promoted]
        bake_verdict = summarize(tuple(rest)) if rest else Verdict.PASS
        unreadable = obs.weights is None
        errored = unreadable or any(r.error for r in results)
        failures = state.consecutive_failures + 1 if verdict is Verdict.FAIL else (
            0 if verdict is Verdict.PASS and not unreadable else state.consecutive_failures)
        errors = state.consecutive_errors + 1 if errored else 0
        traffic_on_new = any(w is not None and w > ZERO for w in (confirmed, obs.weights))
        no_verdict = unreadable or verdict is Verdict.INCONCLUSIVE
        # errors have their own limit; "no data" only counts where data is expected
        inconclusive = (0 if not no_verdict
                        else state.consecutive_inconclusive + 1 if traffic_on_new and not errored
                        else state.consecutive_inconclusive)
        events.append((ev.CHECK, {
            "verdict": verdict.value, "consecutive_failures": failures,
            "consecutive_errors": errors, "consecutive_inconclusive": inconclusive,
            "router": None if obs.weights is None else weight_data(obs.weights),
            "router_error": obs.router_error,
            "results": [r.to_dict() for r in results],
            **({"hooks_counted": counted} if counted else {})}))
        # 3. limits
        failed = [r for r in results if r.verdict is Verdict.FAIL]
        final = [r for r in failed if (r.evidence or {}).get("final")]
        if verdict is Verdict.FAIL and (failures >= plan.failure_limit or final):
            why = "; ".join(f"{r.gate}: {r.reason}" for r in failed)
            head = (f"{failures} consecutive failed checks" if failures >= plan.failure_limit
                    else "a sequential test's FAIL, final for the step")
            limited = _on_failure(plan, state, events, f"{head}: {why}",
                                  [r.to_dict() for r in failed], stuck=False)
            if limited is not None:
                return limited
        stuck_why = None
        if errors >= plan.error_limit:
            stuck_why = (f"stuck: {errors} consecutive checks could not be evaluated: "
                         + _unknown_reason(results, obs))
        elif inconclusive >= plan.inconclusive_limit:
            stuck_why = (f"stuck: {inconclusive} consecutive checks without a verdict: "
                         + _unknown_reason(results, obs))
        if stuck_why is not None:
            limited = _on_failure(plan, state, events, stuck_why,
                                  [r.to_dict() for r in results if r.verdict is not Verdict.PASS],
                                  stuck=True)
            if limited is not None:
                return limited

    # 4. the router is the truth
    if obs.weights is None:
        if obs.router_error != state.router_error:
            events.append((ev.ROUTER_ERROR, {"error": obs.router_error}))
        return Decision(Action.WAIT, f"router unreadable: {obs.router_error}", events=tuple(events),
                        status="holding")
    if state.router_error is not None:
        events.append((ev.ROUTER_READABLE, {"after": state.router_error}))
        if confirmed is not None and confirmed > ZERO and obs.weights == confirmed:
            events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(confirmed),
                                             "reason": "the router answers again"}))
            return Decision(Action.WAIT, f"the router answers again at {obs.weights}: "
                            "the bake starts over", events=tuple(events), status="baking")
    lowest = obs.lowest if obs.lowest is not None else obs.weights
    if confirmed is not None and lowest < confirmed:  # the safe side first
        return _reconcile(plan, state, lowest, events)
    if confirmed is None or obs.weights != confirmed:
        return _reconcile(plan, state, obs.weights, events)

    # 5. a step bakes only on evidence
    bake_since = state.bake_since
    on_new = confirmed > ZERO  # traffic on the new environment: no data never passes
    if verdict is not None and bake_verdict is not Verdict.PASS and on_new:
        why = (_fail_reason(results or ()) if verdict is Verdict.FAIL
               else "inconclusive: " + _unknown_reason(results or (), obs))
        events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(confirmed),
                                         "reason": why}))
        bake_since = now
    elif bake_since is None and on_new:
        events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(confirmed),
                                         "reason": "run started"}))
        bake_since = now
    elif on_new and bake_since is not None and _hooks_done_after(plan, state, bake_since):
        events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(confirmed),
                                         "reason": "the step's hooks are done"}))
        bake_since = now
    if verdict is Verdict.FAIL:
        return Decision(Action.WAIT, f"failed check {failures}/{plan.failure_limit}: "
                        f"{_fail_reason(results or ())}", events=tuple(events), status="failing")

    # 6. operators
    if state.paused:
        word = "stuck" if state.stuck else "paused"
        return Decision(Action.WAIT, f"{word}{': ' + state.pause_reason if state.pause_reason else ''}",
                        events=tuple(events), status=word)

    # 8. before the first step, at 0%: no traffic on new, so no data is expected
    if not on_new:
        if verdict is None:
            return Decision(Action.WAIT, "checking the normal state before the first step",
                            events=tuple(events), status="starting")
        assert results is not None
        broken = [r for r in results if r.error]
        if broken:
            return Decision(Action.WAIT, "not starting: a gate cannot be evaluated: "
                            + "; ".join(f"{r.gate}: {r.reason}" for r in broken),
                            events=tuple(events), status="holding")
        if confirmed == ZERO:  # 7. the start hooks first
            held = _hooks(plan, state, START, events)
            if held is not None:
                return held
        return _advance(plan, state, step_index, confirmed, events, "starting the first step")

    # 7. the hooks below the split that never ran (catch up), then the step's own, as
    # soon as the step is confirmed
    held = _catch_up(plan, state, events)
    if held is None and step_index >= 0 and confirmed == step_weight(plan, step_index):
        held = _hooks(plan, state, step_place(plan, step_index), events)
    if held is not None:
        return held

    # 9. advance
    assert bake_since is not None
    baked = now - bake_since
    if baked < plan.bake:
        return Decision(Action.WAIT, f"baking {confirmed}: {baked:.0f}s of {plan.bake:g}s",
                        events=tuple(events), status="baking")
    if verdict is None:  # baked; no check was due this tick: the next one decides
        if state.waiting_approval is not None:
            return Decision(Action.WAIT, f"waiting for approval of the {state.waiting_approval:g}% step",
                            events=tuple(events), status="waiting_approval")
        return Decision(Action.WAIT, f"{confirmed} baked {baked:.0f}s: the next check decides",
                        events=tuple(events), status="baking")
    if verdict is not Verdict.PASS:
        return Decision(Action.WAIT, f"holding {confirmed}: {_unknown_reason(results or (), obs)}",
                        events=tuple(events), status="holding")
    if step_index == len(plan.steps) - 1:
        held = _hooks(plan, state, PROMOTED, events)  # 7. the promoted hooks, last
        if held is not None:
            return held
        return Decision(Action.PROMOTE, f"{confirmed} baked {baked:.0f}s with every gate passing",
                        events=tuple(events), status="promoting")
    return _advance(plan, state, step_index, confirmed, events,
                    f"{confirmed} baked {baked:.0f}s with every gate passing")


START, PROMOTED = "start", "promoted"


def step_place(plan: Plan, index: int) -> str:
    """How hooks and the journal name a step's place: its percent, as written."""
    return f"{plan.steps[index]:g}"


def hooks_at(plan: Plan, place: str) -> list[Any]:
    """The plan's hooks that run at ``place`` (``start``, ``promoted``, a step), in order."""
    return [h for h in plan.hooks if h.runs_at(place)]


def _places(plan: Plan, state: RunState, *, past: bool = False) -> list[str]:
    """Where the run is, for hooks: ``start`` at 0%, a step exactly at a step (and
    ``promoted`` too at the last one); nowhere between steps. ``past``: the places
    below it too (``start`` and every step under the split), whose one-off hooks
    must have run (a campaign that began above 0%)."""
    confirmed = state.confirmed
    if confirmed is None or confirmed == ZERO:
        return [START]
    index = step_at_or_below(plan, confirmed)
    below = [START] + [step_place(plan, i) for i in range(index)] if past else []
    if index < 0 or confirmed != step_weight(plan, index):
        return below + ([step_place(plan, index)] if past and index >= 0 else [])
    return below + [step_place(plan, index)] + (
        [PROMOTED] if index == len(plan.steps) - 1 else [])


def _hook_results(plan: Plan, state: RunState, places: list[str], now: float,
                  ) -> tuple[tuple[GateResult, ...], list[list[Any]], set[str]]:
    """What the hooks at the run's place add to a check: a FAIL for an attempt that
    failed and was not counted yet, no verdict for one running or about to run
    again. (One whose result is unknown and needs an operator adds nothing: the
    run holds for the operator, not for a limit.) Also: which results are promoted
    hooks' (their failure does not restart the bake)."""
    out: list[GateResult] = []
    counted: list[list[Any]] = []
    promoted: set[str] = set()
    current = _places(plan, state)
    for place in places:
        for spec in hooks_at(plan, place):
            if spec.at == EVERY_STEP and place not in current:
                continue  # a step's checks ran when it was the step
            rec = state.hook(spec.name, place)
            if rec is None or rec.status == "ok":
                continue
            gate = f"hook {spec.name}"
            if rec.status == "failed" and rec.counted < rec.attempt:
                out.append(GateResult(gate, Verdict.FAIL, reason=f"hook at {place} failed "
                                      f"(attempt {rec.attempt}): {rec.summary}", at=now))
                counted.append([spec.name, place, rec.attempt])
                if place == PROMOTED:
                    promoted.add(gate)
            elif place == PROMOTED:
                continue  # 100% has baked: a promoted hook at work does not restart the bake
            elif rec.status == "running":
                out.append(GateResult(gate, Verdict.INCONCLUSIVE,
                                      reason=f"hook at {place} is running (attempt {rec.attempt})",
                                      at=now))
            elif rec.status == "failed" or spec.idempotent:
                out.append(GateResult(gate, Verdict.INCONCLUSIVE,
                                      reason=f"hook at {place} runs again: {rec.summary}", at=now))
    return tuple(out), counted, promoted


def _hooks_done_after(plan: Plan, state: RunState, since: float) -> bool:
    """Did the last hook of this place succeed after ``since`` (the bake started
    before its hooks were done)?"""
    places = [p for p in _places(plan, state) if p != PROMOTED]
    specs = [(s, p) for p in places for s in hooks_at(plan, p)]
    if not specs:
        return False
    recs = [state.hook(s.name, p) for s, p in specs]
    if any(r is None or r.status != "ok" for r in recs):
        return False
    return max((r.finished_at or 0.0) for r in recs if r is not None) > since


def _catch_up(plan: Plan, state: RunState,
              events: list[tuple[str, dict[str, Any]]]) -> Decision | None:
    """The one-off hooks of the places below the split that never ran in this
    campaign (it began above 0%: an earlier attempt by hand, a plan edited to add a
    hook): they run first, in order (``every_step`` ones do not: those places are
    past)."""
    current = _places(plan, state)
    for place in _places(plan, state, past=True):
        if place in current:
            continue
        held = _hooks(plan, state, place, events, one_off=True)
        if held is not None:
            return held
    return None


def _hooks(plan: Plan, state: RunState, place: str,
           events: list[tuple[str, dict[str, Any]]], *, one_off: bool = False) -> Decision | None:
    """The hooks at ``place``: None once every one has succeeded, else what to do."""
    for spec in hooks_at(plan, place):
        if one_off and spec.at == EVERY_STEP:
            continue
        rec = state.hook(spec.name, place)
        if rec is not None and rec.status == "ok":
            continue
        name = spec.name
        if rec is None or (rec.status == "failed" and rec.counted >= rec.attempt) or (
                rec.status == "unknown" and spec.idempotent):
            again = "" if rec is None else (
                " again (its result was unknown; it is idempotent)" if rec.status == "unknown"
                else f" again (attempt {rec.attempt} failed: {rec.summary})")
            return Decision(Action.HOOK, f"running hook {name!r} at {place}{again}",
                            events=tuple(events), status="hook", hook=(name, place))
        if rec.status == "running":
            return Decision(Action.WAIT, f"hook {name!r} at {place} is running "
                            f"(attempt {rec.attempt})", events=tuple(events), status="hook")
        if rec.status == "failed":  # the next check counts it
            return Decision(Action.WAIT, f"hook {name!r} at {place} failed: {rec.summary}",
                            events=tuple(events), status="failing")
        return Decision(Action.WAIT, f"hook {name!r} at {place}: its result is unknown (a run "
                        "stopped while it ran) and it is not idempotent: check whether it did "
                        "its work, then say so with `shiftover ack`",
                        events=tuple(events), status="held", hook=(name, place))
    return None


def _pct(w: Weights) -> float:
    return float(w.new_percent)


def _fail_reason(results: tuple[GateResult, ...]) -> str:
    return "; ".join(f"{r.gate}: {r.reason}" for r in results if r.verdict is Verdict.FAIL)


def _unknown_reason(results: tuple[GateResult, ...], obs: Observation) -> str:
    held = [f"{r.gate}: {r.reason}" for r in results if r.verdict is Verdict.INCONCLUSIVE]
    if obs.weights is None:
        held.insert(0, f"router unreadable: {obs.router_error}")
    return "; ".join(held) or "inconclusive"


def _on_failure(plan: Plan, state: RunState, events: list[tuple[str, dict[str, Any]]],
                reason: str, gates: list[dict[str, Any]], *, stuck: bool) -> Decision | None:
    """Run the plan's ``on_failure``; None when it is a pause that already holds."""
    if plan.on_failure == "rollback":
        return _start_rollback(events, reason, gates, stuck=stuck)
    if state.paused:
        return None
    events.append((ev.ENGINE_PAUSED, {"reason": reason, "stuck": stuck}))
    return Decision(Action.WAIT, f"paused: {reason}", events=tuple(events),
                    status="stuck" if stuck else "paused")


def _reconcile(plan: Plan, state: RunState, router: Weights,
               events: list[tuple[str, dict[str, Any]]]) -> Decision:
    confirmed = state.confirmed
    if confirmed is not None and router > confirmed:
        return Decision(
            Action.APPLY,
            f"router has {router}, above the last confirmed {confirmed}: returning to it",
            target=confirmed, step_index=step_at_or_below(plan, confirmed),
            events=tuple(events), status="reconciling",
        )
    step_index = step_at_or_below(plan, router)
    events.append((ev.RECONCILED, {
        "journal_percent": None if confirmed is None else _pct(confirmed),
        "journal_exact": None if confirmed is None else confirmed.exact,
        "router_percent": _pct(router), "router_exact": router.exact, "step_index": step_index}))
    # (a split carried over from the last campaign is not this campaign's: a drop
    # to 0% between campaigns is where a new `run` starts, not a drain to respect)
    drained = (confirmed is not None and confirmed > ZERO and router == ZERO
               and not state.carried)
    if drained and not state.paused:
        events.append((ev.ENGINE_PAUSED, {
            "reason": f"the router was set to 0% outside shiftover (it had {confirmed} confirmed): "
                      "taken as an operator's emergency drain; `shiftover resume` climbs again"}))
        return Decision(Action.WAIT, f"the router went from {confirmed} to 0% outside shiftover: "
                        "paused", events=tuple(events), status="paused")
    if router > ZERO:
        events.append((ev.BAKE_STARTED, {"step_index": step_index, "percent": _pct(router),
                                         "reason": "reconciled with the router"}))
    return Decision(Action.WAIT, f"reconciled with the router at {router}", step_index=step_index,
                    events=tuple(events), status="reconciling")


def _advance(plan: Plan, state: RunState, step_index: int, confirmed: Weights,
             events: list[tuple[str, dict[str, Any]]], why: str) -> Decision:
    nxt = step_index + 1
    target = step_weight(plan, nxt)
    step = plan.steps[nxt]
    if step in plan.approvals and float(step) not in state.approved:
        if state.waiting_approval != float(step):
            events.append((ev.APPROVAL_WAITING, {"step": step}))
        return Decision(Action.WAIT, f"waiting for approval of the {step:g}% step",
                        events=tuple(events), status="waiting_approval")
    events.append((ev.STEP_ADVANCED, {"from_percent": _pct(confirmed), "to_percent": _pct(target),
                                      "to_exact": target.exact, "step_index": nxt}))
    return Decision(Action.APPLY, f"{why}: moving to {target}", target=target, step_index=nxt,
                    events=tuple(events), status="advancing")


def _start_rollback(events: list[tuple[str, dict[str, Any]]], reason: str,
                    gates: list[dict[str, Any]], *, stuck: bool = False) -> Decision:
    events.append((ev.ROLLBACK_STARTED, {"reason": reason, "gates": gates, "stuck": stuck}))
    return Decision(Action.ROLLBACK, reason, target=ZERO, step_index=-1, events=tuple(events),
                    status="rolling_back")


def _rollback(state: RunState, obs: Observation, now: float) -> Decision:
    if not state.rolling_back:  # an operator asked; start it
        reason = f"operator requested rollback{': ' + state.rollback_reason if state.rollback_reason else ''}"
        return _start_rollback([], reason, [])
    if state.rollback_confirmed or (obs.weights == ZERO and state.confirmed == ZERO):
        started = state.rollback_started_at if state.rollback_started_at is not None else now
        return Decision(Action.ROLLED_BACK, f"rolled back: {state.rollback_reason}",
                        events=((ev.ROLLED_BACK, {"seconds": round(now - started, 3),
                                                  "reason": state.rollback_reason,
                                                  "confirmed_by": "router"}),),
                        status="rolled_back")
    return Decision(Action.ROLLBACK, state.rollback_reason, target=ZERO, step_index=-1,
                    status="rolling_back")
