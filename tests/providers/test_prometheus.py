"""PrometheusProvider and PrometheusAlertsProvider against a real Prometheus 2.42.

Each test uses metric names of its own on the shared target so tests do not
depend on each other's counters. Polling is bounded (scrape and rule evaluation
run every second); nothing asserts on timing.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest

from shiftover.analysis.judge import judge
from shiftover.demo.prometheus import (
    AlertmanagerProcess,
    MetricsTarget,
    PrometheusProcess,
    find_binary,
    rule_files_text,
)
from shiftover.errors import BadInput, NoData, ProviderError
from shiftover.providers import build_provider
from shiftover.providers.prometheus import (
    PrometheusAlertsGate,
    PrometheusAlertsProvider,
    PrometheusGate,
    PrometheusProvider,
)
from shiftover.types import Measurement, Verdict


def gate(url: str, query: str, **extra: Any) -> PrometheusGate:
    extra.setdefault("max", 1.0)
    return PrometheusGate(type="prometheus", name="g", url=url, query=query, **extra)


def provider(url: str, query: str, **extra: Any) -> PrometheusProvider:
    return PrometheusProvider.from_spec(gate(url, query, **extra))


def alerts(url: str, labels: dict[str, str]) -> PrometheusAlertsProvider:
    spec = PrometheusAlertsGate(type="prometheus_alerts", name="a", url=url, labels=labels)
    return PrometheusAlertsProvider.from_spec(spec)


# --- instant queries -------------------------------------------------------------


def test_scalar_and_single_series_values(prometheus_process: PrometheusProcess) -> None:
    now = time.time()
    m = provider(prometheus_process.url, "vector(0.5)").measure(now=now)
    evaluated_at = m.details["evaluated_at"]
    assert m == Measurement(
        value=0.5,
        at=now,
        samples=None,
        details={
            "query": "vector(0.5)",
            "labels": {},
            "result_type": "vector",
            "evaluated_at": evaluated_at,
            "clock_skew_seconds": round(now - evaluated_at, 3),
        },
    )
    m = provider(prometheus_process.url, "scalar(vector(0.25))").measure(now=now)
    assert m.value == 0.25
    assert m.details["result_type"] == "scalar"


# --- whose clock --------------------------------------------------------------------


def test_a_local_clock_behind_prometheus_does_not_judge_the_past(
    prometheus_process: PrometheusProcess, prometheus_target: MetricsTarget, prometheus_poll: Any
) -> None:
    """10 s of skew once made the gate evaluate the query 10 s ago, before the
    failure, and pass. Prometheus's own "now" sees the failure at once."""
    prometheus_target.set("skew_new_env_broken", 1)  # a fresh series: it did not exist 10 s ago
    spec = gate(prometheus_process.url, "max(skew_new_env_broken) or vector(0)", max=0.0)
    p = PrometheusProvider.from_spec(spec)
    # bounded below the 10 s of skew: judging the past would still see 0 when it ends
    m = prometheus_poll(lambda: p.measure(now=time.time() - 10), lambda m: m.value == 1, timeout=8)
    assert judge(spec, m, now=0.0).verdict is Verdict.FAIL
    assert m.details["clock_skew_seconds"] < -5  # our clock is behind, and it says so


@pytest.mark.parametrize("skew", [-3600.0, 3600.0])
def test_the_query_is_evaluated_at_prometheus_now_whatever_our_clock_says(
    prometheus_process: PrometheusProcess, skew: float
) -> None:
    before = time.time()
    # value and sample count are both the evaluation time: one instant, Prometheus's
    p = provider(prometheus_process.url, "vector(time())", samples_query="vector(time())")
    now = time.time() + skew
    m = p.measure(now=now)
    after = time.time()
    assert m.at == now  # the journal keeps the engine's clock
    assert before - 1 <= m.details["evaluated_at"] <= after + 1  # Prometheus's clock (same host)
    assert m.value == m.details["evaluated_at"]
    assert m.samples == round(m.details["evaluated_at"])
    assert m.details["clock_skew_seconds"] == round(now - m.details["evaluated_at"], 3)


def test_sub_second_timeout_is_accepted_by_prometheus(
    prometheus_process: PrometheusProcess,
) -> None:
    # Prometheus refuses "0.5s" as a duration; the provider must send 0.5
    assert (
        provider(prometheus_process.url, "vector(1)", timeout="500ms")
        .measure(now=time.time())
        .value
        == 1
    )


def test_ratio_from_scraped_counters(
    prometheus_process: PrometheusProcess, prometheus_target: MetricsTarget, prometheus_poll: Any
) -> None:
    prometheus_target.inc("ratio_requests_total", {"code": "200"}, 90)
    prometheus_target.inc("ratio_requests_total", {"code": "500"}, 10)
    p = provider(
        prometheus_process.url + "/",  # a trailing slash is fine
        'sum(ratio_requests_total{code="500"}) / sum(ratio_requests_total)',
        samples_query="sum(ratio_requests_total)",
    )
    m = prometheus_poll(lambda: p.measure(now=time.time()), lambda m: m.samples == 100)
    assert m.value == pytest.approx(0.1)
    assert m.details["samples_query"] == "sum(ratio_requests_total)"


def test_series_labels_are_reported(
    prometheus_process: PrometheusProcess, prometheus_target: MetricsTarget, prometheus_poll: Any
) -> None:
    prometheus_target.set("labelled_gauge", 3, {"env": "new"})
    p = provider(prometheus_process.url, 'labelled_gauge{env="new"}')
    m = prometheus_poll(lambda: p.measure(now=time.time()), lambda m: m.value == 3)
    assert m.details["labels"]["env"] == "new"
    assert m.details["labels"]["__name__"] == "labelled_gauge"


def test_empty_result_is_nodata(prometheus_process: PrometheusProcess) -> None:
    with pytest.raises(NoData, match="query returned no series"):
        provider(prometheus_process.url, "metric_that_does_not_exist").measure(now=time.time())


def test_nan_is_nodata(
    prometheus_process: PrometheusProcess, prometheus_target: MetricsTarget, prometheus_poll: Any
) -> None:
    # a ratio with no traffic: 0 errors / 0 requests
    prometheus_target.inc("idle_requests_total", {"code": "200"}, 0)
    prometheus_target.inc("idle_requests_total", {"code": "500"}, 0)
    p = provider(
        prometheus_process.url, 'sum(idle_requests_total{code="500"}) / sum(idle_requests_total)'
    )
    err = prometheus_poll(lambda: _raised(p), lambda e: isinstance(e, NoData) and "NaN" in str(e))
    assert "no traffic in the window?" in str(err)


def test_infinity_is_a_value(prometheus_process: PrometheusProcess) -> None:
    m = provider(prometheus_process.url, "vector(1) / 0").measure(now=time.time())
    assert m.value == math.inf


def test_several_series_is_an_error_asking_to_aggregate(
    prometheus_process: PrometheusProcess,
) -> None:
    p = provider(prometheus_process.url, 'label_replace(vector(1), "a", "x", "", "") or vector(2)')
    q = provider(prometheus_process.url, "up or vector(7)")
    for prov in (p, q):
        with pytest.raises(ProviderError) as info:
            prov.measure(now=time.time())
        assert not isinstance(info.value, NoData)
        assert "series" in str(info.value)
        assert "sum(...)" in str(info.value)


def test_bad_promql_quotes_prometheus(prometheus_process: PrometheusProcess) -> None:
    with pytest.raises(ProviderError) as info:
        provider(prometheus_process.url, "sum(rate(x[1m])").measure(now=time.time())
    text = str(info.value)
    assert "unclosed left parenthesis" in text  # Prometheus's own words
    assert "bad_data" in text
    assert "PromQL" in text  # how to fix


def test_range_vector_and_string_are_errors(prometheus_process: PrometheusProcess) -> None:
    with pytest.raises(ProviderError, match="range vector"):
        provider(prometheus_process.url, "up[1m]").measure(now=time.time())
    with pytest.raises(ProviderError, match="string"):
        provider(prometheus_process.url, '"abc"').measure(now=time.time())


def test_connection_refused(prometheus_refused_url: str) -> None:
    with pytest.raises(ProviderError) as info:
        provider(prometheus_refused_url, "vector(1)", timeout=2).measure(now=time.time())
    assert not isinstance(info.value, NoData)
    assert prometheus_refused_url in str(info.value)
    assert "check the gate's url" in str(info.value)


def test_credentials_never_appear_in_messages(prometheus_refused_url: str) -> None:
    url = prometheus_refused_url.replace("http://", "http://admin:s3cr3t-pw@")
    with pytest.raises(ProviderError) as info:
        provider(url, "vector(1)").measure(now=time.time())
    assert "s3cr3t-pw" not in str(info.value)
    assert "***@" in str(info.value)


def test_wrong_url_is_an_error(prometheus_process: PrometheusProcess) -> None:
    # the API path given twice: Prometheus answers 404 with a non-JSON body
    with pytest.raises(ProviderError, match="HTTP 404"):
        provider(prometheus_process.url + "/api/v1", "vector(1)").measure(now=time.time())


def test_samples_query_without_series_counts_zero(prometheus_process: PrometheusProcess) -> None:
    p = provider(prometheus_process.url, "vector(0)", samples_query="no_such_counter_total")
    m = p.measure(now=time.time())
    assert m.samples == 0
    assert "counted as 0" in m.details["samples_note"]


def test_samples_query_rounds_and_rejects_negative(prometheus_process: PrometheusProcess) -> None:
    m = provider(prometheus_process.url, "vector(0)", samples_query="vector(99.7)").measure(
        now=time.time()
    )
    assert m.samples == 100
    with pytest.raises(ProviderError, match="sample count"):
        provider(prometheus_process.url, "vector(0)", samples_query="vector(-1)").measure(
            now=time.time()
        )


def test_built_by_the_registry(prometheus_process: PrometheusProcess) -> None:
    p = build_provider(gate(prometheus_process.url, "vector(2)"))
    assert isinstance(p, PrometheusProvider)
    assert p.measure(now=123.0).at == 123.0


# --- alerts ----------------------------------------------------------------------


def _raised(p: PrometheusProvider) -> Exception | Measurement:
    try:
        return p.measure(now=time.time())
    except ProviderError as exc:
        return exc


@pytest.fixture
def accounting_broken(prometheus_target: MetricsTarget) -> Any:
    """Set accounting_broken=1 for one test, and back to 0 after it."""
    prometheus_target.set("accounting_broken", 1, {"service": "accounting"})
    try:
        yield
    finally:
        prometheus_target.set("accounting_broken", 0, {"service": "accounting"})


def test_alerts_none_firing_for_the_service(
    prometheus_process: PrometheusProcess, prometheus_poll: Any
) -> None:
    p = alerts(prometheus_process.url, {"service": "accounting"})
    m = prometheus_poll(
        lambda: p.measure(now=time.time()), lambda m: m.value == 0 and m.samples >= 1
    )
    assert m.details["source"] == "prometheus"
    assert m.details["firing"] == []


def test_alerts_firing_counted_with_label_match(
    prometheus_process: PrometheusProcess, accounting_broken: Any, prometheus_poll: Any
) -> None:
    p = alerts(prometheus_process.url, {"service": "accounting"})
    m = prometheus_poll(lambda: p.measure(now=time.time()), lambda m: m.value >= 1)
    assert m.value == 1  # AccountingSlow is pending (for: 1h), not firing
    assert m.details["pending"] == 1
    [alert] = m.details["firing"]
    assert alert["alertname"] == "AccountingBroken"
    assert alert["labels"]["severity"] == "page"
    assert alert["activeAt"]
    assert m.samples is not None and m.samples >= 3  # every alert seen, any label, any state
    # labels must all match: the billing alert fires but is not accounting's
    assert (
        alerts(prometheus_process.url, {"service": "accounting", "severity": "ticket"})
        .measure(now=time.time())
        .value
        == 0
    )
    assert (
        alerts(prometheus_process.url, {"service": "payments"}).measure(now=time.time()).value == 0
    )
    # the billing rule may fire an evaluation later than accounting's on a busy machine
    billing = alerts(prometheus_process.url, {"service": "billing"})
    assert prometheus_poll(lambda: billing.measure(now=time.time()), lambda m: m.value >= 1).value == 1
    # no labels: every firing alert
    assert alerts(prometheus_process.url, {}).measure(now=time.time()).value == 2


def test_alerts_from_alertmanager(
    prometheus_process: PrometheusProcess,
    alertmanager_process: AlertmanagerProcess,
    accounting_broken: Any,
    prometheus_poll: Any,
) -> None:
    p = alerts(alertmanager_process.url, {"service": "accounting"})
    m = prometheus_poll(lambda: p.measure(now=time.time()), lambda m: m.value >= 1)
    assert p.source == "alertmanager"
    assert m.details["source"] == "alertmanager"
    assert [a["alertname"] for a in m.details["firing"]] == ["AccountingBroken"]
    billing = alerts(alertmanager_process.url, {"service": "billing", "alertname": 'Billing"Down'})
    assert (
        billing.measure(now=time.time()).value == 0
    )  # quotes in a value are escaped, not an error


def test_alerts_unreachable(prometheus_refused_url: str) -> None:
    with pytest.raises(ProviderError, match="cannot reach"):
        alerts(prometheus_refused_url, {"service": "x"}).measure(now=time.time())


def test_alerts_url_that_is_neither(prometheus_process: PrometheusProcess) -> None:
    with pytest.raises(ProviderError, match="neither as Prometheus nor as Alertmanager"):
        alerts(prometheus_process.url + "/nothing", {}).measure(now=time.time())


# --- the managed processes -----------------------------------------------------------


def test_reload_replaces_rules(tmp_path: Any) -> None:
    find_binary("prometheus")
    with PrometheusProcess(tmp_path, rules=[{"alert": "First", "expr": "vector(1)"}]) as prom:
        prom.set_rules([{"alert": "Second", "expr": "vector(1)"}])
        prom.reload()
        groups = httpx.get(f"{prom.url}/api/v1/rules").json()["data"]["groups"]
        assert [r["name"] for g in groups for r in g["rules"]] == ["Second"]
        pid = prom.pid
    assert pid is not None and not prom.running()


def test_bad_rule_is_rejected_before_start(tmp_path: Any) -> None:
    with pytest.raises(BadInput, match="promtool rejected"):
        PrometheusProcess(tmp_path, rules=[{"alert": "Bad", "expr": "sum(("}]).start()


def test_missing_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(BadInput) as info:
        AlertmanagerProcess("/nonexistent-dir-is-not-created")
    assert "apt-get install -y prometheus-alertmanager" in str(info.value)


def test_rule_inputs() -> None:
    texts = rule_files_text(["groups: []\n", {"groups": []}, {"alert": "A", "expr": "vector(1)"}])
    assert len(texts) == 3
    assert "name: shiftover" in texts[2]
    with pytest.raises(BadInput):
        rule_files_text([{"expr": "vector(1)"}])


def test_messages_quote_a_multi_line_query_on_one_line() -> None:
    from shiftover.providers.prometheus import _shown

    query = "(\n    sum(rate(a[1m]))\n  + sum(rate(b[1m]))\n) / sum(rate(c[1m]))"
    assert _shown(query) == "'( sum(rate(a[1m])) + sum(rate(b[1m])) ) / sum(rate(c[1m]))'"
    long = " + ".join(f"sum(rate(metric_{i}[1m]))" for i in range(20))
    assert len(_shown(long, 120)) == 122 and _shown(long, 120).endswith("…'")
