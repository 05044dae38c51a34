"""The worked example of docs/hooks.md cannot rot: examples/hooks/rails-cutover.yaml
loads and validates offline, `shiftover simulate` runs it (hooks at their places, in
order; undos in reverse after 0% when it fails at 50%) and prints what the page shows,
and the scripts it calls do what the page says (the queue-latency gate's three verdicts
against a local HTTP server; the workers and batch scripts against recording stand-ins
for kubectl, aws and ssh)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.plan import load_plan

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hooks" / "rails-cutover.yaml"
FAIL_AT_50 = ROOT / "examples" / "hooks" / "fail-at-50.yaml"
BIN = ROOT / "examples" / "hooks" / "bin"
DOC = ROOT / "docs" / "hooks.md"
SECRETS = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXX",
           "ANNOUNCE_TOKEN": "s3cr3t-announce-token"}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(ROOT)  # the example's commands are relative to the repository root


def simulate(*args: str) -> tuple[int, list[dict[str, Any]]]:
    r = runner.invoke(app, ["simulate", "examples/hooks/rails-cutover.yaml", "--json", *args])
    return r.exit_code, [json.loads(x) for x in r.output.splitlines() if x.strip()]


def hooks_of(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["data"]["phase"], e["data"]["hook"], e["data"]["at"]) for e in events
            if e.get("kind") == "hook_started"]


def test_the_example_plan_loads_with_its_hooks_notify_and_command_gate() -> None:
    loaded = load_plan(EXAMPLE, env=SECRETS)
    p = loaded.plan
    assert [(h.name, h.place) for h in p.hooks] == [
        ("workers-up-new", "25"), ("workers-down-old", "25"), ("batch-stop-old", "50"),
        ("batch-start-new", "50"), ("smoke", "every_step"),
        ("announce-decommission", "promoted")]
    assert all(h.undo is not None for h in p.hooks[:4])
    assert [h.idempotent for h in p.hooks] == [True, True, True, True, True, False]
    assert [g.type for g in p.normal_state] == ["prometheus", "command"]
    assert [n.name for n in p.notify] == ["sre-channel"]
    for h in p.hooks:  # every command the plan runs is in the repository, executable
        for argv in (h.run, h.undo.run if h.undo else None):
            if argv is not None:
                assert os.access(ROOT / argv[0], os.X_OK), argv
    gate_argv = p.normal_state[1].model_dump()["run"]
    assert os.access(ROOT / gate_argv[0], os.X_OK)


def test_validate_offline_accepts_it_and_never_prints_the_secrets() -> None:
    r = runner.invoke(app, ["validate", "examples/hooks/rails-cutover.yaml", "--offline"])
    assert r.exit_code == 0, r.output
    assert "valid plan for accounting-web" in r.output
    assert not any(v in r.output for v in SECRETS.values())


def test_simulate_runs_the_hooks_at_their_places_in_order_and_promotes() -> None:
    code, out = simulate()
    assert code == 0 and out[-1]["outcome"] == "promoted"
    assert hooks_of(out) == [
        ("run", "smoke", "5"),
        ("run", "workers-up-new", "25"), ("run", "workers-down-old", "25"), ("run", "smoke", "25"),
        ("run", "batch-stop-old", "50"), ("run", "batch-start-new", "50"), ("run", "smoke", "50"),
        ("run", "smoke", "100"),
        ("run", "announce-decommission", "promoted")]
    kinds = [e.get("kind") for e in out]
    assert kinds.index("approval_waiting") < [e.get("kind") == "weight_confirmed"
                                              and e["data"]["percent"] == 50
                                              for e in out].index(True)


def test_simulate_a_failure_at_50_undoes_every_hook_in_reverse_after_0() -> None:
    code, out = simulate("--metrics", "examples/hooks/fail-at-50.yaml")
    assert code == 3 and out[-1]["outcome"] == "rolled_back"
    undos = [x for x in hooks_of(out) if x[0] == "undo"]
    assert undos == [("undo", "batch-start-new", "50"), ("undo", "batch-stop-old", "50"),
                     ("undo", "workers-down-old", "25"), ("undo", "workers-up-new", "25")]
    kinds = [e.get("kind") for e in out]
    first_undo = next(i for i, e in enumerate(out)
                      if e.get("kind") == "hook_started" and e["data"]["phase"] == "undo")
    assert kinds.index("rolled_back") < first_undo  # traffic first


def doc_block(after: str) -> list[str]:
    """The lines of the first fenced block in docs/hooks.md after the line ``after``."""
    text = DOC.read_text()
    start = text.index(after)
    block = text[start:].split("```")[1]
    return [x for x in block.splitlines()[1:] if x.strip()]


@pytest.mark.parametrize("command", [
    "$ shiftover simulate examples/hooks/rails-cutover.yaml\n",
    "$ shiftover simulate examples/hooks/rails-cutover.yaml --metrics examples/hooks/fail-at-50.yaml\n",
    "$ shiftover validate examples/hooks/rails-cutover.yaml --offline\n",
])
def test_the_output_shown_in_the_doc_is_what_the_command_prints(command: str) -> None:
    text = DOC.read_text()
    assert command in text, f"docs/hooks.md no longer shows {command.strip()!r}"
    block = text[text.index(command):].split("```")[0].splitlines()[1:]
    shown = [x for x in block if x.strip()]
    r = runner.invoke(app, command.strip().split()[2:])
    printed = [x for x in r.output.splitlines() if x.strip()]
    # the wall time differs from one run to the next; everything else is exact
    wall = re.compile(r"in [0-9.]+s of wall time")
    assert [wall.sub("", x) for x in shown] == [wall.sub("", x) for x in printed]


# -- the scripts the plan calls ---------------------------------------------------------------


class _Stats(BaseHTTPRequestHandler):
    answer: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sidekiq_stats() -> Iterator[tuple[str, type[_Stats]]]:
    handler = type("Stats", (_Stats,), {"answer": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sidekiq/stats", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def latency_gate(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BIN / "check-queue-latency"), "--max", "30"],
                          env={**os.environ, "SIDEKIQ_STATS_URL": url},
                          capture_output=True, text=True, timeout=30)


def test_queue_latency_gate_pass_fail_and_cannot_tell(
        sidekiq_stats: tuple[str, type[_Stats]]) -> None:
    url, handler = sidekiq_stats
    handler.answer = {"sidekiq": {"default_latency": 2.5, "processes": 6, "enqueued": 14}}
    r = latency_gate(url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.splitlines()[0]) == {"value": 2.5}
    handler.answer = {"sidekiq": {"default_latency": 95.0, "processes": 6}}
    r = latency_gate(url)
    assert r.returncode == 1 and "95.0s, more than 30s" in r.stdout
    handler.answer = {"sidekiq": {"default_latency": 0, "processes": 0}}
    r = latency_gate(url)
    assert r.returncode == 1 and "no Sidekiq process" in r.stdout
    r = latency_gate("http://127.0.0.1:1/sidekiq/stats")  # nobody listens: cannot tell
    assert r.returncode == 3 and "cannot read" in r.stdout


STAND_IN = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$*" in
  *"length(AutoScalingGroups[0].Instances[?"*) echo "${ASG_IN_SERVICE:-0}" ;;
  *"length(AutoScalingGroups[0].Instances)"*) echo "${ASG_IN_SERVICE:-0}" ;;
  *pgrep*) exit 1 ;;          # no batch running on the old scheduler
esac
exit 0
"""


def run_script(tmp_path: Path, *argv: str, **env: str) -> tuple[subprocess.CompletedProcess[str],
                                                                 list[str]]:
    fake = tmp_path / "fake-bin"
    fake.mkdir(exist_ok=True)
    for tool in ("kubectl", "aws", "ssh"):
        (fake / tool).write_text(STAND_IN)
        (fake / tool).chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    facts = {"SHIFTOVER_HOOK": "h", "SHIFTOVER_PHASE": "run", "SHIFTOVER_PERCENT": "25",
             "SHIFTOVER_RUN_ID": "r1"}
    r = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                       timeout=30, env={**os.environ, **facts, **env,
                                        "PATH": f"{fake}:{os.environ['PATH']}",
                                        "CALLS": str(calls)})
    return r, calls.read_text().splitlines()


def test_workers_script_scales_each_environment(tmp_path: Path) -> None:
    r, calls = run_script(tmp_path, "workers", "scale", "new", "6")
    assert r.returncode == 0, r.stderr
    assert calls == [
        "kubectl --context accounting-eks -n accounting scale deployment/sidekiq --replicas=6",
        "kubectl --context accounting-eks -n accounting rollout status deployment/sidekiq "
        "--timeout=8m"]
    r, calls = run_script(tmp_path, "workers", "scale", "old", "0", ASG_IN_SERVICE="0")
    assert r.returncode == 0, r.stderr
    assert calls[0] == ("aws autoscaling set-desired-capacity --auto-scaling-group-name "
                        "accounting-sidekiq --desired-capacity 0")
    r, _ = run_script(tmp_path, "workers", "scale", "sideways", "1")
    assert r.returncode == 2 and "old or new" in r.stderr


def test_batch_scheduler_script_switches_each_side(tmp_path: Path) -> None:
    r, calls = run_script(tmp_path, "batch-scheduler", "disable", "old")
    assert r.returncode == 0, r.stderr
    assert calls[0].startswith("ssh deploy@scheduler.accounting.internal ")
    assert "whenever --clear-crontab accounting" in calls[0] and "pgrep" in calls[1]
    r, calls = run_script(tmp_path, "batch-scheduler", "enable", "new")
    assert r.returncode == 0, r.stderr
    assert calls == ["kubectl --context accounting-eks -n accounting patch cronjob "
                     'accounting-nightly -p {"spec":{"suspend":false}}']
    r, _ = run_script(tmp_path, "batch-scheduler", "start", "old")
    assert r.returncode == 2


def test_shell_scripts_parse() -> None:
    for name in ("workers", "batch-scheduler", "smoke"):
        r = subprocess.run(["sh", "-n", str(BIN / name)], capture_output=True, text=True)
        assert r.returncode == 0, f"{name}: {r.stderr}"


def test_smoke_script_fails_on_the_first_page_that_is_not_200(tmp_path: Path) -> None:
    broken: set[str] = set()

    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500 if self.path in broken else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        r = subprocess.run([str(BIN / "smoke"), base], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["200 /health", "200 /login", "200 /api/v1/status"]
        broken.add("/login")
        r = subprocess.run([str(BIN / "smoke"), base], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and f"{base}/login answered 500" in r.stderr
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
