"""The run report in a real browser: headless Chromium (Debian's package, through the
shared runner tests/support/browser.py, every host name unresolvable) opens pages
rendered from real journals (the engine on a FakeClock, tests/report/journals.py)
and must draw every chart with no console message and no request leaving the page.
A screenshot of each page is kept under the test's tmp_path (report.png), as a CI
artefact would be.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser  # tests/support (on pytest's pythonpath)
import numpy as np
import pytest

from shiftover.report import run_report as rr
from shiftover.store import open_store

from .journals import SECRET, SERVICE, promoted_run, rolled_back_run

WINDOW = (1280, 4200)


def chromium(url: str, tmp: Path, *args: str) -> tuple[str, str]:
    return browser.chromium(url, tmp, *args, timeout=90.0, window=f"{WINDOW[0]},{WINDOW[1]}")


def _page(tmp: Path, build: Any) -> tuple[Path, dict[str, Any]]:
    with open_store(f"sqlite:///{tmp}/state.db") as store:
        build(store)
        events = store.events(service=SERVICE)
    runs = rr.list_runs(events)
    data = rr.report_data(events, runs[-1].run_id, journal_key=SERVICE,
                          redact=lambda s: s.replace(SECRET, "***"))
    page = tmp / "report.html"
    page.write_text(rr.render_html(data), encoding="utf-8")
    return page, data


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, Any]]]:
    yield {
        "rolled_back": _page(tmp_path_factory.mktemp("rolled"), rolled_back_run),
        "promoted": _page(tmp_path_factory.mktemp("promoted"), promoted_run),
    }


def _chart_segments(dom: str, ids: list[str]) -> dict[str, str]:
    """The DOM from each chart's div to the next chart's (or the next table)."""
    marks = sorted((dom.index(f'id="{i}"'), i) for i in ids)
    ends = [m for m, _ in marks[1:]] + [dom.index('id="actions"', marks[-1][0])
                                        if 'id="actions"' in dom[marks[-1][0]:] else len(dom)]
    return {i: dom[m:end] for (m, i), end in zip(marks, ends, strict=True)}


@pytest.mark.parametrize("name", ["rolled_back", "promoted"])
def test_every_chart_is_drawn_with_no_console_message_and_no_request(
        pages: dict[str, tuple[Path, Any]], tmp_path: Path, name: str) -> None:
    page, data = pages[name]
    net_log = tmp_path / "net.json"
    dom, err = chromium(page.as_uri(), tmp_path, "--enable-logging=stderr", "--v=0",
                        f"--log-net-log={net_log}", "--dump-dom")
    console = [line for line in err.splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console)
    ids = list(rr.figures(data))
    assert ids == ["weight-chart", "gate-chart-1", "gate-chart-2", "gate-chart-3"]
    segments = _chart_segments(dom, ids)
    for chart, seg in segments.items():
        # Plotly drew it: the div became a plot, with its SVG layers, a plot area,
        # traces and tick labels on both axes
        assert re.match(rf'id="{chart}" class="[^"]*js-plotly-plot', seg), chart
        assert seg.count('class="main-svg"') >= 2, chart
        assert 'class="subplot xy"' in seg, chart
        assert re.search(r'class="trace scatter', seg), chart
        assert re.search(r'class="ytick".*?>\s*<text[^>]*>[^<]*\d', seg), f"{chart}: no y ticks"
        assert re.search(r'class="xtick".*?>\s*<text[^>]*>[^<]*\d', seg), f"{chart}: no x ticks"
    # the weight chart: the split as a step line, bake bands, the legend says what they are
    legend = re.findall(r'class="legendtext"[^>]*>([^<]+)<', segments["weight-chart"])
    assert "on new (router)" in legend and "bake counted (complete)" in legend
    if name == "rolled_back":
        assert {"approvals", "pauses / resumes", "rollback"} <= set(legend)
        assert ">rollback<" in segments["gate-chart-1"]  # the moment, on every gate
        gate_legend = re.findall(r'class="legendtext"[^>]*>([^<]+)<', segments["gate-chart-1"])
        assert {"pass", "fail", "max 0.01"} <= set(gate_legend)
    # nothing left the page: every request it made was for itself
    events = json.loads(net_log.read_text())["events"]
    asked = {e["params"]["url"] for e in events if "url" in e.get("params", {})
             and "file://" in str(e["params"].get("network_isolation_key", ""))}
    assert {u for u in asked if not u.startswith(("file:", "data:"))} == set()
    # the gate named to break the page is shown as text, never run
    assert "<script>alert(1)</script>" not in dom
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold" in dom
    assert SECRET not in dom


def test_a_screenshot_shows_the_charts(pages: dict[str, tuple[Path, Any]], tmp_path: Path) -> None:
    import matplotlib.image

    page, _ = pages["rolled_back"]
    shot = tmp_path / "report.png"
    chromium(page.as_uri(), tmp_path, f"--screenshot={shot}")
    assert shot.exists()  # kept: the CI artefact of this page
    img = matplotlib.image.imread(shot)[:, :, :3]
    assert img.shape[:2] == (WINDOW[1], WINDOW[0])
    # below the headline: the weight line (blue), pass markers (green), fail markers and
    # threshold lines (red), the few checks without a verdict (amber)
    lower = img[500:]
    for rgb, least in (((31, 119, 180), 200), ((44, 160, 44), 200), ((214, 39, 40), 200),
                       ((230, 167, 0), 10)):
        near = np.all(np.abs(lower - np.array(rgb) / 255) < 0.06, axis=2)
        assert near.sum() > least, rgb
