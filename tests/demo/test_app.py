"""The demo's sample app: answers, faults on demand (deterministically), exposes
metrics, reports dependencies, and stops cleanly. Real processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shiftover.demo.app import Fault, FaultState, SampleAppProcess, app_command
from shiftover.errors import BadInput, ShiftoverError


@pytest.fixture
def app(tmp_path: Path) -> Iterator[SampleAppProcess]:
    with SampleAppProcess(0, "new", workdir=tmp_path) as proc:
        yield proc


def _samples(metrics_text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# --- no server ----------------------------------------------------------------


def test_error_counter_fails_exactly_every_twentieth_at_five_percent() -> None:
    state = FaultState(Fault(error_rate=0.05))
    fails = [i for i in range(1, 201) if state.next_request()[0]]
    assert fails == list(range(20, 201, 20))


def test_error_counter_restarts_when_the_fault_changes() -> None:
    state = FaultState(Fault(error_rate=0.5))
    assert [state.next_request()[0] for _ in range(3)] == [False, True, False]
    state.set(Fault(error_rate=0.5))
    assert [state.next_request()[0] for _ in range(2)] == [False, True]
    state.set(Fault(error_rate=0.0))
    assert not any(state.next_request()[0] for _ in range(100))
    state.set(Fault(error_rate=1.0))
    assert all(state.next_request()[0] for _ in range(10))


def test_fault_values_are_validated() -> None:
    with pytest.raises(BadInput, match=r"outside 0\.\.1"):
        Fault(error_rate=1.5)
    with pytest.raises(BadInput, match="negative"):
        Fault(latency_ms=-1)


def test_app_command_carries_the_fault() -> None:
    argv = app_command(8081, "new", error_rate=0.05, dependencies_ok=False)
    assert argv[:3] == [sys.executable, "-m", "shiftover.demo.app"]
    assert argv[argv.index("--error-rate") + 1] == "0.05"
    assert "--dependencies-down" in argv


# --- real process -------------------------------------------------------------


def test_app_answers_with_its_instance_name(app: SampleAppProcess) -> None:
    assert app.port > 0 and app.url == f"http://127.0.0.1:{app.port}"
    with httpx.Client(base_url=app.url, timeout=5) as c:
        root = c.get("/")
        api = c.get("/api/items?x=1")
        missing = c.get("/nope")
    assert root.status_code == 200 and root.json()["instance"] == "new"
    assert api.status_code == 200 and api.json()["path"] == "/api/items"
    assert root.headers["content-length"] == str(len(root.content))
    assert missing.status_code == 404


def test_five_percent_fault_fails_exactly_ten_of_two_hundred(app: SampleAppProcess) -> None:
    state = app.set_fault(error_rate=0.05)
    assert state == {"error_rate": 0.05, "latency_ms": 0.0, "dependencies_ok": True,
                     "error_seed": None}
    with httpx.Client(base_url=app.url, timeout=5) as c:
        codes = [c.get("/api/x").status_code for _ in range(200)]
    assert codes.count(500) == 10 and codes.count(200) == 190
    assert [i + 1 for i, code in enumerate(codes) if code == 500] == list(range(20, 201, 20))
    # back to healthy
    app.set_fault(error_rate=0.0)
    with httpx.Client(base_url=app.url, timeout=5) as c:
        assert all(c.get("/").status_code == 200 for _ in range(40))


def test_fault_endpoint_reads_and_updates_subsets(app: SampleAppProcess) -> None:
    assert app.fault() == {"error_rate": 0.0, "latency_ms": 0.0, "dependencies_ok": True,
                           "error_seed": None}
    app.set_fault(latency_ms=5)
    assert app.fault() == {"error_rate": 0.0, "latency_ms": 5.0, "dependencies_ok": True,
                           "error_seed": None}
    with pytest.raises(BadInput, match=r"outside 0\.\.1"):
        app.set_fault(error_rate=2.0)
    r = httpx.post(f"{app.url}/admin/fault", json={"colour": "red"}, timeout=5)
    assert r.status_code == 400 and "unknown fault field" in r.json()["error"]
    r = httpx.post(f"{app.url}/admin/fault", content=b"{not json", timeout=5)
    assert r.status_code == 400
    assert app.fault()["latency_ms"] == 5.0  # refused updates change nothing


def test_metrics_count_application_requests_only(app: SampleAppProcess) -> None:
    app.set_fault(error_rate=0.25, latency_ms=2)
    with httpx.Client(base_url=app.url, timeout=5) as c:
        for _ in range(8):
            c.get("/")
        c.get("/health/dependencies")
        c.get("/admin/fault")
        c.get("/metrics")
        text = c.get("/metrics").text
    s = _samples(text)
    lbl = (("code", "200"), ("instance_name", "new"))
    assert s[("http_requests_total", lbl)] == 6
    assert s[("http_requests_total", (("code", "500"), ("instance_name", "new")))] == 2
    assert s[("http_request_duration_seconds_count", (("instance_name", "new"),))] == 8
    # injected latency is a lower bound on the measured time (sleep never returns early)
    assert s[("http_request_duration_seconds_sum", (("instance_name", "new"),))] >= 8 * 0.002
    assert (
        s[("http_request_duration_seconds_bucket", (("instance_name", "new"), ("le", "0.001")))]
        == 0
    )
    assert not any(name.endswith("_created") for name, _ in s)


def test_dependencies_down_answers_503(tmp_path: Path) -> None:
    with SampleAppProcess(0, "old", workdir=tmp_path, dependencies_ok=False) as app:
        r = httpx.get(f"{app.url}/health/dependencies", timeout=5)
        assert r.status_code == 503 and r.json()["ok"] is False
        app.set_fault(dependencies_ok=True)
        r = httpx.get(f"{app.url}/health/dependencies", timeout=5)
        assert r.status_code == 200 and r.json() == {"ok": True}
        # the app itself keeps serving either way
        assert httpx.get(app.url, timeout=5).status_code == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_app_exits_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    with SampleAppProcess(0, "old", workdir=tmp_path) as app:
        assert app.pid is not None
        # an idle keep-alive connection must not hold the exit up
        with httpx.Client(timeout=5) as c:
            assert c.get(app.url).status_code == 200
            os.kill(app.pid, sig)
            deadline = time.monotonic() + 10
            while app.running() and time.monotonic() < deadline:
                time.sleep(0.02)
        assert not app.running()
        assert app.stop() == 0
        assert app.log_path is not None
        # quiet: the ready line and nothing else (no request log, no traceback)
        assert app.log_path.read_text() == f"ready on 127.0.0.1:{app.port}\n"


def test_stop_terminates_and_removes_its_temporary_workdir() -> None:
    app = SampleAppProcess(0, "old").start()
    log = app.log_path
    assert log is not None and app.running()
    assert app.stop() == 0
    assert not app.running() and not log.exists()
    assert app.stop() is None  # idempotent


def test_busy_port_is_reported_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ShiftoverError, match="cannot listen") as info:
            SampleAppProcess(port, "old", workdir=tmp_path).start()
    assert "pick another port" in str(info.value)


def test_a_seeded_error_fault_is_a_coin(app: SampleAppProcess) -> None:
    state = app.set_fault(error_rate=0.25, error_seed=7)
    assert state["error_seed"] == 7
    with httpx.Client(base_url=app.url, timeout=5) as c:
        codes = [c.get("/api/x").status_code for _ in range(400)]
    fails = [i for i, code in enumerate(codes) if code == 500]
    assert 60 <= len(fails) <= 140  # about a quarter, drawn, not every 4th
    assert fails != list(range(3, 400, 4))
    app.set_fault(error_rate=0.0, error_seed=None)
    assert app.fault()["error_seed"] is None
