"""Plan files for the end-to-end runs against the local AWS double (moto) and the
Datadog double: built as dicts, written as YAML, so each test says only what it
changes (a router entry, a gate, a limit) and every run stays fast (1 s bakes,
300 ms checks, three steps).

Router and gate timeouts are short on purpose: the lease a run takes must cover
one tick (interval + slowest gate + 1 s + 2 x router timeout + 1 s), and a test
that SIGKILLs a run waits for that lease to expire before running again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# a run's tick: interval 0.3 + gate 1 + grace 1 + 2 x router 1 + margin 1 = 5.3 s
LEASE_TTL = "6s"
ALARM = "web-5xx"  # the CloudWatch alarm the alarm gates watch (prefix "web-")
MONITOR_TAGS = ["service:accounting", "env:production"]


def route53_entry(zone_id: str, record_name: str, *, record_type: str = "CNAME",
                  old: str = "ec2", new: str = "eks", **extra: Any) -> dict[str, Any]:
    """A ``type: route53`` router entry (1 s per call, INSYNC awaited up to 60 s)."""
    return {"type": "route53", "hosted_zone_id": zone_id, "record_name": record_name,
            "record_type": record_type, "old": old, "new": new, "timeout": "1s",
            "insync_timeout": "60s", **extra}


def alb_entry(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An ALB router entry from ``ALBSetup.spec()``, 1 s per call."""
    return {**spec, "timeout": "1s", **extra}


def alarms_gate(**extra: Any) -> dict[str, Any]:
    """CloudWatch alarms starting with ``web-``: ALARM fails, OK passes."""
    return {"name": "web alarms", "type": "cloudwatch_alarms", "alarm_name_prefix": "web-",
            "timeout": "1s", **extra}


def monitors_gate(**extra: Any) -> dict[str, Any]:
    """Datadog monitors tagged service:accounting env:production: Alert fails."""
    return {"name": "accounting monitors", "type": "datadog_monitors", "tags": list(MONITOR_TAGS),
            "timeout": "1s", **extra}


def plan(service: str, routers: list[dict[str, Any]], gates: list[dict[str, Any]],
         **extra: Any) -> dict[str, Any]:
    """A plan moving one router (``router:``) or several in lockstep (``routers:``)."""
    out: dict[str, Any] = {"service": service}
    if len(routers) == 1:
        out["router"] = routers[0]
    else:
        out["routers"] = routers
    out.update({"steps": [10, 50, 100], "bake": "1s", "interval": "300ms",
                "normal_state": gates, "failure_limit": 1})
    out.update(extra)
    return out


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


__all__ = ["ALARM", "LEASE_TTL", "MONITOR_TAGS", "alarms_gate", "alb_entry", "monitors_gate",
           "plan", "route53_entry", "write"]
