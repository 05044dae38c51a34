"""The CountSource contract's case for CloudWatch sums (tests/contracts/
test_count_source_contract.py): an ALB's two target groups, old and new, as
CloudWatch sees them, in the local AWS double (moto over real HTTP).

Traffic is what an ALB publishes for a minute (``RequestCount`` always,
``HTTPCode_Target_5XX_Count`` only when not 0), stamped inside the minute that the
case's next ``now()`` closes: the case's clock moves a whole minute per call,
from an hour ago, so every count is exact without waiting for real minutes.

``reset_counters`` does nothing: CloudWatch keeps per-minute sums (deltas), not
cumulative counters, so there is nothing to reset; the contract's reset test
then checks that the counts simply keep adding up.

Errors (``ProviderError`` from the first call): nothing listening at the endpoint
(``refused``, its URL carrying the contract's secret as a password), no AWS
region (``no_region``), and an endpoint that answers but is not CloudWatch
(``not_cloudwatch``). moto accepts any GetMetricData query our plan model
accepts, so a query CloudWatch rejects (a ``ValidationError``) is shown in
tests/providers/test_cloudwatch.py with the client's answer scripted; a metric
that does not exist has no datapoints, which is ``NoData`` like the gate's.
"""

from __future__ import annotations

import atexit
import http.server
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cloudwatch_setup import ALB, OLD_TARGET_GROUP, TARGET_GROUP, alb_dimensions, put_alb_traffic

from shiftover.demo.moto import MotoServer
from shiftover.demo.process import QuietHTTPServer, free_port, serve_in_thread, stop_serving
from shiftover.providers.cloudwatch import CloudWatchCountsSpec

SECRET = "count-s3cret"  # the contract suite's: it must never show in an error

_moto: MotoServer | None = None


def moto() -> MotoServer:
    """One moto server for every case of the session (started on first use)."""
    global _moto
    if _moto is None:
        _moto = MotoServer().start()
        atexit.register(_moto.stop)
    return _moto


class _NotAws(http.server.BaseHTTPRequestHandler):
    """A web server that is not CloudWatch: a 404 page for everything."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body><h1>404 Not Found</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class CloudWatchCase:
    server: MotoServer
    env: pytest.MonkeyPatch
    clock: float
    other: tuple[QuietHTTPServer, threading.Thread] | None = None

    def spec(self) -> CloudWatchCountsSpec:
        def env(target_group: str) -> dict[str, Any]:
            return {"requests": {"namespace": ALB, "name": "RequestCount",
                                 "dimensions": alb_dimensions(target_group)},
                    "errors": {"name": "HTTPCode_Target_5XX_Count"}}

        return CloudWatchCountsSpec(type="cloudwatch", old=env(OLD_TARGET_GROUP),
                                    new=env(TARGET_GROUP), timeout=5.0)

    def traffic(self, *, old: int, new: int, new_fails: int = 0) -> None:
        at = self.clock + 30  # inside the minute the next now() closes
        put_alb_traffic(old, 0, at=at, target_group=OLD_TARGET_GROUP)
        put_alb_traffic(new, new_fails, at=at, target_group=TARGET_GROUP)

    def reset_counters(self) -> None:
        """Nothing to reset: CloudWatch holds per-minute sums, not counters."""

    def fail(self, mode: str) -> None:
        if mode == "refused":
            self.env.setenv("AWS_ENDPOINT_URL", f"http://shiftover:{SECRET}@127.0.0.1:{free_port()}")
        elif mode == "no_region":
            for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
                self.env.delenv(name, raising=False)
            self.env.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        elif mode == "not_cloudwatch":
            server = QuietHTTPServer(("127.0.0.1", 0), _NotAws)
            self.other = (server, serve_in_thread(server, "not-cloudwatch"))
            self.env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        else:  # pragma: no cover
            raise AssertionError(mode)

    def now(self) -> float:
        self.clock += 60.0
        return self.clock

    def split_traffic(self, n: int) -> None:  # pragma: no cover - no breakage modes
        raise AssertionError("CloudWatch sums have no breakage modes")


@contextmanager
def cloudwatch_case(tmp_path: Path) -> Iterator[CloudWatchCase]:
    server = moto()
    server.reset()
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                     "AWS_ENDPOINT_URL_CLOUDWATCH"):
            env.delenv(name, raising=False)
        for name, value in server.aws_env().items():
            env.setenv(name, value)
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        case = CloudWatchCase(server, env, clock=math.floor(time.time() / 60) * 60 - 3600.0)
        try:
            yield case
        finally:
            if case.other is not None:
                stop_serving(*case.other)


CASES = {
    "cloudwatch": ("cloudwatch", cloudwatch_case, ("refused", "no_region", "not_cloudwatch"), ()),
}
