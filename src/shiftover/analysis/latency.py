"""Compare the new environment's latency with the old one's, interval by interval.

During a cutover both environments serve the same traffic at the same time, so
the old environment is a live baseline. :class:`CompareLatency` is fed, once per
interval, one latency figure for each environment (say its p95 in seconds over
the last minute, as a provider reports it) and says, at every look, whether new
is slower than old by more than a set ratio, or slower than an absolute SLO:

    >>> check = CompareLatency(alpha=0.01, effect_size=1.2, slo=0.5, min_intervals=10)
    >>> check.update(old=0.210, new=0.230).outcome
    <Verdict.INCONCLUSIVE: 'inconclusive'>

It is the latency counterpart of :class:`~shiftover.analysis.compare.CompareErrors`,
and pure in the same way: no clock, no provider, no I/O.

What the verdicts mean
----------------------
Rules in the order applied; the first that holds decides (the reason names
every FAIL that holds):

- ``FAIL`` (regression): the one-sided Mann-Whitney U test of "new's latency
  figures, divided by ``effect_size``, tend to be larger than old's" rejects at
  this look's share of ``alpha`` (see below) AND the effect estimate exceeds
  ``effect_size``: significant *beyond* the allowed ratio and large enough to
  matter. The null hypothesis is "new at most ``effect_size`` times as slow as
  old", not "new like old": Kayenta's rule (significant difference, then an
  effect threshold) bounds false FAILs only when both sides are identical, and
  a real but allowed 1.1x slow-down with ``effect_size`` 1.2 FAILed it in 22 of
  500 simulated steps; tested against the boundary, 2 of 500. It is final for the step: the sequential test stops
  at its first rejection (a new step starts a new :class:`CompareLatency`).
- ``FAIL`` (SLO): ``slo`` is set and at least two of new's last three values
  exceed it; ``new_recent`` is the second-highest of those three (their median,
  or the smaller of two), the value held to ``slo``. One spike is not a breach
  (a garbage collection, one slow batch, a percentile over too few requests);
  a breach that lasts is caught at its second interval. Thresholds are
  inclusive, as in the judge: exactly ``slo`` passes. This FAIL is a reading of
  the present, not final: it clears when two of the last three are back under,
  and the engine's failure limit decides what repeated FAILs mean.
- ``INCONCLUSIVE``: either environment has fewer than ``min_intervals`` values,
  or new has no value in this interval. No data never passes.
- ``PASS``: no latency regression beyond ``effect_size`` found (and no SLO
  breach). Like CompareErrors' PASS, "not found with this much data", not
  "proved as fast".

A ``None`` figure means "no value this interval" (no traffic, the provider's
NoData). It is never read as a value, never as zero: it adds nothing to the U
test, and a ``None`` from new makes the look INCONCLUSIVE (a PASS speaks of new
now). A ``None`` from old only leaves the baseline as the intervals so far. The
two samples are independent (an unpaired test), so each environment's values
count as they come.

The effect
----------
``effect`` is the Hodges-Lehmann estimate on the ratio scale: the median of
all pairwise ratios ``new_i / old_j``. It is the estimate that goes with the
Mann-Whitney test (the shift the rank test is centred on, here of log latency),
it uses every pair, so with ten values a side it is steadier than the ratio of
the two medians, and no single spike moves it much. Kayenta uses the ratio of
the means, which one outlying interval can drag over the threshold. A ratio,
not a difference in seconds: a slower dependency or a smaller instance scales
latency, and "1.2 times as slow" means the same for a 20 ms and a 2 s endpoint.
A ratio with a zero denominator is infinite (0/0 counts as 1).

Why, and what Kayenta does
--------------------------
Kayenta (Netflix and Google's canary judge, Spinnaker's automated canary
analysis) compares a canary's metric time series with a baseline's by a
Mann-Whitney U test plus an effect-size threshold (the ratio of means): a
metric is "High" only when the difference is both significant and large. The
test needs no distribution for latency (percentiles are skewed and heavy-tailed)
and the threshold keeps a tiny but significant slow-down, which long runs always
find, from failing a deployment. Its known weakness is the sample it needs:
Spinnaker's guidance asks for at least 50 data points per metric, "canary
analyses several hours long", and each judgement is a fixed-sample test over
one canary interval (30 minutes or more is the advice). A cutover step lasts
minutes and is watched all the time, so the same test is made sequential here.

Repeated looks: alpha spending
------------------------------
The U test is a fixed-sample test: run after every interval on the growing
sample, each look at level ``alpha`` would FAIL a healthy environment far more
often than ``alpha`` over a step. So the k-th look at which the test is run
uses ``alpha_k = alpha / (k (k + 1))`` (``alpha_spent`` in the verdict): these
sum to ``alpha`` over any number of looks, and by the union bound the
probability that a step with identically distributed latency on both sides
*ever* FAILs for regression is at most ``alpha``, however long it lasts. A look
counts only when the test is run: both sides have ``min_intervals`` values,
this update added one (re-testing the same data would spend alpha for nothing),
and the test *can* reject at this look's share: with n and m figures the exact
U test's smallest p-value is 1 / C(n + m, n) (1/20 with 3 a side, 1/252 with
5), and a look whose share is below that is skipped without spending (a rule on
sample sizes only, so the bound stands). Without it a small ``min_intervals``
spent alpha on looks that could never FAIL and delayed detection.

The union bound is conservative: successive looks share almost all their data,
so the real false-FAIL rate is far below ``alpha``. In tests/analysis/
test_latency.py (500 simulated steps of 60 log-normal intervals, a look after
every interval from the 10th), with latency exactly ``effect_size`` times as
slow on new (the boundary of the null, its worst case), it was 33 of 5,000
(0.66%) at ``alpha`` 0.01. The price is paid late in a step, where ``alpha_k`` is tiny (look 50 at
``alpha`` 0.01 needs p <= 3.9e-6): half of ``alpha`` goes to the first look.
Large regressions still show early, since p falls exponentially with the
number of intervals: new 2x as slow (log sd 0.25) FAILed in every run, 448 of
500 at the first look (interval 10), all by interval 28; 1.5x as slow, 336 of
500 within 60 intervals (median interval 31); with very noisy figures (log sd
0.6) 2x was found in 306 of 500 within 60 (median interval 31). Testing against
the boundary rather than equality is what costs that speed.

The p-value is scipy's: exact (no ties, at most 200 values in all), else the
normal approximation with tie and continuity corrections, which in the far tail
overstates p (the U distribution has lighter tails than the normal), so it errs
on the side of not failing. All values equal on both sides gives p = 1.

The effect threshold only removes FAILs, so the bound holds for FAIL, for any
new environment at most ``effect_size`` times as slow as old in distribution
(the U test of the scaled figures is valid at the boundary, and conservative
inside it).

Limits, honestly
----------------
- The figures are not independent draws. Latency in one interval is like the
  next one's (load, caches, a slow dependency drift slowly): the values are
  autocorrelated, and the test assumes exchangeable samples. With positive
  autocorrelation a stretch of bad luck on one side looks like a difference,
  so the nominal ``alpha`` is approximate; the conservative spending absorbs
  some of it, not all. Measured at ``alpha`` 0.01 with independent AR(1) noise
  on each side (log sd 0.25): with identical latency, lag-1 correlation 0.5
  gave 1 false FAIL in 500 steps and 0.8 gave 30 (6%); at the boundary (new
  exactly ``effect_size`` times as slow) 0.5 gave 42 of 500 (8.4%). Drift both sides share (the same load) cancels in the
  comparison; drift of one side alone (a cache warming, a noisy neighbour)
  does not. Longer intervals make neighbouring figures less alike.
- Percentiles of percentiles: the inputs are already summaries (a p95 per
  interval), and the test compares the distributions of those summaries, not
  of requests. A p95 over few requests is noisy; an interval with a handful of
  requests on new at a 1% step weighs as much as one with thousands on old.
  Histogram-based percentiles (Prometheus' ``histogram_quantile``) are
  interpolated within buckets and clamp at the last finite bound, which makes
  ties and hides how far past it latency went.
- A comparison cannot see what both environments share. If the common database
  is slow, both are slow alike and the test passes: that is what ``slo`` is
  for, the absolute guard that does not depend on the baseline.
- A regression under ``effect_size``, or in a percentile you do not feed it, is
  not looked for.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from shiftover.types import Verdict

__all__ = ["CompareLatency", "LatencyVerdict"]

#: Above this many values (both sides together) or with ties, the p-value is the
#: normal approximation (scipy's exact distribution costs ~13 ms at 500 values).
EXACT_MAX_VALUES = 200

#: Values looked at for the SLO: a breach is two of new's last three.
_SLO_WINDOW = 3


def alpha_for_look(alpha: float, look: int) -> float:
    """The share of ``alpha`` the ``look``-th test may spend: alpha / (k (k + 1))."""
    return alpha / (look * (look + 1))


def can_reject(new: int, old: int, alpha_k: float) -> bool:
    """Whether the exact U test with these many figures could reject at ``alpha_k``
    at all: its smallest p-value is 1 / C(new + old, new)."""
    return 1.0 / math.comb(new + old, new) <= alpha_k


def figures_to_pass(alpha: float, min_intervals: int) -> int:
    """Figures each side needs before the first look can run, and so before a PASS:
    ``min_intervals``, or more when with so few the test could not reject at the
    first look's share of ``alpha``."""
    n = min_intervals
    while not can_reject(n, n, alpha_for_look(alpha, 1)):
        n += 1
    return n


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


@dataclass(frozen=True)
class LatencyVerdict:
    """One look at the comparison, with the evidence that decided it.

    ``intervals_old`` / ``intervals_new``: the values each side has given so far
    (``None`` intervals not counted). ``old_median`` / ``new_median``: their
    medians. ``effect``: the Hodges-Lehmann ratio new/old (median of pairwise
    ratios; None until both sides have a value, ``inf`` when old's values are
    zero). ``look``: the number of U tests run so far; ``u_statistic`` (new's U:
    the pairs where new is larger, ties counting half), ``p_value`` (one-sided,
    "new is slower") and ``alpha_spent`` (that look's ``alpha_k``) are those of
    the last test run, None before the first. ``new_recent``: the value held to
    ``slo`` (second-highest of new's last three; None below two values).
    ``slo_breached`` and ``regression`` say which FAIL rule holds.
    """

    outcome: Verdict
    reason: str
    intervals_old: int
    intervals_new: int
    old_median: float | None
    new_median: float | None
    effect: float | None
    look: int
    u_statistic: float | None
    p_value: float | None
    alpha_spent: float | None
    new_recent: float | None
    slo_breached: bool
    regression: bool
    alpha: float
    effect_size: float
    slo: float | None
    min_intervals: int

    def as_dict(self) -> dict[str, object]:
        """The evidence as JSON-ready values (``outcome`` as its string; an
        infinite effect as None)."""
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "intervals_old": self.intervals_old,
            "intervals_new": self.intervals_new,
            "old_median": _finite_or_none(self.old_median),
            "new_median": _finite_or_none(self.new_median),
            "effect": _finite_or_none(self.effect),
            "look": self.look,
            "u_statistic": _finite_or_none(self.u_statistic),
            "p_value": _finite_or_none(self.p_value),
            "alpha_spent": self.alpha_spent,
            "new_recent": _finite_or_none(self.new_recent),
            "slo_breached": self.slo_breached,
            "regression": self.regression,
            "alpha": self.alpha,
            "effect_size": self.effect_size,
            "slo": self.slo,
            "min_intervals": self.min_intervals,
        }


def hodges_lehmann_ratio(new: list[float], old: list[float]) -> float:
    """Median of the pairwise ratios new_i / old_j (x/0 = inf, 0/0 = 1)."""
    import numpy as np  # here: loading numpy and scipy costs every command a second

    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.divide.outer(np.asarray(new, dtype=float), np.asarray(old, dtype=float))
    ratios[np.isnan(ratios)] = 1.0
    return float(np.median(ratios))


def u_test(new: list[float], old: list[float]) -> tuple[float, float]:
    """New's U and the one-sided p-value of "new tends to be larger" (scipy's).

    Exact when there are no ties and at most :data:`EXACT_MAX_VALUES` values;
    otherwise the tie-corrected normal approximation with continuity correction.
    """
    ties = len(set(new) | set(old)) < len(new) + len(old)
    method = "exact" if not ties and len(new) + len(old) <= EXACT_MAX_VALUES else "asymptotic"
    from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

    result = mannwhitneyu(new, old, alternative="greater", method=method)
    p_value = float(result.pvalue)
    # all values equal on both sides: nothing tells them apart
    return float(result.statistic), (1.0 if math.isnan(p_value) else p_value)


def _check_latency(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a latency in seconds or None (no value this "
                         f"interval), not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite latency >= 0, not {value!r} "
                         "(no value this interval is None)")
    return float(value)


class CompareLatency:
    """Sequential comparison of new's latency with old's (see the module doc).

    ``alpha``: the bound on the probability of a false regression FAIL over the
    whole step (identical latency on both sides), however many intervals it has.
    ``effect_size``: the ratio new/old that a regression must exceed (1.2 = 20%
    slower). ``slo``: an absolute limit on new's figure (same unit as the
    figures), or None. ``min_intervals``: values each side needs before the
    test runs and before anything but FAIL or INCONCLUSIVE can be said.
    """

    def __init__(self, *, alpha: float = 0.01, effect_size: float = 1.2,
                 slo: float | None = None, min_intervals: int = 10) -> None:
        if isinstance(alpha, bool) or not (isinstance(alpha, (int, float))
                                           and 0.0 < alpha < 1.0):
            raise ValueError(f"alpha must be between 0 and 1 (exclusive), not {alpha!r}")
        if isinstance(effect_size, bool) or not (
                isinstance(effect_size, (int, float)) and math.isfinite(effect_size)
                and effect_size >= 1.0):
            raise ValueError(f"effect_size must be a finite ratio >= 1 (1.2 = new may be up "
                             f"to 1.2 times as slow as old), not {effect_size!r}")
        if slo is not None and (isinstance(slo, bool) or not (
                isinstance(slo, (int, float)) and math.isfinite(slo) and slo > 0)):
            raise ValueError(f"slo must be a finite latency > 0 or None, not {slo!r}")
        if isinstance(min_intervals, bool) or not isinstance(min_intervals, int) \
                or min_intervals < 2:
            raise ValueError(f"min_intervals must be an integer >= 2, not {min_intervals!r}")
        self.alpha = float(alpha)
        self.effect_size = float(effect_size)
        self.slo = None if slo is None else float(slo)
        self.min_intervals = min_intervals
        self._old: list[float] = []
        self._new: list[float] = []
        self._look = 0
        self._u: float | None = None
        self._p: float | None = None
        self._alpha_spent: float | None = None
        # the reason's figures at the look that found the regression (final for the step)
        self._regression: str | None = None
        self._last: LatencyVerdict | None = None

    @property
    def verdict(self) -> LatencyVerdict | None:
        """The verdict of the last :meth:`update` (None before the first)."""
        return self._last

    def update(self, old: float | None, new: float | None) -> LatencyVerdict:
        """Feed one interval's latency figure of each side (None = no value); judge.

        A negative, infinite or NaN figure, or one that is not a number, is a
        :class:`ValueError`, and the state is left as it was.
        """
        old_value = _check_latency("old", old)
        new_value = _check_latency("new", new)
        if old_value is not None:
            self._old.append(old_value)
        if new_value is not None:
            self._new.append(new_value)
        added = old_value is not None or new_value is not None
        enough = min(len(self._old), len(self._new)) >= self.min_intervals
        effect = hodges_lehmann_ratio(self._new, self._old) if self._old and self._new else None
        if self._regression is None and added and enough:
            self._test(effect)
        self._last = self._judge(effect, new_value is None)
        return self._last

    def _test(self, effect: float | None) -> None:
        # a look that cannot reject whatever the figures (the smallest p-value of the
        # U test with these sample sizes, 1 / C(n + m, n), is above its share of alpha)
        # spends nothing: deciding so from the sizes alone costs no validity, and
        # small min_intervals no longer waste alpha on looks that could never FAIL
        if not can_reject(len(self._new), len(self._old), alpha_for_look(self.alpha,
                                                                          self._look + 1)):
            return
        self._look += 1
        self._alpha_spent = alpha_for_look(self.alpha, self._look)
        # the null is "new at most effect_size times old", not "new like old": the
        # test is of new's figures scaled down by effect_size against old's
        self._u, self._p = u_test([x / self.effect_size for x in self._new], self._old)
        if self._p <= self._alpha_spent and effect is not None and effect > self.effect_size:
            self._regression = (
                f"new is slower than old: effect {effect:.3g}x > {self.effect_size:g}x and "
                f"U = {self._u:g}, p = {self._p:.3g} <= alpha_{self._look} "
                f"{self._alpha_spent:.3g} (look {self._look}, {len(self._new)} intervals on new, "
                f"{len(self._old)} on old; final for the step)")

    def _new_recent(self) -> float | None:
        recent = self._new[-_SLO_WINDOW:]
        if len(recent) < 2:
            return None
        return sorted(recent)[-2]

    def _judge(self, effect: float | None, new_missing: bool) -> LatencyVerdict:
        n_old, n_new = len(self._old), len(self._new)
        old_median = float(statistics.median(self._old)) if self._old else None
        new_median = float(statistics.median(self._new)) if self._new else None
        new_recent = self._new_recent()
        slo_breached = (self.slo is not None and new_recent is not None
                        and new_recent > self.slo)
        medians = f"median {_fmt(new_median)} on new vs {_fmt(old_median)} on old"
        failures = []
        if self._regression is not None:
            failures.append(self._regression)
        if slo_breached:
            failures.append(f"SLO breached: two of new's last three values exceed {self.slo:g} "
                            f"(second-highest {new_recent:.3g})")
        if failures:
            outcome = Verdict.FAIL
            reason = "; ".join(failures)
        elif min(n_old, n_new) < self.min_intervals:
            outcome = Verdict.INCONCLUSIVE
            reason = (f"{n_new} intervals with a value on new and {n_old} on old, fewer than "
                      f"min_intervals {self.min_intervals}")
        elif new_missing:
            outcome = Verdict.INCONCLUSIVE
            reason = "no value from new in this interval: no data never passes"
        elif self._look == 0:
            outcome = Verdict.INCONCLUSIVE
            reason = (f"{n_new} intervals on new and {n_old} on old: the U test cannot reject "
                      f"at alpha {self.alpha:g} with so few yet (no evidence either way)")
        else:
            outcome = Verdict.PASS
            reason = (f"no latency regression beyond {self.effect_size:g}x after {n_new} "
                      f"intervals on new: effect {_fmt(effect)}x, p = {_fmt(self._p)} "
                      f"(alpha_{self._look} {_fmt(self._alpha_spent)}); {medians}")
        return LatencyVerdict(
            outcome=outcome, reason=reason,
            intervals_old=n_old, intervals_new=n_new,
            old_median=old_median, new_median=new_median, effect=effect,
            look=self._look, u_statistic=self._u, p_value=self._p,
            alpha_spent=self._alpha_spent, new_recent=new_recent,
            slo_breached=slo_breached, regression=self._regression is not None,
            alpha=self.alpha, effect_size=self.effect_size, slo=self.slo,
            min_intervals=self.min_intervals,
        )
