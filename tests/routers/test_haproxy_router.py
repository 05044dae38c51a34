"""HAProxyRouter against a real HAProxy 2.6: weights, split, ordering, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from shiftover.demo.haproxy import HAProxyProcess, StubBackend, find_haproxy, free_port
from shiftover.errors import BadInput, RouterError
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.routers import Router, build_router
from shiftover.routers.haproxy import HAProxyRouter, HAProxyRouterSpec
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


def _recording(router: HAProxyRouter, monkeypatch: pytest.MonkeyPatch,
               fail_at: int | None = None) -> list[tuple[str, int]]:
    writes: list[tuple[str, int]] = []
    real = router.runtime.set_weight

    def write(b: str, s: str, w: int) -> None:
        if fail_at is not None and len(writes) == fail_at:
            raise RouterError("scripted: the runtime API went away mid-change")
        writes.append((s, w))
        real(b, s, w)
    monkeypatch.setattr(router.runtime, "set_weight", write)
    return writes


def test_growing_side_is_written_first(
    router: HAProxyRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _recording(router, monkeypatch)
    router.apply(Weights(100))  # from (256, 0): new grows to 256, then old drops to 0
    assert writes == [("new", 256), ("old", 0)]
    writes.clear()
    router.apply(Weights(0))  # back: old grows first
    assert writes == [("old", 256), ("new", 0)]


@pytest.mark.parametrize(("start", "target"), [(50, 13), (10, 5), (13, 50), (10, 11), (100, 1)])
def test_a_change_cut_short_leaves_a_split_between_current_and_target(
        router: HAProxyRouter, fresh: Stack, monkeypatch: pytest.MonkeyPatch,
        start: int, target: int) -> None:
    """50% -> 13% once left HAProxy at 59.5% when the second write failed; 10 -> 5
    passed through 10.18%. After *any* prefix of a change's writes, HAProxy serves a
    split between the current and the target one."""
    router.apply(Weights(start))
    probe = _recording(router, monkeypatch)
    router.apply(Weights(target))
    total = len(probe)
    assert total >= 2
    lo, hi = sorted((Weights(start), Weights(target)))
    for cut in range(1, total):
        monkeypatch.undo()
        router.apply(Weights(start))
        _recording(router, monkeypatch, fail_at=cut)
        with pytest.raises(RouterError, match="mid-change"):
            router.apply(Weights(target))
        monkeypatch.undo()
        served = router.read()
        assert lo <= served <= hi, (cut, served)


def test_a_split_the_scale_cannot_express_is_refused(router: HAProxyRouter) -> None:
    with pytest.raises(RouterError, match="cannot be set exactly"):
        router.apply(Weights("33.3"))
    assert router.read() == Weights(0)


def test_verify_compares_the_exact_split_haproxy_serves(router: HAProxyRouter,
                                                        fresh: Stack) -> None:
    """Weights summing over 256 were approximated and "verified" against the same
    approximation: 4.9057% was confirmed while HAProxy served 4.9080%."""
    rt = fresh.haproxy.runtime()
    rt.set_weight("web", "old", 248)
    rt.set_weight("web", "new", 12)  # 12/260 = 4.615%
    served = router.read()
    assert served == Weights.from_backend(248, 12)
    assert router.verify(served) is True
    assert router.verify(Weights(5)) is False


def test_verify_false_for_other_weights(router: HAProxyRouter) -> None:
    router.apply(Weights(25))
    assert router.verify(Weights(25)) is True
    assert router.verify(Weights(50)) is False
    assert router.verify(Weights(0)) is False


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


def test_lease_key_names_the_socket_and_backend(fresh: Stack, tmp_path: Path) -> None:
    link = tmp_path / "admin-link.sock"
    link.symlink_to(fresh.haproxy.socket_path)
    a = HAProxyRouter(fresh.haproxy.socket_path, "web", "old", "new")
    b = HAProxyRouter(str(link), "web", "ec2", "eks")  # another plan, other names: one key
    assert a.lease_key() == b.lease_key() == f"haproxy:unix:{Path(fresh.haproxy.socket_path).resolve()}#web"
    assert HAProxyRouter(fresh.haproxy.socket_path, "api", "old", "new").lease_key() != a.lease_key()
    tcp = fresh.haproxy.tcp_address
    assert tcp is not None
    port = tcp.rsplit(":", 1)[1]
    keys = {HAProxyRouter(spelling, "web", "old", "new").lease_key()
            for spelling in (tcp, f"tcp://{tcp}", f"ipv4@{tcp}", f"localhost:{port}",
                             f"127.000.000.001:{port}")}
    assert keys == {f"haproxy:tcp:127.0.0.1:{port}#web"}
    assert HAProxyRouter(f"ipv4@{tcp}", "web", "old", "new").read() == Weights(0)


@pytest.fixture
def checked(tmp_path: Path) -> Iterator[tuple[HAProxyProcess, StubBackend, StubBackend, StubBackend]]:
    if find_haproxy() is None:
        pytest.skip("haproxy is not installed")
    with StubBackend("old") as old, StubBackend("new") as new, StubBackend("third") as third, \
            HAProxyProcess(tmp_path, old_address=old.address, new_address=new.address,
                           new_weight=0, extra_servers=(("third", third.address, 0),),
                           server_options=dict.fromkeys(("old", "new", "third"),
                                                        "check inter 200ms fall 1 rise 1")) as proc:
        yield proc, old, new, third


def _wait_op(rt: HAProxyRuntime, server: str, state: str) -> None:
    deadline = time.monotonic() + 10
    while rt.servers_state("web")[server].operational != state:
        assert time.monotonic() < deadline, f"{server} never became {state}"
        time.sleep(0.05)


def test_a_server_down_by_health_check_makes_the_split_unknown(checked: Any) -> None:
    """With old DOWN, read() said 10% while 100% went to new."""
    proc, old, _new, _third = checked
    rt = proc.runtime()
    router = HAProxyRouter(proc.socket_path, "web", "old", "new")
    _wait_op(rt, "old", "running")
    _wait_op(rt, "new", "running")
    router.apply(Weights(10))
    assert router.read() == Weights(10)
    old.stop()
    _wait_op(rt, "old", "stopped")
    with pytest.raises(RouterError, match=r"web/old is DOWN .*health check"):
        router.read()
    with pytest.raises(RouterError, match="DOWN"):
        router.verify(Weights(10))
    # a rollback still ends: 0% needs only the new server's weight at 0
    router.apply(Weights(0))
    assert router.verify(Weights(0)) is True


def test_a_third_server_taking_traffic_makes_the_split_unknown(checked: Any) -> None:
    """A third server at weight 256 was ignored."""
    proc, *_ = checked
    rt = proc.runtime()
    router = HAProxyRouter(proc.socket_path, "web", "old", "new")
    _wait_op(rt, "third", "running")
    router.apply(Weights(10))
    assert router.read() == Weights(10)  # weight 0: it takes nothing
    rt.set_weight("web", "third", 256)
    with pytest.raises(RouterError, match=r"other servers taking traffic: third \(weight 256\)") as e:
        router.read()
    assert "set server web/third weight 0" in str(e.value)


def test_a_rollback_moves_clients_pinned_by_cookie_persistence(tmp_path: Path) -> None:
    """Weight 0 still takes persistent clients: "0% confirmed" while a pinned client
    kept reaching the broken new server. A rollback puts it in MAINT too."""
    if find_haproxy() is None:
        pytest.skip("haproxy is not installed")
    with StubBackend("old") as old, StubBackend("new") as new, HAProxyProcess(
            tmp_path, old_address=old.address, new_address=new.address,
            backend_lines=("cookie SRV insert indirect nocache",),
            server_options={"old": "cookie o", "new": "cookie n"}) as proc:
        router = HAProxyRouter(proc.socket_path, "web", "old", "new")
        router.apply(Weights(50))
        with httpx.Client(timeout=5.0) as client:
            for _ in range(3):
                client.get(proc.frontend_url, cookies={"SRV": "n"})
            assert new.requests == 3  # pinned
            router.apply(Weights(0))
            assert router.verify(Weights(0)) is True
            assert router.read() == Weights(0)
            before = new.requests
            for _ in range(5):
                assert client.get(proc.frontend_url, cookies={"SRV": "n"}).status_code == 200
            assert new.requests == before  # the pinned client left the new server
        assert proc.runtime().servers_state("web")["new"].admin == "maint"
        with pytest.raises(RouterError, match="does not take a server out of maintenance") as e:
            router.apply(Weights(10))
        assert "set server web/new state ready" in str(e.value)


def test_without_persistence_a_rollback_leaves_the_new_server_ready(router: HAProxyRouter,
                                                                   fresh: Stack) -> None:
    router.apply(Weights(50))
    router.apply(Weights(0))
    assert router.verify(Weights(0)) is True
    assert fresh.haproxy.runtime().servers_state("web")["new"].admin == "ready"
