"""`shiftover demo`: a real cutover on a local stack, end to end.

Everything runs on 127.0.0.1 as child processes, stopped on exit and on Ctrl-C:
two instances of the sample app ("old" = ec2, "new" = eks), HAProxy splitting
between them, Prometheus scraping HAProxy and both apps every second, and Locust
sending steady traffic through HAProxy. Then a real plan runs with compressed
times (1 s interval, a few seconds of bake per step) through the same engine,
router and providers as `shiftover run`.

Scenarios:
  healthy  the new app is fine: the run promotes to 100%.
  errors   the new app answers 5% HTTP 500 from the 10% step on: the run must
           roll back to 0% by itself; the summary says which gate failed, with
           what value, how long the rollback took from fault onset to 0%
           confirmed on HAProxy, and how many client requests failed meanwhile.

Both move the service's periodic batch too, as a real cutover must (a cron job
run in both environments runs twice): the old app runs it at start, and at the
5% step two hooks of the plan stop it on old and start it on new (``curl``
against the apps' ``/admin/batch``). The step is the one before the errors
scenario's fault, so that its rollback has something to undo: once HAProxy
confirms 0%, the undos run in reverse order (new's scheduler off, then old's
on) and the batch runs on the old environment only. The summary shows each
hook and undo, and the batch runs counted by each app at the end.
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from shiftover import views
from shiftover.clock import SystemClock
from shiftover.demo.app import SampleAppProcess
from shiftover.demo.haproxy import HAProxyProcess
from shiftover.demo.prometheus import PrometheusProcess
from shiftover.demo.traffic import TrafficProcess, count_failures, count_requests, read_events
from shiftover.engine import events as ev
from shiftover.engine.build import build_runner
from shiftover.engine.decide import Decision, Observation
from shiftover.engine.events import RunState
from shiftover.plan import load_plan
from shiftover.routers import build_router
from shiftover.store import Event, open_store

SCENARIOS = ("healthy", "errors")
FAULT_STEP = 10.0
FAULT_ERROR_RATE = 0.05
BATCH_STEP = 5.0  # the batch moves here: before the fault, so a rollback undoes it
BATCH_HOOKS = ("batch-stop-old", "batch-start-new")

ALERT_RULES: list[dict[str, Any]] = [
    {
        "alert": "AccountingNewEnvLatencyHigh",
        "expr": 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{instance_name="new"}[10s]))) > 0.5',
        "for": "5s",
        "labels": {"service": "accounting", "severity": "page"},
        "annotations": {"summary": "p99 latency of the new environment above 500 ms"},
    }
]


def demo_plan_yaml(
    *, socket: str, prometheus: str, new_app: str, bake: str = "5s", rate: float = 200.0,
    old_app: str | None = None,
) -> str:
    """The plan the demo runs: the README's example, with compressed times.

    The new environment is judged two ways. First against the old one, live: a
    ``compare`` gate counts both servers' requests and errors in HAProxy and
    FAILs as soon as its sequential test finds new failing more often than old
    (at most a 1% chance of a false FAIL over a whole step, however often it
    looks; a FAIL rolls back at once). It passes a step after ``min_requests``
    requests on new: 10 here (2 req/s reach new at the 1% step of 200 req/s),
    a compressed-time figure; production plans keep the default 200. Second on
    its own, as an SLO guard a comparison cannot replace (a fault shared by
    both environments; the 100% step, where old serves nothing): Prometheus'
    error ratio over the last 30 s at most 10%. That guard is for gross breakage (a
    dead new environment reads 100%): at the 1% step 30 s hold about 60 requests,
    and with a service's own errors at 0.5% one unlucky pair of them is 3%, so a
    tight guard on so little traffic rolls healthy runs back (measured:
    docs/benchmarks.md); telling 5% from 0.5% is the comparison's job.

    With ``old_app`` the plan also moves the periodic batch at ``BATCH_STEP``
    (:func:`batch_hooks_yaml`)."""
    min_requests = max(1, min(10, int(rate * 0.01 * 5)))
    hooks = "" if old_app is None else batch_hooks_yaml(old_app=old_app, new_app=new_app)
    return f"""\
# Written by `shiftover demo`: the same shape as a production plan, with
# compressed times (1 s checks, {bake} bake per step).
service: accounting-web
router:
  type: haproxy
  socket: {socket}
  backend: web
  old: ec2
  new: eks
steps: [1, 2, 5, 10, 25, 50, 75, 100]
bake: {bake}
interval: 1s
normal_state:
  - name: new fails more often than old (5xx, refused, timed out; HAProxy stats)
    type: compare
    source:
      type: haproxy_stats
      socket: {socket}
      backend: web
      old: ec2
      new: eks
    alpha: 0.01
    min_requests: {min_requests}
  - name: new environment failed requests (5xx, refused, timed out; Prometheus)
    type: prometheus
    url: {prometheus}
    # the README's query over 30s: a dead or hanging eks counts, not only its own 5xx;
    # an SLO guard for gross breakage (see demo_plan_yaml's docstring)
    query: |
      (
          sum(increase(haproxy_server_http_responses_total{{proxy="web",server="eks",code="5xx"}}[30s]))
        + sum(increase(haproxy_server_connection_errors_total{{proxy="web",server="eks"}}[30s]))
        + sum(increase(haproxy_server_response_errors_total{{proxy="web",server="eks"}}[30s]))
        + sum(increase(haproxy_server_retry_warnings_total{{proxy="web",server="eks"}}[30s]))
        + sum(increase(haproxy_server_redispatch_warnings_total{{proxy="web",server="eks"}}[30s]))
      ) / (
          sum(increase(haproxy_server_http_responses_total{{proxy="web",server="eks"}}[30s]))
        + sum(increase(haproxy_server_connection_errors_total{{proxy="web",server="eks"}}[30s]))
        + sum(increase(haproxy_server_response_errors_total{{proxy="web",server="eks"}}[30s]))
        + sum(increase(haproxy_server_retry_warnings_total{{proxy="web",server="eks"}}[30s]))
        + sum(increase(haproxy_server_redispatch_warnings_total{{proxy="web",server="eks"}}[30s]))
      )
      unless on() (
            max(haproxy_server_status{{proxy="web",server="eks",state=~"DOWN|MAINT|DRAIN|NOLB"}}) == 1
        and on() max(haproxy_server_uweight{{proxy="web",server="eks"}}) > 0
        and on() sum(increase(haproxy_backend_sessions_total{{proxy="web"}}[30s])) > 0
      )
      or on() (
            max(haproxy_server_status{{proxy="web",server="eks",state=~"DOWN|MAINT|DRAIN|NOLB"}}) == 1
        and on() max(haproxy_server_uweight{{proxy="web",server="eks"}}) > 0
        and on() sum(increase(haproxy_backend_sessions_total{{proxy="web"}}[30s])) > 0
      )
    max: 0.1
  - name: dependencies reachable from the new environment
    type: http
    url: {new_app}/health/dependencies
    expect_status: 200
    timeout: 1s
  - name: no firing alerts for the service
    type: prometheus_alerts
    url: {prometheus}
    labels: {{service: accounting}}
failure_limit: 2
on_failure: rollback
{hooks}"""


def batch_hooks_yaml(*, old_app: str, new_app: str, step: float = BATCH_STEP) -> str:
    """The plan's ``hooks:`` that move the batch scheduler from old to new at ``step``:
    stop it on old (undo: start it again), then start it on new (undo: stop it). Real
    commands (curl, fails on an HTTP error), idempotent: switching a scheduler to the
    state it is in does nothing, so a run killed while one ran simply runs it again."""

    def curl(app: str, action: str) -> str:
        return (f"[curl, -fsS, --max-time, '5', -X, POST, "
                f"'{app.rstrip('/')}/admin/batch/{action}']")

    stop_old, start_new = BATCH_HOOKS
    return f"""\
# the periodic batch runs in one environment only: it moves with the traffic, and
# back on rollback (the undos run in reverse order once HAProxy confirms 0%)
hooks:
  - name: {stop_old}
    at: {step:g}
    run: {curl(old_app, "disable")}
    undo: {{run: {curl(old_app, "enable")}}}
    timeout: 10s
    retries: 2
    idempotent: true
  - name: {start_new}
    at: {step:g}
    run: {curl(new_app, "enable")}
    undo: {{run: {curl(new_app, "disable")}}}
    timeout: 10s
    retries: 2
    idempotent: true
"""


def run_demo(
    scenario: str,
    *,
    as_json: bool = False,
    rate: float = 200.0,
    workdir: Path | None = None,
    console: Console | None = None,
    bake: str = "5s",
    inspect: Callable[[DemoStack], None] | None = None,
    background_error_rate: float = 0.0,
) -> dict[str, Any]:
    """Run one scenario; return the summary. ``inspect`` is called with the live
    stack after the run and before teardown (tests read HAProxy's real weights).
    ``background_error_rate``: both apps answer this share of requests with 500
    from the start, drawn at random (seeded) as a real service's own errors are
    (benchmarks: does a gate tell a new environment as good as the old one from
    a worse one?). The fault itself stays counted, as without it."""
    console = console or Console()
    with ExitStack() as stack:
        kept = workdir is not None  # a temp dir (and its journal) is gone when the demo ends
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="shiftover-demo-"))
            )
        workdir.mkdir(parents=True, exist_ok=True)
        return _run(stack, scenario, workdir.resolve(), as_json, rate, console, bake, inspect,
                    background_error_rate, kept=kept)
    raise AssertionError("unreachable")  # pragma: no cover


def _say(console: Console, as_json: bool, text: str) -> None:
    if not as_json:
        console.print(f"[dim]demo:[/] {text}")


@dataclass(frozen=True)
class DemoStack:
    """The live stack, handed to ``inspect`` before teardown."""

    workdir: Path
    haproxy: HAProxyProcess
    prometheus: PrometheusProcess
    old: SampleAppProcess
    new: SampleAppProcess
    plan_path: Path
    state_url: str


def _run(
    stack: ExitStack,
    scenario: str,
    workdir: Path,
    as_json: bool,
    rate: float,
    console: Console,
    bake: str,
    inspect: Callable[[DemoStack], None] | None,
    background_error_rate: float = 0.0,
    *,
    kept: bool = False,
) -> dict[str, Any]:
    _say(console, as_json, f"starting the local stack in {workdir}")
    # the old environment runs the batch: the plan's hooks move it (BATCH_STEP)
    old = stack.enter_context(SampleAppProcess(port=0, name="old", workdir=workdir, batch=True))
    new = stack.enter_context(SampleAppProcess(port=0, name="new", workdir=workdir))
    if background_error_rate:  # a coin, as a real service's own errors are: each run
        # draws its own seeds (runs of a benchmark are independent)
        seeds = [random.SystemRandom().randrange(1 << 31) for _ in range(2)]
        _say(console, as_json, f"background errors {background_error_rate:g}, seeds (old, new) "
             f"{seeds}")
        for seed, app in zip(seeds, (old, new), strict=True):
            app.set_fault(error_rate=background_error_rate, error_seed=seed)
    hap_dir = workdir / "haproxy"
    hap_dir.mkdir(exist_ok=True)
    haproxy = stack.enter_context(
        HAProxyProcess(
            hap_dir,
            old_address=old.url.removeprefix("http://").rstrip("/"),
            new_address=new.url.removeprefix("http://").rstrip("/"),
            old_name="ec2",
            new_name="eks",
            old_weight=256,
            new_weight=0,
        )
    )
    prom_dir = workdir / "prometheus"
    prom_dir.mkdir(exist_ok=True)
    prom = stack.enter_context(
        PrometheusProcess(
            prom_dir,
            jobs=[
                ("haproxy", [haproxy.metrics_url.split("/")[2]]),
                ("app", [old.url.split("/")[2], new.url.split("/")[2]]),
            ],
            rules=ALERT_RULES,
        )
    )
    plan_path = workdir / "plan.yaml"
    plan_path.write_text(
        demo_plan_yaml(
            socket=haproxy.socket_path, prometheus=prom.url, new_app=new.url.rstrip("/"), bake=bake, rate=rate,
            old_app=old.url.rstrip("/"),
        )
    )
    events_file = workdir / "traffic.jsonl"
    traffic = stack.enter_context(
        TrafficProcess(haproxy.frontend_url.rstrip("/"), rate, events_file, duration=600)
    )
    _say(
        console,
        as_json,
        f"apps old={old.url} new={new.url}, HAProxy {haproxy.frontend_url}, "
        f"Prometheus {prom.url}, Locust at {rate:g} req/s",
    )
    _say(console, as_json, f"plan: {plan_path}")
    prom.wait_for_targets(timeout=30)  # Prometheus finds static targets a few seconds in
    time.sleep(1.0)  # and a scrape or two of steady traffic

    loaded = load_plan(plan_path)
    plan = loaded.plan
    store = stack.enter_context(open_store(f"sqlite:///{workdir}/state.db"))
    marks: dict[str, float] = {}
    lock = threading.Lock()
    hook_lines: list[str] = []

    def on_event(e: Event) -> None:
        if as_json:
            print(views.event_json(e), flush=True)
        if e.kind == ev.HOOK_FINISHED:  # one line per hook or undo: what it did, how it ended
            hook_lines.append(views.describe_event(e))
        if (
            scenario == "errors"
            and e.kind == ev.WEIGHT_CONFIRMED
            and float(e.data["percent"]) == FAULT_STEP
            and "fault" not in marks
        ):
            new.set_fault(error_rate=FAULT_ERROR_RATE, error_seed=None)
            with lock:
                marks["fault"] = time.time()
        if e.kind == ev.WEIGHT_CONFIRMED and float(e.data["percent"]) == 0 and "fault" in marks:
            with lock:
                marks.setdefault("zero", e.at)

    live: Live | None = None

    def on_tick(st: RunState, obs: Observation, d: Decision) -> None:
        if live is not None:
            live.update(views.live_view(plan, st, obs, d, runner.recent))

    router = build_router(plan.members)
    runner = build_runner(
        plan,
        store,
        SystemClock(),
        router=router,
        redact=loaded.redact,
        on_event=on_event,
        on_tick=on_tick,
    )
    t0 = time.time()
    if as_json:
        result = runner.run(max_duration=300)
    else:
        with Live(console=console, refresh_per_second=4) as lv:
            live = lv
            result = runner.run(max_duration=300)
    elapsed = time.time() - t0
    time.sleep(1.0)  # let the last traffic bucket land
    final = router.read()
    buckets = read_events(events_file)
    summary = _summary(scenario, result, final, marks, buckets, runner.recent, elapsed)
    # where the batch really ran: each app's own count (a second after the run's end)
    summary["hooks"] = hook_lines
    summary["batch"] = {"old": old.batch(), "new": new.batch()}
    # the run's report, as a command to paste (the journal outlives the demo only in a
    # --workdir of the user's: a temp dir is deleted on the way out)
    summary["report_command"] = report_command(plan_path, workdir, result.run_id) if kept \
        else None
    traffic.stop()
    if inspect is not None:
        inspect(DemoStack(workdir, haproxy, prom, old, new, plan_path, f"sqlite:///{workdir}/state.db"))
    if as_json:
        print(json.dumps(summary), flush=True)
    else:
        _print_summary(console, summary)
    return summary


def report_command(plan_path: Path, workdir: Path, run_id: str) -> str:
    """``shiftover report PLAN --run ID -o WORKDIR/report.html --state sqlite:///...``."""
    cmd = views.Commands(str(plan_path), f"sqlite:///{workdir}/state.db")
    return cmd("report", "--run", run_id, "-o", str(workdir / "report.html"))


def _summary(
    scenario: str,
    result: Any,
    final: Any,
    marks: dict[str, float],
    buckets: Any,
    recent: list[Event],
    elapsed: float,
) -> dict[str, Any]:
    failing: list[dict[str, Any]] = []
    for e in recent:
        if e.kind == ev.ROLLBACK_STARTED:
            failing = e.data.get("gates", [])
    fault = marks.get("fault")
    zero = marks.get("zero")
    rollback_seconds = round(zero - fault, 3) if fault is not None and zero is not None else None
    failed_after = (
        count_failures(buckets, fault, zero) if fault is not None and zero is not None else 0
    )
    return {
        "scenario": scenario,
        "outcome": result.outcome,
        "exit_code": result.exit_code,
        "final_weight": float(final.new_percent),
        "rollback_seconds": rollback_seconds,
        "failed_requests_after_fault": failed_after,
        "failing_gates": [
            {
                "gate": g["gate"],
                "value": g["value"],
                "threshold": g["threshold"],
                "reason": g["reason"],
            }
            for g in failing
        ],
        "requests_total": count_requests(buckets, 0.0, float("inf")),
        "failed_requests_total": count_failures(buckets, 0.0, float("inf")),
        "run_seconds": round(elapsed, 1),
        "reason": result.reason,
    }


def _print_summary(console: Console, s: dict[str, Any]) -> None:
    t = Table(title=f"demo {s['scenario']}: {s['outcome']}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("outcome", s["outcome"])
    t.add_row("final weight on new", f"{s['final_weight']:g}% (read back from HAProxy)")
    for g in s["failing_gates"]:
        t.add_row("failed gate", f"{g['gate']}: {g['reason']} (threshold {g['threshold']})")
    if s["rollback_seconds"] is not None:
        t.add_row("rollback", f"{s['rollback_seconds']:.2f}s from fault onset to 0% confirmed")
        t.add_row("failed requests after fault", str(s["failed_requests_after_fault"]))
    t.add_row("requests sent", f"{s['requests_total']} ({s['failed_requests_total']} failed)")
    t.add_row("run time", f"{s['run_seconds']:g}s")
    for line in s.get("hooks", []):
        t.add_row("undo" if line.startswith("undo ") else "hook", line)
    batch = s.get("batch")
    if batch:
        t.add_row("batch runs", ", ".join(
            f"{name} {b['runs']} ({'enabled' if b['enabled'] else 'stopped'})"
            for name, b in batch.items()))
    console.print(t)
    # outside the table, never wrapped: a wrapped command does not paste
    if s.get("report_command"):
        console.print(f"report of this run: {s['report_command']}", highlight=False,
                      markup=False, soft_wrap=True)
    else:
        console.print("the journal was in a temporary directory: pass --workdir DIR to keep it "
                      "and get the run's report (shiftover report)", highlight=False,
                      markup=False, soft_wrap=True)
