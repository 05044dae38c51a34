"""The sample app with a known capacity: ``--concurrency N --service-ms MS``
serves at most N application requests at once, each holding its slot MS
milliseconds, the rest waiting first come, first served, so its true capacity
is N / (MS/1000) req/s. Behaviour is asserted through the app's own counters
(GET /admin/stats, /metrics), never through how fast the machine is; the only
times checked are lower bounds that sleeping guarantees."""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shiftover.demo.app import SampleAppProcess, ServiceLimit, ServiceSlots, app_command, main
from shiftover.errors import BadInput

WAIT = 10.0  # bound on every poll loop, seconds


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}")
        time.sleep(0.005)


def _simultaneous_gets(port: int, n: int, path: str = "/api/work") -> tuple[list[int], float]:
    """n requests on n connections opened beforehand, sent together (a barrier).
    Returns the status codes and the wall time from the first send to the last answer."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT) for _ in range(n)]
    for c in conns:
        c.connect()
    barrier = threading.Barrier(n + 1)
    codes: list[int] = [0] * n

    def one(i: int) -> None:
        barrier.wait(timeout=WAIT)
        conns[i].request("GET", path)
        r = conns[i].getresponse()
        r.read()
        codes[i] = r.status

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait(timeout=WAIT)
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=WAIT)
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    assert not any(t.is_alive() for t in threads)
    return codes, elapsed


def _gauge(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    raise AssertionError(f"{name} not in /metrics")


# --- no server ----------------------------------------------------------------


def test_the_limit_is_validated_and_gives_the_true_capacity() -> None:
    assert ServiceLimit(2, 50).capacity_rps == pytest.approx(40.0)
    assert ServiceLimit(4, 20).capacity_rps == pytest.approx(200.0)
    assert ServiceLimit().capacity_rps is None  # no limit: unbounded
    assert ServiceLimit(4, 0).capacity_rps is None  # no service time: unbounded
    assert ServiceLimit(None, 20).capacity_rps is None
    for bad in (0, -1, True, 1.5):
        with pytest.raises(BadInput, match="at least 1") as info:
            ServiceLimit(bad, 10)  # type: ignore[arg-type]
        assert "--concurrency" in str(info.value)
    for ms in (-1.0, float("nan"), float("inf")):
        with pytest.raises(BadInput, match="milliseconds") as info:
            ServiceLimit(2, ms)
        assert "--service-ms" in str(info.value)


def test_app_command_carries_the_limit_only_when_set() -> None:
    plain = app_command(8081, "new")
    assert "--concurrency" not in plain and "--service-ms" not in plain
    argv = app_command(8081, "new", concurrency=4, service_ms=20)
    assert argv[argv.index("--concurrency") + 1] == "4"
    assert argv[argv.index("--service-ms") + 1] == "20.0"
    with pytest.raises(BadInput):
        app_command(8081, "new", concurrency=0)
    with pytest.raises(BadInput):
        SampleAppProcess(0, "new", concurrency=2, service_ms=-5)


def test_a_bad_limit_on_the_command_line_exits_2_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--port", "0", "--name", "new", "--concurrency", "0"]) == 2
    assert "concurrency 0 must be a whole number of at least 1" in capsys.readouterr().err
    assert main(["--port", "0", "--name", "new", "--service-ms", "-3"]) == 2
    assert "service_ms -3.0" in capsys.readouterr().err


def test_slots_admit_at_most_the_limit_and_hand_over_first_come_first_served() -> None:
    slots = ServiceSlots(1)
    slots.enter()  # the one slot is taken
    order: list[str] = []
    threads = []
    for name in ("a", "b", "c"):

        def wait_turn(name: str = name) -> None:
            with slots.slot():
                order.append(name)

        t = threading.Thread(target=wait_turn)
        t.start()
        threads.append(t)
        queued = len(threads)
        _until(lambda queued=queued: slots.waiting == queued, f"{queued} waiting")
    assert slots.in_flight == 1 and order == []
    slots.leave()
    for t in threads:
        t.join(timeout=WAIT)
    assert order == ["a", "b", "c"]  # arrival order, nobody overtook
    stats = slots.stats()
    assert stats == {
        "in_flight": 0,
        "waiting": 0,
        "max_in_flight": 1,
        "max_waiting": 3,
        "served": 4,
    }
    assert slots.stats(reset=True)["served"] == 4
    assert slots.stats() == {
        "in_flight": 0,
        "waiting": 0,
        "max_in_flight": 0,
        "max_waiting": 0,
        "served": 0,
    }


def test_slots_without_a_limit_never_make_anyone_wait() -> None:
    slots = ServiceSlots(None)
    for _ in range(5):
        slots.enter()
    assert slots.in_flight == 5 and slots.waiting == 0
    for _ in range(5):
        slots.leave()
    assert slots.stats()["max_in_flight"] == 5 and slots.stats()["max_waiting"] == 0


# --- real process -------------------------------------------------------------


def test_eight_simultaneous_requests_are_served_two_at_a_time(tmp_path: Path) -> None:
    with SampleAppProcess(0, "new", workdir=tmp_path, concurrency=2, service_ms=100) as app:
        assert app.capacity_rps == pytest.approx(20.0)
        before = app.stats()
        assert before["concurrency"] == 2 and before["service_ms"] == 100.0
        assert before["capacity_rps"] == pytest.approx(20.0)
        codes, elapsed = _simultaneous_gets(app.port, 8)
        stats = app.stats()
    assert codes == [200] * 8
    # the server's own counters: never more than 2 at once, the others queued
    assert stats["max_in_flight"] == 2
    assert stats["max_waiting"] >= 1
    assert stats["served"] == 8 and stats["in_flight"] == 0 and stats["waiting"] == 0
    # 8 x 100 ms of work through 2 slots cannot finish in under 4 x 100 ms
    assert elapsed >= 4 * 0.100


def test_injected_latency_holds_the_slot_like_a_slow_dependency(tmp_path: Path) -> None:
    with SampleAppProcess(0, "new", workdir=tmp_path, concurrency=1, latency_ms=50) as app:
        codes, elapsed = _simultaneous_gets(app.port, 4)
        stats = app.stats()
    assert codes == [200] * 4
    assert stats["max_in_flight"] == 1 and stats["served"] == 4
    assert elapsed >= 4 * 0.050


def test_in_flight_and_waiting_are_gauges_and_stats_reset(tmp_path: Path) -> None:
    with SampleAppProcess(0, "new", workdir=tmp_path, concurrency=1, service_ms=400) as app:
        assert _gauge(app.url, "http_requests_in_flight") == 0
        done: list[int] = []
        clients = [
            threading.Thread(
                target=lambda: done.append(httpx.get(f"{app.url}/api/x", timeout=WAIT).status_code)
            )
            for _ in range(3)
        ]
        for t in clients:
            t.start()
        # while the slot is busy (3 x 400 ms) the gauges say so
        busy: set[float] = set()
        queued: set[float] = set()

        def seen() -> bool:
            busy.add(_gauge(app.url, "http_requests_in_flight"))
            queued.add(_gauge(app.url, "http_requests_waiting"))
            return 1 in busy and max(queued) >= 1

        _until(seen, "one request in flight and one waiting, on /metrics")
        for t in clients:
            t.join(timeout=WAIT)
        assert done == [200, 200, 200]
        assert max(busy) == 1 and max(queued) <= 2
        assert _gauge(app.url, "http_requests_in_flight") == 0
        assert _gauge(app.url, "http_requests_waiting") == 0
        before = app.stats(reset=True)
        assert before["served"] == 3 and before["max_in_flight"] == 1
        assert before["max_waiting"] >= 1
        after = app.stats()
        assert after["served"] == 0 and after["max_in_flight"] == 0
        assert after["max_waiting"] == 0 and after["capacity_rps"] == pytest.approx(2.5)
        # scrapes, health checks and admin calls took no slot
        httpx.get(f"{app.url}/health/dependencies", timeout=5)
        assert app.stats()["served"] == 0


def test_without_a_limit_the_app_reports_unbounded_capacity(tmp_path: Path) -> None:
    with SampleAppProcess(0, "old", workdir=tmp_path, latency_ms=100) as app:
        assert app.capacity_rps is None
        codes, _ = _simultaneous_gets(app.port, 4)
        stats = app.stats()
    assert codes == [200] * 4
    assert stats["concurrency"] is None and stats["capacity_rps"] is None
    assert stats["max_waiting"] == 0 and stats["served"] == 4


def test_the_command_line_flags_start_a_limited_app(tmp_path: Path) -> None:
    argv = app_command(0, "new", concurrency=3, service_ms=10)
    assert argv[0] == sys.executable
    with SampleAppProcess(0, "new", workdir=tmp_path, concurrency=3, service_ms=10) as app:
        s = app.stats()
        assert app.log_path is not None
        assert app.log_path.read_text() == f"ready on 127.0.0.1:{app.port}\n"
    assert (s["concurrency"], s["service_ms"]) == (3, 10.0)
    assert s["capacity_rps"] == pytest.approx(300.0)
