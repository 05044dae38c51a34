"""`validate` (preflight) and `run` (live view) against a real HAProxy."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.demo.haproxy import HAProxyProcess, StubBackend, stub_stack
from shiftover.engine import events as ev
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.store import STATE_ENV_VAR, open_store

pytestmark = pytest.mark.e2e
runner = CliRunner()

PLAN = """\
service: cli-e2e
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new}}
steps: [50, 100]
bake: 600ms
interval: 200ms
normal_state:
  - name: new app answers
    type: http
    url: http://{new}/
    expect_status: 200
    timeout: 1s
failure_limit: 1
"""


class Stack(NamedTuple):
    plan: Path
    haproxy: HAProxyProcess
    new: StubBackend


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with stub_stack(tmp_path) as st:
        hap, new = st.haproxy, st.new
        plan = tmp_path / "plan.yaml"
        plan.write_text(PLAN.format(sock=hap.socket_path, new=new.address))
        yield Stack(plan, hap, new)


def test_validate_preflight_reads_router_and_gates(stack: Stack) -> None:
    r = runner.invoke(app, ["validate", str(stack.plan), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["weights"] == 0 and data["router_error"] is None
    assert [g["verdict"] for g in data["gates"]] == ["pass"]


def test_validate_preflight_reports_a_wrong_backend(stack: Stack) -> None:
    stack.plan.write_text(stack.plan.read_text().replace("backend: web", "backend: api"))
    r = runner.invoke(app, ["validate", str(stack.plan)])
    assert r.exit_code == 2
    assert "api" in r.output


def test_run_live_view_promotes(stack: Stack) -> None:
    r = runner.invoke(app, ["run", str(stack.plan)])
    assert r.exit_code == 0, r.output
    assert "promoted" in r.output
    rt = HAProxyRuntime(stack.haproxy.socket_path, 2.0)
    st = rt.servers_state("web")
    assert st["old"].weight == 0 and st["new"].weight > 0
    r = runner.invoke(app, ["status", str(stack.plan), "--json"])
    status = json.loads(r.output)
    assert status["outcome"] == ev.PROMOTED and status["running"] is False


def test_run_never_starts_when_the_new_app_fails_before_the_first_step(stack: Stack) -> None:
    stack.new.fail_ratio = 1.0
    r = runner.invoke(app, ["run", str(stack.plan), "--json"])
    assert r.exit_code == 3, r.output
    summary = json.loads(r.output.splitlines()[-1])
    assert summary["outcome"] == "rolled_back" and summary["final_weight"] == 0
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        kinds = [e.kind for e in store.events(service="cli-e2e")]
    assert ev.ROLLBACK_STARTED in kinds and ev.ROLLED_BACK in kinds
    assert ev.STEP_ADVANCED not in kinds  # not one request was shifted


def test_rollback_with_no_live_run_goes_through_the_router(stack: Stack) -> None:
    assert runner.invoke(app, ["run", str(stack.plan)]).exit_code == 0  # promoted: 100%
    r = runner.invoke(app, ["rollback", str(stack.plan), "-m", "drill"])
    assert r.exit_code == 0, r.output
    st = HAProxyRuntime(stack.haproxy.socket_path, 2.0).servers_state("web")
    assert st["new"].weight == 0 and st["old"].weight > 0
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        events = store.events(service="cli-e2e")
    kinds = [e.kind for e in events]
    assert kinds.index(ev.ROLLBACK_REQUESTED) < kinds.index(ev.ROLLBACK_STARTED) < kinds.index(ev.ROLLED_BACK)
    assert events[kinds.index(ev.ROLLBACK_REQUESTED)].actor


def test_validate_never_prints_secrets(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_TOKEN", "hunter2sekrit")
    text = stack.plan.read_text().replace(f"url: http://{stack.new.address}/",
                                          "url: http://127.0.0.1:1/h?token=${PROBE_TOKEN}")
    stack.plan.write_text(text)
    for args in (["validate", str(stack.plan)], ["validate", str(stack.plan), "--json"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2  # the probe cannot connect: a FAIL before the run
        assert "hunter2sekrit" not in r.output and "***" in r.output
