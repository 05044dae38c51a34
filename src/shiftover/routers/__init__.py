"""Routers: how traffic is split. One module per backend; this registry maps a plan's
``router.type`` to the class that serves it. An unknown type is a plan error (the
plan model lists the known ones), never a fallback."""

from __future__ import annotations

from typing import Any

from shiftover._registry import load_class
from shiftover.routers.base import Router

# type -> "module:Class"; the class has ``from_spec(spec) -> Router``
ROUTERS: dict[str, str] = {
    "haproxy": "shiftover.routers.haproxy:HAProxyRouter",
}


def build_router(spec: Any) -> Router:
    router: Router = load_class(ROUTERS, "router", spec.type).from_spec(spec)
    return router


__all__ = ["ROUTERS", "Router", "build_router"]
