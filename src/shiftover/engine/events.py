"""Journal event kinds, and the fold that turns a service's events into its state.

Events are the truth; ``RunState`` is derived. The fold is mechanical: every rule
(when to advance, when a failure counts, when bake restarts) lives in
``decide.py``, which says so by emitting the events folded here.

A *campaign* is one attempt to move a service from its current weight to 100%.
It ends with ``promoted`` or ``rolled_back``; the next ``run`` starts a new one.
A run that dies mid-campaign leaves it open: the next ``run`` resumes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from shiftover.types import Weights

# engine events
RUN_STARTED = "run_started"            # {run_id, pid, host, resumed: bool, plan: {...}}
RUN_STOPPED = "run_stopped"            # {reason, exit_code}
WEIGHT_INTENDED = "weight_intended"    # {percent, reason, step_index}
WEIGHT_CONFIRMED = "weight_confirmed"  # {percent, step_index}
WEIGHT_FAILED = "weight_failed"        # {percent, error}
RECONCILED = "reconciled"              # {journal_percent, router_percent, step_index}
CHECK = "check"                        # {verdict, results: [...], consecutive_failures}
BAKE_STARTED = "bake_started"          # {step_index, percent, reason}
STEP_ADVANCED = "step_advanced"        # {from_percent, to_percent, step_index}
APPROVAL_WAITING = "approval_waiting"  # {step}
ROLLBACK_STARTED = "rollback_started"  # {reason, gates: [...]}
ROLLED_BACK = "rolled_back"            # {seconds, reason}
PROMOTED = "promoted"                  # {percent: 100}
ENGINE_PAUSED = "paused"               # also an operator event (actor set)
ROUTER_ERROR = "router_error"          # {error}
# operator events (actor = user@host)
PAUSED = "paused"                      # {reason}
RESUMED = "resumed"                    # {}
APPROVED = "approved"                  # {step}
ROLLBACK_REQUESTED = "rollback_requested"  # {reason}

TERMINAL = frozenset({PROMOTED, ROLLED_BACK})
OPERATOR_KINDS = frozenset({PAUSED, RESUMED, APPROVED, ROLLBACK_REQUESTED})


class EventLike:  # structural: shiftover.store.Event satisfies it
    kind: str
    at: float
    data: dict[str, Any]
    actor: str | None
    id: int


@dataclass(frozen=True)
class RunState:
    """A service's state, folded from its journal."""

    started: bool = False                  # a campaign is open
    step_index: int = -1                   # index into plan.steps of the confirmed step (-1: before the first)
    confirmed: Weights | None = None       # last weight the router confirmed
    intended: Weights | None = None        # last weight we meant to set (maybe unconfirmed)
    bake_since: float | None = None        # when the current bake started
    consecutive_failures: int = 0
    paused: bool = False
    pause_reason: str = ""
    approved: frozenset[float] = frozenset()
    waiting_approval: float | None = None
    rollback_requested: bool = False
    rolling_back: bool = False
    rollback_reason: str = ""
    rollback_started_at: float | None = None
    outcome: str | None = None             # of the last campaign: promoted | rolled_back
    final: Weights | None = None           # the last campaign's last confirmed weight
    last_check: dict[str, Any] = field(default_factory=dict)
    last_event_id: int = 0

    @property
    def ended(self) -> bool:
        return self.outcome is not None and not self.started


def fold(state: RunState, events: Iterable[Any]) -> RunState:
    """Apply events (ascending id) to ``state``."""
    s = state
    for e in events:
        s = _apply(s, e.kind, e.at, e.data or {})
        s = replace(s, last_event_id=e.id)
    return s


def _pct(data: dict[str, Any], key: str = "percent") -> Weights:
    return Weights(str(data[key]))


def _apply(s: RunState, kind: str, at: float, d: dict[str, Any]) -> RunState:
    if kind in TERMINAL:
        # the campaign is over; the next one starts from the router's real weight
        # (reconciled, never assumed), with only what operators said since then
        return RunState(outcome=kind, final=s.confirmed)
    if kind == RUN_STARTED:
        if not s.started:  # a new campaign: keeps approvals/pauses given in between
            return replace(s, started=True)
        return replace(s, bake_since=None, consecutive_failures=0)
    if kind == WEIGHT_INTENDED:
        return replace(s, intended=_pct(d))
    if kind == WEIGHT_CONFIRMED:
        # a confirmed weight starts (or restarts) its step's bake
        return replace(s, confirmed=_pct(d), step_index=int(d.get("step_index", s.step_index)),
                       bake_since=at, waiting_approval=None)
    if kind == RECONCILED:
        return replace(s, confirmed=_pct(d, "router_percent"), intended=None,
                       step_index=int(d.get("step_index", s.step_index)))
    if kind == BAKE_STARTED:
        return replace(s, bake_since=at)
    if kind == CHECK:
        return replace(s, consecutive_failures=int(d.get("consecutive_failures", 0)), last_check=d)
    if kind == APPROVAL_WAITING:
        return replace(s, waiting_approval=float(d["step"]))
    if kind == APPROVED:
        return replace(s, approved=s.approved | {float(d["step"])})
    if kind == PAUSED:
        return replace(s, paused=True, pause_reason=str(d.get("reason", "")))
    if kind == RESUMED:
        return replace(s, paused=False, pause_reason="", consecutive_failures=0)
    if kind == ROLLBACK_REQUESTED:
        return replace(s, rollback_requested=True, rollback_reason=str(d.get("reason", "")))
    if kind == ROLLBACK_STARTED:
        return replace(s, rolling_back=True, rollback_reason=str(d.get("reason", "")),
                       rollback_started_at=at)
    return s
