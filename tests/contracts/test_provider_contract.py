"""The Provider contract, run over every provider implementation.

What every provider promises (see ``shiftover.providers.base``):

1. Built from a gate spec by ``shiftover.providers.build_provider(spec)``.
2. ``measure(now=...)`` returns a ``Measurement`` whose ``at`` is the ``now``
   passed in (providers never read the clock for it), ``samples`` None or an
   int >= 0, ``details`` a dict.
3. On failure it raises ``ProviderError`` (``NoData`` is one) and nothing else:
   no httpx, socket, JSON or Key errors leak to the engine.
4. Messages never contain the credentials of the URL.
5. After a failure it recovers: the next healthy answer is measured again.

Cases run against cheap local backends: the HTTP-speaking providers talk to a
scripted stdlib server that can answer like Prometheus / Alertmanager / a
health endpoint, or fail in each way a real network does (500, HTML, truncated
JSON, wrong shapes, closed connection, no answer within the timeout, nothing
listening).

To add a provider: write a ``Backend`` (``spec()``, ``healthy()``,
``fail(mode)``), register it in ``CASES`` with its failure modes, and remove its
type from ``PENDING``. ``test_every_provider_has_a_contract_case`` fails until
every registered provider is covered.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from shiftover.demo.prometheus import QuietHTTPServer
from shiftover.errors import BadInput, ProviderError
from shiftover.plan import HttpGate, PrometheusAlertsGate, PrometheusGate
from shiftover.providers import PROVIDERS, Provider, build_provider
from shiftover.types import Measurement

NOW = 1_800_000_123.5
SECRET = "contract-s3cret"

# Provider types registered in shiftover.providers without a case here yet.
# haproxy_stats: needs a real HAProxy runtime socket; its author adds a Backend
# (modes e.g. "refused", "unknown_server") to CASES and removes it from here.
PENDING = {"haproxy_stats"}


class Backend(Protocol):
    def spec(self) -> Any:
        """A gate spec pointing at this backend."""
        ...

    def healthy(self) -> None:
        """Make the next measure succeed."""
        ...

    def fail(self, mode: str) -> None:
        """Make the next measure fail in the way ``mode`` names."""
        ...


# --- a scripted HTTP backend ---------------------------------------------------

HTTP_FAILURES = (
    "refused",  # nothing listens
    "timeout",  # accepts, never answers within the gate's timeout
    "close",  # closes the connection without a response
    "http500_html",  # a proxy's error page
    "http404_empty",
    "not_json",  # 200 with HTML
    "truncated_json",
    "json_scalar",  # 200 with valid JSON of the wrong shape
    "json_list",
    "json_nulls",
    "json_error",  # a Prometheus-style status:error
    "non_numeric",  # right shape, values that are not numbers
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ScriptedHttp:
    """Answers ``healthy_answers[path]`` (status, JSON-able or bytes), or fails per ``mode``."""

    def __init__(self, healthy_answers: dict[str, tuple[int, Any]]) -> None:
        self.healthy_answers = healthy_answers
        self.mode = "healthy"
        self.stopping = threading.Event()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                mode = backend.mode
                path = self.path.split("?", 1)[0]
                if mode == "healthy":
                    status, payload = backend.healthy_answers.get(
                        path, (404, b"404 page not found")
                    )
                    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self._answer(status, body)
                elif mode == "timeout":
                    backend.stopping.wait(10)
                elif mode == "close":
                    self.close_connection = True
                elif mode == "http500_html":
                    self._answer(500, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                elif mode == "http404_empty":
                    self._answer(404, b"", "text/plain")
                elif mode == "not_json":
                    self._answer(200, b"<html>login</html>", "text/html")
                elif mode == "truncated_json":
                    self._answer(200, b'{"status":"success","data":{"resu')
                elif mode == "json_scalar":
                    self._answer(200, b"42")
                elif mode == "json_list":
                    self._answer(200, b"[1, {}, null]")
                elif mode == "json_nulls":
                    self._answer(
                        200,
                        b'{"status":"success","data":{"resultType":null,"result":null,"alerts":null}}',
                    )
                elif mode == "json_error":
                    self._answer(400, b'{"status":"error","errorType":"bad_data","error":"boom"}')
                elif mode == "non_numeric":
                    self._answer(
                        200,
                        json.dumps(
                            {
                                "status": "success",
                                "data": {
                                    "resultType": "vector",
                                    "result": [{"metric": "x", "value": [1, "abc"]}],
                                    "alerts": [None, 1, {"labels": None, "state": 5}],
                                },
                            }
                        ).encode(),
                    )
                else:  # pragma: no cover
                    raise AssertionError(mode)

            do_HEAD = do_GET
            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.refused_port = _free_port()

    def base_url(self) -> str:
        port = self.refused_port if self.mode == "refused" else self.port
        return f"http://contract:{SECRET}@127.0.0.1:{port}"

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@dataclass
class HttpBackend:
    """A provider whose spec is rebuilt from the scripted server's URL (it changes on 'refused')."""

    server: ScriptedHttp
    make_spec: Callable[[str], Any]

    def spec(self) -> Any:
        return self.make_spec(self.server.base_url())

    def healthy(self) -> None:
        self.server.mode = "healthy"

    def fail(self, mode: str) -> None:
        self.server.mode = mode


PROMETHEUS_VECTOR = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {"job": "app"}, "value": [NOW, "0.5"]}]},
}
PROMETHEUS_ALERTS = {
    "status": "success",
    "data": {
        "alerts": [
            {
                "labels": {"alertname": "Down", "service": "accounting"},
                "state": "firing",
                "activeAt": "2027-01-15T08:00:00Z",
            }
        ]
    },
}
ALERTMANAGER_ALERTS = [
    {
        "labels": {"alertname": "Down", "service": "accounting"},
        "startsAt": "2027-01-15T08:00:00Z",
        "status": {"state": "active"},
    }
]
TIMEOUT = "400ms"


@contextmanager
def _http_case(
    answers: dict[str, tuple[int, Any]], make_spec: Callable[[str], Any]
) -> Iterator[Backend]:
    server = ScriptedHttp(answers)
    try:
        yield HttpBackend(server, make_spec)
    finally:
        server.close()


def prometheus_case() -> Any:
    return _http_case(
        {"/api/v1/query": (200, PROMETHEUS_VECTOR)},
        lambda url: PrometheusGate(
            type="prometheus",
            name="err",
            url=url,
            query="sum(x)",
            samples_query="sum(y)",
            max=1,
            timeout=TIMEOUT,
        ),
    )


def prometheus_alerts_case() -> Any:
    return _http_case(
        {"/api/v1/alerts": (200, PROMETHEUS_ALERTS)},
        lambda url: PrometheusAlertsGate(
            type="prometheus_alerts",
            name="al",
            url=url,
            labels={"service": "accounting"},
            timeout=TIMEOUT,
        ),
    )


def alertmanager_alerts_case() -> Any:
    return _http_case(
        {"/api/v2/alerts": (200, ALERTMANAGER_ALERTS)},
        lambda url: PrometheusAlertsGate(
            type="prometheus_alerts",
            name="am",
            url=url,
            labels={"service": "accounting"},
            timeout=TIMEOUT,
        ),
    )


def http_case() -> Any:
    return _http_case(
        {"/healthz": (200, b"ok")},
        lambda url: HttpGate(type="http", name="hz", url=url + "/healthz", timeout=TIMEOUT),
    )


@dataclass(frozen=True)
class Case:
    gate_type: str
    open: Callable[[], Any]  # () -> context manager yielding a Backend
    failures: tuple[str, ...]


CASES: dict[str, Case] = {
    "prometheus": Case("prometheus", prometheus_case, HTTP_FAILURES),
    "prometheus_alerts": Case("prometheus_alerts", prometheus_alerts_case, HTTP_FAILURES),
    "prometheus_alerts@alertmanager": Case(
        "prometheus_alerts", alertmanager_alerts_case, HTTP_FAILURES
    ),
    "http": Case("http", http_case, HTTP_FAILURES),
    # "haproxy_stats": Case("haproxy_stats", haproxy_stats_case, ("refused", ...)),  <- add here
}


@pytest.fixture(params=sorted(CASES))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    with CASES[request.param].open() as b:
        yield b


def _check_measurement(m: Any) -> None:
    assert isinstance(m, Measurement)
    assert m.at == NOW
    assert m.value is None or isinstance(m.value, float)
    assert m.samples is None or (isinstance(m.samples, int) and m.samples >= 0)
    assert isinstance(m.details, dict)
    assert SECRET not in repr(m)


def _measure_or_provider_error(provider: Provider) -> Measurement | ProviderError:
    try:
        return provider.measure(now=NOW)
    except ProviderError as exc:
        return exc
    # any other exception propagates and fails the test: that is the contract


# --- the contract --------------------------------------------------------------------


def test_healthy_backend_gives_a_measurement_at_now(backend: Backend) -> None:
    provider = build_provider(backend.spec())
    assert isinstance(provider, Provider)
    for _ in range(2):  # providers may keep state between calls
        _check_measurement(provider.measure(now=NOW))


@pytest.mark.parametrize(
    ("case", "mode"),
    [(name, mode) for name, case in sorted(CASES.items()) for mode in case.failures],
)
def test_failures_raise_only_provider_errors(case: str, mode: str) -> None:
    with CASES[case].open() as b:
        b.fail(mode)
        provider = build_provider(b.spec())
        outcome = _measure_or_provider_error(provider)
        if isinstance(outcome, ProviderError):
            text = str(outcome)
            assert outcome.message.strip(), "a ProviderError must say what went wrong"
            assert SECRET not in text
            assert outcome.__cause__ is None or isinstance(outcome.__cause__, ProviderError)
        else:
            _check_measurement(outcome)  # e.g. an http probe reports a 500 as a status


@pytest.mark.parametrize("case", sorted(CASES))
def test_recovers_after_a_failure(case: str) -> None:
    with CASES[case].open() as b:
        b.fail("close")
        provider = build_provider(b.spec())
        _measure_or_provider_error(provider)
        b.healthy()
        _check_measurement(provider.measure(now=NOW))


def test_every_provider_has_a_contract_case() -> None:
    covered = {case.gate_type for case in CASES.values()}
    missing = set(PROVIDERS) - covered - PENDING
    assert not missing, f"providers without a contract case: {sorted(missing)}"


def test_unknown_gate_type_is_refused_with_the_known_ones() -> None:
    @dataclass(frozen=True)
    class Odd:
        type: str = "datadgo"

    with pytest.raises(BadInput) as info:
        build_provider(Odd())
    assert "prometheus" in str(info.value) and "http" in str(info.value)
