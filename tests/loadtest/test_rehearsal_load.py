"""A plan's `load:` block: a rehearsal run sends its own traffic (staging has no users).

Real HAProxy over two sample apps; `shiftover run` with the block promotes on the
gates' evidence from that traffic alone; the same plan without it holds for lack
of evidence (no evidence is not health). A block without a target is a plan error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.demo.app import SampleAppProcess
from shiftover.demo.haproxy import HAProxyProcess

pytestmark = pytest.mark.e2e
runner = CliRunner()

PLAN = """\
service: rehearsal
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new}}
steps: [50, 100]
bake: 2s
interval: 500ms
normal_state:
  - name: new errors
    type: haproxy_stats
    socket: {sock}
    backend: web
    server: new
    max: 0.01
    min_samples: 5
failure_limit: 1
inconclusive_limit: 100
"""

LOAD = """\
load:
  url: {url}/api/items
  rate: 40
  headers: {{X-Api-Key: sekrit-value-123}}
"""


class Stack(NamedTuple):
    haproxy: HAProxyProcess
    plan: Path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with SampleAppProcess(0, "old", tmp_path / "old") as old, \
            SampleAppProcess(0, "new", tmp_path / "new") as new, \
            HAProxyProcess(tmp_path / "haproxy", old_address=f"127.0.0.1:{old.port}",
                           new_address=f"127.0.0.1:{new.port}") as hap:
        yield Stack(hap, tmp_path / "plan.yaml")


def test_a_rehearsal_with_a_load_block_promotes_on_its_own_traffic(stack: Stack, tmp_path: Path) -> None:
    url = stack.haproxy.frontend_url.rstrip("/")
    stack.plan.write_text(PLAN.format(sock=stack.haproxy.socket_path) + LOAD.format(url=url))
    r = runner.invoke(app, ["run", str(stack.plan), "--json", "--state", str(tmp_path / "s.db"),
                            "--max-duration", "60s"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["outcome"] == "promoted"
    load = summary["load"]
    assert load["requests"] > 0 and load["failures"] == 0, load
    assert "sekrit-value-123" not in r.output


def test_without_traffic_the_same_rehearsal_holds(stack: Stack, tmp_path: Path) -> None:
    stack.plan.write_text(PLAN.format(sock=stack.haproxy.socket_path))
    r = runner.invoke(app, ["run", str(stack.plan), "--json", "--state", str(tmp_path / "s.db"),
                            "--max-duration", "5s"])
    assert r.exit_code == 4, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["outcome"] == "held"


def test_a_load_block_without_a_target_is_a_plan_error(stack: Stack, tmp_path: Path) -> None:
    stack.plan.write_text(PLAN.format(sock=stack.haproxy.socket_path) + "load:\n  rate: 40\n")
    r = runner.invoke(app, ["validate", str(stack.plan), "--offline"])
    assert r.exit_code == 2, r.output
    assert "plan.yaml:" in r.output and "url" in r.output


def test_a_load_block_with_an_unreachable_url_stops_before_anything_moves(stack: Stack, tmp_path: Path) -> None:
    from shiftover.demo.process import free_port

    stack.plan.write_text(PLAN.format(sock=stack.haproxy.socket_path)
                          + LOAD.format(url=f"http://127.0.0.1:{free_port()}"))
    r = runner.invoke(app, ["run", str(stack.plan), "--state", str(tmp_path / "s.db")])
    assert r.exit_code == 2, r.output
    assert "unreachable" in r.output
    from shiftover.haproxy_api import HAProxyRuntime

    assert HAProxyRuntime(stack.haproxy.socket_path, 2.0).servers_state("web")["new"].weight == 0


def test_validate_checks_the_load_block(stack: Stack, tmp_path: Path) -> None:
    from shiftover.demo.process import free_port

    url = stack.haproxy.frontend_url.rstrip("/")
    stack.plan.write_text(PLAN.format(sock=stack.haproxy.socket_path) + LOAD.format(url=url))
    r = runner.invoke(app, ["validate", str(stack.plan), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["load"] == {"ok": True, "error": None}
    stack.plan.write_text(PLAN.format(sock=stack.haproxy.socket_path)
                          + LOAD.format(url=f"http://127.0.0.1:{free_port()}"))
    r = runner.invoke(app, ["validate", str(stack.plan)])
    assert r.exit_code == 2, r.output
    assert "load:" in r.output and "unreachable" in r.output
