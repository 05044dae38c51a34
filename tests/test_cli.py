"""The command line: exit codes, clean errors, operator actions through the journal."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.engine import events as ev
from shiftover.store import open_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plan.yaml"
runner = CliRunner()


def flat(text: str) -> str:
    """Rich wraps at the terminal width; compare words, not line breaks."""
    return " ".join(text.split())


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    p = tmp_path / "plan.yaml"
    shutil.copy(EXAMPLE, p)
    return p


def test_validate_offline_ok(plan: Path) -> None:
    r = runner.invoke(app, ["validate", str(plan), "--offline"])
    assert r.exit_code == 0, r.output
    assert "valid plan for accounting-web" in flat(r.output)


def test_bad_plan_is_exit_2_with_location_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("bake: 5m", "bake: 5 minutes"))
    r = runner.invoke(app, ["validate", str(bad), "--offline"])
    assert r.exit_code == 2
    assert f"{bad}:9:7" in r.output
    assert "Traceback" not in r.output


def test_unknown_gate_type_lists_known_ones(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("type: http", "type: htp"))
    r = runner.invoke(app, ["plan", str(bad)])
    assert r.exit_code == 2
    assert "htp" in r.output and "prometheus_alerts" in r.output


def test_missing_plan_file_is_exit_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["status", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2
    assert "Traceback" not in r.output


def test_plan_json(plan: Path) -> None:
    r = runner.invoke(app, ["plan", str(plan), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["steps"] == [1, 2, 5, 10, 25, 50, 75, 100]
    assert data["minimum_duration_seconds"] == 8 * 300
    assert data["approvals"] == [50]
    assert data["current"]["started"] is False
    assert len(data["gates"]) == 3


def test_schema_is_json_schema() -> None:
    r = runner.invoke(app, ["schema"])
    assert r.exit_code == 0
    schema = json.loads(r.output)
    assert "$schema" in schema and "normal_state" in schema["properties"]


def test_operator_actions_go_through_the_journal(plan: Path) -> None:
    with open_store(f"sqlite:///{plan.parent}/.shiftover/state.db") as store:  # a live run
        store.acquire_lease(service="accounting-web", holder="run x", now=time.time(), ttl=600)
    assert runner.invoke(app, ["pause", str(plan), "-m", "db maintenance"]).exit_code == 0
    r = runner.invoke(app, ["status", str(plan), "--json"])
    assert json.loads(r.output)["paused"] is True
    assert runner.invoke(app, ["resume", str(plan)]).exit_code == 0
    assert json.loads(runner.invoke(app, ["status", str(plan), "--json"]).output)["paused"] is False
    # approving ahead of time needs --step, and only steps that need approval
    r = runner.invoke(app, ["approve", str(plan)])
    assert r.exit_code == 2 and "no step is waiting" in flat(r.output)
    r = runner.invoke(app, ["approve", str(plan), "--step", "10"])
    assert r.exit_code == 2 and "does not need approval" in flat(r.output)
    assert runner.invoke(app, ["approve", str(plan), "--step", "50"]).exit_code == 0
    assert runner.invoke(app, ["rollback", str(plan), "-m", "drill"]).exit_code == 0
    with open_store(f"sqlite:///{plan.parent}/.shiftover/state.db") as store:
        events = store.events(service="accounting-web")
    assert [e.kind for e in events] == [ev.PAUSED, ev.RESUMED, ev.APPROVED, ev.ROLLBACK_REQUESTED]
    assert all(e.actor and "@" in e.actor for e in events)
    assert events[0].data["reason"] == "db maintenance"
    r = runner.invoke(app, ["history", str(plan), "--json"])
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert [x["kind"] for x in lines] == [e.kind for e in events]


def test_state_url_option(plan: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/elsewhere.db"
    assert runner.invoke(app, ["pause", str(plan), "--state", url]).exit_code == 0
    assert (tmp_path / "elsewhere.db").exists()
    assert not (plan.parent / ".shiftover").exists()


def test_bad_state_url_is_a_clean_error(plan: Path) -> None:
    r = runner.invoke(app, ["status", str(plan), "--state", "nosuchdb://x"])
    assert r.exit_code in (1, 2)
    assert "Traceback" not in r.output


def test_operator_commands_need_no_secrets(tmp_path: Path) -> None:
    p = tmp_path / "plan.yaml"
    p.write_text(EXAMPLE.read_text().replace(
        "url: http://127.0.0.1:8081/health/dependencies",
        "url: http://127.0.0.1:8081/health/dependencies?token=${NOT_EXPORTED_TOKEN}"))
    assert runner.invoke(app, ["validate", str(p), "--offline"]).exit_code == 2  # the run needs it
    for cmd in (["pause", str(p)], ["resume", str(p)], ["status", str(p)], ["history", str(p)],
                ["approve", str(p), "--step", "50"]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 0, (cmd, r.output)


def test_rollback_with_no_live_run_and_no_router_gives_up_cleanly(plan: Path) -> None:
    r = runner.invoke(app, ["rollback", str(plan), "--timeout", "0.5"])
    assert r.exit_code == 4
    assert "rollback not confirmed" in flat(r.output)
    assert "Traceback" not in r.output


@pytest.mark.parametrize("url", ["notaurl", "sqlite://", "sqlite:///"])
def test_bad_or_unshareable_state_urls_are_bad_input(plan: Path, url: str) -> None:
    r = runner.invoke(app, ["status", str(plan), "--state", url])
    assert r.exit_code == 2, r.output


@pytest.mark.parametrize("args", [["run", "--lease-ttl", "0"], ["run", "--max-duration", "-5"],
                                  ["history", "--limit", "-3"]])
def test_out_of_range_options_are_usage_errors(plan: Path, args: list[str]) -> None:
    r = runner.invoke(app, [args[0], str(plan), *args[1:]])
    assert r.exit_code == 2
