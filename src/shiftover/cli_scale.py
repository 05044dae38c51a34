"""``shiftover scale ...``: the autoscaling simulator's commands. Parse, call, print.

Mounted into the main CLI as ``shiftover scale``; usable (and tested) on its own
as ``scale_app``. Every :class:`~shiftover.errors.ShiftoverError` is printed as
one clean message and exits with its code (2 for bad input), without a
traceback, whether or not the main CLI's handler is around it.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from shiftover.errors import BadInput, ShiftoverError

scale_app = typer.Typer(
    help="Will the new environment keep up? Replay a traffic trace through HPA (external metrics), "
    "pod start-up and Cluster Autoscaler; find the cheapest settings that hold the SLO; write the manifests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _clean_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ShiftoverError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


TraceOpt = Annotated[Path, typer.Option("--trace", help="CSV: timestamp,requests[,jobs], one row per minute or per second.", show_default=False)]
ConfigOpt = Annotated[Path, typer.Option("--config", help="scaling.yaml (see examples/scaling.yaml).", show_default=False)]
ScaleOpt = Annotated[float, typer.Option("--scale", help="Multiply the trace's demand by K (a public trace's shape at your traffic).")]
FromOpt = Annotated[str | None, typer.Option("--from", help="Start of the window (ISO 8601, UTC), inclusive.")]
ToOpt = Annotated[str | None, typer.Option("--to", help="End of the window (ISO 8601, UTC), exclusive.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _load(trace: Path, config: Path, scale: float, start: str | None, end: str | None) -> tuple[Any, Any]:
    from shiftover.scaling.config import load_config
    from shiftover.scaling.trace import load_trace, parse_timestamp

    cfg = load_config(config)
    t0: datetime | None = parse_timestamp(start, where="--from") if start else None
    t1: datetime | None = parse_timestamp(end, where="--to") if end else None
    tr = load_trace(trace, scale=scale, start=t0, end=t1)
    return tr, cfg


@scale_app.command()
@_clean_errors
def simulate(
    trace: TraceOpt,
    config: ConfigOpt,
    scale: ScaleOpt = 1.0,
    start: FromOpt = None,
    end: ToOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for chart.png, chart.html, timeline.csv, summary.json.")] = Path("scale-report"),
    as_json: JsonOpt = False,
) -> None:
    """Replay a trace; print minutes over SLO, peaks and node-hours; write a chart."""
    from shiftover.scaling.chart import render_html, render_png, summary_rows
    from shiftover.scaling.sim import Timeline
    from shiftover.scaling.sim import simulate as run_simulation

    tr, cfg = _load(trace, config, scale, start, end)
    result = run_simulation(tr, cfg)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create --out directory {out_dir}: {exc.strerror or exc}") from None
    png = render_png(result, out_dir / "chart.png")
    page = render_html(result, out_dir / "chart.html", png=png)
    timeline = out_dir / "timeline.csv"
    with timeline.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(Timeline.COLUMNS)
        for row in result.timeline.rows():
            w.writerow([row[c] for c in Timeline.COLUMNS])
    summary = result.summary.to_dict()
    files = {"png": str(png), "html": str(page), "timeline": str(timeline)}
    (out_dir / "summary.json").write_text(json.dumps({"summary": summary, "files": files}, indent=2), encoding="utf-8")
    if as_json:
        out.print_json(json.dumps({"trace": str(trace), "start": result.start_iso, "summary": summary, "files": files}))
        return
    table = Table(title=f"{trace.name} from {result.start_iso}" + (f" x{scale:g}" if scale != 1.0 else ""), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for k, v in summary_rows(result.summary):
        style = "red" if k == "minutes over SLO" and result.summary.minutes_over_slo else None
        table.add_row(k, v, style=style)
    out.print(table)
    out.print(f"chart: {png}  page: {page}  timeline: {timeline}")


def _ints(text: str, flag: str, minimum: int) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadInput(f"{flag} {text!r} must be whole numbers separated by commas, e.g. 2,4,8") from None
    if not values or min(values) < minimum:
        raise BadInput(f"{flag} {text!r}: give one or more values >= {minimum}, separated by commas")
    return values


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadInput(f"{flag} {text!r} must be numbers separated by commas, e.g. 0.6,0.8") from None
    if not values or min(values) <= 0:
        raise BadInput(f"{flag} {text!r}: give one or more fractions > 0, separated by commas")
    return values


@scale_app.command()
@_clean_errors
def recommend(
    trace: TraceOpt,
    config: ConfigOpt,
    scale: ScaleOpt = 1.0,
    start: FromOpt = None,
    end: ToOpt = None,
    slo_budget: Annotated[int, typer.Option("--slo-budget", help="Minutes over SLO you accept (0 = none).")] = 0,
    jobs: Annotated[int | None, typer.Option("--jobs", min=1, help="Worker processes (default: one per CPU).")] = None,
    min_replicas: Annotated[str | None, typer.Option("--min-replicas", help="Values to try, e.g. 2,4,8 (default: 1,2,3,4,6,8 and the config's).")] = None,
    targets: Annotated[str | None, typer.Option("--targets", help="Target per pod as fractions of capacity_rps, e.g. 0.6,0.8.")] = None,
    windows: Annotated[str | None, typer.Option("--windows", help="Scale-down stabilization windows in seconds, e.g. 60,300.")] = None,
    headroom: Annotated[str | None, typer.Option("--headroom", help="Overprovisioning pause pods, e.g. 0,2,4.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sweep min replicas, target per pod, scale-down window and node headroom; print the cheapest that holds the SLO."""
    from shiftover.scaling.recommend import Grid
    from shiftover.scaling.recommend import recommend as sweep

    tr, cfg = _load(trace, config, scale, start, end)
    default = Grid.default(cfg)
    grid = Grid(
        min_replicas=_ints(min_replicas, "--min-replicas", 1) if min_replicas else default.min_replicas,
        target_fractions=_floats(targets, "--targets") if targets else default.target_fractions,
        scale_down_windows=_ints(windows, "--windows", 0) if windows else default.scale_down_windows,
        headroom_pods=_ints(headroom, "--headroom", 0) if headroom else default.headroom_pods,
    )
    result = sweep(tr, cfg, grid=grid, slo_budget=slo_budget, jobs=jobs)
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    table = Table(
        title=f"{result.evaluated} configurations in {result.seconds:.1f} s ({result.jobs} processes)",
        box=box.SIMPLE_HEAD,
        caption="min = min replicas; target = per pod; window = scale-down stabilization; "
        "headroom = overprovisioning pods; over SLO in minutes",
    )
    for col in ("", "min", "target", "window", "headroom", "over SLO", "node-h", "nodes"):
        table.add_column(col, justify="right" if col else "left", no_wrap=True)

    def add(label: str, c: Any, style: str | None = None) -> None:
        table.add_row(
            label, str(c.min_replicas), f"{c.target_per_pod:g}", f"{c.scale_down_window}s", str(c.headroom_pods),
            str(c.minutes_over_slo), f"{c.node_hours:.1f}", str(c.peak_nodes), style=style,
        )

    add("current", result.current)
    if result.best is not None:
        add("best", result.best, style="bold green")
    for c in result.frontier:
        add("frontier", c, style="dim")
    out.print(table)
    if result.best is None:
        out.print(
            f"[yellow]no configuration stays within {result.slo_budget} minute(s) over SLO[/]: "
            "raise max_replicas or max_nodes, add headroom, or accept a --slo-budget (see the frontier)"
        )


@scale_app.command()
@_clean_errors
def manifests(
    config: ConfigOpt,
    flavor: Annotated[str, typer.Option("--flavor", help="datadog (HPA + DatadogMetric) or keda (ScaledObject).")] = "datadog",
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace of the workloads.")] = "default",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the YAML here instead of stdout.")] = None,
) -> None:
    """Write the HPA (autoscaling/v2) and DatadogMetric, or KEDA ScaledObject, manifests; validated."""
    from shiftover.scaling.config import load_config, workloads
    from shiftover.scaling.manifests import render_manifests, to_yaml, validate_manifests

    if flavor not in ("datadog", "keda"):
        raise BadInput(f"unknown --flavor {flavor!r}", hint="known: datadog, keda")
    cfg = load_config(config)
    web, worker = workloads(cfg)
    docs = render_manifests(web, worker, flavor="datadog" if flavor == "datadog" else "keda", namespace=namespace)
    validate_manifests(docs)
    text = to_yaml(docs)
    if out_file is None:
        typer.echo(text, nl=False)
        return
    try:
        out_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {out_file}: {exc.strerror or exc}") from None
    out.print(f"wrote {len(docs)} manifests to {out_file}")


__all__ = ["scale_app"]
