"""Notifications from a real (simulated) run: the engine Runner with the in-memory
router, a scripted gate and a fake clock, its ``on_event`` wired to the Notifier.

The claim "a notifier never slows the run" is shown by running the same plan twice,
without notifications and with a receiver that never answers, and comparing the
journals: the same events at the same (simulated) times. No wall clock is read.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.engine.decide import Decision, Observation
from shiftover.engine.events import RunState
from shiftover.engine.run import Gate, Runner, RunOutcome
from shiftover.notify import Notifier, NotifySpec
from shiftover.plan import Plan
from shiftover.store import Store, open_store
from shiftover.testing import FakeClock, InMemoryRouter, ScriptedProvider, plan_dict
from shiftover.types import Weights
from shiftover.views import Commands

from .conftest import Receiver

FAILING = [0.0] * 9 + [0.05]   # passes, then fails from the 10th check on: a rollback


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[Store]]:
    made: list[Store] = []
    yield made
    for s in made:
        s.close()


def simulate(tmp_path: Path, stores: list[Store], name: str, script: list[Any], *,
             on_event: Any = None, approvals: list[float] | None = None
             ) -> tuple[RunOutcome, Store, InMemoryRouter]:
    store = open_store(f"sqlite:///{tmp_path}/{name}.db")
    stores.append(store)
    plan = Plan.model_validate(plan_dict(approvals=approvals or []))
    router, clock = InMemoryRouter(), FakeClock()

    def approve(state: RunState, obs: Observation, d: Decision) -> None:
        # an operator approves the 50% step as soon as it waits
        if d.status == "waiting_approval" and 50.0 not in state.approved:
            store.append(service="svc", run_id="op", kind=ev.APPROVED, at=clock.now(),
                         data={"step": 50}, actor="alice@host")

    runner = Runner(plan, router, [Gate(plan.normal_state[0], ScriptedProvider(script))], store,
                    clock, on_event=on_event, on_tick=approve)
    return runner.run(max_duration=3600), store, router


def timeline(store: Store) -> list[tuple[str, float]]:
    return [(e.kind, e.at) for e in store.events(service="svc")]


def notifier(url: str, **kw: Any) -> Notifier:
    specs = [NotifySpec.model_validate({"webhook": {"url": url, "timeout": "5m"}}),
             NotifySpec.model_validate({"slack": {"url": url + "/slack", "timeout": "5m"}})]
    return Notifier(specs, redact=lambda s: s, commands=Commands(plan="plan.yaml"),
                    clock_sleep=lambda _s: None, **kw)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("script", "approvals", "outcome"), [
    (FAILING, None, "rolled_back"),
    ([0.0], [50], "promoted"),
])
def test_a_hanging_receiver_leaves_the_run_exactly_as_without_notifications(
        tmp_path: Path, stores: list[Store], receiver: Receiver, script: list[Any],
        approvals: list[float] | None, outcome: str) -> None:
    receiver.hang = True
    plain, plain_store, plain_router = simulate(tmp_path, stores, "plain", script,
                                                approvals=approvals)
    n = notifier(receiver.url)
    try:
        hung, hung_store, hung_router = simulate(tmp_path, stores, "hung", script,
                                                 on_event=n.observe, approvals=approvals)
        assert plain.outcome == hung.outcome == outcome
        # the same journal, event for event, at the same simulated times
        assert timeline(hung_store) == timeline(plain_store)
        assert len(timeline(plain_store)) > 20
        assert hung_router.history == plain_router.history
        receiver.wait_for(1)  # the first message did reach the receiver, which never answers
    finally:
        n.close(0.1)
    undelivered = n.failures()
    assert {f["target"] for f in undelivered} == {"webhook-1", "slack-2"}
    assert all(f["gave_up"] and "not delivered" in f["error"] for f in undelivered)


def test_a_run_notifies_in_order_through_a_receiver_that_fails_first(
        tmp_path: Path, stores: list[Store], receiver: Receiver) -> None:
    receiver.fail_first = 2
    n = notifier(receiver.url, retries=3)
    try:
        out, _, _ = simulate(tmp_path, stores, "run", FAILING, on_event=n.observe)
    finally:
        n.close(30)
    assert out.outcome == "rolled_back"
    webhook = [r.body for r in receiver.requests if r.path == "/" and r.status == 200]
    assert [(b["event"], b["percent"]) for b in webhook] == [
        ("step_advanced", 10.0), ("step_advanced", 50.0), ("failing_check", 50.0),
        ("failing_check", 50.0), ("rollback_started", 50.0), ("rolled_back", 0.0)]
    fail = webhook[2]
    assert fail["text"].startswith("svc: check FAILED at 50% on new: errors: value 0.05, "
                                   "threshold ")
    assert fail["command"] == "shiftover status plan.yaml"
    assert "shiftover rollback plan.yaml" in fail["text"]
    slack = [html.unescape(r.body["text"]) for r in receiver.requests
             if r.path == "/slack" and r.status == 200]
    assert slack == [b["text"] for b in webhook]  # the same words (Slack's are escaped: &lt;)
    # the two targets share the receiver: either may have met its 500s; each is journalled
    # once when it starts failing, not at every retry, and nothing was given up
    failures = n.failures()
    assert failures and all(not f["gave_up"] and f["attempts"] == 1 for f in failures)
    assert len({f["target"] for f in failures}) == len(failures)


def test_waiting_for_approval_from_a_run(tmp_path: Path, stores: list[Store],
                                         receiver: Receiver) -> None:
    n = notifier(receiver.url)
    try:
        out, _, router = simulate(tmp_path, stores, "run", [0.0], on_event=n.observe,
                                  approvals=[50])
    finally:
        n.close(30)
    assert out.outcome == "promoted" and router.read() == Weights(100)
    webhook = [r.body for r in receiver.requests if r.path == "/"]
    assert [(b["event"], b["percent"]) for b in webhook] == [
        ("step_advanced", 10.0), ("waiting_for_approval", 10.0), ("step_advanced", 50.0),
        ("step_advanced", 100.0), ("promoted", 100.0)]
    assert webhook[1]["command"] == "shiftover approve plan.yaml --step 50"
    assert webhook[1]["text"] == ("svc: waiting for approval of the 50% step (now 10% on new). "
                                  "To approve: shiftover approve plan.yaml --step 50")
    assert n.failures() == []
