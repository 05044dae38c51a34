"""``shiftover load --watch``: the plan's gates and extra Prometheus queries,
evaluated once per step, against a real Prometheus (scraping a metrics target
the tests control, with an alert rule) and a real HAProxy (the plan's router).
Failures of what is watched are recorded in the row, never raised; bad input
is refused before any load would be sent. Loops are bounded; every process is
stopped; nothing asserts how long anything took."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shiftover.demo.haproxy import HAProxyProcess
from shiftover.demo.prometheus import MetricsTarget, PrometheusProcess, free_port
from shiftover.errors import BadInput, PlanError
from shiftover.loadtest.watch import (
    GateObservation,
    QueryObservation,
    Watch,
    WatchRow,
    first_failures,
    parse_queries,
    plan_prometheus_url,
    watch_text,
)
from shiftover.plan import parse_plan_text
from shiftover.testing import FakeClock

WAIT = 40.0  # bound on every poll loop, seconds (scrape 1 s + rule evaluation 1 s)

RULES: list[dict[str, Any]] = [
    {
        "alert": "WebErrors",
        "expr": "web_errors > 0",
        "for": "0s",
        "labels": {"service": "web", "severity": "page"},
    }
]


@dataclass(frozen=True)
class Env:
    target: MetricsTarget
    prometheus: PrometheusProcess
    haproxy: HAProxyProcess


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed (apt-get install {binary})", pytrace=False)


def _reset(target: MetricsTarget) -> None:
    target.set("web_errors", 0)
    for pod in ("web-1", "web-2"):
        target.set("replicas", 1, {"pod": pod})
    target.remove("replicas", {"pod": "web-3"})
    target.set("node_up", 1, {"node": "a"})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    _need("prometheus")
    _need("haproxy")
    with MetricsTarget() as target:
        _reset(target)
        hap_dir = tmp_path_factory.mktemp("haproxy")
        with (
            HAProxyProcess(
                hap_dir,
                old_address=target.address,
                new_address=target.address,
                old_name="ec2",
                new_name="eks",
                old_weight=256,
                new_weight=0,
            ) as haproxy,
            PrometheusProcess(
                tmp_path_factory.mktemp("prometheus"),
                jobs=[("app", [target.address])],
                rules=RULES,
            ) as prom,
        ):
            prom.wait_for_targets(timeout=30)
            yield Env(target, prom, haproxy)


@pytest.fixture
def fresh(env: Env) -> Iterator[Env]:
    """The module's servers with the target's metrics back to normal, before and after."""
    _reset(env.target)
    yield env
    _reset(env.target)


def _plan(
    tmp_path: Path,
    *,
    socket: str,
    gates: str,
    name: str = "plan.yaml",
) -> Path:
    path = tmp_path / name
    path.write_text(
        f"""\
service: web
router:
  type: haproxy
  socket: {socket}
  backend: web
  old: ec2
  new: eks
steps: [5, 50, 100]
bake: 10s
normal_state:
{gates}
"""
    )
    return path


def _gates(prom_url: str, health_url: str) -> str:
    return f"""\
  - name: web errors
    type: prometheus
    url: {prom_url}
    query: max(web_errors)
    max: 0
  - name: web alerts
    type: prometheus_alerts
    url: {prom_url}
    labels: {{service: web}}
  - name: health
    type: http
    url: {health_url}
"""


def _poll(observe: Callable[[], WatchRow], done: Callable[[WatchRow], bool]) -> list[WatchRow]:
    """Rows from ``observe`` until ``done(row)``; bounded by WAIT."""
    rows: list[WatchRow] = []
    deadline = time.monotonic() + WAIT
    while True:
        rows.append(observe())
        if done(rows[-1]):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT} s; last row: {rows[-1]}")
        time.sleep(0.25)


def _gate(row: WatchRow, name: str) -> GateObservation:
    return next(g for g in row.gates if g.name == name)


def _query(row: WatchRow, name: str) -> QueryObservation:
    return next(q for q in row.queries if q.name == name)


# --- input, no servers -----------------------------------------------------------


def test_queries_are_name_equals_promql() -> None:
    assert parse_queries(['replicas=sum(kube_pods{deployment="web"})', " nodes = count(up) "]) == (
        ("replicas", 'sum(kube_pods{deployment="web"})'),
        ("nodes", "count(up)"),
    )
    assert parse_queries([]) == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("up", "is not NAME=PROMQL"),
        ("=up", "is not NAME=PROMQL"),
        ("replicas=", "is not NAME=PROMQL"),
        ('sum(x{a="b"})', "is not a name"),
        ("2x=up", "is not a name"),
    ],
)
def test_a_malformed_query_is_refused_with_an_example_that_works(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        parse_queries([text])
    hint = info.value.hint
    assert hint is not None and "--watch-query " in hint
    # the example in the hint parses when pasted into a shell
    pasted = shlex.split(hint.split(": ", 1)[1])
    assert pasted[0] == "--watch-query"
    assert parse_queries([pasted[1]])[0][0] == "replicas"


def test_a_query_name_given_twice_is_refused() -> None:
    with pytest.raises(BadInput, match="given twice"):
        parse_queries(["a=up", "a=count(up)"])


def test_queries_need_a_prometheus_to_ask(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="needs a Prometheus") as info:
        Watch.open(None, ["replicas=up"], None)
    assert "--watch-prometheus http://" in str(info.value)
    only_http = _plan(
        tmp_path,
        socket="/nonexistent.sock",
        gates="  - name: health\n    type: http\n    url: http://127.0.0.1:1/\n",
    )
    with pytest.raises(BadInput, match="has no gate that reads Prometheus"):
        Watch.open(only_http, ["replicas=up"], None)
    # no queries: nothing to ask, nothing refused
    assert Watch.open(only_http, [], None).prometheus is None
    for bad in ("127.0.0.1:9090", "ftp://x:9090", "http://"):
        with pytest.raises(BadInput, match="not an http"):
            Watch.open(None, ["replicas=up"], bad)


def test_plan_errors_are_the_plan_loaders_own(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="plan file not found") as missing:
        Watch.open(tmp_path / "nope.yaml", [], None)
    assert "nope.yaml" in str(missing.value)
    bad = _plan(
        tmp_path,
        socket="/x.sock",
        gates="  - name: g\n    type: prometheus\n"
        "    url: http://127.0.0.1:9090\n    query: up\n    maxx: 1\n",
    )
    with pytest.raises(PlanError) as info:
        Watch.open(bad, [], None)
    assert f"{bad}:" in str(info.value) and "maxx" in str(info.value)


def test_the_default_prometheus_is_the_plans_first_gate_that_reads_it(tmp_path: Path) -> None:
    text = _plan(
        tmp_path,
        socket="/x.sock",
        gates="""\
  - name: health
    type: http
    url: http://127.0.0.1:1/
  - name: alerts
    type: prometheus_alerts
    url: http://alertmanager:9093
  - name: latency
    type: compare_latency
    source:
      type: prometheus
      url: http://prom-a:9090/
      old: 'histogram_quantile(0.95, sum by (le) (rate(x_bucket{env="old"}[15s])))'
      new: 'histogram_quantile(0.95, sum by (le) (rate(x_bucket{env="new"}[15s])))'
  - name: errors
    type: prometheus
    url: http://prom-b:9090
    query: max(web_errors)
    max: 0
""",
    ).read_text()
    loaded = parse_plan_text(text, filename="plan.yaml")
    assert plan_prometheus_url(loaded) == ("http://prom-a:9090", "latency")
    watch = Watch.from_plan(loaded, ["up=up"], None)
    assert watch.prometheus == "http://prom-a:9090"
    assert watch.prometheus_from == "plan gate 'latency'"
    # --prometheus wins over the plan
    assert Watch.from_plan(loaded, ["up=up"], "http://prom-c:9090/").prometheus == (
        "http://prom-c:9090"
    )


def test_a_watch_of_nothing_observes_an_empty_row_at_the_clocks_time() -> None:
    clock = FakeClock(1_800_000_123.0)
    watch = Watch.open(None, [], None, clock=clock)
    row = watch.observe(step=2)
    assert row == WatchRow(t=1_800_000_123.0, gates=(), queries=(), step=2)
    assert row.to_dict() == {
        "t": 1_800_000_123.0,
        "step": 2,
        "new_percent": None,
        "router_error": None,
        "gates": [],
        "queries": [],
    }
    assert watch.describe() == "watching nothing"


# --- real Prometheus and HAProxy --------------------------------------------------


def test_replicas_grow_and_a_gate_fails_while_the_load_rises(fresh: Env, tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        socket=fresh.haproxy.socket_path,
        gates=_gates(fresh.prometheus.url, f"http://{fresh.target.address}/metrics"),
    )
    watch = Watch.open(
        plan,
        [
            "replicas=replicas",  # two series, summed
            "nodes=count(node_up)",
            "absent=nothing_like_this_metric",
            "range=replicas[1m]",
            "broken=sum(rate(replicas[1m]",
        ],
        None,
    )
    assert watch.prometheus == fresh.prometheus.url
    assert "3 gates of" in watch.describe() and "5 queries on" in watch.describe()

    # step 0: all normal (wait until Prometheus has the reset values)
    first = _poll(
        lambda: watch.observe(step=0),
        lambda r: _query(r, "replicas").value == 2 and all(g.verdict == "PASS" for g in r.gates),
    )[-1]
    assert first.new_percent == 0.0 and first.router_error is None
    assert [g.name for g in first.gates] == ["web errors", "web alerts", "health"]
    assert _gate(first, "web errors").value == "0"
    assert _query(first, "replicas").series == 2
    assert _query(first, "nodes").value == 1
    absent = _query(first, "absent")
    assert (absent.value, absent.error, absent.note, absent.series) == (None, None, "no series", 0)
    range_error = _query(first, "range").error
    assert range_error is not None and "range vector" in range_error
    broken = _query(first, "broken").error
    assert broken is not None and "rejected" in broken and "bad_data" in broken

    # the "load" rises: a third replica comes up, and errors appear
    fresh.target.set("replicas", 1, {"pod": "web-3"})
    fresh.target.set("web_errors", 3)
    later = _poll(
        lambda: watch.observe(step=1),
        lambda r: (
            _query(r, "replicas").value == 3
            and _gate(r, "web errors").verdict == "FAIL"
            and _gate(r, "web alerts").verdict == "FAIL"
        ),
    )
    rows = [first, *later]
    last = rows[-1]
    assert _gate(last, "web errors").value == "3"
    assert _gate(last, "health").verdict == "PASS"

    fails = first_failures(rows)
    assert set(fails) == {"web errors", "web alerts"} and min(fails.values()) >= 1
    assert all(g.verdict == "PASS" for g in rows[fails["web errors"] - 1].gates)

    text = watch_text(rows)
    assert any(line.startswith("gate web errors first failed at step 2 (3)") for line in text)
    assert any(
        line.startswith("query replicas: 2 -> 3 (min 2, max 3), first changed at step 2")
        for line in text
    )
    assert "query nodes: 1 throughout" in text
    assert any(line.startswith("query absent: no number at any check (no series)") for line in text)
    assert not any("router" in line for line in text)  # the split did not move
    assert not any(line.startswith("gate ") for line in watch_text(rows, gates=False))

    # the rows go into the load document as JSON: strict JSON, the keys results.py reads
    doc = json.loads(json.dumps([r.to_dict() for r in rows], allow_nan=False))
    assert doc[-1]["step"] == 1
    assert {"name", "verdict", "value", "reason"} <= set(doc[-1]["gates"][0])
    assert {"name", "value", "error"} <= set(doc[-1]["queries"][0])


def test_the_split_is_read_and_a_move_is_reported(fresh: Env, tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        socket=fresh.haproxy.socket_path,
        gates=_gates(fresh.prometheus.url, f"http://{fresh.target.address}/metrics"),
    )
    watch = Watch.open(plan, [], None)
    runtime = fresh.haproxy.runtime()
    try:
        before = watch.observe(step=0)
        runtime.command("set server web/eks weight 26")
        runtime.command("set server web/ec2 weight 230")
        after = watch.observe(step=1)
    finally:
        runtime.command("set server web/eks weight 0")
        runtime.command("set server web/ec2 weight 256")
    assert before.new_percent == 0.0
    assert after.new_percent == pytest.approx(10.15625)  # 26 / 256
    text = watch_text([before, after])
    assert any(
        line.startswith(
            "router: the split moved during the test (0% -> 10.1562% on new, first at step 2)"
        )
        for line in text
    )


def test_what_cannot_be_observed_is_recorded_not_raised(tmp_path: Path) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    plan = _plan(
        tmp_path,
        socket=str(tmp_path / "no-haproxy.sock"),
        gates=_gates(refused, f"{refused}/health"),
    )
    watch = Watch.open(
        plan, ["replicas=sum(replicas)"], refused.replace("http://", "http://watcher:hunter22@")
    )
    rows = [watch.observe(step=i) for i in range(2)]
    for row in rows:
        assert row.new_percent is None
        assert row.router_error is not None and "no-haproxy.sock" in row.router_error
        errors, alerts, health = row.gates
        assert errors.verdict == "INCONCLUSIVE" and errors.error
        assert "cannot reach Prometheus" in errors.reason
        assert alerts.verdict == "INCONCLUSIVE" and alerts.error
        assert health.verdict == "FAIL"  # an http gate that does not answer is not normal
        q = row.queries[0]
        assert q.value is None and q.error is not None and "cannot reach Prometheus" in q.error
        assert "hunter22" not in json.dumps(row.to_dict())
    assert first_failures(rows) == {"health": 0}
    text = watch_text(rows)
    assert "gate web errors never had a verdict" in "\n".join(text)
    assert any(
        line.startswith("query replicas: failed at every check: cannot reach") for line in text
    )
    assert any(line.startswith("router: could not be read at 2 of 2 checks") for line in text)
    assert "hunter22" not in watch.describe() and "hunter22" not in json.dumps(watch.summary())


def test_the_plans_secrets_never_reach_a_row(
    fresh: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_JOB", "job-s3cr3t")
    monkeypatch.setenv("PROM_PASSWORD", "pw-s3cr3t")
    prom = fresh.prometheus.url.replace("http://", "http://watch:${PROM_PASSWORD}@")
    plan = _plan(
        tmp_path,
        socket=fresh.haproxy.socket_path,
        gates=f"""\
  - name: job errors
    type: prometheus
    url: {prom}
    query: 'max(web_errors{{job="${{WEB_JOB}}"}})'
    max: 0
""",
    )
    # the queries go to the plan's Prometheus, credentials included (it ignores them)
    watch = Watch.open(plan, ["replicas=sum(replicas)", "bad=sum(rate(x[1m]"], None)
    assert watch.secrets == frozenset({"job-s3cr3t", "pw-s3cr3t"})
    row = _poll(lambda: watch.observe(step=0), lambda r: _query(r, "replicas").value == 2)[-1]
    gate = row.gates[0]
    # no series for that job: inconclusive, and the reason quotes the query, masked
    assert gate.verdict == "INCONCLUSIVE" and not gate.error
    assert "***" in gate.reason
    bad = _query(row, "bad").error
    assert bad is not None and "***@" in bad  # the URL without its user info
    shown = json.dumps([row.to_dict(), watch.summary(), watch.describe()])
    assert "s3cr3t" not in shown
