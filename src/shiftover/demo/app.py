"""The demo's sample web app: the service being moved, in one stdlib process.

``shiftover demo`` starts two of these ("old" and "new", the same code) behind
HAProxy and shifts traffic between them. The app must be light, because the
whole stack (two apps, HAProxy, Prometheus, Locust) shares two cores, and it
must make faults *reproducible*, because the demo reports how many client
requests failed between fault onset and rollback.

Why these choices:

- ``http.server.ThreadingHTTPServer`` with HTTP/1.1 keep-alive: no dependency,
  one thread per client connection (Locust and HAProxy keep a few dozen open).
  ``disable_nagle_algorithm`` matters: without it keep-alive drops to ~24 req/s
  (FIELD-NOTES). Every response carries ``Content-Length`` so connections are
  reused. Requests are not logged: at 200 req/s logging costs more than serving.
- The error fault is a counter, not a coin: at ``error_rate`` 0.05 exactly every
  20th application request answers 500 (``floor(n * rate)`` failures after n
  requests, counted from the last fault change). Two runs of the demo fail the
  same number of requests. With ``error_seed`` set it is a coin (seeded draws),
  as a real service's own errors are: bursts and gaps, which is what fixed
  thresholds on short windows trip on (benchmarks: background errors).
- Only application traffic (``/`` and ``/api/...``) is faulted and counted in
  ``http_requests_total``; scrapes, health checks and admin calls are not, so
  Prometheus scraping every second does not dilute the error ratio.
- Faults change at run time through ``POST /admin/fault`` (the demo flips the
  new app to 5% errors when the cutover reaches 10%), or at start from flags.
- A known capacity, for load tests (``shiftover load`` must find the knee of a
  target whose true limit is known): ``--concurrency N`` lets at most N
  application requests be served at once, the rest wait in arrival order
  (first come, first served: a slot is handed to the oldest waiter, so no
  newcomer overtakes it and the tail latency is the queue's, not luck's), and
  ``--service-ms MS`` holds each request's slot for a fixed time. True
  capacity is then N / (MS / 1000) req/s, like a server with N worker threads
  each busy MS per request. The injected ``latency_ms`` fault is spent inside
  the slot too (a worker waiting on a slow dependency is a busy worker), so a
  latency fault lowers capacity as it would in production. The wait is
  unbounded: past capacity the queue and the latency grow without limit,
  which is what a knee looks like. ``GET /admin/stats`` tells the in-flight and
  waiting counts and their highest values since the last reset
  (``POST /admin/stats/reset``); ``/metrics`` has them as gauges.
- A periodic batch, as the service's cron job: every ``BATCH_PERIOD`` (0.5 s)
  the instance runs its batch *if its scheduler is enabled*, and counts the
  runs. A batch must run in exactly one environment (run in both, it runs
  twice), so moving it is a step of the cutover: the demo's plan moves it with
  two hooks (stop on old, start on new; their undos the reverse), and the
  counts tell where it really ran. ``GET /admin/batch`` says
  ``{"enabled": .., "runs": ..}``; ``POST /admin/batch/enable`` and
  ``/disable`` switch the scheduler (idempotent: enabling an enabled one does
  nothing); ``--batch`` enables it at start; ``/metrics`` has
  ``batch_runs_total``.

Run: ``python -m shiftover.demo.app --port 8081 --name new --error-rate 0.05``
(``--concurrency 4 --service-ms 20``: a 200 req/s target).
Port 0 picks a free port; the ready line (``ready on 127.0.0.1:PORT``, the only
thing printed to stdout) tells which. :class:`SampleAppProcess` does all of
this from Python.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Self

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from shiftover.demo.process import ChildProcess, read_log, start_error
from shiftover.errors import BadInput, ShiftoverError

READY_PREFIX = "ready on "
_READY = re.compile(r"^ready on ([0-9.]+):(\d+)$", re.MULTILINE)

BATCH_PERIOD = 0.5  # seconds between two runs of an enabled batch

# Latency buckets for a fast app on loopback: 1 ms .. 2.5 s.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class Fault:
    """What the app is told to get wrong. ``error_rate`` is a fraction 0..1."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    dependencies_ok: bool = True
    error_seed: int | None = None  # errors drawn at random (seeded) instead of counted

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise BadInput(
                f"error_rate {self.error_rate!r} is outside 0..1",
                hint="give a fraction, e.g. 0.05 for 5% of requests answering 500",
            )
        if self.latency_ms < 0:
            raise BadInput(
                f"latency_ms {self.latency_ms!r} is negative",
                hint="give extra latency in milliseconds, 0 or more",
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_fault_update(current: Fault, body: Any) -> Fault:
    """Apply a JSON object with any subset of the fault fields to ``current``."""
    if not isinstance(body, dict):
        raise BadInput("fault body must be a JSON object", hint='e.g. {"error_rate": 0.05}')
    known = {"error_rate", "latency_ms", "dependencies_ok", "error_seed"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadInput(
            f"unknown fault field(s): {', '.join(unknown)}",
            hint=f"known fields: {', '.join(sorted(known))}",
        )
    values = current.to_dict()
    for key in ("error_rate", "latency_ms"):
        if key in body:
            v = body[key]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise BadInput(f"{key} must be a number, got {v!r}")
            values[key] = float(v)
    if "error_seed" in body:
        v = body["error_seed"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise BadInput(f"error_seed must be a whole number or null, got {v!r}")
        values["error_seed"] = v
    if "dependencies_ok" in body:
        v = body["dependencies_ok"]
        if not isinstance(v, bool):
            raise BadInput(f"dependencies_ok must be true or false, got {v!r}")
        values["dependencies_ok"] = v
    return Fault(**values)


class FaultState:
    """The current fault plus the deterministic error counter, thread-safe."""

    def __init__(self, fault: Fault) -> None:
        self._lock = threading.Lock()
        self._fault = fault
        self._rate = Fraction(str(fault.error_rate))
        self._served = 0
        self._coin = None if fault.error_seed is None else random.Random(fault.error_seed)

    @property
    def fault(self) -> Fault:
        with self._lock:
            return self._fault

    def set(self, fault: Fault) -> None:
        with self._lock:
            self._fault = fault
            self._rate = Fraction(str(fault.error_rate))
            self._served = 0  # the pattern restarts at each change: reproducible
            self._coin = None if fault.error_seed is None else random.Random(fault.error_seed)

    def next_request(self) -> tuple[bool, float]:
        """(fail this one?, extra latency in seconds) for the next app request."""
        with self._lock:
            self._served += 1
            n, rate = self._served, self._rate
            if self._coin is not None:
                fail = self._coin.random() < rate
            else:
                fail = math.floor(n * rate) > math.floor((n - 1) * rate)
            return fail, self._fault.latency_ms / 1000.0


@dataclass(frozen=True)
class ServiceLimit:
    """How much the app can serve: at most ``concurrency`` application requests
    at once (None: no limit), each holding its slot ``service_ms`` milliseconds."""

    concurrency: int | None = None
    service_ms: float = 0.0

    def __post_init__(self) -> None:
        c = self.concurrency
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise BadInput(
                f"concurrency {c!r} must be a whole number of at least 1",
                hint="e.g. --concurrency 4 (at most 4 requests served at once)",
            )
        if not math.isfinite(self.service_ms) or self.service_ms < 0:
            raise BadInput(
                f"service_ms {self.service_ms!r} must be a finite number of milliseconds, 0 or more",
                hint="e.g. --service-ms 20 (each request takes 20 ms of a slot)",
            )

    @property
    def capacity_rps(self) -> float | None:
        """The true capacity in requests per second; None when unbounded."""
        if self.concurrency is None or self.service_ms <= 0:
            return None
        return self.concurrency / (self.service_ms / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "service_ms": self.service_ms,
            "capacity_rps": self.capacity_rps,
        }


class ServiceSlots:
    """At most ``limit`` holders at once; the others wait first come, first served.

    A leaving holder hands its slot straight to the oldest waiter (the in-flight
    count does not dip), so a request arriving later can never take the slot
    first, and ``in_flight`` never exceeds ``limit`` even for an instant.
    ``max_in_flight``/``max_waiting`` are the highest values since the last
    :meth:`reset`; ``served`` counts holders that left.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._waiters: deque[threading.Event] = deque()
        self._in_flight = 0
        self._max_in_flight = 0
        self._max_waiting = 0
        self._served = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def enter(self) -> None:
        with self._lock:
            if self.limit is None or (self._in_flight < self.limit and not self._waiters):
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
                return
            turn = threading.Event()
            self._waiters.append(turn)
            self._max_waiting = max(self._max_waiting, len(self._waiters))
        turn.wait()  # set by leave(), which counted us in flight already

    def leave(self) -> None:
        with self._lock:
            self._served += 1
            if self._waiters:
                self._waiters.popleft().set()  # hand the slot over: in_flight unchanged
            else:
                self._in_flight -= 1

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def stats(self, *, reset: bool = False) -> dict[str, int]:
        """The counts now; with ``reset`` the highest values and ``served``
        restart from the present (returned: the values before the reset)."""
        with self._lock:
            out = {
                "in_flight": self._in_flight,
                "waiting": len(self._waiters),
                "max_in_flight": self._max_in_flight,
                "max_waiting": self._max_waiting,
                "served": self._served,
            }
            if reset:
                self._max_in_flight = self._in_flight
                self._max_waiting = len(self._waiters)
                self._served = 0
            return out


class BatchScheduler:
    """The instance's periodic batch: a thread that runs it every ``period``
    seconds while enabled, counting the runs (thread-safe).

    The first run comes one period after the scheduler is enabled, as a cron
    job's next slot does; disabling it takes effect before the next run.
    """

    def __init__(self, *, enabled: bool = False, period: float = BATCH_PERIOD) -> None:
        if not math.isfinite(period) or period <= 0:
            raise BadInput(f"batch period {period!r} must be a positive number of seconds")
        self.period = period
        self._lock = threading.Lock()
        self._enabled = enabled
        self._runs = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="batch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.period)  # set on close: no sleep outlives the app
            with self._lock:
                if self._closed:
                    return
                if self._enabled:
                    self._runs += 1

    def set_enabled(self, enabled: bool) -> dict[str, Any]:
        with self._lock:
            self._enabled = enabled
        return self.state()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"enabled": self._enabled, "runs": self._runs, "period": self.period}

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=2.0)


class AppMetrics:
    """Prometheus metrics of one app instance, on its own registry."""

    def __init__(self, name: str, slots: ServiceSlots | None = None,
                 batch: BatchScheduler | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.name = name
        self.requests = Counter(
            "http_requests",
            "Application requests served, by instance and HTTP status code.",
            ["instance_name", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to serve an application request, including injected latency.",
            ["instance_name"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # Pre-create the usual series so rate() has a zero to start from.
        for code in ("200", "500"):
            self.requests.labels(instance_name=name, code=code)
        self.duration.labels(instance_name=name)
        if slots is not None:
            in_flight = Gauge(
                "http_requests_in_flight",
                "Application requests being served now (at most the concurrency limit).",
                ["instance_name"],
                registry=self.registry,
            )
            waiting = Gauge(
                "http_requests_waiting",
                "Application requests waiting for a free slot (concurrency limit reached).",
                ["instance_name"],
                registry=self.registry,
            )
            in_flight.labels(instance_name=name).set_function(lambda: slots.in_flight)
            waiting.labels(instance_name=name).set_function(lambda: slots.waiting)
        if batch is not None:
            runs = Gauge(  # a gauge read from the scheduler: its count is the truth
                "batch_runs_total",
                "Runs of the periodic batch on this instance (only while its scheduler is enabled).",
                ["instance_name"],
                registry=self.registry,
            )
            enabled = Gauge(
                "batch_enabled",
                "1 while this instance's batch scheduler is enabled.",
                ["instance_name"],
                registry=self.registry,
            )
            runs.labels(instance_name=name).set_function(lambda: batch.state()["runs"])
            enabled.labels(instance_name=name).set_function(
                lambda: 1.0 if batch.state()["enabled"] else 0.0)

    def observe(self, code: int, seconds: float) -> None:
        self.requests.labels(instance_name=self.name, code=str(code)).inc()
        self.duration.labels(instance_name=self.name).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class SampleAppServer(ThreadingHTTPServer):
    """The HTTP server; handlers reach the app state through ``self.server``."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        name: str,
        fault: Fault,
        limit: ServiceLimit | None = None,
        *,
        batch: bool = False,
        batch_period: float = BATCH_PERIOD,
    ) -> None:
        self.instance_name = name
        self.faults = FaultState(fault)
        self.limit = limit if limit is not None else ServiceLimit()
        self.slots = ServiceSlots(self.limit.concurrency)
        self.batch = BatchScheduler(enabled=batch, period=batch_period)
        self.metrics = AppMetrics(name, self.slots, self.batch)
        try:
            super().__init__(address, _Handler)
        except BaseException:
            self.batch.close()
            raise

    def server_close(self) -> None:
        self.batch.close()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a load generator's timeout past capacity) is
        # not news: one traceback per dropped connection would flood the log.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def stats(self, *, reset: bool = False) -> dict[str, Any]:
        return {**self.limit.to_dict(), **self.slots.stats(reset=reset)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "shiftover-sample-app"
    sys_version = ""
    server: SampleAppServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: no per-request logging

    # --- plumbing ------------------------------------------------------------

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":")).encode())

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    # --- routes --------------------------------------------------------------

    def do_GET(self) -> None:
        path = self._path()
        if path == "/" or path.startswith("/api/") or path == "/api":
            self._serve_app(path)
        elif path == "/health/dependencies":
            if self.server.faults.fault.dependencies_ok:
                self._send_json(200, {"ok": True})
            else:
                self._send_json(503, {"ok": False, "reason": "dependencies down (injected fault)"})
        elif path == "/metrics":
            self._send(200, self.server.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/admin/fault":
            self._send_json(200, self.server.faults.fault.to_dict())
        elif path == "/admin/stats":
            self._send_json(200, self.server.stats())
        elif path == "/admin/batch":
            self._send_json(200, self.server.batch.state())
        else:
            self._send_json(404, {"error": f"no route {path}"})

    def do_POST(self) -> None:
        path = self._path()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if path == "/admin/stats/reset":
            self._send_json(200, self.server.stats(reset=True))
            return
        if path in ("/admin/batch/enable", "/admin/batch/disable"):
            self._send_json(200, self.server.batch.set_enabled(path.endswith("/enable")))
            return
        if path != "/admin/fault":
            self._send_json(404, {"error": f"no route POST {path}"})
            return
        try:
            body = json.loads(raw or b"{}")
            fault = _parse_fault_update(self.server.faults.fault, body)
        except (ValueError, BadInput) as e:  # JSONDecodeError is a ValueError
            self._send_json(400, {"error": str(e)})
            return
        self.server.faults.set(fault)
        self._send_json(200, fault.to_dict())

    def _serve_app(self, path: str) -> None:
        started = time.perf_counter()
        fail, delay = self.server.faults.next_request()
        delay += self.server.limit.service_ms / 1000.0
        with self.server.slots.slot():  # waits here while all slots are busy
            if delay > 0:
                time.sleep(delay)
        name = self.server.instance_name
        body: dict[str, Any]
        if fail:
            code, body = 500, {"instance": name, "error": "injected fault"}
        else:
            code, body = 200, {"instance": name, "path": path, "ok": True}
        self._send_json(code, body)
        self.server.metrics.observe(code, time.perf_counter() - started)


# --- command line ------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m shiftover.demo.app",
        description="shiftover demo sample web app (old/new) with fault injection",
    )
    p.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--name", required=True, help="instance name, e.g. old or new")
    p.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction of requests answering 500"
    )
    p.add_argument("--latency-ms", type=float, default=0.0, help="extra latency per request")
    deps = p.add_mutually_exclusive_group()
    deps.add_argument(
        "--dependencies-ok", dest="dependencies_ok", action="store_true", default=True
    )
    deps.add_argument("--dependencies-down", dest="dependencies_ok", action="store_false")
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="at most N application requests served at once; the rest wait (default: no limit)",
    )
    p.add_argument(
        "--service-ms",
        type=float,
        default=0.0,
        help="fixed service time per application request, in ms (capacity: N / (MS/1000) req/s)",
    )
    p.add_argument(
        "--batch",
        action="store_true",
        help=f"enable the periodic batch at start (runs every {BATCH_PERIOD:g}s while enabled; "
        "POST /admin/batch/enable|disable switches it)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        fault = Fault(args.error_rate, args.latency_ms, args.dependencies_ok)
        limit = ServiceLimit(args.concurrency, args.service_ms)
    except BadInput as e:
        print(f"sample app {args.name}: {e}", file=sys.stderr)
        return 2
    disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series: noise for a 1 s scrape
    try:
        server = SampleAppServer((args.host, args.port), args.name, fault, limit,
                                 batch=args.batch)
    except OSError as e:
        print(
            f"sample app {args.name}: cannot listen on {args.host}:{args.port}: {e}; "
            "pick another port (or 0 for a free one)",
            file=sys.stderr,
        )
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    # serve_forever in a thread: shutdown() must not run on the serving thread.
    serving = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.1), daemon=True)
    serving.start()
    host, port = server.server_address[:2]
    print(f"{READY_PREFIX}{host!s}:{port}", flush=True)
    stop.wait()  # a signal handler runs in the main thread and sets it
    server.shutdown()
    server.server_close()
    return 0


# --- Python API for the demo and tests ----------------------------------------


def app_command(
    port: int,
    name: str,
    *,
    error_rate: float = 0.0,
    latency_ms: float = 0.0,
    dependencies_ok: bool = True,
    host: str = "127.0.0.1",
    concurrency: int | None = None,
    service_ms: float = 0.0,
    batch: bool = False,
) -> list[str]:
    """The argv that starts one sample app (for callers managing processes themselves).
    ``concurrency``/``service_ms``: a known capacity, see :class:`ServiceLimit`;
    ``batch``: its periodic batch enabled at start (:class:`BatchScheduler`)."""
    ServiceLimit(concurrency, service_ms)  # validate before anything starts
    limit = [] if concurrency is None else ["--concurrency", str(concurrency)]
    if service_ms:
        limit += ["--service-ms", repr(float(service_ms))]
    return [
        sys.executable,
        "-m",
        "shiftover.demo.app",
        "--port",
        str(port),
        "--host",
        host,
        "--name",
        name,
        "--error-rate",
        repr(float(error_rate)),
        "--latency-ms",
        repr(float(latency_ms)),
        "--dependencies-ok" if dependencies_ok else "--dependencies-down",
        *limit,
        *(["--batch"] if batch else []),
    ]


class SampleAppProcess(ChildProcess):
    """One sample app as a child process; a context manager.

    ``port=0`` lets the app pick a free port (read back from its ready line, so
    there is no race between choosing a port and binding it). ``concurrency``
    and ``service_ms`` give it a known capacity (:attr:`capacity_rps`); ``batch``
    enables its periodic batch at start (:meth:`batch`). Output goes to
    ``<workdir>/app-<name>.log``; with no ``workdir`` a temporary one is made and
    removed on stop.
    """

    poll_interval = 0.02

    def __init__(
        self,
        port: int,
        name: str,
        workdir: str | Path | None = None,
        error_rate: float = 0.0,
        latency_ms: float = 0.0,
        dependencies_ok: bool = True,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 15.0,
        concurrency: int | None = None,
        service_ms: float = 0.0,
        batch: bool = False,
    ) -> None:
        Fault(error_rate, latency_ms, dependencies_ok)  # validate early
        self.limit = ServiceLimit(concurrency, service_ms)
        self.name = name
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._argv = app_command(
            port,
            name,
            error_rate=error_rate,
            latency_ms=latency_ms,
            dependencies_ok=dependencies_ok,
            host=host,
            concurrency=concurrency,
            service_ms=service_ms,
            batch=batch,
        )
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir is not None else None
        self.log_path: Path | None = None
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def capacity_rps(self) -> float | None:
        """True capacity in req/s (concurrency / service time); None when unbounded."""
        return self.limit.capacity_rps

    def start(self) -> Self:
        self._refuse_second_start(f"sample app {self.name}")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"shiftover-app-{self.name}-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._workdir / f"app-{self.name}.log"
        self._launch(self._argv, self.log_path, self.startup_timeout, fresh_log=True, python=True)
        return self

    def _ready(self) -> bool:
        m = _READY.search(read_log(self.log_path))
        if m:
            self.port = int(m.group(2))
        return m is not None

    def _not_ready(self, code: int | None) -> ShiftoverError:
        return start_error(
            f"sample app {self.name}",
            code,
            self.log_path,
            exited="before it was ready",
            missing="did not print its ready line",
            timeout=self.startup_timeout,
        )

    def stop(self, timeout: float = 5.0) -> int | None:
        """Terminate (SIGTERM), wait, kill if needed. Returns the exit code."""
        code, _ = self._end(timeout)
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def fault(self) -> dict[str, Any]:
        """The app's current fault state (GET /admin/fault)."""
        return self._admin("GET", None)

    def stats(self, *, reset: bool = False) -> dict[str, Any]:
        """The limit and the in-flight/waiting counts (GET /admin/stats): keys
        concurrency, service_ms, capacity_rps, in_flight, waiting, max_in_flight,
        max_waiting, served. ``reset``: the highest values and ``served``
        restart from now (POST /admin/stats/reset; the values before it are returned)."""
        if reset:
            return self._admin("POST", None, path="/admin/stats/reset")
        return self._admin("GET", None, path="/admin/stats")

    def batch(self, action: str | None = None) -> dict[str, Any]:
        """The periodic batch's state, ``{"enabled": .., "runs": .., "period": ..}``
        (GET /admin/batch); ``action`` "enable" or "disable" switches the scheduler
        first (POST /admin/batch/ACTION) and returns the state after it."""
        if action is None:
            return self._admin("GET", None, path="/admin/batch")
        if action not in ("enable", "disable"):
            raise BadInput(f"unknown batch action {action!r}", hint="enable or disable")
        return self._admin("POST", None, path=f"/admin/batch/{action}")

    def set_fault(
        self,
        *,
        error_rate: float | None = None,
        latency_ms: float | None = None,
        dependencies_ok: bool | None = None,
        error_seed: int | bool | None = False,
    ) -> dict[str, Any]:
        """Change the fault at run time; returns the new state (POST /admin/fault).
        ``error_seed``: an int makes errors seeded coin draws, None counted again
        (False: unchanged)."""
        body: dict[str, Any] = {}
        if error_seed is not False:
            body["error_seed"] = error_seed
        if error_rate is not None:
            body["error_rate"] = error_rate
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        if dependencies_ok is not None:
            body["dependencies_ok"] = dependencies_ok
        return self._admin("POST", body)

    def _admin(
        self, method: str, body: dict[str, Any] | None, path: str = "/admin/fault"
    ) -> dict[str, Any]:
        import httpx  # here, not at the top: the app process itself never needs it

        url = f"{self.url}{path}"
        try:
            r = httpx.request(method, url, json=body, timeout=5.0)
        except httpx.HTTPError as e:
            raise ShiftoverError(
                f"sample app {self.name}: {method} {url} failed: {e}",
                hint="is the app running? start it with SampleAppProcess(...).start()",
            ) from e
        if r.status_code == 400:
            raise BadInput(f"sample app {self.name} refused the fault: {r.json().get('error')}")
        if r.status_code != 200:
            raise ShiftoverError(f"sample app {self.name}: {method} {url} answered {r.status_code}")
        result: dict[str, Any] = r.json()
        return result


__all__ = [
    "BATCH_PERIOD",
    "DURATION_BUCKETS",
    "BatchScheduler",
    "Fault",
    "SampleAppProcess",
    "SampleAppServer",
    "ServiceLimit",
    "ServiceSlots",
    "app_command",
    "main",
]


if __name__ == "__main__":
    sys.exit(main())
