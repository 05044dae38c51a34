"""Charts of a simulation: demand against ready capacity, replicas, nodes, workers.

Two outputs, both readable offline:

* ``chart.png`` (matplotlib, Agg backend: no display needed), for a change
  request or a README;
* ``chart.html``: one standalone page with the summary, the warnings, every
  minute over SLO, an interactive Plotly chart (zoom, hover) and the PNG.
  plotly.js is inlined, so the page loads nothing from the network and can be
  opened on a laptop with no access to the cluster (it weighs ~5 MB for that).

Why the series are reduced before drawing
-----------------------------------------
A month of 15 s syncs is 200,000 rows per series, and a chart 1,200 pixels wide
can show 1,200 columns. Each series is cut into as many buckets as there are
pixel columns (3,000 for the zoomable HTML chart) and only each bucket's first,
last, lowest and highest row are kept (M4 aggregation; Jugel et al., "M4: A
Visualization-Oriented Time Series Data Aggregation", VLDB 2014). The line
drawn through them covers the same pixels as the full series: every peak and
trough is exact and a one-sync spike survives. Drawing 8,000 points instead of
200,000 is what makes a month-long chart take a fraction of a second.

Minutes over SLO are drawn as spans at least three pixels wide (and as markers
in the HTML chart), so a single minute is visible on a month-long trace.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shiftover.scaling.sim import SimResult, Summary

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

PNG_COLUMNS = 1210  # the PNG is 11 in x 110 dpi: at least one bucket per pixel column
HTML_COLUMNS = 3000  # some zoom before the envelope shows, small enough for a browser
OVER_SLO_MIN_PX = 3.0

DEMAND, CAPACITY, OVER, DESIRED, READY, PENDING = "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#2ca02c", "#d62728"
NODES, READY_NODES, QUEUE, WORKERS = "#9467bd", "#8c564b", "#7f7f7f", "#17becf"


def m4(series: Sequence[npt.NDArray[Any]], columns: int) -> IntArray:
    """Rows to keep so that each series drawn through them looks as drawn in full.

    The rows are cut into at most ``columns`` buckets of consecutive rows; per
    bucket the first and last row and, for every series, the rows of its
    minimum and maximum are kept. Sorted, without duplicates. Short series
    (at most four rows per bucket) are kept whole.
    """
    n = len(series[0])
    if n <= 4 * columns:
        return np.arange(n, dtype=np.int64)
    per = -(-n // columns)
    buckets = -(-n // per)
    pad = buckets * per - n
    base = np.arange(buckets, dtype=np.int64) * per
    keep = [base, np.minimum(base + per - 1, n - 1)]
    for y in series:
        # padded with the last value: argmin/argmax return the first of equal
        # values, so a padded row is never chosen over the real last row
        block = np.concatenate((y, np.repeat(y[-1:], pad))).reshape(buckets, per)
        keep.append(base + np.argmin(block, axis=1))
        keep.append(base + np.argmax(block, axis=1))
    return np.unique(np.minimum(np.concatenate(keep), n - 1))


def _x_seconds(result: SimResult, seconds: IntArray) -> FloatArray:
    """Seconds from the start as matplotlib date numbers (hours when the start is unknown)."""
    if not result.start_iso:
        return seconds.astype(np.float64) / 3600.0
    import matplotlib.dates as mdates

    start = np.datetime64(result.start_iso.removesuffix("Z"), "s")
    x: FloatArray = mdates.date2num(start + seconds.astype("timedelta64[s]"))  # type: ignore[no-untyped-call]
    return x


def over_slo_runs(result: SimResult) -> tuple[IntArray, IntArray]:
    """Consecutive minutes over SLO as (start in seconds from the trace start, minutes)."""
    runs = result.summary.over_slo_runs()
    if not runs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    firsts = [first for first, _ in runs]
    if firsts[0].startswith("t="):
        starts = np.asarray([int(f[2:-1]) for f in firsts], dtype=np.int64)
    else:
        stamps = np.asarray([f.removesuffix("Z") for f in firsts], dtype="datetime64[s]")
        starts = (stamps - np.datetime64(result.start_iso.removesuffix("Z"), "s")).astype(np.int64)
    return starts, np.asarray([n for _, n in runs], dtype=np.int64)


def render_png(result: SimResult, path: str | Path, *, title: str = "") -> Path:
    """Stacked panels sharing the time axis; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    tl = result.timeline
    s = result.summary
    workers = bool(tl.worker_desired.any())
    panels = 4 if workers else 3
    width_in, dpi = 11.0, 110
    height_in = 2.4 * panels + 0.6
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    # fixed margins: constrained layout measures every label first (a third of the time)
    fig.subplots_adjust(left=0.065, right=0.935, top=1 - 0.35 / height_in, bottom=0.55 / height_in, hspace=0.08)
    axes = fig.subplots(panels, 1, sharex=True)
    x_all = _x_seconds(result, tl.t)
    x_end = float(_x_seconds(result, np.asarray([s.duration_seconds], dtype=np.int64))[0])

    def step(ax: Any, i: IntArray, y: npt.NDArray[Any], **kw: Any) -> None:
        # the last row holds until the end of the trace
        ax.step(np.append(x_all[i], x_end), np.append(y[i], y[i[-1]]), where="post", **kw)

    # requests/s: the gap between demand and ready capacity filled, minutes over SLO marked
    ax = axes[0]
    gap = np.maximum(tl.demand_rps, tl.capacity_rps)
    i = m4((tl.demand_rps, tl.capacity_rps, gap - tl.capacity_rps), PNG_COLUMNS)
    step(ax, i, tl.demand_rps, color=DEMAND, lw=0.9, label="demand (req/s)")
    step(ax, i, tl.capacity_rps, color=CAPACITY, lw=1.1, label="ready capacity (req/s)")
    if (tl.demand_rps > tl.capacity_rps).any():
        ax.fill_between(
            np.append(x_all[i], x_end), np.append(tl.capacity_rps[i], tl.capacity_rps[i[-1]]),
            np.append(gap[i], gap[i[-1]]), step="post", color=OVER, alpha=0.45, lw=0,
            label="demand over capacity",
        )
    starts, minutes = over_slo_runs(result)
    if starts.size:
        x0 = _x_seconds(result, starts)
        x1 = _x_seconds(result, starts + 60 * minutes)
        # a faint band at the true width (visible on a day), and a strip at the top in bins
        # OVER_SLO_MIN_PX wide (visible on a month) whose bars grow with the share of the
        # bin's minutes over SLO: one minute in a month is a short bar, a bad day a tall one
        exact = list(zip(x0.tolist(), (x1 - x0).tolist(), strict=True))
        ax.broken_barh(exact, (0.0, 1.0), transform=ax.get_xaxis_transform(), color=OVER, alpha=0.12, lw=0)
        duration = s.duration_seconds
        n_bins = max(1, min(-(-duration // 60), int(0.87 * width_in * dpi / OVER_SLO_MIN_PX)))
        edges = np.linspace(0, duration, n_bins + 1)
        minute_starts = np.repeat(starts, minutes) + 60 * (
            np.arange(int(minutes.sum())) - np.repeat(np.cumsum(minutes) - minutes, minutes)
        )
        over, _ = np.histogram(minute_starts, bins=edges)
        share = over / np.maximum(np.diff(edges) / 60.0, 1.0)
        xe = _x_seconds(result, edges.astype(np.int64))
        label = f"minutes over SLO ({s.minutes_over_slo}; bar height: share of the period)"
        for b in np.flatnonzero(over):
            h = 0.08 * (0.35 + 0.65 * min(1.0, float(share[b])))
            ax.broken_barh([(float(xe[b]), float(xe[b + 1] - xe[b]))], (1.0 - h, h),
                           transform=ax.get_xaxis_transform(), color=OVER, lw=0, label=label)
            label = "_nolegend_"
    ax.set_ylabel("requests/s")
    # room above the peak for the over-SLO strip; the legend below the strip
    ax.set_ylim(0, 1.12 * max(float(gap.max()), 1.0))
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.91), fontsize=8)
    ax.grid(alpha=0.3)

    # web pods: ready as an area, the HPA's desired as a dashed line over it
    ax = axes[1]
    i = m4((tl.desired_replicas, tl.ready_replicas, tl.web_pending), PNG_COLUMNS)
    xi = np.append(x_all[i], x_end)
    ax.fill_between(xi, 0, np.append(tl.ready_replicas[i], tl.ready_replicas[i[-1]]), step="post",
                    color=READY, alpha=0.25, lw=0)
    step(ax, i, tl.ready_replicas, color=READY, lw=1.0, label="ready")
    step(ax, i, tl.desired_replicas, color=DESIRED, lw=1.3, ls=(0, (4, 2)), label="desired (HPA)")
    if tl.web_pending.any():
        step(ax, i, tl.web_pending, color=PENDING, lw=0.8, ls=":", label="pending (no node yet)")
    if s.web_at_max_seconds and s.web_max_replicas:
        ax.axhline(s.web_max_replicas, color="k", lw=0.8, ls="-.", label=f"max_replicas ({s.web_max_replicas})")
    ax.set_ylabel("web pods")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[2]
    i = m4((tl.nodes, tl.ready_nodes), PNG_COLUMNS)
    step(ax, i, tl.nodes, color=NODES, lw=1.0, label="nodes (incl. provisioning)")
    step(ax, i, tl.ready_nodes, color=READY_NODES, lw=0.8, ls="--", label="ready nodes")
    ax.set_ylabel("nodes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)

    if workers:
        ax = axes[3]
        i = m4((tl.queue_length, tl.worker_desired, tl.worker_ready, tl.worker_pending), PNG_COLUMNS)
        step(ax, i, tl.queue_length, color=QUEUE, lw=0.9, label="queue length")
        ax.set_ylabel("queued jobs")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        step(ax2, i, tl.worker_ready, color=WORKERS, lw=1.0, label="ready workers")
        step(ax2, i, tl.worker_desired, color=DESIRED, lw=1.2, ls=(0, (4, 2)), label="desired workers (HPA)")
        if tl.worker_pending.any():
            step(ax2, i, tl.worker_pending, color=PENDING, lw=0.8, ls=":", label="pending workers")
        if s.worker_at_max_seconds and s.worker_max_replicas:
            ax2.axhline(s.worker_max_replicas, color="k", lw=0.8, ls="-.",
                        label=f"max_replicas ({s.worker_max_replicas})")
        ax2.set_ylabel("worker pods")
        ax2.set_ylim(0, 1.12 * max(int(tl.worker_desired.max()), int(tl.worker_ready.max()), 1))
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)

    last = axes[-1]
    last.set_xlim(float(x_all[0]), x_end)
    if result.start_iso:
        # AutoDateLocator picks hours for a day and days for a month; the concise
        # formatter writes the date once per change instead of on every tick
        locator = mdates.AutoDateLocator(minticks=5, maxticks=12)  # type: ignore[no-untyped-call]
        last.xaxis.set_major_locator(locator)
        last.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        last.set_xlabel("time (UTC)")
    else:
        last.set_xlabel("hours from start")
    fig.suptitle(title or _headline(s), fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def _headline(s: Summary) -> str:
    return (
        f"{s.minutes_over_slo} min over SLO, peak {s.peak_desired_replicas} pods / {s.peak_nodes} nodes, "
        f"{s.node_hours:.1f} node-hours"
    )


def duration_text(seconds: int) -> str:
    """``95 min`` below two hours, else ``3.2 h``."""
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def over_slo_text(s: Summary) -> str:
    """The count, the runs and the first minute over SLO, e.g. ``20 (15 runs, first 1995-07-13T00:53:00Z)``."""
    runs = s.over_slo_runs()
    if not runs:
        return f"{s.minutes_over_slo}"
    return f"{s.minutes_over_slo} ({len(runs)} run{'s' if len(runs) > 1 else ''}, first {runs[0][0]})"


def runs_text(s: Summary, first: int = 5) -> str:
    """The first runs of minutes over SLO, compact: ``1995-07-13 00:53 (1 min), 03:10 (2 min), ...``.

    The date is written when it changes; times are UTC minute starts.
    """
    parts = []
    day = ""
    runs = s.over_slo_runs()
    for stamp, n in runs[:first]:
        date, _, clock = stamp.partition("T")
        hhmm = clock[:5] if clock else stamp
        parts.append(f"{hhmm if date == day else f'{date} {hhmm}'} ({n} min)")
        day = date
    more = f" and {len(runs) - first} more runs" if len(runs) > first else ""
    return ", ".join(parts) + more


def warnings(s: Summary) -> list[str]:
    """One line per tier whose HPA sat at max_replicas: it could not follow demand higher."""
    lines = []
    for tier, limit, held, first in (
        ("web", s.web_max_replicas, s.web_at_max_seconds, s.web_at_max_first),
        ("worker", s.worker_max_replicas, s.worker_at_max_seconds, s.worker_at_max_first),
    ):
        if held and limit:
            lines.append(
                f"{tier} sat at max_replicas ({limit}) for {duration_text(held)}, first at {first}: "
                f"it could not scale higher; raise {tier}.hpa.max_replicas in the config or check its target"
            )
    return lines


def summary_rows(s: Summary) -> list[tuple[str, str]]:
    """The summary as (label, value) pairs, shared by the CLI table and the HTML page."""
    pct = 100.0 * s.requests_not_within_slo / s.requests_total if s.requests_total else 0.0
    rows = [
        ("simulated", f"{s.duration_seconds / 3600:.1f} h ({s.minutes} min)"),
        ("minutes over SLO", over_slo_text(s)),
        ("requests not within SLO", f"{s.requests_not_within_slo:,.0f} of {s.requests_total:,.0f} ({pct:.3f}%)"),
        ("peak replicas (desired / ready)", f"{s.peak_desired_replicas} / {s.peak_ready_replicas}"),
        ("peak nodes", f"{s.peak_nodes}"),
        ("node-hours", f"{s.node_hours:.1f}"),
        ("web pod-hours (ready)", f"{s.pod_hours:.1f}"),
        ("node scale-ups / nodes removed", f"{s.scale_ups} / {s.nodes_removed}"),
    ]
    if s.web_at_max_seconds:
        rows.append(("web at max_replicas", f"{duration_text(s.web_at_max_seconds)}, first at {s.web_at_max_first}"))
    if s.worker_peak_replicas:
        rows += [
            ("worker peak replicas", f"{s.worker_peak_replicas}"),
            ("worker peak queue", f"{s.worker_peak_queue:,.0f} jobs"),
            ("worker job wait (max / mean)", f"{s.worker_max_wait_seconds:.0f} s / {s.worker_mean_wait_seconds:.1f} s"),
        ]
        if s.worker_at_max_seconds:
            rows.append(
                ("worker at max_replicas", f"{duration_text(s.worker_at_max_seconds)}, first at {s.worker_at_max_first}")
            )
        if s.jobs_unfinished:
            rows.append(("jobs still queued at the end", f"{s.jobs_unfinished:,.0f}"))
    return rows


# ---------------------------------------------------------------- interactive chart


def _typed(a: npt.NDArray[Any]) -> dict[str, str]:
    """A numpy array as a plotly.js typed array (base64, little-endian float64): compact and exact."""
    return {"dtype": "f8", "bdata": base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")}


def plotly_figure(result: SimResult) -> dict[str, Any]:
    """The interactive chart as a Plotly figure (a plain dict, JSON-ready): panels share the time axis."""
    tl = result.timeline
    s = result.summary
    workers = bool(tl.worker_desired.any())
    dated = bool(result.start_iso)
    if dated:
        start_ms = float(np.datetime64(result.start_iso.removesuffix("Z"), "ms").astype(np.int64))
        x_all = start_ms + tl.t.astype(np.float64) * 1000.0
        x_end = start_ms + s.duration_seconds * 1000.0
    else:
        x_all = tl.t.astype(np.float64) / 3600.0
        x_end = s.duration_seconds / 3600.0
    data: list[dict[str, Any]] = []

    def line(i: IntArray, y: npt.NDArray[Any], name: str, axis: str, color: str, **kw: Any) -> dict[str, Any]:
        trace = {
            "type": "scatter", "mode": "lines", "name": name, "xaxis": "x", "yaxis": axis,
            "x": _typed(np.append(x_all[i], x_end)), "y": _typed(np.append(y[i], y[i[-1]])),
            "line": {"shape": "hv", "color": color, "width": kw.pop("width", 1.2), **kw.pop("line", {})},
            **kw,
        }
        data.append(trace)
        return trace

    gap = np.maximum(tl.demand_rps, tl.capacity_rps)
    i = m4((tl.demand_rps, tl.capacity_rps, gap - tl.capacity_rps), HTML_COLUMNS)
    line(i, tl.capacity_rps, "ready capacity (req/s)", "y", CAPACITY, legendgroup="1")
    # filled down to the capacity trace just above: the gap where demand exceeds it
    line(i, gap, "demand over capacity", "y", OVER, width=0, fill="tonexty",
         fillcolor="rgba(214,39,40,0.45)", hoverinfo="skip", legendgroup="1")
    line(i, tl.demand_rps, "demand (req/s)", "y", DEMAND, legendgroup="1")
    starts, minutes = over_slo_runs(result)
    if starts.size:
        scale = 1000.0 if dated else 1.0 / 3600.0
        base = start_ms if dated else 0.0
        x0 = base + starts * scale
        x1 = base + (starts + 60 * minutes) * scale
        # every run as one filled rectangle (one path for all), plus a marker
        # at its start that keeps a one-minute run visible when zoomed out
        nan = np.full_like(x0, np.nan)
        xs = np.column_stack((x0, x0, x1, x1, nan)).ravel()
        ys = np.tile([0.0, 1.0, 1.0, 0.0, np.nan], x0.size)
        data.append({
            "type": "scatter", "mode": "lines", "name": "minute over SLO", "xaxis": "x", "yaxis": "y6",
            "x": _typed(xs), "y": _typed(ys), "fill": "toself", "fillcolor": "rgba(214,39,40,0.15)",
            "line": {"width": 0}, "hoverinfo": "skip", "legendgroup": "1",
        })
        labels = [f"{first} ({n} min over SLO)" for first, n in s.over_slo_runs()]
        data.append({
            "type": "scatter", "mode": "markers", "name": f"over SLO ({s.minutes_over_slo} min)",
            "xaxis": "x", "yaxis": "y6", "x": _typed(x0), "y": _typed(np.full_like(x0, 0.97)),
            "marker": {"symbol": "triangle-down", "size": 8, "color": OVER},
            "text": labels, "hovertemplate": "%{text}<extra></extra>", "legendgroup": "1",
        })

    i = m4((tl.desired_replicas, tl.ready_replicas, tl.web_pending), HTML_COLUMNS)
    line(i, tl.ready_replicas, "ready web pods", "y2", READY, fill="tozeroy", fillcolor="rgba(44,160,44,0.2)",
         legendgroup="2")
    line(i, tl.desired_replicas, "desired web pods (HPA)", "y2", DESIRED, width=1.6, line={"dash": "dash"},
         legendgroup="2")
    if tl.web_pending.any():
        line(i, tl.web_pending, "pending web pods", "y2", PENDING, width=1.0, line={"dash": "dot"}, legendgroup="2")

    i = m4((tl.nodes, tl.ready_nodes), HTML_COLUMNS)
    line(i, tl.nodes, "nodes (incl. provisioning)", "y3", NODES, legendgroup="3")
    line(i, tl.ready_nodes, "ready nodes", "y3", READY_NODES, line={"dash": "dash"}, legendgroup="3")

    if workers:
        i = m4((tl.queue_length, tl.worker_desired, tl.worker_ready, tl.worker_pending), HTML_COLUMNS)
        line(i, tl.queue_length, "queue length (jobs)", "y5", QUEUE, legendgroup="4")
        line(i, tl.worker_ready, "ready workers", "y4", WORKERS, legendgroup="4")
        line(i, tl.worker_desired, "desired workers (HPA)", "y4", DESIRED, width=1.6, line={"dash": "dash"},
             legendgroup="4")
        if tl.worker_pending.any():
            line(i, tl.worker_pending, "pending workers", "y4", PENDING, width=1.0, line={"dash": "dot"},
                 legendgroup="4")

    panels = 4 if workers else 3
    gap_frac = 0.04
    height = (1.0 - gap_frac * (panels - 1)) / panels
    domains = [[1.0 - (k + 1) * height - k * gap_frac, 1.0 - k * (height + gap_frac)] for k in range(panels)]
    layout: dict[str, Any] = {
        "height": 260 * panels + 80,
        "margin": {"l": 70, "r": 70, "t": 50, "b": 50},
        "title": {"text": html.escape(_headline(s)), "font": {"size": 14}},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.06, "font": {"size": 11}},
        "xaxis": {
            "type": "date" if dated else "linear", "anchor": f"y{panels if panels > 1 else ''}",
            "title": {"text": "time (UTC)" if dated else "hours from start"},
            "range": [float(x_all[0]), x_end], "showgrid": True, "gridcolor": "#eee",
        },
        "yaxis": {"domain": domains[0], "title": {"text": "requests/s"}, "rangemode": "tozero", "gridcolor": "#eee"},
        "yaxis2": {"domain": domains[1], "title": {"text": "web pods"}, "rangemode": "tozero", "gridcolor": "#eee"},
        "yaxis3": {"domain": domains[2], "title": {"text": "nodes"}, "rangemode": "tozero", "gridcolor": "#eee"},
        "yaxis6": {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
    }
    if workers:
        layout["yaxis4"] = {"domain": domains[3], "title": {"text": "worker pods"}, "rangemode": "tozero",
                            "gridcolor": "#eee"}
        layout["yaxis5"] = {"overlaying": "y4", "side": "right", "title": {"text": "queued jobs"},
                            "rangemode": "tozero", "showgrid": False}
    return {"data": data, "layout": layout}


def render_html(result: SimResult, path: str | Path, *, png: str | Path, title: str = "shiftover scale simulate") -> Path:
    """One standalone page: warnings, summary, the interactive chart, every minute over SLO, the PNG."""
    import plotly.io as pio

    s = result.summary
    image = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    rows = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(s)
    )
    warned = "".join(f'<p class="warning">warning: {html.escape(w)}</p>\n' for w in warnings(s))
    chart = pio.to_html(
        plotly_figure(result), include_plotlyjs=True, full_html=False, validate=False,
        div_id="interactive-chart", default_height=f"{260 * (4 if result.timeline.worker_desired.any() else 3) + 80}px",
        config={"displaylogo": False, "responsive": True},
    )
    runs = s.over_slo_runs()
    listing = ""
    if runs:
        items = "\n".join(f"<li>{html.escape(first)}: {n} min</li>" for first, n in runs)
        listing = (
            f"<details><summary>{s.minutes_over_slo} minutes over SLO in {len(runs)} runs "
            f"(UTC start, length; also in summary.json and timeline.csv's minute_over_slo)</summary>\n"
            f'<ol id="over-slo">\n{items}\n</ol></details>'
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ text-align: left; padding: .25em 1em .25em 0; border-bottom: 1px solid #ddd; }}
th {{ font-weight: 600; }}
img {{ max-width: 100%; }}
.warning {{ background: #fff3cd; border-left: 4px solid #d39e00; padding: .5em 1em; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Trace start: {html.escape(result.start_iso or "t = 0")}. Demand above ready capacity counts as not served
within the latency SLO. Drag to zoom, double-click to reset; the chart keeps each series' exact minimum and
maximum per {HTML_COLUMNS:,} columns (timeline.csv has every row).</p>
{warned}<table>
{rows}
</table>
{chart}
{listing}
<h2>Static chart (chart.png)</h2>
<img id="static-chart" alt="demand vs capacity, replicas and nodes over time" src="data:image/png;base64,{image}">
</body></html>
"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


__all__ = [
    "m4",
    "over_slo_runs",
    "over_slo_text",
    "plotly_figure",
    "render_html",
    "render_png",
    "runs_text",
    "summary_rows",
    "warnings",
]
