"""The Notifier against a real local HTTP receiver: order, retries, give-ups, redaction,
payloads, the filter, and a close() that never hangs."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.notify import Notifier, NotifySpec
from shiftover.plan import redact
from shiftover.store import Event
from shiftover.views import Commands

from .conftest import Receiver

_ids = itertools.count(1)


def event(kind: str, data: dict[str, Any] | None = None, *, at: float = 1_800_000_000.0,
          actor: str | None = None, service: str = "shop@production") -> Event:
    return Event(id=next(_ids), service=service, run_id="r1", kind=kind, at=at, actor=actor,
                 data=data or {})


def spec(**kw: Any) -> NotifySpec:
    return NotifySpec.model_validate(kw)


class Sleeps(list[float]):
    """The backoff a worker asked for, without waiting for it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    made: list[Notifier] = []
    yield made
    for n in made:
        n.close(0)


def make(made: list[Notifier], specs: list[NotifySpec], *, secrets: frozenset[str] = frozenset(),
         env: str | None = "production", **kw: Any) -> Notifier:
    kw.setdefault("clock_sleep", Sleeps())
    n = Notifier(specs, redact=lambda text: redact(text, secrets),
                 commands=Commands(plan="plan.yaml", env=env), **kw)
    made.append(n)
    return n


def run_start(percent: float = 10) -> list[Event]:
    """A run that started and whose first step is confirmed."""
    return [event(ev.RUN_STARTED, {"run_id": "r1", "environment": "production"}),
            event(ev.WEIGHT_INTENDED, {"percent": percent, "exact": str(percent),
                                       "reason": "step"}),
            event(ev.WEIGHT_CONFIRMED, {"percent": percent, "exact": str(percent)})]


def test_delivered_in_order_after_the_receiver_fails_its_first_attempts(
        receiver: Receiver, notifiers: list[Notifier]) -> None:
    receiver.fail_first = 3
    sleeps = Sleeps()
    n = make(notifiers, [spec(webhook={"url": receiver.url + "/hook"})], clock_sleep=sleeps)
    events = [*run_start(10), event(ev.APPROVAL_WAITING, {"step": 50}),
              event(ev.PAUSED, {"reason": "lunch"}, actor="alice@host"),
              event(ev.ROLLBACK_STARTED, {"reason": "drill", "gates": []}),
              event(ev.WEIGHT_CONFIRMED, {"percent": 0, "exact": "0"}),
              event(ev.ROLLED_BACK, {"seconds": 1.5, "reason": "drill"})]
    for e in events:
        n.observe(e)
    n.close(30)
    sent = ["step_advanced", "waiting_for_approval", "paused", "rollback_started", "rolled_back"]
    assert [b["event"] for b in receiver.delivered()] == sent
    # every request, failed or not, in order: a message is retried before the next is tried
    tried = [r.body["event"] for r in receiver.requests]
    assert tried == ["step_advanced"] * 4 + sent[1:]
    assert [r.status for r in receiver.requests[:4]] == [500, 500, 500, 200]
    assert sleeps == [1.0, 2.0, 4.0]                 # exponential backoff between attempts
    failures = n.failures()
    assert failures == [{"target": "webhook-1", "event": "step_advanced", "attempts": 1,
                         "gave_up": False, "error": failures[0]["error"]}]
    assert failures[0]["error"].startswith("HTTP 500 in ") and "(retrying)" in failures[0]["error"]
    assert n.failures() == []  # drained


def test_generic_webhook_body(receiver: Receiver, notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(webhook={"url": receiver.url, "method": "PUT",
                                       "headers": {"X-Team": "sre"}})])
    for e in run_start(10):
        n.observe(e)
    n.close(30)
    (req,) = receiver.requests
    assert req.method == "PUT" and req.headers["X-Team"] == "sre"
    assert req.headers["Content-Type"] == "application/json"
    assert set(req.body) == {"event", "service", "environment", "run_id", "percent", "text",
                             "command", "at", "data"}
    assert req.body | {"text": None, "data": None} == {
        "event": "step_advanced", "service": "shop", "environment": "production",
        "run_id": "r1", "percent": 10.0, "text": None,
        "command": "shiftover status plan.yaml --env production", "at": 1_800_000_000.0,
        "data": None}
    assert req.body["text"] == "shop (production): step advanced to 10% on the new environment."


def test_a_webhook_body_of_its_own_is_filled_in(receiver: Receiver,
                                                notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(webhook={"url": receiver.url,
                                       "body": {"content": "{text}", "tags": ["{event}"]}})])
    n.observe(event(ev.PROMOTED, {"percent": 100, "exact": "100"}))
    n.close(30)
    assert receiver.delivered() == [{
        "content": "shop (production): PROMOTED: 100% of the traffic on the new environment.",
        "tags": ["promoted"]}]


def test_slack_payload(receiver: Receiver, notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(slack={"url": receiver.url + "/services/T0/B0/xyz"})])
    for e in run_start(10):
        n.observe(e)
    n.observe(event(ev.APPROVAL_WAITING, {"step": 50}))
    n.close(30)
    first, second = receiver.requests
    assert first.method == "POST" and first.path == "/services/T0/B0/xyz"
    assert first.headers["Content-Type"] == "application/json"
    body = second.body
    assert set(body) == {"text", "blocks"}
    approve = "shiftover approve plan.yaml --env production --step 50"
    assert body["text"] == ("shop (production): waiting for approval of the 50% step (now 10% "
                            f"on new). To approve: {approve}")
    section, command, context = body["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": body["text"]}}
    assert command == {"type": "section", "text": {"type": "mrkdwn", "text": f"```{approve}```"}}
    assert context["type"] == "context"
    assert context["elements"][0]["text"] == \
        "shiftover · shop · production · waiting_for_approval · run r1"


def test_slack_text_is_escaped(receiver: Receiver, notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(slack={"url": receiver.url})])
    n.observe(event(ev.PAUSED, {"reason": "p99 > 2s & <rising>"}, actor="bob@host"))
    n.close(30)
    assert "p99 &gt; 2s &amp; &lt;rising&gt;" in receiver.delivered()[0]["text"]


@pytest.mark.parametrize(("env", "approve"), [
    ("production", "shiftover approve plan.yaml --env production --step 50"),
    (None, "shiftover approve plan.yaml --step 50"),
])
def test_waiting_for_approval_says_the_command_to_paste(
        receiver: Receiver, notifiers: list[Notifier], env: str | None, approve: str) -> None:
    n = make(notifiers, [spec(webhook={"url": receiver.url})], env=env)
    n.observe(event(ev.APPROVAL_WAITING, {"step": 50.0}, service="shop"))
    n.close(30)
    (body,) = receiver.delivered()
    assert body["command"] == approve and body["text"].endswith(f"To approve: {approve}")
    assert body["environment"] == env


def test_a_failing_check_names_the_gate_its_value_and_threshold(
        receiver: Receiver, notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(webhook={"url": receiver.url})])
    results = [
        {"gate": "errors", "verdict": "fail", "value": 0.05, "threshold": "<= 0.01",
         "samples": 400, "reason": "0.05 > 0.01"},
        {"gate": "latency", "verdict": "pass", "value": 0.2, "threshold": "<= 0.5"},
    ]
    for e in run_start(25):
        n.observe(e)
    n.observe(event(ev.CHECK, {"verdict": "fail", "consecutive_failures": 1, "results": results,
                               "router": {"percent": 25.0, "exact": "25"}}))
    n.observe(event(ev.CHECK, {"verdict": "pass", "results": results[1:]}))  # not sent
    # a paused run goes on checking: its failures are not said again every interval
    n.observe(event(ev.PAUSED, {"reason": "2 consecutive failed checks"}))
    n.observe(event(ev.CHECK, {"verdict": "fail", "consecutive_failures": 3, "results": results}))
    n.close(30)
    assert [b["event"] for b in receiver.delivered()] == ["step_advanced", "failing_check",
                                                          "paused"]
    body = receiver.delivered()[1]
    assert body["text"] == (
        "shop (production): check FAILED at 25% on new: errors: value 0.05, threshold <= 0.01 "
        "(0.05 > 0.01) (1 failed check in a row). "
        "Roll back now: shiftover rollback plan.yaml --env production")
    assert body["percent"] == 25.0
    assert body["data"]["failed"] == [{"gate": "errors", "value": 0.05, "threshold": "<= 0.01",
                                       "samples": 400, "reason": "0.05 > 0.01"}]


def test_a_failed_hook_is_a_failing_check(receiver: Receiver, notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(webhook={"url": receiver.url})])
    n.observe(event("hook_finished", {"hook": "move-batch", "at": "50", "phase": "run",
                                      "ok": False, "summary": "exit 1 in 0.3s"}))
    n.observe(event("hook_finished", {"hook": "move-batch", "at": "50", "phase": "run",
                                      "ok": True, "summary": "exit 0 in 0.3s"}))
    n.close(30)
    (body,) = receiver.delivered()
    assert body["event"] == "failing_check"
    assert "hook move-batch (run at 50%) failed" in body["text"] and "exit 1 in 0.3s" in body["text"]


def test_stuck_and_paused_say_how_to_resume(receiver: Receiver,
                                            notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(webhook={"url": receiver.url})])
    n.observe(event(ev.PAUSED, {"reason": "stuck: 4 consecutive checks could not be evaluated",
                                "stuck": True}))
    n.observe(event(ev.PAUSED, {"reason": "deploy freeze"}, actor="alice@host"))
    n.close(30)
    stuck, paused = receiver.delivered()
    resume = "shiftover resume plan.yaml --env production"
    assert stuck["event"] == "stuck" and stuck["command"] == resume
    assert "STUCK" in stuck["text"] and "could not be evaluated" in stuck["text"]
    assert paused["event"] == "paused" and paused["text"].endswith(f"To resume: {resume}")
    assert "paused by alice@host" in paused["text"] and "deploy freeze" in paused["text"]


def test_the_event_filter(receiver: Receiver, receiver2: Receiver,
                          notifiers: list[Notifier]) -> None:
    assert receiver is not receiver2
    n = make(notifiers, [spec(webhook={"url": receiver.url}, events=["rolled_back", "stuck"]),
                         spec(webhook={"url": receiver2.url})])
    for e in [*run_start(10), event(ev.ROLLBACK_STARTED, {"reason": "x"}),
              event(ev.ROLLED_BACK, {"seconds": 2.0})]:
        n.observe(e)
    n.close(30)
    assert [b["event"] for b in receiver.delivered()] == ["rolled_back"]
    assert [b["event"] for b in receiver2.delivered()] == ["step_advanced", "rollback_started",
                                                           "rolled_back"]


def test_events_that_are_not_notifications_send_nothing(receiver: Receiver,
                                                        notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(webhook={"url": receiver.url})])
    for e in [event(ev.RUN_STARTED, {"run_id": "r1"}), event(ev.BAKE_STARTED, {"percent": 10}),
              event(ev.CHECK, {"verdict": "pass"}), event(ev.CHECK, {"verdict": "inconclusive"}),
              # a rollback's write to 0% and a reconcile's are not steps
              event(ev.WEIGHT_INTENDED, {"percent": 0, "exact": "0", "reason": "rollback"}),
              event(ev.WEIGHT_CONFIRMED, {"percent": 0, "exact": "0"}),
              event(ev.RESUMED, actor="bob@host"), event(ev.RUN_STOPPED, {"outcome": "held"})]:
        n.observe(e)
    n.close(30)
    assert receiver.requests == []


def test_a_receiver_that_keeps_failing_is_given_up_on(receiver: Receiver,
                                                      notifiers: list[Notifier]) -> None:
    receiver.status = 503
    n = make(notifiers, [spec(name="ops", webhook={"url": receiver.url})], retries=2)
    n.observe(event(ev.PROMOTED))
    n.close(30)
    assert len(receiver.requests) == 3  # 1 + retries
    first, last = n.failures()
    assert (first["gave_up"], first["attempts"]) == (False, 1)
    assert last == {"target": "ops", "event": "promoted", "attempts": 3, "gave_up": True,
                    "error": last["error"]}
    assert last["error"].startswith("gave up after 3 attempts: HTTP 503 in ")


def test_a_refusal_is_not_retried(receiver: Receiver, notifiers: list[Notifier]) -> None:
    receiver.status = 404  # e.g. a revoked Slack webhook: no_service
    n = make(notifiers, [spec(slack={"url": receiver.url})])
    n.observe(event(ev.PROMOTED))
    n.close(30)
    assert len(receiver.requests) == 1
    (failure,) = n.failures()
    assert failure["gave_up"] is True and failure["attempts"] == 1


TOKEN = "s3cr3t-T0KEN-4242"


@pytest.mark.parametrize("from_env", [True, False])
def test_a_failing_targets_error_never_shows_its_url(
        receiver: Receiver, notifiers: list[Notifier], from_env: bool) -> None:
    # the receiver's error page quotes the path, i.e. the token; from_env: the URL came
    # from ${VAR} (a plan secret, masked by redact), else it was typed into the plan
    receiver.status, receiver.echo_path = 500, True
    url = f"{receiver.url}/services/{TOKEN}?key={TOKEN}"
    secrets = frozenset({url, TOKEN}) if from_env else frozenset()
    n = make(notifiers, [spec(slack={"url": url})], secrets=secrets, retries=1)
    n.observe(event(ev.PROMOTED))
    n.close(30)
    assert receiver.requests[0].path == f"/services/{TOKEN}?key={TOKEN}"  # it was sent
    failures = n.failures()
    assert len(failures) == 2
    text = json.dumps(failures)
    assert TOKEN not in text and "/services/" not in text
    assert failures[0]["target"] == "slack-1" and "HTTP 500" in failures[0]["error"]
    assert n.targets() == [{"name": "slack-1", "kind": "slack", "where": receiver.url,
                            "events": n.targets()[0]["events"]}]


def test_secrets_and_url_credentials_never_reach_a_message(receiver: Receiver,
                                                           notifiers: list[Notifier]) -> None:
    n = Notifier([spec(webhook={"url": receiver.url})],
                 redact=lambda text: redact(text, frozenset({TOKEN})),
                 commands=Commands(plan="plan.yaml", state="postgresql://app:pw1234@db/shift"),
                 clock_sleep=Sleeps())
    notifiers.append(n)
    n.observe(event(ev.PAUSED, {"reason": f"token {TOKEN} expired"}, actor="alice@host"))
    n.close(30)
    (body,) = receiver.delivered()
    text = json.dumps(body)
    assert TOKEN not in text and "pw1234" not in text
    assert body["command"] == "shiftover resume plan.yaml --state postgresql://***@db/shift"


@pytest.mark.timeout(60)
def test_close_never_hangs_on_a_hanging_receiver(receiver: Receiver,
                                                 notifiers: list[Notifier]) -> None:
    receiver.hang = True
    n = make(notifiers, [spec(webhook={"url": receiver.url, "timeout": "5m"})])
    for kind in (ev.APPROVAL_WAITING, ev.ROLLBACK_STARTED, ev.ROLLED_BACK):
        n.observe(event(kind, {"step": 50}))
    receiver.wait_for(1)
    n.close(0.2)  # returns although the receiver never answers (pytest-timeout bounds a hang)
    (failure,) = n.failures()
    assert failure["gave_up"] is True and failure["target"] == "webhook-1"
    assert failure["error"].startswith("3 messages not delivered")
    assert len(receiver.requests) == 1
    n.observe(event(ev.PROMOTED))  # after close: ignored, never raises
    assert n.failures() == []


@pytest.mark.timeout(60)
def test_a_full_queue_drops_the_oldest_and_says_so(receiver: Receiver,
                                                   notifiers: list[Notifier]) -> None:
    receiver.hang = True
    n = make(notifiers, [spec(webhook={"url": receiver.url, "timeout": "5m"})], queue_size=2)
    n.observe(event(ev.APPROVAL_WAITING, {"step": 10}))
    receiver.wait_for(1)            # the worker holds the first message
    for step in (20, 30, 40, 50):   # the queue keeps the last two
        n.observe(event(ev.APPROVAL_WAITING, {"step": step}))
    (dropped,) = n.failures()
    assert dropped["dropped"] == 2 and dropped["error"].startswith("2 messages dropped")
    assert dropped["event"] == "waiting_for_approval" and dropped["gave_up"] is True
    receiver.hang = False
    receiver.release.set()
    receiver.wait_for(3)
    n.close(30)
    steps = [r.body["command"].rsplit(" ", 1)[-1] for r in receiver.requests]
    assert steps == ["10", "40", "50"]
    assert receiver.requests[1].body["text"].startswith("(2 earlier messages dropped")


def test_a_command_target_gets_the_message_in_its_environment(
        tmp_path: Path, notifiers: list[Notifier]) -> None:
    out = tmp_path / "got.jsonl"
    script = ('printf \'{"event": "%s", "command": "%s", "percent": "%s"}\\n\' '
              f'"$SHIFTOVER_EVENT" "$SHIFTOVER_COMMAND" "$SHIFTOVER_PERCENT" >> {shlex.quote(str(out))}; '
              f'printf "%s\\n" "$SHIFTOVER_MESSAGE" >> {shlex.quote(str(out))}.full')
    n = make(notifiers, [spec(command={"run": ["sh", "-c", script], "env": {"X": "1"}})])
    for e in run_start(10):
        n.observe(e)
    n.observe(event(ev.APPROVAL_WAITING, {"step": 50}))
    n.close(30)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines == [
        {"event": "step_advanced", "command": "shiftover status plan.yaml --env production",
         "percent": "10"},
        {"event": "waiting_for_approval",
         "command": "shiftover approve plan.yaml --env production --step 50", "percent": "10"}]
    full = [json.loads(x) for x in Path(f"{out}.full").read_text().splitlines()]
    assert full[1]["event"] == "waiting_for_approval" and full[1]["service"] == "shop"


def test_a_command_that_cannot_start_is_given_up_at_once(notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(name="desk", command={"run": ["/nonexistent/notify-me"]})])
    n.observe(event(ev.PROMOTED))
    n.close(30)
    (failure,) = n.failures()
    assert failure["target"] == "desk" and failure["gave_up"] is True
    assert failure["attempts"] == 1 and "could not start" in failure["error"]


def test_observe_never_raises(receiver: Receiver, notifiers: list[Notifier]) -> None:
    n = make(notifiers, [spec(webhook={"url": receiver.url})])
    n.observe(event(ev.APPROVAL_WAITING, {"step": None}))   # odd data: still a message
    n.observe(event(ev.CHECK, {"verdict": "fail", "results": "garbage"}))
    n.observe(object())  # type: ignore[arg-type]  # not an event at all: recorded, not raised
    n.close(30)
    assert [b["event"] for b in receiver.delivered()] == ["waiting_for_approval", "failing_check"]
    (failure,) = n.failures()
    assert failure["target"] == "*" and "could not make the notification" in failure["error"]


def test_header_values_never_reach_an_error(receiver: Receiver,
                                            notifiers: list[Notifier]) -> None:
    receiver.status, receiver.echo_path = 500, True  # its error page quotes Authorization
    n = make(notifiers, [spec(webhook={"url": receiver.url,
                                       "headers": {"Authorization": "Bearer inline-77-secret"}})],
             retries=0)
    n.observe(event(ev.PROMOTED))
    n.close(30)
    assert receiver.requests[0].headers["Authorization"] == "Bearer inline-77-secret"
    (failure,) = n.failures()
    assert "HTTP 500" in failure["error"] and "inline-77-secret" not in json.dumps(failure)


@pytest.mark.timeout(60)
def test_close_stops_a_hanging_notify_command(tmp_path: Path,
                                              notifiers: list[Notifier]) -> None:
    pidfile = tmp_path / "pid"
    n = make(notifiers, [spec(command={"run": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"],
                                       "timeout": "10m"})])
    n.observe(event(ev.PROMOTED))
    for _ in range(400):  # until the command runs (a bound on a hang, not a timing assertion)
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    n.close(0.1)  # returns although the command would run for 5 minutes
    with pytest.raises(ProcessLookupError):  # stopped and reaped: nothing left behind
        os.kill(pid, 0)
    (failure,) = n.failures()
    assert failure["error"].startswith("1 message not delivered")
