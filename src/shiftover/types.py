"""Values that cross module boundaries: weights, measurements, verdicts.

All frozen dataclasses: pydantic is for the plan boundary only.

``Weights`` is the percent of traffic on the *new* environment, held as an exact
fraction so that 1% is 1%, not 0.0099999. It is the one representation of a
split from the router to the journal to the views:

- Backends speak integer weights on their own scales (HAProxy 0–256, Route53
  0–255 relative, ALB 0–999). A split is *expressible* on a scale when some
  pair ``(old, new)`` of integers on it has exactly that ratio: 1% on HAProxy is
  (198, 2), 50% is (256, 256), but 33.3% is not (the nearest at or below is
  127/382 = 33.246%). ``to_backend`` maps only expressible splits and raises
  otherwise: a router never writes an approximation and then "verifies" it
  against the same approximation. ``at_or_below`` finds the largest expressible
  split not above a percent (how a plan's steps are mapped when it is loaded).
- The journal stores ``Weights.exact`` (``"125/63"``), never a float: a split read
  back from the router (say 247/5 set by hand, 1.984…%) compares equal to itself
  after the round trip, so reconciling with it happens once, not on every tick.
- ``write_path`` orders the single-server writes of a change so that the new
  share moves monotonically from the current split to the target: lowering the
  new share never passes through a higher one, raising it never overshoots.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from shiftover.errors import BadInput


def _as_fraction(value: float | int | str | Fraction) -> Fraction:
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadInput(f"weight {value!r} is not a finite number")
        # 12.5 -> 25/2 exactly; 0.1 -> 1/10 (not the binary expansion)
        return Fraction(str(value))
    try:
        return Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise BadInput(f"weight {value!r} is not a number",
                       hint="write a percent such as 5, 12.5 or 125/63") from None


def _reduced_pair(share: Fraction) -> tuple[int, int]:
    """The smallest integer (old, new) with new / (old + new) == share."""
    return (share.denominator - share.numerator, share.numerator)


@dataclass(frozen=True, order=True)
class Weights:
    """Percent of traffic on the new environment (0–100), exact."""

    new_percent: Fraction

    def __init__(self, new_percent: float | int | str | Fraction) -> None:
        pct = _as_fraction(new_percent)
        if pct < 0 or pct > 100:
            raise BadInput(
                f"weight {float(pct):g}% is outside 0-100",
                hint="percent of traffic on the new environment must be between 0 and 100",
            )
        object.__setattr__(self, "new_percent", pct)

    @classmethod
    def percent(cls, value: float | int | str | Fraction) -> Weights:
        return cls(value)

    @classmethod
    def parse(cls, exact: str) -> Weights:
        """The inverse of :attr:`exact` (``"125/63"``, ``"10"``)."""
        return cls(Fraction(exact))

    @property
    def exact(self) -> str:
        """The percent as an exact fraction string, for the journal: ``"125/63"``."""
        return str(self.new_percent)

    @property
    def share(self) -> Fraction:
        """Fraction of traffic on new, 0–1."""
        return self.new_percent / 100

    @property
    def old_percent(self) -> Fraction:
        return 100 - self.new_percent

    def as_float(self) -> float:
        return float(self.new_percent)

    def __str__(self) -> str:
        return f"{float(self.new_percent):.4g}%"

    # --- integer scales ----------------------------------------------------

    def expressible(self, maximum: int) -> bool:
        """True when some integer pair on ``0..maximum`` has exactly this split."""
        old, new = _reduced_pair(self.share)
        return max(old, new) <= maximum

    def to_backend(self, maximum: int) -> tuple[int, int]:
        """Integer ``(old, new)`` weights on a ``0..maximum`` scale with exactly this
        split, as large as the scale allows (more resolution for the backend):
        1% on 0-256 is (198, 2), 50% is (256, 256), 100% is (0, 256).

        Raises ``ValueError`` when the scale cannot express the split exactly
        (see :meth:`at_or_below`): a backend is never given an approximation.
        """
        if maximum < 1:
            raise ValueError("maximum weight must be >= 1")
        old, new = _reduced_pair(self.share)
        if max(old, new) > maximum:
            below = self.at_or_below(maximum)
            raise ValueError(
                f"{self} cannot be set exactly with integer weights 0-{maximum}; "
                f"the nearest split at or below it is {below} ({below.exact}%)"
            )
        k = maximum // max(old, new)
        return (old * k, new * k)

    def at_or_below(self, maximum: int) -> Weights:
        """The largest split not above this one that a ``0..maximum`` scale expresses
        exactly (0% when even one unit of weight on new is too much)."""
        if maximum < 1:
            raise ValueError("maximum weight must be >= 1")
        s = self.share
        if self.expressible(maximum):
            return self
        best = Fraction(0)
        # For each old weight o, the largest new weight n with n/(o+n) <= s is
        # floor(o*s/(1-s)); the best split is the best of these (O(maximum)).
        ratio = s / (1 - s)  # s < 1 here: 100% is always expressible
        for o in range(1, maximum + 1):
            n = min(maximum, math.floor(o * ratio))
            if n > 0:
                cand = Fraction(n, o + n)
                if cand > best:
                    best = cand
        return Weights(best * 100)

    @classmethod
    def from_backend(cls, old: int, new: int) -> Weights | None:
        """Percent on new from integer weights; None when both are 0 (no traffic)."""
        if old < 0 or new < 0:
            raise ValueError("backend weights cannot be negative")
        if old + new == 0:
            return None
        return cls(Fraction(new * 100, old + new))


def _share(old: int, new: int) -> Fraction | None:
    return None if old + new == 0 else Fraction(new, old + new)


def _ok_old(ok: Any, new: int, old: int) -> bool:
    return bool(ok(old, new))


def _furthest(start: int, end: int, ok: Any) -> int:
    """Walk from ``start`` toward ``end`` while ``ok(value)``; the last value that was ok."""
    step = 1 if end > start else -1
    best = start
    for cand in range(start + step, end + step, step):
        if not ok(cand):
            break
        best = cand
    return best


def write_path(current: tuple[int, int], target: tuple[int, int]) -> list[tuple[int, int]]:
    """The pairs a backend passes through when ``(old, new)`` weights are written one
    server at a time from ``current`` to ``target`` (the last pair is ``target``).

    Every pair keeps the new share between the current and the target share, and
    none has both weights 0 (HAProxy would answer 503 to everything). Two single
    writes cannot always do that (raising 10% = 225/25 to 11% = 178/22 overshoots
    or undershoots after the first write), so intermediate pairs walk the wedge
    between the two shares, each write moving one server as far toward its
    target as the wedge allows. Each server's weight only ever moves toward its
    target, so the path is short (a handful of writes) and always ends.

    A few hand-set small weights leave no grid point inside the wedge (from 2/1 =
    33% to 40% nothing in between can be written); then, and from a backend that
    serves nothing, the path may dip toward the old environment (less on new),
    never above both shares: moving toward 0% is always the safe side.
    """
    o, n = current
    to, tn = target
    if to < 0 or tn < 0 or o < 0 or n < 0:
        raise ValueError("backend weights cannot be negative")
    goal = _share(to, tn)
    if goal is None:
        raise ValueError("a target split needs a non-zero weight")
    now = _share(o, n)
    lo, hi = (Fraction(0), goal) if now is None else (min(now, goal), max(now, goal))

    def ok(a: int, b: int) -> bool:
        s = _share(a, b)
        return s is not None and lo <= s <= hi

    path: list[tuple[int, int]] = []
    while (o, n) != (to, tn):
        if o != to and ok(to, n):
            o = to
        elif n != tn and ok(o, tn):
            n = tn
        else:
            no = _furthest(o, to, functools.partial(_ok_old, ok, n))
            nn = _furthest(n, tn, functools.partial(ok, o)) if no == o else n
            if (no, nn) == (o, n):
                if lo == 0:  # pragma: no cover - proven impossible (tests/test_types.py)
                    raise ValueError(f"no write path from {current} to {target}")
                lo = Fraction(0)  # no grid point in the wedge: allow less on new
                continue
            o, n = no, nn
        path.append((o, n))
    return path


class Verdict(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Measurement:
    """What a provider saw. Providers never judge.

    ``value`` is the number a threshold applies to (None when the provider has
    no single number, e.g. an alerts query: see ``details``). ``samples`` is how
    many observations back it (requests, series, alerts), when known.
    """

    value: float | None
    at: float
    samples: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """The verdict on one gate at one tick, with the evidence that decided it."""

    gate: str
    verdict: Verdict
    value: float | None = None
    threshold: str | None = None
    samples: int | None = None
    reason: str = ""
    at: float = 0.0
    # INCONCLUSIVE because the provider could not answer at all (refused, bad
    # query, timeout), as opposed to "answered, nothing to judge yet": errors
    # count toward the plan's error_limit, and `validate` fails on them
    error: bool = False
    # what a statistical judge decided on (a compare gate's counts, estimates,
    # confidence bounds, e-value and p-value), JSON-ready; None for the others
    evidence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "verdict": self.verdict.value,
            "value": self.value,
            "threshold": self.threshold,
            "samples": self.samples,
            "reason": self.reason,
            "at": self.at,
            "error": self.error,
            **({} if self.evidence is None else {"evidence": self.evidence}),
        }


@dataclass(frozen=True)
class EnvCounts:
    """Requests and errors of each environment over one span of time: what a
    ``compare`` gate's source reports (exact integers, never rates)."""

    old_requests: int
    old_errors: int
    new_requests: int
    new_errors: int

    def __post_init__(self) -> None:
        for name in ("old_requests", "old_errors", "new_requests", "new_errors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a count (an integer >= 0), not {value!r}")
        for env in ("old", "new"):
            if getattr(self, f"{env}_errors") > getattr(self, f"{env}_requests"):
                raise ValueError(f"{env}_errors exceeds {env}_requests")

    def __sub__(self, other: EnvCounts) -> EnvCounts:
        return EnvCounts(self.old_requests - other.old_requests,
                         self.old_errors - other.old_errors,
                         self.new_requests - other.new_requests,
                         self.new_errors - other.new_errors)

    def __add__(self, other: EnvCounts) -> EnvCounts:
        return EnvCounts(self.old_requests + other.old_requests,
                         self.old_errors + other.old_errors,
                         self.new_requests + other.new_requests,
                         self.new_errors + other.new_errors)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.old_requests, self.old_errors, self.new_requests, self.new_errors)

    def as_dict(self) -> dict[str, int]:
        return {"old_requests": self.old_requests, "old_errors": self.old_errors,
                "new_requests": self.new_requests, "new_errors": self.new_errors}
