"""What people and scripts see: Rich renderables for the live view, status and
history, and the JSON shapes for ``--json``. No decisions are made here."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shiftover.engine import events as ev
from shiftover.engine.decide import Decision, Observation
from shiftover.engine.events import RunState, current_step
from shiftover.plan import Plan, PlanOutline
from shiftover.store import Event
from shiftover.types import GateResult, Verdict, Weights

VERDICT_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def when(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def event_json(e: Event) -> str:
    return json.dumps({"id": e.id, "at": round(e.at, 3), "service": e.service, "run_id": e.run_id,
                       "kind": e.kind, "actor": e.actor, "data": e.data}, default=str)


def describe_event(e: Event) -> str:
    d = e.data
    who = f" by {e.actor}" if e.actor else ""
    if e.kind == ev.CHECK:
        bad = [r for r in d.get("results", []) if r["verdict"] != "pass"]
        if not bad:
            return f"check pass ({len(d.get('results', []))} gates)"
        return f"check {d['verdict']}: " + "; ".join(f"{r['gate']}: {r['reason']}" for r in bad)
    if e.kind in (ev.WEIGHT_INTENDED, ev.WEIGHT_CONFIRMED):
        return f"{e.kind.replace('_', ' ')} {d['percent']:g}% ({d.get('reason', 'router verified')})"
    if e.kind == ev.WEIGHT_FAILED:
        return f"weight {d['percent']:g}% failed: {d['error']}"
    if e.kind == ev.STEP_ADVANCED:
        return f"step {d['from_percent']:g}% -> {d['to_percent']:g}%"
    if e.kind == ev.ROLLBACK_STARTED:
        return f"ROLLBACK: {d['reason']}"
    if e.kind == ev.ROLLED_BACK:
        return f"rolled back to 0% in {d['seconds']:.2f}s"
    if e.kind == ev.RECONCILED:
        was = "nothing" if d["journal_percent"] is None else f"{d['journal_percent']:g}%"
        return f"reconciled with the router: {d['router_percent']:g}% (journal had {was})"
    if e.kind == ev.APPROVAL_WAITING:
        return f"waiting for approval of the {d['step']:g}% step"
    if e.kind == ev.APPROVED:
        return f"{d['step']:g}% step approved{who}"
    if e.kind in (ev.PAUSED, ev.RESUMED, ev.ROLLBACK_REQUESTED):
        reason = f": {d['reason']}" if d.get("reason") else ""
        return f"{e.kind.replace('_', ' ')}{who}{reason}"
    if e.kind == ev.RUN_STARTED:
        return f"run {d.get('run_id')} started{' (resuming)' if d.get('resumed') else ''}"
    if e.kind == ev.RUN_STOPPED:
        return f"run stopped: {d.get('outcome')} — {d.get('reason')}"
    if e.kind == ev.BAKE_STARTED:
        return f"bake started at {d['percent']:g}% ({d.get('reason')})"
    if e.kind == ev.PROMOTED:
        return "PROMOTED: 100% on the new environment"
    return f"{e.kind} {json.dumps(d, default=str)}"


def live_lease(store: Any, service: str) -> Any:
    """The live lease of a run of ``service`` (judged by the store's clock), or None."""
    now = store.now()
    for lease in store.leases():
        if lease.meta.get("service") == service and not lease.is_expired(now):
            return lease
    return None


def mapped_steps(plan: Plan) -> list[str]:
    """One line per step the router cannot set exactly: what it will set instead."""
    lines = []
    for s, w in zip(plan.steps, plan.step_weights, strict=True):
        if w.new_percent != Fraction(str(s)):
            pair = w.to_backend(plan.router.SCALE)
            lines.append(f"step {s:g}% is set as {w} (weights {pair[0]}/{pair[1]}): "
                         f"{plan.router.LABEL} cannot express {s:g}% exactly")
    return lines


def steps_json(plan: Plan) -> list[dict[str, Any]]:
    return [{"step": s, "percent": float(w.new_percent), "exact": w.exact}
            for s, w in zip(plan.steps, plan.step_weights, strict=True)]


def weight_bar(w: Weights | None, width: int = 40) -> Text:
    if w is None:
        return Text("router unreadable", style="bold red")
    new = round(float(w.new_percent) / 100 * width)
    t = Text()
    t.append("old " + "█" * (width - new), style="blue")
    t.append("▒" * new + " new", style="magenta")
    t.append(f"  {float(w.old_percent):g}% / {float(w.new_percent):g}%")
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


def gates_table(results: Sequence[GateResult] | Sequence[dict[str, Any]]) -> Table:
    t = Table(title="normal state", show_edge=False)
    for c in ("gate", "value", "threshold", "samples", "verdict", "reason"):
        t.add_column(c, overflow="fold")
    for r in results:
        d = r.to_dict() if isinstance(r, GateResult) else r
        v = d.get("value")
        t.add_row(d["gate"], "-" if v is None else f"{v:.4g}", d.get("threshold") or "-",
                  "-" if d.get("samples") is None else str(d["samples"]),
                  Text(d["verdict"].upper(), style=VERDICT_STYLE.get(d["verdict"], "")),
                  d.get("reason", ""))
    return t


def events_table(events: Iterable[Event], title: str = "recent events") -> Table:
    t = Table(title=title, show_edge=False)
    t.add_column("time")
    t.add_column("event", overflow="fold")
    for e in events:
        style = "bold red" if e.kind in (ev.ROLLBACK_STARTED, ev.ROLLED_BACK) else (
            "bold green" if e.kind == ev.PROMOTED else "")
        t.add_row(when(e.at), Text(describe_event(e), style=style))
    return t


def live_view(plan: Plan, state: RunState, obs: Observation | None, decision: Decision | None,
              recent: Sequence[Event]) -> RenderableType:
    header = Text()
    header.append(f"{plan.service}  ", style="bold")
    if decision is not None:
        header.append(decision.status or decision.action.value, style="bold cyan")
        header.append(f"  {decision.reason}")
    weights = obs.weights if obs else state.confirmed
    results = list(obs.results) if obs and obs.results else state.last_check.get("results", [])
    shown = [e for e in recent if e.kind != ev.CHECK or e.data.get("verdict") != "pass"][-8:]
    return Panel(Group(header, weight_bar(weights), steps_line(plan, state),
                       gates_table(results), events_table(shown)),
                 title="shiftover run", border_style="cyan")


def status_view(plan: Plan | PlanOutline, state: RunState, lease: Any, last: Event | None) -> RenderableType:
    t = Table(show_header=False, show_edge=False)
    t.add_column(style="bold")
    t.add_column()
    running = f"yes: {lease.holder}" if lease else "no"
    phase = ("rolling back" if state.rolling_back else "paused" if state.paused
             else "in progress" if state.started else (state.outcome or "not started"))
    t.add_row("service", plan.service)
    t.add_row("state", phase)
    t.add_row("running", running)
    shown = state.confirmed or state.final
    t.add_row("weight (journal)", "-" if shown is None else str(shown))
    index = step_of(plan, state)
    step = "-" if index < 0 else f"{plan.steps[index]:g}% ({index + 1}/{len(plan.steps)})"
    t.add_row("step", step)
    if state.waiting_approval is not None:
        t.add_row("waiting", f"approval of the {state.waiting_approval:g}% step")
    t.add_row("consecutive failures", f"{state.consecutive_failures}/{plan.failure_limit}")
    if last is not None:
        t.add_row("last event", f"{when(last.at)} {describe_event(last)}")
    parts: list[RenderableType] = [t]
    if state.last_check.get("results"):
        parts.append(gates_table(state.last_check["results"]))
    return Group(*parts)


def status_json(plan: Plan | PlanOutline, state: RunState, lease: Any) -> dict[str, Any]:
    return {
        "service": plan.service,
        "started": state.started,
        "outcome": state.outcome,
        "paused": state.paused,
        "rolling_back": state.rolling_back,
        "running": lease is not None,
        "lease_holder": lease.holder if lease else None,
        "weight": None if (state.confirmed or state.final) is None
        else float((state.confirmed or state.final).new_percent),  # type: ignore[union-attr]
        "step_index": step_of(plan, state),
        "step": None if step_of(plan, state) < 0 else plan.steps[step_of(plan, state)],
        "waiting_approval": state.waiting_approval,
        "consecutive_failures": state.consecutive_failures,
        "last_check": state.last_check or None,
    }


def verdict_text(v: Verdict) -> Text:
    return Text(v.value.upper(), style=VERDICT_STYLE[v.value])
