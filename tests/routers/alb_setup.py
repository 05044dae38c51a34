"""An Application Load Balancer in the local AWS double (moto), ready for an ALBRouter.

``make_alb()`` needs boto3 pointed at moto (the ``aws`` fixture of tests/conftest.py
does that) and creates: a VPC with two subnets, a load balancer ``web``, two HTTP
target groups (old ``web-ec2``, new ``web-eks``) and an HTTP listener on port 80 whose default
action forwards to both with weights old 1 / new 0 (0% on new) and target-group
stickiness on. With ``rule=True`` the listener also gets a rule (priority 10,
path-pattern and host-header conditions) forwarding to both the same way, and
the router drives that rule; the default action then forwards to old alone.

From tests outside tests/routers: ``from routers.alb_setup import make_alb``
(tests/ is on sys.path through its conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3

from shiftover.routers.alb import ALBRouter

STICKY_SECONDS = 3600
RULE_PRIORITY = 10
RULE_CONDITIONS: list[dict[str, Any]] = [
    {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}},
    {"Field": "host-header", "HostHeaderConfig": {"Values": ["shop.example.com"]}},
]


@dataclass
class ALBSetup:
    """What make_alb created; ``client`` is a boto3 ELBv2 client on the same moto."""

    router: ALBRouter
    client: Any
    vpc_id: str
    subnet_ids: list[str]
    load_balancer_arn: str
    listener_arn: str
    old_arn: str
    new_arn: str
    rule_arn: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # other target groups by name

    def spec(self) -> dict[str, Any]:
        """The router's plan entry (``router:`` in a plan file)."""
        out: dict[str, Any] = {"type": "alb", "listener_arn": self.listener_arn,
                               "old": self.old_arn, "new": self.new_arn}
        if self.rule_arn:
            out["rule_arn"] = self.rule_arn
        return out

    def actions(self) -> list[dict[str, Any]]:
        """The driven actions as moto holds them (not through the router)."""
        if self.rule_arn:
            return list(self.client.describe_rules(RuleArns=[self.rule_arn])["Rules"][0]["Actions"])
        return list(self.client.describe_listeners(
            ListenerArns=[self.listener_arn])["Listeners"][0]["DefaultActions"])

    def described(self) -> dict[str, Any]:
        """The whole described rule, or listener, as moto holds it."""
        if self.rule_arn:
            return dict(self.client.describe_rules(RuleArns=[self.rule_arn])["Rules"][0])
        return dict(self.client.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"][0])

    def set_actions(self, actions: list[dict[str, Any]]) -> None:
        """Write the driven actions directly (to put moto in a given state)."""
        if self.rule_arn:
            self.client.modify_rule(RuleArn=self.rule_arn, Actions=actions)
        else:
            self.client.modify_listener(ListenerArn=self.listener_arn, DefaultActions=actions)

    def weights(self) -> dict[str, int]:
        """Target group ARN -> weight of the driven forward action, read from moto."""
        for action in self.actions():
            if action["Type"] == "forward":
                groups = action.get("ForwardConfig", {}).get("TargetGroups")
                if groups:
                    return {g["TargetGroupArn"]: g.get("Weight", 1) for g in groups}
                return {action["TargetGroupArn"]: 1}
        return {}

    def set_weights(self, weights: dict[str, int], *, sticky_seconds: int | None = STICKY_SECONDS) -> None:
        """Replace the driven actions by one forward action with these weights."""
        self.set_actions([forward(weights, sticky_seconds=sticky_seconds)])


def forward(weights: dict[str, int], *, sticky_seconds: int | None = STICKY_SECONDS,
            order: int | None = None) -> dict[str, Any]:
    """A forward action with these weights (and stickiness unless None)."""
    config: dict[str, Any] = {"TargetGroups": [{"TargetGroupArn": a, "Weight": w} for a, w in weights.items()]}
    config["TargetGroupStickinessConfig"] = (
        {"Enabled": True, "DurationSeconds": sticky_seconds} if sticky_seconds else {"Enabled": False})
    action: dict[str, Any] = {"Type": "forward", "ForwardConfig": config}
    if order is not None:
        action["Order"] = order
    return action


def make_alb(*, rule: bool = False, name: str = "web", old_name: str | None = None,
             new_name: str | None = None,
             extra_target_groups: tuple[str, ...] = (), sticky_seconds: int | None = STICKY_SECONDS,
             old_weight: int = 1, new_weight: int = 0, cidr: str = "10.0.0.0/16",
             timeout: float = 5.0) -> ALBSetup:
    """A load balancer in moto with a listener (and a rule) forwarding to two target
    groups at 0% on new; see the module docstring. Call it again with another
    ``name`` (and ``cidr``) for a second load balancer."""
    ec2 = boto3.client("ec2")
    elb = boto3.client("elbv2")
    vpc_id = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    prefix = cidr.split(".")[:2]
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=".".join([*prefix, str(i), "0/24"]),
                          AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for i, zone in ((1, "us-east-1a"), (2, "us-east-1b"))
    ]
    lb_arn = elb.create_load_balancer(Name=name, Subnets=subnets, Type="application",
                                      Scheme="internal")["LoadBalancers"][0]["LoadBalancerArn"]

    def target_group(tg_name: str) -> str:
        arn: str = elb.create_target_group(Name=tg_name, Protocol="HTTP", Port=80, VpcId=vpc_id,
                                           TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
        return arn

    old_arn = target_group(old_name or f"{name}-ec2")
    new_arn = target_group(new_name or f"{name}-eks")
    extra = {n: target_group(n) for n in extra_target_groups}
    split = forward({old_arn: old_weight, new_arn: new_weight}, sticky_seconds=sticky_seconds)
    default = forward({old_arn: 1}, sticky_seconds=None) if rule else split
    listener_arn = elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80,
                                       DefaultActions=[default])["Listeners"][0]["ListenerArn"]
    rule_arn: str | None = None
    if rule:
        rule_arn = elb.create_rule(ListenerArn=listener_arn, Priority=RULE_PRIORITY,
                                   Conditions=RULE_CONDITIONS, Actions=[split])["Rules"][0]["RuleArn"]
    router = ALBRouter(listener_arn, old_arn, new_arn, rule_arn=rule_arn, timeout=timeout)
    return ALBSetup(router=router, client=elb, vpc_id=vpc_id, subnet_ids=subnets,
                    load_balancer_arn=lb_arn, listener_arn=listener_arn, old_arn=old_arn,
                    new_arn=new_arn, rule_arn=rule_arn, extra=extra)


__all__ = ["RULE_CONDITIONS", "RULE_PRIORITY", "STICKY_SECONDS", "ALBSetup", "forward", "make_alb"]
