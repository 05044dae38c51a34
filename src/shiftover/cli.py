"""The command line: parse, call, print. No logic of its own.

Exit codes (DESIGN.md): 0 promoted/ok · 1 internal error · 2 bad input ·
3 rolled back · 4 paused or held · 5 lease held by another run.

What every command here guarantees:

- **No secret reaches an output.** Values a plan took from the environment are
  masked before anything is rendered (data first, so a secret cannot be split by
  line wrapping or hidden by JSON escaping) and again on the way out: stdout and
  stderr go through a redacting stream that knows every secret of every plan this
  process has loaded. Error messages and internal errors pass through it too.
- **Never a traceback.** Our errors print one message and their exit code; bad
  option values are exit 2 naming the option; anything else is "internal error"
  (exit 1, ``SHIFTOVER_DEBUG=1`` shows the traceback). A closed pipe
  (``--json | head``) ends the command quietly; a ``run`` is stopped first and
  journals ``run_stopped``.
- **Read-only commands stay read-only.** ``status``, ``history`` and ``plan``
  open the journal with ``create=False``: with no state file they say "no
  journal yet at PATH" and show an empty state; they never create one.
- **Hints can be pasted.** They name the plan path as typed, ``--state`` when it
  was given, and the program as it was invoked when it is not on ``PATH``.
"""

from __future__ import annotations

import errno
import functools
import importlib.metadata
import io
import json
import os
import queue
import re
import shlex
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import IO, Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape as _e
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shiftover import views
from shiftover.clock import SystemClock
from shiftover.engine import events as ev
from shiftover.engine.build import (
    build_runner,
    minimum_duration,
    plan_timeline,
    preflight,
    rollback_bound,
)
from shiftover.engine.decide import Decision, Observation, hooks_at
from shiftover.engine.events import RunState, pending_undos
from shiftover.engine.rollback import roll_back
from shiftover.engine.run import Runner, check_lease_ttl, default_lease_ttl, min_lease_ttl
from shiftover.errors import BadInput, LeaseHeld, RouterConfigError, ShiftoverError, StoreError
from shiftover.hooks import hook_tag, leftovers
from shiftover.loadtest.synthetic import SyntheticLoad, summary_text
from shiftover.loadtest.synthetic import preflight as load_preflight
from shiftover.notify import Notifier, target_names
from shiftover.notify import where as where_to
from shiftover.plan import (
    LoadedPlan,
    Plan,
    PlanOutline,
    load_outline,
    load_plan,
    mask_userinfo,
    parse_duration,
    plan_environments,
    plan_json_schema,
    redact_values,
)
from shiftover.plan import redact as redact_secrets
from shiftover.report.runs import rehearsal_text, rehearsals
from shiftover.routers import build_router
from shiftover.store import (
    DEFAULT_BUSY_TIMEOUT,
    Event,
    Store,
    StoreMissing,
    default_state_url,
    open_store,
    operator_identity,
    state_url,
)
from shiftover.store.holders import find_run, live_lease

EXIT_CODES = ("Exit codes: 0 promoted / ok · 1 internal error · 2 bad input (plan, flags) · "
              "3 rolled back · 4 paused or held (weights left in place) · "
              "5 lease held by another run, or lost")

app = typer.Typer(
    help="Move a live service from an old environment to a new one, a few percent at a time.",
    epilog=EXIT_CODES, no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
)

# --- output: every byte goes through the redactor ------------------------------------------

_SECRETS: set[str] = set()


def _redact(text: str) -> str:
    return redact_secrets(text, _SECRETS) if _SECRETS else text


class _Redacting:
    """A text stream that masks every known secret, then writes to the current
    ``sys.stdout``/``sys.stderr`` (looked up at each write: test runners swap them)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _target(self) -> IO[str]:
        stream: IO[str] = getattr(sys, self._name)
        # under rich's Live, sys.stdout is a proxy that prints to our console: writing
        # to it would loop forever; write to the file it stands for
        proxied: IO[str] = getattr(stream, "rich_proxied_file", stream)
        return proxied

    def write(self, text: str) -> int:
        self._target().write(_redact(text))
        return len(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return bool(getattr(self._target(), "isatty", lambda: False)())

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", None) or "utf-8"


class _Console(Console):
    """Rich's console, except that a closed stdout is our business: rich would exit 1
    on the spot; we stop quietly with the command's own exit code (0 for a reader
    that had enough, the run's outcome for ``run``)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _quiet_stdout()
        raise BrokenPipeError(errno.EPIPE, "the reader closed stdout")


_STDOUT = _Redacting("stdout")
_STDERR = _Redacting("stderr")
# emoji=False: rich turns ":100:" into an emoji, and a hint like "--rate 50:100:10" must paste
out = _Console(file=_STDOUT, emoji=False)  # type: ignore[arg-type]
err = _Console(file=_STDERR, stderr=True, emoji=False)  # type: ignore[arg-type]


def _line(text: str) -> None:
    """One plain line on stdout (progress lines), flushed, through the redactor."""
    _STDOUT.write(text + "\n")
    _STDOUT.flush()


class _OutputPump:
    """Lines from a live run go out through a thread, never from the control loop:
    a reader that stalls (`| less`, a stuck log shipper, Ctrl-S) must not freeze
    the checks and the rollback. The queue is bounded; when it is full, lines are
    dropped and counted, and the count is printed once the reader catches up."""

    def __init__(self, write: Callable[[Any], None], on_closed: Callable[[], None],
                 size: int = 10_000) -> None:
        self._write = write
        self._on_closed = on_closed
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.dropped = 0
        self.closed = False
        self._thread = threading.Thread(target=self._pump, name="output", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _pump(self) -> None:
        while True:
            item = self._queue.get()
            if item is _PUMP_END:
                return
            try:
                if self.dropped:
                    n, self.dropped = self.dropped, 0
                    self._write(f"({n} lines dropped: the reader was too slow)")
                self._write(item)
            except BrokenPipeError:
                self.closed = True
                _quiet_stdout()
                self._on_closed()
                return

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued, waiting at most ``timeout`` for a slow reader."""
        try:
            self._queue.put(_PUMP_END, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


_PUMP_END = object()


def _json_line(obj: Any, *, indent: int | None = None) -> None:
    """JSON on stdout. Every string in it is redacted *before* it is serialised; the
    stream's own pass is skipped, as it could break the JSON (a secret ``80`` would
    mask a number, a secret ``status`` a key)."""
    stream = _STDOUT._target()
    stream.write(json.dumps(redact_values(obj, _redact), indent=indent, default=str) + "\n")
    stream.flush()


# How long a run or a rollback waits for another writer of the journal. Operators'
# commands hold it for milliseconds; a journal locked for longer is a failing one,
# and neither a run's checks nor a rollback may wait on it for seconds.
JOURNAL_BUSY_TIMEOUT = 0.5


def _print_json(obj: Any) -> None:
    _json_line(obj, indent=2)


def _print_error(exc: ShiftoverError) -> None:
    err.print(f"[bold red]error:[/] {_e(_redact(str(exc)))}", markup=True, highlight=False,
              soft_wrap=True)


def _quiet_stdout() -> None:
    """After a broken pipe: anything still to be written (or flushed at exit) is dropped."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


@contextmanager
def _reader_may_leave() -> Iterator[None]:
    """Output of a command whose exit code means something (validate, run, rollback):
    if the reader closes the pipe, the rest is dropped and the exit code still stands."""
    try:
        yield
    except BrokenPipeError:
        _quiet_stdout()


F = TypeVar("F", bound=Callable[..., Any])


def command(*args: Any, **kw: Any) -> Callable[[F], F]:
    """``app.command`` that turns our errors into one clean message and their exit code
    (2 bad input, 5 lease held, ...), a closed stdout into a quiet exit, and anything
    else into "internal error" (exit 1) — never a traceback."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            _SECRETS.clear()  # one command, one plan's secrets (tests run many in a process)
            try:
                return fn(*a, **k)
            except ShiftoverError as exc:
                _print_error(exc)
                raise typer.Exit(exc.exit_code) from None
            except BrokenPipeError:  # `... --json | head`: the reader has had enough
                _quiet_stdout()
                raise typer.Exit(0) from None
            except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException,
                    click.exceptions.Abort):
                raise
            except Exception as exc:
                if os.environ.get("SHIFTOVER_DEBUG"):
                    raise
                err.print(f"[bold red]internal error:[/] {_e(_redact(f'{type(exc).__name__}: {exc}'))}",
                          markup=True, highlight=False, soft_wrap=True)
                err.print(f"  this is a bug in shiftover; run again with SHIFTOVER_DEBUG=1 "
                          f"for the traceback ({_redact(_where_raised(exc))})",
                          highlight=False, soft_wrap=True, markup=False)
                raise typer.Exit(1) from None

        app.command(*args, **kw)(wrapper)
        return fn

    return deco


def _where_raised(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "unknown place"
    last = tb[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def _version() -> str:
    try:
        return importlib.metadata.version("shiftover")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        with _reader_may_leave():
            _line(f"shiftover {_version()}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=_show_version,
        is_eager=True)] = False) -> None:
    """Move a live service from an old environment to a new one, a few percent at a time."""


# --- inputs ----------------------------------------------------------------------------------


def _seconds(option: str, value: str | None, *, positive: bool = False) -> float | None:
    """An option in the plan's duration syntax (500ms, 90s, 5m, 1h, 1d) or a number of
    seconds; BadInput (exit 2) naming the option otherwise."""
    if value is None:
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    try:
        seconds = parse_duration(number if number is not None else text)
    except ValueError as exc:
        raise BadInput(f"{option} {value!r}: {exc}",
                       hint=f"e.g. {option} 90s, {option} 5m or {option} 2h") from None
    if positive and seconds <= 0:
        raise BadInput(f"{option} {value!r} must be more than 0",
                       hint=f"leave {option} out for no limit")
    return seconds


PlanArg = Annotated[Path, typer.Argument(help="The plan file (YAML).", show_default=False,
                                           metavar="PLAN")]
StateOpt = Annotated[str | None, typer.Option(
    "--state", help="Journal and lease: a SQLite file (./state.db) or a database URL "
    "(postgresql+psycopg://...). Default: $SHIFTOVER_STATE, else this host's state file: "
    "/var/lib/shiftover/state.db for root, ~/.local/state/shiftover/state.db otherwise.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
EnvOpt = Annotated[str | None, typer.Option(
    "--env", help="The plan's environment to use (a name under its environments:, merged over "
    "the base plan): integration, staging, production...", show_default=False)]
Reason = Annotated[str, typer.Option("--reason", "-m", help="Why (goes into the journal).")]


def _state_url(state: str | None) -> str:
    """``--state``: a database URL, or the path of a SQLite file (what people type:
    ``--state ./state.db``, ``--state /srv/shiftover/state.db``); else this host's."""
    if state is None:
        return default_state_url()
    try:
        return state_url(state, source="--state")
    except StoreError as exc:  # a flag the user can fix: exit 2
        raise BadInput(exc.message, hint=exc.hint) from None


def _where(url: str) -> str:
    """Where a state URL points, for people: a SQLite file's path, else the URL
    without its password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


def _store(state: str | None, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Store:
    return open_store(_state_url(state), busy_timeout=busy_timeout)


@contextmanager
def _read_only_store(state: str | None, *, quiet: bool = False) -> Iterator[tuple[Store | None, dict[str, Any]]]:
    """The journal for reading, never created: (None, info) when there is none yet."""
    url = _state_url(state)
    info: dict[str, Any] = {"where": _where(url), "exists": True}
    try:
        store = open_store(url, create=False)
    except StoreMissing:
        info["exists"] = False
        if not quiet:
            err.print(f"no journal yet at {info['where']}: nothing has been run with this state "
                      "(pass --state, or set SHIFTOVER_STATE, to read another one)",
                      highlight=False, soft_wrap=True, markup=False)
        yield None, info
        return
    with store:
        yield store, info


def _program() -> str:
    """How the user invoked us, as a command that works when pasted."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "shiftover":
        found = shutil.which("shiftover")
        if found and os.path.realpath(found) == os.path.realpath(argv0):
            return "shiftover"
        return shlex.quote(argv0)
    return "shiftover"


def _cmds(plan: Path, state: str | None, env: str | None = None) -> views.Commands:
    shown_state = state
    if state is not None:
        try:
            url = make_url(state)
            if url.password:
                shown_state = url.render_as_string(hide_password=True)
        except ArgumentError:
            pass
    return views.Commands(str(plan), shown_state, _program(), env)


_PLAN_COMMAND = re.compile(r"`shiftover (\w+) PLAN`")


def _with_plan(text: str, cmd: views.Commands) -> str:
    """Routers name commands as ``shiftover rollback PLAN`` (they do not know the plan's
    path): the CLI puts the real command in, so the hint works when pasted."""
    return _PLAN_COMMAND.sub(lambda m: f"`{cmd(m.group(1))}`", text)


def _print_hints(hints: list[str], prefix: str = "next: ") -> None:
    """Commands to paste, one per line, never wrapped (a wrapped command breaks)."""
    for h in hints:
        out.print(f"{prefix}{h}", highlight=False, soft_wrap=True, markup=False)


def _write_text(path: Path, text: str, what: str, hint: str) -> None:
    """Write a document the user asked for (-o); a path that cannot be written is bad
    input (exit 2) saying why, not a traceback."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write the {what} to {path}: {exc.strerror or exc}",
                       hint=hint) from None


def _load(plan: Path, env: str | None = None) -> LoadedPlan:
    """The whole plan (needs its ${VAR}s), with environment ``env``'s overlay merged
    in; its secrets join the redactor at once."""
    loaded = load_plan(plan, environment=env)
    _SECRETS.update(s for s in loaded.secrets if s)
    return loaded


def _try_load(plan: Path, env: str | None = None) -> tuple[LoadedPlan | None, ShiftoverError | None]:
    try:
        return _load(plan, env), None
    except ShiftoverError as exc:
        return None, exc


def _fold(events: list[Event]) -> RunState:
    return ev.fold(RunState(), events)  # an event it cannot apply changes nothing


# --- commands --------------------------------------------------------------------------------


@command()
def validate(plan: PlanArg, offline: Annotated[bool, typer.Option("--offline", help="Check the file only; do not contact the router or gates.")] = False,
             env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Check the plan, then preflight: the router's current split and each gate once.

    A plan with environments: without --env, every environment's plan is checked
    (the file only); with --env, that environment is checked and preflighted.

    Exits 2 when the router cannot be read, a gate FAILs, or a gate cannot be
    evaluated at all (refused, bad query, unknown server): "no data yet" is fine."""
    names = plan_environments(plan)
    if env is None and names:
        _validate_environments(plan, names, as_json=as_json)
        return
    loaded = _load(plan, env)
    p = loaded.plan
    mapped = views.mapped_steps(p)
    cmd = _cmds(plan, None, env)
    if offline:
        if as_json:
            _print_json({"valid": True, "service": p.service, "steps": views.steps_json(p)})
        else:
            out.print(f"[green]✓[/] {_e(str(plan))}: valid plan for {p.service}", highlight=False)
            for line in mapped:
                out.print(f"  note: {line}", highlight=False, markup=False)
        return
    pf = preflight(p, SystemClock(), redact=loaded.redact)
    errored = [r for r in pf.results if r.error]
    load_error = None if p.load is None else load_preflight(p.load, base_dir=plan.parent)
    with _reader_may_leave():
        if as_json:
            _print_json({
                "valid": pf.ok and load_error is None, "service": p.service, "router": pf.router,
                "weights": None if pf.weights is None else float(pf.weights.new_percent),
                "weights_exact": None if pf.weights is None else pf.weights.exact,
                "router_error": None if pf.router_error is None else _with_plan(pf.router_error, cmd), "router_details": list(pf.facts.details),
                "warnings": list(pf.facts.warnings),
                "rollback_tail_seconds": pf.facts.tail_seconds, "steps": views.steps_json(p),
                "gates": [r.to_dict() for r in pf.results],
                "hook_problems": list(pf.hook_problems),
                **({} if p.load is None else {"load": {"ok": load_error is None,
                                                       "error": None if load_error is None else loaded.redact(load_error)}})})
        else:
            out.print(f"[green]✓[/] {_e(str(plan))}: valid plan for [bold]{p.service}[/]"
                      + (f" in {_e(env)}" if env else ""), highlight=False)
            for line in mapped:
                out.print(f"  note: {line}", highlight=False, markup=False)
            if pf.router_error:
                out.print(f"[red]✗[/] router {_e(pf.router)}: {_e(_with_plan(pf.router_error, cmd))}",
                          highlight=False, soft_wrap=True)
            else:
                out.print(f"[green]✓[/] router {_e(pf.router)}: {pf.weights} on new", highlight=False)
                for line in pf.facts.details:
                    out.print(f"    {line}", highlight=False, markup=False)
                if pf.facts.tail_seconds:
                    out.print(f"  rollback: the router confirms 0% at once (Route53: when the change "
                              f"is INSYNC); resolvers may then keep sending clients to the new "
                              f"environment for up to {pf.facts.tail_seconds:g}s (the records' TTL)",
                              highlight=False, markup=False)
                for line in pf.facts.warnings:
                    out.print(f"[yellow]![/] {_e(line)}", highlight=False)
            out.print(views.gates_table(pf.results, loaded.redact))
            for r in errored:
                out.print(f"[red]✗[/] gate [bold]{_e(loaded.redact(r.gate))}[/] cannot be evaluated: "
                          f"{_e(r.reason)}", highlight=False)
            if errored:
                out.print("  a gate that cannot be evaluated would hold the run without evidence: "
                          "fix it, then validate again:", highlight=False)
                _print_hints([cmd("validate")], prefix="  ")
            _print_hook_problems(pf.hook_problems, cmd)
            if p.load is not None and load_error is None:
                out.print(f"[green]✓[/] load: {p.load.rate:g} req/s can be sent (the plan's load block)",
                          highlight=False)
            elif load_error is not None:
                out.print(f"[red]✗[/] load: {_e(loaded.redact(load_error))}", highlight=False, soft_wrap=True)
            if pf.ok and load_error is None:
                _print_hints([cmd("plan"), cmd("run")])
    if not pf.ok or load_error is not None:  # the run would not start
        raise typer.Exit(2)


def _print_hook_problems(problems: tuple[str, ...], cmd: views.Commands) -> None:
    for line in problems:
        out.print(f"[red]✗[/] {_e(line)}", highlight=False, soft_wrap=True)
    if problems:
        out.print("  a hook that cannot start would fail at its step, with traffic on the new "
                  "environment: install it, fix its path (commands start in the working "
                  "directory of `shiftover run`), then validate again:", highlight=False,
                  soft_wrap=True)
        _print_hints([cmd("validate")], prefix="  ")


def _validate_environments(plan: Path, names: list[str], *, as_json: bool) -> None:
    """Every environment's effective plan, checked offline; all problems at once."""
    problems: list[ShiftoverError] = []
    plans: dict[str, LoadedPlan] = {}
    for name in names:
        loaded, error = _try_load(plan, name)
        if loaded is not None:
            plans[name] = loaded
        elif error is not None:
            problems.append(error)
    if as_json:
        _print_json({"valid": not problems, "service": next(
            (lp.plan.service for lp in plans.values()), None),
            "environments": {n: {"valid": n in plans, **({"steps": views.steps_json(plans[n].plan)}
                                                          if n in plans else {})} for n in names},
            "errors": [_redact(str(e)) for e in problems]})
    else:
        for name in names:
            if name in plans:
                out.print(f"[green]✓[/] {_e(str(plan))} --env {_e(name)}: valid plan for "
                          f"{plans[name].plan.service}", highlight=False, soft_wrap=True)
        for e in problems:
            _print_error(e)
        if not problems:
            _print_hints([_cmds(plan, None, names[0])("validate"),
                          f"{_program()} diff {shlex.quote(str(plan))} --env {shlex.quote(names[0])}"
                          f" --env {shlex.quote(names[-1])}"],
                         prefix="preflight an environment's router and gates: " if len(names) == 1
                         else "next: ")
    if problems:
        raise typer.Exit(2)


@command("diff")
def diff_environments(
        plan: PlanArg,
        envs: Annotated[list[str] | None, typer.Option(
            "--env", help="An environment to compare; give --env twice (e.g. --env staging --env production).",
            show_default=False)] = None,
        as_json: JsonOpt = False) -> None:
    """What differs between two environments' effective plans: router targets, steps (as
    the routers set them), bake and interval, gates and their thresholds, limits,
    approvals. "Would the procedure we rehearsed apply to production?"

    Exit 0 whatever differs (the table is the answer); 2 on bad input."""
    from shiftover.report.diff import GROUPS, diff_plans, show

    envs = envs or []
    names = plan_environments(plan)
    if len(envs) != 2 and len(names) < 2:
        raise BadInput(f"{plan} defines {len(names) or 'no'} environment{'s' if len(names) != 1 else ''}: "
                       "diff compares two of them",
                       hint="add environments: (one overlay each, e.g. staging and production) "
                       "to the plan; see docs/environments.md")
    if len(envs) != 2:
        example = " ".join(f"--env {shlex.quote(n)}" for n in names[:2])
        raise BadInput(f"give two environments to compare (got {len(envs)})",
                       hint=f"{_program()} diff {shlex.quote(str(plan))} {example}")
    a, b = (_load(plan, e) for e in envs)
    redact = _redact
    differences = diff_plans(a.plan, b.plan, redact=redact)
    if as_json:
        _print_json({"service": a.plan.service, "a": envs[0], "b": envs[1],
                     "same": not differences,
                     "differences": [d.to_dict() for d in differences]})
        return
    if not differences:
        out.print(f"{envs[0]} and {envs[1]} run the same procedure: no difference in the "
                  f"effective plans of {a.plan.service}", highlight=False, markup=False)
        return
    counts = {g: sum(1 for d in differences if d.group == g) for g in GROUPS}
    out.print(f"{a.plan.service}: {len(differences)} difference{'s' if len(differences) != 1 else ''} "
              f"between {envs[0]} and {envs[1]} ("
              + ", ".join(f"{g} {n}" for g, n in counts.items() if n) + ")",
              highlight=False, markup=False)
    table = Table(show_edge=False)
    for name in ("what", envs[0], envs[1]):
        table.add_column(name, overflow="fold")
    last_group = None
    for d in differences:
        if d.group != last_group and last_group is not None:
            table.add_section()
        last_group = d.group
        table.add_row(*(Text(x) for x in (d.field, show(d.a, d.a_has, d.field),
                                          show(d.b, d.b_has, d.field))))
    out.print(table)


def _refuse_a_misconfigured_router(router: Any, cmd: views.Commands) -> None:
    """Before the lease is taken: a router whose target is not what the plan says (no
    such record, listener or target group; both weights 0; a third target taking
    traffic) is bad input, exit 2, nothing changed. Any other read error is the run's
    to handle (it holds, and counts it)."""
    try:
        router.read()
    except RouterConfigError as exc:
        raise RouterConfigError(f"{exc.message} (nothing was changed)",
                                hint=_with_plan(exc.hint, cmd) if exc.hint else
                                f"fix the plan's router, then run `{cmd('validate')}` again") from None
    except ShiftoverError:
        pass


@command("plan")
def show_plan(plan: PlanArg, state: StateOpt = None, env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Show the steps as the router will set them, the minimum duration, the approvals,
    the lease TTL a run will use and the current state (read-only)."""
    loaded = _load(plan, env)
    p = loaded.plan
    with _read_only_store(state) as (store, info):
        events = store.events(service=p.journal_key) if store is not None else []
    st = _fold(events)
    word = views.status_report(
        p, st, events, router=None, run=None, limits=_limits(p, p, events),
        now=SystemClock().now(), cmd=_cmds(plan, state, env), journal=info)
    data: dict[str, Any] = {
        "service": p.service, "environment": p.environment, "rehearsal": p.rehearsal, "steps": p.steps, "step_weights": views.steps_json(p),
        "bake_seconds": p.bake, "interval_seconds": p.interval,
        "minimum_duration_seconds": minimum_duration(p), "approvals": p.approvals,
        "failure_limit": p.failure_limit, "error_limit": p.error_limit,
        "inconclusive_limit": p.inconclusive_limit, "on_failure": p.on_failure,
        "lease_ttl_seconds": default_lease_ttl(p), "min_lease_ttl_seconds": min_lease_ttl(p),
        "rollback_notes": [n for n in (m.rollback_note() for m in p.members) if n],
        "gates": [{"name": loaded.redact(g.name), "type": g.type} for g in p.normal_state],
        "current": {k: word[k] for k in ("status", "status_detail", "journal_weight", "step",
                                         "step_index", "waiting_approval", "paused", "started",
                                         "outcome", "journal")},
    }
    if as_json:
        _print_json(data)
        return
    out.print(f"[bold]{p.service}[/]: {len(p.steps)} steps, bake {p.bake:g}s each, "
              f"check every {p.interval:g}s", highlight=False)
    out.print(views.steps_table(p))
    for line in views.mapped_steps(p):
        out.print(f"  note: {line}", highlight=False, markup=False)
    out.print(views.steps_line(p, st))
    out.print(f"minimum duration: {data['minimum_duration_seconds'] / 60:.1f} min (approvals not counted)",
              highlight=False)
    out.print(f"on {p.failure_limit} consecutive failed checks: {p.on_failure}; stuck (same "
              f"action) after {p.error_limit} checks that cannot be evaluated or "
              f"{p.inconclusive_limit} without a verdict", highlight=False)
    for note in data["rollback_notes"]:
        out.print(f"rollback: {note}", highlight=False, markup=False)
    out.print(f"lease: {data['lease_ttl_seconds']:g}s by default (--lease-ttl, at least "
              f"{data['min_lease_ttl_seconds']:g}s): a run that dies holds the router this long",
              highlight=False)
    for g in p.normal_state:
        out.print(f"  gate [bold]{_e(loaded.redact(g.name))}[/] ({g.type})", highlight=False)
    status_word = str(word["status"]).replace("_", " ")
    out.print(f"now: {status_word}" + (f" — {word['status_detail']}" if word["status_detail"] else "")
              + ("" if info["exists"] else f" (no journal yet at {info['where']})"),
              highlight=False, markup=False)


def _limits(p: Plan | None, outline: Plan | PlanOutline, events: list[Event]) -> views.Limits:
    """The limits status compares counts with: the plan's (when it loads), else the
    last run's (journalled), else the defaults."""
    if p is not None:
        return views.Limits(p.failure_limit, p.error_limit, p.inconclusive_limit, p.bake, "plan")
    started = next((e for e in reversed(events) if e.kind == ev.RUN_STARTED), None)
    summary = started.data.get("plan") if started is not None else None
    failure = outline.failure_limit
    if isinstance(summary, dict):
        def num(key: str) -> Any:
            v = summary.get(key)
            return v if isinstance(v, int | float) and not isinstance(v, bool) else None
        return views.Limits(failure, num("error_limit"), num("inconclusive_limit"),
                            num("bake"), "journal")
    return views.Limits(failure, Plan.model_fields["error_limit"].default,
                        Plan.model_fields["inconclusive_limit"].default, None, "defaults")


class _Progress:
    """Progress lines (stdout not a terminal): one per event, except that an event
    that says the same as the last one of its kind (a passing check every interval,
    the bake restarting on every inconclusive check) is shown once a minute, with
    how many there were in between."""

    def __init__(self) -> None:
        self.status = ""
        self._last: dict[str, tuple[str, float, int]] = {}  # kind -> (text, at, repeats)

    def line(self, kind: str, at: float, text: str) -> str | None:
        if kind not in (ev.CHECK, ev.BAKE_STARTED):
            return f"{views.when(at)} {text}"
        last = self._last.get(kind)
        if last is not None and last[0] == text and at - last[1] < 60:
            self._last[kind] = (text, last[1], last[2] + 1)
            return None
        more = f" (and {last[2]} more like it)" if last is not None and last[0] == text \
            and last[2] else ""
        self._last[kind] = (text, at, 0)
        return f"{views.when(at)} {text}{more}"


UNDO_LEASE_WAIT = 90.0  # the most `rollback` waits out a dead run's lease before its undos
NOTIFY_CLOSE = 5.0  # seconds a run's end waits for notifications still queued


@command()
def run(plan: PlanArg, state: StateOpt = None, as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line instead of the live view, then a summary line.")] = False,
        max_duration: Annotated[str | None, typer.Option(help="Stop (held, exit 4) after this long: 90s, 30m, 2h.")] = None,
        lease_ttl: Annotated[str | None, typer.Option(help="How long a dead run's lease blocks the router target (default: max(30s, 2 x the longest tick); shorter than one tick is refused).")] = None,
        env: EnvOpt = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Read the router and evaluate every gate once, move nothing, and print the timeline the plan implies (steps, bakes, approvals, earliest finish, rollback bound). Exit 0 when a run could start, 2 when not.")] = False) -> None:
    """Run the plan: shift step by step, check the normal state, roll back when it breaks.

    Exit codes:
      0  promoted: 100% on the new environment
      1  internal error
      2  bad input (plan, flags)
      3  rolled back: 0% on the new environment
      4  held: stopped (Ctrl-C, SIGTERM, --max-duration) or paused, weights left in place; run again to resume
      5  the router target's lease is held by another run, or this run lost it"""
    loaded = _load(plan, env)
    p = loaded.plan
    max_seconds = _seconds("--max-duration", max_duration, positive=True)
    ttl = check_lease_ttl(p, _seconds("--lease-ttl", lease_ttl))
    cmd = _cmds(plan, state, env)
    if dry_run:
        _dry_run(plan, loaded, cmd, state, as_json=as_json)
        return
    with _store(state, busy_timeout=JOURNAL_BUSY_TIMEOUT) as store:
        shown = _Progress()

        def write(item: Any) -> None:
            if isinstance(item, str):
                _line(item)
            else:
                _json_line(item)

        # `run --json | head`: the pump sees the closed pipe, the run stops cleanly
        # and journals run_stopped; a stalled reader only delays (or drops) lines
        pump = _OutputPump(write, lambda: runner.stop())

        def progress(kind: str, at: float, text: str) -> None:
            line = shown.line(kind, at, text)
            if line is not None:
                pump.put(line)

        def on_event(e: Event) -> None:
            if as_json:
                pump.put(views.event_dict(e))
            elif live is None:  # not a terminal: one progress line per event
                progress(e.kind, e.at, views.describe_event(e))

        def on_tick(st: RunState, obs: Observation, d: Decision) -> None:
            hint = views.decision_hint(d, st, cmd)
            if live is not None:  # drawn by the painter thread, never from the loop
                latest["view"] = views.live_view(p, st, obs, d, list(runner.recent),
                                                 redact=loaded.redact, hint=hint)
            elif not as_json and d.status and d.status != shown.status:
                shown.status = d.status
                progress("status", SystemClock().now(),
                         f"{d.status.replace('_', ' ')}: {loaded.redact(d.reason)}"
                         + (f" — next: {hint}" if hint else ""))

        live: Live | None = None
        def on_progress(text: str) -> None:  # a slow router write, polled (Route53 INSYNC)
            if as_json:
                pump.put({"progress": True, "router": text})
            elif live is not None:
                latest["note"] = text
            else:
                pump.put(f"  {text}")

        notifier = None
        if p.notify:  # delivered from queues on their own threads: never waited on
            notifier = Notifier(p.notify, redact=loaded.redact, commands=cmd, service=p.service)
            notifier.prime(store.events(service=p.journal_key))
        runner = build_runner(p, store, SystemClock(), redact=loaded.redact, on_event=on_event,
                              on_tick=on_tick, lease_ttl=ttl, on_progress=on_progress,
                              commands=cmd, notifier=notifier)

        _refuse_a_misconfigured_router(runner.router, cmd)

        def stop(signum: int, frame: FrameType | None) -> None:
            runner.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        latest: dict[str, Any] = {}
        synthetic: SyntheticLoad | None = None
        try:
            # the plan's load: block (a rehearsal's traffic) runs from before the first step
            synthetic = _start_synthetic_load(p, plan, as_json=as_json)
            if as_json:
                try:
                    result = runner.run(max_duration=max_seconds)
                except LeaseHeld as exc:  # scripts read the summary line: it says why too
                    pump.close()
                    with _reader_may_leave():
                        _json_line({
                            "summary": True, "outcome": "lease_held", "exit_code": exc.exit_code,
                            "status": "lease_held", "final_weight": None, "final_exact": None,
                            "unwatched": False, "reason": exc.message, "run_id": runner.run_id,
                            "hints": []})
                    raise
            elif not out.is_terminal:
                result = runner.run(max_duration=max_seconds)
            else:
                with Live(console=out, refresh_per_second=4, transient=False) as lv:
                    live = lv
                    done = threading.Event()

                    def paint() -> None:  # a stalled terminal blocks this thread, not the run
                        while not done.wait(0.25):
                            view = latest.pop("view", None)
                            if view is not None:
                                lv.update(view)
                            note = latest.pop("note", None)
                            if note is not None:
                                lv.console.print(f"  {note}", highlight=False, markup=False)

                    painter = threading.Thread(target=paint, name="live-view", daemon=True)
                    painter.start()
                    try:
                        result = runner.run(max_duration=max_seconds)
                    finally:
                        done.set()
                        painter.join(2)
                        view = latest.pop("view", None)
                        if view is not None:
                            lv.update(view)
        finally:
            load_summary = synthetic.stop() if synthetic is not None else None
            if notifier is not None:  # what is still queued gets a moment, then is dropped
                notifier.close(timeout=NOTIFY_CLOSE)
                runner.journal_notify_failures()
        pump.close()
        final = result.final_weight
        unwatched = (result.outcome in ("held", "lease_lost", "store_failed")
                     and final is not None and final.new_percent > 0)
        hints: list[str] = []
        st = runner.state  # refreshed by the run as it stopped
        if result.exit_code == 4 and (st.rolling_back or st.rollback_requested):
            hints.append(cmd("rollback"))
        elif result.exit_code == 4:
            waiting = views.awaiting_approval(st)
            if waiting is not None:
                hints.append(cmd("approve", "--step", f"{waiting:g}"))
            if st.paused:
                hints.append(cmd("resume"))
            hints += [cmd("run"), cmd("rollback")]
        elif result.exit_code == 5 and final is not None and final.new_percent > 0:
            hints.append(cmd("rollback"))
        # the exit code is the run's outcome, whoever reads (or stopped reading)
        with _reader_may_leave():
            if as_json and not pump.closed:
                _json_line({
                    "summary": True, "outcome": result.outcome, "exit_code": result.exit_code,
                    "status": result.status,
                    "final_weight": None if final is None else float(final.new_percent),
                    "final_exact": None if final is None else final.exact,
                    "unwatched": unwatched, "reason": result.reason, "run_id": result.run_id,
                    "hints": hints, **({"load": load_summary} if load_summary else {})})
            elif not pump.closed:
                style = {0: "bold green", 3: "bold red"}.get(result.exit_code, "bold yellow")
                out.print(f"[{style}]{result.outcome}[/]: {_e(loaded.redact(result.reason))}",
                          highlight=False)
                if load_summary:
                    out.print(summary_text(load_summary), highlight=False, markup=False)
                if unwatched:
                    assert final is not None
                    out.print(f"[bold yellow]unwatched: {final} on new, no run[/] — that share "
                              "of the traffic stays on the new environment and nothing checks it",
                              highlight=False)
                _print_hints(hints)
    raise typer.Exit(result.exit_code)


def _dry_run(plan: Path, loaded: LoadedPlan, cmd: views.Commands, state: str | None, *,
             as_json: bool) -> None:
    """``run --dry-run``: the preflight, and the timeline the plan implies. No lease
    taken, no journal written, no router write, no load: nothing anyone else can see.
    It reads what would stop a run: the router, every gate, the load block's target,
    and the router target's lease."""
    p = loaded.plan
    now = SystemClock().now()
    pf = preflight(p, SystemClock(), redact=loaded.redact)
    load_error = None if p.load is None else load_preflight(p.load, base_dir=plan.parent)
    holder = _lease_holder(p, state)
    timeline = plan_timeline(p)
    at = pf.weights
    # steps below the router's split are done; the one it is at bakes again (a resumed
    # campaign re-bakes); a run from 0% checks once at 0% before its first write
    done = [at is not None and t.split < at for t in timeline]
    first = p.interval if at is None or at.new_percent == 0 else 0.0
    start = next((t.earliest_start for t, d in zip(timeline, done, strict=True) if not d),
                 timeline[-1].earliest_end) - first
    remaining = timeline[-1].earliest_end - start
    would_start = pf.ok and load_error is None and holder is None
    bound = rollback_bound(p, pf.facts.tail_seconds)
    insync = any(hasattr(m, "insync_timeout") for m in p.members)
    errored = [r for r in pf.results if r.error]
    router_error = None if pf.router_error is None else _with_plan(pf.router_error, cmd)
    data = {
        "dry_run": True, "would_start": would_start, "service": p.service, "environment": p.environment,
        "rehearsal": p.rehearsal, "router": pf.router,
        "router_error": router_error,
        "weights": None if pf.weights is None else float(pf.weights.new_percent),
        "weights_exact": None if pf.weights is None else pf.weights.exact,
        "gates": [r.to_dict() for r in pf.results], "hook_problems": list(pf.hook_problems),
        "notify": [{"name": name, "kind": spec.kind, "where": loaded.redact(where_to(spec)),
                    "events": list(spec.events or ())} for name, spec in
                   zip(target_names(p.notify), p.notify, strict=True)],
        "hooks": [{"name": h.name, "at": h.place, "does": loaded.redact(h.describe()),
                   "undo": None if h.undo is None else loaded.redact(h.undo.describe()),
                   "idempotent": h.idempotent} for h in p.hooks],
        "timeline": [{**t.to_dict(), "done": d,
                      "hooks": [h.name for h in hooks_at(p, f"{t.percent:g}")],
                      "earliest_start_at": None if d else now + t.earliest_start - start,
                      "earliest_end_at": None if d else now + t.earliest_end - start}
                     for t, d in zip(timeline, done, strict=True)],
        "earliest_finish_seconds": remaining, "earliest_finish_at": now + remaining,
        "approvals": p.approvals, "rollback_bound": bound.to_dict(), "on_failure": p.on_failure,
        "lease_held_by": None if holder is None else holder.to_dict(),
        **({} if p.load is None else {"load": {"ok": load_error is None, "error": None if load_error
                                               is None else loaded.redact(load_error)}}),
    }
    with _reader_may_leave():
        if as_json:
            _print_json(data)
        else:
            where = f" in {p.environment}" if p.environment else ""
            out.print(f"[bold]dry run[/] of {_e(p.service)}{_e(where)}: nothing is moved, "
                      "nothing is journalled", highlight=False)
            if pf.router_error:
                out.print(f"[red]✗[/] router {_e(pf.router)}: {_e(router_error or '')}",
                          highlight=False, soft_wrap=True)
            else:
                out.print(f"[green]✓[/] router {_e(pf.router)}: {pf.weights} on new now",
                          highlight=False)
            out.print(views.gates_table(pf.results, loaded.redact))
            for r in errored:
                out.print(f"[red]✗[/] gate [bold]{_e(loaded.redact(r.gate))}[/] cannot be "
                          f"evaluated: {_e(r.reason)}", highlight=False)
            if load_error is not None:
                out.print(f"[red]✗[/] load: {_e(loaded.redact(load_error))}", highlight=False,
                          soft_wrap=True)
            _print_hook_problems(pf.hook_problems, cmd)
            if holder is not None:
                out.print(f"[red]✗[/] the router target is leased by {_e(holder.holder)} for "
                          f"{max(0.0, holder.expires_in):.0f}s more: a run now would be refused "
                          "(exit 5)", highlight=False, soft_wrap=True)
            table = Table(title="the timeline the plan implies (approvals given at once; T: "
                          "the run starts)", show_edge=False)
            cols = ["step", "router sets", "bake", "approval", "earliest start", "baked by"]
            if p.hooks:
                cols.insert(4, "hooks")
            for col in cols:
                table.add_column(col, no_wrap=col.startswith(("earliest", "baked")))
            for t, d in zip(timeline, done, strict=True):
                names = ", ".join(h.name for h in hooks_at(p, f"{t.percent:g}"))
                table.add_row(f"{t.percent:g}%", str(t.split), _clock_span(t.bake),
                              "yes" if t.approval else "", *([names] if p.hooks else []),
                              "done (router is past it)" if d else
                              f"T+{_clock_span(t.earliest_start - start)}  {views.when(now + t.earliest_start - start)}",
                              "" if d else
                              f"T+{_clock_span(t.earliest_end - start)}  {views.when(now + t.earliest_end - start)}")
            out.print(table)
            for place in ("start", "promoted"):
                names = ", ".join(h.name for h in hooks_at(p, place))
                if names:
                    out.print(f"hooks at {place}: {_e(names)}", highlight=False)
            for name, spec in zip(target_names(p.notify), p.notify, strict=True):
                out.print(f"notifies {_e(name)} ({spec.kind}, {_e(loaded.redact(where_to(spec)))}): "
                          f"{_e(', '.join(spec.events or ()) or 'every event')}", highlight=False,
                          soft_wrap=True)
            if p.hooks:
                undone = [h.name for h in reversed(p.hooks) if h.undo is not None]
                out.print("on rollback, after the router confirms 0%, the undo of each hook that "
                          f"ran, last first ({_e(', '.join(undone) or 'none has an undo')}); "
                          "the times below do not count the hooks' own time", highlight=False,
                          soft_wrap=True)
            out.print(f"earliest finish: {_clock_span(remaining)} from the start "
                      f"({views.when(now + remaining)} if started now), plus the time approvals "
                      "take", highlight=False, markup=False, soft_wrap=True)
            out.print(("rollback bound" if p.on_failure == "rollback" else "bound to the pause")
                      + f": {_clock_span(bound.total if p.on_failure == 'rollback' else bound.detect)}"
                      f" from the first failing measurement to "
                      + ("0%" if p.on_failure == "rollback" else "paused (weights stay)")
                      + f" ({p.failure_limit} failed check{'s' if p.failure_limit != 1 else ''} every "
                      f"{p.interval:g}s + the slowest gate {bound.detect - p.failure_limit * p.interval:g}s"
                      + ("" if p.on_failure != "rollback" else
                         f", a router write up to {_clock_span(bound.write)}"
                         + (" until Route53 reports it INSYNC" if insync else "")
                         + (f", then DNS caches keep some clients on new for up to {bound.tail:g}s"
                            if bound.tail else
                            ", then DNS caches keep some clients on new for the records' TTL, not "
                            "known: the router was not read" if pf.router_error and insync else ""))
                      + f"); on_failure: {p.on_failure}",
                      highlight=False, markup=False, soft_wrap=True)
            if would_start:
                _print_hints([cmd("run")])
            elif holder is not None and pf.ok and load_error is None:
                out.print("wait for that run to end (or its lease to expire), then:",
                          highlight=False)
                _print_hints([cmd("status"), cmd("run", "--dry-run")], prefix="  ")
            else:
                out.print("a run would not start like this: fix what is marked ✗, then:",
                          highlight=False)
                _print_hints([cmd("run", "--dry-run")], prefix="  ")
    if not would_start:
        raise typer.Exit(5 if holder is not None and pf.ok and load_error is None else 2)


def _lease_holder(p: Plan, state: str | None) -> Any:
    """Who holds a live lease on one of the plan's router targets, or None (read-only:
    no journal yet means nobody)."""
    try:
        router = build_router(p.members)
        keys_of = getattr(router, "lease_keys", None)
        keys = list(keys_of()) if keys_of is not None else [router.lease_key()]
    except ShiftoverError:
        return None
    with _read_only_store(state, quiet=True) as (store, _info):
        if store is None:
            return None
        for key in keys:
            run = find_run(store, p.journal_key, key)
            if run is not None and run.lease_live and run.key == key:
                return run
    return None


def _clock_span(seconds: float) -> str:
    """``1h05m``, ``5m``, ``42s``: a duration for a timeline."""
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m" + (f"{sec:02d}s" if sec else "")
    if m:
        return f"{m}m" + (f"{sec:02d}s" if sec else "")
    return f"{sec}s"


def _start_synthetic_load(p: Plan, plan: Path, *, as_json: bool) -> SyntheticLoad | None:
    """The plan's ``load:`` block (a rehearsal's traffic), started before the first step."""
    if p.load is None:
        return None
    synthetic = SyntheticLoad(p.load, base_dir=plan.parent)
    if not as_json:
        out.print(synthetic.describe(), highlight=False, markup=False)
    try:
        synthetic.start()
    except BaseException:
        synthetic.stop()
        raise
    return synthetic


@command()
def status(plan: PlanArg, state: StateOpt = None, env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Where the service stands: the router's real split (read now), the journal's,
    any drift, the status word, whether a run is really running, the counts against
    their limits, and what to type next. Read-only: never creates a state file.

    The router is read when the whole plan loads (its ${VAR}s exported); otherwise
    status says why it could not read it and reports the journal alone."""
    outline = load_outline(plan, environment=env)
    loaded, load_error = _try_load(plan, env)
    reading, lease_key = _read_router(loaded, load_error)
    with _read_only_store(state) as (store, info):
        if store is not None:
            events = store.events(service=outline.journal_key)
            run_holder = find_run(store, outline.journal_key, lease_key)
        else:
            events, run_holder = [], None
    info["events"] = len(events)
    st = _fold(events)
    shape: Plan | PlanOutline = loaded.plan if loaded is not None else outline
    report = views.status_report(
        shape, st, events, router=reading, run=run_holder,
        limits=_limits(loaded.plan if loaded else None, outline, events),
        now=SystemClock().now(), cmd=_cmds(plan, state, env), journal=info)
    if as_json:
        _print_json(report)
    else:
        out.print(views.status_view(redact_values(report, _redact)))
        _print_hints(report["hints"])


def _read_router(loaded: LoadedPlan | None,
                 load_error: ShiftoverError | None) -> tuple[views.RouterReading, str | None]:
    if loaded is None:
        lines = [x.strip() for x in str(load_error or "the plan did not load").splitlines()]
        # "plan.yaml: 2 problems in the plan:" is followed by the problems: show the first
        first = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
        return views.RouterReading(error=_redact(
            f"not read: the whole plan is needed to reach the router ({first})")), None
    target = key = None
    try:
        router = build_router(loaded.plan.members)
        target = loaded.redact(router.describe())
        key = router.lease_key()  # known even when the router does not answer
        return views.RouterReading(weights=router.read(), target=target), key
    except ShiftoverError as exc:
        return views.RouterReading(error=loaded.redact(exc.message), target=target), key
    except Exception as exc:  # a plugin's bug must not hide the journal's state
        return views.RouterReading(error=loaded.redact(f"{type(exc).__name__}: {exc}"),
                                   target=target), key


@command()
def history(plan: PlanArg, state: StateOpt = None, as_json: Annotated[bool, typer.Option(
                "--json", help="One JSON object per event (JSON Lines).")] = False,
            limit: Annotated[int, typer.Option(min=0, help="Show the last N events (0: all).")] = 50,
            every: Annotated[bool, typer.Option("--all", help="Every event (same as --limit 0).")] = False,
            run_id: Annotated[str | None, typer.Option("--run", help="Only the events of this run (its run id, as `run` and `history` show it; `operator` for operator actions).")] = None,
            env: EnvOpt = None) -> None:
    """The journal of the service, oldest first. Read-only: never creates a state file.

    With --env, the environment's journal, then one line per other environment of the
    plan: how many times the cutover was rehearsed there, when last and how it ended."""
    p = load_outline(plan, environment=env)
    _try_load(plan, env)  # only to learn the plan's secrets, so that none is echoed
    others = [n for n in plan_environments(plan) if n != env]
    with _read_only_store(state) as (store, info):
        if store is None:
            events: list[Event] = []
            runs: list[str] = []
            rehearsed = []
        else:
            events = store.events(service=p.journal_key, run_id=run_id)
            runs = [] if events or run_id is None else list(dict.fromkeys(
                e.run_id for e in store.events(service=p.journal_key)))
            rehearsed = rehearsals(store, p.service, environments=others) \
                if env is not None and others else []
    if run_id is not None and not events and info["exists"]:
        raise BadInput(f"no events of run {run_id!r} in the journal of {p.journal_key} at {info['where']}",
                       hint=("its runs, oldest first: " + ", ".join(runs)) if runs
                       else "this journal has no events for the service yet")
    total = len(events)
    if limit and not every and total > limit:
        events = events[-limit:]
        err.print(f"showing the last {limit} of {total} events: --all for every one",
                  highlight=False)
    if as_json:
        for e in events:
            _json_line(views.event_dict(e))
    else:
        title = f"{p.journal_key}: {len(events)} events" + (f" of run {run_id}" if run_id else "")
        out.print(views.events_table(events, title=title, show_run=run_id is None))
        for r in rehearsed:  # the other environments' campaigns: "rehearsed on staging 3 times"
            out.print(rehearsal_text(r), highlight=False, markup=False, soft_wrap=True)


def _operator(plan: Path, state: str | None, kind: str, data: dict[str, Any],
              env: str | None = None) -> bool:
    """Journal an operator action; True when a run is running (it acts on it within a
    fraction of a second). Needs only the plan's outline: no secrets."""
    p = load_outline(plan, environment=env)
    _try_load(plan, env)  # only to learn the plan's secrets, so that none is echoed
    # what an operator types goes into the journal, and from there into reports: the
    # plan's secrets and URL credentials are masked first
    data = redact_values(data, lambda t: mask_userinfo(_redact(t)))
    with _store(state) as store:
        before = _fold(store.events(service=p.journal_key))
        e = store.append(service=p.journal_key, run_id="operator", kind=kind,
                         at=SystemClock().now(), data=data, actor=operator_identity())
        live = live_lease(store, p.journal_key) is not None
    out.print(f"{views.describe_event(e)} (journal #{e.id})", highlight=False, markup=False)
    if kind == ev.RESUMED and not before.paused:
        out.print("note: the campaign was not paused (this clears the failure counts)",
                  highlight=False)
    if kind == ev.PAUSED and before.paused:
        out.print("note: the campaign was already paused", highlight=False)
    if not live:
        undo = kind == ev.HOOK_ACKED and data.get("phase") == "undo"
        verb = "rollback" if undo else "run"  # an undo's answer is read by the next rollback
        out.print(f"no run is running: this takes effect when `{_cmds(plan, state, env)(verb)}` "
                  "starts", highlight=False, soft_wrap=True, markup=False)
    return live


@command()
def pause(plan: PlanArg, state: StateOpt = None, reason: Reason = "", env: EnvOpt = None) -> None:
    """Hold the running cutover at its current step (checks go on)."""
    _operator(plan, state, ev.PAUSED, {"reason": reason}, env)


@command()
def resume(plan: PlanArg, state: StateOpt = None, reason: Reason = "", env: EnvOpt = None) -> None:
    """Resume a paused cutover (clears the failure count)."""
    _operator(plan, state, ev.RESUMED, {"reason": reason}, env)


@command()
def approve(plan: PlanArg, step: Annotated[float | None, typer.Option(help="The step (percent) to approve; default: the one waiting.")] = None,
            state: StateOpt = None, reason: Reason = "", env: EnvOpt = None) -> None:
    """Approve a step that waits for approval (or, with --step, one ahead of time)."""
    p = load_outline(plan, environment=env)
    if step is None:
        with _read_only_store(state, quiet=True) as (store, _info):
            st = _fold(store.events(service=p.journal_key)) if store is not None else RunState()
        step = views.awaiting_approval(st)
        if step is None:
            listed = ", ".join(f"{a:g}" for a in p.approvals)
            raise BadInput("no step is waiting for approval",
                           hint=(f"approve one ahead of time: "
                                 f"{_cmds(plan, state, env)('approve', '--step', f'{p.approvals[0]:g}')}"
                                 f" (steps that need approval: {listed})") if p.approvals
                           else "this plan has no steps that need approval")
    if step not in p.approvals:
        raise BadInput(f"the {step:g}% step does not need approval",
                       hint=f"steps that need approval: {', '.join(f'{a:g}' for a in p.approvals) or 'none'}")
    _operator(plan, state, ev.APPROVED, {"step": step, "reason": reason}, env)


@command()
def ack(plan: PlanArg,
        hook: Annotated[str, typer.Option("--hook", help="The hook's name (as in the plan's hooks:).", show_default=False)],
        done: Annotated[bool | None, typer.Option("--done/--not-done", help="What you found: it did its work (--done), or it did not and may run again (--not-done).", show_default=False)] = None,
        at: Annotated[str | None, typer.Option("--at", help="Where it ran: a step's percent, start or promoted (default: the one waiting).")] = None,
        undo: Annotated[bool, typer.Option("--undo", help="It is the hook's undo (run on rollback) that you checked.")] = False,
        state: StateOpt = None, reason: Reason = "", env: EnvOpt = None) -> None:
    """Say what a hook did when nobody knows: a run stopped while it ran.

    A hook whose result is unknown and that is not idempotent holds the run until
    an operator checks by hand. --done: it did its work (the run goes on);
    --not-done: it did not (it runs again)."""
    p = load_outline(plan, environment=env)
    cmd = _cmds(plan, state, env)
    with _read_only_store(state, quiet=True) as (store, _info):
        st = _fold(store.events(service=p.journal_key)) if store is not None else RunState()
        live = store is not None and live_lease(store, p.journal_key) is not None
    phase = "undo" if undo else "run"
    # a hook still marked running with no live run: its run died, nobody knows either
    waiting = [h for h in st.hooks if h.status == "unknown" or (h.status == "running" and not live)]
    # an undo done by hand (the runbook's rollback without shiftover) is acknowledged too
    by_hand = []
    for h in pending_undos(st):
        u = st.hook(h.hook, h.at, "undo", h.campaign)
        if u is None or u.status == "failed":  # never ran, or failed: done by hand since
            by_hand.append(replace(h, phase="undo"))
    match = [h for h in waiting + (by_hand if undo else [])
             if h.hook == hook and h.phase == phase and at in (None, h.at)]
    if not match:
        listed = "; ".join(views.ack_command(h, cmd) for h in waiting)
        what = f"the undo of hook {hook!r}" if undo else f"hook {hook!r}"
        raise BadInput(f"{what}{'' if at is None else f' at {at}'} is not waiting for an "
                       "acknowledgement (only a hook whose result is unknown is: a run stopped "
                       "while it ran)",
                       hint=f"waiting: {listed}" if listed else "no hook is waiting for one: "
                       f"see {cmd('status')}")
    if len(match) > 1:
        raise BadInput(f"hook {hook!r} waits at several places: {', '.join(h.at for h in match)}",
                       hint="say which with --at, e.g. " + views.ack_command(match[0], cmd))
    if done is None:
        raise BadInput("say what you found: --done (it did its work) or --not-done (it did "
                       "not; it runs again)", hint=views.ack_command(match[0], cmd))
    h = match[0]
    running = leftovers(hook_tag(p.journal_key, h.campaign, h.hook, h.at))
    if running:  # a dead run's hook still at work (its own session): not done, not undone
        pids = " ".join(str(pid) for pid in running)
        raise BadInput(f"hook {h.hook!r} at {h.at} is still running on this host (pid {pids}): "
                       "what it did is not known until it ends",
                       hint=f"wait for it to end, or stop it: kill -TERM {pids}; then ack")
    _operator(plan, state, ev.HOOK_ACKED, {"hook": h.hook, "at": h.at, "phase": h.phase,
                                           "campaign": h.campaign, "done": done,
                                           "reason": reason}, env)


@command()
def rollback(plan: PlanArg, state: StateOpt = None, reason: Reason = "",
             timeout: Annotated[str, typer.Option(help="Give up (exit 4) if the router has not confirmed 0% by then: 30s, 2m.")] = "60s",
             env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Send the new environment back to 0% now, and wait until the router confirms it.

    A live `run` gets the request at once and a few seconds to start the rollback
    itself; otherwise (no live run, or one that does not answer) this command
    writes 0% through the router directly. Exit 0 once the router confirms 0%,
    4 when it does not within --timeout (the reason says why)."""
    began = SystemClock().now()  # the operator's clock starts when they hit enter
    outline = load_outline(plan, environment=env)
    seconds = _seconds("--timeout", timeout)
    assert seconds is not None
    loaded, load_error = _try_load(plan, env)
    router = None
    if loaded is not None:
        router = build_router(loaded.plan.members)
    store = None
    store_error = None
    try:
        store = _store(state, busy_timeout=JOURNAL_BUSY_TIMEOUT)
    except BadInput:
        raise
    except ShiftoverError as exc:  # a rollback never waits on the journal
        store_error = exc
    stopped = {"now": False}

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    undo_lines: list[str] = []
    undo_left: str | None = None
    try:
        result = roll_back(service=outline.journal_key, store=store, router=router,
                           clock=SystemClock(), actor=operator_identity(),
                           reason=mask_userinfo(_redact(reason)),
                           timeout=seconds, stopping=lambda: stopped["now"], started_at=began,
                           redact=loaded.redact if loaded is not None else _redact)
        if result.confirmed and result.how != "live run" and store is not None:
            # traffic is at 0%: now what the plan's hooks did is undone (a live run that
            # took the rollback does this itself)
            undo_left = _undo_after_rollback(plan, state, env, loaded, store, router,
                                             undo_lines)
    finally:
        if store is not None:
            store.close()
    data = result.to_dict()
    if undo_lines or undo_left is not None:
        data["undo"] = {"complete": undo_left is None, "left": undo_left, "events": undo_lines}
    if store_error is not None:
        data["journal_error"] = str(store_error)
    if load_error is not None and router is None:
        data["plan_error"] = str(load_error)
    with _reader_may_leave():
        if as_json:
            _json_line(data)
        elif result.confirmed:
            where = f" ({_e(outline.journal_key)})" if outline.environment else ""
            out.print(f"[bold]rolled back[/]{where}: {_e(result.reason)} ({result.seconds:.2f}s)",
                      highlight=False)
            if not result.journalled:
                out.print("the journal could not record it: `shiftover status` may lag until the "
                          "next run", highlight=False)
            for line in undo_lines:
                out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
            if undo_left is not None:
                err.print(f"[bold red]undo not complete[/]: {_e(undo_left)}", highlight=False,
                          soft_wrap=True)
            elif result.how == "live run" and loaded is not None and loaded.plan.hooks:
                out.print("the running run undoes the plan's hooks now: "
                          f"{_cmds(plan, state, env)('status')}", highlight=False, markup=False,
                          soft_wrap=True)
        else:
            err.print(f"[bold red]rollback not confirmed[/]: {_e(result.reason)}", highlight=False)
            if load_error is not None and router is None:
                err.print(f"  the plan could not be loaded: {load_error}", highlight=False, markup=False)
                err.print("  export the plan's variables so that this command can reach the router, "
                          f"then: {_cmds(plan, state, env)('rollback')}", highlight=False, soft_wrap=True,
                          markup=False)
    raise typer.Exit(0 if result.confirmed and undo_left is None else 4)


def _undo_after_rollback(plan: Path, state: str | None, env: str | None,
                         loaded: LoadedPlan | None, store: Store, router: Any,
                         lines: list[str]) -> str | None:
    """Run what is left to undo of the plan's hooks (engine/run.py ``undo_hooks``),
    holding the lease like a run: None when nothing is left, else why."""
    if loaded is None:
        return None  # the hint to export the plan's variables is printed already
    shown = {ev.HOOK_STARTED, ev.HOOK_FINISHED}

    def on_event(e: Event) -> None:
        if e.kind in shown:
            lines.append(views.describe_event(e))

    runner = build_runner(loaded.plan, store, SystemClock(), router=router,
                          redact=loaded.redact, commands=_cmds(plan, state, env),
                          on_event=on_event)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    try:
        return _undo_waiting_out_a_dead_lease(plan, state, env, loaded, store, runner, lines)
    finally:
        runner.close()


def _undo_waiting_out_a_dead_lease(plan: Path, state: str | None, env: str | None,
                                   loaded: LoadedPlan, store: Store, runner: Runner,
                                   lines: list[str]) -> str | None:
    for _ in range(2):
        try:
            return runner.undo_hooks()
        except LeaseHeld as exc:
            holder = find_run(store, loaded.plan.journal_key, runner.lease_key)
            if holder is None or holder.pid_alive is not False:
                return f"another run holds the lease, it runs the undos: {exc.message}"
            # a dead run's lease (killed on this host): it runs nothing; wait it out
            wait = max(0.0, holder.expires_in) + 0.5
            if wait > UNDO_LEASE_WAIT:
                return (f"the run that holds the lease (pid {holder.pid} on {holder.host}) is "
                        f"gone; its lease expires in {holder.expires_in:.0f}s: then run "
                        f"`{_cmds(plan, state, env)('rollback')}` again to run the undos")
            lines.append(f"the run holding the lease (pid {holder.pid}) is gone: waiting "
                         f"{wait:.0f}s for its lease to expire, then the undos")
            end = SystemClock().now() + wait
            while SystemClock().now() < end and not runner.stopped:
                SystemClock().sleep(min(0.2, end - SystemClock().now()))
        except ShiftoverError as exc:
            return f"the undos could not run: {exc.message}"
    return "the lease of the dead run did not expire in time: run " + \
        f"`{_cmds(plan, state, env)('rollback')}` again"


@command()
def schema() -> None:
    """Print the plan's JSON Schema."""
    _json_line(plan_json_schema(), indent=2)


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


def _mount_load() -> None:
    from shiftover.cli_load import load

    command("load", no_args_is_help=True)(load)


_mount_load()


def _mount_rehearsal() -> None:
    """Rehearse and hand over: simulate, runbook, report (each in its own module)."""
    from shiftover.cli_report import report
    from shiftover.cli_runbook import runbook
    from shiftover.cli_simulate import simulate

    command("simulate", no_args_is_help=True)(simulate)
    command("runbook", no_args_is_help=True)(runbook)
    command("report", no_args_is_help=True)(report)


_mount_rehearsal()


def main() -> None:
    """Entry point: Click handles usage errors (exit 2); ours print one clean line."""
    try:
        app()
    except ShiftoverError as exc:  # raised outside a command (e.g. while mounting)
        _print_error(exc)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)


if __name__ == "__main__":
    main()
