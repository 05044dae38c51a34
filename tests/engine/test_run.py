"""The loop with in-memory doubles and a fake clock: whole runs in milliseconds."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.engine.decide import Decision, Observation
from shiftover.engine.events import RunState
from shiftover.engine.run import Gate, Runner
from shiftover.errors import LeaseHeld, ProviderError
from shiftover.plan import Plan
from shiftover.store import Store, open_store
from shiftover.testing import FakeClock, InMemoryRouter, ScriptedProvider, plan_dict
from shiftover.types import Weights


@pytest.fixture
def store(tmp_path: Any) -> Store:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def make(store: Store, *, provider: ScriptedProvider | None = None, router: InMemoryRouter | None = None,
         clock: FakeClock | None = None, on_tick: Any = None, **plan_kw: Any) -> tuple[Runner, InMemoryRouter, ScriptedProvider, FakeClock]:
    p = Plan.model_validate(plan_dict(**plan_kw))
    provider = provider or ScriptedProvider([0.0])
    router = router or InMemoryRouter()
    clock = clock or FakeClock()
    runner = Runner(p, router, [Gate(p.normal_state[0], provider)], store, clock, on_tick=on_tick)
    return runner, router, provider, clock


def kinds(store: Store, service: str = "svc") -> list[str]:
    return [e.kind for e in store.events(service=service)]


def test_healthy_run_promotes(store: Store) -> None:
    runner, router, _, clock = make(store)
    start = clock.now()
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted" and out.exit_code == 0
    assert router.read() == Weights(100)
    assert router.history == [Weights(10), Weights(50), Weights(100)]
    # each step baked its 60 s at least
    assert clock.now() - start >= 180
    k = kinds(store)
    assert k.count(ev.WEIGHT_INTENDED) == 3 and k.count(ev.WEIGHT_CONFIRMED) == 3
    # intent is journalled before the result, every time
    assert all(k[i + 1] == ev.WEIGHT_CONFIRMED for i, x in enumerate(k) if x == ev.WEIGHT_INTENDED)
    assert ev.PROMOTED in k


def test_failures_roll_back_to_zero(store: Store) -> None:
    # pass, then fail from the 4th measurement on
    provider = ScriptedProvider([0.0] * 9 + [0.05])
    runner, router, _, _ = make(store, provider=provider)
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back" and out.exit_code == 3
    assert router.read() == Weights(0)
    started = next(e for e in store.events(service="svc") if e.kind == ev.ROLLBACK_STARTED)
    assert "errors" in started.data["reason"] and "0.05" in started.data["reason"]
    checks = [e.data for e in store.events(service="svc", kinds=[ev.CHECK])]
    fails = [c for c in checks if c["verdict"] == "fail"]
    assert len(fails) == 2  # failure_limit 2, consecutive
    assert fails[-1]["results"][0]["value"] == 0.05


def test_no_data_never_passes(store: Store) -> None:
    provider = ScriptedProvider([None])
    runner, router, _, _ = make(store, provider=provider)
    out = runner.run(max_duration=150)
    assert out.outcome == "held" and out.exit_code == 4
    assert router.read() == Weights(10)  # the first step starts (0% has no data), never more


def test_a_step_without_evidence_is_stuck_and_on_failure_runs(store: Store) -> None:
    provider = ScriptedProvider([None])
    runner, router, _, _ = make(store, provider=provider, inconclusive_limit=5)
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back" and out.exit_code == 3
    assert router.history == [Weights(10), Weights(0)]
    started = next(e for e in store.events(service="svc") if e.kind == ev.ROLLBACK_STARTED)
    assert started.data["stuck"] is True and "stuck: 5 consecutive checks without a verdict" \
        in started.data["reason"]


def test_rollback_retries_until_router_confirms(store: Store) -> None:
    provider = ScriptedProvider([0.0] * 9 + [0.05])
    router = InMemoryRouter()
    holder: dict[str, Any] = {}

    def on_tick(state: RunState, obs: Observation, d: Decision) -> None:
        if d.status == "rolling_back" and not holder:
            holder["x"] = 1
            router.fail_applies = 3  # the backend refuses three times
    runner, router, _, _ = make(store, provider=provider, router=router, on_tick=on_tick)
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back"
    assert router.read() == Weights(0) and router.fail_applies == 0
    # three refusals, one journal entry: an unchanged error is journalled once
    assert kinds(store).count(ev.WEIGHT_FAILED) == 1


def test_provider_errors_are_not_failures_but_a_run_that_cannot_check_is_stuck(store: Store) -> None:
    provider = ScriptedProvider([ProviderError("connection refused")])
    runner, router, _, _ = make(store, provider=provider)
    out = runner.run(max_duration=300)
    assert router.history == [Weights(0)]  # never started: a gate that errors is not "no data"
    checks = [e.data for e in store.events(service="svc", kinds=[ev.CHECK])]
    assert all(c["consecutive_failures"] == 0 for c in checks)
    assert [c["consecutive_errors"] for c in checks] == [1, 2, 3, 4]
    started = next(e for e in store.events(service="svc") if e.kind == ev.ROLLBACK_STARTED)
    assert started.data["stuck"] is True and "could not be evaluated" in started.data["reason"]
    assert out.outcome == "rolled_back"


def test_operator_approval_and_rollback(store: Store) -> None:
    runner_box: dict[str, Runner] = {}

    def on_tick(state: RunState, obs: Observation, d: Decision) -> None:
        r = runner_box["r"]
        if d.status == "waiting_approval" and 50.0 not in state.approved:
            store.append(service="svc", run_id="op", kind=ev.APPROVED, at=r.clock.now(),
                         data={"step": 50}, actor="alice@host")
        if obs.weights == Weights(50) and not state.rollback_requested and not state.rolling_back:
            store.append(service="svc", run_id="op", kind=ev.ROLLBACK_REQUESTED,
                         at=r.clock.now(), data={"reason": "drill"}, actor="bob@host")
    runner, router, _, _ = make(store, approvals=[50], on_tick=on_tick)
    runner_box["r"] = runner
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back"
    assert router.history == [Weights(10), Weights(50), Weights(0)]
    k = kinds(store)
    assert k.index(ev.APPROVAL_WAITING) < k.index(ev.APPROVED)
    approved = next(e for e in store.events(service="svc") if e.kind == ev.APPROVED)
    assert approved.actor == "alice@host"
    started = next(e for e in store.events(service="svc") if e.kind == ev.ROLLBACK_STARTED)
    assert "operator" in started.data["reason"] and "drill" in started.data["reason"]


def test_second_run_is_refused_by_the_lease(store: Store) -> None:
    runner, _, _, _clock = make(store)
    store.acquire_lease(key=runner.lease_key, holder="someone else", ttl=60)
    with pytest.raises(LeaseHeld) as info:
        runner.run(max_duration=10)
    assert "someone else" in str(info.value)


def test_resume_reads_router_and_rebakes(store: Store) -> None:
    runner, router, _, clock = make(store)
    out = runner.run(max_duration=100)  # held after step 10 -> 50 started, say
    assert out.outcome == "held"
    held_at = router.read()
    # a new run (new Runner, same store and router) resumes from the router's real weight
    runner2 = Runner(runner.plan, router, runner.gates, store, clock)
    out2 = runner2.run(max_duration=3600)
    assert out2.outcome == "promoted"
    run2 = [e for e in store.events(service="svc") if e.run_id == runner2.run_id]
    assert run2[0].kind == ev.RUN_STARTED and run2[0].data["resumed"] is True
    first_intent = next(e for e in run2 if e.kind == ev.WEIGHT_INTENDED)
    assert first_intent.data["percent"] > float(held_at.new_percent)


def test_resume_never_exceeds_last_confirmed_step(store: Store) -> None:
    """A run killed between apply and confirm leaves the router above the journal."""
    runner, router, _, clock = make(store)
    runner.run(max_duration=30)  # at 10%, baking
    assert router.read() == Weights(10)
    # the crashed run had applied 50% but never confirmed it
    store.append(service="svc", run_id="dead", kind=ev.WEIGHT_INTENDED, at=clock.now(),
                 data={"percent": 50.0, "reason": "step", "step_index": 1})
    router.apply(Weights(50))
    runner2 = Runner(runner.plan, router, runner.gates, store, clock)
    runner2.run(max_duration=1)
    assert router.history[-1] == Weights(10)  # brought back to the last confirmed step
    assert router.read() == Weights(10)


def test_secrets_never_reach_the_journal(store: Store) -> None:
    from shiftover.plan import parse_plan_text

    text = """\
service: svc
router: {type: haproxy, socket: /tmp/none.sock, backend: web, old: old, new: new}
steps: [50, 100]
bake: 10s
interval: 5s
normal_state:
  - name: probe
    type: http
    url: "http://127.0.0.1:1/health?token=${PROBE_TOKEN}"
failure_limit: 1
"""
    loaded = parse_plan_text(text, filename="p.yaml", env={"PROBE_TOKEN": "s3cr3t-value"})
    p = loaded.plan
    provider = ScriptedProvider([ProviderError(f"GET {p.normal_state[0].url} refused")])
    runner = Runner(p, InMemoryRouter(), [Gate(p.normal_state[0], provider)], store, FakeClock(),
                    redact=loaded.redact)
    out = runner.run(max_duration=60)
    assert out.outcome == "rolled_back"  # an http gate's connection error is a FAIL
    dumped = repr([e.data for e in store.events(service="svc")])
    assert "refused" in dumped
    assert "s3cr3t-value" not in dumped and "***" in dumped


def test_a_new_run_after_promotion_moves_no_traffic(store: Store) -> None:
    runner, router, _, clock = make(store)
    assert runner.run(max_duration=3600).outcome == "promoted"
    applied = list(router.history)
    again = Runner(runner.plan, router, runner.gates, store, clock)
    out = again.run(max_duration=3600)
    assert out.outcome == "promoted"
    assert router.history == applied  # nothing was written: 100% was read, baked, promoted
    run2 = [e for e in store.events(service="svc") if e.run_id == again.run_id]
    # the new campaign starts from the last one's 100%: nothing to reconcile, nothing written
    assert [e.kind for e in run2 if e.kind in (ev.RECONCILED, ev.WEIGHT_INTENDED)] == []


def test_approval_given_before_the_run_is_kept(store: Store) -> None:
    runner, _router, _, clock = make(store, approvals=[50])
    store.append(service="svc", run_id="op", kind=ev.APPROVED, at=clock.now(),
                 data={"step": 50}, actor="alice@host")
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted"
    assert ev.APPROVAL_WAITING not in kinds(store)


def test_inconclusive_checks_restart_the_bake(store: Store) -> None:
    # 10%: pass, then no data for a while, then pass again: the bake restarts at the gap
    provider = ScriptedProvider([0.0, 0.0, 0.0, None, None, None, 0.0])
    runner, _, _, _clock = make(store, provider=provider)
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted"
    events = store.events(service="svc")
    first = next(e for e in events if e.kind == ev.WEIGHT_CONFIRMED)
    advanced = next(e for e in events if e.kind == ev.STEP_ADVANCED and e.data["to_percent"] == 50)
    last_gap = max(e.at for e in events if e.kind == ev.CHECK and e.data["verdict"] == "inconclusive")
    assert advanced.at - last_gap >= 60  # a full bake after the last check without evidence
    assert advanced.at - first.at >= 60 + 30


def test_waiting_approval_clears_once_the_step_is_reached(store: Store) -> None:
    from shiftover.engine.events import RunState, fold

    runner_box: dict[str, Runner] = {}

    def on_tick(state: RunState, obs: Observation, d: Decision) -> None:
        if d.status == "waiting_approval" and 50.0 not in state.approved:
            store.append(service="svc", run_id="op", kind=ev.APPROVED,
                         at=runner_box["r"].clock.now(), data={"step": 50}, actor="a@h")
    runner, _, _, _ = make(store, approvals=[50], on_tick=on_tick)
    runner_box["r"] = runner
    runner.run(max_duration=100)
    st = fold(RunState(), store.events(service="svc"))
    assert st.confirmed == Weights(50) and st.waiting_approval is None


class _FailingAfter:
    """A store that starts failing once a given event kind has been written."""

    def __init__(self, inner: Store, kind: str) -> None:
        self.inner, self.kind, self.broken = inner, kind, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            if self.broken:
                from shiftover.errors import StoreError
                raise StoreError("disk full (scripted)")
            out = attr(*a, **k)
            if name == "append" and k.get("kind") == self.kind:
                self.broken = True
            return out
        return call


def test_rollback_goes_on_when_the_journal_fails(store: Store) -> None:
    provider = ScriptedProvider([0.0] * 9 + [0.05])
    p = Plan.model_validate(plan_dict())
    router = InMemoryRouter()
    broken = _FailingAfter(store, ev.ROLLBACK_STARTED)
    runner = Runner(p, router, [Gate(p.normal_state[0], provider)], broken, FakeClock())  # type: ignore[arg-type]
    out = runner.run(max_duration=3600)
    assert broken.broken
    assert out.outcome == "rolled_back" and out.exit_code == 3
    assert router.read() == Weights(0)
    assert "journal" in out.reason


def test_journal_failure_outside_a_rollback_holds_with_weights_unchanged(store: Store) -> None:
    p = Plan.model_validate(plan_dict())
    router = InMemoryRouter()
    broken = _FailingAfter(store, ev.WEIGHT_CONFIRMED)
    runner = Runner(p, router, [Gate(p.normal_state[0], ScriptedProvider([0.0]))], broken, FakeClock())  # type: ignore[arg-type]
    out = runner.run(max_duration=3600)
    assert out.outcome == "held" and out.exit_code == 4
    assert "journal" in out.reason
    assert router.history == [Weights(10)]  # never moved up without a journal
    assert out.final_weight == Weights(10)


def test_a_plan_of_the_same_service_driving_another_target_is_refused(store: Store) -> None:
    """The Route53 plan and the ALB plan of one service, both named after it: the
    second must not read the first's campaign as its own (a false drift, a pause, one
    run undoing the other's steps)."""
    from shiftover.errors import BadInput

    first, router, _, _ = make(store, router=InMemoryRouter(key="memory:route53"))
    assert first.run(max_duration=70).outcome == "held"  # a campaign left open at 10%
    before = len(store.events(service="svc"))
    other = InMemoryRouter(key="memory:alb")
    second, _, _, _ = make(store, router=other)
    with pytest.raises(BadInput, match="open campaign on memory:route53") as info:
        second.run(max_duration=60)
    assert "service: svc-memory" in (info.value.hint or "")
    assert len(store.events(service="svc")) == before and other.history == []
    # the same target resumes as before
    again, _, _, _ = make(store, router=router)
    assert again.run(max_duration=3600).outcome == "promoted"


class _SlowWrites(InMemoryRouter):
    """A router whose writes take ``seconds`` of the fake clock (a real one takes a few ms)."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def apply(self, weights: Weights) -> None:
        self.clock.advance(self.seconds)
        super().apply(weights)


@pytest.mark.parametrize("write_seconds", [0.0, 0.05, 25.0])
def test_each_step_bakes_for_bake_not_an_interval_more(store: Store, write_seconds: float) -> None:
    """Checks fall on a grid from the confirmed write: a write that took a few ms after
    the check must not make every step wait a whole extra interval (and a write slower
    than an interval is checked at once, then on the same grid)."""
    clock = FakeClock()
    runner, *_ = make(store, clock=clock, router=_SlowWrites(clock, write_seconds),
                      steps=[10, 50, 100], bake=4.0, interval=2.0)
    assert runner.run(max_duration=3600).outcome == "promoted"
    confirmed = [e.at for e in store.events(service="svc", kinds=[ev.WEIGHT_CONFIRMED])]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(confirmed)]
    assert gaps == [4.0 + write_seconds] * 2  # the bake, then the next write's own time
