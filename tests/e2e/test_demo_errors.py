"""The `errors` scenario end to end on the real stack: the new app fails 5% of
requests from the 10% step on; the run must roll back to 0% by itself."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from shiftover.demo.scenario import DemoStack, run_demo
from shiftover.engine import events as ev
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.store import open_store

pytestmark = pytest.mark.e2e


def test_errors_scenario_rolls_back_to_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, Any] = {}

    def inspect(stack: DemoStack) -> None:
        rt = HAProxyRuntime(stack.haproxy.socket_path, 2.0)
        states = rt.servers_state("web")
        seen["eks"] = states["eks"].weight
        seen["ec2"] = states["ec2"].weight

    summary = run_demo("errors", as_json=True, rate=200, workdir=tmp_path,
                       console=Console(file=io.StringIO()), bake="3s", inspect=inspect)
    # the real HAProxy, read directly: nothing on the new environment
    assert seen["eks"] == 0 and seen["ec2"] > 0
    assert summary["outcome"] == "rolled_back" and summary["exit_code"] == 3
    assert summary["final_weight"] == 0
    assert summary["rollback_seconds"] is not None and summary["rollback_seconds"] > 0
    assert summary["failed_requests_after_fault"] >= 1
    assert summary["failing_gates"], "the summary names the gate that failed"
    # the compare gate decides: new fails more often than old, at always-valid p <= alpha
    compared = [g for g in summary["failing_gates"] if g["gate"].startswith("new fails more")]
    assert compared, summary["failing_gates"]
    assert all(g["value"] is not None and g["value"] <= 0.01 for g in compared)
    assert all("always-valid p" in g["reason"] for g in compared)

    # the JSON lines: events, then the summary object last
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert lines[-1]["outcome"] == "rolled_back"
    assert {"kind", "data", "at"} <= set(lines[0])

    # the journal tells the same story, in order
    with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        events = store.events(service="accounting-web")
    kinds = [e.kind for e in events]
    confirmed = [e.data["percent"] for e in events if e.kind == ev.WEIGHT_CONFIRMED]
    assert confirmed[:4] == [1, 2, 5, 10]
    assert max(confirmed) <= 25  # never got far past the fault
    assert confirmed[-1] == 0
    i_start = kinds.index(ev.ROLLBACK_STARTED)
    assert kinds.index(ev.ROLLED_BACK) > i_start
    fails = [e for e in events if e.kind == ev.CHECK and e.data["verdict"] == "fail"]
    assert len(fails) >= 1  # a sequential FAIL is final: no wait for failure_limit 2
    assert all(r["threshold"] for e in fails for r in e.data["results"])
    evidence = [r["evidence"] for e in fails for r in e.data["results"]
                if r["verdict"] == "fail" and "evidence" in r]
    assert evidence and evidence[0]["final"] is True
    assert evidence[0]["new_errors"] >= 1 and evidence[0]["old_requests"] > 0
    assert evidence[0]["p_value"] <= 0.01 and evidence[0]["ratio_lower"] > 1
    # intent before result for the rollback too
    intents = [i for i, e in enumerate(events) if e.kind == ev.WEIGHT_INTENDED and e.data["percent"] == 0]
    assert intents and intents[0] > i_start
