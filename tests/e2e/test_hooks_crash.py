"""SIGKILL a real `shiftover run` while one of the plan's hooks runs, then resume.

Real HAProxy (the router), real `shiftover` processes, real hook processes. The hook
script writes ``started`` with its pid to a log, sleeps for as long as a control
file says, then writes ``done``: the test kills the run once the log shows the hook
at work, so the kill always lands inside the hook, whatever the machine's speed.

- ``idempotent: true``: the next run runs the hook again (two starts in its log)
  and promotes.
- ``idempotent: false``: the next run holds at the hook's step and prints the exact
  ``shiftover ack`` command (so does ``status``); nothing moves above that step until
  the ack pasted as printed wakes the live run (``--done``: it goes on without
  running the hook again; ``--not-done``: it runs the hook again).
- A run killed during a rollback's undo: ``shiftover rollback`` (no live run) runs
  what is left to undo; an undo of a hook that is not idempotent needs ``ack --undo``.
  Right after the kill the dead run's lease is still live: ``rollback`` waits it out.
- The operator's mistakes with ``shiftover ack``: exit 2 with a clear message.
- ``status`` says ``held`` while a live run waits for an ack; ``ack`` is refused while the
  dead run's hook process still runs.

A SIGKILL leaves the hook's process behind (it runs in its own session): the tests
kill it by its process group, except two that show what happens to it (the next run
stops it before running the hook again; ``ack`` waits for it to end). Everything is asserted on the journal and the hooks' logs,
never on wall-clock time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from shiftover.demo.haproxy import stub_stack
from shiftover.engine import events as ev
from shiftover.haproxy_api import HAProxyRuntime
from shiftover.store import open_store
from shiftover.store.holders import find_run
from shiftover.types import Weights

pytestmark = pytest.mark.e2e

SERVICE = "hooks-crash"
LEASE_TTL = "4"  # the shortest this plan allows (a dead run's lease blocks the next run)

HOOK_SCRIPT = """\
import os, sys, time
log, control, name = sys.argv[1], sys.argv[2], sys.argv[3]
env = os.environ
def write(word):
    with open(log, "a") as f:
        f.write(f"{word} {name} {env['SHIFTOVER_PHASE']} pid={os.getpid()} "
                f"at={env['SHIFTOVER_AT']} percent={env.get('SHIFTOVER_PERCENT')} "
                f"attempt={env['SHIFTOVER_ATTEMPT']} run={env['SHIFTOVER_RUN_ID']}\\n")
write("started")
own = f"{control}.{name}"  # a hook's own pause, else the common one
time.sleep(float(open(own if os.path.exists(own) else control).read()))
write("done")
"""

PLAN = """\
service: {service}
router: {{type: haproxy, socket: {sock}, backend: web, old: old, new: new, timeout: 500ms}}
steps: [25, 50, 100]
bake: 600ms
interval: 200ms
normal_state:
  - name: new app answers
    type: http
    url: http://{new}/
    expect_status: 200
    timeout: 500ms
failure_limit: 2
approvals: {approvals}
hooks:
  - name: scale-workers
    at: 25
    run: {workers_run}
    undo: {{run: {workers_undo}}}
    idempotent: true
  - name: move-batch
    at: 50
    run: {batch_run}
    undo: {{run: {batch_undo}}}
    idempotent: {idempotent}
"""


class Stack(NamedTuple):
    tmp: Path
    plan: Path
    state: str
    log: Path
    control: Path
    socket: str


def shiftover(*args: str) -> list[str]:
    return [sys.executable, "-m", "shiftover.cli", *args]


def pasted(command: str) -> list[str]:
    """A command as printed (``shiftover ack ...``), run as the operator would paste it."""
    argv = shlex.split(command)
    assert argv[0] == "shiftover", command
    return shiftover(*argv[1:])


def hook_argv(tmp: Path, name: str) -> str:
    return json.dumps([sys.executable, str(tmp / "hook.py"), str(tmp / "hooks.log"),
                       str(tmp / "sleep"), name])


def make_stack(tmp: Path, sock: str, new: str, *, idempotent: bool,
               approvals: str = "[]") -> Stack:
    (tmp / "hook.py").write_text(HOOK_SCRIPT)
    plan = tmp / "plan.yaml"
    plan.write_text(PLAN.format(
        service=SERVICE, sock=sock, new=new, idempotent=str(idempotent).lower(),
        approvals=approvals,
        workers_run=hook_argv(tmp, "workers-up"), workers_undo=hook_argv(tmp, "workers-down"),
        batch_run=hook_argv(tmp, "batch-to-new"), batch_undo=hook_argv(tmp, "batch-to-old")))
    control = tmp / "sleep"
    control.write_text("0.1")
    return Stack(tmp, plan, f"sqlite:///{tmp}/state.db", tmp / "hooks.log", control, sock)


@pytest.fixture(params=[True, False], ids=["idempotent", "not-idempotent"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with stub_stack(tmp_path) as st, _orphans(tmp_path / "hooks.log"):
        yield make_stack(tmp_path, st.haproxy.socket_path, st.new.address,
                         idempotent=bool(request.param))


@pytest.fixture(params=[True, False], ids=["idempotent", "not-idempotent"])
def held_at_50(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """The same stack, the 100% step waiting for an approval nobody gives: a run stays
    at 50% until it is rolled back."""
    with stub_stack(tmp_path) as st, _orphans(tmp_path / "hooks.log"):
        yield make_stack(tmp_path, st.haproxy.socket_path, st.new.address,
                         idempotent=bool(request.param), approvals="[100]")


@contextlib.contextmanager
def _orphans(log: Path) -> Iterator[None]:
    """Whatever hook is still alive at the end (a test that failed half-way) is killed."""
    try:
        yield
    finally:
        for line in log.read_text().splitlines() if log.exists() else []:
            _kill_group(int(line.split("pid=")[1].split()[0]))


def _kill_group(pid: int) -> bool:
    """SIGKILL a hook's process group (it is its session leader); False if it was gone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def log_lines(st: Stack, word: str | None = None) -> list[str]:
    lines = st.log.read_text().splitlines() if st.log.exists() else []
    return [x for x in lines if word is None or x.startswith(word + " ")]


def journal(st: Stack) -> list[Any]:
    with open_store(st.state) as store:
        return list(store.events(service=SERVICE))


def wait_for(what: str, ok: Callable[[], Any], *, limit: float = 60.0,
             proc: subprocess.Popen[str] | None = None) -> Any:
    """Poll ``ok()`` until it is truthy (bounded); fail early if ``proc`` ended."""
    end = time.monotonic() + limit
    while True:
        got = ok()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {limit:g}s")
        time.sleep(0.05)


class Run:
    """A `shiftover run` subprocess whose stdout is read by a thread (never blocks it)."""

    def __init__(self, st: Stack, *, as_json: bool = True) -> None:
        args = ["run", str(st.plan), "--state", st.state, "--lease-ttl", LEASE_TTL]
        self.proc = subprocess.Popen(shiftover(*args, *(["--json"] if as_json else [])),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)

    def finish(self, limit: float = 120) -> int:
        try:
            self.proc.wait(limit)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._reader.join(10)
        return self.proc.returncode

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def text(self) -> str:
        return "\n".join(self.lines)


def new_weight(st: Stack) -> Weights | None:
    state = HAProxyRuntime(st.socket, 2.0).servers_state("web")
    return Weights.from_backend(state["old"].weight, state["new"].weight)


def kill_inside(st: Stack, run: Run, hook: str, phase: str = "run", *,
                kill_orphan: bool = True) -> int:
    """Wait until ``hook``'s process is at work, SIGKILL the run, kill the orphaned
    hook (still alive: its own session survived the run), return its pid."""
    started = wait_for(f"{hook} ({phase}) started", lambda: [
        x for x in log_lines(st, "started") if x.split()[1] == hook and x.split()[2] == phase],
        proc=run.proc)
    run.kill()
    pid = int(started[-1].split("pid=")[1].split()[0])
    if kill_orphan:
        assert _kill_group(pid), "the hook's process died with the run: it outlives a SIGKILL"
    return pid


def wait_lease_expired(st: Stack) -> None:
    """The dead run's lease blocks the router target until it expires (database clock)."""
    def expired() -> bool:
        with open_store(st.state) as store:
            holder = find_run(store, SERVICE)
        return holder is None or not holder.lease_live
    wait_for("the dead run's lease expired", expired, limit=30)


def reach_batch_hook_and_kill(st: Stack, *, kill_orphan: bool = True) -> int:
    slow = st.control.with_name("sleep.batch-to-new")
    slow.write_text("60")  # the batch hook would take a minute: the kill lands inside it
    first = Run(st)
    try:
        pid = kill_inside(st, first, "batch-to-new", kill_orphan=kill_orphan)
    finally:
        first.finish(10)
    slow.unlink()
    events = journal(st)
    started = [e for e in events if e.kind == ev.HOOK_STARTED]
    assert [(e.data["hook"], e.data["at"]) for e in started] == [
        ("scale-workers", "25"), ("move-batch", "50")]
    assert not any(e.kind == ev.HOOK_FINISHED and e.data["hook"] == "move-batch" for e in events)
    assert not any(e.kind == ev.RUN_STOPPED for e in events)  # killed: it said nothing
    assert new_weight(st) == Weights(50)
    return pid


def checks_since_resumed(st: Stack) -> int:
    events = journal(st)
    runs = [i for i, e in enumerate(events) if e.kind == ev.RUN_STARTED]
    return 0 if len(runs) < 2 else sum(e.kind == ev.CHECK for e in events[runs[1]:])


def intents_above(events: list[Any], percent: float) -> list[Any]:
    return [e for e in events if e.kind == ev.WEIGHT_INTENDED and e.data["percent"] > percent]


def test_sigkill_while_a_hook_runs_then_resume(stack: Stack) -> None:
    st = stack
    reach_batch_hook_and_kill(st)
    assert len(log_lines(st, "started")) == 2 and len(log_lines(st, "done")) == 1  # workers done
    wait_lease_expired(st)
    idempotent = "idempotent: true" in st.plan.read_text().split("move-batch")[1]

    if idempotent:
        second = Run(st)
        assert second.finish() == 0, second.text()[-2000:] + second.stderr()[-2000:]
        batch = [x for x in log_lines(st, "started") if x.split()[1] == "batch-to-new"]
        assert len(batch) == 2, st.log.read_text()  # killed once, run again
        assert "attempt=2" in batch[1] and "percent=50" in batch[1]
        assert len([x for x in log_lines(st, "done") if x.split()[1] == "batch-to-new"]) == 1
        events = journal(st)
        runs = [i for i, e in enumerate(events) if e.kind == ev.RUN_STARTED]
        again = [e for e in events[runs[1]:] if e.kind == ev.HOOK_STARTED]
        assert [(e.data["hook"], e.data["attempt"]) for e in again] == [("move-batch", 2)]
        assert [e.kind for e in events][-2:] == [ev.PROMOTED, ev.RUN_STOPPED]
        assert json.loads(second.lines[-1])["outcome"] == "promoted"
        assert new_weight(st) == Weights(100)
        return

    # not idempotent: the resumed run holds at 50% and says what to type
    second = Run(st, as_json=False)
    try:
        held = wait_for("the run prints the ack command", lambda: [
            x for x in second.lines if "shiftover ack" in x], proc=second.proc)
        ack = held[0].split("next: ")[1].strip()
        assert ack == (f"shiftover ack {st.plan} --hook move-batch --at 50 --done "
                       f"--state {st.state}"), held[0]
        assert "not idempotent" in held[0]
        status = subprocess.run(shiftover("status", str(st.plan), "--state", st.state, "--json"),
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert ack in report["hints"], report["hints"]

        # the operator's mistakes: a wrong hook name, no answer
        wrong = subprocess.run(pasted(ack.replace("move-batch", "move-bach")),
                               capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 2
        assert "hook 'move-bach' at 50 is not waiting" in wrong.stderr and ack in wrong.stderr, wrong.stderr
        assert "Traceback" not in wrong.stderr
        unsure = subprocess.run(pasted(ack.replace(" --done", "")),
                                capture_output=True, text=True, timeout=60)
        assert unsure.returncode == 2
        assert "--done" in unsure.stderr and "--not-done" in unsure.stderr, unsure.stderr

        # a few more checks while held: the run holds, nothing above 50%
        checks = checks_since_resumed(st)
        wait_for("three more checks while held", lambda: checks_since_resumed(st) >= checks + 3,
                 proc=second.proc)
        assert not intents_above(journal(st), 50)
        assert new_weight(st) == Weights(50)
        assert second.proc.poll() is None  # still running: it waits for the ack

        done = subprocess.run(pasted(ack), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert second.finish() == 0, second.text()[-2000:] + second.stderr()[-2000:]
    finally:
        if second.proc.poll() is None:
            second.kill()
    events = journal(st)
    kinds = [e.kind for e in events]
    acked = kinds.index(ev.HOOK_ACKED)
    assert events[acked].data["done"] is True and events[acked].data["hook"] == "move-batch"
    assert not intents_above(events[:acked], 50)   # nothing moved above 50% before the ack
    assert intents_above(events[acked:], 50)       # and then it went on
    assert kinds[-2:] == [ev.PROMOTED, ev.RUN_STOPPED] and new_weight(st) == Weights(100)
    # --done: the hook was not run again
    assert len([x for x in log_lines(st, "started") if x.split()[1] == "batch-to-new"]) == 1
    assert "promoted" in second.text()


@pytest.mark.parametrize("stack", [False], indirect=True, ids=["not-idempotent"])
def test_ack_not_done_runs_the_hook_again(stack: Stack) -> None:
    st = stack
    reach_batch_hook_and_kill(st)
    wait_lease_expired(st)
    second = Run(st)
    try:
        wait_for("two checks of the resumed run", lambda: checks_since_resumed(st) >= 2,
                 proc=second.proc)
        assert not intents_above(journal(st), 50)  # held at 50%
        r = subprocess.run(shiftover("ack", str(st.plan), "--state", st.state, "--hook",
                                     "move-batch", "--not-done", "-m", "the batch never moved"),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert second.finish() == 0, second.text()[-2000:] + second.stderr()[-2000:]
    finally:
        if second.proc.poll() is None:
            second.kill()
    batch = [x for x in log_lines(st, "started") if x.split()[1] == "batch-to-new"]
    assert len(batch) == 2 and "attempt=1" in batch[1], st.log.read_text()
    events = journal(st)
    kinds = [e.kind for e in events]
    acked = kinds.index(ev.HOOK_ACKED)
    assert events[acked].data["done"] is False
    rerun = next(i for i, e in enumerate(events) if i > acked and e.kind == ev.HOOK_STARTED)
    assert events[rerun].data["hook"] == "move-batch"
    assert not intents_above(events[:rerun], 50)
    assert kinds[-2:] == [ev.PROMOTED, ev.RUN_STOPPED]


def test_ack_with_nothing_waiting_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    (tmp_path / "hook.py").write_text(HOOK_SCRIPT)
    plan.write_text(PLAN.format(service=SERVICE, sock=tmp_path / "none.sock", new="127.0.0.1:9",
                                idempotent="false", approvals="[]", workers_run='["true"]',
                                workers_undo='["true"]', batch_run='["true"]',
                                batch_undo='["true"]'))
    state = f"sqlite:///{tmp_path}/state.db"
    for answer in (["--done"], []):
        r = subprocess.run(shiftover("ack", str(plan), "--state", state, "--hook", "move-batch",
                                     *answer), capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "not waiting for an acknowledgement" in r.stderr, r.stderr
        assert f"shiftover status {plan}" in r.stderr and "Traceback" not in r.stderr


# -- a run killed while it undoes the hooks of a rollback ------------------------------------


def rollback_and_kill_in_undo(st: Stack) -> None:
    """Run to 50% (both hooks done), ask for a rollback; the live run sets 0%, then
    undoes move-batch (the last started) first: killed inside that undo."""
    first = Run(st)
    try:
        wait_for("both hooks done, the run waiting for approval at 50%", lambda: any(
            e.kind == ev.APPROVAL_WAITING for e in journal(st)), proc=first.proc)
        assert len(log_lines(st, "done")) == 2
        slow = st.control.with_name("sleep.batch-to-old")
        slow.write_text("60")
        r = subprocess.run(shiftover("rollback", str(st.plan), "--state", st.state,
                                     "-m", "drill"), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        kill_inside(st, first, "batch-to-old", "undo")
    finally:
        first.finish(10)
    slow.unlink()
    events = journal(st)
    kinds = [e.kind for e in events]
    assert ev.ROLLED_BACK in kinds  # the router first: 0% before any undo
    assert kinds.index(ev.ROLLED_BACK) < max(
        i for i, e in enumerate(events) if e.kind == ev.HOOK_STARTED)
    assert new_weight(st) == Weights(0)


def undo_order(st: Stack) -> list[str]:
    return [x.split()[1] for x in log_lines(st, "started") if x.split()[2] == "undo"]


def rollback_json(st: Stack) -> tuple[int, dict[str, Any]]:
    r = subprocess.run(shiftover("rollback", str(st.plan), "--state", st.state, "--json"),
                       capture_output=True, text=True, timeout=120)
    return r.returncode, json.loads(r.stdout.splitlines()[-1])


def test_sigkill_during_the_undo_then_rollback_completes_it(held_at_50: Stack) -> None:
    st = held_at_50
    rollback_and_kill_in_undo(st)
    wait_lease_expired(st)
    idempotent = "idempotent: true" in st.plan.read_text().split("move-batch")[1]
    code, data = rollback_json(st)
    if idempotent:
        assert code == 0, data
        assert data["undo"]["complete"] is True
        # the killed undo again, then the one after it
        assert undo_order(st) == ["batch-to-old", "batch-to-old", "workers-down"]
    else:
        assert code == 4, data
        left = data["undo"]["left"]
        ack = left.split("`")[1]
        assert shlex.split(ack)[:9] == ["shiftover", "ack", str(st.plan), "--hook", "move-batch",
                                        "--at", "50", "--undo", "--done"], left
        assert undo_order(st) == ["batch-to-old"]  # not run again: nobody knows what it did
        r = subprocess.run(pasted(ack), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        code, data = rollback_json(st)
        assert code == 0 and data["undo"]["complete"] is True, data
        assert undo_order(st) == ["batch-to-old", "workers-down"]
    assert new_weight(st) == Weights(0)
    events = journal(st)
    first_zero = [e.kind for e in events].index(ev.ROLLED_BACK)
    undos = [(e.data["hook"], e.data["attempt"]) for e in events
             if e.kind == ev.HOOK_STARTED and e.data["phase"] == "undo"]
    assert undos == ([("move-batch", 1), ("move-batch", 2), ("scale-workers", 1)] if idempotent
                     else [("move-batch", 1), ("scale-workers", 1)])
    assert all(i > first_zero for i, e in enumerate(events)
               if e.kind == ev.HOOK_STARTED and e.data["phase"] == "undo")
    code, data = rollback_json(st)  # nothing left: a second rollback has nothing to undo
    assert code == 0 and "undo" not in data, data


@pytest.mark.parametrize("held_at_50", [True], indirect=True, ids=["idempotent"])
def test_rollback_right_after_the_kill_waits_out_the_dead_runs_lease(held_at_50: Stack) -> None:
    st = held_at_50
    rollback_and_kill_in_undo(st)
    with open_store(st.state) as store:
        holder = find_run(store, SERVICE)
    assert holder is not None and holder.lease_live and holder.pid_alive is False
    code, data = rollback_json(st)  # the dead run's lease has not expired yet
    assert code == 0 and data["confirmed"] is True, data
    assert data["undo"]["complete"] is True, data
    assert any("is gone: waiting" in x for x in data["undo"]["events"]), data["undo"]
    assert undo_order(st) == ["batch-to-old", "batch-to-old", "workers-down"]
    assert new_weight(st) == Weights(0)


@pytest.mark.parametrize("stack", [False], indirect=True, ids=["not-idempotent"])
def test_status_says_held_while_the_run_waits_for_an_ack(stack: Stack) -> None:
    st = stack
    reach_batch_hook_and_kill(st)
    wait_lease_expired(st)
    second = Run(st)
    try:
        wait_for("two checks of the resumed run", lambda: checks_since_resumed(st) >= 2,
                 proc=second.proc)
        r = subprocess.run(shiftover("status", str(st.plan), "--state", st.state, "--json"),
                           capture_output=True, text=True, timeout=60)
        report = json.loads(r.stdout)
    finally:
        second.kill()
    assert report["status"] == "held", report["status"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("stack", [True], indirect=True, ids=["idempotent"])
def test_the_next_run_stops_the_killed_runs_leftover_hook_before_running_it_again(
        stack: Stack) -> None:
    st = stack
    orphan = reach_batch_hook_and_kill(st, kill_orphan=False)
    assert alive(orphan)  # in its own session, it outlived the run
    wait_lease_expired(st)
    second = Run(st)
    assert second.finish() == 0, second.text()[-2000:] + second.stderr()[-2000:]
    wait_for("the leftover is gone", lambda: not alive(orphan), limit=10)
    batch = [x for x in log_lines(st) if x.split()[1] == "batch-to-new"]
    # the leftover never finished: stopped before the hook ran again, never beside it
    assert [x.split()[0] for x in batch] == ["started", "started", "done"], batch
    assert f"pid={orphan} " in batch[0] and f"pid={orphan} " not in batch[2]


@pytest.mark.parametrize("stack", [False], indirect=True, ids=["not-idempotent"])
def test_ack_is_refused_while_the_killed_runs_hook_still_runs(stack: Stack) -> None:
    st = stack
    orphan = reach_batch_hook_and_kill(st, kill_orphan=False)
    ack = shiftover("ack", str(st.plan), "--state", st.state, "--hook", "move-batch", "--done")
    r = subprocess.run(ack, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"still running on this host (pid {orphan})" in r.stderr, r.stderr
    assert f"kill -TERM {orphan}" in r.stderr and "Traceback" not in r.stderr
    assert not any(e.kind == ev.HOOK_ACKED for e in journal(st))
    assert _kill_group(orphan)
    wait_for("the hook process is gone", lambda: not alive(orphan), limit=10)
    r = subprocess.run(ack, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [e.data["done"] for e in journal(st) if e.kind == ev.HOOK_ACKED] == [True]
