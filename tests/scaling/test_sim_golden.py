"""The simulator's answers do not move when it is made faster.

Two kinds of check:

* pinned results of the NASA launch day (examples/scaling.yaml at --scale 200,
  with and without the worker), recorded before the loop was optimised: every
  summary figure, and a digest of every integer timeline column. A change here
  is a change of behaviour; if it is meant (a fix to the controller or the
  cluster model), say so in the commit and re-pin;
* replaying the web HPA's shared decisions (``web_decisions``, what a sweep
  computes once per HPA setting) gives the same result as stepping the
  controller inside the run, over the sweep's knobs.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftover.scaling.config import (
    ScalingConfig,
    SimParams,
    controller_constants,
    load_config,
    sim_params,
    web_hpa_spec,
    worker_hpa_spec,
)
from shiftover.scaling.hpa import (
    Behavior,
    ControllerConstants,
    HPAController,
    HPASpec,
    MetricSpec,
    MetricTarget,
    ScalingPolicy,
    ScalingRules,
)
from shiftover.scaling.sim import SimResult, prepare, run, simulate, web_decisions
from shiftover.scaling.trace import Trace, load_trace, parse_timestamp

REPO = Path(__file__).resolve().parents[2]
NASA = REPO / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"


def launch_day() -> Trace:
    return load_trace(
        NASA,
        scale=200,
        start=parse_timestamp("1995-07-13T00:00:00Z"),
        end=parse_timestamp("1995-07-14T00:00:00Z"),
    )


def example(worker: bool) -> ScalingConfig:
    cfg = load_config(REPO / "examples" / "scaling.yaml")
    return cfg if worker else cfg.model_copy(update={"worker": None})


def digest(values: Any) -> str:
    return hashlib.sha256(np.asarray(values).astype("<i8").tobytes()).hexdigest()[:16]


def int_columns(result: SimResult) -> dict[str, str]:
    tl = result.timeline
    return {
        f.name: digest(getattr(tl, f.name))
        for f in fields(tl)
        if np.asarray(getattr(tl, f.name)).dtype.kind == "i"
    }


def assert_same(result: SimResult, other: SimResult) -> None:
    assert result.summary == other.summary
    tl, tl2 = result.timeline, other.timeline
    for f in fields(tl):
        np.testing.assert_array_equal(getattr(tl, f.name), getattr(tl2, f.name), err_msg=f.name)


PINNED: dict[bool, tuple[dict[str, float], dict[str, str]]] = {
    True: (
        {
            "duration_seconds": 86400, "minutes": 1440, "minutes_over_slo": 20,
            "requests_total": 27414200.0, "requests_not_within_slo": 98283.33333333331,
            "peak_desired_replicas": 39, "peak_ready_replicas": 39, "peak_nodes": 16,
            "node_hours": 153.30833333333334, "pod_hours": 278.0861111111111,
            "scale_ups": 56, "nodes_removed": 67, "worker_peak_replicas": 30,
            "worker_peak_queue": 918.0000000010477, "worker_max_wait_seconds": 67.90555555555329,
            "worker_mean_wait_seconds": 1.558794061203399, "jobs_unfinished": 0.0,
        },
        {
            "t": "d74818e8edbe56b7", "desired_replicas": "888e3cb353af8bee",
            "ready_replicas": "6186c662b6300f2b", "nodes": "314f1d1b9801a8e7",
            "ready_nodes": "83de44e1162b9b22", "web_pending": "99d07a4e4335d207",
            "worker_pending": "93b263352035922c", "worker_desired": "7305547cb32b45cf",
            "worker_ready": "1c8bcf7993cf7028",
        },
    ),
    False: (
        {
            "duration_seconds": 86400, "minutes": 1440, "minutes_over_slo": 19,
            "requests_total": 27414200.0, "requests_not_within_slo": 95516.66666666666,
            "peak_desired_replicas": 39, "peak_ready_replicas": 39, "peak_nodes": 13,
            "node_hours": 117.725, "pod_hours": 278.52222222222224, "scale_ups": 19,
            "nodes_removed": 23, "worker_peak_replicas": 0, "worker_peak_queue": 0.0,
            "worker_max_wait_seconds": 0.0, "worker_mean_wait_seconds": 0.0, "jobs_unfinished": 0.0,
        },
        {
            "t": "d74818e8edbe56b7", "desired_replicas": "888e3cb353af8bee",
            "ready_replicas": "52a2dea055be2f6a", "nodes": "0d36d2278beb6e1c",
            "ready_nodes": "b1950535ba745b6f", "web_pending": "c43f6282ca19c847",
            "worker_pending": "7e36bec0af80ff78", "worker_desired": "7e36bec0af80ff78",
            "worker_ready": "7e36bec0af80ff78",
        },
    ),
}


@pytest.mark.parametrize("worker", [True, False], ids=["web+worker", "web"])
def test_launch_day_is_pinned(worker: bool) -> None:
    result = simulate(launch_day(), example(worker))
    summary, columns = PINNED[worker]
    got = result.summary.to_dict()
    for key, value in summary.items():
        if isinstance(value, int):
            assert got[key] == value, key
        else:  # numpy's summation order may differ across builds in the last bits
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-9), key
    got_columns = int_columns(result)
    for name, hexdigest in columns.items():
        assert got_columns[name] == hexdigest, name


# knobs (min replicas, target per pod, scale-down window, headroom pods) as recommend sweeps them
Knobs = tuple[int, float, int, int]


def variant(
    params: SimParams, spec: HPASpec, constants: ControllerConstants, knobs: Knobs
) -> tuple[SimParams, HPASpec, ControllerConstants]:
    min_replicas, target, window, headroom = knobs
    metric = spec.metrics[0]
    metrics = (MetricSpec(metric.source, metric.name, MetricTarget(metric.target.type, target)),)
    behavior = spec.behavior
    if behavior is None:
        constants = replace(constants, downscale_stabilization_seconds=float(window))
    else:
        down = replace(behavior.scale_down or ScalingRules(), stabilization_window_seconds=window)
        behavior = Behavior(scale_up=behavior.scale_up, scale_down=down)
    web = HPASpec(min(min_replicas, spec.max_replicas), spec.max_replicas, metrics, behavior)
    return replace(params, pause_pods=headroom), web, constants


KNOBS: list[Knobs] = [
    (1, 25.0, 0, 0),
    (1, 50.0, 600, 8),
    (3, 35.0, 300, 0),
    (3, 35.0, 300, 2),
    (4, 37.5, 60, 4),
    (8, 25.0, 120, 1),
    (2, 45.0, 0, 8),
]


@pytest.mark.parametrize("behavior", [True, False], ids=["behavior", "no-behavior"])
def test_shared_web_decisions_replay_the_controller(behavior: bool) -> None:
    cfg = example(worker=True)
    if not behavior:
        hpa = cfg.web.hpa.model_copy(update={"behavior": None})
        cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update={"hpa": hpa})})
    params = sim_params(cfg)
    work = prepare(launch_day(), params)
    worker = worker_hpa_spec(cfg)
    for knobs in KNOBS:
        p, web, constants = variant(params, web_hpa_spec(cfg), controller_constants(cfg), knobs)
        decisions = web_decisions(work, p, web, constants)
        assert decisions is not None
        stepped = run(work, p, web, worker, constants)
        assert_same(run(work, p, web, worker, constants, web=decisions), stepped)
        # the decisions do not depend on headroom: shared across it
        other = replace(p, pause_pods=(knobs[3] + 3) % 9)
        assert_same(
            run(work, other, web, worker, constants, web=decisions),
            run(work, other, web, worker, constants),
        )


def test_web_decisions_only_when_the_cluster_cannot_change_them() -> None:
    cfg = example(worker=False)
    params = sim_params(cfg)
    work = prepare(launch_day(), params)
    spec = web_hpa_spec(cfg)
    metric = spec.metrics[0]
    value = MetricSpec("External", metric.name, MetricTarget("Value", 100.0))
    pods = MetricSpec("Pods", metric.name, MetricTarget("AverageValue", 100.0))
    for other in (value, pods):
        assert web_decisions(work, params, HPASpec(1, 60, (other,), spec.behavior)) is None
    decisions = web_decisions(work, params, spec, controller_constants(cfg))
    assert decisions is not None
    assert len(decisions.desired) == len(work.web_metric)
    wider = replace(spec, max_replicas=spec.max_replicas + 1)
    with pytest.raises(ValueError, match="web decisions"):
        run(work, params, wider, None, controller_constants(cfg), web=decisions)


behaviors = st.one_of(
    st.none(),
    st.builds(
        Behavior,
        scale_up=st.one_of(
            st.none(),
            st.builds(
                ScalingRules,
                stabilization_window_seconds=st.none() | st.integers(0, 300),
                select_policy=st.sampled_from(["Max", "Min", "Disabled"]),
                policies=st.lists(
                    st.builds(
                        ScalingPolicy,
                        st.sampled_from(["Pods", "Percent"]),
                        st.integers(1, 200),
                        st.sampled_from([15, 60]),
                    ),
                    max_size=2,
                ).map(tuple),
            ),
        ),
        scale_down=st.one_of(
            st.none(),
            st.builds(
                ScalingRules,
                stabilization_window_seconds=st.none() | st.integers(0, 600),
                select_policy=st.sampled_from(["Max", "Min", "Disabled"]),
                policies=st.lists(
                    st.builds(
                        ScalingPolicy,
                        st.sampled_from(["Pods", "Percent"]),
                        st.integers(1, 100),
                        st.sampled_from([15, 60]),
                    ),
                    max_size=2,
                ).map(tuple),
            ),
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    lo=st.integers(1, 4),
    span=st.integers(0, 30),
    target=st.sampled_from([0.5, 1.0, 10.0, 35.0, 0.001]),
    behavior=behaviors,
    window=st.sampled_from([0.0, 15.0, 300.0]),
    ticks=st.lists(
        st.tuples(
            st.sampled_from([15, 30, 45]),
            st.none()
            | st.floats(0, 2000, allow_nan=False)
            # on the tolerance's edges for target 35 (x 1, 2, 3 pods) and milli rounding
            | st.sampled_from([0.0, 31.5, 38.5, 63.0, 77.0, 94.5, 115.5, 35.0000000001, 0.0004]),
            st.none() | st.integers(0, 40),  # someone else set the replicas
        ),
        max_size=40,
    ),
)
def test_step_one_is_step(
    lo: int,
    span: int,
    target: float,
    behavior: Behavior | None,
    window: float,
    ticks: list[tuple[int, float | None, int | None]],
) -> None:
    """The simulator's inlined sync for one External AverageValue metric answers as step()."""
    spec = HPASpec(lo, lo + span, (MetricSpec("External", "m", MetricTarget("AverageValue", target)),), behavior)
    constants = ControllerConstants(downscale_stabilization_seconds=window)
    fast, slow = HPAController(spec, constants), HPAController(spec, constants)
    now, current = 0.0, lo
    for dt, value, override in ticks:
        if override is not None:
            current = override
        got = fast.step_one(now, current, value)
        want = slow.step(now, current, current, {} if value is None else {"m": value})
        assert (got, fast.last_reason) == (want, slow.last_reason)
        current = got
        now += dt


def test_step_one_needs_one_external_average_value_metric() -> None:
    spec = HPASpec(1, 5, (MetricSpec("External", "m", MetricTarget("Value", 10.0)),))
    with pytest.raises(ValueError, match="one External AverageValue"):
        HPAController(spec).step_one(0.0, 1, 10.0)


def test_settle_at_min_and_max_replicas_names_the_bound() -> None:
    """At minReplicas a lower recommendation is TooFewReplicas whatever the scale-down events
    (the limit is never above current); at maxReplicas a higher one is TooManyReplicas."""
    rules = ScalingRules(stabilization_window_seconds=0, policies=(ScalingPolicy("Pods", 1, 60),))
    metric = (MetricSpec("External", "q", MetricTarget("AverageValue", 10.0)),)
    down = HPAController(HPASpec(2, 5, metric, Behavior(scale_down=rules)))
    got = [
        (down.step_one(now, current, 0.0), down.last_reason)
        for now, current in ((0.0, 4), (15.0, 3), (30.0, 3), (75.0, 3), (90.0, 2), (105.0, 2))
    ]
    assert got == [
        (3, "ScaleDownLimit"),
        (3, "ScaleDownLimit"),
        (3, "ScaleDownLimit"),
        (2, "TooFewReplicas"),
        (2, "TooFewReplicas"),
        (2, "TooFewReplicas"),
    ]
    up = HPAController(HPASpec(1, 3, metric, Behavior()))
    got = [(up.step_one(now, 3, 1000.0), up.last_reason) for now in (0.0, 15.0, 30.0)]
    assert got == [(3, "TooManyReplicas")] * 3
