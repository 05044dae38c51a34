"""Journal event kinds, and the fold that turns a service's events into its state.

Events are the truth; ``RunState`` is derived. The fold is mechanical: every rule
(when to advance, when a failure counts, when bake restarts) lives in
``decide.py``, which says so by emitting the events folded here.

A *campaign* is one attempt to move a service from its current weight to 100%.
It ends with ``promoted`` or ``rolled_back``; the next ``run`` starts a new one.
A run that dies mid-campaign leaves it open: the next ``run`` resumes it.

Weights cross the journal exactly: every weight event carries ``exact`` (the
percent as a fraction string, ``"125/63"``) next to ``percent`` (a float, for
people and scripts). The fold reads ``exact``; ``percent`` is never read back
(journals written before ``exact`` existed fall back to it).

The step is not stored: it is derived from the confirmed weight and the plan
(:func:`current_step`), so a plan edited between runs can never be indexed with
a stale step number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from shiftover.errors import ShiftoverError
from shiftover.types import Weights

# engine events
RUN_STARTED = "run_started"            # {run_id, pid, host, resumed: bool, plan: {...}, plan_hash,
                                       #  environment: str|None, rehearsal: bool}
RUN_STOPPED = "run_stopped"            # {outcome, exit_code, reason, router_percent, router_exact}
PLAN_CHANGED = "plan_changed"          # {previous_hash, plan_hash, resume_from_percent}
WEIGHT_INTENDED = "weight_intended"    # {percent, exact, reason, step_index}
WEIGHT_CONFIRMED = "weight_confirmed"  # {percent, exact, step_index, verified}
WEIGHT_FAILED = "weight_failed"        # {percent, exact, error}
RECONCILED = "reconciled"              # {journal_percent, router_percent, router_exact, step_index}
CHECK = "check"                        # {verdict, results, consecutive_failures, _errors, _inconclusive}
BAKE_STARTED = "bake_started"          # {step_index, percent, reason}
STEP_ADVANCED = "step_advanced"        # {from_percent, to_percent, step_index}
APPROVAL_WAITING = "approval_waiting"  # {step}
ROLLBACK_STARTED = "rollback_started"  # {reason, gates: [...]}
ROLLED_BACK = "rolled_back"            # {seconds, reason, confirmed_by}
PROMOTED = "promoted"                  # {percent: 100}
ENGINE_PAUSED = "paused"               # also an operator event (actor set); {reason, stuck?}
ROUTER_ERROR = "router_error"          # {error}: journalled when the error changes, not every tick
ROUTER_READABLE = "router_readable"    # {after}: the router answers again
JOURNAL_GAP = "journal_gap"            # {seconds, checks, failures, error}: the journal was down
HOOK_STARTED = "hook_started"          # {hook, at, phase: run|undo, attempt, idempotent, has_undo, every_step}
HOOK_FINISHED = "hook_finished"        # {hook, at, phase, ok, summary, exit_code, status, output, seconds}
NOTIFY_FAILED = "notify_failed"        # {target, event, error, attempts, gave_up}: never fatal
# operator events (actor = user@host)
PAUSED = "paused"                      # {reason}
RESUMED = "resumed"                    # {}
APPROVED = "approved"                  # {step}
ROLLBACK_REQUESTED = "rollback_requested"  # {reason}
HOOK_ACKED = "hook_acked"              # {hook, at, phase, done: bool, reason}: `shiftover ack`

TERMINAL = frozenset({PROMOTED, ROLLED_BACK})
OPERATOR_KINDS = frozenset({PAUSED, RESUMED, APPROVED, ROLLBACK_REQUESTED, HOOK_ACKED})
# what makes a run stop moving up at once: re-read just before every router write
HALTING_KINDS = frozenset({PAUSED, ROLLBACK_REQUESTED, ROLLBACK_STARTED, *TERMINAL})


class EventLike:  # structural: shiftover.store.Event satisfies it
    kind: str
    at: float
    data: dict[str, Any]
    actor: str | None
    id: int


def weight_data(w: Weights, **extra: Any) -> dict[str, Any]:
    """How a weight goes into the journal: exact, plus a float for people."""
    return {"percent": float(w.new_percent), "exact": w.exact, **extra}


def weight_of(data: dict[str, Any], key: str = "percent") -> Weights:
    """The exact weight of an event (``exact`` / ``<prefix>_exact``); old journals: the float."""
    exact_key = "exact" if key == "percent" else key.replace("percent", "exact")
    raw = data.get(exact_key)
    if isinstance(raw, str):
        return Weights.parse(raw)
    return Weights(str(data[key]))


@dataclass(frozen=True)
class HookRecord:
    """One hook at one place of one campaign (``hooks:`` in the plan), folded from
    ``hook_started`` / ``hook_finished`` / ``hook_acked``. ``at`` is where it runs:
    ``start``, ``promoted`` or a step's percent (``"50"``); ``phase`` is ``run`` or
    ``undo``. ``status``: ``running`` (started, no result yet), ``ok``, ``failed``
    (a known failure: non-zero exit, a timeout), or ``unknown`` (a run died while
    it ran, or stopped it: whether it did its work nobody knows)."""

    hook: str
    at: str
    phase: str = "run"
    campaign: int = 0
    attempt: int = 0
    status: str = "running"
    counted: int = 0            # the attempt whose failure a check has counted
    idempotent: bool = False
    has_undo: bool = False
    summary: str = ""
    finished_at: float | None = None
    every_step: bool = False    # runs again each time its step is reached

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.hook, self.at, self.phase, self.campaign)


@dataclass(frozen=True)
class RunState:
    """A service's state, folded from its journal."""

    started: bool = False                  # a campaign is open
    confirmed: Weights | None = None       # last weight the router confirmed (or reconciled)
    carried: bool = False                  # confirmed is the previous campaign's final split
    intended: Weights | None = None        # last weight we meant to set (maybe unconfirmed)
    bake_since: float | None = None        # when the current bake started
    consecutive_failures: int = 0          # checks with a FAIL in a row
    consecutive_errors: int = 0            # checks with a provider error / unreadable router in a row
    consecutive_inconclusive: int = 0      # checks without a verdict in a row (above 0%)
    paused: bool = False
    pause_reason: str = ""
    stuck: bool = False                    # paused because the error/inconclusive limit was reached
    approved: frozenset[float] = frozenset()
    waiting_approval: float | None = None
    rollback_requested: bool = False
    rolling_back: bool = False
    rollback_reason: str = ""
    rollback_started_at: float | None = None
    rollback_confirmed: bool = False       # 0% verified by the router since the rollback started
    router_error: str | None = None        # the router error last journalled; None once readable
    outcome: str | None = None             # of the last campaign: promoted | rolled_back
    final: Weights | None = None           # the last campaign's last confirmed weight
    last_check: dict[str, Any] = field(default_factory=dict)
    plan_hash: str | None = None           # of the last run that started
    last_run: dict[str, Any] = field(default_factory=dict)    # RUN_STARTED data of the last run
    last_stop: dict[str, Any] = field(default_factory=dict)   # its RUN_STOPPED data, if any
    last_event_id: int = 0
    campaign: int = 0                      # campaigns begun in this journal (hooks are per campaign)
    # every hook run and undo still relevant: this campaign's, and a rolled-back
    # campaign's whose undo is not done yet (in the order they first started)
    hooks: tuple[HookRecord, ...] = ()

    @property
    def ended(self) -> bool:
        return self.outcome is not None and not self.started

    def hook(self, hook: str, at: str, phase: str = "run",
             campaign: int | None = None) -> HookRecord | None:
        key = (hook, at, phase, self.campaign if campaign is None else campaign)
        return next((h for h in self.hooks if h.key == key), None)


def current_step(step_weights: Sequence[Weights], weights: Weights | None) -> int:
    """Index of the largest step at or below ``weights`` (-1: below the first, or unknown)."""
    idx = -1
    if weights is None:
        return idx
    for i, s in enumerate(step_weights):
        if s <= weights:
            idx = i
    return idx


def fold(state: RunState, events: Iterable[Any]) -> RunState:
    """Apply events (ascending id) to ``state``. Unknown kinds are ignored, and
    every field read with a default: a journal with gaps still folds."""
    s = state
    for e in events:
        data = e.data if isinstance(e.data, dict) else {}
        try:
            s = _apply(s, e.kind, e.at, data)
        except (TypeError, ValueError, AttributeError, ArithmeticError, ShiftoverError):
            pass  # a malformed event (written by hand?) changes nothing
        s = replace(s, last_event_id=e.id)
    return s


def fold_pairs(state: RunState, pairs: Iterable[tuple[str, dict[str, Any]]],
               at: float) -> RunState:
    """Fold events that could not be journalled (a decision's ``(kind, data)``), so
    a run whose journal is down still follows its own rules."""
    s = state
    for kind, data in pairs:
        s = _apply(s, kind, at, data)
    return s


def _apply(s: RunState, kind: str, at: float, d: dict[str, Any]) -> RunState:
    if kind in TERMINAL:
        # the campaign is over; the next one starts from the router's real weight
        # (reconciled, never assumed), with only what operators said since then
        final = (weight_or_none(d) or s.confirmed) if kind == PROMOTED else s.confirmed
        # a promoted campaign's hooks stay done; a rolled-back one's wait for their undo
        hooks = s.hooks if kind == ROLLED_BACK else ()
        return RunState(outcome=kind, final=final, plan_hash=s.plan_hash, last_run=s.last_run,
                        last_stop=s.last_stop, campaign=s.campaign, hooks=hooks)
    if kind == RUN_STARTED:
        run = {k: d.get(k) for k in ("run_id", "pid", "host", "resumed", "environment",
                                      "rehearsal")}
        s = replace(s, last_run=run, last_stop={}, plan_hash=d.get("plan_hash", s.plan_hash),
                    router_error=None,
                    # a hook that was running when the last run stopped: nobody knows
                    hooks=tuple(replace(h, status="unknown") if h.status == "running" else h
                                for h in s.hooks))
        if not s.started:
            # a new campaign keeps approvals/pauses given in between, and starts from
            # where the last one left the router: a split above that is not accepted
            return replace(s, started=True, confirmed=s.final, carried=s.final is not None,
                           campaign=s.campaign + 1,
                           hooks=tuple(h for h in s.hooks if _undo_pending(s.hooks, h)))
        # a resumed campaign re-bakes from scratch; failure counts carry over (a
        # restart must not wipe the evidence that the new environment is failing)
        return replace(s, bake_since=None)
    if kind == RUN_STOPPED:
        return replace(s, last_stop=dict(d))
    if kind == WEIGHT_INTENDED:
        return replace(s, intended=weight_or_none(d) or s.intended)
    if kind == WEIGHT_CONFIRMED:
        w = weight_or_none(d)
        if w is None:
            return s
        s = _forget_every_step_above(s, w)
        # a confirmed weight starts (or restarts) its step's bake
        return replace(s, confirmed=w, carried=False, bake_since=at, waiting_approval=None,
                       rollback_confirmed=s.rolling_back and w.new_percent == 0
                       and d.get("verified", True) is not False)
    if kind == RECONCILED:
        w = weight_or_none(d, "router_percent")
        if w is None:
            return s
        return replace(_forget_every_step_above(s, w), confirmed=w, carried=False, intended=None)
    if kind == BAKE_STARTED:
        return replace(s, bake_since=at)
    if kind in (HOOK_STARTED, HOOK_FINISHED, HOOK_ACKED):
        return _apply_hook(s, kind, at, d)
    if kind in (CHECK, JOURNAL_GAP):
        counted = {(str(h[0]), str(h[1]), int(h[2])) for h in d.get("hooks_counted") or ()}
        if counted:
            s = replace(s, hooks=tuple(
                replace(h, counted=max(h.counted, h.attempt))
                if (h.hook, h.at, h.attempt) in counted
                and h.phase == "run" and h.campaign == s.campaign else h for h in s.hooks))
    if kind == CHECK:
        return replace(s, consecutive_failures=int(d.get("consecutive_failures", 0)),
                       consecutive_errors=int(d.get("consecutive_errors", 0)),
                       consecutive_inconclusive=int(d.get("consecutive_inconclusive", 0)),
                       last_check=d)
    if kind == JOURNAL_GAP:  # the counts the run kept while the journal was down
        return replace(
            s, consecutive_failures=int(d.get("consecutive_failures", s.consecutive_failures)),
            consecutive_errors=int(d.get("consecutive_errors", s.consecutive_errors)),
            consecutive_inconclusive=int(d.get("consecutive_inconclusive",
                                               s.consecutive_inconclusive)))
    if kind == ROUTER_ERROR:
        return replace(s, router_error=str(d.get("error", "")))
    if kind == ROUTER_READABLE:
        return replace(s, router_error=None)
    if kind == APPROVAL_WAITING:
        return replace(s, waiting_approval=_float(d.get("step")))
    if kind == APPROVED:
        step = _float(d.get("step"))
        return s if step is None else replace(s, approved=s.approved | {step})
    if kind == PAUSED:
        return replace(s, paused=True, pause_reason=str(d.get("reason", "")),
                       stuck=bool(d.get("stuck", False)))
    if kind == RESUMED:
        return replace(s, paused=False, pause_reason="", stuck=False, consecutive_failures=0,
                       consecutive_errors=0, consecutive_inconclusive=0)
    if kind == ROLLBACK_REQUESTED:
        return replace(s, rollback_requested=True, rollback_reason=str(d.get("reason", "")))
    if kind == ROLLBACK_STARTED:
        return replace(s, rolling_back=True, rollback_reason=str(d.get("reason", "")),
                       rollback_started_at=at, rollback_confirmed=False)
    return s


def _forget_every_step_above(s: RunState, w: Weights) -> RunState:
    """An ``every_step`` hook (the smoke tests) runs each time its step is reached: when
    the split goes below a place, its runs there are forgotten (those with an undo to
    do are kept: the undo is owed)."""
    def above(h: HookRecord) -> bool:
        try:
            return h.every_step and not h.has_undo and float(h.at) > float(w.new_percent)
        except ValueError:
            return False
    if not any(above(h) for h in s.hooks):
        return s
    return replace(s, hooks=tuple(h for h in s.hooks if not (above(h) and h.campaign == s.campaign)))


def _apply_hook(s: RunState, kind: str, at: float, d: dict[str, Any]) -> RunState:
    if not isinstance(d.get("hook"), str) or d.get("at") is None:
        return s  # not a hook event anyone could have written: changes nothing
    name, where, phase = d["hook"], str(d["at"]), str(d.get("phase", "run"))
    # an undo belongs to the campaign of the run it undoes (maybe a rolled-back one)
    campaign = int(d.get("campaign", s.campaign))
    old = s.hook(name, where, phase, campaign)
    if kind == HOOK_STARTED:
        new = replace(old or HookRecord(name, where, phase, campaign,
                                        idempotent=bool(d.get("idempotent", False)),
                                        has_undo=bool(d.get("has_undo", False)),
                                        every_step=bool(d.get("every_step", False))),
                      attempt=int(d.get("attempt", (old.attempt if old else 0) + 1)),
                      status="running", finished_at=None)
    elif old is None:
        if kind == HOOK_ACKED and d.get("done") and phase == "undo":
            # an undo done by hand (shiftover could not run it): it is done
            new = HookRecord(name, where, phase, campaign, status="ok", finished_at=at,
                             summary="done by hand, acknowledged by an operator")
            return replace(s, hooks=(*s.hooks, new))
        return s
    elif kind == HOOK_FINISHED:
        # stopped by the run itself (Ctrl-C, max duration, a rollback): not the hook's
        # failure, and maybe half done: as unknown as a crash
        new = replace(old, status="ok" if d.get("ok") else "unknown" if d.get("stopped")
                      else "failed",
                      summary=str(d.get("summary", "")), finished_at=at)
    elif d.get("done"):  # an operator checked: it did its work
        new = replace(old, status="ok", summary="acknowledged done by an operator",
                      finished_at=at, counted=old.attempt)
    else:  # it did not: forget it, it runs again (never counted as a failure)
        return replace(s, hooks=tuple(h for h in s.hooks if h.key != old.key))
    if old is None:
        return replace(s, hooks=(*s.hooks, new))
    return replace(s, hooks=tuple(new if h.key == old.key else h for h in s.hooks))


def _undo_pending(hooks: Sequence[HookRecord], h: HookRecord) -> bool:
    """A hook run whose undo has not been done (or an undo record of such a run)."""
    if not h.has_undo and h.phase == "run":
        return False
    run_key = (h.hook, h.at, "run", h.campaign)
    if not any(r.key == run_key and r.has_undo for r in hooks):
        return False
    undo = next((u for u in hooks if u.key == (h.hook, h.at, "undo", h.campaign)), None)
    return undo is None or undo.status != "ok"


def pending_undos(state: RunState) -> list[HookRecord]:
    """The hook runs whose undo is still to be done, last started first (the order
    undos run in); with their undo record, if one was started, in ``undo_of``."""
    return [h for h in reversed(state.hooks)
            if h.phase == "run" and h.has_undo and _undo_pending(state.hooks, h)]


def weight_or_none(d: dict[str, Any], key: str = "percent") -> Weights | None:
    """:func:`weight_of`, or None for an event whose weight cannot be read."""
    try:
        return weight_of(d, key)
    except (KeyError, ValueError, TypeError, ArithmeticError, ShiftoverError):
        return None


def _float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None
