"""The HPA arithmetic, case by case against kube-controller-manager.

Sources: the HPA documentation's worked examples (kubernetes.io, "Horizontal Pod
Autoscaling": algorithm details and the behavior examples), and tables derived
by hand from horizontal.go / replica_calculator.go; each row names the code
path it exercises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from shiftover.errors import BadInput
from shiftover.scaling.hpa import (
    Behavior,
    ControllerConstants,
    HPAController,
    HPASpec,
    MetricSpec,
    MetricTarget,
    PodSample,
    Recommendation,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    SyncInput,
    SyncResult,
    sync,
)

OLD = (Recommendation(1, 10_000.0),)  # a history with nothing inside any window


def ext(name: str = "rps", kind: str = "AverageValue", target: float = 100.0) -> MetricSpec:
    return MetricSpec("External", name, MetricTarget(kind, target))  # type: ignore[arg-type]


def pods_metric(name: str = "rps", target: float = 100.0) -> MetricSpec:
    return MetricSpec("Pods", name, MetricTarget("AverageValue", target))


def cpu(util: int = 50) -> MetricSpec:
    return MetricSpec("Resource", "cpu", MetricTarget("Utilization", util))


def pod(
    value: float | None = None, *, name: str = "cpu", request: float = 1.0, **kw: object
) -> PodSample:
    """A Running, Ready pod, started 1000 s ago, Ready for 900 s (past every initialisation period)."""
    fields: dict[str, object] = {"ready": True, "age_seconds": 1000.0, "ready_age_seconds": 900.0}
    fields.update(kw)
    metrics = {} if value is None else {name: value}
    return PodSample(metrics=metrics, requests={name: request}, **fields)  # type: ignore[arg-type]


def pending(name: str = "cpu", request: float = 1.0) -> PodSample:
    return PodSample(False, 5.0, None, {}, {name: request}, phase="Pending")


def run(spec: HPASpec, current: int, **kw: object) -> SyncResult:
    kw.setdefault("recommendations", OLD)
    return sync(SyncInput(spec=spec, current_replicas=current, **kw))  # type: ignore[arg-type]


# --- the documentation's worked examples ------------------------------------------------


def test_doc_200m_vs_100m_doubles() -> None:
    spec = HPASpec(1, 100, (pods_metric("m", 0.1),))
    r = run(spec, 3, pods=tuple(pod(0.2, name="m") for _ in range(3)))
    assert r.desired_replicas == 6


def test_doc_50m_vs_100m_halves() -> None:
    spec = HPASpec(1, 100, (pods_metric("m", 0.1),))
    r = run(spec, 4, pods=tuple(pod(0.05, name="m") for _ in range(4)))
    assert r.desired_replicas == 2


def test_doc_ratio_close_to_one_skips_scaling() -> None:
    spec = HPASpec(1, 100, (pods_metric("m", 0.1),))
    r = run(spec, 4, pods=tuple(pod(0.105, name="m") for _ in range(4)))
    assert r.desired_replicas == 4


def _behavior_loop(spec: HPASpec, start: int, want: int, syncs: int, dt: float = 15.0) -> list[int]:
    """Sync every dt seconds with an External AverageValue metric that asks for `want` pods."""
    current = start
    hist: SyncResult | None = None
    seen = []
    for _ in range(syncs):
        inp = SyncInput(
            spec=spec,
            current_replicas=current,
            external_metrics={"rps": [100.0 * want]},
            recommendations=hist.recommendations if hist else OLD,
            scale_up_events=hist.scale_up_events if hist else (),
            scale_down_events=hist.scale_down_events if hist else (),
        )
        r = sync(inp)
        current = r.desired_replicas
        seen.append(current)
        hist = r.aged(dt)
    return seen


def test_doc_scale_down_4_pods_or_10_percent_per_minute() -> None:
    # behavior.scaleDown: Pods 4/60s and Percent 10/60s (selectPolicy Max): 80 -> 10.
    rules = ScalingRules(policies=(ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60)))
    spec = HPASpec(1, 100, (ext(),), Behavior(scale_down=rules))
    seen = _behavior_loop(spec, 80, 10, syncs=4 * 12)
    per_minute = seen[::4]
    # 8 first (10 % of 80); at 72, 7.2 is rounded to 8; below 40 pods the Pods policy (4) wins
    assert per_minute == [72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16]
    assert seen[:4] == [72, 72, 72, 72]  # nothing more inside the 60 s period


def test_doc_limit_scale_down_with_select_policy_min() -> None:
    # Percent 10/60s and Pods 5/60s with selectPolicy Min: no more than 5 pods per minute.
    rules = ScalingRules(
        select_policy="Min",
        policies=(ScalingPolicy("Percent", 10, 60), ScalingPolicy("Pods", 5, 60)),
    )
    spec = HPASpec(1, 100, (ext(),), Behavior(scale_down=rules))
    seen = _behavior_loop(spec, 80, 10, syncs=12)
    assert seen[::4] == [75, 70, 65]


def test_doc_disable_scale_down() -> None:
    spec = HPASpec(1, 100, (ext(),), Behavior(scale_down=ScalingRules(select_policy="Disabled")))
    r = run(spec, 10, external_metrics={"rps": [100.0]})
    assert r.desired_replicas == 10
    assert r.reason == "ScaleDownLimit"


def test_doc_default_scale_up_4_pods_or_100_percent_per_15s() -> None:
    spec = HPASpec(1, 1000, (ext(),), Behavior())
    seen = _behavior_loop(spec, 1, 100, syncs=6)
    assert seen == [5, 10, 20, 40, 80, 100]  # max(+4, +100 %) every 15 s


def test_doc_scale_down_stabilization_window_keeps_the_highest() -> None:
    # 300 s default window: the highest recommendation of the last 5 minutes wins.
    spec = HPASpec(1, 100, (ext(),))
    recs = (Recommendation(9, 200.0), Recommendation(7, 100.0))
    r = sync(SyncInput(spec, 10, external_metrics={"rps": [300.0]}, recommendations=recs))
    assert (r.desired_replicas, r.reason) == (9, "ScaleDownStabilized")


def test_doc_change_downscale_stabilization_window_to_60s() -> None:
    spec = HPASpec(
        1, 100, (ext(),), Behavior(scale_down=ScalingRules(stabilization_window_seconds=60))
    )
    recs = (Recommendation(9, 200.0), Recommendation(7, 45.0))
    r = sync(SyncInput(spec, 10, external_metrics={"rps": [300.0]}, recommendations=recs))
    assert r.desired_replicas == 7


# --- hand tables --------------------------------------------------------------------------

# Resource cpu, Utilization target, 1-core requests. (pods, target %, current, expected, path)
CPU_TABLE: list[tuple[str, Sequence[PodSample], int, int, int]] = [
    ("ceil(ratio*ready): 80% of 50% -> ceil(1.6*3)", [pod(0.8)] * 3, 50, 3, 5),
    ("tolerance: 52% vs 50% is within 10%", [pod(0.52)] * 3, 50, 3, 3),
    ("tolerance is inclusive: 55/50 == 1.1", [pod(0.55)] * 3, 50, 3, 3),
    ("just outside tolerance: 56/50 -> ceil(3.36)", [pod(0.56)] * 3, 50, 3, 4),
    (
        "integer percent: 1000m/3000m -> 33%, ceil(0.66*3)",
        [pod(0.333), pod(0.333), pod(0.334)],
        50,
        3,
        2,
    ),
    (
        "missing pod on scale-down counts at 100%, then within tolerance",
        [pod(0.2), pod(0.2), pod()],
        50,
        3,
        3,
    ),
    ("missing pod on scale-down at 100%: 1300m/4000m -> 32%", [pod(0.1)] * 3 + [pod()], 50, 4, 3),
    (
        "missing pods on scale-up count 0: ratio flips to < 1 -> keep",
        [pod(1.0), pod(), pod()],
        50,
        3,
        3,
    ),
    ("missing pod on scale-up at 0%: 3000m/4000m -> 75%", [pod(1.0)] * 3 + [pod()], 50, 4, 6),
    (
        "unready (Pending) pods count 0 on scale-up: 50% -> keep",
        [pod(1.0), pod(1.0), pending(), pending()],
        50,
        4,
        4,
    ),
    (
        "unready pods are left out on scale-down: ceil(0.2*2)",
        [pod(0.1), pod(0.1), pending(), pending()],
        50,
        4,
        1,
    ),
    # 3500m/3000m -> 116% of 150 -> ceil(0.7733*3) = 3; a 100% fallback would give 2
    ("missing at the target when the target is above 100%", [pod(1.0), pod(1.0), pod()], 150, 3, 3),
]


@pytest.mark.parametrize(
    ("path", "pods", "target", "current", "expected"), CPU_TABLE, ids=[r[0] for r in CPU_TABLE]
)
def test_cpu_utilization_table(
    path: str, pods: Sequence[PodSample], target: int, current: int, expected: int
) -> None:
    spec = HPASpec(1, 100, (cpu(target),))
    r = run(spec, current, pods=tuple(pods))
    assert r.metric_proposals == (("cpu", expected),), path


def test_cpu_initialization_period_rules() -> None:
    c = ControllerConstants()
    spec = HPASpec(1, 100, (cpu(50),))
    # young pod (60 s < 300 s), Ready for 10 s: no full 15 s metric window since the transition -> unready
    young_fresh = pod(1.0, age_seconds=60.0, ready_age_seconds=10.0)
    # young pod Ready for 20 s: a full window since -> its metric counts
    young_settled = pod(1.0, age_seconds=60.0, ready_age_seconds=20.0)
    r = sync(SyncInput(spec, 2, (young_fresh, young_settled), recommendations=OLD), c)
    # one counted pod at 100% (ratio 2.0), one unready -> 0: 1000m/2000m = 50% -> within -> keep
    assert r.desired_replicas == 2
    # old pod, unready, that became unready 20 s after start (< 30 s delay): never ready -> ignored
    never_ready = pod(0.0, age_seconds=400.0, ready_age_seconds=380.0, ready=False)
    r = sync(SyncInput(spec, 2, (pod(1.0), never_ready), recommendations=OLD), c)
    assert r.desired_replicas == 2  # 1 counted at 200%, the other at 0 -> 50% -> keep
    # old pod, unready now but was ready before: its sample (0 %) counts
    was_ready = pod(0.0, age_seconds=400.0, ready_age_seconds=100.0, ready=False)
    r = sync(SyncInput(spec, 2, (pod(1.0), was_ready), recommendations=OLD), c)
    assert r.metric_proposals == (("cpu", 2),)  # 1000m/2000m = 50% -> within tolerance
    # no Ready condition at all -> unready
    no_condition = pod(1.0, ready_age_seconds=None)
    r = sync(SyncInput(spec, 2, (pod(1.0), no_condition), recommendations=OLD), c)
    assert r.desired_replicas == 2


def test_memory_ignores_readiness_and_cpu_needs_requests() -> None:
    spec = HPASpec(1, 100, (MetricSpec("Resource", "memory", MetricTarget("Utilization", 50)),))
    unready_with_metric = pod(1.0, name="memory", ready=False)
    r = run(spec, 2, pods=(pod(1.0, name="memory"), unready_with_metric))
    assert r.desired_replicas == 4  # both counted: 200% / 50% ... ratio 2 -> ceil(2*2)
    no_request = PodSample(True, 1000.0, 900.0, {"cpu": 0.5}, {})
    r = run(HPASpec(1, 100, (cpu(),)), 1, pods=(no_request,))
    assert not r.able_to_scale and "missing request" in r.message


PODS_TABLE: list[tuple[str, Sequence[PodSample], int, int]] = [
    ("ceil(ratio*ready): 20 vs 10", [pod(20.0, name="rps")] * 4, 4, 8),
    (
        "Pending pods count 0 on scale-up: 40/4 = 10 -> keep",
        [pod(20.0, name="rps")] * 2 + [pending("rps")] * 2,
        4,
        4,
    ),
    (
        "Running-unready pods with a metric count (non-CPU)",
        [pod(20.0, name="rps")] * 2 + [pod(20.0, name="rps", ready=False)],
        3,
        6,
    ),
    (
        "missing pod on scale-down at the target: 25/4 -> ceil(0.625*4)",
        [pod(5.0, name="rps")] * 3 + [pod(name="rps")],
        4,
        3,
    ),
]


@pytest.mark.parametrize(
    ("path", "pods", "current", "expected"), PODS_TABLE, ids=[r[0] for r in PODS_TABLE]
)
def test_pods_average_value_table(
    path: str, pods: Sequence[PodSample], current: int, expected: int
) -> None:
    spec = HPASpec(1, 100, (pods_metric("rps", 10.0),))
    r = run(spec, current, pods=tuple(pods))
    assert r.metric_proposals == (("rps", expected),), path


def test_pods_average_is_integer_milli_division() -> None:
    spec = HPASpec(1, 100, (pods_metric("rps", 0.001),))
    three = (pod(0.001, name="rps"), pod(0.001, name="rps"), pod(0.002, name="rps"))
    r = run(spec, 3, pods=three)
    assert r.desired_replicas == 3  # (1+1+2)m // 3 = 1m: ratio 1.0 (4/3 would give 4)


def test_external_value_uses_ready_pods_and_average_value_uses_status_replicas() -> None:
    three = (pod(), pod(), pending())
    value = run(
        HPASpec(1, 100, (ext("q", "Value", 100.0),)),
        3,
        pods=three,
        external_metrics={"q": [150.0, 150.0]},
    )
    assert value.desired_replicas == 6  # sum 300 / 100 = 3.0, times 2 Ready pods
    avg = run(
        HPASpec(1, 100, (ext("q", "AverageValue", 100.0),)),
        3,
        pods=three,
        external_metrics={"q": [300.0]},
    )
    assert avg.desired_replicas == 3  # 300 / (100 * 3 pods) = 1.0 -> keep
    avg2 = run(
        HPASpec(1, 100, (ext("q", "AverageValue", 100.0),)), 2, external_metrics={"q": [300.0]}
    )
    assert avg2.desired_replicas == 3  # ceil(300 / 100), whatever the readiness


def test_external_series_are_summed_in_milli_rounded_up() -> None:
    spec = HPASpec(1, 100, (ext("q", "AverageValue", 0.001),))
    r = run(spec, 1, external_metrics={"q": [0.0001, 0.0001]})
    assert r.desired_replicas == 2  # each 0.1m rounds up to 1m: 2m / 1m


def test_external_value_without_pods_is_a_metric_error() -> None:
    r = run(HPASpec(1, 100, (ext("q", "Value", 100.0),)), 3, external_metrics={"q": [300.0]})
    assert not r.able_to_scale and r.desired_replicas == 3
    assert "no pods returned by selector" in r.message


def test_object_value_and_average_value() -> None:
    value = MetricSpec("Object", "rps", MetricTarget("Value", 1000.0))
    r = run(HPASpec(1, 100, (value,)), 2, pods=(pod(), pod()), object_metrics={"rps": 2000.0})
    assert r.desired_replicas == 4  # ratio 2 * 2 Ready pods
    average = MetricSpec("Object", "rps", MetricTarget("AverageValue", 500.0))
    r = run(HPASpec(1, 100, (average,)), 2, object_metrics={"rps": 2000.0})
    assert r.desired_replicas == 4  # ceil(2000 / 500)


def test_several_metrics_take_the_largest_proposal() -> None:
    spec = HPASpec(1, 100, (ext("a"), ext("b")))
    r = run(spec, 2, external_metrics={"a": [300.0], "b": [500.0]})
    assert r.metric_proposals == (("a", 3), ("b", 5))
    assert r.desired_replicas == 4  # and the no-behavior scale-up limit max(2*2, 4)


def test_a_failed_metric_blocks_scale_down_but_not_scale_up() -> None:
    spec = HPASpec(1, 100, (ext("a"), ext("b")))
    down = run(spec, 6, external_metrics={"a": [100.0]})
    assert (down.desired_replicas, down.reason, down.able_to_scale) == (
        6,
        "FailedComputeMetricsReplicas",
        False,
    )
    up = run(spec, 2, external_metrics={"a": [800.0]})
    assert up.desired_replicas == 4 and up.metric_errors[0][0] == "b"


CLAMP_TABLE: list[tuple[str, int, int, float, int, str]] = [
    # (path, max, current, external total, expected, reason)
    ("TooManyReplicas: 2*8=16 >= max 10", 10, 8, 2000.0, 10, "TooManyReplicas"),
    ("ScaleUpLimit: max(2*2, 4) = 4", 10, 2, 2000.0, 4, "ScaleUpLimit"),
    ("ScaleUpLimit 2x: 3 -> 6", 50, 3, 2000.0, 6, "ScaleUpLimit"),
    ("TooFewReplicas: 0 wanted, min 2", 10, 5, 0.0, 2, "TooFewReplicas"),
    ("CurrentAboveMax", 10, 12, 500.0, 10, "CurrentAboveMax"),
    ("CurrentBelowMin", 10, 1, 500.0, 2, "CurrentBelowMin"),
    ("DesiredWithinRange", 10, 3, 500.0, 5, "DesiredWithinRange"),
]


@pytest.mark.parametrize(
    ("path", "mx", "current", "total", "expected", "reason"),
    CLAMP_TABLE,
    ids=[r[0] for r in CLAMP_TABLE],
)
def test_min_max_and_scale_up_limit_table(
    path: str, mx: int, current: int, total: float, expected: int, reason: str
) -> None:
    r = run(HPASpec(2, mx, (ext(),)), current, external_metrics={"rps": [total]})
    assert (r.desired_replicas, r.reason) == (expected, reason), path


def test_scale_up_limit_floor_of_4_from_one_replica() -> None:
    r = run(HPASpec(1, 10, (ext(),)), 1, external_metrics={"rps": [2000.0]})
    assert (r.desired_replicas, r.reason) == (4, "ScaleUpLimit")


def test_current_zero_disables_scaling() -> None:
    r = run(HPASpec(1, 10, (ext(),)), 0, external_metrics={"rps": [1000.0]})
    assert (r.desired_replicas, r.reason, r.able_to_scale) == (0, "ScalingDisabled", False)


def test_scale_up_limit_constants_are_parameters() -> None:
    c = ControllerConstants(scale_up_limit_factor=3.0, scale_up_limit_minimum=1)
    r = sync(
        SyncInput(
            HPASpec(1, 100, (ext(),)), 2, external_metrics={"rps": [2000.0]}, recommendations=OLD
        ),
        c,
    )
    assert r.desired_replicas == 6


def test_tolerance_and_per_direction_tolerance() -> None:
    spec = HPASpec(1, 100, (ext("q", "AverageValue", 100.0),))
    # 1050 over 10 pods: ratio 1.05 -> within the default 0.1
    assert run(spec, 10, external_metrics={"q": [1050.0]}).desired_replicas == 10
    tight_up = ControllerConstants(scale_up_tolerance=0.0)
    inp = SyncInput(spec, 10, external_metrics={"q": [1050.0]}, recommendations=OLD)
    assert sync(inp, tight_up).desired_replicas == 11
    loose_down = ControllerConstants(scale_down_tolerance=0.5)
    inp = SyncInput(spec, 10, external_metrics={"q": [600.0]}, recommendations=OLD)
    assert sync(inp, loose_down).desired_replicas == 10
    assert sync(inp, ControllerConstants(tolerance=0.0)).desired_replicas == 6


# --- stabilisation and behavior, by hand ----------------------------------------------------


def test_first_sync_records_current_replicas_and_stabilizes_scale_down() -> None:
    # recordInitialRecommendation: an empty history holds the current count for the window
    r = sync(SyncInput(HPASpec(1, 100, (ext(),)), 10, external_metrics={"rps": [300.0]}))
    assert (r.desired_replicas, r.reason) == (10, "ScaleDownStabilized")
    assert sorted(x.replicas for x in r.recommendations) == [3, 10]


def test_window_edges_follow_before_and_after() -> None:
    plain = HPASpec(1, 100, (ext(),))
    at_edge = (Recommendation(9, 300.0),)
    # no behavior: stabilizeRecommendation drops only what is Before(now - 300s): age 300 still counts
    assert (
        sync(
            SyncInput(plain, 10, external_metrics={"rps": [300.0]}, recommendations=at_edge)
        ).desired_replicas
        == 9
    )
    past = (Recommendation(9, 300.5),)
    assert (
        sync(
            SyncInput(plain, 10, external_metrics={"rps": [300.0]}, recommendations=past)
        ).desired_replicas
        == 3
    )
    # behavior: After(now - 300s) is strict: age 300 no longer counts
    with_b = HPASpec(1, 100, (ext(),), Behavior())
    assert (
        sync(
            SyncInput(with_b, 10, external_metrics={"rps": [300.0]}, recommendations=at_edge)
        ).desired_replicas
        == 3
    )


def test_scale_up_stabilization_window_takes_the_lowest() -> None:
    spec = HPASpec(
        1, 100, (ext(),), Behavior(scale_up=ScalingRules(stabilization_window_seconds=60))
    )
    recs = (Recommendation(3, 30.0),)
    r = sync(SyncInput(spec, 3, external_metrics={"rps": [800.0]}, recommendations=recs))
    assert (r.desired_replicas, r.reason) == (3, "ScaleUpStabilized")


BEHAVIOR_TABLE: list[
    tuple[str, ScalingRules, int, float, tuple[ScaleEvent, ...], tuple[ScaleEvent, ...], int]
] = [
    # (path, scaleUp rules, current, external total, up events, down events, expected)
    # float64(50) * (1 + 10/100) = 55.00000000000001, so ceil gives 56, not 55
    (
        "Percent 10% of 50 in float64: 56",
        ScalingRules(policies=(ScalingPolicy("Percent", 10, 60),)),
        50,
        9000.0,
        (),
        (),
        56,
    ),
    ("defaults: Max(3+4, 3*2)", ScalingRules(), 3, 2000.0, (), (), 7),
    (
        "period start from events: 6 - 3 added",
        ScalingRules(),
        6,
        2000.0,
        (ScaleEvent(3, 10.0),),
        (),
        7,
    ),
    (
        "events older than the period are ignored",
        ScalingRules(),
        6,
        2000.0,
        (ScaleEvent(3, 15.0),),
        (),
        12,
    ),
    (
        "deleted pods raise the period start",
        ScalingRules(policies=(ScalingPolicy("Pods", 2, 60),)),
        4,
        2000.0,
        (),
        (ScaleEvent(-2, 30.0),),
        8,
    ),
    (
        "limit below current is held at current",
        ScalingRules(policies=(ScalingPolicy("Pods", 1, 60),)),
        5,
        2000.0,
        (ScaleEvent(3, 30.0),),
        (),
        5,
    ),
    ("select Min: min(3+4, 3*2)", ScalingRules(select_policy="Min"), 3, 2000.0, (), (), 6),
    ("Disabled", ScalingRules(select_policy="Disabled"), 3, 2000.0, (), (), 3),
]


@pytest.mark.parametrize(
    ("path", "rules", "current", "total", "ups", "downs", "expected"),
    BEHAVIOR_TABLE,
    ids=[r[0] for r in BEHAVIOR_TABLE],
)
def test_scale_up_behavior_table(
    path: str,
    rules: ScalingRules,
    current: int,
    total: float,
    ups: tuple[ScaleEvent, ...],
    downs: tuple[ScaleEvent, ...],
    expected: int,
) -> None:
    spec = HPASpec(1, 100, (ext(),), Behavior(scale_up=rules))
    inp = SyncInput(
        spec,
        current,
        external_metrics={"rps": [total]},
        recommendations=OLD,
        scale_up_events=ups,
        scale_down_events=downs,
    )
    assert sync(inp).desired_replicas == expected, path


def test_scale_down_percent_truncates_the_float64_product() -> None:
    # calculateScaleDownLimitWithBehaviors: int32(10 * (1 - 0.8)) = int32(1.9999999999999996) = 1
    rules = ScalingRules(policies=(ScalingPolicy("Percent", 80, 60),))
    spec = HPASpec(1, 100, (ext(),), Behavior(scale_down=rules))
    r = run(spec, 10, external_metrics={"rps": [100.0]})
    assert (r.desired_replicas, r.reason) == (1, "DesiredWithinRange")
    r = run(spec, 10, external_metrics={"rps": [0.0]})
    assert r.desired_replicas == 1


def test_down_events_count_in_scale_up_limits_until_replaced() -> None:
    # a scale-down event 30 s old is outdated for the 15 s scale-down policy but still
    # inside the 60 s scale-up period: the controller keeps it and counts it
    rules = ScalingRules(policies=(ScalingPolicy("Pods", 2, 60),))
    spec = HPASpec(1, 100, (ext(),), Behavior(scale_up=rules))
    downs = (ScaleEvent(-2, 30.0),)
    inp = SyncInput(
        spec, 4, external_metrics={"rps": [2000.0]}, recommendations=OLD, scale_down_events=downs
    )
    r = sync(inp)
    assert r.desired_replicas == 8  # start = 4 + 2 deleted; + 2 pods
    assert r.scale_down_events == downs


def test_scale_events_are_kept_only_with_behavior() -> None:
    plain = run(HPASpec(1, 100, (ext(),)), 2, external_metrics={"rps": [400.0]})
    assert plain.desired_replicas == 4 and plain.scale_up_events == ()
    with_b = run(HPASpec(1, 100, (ext(),), Behavior()), 2, external_metrics={"rps": [400.0]})
    assert with_b.scale_up_events == (ScaleEvent(2, 0.0),)


def test_behavior_down_window_int32_seconds_from_the_flag() -> None:
    c = ControllerConstants(downscale_stabilization_seconds=60.9)
    spec = HPASpec(1, 100, (ext(),), Behavior())
    recs = (Recommendation(9, 60.5),)  # inside 60.9 s, outside int32(60.9) = 60 s
    r = sync(SyncInput(spec, 10, external_metrics={"rps": [300.0]}, recommendations=recs), c)
    assert r.desired_replicas == 3


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: HPASpec(0, 10, (ext(),)), "HPAScaleToZero"),
        (lambda: HPASpec(5, 2, (ext(),)), "below min_replicas"),
        (lambda: HPASpec(1, 2, ()), "metrics is empty"),
        (
            lambda: HPASpec(1, 2, (MetricSpec("Pods", "x", MetricTarget("Value", 1.0)),)),
            "not allowed",
        ),
        (lambda: HPASpec(1, 2, (ext(target=0.0),)), "must be > 0"),
        (
            lambda: HPASpec(
                1,
                2,
                (ext(),),
                Behavior(scale_up=ScalingRules(policies=(ScalingPolicy("Pods", 1, 0),))),
            ),
            "period_seconds",
        ),
        (lambda: ControllerConstants(tolerance=-0.1), "tolerance"),
    ],
)
def test_invalid_specs_are_refused(build: object, words: str) -> None:
    with pytest.raises(BadInput, match=words):
        build()  # type: ignore[operator]


def test_controller_refuses_resource_metrics() -> None:
    with pytest.raises(BadInput, match="sync"):
        HPAController(HPASpec(1, 2, (cpu(),)))


def test_step_follows_a_burst() -> None:
    spec = HPASpec(2, 20, (ext("rps", "AverageValue", 100.0),))
    c = HPAController(spec)
    replicas = 2
    seen = []
    for i, demand in enumerate([150.0, 1000.0, 1000.0, 1000.0, 200.0] + [200.0] * 25):
        replicas = c.step(15.0 * i, replicas, replicas, {"rps": demand})
        seen.append(replicas)
    assert seen[:4] == [2, 4, 8, 10]  # ceil(150/100) = 2; then 2x per sync up to 10
    assert seen[20] == 10  # still inside the 300 s window after the drop at t=60
    assert seen[-1] == 2


# --- the API server's behavior defaults as ControllerConstants --------------------------------------
# GenerateHPAScaleUpRules / GenerateHPAScaleDownRules (pkg/apis/autoscaling/v2/defaults.go) fill
# an unset window or policy list of a behavior; with no behavior they play no part
# (normalizeDesiredReplicas). Each row: External AverageValue target 100, so `total` / 100 is the
# metric's proposal; histories as (replicas, age) / (change, age).

UP_2_PODS = (ScalingPolicy("Pods", 2, 15),)
HELD_UP = (Recommendation(3, 30.0),)  # 3 pods recommended 30 s ago

CONSTANTS_TABLE: list[
    tuple[
        str,
        ControllerConstants,
        Behavior | None,
        int,
        float,
        tuple[Recommendation, ...],
        tuple[ScaleEvent, ...],
        tuple[ScaleEvent, ...],
        tuple[int, str],
    ]
] = [
    # upscale_stabilization_seconds (scaleUpStabilizationSeconds = 0)
    (
        "up window 0 s: scale up at once",
        ControllerConstants(),
        Behavior(),
        3,
        1000.0,
        HELD_UP,
        (),
        (),
        (7, "ScaleUpLimit"),
    ),
    (
        "up window 60 s holds the scale-up at the lowest recent recommendation",
        ControllerConstants(upscale_stabilization_seconds=60.0),
        Behavior(),
        3,
        1000.0,
        HELD_UP,
        (),
        (),
        (3, "ScaleUpStabilized"),
    ),
    (
        "up window 60 s: the window's lowest, not the current count",
        ControllerConstants(upscale_stabilization_seconds=60.0),
        Behavior(),
        3,
        1000.0,
        (Recommendation(5, 45.0), Recommendation(8, 30.0)),
        (),
        (),
        (5, "ScaleUpStabilized"),
    ),
    (
        "up window 60 s: a recommendation exactly 60 s old no longer counts (After)",
        ControllerConstants(upscale_stabilization_seconds=60.0),
        Behavior(),
        3,
        1000.0,
        (Recommendation(3, 60.0),),
        (),
        (),
        (7, "ScaleUpLimit"),
    ),
    (
        "up window int32 seconds: 60.9 s is 60 s",
        ControllerConstants(upscale_stabilization_seconds=60.9),
        Behavior(),
        3,
        1000.0,
        (Recommendation(3, 60.5),),
        (),
        (),
        (7, "ScaleUpLimit"),
    ),
    (
        "up window from the spec wins over the default",
        ControllerConstants(upscale_stabilization_seconds=60.0),
        Behavior(scale_up=ScalingRules(stabilization_window_seconds=0)),
        3,
        1000.0,
        HELD_UP,
        (),
        (),
        (7, "ScaleUpLimit"),
    ),
    (
        "up window default is not used without a behavior",
        ControllerConstants(upscale_stabilization_seconds=60.0),
        None,
        3,
        1000.0,
        HELD_UP,
        (),
        (),
        (6, "ScaleUpLimit"),
    ),
    # upscale_policies (Max of 4 pods / 15 s and 100 % / 15 s)
    (
        "up policies default: max(3+4, 3*2)",
        ControllerConstants(),
        Behavior(),
        3,
        2000.0,
        OLD,
        (),
        (),
        (7, "ScaleUpLimit"),
    ),
    (
        "up policies 2 pods / 15 s",
        ControllerConstants(upscale_policies=UP_2_PODS),
        Behavior(),
        3,
        2000.0,
        OLD,
        (),
        (),
        (5, "ScaleUpLimit"),
    ),
    (
        "up policies default: an event 30 s old is outside the 15 s periods",
        ControllerConstants(),
        Behavior(),
        5,
        1000.0,
        OLD,
        (ScaleEvent(2, 30.0),),
        (),
        (10, "DesiredWithinRange"),
    ),
    (
        "up policies 2 pods / 60 s: the period starts before a +2 event 30 s old",
        ControllerConstants(upscale_policies=(ScalingPolicy("Pods", 2, 60),)),
        Behavior(),
        5,
        1000.0,
        OLD,
        (ScaleEvent(2, 30.0),),
        (),
        (5, "ScaleUpLimit"),
    ),
    (
        "up policies: the spec's selectPolicy Min applies to the default policies",
        ControllerConstants(
            upscale_policies=(ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 200, 15))
        ),
        Behavior(scale_up=ScalingRules(select_policy="Min")),
        3,
        2000.0,
        OLD,
        (),
        (),
        (7, "ScaleUpLimit"),
    ),
    (
        "up policies from the spec win over the default",
        ControllerConstants(upscale_policies=UP_2_PODS),
        Behavior(scale_up=ScalingRules(policies=(ScalingPolicy("Percent", 100, 15),))),
        3,
        2000.0,
        OLD,
        (),
        (),
        (6, "ScaleUpLimit"),
    ),
    (
        "up policies are not used without a behavior (scaleUpLimitFactor/Minimum instead)",
        ControllerConstants(upscale_policies=UP_2_PODS),
        None,
        3,
        2000.0,
        OLD,
        (),
        (),
        (6, "ScaleUpLimit"),
    ),
    # downscale_policies (100 % / 15 s)
    (
        "down policies default: 100 % lets 10 -> 3 at once",
        ControllerConstants(),
        Behavior(),
        10,
        300.0,
        OLD,
        (),
        (),
        (3, "DesiredWithinRange"),
    ),
    (
        "down policies 1 pod / 15 s",
        ControllerConstants(downscale_policies=(ScalingPolicy("Pods", 1, 15),)),
        Behavior(),
        10,
        300.0,
        OLD,
        (),
        (),
        (9, "ScaleDownLimit"),
    ),
    (
        "down policies 50 % / 15 s",
        ControllerConstants(downscale_policies=(ScalingPolicy("Percent", 50, 15),)),
        Behavior(),
        10,
        300.0,
        OLD,
        (),
        (),
        (5, "ScaleDownLimit"),
    ),
    (
        "down policies 10 % / 60 s: the period starts before a -1 event 30 s old",
        ControllerConstants(downscale_policies=(ScalingPolicy("Percent", 10, 60),)),
        Behavior(),
        10,
        300.0,
        OLD,
        (),
        (ScaleEvent(-1, 30.0),),
        (9, "ScaleDownLimit"),
    ),
    (
        "down policies from the spec win over the default",
        ControllerConstants(downscale_policies=(ScalingPolicy("Pods", 1, 15),)),
        Behavior(scale_down=ScalingRules(policies=(ScalingPolicy("Percent", 100, 15),))),
        10,
        300.0,
        OLD,
        (),
        (),
        (3, "DesiredWithinRange"),
    ),
    (
        "down policies are not used without a behavior",
        ControllerConstants(downscale_policies=(ScalingPolicy("Pods", 1, 15),)),
        None,
        10,
        300.0,
        OLD,
        (),
        (),
        (3, "DesiredWithinRange"),
    ),
]


@pytest.mark.parametrize(
    ("path", "constants", "behavior", "current", "total", "recs", "ups", "downs", "expected"),
    CONSTANTS_TABLE,
    ids=[r[0] for r in CONSTANTS_TABLE],
)
def test_behavior_defaults_table(
    path: str,
    constants: ControllerConstants,
    behavior: Behavior | None,
    current: int,
    total: float,
    recs: tuple[Recommendation, ...],
    ups: tuple[ScaleEvent, ...],
    downs: tuple[ScaleEvent, ...],
    expected: tuple[int, str],
) -> None:
    spec = HPASpec(1, 100, (ext(),), behavior)
    inp = SyncInput(
        spec,
        current,
        external_metrics={"rps": [total]},
        recommendations=recs,
        scale_up_events=ups,
        scale_down_events=downs,
    )
    r = sync(inp, constants)
    assert (r.desired_replicas, r.reason) == expected, path


def test_behavior_defaults_are_the_api_servers() -> None:
    c = ControllerConstants()
    assert c.upscale_stabilization_seconds == 0.0
    assert c.upscale_policies == (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15))
    assert c.downscale_policies == (ScalingPolicy("Percent", 100, 15),)
    # spelling the defaults out changes nothing
    spelled = ControllerConstants(
        upscale_stabilization_seconds=0.0,
        upscale_policies=(ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)),
        downscale_policies=[ScalingPolicy("Percent", 100, 15)],  # type: ignore[arg-type]
    )
    assert spelled == c and hash(spelled) == hash(c)


@pytest.mark.parametrize(
    ("window", "expected"),
    [(0.0, [3, 7, 10, 10, 10, 10]), (60.0, [3, 3, 3, 3, 7, 10])],
)
def test_upscale_window_in_sync_and_in_the_fast_path(window: float, expected: list[int]) -> None:
    # 3 pods wanted at t=0, 10 from t=15 on; syncs every 15 s from the HPA's first sync
    c = ControllerConstants(upscale_stabilization_seconds=window)
    spec = HPASpec(1, 100, (ext(),), Behavior())
    fast = HPAController(spec, c)
    current = fast_current = 3
    hist: SyncResult | None = None
    seen, fast_seen = [], []
    for i in range(len(expected)):
        total = 300.0 if i == 0 else 1000.0
        r = sync(
            SyncInput(
                spec,
                current,
                external_metrics={"rps": [total]},
                recommendations=hist.recommendations if hist else (),
                scale_up_events=hist.scale_up_events if hist else (),
                scale_down_events=hist.scale_down_events if hist else (),
            ),
            c,
        )
        current = r.desired_replicas
        hist = r.aged(15.0)
        fast_current = fast.step(15.0 * i, fast_current, fast_current, {"rps": total})
        seen.append(current)
        fast_seen.append(fast_current)
    assert seen == expected
    assert fast_seen == expected


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: ControllerConstants(upscale_stabilization_seconds=-1.0), "cannot be negative"),
        (lambda: ControllerConstants(upscale_stabilization_seconds=math.inf), "finite"),
        (lambda: ControllerConstants(upscale_policies=()), "upscale_policies is empty"),
        (
            lambda: ControllerConstants(downscale_policies=(ScalingPolicy("Pods", 0, 15),)),
            r"downscale_policies\[0\]\.value",
        ),
        (
            lambda: ControllerConstants(upscale_policies=(ScalingPolicy("Pods", 1, 1801),)),
            r"upscale_policies\[0\]\.period_seconds",
        ),
    ],
)
def test_invalid_behavior_defaults_are_refused(build: object, words: str) -> None:
    with pytest.raises(BadInput, match=words):
        build()  # type: ignore[operator]
