"""The notify: plan model: one target per entry, known event names, unique names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from shiftover.notify import EVENTS, NotifyList, NotifySpec, notify_secrets, target_names


class _Holder(BaseModel):
    notify: NotifyList = []


def _error(data: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        NotifySpec.model_validate(data)
    errors = info.value.errors(include_url=False)
    assert len(errors) == 1
    return dict(errors[0])


def test_each_target_kind_validates() -> None:
    slack = NotifySpec.model_validate({"slack": {"url": "https://hooks.slack.com/services/T/B/x"}})
    hook = NotifySpec.model_validate({"webhook": {"url": "https://hooks.example/x",
                                                  "headers": {"Authorization": "Bearer t"}}})
    cmd = NotifySpec.model_validate({"command": {"run": "notify-send shiftover"}})
    assert (slack.kind, hook.kind, cmd.kind) == ("slack", "webhook", "command")
    assert cmd.command is not None and cmd.command.run == ["notify-send", "shiftover"]
    assert slack.events is None and all(slack.wants(e) for e in EVENTS)


def test_exactly_one_target() -> None:
    none = _error({"events": ["promoted"]})
    assert none["type"] == "plan_rule" and "set one of slack:, webhook:, command:" in none["msg"]
    two = _error({"slack": {"url": "https://a.example/x"}, "webhook": {"url": "https://b.example"}})
    assert "not slack and webhook" in two["msg"] and two["ctx"]["at"] == ("webhook",)


@pytest.mark.parametrize(("word", "guess"), [
    ("step_advance", "step_advanced"),
    ("rolledback", "rolled_back"),
    ("approval_waiting", "waiting_for_approval"),   # the journal's word for it
    ("check", "failing_check"),
])
def test_a_misspelt_event_says_did_you_mean(word: str, guess: str) -> None:
    e = _error({"slack": {"url": "https://a.example/x"}, "events": ["promoted", word]})
    assert f"unknown event '{word}' — did you mean '{guess}'?" in e["msg"]
    assert e["loc"] == ("events",) and e["ctx"]["at"] == (1,)  # the loader points at the item


def test_an_unknown_event_lists_the_known_ones() -> None:
    e = _error({"slack": {"url": "https://a.example/x"}, "events": ["zzzz"]})
    assert "did you mean" not in e["msg"] and ", ".join(EVENTS) in e["msg"]


def test_an_empty_event_list_is_refused() -> None:
    assert "would send nothing" in _error({"slack": {"url": "https://a.example/x"},
                                           "events": []})["msg"]


def test_the_filter() -> None:
    spec = NotifySpec.model_validate({"slack": {"url": "https://a.example/x"},
                                      "events": ["promoted", "stuck"]})
    assert [e for e in EVENTS if spec.wants(e)] == ["promoted", "stuck"]


def test_names_default_by_place_and_must_be_unique() -> None:
    held = _Holder.model_validate({"notify": [
        {"slack": {"url": "https://a.example/x"}},
        {"name": "pager", "webhook": {"url": "https://b.example/x"}},
        {"command": {"run": ["true"]}}]})
    assert target_names(held.notify) == ["slack-1", "pager", "command-3"]
    with pytest.raises(ValidationError) as info:
        _Holder.model_validate({"notify": [
            {"name": "webhook-2", "slack": {"url": "https://a.example/x"}},
            {"webhook": {"url": "https://b.example/x"}}]})
    e = info.value.errors(include_url=False)[0]
    assert "'webhook-2' is also notify[0]'s name" in e["msg"] and e["ctx"]["at"] == (1, "name")


def test_a_url_must_be_http() -> None:
    with pytest.raises(ValidationError):
        NotifySpec.model_validate({"slack": {"url": "hooks.slack.com/x"}})


def test_credentials_typed_into_notify_are_known_as_secrets() -> None:
    held = _Holder.model_validate({"notify": [
        {"slack": {"url": "https://hooks.slack.com/services/T0/B0/abcdef"}},
        {"webhook": {"url": "https://hooks.example/x?token=zz99", "headers": {
            "Authorization": "Bearer tok-123456", "X-Team": "sre"}}},
        {"command": {"run": ["page"], "env": {"PAGER_KEY": "pk-0001"}}}]})
    assert notify_secrets(held.notify) == {
        "https://hooks.slack.com/services/T0/B0/abcdef", "/services/T0/B0/abcdef",
        "token=zz99", "Bearer tok-123456", "tok-123456"}  # env: is configuration, not a secret
