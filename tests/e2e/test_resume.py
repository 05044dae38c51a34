"""Kill `shiftover run` with SIGKILL in the middle of a step; a new run must resume
from the router's real weight and never exceed the last confirmed step before it
has baked again. Real HAProxy, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shiftover.demo.haproxy import stub_stack
from shiftover.engine import events as ev
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.store import open_store
from shiftover.types import Weights

pytestmark = pytest.mark.e2e

PLAN = """\
service: resume-demo
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new, timeout: 500ms}}
steps: [10, 20, 30, 40, 100]
bake: 2s
interval: 500ms
normal_state:
  - name: new app answers
    type: http
    url: http://{new}/
    expect_status: 200
    timeout: 500ms
failure_limit: 2
"""


def shiftover(*args: str) -> list[str]:
    return [sys.executable, "-m", "shiftover.cli", *args]


def new_weight(rt: HAProxyRuntime) -> Weights | None:
    st = rt.servers_state("web")
    return Weights.from_backend(st["old"].weight, st["new"].weight)


def test_sigkill_mid_step_then_resume(tmp_path: Path) -> None:
    with stub_stack(tmp_path) as st:
        hap, new = st.haproxy, st.new
        plan = tmp_path / "plan.yaml"
        plan.write_text(PLAN.format(sock=hap.socket_path, new=new.address))
        state = f"sqlite:///{tmp_path}/state.db"
        rt = HAProxyRuntime(hap.socket_path, 2.0)

        first = subprocess.Popen(shiftover("run", str(plan), "--json", "--state", state,
                                           "--lease-ttl", "4"),
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert first.stdout is not None
            deadline = time.time() + 60
            for line in first.stdout:  # bounded by the deadline below
                e = json.loads(line)
                if e.get("kind") == ev.WEIGHT_CONFIRMED and e["data"]["percent"] == 20:
                    break
                assert time.time() < deadline, "the first run never reached 20%"
            time.sleep(0.7)  # in the middle of the 2 s bake
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)

        with open_store(state) as store:
            events = store.events(service="resume-demo")
        last_confirmed = [e.data["percent"] for e in events if e.kind == ev.WEIGHT_CONFIRMED][-1]
        assert last_confirmed == 20
        assert new_weight(rt) == Weights(20)

        # the lease of the dead run is still alive: a second run is refused, exit 5
        refused = subprocess.run(shiftover("run", str(plan), "--json", "--state", state),
                                 capture_output=True, text=True, timeout=30)
        assert refused.returncode == 5, refused.stderr
        assert "lease" in refused.stderr.lower()

        # behind the journal's back, the router is pushed above the last confirmed step
        # (as if the dead run had applied 30% and died before confirming it)
        rt.set_weight("web", "old", 179)
        rt.set_weight("web", "new", 77)  # 30.08%
        time.sleep(4.2)  # the dead run's lease expires

        samples: list[tuple[float, Weights | None]] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                try:
                    samples.append((time.time(), new_weight(rt)))
                except Exception:
                    pass
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            second = subprocess.run(shiftover("run", str(plan), "--json", "--state", state),
                                    capture_output=True, text=True, timeout=120)
        finally:
            stop.set()
            watcher.join(5)
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        lines = [json.loads(x) for x in second.stdout.splitlines()]
        evs = [x for x in lines if "kind" in x]
        assert evs[0]["kind"] == ev.RUN_STARTED and evs[0]["data"]["resumed"] is True
        intents = [x for x in evs if x["kind"] == ev.WEIGHT_INTENDED]
        # first it returns to the last confirmed step, then it climbs from there
        assert intents[0]["data"]["percent"] == 20
        assert [x["data"]["percent"] for x in intents[1:]] == [30, 40, 100]
        # it re-baked 20% for the full bake before going above it
        back = next(x for x in evs if x["kind"] == ev.WEIGHT_CONFIRMED and x["data"]["percent"] == 20)
        up = next(x for x in evs if x["kind"] == ev.WEIGHT_INTENDED and x["data"]["percent"] == 30)
        assert up["at"] - back["at"] >= 2.0
        # and HAProxy itself never served above 20% between the correction and that step
        t_back, t_up = back["at"], up["at"]
        between = [w for t, w in samples if t_back + 0.05 < t < t_up - 0.05]
        assert between and all(w is not None and w <= Weights(20) for w in between)
        assert new_weight(rt) == Weights(100)
        assert lines[-1]["outcome"] == "promoted"
        assert os.path.exists(tmp_path / "state.db")


