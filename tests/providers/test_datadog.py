"""The Datadog gates against a local double of Datadog's API (real HTTP on 127.0.0.1,
through the official datadog-api-client).

The keys are distinctive strings; every test that sees an error, a measurement or a
verdict checks that neither key shows in it (its text, hint, repr, details, the log).
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from shiftover.analysis.judge import judge
from shiftover.cli import app
from shiftover.demo.datadog import MONITOR_STATES, DatadogDouble, Series
from shiftover.demo.process import free_port
from shiftover.errors import NoData, ProviderError
from shiftover.plan import PlanError, parse_plan_text
from shiftover.providers import build_provider, gate_specs
from shiftover.providers.datadog import (
    COUNT_MAX_MINUTES,
    COUNT_SETTLE_MINUTES,
    DatadogCounts,
    DatadogCountsSpec,
    DatadogGate,
    DatadogMonitorsGate,
    DatadogMonitorsProvider,
    DatadogProvider,
    api_base_url,
    rolled_up,
)
from shiftover.testing import plan_yaml
from shiftover.types import EnvCounts, GateResult, Measurement, Verdict

API_KEY = "ddapi-7f3c9e1d5a2b4c6d8e0f1a2b3c4d5e6f"
APP_KEY = "ddapp-b42e8a90c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6"
NOW = 1_800_000_000.0
ERRORS = "sum:trace.rack.request.errors{service:web,env:prod}.as_count()"
HITS = "sum:trace.rack.request.hits{service:web,env:prod}.as_count()"
RATIO = f"{ERRORS} / {HITS}"
TAGS = ["service:accounting", "env:production"]


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
def dd(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[DatadogDouble]:
    """A double with distinctive keys, the environment pointing at it, and every log
    record of the client and urllib3 captured (checked for keys at the end)."""
    for name in ("DD_SITE", "DATADOG_HOST", "DD_APPLICATION_KEY"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.DEBUG)
    with DatadogDouble(api_key=API_KEY, app_key=APP_KEY) as double:
        for name, value in double.env().items():
            monkeypatch.setenv(name, value)
        yield double
    no_keys(caplog.text)


def no_keys(*things: Any) -> None:
    """Neither key in the text, repr or JSON of anything given."""
    for thing in things:
        forms = [str(thing), repr(thing)]
        if isinstance(thing, ProviderError):
            forms.append(str(thing.hint))
        if isinstance(thing, Measurement):
            forms.append(json.dumps(thing.details, default=str))
        if isinstance(thing, GateResult):
            forms.append(json.dumps(thing.to_dict(), default=str))
        for text in forms:
            assert API_KEY not in text and APP_KEY not in text, text
            # nor a recognisable part of one
            assert API_KEY[6:22] not in text and APP_KEY[6:22] not in text, text


def metric_gate(**kw: Any) -> DatadogGate:
    fields: dict[str, Any] = {"type": "datadog", "name": "web-errors", "query": RATIO, "max": 0.05}
    fields.update(kw)
    return DatadogGate(**fields)


def monitor_gate(**kw: Any) -> DatadogMonitorsGate:
    fields: dict[str, Any] = {"type": "datadog_monitors", "name": "monitors", "tags": TAGS}
    fields.update(kw)
    return DatadogMonitorsGate(**fields)


def outcome(spec: Any, now: float = NOW) -> Measurement | ProviderError:
    try:
        return build_provider(spec).measure(now=now)
    except ProviderError as exc:
        return exc


def verdict(spec: Any, now: float = NOW) -> tuple[GateResult, Measurement | ProviderError]:
    out = outcome(spec, now)
    result = judge(spec, out, now=now)
    no_keys(out, result)
    return result, out


def error_of(spec: Any) -> ProviderError:
    """The gate's ProviderError (not NoData), judged INCONCLUSIVE with error=True."""
    result, out = verdict(spec)
    assert isinstance(out, ProviderError) and not isinstance(out, NoData), out
    assert result.verdict is Verdict.INCONCLUSIVE and result.error, result
    assert out.hint
    return out


def queries(double: DatadogDouble) -> list[dict[str, str]]:
    return [dict(r.params) for r in double.requests if r.path == "/api/v1/query"]


# --- plan models ----------------------------------------------------------------------------


def test_both_gate_types_are_in_the_plans_union() -> None:
    specs = gate_specs()
    assert specs["datadog"] is DatadogGate
    assert specs["datadog_monitors"] is DatadogMonitorsGate


def test_metric_gate_defaults_and_rules() -> None:
    gate = metric_gate(window="10m")
    assert (gate.window, gate.reduce, gate.timeout, gate.min_samples) == (600.0, "avg", 10.0, 0)
    assert metric_gate().window == 300.0
    with pytest.raises(ValueError, match="needs a threshold"):
        metric_gate(max=None)
    with pytest.raises(ValueError, match="needs a samples_query"):
        metric_gate(min_samples=100)
    with pytest.raises(ValueError, match="above max"):
        metric_gate(min=0.5, max=0.1)
    with pytest.raises(ValueError, match="reduce"):
        metric_gate(reduce="p99")
    with pytest.raises(ValueError):
        metric_gate(window="0s")


def test_monitor_gate_selection_rules() -> None:
    assert monitor_gate(tags="service:accounting env:production").tags == TAGS
    assert monitor_gate(tags="service:accounting,env:production").tags == TAGS
    assert monitor_gate().warn_fails is True
    with pytest.raises(ValueError, match="must select monitors"):
        monitor_gate(tags=[])
    with pytest.raises(ValueError, match="not a Datadog tag"):
        monitor_gate(tags=["service:a,env:b"])
    with pytest.raises(ValueError):
        monitor_gate(tags=[], ids=[0])
    assert monitor_gate(tags=[], names=["checkout 5xx"]).names == ["checkout 5xx"]


def test_a_plan_with_datadog_gates_loads_and_points_at_the_field() -> None:
    text = plan_yaml("""\
  - name: web-errors
    type: datadog
    query: sum:trace.rack.request.errors{service:web}.as_count()
    window: 5m
    reduce: max
    max: 0.01
  - name: monitors
    type: datadog_monitors
    tags: service:accounting env:production
    warn_fails: false
""")
    plan = parse_plan_text(text, filename="plan.yaml", env={}).plan
    first, second = plan.normal_state
    with pytest.raises(PlanError) as blank:  # Datadog would answer 400 at every check
        parse_plan_text(text.replace("query: sum:trace.rack.request.errors{service:web}.as_count()",
                                     'query: " "'), filename="plan.yaml", env={})
    assert str(blank.value).startswith("plan.yaml:13:12: the query is blank")
    assert isinstance(first, DatadogGate) and first.reduce == "max"
    assert isinstance(second, DatadogMonitorsGate) and second.tags == TAGS
    with pytest.raises(PlanError) as info:
        parse_plan_text(text.replace("reduce: max", "reduce: median"), filename="plan.yaml", env={})
    assert str(info.value).startswith("plan.yaml:15:13: 'median' is not allowed here")


def test_loading_the_module_does_not_import_the_client() -> None:
    code = (
        "import sys, shiftover.providers.datadog, shiftover.providers\n"
        "shiftover.providers.gate_specs()\n"
        "assert 'datadog_api_client' not in sys.modules, 'imported at load'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- metrics queries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reduce", "value"), [("avg", 2.5), ("last", 2.0), ("sum", 10.0), ("max", 4.0), ("min", 1.0)]
)
def test_the_window_is_reduced_to_one_value(dd: DatadogDouble, reduce: str, value: float) -> None:
    dd.set_series(RATIO, Series([1.0, None, 4.0, 3.0, 2.0], scope="env:prod,service:web"))
    m = outcome(metric_gate(reduce=reduce, max=100))
    assert isinstance(m, Measurement), m
    assert m.value == value and m.at == NOW
    assert m.details["points"] == 4 and m.details["null_points"] == 1
    assert m.details["scope"] == "env:prod,service:web"
    no_keys(m)


def test_the_query_covers_the_window_ending_now(dd: DatadogDouble) -> None:
    dd.set_series(RATIO, [0.01])
    outcome(metric_gate(window="15m"), now=NOW + 0.7)
    (params,) = queries(dd)
    assert params == {"from": str(int(NOW) - 900), "to": str(int(NOW)), "query": RATIO}


def test_threshold_pass_and_fail(dd: DatadogDouble) -> None:
    dd.set_series(RATIO, [0.01, 0.02, 0.03])
    result, _ = verdict(metric_gate(max=0.02))  # avg 0.02: inclusive
    assert result.verdict is Verdict.PASS
    result, _ = verdict(metric_gate(max=0.02, reduce="max"))
    assert result.verdict is Verdict.FAIL and "above max" in result.reason


def test_samples_are_the_samples_query_summed_over_the_window(dd: DatadogDouble) -> None:
    dd.set_series(RATIO, [0.0, 0.0])
    dd.set_series(HITS, [40.0, None, 39.6])
    gate = metric_gate(samples_query=HITS, min_samples=50)
    result, m = verdict(gate)
    assert isinstance(m, Measurement) and m.samples == 80
    assert result.verdict is Verdict.PASS
    result, m = verdict(metric_gate(samples_query=HITS, min_samples=100))
    assert result.verdict is Verdict.INCONCLUSIVE and not result.error
    assert "80 samples, 100 required" in result.reason
    dd.set_series(HITS)  # no traffic at all: 0 samples, not an error
    result, m = verdict(gate)
    assert isinstance(m, Measurement) and m.samples == 0 and "counted as 0" in m.details["samples_note"]
    assert result.verdict is Verdict.INCONCLUSIVE and not result.error


@pytest.mark.parametrize("series", [(), (Series([None, None, None]),)], ids=["no_series", "null_points"])
def test_no_data_is_inconclusive_not_an_error(dd: DatadogDouble, series: tuple[Series, ...]) -> None:
    dd.set_series(RATIO, *series)
    result, out = verdict(metric_gate())
    assert isinstance(out, NoData) and out.hint
    assert result.verdict is Verdict.INCONCLUSIVE and not result.error


def test_several_series_are_an_error_that_says_how_to_aggregate(dd: DatadogDouble) -> None:
    dd.set_series(
        RATIO, Series([0.0], scope="host:i-0a,service:web"), Series([0.9], scope="host:i-0b,service:web")
    )
    err = error_of(metric_gate(reduce="max"))
    assert "2 series" in err.message and "host:i-0a" in err.message and "host:i-0b" in err.message
    assert "by {" in str(err.hint) and "sum:" in str(err.hint)


def test_a_query_datadog_rejects_quotes_its_message(dd: DatadogDouble) -> None:
    dd.set_query_error(RATIO, "Error parsing query: unexpected '}'")
    err = error_of(metric_gate())
    assert "HTTP 400" in err.message and "Error parsing query" in err.message


# --- monitors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("OK", Verdict.PASS),
        ("Alert", Verdict.FAIL),
        ("Warn", Verdict.FAIL),
        ("No Data", Verdict.INCONCLUSIVE),
        ("Skipped", Verdict.INCONCLUSIVE),
        ("Ignored", Verdict.INCONCLUSIVE),
        ("Unknown", Verdict.INCONCLUSIVE),
    ],
)
def test_each_monitor_state_through_the_judge(dd: DatadogDouble, state: str, expected: Verdict) -> None:
    assert state in MONITOR_STATES
    dd.add_monitor("accounting p99", "OK", tags=TAGS)
    dd.add_monitor("accounting 5xx", state, tags=[*TAGS, "team:payments"])
    result, m = verdict(monitor_gate())
    assert result.verdict is expected, result
    assert not result.error
    assert isinstance(m, Measurement) and m.samples == 2
    if expected is Verdict.FAIL:
        assert result.reason == "firing: accounting 5xx"
    if expected is Verdict.INCONCLUSIVE:
        assert "accounting 5xx" in result.reason
        if state != "No Data":
            assert state in result.reason  # says why it is held


def test_warn_passes_when_warn_fails_is_false(dd: DatadogDouble) -> None:
    dd.add_monitor("accounting 5xx", "Warn", tags=TAGS)
    result, m = verdict(monitor_gate(warn_fails=False))
    assert result.verdict is Verdict.PASS
    assert isinstance(m, Measurement) and m.details["warn"] == ["accounting 5xx"]
    result, _ = verdict(monitor_gate(warn_fails=True))
    assert result.verdict is Verdict.FAIL


def test_alert_beats_no_data(dd: DatadogDouble) -> None:
    dd.add_monitor("accounting 5xx", "No Data", tags=TAGS)
    dd.add_monitor("accounting queue", "Alert", tags=TAGS)
    result, _ = verdict(monitor_gate())
    assert result.verdict is Verdict.FAIL and result.reason == "firing: accounting queue"


def test_tags_select_only_monitors_carrying_all_of_them(dd: DatadogDouble) -> None:
    dd.add_monitor("accounting 5xx", "OK", tags=TAGS)
    dd.add_monitor("billing 5xx", "Alert", tags=["service:billing", "env:production"])
    dd.add_monitor("accounting staging", "Alert", tags=["service:accounting", "env:staging"])
    result, m = verdict(monitor_gate())
    assert result.verdict is Verdict.PASS
    assert isinstance(m, Measurement) and [w["name"] for w in m.details["monitors"]] == ["accounting 5xx"]
    (listed,) = [r for r in dd.requests if r.path == "/api/v1/monitor"]
    assert listed.params["monitor_tags"] == "service:accounting,env:production"


def test_names_are_exact_and_ids_are_fetched(dd: DatadogDouble) -> None:
    dd.add_monitor("checkout 5xx", "OK", tags=TAGS)
    dd.add_monitor("checkout 5xx (canary)", "Alert", tags=TAGS)  # a substring match, not this name
    queue = dd.add_monitor("queue depth", "Alert", tags=["service:workers"])
    result, m = verdict(monitor_gate(tags=[], names=["checkout 5xx"]))
    assert result.verdict is Verdict.PASS, result
    assert isinstance(m, Measurement) and [w["name"] for w in m.details["monitors"]] == ["checkout 5xx"]
    result, _ = verdict(monitor_gate(tags=[], names=["checkout 5xx"], ids=[queue]))
    assert result.verdict is Verdict.FAIL and result.reason == "firing: queue depth"
    assert f"/api/v1/monitor/{queue}" in [r.path for r in dd.requests]


def test_watching_nothing_is_an_error_never_a_pass(dd: DatadogDouble) -> None:
    err = error_of(monitor_gate())  # no monitor at all
    assert "no Datadog monitor carries all the tags service:accounting,env:production" in err.message
    dd.add_monitor("checkout 5xx", "OK", tags=TAGS)
    err = error_of(monitor_gate(names=["checkout 5XX"]))
    assert "no Datadog monitor is named 'checkout 5XX'" in err.message
    err = error_of(monitor_gate(tags=[], ids=[424242]))
    assert "monitor 424242 does not exist" in err.message
    other = dd.add_monitor("billing 5xx", "OK", tags=["service:billing"])
    err = error_of(monitor_gate(ids=[other]))
    assert f"monitor {other} ('billing 5xx') does not carry the tags" in err.message


# --- credentials and endpoint -----------------------------------------------------------------


@pytest.mark.parametrize("spec", [metric_gate(), monitor_gate()], ids=["datadog", "datadog_monitors"])
def test_missing_keys_name_the_variables(
    dd: DatadogDouble, monkeypatch: pytest.MonkeyPatch, spec: Any
) -> None:
    monkeypatch.delenv("DD_APP_KEY")
    err = error_of(spec)
    assert "DD_APP_KEY" in err.message and "DD_API_KEY" not in err.message
    assert "DD_API_KEY=" in str(err.hint)
    monkeypatch.delenv("DD_API_KEY")
    assert "DD_API_KEY and DD_APP_KEY" in error_of(spec).message
    assert dd.requests == []  # nothing sent without keys


def test_dd_application_key_is_accepted(dd: DatadogDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DD_APP_KEY")
    monkeypatch.setenv("DD_APPLICATION_KEY", APP_KEY)
    dd.add_monitor("accounting 5xx", "OK", tags=TAGS)
    assert verdict(monitor_gate())[0].verdict is Verdict.PASS


def test_the_endpoint_comes_from_dd_host_or_the_site(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DD_HOST", "DATADOG_HOST", "DD_SITE"):
        monkeypatch.delenv(name, raising=False)
    assert api_base_url() == ("https://api.datadoghq.com", "DD_SITE (unset: datadoghq.com)")
    monkeypatch.setenv("DD_SITE", "datadoghq.eu")
    assert api_base_url() == ("https://api.datadoghq.eu", "DD_SITE=datadoghq.eu")
    monkeypatch.setenv("DATADOG_HOST", "https://api.us5.datadoghq.com/")
    assert api_base_url()[0] == "https://api.us5.datadoghq.com"
    monkeypatch.setenv("DD_HOST", "http://127.0.0.1:8126")
    assert api_base_url() == ("http://127.0.0.1:8126", "DD_HOST=http://127.0.0.1:8126")
    for bad in ("http://127.0.0.1:8126/api/v1", "api.datadoghq.com"):
        monkeypatch.setenv("DD_HOST", bad)
        with pytest.raises(ProviderError, match="not the base URL"):
            api_base_url()
    monkeypatch.delenv("DD_HOST")
    monkeypatch.delenv("DATADOG_HOST")
    for bad in ("https://app.datadoghq.com", "app.datadoghq.eu"):
        monkeypatch.setenv("DD_SITE", bad)
        with pytest.raises(ProviderError, match="not a Datadog site") as info:
            api_base_url()
        assert "datadoghq.eu" in str(info.value.hint)


# --- HTTP failures: each a clear ProviderError, INCONCLUSIVE with error=True, never PASS -------

GATES = [metric_gate(timeout="2s"), monitor_gate(timeout="2s")]
GATE_IDS = ["datadog", "datadog_monitors"]


def _healthy(dd: DatadogDouble) -> None:
    dd.set_series(RATIO, [0.01])
    dd.add_monitor("accounting 5xx", "OK", tags=TAGS)


@pytest.mark.parametrize("spec", GATES, ids=GATE_IDS)
def test_a_wrong_api_key_is_named(dd: DatadogDouble, monkeypatch: pytest.MonkeyPatch, spec: Any) -> None:
    _healthy(dd)
    monkeypatch.setenv("DD_API_KEY", API_KEY[::-1])
    err = error_of(spec)
    assert "HTTP 403" in err.message and "the API key (DD_API_KEY) is not valid" in err.message
    assert API_KEY[::-1] not in str(err)
    assert [r.path for r in dd.requests][-1] == "/api/v1/validate"


@pytest.mark.parametrize("spec", GATES, ids=GATE_IDS)
def test_a_wrong_app_key_is_named(dd: DatadogDouble, monkeypatch: pytest.MonkeyPatch, spec: Any) -> None:
    _healthy(dd)
    monkeypatch.setenv("DD_APP_KEY", "not-" + APP_KEY)
    err = error_of(spec)
    assert "the API key is valid, so the application key (DD_APP_KEY)" in err.message


def test_an_app_key_without_the_permission_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DD_SITE", raising=False)
    with DatadogDouble(api_key=API_KEY, app_key=APP_KEY, scopes={"monitors_read"}) as double:
        for name, value in double.env().items():
            monkeypatch.setenv(name, value)
        _healthy(double)
        err = error_of(metric_gate())
        assert "lacks the 'timeseries_query' permission" in err.message
        assert "timeseries_query" in str(err.hint)
        assert verdict(monitor_gate())[0].verdict is Verdict.PASS


@pytest.mark.parametrize("spec", GATES, ids=GATE_IDS)
@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("http500", "(HTTP 500): Internal Server Error"),
        ("html_502", "(HTTP 502): <html><body><h1>502 Bad Gateway"),
        ("malformed", "not Datadog's documented shape"),
        ("not_json", "not Datadog's documented shape"),
        ("wrong_shape", "not Datadog's documented shape"),
        ("close", "closed without an answer"),
    ],
)
def test_broken_answers_are_clear_errors(dd: DatadogDouble, spec: Any, fault: str, says: str) -> None:
    _healthy(dd)
    dd.fail(fault)
    err = error_of(spec)
    assert says in err.message, err.message
    assert len(dd.requests) == 1  # the client's own retries are off


@pytest.mark.parametrize("spec", GATES, ids=GATE_IDS)
def test_keys_quoted_back_by_a_proxy_are_scrubbed(dd: DatadogDouble, spec: Any) -> None:
    _healthy(dd)
    dd.fail("echo_headers")
    err = error_of(spec)  # checks that no key shows
    assert "HTTP 502" in err.message and "DD-API-KEY: ***" in err.message, err.message


@pytest.mark.parametrize("spec", [metric_gate(timeout="500ms"), monitor_gate(timeout="500ms")],
                         ids=GATE_IDS)
def test_a_hang_is_bounded_by_the_gates_timeout(dd: DatadogDouble, spec: Any) -> None:
    _healthy(dd)
    dd.fail("hang")  # the double holds the request 30 s, then closes
    err = error_of(spec)
    assert "did not answer" in err.message and "within the gate's timeout of 0.5s" in err.message
    assert len(dd.requests) == 1


@pytest.mark.parametrize("spec", GATES, ids=GATE_IDS)
def test_nothing_listening_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, spec: Any) -> None:
    monkeypatch.setenv("DD_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)
    err = error_of(spec)
    assert err.message.startswith("cannot reach Datadog at http://127.0.0.1:")


def test_the_provider_recovers_after_a_failure(dd: DatadogDouble) -> None:
    _healthy(dd)
    provider = build_provider(metric_gate())
    dd.fail("http500")
    with pytest.raises(ProviderError):
        provider.measure(now=NOW)
    dd.healthy()
    assert provider.measure(now=NOW).value == 0.01


# --- rate limits ---------------------------------------------------------------------------------


class Sleeps:
    """Records the provider's waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _provider(spec: Any, sleeps: Sleeps) -> Any:
    provider = build_provider(spec)
    provider.sleep = sleeps
    return provider


@pytest.mark.parametrize("spec", GATES, ids=GATE_IDS)
def test_429_is_retried_once_when_the_wait_fits_the_timeout(dd: DatadogDouble, spec: Any) -> None:
    _healthy(dd)
    dd.fail("rate_limited", times=1, retry_after=1, reset=1)
    sleeps = Sleeps()
    m = _provider(spec, sleeps).measure(now=NOW)
    assert isinstance(m, Measurement)
    assert sleeps.waits == [1.0]
    assert len(dd.requests) == 2
    no_keys(m)


def test_the_longer_of_retry_after_and_the_reset_is_waited(dd: DatadogDouble) -> None:
    _healthy(dd)
    dd.fail("rate_limited", times=1, reset=1)  # no Retry-After: X-RateLimit-Reset alone
    sleeps = Sleeps()
    _provider(metric_gate(timeout="5s"), sleeps).measure(now=NOW)
    dd.fail("rate_limited", times=1, retry_after=1, reset=3)
    _provider(metric_gate(timeout="5s"), sleeps).measure(now=NOW)
    assert sleeps.waits == [1.0, 3.0]


def test_retry_after_may_be_an_http_date(dd: DatadogDouble) -> None:
    _healthy(dd)
    soon = email.utils.formatdate(time.time() + 2, usegmt=True)
    dd.fail("rate_limited", times=1, retry_after=soon, reset=0)
    sleeps = Sleeps()
    _provider(metric_gate(timeout="5s"), sleeps).measure(now=NOW)
    (wait,) = sleeps.waits
    assert 0.0 < wait <= 2.0


def test_429_really_waits_and_then_measures(dd: DatadogDouble) -> None:
    _healthy(dd)
    dd.fail("rate_limited", times=1, retry_after=1, reset=1)
    m = build_provider(metric_gate(timeout="5s")).measure(now=NOW)  # time.sleep(1) really
    assert m.value == 0.01 and len(dd.requests) == 2


@pytest.mark.parametrize("spec", GATES, ids=GATE_IDS)
def test_429_beyond_the_timeout_is_an_error_saying_when_it_resets(dd: DatadogDouble, spec: Any) -> None:
    _healthy(dd)
    dd.fail("rate_limited", retry_after=30, reset=30)
    sleeps = Sleeps()
    provider = _provider(spec, sleeps)
    with pytest.raises(ProviderError) as info:
        provider.measure(now=NOW)
    err = info.value
    assert sleeps.waits == [] and len(dd.requests) == 1  # no sleep past the timeout, no retry
    assert "HTTP 429, limit 1600 requests per 3600 s for 'query'" in err.message
    assert "the limit resets in 30 s, beyond this gate's timeout of 2s" in err.message
    result = judge(spec, err, now=NOW)
    assert result.verdict is Verdict.INCONCLUSIVE and result.error
    no_keys(err, result)


@pytest.mark.parametrize("spec", GATES, ids=GATE_IDS)
def test_429_that_resets_in_0_s_is_waited_for_and_retried_once_not_hammered(
        dd: DatadogDouble, spec: Any) -> None:
    """X-RateLimit-Reset: 0 (and no Retry-After) is a reason to wait a little, once:
    a burst of retries would keep the org's keys rate-limited."""
    _healthy(dd)
    dd.fail("rate_limited", reset=0)  # every request, until healthy()
    sleeps = Sleeps()
    with pytest.raises(ProviderError, match=r"still rate-limited .* after waiting 0.5 s"):
        _provider(spec, sleeps).measure(now=NOW)
    assert sleeps.waits == [0.5] and len(dd.requests) == 2


def test_429_again_after_the_wait_is_an_error(dd: DatadogDouble) -> None:
    _healthy(dd)
    dd.fail("rate_limited", times=2, retry_after=1, reset=1)
    sleeps = Sleeps()
    with pytest.raises(ProviderError, match=r"still rate-limited .* after waiting 1 s"):
        _provider(metric_gate(timeout="5s"), sleeps).measure(now=NOW)
    assert sleeps.waits == [1.0] and len(dd.requests) == 2


# --- keys stay secret ----------------------------------------------------------------------------


def test_keys_are_not_in_reprs_or_details(dd: DatadogDouble) -> None:
    _healthy(dd)
    for spec in (metric_gate(), monitor_gate()):
        provider = build_provider(spec)
        assert isinstance(provider, DatadogProvider | DatadogMonitorsProvider)
        m = provider.measure(now=NOW)
        no_keys(provider, spec, m, judge(spec, m, now=NOW), spec.model_dump_json())
        no_keys(provider.describe())


def test_keys_are_not_in_validates_json(
    dd: DatadogDouble, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``shiftover validate --json``: the 403 shows as a gate error, and no key shows."""
    _healthy(dd)
    monkeypatch.setenv("DD_APP_KEY", "x" + APP_KEY)  # a refused application key
    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_yaml(f"""\
  - name: web-errors
    type: datadog
    query: "{RATIO}"
    max: 0.05
  - name: monitors
    type: datadog_monitors
    tags: [service:accounting, env:production]
""", socket=str(tmp_path / "admin.sock")))
    result = CliRunner().invoke(app, ["validate", str(plan), "--json"], env=dict(os.environ))
    output = result.output
    assert API_KEY not in output and APP_KEY not in output
    body = json.loads(output)
    gates = {g["gate"]: g for g in body["gates"]}
    assert body["valid"] is False and result.exit_code == 2
    for name in ("web-errors", "monitors"):
        assert gates[name]["error"] is True and gates[name]["verdict"] == "inconclusive"
        assert "application key (DD_APP_KEY)" in gates[name]["reason"]


# --- the compare gate's source: sums of each environment's counts ------------------------


def hits(env: str) -> str:
    return f"sum:trace.rack.request.hits{{service:web,env:{env}}}.as_count()"


def errors(env: str) -> str:
    return f"sum:trace.rack.request.errors{{service:web,env:{env}}}.as_count()"


def counts_spec(**kw: Any) -> DatadogCountsSpec:
    fields: dict[str, Any] = {"type": "datadog",
                              "old": {"requests": hits("ec2"), "errors": errors("ec2")},
                              "new": {"requests": hits("eks"), "errors": errors("eks")}}
    fields.update(kw)
    return DatadogCountsSpec(**fields)


MINUTE = 1_800_000_000.0  # a whole minute


def count(dd: DatadogDouble, query: str, at: float, n: float) -> None:
    dd.add_points(rolled_up(query), (at, n))


def test_a_compare_gate_takes_datadog_sums() -> None:
    text = plan_yaml(
        f"  - {{name: new error ratio, type: datadog, max: 0.05, query: '{errors('eks')} / "
        f"{hits('eks')}'}}\n"
        "  - name: errors vs old\n"
        "    type: compare\n"
        "    source:\n"
        "      type: datadog\n"
        f"      old: {{requests: '{hits('ec2')}', errors: '{errors('ec2')}'}}\n"
        f"      new: {{requests: '{hits('eks')}', errors: '{errors('eks')}'}}\n",
        steps="[10, 50, 100]")
    source = parse_plan_text(text, filename="plan.yaml", env={}).plan.normal_state[1].source
    assert isinstance(source, DatadogCountsSpec) and source.new.errors == errors("eks")
    assert "env:eks" in DatadogCounts.from_spec(source).describe()


@pytest.mark.parametrize(("new", "message"), [
    ({"requests": hits("eks") + ".rollup(sum, 300)"}, "leave .rollup"),
    ({"requests": f"{errors('eks')} / {hits('eks')}"}, "without arithmetic"),
    ({"requests": "  "}, "the query is blank"),
    ({"errors": hits("eks")}, "the same query"),
    ({"requests": hits("ec2"), "errors": errors("ec2")}, "old and new count the same requests"),
])
def test_datadog_sums_refuse_what_cannot_count(new: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        counts_spec(new={"requests": hits("eks"), "errors": errors("eks"), **new})


def test_tags_with_dashes_are_not_arithmetic() -> None:
    spec = counts_spec(new={"requests": "sum:trace.rack.request.hits{env:eks-prod-1}.as_count()",
                            "errors": "sum:trace.rack.request.errors{env:eks-prod-1}.as_count()"})
    assert spec.new.requests.endswith("{env:eks-prod-1}.as_count()")


def test_sums_of_both_environments_over_the_steps_whole_minutes(dd: DatadogDouble) -> None:
    since = MINUTE + 20  # the step starts 20 s into a minute
    count(dd, hits("eks"), MINUTE, 500)  # the minute the step started in: the step before's
    count(dd, errors("eks"), MINUTE, 400)
    count(dd, hits("ec2"), MINUTE + 60, 100)
    count(dd, hits("eks"), MINUTE + 60, 10)
    count(dd, errors("eks"), MINUTE + 60, 2)
    count(dd, hits("ec2"), MINUTE + 120, 90)
    count(dd, errors("ec2"), MINUTE + 120, 1)
    count(dd, hits("eks"), MINUTE + 120, 9)
    source = DatadogCounts.from_spec(counts_spec())
    assert source.counts(since=since, now=since) == EnvCounts(0, 0, 0, 0)
    assert source.counts(since=since, now=MINUTE + 59) == EnvCounts(0, 0, 0, 0)
    assert source.counts(since=since, now=MINUTE + 100) == EnvCounts(100, 0, 10, 2)
    assert source.counts(since=since, now=MINUTE + 150) == EnvCounts(190, 1, 19, 2)
    count(dd, hits("eks"), MINUTE + 60, 7)  # late points of a minute already counted
    count(dd, errors("eks"), MINUTE + 60, 3)
    assert source.counts(since=since, now=MINUTE + 150) == EnvCounts(190, 1, 26, 5)
    asked = queries(dd)
    assert {q["query"] for q in asked} == {rolled_up(q) for q in
                                           (hits("ec2"), errors("ec2"), hits("eks"), errors("eks"))}
    # the marks ask the minute before (so a source that cannot work fails at once), the
    # checks the whole minutes since the one after the step's start
    assert [(int(q["from"]), int(q["to"])) for q in asked[:4]] == [(MINUTE, MINUTE + 60)] * 4
    assert [(int(q["from"]), int(q["to"])) for q in asked[-4:]] == [(MINUTE + 60, MINUTE + 180)] * 4


def test_no_requests_series_is_no_data_and_no_errors_series_is_zero(dd: DatadogDouble) -> None:
    source = DatadogCounts.from_spec(counts_spec())
    count(dd, hits("ec2"), MINUTE, 100)
    out = None
    try:
        source.counts(since=MINUTE, now=MINUTE + 60)
    except NoData as exc:
        out = exc
    assert out is not None and "env:eks" in out.message and "Metrics Explorer" in str(out.hint)
    count(dd, hits("eks"), MINUTE, 50)
    assert source.counts(since=MINUTE, now=MINUTE + 60) == EnvCounts(100, 0, 50, 0)


@pytest.mark.parametrize(("value", "expected"), [(3.0000000001, 3), (2.5, None)])
def test_sums_are_rounded_only_when_they_are_whole(dd: DatadogDouble, value: float,
                                                   expected: int | None) -> None:
    count(dd, hits("ec2"), MINUTE, 100)
    count(dd, hits("eks"), MINUTE, 10)
    count(dd, errors("eks"), MINUTE, value)
    source = DatadogCounts.from_spec(counts_spec())
    if expected is not None:
        assert source.counts(since=MINUTE, now=MINUTE + 60) == EnvCounts(100, 0, 10, expected)
        return
    with pytest.raises(ProviderError, match=r"summed to 2\.5, not a whole number") as info:
        source.counts(since=MINUTE, now=MINUTE + 60)
    assert not isinstance(info.value, NoData) and ".as_count()" in str(info.value.hint)
    no_keys(info.value)


def test_more_errors_than_requests_is_an_error(dd: DatadogDouble) -> None:
    count(dd, hits("ec2"), MINUTE, 100)
    count(dd, hits("eks"), MINUTE, 3)
    count(dd, errors("eks"), MINUTE, 4)
    with pytest.raises(ProviderError, match=r"new: the errors query .* summed to 4") as info:
        DatadogCounts.from_spec(counts_spec()).counts(since=MINUTE, now=MINUTE + 60)
    assert not isinstance(info.value, NoData) and "subset" in str(info.value.hint)


def test_several_series_for_a_count_are_an_error(dd: DatadogDouble) -> None:
    count(dd, hits("ec2"), MINUTE, 100)
    dd.set_series(rolled_up(hits("eks")), Series([5.0], scope="host:a"), Series([6.0], scope="host:b"))
    with pytest.raises(ProviderError, match="2 series") as info:
        DatadogCounts.from_spec(counts_spec()).counts(since=MINUTE, now=MINUTE + 60)
    assert not isinstance(info.value, NoData)


def test_a_wrong_key_is_an_error_at_the_steps_mark_without_the_key(
    dd: DatadogDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DD_APP_KEY", APP_KEY[:-4] + "0000")
    with pytest.raises(ProviderError) as info:
        DatadogCounts.from_spec(counts_spec()).counts(since=MINUTE, now=MINUTE)
    assert "HTTP 403" in info.value.message and not isinstance(info.value, NoData)
    no_keys(info.value)


# --- long steps: minutes that stay put, queries within Datadog's 1,500 points -------------

QIDS = {"old_requests": hits("ec2"), "old_errors": errors("ec2"),
        "new_requests": hits("eks"), "new_errors": errors("eks")}


def per_minute(qid: str, minute: int) -> float:
    """The scripted traffic: each query's count in its ``minute``-th minute."""
    return {"old_requests": 3.0 + minute % 4, "old_errors": float(minute % 7 == 0),
            "new_requests": 2.0 + minute % 3, "new_errors": float(minute % 10 == 0)}[qid]


def expected(minutes: range) -> EnvCounts:
    return EnvCounts(*(int(sum(per_minute(qid, m) for m in minutes)) for qid in QIDS))


def spans(double: DatadogDouble) -> list[tuple[int, int]]:
    return [(int(q["from"]), int(q["to"])) for q in queries(double)]


def test_a_step_longer_than_datadogs_points_is_counted_exactly_in_bounded_queries(
    dd: DatadogDouble,
) -> None:
    """A 30-hour step (1,800 minutes, more than Datadog's 1,500 points) checked every
    10 minutes, each minute's points arriving once it closed: every check is exact,
    never down, and asks only for the last few minutes."""
    source = DatadogCounts.from_spec(counts_spec())
    assert source.counts(since=MINUTE, now=MINUTE) == EnvCounts(0, 0, 0, 0)
    last = EnvCounts(0, 0, 0, 0)
    arrived = 0
    for check in range(1, 181):
        now = MINUTE + check * 600 + 5
        while MINUTE + (arrived + 1) * 60 <= now:  # the minutes closed by now
            for qid, query in QIDS.items():
                if per_minute(qid, arrived):
                    count(dd, query, MINUTE + arrived * 60, per_minute(qid, arrived))
            arrived += 1
        dd.clear_requests()
        got = source.counts(since=MINUTE, now=now)
        assert got == expected(range(arrived)), check
        assert all(b >= a for a, b in zip(last.as_dict().values(), got.as_dict().values(),
                                          strict=True))
        last = got
        end = MINUTE + (check * 10 + 1) * 60  # now rounded up
        # four queries: from the previous check's end less the minutes read again
        assert spans(dd) == [(end - (10 + COUNT_SETTLE_MINUTES) * 60
                              if check > 1 else MINUTE, end)] * 4, check
    assert arrived == 1800 and last == expected(range(1800))


def test_a_long_span_at_once_is_read_in_chunks_within_datadogs_points(dd: DatadogDouble) -> None:
    """The first check 30 hours after the mark (a source that could not be read all that
    time): the span is read in consecutive chunks of at most COUNT_MAX_MINUTES, each
    minute once; the next check asks only for the last few minutes."""
    for m in range(1900):
        for qid, query in QIDS.items():
            if per_minute(qid, m):
                count(dd, query, MINUTE + m * 60, per_minute(qid, m))
    source = DatadogCounts.from_spec(counts_spec())
    source.counts(since=MINUTE, now=MINUTE)
    dd.clear_requests()
    now = MINUTE + 1800 * 60
    assert source.counts(since=MINUTE, now=now) == expected(range(1800))
    asked = spans(dd)
    assert all(to - frm <= COUNT_MAX_MINUTES * 60 for frm, to in asked)
    chunks = sorted(set(asked))
    assert chunks == [(MINUTE, MINUTE + COUNT_MAX_MINUTES * 60), (MINUTE + COUNT_MAX_MINUTES * 60,
                                                                 now)]
    assert len(asked) == 4 * len(chunks)
    dd.clear_requests()
    assert source.counts(since=MINUTE, now=now + 60) == expected(range(1801))
    assert set(spans(dd)) == {(now - COUNT_SETTLE_MINUTES * 60, now + 60)}


def test_late_points_count_until_their_minute_settles_and_counts_never_go_down(
    dd: DatadogDouble,
) -> None:
    for qid, query in QIDS.items():
        if qid.endswith("requests"):
            count(dd, query, MINUTE, 10)
    source = DatadogCounts.from_spec(counts_spec())
    source.counts(since=MINUTE, now=MINUTE)
    assert source.counts(since=MINUTE, now=MINUTE + 60) == EnvCounts(10, 0, 10, 0)
    count(dd, hits("eks"), MINUTE, 5)  # late, within the minutes read again: counted
    count(dd, errors("eks"), MINUTE, 2)
    now = MINUTE + COUNT_SETTLE_MINUTES * 60
    assert source.counts(since=MINUTE, now=now) == EnvCounts(10, 0, 15, 2)
    count(dd, hits("eks"), MINUTE, -3)  # a re-read with less (points still missing): kept
    assert source.counts(since=MINUTE, now=now) == EnvCounts(10, 0, 15, 2)
    # the minute settles once it is more than COUNT_SETTLE_MINUTES before the end
    assert source.counts(since=MINUTE, now=now + 60) == EnvCounts(10, 0, 15, 2)
    count(dd, hits("eks"), MINUTE, 100)  # later still: not counted, and nothing goes down
    count(dd, hits("ec2"), MINUTE + 11 * 60, 4)
    assert source.counts(since=MINUTE, now=now + 120) == EnvCounts(14, 0, 15, 2)


def test_a_new_since_starts_over_and_a_failed_check_changes_nothing(dd: DatadogDouble) -> None:
    for m in range(40):
        for qid, query in QIDS.items():
            if per_minute(qid, m):
                count(dd, query, MINUTE + m * 60, per_minute(qid, m))
    source = DatadogCounts.from_spec(counts_spec())
    source.counts(since=MINUTE, now=MINUTE)
    assert source.counts(since=MINUTE, now=MINUTE + 1200) == expected(range(20))
    dd.fail("http500", times=1)
    with pytest.raises(ProviderError):
        source.counts(since=MINUTE, now=MINUTE + 1800)
    assert source.counts(since=MINUTE, now=MINUTE + 1800) == expected(range(30))
    step = MINUTE + 1800 + 30
    assert source.counts(since=step, now=step) == EnvCounts(0, 0, 0, 0)
    assert source.counts(since=step, now=MINUTE + 2400) == expected(range(31, 40))
