"""haproxy_stats provider against a real HAProxy 2.6: failed / attempted requests
of one server over the interval (or window) since the last check.

What HAProxy 2.6 counts when the new server breaks (measured with
``show stat`` before and after, backend ``web`` = old + new at 256/256
round robin, 20 requests through the frontend; ``-`` is 0):

================================  ==============================================  ===============================
new server                        new's row (Δ)                                   BACKEND row (Δ) / clients
================================  ==============================================  ===============================
healthy                           stot 10, hrsp_2xx 10                            hrsp_5xx - / 20 x 200
answers 500                       stot 10, hrsp_5xx 10                            hrsp_5xx 10 / 10 x 500
dead (refused), default retries   stot 40, econ 10, wretr 30, hrsp -              hrsp_5xx 10 / 10 x 503
dead, ``retries 0``               stot 10, econ 10                                hrsp_5xx 10 / 10 x 503
dead, ``retries 2`` +             stot 20, wredis 20, econ -                      hrsp_5xx - / 20 x 200
``option redispatch 1``
killed with SIGKILL (keep-alive)  same as dead, each config (stot 19, wredis 19)  same as dead
hangs, ``timeout server 1s``      stot 3, eresp 3 (6 requests)                    hrsp_5xx 3 / 3 x 504
hangs, clients give up first      stot 5, nothing else until ``timeout server``,  then hrsp_5xx 5 (504s nobody
                                  then eresp 5                                    reads)
invalid response (garbage)        stot 10, eresp 10, hrsp_5xx -                   hrsp_5xx 10 / 10 x 502
resets the connection             stot 10, eresp 10, srv_abrt 10                  hrsp_5xx - / 10 closed
dead, ``check`` (DOWN at once)    nothing; status DOWN, uweight 256               hrsp_5xx - / 20 x 200 (old)
``set server ... state maint``    nothing; status MAINT, uweight unchanged        all to old
================================  ==============================================  ===============================

In every row ``stot`` = responses + econ + eresp + wretr + wredis: that sum is
what the provider calls attempts. The server's own ``hrsp_5xx`` never counts
HAProxy's 502/503/504s; each of those follows an econ or eresp of the server
that was tried. ``retries``, ``option redispatch`` and ``check`` change which
counter moves, and whether clients see errors at all, never that the new
server failed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from haproxy_faults import (
    CHECK,
    SHORT_SERVER_TIMEOUT,
    FaultyHAProxy,
    HangingBackend,
    ProcessBackend,
    send,
    wait_for_status,
)

from shiftover.analysis.judge import judge
from shiftover.demo.haproxy import StubBackend, StubStack, find_haproxy, free_port, stub_stack
from shiftover.errors import NoData, ProviderError
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.providers import Provider, build_provider
from shiftover.providers.haproxy_stats import HAProxyStatsGate, HAProxyStatsProvider
from shiftover.types import Measurement, Verdict

Stack = StubStack


@pytest.fixture(scope="module", autouse=True)
def _need_haproxy() -> None:
    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # 50/50, so both servers see traffic
    with stub_stack(tmp_path_factory.mktemp("haproxy_stats"), new_weight=256) as st:
        yield st


@pytest.fixture
def provider(stack: Stack) -> HAProxyStatsProvider:
    stack.new.fail_ratio = 0
    stack.old.fail_ratio = 0
    return HAProxyStatsProvider(stack.haproxy.socket_path, "web", "new", timeout=2.0)


def send_5xx(url: str, n: int) -> int:
    """Send n requests; return how many came back 5xx."""
    errors = 0
    with httpx.Client(timeout=5.0) as client:
        for _ in range(n):
            errors += client.get(url).status_code >= 500
    return errors


def gate(socket: str, server: str = "new", **extra: Any) -> HAProxyStatsGate:
    return HAProxyStatsGate(
        type="haproxy_stats", name=f"{server} errors", socket=socket, backend="web",
        server=server, max=0.01, **extra,
    )


def verdict(spec: HAProxyStatsGate, outcome: Measurement | ProviderError) -> Verdict:
    return judge(spec, outcome, now=0.0).verdict


# --- a stack whose new server can break -------------------------------------------


@dataclass
class Faulty:
    haproxy: FaultyHAProxy
    old: StubBackend
    spec: HAProxyStatsGate

    @property
    def url(self) -> str:
        return self.haproxy.frontend_url

    def provider(self, server: str = "new") -> HAProxyStatsProvider:
        return HAProxyStatsProvider.from_spec(gate(self.haproxy.socket_path, server))


@contextlib.contextmanager
def faulty(directory: Path, new_address: str, *, new_weight: int = 256, **options: Any) -> Iterator[Faulty]:
    with StubBackend("old") as old, FaultyHAProxy(
        directory, old_address=old.address, new_address=new_address, new_weight=new_weight, **options
    ) as proc:
        yield Faulty(proc, old, gate(proc.socket_path))


# HAProxy waits min(timeout connect, 1s) between two retries: keep the test short
FAST_RETRY = "timeout connect 200ms"
DEAD_SERVER_CONFIGS = {
    "default-retries": (FAST_RETRY,),
    "retries-0": (FAST_RETRY, "retries 0"),
    "redispatch": (FAST_RETRY, "retries 2", "option redispatch 1"),
}


# --- the guarantees: a broken new environment is a failure, not "no data" -------------


@pytest.mark.parametrize("config", sorted(DEAD_SERVER_CONFIGS))
def test_a_dead_new_server_is_a_failure_not_no_data(tmp_path: Path, config: str) -> None:
    with ProcessBackend("new", tmp_path) as new, faulty(
        tmp_path, new.address, backend_lines=DEAD_SERVER_CONFIGS[config]
    ) as st:
        p = st.provider()
        send(st.url, 10)  # keep-alive connections to new are open when it dies
        with pytest.raises(NoData):
            p.measure(now=1.0)
        assert send(st.url, 10) == {200: 10}
        healthy = p.measure(now=2.0)
        assert (healthy.value, healthy.samples) == (0.0, 5)

        new.kill()
        clients = send(st.url, 8)
        m = p.measure(now=3.0)

    assert m.value == 1.0, m.details
    assert m.samples == m.details["attempts"] >= 4
    assert m.details["responses"] == 0
    assert verdict(st.spec, m) is Verdict.FAIL
    d = m.details
    if config == "redispatch":  # clients never notice: old answered every one
        assert clients == {200: 8}
        assert d["redispatches"] == d["attempts"]
    else:
        assert clients[503] == d["connection_errors"] > 0
        assert d["haproxy_5xx"] == clients[503]
        assert d["connection_errors"] + d["retries"] == d["attempts"]
        if config == "retries-0":
            assert d["retries"] == 0


def test_a_hanging_new_server_is_a_failure_not_no_data(tmp_path: Path) -> None:
    with HangingBackend() as new, faulty(
        tmp_path, new.address, backend_lines=(SHORT_SERVER_TIMEOUT,)
    ) as st:
        p = st.provider()
        with pytest.raises(NoData):
            p.measure(now=1.0)
        clients = send(st.url, 4)  # round robin: 2 reach new, each a 504 after 1 s
        m = p.measure(now=2.0)
    assert clients == {200: 2, 504: 2}
    assert m.value == 1.0
    assert m.samples == m.details["response_errors"] == 2
    assert m.details["haproxy_5xx"] == 2
    assert verdict(st.spec, m) is Verdict.FAIL


def test_a_new_server_that_hangs_past_the_clients_patience_fails_once_haproxy_gives_up(
    tmp_path: Path,
) -> None:
    with HangingBackend() as new, faulty(
        tmp_path, new.address, backend_lines=(SHORT_SERVER_TIMEOUT,)
    ) as st:
        p = st.provider()
        with pytest.raises(NoData):
            p.measure(now=1.0)
        clients = send(st.url, 4, timeout=0.2)  # clients give up before HAProxy does
        outcomes: list[Measurement | NoData] = []
        for t in range(2, 100):  # bounded: HAProxy gives up after 1 s
            try:
                outcomes.append(p.measure(now=float(t)))
                break
            except NoData as e:
                outcomes.append(e)
                time.sleep(0.1)
    assert clients == {200: 2, "ReadTimeout": 2}
    *waiting, m = outcomes
    # until then: no data, saying the requests are in flight (never a pass)
    for e in waiting:
        assert isinstance(e, NoData) and "none has finished" in e.message
    assert isinstance(m, Measurement)
    assert m.value == 1.0
    assert m.samples == m.details["response_errors"] >= 1  # the second may land a check later
    assert verdict(st.spec, m) is Verdict.FAIL


def settle_backend_5xx(socket: str, expected: int) -> None:
    api = HAProxyRuntime(socket)
    for _ in range(50):  # 5 s at most
        rows = [r for r in api.show_stat() if r.get("svname") == "BACKEND"]
        if sum(int(r.get("hrsp_5xx") or 0) for r in rows) >= expected:
            return
        time.sleep(0.1)


def test_haproxy_generated_5xx_are_charged_once_to_the_server_that_caused_them(
    tmp_path: Path,
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with faulty(tmp_path, dead, backend_lines=("retries 0",)) as st:
        new, old = st.provider("new"), st.provider("old")
        for p in (new, old):
            with pytest.raises(NoData):
                p.measure(now=1.0)
        served_before = st.old.requests
        clients = send(st.url, 20)
        # HAProxy counts a stream on the backend row as it ends, which can be a moment
        # after the client has its 503: wait (bounded) for the counters to settle
        settle_backend_5xx(st.haproxy.socket_path, 10)
        m_new, m_old = new.measure(now=2.0), old.measure(now=2.0)
    # every 503 HAProxy sent is one connection error of new, counted once
    assert clients == {200: 10, 503: 10}
    assert (m_new.value, m_new.samples) == (1.0, 10)
    assert m_new.details["connection_errors"] == m_new.details["backend_5xx"] == 10
    assert m_new.details["haproxy_5xx"] == 10
    assert m_new.details["haproxy_5xx_unattributed"] == 0
    # and none of them is blamed on old, which answered its share
    assert m_old.value == 0.0
    assert m_old.samples == st.old.requests - served_before == 10


def test_a_redispatched_request_is_a_failure_of_the_server_it_left(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with faulty(tmp_path, dead, backend_lines=("retries 1", "option redispatch")) as st:
        p = st.provider()
        with pytest.raises(NoData):
            p.measure(now=1.0)
        clients = send(st.url, 10)
        m = p.measure(now=2.0)
    assert clients == {200: 10}  # nobody saw an error...
    assert m.value == 1.0  # ...but new answered none of what was sent to it
    assert m.details["redispatches"] > 0
    assert m.details["responses"] == 0


def test_a_new_server_down_by_health_check_is_a_failure_while_its_weight_sends_it_traffic(
    tmp_path: Path,
) -> None:
    with ProcessBackend("new", tmp_path) as new, faulty(
        tmp_path, new.address, server_options=CHECK
    ) as st:
        p = st.provider()
        wait_for_status(st.haproxy.runtime(), "web", "new", "UP")
        with pytest.raises(NoData):
            p.measure(now=1.0)
        send(st.url, 10)
        assert p.measure(now=2.0).value == 0.0

        new.kill()
        wait_for_status(st.haproxy.runtime(), "web", "new", "DOWN")
        with contextlib.suppress(NoData):
            p.measure(now=3.0)  # the interval of the kill itself, whatever it holds
        clients = send(st.url, 20)
        m = p.measure(now=4.0)
    assert clients == {200: 20}  # old took everything: no client error, no new counter
    assert m.value == 1.0
    assert m.details["attempts"] == 0
    assert m.details["status"].startswith("DOWN") and m.details["weight"] == 256
    assert m.samples == 10  # its half of the backend's 20
    assert "DOWN" in m.details["not_serving"]
    assert verdict(st.spec, m) is Verdict.FAIL


@pytest.mark.parametrize("state", ["maint", "drain"])
def test_a_new_server_in_maint_or_drain_with_weight_is_a_failure(tmp_path: Path, state: str) -> None:
    with StubBackend("new") as new, faulty(tmp_path, new.address, new_weight=2) as st:
        st.haproxy.runtime().command(f"set server web/new state {state}")
        p = st.provider()
        with pytest.raises(NoData):
            p.measure(now=1.0)
        assert send(st.url, 258) == {200: 258}
        m = p.measure(now=2.0)
    assert m.value == 1.0
    assert m.details["status"] == state.upper()
    assert m.samples == 2  # 2/258 of 258 requests were meant for it
    assert verdict(st.spec, m) is Verdict.FAIL


def test_a_server_at_weight_0_without_traffic_is_no_data(tmp_path: Path) -> None:
    """At 0% there is nothing to judge, even when the server is down."""
    dead = f"127.0.0.1:{free_port()}"
    with faulty(tmp_path, dead, new_weight=0, server_options=CHECK) as st:
        wait_for_status(st.haproxy.runtime(), "web", "new", "DOWN")
        p = st.provider()
        with pytest.raises(NoData):
            p.measure(now=1.0)
        send(st.url, 10)
        with pytest.raises(NoData, match="weight 0 and got no traffic") as e:
            p.measure(now=2.0)
    assert "nothing to judge at 0%" in str(e.value)


def test_a_tcp_mode_backend_is_an_error_not_no_data(tmp_path: Path) -> None:
    with StubBackend("new") as new, faulty(tmp_path, new.address, tcp_backend=True) as st:
        p = HAProxyStatsProvider(st.haproxy.socket_path, "tcpweb", "new")
        with pytest.raises(ProviderError, match="is `mode tcp`") as e:
            p.measure(now=1.0)  # the first check already: validate must fail on it
    assert not isinstance(e.value, NoData)
    assert e.value.hint and "mode http" in e.value.hint


@pytest.mark.parametrize(
    ("backend", "server", "message"),
    [
        ("nope", "new", "no backend 'nope'"),
        ("web", "eks", "no server 'eks' in backend 'web'"),
        ("shiftover_fe", "new", "'shiftover_fe', but it is a frontend"),
        ("web", "BACKEND", "aggregate row"),
    ],
)
def test_a_gate_that_cannot_work_is_an_error_from_the_first_check(
    stack: Stack, backend: str, server: str, message: str
) -> None:
    p = HAProxyStatsProvider(stack.haproxy.socket_path, backend, server)
    with pytest.raises(ProviderError, match=message) as e:
        p.measure(now=1.0)
    assert not isinstance(e.value, NoData)
    assert e.value.hint  # how to fix it


def test_a_clock_that_steps_back_does_not_stretch_the_window(stack: Stack) -> None:
    p = HAProxyStatsProvider(stack.haproxy.socket_path, "web", "new", window=5.0)
    with pytest.raises(NoData):
        p.measure(now=100.0)
    send(stack.haproxy.frontend_url, 8)
    assert p.measure(now=101.0).samples == 4
    send(stack.haproxy.frontend_url, 8)
    # the clock went back 50 s: the window would reach back to the first reading
    m = p.measure(now=51.0)
    assert m.samples == 4
    assert "clock went back" in m.details["notes"][0]
    send(stack.haproxy.frontend_url, 8)
    assert p.measure(now=52.0).samples == 4


# --- the interval and the window ------------------------------------------------------


def test_is_a_provider(provider: HAProxyStatsProvider) -> None:
    assert isinstance(provider, Provider)
    assert "web/new" in provider.describe()


def test_first_reading_is_a_baseline(provider: HAProxyStatsProvider) -> None:
    with pytest.raises(NoData, match="a ratio needs two"):
        provider.measure(now=1.0)


def test_ratio_and_samples_over_the_interval(provider: HAProxyStatsProvider, stack: Stack) -> None:
    send_5xx(stack.haproxy.frontend_url, 20)  # before the baseline: must not count
    with pytest.raises(NoData):
        provider.measure(now=1.0)
    stack.new.fail_ratio = 0.25
    before_req, before_err = stack.new.requests, stack.new.errors
    send_5xx(stack.haproxy.frontend_url, 200)
    m = provider.measure(now=2.0)
    served = stack.new.requests - before_req
    failed = stack.new.errors - before_err
    assert failed > 0
    assert m.samples == served
    assert m.value == pytest.approx(failed / served)
    assert 0.2 <= (m.value or 0) <= 0.3
    assert m.at == 2.0
    assert m.details["responses_5xx"] == m.details["failures"] == failed
    assert m.details["connection_errors"] == m.details["response_errors"] == 0
    assert m.details["interval_seconds"] == 1.0

    # next interval: healthy again, the earlier failures no longer count
    stack.new.fail_ratio = 0
    before_req = stack.new.requests
    send_5xx(stack.haproxy.frontend_url, 40)
    m2 = provider.measure(now=3.0)
    assert m2.value == 0.0
    assert m2.samples == stack.new.requests - before_req > 0


def test_old_server_is_measured_on_its_own(stack: Stack) -> None:
    p = HAProxyStatsProvider(stack.haproxy.socket_path, "web", "old")
    stack.new.fail_ratio = 1.0
    stack.old.fail_ratio = 0
    try:
        with pytest.raises(NoData):
            p.measure(now=1.0)
        before_req = stack.old.requests
        send_5xx(stack.haproxy.frontend_url, 40)
        m = p.measure(now=2.0)
        assert m.value == 0.0
        assert m.samples == stack.old.requests - before_req > 0
    finally:
        stack.new.fail_ratio = 0


def test_idle_interval_is_no_data(provider: HAProxyStatsProvider) -> None:
    with pytest.raises(NoData):
        provider.measure(now=1.0)
    with pytest.raises(NoData, match="no requests were sent to web/new since the last check"):
        provider.measure(now=2.0)


def test_counter_reset_takes_a_new_baseline(provider: HAProxyStatsProvider, stack: Stack) -> None:
    send_5xx(stack.haproxy.frontend_url, 10)
    with pytest.raises(NoData):
        provider.measure(now=1.0)
    # pretend the previous reading was higher than anything HAProxy has now (a reload)
    from shiftover.providers.haproxy_stats import _Counters, _Reading

    provider._readings.clear()
    provider._readings.append((1.0, _Reading(_Counters(responses=10**9, backend_sessions=10**9))))
    with pytest.raises(NoData, match="went down"):
        provider.measure(now=2.0)
    before_req = stack.new.requests
    send_5xx(stack.haproxy.frontend_url, 10)
    m = provider.measure(now=3.0)
    assert m.samples == stack.new.requests - before_req > 0


def test_window_measures_the_last_seconds_of_traffic(stack: Stack) -> None:
    p = HAProxyStatsProvider(stack.haproxy.socket_path, "web", "new", window=5.0)
    with pytest.raises(NoData):
        p.measure(now=0.0)
    counts = []
    for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0):
        before = stack.new.requests
        send_5xx(stack.haproxy.frontend_url, 8)
        counts.append(stack.new.requests - before)
        m = p.measure(now=t)
        # the window spans every reading back to t-5 (or the first one)
        start = max(0, int(t) - 5)
        assert m.samples == sum(counts[start:]), (t, m.samples, counts)


def test_from_spec_and_registry(stack: Stack) -> None:
    p = build_provider(gate(stack.haproxy.socket_path))
    assert isinstance(p, HAProxyStatsProvider)
    with pytest.raises(NoData):
        p.measure(now=1.0)


def test_errors_are_provider_errors(tmp_path: Path, stack: Stack) -> None:
    with pytest.raises(ProviderError, match="no HAProxy runtime API") as e:
        HAProxyStatsProvider(str(tmp_path / "x.sock"), "web", "new").measure(now=1.0)
    assert not isinstance(e.value, NoData)
    with pytest.raises(ProviderError, match=r"no HAProxy runtime API at 127\.0\.0\.1"):
        HAProxyStatsProvider(f"127.0.0.1:{free_port()}", "web", "new").measure(now=1.0)
    with pytest.raises(ProviderError, match="not supported"):
        HAProxyStatsProvider(stack.haproxy.socket_path, "web", "new", metric="latency")
