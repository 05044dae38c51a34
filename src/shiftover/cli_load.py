"""``shiftover load``: load-test one URL (or a locustfile) at rising arrival rates. Parse, call, print.

The work is in :mod:`shiftover.loadtest`: ``schedule`` (the ``--rate`` grammar),
``runner`` (the Locust processes), ``results`` (verdicts, knee, capacity, the
``--json`` document), ``watch`` (the plan's gates at every step) and ``report``
(the HTML page). This module only wires them and prints: the live progress on
stderr, the per-step table and the knee on stdout (or the JSON document with
``--json``), and ``load.json`` + ``report.html`` under ``--out``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from shiftover.errors import BadInput

out = Console(emoji=False)  # ":100:" stays text (rich would draw an emoji in a pasted hint)
err = Console(stderr=True, emoji=False)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(flag: str, value: str | None) -> float | None:
    from shiftover.spec import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(float(value) if value.strip().replace(".", "", 1).isdigit() else value)
    except ValueError as e:
        raise BadInput(f"{flag} {value!r}: {e}", hint=f"e.g. {flag} 30s or {flag} 10s") from None


def _share(flag: str, value: str) -> float:
    """``30%`` or ``0.3`` -> 0.3 (the range is the caller's to check)."""
    text = value.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise BadInput(f"{flag} {value!r} is not a share", hint=f"e.g. {flag} 30% (or 0.3)") from None


def _workers(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise BadInput(f"--workers {value!r} is not a number", hint="--workers 2, or --workers auto (one per core)") from None
    if not 0 <= n <= 256:
        raise BadInput(f"--workers {n} is out of range", hint="0 (one process, the default) to 256, or --workers auto")
    return n


class _Progress:
    """The live line on stderr: step, target, achieved rate, p99, time left in the step.
    Rich's status on a terminal; one line per finished step otherwise."""

    def __init__(self, total_steps: int, *, quiet: bool, master: bool = False) -> None:
        self.total = total_steps
        self.quiet = quiet
        self.master = master  # workers started elsewhere: say how (local --workers start by themselves)
        self.live = err.is_terminal and not quiet
        self._status: Any = None
        self._last: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self.live:
            self._status = err.status("starting Locust ...")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def event(self, e: dict[str, Any], watch_row: dict[str, Any] | None = None) -> None:
        kind = e.get("event")
        if kind == "listening" and not self.quiet and self.master:
            err.print(f"master listening on {e['host']}:{e['port']}: waiting for {e['expect_workers']} "
                      f"worker(s): shiftover load --worker --master-host {e.get('advertise_host', e['host'])} --master-port {e['port']}",
                      highlight=False, soft_wrap=True)
        elif kind == "started" and not self.quiet:
            who = f"{e['workers']} worker process(es)" if e.get("workers") else "one process"
            err.print(f"Locust started: {e['users']} users on {who}", highlight=False)
        elif kind == "progress":
            self._last = e
            if self._status is not None:
                self._status.update(self._line(e) + f", {e['elapsed']:g} s in")
        if kind == "step_end" and not self.quiet and not self.live and self._last.get("step") == e["step"]:
            err.print(self._line(self._last) + ("" if e.get("complete") else " (stopped)"), highlight=False)
        if kind == "step_end" and not self.quiet and watch_row is not None:
            gates = ", ".join(f"{g['name']} {g['verdict']}" for g in watch_row.get("gates", ()))
            queries = ", ".join(f"{q['name']}={q['value'] if q.get('error') is None else 'error'}"
                                for q in watch_row.get("queries", ()))
            err.print(f"step {e['step'] + 1} watch: {'; '.join(x for x in (gates, queries) if x)}",
                      highlight=False, soft_wrap=True)

    def _line(self, e: dict[str, Any]) -> str:
        p99 = "-" if e.get("p99_ms") is None else f"{e['p99_ms']:g} ms"
        dropped = f", {e['dropped']} dropped" if e.get("dropped") else ""
        return (f"step {e['step'] + 1}/{self.total} (so far): target {e['target_rate']:g} req/s, "
                f"achieved {e['rate']:g} req/s, p99 {p99}, {e.get('failures', 0)} failed{dropped}")


def _table(columns: list[str], rows: list[list[str]], styles: list[str | None]) -> Table:
    """Compact, to fit 80 columns in a CI log or a pipe: each column exactly as wide as its
    widest cell or header word (headers wrap on their words: the units are in them), two
    spaces between columns; a cell too wide for the screen is folded, never cut ('…')."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1),
                  collapse_padding=True)
    for i, c in enumerate(columns):
        left = c == "verdict" or c.startswith("gate ")
        width = max([len(w) for w in c.split()] + [len(r[i]) for r in rows])
        table.add_column(c, justify="left" if left else "right", overflow="fold", width=width)
    for r, style in zip(rows, styles, strict=True):
        table.add_row(*r, style=style)
    return table


def _tables(columns: list[str], rows: list[list[str]]) -> list[Table]:
    """The per-step table, and the --watch columns as a second table keyed by step (so
    the figures fit 80 columns however many gates and queries are watched)."""
    from shiftover.loadtest.results import COLUMNS

    n = len(COLUMNS)
    verdict = columns.index("verdict")
    styles = [None if r[verdict].startswith("pass") else "yellow" for r in rows]
    tables = [_table(columns[:n], [r[:n] for r in rows], styles)]
    if len(columns) > n:
        tables.append(_table(["step", *columns[n:]], [[r[0], *r[n:]] for r in rows], styles))
    return tables


def load(
    url: Annotated[str | None, typer.Argument(help="The URL to load, e.g. http://127.0.0.1:8080/api/items. "
                                              "With --locustfile: the host (overrides the classes' host).",
                                              show_default=False)] = None,
    rate: Annotated[str | None, typer.Option("--rate", help="Requests per second (not users): 200 (constant, with --duration), "
                                             "50:500:50 (stepped, with --step), 50:500 (ramp over --duration), 50,100,200 (list, with --step).",
                                             show_default=False)] = None,
    step: Annotated[str | None, typer.Option("--step", help="Length of each step, e.g. 30s.", show_default=False)] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="Length of a constant or ramp schedule, e.g. 5m.", show_default=False)] = None,
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method for the URL.")] = "GET",
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="'Name: value', repeatable. "
                                                     "Values of auth/token/key/cookie headers are redacted in every output.",
                                                     show_default=False)] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Request body, or @file.", show_default=False)] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify the target's TLS certificate (a staging host's self-signed one).")] = False,
    locustfile: Annotated[Path | None, typer.Option("--locustfile", "-f", help="Your own locustfile: its User classes' tasks run "
                                                    "on the arrival schedule (one task per arrival).", show_default=False)] = None,
    user_class: Annotated[list[str] | None, typer.Option("--user-class", help="Only these User classes of the locustfile (repeatable).",
                                                         show_default=False)] = None,
    slo_p99: Annotated[str, typer.Option("--slo-p99", help="A step passes when its p99 is within this ...")] = "250ms",
    max_errors: Annotated[str, typer.Option("--max-errors", help="... and its error ratio within this (1% or 0.01).")] = "1%",
    pods: Annotated[int | None, typer.Option("--pods", help="Pods behind the target during the test: gives capacity per pod "
                                             "(web.capacity_rps in load.json, read by shiftover scale --capacity-from).",
                                             show_default=False)] = None,
    peak: Annotated[float | None, typer.Option("--peak", help="Peak production req/s: prints the pods needed (needs --pods).",
                                               show_default=False)] = None,
    headroom: Annotated[str, typer.Option("--headroom", help="Share of each pod's capacity kept free when sizing for --peak: 30% or 0.3.")] = "30%",
    watch: Annotated[Path | None, typer.Option("--watch", help="A plan: its normal-state gates are evaluated at the end of every step.",
                                               show_default=False)] = None,
    watch_env: Annotated[str | None, typer.Option("--env", help="The --watch plan's environment (a name under its environments:).",
                                                  show_default=False)] = None,
    watch_query: Annotated[list[str] | None, typer.Option("--watch-query", help="NAME=PROMQL evaluated at every step, e.g. "
                                                          "'replicas=sum(kube_deployment_status_replicas{deployment=\"web\"})' (repeatable).",
                                                          show_default=False)] = None,
    watch_prometheus: Annotated[str | None, typer.Option("--watch-prometheus", help="Prometheus for --watch-query (default: the plan's).",
                                                         show_default=False)] = None,
    workers: Annotated[str, typer.Option("--workers", help="Local Locust worker processes (0: one process; auto: one per core).")] = "0",
    users: Annotated[int | None, typer.Option("--users", help="Locust users = requests in flight at most (default: peak rate x 2 x SLO + 10).",
                                              show_default=False)] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Request timeout; an arrival not sent within it is dropped (a failure).")] = "10s",
    master: Annotated[bool, typer.Option("--master", help="Run as Locust master for workers on other machines (with --expect-workers).")] = False,
    expect_workers: Annotated[int, typer.Option("--expect-workers", help="With --master: workers to wait for.")] = 1,
    master_bind_host: Annotated[str, typer.Option("--master-bind-host", help="With --master: address to listen on.")] = "0.0.0.0",
    master_port: Annotated[int, typer.Option("--master-port", help="Locust master port (--master, --worker).")] = 5557,
    worker_wait: Annotated[str, typer.Option("--worker-wait", help="How long a --master waits for its workers, and a --worker for its master.")] = "60s",
    worker: Annotated[bool, typer.Option("--worker", help="Run as a Locust worker of a --master elsewhere (with --master-host).")] = False,
    master_host: Annotated[str | None, typer.Option("--master-host", help="With --worker: the master's address.", show_default=False)] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for load.json and report.html.")] = Path("load-report"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the load.json document instead of the table.")] = False,
) -> None:
    """Load-test at rising arrival rates (open model, on Locust); print latency per step, the knee and capacity per pod."""
    from shiftover.loadtest.runner import run_worker

    t = _duration("--timeout", timeout)
    assert t is not None
    if t <= 0:
        raise BadInput(f"--timeout {timeout!r} must be more than 0", hint="e.g. --timeout 10s")
    if worker and master:
        raise BadInput("--worker and --master together: a process is one or the other",
                       hint="run the master with the URL and --rate, and each worker with "
                            "shiftover load --worker --master-host MASTER_ADDRESS")
    wait = _duration("--worker-wait", worker_wait) or 60.0
    if worker:
        if master_host is None:
            raise BadInput("--worker needs --master-host", hint="e.g. shiftover load --worker --master-host 10.0.0.5")
        if rate is not None or (url is not None and locustfile is None):
            raise BadInput("a --worker takes its target and schedule from the master",
                           hint=f"shiftover load --worker --master-host {master_host}" + (f" -f {locustfile}" if locustfile else ""))
        raise typer.Exit(run_worker(master_host, master_port, locustfile=locustfile, timeout=t, worker_wait=wait))
    _run(url=url, rate=rate, step=step, duration=duration, method=method, header=header or [], data=data, insecure=insecure,
         locustfile=locustfile, user_class=user_class or [], slo_p99=slo_p99, max_errors=max_errors, pods=pods,
         peak=peak, headroom=headroom, watch=watch, watch_env=watch_env, watch_query=watch_query or [],
         watch_prometheus=watch_prometheus, workers=workers, users=users, timeout=t, master=master, expect_workers=expect_workers,
         master_bind_host=master_bind_host, master_port=master_port, out_dir=out_dir, as_json=as_json,
         worker_wait=wait)


def _run(*, url: str | None, rate: str | None, step: str | None, duration: str | None, method: str,
         header: list[str], data: str | None, insecure: bool, locustfile: Path | None, user_class: list[str], slo_p99: str,
         max_errors: str, pods: int | None, peak: float | None, headroom: str, watch: Path | None,
         watch_env: str | None, watch_query: list[str], watch_prometheus: str | None, workers: str, users: int | None, timeout: float,
         master: bool, expect_workers: int, master_bind_host: str, master_port: int, out_dir: Path,
         as_json: bool, worker_wait: float) -> None:
    from shiftover.loadtest import results as R
    from shiftover.loadtest.runner import (
        Interrupted,
        LoadJob,
        LoadRun,
        check_reachable,
        default_users,
        parse_target,
        probe,
    )
    from shiftover.loadtest.schedule import parse_schedule

    # --- every input checked before anything starts ---------------------------------
    if rate is None:
        raise BadInput("--rate is required", hint="e.g. --rate 50:500:50 --step 30s (requests per second)")
    schedule = parse_schedule(rate, step=step, duration=duration)
    if slo_p99.strip().replace(".", "", 1).isdigit():
        raise BadInput(f"--slo-p99 {slo_p99!r} has no unit", hint=f"--slo-p99 {slo_p99}ms (or {slo_p99}s)")
    slo = _duration("--slo-p99", slo_p99)
    assert slo is not None
    if slo > 60:
        raise BadInput(f"--slo-p99 {slo_p99} is over a minute: a latency SLO, not a timeout",
                       hint="e.g. --slo-p99 250ms")
    errors_ratio = R.parse_error_ratio(max_errors)
    R.judge_steps([], slo_p99_ms=slo * 1000, max_errors=errors_ratio)  # checks the criteria
    head = _share("--headroom", headroom)
    R.capacity(None, pods=pods, peak=peak, headroom=head)  # checks --pods/--peak/--headroom
    if peak is not None and pods is None:
        raise BadInput("--peak needs --pods (the pods behind the target during the test)",
                       hint=f"e.g. --pods 2 --peak {peak:g}")
    n_workers = _workers(workers)
    if users is not None and users < 1:
        raise BadInput(f"--users {users} must be 1 or more", hint="or leave it out")
    if master and expect_workers < 1:
        raise BadInput("--expect-workers must be 1 or more", hint="e.g. --master --expect-workers 4")
    if master and n_workers:
        raise BadInput("--master waits for workers started elsewhere; --workers starts local ones",
                       hint="use one of them")
    if not 1 <= master_port <= 65535:
        raise BadInput(f"--master-port {master_port} is not a port", hint="e.g. --master-port 5557")
    target = parse_target(url, method=method, headers=header, body=data, locustfile=locustfile,
                          user_classes=user_class, insecure=insecure)
    watcher = None
    if watch is not None or watch_query:
        from shiftover.cli import _cmds
        from shiftover.cli import _load as load_plan  # the plan's secrets join the CLI's redactor
        from shiftover.loadtest.watch import Watch

        if watch_env is not None and watch is None:
            raise BadInput("--env names an environment of the --watch plan, and there is no --watch",
                           hint="add --watch PLAN, or leave --env out")
        watcher = Watch.from_plan(None if watch is None else load_plan(watch, watch_env),
                                  watch_query, watch_prometheus)
    if target.base_url is not None:
        check_reachable(target.base_url, verify_tls=not insecure)
        warning = probe(target)
        if warning:
            err.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    if watcher is not None:  # what cannot be evaluated at all would hold every step's row blank
        first = watcher.observe()
        broken = [f"gate {g.name}: {g.reason}" for g in first.gates if g.error]
        broken += [f"query {q.name}: {q.error}" for q in first.queries if q.error]
        if broken:
            raise BadInput("--watch cannot evaluate: " + "; ".join(broken),
                           hint="fix the plan or the query first"
                                + (f"; {_cmds(watch, None, watch_env)('validate')} shows each gate"
                                   if watch else ""))
        if first.router_error:
            err.print(f"warning: --watch cannot read the plan's router ({first.router_error}); "
                      "the gates are still evaluated", highlight=False, soft_wrap=True)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create --out directory {out_dir}: {exc.strerror or exc}") from None

    job = LoadJob(target=target, schedule=schedule,
                  users=users or default_users(schedule.peak_rate, slo), timeout=timeout,
                  workers=n_workers, master=master, expect_workers=expect_workers,
                  bind_host=master_bind_host if master else "127.0.0.1",
                  bind_port=master_port, worker_wait=worker_wait)
    if not as_json:
        out.print(f"load: {target.describe()} — {schedule.summary()}", highlight=False, soft_wrap=True)
        if watcher is not None:
            out.print(f"watch: {watcher.describe()}", highlight=False, soft_wrap=True)
    watch_rows: list[Any] = []
    started = _now()
    progress = _Progress(len(schedule.steps), quiet=False, master=master)

    def on_event(e: dict[str, Any]) -> None:
        row = None
        if watcher is not None and e.get("event") == "started":
            watcher.observe()  # a baseline: counters' gates judge each step from here
        if watcher is not None and e.get("event") == "step_end":
            watch_rows.append(watcher.observe(step=int(e["step"])))
            row = watch_rows[-1].to_dict()
        progress.event(e, row)

    interrupted = False
    try:
        with progress:
            result = LoadRun(job, on_event=on_event).run()
    except Interrupted as exc:
        interrupted = True
        if exc.result is None:
            err.print("load test interrupted before any step was measured", highlight=False)
            raise typer.Exit(130) from None
        result = exc.result
    figures = [R.StepFigures.from_dict(s) for s in result["steps"]]
    verdicts = R.judge_steps(figures, slo_p99_ms=slo * 1000, max_errors=errors_ratio)
    knee = R.find_knee(verdicts)
    cap = R.capacity(knee, pods=pods, peak=peak, headroom=head)
    doc = R.load_document(
        target=target.to_public(), schedule=schedule, verdicts=verdicts, knee=knee, capacity=cap,
        criteria={"slo_p99_ms": slo * 1000, "max_errors": errors_ratio, "rate_tolerance": 0.05},
        watch=[r.to_dict() for r in watch_rows],
        generator={"workers": result.get("workers", 0), "users": result.get("users"),
                   "workers_missing": result.get("workers_missing", 0)},
        stopped_early=interrupted or bool(result.get("stopped_early")), started=started, ended=_now())
    doc_path = out_dir / "load.json"
    doc_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    files = {"json": str(doc_path)}
    try:
        from shiftover.loadtest.report import render_load_html

        files["html"] = str(render_load_html(doc, out_dir / "report.html"))
    except ImportError:  # pragma: no cover - while the report is built
        pass
    doc_out = {**doc, "files": files}
    if as_json:
        typer.echo(json.dumps(doc_out, indent=2))
    else:
        columns, rows = R.table_rows(doc)
        for table in _tables(columns, rows):
            out.print(table)
            out.print()
        for line in R.knee_text(doc):
            out.print(line, highlight=False, soft_wrap=True)
        if watch_rows:
            from shiftover.loadtest.watch import watch_text

            for line in watch_text(watch_rows, gates=False):
                out.print(line, highlight=False, soft_wrap=True)
        out.print(f"files: {files['json']}" + (f"  {files['html']}" if "html" in files else ""), highlight=False)
    if interrupted:
        raise typer.Exit(130)


__all__ = ["load"]
