"""compare gates: the step-tracking provider, its judge, and whole runs on doubles.

The statistics are tests/analysis/test_compare.py's; the sources' counting is the
CountSource contract's (tests/contracts/test_count_source_contract.py). Here: the
test restarts when the split changes, 0% / 100% / an unknown split are what they
should be, evidence reaches the journal, a sequential FAIL rolls back at once,
and a healthy new environment is promoted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from compare_plans import head

from shiftover.analysis.judge import make_judge
from shiftover.engine import events as ev
from shiftover.engine.run import Gate, Runner
from shiftover.errors import NoData, PlanError, ProviderError
from shiftover.plan import Plan, load_plan
from shiftover.providers.compare import CompareGate, CompareProvider
from shiftover.store import Store, open_store
from shiftover.testing import (
    FakeClock,
    InMemoryRouter,
    ScriptedProvider,
    SimulatedCounts,
    plan_dict,
)
from shiftover.types import EnvCounts, Measurement, Verdict, Weights

SOURCE = {"type": "haproxy_stats", "socket": "/tmp/none.sock", "backend": "web",
          "old": "old", "new": "new"}


def compare_spec(**kw: Any) -> CompareGate:
    return CompareGate(type="compare", name="errors vs old", source=SOURCE, **kw)


class Counts:
    """A source that returns what the test sets, and records the spans asked for."""

    def __init__(self) -> None:
        self.value = EnvCounts(0, 0, 0, 0)
        self.calls: list[tuple[float, float]] = []
        self.fail: Exception | None = None

    def describe(self) -> str:
        return "test counts"

    def counts(self, *, since: float, now: float) -> EnvCounts:
        self.calls.append((since, now))
        if self.fail is not None:
            raise self.fail
        return EnvCounts(0, 0, 0, 0) if since == now else self.value


def test_the_test_restarts_when_the_split_changes() -> None:
    src = Counts()
    p = CompareProvider(src)
    p.measure(now=10.0, split=Weights(5))
    src.value = EnvCounts(950, 1, 50, 0)
    m = p.measure(now=11.0, split=Weights(5))
    assert m.details["since"] == 10.0 and m.details["counts"]["new_requests"] == 50
    assert m.samples == 50 and m.details["step"] == "5"
    # a new step: a new test, counted from the check before it (the interval in which
    # the split changed is the step's first: a fault that starts with it is in it)
    m = p.measure(now=12.0, split=Weights(10))
    assert m.details["since"] == 11.0 and m.details["step"] == "10"
    assert src.calls[-1] == (11.0, 12.0)
    # a step whose first span could not be counted starts at the next call that can
    src.fail = ProviderError("refused", hint="h")
    with pytest.raises(ProviderError):
        p.measure(now=13.0, split=Weights(25))
    src.fail = None
    m = p.measure(now=14.0, split=Weights(25))
    assert m.details["since"] == 12.0  # the last check whose source answered
    # the first check of a run has no check before it: the step starts there
    fresh = CompareProvider(Counts())
    assert fresh.measure(now=20.0, split=Weights(25)).details["since"] == 20.0


def test_no_split_and_zero_are_no_data_and_100_is_not_applicable() -> None:
    p = CompareProvider(Counts())
    with pytest.raises(NoData, match="split is unknown"):
        p.measure(now=1.0, split=None)
    with pytest.raises(NoData, match="0%"):
        p.measure(now=1.0, split=Weights(0))
    m = p.measure(now=1.0, split=Weights(100))
    assert "not_applicable" in m.details
    r = make_judge(compare_spec())(m, now=1.0)
    assert r.verdict is Verdict.PASS and r.reason.startswith("not applicable")


def test_a_start_that_could_not_be_counted_is_marked_again() -> None:
    src = Counts()
    src.fail = ProviderError("down", hint="h")
    p = CompareProvider(src)
    with pytest.raises(ProviderError):
        p.measure(now=1.0, split=Weights(10))
    src.fail = None
    p.measure(now=2.0, split=Weights(10))
    assert src.calls[-1] == (2.0, 2.0)  # the start is now, not the failed 1.0


def test_counts_that_break_the_rules_are_a_provider_error() -> None:
    class Bad(Counts):
        def counts(self, *, since: float, now: float) -> EnvCounts:
            return EnvCounts(1, 2, 0, 0)  # raises ValueError: errors above requests

    p = CompareProvider(Bad())
    with pytest.raises(ProviderError, match="exceeds"):
        p.measure(now=1.0, split=Weights(10))


def _m(counts: EnvCounts, *, step: str = "10", since: float = 0.0) -> Measurement:
    return Measurement(None, 1.0, counts.new_requests,
                       {"step": step, "since": since, "counts": counts.as_dict()})


def test_the_judge_keeps_one_test_per_step_and_its_fail_is_final() -> None:
    judge = make_judge(compare_spec(min_requests=100))
    r = judge(_m(EnvCounts(900, 1, 100, 0)), now=1.0)
    assert r.verdict is Verdict.PASS and r.evidence is not None
    assert r.evidence["p_value"] == r.value and r.samples == 100
    assert r.evidence["final"] is False
    r = judge(_m(EnvCounts(1800, 2, 200, 30)), now=2.0)
    assert r.verdict is Verdict.FAIL and r.evidence is not None and r.evidence["final"] is True
    for key in ("old_requests", "new_errors", "ratio", "ratio_lower", "ratio_upper",
                "e_value", "p_value", "alpha"):
        assert key in r.evidence
    json.dumps(r.to_dict(), allow_nan=False)
    # counts that go down within a step: an error, the test as it was
    r = judge(_m(EnvCounts(1000, 2, 150, 30)), now=3.0)
    assert r.verdict is Verdict.INCONCLUSIVE and r.error
    # a new step: a fresh test
    r = judge(_m(EnvCounts(900, 1, 100, 0), step="25", since=5.0), now=6.0)
    assert r.verdict is Verdict.PASS


def test_the_judge_holds_on_no_data_and_errs_on_a_provider_error() -> None:
    judge = make_judge(compare_spec())
    r = judge(NoData("nothing"), now=1.0)
    assert r.verdict is Verdict.INCONCLUSIVE and not r.error
    r = judge(ProviderError("refused"), now=1.0)
    assert r.verdict is Verdict.INCONCLUSIVE and r.error
    r = judge(_m(EnvCounts(900, 1, 10, 0)), now=1.0)
    assert r.verdict is Verdict.INCONCLUSIVE and "min_requests" in r.reason


def test_a_plan_with_only_compare_gates_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        head() +
        "  - name: errors vs old\n"
        "    type: compare\n"
        "    source: {type: haproxy_stats, socket: /tmp/x.sock, backend: web, old: old, new: new}\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "plan.yaml:7:11" in str(info.value) and "absolute threshold" in str(info.value)


def test_a_source_with_one_server_twice_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        head() +
        "  - {name: probe, type: http, url: 'http://127.0.0.1:1/'}\n"
        "  - name: errors vs old\n"
        "    type: compare\n"
        "    source: {type: haproxy_stats, socket: /tmp/x.sock, backend: web, old: new, new: new}\n"
        "    alpha: 0.5\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    text = str(info.value)
    assert "old and new are both 'new'" in text and "alpha" in text


# --- whole runs on the doubles ------------------------------------------------------


@pytest.fixture
def store(tmp_path: Any) -> Store:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def _runner(store: Store, *, new_error_rate: float, seed: int = 1,
            failure_limit: int = 3) -> tuple[Runner, InMemoryRouter, SimulatedCounts]:
    p = Plan.model_validate(plan_dict(
        steps=[1, 10, 50, 100], bake="60s", interval="5s", failure_limit=failure_limit,
        normal_state=[
            {"name": "errors", "type": "prometheus", "url": "http://127.0.0.1:1",
             "query": "x", "max": 0.5},
            {"name": "errors vs old", "type": "compare", "source": SOURCE,
             "min_requests": 100},
        ]))
    router, clock = InMemoryRouter(), FakeClock()
    counts = SimulatedCounts(router, rate=200.0, old_error_rate=0.001,
                             new_error_rate=new_error_rate, seed=seed)
    gates = [Gate(p.normal_state[0], ScriptedProvider([0.0])),
             Gate(p.normal_state[1], CompareProvider(counts))]
    return Runner(p, router, gates, store, clock), router, counts


def _checks(store: Store) -> list[dict[str, Any]]:
    return [e.data for e in store.events(service="svc") if e.kind == ev.CHECK]


def test_a_healthy_new_environment_is_promoted_with_evidence_in_the_journal(store: Store) -> None:
    runner, _, _ = _runner(store, new_error_rate=0.001)
    out = runner.run(max_duration=3600)
    assert out.outcome == "promoted", out.reason
    compared = [r for c in _checks(store) for r in c["results"] if r["gate"] == "errors vs old"]
    passed = [r for r in compared if r["verdict"] == "pass" and "evidence" in r]
    assert passed and all(r["evidence"]["new_requests"] >= 100 for r in passed
                          if not r["evidence"].get("not_applicable"))
    assert any((r.get("evidence") or {}).get("not_applicable") for r in compared)  # at 100%


def test_a_worse_new_environment_is_rolled_back_on_the_first_sequential_fail(
        store: Store) -> None:
    runner, router, _ = _runner(store, new_error_rate=0.2, failure_limit=3)
    out = runner.run(max_duration=3600)
    assert out.outcome == "rolled_back" and router.read() == Weights(0)
    assert "sequential test" in out.reason and "always-valid p" in out.reason
    checks = _checks(store)
    failed = [c for c in checks if c["verdict"] == "fail"]
    assert len(failed) == 1 and failed[0]["consecutive_failures"] == 1  # not failure_limit 3
    started = [e.data for e in store.events(service="svc") if e.kind == ev.ROLLBACK_STARTED]
    assert started and started[0]["gates"][0]["evidence"]["final"] is True


def test_an_unknown_or_missing_source_type_names_the_sources(tmp_path: Any) -> None:
    path = tmp_path / "plan.yaml"
    start = (head() +
             "  - {name: probe, type: http, url: 'http://127.0.0.1:1/'}\n"
             "  - name: errors vs old\n"
             "    type: compare\n")
    path.write_text(start + "    source: {type: cludwatch, region: eu-west-1}\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    text = str(info.value)
    assert "plan.yaml:9:20: unknown source type 'cludwatch'" in text
    assert "known types: cloudwatch, datadog, haproxy_stats, prometheus" in text
    assert "did you mean 'cloudwatch'?" in text
    path.write_text(start + "    source: {region: eu-west-1}\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "add type: one of cloudwatch, datadog, haproxy_stats, prometheus" in str(info.value)


def test_a_source_that_cannot_work_is_an_error_at_0_and_100_too() -> None:
    src = Counts()
    src.fail = ProviderError("no server 'neww' in backend 'web'", hint="servers in web: new")
    p = CompareProvider(src)
    for split in (Weights(0), Weights(100), None):
        with pytest.raises(ProviderError) as info:
            p.measure(now=1.0, split=split)
        assert not isinstance(info.value, NoData)


def test_an_unknown_split_mid_step_keeps_counting_the_step() -> None:
    src = Counts()
    p = CompareProvider(src)
    p.measure(now=10.0, split=Weights(50))
    src.value = EnvCounts(100, 0, 100, 50)
    m = p.measure(now=11.0, split=None)  # the router could not be read
    assert m.details["since"] == 10.0 and m.details["split_unknown"] is True
    assert m.details["step"] == "50" and src.calls[-1] == (10.0, 11.0)


def test_a_new_server_taken_out_by_haproxy_fails_through_the_engine_path(tmp_path: Any) -> None:
    """With new in DRAIN or MAINT, HAProxy's router cannot be read (the engine passes no
    split), and the counts charge new's share of the backend's traffic as failures:
    the gate FAILs instead of going quiet."""
    import httpx

    from shiftover.demo.haproxy import find_haproxy, stub_stack
    from shiftover.errors import RouterError
    from shiftover.routers.haproxy import HAProxyRouter

    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    with stub_stack(tmp_path, new_weight=256) as st:
        sock = str(st.haproxy.socket_path)
        router = HAProxyRouter(sock, "web", "old", "new")
        spec = CompareGate(type="compare", name="cmp", min_requests=50, source={
            "type": "haproxy_stats", "socket": sock, "backend": "web", "old": "old",
            "new": "new"})
        gate = Gate(spec, CompareProvider.from_spec(spec))
        clock = [1000.0]

        def check() -> Any:
            try:
                split: Weights | None = router.read()
            except RouterError:
                split = None
            clock[0] += 1.0
            try:
                out: Any = gate.measure(now=clock[0], split=split)
            except ProviderError as exc:
                out = exc
            return gate.judge(out, now=clock[0])

        def traffic(n: int) -> None:
            with httpx.Client(timeout=5.0) as client:
                for _ in range(n):
                    client.get(st.haproxy.frontend_url)

        check()
        traffic(200)
        assert check().verdict is Verdict.PASS
        for state in ("drain", "maint"):
            router.runtime.command(f"set server web/new state {state}")
            traffic(100)
            r = check()
            assert r.verdict is Verdict.FAIL, (state, r.reason)
            assert r.evidence is not None and r.evidence["final"] is True


def test_a_health_probe_is_not_the_guard_a_compare_gate_needs(tmp_path: Any) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        head() +
        "  - {name: probe, type: http, url: 'http://127.0.0.1:1/'}\n"
        "  - name: errors vs old\n"
        "    type: compare\n"
        "    source: {type: haproxy_stats, socket: /tmp/x.sock, backend: web, old: old, new: new}\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "plan.yaml:8:11" in str(info.value) and "alerts gate" in str(info.value)
    path.write_text(path.read_text().replace(
        "  - {name: probe, type: http, url: 'http://127.0.0.1:1/'}\n",
        "  - {name: alerts, type: prometheus_alerts, url: 'http://127.0.0.1:1', "
        "labels: {service: web}}\n"))
    assert load_plan(path).plan.normal_state[1].type == "compare"


def test_a_missing_field_of_a_source_says_what_it_takes(tmp_path: Any) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        head() +
        "  - {name: alerts, type: prometheus_alerts, url: 'http://127.0.0.1:1', "
        "labels: {service: web}}\n"
        "  - name: errors vs old\n"
        "    type: compare\n"
        "    source:\n"
        "      type: prometheus\n"
        "      url: http://127.0.0.1:9090\n"
        "      old: {requests: 'r{env=\"old\"}', errors: 'r{env=\"old\",code=\"500\"}', x: 1}\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    text = str(info.value)
    assert "add new: {requests: ..., errors: ...}" in text
    path.write_text(path.read_text().replace(", x: 1}", "}\n      new: x"))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "hint: write new: {requests: ..., errors: ...}" in str(info.value)
    assert "unknown field 'x'" in text and "fields allowed here: errors, requests" in text


def test_a_source_with_old_and_new_swapped_against_the_router_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        head(old="ec2", new="eks") +
        "  - {name: alerts, type: prometheus_alerts, url: 'http://127.0.0.1:1', "
        "labels: {service: web}}\n"
        "  - name: errors vs old\n"
        "    type: compare\n"
        "    source: {type: haproxy_stats, socket: /tmp/x.sock, backend: web, old: eks, new: ec2}\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert "swapped" in str(info.value) and "write old: ec2, new: eks" in str(info.value)
