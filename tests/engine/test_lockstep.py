"""Routers in lockstep (routers/group.py) through the real loop: in-memory members,
a fake clock. The AWS members run the same paths in tests/e2e/test_aws_runs.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.engine.decide import Action, Observation, decide
from shiftover.engine.events import RunState
from shiftover.engine.run import Gate, Runner
from shiftover.errors import LeaseHeld, RouterConfigError, RouterError
from shiftover.plan import Plan
from shiftover.routers.group import LockstepRouter
from shiftover.store import Store, open_store
from shiftover.testing import FakeClock, InMemoryRouter, ScriptedProvider, plan_dict
from shiftover.types import Weights

W = Weights


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def members(initial: Weights | None = None) -> tuple[InMemoryRouter, InMemoryRouter]:
    return (InMemoryRouter(initial, scale=255, key="memory:dns"),
            InMemoryRouter(initial, scale=999, key="memory:alb"))


def runner(store: Store, group: LockstepRouter, provider: ScriptedProvider | None = None,
           clock: FakeClock | None = None, **plan_kw: Any) -> Runner:
    p = Plan.model_validate(plan_dict(**plan_kw))
    return Runner(p, group, [Gate(p.normal_state[0], provider or ScriptedProvider([0.0]))], store,
                  clock or FakeClock())


# --- the group as a router --------------------------------------------------------


def test_read_is_the_highest_member_and_range_gives_both() -> None:
    dns, alb = members()
    group = LockstepRouter([dns, alb])
    dns.apply(W(10))
    alb.apply(W(5))
    assert group.read() == W(10)
    assert group.read_range() == (W(5), W(10))
    assert group.verify(W(10)) is False


def test_apply_reaches_every_member_even_when_one_fails() -> None:
    dns, alb = members(W(10))
    group = LockstepRouter([dns, alb])
    dns.fail_applies = 1
    with pytest.raises(RouterError, match=r"1 of 2 routers did not take 0%.*routers\[0\]"):
        group.apply(W(0))
    assert alb.read() == W(0)  # the member that could move did
    assert [m["ok"] for m in group.last_report] == [False, True]
    group.apply(W(0))
    assert group.verify(W(0)) is True


def test_an_unreadable_member_makes_the_group_unreadable() -> None:
    dns, alb = members()
    dns.unreadable = "throttled"
    with pytest.raises(RouterError, match=r"routers\[0\].*throttled"):
        LockstepRouter([dns, alb]).read()


def test_one_target_listed_twice_is_refused() -> None:
    a = InMemoryRouter(key="memory:same")
    b = InMemoryRouter(key="memory:same")
    with pytest.raises(RouterConfigError, match="same target"):
        LockstepRouter([a, b])


def test_lease_keys_are_each_members_sorted() -> None:
    group = LockstepRouter([InMemoryRouter(key="memory:b"), InMemoryRouter(key="memory:a")])
    assert group.lease_keys() == ["memory:a", "memory:b"]
    assert group.lease_key() == "memory:a"


# --- the rules: highest for "above", lowest for "below" ---------------------------


def _state(confirmed: Weights) -> RunState:
    return RunState(confirmed=confirmed, started=True)


def test_a_member_left_above_by_a_half_done_step_is_sent_back() -> None:
    p = Plan.model_validate(plan_dict())
    d = decide(p, _state(W(10)), Observation(W(50), lowest=W(10)), now=0.0)
    assert d.action is Action.APPLY and d.target == W(10)


def test_a_member_lowered_by_hand_is_honoured_not_climbed_back() -> None:
    p = Plan.model_validate(plan_dict())
    d = decide(p, _state(W(50)), Observation(W(50), lowest=W(10)), now=0.0)
    assert d.action is Action.WAIT and d.status == "reconciling"
    assert any(k == ev.RECONCILED and data["router_exact"] == "10" for k, data in d.events)


def test_a_member_drained_to_zero_by_hand_pauses_the_run() -> None:
    p = Plan.model_validate(plan_dict())
    d = decide(p, _state(W(50)), Observation(W(50), lowest=W(0)), now=0.0)
    assert d.status == "paused"
    assert any(k == ev.ENGINE_PAUSED for k, _ in d.events)


# --- whole runs -------------------------------------------------------------------


def test_a_lockstep_run_promotes_every_member(store: Store) -> None:
    dns, alb = members()
    out = runner(store, LockstepRouter([dns, alb])).run(max_duration=3600)
    assert out.outcome == "promoted"
    assert dns.read() == alb.read() == W(100)
    assert dns.history == alb.history == [W(10), W(50), W(100)]
    confirmed = [e.data for e in store.events(service="svc", kinds=[ev.WEIGHT_CONFIRMED])]
    assert all([m["ok"] for m in c["members"]] == [True, True] for c in confirmed)
    intended = [e.data for e in store.events(service="svc", kinds=[ev.WEIGHT_INTENDED])]
    assert all(len(i["members"]) == 2 for i in intended)


def test_a_member_failing_mid_step_is_reconciled_on_the_next_tick(store: Store) -> None:
    dns, alb = members()
    alb.fail_applies = 2  # the 10% step reaches DNS only, twice
    out = runner(store, LockstepRouter([dns, alb])).run(max_duration=3600)
    assert out.outcome == "promoted"
    failed = [e.data for e in store.events(service="svc", kinds=[ev.WEIGHT_FAILED])]
    assert failed and [m["ok"] for m in failed[0]["members"]] == [True, False]
    # DNS never served more than the confirmed split for longer than a tick: every
    # write after a failure is either a retry of the step or a return to the confirmed
    assert dns.read() == alb.read() == W(100)


def test_a_failing_gate_rolls_every_member_back(store: Store) -> None:
    dns, alb = members()
    out = runner(store, LockstepRouter([dns, alb]),
                 provider=ScriptedProvider([0.0] * 9 + [0.05])).run(max_duration=3600)
    assert out.outcome == "rolled_back"
    assert dns.read() == alb.read() == W(0)
    assert dns.verify(W(0)) and alb.verify(W(0))


def test_the_group_holds_a_lease_on_every_member(store: Store) -> None:
    dns, alb = members()
    store.acquire_lease(key="memory:alb", holder="someone-else", ttl=600)
    with pytest.raises(LeaseHeld):
        runner(store, LockstepRouter([dns, alb])).run(max_duration=60)
    assert dns.history == [] and alb.history == []
    # and the member lease it took before the refusal was let go
    assert store.lease(key="memory:dns") is None


class PropagatingRouter(InMemoryRouter):
    """Writes at once, confirms later (Route53: submit, then settle until INSYNC)."""

    def __init__(self, log: list[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.log = log

    def submit(self, weights: Weights) -> None:
        super().apply(weights)
        self.log.append(f"submit {self.key}")

    def settle(self) -> None:
        self.log.append(f"settle {self.key}")

    def apply(self, weights: Weights) -> None:
        self.submit(weights)
        self.settle()


class LoggingRouter(InMemoryRouter):
    def __init__(self, log: list[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.log = log

    def apply(self, weights: Weights) -> None:
        super().apply(weights)
        self.log.append(f"apply {self.key}")


def test_one_members_propagation_never_holds_back_anothers_write() -> None:
    log: list[str] = []
    group = LockstepRouter([PropagatingRouter(log, scale=255, key="memory:dns"),
                            LoggingRouter(log, scale=999, key="memory:alb")])
    group.apply(W(0))
    assert log == ["submit memory:dns", "apply memory:alb", "settle memory:dns"]


def test_a_lost_lease_during_a_members_wait_is_heard_as_such() -> None:
    from shiftover.errors import LeaseLost

    class LosingRouter(PropagatingRouter):
        def settle(self) -> None:
            raise LeaseLost("the lease was taken over")

    log: list[str] = []
    group = LockstepRouter([LosingRouter(log, scale=255, key="memory:dns"),
                            LoggingRouter(log, scale=999, key="memory:alb")])
    with pytest.raises(LeaseLost):
        group.apply(W(10))
