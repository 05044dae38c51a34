"""haproxy_stats provider against a real HAProxy: 5xx ratio over the interval."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shiftover.demo.haproxy import StubStack, find_haproxy, free_port, stub_stack
from shiftover.errors import NoData, ProviderError
from shiftover.plan import HAProxyStatsGate
from shiftover.providers import Provider, build_provider
from shiftover.providers.haproxy_stats import HAProxyStatsProvider

Stack = StubStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    # 50/50, so both servers see traffic
    with stub_stack(tmp_path_factory.mktemp("haproxy_stats"), new_weight=256) as st:
        yield st


@pytest.fixture
def provider(stack: Stack) -> HAProxyStatsProvider:
    stack.new.fail_ratio = 0
    stack.old.fail_ratio = 0
    return HAProxyStatsProvider(stack.haproxy.socket_path, "web", "new", timeout=2.0)


def send(url: str, n: int) -> int:
    """Send n requests; return how many came back 5xx."""
    errors = 0
    with httpx.Client(timeout=5.0) as client:
        for _ in range(n):
            errors += client.get(url).status_code >= 500
    return errors


def test_is_a_provider(provider: HAProxyStatsProvider) -> None:
    assert isinstance(provider, Provider)
    assert "web/new" in provider.describe()


def test_first_reading_is_a_baseline(provider: HAProxyStatsProvider) -> None:
    with pytest.raises(NoData, match="a ratio needs two"):
        provider.measure(now=1.0)


def test_ratio_and_samples_over_the_interval(provider: HAProxyStatsProvider, stack: Stack) -> None:
    send(stack.haproxy.frontend_url, 20)  # before the baseline: must not count
    with pytest.raises(NoData):
        provider.measure(now=1.0)
    stack.new.fail_ratio = 0.25
    before_req, before_err = stack.new.requests, stack.new.errors
    send(stack.haproxy.frontend_url, 200)
    m = provider.measure(now=2.0)
    served = stack.new.requests - before_req
    failed = stack.new.errors - before_err
    assert failed > 0
    assert m.samples == served
    assert m.value == pytest.approx(failed / served)
    assert 0.2 <= (m.value or 0) <= 0.3
    assert m.at == 2.0
    assert m.details["errors_5xx"] == failed

    # next interval: healthy again, the earlier failures no longer count
    stack.new.fail_ratio = 0
    before_req = stack.new.requests
    send(stack.haproxy.frontend_url, 40)
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
        send(stack.haproxy.frontend_url, 40)
        m = p.measure(now=2.0)
        assert m.value == 0.0
        assert m.samples == stack.old.requests - before_req > 0
    finally:
        stack.new.fail_ratio = 0


def test_idle_interval_is_no_data(provider: HAProxyStatsProvider) -> None:
    with pytest.raises(NoData):
        provider.measure(now=1.0)
    with pytest.raises(NoData, match="no responses from web/new since the last check"):
        provider.measure(now=2.0)


def test_counter_reset_takes_a_new_baseline(provider: HAProxyStatsProvider, stack: Stack) -> None:
    send(stack.haproxy.frontend_url, 10)
    with pytest.raises(NoData):
        provider.measure(now=1.0)
    # pretend the previous reading was higher than anything HAProxy has now (a reload)
    from shiftover.providers.haproxy_stats import _Reading

    provider._readings.clear()
    provider._readings.append((1.0, _Reading(errors=10**9, responses=10**9)))
    with pytest.raises(NoData, match="went down"):
        provider.measure(now=2.0)
    before_req = stack.new.requests
    send(stack.haproxy.frontend_url, 10)
    m = provider.measure(now=3.0)
    assert m.samples == stack.new.requests - before_req > 0


def test_window_measures_the_last_seconds_of_traffic(stack: Stack) -> None:
    p = HAProxyStatsProvider(stack.haproxy.socket_path, "web", "new", window=5.0)
    with pytest.raises(NoData):
        p.measure(now=0.0)
    counts = []
    for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0):
        before = stack.new.requests
        send(stack.haproxy.frontend_url, 8)
        counts.append(stack.new.requests - before)
        m = p.measure(now=t)
        # the window spans every reading back to t-5 (or the first one)
        start = max(0, int(t) - 5)
        assert m.samples == sum(counts[start:]), (t, m.samples, counts)


def test_from_spec_and_registry(stack: Stack) -> None:
    spec = HAProxyStatsGate(
        type="haproxy_stats",
        name="new-5xx",
        socket=stack.haproxy.socket_path,
        backend="web",
        server="new",
        max=0.01,
    )
    p = build_provider(spec)
    assert isinstance(p, HAProxyStatsProvider)
    with pytest.raises(NoData):
        p.measure(now=1.0)


def test_errors_are_provider_errors(tmp_path: Path, stack: Stack) -> None:
    with pytest.raises(ProviderError, match="no HAProxy runtime API") as e:
        HAProxyStatsProvider(str(tmp_path / "x.sock"), "web", "new").measure(now=1.0)
    assert not isinstance(e.value, NoData)
    with pytest.raises(ProviderError, match="no server 'eks'"):
        HAProxyStatsProvider(stack.haproxy.socket_path, "web", "eks").measure(now=1.0)
    with pytest.raises(ProviderError, match="no backend 'nope'"):
        HAProxyStatsProvider(stack.haproxy.socket_path, "nope", "new").measure(now=1.0)
    with pytest.raises(ProviderError, match=r"no HAProxy runtime API at 127\.0\.0\.1"):
        HAProxyStatsProvider(f"127.0.0.1:{free_port()}", "web", "new").measure(now=1.0)
    with pytest.raises(ProviderError, match="not supported"):
        HAProxyStatsProvider(stack.haproxy.socket_path, "web", "new", metric="latency")
