"""Hooks in the engine: places, order, failures as failed checks, undo on rollback,
a crash while a hook ran (idempotent re-run vs hold and ack). In-memory router,
scripted gates, a fake clock, hooks run inline by a recording double."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from shiftover import views
from shiftover.engine import events as ev
from shiftover.engine.run import Gate, Runner
from shiftover.errors import StoreError
from shiftover.external import Outcome
from shiftover.hooks import TAG, HookOutcome, hook_tag, leftovers, stop_leftovers
from shiftover.plan import Plan
from shiftover.store import Store, open_store
from shiftover.testing import FakeClock, InlineExecutor, InMemoryRouter, ScriptedProvider, plan_dict
from shiftover.types import Measurement, Weights


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
                 stopping: Callable[[], bool], **_: Any) -> HookOutcome:
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


# --- found by a hostile review: each was a real defect ---------------------------------


class FlakyStore:
    """A store whose appends of ``kind`` fail ``times`` times (after ``armed_by``, if
    given, has been appended): a journal hiccup at the worst moment."""

    def __init__(self, inner: Store, kind: str, times: int = 1, armed_by: str | None = None) -> None:
        self.inner, self.kind, self.left, self.armed_by = inner, kind, times, armed_by
        self.armed = armed_by is None

    def append(self, **kw: Any) -> Any:
        if kw.get("kind") == self.armed_by:
            self.armed = True
        elif self.armed and kw.get("kind") == self.kind and self.left > 0:
            self.left -= 1
            raise StoreError("database is locked")
        return self.inner.append(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_journal_hiccup_when_a_hook_finishes_does_not_lose_its_result(store: Store) -> None:
    flaky = FlakyStore(store, ev.HOOK_FINISHED)
    runner, _, rec, _ = make(flaky, hooks=[HOOKS[1]])  # type: ignore[arg-type]
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason  # not "stuck" on a hook that looks running
    assert rec.calls == [("batch", "run", "50", "50")]


def test_a_hook_failure_is_counted_once_across_a_journal_gap(store: Store) -> None:
    flaky = FlakyStore(store, ev.CHECK, armed_by=ev.HOOK_FINISHED)
    runner, _, rec, _ = make(flaky, hooks=[HOOKS[1]],  # type: ignore[arg-type]
                             recorder=Recorder({"batch": [False, True]}))
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason  # one failure, failure_limit 2
    assert [c[0] for c in rec.calls] == ["batch", "batch"]


def test_an_undo_left_at_a_step_the_edited_plan_no_longer_has_still_runs(store: Store) -> None:
    runner, router, _, clock = make(store, values=[0.0] * 13 + [0.5],
                                    recorder=Recorder({"batch:undo": [False]}))
    assert "UNDO NOT COMPLETE" in runner.run(max_duration=3600).reason
    # the team moves the step from 50 to 40 before the next run
    runner2, _, rec2, _ = make(store, hooks=[dict(HOOKS[1], at=40), HOOKS[0]], router=router,
                               clock=clock, steps=[10, 40, 100])
    out = runner2.run(max_duration=5)
    assert out.outcome == "held"  # no internal error
    assert rec2.calls[:2] == [("batch", "undo", "50", "0"), ("warm", "undo", "start", "0")]


def test_a_campaign_that_begins_above_zero_runs_the_one_off_hooks_below_it_first(store: Store) -> None:
    hooks = [HOOKS[0], {"name": "workers", "at": 10, "run": ["workers"]}, HOOKS[1], HOOKS[2]]
    runner, _, rec, _ = make(store, hooks=hooks, router=InMemoryRouter(Weights(30)))
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason
    # start and 10% caught up at 30% (no smoke test for a step long past), then on as usual
    assert rec.calls[:2] == [("warm", "run", "start", "30"), ("workers", "run", "10", "30")]
    assert ("smoke", "run", "10", "30") not in rec.calls


def test_every_step_hooks_run_again_when_a_step_is_reached_again(store: Store) -> None:
    runner, router, rec, _ = make(store, hooks=[HOOKS[1], HOOKS[2]])
    state = {"n": 0, "drained": False}

    class Gate50:
        def measure(self, *, now: float) -> Measurement:
            state["n"] += 1
            if not state["drained"] and router.read() == Weights(50) and state["n"] > 12:
                state["drained"] = True
                router.apply(Weights(10))  # an operator drains 50% -> 10%
            return Measurement(value=0.0, at=now, samples=100)

    runner.gates[0] = Gate(runner.gates[0].spec, Gate50())
    out = runner.run(max_duration=7200)
    assert out.outcome == "promoted", out.reason
    smoke = [c[2] for c in rec.calls if c[0] == "smoke"]
    assert smoke.count("50") == 2  # the smoke tests ran at 50% each time it was reached
    assert [c[0] for c in rec.calls].count("batch") == 1  # a one-off hook: once


def test_a_failed_promoted_hook_does_not_cost_another_bake(store: Store) -> None:
    runner, _, _rec, _ = make(store, hooks=[HOOKS[3]], recorder=Recorder({"announce": [False, True]}))
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason
    evs = events(store)
    failed = next(e.at for e in evs if e.kind == ev.HOOK_FINISHED and not e.data["ok"])
    promoted = next(e.at for e in evs if e.kind == ev.PROMOTED)
    assert promoted - failed < 60  # bake 60s: retried at the next check, not after a bake


def test_a_hook_left_running_by_a_dead_run_is_stopped_before_its_undo(tmp_path: Any) -> None:
    """A real process tagged as a dead run's hook (it outlived a SIGKILL in its own
    session) is found by its tag and stopped before anything else runs for that hook."""
    tag = hook_tag("svc", 1, "batch", "50")
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True,
                            env={**os.environ, TAG: tag})
    try:
        deadline = time.monotonic() + 5
        while len(leftovers(tag)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(leftovers(tag)) >= 2  # the shell and its sleeps
        assert leftovers(hook_tag("svc", 1, "batch", "5")) == []  # another place's tag
        stop_leftovers(tag)
        assert leftovers(tag) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_hook_commands_that_cannot_start_are_found_before_the_run(tmp_path: Any,
                                                                   monkeypatch: Any) -> None:
    from shiftover.hooks import command_problems

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bin").mkdir()
    ok = tmp_path / "bin" / "batch"
    ok.write_text("#!/bin/sh\n")
    ok.chmod(0o755)
    (tmp_path / "bin" / "smoke").write_text("#!/bin/sh\n")  # not executable
    p = Plan.model_validate(plan_dict(hooks=[
        {"name": "batch", "at": 50, "run": ["./bin/batch"], "undo": {"run": ["no-such-program-x"]}},
        {"name": "smoke", "at": "every_step", "run": ["./bin/smoke"]},
        {"name": "ping", "at": "start", "run": ["sh", "-c", "true"]},
        {"name": "hook", "at": "promoted", "webhook": {"url": "http://127.0.0.1:9/"}}]))
    assert command_problems(p.hooks) == [
        "undo of hook 'batch': 'no-such-program-x' is not found on the PATH",
        f"hook 'smoke': './bin/smoke' is not an executable file (from the working directory {tmp_path})"]
