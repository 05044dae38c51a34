"""Routers: how traffic is split. One module per backend; this registry maps a plan's
``router.type`` to the class that serves it. An unknown type is a plan error (the
plan model lists the known ones), never a fallback."""

from __future__ import annotations

import importlib
from typing import Any

from shiftover.errors import BadInput
from shiftover.routers.base import Router

# type -> "module:Class"; the class has ``from_spec(spec) -> Router``
ROUTERS: dict[str, str] = {
    "haproxy": "shiftover.routers.haproxy:HAProxyRouter",
}


def build_router(spec: Any) -> Router:
    try:
        target = ROUTERS[spec.type]
    except KeyError:
        raise BadInput(
            f"unknown router type {spec.type!r}", hint=f"known types: {', '.join(sorted(ROUTERS))}"
        ) from None
    module, _, cls = target.partition(":")
    router: Router = getattr(importlib.import_module(module), cls).from_spec(spec)
    return router


__all__ = ["ROUTERS", "Router", "build_router"]
