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


def test_a_rollback_waits_for_the_router_whatever_happens(store: Store) -> None:
    clock = FakeClock()
    router = SlowRouter(clock, polls=3)
    lines: list[str] = []
    # healthy, then failing: the run rolls back, and the rollback's write waits its polls
    runner = make(store, router, clock, ScriptedProvider([0.0] * 9 + [0.05]), lines)
    rollback_polls: list[str] = []

    def stop_during_rollback(line: str) -> None:
        lines.append(line)
        if runner.status == "rolling_back":
            rollback_polls.append(line)
            runner.stop()  # a Ctrl-C now must not cut the rollback's wait short

    runner.on_progress = stop_during_rollback
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back"
    assert len(rollback_polls) == 3 and router.read() == Weights(0)
