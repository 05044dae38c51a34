"""The simulation: the real engine on simulated time with scripted gates. Every test
asserts what the run did (outcome, steps, events in order, the journal's times), never
how long it took in wall time."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.engine import simulate as sim
from shiftover.engine.build import minimum_duration
from shiftover.engine.simulate import (
    Boundary,
    Phase,
    Script,
    fail_each_step,
    parse_script_text,
    simulate,
)
from shiftover.errors import BadInput, PlanError
from shiftover.plan import Plan, load_plan
from shiftover.testing import plan_dict

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plan.yaml"
ERRORS = "new environment failed requests (5xx, refused, timed out)"
DEPS = "dependencies reachable from the new environment"
ALERTS = "no firing alerts for the service"


@pytest.fixture(scope="module")
def example() -> Plan:
    return load_plan(EXAMPLE).plan


def small(**kw: Any) -> Plan:
    return Plan.model_validate(plan_dict(**kw))


def script(text: str, plan: Plan) -> Script:
    return parse_script_text(text, plan, filename="script.yaml")


def kinds(result: sim.SimulationResult) -> list[str]:
    return [e.kind for e in result.events]


def at(result: sim.SimulationResult, kind: str, **data: Any) -> float:
    """Offset (simulated seconds after T+0) of the first event of ``kind`` with ``data``."""
    for e in result.events:
        if e.kind == kind and all(e.data.get(k) == v for k, v in data.items()):
            return e.at - sim.SIM_START
    raise AssertionError(f"no {kind} {data} in {kinds(result)}")


def confirmed(result: sim.SimulationResult) -> list[float]:
    return [e.data["percent"] for e in result.events if e.kind == ev.WEIGHT_CONFIRMED]


# --- the Must: a failure at each step of the example plan ends in the expected rollback ----


def test_a_failure_at_each_step_of_the_example_plan_rolls_back(example: Plan) -> None:
    runs = fail_each_step(example, Script())
    assert [r.step for r in runs] == example.steps
    for run in runs:
        res = run.result
        assert run.as_planned, (run.step, res.outcome, res.reason)
        assert res.outcome == "rolled_back" and res.exit_code == 3
        # the run reached the faulty step, and nothing above it
        assert res.last_step == run.step
        assert max(confirmed(res)) == run.step and confirmed(res)[-1] == 0
        # the first gate failed failure_limit checks in a row, from the fault on
        assert res.failed_checks == example.failure_limit
        assert res.fault_at == at(res, ev.WEIGHT_CONFIRMED, percent=run.step)
        # detected at the first checks after the fault, 0% confirmed at once
        assert res.fault_to_end == example.failure_limit * example.interval
        started = next(e for e in res.events if e.kind == ev.ROLLBACK_STARTED)
        assert ERRORS in started.data["reason"] and "above max 0.01" in started.data["reason"]
        assert res.final is not None and res.final.new_percent == 0


def test_a_healthy_run_of_the_example_plan_is_promoted_step_by_step(example: Plan) -> None:
    res = simulate(example, Script())
    assert res.outcome == "promoted" and res.exit_code == 0
    assert confirmed(res) == [float(w.new_percent) for w in example.step_weights]
    # every step baked its 5 minutes; the approval was given as soon as it was asked
    assert res.simulated >= minimum_duration(example)
    assert at(res, ev.APPROVED) == at(res, ev.APPROVAL_WAITING)
    assert kinds(res)[-2:] == [ev.PROMOTED, ev.RUN_STOPPED]


def test_a_value_above_max_from_a_time_fails_through_the_real_judge(example: Plan) -> None:
    s = script(f"""
gates:
  {ERRORS}:
    - {{value: 0.002, until: 12m}}
    - {{value: 0.03}}
""", example)
    res = simulate(example, s)
    assert res.outcome == "rolled_back" and res.exit_code == 3
    checks = [e for e in res.events if e.kind == ev.CHECK]
    first_fail = next(e for e in checks if e.data["verdict"] == "fail")
    assert first_fail.at - sim.SIM_START == 12 * 60
    result = next(r for r in first_fail.data["results"] if r["gate"] == ERRORS)
    assert result["value"] == 0.03 and result["threshold"] == "<= 0.01"
    # before 12m every check passed with 0.002
    before = [e for e in checks if e.at - sim.SIM_START < 12 * 60]
    assert before and all(e.data["verdict"] == "pass" for e in before)
    # the events in order: the last step confirmed, two failed checks, rollback, 0%
    order = [k for k in kinds(res) if k in (ev.CHECK, ev.ROLLBACK_STARTED, ev.WEIGHT_CONFIRMED,
                                             ev.ROLLED_BACK)]
    tail = order[order.index(ev.ROLLBACK_STARTED) - 2:]
    assert tail == [ev.CHECK, ev.CHECK, ev.ROLLBACK_STARTED, ev.WEIGHT_CONFIRMED, ev.ROLLED_BACK]
    assert confirmed(res) == [1, 2, 5, 0]


def test_a_fault_from_a_step_starts_when_that_step_is_confirmed(example: Plan) -> None:
    s = script(f"""
gates:
  {ALERTS}:
    - pass
    - {{firing: [HighErrorRate, NewPodsCrashLooping], from_step: 25}}
""", example)
    res = simulate(example, s)
    assert res.outcome == "rolled_back" and res.last_step == 25
    fails = [e for e in res.events if e.kind == ev.CHECK and e.data["verdict"] == "fail"]
    assert fails[0].at - sim.SIM_START > at(res, ev.WEIGHT_CONFIRMED, percent=25.0)
    reason = next(e for e in res.events if e.kind == ev.ROLLBACK_STARTED).data["reason"]
    assert "firing: HighErrorRate, NewPodsCrashLooping" in reason


def test_the_same_script_gives_the_same_run(example: Plan) -> None:
    text = (ROOT / "examples" / "simulate" / "fail-at-25.yaml").read_text()
    one, two = simulate(example, script(text, example)), simulate(example, script(text, example))

    def shape(r: sim.SimulationResult) -> list[tuple[str, float, Any]]:
        return [(e.kind, e.at, e.data.get("verdict")) for e in r.events]

    assert shape(one) == shape(two)


# --- gates without a number, and evidence that holds ----------------------------------


def test_an_http_gate_error_is_a_fail_and_a_short_blip_is_absorbed(example: Plan) -> None:
    blip = simulate(example, script(f"""
gates:
  {DEPS}: [{{error: connection refused, from: 8m, for: 10s}}]
""", example))
    assert blip.outcome == "promoted" and blip.failed_checks == 1
    fail = next(e for e in blip.events if e.kind == ev.CHECK and e.data["verdict"] == "fail")
    assert "request failed: scripted: connection refused" in str(fail.data["results"])
    # the bake of the step started over at the failed check
    assert any(e.kind == ev.BAKE_STARTED and e.at == fail.at for e in blip.events)
    longer = simulate(example, script(f"""
gates:
  {DEPS}: [{{status: 503, from: 8m, for: 20s}}]
""", example))
    assert longer.outcome == "rolled_back" and longer.failed_checks == 2
    assert "status 503, expected 200" in longer.reason


def test_no_data_holds_then_the_inconclusive_limit_rolls_back(example: Plan) -> None:
    res = simulate(example, script(f"""
gates:
  {ERRORS}:
    - {{value: 0.002, until_step: 10}}
    - no_data
""", example))
    assert res.outcome == "rolled_back" and res.last_step == 10
    started = next(e for e in res.events if e.kind == ev.ROLLBACK_STARTED)
    assert started.data["stuck"] is True
    assert f"{example.inconclusive_limit} consecutive checks without a verdict" in started.data["reason"]


def test_a_provider_error_counts_toward_the_error_limit(example: Plan) -> None:
    res = simulate(example, script(f"""
gates:
  {ERRORS}: [{{value: 0.001, until_step: 5}}, {{error: Prometheus answers 503}}]
""", example))
    assert res.outcome == "rolled_back" and res.last_step == 5
    reason = next(e for e in res.events if e.kind == ev.ROLLBACK_STARTED).data["reason"]
    assert f"{example.error_limit} consecutive checks could not be evaluated" in reason
    assert "provider error: scripted: Prometheus answers 503" in reason


def test_too_few_samples_never_pass() -> None:
    plan = small(normal_state=[{"name": "errors", "type": "prometheus", "url": "http://127.0.0.1:1",
                                "query": "x", "samples_query": "y", "min_samples": 100,
                                "max": 0.01}], inconclusive_limit=5)
    res = simulate(plan, script("gates: {errors: [{value: 0.001, samples: 20}]}", plan))
    assert res.outcome == "rolled_back" and "20 samples, 100 required" in res.reason
    # not scripted, the gate passes with its minimum samples
    assert simulate(plan, Script()).outcome == "promoted"


# --- on_failure: pause, operators, approvals, the time bound ---------------------------


def test_on_failure_pause_ends_paused_at_each_step() -> None:
    plan = small(on_failure="pause")
    runs = fail_each_step(plan, Script())
    assert [r.step for r in runs] == [10, 50, 100]
    for run in runs:
        assert run.expected == "paused" and run.as_planned
        assert run.result.outcome == "paused" and run.result.exit_code == 4
        assert run.result.final is not None and run.result.final.new_percent == run.step
        assert run.result.fault_to_end == plan.failure_limit * plan.interval


def test_operator_pause_resume_and_rollback_at_their_times(example: Plan) -> None:
    paused = simulate(example, script("""
operator:
  - {at: 7m, do: pause, reason: looking at a graph}
  - {at: 20m, do: resume}
""", example))
    assert paused.outcome == "promoted"
    assert at(paused, ev.PAUSED) == 7 * 60 and at(paused, ev.RESUMED) == 20 * 60
    # nothing moved while paused
    assert not [e for e in paused.events if e.kind == ev.WEIGHT_CONFIRMED
                and 7 * 60 < e.at - sim.SIM_START < 20 * 60]
    rolled = simulate(example, script("operator: [{at: 30m, do: rollback, reason: slow reports}]",
                                      example))
    assert rolled.outcome == "rolled_back"
    assert "operator requested rollback: slow reports" in rolled.reason
    # within a fraction of a second of simulated time: the engine polls the journal
    assert at(rolled, ev.ROLLED_BACK) - 30 * 60 < 1


def test_an_approval_after_a_delay_and_one_never_given(example: Plan) -> None:
    late = simulate(example, script("approvals: {50: 10m}", example))
    assert late.outcome == "promoted"
    assert at(late, ev.APPROVED) - at(late, ev.APPROVAL_WAITING) == 600
    never = simulate(example, script("approvals: {50: never}", example), max_time=3600)
    assert never.outcome == "held" and never.exit_code == 4 and never.stopped_at_max_time
    assert never.simulated == 3600 and never.last_step == 25
    assert "time bound (1h simulated)" in never.reason
    assert "waiting for approval of the 50% step" in never.reason


def test_the_time_bound_stops_a_run_that_cannot_end() -> None:
    plan = small(inconclusive_limit=10_000)
    res = simulate(plan, script("gates: {errors: [{value: 0.001, until_step: 10}, no_data]}",
                                plan))
    assert res.outcome == "held" and res.exit_code == 4 and res.stopped_at_max_time
    assert res.simulated == sim.default_max_time(plan, Script())
    assert res.max_time == 3 * minimum_duration(plan) + sim.MARGIN


# --- gates that compare new with old -------------------------------------------------------


def compare_plan(**kw: Any) -> Plan:
    return small(normal_state=[
        {"name": "errors vs old", "type": "compare", "min_requests": 50,
         "source": {"type": "haproxy_stats", "socket": "/tmp/none.sock", "backend": "web",
                    "old": "old", "new": "new"}},
        {"name": "errors", "type": "prometheus", "url": "http://127.0.0.1:1", "query": "x",
         "max": 0.05},
    ], **kw)


def test_a_compare_gate_judges_scripted_counts_with_its_sequential_test() -> None:
    plan = compare_plan()
    healthy = simulate(plan, Script())
    assert healthy.outcome == "promoted"
    res = simulate(plan, script("""
gates:
  errors vs old: [{new_error_rate: 0.001, until_step: 50}, {new_error_rate: 0.04}]
""", plan))
    assert res.outcome == "rolled_back" and res.last_step == 50
    started = next(e for e in res.events if e.kind == ev.ROLLBACK_STARTED)
    # its FAIL is final for the step: the rollback does not wait for failure_limit
    assert "a sequential test's FAIL, final for the step" in started.data["reason"]
    assert res.failed_checks == 1


def test_a_compare_gate_cannot_catch_a_fault_at_100_percent() -> None:
    """At 100% the old environment serves nothing: the comparison passes as not
    applicable, and a failure of that gate alone is not caught: the table says so."""
    plan = compare_plan()
    runs = fail_each_step(plan, Script(), gate="errors vs old")
    assert [r.as_planned for r in runs] == [True, True, False]
    assert runs[-1].result.outcome == "promoted"
    assert fail_each_step(plan, Script(), gate="errors")[-1].as_planned


def test_fail_each_step_picks_by_default_a_gate_that_can_catch_a_fault_at_100() -> None:
    """From the hostile review: the default was the plan's first gate even when it was a
    compare gate, so a plan the validator accepts failed the documented CI line (100%
    promoted, NO). The default is the first gate that can see a fault at every step."""
    plan = compare_plan()
    chosen = sim.fail_gate(plan)
    assert (chosen.name, chosen.chosen, chosen.skipped, chosen.comparing) == (
        "errors", True, ("errors vs old",), False)
    assert chosen.note() == ("the first gate that can see a fault at every step ('errors vs "
                             "old' compares new with old, not applicable at 100%); --fail-gate "
                             "NAME for another")
    runs = fail_each_step(plan, Script())
    assert all(r.as_planned for r in runs) and runs[-1].result.outcome == "rolled_back"
    # --fail-gate still forces one, and says why its 100% run cannot be caught
    forced = sim.fail_gate(plan, "errors vs old")
    assert forced.comparing and not forced.chosen
    assert forced.note() is not None and forced.note().startswith("it compares new with old")
    # a plan whose first gate can catch it: nothing to say
    assert sim.fail_gate(small()).note() is None


def test_with_only_gates_that_compare_the_first_is_failed_and_the_output_says_why() -> None:
    plan = compare_plan()  # the validator refuses this plan; a copy without the guard
    alone = plan.model_copy(update={"normal_state": plan.normal_state[:1]})
    chosen = sim.fail_gate(alone)
    assert (chosen.name, chosen.comparing) == ("errors vs old", True)
    assert chosen.note() == ("every gate of the plan compares new with old: at 100% old serves "
                             "nothing, the comparison is not applicable and passes, so the 100% "
                             "run cannot catch the fault (promoted, NO)")


def test_a_compare_latency_gate_fails_on_a_slower_new_environment() -> None:
    plan = small(steps=[50, 100], bake="5m", inconclusive_limit=30, normal_state=[
        {"name": "latency vs old", "type": "compare_latency", "min_intervals": 5,
         "source": {"type": "prometheus", "url": "http://127.0.0.1:1",
                    "old": "a", "new": "b"}},
        {"name": "errors", "type": "prometheus", "url": "http://127.0.0.1:1", "query": "x",
         "max": 0.05},
    ])
    assert simulate(plan, Script()).outcome == "promoted"
    res = simulate(plan, script("gates: {latency vs old: [{new_latency: 450ms, old_latency: 120ms}]}",
                                plan))
    assert res.outcome == "rolled_back" and res.last_step == 50
    assert "new is slower than old" in res.reason


# --- phases ------------------------------------------------------------------------------------


def test_phases_follow_each_other_and_gaps_pass() -> None:
    steps = {25.0: 1000.0}

    def step_time(p: float) -> float:
        return steps.get(p, sim.INF)

    a = Phase("value", value=1, end=Boundary(at=100))
    b = Phase("value", value=2, start=Boundary(at=200), length=50)
    c = Phase("fail", start=Boundary(step=25))
    d = Phase("value", value=3, start=Boundary(step=50))
    phases = [a, b, c, d]
    assert sim._phase_at(phases, 0, step_time) is a
    assert sim._phase_at(phases, 150, step_time) is None     # a gap: the gate passes
    assert sim._phase_at(phases, 200, step_time) is b
    assert sim._phase_at(phases, 260, step_time) is None
    assert sim._phase_at(phases, 999, step_time) is None      # 25% not confirmed yet
    assert sim._phase_at(phases, 1000, step_time) is c
    assert sim._phase_at(phases, 10**6, step_time) is c      # 50% never confirmed
    steps[50.0] = 2000.0
    assert sim._phase_at(phases, 2000, step_time) is d
    # a phase without an end lasts until the next one's start
    e, f = Phase("pass"), Phase("fail", start=Boundary(at=60))
    assert sim._phase_at([e, f], 59, step_time) is e and sim._phase_at([e, f], 60, step_time) is f


# --- script errors: file:line:col, what, how to fix -----------------------------------------


def error_of(text: str, plan: Plan) -> PlanError:
    with pytest.raises(PlanError) as info:
        script(text, plan)
    return info.value


def test_an_unknown_gate_name_lists_the_plans_gates_with_a_guess(example: Plan) -> None:
    e = error_of("gates:\n  new environment failed requests: [fail]\n", example)
    assert str(e).startswith("script.yaml:2:3: the plan has no gate named "
                             "'new environment failed requests' — did you mean "
                             f"'{ERRORS}'?")
    assert e.hint is not None and DEPS in e.hint and ALERTS in e.hint


def test_a_measure_the_gate_type_does_not_take(example: Plan) -> None:
    e = error_of(f"gates:\n  {DEPS}:\n    - {{value: 3}}\n", example)
    assert e.line == 3 and e.column == 8
    assert "'value' does not apply" in e.reason and "type http" in e.reason
    assert e.hint is not None and "status" in e.hint


def test_every_problem_at_once_each_with_its_place(example: Plan) -> None:
    e = error_of(f"""\
gates:
  {DEPS}:
    - passs
  {ALERTS}:
    - {{fail: true, from_step: 30}}
  {ERRORS}:
    - {{value: 0.01, untill: 5m}}
approvals: {{25: 5m}}
operatr: []
""", example)
    text = str(e)
    assert text.startswith("script.yaml: 5 problems in the script:")
    assert "script.yaml:3:7: 'passs' is not a phase — did you mean 'pass'?" in text
    assert "script.yaml:5:31: the number 30 is not a step of the plan" in text
    assert "hint: the plan's steps: 1, 2, 5, 10, 25, 50, 75, 100" in text
    assert "script.yaml:7:21: unknown key 'untill' — did you mean 'until'?" in text
    assert "script.yaml:8:13: 25 is not a step that waits for approval" in text
    assert "script.yaml:9:1: unknown field 'operatr' — did you mean 'operator'?" in text


def test_phases_that_could_never_hold(example: Plan) -> None:
    e = error_of(f"gates:\n  {ERRORS}:\n    - {{value: 0.002}}\n    - {{value: 0.03, until: 5m}}\n",
                 example)
    assert (e.line, e.column) == (4, 7) and "can never start" in e.reason and "line 3" in e.reason
    e = error_of(f"gates:\n  {ERRORS}:\n    - {{value: 0.002, until: 10m}}\n"
                 f"    - {{value: 0.03, from: 5m}}\n", example)
    assert e.line == 4 and ("from T+0:05:00 starts inside the phase before (line 3), which "
                            "lasts until T+0:10:00") in e.reason
    e = error_of(f"gates:\n  {ERRORS}: [{{fail: true, from: 10m, until: 5m}}]\n", example)
    assert "is not after from" in e.reason


def test_a_phase_cannot_start_inside_the_for_of_the_phase_before(example: Plan) -> None:
    """From the hostile review: the second phase's from: 12m was silently moved to 30m
    (after the first phase's for: 30m), so the header's "then 0.03 from T+0:12:00" never
    came and the run was promoted. Phases are sequential: an error at that from:."""
    e = error_of(f"gates:\n  {ERRORS}:\n    - {{value: 0.005, from: 0s, for: 30m}}\n"
                 f"    - {{value: 0.03, from: 12m}}\n", example)
    assert (e.line, e.column) == (4, 27)
    assert e.reason == ("from T+0:12:00 starts inside the phase before (line 3), which lasts "
                        "until T+0:30:00 (for 30m): phases follow each other, one at a time")
    assert e.hint == "shorten the phase before (for: 12m, or until: 12m), or start this one " \
        "when it ends (from: 30m)"
    # the ends of phases without a start add up: 10m + 10m, then from 15m is inside
    e = error_of(f"gates:\n  {ERRORS}:\n    - {{value: 0.005, for: 10m}}\n"
                 f"    - {{value: 0.002, for: 10m}}\n    - {{value: 0.03, from: 15m}}\n", example)
    assert e.line == 5 and "which lasts until T+0:20:00 (from T+0:10:00 for 10m)" in e.reason


def test_a_phase_may_start_the_moment_the_one_before_ends(example: Plan) -> None:
    for first in ("{value: 0.005, until: 12m}", "{value: 0.005, from: 0s, for: 12m}"):
        s = script(f"gates:\n  {ERRORS}:\n    - {first}\n    - {{value: 0.03, from: 12m}}\n",
                   example)
        res = simulate(example, s)
        assert res.outcome == "rolled_back"
        assert at(res, ev.CHECK, verdict="fail") == 12 * 60  # the first check at or after 12m


def test_a_step_start_ends_the_phase_before_as_its_line_says(example: Plan) -> None:
    """A step and a time are ordered only as the run goes: from_step: 10 after a for: 30m
    starts when 10% is confirmed (T+15:15), not when the for: ends."""
    s = script(f"gates:\n  {ERRORS}:\n    - {{value: 0.005, for: 30m}}\n"
               f"    - {{value: 0.03, from_step: 10}}\n", example)
    res = simulate(example, s)
    assert res.outcome == "rolled_back" and res.last_step == 10
    assert at(res, ev.CHECK, verdict="fail") == at(res, ev.WEIGHT_CONFIRMED, percent=10) + 15


def test_which_phase_holds_when() -> None:
    def step_time(pct: float) -> float:
        return {25: 600.0}.get(pct, sim.INF)

    a = Phase("value", value=1, length=1800)
    b = Phase("value", value=2, start=Boundary(step=25))
    assert [sim._phase_at([a, b], t, step_time) for t in (0, 599, 600, 5000)] == [a, a, b, b]
    c = Phase("value", value=3, end=Boundary(at=60))
    d = Phase("value", value=4, start=Boundary(at=120), length=60)
    assert [sim._phase_at([c, d], t, step_time) for t in (0, 60, 119, 120, 179, 180)] == [
        c, None, None, d, d, None]


def test_yaml_errors_and_missing_files_name_the_place(example: Plan, tmp_path: Path) -> None:
    e = error_of("gates: [a, b\n", example)
    assert e.location == "script.yaml:2:1" and "invalid YAML" in e.reason
    with pytest.raises(PlanError, match="script file not found"):
        sim.load_script(tmp_path / "missing.yaml", example)
    assert script("", example).gates == {}  # an empty script: every gate passes


def test_an_unknown_fail_gate_is_bad_input_with_the_gates(example: Plan) -> None:
    with pytest.raises(BadInput, match="did you mean 'dependencies reachable"):
        fail_each_step(example, Script(), gate="dependencies")


# --- the example scripts end as their comments say ------------------------------------------


@pytest.mark.parametrize(("name", "outcome"), [
    ("healthy", "promoted"),
    ("fail-at-25", "rolled_back"),
    ("dependency-blip", "promoted"),
    ("no-data", "rolled_back"),
    ("operator-rollback", "rolled_back"),
])
def test_the_example_scripts(example: Plan, name: str, outcome: str) -> None:
    s = sim.load_script(ROOT / "examples" / "simulate" / f"{name}.yaml", example)
    assert simulate(example, s).outcome == outcome


def test_every_example_script_is_tested() -> None:
    names = {p.stem for p in (ROOT / "examples" / "simulate").glob("*.yaml")}
    assert names == {"healthy", "fail-at-25", "dependency-blip", "no-data", "operator-rollback",
                     "cutover-fail-at-25"}


def test_the_cutover_script_rolls_back_production_at_25() -> None:
    plan = load_plan(ROOT / "examples" / "cutover.yaml", environment="production").plan
    res = simulate(plan, sim.load_script(ROOT / "examples/simulate/cutover-fail-at-25.yaml", plan))
    assert res.outcome == "rolled_back" and res.last_step == 25


def test_steps_after_the_scripts_own_fault_are_not_reached_yet_as_planned(example: Plan) -> None:
    """A script that breaks the run at 25% by itself: the later steps' faults never come,
    and those runs still end as on_failure says (rolled back, before the step)."""
    script = sim.load_script(ROOT / "examples/simulate/fail-at-25.yaml", example)
    runs = fail_each_step(example, script)
    later = [r for r in runs if r.step > 25]
    assert later and all(r.result.fault_at is None and r.as_planned for r in later)
    assert all(r.result.outcome == "rolled_back" for r in runs)


def test_timeline_folds_repeats_and_says_the_bake_restarts(example: Plan) -> None:
    res = simulate(example, sim.load_script(ROOT / "examples/simulate/fail-at-25.yaml", example))
    from shiftover.views import describe_event

    lines = sim.timeline(res.events, describe_event)
    texts = [f"{sim.offset(t)} {text}" for t, _, text in lines]
    assert texts[0] == "T+0:00:00 run started (simulated: in-memory router, scripted gates)"
    assert "T+0:20:15 weight confirmed 25% (router verified)" in texts
    fail = next(t for t in texts if "check fail" in t)
    assert fail.startswith("T+0:20:30 check fail: " + ERRORS)
    assert "the bake of 25% starts over (and 1 more like it, until T+0:20:45)" in fail
    assert not [t for t in texts if "check pass" in t]
    assert len(sim.timeline(res.events, describe_event, verbose=True)) == len(res.events)


def test_no_real_sleep_every_wait_is_on_the_simulated_clock(example: Plan,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Hours of bakes, backoffs and a rollback without one real sleep: every wait of
    the engine goes through the clock (gate threads answer at once)."""
    import time

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a real time.sleep({seconds}) in a simulation")

    monkeypatch.setattr(time, "sleep", no_sleep)
    res = simulate(example, script(f"gates:\n  {ERRORS}: [{{fail: true, from_step: 100}}]\n",
                                   example))
    assert res.outcome == "rolled_back" and res.last_step == 100
    assert res.simulated > 35 * 60


# --- simulated time costs little wall time, whatever the bake --------------------------------


def _wait(clock: sim.SimulationClock, deadline: float, slice_: float) -> None:
    """The runner's wait between checks (engine/run.py), with ``slice_`` as its slice."""
    from shiftover.engine.run import MIN_SLEEP

    while True:
        clock.sleep(min(slice_, max(deadline - clock.now(), MIN_SLEEP)))
        if clock.now() >= deadline:
            return


def test_the_clock_takes_a_whole_wait_in_the_engines_slices_with_the_same_floats() -> None:
    """From the hostile review: 1.2 s of wall time per simulated hour, the runner
    waking every 0.2 s of simulated time. Given the whole wait, the clock adds the same
    0.2 s slices in the same order (the same float at the end) in two calls, and stops
    after the slice in which a scheduled action fires, as the runner would see it."""
    for length in (15.0, 60.0, 3600.0, 86400.0, 7.3):
        sliced, whole = sim.SimulationClock(), sim.SimulationClock()
        deadline = sim.SIM_START + length
        _wait(sliced, deadline, 0.2)
        _wait(whole, deadline, math.inf)
        assert whole.now() == sliced.now()  # the very float, not nearly
        assert sliced.sleeps >= length / 0.2 and whole.sleeps <= 2
    sliced, whole = sim.SimulationClock(), sim.SimulationClock()
    for clock in (sliced, whole):
        seen: list[float] = []
        clock.at(sim.SIM_START + 100.05, seen.append)
        if clock is whole:
            clock.sleep(3600.0)
        while not seen:
            clock.sleep(0.2)
        assert seen == [sim.SIM_START + 100.05]
    assert whole.now() == sliced.now() and whole.sleeps == 1


def test_a_week_long_plan_takes_a_few_hundred_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """7 steps baked a day each: 3 million slices of 0.2 s if taken one by one."""
    calls = []
    sleep = sim.SimulationClock.sleep

    def counted(self: sim.SimulationClock, seconds: float) -> None:
        calls.append(seconds)
        sleep(self, seconds)

    monkeypatch.setattr(sim.SimulationClock, "sleep", counted)
    plan = small(steps=[1, 5, 10, 25, 50, 75, 100], bake="1d", interval="1h")
    res = simulate(plan, Script())
    assert res.outcome == "promoted" and res.simulated >= 7 * 86400
    assert len(calls) < 1000


def test_the_plans_timeline_matches_the_engine_when_bake_is_not_a_whole_number_of_checks() -> None:
    """A bake completes at the first check at or after it: 100 s checked every 30 s is
    120 s per step, in the engine (simulated) and in the timeline dry runs and runbooks
    print (engine.build.plan_timeline)."""
    from shiftover.engine.build import plan_timeline

    plan = Plan.model_validate(plan_dict(steps=[10, 50, 100], bake="100s", interval="30s"))
    res = simulate(plan, sim.Script())
    confirmed = [e.at for e in res.events if e.kind == ev.WEIGHT_CONFIRMED]
    timeline = plan_timeline(plan)
    assert [t.bake for t in timeline] == [120.0] * 3
    assert [b - a for a, b in itertools.pairwise(confirmed)] == [120.0, 120.0]
    assert minimum_duration(plan) == 360.0
