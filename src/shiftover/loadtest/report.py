"""The load test's HTML report: one self-contained page from the ``--json`` document.

It is rendered from the document alone (``shiftover.load/v1``, see
:mod:`shiftover.loadtest.results`), never from live objects, so a saved
``load.json`` renders the same page later and the page can never say something
the JSON does not.

What is on it, top to bottom:

* what was tested (target, schedule, criteria, generator) and the verdict
  lines the CLI prints (:func:`~shiftover.loadtest.results.knee_text`), the
  generator's warnings highlighted: a step the generator could not drive is
  inconclusive, and the reader must see that before reading the charts;
* **throughput**: target against achieved rate per step, the knee marked;
* **latency against achieved rate**: p50/p95/p99 per step with the SLO line
  (a trace: a layout shape on a log axis would need log10 values) and the knee.
  Plotted against the *achieved* rate, the classic capacity
  curve: past the knee the achieved rate stops rising while latency climbs,
  so the line bends up and back. The y axis turns logarithmic when the worst
  p99 is more than 20 times the SLO (a saturated step would flatten the rest);
* **errors per step**: the share of attempts that failed, stacked by kind
  (status code or exception, and arrivals dropped), with the ``--max-errors`` line;
* **watched queries** (``--watch ... --query NAME=PROMQL``): each query's value
  at the end of every step, e.g. replicas and nodes growing with the load;
* the per-step table (:func:`~shiftover.loadtest.results.table_rows`, watch
  columns included) with each step's reason.

plotly.js is inlined once (as :func:`shiftover.scaling.chart.render_html`
does), so the page loads nothing from the network.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shiftover.errors import BadInput
from shiftover.loadtest.results import knee_text, table_rows
from shiftover.report.charts import axis, layout

__all__ = ["load_figures", "render_load_html"]

TARGET, ACHIEVED, P50, P95, P99, SLO, KNEE = (
    "#7f7f7f",
    "#1f77b4",
    "#2ca02c",
    "#ff7f0e",
    "#d62728",
    "#9467bd",
    "#000000",
)
ERROR_COLORS = ("#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f")
DROPPED = "#9467bd"
QUERY_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#ff7f0e")
LOG_LATENCY_ABOVE = 20.0  # worst p99 / SLO beyond which the latency axis is logarithmic
MAX_ERROR_KINDS = 6  # more kinds are summed as "other"

_LAYOUT: dict[str, Any] = layout(top=50, bottom=50, legend_y=-0.2)


def _num(x: Any) -> float | None:
    return (
        float(x)
        if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
        else None
    )


def _hline(
    y: float, color: str, text: str, *, xref: str = "paper"
) -> tuple[dict[str, Any], dict[str, Any]]:
    shape = {
        "type": "line", "xref": xref, "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
        "line": {"color": color, "width": 1.5, "dash": "dash"},
    }  # fmt: skip
    note = {
        "xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": y, "yanchor": "bottom",
        "text": text, "showarrow": False, "font": {"color": color},
    }  # fmt: skip
    return shape, note


def throughput_figure(doc: Mapping[str, Any]) -> dict[str, Any]:
    steps = doc.get("steps") or []
    x = [s["index"] + 1 for s in steps]
    hover = [f"step {s['index'] + 1}: {s.get('verdict', '')}" for s in steps]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter", "mode": "lines+markers", "name": "target (req/s)", "x": x,
            "y": [s["target_rate"] for s in steps], "line": {"color": TARGET, "dash": "dash"},
            "text": hover, "hovertemplate": "%{text}<br>target %{y:.4g} req/s<extra></extra>",
        },
        {
            "type": "scatter", "mode": "lines+markers", "name": "achieved (req/s)", "x": x,
            "y": [s["achieved_rate"] for s in steps], "line": {"color": ACHIEVED, "width": 2.5},
            "text": hover, "hovertemplate": "%{text}<br>achieved %{y:.4g} req/s<extra></extra>",
        },
    ]  # fmt: skip
    knee = doc.get("knee")
    if knee is not None:
        data.append(
            {
                "type": "scatter", "mode": "markers+text", "name": "knee", "x": [knee["step"] + 1],
                "y": [knee["achieved_rate"]], "marker": {"symbol": "star", "size": 16, "color": KNEE},
                "text": ["knee"], "textposition": "top center",
                "hovertemplate": "knee: step %{x}, %{y:.4g} req/s achieved<extra></extra>",
            }
        )  # fmt: skip
    return {
        "data": data,
        "layout": {
            **_LAYOUT,
            "title": {"text": "Throughput: target and achieved rate per step"},
            "xaxis": axis("step", dtick=1 if len(steps) <= 30 else None),
            "yaxis": axis("requests/s", rangemode="tozero"),
        },
    }


def latency_figure(doc: Mapping[str, Any]) -> dict[str, Any]:
    steps = doc.get("steps") or []
    slo = _num((doc.get("criteria") or {}).get("slo_p99_ms"))
    x = [s["achieved_rate"] for s in steps]
    hover = [
        f"step {s['index'] + 1} (target {s['target_rate']:.4g} req/s): {s.get('verdict', '')}"
        for s in steps
    ]
    data = [
        {
            "type": "scatter", "mode": "lines+markers", "name": name, "x": x, "y": [s.get(key) for s in steps],
            "line": {"color": color, "width": width}, "text": hover,
            "hovertemplate": f"%{{text}}<br>%{{x:.4g}} req/s achieved<br>{name} %{{y:.4g}} ms<extra></extra>",
        }
        for name, key, color, width in (("p50", "p50_ms", P50, 1.5), ("p95", "p95_ms", P95, 1.5), ("p99", "p99_ms", P99, 2.5))
    ]  # fmt: skip
    knee = doc.get("knee")
    if knee is not None and knee.get("p99_ms") is not None:
        data.append(
            {
                "type": "scatter", "mode": "markers+text", "name": "knee", "x": [knee["achieved_rate"]],
                "y": [knee["p99_ms"]], "marker": {"symbol": "star", "size": 16, "color": KNEE},
                "text": ["knee"], "textposition": "top left",
                "hovertemplate": "knee: %{x:.4g} req/s, p99 %{y:.4g} ms<extra></extra>",
            }
        )  # fmt: skip
    if slo is not None:
        # a trace, not a layout shape: shapes on a log axis take log10 values, a trace takes data
        right = max((v for v in x if _num(v) is not None), default=0.0) * 1.05 or 1.0
        data.append(
            {
                "type": "scatter", "mode": "lines", "name": f"SLO p99 {slo:g} ms", "x": [0.0, right],
                "y": [slo, slo], "line": {"color": SLO, "width": 1.5, "dash": "dash"},
                "hovertemplate": f"SLO p99 {slo:g} ms<extra></extra>",
            }
        )  # fmt: skip
    worst = max((v for s in steps if (v := _num(s.get("p99_ms"))) is not None), default=0.0)
    log = slo is not None and worst > LOG_LATENCY_ABOVE * slo
    return {
        "data": data,
        "layout": {
            **_LAYOUT,
            "title": {"text": "Latency against achieved rate" + (" (log scale)" if log else "")},
            "xaxis": axis("achieved requests/s", rangemode="tozero"),
            "yaxis": axis("latency (ms)", type="log")
            if log
            else axis("latency (ms)", rangemode="tozero"),
        },
    }


def errors_figure(doc: Mapping[str, Any]) -> dict[str, Any]:
    steps = doc.get("steps") or []
    x = [s["index"] + 1 for s in steps]
    attempted = [max(int(s.get("requests", 0)) + int(s.get("dropped", 0)), 0) for s in steps]
    totals: dict[str, int] = {}
    for s in steps:
        for kind, n in (s.get("errors") or {}).items():
            totals[str(kind)] = totals.get(str(kind), 0) + int(n)
    kinds = sorted(totals, key=lambda k: (-totals[k], k))
    shown, other = kinds[:MAX_ERROR_KINDS], kinds[MAX_ERROR_KINDS:]

    def share(counts: Sequence[int]) -> list[float]:
        return [100.0 * n / a if a else 0.0 for n, a in zip(counts, attempted, strict=True)]

    def bar(name: str, counts: Sequence[int], color: str) -> dict[str, Any]:
        return {
            "type": "bar", "name": name, "x": x, "y": share(counts), "customdata": list(counts),
            "marker": {"color": color},
            "hovertemplate": f"step %{{x}}: {html.escape(name)} %{{customdata:,}} (%{{y:.3g}}%)<extra></extra>",
        }  # fmt: skip

    data = [
        bar(
            k,
            [int((s.get("errors") or {}).get(k, 0)) for s in steps],
            ERROR_COLORS[i % len(ERROR_COLORS)],
        )
        for i, k in enumerate(shown)
    ]
    if other:
        data.append(
            bar(
                "other",
                [sum(int((s.get("errors") or {}).get(k, 0)) for k in other) for s in steps],
                "#c7c7c7",
            )
        )
    if any(int(s.get("dropped", 0)) for s in steps):
        data.append(
            bar("dropped (no user free)", [int(s.get("dropped", 0)) for s in steps], DROPPED)
        )
    if not data:  # no error at all: an empty bar keeps the axes and says so in the legend
        data.append(bar("no errors", [0 for _ in steps], ERROR_COLORS[0]))
    shapes, notes = [], []
    limit = _num((doc.get("criteria") or {}).get("max_errors"))
    if limit is not None:
        shape, note = _hline(100.0 * limit, "#444444", f"--max-errors {100 * limit:g}%")
        shapes.append(shape)
        notes.append(note)
    return {
        "data": data,
        "layout": {
            **_LAYOUT,
            "title": {"text": "Errors per step (share of attempts, dropped arrivals included)"},
            "barmode": "stack",
            "xaxis": axis("step", dtick=1 if len(steps) <= 30 else None),
            "yaxis": axis("% of attempts", rangemode="tozero"),
            "shapes": shapes,
            "annotations": notes,
        },
    }


def _watch_by_step(doc: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    rows = []
    for pos, row in enumerate(doc.get("watch") or []):
        i = row.get("step", pos)
        if isinstance(i, int):
            rows.append((i, row))
    return rows


def watch_figure(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """Each watched query's value at the end of every step; None when nothing numeric was watched."""
    series: dict[str, dict[int, float | None]] = {}
    for i, row in _watch_by_step(doc):
        for q in row.get("queries") or ():
            series.setdefault(str(q.get("name")), {})[i] = _num(q.get("value"))
    series = {k: v for k, v in series.items() if any(val is not None for val in v.values())}
    if not series:
        return None
    data = []
    for n, (name, values) in enumerate(series.items()):
        xs = sorted(values)
        data.append(
            {
                "type": "scatter", "mode": "lines+markers", "name": name, "x": [i + 1 for i in xs],
                "y": [values[i] for i in xs], "line": {"color": QUERY_COLORS[n % len(QUERY_COLORS)], "shape": "hv"},
                "hovertemplate": f"step %{{x}}: {html.escape(name)} %{{y:.4g}}<extra></extra>",
            }
        )  # fmt: skip
    return {
        "data": data,
        "layout": {
            **_LAYOUT,
            "title": {"text": "Watched queries at the end of each step"},
            "xaxis": axis("step", dtick=1 if len(doc.get("steps") or []) <= 30 else None),
            "yaxis": axis("value", rangemode="tozero"),
        },
    }


def load_figures(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The page's Plotly figures (plain dicts), by their element id."""
    figures = {
        "throughput-chart": throughput_figure(doc),
        "latency-chart": latency_figure(doc),
        "errors-chart": errors_figure(doc),
    }
    watch = watch_figure(doc)
    if watch is not None:
        figures["watch-chart"] = watch
    return figures


# --- the page ------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape(str(x))


def _facts(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    from shiftover.loadtest.schedule import Schedule

    rows: list[tuple[str, str]] = []
    target = doc.get("target") or {}
    if target:
        what = " ".join(str(target[k]) for k in ("method", "url") if target.get(k))
        rest = ", ".join(
            f"{k} {v}"
            for k, v in target.items()
            if k not in ("method", "url") and v not in (None, "", {}, [])
        )
        rows.append(("target", what + (f" ({rest})" if rest else "") or "-"))
    try:
        rows.append(
            (
                "schedule",
                f"--rate {doc['schedule']['spec']}: {Schedule.from_dict(doc['schedule']).summary()}",
            )
        )
    except (
        BadInput,
        KeyError,
        TypeError,
        ValueError,
    ):  # hand-edited: show what is there, not fail the page
        rows.append(("schedule", str((doc.get("schedule") or {}).get("spec", "-"))))
    c = doc.get("criteria") or {}
    if c:
        parts = []
        if _num(c.get("slo_p99_ms")) is not None:
            parts.append(f"p99 <= {float(c['slo_p99_ms']):g} ms")
        if _num(c.get("max_errors")) is not None:
            parts.append(f"errors <= {100 * float(c['max_errors']):g}%")
        if _num(c.get("rate_tolerance")) is not None:
            parts.append(f"achieved within {100 * float(c['rate_tolerance']):g}% of target")
        rows.append(("criteria", ", ".join(parts)))
    g = doc.get("generator") or {}
    if g:
        rows.append(("generator", ", ".join(f"{k} {v}" for k, v in g.items() if v is not None)))
    if doc.get("started") or doc.get("ended"):
        rows.append(("ran", f"{doc.get('started', '?')} to {doc.get('ended', '?')}"))
    if doc.get("stopped_early"):
        rows.append(("stopped early", "yes: the last step is partial"))
    return rows


def _table(doc: Mapping[str, Any]) -> str:
    columns, rows = table_rows(doc)
    steps = doc.get("steps") or []
    head = "".join(f"<th>{_e(c)}</th>" for c in [*columns, "reason"])
    body = []
    for row, s in zip(rows, steps, strict=True):
        verdict = str(s.get("verdict", ""))
        cls = (
            "pass"
            if verdict == "pass"
            else ("warn" if verdict in ("generator", "partial", "no data") else "fail")
        )
        cells = "".join(f"<td>{_e(v)}</td>" for v in [*row, s.get("reason", "")])
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return (
        f'<table id="steps"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table>"
    )


def render_load_html(doc: Mapping[str, Any], path: Path, *, title: str = "shiftover load") -> Path:
    """Write the report for a ``shiftover.load/v1`` document to ``path``; returns ``path``."""
    import plotly.io as pio

    charts = []
    for n, (div_id, figure) in enumerate(load_figures(doc).items()):
        charts.append(
            pio.to_html(
                figure, include_plotlyjs=n == 0, full_html=False, validate=False, div_id=div_id,
                default_height="460px", config={"displaylogo": False, "responsive": True},
            )
        )  # fmt: skip
    facts = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _facts(doc))
    lines = []
    for line in knee_text(doc):
        cls = "warning" if line.startswith(("generator:", "stopped early", "watch:")) else "verdict"
        lines.append(f'<p class="{cls}">{_e(line)}</p>')
    if not (doc.get("steps") or []):
        lines.append('<p class="warning">no step was measured</p>')
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ text-align: left; padding: .25em 1em .25em 0; border-bottom: 1px solid #ddd; }}
th {{ font-weight: 600; }}
.wide {{ overflow-x: auto; }}
#steps {{ font-size: .9em; }}
#steps td {{ font-variant-numeric: tabular-nums; white-space: nowrap; }}
#steps td:last-child {{ white-space: normal; min-width: 24em; }}
tr.fail td {{ background: #fdecea; }}
tr.warn td {{ background: #fff3cd; }}
.verdict {{ font-weight: 600; margin: .3em 0; }}
.warning {{ background: #fff3cd; border-left: 4px solid #d39e00; padding: .5em 1em; }}
</style></head>
<body>
<h1>{_e(title)}</h1>
<table id="facts">
{facts}
</table>
<div id="verdicts">
{chr(10).join(lines)}
</div>
<p>Latency is counted from each request's intended arrival time (open model: no coordinated
omission). Drag to zoom, double-click to reset.</p>
{chr(10).join(charts)}
<h2>Steps</h2>
<div class="wide">
{_table(doc)}
</div>
</body></html>
"""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
