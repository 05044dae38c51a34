"""A managed HAProxy for the demo stack and the tests.

``HAProxyProcess`` writes a config from a few parameters, checks it with
``haproxy -c``, runs ``haproxy -f CFG -db`` as a foreground child (so the
process we hold *is* HAProxy: no pidfile races, ``terminate``/``wait`` just
work), waits until the runtime API answers, and stops it on exit.

The config is the smallest one that behaves like production for a cutover:
one HTTP frontend with keep-alive, backend ``web`` with two servers (old and
new) balanced ``roundrobin`` by weight only (no health checks, so the weights
alone decide the split), the built-in Prometheus exporter on its own port, and
an admin-level runtime API on a unix socket (plus, optionally, on TCP).

``StubBackend`` is the smallest HTTP server that can stand behind it in tests
and quick rehearsals: stdlib, keep-alive, counts what it served and fails a
set share of requests with 500, deterministically (every n-th, not random), so
a test can assert on exact ratios.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Self

from shiftover.demo.process import (
    ChildProcess,
    QuietHTTPServer,
    StartStop,
    free_port,
    log_tail,
    serve_in_thread,
    stop_serving,
)
from shiftover.errors import ShiftoverError
from shiftover.haproxy_api import HAProxyRuntime

_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.-]+:\d{1,5}$")


def find_haproxy() -> str | None:
    """The haproxy binary: on PATH, else Debian's /usr/sbin/haproxy."""
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None


class HAProxyProcess(ChildProcess):
    """HAProxy with backend ``web`` = {old, new}, run as a child process.

    Ports left as 0 are picked free. Use as a context manager, or call
    ``start()`` / ``stop()``.
    """

    poll_interval = 0.02

    def __init__(
        self,
        directory: str | Path,
        *,
        old_address: str,
        new_address: str,
        old_weight: int = 256,
        new_weight: int = 0,
        backend: str = "web",
        old_name: str = "old",
        new_name: str = "new",
        frontend_port: int = 0,
        metrics_port: int = 0,
        tcp_stats_port: int | None = None,
        binary: str | None = None,
        start_timeout: float = 10.0,
        extra_servers: tuple[tuple[str, str, int], ...] = (),
        backend_lines: tuple[str, ...] = (),
        server_options: dict[str, str] | None = None,
    ) -> None:
        extra_names = tuple((f"extra server {n!r}", n) for n, _, _ in extra_servers)
        for label, name in (("backend", backend), ("old_name", old_name), ("new_name", new_name),
                            *extra_names):
            if not _NAME.match(name):
                raise ShiftoverError(
                    f"HAProxy {label} {name!r} is not a valid name: use letters, digits, _ . : -"
                )
        if old_name == new_name:
            raise ShiftoverError(f"old and new servers need different names, both are {old_name!r}")
        for label, addr in (("old_address", old_address), ("new_address", new_address),
                            *((f"extra server {n!r}", a) for n, a, _ in extra_servers)):
            if not _HOSTPORT.match(addr):
                raise ShiftoverError(
                    f"HAProxy {label} {addr!r} is not host:port, e.g. 127.0.0.1:8001"
                )
        for label, w in (("old_weight", old_weight), ("new_weight", new_weight),
                         *((f"extra server {n!r}", w) for n, _, w in extra_servers)):
            if not 0 <= w <= 256:
                raise ShiftoverError(f"HAProxy {label} {w} is outside 0-256 (absolute weights)")
        self.directory = Path(directory)
        self.backend = backend
        self.old_name = old_name
        self.new_name = new_name
        self.old_address = old_address
        self.new_address = new_address
        self.old_weight = old_weight
        self.new_weight = new_weight
        self.frontend_port = frontend_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.tcp_stats_port = (
            (tcp_stats_port or free_port()) if tcp_stats_port is not None else None
        )
        self.binary = binary or find_haproxy()
        self.start_timeout = start_timeout
        # more servers in the backend: (name, host:port, weight), for tests of a third server
        self.extra_servers = extra_servers
        # tests of persistence, retries and health checks: raw lines for the backend,
        # options per server (e.g. backend_lines=("cookie SRV insert indirect nocache",),
        # server_options={"old": "cookie o check", "new": "cookie n check"})
        for line in backend_lines:
            if "\n" in line:
                raise ShiftoverError(f"backend line {line!r} must be one line")
        self.backend_lines = backend_lines
        self.server_options = dict(server_options or {})
        self.socket_path = str(self.directory / "admin.sock")
        self.config_path = self.directory / "haproxy.cfg"
        self.log_path = self.directory / "haproxy.log"
        self.pidfile = self.directory / "haproxy.pid"
        super().__init__()

    # --- addresses ---------------------------------------------------------

    @property
    def frontend_url(self) -> str:
        return f"http://127.0.0.1:{self.frontend_port}/"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def tcp_address(self) -> str | None:
        return f"127.0.0.1:{self.tcp_stats_port}" if self.tcp_stats_port is not None else None

    def runtime(self, timeout: float = 2.0) -> HAProxyRuntime:
        return HAProxyRuntime(self.socket_path, timeout)

    # --- config ------------------------------------------------------------

    def config(self) -> str:
        tcp = (
            f"    stats socket ipv4@127.0.0.1:{self.tcp_stats_port} level admin\n"
            if self.tcp_stats_port is not None
            else ""
        )
        return (
            "# written by shiftover.demo.haproxy; regenerated on every start\n"
            "global\n"
            f"    stats socket {self.socket_path} mode 600 level admin\n"
            f"{tcp}"
            "    stats timeout 10s\n"
            f"    pidfile {self.pidfile}\n"
            "\n"
            "defaults\n"
            "    mode http\n"
            "    option http-keep-alive\n"
            "    timeout connect 1s\n"
            "    timeout client 10s\n"
            "    timeout server 10s\n"
            "    timeout http-keep-alive 10s\n"
            "\n"
            "frontend shiftover_fe\n"
            f"    bind 127.0.0.1:{self.frontend_port}\n"
            f"    default_backend {self.backend}\n"
            "\n"
            "frontend shiftover_metrics\n"
            f"    bind 127.0.0.1:{self.metrics_port}\n"
            "    http-request use-service prometheus-exporter if { path /metrics }\n"
            '    http-request return status 404 content-type text/plain string "try /metrics\\n"\n'
            "\n"
            f"backend {self.backend}\n"
            "    balance roundrobin\n"
            + "".join(f"    {line}\n" for line in self.backend_lines)
            + "".join(f"    server {n} {a} weight {w}{self._opts(n)}\n" for n, a, w in (
                (self.old_name, self.old_address, self.old_weight),
                (self.new_name, self.new_address, self.new_weight), *self.extra_servers))
        )

    def _opts(self, server: str) -> str:
        opts = self.server_options.get(server, "")
        return f" {opts}" if opts else ""

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        return self.config_path

    def check_config(self) -> None:
        binary = self._binary()
        res = subprocess.run(
            [binary, "-c", "-q", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if res.returncode != 0:
            raise ShiftoverError(
                f"haproxy -c rejected {self.config_path}: {(res.stderr or res.stdout).strip()[-800:]}"
            )

    def _binary(self) -> str:
        if not self.binary:
            raise ShiftoverError(
                "haproxy is not installed (not on PATH, no /usr/sbin/haproxy)",
                hint="apt-get install haproxy, or pass binary=/path/to/haproxy",
            )
        return self.binary

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        self._refuse_second_start(f"HAProxy for {self.directory}")
        self.write_config()
        self.check_config()
        with contextlib.suppress(FileNotFoundError):
            Path(self.socket_path).unlink()  # a stale socket from a killed run
        argv = [self._binary(), "-f", str(self.config_path), "-db"]
        self._launch(argv, self.log_path, self.start_timeout)
        return self

    def _ready(self) -> bool:
        try:
            HAProxyRuntime(self.socket_path, timeout=1.0).command("show info")
        except ShiftoverError:
            return False
        return True

    def _not_ready(self, code: int | None) -> ShiftoverError:
        tail = log_tail(self.log_path, 8, "\n") or "(empty)"
        if code is not None:
            return ShiftoverError(
                f"HAProxy exited with code {code} while starting; log {self.log_path}: {tail}"
            )
        return ShiftoverError(
            f"HAProxy did not answer on {self.socket_path} within {self.start_timeout:g}s; "
            f"log {self.log_path}: {tail}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        self._end(timeout)


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as HAProxy expects of a backend
    disable_nagle_algorithm = True  # else keep-alive crawls at ~24 req/s
    server: _StubServer

    def do_GET(self) -> None:
        status = 500 if self.server.owner._count_one() else 200
        body = f"{self.server.owner.name} {status}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", self.server.owner.name)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests send hundreds of requests


class _StubServer(QuietHTTPServer):
    owner: StubBackend


class StubBackend(StartStop):
    """A tiny HTTP backend on 127.0.0.1 in a thread; answers ``"<name> <status>"``.

    ``fail_ratio`` (0-1) is the share of requests answered with 500, spread
    evenly: 0.25 fails requests 4, 8, 12, ... Counters: ``requests``, ``errors``.
    """

    def __init__(self, name: str, *, fail_ratio: float = 0.0, port: int = 0) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.fail_ratio = fail_ratio
        self.requests = 0
        self.errors = 0
        self._server = _StubServer(("127.0.0.1", port), _StubHandler)
        self._server.owner = self
        self._thread: threading.Thread | None = None

    @property
    def fail_ratio(self) -> float:
        return float(self._ratio)

    @fail_ratio.setter
    def fail_ratio(self, value: float) -> None:
        if not 0 <= value <= 1:
            raise ValueError(f"fail_ratio {value} is outside 0-1")
        with self._lock:
            self._ratio = Fraction(str(value))
            self._since_change = 0

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _count_one(self) -> bool:
        """Count a request; True when it must fail."""
        with self._lock:
            self.requests += 1
            n = self._since_change = self._since_change + 1
            fail = int(n * self._ratio) > int((n - 1) * self._ratio)
            if fail:
                self.errors += 1
            return fail

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.errors = 0
            self._since_change = 0

    def start(self) -> Self:
        if self._thread is None:
            self._thread = serve_in_thread(self._server, f"stub-backend-{self.name}")
        return self

    def stop(self) -> None:
        stop_serving(self._server, self._thread)
        self._thread = None


@dataclasses.dataclass(frozen=True)
class StubStack:
    """A real HAProxy in front of two :class:`StubBackend` servers, ``old`` and ``new``."""

    haproxy: HAProxyProcess
    old: StubBackend
    new: StubBackend


@contextlib.contextmanager
def stub_stack(
    directory: str | Path, *, new_weight: int = 0, tcp_stats_port: int | None = None
) -> Iterator[StubStack]:
    """HAProxy (backend ``web``: old=256, new=``new_weight``) over two stub backends,
    all on 127.0.0.1, stopped on exit: the router, provider and e2e tests' stack."""
    with StubBackend("old") as old, StubBackend("new") as new, HAProxyProcess(
        directory, old_address=old.address, new_address=new.address,
        new_weight=new_weight, tcp_stats_port=tcp_stats_port,
    ) as proc:
        yield StubStack(proc, old, new)


__all__ = ["HAProxyProcess", "StubBackend", "StubStack", "find_haproxy", "free_port", "stub_stack"]
