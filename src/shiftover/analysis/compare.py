"""Compare the new environment's error rate with the old one's, as traffic arrives.

During a cutover both environments serve the same traffic at the same time, so
the old environment is a live baseline. :class:`CompareErrors` is fed the
*cumulative* request and error counts of both since the step started and says,
at every look, whether the new environment is worse:

    >>> check = CompareErrors(alpha=0.01, tolerance=0.2, min_requests=200)
    >>> check.update(old_requests=9_900, old_errors=10, new_requests=100, new_errors=0).outcome
    <Verdict.INCONCLUSIVE: 'inconclusive'>

It is pure: no clock, no provider, no I/O. Looking after every request, every
batch or every minute is all the same to its guarantee.

What the verdicts mean
----------------------
- ``FAIL``: the always-valid p-value of "new's error rate is at most
  ``1 + tolerance`` times old's" is at most ``alpha``. If new is in fact no
  worse than that, the probability that this *ever* happens during the step,
  however often it is checked, is at most ``alpha``. FAIL is final for the step:
  the p-value only goes down (a new step starts a new :class:`CompareErrors`).
  FAIL does not wait for ``min_requests``: its guarantee holds at any sample
  size, and a new environment failing every other request is not kept on.
- ``INCONCLUSIVE``: fewer than ``min_requests`` requests on new *that entered
  the test* (requests count only once old has had requests in the same
  interval), no request at all on old (nothing to compare against), or
  ``min_requests`` or more requests on new since old last had one (old stopped
  being counted: its health check failed, its exporter died, its points lag;
  new's recent traffic proves nothing then). No data never passes.
- ``PASS``: at least ``min_requests`` requests on new and no FAIL. It means "no
  regression found with this much traffic", not "proved as good": the
  confidence sequence in the evidence (``ratio_upper``) says how large a
  regression the data still allows, and a gate that wants more can hold out
  for ``ratio_upper <= its limit``.

The tolerance is a *ratio*: ``tolerance=0.2`` lets new fail up to 1.2 times as
often as old before that counts as a regression. An additive tolerance ("up to
0.1 points worse") is not offered: old's rate is unknown, so "0.1 points" is a
ratio that depends on the very nuisance the test removes, and an estimate
plugged in would cost the guarantee. At a known baseline rate ``p`` a points
tolerance ``d`` is the ratio tolerance ``d / p``.

Why it is valid
---------------
The counts are cut into intervals. An interval closes at an update when both
environments have had at least one request since the last close (a rule on
requests only, never on errors). Given the request counts ``n_new``, ``n_old``
of an interval and its total errors ``T``, and modelling each environment's
errors as Poisson with rate ``p * n`` (the model of Lindon, Sanden and
Shirikian, "Rapid Regression Detection in Software Deployments through
Sequential Testing", KDD 2022), new's errors are Binomial(T, q) with

    q(rho) = rho * n_new / (rho * n_new + n_old),   rho = p_new / p_old,

whatever old's own rate is: conditioning on ``T`` removes the unknown baseline.
Against the boundary ``rho0 = 1 + tolerance``, the likelihood ratio of an
interval for an alternative ``rho > rho0`` is
``(q/q0)^x ((1-q)/(1-q0))^(T-x)``. Its conditional expectation under a true
``rho* <= rho0`` is ``(q* q/q0 + (1-q*)(1-q)/(1-q0))^T``, increasing in ``q*``
because ``q/q0 > 1 > (1-q)/(1-q0)``, and equal to 1 at ``q* = q0``: so it is
at most 1 (monotone likelihood ratio). The product over intervals is a
nonnegative supermartingale under the null for every ``rho > rho0``, and so is
any mixture of them; Ville's inequality gives P(sup_t E_t >= 1/alpha) <= alpha.
The e-value ``E_t`` here is the mixture, with equal weights, over a geometric
grid of ``rho`` from just above ``rho0`` to 4096 (eight points per doubling); the
always-valid p-value is ``min(1, 1 / max_{s<=t} E_s)``.

With requests that fail independently (Bernoulli, not Poisson), ``x`` given
``T`` is hypergeometric (Fisher's noncentral one when rates differ). At equal
rates (the null with ``tolerance=0``) the bound still holds exactly: the ratio
is a convex function of ``x``, and a hypergeometric is dominated in convex
order by the binomial with the same mean (Hoeffding 1963, Theorem 4); a new
environment better than old only lowers it. With ``tolerance > 0`` the Poisson
model is an approximation whose error is of the order of the error rates
themselves; tests/analysis/test_compare.py checks the false-FAIL rate by
simulation. The request counts must not depend on the errors (clients that
retry failed requests add requests that do; the model then holds only
approximately).

The confidence sequence on ``rho`` inverts the same construction two-sided:
for each grid value ``r`` the mixture over the whole grid of likelihood ratios
against ``r`` is a martingale when ``rho* = r``, so ``{r : E_t(r) < 1/alpha}``
covers the true ratio at all times with probability ``1 - alpha``. The
log-likelihood is concave in ``log rho`` (it is a logistic regression's), so the
set is an interval; its bounds are rounded outward to the neighbouring grid
values, and a bound past the grid's end is ``None`` (unbounded).

Everything is kept as the log-likelihood of each grid value, updated only by
intervals that had errors: one update costs a few hundred logarithms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shiftover.types import Verdict

__all__ = ["CompareErrors", "ErrorsVerdict", "Outcome"]

#: Grid of rate ratios new/old: 2**(k/8) for k in -96..96 (1/4096 .. 4096).
_STEPS_PER_DOUBLING = 8
_GRID_HALF = 12 * _STEPS_PER_DOUBLING
GRID: tuple[float, ...] = tuple(
    2.0 ** (k / _STEPS_PER_DOUBLING) for k in range(-_GRID_HALF, _GRID_HALF + 1)
)


# the judge's three verdicts (this module stays pure: types.py holds plain values)
Outcome = Verdict


@dataclass(frozen=True)
class ErrorsVerdict:
    """One look at the comparison, with the evidence that decided it.

    ``e_value`` is the current evidence against "new no worse than
    ``1 + tolerance`` times old" (1 = none); ``p_value`` the always-valid
    p-value, ``min(1, 1 / max e_value so far)``. ``ratio`` is the estimated
    rate ratio new/old (None while old has no error); ``ratio_lower`` and
    ``ratio_upper`` the confidence sequence's bounds on it at level
    ``1 - alpha`` (None = unbounded on that side).
    """

    outcome: Outcome
    reason: str
    old_requests: int
    old_errors: int
    new_requests: int
    new_errors: int
    old_rate: float | None
    new_rate: float | None
    ratio: float | None
    ratio_lower: float | None
    ratio_upper: float | None
    e_value: float
    p_value: float
    alpha: float
    tolerance: float
    min_requests: int

    def as_dict(self) -> dict[str, object]:
        """The evidence as JSON-ready values (``outcome`` as its string)."""
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "old_requests": self.old_requests,
            "old_errors": self.old_errors,
            "new_requests": self.new_requests,
            "new_errors": self.new_errors,
            "old_rate": self.old_rate,
            "new_rate": self.new_rate,
            "ratio": self.ratio,
            "ratio_lower": self.ratio_lower,
            "ratio_upper": self.ratio_upper,
            "e_value": self.e_value,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "tolerance": self.tolerance,
            "min_requests": self.min_requests,
        }


def interval_log_likelihood(rho: float, *, new_requests: int, old_requests: int,
                            new_errors: int, total_errors: int) -> float:
    """log of (q^x (1-q)^(T-x)), q = rho*n_new/(rho*n_new + n_old): one interval.

    The binomial coefficient is left out: it cancels in every likelihood ratio.
    """
    if total_errors == 0:
        return 0.0
    weighted_new = rho * new_requests
    log_total = math.log(weighted_new + old_requests)
    result = 0.0
    if new_errors:
        result += new_errors * (math.log(weighted_new) - log_total)
    old_errors = total_errors - new_errors
    if old_errors:
        result += old_errors * (math.log(old_requests) - log_total)
    return result


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def _fmt(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else f"{value:.3g}"


class CompareErrors:
    """Anytime-valid comparison of new's error rate with old's (see the module doc).

    ``alpha``: the bound on the probability of a false FAIL over the whole
    step, however often :meth:`update` is called. ``tolerance``: new may fail
    up to ``1 + tolerance`` times as often as old. ``min_requests``: requests
    on new before anything but FAIL or INCONCLUSIVE can be said.
    """

    def __init__(self, *, alpha: float = 0.01, tolerance: float = 0.0,
                 min_requests: int = 200) -> None:
        if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
            raise ValueError(f"alpha must be between 0 and 1 (exclusive), not {alpha!r}")
        if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance)
                and tolerance >= 0.0):
            raise ValueError(f"tolerance must be a finite ratio >= 0 (0.2 = new may fail "
                             f"1.2 times as often as old), not {tolerance!r}")
        if isinstance(min_requests, bool) or not isinstance(min_requests, int) \
                or min_requests < 1:
            raise ValueError(f"min_requests must be an integer >= 1, not {min_requests!r}")
        self.alpha = float(alpha)
        self.tolerance = float(tolerance)
        self.min_requests = min_requests
        self.boundary = 1.0 + self.tolerance
        # alternatives of the one-sided test: the grid values above the boundary
        self._above = [k for k, r in enumerate(GRID) if r > self.boundary]
        self._log_lik = [0.0] * len(GRID)
        self._log_lik_boundary = 0.0
        self._max_log_e = 0.0
        # cumulative counts at the last update, and at the last closed interval
        self._seen = (0, 0, 0, 0)
        self._closed = (0, 0, 0, 0)
        self._last: ErrorsVerdict | None = None

    @property
    def verdict(self) -> ErrorsVerdict | None:
        """The verdict of the last :meth:`update` (None before the first)."""
        return self._last

    def update(self, old_requests: int, old_errors: int,
               new_requests: int, new_errors: int) -> ErrorsVerdict:
        """Feed the cumulative counts since the step started; return the verdict.

        Counts never decrease and errors never exceed requests: anything else
        (a counter reset, environments swapped) is a :class:`ValueError`, and
        the state is left as it was.
        """
        counts = (old_requests, old_errors, new_requests, new_errors)
        names = ("old_requests", "old_errors", "new_requests", "new_errors")
        for name, value in zip(names, counts, strict=True):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer count, not {value!r}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")
        for env, requests, errors in (("old", old_requests, old_errors),
                                      ("new", new_requests, new_errors)):
            if errors > requests:
                raise ValueError(f"{env}_errors ({errors}) exceeds {env}_requests ({requests})")
        for name, before, now in zip(names, self._seen, counts, strict=True):
            if now < before:
                raise ValueError(
                    f"{name} went down from {before} to {now}: counts are cumulative since "
                    "the step started (a counter reset must be absorbed by the provider, "
                    "a new step needs a new CompareErrors)")
        self._seen = counts
        self._close_interval()
        self._last = self._judge()
        return self._last

    def _close_interval(self) -> None:
        old_n, old_x, new_n, new_x = (a - b for a, b in zip(self._seen, self._closed, strict=True))
        if old_n == 0 or new_n == 0:
            return  # keep pending until both environments have had requests
        self._closed = self._seen
        total = old_x + new_x
        if total == 0:
            return
        for k, rho in enumerate(GRID):
            self._log_lik[k] += interval_log_likelihood(
                rho, new_requests=new_n, old_requests=old_n,
                new_errors=new_x, total_errors=total)
        self._log_lik_boundary += interval_log_likelihood(
            self.boundary, new_requests=new_n, old_requests=old_n,
            new_errors=new_x, total_errors=total)
        self._max_log_e = max(self._max_log_e, self._log_e_value())

    def _log_e_value(self) -> float:
        above = [self._log_lik[k] for k in self._above]
        return _logsumexp(above) - math.log(len(above)) - self._log_lik_boundary

    def _confidence_sequence(self) -> tuple[float | None, float | None]:
        mixture = _logsumexp(self._log_lik) - math.log(len(GRID))
        threshold = math.log(1.0 / self.alpha)
        inside = [k for k, ll in enumerate(self._log_lik) if mixture - ll < threshold]
        best = max(range(len(GRID)), key=lambda k: self._log_lik[k])
        low = min([*inside, best]) - 1
        high = max([*inside, best]) + 1
        return (GRID[low] if low >= 0 else None,
                GRID[high] if high < len(GRID) else None)

    def _judge(self) -> ErrorsVerdict:
        old_n, old_x, new_n, new_x = self._seen
        # requests on new inside closed intervals (compared with old) and after them
        judged_new = self._closed[2]
        pending_new = new_n - judged_new
        old_rate = old_x / old_n if old_n else None
        new_rate = new_x / new_n if new_n else None
        ratio = new_rate / old_rate if (new_rate is not None and old_rate) else None
        lower, upper = self._confidence_sequence()
        e_value = math.exp(min(self._log_e_value(), 700.0))
        p_value = min(1.0, math.exp(-self._max_log_e))
        # an unbounded side reads as what it means: a ratio down to 0, or up without limit
        bounds = f"rate ratio new/old in [{_fmt(lower, '0')}, {_fmt(upper, 'inf')}]"
        if p_value <= self.alpha:
            outcome = Verdict.FAIL
            worse = ("new fails more often than old" if self.tolerance == 0 else
                     f"new fails more than {self.boundary:g}x as often as old")
            reason = (f"{worse}: "
                      f"always-valid p = {p_value:.3g} <= alpha {self.alpha:g} "
                      f"(new {new_x}/{new_n}, old {old_x}/{old_n}; {bounds})")
        elif new_n < self.min_requests:
            outcome = Verdict.INCONCLUSIVE
            reason = f"{new_n} requests on new, fewer than min_requests {self.min_requests}"
        elif old_n == 0:
            outcome = Verdict.INCONCLUSIVE
            reason = "no request on old: nothing to compare against"
        elif pending_new >= self.min_requests:
            # old stopped being counted (its health check failed, its exporter died, its
            # points lag): new's recent traffic is not in the test, so it proves nothing
            outcome = Verdict.INCONCLUSIVE
            reason = (f"{pending_new} requests on new since old last had one: not compared "
                      "with anything yet (is old still counted?)")
        elif judged_new < self.min_requests:
            outcome = Verdict.INCONCLUSIVE
            reason = (f"{judged_new} of new's {new_n} requests compared with old's, fewer "
                      f"than min_requests {self.min_requests}")
        else:
            outcome = Verdict.PASS
            beyond = "" if self.tolerance == 0 else f" beyond {self.boundary:g}x"
            reason = (f"no regression{beyond} after {new_n} requests on new: "
                      f"p = {p_value:.3g} > alpha {self.alpha:g} "
                      f"(new {new_x}/{new_n}, old {old_x}/{old_n}; {bounds})")
        return ErrorsVerdict(
            outcome=outcome, reason=reason,
            old_requests=old_n, old_errors=old_x, new_requests=new_n, new_errors=new_x,
            old_rate=old_rate, new_rate=new_rate, ratio=ratio,
            ratio_lower=lower, ratio_upper=upper,
            e_value=e_value, p_value=p_value,
            alpha=self.alpha, tolerance=self.tolerance, min_requests=self.min_requests,
        )
