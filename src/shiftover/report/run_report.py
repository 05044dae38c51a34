"""The run report: what one run did, from the journal alone, as one offline HTML page
(``shiftover report -o report.html``) or a Markdown summary for a pull request
(``--format md``).

One model, several renderings: :func:`report_data` folds the run's events into one
JSON-ready dict (``--json`` prints it); :func:`render_html` and
:func:`render_markdown` only lay it out, so the page, the summary and the JSON can
never disagree, and a journal copied off the production host renders the same page
anywhere, later.

What belongs to a run. A run is the stretch of the journal from its ``run_started``
to its own ``run_stopped`` (a run killed without one ends at its last own event):
its own events, plus the operators' (``run_id`` ``operator``: approvals, pauses,
resumes, rollbacks asked for) journalled within that stretch. An approval given
between runs belongs to the next run (the one that uses it), and operator events
before the first run go with the first. Anything else operators did after the run
ended (a rollback of a promoted run, say) belongs to no run: the report lists it
under "afterwards", never in the run's figures. A step approved ahead of time,
before this run started, is found in the campaign's earlier events.

What the page shows, top to bottom:

* the outcome and the headline figures: duration, the highest step reached, time to
  rollback (the engine's own figure, from ``rollback_started`` to 0% confirmed by the
  router, and from the first failed check of the streak that caused it), checks run
  / failed / without a verdict, approvals; the environment and whether the run was a
  rehearsal (``run_started`` carries both);
* **the weight on the new environment over time**: a step line through every split
  the router confirmed (``weight_confirmed``) or showed (``reconciled``), the part of
  each step that counted as its bake shaded under it, and operators' acts marked;
* **the steps**: one row per step reached, with the time spent there, the bake that
  counted (a check without a verdict restarts it), the checks by verdict, the
  approval and what ended the step;
* **every gate's value over time** against its threshold (read from the journalled
  threshold text: ``<= 0.1``, ``always-valid p > 0.01``, ``SLO 0.5s``, ...), each
  check marked by its verdict; checks without a value sit on a strip at the bottom;
  the gates that failed, with their last failing value and reason;
* approvals, pauses and rollbacks: when, who (``user@host``, or the run itself), why;
* the full event log, one line per event (:func:`shiftover.views.describe_event`).

Times are UTC. Secrets: what the engine journals is redacted when written, but what
operators typed may not be (older journals), so every string of the model passes
through the plan's redactor, and has the ``user:password@`` of every URL in it
masked, before anything is rendered.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shiftover import views
from shiftover.engine import events as ev
from shiftover.engine.events import RunState, weight_or_none
from shiftover.errors import ShiftoverError
from shiftover.plan import mask_userinfo, redact_values
from shiftover.report.charts import axis, chart_div, layout, plotly_js_tag, plotly_text
from shiftover.report.runs import Rehearsals, RunSummary, rehearsal_text, run_summaries
from shiftover.types import Weights

__all__ = [
    "SCHEMA",
    "figures",
    "list_runs",
    "render_html",
    "render_markdown",
    "report_data",
    "threshold_lines",
]

SCHEMA = "shiftover.report/v1"
OPERATOR = "operator"

Redact = Callable[[str], str]

# colours: plotly's defaults, as the other pages use them
WEIGHT, PASS, FAIL, INCONCLUSIVE, VALUE = "#1f77b4", "#2ca02c", "#d62728", "#e6a700", "#7f7f7f"
APPROVAL, PAUSE, OTHER = "#2ca02c", "#ff7f0e", "#9467bd"
VERDICT_COLOR = {"pass": PASS, "fail": FAIL, "inconclusive": INCONCLUSIVE}
VERDICT_SYMBOL = {"pass": "circle", "fail": "x", "inconclusive": "diamond"}

# events shown in "approvals, pauses and rollbacks" (and marked on the weight chart)
ACTION_KINDS = (ev.APPROVAL_WAITING, ev.APPROVED, ev.PAUSED, ev.RESUMED, ev.ROLLBACK_REQUESTED,
                ev.ROLLBACK_STARTED, ev.ROLLED_BACK, ev.PROMOTED, ev.PLAN_CHANGED, ev.JOURNAL_GAP,
                ev.ROUTER_ERROR, ev.ROUTER_READABLE, ev.WEIGHT_FAILED)

OUTCOME_TEXT = {
    "promoted": "promoted", "rolled_back": "rolled back", "held": "held",
    "lease_lost": "lease lost", "store_failed": "journal failed",
    "unfinished": "no stop recorded",
}


# --- small formatters ----------------------------------------------------------------------


def utc(t: float) -> str:
    """A time as plotly's date axis reads it (UTC, milliseconds)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def utc_text(t: float | None, *, date: bool = True) -> str:
    if t is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S UTC" if date else "%H:%M:%S"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime(fmt)


def duration_text(seconds: float | None) -> str:
    """``12 ms``, ``26.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{p:.4g}%"


def _value_text(v: Any) -> str:
    n = _num(v)
    return "-" if n is None else f"{n:.4g}"


def _data(e: Any) -> dict[str, Any]:
    d = getattr(e, "data", None)
    return d if isinstance(d, dict) else {}


# --- runs ------------------------------------------------------------------------------------


def run_text(r: RunSummary) -> str:
    """``5b6ae33d49c0 (2026-12-01 12:00:03 UTC, rolled back)``."""
    return f"{r.run_id} ({utc_text(r.started)}, {OUTCOME_TEXT.get(r.outcome, r.outcome)})"


def list_runs(events: Iterable[Any]) -> list[RunSummary]:
    """Every run of one journal key's events (ascending id), oldest first."""
    return run_summaries(events)


def _slice(events: Sequence[Any], run_id: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(the events before the run, the run's events, operators' events after it ended and
    before the next run that are not the next run's approvals): see the module docstring."""
    first = next(i for i, e in enumerate(events)
                 if e.kind == ev.RUN_STARTED and e.run_id == run_id)
    nxt = next((i for i, e in enumerate(events) if i > first and e.kind == ev.RUN_STARTED
                and e.run_id not in (run_id, OPERATOR)), len(events))
    own = [i for i in range(first, nxt) if events[i].run_id == run_id]
    stop = next((i for i in own if events[i].kind == ev.RUN_STOPPED), None)
    last = stop if stop is not None else own[-1]
    # where the run before this one ended: approvals given after that are this run's
    prev_end = -1
    for i in range(first - 1, -1, -1):
        e = events[i]
        if e.run_id != OPERATOR:
            prev_end = i
            break
    lead = [e for i, e in enumerate(events[:first]) if e.run_id == OPERATOR
            and (prev_end < 0 or (i > prev_end and e.kind == ev.APPROVED))]
    mine = [e for i, e in enumerate(events) if first <= i <= last
            and e.run_id in (run_id, OPERATOR)]
    after = [e for e in events[last + 1:nxt] if e.run_id == OPERATOR
             and (e.kind != ev.APPROVED or nxt == len(events))]
    return list(events[:first]), lead + mine, after


# --- thresholds ------------------------------------------------------------------------------

_NUMBER = r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
_THRESHOLDS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    # the compare gate: its value is the always-valid p-value, FAIL at or below alpha
    (re.compile(r"\bp\s*>\s*" + _NUMBER + r"(?![\w.])"), "min", "alpha {}: FAIL at or below"),
    (re.compile(r"\bSLO\s+" + _NUMBER + r"s\b"), "max", "SLO {} s"),
    (re.compile(r"(?<![\w.])>=\s*" + _NUMBER + r"(?![\w.])"), "min", "min {}"),
    (re.compile(r"(?<!new )(?<![\w.])<=\s*" + _NUMBER + r"(?![\w.])"), "max", "max {}"),
    (re.compile(r"^\s*status\s+" + _NUMBER + r"\b"), "target", "expected status {}"),
    (re.compile(r"^\s*" + _NUMBER + r"\s+firing\b"), "max", "{} firing"),
)


def threshold_lines(text: Any) -> list[dict[str, Any]]:
    """The numbers a journalled threshold text holds a value to: ``<= 0.1`` is a max
    line at 0.1; ``always-valid p > 0.01 (...)`` a min line at 0.01 (the compare gate's
    value is its p-value); ``status 200`` a target; ``0 firing`` a max of 0. A text
    with no number a value is held to (``new <= 1.5x old's latency``) has none."""
    if not isinstance(text, str):
        return []
    lines: list[dict[str, Any]] = []
    for pattern, side, label in _THRESHOLDS:
        for m in pattern.finditer(text):
            y = float(m.group(1))
            if not any(x["y"] == y and x["side"] == side for x in lines):
                lines.append({"y": y, "side": side, "label": label.format(m.group(1))})
    return lines


# --- the model -------------------------------------------------------------------------------


def _steps_of(started: Any, fallback: Sequence[Weights]) -> list[Weights]:
    summary = _data(started).get("plan")
    exact = summary.get("steps_exact") if isinstance(summary, dict) else None
    if isinstance(exact, list):
        try:
            return [Weights.parse(str(x)) for x in exact]
        except (ValueError, ArithmeticError, ShiftoverError):
            pass
    return list(fallback)


def _weight_points(before: RunState, mine: Sequence[Any],
                   start: float) -> list[dict[str, Any]]:
    """Every split the run saw, in order: where the journal left it, then each
    confirmed or reconciled weight (a repeat of the same split is kept: it restarts
    the step's bake)."""
    points: list[dict[str, Any]] = []
    w0 = before.confirmed if before.started else before.final
    if w0 is not None:
        points.append({"at": start, "event": None, "percent": float(w0.new_percent),
                       "exact": w0.exact, "source": "journal"})
    for e in mine:
        if e.kind == ev.WEIGHT_CONFIRMED:
            w, source = weight_or_none(_data(e)), "confirmed"
        elif e.kind == ev.RECONCILED:
            w, source = weight_or_none(_data(e), "router_percent"), "reconciled"
        else:
            continue
        if w is not None:
            points.append({"at": e.at, "event": e.id, "percent": float(w.new_percent),
                           "exact": w.exact, "source": source})
    return points


def _step_label(w: Weights, steps: Sequence[Weights]) -> str:
    if w.new_percent == 0:
        return "0% (before the first step)"
    if w in steps:
        return f"{w} (step {steps.index(w) + 1}/{len(steps)})"
    return f"{w} (not a step of the plan)"


def _segments(points: Sequence[dict[str, Any]], mine: Sequence[Any], start: float, end: float,
              steps: Sequence[Weights], bake: float | None, outcome: str | None,
              approvals_before: Mapping[float, Any]) -> list[dict[str, Any]]:
    """One row per stay at a split above 0%: how long, the bake that counted, the
    checks, the approval, and what ended it."""
    rows: list[dict[str, Any]] = []
    # the split in force at each event: a segment runs from its weight event to the next
    changes = [p for i, p in enumerate(points)
               if i == 0 or p["exact"] != points[i - 1]["exact"] or p["source"] == "reconciled"]
    for n, p in enumerate(changes):
        nxt = changes[n + 1] if n + 1 < len(changes) else None
        # the first stay runs from the run's start (checks before the router was read)
        lo_id = 0 if n == 0 else p["event"] or 0
        hi_id = nxt["event"] if nxt is not None else math.inf
        until = nxt["at"] if nxt is not None else end
        if p["percent"] <= 0 and n > 0:  # 0% after a rollback or a drain is not a step
            continue
        reached = start if n == 0 and p["percent"] <= 0 else p["at"]
        inside = [e for e in mine if lo_id < e.id < hi_id]
        w = Weights.parse(p["exact"])
        checks = {"pass": 0, "fail": 0, "inconclusive": 0}
        bake_from, restarts = p["at"], 0
        stretches: list[tuple[float, float]] = []  # (from, to): each bake before a restart
        approval = waiting = rollback = None
        for e in inside:
            d = _data(e)
            if e.kind == ev.CHECK:
                verdict = str(d.get("verdict"))
                checks[verdict] = checks.get(verdict, 0) + 1
            elif e.kind == ev.BAKE_STARTED:
                stretches.append((bake_from, e.at))
                bake_from, restarts = e.at, restarts + 1
            elif e.kind == ev.APPROVAL_WAITING:
                waiting = waiting or e
            elif e.kind == ev.ROLLBACK_STARTED:
                rollback = rollback or e
        # the approval of the *next* step is given while this one bakes
        target = Weights.parse(nxt["exact"]) if nxt is not None else None
        if target is not None and target > w:
            approval = _approval_of(float(target.new_percent), mine, approvals_before)
        if rollback is not None:
            ended = "rolled back: " + str(_data(rollback).get("reason") or "")
        elif target is not None and target > w:
            ended = f"advanced to {target}"
        elif target is not None:
            how = "reconciled with the router" if nxt is not None and \
                nxt["source"] == "reconciled" else "set"
            ended = f"lowered to {target} ({how})"
        elif outcome == "promoted" and w.new_percent == 100:
            ended = "promoted"
        else:
            ended = f"the run stopped here ({OUTCOME_TEXT.get(outcome or '', outcome)})"
        stretches.append((bake_from, until))
        below = p["percent"] <= 0  # no bake before the first step
        # a bake that was reached counts, whatever restarted it later (a failed check
        # while the step waited for its approval); else the last stretch is the bake
        done = next(((a, b) for a, b in stretches
                     if bake is not None and b - a + 1e-6 >= bake), None)
        if waiting is not None and done is None:  # the run waits only once baked
            done = max(stretches, key=lambda ab: ab[1] - ab[0])
        bake_from, bake_until = done or stretches[-1]
        baked = max(0.0, bake_until - bake_from)
        later = sum(1 for a, _ in stretches if done is not None and a > done[0])
        rows.append({
            "percent": p["percent"], "exact": p["exact"], "label": _step_label(w, steps),
            "step": steps.index(w) + 1 if w in steps else None,
            "reached_at": reached, "left_at": until, "seconds": round(until - reached, 3),
            "bake_required": None if below else bake, "bake_from": bake_from,
            "bake_until": bake_until,
            "baked_seconds": None if below else round(baked, 3),
            "bake_complete": not below and bake is not None and (
                done is not None or baked + 1e-6 >= bake),
            "bake_restarts": restarts, "restarts_after_bake": later, "checks": checks,
            "waited_for_approval_at": None if waiting is None else waiting.at,
            "approval": approval, "ended": ended,
        })
    return rows


def _approval_of(step: float, mine: Sequence[Any],
                 before: Mapping[float, Any]) -> dict[str, Any] | None:
    started = next((e.id for e in mine if e.kind == ev.RUN_STARTED), 0)
    for e in mine:
        if e.kind == ev.APPROVED and _num(_data(e).get("step")) == step:
            return {"step": step, "actor": e.actor, "at": e.at,
                    "reason": str(_data(e).get("reason") or ""), "ahead": e.id < started}
    e = before.get(step)
    if e is None:
        return None
    return {"step": step, "actor": e.actor, "at": e.at,
            "reason": str(_data(e).get("reason") or ""), "ahead": True}


def _campaign_approvals(before: Sequence[Any]) -> dict[float, Any]:
    """Approvals given in this campaign before the run started (ahead of time)."""
    found: dict[float, Any] = {}
    for e in before:
        if e.kind in ev.TERMINAL:
            found.clear()
        elif e.kind == ev.APPROVED:
            step = _num(_data(e).get("step"))
            if step is not None:
                found[step] = e
    return found


def _gates(mine: Sequence[Any], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    order: list[str] = []
    types: dict[str, str] = {}
    for g in summary.get("gates") or []:
        if isinstance(g, dict) and isinstance(g.get("name"), str):
            order.append(g["name"])
            types[g["name"]] = str(g.get("type") or "")
    points: dict[str, list[dict[str, Any]]] = {}
    thresholds: dict[str, Any] = {}
    for e in mine:
        if e.kind != ev.CHECK:
            continue
        for r in _data(e).get("results") or []:
            if not isinstance(r, dict):
                continue
            name = str(r.get("gate", "?"))
            if name not in order:
                order.append(name)
            at = _num(r.get("at")) or e.at
            points.setdefault(name, []).append({
                "at": at, "event": e.id, "value": _num(r.get("value")),
                "verdict": str(r.get("verdict", "?")), "samples": r.get("samples"),
                "reason": str(r.get("reason") or ""), "error": bool(r.get("error"))})
            if r.get("threshold") is not None:
                thresholds[name] = r.get("threshold")
    gates = []
    for name in order:
        pts = points.get(name, [])
        threshold = thresholds.get(name)
        fails = [p for p in pts if p["verdict"] == "fail"]
        gates.append({
            "name": name, "type": types.get(name, ""),
            "threshold": None if threshold is None else str(threshold),
            "lines": threshold_lines(threshold),
            "log": "p >" in str(threshold or "") and any(p["value"] for p in pts)
            and all(p["value"] is None or p["value"] > 0 for p in pts),
            "checks": {v: sum(1 for p in pts if p["verdict"] == v)
                       for v in ("pass", "fail", "inconclusive")},
            "errors": sum(1 for p in pts if p["error"]),
            "first_fail_at": fails[0]["at"] if fails else None,
            "last_fail": fails[-1] if fails else None,
            "points": pts,
        })
    return gates


def _rollback(mine: Sequence[Any]) -> dict[str, Any] | None:
    """When the rollback started, why, who asked, and how long 0% took."""
    started = next((e for e in mine if e.kind == ev.ROLLBACK_STARTED), None)
    requested = next((e for e in mine if e.kind == ev.ROLLBACK_REQUESTED), None)
    done = next((e for e in mine if e.kind == ev.ROLLED_BACK), None)
    if started is None and requested is None and done is None:
        return None
    first = started or requested or done
    assert first is not None
    zero = next((e for e in mine if e.kind == ev.WEIGHT_CONFIRMED and e.id > first.id
                 and (weight_or_none(_data(e)) or Weights(1)).new_percent == 0), None)
    zero_at = zero.at if zero is not None else (done.at if done is not None else None)
    # the streak of failed checks that led to it
    streak: list[Any] = []
    for e in mine:
        if e.id >= first.id:
            break
        if e.kind == ev.CHECK:
            streak = [*streak, e] if _data(e).get("verdict") == "fail" else []
    seconds = _num(_data(done).get("seconds")) if done is not None else None
    return {
        "started_at": None if started is None else started.at,
        "requested_by": None if requested is None else requested.actor,
        "requested_at": None if requested is None else requested.at,
        "reason": str(_data(started or requested or done).get("reason") or ""),
        "stuck": bool(_data(started).get("stuck")) if started is not None else False,
        "gates": [g for g in _data(started).get("gates") or [] if isinstance(g, dict)]
        if started is not None else [],
        "zero_confirmed_at": zero_at,
        "seconds": seconds if seconds is not None else (
            None if zero_at is None else round(zero_at - first.at, 3)),
        "first_failed_check_at": streak[0].at if streak else None,
        "from_first_failed_check_seconds": None if not streak or zero_at is None
        else round(zero_at - streak[0].at, 3),
        "confirmed_by": None if done is None else _data(done).get("confirmed_by"),
    }


def _action(e: Any) -> dict[str, Any]:
    d = _data(e)
    why = d.get("reason") or d.get("error") or ""
    if e.kind == ev.APPROVAL_WAITING:
        step = _num(d.get("step"))
        why = f"the plan asks for an approval of the {'?' if step is None else f'{step:g}'}% step"
    return {"id": e.id, "at": e.at, "kind": e.kind,
            "who": e.actor or "the run", "operator": e.actor is not None,
            "why": str(why), "text": views.describe_event(e)}


def _hooks(mine: Sequence[Any]) -> list[dict[str, Any]]:
    """Each hook and undo this run ran, how it ended (``hook_finished``), in order; one
    started and never finished (the run died, or is still running) says so."""
    out: list[dict[str, Any]] = []
    open_: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e in mine:
        d = _data(e)
        if e.kind not in (ev.HOOK_STARTED, ev.HOOK_FINISHED, ev.HOOK_ACKED):
            continue
        key = (str(d.get("hook")), str(d.get("at")), str(d.get("phase", "run")))
        if e.kind == ev.HOOK_STARTED:
            row = {"hook": key[0], "at": key[1], "phase": key[2], "started_at": e.at,
                   "attempt": d.get("attempt"), "finished_at": None, "ok": None,
                   "summary": "started, no result recorded"}
            open_[key] = row
            out.append(row)
        elif e.kind == ev.HOOK_FINISHED and key in open_:
            ok = bool(d.get("ok"))
            open_.pop(key).update(finished_at=e.at, ok=ok, summary=(
                "done: " if ok else "FAILED: ") + str(d.get("summary", "")))
        elif e.kind == ev.HOOK_ACKED:
            out.append({"hook": key[0], "at": key[1], "phase": key[2], "started_at": e.at,
                        "attempt": None, "finished_at": e.at, "ok": bool(d.get("done")),
                        "summary": ("acknowledged done" if d.get("done") else
                                    "acknowledged not done") + f" by {e.actor or '?'}"})
    return out


def report_data(events: Sequence[Any], run_id: str, *, journal_key: str,
                fallback_steps: Sequence[Weights] = (), redact: Redact = lambda s: s,
                journal: Mapping[str, Any] | None = None,
                rehearsals: Sequence[Rehearsals] = (),
                generated_at: float | None = None,
                version: str | None = None) -> dict[str, Any]:
    """The report of run ``run_id`` of ``events`` (one journal key's, ascending id), as
    one JSON-ready dict; every string passed through ``redact``. ``KeyError`` when
    the run is not in ``events`` (callers list :func:`list_runs` first)."""
    runs = list_runs(events)
    info = next((r for r in runs if r.run_id == run_id), None)
    if info is None:
        raise KeyError(run_id)
    before, mine, after = _slice(events, run_id)
    started = next(e for e in mine if e.kind == ev.RUN_STARTED and e.run_id == run_id)
    stopped = next((e for e in mine if e.kind == ev.RUN_STOPPED and e.run_id == run_id), None)
    sd = _data(started)
    summary = sd.get("plan") if isinstance(sd.get("plan"), dict) else {}
    assert isinstance(summary, dict)
    start = started.at
    end = max([start, *(e.at for e in mine)]) if stopped is None else stopped.at
    before_state = ev.fold(RunState(), before)
    steps = _steps_of(started, fallback_steps)
    bake = _num(summary.get("bake"))

    outcome = info.outcome
    terminal = next((e.kind for e in reversed(mine) if e.kind in ev.TERMINAL), None)
    if outcome == "unfinished" and terminal is not None:
        outcome = terminal  # ended by someone else (an operator's rollback), not by the run
    points = _weight_points(before_state, mine, start)
    approvals_before = _campaign_approvals(before)
    segments = _segments(points, mine, start, end, steps, bake, outcome, approvals_before)
    gates = _gates(mine, summary)
    rollback = _rollback(mine)
    checks = [e for e in mine if e.kind == ev.CHECK]
    approvals = [_action(e) for e in mine if e.kind == ev.APPROVED]
    highest = max(points, key=lambda p: p["percent"], default=None)
    final = points[-1] if points else None
    highest_w = None if highest is None else Weights.parse(highest["exact"])
    stop_d = _data(stopped)
    failing = []
    for g in gates:
        last = g["last_fail"]
        if last is None:
            continue
        decided = any(x.get("gate") == g["name"] for x in (rollback or {}).get("gates", []))
        failing.append({"gate": g["name"], "fails": g["checks"]["fail"],
                        "first_at": g["first_fail_at"], "last_at": last["at"],
                        "value": last["value"], "threshold": g["threshold"],
                        "reason": last["reason"], "caused_rollback": decided})
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "journal_key": journal_key,
        "service": str(summary.get("service") or journal_key.split("@", 1)[0]),
        "environment": info.environment,
        "rehearsal": info.rehearsal,
        "run": {"run_id": run_id, "host": sd.get("host"), "pid": sd.get("pid"),
                "resumed": info.resumed, "started_at": start,
                "stopped_at": None if stopped is None else stopped.at, "ended_at": end},
        "plan": {
            "router": summary.get("router"), "steps": [float(w.new_percent) for w in steps],
            "bake": bake, "interval": _num(summary.get("interval")),
            "failure_limit": summary.get("failure_limit"),
            "on_failure": summary.get("on_failure"),
            "approvals": [a for a in summary.get("approvals") or [] if _num(a) is not None],
            "gates": [g for g in summary.get("gates") or [] if isinstance(g, dict)],
        },
        "outcome": outcome,
        "outcome_text": OUTCOME_TEXT.get(outcome, outcome),
        "exit_code": stop_d.get("exit_code"),
        "reason": str(stop_d.get("reason") or ""),
        "figures": {
            "duration_seconds": round(end - start, 3),
            "highest_percent": None if highest is None else highest["percent"],
            "highest_step": None if highest_w is None or highest_w not in steps
            else steps.index(highest_w) + 1,
            "steps": len(steps),
            "final_percent": None if final is None else final["percent"],
            "rollback_seconds": None if rollback is None else rollback["seconds"],
            "rollback_from_first_failed_check_seconds":
                None if rollback is None else rollback["from_first_failed_check_seconds"],
            "checks": len(checks),
            "checks_failed": sum(1 for e in checks if _data(e).get("verdict") == "fail"),
            "checks_inconclusive": sum(1 for e in checks
                                       if _data(e).get("verdict") == "inconclusive"),
            "approvals": len(approvals),
            "pauses": sum(1 for e in mine if e.kind == ev.PAUSED),
        },
        "weights": [{k: p[k] for k in ("at", "percent", "exact", "source")} for p in points],
        "steps": segments,
        "gates": gates,
        "failing_gates": failing,
        "rollback": rollback,
        "approvals": approvals,
        "actions": [_action(e) for e in mine if e.kind in ACTION_KINDS],
        "hooks": _hooks(mine),
        "events": [{"id": e.id, "at": e.at, "kind": e.kind, "actor": e.actor,
                    "run_id": e.run_id, "text": views.describe_event(e)} for e in mine],
        # operators' acts after the run ended (before the next run): no part of this run
        "afterwards": [_action(e) for e in after],
        "runs": [r.to_dict() for r in runs],
        "rehearsals": [{**r.to_dict(), "text": rehearsal_text(r)} for r in rehearsals],
        "journal": dict(journal or {}),
        "generated_at": generated_at,
        "version": version,
    }
    cleaned: dict[str, Any] = redact_values(data, lambda s: redact(mask_userinfo(s)))
    return cleaned


# --- figures -----------------------------------------------------------------------------------

_LAYOUT: dict[str, Any] = layout(top=60, bottom=40, legend_y=-0.14)


def _x_axis(data: Mapping[str, Any]) -> dict[str, Any]:
    """The run's span, UTC, the same on every chart (so they line up), with a little room
    after the end: a rollback's drop to 0% is the last thing that happened."""
    run = data["run"]
    start, end = run["started_at"], run["ended_at"]
    pad = max(1.0, 0.03 * (end - start))
    return {"type": "date", "range": [utc(start), utc(end + pad)], "gridcolor": "#e5e5e5",
            "zeroline": False}


def _weight_at(data: Mapping[str, Any], at: float) -> float:
    w = 0.0
    for p in data["weights"]:
        if p["at"] <= at:
            w = p["percent"]
    return w


def _marks(data: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Vertical lines on the gate charts: each change of split (labelled), the rollback."""
    shapes, notes = [], []
    prev = None
    for p in data["weights"]:
        if prev is not None and p["percent"] == prev:
            continue
        prev = p["percent"]
        shapes.append({"type": "line", "xref": "x", "x0": utc(p["at"]), "x1": utc(p["at"]),
                       "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"color": "#bbbbbb", "width": 1, "dash": "dot"}})
        notes.append({"xref": "x", "x": utc(p["at"]), "yref": "paper", "y": 1,
                      "yanchor": "bottom", "text": f"{p['percent']:.4g}%", "showarrow": False,
                      "font": {"size": 10, "color": "#888888"}})
    rb = data.get("rollback") or {}
    at = rb.get("started_at") or rb.get("requested_at")
    if at is not None:
        shapes.append({"type": "line", "xref": "x", "x0": utc(at), "x1": utc(at), "yref": "paper",
                       "y0": 0, "y1": 1, "line": {"color": FAIL, "width": 1.5, "dash": "dash"}})
        notes.append({"xref": "x", "x": utc(at), "yref": "paper", "y": 0.5, "xanchor": "right",
                      "text": "rollback", "showarrow": False, "font": {"color": FAIL}})
    return shapes, notes


def weight_figure(data: Mapping[str, Any]) -> dict[str, Any]:
    """The split over time (a step line), each step's counted bake shaded under it,
    operators' acts and the rollback marked."""
    pts = data["weights"]
    end = data["run"]["ended_at"]
    xs = [utc(p["at"]) for p in pts] + ([utc(end)] if pts else [])
    ys = [p["percent"] for p in pts] + ([pts[-1]["percent"]] if pts else [])
    traces: list[dict[str, Any]] = []
    for s in data["steps"]:
        if s["percent"] <= 0:
            continue
        x0, top = utc(s["bake_from"]), s["percent"]
        x1 = utc(s.get("bake_until", s["left_at"]))
        done = s["bake_complete"]
        text = plotly_text(f"{s['label']}: bake counted {_bake_text(s)}")
        traces.append({
            "type": "scatter", "mode": "lines", "x": [x0, x1, x1, x0, x0],
            "y": [0, 0, top, top, 0], "fill": "toself", "line": {"width": 0},
            "fillcolor": "rgba(44,160,44,0.18)" if done else "rgba(230,167,0,0.22)",
            "name": "bake counted (complete)" if done else "bake counted (incomplete)",
            "legendgroup": "bake-done" if done else "bake-short",
            "showlegend": not any(t.get("legendgroup") == ("bake-done" if done else "bake-short")
                                  for t in traces),
            "hoveron": "fills", "text": text, "hoverinfo": "text",
        })
    traces.append({
        "type": "scatter", "mode": "lines+markers", "name": "on new (router)",
        "x": xs, "y": ys, "line": {"shape": "hv", "color": WEIGHT, "width": 2.5},
        "marker": {"size": 5},
        "hovertemplate": "%{x}<br>%{y:.4g}% on new<extra></extra>",
    })
    groups = (
        ("approvals", APPROVAL, "triangle-up", (ev.APPROVED, ev.APPROVAL_WAITING)),
        ("pauses / resumes", PAUSE, "square", (ev.PAUSED, ev.RESUMED)),
        ("rollback", FAIL, "x", (ev.ROLLBACK_REQUESTED, ev.ROLLBACK_STARTED, ev.ROLLED_BACK)),
        ("other", OTHER, "circle-open", (ev.PLAN_CHANGED, ev.JOURNAL_GAP, ev.ROUTER_ERROR,
                                         ev.ROUTER_READABLE, ev.WEIGHT_FAILED, ev.PROMOTED)),
    )
    for name, color, symbol, kinds in groups:
        acts = [a for a in data["actions"] if a["kind"] in kinds]
        if not acts:
            continue
        traces.append({
            "type": "scatter", "mode": "markers", "name": name,
            "x": [utc(a["at"]) for a in acts], "y": [_weight_at(data, a["at"]) for a in acts],
            "marker": {"color": color, "symbol": symbol, "size": 11,
                       "line": {"width": 1.5, "color": color}},
            "text": [plotly_text(f"{a['text']}" + (f" — who: {a['who']}" if a["operator"] else ""))
                     for a in acts],
            "hovertemplate": "%{x}<br>%{text}<extra></extra>",
        })
    shapes, notes = _marks({**data, "weights": []})  # the rollback line only
    # the axis spans what was reached (a run that stopped at 10% is not a flat line at
    # the bottom of 0-100%); the title says so
    top = max([p["percent"] for p in pts] or [0.0])
    upper = 105.0 if top > 60 else max(10.0, top * 1.25)
    return {"data": traces, "layout": {
        **_LAYOUT, "margin": {**_LAYOUT["margin"], "t": 30},
        "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {**_x_axis(data), "title": {"text": "time (UTC)"}},
        "yaxis": axis("% of traffic on new" + ("" if upper >= 100 else " (axis up to "
                                                  f"{upper:.3g}%)"),
                       range=[0, upper], ticksuffix="%"),
        "shapes": shapes, "annotations": notes}}


def gate_figure(data: Mapping[str, Any], gate: Mapping[str, Any]) -> dict[str, Any]:
    """One gate's value at each check, against its threshold; checks marked by
    verdict; checks without a value on a strip along the bottom."""
    pts = gate["points"]
    run = data["run"]
    x_all = [utc(p["at"]) for p in pts]
    traces: list[dict[str, Any]] = [{
        "type": "scatter", "mode": "lines", "name": "value", "x": x_all,
        "y": [p["value"] for p in pts], "line": {"color": VALUE, "width": 1},
        "hoverinfo": "skip", "connectgaps": False, "showlegend": False,
    }]
    for verdict in ("pass", "fail", "inconclusive"):
        mine = [p for p in pts if p["verdict"] == verdict]
        if not mine:
            continue
        text = [plotly_text(f"{verdict.upper()}{' (error)' if p['error'] else ''}: {p['reason']}"
                            + (f" — samples {p['samples']}" if p["samples"] is not None else ""))
                for p in mine]
        with_value = [(p, t) for p, t in zip(mine, text, strict=True) if p["value"] is not None]
        without = [(p, t) for p, t in zip(mine, text, strict=True) if p["value"] is None]
        style = {"color": VERDICT_COLOR[verdict], "symbol": VERDICT_SYMBOL[verdict],
                 "size": 8 if verdict == "pass" else 10}
        if with_value:
            traces.append({
                "type": "scatter", "mode": "markers", "name": verdict, "legendgroup": verdict,
                "x": [utc(p["at"]) for p, _ in with_value], "y": [p["value"] for p, _ in with_value],
                "marker": style, "text": [t for _, t in with_value],
                "hovertemplate": "%{x}<br>value %{y:.4g}<br>%{text}<extra></extra>"})
        if without:
            traces.append({
                "type": "scatter", "mode": "markers", "name": f"{verdict} (no value)",
                "legendgroup": verdict, "yaxis": "y2",
                "x": [utc(p["at"]) for p, _ in without], "y": [0.04] * len(without),
                "marker": {**style, "symbol": "line-ns-open", "size": 12,
                           "line": {"width": 2, "color": VERDICT_COLOR[verdict]}},
                "text": [t for _, t in without],
                "hovertemplate": "%{x}<br>no value<br>%{text}<extra></extra>"})
    for line in gate["lines"]:
        color = {"max": FAIL, "min": FAIL, "target": PASS}[line["side"]]
        traces.append({
            "type": "scatter", "mode": "lines", "name": plotly_text(line["label"]),
            "x": [utc(run["started_at"]), utc(run["ended_at"] + max(
                1.0, 0.03 * (run["ended_at"] - run["started_at"])))], "y": [line["y"], line["y"]],
            "line": {"color": color, "dash": "dash", "width": 1.5},
            "hovertemplate": plotly_text(line["label"]) + "<extra></extra>"})
    shapes, notes = _marks(data)
    yaxis = axis("value" + (" (log scale)" if gate["log"] else ""),
                  **({"type": "log", "dtick": 1} if gate["log"] else {}))
    return {"data": traces, "layout": {
        **_LAYOUT, "margin": {**_LAYOUT["margin"], "t": 30},
        "xaxis": _x_axis(data), "yaxis": yaxis,
        "yaxis2": {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
        "shapes": shapes, "annotations": notes}}


def figures(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The page's figures by element id: ``weight-chart``, then ``gate-chart-N``."""
    out = {"weight-chart": weight_figure(data)}
    for n, gate in enumerate(data["gates"]):
        out[f"gate-chart-{n + 1}"] = gate_figure(data, gate)
    return out


# --- HTML --------------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape(str(x))


def _headline(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, detail) for the figures at the top."""
    f = data["figures"]
    rb = data.get("rollback") or {}
    highest = "-"
    if f["highest_percent"] is not None:
        highest = _pct(f["highest_percent"])
    step_detail = (f"step {f['highest_step']} of {f['steps']}" if f["highest_step"]
                   else f"of {f['steps']} steps")
    rollback = ("-", "no rollback")
    if rb:
        detail = []
        if rb.get("from_first_failed_check_seconds") is not None:
            detail.append(f"{duration_text(rb['from_first_failed_check_seconds'])} from the "
                          "first failed check")
        if rb.get("requested_by"):
            detail.append(f"asked by {rb['requested_by']}")
        if rb.get("zero_confirmed_at") is None:
            detail.append("0% not confirmed in this run")
        rollback = (duration_text(rb.get("seconds")),
                    "rollback started to 0% confirmed" + (f"; {'; '.join(detail)}" if detail
                                                          else ""))
    approvers = sorted({str(a["who"]) for a in data["approvals"]})
    return [
        ("outcome", str(data["outcome_text"]),
         f"exit {data['exit_code']}" if data["exit_code"] is not None else "no run_stopped event"),
        ("duration", duration_text(f["duration_seconds"]),
         f"{utc_text(data['run']['started_at'], date=False)} to "
         f"{utc_text(data['run']['ended_at'], date=False)} UTC"),
        ("highest step", highest, step_detail + (f"; ended at {_pct(f['final_percent'])}"
                                                 if f["final_percent"] is not None else "")),
        ("time to rollback", *rollback),
        ("checks", f"{f['checks']} run",
         f"{f['checks_failed']} failed, {f['checks_inconclusive']} without a verdict"),
        ("approvals", str(f["approvals"]),
         ("by " + ", ".join(approvers)) if approvers else
         ("none needed" if not data["plan"]["approvals"] else "none given in this run")),
    ]


def _facts(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    run, plan = data["run"], data["plan"]
    rows = [("service", f"{data['service']} (journal key {data['journal_key']})")]
    if data.get("environment"):
        rows.append(("environment", str(data["environment"])))
    # said when it says something: a rehearsal, or a run on a named environment that was not
    if data.get("rehearsal") or (data.get("rehearsal") is False and data.get("environment")):
        rows.append(("rehearsal", "yes" if data["rehearsal"] else "no"))
    rows.append(("run", f"{run['run_id']}" + (f" (pid {run['pid']} on {run['host']})"
                                               if run.get("pid") and run.get("host") else "")
                 + ("; resumed an open campaign" if run.get("resumed") else "")))
    rows.append(("started", utc_text(run["started_at"])))
    rows.append(("stopped", utc_text(run["stopped_at"]) if run["stopped_at"] is not None
                 else f"no stop recorded (last event {utc_text(run['ended_at'])}): still "
                      "running, or killed"))
    steps = ", ".join(f"{s:g}%" for s in plan["steps"])
    rows.append(("plan", f"router {plan.get('router') or '?'}; steps {steps}; bake "
                 f"{duration_text(plan.get('bake'))}, checks every "
                 f"{duration_text(plan.get('interval'))}; {plan.get('on_failure') or '?'} after "
                 f"{plan.get('failure_limit') or '?'} failed checks"
                 + (f"; approvals before {', '.join(f'{a:g}%' for a in plan['approvals'])}"
                    if plan["approvals"] else "")))
    others = [r for r in data["runs"] if r["run_id"] != run["run_id"]]
    if others:
        rows.append(("other runs", f"{len(others)} more in this journal: "
                     + ", ".join(f"{r['run_id']} ({OUTCOME_TEXT.get(r['outcome'], r['outcome'])})"
                                 for r in others[-5:])
                     + (" ..." if len(others) > 5 else "")))
    for r in data.get("rehearsals") or []:
        rows.append(("other environments", str(r["text"])))
    return rows


def _bake_text(s: Mapping[str, Any]) -> str:
    if s["baked_seconds"] is None:
        return "-"
    need = s["bake_required"]
    text = duration_text(s["baked_seconds"]) + (f" of {duration_text(need)}" if need else "")
    later = s.get("restarts_after_bake") or 0
    before = s["bake_restarts"] - later
    text += f" (restarted {before}x)" if before else ""
    if s["bake_complete"] and s.get("waited_for_approval_at") is not None:
        text += ": baked, then waited for approval"
    elif s["bake_complete"] and later:
        text += ": baked"
    if later:
        text += f"; the bake restarted {later}x after that"
    return text


def _steps_table(data: Mapping[str, Any]) -> str:
    head = ("<tr><th>step</th><th>reached</th><th>time there</th><th>bake counted</th>"
            "<th>checks pass / fail / no verdict</th><th>approval of the next step</th>"
            "<th>ended</th></tr>")
    rows = []
    for s in data["steps"]:
        c = s["checks"]
        bake = _bake_text(s)
        a = s["approval"]
        approval = "-" if a is None else (
            f"{a['step']:g}% by {a['actor'] or '?'} at {utc_text(a['at'], date=False)}"
            + (" (ahead of time)" if a["ahead"] else "") + (f": {a['reason']}" if a["reason"] else ""))
        cls = "fail" if s["ended"].startswith("rolled back") else (
            "pass" if s["ended"].startswith(("advanced", "promoted")) else "warn")
        rows.append(
            f'<tr class="{cls}"><td>{_e(s["label"])}</td>'
            f"<td>{_e(utc_text(s['reached_at'], date=False))}</td>"
            f"<td>{_e(duration_text(s['seconds']))}</td><td>{_e(bake)}</td>"
            f"<td>{c.get('pass', 0)} / {c.get('fail', 0)} / {c.get('inconclusive', 0)}</td>"
            f"<td>{_e(approval)}</td><td>{_e(s['ended'])}</td></tr>")
    if not rows:
        return '<p class="note" id="steps">no step above 0% was reached in this run</p>'
    return f'<table id="steps">{head}\n' + "\n".join(rows) + "</table>"


def _failing_table(data: Mapping[str, Any]) -> str:
    failing = data["failing_gates"]
    if not failing:
        return '<p class="note" id="failing">no gate failed in this run</p>'
    rows = []
    for g in failing:
        rows.append(
            f'<tr class="fail"><td>{_e(g["gate"])}</td><td>{g["fails"]}</td>'
            f"<td>{_e(_value_text(g['value']))}</td><td>{_e(g['threshold'] or '-')}</td>"
            f"<td>{_e(g['reason'])}</td><td>{'yes' if g['caused_rollback'] else ''}</td></tr>")
    return ('<table id="failing"><tr><th>gate</th><th>failed checks</th><th>last failing value'
            "</th><th>threshold</th><th>reason</th><th>caused the rollback</th></tr>\n"
            + "\n".join(rows) + "</table>")


def _gate_heading(g: Mapping[str, Any]) -> str:
    c = g["checks"]
    counts = (f"{c['pass']} pass, {c['fail']} fail, {c['inconclusive']} without a verdict"
              + (f" ({g['errors']} could not be evaluated)" if g["errors"] else ""))
    held = f"held to {g['threshold']}" if g["threshold"] else "no threshold journalled"
    kind = f"{g['type']} gate" if g["type"] else "gate"
    cls = "fail" if c["fail"] else "pass"
    return (f'<h3 class="gate {cls}">{_e(g["name"])}</h3>\n'
            f'<p class="note">{_e(kind)}, {_e(held)}: {_e(counts)}</p>\n')


def _actions_table(data: Mapping[str, Any]) -> str:
    acts = [a for a in data["actions"] if a["kind"] not in (ev.ROUTER_READABLE,)]
    if not acts:
        return '<p class="note" id="actions">no approval, pause or rollback in this run</p>'
    rows = []
    for a in acts:
        cls = "fail" if a["kind"] in (ev.ROLLBACK_STARTED, ev.ROLLED_BACK,
                                      ev.ROLLBACK_REQUESTED) else (
            "pass" if a["kind"] in (ev.APPROVED, ev.PROMOTED) else "warn")
        rows.append(f'<tr class="{cls}"><td>{_e(utc_text(a["at"], date=False))}</td>'
                    f"<td>{_e(a['kind'].replace('_', ' '))}</td><td>{_e(a['who'])}</td>"
                    f"<td>{_e(a['why'] or '-')}</td></tr>")
    return ('<table id="actions"><tr><th>time (UTC)</th><th>what</th><th>who</th><th>why</th>'
            "</tr>\n" + "\n".join(rows) + "</table>")


def _afterwards_text(a: Mapping[str, Any]) -> str:
    """``rollback requested by bob@host at 2026-12-01 12:05:00 UTC: reason``."""
    return (f"{a['kind'].replace('_', ' ')} by {a['who']} at {utc_text(a['at'])}"
            + (f": {a['why']}" if a["why"] else ""))


def _afterwards(data: Mapping[str, Any]) -> str:
    after = data.get("afterwards") or []
    if not after:
        return ""
    items = "\n".join(f"<li>{_e(_afterwards_text(a))}</li>" for a in after)
    return ('<p class="note" id="afterwards">Afterwards, once this run had ended (not part of '
            f"its figures):</p>\n<ul>\n{items}\n</ul>")


def _hooks_table(data: Mapping[str, Any]) -> str:
    hooks = data.get("hooks") or []
    if not hooks:
        return ""
    rows = []
    for h in hooks:
        cls = "pass" if h["ok"] else "warn" if h["ok"] is None else "fail"
        what = "undo" if h["phase"] == "undo" else "hook"
        rows.append(f'<tr class="{cls}"><td>{_e(utc_text(h["started_at"], date=False))}</td>'
                    f"<td>{_e(what)} {_e(h['hook'])}</td><td>{_e(h['at'])}</td>"
                    f"<td>{_e(h['summary'])}</td></tr>")
    return ('<h2>Hooks and their undos</h2>\n<table id="hooks"><tr><th>started (UTC)</th>'
            "<th>what</th><th>at</th><th>how it ended</th></tr>\n" + "\n".join(rows)
            + "</table>")


def _events_table(data: Mapping[str, Any]) -> str:
    start = data["run"]["started_at"]
    rows = []
    for e in data["events"]:
        cls = ("fail" if e["kind"] in (ev.ROLLBACK_STARTED, ev.ROLLED_BACK) else
               "pass" if e["kind"] == ev.PROMOTED else
               "op" if e["actor"] else "check-fail" if e["kind"] == ev.CHECK
               and e["text"].startswith("check fail") else "")
        rows.append(f'<tr class="{cls}"><td>{e["id"]}</td>'
                    f"<td>{_e(utc_text(e['at'], date=False))}</td>"
                    f"<td>+{_e(duration_text(max(0.0, e['at'] - start)))}</td>"
                    f"<td>{_e(e['kind'])}</td><td>{_e(e['actor'] or '')}</td>"
                    f"<td>{_e(e['text'])}</td></tr>")
    return ('<table id="events"><tr><th>#</th><th>time (UTC)</th><th>since start</th>'
            "<th>kind</th><th>actor</th><th>event</th></tr>\n" + "\n".join(rows) + "</table>")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { margin-bottom: .2em; } h1 .outcome-promoted { color: #1e7b1e; }
h1 .outcome-rolled_back { color: #b71c1c; } h1 .outcome-other { color: #8a6d00; }
.badge { display: inline-block; padding: .1em .6em; border-radius: 1em; font-size: .85em;
         background: #e8eaf6; margin-right: .4em; }
.badge.rehearsal { background: #fff3cd; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { text-align: left; padding: .25em 1em .25em 0; border-bottom: 1px solid #ddd;
         vertical-align: top; }
th { font-weight: 600; }
#facts th { white-space: nowrap; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(12em, 1fr)); gap: .8em;
         margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: .4em; padding: .6em .9em; }
.card .label { color: #666; font-size: .85em; } .card .value { font-size: 1.6em; font-weight: 600; }
.card .detail { color: #444; font-size: .85em; }
tr.fail td { background: #fdecea; } tr.warn td { background: #fff8e1; }
tr.pass td { background: #eef7ee; } tr.op td { background: #e8eaf6; }
tr.check-fail td { color: #b71c1c; }
#events { font-size: .85em; } #events td:nth-child(-n+4) { white-space: nowrap; }
.reason { background: #f6f6f6; border-left: 4px solid #999; padding: .5em 1em; }
.reason.fail { border-color: #d62728; } .reason.pass { border-color: #2ca02c; }
.note { color: #555; }
h3.gate { margin: 1.5em 0 .2em; } h3.gate.fail { color: #b71c1c; }
#events td:last-child { word-break: break-word; }
"""


def render_html(data: Mapping[str, Any], *, title: str | None = None) -> str:
    """The whole page (plotly.js inlined: about 5 MB, opens with no network)."""
    figs = figures(data)
    heights = {k: ("420px" if k == "weight-chart" else "320px") for k in figs}
    charts = {k: chart_div(f, k, height=heights[k]) for k, f in figs.items()}
    outcome = str(data["outcome"])
    title = title or f"shiftover report: {data['journal_key']} run {data['run']['run_id']}"
    badges = []
    if data.get("environment"):
        badges.append(f'<span class="badge env">environment: {_e(data["environment"])}</span>')
    if data.get("rehearsal"):
        badges.append('<span class="badge rehearsal">rehearsal</span>')
    cards = "\n".join(
        f'<div class="card"><div class="label">{_e(k)}</div><div class="value">{_e(v)}</div>'
        f'<div class="detail">{_e(d)}</div></div>' for k, v, d in _headline(data))
    facts = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _facts(data))
    reason_cls = {"promoted": "pass", "rolled_back": "fail"}.get(outcome, "")
    reason = (f'<p class="reason {reason_cls}" id="reason">{_e(data["reason"])}</p>'
              if data["reason"] else "")
    gate_charts = "\n".join(_gate_heading(g) + charts[f"gate-chart-{n + 1}"]
                            for n, g in enumerate(data["gates"]))
    if not data["gates"]:
        gate_charts = '<p class="note">no check was journalled in this run</p>'
    generated = ""
    if data.get("generated_at") is not None:
        where = (data.get("journal") or {}).get("where")
        generated = (f"<p class=\"note\">Generated {_e(utc_text(data['generated_at']))} by "
                     f"shiftover {_e(data.get('version') or '')} from the journal"
                     + (f" at {_e(where)}" if where else "") + ".</p>")
    outcome_cls = outcome if outcome in ("promoted", "rolled_back") else "other"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>{_CSS}</style>
{plotly_js_tag()}
</head>
<body>
<h1>{_e(data['service'])}: <span class="outcome-{outcome_cls}" id="outcome">{_e(data['outcome_text'])}</span></h1>
<p>{''.join(badges)}run {_e(data['run']['run_id'])}, {_e(utc_text(data['run']['started_at']))}</p>
<div class="cards" id="figures">
{cards}
</div>
{reason}
<table id="facts">
{facts}
</table>
<h2>Weight on the new environment</h2>
<p class="note">The split the router confirmed after each write (or showed, when the run
reconciled with it). Shaded: the part of each step that counted as its bake (a check
without a verdict restarts it). Drag to zoom, double-click to reset; times are UTC.</p>
{charts['weight-chart']}
<h2>Steps</h2>
{_steps_table(data)}
<h2>The normal state: every gate at every check</h2>
{_failing_table(data)}
<p class="note">Each check's value against the threshold the run held it to (dashed);
markers by verdict (green pass, red fail, amber no verdict); checks without a value on the
strip along the bottom. Dotted lines: changes of split.</p>
{gate_charts}
{_hooks_table(data)}
<h2>Approvals, pauses and rollbacks</h2>
{_actions_table(data)}
{_afterwards(data)}
<h2>Event log</h2>
{_events_table(data)}
{generated}
</body></html>
"""


def write_html(data: Mapping[str, Any], path: Path) -> Path:
    path.write_text(render_html(data), encoding="utf-8")
    return path


# --- Markdown ------------------------------------------------------------------------------------


def _code(text: Any) -> str:
    """Inline code: no Markdown, no autolink, pipes escaped for a table cell."""
    s = " ".join(str(text).split()).replace("|", "\\|")
    if not s:
        return ""
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


_MD_SAFE = re.compile(r"^[\w\s%.,:;/()+=<>'-]*$")


def _md_text(text: Any) -> str:
    """Our own plain words as they are; anything that Markdown would read (or link:
    ``user@host``, URLs) as inline code."""
    s = " ".join(str(text).split())
    return s if _MD_SAFE.match(s) and "://" not in s and "www." not in s else _code(s)


def render_markdown(data: Mapping[str, Any], *, html_command: str | None = None) -> str:
    """A compact summary for a pull-request comment: outcome, figures, the steps,
    the failing gates. No links (the HTML page is not hosted anywhere);
    ``html_command`` is the command that writes this run's HTML report."""
    env = f" · environment {_code(data['environment'])}" if data.get("environment") else ""
    rehearsal = " · rehearsal" if data.get("rehearsal") else ""
    lines = [
        f"### shiftover: {_code(data['journal_key'])} {data['outcome_text']}",
        "",
        f"run {_code(data['run']['run_id'])} · {utc_text(data['run']['started_at'])}{env}"
        f"{rehearsal}",
        "",
    ]
    if data["reason"]:
        lines += [f"> {_code(data['reason'])}", ""]
    lines += ["| | |", "|---|---|"]
    for label, value, detail in _headline(data):
        lines.append(f"| {label} | **{value}** — {_md_text(detail)} |" if detail
                     else f"| {label} | **{value}** |")
    lines.append("")
    if data["steps"]:
        lines += ["#### Steps", "",
                  "| step | time there | bake counted | checks pass/fail/no verdict | ended |",
                  "|---|---|---|---|---|"]
        for s in data["steps"]:
            c = s["checks"]
            bake = _bake_text(s)
            ended = "rolled back" if s["ended"].startswith("rolled back") else s["ended"]
            lines.append(f"| {s['label']} | {duration_text(s['seconds'])} | {bake} | "
                         f"{c.get('pass', 0)}/{c.get('fail', 0)}/{c.get('inconclusive', 0)} | "
                         f"{_md_text(ended)} |")
        lines.append("")
    if data["failing_gates"]:
        lines += ["#### Failing gates", "",
                  "| gate | failed checks | last failing value | threshold | reason |",
                  "|---|---|---|---|---|"]
        for g in data["failing_gates"]:
            mark = " (caused the rollback)" if g["caused_rollback"] else ""
            lines.append(f"| {_code(g['gate'])}{mark} | {g['fails']} | {_value_text(g['value'])} "
                         f"| {_code(g['threshold'] or '-')} | {_code(g['reason'])} |")
        lines.append("")
    else:
        lines += ["No gate failed.", ""]
    hooks = data.get("hooks") or []
    if hooks:
        lines += ["#### Hooks", ""]
        for h in hooks:
            what = "undo of hook" if h["phase"] == "undo" else "hook"
            lines.append(f"- {utc_text(h['started_at'], date=False)} {what} {_code(h['hook'])} "
                         f"at {h['at']}: {_md_text(h['summary'])}")
        lines.append("")
    acts = [a for a in data["actions"] if a["operator"]]
    if acts:
        lines += ["#### Operators", ""]
        for a in acts:
            lines.append(f"- {utc_text(a['at'], date=False)} {a['kind'].replace('_', ' ')} by "
                         f"{_code(a['who'])}" + (f": {_code(a['why'])}" if a["why"] else ""))
        lines.append("")
    after = data.get("afterwards") or []
    if after:
        lines += ["#### Afterwards", "", "Once this run had ended (not part of its figures):", ""]
        for a in after:
            lines.append(f"- {utc_text(a['at'])} {a['kind'].replace('_', ' ')} by "
                         f"{_code(a['who'])}" + (f": {_code(a['why'])}" if a["why"] else ""))
        lines.append("")
    command = mask_userinfo(html_command or "shiftover report PLAN --run RUN_ID -o report.html")
    lines.append(f"<sub>{len(data['events'])} events in the journal for this run; the HTML "
                 f"report ({_code(command)})"
                 " has the charts and the full log.</sub>")
    return "\n".join(lines) + "\n"


def to_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str)
