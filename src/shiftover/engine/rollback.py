"""``shiftover rollback``: the new environment to 0%, through the router alone.

A rollback never waits on the lease, the journal or a gate. What this does,
in order:

1. Journal the operator's request (best effort: a failing journal does not
   stop a rollback). A live run re-reads the journal before every router write
   and between checks, so it stops moving up at once and starts rolling back
   within a fraction of a second.
2. If a live run holds the lease, give it a short hand-over (a few seconds) to
   journal ``rollback_started``. A run that does not answer in time (it died,
   it is frozen, it is stuck in a slow check) is not waited for.
3. Write 0% through the router directly, retried with a backoff, until the
   router *verifies* 0% or the timeout passes. When a run held a live lease
   and did not answer, its last write may still be in flight: the router is
   watched for a moment after 0% is confirmed and 0% written again if anything
   moved it.
4. Journal what happened (best effort): ``rollback_started``, the confirmed 0%,
   ``rolled_back`` with the seconds it took, which ends the campaign.

The result says whether 0% was confirmed by the router, and how.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shiftover.clock import Clock
from shiftover.engine import events as ev
from shiftover.engine.events import weight_data
from shiftover.errors import RouterError, ShiftoverError
from shiftover.routers.base import Router
from shiftover.store import Store
from shiftover.store.holders import find_run
from shiftover.types import Weights

ZERO = Weights(0)
HANDOFF = 3.0          # seconds a live run gets to start the rollback itself
SETTLE = 1.0           # seconds 0% is watched after a direct write that raced a live run
RETRY_MIN, RETRY_MAX = 0.1, 2.0


def try_zero(router: Router) -> str | None:
    """One attempt at 0% through the router alone: write it (idempotent), then
    verify. None once the router verifies 0%, else why not."""
    try:
        router.apply(ZERO)
        if router.verify(ZERO) is True:
            return None
        return "the router does not show 0% after apply"
    except ShiftoverError as exc:  # with its hint: an operator reads this mid-incident
        return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    except Exception as exc:  # a plugin's bug must not stop a rollback
        return f"{type(exc).__name__}: {exc}"


def drive_to_zero(router: Router, clock: Clock, *, deadline: float | None = None,
                  stopping: Callable[[], bool] = lambda: False,
                  on_error: Callable[[str], None] = lambda e: None) -> str | None:
    """:func:`try_zero` with a backoff until the router verifies 0% (None), or until
    ``stopping()`` or ``deadline`` (the last error). ``on_error`` hears each
    *distinct* error once: a refusal repeated a hundred times is one journal line.
    The one rollback loop of the run, of ``shiftover rollback`` and of a run that
    finds its campaign rolled back by someone else.

    A router whose write waits to be confirmed (Route53 until INSYNC) reports each
    poll through ``on_progress``; here a poll past ``deadline`` or after a stop ends
    that wait, so ``--timeout`` and Ctrl-C bound a rollback too. The write itself
    stays submitted (Route53 propagates it whether anyone waits or not); the next
    attempt waits on it again."""
    backoff = RETRY_MIN
    last: str | None = None

    def cut_short(line: str) -> None:
        if stopping():
            raise RouterError(f"stopped while the router was confirming 0% ({line})")
        if deadline is not None and clock.now() >= deadline:
            raise RouterError(f"not confirmed in time ({line})")

    restore = _chain_progress(router, cut_short)
    try:
        while True:
            error = try_zero(router)
            if error is None:
                return None
            if error != last:
                on_error(error)
                last = error
            left = None if deadline is None else deadline - clock.now()
            if stopping() or (left is not None and left <= 0):
                return error
            clock.sleep(backoff if left is None else min(backoff, left))
            backoff = min(backoff * 2, RETRY_MAX)
    finally:
        restore()


def _chain_progress(router: Router, extra: Callable[[str], None]) -> Callable[[], None]:
    """Add ``extra`` after each (lockstep member) router's ``on_progress``; returns
    the undo."""
    saved: list[tuple[Any, Any]] = []
    for m in getattr(router, "members", None) or [router]:
        if not hasattr(m, "on_progress"):
            continue
        before = m.on_progress

        def chained(line: str, before: Any = before) -> None:
            if before is not None:
                before(line)
            extra(line)

        saved.append((m, before))
        m.on_progress = chained

    def restore() -> None:
        for m, before in saved:
            m.on_progress = before

    return restore


@dataclass(frozen=True)
class RollbackResult:
    confirmed: bool              # the router verified 0% on the new environment
    how: str                     # "live run" | "router" | "none"
    seconds: float
    reason: str
    journalled: bool             # the journal has the outcome
    live_run: str | None = None  # the holder of a live lease, if there was one

    def to_dict(self) -> dict[str, Any]:
        return {"confirmed": self.confirmed, "how": self.how, "seconds": self.seconds,
                "reason": self.reason, "journalled": self.journalled, "live_run": self.live_run,
                "router_percent": 0.0 if self.confirmed else None}


def _live_holder(store: Store | None, service: str, key: str | None) -> str | None:
    """The holder of a live lease on this service or router target whose process is
    not known to be dead (a SIGKILLed run on this host is not waited for)."""
    if store is None:
        return None
    try:
        run = find_run(store, service, key)
    except ShiftoverError:
        return None
    return run.holder if run is not None and run.running else None


def roll_back(
    *,
    service: str,
    store: Store | None,
    router: Router | None,
    clock: Clock,
    actor: str,
    reason: str = "",
    timeout: float = 60.0,
    handoff: float = HANDOFF,
    stopping: Callable[[], bool] = lambda: False,
    redact: Callable[[str], str] = lambda s: s,
    started_at: float | None = None,
) -> RollbackResult:
    """See the module docstring. ``started_at``: when the operator asked (the
    reported seconds include opening the journal); the timeout counts from now."""
    t0 = clock.now() if started_at is None else started_at
    deadline = clock.now() + timeout
    run_id = "operator"
    after_id: int | None = None
    journal_ok = store is not None
    if store is not None:
        try:
            e = store.append(service=service, run_id=run_id, kind=ev.ROLLBACK_REQUESTED,
                             at=clock.now(), data={"reason": reason}, actor=actor)
            after_id = e.id
        except ShiftoverError:
            journal_ok = False
    holder = _live_holder(store, service, router.lease_key() if router is not None else None)

    def elapsed() -> float:
        return round(clock.now() - t0, 3)

    # 2. a live run gets a short hand-over
    handed_over = False
    if holder is not None and store is not None and after_id is not None:
        end = min(deadline, clock.now() + handoff)
        while clock.now() < end and not stopping():
            try:
                seen = store.events(service=service, after_id=after_id,
                                    kinds=[ev.ROLLBACK_STARTED, ev.ROLLED_BACK])
            except ShiftoverError:
                break
            if seen:
                handed_over = True
                break
            clock.sleep(0.1)
        if handed_over and router is None:
            # no router to check ourselves (the plan's variables are not set):
            # the live run's own confirmation, from the journal
            while clock.now() < deadline and not stopping():
                try:
                    done = store.events(service=service, after_id=after_id, kinds=[ev.ROLLED_BACK])
                except ShiftoverError:
                    break
                if done:
                    return RollbackResult(True, "live run", elapsed(),
                                          "the live run rolled back; 0% confirmed by its router",
                                          True, holder)
                clock.sleep(0.2)
            return RollbackResult(False, "none", elapsed(),
                                  f"the live run ({holder}) started the rollback but has not "
                                  "confirmed 0% yet; export the plan's variables so that this "
                                  "command can check the router itself", journal_ok, holder)
    if router is None:
        return RollbackResult(False, "none", elapsed(),
                              "no live run took the request, and the plan cannot be loaded to "
                              "reach the router", journal_ok, holder)

    # 3. through the router alone (when the live run took over, this only confirms:
    # both push toward 0%, and applying it is idempotent)
    while True:
        last_error = drive_to_zero(router, clock, deadline=deadline, stopping=stopping)
        if last_error is None and holder is not None and not handed_over:
            # the silent run's last write may still land after ours: watch, rewrite
            settle_end = clock.now() + SETTLE
            while last_error is None and clock.now() < settle_end:
                clock.sleep(0.1)
                last_error = try_zero(router)
        if last_error is None:
            break
        if clock.now() >= deadline or stopping():
            why = "stopped" if stopping() else f"not confirmed within {timeout:g}s"
            return RollbackResult(False, "none", elapsed(), redact(f"{why}: {last_error}"),
                                  journal_ok, holder)

    seconds = elapsed()
    how = "live run" if handed_over else "router"
    journalled = False
    if store is not None and not handed_over:
        journalled = _record(store, service, clock, actor, reason,
                             rolled_back_data(router, seconds), holder)
    elif handed_over:
        journalled = True
    text = ("the live run rolled back; 0% confirmed by the router" if handed_over else
            "0% confirmed by the router" + (f" (the live {holder} did not take it over within "
                                             f"{handoff:g}s)" if holder else ""))
    return RollbackResult(True, how, seconds, text, journalled, holder)


def tail_seconds(router: Any) -> float:
    """How long clients may still reach the new environment after the router confirms
    0%: DNS resolvers keep the old answer for the records' TTL (Route53); 0 for routers
    that switch at once. Routers offer it through an optional ``tail_seconds()``; a
    lockstep group's is its longest member's. Never raises (asked after the fact)."""
    tail = 0.0
    for m in getattr(router, "members", None) or [router]:
        fn = getattr(m, "tail_seconds", None)
        if fn is None:
            continue
        try:
            tail = max(tail, float(fn()))
        except Exception:
            pass
    return tail


def rolled_back_data(router: Any, seconds: float, **extra: Any) -> dict[str, Any]:
    """The ``rolled_back`` event: ``seconds`` until the router confirmed 0%, and where
    DNS has a tail, ``tail_seconds`` and ``drained_seconds`` (confirmed + TTL: when the
    last resolver's cached answer has expired)."""
    data: dict[str, Any] = {"seconds": seconds, "confirmed_by": "router", **extra}
    tail = tail_seconds(router)
    if tail:
        data.update(tail_seconds=tail, drained_seconds=round(seconds + tail, 3))
    return data


def _record(store: Store, service: str, clock: Clock, actor: str, reason: str,
            done: dict[str, Any], holder: str | None) -> bool:
    why = f"operator requested rollback{': ' + reason if reason else ''}"
    who = {"pid": os.getpid(), "host": socket.gethostname()}  # whose writes these were
    try:
        for kind, data in (
            (ev.ROLLBACK_STARTED, {"reason": why, "gates": [], "direct": True,
                                   "unanswered_run": holder, **who}),
            (ev.WEIGHT_CONFIRMED, weight_data(ZERO, step_index=-1, verified=True, **who)),
            (ev.ROLLED_BACK, {**done, "reason": why, **who}),
        ):
            store.append(service=service, run_id="operator", kind=kind, at=clock.now(),
                         data=data, actor=actor)
    except ShiftoverError:
        return False
    return True
