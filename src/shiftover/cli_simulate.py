"""``shiftover simulate``: the plan through the real engine on simulated time, with
scripted gate values. Parse, call, print; the simulation is
:mod:`shiftover.engine.simulate`.

Output goes through the CLI's redacting streams (``shiftover.cli``'s ``out`` and
``_json_line``), imported inside the command: this module is mounted by
``cli.py`` while it is still being imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

EnvOption = Annotated[str | None, typer.Option(
    "--env", help="The plan's environment to use (a name under its environments:, merged over "
    "the base plan): integration, staging, production...", show_default=False)]

OUTCOME_WORDS = {"promoted": "promoted", "rolled_back": "rolled back", "paused": "paused",
                 "held": "held"}
EXIT_WORDS = {0: "promoted", 3: "rolled back", 4: "held"}


def simulate(
    plan: Annotated[Path, typer.Argument(help="The plan file (YAML).", show_default=False,
                                         metavar="PLAN")],
    metrics: Annotated[Path | None, typer.Option(
        "--metrics", help="The script (YAML): what each gate measures over simulated time, "
        "e.g. examples/simulate/fail-at-25.yaml. Without it every gate passes.",
        show_default=False)] = None,
    env: EnvOption = None,
    fail_each_step: Annotated[bool, typer.Option(
        "--fail-each-step", help="Run the plan once per step, a gate failing from the moment "
        "that step is confirmed; a table of what happened. Exit 0 only when every run ends as "
        "the plan's on_failure says (rolled back, or paused), 3 otherwise.")] = False,
    fail_gate: Annotated[str | None, typer.Option(
        "--fail-gate", help="With --fail-each-step: the gate that fails (its name in "
        "normal_state). Default: the plan's first gate.", show_default=False)] = None,
    max_time: Annotated[str | None, typer.Option(
        "--max-time", help="Stop each simulated run after this much simulated time (held, exit "
        "4): 90m, 6h. Default: the script's max_time, else 3 x the plan's shortest run + 30m.",
        show_default=False)] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Every journal event in the timeline (passing checks too).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per event (or per run with --fail-each-step), then a "
        "summary line.")] = False,
) -> None:
    """Rehearse a plan in seconds: the real engine (steps, bakes, checks, decide, rollback)
    on simulated time, an in-memory router and scripted gate values.

    Exit codes (as `shiftover run`):
      0  promoted (with --fail-each-step: every run ended as the plan says)
      2  bad input (plan, script, flags)
      3  rolled back (with --fail-each-step: a run did not end as the plan says)
      4  held: paused, or the simulated time bound was reached"""
    from shiftover.cli import _cmds, _load, _seconds
    from shiftover.engine import simulate as sim
    from shiftover.errors import BadInput

    if fail_gate is not None and not fail_each_step:
        raise BadInput("--fail-gate goes with --fail-each-step", hint="add --fail-each-step: "
                       + _cmds(plan, None, env)("simulate", "--fail-each-step", "--fail-gate",
                                                fail_gate))
    bound = _seconds("--max-time", max_time, positive=True)
    loaded = _load(plan, env)
    p = loaded.plan
    if not p.normal_state:
        raise BadInput("the plan has no gates (normal_state is empty): there is nothing to simulate",
                       hint="add the gates that define the normal state, see examples/plan.yaml")
    script = sim.load_script(metrics, p) if metrics is not None else sim.Script()
    if fail_gate is not None:
        sim.check_gate_name(p, fail_gate, flag="--fail-gate")
    if fail_each_step:
        code = _each_step(plan, loaded, script, fail_gate, bound, as_json=as_json)
    else:
        code = _one_run(plan, loaded, script, bound, metrics, env, verbose=verbose,
                        as_json=as_json)
    raise typer.Exit(code)


def _header(plan: Path, loaded: Any, script: Any, bound: float | None) -> list[str]:
    from shiftover.engine import simulate as sim

    p = loaded.plan
    steps = ", ".join(f"{s:g}" for s in p.steps)
    where = f" (environment {p.environment})" if p.environment else ""
    lines = [f"simulating {plan}{where}: {p.service}, steps {steps}%, bake "
             f"{sim.span(p.bake)}, a check every {sim.span(p.interval)}, "
             f"on_failure {p.on_failure}"]
    if script.path:
        lines.append(f"script {script.path}" + (f": {script.description}" if script.description
                                                 else ""))
    for spec in p.normal_state:
        lines.append(f"  {spec.name}: {sim.describe_gate(spec, script.gates.get(spec.name, ()))}")
    for step in p.approvals:
        delay = script.approvals.get(step, 0.0)
        when = ("never given" if delay is None else "given as soon as the run asks" if not delay
                else f"given {sim.span(delay)} after the run asks")
        lines.append(f"  approval of the {step:g}% step: {when}")
    for a in script.operator:
        what = a.do + (f" {a.step:g}%" if a.step is not None else "")
        lines.append(f"  operator at {sim.offset(a.at)}: {what}"
                     + (f" ({a.reason})" if a.reason else ""))
    limit = bound if bound is not None else (script.max_time if script.max_time is not None
                                             else sim.default_max_time(p, script))
    lines.append(f"  time bound: {sim.span(limit)} simulated"
                 + ("" if bound is not None or script.max_time is not None
                    else " (3 x the plan's shortest run + 30m; --max-time to change)"))
    if len(p.members) > 1:
        lines.append("  the routers in lockstep are simulated as one in-memory router")
    for m in p.members:  # what the simulation cannot show: the router's own lag
        note = m.rollback_note()
        if note:
            lines.append(f"  beyond the simulation, after 0% is confirmed: {note}")
    if p.load is not None:
        lines.append("  the plan's load: block sends no traffic in a simulation")
    return lines


def _one_run(plan: Path, loaded: Any, script: Any, bound: float | None, metrics: Path | None,
             env: str | None, *, verbose: bool, as_json: bool) -> int:
    from shiftover.cli import _reader_may_leave, out
    from shiftover.engine import simulate as sim

    p = loaded.plan
    if not as_json:
        with _reader_may_leave():  # a reader that leaves (| head) does not change the exit code
            for line in _header(plan, loaded, script, bound):
                out.print(line, highlight=False, markup=False, soft_wrap=True)
            out.print()
    result = sim.simulate(p, script, max_time=bound)
    with _reader_may_leave():
        _print_run(plan, loaded, script, result, metrics, env, verbose=verbose, as_json=as_json)
    return result.exit_code


def _print_run(plan: Path, loaded: Any, script: Any, result: Any, metrics: Path | None,
               env: str | None, *, verbose: bool, as_json: bool) -> None:
    from shiftover import views
    from shiftover.cli import _cmds, _json_line, _print_hints, out
    from shiftover.engine import simulate as sim

    p = loaded.plan
    if as_json:
        for e in result.events:
            _json_line({**views.event_dict(e), "t": round(e.at - sim.SIM_START, 3)})
        _json_line({"summary": True, **result.to_dict(),
                    "script": script.path,
                    "gates": {g.name: {"scripted": g.name in script.gates,
                                       "measures": sim.describe_gate(g, script.gates.get(g.name, ()))}
                              for g in p.normal_state}})
        return
    for t, kind, text in sim.timeline(result.events, views.describe_event, verbose=verbose):
        style = ("bold red" if kind in ("rollback_started", "rolled_back")
                 else "bold green" if kind == "promoted" else "")
        out.print(f"{sim.offset(t):<11} {loaded.redact(text)}", style=style or None,
                  highlight=False, markup=False, soft_wrap=True)
    out.print()
    style = {0: "bold green", 3: "bold red"}.get(result.exit_code, "bold yellow")
    word = OUTCOME_WORDS.get(result.outcome, result.outcome)
    reason = result.reason.removeprefix(f"{word}: ")
    out.print(f"{word}: {loaded.redact(reason)}",
              style=style, highlight=False, markup=False, soft_wrap=True)
    out.print(f"simulated {sim.span(result.simulated)} in {result.wall:.1f}s of wall "
              f"time; exit {result.exit_code} ({EXIT_WORDS.get(result.exit_code, result.outcome)}, "
              "as `shiftover run` would)", highlight=False, markup=False, soft_wrap=True)
    cmd = _cmds(plan, None, env)
    # the script's values as the background of each run, unless they end the run by
    # themselves (then every later step would read "never reached")
    args = ["--metrics", str(metrics)] if metrics is not None and result.exit_code == 0 else []
    _print_hints([cmd("simulate", *args, "--fail-each-step")],
                 prefix="a failure at each step: ")


def _each_step(plan: Path, loaded: Any, script: Any, fail_gate: str | None, bound: float | None,
               *, as_json: bool) -> int:
    from shiftover.cli import _json_line, _reader_may_leave, out
    from shiftover.engine import simulate as sim

    p = loaded.plan
    chosen = sim.fail_gate(p, fail_gate)
    gate = chosen.name
    expected = sim.expected_outcome(p)
    said = OUTCOME_WORDS[expected]
    if not as_json:
        with _reader_may_leave():
            for line in _header(plan, loaded, script, bound):
                out.print(line, highlight=False, markup=False, soft_wrap=True)
            out.print(f"each run: {gate!r} fails from the moment the step is confirmed; the "
                      f"plan's on_failure ({p.on_failure}) says it ends {said}", highlight=False,
                      markup=False, soft_wrap=True)
            if chosen.note():
                out.print(f"  {gate!r}: {chosen.note()}", highlight=False, markup=False,
                          soft_wrap=True)

    def each(run: Any) -> None:  # a line per run as it ends
        if as_json:
            with _reader_may_leave():
                _json_line(run.to_dict())

    runs = sim.fail_each_step(p, script, gate=gate, max_time=bound, on_run=each)
    bad = [r for r in runs if not r.as_planned]
    code = 0 if not bad else 3
    with _reader_may_leave():
        _print_steps(runs, gate, expected, code, as_json=as_json, note=chosen.note())
    return code


def _print_steps(runs: list[Any], gate: str, expected: str, code: int, *, as_json: bool,
                 note: str | None = None) -> None:
    from rich import box
    from rich.table import Table

    from shiftover.cli import _json_line, out
    from shiftover.engine import simulate as sim

    said = OUTCOME_WORDS[expected]
    wall = sum(r.result.wall for r in runs)
    simulated = sum(r.result.simulated for r in runs)
    bad = [r for r in runs if not r.as_planned]
    if as_json:
        _json_line({"summary": True, "as_planned": not bad, "exit_code": code, "runs": len(runs),
                    "not_as_planned": [r.step for r in bad], "gate": gate, "gate_note": note,
                    "expected": expected,
                    "simulated_seconds": round(simulated, 3), "wall_seconds": round(wall, 3)})
        return
    to = "fault → 0%" if expected == "rolled_back" else "fault → paused"
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for name, justify in (("step", "right"), ("outcome", "left"), (to, "right"),
                          ("failed checks", "right"), ("as planned", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in runs:
        res = r.result
        took = sim.span(res.fault_to_end) if res.fault_to_end is not None else "-"
        outcome = OUTCOME_WORDS.get(res.outcome, res.outcome)
        if res.fault_at is None:
            outcome += f" before {r.step:g}%"
        elif res.stopped_at_max_time:
            outcome += " (time bound)"
        table.add_row(f"{r.step:g}%", outcome, took, str(res.failed_checks),
                      "yes" if r.as_planned else "NO", style=None if r.as_planned else "bold red")
    out.print()
    out.print(table)
    out.print()
    totals = f"{len(runs)} runs, {sim.span(simulated)} simulated in {wall:.1f}s of wall time"
    if not bad:
        out.print(f"every failure ended {said}, as the plan says ({totals})", style="bold green",
                  highlight=False, markup=False, soft_wrap=True)
    else:
        out.print(f"{len(bad)} of {len(runs)} runs did not end {said} ({totals}):",
                  style="bold red", highlight=False, markup=False, soft_wrap=True)
        for r in bad:
            out.print(f"  at {r.step:g}%: {_why(r)}", highlight=False, markup=False,
                      soft_wrap=True)


def _why(run: Any) -> str:
    from shiftover.engine import simulate as sim

    res = run.result
    if res.fault_at is None:
        reached = f"{res.last_step:g}%" if res.last_step is not None else "the first step"
        return (f"the fault never came: the run ended {OUTCOME_WORDS.get(res.outcome, res.outcome)} "
                f"at {reached} before {run.step:g}% was confirmed ({res.reason})")
    return (f"{OUTCOME_WORDS.get(res.outcome, res.outcome)} {sim.offset(res.simulated)}: "
            f"{res.reason}")
