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
import math
import random
import time
from bisect import bisect_right
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
    COUNT_MAX_GAP,
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
def test_a_selector_that_is_not_plain_is_a_plan_error(selector: str) -> None:
    with pytest.raises(ValidationError, match="not a plain series selector") as exc:
        _source({}, new={"requests": selector, "errors": NEW_E})
    assert "rate()/sum()" in str(exc.value)


@pytest.mark.parametrize(("errors", "message"), [
    ('http_requests_total{service="web",env="neww",code=~"5.."}', "does not keep"),
    ('http_requests_total{service="web",env="new"}', "selects the same series"),
])
def test_errors_of_the_same_metric_must_refine_requests(errors: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _source({}, new={"requests": 'http_requests_total{service="web",env="new"}',
                         "errors": errors})
    # another metric for the errors is the user's call
    _source({}, new={"requests": 'http_requests_total{service="web",env="new"}',
                     "errors": 'http_errors_total{env="new"}'})


def test_brackets_inside_label_values_are_plain() -> None:
    selector = 'http_requests_total{env="new",path=~"/api/(v1|v2)/[a-z]+"}'
    errors = 'http_requests_total{env="new",path=~"/api/(v1|v2)/[a-z]+",code=~"5.."}'
    source = _source({selector: _matrix([(99.0, "1")]), OLD_R: _matrix([(99.0, "1")])},
                     new={"requests": selector, "errors": errors})
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


# --- incremental counting: the same counts as one query over the step, bounded queries ---

OLD_OK, OLD_5XX = {"env": "old", "code": "200"}, {"env": "old", "code": "500"}
NEW_OK, NEW_5XX = {"env": "new", "code": "200"}, {"env": "new", "code": "500"}


class History:
    """A fake Prometheus over scripted counter series: each series is a label set and
    its samples ``(stamped at, visible from, value)``; ``selector[Ns]`` at ``time``
    answers the samples stamped in ``(time - N, time]`` that are visible at ``time``
    (a scrape is stamped when it starts and readable a little later). The requests
    selectors select every series of their environment, the errors selectors those
    with ``code="500"``; every query's range is recorded."""

    def __init__(self) -> None:
        self.series: list[tuple[dict[str, str], list[tuple[float, float, int]]]] = []
        self.stamps: dict[int, list[float]] = {}
        self.ranges: list[int] = []

    def add(self, labels: dict[str, str], samples: list[tuple[float, int]],
            delays: list[float] | None = None) -> None:
        visible, seen = [], -1e18
        for i, (at, _) in enumerate(samples):  # a series' samples become visible in order
            seen = max(seen, at + (delays[i] if delays else 0.0))
            visible.append(seen)
        kept = [(at, vis, v) for (at, v), vis in zip(samples, visible, strict=True)]
        self.series.append((labels, kept))
        self.stamps[id(kept)] = [at for at, _ in samples]

    def _selects(self, selector: str, labels: dict[str, str]) -> bool:
        env = "old" if 'env="old"' in selector else "new"
        return labels["env"] == env and ("5.." not in selector or labels["code"] == "500")

    def read(self, selector: str, at: float,
             seconds: int) -> list[tuple[dict[str, str], list[tuple[float, int]]]]:
        """What ``selector[<seconds>s]`` at ``at`` answers: each series with a sample."""
        out = []
        for labels, samples in self.series:
            if self._selects(selector, labels):
                stamps = self.stamps[id(samples)]  # time-ordered
                inside = samples[bisect_right(stamps, at - seconds):bisect_right(stamps, at)]
                visible = [(t, v) for t, vis, v in inside if vis <= at]
                if visible:
                    out.append((labels, visible))
        return out

    def handler(self, request: httpx.Request) -> httpx.Response:
        params = parse_qs(urlsplit(str(request.url)).query)
        selector, span = params["query"][0][:-2].rsplit("[", 1)
        at, seconds = float(params["time"][0]), int(span)
        self.ranges.append(seconds)
        result = [{"metric": {"__name__": "http_requests_total", **labels},
                   "values": [[t, str(v)] for t, v in samples]}
                  for labels, samples in self.read(selector, at, seconds)]
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, content=json.dumps(body).encode())

    def one_shot(self, since: float, now: float) -> EnvCounts | str:
        """The counts of one query over the whole step (``[(now - since) + lookback]``,
        as before counting was incremental): :func:`counter_increase` of each series."""
        seconds = math.ceil(now - since) + COUNT_LOOKBACK
        found, total = {}, {}
        for selector in (OLD_R, OLD_E, NEW_R, NEW_E):
            series = self.read(selector, now, seconds)
            found[selector] = bool(series)
            total[selector] = sum(counter_increase(samples, since) for _, samples in series)
        if not found[OLD_R] or not found[NEW_R]:
            return "no data"
        return EnvCounts(total[OLD_R], total[OLD_E], total[NEW_R], total[NEW_E])

    def source(self) -> PrometheusCounts:
        return PrometheusCounts.from_spec(_spec(), transport=httpx.MockTransport(self.handler))


def _outcome(source: PrometheusCounts, since: float, now: float) -> EnvCounts | str:
    try:
        return source.counts(since=since, now=now)
    except NoData:
        return "no data"


def _scrapes(start: float, end: float, every: float = 15.0) -> list[float]:
    return [start + i * every for i in range(int((end - start) // every) + 1)]


def _scripted() -> list[History]:
    """Histories a step meets: resets, pods born and gone, gaps longer than the lookback."""
    s = SINCE
    out = []
    h = History()  # steady traffic on both sides, a few errors on new
    h.add(OLD_OK, [(t, 1000 + int(t - s) * 2) for t in _scrapes(s - 290, s + 3000)])
    h.add(NEW_OK, [(t, 350 + int(t - s)) for t in _scrapes(s - 295, s + 3000)])
    h.add(NEW_5XX, [(t, 3 + int(t - s + 280) // 300) for t in _scrapes(s - 280, s + 3000)])
    out.append(h)
    h = History()  # resets: new restarted twice (one reset to 0 seen, one to a low value)
    h.add(OLD_OK, [(t, int(t - s + 400)) for t in _scrapes(s - 200, s + 2400)])
    h.add(NEW_OK, [(t, 500 + int(t - s)) for t in _scrapes(s - 100, s + 600)]
          + [(t, int(t - s - 615)) for t in _scrapes(s + 615, s + 1500)]
          + [(t, 2 + int(t - s - 1515) // 3) for t in _scrapes(s + 1515, s + 2400)])
    h.add(NEW_5XX, [(t, 40 + int(t - s) // 60) for t in _scrapes(s - 100, s + 600)]
          + [(t, int(t - s - 615) // 60) for t in _scrapes(s + 615, s + 2400)])
    out.append(h)
    h = History()  # pods: one gone before the step, one gone mid-step, two born mid-step
    h.add({**OLD_OK, "pod": "a"}, [(t, 970 + int(t - s)) for t in _scrapes(s - 900, s - 400)])
    h.add({**OLD_OK, "pod": "b"}, [(t, 259 + int(t - s)) for t in _scrapes(s - 250, s + 800)])
    h.add({**OLD_OK, "pod": "c"}, [(t, int(t - s - 700)) for t in _scrapes(s + 700, s + 2400)])
    h.add({**NEW_OK, "pod": "d"}, [(t, 35 + int(t - s) // 2) for t in _scrapes(s - 60, s + 2400)])
    h.add({**NEW_5XX, "pod": "e"}, [(t, 1 + int(t - s - 1200) // 90)
                                    for t in _scrapes(s + 1200, s + 2400)])
    out.append(h)
    h = History()  # a target down for 20 minutes (longer than the lookback), back reset
    h.add(OLD_OK, [(t, 30 + int(t - s)) for t in _scrapes(s - 30, s + 2400)])
    h.add(NEW_OK, [(t, 300 + int(t - s)) for t in _scrapes(s - 30, s + 500)]
          + [(t, int(t - s - 1700)) for t in _scrapes(s + 1700, s + 2400)])
    h.add(NEW_5XX, [(t, 7) for t in _scrapes(s - 30, s + 500)]
          + [(t, 2 + int(t - s - 1700) // 100) for t in _scrapes(s + 1700, s + 2400)])
    out.append(h)
    return out


def _random(seed: int) -> History:
    """Per environment, pods with random births, deaths, restarts, outages and scrape
    delays (the first pod lives through the step); each pod has an ok and a 5xx
    series (requests select both, errors the 5xx one)."""
    rng = random.Random(seed)
    s = SINCE
    h = History()
    for env in ("old", "new"):
        for pod in range(rng.randint(1, 4)):
            born = s - 1000 if not pod else rng.choice(
                [s - 1000, s - rng.uniform(0, 600), s + rng.uniform(0, 3000)])
            gone = s + 4000 if not pod else rng.choice([s + 4000, born + rng.uniform(60, 3000)])
            ok = fail = 0
            samples: dict[str, list[tuple[float, int]]] = {"200": [], "500": []}
            t = born
            while t < gone:
                if rng.random() < 0.01:  # a restart: both counters from 0
                    ok = fail = 0
                if rng.random() < 0.005:  # an outage of up to 20 minutes
                    t += rng.uniform(60, 1200)
                    ok = fail = 0 if rng.random() < 0.5 else ok
                ok += rng.randint(0, 30)
                fail += rng.randint(0, 2) if rng.random() < 0.3 else 0
                samples["200"].append((t, ok))
                samples["500"].append((t, fail))
                t += rng.choice([5.0, 15.0, 15.0, 30.0]) + rng.uniform(-0.5, 0.5)
            for code, got in samples.items():
                delays = [rng.uniform(0, 40) for _ in got]
                h.add({"env": env, "code": code, "pod": str(pod)}, got, delays)
    return h


def _checks(rng: random.Random, end: float) -> list[float]:
    """A step's checks: the mark at since, then every interval with jitter and pauses
    (at most COUNT_MAX_GAP long)."""
    out, t = [SINCE], SINCE
    while t < end:
        t += rng.choice([15.0, 15.0, 15.0, 1.0, 60.0, 0.0]) + rng.uniform(0, 3)
        if rng.random() < 0.02:
            t += rng.uniform(300, COUNT_MAX_GAP - 3)
        out.append(t)
    return out


@pytest.mark.parametrize("case", [f"scripted-{i}" for i in range(4)]
                         + [f"random-{seed}" for seed in range(12)])
def test_incremental_counts_equal_one_query_over_the_step(case: str) -> None:
    kind, number = case.split("-")
    history = _scripted()[int(number)] if kind == "scripted" else _random(int(number))
    source = history.source()
    checks = _checks(random.Random(case), SINCE + 4200)
    last = EnvCounts(0, 0, 0, 0)
    for now in checks:
        got = _outcome(source, SINCE, now)
        expected = history.one_shot(SINCE, now)
        assert _outcome(history.source(), SINCE, now) == expected  # a first check is one
        assert got == expected, (case, now - SINCE)
        if isinstance(got, EnvCounts):  # and so never down
            assert (got.old_requests, got.old_errors, got.new_requests, got.new_errors) >= \
                   (0, 0, 0, 0)
            for a, b in zip(last.as_dict().values(), got.as_dict().values(), strict=True):
                assert b >= a, (case, now - SINCE, last, got)
            last = got
    assert last != EnvCounts(0, 0, 0, 0)


def test_a_new_since_starts_over() -> None:
    h = History()
    h.add(OLD_OK, [(t, 60 + int(t - SINCE)) for t in _scrapes(SINCE - 60, SINCE + 3000)])
    h.add(NEW_OK, [(t, 120 + 2 * int(t - SINCE)) for t in _scrapes(SINCE - 60, SINCE + 3000)])
    source = h.source()
    source.counts(since=SINCE, now=SINCE)
    assert source.counts(since=SINCE, now=SINCE + 600) == EnvCounts(600, 0, 1200, 0)
    h.ranges.clear()
    step = SINCE + 600
    assert source.counts(since=step, now=step) == EnvCounts(0, 0, 0, 0)
    assert h.ranges == [COUNT_LOOKBACK] * 4  # the new step's mark, not the gap since the last
    assert source.counts(since=step, now=step + 30) == EnvCounts(30, 0, 60, 0)


def test_a_failed_check_changes_nothing() -> None:
    h = History()
    h.add(OLD_OK, [(t, 60 + int(t - SINCE)) for t in _scrapes(SINCE - 60, SINCE + 3000)])
    h.add(NEW_OK, [(t, 60 + int(t - SINCE)) for t in _scrapes(SINCE - 60, SINCE + 3000)])
    h.add(NEW_5XX, [(t, 6 + int(t - SINCE) // 10) for t in _scrapes(SINCE - 60, SINCE + 3000)])
    fail = {"on": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if fail["on"] and 'env="new"' in str(request.url.params["query"]):
            return httpx.Response(503, content=b"overloaded")
        return h.handler(request)

    source = PrometheusCounts.from_spec(_spec(), transport=httpx.MockTransport(handler))
    source.counts(since=SINCE, now=SINCE)
    assert source.counts(since=SINCE, now=SINCE + 300) == EnvCounts(300, 0, 300 + 30, 30)
    fail["on"] = True
    with pytest.raises(ProviderError):
        source.counts(since=SINCE, now=SINCE + 900)
    fail["on"] = False
    h.ranges.clear()
    assert source.counts(since=SINCE, now=SINCE + 1500) == EnvCounts(1500, 0, 1500 + 150, 150)
    assert h.ranges == [1200 + COUNT_LOOKBACK] * 4  # from the last check that succeeded


def test_a_ten_hour_step_sends_bounded_queries() -> None:
    """A 10-hour step checked every 15 s, with a 3-hour stall of the process in it:
    every query reads at most the gap since the previous check (capped) plus the
    lookback, and the counts are exact (no reset in the stall) and never go down."""
    hours = 10 * 3600
    h = History()
    for env, labels in (("old", OLD_OK), ("new", NEW_OK)):
        h.add(labels, [(t, (int(t - SINCE) + 285) * (2 if env == "old" else 1) + 7)
                       for t in _scrapes(SINCE - 285, SINCE + hours + 60)])
    h.add(NEW_5XX, [(t, 3 + int(t - SINCE) // 100)
                    for t in _scrapes(SINCE - 285, SINCE + hours + 60)])
    source = h.source()
    stall = (SINCE + 4 * 3600, SINCE + 7 * 3600)
    checks = [SINCE + 15.0 * i for i in range(hours // 15 + 1)]
    checks = [t for t in checks if not stall[0] < t < stall[1]]
    last = EnvCounts(0, 0, 0, 0)
    previous = None
    for now in checks:
        h.ranges.clear()
        got = source.counts(since=SINCE, now=now)
        assert got.as_dict() == {"old_requests": 2 * int(now - SINCE) // 15 * 15,
                                 "old_errors": 0,
                                 "new_requests": int(now - SINCE) // 15 * 15
                                 + int(now - SINCE) // 15 * 15 // 100,
                                 "new_errors": int(now - SINCE) // 15 * 15 // 100}
        assert all(b >= a for a, b in zip(last.as_dict().values(), got.as_dict().values(),
                                          strict=True))
        last = got
        gap = 0 if previous is None else now - previous
        assert h.ranges == [min(gap, COUNT_MAX_GAP) + COUNT_LOOKBACK] * 4
        assert max(h.ranges) <= COUNT_MAX_GAP + COUNT_LOOKBACK
        previous = now
    assert last == EnvCounts(2 * hours, 0, hours + hours // 100, hours // 100)


def test_a_stall_longer_than_the_cap_misses_only_what_it_did_not_read() -> None:
    """Across a gap longer than COUNT_MAX_GAP a reset in the unread part is missed:
    lower than one query over the step, and still never down."""
    h = History()
    h.add(OLD_OK, [(t, 60 + int(t - SINCE)) for t in _scrapes(SINCE - 60, SINCE + 4 * 3600)])
    h.add(NEW_OK, [(t, 100 + int(t - SINCE)) for t in _scrapes(SINCE - 60, SINCE + 1800)]
          + [(t, int(t - SINCE - 1815)) for t in _scrapes(SINCE + 1815, SINCE + 4 * 3600)])
    source = h.source()
    source.counts(since=SINCE, now=SINCE)
    before = source.counts(since=SINCE, now=SINCE + 600)
    assert before == EnvCounts(600, 0, 600, 0)
    now = SINCE + 3 * 3600
    h.ranges.clear()
    after = source.counts(since=SINCE, now=now)
    assert h.ranges == [COUNT_MAX_GAP + COUNT_LOOKBACK] * 4
    whole = h.one_shot(SINCE, now)
    assert whole == EnvCounts(3 * 3600, 0, 1800 + 3 * 3600 - 1815, 0)
    # old (no reset) is exact; new's reset in the unread part is missed: from its last
    # sample read (700 at +600) to its first one after the stall, as a rise
    assert after == EnvCounts(3 * 3600, 0, 3 * 3600 - 1815 - 100, 0)
    assert after.new_requests < whole.new_requests and after.new_requests >= before.new_requests
