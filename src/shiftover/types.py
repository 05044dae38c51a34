"""Values that cross module boundaries: weights, measurements, verdicts.

All frozen dataclasses: pydantic is for the plan boundary only.

``Weights`` is the percent of traffic on the *new* environment, held as an exact
fraction so that 1% is 1%, not 0.0099999. Backends speak integer weights on their
own scales (HAProxy 0–256, Route53 0–255 relative, ALB 0–999); ``to_backend`` maps a
percent to the pair ``(old, new)`` of integers whose ratio is exactly the percent
whenever the scale allows it, and ``from_backend`` maps back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from shiftover.errors import BadInput


def _as_fraction(value: float | int | str | Fraction) -> Fraction:
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        # 12.5 -> 25/2 exactly; 0.1 -> 1/10 (not the binary expansion)
        return Fraction(str(value))
    return Fraction(value)


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

    @property
    def old_percent(self) -> Fraction:
        return 100 - self.new_percent

    def as_float(self) -> float:
        return float(self.new_percent)

    def __str__(self) -> str:
        return f"{float(self.new_percent):g}%"

    def to_backend(self, maximum: int) -> tuple[int, int]:
        """Integer ``(old, new)`` weights on a ``0..maximum`` scale.

        Exact when the reduced fraction's denominator fits the scale: 1% on
        HAProxy is (198, 2), 50% is (256, 256), 100% is (0, 256). Otherwise the
        closest fraction with a denominator <= ``maximum``.
        """
        if maximum < 1:
            raise ValueError("maximum weight must be >= 1")
        share = self.new_percent / 100
        if share == 0:
            return (maximum, 0)
        if share == 1:
            return (0, maximum)
        if share.denominator > maximum:
            share = share.limit_denominator(maximum)
            if share == 0:
                share = Fraction(1, maximum)
            if share == 1:
                share = Fraction(maximum - 1, maximum)
        a, b = share.numerator, share.denominator
        old, new = b - a, a
        k = maximum // max(old, new)
        return (old * k, new * k)

    @classmethod
    def from_backend(cls, old: int, new: int) -> Weights | None:
        """Percent on new from integer weights; None when both are 0 (no traffic)."""
        if old < 0 or new < 0:
            raise ValueError("backend weights cannot be negative")
        if old + new == 0:
            return None
        return cls(Fraction(new * 100, old + new))


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "verdict": self.verdict.value,
            "value": self.value,
            "threshold": self.threshold,
            "samples": self.samples,
            "reason": self.reason,
            "at": self.at,
        }
