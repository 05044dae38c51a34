"""CompareErrors: known values, input rules, verdict rules and, by simulation, the
anytime-valid guarantee (a healthy new environment checked after every request
FAILs at most alpha of the time) and detection of a 5x regression.

The big simulations run a numpy replica of the class's arithmetic over many runs
at once; ``test_replica_matches_class`` holds the replica to the class.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from shiftover.analysis.compare import (
    GRID,
    CompareErrors,
    ErrorsVerdict,
    Outcome,
    interval_log_likelihood,
)

# --- known values -------------------------------------------------------------


def test_grid_is_geometric_and_symmetric() -> None:
    assert len(GRID) == 193
    assert GRID[96] == 1.0
    assert GRID[0] == pytest.approx(1 / 4096) and GRID[-1] == pytest.approx(4096)
    assert GRID[97] / GRID[96] == pytest.approx(2 ** (1 / 8))


def test_e_value_of_one_new_error_by_hand() -> None:
    # One interval: old 9 requests and no error, new 1 request that failed. Given
    # one error in all, it is new's with q(rho) = rho / (rho + 9); under equal rates
    # q0 = 1/10. The e-value is the mean over the grid values above 1 of q/q0.
    check = CompareErrors(alpha=0.01, tolerance=0.0, min_requests=1)
    verdict = check.update(9, 0, 1, 1)
    rhos = [2 ** (k / 8) for k in range(1, 97)]
    expected = sum(10 * r / (r + 9) for r in rhos) / len(rhos)
    assert verdict.e_value == pytest.approx(expected, rel=1e-12)
    assert verdict.p_value == pytest.approx(1 / expected, rel=1e-12)
    assert expected < 10  # one error out of ten requests is not enough at alpha 0.01
    assert verdict.outcome is Outcome.PASS


def test_e_value_with_a_tolerance_by_hand() -> None:
    # Two intervals, boundary rho0 = 1.5. Interval 1: old 20 (1 error), new 5 (2 errors);
    # interval 2: old 30 (0), new 10 (1). The e-value is the grid mean, over rho > 1.5,
    # of the product of the binomial likelihood ratios q^x (1-q)^(T-x) / (same at 1.5).
    check = CompareErrors(alpha=0.05, tolerance=0.5, min_requests=1)
    check.update(20, 1, 5, 2)
    verdict = check.update(50, 1, 15, 3)

    def lik(rho: float) -> float:
        q1 = rho * 5 / (rho * 5 + 20)
        q2 = rho * 10 / (rho * 10 + 30)
        return q1**2 * (1 - q1) * q2

    rhos = [2 ** (k / 8) for k in range(-96, 97) if 2 ** (k / 8) > 1.5]
    expected = sum(lik(r) for r in rhos) / len(rhos) / lik(1.5)
    assert verdict.e_value == pytest.approx(expected, rel=1e-12)


def test_interval_likelihood_is_scipys_binomial() -> None:
    stats = pytest.importorskip("scipy.stats")
    for rho, n_new, n_old, x, total in [(1.0, 10, 90, 1, 3), (3.7, 1, 99, 1, 1),
                                        (0.25, 40, 60, 0, 5), (12.0, 7, 3, 6, 6)]:
        q = rho * n_new / (rho * n_new + n_old)
        ours = interval_log_likelihood(rho, new_requests=n_new, old_requests=n_old,
                                       new_errors=x, total_errors=total)
        assert ours + math.log(math.comb(total, x)) == pytest.approx(
            float(stats.binom.logpmf(x, total, q)), rel=1e-12, abs=1e-12)


def test_likelihood_ratio_has_expectation_one_at_the_boundary() -> None:
    # the martingale property, checked exactly: E[LR] = sum_x Binom(x; T, q0) * LR(x) = 1
    stats = pytest.importorskip("scipy.stats")
    n_new, n_old, total, rho0, rho = 3, 17, 8, 1.2, 4.0
    q0 = rho0 * n_new / (rho0 * n_new + n_old)
    mean = 0.0
    for x in range(total + 1):
        lr = math.exp(
            interval_log_likelihood(rho, new_requests=n_new, old_requests=n_old,
                                    new_errors=x, total_errors=total)
            - interval_log_likelihood(rho0, new_requests=n_new, old_requests=n_old,
                                      new_errors=x, total_errors=total))
        mean += float(stats.binom.pmf(x, total, q0)) * lr
    assert mean == pytest.approx(1.0, rel=1e-12)


# --- input rules --------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"alpha": 0.0}, {"alpha": 1.0}, {"alpha": -0.1}, {"tolerance": -0.1},
    {"tolerance": math.inf}, {"min_requests": 0}, {"min_requests": 2.5}, {"min_requests": True},
])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CompareErrors(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("counts", "words"), [
    ((-1, 0, 0, 0), "old_requests must be >= 0"),
    ((10, 11, 0, 0), "old_errors (11) exceeds old_requests (10)"),
    ((10, 0, 3, 4), "new_errors (4) exceeds new_requests (3)"),
    ((10.0, 0, 3, 0), "old_requests must be an integer"),
    ((10, 0, True, 0), "new_requests must be an integer"),
])
def test_bad_counts_are_refused(counts: tuple[int, int, int, int], words: str) -> None:
    with pytest.raises(ValueError) as info:
        CompareErrors().update(*counts)
    assert words in str(info.value)


def test_a_decrease_is_refused_and_changes_nothing() -> None:
    check = CompareErrors(min_requests=1)
    before = check.update(1000, 2, 100, 1)
    with pytest.raises(ValueError, match="new_requests went down from 100 to 50"):
        check.update(1000, 2, 50, 1)
    with pytest.raises(ValueError, match="old_errors went down from 2 to 1"):
        check.update(1100, 1, 110, 1)
    assert check.verdict == before
    assert check.update(1000, 2, 100, 1) == before  # the same counts again: nothing new


# --- verdict rules -------------------------------------------------------------


def test_no_data_never_passes() -> None:
    check = CompareErrors(min_requests=100)
    assert check.verdict is None
    assert check.update(0, 0, 0, 0).outcome is Outcome.INCONCLUSIVE
    verdict = check.update(9_000, 9, 99, 0)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "99 requests on new, fewer than min_requests 100" in verdict.reason
    assert check.update(9_100, 9, 100, 0).outcome is Outcome.PASS


def test_no_baseline_traffic_is_inconclusive() -> None:
    verdict = CompareErrors(min_requests=10).update(0, 0, 500, 1)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "no request on old" in verdict.reason
    assert verdict.e_value == 1.0  # without old's requests an error tells nothing


def test_fail_carries_its_evidence_and_is_final() -> None:
    check = CompareErrors(alpha=0.01, min_requests=1_000)
    verdict = check.update(99_000, 100, 1_000, 40)  # old 0.1%, new 4%
    assert verdict.outcome is Outcome.FAIL
    assert verdict.p_value <= 0.01 and verdict.e_value >= 100
    assert verdict.ratio == pytest.approx(0.04 / (100 / 99_000))
    assert verdict.ratio_lower is not None and verdict.ratio_upper is not None
    assert 1.0 < verdict.ratio_lower < verdict.ratio < verdict.ratio_upper
    assert "always-valid p" in verdict.reason and "new 40/1000, old 100/99000" in verdict.reason
    record = verdict.as_dict()
    assert record["outcome"] == "fail" and record["new_errors"] == 40
    # a long healthy tail lowers the e-value but the always-valid p-value never rises
    later = check.update(9_999_000, 10_100, 101_000, 140)
    assert later.e_value < verdict.e_value
    assert later.outcome is Outcome.FAIL and later.p_value == verdict.p_value


def test_fail_needs_no_min_requests() -> None:
    # FAIL's guarantee holds at any sample size: a broken new environment is not
    # kept waiting for min_requests
    verdict = CompareErrors(alpha=0.01, min_requests=1_000).update(2_000, 1, 20, 10)
    assert verdict.outcome is Outcome.FAIL


def test_within_tolerance_passes_and_confidence_sequence_covers() -> None:
    check = CompareErrors(alpha=0.01, tolerance=0.5, min_requests=100)
    verdict = check.update(900_000, 9_000, 100_000, 1_200)  # new 1.2% vs old 1%
    assert verdict.outcome is Outcome.PASS
    assert verdict.ratio == pytest.approx(1.2)
    assert verdict.ratio_lower is not None and verdict.ratio_upper is not None
    assert verdict.ratio_lower < 1.2 < verdict.ratio_upper < 1.5
    assert "no regression beyond 1.5x" in verdict.reason


def test_unbounded_confidence_sequence_before_any_error() -> None:
    verdict = CompareErrors(min_requests=1).update(100, 0, 100, 0)
    assert verdict.ratio_lower is None and verdict.ratio_upper is None
    assert verdict.ratio is None and verdict.e_value == 1.0 and verdict.p_value == 1.0
    assert isinstance(verdict, ErrorsVerdict)


def test_pending_interval_waits_for_both_environments() -> None:
    # errors seen while only new had requests are judged once old has requests too
    check = CompareErrors(min_requests=1)
    assert check.update(0, 0, 5, 5).e_value == 1.0
    assert check.update(1_000, 0, 5, 5).outcome is Outcome.FAIL


# --- simulation ------------------------------------------------------------------


class Replica:
    """CompareErrors' e-value (tolerance as given) for many runs at once."""

    def __init__(self, runs: int, alpha: float, tolerance: float) -> None:
        self.log_rho = np.log(np.array(GRID))
        self.above = np.array(GRID) > 1.0 + tolerance
        self.log_boundary = math.log(1.0 + tolerance)
        self.ll = np.zeros((runs, len(GRID)))
        self.llb = np.zeros(runs)
        self.pending = np.zeros((runs, 4), dtype=np.int64)
        self.log_e = np.zeros(runs)
        self.threshold = math.log(1 / alpha)

    def _loglik(self, log_rho: np.ndarray, c: np.ndarray) -> np.ndarray:
        old_n, old_x, new_n, new_x = (c[:, i, None].astype(float) for i in range(4))
        with np.errstate(divide="ignore"):
            log_rn = log_rho + np.log(new_n)
            log_tot = np.logaddexp(log_rn, np.log(old_n))
            return np.asarray(new_x * (log_rn - log_tot) + old_x * (np.log(old_n) - log_tot))

    def feed(self, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Add one interval's counts to ``rows``; return their log e-values."""
        self.pending[rows] += counts
        p = self.pending[rows]
        close = (p[:, 0] > 0) & (p[:, 2] > 0)
        upd = close & (p[:, 1] + p[:, 3] > 0)
        if upd.any():
            changed = rows[upd]
            self.ll[changed] += self._loglik(self.log_rho[None, :], p[upd])
            self.llb[changed] += self._loglik(np.array([[self.log_boundary]]), p[upd])[:, 0]
            la = self.ll[changed][:, self.above]
            top = la.max(axis=1)
            self.log_e[changed] = (top + np.log(np.exp(la - top[:, None]).mean(axis=1))
                                   - self.llb[changed])
        self.pending[rows[close]] = 0
        return np.asarray(self.log_e[rows])


def simulate(*, runs: int, requests: int, share: float, p_old: float, p_new: float,
             alpha: float, tolerance: float, seed: int) -> np.ndarray:
    """Requests on new until FAIL per run (inf = none), checked after every new request.

    Requests fail independently (Bernoulli); the old requests between two new ones
    are geometric (Poisson arrivals split by the share).
    """
    rng = np.random.default_rng(seed)
    replica = Replica(runs, alpha, tolerance)
    result = np.full(runs, np.inf)
    active = np.arange(runs)
    for k in range(1, requests + 1):
        n = active.size
        if n == 0:
            break
        old_n = rng.geometric(share, size=n) - 1
        counts = np.stack([old_n, rng.binomial(old_n, p_old), np.ones(n, dtype=np.int64),
                           rng.binomial(1, p_new, size=n)], axis=1)
        failed = replica.feed(active, counts) >= replica.threshold
        result[active[failed]] = k
        active = active[~failed]
    return result


def test_replica_matches_class() -> None:
    rng = np.random.default_rng(3)
    for tolerance in (0.0, 0.3):
        replica = Replica(1, 0.01, tolerance)
        check = CompareErrors(alpha=0.01, tolerance=tolerance, min_requests=1)
        total = np.zeros(4, dtype=np.int64)
        for _ in range(400):
            old_n = int(rng.geometric(0.2)) - 1
            counts = np.array([old_n, rng.binomial(old_n, 0.03), 1, rng.binomial(1, 0.06)])
            total += counts
            log_e = float(replica.feed(np.array([0]), counts[None, :])[0])
            verdict = check.update(*(int(v) for v in total))
            assert log_e == pytest.approx(math.log(verdict.e_value), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("share", "p_old", "p_new", "alpha", "tolerance"), [
    (0.10, 0.02, 0.02, 0.01, 0.0),   # equal rates, 10% share
    (0.50, 0.05, 0.05, 0.05, 0.0),   # equal rates, half the traffic, a looser alpha
    (0.10, 0.02, 0.024, 0.05, 0.2),  # new exactly 1.2x old with tolerance 0.2: the boundary
])
def test_healthy_false_fail_rate_is_at_most_alpha_checked_every_request(
        share: float, p_old: float, p_new: float, alpha: float, tolerance: float) -> None:
    runs = 1_500
    first_fail = simulate(runs=runs, requests=1_000, share=share, p_old=p_old, p_new=p_new,
                          alpha=alpha, tolerance=tolerance, seed=8)
    false_fail = float(np.isfinite(first_fail).mean())
    assert false_fail <= alpha


def test_class_false_fail_rate_with_batches() -> None:
    # the class itself, checked after every batch of about 100 requests, equal rates
    rng = np.random.default_rng(11)
    runs, fails = 500, 0
    for _ in range(runs):
        check = CompareErrors(alpha=0.1, min_requests=1)
        n = rng.poisson([90, 10], size=(20, 2))
        x = rng.binomial(n, 0.05)
        cum_n, cum_x = n.cumsum(axis=0), x.cumsum(axis=0)
        for (old_n, new_n), (old_x, new_x) in zip(cum_n, cum_x, strict=True):
            if check.update(int(old_n), int(old_x), int(new_n), int(new_x)).outcome \
                    is Outcome.FAIL:
                fails += 1
                break
    assert fails / runs <= 0.1


def test_a_5x_regression_is_found_within_bounded_requests() -> None:
    # old 1%, new 5%, new on 10% of the traffic. Wald's bound for a test that knew
    # old's rate is log(100) / KL(5% || 1%) = 111 requests on new.
    first_fail = simulate(runs=500, requests=2_000, share=0.10, p_old=0.01, p_new=0.05,
                          alpha=0.01, tolerance=0.0, seed=5)
    assert np.isfinite(first_fail).all()
    assert float(np.median(first_fail)) <= 400
    assert float(np.quantile(first_fail, 0.95)) <= 1_000


def test_new_traffic_not_compared_with_old_never_passes() -> None:
    # old stops being counted (its health check failed, its exporter died): new's
    # requests since then are not in the test, and a failing new must not PASS on them
    check = CompareErrors(alpha=0.01, min_requests=200)
    check.update(1, 0, 1, 0)
    v = check.update(1, 0, 500, 250)
    assert v.outcome is Outcome.INCONCLUSIVE, v.reason
    v = check.update(1, 0, 2000, 1000)
    assert v.outcome is Outcome.INCONCLUSIVE and "since old last had one" in v.reason
    # enough compared traffic, then old stalls again: the backlog holds the PASS back
    ok = CompareErrors(alpha=0.01, min_requests=200)
    ok.update(20_000, 20, 200, 0)
    assert ok.update(20_000, 20, 200, 0).outcome is Outcome.PASS
    assert ok.update(20_000, 20, 450, 0).outcome is Outcome.INCONCLUSIVE
