"""The Prometheus latency source of ``compare_latency`` gates: what it makes of
Prometheus's answers (through an httpx mock transport), whose clock it queries
at, its plan model, and a histogram scraped by a real Prometheus (the shared
stack of count_case_prometheus.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError

from shiftover.demo.prometheus import free_port
from shiftover.errors import NoData, ProviderError
from shiftover.providers.compare_latency import (
    CompareLatencyGate,
    LatencySource,
    build_latency_source,
)
from shiftover.providers.prometheus import PrometheusLatency, PrometheusLatencySpec

URL = "http://shiftover:s3cret@prom.example:9090"
OLD = 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{env="old"}[15s])))'
NEW = 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{env="new"}[15s])))'
NOW = 2000.0  # the engine's clock: never sent (see PrometheusLatency)
TS = 1990.25  # Prometheus's clock, 10 s behind


def _spec(**over: Any) -> PrometheusLatencySpec:
    raw: dict[str, Any] = {"type": "prometheus", "url": URL, "old": OLD, "new": NEW}
    raw.update(over)
    return PrometheusLatencySpec.model_validate(raw)


def _vector(*values: str, ts: Any = TS) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": f"p{i}"}, "value": [ts, v]} for i, v in enumerate(values)]}}


def _scalar(value: str, ts: Any = TS) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "scalar", "result": [ts, value]}}


EMPTY = _vector()
Seen = list[dict[str, Any]]


def _source(answers: dict[str, Any], seen: Seen | None = None, **over: Any) -> PrometheusLatency:
    """A source whose Prometheus answers ``answers[query]``: a body, an (HTTP
    status, body) pair, raw bytes, or an exception to raise."""

    def handler(request: httpx.Request) -> httpx.Response:
        params = parse_qs(urlsplit(str(request.url)).query)
        if seen is not None:
            seen.append({"path": request.url.path, **{k: v[0] for k, v in params.items()},
                         "authorization": request.headers.get("authorization")})
        answer = answers.get(params["query"][0], EMPTY)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, bytes):
            return httpx.Response(502, content=answer)
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return httpx.Response(status, content=json.dumps(body).encode())

    return PrometheusLatency.from_spec(_spec(**over), transport=httpx.MockTransport(handler))


def _clean(exc: ProviderError) -> None:
    """An error a plan's author can act on: not no data, a hint, no password."""
    assert not isinstance(exc, NoData)
    assert exc.hint
    assert "s3cret" not in str(exc)


# --- figures and whose clock --------------------------------------------------------


def test_both_figures_at_prometheus_now_and_one_instant() -> None:
    seen: Seen = []
    source = _source({OLD: _vector("0.2125"), NEW: _vector("0.4375", ts=TS)}, seen)
    assert source.latency(now=NOW) == (0.2125, 0.4375)
    assert [s["query"] for s in seen] == [OLD, NEW]
    assert all(s["path"] == "/api/v1/query" and s["timeout"] == "5" for s in seen)
    assert "time" not in seen[0]  # Prometheus's own now, not the engine's
    assert seen[1]["time"] == f"{TS:.3f}"  # new at the instant old was evaluated at
    expected = "Basic " + base64.b64encode(b"shiftover:s3cret").decode()
    assert all(s["authorization"] == expected for s in seen)


def test_a_scalar_is_a_figure() -> None:
    assert _source({OLD: _scalar("0.1"), NEW: _scalar("0")}).latency(now=NOW) == (0.1, 0.0)


@pytest.mark.parametrize("nothing", [EMPTY, _vector("NaN")], ids=["empty", "nan"])
def test_no_figure_for_new_is_none(nothing: dict[str, Any]) -> None:
    assert _source({OLD: _vector("0.3"), NEW: nothing}).latency(now=NOW) == (0.3, None)


def test_no_series_for_old_is_none_and_new_is_read_at_prometheus_now() -> None:
    seen: Seen = []
    assert _source({NEW: _vector("0.3")}, seen).latency(now=NOW) == (None, 0.3)
    assert "time" not in seen[0] and "time" not in seen[1]


def test_nan_for_old_is_none_and_new_shares_its_instant() -> None:
    seen: Seen = []
    source = _source({OLD: _vector("NaN"), NEW: _vector("0.3")}, seen)
    assert source.latency(now=NOW) == (None, 0.3)
    assert seen[1]["time"] == f"{TS:.3f}"


@pytest.mark.parametrize("old", [EMPTY, _vector("NaN"), _scalar("NaN")])
@pytest.mark.parametrize("new", [EMPTY, _vector("NaN")])
def test_neither_figure_is_no_data(old: dict[str, Any], new: dict[str, Any]) -> None:
    with pytest.raises(NoData) as exc:
        _source({OLD: old, NEW: new}).latency(now=NOW)
    assert OLD in str(exc.value) and NEW in str(exc.value)
    assert "no traffic" in str(exc.value.hint)
    assert "s3cret" not in str(exc.value)


# --- what cannot be a figure ---------------------------------------------------------


@pytest.mark.parametrize("env", ["old", "new"])
def test_several_series_is_an_error_saying_aggregate(env: str) -> None:
    answers = {OLD: _vector("0.1"), NEW: _vector("0.2")}
    answers[OLD if env == "old" else NEW] = _vector("0.1", "0.2", "0.3")
    with pytest.raises(ProviderError, match="returned 3 series") as exc:
        _source(answers).latency(now=NOW)
    _clean(exc.value)
    assert "aggregate the query to one series" in str(exc.value.hint)
    assert "sum by (le)" in str(exc.value.hint)


@pytest.mark.parametrize("value", ["-0.5", "+Inf", "-Inf"])
@pytest.mark.parametrize("env", ["old", "new"])
def test_a_negative_or_infinite_latency_is_an_error(value: str, env: str) -> None:
    answers = {OLD: _vector("0.1"), NEW: _vector("0.2")}
    answers[OLD if env == "old" else NEW] = _vector(value)
    with pytest.raises(ProviderError, match=f"the {env} environment's latency query") as exc:
        _source(answers).latency(now=NOW)
    _clean(exc.value)
    assert "finite number of seconds" in str(exc.value)


def test_a_broken_query_is_an_error_even_when_the_other_has_no_data() -> None:
    answers = {NEW: (400, {"status": "error", "errorType": "bad_data",
                           "error": "1:12: parse error: unexpected <EOF>"})}
    with pytest.raises(ProviderError, match="rejected") as exc:
        _source(answers).latency(now=NOW)
    _clean(exc.value)
    assert "parse error" in str(exc.value) and "fix the PromQL" in str(exc.value.hint)


def test_a_query_prometheus_cannot_run_is_an_error() -> None:
    answers = {OLD: (503, {"status": "error", "errorType": "timeout",
                           "error": "query timed out in expression evaluation"})}
    with pytest.raises(ProviderError, match="timed out") as exc:
        _source(answers).latency(now=NOW)
    _clean(exc.value)


@pytest.mark.parametrize("body", [
    ["not", "prometheus"],
    {"status": "success"},
    {"status": "success", "data": {"resultType": "string", "result": [1.0, "x"]}},
    {"status": "success", "data": {"resultType": "matrix", "result": []}},
    {"status": "success", "data": {"resultType": "vector", "result": ["x"]}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
    {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1.0]}]}},
    _vector("fast"),
    _vector("0.1", ts="yesterday"),
    _scalar("0.1", ts=None),
    (404, {"error": "not found"}),
    b"<html>502 Bad Gateway from http://shiftover:s3cret@prom.example</html>",
], ids=lambda b: json.dumps(b, default=str)[:40])
def test_garbage_is_a_provider_error_not_a_crash(body: Any) -> None:
    with pytest.raises(ProviderError) as exc:
        _source({OLD: _vector("0.1"), NEW: body}).latency(now=NOW)
    _clean(exc.value)


@pytest.mark.parametrize(("raised", "words"), [
    (httpx.ConnectError("connection refused by shiftover:s3cret@prom.example"), "cannot reach"),
    (httpx.ReadTimeout("timed out"), "did not answer within 5s"),
    (httpx.RemoteProtocolError("server disconnected"), "cannot reach"),
])
def test_transport_failures_are_provider_errors(raised: Exception, words: str) -> None:
    with pytest.raises(ProviderError, match=words) as exc:
        _source({OLD: raised}).latency(now=NOW)
    _clean(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_a_refused_connection_is_a_provider_error() -> None:
    source = build_latency_source(_spec(url=f"http://shiftover:s3cret@127.0.0.1:{free_port()}",
                                        timeout=2.0))
    with pytest.raises(ProviderError, match="cannot reach Prometheus") as exc:
        source.latency(now=NOW)
    _clean(exc.value)
    assert "http://***@127.0.0.1" in str(exc.value)


# --- the plan model ----------------------------------------------------------------


def test_the_spec_is_a_compare_latency_gates_source() -> None:
    gate = CompareLatencyGate.model_validate({"name": "p95 vs old", "type": "compare_latency",
                                              "source": {"type": "prometheus", "url": URL,
                                                         "old": OLD, "new": NEW,
                                                         "timeout": "3s"}})
    source = build_latency_source(gate.source)
    assert isinstance(source, PrometheusLatency) and isinstance(source, LatencySource)
    assert source.timeout == 3.0 and (source.old, source.new) == (OLD, NEW)
    assert source.describe() == f"prometheus http://***@prom.example:9090: {OLD} (old) vs {NEW} (new)"
    assert "s3cret" not in repr(source)


@pytest.mark.parametrize("over", [
    {"url": "prom:9090"},
    {"new": OLD},
    {"new": OLD.replace("(0.95, ", "(0.95,  ")},  # the same query, spaced differently
    {"new": ""},
    {"new": None},
    {"timeout": "0s"},
    {"extra": 1},
])
def test_the_spec_refuses(over: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _spec(**over)


def test_the_spec_needs_both_queries() -> None:
    with pytest.raises(ValidationError):
        PrometheusLatencySpec.model_validate({"type": "prometheus", "url": URL, "old": OLD})


# --- a histogram on a real Prometheus -------------------------------------------------

METRIC = "shiftover_latency_test_seconds_bucket"
BOUNDS = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")


def _quantile(bounds: tuple[str, ...], cumulative: list[int], q: float) -> float:
    """histogram_quantile's linear interpolation, for buckets that end below +Inf."""
    rank = q * cumulative[-1]
    lower, below = 0.0, 0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            return lower + (float(bound) - lower) * (rank - below) / (count - below)
        lower, below = float(bound), count
    raise AssertionError("rank beyond the last bucket")


def test_p95_of_a_real_histogram_per_environment() -> None:
    from count_case_prometheus import SECRET, _shared_stack

    stack = _shared_stack()
    # one histogram per (env, pod), as each pod's client library would expose it
    pods = {"old": ("a",), "new": ("a", "b")}

    def observe(env: str, pod: str, per_bucket: tuple[int, ...]) -> None:
        """Add observations: ``per_bucket[i]`` in bucket i (not cumulative)."""
        running = 0
        for bound, n in zip(BOUNDS, per_bucket, strict=True):
            running += n
            stack.target.inc(METRIC, {"env": env, "pod": pod, "le": bound}, running)

    def scraped(total: int) -> Callable[[], bool]:
        def check() -> bool:
            r = httpx.get(f"{stack.prometheus.url}/api/v1/query",
                          params={"query": f"sum({METRIC})"}, timeout=2.0).json()
            result = r["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) == total
        return check

    def wait(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError("Prometheus did not scrape the histogram within 15s")

    for env, names in pods.items():
        for pod in names:
            observe(env, pod, (0,) * len(BOUNDS))  # every bucket series exists from the start
    wait(scraped(0))
    time.sleep(1.5)  # a second sample of the zeros, so that rate() has a start

    def query(env: str) -> str:
        return f'histogram_quantile(0.95, sum by (le) (rate({METRIC}{{env="{env}"}}[1m])))'

    source = build_latency_source(PrometheusLatencySpec.model_validate({
        "type": "prometheus", "url": f"http://shiftover:{SECRET}@{stack.prometheus.address}",
        "old": query("old"), "new": query("new"), "timeout": 2.0}))
    with pytest.raises(NoData):  # no traffic yet: zero rates, NaN quantiles
        source.latency(now=time.time())

    old = (20, 60, 20, 0, 0, 0)
    observe("old", "a", old)
    wait(scraped(sum(sum(old[: i + 1]) for i in range(len(old)))))
    old_p95 = _quantile(BOUNDS, [sum(old[: i + 1]) for i in range(len(old))], 0.95)
    assert old_p95 == pytest.approx(0.1 + 0.15 * 15 / 20)
    figures = source.latency(now=time.time())
    assert figures[1] is None and figures[0] == pytest.approx(old_p95, rel=1e-6)

    new_a, new_b = (10, 20, 20, 10, 0, 0), (0, 10, 20, 10, 0, 0)  # two pods of new
    observe("new", "a", new_a)
    observe("new", "b", new_b)
    new = tuple(a + b for a, b in zip(new_a, new_b, strict=True))
    cumulative = [sum(new[: i + 1]) for i in range(len(new))]
    wait(scraped(sum(sum(old[: i + 1]) for i in range(len(old))) + sum(cumulative)))
    new_p95 = _quantile(BOUNDS, cumulative, 0.95)
    assert new_p95 == pytest.approx(0.25 + 0.25 * 15 / 20)
    old_figure, new_figure = source.latency(now=time.time())
    assert old_figure == pytest.approx(old_p95, rel=1e-6)
    assert new_figure == pytest.approx(new_p95, rel=1e-6)

    # without sum by (le), new's two pods are two series: the query must aggregate
    unaggregated = build_latency_source(PrometheusLatencySpec.model_validate({
        "type": "prometheus", "url": f"http://shiftover:{SECRET}@{stack.prometheus.address}",
        "old": query("old"),
        "new": f'histogram_quantile(0.95, rate({METRIC}{{env="new"}}[1m]))'}))
    with pytest.raises(ProviderError, match="returned 2 series") as exc:
        unaggregated.latency(now=time.time())
    assert not isinstance(exc.value, NoData) and SECRET not in str(exc.value)
    assert "aggregate the query to one series" in str(exc.value.hint)
