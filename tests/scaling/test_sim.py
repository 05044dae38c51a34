"""The simulator on scenarios small enough to check by hand, and on the NASA trace.

Defaults in these scenarios: one HPA sync every 15 s, the metric pipeline
refreshes every 30 s, rolls up 30 s buckets and lags 30 s. So a demand step at
t=600 lands in bucket [600, 630), which is queryable at 660 (630 + 30 s lag,
then the next 30 s refresh): the first sync that sees it is t=660.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shiftover.scaling.config import ScalingConfig
from shiftover.scaling.sim import SimResult, simulate
from shiftover.scaling.trace import Trace, load_trace, parse_timestamp

REPO = Path(__file__).resolve().parents[2]
NASA = REPO / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"
START = datetime(2024, 1, 1, tzinfo=UTC)


def config(**sections: Any) -> ScalingConfig:
    base: dict[str, Any] = {
        "web": {
            "capacity_rps": 10,
            "startup": "20s",
            "requests": {"cpu": "1", "memory": "1Gi"},
            "hpa": {"min_replicas": 1, "max_replicas": 50, "metric": "rps", "target_per_pod": 10},
        },
        "metrics": {"refresh": "30s", "rollup": "30s", "lag": "30s"},
        "cluster": {
            "node": {"cpu": "100", "memory": "400Gi"},
            "min_nodes": 1,
            "max_nodes": 10,
            "provisioning": "90s",
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged = dict(base[key])
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
            base[key] = merged
        else:
            base[key] = value
    return ScalingConfig.model_validate(base)


def per_second(*segments: tuple[int, float], jobs: list[tuple[int, float]] | None = None) -> Trace:
    """A per-second trace from (seconds, requests/s) segments."""
    req = np.concatenate([np.full(n, v, dtype=np.float64) for n, v in segments])
    job = None
    if jobs is not None:
        job = np.concatenate([np.full(n, v, dtype=np.float64) for n, v in jobs])
    return Trace(start=START, step_seconds=1, requests=req, jobs=job, source="test")


def row(result: SimResult, t: int) -> dict[str, float | int]:
    idx = int(np.searchsorted(result.timeline.t, t))
    assert result.timeline.t[idx] == t
    return {c: getattr(result.timeline, c)[idx].item() for c in result.timeline.COLUMNS}


def test_demand_step_raises_replicas_after_metric_lag_and_sync() -> None:
    res = simulate(per_second((600, 10.0), (1200, 100.0)), config())
    assert row(res, 0)["desired_replicas"] == 1
    assert row(res, 645)["desired_replicas"] == 1  # bucket [600, 630) not served yet
    assert row(res, 660)["desired_replicas"] == 4  # ceil(100/10) = 10, limited to max(2 x 1, 4)
    assert row(res, 675)["desired_replicas"] == 8  # max(2 x 4, 4)
    assert row(res, 690)["desired_replicas"] == 10
    # pods created at 660 are Ready 20 s later
    assert row(res, 675)["ready_replicas"] == 1
    assert row(res, 690)["ready_replicas"] == 4
    assert row(res, 705)["ready_replicas"] == 8
    assert row(res, 720)["capacity_rps"] == 100.0
    # demand above ready capacity is not within SLO:
    # [600, 680) 1 pod Ready, [680, 695) 4 pods, [695, 710) 8 pods, then 10
    assert res.summary.requests_not_within_slo == pytest.approx(80 * 90 + 15 * 60 + 15 * 20)
    assert res.summary.minutes_over_slo == 2  # minutes [600, 660) and [660, 720)


def test_scale_down_waits_for_the_stabilization_window() -> None:
    res = simulate(per_second((600, 100.0), (900, 10.0)), config())
    assert row(res, 0)["desired_replicas"] == 10
    # the drop is seen at 660; the highest recommendation of the last 300 s (10, made at 645)
    # keeps the replicas until 645 leaves the window
    assert row(res, 945)["desired_replicas"] == 10
    assert row(res, 960)["desired_replicas"] == 1
    assert res.summary.requests_not_within_slo == 0
    assert res.summary.minutes_over_slo == 0


def test_pods_wait_for_nodes_then_cluster_autoscaler_adds_them() -> None:
    cfg = config(cluster={"node": {"cpu": "2", "memory": "8Gi"}, "min_nodes": 1, "max_nodes": 10})
    res = simulate(per_second((600, 10.0), (900, 80.0)), cfg)
    assert row(res, 645)["nodes"] == 1
    # 660: 4 replicas wanted, 1 more fits the only node (2 pods of 1 cpu per node),
    # 2 pending; the scan at 660 asks for 1 node (2 pods per node)
    r = row(res, 660)
    assert (r["desired_replicas"], r["web_pending"], r["nodes"], r["ready_nodes"]) == (4, 2, 2, 1)
    # 675: 8 wanted, 6 pending; 2 fit the node on its way, the scan at 680 asks for 2 more
    assert row(res, 675)["web_pending"] == 6
    assert row(res, 690)["nodes"] == 4
    # provisioning takes 90 s: the first new node is Ready at 750, its pods 20 s later
    assert row(res, 735)["ready_nodes"] == 1
    assert row(res, 735)["ready_replicas"] == 2
    assert row(res, 750)["ready_nodes"] == 2
    assert row(res, 765)["ready_replicas"] == 2
    assert row(res, 780)["ready_replicas"] == 4
    assert row(res, 795)["ready_replicas"] == 8
    assert res.summary.peak_nodes == 4  # 8 pods, 2 per node
    assert res.summary.scale_ups >= 1


def test_node_removed_after_ten_minutes_unneeded() -> None:
    cfg = config(
        cluster={"node": {"cpu": "2", "memory": "8Gi"}, "min_nodes": 1, "initial_nodes": 5},
    )
    res = simulate(per_second((600, 100.0), (1800, 10.0)), cfg)
    assert row(res, 0)["nodes"] == 5
    assert row(res, 960)["desired_replicas"] == 1
    # 9 pods deleted at 960 (from the fullest nodes): 4 nodes empty, unneeded from the scan at 960;
    # Cluster Autoscaler removes them 600 s later, in one bulk (empty nodes)
    assert row(res, 1545)["nodes"] == 5
    assert row(res, 1560)["nodes"] == 1
    assert res.summary.nodes_removed == 4
    assert res.summary.node_hours == pytest.approx((5 * 1560 + 1 * (2400 - 1560)) / 3600)


def test_scale_down_delayed_after_a_scale_up() -> None:
    cfg = config(
        cluster={
            "node": {"cpu": "2", "memory": "8Gi"},
            "min_nodes": 1,
            "scale_down_delay_after_add": "20m",
        },
    )
    res = simulate(per_second((600, 10.0), (300, 80.0), (2400, 10.0)), cfg)
    t, nodes = res.timeline.t.tolist(), res.timeline.nodes.tolist()
    peak = max(nodes)
    last_up = max(x for x, a, b in zip(t[1:], nodes, nodes[1:], strict=False) if b > a)
    first_drop = min(x for x, a, b in zip(t[1:], nodes, nodes[1:], strict=False) if b < a)
    # demand fell at 900 and the pods went at 1200 (stabilization); the empty nodes are
    # unneeded from then, yet none goes before 20 minutes after the last scale-up
    assert peak > 1
    assert first_drop >= last_up + 1200


def test_worker_queue_fifo_wait_is_exact_for_a_burst() -> None:
    cfg = config(
        worker={
            "jobs_per_second": 1,
            "startup": "10s",
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "hpa": {"min_replicas": 1, "max_replicas": 1, "metric": "queue", "target_per_pod": 5},
        }
    )
    # 2 jobs/s for 60 s, then none; one worker at 1 job/s
    trace = per_second((600, 10.0), jobs=[(60, 2.0), (540, 0.0)])
    res = simulate(trace, cfg)
    s = res.summary
    assert row(res, 60)["queue_length"] == pytest.approx(60.0)
    assert row(res, 120)["queue_length"] == pytest.approx(0.0)
    assert s.worker_peak_queue == pytest.approx(60.0)
    assert s.worker_max_wait_seconds == pytest.approx(60.0)  # the last job: in at 60, out at 120
    assert s.worker_mean_wait_seconds == pytest.approx(30.0, abs=1.0)
    assert s.jobs_unfinished == 0


def test_worker_hpa_drains_a_backlog() -> None:
    cfg = config(
        worker={
            "jobs_per_second": 1,
            "startup": "10s",
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "hpa": {"min_replicas": 1, "max_replicas": 20, "metric": "queue", "target_per_pod": 10},
        }
    )
    trace = per_second((1800, 10.0), jobs=[(120, 0.0), (60, 10.0), (1620, 0.5)])
    res = simulate(trace, cfg)
    tl = res.timeline
    assert res.summary.worker_peak_replicas > 4
    assert tl.queue_length[-1] == pytest.approx(0.0)
    assert res.summary.jobs_unfinished == 0
    # the queue peaks inside the burst's aftermath and is gone well before the end
    assert res.summary.worker_peak_queue > 100
    assert res.summary.worker_max_wait_seconds > 0


def test_overprovisioning_pods_keep_a_warm_node() -> None:
    base = config(cluster={"node": {"cpu": "2", "memory": "8Gi"}, "min_nodes": 1})
    warm = config(
        cluster={
            "node": {"cpu": "2", "memory": "8Gi"},
            "min_nodes": 1,
            "overprovisioning": {"pods": 4},
        }
    )
    trace = per_second((600, 10.0), (600, 50.0))
    cold_res, warm_res = simulate(trace, base), simulate(trace, warm)
    assert warm_res.summary.requests_not_within_slo < cold_res.summary.requests_not_within_slo
    assert warm_res.summary.node_hours > cold_res.summary.node_hours


def test_totals_match_the_trace() -> None:
    trace = per_second((3600, 37.0))
    res = simulate(trace, config())
    tl = res.timeline
    assert res.summary.requests_total == pytest.approx(37.0 * 3600)
    assert float((tl.served_within_slo + tl.not_within_slo).sum()) == pytest.approx(37.0 * 3600)
    assert len(tl.t) == 3600 // 15


def nasa() -> Path:
    if not NASA.exists():
        pytest.skip(f"the NASA trace is not at {NASA} (see examples/data/README.md)")
    return NASA


def test_nasa_launch_day_through_simulate() -> None:
    cfg_path = REPO / "examples" / "scaling.yaml"
    from shiftover.scaling.config import load_config

    trace = load_trace(
        nasa(),
        scale=200,
        start=parse_timestamp("1995-07-13T00:00:00Z"),
        end=parse_timestamp("1995-07-14T00:00:00Z"),
    )
    res = simulate(trace, load_config(cfg_path))
    s = res.summary
    assert s.duration_seconds == 86400
    assert s.requests_total == pytest.approx(137071 * 200)
    # the launch spike (405 req/min x 200 = 1,350 req/s) needs about 39 pods of 50 req/s at target 35
    assert 30 <= s.peak_desired_replicas <= 60
    assert s.peak_nodes > 5
    assert 0 <= s.requests_not_within_slo < s.requests_total * 0.05
    assert s.node_hours > 24 * 2  # never below min_nodes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    minutes=st.lists(st.integers(min_value=0, max_value=6000), min_size=5, max_size=40),
    min_replicas=st.integers(min_value=1, max_value=4),
    max_replicas=st.integers(min_value=4, max_value=30),
    max_nodes=st.integers(min_value=2, max_value=8),
    startup=st.integers(min_value=0, max_value=120),
    provisioning=st.integers(min_value=0, max_value=200),
    headroom=st.integers(min_value=0, max_value=3),
)
@example(minutes=[0, 0, 0, 661, 0], min_replicas=1, max_replicas=4, max_nodes=2, startup=0,
         provisioning=0, headroom=0)  # a pod Ready in the same second as a sync (found in CI)
def test_invariants_on_random_traces(
    minutes: list[int], min_replicas: int, max_replicas: int, max_nodes: int, startup: int, provisioning: int, headroom: int
) -> None:
    cfg = config(
        web={"startup": f"{startup}s", "hpa": {"min_replicas": min_replicas, "max_replicas": max_replicas}},
        cluster={
            "node": {"cpu": "2", "memory": "8Gi"},
            "min_nodes": 1,
            "max_nodes": max_nodes,
            "provisioning": f"{provisioning}s",
            "overprovisioning": {"pods": headroom},
        },
    )
    trace = Trace(start=START, step_seconds=60, requests=np.asarray(minutes, dtype=np.float64), source="random")
    res = simulate(trace, cfg)
    tl = res.timeline
    assert np.all(tl.desired_replicas >= min_replicas) and np.all(tl.desired_replicas <= max_replicas)
    assert np.all(tl.ready_replicas <= tl.desired_replicas)
    assert np.all(tl.nodes <= max_nodes) and np.all(tl.ready_nodes >= 1)
    assert np.all(tl.web_pending >= 0) and np.all(tl.worker_pending >= 0)
    assert np.all(tl.capacity_rps == tl.ready_replicas * 10.0)
    assert float((tl.served_within_slo + tl.not_within_slo).sum()) == pytest.approx(float(sum(minutes)))
    assert 0 <= res.summary.minutes_over_slo <= len(minutes)
