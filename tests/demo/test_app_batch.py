"""The sample app's periodic batch: runs only while its scheduler is enabled, counted;
switched over HTTP (what the demo plan's hooks do with curl). Real processes on 127.0.0.1;
counts compared to each other, never to a wall clock."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shiftover.demo.app import BatchScheduler, SampleAppProcess, app_command
from shiftover.errors import BadInput


def _until_runs(read: Callable[[], dict[str, Any]], at_least: int, what: str) -> dict[str, Any]:
    """Poll ``read()`` (bounded) until its runs reach ``at_least``."""
    deadline = time.monotonic() + 20
    while True:
        state = read()
        if state["runs"] >= at_least:
            return state
        assert time.monotonic() < deadline, f"{what}: the batch never reached {at_least} runs"
        time.sleep(0.02)


def test_scheduler_counts_only_while_enabled() -> None:
    on, off = BatchScheduler(enabled=True, period=0.02), BatchScheduler(period=0.02)
    try:
        _until_runs(on.state, 5, "enabled")
        assert off.state() == {"enabled": False, "runs": 0, "period": 0.02}
        stopped = on.set_enabled(False)["runs"]
        off.set_enabled(True)
        _until_runs(off.state, 5, "enabled later")
        assert on.state()["runs"] == stopped  # not one run after it was disabled
    finally:
        on.close()
        off.close()


def test_scheduler_refuses_a_period_that_is_not_positive() -> None:
    with pytest.raises(BadInput):
        BatchScheduler(period=0)


def test_app_batch_switched_over_http(tmp_path: Path) -> None:
    assert "--batch" in app_command(0, "old", batch=True)
    assert "--batch" not in app_command(0, "new")
    with SampleAppProcess(0, "old", workdir=tmp_path, batch=True) as old, \
            SampleAppProcess(0, "new", workdir=tmp_path) as new:
        assert new.batch()["enabled"] is False and old.batch()["enabled"] is True
        _until_runs(old.batch, 2, "old at start")
        # what the demo's hooks run: curl, failing on an HTTP error
        for url in (f"{old.url}/admin/batch/disable", f"{new.url}/admin/batch/enable"):
            subprocess.run(["curl", "-fsS", "--max-time", "5", "-X", "POST", url], check=True,
                           capture_output=True, timeout=10)
        old_stopped = old.batch()
        assert old_stopped["enabled"] is False
        assert new.batch("enable")["enabled"] is True  # idempotent: enabled stays enabled
        _until_runs(new.batch, 3, "new after the move")
        assert old.batch()["runs"] == old_stopped["runs"]
        metrics = httpx.get(f"{new.url}/metrics", timeout=5).text
        assert 'batch_runs_total{instance_name="new"}' in metrics
        assert 'batch_enabled{instance_name="new"} 1.0' in metrics
        assert httpx.post(f"{new.url}/admin/batch/pause", timeout=5).status_code == 404
        with pytest.raises(BadInput):
            new.batch("pause")
