"""Properties of the HPA arithmetic over random specs and metric sequences.

- desired replicas stay within [min, max] (except the controller's own rule:
  current 0 means scaling is disabled);
- no scale-down below the highest recommendation inside the stabilization window;
- the scaling policies are never exceeded, judged from the replica timeline
  itself (the replicas at the start of each period), not from the event list;
- HPAController.step (the simulator's fast path) agrees with sync().

Each also runs under other ControllerConstants (the API server's behavior
defaults: stabilization windows and policies), drawn at random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftover.scaling.hpa import (
    Behavior,
    ControllerConstants,
    HPAController,
    HPASpec,
    MetricSpec,
    MetricTarget,
    PodSample,
    ScalingPolicy,
    ScalingRules,
    SyncInput,
    SyncResult,
    sync,
)

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

windows = st.integers(min_value=0, max_value=600)
selects = st.sampled_from(["Max", "Min", "Disabled"])


def policy(period: int) -> st.SearchStrategy[ScalingPolicy]:
    return st.one_of(
        st.builds(ScalingPolicy, st.just("Pods"), st.integers(1, 10), st.just(period)),
        st.builds(ScalingPolicy, st.just("Percent"), st.integers(1, 300), st.just(period)),
    )


@st.composite
def rules(draw: st.DrawFn, period: int | None = None) -> ScalingRules | None:
    if draw(st.booleans()):
        return None
    p = period if period is not None else draw(st.sampled_from([15, 30, 60, 120]))
    return ScalingRules(
        stabilization_window_seconds=draw(st.none() | windows),
        select_policy=draw(selects),
        policies=tuple(draw(st.lists(policy(p), min_size=0, max_size=2))),
    )


@st.composite
def constants(draw: st.DrawFn, period: int | None = None) -> ControllerConstants:
    """The defaults, or other behavior defaults (windows, possibly fractional, and policies)."""
    if draw(st.booleans()):
        return ControllerConstants()
    seconds = st.one_of(windows.map(float), st.floats(0, 600, allow_nan=False))
    up_p = period if period is not None else draw(st.sampled_from([15, 30, 60, 120]))
    down_p = period if period is not None else draw(st.sampled_from([15, 30, 60, 120]))
    return ControllerConstants(
        downscale_stabilization_seconds=draw(seconds),
        upscale_stabilization_seconds=draw(seconds),
        upscale_policies=tuple(draw(st.lists(policy(up_p), min_size=1, max_size=2))),
        downscale_policies=tuple(draw(st.lists(policy(down_p), min_size=1, max_size=2))),
    )


@st.composite
def specs(draw: st.DrawFn, *, same_period: int | None = None, with_pods: bool = False) -> HPASpec:
    lo = draw(st.integers(1, 5))
    hi = draw(st.integers(lo, lo + 40))
    n = draw(st.integers(1, 2))
    metrics = []
    for i in range(n):
        kind = draw(st.sampled_from(["Value", "AverageValue"]))
        metrics.append(
            MetricSpec("External", f"m{i}", MetricTarget(kind, float(draw(st.integers(10, 200)))))
        )  # type: ignore[arg-type]
    if with_pods and draw(st.booleans()):
        metrics.append(
            MetricSpec("Pods", "p", MetricTarget("AverageValue", float(draw(st.integers(10, 200)))))
        )
    behavior = None
    if draw(st.booleans()):
        behavior = Behavior(draw(rules(same_period)), draw(rules(same_period)))
    return HPASpec(lo, hi, tuple(metrics), behavior)


@dataclass(frozen=True)
class Tick:
    values: tuple[float | None, ...]  # per metric; None = the metric is missing
    ready_share: float
    dt: int


ticks = st.lists(
    st.builds(
        Tick,
        st.tuples(
            *[
                st.one_of(
                    st.none(),
                    st.floats(0, 3000, allow_nan=False),
                    st.sampled_from([0.0, 100.0, 500.0, 1000.0]),
                )
            ]
            * 3
        ),
        st.floats(0, 1),
        st.sampled_from([15, 15, 15, 30, 1, 7]),
    ),
    min_size=1,
    max_size=60,
)


def inputs(
    spec: HPASpec, current: int, ready: int, tick: Tick, prev: SyncResult | None
) -> SyncInput:
    ext: dict[str, list[float]] = {}
    pods_value: float | None = None
    for i, m in enumerate(spec.metrics):
        v = tick.values[i]
        if v is None:
            continue
        if m.source == "External":
            ext[m.name] = [v]
        else:
            pods_value = v
    ready_pods = [
        PodSample(True, 1000.0, 900.0, {} if pods_value is None else {"p": pods_value})
        for _ in range(ready)
    ]
    pending = [PodSample(False, 1.0, None, phase="Pending") for _ in range(current - ready)]
    return SyncInput(
        spec=spec,
        current_replicas=current,
        pods=tuple(ready_pods + pending),
        external_metrics=ext,
        recommendations=prev.recommendations if prev else (),
        scale_up_events=prev.scale_up_events if prev else (),
        scale_down_events=prev.scale_down_events if prev else (),
    )


@SETTINGS
@given(specs(), st.integers(0, 60), ticks)
def test_desired_stays_within_min_and_max(spec: HPASpec, start: int, seq: list[Tick]) -> None:
    current = start
    prev: SyncResult | None = None
    for tick in seq:
        ready = math.floor(current * tick.ready_share)
        r = sync(inputs(spec, current, ready, tick, prev))
        if current == 0:
            assert r.desired_replicas == 0 and r.reason == "ScalingDisabled"
        else:
            assert spec.min_replicas <= r.desired_replicas <= spec.max_replicas, r
        current = r.desired_replicas
        prev = r.aged(tick.dt)


# plateaus: a level held for several 15 s syncs, then another, so that a peak
# followed by a long low stretch (what the stabilization windows are about) is common
levels = st.sampled_from([0.0, 50.0, 300.0, 900.0, 2500.0])
level_ticks = st.lists(
    st.tuples(st.tuples(levels, levels, levels), st.integers(1, 25)), min_size=1, max_size=6
).map(lambda runs: [Tick(values, 1.0, 15) for values, n in runs for _ in range(n)])


@SETTINGS
@given(specs(), level_ticks, constants())
def test_no_scale_down_below_the_window_maximum(
    spec: HPASpec, seq: list[Tick], c: ControllerConstants
) -> None:
    current = spec.min_replicas
    prev: SyncResult | None = None
    for tick in seq:
        inp = inputs(spec, current, current, tick, prev)
        r = sync(inp, c)
        if r.able_to_scale and r.desired_replicas < current:
            pre = max(p for _, p in r.metric_proposals)
            recs = inp.recommendations or ()
            if spec.behavior is None:
                win = c.downscale_stabilization_seconds
                inside = [x.replicas for x in recs if x.age_seconds <= win]
            else:
                down = spec.behavior.scale_down
                win = (
                    down.stabilization_window_seconds
                    if down and down.stabilization_window_seconds is not None
                    else int(c.downscale_stabilization_seconds)
                )
                inside = [x.replicas for x in recs if x.age_seconds < win]
            if not inp.recommendations and win > 0:
                # the first sync's seed, stamped before the cutoff: it counts only if window > 0
                inside.append(current)
            assert r.desired_replicas >= max([pre, *inside])
        current = r.desired_replicas
        prev = r.aged(tick.dt)


def _bound(p: ScalingPolicy, start: int, up: bool) -> int:
    if p.type == "Pods":
        return start + p.value if up else start - p.value
    if up:
        return math.ceil(float(start) * (1 + float(p.value) / 100))
    return int(float(start) * (1 - float(p.value) / 100))


@SETTINGS
@given(
    st.sampled_from([15, 30, 60, 120]).flatmap(
        lambda p: st.tuples(st.just(p), specs(same_period=p), constants(p))
    ),
    ticks,
)
def test_policy_limits_are_never_exceeded(
    period_spec: tuple[int, HPASpec, ControllerConstants], seq: list[Tick]
) -> None:
    _, spec, c = period_spec
    if spec.behavior is None:
        spec = HPASpec(spec.min_replicas, spec.max_replicas, spec.metrics, Behavior())
    assert spec.behavior is not None
    up_rules = spec.behavior.scale_up or ScalingRules()
    down_rules = spec.behavior.scale_down or ScalingRules()
    up_pol = up_rules.policies or c.upscale_policies
    down_pol = down_rules.policies or c.downscale_policies
    periods = {p.period_seconds for p in up_pol + down_pol}
    if len(periods) != 1:
        return  # defaults mixed with another period: the plain timeline reading needs one period
    (period,) = periods
    now = 0
    current = spec.min_replicas
    timeline: list[tuple[int, int]] = []  # (time, replicas after that sync)

    def replicas_at(t: float) -> int:
        value = spec.min_replicas
        for when, n in timeline:
            if when <= t:
                value = n
        return value

    prev: SyncResult | None = None
    for tick in seq:
        r = sync(inputs(spec, current, current, tick, prev), c)
        d = r.desired_replicas
        start = replicas_at(now - period)
        if d > current:
            if up_rules.select_policy == "Disabled":
                raise AssertionError("scaled up with selectPolicy Disabled")
            pick = min if up_rules.select_policy == "Min" else max
            assert d <= max(current, pick(_bound(p, start, True) for p in up_pol)), (start, r)
        if d < current:
            if down_rules.select_policy == "Disabled":
                raise AssertionError("scaled down with selectPolicy Disabled")
            pick = max if down_rules.select_policy == "Min" else min
            assert d >= min(current, pick(_bound(p, start, False) for p in down_pol)), (start, r)
        timeline.append((now, d))
        current = d
        prev = r.aged(tick.dt)
        now += tick.dt


@SETTINGS
@given(
    specs(with_pods=True),
    st.integers(0, 50),
    st.one_of(ticks, level_ticks),
    st.lists(st.integers(0, 60), max_size=40),
    constants(),
)
def test_step_agrees_with_sync(
    spec: HPASpec, start: int, seq: list[Tick], overrides: list[int], c: ControllerConstants
) -> None:
    controller = HPAController(spec, c)
    now = 0
    current = start
    prev: SyncResult | None = None
    for i, tick in enumerate(seq):
        if i < len(overrides) and overrides[i] % 7 == 0:
            current = overrides[i]  # someone else scaled the Deployment
        ready = math.floor(current * tick.ready_share)
        inp = inputs(spec, current, ready, tick, prev)
        r = sync(inp, c)
        ext = {name: vals[0] for name, vals in inp.external_metrics.items()}
        pods_value = next(
            (v for m, v in zip(spec.metrics, tick.values, strict=False) if m.source == "Pods"), None
        )
        got = controller.step(
            float(now), current, ready, ext, None if pods_value is None else {"p": pods_value}
        )
        assert got == r.desired_replicas, (i, r)
        assert controller.last_reason == r.reason
        current = got
        prev = r.aged(tick.dt)
        now += tick.dt
