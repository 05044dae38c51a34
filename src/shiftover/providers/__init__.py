"""Providers: where evidence comes from. One module per backend; this registry maps a
gate's ``type`` to the class that measures it. An unknown type is a plan error."""

from __future__ import annotations

import importlib
from typing import Any

from shiftover.errors import BadInput
from shiftover.providers.base import Provider

# gate type -> "module:Class"; the class has ``from_spec(spec) -> Provider``
PROVIDERS: dict[str, str] = {
    "prometheus": "shiftover.providers.prometheus:PrometheusProvider",
    "prometheus_alerts": "shiftover.providers.prometheus:PrometheusAlertsProvider",
    "http": "shiftover.providers.http:HttpProvider",
    "haproxy_stats": "shiftover.providers.haproxy_stats:HAProxyStatsProvider",
}


def build_provider(spec: Any) -> Provider:
    try:
        target = PROVIDERS[spec.type]
    except KeyError:
        raise BadInput(
            f"unknown gate type {spec.type!r}", hint=f"known types: {', '.join(sorted(PROVIDERS))}"
        ) from None
    module, _, cls = target.partition(":")
    provider: Provider = getattr(importlib.import_module(module), cls).from_spec(spec)
    return provider


__all__ = ["PROVIDERS", "Provider", "build_provider"]
