"""One fault at a time, against a live run: what must still hold.

Every test runs a real ``shiftover run`` (its router behind the admin-socket
proxy, a 10 ms poller on HAProxy, live traffic), waits until it has confirmed a
step with traffic on the new environment, injects one fault, and checks the
outcome from HAProxy itself and from the journal:

- the new server dies (SIGKILL of its process)      -> rolled back: exit 3, 0% read back;
- Prometheus dies (the plan has a Prometheus gate)  -> holds (no advance, no rollback
  short of an error limit), then continues when it is back and promotes;
- HAProxy restarts (runtime weights back to config) -> the run reconciles, then climbs
  the steps again one at a time, never above what it has confirmed since;
- the journal is locked by another process while the new server fails
                                                    -> the router still goes to 0%;
- the lease is lost during a slow check (the check hangs, or the run is frozen,
  longer than the TTL; another process takes the lease and rolls back)
                                                    -> the old run writes nothing after.

Seconds from the fault to 0% are recorded (docs/reliability.md), never asserted.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest

from shiftover.demo.prometheus import PrometheusProcess

from .checks import (
    TOL,
    ZERO,
    JournalModel,
    Violation,
    check_ceiling,
    check_rates,
    check_writes,
    event_split,
    model,
    replay,
    run_rates,
    timeline,
)
from .conftest import PROFILE
from .harness import (
    ChaosStack,
    JEvent,
    JournalLock,
    RunProcess,
    Trap,
    chaos_stack,
    fmt,
    lease_expiry,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

INTERVAL = 0.25
BAKE = 1.0
GATE_TIMEOUT = 0.5
ROUTER_TIMEOUT = 0.5
LEASE_TTL = 1.5  # >= interval + slowest gate + router timeout = 1.25 s
STEPS = [10, 20, 30, 50, 100]
TRIALS = range(PROFILE.repeat)


# --- plans ------------------------------------------------------------------------------


def plan_text(s: ChaosStack, gates: list[str], *, service: str = "faults", extra: str = "",
              router_timeout: float = ROUTER_TIMEOUT) -> str:
    return (
        f"service: {service}\n"
        f"router: {{type: haproxy, socket: {s.proxy.path}, backend: web, old: old, new: new, "
        f"timeout: {router_timeout}s}}\n"
        f"steps: {STEPS}\n"
        f"bake: {BAKE}s\n"
        f"interval: {INTERVAL}s\n"
        "normal_state:\n" + "".join(gates) + "failure_limit: 2\n" + extra
    )


def stats_gate(s: ChaosStack) -> str:
    """The new server's error ratio from HAProxy's own counters (no Prometheus)."""
    return (
        "  - name: new environment error ratio\n"
        "    type: haproxy_stats\n"
        f"    socket: {s.haproxy.socket_path}\n"
        "    backend: web\n"
        "    server: new\n"
        "    max: 0.05\n"
        "    window: 2s\n"
        f"    timeout: {GATE_TIMEOUT}s\n"
    )


def deps_gate(s: ChaosStack, timeout: float = GATE_TIMEOUT) -> str:
    return (
        "  - name: dependencies answer\n"
        "    type: http\n"
        f"    url: {s.gate.url}\n"
        "    expect_status: 200\n"
        f"    timeout: {timeout}s\n"
    )


def probe_gate(s: ChaosStack) -> str:
    return (
        "  - name: new environment answers\n"
        "    type: http\n"
        f"    url: http://{s.new.address}/\n"
        "    expect_status: 200\n"
        f"    timeout: {GATE_TIMEOUT}s\n"
    )


PROM_QUERY = 'sum(rate(haproxy_backend_http_responses_total{proxy="web",code="5xx"}[5s]))'


def prom_gate(url: str) -> str:
    return (
        "  - name: backend 5xx rate (Prometheus)\n"
        "    type: prometheus\n"
        f"    url: {url}\n"
        f"    query: '{PROM_QUERY}'\n"
        "    max: 1\n"
        f"    timeout: {GATE_TIMEOUT}s\n"
    )


LIMITS = ("error_limit", "inconclusive_limit")


def limit_fields() -> list[str]:
    """The error/inconclusive limits this product's plan has (issue 6, section 4)."""
    from shiftover.plan import Plan

    props = Plan.model_json_schema().get("properties", {})
    return [name for name in LIMITS if name in props]


def limits_extra(value: int) -> str:
    return "".join(f"{name}: {value}\n" for name in limit_fields())


# --- helpers ---------------------------------------------------------------------------------


def wait_confirmed(run: RunProcess, at_least: float, timeout: float) -> dict[str, Any]:
    line = run.wait_line(lambda e: e.get("kind") == "weight_confirmed"
                         and (event_split(e.get("data", {})) or ZERO) >= at_least, timeout)
    if line is None:
        pytest.fail(f"{run.label} never confirmed {at_least:g}% within {timeout:g}s "
                    f"(rc={run.rc}); stderr: {run.stderr()[-800:]}", pytrace=False)
    return line


def end_run(run: RunProcess, timeout: float) -> int | None:
    """Wait for the run; SIGTERM it at the deadline (held, exit 4), SIGKILL if that fails."""
    rc = run.wait(timeout)
    if rc is None:
        run.signal(signal.SIGTERM)
        rc = run.wait(10)
        if rc is None:
            run.kill("deadline")
            rc = run.wait(5)
    return rc


def reason_of(run: RunProcess) -> str:
    """The reason on the run's own summary line (empty if it was killed before it)."""
    if run.summary is not None:
        return str(run.summary.get("reason", ""))
    return ""


def gate_verdicts(journal: list[JEvent], t_from: float, t_to: float = float("inf")) -> dict[str, int]:
    """How often each (gate, verdict) was journalled between two times."""
    c: Counter[str] = Counter()
    for e in journal:
        if e.kind == "check" and t_from <= e.at <= t_to:
            for r in e.data.get("results", []):
                c[f"{r.get('gate')}: {r.get('verdict')}"] += 1
    return dict(c)


def common_violations(s: ChaosStack, journal: list[JEvent], t0: float, t_end: float,
                      start: tuple[int, int] = (256, 0)) -> tuple[JournalModel, list[Violation]]:
    jm = model(journal)
    runs = list(s.runs)
    writes = replay(s.proxy.records(), start=start)
    label_of_pid = {r.pid: r.label for r in runs if r.proc is not None}

    def label_at(t: float) -> str:
        alive = [r for r in runs if r.started <= t <= (r.ended or t_end)]
        return alive[-1].label if alive else "no run"

    v = (check_ceiling(s.poller.snapshot(), jm, t0, label_at)
         + check_writes(writes, jm, runs, label_of_pid, strict_monotone=False)
         + check_rates(run_rates(runs, jm, t_end), INTERVAL))
    return jm, v


def finish(problems: list[str], violations: list[Violation], t0: float, where: Path) -> None:
    lines = [v.line(t0) for v in violations[:20]] + problems
    assert not lines, "\n".join([*lines, f"timeline: {where}"])


def save_timeline(s: ChaosStack, journal: list[JEvent], t0: float, artifact: Any) -> Path:
    path: Path = artifact("timeline.txt", timeline(journal, s.poller.snapshot(), s.proxy.records(),
                                                   s.runs, s.notes, t0))
    return path


# --- the new server dies ------------------------------------------------------------------------

VARIANTS = ["traffic", "probe"] if PROFILE.name == "long" else ["traffic"]


@pytest.mark.parametrize("trial", TRIALS)
@pytest.mark.parametrize("evidence", VARIANTS)
def test_new_server_killed_rolls_back(tmp_path: Path, evidence: str, trial: int,
                                      chaos_record: Any, chaos_artifact: Any) -> None:
    """``traffic``: the plan judges the new environment by HAProxy's counters only (the
    gate a rehearsal without Prometheus uses); ``probe`` adds an HTTP probe of it."""
    with chaos_stack(tmp_path) as s:
        gates = [stats_gate(s), deps_gate(s)] + ([probe_gate(s)] if evidence == "probe" else [])
        plan = s.write_plan(plan_text(s, gates))
        t0 = time.time()
        run = s.start_run(plan, lease_ttl=LEASE_TTL)
        wait_confirmed(run, 20, 40)
        time.sleep(0.3)
        at_fault = s.router_split()
        t_fault = time.time()
        s.new.kill()
        s.note("new backend SIGKILLed")
        rc = end_run(run, 20)
        t_end = time.time()
        t_zero = s.poller.wait_for(lambda p: p == 0, 0, since=t_fault)
        final = s.router_split()
        after = [x.split for x in s.poller.between(t_fault, t_end) if x.split is not None]
        failed = s.traffic.failed(s.traffic.totals(t_fault, t_end))
        journal = s.journal("faults")
        _jm, violations = common_violations(s, journal, t0, t_end)
        where = save_timeline(s, journal, t0, chaos_artifact)
    chaos_record(fault="new server SIGKILLed", evidence=evidence, rc=rc,
                 outcome=(run.summary or {}).get("outcome"), split_at_fault=fmt(at_fault),
                 max_split_after_fault=fmt(max(after, default=None)), final_split=fmt(final),
                 seconds_fault_to_zero=None if t_zero is None else round(t_zero - t_fault, 2),
                 client_failures_after_fault=failed, reason=reason_of(run)[:200],
                 verdicts_after_fault=gate_verdicts(journal, t_fault), violations=len(violations))
    problems = []
    if rc != 3 or final != 0:
        problems.append(f"the run did not roll back: exit {rc}, HAProxy reads {fmt(final)} on new "
                        f"{t_end - t_fault:.1f}s after the kill ({failed} client requests failed "
                        f"since); reason: {reason_of(run)[:300]!r}; verdicts since the kill: "
                        f"{gate_verdicts(journal, t_fault)}")
    if at_fault is not None and any(p > at_fault + TOL for p in after):
        problems.append(f"the run moved up after the new server died: {fmt(at_fault)} -> "
                        f"{fmt(max(after))}")
    finish(problems, violations, t0, where)


# --- Prometheus dies ------------------------------------------------------------------------------

OUTAGE = 3.0


def wait_prometheus_answers(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/api/v1/query", params={"query": PROM_QUERY}, timeout=2.0)
            if r.json()["data"]["result"]:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    pytest.fail(f"Prometheus at {url} never answered {PROM_QUERY} with data", pytrace=False)


@pytest.mark.parametrize("trial", TRIALS)
def test_prometheus_killed_holds_then_continues(tmp_path: Path, trial: int, chaos_record: Any,
                                                chaos_artifact: Any) -> None:
    with chaos_stack(tmp_path) as s:
        jobs = [("haproxy", [f"127.0.0.1:{s.haproxy.metrics_port}"])]
        prom = PrometheusProcess(tmp_path / "prom", jobs=jobs).start()
        s.own(prom.stop)
        prom.wait_for_targets(20)
        wait_prometheus_answers(prom.url)
        # limits far above the outage and the restart (~45 checks): "hold" is what we look at
        limit_field = limit_fields()
        plan = s.write_plan(plan_text(s, [prom_gate(prom.url), deps_gate(s)],
                                      extra=limits_extra(400)))
        t0 = time.time()
        run = s.start_run(plan, lease_ttl=LEASE_TTL)
        wait_confirmed(run, 20, 40)
        at_down = s.router_split()
        t_down = time.time()
        assert prom.pid is not None
        os.kill(prom.pid, signal.SIGKILL)
        prom.stop()
        s.note("Prometheus SIGKILLed")
        run.wait(OUTAGE)
        t_up = time.time()
        again = PrometheusProcess(tmp_path / "prom", jobs=jobs, port=prom.port).start()
        s.own(again.stop)
        s.note("Prometheus restarted")
        rc = end_run(run, 60)
        t_end = time.time()
        final = s.router_split()
        journal = s.journal("faults")
        _jm, violations = common_violations(s, journal, t0, t_end)
        held = [x for x in s.poller.between(t_down, t_up) if x.split is not None]
        where = save_timeline(s, journal, t0, chaos_artifact)
    grace = INTERVAL + GATE_TIMEOUT + 0.1  # a check already under way when Prometheus died
    moved = [e for e in journal if t_down + grace < e.at <= t_up
             and e.kind in ("step_advanced", "weight_intended", "rollback_started")]
    splits = {x.split for x in held if x.first > t_down + grace}
    t_next = next((e.at for e in journal if e.kind == "step_advanced" and e.at > t_up), None)
    chaos_record(fault="Prometheus SIGKILLed for 3 s", rc=rc, outcome=(run.summary or {}).get("outcome"),
                 split_at_outage=fmt(at_down), splits_during_outage=sorted(fmt(p) for p in splits),
                 verdicts_during_outage=gate_verdicts(journal, t_down + grace, t_up),
                 seconds_restart_to_next_step=None if t_next is None else round(t_next - t_up, 2),
                 limits_set=limit_field, final_split=fmt(final), violations=len(violations))
    problems = []
    for e in moved:
        problems.append(f"during the outage (t+{e.at - t0:.2f}s) the run journalled {e.kind} "
                        f"{e.data.get('reason', e.data.get('to_percent', e.data.get('percent', '')))}")
    if any(p != at_down for p in splits):
        problems.append(f"HAProxy's split changed during the outage: {fmt(at_down)} -> "
                        f"{sorted(fmt(p) for p in splits)}")
    if rc != 0 or final != 100:
        problems.append(f"the run did not continue to promotion once Prometheus was back: exit {rc}, "
                        f"{fmt(final)} on new; reason: {reason_of(run)[:300]!r}")
    finish(problems, violations, t0, where)


@pytest.mark.skipif(PROFILE.name != "long", reason="long profile (make chaos) only")
@pytest.mark.parametrize("trial", TRIALS)
def test_prometheus_down_past_error_limit_is_stuck(tmp_path: Path, trial: int, chaos_record: Any,
                                                   chaos_artifact: Any) -> None:
    """The other side of 'holds': with ``error_limit: 4`` an outage that outlasts four
    checks makes the run stuck, and ``on_failure`` (rollback) runs, with a reason that says so."""
    if "error_limit" not in limit_fields():
        pytest.fail("the plan has no error_limit: a gate that cannot be evaluated holds the run "
                    "forever (issue 6, section 4)", pytrace=False)
    with chaos_stack(tmp_path) as s:
        jobs = [("haproxy", [f"127.0.0.1:{s.haproxy.metrics_port}"])]
        prom = PrometheusProcess(tmp_path / "prom", jobs=jobs).start()
        s.own(prom.stop)
        prom.wait_for_targets(20)
        wait_prometheus_answers(prom.url)
        plan = s.write_plan(plan_text(s, [prom_gate(prom.url), deps_gate(s)],
                                      extra="error_limit: 4\ninconclusive_limit: 400\n"))
        t0 = time.time()
        run = s.start_run(plan, lease_ttl=LEASE_TTL)
        wait_confirmed(run, 20, 40)
        t_down = time.time()
        assert prom.pid is not None
        os.kill(prom.pid, signal.SIGKILL)
        prom.stop()
        s.note("Prometheus SIGKILLed (not restarted)")
        rc = end_run(run, 30)
        t_end = time.time()
        t_zero = s.poller.wait_for(lambda p: p == 0, 0, since=t_down)
        final = s.router_split()
        journal = s.journal("faults")
        _jm, violations = common_violations(s, journal, t0, t_end)
        where = save_timeline(s, journal, t0, chaos_artifact)
    why = reason_of(run)
    chaos_record(fault="Prometheus SIGKILLed, error_limit 4", rc=rc, final_split=fmt(final),
                 seconds_down_to_zero=None if t_zero is None else round(t_zero - t_down, 2),
                 reason=why[:200], verdicts_after=gate_verdicts(journal, t_down),
                 violations=len(violations))
    problems = []
    if rc != 3 or final != 0 or "stuck" not in why.lower():
        problems.append(f"past the error limit the run should be stuck and roll back: exit {rc}, "
                        f"{fmt(final)} on new, reason {why[:300]!r}")
    finish(problems, violations, t0, where)


# --- HAProxy restarts -----------------------------------------------------------------------------


def step_walk(journal: list[JEvent], since: float) -> list[str]:
    """After a reconcile, confirmations must climb the steps one at a time."""
    problems = []
    current: Fraction | None = None
    for e in journal:
        if e.at < since:
            continue
        if e.kind == "reconciled":
            current = event_split(e.data, "router_percent")
        elif e.kind == "weight_confirmed" and current is not None:
            p = event_split(e.data)
            if p is None:
                continue
            above = [Fraction(x) for x in STEPS if Fraction(x) > current + TOL]
            if p > current + TOL and (not above or abs(p - above[0]) > TOL):
                problems.append(f"after the restart the run went from {fmt(current)} straight to "
                                f"{fmt(p)} (the next step was {fmt(above[0]) if above else 'none'})")
            current = p
    return problems


@pytest.mark.parametrize("trial", TRIALS)
def test_haproxy_restart_reconciles_without_exceeding_confirmed(
        tmp_path: Path, trial: int, chaos_record: Any, chaos_artifact: Any) -> None:
    with chaos_stack(tmp_path) as s:
        plan = s.write_plan(plan_text(s, [stats_gate(s), deps_gate(s)]))
        t0 = time.time()
        run = s.start_run(plan, lease_ttl=LEASE_TTL)
        wait_confirmed(run, 30, 40)
        at_restart = s.router_split()
        _, t_back = s.restart_haproxy()
        resumed = 0
        deadline = time.monotonic() + 60
        while run.alive() and time.monotonic() < deadline:
            # an outside decrease to 0% may pause the run (DESIGN.md): an operator resumes it
            paused = run.wait_line(lambda e: e.get("kind") == "paused" and e.get("at", 0) > t_back,
                                   0.5)
            if paused is not None and resumed == 0:
                s.cli("resume", str(plan), "--state", s.state_url, "-m", "chaos: HAProxy restarted")
                resumed += 1
        rc = end_run(run, 1)
        t_end = time.time()
        final = s.router_split()
        journal = s.journal("faults")
        _jm, violations = common_violations(s, journal, t0, t_end)
        after = s.poller.between(t_back, t_end)
        writes = [w for w in s.proxy.writes(run.pid) if w.sent > t_back]
        where = save_timeline(s, journal, t0, chaos_artifact)
    seen = next((e for e in journal if e.at > t_back and e.kind in ("reconciled", "paused")), None)
    problems = step_walk(journal, t_back)
    if writes and (seen is None or writes[0].sent < seen.at):
        problems.append(f"the run wrote the router ({writes[0].cmd}) before it journalled what it "
                        "found after the restart")
    # until it confirms a step again, HAProxy stays at what the restart left (0%)
    first_conf = next((e.at for e in journal if e.kind == "weight_confirmed" and e.at > t_back), t_end)
    intents = [e.at for e in journal if e.kind == "weight_intended" and e.at > t_back]
    until = min([first_conf, *intents])
    over = [x for x in after if x.split is not None and x.first < until and x.split > TOL]
    if over:
        problems.append(f"after the restart HAProxy served {fmt(over[0].split)} before the run "
                        "intended any step")
    if rc != 0 or final != 100:
        problems.append(f"the run did not go on to promotion after the restart: exit {rc}, "
                        f"{fmt(final)} on new; reason: {reason_of(run)[:300]!r}")
    chaos_record(fault="HAProxy restarted", rc=rc, split_at_restart=fmt(at_restart),
                 first_seen_after=None if seen is None else seen.kind,
                 seconds_restart_to_observed=None if seen is None else round(seen.at - t_back, 2),
                 operator_resumes=resumed, final_split=fmt(final),
                 client_failures=s.traffic.failed(s.traffic.totals(t_back - 1, t_back + 2)),
                 violations=len(violations))
    finish(problems, violations, t0, where)


# --- the journal is locked --------------------------------------------------------------------------

LOCK_HOLD = 15.0


@pytest.mark.parametrize("trial", TRIALS)
def test_journal_locked_still_rolls_back(tmp_path: Path, trial: int, chaos_record: Any,
                                         chaos_artifact: Any) -> None:
    with chaos_stack(tmp_path) as s:
        plan = s.write_plan(plan_text(s, [stats_gate(s), deps_gate(s)]))
        t0 = time.time()
        run = s.start_run(plan, lease_ttl=LEASE_TTL)
        wait_confirmed(run, 20, 40)
        lock = JournalLock(s.reaper, s.db_path)
        lock.acquire()
        s.note("journal locked (BEGIN EXCLUSIVE in another process)")
        t_fault = time.time()
        s.new.fail(1.0)
        s.note("new environment fails (500)")
        t_zero = s.poller.wait_for(lambda p: p == 0, LOCK_HOLD, since=t_fault)
        rc_locked = run.rc
        lock.release()
        t_release = time.time()
        s.note("journal unlocked")
        rc = end_run(run, 20)
        t_end = time.time()
        final = s.router_split()
        journal = s.journal("faults")
        _jm, violations = common_violations(s, journal, t0, t_end)
        where = save_timeline(s, journal, t0, chaos_artifact)
    after = [e.kind for e in journal if e.at > t_release]
    chaos_record(fault="journal locked + new fails", rc=rc, rc_while_locked=rc_locked,
                 seconds_fault_to_zero=None if t_zero is None else round(t_zero - t_fault, 2),
                 zero_before_unlock=t_zero is not None and t_zero < t_release,
                 final_split=fmt(final), journalled_after_unlock=dict(Counter(after)),
                 reason=reason_of(run)[:200], violations=len(violations))
    problems = []
    if t_zero is None or t_zero >= t_release:
        problems.append(f"HAProxy was not at 0% while the journal was locked ({LOCK_HOLD:g}s): "
                        f"the run {'exited ' + str(rc_locked) if rc_locked is not None else 'was still running'}"
                        f"; reason: {reason_of(run)[:300]!r}")
    if rc != 3 or final != 0:
        problems.append(f"the run did not end rolled back: exit {rc}, {fmt(final)} on new")
    finish(problems, violations, t0, where)


# --- the lease is lost during a slow check --------------------------------------------------------------

SLOW_GATE_TIMEOUT = 8.0
FROZEN_ROUTER_TIMEOUT = 4.0


LEASE_CASES = ([("slow_check", "rollback"), ("slow_check", "run"), ("frozen_run", "rollback"),
                ("frozen_run", "run")] if PROFILE.name == "long"
               else [("slow_check", "rollback"), ("frozen_run", "run")])


@pytest.mark.parametrize("trial", TRIALS)
@pytest.mark.parametrize(("how", "other"), LEASE_CASES)
def test_lease_lost_during_a_check_no_write_after(tmp_path: Path, how: str, other: str, trial: int,
                                                  chaos_record: Any, chaos_artifact: Any) -> None:
    """Run A has confirmed 20% and baked it: its next passing check moves a step up.

    ``slow_check``: that check's endpoint answers only when the other process is done
    (gate timeout 8 s; TTL 1.5 s, or the shortest the product accepts). ``frozen_run``:
    A is SIGSTOPped right after a passing check, when it has decided to move and not
    yet written (a VM or GC pause), until its lease has expired, then SIGCONTed.
    The frozen run's router timeout is 4 s so that its held read survives a pause of
    TTL + the other process's start (1.5 + ~1.2 s); a product that demands a TTL above
    that fails the read instead (and still must not write).

    The other process, once A's lease has expired (or when A's check has been held
    for a while): ``rollback`` is ``shiftover rollback`` (0%, by itself when no run is
    live); ``run`` is a second ``shiftover run``, which takes the lease and bakes.
    Whatever happens, A makes no router write once the other holds the lease, and says
    why it stopped; after a rollback, 0% stays."""
    notes: dict[str, Any] = {}
    with chaos_stack(tmp_path) as s:
        gate_timeout = SLOW_GATE_TIMEOUT if how == "slow_check" else GATE_TIMEOUT
        router_timeout = FROZEN_ROUTER_TIMEOUT if how == "frozen_run" else ROUTER_TIMEOUT
        plan = s.write_plan(plan_text(s, [deps_gate(s, gate_timeout)],
                                      router_timeout=router_timeout))
        t0 = time.time()
        a = s.start_run(plan, lease_ttl=LEASE_TTL, label="A")
        notes["lease_ttl"] = s.lease_ttl or LEASE_TTL
        notes["short_ttl_refused"] = s.refused_ttl
        wait_confirmed(a, 20, 40)
        time.sleep(BAKE + 0.1)  # the bake is over: the next passing check moves a step up
        trap = None
        if how == "slow_check":
            s.gate.hold_next(1, at_most=gate_timeout - 0.5)
            assert s.gate.wait_held(10), "the run made no check"
            s.note("a check of run A is held by the gate endpoint")
        else:
            gate = s.gate

            def just_checked(now: float) -> bool:
                return gate.last_answered is not None and now - gate.last_answered < 0.15

            trap = Trap(a.pid, "hold_read", 0, lambda: a.signal(signal.SIGSTOP), just_checked)
            s.proxy.arm(trap)
            deadline = time.monotonic() + 15
            while trap.fired_at is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert trap.fired_at is not None, "run A never read the router right after a check"
            s.note("run A SIGSTOPped after a check, before its next router command")
        t_slow = time.time()
        expires = lease_expiry(s.db_path)
        ttl = float(notes["lease_ttl"])
        latest = t_slow + (gate_timeout - 3.0 if how == "slow_check" else ttl + 1.0)
        wake = min(expires + 0.2 if expires is not None else t_slow + ttl + 0.3, latest)
        time.sleep(max(0.0, wake - time.time()))
        expires = lease_expiry(s.db_path)  # A could not renew since: did it expire?
        lease_expired = expires is not None and time.time() > expires
        b_pid, b_rc, b_at = 0, None, time.time()
        b_run: RunProcess | None = None
        if other == "rollback":
            b = s.cli("rollback", str(plan), "--state", s.state_url, "-m", "chaos: lease takeover",
                      "--timeout", "10")
            b_pid, b_rc, b_at = b.pid, b.rc, b.started
        else:
            b_run = s.start_run(plan, lease_ttl=LEASE_TTL, label="B")
            b_pid, b_at = b_run.pid, b_run.started
            if not b_run.alive():
                b_rc = b_run.rc
                s.note(f"run B refused: exit {b_rc}")
        if how == "slow_check":
            s.gate.release()
            s.note("the held check is answered (200)")
        else:
            assert trap is not None
            a.signal(signal.SIGCONT)
            trap.release.set()
            s.note("run A SIGCONTed; its held router command goes through")
        rc_a = end_run(a, 30)
        s.proxy.disarm()
        time.sleep(0.5)
        if b_run is not None:
            b_rc = end_run(b_run, 0.1)  # SIGTERM: B holds where it is (exit 4)
        t_end = time.time()
        final = s.router_split()
        journal = s.journal("faults")
        jm, violations = common_violations(s, journal, t0, t_end)
        a_writes = [w for w in s.proxy.writes(a.pid) if w.sent >= b_at]
        after_b = [x for x in s.poller.between(b_at, t_end) if x.split is not None]
        where = save_timeline(s, journal, t0, chaos_artifact)
    b_rid = jm.run_of_pid.get(b_pid)
    b_started = next((e.at for e in journal if e.run_id == b_rid and e.kind == "run_started"), None)
    a_rid = jm.run_of_pid.get(a.pid)
    said = reason_of(a)  # A's own summary line
    journalled = " | ".join(
        f"{e.kind}: {e.data.get('reason', e.data.get('error', ''))}" for e in journal
        if e.run_id == a_rid and e.at >= b_at and (e.kind == "run_stopped" or "lease" in e.kind))
    problems = []
    if b_started is not None or lease_expired:  # A's lease is gone: A is fenced off
        since, who = ((b_started, f"`shiftover {other}` took the lease") if b_started is not None
                      else (b_at, f"its lease expired and `shiftover {other}` acted"))
        late = [w for w in a_writes if w.sent >= since]
        if late:
            problems.append(f"run A wrote the router {len(late)} time(s) after {who} "
                            f"(t+{since - t0:.2f}s): "
                            + "; ".join(f"t+{w.sent - t0:.2f}s {w.cmd}" for w in late[:4]))
        if rc_a != 5 or "lease" not in said.lower():
            problems.append(f"run A ended exit {rc_a} without saying it lost the lease: {said[:300]!r}")
        if "lease" not in journalled.lower():
            problems.append("the journal does not say why run A stopped (nothing from A after "
                            f"t+{b_at - t0:.2f}s mentions the lease: {journalled[:200]!r}); "
                            f"its own output said {said[:200]!r}")
    zero_at = next((x.first for x in after_b if x.split == 0), None)
    if other == "rollback":  # whoever rolled back, 0% is where it ends and stays
        if zero_at is None or final != 0:
            problems.append(f"HAProxy is at {fmt(final)} after the rollback request (want 0%)")
        else:
            up = [x for x in after_b if x.first > zero_at and (x.split or ZERO) > 0]
            if up:
                problems.append(f"after 0% HAProxy served {fmt(up[0].split)} again "
                                f"(t+{up[0].first - t0:.2f}s): a stale write")
    chaos_record(fault=f"lease lost during a check ({how}, other: {other})",
                 lease_ttl=notes["lease_ttl"], short_ttl_refused=notes.get("short_ttl_refused"),
                 lease_expired=lease_expired, other_took_lease=b_started is not None,
                 other_rc=b_rc, old_run_rc=rc_a, old_run_said=said[:200],
                 old_run_journalled=journalled[:200],
                 old_run_writes_after_other_started=[w.cmd for w in a_writes],
                 seconds_request_to_zero=None if zero_at is None or other != "rollback"
                 else round(zero_at - b_at, 2),
                 final_split=fmt(final), violations=len(violations))
    finish(problems, violations, t0, where)
