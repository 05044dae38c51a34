"""A local double of Datadog's public API: the endpoints the Datadog gates read.

Datadog is a SaaS: the tests cannot start one, and recorded answers would only
replay the happy path. :class:`DatadogDouble` is a stdlib HTTP server in a
thread that answers in the shapes Datadog's API reference documents, so the
gates are tested through the official ``datadog-api-client`` over real HTTP,
as they run in production:

- ``GET /api/v1/query?from=&to=&query=``: ``{"status": "ok", "res_type":
  "time_series", "series": [{"pointlist": [[ms, value|null], ...], "scope",
  "expression", "interval", ...}], "from_date", "to_date", ...}``. A query the
  double was not told about answers an empty ``series`` (what Datadog does for
  a metric that does not exist); :meth:`~DatadogDouble.set_query_error` makes
  it answer 400 ``{"errors": [...]}`` like a query Datadog cannot parse.
  :meth:`~DatadogDouble.add_points` gives a query timestamped points instead
  (counts over time): it answers those from ``from`` to ``to``, or no series.
- ``GET /api/v1/monitor`` (filters ``monitor_tags``, ``tags``, ``name``,
  ``page``/``page_size``) and ``GET /api/v1/monitor/{id}``: monitors with an
  ``overall_state`` of ``OK``, ``Alert``, ``Warn``, ``No Data``, ``Skipped``,
  ``Ignored`` or ``Unknown``. ``monitor_tags`` matches the monitor's own tags
  (all of them must be there); ``tags`` matches the scope of its query
  (``{service:web,env:prod}``); ``name`` is a case-insensitive substring.
- ``GET /api/v1/validate``: ``{"valid": true}`` for the right API key (the
  application key is not checked there, as in Datadog).

Every endpoint checks the ``DD-API-KEY`` and ``DD-APPLICATION-KEY`` headers
and answers 403 ``{"errors": ["Forbidden"]}`` when one is wrong or missing, or
when the application key lacks the endpoint's permission (``scopes``:
``timeseries_query`` for queries, ``monitors_read`` for monitors).

Faults (:meth:`~DatadogDouble.fail`, for the next ``times`` requests or until
:meth:`~DatadogDouble.healthy`): ``rate_limited`` (429 with Datadog's
``X-RateLimit-Limit/Period/Remaining/Reset/Name`` headers and, if asked, a
``Retry-After``), ``http500``, ``html_502`` (a proxy's error page),
``echo_headers`` (a debugging proxy's 502 page that quotes the request's
headers, keys included: what the gates must never repeat), ``malformed``
(truncated JSON), ``not_json`` (an HTML 200), ``wrong_shape``
(valid JSON of the wrong type), ``hang`` (accepts, never answers until the
double stops) and ``close`` (closes the connection without a response).

Every request is recorded (path and query parameters, never the key headers)
so tests can count retries. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import itertools
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from shiftover.demo.process import QuietHTTPServer, StartStop, serve_in_thread, stop_serving

API_KEY = "dd-double-api-key-0000000000000000"
APP_KEY = "dd-double-app-key-00000000000000000000000"

MONITOR_STATES = ("OK", "Alert", "Warn", "No Data", "Skipped", "Ignored", "Unknown")
FAULTS = ("rate_limited", "http500", "html_502", "echo_headers", "malformed", "not_json",
          "wrong_shape", "hang", "close")
# the permission each endpoint needs from a scoped application key
_SCOPE = {"/api/v1/query": "timeseries_query", "/api/v1/monitor": "monitors_read"}


@dataclass(frozen=True)
class Series:
    """One series the double answers for a query: ``values`` are the points, oldest
    first, ``interval`` seconds apart and ending at the query's ``to``; None is a
    null point (no data in that interval)."""

    values: Sequence[float | None]
    scope: str = "*"
    interval: int = 60
    tag_set: Sequence[str] = ()
    metric: str | None = None
    # each value's own time (epoch seconds) instead of ``interval`` apart ending at ``to``
    at: Sequence[float] | None = None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str]


@dataclass
class _Fault:
    mode: str
    times: int | None  # None: until healthy()
    retry_after: str | None
    reset: int


@dataclass
class _State:
    queries: dict[str, list[Series]] = field(default_factory=dict)
    query_errors: dict[str, str] = field(default_factory=dict)
    # query -> {epoch seconds: value}, see add_points
    points: dict[str, dict[float, float]] = field(default_factory=dict)
    monitors: dict[int, dict[str, Any]] = field(default_factory=dict)
    fault: _Fault | None = None
    requests: list[Request] = field(default_factory=list)


def _errors(*messages: str) -> dict[str, Any]:
    return {"errors": list(messages)}


def _scope_tags(query: str) -> set[str]:
    """The tags in the ``{...}`` scopes of a monitor's query."""
    tags: set[str] = set()
    rest = query
    while "{" in rest and "}" in rest.split("{", 1)[1]:
        inside, rest = rest.split("{", 1)[1].split("}", 1)
        tags.update(t.strip() for t in inside.split(",") if t.strip())
    return tags


class DatadogDouble(StartStop):
    """``with DatadogDouble() as dd: os.environ.update(dd.env())``; then script it."""

    def __init__(self, *, api_key: str = API_KEY, app_key: str = APP_KEY,
                 scopes: Iterable[str] | None = None) -> None:
        self.api_key = api_key
        self.app_key = app_key
        # None: an unscoped application key (every permission)
        self.scopes: set[str] | None = None if scopes is None else set(scopes)
        self._lock = threading.Lock()
        self._state = _State()
        self._ids = itertools.count(1001)
        self._stopping = threading.Event()
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- where and how to reach it ------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("DatadogDouble is not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point the Datadog gates here, with its keys."""
        return {"DD_HOST": self.url, "DD_API_KEY": self.api_key, "DD_APP_KEY": self.app_key}

    # -- scripting ------------------------------------------------------------------

    def set_series(self, query: str, *series: Series | Sequence[float | None]) -> None:
        """What ``query`` answers: no series at all (an unknown metric) when none given."""
        with self._lock:
            self._state.queries[query] = [
                s if isinstance(s, Series) else Series(tuple(s)) for s in series
            ]
            self._state.query_errors.pop(query, None)
            self._state.points.pop(query, None)

    def add_points(self, query: str, *points: tuple[float, float]) -> None:
        """Add ``(epoch seconds, value)`` points to ``query``'s one series (a value at a
        time already there is added to it: one rollup bucket). The query then answers
        the points from ``from`` to ``to``, and no series when there is none in that
        span, as Datadog does."""
        with self._lock:
            stored = self._state.points.setdefault(query, {})
            for at, value in points:
                stored[float(at)] = stored.get(float(at), 0.0) + value
            self._state.queries.pop(query, None)
            self._state.query_errors.pop(query, None)

    def set_query_error(self, query: str, message: str) -> None:
        """``query`` answers 400 ``{"errors": [message]}``, like a query Datadog cannot parse."""
        with self._lock:
            self._state.query_errors[query] = message

    def add_monitor(self, name: str, state: str = "OK", *, tags: Iterable[str] = (),
                    query: str = "avg(last_5m):avg:system.cpu.user{*} > 90",
                    type: str = "query alert", monitor_id: int | None = None) -> int:
        """Add a monitor; returns its id."""
        self._check_state(state)
        with self._lock:
            ident = monitor_id if monitor_id is not None else next(self._ids)
            self._state.monitors[ident] = {
                "id": ident,
                "name": name,
                "type": type,
                "query": query,
                "message": f"{name} @slack-ops",
                "tags": list(tags),
                "options": {
                    "notify_audit": False,
                    "notify_no_data": True,
                    "no_data_timeframe": 10,
                    "include_tags": True,
                    "require_full_window": False,
                    "new_group_delay": 60,
                    "silenced": {},
                    "thresholds": {"critical": 90.0, "warning": 80.0},
                },
                "multi": False,
                "priority": None,
                "restricted_roles": None,
                "org_id": 1234567,
                "created": "2027-01-15T08:00:00.000000+00:00",
                "modified": "2027-01-15T08:00:00.000000+00:00",
                "creator": {"id": 4242, "handle": "sre@example.com", "name": "SRE",
                            "email": "sre@example.com"},
                "deleted": None,
                "overall_state_modified": "2027-01-15T08:00:00+00:00",
                "overall_state": state,
            }
            return ident

    def set_monitor_state(self, monitor_id: int, state: str) -> None:
        self._check_state(state)
        with self._lock:
            self._state.monitors[monitor_id]["overall_state"] = state

    def remove_monitors(self) -> None:
        with self._lock:
            self._state.monitors.clear()

    def fail(self, mode: str, *, times: int | None = None, retry_after: int | str | None = None,
             reset: int = 30) -> None:
        """Answer the next ``times`` requests (all, when None) with fault ``mode`` (one
        of :data:`FAULTS`). ``rate_limited`` sends ``X-RateLimit-Reset: reset`` and, when
        given, ``Retry-After: retry_after``."""
        if mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r}: one of {', '.join(FAULTS)}")
        with self._lock:
            self._state.fault = _Fault(mode, times, None if retry_after is None else str(retry_after),
                                       reset)

    def healthy(self) -> None:
        """No fault: answer normally again."""
        with self._lock:
            self._state.fault = None

    @property
    def requests(self) -> list[Request]:
        """Every request so far (path and query parameters; never the key headers)."""
        with self._lock:
            return list(self._state.requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._state.requests.clear()

    @staticmethod
    def _check_state(state: str) -> None:
        if state not in MONITOR_STATES:
            raise ValueError(f"unknown monitor state {state!r}: one of {', '.join(MONITOR_STATES)}")

    # -- answering --------------------------------------------------------------------

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            fault = self._state.fault
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._state.fault = None
            return fault

    def _authorized(self, path: str, headers: Mapping[str, str]) -> bool:
        """``headers`` with lower-case names."""
        if headers.get("dd-api-key") != self.api_key:
            return False
        if path == "/api/v1/validate":  # checks the API key only, as Datadog's does
            return True
        if headers.get("dd-application-key") != self.app_key:
            return False
        scope = next((s for p, s in _SCOPE.items() if path.startswith(p)), None)
        return self.scopes is None or scope is None or scope in self.scopes

    def _query(self, params: Mapping[str, str]) -> tuple[int, Any]:
        try:
            start, end = int(params["from"]), int(params["to"])
            query = params["query"]
        except (KeyError, ValueError):
            return 400, _errors("The parameters 'from', 'to' and 'query' are required")
        with self._lock:
            error = self._state.query_errors.get(query)
            series = list(self._state.queries.get(query, []))
            timed = sorted((t, v) for t, v in self._state.points.get(query, {}).items()
                           if start <= t <= end)
        if error is not None:
            return 400, _errors(error)
        if timed:
            series = [Series(tuple(v for _, v in timed), at=tuple(t for t, _ in timed))]
        out: list[dict[str, Any]] = []
        for s in series:
            last = end - end % s.interval
            n = len(s.values)
            stamps = [float((last - (n - 1 - i) * s.interval) * 1000) for i in range(n)] \
                if s.at is None else [float(t * 1000) for t in s.at]
            points = [[t, v] for t, v in zip(stamps, s.values, strict=True)]
            metric = s.metric or query.split(":", 1)[-1].split("{", 1)[0]
            out.append({
                "aggr": query.split(":", 1)[0] if ":" in query else None,
                "attributes": {},
                "display_name": metric,
                "end": int(stamps[-1]) + s.interval * 1000 - 1 if stamps else end * 1000,
                "expression": query,
                "interval": s.interval,
                "length": n,
                "metric": metric,
                "pointlist": points,
                "query_index": 0,
                "scope": s.scope,
                "start": int(stamps[0]) if stamps else start * 1000,
                "tag_set": list(s.tag_set),
                "unit": None,
            })
        return 200, {
            "status": "ok",
            "resp_version": 1,
            "res_type": "time_series",
            "query": query,
            "from_date": start * 1000,
            "to_date": end * 1000,
            "series": out,
            "group_by": sorted({t.split(":", 1)[0] for s in series for t in s.tag_set}),
            "message": "",
            "times": [],
            "values": [],
        }

    def _monitors(self, params: Mapping[str, str]) -> tuple[int, Any]:
        wanted_tags = [t for t in params.get("monitor_tags", "").split(",") if t]
        scope_tags = [t for t in params.get("tags", "").split(",") if t]
        name = params.get("name", "").lower()
        with self._lock:
            monitors = [json.loads(json.dumps(m)) for _, m in sorted(self._state.monitors.items())]
        found = [
            m for m in monitors
            if all(t in m["tags"] for t in wanted_tags)
            and all(t in _scope_tags(m["query"]) for t in scope_tags)
            and name in m["name"].lower()
        ]
        if "page" in params:
            size = int(params.get("page_size", "100"))
            page = int(params["page"])
            found = found[page * size:(page + 1) * size]
        return 200, found

    def _monitor(self, ident: str) -> tuple[int, Any]:
        with self._lock:
            monitor = self._state.monitors.get(int(ident)) if ident.isdigit() else None
            if monitor is None:
                return 404, _errors("Monitor not found")
            return 200, json.loads(json.dumps(monitor))

    def _answer(self, method: str, path: str, params: Mapping[str, str],
                headers: Mapping[str, str]) -> tuple[int, Any]:
        if not self._authorized(path, headers):
            return 403, _errors("Forbidden")
        if method != "GET":
            return 405, _errors("Method Not Allowed")
        if path == "/api/v1/validate":
            return 200, {"valid": True}
        if path == "/api/v1/query":
            return self._query(params)
        if path == "/api/v1/monitor":
            return self._monitors(params)
        if path.startswith("/api/v1/monitor/"):
            return self._monitor(path.rsplit("/", 1)[1])
        return 404, _errors("Not found")

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, body: bytes, ctype: str = "application/json",
                      extra: Mapping[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with double._lock:
                    double._state.requests.append(Request(self.command, parts.path, params))
                fault = double._take_fault()
                if fault is not None and self._fault(fault):
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, payload = double._answer(self.command, parts.path, params, headers)
                self._send(status, json.dumps(payload).encode())

            def _fault(self, fault: _Fault) -> bool:
                """Play ``fault``; False when it lets the request through."""
                mode = fault.mode
                if mode == "rate_limited":
                    headers = {
                        "X-RateLimit-Limit": "1600",
                        "X-RateLimit-Period": "3600",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(fault.reset),
                        "X-RateLimit-Name": "query",
                    }
                    if fault.retry_after is not None:
                        headers["Retry-After"] = fault.retry_after
                    body = _errors("Rate limit of 1600 requests in 3600 seconds reached. "
                                   "Please try again later.")
                    self._send(429, json.dumps(body).encode(), extra=headers)
                elif mode == "http500":
                    self._send(500, json.dumps(_errors("Internal Server Error")).encode())
                elif mode == "html_502":
                    self._send(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                               "text/html")
                elif mode == "echo_headers":
                    quoted = "".join(f"<li>{k}: {v}</li>" for k, v in self.headers.items())
                    self._send(502, f"<html><body><h1>502 Bad Gateway</h1><ul>{quoted}</ul>"
                                    "</body></html>".encode(), "text/html")
                elif mode == "malformed":
                    self._send(200, b'{"status":"ok","series":[{"pointlist":[[1.0,')
                elif mode == "not_json":
                    self._send(200, b"<html><body>Sign in to Datadog</body></html>", "text/html")
                elif mode == "wrong_shape":
                    self._send(200, b'"ok"')
                elif mode == "hang":
                    double._stopping.wait(30)
                    self.close_connection = True
                elif mode == "close":
                    self.close_connection = True
                else:  # pragma: no cover - fail() checks the mode
                    return False
                return True

            do_GET = _handle
            do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._stopping.clear()
        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = serve_in_thread(self._server, "datadog-double")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        self._stopping.set()  # releases hanging handlers
        if server is not None:
            stop_serving(server, self._thread)
        self._thread = None


__all__ = ["API_KEY", "APP_KEY", "FAULTS", "MONITOR_STATES", "DatadogDouble", "Request", "Series"]
