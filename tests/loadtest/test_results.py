"""Judging steps, the knee, capacity per pod, and the --json document (pure: no servers)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from shiftover.errors import BadInput
from shiftover.loadtest.results import (
    DOCUMENT_KIND,
    Capacity,
    Knee,
    StepFigures,
    StepVerdict,
    capacity,
    default_lag_limit_ms,
    find_knee,
    first_failure,
    judge_steps,
    knee_text,
    load_document,
    parse_error_ratio,
    table_rows,
)
from shiftover.loadtest.schedule import parse_schedule

SLO = 250.0


def fig(index: int = 0, rate: float = 100.0, **over: Any) -> StepFigures:
    """A healthy step at ``rate`` req/s for 10 s; override any field."""
    base = StepFigures(
        index=index,
        target_rate=rate,
        start_rate=rate,
        end_rate=rate,
        seconds=10.0,
        requests=int(rate * 10),
        failures=0,
        achieved_rate=rate,
        p50_ms=20.0,
        p95_ms=60.0,
        p99_ms=120.0,
        max_ms=200.0,
        errors={},
        dropped=0,
        lag_p99_ms=1.0,
        cpu_percent=30.0,
        complete=True,
    )
    return replace(base, **over)


def judge(*figs: StepFigures, **kw: Any) -> list[StepVerdict]:
    kw.setdefault("slo_p99_ms", SLO)
    kw.setdefault("max_errors", 0.01)
    return judge_steps(list(figs), **kw)


def one(f: StepFigures, **kw: Any) -> StepVerdict:
    return judge(f, **kw)[0]


# --- one step's verdict ------------------------------------------------------------


def test_a_healthy_step_passes() -> None:
    v = one(fig())
    assert v.verdict == "pass" and v.ok
    assert v.reason == "p99 120 ms <= 250 ms, errors 0%, 100 of 100 req/s"
    assert v.generator is None


def test_p99_over_the_slo_is_latency() -> None:
    v = one(fig(p99_ms=412.0))
    assert v.verdict == "latency" and not v.ok
    assert v.reason == "p99 412 ms > SLO 250 ms"


def test_p99_at_the_slo_passes() -> None:
    assert one(fig(p99_ms=SLO)).ok


def test_errors_over_the_limit() -> None:
    v = one(fig(failures=15, errors={"500": 12, "ConnectionRefusedError": 3}))
    assert v.verdict == "errors"
    assert v.reason == "errors 1.5% > 1% (12 x 500, 3 x ConnectionRefusedError)"


def test_errors_at_the_limit_pass() -> None:
    assert one(fig(failures=10, errors={"503": 10})).ok  # 10 / 1000 = 1%


def test_dropped_arrivals_count_as_failures() -> None:
    f = fig(requests=990, achieved_rate=99.0, dropped=20)  # 20 / 1010 ≈ 1.98%
    assert f.error_ratio == pytest.approx(20 / 1010)
    v = one(f)
    assert v.verdict == "errors"
    assert "20 dropped" in v.reason


def test_only_dropped_arrivals_is_errors_not_no_data() -> None:
    f = fig(
        requests=0,
        achieved_rate=0.0,
        p50_ms=None,
        p95_ms=None,
        p99_ms=None,
        max_ms=None,
        dropped=50,
    )
    v = one(f)
    assert v.verdict == "errors"
    assert "100%" in v.reason
    # --max-errors 100% lets every error through, but nothing was served
    assert one(f, max_errors=1.0).verdict == "rate"


def test_achieved_below_tolerance_is_rate() -> None:
    v = one(fig(achieved_rate=94.0, requests=940))
    assert v.verdict == "rate"
    assert v.reason == "achieved 94 of 100 req/s (94.0%, below 95%)"
    assert one(fig(achieved_rate=95.0, requests=950)).ok
    assert one(fig(achieved_rate=94.0, requests=940), rate_tolerance=0.1).ok


def test_every_failure_is_in_the_reason_and_errors_come_first() -> None:
    v = one(fig(p99_ms=900.0, failures=100, errors={"504": 100}, achieved_rate=50.0))
    assert v.verdict == "errors"
    assert v.reason.startswith(
        "errors 10% > 1% (100 x 504); p99 900 ms > SLO 250 ms; achieved 50 of 100"
    )
    assert one(fig(p99_ms=900.0, achieved_rate=50.0)).verdict == "latency"


def test_no_requests_is_no_data_and_never_passes() -> None:
    f = fig(requests=0, achieved_rate=0.0, p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None)
    v = one(f, max_errors=1.0, rate_tolerance=0.99)
    assert v.verdict == "no data"
    assert not v.ok


def test_an_incomplete_step_is_partial_even_if_its_figures_look_good() -> None:
    v = one(fig(seconds=4.2, complete=False))
    assert v.verdict == "partial"
    assert not v.ok
    assert "4.2 s" in v.reason


def test_a_failing_step_with_a_busy_generator_is_generator() -> None:
    v = one(fig(p99_ms=400.0, achieved_rate=80.0, cpu_percent=97.0))
    assert v.verdict == "generator"
    assert not v.ok
    assert v.generator == "CPU 97%"
    assert v.reason.startswith(
        "the load generator could not keep the rate (CPU 97%): add --workers"
    )
    assert "p99 400 ms > SLO 250 ms" in v.reason


def test_a_failing_step_with_late_arrivals_is_generator() -> None:
    v = one(fig(rate=500.0, achieved_rate=300.0, lag_p50_ms=35.0, lag_p99_ms=80.0))
    assert v.verdict == "generator"
    assert v.generator is not None and "35 ms late at the median" in v.generator


def test_one_stall_of_the_generator_is_not_a_bound_generator() -> None:
    # a busy machine stalled the dispatcher once: the p99 lag moves, the median does not
    v = one(fig(rate=80.0, lag_p50_ms=1.0, lag_p99_ms=36.0, p99_ms=900.0))
    assert v.verdict == "latency" and v.generator is None


def test_errors_the_target_answered_are_its_own_even_with_a_busy_generator() -> None:
    v = one(fig(rate=80.0, requests=320, failures=160, errors={"500": 160}, cpu_percent=97.0))
    assert v.verdict == "errors" and v.generator == "CPU 97%"
    # dropped arrivals alone can be the generator's (no user free to send them)
    v = one(fig(rate=80.0, requests=300, dropped=100, cpu_percent=97.0))
    assert v.verdict == "generator"


def test_client_side_timeouts_of_a_starved_generator_are_not_the_targets_errors() -> None:
    # 20,000 req/s from one process: CPU 98%, the client timed out on its own
    # (RetriesExceeded), the target answered no error: inconclusive, not "errors"
    starved = fig(rate=20000.0, requests=5974, failures=3550, errors={"RetriesExceeded": 3550},
                  dropped=99809, achieved_rate=5.9, p99_ms=21000.0, cpu_percent=97.6)
    v = one(starved)
    assert v.verdict == "generator", v.reason
    assert "RetriesExceeded" in v.reason
    # without a bound generator the same failures are the target's
    assert one(replace(starved, cpu_percent=20.0, lag_p50_ms=0.0)).verdict == "errors"
    # and refused connections are the target's whatever the generator did
    refused = replace(starved, errors={"ConnectionRefusedError": 3550})
    assert one(refused).verdict == "errors"


def test_too_few_users_is_the_generator_not_the_target() -> None:
    # --users 2 against a target answering in 23 ms: arrivals queue for a free user on
    # the client; only that wait puts p99 over the SLO, and the rate falls short
    few = fig(rate=120.0, achieved_rate=88.9, p99_ms=1100.0, service_p99_ms=25.0,
              wait_p99_ms=1080.0)
    v = one(few, slo_p99_ms=100.0)
    assert v.verdict == "generator", v.reason
    assert v.generator is not None and "every Locust user was busy" in v.generator
    assert "raise --users" in v.reason and "add --workers" not in v.reason
    assert find_knee([v]) is None
    # a target slow by itself fails on latency, whatever the users waited
    slow = replace(few, service_p99_ms=340.0)
    assert one(slow, slo_p99_ms=100.0).verdict == "latency"
    # figures from before the service/wait split judge as before
    old = {k: v for k, v in few.to_dict().items() if k not in ("service_p99_ms", "wait_p99_ms")}
    assert one(StepFigures.from_dict(old), slo_p99_ms=100.0).verdict == "latency"


def test_a_passing_step_with_a_busy_generator_passes_with_a_warning() -> None:
    v = one(fig(cpu_percent=95.0))
    assert v.verdict == "pass"
    assert v.generator == "CPU 95%"
    assert "generator bound" in v.reason


def test_lag_limit() -> None:
    assert default_lag_limit_ms(500.0) == 10.0  # gaps of 2 ms: the 10 ms floor
    assert default_lag_limit_ms(10.0) == 50.0  # gaps of 100 ms: half a gap
    assert one(fig(rate=10.0, lag_p50_ms=45.0, p99_ms=900.0)).verdict == "latency"
    assert one(fig(rate=10.0, lag_p50_ms=55.0, p99_ms=900.0)).verdict == "generator"
    assert (
        one(fig(rate=10.0, lag_p50_ms=5.0, p99_ms=900.0), lag_limit_ms=4.0).verdict == "generator"
    )


def test_unknown_cpu_is_not_generator_bound() -> None:
    assert one(fig(cpu_percent=None, p99_ms=900.0)).verdict == "latency"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"slo_p99_ms": 0.0}, "--slo-p99"),
        ({"slo_p99_ms": float("nan")}, "--slo-p99"),
        ({"max_errors": 1.5}, "--max-errors"),
        ({"max_errors": -0.1}, "--max-errors"),
        ({"rate_tolerance": 1.0}, "rate tolerance"),
        ({"cpu_limit": 0.0}, "CPU limit"),
    ],
)
def test_bad_criteria(kw: dict[str, float], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        judge(fig(), **kw)


# --- knee, first failure ------------------------------------------------------------


def series(*verdicts: str) -> list[StepVerdict]:
    """Steps at 100, 200, ... req/s whose verdicts are the given ones."""
    out = []
    for i, name in enumerate(verdicts):
        rate = 100.0 * (i + 1)
        f = {
            "pass": fig(i, rate),
            "latency": fig(i, rate, p99_ms=999.0),
            "errors": fig(i, rate, failures=int(rate), errors={"500": int(rate)}),
            "partial": fig(i, rate, complete=False),
        }[name]
        out.append(f)
    got = judge(*out)
    assert [v.verdict for v in got] == list(verdicts)
    return got


def test_knee_is_the_last_of_the_first_passes() -> None:
    v = series("pass", "pass", "pass", "latency", "latency")
    assert find_knee(v) == Knee(step=2, target_rate=300.0, achieved_rate=300.0, p99_ms=120.0)
    ff = first_failure(v)
    assert ff is not None and ff.figures.index == 3 and ff.verdict == "latency"


def test_a_pass_after_a_failure_does_not_move_the_knee() -> None:
    v = series("pass", "errors", "pass", "pass")
    knee = find_knee(v)
    assert knee is not None and knee.step == 0
    ff = first_failure(v)
    assert ff is not None and ff.figures.index == 1


def test_no_knee_when_the_first_step_fails() -> None:
    v = series("latency", "pass")
    assert find_knee(v) is None
    ff = first_failure(v)
    assert ff is not None and ff.figures.index == 0


def test_all_pass() -> None:
    v = series("pass", "pass")
    knee = find_knee(v)
    assert knee is not None and knee.step == 1
    assert first_failure(v) is None


def test_a_partial_step_ends_the_knee() -> None:
    knee = find_knee(series("pass", "partial"))
    assert knee is not None and knee.step == 0
    assert find_knee([]) is None


def test_the_knee_uses_the_achieved_rate() -> None:
    knee = find_knee(judge(fig(0, 500.0, achieved_rate=490.0, requests=4900)))
    assert knee is not None
    assert (knee.target_rate, knee.achieved_rate) == (500.0, 490.0)


# --- capacity -------------------------------------------------------------------------


KNEE = Knee(step=4, target_rate=400.0, achieved_rate=396.0, p99_ms=180.0)


def test_capacity_per_pod_and_pods_needed() -> None:
    c = capacity(KNEE, pods=2, peak=2000.0, headroom=0.3)
    assert c is not None
    assert c.per_pod_rps == 198.0
    assert c.pods_needed == 15  # 2000 / (198 * 0.7) = 14.43
    assert c.to_dict() == {
        "pods": 2,
        "per_pod_rps": 198.0,
        "peak_rps": 2000.0,
        "headroom": 0.3,
        "pods_needed": 15,
    }


def test_pods_needed_is_exact_on_a_whole_number() -> None:
    knee = replace(KNEE, achieved_rate=100.0)
    c = capacity(knee, pods=1, peak=1000.0, headroom=0.0)
    assert c is not None and c.pods_needed == 10
    c = capacity(knee, pods=1, peak=0.3, headroom=0.0)
    assert c is not None and c.pods_needed == 1


def test_no_capacity_without_a_knee_or_pods() -> None:
    assert capacity(None, pods=2, peak=100.0, headroom=0.2) is None
    assert capacity(KNEE, pods=None, peak=100.0, headroom=0.2) is None
    c = capacity(KNEE, pods=3, peak=None, headroom=0.2)
    assert c == Capacity(pods=3, per_pod_rps=132.0, peak_rps=None, headroom=0.2, pods_needed=None)


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"pods": 0}, "--pods"),
        ({"peak": 0.0}, "--peak"),
        ({"peak": float("inf")}, "--peak"),
        ({"headroom": 1.0}, "--headroom"),
        ({"headroom": -0.1}, "--headroom"),
    ],
)
def test_bad_capacity_flags(kw: dict[str, Any], flag: str) -> None:
    args: dict[str, Any] = {"pods": 2, "peak": 100.0, "headroom": 0.2, **kw}
    with pytest.raises(BadInput, match=flag):
        capacity(KNEE, **args)


@pytest.mark.parametrize(
    ("text", "ratio"), [("1%", 0.01), ("0.01", 0.01), (0.05, 0.05), ("0", 0.0), ("100%", 1.0)]
)
def test_parse_error_ratio(text: str | float, ratio: float) -> None:
    assert parse_error_ratio(text) == pytest.approx(ratio)


@pytest.mark.parametrize("text", ["", "lots", "150%", "-1%", "nan", "2"])
def test_parse_error_ratio_refuses(text: str) -> None:
    with pytest.raises(BadInput, match="--max-errors"):
        parse_error_ratio(text)


# --- figures round trip -----------------------------------------------------------------


def test_figures_round_trip_through_json() -> None:
    f = fig(failures=3, errors={"500": 2, "ReadTimeout": 1}, cpu_percent=None)
    assert StepFigures.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    empty = fig(requests=0, p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None)
    assert StepFigures.from_dict(empty.to_dict()) == empty


def test_figures_from_dict_refuses_what_is_not_a_step() -> None:
    d = fig().to_dict()
    del d["dropped"]
    with pytest.raises(BadInput, match="'dropped' is missing"):
        StepFigures.from_dict(d)
    with pytest.raises(BadInput, match="not a load test step"):
        StepFigures.from_dict({**fig().to_dict(), "requests": "many"})
    with pytest.raises(BadInput, match="not a load test step"):
        StepFigures.from_dict({**fig().to_dict(), "errors": [1]})


# --- the document, its table and its text ------------------------------------------------


def document(
    verdict_names: tuple[str, ...] = ("pass", "pass", "latency"),
    *,
    pods: int | None = 2,
    peak: float | None = 1000.0,
    watch: list[dict[str, Any]] | None = None,
    stopped_early: bool = False,
) -> dict[str, Any]:
    verdicts = series(*verdict_names)
    knee = find_knee(verdicts)
    cap = capacity(knee, pods=pods, peak=peak, headroom=0.25)
    rates = ",".join(str(100 * (i + 1)) for i in range(len(verdict_names)))
    doc = load_document(
        target={"url": "http://127.0.0.1:8080/", "method": "GET"},
        schedule=parse_schedule(rates, step="10s"),
        verdicts=verdicts,
        knee=knee,
        capacity=cap,
        criteria={"slo_p99_ms": SLO, "max_errors": 0.01, "rate_tolerance": 0.05},
        watch=watch or [],
        generator={"workers": 1, "users": 50},
        stopped_early=stopped_early,
        started="2025-01-01T00:00:00Z",
        ended="2025-01-01T00:00:30Z",
    )
    return json.loads(json.dumps(doc))  # what --json writes and a reader gets back


def test_document_carries_what_shiftover_scale_reads() -> None:
    doc = document()
    assert doc["kind"] == DOCUMENT_KIND == "shiftover.load/v1"
    assert doc["web"] == {"capacity_rps": 100.0}  # knee at 200 req/s over 2 pods
    assert doc["slo"] == {"latency": 0.25, "objective": 0.99}
    assert doc["knee"]["step"] == 1
    assert doc["first_failure"] == {
        "step": 2,
        "target_rate": 300.0,
        "verdict": "latency",
        "reason": "p99 999 ms > SLO 250 ms",
    }
    assert doc["capacity"]["pods_needed"] == 14  # 1000 / (100 * 0.75) = 13.3
    assert [s["verdict"] for s in doc["steps"]] == ["pass", "pass", "latency"]
    assert doc["steps"][2]["reason"] == "p99 999 ms > SLO 250 ms"
    assert doc["schedule"]["kind"] == "list"
    for key in ("criteria", "target", "generator", "watch", "stopped_early", "started", "ended"):
        assert key in doc
    # the steps read back as the child's figures
    assert StepFigures.from_dict(doc["steps"][0]) == fig(0, 100.0)


def test_no_web_capacity_without_pods_or_knee() -> None:
    assert "web" not in document(pods=None)
    doc = document(("latency", "pass"))
    assert "web" not in doc
    assert doc["knee"] is None and doc["capacity"] is None
    assert doc["slo"] == {"latency": 0.25, "objective": 0.99}


def test_document_needs_the_criteria() -> None:
    with pytest.raises(ValueError, match="slo_p99_ms"):
        load_document(
            target={},
            schedule=parse_schedule("1", duration="1s"),
            verdicts=[],
            knee=None,
            capacity=None,
            criteria={"max_errors": 0.01},
            generator={},
            stopped_early=False,
            started="",
            ended="",
        )


def test_table_rows() -> None:
    columns, rows = table_rows(document())
    assert columns == [
        "step",
        "target req/s",
        "achieved req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "dropped",
        "gen CPU",
        "verdict",
    ]
    assert rows[0] == ["1", "100", "100", "20", "60", "120", "0%", "0", "30%", "pass"]
    assert rows[1][-1] == "pass knee"
    assert rows[2][5] == "999" and rows[2][-1] == "latency"
    # units in the headers, short cells: no column needs more than 9 characters, so the
    # table fits 80 columns (10 columns, 2 spaces apart) with every figure whole
    widths = [max([len(w) for w in c.split()] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    assert sum(widths) + 2 * (len(columns) - 1) <= 80, widths


def test_table_shows_ramp_windows_and_missing_figures() -> None:
    verdicts = judge(
        fig(0, 75.0, start_rate=50.0, end_rate=100.0),
        fig(
            1,
            125.0,
            requests=0,
            achieved_rate=0.0,
            p50_ms=None,
            p95_ms=None,
            p99_ms=None,
            max_ms=None,
            cpu_percent=None,
        ),
    )
    doc = load_document(
        target={},
        schedule=parse_schedule("50:150", duration="20s", step="10s"),
        verdicts=verdicts,
        knee=find_knee(verdicts),
        capacity=None,
        criteria={"slo_p99_ms": SLO, "max_errors": 0.01},
        generator={},
        stopped_early=False,
        started="",
        ended="",
    )
    _, rows = table_rows(doc)
    assert rows[0][1] == "50-100"
    assert rows[1][3:7] == ["-", "-", "-", "-"]
    assert rows[1][8] == "-" and rows[1][9] == "no data"


def watch_rows() -> list[dict[str, Any]]:
    def row(
        t: float, errors: str, replicas: float | None, error: str | None = None
    ) -> dict[str, Any]:
        return {
            "t": t,
            "gates": [
                {
                    "name": "error-rate",
                    "verdict": errors,
                    "value": "0.2%",
                    "reason": "0.2% > 0.1%" if errors == "FAIL" else "",
                },
            ],
            "queries": [{"name": "replicas", "value": replicas, "error": error}],
        }

    return [row(10, "PASS", 2.0), row(20, "FAIL", 3.0), row(30, "FAIL", None, "timeout")]


def test_table_has_the_watch_columns() -> None:
    columns, rows = table_rows(document(watch=watch_rows()))
    assert columns[-2:] == ["gate error-rate", "replicas"]
    assert [r[-2:] for r in rows] == [
        ["PASS 0.2%", "2"],
        ["FAIL 0.2%", "3"],
        ["FAIL 0.2%", "error"],
    ]


def test_knee_text() -> None:
    assert knee_text(document()) == [
        "knee: step 2, 200 req/s target, 200 req/s achieved, p99 120 ms (p99 <= 250 ms, errors <= 1%)",
        "first failure: step 3 (300 req/s): latency: p99 999 ms > SLO 250 ms",
        "capacity: 100 req/s per pod (200 req/s over 2 pods)",
        "pods needed for 1,000 req/s with 25% headroom: 14",
    ]


def test_knee_text_without_pods_says_how_to_get_capacity() -> None:
    lines = knee_text(document(pods=None))
    assert (
        lines[-1] == "capacity per pod: pass --pods N (the pods behind the target during the test)"
    )


def test_knee_text_when_every_step_passed() -> None:
    lines = knee_text(document(("pass", "pass"), peak=None))
    assert (
        lines[1]
        == "every step passed: the knee is at or above the schedule's peak (200 req/s); raise --rate to find it"
    )
    assert not any(line.startswith("first failure") for line in lines)


def test_knee_text_when_the_first_step_failed() -> None:
    lines = knee_text(document(("errors", "pass")))
    assert lines[0] == "no knee: the first step did not pass (p99 <= 250 ms, errors <= 1%)"
    assert lines[1].startswith(
        "first failure: step 1 (100 req/s): errors: errors 10% > 1% (100 x 500)"
    )
    assert not any(line.startswith("capacity") for line in lines)


def test_knee_text_names_the_generator_watch_and_early_stop() -> None:
    verdicts = judge(
        fig(0, 100.0, cpu_percent=92.0),
        fig(1, 200.0, p99_ms=800.0, cpu_percent=99.0),
        fig(2, 300.0, complete=False),
    )
    doc = load_document(
        target={},
        schedule=parse_schedule("100:300:100", step="10s"),
        verdicts=verdicts,
        knee=find_knee(verdicts),
        capacity=None,
        criteria={"slo_p99_ms": SLO, "max_errors": 0.01},
        watch=watch_rows(),
        generator={},
        stopped_early=True,
        started="",
        ended="",
    )
    lines = knee_text(json.loads(json.dumps(doc)))
    assert (
        "generator: step 1 passed with the generator at its limit (CPU 92%); add --workers for a clean measure"
        in lines
    )
    assert any(
        line.startswith(
            "generator: step 2 is inconclusive: the load generator could not keep the rate (CPU 99%)"
        )
        for line in lines
    )
    assert "watch: gate error-rate first failed at step 2 (200 req/s): 0.2% > 0.1%" in lines
    assert not any("step 3 passed" in line for line in lines)
    assert lines[-1] == "stopped early: 2 of 3 steps ran in full"


def test_knee_text_never_says_a_failed_step_passed() -> None:
    # errors the target answered, with the generator at 98% CPU: "errors", and the line
    # about the generator must not call the step a pass
    verdicts = judge(fig(0, 100.0, requests=1000, failures=500, errors={"500": 500}, cpu_percent=98.0))
    assert verdicts[0].verdict == "errors"
    doc = load_document(
        target={}, schedule=parse_schedule("100", duration="10s"), verdicts=verdicts, knee=None,
        capacity=None, criteria={"slo_p99_ms": SLO, "max_errors": 0.01}, generator={},
        stopped_early=False, started="", ended="",
    )
    lines = knee_text(doc)
    assert not any("passed" in line for line in lines), lines
    assert any(line.startswith("generator: step 1 failed (errors) with the generator at its limit")
               for line in lines), lines


def test_knee_text_after_a_stop_does_not_call_the_stopped_step_a_failure() -> None:
    lines = knee_text(document(("pass", "partial"), stopped_early=True))
    assert not any(line.startswith("first failure") for line in lines)
    assert any(line.startswith("stopped during step 2 (200 req/s)") for line in lines), lines
