"""One contract for every Router (routers/base.py), run over each implementation.

Add an implementation by adding a factory to ``FACTORIES``: it must return a
router whose backend serves 0% on new. The AWS routers run against the moto
server (tests/conftest.py's ``aws`` fixture), set up by tests/routers/*_setup.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from shiftover.errors import BadInput, RouterError
from shiftover.plan import step_weights
from shiftover.routers.base import Router
from shiftover.types import Weights

RouterFactory = Callable[[], Router]

PERCENTS = [0, 1, 2, 5, 10, 12.5, 25, 50, 75, 99, 100]


@pytest.fixture(scope="module")
def haproxy_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from shiftover.demo.haproxy import HAProxyProcess, find_haproxy, free_port

    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    directory: Path = tmp_path_factory.mktemp("contract_haproxy")
    # no backends needed: the contract is about weights, not traffic
    with HAProxyProcess(
        directory, old_address=f"127.0.0.1:{free_port()}", new_address=f"127.0.0.1:{free_port()}"
    ) as proc:
        yield proc.socket_path


def _memory() -> RouterFactory:
    testing = pytest.importorskip(
        "shiftover.testing", reason="shiftover.testing is not written yet"
    )

    def make() -> Router:
        router: Router = testing.InMemoryRouter(initial=Weights(0), scale=256)
        return router

    return make


def _haproxy(request: pytest.FixtureRequest) -> RouterFactory:
    from shiftover.haproxy_api import HAProxyRuntime
    from shiftover.routers.haproxy import HAProxyRouter

    socket_path: str = request.getfixturevalue("haproxy_socket")

    def make() -> Router:
        rt = HAProxyRuntime(socket_path, 2.0)
        for server in ("old", "new"):
            rt.command(f"set server web/{server} state ready")
        rt.set_weight("web", "old", 256)
        rt.set_weight("web", "new", 0)
        return HAProxyRouter(socket_path, "web", "old", "new", timeout=2.0)

    return make


def _route53(request: pytest.FixtureRequest) -> RouterFactory:
    from route53_setup import make_route53

    from shiftover.aws import RateLimiter

    request.getfixturevalue("aws")  # a fresh moto server for each router

    def make() -> Router:
        # the contract is about weights, not Route53's rate limit (tested on its own)
        return make_route53(record_type="A", limiter=RateLimiter(500.0)).router

    return make


def _alb(request: pytest.FixtureRequest) -> RouterFactory:
    from alb_setup import make_alb

    request.getfixturevalue("aws")

    def make() -> Router:
        return make_alb().router

    return make


def _lockstep(request: pytest.FixtureRequest) -> RouterFactory:
    """Route53 and an ALB moved together (routers/group.py)."""
    from shiftover.routers.group import LockstepRouter

    dns, alb = _route53(request), _alb(request)

    def make() -> Router:
        return LockstepRouter([dns(), alb()])

    return make


FACTORIES = {"memory": lambda r: _memory(), "haproxy": _haproxy, "route53": _route53,
             "alb": _alb, "lockstep": _lockstep}


@pytest.fixture(params=list(FACTORIES))
def router_factory(request: pytest.FixtureRequest) -> RouterFactory:
    factory: RouterFactory = FACTORIES[request.param](request)
    return factory


@pytest.fixture
def router(router_factory: RouterFactory) -> Router:
    return router_factory()


def test_is_a_router(router: Router) -> None:
    assert isinstance(router, Router)
    assert router.describe().strip()


def test_starts_at_zero(router: Router) -> None:
    assert router.read() == Weights(0)


@pytest.mark.parametrize("percent", PERCENTS)
def test_read_after_apply_equals_applied(router: Router, percent: float) -> None:
    router.apply(Weights(percent))
    assert router.read() == Weights(percent)


@pytest.mark.parametrize("percent", PERCENTS)
def test_verify_true_for_applied_false_for_another(router: Router, percent: float) -> None:
    router.apply(Weights(percent))
    assert router.verify(Weights(percent)) in (True, None)
    other = Weights(50) if percent != 50 else Weights(10)
    assert router.verify(other) in (False, None)


def test_apply_is_idempotent(router: Router) -> None:
    router.apply(Weights(5))
    router.apply(Weights(5))
    assert router.read() == Weights(5)
    assert router.verify(Weights(5)) in (True, None)


def test_zero_and_hundred_round_trip(router: Router) -> None:
    router.apply(Weights(100))
    assert router.read() == Weights(100)
    router.apply(Weights(0))
    assert router.read() == Weights(0)
    router.apply(Weights(100))
    assert router.read() == Weights(100)


def test_walk_up_and_roll_back(router: Router) -> None:
    for p in [1, 5, 25, 50, 100]:
        router.apply(Weights(p))
        assert router.read() == Weights(p)
    router.apply(Weights(0))  # the rollback
    assert router.read() == Weights(0)


def test_a_split_the_scale_cannot_express_is_refused_and_nothing_moves(router: Router) -> None:
    """1000/1009 of the traffic (99.1%) needs weights 9/1000: no scale here (0-255,
    0-256, 0-999) has them. apply refuses it (no approximation that verify would then
    "confirm"), and nothing moves, on any member of a group; the nearest split at or
    below it that every scale expresses applies and verifies exactly."""
    odd = Weights(Fraction(100_000, 1009))
    router.apply(Weights(10))
    with pytest.raises(RouterError, match="cannot be set exactly"):
        router.apply(odd)
    assert router.read() == Weights(10)
    assert getattr(router, "read_range", lambda: (Weights(10),) * 2)() == (Weights(10),) * 2
    scales = getattr(router, "scales", None) or (router.scale,)  # type: ignore[attr-defined]
    mapped = step_weights([float(odd.new_percent)], tuple(scales))[0]
    assert mapped < odd
    router.apply(mapped)
    assert router.read() == mapped and router.verify(mapped) is True


def test_lease_key_is_stable_and_names_the_target(router: Router) -> None:
    key = router.lease_key()
    assert key and key == router.lease_key()


@pytest.mark.parametrize("bad", [-1, "-0.5", 100.5, 101, 1000])
def test_out_of_range_weights_are_rejected(bad: float | str) -> None:
    with pytest.raises(BadInput, match="outside 0-100"):
        Weights(bad)
