"""Secrets never reach any output path.

A plan takes secrets from the environment (``${VAR}``) in every place it can hold
one: the router's socket, backend and server names, a gate's name, URL, header,
``body_contains``, PromQL query and alert labels. This test exports distinctive
values for all of them, drives every command against a real HAProxy (healthy
run to promotion, the live view, operator commands, a failing plan, HAProxy
stopped, a lease held by someone else) and greps everything each command
printed for every secret and for any fragment of one.

The redacting output stream of the CLI is switched off here: what is checked is
that the data are masked before they are rendered (a secret split by line
wrapping, or escaped in JSON, would pass a stream filter)."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from shiftover import cli
from shiftover.demo.haproxy import HAProxyProcess, StubBackend
from shiftover.routers.haproxy import HAProxyRouter
from shiftover.store import STATE_ENV_VAR, open_store

from .helpers import need_haproxy, traffic

pytestmark = pytest.mark.e2e
runner = CliRunner()

MARKS = {
    "SO_BACKEND": "be_Q7backendSECRET",
    "SO_OLD": "Q7oldSECRETsrv",
    "SO_NEW": "Q7newSECRETsrv",
    "SO_GATE": "gate Q7gateSECRET",
    "SO_TOKEN": "Q7tokenSECRET",
    "SO_BEARER": "Q7bearerSECRET",
    "SO_BODY": "Q7bodySECRET",
    "SO_QUERY": "Q7querySECRET",
    "SO_LABEL": "Q7labelSECRET",
    "SO_PROMPATH": "Q7promSECRET",
}

HEALTHY = """\
service: secret-shop
router:
  type: haproxy
  socket: ${SO_SOCK}
  backend: ${SO_BACKEND}
  old: ${SO_OLD}
  new: ${SO_NEW}
steps: [50, 100]
approvals: [50]
bake: 300ms
interval: 100ms
normal_state:
  - name: ${SO_GATE}
    type: http
    url: http://%(new)s/?token=${SO_TOKEN}
    headers: {Authorization: "Bearer ${SO_BEARER}"}
    body_contains: ${SO_BODY}
    expect_status: 200
    timeout: 1s
  - name: new 5xx
    type: haproxy_stats
    socket: ${SO_SOCK}
    backend: ${SO_BACKEND}
    server: ${SO_NEW}
    max: 0.5
failure_limit: 2
"""

FAILING = """\
service: secret-broken
router:
  type: haproxy
  socket: ${SO_SOCK}
  backend: ${SO_BACKEND}
  old: ${SO_OLD}
  new: ${SO_NEW}
steps: [50, 100]
bake: 300ms
interval: 100ms
normal_state:
  - name: ${SO_GATE}
    type: http
    url: http://127.0.0.1:1/${SO_PROMPATH}?token=${SO_TOKEN}
    body_contains: ${SO_BODY}
    timeout: 500ms
  - name: error ratio
    type: prometheus
    url: http://127.0.0.1:1/${SO_PROMPATH}
    query: sum(rate(x{job="${SO_QUERY}"}[1m]))
    max: 0.01
    timeout: 500ms
  - name: alerts
    type: prometheus_alerts
    url: http://127.0.0.1:1/${SO_PROMPATH}
    labels: {team: "${SO_LABEL}"}
    timeout: 500ms
error_limit: 2
failure_limit: 2
"""


def fragments(secret: str, size: int = 8) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)} or {secret}


class Leaks:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.outputs: list[tuple[str, str]] = []

    def add(self, what: str, text: str) -> None:
        self.outputs.append((what, text))

    def check(self) -> None:
        found = []
        for what, text in self.outputs:
            squeezed = "".join(text.split())
            for name, value in self.secrets.items():
                # the socket's full path is the secret; its distinctive part is the marker
                marks = fragments(MARKS.get(name, "sk-Q7sockSECRET")) | {value}
                for m in marks:
                    if m in text or "".join(m.split()) in squeezed:
                        found.append(f"{name} ({m!r}) in the output of {what}")
                        break
        assert not found, "\n".join(found)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path, HAProxyProcess, Leaks]]:
    need_haproxy()
    sockdir = tmp_path / "sk-Q7sockSECRET"
    secrets = dict(MARKS, SO_SOCK=str(sockdir / "admin.sock"))
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    # data-level redaction only: the output stream passes everything through
    monkeypatch.setattr(cli._Redacting, "write",
                        lambda self, text: self._target().write(text) or len(text))
    with StubBackend("oldapp") as old, StubBackend(MARKS["SO_BODY"]) as new, HAProxyProcess(
            sockdir, old_address=old.address, new_address=new.address,
            backend=MARKS["SO_BACKEND"], old_name=MARKS["SO_OLD"],
            new_name=MARKS["SO_NEW"]) as hap:
        healthy = tmp_path / "healthy.yaml"
        healthy.write_text(HEALTHY % {"new": new.address})
        failing = tmp_path / "failing.yaml"
        failing.write_text(FAILING)
        with traffic(hap.frontend_url):
            yield healthy, failing, hap, Leaks(secrets)


def invoke(leaks: Leaks, *args: str) -> int:
    r = runner.invoke(cli.app, list(args))
    leaks.add(" ".join(args), r.output)
    assert "internal error" not in r.output and "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code


def test_no_secret_reaches_any_output(world: tuple[Path, Path, HAProxyProcess, Leaks],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    healthy, failing, hap, leaks = world
    h, f = str(healthy), str(failing)
    # the plan, before anything ran
    for args in (["validate", h, "--offline"], ["validate", h], ["validate", h, "--json"],
                 ["plan", h], ["plan", h, "--json"], ["status", h], ["status", h, "--json"],
                 ["history", h]):
        assert invoke(leaks, *args) in (0, 2)
    # a run up to the approval, as JSON lines, then what status and history say
    assert invoke(leaks, "run", h, "--json", "--max-duration", "3s") == 4
    for args in (["status", h], ["status", h, "--json"], ["history", h, "--all"],
                 ["history", h, "--json", "--all"], ["plan", h]):
        assert invoke(leaks, *args) == 0
    # operators
    assert invoke(leaks, "pause", h, "-m", "looking") == 0
    assert invoke(leaks, "resume", h) == 0
    assert invoke(leaks, "approve", h, "-m", "go") == 0
    # to the end with progress lines
    assert invoke(leaks, "run", h) == 0
    assert invoke(leaks, "rollback", h, "--json") == 0
    assert invoke(leaks, "rollback", h) == 0
    # the live view, on a terminal
    screen = io.StringIO()
    with monkeypatch.context() as m:
        m.setattr(cli, "out", Console(file=screen, force_terminal=True, width=100,
                                      color_system=None))
        assert invoke(leaks, "run", h, "--max-duration", "3s") == 4
    assert "shiftover run" in screen.getvalue() and "secret-shop" in screen.getvalue()
    leaks.add("run (live view)", screen.getvalue())
    # a plan whose gates cannot work: every provider error quotes its URL
    for args in (["validate", f], ["validate", f, "--json"], ["run", f, "--json", "--max-duration", "5s"],
                 ["status", f], ["status", f, "--json"], ["history", f, "--json", "--all"]):
        invoke(leaks, *args)
    # another run holds the router target: the lease error names it
    key = HAProxyRouter(leaks.secrets["SO_SOCK"], MARKS["SO_BACKEND"], MARKS["SO_OLD"],
                        MARKS["SO_NEW"]).lease_key()
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        store.acquire_lease(key=key, holder="run other", ttl=600,
                            meta={"service": "someone-else", "pid": os.getpid(),
                                  "host": socket.gethostname()})
    assert invoke(leaks, "run", h, "--json") == 5
    assert invoke(leaks, "status", h) == 0
    with open_store(os.environ[STATE_ENV_VAR]) as store:
        store.release_lease(key=key, holder="run other")
    # HAProxy gone: router errors quote the socket
    hap.stop()
    for args in (["status", h], ["status", h, "--json"], ["validate", h], ["validate", h, "--json"],
                 ["rollback", h, "--timeout", "1s"], ["rollback", h, "--timeout", "1s", "--json"],
                 ["run", h, "--json", "--max-duration", "1s"], ["run", h, "--max-duration", "1s"]):
        invoke(leaks, *args)
    assert len(leaks.outputs) >= 38
    leaks.check()
    # and the check itself finds a leak when there is one
    probe = Leaks(leaks.secrets)
    probe.add("probe", f"oops: {MARKS['SO_TOKEN'][:9]}\n{MARKS['SO_TOKEN'][9:]}")
    with pytest.raises(AssertionError):
        probe.check()
