"""CompareLatency: known values, input rules, verdict rules and, by simulation, the
alpha-spending guarantee (identical latency on both sides, checked after every
interval, FAILs at most alpha of the time), detection of a 2x regression, a small
significant regression kept under effect_size, and the autocorrelation limit the
module's docstring states.

The big simulations run a numpy/scipy replica of the class's test over many runs at
once (scipy's mannwhitneyu along an axis); ``test_replica_matches_class`` holds the
replica to the class. All randomness is seeded.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields

import numpy as np
import pytest
from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

from shiftover.analysis.latency import (
    EXACT_MAX_VALUES,
    CompareLatency,
    LatencyVerdict,
    alpha_for_look,
    hodges_lehmann_ratio,
    u_test,
)
from shiftover.types import Verdict

# --- known values -------------------------------------------------------------


def test_u_and_p_by_hand() -> None:
    # n = m = 3: new's U counts the pairs where new is larger: 2 + 3 + 3 = 8 of 9.
    # Under the null the 20 orderings are equally likely; U >= 8 in two of them.
    check = CompareLatency(alpha=0.2, effect_size=1.0, min_intervals=3)
    for old, new in ((0.1, 0.25), (0.2, 0.4), (0.3, 0.5)):
        verdict = check.update(old, new)
    assert verdict.u_statistic == 8
    assert verdict.p_value == pytest.approx(2 / 20)
    assert verdict.look == 1 and verdict.alpha_spent == pytest.approx(0.2 / 2)


def test_a_look_that_cannot_reject_spends_nothing_and_passes_nothing() -> None:
    # 3 a side: the exact test's smallest p is 1/20, above alpha_1 = 0.005: no look, no
    # alpha spent, and no PASS either (the test could not have found anything)
    check = CompareLatency(alpha=0.01, effect_size=1.5, min_intervals=3)
    for i in range(4):
        verdict = check.update(0.2, 40.0 + i)
    assert verdict.look == 0 and verdict.outcome is Verdict.INCONCLUSIVE
    assert "cannot" in verdict.reason
    verdict = check.update(0.2, 44.0)  # 5 a side: 1/252 <= 0.005, the first look FAILs
    assert verdict.look == 1 and verdict.regression


def test_u_and_p_are_scipys_exact_without_ties() -> None:
    rng = np.random.default_rng(11)
    old = list(rng.lognormal(-1.6, 0.3, 25))
    new = list(rng.lognormal(-1.4, 0.3, 25))
    check = CompareLatency(min_intervals=10)
    for o, n in zip(old, new, strict=True):
        verdict = check.update(o, n)
    # the test is of new's figures scaled down by effect_size (the null's boundary)
    expected = mannwhitneyu([n / 1.2 for n in new], old, alternative="greater", method="exact")
    assert verdict.u_statistic == expected.statistic
    assert verdict.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert verdict.look == 25 - 10 + 1


def test_ties_and_large_samples_use_the_corrected_normal_approximation() -> None:
    # histogram_quantile clamps at bucket bounds: ties are common
    old = [0.1, 0.25, 0.25, 0.5, 0.25, 0.1, 0.25, 0.5]
    new = [0.25, 0.5, 0.5, 0.25, 1.0, 0.5, 0.25, 0.5]
    u, p = u_test(new, old)
    expected = mannwhitneyu(new, old, alternative="greater", method="asymptotic")
    assert u == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue, rel=1e-12)
    rng = np.random.default_rng(3)
    big_old = list(rng.random(EXACT_MAX_VALUES // 2 + 1))
    big_new = list(rng.random(EXACT_MAX_VALUES // 2))
    expected = mannwhitneyu(big_new, big_old, alternative="greater", method="asymptotic")
    assert u_test(big_new, big_old)[1] == pytest.approx(expected.pvalue, rel=1e-12)


def test_all_values_equal_is_no_evidence() -> None:
    assert u_test([0.25] * 12, [0.25] * 12)[1] == 1.0
    check = CompareLatency(min_intervals=5)
    for _ in range(6):
        verdict = check.update(0.25, 0.25)
    assert verdict.outcome is Verdict.PASS and verdict.effect == 1.0


def test_hodges_lehmann_ratio_by_hand() -> None:
    # ratios 2/1, 2/2, 4/1, 4/2 = 2, 1, 4, 2: median 2
    assert hodges_lehmann_ratio([2.0, 4.0], [1.0, 2.0]) == 2.0
    assert hodges_lehmann_ratio([1.0, 3.0, 9.0], [1.0]) == 3.0
    assert hodges_lehmann_ratio([0.0], [0.0]) == 1.0          # 0/0 counts as equal
    assert hodges_lehmann_ratio([1.0], [0.0]) == math.inf
    # one spike hardly moves it (the ratio of means would read 3.4)
    old = [0.2] * 9 + [0.21]
    new = [0.2] * 9 + [5.0]
    assert hodges_lehmann_ratio(new, old) == pytest.approx(0.2 / 0.2)


def test_alpha_spending_sums_to_alpha() -> None:
    assert alpha_for_look(0.01, 1) == pytest.approx(0.005)
    assert alpha_for_look(0.01, 50) == pytest.approx(0.01 / 2550)
    total = math.fsum(alpha_for_look(0.05, k) for k in range(1, 100_001))
    assert total == pytest.approx(0.05 * (1 - 1 / 100_001), rel=1e-12)
    assert total < 0.05


# --- settings and input rules -----------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"alpha": 0.0}, {"alpha": 1.0}, {"alpha": -0.1}, {"alpha": math.nan},
    {"effect_size": 0.9}, {"effect_size": math.inf}, {"effect_size": math.nan},
    {"slo": 0.0}, {"slo": -1.0}, {"slo": math.inf},
    {"min_intervals": 1}, {"min_intervals": 2.5}, {"min_intervals": True},
])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        CompareLatency(**kwargs)  # type: ignore[arg-type]


def test_boundary_settings_are_accepted() -> None:
    check = CompareLatency(alpha=0.5, effect_size=1.0, slo=0.3, min_intervals=2)
    assert (check.effect_size, check.slo, check.min_intervals) == (1.0, 0.3, 2)


@pytest.mark.parametrize(("old", "new", "words"), [
    (-0.1, 0.2, "old must be a finite latency >= 0"),
    (0.2, math.nan, "new must be a finite latency >= 0"),
    (0.2, math.inf, "new must be a finite latency >= 0"),
    ("0.2", 0.2, "old must be a latency in seconds or None"),
    (0.2, True, "new must be a latency in seconds or None"),
])
def test_bad_latencies_are_refused_and_change_nothing(old: object, new: object,
                                                      words: str) -> None:
    rng = np.random.default_rng(5)
    values = [(float(a), float(b)) for a, b in rng.lognormal(-1.6, 0.2, (12, 2))]
    check, twin = CompareLatency(min_intervals=5), CompareLatency(min_intervals=5)
    for o, n in values[:8]:
        before = check.update(o, n)
        twin.update(o, n)
    with pytest.raises(ValueError, match=words):
        check.update(old, new)  # type: ignore[arg-type]
    assert check.verdict == before
    # the refused interval left no trace: the rest gives the twin's verdicts exactly
    for o, n in values[8:]:
        assert check.update(o, n) == twin.update(o, n)


def test_integer_latencies_are_accepted() -> None:
    verdict = CompareLatency(min_intervals=2).update(0, 1)
    assert verdict.intervals_old == 1 and verdict.old_median == 0.0


# --- verdict rules ----------------------------------------------------------------


def test_too_few_intervals_is_inconclusive_even_for_a_large_regression() -> None:
    check = CompareLatency(min_intervals=10)
    for _ in range(9):
        verdict = check.update(0.1, 1.0)
    assert verdict.outcome is Verdict.INCONCLUSIVE
    assert "9 intervals with a value on new and 9 on old" in verdict.reason
    assert verdict.look == 0 and verdict.p_value is None and verdict.effect == 10.0
    assert check.update(0.1, 1.0).outcome is Verdict.FAIL  # the 10th: first look


def test_none_is_never_a_value_and_never_a_pass() -> None:
    rng = np.random.default_rng(8)
    check = CompareLatency(alpha=0.2, min_intervals=5)
    for o, n in rng.lognormal(-1.6, 0.2, (5, 2)):
        verdict = check.update(float(o), float(n))
    assert verdict.outcome is Verdict.PASS and verdict.look == 1
    verdict = check.update(None, None)        # nothing new: no look spent
    assert verdict.outcome is Verdict.INCONCLUSIVE
    assert "no value from new" in verdict.reason
    assert (verdict.intervals_old, verdict.intervals_new, verdict.look) == (5, 5, 1)
    verdict = check.update(0.2, None)         # old moves on, new has no traffic
    assert verdict.outcome is Verdict.INCONCLUSIVE
    assert (verdict.intervals_old, verdict.intervals_new, verdict.look) == (6, 5, 2)
    verdict = check.update(None, 0.2)         # old without a value: its earlier ones stand
    assert verdict.outcome is Verdict.PASS
    assert (verdict.intervals_old, verdict.intervals_new, verdict.look) == (6, 6, 3)


def test_none_only_never_passes() -> None:
    check = CompareLatency(min_intervals=2, slo=1.0)
    for _ in range(20):
        verdict = check.update(None, None)
    assert verdict.outcome is Verdict.INCONCLUSIVE and verdict.intervals_new == 0
    assert verdict.old_median is None and verdict.effect is None and verdict.new_recent is None


def test_slo_one_spike_is_not_a_breach_two_of_three_are() -> None:
    check = CompareLatency(slo=0.5, min_intervals=10)
    assert check.update(0.2, 0.9).outcome is Verdict.INCONCLUSIVE   # one value: no reading
    verdict = check.update(0.2, 0.2)
    assert verdict.new_recent == 0.2 and not verdict.slo_breached   # two values: the smaller
    verdict = check.update(0.2, 0.3)                                # 0.9 0.2 0.3
    assert verdict.new_recent == 0.3 and verdict.outcome is Verdict.INCONCLUSIVE
    verdict = check.update(0.2, 0.8)                                # 0.2 0.3 0.8
    assert not verdict.slo_breached and verdict.new_recent == 0.3
    verdict = check.update(0.2, 0.7)                                # 0.3 0.8 0.7: breach
    assert verdict.outcome is Verdict.FAIL and verdict.slo_breached
    assert not verdict.regression and verdict.new_recent == 0.7
    assert "two of new's last three values exceed 0.5" in verdict.reason
    verdict = check.update(0.2, None)                               # no value: reading stands
    assert verdict.outcome is Verdict.FAIL
    check.update(0.2, 0.2)                                          # 0.8 0.7 0.2
    verdict = check.update(0.2, 0.2)                                # 0.7 0.2 0.2: clears
    assert verdict.outcome is Verdict.INCONCLUSIVE and not verdict.slo_breached


def test_slo_is_inclusive() -> None:
    check = CompareLatency(slo=0.5, min_intervals=2)
    for _ in range(6):  # 6 a side: a look can run (1/924 <= alpha_1)
        verdict = check.update(0.5, 0.5)
    assert verdict.new_recent == 0.5 and verdict.outcome is Verdict.PASS


def test_slo_catches_what_both_share() -> None:
    # a common database slows both: no regression, but the SLO fails
    check = CompareLatency(slo=0.5, min_intervals=5)
    rng = np.random.default_rng(2)
    for o, n in rng.lognormal(math.log(0.9), 0.1, (8, 2)):
        verdict = check.update(float(o), float(n))
    assert verdict.outcome is Verdict.FAIL
    assert verdict.slo_breached and not verdict.regression


def test_regression_fail_carries_its_evidence_and_is_final() -> None:
    rng = np.random.default_rng(4)
    check = CompareLatency(alpha=0.01, effect_size=1.2, min_intervals=10)
    for o, n in rng.lognormal(math.log(0.2), 0.2, (10, 2)):
        verdict = check.update(float(o), 2 * float(n))
    assert verdict.outcome is Verdict.FAIL and verdict.regression
    assert verdict.p_value is not None and verdict.alpha_spent is not None
    assert verdict.p_value <= verdict.alpha_spent == pytest.approx(0.005)
    assert verdict.effect is not None and verdict.effect > 1.2
    assert "new is slower than old" in verdict.reason and "final for the step" in verdict.reason
    for o, n in rng.lognormal(math.log(0.2), 0.2, (30, 2)):   # healthy again
        later = check.update(float(o), float(n))
        assert later.outcome is Verdict.FAIL and later.look == 1
    assert later.reason == verdict.reason and later.intervals_new == 40


def test_both_fails_are_named() -> None:
    check = CompareLatency(slo=0.5, min_intervals=6)
    for _ in range(6):   # exact p = 1 / C(12, 6) = 0.0011 <= alpha_1 0.005
        verdict = check.update(0.1, 1.0)
    assert verdict.regression and verdict.slo_breached
    assert "slower than old" in verdict.reason and "SLO breached" in verdict.reason


def test_small_significant_regression_under_effect_size_passes() -> None:
    # new 1.1x as slow with little noise: a difference a test against equality finds
    # at every look; against the boundary (1.2x) it is no evidence at all
    rng = np.random.default_rng(6)
    check = CompareLatency(alpha=0.01, effect_size=1.2, min_intervals=10)
    for o, n in rng.lognormal(math.log(0.2), 0.03, (40, 2)):
        verdict = check.update(float(o), 1.1 * float(n))
        assert verdict.outcome is not Verdict.FAIL
    assert verdict.outcome is Verdict.PASS
    assert verdict.p_value is not None and verdict.alpha_spent is not None
    assert verdict.p_value > 0.5  # new / 1.2 is faster than old
    assert mannwhitneyu([1.1 * n for _o, n in rng.lognormal(math.log(0.2), 0.03, (40, 2))],
                        list(rng.lognormal(math.log(0.2), 0.03, 40)),
                        alternative="greater").pvalue < 1e-6  # what equality would say
    assert verdict.effect == pytest.approx(1.1, rel=0.02)
    assert "no latency regression beyond 1.2x" in verdict.reason


def test_as_dict_is_json_ready_and_complete() -> None:
    verdicts: list[LatencyVerdict] = []
    check = CompareLatency(slo=0.5, min_intervals=2)
    verdicts.append(check.update(None, None))         # nothing at all
    verdicts.append(check.update(0.0, 0.3))           # effect inf
    verdicts.append(check.update(0.0, 0.6))
    verdicts.append(check.update(0.0, 0.7))           # SLO FAIL
    for verdict in verdicts:
        data = verdict.as_dict()
        assert set(data) == {f.name for f in fields(LatencyVerdict)}
        assert json.loads(json.dumps(data, allow_nan=False))["outcome"] == verdict.outcome.value
    assert verdicts[1].effect == math.inf and verdicts[1].as_dict()["effect"] is None
    assert verdicts[-1].as_dict()["outcome"] == "fail"


# --- simulation ---------------------------------------------------------------------


def replica_first_fail(old: np.ndarray, new: np.ndarray, *, alpha: float,
                       effect_size: float, min_intervals: int) -> np.ndarray:
    """Interval (1-based) of each run's first regression FAIL, inf if none.

    ``old`` and ``new`` are (runs, intervals) arrays of continuous values (no ties,
    no None, at most EXACT_MAX_VALUES in all): the class's test, along an axis.
    """
    runs, intervals = old.shape
    first = np.full(runs, np.inf)
    for t in range(min_intervals, intervals + 1):
        look = t - min_intervals + 1
        p = mannwhitneyu(new[:, :t] / effect_size, old[:, :t], axis=1, alternative="greater",
                         method="exact").pvalue
        effect = np.median((new[:, :t, None] / old[:, None, :t]).reshape(runs, -1), axis=1)
        failed = (p <= alpha_for_look(alpha, look)) & (effect > effect_size)
        first[np.isinf(first) & failed] = t
    return first


def lognormal_runs(*, runs: int, intervals: int, ratio: float, sigma: float, seed: int,
                   autocorrelation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-interval p95s around 200 ms on old, ``ratio`` times that on new.

    log-normal noise, optionally AR(1) on each side (independently), stationary.
    """
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, (2, runs, intervals))
    if autocorrelation:
        scale = math.sqrt(1 - autocorrelation**2)
        for t in range(1, intervals):
            noise[:, :, t] = autocorrelation * noise[:, :, t - 1] + scale * noise[:, :, t]
    old = 0.2 * np.exp(noise[0])
    new = 0.2 * ratio * np.exp(noise[1])
    return old, new


def test_replica_matches_class() -> None:
    for ratio, seed in ((1.0, 1), (1.5, 2), (2.0, 3), (1.25, 4)):
        old, new = lognormal_runs(runs=6, intervals=40, ratio=ratio, sigma=0.3, seed=seed)
        expected = replica_first_fail(old, new, alpha=0.05, effect_size=1.2, min_intervals=8)
        for run in range(6):
            check = CompareLatency(alpha=0.05, effect_size=1.2, min_intervals=8)
            first = math.inf
            for t in range(40):
                verdict = check.update(float(old[run, t]), float(new[run, t]))
                if verdict.regression and math.isinf(first):
                    first = t + 1
            assert first == expected[run], (ratio, seed, run)


@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_identical_latency_false_fail_rate_is_at_most_alpha_checked_every_interval(
        alpha: float) -> None:
    # 500 steps of 60 intervals, a look after every one (51 looks each)
    old, new = lognormal_runs(runs=500, intervals=60, ratio=1.0, sigma=0.25, seed=21)
    first = replica_first_fail(old, new, alpha=alpha, effect_size=1.2, min_intervals=10)
    false_fail = float(np.mean(np.isfinite(first)))
    assert false_fail <= alpha


def test_class_false_fail_rate_with_gaps() -> None:
    # the class itself, with intervals where one side or the other has no value
    rng = np.random.default_rng(22)
    runs, fails = 100, 0
    for _ in range(runs):
        check = CompareLatency(alpha=0.1, effect_size=1.0, min_intervals=5)
        for o, n, gap in zip(rng.lognormal(-1.6, 0.25, 30), rng.lognormal(-1.6, 0.25, 30),
                             rng.random(30), strict=True):
            verdict = check.update(None if gap < 0.1 else float(o),
                                   None if gap > 0.9 else float(n))
            if verdict.outcome is Verdict.FAIL:
                fails += 1
                break
    assert fails / runs <= 0.1


def test_2x_slower_fails_within_a_few_intervals() -> None:
    # p95s with ordinary noise (sigma 0.25 in log: most within 0.6x..1.6x of the median)
    old, new = lognormal_runs(runs=500, intervals=60, ratio=2.0, sigma=0.25, seed=23)
    first = replica_first_fail(old, new, alpha=0.01, effect_size=1.2, min_intervals=10)
    assert np.all(first <= 30)            # measured: all by interval 28
    assert np.mean(first == 10) >= 0.85   # 448 of 500 at the first look (min_intervals)


def test_2x_slower_with_heavy_noise_takes_longer() -> None:
    # sigma 0.6: the late looks' tiny alpha_k is what the repeated looks cost
    old, new = lognormal_runs(runs=500, intervals=60, ratio=2.0, sigma=0.6, seed=24)
    first = replica_first_fail(old, new, alpha=0.01, effect_size=1.2, min_intervals=10)
    assert np.mean(np.isfinite(first)) >= 0.55  # measured: 306 of 500 within 60
    assert np.median(first[np.isfinite(first)]) <= 35  # measured: interval 31


def test_1_1x_slower_with_effect_size_1_2_is_within_alpha() -> None:
    # a true effect under effect_size: the test is against the boundary, so the
    # false-FAIL bound holds (2 of 500; Kayenta's rule, against equality: 22)
    old, new = lognormal_runs(runs=500, intervals=60, ratio=1.1, sigma=0.25, seed=25)
    first = replica_first_fail(old, new, alpha=0.01, effect_size=1.2, min_intervals=10)
    assert float(np.mean(np.isfinite(first))) <= 0.01


def test_at_the_boundary_the_false_fail_rate_is_at_most_alpha() -> None:
    # new exactly effect_size times as slow: the worst case of the null (33 of 5,000)
    fails = 0
    for seed in range(30, 40):
        old, new = lognormal_runs(runs=500, intervals=60, ratio=1.2, sigma=0.25, seed=seed)
        first = replica_first_fail(old, new, alpha=0.01, effect_size=1.2, min_intervals=10)
        fails += int(np.isfinite(first).sum())
    assert fails / 5000 <= 0.01


def test_autocorrelation_inflates_false_fails_as_documented() -> None:
    # the module's stated limit, measured: independent AR(1) noise on each side with
    # lag-1 correlation 0.5 makes a new environment at the boundary (exactly
    # effect_size times as slow) FAIL several times alpha (42 of 500 at alpha 0.01)
    old, new = lognormal_runs(runs=500, intervals=60, ratio=1.2, sigma=0.25, seed=29,
                              autocorrelation=0.5)
    first = replica_first_fail(old, new, alpha=0.01, effect_size=1.2, min_intervals=10)
    assert float(np.mean(np.isfinite(first))) > 0.01
