"""The rules of the run, table by table. No servers, no sleeps, no clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.engine.decide import Action, Observation, decide, step_at_or_below
from shiftover.engine.events import RunState
from shiftover.plan import Plan
from shiftover.testing import plan_dict
from shiftover.types import GateResult, Verdict, Weights

NOW = 10_000.0


def plan(**kw: Any) -> Plan:
    return Plan.model_validate(plan_dict(**kw))


P = plan()  # steps 10, 50, 100; bake 60s; failure_limit 2; rollback


def r(verdict: Verdict, gate: str = "errors", value: float | None = 0.0) -> GateResult:
    return GateResult(gate, verdict, value, "<= 0.01", 100, verdict.value, NOW)


PASS = (r(Verdict.PASS),)
FAIL = (r(Verdict.FAIL, value=0.05),)
INCON = (r(Verdict.INCONCLUSIVE, value=None),)


def at(step_index: int, *, baked: float = 0.0, **kw: Any) -> RunState:
    w = Weights(0) if step_index < 0 else Weights(str(P.steps[step_index]))
    return RunState(started=True, confirmed=w, intended=w, bake_since=NOW - baked, **kw)


def obs(weights: Weights | None, results: tuple[GateResult, ...] | None = PASS) -> Observation:
    return Observation(weights, None if weights else "down", results)


def kinds(d: Any) -> list[str]:
    return [k for k, _ in d.events]


W = Weights


# (id, state, observation, expected action, expected target %, expected event kinds subset)
CASES = [
    ("start: no failing gate -> first step",
     RunState(started=True, confirmed=W(0)), obs(W(0), INCON), Action.APPLY, 10, [ev.STEP_ADVANCED]),
    ("start: a failing gate holds at 0%",
     RunState(started=True, confirmed=W(0)), obs(W(0), FAIL), Action.WAIT, None, [ev.CHECK]),
    ("start: failing gates at 0% up to the limit end the campaign, nothing shifted",
     RunState(started=True, confirmed=W(0), consecutive_failures=1), obs(W(0), FAIL),
     Action.ROLLBACK, 0, [ev.CHECK, ev.ROLLBACK_STARTED]),
    ("baking: bake not over",
     at(0, baked=30), obs(W(10)), Action.WAIT, None, [ev.CHECK]),
    ("baked + pass -> next step",
     at(0, baked=60), obs(W(10)), Action.APPLY, 50, [ev.CHECK, ev.STEP_ADVANCED]),
    ("baked + inconclusive -> hold (no data never passes), bake restarts",
     at(0, baked=600), obs(W(10), INCON), Action.WAIT, None, [ev.CHECK, ev.BAKE_STARTED]),
    ("baked + no check this tick -> hold",
     at(0, baked=600), obs(W(10), None), Action.WAIT, None, []),
    ("one fail below the limit -> wait, bake restarts",
     at(0, baked=600), obs(W(10), FAIL), Action.WAIT, None, [ev.CHECK, ev.BAKE_STARTED]),
    ("fail at the limit -> rollback",
     at(1, baked=10, consecutive_failures=1), obs(W(50), FAIL), Action.ROLLBACK, 0,
     [ev.CHECK, ev.ROLLBACK_STARTED]),
    ("inconclusive does not reset the failure count nor add to it",
     at(1, baked=10, consecutive_failures=1), obs(W(50), INCON), Action.WAIT, None, [ev.CHECK]),
    ("last step baked + pass -> promote",
     at(2, baked=60), obs(W(100)), Action.PROMOTE, None, [ev.CHECK]),
    ("router unreadable -> hold",
     at(0, baked=600), obs(None), Action.WAIT, None, [ev.ROUTER_ERROR]),
    ("router lower than journal -> accept, reconcile, rebake",
     at(1, baked=600), obs(W(10)), Action.WAIT, None, [ev.RECONCILED, ev.BAKE_STARTED]),
    ("router higher than journal -> return to the confirmed step",
     at(0, baked=600), obs(W(50)), Action.APPLY, 10, []),
    ("router between steps and lower -> largest step below",
     at(1, baked=600), obs(W(20)), Action.WAIT, None, [ev.RECONCILED]),
    ("operator rollback request -> rollback",
     at(1, baked=10, rollback_requested=True), obs(W(50)), Action.ROLLBACK, 0, [ev.ROLLBACK_STARTED]),
    ("rolling back, router not yet 0 -> retry rollback",
     at(1, rolling_back=True), obs(W(50)), Action.ROLLBACK, 0, []),
    ("rolling back, router unreadable -> keep retrying",
     at(1, rolling_back=True), obs(None), Action.ROLLBACK, 0, []),
    ("rolling back, router confirms 0 -> rolled back",
     replace(at(-1), rolling_back=True, rollback_started_at=NOW - 1.5), obs(W(0)),
     Action.ROLLED_BACK, None, [ev.ROLLED_BACK]),
    ("rolling back, 0% verified but the router unreadable (MAINT) -> rolled back",
     replace(at(-1), rolling_back=True, rollback_confirmed=True), obs(None),
     Action.ROLLED_BACK, None, [ev.ROLLED_BACK]),
    ("paused -> never advance",
     at(0, baked=600, paused=True), obs(W(10)), Action.WAIT, None, [ev.CHECK]),
    ("paused, failures still roll back",
     at(0, baked=600, paused=True, consecutive_failures=1), obs(W(10), FAIL), Action.ROLLBACK, 0,
     [ev.ROLLBACK_STARTED]),
]


@pytest.mark.parametrize(("name", "state", "observation", "action", "target", "expected"),
                         CASES, ids=[c[0] for c in CASES])
def test_rules(name: str, state: RunState, observation: Observation, action: Action,
               target: float | None, expected: list[str]) -> None:
    d = decide(P, state, observation, NOW)
    assert d.action is action, d.reason
    if target is not None:
        assert d.target == Weights(target)
    got = kinds(d)
    for k in expected:
        assert k in got, (k, got)


def test_failure_count_increments_and_resets() -> None:
    d = decide(P, at(0, baked=1), obs(W(10), FAIL), NOW)
    assert dict(d.events)[ev.CHECK]["consecutive_failures"] == 1
    d = decide(P, at(0, baked=1, consecutive_failures=1), obs(W(10), PASS), NOW)
    assert dict(d.events)[ev.CHECK]["consecutive_failures"] == 0


def test_on_failure_pause() -> None:
    p = plan(on_failure="pause")
    d = decide(p, at(1, baked=1, consecutive_failures=1), obs(W(50), FAIL), NOW)
    assert d.action is Action.WAIT
    assert ev.PAUSED in kinds(d)
    assert d.status == "paused"


def test_failure_limit_one_rolls_back_at_first_fail() -> None:
    p = plan(failure_limit=1)
    d = decide(p, at(0, baked=1), obs(W(10), FAIL), NOW)
    assert d.action is Action.ROLLBACK
    started = dict(d.events)[ev.ROLLBACK_STARTED]
    assert "errors" in started["reason"] and started["gates"][0]["value"] == 0.05


def test_approval_holds_then_advances() -> None:
    p = plan(approvals=[50])
    d = decide(p, at(0, baked=600), obs(W(10)), NOW)
    assert d.action is Action.WAIT and d.status == "waiting_approval"
    assert ev.APPROVAL_WAITING in kinds(d)
    # already announced: not journalled twice
    d = decide(p, at(0, baked=600, waiting_approval=50.0), obs(W(10)), NOW)
    assert ev.APPROVAL_WAITING not in kinds(d)
    d = decide(p, at(0, baked=600, approved=frozenset({50.0})), obs(W(10)), NOW)
    assert d.action is Action.APPLY and d.target == Weights(50)


def test_approval_needs_bake_and_pass_first() -> None:
    p = plan(approvals=[50])
    d = decide(p, at(0, baked=1, approved=frozenset({50.0})), obs(W(10)), NOW)
    assert d.action is Action.WAIT and d.status == "baking"


def test_fresh_state_reconciles_with_router_first() -> None:
    d = decide(P, RunState(started=True), obs(W(0)), NOW)
    assert d.action is Action.WAIT
    rec = dict(d.events)[ev.RECONCILED]
    assert rec["router_percent"] == 0 and rec["step_index"] == -1


@pytest.mark.parametrize(("percent", "index"), [(0, -1), (5, -1), (10, 0), (49, 0), (50, 1), (100, 2)])
def test_step_at_or_below(percent: float, index: int) -> None:
    assert step_at_or_below(P, Weights(percent)) == index


def test_bake_is_exact_at_the_boundary() -> None:
    d = decide(P, at(0, baked=59.999), obs(W(10)), NOW)
    assert d.action is Action.WAIT
    d = decide(P, at(0, baked=60.0), obs(W(10)), NOW)
    assert d.action is Action.APPLY


def test_decide_is_pure() -> None:
    s = at(0, baked=600)
    o = obs(W(10))
    assert decide(P, s, o, NOW) == decide(P, s, o, NOW)
