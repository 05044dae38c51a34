"""The loop: observe, decide, act, journal. Time comes from an injected clock.

One tick:
  1. fold the journal's new events (operators act through it: pause, resume,
     approve, rollback) into the state;
  2. read the router's real weights;
  3. evaluate every gate concurrently (not during a rollback: a rollback needs
     nothing but the router);
  4. ``decide``; journal the facts the decision carries;
  5. act. A weight change is journalled before (``weight_intended``) and after
     (``weight_confirmed`` once the router verifies it, or ``weight_failed``).

Between ticks the loop sleeps in short slices and re-reads the journal, so an
operator's rollback takes effect within a fraction of a second even with a 15 s
interval. A rollback is retried with a short backoff until the router confirms 0%.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from shiftover.analysis.judge import judge
from shiftover.clock import Clock
from shiftover.engine import events as ev
from shiftover.engine.decide import Action, Decision, Observation, decide
from shiftover.engine.events import RunState, fold
from shiftover.errors import LeaseHeld, ProviderError, RouterError, ShiftoverError, StoreError
from shiftover.plan import Plan
from shiftover.providers.base import Provider
from shiftover.routers.base import Router
from shiftover.store import Event, Store
from shiftover.types import GateResult, Measurement, Weights

ROLLBACK_RETRY_MIN = 0.1
ROLLBACK_RETRY_MAX = 2.0
POLL_SLICE = 0.2


@dataclass(frozen=True)
class Gate:
    spec: Any
    provider: Provider


@dataclass
class RunOutcome:
    outcome: str                 # promoted | rolled_back | held | lease_lost
    exit_code: int
    final_weight: Weights | None
    reason: str
    run_id: str
    events: list[Event] = field(default_factory=list)


def _redact_values(value: Any, redact: Callable[[str], str]) -> Any:
    """Redact every string inside a JSON-like value (before it is serialised, so
    escaping cannot hide a secret from the redactor)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _redact_values(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_values(v, redact) for v in value]
    return value


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class Runner:
    """Runs one plan against one router and its gates until promoted, rolled back,
    or stopped (``max_duration`` elapsed or ``stop()`` called: the run is then
    *held*, weights stay, and a later ``run`` resumes)."""

    def __init__(
        self,
        plan: Plan,
        router: Router,
        gates: Sequence[Gate],
        store: Store,
        clock: Clock,
        *,
        run_id: str | None = None,
        lease_ttl: float | None = None,
        redact: Callable[[str], str] = lambda s: s,
        on_event: Callable[[Event], None] | None = None,
        on_tick: Callable[[RunState, Observation, Decision], None] | None = None,
        plan_summary: dict[str, Any] | None = None,
    ) -> None:
        self.plan = plan
        self.router = router
        self.gates = list(gates)
        self.store = store
        self.clock = clock
        self.run_id = run_id or new_run_id()
        self.lease_ttl = lease_ttl if lease_ttl is not None else max(30.0, 3 * plan.interval)
        self.redact = redact
        self.on_event = on_event
        self.on_tick = on_tick
        self.plan_summary = plan_summary or {}
        self.holder = f"run {self.run_id} pid {os.getpid()} on {socket.gethostname()}"
        self.state = RunState()
        self.recent: list[Event] = []
        self._stop = False
        # twice the gates: a provider stuck past its timeout keeps its thread, not the others'
        self._pool = ThreadPoolExecutor(max_workers=max(1, 2 * len(self.gates)),
                                        thread_name_prefix="gate")

    # -- journal ------------------------------------------------------------
    def journal(self, kind: str, data: dict[str, Any] | None = None) -> Event:
        clean = _redact_values(data or {}, self.redact)
        e = self.store.append(service=self.plan.service, run_id=self.run_id, kind=kind,
                              at=self.clock.now(), data=clean)
        return e

    def _refresh(self, *, notify: bool = True) -> None:
        new = self.store.events(service=self.plan.service, after_id=self.state.last_event_id)
        if new:
            self.state = fold(self.state, new)
            for e in new:
                self.recent.append(e)
                if self.on_event and notify:
                    self.on_event(e)
            del self.recent[:-200]

    # -- observe ------------------------------------------------------------
    def read_router(self) -> tuple[Weights | None, str | None]:
        try:
            return self.router.read(), None
        except RouterError as exc:
            return None, str(exc)
        except Exception as exc:  # a plugin's bug must not kill the loop
            return None, f"{type(exc).__name__}: {exc}"

    def evaluate_gates(self) -> tuple[GateResult, ...]:
        """Every gate at once; each gets its own timeout (+1 s), all run concurrently,
        so a tick lasts as long as the slowest gate, not the sum of them."""
        now = self.clock.now()
        futures: list[tuple[Gate, Future[Measurement]]] = [
            (g, self._pool.submit(g.provider.measure, now=now)) for g in self.gates]
        limits = [float(getattr(g.spec, "timeout", 5.0)) + 1.0 for g, _ in futures]
        wait([f for _, f in futures], timeout=max(limits, default=0.0))
        results = []
        for (gate, fut), limit in zip(futures, limits, strict=True):
            outcome: Measurement | ProviderError
            if not fut.done():
                fut.cancel()
                outcome = ProviderError(f"no answer within {limit:g}s")
            elif isinstance(fut.exception(), ProviderError):
                outcome = fut.exception()  # type: ignore[assignment]
            elif fut.exception() is not None:
                exc = fut.exception()
                outcome = ProviderError(f"{type(exc).__name__}: {exc}")
            else:
                outcome = fut.result()
            result = judge(gate.spec, outcome, now=now)
            # reasons can quote URLs or provider messages: no secret leaves the loop
            results.append(replace(result, reason=self.redact(result.reason)))
        return tuple(results)

    # -- act ----------------------------------------------------------------
    def set_weight(self, target: Weights, *, reason: str, step_index: int | None) -> bool:
        idx = self.state.step_index if step_index is None else step_index
        self.journal(ev.WEIGHT_INTENDED, {"percent": float(target.new_percent), "reason": reason,
                                          "step_index": idx})
        try:
            self.router.apply(target)
            ok = self.router.verify(target)
        except Exception as exc:
            self.journal(ev.WEIGHT_FAILED, {"percent": float(target.new_percent), "error": str(exc)})
            return False
        if ok is False:
            self.journal(ev.WEIGHT_FAILED, {"percent": float(target.new_percent),
                                            "error": "router does not show the weight after apply"})
            return False
        self.journal(ev.WEIGHT_CONFIRMED, {"percent": float(target.new_percent), "step_index": idx,
                                           "verified": ok is True})
        return True

    def stop(self) -> None:
        self._stop = True

    # -- loop ---------------------------------------------------------------
    def run(self, *, max_duration: float | None = None) -> RunOutcome:
        service = self.plan.service
        self.store.acquire_lease(service=service, holder=self.holder, now=self.clock.now(),
                                 ttl=self.lease_ttl)
        try:
            return self._run(max_duration)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            try:
                self.store.release_lease(service=service, holder=self.holder)
            except ShiftoverError:
                pass

    def _run(self, max_duration: float | None) -> RunOutcome:
        self._refresh(notify=False)  # the past: folded, not re-announced
        resumed = self.state.started
        self.journal(ev.RUN_STARTED, {"run_id": self.run_id, "pid": os.getpid(),
                                      "host": socket.gethostname(), "resumed": resumed,
                                      "plan": self.plan_summary})
        self._started = self.clock.now()
        self._backoff = ROLLBACK_RETRY_MIN
        self._last_check_at: float | None = None
        self._rolling = False
        while True:
            try:
                done = self._tick(max_duration)
            except StoreError as exc:
                return self._store_failed(exc)
            if done is not None:
                return done

    def _tick(self, max_duration: float | None) -> RunOutcome | None:
        now = self.clock.now()
        try:
            self.store.renew_lease(service=self.plan.service, holder=self.holder, now=now,
                                   ttl=self.lease_ttl)
        except LeaseHeld as exc:
            return self._finish("lease_lost", 5, f"lease lost: {exc}")
        self._refresh()
        st = self.state
        if st.ended:
            return self._finish(st.outcome or "ended", 0 if st.outcome == ev.PROMOTED else 3,
                                "campaign already ended")
        weights, err = self.read_router()
        self._rolling = st.rolling_back or st.rollback_requested
        last = self._last_check_at
        due = last is None or now - last >= self.plan.interval - 1e-9
        results = None
        if not self._rolling and due and weights is not None:
            results = self.evaluate_gates()
            self._last_check_at = now
        obs = Observation(weights, err, results)
        decision = decide(self.plan, st, obs, self.clock.now())
        if decision.action is Action.ROLLBACK:
            self._rolling = True  # from here on, a journal failure cannot stop it
        for kind, data in decision.events:
            self.journal(kind, data)
        self._refresh()
        if self.on_tick:
            self.on_tick(self.state, obs, decision)

        if decision.action is Action.PROMOTE:
            self.journal(ev.PROMOTED, {"percent": 100.0})
            return self._finish("promoted", 0, decision.reason)
        if decision.action is Action.ROLLED_BACK:
            return self._finish("rolled_back", 3, decision.reason)
        stopping = self._stop or (
            max_duration is not None and self.clock.now() - self._started >= max_duration)
        if decision.action is Action.ROLLBACK:
            ok = self.set_weight(Weights(0), reason="rollback", step_index=-1)
            self._refresh()
            if not ok:
                if stopping:
                    return self._finish("held", 4, "stopped before the router confirmed 0%: "
                                        "run `shiftover rollback` again")
                self.clock.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, ROLLBACK_RETRY_MAX)
            return None
        self._backoff = ROLLBACK_RETRY_MIN
        if decision.action is Action.APPLY and decision.target is not None:
            reason = "step" if decision.status == "advancing" else decision.status
            if self.set_weight(decision.target, reason=reason, step_index=decision.step_index):
                self._refresh()
                return None  # observe the new weight at once
            self.clock.sleep(ROLLBACK_RETRY_MIN)
            return None
        # WAIT: sleep until the next check, waking for operator events
        if stopping:
            why = f"after {max_duration:g}s" if not self._stop else ""
            return self._finish("held", 4, f"stopped{' ' + why if why else ''}: {decision.reason}")
        self._wait_until(self._last_check_at, decision)
        return None

    def _store_failed(self, exc: StoreError) -> RunOutcome:
        """The journal failed. A rollback in progress goes on without it (it depends on
        nothing but the router); otherwise the run stops where it is, changing nothing."""
        if not self._rolling:
            return RunOutcome("store_failed", 1, self.state.confirmed,
                              f"the journal failed, the run stopped with weights unchanged: {exc}",
                              self.run_id, list(self.recent))
        backoff = ROLLBACK_RETRY_MIN
        while True:
            try:
                self.router.apply(Weights(0))
                if self.router.verify(Weights(0)) is not False:
                    break
            except Exception:  # the router is all we have: keep trying
                pass
            if self._stop:
                return RunOutcome("held", 4, None, f"stopped before the router confirmed 0%, "
                                  f"and the journal failed: {exc}", self.run_id, list(self.recent))
            self.clock.sleep(backoff)
            backoff = min(backoff * 2, ROLLBACK_RETRY_MAX)
        reason = f"rolled back without the journal (it failed: {exc})"
        try:  # best effort: the journal may be back
            self.journal(ev.WEIGHT_CONFIRMED, {"percent": 0.0, "step_index": -1, "verified": True})
            self.journal(ev.ROLLED_BACK, {"seconds": None, "reason": reason})
        except ShiftoverError:
            pass
        return RunOutcome("rolled_back", 3, Weights(0), reason, self.run_id, list(self.recent))

    def _wait_until(self, last_check_at: float | None, decision: Decision) -> None:
        deadline = (last_check_at or self.clock.now()) + self.plan.interval
        if decision.status == "reconciling":
            return
        seen = self.state.last_event_id
        while not self._stop:
            left = deadline - self.clock.now()
            if left <= 0:
                return
            self.clock.sleep(min(POLL_SLICE, left))
            new = self.store.events(service=self.plan.service, after_id=seen,
                                    kinds=ev.OPERATOR_KINDS)
            if new:
                return

    def _finish(self, outcome: str, code: int, reason: str) -> RunOutcome:
        try:
            self.journal(ev.RUN_STOPPED, {"outcome": outcome, "exit_code": code, "reason": reason})
            self._refresh()
        except ShiftoverError:
            pass
        return RunOutcome(outcome, code, self.state.confirmed or self.state.final, reason,
                          self.run_id, list(self.recent))
