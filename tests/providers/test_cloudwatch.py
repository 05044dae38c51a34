"""CloudWatch gates against a real moto server over HTTP (the ``aws`` fixture).

Data is put with PutMetricData at timestamps inside the gate's window and read
back by the provider through GetMetricData; alarms are created and moved with
SetAlarmState (moto never evaluates them). What moto cannot do is fed through
the provider's own client: composite alarms, pages, throttling, access denied.
Metric math is sent as written, but moto does not evaluate it: an expression
that is a bare id returns that query, anything else nothing; the tests show the
plumbing and the NoData path, not CloudWatch's arithmetic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cloudwatch_setup import (
    ALB,
    OLD_TARGET_GROUP,
    TARGET_GROUP,
    alarms_gate,
    alb_5xx_gate,
    alb_dimensions,
    create_alarm,
    put_alb_traffic,
    put_metric,
)

from shiftover.analysis.judge import judge
from shiftover.demo.prometheus import free_port
from shiftover.errors import NoData, PlanError, ProviderError
from shiftover.plan import parse_plan_text
from shiftover.providers import build_provider
from shiftover.providers.cloudwatch import (
    CloudWatchAlarmsGate,
    CloudWatchAlarmsProvider,
    CloudWatchCounts,
    CloudWatchCountsSpec,
    CloudWatchGate,
    CloudWatchMetric,
    CloudWatchProvider,
    count_span,
    window_bounds,
)
from shiftover.testing import plan_yaml
from shiftover.types import EnvCounts, Verdict

NOW = 1_800_000_123.5  # the engine's clock: far from the wall clock on purpose


def _measure(spec: Any) -> Any:
    return build_provider(spec).measure(now=NOW)


def _outcome(spec: Any) -> Any:
    try:
        return _measure(spec)
    except ProviderError as exc:
        return exc


def _verdict(spec: Any) -> Any:
    return judge(spec, _outcome(spec), now=NOW)


def _client_error(code: str, operation: str, message: str = "Rate exceeded") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def _wrap(monkeypatch: pytest.MonkeyPatch, provider: Any, method: str,
          around: Callable[[Callable[..., Any], dict[str, Any]], Any]) -> list[dict[str, Any]]:
    """Replace the provider's client ``method`` by ``around(original, kwargs)``;
    returns the list of kwargs of every call."""
    client = provider.api.client
    original = getattr(client, method)
    calls: list[dict[str, Any]] = []

    def wrapper(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return around(original, kwargs)

    monkeypatch.setattr(client, method, wrapper)
    return calls


# --- the plan: fields, and errors pointing at the field ------------------------

PLAN = plan_yaml("  - name: gate\n{gate}\n", steps="[10, 50, 100]")

ALB_5XX_RATIO = """\
    type: cloudwatch
    region: eu-west-1
    metric:
      namespace: AWS/ApplicationELB
      name: HTTPCode_Target_5XX_Count
      dimensions:
        LoadBalancer: app/web/50dc6c495c0c9188
        TargetGroup: targetgroup/eks-web/73e2d6bc24d8a067
    per: {name: RequestCount}
    window: 5m
    max: 0.01
    min_samples: 200"""


def _gate(yaml_body: str) -> Any:
    return parse_plan_text(PLAN.format(gate=yaml_body), filename="plan.yaml", env={}).plan.normal_state[0]


def _plan_error(yaml_body: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        _gate(yaml_body)
    return info.value


def test_an_alb_ratio_gate_loads_and_per_takes_the_metrics_namespace_and_dimensions() -> None:
    gate = _gate(ALB_5XX_RATIO)
    assert isinstance(gate, CloudWatchGate)
    provider = CloudWatchProvider.from_spec(gate)
    assert provider.per is not None
    assert provider.per.namespace == ALB and provider.per.dimensions == alb_dimensions()
    assert provider.per.stat == "Sum" and gate.window == 300 and gate.timeout == 10
    queries = provider.queries()
    assert [q["MetricStat"]["Metric"]["MetricName"] for q in queries] == [
        "HTTPCode_Target_5XX_Count", "RequestCount"]
    assert {q["MetricStat"]["Period"] for q in queries} == {300}  # one datapoint per window
    assert "per RequestCount" in provider.describe()


def test_an_alarms_gate_loads() -> None:
    gate = _gate("    type: cloudwatch_alarms\n    alarm_name_prefix: eks-web-")
    assert isinstance(gate, CloudWatchAlarmsGate) and gate.JUDGE == "alerts"
    assert _gate("    type: cloudwatch_alarms\n    alarm_names: [a, b]").alarm_names == ["a", "b"]


def test_stat_names_are_spelled_as_cloudwatch_spells_them() -> None:
    assert CloudWatchMetric(namespace="n", name="m", stat="sum").stat == "Sum"
    assert CloudWatchMetric(namespace="n", name="m", stat="p99.9").stat == "p99.9"


@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        ("    type: cloudwatch\n    max: 1", "needs `metric`", "metric"),
        (ALB_5XX_RATIO + "\n    expression: m1\n    metrics: {m1: {namespace: n, name: x}}",
         "not both", "expression"),
        ("    type: cloudwatch\n    expression: m1 / m2\n    max: 1", "needs `metrics`", "metrics"),
        (ALB_5XX_RATIO.replace("    max: 0.01\n", ""), "needs a threshold", "max"),
        (ALB_5XX_RATIO + "\n    min: 0.5", "min 0.5 is above max 0.01", "min"),
        (ALB_5XX_RATIO.replace("window: 5m", "window: 90s"), "whole number of minutes", "window"),
        (ALB_5XX_RATIO.replace("name: HTTPCode_Target_5XX_Count",
                               "name: TargetResponseTime\n      stat: Average"),
         "must be counts", "metric.stat"),
        (ALB_5XX_RATIO + "\n    samples: {name: RequestCount}", "remove `samples`", "samples"),
        (ALB_5XX_RATIO.replace("per: {name: RequestCount}", "per: {name: RequestCount, stat: p99}"),
         "must be counts", "per.stat"),
        (ALB_5XX_RATIO.replace("name: HTTPCode_Target_5XX_Count",
                               "name: HTTPCode_Target_5XX_Count\n      stat: mean"),
         "not a CloudWatch statistic", "metric.stat"),
        (ALB_5XX_RATIO.replace("      namespace: AWS/ApplicationELB\n", ""), "needs a namespace",
         "metric.namespace"),
        (ALB_5XX_RATIO.replace("per: {name: RequestCount}", ""), "needs `per` or `samples`",
         "min_samples"),
        ("    type: cloudwatch\n    expression: M1\n    metrics: {M1: {namespace: n, name: x}}\n    max: 1",
         "metric id 'M1'", "metrics.M1"),
        ("    type: cloudwatch\n    expression: m1\n    metrics: {m1: {name: x}}\n    max: 1",
         "needs a namespace", "metrics.m1.namespace"),
        ("    type: cloudwatch\n    expression: m1\n    metrics: {m1: {namespace: n, name: x}}\n"
         "    samples: requests\n    max: 1", "not one of the metrics", "samples"),
        ("    type: cloudwatch\n    expression: m1\n    metrics: {m1: {namespace: n, name: x}}\n"
         "    per: {namespace: n, name: y}\n    max: 1", "`per` goes with `metric`", "per"),
        (ALB_5XX_RATIO.replace("per: {name: RequestCount}",
                               "samples: {name: RequestCount, stat: Average}"),
         "sample size is a count", "samples.stat"),
        ("    type: cloudwatch_alarms", "needs alarm_names", "alarm_names"),
        ("    type: cloudwatch_alarms\n    alarm_names: [a]\n    alarm_name_prefix: a",
         "not both", "alarm_name_prefix"),
        ("    type: cloudwatch_alarms\n    alarm_names: []", "watches nothing", "alarm_names"),
        ("    type: cloudwatch_alarms\n    alarm_name_prefix: ' '", "is blank", "alarm_name_prefix"),
        # a name that matches nothing reads as 0 errors beside counted requests
        (ALB_5XX_RATIO.replace("HTTPCode_Target_5XX_Count", "HTTPCode_Target_5xx_Count"),
         "write HTTPCode_Target_5XX_Count", "metric.name"),
        (ALB_5XX_RATIO.replace("per: {name: RequestCount}", "per: {name: Requestcount}"),
         "write RequestCount", "per.name"),
        (ALB_5XX_RATIO.replace("per: {name: RequestCount}", "samples: {name: requestCount}"),
         "write RequestCount", "samples.name"),
        ("    type: cloudwatch\n    expression: FILL(e, 0) / r\n    max: 1\n    metrics:\n"
         "      e: {namespace: AWS/ApplicationELB, name: HTTPCode_Target_5XX_Count}\n"
         "      r: {namespace: AWS/ApplicationELB, name: UnhealthyHostCount}",
         "write UnHealthyHostCount", "metrics.r.name"),
    ],
)
def test_plan_errors_point_at_the_field(body: str, message: str, field: str) -> None:
    error = _plan_error(body)
    assert message in str(error)
    assert error.field == f"normal_state[0].{field}", str(error)
    assert error.file == "plan.yaml" and error.line is not None


def test_the_window_ends_at_the_next_whole_minute_of_the_wall_clock() -> None:
    start, end = window_bounds(1_700_000_030.2, 300)
    assert end == datetime.fromtimestamp(1_700_000_040, UTC)  # 1_700_000_040 = 28333334 min
    assert (end - start).total_seconds() == 300
    assert window_bounds(1_700_000_040.0, 60)[1] == end  # on the minute: that minute


# --- the metric gate against moto ------------------------------------------------


def test_a_ratio_of_sums_over_the_window(aws: Any) -> None:
    now = time.time()
    put_alb_traffic(100, 1, at=now - 5)
    put_alb_traffic(50, 2, at=now - 125)  # another minute of the same window
    put_alb_traffic(1000, 900, at=now - 900)  # before the window
    put_alb_traffic(500, 400, at=now - 5, target_group=OLD_TARGET_GROUP)  # another target group
    m = _measure(alb_5xx_gate())
    assert m.value == pytest.approx(3 / 150) and m.samples == 150 and m.at == NOW
    assert m.details["numerator"] == 3 and m.details["denominator"] == 150
    assert m.details["notes"] == []
    assert _verdict(alb_5xx_gate()).verdict is Verdict.PASS
    assert _verdict(alb_5xx_gate(max=0.01)).verdict is Verdict.FAIL


def test_an_absent_5xx_count_with_requests_is_zero_errors_and_passes(aws: Any) -> None:
    put_alb_traffic(120, 0)  # an ALB publishes no 5xx datapoint when there were none
    m = _measure(alb_5xx_gate())
    assert m.value == 0.0 and m.samples == 120
    assert "only when non-zero" in m.details["notes"][0]
    result = _verdict(alb_5xx_gate(min_samples=100))
    assert result.verdict is Verdict.PASS and result.value == 0.0


def test_no_datapoints_at_all_is_no_data(aws: Any) -> None:
    with pytest.raises(NoData, match=r"no traffic: .*RequestCount.* has no datapoint"):
        _measure(alb_5xx_gate())
    result = _verdict(alb_5xx_gate())
    assert result.verdict is Verdict.INCONCLUSIVE and not result.error


def test_a_denominator_of_zero_is_no_data(aws: Any) -> None:
    put_alb_traffic(0)
    put_metric("HTTPCode_Target_5XX_Count", 3)  # even with errors: nothing to divide by
    with pytest.raises(NoData, match="a sum of 0"):
        _measure(alb_5xx_gate())
    assert _verdict(alb_5xx_gate()).verdict is Verdict.INCONCLUSIVE


def test_min_samples_counts_the_requests(aws: Any) -> None:
    put_alb_traffic(50, 0)
    held = _verdict(alb_5xx_gate(min_samples=100))
    assert held.verdict is Verdict.INCONCLUSIVE and "50 samples, 100 required" in held.reason
    put_alb_traffic(60, 0, at=time.time() - 65)
    assert _verdict(alb_5xx_gate(min_samples=100)).verdict is Verdict.PASS
    put_alb_traffic(10, 30, at=time.time() - 65)  # 30 / 120
    failed = _verdict(alb_5xx_gate(min_samples=100))
    assert failed.verdict is Verdict.FAIL and failed.samples == 120 and failed.value == 0.25


def test_one_metric_with_a_samples_metric(aws: Any) -> None:
    dims = alb_dimensions()
    latency = CloudWatchMetric(namespace=ALB, name="TargetResponseTime", dimensions=dims,
                               stat="Average")
    spec = CloudWatchGate(type="cloudwatch", name="latency", metric=latency,
                          samples=CloudWatchMetric(name="RequestCount"), max=0.5, min_samples=2)
    put_metric("TargetResponseTime", 0.1, unit="Seconds")
    put_metric("TargetResponseTime", 0.4, unit="Seconds", at=time.time() - 70)
    put_alb_traffic(2)
    m = _measure(spec)
    assert m.value == pytest.approx(0.25) and m.samples == 2  # CloudWatch's average over the window
    assert _verdict(spec).verdict is Verdict.PASS


def test_one_count_without_a_datapoint(aws: Any) -> None:
    errors = CloudWatchMetric(namespace=ALB, name="HTTPCode_Target_5XX_Count",
                              dimensions=alb_dimensions())
    counted = CloudWatchGate(type="cloudwatch", name="5xx", metric=errors,
                             samples=CloudWatchMetric(name="RequestCount"), max=5)
    alone = CloudWatchGate(type="cloudwatch", name="5xx", metric=errors, max=5)
    put_alb_traffic(40, 0)
    m = _measure(counted)
    assert m.value == 0.0 and m.samples == 40  # absent with traffic counted: 0
    with pytest.raises(NoData, match="has no datapoint"):  # nothing vouches for the absence
        _measure(alone)


def test_an_expression_is_sent_as_written(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = {
        "errors": CloudWatchMetric(namespace=ALB, name="HTTPCode_Target_5XX_Count",
                                   dimensions=alb_dimensions()),
        "requests": CloudWatchMetric(namespace=ALB, name="RequestCount", dimensions=alb_dimensions()),
    }
    put_alb_traffic(200, 7)

    def gate(expression: str) -> CloudWatchGate:
        return CloudWatchGate(type="cloudwatch", name="x", expression=expression, metrics=metrics,
                              samples="requests", max=10, min_samples=100)

    # moto evaluates no math: a bare id is the one expression it answers
    provider = CloudWatchProvider.from_spec(gate("errors"))
    calls = _wrap(monkeypatch, provider, "get_metric_data", lambda f, kw: f(**kw))
    m = provider.measure(now=NOW)
    assert m.value == 7 and m.samples == 200
    sent = {q["Id"]: q for q in calls[0]["MetricDataQueries"]}
    assert sent["shiftover_value"]["Expression"] == "errors"
    assert sent["errors"]["ReturnData"] is False and sent["requests"]["ReturnData"] is True
    assert judge(gate("errors"), m, now=NOW).verdict is Verdict.PASS

    # real math: moto answers no datapoints, which is NoData with the FILL hint
    with pytest.raises(NoData) as info:
        _measure(gate("FILL(errors, 0) / requests"))
    assert "FILL(id, 0)" in str(info.value)


def test_the_window_is_the_wall_clocks(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put_alb_traffic(10, 1)
    provider = CloudWatchProvider(alb_5xx_gate(window="10m"), clock=lambda: 1_700_000_030.2)
    calls = _wrap(monkeypatch, provider, "get_metric_data", lambda f, kw: f(**kw))
    with pytest.raises(NoData):  # 2023: nothing there
        provider.measure(now=NOW)
    assert calls[0]["EndTime"] == datetime.fromtimestamp(1_700_000_040, UTC)
    assert calls[0]["StartTime"] == datetime.fromtimestamp(1_700_000_040 - 600, UTC)
    assert {q["MetricStat"]["Period"] for q in calls[0]["MetricDataQueries"]} == {600}


def test_pages_of_results_are_added_up(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put_alb_traffic(100, 4)
    provider = CloudWatchProvider.from_spec(alb_5xx_gate())

    def paged(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if "NextToken" in kwargs:  # second page: 20 more requests, no more errors
            return {"MetricDataResults": [
                {"Id": "shiftover_per", "Values": [20.0], "StatusCode": "Complete"}]}
        reply = original(**kwargs)
        reply["NextToken"] = "page-2"
        return reply

    calls = _wrap(monkeypatch, provider, "get_metric_data", paged)
    m = provider.measure(now=NOW)
    assert m.value == pytest.approx(4 / 120) and m.samples == 120 and len(calls) == 2


def test_a_forbidden_query_is_an_error(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = CloudWatchProvider.from_spec(alb_5xx_gate())
    _wrap(monkeypatch, provider, "get_metric_data", lambda f, kw: {"MetricDataResults": [
        {"Id": "shiftover_value", "Values": [], "StatusCode": "Forbidden",
         "Messages": [{"Code": "Forbidden", "Value": "no access to account 123"}]},
        {"Id": "shiftover_per", "Values": [], "StatusCode": "Complete"}]})
    with pytest.raises(ProviderError, match=r"Forbidden.*no access to account 123") as info:
        provider.measure(now=NOW)
    assert not isinstance(info.value, NoData) and "GetMetricData" in str(info.value.hint)


def test_a_query_cloudwatch_refuses_says_to_fix_the_gate(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = CloudWatchProvider.from_spec(alb_5xx_gate())

    def refused(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        raise _client_error("ValidationError", "GetMetricData", "Unrecognized token 'errors +'")

    _wrap(monkeypatch, provider, "get_metric_data", refused)
    with pytest.raises(ProviderError, match="ValidationError: Unrecognized token") as info:
        provider.measure(now=NOW)
    assert "expression" in str(info.value.hint) and "ENDPOINT" not in str(info.value.hint)


def test_several_datapoints_of_an_average_are_not_averaged_again(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    latency = CloudWatchMetric(namespace=ALB, name="TargetResponseTime",
                               dimensions=alb_dimensions(), stat="Average")
    provider = CloudWatchProvider.from_spec(
        CloudWatchGate(type="cloudwatch", name="latency", metric=latency, max=0.5))
    _wrap(monkeypatch, provider, "get_metric_data", lambda f, kw: {"MetricDataResults": [
        {"Id": "shiftover_value", "Values": [0.2, 0.9], "StatusCode": "Complete"}]})
    with pytest.raises(ProviderError, match="2 datapoints") as info:
        provider.measure(now=NOW)
    assert not isinstance(info.value, NoData)


def test_details_are_journal_ready(aws: Any) -> None:
    put_alb_traffic(100, 0)
    create_alarm("web-5xx", "ALARM")
    for spec in (alb_5xx_gate(), alarms_gate()):
        details = _measure(spec).details
        assert json.loads(json.dumps(details)) == details


# --- the alarms gate against moto ---------------------------------------------------


def test_alarms_in_each_state(aws: Any) -> None:
    create_alarm("web-5xx", "OK")
    create_alarm("web-latency", "OK")
    create_alarm("billing-5xx", "ALARM")  # another prefix: not this gate's
    spec = alarms_gate()
    m = _measure(spec)
    assert m.value == 0 and m.samples == 2 and m.details["ok"] == 2 and m.at == NOW
    assert _verdict(spec).verdict is Verdict.PASS

    create_alarm("web-latency", "INSUFFICIENT_DATA")
    held = _verdict(spec)
    assert held.verdict is Verdict.INCONCLUSIVE and not held.error
    assert "web-latency" in held.reason

    create_alarm("web-5xx", "ALARM", reason="Threshold Crossed: 1 datapoint [42.0] > 10.0")
    m = _measure(spec)
    assert m.value == 1 and m.details["no_data"] == ["web-latency"]
    [firing] = m.details["firing"]
    assert firing["alertname"] == "web-5xx" and firing["kind"] == "metric"
    assert "Threshold Crossed" in firing["reason"] and firing["since"]
    assert firing["metric"] == f"{ALB} HTTPCode_Target_5XX_Count"
    failed = _verdict(spec)
    assert failed.verdict is Verdict.FAIL and "web-5xx" in failed.reason  # ALARM beats no data


def test_alarms_by_name(aws: Any) -> None:
    create_alarm("web-5xx", "OK")
    create_alarm("web-latency", "ALARM")
    create_alarm("web-5xx-old", "ALARM")  # shares a prefix, not listed
    m = _measure(alarms_gate(alarm_name_prefix=None, alarm_names=["web-5xx"]))
    assert m.value == 0 and m.samples == 1
    m = _measure(alarms_gate(alarm_name_prefix=None, alarm_names=["web-5xx", "web-latency"]))
    assert m.value == 1 and [f["alertname"] for f in m.details["firing"]] == ["web-latency"]


def test_listed_alarms_that_do_not_exist_are_named(aws: Any) -> None:
    create_alarm("web-5xx", "OK")
    spec = alarms_gate(alarm_name_prefix=None, alarm_names=["web-5xx", "web-latncy", "web-p99"])
    with pytest.raises(ProviderError) as info:
        _measure(spec)
    assert not isinstance(info.value, NoData)
    assert "no such alarms" in info.value.message and "web-latncy, web-p99" in info.value.message
    assert "web-5xx" not in info.value.message.split(":")[-1]
    assert info.value.hint
    result = _verdict(spec)
    assert result.verdict is Verdict.INCONCLUSIVE and result.error


def test_a_prefix_that_matches_nothing_is_an_error(aws: Any) -> None:
    create_alarm("billing-5xx", "OK")
    with pytest.raises(ProviderError, match="no alarms match prefix 'web-'") as info:
        _measure(alarms_gate())
    assert not isinstance(info.value, NoData) and "--alarm-name-prefix 'web-'" in str(info.value.hint)
    assert _verdict(alarms_gate()).error


def test_composite_alarms_are_asked_for_and_count(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    create_alarm("web-5xx", "OK")
    provider = CloudWatchAlarmsProvider.from_spec(alarms_gate())

    def with_composite(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        reply = original(**kwargs)  # moto has no PutCompositeAlarm: add one as AWS returns it
        reply["CompositeAlarms"] = [{
            "AlarmName": "web-any", "StateValue": "ALARM", "StateReason": "web-5xx or web-latency",
            "AlarmRule": 'ALARM("web-5xx") OR ALARM("web-latency")',
            "StateUpdatedTimestamp": datetime(2027, 1, 15, 8, 0, tzinfo=UTC)}]
        return reply

    calls = _wrap(monkeypatch, provider, "describe_alarms", with_composite)
    m = provider.measure(now=NOW)
    assert calls[0]["AlarmTypes"] == ["MetricAlarm", "CompositeAlarm"]
    assert m.value == 1 and m.samples == 2
    assert m.details["firing"] == [{"alertname": "web-any", "kind": "composite",
                                    "reason": "web-5xx or web-latency",
                                    "since": "2027-01-15T08:00:00+00:00"}]


def test_every_page_of_alarms_is_read(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("web-a", "web-b", "web-c"):
        create_alarm(name, "OK")
    create_alarm("web-c", "ALARM")
    provider = CloudWatchAlarmsProvider.from_spec(alarms_gate())

    def one_per_page(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        alarms = original(**{k: v for k, v in kwargs.items() if k != "NextToken"})["MetricAlarms"]
        at = int(kwargs.get("NextToken", 0))
        reply: dict[str, Any] = {"MetricAlarms": alarms[at:at + 1], "CompositeAlarms": []}
        if at + 1 < len(alarms):
            reply["NextToken"] = str(at + 1)
        return reply

    calls = _wrap(monkeypatch, provider, "describe_alarms", one_per_page)
    m = provider.measure(now=NOW)
    assert len(calls) == 3 and m.samples == 3 and m.value == 1


def test_more_than_a_hundred_names_are_asked_in_batches(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_alarm("web-5xx", "ALARM")
    names = ["web-5xx"] + [f"web-{i:03d}" for i in range(150)]
    provider = CloudWatchAlarmsProvider.from_spec(
        alarms_gate(alarm_name_prefix=None, alarm_names=names))
    calls = _wrap(monkeypatch, provider, "describe_alarms", lambda f, kw: f(**kw))
    with pytest.raises(ProviderError, match="web-000, web-001") as info:
        provider.measure(now=NOW)
    assert "web-5xx," not in info.value.message
    assert [len(c["AlarmNames"]) for c in calls] == [100, 51]


# --- AWS failing --------------------------------------------------------------------

SPECS: list[Callable[[], Any]] = [alb_5xx_gate, alarms_gate]


@pytest.mark.parametrize("make", SPECS, ids=["cloudwatch", "cloudwatch_alarms"])
def test_an_unreachable_endpoint_is_an_error_then_recovers(
    aws: Any, monkeypatch: pytest.MonkeyPatch, make: Callable[[], Any]
) -> None:
    put_alb_traffic(100, 1)
    create_alarm("web-5xx", "OK")
    provider = build_provider(make())
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError) as info:
        provider.measure(now=NOW)
    error = info.value
    assert not isinstance(error, NoData)
    assert "cannot reach the AWS endpoint" in error.message and "127.0.0.1" in error.message
    assert "AWS_ENDPOINT_URL" in str(error.hint)
    result = judge(make(), error, now=NOW)
    assert result.verdict is Verdict.INCONCLUSIVE and result.error
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)  # the next check builds a fresh client
    assert provider.measure(now=NOW).at == NOW


@pytest.mark.parametrize("make", SPECS, ids=["cloudwatch", "cloudwatch_alarms"])
def test_the_password_of_an_endpoint_url_is_never_repeated(
    aws: Any, monkeypatch: pytest.MonkeyPatch, make: Callable[[], Any]
) -> None:
    """botocore quotes the URL it could not reach, user info included."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://shiftover:s3cret-pw@127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError) as info:
        build_provider(make()).measure(now=NOW)
    error = info.value
    assert "cannot reach the AWS endpoint" in error.message and "***@127.0.0.1" in error.message
    assert "s3cret-pw" not in f"{error.message} {error.hint}"
    assert "s3cret-pw" not in judge(make(), error, now=NOW).reason


@pytest.mark.parametrize(("make", "method"), [(alb_5xx_gate, "get_metric_data"),
                                              (alarms_gate, "describe_alarms")],
                         ids=["cloudwatch", "cloudwatch_alarms"])
def test_throttling_is_retried(
    aws: Any, monkeypatch: pytest.MonkeyPatch, make: Callable[[], Any], method: str
) -> None:
    put_alb_traffic(100, 1)
    create_alarm("web-5xx", "OK")
    provider = build_provider(make())
    throttled = [_client_error("Throttling", "Op"), _client_error("ThrottlingException", "Op")]

    def flaky(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if throttled:
            raise throttled.pop(0)
        return original(**kwargs)

    calls = _wrap(monkeypatch, provider, method, flaky)
    m = provider.measure(now=NOW)
    assert len(calls) == 3 and m.samples is not None and m.samples > 0


def test_throttling_past_the_timeout_is_an_error(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = build_provider(alb_5xx_gate(timeout="300ms"))

    def always(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        raise _client_error("Throttling", "GetMetricData")

    _wrap(monkeypatch, provider, "get_metric_data", always)
    with pytest.raises(ProviderError, match="still throttled") as info:
        provider.measure(now=NOW)
    assert "throttling" in str(info.value.hint)
    assert judge(alb_5xx_gate(), info.value, now=NOW).error


@pytest.mark.parametrize(("make", "method"), [(alb_5xx_gate, "get_metric_data"),
                                              (alarms_gate, "describe_alarms")],
                         ids=["cloudwatch", "cloudwatch_alarms"])
def test_access_denied_is_an_error(
    aws: Any, monkeypatch: pytest.MonkeyPatch, make: Callable[[], Any], method: str
) -> None:
    provider = build_provider(make())

    def denied(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        raise _client_error("AccessDenied", "Op", "User: arn:aws:iam::1:user/ci is not authorized")

    _wrap(monkeypatch, provider, method, denied)
    with pytest.raises(ProviderError, match="access denied by IAM") as info:
        provider.measure(now=NOW)
    assert not isinstance(info.value, NoData) and "IAM" in str(info.value.hint)
    assert judge(make(), info.value, now=NOW).error


def test_an_answer_that_is_not_cloudwatchs_is_an_error(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = build_provider(alb_5xx_gate())
    _wrap(monkeypatch, provider, "get_metric_data", lambda f, kw: {"ResponseMetadata": {}})
    with pytest.raises(ProviderError, match="no MetricDataResults") as info:
        provider.measure(now=NOW)
    assert "AWS_ENDPOINT_URL" in str(info.value.hint)


def test_no_region_is_an_error_with_the_fix(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    create_alarm("web-5xx", "OK")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ProviderError, match="no AWS region") as info:
        _measure(alarms_gate())
    assert "AWS_REGION" in str(info.value.hint)
    m = _measure(alarms_gate(region="us-east-1"))  # the gate's region: field
    assert m.samples == 1 and m.details["region"] == "us-east-1"


# --- the compare gate's source: sums of each environment's counts ----------------

COMPARE_PLAN = plan_yaml("""\
  - {{name: alarms, type: cloudwatch_alarms, region: eu-west-1, alarm_name_prefix: web-}}
  - name: errors vs old
    type: compare
    source:
{source}
""", steps="[10, 50, 100]")

ALB_COUNTS = """\
      type: cloudwatch
      region: eu-west-1
      old:
        requests:
          namespace: AWS/ApplicationELB
          name: RequestCount
          dimensions: {LoadBalancer: app/web/50dc6c495c0c9188, TargetGroup: targetgroup/ec2-web/0a1b2c3d4e5f6a7b}
        errors: {name: HTTPCode_Target_5XX_Count}
      new:
        requests:
          namespace: AWS/ApplicationELB
          name: RequestCount
          dimensions: {LoadBalancer: app/web/50dc6c495c0c9188, TargetGroup: targetgroup/eks-web/73e2d6bc24d8a067}
        errors: {name: HTTPCode_Target_5XX_Count}"""


def _source(body: str) -> Any:
    plan = parse_plan_text(COMPARE_PLAN.format(source=body), filename="plan.yaml", env={}).plan
    return plan.normal_state[1].source


def _counts_spec(**fields: Any) -> CloudWatchCountsSpec:
    def env(target_group: str) -> dict[str, Any]:
        return {"requests": {"namespace": ALB, "name": "RequestCount",
                             "dimensions": alb_dimensions(target_group)},
                "errors": {"name": "HTTPCode_Target_5XX_Count"}}

    return CloudWatchCountsSpec(**{"type": "cloudwatch", "old": env(OLD_TARGET_GROUP),
                                   "new": env(TARGET_GROUP), "timeout": 5.0, **fields})


MINUTE = 1_800_000_000.0  # a whole minute (1_800_000_000 / 60 = 30_000_000)


def test_a_compare_gate_takes_cloudwatch_sums_and_errors_take_the_requests_dimensions() -> None:
    source = _source(ALB_COUNTS)
    assert isinstance(source, CloudWatchCountsSpec) and source.region == "eu-west-1"
    errors = source.new.errors_metric()
    assert (errors.namespace, errors.name, errors.stat) == (ALB, "HTTPCode_Target_5XX_Count", "Sum")
    assert errors.dimensions == source.new.requests.dimensions
    assert "eks-web" in CloudWatchCounts.from_spec(source).describe()


@pytest.mark.parametrize(("change", "message"), [
    ("        errors: {name: HTTPCode_Target_5XX_Count, stat: Average}",
     "the statistic must be Sum, not Average"),
    ("        errors: {name: HTTPCode_Target_5xx_Count}", "write HTTPCode_Target_5XX_Count"),
    ("        errors: {name: RequestCount}", "errors and requests are the same metric"),
])
def test_cloudwatch_sums_refuse_what_cannot_count(change: str, message: str) -> None:
    body = ALB_COUNTS.replace("        errors: {name: HTTPCode_Target_5XX_Count}", change, 1)
    with pytest.raises(PlanError, match=message):
        _source(body)


def test_cloudwatch_sums_refuse_one_target_group_for_both() -> None:
    with pytest.raises(PlanError, match="old and new count the same requests metric"):
        _source(ALB_COUNTS.replace("ec2-web/0a1b2c3d4e5f6a7b", "eks-web/73e2d6bc24d8a067"))


def test_the_span_is_whole_minutes_the_step_starts_at_the_next_one() -> None:
    assert count_span(MINUTE, MINUTE) == (MINUTE, MINUTE)
    assert count_span(MINUTE + 1, MINUTE + 1) == (MINUTE + 60, MINUTE + 60)  # nothing yet
    assert count_span(MINUTE + 1, MINUTE + 61) == (MINUTE + 60, MINUTE + 120)
    assert count_span(MINUTE + 1, MINUTE + 300) == (MINUTE + 60, MINUTE + 300)


def test_sums_of_both_environments_over_the_steps_whole_minutes(aws: Any) -> None:
    since = MINUTE + 20  # the step starts 20 s into a minute
    put_alb_traffic(500, 400, at=MINUTE + 5, target_group=TARGET_GROUP)  # the step before
    put_alb_traffic(100, 0, at=MINUTE + 70, target_group=OLD_TARGET_GROUP)
    put_alb_traffic(10, 2, at=MINUTE + 70, target_group=TARGET_GROUP)
    put_alb_traffic(90, 1, at=MINUTE + 130, target_group=OLD_TARGET_GROUP)
    put_alb_traffic(9, 0, at=MINUTE + 130, target_group=TARGET_GROUP)
    source = CloudWatchCounts.from_spec(_counts_spec())
    assert source.counts(since=since, now=since) == EnvCounts(0, 0, 0, 0)
    assert source.counts(since=since, now=MINUTE + 59) == EnvCounts(0, 0, 0, 0)
    # the minute in progress counts as far as CloudWatch has it
    assert source.counts(since=since, now=MINUTE + 100) == EnvCounts(100, 0, 10, 2)
    assert source.counts(since=since, now=MINUTE + 150) == EnvCounts(190, 1, 19, 2)
    # a late datapoint of a minute already counted: the counts grow, never go down
    put_alb_traffic(7, 3, at=MINUTE + 80, target_group=TARGET_GROUP)
    assert source.counts(since=since, now=MINUTE + 150) == EnvCounts(190, 1, 26, 5)


def test_no_requests_datapoint_is_no_data_and_no_5xx_datapoint_is_zero(aws: Any) -> None:
    source = CloudWatchCounts.from_spec(_counts_spec())
    put_alb_traffic(100, 0, at=MINUTE + 10, target_group=OLD_TARGET_GROUP)
    with pytest.raises(NoData, match=r"eks-web.*no requests counted yet") as info:
        source.counts(since=MINUTE, now=MINUTE + 60)
    assert "dimension" in str(info.value.hint)
    put_alb_traffic(50, 0, at=MINUTE + 10, target_group=TARGET_GROUP)
    assert source.counts(since=MINUTE, now=MINUTE + 60) == EnvCounts(100, 0, 50, 0)


@pytest.mark.parametrize(("value", "expected"), [(3.0000000001, 3), (2.5, None)])
def test_sums_are_rounded_only_when_they_are_whole(aws: Any, value: float, expected: int | None) -> None:
    put_alb_traffic(100, 0, at=MINUTE + 10, target_group=OLD_TARGET_GROUP)
    put_metric("RequestCount", 10, dimensions=alb_dimensions(TARGET_GROUP), at=MINUTE + 10)
    put_metric("HTTPCode_Target_5XX_Count", value, dimensions=alb_dimensions(TARGET_GROUP),
               at=MINUTE + 10)
    source = CloudWatchCounts.from_spec(_counts_spec())
    if expected is not None:
        assert source.counts(since=MINUTE, now=MINUTE + 60) == EnvCounts(100, 0, 10, expected)
        return
    with pytest.raises(ProviderError, match=r"summed to 2\.5, not a whole number") as info:
        source.counts(since=MINUTE, now=MINUTE + 60)
    assert not isinstance(info.value, NoData) and "Count metric" in str(info.value.hint)


def test_more_errors_than_requests_is_an_error(aws: Any) -> None:
    put_alb_traffic(100, 0, at=MINUTE + 10, target_group=OLD_TARGET_GROUP)
    put_alb_traffic(3, 4, at=MINUTE + 10, target_group=TARGET_GROUP)
    with pytest.raises(ProviderError, match="new: HTTPCode_Target_5XX_Count summed to 4") as info:
        CloudWatchCounts.from_spec(_counts_spec()).counts(since=MINUTE, now=MINUTE + 60)
    assert not isinstance(info.value, NoData) and "subset" in str(info.value.hint)


def test_the_sums_query_is_one_request_of_four_sums_per_minute(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = CloudWatchCounts.from_spec(_counts_spec())
    calls = _wrap(monkeypatch, source, "get_metric_data", lambda f, kw: f(**kw))
    source.counts(since=MINUTE + 20, now=MINUTE + 20)  # the mark asks too: the minute before
    put_alb_traffic(1, 0, at=MINUTE + 70, target_group=OLD_TARGET_GROUP)
    put_alb_traffic(1, 0, at=MINUTE + 70, target_group=TARGET_GROUP)
    source.counts(since=MINUTE + 20, now=MINUTE + 200)
    spans = [(c["StartTime"].timestamp(), c["EndTime"].timestamp()) for c in calls]
    assert spans == [(MINUTE, MINUTE + 60), (MINUTE + 60, MINUTE + 240)]
    queries = calls[-1]["MetricDataQueries"]
    assert sorted(q["Id"] for q in queries) == ["new_errors", "new_requests", "old_errors",
                                                "old_requests"]
    assert {(q["MetricStat"]["Period"], q["MetricStat"]["Stat"]) for q in queries} == {(60, "Sum")}


def test_a_sums_query_cloudwatch_refuses_is_an_error_from_the_first_call(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = CloudWatchCounts.from_spec(_counts_spec())

    def refused(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        raise _client_error("ValidationError", "GetMetricData", "The value for parameter "
                            "MetricDataQueries.member.1.MetricStat.Metric.Dimensions is invalid")

    _wrap(monkeypatch, source, "get_metric_data", refused)
    with pytest.raises(ProviderError, match="ValidationError") as info:
        source.counts(since=MINUTE, now=MINUTE)
    assert not isinstance(info.value, NoData) and "dimensions" in str(info.value.hint)
