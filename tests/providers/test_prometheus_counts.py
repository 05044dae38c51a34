"""The Prometheus count source of ``compare`` gates: the arithmetic of counter
resets (a pure function over samples), what it makes of Prometheus's answers
(through an httpx mock transport), its plan model, and the HAProxy-exporter
selectors its docstring recommends, run by a real Prometheus.

The contract it keeps with every other source (exact counts, resets absorbed,
errors from the first call, against a real Prometheus) is in
tests/contracts/test_count_source_contract.py (case: count_case_prometheus.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError

from shiftover.errors import NoData, ProviderError
from shiftover.providers.compare import CompareGate, build_count_source
from shiftover.providers.prometheus import (
    COUNT_LOOKBACK,
    PrometheusCounts,
    PrometheusCountsSpec,
    counter_increase,
)
from shiftover.types import EnvCounts

# --- the arithmetic -------------------------------------------------------------

SINCE = 100.0


@pytest.mark.parametrize(("samples", "expected"), [
    ([], 0),
    ([(90.0, 5), (100.0, 7)], 0),  # all at or before since: the baseline only
    ([(95.0, 5), (101.0, 7), (102.0, 10)], 5),
    ([(100.0, 5), (101.0, 5), (102.0, 5)], 0),  # a sample exactly at since is the baseline
    ([(99.0, 10), (101.0, 12), (102.0, 3), (103.0, 4)], 2 + 3 + 1),  # a reset
    ([(99.0, 10), (101.0, 2), (102.0, 6), (103.0, 1), (104.0, 9)], 2 + 4 + 1 + 8),  # two resets
    ([(99.0, 10), (101.0, 0), (102.0, 0), (103.0, 3)], 0 + 0 + 3),  # reset to 0, seen
    ([(101.0, 4), (102.0, 6)], 4 + 2),  # born during the step (a new pod): counts from 0
    ([(101.0, 0), (102.0, 6)], 6),
    ([(95.0, 3), (101.0, 8), (102.0, 9)], 6),  # vanished after 102 (a pod gone): what it had
    ([(60.0, 3), (70.0, 9)], 0),  # vanished before the step: nothing
])
def test_counter_increase(samples: list[tuple[float, int]], expected: int) -> None:
    assert counter_increase(samples, SINCE) == expected


def test_counts_never_go_down_as_now_moves_on() -> None:
    samples = [(99.0, 10), (101.0, 12), (102.0, 3), (103.0, 4), (104.0, 1), (105.0, 9)]
    seen = [counter_increase(samples[:i], SINCE) for i in range(len(samples) + 1)]
    assert seen == sorted(seen)
    assert seen[-1] == 2 + 3 + 1 + 1 + 8


# --- Prometheus's answers, mocked -----------------------------------------------

URL = "http://shiftover:s3cret@prom.example:9090"
OLD_R, OLD_E = 'http_requests_total{env="old"}', 'http_requests_total{env="old",code=~"5.."}'
NEW_R, NEW_E = 'http_requests_total{env="new"}', 'http_requests_total{env="new",code=~"5.."}'


def _spec(**over: Any) -> PrometheusCountsSpec:
    raw: dict[str, Any] = {"type": "prometheus", "url": URL,
                           "old": {"requests": OLD_R, "errors": OLD_E},
                           "new": {"requests": NEW_R, "errors": NEW_E}}
    raw.update(over)
    return PrometheusCountsSpec.model_validate(raw)


def _matrix(*series: list[tuple[float, str]]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"i": str(i)}, "values": [[t, v] for t, v in s]}
        for i, s in enumerate(series)]}}



def _source(answers: dict[str, Any], seen: list[dict[str, list[str]]] | None = None,
            **over: Any) -> PrometheusCounts:
    """A source whose Prometheus answers ``answers[selector]`` (a body, or an
    (HTTP status, body) pair) to ``selector[Ns]``."""

    def handler(request: httpx.Request) -> httpx.Response:
        params = parse_qs(urlsplit(str(request.url)).query)
        if seen is not None:
            seen.append(params)
        selector = params["query"][0].rsplit("[", 1)[0]
        answer = answers.get(selector, _matrix())
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return httpx.Response(status, content=json.dumps(body).encode())

    return PrometheusCounts.from_spec(_spec(**over), transport=httpx.MockTransport(handler))


def test_sums_each_environments_series_exactly() -> None:
    seen: list[dict[str, list[str]]] = []
    source = _source({
        OLD_R: _matrix([(99.0, "100"), (105.0, "130")], [(101.0, "7")]),  # a pod born mid-step
        OLD_E: _matrix([(99.0, "4"), (105.0, "5")]),
        NEW_R: _matrix([(99.0, "50"), (103.0, "2"), (105.0, "12")]),  # restarted
        NEW_E: _matrix([(104.0, "3")]),  # the first error made the series
    }, seen)
    assert source.counts(since=SINCE, now=160.4) == EnvCounts(30 + 7, 1, 2 + 10, 3)
    # errors before requests; the range covers the span plus the lookback, at our now
    assert [p["query"][0] for p in seen] == [
        f"{s}[{61 + COUNT_LOOKBACK}s]" for s in (OLD_E, OLD_R, NEW_E, NEW_R)]
    assert all(p["time"] == ["160.400"] for p in seen)


def test_marking_a_step_is_zero() -> None:
    source = _source({OLD_R: _matrix([(99.0, "100")]), NEW_R: _matrix([(98.0, "5")])})
    assert source.counts(since=SINCE, now=SINCE) == EnvCounts(0, 0, 0, 0)


def test_no_requests_series_is_no_data_and_no_errors_series_is_zero() -> None:
    source = _source({OLD_R: _matrix([(99.0, "100"), (101.0, "110")])})
    with pytest.raises(NoData, match="no series matches") as exc:
        source.counts(since=SINCE, now=110.0)
    assert NEW_R in str(exc.value) and "s3cret" not in str(exc.value)


def test_a_broken_selector_is_an_error_even_when_the_other_has_no_data() -> None:
    source = _source({NEW_E: (400, {"status": "error", "errorType": "bad_data",
                                    "error": "parse error"})})
    with pytest.raises(ProviderError) as exc:
        source.counts(since=SINCE, now=110.0)
    assert not isinstance(exc.value, NoData)
    assert "counter selector" in str(exc.value.hint)


def test_more_errors_than_requests_is_an_error() -> None:
    source = _source({OLD_R: _matrix([(99.0, "1"), (101.0, "3")]),
                      OLD_E: _matrix([(99.0, "1"), (101.0, "9")]),
                      NEW_R: _matrix([(99.0, "1")])})
    with pytest.raises(ProviderError, match="8 errors but only 2 requests") as exc:
        source.counts(since=SINCE, now=110.0)
    assert "subset" in str(exc.value.hint)


@pytest.mark.parametrize("value", ["1.5", "NaN", "+Inf", "-3", "abc"])
def test_a_value_that_is_not_a_count_is_an_error(value: str) -> None:
    source = _source({OLD_R: _matrix([(99.0, "1"), (101.0, value)]),
                      NEW_R: _matrix([(99.0, "1")])})
    with pytest.raises(ProviderError) as exc:
        source.counts(since=SINCE, now=110.0)
    assert not isinstance(exc.value, NoData) and exc.value.hint


@pytest.mark.parametrize("body", [
    {"status": "success", "data": {"resultType": "vector", "result": []}},
    {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}},
    {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[1.0]]}]}},
    {"status": "success", "data": {"resultType": "matrix", "result": ["x"]}},
    {"status": "success"},
    ["not", "prometheus"],
])
def test_garbage_is_a_provider_error_not_a_crash(body: Any) -> None:
    source = _source({OLD_E: body})
    with pytest.raises(ProviderError) as exc:
        source.counts(since=SINCE, now=110.0)
    assert not isinstance(exc.value, NoData) and exc.value.hint
    assert "s3cret" not in str(exc.value)


@pytest.mark.parametrize("selector", ["rate(x[1m])", "sum(x)", "x[5m]", "x @ 100",
                                      "increase(x[5m])"])
def test_a_selector_that_is_not_plain_is_refused_before_asking(selector: str) -> None:
    source = _source({}, new={"requests": selector, "errors": NEW_E})
    with pytest.raises(ProviderError, match="not a plain series selector") as exc:
        source.counts(since=SINCE, now=SINCE)
    assert "rate()/sum()" in str(exc.value.hint)


def test_brackets_inside_label_values_are_plain() -> None:
    selector = 'http_requests_total{env="new",path=~"/api/(v1|v2)/[a-z]+"}'
    source = _source({selector: _matrix([(99.0, "1")]), OLD_R: _matrix([(99.0, "1")])},
                     new={"requests": selector, "errors": NEW_E})
    assert source.counts(since=SINCE, now=SINCE) == EnvCounts(0, 0, 0, 0)


# --- the plan model -----------------------------------------------------------


def test_the_spec_is_a_compare_gates_source() -> None:
    gate = CompareGate.model_validate({"name": "vs old", "type": "compare", "source": {
        "type": "prometheus", "url": "http://127.0.0.1:9090", "timeout": "3s",
        "old": {"requests": OLD_R, "errors": OLD_E},
        "new": {"requests": NEW_R, "errors": NEW_E}}})
    source = build_count_source(gate.source)
    assert isinstance(source, PrometheusCounts) and source.timeout == 3.0
    assert "prometheus http://127.0.0.1:9090" in source.describe()


def test_the_spec_shows_no_password() -> None:
    assert "s3cret" not in PrometheusCounts.from_spec(_spec()).describe()


@pytest.mark.parametrize("over", [
    {"url": "prom:9090"},
    {"new": {"requests": OLD_R, "errors": NEW_E}},
    {"new": {"requests": NEW_R}},
    {"new": {"requests": "", "errors": NEW_E}},
    {"extra": 1},
])
def test_the_spec_refuses(over: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _spec(**over)


# --- the recommended HAProxy-exporter selectors, on a real Prometheus --------------

HAPROXY = "haproxy_server_(http_responses|connection_errors|response_errors|retry_warnings|redispatch_warnings)_total"


def test_the_recommended_haproxy_selectors_count_attempts_and_failures(tmp_path: Path) -> None:
    from count_case_prometheus import _shared_stack

    stack = _shared_stack()
    proxy = "web_selectors_test"
    counters = {  # one server's: what HAProxy's exporter exposes, at the step's start
        ("http_responses", "2xx"): 0, ("http_responses", "5xx"): 0,
        ("http_responses", "4xx"): 0, ("connection_errors", None): 0,
        ("response_errors", None): 0, ("retry_warnings", None): 0,
        ("redispatch_warnings", None): 0}

    def expose(server: str, bumps: dict[tuple[str, str | None], int]) -> None:
        for (name, code), n in {**dict.fromkeys(counters, 0), **bumps}.items():
            labels = {"proxy": proxy, "server": server, **({"code": code} if code else {})}
            stack.target.inc(f"haproxy_server_{name}_total", labels, n)
        # an unrelated counter of the server: not an attempt
        stack.target.inc("haproxy_server_bytes_in_total", {"proxy": proxy, "server": server}, 1000)

    def selectors(server: str) -> dict[str, str]:
        base = f'{{__name__=~"{HAPROXY}",proxy="{proxy}",server="{server}"'
        return {"requests": base + "}", "errors": base + ',code=~"5xx|"}'}

    def wait_until(query: str, value: float) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = httpx.get(f"{stack.prometheus.url}/api/v1/query", params={"query": query}).json()
            if r["data"]["result"] and float(r["data"]["result"][0]["value"][1]) == value:
                return
            time.sleep(0.1)
        raise AssertionError(f"{query} never reached {value}")

    expose("ec2", {})
    expose("eks", {})
    wait_until(f'count({{proxy="{proxy}",__name__=~"{HAPROXY}"}})', 14)
    source = build_count_source(PrometheusCountsSpec.model_validate({
        "type": "prometheus", "url": stack.prometheus.url,
        "old": selectors("ec2"), "new": selectors("eks")}))
    since = time.time()
    assert source.counts(since=since, now=since) == EnvCounts(0, 0, 0, 0)
    time.sleep(0.05)
    expose("ec2", {("http_responses", "2xx"): 9, ("http_responses", "4xx"): 1})
    expose("eks", {("http_responses", "2xx"): 5, ("http_responses", "5xx"): 2,
                   ("connection_errors", None): 3, ("response_errors", None): 1,
                   ("retry_warnings", None): 2})
    wait_until(f'sum({{proxy="{proxy}",__name__=~"{HAPROXY}"}})', 23)
    assert source.counts(since=since, now=time.time()) == EnvCounts(10, 0, 13, 8)
