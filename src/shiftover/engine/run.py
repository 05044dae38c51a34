"""The loop: observe, decide, act, journal. Time comes from an injected clock.

One tick:
  1. renew the lease (when a third of it has gone by) and fold the journal's
     new events (operators act through it: pause, resume, approve, rollback);
  2. read the router's real split;
  3. when a check is due (every ``interval``), evaluate every gate, each on its
     own thread, then fold the journal *again* and read the router *again*:
     what was read before a slow wait is re-read before acting on it;
  4. ``decide``; journal the facts the decision carries (fenced by the lease:
     an append from a run that lost its lease is refused by the store);
  5. act. A weight change re-reads the operators' halting events and renews the
     lease immediately before the first router write, and is journalled before
     (``weight_intended``) and after (``weight_confirmed``, with the split read
     back from the router, exactly, or ``weight_failed``).

Every loop sleeps and every loop can be stopped:

- between checks the loop sleeps in short slices, waking for operator events
  (an operator's rollback takes effect within a fraction of a second even with
  a 15 s interval) and for ``stop()`` / ``max_duration``;
- an unreadable router, a reconcile, a refused write: each waits for the next
  check or backs off (never a hot loop; an unchanged router error is
  journalled once, not once per tick);
- a rollback is retried with a backoff until the router verifies 0%, and
  still honours ``stop()`` and ``max_duration`` (the run is then *held*).

Rollback always wins and needs nothing but the router: once it is due, the run
writes 0% whatever the lease or the journal say (moving toward 0% is always
allowed), journals what it can, and catches the journal up afterwards.

When the journal fails (locked, read-only, deleted, the database down) outside a
rollback, the run cannot record anything, so it never moves up: it holds,
keeps checking the gates every interval, rolls back through the router alone
if they fail ``failure_limit`` times, and goes back to normal once the journal
answers again (journalling a ``journal_gap`` with what it saw meanwhile).

Gates are isolated: each has its own worker thread, and a provider call that
is still stuck from an earlier check makes only *that* gate an error (it is not
called again on top of itself), so one hung backend cannot starve the others.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, cast

from shiftover.analysis.judge import Judge, make_judge
from shiftover.clock import Clock
from shiftover.engine import events as ev
from shiftover.engine.decide import ZERO, Action, Decision, Observation, decide
from shiftover.engine.events import (
    HookRecord,
    RunState,
    fold,
    fold_pairs,
    pending_undos,
    weight_data,
)
from shiftover.engine.rollback import RETRY_MAX, RETRY_MIN, drive_to_zero, rolled_back_data
from shiftover.errors import (
    BadInput,
    LeaseLost,
    ProviderError,
    RouterError,
    ShiftoverError,
    StoreError,
)
from shiftover.hooks import EVERY_STEP, HookOutcome, HookSpec, execute, hook_tag, stop_leftovers
from shiftover.plan import Plan, plan_hash, redact_values
from shiftover.providers.base import Provider, SplitAwareProvider
from shiftover.routers.base import Router
from shiftover.store import Event, Store
from shiftover.types import GateResult, Measurement, Weights

ROLLBACK_RETRY_MIN, ROLLBACK_RETRY_MAX = RETRY_MIN, RETRY_MAX  # also the write backoff
POLL_SLICE = 0.2        # how often a waiting run looks at the journal for operators
MIN_SLEEP = 0.01        # the least a tick sleeps: no loop spins, whatever the state
GATE_GRACE = 1.0        # a gate's answer may arrive this long after its own timeout
MIN_TTL_MARGIN = 1.0    # seconds of lease left over after the longest gap between renewals
HOOK_STOP_WAIT = 5.0    # a stopped hook's process group gets SIGTERM, then SIGKILL after 2 s

# how a hook (or its undo) is executed: hooks.execute, or a test's double
HookExecutor = Callable[..., HookOutcome]


@dataclass
class _HookJob:
    """A hook running in the background while the run goes on checking."""

    spec: HookSpec
    place: str
    phase: str
    campaign: int
    future: Future[HookOutcome]
    cancel: bool = False


@dataclass(frozen=True)
class Gate:
    """A gate of the plan: its spec, the provider that measures it and the judge
    that decides on it (the stateless rule table by default; a ``compare`` gate's
    judge keeps its test across checks)."""

    spec: Any
    provider: Provider
    judge: Judge = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.judge is None:
            object.__setattr__(self, "judge", make_judge(self.spec))

    def measure(self, *, now: float, split: Weights | None) -> Measurement:
        """The provider's measurement; a provider that compares environments
        (``SplitAwareProvider``) is also told the router's split."""
        if getattr(self.provider, "SPLIT_AWARE", False):
            return cast(SplitAwareProvider, self.provider).measure(now=now, split=split)
        return self.provider.measure(now=now)


@dataclass
class RunOutcome:
    outcome: str                 # promoted | rolled_back | held | lease_lost | store_failed
    exit_code: int
    final_weight: Weights | None  # what the router was last seen serving (not the journal's)
    reason: str
    run_id: str
    events: list[Event] = field(default_factory=list)
    status: str = ""             # the last decision's status word (baking, holding, stuck, ...)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def slowest_gate(plan: Plan) -> float:
    return max((float(getattr(g, "timeout", 5.0)) for g in plan.normal_state), default=0.0)


def router_timeout(plan: Plan) -> float:
    return max(float(getattr(m, "timeout", 2.0)) for m in plan.members)


def min_lease_ttl(plan: Plan) -> float:
    """The shortest lease that cannot expire under a live run: it covers an
    interval, the slowest gate (and its grace), a router read and write, and a
    margin. Between two renewals a run waits at most that long."""
    return (plan.interval + slowest_gate(plan) + GATE_GRACE + 2 * router_timeout(plan)
            + MIN_TTL_MARGIN)


def default_lease_ttl(plan: Plan) -> float:
    return max(30.0, 2 * min_lease_ttl(plan))


def check_lease_ttl(plan: Plan, ttl: float | None) -> float:
    """``ttl`` or the default; BadInput when it is too short to cover a tick."""
    if ttl is None:
        return default_lease_ttl(plan)
    need = min_lease_ttl(plan)
    if not ttl >= need:
        raise BadInput(
            f"--lease-ttl {ttl:g}s is shorter than one tick of this plan can take "
            f"({need:g}s: interval {plan.interval:g}s + slowest gate {slowest_gate(plan):g}s "
            f"+ {GATE_GRACE:g}s + 2 x router timeout {router_timeout(plan):g}s + {MIN_TTL_MARGIN:g}s): "
            "a live run's lease could expire under it",
            hint=f"use --lease-ttl {need:g} or more, or leave it out (default {default_lease_ttl(plan):g}s)",
        )
    return ttl


def _outcome(fut: Future[Measurement] | None, limit: float,
             inflight: tuple[float, Future[Measurement]] | None,
             now: float) -> Measurement | ProviderError:
    """What one gate's provider gave this check: a measurement, or an error."""
    if fut is None:
        since = now - inflight[0] if inflight is not None else 0.0
        return ProviderError(f"the previous check of this gate has not answered for "
                             f"{since:.0f}s (provider stuck); not called again")
    if not fut.done():
        return ProviderError(f"no answer within {limit:g}s")
    exc = fut.exception()
    if isinstance(exc, ProviderError):
        return exc
    if exc is not None:
        return ProviderError(f"{type(exc).__name__}: {exc}")
    return fut.result()


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
        environment: str | None = None,
        on_progress: Callable[[str], None] | None = None,
        poll_slice: float = POLL_SLICE,
        run_hook: HookExecutor = execute,
        notifier: Any = None,
        commands: Callable[..., str] | None = None,
        hook_pool: Executor | None = None,
    ) -> None:
        self.plan = plan
        self.router = router
        self.gates = list(gates)
        self.store = store
        self.clock = clock
        self.run_id = run_id or new_run_id()
        self.lease_ttl = check_lease_ttl(plan, lease_ttl)
        self.redact = redact
        self.on_event = on_event
        self.on_tick = on_tick
        self.on_progress = on_progress
        # the longest sleep of a wait (between checks, a backoff) before the journal is
        # read again for operators; the simulation's clock takes a whole wait at once
        self.poll_slice = poll_slice
        self._in_rollback = False
        # a router whose write waits (Route53 until the change is INSYNC) reports each
        # poll: the run keeps its lease alive and hears a stop meanwhile
        for member in getattr(router, "members", None) or [router]:
            if hasattr(member, "on_progress"):
                member.on_progress = self._router_waiting
        self.plan_summary = plan_summary or {}
        self.plan_hash = plan_hash(plan, redact)
        self.environment = environment if environment is not None else plan.environment
        self.lease_key = router.lease_key()
        # routers in lockstep hold one lease per member (routers/group.py); appends are
        # fenced by the first, and every one is renewed before each write
        keys = getattr(router, "lease_keys", None)
        self.lease_keys: list[str] = list(keys()) if keys is not None else [self.lease_key]
        self.holder = f"run {self.run_id} pid {os.getpid()} on {socket.gethostname()}"
        self.state = RunState()
        self.recent: list[Event] = []
        self.status = ""
        self._stop = False
        self._deadline: float | None = None
        self._renewed_at = 0.0
        self._last_check_at: float | None = None
        self._router_weights: Weights | None = None   # the last split the router showed
        self._backoff = ROLLBACK_RETRY_MIN
        self._last_apply: Weights | None = None
        self._journal_down = False
        self._pools = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gate{i}")
                       for i in range(len(self.gates))]
        self._inflight: list[tuple[float, Future[Measurement]] | None] = [None] * len(self.gates)
        self.run_hook = run_hook
        # pasteable commands for hints (the CLI's views.Commands: plan path, --env, --state)
        self.commands: Callable[..., str] = commands or (
            lambda verb, *args: shlex.join(["shiftover", verb, "PLAN", *args]))
        # hooks run in the background, one at a time (tests may run them inline)
        self._hook_pool = hook_pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="hook")
        self._hook_job: _HookJob | None = None
        # notifications (notify.Notifier): told every new journal event, never waited on
        self.notifier = notifier

    # -- journal ------------------------------------------------------------
    def journal(self, kind: str, data: dict[str, Any] | None = None, *,
                fenced: bool = True) -> Event:
        """Append one event. Fenced appends are refused (LeaseLost) unless this run
        still holds its lease; rollback events are written unfenced."""
        clean = redact_values(data or {}, self.redact)
        return self.store.append(service=self.plan.journal_key, run_id=self.run_id, kind=kind,
                                 at=self.clock.now(), data=clean,
                                 fence=(self.lease_key, self.holder) if fenced else None)

    def _try_journal(self, kind: str, data: dict[str, Any] | None = None) -> bool:
        """Best effort, unfenced: for a rollback, which never waits on the journal."""
        try:
            self.journal(kind, data, fenced=False)
            return True
        except ShiftoverError:
            return False

    def _refresh(self, *, notify: bool = True) -> None:
        new = self.store.events(service=self.plan.journal_key, after_id=self.state.last_event_id)
        if new:
            self.state = fold(self.state, new)
            for e in new:
                self.recent.append(e)
                if self.on_event and notify:
                    self.on_event(e)
                if self.notifier is not None and notify:
                    self.notifier.observe(e)
            del self.recent[:-200]

    def _halted_since(self, after_id: int) -> bool:
        """Did an operator (or anyone) pause, roll back or end the campaign since?"""
        return bool(self.store.events(service=self.plan.journal_key, after_id=after_id,
                                      kinds=ev.HALTING_KINDS, limit=1))

    # -- lease --------------------------------------------------------------
    def _renew(self, *, force: bool = False) -> None:
        now = self.clock.now()
        if force or now - self._renewed_at >= self.lease_ttl / 3 or now < self._renewed_at:
            for key in self.lease_keys:
                self.store.renew_lease(key=key, holder=self.holder, ttl=self.lease_ttl)
            self._renewed_at = now

    # -- observe ------------------------------------------------------------
    def read_router(self) -> tuple[Weights | None, str | None]:
        w, _low, error = self.read_router_range()
        return w, error

    def read_router_range(self) -> tuple[Weights | None, Weights | None, str | None]:
        """(highest, lowest, error): routers in lockstep have both (see routers/group.py);
        a single router's split is both."""
        read_range = getattr(self.router, "read_range", None)
        try:
            if read_range is not None:
                low, w = read_range()
            else:
                w = low = self.router.read()
        except ShiftoverError as exc:
            return None, None, self.redact(exc.message)
        except Exception as exc:  # a plugin's bug must not kill the loop
            return None, None, self.redact(f"{type(exc).__name__}: {exc}")
        self._router_weights = w
        return w, low, None

    def evaluate_gates(self, split: Weights | None = None) -> tuple[GateResult, ...] | None:
        """Every gate at once, each on its own thread with its own timeout (+ grace).
        A gate whose previous call is still running is not called again: it is an
        error this check, and the others are unaffected. None when the run was
        stopped while waiting (Ctrl-C does not wait out a slow gate). ``split`` is the
        router's split read this tick (None: unreadable), for gates that compare."""
        now = self.clock.now()
        submitted: list[Future[Measurement] | None] = []
        for i, gate in enumerate(self.gates):
            inflight = self._inflight[i]
            if inflight is not None and not inflight[1].done():
                submitted.append(None)
                continue
            job = self._pools[i].submit(gate.measure, now=now, split=split)
            self._inflight[i] = (now, job)
            submitted.append(job)
        limits = [float(getattr(g.spec, "timeout", 5.0)) + GATE_GRACE for g in self.gates]
        pending = [f for f in submitted if f is not None]
        # wait in slices, so that a stop is heard; at most the slowest gate's limit
        for _ in range(math.ceil(max(limits, default=0.0) / POLL_SLICE)):
            if not pending or self._stop:
                break
            _done, not_done = wait(pending, timeout=POLL_SLICE)
            pending = list(not_done)
        if self._stop:
            return None
        results = []
        for gate, fut, limit, inflight in zip(self.gates, submitted, limits, self._inflight,
                                              strict=True):
            result = gate.judge(_outcome(fut, limit, inflight, now), now=now)
            # reasons and thresholds can quote URLs or provider messages: no secret leaves
            results.append(replace(result, reason=self.redact(result.reason),
                                   threshold=None if result.threshold is None
                                   else self.redact(result.threshold)))
        return tuple(results)

    # -- act ----------------------------------------------------------------
    def set_weight(self, target: Weights, *, reason: str, step_index: int | None) -> bool:
        """Apply ``target`` (journalled before and after); True once the router shows it."""
        members = getattr(self.router, "members", None)
        intent = {} if members is None else {"members": [m.describe() for m in members]}
        self.journal(ev.WEIGHT_INTENDED, weight_data(target, reason=reason, step_index=step_index,
                                                     **intent))
        try:
            self.router.apply(target)
            ok = self.router.verify(target)
        except Exception as exc:
            message = exc.message if isinstance(exc, ShiftoverError) else f"{type(exc).__name__}: {exc}"
            self.journal(ev.WEIGHT_FAILED, weight_data(target, error=message, **self._members()))
            return False
        if ok is False:
            seen, _ = self.read_router()
            self.journal(ev.WEIGHT_FAILED, weight_data(
                target, error="the router does not show the split after apply"
                + (f" (it shows {seen})" if seen is not None else ""), **self._members()))
            return False
        self._router_weights = target
        self.journal(ev.WEIGHT_CONFIRMED, weight_data(target, step_index=step_index,
                                                      verified=ok is True, **self._members()))
        return True

    def _members(self) -> dict[str, Any]:
        """Each lockstep member's outcome of the last write (routers/group.py), for the journal."""
        report = getattr(self.router, "last_report", None)
        return {} if report is None else {"members": list(report)}

    def _router_waiting(self, line: str) -> None:
        """Called by a router at each poll of a slow write. Outside a rollback the lease
        is renewed (a lost lease stops the write's wait: LeaseLost) and a stop ends the
        wait (the change stays submitted; the next run reconciles with it). A rollback
        depends on nothing but the router: its wait renews no lease, and a stop ends it
        through ``drive_to_zero`` (the write stays submitted; the run says to roll back
        again, which waits on it)."""
        if self.on_progress is not None:
            self.on_progress(self.redact(line))
        if self._in_rollback:
            return
        self._renew()
        if self._stopping():
            raise RouterError(f"stopped while the router was confirming the write ({line})",
                              hint="the change was submitted: the next run reads the router "
                              "and reconciles")

    def stop(self) -> None:
        self._stop = True

    def _stopping(self) -> bool:
        return self._stop or (self._deadline is not None and self.clock.now() >= self._deadline)

    def _sleep(self, seconds: float) -> None:
        """Sleep in slices; returns early on stop."""
        end = self.clock.now() + seconds
        while not self._stopping():
            left = end - self.clock.now()
            if left <= 0:
                return
            self.clock.sleep(min(self.poll_slice, left))

    # -- loop ---------------------------------------------------------------
    def run(self, *, max_duration: float | None = None) -> RunOutcome:
        if max_duration is not None:
            self._deadline = self.clock.now() + max_duration
        with self._leases():
            try:
                return self._run()
            finally:
                # a provider that runs something (a command gate) stops it now: a check
                # still running must not hold the process's exit for its whole timeout
                for gate in self.gates:
                    close = getattr(gate.provider, "close", None)
                    if callable(close):
                        close()
                self.close()

    @contextlib.contextmanager
    def _leases(self) -> Iterator[None]:
        """Hold the lease of every router target this run drives, for the block."""
        taken: list[str] = []
        try:
            for key in self.lease_keys:
                self.store.acquire_lease(key=key, holder=self.holder, ttl=self.lease_ttl,
                                         meta={"service": self.plan.journal_key, "run_id": self.run_id,
                                               "pid": os.getpid(), "host": socket.gethostname()})
                taken.append(key)
            self._renewed_at = self.clock.now()
            yield
        finally:
            for key in taken:
                try:
                    self.store.release_lease(key=key, holder=self.holder)
                except ShiftoverError:
                    pass

    def _run(self) -> RunOutcome:
        self._refresh(notify=False)  # the past: folded, not re-announced
        resumed = self.state.started
        previous_hash = self.state.plan_hash
        if resumed:
            self._refuse_another_target()
        self.journal(ev.RUN_STARTED, {"run_id": self.run_id, "pid": os.getpid(),
                                      "host": socket.gethostname(), "resumed": resumed,
                                      "plan": self.plan_summary, "plan_hash": self.plan_hash,
                                      "environment": self.environment,
                                      "rehearsal": self.plan.rehearsal,
                                      "lease_key": self.lease_key, "lease_keys": self.lease_keys,
                                      "lease_ttl": self.lease_ttl})
        if resumed and previous_hash is not None and previous_hash != self.plan_hash:
            confirmed = self.state.confirmed
            self.journal(ev.PLAN_CHANGED, {
                "previous_hash": previous_hash, "plan_hash": self.plan_hash,
                "resume_from_percent": None if confirmed is None else float(confirmed.new_percent),
                "note": "the plan changed since the last run: resuming from the step at or "
                        "below the confirmed split; the next move is at most one step up"})
        if self._ended_undos():  # the last campaign's rollback, completed first
            left = self._undo_hooks(ended_only=True)
            if left is not None:
                return self._finish("held", 4, "the last campaign was rolled back and its hooks' "
                                    f"undo is not complete: {left}")
        while True:
            try:
                done = self._tick()
            except LeaseLost as exc:
                return self._lease_lost(exc)
            except StoreError as exc:
                done = self._without_journal(exc)
            if done is not None:
                return done

    def _tick(self) -> RunOutcome | None:
        self._renew(force=True)
        self._refresh()
        self._reap_hook()
        self.journal_notify_failures()
        st = self.state
        if st.ended:
            return self._ended(st)
        weights, low, err = self.read_router_range()
        rolling = st.rolling_back or st.rollback_requested
        now = self.clock.now()
        results = None
        if self._check_due(now) and not rolling:
            # routers in lockstep that disagree (a write that reached one member) have no
            # one split: gates that compare keep their step's test going
            results = self.evaluate_gates(weights if low in (None, weights) else None)
            self._last_check_at = now
            # the lease is renewed and what was read before the (possibly slow)
            # checks is read again, before anything is decided on it
            self._renew(force=True)
            self._refresh()
            st = self.state
            if st.ended:
                return self._ended(st)
            if st.rolling_back or st.rollback_requested:
                results = None
            weights, low, err = self.read_router_range()
        obs = Observation(weights, err, results, lowest=low)
        basis = st.last_event_id  # what the decision knows; anything later is re-checked
        decision = decide(self.plan, st, obs, self.clock.now())
        if decision.action is Action.ROLLBACK:
            for kind, data in decision.events:
                self._try_journal(kind, data)
            self._refresh_quietly()
            self._notify(obs, decision)
            return self._roll_back(decision.reason)
        for kind, data in decision.events:
            self.journal(kind, data)
        self._refresh()
        self._notify(obs, decision)

        if decision.action is Action.PROMOTE:
            self.journal(ev.PROMOTED, weight_data(Weights(100)))
            self._refresh()
            return self._finish("promoted", 0, decision.reason)
        if decision.action is Action.ROLLED_BACK:
            return self._finish("rolled_back", 3, self._after_rollback(decision.reason))
        if self._stopping():
            why = "stopped" if self._stop else "max duration reached"
            reason = decision.reason
            if decision.action is Action.APPLY and decision.target is not None:
                # what the decision would have done, it did not: say where the router is
                left = self._router_weights
                reason += (f" — not done: {decision.target} was not written, the router was left "
                           f"at {left if left is not None else 'an unknown split'}")
            return self._finish("held", 4, f"{why}: {reason}")
        if decision.action is Action.APPLY and decision.target is not None:
            return self._apply(decision, basis)
        if decision.action is Action.HOOK and decision.hook is not None:
            self._start_hook(decision.hook, basis)
        self._wait_for_next_check()
        return None

    def _refuse_another_target(self) -> None:
        """A service's open campaign moves one router target: its confirmed split is that
        target's. A plan of the same ``service`` driving another target (the Route53 plan
        and the ALB plan of one service, both named after it) would read the other
        target's split as a drift, pause, and undo the other run's steps. Refused, exit 2,
        before anything is journalled or written."""
        last = None
        for e in self.store.events(service=self.plan.journal_key, kinds=[ev.RUN_STARTED]):
            last = e
        if last is None:
            return
        theirs = last.data.get("lease_keys") or [last.data.get("lease_key")]
        theirs = sorted(k for k in theirs if isinstance(k, str))
        # the journal holds keys as redacted (a socket path may come from a secret)
        ours = sorted(self.redact(k) for k in self.lease_keys)
        if theirs and theirs != ours:
            raise BadInput(
                f"service {self.plan.service!r} has an open campaign on "
                f"{' + '.join(theirs)}, and this plan drives {' + '.join(ours)}: "
                "one service's campaign moves one router target",
                hint="give this plan its own service name (e.g. service: "
                f"{self.plan.service}-{ours[0].split(':', 1)[0]}), or end that "
                "campaign first with the plan that started it (shiftover rollback or run to 100%)")

    def _check_due(self, now: float) -> bool:
        last = self._last_check_at
        return last is None or now - last >= self.plan.interval - 1e-9

    def _notify(self, obs: Observation, decision: Decision) -> None:
        self.status = decision.status
        if self.on_tick:
            shown = replace(decision, reason=self.redact(decision.reason))
            self.on_tick(self.state, obs, shown)

    def _refresh_quietly(self) -> None:
        try:
            self._refresh()
        except ShiftoverError:
            pass

    def _apply(self, decision: Decision, basis: int) -> RunOutcome | None:
        assert decision.target is not None
        # the last word of operators and the lease, immediately before the write:
        # anything halting journalled after the state the decision was made on
        # (even if it was folded since) means: decide again
        if self._halted_since(basis):
            self._refresh()
            return None
        self._renew(force=True)
        if self._last_apply == decision.target:
            # the same write again without the router keeping it: back off, never spin
            self._sleep(self._backoff)
            self._backoff = min(self._backoff * 2, max(ROLLBACK_RETRY_MAX, self.plan.interval))
        reason = "step" if decision.status == "advancing" else decision.status
        ok = self.set_weight(decision.target, reason=reason, step_index=decision.step_index)
        self._refresh()
        if ok:
            self._last_apply = decision.target
            # the bake counts from the confirmed write: checks fall on that grid, so a
            # step bakes for ``bake`` (not a whole interval more because the write took
            # a few ms after the check). A write slower than an interval (Route53 until
            # INSYNC) leaves the check due at once: the grid starts there just the same.
            now = self.clock.now()
            if self._last_check_at is not None and now - self._last_check_at < self.plan.interval:
                self._last_check_at = now
            return None  # observe the new weight at once
        self._sleep(self._backoff)
        self._backoff = min(self._backoff * 2, max(ROLLBACK_RETRY_MAX, self.plan.interval))
        return None

    def _wait_for_next_check(self) -> None:
        """Sleep until the next check is due, waking early for operator events."""
        self._last_apply = None
        self._backoff = ROLLBACK_RETRY_MIN
        deadline = (self._last_check_at or self.clock.now()) + self.plan.interval
        seen = self.state.last_event_id
        while not self._stopping():
            if self._hook_job is not None and self._hook_job.future.done():
                return  # its result is journalled (and the next hook started) at once
            # always some sleep, even when a check is already due: no tick spins
            self.clock.sleep(min(self.poll_slice, max(deadline - self.clock.now(), MIN_SLEEP)))
            self._renew()
            if self.store.events(service=self.plan.journal_key, after_id=seen,
                                 kinds=ev.OPERATOR_KINDS, limit=1):
                return
            if self.clock.now() >= deadline:
                return

    # -- hooks --------------------------------------------------------------
    def _hook_spec(self, name: str) -> HookSpec | None:
        return next((h for h in self.plan.hooks if h.name == name), None)

    def _facts(self, spec: HookSpec, place: str, phase: str, attempt: int) -> dict[str, Any]:
        confirmed = self.state.confirmed
        if confirmed is None:  # an undo after the campaign ended: where the router was left
            confirmed = self.state.final or self._router_weights
        # the place comes from the journal: a plan edited since may not have that step
        index = 0 if place == "start" else len(self.plan.steps) if place == "promoted" else next(
            (i + 1 for i, s in enumerate(self.plan.steps) if f"{s:g}" == place), None)
        return {"service": self.plan.service, "environment": self.environment,
                "run_id": self.run_id, "hook": spec.name, "phase": phase, "at": place,
                "step": index, "attempt": attempt,
                "percent": None if confirmed is None else f"{float(confirmed.new_percent):g}"}

    def _submit(self, spec: HookSpec, place: str, phase: str, campaign: int,
                attempt: int) -> _HookJob:
        """Journal the intent, then start the hook (or its undo) in the background.
        Whatever a dead run left running of this hook is stopped first: a hook never
        runs beside itself, and its undo never beside it."""
        action = spec if phase == "run" else spec.undo
        assert action is not None
        facts = self._facts(spec, place, phase, attempt)
        tag = hook_tag(self.plan.journal_key, campaign, spec.name, place)
        stop_leftovers(tag)
        self.journal(ev.HOOK_STARTED, {"hook": spec.name, "at": place, "phase": phase,
                                       "campaign": campaign, "attempt": attempt,
                                       "idempotent": spec.idempotent,
                                       "has_undo": spec.undo is not None,
                                       "every_step": spec.at == EVERY_STEP})
        self._refresh()
        holder: list[_HookJob] = []

        def stopping() -> bool:  # a rollback or a stop ends a running hook at once
            job = holder[0] if holder else None
            return (job is not None and job.cancel) or self._stopping() or (
                phase == "run" and self._in_rollback)

        future = self._hook_pool.submit(self.run_hook, action, timeout=spec.timeout,
                                        retries=spec.retries, facts=facts, stopping=stopping,
                                        tag=tag)
        job = _HookJob(spec, place, phase, campaign, future)
        holder.append(job)
        return job

    def _start_hook(self, hook: tuple[str, str], basis: int) -> None:
        if self._halted_since(basis):  # an operator's pause or rollback since: decide again
            self._refresh()
            return
        spec = self._hook_spec(hook[0])
        if spec is None or self._hook_job is not None:
            return
        self._renew(force=True)
        rec = self.state.hook(spec.name, hook[1])
        self._hook_job = self._submit(spec, hook[1], "run", self.state.campaign,
                                      (rec.attempt if rec else 0) + 1)

    def _reap_hook(self, *, wait: float = 0.0) -> None:
        """Journal the result of the background hook once it has one (waiting up to
        ``wait`` seconds for it, renewing the lease)."""
        job = self._hook_job
        if job is None:
            return
        end = self.clock.now() + wait
        while not job.future.done() and self.clock.now() < end:  # the job hears stop()
            self.clock.sleep(min(self.poll_slice, max(end - self.clock.now(), MIN_SLEEP)))
            try:
                self._renew()
            except ShiftoverError:
                pass
        if not job.future.done():
            return
        # forgotten only once its result is in the journal: a journal error here leaves
        # it to the next tick, never a hook that looks as if it ran for ever
        self._journal_hook_result(job, job.future)

    def _journal_hook_result(self, job: _HookJob, future: Future[HookOutcome]) -> bool:
        exc = future.exception()
        if exc is not None:  # hooks.execute never raises; a test double or a bug might
            data: dict[str, Any] = {"ok": False, "summary": f"{type(exc).__name__}: {exc}"}
        else:
            data = future.result().to_data(self.redact)
        self.journal(ev.HOOK_FINISHED, {"hook": job.spec.name, "at": job.place,
                                        "phase": job.phase, "campaign": job.campaign, **data},
                     fenced=job.phase == "run")
        if self._hook_job is job:
            self._hook_job = None
        self._refresh()
        return bool(data["ok"])

    def _stop_hook(self) -> None:
        """End the background hook (a rollback, a stop), and journal how it ended;
        a run killed before it could leaves its result unknown for the next run."""
        if self._hook_job is not None:
            self._hook_job.cancel = True
            try:
                self._reap_hook(wait=HOOK_STOP_WAIT)
            except ShiftoverError:
                pass

    def _ended_undos(self) -> list[HookRecord]:
        """What is left to undo of campaigns that ended rolled back (not the open one)."""
        st = self.state
        return [h for h in pending_undos(st) if not st.started or h.campaign != st.campaign]

    def _undo_hooks(self, *, ended_only: bool = False) -> str | None:
        """Undo every hook that ran, last started first, once the router is at 0%:
        None when nothing is left to undo, else why the rest waits (an undo that
        failed, or one whose result is unknown and that is not idempotent)."""
        self._stop_hook()
        self._refresh()
        cmds = self.commands("rollback")
        for rec in self._ended_undos() if ended_only else pending_undos(self.state):
            spec = self._hook_spec(rec.hook)
            where = f"hook {rec.hook!r} (at {rec.at})"
            ack = self.commands("ack", "--hook", rec.hook, "--at", rec.at, "--undo", "--done")
            if spec is None or spec.undo is None:
                return f"{where} ran, and this plan has no undo for it: undo it by hand, then `{ack}`"
            undo = self.state.hook(rec.hook, rec.at, "undo", rec.campaign)
            # "running" while this process runs nothing: the run that started it is dead
            # (we hold the lease now), and nobody knows what it did
            stale = undo is not None and (undo.status == "unknown" or (
                undo.status == "running" and self._hook_job is None))
            if stale and not spec.idempotent:
                return (f"the undo of {where} was running when a run stopped: nobody knows if "
                        f"it did its work (the hook is not idempotent): check, then `{ack}` "
                        "(or --not-done to run it again)")
            self._hook_job = self._submit(spec, rec.at, "undo", rec.campaign,
                                          (undo.attempt if undo else 0) + 1)
            self._reap_hook(wait=math.inf)  # until it ends (stop() ends it too)
            last = self.state.hook(rec.hook, rec.at, "undo", rec.campaign)
            if last is None or last.status != "ok":
                return (f"the undo of {where} failed: {last.summary if last else '?'}; the "
                        f"undos after it wait: fix the cause, then `{cmds}` runs what is left")
        return None

    def undo_hooks(self) -> str | None:
        """For ``shiftover rollback`` with no live run: take the lease, run what is
        left to undo, release. None when nothing is left; else why not (another
        run holds the lease: it does the undos itself)."""
        with self._leases():
            self._refresh(notify=False)
            if not pending_undos(self.state):
                return None
            return self._undo_hooks()

    def close(self) -> None:
        """Let go of the worker threads (gates, hooks); a running one is abandoned."""
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        self._hook_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def stopped(self) -> bool:
        """``stop()`` was called."""
        return self._stop

    def _after_rollback(self, why: str) -> str:
        """The rollback's reason, with what became of the hooks' undo."""
        if not self.plan.hooks and not pending_undos(self.state):
            return why
        try:
            left = self._undo_hooks()
        except LeaseLost as exc:
            left = f"the undos stopped: {exc.message}"
        except ShiftoverError as exc:
            job = self._hook_job
            left = (f"the journal failed ({exc.message})" + (
                f": the undo of hook {job.spec.name!r} (at {job.place}) ran, its result could "
                "not be recorded: check it, then "
                f"`{self.commands('ack', '--hook', job.spec.name, '--at', job.place, '--undo', '--done')}` "
                "(or --not-done)" if job is not None else ": no undo was run"))
        return why if left is None else f"{why}; UNDO NOT COMPLETE: {left}"

    def journal_notify_failures(self) -> None:
        if self.notifier is None:
            return
        failures = self.notifier.failures()
        for failure in failures:
            self._try_journal(ev.NOTIFY_FAILED, failure)
        if failures:
            self._refresh_quietly()  # shown as they are journalled

    # -- rollback -----------------------------------------------------------
    def _roll_back(self, reason: str) -> RunOutcome:
        """0% through the router alone, retried with a backoff until it verifies;
        the journal is written when it can be, never waited on."""
        started = self.state.rollback_started_at or self.clock.now()
        self._in_rollback = True
        # a journal known to be failing is not waited on (a locked SQLite file
        # would hold every append for its busy timeout): 0% first, the record after
        journal_ok = not self._journal_down and self._try_journal(
            ev.WEIGHT_INTENDED, weight_data(ZERO, reason="rollback", step_index=-1))
        def failed(error: str) -> None:  # once per distinct error, not per retry
            nonlocal journal_ok
            if journal_ok:
                journal_ok = self._try_journal(ev.WEIGHT_FAILED, weight_data(ZERO, error=error))

        error = drive_to_zero(self.router, self.clock, stopping=self._stopping, on_error=failed)
        if error is not None:
            return self._finish("held", 4, "stopped before the router confirmed 0%: "
                                f"run `shiftover rollback` again ({error})")
        self._router_weights = ZERO
        seconds = round(self.clock.now() - started, 3)
        if not journal_ok:
            journal_ok = self._try_journal(ev.WEIGHT_INTENDED, weight_data(
                ZERO, reason="rollback", step_index=-1, journalled_after_the_write=True))
        confirmed = self._try_journal(ev.WEIGHT_CONFIRMED, weight_data(ZERO, step_index=-1,
                                                                       verified=True))
        done = confirmed and self._try_journal(ev.ROLLED_BACK, rolled_back_data(
            self.router, seconds, reason=reason))
        self._refresh_quietly()
        why = f"rolled back: {reason}"
        if not done:
            why += " (0% confirmed by the router; the journal could not record it)"
            self._stop_hook()
        else:
            why = self._after_rollback(why)
        return self._finish("rolled_back", 3, why)

    def _ended(self, st: RunState) -> RunOutcome:
        """The campaign was ended by someone else (an operator's rollback, another
        run). After a rollback, 0% is made sure of: a write of ours that raced it
        must not survive it."""
        why = "the campaign was ended" + (" (rolled back)" if st.outcome == ev.ROLLED_BACK
                                          else " (promoted)")
        if st.outcome == ev.ROLLED_BACK:
            self._ensure_zero()
            why = self._after_rollback(why)
        else:
            self._stop_hook()
        return self._finish(st.outcome or "ended", 0 if st.outcome == ev.PROMOTED else 3, why)

    # -- faults ---------------------------------------------------------------
    def _lease_lost(self, exc: LeaseLost) -> RunOutcome:
        """Stop, writing nothing more to the router except toward 0%: if an operator
        rolled back meanwhile (this run may have been frozen past its lease, with a
        write of its own landing after their 0%), 0% is made sure of. The journal
        says why (unfenced: it only records that this run stopped)."""
        self.status = "lease_lost"
        reason = f"lost the lease, stopped without writing again: {exc.message}"
        try:
            self._refresh(notify=False)
            st = self.state
            rolled = st.rolling_back or st.rollback_requested or st.outcome == ev.ROLLED_BACK
        except ShiftoverError:
            rolled = False
        if rolled and self._ensure_zero():
            reason = (f"lost the lease; a rollback was asked meanwhile, so 0% was made sure of "
                      f"through the router: {exc.message}")
        return self._finish("lease_lost", 5, reason)

    def _ensure_zero(self, within: float = 2.0) -> bool:
        """0% through the router if it is not there yet (a short while, no journal)."""
        self._in_rollback = True
        if drive_to_zero(self.router, self.clock, deadline=self.clock.now() + within) is None:
            self._router_weights = ZERO
            return True
        return False

    def _without_journal(self, exc: StoreError) -> RunOutcome | None:
        """The journal failed outside a rollback: hold and keep checking, by the same
        rules (``decide`` on a state folded in memory), except that nothing moves up:
        a rollback (a limit reached) goes through the router alone; back to normal,
        with a ``journal_gap`` event, when the journal answers again."""
        error = self.redact(exc.message)
        started = self.clock.now()
        st = self.state
        checks = 0
        self.status = "journal_down"
        self._journal_down = True
        while True:
            if self._stopping():
                return RunOutcome("held", 4, self._router_weights,
                                  f"stopped while the journal was failing ({error}); the router "
                                  "was left as it was", self.run_id, list(self.recent), self.status)
            now = self.clock.now()
            if self._check_due(now):
                self._last_check_at = now
                results = self.evaluate_gates(self.read_router_range()[0])
                if results is None:  # stopped while the gates ran
                    continue
                checks += 1
                weights, low, err = self.read_router_range()
                decision = decide(self.plan, st, Observation(weights, err, results, lowest=low),
                                  now)
                if decision.action is Action.ROLLBACK:
                    return self._roll_back(f"{decision.reason} (while the journal was failing: "
                                           f"{error})")
                st = fold_pairs(st, decision.events, now)  # APPLY/PROMOTE: held, not done
                try:  # is the journal back?
                    self._renew(force=True)
                    self.journal(ev.JOURNAL_GAP, {
                        "seconds": round(self.clock.now() - started, 3), "checks": checks,
                        "consecutive_failures": st.consecutive_failures,
                        "consecutive_errors": st.consecutive_errors,
                        "consecutive_inconclusive": st.consecutive_inconclusive,
                        # the hook failures counted meanwhile: never counted twice
                        "hooks_counted": [[h.hook, h.at, h.counted] for h in st.hooks
                                          if h.counted and h.phase == "run"
                                          and h.campaign == st.campaign],
                        "error": error})
                    self._refresh()
                    self._journal_down = False
                    return None
                except LeaseLost as lost:
                    return self._lease_lost(lost)
                except StoreError:
                    pass
            self._sleep(max(0.05, (self._last_check_at or now) + self.plan.interval
                            - self.clock.now()))

    def _finish(self, outcome: str, code: int, reason: str) -> RunOutcome:
        self._stop_hook()  # a held run leaves no hook behind it running unwatched
        reason = self.redact(reason)
        if outcome in (ev.PROMOTED, ev.ROLLED_BACK):
            self.status = outcome
        try:
            self.journal(ev.RUN_STOPPED, {
                "outcome": outcome, "exit_code": code, "reason": reason,
                "router": None if self._router_weights is None
                else weight_data(self._router_weights)}, fenced=False)
            self._refresh()
        except ShiftoverError:
            pass
        return RunOutcome(outcome, code, self._router_weights, reason, self.run_id,
                          list(self.recent), self.status)
