"""The sweep: feasibility, the Pareto frontier, processes agree with one process."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shiftover.errors import BadInput
from shiftover.scaling.config import ScalingConfig, load_config
from shiftover.scaling.recommend import Candidate, Grid, pareto, recommend
from shiftover.scaling.trace import Trace, load_trace, parse_timestamp

REPO = Path(__file__).resolve().parents[2]
NASA = REPO / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"


def small_config() -> ScalingConfig:
    cfg: dict[str, Any] = {
        "web": {
            "capacity_rps": 10,
            "startup": "30s",
            "requests": {"cpu": "1", "memory": "1Gi"},
            "hpa": {"min_replicas": 1, "max_replicas": 40, "metric": "rps", "target_per_pod": 10},
        },
        "cluster": {"node": {"cpu": "2", "memory": "8Gi"}, "min_nodes": 1, "max_nodes": 30},
    }
    return ScalingConfig.model_validate(cfg)


def surge() -> Trace:
    minutes = [30.0] * 20 + [150.0] * 10 + [30.0] * 30
    return Trace(
        start=datetime(2024, 1, 1, tzinfo=UTC),
        step_seconds=60,
        requests=np.asarray(minutes, dtype=np.float64) * 60,
        source="surge",
    )


GRID = Grid(
    min_replicas=(1, 4, 16),
    target_fractions=(0.5, 1.0),
    scale_down_windows=(60, 300),
    headroom_pods=(0, 4),
)


def cand(h: float, m: int) -> Candidate:
    return Candidate(1, 1.0, 0, 0, m, float(m), h, 1, 1)


def test_pareto_keeps_only_undominated() -> None:
    pts = [cand(10, 5), cand(12, 5), cand(11, 2), cand(20, 0), cand(25, 0), cand(9, 9)]
    front = pareto(pts)
    assert [(c.node_hours, c.minutes_over_slo) for c in front] == [(9, 9), (10, 5), (11, 2), (20, 0)]


def test_cheapest_within_budget_and_processes_agree() -> None:
    one = recommend(surge(), small_config(), grid=GRID, jobs=1)
    two = recommend(surge(), small_config(), grid=GRID, jobs=2)
    assert one.evaluated == GRID.size == 24
    assert one.best == two.best
    assert one.frontier == two.frontier
    assert one.best is not None
    assert one.best.minutes_over_slo == 0
    # the current config (min 1, target = capacity) is over SLO during the surge
    assert one.current.minutes_over_slo > 0
    # nothing feasible is cheaper than the best
    assert one.frontier[-1].minutes_over_slo == 0
    assert one.best.node_hours == one.frontier[-1].node_hours
    budget = recommend(surge(), small_config(), grid=GRID, jobs=1, slo_budget=one.current.minutes_over_slo)
    assert budget.best is not None and budget.best.node_hours <= one.best.node_hours


def test_bad_budget_and_grid() -> None:
    with pytest.raises(BadInput):
        recommend(surge(), small_config(), grid=GRID, slo_budget=-1)
    with pytest.raises(BadInput):
        Grid(min_replicas=(), target_fractions=(1.0,), scale_down_windows=(0,), headroom_pods=(0,))


def test_default_grid_has_at_least_a_thousand_configurations() -> None:
    assert Grid.default(small_config()).size >= 1000


def test_nasa_launch_morning_reduced_sweep() -> None:
    if not NASA.exists():
        pytest.skip(f"the NASA trace is not at {NASA} (see examples/data/README.md)")
    cfg = load_config(REPO / "examples" / "scaling.yaml")
    trace = load_trace(
        NASA, scale=200, start=parse_timestamp("1995-07-13T11:00:00Z"), end=parse_timestamp("1995-07-13T17:00:00Z")
    )
    grid = Grid(min_replicas=(3, 12), target_fractions=(0.6, 0.8), scale_down_windows=(300, 600), headroom_pods=(0, 3))
    sweep = recommend(trace, cfg, grid=grid, jobs=2)
    assert sweep.evaluated == 16
    assert sweep.frontier
    costs = [c.node_hours for c in sweep.frontier]
    assert costs == sorted(costs)
    minutes = [c.minutes_over_slo for c in sweep.frontier]
    assert minutes == sorted(minutes, reverse=True)
    if sweep.best is not None:
        assert sweep.best.minutes_over_slo == 0
