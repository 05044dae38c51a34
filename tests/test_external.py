"""shiftover.external: real child processes and a real local HTTP receiver.

No wall-clock assertions: a hanging command or server is shown to hit its timeout
by the outcome's flags, and a killed process group is shown gone by /proc."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import pytest

from shiftover.demo.process import QuietHTTPServer
from shiftover.external import CommandSpec, Outcome, WebhookSpec, call_webhook, run_command

PY = sys.executable


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, split after its ')'
        state, _ppid, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _read_pid(path: Path) -> int:
    return int(path.read_text().split()[0])


@pytest.fixture
def reap_group() -> Iterator[list[int]]:
    """Process groups a test started: SIGKILLed at the end whatever happened."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- commands -----------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3])
def test_exit_code_is_reported(code: int) -> None:
    out = run_command(["sh", "-c", f"echo hello; exit {code}"], timeout=30)
    assert out.exit_code == code
    assert out.ok is (code == 0)
    assert not out.timed_out and not out.stopped and out.error is None
    assert out.status is None
    assert out.stdout == "hello\n"
    assert out.summary().startswith(f"exit {code} in ")


def test_a_command_not_found_could_not_start() -> None:
    out = run_command(["shiftover-no-such-command", "--x"], timeout=30)
    assert not out.ok and out.exit_code is None
    assert out.error is not None and "No such file or directory" in out.error
    assert out.summary().startswith("could not start: ")
    assert "shiftover-no-such-command" in out.summary()


def test_a_file_that_is_not_executable_could_not_start(tmp_path: Path) -> None:
    script = tmp_path / "smoke"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    if os.geteuid() == 0 and os.access(script, os.X_OK):  # pragma: no cover - root bypass
        pytest.skip("root may execute anything here")
    out = run_command([str(script)], timeout=30)
    assert not out.ok and out.error is not None and "Permission denied" in out.error


def test_an_empty_argv_is_an_error_not_an_exception() -> None:
    out = run_command([], timeout=1)
    assert not out.ok and out.error == "no command given"


def test_a_hanging_command_is_killed_with_its_whole_process_group(
    tmp_path: Path, reap_group: list[int]
) -> None:
    pidfile = tmp_path / "pid"
    out = run_command(
        ["sh", "-c", f"echo $$ > {pidfile}; echo started; sleep 60 & sleep 60"], timeout=0.5
    )
    pgid = _read_pid(pidfile)
    reap_group.append(pgid)
    assert out.timed_out and not out.ok and not out.stopped
    assert out.exit_code == -signal.SIGTERM
    assert out.summary() == "timed out after 0.5s (killed)"
    assert "started" in out.output  # what it said before it hung is kept
    assert _group_members(pgid) == []  # the background sleep is gone too


def test_a_group_that_ignores_sigterm_gets_sigkill(tmp_path: Path, reap_group: list[int]) -> None:
    pidfile = tmp_path / "pid"
    out = run_command(
        ["sh", "-c", f"trap '' TERM; echo $$ > {pidfile}; sleep 60 & sleep 60"],
        timeout=0.3, kill_grace=0.3,
    )
    pgid = _read_pid(pidfile)
    reap_group.append(pgid)
    assert out.timed_out
    assert out.exit_code == -signal.SIGKILL
    assert _group_members(pgid) == []


def test_stop_kills_a_running_command(tmp_path: Path, reap_group: list[int]) -> None:
    marker = tmp_path / "started"
    out = run_command(
        ["sh", "-c", f"echo $$ > {marker}; sleep 60 & sleep 60"],
        timeout=60, stopping=lambda: marker.exists() and marker.stat().st_size > 0,
    )
    pgid = _read_pid(marker)
    reap_group.append(pgid)
    assert out.stopped and not out.timed_out and not out.ok
    assert out.summary().startswith("stopped after ")
    assert _group_members(pgid) == []


def test_a_command_killed_by_a_signal_says_which() -> None:
    out = run_command(["sh", "-c", "kill -KILL $$"], timeout=30)
    assert out.exit_code == -signal.SIGKILL and not out.ok
    assert out.summary().startswith("killed by SIGKILL in ")


def test_background_children_of_a_finished_command_do_not_hold_it(
    tmp_path: Path, reap_group: list[int]
) -> None:
    # the background sleep keeps the output pipe open after sh exits
    pidfile = tmp_path / "pid"
    out = run_command(["sh", "-c", f"echo $$ > {pidfile}; sleep 60 & echo done"], timeout=20)
    reap_group.append(_read_pid(pidfile))
    assert out.ok and not out.timed_out and out.stdout == "done\n"


def test_output_is_capped_keeping_the_tail() -> None:
    code = "import sys\nfor i in range(20000): sys.stdout.write(f'line {i}\\n')\n"
    total = sum(len(f"line {i}\n") for i in range(20000))
    out = run_command([PY, "-c", code], timeout=60, cap=1000)
    assert out.ok
    head, _, tail = out.stdout.partition("\n")
    assert head == f"[... {total - 1000} bytes cut]"
    assert len(tail) == 1000 and tail.endswith("line 19999\n")
    assert out.output.endswith("line 19999\n") and "bytes cut]" in out.output


def test_stdout_alone_and_both_streams_together() -> None:
    out = run_command(
        [PY, "-u", "-c", "import sys; print('out-1'); print('err-1', file=sys.stderr); "
         "sys.stderr.flush(); print('out-2')"],
        timeout=30,
    )
    assert out.stdout == "out-1\nout-2\n"
    for line in ("out-1", "err-1", "out-2"):
        assert line in out.output
    assert "err-1" not in out.stdout


def test_env_is_added_to_the_inherited_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFTOVER_TEST_INHERITED", "from-parent")
    out = run_command(
        ["sh", "-c", 'printf "%s|%s" "$GATE_NAME" "$SHIFTOVER_TEST_INHERITED"'],
        env={"GATE_NAME": "batch ran"}, timeout=30,
    )
    assert out.stdout == "batch ran|from-parent"


def test_stdin_is_empty() -> None:
    out = run_command(["cat"], timeout=30)  # would hang on a terminal
    assert out.ok and out.output == ""


def test_summary_wording() -> None:
    base: dict[str, Any] = {"ok": False, "exit_code": None, "status": None, "timed_out": False,
                            "stopped": False, "error": None, "output": "", "stdout": ""}
    assert Outcome(**{**base, "ok": True, "exit_code": 0, "seconds": 0.312}).summary() \
        == "exit 0 in 0.31s"
    assert Outcome(**{**base, "exit_code": 1, "seconds": 2.0}).summary() == "exit 1 in 2.0s"
    assert Outcome(**{**base, "timed_out": True, "seconds": 32.0, "timeout": 30.0}).summary() \
        == "timed out after 30s (killed)"
    assert Outcome(**{**base, "status": 503, "seconds": 0.1, "kind": "webhook"}).summary() \
        == "HTTP 503 in 0.10s"


# --- the plan model -----------------------------------------------------------------


def test_command_spec_takes_a_list_or_a_string_split_like_a_shell() -> None:
    assert CommandSpec(run="smoke --env 'production eu'").run == ["smoke", "--env", "production eu"]
    assert CommandSpec(run=["sh", "-c", "a | b"]).run == ["sh", "-c", "a | b"]
    spec = CommandSpec(run="x", env={"PORT": 8080, "DRY": True}, timeout="90s")
    assert spec.env == {"PORT": "8080", "DRY": "true"} and spec.timeout == 90.0
    assert CommandSpec(run="x").timeout == 60.0


@pytest.mark.parametrize(("run", "says"), [
    ("", "run: is empty"),
    ([], "run: is empty"),
    ("smoke 'unclosed", "cannot split"),
    (["smoke", 5], "is not a string"),
])
def test_command_spec_refuses_what_cannot_run(run: Any, says: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        CommandSpec(run=run)
    assert says in str(info.value)


def test_command_spec_json_schema_allows_both_forms() -> None:
    schema = CommandSpec.model_json_schema()
    kinds = {alt["type"] for alt in schema["properties"]["run"]["anyOf"]}
    assert kinds == {"array", "string"}


def test_webhook_spec_defaults_and_url_check() -> None:
    spec = WebhookSpec(url="https://hooks.example/x")
    assert spec.method == "POST" and spec.timeout == 10.0 and spec.body is None
    with pytest.raises(pydantic.ValidationError):
        WebhookSpec(url="hooks.example/x")


# --- webhooks -----------------------------------------------------------------------


@dataclass
class Receiver:
    """A local HTTP receiver: answers ``status`` (or hangs while ``hang``), records requests."""

    status: int = 200
    hang: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    server: QuietHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers), "body": body})
                receiver.arrived.set()
                if receiver.hang:
                    receiver.release.wait(30)
                    return
                answer = f"answer {receiver.status}".encode()
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PUT = do_GET = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.close()


def test_a_2xx_is_ok_and_the_json_body_is_sent(receiver: Receiver) -> None:
    out = call_webhook(receiver.url, body={"event": "promoted", "percent": 100},
                       headers={"Authorization": "Bearer hook-s3cret"}, timeout=10)
    assert out.ok and out.status == 200 and out.exit_code is None and out.error is None
    assert out.output == "answer 200"
    assert out.summary().startswith("HTTP 200 in ")
    (req,) = receiver.requests
    assert req["method"] == "POST" and req["path"] == "/hook"
    assert json.loads(req["body"]) == {"event": "promoted", "percent": 100}
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["Authorization"] == "Bearer hook-s3cret"
    assert "hook-s3cret" not in out.summary() + out.output + repr(out)


def test_a_string_body_is_sent_as_is_with_the_method_asked(receiver: Receiver) -> None:
    out = call_webhook(receiver.url, method="PUT", body="plain text", timeout=10)
    assert out.ok
    (req,) = receiver.requests
    assert req["method"] == "PUT" and req["body"] == b"plain text"


def test_a_500_is_not_ok_and_carries_the_status(receiver: Receiver) -> None:
    receiver.status = 500
    out = call_webhook(receiver.url, body={"x": 1}, timeout=10)
    assert not out.ok and out.status == 500 and out.error is None and not out.timed_out
    assert out.summary().startswith("HTTP 500 in ") and out.output == "answer 500"


def test_a_hanging_receiver_hits_the_timeout(receiver: Receiver) -> None:
    receiver.hang = True
    out = call_webhook(receiver.url, body={"x": 1}, timeout=0.3)
    assert out.timed_out and not out.ok and out.status is None
    assert out.summary() == "timed out after 0.3s"


def test_stop_abandons_a_hanging_call(receiver: Receiver) -> None:
    receiver.hang = True
    out = call_webhook(receiver.url, body={"x": 1}, timeout=30, stopping=receiver.arrived.is_set)
    assert out.stopped and not out.timed_out and not out.ok


def test_connection_refused_is_an_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    out = call_webhook(f"http://user:pw-s3cret@127.0.0.1:{port}/x", body={}, timeout=5)
    assert not out.ok and out.status is None and not out.timed_out
    assert out.error is not None and out.summary().startswith("request failed: ")
    assert "pw-s3cret" not in out.summary()
