"""ALBRouter against the local AWS double (moto server over real HTTP through boto3):
exact weights 0-999 on a listener's default action and on a rule, everything else
preserved, no needless writes, and a clear error for each target that is not what
the plan says (including what moto accepts and AWS refuses)."""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import boto3
import pytest
from alb_setup import RULE_CONDITIONS, RULE_PRIORITY, STICKY_SECONDS, ALBSetup, forward, make_alb

from shiftover.demo.haproxy import free_port
from shiftover.errors import PlanError, RouterConfigError, RouterError, UnknownSplit
from shiftover.plan import parse_plan_text
from shiftover.routers import ROUTERS, Router, build_router
from shiftover.routers.alb import SCALE, ALBRouter, ALBRouterSpec, _Snapshot
from shiftover.types import Weights

PERCENTS = [0, 1, 2, 5, 10, 12.5, 25, 50, 75, 99, 100]
LISTENER = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/0123456789abcdef/fedcba9876543210"
RULE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/0123456789abcdef/fedcba9876543210/00112233aabbccdd"
OLD = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/ec2/0123456789abcdef"
NEW = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/eks/fedcba9876543210"


@pytest.fixture(params=["default action", "rule"])
def alb(request: pytest.FixtureRequest, aws: Any) -> ALBSetup:
    return make_alb(rule=request.param == "rule")


@pytest.fixture
def listener(aws: Any) -> ALBSetup:
    return make_alb()


class Calls:
    """Every ELBv2 operation the router's client sends, with its parameters."""

    def __init__(self, router: ALBRouter) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        router.client.meta.events.register("before-parameter-build", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.seen.append((model.name, copy.deepcopy(params)))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def writes(self) -> list[tuple[str, dict[str, Any]]]:
        return [(n, p) for n, p in self.seen if n.startswith("Modify")]


def without_weights(described: Any, *arns: str) -> Any:
    """Describe output (any nesting) with the forward weights of ``arns`` blanked."""
    if isinstance(described, list):
        return [without_weights(v, *arns) for v in described]
    if not isinstance(described, dict):
        return described
    out = {k: without_weights(v, *arns) for k, v in described.items()}
    if out.get("TargetGroupArn") in arns and "Weight" in out:
        out["Weight"] = None
    return out


# --- the plan model ------------------------------------------------------------


PLAN = """\
service: shop
router:
  type: alb
  listener_arn: {listener}
  old: {old}
  new: {new}
steps: [1, 12.5, 50, 100]
bake: 1m
normal_state:
  - name: health
    type: http
    url: http://127.0.0.1:8081/health
"""


def test_spec_in_the_registry_and_the_plan() -> None:
    assert ROUTERS["alb"] == "shiftover.routers.alb:ALBRouter"
    assert ALBRouter.Spec is ALBRouterSpec
    assert (ALBRouterSpec.SCALE, ALBRouterSpec.LABEL) == (999, "ALB target-group weights 0-999")
    plan = parse_plan_text(PLAN.format(listener=LISTENER, old=OLD, new=NEW), filename="p.yaml").plan
    assert isinstance(plan.router, ALBRouterSpec)
    assert plan.router.lease_target() == f"alb:{LISTENER}"
    router = build_router(plan.router)
    assert isinstance(router, ALBRouter) and isinstance(router, Router)
    assert router.lease_key() == f"alb:{LISTENER}"
    assert router.region == "us-east-1"
    assert router.load_balancer_arn == "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef"
    assert router.describe() == "alb listener/app/web/0123456789abcdef/fedcba9876543210 default action: tg ec2 / eks"


@pytest.mark.parametrize(("listener", "new", "field", "expected"), [
    ("web", NEW, "router.listener_arn", "'web' is not an ALB listener ARN (a name or id is not enough"),
    (LISTENER.replace(":listener/", ":loadbalancer/").rsplit("/", 1)[0], NEW, "router.listener_arn",
     "is not an ALB listener ARN (it names loadbalancer/...)"),
    (LISTENER.replace("/app/", "/net/"), NEW, "router.listener_arn", "Network or Gateway Load Balancer"),
    (LISTENER, "eks", "router.new", "'eks' is not a target group ARN"),
    (LISTENER, OLD, "router.new", "old and new are the same target group"),
    (LISTENER, NEW.replace("us-east-1", "eu-west-1"), "router.new",
     "a load balancer forwards only to target groups of its own region and account"),
    (LISTENER, NEW.replace("123456789012", "210987654321"), "router.new", "account 210987654321"),
])
def test_plan_refuses_what_cannot_be_an_alb_target(listener: str, new: str, field: str, expected: str) -> None:
    with pytest.raises(PlanError) as e:
        parse_plan_text(PLAN.format(listener=listener, old=OLD, new=new), filename="p.yaml")
    assert expected in str(e.value)
    assert f"(field: {field})" in str(e.value)


def test_plan_refuses_a_rule_of_another_listener() -> None:
    other = RULE.replace("/fedcba9876543210/", "/aaaaaaaaaaaaaaaa/")
    text = PLAN.format(listener=LISTENER, old=OLD, new=NEW).replace(
        "  old:", f"  rule_arn: {other}\n  old:")
    with pytest.raises(PlanError, match=r"p\.yaml:5:.* is not a rule of listener .*describe-rules --listener-arn"):
        parse_plan_text(text, filename="p.yaml")
    ok = parse_plan_text(text.replace(other, RULE)).plan.router
    assert isinstance(ok, ALBRouterSpec) and ok.lease_target() == f"alb:{RULE}"


def test_a_router_built_by_hand_gets_the_same_checks() -> None:
    with pytest.raises(RouterConfigError, match="old and new are the same target group"):
        ALBRouter(LISTENER, OLD, OLD)
    with pytest.raises(RouterConfigError, match="is not a target group ARN"):
        ALBRouter(LISTENER, OLD, "eks")
    r = ALBRouter(LISTENER, OLD, NEW, rule_arn=RULE)
    assert r.lease_key() == f"alb:{RULE}"
    assert r.describe() == ("alb listener-rule/app/web/0123456789abcdef/fedcba9876543210/00112233aabbccdd: "
                            "tg ec2 / eks")


# --- weights ----------------------------------------------------------------------


def test_starts_at_zero(alb: ALBSetup) -> None:
    assert alb.router.read() == Weights(0)
    assert alb.router.verify(Weights(0)) is True
    assert alb.router.verify(Weights(50)) is False


@pytest.mark.parametrize("percent", PERCENTS)
def test_every_percent_round_trips_exactly(alb: ALBSetup, percent: float) -> None:
    alb.router.apply(Weights(percent))
    held = alb.weights()  # what AWS holds
    assert Weights.from_backend(held[alb.old_arn], held[alb.new_arn]) == Weights(percent)
    if percent != 0:  # 0% is already there (old 1 / new 0): nothing written
        assert held == dict(zip((alb.old_arn, alb.new_arn), Weights(percent).to_backend(SCALE), strict=True))
    assert alb.router.read() == Weights(percent)
    assert alb.router.verify(Weights(percent)) is True
    assert alb.router.verify(Weights(50 if percent != 50 else 10)) is False


def test_the_integers_written(listener: ALBSetup) -> None:
    expected = {1: (990, 10), 12.5: (994, 142), 50: (999, 999), 100: (0, 999), 0: (999, 0)}
    for percent, (old, new) in expected.items():
        listener.router.apply(Weights(percent))
        assert listener.weights() == {listener.old_arn: old, listener.new_arn: new}


def test_walk_up_and_roll_back(alb: ALBSetup) -> None:
    for p in [*PERCENTS, *reversed(PERCENTS)]:
        alb.router.apply(Weights(p))
        assert alb.router.read() == Weights(p)


def test_a_split_set_by_hand_reads_exactly(listener: ALBSetup) -> None:
    listener.set_weights({listener.old_arn: 247, listener.new_arn: 5})
    assert listener.router.read() == Weights(Fraction(500, 252))
    assert listener.router.verify(Weights(Fraction(500, 252))) is True


def test_a_split_the_scale_cannot_express_is_refused_before_any_call(listener: ALBSetup) -> None:
    calls = Calls(listener.router)
    for w in (Weights("0.05"), Weights(Fraction(100, 1001))):
        with pytest.raises(RouterError, match=r"cannot be set exactly with integer weights 0-999") as e:
            listener.router.apply(w)
        assert "0-999" in str(e.value.hint)
    assert calls.names == []
    assert listener.weights() == {listener.old_arn: 1, listener.new_arn: 0}


# --- preserved, and no needless writes --------------------------------------------


def test_no_write_when_already_there(alb: ALBSetup) -> None:
    calls = Calls(alb.router)
    alb.router.apply(Weights(0))  # old 1 / new 0 is already 0%
    assert calls.writes() == []
    alb.router.apply(Weights(5))
    alb.router.apply(Weights(5))
    assert [n for n, _ in calls.writes()] == ["ModifyRule" if alb.rule_arn else "ModifyListener"]
    alb.set_weights({alb.old_arn: 2, alb.new_arn: 2})  # 50% in other integers
    before = len(calls.writes())
    alb.router.apply(Weights(50))
    assert len(calls.writes()) == before
    assert alb.weights() == {alb.old_arn: 2, alb.new_arn: 2}


def test_api_calls_per_step(alb: ALBSetup) -> None:
    alb.router.read()  # checks the target groups once
    calls = Calls(alb.router)
    alb.router.apply(Weights(10))
    assert alb.router.verify(Weights(10)) is True
    describe = "DescribeRules" if alb.rule_arn else "DescribeListeners"
    modify = "ModifyRule" if alb.rule_arn else "ModifyListener"
    assert calls.names == [describe, modify, describe]


def test_rollback_needs_only_the_listener_or_rule(alb: ALBSetup) -> None:
    alb.router.apply(Weights(50))
    fresh = ALBRouter(alb.listener_arn, alb.old_arn, alb.new_arn, rule_arn=alb.rule_arn)
    calls = Calls(fresh)
    fresh.apply(Weights(0))
    assert fresh.verify(Weights(0)) is True
    assert "DescribeTargetGroups" not in calls.names
    assert alb.weights() == {alb.old_arn: 999, alb.new_arn: 0}


def test_stickiness_other_actions_and_target_groups_preserved_on_the_default_action(aws: Any) -> None:
    setup = make_alb(extra_target_groups=("spare",))
    spare = setup.extra["spare"]
    oidc = {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": {
        "Issuer": "https://idp.example.com", "AuthorizationEndpoint": "https://idp.example.com/auth",
        "TokenEndpoint": "https://idp.example.com/token", "UserInfoEndpoint": "https://idp.example.com/me",
        "ClientId": "shop", "ClientSecret": "s3cr3t", "OnUnauthenticatedRequest": "authenticate"}}
    setup.set_actions([oidc, forward({setup.old_arn: 1, spare: 0, setup.new_arn: 0},
                                     sticky_seconds=900, order=2)])
    before = setup.described()
    for p in (1, 50, 100, 0):
        setup.router.apply(Weights(p))
        after = setup.described()
        assert without_weights(after, setup.old_arn, setup.new_arn) == \
            without_weights(before, setup.old_arn, setup.new_arn)
        assert setup.router.read() == Weights(p)
    assert setup.weights() == {setup.old_arn: 999, spare: 0, setup.new_arn: 0}
    assert setup.router.tail_seconds() == 900.0
    details = setup.router.details()
    assert "forward action (order 2): web-ec2 (old) weight 999, spare weight 0, web-eks (new) weight 0: 0% on new" in details
    assert "target-group stickiness: on, 900 s" in details
    assert "other actions, kept as they are: authenticate-oidc (order 1)" in details
    assert "s3cr3t" not in "\n".join(details)


def test_conditions_priority_and_the_other_rules_preserved(aws: Any) -> None:
    setup = make_alb(rule=True)
    other = setup.client.create_rule(
        ListenerArn=setup.listener_arn, Priority=20,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/static/*"]}}],
        Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Rules"][0]

    def everything() -> dict[str, Any]:
        return {"rules": setup.client.describe_rules(ListenerArn=setup.listener_arn)["Rules"],
                "listener": setup.client.describe_listeners(ListenerArns=[setup.listener_arn])["Listeners"]}

    before = everything()
    for p in (5, 75, 0):
        setup.router.apply(Weights(p))
        assert without_weights(everything(), setup.old_arn, setup.new_arn) == \
            without_weights(before, setup.old_arn, setup.new_arn)
    rule = setup.described()
    assert rule["Priority"] == str(RULE_PRIORITY)
    assert rule["Conditions"] == RULE_CONDITIONS
    assert rule["Actions"][0]["ForwardConfig"]["TargetGroupStickinessConfig"] == {
        "Enabled": True, "DurationSeconds": STICKY_SECONDS}
    # the listener's default action (old only) and the other rule are untouched
    assert [r for r in everything()["rules"] if r["RuleArn"] == other["RuleArn"]] == [other]
    writes = Calls(setup.router)
    setup.router.apply(Weights(25))
    (name, params), = writes.writes()
    assert name == "ModifyRule" and set(params) == {"RuleArn", "Actions"}  # never conditions or priority
    details = setup.router.details()
    assert details[0].endswith("priority 10, conditions: path-pattern /api/*; host-header shop.example.com")


def test_a_plain_target_group_arn_is_that_group_at_100_percent(aws: Any) -> None:
    setup = make_alb()
    setup.set_actions([{"Type": "forward", "TargetGroupArn": setup.old_arn}])
    assert setup.router.read() == Weights(0)
    assert setup.router.verify(Weights(0)) is True
    setup.set_actions([{"Type": "forward", "TargetGroupArn": setup.new_arn}])
    assert setup.router.read() == Weights(100)
    assert setup.router.verify(Weights(0)) is False


def test_what_aws_answers_is_written_back_in_a_form_it_accepts(aws: Any) -> None:
    """AWS reads a one-group forward back with both TargetGroupArn and ForwardConfig,
    and an OIDC action without its secret: neither can be sent back as is."""
    setup = make_alb()
    setup.set_actions([{"Type": "forward", "TargetGroupArn": setup.old_arn,
                        "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": setup.old_arn, "Weight": 1}]}}])
    calls = Calls(setup.router)
    setup.router.apply(Weights(50))
    (_, params), = calls.writes()
    (action,) = params["DefaultActions"]
    assert "TargetGroupArn" not in action
    assert action["ForwardConfig"]["TargetGroups"] == [
        {"TargetGroupArn": setup.old_arn, "Weight": 999}, {"TargetGroupArn": setup.new_arn, "Weight": 999}]
    assert setup.router.read() == Weights(50)

    oidc = {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": {
        "Issuer": "https://i", "AuthorizationEndpoint": "https://a", "TokenEndpoint": "https://t",
        "UserInfoEndpoint": "https://u", "ClientId": "c"}}
    snap = _Snapshot([oidc, forward({setup.old_arn: 999, setup.new_arn: 999}, order=2)],
                     setup.load_balancer_arn)
    written = setup.router._actions_with(snap, setup.router._forward(snap), 999, 0)
    assert written[0]["AuthenticateOidcConfig"]["UseExistingClientSecret"] is True
    assert oidc["AuthenticateOidcConfig"].get("UseExistingClientSecret") is None  # the read is not changed


def test_a_missing_weight_counts_as_one() -> None:
    router = ALBRouter(LISTENER, OLD, NEW)
    snap = _Snapshot([{"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": OLD}, {"TargetGroupArn": NEW, "Weight": 3}]}}], router.load_balancer_arn)
    assert router._forward(snap).weights == {OLD: 1, NEW: 3}
    assert router._split(router._forward(snap)) == (1, 3)


# --- what the target is not -----------------------------------------------------


def test_listener_not_found(aws: Any) -> None:
    setup = make_alb()
    missing = setup.listener_arn.rsplit("/", 1)[0] + "/00000000deadbeef"
    router = ALBRouter(missing, setup.old_arn, setup.new_arn)
    for attempt in (router.read, lambda: router.apply(Weights(10)), lambda: router.verify(Weights(0))):
        with pytest.raises(RouterConfigError, match=r"ALB listener .*/00000000deadbeef does not exist") as e:
            attempt()
        assert f"aws elbv2 describe-listeners --load-balancer-arn {setup.load_balancer_arn}" in str(e.value.hint)
        assert e.value.exit_code == 2


def test_rule_not_found(aws: Any) -> None:
    setup = make_alb(rule=True)
    assert setup.rule_arn is not None
    missing = setup.rule_arn.rsplit("/", 1)[0] + "/00000000deadbeef"
    router = ALBRouter(setup.listener_arn, setup.old_arn, setup.new_arn, rule_arn=missing)
    with pytest.raises(RouterConfigError, match=r"ALB rule .*/00000000deadbeef does not exist") as e:
        router.read()
    assert f"aws elbv2 describe-rules --listener-arn {setup.listener_arn}" in str(e.value.hint)


def test_the_default_rule_is_driven_as_the_default_action(aws: Any) -> None:
    setup = make_alb()
    rules = setup.client.describe_rules(ListenerArn=setup.listener_arn)["Rules"]
    default = next(r["RuleArn"] for r in rules if r["IsDefault"])
    router = ALBRouter(setup.listener_arn, setup.old_arn, setup.new_arn, rule_arn=default)
    with pytest.raises(RouterConfigError, match="is the listener's default rule") as e:
        router.read()
    assert "remove router.rule_arn" in str(e.value.hint)


def test_target_group_not_found(aws: Any) -> None:
    setup = make_alb()
    missing = setup.new_arn.rsplit("/", 1)[0] + "/00000000deadbeef"
    router = ALBRouter(setup.listener_arn, setup.old_arn, missing)
    calls = Calls(router)
    for attempt in (router.read, lambda: router.apply(Weights(10))):
        with pytest.raises(RouterConfigError, match=r"target group .*/00000000deadbeef \(router\.new\) does not exist") as e:
            attempt()
        assert f"describe-target-groups --load-balancer-arn {setup.load_balancer_arn}" in str(e.value.hint)
    assert calls.writes() == []


def test_target_group_of_another_load_balancer(aws: Any) -> None:
    setup = make_alb()
    other = make_alb(name="intranet", cidr="10.1.0.0/16")
    router = ALBRouter(setup.listener_arn, setup.old_arn, other.new_arn)
    calls = Calls(router)
    with pytest.raises(RouterConfigError) as e:
        router.read()
    assert "target group intranet-eks (router.new) belongs to load balancer loadbalancer/app/intranet/" in str(e.value)
    assert "an ALB target group serves one load balancer" in str(e.value)
    with pytest.raises(RouterConfigError, match="belongs to load balancer"):
        router.apply(Weights(50))
    assert calls.writes() == []


def test_a_target_group_attached_to_no_load_balancer_yet(aws: Any) -> None:
    setup = make_alb()
    elb = setup.client
    fresh = elb.create_target_group(Name="eks-2", Protocol="HTTP", Port=80, VpcId=setup.vpc_id,
                                    TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    router = ALBRouter(setup.listener_arn, setup.old_arn, fresh)
    assert router.read() == Weights(0)  # not in the forward action: it gets nothing
    router.apply(Weights(25))
    assert setup.weights() == {setup.old_arn: 999, setup.new_arn: 0, fresh: 333}
    assert router.read() == Weights(25)

    ec2 = boto3.client("ec2")
    elsewhere = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    foreign = elb.create_target_group(Name="eks-3", Protocol="HTTP", Port=80, VpcId=elsewhere,
                                      TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    with pytest.raises(RouterConfigError, match=rf"target group eks-3 \(router\.new\) is in {elsewhere}, "
                       rf"load balancer .* in {setup.vpc_id}"):
        ALBRouter(setup.listener_arn, setup.old_arn, foreign).read()
    tcp = elb.create_target_group(Name="eks-tcp", Protocol="TCP", Port=80, VpcId=setup.vpc_id,
                                  TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    with pytest.raises(RouterConfigError, match=r"uses protocol TCP: an Application Load Balancer forwards only"):
        ALBRouter(setup.listener_arn, setup.old_arn, tcp).read()


def test_a_third_target_group_with_weight(aws: Any) -> None:
    setup = make_alb(extra_target_groups=("legacy",))
    legacy = setup.extra["legacy"]
    setup.set_weights({setup.old_arn: 500, setup.new_arn: 0, legacy: 499})
    with pytest.raises(RouterError) as e:
        setup.router.read()
    assert type(e.value) is UnknownSplit  # run refuses it (exit 2) before the lease
    assert "also forwards to legacy (weight 499)" in str(e.value)
    assert "the split is not what the two weights say" in str(e.value)
    assert setup.router.verify(Weights(0)) is True  # new gets nothing: a rollback is done
    calls = Calls(setup.router)
    with pytest.raises(RouterError, match="also forwards to legacy"):
        setup.router.apply(Weights(10))
    assert calls.writes() == []
    setup.set_weights({setup.old_arn: 500, setup.new_arn: 10, legacy: 499})
    setup.router.apply(Weights(0))  # a rollback goes through: new to 0, legacy left alone
    assert setup.weights() == {setup.old_arn: 999, setup.new_arn: 0, legacy: 499}
    assert setup.router.verify(Weights(0)) is True


def test_both_weights_zero(alb: ALBSetup) -> None:
    alb.set_weights({alb.old_arn: 0, alb.new_arn: 0})
    with pytest.raises(RouterError, match=r"weight 0 on both web-ec2 and web-eks: the split is not known") as e:
        alb.router.read()
    assert type(e.value) is UnknownSplit
    assert "modify-" in str(e.value.hint) and '"Weight":999' in str(e.value.hint)
    assert alb.router.verify(Weights(0)) is False
    alb.router.apply(Weights(10))
    assert alb.router.read() == Weights(10)


def test_a_weight_aws_would_refuse(alb: ALBSetup) -> None:
    alb.set_weights({alb.old_arn: 1500, alb.new_arn: 0})  # moto stores it; AWS refuses it
    with pytest.raises(RouterError, match=r"target group web-ec2 has weight 1500, outside ALB's 0-999") as e:
        alb.router.read()
    assert type(e.value) is UnknownSplit
    assert alb.router.verify(Weights(0)) is True
    alb.router.apply(Weights(0))
    assert alb.weights() == {alb.old_arn: 999, alb.new_arn: 0}
    alb.set_weights({alb.old_arn: 999, alb.new_arn: -1})
    with pytest.raises(RouterError, match="has weight -1, outside"):
        alb.router.read()


def test_no_forward_action(alb: ALBSetup) -> None:
    alb.set_actions([{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}])
    for attempt in (alb.router.read, lambda: alb.router.apply(Weights(10)), alb.router.tail_seconds):
        with pytest.raises(RouterConfigError, match=r"has no forward action \(its actions: fixed-response\)") as e:
            attempt()
        assert "--actions" in str(e.value.hint) or "--default-actions" in str(e.value.hint)
    redirect = {"Type": "redirect", "RedirectConfig": {"Host": "eks.example.com", "StatusCode": "HTTP_302"}}
    alb.set_actions([redirect])  # may lead anywhere, new included: not known to be 0%
    for attempt in (lambda: alb.router.verify(Weights(0)), lambda: alb.router.apply(Weights(0))):
        with pytest.raises(RouterConfigError, match=r"has no forward action \(its actions: redirect\)"):
            attempt()


def test_a_maintenance_page_set_in_an_emergency_is_0_percent_and_left_alone(alb: ALBSetup) -> None:
    """An operator answers every request with a fixed response (nothing is forwarded):
    new gets nothing, so a rollback is confirmed at once and writes nothing over it."""
    from shiftover.clock import SystemClock
    from shiftover.engine.rollback import drive_to_zero

    alb.router.apply(Weights(50))
    page = {"Type": "fixed-response", "FixedResponseConfig": {
        "StatusCode": "503", "ContentType": "text/plain", "MessageBody": "maintenance"}}
    alb.set_actions([page])
    fresh = ALBRouter(alb.listener_arn, alb.old_arn, alb.new_arn, rule_arn=alb.rule_arn)
    calls = Calls(fresh)
    clock = SystemClock()
    assert drive_to_zero(fresh, clock, deadline=clock.now() + 2.0) is None
    assert fresh.verify(Weights(0)) is True
    assert calls.writes() == []
    assert [a["Type"] for a in alb.actions()] == ["fixed-response"]


def test_a_forward_to_neither_target_group(aws: Any) -> None:
    setup = make_alb(extra_target_groups=("legacy",))
    setup.set_actions([{"Type": "forward", "TargetGroupArn": setup.extra["legacy"]}])
    calls = Calls(setup.router)
    for attempt in (setup.router.read, lambda: setup.router.apply(Weights(0))):
        with pytest.raises(RouterConfigError, match=r"forwards to legacy, not to web-ec2 \(old\) or web-eks \(new\)"):
            attempt()
    assert calls.writes() == []
    assert setup.router.verify(Weights(0)) is False


@pytest.fixture
def nothing_listening(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield


def test_an_unreachable_endpoint_is_a_router_error_not_a_config_error(nothing_listening: None) -> None:
    router = ALBRouter(LISTENER, OLD, NEW, timeout=1.0)
    with pytest.raises(RouterError) as e:
        router.read()
    assert type(e.value) is RouterError
    assert "ELBv2 DescribeListeners for ALB listener listener/app/web/" in str(e.value)
    assert "cannot reach the AWS endpoint" in str(e.value)


# --- for the CLI ---------------------------------------------------------------------


def test_details_warnings_and_tail(alb: ALBSetup) -> None:
    details = alb.router.details()
    assert "forward action: web-ec2 (old) weight 1, web-eks (new) weight 0: 0% on new" in details
    assert f"target-group stickiness: on, {STICKY_SECONDS} s" in details
    assert alb.router.tail_seconds() == float(STICKY_SECONDS)
    warnings = alb.router.warnings()
    assert len(warnings) == 1
    assert f"target-group stickiness on for {STICKY_SECONDS} s" in warnings[0]
    assert "a rollback to 0% leaves clients already pinned to web-eks there" in warnings[0]
    assert len(alb.router.warnings(bake=STICKY_SECONDS + 1)) == 1
    longer = alb.router.warnings(bake=300)
    assert len(longer) == 2 and "is longer than the bake (300 s)" in longer[1]

    alb.set_weights({alb.old_arn: 999, alb.new_arn: 0}, sticky_seconds=None)
    assert alb.router.warnings(bake=60) == []
    assert alb.router.tail_seconds() == 0.0
    assert "target-group stickiness: off" in alb.router.details()

    alb.set_weights({alb.old_arn: 0, alb.new_arn: 0})
    assert any("split not known (" in line for line in alb.router.details())


def test_a_hint_pasted_in_an_emergency_never_drops_an_authentication_step(aws: Any) -> None:
    """Hints carry a command an operator may paste while things burn. A command that
    writes the actions replaces them all: beside an authenticate action it would serve
    the application without authentication. It then edits describe's output instead,
    and never prints an action's config (or its secret)."""
    setup = make_alb()
    oidc = {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": {
        "Issuer": "https://idp.example.com", "AuthorizationEndpoint": "https://idp.example.com/auth",
        "TokenEndpoint": "https://idp.example.com/token", "UserInfoEndpoint": "https://idp.example.com/me",
        "ClientId": "shop", "ClientSecret": "s3cr3t", "OnUnauthenticatedRequest": "authenticate"}}
    setup.set_actions([oidc, forward({setup.old_arn: 0, setup.new_arn: 0}, order=2)])
    with pytest.raises(RouterError, match="weight 0 on both") as e:
        setup.router.read()
    hint = str(e.value.hint)
    assert "keep the other actions (authenticate-oidc)" in hint
    assert "describe-listeners --listener-arns" in hint and "> actions.json" in hint
    assert "--default-actions file://actions.json" in hint and "UseExistingClientSecret" in hint
    assert f"{setup.old_arn} (old) weight 999 and {setup.new_arn} (new) weight 0" in hint
    assert "s3cr3t" not in hint and "idp.example.com" not in hint

    setup.set_actions([forward({setup.old_arn: 0, setup.new_arn: 0}, sticky_seconds=900, order=3)])
    with pytest.raises(RouterError, match="weight 0 on both") as e:
        setup.router.read()
    hint = str(e.value.hint)
    command = hint[hint.index("aws elbv2"):]
    written = json.loads(shlex.split(command)[6])
    assert written == [forward({setup.old_arn: 999, setup.new_arn: 0}, sticky_seconds=900, order=3)]
