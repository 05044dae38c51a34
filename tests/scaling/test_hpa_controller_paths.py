"""Cases where shiftover differed from kube-controller-manager, named after the code path.

Each test is written from the controller's source (``replica_calculator.go``,
``horizontal.go``, ``metrics/utilization.go``) and its tests
(``replica_calculator_test.go``: ``TestGroupPods``, ``TestReplicaCalcScaleUp``);
issue 9 lists the examples. Every test failed before its fix, except the few
marked "guard", which pin down what the fix must not change.
"""

from __future__ import annotations

import pytest

from shiftover.scaling.hpa import (
    Behavior,
    ControllerConstants,
    HPAController,
    HPASpec,
    MetricSpec,
    MetricTarget,
    PodSample,
    Recommendation,
    SyncInput,
    SyncResult,
    _group_pods,
    sync,
)

NO_WINDOW = ControllerConstants(downscale_stabilization_seconds=0.0)
OLD = (Recommendation(1, 10_000.0),)  # a history with nothing inside any window
GI = 1024.0**3
MI = 1024.0**2


def ext_avg(target: float = 100.0, name: str = "q") -> MetricSpec:
    return MetricSpec("External", name, MetricTarget("AverageValue", target))


def cpu(util: int) -> MetricSpec:
    return MetricSpec("Resource", "cpu", MetricTarget("Utilization", util))


def memory_avg(target: float) -> MetricSpec:
    return MetricSpec("Resource", "memory", MetricTarget("AverageValue", target))


def running(cpu_cores: float | None, request: float = 1.0) -> PodSample:
    """A Running, Ready pod past every initialisation period, with a 1-core request."""
    return PodSample(
        True,
        1000.0,
        900.0,
        {} if cpu_cores is None else {"cpu": cpu_cores},
        {"cpu": request},
    )


def succeeded(
    cpu_cores: float | None, *, age: float = 1000.0, ready_age: float = 60.0
) -> PodSample:
    """A pod that ran to completion: not Ready since ``ready_age`` s, long after it started."""
    metrics = {} if cpu_cores is None else {"cpu": cpu_cores}
    return PodSample(False, age, ready_age, metrics, {"cpu": 1.0}, phase="Succeeded")


def statuses(r: SyncResult) -> list[tuple[str, str, int | None, float | None, float | None]]:
    return [
        (s.source, s.name, s.average_utilization, s.average_value, s.value)
        for s in r.current_metrics
    ]


# --- groupPods: only deleted and Failed pods are ignored ----------------------------------


def test_groupPods_counts_succeeded_pod_with_fresh_sample() -> None:
    # issue 9: CPU 50 %, 2 Running pods at 100m and 2 Succeeded pods at 900m, 1-core requests.
    # The Succeeded pods were Ready long after they started, so their samples count:
    # (100+100+900+900)m / 4000m = 50 % -> ratio 1.0 -> 4 (shiftover dropped them: 10 % -> 1).
    spec = HPASpec(1, 10, (cpu(50),))
    pods = (running(0.1), running(0.1), succeeded(0.9), succeeded(0.9))
    r = sync(SyncInput(spec, 4, pods=pods, recommendations=OLD))
    assert r.desired_replicas == 4
    assert r.metric_proposals == (("cpu", 4),)


def test_groupPods_succeeded_pod_without_metric_is_missing() -> None:
    # A Succeeded pod with no sample is a missing pod: on a scale-down it counts as 100 %
    # of its request. 2 x 100m ready (10 %, ratio 0.2) + 1 missing at 1000m:
    # 1200m / 3000m = 40 % -> 0.8 -> ceil(2.4) = 3, not ceil(0.2 * 2) = 1.
    spec = HPASpec(1, 10, (cpu(50),))
    pods = (running(0.1), running(0.1), succeeded(None))
    r = sync(SyncInput(spec, 3, pods=pods, recommendations=OLD))
    assert r.desired_replicas == 3


def test_groupPods_succeeded_pod_unready_for_cpu_counts_as_zero_on_scale_up() -> None:
    # A Succeeded pod inside the CPU initialization period and not Ready is unready:
    # on a scale-up it counts as 0 %. 2 x 1050m on 1-core requests (105 %, ratio 2.1) and
    # 2 unready at 0: 2100m / 4000m = 52 % -> 1.04, within the tolerance -> stay at 4
    # (shiftover dropped them: ceil(2.1 x 2) = 5).
    spec = HPASpec(1, 10, (cpu(50),))
    young = succeeded(0.9, age=100.0, ready_age=10.0)
    pods = (running(1.05), running(1.05), young, young)
    r = sync(SyncInput(spec, 4, pods=pods, recommendations=OLD))
    assert r.desired_replicas == 4


def test_groupPods_status_replicas_leave_out_succeeded_pods() -> None:
    # guard: scale.status.replicas (GetExternalPerPodMetricReplicas) counts active pods
    # only; the ReplicaSet controller's FilterActivePods leaves out Succeeded pods.
    spec = HPASpec(1, 10, (ext_avg(100.0),))
    pods = (running(0.1), running(0.1), succeeded(0.9))
    r = sync(SyncInput(spec, 3, pods=pods, external_metrics={"q": [210.0]}, recommendations=OLD))
    # 210 / (100 x 2 active) = 1.05 -> within tolerance -> status.replicas (2)
    assert r.metric_proposals == (("q", 2),)


# TestGroupPods in replica_calculator_test.go (Kubernetes 1.33): every pod there is
# Succeeded unless named otherwise. CPU initialization period 2 min, readiness delay 10 s.
# Fields: ready, start age, Ready transition age (None: no condition), metric sample
# (age, window) or None when the pod has no sample, resource, phase, deleting.
GROUP_CASES = {
    "count in a ready pod - memory": (
        (True, 0.0, None, (0.0, 60.0), "memory", "Succeeded", False),
        "ready",
    ),
    "unready a pod without ready condition - CPU": (
        (False, 0.0, None, (0.0, 15.0), "cpu", "Succeeded", False),
        "unready",
    ),
    "count in a ready pod with fresh metrics during initialization period - CPU": (
        (True, 60.0, 30.0, (0.0, 30.0), "cpu", "Succeeded", False),
        "ready",
    ),
    "unready a ready pod without fresh metrics during initialization period - CPU": (
        (True, 60.0, 30.0, (0.0, 60.0), "cpu", "Succeeded", False),
        "unready",
    ),
    "unready an unready pod during initialization period - CPU": (
        (False, 600.0, 594.0, (0.0, 15.0), "cpu", "Succeeded", False),
        "unready",
    ),
    "count in a ready pod without fresh metrics after initialization period - CPU": (
        (True, 180.0, 180.0, (120.0, 60.0), "cpu", "Succeeded", False),
        "ready",
    ),
    "count in an unready pod that was ready after initialization period - CPU": (
        (False, 600.0, 540.0, (0.0, 15.0), "cpu", "Succeeded", False),
        "ready",
    ),
    "unready pod that has never been ready after initialization period - CPU": (
        (False, 600.0, 590.0, (0.0, 15.0), "cpu", "Succeeded", False),
        "ready",
    ),
    "a missing pod": ((False, 180.0, None, None, "cpu", "Succeeded", False), "missing"),
    "pending pods are unreadied": ((False, 0.0, None, None, "cpu", "Pending", False), "unready"),
    "ignore pods with deletion timestamps": (
        (False, 0.0, None, (0.0, 15.0), "cpu", "Pending", True),
        "ignored",
    ),
    "ignore pods in a failed state": (
        (False, 0.0, None, (0.0, 15.0), "cpu", "Failed", False),
        "ignored",
    ),
}


@pytest.mark.parametrize("case", list(GROUP_CASES), ids=list(GROUP_CASES))
def test_groupPods_table_from_replica_calculator_test(case: str) -> None:
    (ready, age, ready_age, sample, resource, phase, deleting), want = GROUP_CASES[case]
    metrics = {} if sample is None else {resource: 1.0}
    metric_age, window = sample if sample is not None else (0.0, 15.0)
    p = PodSample(
        ready,
        age,
        ready_age,
        metrics,
        {resource: 1.0},
        phase=phase,  # type: ignore[arg-type]
        deleting=deleting,
        metric_age_seconds=metric_age,
        metric_window_seconds=window,
    )
    c = ControllerConstants(
        cpu_initialization_period_seconds=120.0, initial_readiness_delay_seconds=10.0
    )
    got_ready, unready, missing = _group_pods((p,), resource, resource == "cpu", c)
    got = "ready" if got_ready else "unready" if unready else "missing" if missing else "ignored"
    assert got == want


# --- GetRawResourceReplicas -> calcPlainMetricReplicas: requests are never read ----------------


def mem_pod(used: float | None) -> PodSample:
    return PodSample(True, 1000.0, 900.0, {} if used is None else {"memory": used}, {})


def test_GetRawResourceReplicas_needs_no_requests() -> None:
    # issue 9: memory AverageValue 512Mi, 2 ready pods using 1Gi each, no memory request.
    spec = HPASpec(1, 10, (memory_avg(512 * MI),))
    r = sync(SyncInput(spec, 2, pods=(mem_pod(GI), mem_pod(GI)), recommendations=OLD))
    assert (r.desired_replicas, r.able_to_scale, r.metric_errors) == (4, True, ())


def test_calcPlainMetricReplicas_missing_pod_uses_the_target_not_a_request() -> None:
    # On a scale-down a missing pod counts as using exactly the target (no request needed):
    # 2 x 256Mi against 1Gi (ratio 0.25) + 1 missing at 1Gi: 1.5Gi / 3 -> 0.5 -> 2.
    spec = HPASpec(1, 10, (memory_avg(GI),))
    pods = (mem_pod(256 * MI), mem_pod(256 * MI), mem_pod(None))
    r = sync(SyncInput(spec, 3, pods=pods, recommendations=OLD))
    assert r.desired_replicas == 2


def test_GetResourceReplicas_still_needs_requests() -> None:
    # guard: the Utilization path (calculateRequests) fails on a pod without a request.
    spec = HPASpec(1, 10, (MetricSpec("Resource", "memory", MetricTarget("Utilization", 50)),))
    r = sync(SyncInput(spec, 2, pods=(mem_pod(GI), mem_pod(GI)), recommendations=OLD))
    assert not r.able_to_scale and "missing request for memory" in r.message


# --- stabilizeRecommendation: the seed of the first sync --------------------------------------


def test_stabilizeRecommendation_ignores_seed_at_zero_window_first_sync() -> None:
    # issue 9: External AverageValue 100, value 100, 7 current, no behavior, window 0.
    # recordInitialRecommendation stamps the seed (7) when the sync starts; the cutoff
    # (now - 0 s) is taken later in the same sync, so the seed is Before(cutoff).
    spec = HPASpec(1, 10, (ext_avg(),))
    r = sync(SyncInput(spec, 7, external_metrics={"q": [100.0]}), NO_WINDOW)
    assert (r.desired_replicas, r.reason) == (1, "DesiredWithinRange")
    # the controller overwrites the old sample: only this sync's recommendation is kept
    assert r.recommendations == (Recommendation(1, 0.0),)


def test_stabilizeRecommendation_ignores_seed_at_zero_window_first_sync_fast_path() -> None:
    ctl = HPAController(HPASpec(1, 10, (ext_avg(),)), NO_WINDOW)
    assert ctl.step(0.0, 7, 7, {"q": 100.0}) == 1
    assert ctl.last_reason == "DesiredWithinRange"


def test_stabilizeRecommendation_counts_seed_through_a_positive_window() -> None:
    # guard: with a window > 0 the seed counts in the first sync and in later ones up to
    # `window` seconds (the same edge as any other recommendation); both paths agree.
    spec = HPASpec(1, 10, (ext_avg(),))
    c = ControllerConstants(downscale_stabilization_seconds=30.0)
    ctl = HPAController(spec, c)
    r = sync(SyncInput(spec, 7, external_metrics={"q": [100.0]}), c)
    seen = [(r.desired_replicas, ctl.step(0.0, 7, 7, {"q": 100.0}))]
    for t in (15.0, 30.0, 45.0):
        r = sync(
            SyncInput(
                spec,
                7,
                external_metrics={"q": [100.0]},
                recommendations=r.aged(15.0).recommendations,
            ),
            c,
        )
        seen.append((r.desired_replicas, ctl.step(t, 7, 7, {"q": 100.0})))
    assert seen == [(7, 7), (7, 7), (7, 7), (1, 1)]


def test_stabilizeRecommendationWithBehaviors_ignores_seed_at_zero_window() -> None:
    # guard: with a behavior, a recommendation counts only when After(now - window): at a
    # 0 s window the seed never does, in sync() and in the fast path.
    spec = HPASpec(1, 10, (ext_avg(),), Behavior())
    r = sync(SyncInput(spec, 7, external_metrics={"q": [100.0]}), NO_WINDOW)
    assert r.desired_replicas == 1
    assert HPAController(spec, NO_WINDOW).step(0.0, 7, 7, {"q": 100.0}) == 1


# --- status.currentMetrics: what computeStatusFor*Metric writes -------------------------------


def test_computeStatusForResourceMetric_utilization() -> None:
    # TestReplicaCalcScaleUp: 300m, 500m, 700m on 1-core requests, target 30 % -> 5 pods;
    # currentMetrics: averageUtilization 50, averageValue 500m.
    spec = HPASpec(1, 10, (cpu(30),))
    r = sync(
        SyncInput(spec, 3, pods=(running(0.3), running(0.5), running(0.7)), recommendations=OLD)
    )
    assert r.desired_replicas == 5
    assert statuses(r) == [("Resource", "cpu", 50, 0.5, None)]


def test_computeStatusForResourceMetric_reports_ready_pods_before_missing_ones_are_filled() -> None:
    # GetResourceReplicas returns the first ratio's utilization: the ready pods' only.
    spec = HPASpec(1, 10, (cpu(50),))
    r = sync(
        SyncInput(spec, 3, pods=(running(0.1), running(0.2), running(None)), recommendations=OLD)
    )
    assert statuses(r) == [("Resource", "cpu", 15, 0.15, None)]


def test_computeStatusForResourceMetric_average_value() -> None:
    spec = HPASpec(1, 10, (memory_avg(512 * MI),))
    r = sync(SyncInput(spec, 2, pods=(mem_pod(GI), mem_pod(3 * GI)), recommendations=OLD))
    assert statuses(r) == [("Resource", "memory", None, 2 * GI, None)]


def test_computeStatusForPodsMetric_average_value() -> None:
    spec = HPASpec(1, 10, (MetricSpec("Pods", "rps", MetricTarget("AverageValue", 10.0)),))
    pods = tuple(PodSample(True, 1000.0, 900.0, {"rps": v}) for v in (10.0, 20.0, 31.0))
    r = sync(SyncInput(spec, 3, pods=pods, recommendations=OLD))
    # GetMetricUsageRatio: 61000m // 3 = 20333m
    assert statuses(r) == [("Pods", "rps", None, 20.333, None)]


def test_computeStatusForExternalMetric_value_and_average_value() -> None:
    spec = HPASpec(
        1, 10, (ext_avg(10.0, "a"), MetricSpec("External", "v", MetricTarget("Value", 10.0)))
    )
    r = sync(
        SyncInput(
            spec,
            3,
            external_metrics={"a": [60.0, 40.0], "v": [5.0, 7.5]},
            pods=tuple(running(0.5) for _ in range(3)),
            recommendations=OLD,
        )
    )
    # AverageValue: ceil(100000m / 3 status replicas) = 33334m; Value: the summed series
    assert statuses(r) == [
        ("External", "a", None, 33.334, None),
        ("External", "v", None, None, 12.5),
    ]


def test_computeStatusForObjectMetric_value_and_average_value() -> None:
    spec = HPASpec(
        1,
        10,
        (
            MetricSpec("Object", "lag", MetricTarget("Value", 10.0)),
            MetricSpec("Object", "depth", MetricTarget("AverageValue", 10.0)),
        ),
    )
    r = sync(
        SyncInput(
            spec,
            4,
            object_metrics={"lag": 8.0, "depth": 30.0},
            pods=tuple(running(0.5) for _ in range(4)),
            recommendations=OLD,
        )
    )
    assert statuses(r) == [("Object", "lag", None, None, 8.0), ("Object", "depth", None, 7.5, None)]


def test_computeReplicasForMetrics_failed_metric_leaves_an_empty_status() -> None:
    # statuses[i] stays the zero MetricStatus when metric i fails; the others are kept,
    # also when every metric failed (setCurrentReplicasAndMetricsInStatus).
    spec = HPASpec(1, 10, (ext_avg(10.0, "a"), ext_avg(10.0, "gone")))
    r = sync(SyncInput(spec, 3, external_metrics={"a": [60.0]}, recommendations=OLD))
    assert (r.desired_replicas, r.able_to_scale) == (6, True)
    assert statuses(r) == [("External", "a", None, 20.0, None), ("", "", None, None, None)]
    failed = sync(SyncInput(spec, 3, recommendations=OLD))
    assert not failed.able_to_scale
    assert statuses(failed) == [("", "", None, None, None)] * 2


def test_reconcileAutoscaler_writes_no_metrics_when_it_computes_none() -> None:
    # scaling disabled (0 replicas) and current outside [min, max]: no metric is read.
    spec = HPASpec(2, 5, (ext_avg(),))
    for current in (0, 1, 9):
        r = sync(SyncInput(spec, current, external_metrics={"q": [100.0]}, recommendations=OLD))
        assert r.current_metrics == ()


def test_SyncResult_aged_keeps_current_metrics() -> None:
    spec = HPASpec(1, 10, (ext_avg(),))
    r = sync(SyncInput(spec, 2, external_metrics={"q": [200.0]}, recommendations=OLD))
    assert r.aged(15.0).current_metrics == r.current_metrics != ()
