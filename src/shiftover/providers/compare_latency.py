"""``compare_latency`` gates: the new environment's latency against the old one's.

The latency counterpart of :mod:`shiftover.providers.compare`. At every check
the gate reads one latency figure for each environment (its p95 over the last
interval, say) from a ``source`` and hands the pair to
:class:`shiftover.analysis.latency.CompareLatency` (Mann-Whitney U with an
effect-size threshold, made sequential by alpha spending, plus an absolute SLO;
its docstring states the limits). As with ``compare``, this module only
measures and tracks the step:

- the test restarts whenever the router's split changes and when the run
  restarts;
- at 0% new has no traffic: no data;
- at 100% old serves nothing: the comparison is not applicable, and only the
  SLO (when set) still judges new's figures;
- an unknown split keeps the step's test going at the last known split (no
  data when no step is in progress); where there is nothing to judge the source
  is still asked once, so one that cannot work is an error before traffic moves.

A source's figures are per *interval*: its queries should cover about one
``interval`` of the plan (a ``[15s]`` range for a 15 s interval), so that
successive figures share as little as possible (the test assumes independent
figures; see the limits).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import Field, field_validator

from shiftover._registry import build, by_type, specs_of
from shiftover.errors import NoData, ProviderError
from shiftover.providers.compare import StepTracking
from shiftover.spec import Duration, GateSpecBase, SpecModel, Timeout, rule
from shiftover.types import Measurement, Weights

# source type -> "module:Class"; the class has ``Spec`` and ``from_spec(spec) -> LatencySource``
LATENCY_SOURCES: dict[str, str] = {
    "prometheus": "shiftover.providers.prometheus:PrometheusLatency",
}


@runtime_checkable
class LatencySource(Protocol):
    """Where a ``compare_latency`` gate's figures come from: each environment's
    latency over the interval that ends ``now``, in seconds, as ``(old, new)``;
    None for an environment with no value (no traffic in the interval). Raises
    ``NoData`` when neither has one, ``ProviderError`` when it cannot answer."""

    def latency(self, *, now: float) -> tuple[float | None, float | None]: ...

    def describe(self) -> str: ...


@functools.cache
def latency_source_specs() -> dict[str, Any]:
    return specs_of(LATENCY_SOURCES, "compare_latency source")


if TYPE_CHECKING:
    LatencySourceSpec = SpecModel
else:
    LatencySourceSpec = by_type(latency_source_specs().values())


def build_latency_source(spec: Any) -> LatencySource:
    source: LatencySource = build(LATENCY_SOURCES, "compare_latency source", spec)
    return source


class CompareLatencyGate(GateSpecBase):
    """New's latency against old's over the current step: FAIL when new is slower
    by more than ``effect_size`` (a ratio) and a Mann-Whitney U test, made
    sequential by alpha spending, says so; or when two of new's last three
    figures exceed ``slo``. INCONCLUSIVE below ``min_intervals`` figures on
    either side."""

    JUDGE: ClassVar[str] = "compare_latency"
    type: Literal["compare_latency"]
    source: LatencySourceSpec = Field(description="where each environment's latency figure "
                                      "comes from (type: " + ", ".join(LATENCY_SOURCES) + ")")
    alpha: float = Field(default=0.01, gt=0, le=0.2, description=(
        "the chance of a false regression FAIL over a whole step, however often checked"))
    effect_size: float = Field(default=1.2, ge=1, le=100, allow_inf_nan=False, description=(
        "a ratio: new must be more than this many times as slow as old to be a regression"))
    slo: Duration | None = Field(default=None, gt=0, description=(
        "an absolute limit on new's figure (e.g. 500ms): two of its last three above it FAIL"))
    min_intervals: int = Field(default=10, ge=2, description=(
        "figures each environment needs in this step before the test runs (below: INCONCLUSIVE)"))
    timeout: Timeout = 5.0

    @field_validator("slo")
    @classmethod
    def _slo_with_a_unit(cls, value: float | None) -> float | None:
        # a bare number is seconds: `slo: 500` meant as milliseconds would never fire
        if value is not None and value > 60:
            raise rule(f"slo {value:g}s is more than a minute: a latency SLO is milliseconds "
                       "or seconds; write it with its unit, e.g. slo: 500ms")
        return value


class CompareLatencyProvider(StepTracking):
    """Both environments' latency figures, tagged with the current step."""

    Spec: ClassVar[type[CompareLatencyGate]] = CompareLatencyGate
    SPLIT_AWARE: ClassVar[bool] = True

    def __init__(self, source: LatencySource) -> None:
        super().__init__()
        self.source = source

    @classmethod
    def from_spec(cls, spec: CompareLatencyGate) -> CompareLatencyProvider:
        return cls(build_latency_source(spec.source))

    def describe(self) -> str:
        return f"compare_latency {self.source.describe()}"

    def _probe(self, now: float) -> None:
        try:
            self.source.latency(now=now)
        except NoData:
            pass

    def measure(self, *, now: float, split: Weights | None = None) -> Measurement:
        split, notes = self._step(now, split)
        try:
            old, new = self.source.latency(now=now)
        except ProviderError as exc:
            self._failed(now, answered=isinstance(exc, NoData))
            raise
        self._answered(now)
        details: dict[str, Any] = {"step": split.exact, "since": self._since,
                                   "old": old, "new": new, **notes}
        if split.new_percent == 100:
            details["not_applicable"] = ("the old environment serves nothing at 100%: no live "
                                         "baseline; only the SLO judges new")
            details["old"] = None
        return Measurement(value=new, at=now, samples=None if new is None else 1,
                           details=details)


__all__ = ["LATENCY_SOURCES", "CompareLatencyGate", "CompareLatencyProvider", "LatencySource",
           "build_latency_source", "latency_source_specs"]
