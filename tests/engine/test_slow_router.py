"""A router whose write waits (Route53 until the change is INSYNC) reports each poll
through ``on_progress``: the run renews its lease meanwhile, hears a stop, and never
cuts a rollback's wait short. In-memory doubles, a fake clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.engine.run import Gate, Runner
from shiftover.plan import Plan
from shiftover.store import Store, open_store
from shiftover.testing import FakeClock, InMemoryRouter, ScriptedProvider, plan_dict
from shiftover.types import Weights


class SlowRouter(InMemoryRouter):
    """Each apply polls ``polls`` times, 10 s of fake time apart, before it returns."""

    def __init__(self, clock: FakeClock, polls: int) -> None:
        super().__init__()
        self.clock = clock
        self.polls = polls
        self.on_progress: Callable[[str], None] | None = None
        self.waits: list[Weights] = []

    def apply(self, weights: Weights) -> None:
        super().apply(weights)  # submitted: the backend shows it at once, like Route53
        for i in range(self.polls):
            self.waits.append(weights)
            self.clock.sleep(10)
            if self.on_progress is not None:
                self.on_progress(f"waiting for change {i}")


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def make(store: Store, router: SlowRouter, clock: FakeClock, provider: ScriptedProvider,
         lines: list[str]) -> Runner:
    p = Plan.model_validate(plan_dict())
    return Runner(p, router, [Gate(p.normal_state[0], provider)], store, clock,
                  lease_ttl=30, on_progress=lines.append)


def test_a_write_waiting_longer_than_the_lease_keeps_the_lease(store: Store) -> None:
    clock = FakeClock()
    router = SlowRouter(clock, polls=12)  # 120 s per write, the lease is 30 s
    lines: list[str] = []
    runner = make(store, router, clock, ScriptedProvider([0.0]), lines)
    renewed: list[float] = []
    renew = store.renew_lease

    def recording(**kw: Any) -> Any:
        renewed.append(clock.now())
        return renew(**kw)

    store.renew_lease = recording  # type: ignore[method-assign]
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted"
    assert "waiting for change 11" in lines
    # (the store judges expiry by the database's clock; the fake clock is the run's:
    # what is checked is that the run renews while it waits, not only between ticks)
    gaps = [b - a for a, b in itertools.pairwise(renewed)]
    assert max(gaps) <= 30 / 3 + 10


def test_a_stop_ends_the_wait_and_the_write_is_journalled_as_failed(store: Store) -> None:
    clock = FakeClock()
    router = SlowRouter(clock, polls=50)
    lines: list[str] = []
    runner = make(store, router, clock, ScriptedProvider([0.0]), lines)

    def stop_on_third(line: str) -> None:
        lines.append(line)
        if len(lines) == 3:
            runner.stop()

    runner.on_progress = stop_on_third
    out = runner.run(max_duration=3600)
    assert out.outcome == "held"
    assert len(router.waits) == 3  # the wait ended at the poll after the stop
    failed = [e.data for e in store.events(service="svc", kinds=[ev.WEIGHT_FAILED])]
    assert failed and "stopped while the router was confirming" in failed[-1]["error"]


def test_a_rollback_whose_write_waits_completes(store: Store) -> None:
    clock = FakeClock()
    router = SlowRouter(clock, polls=3)
    lines: list[str] = []
    # healthy, then failing: the run rolls back, and the rollback's write waits its polls
    runner = make(store, router, clock, ScriptedProvider([0.0] * 9 + [0.05]), lines)
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back" and router.read() == Weights(0)


def test_a_stop_during_a_rollbacks_wait_ends_it_and_says_to_roll_back_again(
        store: Store) -> None:
    clock = FakeClock()
    router = SlowRouter(clock, polls=50)
    router.polls = 0  # the steps go at once; the rollback's write waits
    lines: list[str] = []
    runner = make(store, router, clock, ScriptedProvider([0.0] * 9 + [0.05]), lines)

    def slow_rollback(weights: Weights) -> None:
        router.polls = 50 if weights == Weights(0) else 0

    router.on_apply = slow_rollback
    rollback_polls: list[str] = []

    def stop_during_rollback(line: str) -> None:
        lines.append(line)
        if runner.status == "rolling_back":
            rollback_polls.append(line)
            runner.stop()  # Ctrl-C: the wait ends, the write stays submitted

    runner.on_progress = stop_during_rollback
    out = runner.run(max_duration=3600)
    assert out.outcome == "held" and out.exit_code == 4
    assert "shiftover rollback" in out.reason
    assert len(rollback_polls) == 1  # the poll after the stop ended the wait
    assert router.read() == Weights(0)  # submitted: the backend serves it


def test_a_deadline_bounds_a_rollbacks_wait_as_shiftover_rollback_timeout_does() -> None:
    from shiftover.engine.rollback import drive_to_zero

    clock = FakeClock()
    router = SlowRouter(clock, polls=50)  # 500 s of waiting if nothing cut it short
    router.apply(Weights(50))
    router.waits.clear()
    start = clock.now()
    error = drive_to_zero(router, clock, deadline=start + 25)
    assert error is not None and "not confirmed in time" in error
    assert clock.now() - start <= 25 + 10 and len(router.waits) <= 4
    assert router.on_progress is None  # the hook it added is gone


def test_a_stop_before_a_reconcile_says_the_router_was_left_where_it_is(store: Store) -> None:
    clock = FakeClock()
    router = SlowRouter(clock, polls=0)
    lines: list[str] = []
    runner = make(store, router, clock, ScriptedProvider([0.0]), lines)
    assert runner.run(max_duration=70).outcome == "held"  # 10% confirmed
    router.apply(Weights(50))  # a write that was never confirmed (a stopped INSYNC wait)
    again = make(store, router, clock, ScriptedProvider([0.0]), lines)
    again.stop()
    out = again.run(max_duration=60)
    assert out.outcome == "held"
    assert "not done: 10% was not written, the router was left at 50%" in out.reason
