"""CloudWatch metric data and alarms in the local AWS double (moto), for the gate
tests, the provider contract suite and the end-to-end runs.

Everything here talks to whatever the standard AWS variables point at: use it
under the ``aws`` fixture (tests/conftest.py), which resets moto and points
``AWS_ENDPOINT_URL`` and the credentials there.

- :func:`put_alb_traffic` publishes what an ALB publishes for one target group
  in one minute: ``RequestCount`` always, ``HTTPCode_Target_5XX_Count`` only
  when non-zero (CloudWatch never sees a zero 5xx count from an ALB).
- :func:`create_alarm` makes a metric alarm and puts it in a state (moto never
  evaluates alarms; ``set_alarm_state`` is how tests move them).
- :func:`alb_5xx_gate` / :func:`alarms_gate`: gate specs for those.
- :class:`ContractBackend`, :func:`metric_case`, :func:`alarms_case`: the
  ``Backend`` of tests/contracts/test_provider_contract.py for both gate types.
  The contract's scripted HTTP server plays the network failures (the client's
  endpoint is pointed at it); the modes in :data:`METRIC_FAILURES` and
  :data:`ALARM_FAILURES` are played with real data in moto.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from shiftover.providers.cloudwatch import CloudWatchAlarmsGate, CloudWatchGate, CloudWatchMetric

ALB = "AWS/ApplicationELB"
LOAD_BALANCER = "app/web/50dc6c495c0c9188"
TARGET_GROUP = "targetgroup/eks-web/73e2d6bc24d8a067"
OLD_TARGET_GROUP = "targetgroup/ec2-web/0a1b2c3d4e5f6a7b"


def alb_dimensions(target_group: str = TARGET_GROUP, load_balancer: str = LOAD_BALANCER) -> dict[str, str]:
    return {"LoadBalancer": load_balancer, "TargetGroup": target_group}


def cloudwatch() -> Any:
    """A plain boto3 CloudWatch client (region and endpoint from the environment)."""
    import boto3

    return boto3.client("cloudwatch")


def _stamp(at: float | None) -> datetime:
    return datetime.fromtimestamp(time.time() if at is None else at, UTC)


def put_metric(
    name: str,
    value: float,
    *,
    namespace: str = ALB,
    dimensions: dict[str, str] | None = None,
    at: float | None = None,
    unit: str = "Count",
) -> None:
    """One datapoint at ``at`` (epoch seconds; default: now)."""
    dims = alb_dimensions() if dimensions is None else dimensions
    cloudwatch().put_metric_data(
        Namespace=namespace,
        MetricData=[{
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dims.items())],
            "Timestamp": _stamp(at),
            "Value": value,
            "Unit": unit,
        }],
    )


def put_alb_traffic(
    requests: int,
    errors_5xx: int = 0,
    *,
    at: float | None = None,
    target_group: str = TARGET_GROUP,
    load_balancer: str = LOAD_BALANCER,
) -> None:
    """What an ALB publishes for a target group: RequestCount always, the 5xx
    count only when it is not 0."""
    dims = alb_dimensions(target_group, load_balancer)
    put_metric("RequestCount", requests, dimensions=dims, at=at)
    if errors_5xx:
        put_metric("HTTPCode_Target_5XX_Count", errors_5xx, dimensions=dims, at=at)


def create_alarm(name: str, state: str = "OK", *, reason: str = "set by the test") -> None:
    """A metric alarm on the target group's 5xx count, put in ``state``."""
    client = cloudwatch()
    client.put_metric_alarm(
        AlarmName=name,
        Namespace=ALB,
        MetricName="HTTPCode_Target_5XX_Count",
        Dimensions=[{"Name": k, "Value": v} for k, v in sorted(alb_dimensions().items())],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10,
        ComparisonOperator="GreaterThanThreshold",
    )
    set_alarm(name, state, reason=reason)


def set_alarm(name: str, state: str, *, reason: str = "set by the test") -> None:
    cloudwatch().set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


def alb_5xx_gate(**fields: Any) -> CloudWatchGate:
    """The target group's 5xx ratio (5xx per request) over 5 minutes, at most 5%."""
    spec: dict[str, Any] = {
        "type": "cloudwatch",
        "name": "eks-5xx",
        "metric": CloudWatchMetric(namespace=ALB, name="HTTPCode_Target_5XX_Count",
                                   dimensions=alb_dimensions()),
        "per": CloudWatchMetric(name="RequestCount"),
        "window": "5m",
        "max": 0.05,
        **fields,
    }
    return CloudWatchGate(**spec)


def alarms_gate(**fields: Any) -> CloudWatchAlarmsGate:
    spec: dict[str, Any] = {"type": "cloudwatch_alarms", "name": "web-alarms",
                            "alarm_name_prefix": "web-", **fields}
    return CloudWatchAlarmsGate(**spec)


# --- the provider contract's backends ----------------------------------------------

# mode -> what it must give (an Expect name in the contract suite)
METRIC_FAILURES: dict[str, str] = {
    "cw_no_traffic": "NODATA",  # no datapoint at all in the window
    "cw_zero_requests": "NODATA",  # RequestCount 0: nothing to divide by
    "cw_other_target_group": "NODATA",  # traffic, but on another target group (a typo'd dimension)
    "cw_no_5xx_datapoint": "VALUE",  # requests, no 5xx published: 0 errors, not no data
    "cw_errors": "FAILS",  # 40% of the new target group's requests fail
}
ALARM_FAILURES: dict[str, str] = {
    "cw_alarm_firing": "FAILS",
    "cw_insufficient_data": "VALUE",  # a measurement the judge holds on (details["no_data"])
    "cw_no_alarms": "ERROR",  # nothing matches the prefix / the names do not exist
}
MODES = frozenset(METRIC_FAILURES) | frozenset(ALARM_FAILURES)


def _play_metric(mode: str) -> None:
    if mode == "healthy":
        put_alb_traffic(100, 1)
    elif mode == "cw_zero_requests":
        put_alb_traffic(0)
    elif mode == "cw_other_target_group":
        put_alb_traffic(100, 50, target_group=OLD_TARGET_GROUP)
    elif mode == "cw_no_5xx_datapoint":
        put_alb_traffic(100, 0)
    elif mode == "cw_errors":
        put_alb_traffic(100, 40)
    elif mode != "cw_no_traffic":  # pragma: no cover
        raise AssertionError(mode)


ALARM_NAMES = ("web-5xx", "web-latency")


def _play_alarms(mode: str) -> None:
    if mode == "cw_no_alarms":
        return
    create_alarm("web-5xx", "ALARM" if mode == "cw_alarm_firing" else "OK")
    create_alarm("web-latency", "INSUFFICIENT_DATA" if mode == "cw_insufficient_data" else "OK")
    create_alarm("billing-5xx", "ALARM")  # matches neither the prefix nor the names


@dataclass
class ContractBackend:
    """One gate type against moto, or against the contract's scripted HTTP server
    (any mode not in ``modes``: the AWS endpoint is pointed at it)."""

    moto: Any  # shiftover.demo.moto.MotoServer
    monkeypatch: pytest.MonkeyPatch
    scripted: Any  # the contract's ScriptedHttp: .mode, .port, .refused_port
    make_spec: Callable[[], Any]
    play: Callable[[str], None]
    modes: dict[str, str]
    warm_up: int = 0

    def spec(self) -> Any:
        return self.make_spec()

    def _endpoint(self, url: str) -> None:
        self.monkeypatch.setenv("AWS_ENDPOINT_URL", url)

    def healthy(self) -> None:
        self._set("healthy")

    def _set(self, mode: str) -> None:
        self._endpoint(self.moto.url)
        self.moto.reset()
        self.play(mode)

    def fail(self, mode: str) -> None:
        if mode in self.modes:
            self._set(mode)
            return
        self._set("healthy")
        self.scripted.mode = mode
        port = self.scripted.refused_port if mode == "refused" else self.scripted.port
        self._endpoint(f"http://127.0.0.1:{port}")

    def prime(self) -> None:
        pass


@contextmanager
def _case(
    request: pytest.FixtureRequest,
    scripted_factory: Callable[..., Any],
    make_spec: Callable[[], Any],
    play: Callable[[str], None],
    modes: dict[str, str],
) -> Iterator[ContractBackend]:
    moto = request.getfixturevalue("aws")
    server = scripted_factory({})
    try:
        backend = ContractBackend(moto, request.getfixturevalue("monkeypatch"), server,
                                  make_spec, play, modes)
        backend.healthy()
        yield backend
    finally:
        server.close()


def metric_case(
    request: pytest.FixtureRequest, scripted_factory: Callable[..., Any], timeout: str
) -> Any:
    return _case(request, scripted_factory, lambda: alb_5xx_gate(timeout=timeout),
                 _play_metric, METRIC_FAILURES)


def alarms_case(
    request: pytest.FixtureRequest,
    scripted_factory: Callable[..., Any],
    timeout: str,
    *,
    by_names: bool = False,
) -> Any:
    def make_spec() -> CloudWatchAlarmsGate:
        if by_names:
            return alarms_gate(alarm_name_prefix=None, alarm_names=list(ALARM_NAMES), timeout=timeout)
        return alarms_gate(timeout=timeout)

    return _case(request, scripted_factory, make_spec, _play_alarms, ALARM_FAILURES)
