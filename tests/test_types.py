"""Weights are exact values, end to end: the integer scales, the journal's form, and
the order in which a change is written."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftover.types import Weights, _share, write_path

pair = st.tuples(st.integers(0, 256), st.integers(0, 256)).filter(lambda p: sum(p) > 0)


@pytest.mark.parametrize(("percent", "pair_"), [
    (1, (198, 2)), (50, (256, 256)), (100, (0, 256)), (0, (256, 0)), (10, (252, 28)),
])
def test_expressible_splits_map_to_the_largest_exact_pair(percent: int, pair_: tuple[int, int]) -> None:
    assert Weights(percent).to_backend(256) == pair_


def test_a_split_the_scale_cannot_express_is_refused_not_approximated() -> None:
    with pytest.raises(ValueError, match="cannot be set exactly"):
        Weights("33.3").to_backend(256)
    # what HAProxy served after a 259-total split: 4.9080%, never "confirmed" as 4.9057%
    served = Weights.from_backend(248, 12)  # 12/260
    assert served is not None and served != Weights("4.9057")


def test_at_or_below_is_the_largest_exact_split_not_above() -> None:
    mapped = Weights("33.3").at_or_below(256)
    assert mapped <= Weights("33.3") and mapped.expressible(256)
    assert mapped == Weights(Fraction(12700, 382))
    assert Weights("0.1").at_or_below(256) == Weights(0)


@given(st.fractions(min_value=0, max_value=100, max_denominator=10_000))
@settings(max_examples=300, deadline=None)
def test_at_or_below_never_rises_and_is_exact(pct: Fraction) -> None:
    w = Weights(pct)
    m = w.at_or_below(256)
    assert m <= w and m.expressible(256)
    old, new = m.to_backend(256)
    assert Weights.from_backend(old, new) == m or m == Weights(0)


@given(st.fractions(min_value=0, max_value=100, max_denominator=100_000))
def test_the_journal_form_round_trips_exactly(pct: Fraction) -> None:
    w = Weights(pct)
    assert Weights.parse(w.exact) == w


def test_a_hand_set_split_round_trips_through_the_journal_form() -> None:
    # `set server web/old weight 247` with new at 5: 1.984...%, no float can hold it
    w = Weights.from_backend(247, 5)
    assert w is not None
    assert Weights.parse(w.exact) == w
    assert Weights(str(float(w.new_percent))) != w  # the float round trip the journal used to do


def _check_path(current: tuple[int, int], target: tuple[int, int]) -> list[tuple[int, int]]:
    path = write_path(current, target)
    assert (path[-1] if path else current) == target
    prev = current
    for p in path:
        assert p[0] + p[1] > 0, "never both weights 0"
        assert p[0] == prev[0] or p[1] == prev[1], "one server per write"
        prev = p
    return path


@given(pair, pair)
@settings(max_examples=2000, deadline=None)
def test_a_change_never_passes_through_a_split_above_both_ends(current: tuple[int, int],
                                                                target: tuple[int, int]) -> None:
    path = _check_path(current, target)
    shares = [s for s in (_share(*current), _share(*target)) if s is not None]
    for p in path:
        share = _share(*p)
        assert share is not None and share <= max(shares)


def test_lowering_the_new_share_never_passes_through_a_higher_split() -> None:
    # 50% -> 13% once left HAProxy at 59.5% when the second write failed
    current, target = Weights(50).to_backend(256), Weights(13).to_backend(256)
    for p in write_path(current, target):
        s = _share(*p)
        assert s is not None and Fraction(13, 100) <= s <= Fraction(1, 2)


def test_raising_never_overshoots_the_target() -> None:
    current, target = Weights(10).to_backend(256), Weights(11).to_backend(256)
    path = write_path(current, target)
    assert len(path) > 2  # two single writes cannot stay between 10% and 11% here
    for p in path:
        s = _share(*p)
        assert s is not None and Fraction(10, 100) <= s <= Fraction(11, 100)


def test_between_the_plans_own_steps_every_write_stays_between_current_and_target() -> None:
    reps = [Weights(p).to_backend(256) for p in range(0, 101)]
    for c in reps:
        for t in reps:
            lo, hi = sorted((_share(*c), _share(*t)))  # type: ignore[type-var]
            for p in _check_path(c, t):
                assert lo <= _share(*p) <= hi  # type: ignore[operator]


def test_from_nothing_served_old_is_written_first() -> None:
    assert write_path((0, 0), (198, 2)) == [(198, 0), (198, 2)]
