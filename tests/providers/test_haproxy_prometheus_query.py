"""The example plan's Prometheus query, run by a real Prometheus 2.42 scraping a
real HAProxy 2.6's built-in exporter, while the new server (``eks``) breaks.

The query used to be ``5xx / responses`` of the server alone: a dead server
sends no responses, so it went to 0/0 = NaN (no data) and the gate held, or,
with ``check``, stayed at 0 and passed while old took everything. Each test
takes the query verbatim from ``examples/plan.yaml`` (and from the plan the
demo runs), changing only the backend name so that every scenario has series
of its own: one Prometheus scrapes one metrics port, behind which each
scenario starts its own HAProxy.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from haproxy_faults import (
    CHECK,
    SHORT_SERVER_TIMEOUT,
    FaultyHAProxy,
    HangingBackend,
    ProcessBackend,
)

from shiftover.analysis.judge import judge
from shiftover.demo.haproxy import StubBackend, find_haproxy
from shiftover.demo.prometheus import PrometheusProcess, free_port
from shiftover.demo.scenario import demo_plan_yaml
from shiftover.errors import NoData, ProviderError
from shiftover.providers.prometheus import PrometheusGate, PrometheusProvider
from shiftover.types import Measurement, Verdict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plan.yaml"
FAST_RETRY = "timeout connect 200ms"  # HAProxy waits min(timeout connect, 1s) between retries


def _prometheus_gate(plan_text: str) -> dict[str, Any]:
    gates = [g for g in yaml.safe_load(plan_text)["normal_state"] if g["type"] == "prometheus"]
    assert len(gates) == 1, "the test expects one prometheus gate in the plan"
    gate: dict[str, Any] = gates[0]
    return gate


QUERIES = {
    "examples/plan.yaml": _prometheus_gate(EXAMPLE.read_text()),
    "demo plan": _prometheus_gate(
        demo_plan_yaml(socket="/x.sock", prometheus="http://127.0.0.1:9", new_app="http://127.0.0.1:8")
    ),
}


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[PrometheusProcess]:
    if find_haproxy() is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    with PrometheusProcess(
        tmp_path_factory.mktemp("prometheus_haproxy"), jobs=[("haproxy", [f"127.0.0.1:{metrics_port}"])]
    ) as prom:
        yield prom


class Traffic:
    """Steady GETs through HAProxy from two threads until stopped, ~20/s each: the
    [1m] window then holds few enough good responses that a handful of failures
    (a hanging server gives one a second per thread) shows within seconds."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self.stopping.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.get(self.url)
                self.stopping.wait(0.05)

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(10)


@contextlib.contextmanager
def haproxy_for(
    directory: Path, metrics_port: int, backend: str, new_address: str, *, new_weight: int = 256,
    **options: Any,
) -> Iterator[FaultyHAProxy]:
    """HAProxy with ``backend`` = {ec2 (a healthy stub), eks at ``new_address``} (50/50 by
    default), its exporter on the port Prometheus scrapes, and steady traffic through it."""
    with StubBackend("ec2") as old, FaultyHAProxy(
        directory, backend=backend, old_name="ec2", new_name="eks", old_address=old.address,
        new_address=new_address, new_weight=new_weight, metrics_port=metrics_port, **options,
    ) as proc, Traffic(proc.frontend_url):
        yield proc


def provider(prometheus: PrometheusProcess, source: str, backend: str, server: str = "eks") -> tuple[PrometheusProvider, PrometheusGate]:
    gate = QUERIES[source]
    query = gate["query"]
    assert 'proxy="web"' in query and 'server="eks"' in query, f"{source}: not a query on web/eks"
    query = query.replace('proxy="web"', f'proxy="{backend}"').replace('server="eks"', f'server="{server}"')
    spec = PrometheusGate(type="prometheus", name=gate["name"], url=prometheus.url, query=query, max=gate["max"])
    return PrometheusProvider.from_spec(spec), spec


def outcome(p: PrometheusProvider) -> Measurement | ProviderError:
    try:
        return p.measure(now=time.time())
    except ProviderError as exc:
        return exc


def value_of(o: Measurement | ProviderError) -> float | None:
    return o.value if isinstance(o, Measurement) else None


Poll = Callable[..., Any]


def healthy_then_failing(
    p: PrometheusProvider, spec: PrometheusGate, poll: Poll, break_it: Callable[[], None]
) -> Measurement:
    """Wait for the healthy value (0: PASS), break the new server, wait for a FAIL."""
    healthy = poll(lambda: outcome(p), lambda o: value_of(o) == 0.0, timeout=30)
    assert judge(spec, healthy, now=0.0).verdict is Verdict.PASS
    break_it()
    failing: Measurement = poll(
        lambda: outcome(p), lambda o: (value_of(o) or 0.0) > spec.max, timeout=30  # type: ignore[operator]
    )
    assert judge(spec, failing, now=0.0).verdict is Verdict.FAIL
    return failing


@pytest.mark.parametrize("source", sorted(QUERIES))
def test_the_example_query_fails_a_dead_new_server(
    prometheus: PrometheusProcess, metrics_port: int, tmp_path: Path, prometheus_poll: Poll, source: str
) -> None:
    backend = "dead" + ("demo" if source == "demo plan" else "example")
    with ProcessBackend("eks", tmp_path) as new, haproxy_for(
        tmp_path, metrics_port, backend, new.address, backend_lines=(FAST_RETRY,)
    ):
        p, spec = provider(prometheus, source, backend)
        healthy_then_failing(p, spec, prometheus_poll, new.kill)


def test_the_example_query_fails_a_new_server_down_by_health_check(
    prometheus: PrometheusProcess, metrics_port: int, tmp_path: Path, prometheus_poll: Poll
) -> None:
    # clients see no error at all: old takes everything once eks is DOWN
    with ProcessBackend("eks", tmp_path) as new, haproxy_for(
        tmp_path, metrics_port, "downbycheck", new.address, server_options=CHECK
    ):
        p, spec = provider(prometheus, "examples/plan.yaml", "downbycheck")
        m = healthy_then_failing(p, spec, prometheus_poll, new.kill)
    assert m.value == 1.0


def test_the_example_query_fails_a_hanging_new_server(
    prometheus: PrometheusProcess, metrics_port: int, tmp_path: Path, prometheus_poll: Poll
) -> None:
    with HangingBackend() as hang, ProcessBackend("eks", tmp_path) as new, haproxy_for(
        tmp_path, metrics_port, "hanging", new.address, backend_lines=(SHORT_SERVER_TIMEOUT,)
    ) as proc:
        p, spec = provider(prometheus, "examples/plan.yaml", "hanging")
        host, port = hang.address.split(":")

        def hang_it() -> None:  # eks now accepts connections and never answers: 504s
            proc.runtime().command(f"set server hanging/eks addr {host} port {port}")

        healthy_then_failing(p, spec, prometheus_poll, hang_it)


def test_the_example_query_is_no_data_for_a_new_server_at_weight_0(
    prometheus: PrometheusProcess, metrics_port: int, tmp_path: Path, prometheus_poll: Poll
) -> None:
    """At 0% there is nothing to judge, even with eks dead: no data, never a pass."""
    dead = f"127.0.0.1:{free_port()}"
    with haproxy_for(tmp_path, metrics_port, "weight0", dead, new_weight=0, server_options=CHECK):
        old, _ = provider(prometheus, "examples/plan.yaml", "weight0", server="ec2")
        prometheus_poll(lambda: outcome(old), lambda o: value_of(o) == 0.0, timeout=30)  # data flows
        p, _ = provider(prometheus, "examples/plan.yaml", "weight0")
        result = outcome(p)
    assert isinstance(result, NoData), result
