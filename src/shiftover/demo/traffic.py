"""Steady client traffic for the demo, from Locust in a child process.

The demo's headline number is "how many client requests failed between fault
onset and rollback". That needs two things from the load generator: a rate that
holds steady while weights move, and a per-interval record of what the clients
saw, stamped with wall-clock time so the parent can cut it at two instants.

Why it is built this way:

- **Locust runs in a subprocess, never in the parent.** Importing locust
  monkey-patches the process with gevent, which breaks (RecursionError) when
  ssl/boto3 were imported first, and would make the engine's own threads
  green. This module's top level imports nothing from locust or gevent; only
  the child's entry point does, and the child is started through a tiny
  bootstrap that imports locust *before* anything from shiftover.
- **A schedule, not a think time.** Each of ``ceil(rate / 10)`` FastHttpUsers
  sends one request every ``users / rate`` seconds against a fixed timetable
  (staggered start, catch up at most one slot when late), so the aggregate is
  a near-constant arrival rate rather than Locust's usual closed loop.
  FastHttpUser keeps one keep-alive connection per user.
- **Buckets, written as they close.** Every ``bucket`` seconds (0.5 by default,
  aligned to wall-clock multiples) the child appends one JSON line::

      {"start": 1700000000.0, "t": 1700000000.5, "requests": 100,
       "failures": 5, "by_status": {"200": 95, "500": 5}}

  ``t`` is when the bucket closed; buckets tile time exactly (each starts where
  the previous ended). A request is counted in the bucket in which its response
  (or error) arrived. Any status >= 400 and any connection error (``"error"``
  in ``by_status``) is a failure. The last, partial bucket is flushed on
  SIGTERM/SIGINT or at the end of ``--duration``; a one-line JSON summary is
  the only thing printed to stdout.

The parent side (:class:`TrafficProcess`, :func:`read_events`,
:func:`count_failures`, :func:`count_requests`, :func:`achieved_rate`) only
reads that file.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from shiftover.demo.process import ChildProcess, start_error
from shiftover.errors import BadInput, ShiftoverError

#: Requests per second each simulated user sends; users = ceil(rate / this).
PER_USER_RATE = 10.0
DEFAULT_BUCKET_SECONDS = 0.5

# Import locust before anything from shiftover (see the module docstring).
_BOOTSTRAP = (
    "import locust, runpy; "
    "runpy.run_module('shiftover.demo.traffic', run_name='__main__', alter_sys=True)"
)


# --- parent side: values and reading the events file -------------------------


@dataclass(frozen=True)
class TrafficBucket:
    """What the clients saw in ``[start, t)`` (wall-clock seconds)."""

    start: float
    t: float
    requests: int
    failures: int
    by_status: Mapping[str, int] = field(default_factory=dict, hash=False)

    @property
    def seconds(self) -> float:
        return self.t - self.start


@dataclass(frozen=True)
class TrafficSummary:
    """The child's final one-line summary."""

    requests: int
    failures: int
    seconds: float
    rate: float
    target_rate: float
    users: int
    by_status: Mapping[str, int] = field(default_factory=dict, hash=False)


def _bucket_from(obj: Any) -> TrafficBucket:
    t = float(obj["t"])
    return TrafficBucket(
        start=float(obj.get("start", t)),
        t=t,
        requests=int(obj["requests"]),
        failures=int(obj["failures"]),
        by_status={str(k): int(v) for k, v in dict(obj.get("by_status", {})).items()},
    )


def read_events(path: str | Path) -> list[TrafficBucket]:
    """All complete buckets in an events file, oldest first.

    A torn last line (the child is writing it right now) is skipped; a bad line
    anywhere else is an error.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(
            f"traffic events file {p} does not exist",
            hint="start the traffic first (TrafficProcess) or check the --events-file path",
        ) from None
    lines = text.split("\n")
    buckets: list[TrafficBucket] = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            buckets.append(_bucket_from(json.loads(line)))
        except (ValueError, KeyError, TypeError) as e:
            if i == len(lines):  # no trailing newline yet: being written
                break
            raise BadInput(
                f"{p}:{i}: not a traffic bucket ({e})",
                hint='each line must be JSON like {"t": ..., "requests": n, "failures": n, "by_status": {...}}',
            ) from None
    return buckets


def _overlapping(buckets: Iterable[TrafficBucket], start: float, end: float) -> list[TrafficBucket]:
    if end < start:
        raise BadInput(f"time window ends ({end}) before it starts ({start})")
    return [b for b in buckets if b.t > start and b.start < end]


def count_failures(buckets: Iterable[TrafficBucket], start: float, end: float) -> int:
    """Failed client requests in the buckets that overlap ``[start, end]``.

    Rounded outward to whole buckets (0.5 s by default): a bucket that ended
    exactly at ``start`` or began exactly at ``end`` is not counted.
    """
    return sum(b.failures for b in _overlapping(buckets, start, end))


def count_requests(buckets: Iterable[TrafficBucket], start: float, end: float) -> int:
    """Client requests in the buckets that overlap ``[start, end]`` (see count_failures)."""
    return sum(b.requests for b in _overlapping(buckets, start, end))


def achieved_rate(buckets: Iterable[TrafficBucket]) -> float:
    """Requests per second over the whole span the buckets cover (0.0 when empty)."""
    items = list(buckets)
    if not items:
        return 0.0
    span = max(b.t for b in items) - min(b.start for b in items)
    if span <= 0:
        return 0.0
    return sum(b.requests for b in items) / span


# --- parent side: the child process -------------------------------------------


def traffic_command(
    host: str,
    rate: float,
    events_file: str | Path,
    duration: float,
    path: str = "/",
    *,
    bucket_seconds: float = DEFAULT_BUCKET_SECONDS,
    users: int | None = None,
) -> list[str]:
    """The argv that runs the load generator (locust imported first)."""
    extra = ["--users", str(users)] if users is not None else []
    return [
        sys.executable,
        "-c",
        _BOOTSTRAP,
        "--host",
        host,
        "--rate",
        repr(float(rate)),
        "--duration",
        repr(float(duration)),
        "--events-file",
        str(events_file),
        "--path",
        path,
        "--bucket",
        repr(float(bucket_seconds)),
        *extra,
    ]


def _validate(
    host: str,
    rate: float,
    duration: float,
    path: str,
    bucket_seconds: float,
    users: int | None = None,
) -> None:
    if not host.startswith(("http://", "https://")):
        raise BadInput(
            f"traffic host {host!r} is not a URL", hint="give e.g. --host http://127.0.0.1:8080"
        )
    if not rate > 0:
        raise BadInput(f"traffic rate {rate!r} must be > 0 requests per second")
    if not duration > 0:
        raise BadInput(f"traffic duration {duration!r} must be > 0 seconds")
    if not path.startswith("/"):
        raise BadInput(f"traffic path {path!r} must start with /", hint="e.g. --path /api/items")
    if not bucket_seconds > 0:
        raise BadInput(f"bucket length {bucket_seconds!r} must be > 0 seconds")
    if users is not None and users < 1:
        raise BadInput(f"users {users!r} must be >= 1", hint="or leave it out: ceil(rate / 10)")


class TrafficProcess(ChildProcess):
    """Steady traffic from a Locust child process; a context manager.

    ``start()`` returns once the first bucket is in ``events_file`` (bounded by
    ``startup_timeout``). ``stop()`` sends SIGTERM (the child flushes its last
    bucket), waits, kills if it must, and returns the child's summary. The
    child's stderr (Locust's warnings) goes to ``log_file``, by default
    ``<events_file>.log``.
    """

    def __init__(
        self,
        host: str,
        rate: float,
        events_file: str | Path,
        duration: float,
        path: str = "/",
        *,
        bucket_seconds: float = DEFAULT_BUCKET_SECONDS,
        startup_timeout: float = 30.0,
        log_file: str | Path | None = None,
        users: int | None = None,
    ) -> None:
        _validate(host, rate, duration, path, bucket_seconds, users)
        self.users = users
        self.host = host
        self.rate = float(rate)
        self.duration = float(duration)
        self.path = path
        self.events_file = Path(events_file)
        self.bucket_seconds = bucket_seconds
        self.startup_timeout = startup_timeout
        self.log_file = (
            Path(log_file)
            if log_file is not None
            else self.events_file.with_name(self.events_file.name + ".log")
        )
        self.summary: TrafficSummary | None = None
        super().__init__()

    def start(self) -> Self:
        self._refuse_second_start(f"traffic to {self.host}")
        self.events_file.parent.mkdir(parents=True, exist_ok=True)
        self.events_file.unlink(missing_ok=True)  # readiness = first line of a fresh file
        argv = traffic_command(
            self.host,
            self.rate,
            self.events_file,
            self.duration,
            self.path,
            bucket_seconds=self.bucket_seconds,
            users=self.users,
        )
        self._launch(
            argv, self.log_file, self.startup_timeout, fresh_log=True, pipe_stdout=True, python=True
        )
        return self

    def _ready(self) -> bool:
        return self.events_file.exists() and bool(read_events(self.events_file))

    def _not_ready(self, code: int | None) -> ShiftoverError:
        return start_error(
            "traffic generator",
            code,
            self.log_file,
            exited="before its first bucket",
            missing=f"wrote no bucket to {self.events_file}",
            timeout=self.startup_timeout,
        )

    def _read_summary(self, out: bytes) -> None:
        """Take the summary from the child's stdout: its last JSON line."""
        for line in reversed(out.decode(errors="replace").strip().splitlines()):
            try:
                obj = json.loads(line)
                self.summary = TrafficSummary(
                    requests=int(obj["requests"]),
                    failures=int(obj["failures"]),
                    seconds=float(obj["seconds"]),
                    rate=float(obj["rate"]),
                    target_rate=float(obj["target_rate"]),
                    users=int(obj["users"]),
                    by_status={str(k): int(v) for k, v in obj.get("by_status", {}).items()},
                )
                break
            except (ValueError, KeyError, TypeError):
                continue

    def wait(self, timeout: float | None = None) -> TrafficSummary | None:
        """Wait for the child to finish its ``duration`` by itself; returns the summary."""
        proc = self._proc
        if proc is None:
            return self.summary
        limit = timeout if timeout is not None else self.duration + self.startup_timeout
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            raise ShiftoverError(
                f"traffic generator still running after {limit:g}s", hint="call stop() to end it"
            ) from None
        return self.stop(5.0)  # it has exited: this only collects the summary

    def stop(self, timeout: float = 10.0) -> TrafficSummary | None:
        """SIGTERM, wait (the child flushes its last bucket), kill if needed."""
        self._read_summary(self._end(timeout)[1])
        return self.summary

    def buckets(self) -> list[TrafficBucket]:
        return read_events(self.events_file)


# --- child side: only ever runs in the subprocess -------------------------------


class _Bucketer:
    """Counts request outcomes into wall-clock buckets and appends them as JSON lines."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self.start = time.time()
        self.requests = 0
        self.failures = 0
        self.by_status: dict[str, int] = {}
        self.total_requests = 0
        self.total_failures = 0
        self.total_by_status: dict[str, int] = {}

    def record(self, status: int, failed: bool) -> None:
        key = str(status) if status else "error"
        self.requests += 1
        self.by_status[key] = self.by_status.get(key, 0) + 1
        if failed:
            self.failures += 1

    def flush(self) -> None:
        now = time.time()
        line = {
            "start": round(self.start, 6),
            "t": round(now, 6),
            "requests": self.requests,
            "failures": self.failures,
            "by_status": dict(sorted(self.by_status.items())),
        }
        self._out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._out.flush()
        self.total_requests += self.requests
        self.total_failures += self.failures
        for k, v in self.by_status.items():
            self.total_by_status[k] = self.total_by_status.get(k, 0) + v
        self.start, self.requests, self.failures, self.by_status = now, 0, 0, {}


def _run_child(
    host: str,
    rate: float,
    duration: float,
    events_file: Path,
    path: str,
    bucket_seconds: float,
    users: int | None,
) -> dict[str, Any]:
    import gevent  # main() has imported locust already
    import gevent.event
    from locust import FastHttpUser, task
    from locust.env import Environment

    n_users = users if users is not None else max(1, math.ceil(rate / PER_USER_RATE))
    interval = n_users / rate  # seconds between two requests of one user
    started = time.monotonic()
    spawned = [0]

    class SteadyUser(FastHttpUser):
        network_timeout = 5.0
        connection_timeout = 2.0
        max_retries = 0

        def on_start(self) -> None:
            # Stagger users evenly across one interval so requests don't arrive in clumps.
            index = spawned[0]
            spawned[0] += 1
            self._due = time.monotonic() + interval * index / n_users
            gevent.sleep(max(0.0, self._due - time.monotonic()))

        def wait_time(self) -> float:
            self._due += interval
            now = time.monotonic()
            if self._due < now - interval:  # far behind: skip, don't burst
                self._due = now
            return max(0.0, self._due - now)

        @task
        def hit(self) -> None:
            self.client.get(path, name=path)

    SteadyUser.host = host
    env = Environment(user_classes=[SteadyUser], host=host)

    with open(events_file, "w", encoding="utf-8") as out:
        bucketer = _Bucketer(out)

        def on_request(
            response: Any = None, exception: BaseException | None = None, **_: Any
        ) -> None:
            status = int(getattr(response, "status_code", 0) or 0)
            bucketer.record(status, exception is not None or status >= 400)

        env.events.request.add_listener(on_request)  # type: ignore[no-untyped-call]
        stop = gevent.event.Event()
        gevent.signal_handler(15, stop.set)  # SIGTERM
        gevent.signal_handler(2, stop.set)  # SIGINT

        def flusher() -> None:
            while True:
                now = time.time()
                gevent.sleep(bucket_seconds - (now % bucket_seconds))
                bucketer.flush()

        runner = env.create_local_runner()
        runner.start(n_users, spawn_rate=n_users)
        writer = gevent.spawn(flusher)
        stop.wait(timeout=duration)
        writer.kill()
        runner.quit()
        bucketer.flush()  # the last, partial bucket
    seconds = time.monotonic() - started
    return {
        "requests": bucketer.total_requests,
        "failures": bucketer.total_failures,
        "seconds": round(seconds, 3),
        "rate": round(bucketer.total_requests / seconds, 2) if seconds > 0 else 0.0,
        "target_rate": rate,
        "users": n_users,
        "by_status": dict(sorted(bucketer.total_by_status.items())),
    }


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m shiftover.demo.traffic",
        description="steady HTTP traffic from Locust, recorded as per-interval JSON lines",
    )
    p.add_argument("--host", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    p.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    p.add_argument("--events-file", required=True, type=Path, help="JSON lines output")
    p.add_argument("--path", default="/", help="path to request (default /)")
    p.add_argument("--bucket", type=float, default=DEFAULT_BUCKET_SECONDS, help="bucket seconds")
    p.add_argument(
        "--users",
        type=int,
        default=None,
        help="concurrent users (default ceil(rate/10)); each must finish a request "
        "within users/rate seconds for the rate to hold, so raise it for slow targets",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    import locust  # noqa: F401  # before anything else the child does (gevent patching)

    args = _build_parser().parse_args(argv)
    try:
        _validate(args.host, args.rate, args.duration, args.path, args.bucket, args.users)
    except BadInput as e:
        print(f"traffic: {e}", file=sys.stderr)
        return 2
    summary = _run_child(
        args.host, args.rate, args.duration, args.events_file, args.path, args.bucket, args.users
    )
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


__all__ = [
    "PER_USER_RATE",
    "TrafficBucket",
    "TrafficProcess",
    "TrafficSummary",
    "achieved_rate",
    "count_failures",
    "count_requests",
    "read_events",
    "traffic_command",
]


if __name__ == "__main__":
    sys.exit(main())
