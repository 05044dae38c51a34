"""The CountSource contract's case for Datadog sums (tests/contracts/
test_count_source_contract.py): APM's hits and errors of two environments, in the
local double of Datadog's API (:class:`shiftover.demo.datadog.DatadogDouble`, real
HTTP through datadog-api-client).

Traffic is points of the queries as the source sends them (with
``.rollup(sum, 60)``), stamped at the start of the minute that the case's next
``now()`` closes (a rollup bucket's timestamp); errors get a point only when
something failed, as APM publishes them. The case's clock moves a whole minute
per call.

``reset_counters`` does nothing: Datadog's count points are deltas, there is no
counter to reset; the contract's reset test then checks the sums keep adding up.

Errors (``ProviderError`` from the first call): nothing listening (``refused``),
a query Datadog rejects (``rejected``: 400 on new's errors query, so every query
is asked at the step's start) and a wrong API key (``forbidden``: 403). The keys
carry the contract's secret, which must never show.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from shiftover.demo.datadog import DatadogDouble
from shiftover.demo.process import free_port
from shiftover.providers.datadog import DatadogCountsSpec, rolled_up

SECRET = "count-s3cret"  # the contract suite's: it must never show in an error
API_KEY = f"ddapi-{SECRET}-7f3c9e1d5a2b4c6d"
APP_KEY = f"ddapp-{SECRET}-b42e8a90c1d2e3f4"
T0 = 1_800_000_000.0  # a whole minute


def hits(env: str) -> str:
    return f"sum:trace.rack.request.hits{{service:web,env:{env}}}.as_count()"


def errors(env: str) -> str:
    return f"sum:trace.rack.request.errors{{service:web,env:{env}}}.as_count()"


@dataclass
class DatadogCase:
    double: DatadogDouble
    env: pytest.MonkeyPatch
    clock: float = T0

    def spec(self) -> DatadogCountsSpec:
        return DatadogCountsSpec(type="datadog", timeout=5.0,
                                 old={"requests": hits("ec2"), "errors": errors("ec2")},
                                 new={"requests": hits("eks"), "errors": errors("eks")})

    def _count(self, query: str, n: int) -> None:
        if n:
            self.double.add_points(rolled_up(query), (self.clock, float(n)))

    def traffic(self, *, old: int, new: int, new_fails: int = 0) -> None:
        self._count(hits("ec2"), old)
        self._count(hits("eks"), new)
        self._count(errors("eks"), new_fails)

    def reset_counters(self) -> None:
        """Nothing to reset: Datadog's count points are deltas."""

    def fail(self, mode: str) -> None:
        if mode == "refused":
            self.env.setenv("DD_HOST", f"http://127.0.0.1:{free_port()}")
        elif mode == "rejected":
            self.double.set_query_error(rolled_up(errors("eks")),
                                        "Error parsing query: unknown function 'as_cnt'")
        elif mode == "forbidden":
            self.env.setenv("DD_API_KEY", f"{SECRET}-revoked-0000")
        else:  # pragma: no cover
            raise AssertionError(mode)

    def now(self) -> float:
        self.clock += 60.0
        return self.clock

    def split_traffic(self, n: int) -> None:  # pragma: no cover - no breakage modes
        raise AssertionError("Datadog sums have no breakage modes")


@contextmanager
def datadog_case(tmp_path: Path) -> Iterator[DatadogCase]:
    with pytest.MonkeyPatch.context() as env, \
            DatadogDouble(api_key=API_KEY, app_key=APP_KEY) as double:
        for name in ("DD_SITE", "DATADOG_HOST", "DD_APPLICATION_KEY"):
            env.delenv(name, raising=False)
        for name, value in double.env().items():
            env.setenv(name, value)
        yield DatadogCase(double, env)


CASES = {
    "datadog": ("datadog", datadog_case, ("refused", "rejected", "forbidden"), ()),
}
