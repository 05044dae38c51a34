"""ALB router: two target groups of one forward action, split by weights 0-999.

An Application Load Balancer listener (its default action) or one of its rules
forwards to several target groups with integer weights; the share of a target
group is its weight over the sum. AWS takes weights 0-999, so a split is set
exactly when ``Weights.to_backend(999)`` expresses it: 1% is old 990 / new 10,
12.5% is 994 / 142, 0% is 999 / 0, 100% is 0 / 999. A split the scale cannot
express is refused before anything is written (plans are mapped onto the scale
when they are loaded). 0% on new is never "both 0": old keeps 999.

What is driven: ``listener_arn`` alone drives the listener's default action
(ModifyListener); with ``rule_arn`` the rule's actions (ModifyRule). In both,
shiftover finds THE forward action (AWS allows one routing action, the last)
and rewrites only the two weights: every other action (an authenticate step,
its ``Order``), the forward action's other fields (target-group stickiness),
other target groups of the forward action, the rule's conditions and priority
are written back as they were read (ModifyRule is not given conditions, so AWS
keeps them; it never takes a priority). The change is one API call, so there
is no intermediate split. Read-modify-write is not atomic against a person
editing the same listener at the same second; the one-writer lease keeps other
shiftover runs out, and ``verify`` reads back what AWS then serves.

What ``read`` accepts (anything else is an error, never a guess):

- The forward action's target groups are old, new, and others with weight 0.
  Another target group with a weight takes a share the two weights do not say
  (RouterError). A target group of the two that is absent gets nothing (a
  forward given as a plain ``TargetGroupArn`` to old is 0% on new); a forward to
  neither is a RouterConfigError.
- A weight missing from ``ForwardConfig.TargetGroups`` counts as 1. The ELBv2 API
  reference gives only the range (0-999) and no default; AWS itself writes 1
  into the config it returns for a forward given without weights (a single
  ``TargetGroupArn`` reads back as ``ForwardConfig`` with ``Weight: 1``), the CDK
  documents 1 as the default, and the local double does the same.
- Both weights 0 serves nothing known: RouterError. A weight outside 0-999 is
  one AWS refuses, so the listener is not what AWS would hold: RouterError
  (``apply`` may still write over it).

What we validate because the local AWS double (moto) does not: weights outside
0-999 (moto stores 1500), target groups that do not exist (moto's
ModifyListener accepts any ARN), target groups of another load balancer (an
ALB target group serves one load balancer: AWS refuses the write), of another
VPC, or of a protocol an ALB cannot forward to (TCP/UDP/TLS are a Network Load
Balancer's). A target group attached to no load balancer yet is accepted: the
first write attaches it (AWS checks it then); we check its VPC ourselves. The
target-group checks run once per router (the first read or apply above 0%): a
target group in use by a listener cannot be deleted, and cannot move to
another load balancer while attached to this one.

Rollback: ``apply(0%)`` and ``verify(0%)`` need only the listener or rule
itself: no target-group look-up, no other check than "the new target group's
weight is 0 and old's is not". ``apply(0%)`` writes even when a third target
group carries weight (new then gets nothing, which is all a rollback asks);
above 0% it refuses. A listener or rule that forwards nowhere, answering with a
fixed response (an operator's maintenance page in an emergency), is 0% on new:
``verify(0%)`` is True and ``apply(0%)`` writes nothing over it, while ``read``
still calls it an error (no split to bake on).

Writing back what was read: describe answers use the same ``Action`` shape as
the modify calls, with two exceptions handled here: a forward action read back
with both ``TargetGroupArn`` and a one-entry ``ForwardConfig`` must not keep the
``TargetGroupArn`` once the config lists two target groups (AWS refuses both),
and an ``authenticate-oidc`` action is read without its ``ClientSecret`` (AWS
never returns it), so it is written with ``UseExistingClientSecret: true``.

Extra methods for the CLI (besides the Router protocol):

- ``details() -> list[str]``: the listener or rule (priority, conditions), the
  forward action's target groups with weights and the split they make, the
  target-group stickiness, the other actions kept as they are (types and
  order only: action configs may hold secrets).
- ``warnings(*, bake=None) -> list[str]``: target-group stickiness: clients
  pinned to a target group stay there for its duration, so a step moves new
  clients only and a rollback leaves clients pinned to new there until their
  cookie expires; said louder when the duration is longer than the bake.
- ``tail_seconds() -> float``: how long after a confirmed change clients may
  still reach new. 0 without stickiness: an ALB routes each request by the
  weights it holds (no DNS cache in between); the stickiness duration with it
  (the AWSALBTG cookie pins a client to its target group that long).

Every AWS call goes through :func:`shiftover.aws.call` (throttling retried with
jittered backoff, other errors one clear line); boto3 is imported on first use.
The region is the listener ARN's own.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from shiftover.errors import RouterConfigError, RouterError, UnknownSplit
from shiftover.routers.base import backend_pair
from shiftover.spec import RouterSpecBase, Timeout, rule
from shiftover.types import Weights

_ARN = r"arn:(?P<partition>aws[a-z-]*):elasticloadbalancing:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
LISTENER_ARN = re.compile(_ARN + r"(?P<resource>listener/app/(?P<lb>[^/\s]+/[0-9a-f]+)/[0-9a-f]+)$")
RULE_ARN = re.compile(
    _ARN + r"(?P<resource>listener-rule/app/(?P<lb>[^/\s]+/[0-9a-f]+)/(?P<listener>[0-9a-f]+)/[0-9a-f]+)$")
TARGET_GROUP_ARN = re.compile(_ARN + r"(?P<resource>targetgroup/(?P<name>[^/\s]+)/[0-9a-f]+)$")
_ANY_ELB = re.compile(_ARN + r"(?P<resource>\S+)$")

_EXPECTED = {
    "listener_arn": "arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/LB-NAME/LB-ID/LISTENER-ID",
    "rule_arn": "arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener-rule/app/LB-NAME/LB-ID/LISTENER-ID/RULE-ID",
    "old": "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID",
    "new": "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID",
}
_FIND = {
    "listener_arn": "aws elbv2 describe-listeners --load-balancer-arn LB-ARN",
    "rule_arn": "aws elbv2 describe-rules --listener-arn LISTENER-ARN",
    "old": "aws elbv2 describe-target-groups --load-balancer-arn LB-ARN",
    "new": "aws elbv2 describe-target-groups --load-balancer-arn LB-ARN",
}
_PATTERN = {"listener_arn": LISTENER_ARN, "rule_arn": RULE_ARN, "old": TARGET_GROUP_ARN,
            "new": TARGET_GROUP_ARN}


def _arn_problem(field: str, value: str) -> str | None:
    """Why ``value`` is not the ARN ``field`` needs, or None."""
    if _PATTERN[field].match(value):
        return None
    what = {"listener_arn": "an ALB listener ARN", "rule_arn": "an ALB listener rule ARN",
            "old": "a target group ARN", "new": "a target group ARN"}[field]
    said = ""
    m = _ANY_ELB.match(value)
    if m:
        resource = m.group("resource")
        if re.match(r"(listener|listener-rule|loadbalancer)/(net|gwy)/", resource):
            said = " (that is a Network or Gateway Load Balancer's: weighted target groups need an Application Load Balancer)"
        else:
            said = f" (it names {resource.split('/')[0]}/...)"
    elif not value.startswith("arn:"):
        said = " (a name or id is not enough: write the full ARN)"
    return (f"{value!r} is not {what}{said}: expected {_EXPECTED[field]}; "
            f"find it with `{_FIND[field]}`")


class ALBRouterSpec(RouterSpecBase):
    """Application Load Balancer: two target groups of a listener's forward action,
    weights 0-999."""

    SCALE: ClassVar[int] = 999
    LABEL: ClassVar[str] = "ALB target-group weights 0-999"

    type: Literal["alb"]
    listener_arn: str = Field(min_length=1, description="the ALB listener (its default action unless rule_arn is set)")
    rule_arn: str | None = Field(default=None, min_length=1,
                                 description="a rule of that listener to drive instead of its default action")
    old: str = Field(min_length=1, description="target group ARN of the old environment")
    new: str = Field(min_length=1, description="target group ARN of the new environment")
    profile: str | None = Field(default=None, min_length=1, description="AWS profile (default: the usual chain)")
    timeout: Timeout = Field(default=5.0, description="per AWS API call")

    @field_validator("listener_arn", "rule_arn", "old", "new")
    @classmethod
    def _an_arn(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.strip()
        problem = _arn_problem(str(info.field_name), value)
        if problem:
            raise rule(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ALBRouterSpec:
        if self.old == self.new:
            raise rule(f"old and new are the same target group {self.new!r}: they must name the two "
                       "environments' target groups", ("new",))
        listener = LISTENER_ARN.match(self.listener_arn)
        assert listener is not None  # checked by the field validator
        where = (listener.group("partition"), listener.group("region"), listener.group("account"))
        if self.rule_arn is not None:
            r = RULE_ARN.match(self.rule_arn)
            assert r is not None
            listener_id = self.listener_arn.rsplit("/", 1)[1]
            if ((r.group("partition"), r.group("region"), r.group("account")) != where
                    or r.group("lb") != listener.group("lb") or r.group("listener") != listener_id):
                raise rule(f"rule {self.rule_arn!r} is not a rule of listener {self.listener_arn!r}: a rule's "
                           "ARN starts with its listener's (listener-rule/app/LB-NAME/LB-ID/LISTENER-ID/...); "
                           "find the listener's rules with `aws elbv2 describe-rules --listener-arn "
                           f"{self.listener_arn}`", ("rule_arn",))
        for field in ("old", "new"):
            tg = TARGET_GROUP_ARN.match(getattr(self, field))
            assert tg is not None
            if (tg.group("partition"), tg.group("region"), tg.group("account")) != where:
                raise rule(f"target group {getattr(self, field)!r} is in {tg.group('region')} / account "
                           f"{tg.group('account')}, the listener in {where[1]} / account {where[2]}: a load "
                           "balancer forwards only to target groups of its own region and account", (field,))
        return self

    def rollback_note(self) -> str | None:
        return ("an ALB applies new weights to new requests at once; with target-group "
                "stickiness on, clients pinned to the new target group stay there until their "
                "cookie expires (`shiftover validate` shows the duration)")

    def lease_target(self) -> str:
        """The lease key, known without I/O (see :meth:`ALBRouter.lease_key`)."""
        return f"alb:{self.rule_arn or self.listener_arn}"


SCALE = ALBRouterSpec.SCALE  # AWS: each target group's weight is 0..999
_WRITABLE_PROTOCOLS = ("HTTP", "HTTPS")


@dataclass(frozen=True)
class _Snapshot:
    """What the listener (default action) or the rule holds now, as described."""

    actions: list[dict[str, Any]]
    load_balancer_arn: str
    rule: dict[str, Any] | None = None  # the described rule (priority, conditions)


@dataclass(frozen=True)
class _Forward:
    """The forward action: its index in the actions and target group -> weight
    (in the order AWS lists them; a missing weight is 1)."""

    index: int
    action: dict[str, Any]
    weights: dict[str, int]
    plain: bool  # a single TargetGroupArn, no ForwardConfig
    actions: tuple[dict[str, Any], ...] = ()  # every action of the listener or rule, as read

    @property
    def stickiness(self) -> dict[str, Any] | None:
        config = self.action.get("ForwardConfig") or {}
        sticky = config.get("TargetGroupStickinessConfig")
        return dict(sticky) if isinstance(sticky, dict) else None

    @property
    def sticky_seconds(self) -> int | None:
        sticky = self.stickiness
        if not sticky or not sticky.get("Enabled"):
            return None
        return int(sticky.get("DurationSeconds") or 0)


def _short(arn: str) -> str:
    """The resource part of an ARN: listener/app/web/1a2b/3c4d."""
    return arn.split(":", 5)[5] if arn.count(":") >= 5 else arn


def _tg_name(arn: str) -> str:
    m = TARGET_GROUP_ARN.match(arn)
    return m.group("name") if m else arn


class ALBRouter:
    """Split traffic between target groups ``old`` and ``new`` of an ALB listener's
    default action or of one of its rules (see the module docstring)."""

    Spec: ClassVar[type[ALBRouterSpec]] = ALBRouterSpec
    scale = SCALE

    def __init__(self, listener_arn: str, old: str, new: str, *, rule_arn: str | None = None,
                 profile: str | None = None, timeout: float = 5.0) -> None:
        # the spec validates a plan; a router built by hand gets the same checks
        try:
            ALBRouterSpec(type="alb", listener_arn=listener_arn, rule_arn=rule_arn, old=old, new=new,
                          profile=profile, timeout=timeout)
        except ValueError as exc:
            problems = "; ".join(str(e.get("ctx", {}).get("message") or e.get("msg"))
                                 for e in getattr(exc, "errors", lambda: [])())
            raise RouterConfigError(f"ALB router: {problems or exc}",
                                    hint="fix router.listener_arn / rule_arn / old / new") from None
        self.listener_arn = listener_arn.strip()
        self.rule_arn = rule_arn.strip() if rule_arn else None
        self.old = old.strip()
        self.new = new.strip()
        self.profile = profile
        self.timeout = timeout
        m = LISTENER_ARN.match(self.listener_arn)
        assert m is not None
        self.region = m.group("region")
        # arn:...:listener/app/NAME/LB-ID/LISTENER-ID -> arn:...:loadbalancer/app/NAME/LB-ID
        self.load_balancer_arn = (self.listener_arn.split(":listener/", 1)[0] + ":loadbalancer/app/"
                                  + m.group("lb"))
        self._client: Any = None
        self._targets_checked = False

    @classmethod
    def from_spec(cls, spec: ALBRouterSpec) -> ALBRouter:
        return cls(spec.listener_arn, spec.old, spec.new, rule_arn=spec.rule_arn,
                   profile=spec.profile, timeout=spec.timeout)

    # --- naming ----------------------------------------------------------------

    @property
    def target(self) -> str:
        """What is driven, in words: the listener's default action or the rule."""
        if self.rule_arn:
            return f"ALB rule {_short(self.rule_arn)}"
        return f"ALB listener {_short(self.listener_arn)} (default action)"

    def describe(self) -> str:
        tgs = f"tg {_tg_name(self.old)} / {_tg_name(self.new)}"
        if self.rule_arn:
            return f"alb {_short(self.rule_arn)}: {tgs}"
        return f"alb {_short(self.listener_arn)} default action: {tgs}"

    def lease_key(self) -> str:
        """``alb:<rule ARN>`` when a rule is driven, else ``alb:<listener ARN>``: ARNs
        are AWS's canonical names (a rule and the default action of one listener
        route different requests, so they are different targets)."""
        return f"alb:{self.rule_arn or self.listener_arn}"

    # --- AWS calls ---------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The boto3 ELBv2 client (built on first use, in the listener's region)."""
        if self._client is None:
            from shiftover.aws import client

            self._client = client("elbv2", region=self.region, profile=self.profile,
                                  timeout=self.timeout, error=RouterError)
        return self._client

    def _call(self, operation: str, *, missing: tuple[str, ...] = (), **kwargs: Any) -> Any:
        """``operation(**kwargs)`` through :func:`shiftover.aws.call`; None when AWS
        answers with one of the ``missing`` error codes (a not-found)."""
        from shiftover.aws import call, error_code

        method = getattr(self.client, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())

        def once(**kw: Any) -> Any:
            import botocore.exceptions

            try:
                return method(**kw)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) in missing:
                    return None
                raise

        return call(once, f"ELBv2 {operation} for {self.target}", error=RouterError, **kwargs)

    def _snapshot(self) -> _Snapshot:
        if self.rule_arn is None:
            answer = self._call("DescribeListeners", missing=("ListenerNotFound",),
                                ListenerArns=[self.listener_arn])
            listeners = (answer or {}).get("Listeners") or []
            if not listeners:
                raise RouterConfigError(
                    f"ALB listener {self.listener_arn} does not exist (region {self.region})",
                    hint="list the load balancer's listeners and fix router.listener_arn: "
                    f"aws elbv2 describe-listeners --load-balancer-arn {self.load_balancer_arn} "
                    f"--region {self.region}")
            listener = listeners[0]
            return _Snapshot(list(listener.get("DefaultActions") or []),
                             str(listener.get("LoadBalancerArn") or self.load_balancer_arn))
        answer = self._call("DescribeRules", missing=("RuleNotFound", "ListenerNotFound"),
                            RuleArns=[self.rule_arn])
        rules = (answer or {}).get("Rules") or []
        if not rules:
            raise RouterConfigError(
                f"ALB rule {self.rule_arn} does not exist (region {self.region})",
                hint="list the listener's rules and fix router.rule_arn: aws elbv2 describe-rules "
                f"--listener-arn {self.listener_arn} --region {self.region}")
        found = rules[0]
        if found.get("IsDefault"):
            raise RouterConfigError(
                f"ALB rule {self.rule_arn} is the listener's default rule: shiftover drives it as the "
                "listener's default action",
                hint="remove router.rule_arn from the plan (keep listener_arn)")
        return _Snapshot(list(found.get("Actions") or []), self.load_balancer_arn, found)

    def _forward(self, snap: _Snapshot) -> _Forward:
        forwards = [i for i, a in enumerate(snap.actions) if a.get("Type") == "forward"]
        if not forwards:
            kinds = ", ".join(str(a.get("Type")) for a in snap.actions) or "none"
            raise RouterConfigError(
                f"{self.target} has no forward action (its actions: {kinds}): shiftover splits the "
                "target-group weights of a forward action",
                hint="make its last action forward to both target groups, e.g. "
                + self._fix_command(SCALE, 0, snap.actions))
        if len(forwards) > 1:
            raise RouterConfigError(
                f"{self.target} has {len(forwards)} forward actions: AWS allows one, and which one "
                "routes the traffic is not known",
                hint="keep one forward action listing both target groups")
        index = forwards[0]
        action = snap.actions[index]
        config = action.get("ForwardConfig") or {}
        tuples = config.get("TargetGroups") or []
        if tuples:
            weights: dict[str, int] = {}
            for t in tuples:
                weight = t.get("Weight")
                weights[str(t.get("TargetGroupArn"))] = 1 if weight is None else int(weight)
            return _Forward(index, action, weights, plain=False, actions=tuple(snap.actions))
        if action.get("TargetGroupArn"):
            return _Forward(index, action, {str(action["TargetGroupArn"]): 1}, plain=True,
                            actions=tuple(snap.actions))
        raise RouterConfigError(f"{self.target}: its forward action names no target group",
                                hint="forward to both target groups, e.g. "
                                + self._fix_command(SCALE, 0, snap.actions))

    def _split(self, fwd: _Forward) -> tuple[int, int]:
        """(old, new) weights when they alone decide the split; errors otherwise."""
        if self.old not in fwd.weights and self.new not in fwd.weights:
            listed = ", ".join(_tg_name(a) for a in fwd.weights)
            raise RouterConfigError(
                f"{self.target} forwards to {listed}, not to {_tg_name(self.old)} (old) or "
                f"{_tg_name(self.new)} (new)",
                hint="fix router.old / router.new, or forward to both target groups: "
                + self._fix_command(SCALE, 0, fwd.actions))
        for arn, weight in fwd.weights.items():
            if not 0 <= weight <= SCALE:
                raise UnknownSplit(
                    f"{self.target}: target group {_tg_name(arn)} has weight {weight}, outside ALB's "
                    f"0-{SCALE} (AWS refuses it; the local AWS double stores it): the split is not known",
                    hint="set valid weights, e.g. 0% on new: " + self._fix_command(SCALE, 0, fwd.actions))
        others = [(a, w) for a, w in fwd.weights.items() if a not in (self.old, self.new) and w > 0]
        if others:
            listed = ", ".join(f"{_tg_name(a)} (weight {w})" for a, w in others)
            raise UnknownSplit(
                f"{self.target} also forwards to {listed}: shiftover splits traffic only between "
                f"{_tg_name(self.old)} and {_tg_name(self.new)}, so the split is not what the two weights say",
                hint="set that target group's weight to 0 in the forward action (or remove it), e.g. "
                + self._fix_command(SCALE, 0, fwd.actions))
        old, new = fwd.weights.get(self.old, 0), fwd.weights.get(self.new, 0)
        if old == 0 and new == 0:
            raise UnknownSplit(
                f"{self.target} has weight 0 on both {_tg_name(self.old)} and {_tg_name(self.new)}: "
                "the split is not known",
                hint="set a weight, e.g. 0% on new: " + self._fix_command(SCALE, 0, fwd.actions))
        return old, new

    def _check_targets(self, load_balancer_arn: str) -> None:
        """Both target groups exist, can serve an ALB, and belong to this load
        balancer (or to none yet, in its VPC). Once per router: see the docstring."""
        if self._targets_checked:
            return
        vpc: str | None = None
        for role, arn in (("old", self.old), ("new", self.new)):
            answer = self._call("DescribeTargetGroups", missing=("TargetGroupNotFound",),
                                TargetGroupArns=[arn])
            groups = (answer or {}).get("TargetGroups") or []
            if not groups:
                raise RouterConfigError(
                    f"target group {arn} (router.{role}) does not exist (region {self.region})",
                    hint="list the load balancer's target groups and fix router." + role + ": "
                    f"aws elbv2 describe-target-groups --load-balancer-arn {load_balancer_arn} "
                    f"--region {self.region}")
            tg = groups[0]
            name = tg.get("TargetGroupName") or _tg_name(arn)
            lambda_target = tg.get("TargetType") == "lambda"
            if not lambda_target and tg.get("Protocol") not in _WRITABLE_PROTOCOLS:
                raise RouterConfigError(
                    f"target group {name} (router.{role}) uses protocol {tg.get('Protocol')}: an "
                    "Application Load Balancer forwards only to HTTP or HTTPS target groups (or lambda)",
                    hint=f"set router.{role} to an HTTP(S) target group of {_short(load_balancer_arn)}")
            attached = list(dict.fromkeys(tg.get("LoadBalancerArns") or []))
            if attached and load_balancer_arn not in attached:
                others = ", ".join(_short(a) for a in attached)
                raise RouterConfigError(
                    f"target group {name} (router.{role}) belongs to load balancer {others}, not to "
                    f"{_short(load_balancer_arn)} of {self.target}: an ALB target group serves one "
                    "load balancer",
                    hint=f"set router.{role} to a target group of this load balancer: aws elbv2 "
                    f"describe-target-groups --load-balancer-arn {load_balancer_arn} --region {self.region}")
            if not attached and not lambda_target and tg.get("VpcId"):
                if vpc is None:
                    vpc = self._load_balancer_vpc(load_balancer_arn)
                if vpc and tg["VpcId"] != vpc:
                    raise RouterConfigError(
                        f"target group {name} (router.{role}) is in {tg['VpcId']}, load balancer "
                        f"{_short(load_balancer_arn)} in {vpc}: a load balancer forwards only to "
                        "target groups of its VPC",
                        hint=f"create the target group in {vpc}, or set router.{role} to one there")
        self._targets_checked = True

    def _load_balancer_vpc(self, load_balancer_arn: str) -> str | None:
        answer = self._call("DescribeLoadBalancers", missing=("LoadBalancerNotFound",),
                            LoadBalancerArns=[load_balancer_arn])
        found = (answer or {}).get("LoadBalancers") or []
        return str(found[0].get("VpcId")) if found and found[0].get("VpcId") else None

    def _fix_command(self, old: int, new: int, actions: Sequence[dict[str, Any]] = ()) -> str:
        """How to make the forward action old/new by hand, for a hint an operator may
        paste in an emergency. A command that writes the actions replaces them all: with
        another action beside the forward one (an authenticate step, a fixed response)
        it would drop it, an authentication step included, so the hint then edits what
        describe returns instead of writing a command of ours (and prints no action
        config: configs may hold secrets). A lone forward action keeps its order and
        target-group stickiness."""
        region = f"--region {self.region}"
        if self.rule_arn:
            describe = (f"aws elbv2 describe-rules --rule-arns {self.rule_arn} "
                        f"--query 'Rules[0].Actions' {region} > actions.json")
            modify = f"aws elbv2 modify-rule --rule-arn {self.rule_arn} --actions"
        else:
            describe = (f"aws elbv2 describe-listeners --listener-arns {self.listener_arn} "
                        f"--query 'Listeners[0].DefaultActions' {region} > actions.json")
            modify = f"aws elbv2 modify-listener --listener-arn {self.listener_arn} --default-actions"
        others = [a for a in actions if a.get("Type") != "forward"]
        if others:
            kinds = ", ".join(str(a.get("Type")) for a in others)
            return (f"keep the other actions ({kinds}): {describe}; in actions.json make the forward "
                    f"action's ForwardConfig.TargetGroups {self.old} (old) weight {old} and "
                    f"{self.new} (new) weight {new} (add a forward action if there is "
                    "none, drop a TargetGroupArn beside ForwardConfig, and give an "
                    "authenticate-oidc action \"UseExistingClientSecret\": true); then "
                    f"{modify} file://actions.json {region}")
        forward: dict[str, Any] = {"Type": "forward"}
        config: dict[str, Any] = {"TargetGroups": [
            {"TargetGroupArn": self.old, "Weight": old}, {"TargetGroupArn": self.new, "Weight": new}]}
        for a in actions:  # the one forward action as read: its order and stickiness stay
            if "Order" in a:
                forward["Order"] = a["Order"]
            sticky = (a.get("ForwardConfig") or {}).get("TargetGroupStickinessConfig")
            if isinstance(sticky, dict):
                config["TargetGroupStickinessConfig"] = sticky
        forward["ForwardConfig"] = config
        written = json.dumps([forward], separators=(",", ":"))
        return f"{modify} {shlex.quote(written)} {region}"

    # --- the Router protocol --------------------------------------------------

    def read(self) -> Weights:
        snap = self._snapshot()
        fwd = self._forward(snap)
        self._check_targets(snap.load_balancer_arn)
        old, new = self._split(fwd)
        weights = Weights.from_backend(old, new)
        assert weights is not None  # both 0 refused by _split
        return weights

    def apply(self, weights: Weights) -> None:
        old, new = backend_pair(self, weights, SCALE, self.target)
        snap = self._snapshot()
        if new == 0 and _answers_itself(snap):
            return  # forwards nowhere: someone's maintenance page, not ours to undo
        fwd = self._forward(snap)
        if new > 0:
            self._check_targets(snap.load_balancer_arn)
        try:
            if Weights.from_backend(*self._split(fwd)) == weights:
                return  # already exactly there: no write
        except UnknownSplit:
            # a state read refuses (both 0, a weight out of range, a third target
            # group with weight): writing fixes the first two; with a third target
            # group taking traffic only a move to 0% is safe (new then gets nothing)
            if new > 0 and any(w > 0 for a, w in fwd.weights.items() if a not in (self.old, self.new)):
                raise
        actions = self._actions_with(snap, fwd, old, new)
        if self.rule_arn is None:
            self._call("ModifyListener", ListenerArn=self.listener_arn, DefaultActions=actions)
        else:
            self._call("ModifyRule", RuleArn=self.rule_arn, Actions=actions)

    def verify(self, weights: Weights) -> bool:
        """True when the listener or rule holds exactly ``weights`` (read back with
        describe). 0% needs only new's weight 0 (or new absent) and old's above 0, or
        no forward action at all, the load balancer answering by itself (a fixed
        response: an operator's maintenance page sends nothing to new)."""
        if weights.new_percent == 0:
            snap = self._snapshot()
            if _answers_itself(snap):
                return True
            fwd = self._forward(snap)
            return fwd.weights.get(self.new, 0) == 0 and fwd.weights.get(self.old, 0) > 0
        return self.read() == weights

    def _actions_with(self, snap: _Snapshot, fwd: _Forward, old: int, new: int) -> list[dict[str, Any]]:
        """Every action as read, made writable, with only the two weights changed."""
        actions = [_writable(a) for a in copy.deepcopy(snap.actions)]
        action = actions[fwd.index]
        action.pop("TargetGroupArn", None)  # AWS refuses it beside a two-group ForwardConfig
        target = {self.old: old, self.new: new}
        groups = [{"TargetGroupArn": arn, "Weight": target.get(arn, weight)}
                  for arn, weight in fwd.weights.items()]
        groups += [{"TargetGroupArn": arn, "Weight": w} for arn, w in target.items() if arn not in fwd.weights]
        config = dict(action.get("ForwardConfig") or {})
        config["TargetGroups"] = groups
        action["ForwardConfig"] = config
        return actions

    # --- for the CLI ------------------------------------------------------------

    def details(self) -> list[str]:
        """What plan/validate show about the target (no action configs: they may hold
        secrets)."""
        snap = self._snapshot()
        lines: list[str] = []
        if snap.rule is None:
            lines.append(f"listener {_short(self.listener_arn)} of load balancer "
                         f"{_short(snap.load_balancer_arn)}: its default action")
        else:
            conditions = "; ".join(_condition(c) for c in snap.rule.get("Conditions") or []) or "none"
            lines.append(f"rule {_short(self.rule_arn or '')} of listener {_short(self.listener_arn)}: "
                         f"priority {snap.rule.get('Priority')}, conditions: {conditions}")
        fwd = self._forward(snap)
        roles = {self.old: " (old)", self.new: " (new)"}
        groups = [f"{_tg_name(a)}{roles.get(a, '')} weight {w}" for a, w in fwd.weights.items()]
        groups += [f"{_tg_name(a)}{roles[a]} not listed (weight 0)" for a in (self.old, self.new)
                   if a not in fwd.weights]
        order = f" (order {fwd.action['Order']})" if "Order" in fwd.action else ""
        try:
            split = f": {Weights.from_backend(*self._split(fwd))} on new"
        except RouterError as exc:
            split = f": split not known ({exc.message})"
        lines.append(f"forward action{order}: " + ", ".join(groups) + split)
        seconds = fwd.sticky_seconds
        lines.append("target-group stickiness: " + (f"on, {seconds} s" if seconds is not None else "off"))
        others = [f"{a.get('Type')}" + (f" (order {a['Order']})" if "Order" in a else "")
                  for i, a in enumerate(snap.actions) if i != fwd.index]
        if others:
            lines.append("other actions, kept as they are: " + ", ".join(others))
        return lines

    def warnings(self, *, bake: float | None = None) -> list[str]:
        """What an operator should know before a run: today, target-group stickiness
        (``bake``: the plan's shortest bake, in seconds, when known)."""
        seconds = self._forward(self._snapshot()).sticky_seconds
        if seconds is None:
            return []
        out = [f"{self.target} has target-group stickiness on for {seconds} s: a client stays on the "
               f"target group it first got for up to {seconds} s, so a step moves new clients only, and a "
               f"rollback to 0% leaves clients already pinned to {_tg_name(self.new)} there until their "
               f"stickiness cookie expires (up to {seconds} s after the rollback is confirmed)"]
        if bake is not None and seconds > bake:
            out.append(f"{self.target}: the stickiness duration ({seconds} s) is longer than the bake "
                       f"({bake:g} s): each step is judged mostly on clients pinned before it; lower "
                       "DurationSeconds or lengthen the bake")
        return out

    def tail_seconds(self) -> float:
        """Seconds after a confirmed change during which clients may still reach the
        target group they had: the stickiness duration, or 0 without stickiness."""
        seconds = self._forward(self._snapshot()).sticky_seconds
        return float(seconds or 0)


def _answers_itself(snap: _Snapshot) -> bool:
    """The listener or rule ends in a fixed response: no request is forwarded to any
    target group (a redirect is not that: it may lead anywhere, new included)."""
    routing = [a for a in snap.actions if a.get("Type") in ("forward", "redirect", "fixed-response")]
    return bool(routing) and all(a.get("Type") == "fixed-response" for a in routing)


def _writable(action: dict[str, Any]) -> dict[str, Any]:
    """An action as described, made acceptable to ModifyListener / ModifyRule."""
    oidc = action.get("AuthenticateOidcConfig")
    if isinstance(oidc, dict) and "ClientSecret" not in oidc:
        oidc["UseExistingClientSecret"] = True  # AWS never returns the secret
    return action


def _condition(condition: dict[str, Any]) -> str:
    """'path-pattern /api/*' from a described rule condition."""
    field = str(condition.get("Field"))
    values: list[str] = [str(v) for v in condition.get("Values") or []]
    for key, config in condition.items():
        if key.endswith("Config") and isinstance(config, dict):
            if config.get("HttpHeaderName"):
                field = f"{field} {config['HttpHeaderName']}"
            for v in config.get("Values") or []:
                text = (f"{v.get('Key') or ''}={v.get('Value')}" if isinstance(v, dict) else str(v))
                if text not in values:
                    values.append(text)
    return f"{field} {', '.join(values)}".strip()


__all__ = ["SCALE", "ALBRouter", "ALBRouterSpec"]
