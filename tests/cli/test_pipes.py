"""``shiftover ... --json | head``: a reader that stops reading ends the command
quietly (no traceback, no "Exception ignored"), and a ``run`` is stopped first
and journals ``run_stopped``.

The reader here is the test itself, which closes its end of the pipe before the
command writes a byte: every write then fails with EPIPE, deterministically."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shiftover.demo.haproxy import stub_stack
from shiftover.engine import events as ev
from shiftover.store import STATE_ENV_VAR, open_store

from .helpers import need_haproxy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plan.yaml"


def closed_pipe(*args: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``shiftover ARGS`` with nobody reading its stdout; (exit code, stderr)."""
    with tempfile.TemporaryFile("w+") as errfile:
        proc = subprocess.Popen([sys.executable, "-m", "shiftover.cli", *args],
                                stdout=subprocess.PIPE, stderr=errfile, text=True)
        assert proc.stdout is not None
        proc.stdout.close()  # like `| head -0`: gone before the first write
        try:
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        errfile.seek(0)
        return code, errfile.read()


def quiet(err: str) -> bool:
    return not any(w in err for w in ("Traceback", "Exception ignored", "BrokenPipe",
                                      "internal error"))


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(EXAMPLE.read_text())
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        for i in range(300):  # more than a pipe buffer of history
            store.append(service="accounting-web", run_id="r", kind=ev.CHECK, at=1e9 + i,
                         data={"verdict": "pass", "results": [{"gate": "g" * 200}]})
    return plan


@pytest.mark.parametrize("args", [
    ["status", "{plan}", "--json"], ["status", "{plan}"], ["history", "{plan}", "--json", "--all"],
    ["history", "{plan}"], ["plan", "{plan}", "--json"], ["plan", "{plan}"],
    ["validate", "{plan}", "--offline", "--json"], ["schema"], ["--version"], ["--help"],
])
def test_a_closed_pipe_ends_a_command_quietly(journal: Path, args: list[str]) -> None:
    code, err = closed_pipe(*(a.format(plan=journal) for a in args))
    assert quiet(err), err
    # --help is printed by Click's own console, which exits 1 on a closed pipe
    assert code == (1 if args == ["--help"] else 0), err


@pytest.mark.e2e
def test_run_json_into_a_closed_pipe_stops_and_journals_run_stopped(tmp_path: Path) -> None:
    need_haproxy()
    with stub_stack(tmp_path / "hap") as st:
        plan = tmp_path / "plan.yaml"
        plan.write_text(
            "service: piped\n"
            f"router: {{type: haproxy, socket: {st.haproxy.socket_path}, backend: web, old: old, new: new}}\n"
            "steps: [50, 100]\nbake: 30s\ninterval: 200ms\n"
            f"normal_state: [{{name: up, type: http, url: 'http://{st.new.address}/', timeout: 1s}}]\n")
        code, err = closed_pipe("run", str(plan), "--json")
        assert quiet(err), err
        assert code == 4  # held: stopped with the weights in place
        with open_store(os.environ[STATE_ENV_VAR]) as store:
            stopped = store.events(service="piped", kinds=[ev.RUN_STOPPED])
            assert store.leases() == []  # released
        assert stopped and stopped[-1].data["outcome"] == "held"
