"""A reader that stops reading (`run | less`, a stuck log shipper, Ctrl-S) must not
freeze the run: its checks and its rollback go on while stdout is full. Real HAProxy,
real processes."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shiftover.demo.haproxy import stub_stack
from shiftover.types import Weights

pytestmark = pytest.mark.e2e

PLAN = """\
service: stalled-reader
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new, timeout: 500ms}}
steps: [10, 100]
bake: 1h
interval: 200ms
normal_state:
  - name: new app answers
    type: http
    url: http://{new}/
    expect_status: 200
    timeout: 500ms
failure_limit: 2
"""


def _fill(fd: int) -> int:
    """Write into a pipe until it is full; how many bytes that took."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    n = 0
    try:
        while True:
            n += os.write(fd, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return n


def _split(st: object) -> Weights | None:
    servers = st.haproxy.runtime().servers_state("web")  # type: ignore[attr-defined]
    return Weights.from_backend(servers["old"].weight, servers["new"].weight)


def _wait_for(pred: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_stalled_reader_does_not_freeze_the_checks_or_the_rollback(tmp_path: Path) -> None:
    with stub_stack(tmp_path) as st:
        plan = tmp_path / "plan.yaml"
        plan.write_text(PLAN.format(sock=st.haproxy.socket_path, new=st.new.address))
        r, w = os.pipe()
        assert _fill(w) > 0  # nobody reads: the run's first write would block
        proc = subprocess.Popen([sys.executable, "-m", "shiftover.cli", "run", str(plan), "--json"],
                                stdout=w, stderr=subprocess.DEVNULL)
        os.close(w)
        try:
            assert _wait_for(lambda: _split(st) == Weights(10), 30), "the run never moved"
            st.new.fail_ratio = 1.0
            assert _wait_for(lambda: _split(st) == Weights(0), 30), \
                "the run did not roll back while its stdout was full"
        finally:
            with os.fdopen(r, "rb") as reader:  # let it finish: drain what it wrote
                deadline = time.monotonic() + 30
                while proc.poll() is None and time.monotonic() < deadline:
                    reader.read1(65536)
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        assert proc.returncode == 3
