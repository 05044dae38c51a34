"""A real HAProxy (one per module) in front of two stub backends, and a router on it.

Each test gets the stack back in its starting state: both servers ready, weights
old=256 new=0, backend counters zeroed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shiftover.demo.haproxy import StubStack, find_haproxy, stub_stack
from shiftover.routers.haproxy import HAProxyRouter

Stack = StubStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    with stub_stack(tmp_path_factory.mktemp("haproxy"), tcp_stats_port=0) as st:
        yield st


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    rt = stack.haproxy.runtime()
    for server in ("old", "new"):
        rt.command(f"set server web/{server} state ready")
    rt.set_weight("web", "old", 256)
    rt.set_weight("web", "new", 0)
    stack.old.reset()
    stack.new.reset()
    stack.old.fail_ratio = 0
    stack.new.fail_ratio = 0
    return stack


@pytest.fixture
def router(fresh: Stack) -> HAProxyRouter:
    return HAProxyRouter(fresh.haproxy.socket_path, "web", "old", "new", timeout=2.0)
