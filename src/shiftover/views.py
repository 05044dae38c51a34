"""What people and scripts see: Rich renderables for the live view, status and
history, and the JSON shapes for ``--json``. No decisions are made here.

Three rules hold everywhere in this module:

- **Say what is true.** ``status`` reports the split the router serves *now*
  (read by the command, not remembered by the journal), the journal's last
  confirmed split beside it, and the drift between them. A run is "running"
  only while its lease is live by the database's clock *and*, when it runs on
  this host, its process exists: a run killed with ``kill -9`` leaves a lease
  that is live for up to a TTL, and nobody is watching the traffic meanwhile.
- **One model, two renderings.** ``status`` and ``status --json`` are rendered
  from one dict (:func:`status_report`), so they cannot disagree.
- **Survive any journal.** Events written by older or newer versions, or
  truncated ones, are described with whatever they carry: every field is read
  with a default, and an event that still cannot be described is shown as its
  kind and raw data, never a traceback.

Hints are commands a user can paste: they name the plan path as it was typed
(and ``--state`` when it was given), quoted for a POSIX shell.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shiftover.engine import events as ev
from shiftover.engine.decide import Decision, Observation
from shiftover.engine.events import HookRecord, RunState, current_step, pending_undos, weight_data
from shiftover.plan import Plan, PlanOutline
from shiftover.store import Event
from shiftover.store.holders import RunHolder
from shiftover.types import GateResult, Verdict, Weights

VERDICT_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}
Redact = Callable[[str], str]


def _same(text: str) -> str:
    return text


# --- small, total formatters ---------------------------------------------------------


def when(t: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(t)).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--"


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _num(v: Any, fmt: str = "g") -> str:
    """A number as text, or the value itself when it is not one."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | float):
        return format(v, fmt)
    return str(v)


def _pct(d: Mapping[str, Any], key: str = "percent") -> str:
    w = ev.weight_or_none(dict(d), key)
    if w is not None:
        return str(w)
    return "?%" if d.get(key) is None else f"{_num(d.get(key))}%"


def weight_json(w: Weights | None) -> dict[str, Any] | None:
    return None if w is None else weight_data(w)


# --- events ----------------------------------------------------------------------------


def event_dict(e: Event) -> dict[str, Any]:
    """An event as ``--json`` prints it."""
    return {"id": e.id, "at": round(e.at, 3), "service": e.service, "run_id": e.run_id,
            "kind": e.kind, "actor": e.actor, "data": e.data}


def event_json(e: Event) -> str:
    return json.dumps(event_dict(e), default=str)


def describe_event(e: Any) -> str:
    """One line for an event, whatever shape its data has."""
    kind = str(getattr(e, "kind", "?"))
    data = getattr(e, "data", None)
    d: dict[str, Any] = data if isinstance(data, dict) else {}
    actor = getattr(e, "actor", None)
    try:
        return _describe(kind, d, f" by {actor}" if actor else "")
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
        return f"{kind} {json.dumps(d, default=str)}"


def _reason(d: Mapping[str, Any], key: str = "reason") -> str:
    r = d.get(key)
    return f": {r}" if r else ""


def _describe(kind: str, d: dict[str, Any], who: str) -> str:
    if kind == ev.CHECK:
        results = [r for r in d.get("results") or [] if isinstance(r, dict)]
        bad = [r for r in results if r.get("verdict") != "pass"]
        if not bad and d.get("verdict", "pass") == "pass":
            return f"check pass ({len(results)} gates)"
        parts = [f"{r.get('gate', '?')}: {r.get('reason', r.get('verdict', '?'))}" for r in bad]
        if d.get("router_error"):
            parts.insert(0, f"router unreadable: {d['router_error']}")
        return f"check {d.get('verdict', '?')}: " + "; ".join(parts)
    if kind == ev.WEIGHT_INTENDED:
        return f"weight intended {_pct(d)} ({d.get('reason') or 'step'})"
    if kind == ev.WEIGHT_CONFIRMED:
        how = "router verified" if d.get("verified", True) is not False else "router cannot tell"
        return f"weight confirmed {_pct(d)} ({how})"
    if kind == ev.WEIGHT_FAILED:
        return f"weight {_pct(d)} failed{_reason(d, 'error')}"
    if kind == ev.STEP_ADVANCED:
        to = _pct(d, "to_percent")
        return f"step {_pct(d, 'from_percent')} -> {to}"
    if kind == ev.ROLLBACK_STARTED:
        stuck = " (stuck)" if d.get("stuck") else ""
        return f"ROLLBACK{stuck}{_reason(d) or ': (no reason recorded)'}"
    if kind == ev.ROLLED_BACK:
        secs = d.get("seconds")
        took = f" in {secs:.2f}s" if isinstance(secs, int | float) else ""
        return f"rolled back to 0%{took}{_reason(d)}"
    if kind == ev.RECONCILED:
        was = "nothing" if d.get("journal_percent") is None and d.get("journal_exact") is None \
            else _pct(d, "journal_percent")
        return f"reconciled with the router: {_pct(d, 'router_percent')} (journal had {was})"
    if kind == ev.APPROVAL_WAITING:
        return f"waiting for approval of the {_num(d.get('step'))}% step"
    if kind == ev.APPROVED:
        return f"{_num(d.get('step'))}% step approved{who}{_reason(d)}"
    if kind == ev.PAUSED:
        if who:
            return f"paused{who}{_reason(d)}"
        word = "STUCK, paused by the run" if d.get("stuck") else "paused by the run"
        return f"{word}{_reason(d)}"
    if kind in (ev.RESUMED, ev.ROLLBACK_REQUESTED):
        return f"{kind.replace('_', ' ')}{who}{_reason(d)}"
    if kind == ev.RUN_STARTED:
        where = f" (pid {d['pid']} on {d['host']})" if d.get("pid") and d.get("host") else ""
        return f"run {d.get('run_id', '?')} started{where}{' resuming' if d.get('resumed') else ''}"
    if kind == ev.RUN_STOPPED:
        router = d.get("router")
        seen = f"; router at {_pct(router)}" if isinstance(router, dict) else ""
        return f"run stopped: {d.get('outcome', '?')}{_reason(d).replace(': ', ' — ', 1)}{seen}"
    if kind == ev.BAKE_STARTED:
        return f"bake started at {_pct(d)} ({d.get('reason') or 'no reason recorded'})"
    if kind == ev.PROMOTED:
        return "PROMOTED: 100% on the new environment"
    if kind == ev.ROUTER_ERROR:
        return f"router unreadable{_reason(d, 'error')}"
    if kind == ev.ROUTER_READABLE:
        return "router readable again"
    if kind == ev.PLAN_CHANGED:
        frm = d.get("resume_from_percent")
        at = "" if frm is None else f": resuming from the step at or below {_num(frm)}%"
        return f"plan changed since the last run{at}"
    if kind == ev.HOOK_STARTED:
        undo = "undo of hook" if d.get("phase") == "undo" else "hook"
        again = f" (attempt {d['attempt']})" if _int(d.get("attempt")) > 1 else ""
        return f"{undo} {d.get('hook', '?')} at {d.get('at', '?')} started{again}"
    if kind == ev.HOOK_FINISHED:
        undo = "undo of hook" if d.get("phase") == "undo" else "hook"
        word = "done" if d.get("ok") else "FAILED"
        return f"{undo} {d.get('hook', '?')} at {d.get('at', '?')} {word}: {d.get('summary', '?')}"
    if kind == ev.HOOK_ACKED:
        undo = "undo of hook" if d.get("phase") == "undo" else "hook"
        said = "did its work" if d.get("done") else "did not do its work: it runs again"
        return f"{undo} {d.get('hook', '?')} at {d.get('at', '?')}: {said}{who}{_reason(d)}"
    if kind == ev.NOTIFY_FAILED:
        gave_up = ", gave up" if d.get("gave_up") else ""
        n = _int(d.get("attempts"))
        tries = f", {n} attempt{'s' if n != 1 else ''}" if n else ""
        return (f"notification to {d.get('target', '?')} failed ({d.get('event', '?')}{tries}"
                f"{gave_up}){_reason(d, 'error')}")
    if kind == ev.JOURNAL_GAP:
        secs = d.get("seconds")
        took = f" for {secs:.1f}s" if isinstance(secs, int | float) else ""
        return (f"journal was failing{took} ({_num(d.get('checks', '?'))} checks meanwhile, "
                f"{_num(d.get('consecutive_failures', 0))} consecutive failures){_reason(d, 'error')}")
    return f"{kind} {json.dumps(d, default=str)}"


def events_table(events: Iterable[Event], title: str = "recent events", *,
                 show_run: bool = False) -> Table:
    t = Table(title=title, show_edge=False)
    t.add_column("time")
    if show_run:
        t.add_column("run")
    t.add_column("event", overflow="fold")
    for e in events:
        style = "bold red" if e.kind in (ev.ROLLBACK_STARTED, ev.ROLLED_BACK) else (
            "bold green" if e.kind == ev.PROMOTED else "")
        cells: list[Any] = [when(e.at)]
        if show_run:
            cells.append(Text(str(e.run_id)))
        cells.append(Text(describe_event(e), style=style))
        t.add_row(*cells)
    return t


# --- the plan ----------------------------------------------------------------------------


def mapped_steps(plan: Plan) -> list[str]:
    """One line per step the router cannot set exactly: what it will set instead."""
    lines = []
    for s, w in zip(plan.steps, plan.step_weights, strict=True):
        if w.new_percent != Fraction(str(s)):
            pairs = ", ".join(f"{o}/{n}" for o, n in (w.to_backend(m) for m in plan.scales))
            lines.append(f"step {s:g}% is set as {w} (weights {pairs}): "
                         f"{plan.scale_label} cannot express {s:g}% exactly")
    return lines


def steps_json(plan: Plan) -> list[dict[str, Any]]:
    """Each step as every router sets it: ``backend_weights`` of the first router (the
    only one, usually) and ``members`` with each router's own integers."""
    out = []
    for s, w in zip(plan.steps, plan.step_weights, strict=True):
        members = []
        for m in plan.members:
            old, new = w.to_backend(m.SCALE)
            members.append({"type": m.type, "old": old, "new": new})
        out.append({"step": s, "percent": float(w.new_percent), "exact": w.exact,
                    "backend_weights": {"old": members[0]["old"], "new": members[0]["new"]},
                    "members": members,
                    "mapped": w.new_percent != Fraction(str(s))})
    return out


def steps_table(plan: Plan) -> Table:
    """How the router(s) will set each step."""
    t = Table(title="steps as the router sets them", show_edge=False)
    t.add_column("step")
    t.add_column("router sets")
    for m in plan.members:
        t.add_column(f"{m.type} old/new (0-{m.SCALE})" if len(plan.members) > 1
                     else f"weights old/new (0-{m.SCALE})")
    t.add_column("approval")
    for row in steps_json(plan):
        sets = str(Weights(Fraction(row["exact"])))
        t.add_row(f"{row['step']:g}%", Text(sets + ("  (mapped down)" if row["mapped"] else ""),
                                           style="yellow" if row["mapped"] else ""),
                  *(f"{m['old']}/{m['new']}" for m in row["members"]),
                  "yes" if row["step"] in plan.approvals else "")
    return t


def step_of(plan: Plan | PlanOutline, state: RunState) -> int:
    """The step the confirmed split is at (derived, never a stored index: -1 before the first)."""
    return current_step(plan.step_weights, state.confirmed)


def steps_line(plan: Plan | PlanOutline, state: RunState) -> Text:
    """``1% ✓  2% ✓  5% →  10% ·  50% (approval) ·  100% ·``: done, current, to come."""
    t = Text("steps  ")
    index = step_of(plan, state)
    for i, s in enumerate(plan.steps):
        done, here = i < index, i == index
        mark = "✓" if done else ("→" if here else "·")
        extra = " (approval)" if s in plan.approvals else ""
        t.append(f"{s:g}%{extra} {mark}", style="bold" if here else ("green" if done else "dim"))
        t.append("  ")
    return t


# --- the live view ---------------------------------------------------------------------


def weight_bar(w: Weights | None, width: int = 40) -> Text:
    if w is None:
        return Text("router unreadable", style="bold red")
    new = round(float(w.new_percent) / 100 * width)
    t = Text()
    t.append("old " + "█" * (width - new), style="blue")
    t.append("▒" * new + " new", style="magenta")
    t.append(f"  {float(w.old_percent):.4g}% / {float(w.new_percent):.4g}%")
    return t


def gates_table(results: Sequence[GateResult] | Sequence[dict[str, Any]],
                redact: Redact = _same) -> Table:
    t = Table(title="normal state", show_edge=False)
    for c in ("gate", "value", "threshold", "samples", "verdict", "reason"):
        t.add_column(c, overflow="fold")
    for r in results:
        d = r.to_dict() if isinstance(r, GateResult) else r
        if not isinstance(d, dict):
            continue
        v = d.get("value")
        value = "-" if v is None else (f"{v:.4g}" if isinstance(v, int | float) else str(v))
        verdict = str(d.get("verdict", "?"))
        samples = d.get("samples")
        # Text, not str: a reason quoting PromQL (``x[1m]``) is not Rich markup
        t.add_row(Text(redact(str(d.get("gate", "?")))), Text(value),
                  Text(redact(str(d.get("threshold") or "-"))),
                  "-" if samples is None else str(samples),
                  Text(verdict.upper() + (" (error)" if d.get("error") else ""),
                       style=VERDICT_STYLE.get(verdict, "")),
                  Text(redact(str(d.get("reason", "")))))
    return t


def live_view(plan: Plan, state: RunState, obs: Observation | None, decision: Decision | None,
              recent: Sequence[Event], *, redact: Redact = _same,
              hint: str | None = None) -> RenderableType:
    """The panel ``shiftover run`` redraws every tick. ``redact`` masks the plan's
    secrets in everything that did not come from the (already redacted) journal."""
    header = Text()
    header.append(f"{plan.service}  ", style="bold")
    if decision is not None:
        header.append((decision.status or decision.action.value).replace("_", " "),
                      style="bold cyan")
        header.append(f"  {redact(decision.reason)}")
    parts: list[RenderableType] = [header]
    if hint:
        parts.append(Text(f"next: {hint}", style="bold yellow"))
    weights = obs.weights if obs else state.confirmed
    bar = weight_bar(weights)
    if obs is not None and obs.weights is None and obs.router_error:
        bar.append(f": {redact(obs.router_error)}")
    results = list(obs.results) if obs and obs.results else state.last_check.get("results") or []
    shown = [e for e in recent if e.kind != ev.CHECK or e.data.get("verdict") != "pass"][-8:]
    parts += [bar, steps_line(plan, state), gates_table(results, redact), events_table(shown)]
    return Panel(Group(*parts), title="shiftover run", border_style="cyan")


def decision_hint(decision: Decision | None, state: RunState, cmd: Commands) -> str | None:
    """The command an operator is expected to type now, if any (from the journal's
    state, which does not flicker between checks as a tick's decision can)."""
    if state.rolling_back or state.rollback_requested or (
            decision is not None and decision.status in ("rolling_back", "rolled_back")):
        return None
    unknown = awaiting_ack(state)
    if unknown is not None:
        return ack_command(unknown, cmd)
    if state.paused:
        return cmd("resume")
    waiting = awaiting_approval(state)
    if waiting is not None:
        return cmd("approve", "--step", f"{waiting:g}")
    return None


def awaiting_ack(state: RunState, *, live: bool = True) -> HookRecord | None:
    """A hook (or undo) whose result nobody knows and that may not simply run again:
    the run holds until an operator says what happened. With no live run, a hook the
    journal shows running is one whose run died: nobody knows either."""
    return next((h for h in state.hooks if not h.idempotent and (
        h.status == "unknown" or (h.status == "running" and not live))), None)


def ack_command(h: HookRecord, cmd: Commands, *, done: bool = True) -> str:
    return cmd("ack", "--hook", h.hook, "--at", h.at, *(("--undo",) if h.phase == "undo" else ()),
               "--done" if done else "--not-done")


def awaiting_approval(state: RunState) -> float | None:
    """The step that waits for an approval nobody has given yet (the journal keeps
    ``waiting_approval`` until the step is reached, approved or not)."""
    w = state.waiting_approval
    return None if w is None or w in state.approved else w


# --- paste-ready commands ------------------------------------------------------------------


@dataclass(frozen=True)
class Commands:
    """Builds commands to paste: ``shiftover VERB PLAN [--env NAME] ARGS [--state URL]``."""

    plan: str
    state: str | None = None
    program: str = "shiftover"
    env: str | None = None

    def __call__(self, verb: str, *args: str) -> str:
        parts = [verb, self.plan, *(("--env", self.env) if self.env else ()), *args]
        if self.state:
            parts += ["--state", self.state]
        return " ".join([self.program, shlex.join(parts)])


# --- status ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterReading:
    """What ``status`` saw at the router: a split, or why there is none."""

    weights: Weights | None = None
    error: str | None = None       # why it could not be read (redacted)
    target: str | None = None      # the router's own one-line description (redacted)

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.weights is not None, **(weight_json(self.weights) or
                                                      {"percent": None, "exact": None}),
                "error": self.error, "target": self.target}


@dataclass(frozen=True)
class Limits:
    failure_limit: int
    error_limit: int | None
    inconclusive_limit: int | None
    bake: float | None
    source: str  # "plan", "journal" (the last run's plan), "defaults"


def _last(events: Sequence[Any], kinds: Iterable[str]) -> Any:
    wanted = set(kinds)
    for e in reversed(events):
        if e.kind in wanted:
            return e
    return None


def _status_word(state: RunState, running: bool, router: Weights | None) -> str:
    if not state.started:
        return {ev.PROMOTED: "promoted", ev.ROLLED_BACK: "rolled_back"}.get(
            state.outcome or "", "not_started")
    if state.paused:
        return "stuck" if state.stuck else "paused"
    if not running or awaiting_ack(state, live=running) is not None:
        return "held"
    if state.rolling_back or state.rollback_requested:
        return "rolling_back"
    if state.router_error is not None:
        return "holding"
    if router is not None and state.confirmed is not None and router != state.confirmed:
        return "reconciling"
    verdict = state.last_check.get("verdict")
    if verdict == "fail":
        return "failing"
    if awaiting_approval(state) is not None:
        return "waiting_approval"
    if state.confirmed is None or state.confirmed.new_percent == 0:
        return "starting"
    if verdict == "inconclusive":
        return "holding"
    return "baking"


def _check_reason(check: Mapping[str, Any], verdict: str) -> str:
    results = [r for r in check.get("results") or [] if isinstance(r, dict)]
    parts = [f"{r.get('gate', '?')}: {r.get('reason', '')}" for r in results
             if r.get("verdict") == verdict]
    if check.get("router_error"):
        parts.insert(0, f"router unreadable: {check['router_error']}")
    return "; ".join(parts)


def status_report(plan: Plan | PlanOutline, state: RunState, events: Sequence[Any], *,
                  router: RouterReading | None, run: RunHolder | None, limits: Limits,
                  now: float, cmd: Commands, journal: Mapping[str, Any]) -> dict[str, Any]:
    """Everything ``status`` says, as one JSON-ready dict (the text view renders it)."""
    # a run of another service on the same router target (two plans, one backend)
    other = run is not None and run.service not in (None, plan.journal_key)
    running = run is not None and run.running and not other
    seen = router.weights if router is not None else None
    journal_w = state.confirmed if state.started else state.final
    word = _status_word(state, running, seen)
    index = current_step(plan.step_weights, journal_w)
    step = plan.steps[index] if 0 <= index < len(plan.steps) else None
    last_run = state.last_run or {}
    last_stop = state.last_stop or {}

    # what is on the new environment, as best known: the router now, else the journal
    on_new = seen if seen is not None else journal_w
    watched = run is not None and run.running  # by a run of this service, or another's
    unwatched = (not watched and on_new is not None and on_new.new_percent > 0
                 and not (word == "promoted" and on_new.new_percent == 100))
    drift = None
    if seen is not None and journal_w is not None and seen != journal_w:
        who = "the run" if running else "the next `run`"
        if not state.started:
            then = ""
        elif seen > journal_w:
            then = f": above it, so {who} sets {journal_w} again before anything else"
        elif seen.new_percent == 0:
            then = f": drained outside shiftover, so {who} accepts 0% and pauses"
        else:
            then = f": below it, so {who} accepts it and bakes that step again"
        drift = {"router": weight_json(seen), "journal": weight_json(journal_w),
                 "text": f"the router serves {seen}, the journal's last confirmed split is "
                         f"{journal_w}{then}"}
    elif seen is not None and journal_w is None and seen.new_percent > 0:
        drift = {"router": weight_json(seen), "journal": None,
                 "text": f"the router serves {seen} and the journal has no confirmed split"}

    # why, in words
    detail = ""
    if word == "not_started":
        detail = "no campaign in the journal yet"
    elif word == "promoted":
        e = _last(events, [ev.PROMOTED])
        detail = "the last campaign promoted: 100% on the new environment" + (
            f" ({when(e.at)})" if e is not None else "")
    elif word == "rolled_back":
        e = _last(events, [ev.ROLLED_BACK])
        why = e.data.get("reason") if e is not None and isinstance(e.data, dict) else None
        detail = "the last campaign rolled back" + (f": {why}" if why else "")
    elif word in ("paused", "stuck"):
        e = _last(events, [ev.PAUSED])
        by = f" by {e.actor}" if e is not None and e.actor else " by the run" if e else ""
        why = state.pause_reason.removeprefix("stuck: ") if word == "stuck" else state.pause_reason
        detail = f"paused{by}" + (f": {why}" if why else "")
    elif word == "held":
        if state.rolling_back or state.rollback_requested:
            detail = "a rollback was started and the router has not confirmed 0%"
        elif last_stop:
            detail = (f"the last run {last_run.get('run_id', '?')} stopped "
                      f"({last_stop.get('outcome', '?')}): {last_stop.get('reason', '')}")
        elif run is not None and run.lease_live and run.pid_alive is False:
            detail = (f"the last run {run.run_id or '?'} (pid {run.pid} on {run.host}) is gone "
                      "without stopping (killed or crashed)")
        elif last_run:
            detail = (f"the last run {last_run.get('run_id', '?')} ended without stopping "
                      "cleanly (killed or crashed)")
        else:
            detail = "no run is watching this campaign"
    elif word == "rolling_back":
        detail = state.rollback_reason or "an operator requested it"
    elif word == "holding":
        if state.router_error is not None:
            detail = f"router unreadable: {state.router_error}"
        else:
            detail = "no verdict: " + (_check_reason(state.last_check, "inconclusive") or "?")
    elif word == "failing":
        detail = (f"failed check {state.consecutive_failures}/{limits.failure_limit}: "
                  + _check_reason(state.last_check, "fail"))
    elif word == "reconciling":
        detail = str(drift["text"]) if drift else "reconciling with the router"
    elif word == "waiting_approval":
        detail = f"the {state.waiting_approval:g}% step waits for an approval"
    elif word == "starting":
        detail = "checking the normal state before the first step"
    elif word == "baking":
        since = state.bake_since
        if since is not None and limits.bake is not None:
            detail = f"baking {journal_w}: {max(0.0, now - since):.0f}s of {limits.bake:g}s"
        else:
            detail = f"baking {journal_w}"

    # hooks: what ran, what runs, what waits for an operator or an undo
    unknown = awaiting_ack(state, live=running)
    if unknown is not None and word not in ("rolling_back",):
        what = "the undo of hook" if unknown.phase == "undo" else "hook"
        detail = (f"{what} {unknown.hook} at {unknown.at}: its result is unknown (a run stopped "
                  "while it ran) and it is not idempotent: check whether it did its work, then "
                  "say so" + ("" if running else f"; {detail}" if detail else ""))
    undo_left = pending_undos(state) if not state.started or state.rolling_back else []

    # what to type next (every one of these works when pasted)
    hints: list[str] = []
    if unknown is not None:
        hints += [ack_command(unknown, cmd), ack_command(unknown, cmd, done=False)]
    if undo_left and not running and not (state.started and state.rolling_back):
        hints.append(cmd("rollback"))
    # a lease a new `run` would be refused by: a dead run's, or another service's run
    blocked = run is not None and run.lease_live and not running
    if word == "not_started" and not running:
        hints += [cmd("validate")] + ([] if blocked else [cmd("run")])
    if state.started and (state.rolling_back or state.rollback_requested) and not running:
        hints.append(cmd("rollback"))
    if awaiting_approval(state) is not None:
        hints.append(cmd("approve", "--step", f"{awaiting_approval(state):g}"))
    if word in ("paused", "stuck"):
        hints.append(cmd("resume"))
    if state.started and not running and not blocked:
        hints.append(cmd("run"))
    if running and word not in ("paused", "stuck", "rolling_back"):
        hints.append(cmd("pause"))
    if ((running and word != "rolling_back") or unwatched
            or (drift is not None and on_new is not None and on_new.new_percent > 0)) \
            and cmd("rollback") not in hints:
        hints.append(cmd("rollback"))

    run_json = None
    if run is not None:
        run_json = run.to_dict()
    elif last_run:
        run_json = {"holder": None, "service": plan.journal_key, "run_id": last_run.get("run_id"),
                    "pid": last_run.get("pid"), "host": last_run.get("host"),
                    "lease_live": False, "lease_expires_in": None, "pid_alive": None,
                    "running": False}

    last_event = events[-1] if events else None
    check = state.last_check or None
    raw = check.get("results") if check else None
    results = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
    return {
        "service": plan.service,
        "environment": plan.environment,
        "status": word,
        "status_detail": detail,
        "running": running,
        "run": run_json,
        "blocked_until_lease_expires": round(run.expires_in, 1) if blocked and run else None,
        "unwatched": unwatched,
        "router": None if router is None else router.to_dict(),
        "journal_weight": weight_json(journal_w),
        "drift": drift,
        "step": step,
        "step_index": index,
        "steps": len(plan.steps),
        "waiting_approval": awaiting_approval(state),
        "approved": sorted(state.approved),
        "paused": state.paused,
        "stuck": state.stuck,
        "rolling_back": state.rolling_back or state.rollback_requested,
        "started": state.started,
        "outcome": state.outcome,
        "consecutive": {
            "failures": {"count": state.consecutive_failures, "limit": limits.failure_limit},
            "errors": {"count": state.consecutive_errors, "limit": limits.error_limit},
            "inconclusive": {"count": state.consecutive_inconclusive,
                             "limit": limits.inconclusive_limit},
        },
        "limits_from": limits.source,
        "last_stop": last_stop or None,
        "last_check": None if check is None else {
            "at": next((r.get("at") for r in results if r.get("at") is not None), None),
            "verdict": check.get("verdict"), "results": results},
        "last_event": None if last_event is None else {
            "id": last_event.id, "at": last_event.at, "kind": last_event.kind,
            "text": describe_event(last_event)},
        "journal": dict(journal),
        "hints": hints,
        # with no live run, "running" is a dead run's: nobody knows what it did
        "hooks": [_hook_json(h if running or h.status != "running" else replace(h, status="unknown"))
                  for h in state.hooks if h.campaign == state.campaign or h in undo_left],
        "undo_pending": [{"hook": h.hook, "at": h.at, "campaign": h.campaign} for h in undo_left],
        # kept for scripts written against earlier versions
        "weight": None if journal_w is None else float(journal_w.new_percent),
        "consecutive_failures": state.consecutive_failures,
        "lease_holder": None if run is None or not run.running else run.holder,
    }


def _count(c: Mapping[str, Any]) -> str:
    limit = c.get("limit")
    return f"{c.get('count', 0)}/{'?' if limit is None else limit}"


def _hook_json(h: HookRecord) -> dict[str, Any]:
    return {"hook": h.hook, "at": h.at, "phase": h.phase, "campaign": h.campaign,
            "status": h.status, "attempt": h.attempt, "summary": h.summary,
            "idempotent": h.idempotent}


def status_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The text view's rows, in order: (label, value). Rendered from the same dict as
    ``status --json``."""
    rows: list[tuple[str, str]] = [("service", str(report["service"]))]
    if report.get("environment"):
        rows.append(("environment", str(report["environment"])))
    word = str(report["status"]).replace("_", " ")
    rows.append(("status", f"{word} — {report['status_detail']}" if report["status_detail"]
                 else word))
    run = report.get("run")
    who = "" if not run else (f"run {run.get('run_id') or '?'} (pid {run.get('pid')} on "
                              f"{run.get('host')})")
    other = run is not None and run.get("service") not in (None, report["service"])
    if report["running"] and run:
        rows.append(("running", f"yes: {who}, lease live (expires in "
                                f"{run.get('lease_expires_in'):g}s unless renewed)"))
    elif run and run.get("lease_live") and other and run.get("running"):
        rows.append(("running", f"no; the router target is driven by {who} of service "
                                f"{run.get('service')}: a run of this plan is refused until it "
                                "ends"))
    elif run and run.get("lease_live"):
        of = f" of service {run.get('service')}" if other else ""
        rows.append(("running", f"no: {who}{of} is gone; its lease blocks a new run for "
                                f"{run.get('lease_expires_in'):g}s more"))
    else:
        rows.append(("running", "no"))
    router = report.get("router")
    if router is None:
        rows.append(("router", "not read"))
    elif router["read"]:
        rows.append(("router", f"{Weights(Fraction(router['exact']))} on new, read now from "
                               f"{router['target']}"))
    else:
        rows.append(("router", f"unknown: {router['error']}"))
    jw = report.get("journal_weight")
    step = report.get("step")
    where = "" if step is None else f" (step {step:g}%, {report['step_index'] + 1}/{report['steps']})"
    rows.append(("journal", ("no confirmed split" if jw is None
                             else f"{Weights(Fraction(jw['exact']))} confirmed") + where))
    if report.get("drift"):
        rows.append(("drift", str(report["drift"]["text"])))
    if report["unwatched"]:
        on_new: Mapping[str, Any] | None = router if router is not None and router["read"] else jw
        exact = on_new.get("exact") if on_new is not None else None
        rows.append(("unwatched", f"{Weights(Fraction(str(exact)))} on new, no run"))
    hooks = [h for h in report.get("hooks") or [] if isinstance(h, dict)]
    if hooks:
        rows.append(("hooks", "; ".join(
            f"{'undo of ' if h['phase'] == 'undo' else ''}{h['hook']} at {h['at']}: {h['status']}"
            + (f" (attempt {h['attempt']})" if h.get("attempt", 0) > 1 else "")
            + (f", {h['summary']}" if h.get("summary") and h["status"] != "ok" else "")
            for h in hooks)))
    if report.get("undo_pending"):
        rows.append(("undo left", ", ".join(f"{u['hook']} at {u['at']}"
                                            for u in report["undo_pending"])
                     + " (last first, after 0%)"))
    if report.get("waiting_approval") is not None:
        rows.append(("waiting", f"approval of the {report['waiting_approval']:g}% step"))
    if report.get("approved"):
        rows.append(("approved", ", ".join(f"{a:g}% step" for a in report["approved"])))
    c = report["consecutive"]
    rows.append(("consecutive", f"failures {_count(c['failures'])} · errors {_count(c['errors'])}"
                                f" · inconclusive {_count(c['inconclusive'])}"))
    check = report.get("last_check")
    if check:
        rows.append(("last check", f"{when(check.get('at'))} {check.get('verdict')}"))
    le = report.get("last_event")
    if le:
        rows.append(("last event", f"{when(le['at'])} {le['text']}"))
    journal = report.get("journal") or {}
    if not journal.get("exists", True):
        rows.append(("journal file", f"none yet at {journal.get('where')}"))
    return rows


def status_view(report: Mapping[str, Any]) -> RenderableType:
    """The rows, then the last check's gates. The hints are not in it: they are
    printed after it, one per line and never wrapped (a wrapped command does not
    paste)."""
    t = Table(show_header=False, show_edge=False, box=None, padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    styles = {"unwatched": "bold yellow", "drift": "yellow"}
    for label, value in status_rows(report):
        if label == "status":
            word = str(report["status"])
            colour = {"promoted": "bold green", "rolled_back": "bold red", "failing": "bold red",
                      "rolling_back": "bold red", "stuck": "bold red", "held": "bold yellow",
                      "paused": "bold yellow"}.get(word, "bold cyan")
            text = Text()
            text.append(word.replace("_", " "), style=colour)
            text.append(value[len(word):])
            t.add_row(label, text)
        else:
            t.add_row(label, Text(value, style=styles.get(label, "")))
    parts: list[RenderableType] = [t]
    check = report.get("last_check")
    if check and check.get("results"):
        parts.append(gates_table(check["results"]))
    return Group(*parts)


def verdict_text(v: Verdict) -> Text:
    return Text(v.value.upper(), style=VERDICT_STYLE[v.value])
