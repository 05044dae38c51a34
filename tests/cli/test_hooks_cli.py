"""`shiftover ack` and `status` around hooks, on a journal written as a run would
leave it (a run killed while a hook ran; a rollback whose undo failed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.engine import events as ev
from shiftover.store import open_store
from shiftover.types import Weights

PLAN = """\
service: shop
router: {type: haproxy, socket: /nonexistent/admin.sock, backend: web, old: old, new: new}
steps: [10, 50, 100]
bake: 1m
normal_state:
  - {name: up, type: http, url: "http://127.0.0.1:9/health"}
hooks:
  - name: batch
    at: 50
    run: [./bin/batch, move, --to, new]
    undo: {run: [./bin/batch, move, --to, old]}
  - name: smoke
    at: every_step
    run: [./bin/smoke]
    idempotent: true
"""

runner = CliRunner()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.yaml").write_text(PLAN)
    return tmp_path


def journal(here: Path, *events: tuple[str, dict[str, Any]]) -> None:
    with open_store(f"sqlite:///{here / 'state.db'}") as store:
        for n, (kind, data) in enumerate(events):
            store.append(service="shop", run_id="r1", kind=kind, at=1_800_000_000.0 + n, data=data)


def killed_during_batch(here: Path) -> None:
    journal(here,
            (ev.RUN_STARTED, {"run_id": "r1", "resumed": False}),
            (ev.WEIGHT_CONFIRMED, ev.weight_data(Weights(50), step_index=1)),
            (ev.HOOK_STARTED, {"hook": "batch", "at": "50", "phase": "run", "attempt": 1,
                               "campaign": 1, "idempotent": False, "has_undo": True}),
            # the next run started (and was stopped): the hook's result is unknown now
            (ev.RUN_STARTED, {"run_id": "r2", "resumed": True}))


def cli(*args: str) -> Any:
    return runner.invoke(app, [*args])


def test_ack_with_nothing_waiting_says_so(here: Path) -> None:
    journal(here, (ev.RUN_STARTED, {"run_id": "r1", "resumed": False}))
    r = cli("ack", "plan.yaml", "--hook", "batch", "--done", "--state", "state.db")
    assert r.exit_code == 2, r.output
    assert "not waiting for an acknowledgement" in r.output
    assert "no hook is waiting" in r.output and "Traceback" not in r.output


def test_ack_of_another_hook_lists_the_one_waiting_as_a_command(here: Path) -> None:
    killed_during_batch(here)
    r = cli("ack", "plan.yaml", "--hook", "smoke", "--done", "--state", "state.db")
    assert r.exit_code == 2, r.output
    assert "shiftover ack plan.yaml --hook batch --at 50 --done --state state.db" in r.output


def test_ack_needs_done_or_not_done(here: Path) -> None:
    killed_during_batch(here)
    r = cli("ack", "plan.yaml", "--hook", "batch", "--state", "state.db")
    assert r.exit_code == 2, r.output
    assert "--done (it did its work) or --not-done" in r.output


def test_status_shows_the_hook_and_the_exact_ack_command_and_ack_records_it(here: Path) -> None:
    killed_during_batch(here)
    r = cli("status", "plan.yaml", "--state", "state.db", "--json")
    report = json.loads(r.stdout)
    assert "ack plan.yaml --hook batch --at 50 --done --state state.db" in " ".join(report["hints"])
    assert [(h["hook"], h["status"]) for h in report["hooks"]] == [("batch", "unknown")]
    assert "result is unknown" in report["status_detail"]
    r = cli("ack", "plan.yaml", "--hook", "batch", "--done", "-m", "checked the scheduler",
            "--state", "state.db")
    assert r.exit_code == 0, r.output
    with open_store(f"sqlite:///{here / 'state.db'}") as store:
        acked = [e for e in store.events(service="shop") if e.kind == ev.HOOK_ACKED]
    assert [(e.data["hook"], e.data["at"], e.data["done"], e.data["campaign"]) for e in acked] == [
        ("batch", "50", True, 1)]
    assert acked[0].actor
    report = json.loads(cli("status", "plan.yaml", "--state", "state.db", "--json").stdout)
    assert [(h["hook"], h["status"]) for h in report["hooks"]] == [("batch", "ok")]
    assert not any(" ack " in h for h in report["hints"])


def test_status_after_a_rollback_with_an_undo_left_says_what_and_how(here: Path) -> None:
    journal(here,
            (ev.RUN_STARTED, {"run_id": "r1", "resumed": False}),
            (ev.WEIGHT_CONFIRMED, ev.weight_data(Weights(50), step_index=1)),
            (ev.HOOK_STARTED, {"hook": "batch", "at": "50", "phase": "run", "attempt": 1,
                               "campaign": 1, "idempotent": False, "has_undo": True}),
            (ev.HOOK_FINISHED, {"hook": "batch", "at": "50", "phase": "run", "ok": True,
                                "campaign": 1, "summary": "exit 0 in 0.1s"}),
            (ev.ROLLBACK_STARTED, {"reason": "errors"}),
            (ev.WEIGHT_CONFIRMED, ev.weight_data(Weights(0), step_index=-1)),
            (ev.ROLLED_BACK, {"seconds": 1.0, "reason": "errors"}),
            (ev.HOOK_STARTED, {"hook": "batch", "at": "50", "phase": "undo", "attempt": 1,
                               "campaign": 1, "idempotent": False, "has_undo": True}),
            (ev.HOOK_FINISHED, {"hook": "batch", "at": "50", "phase": "undo", "ok": False,
                                "campaign": 1, "summary": "exit 1 in 0.1s"}))
    r = cli("status", "plan.yaml", "--state", "state.db")
    assert "undo left" in r.stdout and "batch at 50" in r.stdout
    assert "shiftover rollback plan.yaml --state state.db" in r.stdout
    # the undo done by hand instead, and acknowledged: nothing is left
    r = cli("ack", "plan.yaml", "--hook", "batch", "--undo", "--done", "--state", "state.db")
    assert r.exit_code == 0, r.output
    report = json.loads(cli("status", "plan.yaml", "--state", "state.db", "--json").stdout)
    assert report["undo_pending"] == []
