"""`shiftover load --master` and `shiftover load --worker` as separate commands (as on
separate machines), over Locust's own master/worker protocol on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shiftover.demo.app import SampleAppProcess
from shiftover.demo.process import free_port

pytestmark = pytest.mark.e2e
SHIFTOVER = [sys.executable, "-m", "shiftover.cli"]


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    with SampleAppProcess(0, "target", tmp_path / "app") as a:
        yield a.url


def test_a_master_and_two_workers_started_apart(app_url: str, tmp_path: Path) -> None:
    port = free_port()
    master = subprocess.Popen(
        [*SHIFTOVER, "load", f"{app_url}/api/items", "--rate", "60,120", "--step", "3s", "--slo-p99", "2s",
         "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1", "--master-port", str(port),
         "--out", str(tmp_path / "out"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = [subprocess.Popen([*SHIFTOVER, "load", "--worker", "--master-host", "127.0.0.1",
                                 "--master-port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        out, err = master.communicate(timeout=120)
        codes = [w.wait(timeout=30) for w in workers]
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert master.returncode == 0, err
    assert codes == [0, 0]  # the workers end when the master does
    doc = json.loads(out)
    assert doc["generator"]["workers"] == 2 and doc["generator"]["workers_missing"] == 0
    for s in doc["steps"]:
        assert abs(s["achieved_rate"] - s["target_rate"]) <= 0.05 * s["target_rate"], s
        assert s["verdict"] == "pass", s
    assert "listening on 127.0.0.1" in err


def test_a_master_without_its_workers_says_how_to_start_them(app_url: str, tmp_path: Path) -> None:
    port = free_port()
    r = subprocess.run(
        [*SHIFTOVER, "load", f"{app_url}/", "--rate", "10", "--duration", "2s", "--master",
         "--expect-workers", "1", "--master-bind-host", "127.0.0.1", "--master-port", str(port),
         "--worker-wait", "2s", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "0 of 1 Locust workers" in r.stderr and "--master-host 127.0.0.1 " in r.stderr
    assert "shiftover load --worker --master-host" in r.stderr and f"--master-port {port}" in r.stderr
