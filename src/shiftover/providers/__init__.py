"""Providers: where evidence comes from. One module per backend; this registry maps a
gate's ``type`` to the class that measures it. An unknown type is a plan error."""

from __future__ import annotations

from typing import Any

from shiftover._registry import load_class
from shiftover.providers.base import Provider

# gate type -> "module:Class"; the class has ``from_spec(spec) -> Provider``
PROVIDERS: dict[str, str] = {
    "prometheus": "shiftover.providers.prometheus:PrometheusProvider",
    "prometheus_alerts": "shiftover.providers.prometheus:PrometheusAlertsProvider",
    "http": "shiftover.providers.http:HttpProvider",
    "haproxy_stats": "shiftover.providers.haproxy_stats:HAProxyStatsProvider",
}


def build_provider(spec: Any) -> Provider:
    provider: Provider = load_class(PROVIDERS, "gate", spec.type).from_spec(spec)
    return provider


__all__ = ["PROVIDERS", "Provider", "build_provider"]
