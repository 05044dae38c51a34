"""Every hint shiftover prints can be pasted: it names the plan as typed (and
``--state`` when given), it parses, and pasted it does what it says.

Driven as a new user would, against a real HAProxy: a run that stops at a step
waiting for approval, then every command printed by ``run``, ``status``,
``validate``, ``pause`` and ``approve`` is pasted in the order a person would."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
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
from shiftover.store import STATE_ENV_VAR, open_store

from .helpers import need_haproxy

pytestmark = pytest.mark.e2e
runner = CliRunner()

PLAN = """\
service: hints-web
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new}}
steps: [50, 100]
approvals: [100]
bake: 300ms
interval: 100ms
normal_state:
  - name: new app answers
    type: http
    url: http://{new}/
    timeout: 1s
"""


class Stack(NamedTuple):
    plan: Path
    haproxy: HAProxyProcess
    new: StubBackend


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    need_haproxy()
    monkeypatch.chdir(tmp_path)  # the plan is given as a relative path, as people type it
    with stub_stack(tmp_path / "hap") as st:
        plan = Path("my plan.yaml")  # a space: hints must quote it
        plan.write_text(PLAN.format(sock=st.haproxy.socket_path, new=st.new.address))
        yield Stack(plan, st.haproxy, st.new)


def hints(text: str) -> list[str]:
    """``next: CMD`` lines and `CMD` in backticks that start with shiftover."""
    found = [m.group(1).strip() for m in re.finditer(r"^\s*next: (.+)$", text, re.M)]
    found += re.findall(r"`(shiftover [^`]+)`", text)
    return list(dict.fromkeys(found))


def paste(hint: str, *bound: str) -> tuple[int, str]:
    argv = shlex.split(hint)
    assert argv[0] == "shiftover", hint
    r = runner.invoke(app, [*argv[1:], *bound])
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    assert "Usage:" not in r.output, (hint, r.output)
    return r.exit_code, r.output


def kinds() -> list[str]:
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        return [e.kind for e in store.events(service="hints-web")]


def test_every_hint_works_when_pasted(stack: Stack) -> None:
    plan = str(stack.plan)
    quoted = shlex.quote(plan)
    r = runner.invoke(app, ["validate", plan])
    assert r.exit_code == 0, r.output
    assert hints(r.output) == [f"shiftover plan {quoted}", f"shiftover run {quoted}"]
    for h in hints(r.output)[:1]:
        assert paste(h)[0] == 0

    # the run stops at the step that waits for approval: held, and says what to type
    r = runner.invoke(app, ["run", plan, "--max-duration", "3s"])
    assert r.exit_code == 4, r.output
    held = hints(r.output)
    assert held == [f"shiftover approve {quoted} --step 100", f"shiftover run {quoted}",
                    f"shiftover rollback {quoted}"]
    assert "unwatched: 50% on new, no run" in " ".join(r.output.split())
    assert "waiting approval" in r.output and "next: shiftover approve" in r.output

    # status says the same, in text and JSON
    text = runner.invoke(app, ["status", plan]).output
    data = json.loads(runner.invoke(app, ["status", plan, "--json"]).stdout)
    assert hints(text) == data["hints"] == held
    assert data["status"] == "held" and data["unwatched"] is True
    assert data["router"]["percent"] == 50 and data["waiting_approval"] == 100

    # an operator command with no run says how to start one
    r = runner.invoke(app, ["pause", plan, "-m", "lunch"])
    assert hints(r.output) == [f"shiftover run {quoted}"]
    data = json.loads(runner.invoke(app, ["status", plan, "--json"]).stdout)
    assert data["status"] == "paused"
    assert f"shiftover resume {quoted}" in data["hints"]
    for h in data["hints"]:
        verb = shlex.split(h)[1]
        if verb == "resume":
            assert paste(h)[0] == 0

    # paste them in a person's order: approve, then run (to the end), then rollback
    assert paste(held[0])[0] == 0
    assert kinds()[-1] == ev.APPROVED
    code, out = paste(held[1])
    assert code == 0 and "promoted" in out
    data = json.loads(runner.invoke(app, ["status", plan, "--json"]).stdout)
    assert data["status"] == "promoted" and data["hints"] == []
    code, out = paste(held[2])
    assert code == 0 and "rolled back" in out
    assert stack.haproxy.runtime().servers_state("web")["new"].weight == 0


def test_a_dead_run_is_not_running_and_its_hints_still_work(stack: Stack) -> None:
    """SIGKILL a run mid-campaign: status says so, and offers nothing the lease refuses."""
    plan = str(stack.plan)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "shiftover.cli", "run", plan, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the run waits for the approval
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            line = proc.stdout.readline() if ready else ""
            if ready and not line:
                break  # the run ended
            if line and json.loads(line).get("kind") == ev.APPROVAL_WAITING:
                break
        live = json.loads(runner.invoke(app, ["status", plan, "--json"]).stdout)
        assert live["running"] is True and live["status"] == "waiting_approval"
        assert live["hints"] == [f"shiftover approve {shlex.quote(plan)} --step 100",
                                 f"shiftover pause {shlex.quote(plan)}",
                                 f"shiftover rollback {shlex.quote(plan)}"]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    dead = json.loads(runner.invoke(app, ["status", plan, "--json"]).stdout)
    assert dead["running"] is False and dead["run"]["pid_alive"] is False
    assert dead["status"] == "held" and dead["unwatched"] is True
    assert "killed or crashed" in dead["status_detail"]
    assert all(shlex.split(h)[1] != "run" for h in dead["hints"])  # the lease would refuse it
    text = runner.invoke(app, ["status", plan]).output
    assert "unwatched" in text and "50% on new, no run" in " ".join(text.split())
    # the rollback it offers works without waiting for the dead run's lease
    rollback = next(h for h in dead["hints"] if shlex.split(h)[1] == "rollback")
    code, out = paste(rollback)
    assert code == 0, out
    assert stack.haproxy.runtime().servers_state("web")["new"].weight == 0


def test_hints_name_the_program_as_it_was_invoked(stack: Stack) -> None:
    """Run as .venv/bin/shiftover with the venv not on PATH: the hint is that path,
    and pasted into a shell it works."""
    exe = Path(sys.executable).parent / "shiftover"
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if Path(p).resolve() != exe.parent.resolve())
    env = dict(os.environ, PATH=path)
    r = subprocess.run([str(exe), "validate", str(stack.plan)], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    found = hints(r.stdout)
    assert found and all(h.startswith(f"{exe} ") for h in found), found
    pasted = subprocess.run(found[0], shell=True, capture_output=True, text=True, env=env,
                            timeout=60)
    assert pasted.returncode == 0, pasted.stderr
    assert "steps as the router sets them" in pasted.stdout
