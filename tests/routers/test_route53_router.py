"""Route53 router against the moto server over real HTTP (boto3 built the standard way).

moto is never throttled, reports every change INSYNC at once and accepts what AWS
refuses (weight 300, duplicate set identifiers, mixed routing policies): those
cases are written into moto directly, or scripted with ``ScriptedClient``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from route53_setup import (
    NEW_LB,
    Route53Setup,
    ScriptedClient,
    client_error,
    make_route53,
    put,
    records_at,
    weighted_record,
    weights_at,
    with_status,
)

from shiftover.aws import ROUTE53_RATE, RateLimiter
from shiftover.errors import RouterConfigError, RouterError, UnknownSplit
from shiftover.routers import ROUTERS, build_router
from shiftover.routers.route53 import SCALE, Route53Router, Route53RouterSpec
from shiftover.types import Weights

PERCENTS = [0, 1, 2, 5, 10, 12.5, 25, 50, 75, 99, 100]
KINDS = [("CNAME", False), ("A", True), ("A", False), ("AAAA", True)]


@pytest.fixture
def fast() -> RateLimiter:
    """A limiter of our own: the tests' many calls need not crawl at 5/s, and fake
    sleeps must not push the process-wide limiter ahead of real time."""
    return RateLimiter(200.0)


@pytest.fixture
def r53(aws: Any, fast: RateLimiter) -> Iterator[Route53Setup]:
    yield make_route53(limiter=fast)


def _scripted(setup: Route53Setup) -> ScriptedClient:
    client = ScriptedClient(setup.router.client)
    setup.router.client = client
    return client


def _without_weight(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "Weight"}


# --- round trips --------------------------------------------------------------


@pytest.mark.parametrize(("record_type", "alias"), KINDS,
                         ids=["CNAME", "alias-A", "plain-A", "alias-AAAA"])
def test_every_percent_round_trips_and_nothing_else_changes(
        aws: Any, fast: RateLimiter, record_type: str, alias: bool) -> None:
    setup = make_route53(record_type=record_type, alias=alias, limiter=fast)
    router = setup.router
    before = records_at(setup.client, setup.zone_id, setup.record_name)
    assert before["ec2"].get("HealthCheckId")  # the fields we check really are there
    if alias:
        assert before["ec2"]["AliasTarget"]["EvaluateTargetHealth"] is True
        assert before["eks"]["AliasTarget"]["EvaluateTargetHealth"] is False
    else:
        assert before["ec2"]["TTL"] == 60
    assert router.read() == Weights(0)
    for pct in [*PERCENTS, *reversed(PERCENTS)]:
        w = Weights(pct)
        router.apply(w)
        assert router.read() == w
        assert router.verify(w) is True
        after = records_at(setup.client, setup.zone_id, setup.record_name)
        assert (after["ec2"]["Weight"], after["eks"]["Weight"]) == w.to_backend(SCALE)
        assert after["ec2"]["Weight"] > 0 or after["eks"]["Weight"] > 0
        for sid in ("ec2", "eks"):
            assert _without_weight(after[sid]) == _without_weight(before[sid])
    assert weights_at(setup.client, setup.zone_id, setup.record_name) == (SCALE, 0)


def test_zero_percent_is_new_zero_old_full(r53: Route53Setup) -> None:
    r53.router.apply(Weights(50))
    r53.router.apply(Weights(0))
    assert weights_at(r53.client, r53.zone_id, r53.record_name) == (255, 0)
    r53.router.apply(Weights(1))
    assert weights_at(r53.client, r53.zone_id, r53.record_name) == (198, 2)


def test_one_change_batch_of_two_upserts_per_apply_and_none_when_already_there(r53: Route53Setup) -> None:
    client = _scripted(r53)
    r53.router.apply(Weights(10))
    assert client.count("change_resource_record_sets") == 1
    batch = client.kwargs_of("change_resource_record_sets")[0]
    assert batch["HostedZoneId"] == r53.zone_id
    changes = batch["ChangeBatch"]["Changes"]
    assert [c["Action"] for c in changes] == ["UPSERT", "UPSERT"]
    assert {c["ResourceRecordSet"]["SetIdentifier"]: c["ResourceRecordSet"]["Weight"] for c in changes} == \
        {"ec2": 252, "eks": 28}
    assert client.count("get_change") == 0  # moto answered INSYNC with the change itself

    client.calls.clear()
    r53.router.apply(Weights(10))
    assert client.count("change_resource_record_sets") == 0
    assert client.count("get_change") == 0
    assert r53.router.read() == Weights(10)


def test_a_split_already_in_place_with_other_integers_is_not_rewritten(r53: Route53Setup) -> None:
    recs = records_at(r53.client, r53.zone_id, r53.record_name)
    put(r53.client, r53.zone_id, {**recs["ec2"], "Weight": 99}, {**recs["eks"], "Weight": 1})
    client = _scripted(r53)
    r53.router.apply(Weights(1))
    assert client.count("change_resource_record_sets") == 0
    assert weights_at(r53.client, r53.zone_id, r53.record_name) == (99, 1)
    assert r53.router.verify(Weights(1)) is True


def test_a_split_the_scale_cannot_express_is_refused_before_any_call(r53: Route53Setup) -> None:
    client = _scripted(r53)
    with pytest.raises(RouterError, match=r"cannot be set exactly with integer weights 0-255"):
        r53.router.apply(Weights("100/257"))  # old 256, new 1
    assert client.calls == []
    with pytest.raises(RouterError, match="needs a Weights value"):
        r53.router.apply(33)  # type: ignore[arg-type]
    assert weights_at(r53.client, r53.zone_id, r53.record_name) == (255, 0)


# --- what AWS refuses and moto accepts ----------------------------------------


def test_record_name_not_in_the_zone(aws: Any, fast: RateLimiter) -> None:
    setup = make_route53(limiter=fast)
    router = Route53Router(setup.zone_id, "api.example.com", "CNAME", "ec2", "eks", limiter=fast)
    with pytest.raises(RouterConfigError) as exc:
        router.read()
    assert "api.example.com." in exc.value.message and "'ec2'" in exc.value.message
    assert "set identifiers at that name: none" in exc.value.message
    assert "list-resource-record-sets" in str(exc.value.hint)
    with pytest.raises(RouterConfigError):
        router.apply(Weights(0))


def test_missing_set_identifier_lists_the_ones_that_exist(aws: Any, fast: RateLimiter) -> None:
    setup = make_route53(new="k8s", limiter=fast)
    router = Route53Router(setup.zone_id, setup.record_name, "CNAME", "ec2", "eks", limiter=fast)
    for action in (router.read, lambda: router.apply(Weights(10)), lambda: router.verify(Weights(0))):
        with pytest.raises(RouterConfigError) as exc:
            action()
        msg = exc.value.message
        assert "www.example.com." in msg and "'eks' (new)" in msg
        assert "ec2 (CNAME), k8s (CNAME)" in msg
        assert "router.new" in str(exc.value.hint)
    assert weights_at(setup.client, setup.zone_id, setup.record_name, new="k8s") == (255, 0)


def test_zone_not_found(aws: Any, fast: RateLimiter) -> None:
    router = Route53Router("/hostedzone/ZNOSUCHZONE1", "www.example.com", "A", "ec2", "eks", limiter=fast)
    for action in (router.read, lambda: router.apply(Weights(10)), lambda: router.verify(Weights(0))):
        with pytest.raises(RouterConfigError) as exc:
            action()
        assert "hosted zone ZNOSUCHZONE1 does not exist" in exc.value.message
        assert "www.example.com." in exc.value.message
        assert "aws route53 list-hosted-zones --query" in str(exc.value.hint)


def test_record_types_that_differ(aws: Any, fast: RateLimiter) -> None:
    setup = make_route53(new="k8s", limiter=fast)  # (moto's DELETE ignores the type)
    put(setup.client, setup.zone_id, weighted_record(
        setup.record_name, "A", "eks", 0, alias=True, target="new-lb.example.net."))
    r53 = setup._replace(router=Route53Router(setup.zone_id, setup.record_name, "CNAME", "ec2", "eks",
                                              limiter=fast))
    with pytest.raises(RouterConfigError) as exc:
        r53.router.read()
    msg = exc.value.message
    assert "set 'eks' (new)" in msg and "is A, not CNAME" in msg and "types differ" in msg


def test_both_weights_zero_is_an_error_not_a_split(r53: Route53Setup) -> None:
    recs = records_at(r53.client, r53.zone_id, r53.record_name)
    put(r53.client, r53.zone_id, {**recs["ec2"], "Weight": 0})
    with pytest.raises(RouterError) as exc:
        r53.router.read()
    assert type(exc.value) is UnknownSplit  # run refuses it (exit 2) before the lease
    assert "weight 0 on both 'ec2' and 'eks'" in exc.value.message and "EQUALLY" in exc.value.message
    assert r53.router.verify(Weights(0)) is False  # new gets half, not nothing
    r53.router.apply(Weights(0))  # a rollback repairs it
    assert weights_at(r53.client, r53.zone_id, r53.record_name) == (255, 0)
    assert r53.router.verify(Weights(0)) is True


def test_weight_out_of_range_read_back_is_an_error(r53: Route53Setup) -> None:
    recs = records_at(r53.client, r53.zone_id, r53.record_name)
    put(r53.client, r53.zone_id, {**recs["eks"], "Weight": 300})  # AWS: 0-255; moto takes it
    with pytest.raises(RouterError) as exc:
        r53.router.read()
    assert type(exc.value) is UnknownSplit
    assert "set 'eks'" in exc.value.message and "weight 300" in exc.value.message
    with pytest.raises(RouterError):
        r53.router.verify(Weights(50))
    r53.router.apply(Weights(50))
    assert weights_at(r53.client, r53.zone_id, r53.record_name) == (255, 255)


def test_record_without_weight_is_not_weighted(r53: Route53Setup) -> None:
    recs = records_at(r53.client, r53.zone_id, r53.record_name)
    failover = _without_weight(recs["eks"]) | {"Failover": "SECONDARY"}
    put(r53.client, r53.zone_id, failover)
    assert "Weight" not in records_at(r53.client, r53.zone_id, r53.record_name)["eks"]
    with pytest.raises(RouterConfigError) as exc:
        r53.router.read()
    assert "set 'eks'" in exc.value.message and "has no Weight" in exc.value.message
    assert "Failover" in exc.value.message


def test_a_third_weighted_record_taking_traffic(r53: Route53Setup) -> None:
    put(r53.client, r53.zone_id, weighted_record(
        r53.record_name, "CNAME", "legacy", 10, alias=False, target="legacy.example.net"))
    with pytest.raises(RouterError) as exc:
        r53.router.read()
    assert type(exc.value) is UnknownSplit
    assert "'legacy' (weight 10)" in exc.value.message
    assert r53.router.verify(Weights(0)) is True  # new still gets nothing


def test_the_same_set_identifier_twice(r53: Route53Setup) -> None:
    # AWS refuses a second record with one set identifier; moto's CREATE takes it
    r53.client.change_resource_record_sets(HostedZoneId=r53.zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": weighted_record(
            r53.record_name, "CNAME", "eks", 5, alias=False, target="other.example.net")}]})
    if len([r for r in r53.client.list_resource_record_sets(HostedZoneId=r53.zone_id)["ResourceRecordSets"]
            if r.get("SetIdentifier") == "eks"]) < 2:
        pytest.skip("this moto refuses duplicate set identifiers itself")
    with pytest.raises(RouterConfigError, match=r"2 CNAME records www.example.com. with set identifier 'eks'"):
        r53.router.read()


# --- throttling and INSYNC ----------------------------------------------------


def test_throttling_then_prior_request_is_retried_with_sleeps(r53: Route53Setup) -> None:
    sleeps: list[float] = []
    r53.router.sleep = sleeps.append
    client = _scripted(r53)
    client.script["list_resource_record_sets"] = [client_error("Throttling", "ListResourceRecordSets")]
    client.script["change_resource_record_sets"] = [
        client_error("Throttling", "ChangeResourceRecordSets"),
        client_error("PriorRequestNotComplete", "ChangeResourceRecordSets",
                     "The request was rejected because Route 53 was still processing a prior request."),
    ]
    r53.router.apply(Weights(25))
    assert client.count("list_resource_record_sets") == 2
    assert client.count("change_resource_record_sets") == 3
    assert len([s for s in sleeps if s >= 0]) >= 3  # one backoff per retry at least
    assert weights_at(r53.client, r53.zone_id, r53.record_name) == (255, 85)
    assert r53.router.read() == Weights(25)


def test_a_refused_change_is_a_router_error_naming_the_record(r53: Route53Setup) -> None:
    client = _scripted(r53)
    client.script["change_resource_record_sets"] = [
        client_error("InvalidChangeBatch", "ChangeResourceRecordSets", "something AWS did not like")]
    with pytest.raises(RouterError) as exc:
        r53.router.apply(Weights(10))
    assert "ChangeResourceRecordSets on www.example.com. CNAME" in exc.value.message
    assert "InvalidChangeBatch" in exc.value.message
    assert client.count("change_resource_record_sets") == 1  # not retried


def test_apply_waits_for_insync_and_reports_progress(r53: Route53Setup) -> None:
    sleeps: list[float] = []
    progress: list[str] = []
    r53.router.sleep = sleeps.append
    r53.router.on_progress = progress.append
    client = _scripted(r53)
    client.script["change_resource_record_sets"] = [with_status("PENDING")]
    client.script["get_change"] = [with_status("PENDING"), with_status("PENDING")]
    r53.router.apply(Weights(5))
    assert client.count("get_change") == 3
    change_id = client.kwargs_of("get_change")[0]["Id"]
    assert not change_id.startswith("/")
    assert len(progress) == 2
    assert all(line.startswith(f"waiting for Route53 change {change_id} to be INSYNC (") for line in progress)
    assert sleeps[:3] == [0.5, 1.0, 2.0]
    assert r53.router.last_change == {"id": change_id, "status": "INSYNC",
                                      "old_weight": 247, "new_weight": 13}


def test_a_change_never_insync_is_an_error_after_the_timeout(aws: Any, fast: RateLimiter) -> None:
    setup = make_route53(limiter=fast, insync_timeout=0.3)
    client = _scripted(setup)
    client.script["change_resource_record_sets"] = [with_status("PENDING")]
    client.always["get_change"] = with_status("PENDING")
    with pytest.raises(RouterError) as exc:
        setup.router.apply(Weights(50))
    assert setup.router.last_change is not None
    change_id = setup.router.last_change["id"]
    assert setup.router.last_change["status"] == "PENDING"
    assert f"Route53 change {change_id}" in exc.value.message
    assert "was submitted but is not INSYNC after 0.3 s" in exc.value.message
    assert f"get-change --id {change_id}" in str(exc.value.hint)
    assert client.count("get_change") >= 1
    # submitted is submitted: the records hold the new weights
    assert weights_at(setup.client, setup.zone_id, setup.record_name) == (255, 255)


def test_get_change_failing_says_the_change_was_submitted(r53: Route53Setup) -> None:
    client = _scripted(r53)
    client.script["change_resource_record_sets"] = [with_status("PENDING")]
    client.script["get_change"] = [client_error("AccessDenied", "GetChange", "not allowed")]
    r53.router.sleep = lambda s: None
    with pytest.raises(RouterError) as exc:
        r53.router.apply(Weights(10))
    assert r53.router.last_change is not None
    change_id = r53.router.last_change["id"]
    assert exc.value.message.startswith(f"Route53 change {change_id} was submitted, then asking")
    assert "access denied" in exc.value.message
    assert "IAM" in str(exc.value.hint)


def test_a_retried_rollback_is_confirmed_at_insync_not_when_the_records_say_0(
        aws: Any, fast: RateLimiter) -> None:
    """The records show a change at once, PENDING or not: a rollback retried after its
    INSYNC wait failed must wait for that change again, not call 0% in place."""
    from shiftover.clock import SystemClock
    from shiftover.engine.rollback import drive_to_zero

    setup = make_route53(limiter=fast, insync_timeout=0.2)
    setup.router.apply(Weights(50))
    client = _scripted(setup)
    client.script["change_resource_record_sets"] = [with_status("PENDING")]
    client.always["get_change"] = with_status("PENDING")  # Route53 slow today
    clock = SystemClock()
    error = drive_to_zero(setup.router, clock, deadline=clock.now() + 1.0)
    # not confirmed while PENDING (the wait ends at its own timeout or at the deadline)
    assert error is not None and "INSYNC" in error
    assert weights_at(setup.client, setup.zone_id, setup.record_name) == (255, 0)
    assert client.count("change_resource_record_sets") == 1  # waited on, not rewritten
    change_id = setup.router.last_change
    assert change_id and change_id["status"] == "PENDING"
    with pytest.raises(RouterError, match="is not INSYNC"):
        setup.router.apply(Weights(0))

    del client.always["get_change"]  # now INSYNC
    client.calls.clear()
    assert drive_to_zero(setup.router, clock, deadline=clock.now() + 5.0) is None
    assert [kw["Id"] for kw in client.kwargs_of("get_change")] == [change_id["id"]]
    assert client.count("change_resource_record_sets") == 0
    client.calls.clear()
    setup.router.apply(Weights(0))  # INSYNC seen: nothing more to wait for
    assert client.calls == [("list_resource_record_sets", client.calls[0][1])]


def test_a_get_change_failure_then_retry_waits_for_the_same_change(r53: Route53Setup) -> None:
    client = _scripted(r53)
    r53.router.sleep = lambda s: None
    client.script["change_resource_record_sets"] = [with_status("PENDING")]
    client.script["get_change"] = [client_error("AccessDenied", "GetChange", "not allowed"),
                                   with_status("PENDING")]  # then moto: INSYNC
    with pytest.raises(RouterError, match="was submitted, then asking"):
        r53.router.apply(Weights(10))
    r53.router.apply(Weights(10))
    assert client.count("change_resource_record_sets") == 1
    assert client.count("get_change") == 3
    assert r53.router.last_change is not None and r53.router.last_change["status"] == "INSYNC"


def test_a_change_whose_answer_was_lost_is_written_again_and_awaited(r53: Route53Setup) -> None:
    """A read timeout after ChangeResourceRecordSets arrived: the records hold the new
    weights, no change id is known; the retry writes the same weights again and waits."""
    client = _scripted(r53)
    r53.router.sleep = lambda s: None

    def lost(real: Any, kwargs: dict[str, Any]) -> Any:
        real(**kwargs)
        raise client_error("RequestTimeout", "ChangeResourceRecordSets", "no answer")

    client.script["change_resource_record_sets"] = [lost, with_status("PENDING")]
    with pytest.raises(RouterError):
        r53.router.apply(Weights(25))
    assert weights_at(r53.client, r53.zone_id, r53.record_name) == (255, 85)
    r53.router.apply(Weights(25))
    assert client.count("change_resource_record_sets") == 2
    assert client.count("get_change") == 1
    assert r53.router.last_change is not None and r53.router.last_change["status"] == "INSYNC"
    client.calls.clear()
    r53.router.apply(Weights(25))
    assert client.count("change_resource_record_sets") == 0


def test_wait_insync_resumes_on_a_change_id(r53: Route53Setup) -> None:
    client = _scripted(r53)
    client.script["change_resource_record_sets"] = [with_status("PENDING")]
    client.script["get_change"] = [client_error("Throttling", "GetChange")]  # then moto: INSYNC
    r53.router.sleep = lambda s: None
    r53.router.apply(Weights(10))
    assert r53.router.last_change is not None
    r53.router.wait_insync("/change/" + r53.router.last_change["id"])
    assert [kw["Id"] for kw in client.kwargs_of("get_change")] == [r53.router.last_change["id"]] * 3


# --- verify(0%) -----------------------------------------------------------------


def test_verify_zero_needs_only_new_at_zero_and_old_above(r53: Route53Setup) -> None:
    recs = records_at(r53.client, r53.zone_id, r53.record_name)
    put(r53.client, r53.zone_id, {**recs["ec2"], "Weight": 300},
        weighted_record(r53.record_name, "CNAME", "legacy", 7, alias=False, target="legacy.example.net"))
    with pytest.raises(RouterError):
        r53.router.read()
    assert r53.router.verify(Weights(0)) is True
    put(r53.client, r53.zone_id, {**recs["eks"], "Weight": 1})
    assert r53.router.verify(Weights(0)) is False


# --- identity, spec, extras -------------------------------------------------


def test_lease_key_and_describe_are_canonical(aws: Any) -> None:
    a = Route53Router("/hostedzone/Z1ABC", "WWW.Example.com", "cname", "ec2", "eks")
    b = Route53Router("Z1ABC", "www.example.com.", "CNAME", "ec2", "eks")
    assert a.lease_key() == b.lease_key() == "route53:Z1ABC/www.example.com./CNAME"
    assert a.describe() == "route53 Z1ABC www.example.com. CNAME ec2/eks"
    assert a.limiter is ROUTE53_RATE  # Route53's 5 requests/s per account, process-wide
    with pytest.raises(RouterConfigError, match="same set identifier 'ec2'"):
        Route53Router("Z1", "www.example.com", "A", "ec2", "ec2")


def _spec(**fields: Any) -> Route53RouterSpec:
    base: dict[str, Any] = {"type": "route53", "hosted_zone_id": "Z1ABC", "record_name": "www.example.com",
                            "record_type": "A", "old": "ec2", "new": "eks"}
    return Route53RouterSpec.model_validate(base | fields)


def test_spec_normalises_and_refuses() -> None:
    spec = _spec(hosted_zone_id="/hostedzone/Z1ABC", record_name=" WWW.Example.COM ", record_type="aaaa")
    assert (spec.hosted_zone_id, spec.record_name, spec.record_type) == ("Z1ABC", "www.example.com.", "AAAA")
    assert (spec.timeout, spec.insync_timeout) == (5.0, 300.0)
    assert spec.lease_target() == "route53:Z1ABC/www.example.com./AAAA"
    assert Route53RouterSpec.SCALE == 255 and "0-255" in Route53RouterSpec.LABEL
    assert ROUTERS["route53"] == "shiftover.routers.route53:Route53Router"
    router = build_router(_spec(insync_timeout="2m", timeout="3s"))
    assert isinstance(router, Route53Router)
    assert (router.insync_timeout, router.timeout) == (120.0, 3.0)
    assert router.lease_key() == _spec().lease_target()

    cases: list[tuple[dict[str, Any], tuple[str, ...], str]] = [
        ({"new": "ec2"}, ("new",), "same set identifier 'ec2'"),
        ({"hosted_zone_id": "Z 1"}, ("hosted_zone_id",), "not a hosted zone id"),
        ({"record_name": "a..b"}, ("record_name",), "not a DNS name"),
        ({"record_type": "MX"}, ("record_type",), "'A'"),
        ({"old": "x" * 129}, ("old",), "128"),
        ({"insync_timeout": 0}, ("insync_timeout",), "greater than 0"),
    ]
    for fields, loc, text in cases:
        with pytest.raises(ValidationError) as exc:
            _spec(**fields)
        error = exc.value.errors()[0]
        assert error["loc"][: len(loc)] == loc or error.get("ctx", {}).get("at") == loc, error
        assert text in str(exc.value)


def test_tail_details_and_warnings(aws: Any, fast: RateLimiter) -> None:
    cname = make_route53(ttl=300, limiter=fast)
    assert cname.router.tail_seconds() == 300.0
    [warning] = [w for w in cname.router.warnings() if "'ec2'" in w]
    assert "TTL 300 s" in warning and "lower it before the cutover" in warning
    assert len(cname.router.warnings()) == 2
    old_line, new_line = cname.router.details()
    check = records_at(cname.client, cname.zone_id, cname.record_name)["ec2"]["HealthCheckId"]
    assert old_line == f"old ec2: weight 255, TTL 300 s, old-web.example.net, health check {check}"
    assert new_line == "new eks: weight 0, TTL 300 s, new-web.example.net, health check none"

    alias = make_route53(record_type="A", zone_name="example.org.", record_name="api.example.org.",
                         limiter=fast)
    assert alias.router.tail_seconds() == 60.0
    assert alias.router.warnings() == []
    old_line, new_line = alias.router.details()
    assert "old-web-123456.us-east-1.elb.amazonaws.com. (evaluates target health)" in old_line
    assert new_line == (f"new eks: weight 0, TTL the alias target's (60 s assumed), alias to {NEW_LB} "
                        "(no target health), health check none")


def test_the_rate_limiter_lets_an_idle_burst_through_and_never_more_than_five_a_second() -> None:
    clock = [0.0]
    limiter = RateLimiter(5.0, clock=lambda: clock[0])

    def fake_sleep(seconds: float) -> None:
        clock[0] += seconds

    sent = []
    for _ in range(12):
        limiter.wait(fake_sleep)
        sent.append(clock[0])
    assert sent[:5] == [0.0] * 5  # idle: the first five go at once
    for i in range(len(sent)):
        assert len([t for t in sent if sent[i] <= t < sent[i] + 1.0]) <= 5
    assert sent[-1] < 2.5  # and it does not hold calls back longer than it must


def test_a_dual_stack_name_warns_that_the_other_family_is_not_moved(aws: Any, fast: RateLimiter) -> None:
    """Alias A and AAAA records of one name, both weighted: IPv6 clients follow the AAAA
    weights whatever this A router writes, a rollback included."""
    setup = make_route53(record_type="A", limiter=fast)
    assert setup.router.warnings() == []
    put(setup.client, setup.zone_id,
        weighted_record(setup.record_name, "AAAA", "ec2", 255, alias=True, target="old-lb.example.net."),
        weighted_record(setup.record_name, "AAAA", "eks", 0, alias=True, target=NEW_LB))
    [warning] = setup.router.warnings()
    assert "also has weighted AAAA records (ec2 255, eks 0)" in warning
    assert "IPv6 clients follow those weights" in warning and "record_type AAAA" in warning
    six = Route53Router(setup.zone_id, setup.record_name, "AAAA", "ec2", "eks", limiter=fast)
    assert "weighted A records (ec2 255, eks 0)" in six.warnings()[0]
    assert "IPv4 clients" in six.warnings()[0]


def test_a_fresh_process_confirms_0_percent_only_at_insync_of_a_change_of_its_own(
        aws: Any, fast: RateLimiter) -> None:
    """A run killed during its rollback's wait leaves the records at 0% and the change
    PENDING; the next process (a re-run, `shiftover rollback`) cannot await a change it
    did not make. It writes the same weights again and confirms when that is INSYNC."""
    first = make_route53(limiter=fast, old_weight=255, new_weight=255)  # at 50%
    first.router.apply(Weights(0))  # the dead process's rollback (INSYNC in moto)
    fresh = Route53Router(first.zone_id, first.record_name, first.record_type, first.old,
                          first.new, limiter=fast, sleep=lambda s: None)
    client = ScriptedClient(fresh.client)
    fresh.client = client
    client.script["change_resource_record_sets"] = [with_status("PENDING")]
    client.script["get_change"] = [with_status("PENDING")]
    fresh.apply(Weights(0))
    assert client.count("change_resource_record_sets") == 1
    assert client.count("get_change") == 2  # PENDING, then INSYNC: confirmed only then
    assert fresh.verify(Weights(0)) is True
    fresh.apply(Weights(0))  # its own change is INSYNC now: nothing more to write
    assert client.count("change_resource_record_sets") == 1
