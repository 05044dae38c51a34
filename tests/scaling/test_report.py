"""What `simulate` reports: minutes over SLO as UTC times, tiers at max_replicas,
pending pods per tier, the timeline CSV, and charts that keep what matters on a
month-long trace (a single minute over SLO, peaks) while drawing few points."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_sim import START, config, per_second  # one config and trace builder for both files
from typer.testing import CliRunner

from shiftover.cli_scale import scale_app
from shiftover.scaling.chart import m4, plotly_figure, render_png, runs_text, summary_rows, warnings
from shiftover.scaling.sim import SimResult, Summary, Timeline, at_max_replicas, simulate

runner = CliRunner()


def iso(seconds: int) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# the demand step of test_sim: minutes [600, 660) and [660, 720) are over SLO
STEP = ((600, 10.0), (1200, 100.0))


def test_minutes_over_slo_are_utc_timestamps_in_the_summary_and_the_timeline(tmp_path: Path) -> None:
    res = simulate(per_second(*STEP), config())
    assert res.summary.minutes_over_slo == 2
    assert res.summary.over_slo_minutes == (iso(600), iso(660))
    assert res.summary.over_slo_runs() == [(iso(600), 2)]
    tl = res.timeline
    assert tl.t[tl.minute_over_slo].tolist() == list(range(600, 720, 15))
    # the CSV: a UTC time column, t kept, the flag as 0/1
    path = tl.write_csv(tmp_path / "timeline.csv", res.start_iso)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 1800 // 15
    assert list(rows[0])[:2] == ["time", "t"] and list(rows[0])[-1] == "minute_over_slo"
    by_t = {int(r["t"]): r for r in rows}
    assert by_t[645]["time"] == iso(645) and by_t[645]["minute_over_slo"] == "1"
    assert by_t[585]["minute_over_slo"] == "0" and by_t[720]["minute_over_slo"] == "0"
    assert int(by_t[660]["desired_replicas"]) == 4 and float(by_t[720]["capacity_rps"]) == 100.0
    assert sum(float(r["served_within_slo"]) + float(r["not_within_slo"]) for r in rows) == pytest.approx(
        600 * 10 + 1200 * 100, abs=0.01 * len(rows))


def test_runs_of_minutes_over_slo_are_listed_compactly() -> None:
    s = Summary(duration_seconds=86400 * 2, minutes=2880, minutes_over_slo=4, requests_total=1.0,
                requests_not_within_slo=1.0, peak_desired_replicas=1, peak_ready_replicas=1, peak_nodes=1,
                node_hours=1.0, pod_hours=1.0, scale_ups=0, nodes_removed=0,
                over_slo_minutes=(iso(600), iso(660), iso(3600), iso(86400 + 60)))
    assert s.over_slo_runs() == [(iso(600), 2), (iso(3600), 1), (iso(86460), 1)]
    assert runs_text(s) == "2024-01-01 00:10 (2 min), 01:00 (1 min), 2024-01-02 00:01 (1 min)"
    assert runs_text(s, first=1) == "2024-01-01 00:10 (2 min) and 2 more runs"
    assert dict(summary_rows(s))["minutes over SLO"] == "4 (3 runs, first 2024-01-01T00:10:00Z)"


def test_a_tier_at_max_replicas_is_flagged_with_how_long_and_since_when() -> None:
    cfg = config()
    # 100 req/s wants 10 pods; with max_replicas 4 the web tier sits at 4 from its first scale-up
    res = at_max_replicas(simulate(per_second(*STEP), cfg), web_max=4)
    s = res.summary
    at_max = res.timeline.desired_replicas >= 4
    assert s.web_at_max_first == iso(660)  # the first sync that sees the step asks for 4
    assert s.web_at_max_seconds == 1800 - 660 == 15 * int(at_max.sum())
    assert s.worker_max_replicas is None and s.worker_at_max_seconds == 0
    [line] = warnings(s)
    assert line.startswith("web sat at max_replicas (4) for 19 min, first at 2024-01-01T00:11:00Z")
    assert "raise web.hpa.max_replicas" in line
    # below the limit: no warning
    assert warnings(at_max_replicas(res, web_max=50).summary) == []


def test_web_and_worker_pending_pods_are_kept_apart() -> None:
    # one 2-CPU node, never more: web pods (1 CPU) fit, a 1.5-CPU worker never does
    worker = {"jobs_per_second": 1, "startup": "10s", "requests": {"cpu": "1500m", "memory": "512Mi"},
              "jobs_per_request": 0.1, "hpa": {"min_replicas": 1, "max_replicas": 3, "metric": "q",
                                                "target_per_pod": 10}}
    cfg = config(worker=worker, cluster={"node": {"cpu": "2", "memory": "8Gi"}, "max_nodes": 1})
    res = simulate(per_second((1200, 5.0)), cfg)
    tl = res.timeline
    assert tl.web_pending.max() == 0
    assert (tl.worker_pending == tl.worker_desired - tl.worker_ready).all()
    assert tl.worker_pending.min() >= 1


def test_m4_keeps_each_buckets_extremes_and_first_and_last_row() -> None:
    rng = np.random.default_rng(7)
    n, columns = 201_600, 1_000
    y = rng.normal(size=n).cumsum()
    y[123_457] = 1e6  # a one-row spike
    z = rng.integers(0, 5, size=n)
    keep = m4((y, z), columns)
    assert len(keep) <= 4 * 2 * columns and np.all(np.diff(keep) > 0)
    assert keep[0] == 0 and keep[-1] == n - 1 and 123_457 in keep
    per = -(-n // columns)
    for b in range(0, n, per):
        kept = keep[(keep >= b) & (keep < b + per)]
        assert y[kept].min() == y[b:b + per].min() and y[kept].max() == y[b:b + per].max()
        assert z[kept].min() == z[b:b + per].min() and z[kept].max() == z[b:b + per].max()
        assert kept[0] == b and kept[-1] == min(b + per, n) - 1
    # short series are kept whole
    assert m4((y[:4000],), columns).tolist() == list(range(4000))


def month(over_row: int | None) -> SimResult:
    """35 days of 15 s rows, flat, with at most one minute over SLO (starting at ``over_row``)."""
    n = 35 * 86400 // 15
    t = np.arange(n, dtype=np.int64) * 15
    ones = np.ones(n, dtype=np.int64)
    demand = np.full(n, 100.0)
    flag = np.zeros(n, dtype=bool)
    over: tuple[str, ...] = ()
    if over_row is not None:
        demand[over_row:over_row + 4] = 300.0
        flag[over_row:over_row + 4] = True
        over = (iso(int(t[over_row])),)
    capacity = np.full(n, 200.0)
    tl = Timeline(t=t, demand_rps=demand, capacity_rps=capacity, desired_replicas=ones * 4, ready_replicas=ones * 4,
                  nodes=ones, ready_nodes=ones, web_pending=ones * 0, worker_pending=ones * 0,
                  queue_length=demand * 0, worker_desired=ones * 0, worker_ready=ones * 0,
                  served_within_slo=np.minimum(demand, capacity) * 15,
                  not_within_slo=np.maximum(demand - capacity, 0) * 15, minute_over_slo=flag)
    s = Summary(duration_seconds=n * 15, minutes=n // 4, minutes_over_slo=len(over), requests_total=1.0,
                requests_not_within_slo=0.0, peak_desired_replicas=4, peak_ready_replicas=4, peak_nodes=1,
                node_hours=1.0, pod_hours=1.0, scale_ups=0, nodes_removed=0, over_slo_minutes=over)
    return SimResult(summary=s, timeline=tl, start_iso=iso(0))


def red_columns(png: Path) -> np.ndarray[Any, Any]:
    """Pixel columns, right of the legends, holding the chart's solid red (#d62728)."""
    import matplotlib.image

    img = matplotlib.image.imread(png)[:, :, :3]
    red = np.all(np.abs(img - np.array([214, 39, 40]) / 255) < 0.03, axis=2)
    cols = np.flatnonzero(red.any(axis=0))
    return cols[cols > img.shape[1] * 0.3]


def test_a_single_minute_over_slo_is_visible_on_a_month_long_png(tmp_path: Path) -> None:
    row = int(0.8 * 35 * 86400 / 15)
    cols = red_columns(render_png(month(row), tmp_path / "one.png"))
    assert cols.size >= 2  # at least two pixels wide, though a minute is 1/50,400 of the axis
    assert cols.max() - cols.min() <= 6  # in one place
    assert 0.70 < cols.mean() / 1210 < 0.82  # 80 % along an axis spanning ~6.5 % to ~93.5 % of the width
    assert red_columns(render_png(month(None), tmp_path / "none.png")).size == 0


def test_the_interactive_chart_is_reduced_exact_at_the_extremes_and_marks_the_minute() -> None:
    import base64

    row = 100_000
    fig = plotly_figure(month(row))

    def values(trace: dict[str, Any], axis: str) -> np.ndarray[Any, Any]:
        return np.frombuffer(base64.b64decode(trace[axis]["bdata"]), dtype="<f8")

    traces = {t["name"]: t for t in fig["data"]}
    demand = traces["demand (req/s)"]
    assert len(values(demand, "y")) < 20_000  # of 201,600 rows
    assert values(demand, "y").max() == 300.0 and values(demand, "y").min() == 100.0
    marker = traces["over SLO (1 min)"]
    start_ms = np.datetime64(iso(0).rstrip("Z"), "ms").astype(np.int64)
    assert values(marker, "x").tolist() == [float(start_ms + row * 15_000)]
    assert marker["text"] == [f"{iso(row * 15)} (1 min over SLO)"]
    # the HPA's desired replicas differ from ready by style, not only colour
    assert traces["desired web pods (HPA)"]["line"].get("dash") == "dash"
    assert "dash" not in traces["ready web pods"]["line"]


CONFIG = """
web:
  capacity_rps: 10
  startup: 20s
  requests: {cpu: 1, memory: 1Gi}
  hpa: {min_replicas: 1, max_replicas: 6, metric: rps, target_per_pod: 10}
metrics: {refresh: 30s, rollup: 30s, lag: 30s}
cluster:
  node: {cpu: 100, memory: 400Gi}
  min_nodes: 1
  max_nodes: 10
  provisioning: 90s
"""


def test_simulate_cli_reports_minutes_over_slo_and_max_replicas(tmp_path: Path) -> None:
    from shiftover.scaling.config import load_config
    from shiftover.scaling.trace import load_trace

    trace = tmp_path / "trace.csv"
    minutes = [10.0 * 60] * 10 + [100.0 * 60] * 20  # requests per minute: a step at 10 min
    trace.write_text("timestamp,requests\n" + "".join(f"{iso(60 * i)},{v:g}\n" for i, v in enumerate(minutes)))
    cfg = tmp_path / "scaling.yaml"
    cfg.write_text(CONFIG)
    expected = simulate(load_trace(trace), load_config(cfg)).summary
    assert expected.minutes_over_slo > 0 and expected.over_slo_minutes[0] == iso(600)
    out = tmp_path / "report"
    res = runner.invoke(scale_app, ["simulate", "--trace", str(trace), "--config", str(cfg), "--out", str(out)],
                        env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["over_slo_minutes"] == list(expected.over_slo_minutes)
    assert f"over SLO (UTC): {runs_text(expected)}; every minute in {out / 'summary.json'}" in res.output
    assert f"{expected.minutes_over_slo} (1 run, first 2024-01-01T00:10:00Z)" in res.output
    # 100 req/s wants 10 pods; max_replicas is 6
    assert summary["web_max_replicas"] == 6 and summary["web_at_max_seconds"] > 0
    assert "warning: web sat at max_replicas (6) for " in res.output
    as_json = runner.invoke(scale_app, ["simulate", "--trace", str(trace), "--config", str(cfg), "--out",
                                        str(out), "--json"])
    data = json.loads(as_json.output)
    assert data["summary"]["over_slo_minutes"] == list(expected.over_slo_minutes)
    assert data["summary"]["web_at_max_first"] == summary["web_at_max_first"] != ""
