"""chart.html in a real browser: headless Chromium opens the page `simulate` wrote,
with every host name unresolvable, and must render every chart with no console
message and no request leaving the page (plotly.js is inlined).

Chromium comes from Debian's package (`make system` installs it). Each browser
run is bounded and its whole process group is killed afterwards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import browser  # tests/support (on pytest's pythonpath)
import numpy as np
import pytest
from typer.testing import CliRunner

from shiftover.cli_scale import scale_app

REPO = Path(__file__).resolve().parents[2]
NASA = REPO / "examples" / "data" / "nasa_ksc_jul1995_rpm.csv"
EXAMPLE = REPO / "examples" / "scaling.yaml"
runner = CliRunner()


def chromium(url: str, tmp: Path, *args: str, timeout: float = 60.0) -> tuple[str, str]:
    return browser.chromium(url, tmp, *args, timeout=timeout, window="1280,1600")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    res = runner.invoke(
        scale_app,
        ["simulate", "--trace", str(NASA), "--config", str(EXAMPLE), "--scale", "200",
         "--from", "1995-07-13T10:00:00Z", "--to", "1995-07-13T16:00:00Z", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    return out


def test_the_page_renders_every_chart_with_no_console_message_and_no_request(report: Path, tmp_path: Path) -> None:
    net_log = tmp_path / "net.json"
    dom, err = chromium(
        (report / "chart.html").as_uri(), tmp_path, "--enable-logging=stderr", "--v=0",
        f"--log-net-log={net_log}", "--dump-dom",
    )
    console = [line for line in err.splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console)
    # Plotly drew the figure: its SVG layers, the four panels (requests, web pods, nodes,
    # workers with the queue on a second axis) and one path per trace
    assert 'id="interactive-chart"' in dom
    assert dom.count('class="main-svg"') >= 2
    panels = set(re.findall(r'class="subplot (xy\d*)"', dom))
    assert {"xy", "xy2", "xy3", "xy4"} <= panels, panels
    page = (report / "chart.html").read_text()
    traces = len(re.findall(r'"type":\s*"scatter"', page))
    assert traces >= 10 and len(re.findall(r'class="trace scatter', dom)) >= traces
    assert re.search(r'class="xtick".*?>\s*<text[^>]*>[^<]*\d', dom), "no x-axis tick labels"
    # the static chart and the summary are on the same page
    assert 'id="static-chart"' in dom and 'src="data:image/png;base64,' in dom
    assert "minutes over SLO" in dom and "worker sat at max_replicas (30)" in dom
    # nothing left the page: every request it made was for itself
    events = json.loads(net_log.read_text())["events"]
    asked = {
        e["params"]["url"]
        for e in events
        if "url" in e.get("params", {}) and "file://" in str(e["params"].get("network_isolation_key", ""))
    }
    assert {u for u in asked if not u.startswith(("file:", "data:"))} == set()


def test_a_screenshot_of_the_page_shows_the_charts(report: Path, tmp_path: Path) -> None:
    import matplotlib.image

    shot = tmp_path / "chart.png"
    chromium((report / "chart.html").as_uri(), tmp_path, f"--screenshot={shot}")
    img = matplotlib.image.imread(shot)[:, :, :3]
    assert img.shape[:2] == (1600, 1280)
    # below the summary table: lines in the charts' colours (demand blue, capacity green)
    lower = img[700:]
    for rgb in ((31, 119, 180), (44, 160, 44)):
        near = np.all(np.abs(lower - np.array(rgb) / 255) < 0.06, axis=2)
        assert near.sum() > 200, rgb
