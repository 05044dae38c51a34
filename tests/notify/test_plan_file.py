"""notify: in a plan file: errors point at file:line:col and say how to fix them, and
a webhook URL from ${VAR} is a secret the plan's redaction masks."""

from __future__ import annotations

import pytest

from shiftover.errors import PlanError
from shiftover.notify import Notifier
from shiftover.plan import parse_plan_text
from shiftover.testing import plan_yaml
from shiftover.views import Commands

GATE = """\
  - name: errors
    type: prometheus
    url: http://127.0.0.1:9090
    query: x
    max: 0.01
"""


def plan(notify: str) -> str:
    return plan_yaml(GATE) + "notify:\n" + notify


def test_a_plan_with_notifications_loads() -> None:
    loaded = parse_plan_text(plan("""\
  - name: sre
    slack: {url: "${SLACK_WEBHOOK_URL}"}
    events: [waiting_for_approval, rolled_back]
  - webhook: {url: https://hooks.example/x, headers: {Authorization: "Bearer ${TOKEN}"}}
  - command: {run: notify-send shiftover}
"""), env={"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/abcdef",
           "TOKEN": "tok-123456"})
    specs = loaded.plan.notify
    assert [s.kind for s in specs] == ["slack", "webhook", "command"]
    # ${VAR} values are the plan's secrets: masked wherever the plan's redaction runs
    assert loaded.redact("to https://hooks.slack.com/services/T0/B0/abcdef") == "to ***"
    notifier = Notifier(specs, redact=loaded.redact, commands=Commands(plan="plan.yaml"))
    try:
        assert [(t["name"], t["where"]) for t in notifier.targets()] == [
            ("sre", "https://hooks.slack.com"), ("webhook-2", "https://hooks.example"),
            ("command-3", "notify-send")]
    finally:
        notifier.close(0)


@pytest.mark.parametrize(("notify", "where", "words"), [
    ("  - slack: {url: https://a.example/x}\n    events: [promoted, step_advance]\n",
     "<plan>:18:", "unknown event 'step_advance' — did you mean 'step_advanced'?"),
    ("  - slack: {url: https://a.example/x}\n    webhook: {url: https://b.example/x}\n",
     "<plan>:18:", "set one target per notification, not slack and webhook"),
    ("  - events: [promoted]\n",
     "<plan>:17:", "a notification needs a target"),
    ("  - slack: {url: https://a.example/x}\n  - name: slack-1\n    command: {run: [x]}\n",
     "<plan>:18:", "notification names must be unique: 'slack-1'"),
])
def test_plan_errors_say_where_and_what(notify: str, where: str, words: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan_text(plan(notify))
    text = str(info.value)
    assert text.startswith(where) and words in text, text
