"""``shiftover scale ...``: the autoscaling simulator's commands. Parse, call, print.

Mounted into the main CLI as ``shiftover scale``; usable (and tested) on its own
as ``scale_app``. Every :class:`~shiftover.errors.ShiftoverError` is printed as
one clean message and exits with its code (2 for bad input), without a
traceback, whether or not the main CLI's handler is around it.
"""

from __future__ import annotations

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
out = Console(emoji=False)  # ":100:" stays text (rich would draw an emoji in a pasted hint)
err = Console(stderr=True, emoji=False)

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
CapacityFromOpt = Annotated[Path | None, typer.Option("--capacity-from", help="A shiftover load --json document: its measured web.capacity_rps (and slo.latency, slo.objective) replace the config's.", show_default=False)]


def _load(
    trace: Path, config: Path, scale: float, start: str | None, end: str | None, capacity_from: Path | None = None,
) -> tuple[Any, Any]:
    from shiftover.scaling.config import load_config
    from shiftover.scaling.trace import load_trace, parse_window

    t0, t1 = parse_window(start, end)  # a reversed window fails before anything is read
    cfg = load_config(config)
    if capacity_from is not None:
        cfg = _with_capacity_from(cfg, capacity_from)
    tr = load_trace(trace, scale=scale, start=t0, end=t1)
    # a window reaching past the trace is cut to it: say so rather than replay less than asked
    if (t0 is not None and tr.start > t0) or (t1 is not None and tr.end < t1):
        err.print(
            f"note: {trace.name} covers only {_iso(tr.start)} to {_iso(tr.end)} of the window "
            f"{_iso(t0) if t0 else 'start'} to {_iso(t1) if t1 else 'end'}; replaying that part",
            highlight=False, soft_wrap=True,
        )
    return tr, cfg


def _with_capacity_from(cfg: Any, path: Path) -> Any:
    """The config with the load test's measured values; says on stderr which were taken."""
    from shiftover.scaling.config import read_capacity_from, with_capacity

    measured = read_capacity_from(path)
    cfg, taken = with_capacity(cfg, measured)
    err.print(f"from {path}: {', '.join(taken)}", markup=False, highlight=False, soft_wrap=True)
    for note in measured.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    return cfg


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


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
    capacity_from: CapacityFromOpt = None,
) -> None:
    """Replay a trace; print minutes over SLO, peaks and node-hours; write a chart."""
    from shiftover.scaling.chart import render_html, render_png, runs_text, summary_rows, warnings
    from shiftover.scaling.sim import simulate as run_simulation

    tr, cfg = _load(trace, config, scale, start, end, capacity_from)
    result = run_simulation(tr, cfg)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create --out directory {out_dir}: {exc.strerror or exc}") from None
    png = render_png(result, out_dir / "chart.png")
    page = render_html(result, out_dir / "chart.html", png=png)
    timeline = result.timeline.write_csv(out_dir / "timeline.csv", result.start_iso)
    summary = result.summary.to_dict()
    files = {"png": str(png), "html": str(page), "timeline": str(timeline), "summary": str(out_dir / "summary.json")}
    (out_dir / "summary.json").write_text(json.dumps({"summary": summary, "files": files}, indent=2), encoding="utf-8")
    if as_json:
        data: dict[str, Any] = {"trace": str(trace), "start": result.start_iso, "summary": summary, "files": files}
        if capacity_from is not None:
            data["capacity_from"] = {"file": str(capacity_from), "web": {"capacity_rps": cfg.web.capacity_rps},
                                     "slo": {"latency": cfg.slo.latency, "objective": cfg.slo.objective}}
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"{trace.name} from {result.start_iso}" + (f" x{scale:g}" if scale != 1.0 else ""), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for k, v in summary_rows(result.summary):
        hot = (k == "minutes over SLO" and result.summary.minutes_over_slo) or k.endswith("at max_replicas")
        table.add_row(k, v, style="red" if hot else None)
    out.print(table)
    if result.summary.minutes_over_slo:
        out.print(
            f"over SLO (UTC): {runs_text(result.summary)}; every minute in {files['summary']} and {timeline}",
            highlight=False,
            soft_wrap=True,
        )
    for line in warnings(result.summary):
        out.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    out.print(f"chart: {png}  page: {page}  timeline: {timeline}")


def _numbers(text: str, flag: str, kind: type[int] | type[float]) -> tuple[Any, ...]:
    example = "2,4,8" if kind is int else "30,35,40"
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise BadInput(f"{flag} {text!r} must be {what} separated by commas, e.g. {example}") from None
    if not values:
        raise BadInput(f"{flag} {text!r}: give one or more values separated by commas, e.g. {example}")
    return values


def _recommend_command(
    trace: Path, config: Path, scale: float, start: str | None, end: str | None, slo_budget: int,
    jobs: int | None, grid: Any, apply_to: Path | None, write: bool, capacity_from: Path | None = None,
) -> str:
    """The ``recommend`` command line for ``grid``, to paste (every axis spelled out, targets in requests/s)."""
    import shlex

    from shiftover.scaling.recommend import format_value

    argv = ["shiftover", "scale", "recommend", "--trace", str(trace), "--config", str(config)]
    if capacity_from is not None:
        argv += ["--capacity-from", str(capacity_from)]
    if scale != 1.0:
        argv += ["--scale", repr(scale).removesuffix(".0")]  # exact: :g would paste 1.23457e+06 for 1234567
    argv += [*(["--from", start] if start else []), *(["--to", end] if end else [])]
    if slo_budget:
        argv += ["--slo-budget", str(slo_budget)]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    for flag, values in (("--min-replicas", grid.min_replicas), ("--targets", grid.targets),
                         ("--windows", grid.scale_down_windows), ("--headroom", grid.headroom_pods)):
        argv += [flag, ",".join(format_value(v) for v in values)]
    if write:
        argv.append("--write")
    elif apply_to is not None:
        argv += ["--apply-to", str(apply_to)]
    return " ".join(shlex.quote(a) for a in argv)


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
    min_replicas: Annotated[str | None, typer.Option("--min-replicas", help="Min replicas to try, 1..web.hpa.max_replicas, e.g. 2,4,8 (default: 1,2,3,4,6,8).")] = None,
    targets: Annotated[str | None, typer.Option("--targets", help="Targets per pod to try, in requests/s like web.hpa.target_per_pod, e.g. 30,35,40.")] = None,
    target_fractions: Annotated[str | None, typer.Option("--target-fractions", help="Targets per pod to try as fractions of web.capacity_rps, e.g. 0.6,0.8 (default: 0.5,0.6,0.7,0.75,0.8,0.9,1); with --targets, both are tried.")] = None,
    windows: Annotated[str | None, typer.Option("--windows", help="Scale-down stabilization windows to try, 0..3600 s, e.g. 60,300 (default: 0,60,120,300,600).")] = None,
    headroom: Annotated[str | None, typer.Option("--headroom", help="Overprovisioning pause pods to try, e.g. 0,2,4 (default: 0,1,2,4,8).")] = None,
    apply_to: Annotated[Path | None, typer.Option("--apply-to", help="Write the --config file with the best setting to this file (it may be the --config file itself); comments and layout are kept.", show_default=False)] = None,
    write: Annotated[bool, typer.Option("--write", help="Write the best setting into the --config file itself (same as --apply-to CONFIG).")] = False,
    as_json: JsonOpt = False,
    capacity_from: CapacityFromOpt = None,
) -> None:
    """Sweep min replicas, target per pod, scale-down window and node headroom; print the cheapest that holds the SLO.

    The config's own setting is always one of the configurations tried. Progress goes to stderr when
    stderr is a terminal (with --json too: stdout stays JSON).
    """
    import shlex

    from shiftover.scaling.apply import apply_setting, check_target
    from shiftover.scaling.recommend import Grid, targets_from_fractions
    from shiftover.scaling.recommend import recommend as sweep

    if write and apply_to is not None and apply_to.resolve() != config.resolve():
        raise BadInput(
            f"--write writes {config}, --apply-to {apply_to}: choose one",
            hint=f"--apply-to {apply_to} writes a copy of {config} with the best setting; --write changes {config} itself",
        )
    dest = config if write else apply_to
    if dest is not None:
        check_target(dest)
    tr, cfg = _load(trace, config, scale, start, end, capacity_from)
    default = Grid.default(cfg)
    tried: tuple[float, ...] = ()
    if targets:
        tried += _numbers(targets, "--targets", float)
        low = [t for t in tried if t < 0.1 * cfg.web.capacity_rps]
        if low and min(tried) > 0:
            err.print(
                f"note: --targets are requests/s per pod (the unit of web.hpa.target_per_pod); "
                f"{', '.join(f'{t:g}' for t in low)} is under 10 % of web.capacity_rps ({cfg.web.capacity_rps:g}). "
                "For fractions of capacity_rps use --target-fractions.",
                markup=False, highlight=False, soft_wrap=True,
            )
    if target_fractions:
        tried += targets_from_fractions(_numbers(target_fractions, "--target-fractions", float), cfg)
    grid = Grid(
        min_replicas=_numbers(min_replicas, "--min-replicas", int) if min_replicas else default.min_replicas,
        targets=tried or default.targets,
        scale_down_windows=_numbers(windows, "--windows", int) if windows else default.scale_down_windows,
        headroom_pods=_numbers(headroom, "--headroom", int) if headroom else default.headroom_pods,
    )
    if err.is_terminal:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("configurations"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("sweep", total=None)
            result = sweep(tr, cfg, grid=grid, slo_budget=slo_budget, jobs=jobs,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    else:
        result = sweep(tr, cfg, grid=grid, slo_budget=slo_budget, jobs=jobs)

    def command(g: Any, budget: int = slo_budget) -> str:
        return _recommend_command(trace, config, scale, start, end, budget, jobs, g, apply_to, write, capacity_from)

    applied = apply_setting(config, result.best.setting, dest) if dest is not None and result.best else None
    if applied is not None and capacity_from is not None:
        err.print(
            f"note: {applied.path} keeps its own web.capacity_rps and slo; the setting was chosen for the measured "
            f"web.capacity_rps {cfg.web.capacity_rps:g} from {capacity_from}: write that value into it, "
            "or keep passing --capacity-from",
            markup=False, highlight=False, soft_wrap=True,
        )
    wider = command(result.wider) if result.wider is not None else None
    closest = result.closest
    refusal: BadInput | None = None
    if dest is not None and result.best is None:
        least = closest.minutes_over_slo if closest else 0
        refusal = BadInput(
            f"nothing written to {dest}: no configuration stays within {result.slo_budget} minute(s) over SLO",
            hint=f"accept the fewest found ({least}): {command(result.grid, least)}",
        )
    if as_json:
        data = result.to_dict()
        data["applied"] = applied.to_dict() if applied else None
        data["wider_grid_command"] = wider
        out.print_json(json.dumps(data))
        if refusal is not None:
            raise refusal
        return

    table = Table(
        title=f"{result.evaluated:,} configuration{'s' if result.evaluated != 1 else ''}"
        + (f" ({result.stopped:,} stopped early: a finished setting was cheaper with no more minutes over SLO)" if result.stopped else "")
        + f" in {result.seconds:.1f} s ({result.jobs} process{'es' if result.jobs != 1 else ''})",
        box=box.SIMPLE_HEAD,
        caption="min = min replicas; target = per pod (requests/s); window = scale-down stabilization; "
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

    def say(text: str) -> None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    names = {"min_replicas": "min replicas", "targets": "target per pod", "scale_down_windows": "window",
             "headroom_pods": "headroom"}
    if result.added:
        say("the config's own setting was added to the grid: "
            + "; ".join(f"{names[k]} {', '.join(f'{v:g}' for v in vs)}" for k, vs in result.added.items()))
    if result.best is None:
        out.print(
            f"[yellow]no configuration stays within {result.slo_budget} minute(s) over SLO[/]: "
            "raise max_replicas or max_nodes, add headroom, or accept a --slo-budget (see the frontier)"
        )
    elif result.best.setting == result.current.setting:
        say("the current setting is the cheapest that holds the SLO on this grid")
    if result.edges:
        who = "the best" if result.best is not None else f"the closest ({closest.minutes_over_slo if closest else 0} minutes over SLO)"
        say(f"{who} is on the edge of the grid:")
        for e in result.edges:
            say(f"  - {e.message}")
        say(f"try a wider grid: {wider}")
    if applied is not None:
        if not applied.written:
            say(f"{applied.path} already holds the best setting: nothing written")
        else:
            say(f"wrote {applied.path}" + (":" if applied.changes else f" (the setting of {config}, unchanged)"))
            for ch in applied.changes:
                say(f"  {ch}")
            if any(ch.key == "controller.downscale_stabilization" for ch in applied.changes):
                say("  note: controller.downscale_stabilization is kube-controller-manager's "
                    "--horizontal-pod-autoscaler-downscale-stabilization: it applies to every HPA of the cluster "
                    "and is not part of the manifests (managed control planes such as EKS do not let you set it); "
                    "to set the window on this HPA alone, give web.hpa a behavior with scaleDown.stabilizationWindowSeconds")
            say(f"next: shiftover scale manifests --config {shlex.quote(str(applied.path))}")
    if refusal is not None:
        raise refusal


@scale_app.command()
@_clean_errors
def manifests(
    config: ConfigOpt,
    flavor: Annotated[str, typer.Option("--flavor", help="datadog (HPA + DatadogMetric) or keda (ScaledObject + TriggerAuthentication).")] = "datadog",
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace of the workloads.")] = "default",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the YAML here instead of stdout.")] = None,
    secret_name: Annotated[str, typer.Option("--secret-name", help="keda: the Secret (in --namespace) holding the Datadog keys; never written here.")] = "datadog-secrets",
    api_key_field: Annotated[str, typer.Option("--api-key-field", help="keda: the Secret's key that holds the Datadog API key (its name, not the key).")] = "apiKey",
    app_key_field: Annotated[str, typer.Option("--app-key-field", help="keda: the Secret's key that holds the Datadog APP key (its name, not the key).")] = "appKey",
    site_field: Annotated[str | None, typer.Option("--site-field", help="keda: the Secret's key that holds the Datadog site, e.g. datadogSite (default: none, KEDA uses datadoghq.com).", show_default=False)] = None,
    trigger_auth: Annotated[str, typer.Option("--trigger-auth", help="keda: name of the TriggerAuthentication the triggers use.")] = "keda-trigger-auth-datadog-secret",
    priority_class: Annotated[str, typer.Option("--priority-class", help="PriorityClass of the overprovisioning pods (cluster.overprovisioning.pods > 0).")] = "overprovisioning",
) -> None:
    """Write the HPA (autoscaling/v2) and DatadogMetric, or KEDA ScaledObject and TriggerAuthentication,
    manifests, and the overprovisioning PriorityClass and pause-pod Deployment when the config has headroom; validated."""
    from shiftover.scaling.config import load_config, workloads
    from shiftover.scaling.manifests import (
        DatadogSecret,
        Headroom,
        notes,
        render_manifests,
        to_yaml,
    )

    if flavor not in ("datadog", "keda"):
        raise BadInput(f"unknown --flavor {flavor!r}", hint="known: datadog, keda")
    cfg = load_config(config)
    web, worker = workloads(cfg)
    over = cfg.cluster.overprovisioning
    requests = over.requests or cfg.web.requests
    docs = render_manifests(
        web,
        worker,
        flavor="datadog" if flavor == "datadog" else "keda",
        namespace=namespace,
        keda_auth_name=trigger_auth,
        keda_secret=DatadogSecret(name=secret_name, api_key=api_key_field, app_key=app_key_field, site_key=site_field),
        headroom=Headroom(pods=over.pods, cpu_milli=requests.cpu, memory_mib=requests.memory, priority_class=priority_class),
    )
    text = to_yaml(docs, header=[f"written by shiftover scale manifests from {config} ({flavor}, namespace {namespace})", *notes(docs)])
    if out_file is None:
        typer.echo(text, nl=False)
        return
    try:
        out_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {out_file}: {exc.strerror or exc}") from None
    out.print(f"wrote {len(docs)} manifests to {out_file}")


__all__ = ["scale_app"]
