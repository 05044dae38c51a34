"""What validate shows of a router beyond its split (engine.build.router_facts)."""

from __future__ import annotations

from typing import Any

from alb_setup import make_alb
from route53_setup import make_route53

from shiftover.aws import RateLimiter
from shiftover.engine.build import router_facts
from shiftover.routers.group import LockstepRouter


def test_alb_warnings_weigh_stickiness_against_the_bake(aws: Any) -> None:
    setup = make_alb(sticky_seconds=3600)
    with_bake = router_facts(setup.router, bake=60.0).warnings
    without = router_facts(setup.router).warnings
    assert len(with_bake) == len(without) + 1, (with_bake, without)


def test_a_lockstep_group_shows_each_member_and_the_longest_tail(aws: Any) -> None:
    dns = make_route53(ttl=300, limiter=RateLimiter(500.0))
    alb = make_alb(sticky_seconds=None)
    facts = router_facts(LockstepRouter([dns.router, alb.router]), bake=60.0)
    assert any(line.startswith("route53 ") for line in facts.details)
    assert any(line.startswith("alb ") for line in facts.details)
    assert facts.tail_seconds == 300  # the records' TTL; the ALB switches at once
    assert any("300" in w for w in facts.warnings)  # TTL above 60 s
