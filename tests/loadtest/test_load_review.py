"""`shiftover load` under an SRE's hostile use: what a review found, end to end.

- the parent SIGKILLed: its Locust processes (own sessions: no terminal signal reaches
  them) stop by themselves instead of loading the target on their own;
- too few Locust users (--users 2) against a target that answers fast: arrivals wait on
  the client, so the step is the generator's limit, not the target's knee;
- credentials in the URL never reach stdout, load.json or report.html;
- the per-step table in an 80-column pipe keeps every header and verdict whole.

Real processes on 127.0.0.1; bounded waits; nothing asserted on wall-clock time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shiftover.demo.app import SampleAppProcess
from shiftover.errors import BadInput
from shiftover.loadtest.runner import check_reachable, parse_target, public_url

pytestmark = pytest.mark.e2e
SHIFTOVER = [sys.executable, "-m", "shiftover.cli"]


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleAppProcess]:
    """4 requests at a time, 20 ms each: 200 req/s."""
    with SampleAppProcess(0, "review", tmp_path_factory.mktemp("review"), concurrency=4, service_ms=20) as a:
        yield a


def _served(url: str) -> int:
    with urllib.request.urlopen(f"{url}/admin/stats", timeout=5) as r:
        return int(json.load(r)["served"])


def test_killing_the_parent_stops_every_locust_process(capped: SampleAppProcess, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*SHIFTOVER, "load", f"{capped.url}/", "--rate", "40", "--duration", "5m", "--workers", "1",
         "--out", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)})  # its work dir stays behind: here, not in /tmp
    kids: list[psutil.Process] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line or line.startswith("Locust started"):
                break
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert len(kids) == 2, kids  # the master and its one worker
        proc.kill()  # SIGKILL: no cleanup runs in the parent
        proc.wait(10)
        _gone, alive = psutil.wait_procs(kids, timeout=30)
        assert not alive, f"Locust processes left loading the target: {alive}"
        before = _served(capped.url)
        time.sleep(1.5)
        assert _served(capped.url) == before  # and nothing is sent any more
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in kids:
            if k.is_running():
                k.kill()


def test_too_few_users_is_the_generator_and_secrets_and_80_columns(
    capped: SampleAppProcess, tmp_path: Path
) -> None:
    url = capped.url.replace("http://", "http://bob:PASSW0RD@") + "/api/items?api_key=QKEY999&page=2"
    r = subprocess.run(
        [*SHIFTOVER, "load", url, "--rate", "40,150", "--step", "2s", "--users", "2",
         "--slo-p99", "250ms", "--pods", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "load.json").read_text())
    first, second = doc["steps"]
    assert first["verdict"] == "pass", first
    # 2 users x ~23 ms cap the generator near 87 req/s; the target (200 req/s) answers fast
    assert second["verdict"] == "generator", second
    assert "every Locust user was busy" in second["reason"] and "--users" in second["reason"]
    assert second["service_p99_ms"] <= 250 < second["p99_ms"]
    for text in (r.stdout, r.stderr, (tmp_path / "load.json").read_text(),
                 (tmp_path / "report.html").read_text()):
        assert "PASSW0RD" not in text and "QKEY999" not in text and "bob" not in text
    assert doc["target"]["url"].endswith("/api/items?api_key=<redacted>&page=2")
    lines = r.stdout.splitlines()
    table = lines[1:next(i for i, line in enumerate(lines) if line.startswith("knee:"))]
    assert "…" not in r.stdout
    assert all(len(line.rstrip()) <= 80 for line in table), table
    assert "the knee is only a lower bound: step 2 measured the load generator's limit" in r.stdout
    assert any(line.split()[-1] == "generator" for line in table), table
    assert any(line.split()[-2:] == ["pass", "knee"] for line in table), table


def test_credentials_never_reach_messages_or_descriptions() -> None:
    assert public_url("https://u:p@h:8443/x?token=t&a=1&sig=s") == \
        "https://<redacted>@h:8443/x?token=<redacted>&a=1&sig=<redacted>"
    assert public_url("http://h/x?a=1") == "http://h/x?a=1"
    t = parse_target("http://TOKEN123@127.0.0.1:8080/x?password=hunter2")
    assert "TOKEN123" not in t.describe() and "hunter2" not in t.describe()
    assert "TOKEN123" not in json.dumps(t.to_public()) and "hunter2" not in json.dumps(t.to_public())
    assert t.url is not None and "TOKEN123" in t.url  # the child still sends them
    with pytest.raises(BadInput) as e:
        check_reachable("http://bob:PASSW0RD@127.0.0.1:1")
    assert "PASSW0RD" not in str(e.value) and "PASSW0RD" not in str(e.value.hint)
    assert "curl" in str(e.value.hint) and "http://127.0.0.1:1/" in str(e.value.hint)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from locust import HttpUser\nclass U(HttpUser:\n    pass\n", "syn.py:2: SyntaxError"),
        ("import no_such_module_here\n", "ModuleNotFoundError: No module named 'no_such_module_here'"),
        ("from locust import HttpUser, TaskSet, task\n"
         "class TS(TaskSet):\n    @task\n    def a(self):\n        self.client.get('/')\n        self.interrupt()\n"
         "class U(HttpUser):\n    tasks = [TS]\n", "U in "),
    ],
    ids=["syntax-error", "import-error", "taskset"],
)
def test_a_broken_or_unpaceable_locustfile_is_bad_input(
    capped: SampleAppProcess, tmp_path: Path, source: str, message: str
) -> None:
    f = tmp_path / "syn.py"
    f.write_text(source)
    r = subprocess.run([*SHIFTOVER, "load", capped.url, "-f", str(f), "--rate", "20", "--duration", "2s",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr  # bad input, not an internal error
    assert message in r.stderr, r.stderr
    if "TaskSet" in source:  # an interrupt() would have sent a closed loop at full speed
        assert "runs TaskSet TS" in r.stderr and "--user-class" in r.stderr
    else:
        hint = r.stderr.split("see the error with: ", 1)[1].strip()
        pasted = subprocess.run(hint, shell=True, capture_output=True, text=True, timeout=60)
        assert pasted.returncode != 0 and message.split(": ")[-1].split()[0] in pasted.stderr
