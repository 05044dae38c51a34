"""``shiftover simulate``: the real engine on simulated time, with scripted gates.

A team wants to know what a plan does when the new environment breaks at 2%, at
25%, at 100%, before anything touches staging; CI wants to test a plan. This
module runs the plan through the very engine ``shiftover run`` uses — the
:class:`~shiftover.engine.run.Runner` loop, the pure ``decide``, the journal, the
gates' real judges — with three things replaced:

- **time** is a :class:`~shiftover.testing.FakeClock`: every sleep of the engine
  (between checks, backoffs, a rollback's retries) advances it at once, so hours
  of bakes take a second of wall time;
- **the router** is an :class:`~shiftover.testing.InMemoryRouter` on the plan's
  router scale (HAProxy 0-256, Route53 0-255, ALB 0-999): steps are set as the
  real backend would set them, exactly;
- **the gates' providers** measure a *script* (see below) instead of Prometheus,
  Datadog or an HTTP endpoint. What they return goes through each gate's real
  judge (its ``max``/``min``, ``min_samples``, an http gate's status, an alerts
  gate's firing list, a ``compare`` gate's sequential test on counts), so a value
  above ``max`` FAILs exactly as it would in a run.

The script
----------

A YAML file that says what each gate of the plan (by its ``name``) measures over
simulated time, as a list of phases; a gate left out *passes* throughout (and
the output says so)::

    gates:
      new environment failed requests (5xx, refused, timed out):
        - {value: 0.002, until: 12m}       # T+0 to T+12m
        - {value: 0.03}                    # from then on: above max 0.01, FAIL
      dependencies reachable from the new environment:
        - pass
        - {error: connection refused, from_step: 25, for: 2m}
    approvals:
      50: 10m                              # given 10 min after the run asks (default: at once)
    operator:
      - {at: 40m, do: pause, reason: dashboards look odd}
    max_time: 4h

A phase is one of ``pass``, ``fail``, ``no_data``, ``error`` (every gate type),
``value: N`` (gates judged on a number; ``samples: N`` with it), ``status: N``
(``http`` gates), ``firing: [AlertName]`` (alerts gates), ``new_error_rate``
(``compare`` gates; ``old_error_rate`` and ``rate`` in req/s with it) or
``new_latency`` (``compare_latency``; ``old_latency``). When it holds:
``from``/``until`` (a time after the run starts), ``from_step``/``until_step``
(the moment that step is first confirmed by the router) and ``for`` (a length).
Phases follow each other: a phase without a start begins when the one before it
ends; one without an end lasts until the next one starts (or forever). Outside
every phase the gate passes.

Why these choices:

- **Sequential phases, not a formula.** A failure is "fine until the 25% step,
  then broken": phases say that as it is said, and a step-relative boundary
  follows the engine (if the run never reaches 25%, the fault never comes).
- **Deterministic.** ``compare`` gates get the *expected* counts (rate x split x
  error ratio, fractions carried), not random draws, and the clock starts at a
  fixed instant: the same plan and script give the same run, so CI can assert on
  it.
- **The journal is real.** Events go to an in-memory SQLite store (the same
  ``Store`` class), and the timeline is read back from it with the views' words.
  The only liberty taken is a read cache (:class:`SimulationJournal`): the engine
  polls the journal for operator events every 0.2 s of clock time, which on a
  simulated clock would be tens of thousands of queries for a few hours; since
  the simulation is the only writer, "nothing new since id N" is answered from
  memory. Every write, and every read that can find something, goes to SQLite.
- **Wall time does not grow with the bake.** Those 0.2 s slices are also 18,000
  turns of the runner's loop per simulated hour. The runner is asked for its whole
  wait at once and :class:`SimulationClock` takes it in the engine's slices itself,
  stopping where the runner could react (a scheduled action fired, the time bound):
  the same times to the last bit, a week of bakes in seconds.
- **It always stops.** Simulated time is bounded (``--max-time``; default: three
  times the plan's shortest run, plus scripted delays, plus 30 minutes), and a run
  paused with ``on_failure: pause`` and nothing left in the script to resume it
  is ended at once (nothing can move it any more).
"""

from __future__ import annotations

import difflib
import heapq
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shiftover.engine import events as ev
from shiftover.engine.build import minimum_duration, plan_summary
from shiftover.engine.run import POLL_SLICE, Gate, Runner, RunOutcome
from shiftover.errors import BadInput, NoData, PlanError, ProviderError
from shiftover.external import Outcome
from shiftover.hooks import HookOutcome
from shiftover.plan import Plan, _Problem, _Tree
from shiftover.plan import _combine as _combine_problems  # semiprivate: plan.py's error format
from shiftover.plan import _compose as _compose_yaml  # semiprivate: YAML with marks
from shiftover.plan import _describe as _describe_value
from shiftover.providers.compare import CompareProvider
from shiftover.providers.compare_latency import CompareLatencyProvider
from shiftover.spec import parse_duration
from shiftover.store import Event, Lease, Store
from shiftover.testing import FakeClock, InlineExecutor, InMemoryRouter
from shiftover.types import EnvCounts, Measurement, Weights

SIM_START = 1_800_000_000.0   # the simulated clock's T+0 (fixed: a rerun gives the same journal)
MARGIN = 1800.0               # added to the default --max-time
DEFAULT_RATE = 100.0          # compare gates: requests per second to both environments
DEFAULT_OLD_ERROR_RATE = 0.001
DEFAULT_LATENCY = 0.1         # compare_latency gates: seconds, both environments
ACTOR = "simulated operator"

SHORTCUTS = ("pass", "fail", "no_data", "error")
# what a phase measures, by the gate's judge (GateSpecBase.JUDGE)
MEASURES: dict[str, tuple[str, ...]] = {
    "threshold": ("value",),
    "probe": ("status",),
    "alerts": ("firing",),
    "compare": ("new_error_rate",),
    "compare_latency": ("new_latency",),
    "command": ("exit_code",),
}
EXTRAS: dict[str, tuple[str, ...]] = {  # keys that go with a phase of that judge
    "threshold": ("samples",),
    "probe": (),
    "alerts": (),
    "compare": ("old_error_rate", "rate"),
    "compare_latency": ("old_latency",),
    "command": ("samples",),
}
TIMING = ("from", "until", "from_step", "until_step", "for")
OPERATOR_ACTIONS = {"pause": ev.PAUSED, "resume": ev.RESUMED,
                    "rollback": ev.ROLLBACK_REQUESTED, "approve": ev.APPROVED}
TOP_KEYS = ("description", "gates", "approvals", "operator", "max_time")
INF = math.inf


# --- the script --------------------------------------------------------------------------


@dataclass(frozen=True)
class Boundary:
    """When a phase starts or ends: ``at`` seconds after T+0, or when ``step``
    (a percent of the plan's steps) is first confirmed by the router."""

    at: float | None = None
    step: float | None = None

    def text(self) -> str:
        return f"{self.step:g}% confirmed" if self.step is not None else offset(self.at or 0.0)


@dataclass(frozen=True)
class Phase:
    """What a gate measures for a while. ``kind`` is a shortcut (pass, fail, no_data,
    error) or a measure (value, status, firing, new_error_rate, new_latency)."""

    kind: str
    value: float | None = None        # value, status, new_error_rate, new_latency
    samples: int | None = None        # with value
    old: float | None = None          # old_error_rate, old_latency
    rate: float | None = None         # compare: req/s
    names: tuple[str, ...] = ()       # firing
    message: str | None = None        # no_data, error
    start: Boundary | None = None
    end: Boundary | None = None
    length: float | None = None       # for:
    line: int = 0


@dataclass(frozen=True)
class OperatorAction:
    at: float           # seconds after T+0
    do: str             # pause | resume | rollback | approve
    reason: str = ""
    step: float | None = None


@dataclass(frozen=True)
class Script:
    """A loaded script: phases per gate name (gates left out pass), approval delays
    per step (None: never given), operator actions, the time bound."""

    gates: Mapping[str, tuple[Phase, ...]] = field(default_factory=dict)
    approvals: Mapping[float, float | None] = field(default_factory=dict)
    operator: tuple[OperatorAction, ...] = ()
    max_time: float | None = None
    description: str | None = None
    path: str | None = None


def _phase_at(phases: Sequence[Phase], t: float, step_time: Callable[[float], float]) -> Phase | None:
    """The phase in force ``t`` seconds after T+0 (None: none, the gate passes).
    ``step_time(percent)`` is when that step was first confirmed (INF: not yet).

    Phases follow each other, one at a time. A phase's explicit start (``from``,
    ``from_step``) is when it starts, always: if the phase before still holds then, it
    ends there. Times that overlap are refused when the script is read; a step and a
    time can only be ordered as the run goes (``for: 30m`` then ``from_step: 25``, with
    25% confirmed at T+20m: the second phase starts at T+20m, as its line says)."""

    def resolve(b: Boundary) -> float:
        return b.at if b.at is not None else step_time(b.step if b.step is not None else -1.0)

    starts = [None if ph.start is None else resolve(ph.start) for ph in phases]
    found = None
    cursor = 0.0
    for i, ph in enumerate(phases):
        explicit = starts[i]
        start = cursor if explicit is None else explicit
        if ph.end is not None:
            end = resolve(ph.end)
        elif ph.length is not None:
            end = start + ph.length
        else:
            end = INF
        following = starts[i + 1] if i + 1 < len(phases) else None
        if following is not None:
            end = min(end, following)
        end = max(start, end)
        if start <= t < end:
            found = ph  # the latest phase that holds (a later start wins)
        cursor = end
    return found


# --- loading the script, with file:line:col errors -----------------------------------------


def load_script(path: str | Path, plan: Plan) -> Script:
    """Read and check a script against ``plan``; PlanError naming file:line:col
    (every problem at once) when it is wrong."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PlanError("script file not found", file=str(p),
                        hint="check the path (the examples are in examples/simulate/)") from None
    except IsADirectoryError:
        raise PlanError("is a directory, not a script file", file=str(p),
                        hint="give the path of the YAML file") from None
    except OSError as e:
        raise PlanError(f"cannot read the script: {e.strerror}", file=str(p),
                        hint="check permissions") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PlanError("the file is not UTF-8 text", file=str(p), hint="save it as UTF-8") from None
    return parse_script_text(text, plan, filename=str(p))


def parse_script_text(text: str, plan: Plan, *, filename: str = "<script>") -> Script:
    """Like :func:`load_script` for text in memory."""
    root = _compose_yaml(text, filename)
    if root is None:
        return Script(path=filename)  # an empty script: every gate passes
    tree = _Tree(filename)
    data = tree.build(root)
    reader = _ScriptReader(plan, tree)
    script = reader.read(data)
    problems = tree.problems + reader.problems
    if problems:
        raise _combine_problems(problems, filename, set(), what="script")
    return replace(script, path=filename)


def _judge_kind(spec: Any) -> str:
    return str(getattr(spec, "JUDGE", "threshold"))


def _suggest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    within = [c for c in options if word and word.lower() in c.lower()]
    if len(within) == 1:  # a gate's long name, shortened
        return within[0]
    match = difflib.get_close_matches(word, options, n=1, cutoff=cutoff)
    return match[0] if match else None


class _ScriptReader:
    """Plain data (with the tree's marks) to a :class:`Script`, every problem
    collected with its place."""

    def __init__(self, plan: Plan, tree: _Tree) -> None:
        self.plan = plan
        self.tree = tree
        self.problems: list[_Problem] = []
        self.specs = {g.name: g for g in plan.normal_state}

    def bad(self, path: tuple[str | int, ...], message: str, hint: str | None = None, *,
            key: bool = False) -> None:
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
        self.problems.append(_Problem(self.tree.pos(path, key=key), message,
                                      where.replace(".[", "[") or None, hint))

    def _unknown_key(self, path: tuple[str | int, ...], key: Any, known: Sequence[str],
                     what: str) -> None:
        guess = _suggest(str(key), known)
        self.bad((*path, key), f"unknown {what} {str(key)!r}"
                 + (f" — did you mean {guess!r}?" if guess else ""),
                 f"{what}s allowed here: {', '.join(known)}", key=True)

    def duration(self, path: tuple[str | int, ...], value: Any, *, positive: bool = False) -> float | None:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.bad(path, str(exc), "e.g. 90s, 12m or 1h (a bare number is seconds)")
            return None
        if positive and seconds <= 0:
            self.bad(path, f"{path[-1]} must be more than 0")
            return None
        return seconds

    def read(self, data: Any) -> Script:
        if not isinstance(data, dict):
            self.bad((), f"the top level of a script must be a mapping (gates:, approvals:, ...), "
                     f"found {_describe_value(data)}",
                     "start from examples/simulate/, e.g. gates: {GATE NAME: [pass]}")
            return Script()
        for key in data:
            if key not in TOP_KEYS:
                self._unknown_key((), key, TOP_KEYS, "field")
        gates = self.gates(data.get("gates"))
        approvals = self.approvals(data.get("approvals"))
        operator = self.operator(data.get("operator"))
        max_time = None
        if data.get("max_time") is not None:
            max_time = self.duration(("max_time",), data["max_time"], positive=True)
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            self.bad(("description",), f"expected text, got {_describe_value(description)}")
            description = None
        return Script(gates=gates, approvals=approvals, operator=operator, max_time=max_time,
                      description=description)

    # gates ---------------------------------------------------------------------------
    def gates(self, data: Any) -> dict[str, tuple[Phase, ...]]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.bad(("gates",), f"expected a mapping of gate names to what they measure, got "
                     f"{_describe_value(data)}", "e.g. gates: {errors: [{value: 0.03, from: 12m}]}")
            return {}
        names = list(self.specs)
        out: dict[str, tuple[Phase, ...]] = {}
        for name, value in data.items():
            spec = self.specs.get(name) if isinstance(name, str) else None
            if spec is None:
                guess = _suggest(str(name), names, cutoff=0.5)
                listed = "; ".join(repr(n) for n in names)
                self.bad(("gates", name), f"the plan has no gate named {str(name)!r}"
                         + (f" — did you mean {guess!r}?" if guess else ""),
                         f"the plan's gates (normal_state names): {listed}", key=True)
                continue
            out[name] = self.phases(("gates", name), value, spec)
        return out

    def phases(self, path: tuple[str | int, ...], value: Any, spec: Any) -> tuple[Phase, ...]:
        items = value if isinstance(value, list) else [value]
        paths = [(*path, i) for i in range(len(items))] if isinstance(value, list) else [path]
        if isinstance(value, list) and not value:
            self.bad(path, "no phases: list what the gate measures, e.g. [pass]")
        phases = [self.phase(p, item, spec) for p, item in zip(paths, items, strict=True)]
        kept = [ph for ph in phases if ph is not None]
        if len(kept) == len(phases):
            self.check_order(paths, kept)
        return tuple(kept)

    def phase(self, path: tuple[str | int, ...], item: Any, spec: Any) -> Phase | None:
        kind = _judge_kind(spec)
        if kind not in MEASURES:
            self.bad(path, f"gate {spec.name!r} (type {spec.type}) cannot be simulated: its judge "
                     f"{kind!r} is not one the simulation knows")
            return None
        measures = MEASURES[kind]
        line = self.tree.pos(path)[0]
        if isinstance(item, str):
            if item in SHORTCUTS:
                return Phase(item, line=line)
            guess = _suggest(item, SHORTCUTS)
            self.bad(path, f"{item!r} is not a phase" + (f" — did you mean {guess!r}?" if guess else ""),
                     f"write one of {', '.join(SHORTCUTS)}, or a mapping such as "
                     f"{{{measures[0]}: {_example(kind)}, from: 12m}}")
            return None
        if isinstance(item, int | float) and not isinstance(item, bool) and kind in ("threshold", "probe"):
            return self.measure_phase(path, {measures[0]: item}, spec, line)
        if not isinstance(item, dict):
            self.bad(path, f"expected a phase (pass, fail, no_data, error, or a mapping), got "
                     f"{_describe_value(item)}",
                     f"e.g. {{{measures[0]}: {_example(kind)}, until: 12m}}")
            return None
        return self.measure_phase(path, item, spec, line)

    def measure_phase(self, path: tuple[str | int, ...], item: dict[Any, Any], spec: Any,
                      line: int) -> Phase | None:
        kind = _judge_kind(spec)
        allowed = (*MEASURES[kind], *SHORTCUTS, *EXTRAS[kind], *TIMING)
        every_measure = sorted({m for ms in MEASURES.values() for m in ms}
                               | {x for xs in EXTRAS.values() for x in xs})
        ok = True
        for key in item:
            if key in allowed:
                continue
            ok = False
            if key in every_measure:
                fits = [k for k, ms in MEASURES.items() if key in ms or key in EXTRAS[k]]
                self.bad((*path, key), f"{key!r} does not apply to gate {spec.name!r} (type "
                         f"{spec.type}; {'/'.join(fits)} gates take it)",
                         f"this gate takes {', '.join((*MEASURES[kind], *EXTRAS[kind]))} "
                         f"or {', '.join(SHORTCUTS)}", key=True)
            else:
                self._unknown_key(path, key, allowed, "key")
        whats = [k for k in item if k in MEASURES[kind] or k in SHORTCUTS]
        if not whats:
            if ok:
                self.bad(path, "the phase says when, but not what the gate measures",
                         f"add one of {', '.join((*MEASURES[kind], *SHORTCUTS))}")
            return None
        if len(whats) > 1:
            self.bad((*path, whats[1]), f"one phase, one measure: {whats[0]!r} and {whats[1]!r} "
                     "are both given", "split them into two phases, one after the other", key=True)
            return None
        what = whats[0]
        phase = self.what(path, what, item[what], item, spec, line)
        if phase is None or not ok:
            return None
        return self.timing(path, item, phase)

    def what(self, path: tuple[str | int, ...], what: str, value: Any, item: dict[Any, Any],
             spec: Any, line: int) -> Phase | None:
        at = (*path, what)
        if what in ("pass", "fail"):
            if value is not True:
                self.bad(at, f"{what} takes true (the gate {'passes' if what == 'pass' else 'fails'}), "
                         f"got {_describe_value(value)}",
                         f"write {{{what}: true, ...}}"
                         + (", or firing: [AlertName] for the alerts that fire"
                            if what == "fail" and _judge_kind(spec) == "alerts" else ""))
                return None
            return Phase(what, line=line)
        if what in ("no_data", "error"):
            if value is True or value is None:
                return Phase(what, line=line)
            if isinstance(value, str) and value:
                return Phase(what, message=value, line=line)
            self.bad(at, f"{what} takes true or a message, got {_describe_value(value)}")
            return None
        if what == "firing":
            names = value if isinstance(value, list) else [value]
            if not names or not all(isinstance(n, str) and n for n in names):
                self.bad(at, f"firing takes alert names, got {_describe_value(value)}",
                         "e.g. firing: [HighErrorRate]")
                return None
            return Phase("firing", names=tuple(names), line=line)
        if what == "status":
            if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
                self.bad(at, f"status takes an HTTP status code (100-599), got {_describe_value(value)}",
                         f"e.g. status: 503 (the gate expects {spec.expect_status})")
                return None
            return Phase("status", value=float(value), line=line)
        if what == "exit_code":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                self.bad(at, f"exit_code takes an exit code (0-255), got {_describe_value(value)}",
                         "e.g. exit_code: 3 (0 passes, 1 fails, any other holds)")
                return None
            samples = item.get("samples")
            if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                        or samples < 0):
                self.bad((*path, "samples"), f"samples takes a count, got {_describe_value(samples)}")
                return None
            return Phase("exit_code", value=float(value), samples=samples, line=line)
        if what == "new_latency":
            new = self.duration(at, value)
            old = DEFAULT_LATENCY if "old_latency" not in item else self.duration(
                (*path, "old_latency"), item["old_latency"])
            if new is None or old is None:
                return None
            return Phase("new_latency", value=new, old=old, line=line)
        number = self.number(at, value)
        if number is None:
            return None
        if what == "value":
            samples = item.get("samples")
            if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                        or samples < 0):
                self.bad((*path, "samples"), f"samples takes a count, got {_describe_value(samples)}")
                return None
            return Phase("value", value=number, samples=samples, line=line)
        # new_error_rate
        old_rate = DEFAULT_OLD_ERROR_RATE
        if "old_error_rate" in item:
            got = self.number((*path, "old_error_rate"), item["old_error_rate"], ratio=True)
            if got is None:
                return None
            old_rate = got
        rate = self.number((*path, "rate"), item.get("rate", DEFAULT_RATE))
        if rate is None:
            return None
        if rate <= 0:
            self.bad((*path, "rate"), f"rate must be more than 0 requests per second, got {rate:g}")
            return None
        if not 0 <= number <= 1:
            self.bad(at, f"new_error_rate is a ratio between 0 and 1, got {number:g}", "e.g. 0.03 for 3%")
            return None
        return Phase("new_error_rate", value=number, old=old_rate, rate=rate, line=line)

    def number(self, path: tuple[str | int, ...], value: Any, *, ratio: bool = False) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.bad(path, f"expected a number, got {_describe_value(value)}")
            return None
        if ratio and not 0 <= value <= 1:
            self.bad(path, f"{path[-1]} is a ratio between 0 and 1, got {value:g}")
            return None
        return float(value)

    def step(self, path: tuple[str | int, ...], value: Any) -> float | None:
        text = value[:-1] if isinstance(value, str) and value.endswith("%") else value
        try:
            pct = float(text)
        except (TypeError, ValueError):
            pct = math.nan
        if isinstance(value, bool) or pct not in self.plan.steps:
            steps = ", ".join(f"{s:g}" for s in self.plan.steps)
            self.bad(path, f"{_describe_value(value)} is not a step of the plan",
                     f"the plan's steps: {steps}")
            return None
        return pct

    def timing(self, path: tuple[str | int, ...], item: dict[Any, Any], phase: Phase) -> Phase | None:
        starts = [k for k in ("from", "from_step") if k in item]
        ends = [k for k in ("until", "until_step", "for") if k in item]
        if len(starts) > 1 or len(ends) > 1:
            both = starts if len(starts) > 1 else ends
            self.bad((*path, both[1]), f"{both[0]!r} and {both[1]!r} both say when the phase "
                     f"{'starts' if len(starts) > 1 else 'ends'}: keep one", key=True)
            return None
        start = end = None
        length = None
        for key in starts + ends:
            value = item[key]
            if key in ("from", "until"):
                seconds = self.duration((*path, key), value)
                if seconds is None:
                    return None
                b = Boundary(at=seconds)
            elif key in ("from_step", "until_step"):
                pct = self.step((*path, key), value)
                if pct is None:
                    return None
                b = Boundary(step=pct)
            else:
                length = self.duration((*path, key), value, positive=True)
                if length is None:
                    return None
                continue
            if key in starts:
                start = b
            else:
                end = b
        if start is not None and end is not None:
            if start.at is not None and end.at is not None and end.at <= start.at:
                self.bad((*path, "until"), f"until {offset(end.at)} is not after from "
                         f"{offset(start.at)}: the phase would never hold")
                return None
            if start.step is not None and end.step is not None and end.step <= start.step:
                self.bad((*path, "until_step"), f"until_step {end.step:g} is not after from_step "
                         f"{start.step:g}: the phase would never hold")
                return None
        return replace(phase, start=start, end=end, length=length)

    def check_order(self, paths: Sequence[tuple[str | int, ...]], phases: Sequence[Phase]) -> None:
        """Phases follow each other, one at a time: each one must be able to start, explicit
        times and steps must go forward, and a phase may not start (``from:``) before the
        phase before it ends, when that end is a time known here (its ``until:``, or its
        start plus its ``for:``)."""
        last_at: tuple[float, str, bool] | None = None   # time, words, whether an end
        last_step: tuple[float, str] | None = None
        # when the phase before ends, if known: (time, how, the shorter for: that would fit)
        ends: tuple[float, str, str] | None = (0.0, "", "")
        for i, (path, ph) in enumerate(zip(paths, phases, strict=True)):
            before = phases[i - 1] if i else None
            if before is not None and ph.start is None and before.end is None \
                    and before.length is None:
                self.bad(path, f"this phase can never start: the one before it (line {before.line}) "
                         "has no end",
                         "give the phase before an end (until:, until_step: or for:), or this "
                         "one a start (from: or from_step:)")
                return
            if (before is not None and ph.start is not None and ph.start.at is not None
                    and ends is not None and ph.start.at < ends[0]):
                self.bad((*path, "from"), f"from {offset(ph.start.at)} starts inside the phase "
                         f"before (line {before.line}), which lasts until {offset(ends[0])}"
                         f"{ends[1]}: phases follow each other, one at a time",
                         f"shorten the phase before ({ends[2]}until: {span(ph.start.at)}), or "
                         f"start this one when it ends (from: {span(ends[0])})")
                return
            for b, word in ((ph.start, "from"), (ph.end, "until")):
                if b is None:
                    continue
                if b.at is not None:
                    # a phase may start the moment the one before ends (until: 12m, from: 12m)
                    touching = word == "from" and last_at is not None and last_at[2]
                    if last_at is not None and (b.at < last_at[0]
                                                or (b.at == last_at[0] and not touching)):
                        self.bad((*path, word), f"{word} {offset(b.at)} is not after "
                                 f"{last_at[1]} of the phase before: phases are in time order")
                        return
                    last_at = (b.at, f"{word} {offset(b.at)}", word == "until")
                if b.step is not None:
                    key = f"{word}_step"
                    if last_step is not None and b.step < last_step[0]:
                        self.bad((*path, key), f"{key} {b.step:g} comes before {last_step[1]} "
                                 "of the phase before: steps are confirmed in order")
                        return
                    last_step = (b.step, f"{key} {b.step:g}")
            # when this phase ends, if a time known before the run (None: a step, or the
            # next phase's start)
            start = ends[0] if ph.start is None and ends is not None else (
                ph.start.at if ph.start is not None else None)
            if ph.end is not None:
                ends = None if ph.end.at is None else (ph.end.at, "", "")
            elif ph.length is not None and start is not None:
                nxt = phases[i + 1].start if i + 1 < len(phases) else None
                fits = (f"for: {span(nxt.at - start)}, or " if nxt is not None and nxt.at is not None
                        and nxt.at > start else "")
                ends = (start + ph.length, f" ({'from ' + offset(start) + ' ' if start else ''}"
                        f"for {span(ph.length)})", fits)
            else:
                ends = None

    # approvals and operator actions -------------------------------------------------
    def approvals(self, data: Any) -> dict[float, float | None]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.bad(("approvals",), f"expected a mapping of steps to delays, got {_describe_value(data)}",
                     "e.g. approvals: {50: 10m} (or {50: never})")
            return {}
        out: dict[float, float | None] = {}
        listed = ", ".join(f"{a:g}" for a in self.plan.approvals) or "none"
        for key, value in data.items():
            text = key[:-1] if isinstance(key, str) and key.endswith("%") else key
            try:
                pct = float(text)
            except (TypeError, ValueError):
                pct = math.nan
            if isinstance(key, bool) or pct not in self.plan.approvals:
                self.bad(("approvals", key), f"{key!r} is not a step that waits for approval",
                         f"the plan's approvals: {listed}", key=True)
                continue
            if value is False or value == "never":
                out[pct] = None
                continue
            seconds = self.duration(("approvals", key), value)
            if seconds is not None:
                out[pct] = seconds
        return out

    def operator(self, data: Any) -> tuple[OperatorAction, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.bad(("operator",), f"expected a list of actions, got {_describe_value(data)}",
                     "e.g. operator: [{at: 40m, do: pause, reason: why}]")
            return ()
        out: list[OperatorAction] = []
        keys = ("at", "do", "reason", "step")
        for i, item in enumerate(data):
            path: tuple[str | int, ...] = ("operator", i)
            if not isinstance(item, dict):
                self.bad(path, f"expected an action such as {{at: 40m, do: pause}}, got "
                         f"{_describe_value(item)}")
                continue
            bad = [k for k in item if k not in keys]
            for k in bad:
                self._unknown_key(path, k, keys, "key")
            if "at" not in item or "do" not in item:
                missing = "at" if "at" not in item else "do"
                self.bad(path, f"missing {missing!r}: an action says when (at: 40m) and what "
                         f"(do: {'|'.join(OPERATOR_ACTIONS)})")
                continue
            at = self.duration((*path, "at"), item["at"])
            do = item["do"]
            if do not in OPERATOR_ACTIONS:
                guess = _suggest(str(do), list(OPERATOR_ACTIONS))
                self.bad((*path, "do"), f"{do!r} is not an operator action"
                         + (f" — did you mean {guess!r}?" if guess else ""),
                         f"do: one of {', '.join(OPERATOR_ACTIONS)}")
                continue
            step = None
            if do == "approve":
                if "step" not in item:
                    self.bad(path, "an approve action needs the step it approves",
                             f"add step: (the plan's approvals: "
                             f"{', '.join(f'{a:g}' for a in self.plan.approvals) or 'none'})")
                    continue
                step = self.step((*path, "step"), item["step"])
                if step is None:
                    continue
            reason = item.get("reason", "")
            if not isinstance(reason, str):
                self.bad((*path, "reason"), f"expected text, got {_describe_value(reason)}")
                continue
            if at is None or bad:
                continue
            out.append(OperatorAction(at=at, do=do, reason=reason, step=step))
        return tuple(sorted(out, key=lambda a: a.at))


def _example(kind: str) -> str:
    return {"threshold": "0.03", "probe": "503", "alerts": "[HighErrorRate]",
            "compare": "0.05", "compare_latency": "300ms", "command": "3"}.get(kind, "...")


# --- what a scripted gate measures -----------------------------------------------------


class _World:
    """What the scripted providers know of the simulation: the clock and when each
    step was first confirmed (from the journal's ``weight_confirmed`` events)."""

    def __init__(self, plan: Plan, clock: FakeClock) -> None:
        self.plan = plan
        self.clock = clock
        self.confirmed: dict[float, float] = {}  # step percent -> offset first confirmed

    def offset(self, now: float) -> float:
        return now - SIM_START

    def step_time(self, percent: float) -> float:
        return self.confirmed.get(percent, INF)

    def saw(self, e: Event) -> None:
        if e.kind == ev.WEIGHT_CONFIRMED:
            index = e.data.get("step_index")
            if isinstance(index, int) and 0 <= index < len(self.plan.steps):
                self.confirmed.setdefault(self.plan.steps[index], self.offset(e.at))


@dataclass(frozen=True)
class Fault:
    """An injected failure: ``gate`` fails from the moment ``step`` is confirmed."""

    gate: str
    step: float


class _Phases:
    """A gate's phases (with a fault on top, for ``--fail-each-step``)."""

    def __init__(self, world: _World, phases: Sequence[Phase], fault: Fault | None) -> None:
        self.world = world
        self.phases = list(phases)
        self.fault = fault

    def at(self, now: float) -> Phase | None:
        t = self.world.offset(now)
        if self.fault is not None and t >= self.world.step_time(self.fault.step):
            return Phase("fail")
        return _phase_at(self.phases, t, self.world.step_time)


def pass_value(spec: Any) -> float:
    """A value just inside a threshold gate's bounds (what ``pass`` measures)."""
    lo, hi = getattr(spec, "min", None), getattr(spec, "max", None)
    if lo is not None and hi is not None:
        return float((lo + hi) / 2)
    if hi is not None:
        return float(hi / 2 if hi > 0 else hi - 1)
    if lo is not None:
        return float(lo * 1.01 if lo > 0 else lo + 1)
    return 0.0


def fail_value(spec: Any) -> float:
    """A value outside a threshold gate's bounds (what ``fail`` measures)."""
    lo, hi = getattr(spec, "min", None), getattr(spec, "max", None)
    if hi is not None:
        return float(hi * 2 if hi > 0 else hi + 1)
    if lo is not None:
        return float(lo / 2 if lo > 0 else lo - 1)
    return 1.0


def _fail_status(spec: Any) -> float:
    return 500.0 if spec.expect_status == 503 else 503.0


class ScriptedGate:
    """A threshold, http or alerts gate's provider: measures the phase in force,
    shaped as the real providers shape their measurements."""

    def __init__(self, spec: Any, phases: _Phases) -> None:
        self.spec = spec
        self.phases = phases
        self.kind = _judge_kind(spec)

    def describe(self) -> str:
        return f"scripted {self.spec.type} gate"

    def measure(self, *, now: float) -> Measurement:
        ph = self.phases.at(now) or Phase("pass")
        if ph.kind == "no_data" and self.kind != "alerts":
            raise NoData(f"scripted: {ph.message or 'no data'}")
        if ph.kind == "error":
            raise ProviderError(f"scripted: {ph.message or 'the provider could not answer'}")
        if self.kind == "probe":
            return self._probe(ph, now)
        if self.kind == "alerts":
            return self._alerts(ph, now)
        if self.kind == "command":
            return self._command(ph, now)
        min_samples = int(getattr(self.spec, "min_samples", 0) or 0)
        samples = min_samples or None
        if ph.kind == "value":
            assert ph.value is not None
            return Measurement(ph.value, now, ph.samples if ph.samples is not None else samples)
        value = fail_value(self.spec) if ph.kind == "fail" else pass_value(self.spec)
        return Measurement(value, now, samples)

    def _probe(self, ph: Phase, now: float) -> Measurement:
        status = (float(self.spec.expect_status) if ph.kind == "pass"
                  else _fail_status(self.spec) if ph.kind == "fail" else float(ph.value or 0))
        return Measurement(status, now, 1, details={
            "status": int(status), "body_match": True if self.spec.body_contains else None})

    def _command(self, ph: Phase, now: float) -> Measurement:
        """As the command provider reports a run: the exit code in ``details`` (0 for
        pass, 1 for fail), samples enough for ``min_samples`` unless the phase says."""
        code = 0 if ph.kind == "pass" else 1 if ph.kind == "fail" else int(ph.value or 0)
        min_samples = int(getattr(self.spec, "min_samples", 0) or 0)
        samples = ph.samples if ph.samples is not None else (min_samples or None)
        return Measurement(None, now, samples, details={
            "exit_code": code, "summary": f"exit {code} (scripted)", "message": None,
            "output": ""})

    def _alerts(self, ph: Phase, now: float) -> Measurement:
        names = list(ph.names) if ph.kind == "firing" else (
            ["ScriptedFailure"] if ph.kind == "fail" else [])
        no_data = [f"scripted: {ph.message or 'no data'}"] if ph.kind == "no_data" else []
        firing = [{"alertname": n, "labels": {"alertname": n}} for n in names]
        return Measurement(float(len(firing)), now, len(firing),
                           details={"firing": firing, "no_data": no_data, "source": "simulation"})


class ScriptedCounts:
    """A ``compare`` gate's count source: ``rate`` requests per second split as the
    router reads at each call, each environment failing at its scripted ratio. The
    counts are the *expected* ones (fractions carried from call to call), not random
    draws: a script gives the same run every time."""

    def __init__(self, spec: Any, phases: _Phases, router: InMemoryRouter) -> None:
        self.spec = spec
        self.phases = phases
        self.router = router
        self._at: float | None = None
        self._carry = [0.0, 0.0, 0.0]  # requests, old errors, new errors
        self._totals = [0, 0, 0, 0]
        self._marks: dict[float, tuple[int, ...]] = {}

    def describe(self) -> str:
        return "scripted counts"

    def _rates(self, ph: Phase) -> tuple[float, float, float]:
        old = ph.old if ph.old is not None else DEFAULT_OLD_ERROR_RATE
        rate = ph.rate if ph.rate is not None else DEFAULT_RATE
        if ph.kind == "new_error_rate":
            return rate, old, float(ph.value or 0.0)
        if ph.kind == "fail":
            worse = max(0.05, 10 * old * (1 + float(self.spec.tolerance)))
            return rate, old, min(1.0, worse)
        return rate, old, old

    def counts(self, *, since: float, now: float) -> EnvCounts:
        ph = self.phases.at(now) or Phase("pass")
        rate, old_rate, new_rate = self._rates(ph)
        if self._at is not None and now > self._at:
            self._carry[0] += (now - self._at) * rate
            total = int(self._carry[0])
            self._carry[0] -= total
            share = self.router.read().share
            new = round(total * float(share))
            old = total - new
            self._carry[1] += old * old_rate
            self._carry[2] += new * new_rate
            old_errors, new_errors = int(self._carry[1]), int(self._carry[2])
            self._carry[1] -= old_errors
            self._carry[2] -= new_errors
            t = self._totals
            self._totals = [t[0] + old, t[1] + min(old_errors, old),
                            t[2] + new, t[3] + min(new_errors, new)]
        self._at = now if self._at is None else max(self._at, now)
        self._marks.setdefault(now, tuple(self._totals))
        if ph.kind == "no_data":
            raise NoData(f"scripted: {ph.message or 'no data'}")
        if ph.kind == "error":
            raise ProviderError(f"scripted: {ph.message or 'the provider could not answer'}")
        if since not in self._marks:
            raise NoData("scripted: no count at the step's start")
        base = self._marks[since]
        self._marks = {t: v for t, v in self._marks.items() if t >= since}
        o, ox, n, nx = (a - b for a, b in zip(self._totals, base, strict=True))
        return EnvCounts(o, ox, n, nx)


class ScriptedLatency:
    """A ``compare_latency`` gate's source: each environment's latency figure as the
    phase says (seconds)."""

    def __init__(self, spec: Any, phases: _Phases) -> None:
        self.spec = spec
        self.phases = phases

    def describe(self) -> str:
        return "scripted latency"

    def latency(self, *, now: float) -> tuple[float | None, float | None]:
        ph = self.phases.at(now) or Phase("pass")
        base = DEFAULT_LATENCY if self.spec.slo is None else min(DEFAULT_LATENCY, self.spec.slo / 2)
        if ph.kind == "no_data":
            raise NoData(f"scripted: {ph.message or 'no data'}")
        if ph.kind == "error":
            raise ProviderError(f"scripted: {ph.message or 'the provider could not answer'}")
        if ph.kind == "new_latency":
            return (ph.old if ph.old is not None else base), ph.value
        if ph.kind == "fail":
            slow = base * float(self.spec.effect_size) * 2
            if self.spec.slo is not None:
                slow = max(slow, float(self.spec.slo) * 2)
            return base, slow
        return base, base


def scripted_gates(plan: Plan, script: Script, world: _World, router: InMemoryRouter,
                   fault: Fault | None = None) -> list[Gate]:
    """The plan's gates, each with its real judge and a scripted provider."""
    gates: list[Gate] = []
    for spec in plan.normal_state:
        phases = _Phases(world, script.gates.get(spec.name, ()),
                         fault if fault is not None and fault.gate == spec.name else None)
        kind = _judge_kind(spec)
        provider: Any
        if kind == "compare":
            provider = CompareProvider(ScriptedCounts(spec, phases, router))
        elif kind == "compare_latency":
            provider = CompareLatencyProvider(ScriptedLatency(spec, phases))
        elif kind in MEASURES:
            provider = ScriptedGate(spec, phases)
        else:
            raise BadInput(f"gate {spec.name!r} (type {spec.type}) cannot be simulated: its judge "
                           f"{kind!r} is not one the simulation knows",
                           hint="simulate a copy of the plan without this gate")
        gates.append(Gate(spec, provider))
    return gates


# --- the journal and the clock of a simulation -------------------------------------------


class SimulationJournal(Store):
    """The real store (in-memory SQLite), with two shortcuts, both exact because the
    simulation is its only writer (see the module docstring for why they matter):

    - a read that cannot find anything, because nothing of those kinds was appended
      since ``after_id``, is answered from memory (the engine asks every 0.2 s of
      simulated time whether an operator acted);
    - a lease renewal at the same simulated instant as the previous one (the engine
      renews before and after each check, and no time passes in between on a fake
      clock) would write the same expiry again: it returns the lease it has.
    """

    def __init__(self, clock: FakeClock) -> None:
        super().__init__("sqlite://", clock=clock.now)
        self._sim_clock = clock
        self._last_of: dict[str, int] = {}
        self._last_id = 0
        self._newest: dict[frozenset[str], int] = {}
        self._renewed: tuple[tuple[str, str, float, float], Lease] | None = None

    def append(self, **kw: Any) -> Event:
        e = super().append(**kw)
        self._last_of[e.kind] = max(self._last_of.get(e.kind, 0), e.id)
        self._last_id = max(self._last_id, e.id)
        self._newest.clear()
        return e

    def events(self, *, service: str, after_id: int = 0, run_id: str | None = None,
               kinds: Collection[str] | None = None, limit: int | None = None) -> list[Event]:
        if kinds is None:
            newest = self._last_id
        else:
            group = kinds if isinstance(kinds, frozenset) else frozenset(kinds)
            newest = self._newest.get(group, -1)
            if newest < 0:
                newest = self._newest[group] = max((self._last_of.get(k, 0) for k in group),
                                                   default=0)
        if newest <= after_id:
            return []
        return super().events(service=service, after_id=after_id, run_id=run_id, kinds=kinds,
                              limit=limit)

    def renew_lease(self, *, key: str, holder: str, ttl: float) -> Lease:
        same = (key, holder, ttl, self._sim_clock.now())
        if self._renewed is not None and self._renewed[0] == same:
            return self._renewed[1]
        lease = super().renew_lease(key=key, holder=holder, ttl=ttl)
        self._renewed = (same, lease)
        return lease

    def release_lease(self, *, key: str, holder: str) -> None:
        self._renewed = None
        super().release_lease(key=key, holder=holder)


class SimulationClock(FakeClock):
    """A fake clock that also carries out what the script schedules (operator
    actions, approvals) when simulated time reaches them. Only ``sleep`` does it,
    never ``now``: the store reads ``now`` inside its transactions.

    The engine waits between checks in slices of at most ``POLL_SLICE`` (0.2 s),
    looking at the journal after each one, so an operator's action is seen within a
    slice. On simulated time that is a loop of 18,000 turns per simulated hour (1.2 s
    of wall time an hour: a week-long plan took minutes), for nothing: in a simulation
    only this clock's own scheduled actions can write to the journal meanwhile. So the
    simulation asks the runner for its whole wait at once (``Runner(poll_slice=inf)``),
    and this clock takes it *in the engine's slices*, the same floats added in the same
    order, stopping after the slice in which a scheduled action fires (the runner then
    sees it, as it would have at that slice's end) or the run's time bound is reached
    (where the runner would stop). The last slice, shorter than ``POLL_SLICE``, is left
    to the runner's own loop (it has a floor, ``MIN_SLEEP``, that a plain sleep has
    not): the times of every event are the very floats a slice-by-slice wait gives.
    What is skipped is only the runner's look at the journal after each slice (nothing
    there to see) and its lease renewal (the lease outlasts an interval by design;
    every tick renews it)."""

    def __init__(self, stop_at: float = INF) -> None:
        super().__init__(SIM_START)
        self._due: list[tuple[float, int, Callable[[float], None]]] = []
        self._n = 0
        self.stop_at = stop_at   # the run's time bound (its max_duration), absolute
        self.sleeps = 0          # calls of sleep (tests count them: no wall-time asserts)

    def at(self, when: float, action: Callable[[float], None]) -> None:
        """Call ``action(when)`` once simulated time reaches ``when``."""
        self._n += 1
        heapq.heappush(self._due, (when, self._n, action))

    @property
    def pending(self) -> int:
        return len(self._due)

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if seconds <= POLL_SLICE:  # one slice, as the engine takes them
            super().sleep(seconds)
            self.fire()
            return
        # slice by slice, in local floats (a week has 3 million slices)
        start = now = self.now()
        end = now + seconds
        due = self._due[0][0] if self._due else INF  # nothing is scheduled meanwhile
        while True:
            now += POLL_SLICE
            if now >= due or now >= self.stop_at or end - now < POLL_SLICE:
                break
        self.advance(now - start)  # exact: start + (now - start) == now for these floats
        self.fire()

    def fire(self) -> bool:
        """Carry out the actions due; True when there were any."""
        fired = False
        while self._due and self._due[0][0] <= self.now():
            when, _, action = heapq.heappop(self._due)
            action(when)
            fired = True
        return fired




# --- one simulated run ---------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationResult:
    """What one simulated run did. Times are seconds after T+0 (simulated)."""

    outcome: str                  # promoted | rolled_back | paused | held
    exit_code: int                # as `shiftover run`: 0 promoted, 3 rolled back, 4 held
    reason: str
    events: tuple[Event, ...]
    simulated: float              # seconds of simulated time the run took
    wall: float                   # seconds of wall time
    max_time: float
    final: Weights | None
    fault: Fault | None = None
    fault_at: float | None = None     # when the fault began (its step confirmed)
    ended_at: float | None = None     # 0% confirmed after a rollback, or the pause
    failed_checks: int = 0
    stopped_at_max_time: bool = False
    last_step: float | None = None    # the highest step confirmed

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "exit_code": self.exit_code, "reason": self.reason,
                "simulated_seconds": round(self.simulated, 3), "wall_seconds": round(self.wall, 3),
                "max_time": self.max_time,
                "final_weight": None if self.final is None else float(self.final.new_percent),
                "last_step": self.last_step, "failed_checks": self.failed_checks,
                "stopped_at_max_time": self.stopped_at_max_time,
                **({} if self.fault is None else {
                    "fault": {"gate": self.fault.gate, "step": self.fault.step},
                    "fault_at": self.fault_at, "ended_at": self.ended_at,
                    "fault_to_end_seconds": self.fault_to_end})}

    @property
    def fault_to_end(self) -> float | None:
        if self.fault_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.fault_at, 3)


def default_max_time(plan: Plan, script: Script) -> float:
    """Three times the plan's shortest run, plus the script's approval delays and its
    last operator action, plus a margin: generous for any plan that can finish."""
    delays = sum(d for d in script.approvals.values() if d is not None)
    last_action = max((a.at for a in script.operator), default=0.0)
    return 3 * minimum_duration(plan) + delays + last_action + MARGIN


def expected_outcome(plan: Plan) -> str:
    """How a run of this plan ends when a gate keeps failing: its ``on_failure``."""
    return "rolled_back" if plan.on_failure == "rollback" else "paused"


def simulate(plan: Plan, script: Script, *, max_time: float | None = None,
             fault: Fault | None = None, run_id: str = "simulation",
             on_event: Callable[[Event], None] | None = None) -> SimulationResult:
    """Run ``plan`` through the real engine against the script, on simulated time,
    until it is promoted, rolled back, paused for good, or ``max_time`` (simulated
    seconds; default :func:`default_max_time`) has passed."""
    bound = max_time if max_time is not None else (
        script.max_time if script.max_time is not None else default_max_time(plan, script))
    clock = SimulationClock(stop_at=SIM_START + bound)
    world = _World(plan, clock)
    router = InMemoryRouter(scale=plan.scales[0], key=f"simulation:{plan.journal_key}")
    gates = scripted_gates(plan, script, world, router, fault)
    journal = SimulationJournal(clock)
    collected: list[Event] = []
    runner: Runner | None = None

    def operator(kind: str, data: dict[str, Any]) -> Callable[[float], None]:
        # journalled at the time the script says: the clock reached it during the last
        # sleep of the engine, in which nothing else was journalled
        def act(when: float) -> None:
            journal.append(service=plan.journal_key, run_id="operator", kind=kind,
                           at=when, data=data, actor=ACTOR)
        return act

    for action in script.operator:
        data: dict[str, Any] = {"reason": action.reason}
        if action.step is not None:
            data["step"] = action.step
        clock.at(SIM_START + action.at, operator(OPERATOR_ACTIONS[action.do], data))

    def seen(e: Event) -> None:
        collected.append(e)
        world.saw(e)
        if e.kind == ev.APPROVAL_WAITING:
            step = float(e.data.get("step", -1))
            delay = script.approvals.get(step, 0.0)
            if delay is not None:
                clock.at(e.at + delay, operator(ev.APPROVED, {
                    "step": step, "reason": "simulated approval"
                    + (f", {span(delay)} after it was asked" if delay else "")}))
        # paused by the run with on_failure: pause, and nothing scripted left that could
        # move it: a real run would wait for a person forever; the simulation ends here
        if (e.kind == ev.ENGINE_PAUSED and e.actor is None and plan.on_failure == "pause"
                and clock.pending == 0 and runner is not None):
            runner.stop()
        if on_event is not None:
            on_event(e)

    wall = time.monotonic()
    try:
        runner = Runner(plan, router, gates, journal, clock, run_id=run_id,
                        plan_summary=plan_summary(plan), environment=plan.environment,
                        on_event=seen, poll_slice=INF, run_hook=_simulated_hook,
                        hook_pool=InlineExecutor())
        out = runner.run(max_duration=bound)
        state = runner.state
    finally:
        journal.close()
    return _result(plan, out, state, collected, clock.now() - SIM_START,
                   time.monotonic() - wall, bound, fault, world)


def _simulated_hook(action: Any, **_: Any) -> HookOutcome:
    """The plan's hooks are not run by a simulation: each succeeds at once, so that
    the timeline shows where they run and in which order their undos would."""
    return HookOutcome(Outcome(ok=True, exit_code=0, status=None, timed_out=False, stopped=False,
                               error=None, output="", stdout="", seconds=0.0,
                               kind="command" if action.run is not None else "webhook"), 1,
                       simulated=True)


def _result(plan: Plan, out: RunOutcome, state: ev.RunState, events: list[Event], simulated: float,
            wall: float, bound: float, fault: Fault | None, world: _World) -> SimulationResult:
    outcome, reason = out.outcome, out.reason
    at_max = outcome == "held" and simulated >= bound - 1e-6
    if outcome == "held" and state.paused and not at_max:
        outcome = "paused"
        reason = f"paused: {state.pause_reason}" if state.pause_reason else "paused"
    if at_max:
        reason = (f"the simulation reached its time bound ({span(bound)} simulated) "
                  f"before the run ended — {out.reason.removeprefix('max duration reached: ')}")
    fault_at = world.confirmed.get(fault.step) if fault is not None else None
    ended_at = None
    if outcome == "rolled_back":
        ended_at = next((e.at - SIM_START for e in events if e.kind == ev.ROLLED_BACK), None)
    elif outcome == "paused":
        ended_at = next((e.at - SIM_START for e in reversed(events)
                         if e.kind == ev.ENGINE_PAUSED), None)
    failed = sum(1 for e in events if e.kind == ev.CHECK and e.data.get("verdict") == "fail")
    return SimulationResult(
        outcome=outcome, exit_code=out.exit_code, reason=reason, events=tuple(events),
        simulated=simulated, wall=wall, max_time=bound, final=out.final_weight, fault=fault,
        fault_at=fault_at, ended_at=ended_at, failed_checks=failed, stopped_at_max_time=at_max,
        last_step=max(world.confirmed, default=None))


# --- a failure at each step ----------------------------------------------------------------


@dataclass(frozen=True)
class StepRun:
    """One run of ``--fail-each-step``: the fault at ``step``, what happened, and
    whether that is what the plan says should happen."""

    step: float
    result: SimulationResult
    expected: str

    @property
    def as_planned(self) -> bool:
        """The run ended as ``on_failure`` says: at this step's fault, or before it was
        reached because the script's own values broke an earlier step (the plan did
        its job there too; the table says "before N%")."""
        return self.result.outcome == self.expected

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "expected": self.expected, "as_planned": self.as_planned,
                **self.result.to_dict()}


# gates that judge new against old: at 100% old serves nothing, the comparison is not
# applicable and passes, so a fault of that gate alone cannot be caught at 100%
COMPARING = ("compare", "compare_latency")


@dataclass(frozen=True)
class FailGate:
    """The gate ``--fail-each-step`` fails, and why that one."""

    name: str
    chosen: bool                 # picked by default (not --fail-gate)
    skipped: tuple[str, ...]     # compare gates passed over, before it
    comparing: bool              # it compares with old: its fault at 100% cannot be caught

    def note(self) -> str | None:
        """What the output says about the choice, when there is something to say."""
        if self.comparing:
            why = ("every gate of the plan compares new with old" if self.chosen
                   else "it compares new with old")
            return (f"{why}: at 100% old serves nothing, the comparison is not applicable and "
                    "passes, so the 100% run cannot catch the fault (promoted, NO)")
        if self.chosen and self.skipped:
            listed = ", ".join(repr(n) for n in self.skipped)
            return (f"the first gate that can see a fault at every step ({listed} compare"
                    f"{'s' if len(self.skipped) == 1 else ''} new with old, not applicable at "
                    "100%); --fail-gate NAME for another")
        return None


def fail_gate(plan: Plan, name: str | None = None) -> FailGate:
    """``name`` (checked), or by default the plan's first gate that can catch a fault at
    every step — not a ``compare``/``compare_latency`` gate — else its first gate."""
    if name is not None:
        check_gate_name(plan, name, flag="--fail-gate")
        spec = next(g for g in plan.normal_state if g.name == name)
        return FailGate(name, False, (), _judge_kind(spec) in COMPARING)
    skipped: list[str] = []
    for spec in plan.normal_state:
        if _judge_kind(spec) not in COMPARING:
            return FailGate(spec.name, True, tuple(skipped), False)
        skipped.append(spec.name)
    return FailGate(plan.normal_state[0].name, True, (), True)


def fail_each_step(plan: Plan, script: Script, *, gate: str | None = None,
                   max_time: float | None = None,
                   on_run: Callable[[StepRun], None] | None = None) -> list[StepRun]:
    """One simulated run per step of the plan, ``gate`` (default: :func:`fail_gate`'s,
    the first that can catch a fault at every step) failing from the moment that step
    is confirmed; the rest as the script says."""
    name = fail_gate(plan, gate).name
    runs = []
    for i, step in enumerate(plan.steps):
        result = simulate(plan, script, max_time=max_time, fault=Fault(name, step),
                          run_id=f"fail-at-{i + 1}")
        run = StepRun(step, result, expected_outcome(plan))
        runs.append(run)
        if on_run is not None:
            on_run(run)
    return runs


def check_gate_name(plan: Plan, name: str, *, flag: str) -> None:
    names = [g.name for g in plan.normal_state]
    if name in names:
        return
    guess = _suggest(name, names, cutoff=0.5)
    raise BadInput(f"{flag} {name!r}: the plan has no gate of that name"
                   + (f" — did you mean {guess!r}?" if guess else ""),
                   hint="the plan's gates: " + "; ".join(repr(n) for n in names))


# --- words ---------------------------------------------------------------------------------


def offset(seconds: float, *, sign: bool = True) -> str:
    """``T+0:12:30`` (or ``0:12:30``): simulated time after the run started."""
    s = math.floor(max(0.0, seconds) + 1e-6)
    text = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"T+{text}" if sign else text


def span(seconds: float) -> str:
    """A length of simulated time in its units: ``30s``, ``5m``, ``2h30m``, ``1m30.5s``
    (every length shiftover prints is in these words)."""
    seconds = round(seconds, 3)  # 119.9999 is 2m, not 1m60s
    if seconds < 60:
        return f"{seconds:.3g}s"
    whole = int(seconds)
    h, m, s = whole // 3600, whole % 3600 // 60, seconds - whole // 60 * 60
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{s:.3g}s" if s >= 0.001 else ""]
    return "".join(parts)


def describe_phase(ph: Phase) -> str:
    if ph.kind == "value":
        text = f"{ph.value:g}" + (f" ({ph.samples} samples)" if ph.samples is not None else "")
    elif ph.kind == "status":
        text = f"status {ph.value:g}"
    elif ph.kind == "firing":
        text = "firing " + ", ".join(ph.names)
    elif ph.kind == "new_error_rate":
        text = f"new fails {ph.value:g} of requests (old {ph.old:g}, {ph.rate:g} req/s)"
    elif ph.kind == "new_latency":
        text = f"new {ph.value:g}s (old {ph.old:g}s)"
    elif ph.kind in ("no_data", "error"):
        text = ph.kind.replace("_", " ") + (f" ({ph.message})" if ph.message else "")
    else:
        text = ph.kind + "es" if ph.kind == "pass" else ph.kind + "s"
    when = []
    if ph.start is not None:
        when.append(f"from {ph.start.text()}")
    if ph.end is not None:
        when.append(f"until {ph.end.text()}")
    if ph.length is not None:
        when.append(f"for {span(ph.length)}")
    return text + (" " + " ".join(when) if when else "")


def describe_gate(spec: Any, phases: Sequence[Phase]) -> str:
    """What a gate measures in this simulation, in a line."""
    if not phases:
        return f"not in the script: passes throughout ({_passing(spec)})"
    text = ", then ".join(describe_phase(ph) for ph in phases)
    last = phases[-1]
    if last.end is not None or last.length is not None:
        text += ", then passes"
    if phases[0].start is not None and phases[0].start.at != 0:
        text = "passes, then " + text
    return text


def _passing(spec: Any) -> str:
    kind = _judge_kind(spec)
    if kind == "probe":
        return f"status {spec.expect_status}"
    if kind == "alerts":
        return "nothing firing"
    if kind == "compare":
        return f"both environments fail {DEFAULT_OLD_ERROR_RATE:g} of {DEFAULT_RATE:g} req/s"
    if kind == "compare_latency":
        return "the same latency on both environments"
    samples = getattr(spec, "min_samples", 0)
    return f"value {pass_value(spec):g}" + (f", {samples} samples" if samples else "")


# the timeline hides what every run has many of (passing checks, the intent before
# each confirmed weight, the bake restarting on a failed check, which its line says);
# --verbose shows every event
QUIET_KINDS = frozenset({ev.WEIGHT_INTENDED, ev.STEP_ADVANCED, ev.RUN_STOPPED})


def shown(e: Event, previous: Event | None = None, *, verbose: bool = False) -> bool:
    """Whether the (non-verbose) timeline shows ``e`` on a line of its own;
    ``previous`` is the event before it."""
    if verbose:
        return True
    if e.kind == ev.CHECK:
        return e.data.get("verdict") != "pass"
    if e.kind == ev.BAKE_STARTED:
        return not _after_bad_check(previous) and e.data.get("reason") not in (
            "run started", "reconciled with the router")
    if e.kind == ev.RECONCILED:  # the first campaign of a journal starts from the router
        return e.data.get("journal_percent") is not None
    return e.kind not in QUIET_KINDS


def _after_bad_check(previous: Event | None) -> bool:
    return previous is not None and previous.kind == ev.CHECK \
        and previous.data.get("verdict") != "pass"


@dataclass
class _Line:
    t: float
    kind: str
    text: str
    suffix: str = ""
    repeats: int = 0
    until: float = 0.0

    def render(self) -> tuple[float, str, str]:
        more = (f" (and {self.repeats} more like it, until {offset(self.until)})"
                if self.repeats else "")
        return (self.t, self.kind, f"{self.text}{self.suffix}{more}")


def timeline(events: Iterable[Event], describe: Callable[[Event], str], *,
             verbose: bool = False) -> list[tuple[float, str, str]]:
    """(offset, kind, text) per line. Unless ``verbose``: consecutive lines that say
    the same (a failing check every interval) are folded into one with a count, and
    a bake restarted by a check that did not pass is said on the check's line."""
    lines: list[_Line] = []
    previous: Event | None = None
    for e in events:
        before, previous = previous, e
        t = e.at - SIM_START
        if not shown(e, before, verbose=verbose):
            if e.kind == ev.BAKE_STARTED and _after_bad_check(before) and lines:
                pct = e.data.get("percent")
                lines[-1].suffix = (f" — the bake of {pct:g}% starts over"
                                    if isinstance(pct, int | float) else " — the bake starts over")
            continue
        text = describe(e)
        if e.kind == ev.RUN_STARTED:
            text = "run started (simulated: in-memory router, scripted gates)"
        last = lines[-1] if lines else None
        if not verbose and last is not None and last.kind == e.kind and last.text == text:
            last.repeats += 1
            last.until = t
            continue
        lines.append(_Line(t, e.kind, text))
    return [line.render() for line in lines]


__all__ = [
    "Boundary",
    "FailGate",
    "Fault",
    "OperatorAction",
    "Phase",
    "Script",
    "SimulationClock",
    "SimulationJournal",
    "SimulationResult",
    "StepRun",
    "check_gate_name",
    "default_max_time",
    "describe_gate",
    "describe_phase",
    "expected_outcome",
    "fail_each_step",
    "fail_gate",
    "load_script",
    "offset",
    "parse_script_text",
    "simulate",
    "span",
    "timeline",
]
