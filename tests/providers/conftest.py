"""Fixtures for the Prometheus, Alertmanager and HTTP provider tests.

One real Prometheus (and one Alertmanager) per test session, scraping a
:class:`MetricsTarget` the tests control. Prometheus discovers static targets
about 5 s after start, so starting it once is what keeps these tests fast.

Alert rules (evaluated every second):

- ``AccountingBroken``  fires at once while ``accounting_broken == 1``
  (labels service=accounting, severity=page)
- ``AccountingSlow``    same condition but ``for: 1h``: stays *pending*
- ``BillingDown``       always firing, labels service=billing (must not match
  an accounting gate)
"""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shiftover.demo.prometheus import (
    AlertmanagerProcess,
    MetricsTarget,
    PrometheusProcess,
    QuietHTTPServer,
    free_port,
)

PROMETHEUS_RULES: list[dict[str, Any]] = [
    {
        "alert": "AccountingBroken",
        "expr": "accounting_broken == 1",
        "for": "0s",
        "labels": {"service": "accounting", "severity": "page"},
    },
    {
        "alert": "AccountingSlow",
        "expr": "accounting_broken == 1",
        "for": "1h",
        "labels": {"service": "accounting", "severity": "ticket"},
    },
    {"alert": "BillingDown", "expr": "vector(1)", "for": "0s", "labels": {"service": "billing"}},
]


def _need(binary: str, package: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (apt-get install {package})")


@pytest.fixture(scope="session")
def prometheus_target() -> Iterator[MetricsTarget]:
    with MetricsTarget() as target:
        target.set("accounting_broken", 0, {"service": "accounting"})
        yield target


@pytest.fixture(scope="session")
def alertmanager_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerProcess]:
    _need("prometheus-alertmanager", "prometheus-alertmanager")
    with AlertmanagerProcess(tmp_path_factory.mktemp("alertmanager")) as am:
        yield am


@pytest.fixture(scope="session")
def prometheus_process(
    tmp_path_factory: pytest.TempPathFactory,
    prometheus_target: MetricsTarget,
    alertmanager_process: AlertmanagerProcess,
) -> Iterator[PrometheusProcess]:
    _need("prometheus", "prometheus")
    with PrometheusProcess(
        tmp_path_factory.mktemp("prometheus"),
        jobs=[("app", [prometheus_target.address])],
        rules=PROMETHEUS_RULES,
        alertmanager=alertmanager_process.url,
    ) as prom:
        prom.wait_for_targets(timeout=30)
        yield prom


@pytest.fixture
def prometheus_refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def _wait_for(
    probe: Callable[[], Any], accept: Callable[[Any], bool], *, timeout: float = 20.0
) -> Any:
    """Call ``probe`` until ``accept(result)``; bounded. Returns the last result."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # keep polling: the scrape may not have happened yet
            last = exc
        else:
            if accept(last):
                return last
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s; last result: {last!r}")


Poll = Callable[..., Any]


@pytest.fixture
def prometheus_poll() -> Poll:
    """``prometheus_poll(probe, accept, timeout=20)``: poll until ``accept(probe())``."""
    return _wait_for


# --- HTTP probe target ---------------------------------------------------------


class HttpTarget:
    """A scripted HTTP server for probe tests.

    /ok -> 200 "status: healthy"; /status/N -> N; /slow?delay=S -> sleeps S then 200;
    /big -> 1 MiB of "x" then "NEEDLE"; /headers -> echoes X-Probe; /redirect -> 302;
    /trickle -> a byte every 0.2 s for 10 s.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.requests: list[tuple[str, str]] = []
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _route(self) -> None:
                url = urlsplit(self.path)
                target.requests.append((self.command, url.path))
                if url.path == "/ok":
                    self._send(200, b"status: healthy")
                elif url.path.startswith("/status/"):
                    self._send(int(url.path.rsplit("/", 1)[1]), b"status page")
                elif url.path == "/slow":
                    delay = float(parse_qs(url.query).get("delay", ["5"])[0])
                    if target.stopping.wait(delay):
                        return
                    self._send(200, b"late")
                elif url.path == "/big":
                    self._send(200, b"x" * (1024 * 1024) + b"NEEDLE")
                elif url.path == "/headers":
                    self._send(200, f"probe={self.headers.get('X-Probe')}".encode())
                elif url.path == "/redirect":
                    self._send(302, b"", {"Location": "/ok"})
                elif url.path == "/trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "50")
                    self.end_headers()
                    for _ in range(50):
                        if target.stopping.wait(0.2):
                            return
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            return
                else:
                    self._send(404, b"not found")

            def do_GET(self) -> None:
                self._route()

            def do_HEAD(self) -> None:
                self._route()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._route()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HttpTarget:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def http_target() -> Iterator[HttpTarget]:
    target = HttpTarget().start()
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture
def http_refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/healthz"
