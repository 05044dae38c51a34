"""HAProxyRouter against a real HAProxy 2.6: weights, split, ordering, errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from shiftover.demo.haproxy import free_port
from shiftover.errors import BadInput, RouterError
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.plan import HAProxyRouterSpec
from shiftover.routers import Router, build_router
from shiftover.routers.haproxy import HAProxyRouter
from shiftover.types import Weights

if TYPE_CHECKING:
    from conftest import Stack

STEPS = [0, 1, 2, 5, 10, 25, 50, 75, 100]


def send(url: str, n: int) -> None:
    with httpx.Client(timeout=5.0) as client:
        for _ in range(n):
            client.get(url).raise_for_status()


def test_is_a_router_and_describes_itself(router: HAProxyRouter) -> None:
    assert isinstance(router, Router)
    assert router.describe() == f"haproxy web/old,new via {router.address}"


def test_reads_initial_weights(router: HAProxyRouter) -> None:
    assert router.read() == Weights(0)


@pytest.mark.parametrize("percent", STEPS)
def test_apply_then_read_back_exactly(router: HAProxyRouter, fresh: Stack, percent: int) -> None:
    router.apply(Weights(percent))
    assert router.read() == Weights(percent)
    assert router.verify(Weights(percent)) is True
    state = fresh.haproxy.runtime().servers_state("web")
    assert (state["old"].weight, state["new"].weight) == Weights(percent).to_backend(256)


def test_walks_all_steps_and_back(router: HAProxyRouter) -> None:
    for p in [*STEPS, *reversed(STEPS)]:
        router.apply(Weights(p))
        assert router.read() == Weights(p)


def test_apply_is_idempotent(router: HAProxyRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    router.apply(Weights(10))
    writes: list[tuple[str, int]] = []
    real = router.runtime.set_weight
    monkeypatch.setattr(
        router.runtime, "set_weight", lambda b, s, w: (writes.append((s, w)), real(b, s, w))
    )
    router.apply(Weights(10))
    assert writes == []
    assert router.read() == Weights(10)


def test_growing_side_is_written_first(
    router: HAProxyRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[tuple[str, int]] = []
    real = router.runtime.set_weight
    monkeypatch.setattr(
        router.runtime, "set_weight", lambda b, s, w: (writes.append((s, w)), real(b, s, w))
    )
    router.apply(Weights(100))  # from (256, 0): new grows to 256, then old drops to 0
    assert writes == [("new", 256), ("old", 0)]
    writes.clear()
    router.apply(Weights(0))  # back: old grows first
    assert writes == [("old", 256), ("new", 0)]


def test_verify_false_for_other_weights(router: HAProxyRouter) -> None:
    router.apply(Weights(25))
    assert router.verify(Weights(25)) is True
    assert router.verify(Weights(50)) is False
    assert router.verify(Weights(0)) is False


def test_unrepresentable_percent_verifies_against_closest_split(router: HAProxyRouter) -> None:
    router.apply(Weights("33.3"))
    assert router.verify(Weights("33.3")) is True
    assert abs(router.read().as_float() - 33.3) < 0.5


def test_weights_split_traffic(router: HAProxyRouter, fresh: Stack) -> None:
    router.apply(Weights(25))
    send(fresh.haproxy.frontend_url, 400)
    total = fresh.old.requests + fresh.new.requests
    assert total == 400
    assert 0.15 <= fresh.new.requests / total <= 0.35


def test_zero_and_hundred_send_all_traffic_one_way(router: HAProxyRouter, fresh: Stack) -> None:
    router.apply(Weights(100))
    send(fresh.haproxy.frontend_url, 50)
    assert (fresh.old.requests, fresh.new.requests) == (0, 50)
    router.apply(Weights(0))
    send(fresh.haproxy.frontend_url, 50)
    assert (fresh.old.requests, fresh.new.requests) == (50, 50)


def test_tcp_address_form(fresh: Stack) -> None:
    tcp = fresh.haproxy.tcp_address
    assert tcp is not None
    for address in (tcp, f"tcp://{tcp}"):
        r = HAProxyRouter(address, "web", "old", "new")
        r.apply(Weights(5))
        assert r.read() == Weights(5)


def test_from_spec_and_registry(fresh: Stack) -> None:
    spec = HAProxyRouterSpec(
        type="haproxy",
        socket=fresh.haproxy.socket_path,
        backend="web",
        old="old",
        new="new",
        timeout="1s",
    )
    r = build_router(spec)
    assert isinstance(r, HAProxyRouter)
    assert r.runtime.timeout == 1.0
    assert r.read() == Weights(0)


def test_missing_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.sock")
    r = HAProxyRouter(path, "web", "old", "new")
    with pytest.raises(RouterError, match=r"no HAProxy runtime API at .*nope\.sock") as e:
        r.read()
    assert f"stats socket {path} level admin" in str(e.value)


def test_nothing_listening_on_tcp() -> None:
    r = HAProxyRouter(f"127.0.0.1:{free_port()}", "web", "old", "new")
    with pytest.raises(RouterError, match=r"no HAProxy runtime API at 127\.0\.0\.1"):
        r.read()


def test_wrong_backend(fresh: Stack) -> None:
    r = HAProxyRouter(fresh.haproxy.socket_path, "nope", "old", "new")
    with pytest.raises(RouterError, match="Can't find backend"):
        r.read()
    with pytest.raises(RouterError, match="backend"):
        r.apply(Weights(5))


def test_wrong_server(fresh: Stack) -> None:
    r = HAProxyRouter(fresh.haproxy.socket_path, "web", "old", "eks")
    with pytest.raises(RouterError, match="no server 'eks' in backend 'web'") as e:
        r.read()
    assert "servers in web: new, old" in str(e.value)
    with pytest.raises(RouterError, match="no server 'eks'"):
        r.apply(Weights(5))


def test_same_server_twice_is_refused(fresh: Stack) -> None:
    with pytest.raises(RouterError, match="same server"):
        HAProxyRouter(fresh.haproxy.socket_path, "web", "old", "old")


@pytest.mark.parametrize("state", ["maint", "drain"])
def test_server_not_ready(router: HAProxyRouter, fresh: Stack, state: str) -> None:
    router.apply(Weights(10))
    fresh.haproxy.runtime().command(f"set server web/new state {state}")
    with pytest.raises(RouterError, match=f"web/new is in {state.upper()}") as e:
        router.read()
    assert "set server web/new state ready" in str(e.value)
    with pytest.raises(RouterError):
        router.verify(Weights(10))
    # a rollback still writes the weights, and 0% verifies on weights alone
    router.apply(Weights(0))
    assert fresh.haproxy.runtime().server_state("web", "new").weight == 0
    assert router.verify(Weights(0)) is True


def test_both_zero(router: HAProxyRouter, fresh: Stack) -> None:
    fresh.haproxy.runtime().set_weight("web", "old", 0)
    with pytest.raises(RouterError, match="weight 0 on both old and new"):
        router.read()
    router.apply(Weights(50))  # recovers
    assert router.read() == Weights(50)


def test_out_of_range_weights_never_reach_haproxy() -> None:
    with pytest.raises(BadInput):
        Weights(101)
    with pytest.raises(BadInput):
        Weights(-1)


def test_runtime_refuses_bad_weight_and_multi_commands(fresh: Stack) -> None:
    rt = HAProxyRuntime(fresh.haproxy.socket_path, 2.0)
    with pytest.raises(RouterError, match="0-256"):
        rt.set_weight("web", "new", 257)
    with pytest.raises(RouterError, match="one command per call"):
        rt.command("show info; show stat")
    with pytest.raises(RouterError, match="Absolute weight"):
        rt.command("set server web/new weight 300")


def test_live_weight_changes_drop_no_request(router: HAProxyRouter, fresh: Stack) -> None:
    """Weights change while keep-alive traffic flows: every request still answers 200."""

    statuses: list[int] = []
    done = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=5.0) as client:
            while not done.is_set() and len(statuses) < 500:
                statuses.append(client.get(fresh.haproxy.frontend_url).status_code)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()

    def wait_for(n: int) -> None:  # bounded: progress, not timing, is asserted
        deadline = time.monotonic() + 10
        while len(statuses) < n and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)

    try:
        for i, p in enumerate([*STEPS, 50, 0]):
            wait_for(10 * (i + 1))
            router.apply(Weights(p))
            assert router.verify(Weights(p)) is True
    finally:
        done.set()
        t.join(10)
    assert len(statuses) >= 100
    assert set(statuses) == {200}
