"""The load report in a real browser: headless Chromium opens report.html, with every host
name unresolvable, and must draw every chart with no console message and no request
leaving the page (plotly.js is inlined).

The documents are built by the real judging code (results.py) from step figures, the
way ``shiftover load`` builds them. Chromium comes from Debian's package (`make system`
installs it); each run is bounded and its whole process group is killed afterwards.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import browser  # tests/support (on pytest's pythonpath)
import numpy as np
import pytest

from shiftover.loadtest.report import load_figures, render_load_html
from shiftover.loadtest.results import (
    StepFigures,
    capacity,
    find_knee,
    judge_steps,
    load_document,
)
from shiftover.loadtest.schedule import parse_schedule

HOSTILE = "</script><script>alert(1)</script>"
SLO_MS = 250.0


def chromium(url: str, tmp: Path, *args: str, timeout: float = 60.0) -> tuple[str, str]:
    return browser.chromium(url, tmp, *args, timeout=timeout, window="1280,2800")


def step(index: int, rate: float, p99: float, **over: Any) -> StepFigures:
    base = StepFigures(
        index=index, target_rate=rate, start_rate=rate, end_rate=rate, seconds=30.0,
        requests=int(rate * 30), failures=0, achieved_rate=rate, p50_ms=p99 / 5, p95_ms=p99 / 2,
        p99_ms=p99, max_ms=p99 * 1.4, errors={}, dropped=0, lag_p99_ms=1.0, cpu_percent=35.0,
        complete=True,
    )  # fmt: skip
    return replace(base, **over)


def knee_run() -> dict[str, Any]:
    """50 -> 400 req/s: passes up to 250 (the knee), then latency, errors, a generator-bound step;
    watched gates and queries at every step; a target whose text tries to break the page."""
    figures = [
        step(0, 50.0, 40.0),
        step(1, 100.0, 45.0),
        step(2, 150.0, 60.0, cpu_percent=93.0),  # passes with the generator at its limit
        step(3, 200.0, 90.0),
        step(4, 250.0, 180.0, failures=10, errors={"500": 10}),
        step(5, 300.0, 420.0, achieved_rate=292.0, requests=8760),
        step(6, 350.0, 1900.0, achieved_rate=301.0, requests=9030, failures=600,
             errors={"503": 450, "ReadTimeout": 120, HOSTILE: 30}, dropped=200),
        step(7, 400.0, 6400.0, achieved_rate=260.0, requests=7800, cpu_percent=99.0, lag_p99_ms=80.0),
    ]  # fmt: skip
    verdicts = judge_steps(figures, slo_p99_ms=SLO_MS, max_errors=0.01)
    knee = find_knee(verdicts)
    watch = [
        {
            "t": 30.0 * (i + 1),
            "step": i,
            "gates": [
                {
                    "name": "error-rate",
                    "verdict": "FAIL" if i >= 6 else "PASS",
                    "value": f"{0.1 * i:.1f}%",
                    "reason": "5xx above 1%" if i >= 6 else "",
                },
                {"name": "alerts", "verdict": "PASS", "value": "0", "reason": ""},
            ],
            "queries": [
                {"name": "replicas", "value": float(2 + i // 2), "error": None},
                {"name": "nodes", "value": float(1 + i // 4), "error": None},
                {"name": "queue", "value": None, "error": "timeout" if i == 3 else None},
            ],
        }
        for i in range(len(figures))
    ]
    doc = load_document(
        target={
            "method": "GET",
            "url": f"http://127.0.0.1:8080/{HOSTILE}",
            "headers": {"X-Test": HOSTILE},
        },
        schedule=parse_schedule("50:400:50", step="30s"),
        verdicts=verdicts,
        knee=knee,
        capacity=capacity(knee, pods=2, peak=1500.0, headroom=0.3),
        criteria={"slo_p99_ms": SLO_MS, "max_errors": 0.01, "rate_tolerance": 0.05},
        watch=watch,
        generator={"workers": 2, "users": 120},
        stopped_early=False,
        started="2025-01-01T00:00:00Z",
        ended="2025-01-01T00:04:00Z",
    )
    return json.loads(json.dumps(doc))  # as load.json holds it


def broken_run() -> dict[str, Any]:
    """A ramp that fails from its first window, stopped during its third: no knee, no watch."""
    figures = [
        step(0, 15.0, 900.0, start_rate=10.0, end_rate=20.0),
        step(1, 25.0, 950.0, start_rate=20.0, end_rate=30.0, failures=200, errors={"ConnectionRefusedError": 200}),
        step(2, 35.0, 0.0, start_rate=30.0, end_rate=40.0, seconds=4.0, requests=0, achieved_rate=0.0,
             p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None, complete=False),
    ]  # fmt: skip
    verdicts = judge_steps(figures, slo_p99_ms=SLO_MS, max_errors=0.01)
    doc = load_document(
        target={"method": "POST", "url": "http://127.0.0.1:9/"},
        schedule=parse_schedule("10:40", duration="90s", step="30s"),
        verdicts=verdicts,
        knee=find_knee(verdicts),
        capacity=None,
        criteria={"slo_p99_ms": SLO_MS, "max_errors": 0.01},
        generator={"workers": 0},
        stopped_early=True,
        started="2025-01-01T00:00:00Z",
        ended="2025-01-01T00:01:04Z",
    )
    return json.loads(json.dumps(doc))


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("load-report")
    return {
        "knee": render_load_html(knee_run(), out / "knee" / "report.html"),
        "broken": render_load_html(broken_run(), out / "broken" / "report.html"),
    }


def _chart_segments(dom: str, ids: list[str]) -> dict[str, str]:
    """The DOM from each chart's div to the next chart's (or the steps table)."""
    marks = sorted((dom.index(f'id="{i}"'), i) for i in ids)
    ends = [m for m, _ in marks[1:]] + [dom.index('id="steps"')]
    return {i: dom[m:end] for (m, i), end in zip(marks, ends, strict=True)}


@pytest.mark.parametrize("name", ["knee", "broken"])
def test_every_chart_renders_with_no_console_message_and_no_request(
    pages: dict[str, Path], tmp_path: Path, name: str
) -> None:
    page = pages[name]
    net_log = tmp_path / "net.json"
    dom, err = chromium(
        page.as_uri(),
        tmp_path,
        "--enable-logging=stderr",
        "--v=0",
        f"--log-net-log={net_log}",
        "--dump-dom",
    )
    console = [line for line in err.splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console)
    ids = ["throughput-chart", "latency-chart", "errors-chart"] + (
        ["watch-chart"] if name == "knee" else []
    )
    assert ('id="watch-chart"' in dom) == (name == "knee")
    for chart, seg in _chart_segments(dom, ids).items():
        # Plotly drew it: its SVG layers, a plot area, traces, tick labels
        assert seg.count('class="main-svg"') >= 2, chart
        assert 'class="subplot xy"' in seg, chart
        assert re.search(r'class="trace (scatter|bars)', seg), chart
        assert re.search(r'class="ytick".*?>\s*<text[^>]*>[^<]*\d', seg), (
            f"{chart}: no y tick labels"
        )
    # nothing left the page: every request it made was for itself
    events = json.loads(net_log.read_text())["events"]
    asked = {
        e["params"]["url"]
        for e in events
        if "url" in e.get("params", {})
        and "file://" in str(e["params"].get("network_isolation_key", ""))
    }
    assert {u for u in asked if not u.startswith(("file:", "data:"))} == set()
    # the hostile text was shown as text, never run
    assert "<script>alert(1)</script>" not in dom


def test_the_knee_page_says_what_the_cli_says(pages: dict[str, Path], tmp_path: Path) -> None:
    dom, _ = chromium(pages["knee"].as_uri(), tmp_path, "--dump-dom")
    seg = _chart_segments(dom, ["throughput-chart", "latency-chart", "errors-chart", "watch-chart"])
    # the SLO line and the knee on the latency chart; the --max-errors line on the errors chart
    assert "SLO p99 250 ms" in seg["latency-chart"] and "knee" in seg["latency-chart"]
    assert "knee" in seg["throughput-chart"]
    assert "--max-errors 1%" in seg["errors-chart"]
    assert (
        len(re.findall(r'class="trace bars', seg["errors-chart"])) == 5
    )  # 500, 503, ReadTimeout, hostile, dropped
    # the latency axis went logarithmic (the worst p99 is 25 x the SLO) and spans the data:
    # 8 ms to 6,400 ms, not the SLO line's 250 read as 10^250
    assert "(log scale)" in seg["latency-chart"]
    ticks = re.findall(r'class="ytick"><text[^>]*data-unformatted="([^"]*)"', seg["latency-chart"])
    values = [float(t.removesuffix("k")) * (1000 if t.endswith("k") else 1) for t in ticks]
    assert values and max(values) <= 100_000 and 1000 in values, ticks
    assert {"replicas", "nodes"} <= set(
        re.findall(r'class="legendtext"[^>]*>([^<]+)<', seg["watch-chart"])
    )
    # the verdict lines, generator warnings highlighted
    assert "knee: step 5, 250 req/s target, 250 req/s achieved, p99 180 ms" in dom
    assert "capacity: 125 req/s per pod (250 req/s over 2 pods)" in dom
    assert "pods needed for 1,500 req/s with 30% headroom: 18" in dom
    assert re.search(
        r'class="warning">generator: step 3 passed with the generator at its limit', dom
    )
    assert re.search(r'class="warning">generator: step 8 is inconclusive', dom)
    assert re.search(r'class="warning">watch: gate error-rate first failed at step 7', dom)
    # the table: one row per step, classed by verdict, watch columns and reasons included
    table = dom[dom.index('id="steps"') :]
    assert table.count('<tr class="') == 8
    verdicts = ["pass"] * 5 + ["fail"] * 2 + ["warn"]
    assert re.findall(r'<tr class="(\w+)"', table) == verdicts
    assert "gate error-rate" in table and "replicas" in table and "PASS 0.0%" in table
    assert "p99 420 ms &gt; SLO 250 ms" in table
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # the target, as text


def test_the_broken_page(pages: dict[str, Path], tmp_path: Path) -> None:
    dom, _ = chromium(pages["broken"].as_uri(), tmp_path, "--dump-dom")
    assert "no knee: the first step did not pass" in dom
    assert "stopped early: 2 of 3 steps ran in full" in dom
    table = dom[dom.index('id="steps"') :]
    assert re.findall(r'<tr class="(\w+)"', table) == ["fail", "fail", "warn"]
    assert "10-20" in table  # ramp windows show their range


def test_a_screenshot_shows_the_charts(pages: dict[str, Path], tmp_path: Path) -> None:
    import matplotlib.image

    shot = tmp_path / "report.png"
    chromium(pages["knee"].as_uri(), tmp_path, f"--screenshot={shot}")
    img = matplotlib.image.imread(shot)[:, :, :3]
    assert img.shape[:2] == (2800, 1280)
    # below the facts and verdicts: the achieved line (blue), p99 (red), p50 (green)
    lower = img[350:]
    for rgb in ((31, 119, 180), (214, 39, 40), (44, 160, 44)):
        near = np.all(np.abs(lower - np.array(rgb) / 255) < 0.06, axis=2)
        assert near.sum() > 200, rgb


def test_the_page_is_self_contained(pages: dict[str, Path]) -> None:
    page = pages["knee"].read_text()
    assert "<script src" not in page and "<link" not in page and 'src="http' not in page
    assert page.count("Plotly.newPlot") == 4
    assert len(re.findall(r"plotly\.js v\d", page)) == 1  # inlined once


def test_figures_without_steps() -> None:
    doc = broken_run()
    doc["steps"] = []
    figures = load_figures(doc)
    assert sorted(figures) == ["errors-chart", "latency-chart", "throughput-chart"]
    assert all(isinstance(f["data"], list) for f in figures.values())
