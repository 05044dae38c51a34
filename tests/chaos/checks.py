"""The guarantees, checked from outside: the journal, the poller and the proxy log.

Pure functions over what :mod:`tests.chaos.harness` recorded. Each rule returns
:class:`Violation` records with the numbers that show it, so a failing test says
*what* happened (which run, which split, when), not just that something did.

The rules (names are what the failure messages and docs/reliability.md use):

- ``ceiling`` (poller): every state HAProxy served is at or below the highest
  split confirmed so far in the campaign, or within the change in flight: between
  the split HAProxy had when the latest intent was journalled and that intent's
  target. A run killed half-way leaves its change in flight until the next run
  journals an intent of its own.
- ``write-ceiling`` (proxy replay): the same bound, for the split after *every*
  write, including states that last less than the poller's 10 ms; a write by a
  run that has journalled no intent yet is allowed only up to the split the run
  found when it started.
- ``monotone-change``: within one change (consecutive writes of one process), the
  new share moves from where it was toward the target, never beyond either end;
  ``overshoot`` is the unsafe half of it (beyond the higher end), checked everywhere.
  A dip below the lower end is a violation only when a path inside the band exists
  (``monotone_path_exists``): from 256/29 to 252/28 none does, and the safe side is
  below.
- ``monotone-rollback``: while a rollback is open in the journal, no write raises
  the new share.
- ``return-first``: a run that finds the router above the last confirmed split
  (a kill between intent and confirm) first returns to that split or below:
  its first intent is at or below it, and its first change ends at or below it.
- ``journal-rate``: a run appends at most ``burst + rate * seconds`` events over
  its life (rate = ``per_tick / interval``): a loop that does not sleep wrote
  400+ events/s.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .harness import SET_WEIGHT, JEvent, ProxyRecord, RunProcess, SplitState, fmt, split_percent

TOL = Fraction(1, 10**6)  # percent: old journals hold floats, not exact values
ZERO = Fraction(0)


@dataclass(frozen=True)
class Violation:
    rule: str
    at: float
    run: str
    detail: str

    def line(self, t0: float) -> str:
        return f"[{self.rule}] t+{self.at - t0:.3f}s {self.run}: {self.detail}"


def event_split(data: dict[str, Any], key: str = "percent") -> Fraction | None:
    """The split an event names: exact when it carries the exact percent (``exact``,
    ``router_exact``: "125/63") or backend integers (``weights: {old, new}``), else
    from its float percent (journals before issue 6's fix)."""
    exact = data.get("exact" if key == "percent" else key.replace("percent", "exact"))
    if isinstance(exact, str):
        try:
            return Fraction(exact)
        except (ValueError, ZeroDivisionError):
            pass
    for wkey in ("weights", f"{key}_weights", "backend"):
        w = data.get(wkey)
        if isinstance(w, dict) and "old" in w and "new" in w:
            return split_percent(int(w["old"]), int(w["new"]))
        if isinstance(w, list | tuple) and len(w) == 2:
            return split_percent(int(w[0]), int(w[1]))
    v = data.get(key)
    if v is None:
        return None
    try:
        return Fraction(str(v))
    except (ValueError, ZeroDivisionError):
        return None


# --- the journal, folded for the checks ------------------------------------------------


@dataclass
class Mark:
    at: float
    cmax: Fraction            # highest confirmed in the open campaign
    confirmed: Fraction | None  # last confirmed (None: no campaign open)
    rolling: bool


@dataclass
class JournalModel:
    marks: list[Mark]
    intents: list[tuple[float, Fraction, str]]       # (at, target, run_id)
    run_of_pid: dict[int, str]
    by_run: dict[str, list[JEvent]]

    def at(self, t: float) -> Mark:
        i = bisect.bisect_right([m.at for m in self.marks], t) - 1
        return self.marks[i] if i >= 0 else Mark(0.0, ZERO, None, False)

    def latest_intent_at(self, t: float) -> tuple[float, Fraction] | None:
        """(at, target) of the latest intent journalled at or before ``t``."""
        best = None
        for at, target, _ in self.intents:
            if at > t:
                break
            best = (at, target)
        return best

    def latest_intent(self, t: float, run_id: str | None = None) -> Fraction | None:
        best = None
        for at, target, rid in self.intents:
            if at > t:
                break
            if run_id is None or rid == run_id:
                best = target
        return best


def model(journal: Sequence[JEvent]) -> JournalModel:
    marks: list[Mark] = []
    intents: list[tuple[float, Fraction, str]] = []
    run_of_pid: dict[int, str] = {}
    by_run: dict[str, list[JEvent]] = {}
    cmax, confirmed, rolling, open_ = ZERO, None, False, False
    for e in journal:
        by_run.setdefault(e.run_id, []).append(e)
        d = e.data
        if e.kind == "run_started":
            if "pid" in d:
                run_of_pid[int(d["pid"])] = e.run_id
            open_ = True
        elif e.kind == "weight_intended":
            p = event_split(d)
            if p is not None:
                intents.append((e.at, p, e.run_id))
        elif e.kind == "weight_confirmed":
            p = event_split(d)
            if p is not None:
                confirmed = p
                cmax = max(cmax, p)
        elif e.kind == "reconciled":
            p = event_split(d, "router_percent")
            if p is not None:
                if confirmed is None:  # a campaign's baseline: the router as found
                    cmax = max(cmax, p)
                confirmed = p
        elif e.kind == "rollback_started":
            rolling = True
        elif e.kind in ("promoted", "rolled_back"):
            cmax = Fraction(100) if e.kind == "promoted" else ZERO
            confirmed, rolling, open_ = None, False, False
        marks.append(Mark(e.at, cmax, confirmed if open_ else None, rolling))
    return JournalModel(marks, intents, run_of_pid, by_run)


def run_id_of(run: RunProcess, jm: JournalModel) -> str | None:
    if run.proc is not None and run.pid in jm.run_of_pid:
        return jm.run_of_pid[run.pid]
    if run.summary and run.summary.get("run_id"):
        return str(run.summary["run_id"])
    return None


# --- the proxy log, replayed --------------------------------------------------------------


@dataclass
class Write:
    at: float
    pid: int
    server: str
    weight: int
    before: tuple[int, int]
    after: tuple[int, int]
    change: int  # index of the change (consecutive writes of one pid) this write belongs to


def _parse_state(reply: str) -> tuple[int, int] | None:
    header: list[str] = []
    found: dict[str, int] = {}
    for ln in reply.splitlines():
        if ln.startswith("#"):
            header = ln[1:].split()
            continue
        if not header or not ln.strip():
            continue
        row = dict(zip(header, ln.split(), strict=False))
        try:
            found[row["srv_name"]] = int(row["srv_uweight"])
        except (KeyError, ValueError):
            continue
    if "old" in found and "new" in found:
        return found["old"], found["new"]
    return None


def replay(records: Sequence[ProxyRecord], start: tuple[int, int] | None) -> list[Write]:
    """Every forwarded weight write with the backend state before and after it.
    The state is re-synchronised from every ``show servers state`` reply."""
    state = start
    out: list[Write] = []
    change = 0
    last_pid_set: dict[int, bool] = {}
    for r in sorted(records, key=lambda r: r.sent):
        if not r.forwarded:
            continue
        if r.cmd.startswith("show servers state"):
            s = _parse_state(r.reply)
            if s is not None:
                state = s
            last_pid_set[r.pid] = False
            continue
        is_set = False
        for c in r.cmd.split(";"):
            m = SET_WEIGHT.match(c.strip())
            if not m or state is None:
                continue
            is_set = True
            if not last_pid_set.get(r.pid, False):
                change += 1
                last_pid_set[r.pid] = True
            w = int(m["weight"])
            before = state
            state = (w, state[1]) if m["server"] == "old" else (state[0], w)
            out.append(Write(r.done, r.pid, m["server"], w, before, state, change))
        if not is_set:
            last_pid_set[r.pid] = False
    return out


def pct(w: tuple[int, int]) -> Fraction | None:
    return split_percent(*w)


def monotone_path_exists(start: tuple[int, int], end: tuple[int, int], scale: int = 256) -> bool:
    """Whether single-server writes can take ``start`` to ``end`` with the new share
    always between the two ends (HAProxy's 0-scale integers). Some pairs have no such
    path: from 256/29 (10.18%) to 252/28 (10%) every first write leaves the band.
    Best-first search toward ``end``; a band with no path is narrow, so it is small."""
    a, b = pct(start), pct(end)
    if a is None or b is None:
        return False
    lo, hi = min(a, b) / 100, max(a, b) / 100

    def olds(n: int) -> range:  # x with lo <= n/(x+n) <= hi, x + n > 0
        first = 0 if hi == 1 else math.ceil(n * (1 - hi) / hi) if hi > 0 else (1 if n == 0 else scale + 1)
        last = scale if lo == 0 else min(scale, math.floor(n * (1 - lo) / lo))
        return range(max(first, 0 if n > 0 else 1), last + 1)

    def news(o: int) -> range:  # y with lo <= y/(o+y) <= hi, o + y > 0
        first = 0 if lo == 0 else scale + 1 if lo == 1 and o > 0 else math.ceil(lo * o / (1 - lo)) if lo < 1 else 1
        last = scale if hi == 1 else math.floor(hi * o / (1 - hi))
        return range(max(first, 0 if o > 0 else 1), min(last, scale) + 1)

    def dist(w: tuple[int, int]) -> int:
        return abs(w[0] - end[0]) + abs(w[1] - end[1])

    seen = {start}
    todo = [(dist(start), start)]
    while todo:
        _, (o, n) = heapq.heappop(todo)
        if (o, n) == end:
            return True
        for nxt in [(x, n) for x in olds(n)] + [(o, y) for y in news(o)]:
            if nxt not in seen:
                seen.add(nxt)
                heapq.heappush(todo, (dist(nxt), nxt))
    return False


# --- the rules ---------------------------------------------------------------------------------


def state_at(states: Sequence[SplitState], t: float) -> Fraction | None:
    """The split the poller saw at ``t`` (the last state first seen at or before it)."""
    best = None
    for s in states:
        if s.first > t:
            break
        if s.split is not None:
            best = s.split
    return best


def check_ceiling(states: Sequence[SplitState], jm: JournalModel, t_from: float,
                  label_at: Any) -> list[Violation]:
    """Every state is at or below the highest confirmed split, or within the change in
    flight: between the split HAProxy had when the latest intent was journalled and
    that intent's target (a change killed half-way stays in flight until the next
    run journals its own intent)."""
    out = []
    ordered = sorted(states, key=lambda s: s.first)
    for s in ordered:
        p = s.split
        if p is None or s.first < t_from:
            continue
        m = jm.at(s.first)
        intent = jm.latest_intent_at(s.first)
        flight = ZERO
        if intent is not None:
            at, target = intent
            flight = max(target, state_at(ordered, at) or ZERO)
        allowed = max(m.cmax, flight)
        if p > allowed + TOL:
            out.append(Violation(
                "ceiling", s.first, label_at(s.first),
                f"HAProxy served {fmt(p)} (weights {s.old}/{s.new}) for {s.last - s.first:.3f}s; "
                f"highest confirmed {fmt(m.cmax)}, change in flight up to {fmt(flight)}"))
    return out


def check_writes(writes: Sequence[Write], jm: JournalModel, runs: Sequence[RunProcess],
                 label_of_pid: dict[int, str], *, strict_monotone: bool = True) -> list[Violation]:
    """``write-ceiling``, ``monotone-rollback``, and per change ``overshoot`` (a split
    beyond the higher end of the change) or, with ``strict_monotone``, any split
    outside [start, end] (``monotone-change``)."""
    out: list[Violation] = []
    by_pid_run = {r.pid: r for r in runs if r.proc is not None}
    first_change: dict[int, int] = {}
    changes: dict[int, list[Write]] = {}
    for w in writes:
        changes.setdefault(w.change, []).append(w)
        first_change.setdefault(w.pid, w.change)
    for w in writes:
        run = by_pid_run.get(w.pid)
        label = label_of_pid.get(w.pid, f"pid {w.pid}")
        rid = run_id_of(run, jm) if run is not None else None
        after = pct(w.after)
        before = pct(w.before)
        if after is None:
            out.append(Violation("write-ceiling", w.at, label,
                                 f"write {w.server}={w.weight} left both weights at 0 (no traffic served)"))
            continue
        m = jm.at(w.at)
        own = jm.latest_intent(w.at, rid) if rid is not None else None
        found = run.router_before if run is not None else None
        allowed = max(m.cmax, own if own is not None else ZERO)
        if first_change.get(w.pid) == w.change and found is not None:
            allowed = max(allowed, found)
        if after > allowed + TOL:
            out.append(Violation(
                "write-ceiling", w.at, label,
                f"write {w.server}={w.weight} made {w.before[0]}/{w.before[1]} -> "
                f"{w.after[0]}/{w.after[1]} = {fmt(after)}; highest confirmed {fmt(m.cmax)}, "
                f"this run's intent {fmt(own)}, found {fmt(found)}"))
        if m.rolling and before is not None and after > before + TOL:
            out.append(Violation(
                "monotone-rollback", w.at, label,
                f"during a rollback, write {w.server}={w.weight} raised the new share "
                f"{fmt(before)} -> {fmt(after)}"))
    for ws in changes.values():
        start, end = pct(ws[0].before), pct(ws[-1].after)
        if start is None or end is None or len(ws) < 2:
            continue
        lo, hi = min(start, end), max(start, end)
        for w in ws[:-1]:
            mid = pct(w.after)
            over = mid is None or mid > hi + TOL
            dip = (strict_monotone and mid is not None and mid < lo - TOL
                   and monotone_path_exists(ws[0].before, ws[-1].after))
            if over or dip:
                out.append(Violation(
                    "overshoot" if over else "monotone-change", w.at,
                    label_of_pid.get(w.pid, f"pid {w.pid}"),
                    f"change {fmt(start)} -> {fmt(end)} passed through {fmt(mid)} "
                    f"(weights {w.after[0]}/{w.after[1]} after writing {w.server}={w.weight})"))
    return out


def check_return_first(runs: Sequence[RunProcess], jm: JournalModel,
                       writes: Sequence[Write], journal_tail: float) -> list[Violation]:
    """For every run after a killed run: back to the last confirmed split first."""
    out = []
    for prev, run in itertools.pairwise(runs):
        if prev.killed_at is None or run.router_before is None or run.proc is None:
            continue
        m = jm.at(run.started)
        c = m.confirmed
        found = run.router_before
        if c is None or found <= c + TOL:
            continue
        rid = run_id_of(run, jm)
        events = jm.by_run.get(rid or "", [])
        first_intent = next((e for e in events if e.kind == "weight_intended"), None)
        advanced = next((e for e in events if e.kind == "step_advanced"), None)
        if first_intent is not None:
            target = event_split(first_intent.data)
            if target is not None and target > c + TOL:
                out.append(Violation("return-first", first_intent.at, run.label,
                                     f"found {fmt(found)} above the last confirmed {fmt(c)}, "
                                     f"but its first intent was {fmt(target)}"))
            if advanced is not None and advanced.id < first_intent.id:
                out.append(Violation("return-first", advanced.at, run.label,
                                     f"found {fmt(found)} above the last confirmed {fmt(c)} and "
                                     "advanced a step before returning"))
        mine = [w for w in writes if w.pid == run.pid]
        if mine:
            first = [w for w in mine if w.change == mine[0].change]
            end = pct(first[-1].after)
            peak = max((pct(w.after) or ZERO) for w in first)
            # killed inside that change (nothing of it after): only its peak can be judged
            cut = run.killed_at is not None and all(w.change == first[0].change for w in mine) \
                and run.kill_point in ("between_writes", "during_rollback", "before_verify")
            if (not cut and (end is None or end > c + TOL)) or peak > found + TOL:
                out.append(Violation("return-first", first[0].at, run.label,
                                     f"found {fmt(found)} above the last confirmed {fmt(c)}; its "
                                     f"first change peaked at {fmt(peak)} and ended at {fmt(end)}"))
        else:
            lived = (run.ended or journal_tail) - run.started
            if lived > 3.0:
                out.append(Violation("return-first", run.started, run.label,
                                     f"found {fmt(found)} above the last confirmed {fmt(c)} and made "
                                     f"no router write in {lived:.1f}s"))
    return out


@dataclass
class Rate:
    label: str
    events: int
    seconds: float
    started: float = 0.0

    @property
    def per_second(self) -> float:
        return self.events / max(self.seconds, 0.001)


def run_rates(runs: Sequence[RunProcess], jm: JournalModel, now: float) -> list[Rate]:
    out = []
    for run in runs:
        rid = run_id_of(run, jm)
        if rid is None:
            continue
        n = len(jm.by_run.get(rid, []))
        out.append(Rate(run.label, n, (run.ended or now) - run.started, run.started))
    return out


def check_rates(rates: Sequence[Rate], interval: float, per_tick: float = 8.0,
                burst: float = 30.0) -> list[Violation]:
    bound_rate = per_tick / interval
    return [
        Violation("journal-rate", r.started, r.label,
                  f"{r.events} events in {r.seconds:.1f}s = {r.per_second:.0f}/s "
                  f"(bound {burst:g} + {bound_rate:g}/s x {r.seconds:.1f}s = "
                  f"{burst + bound_rate * r.seconds:.0f})")
        for r in rates if r.events > burst + bound_rate * r.seconds
    ]


def peak_window_rate(journal: Sequence[JEvent], window: float = 1.0) -> float:
    """Most events appended in any ``window`` seconds (by ``at``), per second."""
    ts = sorted(e.at for e in journal)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best / window


# --- figures ------------------------------------------------------------------------------------


@dataclass
class Figures:
    values: dict[str, Any] = field(default_factory=dict)

    def put(self, **kw: Any) -> None:
        self.values.update(kw)


def split_summary(states: Sequence[SplitState], jm: JournalModel, t_from: float) -> dict[str, Any]:
    """Max split seen, max confirmed, and the largest excess over the confirmed ceiling."""
    seen = [s for s in states if s.split is not None and s.last >= t_from]
    max_seen = max((s.split for s in seen if s.split is not None), default=ZERO)
    max_conf = max((m.cmax for m in jm.marks), default=ZERO)
    excess = ZERO  # over the highest confirmed split or the change in flight
    ordered = sorted(states, key=lambda s: s.first)
    for s in seen:
        m = jm.at(s.first)
        intent = jm.latest_intent_at(s.first)
        flight = ZERO if intent is None else max(intent[1], state_at(ordered, intent[0]) or ZERO)
        assert s.split is not None
        excess = max(excess, s.split - max(m.cmax, flight))
    return {"max_split_seen": float(max_seen), "max_confirmed": float(max_conf),
            "max_excess_over_ceiling": float(excess), "poller_states": len(seen)}


def rate_summary(rates: Sequence[Rate]) -> dict[str, Any]:
    per = [r.per_second for r in rates if r.seconds >= 0.5]
    return {"runs_journalled": len(rates),
            "events_per_s_median": round(statistics.median(per), 1) if per else None,
            "events_per_s_max": round(max(per), 1) if per else None,
            "events_max_run": max((r.events for r in rates), default=0)}


def kinds(journal: Sequence[JEvent]) -> Counter[str]:
    return Counter(e.kind for e in journal)


# --- a readable timeline, for failures and the docs ---------------------------------------------


def timeline(journal: Sequence[JEvent], states: Sequence[SplitState], records: Sequence[ProxyRecord],
             runs: Sequence[RunProcess], notes: Sequence[tuple[float, str]], t0: float,
             limit_per_run: int = 60) -> str:
    """Journal events, router writes (by run), poller states and harness actions, merged by time.
    Runs of repeated events are collapsed (a loop writes thousands)."""
    label_of_pid = {r.pid: r.label for r in runs if r.proc is not None}
    rows: list[tuple[float, str]] = []
    for r in runs:
        rows.append((r.started, f"harness  start {r.label} (pid {r.proc.pid if r.proc else '?'}), "
                                f"router at {fmt(r.router_before)}"))
        if r.killed_at is not None:
            rows.append((r.killed_at, f"harness  SIGKILL {r.label} ({r.kill_point})"))
        elif r.ended is not None:
            rows.append((r.ended, f"harness  {r.label} exited rc={r.rc}"))
    for t, text in notes:
        rows.append((t, f"harness  {text}"))
    for s in states:
        rows.append((s.first, f"poller   {s.old}/{s.new} = {fmt(s.split)} {s.admin} "
                              f"(seen {s.last - s.first:.3f}s)"))
    for rec in records:
        if SET_WEIGHT.match(rec.cmd) or not rec.forwarded:
            who = label_of_pid.get(rec.pid, f"pid {rec.pid}")
            what = rec.cmd if rec.forwarded else f"{rec.cmd} (held: trap fired)"
            rows.append((rec.done, f"router   {who}: {what}"))
    seen: Counter[str] = Counter()
    extra: dict[str, tuple[float, int]] = {}
    for e in journal:
        d = {k: v for k, v in e.data.items() if k not in ("plan", "results", "gates", "host")}
        text = json.dumps(d, default=str)
        key = f"{e.run_id} {e.kind} {text}"
        if e.kind == "check":
            text = " ".join(f"{r.get('gate', '?')[:24]}={r.get('verdict')}"
                            for r in e.data.get("results", [])) + f" failures={d.get('consecutive_failures')}"
            key = f"{e.run_id} {e.kind} {e.id}"
        seen[key] += 1
        if seen[key] > 3:  # a loop: keep the first three, then count
            extra[key] = (e.at, seen[key] - 3)
            continue
        rows.append((e.at, f"journal  {e.run_id[:8]} #{e.id} {e.kind} {text[:200]}"))
    for key, (at, n) in extra.items():
        rid, kind, _ = key.split(" ", 2)
        rows.append((at, f"journal  {rid[:8]} ... {n} more identical {kind} events up to here"))
    rows.sort(key=lambda r: r[0])
    return "\n".join(f"t+{t - t0:8.3f}  {text}" for t, text in rows)
