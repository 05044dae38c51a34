"""Routers: how traffic is split. One module per backend, owning its plan model
(``Spec``) beside its code; this registry maps a plan's ``router.type`` to the class
that serves it and assembles the plan's router union from the classes' specs. An
unknown type is a plan error (listing the known ones), never a fallback.

Backend modules import their SDK (boto3, ...) inside functions, so that loading a
plan imports every spec but no client library."""

from __future__ import annotations

import functools
from typing import Any

from shiftover._registry import build, specs_of
from shiftover.routers.base import Router

# type -> "module:Class"; the class has ``Spec`` (its plan model) and
# ``from_spec(spec) -> Router``
ROUTERS: dict[str, str] = {
    "haproxy": "shiftover.routers.haproxy:HAProxyRouter",
    "alb": "shiftover.routers.alb:ALBRouter",
    "route53": "shiftover.routers.route53:Route53Router",
}


@functools.cache
def router_specs() -> dict[str, Any]:
    """Every router type's plan model, in registry order."""
    return specs_of(ROUTERS, "router")


def build_router(spec: Any) -> Router:
    """One router from its spec, or the lockstep group of several (a list of specs)."""
    if isinstance(spec, list | tuple):
        if len(spec) == 1:
            return build_router(spec[0])
        from shiftover.routers.group import LockstepRouter

        group: Router = LockstepRouter([build_router(s) for s in spec])
        return group
    router: Router = build(ROUTERS, "router", spec)
    return router


__all__ = ["ROUTERS", "Router", "build_router", "router_specs"]
