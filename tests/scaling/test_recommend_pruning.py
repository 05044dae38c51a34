"""Stopping dearer configurations early changes nothing the sweep answers.

* a real sweep (hours of the NASA launch day, 36 configurations) with pruning on
  and off, in one and two processes: best, current, frontier and edges equal,
  and pruning did stop runs;
* the bound it stops on (``sim.least_nodes``) is never above the nodes a run
  actually has, over configurations and cluster shapes chosen to strain it
  (``max_nodes`` reached, pause pods smaller than web pods, a scan as long as
  a sync, a cluster that starts too small);
* ``run_figures`` gives the summary's figures, and a run it stops would have
  ended dearer than its bound;
* the CLI says how many stopped, in the title and in ``--json``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from shiftover.cli_scale import scale_app
from shiftover.scaling import sim
from shiftover.scaling.config import (
    ScalingConfig,
    controller_constants,
    load_config,
    sim_params,
    web_hpa_spec,
    worker_hpa_spec,
)
from shiftover.scaling.recommend import Grid, Setting, _Base, _Group, _hpa_variant, recommend
from shiftover.scaling.trace import Trace, load_trace, parse_timestamp

REPO = Path(__file__).resolve().parents[2]
NASA = REPO / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"
EXAMPLE = REPO / "examples" / "scaling.yaml"


def hours(start: str, end: str) -> Trace:
    return load_trace(NASA, scale=200, start=parse_timestamp(start), end=parse_timestamp(end))


GRID = Grid(min_replicas=(4, 8), targets=(30.0, 35.0, 45.0), scale_down_windows=(300, 600), headroom_pods=(0, 2, 4))


@pytest.mark.parametrize("jobs", [1, 2])
def test_pruning_gives_the_same_answer(jobs: int) -> None:
    trace = hours("1995-07-13T14:00:00Z", "1995-07-13T22:00:00Z")
    cfg = load_config(EXAMPLE)
    pruned = recommend(trace, cfg, grid=GRID, jobs=jobs)
    full = recommend(trace, cfg, grid=GRID, jobs=jobs, prune=False)
    assert pruned.evaluated == full.evaluated == 3 * 3 * 2 * 3  # the config's min replicas 3 is added
    assert full.stopped == 0
    assert pruned.stopped > 0
    assert pruned.best is not None and pruned.best.minutes_over_slo == 0
    assert pruned.best == full.best
    assert pruned.current == full.current
    assert pruned.frontier == full.frontier
    assert pruned.edges == full.edges and pruned.wider == full.wider
    assert pruned.to_dict()["stopped_early"] == pruned.stopped


def variant(**cluster: Any) -> ScalingConfig:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["cluster"].update(cluster)
    return ScalingConfig.model_validate(raw)


def node_floor_and_actual(cfg: ScalingConfig, trace: Trace, s: Setting) -> tuple[Any, Any, int]:
    """least_nodes per sync interval, and the fewest nodes the run had in each."""
    p = replace(sim_params(cfg), pause_pods=s.headroom_pods)
    base = _Base(sim.prepare(trace, p), p, web_hpa_spec(cfg), worker_hpa_spec(cfg), controller_constants(cfg), s)
    web, constants = _hpa_variant(base, _Group(0, s.min_replicas, s.target_per_pod, s.scale_down_window, ()))
    plan = sim.web_decisions(base.work, p, web, constants)
    assert plan is not None
    rec = sim._replay(base.work, p, web, base.worker, constants, plan, keep_rows=False, stop_above_node_hours=None)
    assert rec is not None
    floor = sim.least_nodes(p, rec.cl, len(base.work.web_metric), plan.desired, plan.initial)
    duration, sync = base.work.duration, p.sync_period
    change = np.asarray([*rec.node_t, duration])
    count = np.asarray(rec.node_v)
    fewest = np.empty(len(floor), dtype=np.int64)
    for k in range(len(floor)):
        a, b = k * sync, min(duration, (k + 1) * sync)
        first = int(np.searchsorted(change, a, side="right")) - 1
        last = int(np.searchsorted(change, b, side="left"))
        fewest[k] = count[first:last].min()
    return floor, fewest, cfg.cluster.min_nodes


@pytest.mark.parametrize(
    "cluster",
    [
        {},
        {"max_nodes": 9, "min_nodes": 1},  # the web tier wants more than the cluster may have
        {"overprovisioning": {"pods": 0, "requests": {"cpu": "500m", "memory": "512Mi"}}},
        {"scan_interval": "15s"},
        {"initial_nodes": 1, "min_nodes": 0},
    ],
)
def test_least_nodes_is_never_above_the_run(cluster: dict[str, Any]) -> None:
    trace = hours("1995-07-13T12:00:00Z", "1995-07-14T00:00:00Z")
    cfg = variant(**cluster)
    above_min = 0
    for m, t, w, h in itertools.product((1, 4, 8), (25.0, 50.0), (0, 600), (0, 2, 8)):
        if h > 2 and cfg.cluster.max_nodes < 10:
            continue
        floor, fewest, min_nodes = node_floor_and_actual(cfg, trace, Setting(m, t, w, h))
        assert (fewest >= floor).all(), f"{m}/{t}/{w}/{h}: {int((fewest < floor).sum())} intervals below the floor"
        above_min += int((floor > min_nodes).sum())
    assert above_min > 0  # the bound is more than min_nodes somewhere


def test_figures_equal_the_summary_and_a_stopped_run_ends_dearer() -> None:
    trace = hours("1995-07-13T12:00:00Z", "1995-07-14T00:00:00Z")
    for cfg in (load_config(EXAMPLE), variant(max_nodes=9, min_nodes=1)):
        base_params = sim_params(cfg)
        work = sim.prepare(trace, base_params)
        constants = controller_constants(cfg)
        s = Setting(3, 40.0, 120, 0)
        base = _Base(work, base_params, web_hpa_spec(cfg), worker_hpa_spec(cfg), constants, s)
        web, constants = _hpa_variant(base, _Group(0, s.min_replicas, s.target_per_pod, s.scale_down_window, ()))
        stopped = 0
        for h in (0, 2):
            p = replace(base_params, pause_pods=h)
            summary = sim.run(work, p, web, base.worker, constants).summary
            for worker in (base.worker, None):  # with and without the worker tier
                figures = sim.run_figures(work, p, web, worker, constants)
                expected = sim.run(work, p, web, worker, constants).summary
                assert figures == sim.Figures(
                    expected.minutes_over_slo, expected.requests_not_within_slo, expected.node_hours,
                    expected.peak_nodes, expected.peak_desired_replicas,
                )
            for limit in (summary.node_hours * 0.6, summary.node_hours * 0.95, summary.node_hours):
                out = sim.run_figures(work, p, web, base.worker, constants, stop_above_node_hours=lambda x=limit: x)
                if out is None:
                    stopped += 1
                    assert summary.node_hours > limit
                else:
                    assert out.node_hours == summary.node_hours
        assert stopped > 0


def test_cli_reports_the_runs_stopped_early() -> None:
    args = ["recommend", "--trace", str(NASA), "--config", str(EXAMPLE), "--scale", "200",
            "--from", "1995-07-13T14:00:00Z", "--to", "1995-07-13T22:00:00Z",
            "--min-replicas", "4,8", "--targets", "30,35,45", "--windows", "300,600", "--headroom", "0,2,4", "--jobs", "1"]
    res = CliRunner().invoke(scale_app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["evaluated"] == 54 and 0 < data["stopped_early"] < 54
    res = CliRunner().invoke(scale_app, args)
    assert res.exit_code == 0, res.output
    title = " ".join(res.output.split())  # the table title wraps on a narrow terminal
    assert f"54 configurations ({data['stopped_early']} stopped early: costlier than a setting with no minute over SLO)" in title
