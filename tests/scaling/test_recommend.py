"""The sweep: feasibility, the Pareto frontier, processes agree with one process; the current
setting is always swept; edges of the grid; range checks; progress."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shiftover.errors import BadInput
from shiftover.scaling.config import ScalingConfig, load_config
from shiftover.scaling.recommend import (
    Candidate,
    Grid,
    Setting,
    find_edges,
    max_headroom,
    pareto,
    recommend,
    widen,
)
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
    targets=(5.0, 10.0),
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
        Grid(min_replicas=(), targets=(1.0,), scale_down_windows=(0,), headroom_pods=(0,))


def test_default_grid_has_at_least_a_thousand_configurations() -> None:
    assert Grid.default(small_config()).size >= 1000


def test_nasa_launch_morning_reduced_sweep() -> None:
    if not NASA.exists():
        pytest.skip(f"the NASA trace is not at {NASA} (see examples/data/README.md)")
    cfg = load_config(REPO / "examples" / "scaling.yaml")
    trace = load_trace(
        NASA, scale=200, start=parse_timestamp("1995-07-13T11:00:00Z"), end=parse_timestamp("1995-07-13T17:00:00Z")
    )
    grid = Grid(min_replicas=(3, 12), targets=(30, 40), scale_down_windows=(300, 600), headroom_pods=(0, 3))
    sweep = recommend(trace, cfg, grid=grid, jobs=2)
    assert sweep.evaluated == 2 * 3 * 2 * 2  # the config's target, 35, is added
    assert sweep.added == {"targets": (35.0,)}
    assert sweep.frontier
    costs = [c.node_hours for c in sweep.frontier]
    assert costs == sorted(costs)
    minutes = [c.minutes_over_slo for c in sweep.frontier]
    assert minutes == sorted(minutes, reverse=True)
    if sweep.best is not None:
        assert sweep.best.minutes_over_slo == 0


# --- the current setting is always one of the configurations ---------------------------


def with_hpa(**hpa: Any) -> ScalingConfig:
    cfg = small_config().model_dump(by_alias=True, exclude_none=True)
    cfg["web"]["hpa"].update(hpa)
    return ScalingConfig.model_validate(cfg)


def test_current_setting_off_the_grid_is_swept_and_can_be_the_best() -> None:
    cfg = with_hpa(min_replicas=16)  # a floor above the surge's 15 pods
    grid = Grid(min_replicas=(1,), targets=(10.0,), scale_down_windows=(300,), headroom_pods=(0,))
    sweep = recommend(surge(), cfg, grid=grid, jobs=1)
    assert sweep.added == {"min_replicas": (16,)}
    assert sweep.evaluated == 2 == sweep.grid.size
    assert sweep.current.setting == Setting.of(cfg) == Setting(16, 10.0, 300, 0)
    assert sweep.current.minutes_over_slo == 0
    # the grid alone (min 1, target 10) is over SLO in the surge: the current setting wins
    assert sweep.best is not None and sweep.best.setting == sweep.current.setting
    assert sweep.to_dict()["current_is_best"] is True


def test_best_is_never_dearer_than_a_current_setting_that_holds_the_slo() -> None:
    cfg = with_hpa(min_replicas=16, target_per_pod=7.5)
    sweep = recommend(surge(), cfg, grid=GRID, jobs=1)
    assert sweep.current.minutes_over_slo == 0
    assert sweep.best is not None
    assert sweep.best.node_hours <= sweep.current.node_hours


# --- edges of the grid -----------------------------------------------------------------


def result(m: int, t: float, w: int, h: int, minutes: int = 0) -> Candidate:
    return Candidate(m, t, w, h, minutes, 0.0, 1.0, 1, 1)


EDGY = Grid(min_replicas=(4, 6, 8), targets=(6.0, 8.0), scale_down_windows=(60, 300, 600), headroom_pods=(0, 2))


def test_a_best_on_a_cheaper_edge_is_reported_with_the_values_to_add() -> None:
    best = result(4, 8.0, 600, 0)  # smallest floor, largest target, longest window, least headroom
    edges = {(e.knob, e.side): e.more for e in find_edges(EDGY, best, feasible=True, config=small_config())}
    assert edges == {
        ("min_replicas", "low"): (2, 3),
        ("targets", "high"): (8.8, 9.6),
        ("scale_down_windows", "high"): (900, 1200),
    }  # no headroom edge: 0 is the least there is
    wider = widen(EDGY, find_edges(EDGY, best, feasible=True, config=small_config()))
    assert wider.min_replicas == (2, 3, 4, 6, 8)
    assert wider.targets == (6.0, 8.0, 8.8, 9.6)
    assert wider.scale_down_windows == (60, 300, 600, 900, 1200)
    assert wider.headroom_pods == EDGY.headroom_pods


def test_a_best_inside_the_grid_or_on_a_dearer_edge_has_no_edges() -> None:
    # the largest floor and the smallest target cost more: no cheaper setting lies beyond them
    assert find_edges(EDGY, result(8, 6.0, 300, 0), feasible=True, config=small_config()) == ()


def test_without_a_best_the_closest_setting_looks_the_safer_way() -> None:
    closest = result(8, 6.0, 600, 2, minutes=3)
    edges = {(e.knob, e.side): e.more for e in find_edges(EDGY, closest, feasible=False, config=small_config())}
    assert edges == {
        ("min_replicas", "high"): (12, 16),
        ("targets", "low"): (4.8, 5.4),
        ("scale_down_windows", "high"): (900, 1200),
        ("headroom_pods", "high"): (3, 4),
    }


def test_edges_stay_within_what_the_config_allows_and_skip_one_value_axes() -> None:
    cfg = with_hpa(max_replicas=8)
    grid = Grid(min_replicas=(4, 8), targets=(6.0,), scale_down_windows=(60, 3600), headroom_pods=(0,))
    closest = result(8, 6.0, 3600, 0, minutes=1)
    # min 8 = max_replicas, window 3600 = the API's maximum; targets and headroom were held at one value
    assert find_edges(grid, closest, feasible=False, config=cfg) == ()


def test_a_sweep_whose_best_sits_on_an_edge_suggests_a_wider_grid() -> None:
    grid = Grid(min_replicas=(2, 4), targets=(5.0, 10.0), scale_down_windows=(60, 300), headroom_pods=(0, 4))
    sweep = recommend(surge(), small_config(), grid=grid, jobs=1)
    assert sweep.edges, sweep.best
    assert sweep.wider is not None
    for name in ("min_replicas", "targets", "scale_down_windows", "headroom_pods"):
        assert set(getattr(sweep.grid, name)) <= set(getattr(sweep.wider, name))
    assert sweep.wider.size > sweep.grid.size
    assert sweep.to_dict()["edges"][0]["flag"].startswith("--")


# --- range checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axes", "words"),
    [
        ({"min_replicas": (0, 2)}, "min replicas must be >= 1"),
        ({"targets": (0.0, 35.0)}, "must be > 0 requests/s"),
        ({"targets": (0.0001,)}, "must be > 0 requests/s"),
        ({"scale_down_windows": (0, 3601)}, "0..3600 s"),
        ({"scale_down_windows": (-1,)}, "0..3600 s"),
        ({"headroom_pods": (-1, 0)}, "must be >= 0"),
    ],
)
def test_grid_values_out_of_range_are_refused(axes: dict[str, tuple[float, ...]], words: str) -> None:
    values: dict[str, Any] = {"min_replicas": (1,), "targets": (10.0,), "scale_down_windows": (60,), "headroom_pods": (0,)}
    with pytest.raises(BadInput, match=words):
        Grid(**{**values, **axes})


def test_grid_values_the_config_cannot_take_are_refused() -> None:
    cfg = small_config()  # max_replicas 40; 30 nodes of 2 cpu for 1-cpu pods: 60 pause pods at most
    assert max_headroom(cfg) == 60
    with pytest.raises(BadInput, match=r"41 is above web.hpa.max_replicas \(40\)"):
        recommend(surge(), cfg, grid=Grid(min_replicas=(4, 41), targets=(10.0,), scale_down_windows=(60,), headroom_pods=(0,)))
    with pytest.raises(BadInput, match="hold at most 60 overprovisioning pods"):
        recommend(surge(), cfg, grid=Grid(min_replicas=(4,), targets=(10.0,), scale_down_windows=(60,), headroom_pods=(0, 61)))


def test_grid_values_are_sorted_without_repeats() -> None:
    g = Grid(min_replicas=(8, 2, 8), targets=(40.0, 35.0), scale_down_windows=(600, 0), headroom_pods=(2, 2))
    assert (g.min_replicas, g.targets, g.scale_down_windows, g.headroom_pods) == ((2, 8), (35.0, 40.0), (0, 600), (2,))


# --- progress --------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_progress_counts_every_configuration(jobs: int) -> None:
    seen: list[tuple[int, int]] = []
    sweep = recommend(surge(), small_config(), grid=GRID, jobs=jobs, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, GRID.size)
    assert seen[-1] == (GRID.size, GRID.size) == (sweep.evaluated, sweep.evaluated)
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert len(seen) == 1 + GRID.size // len(GRID.headroom_pods)  # one report per group of headroom values
