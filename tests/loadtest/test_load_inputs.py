"""What a new user got wrong with `shiftover load`, each refused before any load (exit 2)
with a hint that works when pasted, and the units they read in the output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.demo.app import SampleAppProcess
from shiftover.demo.process import free_port

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with SampleAppProcess(0, "inputs", tmp_path_factory.mktemp("inputs")) as a:
        yield a.url


def _bad(*args: str) -> str:
    r = runner.invoke(app, ["load", *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    return r.output


def test_a_url_that_answers_4xx_is_refused_before_the_test(target: str) -> None:
    out = _bad(f"{target}/no/such/page", "--rate", "10", "--duration", "2s")
    assert "answered 404" in out and "hint:" in out


def test_an_slo_without_a_unit_is_refused(target: str) -> None:
    out = _bad(f"{target}/", "--rate", "10", "--duration", "2s", "--slo-p99", "100")
    assert "--slo-p99 100ms" in out


def test_a_rate_hint_with_colons_stays_text(target: str) -> None:
    out = _bad(f"{target}/", "--rate", "100:50:10", "--step", "5s")
    assert "--rate 50:100:10 --step 5s" in out  # rich once drew ":100:" as an emoji


def test_a_share_is_a_percent_or_a_fraction(target: str) -> None:
    out = _bad(f"{target}/", "--rate", "10", "--duration", "2s", "--pods", "1", "--peak", "100",
               "--headroom", "lots")
    assert "--headroom 30%" in out


def test_master_and_worker_together_are_refused() -> None:
    out = _bad("--master", "--worker", "--master-host", "127.0.0.1")
    assert "one or the other" in out


def test_a_worker_without_a_master_gives_up_with_a_hint() -> None:
    port = free_port()
    r = subprocess.run([sys.executable, "-m", "shiftover.cli", "load", "--worker", "--master-host", "127.0.0.1",
                        "--master-port", str(port), "--worker-wait", "1s"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"no Locust master answered at 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


def test_an_unknown_user_class_lists_the_files_classes(target: str, tmp_path: Path) -> None:
    lf = tmp_path / "locustfile.py"
    lf.write_text("from locust import FastHttpUser, task\n\n"
                  "class Shopper(FastHttpUser):\n    @task\n    def browse(self):\n"
                  "        self.client.get('/')\n")
    out = _bad(target, "-f", str(lf), "--user-class", "Nope", "--rate", "10", "--duration", "2s",
               "--out", str(tmp_path / "out"))
    assert "no User class named Nope" in out and "--user-class Shopper" in out


def test_a_watch_query_that_cannot_be_evaluated_stops_before_any_load(target: str, tmp_path: Path) -> None:
    out = _bad(f"{target}/", "--rate", "10", "--duration", "30s", "--watch-query", "up=up",
               "--watch-prometheus", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path))
    assert "--watch cannot evaluate" in out and "query up" in out
    assert not (tmp_path / "load.json").exists()  # refused before any load, not after the schedule


def test_with_a_locustfile_the_rate_counts_arrivals_not_requests(target: str, tmp_path: Path) -> None:
    """One arrival runs one task; a task of two requests must not look like twice the rate."""
    lf = tmp_path / "locustfile.py"
    lf.write_text("from locust import FastHttpUser, task\n\n"
                  "class TwoCalls(FastHttpUser):\n    @task\n    def page(self):\n"
                  "        self.client.get('/api/a')\n        self.client.get('/api/b')\n")
    r = runner.invoke(app, ["load", target, "-f", str(lf), "--rate", "40", "--duration", "3s",
                            "--slo-p99", "2s", "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["steps"][0]
    assert abs(s["achieved_rate"] - 40) <= 0.05 * 40, s
    assert s["requests"] >= 1.8 * 40 * 3, s  # both requests of every task are measured
