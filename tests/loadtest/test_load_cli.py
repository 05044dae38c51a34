"""`shiftover load` end to end: Locust in child processes against real local targets.

- a sample app with a known capacity (4 requests at a time, 20 ms each: 200 req/s)
  whose knee is found within 15 % of it;
- HAProxy over two sample apps, with --watch (the plan's gates through HAProxy's
  runtime API and the new app's health URL) and a --watch-query on a real
  Prometheus; a fault injected after step 1 shows as the gate's first failure;
- two local Locust workers (Locust's master/worker protocol), a user's locustfile,
  Ctrl-C (the measured steps are still printed), and bad input (exit 2).

Rates are asserted within the issue's 5 % band; nothing is asserted on wall-clock time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.demo.app import SampleAppProcess
from shiftover.demo.haproxy import HAProxyProcess
from shiftover.demo.process import free_port
from shiftover.demo.prometheus import PrometheusProcess

pytestmark = pytest.mark.e2e
runner = CliRunner()
SHIFTOVER = [sys.executable, "-m", "shiftover.cli"]
REPO = Path(__file__).resolve().parents[2]


def _load(*args: str) -> tuple[int, dict[str, Any], str]:
    r = runner.invoke(app, ["load", *args, "--json"])
    doc = json.loads(r.stdout) if r.exit_code == 0 else {}
    return r.exit_code, doc, r.output


def _within(achieved: float, target: float, band: float = 0.05) -> bool:
    return abs(achieved - target) <= band * target


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleAppProcess]:
    """True capacity 4 / 0.020 s = 200 req/s."""
    with SampleAppProcess(
        0, "capped", tmp_path_factory.mktemp("capped"), concurrency=4, service_ms=20
    ) as a:
        yield a


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleAppProcess]:
    with SampleAppProcess(0, "plain", tmp_path_factory.mktemp("plain")) as a:
        yield a


def test_knee_of_a_target_with_known_capacity(capped: SampleAppProcess, tmp_path: Path) -> None:
    code, doc, output = _load(
        f"{capped.url}/api/items",
        "--rate",
        "140:240:10",
        "--step",
        "3s",
        "--slo-p99",
        "150ms",
        "--max-errors",
        "1%",
        "--pods",
        "1",
        "--peak",
        "1000",
        "--out",
        str(tmp_path),
    )
    assert code == 0, output
    true_capacity = 4 / 0.020
    knee = doc["knee"]
    assert knee is not None, doc["steps"]
    assert abs(knee["achieved_rate"] - true_capacity) <= 0.15 * true_capacity, doc["steps"]
    assert doc["first_failure"]["verdict"] == "latency"
    steps = doc["steps"]
    # below the knee the open model holds the rate; above it the target's throughput flattens
    for s in steps[: knee["step"] + 1]:
        assert _within(s["achieved_rate"], s["target_rate"]), s
    assert steps[-1]["achieved_rate"] < 0.95 * steps[-1]["target_rate"], steps[-1]
    # no coordinated omission: past the knee latency grows with the backlog, step after step
    p99s = [s["p99_ms"] for s in steps[knee["step"] + 1 :]]
    assert p99s[-1] > max(p99s[0], 1000), p99s  # a closed loop would cap it near users / throughput
    assert doc["web"]["capacity_rps"] == pytest.approx(knee["achieved_rate"])
    assert doc["capacity"]["pods_needed"] >= 1000 / true_capacity
    assert Path(doc["files"]["json"]).exists()


class HAStack(NamedTuple):
    haproxy: HAProxyProcess
    old: SampleAppProcess
    new: SampleAppProcess
    prometheus: PrometheusProcess
    plan: Path


@pytest.fixture
def ha_stack(tmp_path: Path) -> Iterator[HAStack]:
    with (
        SampleAppProcess(0, "old", tmp_path / "old") as old,
        SampleAppProcess(0, "new", tmp_path / "new") as new,
        HAProxyProcess(
            tmp_path / "haproxy",
            old_address=f"127.0.0.1:{old.port}",
            new_address=f"127.0.0.1:{new.port}",
            old_weight=128,
            new_weight=128,
        ) as hap,
        PrometheusProcess(
            tmp_path / "prom", jobs=[("apps", [f"127.0.0.1:{old.port}", f"127.0.0.1:{new.port}"])]
        ) as prom,
    ):
        prom.wait_for_targets()
        plan = tmp_path / "plan.yaml"
        plan.write_text(f"""\
service: load-watch
router: {{type: haproxy, socket: {hap.socket_path}, backend: web, old: old, new: new}}
steps: [50, 100]
bake: 10s
interval: 1s
normal_state:
  - name: new errors
    type: haproxy_stats
    socket: {hap.socket_path}
    backend: web
    server: new
    max: 0.01
  - name: new dependencies
    type: http
    url: http://127.0.0.1:{new.port}/health/dependencies
    expect_status: 200
    timeout: 1s
  - name: served per second
    type: prometheus
    url: {prom.url}
    query: sum(rate(http_requests_total[5s]))
    min: 0
""")
        yield HAStack(hap, old, new, prom, plan)


def test_through_haproxy_with_watch_shows_the_step_a_gate_first_failed(
    ha_stack: HAStack, tmp_path: Path
) -> None:
    st = ha_stack
    argv = [
        *SHIFTOVER,
        "load",
        st.haproxy.frontend_url + "/api/items",
        "--rate",
        "40,80,80",
        "--step",
        "4s",
        "--watch",
        str(st.plan),
        "--watch-query",
        'served=sum(http_requests_total{code="200"})',
        "--out",
        str(tmp_path / "out"),
        "--json",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("step 1 watch"):
                st.new.set_fault(dependencies_ok=False, error_rate=1.0)  # new breaks after step 1
                break
        out, rest = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(seen) + rest
    doc = json.loads(out)
    assert [s["index"] for s in doc["steps"]] == [0, 1, 2]
    assert _within(doc["steps"][0]["achieved_rate"], 40)
    rows = doc["watch"]
    assert [r["step"] for r in rows] == [0, 1, 2]
    verdicts = [{g["name"]: g["verdict"] for g in r["gates"]} for r in rows]
    assert verdicts[0] == {
        "new errors": "PASS",
        "new dependencies": "PASS",
        "served per second": "PASS",
    }
    assert verdicts[1]["new dependencies"] == "FAIL" and verdicts[1]["new errors"] == "FAIL"
    served = [r["queries"][0]["value"] for r in rows]
    assert served[0] > 0 and served[1] > served[0], served
    # the steps after the fault fail on errors (half the traffic goes to the broken app)
    assert doc["steps"][1]["verdict"] == "errors" and doc["knee"]["step"] == 0


def test_two_local_workers_share_the_rate(plain: SampleAppProcess, tmp_path: Path) -> None:
    code, doc, output = _load(
        f"{plain.url}/",
        "--rate",
        "100,300",
        "--step",
        "3s",
        "--workers",
        "2",
        "--slo-p99",
        "2s",  # this test is about the rate; latency on a shared 2-core machine varies
        "--out",
        str(tmp_path),
    )
    assert code == 0, output
    assert doc["generator"]["workers"] == 2 and doc["generator"]["workers_missing"] == 0
    for s in doc["steps"]:
        assert _within(s["achieved_rate"], s["target_rate"]), s
        assert s["verdict"] == "pass", s


def test_a_users_locustfile_runs_on_the_arrival_schedule(
    plain: SampleAppProcess, tmp_path: Path
) -> None:
    lf = tmp_path / "locustfile.py"
    lf.write_text(
        "from locust import FastHttpUser, task\n\n"
        "class Shopper(FastHttpUser):\n"
        "    @task\n"
        "    def browse(self):\n"
        "        self.client.get('/api/products')\n"
    )
    code, doc, output = _load(
        plain.url, "-f", str(lf), "--rate", "60,120", "--step", "3s", "--slo-p99", "2s",
        "--out", str(tmp_path / "out"),
    )
    assert code == 0, output
    assert [s["verdict"] for s in doc["steps"]] == ["pass", "pass"]
    for s in doc["steps"]:
        assert _within(s["achieved_rate"], s["target_rate"]), s
    assert doc["target"]["locustfile"] == str(lf.resolve())


def test_ctrl_c_stops_and_still_prints_what_was_measured(
    plain: SampleAppProcess, tmp_path: Path
) -> None:
    argv = [
        *SHIFTOVER,
        "load",
        f"{plain.url}/",
        "--rate",
        "50:500:50",
        "--step",
        "3s",
        "--slo-p99",
        "2s",
        "--out",
        str(tmp_path),
        "--json",
    ]
    before = _locust_children()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line or line.startswith("step 1/"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["stopped_early"] is True
    assert doc["steps"][0]["verdict"] == "pass"
    assert len(doc["steps"]) < 10 and doc["steps"][-1]["complete"] is False
    assert (tmp_path / "load.json").exists()
    assert _locust_children() <= before  # the Locust child was stopped, not left behind


def _locust_children() -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines()[1:] if "shiftover.loadtest.child" in line}


def test_a_measured_capacity_feeds_the_simulator(capped: SampleAppProcess, tmp_path: Path) -> None:
    """`shiftover load --json` -> load.json -> `shiftover scale simulate --capacity-from`."""
    code, doc, output = _load(f"{capped.url}/api/items", "--rate", "100,140", "--step", "3s",
                              "--slo-p99", "100ms", "--pods", "2", "--out", str(tmp_path / "load"))
    assert code == 0, output
    measured = doc["web"]["capacity_rps"]
    assert measured == pytest.approx(doc["knee"]["achieved_rate"] / 2)
    load_json = tmp_path / "load.json"
    load_json.write_text(json.dumps(doc))  # what `... --json > load.json` writes
    window = ["--from", "1995-07-13T00:00:00Z", "--to", "1995-07-14T00:00:00Z", "--scale", "200"]
    base = ["scale", "simulate", "--trace", str(REPO / "examples/data/nasa_ksc_jul1995_rpm.csv"),
            "--config", str(REPO / "examples/scaling.yaml"), *window, "--json"]
    r = runner.invoke(app, [*base, "--capacity-from", str(load_json), "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    sim = json.loads(r.stdout)
    assert sim["capacity_from"]["web"]["capacity_rps"] == measured
    assert sim["capacity_from"]["slo"]["latency"] == pytest.approx(0.1)
    # the simulator really used it: pods measured above the config's 50 req/s (4 x 20 ms
    # per app is ~190 req/s, over 2 pods) serve more of the day's peaks within the SLO
    assert measured > 50
    r0 = runner.invoke(app, [*base, "--out", str(tmp_path / "b")])
    assert r0.exit_code == 0, r0.output
    own = json.loads(r0.stdout)["summary"]
    assert sim["summary"]["requests_not_within_slo"] < own["requests_not_within_slo"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "50:500:x", "--step", "30s"], "--rate"),
        (["--rate", "50:500:50"], "--step"),
        (
            ["--rate", "100", "--duration", "5s", "-f", "missing_locustfile.py"],
            "missing_locustfile.py",
        ),
        (["--rate", "100", "--duration", "5s", "--max-errors", "two"], "--max-errors"),
        (["--rate", "100", "--duration", "5s", "--peak", "100"], "--pods"),
        (["--rate", "100", "--duration", "5s", "-H", "no colon"], "--header"),
    ],
)
def test_bad_input_is_exit_2_with_a_hint(
    plain: SampleAppProcess, args: list[str], needle: str
) -> None:
    r = runner.invoke(app, ["load", f"{plain.url}/", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_an_unreachable_url_is_bad_input() -> None:
    port = free_port()
    r = runner.invoke(
        app, ["load", f"http://127.0.0.1:{port}/", "--rate", "10", "--duration", "2s"]
    )
    assert r.exit_code == 2, r.output
    assert "unreachable" in r.output and "hint:" in r.output
    r = runner.invoke(app, ["load", "ftp://example/", "--rate", "10", "--duration", "2s"])
    assert r.exit_code == 2 and "http(s)" in r.output
