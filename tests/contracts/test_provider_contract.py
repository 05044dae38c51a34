"""The Provider contract, run over every provider implementation.

What every provider promises (see ``shiftover.providers.base``):

1. Built from a gate spec by ``shiftover.providers.build_provider(spec)``.
2. ``measure(now=...)`` returns a ``Measurement`` whose ``at`` is the ``now``
   passed in (providers never read the clock for it), ``samples`` None or an
   int >= 0, ``details`` a dict. A provider may need a warm-up: its first
   ``Backend.warm_up`` calls may answer ``NoData`` instead (haproxy_stats takes
   a baseline on its first call: a ratio of counters needs two readings).
3. On failure it raises ``ProviderError`` (``NoData`` is one) and nothing else:
   no httpx, socket, JSON or Key errors leak to the engine.
4. Messages never contain the credentials of the URL.
5. After a failure it recovers: the next healthy answer is measured again
   (after the warm-up if the failure came first), and a failure in mid-run
   costs no new warm-up.
6. Which failure is which, because the engine and ``shiftover validate`` act on
   the difference (every failure mode of every case declares its ``Expect``):

   - ``ERROR``: the gate cannot work as written or cannot reach its backend
     (refused, timed out, garbage, a PromQL error, several series, no such
     backend or server, a ``mode tcp`` backend): ``ProviderError`` that is not
     ``NoData``, from the very first call (warm-up or not), so ``validate``
     fails on it.
   - ``NODATA``: the backend answered, with nothing to judge (an empty result,
     NaN, no traffic, a server at weight 0): ``NoData``, so ``validate``
     accepts it and the run holds.
   - ``FAILS``: the new environment is broken (a dead or DOWN server, a server
     in MAINT with a weight, an HTTP 500): a ``Measurement`` that the judge
     FAILs, never ``NoData`` (no data only holds: nothing would roll back).
   - ``VALUE``: any measurement (a probe reporting the status it got).

Cases run against cheap local backends: the HTTP-speaking providers talk to a
scripted stdlib server that can answer like Prometheus / Alertmanager / a
health endpoint, or fail in each way a real network does (500, HTML, truncated
JSON, wrong shapes, closed connection, no answer within the timeout, nothing
listening), or answer in a way only one provider cares about (an empty
vector, NaN, several series, an empty alert list). The haproxy_stats provider
reads a real HAProxy (started once per module, with two stub HTTP servers
behind it) for the healthy case, for the failures HAProxy itself gives
(unknown backend or server, a frontend or the BACKEND row named as one) and
for a broken new server, made so through the runtime API (its address moved
to a dead port, its health forced DOWN, MAINT, weight 0, no traffic); the
socket-level failures are a missing socket, a stale socket file, a plain file,
and a scripted unix-socket server that answers like a broken runtime API
(closes early, hangs, garbage, cut-off or malformed ``show stat`` CSV, a
``mode tcp`` backend's row). The command gate runs a real script whose behaviour a
mode file picks (exit 0, 1, 3, 127, a signal, a hang, no or bad value line, binary
output), or a path that does not exist or is not executable.

To add a provider: write a ``Backend`` (``spec()``, ``healthy()``,
``fail(mode)``, ``prime()``, ``warm_up``), register it in ``CASES`` with its
failure modes and what each must give, and remove its type from ``PENDING``.
``test_every_provider_has_a_contract_case`` fails until every registered
provider is covered.
"""

from __future__ import annotations

import csv
import enum
import http.server
import io
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cloudwatch_setup as cw
import httpx
import pytest

from shiftover.analysis.judge import judge
from shiftover.demo.datadog import DatadogDouble, Series
from shiftover.demo.prometheus import QuietHTTPServer
from shiftover.errors import BadInput, NoData, ProviderError
from shiftover.providers import PROVIDERS, Provider, build_provider
from shiftover.providers.command import CommandGate
from shiftover.providers.datadog import DatadogGate, DatadogMonitorsGate
from shiftover.providers.haproxy_stats import HAProxyStatsGate
from shiftover.providers.http import HttpGate
from shiftover.providers.prometheus import PrometheusAlertsGate, PrometheusGate
from shiftover.types import Measurement, Verdict

if TYPE_CHECKING:
    from shiftover.demo.haproxy import HAProxyProcess

NOW = 1_800_000_123.5
SECRET = "contract-s3cret"

# Provider types registered in shiftover.providers without a case here yet.
# ``compare`` and ``compare_latency``: their measurements belong to a step, which needs
# the router's split and a clock that moves; where the counts come from has its own
# contract suite (tests/contracts/test_count_source_contract.py), the latency sources
# their tests (tests/providers/test_prometheus_latency.py), and the step-tracking layer
# on top is tested in tests/providers/test_compare.py and test_compare_latency.py.
PENDING: set[str] = {"compare", "compare_latency"}


class Expect(enum.Enum):
    """What a failure mode must give (see point 6 of the module docstring)."""

    ERROR = "ProviderError, not NoData, from the first call"
    NODATA = "NoData"
    FAILS = "a measurement the judge FAILs"
    VALUE = "a measurement"


class Backend(Protocol):
    # measures a fresh provider may answer with NoData before it measures
    warm_up: int

    def spec(self) -> Any:
        """A gate spec pointing at this backend."""
        ...

    def healthy(self) -> None:
        """Make the next measure succeed."""
        ...

    def fail(self, mode: str) -> None:
        """Make the next measure fail in the way ``mode`` names."""
        ...

    def prime(self) -> None:
        """Called before each measure: give it something to measure (haproxy_stats:
        traffic through the server since the last reading). HTTP backends: nothing."""
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
    """Answers ``healthy_answers[path]`` (status, JSON-able or bytes), or fails per
    ``mode``: one of ``HTTP_FAILURES``, or one of ``mode_answers`` (answered on any path)."""

    def __init__(
        self,
        healthy_answers: dict[str, tuple[int, Any]],
        mode_answers: dict[str, tuple[int, Any]] | None = None,
    ) -> None:
        self.healthy_answers = healthy_answers
        self.mode_answers = mode_answers or {}
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
                if mode == "healthy" or mode in backend.mode_answers:
                    status, payload = backend.mode_answers.get(mode) or backend.healthy_answers.get(
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
    warm_up: int = 0

    def spec(self) -> Any:
        return self.make_spec(self.server.base_url())

    def healthy(self) -> None:
        self.server.mode = "healthy"

    def fail(self, mode: str) -> None:
        self.server.mode = mode

    def prime(self) -> None:
        pass


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


# Prometheus-specific answers: it answered, with nothing to judge or with a shape a
# gate cannot use
PROMETHEUS_ANSWERS: dict[str, tuple[int, Any]] = {
    "empty_vector": (200, {"status": "success", "data": {"resultType": "vector", "result": []}}),
    "nan": (
        200,
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [NOW, "NaN"]}]}},
    ),
    "several_series": (
        200,
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": {"server": "old"}, "value": [NOW, "0"]},
                    {"metric": {"server": "new"}, "value": [NOW, "1"]},
                ],
            },
        },
    ),
    "parse_error": (
        400,
        {
            "status": "error",
            "errorType": "bad_data",
            "error": 'invalid parameter "query": 1:9: parse error: unclosed left parenthesis',
        },
    ),
    "string_result": (200, {"status": "success", "data": {"resultType": "string", "result": [NOW, "x"]}}),
}
# the same, for a Prometheus or an Alertmanager asked for its alerts
ALERT_ANSWERS: dict[str, tuple[int, Any]] = {
    "no_alerts_prometheus": (200, {"status": "success", "data": {"alerts": []}}),
    "no_alerts_alertmanager": (200, []),
    "alert_without_labels": (200, {"status": "success", "data": {"alerts": [{"state": "firing"}]}}),
}


@contextmanager
def _http_case(
    answers: dict[str, tuple[int, Any]],
    make_spec: Callable[[str], Any],
    mode_answers: dict[str, tuple[int, Any]] | None = None,
) -> Iterator[Backend]:
    server = ScriptedHttp(answers, mode_answers)
    try:
        yield HttpBackend(server, make_spec)
    finally:
        server.close()


def prometheus_case(request: pytest.FixtureRequest) -> Any:
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
        PROMETHEUS_ANSWERS,
    )


def prometheus_alerts_case(request: pytest.FixtureRequest) -> Any:
    return _http_case(
        {"/api/v1/alerts": (200, PROMETHEUS_ALERTS)},
        lambda url: PrometheusAlertsGate(
            type="prometheus_alerts",
            name="al",
            url=url,
            labels={"service": "accounting"},
            timeout=TIMEOUT,
        ),
        ALERT_ANSWERS,
    )


def alertmanager_alerts_case(request: pytest.FixtureRequest) -> Any:
    return _http_case(
        {"/api/v2/alerts": (200, ALERTMANAGER_ALERTS)},
        lambda url: PrometheusAlertsGate(
            type="prometheus_alerts",
            name="am",
            url=url,
            labels={"service": "accounting"},
            timeout=TIMEOUT,
        ),
        ALERT_ANSWERS,
    )


def http_case(request: pytest.FixtureRequest) -> Any:
    return _http_case(
        {"/healthz": (200, b"ok")},
        lambda url: HttpGate(type="http", name="hz", url=url + "/healthz", timeout=TIMEOUT),
    )


# --- Datadog: the local double of its API (shiftover.demo.datadog) -----------------------

DD_QUERY = (
    "sum:trace.rack.request.errors{service:web}.as_count() / "
    "sum:trace.rack.request.hits{service:web}.as_count()"
)
DD_SAMPLES = "sum:trace.rack.request.hits{service:web}.as_count()"
DD_TAGS = ["service:accounting", "env:production"]
# contract mode -> the double's fault
DD_TRANSPORT = {
    "timeout": "hang",
    "close": "close",
    "http500_html": "html_502",
    "not_json": "not_json",
    "truncated_json": "malformed",
    "json_scalar": "wrong_shape",
}
# failures only the Datadog gates meet (the keys contain SECRET: they must never show)
DATADOG_MODES = (
    "dd_missing_keys",  # DD_API_KEY / DD_APP_KEY unset
    "dd_wrong_api_key",  # 403, and /api/v1/validate says the API key is not valid
    "dd_wrong_app_key",  # 403, the API key is valid
    "dd_rate_limited",  # 429, the limit resets after the gate's timeout
    "dd_http500",  # Datadog's own 500 with its {"errors": [...]} body
    "dd_no_series",  # a metric without data, a tag that matches nothing
    "dd_null_points",  # a series whose every point is null
    "dd_several_series",  # a query grouped "by {host}"
    "dd_query_error",  # 400: a query Datadog cannot parse
    "dd_errors_above_max",  # the new environment fails: the error ratio is above max
    "dd_no_monitor_matches",  # the selection finds no monitor
    "dd_monitor_alert",  # a selected monitor is in Alert
    "dd_monitor_warn",  # ... in Warn (warn_fails defaults to true)
    "dd_monitor_no_data",  # ... in No Data: a measurement the judge holds on
)
DATADOG_HTTP_FAILURES = {"refused": Expect.ERROR, **dict.fromkeys(DD_TRANSPORT, Expect.ERROR)}
DATADOG_API_FAILURES = dict.fromkeys(
    ("dd_missing_keys", "dd_wrong_api_key", "dd_wrong_app_key", "dd_rate_limited", "dd_http500"),
    Expect.ERROR,
)


@dataclass
class DatadogBackend:
    """The double, and the environment variables that point the gate at it (keys and
    DD_HOST are read at each measure, so one provider follows them)."""

    double: DatadogDouble
    env: pytest.MonkeyPatch
    monitors: bool
    refused_port: int = field(default_factory=_free_port)
    warm_up: int = 0

    def spec(self) -> Any:
        if self.monitors:
            return DatadogMonitorsGate(
                type="datadog_monitors", name="monitors", tags=DD_TAGS, timeout=TIMEOUT
            )
        return DatadogGate(
            type="datadog",
            name="web-errors",
            query=DD_QUERY,
            samples_query=DD_SAMPLES,
            min_samples=100,
            max=0.01,
            timeout=TIMEOUT,
        )

    def healthy(self) -> None:
        self.double.healthy()
        for name in ("DD_SITE", "DATADOG_HOST", "DD_APPLICATION_KEY"):
            self.env.delenv(name, raising=False)
        for name, value in self.double.env().items():
            self.env.setenv(name, value)
        self.double.set_series(DD_QUERY, Series([0.002, None, 0.004], scope="service:web"))
        self.double.set_series(DD_SAMPLES, Series([400.0, 500.0, None], scope="service:web"))
        self.double.remove_monitors()
        self.double.add_monitor("accounting 5xx", "OK", tags=[*DD_TAGS, "team:payments"])
        self.double.add_monitor("accounting p99", "OK", tags=DD_TAGS)
        self.double.add_monitor("billing 5xx", "Alert", tags=["service:billing", "env:production"])

    def fail(self, mode: str) -> None:
        self.healthy()
        double = self.double
        if mode == "refused":
            self.env.setenv("DD_HOST", f"http://127.0.0.1:{self.refused_port}")
        elif mode in DD_TRANSPORT:
            double.fail(DD_TRANSPORT[mode])
        elif mode == "dd_missing_keys":
            self.env.delenv("DD_API_KEY")
            self.env.delenv("DD_APP_KEY")
        elif mode == "dd_wrong_api_key":
            self.env.setenv("DD_API_KEY", f"{SECRET}-revoked-api-key")
        elif mode == "dd_wrong_app_key":
            self.env.setenv("DD_APP_KEY", f"{SECRET}-revoked-app-key")
        elif mode == "dd_rate_limited":
            double.fail("rate_limited", retry_after=30, reset=30)
        elif mode == "dd_http500":
            double.fail("http500")
        elif mode == "dd_no_series":
            double.set_series(DD_QUERY)
        elif mode == "dd_null_points":
            double.set_series(DD_QUERY, Series([None, None, None], scope="service:web"))
        elif mode == "dd_several_series":
            double.set_series(
                DD_QUERY,
                Series([0.001], scope="service:web,host:i-0a"),
                Series([0.5], scope="service:web,host:i-0b"),
            )
        elif mode == "dd_query_error":
            double.set_query_error(DD_QUERY, "Error parsing query: unexpected '/' at position 60")
        elif mode == "dd_errors_above_max":
            double.set_series(DD_QUERY, Series([0.2, 0.3, 0.25], scope="service:web"))
        elif mode == "dd_no_monitor_matches":
            double.remove_monitors()
        elif mode in ("dd_monitor_alert", "dd_monitor_warn", "dd_monitor_no_data"):
            state = {"dd_monitor_alert": "Alert", "dd_monitor_warn": "Warn"}.get(mode, "No Data")
            double.add_monitor("accounting queue depth", state, tags=DD_TAGS)
        else:  # pragma: no cover
            raise AssertionError(mode)

    def prime(self) -> None:
        pass


@contextmanager
def _datadog_case(request: pytest.FixtureRequest, *, monitors: bool) -> Iterator[Backend]:
    double = DatadogDouble(api_key=f"{SECRET}-api-key-0123", app_key=f"{SECRET}-app-key-4567")
    with double:
        backend = DatadogBackend(double, request.getfixturevalue("monkeypatch"), monitors)
        backend.healthy()
        yield backend


def datadog_case(request: pytest.FixtureRequest) -> Any:
    return _datadog_case(request, monitors=False)


def datadog_monitors_case(request: pytest.FixtureRequest) -> Any:
    return _datadog_case(request, monitors=True)


# --- HAProxy's runtime API: a real HAProxy, and a scripted unix socket ----------------

# Failures the scripted runtime API plays (see ScriptedRuntimeApi).
RUNTIME_API_FAILURES = (
    "close",  # accepts, reads the command, closes without a reply
    "timeout",  # accepts, never answers within the gate's timeout
    "garbage",  # answers text that is not `show stat` CSV
    "binary",  # answers bytes that are not UTF-8
    "permission_denied",  # HAProxy's in-band error for a stats socket below level admin
    "cut_in_header",  # the real `show stat` reply, cut off inside the CSV header
    "cut_in_row",  # ... cut off inside the server's row
    "cut_after_hash",  # ... cut off right after the "# " that starts the header
    "no_counters",  # the server's row without hrsp_*
    "tcp_mode",  # the server's row as a `mode tcp` backend shows it: mode=tcp, no hrsp_*
    "non_numeric",  # the server's row with hrsp_5xx=abc
)
HAPROXY_FAILURES: dict[str, Expect] = {
    "refused": Expect.ERROR,  # nothing at the socket path
    "stale_socket": Expect.ERROR,  # a socket file left by a killed HAProxy: nobody listens
    "not_a_socket": Expect.ERROR,  # a plain file at the socket path
    **dict.fromkeys(RUNTIME_API_FAILURES, Expect.ERROR),
    # a real HAProxy, asked about something that is not there
    "unknown_backend": Expect.ERROR,  # no such backend
    "unknown_server": Expect.ERROR,  # no such server in the backend
    "frontend": Expect.ERROR,  # the gate names a frontend as its backend
    "aggregate_row": Expect.ERROR,  # the gate names BACKEND as its server
    # a real HAProxy whose new server is broken while traffic is sent to it
    "dead_server": Expect.FAILS,  # its address moved to a port nobody listens on
    "down": Expect.FAILS,  # `set server web/new health down`: what a failing check does
    "maint": Expect.FAILS,  # `set server web/new state maint` with weight 256
    # a real HAProxy with nothing to judge
    "weight_0": Expect.NODATA,  # `set server web/new weight 0`: 0% on new
    "idle": Expect.NODATA,  # no traffic at all since the last check
}


def _show_stat_with(reply: str, backend: str, server: str, **changes: str) -> bytes:
    """``reply`` (a real ``show stat``) with ``changes`` made to one server's row."""
    rows = list(csv.reader(io.StringIO(reply[2:])))
    header, body = rows[0], [r for r in rows[1:] if r]
    for row in body:
        if row[:2] == [backend, server]:
            for column, value in changes.items():
                row[header.index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    return ("# " + out.getvalue() + "\n").encode()


class ScriptedRuntimeApi:
    """A unix-socket server that reads one command and answers like a broken
    HAProxy runtime API would, per ``mode`` (one of ``RUNTIME_API_FAILURES``).

    The cut-off and malformed replies are made from ``show_stat``, a real
    HAProxy's reply, so only the one thing named by the mode is wrong.
    """

    def __init__(self, path: str, show_stat: str) -> None:
        self.path = path
        self.mode = "close"
        self.stopping = threading.Event()
        row_at = show_stat.index("\nweb,new,") + 1
        self.replies = {
            "garbage": b"<html><body>this is not the runtime API</body></html>\n",
            "binary": b"\xff\xfe\x00\x81\xc3(\n",
            "permission_denied": b"Permission denied\n\n",
            "cut_in_header": show_stat[:40].encode(),
            "cut_in_row": show_stat[: row_at + 20].encode(),
            "cut_after_hash": b"# ",
            "no_counters": _show_stat_with(
                show_stat,
                "web",
                "new",
                **dict.fromkeys(
                    ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other"), ""
                ),
            ),
            "tcp_mode": _show_stat_with(
                show_stat,
                "web",
                "new",
                mode="tcp",
                **dict.fromkeys(
                    ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other"), ""
                ),
            ),
            "non_numeric": _show_stat_with(show_stat, "web", "new", hrsp_5xx="abc"),
        }
        api = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 10

            def handle(self) -> None:
                self.rfile.readline()  # one command per connection, like HAProxy's
                mode = api.mode
                if mode == "timeout":
                    api.stopping.wait(10)
                elif mode != "close":
                    self.wfile.write(api.replies[mode])

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        Path(self.path).unlink(missing_ok=True)


@dataclass
class HAProxyStack:
    haproxy: HAProxyProcess
    api: ScriptedRuntimeApi
    directory: Path
    new_port: int  # where web/new really listens (a stub backend)
    dead_port: int  # where nothing listens


@pytest.fixture(scope="module")
def haproxy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxyStack]:
    """One real HAProxy for the module: backend ``web`` = {old, new} at 50/50,
    each a stub HTTP server; plus the scripted runtime API and the dead paths."""
    from shiftover.demo.haproxy import find_haproxy, stub_stack

    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    directory: Path = tmp_path_factory.mktemp("contract_haproxy_stats")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(directory / "stale.sock"))  # the file stays, nobody listens
    (directory / "not-a-socket").write_text("not a socket\n")
    with stub_stack(directory, new_weight=256) as st:
        proc = st.haproxy
        api = ScriptedRuntimeApi(
            str(directory / "scripted.sock"), proc.runtime().command("show stat")
        )
        try:
            yield HAProxyStack(proc, api, directory, st.new.port, _free_port())
        finally:
            api.close()


@dataclass
class HAProxyBackend:
    """The gate's socket is a symlink this backend points at what should answer
    (the real HAProxy, the scripted API, a dead path), so one provider keeps one
    address across failure and recovery, as it does across an HAProxy restart."""

    stack: HAProxyStack
    warm_up: int = 1  # the first measure only takes the baseline
    backend: str = "web"
    server: str = "new"
    traffic: bool = True  # prime() sends requests
    link: Path = field(init=False)

    def __post_init__(self) -> None:
        self.link = self.stack.directory / "gate.sock"

    def spec(self) -> Any:
        return HAProxyStatsGate(
            type="haproxy_stats",
            name="new-5xx",
            socket=str(self.link),
            backend=self.backend,
            server=self.server,
            max=0.01,
            timeout=TIMEOUT,
        )

    def _point_at(self, target: str | Path) -> None:
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, self.link)

    def _new(self, change: str) -> None:
        self.stack.haproxy.runtime().command(f"set server web/new {change}")

    def healthy(self) -> None:
        self.backend, self.server = "web", "new"
        self.traffic = True
        self._new("state ready")
        self._new("health up")
        self._new("weight 256")
        self._new(f"addr 127.0.0.1 port {self.stack.new_port}")
        self._point_at(self.stack.haproxy.socket_path)

    def fail(self, mode: str) -> None:
        self.healthy()
        directory = self.stack.directory
        if mode == "refused":
            self._point_at(directory / "missing.sock")
        elif mode == "stale_socket":
            self._point_at(directory / "stale.sock")
        elif mode == "not_a_socket":
            self._point_at(directory / "not-a-socket")
        elif mode in RUNTIME_API_FAILURES:
            self.stack.api.mode = mode
            self._point_at(self.stack.api.path)
        elif mode == "unknown_backend":
            self.backend = "nope"
        elif mode == "unknown_server":
            self.server = "eks"
        elif mode == "frontend":
            self.backend = "shiftover_fe"
        elif mode == "aggregate_row":
            self.server = "BACKEND"
        elif mode == "dead_server":
            self._new(f"addr 127.0.0.1 port {self.stack.dead_port}")
        elif mode == "down":
            self._new("health down")
        elif mode == "maint":
            self._new("state maint")
        elif mode == "weight_0":
            self._new("weight 0")
        elif mode == "idle":
            self.traffic = False
        else:  # pragma: no cover
            raise AssertionError(mode)

    def prime(self) -> None:
        # round robin at 50/50: every two requests reach new once (unless it is out)
        if not self.traffic:
            return
        with httpx.Client(timeout=5.0) as client:
            for _ in range(4):
                client.get(self.stack.haproxy.frontend_url)


@contextmanager
def haproxy_stats_case(request: pytest.FixtureRequest) -> Iterator[Backend]:
    backend = HAProxyBackend(request.getfixturevalue("haproxy_stack"))
    backend.healthy()
    try:
        yield backend
    finally:
        backend.healthy()  # leave web/new ready for the next case


# --- command gates: a script whose behaviour a mode file picks ------------------------

# failures only command gates meet (``timeout`` and ``close`` are shared names)
COMMAND_MODES = (
    "not_found",  # run: names a file that does not exist
    "not_executable",  # ... one without the execute bit
    "exit_1",  # the check says the new environment is broken
    "exit_3",  # the check cannot tell (any code but 0 and 1)
    "exit_127",  # a shell inside the check did not find a command
    "bad_json",  # a value line whose value is not a number
    "no_json",  # exit 0 without a value line
    "garbage",  # exit 0 after binary output
)
COMMAND_SCRIPT = """\
#!/bin/sh
case "$(cat "$1")" in
  healthy) echo 'queue drained'; echo '{"value": 3, "samples": 120}' ;;
  exit_1) echo 'queue depth 5000'; echo '{"value": 5000, "samples": 120}'; exit 1 ;;
  exit_3) echo 'cannot reach the queue admin API'; exit 3 ;;
  timeout) echo 'waiting'; sleep 10 ;;
  close) printf '{"value": 1'; kill -KILL $$ ;;
  exit_127) no-such-command-for-the-contract ;;
  bad_json) echo '{"value": "lots", "samples": 120}' ;;
  no_json) echo 'fine' ;;
  garbage) head -c 3000 /dev/urandom; echo ;;
esac
"""


@dataclass
class CommandBackend:
    """``run: [check, MODEFILE]``; the mode file says what the check does next. The
    gate's env carries SECRET, which nothing may show."""

    directory: Path
    mode: str = "healthy"
    warm_up: int = 0

    def __post_init__(self) -> None:
        check = self.directory / "check"
        check.write_text(COMMAND_SCRIPT)
        check.chmod(0o755)
        (self.directory / "not-executable").write_text(COMMAND_SCRIPT)
        (self.directory / "not-executable").chmod(0o644)
        self.healthy()

    def spec(self) -> Any:
        program = {"not_found": "no-such-check", "not_executable": "not-executable"}.get(
            self.mode, "check")
        return CommandGate(type="command", name="queue drains",
                           run=[str(self.directory / program), str(self.directory / "mode")],
                           env={"QUEUE_TOKEN": SECRET}, min_samples=100, timeout=TIMEOUT)

    def healthy(self) -> None:
        self.fail("healthy")

    def fail(self, mode: str) -> None:
        self.mode = mode
        (self.directory / "mode").write_text(mode + "\n")

    def prime(self) -> None:
        pass


@contextmanager
def command_case(request: pytest.FixtureRequest) -> Iterator[Backend]:
    directory: Path = request.getfixturevalue("tmp_path") / "command-case"
    directory.mkdir()
    yield CommandBackend(directory)


@dataclass(frozen=True)
class Case:
    gate_type: str
    open: Callable[[pytest.FixtureRequest], AbstractContextManager[Backend]]
    # failure mode -> what it must give
    failures: dict[str, Expect]
    # failure mode -> (what leaks, why): a known contract violation, a strict xfail until fixed
    known_bugs: dict[str, tuple[type[BaseException], str]] = field(default_factory=dict)


# Metrics and alerts backends: any answer that is not a usable one is an error.
HTTP_API_FAILURES = dict.fromkeys(HTTP_FAILURES, Expect.ERROR)
ALERTS_FAILURES = {
    **HTTP_API_FAILURES,
    # "nothing firing" is the answer an alerts gate asks for, not an absence of data
    "no_alerts_prometheus": Expect.VALUE,
    "no_alerts_alertmanager": Expect.VALUE,
    "alert_without_labels": Expect.ERROR,  # a malformed list could hide the firing one
}

CASES: dict[str, Case] = {
    "prometheus": Case(
        "prometheus",
        prometheus_case,
        {
            **HTTP_API_FAILURES,
            "empty_vector": Expect.NODATA,  # no traffic yet, or a label that matches nothing
            "nan": Expect.NODATA,  # 0/0: a ratio over a window without requests
            "several_series": Expect.ERROR,  # the query must aggregate
            "parse_error": Expect.ERROR,
            "string_result": Expect.ERROR,
        },
    ),
    "prometheus_alerts": Case("prometheus_alerts", prometheus_alerts_case, ALERTS_FAILURES),
    "prometheus_alerts@alertmanager": Case(
        "prometheus_alerts", alertmanager_alerts_case, ALERTS_FAILURES
    ),
    "http": Case(
        "http",
        http_case,
        {
            # a probe reports whatever status it got; not reaching the endpoint is the error
            **dict.fromkeys(HTTP_FAILURES, Expect.VALUE),
            "refused": Expect.ERROR,
            "timeout": Expect.ERROR,
            "close": Expect.ERROR,
            "http500_html": Expect.FAILS,  # the endpoint is broken: status 500, expected 200
            "http404_empty": Expect.FAILS,
        },
    ),
    "haproxy_stats": Case("haproxy_stats", haproxy_stats_case, HAPROXY_FAILURES),
    "datadog": Case(
        "datadog",
        datadog_case,
        {
            **DATADOG_HTTP_FAILURES,
            **DATADOG_API_FAILURES,
            "dd_no_series": Expect.NODATA,
            "dd_null_points": Expect.NODATA,
            "dd_several_series": Expect.ERROR,
            "dd_query_error": Expect.ERROR,
            "dd_errors_above_max": Expect.FAILS,
        },
    ),
    "datadog_monitors": Case(
        "datadog_monitors",
        datadog_monitors_case,
        {
            **DATADOG_HTTP_FAILURES,
            **DATADOG_API_FAILURES,
            "dd_no_monitor_matches": Expect.ERROR,  # watching nothing is never a pass
            "dd_monitor_alert": Expect.FAILS,
            "dd_monitor_warn": Expect.FAILS,
            "dd_monitor_no_data": Expect.VALUE,  # a measurement the judge holds on
        },
    ),
    "command": Case(
        "command",
        command_case,
        {
            # could not start or did not finish: the provider could not answer
            "timeout": Expect.ERROR,
            "not_found": Expect.ERROR,
            "not_executable": Expect.ERROR,
            "exit_1": Expect.FAILS,
            # a measurement the judge holds on (an error for a signal, 127, a bad value line:
            # the judge says so, with the command's output in the journal)
            "close": Expect.VALUE,
            "exit_3": Expect.VALUE,
            "exit_127": Expect.VALUE,
            "bad_json": Expect.VALUE,
            "no_json": Expect.VALUE,
            "garbage": Expect.VALUE,
        },
    ),
}

# CloudWatch against moto (data and alarms: tests/providers/cloudwatch_setup.py); the
# network failures are the scripted server's, with the AWS endpoint pointed at it
CASES.update({
    name: Case(
        gate_type,
        open_,
        {**HTTP_API_FAILURES, **{mode: Expect[e] for mode, e in modes.items()}},
    )
    for name, gate_type, open_, modes in (
        ("cloudwatch", "cloudwatch",
         lambda r: cw.metric_case(r, ScriptedHttp, TIMEOUT), cw.METRIC_FAILURES),
        ("cloudwatch_alarms", "cloudwatch_alarms",
         lambda r: cw.alarms_case(r, ScriptedHttp, TIMEOUT), cw.ALARM_FAILURES),
        ("cloudwatch_alarms@names", "cloudwatch_alarms",
         lambda r: cw.alarms_case(r, ScriptedHttp, TIMEOUT, by_names=True), cw.ALARM_FAILURES),
    )
})


@pytest.fixture(params=sorted(CASES))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    with CASES[request.param].open(request) as b:
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


def _warm_up(backend: Backend, provider: Provider) -> None:
    """The provider's warm-up calls: each answers NoData, or already a measurement."""
    for _ in range(backend.warm_up):
        backend.prime()
        outcome = _measure_or_provider_error(provider)
        if isinstance(outcome, ProviderError):
            assert isinstance(outcome, NoData), f"a warm-up may only answer NoData: {outcome!r}"
        else:
            _check_measurement(outcome)


def _failure_params() -> list[Any]:
    params = []
    for name, case in sorted(CASES.items()):
        for mode in case.failures:
            bug = case.known_bugs.get(mode)
            marks = [pytest.mark.xfail(raises=bug[0], reason=bug[1], strict=True)] if bug else []
            params.append(pytest.param(name, mode, marks=marks, id=f"{name}-{mode}"))
    return params


# --- the contract --------------------------------------------------------------------


def test_healthy_backend_gives_a_measurement_at_now(backend: Backend) -> None:
    provider = build_provider(backend.spec())
    assert isinstance(provider, Provider)
    _warm_up(backend, provider)
    for _ in range(2):  # providers may keep state between calls
        backend.prime()
        _check_measurement(provider.measure(now=NOW))


@pytest.mark.parametrize(("case", "mode"), _failure_params())
def test_failures_raise_only_provider_errors_of_the_declared_kind(
    case: str, mode: str, request: pytest.FixtureRequest
) -> None:
    with CASES[case].open(request) as b:
        b.fail(mode)
        spec = b.spec()
        provider = build_provider(spec)
        outcomes: list[Measurement | ProviderError] = []
        for _ in range(1 + b.warm_up):  # past the warm-up too: the failure itself
            b.prime()
            outcome = _measure_or_provider_error(provider)
            if isinstance(outcome, ProviderError):
                text = str(outcome)
                assert outcome.message.strip(), "a ProviderError must say what went wrong"
                assert SECRET not in text
                assert outcome.__cause__ is None or isinstance(outcome.__cause__, ProviderError)
            else:
                _check_measurement(outcome)  # e.g. an http probe reports a 500 as a status
            outcomes.append(outcome)
    expect = CASES[case].failures[mode]
    *warm_up, last = outcomes
    if expect is Expect.ERROR:
        # from the first call: `validate` evaluates each gate once, and must fail on it
        for o in outcomes:
            assert isinstance(o, ProviderError) and not isinstance(o, NoData), (expect, o)
            assert o.hint, f"a gate that cannot work must say how to fix it: {o}"
    elif expect is Expect.NODATA:
        for o in outcomes:
            assert isinstance(o, NoData), (expect, o)
    else:
        for o in warm_up:
            assert isinstance(o, NoData | Measurement), (expect, o)
        assert isinstance(last, Measurement), (expect, last)
        if expect is Expect.FAILS:
            assert judge(spec, last, now=NOW).verdict is Verdict.FAIL, (last.value, last.details)


@pytest.mark.parametrize("case", sorted(CASES))
def test_recovers_after_a_failure(case: str, request: pytest.FixtureRequest) -> None:
    with CASES[case].open(request) as b:
        b.fail("close")
        provider = build_provider(b.spec())
        _measure_or_provider_error(provider)
        b.healthy()
        _warm_up(b, provider)
        b.prime()
        _check_measurement(provider.measure(now=NOW))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failure_mid_run_costs_no_new_warm_up(case: str, request: pytest.FixtureRequest) -> None:
    with CASES[case].open(request) as b:
        provider = build_provider(b.spec())
        _warm_up(b, provider)
        b.prime()
        _check_measurement(provider.measure(now=NOW))
        b.fail("close")
        b.prime()
        _measure_or_provider_error(provider)
        b.healthy()
        b.prime()
        _check_measurement(provider.measure(now=NOW))


def test_every_failure_mode_is_played_and_declared() -> None:
    for name, case in CASES.items():
        unknown = set(case.failures) - set(HTTP_FAILURES) - set(PROMETHEUS_ANSWERS) - set(
            ALERT_ANSWERS
        ) - set(HAPROXY_FAILURES) - set(DATADOG_MODES) - cw.MODES - set(COMMAND_MODES)
        assert not unknown, f"{name}: modes no backend plays: {sorted(unknown)}"
        assert all(isinstance(e, Expect) for e in case.failures.values()), name
    # a broken new environment and an empty answer are covered for the threshold gates
    kinds = {e for c in CASES.values() for e in c.failures.values()}
    assert kinds == set(Expect)


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
