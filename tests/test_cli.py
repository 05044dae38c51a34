"""The command line: exit codes, clean errors, operator actions through the journal,
read-only commands that stay read-only, and options in the plan's duration syntax.

Every test runs with ``$SHIFTOVER_STATE`` pointing at a state file of its own
(tests/conftest.py). The tests that need a real HAProxy are in tests/cli/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.engine import events as ev
from shiftover.routers.haproxy import HAProxyRouter
from shiftover.store import STATE_ENV_VAR, open_store
from shiftover.views import when

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plan.yaml"
runner = CliRunner()


def flat(text: str) -> str:
    """Rich wraps at the terminal width; compare words, not line breaks."""
    return " ".join(text.split())


def state_file() -> Path:
    return Path(os.environ[STATE_ENV_VAR].removeprefix("sqlite:///"))


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    p = tmp_path / "plan.yaml"
    shutil.copy(EXAMPLE, p)
    return p


def fake_live_run(service: str = "accounting-web", pid: int | None = None) -> None:
    """A lease as a live run on this host takes it (our own pid: alive)."""
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        key = HAProxyRouter("/run/haproxy/admin.sock", "web", "ec2", "eks").lease_key()
        store.acquire_lease(key=key, holder="run x", ttl=600,
                            meta={"service": service, "run_id": "x",
                                  "pid": os.getpid() if pid is None else pid,
                                  "host": socket.gethostname()})


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
    data = json.loads(r.stdout)
    assert data["steps"] == [1, 2, 5, 10, 25, 50, 75, 100]
    assert data["minimum_duration_seconds"] == 8 * 300
    assert data["approvals"] == [50]
    assert data["current"]["started"] is False and data["current"]["status"] == "not_started"
    assert len(data["gates"]) == 3
    # the lease a run of this plan takes: 2 x (interval 15 + slowest gate 5 + 1 + 2 x 2 + 1)
    assert data["min_lease_ttl_seconds"] == 26 and data["lease_ttl_seconds"] == 52


def test_plan_shows_how_the_router_sets_each_step(tmp_path: Path) -> None:
    p = tmp_path / "plan.yaml"
    p.write_text(EXAMPLE.read_text().replace("steps: [1, 2, 5, 10, 25, 50, 75, 100]",
                                             "steps: [1, 33.3, 50, 100]"))
    data = json.loads(runner.invoke(app, ["plan", str(p), "--json"]).stdout)
    mapped = {s["step"]: s for s in data["step_weights"]}
    assert mapped[33.3]["mapped"] is True and mapped[33.3]["exact"] == "6350/191"
    assert mapped[33.3]["backend_weights"] == {"old": 255, "new": 127}
    assert mapped[50]["mapped"] is False and mapped[50]["backend_weights"] == {"old": 256, "new": 256}
    text = flat(runner.invoke(app, ["plan", str(p)]).output)
    assert "step 33.3% is set as 33.25% (weights 255/127)" in text
    assert "lease: 52s by default" in text and "at least 26s" in text


def test_schema_is_json_schema() -> None:
    r = runner.invoke(app, ["schema"])
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    assert "$schema" in schema and "normal_state" in schema["properties"]


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0
    assert r.output.startswith("shiftover ") and r.output.split()[1][0].isdigit()


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_lists_the_exit_codes(args: list[str]) -> None:
    text = flat(runner.invoke(app, args).output)
    assert "Exit codes" in text
    for code in ("0 promoted", "1 internal error", "2 bad input", "3 rolled back", "4 ", "5 "):
        assert code in text, code
    assert "held" in text and "lease" in text


def test_operator_actions_go_through_the_journal(plan: Path) -> None:
    fake_live_run()
    r = runner.invoke(app, ["pause", str(plan), "-m", "db maintenance"])
    assert r.exit_code == 0 and "no run is running" not in flat(r.output)
    r = runner.invoke(app, ["status", str(plan), "--json"])
    assert json.loads(r.stdout)["paused"] is True
    assert runner.invoke(app, ["resume", str(plan)]).exit_code == 0
    assert json.loads(runner.invoke(app, ["status", str(plan), "--json"]).stdout)["paused"] is False
    # approving ahead of time needs --step, and only steps that need approval
    r = runner.invoke(app, ["approve", str(plan)])
    assert r.exit_code == 2 and "no step is waiting" in flat(r.output)
    assert f"shiftover approve {plan} --step 50" in flat(r.output)  # the hint, paste-ready
    r = runner.invoke(app, ["approve", str(plan), "--step", "10"])
    assert r.exit_code == 2 and "does not need approval" in flat(r.output)
    r = runner.invoke(app, ["approve", str(plan), "--step", "50", "-m", "capacity checked"])
    assert r.exit_code == 0 and "capacity checked" in r.output
    # no HAProxy here: the request is journalled, the router cannot confirm 0%
    assert runner.invoke(app, ["rollback", str(plan), "-m", "drill", "--timeout", "0"]).exit_code == 4
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        events = store.events(service="accounting-web")
    assert [e.kind for e in events] == [ev.PAUSED, ev.RESUMED, ev.APPROVED, ev.ROLLBACK_REQUESTED]
    assert all(e.actor and "@" in e.actor for e in events)
    assert events[0].data["reason"] == "db maintenance"
    assert events[2].data == {"step": 50.0, "reason": "capacity checked"}
    r = runner.invoke(app, ["history", str(plan), "--json"])
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert [x["kind"] for x in lines] == [e.kind for e in events]


def test_operator_action_with_no_run_says_how_to_start_one(plan: Path) -> None:
    r = runner.invoke(app, ["pause", str(plan)])
    assert r.exit_code == 0
    assert f"takes effect when `shiftover run {plan}` starts" in flat(r.output)


def test_state_url_option(plan: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/elsewhere.db"
    r = runner.invoke(app, ["pause", str(plan), "--state", url])
    assert r.exit_code == 0
    assert (tmp_path / "elsewhere.db").exists()
    assert not (plan.parent / ".shiftover").exists()
    # a hint printed with --state given names it too: pasted, it acts on the same journal
    assert f"shiftover run {plan} --state {url}" in flat(r.output)


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
    # status says why it did not read the router
    r = runner.invoke(app, ["status", str(p), "--json"])
    router = json.loads(r.stdout)["router"]
    assert router["read"] is False and "NOT_EXPORTED_TOKEN is not set" in router["error"]


def test_rollback_with_no_live_run_and_no_router_gives_up_cleanly(plan: Path) -> None:
    r = runner.invoke(app, ["rollback", str(plan), "--timeout", "0.5"])
    assert r.exit_code == 4
    assert "rollback not confirmed" in flat(r.output)
    assert "Traceback" not in r.output


@pytest.mark.parametrize("url", ["notaurl", "sqlite://", "sqlite:///", "mysql://a", ""])
def test_bad_or_unshareable_state_urls_are_bad_input(plan: Path, url: str) -> None:
    r = runner.invoke(app, ["status", str(plan), "--state", url])
    assert r.exit_code == 2, r.output


@pytest.mark.parametrize("args", [
    ["run", "--lease-ttl", "0"], ["run", "--lease-ttl", "-1"], ["run", "--lease-ttl", "1e308"],
    ["run", "--max-duration", "-5"], ["run", "--max-duration", "1e308"],
    ["run", "--max-duration", "0"], ["run", "--max-duration", "nan"],
    ["run", "--max-duration", "inf"], ["run", "--max-duration", "5 minutes"],
    ["run", "--max-duration", "5x"], ["rollback", "--timeout", "-1"],
    ["rollback", "--timeout", "1e308"], ["rollback", "--timeout", "soon"],
    ["history", "--limit", "-3"],
])
def test_out_of_range_options_are_exit_2_with_a_message(plan: Path, args: list[str]) -> None:
    r = runner.invoke(app, [args[0], str(plan), *args[1:]])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    if args[1] != "--limit" and args[2] != "5 minutes":
        assert args[1] in r.output  # names the option
    assert not state_file().exists()  # nothing ran


@pytest.mark.parametrize("value", ["500ms", "0.5", "1s"])
def test_run_takes_the_plans_duration_syntax(tmp_path: Path, value: str) -> None:
    p = tmp_path / "plan.yaml"  # a router that does not answer: the run holds, then stops
    p.write_text(EXAMPLE.read_text().replace("/run/haproxy/admin.sock", str(tmp_path / "none.sock"))
                 .replace("interval: 15s", "interval: 200ms"))
    t0 = time.monotonic()
    r = runner.invoke(app, ["run", str(p), "--json", "--max-duration", value, "--lease-ttl", "1m"])
    assert r.exit_code == 4, r.output
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["outcome"] == "held"
    assert time.monotonic() - t0 < 20
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        started = store.events(service="accounting-web", kinds=[ev.RUN_STARTED])
    assert started[0].data["lease_ttl"] == 60


# --- read-only commands stay read-only -----------------------------------------------------


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["history"],
                                  ["history", "--json"], ["history", "--all"], ["plan"],
                                  ["plan", "--json"], ["approve"]])
def test_read_only_commands_never_create_a_state_file(plan: Path, args: list[str]) -> None:
    assert not state_file().exists()
    r = runner.invoke(app, [args[0], str(plan), *args[1:]])
    assert r.exit_code == (2 if args == ["approve"] else 0), r.output  # nothing waits
    assert not state_file().exists()
    assert not state_file().parent.joinpath("state.db-wal").exists()
    if args[0] != "approve":
        assert f"no journal yet at {state_file()}" in flat(r.output)
    if args == ["status", "--json"]:
        data = json.loads(r.stdout)
        assert data["status"] == "not_started" and data["journal"]["exists"] is False


def test_status_on_a_missing_default_location_creates_nothing(
        plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    if os.geteuid() == 0 and Path("/var/lib/shiftover/state.db").exists():
        pytest.skip("this host already has a default state file")
    r = runner.invoke(app, ["status", str(plan)])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()
    if os.geteuid() == 0:
        assert not Path("/var/lib/shiftover/state.db").exists()


# --- history ------------------------------------------------------------------------------


def _journal(service: str, items: list[tuple[str, str, dict[str, object]]]) -> None:
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        for i, (run_id, kind, data) in enumerate(items):
            store.append(service=service, run_id=run_id, kind=kind, at=1_700_000_000 + i,
                         data=data)


def test_history_every_event_and_by_run(plan: Path) -> None:
    items: list[tuple[str, str, dict[str, object]]] = []
    for run_id in ("aaaa", "bbbb"):
        items.append((run_id, ev.RUN_STARTED, {"run_id": run_id, "pid": 1, "host": "h"}))
        items += [(run_id, ev.CHECK, {"verdict": "pass", "results": []})] * 40
    _journal("accounting-web", items)
    lines = runner.invoke(app, ["history", str(plan), "--json"]).stdout.splitlines()
    assert len(lines) == 50  # the default: the last 50
    r = runner.invoke(app, ["history", str(plan), "--json"])
    assert "--all for every one" in r.output  # said (on stderr), not silently cut
    for args in (["--all"], ["--limit", "0"]):
        lines = runner.invoke(app, ["history", str(plan), "--json", *args]).stdout.splitlines()
        assert len(lines) == 82 and [json.loads(x)["id"] for x in lines] == list(range(1, 83))
    lines = runner.invoke(app, ["history", str(plan), "--json", "--all", "--run", "aaaa"]).stdout.splitlines()
    assert len(lines) == 41 and {json.loads(x)["run_id"] for x in lines} == {"aaaa"}
    r = runner.invoke(app, ["history", str(plan), "--run", "cccc"])
    assert r.exit_code == 2 and "aaaa, bbbb" in flat(r.output)


# --- views survive any journal -------------------------------------------------------------

ODD_DATA: list[object] = [{}, {"percent": None}, {"percent": "x", "exact": "nope"},
                          {"exact": "1/0"}, {"results": "x"}, {"results": [1, None, {}]},
                          {"step": "fifty"}, {"seconds": "slow"}, {"router": "weird"},
                          {"reason": None, "error": 3}, {"percent": -5},
                          {"percent": 250, "exact": "250"}]


def test_views_survive_a_journal_with_gaps_and_unknown_shapes(plan: Path) -> None:
    kinds = sorted({v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str)}
                   | {"some_future_kind"})
    items: list[tuple[str, str, dict[str, object]]] = [
        ("r1", ev.RUN_STARTED, {"run_id": "r1", "pid": 1, "host": "elsewhere"}),
        ("r1", ev.WEIGHT_CONFIRMED, {"percent": 10.0, "exact": "10", "verified": True})]
    for kind in kinds:
        for d in ODD_DATA:
            if kind in ev.TERMINAL:
                continue  # they would end the campaign: tested below
            items.append(("r1", kind, d))  # type: ignore[arg-type]
    _journal("accounting-web", items)
    with open_store(os.environ[STATE_ENV_VAR]) as store:  # ids with a gap: nothing in between
        store.append(service="other", run_id="x", kind=ev.CHECK, at=1.0, data={})
    _journal("accounting-web", [("r1", k, d) for k in ev.TERMINAL for d in ODD_DATA])  # type: ignore[misc]
    for args in (["status"], ["status", "--json"], ["history", "--all"], ["history", "--json", "--all"],
                 ["plan"], ["plan", "--json"]):
        r = runner.invoke(app, [args[0], str(plan), *args[1:]])
        assert r.exit_code == 0, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
        assert "internal error" not in r.output


def test_describe_event_never_raises() -> None:
    from shiftover.store import Event
    from shiftover.views import describe_event

    kinds = {v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str)}
    for kind in kinds:
        for d in ODD_DATA:
            text = describe_event(Event(1, "s", "r", kind, 0.0, None, d))  # type: ignore[arg-type]
            assert isinstance(text, str) and text


# --- status: running, unwatched, JSON and text agree ------------------------------------------


def _held_campaign(service: str = "accounting-web") -> None:
    _journal(service, [
        ("r1", ev.RUN_STARTED, {"run_id": "r1", "pid": 4242, "host": socket.gethostname(),
                                "plan": {"error_limit": 7, "inconclusive_limit": 9, "bake": 300}}),
        ("r1", ev.WEIGHT_CONFIRMED, {"percent": 25.0, "exact": "25", "verified": True}),
        ("r1", ev.CHECK, {"verdict": "fail", "consecutive_failures": 1, "consecutive_errors": 2,
                          "consecutive_inconclusive": 3,
                          "results": [{"gate": "g", "verdict": "fail", "reason": "5xx 0.2"}]}),
        ("r1", ev.APPROVAL_WAITING, {"step": 50}),
        ("r1", ev.RUN_STOPPED, {"outcome": "held", "exit_code": 4, "reason": "stopped"}),
    ])


def test_status_after_a_held_run_says_unwatched(plan: Path) -> None:
    _held_campaign()
    r = runner.invoke(app, ["status", str(plan)])
    text = flat(r.output)
    assert r.exit_code == 0
    assert "held" in text and "unwatched 25% on new, no run" in text
    assert "running no" in text
    # the router of this plan does not exist: said, not guessed
    assert "router unknown" in text
    assert f"shiftover approve {plan} --step 50" in text
    assert f"shiftover rollback {plan}" in text and f"shiftover run {plan}" in text
    # limits from the plan (it loads): failure 2, error 4, inconclusive 20
    assert "failures 1/2 · errors 2/4 · inconclusive 3/20" in text


def test_status_running_needs_a_live_lease_and_a_live_process(plan: Path) -> None:
    _held_campaign()
    fake_live_run()  # our own pid: alive
    data = json.loads(runner.invoke(app, ["status", str(plan), "--json"]).stdout)
    assert data["running"] is True and data["unwatched"] is False
    assert data["status"] == "failing"
    assert f"shiftover pause {plan}" in data["hints"]
    assert not any(" run " in h for h in data["hints"])  # a second run would be refused


def test_status_a_dead_runs_lease_is_not_running(plan: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _held_campaign()
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        store.acquire_lease(key="haproxy:/run/haproxy/admin.sock#web", holder="run y", ttl=600,
                            meta={"service": "accounting-web", "run_id": "y", "pid": dead.pid,
                                  "host": socket.gethostname()})
    data = json.loads(runner.invoke(app, ["status", str(plan), "--json"]).stdout)
    assert data["running"] is False and data["unwatched"] is True
    assert data["run"]["pid_alive"] is False and data["run"]["lease_live"] is True
    assert data["blocked_until_lease_expires"] > 500
    # `run` would be refused by the dead run's lease until it expires: not offered
    assert not any(h.split()[1] == "run" for h in data["hints"])
    assert f"shiftover rollback {plan}" in data["hints"]
    text = flat(runner.invoke(app, ["status", str(plan)]).output)
    assert "is gone" in text and "blocks a new run" in text


def test_status_json_and_text_agree_field_by_field(plan: Path) -> None:
    _held_campaign()
    fake_live_run()
    data = json.loads(runner.invoke(app, ["status", str(plan), "--json"]).stdout)
    text = flat(runner.invoke(app, ["status", str(plan)]).output)
    rows = {
        "service": data["service"],
        "status": data["status"].replace("_", " ") + " — " + data["status_detail"],
        "running": "yes" if data["running"] else "no",
        "router": "unknown: " + data["router"]["error"] if not data["router"]["read"]
        else f"{data['router']['percent']:.4g}% on new",
        "journal": f"{data['journal_weight']['percent']:.4g}% confirmed (step {data['step']:g}%, "
                   f"{data['step_index'] + 1}/{data['steps']})",
        "consecutive": " · ".join(f"{k} {v['count']}/{v['limit']}"
                                  for k, v in data["consecutive"].items()),
        "last event": f"{when(data['last_event']['at'])} {data['last_event']['text']}",
    }
    for label, value in rows.items():
        assert flat(f"{label} {value}") in text, (label, value, text)
    for h in data["hints"]:
        assert h in text
    if data["waiting_approval"] is not None:
        assert f"waiting approval of the {data['waiting_approval']:g}% step" in text
    assert ("unwatched" in text) == data["unwatched"]
    assert ("drift" in text.split("consecutive")[0]) == (data["drift"] is not None)
    for r in data["last_check"]["results"]:
        assert r["gate"] in text and r["reason"] in text


def test_status_limits_come_from_the_journal_without_the_plans_secrets(tmp_path: Path) -> None:
    p = tmp_path / "plan.yaml"
    p.write_text(EXAMPLE.read_text().replace("/run/haproxy/admin.sock", "${NOT_EXPORTED_SOCK}"))
    _held_campaign()
    data = json.loads(runner.invoke(app, ["status", str(p), "--json"]).stdout)
    assert data["limits_from"] == "journal"
    assert data["consecutive"]["errors"] == {"count": 2, "limit": 7}
    assert data["consecutive"]["inconclusive"] == {"count": 3, "limit": 9}


def test_brackets_in_paths_names_and_reasons_are_text_not_markup(tmp_path: Path) -> None:
    p = tmp_path / "[prod] plan.yaml"
    p.write_text(EXAMPLE.read_text().replace("name: no firing alerts for the service",
                                             "name: 5xx ratio [1m] [/bold]"))
    for args in (["validate", "--offline"], ["plan"], ["pause", "-m", "[/bold] see [red]INC-1"],
                 ["status"], ["history"], ["approve", "--step", "50", "-m", "[/]"]):
        r = runner.invoke(app, [args[0], str(p), *args[1:]])
        assert r.exit_code == 0, (args, r.output)
        assert "internal error" not in r.output
    assert "[prod] plan.yaml" in flat(runner.invoke(app, ["validate", str(p), "--offline"]).output)
    assert "5xx ratio [1m] [/bold]" in flat(runner.invoke(app, ["plan", str(p)]).output)
    assert "[/bold] see [red]INC-1" in flat(runner.invoke(app, ["history", str(p)]).output)


def test_status_names_another_services_run_on_the_same_router_target(plan: Path) -> None:
    _held_campaign()
    fake_live_run(service="billing-web")  # another plan, same HAProxy socket and backend
    data = json.loads(runner.invoke(app, ["status", str(plan), "--json"]).stdout)
    assert data["running"] is False and data["run"]["service"] == "billing-web"
    assert data["unwatched"] is False  # that run watches the traffic on this target
    assert not any(h.split()[1] == "run" for h in data["hints"])  # it would be refused
    text = flat(runner.invoke(app, ["status", str(plan)]).output)
    assert "driven by run x" in text and "of service billing-web" in text


def test_json_stays_json_whatever_a_secret_looks_like(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret may be a short, common word ("status", "1"): masking it must not
    break a JSON key or number. JSON is redacted value by value, never as text."""
    monkeypatch.setenv("HDR_A", "status")
    monkeypatch.setenv("HDR_B", "1")
    p = tmp_path / "plan.yaml"
    p.write_text(EXAMPLE.read_text().replace(
        "    expect_status: 200\n",
        "    expect_status: 200\n    headers: {X-A: '${HDR_A}', X-B: '${HDR_B}'}\n"))
    _held_campaign()
    for args in (["status", "--json"], ["plan", "--json"], ["history", "--json", "--all"],
                 ["validate", "--offline", "--json"]):
        r = runner.invoke(app, [args[0], str(p), *args[1:]])
        assert r.exit_code == 0, r.output
        docs = [json.loads(x) for x in r.stdout.splitlines()] if args[0] == "history" \
            else [json.loads(r.stdout)]
        assert docs
    data = json.loads(runner.invoke(app, ["status", str(p), "--json"]).stdout)
    assert data["status"] == "held" and data["consecutive"]["failures"]["count"] == 1


def test_state_takes_a_file_path_as_people_type_it(plan: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["pause", str(plan), "--state", "./team.db"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "team.db").exists()
    # the hint repeats --state as typed: pasted in the same directory, the same journal
    assert f"shiftover run {plan} --state ./team.db" in flat(r.output)
    data = json.loads(runner.invoke(app, ["status", str(plan), "--state", "./team.db",
                                          "--json"]).stdout)
    assert data["paused"] is True and data["journal"]["where"] == str(tmp_path / "team.db")
    r = runner.invoke(app, ["status", str(plan), "--state", f"{tmp_path}/"])
    assert r.exit_code == 2 and "is a directory" in r.output


def test_run_json_refused_by_the_lease_still_ends_with_a_summary_line(plan: Path) -> None:
    fake_live_run()
    r = runner.invoke(app, ["run", str(plan), "--json"])
    assert r.exit_code == 5
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["summary"] is True and summary["outcome"] == "lease_held"
    assert summary["exit_code"] == 5 and "leased by" in summary["reason"]
