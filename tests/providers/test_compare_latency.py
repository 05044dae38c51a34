"""compare_latency gates: the step-tracking provider and its judge, on a scripted source.

The statistics are tests/analysis/test_latency.py's; the Prometheus source's reading
of queries is tests/providers/test_prometheus_latency.py's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from compare_plans import head

from shiftover.analysis.judge import make_judge
from shiftover.errors import NoData, PlanError, ProviderError
from shiftover.plan import load_plan
from shiftover.providers.compare_latency import CompareLatencyGate, CompareLatencyProvider
from shiftover.types import Verdict, Weights

SOURCE = {"type": "prometheus", "url": "http://127.0.0.1:9090",
          "old": 'histogram_quantile(0.95, sum by (le) (rate(x_bucket{env="old"}[15s])))',
          "new": 'histogram_quantile(0.95, sum by (le) (rate(x_bucket{env="new"}[15s])))'}


def spec(**kw: Any) -> CompareLatencyGate:
    return CompareLatencyGate(type="compare_latency", name="p95 vs old", source=SOURCE, **kw)


class Figures:
    def __init__(self) -> None:
        self.value: tuple[float | None, float | None] = (0.2, 0.2)
        self.fail: Exception | None = None

    def describe(self) -> str:
        return "scripted latency"

    def latency(self, *, now: float) -> tuple[float | None, float | None]:
        if self.fail is not None:
            raise self.fail
        return self.value


def test_a_regression_fails_finally_and_a_new_step_starts_over() -> None:
    src, judge = Figures(), make_judge(spec(min_intervals=5))
    p = CompareLatencyProvider(src)
    verdicts = []
    for i in range(5):
        src.value = (0.2 + i * 0.001, 0.5 + i * 0.001)
        verdicts.append(judge(p.measure(now=float(i), split=Weights(10)), now=float(i)))
    assert [v.verdict for v in verdicts[:4]] == [Verdict.INCONCLUSIVE] * 4
    last = verdicts[-1]
    assert last.verdict is Verdict.FAIL and last.evidence is not None
    assert last.evidence["final"] is True and last.evidence["effect"] > 2
    json.dumps(last.to_dict(), allow_nan=False)
    # the next step: a fresh test, nothing carried over
    r = judge(p.measure(now=10.0, split=Weights(25)), now=10.0)
    assert r.verdict is Verdict.INCONCLUSIVE and r.evidence is not None
    assert r.evidence["intervals_new"] == 1


def test_an_slo_breach_is_not_final() -> None:
    src, judge = Figures(), make_judge(spec(slo=0.3, min_intervals=5))
    p = CompareLatencyProvider(src)
    src.value = (0.2, 0.4)
    results = [judge(p.measure(now=float(i), split=Weights(10)), now=float(i)) for i in range(2)]
    assert results[-1].verdict is Verdict.FAIL and "SLO" in results[-1].reason
    assert results[-1].evidence is not None and results[-1].evidence["final"] is False


def test_at_100_only_the_slo_judges() -> None:
    src = Figures()
    p = CompareLatencyProvider(src)
    judge = make_judge(spec(slo=0.3))
    src.value = (None, 0.25)
    r = judge(p.measure(now=1.0, split=Weights(100)), now=1.0)
    assert r.verdict is Verdict.PASS and r.reason.startswith("not applicable")
    src.value = (None, 0.9)
    judge(p.measure(now=2.0, split=Weights(100)), now=2.0)
    r = judge(p.measure(now=3.0, split=Weights(100)), now=3.0)
    assert r.verdict is Verdict.FAIL and "SLO" in r.reason


def test_no_split_zero_and_errors() -> None:
    src = Figures()
    p = CompareLatencyProvider(src)
    judge = make_judge(spec())
    with pytest.raises(NoData):
        p.measure(now=1.0, split=None)
    with pytest.raises(NoData):
        p.measure(now=1.0, split=Weights(0))
    assert judge(NoData("x"), now=1.0).verdict is Verdict.INCONCLUSIVE
    r = judge(ProviderError("refused"), now=1.0)
    assert r.verdict is Verdict.INCONCLUSIVE and r.error
    src.value = (0.2, -1.0)  # a source that gives garbage: an error, the test unchanged
    r = judge(p.measure(now=2.0, split=Weights(10)), now=2.0)
    assert r.verdict is Verdict.INCONCLUSIVE and r.error


def test_plan_rules(tmp_path: Any) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        head() +
        "  - name: p95 vs old\n"
        "    type: compare_latency\n"
        "    source: {type: prometheus, url: 'http://127.0.0.1:9090', old: a, new: b}\n"
        "    effect_size: 0.9\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "effect_size" in str(info.value)
    path.write_text(path.read_text().replace("    effect_size: 0.9\n", "    slo: 500ms\n"))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "absolute threshold" in str(info.value)  # an SLO alone is not the required guard


def test_at_100_no_figure_from_new_is_no_data_not_a_pass() -> None:
    src = Figures()
    p = CompareLatencyProvider(src)
    judge = make_judge(spec(slo=0.5))
    src.value = (0.2, None)  # old's range still has figures; new has none (dead?)
    r = judge(p.measure(now=1.0, split=Weights(100)), now=1.0)
    assert r.verdict is Verdict.INCONCLUSIVE and "no latency figure from new" in r.reason


def test_a_gate_that_needs_more_checks_than_inconclusive_limit_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        head() +
        "  - {name: alerts, type: prometheus_alerts, url: 'http://127.0.0.1:1', "
        "labels: {service: web}}\n"
        "  - name: p95 vs old\n"
        "    type: compare_latency\n"
        "    source: {type: prometheus, url: 'http://127.0.0.1:9090', old: a, new: b}\n"
        "    min_intervals: 3\n"
        "    alpha: 0.00000001\n"
        "inconclusive_limit: 12\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    text = str(info.value)  # 3 a side cannot fail at alpha 1e-8: 16 can (1 / C(32, 16))
    assert "plan.yaml:10:20" in text and "needs 16 checks" in text
    assert "inconclusive_limit: 26" in text
    path.write_text(path.read_text().replace("inconclusive_limit: 12", "inconclusive_limit: 26"))
    assert load_plan(path).plan.inconclusive_limit == 26


def test_an_slo_without_a_unit_that_reads_as_minutes_is_refused(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"write it with its unit, e\.g\. slo: 500ms"):
        spec(slo=500)
    assert spec(slo="500ms").slo == 0.5


def test_the_minimum_duration_counts_the_checks_a_latency_gate_needs(tmp_path: Any) -> None:
    from shiftover.engine.build import minimum_duration

    path = tmp_path / "plan.yaml"
    path.write_text(
        head(steps="[1, 10, 100]", timing="bake: 5m\ninterval: 15s\n") +
        "  - {name: alerts, type: prometheus_alerts, url: 'http://127.0.0.1:1', "
        "labels: {service: web}}\n"
        "  - name: p95 vs old\n"
        "    type: compare_latency\n"
        "    source: {type: prometheus, url: 'http://127.0.0.1:9090', old: a, new: b}\n"
        "    min_intervals: 3\n")
    # 3 a side cannot fail at alpha 0.01 (1/20 > 0.005): 5 can (1/252), at 1% and 10%
    assert minimum_duration(load_plan(path).plan) == 3 * 300 + 2 * 5 * 15
