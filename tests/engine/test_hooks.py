"""Hooks in the engine: places, order, failures as failed checks, undo on rollback,
a crash while a hook ran (idempotent re-run vs hold and ack). In-memory router,
scripted gates, a fake clock, hooks run inline by a recording double."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shiftover import views
from shiftover.engine import events as ev
from shiftover.engine.run import Gate, Runner
from shiftover.external import Outcome
from shiftover.hooks import HookOutcome
from shiftover.plan import Plan
from shiftover.store import Store, open_store
from shiftover.testing import FakeClock, InlineExecutor, InMemoryRouter, ScriptedProvider, plan_dict
from shiftover.types import Weights


@pytest.fixture
def store(tmp_path: Any) -> Store:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def outcome(ok: bool, code: int | None = None) -> HookOutcome:
    code = (0 if ok else 1) if code is None else code
    return HookOutcome(Outcome(ok=ok, exit_code=code, status=None, timed_out=False, stopped=False,
                               error=None, output=f"output of exit {code}", stdout="",
                               seconds=0.1), 1)


class Recorder:
    """A hook executor: records (hook, phase, at, percent) and answers from ``script``
    (name -> list of ok flags, the last repeated; default ok)."""

    def __init__(self, script: dict[str, list[bool]] | None = None,
                 on_call: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.script = script or {}
        self.calls: list[tuple[str, str, str, str | None]] = []
        self.on_call = on_call

    def __call__(self, action: Any, *, timeout: float, retries: int, facts: dict[str, Any],
                 stopping: Callable[[], bool]) -> HookOutcome:
        name, phase = facts["hook"], facts["phase"]
        self.calls.append((name, phase, facts["at"], facts["percent"]))
        if self.on_call:
            self.on_call(facts)
        answers = self.script.get(f"{name}:{phase}") or self.script.get(name) or [True]
        n = sum(1 for c in self.calls if c[0] == name and c[1] == phase)
        return outcome(answers[min(n, len(answers)) - 1])


HOOKS = [
    {"name": "warm", "at": "start", "run": ["warm"], "undo": {"run": ["cool"]}},
    {"name": "batch", "at": 50, "run": ["batch", "new"], "undo": {"run": ["batch", "old"]}},
    {"name": "smoke", "at": "every_step", "run": ["smoke"]},
    {"name": "announce", "at": "promoted", "run": ["announce"]},
]


def make(store: Store, *, hooks: list[dict[str, Any]] = HOOKS, values: list[float | None] | None = None,
         recorder: Recorder | None = None, router: InMemoryRouter | None = None,
         clock: FakeClock | None = None, **kw: Any) -> tuple[Runner, InMemoryRouter, Recorder, FakeClock]:
    p = Plan.model_validate(plan_dict(hooks=hooks, **kw))
    router = router or InMemoryRouter()
    clock = clock or FakeClock()
    recorder = recorder or Recorder()
    runner = Runner(p, router, [Gate(p.normal_state[0], ScriptedProvider(values or [0.0]))],
                    store, clock, run_hook=recorder, hook_pool=InlineExecutor(),
                    commands=lambda verb, *a: " ".join(["shiftover", verb, "plan.yaml", *a]))
    return runner, router, recorder, clock


def events(store: Store) -> list[Any]:
    return list(store.events(service="svc"))


def test_hooks_run_at_their_places_in_order_and_the_run_promotes(store: Store) -> None:
    runner, _router, rec, _ = make(store)
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason
    assert rec.calls == [("warm", "run", "start", "0"), ("smoke", "run", "10", "10"),
                         ("batch", "run", "50", "50"), ("smoke", "run", "50", "50"),
                         ("smoke", "run", "100", "100"), ("announce", "run", "promoted", "100")]
    # each place's hooks finish before the router moves on from it
    seq = [(e.kind, e.data.get("hook") or e.data.get("percent")) for e in events(store)
           if e.kind in (ev.HOOK_FINISHED, ev.WEIGHT_INTENDED, ev.PROMOTED)]
    assert seq == [(ev.HOOK_FINISHED, "warm"), (ev.WEIGHT_INTENDED, 10.0),
                   (ev.HOOK_FINISHED, "smoke"), (ev.WEIGHT_INTENDED, 50.0),
                   (ev.HOOK_FINISHED, "batch"), (ev.HOOK_FINISHED, "smoke"),
                   (ev.WEIGHT_INTENDED, 100.0), (ev.HOOK_FINISHED, "smoke"),
                   (ev.HOOK_FINISHED, "announce"), (ev.PROMOTED, 100.0)]
    # no undo after a promotion
    assert not [c for c in rec.calls if c[1] == "undo"]


def test_a_step_bakes_with_its_hooks_done(store: Store) -> None:
    """The 50% bake counts from the moment its last hook succeeded."""
    runner, _, _, _ = make(store)
    runner.run(max_duration=3600)
    evs = events(store)
    done = max(e.at for e in evs if e.kind == ev.HOOK_FINISHED and e.data.get("at") == "50")
    nxt = next(e for e in evs if e.kind == ev.WEIGHT_INTENDED and e.data["percent"] == 100.0)
    assert nxt.at - done >= 60  # bake 60s


def test_rollback_undoes_every_hook_that_ran_in_reverse_order_after_the_router(store: Store) -> None:
    # the gate fails from the 8th check on: after the 50% hooks ran
    runner, router, rec, _ = make(store, values=[0.0] * 13 + [0.5])
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back", out.reason
    assert router.read() == Weights(0)
    undos = [(c[0], c[2]) for c in rec.calls if c[1] == "undo"]
    assert undos == [("batch", "50"), ("warm", "start")]  # smoke has no undo
    kinds = [(e.kind, e.data.get("phase")) for e in events(store)]
    # the router first: 0% confirmed and the campaign rolled back before any undo starts
    first_undo = kinds.index((ev.HOOK_STARTED, "undo"))
    assert kinds.index((ev.ROLLED_BACK, None)) < first_undo
    assert "UNDO NOT COMPLETE" not in out.reason


def test_a_failing_hook_counts_as_a_failed_check_and_rolls_back_at_the_limit(store: Store) -> None:
    runner, router, rec, _ = make(store, recorder=Recorder({"batch:run": [False]}))
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back", out.reason
    assert router.read() == Weights(0) and Weights(100) not in router.history
    assert [c for c in rec.calls if c[0] == "batch" and c[1] == "run"] == [
        ("batch", "run", "50", "50")] * 2  # failed, counted, run again, failed: limit 2
    checks = [e.data for e in events(store) if e.kind == ev.CHECK and e.data["verdict"] == "fail"]
    assert [c["consecutive_failures"] for c in checks] == [1, 2]
    assert all(any(r["gate"] == "hook batch" for r in c["results"]) for c in checks)
    started = next(e for e in events(store) if e.kind == ev.ROLLBACK_STARTED)
    assert "hook batch" in started.data["reason"] and "exit 1" in started.data["reason"]
    # a failed hook may have done half its work: its undo runs too
    assert ("batch", "undo", "50", "0") in rec.calls


def test_a_hook_that_fails_once_is_run_again_and_the_run_goes_on(store: Store) -> None:
    runner, _, rec, _ = make(store, recorder=Recorder({"batch:run": [False, True]}))
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason
    assert [c[0] for c in rec.calls].count("batch") == 2


def _killed_while_running(store: Store, hook: str, at: str, *, idempotent: bool,
                          campaign: int = 1) -> None:
    """The journal of a run killed (SIGKILL) while ``hook`` ran at ``at``."""
    router_at = {"start": 0, "10": 10, "50": 50}[at]
    def add(kind: str, data: dict[str, Any]) -> None:
        store.append(service="svc", run_id="dead", kind=kind, at=1_800_000_000.0, data=data)
    add(ev.RUN_STARTED, {"run_id": "dead", "resumed": False})
    add(ev.WEIGHT_CONFIRMED, ev.weight_data(Weights(router_at), step_index=1))
    add(ev.HOOK_STARTED, {"hook": hook, "at": at, "phase": "run", "attempt": 1,
                          "campaign": campaign, "idempotent": idempotent, "has_undo": True})


def test_after_a_crash_an_idempotent_hook_runs_again(store: Store) -> None:
    hooks = [dict(HOOKS[1], idempotent=True)]
    _killed_while_running(store, "batch", "50", idempotent=True)
    runner, _router, rec, _ = make(store, hooks=hooks, router=InMemoryRouter(Weights(50)))
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason
    assert rec.calls[0] == ("batch", "run", "50", "50")


def test_after_a_crash_a_hook_that_is_not_idempotent_holds_until_acknowledged(store: Store) -> None:
    hooks = [HOOKS[1]]
    _killed_while_running(store, "batch", "50", idempotent=False)
    hints: list[str | None] = []
    runner, router, rec, clock = make(store, hooks=hooks, router=InMemoryRouter(Weights(50)))
    cmd = views.Commands("plan.yaml")
    runner.on_tick = lambda st, obs, d: hints.append(
        views.decision_hint(d, st, cmd) if d.status == "held" else None)
    out = runner.run(max_duration=600)
    assert out.outcome == "held"
    assert router.read() == Weights(50) and rec.calls == []  # never re-run, never moved on
    # what the operator sees next to "held": the exact command
    assert "shiftover ack plan.yaml --hook batch --at 50 --done" in hints
    # the operator checked: it did its work
    store.append(service="svc", run_id="operator", kind=ev.HOOK_ACKED, at=clock.now(),
                 data={"hook": "batch", "at": "50", "phase": "run", "done": True}, actor="op@host")
    runner2, _router2, rec2, _ = make(store, hooks=hooks, router=router, clock=clock)
    out = runner2.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason
    assert rec2.calls == []  # acknowledged done: not run again


def test_an_ack_not_done_runs_the_hook_again(store: Store) -> None:
    hooks = [HOOKS[1]]
    _killed_while_running(store, "batch", "50", idempotent=False)
    clock = FakeClock()
    store.append(service="svc", run_id="operator", kind=ev.HOOK_ACKED, at=clock.now(),
                 data={"hook": "batch", "at": "50", "phase": "run", "done": False}, actor="op@host")
    runner, _, rec, _ = make(store, hooks=hooks, router=InMemoryRouter(Weights(50)), clock=clock)
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason
    assert rec.calls[0] == ("batch", "run", "50", "50")


def test_an_undo_left_by_a_killed_rollback_runs_before_the_next_campaign(store: Store) -> None:
    runner, router, rec, clock = make(store, values=[0.0] * 13 + [0.5],
                                      recorder=Recorder({"batch:undo": [False]}))
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back"
    assert "UNDO NOT COMPLETE" in out.reason and "shiftover rollback plan.yaml" in out.reason
    # the start hook's undo waits behind the failed one (order matters)
    assert [(c[0], c[1]) for c in rec.calls if c[1] == "undo"] == [("batch", "undo")]
    runner2, _, rec2, _ = make(store, router=router, clock=clock)
    runner2.run(max_duration=5)
    assert rec2.calls[:2] == [("batch", "undo", "50", "0"), ("warm", "undo", "start", "0")]


def test_hook_output_is_redacted_in_the_journal(store: Store) -> None:
    def leaky(action: Any, **kw: Any) -> HookOutcome:
        return HookOutcome(Outcome(ok=True, exit_code=0, status=None, timed_out=False,
                                   stopped=False, error=None, output="token=s3cr3t-value",
                                   stdout="", seconds=0.0), 1)
    p = Plan.model_validate(plan_dict(hooks=[HOOKS[2]]))
    runner = Runner(p, InMemoryRouter(), [Gate(p.normal_state[0], ScriptedProvider([0.0]))],
                    store, FakeClock(), run_hook=leaky, hook_pool=InlineExecutor(),
                    redact=lambda s: s.replace("s3cr3t-value", "***"))
    runner.run(max_duration=3600)
    outs = [e.data["output"] for e in events(store) if e.kind == ev.HOOK_FINISHED]
    assert outs and all("s3cr3t" not in o and "***" in o for o in outs)


def test_an_undo_done_by_hand_and_acknowledged_is_not_run_again(store: Store) -> None:
    """The runbook's rollback without shiftover: undo by hand, `ack --undo --done`, and
    the next `shiftover rollback` (or run) finds nothing left to undo."""
    runner, router, _rec, clock = make(store, values=[0.0] * 13 + [0.5],
                                      recorder=Recorder({"batch:undo": [False]}))
    assert runner.run(max_duration=3600).outcome == "rolled_back"
    st = ev.fold(ev.RunState(), store.events(service="svc"))
    assert [(h.hook, h.at) for h in ev.pending_undos(st)] == [("batch", "50"), ("warm", "start")]
    for name, at in (("batch", "50"), ("warm", "start")):
        store.append(service="svc", run_id="operator", kind=ev.HOOK_ACKED, at=clock.now(),
                     data={"hook": name, "at": at, "phase": "undo", "done": True,
                           "campaign": 1}, actor="op@host")
    st = ev.fold(ev.RunState(), store.events(service="svc"))
    assert ev.pending_undos(st) == []
    runner2, _, rec2, _ = make(store, router=router, clock=clock)
    runner2.run(max_duration=5)
    assert [c for c in rec2.calls if c[1] == "undo"] == []


def test_a_hook_stopped_by_the_run_is_unknown_not_a_failure(store: Store) -> None:
    """Ctrl-C while a hook runs: the hook is stopped with the run; the next run does
    not count it as a failed check: it runs it again (idempotent) or holds for ack."""
    clock = FakeClock()
    p = Plan.model_validate(plan_dict(hooks=[HOOKS[1]]))
    runner_box: list[Runner] = []

    def slow(action: Any, *, stopping: Callable[[], bool], **kw: Any) -> HookOutcome:
        runner_box[0].stop()  # the operator hits Ctrl-C while it runs
        return HookOutcome(Outcome(ok=False, exit_code=-15, status=None, timed_out=False,
                                   stopped=True, error=None, output="", stdout="",
                                   seconds=1.0), 1)
    runner = Runner(p, InMemoryRouter(Weights(50)), [Gate(p.normal_state[0],
                    ScriptedProvider([0.0]))], store, clock, run_hook=slow,
                    hook_pool=InlineExecutor())
    runner_box.append(runner)
    assert runner.run(max_duration=3600).outcome == "held"
    st = ev.fold(ev.RunState(), store.events(service="svc"))
    assert st.hook("batch", "50") is not None and st.hook("batch", "50").status == "unknown"
    runner2, _, rec, _ = make(store, hooks=[HOOKS[1]], router=InMemoryRouter(Weights(50)),
                              clock=clock)
    out = runner2.run(max_duration=600)
    assert out.outcome == "held" and rec.calls == []  # not idempotent: waits for ack
    fails = [e for e in store.events(service="svc") if e.kind == ev.CHECK
             and e.data["verdict"] == "fail"]
    assert fails == []
