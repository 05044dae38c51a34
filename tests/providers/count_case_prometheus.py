"""The Prometheus count source's case of the CountSource contract
(tests/contracts/test_count_source_contract.py), against a real Prometheus.

The backend is the smallest honest one: a stdlib exporter thread
(:class:`~shiftover.demo.prometheus.MetricsTarget`) exposing
``http_requests_total{case=...,env="old|new",code="200|500"}``, scraped by a real
Prometheus every second. ``traffic()`` bumps the counters the way an
application's client library does (the ``code="500"`` series is born at the
first error, as client libraries create it) and waits until Prometheus has
scraped them; ``reset_counters()`` sets every series back to 0, as a restarted
process would, and waits until a scrape saw the zeros (a reset no scrape sees
cannot be told from the samples: see ``PrometheusCounts``).

One Prometheus serves every case of a test session (it needs ~5 s to discover a
static target, and this suite opens a case per test); each case counts under a
``case`` label of its own, so no test sees another's series. The URL carries a
password, which no message may show.

No breakage modes: Prometheus sees what the exporter counts, so a dead new
environment is errors of new only when the selectors count what the proxy saw
(HAProxy's connection errors, see ``PrometheusCountsSpec``), which is the
exporter's business, not this source's.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shiftover.demo.prometheus import MetricsTarget, PrometheusProcess, free_port
from shiftover.providers.prometheus import PrometheusCountsSpec

SECRET = "count-s3cret"  # the contract's: never in a message
METRIC = "http_requests_total"
SCRAPED_WITHIN = 15.0


@dataclass
class _Stack:
    target: MetricsTarget
    prometheus: PrometheusProcess
    directory: Path


_stack: _Stack | None = None
_case_ids = itertools.count(1)


def _stop(stack: _Stack) -> None:
    stack.prometheus.stop()
    stack.target.stop()
    shutil.rmtree(stack.directory, ignore_errors=True)


def _shared_stack() -> _Stack:
    """One exporter and one Prometheus for the session, stopped when Python exits."""
    global _stack
    if _stack is None:
        if shutil.which("prometheus") is None:
            pytest.skip("prometheus is not installed (apt-get install prometheus)")
        directory = Path(tempfile.mkdtemp(prefix="shiftover-count-prometheus-"))
        target = MetricsTarget().start()
        target.inc(METRIC, {"case": "0"}, 0)  # something to scrape from the start
        try:
            prometheus = PrometheusProcess(directory, jobs=[("app", [target.address])]).start()
        except BaseException:
            target.stop()
            raise
        stack = _Stack(target, prometheus, directory)
        atexit.register(_stop, stack)
        prometheus.wait_for_targets(timeout=30)
        _stack = stack
    return _stack


@dataclass
class PrometheusCase:
    stack: _Stack
    case: str
    url: str = ""
    old: dict[str, str] = field(default_factory=dict)
    new: dict[str, str] = field(default_factory=dict)
    # what the exporter holds for this case: (env, code) -> value
    values: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        host = self.stack.prometheus.address
        self.url = f"http://shiftover:{SECRET}@{host}"
        for env in ("old", "new"):
            selectors = self.old if env == "old" else self.new
            selectors["requests"] = f'{METRIC}{{case="{self.case}",env="{env}"}}'
            selectors["errors"] = f'{METRIC}{{case="{self.case}",env="{env}",code=~"5.."}}'
            self._bump(env, "200", 0)  # the requests series exist from the start
        self._wait_scraped()

    def spec(self) -> Any:
        return PrometheusCountsSpec.model_validate({
            "type": "prometheus", "url": self.url, "old": self.old, "new": self.new,
            "timeout": 2.0})

    def _bump(self, env: str, code: str, n: int) -> None:
        self.stack.target.inc(METRIC, {"case": self.case, "env": env, "code": code}, n)
        self.values[(env, code)] = self.values.get((env, code), 0) + n

    def _scraped(self) -> dict[tuple[str, str], int]:
        r = httpx.get(f"{self.stack.prometheus.url}/api/v1/query",
                      params={"query": f'{METRIC}{{case="{self.case}"}}'}, timeout=2.0)
        return {(s["metric"]["env"], s["metric"]["code"]): int(float(s["value"][1]))
                for s in r.json()["data"]["result"]}

    def _wait_scraped(self) -> None:
        deadline = time.monotonic() + SCRAPED_WITHIN
        seen: Any = None
        while time.monotonic() < deadline:
            try:
                seen = self._scraped()
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                seen = exc
            if seen == self.values:
                return
            time.sleep(0.1)
        raise AssertionError(f"Prometheus did not scrape {self.values} within "
                             f"{SCRAPED_WITHIN:g}s; last seen: {seen!r}")

    def traffic(self, *, old: int, new: int, new_fails: int = 0) -> None:
        # a scrape stamped before the caller's last `now` must not see this traffic
        time.sleep(0.05)
        self._bump("old", "200", old)
        self._bump("new", "200", new - new_fails)
        if new_fails:
            self._bump("new", "500", new_fails)
        self._wait_scraped()

    def reset_counters(self) -> None:
        for env, code in self.values:
            labels = {"case": self.case, "env": env, "code": code}
            self.stack.target.remove(METRIC, labels)
            self.stack.target.inc(METRIC, labels, 0)
        self.values = dict.fromkeys(self.values, 0)
        self._wait_scraped()

    def fail(self, mode: str) -> None:
        if mode == "refused":
            self.url = f"http://shiftover:{SECRET}@127.0.0.1:{free_port()}"
        elif mode == "not_prometheus":  # the exporter itself: 404 to /api/v1/query
            self.url = f"http://shiftover:{SECRET}@{self.stack.target.address}"
        elif mode == "arithmetic":  # plain-looking, but not one selector: Prometheus says so
            self.new["errors"] = f"{METRIC} + {METRIC}"
        elif mode == "parse_error":
            self.new["errors"] = f'{METRIC}{{env="new"'
        else:  # pragma: no cover
            raise AssertionError(mode)

    def now(self) -> float:
        return time.time()

    def split_traffic(self, n: int) -> None:  # pragma: no cover - no breakage modes
        raise AssertionError("the Prometheus case has no breakage modes")


@contextmanager
def prometheus_case(tmp_path: Path) -> Iterator[PrometheusCase]:
    yield PrometheusCase(_shared_stack(), f"c{next(_case_ids)}")


CASES = {
    "prometheus": ("prometheus", prometheus_case,
                   # rate()/sum() selectors are plan errors now (test_prometheus_counts.py)
                   ("refused", "not_prometheus", "arithmetic", "parse_error"),
                   ()),
}
