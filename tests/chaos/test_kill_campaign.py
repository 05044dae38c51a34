"""SIGKILL ``shiftover run`` at random points of a campaign, then run it again.

One real HAProxy with live traffic, two backend processes, the admin-socket
proxy (the plan's router points at it) and a 10 ms poller of the real split.
Each round starts a run (after the dead run's lease has expired) and kills it at
one of these points, chosen by a seeded generator:

- ``between_writes``: right after HAProxy applied the first weight write of the
  run's k-th change (the proxy holds the reply until the run is dead);
- ``before_verify``: after the change's last write, before the read-back;
- ``random``: after a random delay (0.3-3 s from the process start);
- ``mid_bake``: a random moment of a step's bake;
- ``mid_gate``: while the n-th gate check is being answered;
- ``during_rollback``: the new environment starts failing, and the run is
  killed inside the rollback's weight change; the next run must finish it
  (exit 3, 0% read back), then the new environment recovers.

A run that promotes before its kill point is followed by a clean rollback round
(so the next kill lands in an open campaign), and its kill point is tried again
later. The last run is not killed and
must promote, with 100% read back from HAProxy. The rules checked afterwards are
described in ``checks.py``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from .checks import (
    TOL,
    check_ceiling,
    check_rates,
    check_return_first,
    check_writes,
    event_split,
    kinds,
    model,
    peak_window_rate,
    rate_summary,
    replay,
    run_rates,
    split_summary,
    timeline,
)
from .conftest import PROFILE
from .harness import ChaosStack, RunProcess, Trap, chaos_stack, fmt

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

INTERVAL = 0.2
BAKE = 0.6
GATE_TIMEOUT = 0.5
ROUTER_TIMEOUT = 0.5
# the product will refuse a TTL below interval + slowest gate + router timeout (1.2 s)
LEASE_TTL = 1.5
PER_RUN_DEADLINE = 15.0
RATE_BURST, RATE_PER_TICK = 30.0, 8.0  # journal-rate bound: 30 events + 8 per interval

PLAN = """\
service: chaos
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new, timeout: {router_timeout}s}}
steps: [10, 20, 30, 50, 100]
bake: {bake}s
interval: {interval}s
normal_state:
  - name: new environment answers
    type: http
    url: http://{new}/
    expect_status: 200
    timeout: {gate_timeout}s
  - name: dependencies answer
    type: http
    url: {gate}
    expect_status: 200
    timeout: {gate_timeout}s
failure_limit: 2
"""

KINDS = ("between_writes", "before_verify", "random", "mid_bake", "mid_gate", "during_rollback")
SHARES = {"between_writes": 0.25, "before_verify": 0.15, "random": 0.15, "mid_bake": 0.15,
          "mid_gate": 0.15, "during_rollback": 0.15}


def schedule(rng: random.Random, n: int) -> list[str]:
    counts = {k: max(1, round(n * s)) for k, s in SHARES.items()}
    while sum(counts.values()) > n:
        counts[max(counts, key=lambda k: counts[k])] -= 1
    while sum(counts.values()) < n:
        counts["between_writes"] += 1
    out = [k for k, c in counts.items() for _ in range(c)]
    rng.shuffle(out)
    return out


class Campaign:
    def __init__(self, stack: ChaosStack, plan: Path, rng: random.Random, budget: float) -> None:
        self.s = stack
        self.plan = plan
        self.rng = rng
        self.deadline = time.monotonic() + budget
        self.kills: list[dict[str, Any]] = []
        self.completions: list[dict[str, Any]] = []
        self.clean_rollbacks = 0
        self.runaway: list[str] = []
        self.notes: list[str] = []   # problems
        self.info: list[str] = []    # worth knowing, not a failure
        self.promoted = False

    # -- one run -----------------------------------------------------------------
    def start(self, label: str) -> RunProcess:
        return self.s.start_run_when_free(self.plan, lease_ttl=LEASE_TTL, label=label,
                                          deadline=min(self.deadline, time.monotonic() + 30))

    def watch(self, run: RunProcess, until: float) -> None:
        """Until the run ends or ``until`` (monotonic); a run that prints events at twice
        the journal-rate bound (checks.check_rates) is killed early (``runaway``): long
        enough to measure its rate, short enough to keep the campaign bounded."""
        t0 = time.monotonic()
        while run.alive() and time.monotonic() < until:
            time.sleep(0.05)
            elapsed = time.monotonic() - t0
            if len(run.lines) > 2 * (RATE_BURST + RATE_PER_TICK / INTERVAL * elapsed):
                self.runaway.append(f"{run.label}: {len(run.lines)} events in {elapsed:.1f}s")
                run.kill("runaway")
                return

    def finish(self, run: RunProcess) -> None:
        run.wait(10)
        run.router_after = self.s.router_split()

    def one(self, i: int, kind: str) -> None:
        run = self.start(f"k{i:02d}-{kind}")
        if kind == "during_rollback":
            self._during_rollback(run)
        else:
            self._arm(run, kind)
            self.watch(run, time.monotonic() + PER_RUN_DEADLINE)
            if run.alive():
                run.kill("deadline")
                self.notes.append(f"{run.label}: its kill point never came within "
                                  f"{PER_RUN_DEADLINE:g}s; killed at the deadline")
            self.s.proxy.disarm()
            self.s.gate.disarm()
        self.finish(run)
        self._record(run, kind)

    def _arm(self, run: RunProcess, kind: str) -> None:
        s, rng = self.s, self.rng
        if kind in ("between_writes", "before_verify"):
            when = "after_first_write" if kind == "between_writes" else "before_verify"
            s.proxy.arm(Trap(run.pid, when, rng.randint(1, 3), lambda: run.kill(kind)))
        elif kind == "mid_gate":
            s.gate.trap(rng.randint(1, 6), lambda: run.kill(kind))
        elif kind == "random":
            at = run.started + rng.uniform(0.3, 3.0)
            self.watch(run, time.monotonic() + max(0.0, at - time.time()))
            run.kill(kind)
        elif kind == "mid_bake":
            line = run.wait_line(lambda e: e.get("kind") in ("weight_confirmed", "bake_started"),
                                 PER_RUN_DEADLINE)
            if line is not None:
                self.watch(run, time.monotonic() + rng.uniform(0.05, BAKE - 0.05))
                run.kill(kind)

    def _during_rollback(self, run: RunProcess) -> None:
        s, rng = self.s, self.rng
        if (run.router_before or 0) == 0:  # nothing to roll back yet: wait for a step
            run.wait_line(lambda e: e.get("kind") == "weight_confirmed"
                          and (event_split(e.get("data", {})) or 0) > 0, PER_RUN_DEADLINE)
        if not run.alive():  # it ended before the new environment failed: no rollback to cut
            line = f"{run.label}: ended (exit {run.rc}) before its rollback began"
            (self.info if run.rc in (0, 3) else self.notes).append(line)
            self.finish(run)
            return
        when = rng.choice(("after_first_write", "before_verify"))
        s.proxy.arm(Trap(run.pid, when, s.proxy.changes_by(run.pid) + 1,
                         lambda: run.kill("during_rollback")))
        s.new.fail(1.0)
        s.note("new environment fails (500)")
        self.watch(run, time.monotonic() + PER_RUN_DEADLINE)
        if run.alive():
            run.kill("deadline")
            self.notes.append(f"{run.label}: the rollback's change never came")
        s.proxy.disarm()
        self.finish(run)
        # the next run must finish the rollback (new still failing), then new recovers
        done = self.start(f"{run.label}-completion")
        self.watch(done, time.monotonic() + 20)
        if done.alive():
            done.kill("deadline")
        self.finish(done)
        self.completions.append({"run": done.label, "rc": done.rc,
                                 "split_after": done.router_after,
                                 "seconds": (done.ended or time.time()) - done.started})
        s.new.fail(0.0)
        s.note("new environment recovers")
        self.promoted = False

    def _record(self, run: RunProcess, kind: str) -> None:
        self.kills.append({"run": run.label, "kind": kind, "point": run.kill_point,
                           "killed": run.killed_at is not None, "rc": run.rc,
                           "found": run.router_before, "left": run.router_after})
        if run.killed_at is None and run.rc == 0:
            self.promoted = True
        if run.killed_at is None and run.rc == 3:
            self.promoted = False

    def clean_rollback(self) -> None:
        """After a promotion: make new fail, let a run roll it back, let new recover."""
        self.s.new.fail(1.0)
        self.s.note("new environment fails (500) for a clean rollback round")
        run = self.start(f"rollback{self.clean_rollbacks}")
        self.watch(run, time.monotonic() + 20)
        if run.alive():
            run.kill("deadline")
        self.finish(run)
        self.s.new.fail(0.0)
        self.s.note("new environment recovers")
        self.clean_rollbacks += 1
        if run.rc == 3:
            self.promoted = False
        else:
            self.notes.append(f"{run.label}: clean rollback ended rc={run.rc}")

    def final(self) -> RunProcess:
        run = self.start("final")
        self.watch(run, time.monotonic() + 60)
        if run.alive():
            run.kill("deadline")
            self.notes.append("final: did not finish within 60s")
        self.finish(run)
        return run


@pytest.mark.timeout(300 if PROFILE.name == "quick" else 3600)
def test_sigkill_campaign_resumes_from_confirmed_and_promotes(
        tmp_path: Path, chaos_profile: Any, chaos_record: Any, chaos_artifact: Any) -> None:
    rng = random.Random(chaos_profile.seed)
    plan_kinds = schedule(rng, chaos_profile.kills)
    budget = 200.0 if chaos_profile.name == "quick" else 2400.0
    with chaos_stack(tmp_path) as s:
        plan = s.write_plan(PLAN.format(sock=s.proxy.path, new=s.new.address, gate=s.gate.url,
                                        interval=INTERVAL, bake=BAKE, gate_timeout=GATE_TIMEOUT,
                                        router_timeout=ROUTER_TIMEOUT))
        t0 = time.time()
        c = Campaign(s, plan, rng, budget)
        todo = list(plan_kinds)
        i = 0
        while todo:
            kind = todo.pop(0)
            if time.monotonic() > c.deadline:
                c.notes.append(f"campaign budget of {budget:g}s spent after {i} rounds")
                break
            if c.runaway and chaos_profile.name == "quick":
                c.notes.append(f"stopped after {i} rounds: a run did not sleep ({c.runaway[0]})")
                break
            if c.promoted:
                c.clean_rollback()
            c.one(i, kind)
            i += 1
            if not c.kills[-1]["killed"] and len(c.kills) < 2 * len(plan_kinds):
                todo.append(kind)  # it ended before its kill point (promoted): try again later
        final = c.final()
        t_end = time.time()
        final_split = s.router_split()
        traffic = s.traffic.totals(t0, t_end)
        states = s.poller.snapshot()
        records = s.proxy.records()
        journal = s.journal("chaos")
        runs = list(s.runs)
        notes = list(s.notes)

    jm = model(journal)
    writes = replay(records, start=(256, 0))
    label_of_pid = {r.pid: r.label for r in runs if r.proc is not None}

    def label_at(t: float) -> str:
        alive = [r for r in runs if r.started <= t <= (r.ended or t_end)]
        return alive[-1].label if alive else "between runs"

    violations = (check_ceiling(states, jm, t0, label_at)
                  + check_writes(writes, jm, runs, label_of_pid)
                  + check_return_first(runs, jm, writes, t_end))
    rates = run_rates(runs, jm, t_end)
    violations += check_rates(rates, INTERVAL, RATE_PER_TICK, RATE_BURST)

    killed = [k for k in c.kills if k["killed"]]
    by_point = Counter(k["point"] for k in killed)
    # what each killed run was doing, from the journal: its last intent's reason
    doing: Counter[str] = Counter()
    for k in killed:
        run = next(r for r in runs if r.label == k["run"])
        rid = jm.run_of_pid.get(run.pid)
        last = [e for e in jm.by_run.get(rid or "", []) if e.kind == "weight_intended"]
        done = bool(last) and any(e.kind in ("weight_confirmed", "weight_failed") and e.id > last[-1].id
                                  for e in jm.by_run.get(rid or "", []))
        doing[f"{last[-1].data.get('reason', '?')} {'done' if done else 'in flight'}"
              if last else "no change yet"] += 1
    left_partial = 0
    above: list[str] = []  # kills that left HAProxy above the last confirmed split
    for k in killed:
        run = next(r for r in runs if r.label == k["run"])
        m = jm.at(run.killed_at or 0)
        rid = next((rid for pid, rid in jm.run_of_pid.items() if pid == run.pid), None)
        intent = jm.latest_intent(run.killed_at or 0, rid)
        left = k["left"]
        if left is not None and all(x is None or abs(left - x) > TOL for x in (m.confirmed, intent)):
            left_partial += 1
        if left is not None and m.confirmed is not None and left > m.confirmed + TOL:
            above.append(f"{fmt(m.confirmed)} -> {fmt(left)}")
    chaos_record(
        kills_planned=len(plan_kinds), kills=len(killed), kill_points=dict(by_point),
        killed_runs_last_change=dict(doing),
        kills_leaving_a_split_between_confirmed_and_intent=left_partial,
        kills_leaving_more_than_confirmed=above,
        rollback_kill_completions=[(x["rc"], fmt(x["split_after"]), round(x["seconds"], 2))
                                   for x in c.completions],
        clean_rollback_rounds=c.clean_rollbacks, runs=len(runs), router_writes=len(writes),
        lease_ttl=s.lease_ttl or LEASE_TTL, final_rc=final.rc,
        final_outcome=(final.summary or {}).get("outcome"),
        final_split=fmt(final_split), campaign_seconds=round(t_end - t0, 1),
        poller_samples=s.poller.samples, journal_events=len(journal),
        journal_peak_events_per_1s=peak_window_rate(journal),
        journal_kinds=dict(kinds(journal).most_common(8)),
        traffic={f"{k[0]} {k[1]}": n for k, n in sorted(traffic.items())},
        violations=len(violations), violation_rules=dict(Counter(v.rule for v in violations)),
        runaway=c.runaway, notes=c.notes, info=c.info,
        **split_summary(states, jm, t0), **rate_summary(rates))

    where = chaos_artifact("timeline.txt", timeline(journal, states, records, runs, notes, t0))
    problems = [v.line(t0) for v in violations[:25]]
    if len(violations) > 25:
        problems.append(f"... and {len(violations) - 25} more")
    problems += [f"runaway journal: {x}" for x in c.runaway]
    problems += [f"note: {n}" for n in c.notes]
    for x in c.completions:
        if x["rc"] != 3 or x["split_after"] != 0:
            problems.append(f"{x['run']}: a run after a kill during a rollback ended rc={x['rc']} "
                            f"with {fmt(x['split_after'])} on new (want exit 3, 0%)")
    if len(killed) < len(plan_kinds):
        problems.append(f"only {len(killed)} of {len(plan_kinds)} planned kills were carried out")
    if final.rc != 0 or final_split != Fraction(100):
        problems.append(f"the campaign did not end promoted: final run rc={final.rc} "
                        f"({(final.summary or {}).get('reason', final.stderr()[-300:])!r}), "
                        f"HAProxy reads {fmt(final_split)} on new")
    assert not problems, "\n".join([*problems, f"timeline: {where}"])
