"""Demo traffic: bucket arithmetic (no processes), and Locust in a child process
against a real sample app. Rates are checked only within loose bands."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shiftover.demo.app import SampleAppProcess
from shiftover.demo.traffic import (
    TrafficBucket,
    TrafficProcess,
    achieved_rate,
    count_failures,
    count_requests,
    read_events,
    traffic_command,
)
from shiftover.errors import BadInput


def _b(start: float, t: float, requests: int, failures: int = 0) -> TrafficBucket:
    return TrafficBucket(start=start, t=t, requests=requests, failures=failures)


# --- no processes ---------------------------------------------------------------


def test_counts_round_outward_to_whole_buckets() -> None:
    buckets = [_b(0.0, 0.5, 100, 0), _b(0.5, 1.0, 100, 5), _b(1.0, 1.5, 100, 7), _b(1.5, 2.0, 90)]
    assert count_failures(buckets, 0.6, 1.2) == 12
    assert count_requests(buckets, 0.6, 1.2) == 200
    # a bucket that ended exactly at start / began exactly at end is outside
    assert count_failures(buckets, 1.0, 1.5) == 7
    assert count_failures(buckets, 5.0, 6.0) == 0
    assert count_requests(buckets, 0.0, 2.0) == 390
    with pytest.raises(BadInput, match="before it starts"):
        count_failures(buckets, 2.0, 1.0)


def test_achieved_rate_uses_the_covered_span() -> None:
    assert achieved_rate([]) == 0.0
    assert achieved_rate([_b(10.0, 10.5, 100), _b(10.5, 11.0, 100)]) == pytest.approx(200.0)


def test_read_events_skips_a_torn_last_line(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    line = {"start": 1.0, "t": 1.5, "requests": 3, "failures": 1, "by_status": {"200": 2, "500": 1}}
    f.write_text(json.dumps(line) + "\n" + '{"start": 1.5, "t": 2.0, "requ')
    [bucket] = read_events(f)
    assert bucket == TrafficBucket(1.0, 1.5, 3, 1, {"200": 2, "500": 1})
    assert bucket.seconds == 0.5


def test_read_events_rejects_a_bad_line_in_the_middle(tmp_path: Path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text('garbage\n{"t": 2.0, "requests": 1, "failures": 0}\n')
    with pytest.raises(BadInput, match=r"events\.jsonl:1"):
        read_events(f)
    with pytest.raises(BadInput, match="does not exist"):
        read_events(tmp_path / "missing.jsonl")


def test_inputs_are_validated(tmp_path: Path) -> None:
    ev = tmp_path / "e.jsonl"
    with pytest.raises(BadInput, match="not a URL"):
        TrafficProcess("127.0.0.1:80", 10, ev, 1)
    with pytest.raises(BadInput, match="rate"):
        TrafficProcess("http://127.0.0.1:80", 0, ev, 1)
    with pytest.raises(BadInput, match="must start with /"):
        TrafficProcess("http://127.0.0.1:80", 10, ev, 1, path="api")
    with pytest.raises(BadInput, match="users"):
        TrafficProcess("http://127.0.0.1:80", 10, ev, 1, users=0)


def test_parent_side_never_imports_locust_or_gevent() -> None:
    code = (
        "import sys, shiftover.demo.traffic, shiftover.demo.app; "
        "bad = [m for m in ('locust', 'gevent', 'httpx') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


def test_command_imports_locust_before_shiftover() -> None:
    argv = traffic_command("http://127.0.0.1:1", 200, "/tmp/e.jsonl", 5)
    assert argv[1] == "-c" and argv[2].startswith("import locust")


# --- Locust against a real app -------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleAppProcess]:
    with SampleAppProcess(0, "old", workdir=tmp_path_factory.mktemp("app")) as proc:
        yield proc


def test_steady_rate_runs_to_its_duration(app: SampleAppProcess, tmp_path: Path) -> None:
    app.set_fault(error_rate=0.0)
    events = tmp_path / "events.jsonl"
    with TrafficProcess(app.url, 50, events, duration=4, path="/api/items") as traffic:
        summary = traffic.wait(timeout=60)
    buckets = read_events(events)
    assert summary is not None and summary.users == 5
    assert summary.failures == 0 and summary.requests == sum(b.requests for b in buckets)
    assert 30 <= achieved_rate(buckets) <= 70
    assert all(b.start < b.t for b in buckets)
    assert all(a.t == b.start for a, b in itertools.pairwise(buckets))  # tiled
    assert set().union(*(b.by_status for b in buckets)) == {"200"}
    assert (events.parent / "events.jsonl.log").exists()


def test_failures_are_counted_and_the_last_bucket_flushed_on_stop(
    app: SampleAppProcess, tmp_path: Path
) -> None:
    app.set_fault(error_rate=0.2)
    try:
        events = tmp_path / "events.jsonl"
        traffic = TrafficProcess(app.url, 50, events, duration=60).start()
        try:
            for _ in range(200):  # ~3 s of traffic, bounded
                if len(read_events(events)) >= 6:
                    break
                time.sleep(0.05)
        finally:
            summary = traffic.stop()  # SIGTERM long before the 60 s duration
    finally:
        app.set_fault(error_rate=0.0)
    buckets = read_events(events)
    assert summary is not None
    assert summary.requests == sum(b.requests for b in buckets) > 0  # last bucket flushed
    failures = count_failures(buckets, buckets[0].start, buckets[-1].t)
    assert failures == summary.failures > 0
    assert 0.1 <= failures / summary.requests <= 0.3  # the app fails every 5th exactly
    assert sum(b.by_status.get("500", 0) for b in buckets) == failures


def test_connection_errors_are_failures(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    events = tmp_path / "events.jsonl"
    with TrafficProcess(f"http://127.0.0.1:{port}", 20, events, duration=2, users=3) as traffic:
        summary = traffic.wait(timeout=60)
    assert summary is not None and summary.requests > 0 and summary.users == 3
    assert summary.failures == summary.requests
    assert set(summary.by_status) == {"error"}
