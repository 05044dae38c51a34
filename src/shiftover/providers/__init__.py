"""Providers: where evidence comes from. One module per backend, owning its gates'
plan models (``Spec``) beside its code; this registry maps a gate's ``type`` to the
class that measures it and assembles the plan's gate union from the classes' specs.
An unknown type is a plan error.

Backend modules import their SDK (boto3, datadog-api-client) inside functions, so
that loading a plan imports every spec but no client library."""

from __future__ import annotations

import functools
from typing import Any

from shiftover._registry import build, specs_of
from shiftover.providers.base import Provider

# gate type -> "module:Class"; the class has ``Spec`` (its plan model) and
# ``from_spec(spec) -> Provider``
PROVIDERS: dict[str, str] = {
    "prometheus": "shiftover.providers.prometheus:PrometheusProvider",
    "prometheus_alerts": "shiftover.providers.prometheus:PrometheusAlertsProvider",
    "http": "shiftover.providers.http:HttpProvider",
    "haproxy_stats": "shiftover.providers.haproxy_stats:HAProxyStatsProvider",
    "cloudwatch": "shiftover.providers.cloudwatch:CloudWatchProvider",
    "cloudwatch_alarms": "shiftover.providers.cloudwatch:CloudWatchAlarmsProvider",
    "datadog": "shiftover.providers.datadog:DatadogProvider",
    "datadog_monitors": "shiftover.providers.datadog:DatadogMonitorsProvider",
    "compare": "shiftover.providers.compare:CompareProvider",
    "compare_latency": "shiftover.providers.compare_latency:CompareLatencyProvider",
    "command": "shiftover.providers.command:CommandProvider",
}


@functools.cache
def gate_specs() -> dict[str, Any]:
    """Every gate type's plan model, in registry order."""
    return specs_of(PROVIDERS, "gate")


def build_provider(spec: Any) -> Provider:
    provider: Provider = build(PROVIDERS, "gate", spec)
    return provider


__all__ = ["PROVIDERS", "Provider", "build_provider", "gate_specs"]
