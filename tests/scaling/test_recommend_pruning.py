"""Stopping dearer configurations early changes nothing the sweep answers.

* a real sweep (hours of the NASA launch day, 54 configurations) with pruning on
  and off, in one and two processes: best, current, frontier and edges equal,
  and pruning did stop runs, more than stopping only on a finished setting with
  no minute over SLO would;
* the minutes over SLO a run counts as it goes are the minutes ``_finish``
  counts, minute by minute (a run told to stop at K minutes stops at the first
  check where K of the minutes before it are over), with and without the worker;
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
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from shiftover.cli_scale import scale_app
from shiftover.scaling import recommend as recommend_module
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
def test_pruning_gives_the_same_answer(jobs: int, monkeypatch: pytest.MonkeyPatch) -> None:
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
    if jobs == 1:  # one process: which runs stop does not depend on timing
        # the rule before: stop only on a finished setting with no minute over SLO
        monkeypatch.setattr(recommend_module._Staircase, "beaten",
                            lambda self, node_hours: 0 if self.least[0] < node_hours else math.inf)
        zero_only = recommend(trace, cfg, grid=GRID, jobs=1)
        assert zero_only.best == full.best and zero_only.frontier == full.frontier
        assert 0 < zero_only.stopped < pruned.stopped


def over_by_minute(cfg: ScalingConfig, trace: Trace, s: Setting, workers: bool) -> tuple[Any, ...]:
    """The run's pieces and, per whole minute, whether ``_finish`` counts it over SLO."""
    p = replace(sim_params(cfg), pause_pods=s.headroom_pods)
    base = _Base(sim.prepare(trace, p), p, web_hpa_spec(cfg), worker_hpa_spec(cfg), controller_constants(cfg), s)
    web, constants = _hpa_variant(base, _Group(0, s.min_replicas, s.target_per_pod, s.scale_down_window, ()))
    worker = base.worker if workers else None
    summary = sim.run(base.work, p, web, worker, constants).summary
    starts = np.arange(0, base.work.duration, 60)
    over_at = set(summary.over_slo_minutes)
    over = np.asarray([t in over_at for t in sim.iso_times(base.work.start_iso, starts)])
    assert int(over.sum()) == summary.minutes_over_slo
    return base.work, p, web, worker, constants, over


@pytest.mark.parametrize("workers", [True, False])
def test_minutes_over_slo_counted_during_the_run_are_finishs(workers: bool) -> None:
    trace = hours("1995-07-13T12:00:00Z", "1995-07-14T00:00:00Z")
    cfg = load_config(EXAMPLE)
    tried = 0
    for s in (Setting(1, 60.0, 0, 0), Setting(2, 45.0, 120, 0), Setting(3, 40.0, 600, 2), Setting(1, 35.0, 300, 1)):
        work, p, web, worker, constants, over = over_by_minute(cfg, trace, s, workers)
        check = sim._CHECK_SYNCS * p.sync_period  # the loop's check points: check, 2 x check, ...
        checks = np.arange(check, work.duration, check)
        before = np.concatenate(([0], np.cumsum(over)))[checks // 60]  # over minutes wholly before each check
        total = int(before[-1]) if len(before) else 0
        for k in sorted(k for k in {1, 2, 3, total // 2, total - 1, total, total + 1} if k >= 1):
            asked: list[float] = []

            def beaten(node_hours: float, k: int = k, asked: list[float] = asked) -> float:
                asked.append(node_hours)
                return k

            out = sim.run_figures(work, p, web, worker, constants, beaten=beaten)
            reached = np.flatnonzero(before >= k)
            if reached.size:  # stops at the first check with k over minutes before it, and not earlier
                assert out is None, f"{s} k={k}"
                assert len(asked) == int(reached[0]) + 1, f"{s} k={k}"
            else:
                assert out is not None and out.minutes_over_slo == int(over.sum()) and len(asked) == len(checks)
            tried += 1
        assert total > 0 or s != Setting(1, 60.0, 0, 0)  # the thinnest setting has minutes over SLO
    assert tried > 10


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
    rec = sim._replay(base.work, p, web, base.worker, constants, plan, keep_rows=False, beaten=None)
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
                out = sim.run_figures(work, p, web, base.worker, constants, beaten=lambda lower, x=limit: 0 if lower > x else math.inf)
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
    assert f"54 configurations ({data['stopped_early']} stopped early: a finished setting was cheaper with no more minutes over SLO)" in title
