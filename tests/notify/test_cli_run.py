"""Notifications from a real `shiftover run` (HAProxy router, a local receiver):
delivered in order after the receiver's first failures, and a receiver that hangs
changes nothing in the run (the same journal as without notifications)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.demo.haproxy import stub_stack
from shiftover.engine import events as ev
from shiftover.store import open_store

from .conftest import Receiver

pytestmark = pytest.mark.e2e
runner = CliRunner()

PLAN = """\
service: notify-e2e
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new}}
steps: [50, 100]
bake: 600ms
interval: 200ms
normal_state:
  - {{name: new app answers, type: http, url: "http://{new}/", timeout: 1s}}
failure_limit: 1
"""

NOTIFY = """\
notify:
  - name: ops
    webhook: {{url: "{url}/hook?token=t0ken-abc123", timeout: 1s}}
    events: [step_advanced, promoted]
"""


def run_plan(tmp_path: Path, url: str | None) -> tuple[int, str, list[Any]]:
    with stub_stack(tmp_path) as st:
        plan = tmp_path / "plan.yaml"
        text = PLAN.format(sock=st.haproxy.socket_path, new=st.new.address)
        plan.write_text(text + (NOTIFY.format(url=url) if url else ""))
        state = tmp_path / "state.db"
        r = runner.invoke(app, ["run", str(plan), "--state", str(state)])
    with open_store(f"sqlite:///{state}") as store:
        events = list(store.events(service="notify-e2e"))
    return r.exit_code, r.output, events


def shape(events: list[Any]) -> list[tuple[str, Any]]:
    """The run's journal, as a sequence that does not depend on wall-clock time."""
    return [(e.kind, e.data.get("percent")) for e in events
            if e.kind in (ev.WEIGHT_INTENDED, ev.WEIGHT_CONFIRMED, ev.STEP_ADVANCED,
                          ev.PROMOTED, ev.ROLLBACK_STARTED)]


def test_delivered_in_order_after_the_receivers_first_failures(tmp_path: Path,
                                                               receiver: Receiver) -> None:
    receiver.fail_first = 2
    code, out, events = run_plan(tmp_path, receiver.url)
    assert code == 0, out
    bodies = receiver.delivered()
    assert [(b["event"], b["percent"]) for b in bodies] == [
        ("step_advanced", 50.0), ("step_advanced", 100.0), ("promoted", 100.0)]
    # the first message was retried, not dropped or reordered
    assert [r.status for r in receiver.requests][:3] == [500, 500, 200]
    failed = [e.data for e in events if e.kind == ev.NOTIFY_FAILED]
    assert failed and failed[0]["target"] == "ops" and not failed[0]["gave_up"]
    # the token in the URL is a credential: never in the journal or the output
    assert "t0ken-abc123" not in out
    assert all("t0ken-abc123" not in str(e.data) for e in events)


def test_a_hanging_receiver_changes_nothing_in_the_run(tmp_path: Path,
                                                       receiver: Receiver) -> None:
    receiver.hang = True
    code, out, with_hang = run_plan(tmp_path / "hang", receiver.url)
    assert code == 0, out
    code, out, without = run_plan(tmp_path / "none", None)
    assert code == 0, out
    assert shape(with_hang) == shape(without)
    # what could not be delivered is journalled, after the run's end
    failed = [e.data for e in with_hang if e.kind == ev.NOTIFY_FAILED]
    assert failed and all("t0ken-abc123" not in str(f) for f in failed)
