"""Sweep the web HPA and node headroom; return the cheapest setting that holds the SLO.

The knobs are the ones a team can turn without touching the application:

* ``min_replicas`` — a floor that absorbs the first minutes of a surge;
* ``target_per_pod`` — the HPA's AverageValue target, as a fraction of a pod's
  capacity (lower = more spare capacity per pod, earlier scale-up);
* the scale-down stabilization window — how long the HPA keeps the highest
  recent recommendation (``behavior.scaleDown.stabilizationWindowSeconds``, or
  the controller's ``--horizontal-pod-autoscaler-downscale-stabilization``
  when the HPA has no ``behavior``);
* node headroom — overprovisioning pause pods (priority below the service's)
  that hold room for web pods, so a scale-up lands on a warm node while Cluster
  Autoscaler brings a new one.

Every configuration is simulated on the same prepared workload (the web metric
does not depend on these knobs), spread over processes. The answer is the
cheapest configuration by node-hours whose minutes over SLO are within the
budget (0 by default), and the Pareto frontier of node-hours against minutes
over SLO, so a team can see what each minute of SLO costs.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from shiftover.errors import BadInput
from shiftover.scaling.config import (
    ScalingConfig,
    SimParams,
    controller_constants,
    sim_params,
    web_hpa_spec,
    worker_hpa_spec,
)
from shiftover.scaling.hpa import (
    Behavior,
    ControllerConstants,
    HPASpec,
    MetricSpec,
    MetricTarget,
    ScalingRules,
)
from shiftover.scaling.sim import Workload, prepare, run
from shiftover.scaling.trace import Trace

DEFAULT_MIN_REPLICAS = (1, 2, 3, 4, 6, 8)
DEFAULT_TARGET_FRACTIONS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0)
DEFAULT_WINDOWS = (0, 60, 120, 300, 600)
DEFAULT_HEADROOM = (0, 1, 2, 4, 8)


@dataclass(frozen=True)
class Grid:
    """The values swept; every combination is one configuration."""

    min_replicas: tuple[int, ...]
    target_fractions: tuple[float, ...]
    scale_down_windows: tuple[int, ...]
    headroom_pods: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("min_replicas", "target_fractions", "scale_down_windows", "headroom_pods"):
            if not getattr(self, name):
                raise BadInput(f"the sweep grid's {name} is empty", hint="give at least one value")
        if any(f <= 0 for f in self.target_fractions):
            raise BadInput("target fractions must be > 0 (a fraction of a pod's capacity_rps)")

    @property
    def size(self) -> int:
        return (
            len(self.min_replicas)
            * len(self.target_fractions)
            * len(self.scale_down_windows)
            * len(self.headroom_pods)
        )

    @classmethod
    def default(cls, config: ScalingConfig) -> Grid:
        hpa = config.web.hpa
        mins = sorted({m for m in (*DEFAULT_MIN_REPLICAS, hpa.min_replicas) if m <= hpa.max_replicas})
        return cls(
            min_replicas=tuple(mins),
            target_fractions=DEFAULT_TARGET_FRACTIONS,
            scale_down_windows=DEFAULT_WINDOWS,
            headroom_pods=DEFAULT_HEADROOM,
        )


@dataclass(frozen=True)
class Candidate:
    """One configuration and how it did."""

    min_replicas: int
    target_per_pod: float
    scale_down_window: int
    headroom_pods: int
    minutes_over_slo: int
    requests_not_within_slo: float
    node_hours: float
    peak_nodes: int
    peak_replicas: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Sweep:
    """What ``recommend`` found."""

    best: Candidate | None
    frontier: tuple[Candidate, ...]
    current: Candidate
    evaluated: int
    slo_budget: int
    seconds: float
    jobs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best.to_dict() if self.best else None,
            "current": self.current.to_dict(),
            "frontier": [c.to_dict() for c in self.frontier],
            "evaluated": self.evaluated,
            "slo_budget_minutes": self.slo_budget,
            "seconds": self.seconds,
            "jobs": self.jobs,
        }


# --- one configuration ---------------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    work: Workload
    params: SimParams
    web: HPASpec
    worker: HPASpec | None
    constants: ControllerConstants


def _variant(base: _Base, knobs: tuple[int, float, int, int]) -> tuple[SimParams, HPASpec, ControllerConstants]:
    min_replicas, target, window, headroom = knobs
    spec = base.web
    metric = spec.metrics[0]
    metrics = (
        MetricSpec(source=metric.source, name=metric.name, target=MetricTarget(type=metric.target.type, value=target)),
        *spec.metrics[1:],
    )
    constants = base.constants
    behavior = spec.behavior
    if behavior is None:
        constants = replace(constants, downscale_stabilization_seconds=float(window))
    else:
        down = behavior.scale_down or ScalingRules()
        behavior = Behavior(scale_up=behavior.scale_up, scale_down=replace(down, stabilization_window_seconds=window))
    web = HPASpec(
        min_replicas=min(min_replicas, spec.max_replicas),
        max_replicas=spec.max_replicas,
        metrics=metrics,
        behavior=behavior,
    )
    params = replace(base.params, pause_pods=headroom)
    return params, web, constants


def _evaluate(base: _Base, knobs: tuple[int, float, int, int]) -> Candidate:
    params, web, constants = _variant(base, knobs)
    s = run(base.work, params, web, base.worker, constants).summary
    return Candidate(
        min_replicas=web.min_replicas,
        target_per_pod=knobs[1],
        scale_down_window=knobs[2],
        headroom_pods=knobs[3],
        minutes_over_slo=s.minutes_over_slo,
        requests_not_within_slo=s.requests_not_within_slo,
        node_hours=s.node_hours,
        peak_nodes=s.peak_nodes,
        peak_replicas=s.peak_desired_replicas,
    )


_BASE: _Base | None = None


def _init_worker(base: _Base) -> None:
    global _BASE
    _BASE = base


def _evaluate_in_worker(knobs: tuple[int, float, int, int]) -> Candidate:
    assert _BASE is not None
    return _evaluate(_BASE, knobs)


# --- the sweep -------------------------------------------------------------------------


def pareto(candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """Configurations no other one beats on both node-hours and minutes over SLO."""
    ordered = sorted(candidates, key=lambda c: (c.node_hours, c.minutes_over_slo, c.requests_not_within_slo))
    frontier: list[Candidate] = []
    best_minutes: int | None = None
    for c in ordered:
        if best_minutes is None or c.minutes_over_slo < best_minutes:
            frontier.append(c)
            best_minutes = c.minutes_over_slo
    return tuple(frontier)


def recommend(
    trace: Trace,
    config: ScalingConfig,
    *,
    grid: Grid | None = None,
    slo_budget: int = 0,
    jobs: int | None = None,
) -> Sweep:
    """Simulate every configuration of ``grid`` and pick the cheapest within ``slo_budget``."""
    if slo_budget < 0:
        raise BadInput(f"--slo-budget must be >= 0 minutes, got {slo_budget}")
    grid = grid or Grid.default(config)
    params = sim_params(config)
    base = _Base(
        work=prepare(trace, params),
        params=params,
        web=web_hpa_spec(config),
        worker=worker_hpa_spec(config),
        constants=controller_constants(config),
    )
    capacity = config.web.capacity_rps
    knobs = [
        (m, round(f * capacity, 6), w, h)
        for m, f, w, h in itertools.product(
            grid.min_replicas, grid.target_fractions, grid.scale_down_windows, grid.headroom_pods
        )
    ]
    n_jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    n_jobs = min(n_jobs, len(knobs))
    started = time.perf_counter()
    if n_jobs == 1:
        results = [_evaluate(base, k) for k in knobs]
    else:
        chunk = max(1, len(knobs) // (n_jobs * 8))
        # forkserver, not fork: forking a process that has threads (an HTTP client's,
        # a test server's) can deadlock the child on a lock held mid-fork
        ctx = multiprocessing.get_context("forkserver")
        with ctx.Pool(n_jobs, initializer=_init_worker, initargs=(base,)) as pool:
            results = pool.map(_evaluate_in_worker, knobs, chunksize=chunk)
    seconds = time.perf_counter() - started
    current_knobs = (
        config.web.hpa.min_replicas,
        config.web.hpa.target_per_pod,
        _current_window(config),
        config.cluster.overprovisioning.pods,
    )
    current = _evaluate(base, current_knobs)
    feasible = [c for c in results if c.minutes_over_slo <= slo_budget]
    best = min(feasible, key=lambda c: (c.node_hours, c.minutes_over_slo, c.requests_not_within_slo)) if feasible else None
    return Sweep(
        best=best,
        frontier=pareto(results),
        current=current,
        evaluated=len(results),
        slo_budget=slo_budget,
        seconds=seconds,
        jobs=n_jobs,
    )


def _current_window(config: ScalingConfig) -> int:
    b = config.web.hpa.behavior
    if b is not None and b.scale_down is not None and b.scale_down.stabilization_window_seconds is not None:
        return b.scale_down.stabilization_window_seconds
    return config.controller.downscale_stabilization


__all__ = ["Candidate", "Grid", "Sweep", "pareto", "recommend"]
