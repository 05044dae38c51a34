"""Charts of a simulation: demand against ready capacity, replicas, nodes.

A PNG (matplotlib, Agg backend: no display needed) and a self-contained HTML
page that embeds the same image as base64 next to the summary table. The HTML
loads nothing from the network, so it can be attached to a change request or
opened on a laptop with no access to the cluster.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shiftover.scaling.sim import SimResult, Summary


def _times(result: SimResult) -> list[datetime] | list[float]:
    t = result.timeline.t.tolist()
    if result.start_iso:
        start = datetime.fromisoformat(result.start_iso)
        return [start + timedelta(seconds=s) for s in t]
    return [s / 3600.0 for s in t]


def render_png(result: SimResult, path: str | Path, *, title: str = "") -> Path:
    """Three stacked panels sharing the time axis; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    tl = result.timeline
    x: Any = _times(result)
    workers = bool(tl.worker_desired.any())
    panels = 4 if workers else 3
    fig, axes = plt.subplots(panels, 1, figsize=(11, 2.4 * panels + 0.6), sharex=True, constrained_layout=True)
    ax = axes[0]
    ax.plot(x, tl.demand_rps, color="#1f77b4", lw=0.9, label="demand (req/s)")
    ax.step(x, tl.capacity_rps, where="post", color="#2ca02c", lw=1.1, label="ready capacity (req/s)")
    over = tl.not_within_slo > 0
    if over.any():
        ax.fill_between(x, 0, tl.demand_rps, where=over, step="post", color="#d62728", alpha=0.35, lw=0, label="demand over capacity")
    ax.set_ylabel("requests/s")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[1]
    ax.step(x, tl.desired_replicas, where="post", color="#ff7f0e", lw=1.0, label="desired (HPA)")
    ax.step(x, tl.ready_replicas, where="post", color="#2ca02c", lw=1.0, label="ready")
    if tl.web_pending.any():
        ax.step(x, tl.web_pending, where="post", color="#d62728", lw=0.8, label="pending web pods")
    ax.set_ylabel("web pods")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[2]
    ax.step(x, tl.nodes, where="post", color="#9467bd", lw=1.0, label="nodes (incl. provisioning)")
    ax.step(x, tl.ready_nodes, where="post", color="#8c564b", lw=0.8, ls="--", label="ready nodes")
    ax.set_ylabel("nodes")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)

    if workers:
        ax = axes[3]
        ax.plot(x, tl.queue_length, color="#7f7f7f", lw=0.9, label="queue length")
        ax.set_ylabel("queued jobs")
        ax2 = ax.twinx()
        ax2.step(x, tl.worker_ready, where="post", color="#17becf", lw=1.0, label="ready workers")
        ax2.set_ylabel("worker pods")
        ax.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)

    if result.start_iso:
        axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
        axes[-1].set_xlabel("time (UTC)")
    else:
        axes[-1].set_xlabel("hours from start")
    s = result.summary
    fig.suptitle(
        title
        or f"{s.minutes_over_slo} min over SLO, peak {s.peak_desired_replicas} pods / {s.peak_nodes} nodes, {s.node_hours:.1f} node-hours",
        fontsize=10,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary_rows(s: Summary) -> list[tuple[str, str]]:
    """The summary as (label, value) pairs, shared by the CLI table and the HTML page."""
    pct = 100.0 * s.requests_not_within_slo / s.requests_total if s.requests_total else 0.0
    rows = [
        ("simulated", f"{s.duration_seconds / 3600:.1f} h ({s.minutes} min)"),
        ("minutes over SLO", f"{s.minutes_over_slo}"),
        ("requests not within SLO", f"{s.requests_not_within_slo:,.0f} of {s.requests_total:,.0f} ({pct:.3f}%)"),
        ("peak replicas (desired / ready)", f"{s.peak_desired_replicas} / {s.peak_ready_replicas}"),
        ("peak nodes", f"{s.peak_nodes}"),
        ("node-hours", f"{s.node_hours:.1f}"),
        ("web pod-hours (ready)", f"{s.pod_hours:.1f}"),
        ("node scale-ups / nodes removed", f"{s.scale_ups} / {s.nodes_removed}"),
    ]
    if s.worker_peak_replicas:
        rows += [
            ("worker peak replicas", f"{s.worker_peak_replicas}"),
            ("worker peak queue", f"{s.worker_peak_queue:,.0f} jobs"),
            ("worker job wait (max / mean)", f"{s.worker_max_wait_seconds:.0f} s / {s.worker_mean_wait_seconds:.1f} s"),
        ]
        if s.jobs_unfinished:
            rows.append(("jobs still queued at the end", f"{s.jobs_unfinished:,.0f}"))
    return rows


def render_html(result: SimResult, path: str | Path, *, png: str | Path, title: str = "shiftover scale simulate") -> Path:
    """A standalone page: the chart (base64 PNG) and the summary table."""
    image = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    rows = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(result.summary)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ text-align: left; padding: .25em 1em .25em 0; border-bottom: 1px solid #ddd; }}
th {{ font-weight: 600; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Trace start: {html.escape(result.start_iso or "t = 0")}. Demand above ready capacity counts as not served within the latency SLO.</p>
<table>
{rows}
</table>
<img alt="demand vs capacity, replicas and nodes over time" src="data:image/png;base64,{image}">
</body></html>
"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


__all__ = ["render_html", "render_png", "summary_rows"]
