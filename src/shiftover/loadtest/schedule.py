"""The load schedule: what ``--rate`` (with ``--step`` and ``--duration``) asks for.

Rates are **requests per second**, never users: the load generator is an open
model, so a schedule says when requests arrive, not how many clients loop.
``--rate`` takes four forms:

==================  ==========  ===========================================================
``--rate``          kind        steps
==================  ==========  ===========================================================
``200``             constant    one step of ``--duration`` (required); with ``--step`` too,
                                windows of ``--step`` at the same rate
``50:500:50``       stepped     50, 100, ..., 500, each ``--step`` long (required)
``50:500``          ramp        linear from 50 to 500 over ``--duration`` (required),
                                reported in windows of ``--step``
``50,100,200``      list        the rates given, in that order, each ``--step`` long
==================  ==========  ===========================================================

Decisions, and why:

- A stepped schedule includes its end when the end lands on the grid (within
  1e-9 of an increment, so ``0.1:0.3:0.1`` ends at 0.3 despite binary floats)
  and never overshoots it: ``50:120:50`` is 50, 100. A load test that goes past
  the rate the user named is a surprise on a shared environment.
- ``--duration`` must be a whole number of ``--step`` windows (constant split and
  ramp). The alternative, a shorter last window, would report one step measured
  over fewer requests than its neighbours, and the knee is read from exactly
  those figures; the error names the nearest durations that fit instead.
- A ramp without ``--step`` is reported in 10 windows (fewer when the ramp is
  shorter than 10 s, so that no window is under 1 s).
- ``--duration`` with a stepped or list rate is refused rather than ignored:
  their length is the number of steps times ``--step``.
- At most :data:`MAX_STEPS` steps of at least :data:`MIN_STEP_SECONDS` each:
  a step shorter than a second has too few requests for a p99, and a thousand
  steps is already a typo (``50:5000:1``).
- Rates are kept to 12 significant digits (``0.30000000000000004`` is 0.3).

:meth:`Schedule.arrivals` gives the exact arrival times the open-model
dispatcher issues: the k-th request arrives when the expected count (the
integral of the rate from the start) reaches k, so a step's count is within one
request of ``rate x seconds`` and a ramp's windows rise smoothly.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shiftover.errors import BadInput
from shiftover.spec import MAX_DURATION, parse_duration

__all__ = [
    "KINDS",
    "MAX_STEPS",
    "MIN_STEP_SECONDS",
    "Schedule",
    "Step",
    "parse_schedule",
]

KINDS = ("constant", "stepped", "ramp", "list")
MAX_STEPS = 1000
MIN_STEP_SECONDS = 1.0
RAMP_WINDOWS = 10
_GRID = 1e-9  # how close to the grid a stepped end must be to be included
_SAME = 1e-9  # relative tolerance for "duration is a multiple of step"

_NUMBER = r"\s*[^\s:,]+\s*"
_STEPPED = re.compile(rf"^({_NUMBER}):({_NUMBER}):({_NUMBER})$")
_RAMP = re.compile(rf"^({_NUMBER}):({_NUMBER})$")


def _clean(x: float) -> float:
    """Round to 12 significant digits: grid arithmetic leaves 0.30000000000000004."""
    return float(f"{x:.12g}")


def _num(x: float) -> str:
    return f"{x:g}"


def _secs(x: float) -> str:
    """A duration as the user would type it back: 30s, 1.5s, 500ms."""
    if x < 1 and x > 0:
        return f"{x * 1000:g}ms"
    return f"{x:g}s"


def _human(x: float) -> str:
    """A duration in the largest whole unit: 2h, 5m, 90s, 1.5s."""
    if x >= 3600 and x % 3600 == 0:
        return f"{x / 3600:g}h"
    if x >= 60 and x % 60 == 0:
        return f"{x / 60:g}m"
    return _secs(x)


@dataclass(frozen=True)
class Step:
    """One window of the schedule. ``start_rate == end_rate`` except in a ramp."""

    index: int  # 0-based
    start_rate: float  # req/s when the step starts
    end_rate: float  # req/s when it ends
    seconds: float

    @property
    def rate(self) -> float:
        """The step's target rate: the mean of a linear window, ``(start + end) / 2``."""
        return (self.start_rate + self.end_rate) / 2

    @property
    def expected_requests(self) -> float:
        """How many requests arrive in this step: ``rate x seconds``."""
        return self.rate * self.seconds

    def offset_of(self, k: float) -> float:
        """Seconds into the step at which the expected count since its start reaches ``k``.

        The rate is linear, ``r(t) = r0 + a t``; solving ``r0 t + a t^2 / 2 = k``
        in the form ``2k / (r0 + sqrt(r0^2 + 2ak))`` is exact for ``a = 0`` and
        stable for small ``a``.
        """
        if k <= 0:
            return 0.0
        r0 = self.start_rate
        a = (self.end_rate - self.start_rate) / self.seconds
        return 2 * k / (r0 + math.sqrt(max(r0 * r0 + 2 * a * k, 0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_rate": self.start_rate,
            "end_rate": self.end_rate,
            "rate": self.rate,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        try:
            step = cls(
                index=int(d["index"]),
                start_rate=float(d["start_rate"]),
                end_rate=float(d["end_rate"]),
                seconds=float(d["seconds"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"not a load schedule step: {dict(d)!r} ({e})") from None
        if not (
            step.index >= 0
            and all(
                math.isfinite(v) and v > 0 for v in (step.start_rate, step.end_rate, step.seconds)
            )
        ):
            raise BadInput(
                f"not a load schedule step: {dict(d)!r} (rates and seconds must be finite and > 0)"
            )
        return step


@dataclass(frozen=True)
class Schedule:
    """The whole schedule: its kind, the ``--rate`` text as given, and its steps."""

    kind: str  # "constant" | "stepped" | "ramp" | "list"
    spec: str  # the --rate text as given
    steps: tuple[Step, ...]

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def peak_rate(self) -> float:
        return max(max(s.start_rate, s.end_rate) for s in self.steps)

    @property
    def starts(self) -> tuple[float, ...]:
        """Seconds from the start of the run at which each step starts."""
        out: list[float] = []
        t = 0.0
        for s in self.steps:
            out.append(t)
            t += s.seconds
        return tuple(out)

    @property
    def expected_requests(self) -> float:
        return sum(s.expected_requests for s in self.steps)

    def summary(self) -> str:
        """One line for a CLI header, e.g. ``stepped 50 -> 500 req/s, 10 steps of 30s, 5m total``."""
        first, last = self.steps[0], self.steps[-1]
        n = len(self.steps)
        each = self.steps[0].seconds
        total = self.total_seconds
        total_text = _human(total)
        windows = f"{n} step{'s' if n != 1 else ''} of {_human(each)}"
        if self.kind == "constant":
            rates = f"{_num(first.rate)} req/s"
        elif self.kind == "list":
            rates = (
                ", ".join(_num(s.rate) for s in self.steps[:6])
                + (", ..." if n > 6 else "")
                + " req/s"
            )
        elif self.kind == "ramp":
            rates = f"{_num(first.start_rate)} -> {_num(last.end_rate)} req/s"
        else:
            rates = f"{_num(first.rate)} -> {_num(last.rate)} req/s"
        return f"{self.kind} {rates}, {windows}, {total_text} total"

    def arrivals(self) -> Iterator[tuple[int, float]]:
        """Every arrival of the run, in order: ``(step index, seconds from the run's start)``.

        The k-th arrival (k = 0, 1, ...) is at the time the expected count
        reaches k, so the first is at 0 and one that falls exactly on a step
        boundary belongs to the next step. Lazy: a long run has millions.
        """
        k = 0
        before = 0.0  # expected count at the start of the current step
        for step, start in zip(self.steps, self.starts, strict=True):
            after = before + step.expected_requests
            limit = after - 1e-9 * max(1.0, after)
            while k < limit:
                yield step.index, start + min(step.offset_of(k - before), step.seconds)
                k += 1
            before = after

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "spec": self.spec,
            "steps": [s.to_dict() for s in self.steps],
            "total_seconds": self.total_seconds,
            "peak_rate": self.peak_rate,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schedule:
        try:
            kind = str(d["kind"])
            spec = str(d["spec"])
            raw = d["steps"]
        except (KeyError, TypeError) as e:
            raise BadInput(f"not a load schedule: missing {e}") from None
        if kind not in KINDS:
            raise BadInput(f"not a load schedule: kind {kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(raw, list | tuple) or not raw:
            raise BadInput("not a load schedule: 'steps' must be a non-empty list")
        steps = tuple(Step.from_dict(s) for s in raw)
        if [s.index for s in steps] != list(range(len(steps))):
            raise BadInput("not a load schedule: step indexes must be 0, 1, 2, ... in order")
        return cls(kind=kind, spec=spec, steps=steps)


# --- parsing -----------------------------------------------------------------

_RATE_HINT = "--rate takes requests per second: 200 (constant), 50:500:50 (stepped), 50:500 (ramp) or 50,100,200"


def _rate(text: str, spec: str, what: str = "rate") -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise BadInput(
            f"--rate {spec!r}: {text.strip()!r} is not a number", hint=_RATE_HINT
        ) from None
    if not math.isfinite(value):
        raise BadInput(
            f"--rate {spec!r}: the {what} must be a finite number, not {text.strip()!r}",
            hint=_RATE_HINT,
        )
    if value <= 0:
        raise BadInput(
            f"--rate {spec!r}: the {what} must be above 0 requests per second (got {_num(value)})",
            hint=_RATE_HINT,
        )
    return value


def _duration(value: str | float | None, flag: str, example: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise BadInput(f"{flag} {value!r}: {e}", hint=f"e.g. {flag} {example}") from None
    if seconds < MIN_STEP_SECONDS:
        raise BadInput(
            f"{flag} {value!r} is shorter than {MIN_STEP_SECONDS:g} s: a step needs enough requests for a p99",
            hint=f"e.g. {flag} {example}",
        )
    return seconds


def _windows(duration: float, step: float, *, rate: str) -> int:
    """How many ``step`` windows make ``duration``; refuses a remainder."""
    n = round(duration / step)
    if n < 1 or abs(n * step - duration) > _SAME * max(duration, 1.0):
        lower = max(1, math.floor(duration / step + _SAME)) * step
        upper = lower + step
        raise BadInput(
            f"--duration {_secs(duration)} is not a whole number of --step {_secs(step)} windows",
            hint=f"--rate {rate} --duration {_secs(lower)} --step {_secs(step)} "
            f"(or --duration {_secs(upper)}, or a --step that divides {_secs(duration)})",
        )
    return n


def _check_count(n: int, spec: str, hint: str) -> None:
    if n > MAX_STEPS:
        raise BadInput(f"--rate {spec!r} gives {n:,} steps: at most {MAX_STEPS:,}", hint=hint)


def _check_total(steps: tuple[Step, ...], spec: str) -> None:
    total = sum(s.seconds for s in steps)
    if total > MAX_DURATION:
        raise BadInput(
            f"--rate {spec!r} runs for {total / 86400:.3g} days: a load test is at most 7 days",
            hint="use fewer steps or a shorter --step",
        )


def _nice_up(x: float) -> float:
    """Round up to two significant digits, for a suggested increment."""
    if x <= 0:
        return x
    mag = 10 ** math.floor(math.log10(x) - 1)
    return _clean(math.ceil(x / mag - 1e-9) * mag)


def _each_step_needs_step(kind: str, what: str, spec: str, text: str, n: int,
                          step_s: float | None, duration_s: float | None) -> float:
    """A stepped or list rate runs its steps for --step each: --step given, --duration not."""
    if step_s is None:
        raise BadInput(f"--rate {spec!r} is {kind}: say how long each step lasts with --step",
                       hint=f"--rate {text} --step 30s")
    if duration_s is not None:
        raise BadInput(f"--duration does not apply to {what} ({spec}): it runs {n} steps of --step each",
                       hint=f"--rate {text} --step {_secs(step_s)}")
    return step_s


def parse_schedule(
    rate: str,
    *,
    step: str | float | None = None,
    duration: str | float | None = None,
) -> Schedule:
    """Parse ``--rate`` with ``--step`` and ``--duration`` into a :class:`Schedule`.

    ``step`` and ``duration`` take what :func:`shiftover.spec.parse_duration`
    takes (``30s``, ``5m``, or seconds). Every error is a :class:`BadInput`
    whose hint is a command line that works when pasted.
    """
    spec = rate
    text = str(rate).strip()
    step_s = _duration(step, "--step", "30s")
    duration_s = _duration(duration, "--duration", "5m")
    if not text:
        raise BadInput("--rate is empty", hint=_RATE_HINT)

    if "," in text:
        parts = text.split(",")
        if any(not p.strip() for p in parts):
            raise BadInput(
                f"--rate {spec!r}: an empty item in the list",
                hint="e.g. --rate 50,100,200 --step 30s",
            )
        if any(":" in p for p in parts):
            raise BadInput(
                f"--rate {spec!r}: a list holds plain rates, not ranges",
                hint="e.g. --rate 50,100,200 --step 30s, or --rate 50:500:50 --step 30s",
            )
        rates = [_rate(p, spec) for p in parts]
        step_s = _each_step_needs_step("a list of steps", "a list rate", spec, text, len(rates), step_s, duration_s)
        _check_count(len(rates), spec, "split the list into several runs")
        steps = tuple(Step(i, _clean(r), _clean(r), step_s) for i, r in enumerate(rates))
        _check_total(steps, spec)
        return Schedule("list", spec, steps)

    m = _STEPPED.match(text)
    if m:
        start, end, inc = (
            _rate(m.group(1), spec, "start"),
            _rate(m.group(2), spec, "end"),
            m.group(3),
        )
        try:
            increment = float(inc.strip())
        except ValueError:
            raise BadInput(
                f"--rate {spec!r}: {inc.strip()!r} is not a number", hint=_RATE_HINT
            ) from None
        if not math.isfinite(increment):
            raise BadInput(
                f"--rate {spec!r}: the increment must be a finite number", hint=_RATE_HINT
            )
        step_text = _secs(step_s) if step_s is not None else "30s"
        if increment == 0:
            raise BadInput(
                f"--rate {spec!r}: an increment of 0 never reaches the end",
                hint=f"e.g. --rate {_num(start)}:{_num(end)}:{_num(_nice_up((end - start) / 10) or start)} --step {step_text}",
            )
        if increment < 0:
            raise BadInput(
                f"--rate {spec!r}: the increment must be above 0 (a stepped rate rises from start to end)",
                hint=f"--rate {_num(start)}:{_num(end)}:{_num(-increment)} --step {step_text}",
            )
        if end < start:
            raise BadInput(
                f"--rate {spec!r}: the end ({_num(end)}) is below the start ({_num(start)})",
                hint=f"--rate {_num(end)}:{_num(start)}:{_num(increment)} --step {step_text}",
            )
        n = math.floor((end - start) / increment + _GRID) + 1
        _check_count(
            n,
            spec,
            f"--rate {_num(start)}:{_num(end)}:{_num(_nice_up((end - start) / (MAX_STEPS - 1)))} --step {step_text}",
        )
        step_s = _each_step_needs_step("stepped", "a stepped rate", spec, text, n, step_s, duration_s)
        values = [_clean(start + i * increment) for i in range(n)]
        if abs(values[-1] - end) <= _GRID * increment:
            values[-1] = end
        steps = tuple(Step(i, r, r, step_s) for i, r in enumerate(values))
        _check_total(steps, spec)
        return Schedule("stepped", spec, steps)

    m = _RAMP.match(text)
    if m:
        start, end = _rate(m.group(1), spec, "start"), _rate(m.group(2), spec, "end")
        if end < start:
            raise BadInput(
                f"--rate {spec!r}: the end ({_num(end)}) is below the start ({_num(start)}); a ramp rises",
                hint=f"--rate {_num(end)}:{_num(start)} --duration 5m",
            )
        if duration_s is None:
            raise BadInput(
                f"--rate {spec!r} is a ramp: say how long it takes with --duration",
                hint=f"--rate {text} --duration 5m",
            )
        if step_s is None:
            n = min(RAMP_WINDOWS, math.floor(duration_s / MIN_STEP_SECONDS + _SAME))
            step_s = duration_s / n
        else:
            n = _windows(duration_s, step_s, rate=text)
        _check_count(
            n, spec, f"--rate {text} --duration {_secs(duration_s)} --step {_secs(duration_s / 10)}"
        )
        slope = (end - start) / duration_s
        steps = tuple(
            Step(
                i,
                _clean(start + slope * i * step_s),
                end if i == n - 1 else _clean(start + slope * (i + 1) * step_s),
                step_s,
            )
            for i in range(n)
        )
        _check_total(steps, spec)
        return Schedule("ramp", spec, steps)

    if ":" in text:
        raise BadInput(f"--rate {spec!r} is not a rate schedule", hint=_RATE_HINT)
    value = _rate(text, spec)
    if duration_s is None:
        raise BadInput(
            f"--rate {spec!r} is a constant rate: say how long it runs with --duration",
            hint=f"--rate {text} --duration 5m",
        )
    if step_s is None:
        steps = (Step(0, _clean(value), _clean(value), duration_s),)
    else:
        n = _windows(duration_s, step_s, rate=text)
        _check_count(
            n, spec, f"--rate {text} --duration {_secs(duration_s)} --step {_secs(duration_s / 10)}"
        )
        steps = tuple(Step(i, _clean(value), _clean(value), step_s) for i in range(n))
    _check_total(steps, spec)
    return Schedule("constant", spec, steps)
