"""Route53 on the moto server, for the router's tests, the contract suite and e2e tests.

``make_route53(...)`` creates a hosted zone and two weighted records of one name and
type at 0% on new (old weight 255, new 0) and returns the router on them with the
names it used. Records are CNAMEs with values and a TTL, or alias A/AAAA records
pointing at two load balancers (old evaluates target health, new does not, so a
rewrite that loses a field shows). The old record carries a real health check id.

``ScriptedClient`` wraps a boto3 client: it records every call and can answer
from a script (an exception to raise, or a function of the real method and its
arguments), which is how tests get throttling and PENDING changes out of moto
(moto is never throttled and reports every change INSYNC at once).

Needs the ``aws`` fixture (tests/conftest.py) active: the boto3 clients here are
built the standard way, from the environment it sets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import boto3
from botocore.exceptions import ClientError

from shiftover.routers.route53 import Route53Router

OLD_LB = "old-web-123456.us-east-1.elb.amazonaws.com."
NEW_LB = "k8s-web-abcdef-654321.elb.us-east-1.amazonaws.com."
ELB_ZONE = "Z35SXDOTRQ7X7K"  # us-east-1's Classic/Application LB zone


class Route53Setup(NamedTuple):
    router: Route53Router
    zone_id: str  # without /hostedzone/
    record_name: str  # with the trailing dot
    record_type: str
    old: str
    new: str
    client: Any  # a plain boto3 route53 client, to look at or change the records


def route53_client() -> Any:
    return boto3.client("route53")


def weighted_record(name: str, record_type: str, set_id: str, weight: int, *, alias: bool,
                    target: str, ttl: int = 60, evaluate: bool = False,
                    health_check_id: str | None = None) -> dict[str, Any]:
    """A weighted ResourceRecordSet: alias (A/AAAA) or with one value (CNAME, A, AAAA)."""
    rec: dict[str, Any] = {"Name": name, "Type": record_type, "SetIdentifier": set_id, "Weight": weight}
    if alias:
        rec["AliasTarget"] = {"HostedZoneId": ELB_ZONE, "DNSName": target, "EvaluateTargetHealth": evaluate}
    else:
        rec["TTL"] = ttl
        rec["ResourceRecords"] = [{"Value": target}]
    if health_check_id:
        rec["HealthCheckId"] = health_check_id
    return rec


def put(client: Any, zone_id: str, *records: dict[str, Any]) -> None:
    """UPSERT records as they are (moto checks almost nothing: weight 300 goes in)."""
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in records]})


def records_at(client: Any, zone_id: str, name: str) -> dict[str, dict[str, Any]]:
    """Every record at ``name`` with a set identifier, keyed by it (the last one wins)."""
    answer = client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=name)
    want = name.lower().rstrip(".") + "."
    return {r["SetIdentifier"]: r for r in answer["ResourceRecordSets"]
            if r["Name"].lower() == want and "SetIdentifier" in r}


def weights_at(client: Any, zone_id: str, name: str, old: str = "ec2", new: str = "eks") -> tuple[int, int]:
    recs = records_at(client, zone_id, name)
    return recs[old]["Weight"], recs[new]["Weight"]


def _value_for(record_type: str, which: str) -> str:
    if record_type == "A":
        return "192.0.2.10" if which == "old" else "192.0.2.20"
    if record_type == "AAAA":
        return "2001:db8::10" if which == "old" else "2001:db8::20"
    return "old-web.example.net" if which == "old" else "new-web.example.net"


def make_route53(
    *,
    record_type: str = "CNAME",
    alias: bool | None = None,
    zone_name: str = "example.com.",
    record_name: str = "www.example.com.",
    old: str = "ec2",
    new: str = "eks",
    old_weight: int = 255,
    new_weight: int = 0,
    ttl: int = 60,
    health_check: bool = True,
    **router_kwargs: Any,
) -> Route53Setup:
    """A zone with two weighted records (0% on new) and the router on them.

    ``alias`` defaults to True for A/AAAA and must be False for CNAME; without
    alias, A/AAAA records get documentation addresses as values. Extra keyword
    arguments go to :class:`Route53Router` (``insync_timeout``, ``limiter``,
    ``sleep``, ``client``, ``on_progress``...)."""
    if alias is None:
        alias = record_type in ("A", "AAAA")
    if alias and record_type == "CNAME":
        raise ValueError("an alias record is A or AAAA here")
    client = route53_client()
    zone = client.create_hosted_zone(Name=zone_name, CallerReference=uuid.uuid4().hex)
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    check_id = None
    if health_check:
        check = client.create_health_check(CallerReference=uuid.uuid4().hex, HealthCheckConfig={
            "Type": "HTTPS", "FullyQualifiedDomainName": "old-web.example.net", "ResourcePath": "/health",
            "Port": 443, "RequestInterval": 30, "FailureThreshold": 3})
        check_id = check["HealthCheck"]["Id"]
    put(client, zone_id,
        weighted_record(record_name, record_type, old, old_weight, alias=alias,
                        target=OLD_LB if alias else _value_for(record_type, "old"), ttl=ttl,
                        evaluate=True, health_check_id=check_id),
        weighted_record(record_name, record_type, new, new_weight, alias=alias,
                        target=NEW_LB if alias else _value_for(record_type, "new"), ttl=ttl,
                        evaluate=False))
    router = Route53Router(zone_id, record_name, record_type, old, new, **router_kwargs)
    canonical = record_name.lower().rstrip(".") + "."
    return Route53Setup(router, zone_id, canonical, record_type, old, new, client)


Script = BaseException | Callable[[Callable[..., Any], dict[str, Any]], Any]


def client_error(code: str, operation: str, message: str = "Rate exceeded") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class ScriptedClient:
    """A boto3 client that records its calls and answers from a script first.

    ``script[method]`` is a list consumed one item per call: an exception is
    raised, a function ``f(real_method, kwargs)`` is called for the answer.
    ``always[method]`` answers every call once the script is used up."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.script: dict[str, list[Script]] = {}
        self.always: dict[str, Callable[[Callable[..., Any], dict[str, Any]], Any]] = {}

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def kwargs_of(self, method: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.calls if name == method]

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.real, name)
        if name.startswith("_") or not callable(real):
            return real

        def method(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            queue = self.script.get(name)
            if queue:
                item = queue.pop(0)
                if isinstance(item, BaseException):
                    raise item
                return item(real, kwargs)
            if name in self.always:
                return self.always[name](real, kwargs)
            return real(**kwargs)

        return method


def with_status(status: str) -> Callable[[Callable[..., Any], dict[str, Any]], Any]:
    """A script item: the real answer, with its ChangeInfo's Status replaced."""

    def answer(real: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        out = real(**kwargs)
        out["ChangeInfo"]["Status"] = status
        return out

    return answer


__all__ = [
    "ELB_ZONE",
    "NEW_LB",
    "OLD_LB",
    "Route53Setup",
    "ScriptedClient",
    "client_error",
    "make_route53",
    "put",
    "records_at",
    "route53_client",
    "weighted_record",
    "weights_at",
    "with_status",
]
