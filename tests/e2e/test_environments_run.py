"""``--env`` end to end on a real HAProxy: a dry run moves nothing, a staging run is
journalled as a rehearsal under its own key, and production's campaign is apart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
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
service: env-e2e
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new}}
steps: [10, 50, 100]
bake: 5m
interval: 1m
normal_state:
  - name: new app answers
    type: http
    url: http://{new}/
    expect_status: 200
    timeout: 1s
approvals: [50]
failure_limit: 1
environments:
  staging:
    rehearsal: true
    steps: [50, 100]
    bake: 600ms
    interval: 200ms
    approvals: null
  production:
    router: {{socket: {tmp}/no-such.sock}}
"""


class Stack(NamedTuple):
    plan: Path
    haproxy: HAProxyProcess
    new: StubBackend


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with stub_stack(tmp_path) as st:
        plan = tmp_path / "plan.yaml"
        plan.write_text(PLAN.format(sock=st.haproxy.socket_path, new=st.new.address, tmp=tmp_path))
        yield Stack(plan, st.haproxy, st.new)


def weights(stack: Stack) -> tuple[int, int]:
    st = HAProxyRuntime(stack.haproxy.socket_path, 2.0).servers_state("web")
    return st["old"].weight, st["new"].weight


def test_dry_run_reads_everything_and_moves_nothing(stack: Stack) -> None:
    before = weights(stack)
    r = runner.invoke(app, ["run", str(stack.plan), "--env", "staging", "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["would_start"] and data["environment"] == "staging" and data["weights"] == 0
    assert [g["verdict"] for g in data["gates"]] == ["pass"]
    assert [(t["step"], t["bake_seconds"], t["done"]) for t in data["timeline"]] == [
        (50, 0.6, False), (100, 0.6, False)]
    # a check at 0% (one interval), then two bakes
    assert data["earliest_finish_seconds"] == pytest.approx(1.4)
    # 1 failed check (failure_limit) every 0.2 s + the gate's 1 s timeout + 1 s grace; 2 s write
    assert data["rollback_bound"] == {"detect_seconds": pytest.approx(2.2), "write_seconds": 2.0,
                                      "tail_seconds": 0.0, "total_seconds": pytest.approx(4.2)}
    assert weights(stack) == before
    assert not Path(os.environ[STATE_ENV_VAR].removeprefix("sqlite:///")).exists()  # no journal


def test_dry_run_text_shows_the_timeline_and_approvals(stack: Stack) -> None:
    # production's router is unreachable: the timeline is still shown, and the exit is 2
    r = runner.invoke(app, ["run", str(stack.plan), "--env", "production", "--dry-run"])
    assert r.exit_code == 2, r.output
    assert "no-such.sock" in r.output
    assert "the timeline the plan implies" in r.output
    assert "earliest finish: 16m from the start" in r.output  # a check at 0%, then 3 bakes
    # 1 check of 60 s + the gate's 1 s timeout + 1 s grace, then a write of up to 2 s
    assert "rollback bound: 1m04s" in r.output
    assert "(1 failed check every 60s" in r.output
    assert f"run {stack.plan} --env production --dry-run" in r.output


def test_dry_run_with_a_failing_gate_would_not_start(stack: Stack) -> None:
    stack.new.fail_ratio = 1.0
    r = runner.invoke(app, ["run", str(stack.plan), "--env", "staging", "--dry-run"])
    assert r.exit_code == 2
    assert "FAIL" in r.output and "a run would not start" in r.output
    assert weights(stack)[1] == 0


def test_a_staging_run_is_a_rehearsal_in_its_own_journal(stack: Stack) -> None:
    r = runner.invoke(app, ["run", str(stack.plan), "--env", "staging", "--json"])
    assert r.exit_code == 0, r.output
    assert weights(stack)[0] == 0
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        assert store.services() == ["env-e2e@staging"]
        started = store.events(service="env-e2e@staging", kinds=[ev.RUN_STARTED])[0]
    assert started.data["environment"] == "staging" and started.data["rehearsal"] is True
    r = runner.invoke(app, ["status", str(stack.plan), "--env", "staging", "--json"])
    assert json.loads(r.output)["outcome"] == ev.PROMOTED
    r = runner.invoke(app, ["status", str(stack.plan), "--env", "production", "--json"])
    assert json.loads(r.output)["outcome"] is None  # production has not started
    r = runner.invoke(app, ["history", str(stack.plan), "--env", "production"])
    assert r.exit_code == 0, r.output
    assert re.search(r"rehearsed on staging once, last on \d{4}-\d\d-\d\d \d\d:\d\d UTC, "
                     r"outcome promoted", r.output), r.output


def test_status_of_a_live_run_in_an_environment_says_running(stack: Stack) -> None:
    """The lease names the run by its journal key (service@env): status must match it
    against the plan's, or a live run reads as crashed and its hints drop pause/rollback."""
    plan = stack.plan
    plan.write_text(plan.read_text().replace("    bake: 600ms\n", "    bake: 10m\n"))
    env = os.environ.copy()
    proc = subprocess.Popen([sys.executable, "-m", "shiftover.cli", "run", str(plan), "--env",
                             "staging", "--json"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        status: dict[str, object] = {}
        for _ in range(100):  # bounded: up to 20 s for the first step
            r = runner.invoke(app, ["status", str(plan), "--env", "staging", "--json"])
            try:  # before the run's first write there is no journal yet (said on stderr)
                status = json.loads(r.stdout)
            except ValueError:
                status = {}
            if status.get("running") and (status.get("journal_weight") or {}).get("percent"):
                break
            time.sleep(0.2)
        assert status.get("running") is True, status
        assert status["environment"] == "staging" and status["status"] == "baking"
        hints = " ".join(status["hints"])  # type: ignore[arg-type]
        assert f"pause {plan} --env staging" in hints and f"rollback {plan} --env staging" in hints
        r = runner.invoke(app, ["status", str(plan), "--env", "staging"])
        assert "environment  staging" in r.output and "running" in r.output
        # a dry run now says a run would be refused, as it would be (exit 5)
        r = runner.invoke(app, ["run", str(plan), "--env", "staging", "--dry-run", "--json"])
        assert r.exit_code == 5, r.output
        dry = json.loads(r.output)
        assert dry["would_start"] is False and dry["lease_held_by"]["run_id"]
        assert [t["done"] for t in dry["timeline"]] == [False, False]  # 50% bakes again
        r = runner.invoke(app, ["rollback", str(plan), "--env", "staging", "-m", "test over"])
        assert r.exit_code == 0, r.output
        assert proc.wait(timeout=30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_dry_run_checks_the_load_blocks_target(stack: Stack) -> None:
    text = stack.plan.read_text().replace(
        "    rehearsal: true\n", "    rehearsal: true\n    load: {url: 'http://127.0.0.1:9/', rate: 5}\n")
    stack.plan.write_text(text)
    r = runner.invoke(app, ["run", str(stack.plan), "--env", "staging", "--dry-run", "--json"])
    assert r.exit_code == 2, r.output
    data = json.loads(r.output)
    assert data["would_start"] is False and data["load"]["ok"] is False
    assert "127.0.0.1:9" in data["load"]["error"]
