"""Hooks with real processes: `shiftover run` as a subprocess against a real HAProxy,
hook scripts that append a line to a log file, and the journal as the witness of order.

Every hook here is ``sh hook.sh LOG MODE``: it appends ``hook phase at percent pid`` to
LOG, then succeeds (``ok``), fails (``fail``: exit 1) or hangs (``hang``: a child
``sleep 600`` and a wait, so that killing the hook means killing a process group).
Order is asserted on the journal (event ids) and on the log; no wall-clock timing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from rich.console import Console

from shiftover.demo.haproxy import stub_stack
from shiftover.engine import events as ev
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.store import Event, open_store

pytestmark = pytest.mark.e2e

SERVICE = "hooks-e2e"
RUN_TIMEOUT = 120.0  # seconds a `shiftover run` may take before the test gives up on it

SCRIPT = """\
#!/bin/sh
log="$1"; mode="$2"
echo "$SHIFTOVER_HOOK $SHIFTOVER_PHASE $SHIFTOVER_AT $SHIFTOVER_PERCENT $$" >> "$log"
case "$mode" in
  ok) exit 0 ;;
  fail) echo "the hook says no" >&2; exit 1 ;;
  hang) sleep 600 & wait ;;
  fail-once)  # fails its first execution, then succeeds
    mark="$log.$SHIFTOVER_HOOK.$SHIFTOVER_PHASE.failed"
    if [ -e "$mark" ]; then exit 0; fi
    : > "$mark"; echo "first try fails" >&2; exit 1 ;;
  until-fixed)  # fails until the operator has fixed the cause (a file beside the log)
    if [ -e "$log.fixed" ]; then exit 0; fi
    echo "cannot undo: the cause is not fixed" >&2; exit 1 ;;
esac
"""

PLAN = """\
service: {service}
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new}}
steps: [50, 100]
bake: 600ms
interval: 200ms
normal_state:
  - name: new app answers
    type: http
    url: http://{new}/
    expect_status: 200
    timeout: 1s
failure_limit: 1
inconclusive_limit: 200
hooks:
{hooks}"""


class Stack(NamedTuple):
    tmp: Path
    sock: str
    new: str
    log: Path
    script: Path
    state: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    script = tmp_path / "hook.sh"
    script.write_text(SCRIPT)
    with stub_stack(tmp_path) as st:
        yield Stack(tmp_path, st.haproxy.socket_path, st.new.address, tmp_path / "hooks.log",
                    script, f"sqlite:///{tmp_path}/state.db")


def hook(s: Stack, name: str, at: str, mode: str = "ok", *, undo: str | None = "ok",
         extra: str = "") -> str:
    """One hook of the plan, as a YAML list item; ``undo``: its undo's mode (None: none)."""
    run = f"[sh, {s.script}, {s.log}, {mode}]"
    lines = f"  - name: {name}\n    at: {at}\n    run: {run}\n"
    if undo is not None:
        lines += f"    undo: {{run: [sh, {s.script}, {s.log}, {undo}]}}\n"
    return lines + extra


def write_plan(s: Stack, hooks: list[str]) -> Path:
    plan = s.tmp / "plan.yaml"
    plan.write_text(PLAN.format(service=SERVICE, sock=s.sock, new=s.new, hooks="".join(hooks)))
    return plan


def shiftover(*args: str) -> list[str]:
    return [sys.executable, "-m", "shiftover.cli", *args]


def start_run(s: Stack, plan: Path) -> subprocess.Popen[bytes]:
    out = (s.tmp / "run.out").open("ab")
    try:
        return subprocess.Popen(shiftover("run", str(plan), "--json", "--state", s.state),
                                stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


def finish(proc: subprocess.Popen[bytes], s: Stack) -> int:
    """The run's exit code; a run still going after RUN_TIMEOUT is killed and fails the test."""
    try:
        return proc.wait(RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"shiftover run did not end: {(s.tmp / 'run.out').read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def run_plan(s: Stack, plan: Path) -> int:
    return finish(start_run(s, plan), s)


def journal(s: Stack) -> list[Event]:
    with open_store(s.state) as store:
        return store.events(service=SERVICE)


def log_lines(s: Stack) -> list[list[str]]:
    """The hooks' log: [hook, phase, at, percent, pid] per execution."""
    if not s.log.exists():
        return []
    return [line.split() for line in s.log.read_text().splitlines() if line.strip()]


def index(events: list[Event], kind: str, **data: Any) -> int:
    """The position of the first event of ``kind`` whose data has these values."""
    for i, e in enumerate(events):
        if e.kind == kind and all(e.data.get(k) == v for k, v in data.items()):
            return i
    raise AssertionError(f"no {kind} {data} in {[(e.kind, e.data.get('hook')) for e in events]}")


def hook_events(events: list[Event], kind: str, phase: str) -> list[tuple[int, str, str]]:
    return [(i, e.data["hook"], e.data["at"]) for i, e in enumerate(events)
            if e.kind == kind and e.data.get("phase") == phase]


def group_alive(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are still alive (zombies are dead: they
    wait only for whoever reaps orphans here)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def kill_group(pgid: int) -> None:
    """Test hygiene: whatever a failing test left of a hook is stopped."""
    try:
        os.killpg(pgid, 9)
    except OSError:
        pass


def new_weight(s: Stack) -> int:
    return HAProxyRuntime(s.sock, 2.0).servers_state("web")["new"].weight


# --- (a) every place, in order, and the run promotes -------------------------


def test_hooks_at_start_a_step_every_step_and_promoted_run_in_order(stack: Stack) -> None:
    plan = write_plan(stack, [hook(stack, "h-start", "start"), hook(stack, "h-50", "50"),
                              hook(stack, "h-every", "every_step"),
                              hook(stack, "h-promoted", "promoted")])
    assert run_plan(stack, plan) == 0
    assert new_weight(stack) > 0

    # the hooks' own log: every place, in the plan's order, with the run's facts
    assert [line[:4] for line in log_lines(stack)] == [
        ["h-start", "run", "start", "0"],
        ["h-50", "run", "50", "50"],
        ["h-every", "run", "50", "50"],
        ["h-every", "run", "100", "100"],
        ["h-promoted", "run", "promoted", "100"],
    ]
    events = journal(stack)
    started = hook_events(events, ev.HOOK_STARTED, "run")
    assert [(h, at) for _, h, at in started] == [
        ("h-start", "start"), ("h-50", "50"), ("h-every", "50"), ("h-every", "100"),
        ("h-promoted", "promoted")]
    assert not hook_events(events, ev.HOOK_STARTED, "undo")  # promoted: nothing undone
    finished = [e for e in events if e.kind == ev.HOOK_FINISHED]
    assert len(finished) == 5 and all(e.data["ok"] and e.data["exit_code"] == 0 for e in finished)
    # intent before result, one hook at a time
    for (i, h, at), e in zip(started, finished, strict=True):
        assert e.data["hook"] == h and e.data["at"] == at and events.index(e) > i
    # each place in its place: start before any traffic moves, a step's hooks once the
    # router confirmed it, promoted after 100% and before the campaign ends promoted
    assert started[0][0] < index(events, ev.WEIGHT_INTENDED, percent=50)
    assert index(events, ev.WEIGHT_CONFIRMED, percent=50) < started[1][0]
    assert index(events, ev.WEIGHT_CONFIRMED, percent=100) < started[3][0]
    assert events.index(finished[-1]) < index(events, ev.PROMOTED)
    # the 50% step's hooks were done before the run moved on to 100%
    assert events.index(finished[2]) < index(events, ev.WEIGHT_INTENDED, percent=100)


# --- (b) a failing hook: rollback, then every undo in reverse order ----------


def test_a_failing_hook_rolls_back_and_undoes_in_reverse_after_zero(stack: Stack) -> None:
    plan = write_plan(stack, [hook(stack, "h-start", "start"), hook(stack, "h-a", "50"),
                              hook(stack, "h-b", "50", "fail")])
    assert run_plan(stack, plan) == 3  # rolled back
    assert new_weight(stack) == 0

    events = journal(stack)
    failed = index(events, ev.HOOK_FINISHED, hook="h-b", phase="run")
    assert events[failed].data["ok"] is False and events[failed].data["exit_code"] == 1
    assert "the hook says no" in events[failed].data["output"]
    zero = index(events, ev.WEIGHT_CONFIRMED, percent=0)
    rolled = index(events, ev.ROLLED_BACK)
    assert failed < index(events, ev.ROLLBACK_STARTED) < zero < rolled
    # the undo of every hook that started, the failing one's too, last started first,
    # each once, all after the router confirmed 0%
    undos = hook_events(events, ev.HOOK_STARTED, "undo")
    assert [(h, at) for _, h, at in undos] == [("h-b", "50"), ("h-a", "50"), ("h-start", "start")]
    assert all(i > rolled for i, _, _ in undos)
    done = [e for e in events if e.kind == ev.HOOK_FINISHED and e.data["phase"] == "undo"]
    assert [e.data["hook"] for e in done] == ["h-b", "h-a", "h-start"]
    assert all(e.data["ok"] for e in done)
    # the scripts ran in that order too (the undos see 0% on the router)
    undone = [line for line in log_lines(stack) if line[1] == "undo"]
    assert [(line[0], line[3]) for line in undone] == [("h-b", "0"), ("h-a", "0"),
                                                        ("h-start", "0")]
    stopped = events[-1]
    assert stopped.kind == ev.RUN_STOPPED and "UNDO NOT COMPLETE" not in json.dumps(stopped.data)


def test_a_hook_that_fails_once_counts_one_failed_check_then_runs_again(stack: Stack) -> None:
    plan = write_plan(stack, [hook(stack, "h-50", "50", "fail-once")])
    plan.write_text(plan.read_text().replace("failure_limit: 1", "failure_limit: 2"))
    assert run_plan(stack, plan) == 0  # one failed check is below the limit: promoted
    events = journal(stack)
    attempts = [(i, e.data["attempt"]) for i, e in enumerate(events)
                if e.kind == ev.HOOK_STARTED and e.data["hook"] == "h-50"]
    assert [a for _, a in attempts] == [1, 2]
    first = index(events, ev.HOOK_FINISHED, hook="h-50", ok=False)
    second = index(events, ev.HOOK_FINISHED, hook="h-50", ok=True)
    # between the failed try and the next one: a check that FAILed (the hook's failure)
    failed_checks = [i for i, e in enumerate(events)
                     if e.kind == ev.CHECK and e.data.get("verdict") == "fail"]
    assert len(failed_checks) == 1 and first < failed_checks[0] < attempts[1][0] < second
    assert ev.ROLLBACK_STARTED not in {e.kind for e in events}
    # the step bakes with its hooks done: 100% only after the second try succeeded
    assert second < index(events, ev.WEIGHT_INTENDED, percent=100)
    assert [line[0] for line in log_lines(stack)] == ["h-50", "h-50"]


def test_an_undo_that_fails_stops_the_rest_until_rollback_completes_it(stack: Stack) -> None:
    plan = write_plan(stack, [hook(stack, "h-start", "start"),
                              hook(stack, "h-50", "50", undo="until-fixed"),
                              hook(stack, "h-100", "100", "fail")])
    assert run_plan(stack, plan) == 3
    assert new_weight(stack) == 0
    events = journal(stack)
    undos = hook_events(events, ev.HOOK_STARTED, "undo")
    assert [h for _, h, _ in undos] == ["h-100", "h-50"]  # h-start waits behind h-50
    stopped = events[-1]
    assert stopped.kind == ev.RUN_STOPPED
    why = json.dumps(stopped.data)
    assert "UNDO NOT COMPLETE" in why and "h-50" in why and "shiftover rollback" in why

    # still not fixed: rollback confirms 0% and says the undo is not complete (exit 4)
    args = shiftover("rollback", str(plan), "--state", stack.state, "--json")
    r = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert r.returncode == 4, r.stdout + r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["undo"]["complete"] is False and "h-50" in out["undo"]["left"]

    # fixed: the rest runs, h-50's undo again, then h-start's
    Path(f"{stack.log}.fixed").touch()
    r = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["undo"]["complete"] is True and out["undo"]["left"] is None
    events = journal(stack)
    done = [(e.data["hook"], e.data["ok"]) for e in events
            if e.kind == ev.HOOK_FINISHED and e.data["phase"] == "undo"]
    assert done == [("h-100", True), ("h-50", False), ("h-50", False), ("h-50", True),
                    ("h-start", True)]
    assert [line[0] for line in log_lines(stack) if line[1] == "undo"] == [
        "h-100", "h-50", "h-50", "h-50", "h-start"]
    # nothing is left: another rollback has nothing to undo
    r = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert r.returncode == 0 and "undo" not in json.loads(r.stdout.splitlines()[-1])


# --- (c) a hanging hook is killed at its timeout --------------------------------


def test_a_hanging_hook_is_killed_at_its_timeout_and_rolls_back(stack: Stack) -> None:
    plan = write_plan(stack, [hook(stack, "h-start", "start"),
                              hook(stack, "h-hang", "50", "hang", extra="    timeout: 2s\n")])
    pgids: list[int] = []
    try:
        assert run_plan(stack, plan) == 3
        runs = [line for line in log_lines(stack) if line[0] == "h-hang" and line[1] == "run"]
        pgids = [int(line[4]) for line in runs]
        assert pgids
        # every attempt's process group is gone: the shell and its sleep 600 child
        for pgid in pgids:
            assert group_alive(pgid) == [], f"hook process group {pgid} left running"
    finally:
        for pgid in pgids:
            kill_group(pgid)

    events = journal(stack)
    timed_out = index(events, ev.HOOK_FINISHED, hook="h-hang", phase="run")
    data = events[timed_out].data
    assert data["ok"] is False and data["timed_out"] is True
    assert data["exit_code"] is not None and data["exit_code"] < 0  # killed by a signal
    assert "timed out" in data["summary"]
    # it counted as a failed check (failure_limit 1): the rollback came from it
    fails = [i for i, e in enumerate(events) if e.kind == ev.CHECK
             and e.data.get("verdict") == "fail" and i > timed_out]
    assert fails and fails[0] < index(events, ev.ROLLBACK_STARTED)
    rolled = index(events, ev.ROLLED_BACK)
    undos = hook_events(events, ev.HOOK_STARTED, "undo")
    assert [(h, at) for _, h, at in undos] == [("h-hang", "50"), ("h-start", "start")]
    assert all(i > rolled for i, _, _ in undos)


# --- (d) an operator's rollback while a hook runs ------------------------------


def test_rollback_from_another_process_while_a_hook_runs(stack: Stack) -> None:
    plan = write_plan(stack, [hook(stack, "h-start", "start"),
                              hook(stack, "h-hang", "50", "hang", extra="    timeout: 5m\n")])
    proc = start_run(stack, plan)
    pgid = None
    try:
        deadline = time.monotonic() + 60
        while pgid is None:  # bounded: until the hook at 50% has written its line
            assert proc.poll() is None, (stack.tmp / "run.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the hook at 50% never started"
            hung = [line for line in log_lines(stack) if line[0] == "h-hang"]
            if hung:
                pgid = int(hung[0][4])
            else:
                time.sleep(0.05)
        assert group_alive(pgid), "the hook is running"
        r = subprocess.run(shiftover("rollback", str(plan), "--state", stack.state, "--json",
                                     "-m", "e2e: rollback while a hook runs"),
                           capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert r.returncode == 0, r.stdout + r.stderr
        assert finish(proc, stack) == 3
        assert group_alive(pgid) == [], "the running hook was killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if pgid is not None:
            kill_group(pgid)
    assert new_weight(stack) == 0

    events = journal(stack)
    requested = index(events, ev.ROLLBACK_REQUESTED)
    zero = index(events, ev.WEIGHT_CONFIRMED, percent=0)
    killed = index(events, ev.HOOK_FINISHED, hook="h-hang", phase="run")
    assert index(events, ev.HOOK_STARTED, hook="h-hang", phase="run") < requested < zero
    # the router first: 0% confirmed before the running hook's end is journalled
    assert zero < killed
    assert events[killed].data["ok"] is False and events[killed].data["stopped"] is True
    undos = hook_events(events, ev.HOOK_STARTED, "undo")
    assert [(h, at) for _, h, at in undos] == [("h-hang", "50"), ("h-start", "start")]
    assert all(i > killed for i, _, _ in undos)
    assert all(e.data["ok"] for e in events
               if e.kind == ev.HOOK_FINISHED and e.data["phase"] == "undo")
    assert [line[0] for line in log_lines(stack) if line[1] == "undo"] == ["h-hang", "h-start"]


# --- (e) the demo's errors scenario moves the batch back ----------------------


def watch_batch(running: Any, other: Any, name: str, other_name: str) -> dict[str, Any]:
    """Both apps' batch before and after three runs of ``running``'s (0.5 s period,
    bounded): ``{name}0``, ``{name}1``, ``{other_name}0``, ``{other_name}1``."""
    first, other0 = running.batch(), other.batch()
    deadline = time.monotonic() + 30
    last = first
    while last["runs"] < first["runs"] + 3:
        assert time.monotonic() < deadline, f"{name}'s batch does not run: {last}"
        time.sleep(0.1)
        last = running.batch()
    return {f"{name}0": first, f"{name}1": last, f"{other_name}0": other0,
            f"{other_name}1": other.batch()}


def test_demo_errors_scenario_leaves_the_batch_on_old_only(tmp_path: Path) -> None:
    from shiftover.demo.scenario import BATCH_HOOKS, BATCH_STEP, DemoStack, _print_summary, run_demo

    seen: dict[str, Any] = {}

    def inspect(demo: DemoStack) -> None:
        seen.update(watch_batch(demo.old, demo.new, "old", "new"))

    summary = run_demo("errors", as_json=True, rate=200, workdir=tmp_path,
                       console=Console(file=io.StringIO()), bake="3s", inspect=inspect)
    assert summary["outcome"] == "rolled_back"
    # after the rollback the batch runs on the old environment only: old's count grows,
    # new's stays where it was while three of old's runs went by
    assert seen["old1"]["enabled"] is True and seen["old1"]["runs"] >= seen["old0"]["runs"] + 3
    assert seen["new1"]["enabled"] is False and seen["new1"]["runs"] == seen["new0"]["runs"]
    assert seen["new0"]["runs"] > 0  # it did move: new ran the batch before the rollback

    with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        events = store.events(service="accounting-web")
    stop_old, start_new = BATCH_HOOKS
    at = f"{BATCH_STEP:g}"
    assert [(h, a) for _, h, a in hook_events(events, ev.HOOK_STARTED, "run")] == [
        (stop_old, at), (start_new, at)]
    assert index(events, ev.HOOK_FINISHED, hook=start_new, phase="run") < index(
        events, ev.ROLLBACK_STARTED)
    rolled = index(events, ev.ROLLED_BACK)
    undos = hook_events(events, ev.HOOK_STARTED, "undo")
    assert [h for _, h, _ in undos] == [start_new, stop_old]  # reverse order
    assert all(i > rolled for i, _, _ in undos)
    assert all(e.data["ok"] for e in events if e.kind == ev.HOOK_FINISHED)

    # the demo shows the hooks and their undos, and where the batch ran
    assert any(f"undo of hook {start_new}" in line and "done" in line
               for line in summary["hooks"])
    out = io.StringIO()
    _print_summary(Console(file=out, width=200), summary)
    text = out.getvalue()
    assert f"undo of hook {stop_old} at {at} done" in text
    assert "batch runs" in text and "old" in text and "(stopped)" in text


def test_demo_healthy_scenario_ends_with_the_batch_on_new_only(tmp_path: Path) -> None:
    from shiftover.demo.scenario import BATCH_HOOKS, DemoStack, run_demo

    seen: dict[str, Any] = {}

    def inspect(demo: DemoStack) -> None:
        seen.update(watch_batch(demo.new, demo.old, "new", "old"))

    summary = run_demo("healthy", as_json=True, rate=200, workdir=tmp_path,
                       console=Console(file=io.StringIO()), bake="3s", inspect=inspect)
    assert summary["outcome"] == "promoted"
    assert seen["new1"]["enabled"] is True
    assert seen["old1"]["enabled"] is False and seen["old1"]["runs"] == seen["old0"]["runs"]
    assert summary["batch"]["new"]["enabled"] is True
    assert summary["batch"]["old"]["enabled"] is False
    with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        events = store.events(service="accounting-web")
    assert [h for _, h, _ in hook_events(events, ev.HOOK_STARTED, "run")] == list(BATCH_HOOKS)
    assert not hook_events(events, ev.HOOK_STARTED, "undo")


# --- Ctrl-C / SIGTERM of the run while a hook runs --------------------------


def test_sigterm_while_a_hook_runs_stops_its_group_and_the_next_run_holds(stack: Stack) -> None:
    plan = write_plan(stack, [hook(stack, "h-hang", "50", "hang", extra="    timeout: 5m\n")])
    proc = start_run(stack, plan)
    pgid = None
    try:
        deadline = time.monotonic() + 60
        while pgid is None:  # bounded: until the hook at 50% has written its line
            assert proc.poll() is None, (stack.tmp / "run.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the hook at 50% never started"
            hung = [line for line in log_lines(stack) if line[0] == "h-hang"]
            if hung:
                pgid = int(hung[0][4])
            else:
                time.sleep(0.05)
        assert group_alive(pgid)
        proc.terminate()  # what Ctrl-C or a service manager's stop does
        assert finish(proc, stack) == 4  # held: weights left in place
        assert group_alive(pgid) == [], "the run's stop left its hook running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if pgid is not None:
            kill_group(pgid)
    assert new_weight(stack) > 0  # a stop is not a rollback
    events = journal(stack)
    stopped = index(events, ev.HOOK_FINISHED, hook="h-hang", phase="run")
    assert events[stopped].data["stopped"] is True and events[stopped].data["ok"] is False
    assert not [e for e in events if e.kind == ev.CHECK and e.data.get("verdict") == "fail"]

    # the next run cannot know whether the hook did its work (not idempotent): it holds at
    # 50% without running it again, and status names the ack command; the ack lets it go on
    lines_before = len(log_lines(stack))
    second = start_run(stack, plan)
    try:
        ack = None
        deadline = time.monotonic() + 60
        while ack is None:  # bounded: until status shows the held hook's ack command
            assert second.poll() is None, (stack.tmp / "run.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the resumed run never said it holds for an ack"
            r = subprocess.run(shiftover("status", str(plan), "--state", stack.state, "--json"),
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            ack = next((h for h in json.loads(r.stdout)["hints"]
                        if " ack " in h and "--hook h-hang" in h), None)
            if ack is None:
                time.sleep(0.1)
        assert "--at 50" in ack and "--done" in ack
        assert len(log_lines(stack)) == lines_before  # not run again
        assert new_weight(stack) > 0 and not [
            e for e in journal(stack) if e.kind == ev.WEIGHT_INTENDED and e.data["percent"] > 50]
        r = subprocess.run(shiftover("ack", str(plan), "--state", stack.state, "--hook", "h-hang",
                                     "--at", "50", "--done", "-m", "e2e: checked, it did its work"),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert finish(second, stack) == 0  # promoted
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
    assert len(log_lines(stack)) == lines_before  # --done: never run again
    events = journal(stack)
    assert index(events, ev.HOOK_ACKED, hook="h-hang") < index(events, ev.WEIGHT_INTENDED,
                                                                percent=100)


# --- a hook's output in the journal: redacted -----------------------------------


def test_a_hooks_secret_never_reaches_the_journal_or_the_output(stack: Stack) -> None:
    secret = "s3cr3t-hook-token-4242"
    echo = "[sh, -c, 'echo token=$TOKEN; echo \"auth $TOKEN\" >&2']"
    plan = write_plan(stack, [
        f"  - name: h-secret\n    at: 50\n    run: {echo}\n    env: {{TOKEN: '${{HOOK_TOKEN}}'}}\n"
        f"    undo: {{run: {echo}, env: {{TOKEN: '${{HOOK_TOKEN}}'}}}}\n",
        hook(stack, "h-100", "100", "fail")])
    env = {**os.environ, "HOOK_TOKEN": secret}
    r = subprocess.run(shiftover("run", str(plan), "--json", "--state", stack.state),
                       capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
    assert r.returncode == 3, r.stdout[-3000:] + r.stderr[-3000:]
    events = journal(stack)
    outputs = [e.data["output"] for e in events
               if e.kind == ev.HOOK_FINISHED and e.data["hook"] == "h-secret"]
    assert len(outputs) == 2  # the hook and its undo both saw the value, and printed it
    assert all("token=***" in o and "auth ***" in o for o in outputs), outputs
    history = subprocess.run(shiftover("history", str(plan), "--state", stack.state, "--json",
                                       "--all"),
                             capture_output=True, text=True, timeout=60, env=env)
    assert history.returncode == 0, history.stderr
    for text in (r.stdout, r.stderr, history.stdout, history.stderr,
                 json.dumps([e.data for e in events])):
        assert secret not in text


# --- webhook hooks against a local receiver --------------------------------------


class Receiver(ThreadingHTTPServer):
    """Records every request (path, JSON body); answers 503 to a path's first
    ``fail_first`` requests, then 200."""

    daemon_threads = True

    def __init__(self, fail_first: dict[str, int]) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[int] = []
        self.fail_first = dict(fail_first)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with self.server.lock:
            left = self.server.fail_first.get(self.path, 0)
            self.server.fail_first[self.path] = left - 1
            code = 503 if left > 0 else 200
            self.server.seen.append((self.path, body))
            self.server.answers.append(code)
        out = b'{"ok": true}'
        self.send_response(code)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def test_webhook_hooks_and_undos_reach_a_receiver_in_order(stack: Stack) -> None:
    receiver = Receiver({"/batch/move": 1})
    serving = threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05},
                               daemon=True)
    serving.start()
    try:
        url = receiver.url
        plan = write_plan(stack, [
            f"  - name: move-batch\n    at: 50\n    webhook: {{url: '{url}/batch/move'}}\n"
            f"    undo: {{webhook: {{url: '{url}/batch/back'}}}}\n    retries: 2\n",
            f"  - name: smoke\n    at: 100\n    webhook: {{url: '{url}/smoke', method: POST, "
            f"body: {{suite: quick}}}}\n    undo: {{webhook: {{url: '{url}/smoke/undo'}}}}\n",
            hook(stack, "h-100", "100", "fail")])
        assert run_plan(stack, plan) == 3
    finally:
        receiver.shutdown()
        receiver.server_close()
        serving.join(5)
    paths = [path for path, _ in receiver.seen]
    # the first call answered 503 and was tried again; the undos in reverse order
    assert paths == ["/batch/move", "/batch/move", "/smoke", "/smoke/undo", "/batch/back"]
    assert receiver.answers == [503, 200, 200, 200, 200]
    move, back = receiver.seen[1][1], receiver.seen[4][1]
    # a webhook without a body gets the run's facts
    assert move["hook"] == "move-batch" and move["phase"] == "run" and move["at"] == "50"
    assert move["percent"] == "50" and move["service"] == SERVICE and move["tries"] == 2
    assert back["phase"] == "undo" and back["percent"] == "0" and back["run_id"] == move["run_id"]
    assert receiver.seen[2][1] == {"suite": "quick"}  # a body given in the plan, as given

    events = journal(stack)
    moved = index(events, ev.HOOK_FINISHED, hook="move-batch", phase="run")
    assert events[moved].data["ok"] is True and events[moved].data["tries"] == 2
    assert events[moved].data["status"] == 200
    rolled = index(events, ev.ROLLED_BACK)
    undos = hook_events(events, ev.HOOK_STARTED, "undo")
    assert [h for _, h, _ in undos] == ["h-100", "smoke", "move-batch"]
    assert all(i > rolled for i, _, _ in undos)
