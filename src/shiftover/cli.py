"""The command line: parse, call, print. No logic of its own.

Exit codes (DESIGN.md): 0 promoted/ok · 1 internal error · 2 bad input ·
3 rolled back · 4 paused or held · 5 lease held by another run.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shiftover import views
from shiftover.clock import SystemClock
from shiftover.engine import events as ev
from shiftover.engine.build import build_runner, minimum_duration, preflight
from shiftover.engine.decide import Decision, Observation
from shiftover.engine.events import RunState, fold
from shiftover.engine.rollback import roll_back
from shiftover.engine.run import check_lease_ttl
from shiftover.errors import BadInput, ShiftoverError
from shiftover.plan import load_outline, load_plan, parse_duration, plan_json_schema
from shiftover.routers import build_router
from shiftover.store import Store, default_state_url, open_store, operator_identity

app = typer.Typer(
    help="Move a live service from an old environment to a new one, a few percent at a time.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _print_error(exc: ShiftoverError) -> None:
    err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)


def command(*args: Any, **kw: Any) -> Callable[[F], F]:
    """``app.command`` that turns our errors into one clean message and their exit code
    (2 bad input, 5 lease held, ...), never a traceback."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except ShiftoverError as exc:
                _print_error(exc)
                raise typer.Exit(exc.exit_code) from None

        app.command(*args, **kw)(wrapper)
        return fn

    return deco


def _duration(value: str | None) -> float | None:
    """Click callback: the plan's duration syntax (500ms, 90s, 5m, 1h) or seconds."""
    if value is None:
        return None
    try:
        return parse_duration(float(value) if _is_number(value) else value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


PlanArg = Annotated[Path, typer.Argument(help="The plan file (YAML).", show_default=False)]
StateOpt = Annotated[str | None, typer.Option(
    "--state", help="Journal and lease URL (default: $SHIFTOVER_STATE, else this host's "
    "state file: /var/lib/shiftover/state.db for root, ~/.local/state/shiftover/state.db otherwise).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _store(plan_path: Path, state: str | None, *, busy_timeout: float | None = None) -> Store:
    if state is not None:
        try:
            url = make_url(state)
        except ArgumentError:
            raise BadInput(f"--state {state!r} is not a database URL",
                           hint="e.g. sqlite:////var/lib/shiftover/state.db or "
                                "postgresql+psycopg://user@host/db") from None
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise BadInput(f"--state {state!r} is an in-memory journal: other terminals "
                           "(pause, approve, rollback) and the next run could not see it",
                           hint="give a file: sqlite:////path/to/state.db")
    if busy_timeout is not None:
        return open_store(state or default_state_url(), busy_timeout=busy_timeout)
    return open_store(state or default_state_url())


def _state(store: Store, service: str) -> RunState:
    return fold(RunState(), store.events(service=service))


@command()
def validate(plan: PlanArg, offline: Annotated[bool, typer.Option("--offline", help="Check the file only; do not contact the router or gates.")] = False,
             as_json: JsonOpt = False) -> None:
    """Check the plan, then preflight: the router's current split and each gate once.

    Exits 2 when the router cannot be read, a gate FAILs, or a gate cannot be
    evaluated at all (refused, bad query, unknown server): "no data yet" is fine."""
    loaded = load_plan(plan)
    p = loaded.plan
    mapped = views.mapped_steps(p)
    if offline:
        if as_json:
            out.print_json(json.dumps({"valid": True, "service": p.service,
                                       "steps": views.steps_json(p)}))
        else:
            out.print(f"[green]✓[/] {plan}: valid plan for {p.service}")
            for line in mapped:
                out.print(f"  note: {line}")
        return
    pf = preflight(p, SystemClock(), redact=loaded.redact)
    errored = [r for r in pf.results if r.error]
    if as_json:
        out.print_json(json.dumps({
            "valid": pf.ok, "service": p.service, "router": pf.router,
            "weights": None if pf.weights is None else float(pf.weights.new_percent),
            "weights_exact": None if pf.weights is None else pf.weights.exact,
            "router_error": pf.router_error, "steps": views.steps_json(p),
            "gates": [r.to_dict() for r in pf.results]}))
    else:
        out.print(f"[green]✓[/] {plan}: valid plan for [bold]{p.service}[/]")
        for line in mapped:
            out.print(f"  note: {line}")
        if pf.router_error:
            out.print(f"[red]✗[/] router {pf.router}: {pf.router_error}")
        else:
            out.print(f"[green]✓[/] router {pf.router}: {pf.weights} on new")
        out.print(views.gates_table(pf.results))
        for r in errored:
            out.print(f"[red]✗[/] gate [bold]{r.gate}[/] cannot be evaluated: {r.reason}")
        if errored:
            out.print("  a gate that cannot be evaluated would hold the run without evidence: "
                      "fix it, then run `shiftover validate` again")
    if not pf.ok:  # router unreadable, a gate FAILs or errors: the run would not start
        raise typer.Exit(2)


@command("plan")
def show_plan(plan: PlanArg, state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Show the steps, the minimum duration, the approvals and the current state."""
    p = load_plan(plan).plan
    with _store(plan, state) as store:
        st = _state(store, p.service)
    data = {
        "service": p.service, "steps": p.steps, "bake_seconds": p.bake,
        "interval_seconds": p.interval, "minimum_duration_seconds": minimum_duration(p),
        "approvals": p.approvals, "failure_limit": p.failure_limit, "on_failure": p.on_failure,
        "gates": [{"name": g.name, "type": g.type} for g in p.normal_state],
        "current": views.status_json(p, st, None),
    }
    if as_json:
        out.print_json(json.dumps(data, default=str))
        return
    out.print(f"[bold]{p.service}[/]: {len(p.steps)} steps, bake {p.bake:g}s each, check every {p.interval:g}s")
    out.print(views.steps_line(p, st))
    out.print(f"minimum duration: {minimum_duration(p) / 60:.1f} min (approvals not counted)")
    out.print(f"on {p.failure_limit} consecutive failed checks: {p.on_failure}")
    for g in p.normal_state:
        out.print(f"  gate [bold]{g.name}[/] ({g.type})")


@command()
def run(plan: PlanArg, state: StateOpt = None, as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line instead of the live view, then a summary line.")] = False,
        max_duration: Annotated[str | None, typer.Option(help="Stop (held, exit 4) after this long: 90s, 30m, 2h.")] = None,
        lease_ttl: Annotated[str | None, typer.Option(help="How long a dead run's lease lives (default: max(30s, 2 x the longest tick); shorter than one tick is refused).")] = None) -> None:
    """Run the plan: shift step by step, check the normal state, roll back when it breaks.

    Exit codes: 0 promoted, 3 rolled back, 4 held (stopped, paused), 5 lease held
    by another run or lost, 2 bad input, 1 internal error."""
    loaded = load_plan(plan)
    p = loaded.plan
    max_seconds = _duration(max_duration)
    ttl = check_lease_ttl(p, _duration(lease_ttl))
    with _store(plan, state, busy_timeout=2.0) as store:
        pipe = {"closed": False}

        def emit(line: str) -> None:
            if pipe["closed"]:
                return
            try:
                print(line, flush=True)
            except BrokenPipeError:  # `run --json | head`: stop cleanly, journal run_stopped
                pipe["closed"] = True
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                runner.stop()

        def on_event(e: Any) -> None:
            if as_json:
                emit(views.event_json(e))
            elif live is None:  # not a terminal: one progress line per event
                emit(f"{views.when(e.at)} {views.describe_event(e)}")

        def on_tick(st: RunState, obs: Observation, d: Decision) -> None:
            if live is not None:
                live.update(views.live_view(p, st, obs, d, runner.recent))

        live: Live | None = None
        runner = build_runner(p, store, SystemClock(), redact=loaded.redact, on_event=on_event,
                              on_tick=on_tick, lease_ttl=ttl)

        def stop(signum: int, frame: FrameType | None) -> None:
            runner.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if as_json or not out.is_terminal:
            result = runner.run(max_duration=max_seconds)
        else:
            with Live(console=out, refresh_per_second=4, transient=False) as lv:
                live = lv
                result = runner.run(max_duration=max_seconds)
        final = result.final_weight
        if as_json:
            emit(json.dumps({"summary": True, "outcome": result.outcome,
                             "exit_code": result.exit_code, "status": result.status,
                             "final_weight": None if final is None else float(final.new_percent),
                             "final_exact": None if final is None else final.exact,
                             "reason": result.reason, "run_id": result.run_id}))
        else:
            style = {0: "bold green", 3: "bold red"}.get(result.exit_code, "bold yellow")
            out.print(f"[{style}]{result.outcome}[/]: {result.reason}", highlight=False)
            if result.outcome in ("held", "lease_lost", "store_failed") and final is not None \
                    and final.new_percent > 0:
                out.print(f"unwatched: {final} of the traffic is on the new environment and no "
                          f"run is watching it; resume with `shiftover run {plan}` or send it "
                          f"back with `shiftover rollback {plan}`", highlight=False)
    raise typer.Exit(result.exit_code)


@command()
def status(plan: PlanArg, state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Where the service stands: weight, step, failures, who is running it."""
    p = load_outline(plan)
    with _store(plan, state) as store:
        st = _state(store, p.service)
        lease = views.live_lease(store, p.service)
        last = store.last_event(service=p.service)
    if as_json:
        out.print_json(json.dumps(views.status_json(p, st, lease), default=str))
    else:
        out.print(views.status_view(p, st, lease, last))


@command()
def history(plan: PlanArg, state: StateOpt = None, as_json: JsonOpt = False,
            limit: Annotated[int, typer.Option(min=0, help="Show the last N events (0: all).")] = 50) -> None:
    """The journal of the service: every event, oldest first."""
    p = load_outline(plan)
    with _store(plan, state) as store:
        events = store.events(service=p.service)
    if limit:
        events = events[-limit:]
    if as_json:
        for e in events:
            print(views.event_json(e))
    else:
        out.print(views.events_table(events, title=f"{p.service}: {len(events)} events"))


def _operator(plan: Path, state: str | None, kind: str, data: dict[str, Any]) -> bool:
    """Journal an operator action; True when a live run holds the lease (it acts on
    it within a fraction of a second). Needs only the plan's outline: no secrets."""
    p = load_outline(plan)
    with _store(plan, state) as store:
        e = store.append(service=p.service, run_id="operator", kind=kind,
                         at=SystemClock().now(), data=data, actor=operator_identity())
        live = views.live_lease(store, p.service) is not None
    out.print(f"{views.describe_event(e)} (journal #{e.id})")
    if not live and kind != ev.ROLLBACK_REQUESTED:
        out.print("no run is live: this takes effect when `shiftover run` starts")
    return live


Reason = Annotated[str, typer.Option("--reason", "-m", help="Why (goes into the journal).")]


@command()
def pause(plan: PlanArg, state: StateOpt = None, reason: Reason = "") -> None:
    """Hold the running cutover at its current step (checks go on)."""
    _operator(plan, state, ev.PAUSED, {"reason": reason})


@command()
def resume(plan: PlanArg, state: StateOpt = None, reason: Reason = "") -> None:
    """Resume a paused cutover (clears the failure count)."""
    _operator(plan, state, ev.RESUMED, {"reason": reason})


@command()
def approve(plan: PlanArg, step: Annotated[float | None, typer.Option(help="The step (percent) to approve; default: the one waiting.")] = None,
            state: StateOpt = None) -> None:
    """Approve a step that waits for approval."""
    p = load_outline(plan)
    if step is None:
        with _store(plan, state) as store:
            st = _state(store, p.service)
        if st.waiting_approval is None:
            raise BadInput("no step is waiting for approval",
                           hint="pass --step N to approve a step in advance")
        step = st.waiting_approval
    if step not in p.approvals:
        raise BadInput(f"the {step:g}% step does not need approval",
                       hint=f"steps that need approval: {', '.join(f'{a:g}' for a in p.approvals) or 'none'}")
    _operator(plan, state, ev.APPROVED, {"step": step})


@command()
def rollback(plan: PlanArg, state: StateOpt = None, reason: Reason = "",
             timeout: Annotated[str, typer.Option(help="Give up (exit 4) if the router has not confirmed 0% by then: 30s, 2m.")] = "60s",
             as_json: JsonOpt = False) -> None:
    """Send the new environment back to 0% now, and wait until the router confirms it.

    A live `run` gets the request at once and a few seconds to start the rollback
    itself; otherwise (no live run, or one that does not answer) this command
    writes 0% through the router directly. Exit 0 once the router confirms 0%,
    4 when it does not within --timeout (the reason says why)."""
    outline = load_outline(plan)
    seconds = _duration(timeout)
    assert seconds is not None
    loaded, load_error = None, None
    try:
        loaded = load_plan(plan)
    except ShiftoverError as exc:
        load_error = exc
    router = None
    if loaded is not None:
        router = build_router(loaded.plan.router)
    store = None
    store_error = None
    try:
        store = _store(plan, state, busy_timeout=2.0)
    except BadInput:
        raise
    except ShiftoverError as exc:  # a rollback never waits on the journal
        store_error = exc
    stopped = {"now": False}

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        result = roll_back(service=outline.service, store=store, router=router,
                           clock=SystemClock(), actor=operator_identity(), reason=reason,
                           timeout=seconds, stopping=lambda: stopped["now"],
                           redact=loaded.redact if loaded is not None else (lambda t: t))
    finally:
        if store is not None:
            store.close()
    data = result.to_dict()
    if store_error is not None:
        data["journal_error"] = str(store_error)
    if load_error is not None and router is None:
        data["plan_error"] = str(load_error)
    if as_json:
        print(json.dumps(data), flush=True)
    elif result.confirmed:
        out.print(f"[bold]rolled back[/]: {result.reason} ({result.seconds:.2f}s)", highlight=False)
        if not result.journalled:
            out.print("the journal could not record it: `shiftover status` may lag until the "
                      "next run", highlight=False)
    else:
        err.print(f"[bold red]rollback not confirmed[/]: {result.reason}", highlight=False)
        if load_error is not None and router is None:
            err.print(f"  the plan could not be loaded: {load_error}", highlight=False)
    raise typer.Exit(0 if result.confirmed else 4)


@command()
def schema() -> None:
    """Print the plan's JSON Schema."""
    print(json.dumps(plan_json_schema(), indent=2))


@command()
def demo(scenario: Annotated[str, typer.Option(help="healthy | errors")] = "healthy",
         as_json: Annotated[bool, typer.Option("--json", help="Event log as JSON lines, then a summary object.")] = False,
         rate: Annotated[float, typer.Option(help="Steady traffic, requests per second.")] = 200.0,
         workdir: Annotated[Path | None, typer.Option(help="Keep configs and the journal here (default: a temp dir).")] = None) -> None:
    """Run a real cutover on a local stack: two app instances, HAProxy, Prometheus, Locust."""
    from shiftover.demo.scenario import SCENARIOS, run_demo

    if scenario not in SCENARIOS:
        raise BadInput(f"unknown scenario {scenario!r}", hint=f"known: {', '.join(SCENARIOS)}")
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds the stack: every child process is stopped

    signal.signal(signal.SIGTERM, interrupt)
    try:
        summary = run_demo(scenario, as_json=as_json, rate=rate, workdir=workdir, console=out)
    except KeyboardInterrupt:
        err.print("demo interrupted: the local stack was stopped")
        raise typer.Exit(4) from None
    raise typer.Exit(summary["exit_code"])


def _mount_scale() -> None:
    try:
        from shiftover.cli_scale import scale_app
    except ImportError:  # pragma: no cover - scaling is optional while it is built
        return
    app.add_typer(scale_app, name="scale", help="Will the new environment keep up? HPA + Cluster Autoscaler simulator.")


_mount_scale()


def main() -> None:
    """Entry point: Click handles usage errors (exit 2); ours print one clean line."""
    try:
        app()
    except ShiftoverError as exc:  # raised outside a command (e.g. while mounting)
        _print_error(exc)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
