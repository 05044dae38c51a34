"""Issue 6's counterexamples, each as a regression test named after the guarantee it
guards. In-memory router, scripted providers, a fake clock and a real SQLite journal:
whole runs in milliseconds, no servers (the same faults against a real HAProxy are
in tests/routers, tests/e2e and tests/chaos)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.engine.decide import Decision, Observation
from shiftover.engine.events import RunState, current_step, fold
from shiftover.engine.rollback import roll_back
from shiftover.engine.run import Gate, Runner, min_lease_ttl
from shiftover.errors import BadInput, LeaseHeld, NoData, StoreError
from shiftover.plan import Plan
from shiftover.store import Store, open_store
from shiftover.testing import FakeClock, InMemoryRouter, ScriptedProvider, plan_dict
from shiftover.types import Measurement, Weights


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Any, clock: FakeClock) -> Iterator[Store]:
    # the lease clock follows the fake clock, so leases expire in fake time
    s = open_store(f"sqlite:///{tmp_path}/state.db", clock=clock.now)
    yield s
    s.close()


def plan(**kw: Any) -> Plan:
    return Plan.model_validate(plan_dict(**kw))


def runner(store: Store, clock: FakeClock, *, router: InMemoryRouter | None = None,
           providers: list[Any] | None = None, p: Plan | None = None, **kw: Any) -> Runner:
    p = p or plan()
    providers = providers or [ScriptedProvider([0.0])]
    gates = [Gate(spec, prov) for spec, prov in zip(p.normal_state, providers, strict=True)]
    return Runner(p, router or InMemoryRouter(), gates, store, clock, **kw)


def events(store: Store, service: str = "svc") -> list[Any]:
    return store.events(service=service)


def kinds(store: Store) -> list[str]:
    return [e.kind for e in events(store)]


# --- 1. weights are exact values, end to end -------------------------------------


def test_a_hand_set_split_is_reconciled_once_and_the_run_still_rolls_back(
        store: Store, clock: FakeClock) -> None:
    """`set server web/old weight 247` left 1.984% on new: every later run used to
    reconcile on every tick, without sleeping and without judging anything."""
    router = InMemoryRouter()
    r = runner(store, clock, router=router)
    r.run(max_duration=30)  # at 10%, baking
    router.set_raw(247, 5)
    bad = ScriptedProvider([0.0, 0.0, 0.5])
    r2 = runner(store, clock, router=router, providers=[bad])
    start = clock.now()
    out = r2.run(max_duration=3600)
    assert out.outcome == "rolled_back" and router.read() == Weights(0)
    mine = [e for e in events(store) if e.run_id == r2.run_id]
    assert [e.kind for e in mine].count(ev.RECONCILED) == 1
    reconciled = next(e for e in mine if e.kind == ev.RECONCILED)
    assert Weights.parse(reconciled.data["router_exact"]) == Weights.from_backend(247, 5)
    assert any(e.kind == ev.CHECK for e in mine)
    assert len(mine) / max(1.0, clock.now() - start) < 5  # no hot loop


def test_a_split_left_between_two_writes_is_reconciled_to_the_last_confirmed_step(
        store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    r = runner(store, clock, router=router)
    r.run(max_duration=30)
    assert router.read() == Weights(10)
    # killed between the two writes of 10% -> 50%: old already at 256, new still 28
    _old, new = Weights(50).to_backend(256)
    router.set_raw(252, new)  # new written first: 50.4%, above the confirmed 10%
    r2 = runner(store, clock, router=router)
    r2.run(max_duration=1)
    assert router.read() == Weights(10)


def test_a_step_the_scale_cannot_express_is_set_exactly_at_or_below(store: Store,
                                                                     clock: FakeClock) -> None:
    p = plan(steps=[33.3, 100], bake="10s")
    router = InMemoryRouter()
    out = runner(store, clock, router=router, p=p).run(max_duration=3600)
    assert out.outcome == "promoted"
    assert router.history == [p.step_weights[0], Weights(100)]
    assert p.step_weights[0] < Weights("33.3") and p.step_weights[0].expressible(256)
    assert len(events(store)) < 60  # it did not livelock (297 writes once)


# --- 2. every loop sleeps, and every loop can be stopped ------------------------


def test_an_unreadable_router_is_journalled_once_and_the_loop_sleeps(store: Store,
                                                                     clock: FakeClock) -> None:
    router = InMemoryRouter()
    router.unreadable = "server web/new is in MAINT"
    p = plan(error_limit=1000)
    start = clock.now()
    out = runner(store, clock, router=router, p=p).run(max_duration=300)
    assert out.outcome == "held"
    assert kinds(store).count(ev.ROUTER_ERROR) == 1
    # one check per interval (10 s), not thousands of ticks
    assert kinds(store).count(ev.CHECK) <= (clock.now() - start) / 10 + 2


def test_a_router_that_stays_unreadable_ends_stuck(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter(Weights(10))
    router.unreadable = "HAProxy runtime API did not answer"
    runner(store, clock, router=router).run(max_duration=60)  # reconcile needs a read first
    store.append(service="svc", run_id="x", kind=ev.RECONCILED, at=clock.now(),
                 data={"router_percent": 10.0, "router_exact": "10"})
    out = runner(store, clock, router=router).run(max_duration=3600)
    started = next(e for e in events(store) if e.kind == ev.ROLLBACK_STARTED)
    assert started.data["stuck"] and "could not be evaluated" in started.data["reason"]
    assert out.outcome == "rolled_back" and router.raw[1] == 0


def test_a_rollback_ends_on_a_verified_zero_without_needing_read(store: Store,
                                                                 clock: FakeClock) -> None:
    """With a server in MAINT or DRAIN, read() raises while verify(0) is True: the
    rollback used to go on for ever (17,699 events in 20 s)."""
    router = InMemoryRouter()
    bad = ScriptedProvider([0.0] * 9 + [0.5])

    def on_tick(state: RunState, obs: Observation, d: Decision) -> None:
        if state.consecutive_failures:
            router.unreadable = "server web/new is in MAINT"
    out = runner(store, clock, router=router, providers=[bad], on_tick=on_tick).run(
        max_duration=3600)
    assert out.outcome == "rolled_back" and out.exit_code == 3
    assert router.raw[1] == 0
    assert len(events(store)) < 100


def test_stop_is_honoured_while_a_rollback_is_refused(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    bad = ScriptedProvider([0.0] * 9 + [0.5])
    box: dict[str, Runner] = {}

    def on_tick(state: RunState, obs: Observation, d: Decision) -> None:
        if d.status == "rolling_back":
            router.fail_applies = 10**9
            threading.Timer(0.2, box["r"].stop).start()
    box["r"] = r = runner(store, clock, router=router, providers=[bad], on_tick=on_tick)
    out = r.run()
    assert out.outcome == "held" and out.exit_code == 4
    assert "shiftover rollback" in out.reason


def test_max_duration_is_honoured_while_a_write_is_refused(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    router.fail_applies = 10**9
    out = runner(store, clock, router=router).run(max_duration=120)
    assert out.outcome == "held"
    assert kinds(store).count(ev.WEIGHT_FAILED) < 20  # backed off, not hammered


def test_rollback_timeout_is_honoured(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter(Weights(25))
    router.fail_applies = 10**9
    start = clock.now()
    result = roll_back(service="svc", store=store, router=router, clock=clock, actor="a@h",
                       timeout=5)
    assert not result.confirmed and "not confirmed within 5s" in result.reason
    assert clock.now() - start <= 5 + 2.5


# --- 3. a step bakes only on evidence -----------------------------------------


def test_time_with_the_router_unreadable_does_not_count_toward_the_bake(store: Store,
                                                                        clock: FakeClock) -> None:
    """HAProxy frozen 3.5 s at 25% with a 2 s bake, then one passing check 11 ms after
    it thawed, and the run advanced."""
    p = plan(steps=[25, 100], bake="60s", interval="10s", error_limit=100)
    router = InMemoryRouter()
    frozen = {"done": False}

    def on_tick(state: RunState, obs: Observation, d: Decision) -> None:
        if obs.weights == Weights(25) and state.bake_since is not None and not frozen["done"]:
            frozen["done"] = True
            router.unreadable = "frozen"
            threading.Thread(target=_thaw_later, args=(router, clock, 100.0)).start()
    out = runner(store, clock, router=router, p=p, on_tick=on_tick).run(max_duration=3600)
    assert out.outcome == "promoted"
    evs = events(store)
    readable = next(e for e in evs if e.kind == ev.ROUTER_READABLE)
    advanced = next(e for e in evs if e.kind == ev.STEP_ADVANCED and e.data["to_percent"] == 100)
    assert advanced.at - readable.at >= 60


def _thaw_later(router: InMemoryRouter, clock: FakeClock, seconds: float) -> None:
    start = clock.now()
    for _ in range(20000):
        if clock.now() - start >= seconds:
            break
        threading.Event().wait(0.001)
    router.unreadable = None


def test_a_restart_keeps_the_consecutive_failure_count(store: Store, clock: FakeClock) -> None:
    """6 restarts, 5 failing checks, the count never above 1, never rolled back."""
    p = plan(failure_limit=3)
    router = InMemoryRouter()
    runner(store, clock, router=router, p=p).run(max_duration=30)  # at 10%
    bad = ScriptedProvider([0.5])
    outcomes = []
    for _ in range(3):
        r = runner(store, clock, router=router, p=p, providers=[bad])
        outcomes.append(r.run(max_duration=0.001).outcome)  # one check, then stopped
    assert outcomes[-1] == "rolled_back"
    counts = [e.data["consecutive_failures"] for e in events(store) if e.kind == ev.CHECK
              and e.data["verdict"] == "fail"]
    assert counts == [1, 2, 3]


# --- 4. a broken new environment is a failure; gates are isolated --------------


class _Stuck:
    """A provider whose call never returns until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def measure(self, *, now: float) -> Measurement:
        self.calls += 1
        self.release.wait(30)
        raise NoData("released")


def test_a_stuck_provider_does_not_starve_the_other_gates(store: Store, clock: FakeClock) -> None:
    p = plan(normal_state=[
        {"name": "stuck", "type": "prometheus", "url": "http://127.0.0.1:1", "query": "x",
         "max": 1, "timeout": "100ms"},
        {"name": "healthy", "type": "prometheus", "url": "http://127.0.0.1:1", "query": "y",
         "max": 1, "timeout": "100ms"},
    ], error_limit=1000)
    stuck = _Stuck()
    healthy = ScriptedProvider([0.0])
    try:
        runner(store, clock, p=p, providers=[stuck, healthy]).run(max_duration=100)
    finally:
        stuck.release.set()
    assert stuck.calls == 1  # never called again on top of itself
    checks = [e.data for e in events(store) if e.kind == ev.CHECK]
    assert len(checks) >= 5
    for c in checks:
        by = {r["gate"]: r for r in c["results"]}
        assert by["healthy"]["verdict"] == "pass"  # never a false timeout
        assert by["stuck"]["error"] is True


# --- 5. one writer, and rollback always wins ------------------------------------


class _OperatorDuringChecks:
    """A provider that is slow, and during which an operator acts."""

    def __init__(self, store: Store, clock: FakeClock, kind: str, after_calls: int) -> None:
        self.store, self.clock, self.kind, self.after = store, clock, kind, after_calls
        self.calls = 0

    def measure(self, *, now: float) -> Measurement:
        self.calls += 1
        if self.calls == self.after:
            self.store.append(service="svc", run_id="op", kind=self.kind, at=self.clock.now(),
                              data={"reason": "typed during the checks"}, actor="bob@host")
        return Measurement(0.0, now, 100)


@pytest.mark.parametrize("kind", [ev.ROLLBACK_REQUESTED, ev.PAUSED])
def test_an_operator_typing_during_the_checks_is_obeyed_before_the_next_write(
        store: Store, clock: FakeClock, kind: str) -> None:
    router = InMemoryRouter()
    # checks at 0% (1), then 10% baking 60 s at 10 s interval: the 8th call would advance
    provider = _OperatorDuringChecks(store, clock, kind, after_calls=8)
    runner(store, clock, router=router, providers=[provider]).run(max_duration=200)
    assert Weights(50) not in router.history
    assert router.history[0] == Weights(10)


def test_a_run_that_lost_its_lease_during_a_slow_check_does_not_write(
        store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    p = plan()
    ttl = min_lease_ttl(p)

    class SlowCheck:
        calls = 0

        def measure(self, *, now: float) -> Measurement:
            self.calls += 1
            if self.calls == 8:  # the check that would advance 10% -> 50%
                clock.advance(ttl + 5)  # frozen past its lease...
                store.acquire_lease(key=router.lease_key(), holder="another run", ttl=ttl)
            return Measurement(0.0, now, 100)
    r = runner(store, clock, router=router, providers=[SlowCheck()], lease_ttl=ttl)
    out = r.run(max_duration=3600)
    assert out.outcome == "lease_lost" and out.exit_code == 5
    assert router.history == [Weights(10)]  # the 50% it was about to write never happened
    assert "lease" in out.reason


def test_rollback_after_a_killed_run_goes_through_the_router(store: Store,
                                                             clock: FakeClock) -> None:
    """`shiftover rollback` after a SIGKILL printed "the live run is rolling back",
    exited 0, and the router stayed at 25% until the lease expired."""
    router = InMemoryRouter(Weights(25))
    store.acquire_lease(key=router.lease_key(), holder="run dead pid 1 on h", ttl=900,
                        meta={"service": "svc"})
    result = roll_back(service="svc", store=store, router=router, clock=clock, actor="a@h",
                       timeout=30)
    assert result.confirmed and result.how == "router"
    assert result.live_run == "run dead pid 1 on h"
    assert router.raw[1] == 0
    st = fold(RunState(), events(store))
    assert st.outcome == ev.ROLLED_BACK


class _ReadOnlyJournal:
    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "append":
            def refuse(**_: Any) -> Any:
                raise StoreError("attempt to write a readonly database (scripted)")
            return refuse
        return getattr(self.inner, name)


def test_rollback_does_not_need_the_journal(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter(Weights(25))
    result = roll_back(service="svc", store=_ReadOnlyJournal(store), router=router,  # type: ignore[arg-type]
                       clock=clock, actor="a@h", timeout=30)
    assert result.confirmed and not result.journalled
    assert router.raw[1] == 0


class _LockedAfter:
    """A journal that starts refusing writes once the run reached a weight."""

    def __init__(self, inner: Store, router: InMemoryRouter, at: Weights) -> None:
        self.inner, self.router, self.at = inner, router, at

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("append", "renew_lease"):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            if self.router.history and self.router.history[-1] == self.at:
                raise StoreError("database is locked (scripted)")
            return attr(*a, **k)
        return call


def test_a_run_rolls_back_when_due_with_the_journal_locked(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    bad = ScriptedProvider([0.0, 0.0, 0.5])
    locked = _LockedAfter(store, router, Weights(10))
    out = runner(locked, clock, router=router, providers=[bad]).run(max_duration=3600)  # type: ignore[arg-type]
    assert out.outcome == "rolled_back" and out.exit_code == 3
    assert router.raw[1] == 0 and "journal" in out.reason


def test_the_outcome_reports_the_routers_split_when_the_journal_fails_after_a_write(
        store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    locked = _LockedAfter(store, router, Weights(10))
    out = runner(locked, clock, router=router).run(max_duration=600)  # type: ignore[arg-type]
    assert out.final_weight == Weights(10) == router.read()


def test_two_plans_on_one_router_are_refused_by_the_lease(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    store.acquire_lease(key=router.lease_key(), holder="run of another service", ttl=60,
                        meta={"service": "other-svc"})
    with pytest.raises(LeaseHeld):
        runner(store, clock, router=router).run(max_duration=10)


def test_a_lease_ttl_shorter_than_a_tick_is_refused(store: Store, clock: FakeClock) -> None:
    with pytest.raises(BadInput, match="shorter than one tick"):
        runner(store, clock, lease_ttl=2)


def test_an_outside_drain_to_zero_pauses_the_run(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    drained = {"done": False}

    def on_tick(state: RunState, obs: Observation, d: Decision) -> None:
        if obs.weights == Weights(10) and not drained["done"]:
            drained["done"] = True
            router.set_raw(256, 0)  # the operator's emergency drain at HAProxy
    out = runner(store, clock, router=router, on_tick=on_tick).run(max_duration=600)
    assert out.outcome == "held"
    assert router.read() == Weights(0)
    assert router.history == [Weights(10)]  # never climbed back
    st = fold(RunState(), events(store))
    assert st.paused and "outside shiftover" in st.pause_reason


@pytest.mark.parametrize(("new_steps", "next_move"), [
    ([25, 50, 60, 70, 80, 90, 100], Weights(50)),   # used to jump to 90%
    ([25, 100], Weights(100)),                      # used to IndexError
    ([20, 30, 100], Weights(30)),                   # 25% is not a step any more
])
def test_an_edited_plan_resumes_at_or_below_the_confirmed_split_one_step_up(
        store: Store, clock: FakeClock, new_steps: list[float], next_move: Weights) -> None:
    router = InMemoryRouter()
    first = plan(steps=[5, 10, 25, 50, 100])
    r = runner(store, clock, router=router, p=first)
    r.run(max_duration=140)
    assert router.read() == Weights(25)
    edited = plan(steps=new_steps)
    r2 = runner(store, clock, router=router, p=edited)
    r2.run(max_duration=75)
    mine = [e for e in events(store) if e.run_id == r2.run_id]
    assert any(e.kind == ev.PLAN_CHANGED for e in mine)
    intents = [Weights.parse(e.data["exact"]) for e in mine if e.kind == ev.WEIGHT_INTENDED]
    assert intents[:1] == [next_move]
    st = fold(RunState(), events(store))
    assert current_step(edited.step_weights, st.confirmed) == edited.step_weights.index(next_move)


# --- found by the hostile review --------------------------------------------------


class _PauseBeforeTheFirstAppend:
    """A store through which an operator's event lands right after the run decided
    (on the state it had re-read after the checks) and before it journals anything."""

    def __init__(self, inner: Store, kind: str, when: Any) -> None:
        self.inner, self.kind, self.when, self.done = inner, kind, when, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != "append":
            return attr

        def append(**k: Any) -> Any:
            if not self.done and k.get("fence") and self.when(k):
                self.done = True
                self.inner.append(service="svc", run_id="op", kind=self.kind, at=k["at"],
                                  data={"reason": "typed just after the checks"}, actor="bob@h")
            return attr(**k)
        return append


@pytest.mark.parametrize("kind", [ev.PAUSED, ev.ROLLBACK_REQUESTED])
def test_an_operator_event_journalled_between_the_decision_and_the_write_is_obeyed(
        store: Store, clock: FakeClock, kind: str) -> None:
    """The run decided to advance on the state re-read after the checks; the pause
    landed just before its first append; the refresh folded it, and the check
    "anything halting since the state I hold" looked *after* it: 50% -> 100% anyway."""
    router = InMemoryRouter()
    p = plan(bake="0s")
    racing = _PauseBeforeTheFirstAppend(
        store, kind, lambda k: k["kind"] == ev.STEP_ADVANCED and k["data"]["to_percent"] == 50)
    out = runner(racing, clock, router=router, p=p).run(max_duration=100)  # type: ignore[arg-type]
    assert racing.done
    assert Weights(50) not in router.history
    assert out.outcome in ("held", "rolled_back")


@pytest.mark.parametrize(("raw", "first_step"), [((252, 13), 10), ((247, 5), 10)])
def test_a_split_below_the_first_step_bakes_before_it_moves(store: Store, clock: FakeClock,
                                                            raw: tuple[int, int],
                                                            first_step: int) -> None:
    """An operator's partial drain to 4.9% (below the first step) moved to 10% at
    the next check, with no bake, on a check without data."""
    router = InMemoryRouter()
    runner(store, clock, router=router, p=plan(steps=[first_step, 50, 100])).run(max_duration=30)
    router.set_raw(*raw)
    nodata = ScriptedProvider([None])
    r = runner(store, clock, router=router, providers=[nodata], p=plan(steps=[first_step, 50, 100]))
    r.run(max_duration=120)
    assert router.read() == Weights.from_backend(*raw)  # held there: no data never passes
    good = ScriptedProvider([0.0])
    r2 = runner(store, clock, router=router, providers=[good], p=plan(steps=[first_step, 50, 100]))
    start = clock.now()
    r2.run(max_duration=200)
    mine = [e for e in events(store) if e.run_id == r2.run_id]
    up = next(e for e in mine if e.kind == ev.WEIGHT_INTENDED)
    assert Weights.parse(up.data["exact"]) == Weights(first_step)
    assert up.at - start >= 60  # a full bake below the first step first


def test_an_edited_plan_whose_first_step_is_above_the_split_bakes_first(
        store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    runner(store, clock, router=router, p=plan(steps=[10, 25, 50, 100])).run(max_duration=90)
    assert router.read() == Weights(25)
    r = runner(store, clock, router=router, providers=[ScriptedProvider([None, 0.0])],
               p=plan(steps=[50, 100]))
    r.run(max_duration=30)
    assert router.read() == Weights(25)  # not doubled on a check without data


def test_a_new_campaign_never_accepts_a_split_above_where_the_last_one_ended(
        store: Store, clock: FakeClock) -> None:
    """After a rollback, someone sets 50%: the next run reconciled 50% as its
    start, skipped the approval of 50% and promoted."""
    router = InMemoryRouter()
    p = plan(approvals=[50])
    bad = ScriptedProvider([0.0] * 9 + [0.5])
    assert runner(store, clock, router=router, providers=[bad], p=p).run(
        max_duration=3600).outcome == "rolled_back"
    router.set_raw(256, 256)
    r = runner(store, clock, router=router, p=p)
    out = r.run(max_duration=150)
    mine = [e for e in events(store) if e.run_id == r.run_id]
    intents = [Weights.parse(e.data["exact"]) for e in mine if e.kind == ev.WEIGHT_INTENDED]
    assert intents[:2] == [Weights(0), Weights(10)]  # back to 0% first, then from the start
    assert out.outcome == "held" and Weights(100) not in router.history[-3:]


def test_a_run_frozen_past_its_lease_makes_sure_of_zero_after_an_operator_rollback(
        store: Store, clock: FakeClock) -> None:
    """The write of a run frozen after its renewal lands after the operator's 0%;
    the run then lost its lease and exited, leaving 25% with nobody watching."""
    router = InMemoryRouter()
    p = plan(steps=[10, 25, 100], bake="20s")
    ttl = min_lease_ttl(p)

    def frozen(w: Weights) -> None:
        if w == Weights(25):
            router.on_apply = None
            clock.advance(ttl + 1)  # frozen past its lease, right before the write lands
            result = roll_back(service="svc", store=store, router=router, clock=clock,
                               actor="op@h", timeout=30)
            assert result.confirmed
    router.on_apply = frozen
    out = runner(store, clock, router=router, p=p, lease_ttl=ttl).run(max_duration=3600)
    assert out.exit_code == 5
    assert router.raw[1] == 0  # its late 25% did not survive
    assert "0% was made sure of" in out.reason


def test_one_odd_journal_row_does_not_stop_a_live_run(store: Store, clock: FakeClock) -> None:
    router = InMemoryRouter()
    bad = ScriptedProvider([0.0] * 9 + [0.5])
    import sqlalchemy as sa

    def on_tick(state: RunState, obs: Observation, d: Decision) -> None:
        if obs.weights == Weights(10) and not getattr(on_tick, "done", False):
            on_tick.done = True  # type: ignore[attr-defined]
            with store._engine.begin() as conn:  # someone's script, by hand
                conn.execute(sa.text(
                    "insert into shiftover_events (service, run_id, kind, at, actor, data) "
                    "values ('svc', 'ops-script', 'note', 0, 'bob', 'not json'), "
                    "('svc', 'ops-script', 'paused', 0, 'bob', '\"maintenance window\"')"))
    out = runner(store, clock, router=router, providers=[bad], on_tick=on_tick).run(
        max_duration=3600)
    assert out.outcome == "rolled_back" and router.raw[1] == 0


def test_stop_is_heard_while_a_slow_gate_is_evaluated(store: Store, clock: FakeClock) -> None:
    p = plan(normal_state=[{"name": "slow", "type": "prometheus", "url": "http://127.0.0.1:1",
                            "query": "x", "max": 1, "timeout": "1h"}])
    stuck = _Stuck()
    r = runner(store, clock, p=p, providers=[stuck])
    timer = threading.Timer(0.5, r.stop)
    timer.start()
    done = threading.Event()
    result: dict[str, Any] = {}

    def go() -> None:
        result["out"] = r.run()
        done.set()
    t = threading.Thread(target=go, daemon=True)
    t.start()
    try:
        assert done.wait(20), "stop was not heard while the gate hung"
    finally:
        stuck.release.set()
        t.join(30)
    assert result["out"].outcome == "held"


def test_rollback_does_not_wait_for_a_run_that_is_already_dead(store: Store,
                                                               clock: FakeClock) -> None:
    """After a SIGKILL, `rollback` waited its 3 s hand-over for a dead process."""
    import socket
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    router = InMemoryRouter(Weights(25))
    store.acquire_lease(key=router.lease_key(), holder="run dead", ttl=900,
                        meta={"service": "svc", "pid": dead.pid, "host": socket.gethostname()})
    start = clock.now()
    result = roll_back(service="svc", store=store, router=router, clock=clock, actor="a@h",
                       timeout=30)
    assert result.confirmed and result.live_run is None
    assert clock.now() - start < 1  # no hand-over, no settle: nobody is writing


def test_rollback_reports_seconds_from_when_the_operator_asked(store: Store,
                                                               clock: FakeClock) -> None:
    router = InMemoryRouter(Weights(25))
    asked = clock.now()
    clock.advance(2.0)  # opening a busy journal took this long
    result = roll_back(service="svc", store=store, router=router, clock=clock, actor="a@h",
                       timeout=30, started_at=asked)
    assert result.confirmed and result.seconds >= 2.0
