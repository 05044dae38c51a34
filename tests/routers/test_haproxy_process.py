"""The managed HAProxy (shiftover.demo.haproxy): config, start, exporter, stop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from shiftover.demo.haproxy import HAProxyProcess, StubBackend, find_haproxy, free_port
from shiftover.errors import ShiftoverError

if TYPE_CHECKING:
    from conftest import Stack


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_exporter_and_frontend(fresh: Stack) -> None:
    with httpx.Client(timeout=5.0) as client:
        r = client.get(fresh.haproxy.frontend_url)
        assert r.status_code == 200 and r.text == "old 200\n"
        metrics = client.get(fresh.haproxy.metrics_url).text
    assert 'haproxy_server_http_responses_total{proxy="web",server="old",code="2xx"}' in metrics
    assert 'haproxy_server_weight{proxy="web",server="new"} 0' in metrics


def test_config_is_checked_and_stop_is_clean(tmp_path: Path) -> None:
    if find_haproxy() is None:
        pytest.skip("haproxy is not installed")
    proc = HAProxyProcess(
        tmp_path,
        old_address=f"127.0.0.1:{free_port()}",
        new_address=f"127.0.0.1:{free_port()}",
        new_weight=10,
    )
    assert "server new 127.0.0.1:" in proc.config() and "weight 10" in proc.config()
    with proc:
        pid = proc.pid
        assert pid is not None and _alive(pid)
        assert proc.runtime().server_state("web", "new").weight == 10
        with pytest.raises(ShiftoverError, match="already started"):
            proc.start()
    assert proc.pid is None
    assert not _alive(pid)  # reaped by wait(): not even a zombie
    proc.stop()  # idempotent


def test_bad_config_is_reported(tmp_path: Path) -> None:
    if find_haproxy() is None:
        pytest.skip("haproxy is not installed")
    proc = HAProxyProcess(tmp_path, old_address="127.0.0.1:1", new_address="127.0.0.1:2")
    proc.config = lambda: "global\n    frobnicate yes\n"  # type: ignore[method-assign]
    with pytest.raises(ShiftoverError, match="haproxy -c rejected"):
        proc.start()
    assert proc.pid is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"old_address": "nowhere"}, "not host:port"),
        ({"old_weight": 300}, "outside 0-256"),
        ({"new_name": "old"}, "different names"),
        ({"backend": "we b"}, "not a valid name"),
    ],
)
def test_parameters_are_validated(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"old_address": "127.0.0.1:1", "new_address": "127.0.0.1:2", **kwargs}
    with pytest.raises(ShiftoverError, match=message):
        HAProxyProcess(tmp_path, **args)  # type: ignore[arg-type]


def test_stub_backend_fails_an_exact_share() -> None:
    with StubBackend("x", fail_ratio=0.25) as b, httpx.Client(timeout=5.0) as client:
        codes = [client.get(f"http://{b.address}/").status_code for _ in range(8)]
    assert codes == [200, 200, 200, 500] * 2
    assert (b.requests, b.errors) == (8, 2)
