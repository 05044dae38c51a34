"""Ways a new environment breaks behind a real HAProxy, for the provider tests.

- :class:`FaultyHAProxy`: :class:`~shiftover.demo.haproxy.HAProxyProcess` with
  the backend options a site really sets (``retries``, ``option redispatch``, a
  short ``timeout server``, ``check`` on the servers) and, optionally, a second
  backend in ``mode tcp``.
- :class:`ProcessBackend`: a stub backend in a child process, so "the new
  environment died" is a real SIGKILL: its sockets, HAProxy's idle keep-alive
  connections to it included, go away the way they do in production.
- :class:`HangingBackend`: accepts connections and never answers.

Everything binds 127.0.0.1, waits in bounded loops and stops what it started.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Self

import httpx

from shiftover.demo.haproxy import HAProxyProcess
from shiftover.demo.process import ChildProcess, StartStop, free_port, log_tail
from shiftover.errors import ShiftoverError
from shiftover.haproxy_api import HAProxyRuntime

SHORT_SERVER_TIMEOUT = "timeout server 1s"  # a hanging server answers 504 within a second
CHECK = "check inter 100ms fall 1 rise 1"  # a dead server is DOWN within ~0.1 s


class FaultyHAProxy(HAProxyProcess):
    """Backend ``web`` = {old, new} with ``backend_lines`` added to it and
    ``server_options`` on both server lines; with ``tcp_backend`` also a
    backend ``tcpweb`` in ``mode tcp`` over the same two servers."""

    def __init__(
        self,
        directory: str | Path,
        *,
        backend_lines: tuple[str, ...] = (),
        server_options: str = "",
        tcp_backend: bool = False,
        **kw: Any,
    ) -> None:
        names = (kw.get("old_name", "old"), kw.get("new_name", "new"))
        super().__init__(directory, backend_lines=backend_lines,
                         server_options=dict.fromkeys(names, server_options), **kw)
        self.tcp_backend = tcp_backend

    def config(self) -> str:
        text = super().config()
        if self.tcp_backend:
            text += (
                "\nbackend tcpweb\n"
                "    mode tcp\n"
                "    balance roundrobin\n"
                f"    server {self.old_name} {self.old_address} weight 256\n"
                f"    server {self.new_name} {self.new_address} weight 256\n"
            )
        return text


_STUB_MAIN = """
import sys, time
from shiftover.demo.haproxy import StubBackend
StubBackend(sys.argv[1], port=int(sys.argv[2])).start()
while True:
    time.sleep(60)
"""


class ProcessBackend(ChildProcess):
    """A :class:`~shiftover.demo.haproxy.StubBackend` in a child process on a port of its own."""

    def __init__(self, name: str, directory: Path, *, start_timeout: float = 10.0) -> None:
        super().__init__()
        self.name = name
        self.port = free_port()
        self.log_path = directory / f"backend-{name}.log"
        self.start_timeout = start_timeout

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._refuse_second_start(f"backend {self.name}")
        argv = [sys.executable, "-c", _STUB_MAIN, self.name, str(self.port)]
        self._launch(argv, self.log_path, self.start_timeout, python=True)
        return self

    def _ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def _not_ready(self, code: int | None) -> ShiftoverError:
        return ShiftoverError(
            f"backend {self.name} on {self.address} did not start (exit {code}): {log_tail(self.log_path)}"
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye to HAProxy's keep-alive connections."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._end(5.0)

    def stop(self) -> None:
        self._end(5.0)


class HangingBackend(StartStop):
    """Accepts connections, reads the request, never answers (until stopped)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._stopping = threading.Event()
        self._held: list[socket.socket] = []
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._serve, name="hanging-backend", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


def send(url: str, n: int, *, timeout: float = 5.0) -> Counter[int | str]:
    """Send ``n`` GETs on one keep-alive client; count statuses (or error names)."""
    seen: Counter[int | str] = Counter()
    with httpx.Client(timeout=timeout) as client:
        for _ in range(n):
            try:
                seen[client.get(url).status_code] += 1
            except httpx.HTTPError as exc:
                seen[type(exc).__name__] += 1
    return seen


def wait_for_status(
    runtime: HAProxyRuntime, backend: str, server: str, word: str, *, timeout: float = 10.0
) -> str:
    """Poll ``show stat`` until the server's status starts with ``word``; bounded."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = runtime.stat_row(backend, server).get("status", "")
        if status.startswith(word):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{backend}/{server} not {word} within {timeout}s (status {status!r})")


__all__ = [
    "CHECK",
    "SHORT_SERVER_TIMEOUT",
    "FaultyHAProxy",
    "HangingBackend",
    "ProcessBackend",
    "send",
    "wait_for_status",
]
