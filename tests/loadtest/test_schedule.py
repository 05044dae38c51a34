"""--rate / --step / --duration: the four schedule kinds, their errors, and the arrival times."""

from __future__ import annotations

import itertools
import json
import math
import shlex

import pytest

from shiftover.errors import BadInput
from shiftover.loadtest.schedule import MAX_STEPS, Schedule, Step, parse_schedule


def rates(s: Schedule) -> list[float]:
    return [step.rate for step in s.steps]


# --- the four kinds ----------------------------------------------------------


def test_constant_is_one_step_of_the_duration() -> None:
    s = parse_schedule("200", duration="5m")
    assert s.kind == "constant"
    assert s.spec == "200"
    assert s.steps == (Step(0, 200.0, 200.0, 300.0),)
    assert s.total_seconds == 300.0
    assert s.peak_rate == 200.0


def test_constant_with_step_is_split_into_windows() -> None:
    s = parse_schedule("200", duration="2m", step="30s")
    assert [(st.index, st.rate, st.seconds) for st in s.steps] == [
        (i, 200.0, 30.0) for i in range(4)
    ]
    assert s.total_seconds == 120.0


def test_stepped_includes_the_end_on_the_grid() -> None:
    s = parse_schedule("50:500:50", step="30s")
    assert s.kind == "stepped"
    assert rates(s) == [50, 100, 150, 200, 250, 300, 350, 400, 450, 500]
    assert all(st.start_rate == st.end_rate == st.rate for st in s.steps)
    assert all(st.seconds == 30.0 for st in s.steps)
    assert [st.index for st in s.steps] == list(range(10))
    assert s.total_seconds == 300.0
    assert s.peak_rate == 500.0


def test_stepped_never_overshoots_the_end() -> None:
    assert rates(parse_schedule("50:120:50", step=30)) == [50, 100]


def test_stepped_fractional_grid_lands_on_the_end_exactly() -> None:
    # 0.1 + 2 * 0.1 is 0.30000000000000004 in binary floats
    assert rates(parse_schedule("0.1:0.3:0.1", step="10s")) == [0.1, 0.2, 0.3]
    assert rates(parse_schedule("0.7:1:0.1", step="10s")) == [0.7, 0.8, 0.9, 1.0]


def test_stepped_with_equal_start_and_end_is_one_step() -> None:
    assert rates(parse_schedule("100:100:10", step="10s")) == [100]


def test_ramp_windows_lie_on_the_line() -> None:
    s = parse_schedule("50:500", duration="100s", step="10s")
    assert s.kind == "ramp"
    assert len(s.steps) == 10
    for i, st in enumerate(s.steps):
        assert st.start_rate == pytest.approx(50 + 45 * i)
        assert st.end_rate == pytest.approx(50 + 45 * (i + 1))
        assert st.rate == pytest.approx(50 + 45 * i + 22.5)
        assert st.seconds == 10.0
    assert s.steps[0].start_rate == 50.0
    assert s.steps[-1].end_rate == 500.0
    # windows join: each starts where the last ended
    for a, b in itertools.pairwise(s.steps):
        assert a.end_rate == b.start_rate
    assert s.peak_rate == 500.0


def test_ramp_default_is_ten_windows() -> None:
    s = parse_schedule("10:110", duration="5m")
    assert len(s.steps) == 10
    assert all(st.seconds == 30.0 for st in s.steps)


def test_short_ramp_has_no_window_under_a_second() -> None:
    s = parse_schedule("10:20", duration="4s")
    assert len(s.steps) == 4
    assert all(st.seconds == 1.0 for st in s.steps)


def test_list_keeps_the_given_order() -> None:
    s = parse_schedule("50, 200,100", step="20s")
    assert s.kind == "list"
    assert rates(s) == [50, 200, 100]
    assert s.peak_rate == 200
    assert s.total_seconds == 60


def test_durations_as_numbers_are_seconds() -> None:
    assert parse_schedule("5:10:5", step=15).steps[0].seconds == 15.0
    assert parse_schedule("5", duration=90.0).total_seconds == 90.0


def test_starts() -> None:
    assert parse_schedule("1,2,3", step="10s").starts == (0.0, 10.0, 20.0)


def test_summary_names_kind_rates_and_length() -> None:
    assert (
        parse_schedule("50:500:50", step="30s").summary()
        == "stepped 50 -> 500 req/s, 10 steps of 30s, 5m total"
    )
    assert (
        parse_schedule("200", duration="90s").summary()
        == "constant 200 req/s, 1 step of 90s, 90s total"
    )
    assert (
        parse_schedule("5", duration="2h", step="10m").summary()
        == "constant 5 req/s, 12 steps of 10m, 2h total"
    )
    assert (
        parse_schedule("10:110", duration="5m").summary()
        == "ramp 10 -> 110 req/s, 10 steps of 30s, 5m total"
    )


# --- round trip --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "step", "duration"),
    [
        ("200", None, "1m"),
        ("200", "10s", "1m"),
        ("50:500:50", "30s", None),
        ("1:7", "2s", "10s"),
        ("3,1,2", "5s", None),
    ],
)
def test_round_trip_through_json(rate: str, step: str | None, duration: str | None) -> None:
    s = parse_schedule(rate, step=step, duration=duration)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["kind"] == s.kind
    assert d["total_seconds"] == s.total_seconds
    assert d["peak_rate"] == s.peak_rate
    assert d["steps"][0]["rate"] == s.steps[0].rate
    assert Schedule.from_dict(d) == s


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {
            "kind": "zigzag",
            "spec": "1",
            "steps": [{"index": 0, "start_rate": 1, "end_rate": 1, "seconds": 1}],
        },
        {"kind": "list", "spec": "1", "steps": []},
        {"kind": "list", "spec": "1", "steps": [{"index": 0, "start_rate": 1, "end_rate": 1}]},
        {
            "kind": "list",
            "spec": "1",
            "steps": [{"index": 0, "start_rate": -1, "end_rate": 1, "seconds": 1}],
        },
        {
            "kind": "list",
            "spec": "1",
            "steps": [{"index": 1, "start_rate": 1, "end_rate": 1, "seconds": 1}],
        },
    ],
)
def test_from_dict_refuses_what_is_not_a_schedule(doc: dict[str, object]) -> None:
    with pytest.raises(BadInput, match="not a load schedule"):
        Schedule.from_dict(doc)


# --- errors: each names the flag, and its hint parses when pasted -------------


def _hint_args(hint: str) -> dict[str, str]:
    """The --rate/--step/--duration of the first command in a hint."""
    words = shlex.split(hint.split(" (")[0].split(", or")[0])
    return {
        words[i]: words[i + 1]
        for i in range(len(words) - 1)
        if words[i] in ("--rate", "--step", "--duration")
    }


@pytest.mark.parametrize(
    ("rate", "step", "duration", "message"),
    [
        ("50:500:50", None, None, "--step"),
        ("50,100", None, None, "--step"),
        ("50:500", None, None, "--duration"),
        ("200", None, None, "--duration"),
        ("200", "30s", "100s", "whole number of --step"),
        ("50:500", "30s", "100s", "whole number of --step"),
        ("500:50:50", "30s", None, "below the start"),
        ("500:50", None, "5m", "below the start"),
        ("50:500:-50", "30s", None, "increment must be above 0"),
        ("1:5000:1", "30s", None, "at most 1,000"),
    ],
)
def test_errors_have_hints_that_work_when_pasted(
    rate: str, step: str | None, duration: str | None, message: str
) -> None:
    with pytest.raises(BadInput, match=message) as e:
        parse_schedule(rate, step=step, duration=duration)
    assert e.value.hint
    args = _hint_args(e.value.hint)
    assert "--rate" in args
    fixed = parse_schedule(args["--rate"], step=args.get("--step"), duration=args.get("--duration"))
    assert 1 <= len(fixed.steps) <= MAX_STEPS


@pytest.mark.parametrize(
    ("rate", "step", "duration", "message"),
    [
        ("", "1s", "1s", "empty"),
        ("fast", None, "1m", "is not a number"),
        ("50:", "1s", None, "is not"),
        ("50:500:50:5", "1s", None, "is not a rate schedule"),
        ("50,,100", "1s", None, "empty item"),
        ("50,100:200", "1s", None, "not ranges"),
        ("0", None, "1m", "above 0"),
        ("-5", None, "1m", "above 0"),
        ("0:100:10", "1s", None, "above 0"),
        ("inf", None, "1m", "finite"),
        ("nan", None, "1m", "finite"),
        ("10:nan", None, "1m", "finite"),
        ("10:100:0", "1s", None, "increment of 0"),
        ("10:100:inf", "1s", None, "finite"),
        ("10:100:10", "500ms", None, "--step '500ms' is shorter than 1 s"),
        ("10", "0", "1m", "--step"),
        ("10", None, "0.5s", "--duration '0.5s' is shorter"),
        ("10", "soon", "1m", "--step 'soon'"),
        ("10", None, "forever", "--duration 'forever'"),
        ("10:20:1", "10s", "1m", "--duration does not apply"),
        ("10,20", "10s", "1m", "--duration does not apply"),
        ("1,2", "7d", None, "at most 7 days"),
    ],
)
def test_bad_input(rate: str, step: str | None, duration: str | None, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_schedule(rate, step=step, duration=duration)


def test_a_thousand_steps_is_the_limit() -> None:
    assert len(parse_schedule(f"1:{MAX_STEPS}:1", step="1s").steps) == MAX_STEPS
    with pytest.raises(BadInput, match="1,001 steps"):
        parse_schedule(f"1:{MAX_STEPS + 1}:1", step="1s")
    with pytest.raises(BadInput, match="at most 1,000"):
        parse_schedule("5", step="1s", duration=f"{MAX_STEPS + 1}s")


# --- arrival times -----------------------------------------------------------


def test_constant_arrivals_are_evenly_spaced() -> None:
    s = parse_schedule("10", duration="2s", step="1s")
    got = list(s.arrivals())
    assert len(got) == 20
    assert [i for i, _ in got] == [0] * 10 + [1] * 10
    assert [t for _, t in got] == pytest.approx([k / 10 for k in range(20)])


def test_stepped_arrivals_count_rate_times_seconds_per_step() -> None:
    s = parse_schedule("50:500:50", step="2s")
    counts: dict[int, int] = {}
    last = -1.0
    for i, t in s.arrivals():
        assert t >= last
        last = t
        counts[i] = counts.get(i, 0) + 1
        start = s.starts[i]
        assert start <= t < start + s.steps[i].seconds
    assert counts == {st.index: round(st.expected_requests) for st in s.steps}


def test_fractional_counts_carry_across_steps() -> None:
    # 0.5 req/s for 3 s = 1.5 requests per step: the run has 3 in 6 s, not 2 or 4
    s = parse_schedule("0.5", duration="6s", step="3s")
    got = list(s.arrivals())
    assert [t for _, t in got] == pytest.approx([0.0, 2.0, 4.0])
    assert [i for i, _ in got] == [0, 0, 1]


def test_ramp_arrivals_follow_the_rising_rate() -> None:
    s = parse_schedule("10:100", duration="10s", step="1s")
    got = list(s.arrivals())
    assert len(got) == pytest.approx(s.expected_requests, abs=1)  # 550
    counts = [sum(1 for i, _ in got if i == k) for k in range(10)]
    for st, n in zip(s.steps, counts, strict=True):
        assert abs(n - st.expected_requests) <= 1
    # gaps shrink as the rate rises
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(got)]
    assert gaps[0] > gaps[-1]
    assert gaps[0] == pytest.approx(1 / 10, rel=0.05)
    assert gaps[-1] == pytest.approx(1 / 100, rel=0.05)


def test_offset_of_solves_the_ramp_integral() -> None:
    st = Step(0, 10.0, 30.0, 2.0)  # rate 10 + 10 t: count(t) = 10 t + 5 t^2
    for k in (1.0, 7.5, 15.0, 39.9):
        t = st.offset_of(k)
        assert 10 * t + 5 * t * t == pytest.approx(k)
    assert st.offset_of(0) == 0.0
    assert math.isclose(Step(0, 4.0, 4.0, 1.0).offset_of(2), 0.5)
