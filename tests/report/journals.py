"""Real journals for the run report's tests: the engine's own Runner on a FakeClock,
an in-memory router and scripted providers, writing to a real SQLite journal.
Operators act from "other terminals" the way the CLI does: by appending their
events (``run_id="operator"``, an actor) while the run waits.

A whole run takes about a second of wall time (the run looks at the journal for
operators every 0.2 s of its clock: 25 reads per 5 s check) for minutes of simulated
time; the tests build each journal once per module.
"""

from __future__ import annotations

from typing import Any

from shiftover.engine import events as ev
from shiftover.engine.decide import Decision, Observation
from shiftover.engine.events import RunState
from shiftover.engine.run import Gate, Runner
from shiftover.plan import Plan
from shiftover.store import Store
from shiftover.testing import FakeClock, InMemoryRouter, ScriptedProvider, plan_dict
from shiftover.types import Measurement

HOSTILE = "</script><script>alert(1)</script> & <b>bold</b>"
SECRET = "s3cr3t-token-4711"
ALICE, BOB = "alice@ops-laptop", "bob@ops-laptop"
SERVICE = "shop"


def gates_plan(**over: Any) -> Plan:
    """Three gates: a max (error ratio), a min (throughput) and alerts; one named to
    break a page that does not escape."""
    normal_state = [
        {"name": "new 5xx ratio", "type": "prometheus", "url": "http://127.0.0.1:1",
         "query": "errors", "max": 0.01},
        {"name": HOSTILE, "type": "prometheus", "url": "http://127.0.0.1:1", "query": "rps",
         "min": 5},
        {"name": "alerts for the service", "type": "prometheus_alerts",
         "url": "http://127.0.0.1:1", "labels": {"service": "shop"}},
    ]
    base = plan_dict(service=SERVICE, steps=[1, 5, 25, 50, 100], bake="30s", interval="5s",
                     normal_state=normal_state, approvals=[25], failure_limit=2)
    base.update(over)
    return Plan.model_validate(base)


class Operators:
    """What people do while the run waits, keyed on what the run says it is doing."""

    def __init__(self, store: Store, clock: FakeClock, *, service: str = SERVICE,
                 pause_at_check: int | None = 8, approve: bool = True) -> None:
        self.store, self.clock, self.service = store, clock, service
        self.pause_at_check, self.approve = pause_at_check, approve
        self.ticks = 0
        self.done: set[str] = set()

    def _act(self, kind: str, data: dict[str, Any], actor: str) -> None:
        self.store.append(service=self.service, run_id="operator", kind=kind,
                          at=self.clock.now(), data=data, actor=actor)

    def __call__(self, st: RunState, obs: Observation, d: Decision) -> None:
        self.ticks += 1
        if d.status == "waiting_approval" and self.approve and "approve" not in self.done:
            self.done.add("approve")
            self.clock.advance(45)  # someone reads the dashboards first
            self._act(ev.APPROVED, {"step": st.waiting_approval,
                                    "reason": f"dashboards green, token {SECRET}, see "
                                              "https://grafana.example.com/d/shop"}, ALICE)
        if self.pause_at_check is not None and self.ticks == self.pause_at_check \
                and "pause" not in self.done:
            self.done.add("pause")
            self._act(ev.PAUSED, {"reason": "database failover in progress"}, BOB)
        if st.paused and "resume" not in self.done and self.ticks >= (self.pause_at_check or 0) + 3:
            self.done.add("resume")
            self._act(ev.RESUMED, {"reason": "failover done"}, BOB)


class ErrorRatio:
    """The new environment's error ratio as the router's split makes it: quiet below
    ``breaks_at`` percent, 5% from there on (a fault that shows under real load)."""

    def __init__(self, router: InMemoryRouter, breaks_at: float = 101.0) -> None:
        self.router, self.breaks_at, self.calls = router, breaks_at, 0

    def measure(self, *, now: float) -> Measurement:
        self.calls += 1
        broken = float(self.router.read().new_percent) >= self.breaks_at
        return Measurement(0.05 if broken else 0.001 + 0.0005 * (self.calls % 4), now, 100)


class Switch:
    """An error ratio that is quiet until ``broken`` is set (by an operator callback)."""

    def __init__(self) -> None:
        self.broken = False

    def measure(self, *, now: float) -> Measurement:
        return Measurement(0.05 if self.broken else 0.001, now, 100)


def run_once(store: Store, plan: Plan, *, breaks_at: float = 101.0, clock: FakeClock | None = None,
             router: InMemoryRouter | None = None, operators: Any = None,
             max_duration: float = 900, run_id: str | None = None,
             environment: str | None = None, errors: Any = None) -> tuple[Runner, Any]:
    clock = clock or FakeClock()
    router = router or InMemoryRouter()
    rps = ScriptedProvider([None, None, *[40.0 + (i % 7) for i in range(400)]])
    alerts = ScriptedProvider([Measurement(0.0, 0.0, 0)])
    providers = [errors or ErrorRatio(router, breaks_at), rps, alerts]
    gates = [Gate(spec, p) for spec, p in zip(plan.normal_state, providers, strict=True)]
    runner = Runner(plan, router, gates, store, clock, run_id=run_id, on_tick=operators,
                    environment=environment,
                    plan_summary=_summary(plan))
    return runner, runner.run(max_duration=max_duration)


def _summary(plan: Plan) -> dict[str, Any]:
    from shiftover.engine.build import plan_summary

    return plan_summary(plan)


def rolled_back_run(store: Store) -> str:
    """Up to 25% (approved by alice), paused and resumed by bob on the way, then the
    error ratio breaks: two failed checks, rollback. Returns the run id."""
    clock = FakeClock()
    plan = gates_plan()
    runner, out = run_once(store, plan, breaks_at=50, clock=clock,
                           operators=Operators(store, clock))
    assert out.outcome == "rolled_back", (out.outcome, out.reason)
    return runner.run_id


def promoted_run(store: Store, *, clock: FakeClock | None = None) -> str:
    clock = clock or FakeClock()
    plan = gates_plan()
    runner, out = run_once(store, plan, clock=clock,
                           operators=Operators(store, clock, pause_at_check=None))
    assert out.outcome == "promoted", (out.outcome, out.reason)
    return runner.run_id


def held_then_resumed(store: Store) -> tuple[str, str]:
    """A run stopped (held) at its first steps, then a second run that resumes the
    campaign and promotes it. Returns both run ids."""
    clock = FakeClock()
    router = InMemoryRouter()
    plan = gates_plan(approvals=[])
    first, out = run_once(store, plan, clock=clock, router=router,
                          max_duration=60, run_id="run-one")
    assert out.outcome == "held", (out.outcome, out.reason)
    clock.advance(600)
    second, out = run_once(store, plan, clock=clock, router=router,
                           run_id="run-two")
    assert out.outcome == "promoted", (out.outcome, out.reason)
    return first.run_id, second.run_id
