"""`compare` and `compare_latency` gates in a real `shiftover run`, end to end.

The demo's stack (two sample apps, HAProxy, Prometheus scraping every second,
Locust through HAProxy), all on 127.0.0.1, driven by the CLI as users run it
(`shiftover run plan.yaml --json` in a subprocess, its state in tmp_path):

1. the new app is 150 ms slower than the old one: `compare_latency` finds the
   regression at the first step and the run rolls back at once (exit 3, 0% on
   HAProxy, the final FAIL's evidence in the journal);
2. both apps healthy, both compare gates: the run promotes (exit 0, 100% on
   HAProxy), with `compare` evidence at a step and "not applicable" at 100%.

Waits are bounded (the run's --max-duration, the subprocess timeout); every
process started here is stopped on the way out; no assertion on timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shiftover.demo.app import SampleAppProcess
from shiftover.demo.haproxy import HAProxyProcess
from shiftover.demo.prometheus import PrometheusProcess
from shiftover.demo.traffic import TrafficProcess
from shiftover.engine import events as ev
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.store import Event, open_store
from shiftover.types import Weights

pytestmark = pytest.mark.e2e

RATE = 150.0  # req/s through HAProxy: ~7 req/s on new at the 5% step
RUN_SECONDS = 120  # --max-duration of each run: the bound on a run that goes wrong
SERVICE = "compare-e2e"
LATENCY_MS = 150.0  # the new app's injected slowness in the regression test


@dataclass(frozen=True)
class Stack:
    workdir: Path
    haproxy: HAProxyProcess
    prometheus: PrometheusProcess
    old: SampleAppProcess
    new: SampleAppProcess
    state: str


@contextmanager
def demo_stack(workdir: Path) -> Iterator[Stack]:
    """The demo's building blocks, as `shiftover demo` starts them; all stopped on exit."""
    with ExitStack() as stack:
        old = stack.enter_context(SampleAppProcess(port=0, name="old", workdir=workdir))
        new = stack.enter_context(SampleAppProcess(port=0, name="new", workdir=workdir))
        hap_dir = workdir / "haproxy"
        hap_dir.mkdir()
        haproxy = stack.enter_context(HAProxyProcess(
            hap_dir, old_address=old.url.removeprefix("http://").rstrip("/"),
            new_address=new.url.removeprefix("http://").rstrip("/"),
            old_name="ec2", new_name="eks", old_weight=256, new_weight=0))
        prom_dir = workdir / "prometheus"
        prom_dir.mkdir()
        prom = stack.enter_context(PrometheusProcess(prom_dir, jobs=[
            ("haproxy", [haproxy.metrics_url.split("/")[2]]),
            ("app", [old.url.split("/")[2], new.url.split("/")[2]]),
        ]))
        stack.enter_context(TrafficProcess(haproxy.frontend_url.rstrip("/"), RATE,
                                           workdir / "traffic.jsonl", duration=600))
        prom.wait_for_targets(timeout=30)
        yield Stack(workdir, haproxy, prom, old, new, f"sqlite:///{workdir}/state.db")


def p95(env: str) -> str:
    return ("histogram_quantile(0.95, sum by (le) (rate("
            f'http_request_duration_seconds_bucket{{instance_name="{env}"}}[3s])))')


def plan_yaml(st: Stack, gates: str) -> str:
    """Steps 5/25/50/100 at a 1 s interval, the given comparison gates, and an
    absolute guard on new alone (the plan requires one beside a comparison): the
    share of new's application requests answering 500 over 10 s, at most 0.5."""
    return f"""\
service: {SERVICE}
router:
  type: haproxy
  socket: {st.haproxy.socket_path}
  backend: web
  old: ec2
  new: eks
steps: [5, 25, 50, 100]
bake: 2s
interval: 1s
normal_state:
{gates}
  - name: new's error ratio (absolute guard)
    type: prometheus
    url: {st.prometheus.url}
    query: >-
      sum(rate(http_requests_total{{instance_name="new",code="500"}}[10s]))
      / sum(rate(http_requests_total{{instance_name="new"}}[10s]))
    max: 0.5
failure_limit: 2
inconclusive_limit: 20
on_failure: rollback
"""


def latency_gate(st: Stack, *, min_intervals: int, effect_size: float) -> str:
    return f"""\
  - name: new's p95 against old's
    type: compare_latency
    source:
      type: prometheus
      url: {st.prometheus.url}
      old: '{p95("old")}'
      new: '{p95("new")}'
    alpha: 0.01
    effect_size: {effect_size}
    min_intervals: {min_intervals}
"""


def errors_gate(st: Stack) -> str:
    return f"""\
  - name: new fails more often than old
    type: compare
    source:
      type: haproxy_stats
      socket: {st.haproxy.socket_path}
      backend: web
      old: ec2
      new: eks
    alpha: 0.01
    min_requests: 10
"""


def shiftover(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("shiftover")  # the console script users run
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "shiftover.cli", *args]


def run_plan(st: Stack, plan_text: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    plan = st.workdir / "plan.yaml"
    plan.write_text(plan_text)
    proc = subprocess.run(
        shiftover("run", str(plan), "--json", "--state", st.state,
                  "--max-duration", f"{RUN_SECONDS}s"),
        capture_output=True, text=True, timeout=RUN_SECONDS + 60)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert lines and lines[-1].get("summary"), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, lines[-1]


def haproxy_weights(st: Stack) -> dict[str, int]:
    states = HAProxyRuntime(st.haproxy.socket_path, 2.0).servers_state("web")
    return {"ec2": states["ec2"].weight, "eks": states["eks"].weight}


def journal(st: Stack) -> list[Event]:
    with open_store(st.state) as store:
        return store.events(service=SERVICE)


def results_of(events: list[Event], gate: str, *, at: float | None = None) -> list[dict[str, Any]]:
    """Every check's result for the gate whose name starts with ``gate``; with
    ``at``, only the checks in which HAProxy served ``at`` percent on new."""
    return [r for e in events if e.kind == ev.CHECK
            and (at is None or (e.data["router"] or {}).get("percent") == at)
            for r in e.data["results"] if r["gate"].startswith(gate)]


def test_latency_regression_is_rolled_back_by_compare_latency(tmp_path: Path) -> None:
    with demo_stack(tmp_path) as st:
        st.new.set_fault(latency_ms=LATENCY_MS)  # new is slow from the start; old is fast
        proc, summary = run_plan(st, plan_yaml(st, latency_gate(st, min_intervals=5,
                                                                effect_size=1.5)))
        weights = haproxy_weights(st)
    output = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 3, output
    assert summary["outcome"] == "rolled_back" and summary["final_weight"] == 0, summary
    # the real HAProxy, read through its runtime API: nothing on the new environment
    assert weights["eks"] == 0 and weights["ec2"] > 0, weights

    events = journal(st)
    confirmed = [e.data["percent"] for e in events if e.kind == ev.WEIGHT_CONFIRMED]
    assert confirmed[0] == 5 and confirmed[-1] == 0, confirmed
    fails = [e for e in events if e.kind == ev.CHECK and e.data["verdict"] == "fail"]
    assert fails, "no failed check in the journal"
    latency = [r for r in fails[-1].data["results"] if r["gate"] == "new's p95 against old's"]
    assert latency and latency[0]["verdict"] == "fail", fails[-1].data["results"]
    evidence = latency[0]["evidence"]
    assert evidence["final"] is True and evidence["regression"] is True, evidence
    assert evidence["effect"] > 1.5, evidence
    assert evidence["intervals_new"] >= 5 and evidence["intervals_old"] >= 5, evidence
    assert evidence["p_value"] <= evidence["alpha_spent"], evidence
    # the absolute guard stayed green: the comparison alone decided
    guard = [r for r in fails[-1].data["results"] if r["gate"].startswith("new's error ratio")]
    assert guard and guard[0]["verdict"] != "fail", guard

    started = [e for e in events if e.kind == ev.ROLLBACK_STARTED]
    assert len(started) == 1, started
    reason = started[0].data["reason"]
    assert "sequential test" in reason and "final for the step" in reason, reason
    assert "new is slower than old" in reason, reason
    assert [g["gate"] for g in started[0].data["gates"]] == ["new's p95 against old's"]
    kinds = [e.kind for e in events]
    assert ev.ROLLED_BACK in kinds and kinds.index(ev.ROLLED_BACK) > kinds.index(ev.ROLLBACK_STARTED)


def test_healthy_run_with_both_compare_gates_promotes(tmp_path: Path) -> None:
    with demo_stack(tmp_path) as st:
        gates = errors_gate(st) + latency_gate(st, min_intervals=3, effect_size=2)
        proc, summary = run_plan(st, plan_yaml(st, gates))
        weights = haproxy_weights(st)
    output = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    assert summary["outcome"] == "promoted" and summary["final_weight"] == 100, summary
    # the real HAProxy, read through its runtime API: every request on new
    assert Weights.from_backend(weights["ec2"], weights["eks"]) == Weights(100), weights
    assert weights["ec2"] == 0 and weights["eks"] > 0, weights

    events = journal(st)
    confirmed = [e.data["percent"] for e in events if e.kind == ev.WEIGHT_CONFIRMED]
    assert confirmed == [5, 25, 50, 100], confirmed
    assert not [e for e in events if e.kind == ev.ROLLBACK_STARTED]

    compare = results_of(events, "new fails more often")
    assert all(r["verdict"] != "fail" for r in compare), [r for r in compare if r["verdict"] == "fail"]
    counted = [r for r in compare if r["verdict"] == "pass" and "new_requests" in (r.get("evidence") or {})]
    assert counted, "no compare PASS with counts before 100%"
    assert any(r["evidence"]["new_requests"] >= 10 for r in counted), counted[-1]
    assert all(r["evidence"]["final"] is False for r in counted)
    at_full = results_of(events, "new fails more often", at=100.0)
    assert at_full, "no compare result at 100%"
    assert all(r["verdict"] == "pass" and r["evidence"]["not_applicable"] is True
               and "not applicable" in r["reason"] for r in at_full), at_full

    latency = results_of(events, "new's p95 against old's")
    assert all(r["verdict"] != "fail" for r in latency), [r for r in latency if r["verdict"] == "fail"]
    passed = [r for r in latency if r["verdict"] == "pass"
              and not r["evidence"].get("not_applicable")]
    assert passed, "compare_latency never passed a step before 100%"
    assert all(r["evidence"]["final"] is False for r in latency if r.get("evidence"))
    latency_full = results_of(events, "new's p95 against old's", at=100.0)
    assert latency_full and all(r["verdict"] == "pass" and r["evidence"]["not_applicable"]
                                for r in latency_full), latency_full
