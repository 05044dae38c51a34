"""``compare`` gates: the new environment judged against the old one, live.

During a cutover both environments serve the same traffic at the same time, so
the old one is a baseline measured under the very same load, hour of day and
clients. A ``compare`` gate counts each environment's requests and errors over
the current step and hands them to :class:`shiftover.analysis.compare.CompareErrors`,
an anytime-valid sequential test (see its docstring for why checking every
interval does not inflate false FAILs).

This module only *measures*: where the counts come from is a ``source`` (one
per backend, each owning its plan model in its own module: HAProxy's per-server
counters, Prometheus counters, CloudWatch and Datadog sums), and the judging is
:mod:`shiftover.analysis.judge`'s. What it adds is the step:

- The test restarts whenever the router's split changes (a new step, a
  rollback, an operator's hand). The new step's counts start at the check
  before it, so the interval in which the split changed is its first (a fault
  that starts with the step is in it); the first check of a process has no check
  before it and marks the start (``counts(since=now, now=now)``: zero). A
  restarted ``shiftover run`` starts the step's test over: evidence is never
  carried across processes or splits.
- At 0% the new environment gets nothing to compare: no data. At 100% the old
  one gets nothing, so there is no live baseline: the gate says so and passes
  *as not applicable*, which is why a plan with a ``compare`` gate must also
  have a gate that judges the new environment on its own (the plan refuses it
  otherwise): at 100% that gate decides, and it also catches what a comparison
  cannot see, a fault both environments share (a common database).
- An unknown split (the router unreadable: with HAProxy, a new server DOWN by
  its health check) does not stop the step's test: it keeps counting at the last
  known split, so breakage the counts show (HAProxy counts a DOWN new server's
  share as failed requests) still FAILs. With no step in progress it is no data.
- Where there is nothing to judge (0%, 100%, no step yet) the source is still
  asked once, so one that cannot work at all (a misspelt server, a Prometheus
  that is not there) is an error before any traffic moves.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from shiftover._registry import build, by_type, specs_of
from shiftover.errors import NoData, ProviderError
from shiftover.providers.base import CountSource
from shiftover.spec import FiniteFloat, GateSpecBase, SpecModel, Timeout
from shiftover.types import Measurement, Weights

# source type -> "module:Class"; the class has ``Spec`` (its plan model, a
# ``type: Literal[...]``) and ``from_spec(spec) -> CountSource``
COUNT_SOURCES: dict[str, str] = {
    "haproxy_stats": "shiftover.providers.haproxy_stats:HAProxyCounts",
    "cloudwatch": "shiftover.providers.cloudwatch:CloudWatchCounts",
    "datadog": "shiftover.providers.datadog:DatadogCounts",
    "prometheus": "shiftover.providers.prometheus:PrometheusCounts",
}


@functools.cache
def count_source_specs() -> dict[str, Any]:
    return specs_of(COUNT_SOURCES, "compare source")


if TYPE_CHECKING:
    CountSourceSpec = SpecModel
else:
    CountSourceSpec = by_type(count_source_specs().values())


def build_count_source(spec: Any) -> CountSource:
    source: CountSource = build(COUNT_SOURCES, "compare source", spec)
    return source


class CompareGate(GateSpecBase):
    """New's error rate against old's, over the current step, by an anytime-valid
    sequential test: FAIL once the always-valid p-value of "new fails at most
    ``1 + tolerance`` times as often as old" is at most ``alpha``; INCONCLUSIVE
    below ``min_requests`` requests on new; PASS otherwise."""

    JUDGE: ClassVar[str] = "compare"
    type: Literal["compare"]
    metric: Literal["errors"] = "errors"
    source: CountSourceSpec = Field(description="where each environment's requests and errors "
                                    "are counted (type: " + ", ".join(COUNT_SOURCES) + ")")
    alpha: float = Field(default=0.01, gt=0, le=0.2, description=(
        "the probability of a false FAIL over a whole step, however often it is checked"))
    tolerance: FiniteFloat = Field(default=0.0, ge=0, description=(
        "a ratio: 0.2 lets new fail up to 1.2 times as often as old before that is a regression"))
    min_requests: int = Field(default=200, ge=1, description=(
        "requests on new in this step before the gate can pass (below: INCONCLUSIVE)"))
    timeout: Timeout = 5.0


class StepTracking:
    """What both kinds of compare gates share: the step their test belongs to.

    ``_step(now, split)`` returns the split to judge and notes for the details, or
    raises ``NoData``: at 0%, and with an unknown split when no step is in progress
    (the source is asked once all the same: ``_probe``). A split that changed starts
    a new step, counted from the check before (the last one whose source answered)
    or, without one, from ``now``; an unknown split in the middle of a step keeps it."""

    def __init__(self) -> None:
        self._split: Weights | None = None
        self._since: float | None = None
        self._last_now: float | None = None  # of the last call whose source answered
        self._counted = False  # the current step has one span counted

    def _probe(self, now: float) -> None:
        raise NotImplementedError  # pragma: no cover

    def _end_step(self, now: float) -> None:
        """Nothing to judge here: forget the step, and ask the source once, so that one
        that cannot work at all is an error before any traffic moves (``validate``
        runs at 0%), not only once it is needed."""
        self._split = self._since = None
        self._last_now = None
        self._probe(now)
        self._answered(now)

    def _step(self, now: float, split: Weights | None) -> tuple[Weights, dict[str, Any]]:
        if split is None:
            if self._split is None or self._since is None:
                self._end_step(now)
                raise NoData("the router's split is unknown: the comparison waits for it",
                             hint="see the router's error in the run's output")
            # keep the step in progress: a router that cannot be read (HAProxy with the
            # new server DOWN by its health check) is no reason to stop looking, and the
            # evidence gathered so far is not thrown away
            return self._split, {"split_unknown": True}
        if split.new_percent == 0:
            self._end_step(now)
            raise NoData("the new environment is at 0%: nothing to compare yet")
        if split != self._split or self._since is None or now < self._since:
            # a new step's test counts from the check before it (when there was one and
            # time went forward): the interval in which the split changed is the step's
            # first, and a fault that starts with the step is not left out of it
            last = self._last_now
            self._split, self._counted = split, False
            self._since = last if last is not None and last < now else now
        return split, {}

    def _answered(self, now: float) -> None:
        self._last_now, self._counted = now, True

    def _failed(self, now: float, *, answered: bool) -> None:
        """The source raised: NoData means it answered (and a source without history
        took its reading: the next span can start here); an error, that it did not.
        A step whose first span was never counted starts again at the next call."""
        if answered:
            self._last_now = now
        if not self._counted:
            self._since = None


class CompareProvider(StepTracking):
    """Counts of both environments since the current step started (see the module doc)."""

    Spec: ClassVar[type[CompareGate]] = CompareGate
    SPLIT_AWARE: ClassVar[bool] = True  # the engine passes the router's split

    def __init__(self, source: CountSource) -> None:
        super().__init__()
        self.source = source

    @classmethod
    def from_spec(cls, spec: CompareGate) -> CompareProvider:
        return cls(build_count_source(spec.source))

    def describe(self) -> str:
        return f"compare {self.source.describe()}"

    def _probe(self, now: float) -> None:
        try:
            self.source.counts(since=now, now=now)
        except NoData:
            pass
        except ValueError as exc:
            raise ProviderError(f"{self.source.describe()}: {exc}") from None

    def measure(self, *, now: float, split: Weights | None = None) -> Measurement:
        if split is not None and split.new_percent == 100:
            self._end_step(now)
            return Measurement(value=None, at=now, samples=0, details={
                "step": split.exact,
                "not_applicable": "the old environment serves nothing at 100%: no live baseline "
                                  "to compare with; the plan's other gates judge this step"})
        split, notes = self._step(now, split)
        since = self._since
        assert since is not None
        try:
            counts = self.source.counts(since=since, now=now)
        except (NoData, ProviderError, ValueError) as exc:
            self._failed(now, answered=isinstance(exc, NoData))
            if isinstance(exc, ValueError):  # counts that break EnvCounts' rules
                raise ProviderError(f"{self.source.describe()}: {exc}") from None
            raise
        self._answered(now)
        return Measurement(value=None, at=now, samples=counts.new_requests, details={
            "step": split.exact, "since": since, "counts": counts.as_dict(), **notes})


__all__ = ["COUNT_SOURCES", "CompareGate", "CompareProvider", "StepTracking",
           "build_count_source", "count_source_specs"]
