"""Building blocks of plan models, shared by the plan file and every backend.

Each router and gate owns its pydantic spec in its own module (``routers/route53.py``
defines ``Route53RouterSpec`` beside ``Route53Router``); the registries assemble the
discriminated unions the plan validates against. What those specs have in common
lives here: durations, URLs, the "plan rule" error that the loader turns into a
``file:line:col`` message, and the base classes. It imports nothing from shiftover,
so every backend can import it without a cycle.

Router specs carry two class-level facts the plan needs before any I/O:

- ``SCALE``: the largest integer weight the backend takes (HAProxy 256, Route53
  255, ALB 999); a plan's steps are mapped onto it when the plan is loaded.
- ``LABEL``: how errors name that scale ("HAProxy's absolute weights 0-256").

Gate specs derive from :class:`GateSpecBase` (a ``name``; ``min_samples`` where the
backend can count samples).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# A cutover is hours, a bake minutes: anything longer than a week is a typo
# (``interval: 1e308`` once overflowed the clock arithmetic into a traceback).
MAX_DURATION = 7 * 86400.0


def parse_duration(value: Any) -> float:
    """'500ms' -> 0.5, '90s' -> 90, '5m' -> 300, '1h' -> 3600, '1d'; numbers are seconds.
    At most a week (:data:`MAX_DURATION`)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like 500ms, 90s, 5m or 1h")
    seconds: float | None = None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a duration must be a finite number of seconds, e.g. 90 or 90s")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds is None:
        raise ValueError(f"{value!r} is not a duration: use a number with ms, s, m or h, e.g. 500ms, 90s, 5m, 1h")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than a week: durations are at most 7d (604800 s)")
    return seconds


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"},
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
    ],
    "description": "a duration: 500ms, 90s, 5m, 1h, or a number of seconds (at most 7d)",
}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
# Timeouts of 0 would fail every check: refuse them at the plan.
Timeout = Annotated[Duration, Field(gt=0)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise rule(f"{value!r} is not an http(s) URL: write it with scheme and host, e.g. http://127.0.0.1:9090")
    return value


Url = Annotated[str, AfterValidator(_check_url)]


def rule(message: str, at: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A plan rule broken; ``at`` is where, relative to the validated field or model."""
    return PydanticCustomError("plan_rule", "{message}", {"message": message, "at": at})


class SpecModel(BaseModel):
    """Base of every plan model: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RouterSpecBase(SpecModel):
    """A router's plan model. Subclasses set ``type: Literal[...]``, SCALE and LABEL,
    and ``lease_target()`` when the lease key can be known without I/O."""

    SCALE: ClassVar[int]
    LABEL: ClassVar[str]
    if TYPE_CHECKING:
        type: str  # each subclass: a Literal, the union's discriminator

    def lease_target(self) -> str | None:
        """What this router drives, as written in the plan (the router's ``lease_key``
        may canonicalise it further): two lockstep members with the same target are a
        plan error. None when it cannot be told without I/O."""
        return None

    def rollback_note(self) -> str | None:
        """What bounds a rollback on this router beyond the write itself, for ``plan``
        (None: the router switches at once)."""
        return None


class GateSpecBase(SpecModel):
    """A gate's plan model. Subclasses set ``type: Literal[...]`` and may set JUDGE,
    the rule table :mod:`shiftover.analysis.judge` applies: ``threshold`` (a value
    held to min/max, with min_samples), ``alerts`` (things firing fail, things
    without data hold), ``probe`` (an HTTP answer)."""

    JUDGE: ClassVar[str] = "threshold"
    if TYPE_CHECKING:
        type: str

    name: str = Field(min_length=1)


def check_threshold(gate: Any) -> None:
    """A threshold gate (``max``, ``min`` or both) must have one, and one some value
    can pass: a plan rule otherwise (shared by every gate judged on a value)."""
    if gate.max is None and gate.min is None:
        raise rule(f"a {gate.type} gate needs a threshold: set max, min, or both", ("max",))
    if gate.max is not None and gate.min is not None and gate.min > gate.max:
        raise rule(f"min {gate.min:g} is above max {gate.max:g}: no value could pass this gate",
                   ("min",))


MinSamples = Annotated[int, Field(ge=0, description="fewer samples than this is INCONCLUSIVE")]


__all__ = [
    "MAX_DURATION",
    "Duration",
    "FiniteFloat",
    "GateSpecBase",
    "MinSamples",
    "RouterSpecBase",
    "SpecModel",
    "Timeout",
    "Url",
    "check_threshold",
    "parse_duration",
    "rule",
]
