"""`shiftover scale ...` through typer's CliRunner on scale_app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shiftover.cli_scale import scale_app

REPO = Path(__file__).resolve().parents[2]
NASA = REPO / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"
EXAMPLE = REPO / "examples" / "scaling.yaml"
runner = CliRunner()


def nasa() -> str:
    if not NASA.exists():
        pytest.skip(f"the NASA trace is not at {NASA} (see examples/data/README.md)")
    return str(NASA)


def test_simulate_prints_a_summary_and_writes_the_chart(tmp_path: Path) -> None:
    res = runner.invoke(
        scale_app,
        ["simulate", "--trace", nasa(), "--config", str(EXAMPLE), "--scale", "200",
         "--from", "1995-07-13T10:00:00Z", "--to", "1995-07-13T16:00:00Z", "--out", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    assert "minutes over SLO" in res.output
    assert "node-hours" in res.output
    for name in ("chart.png", "chart.html", "timeline.csv", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "chart.html").read_text()
    assert "data:image/png;base64," in page
    # self-contained: plotly.js inlined, nothing fetched (test_chart_browser.py checks in Chromium)
    assert "<script src" not in page and "<link" not in page and 'src="http' not in page
    assert "Plotly.newPlot" in page
    lines = (tmp_path / "timeline.csv").read_text().splitlines()
    assert lines[0].startswith("time,t,demand_rps,capacity_rps,desired_replicas")
    assert len(lines) == 1 + 6 * 3600 // 15


def test_simulate_json(tmp_path: Path) -> None:
    res = runner.invoke(
        scale_app,
        ["simulate", "--trace", nasa(), "--config", str(EXAMPLE), "--scale", "200",
         "--from", "1995-07-13T12:00:00Z", "--to", "1995-07-13T14:00:00Z", "--out", str(tmp_path), "--json"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    s = data["summary"]
    assert s["duration_seconds"] == 7200
    assert s["requests_total"] > 0
    assert {"minutes_over_slo", "requests_not_within_slo", "peak_desired_replicas", "peak_nodes", "node_hours", "worker_max_wait_seconds"} <= set(s)
    assert data["files"]["png"].endswith("chart.png")


def test_recommend_json_with_a_reduced_grid() -> None:
    res = runner.invoke(
        scale_app,
        ["recommend", "--trace", nasa(), "--config", str(EXAMPLE), "--scale", "200",
         "--from", "1995-07-13T12:00:00Z", "--to", "1995-07-13T15:00:00Z",
         "--min-replicas", "3,10", "--target-fractions", "0.6,0.9", "--windows", "300", "--headroom", "0,2",
         "--jobs", "2", "--json"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["evaluated"] == 12  # 2 x (30, 45 and the config's 35) x 1 x 2
    assert data["frontier"]
    assert data["current"]["min_replicas"] == 3


def test_recommend_table() -> None:
    res = runner.invoke(
        scale_app,
        ["recommend", "--trace", nasa(), "--config", str(EXAMPLE), "--scale", "200",
         "--from", "1995-07-13T12:00:00Z", "--to", "1995-07-13T14:00:00Z",
         "--min-replicas", "3", "--targets", "35,50", "--windows", "300", "--headroom", "0", "--jobs", "1"],
    )
    assert res.exit_code == 0, res.output
    assert "2 configurations" in res.output
    assert "current" in res.output


def test_manifests_datadog_and_keda(tmp_path: Path) -> None:
    res = runner.invoke(scale_app, ["manifests", "--config", str(EXAMPLE), "--namespace", "shop"])
    assert res.exit_code == 0, res.output
    docs = list(yaml.safe_load_all(res.output))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["DatadogMetric", "DatadogMetric", "HorizontalPodAutoscaler", "HorizontalPodAutoscaler"]
    out = tmp_path / "keda.yaml"
    res = runner.invoke(scale_app, ["manifests", "--config", str(EXAMPLE), "--flavor", "keda", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert [d["kind"] for d in yaml.safe_load_all(out.read_text())] == ["TriggerAuthentication", "ScaledObject", "ScaledObject"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["simulate", "--trace", "missing.csv", "--config", str(EXAMPLE)], "cannot read trace"),
        (["simulate", "--trace", "{trace}", "--config", "missing.yaml"], "cannot read config"),
        (["simulate", "--trace", "{trace}", "--config", str(EXAMPLE), "--from", "soon"], "ISO 8601"),
        (["simulate", "--trace", "{trace}", "--config", str(EXAMPLE), "--scale", "-1"], "--scale"),
        (["simulate", "--trace", "{bad}", "--config", str(EXAMPLE)], "bad.csv:3:"),
        (["simulate", "--trace", "{trace}", "--config", "{badcfg}"], "bad.yaml:2:"),
        (["recommend", "--trace", "{trace}", "--config", str(EXAMPLE), "--targets", "x"], "--targets"),
        (["manifests", "--config", str(EXAMPLE), "--flavor", "helm"], "unknown --flavor"),
    ],
)
def test_bad_input_exits_2_without_traceback(tmp_path: Path, args: list[str], words: str) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,requests\n" + "".join(f"2024-01-01T00:{m:02d}:00Z,600\n" for m in range(10)))
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,requests\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,many\n")
    badcfg = tmp_path / "bad.yaml"
    badcfg.write_text("web:\n  capacity_rps: nope\n")
    argv = [a.format(trace=trace, bad=bad, badcfg=badcfg) for a in args]
    res = runner.invoke(scale_app, [*argv, "--out", str(tmp_path)] if argv[0] == "simulate" else argv)
    assert res.exit_code == 2, res.output
    assert words in res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
