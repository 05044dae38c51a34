"""Notifications: tell people what the run is doing, without ever slowing it down.

A plan's ``notify:`` lists targets (a Slack incoming webhook, a generic JSON webhook,
or a command), each with the events it wants::

    notify:
      - name: sre-channel
        slack: {url: ${SLACK_WEBHOOK_URL}}
        events: [waiting_for_approval, failing_check, rollback_started, rolled_back]
      - webhook: {url: https://hooks.example/x, headers: {Authorization: Bearer ${TOKEN}}}
      - command: {run: [notify-send, shiftover]}

Why it is built this way:

- **The run never waits on a notification.** The Runner calls :meth:`Notifier.observe`
  for every journal event, on its own thread; ``observe`` folds the event, formats a
  message and appends it to each interested target's queue — no I/O, no lock held
  for longer than an append. Each target has its own daemon worker thread that
  delivers its queue in order, one message at a time, with retries and an
  exponential backoff. A receiver that hangs only ever delays its own queue (every
  attempt has the target's ``timeout``); a queue that fills up drops its *oldest*
  message and says so in the next message it delivers ("N earlier messages
  dropped"), so the newest state of the run is what people see.
- **Failures are facts, not crashes.** What went wrong is kept, redacted, and
  handed over by :meth:`Notifier.failures` for the run to journal as
  ``notify_failed``: once when a target starts failing (``gave_up: false``, still
  retrying) and once per message given up on (``gave_up: true``), like a router
  error is journalled when it changes, not at every retry.
- **Secrets stay secret.** A target is shown by its ``name`` or its URL's
  ``scheme://host`` only (a Slack webhook URL *is* a credential); errors are
  scrubbed of the target's URL, passed through the plan's redaction, and URL
  credentials (``user:pass@``) are masked in everything sent.
- **Messages are for people in an incident**: what happened, the split now, the
  failing gate with its value and threshold, and the exact command to paste
  (``shiftover approve plan.yaml --env production --step 50``), built by
  :class:`shiftover.views.Commands` like every other hint of the CLI.

Journal kinds map onto notification events (:data:`EVENTS`):

==========================================  =========================
journal                                     notification event
==========================================  =========================
``weight_confirmed`` of a step's write      ``step_advanced``
``check`` with verdict ``fail``             ``failing_check``
``hook_failed``                             ``failing_check``
``paused`` (by an operator or the run)      ``paused``
``paused`` with ``stuck: true``             ``stuck``
``approval_waiting``                        ``waiting_for_approval``
``rollback_started``                        ``rollback_started``
``rolled_back``                             ``rolled_back``
``promoted``                                ``promoted``
==========================================  =========================

A ``command`` target gets the message in its environment (stdin is ``/dev/null``):
``SHIFTOVER_EVENT``, ``SHIFTOVER_TEXT``, ``SHIFTOVER_COMMAND``, ``SHIFTOVER_SERVICE``,
``SHIFTOVER_ENVIRONMENT``, ``SHIFTOVER_RUN_ID``, ``SHIFTOVER_PERCENT`` and
``SHIFTOVER_MESSAGE`` (the generic webhook's JSON body).
"""

from __future__ import annotations

import difflib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from shiftover.engine import events as ev
from shiftover.engine.events import RunState, fold, weight_or_none
from shiftover.external import (
    KILL_GRACE,
    CommandSpec,
    Outcome,
    WebhookSpec,
    call_webhook,
    run_command,
    webhook_secrets,
)
from shiftover.spec import SpecModel, Timeout, Url, rule
from shiftover.types import Weights

if TYPE_CHECKING:
    from shiftover.store import Event
    from shiftover.views import Commands

# --- the plan model --------------------------------------------------------------------

EventName = Literal["step_advanced", "failing_check", "paused", "waiting_for_approval",
                    "rollback_started", "rolled_back", "promoted", "stuck"]
EVENTS: tuple[str, ...] = ("step_advanced", "failing_check", "paused", "waiting_for_approval",
                           "rollback_started", "rolled_back", "promoted", "stuck")
TARGET_KINDS: tuple[str, ...] = ("slack", "webhook", "command")

# journal kinds people may type instead of the notification's own name
_JOURNAL_WORDS = {
    "approval_waiting": "waiting_for_approval",
    "approval": "waiting_for_approval",
    "waiting_approval": "waiting_for_approval",
    "weight_confirmed": "step_advanced",
    "step": "step_advanced",
    "check": "failing_check",
    "check_failed": "failing_check",
    "failed_check": "failing_check",
    "hook_failed": "failing_check",
    "rollback": "rollback_started",
    "rollback_requested": "rollback_started",
    "rollback_done": "rolled_back",
    "promote": "promoted",
    "pause": "paused",
}


def _suggest_event(word: str) -> str | None:
    if word in _JOURNAL_WORDS:
        return _JOURNAL_WORDS[word]
    match = difflib.get_close_matches(word, list(EVENTS), n=1, cutoff=0.6)
    return match[0] if match else None


class SlackSpec(SpecModel):
    """A Slack incoming webhook (``https://hooks.slack.com/services/...``): the URL is
    a credential, write it as ``${SLACK_WEBHOOK_URL}``."""

    url: Url = Field(description="the incoming webhook's URL (a secret: use ${VAR})")
    timeout: Timeout = Field(default=10.0, description="each attempt gives up after this long")


class NotifySpec(SpecModel):
    """One notification target: exactly one of ``slack``, ``webhook``, ``command``."""

    name: str | None = Field(
        default=None, min_length=1,
        description="how journals and errors name this target (default: slack-1, webhook-2, "
        "... by its place in the list); never the URL")
    slack: SlackSpec | None = Field(default=None, description="a Slack incoming webhook")
    webhook: WebhookSpec | None = Field(
        default=None, description="a generic webhook: JSON {event, service, environment, "
        "run_id, percent, text, command, at, data} unless body: is set")
    command: CommandSpec | None = Field(
        default=None, description="a command run once per message, the message in its "
        "environment (SHIFTOVER_EVENT, SHIFTOVER_TEXT, SHIFTOVER_COMMAND, ...)")
    events: list[EventName] | None = Field(
        default=None, description="the events sent to this target (default: all): "
        + ", ".join(EVENTS))

    @model_validator(mode="before")
    @classmethod
    def _one_target(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in TARGET_KINDS if data.get(k) is not None]
            if not given:
                raise rule("a notification needs a target: set one of slack:, webhook:, command: "
                           "(e.g. slack: {url: ${SLACK_WEBHOOK_URL}})")
            if len(given) > 1:
                raise rule(f"set one target per notification, not {' and '.join(given)}: "
                           "write one list item under notify: for each target", (given[1],))
        return data

    @field_validator("events", mode="before")
    @classmethod
    def _known_events(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        if not value:
            raise rule("events: [] would send nothing: list some of "
                       + ", ".join(EVENTS) + ", or remove events: to send them all")
        for i, word in enumerate(value):
            if isinstance(word, str) and word not in EVENTS:
                guess = _suggest_event(word)
                hint = f" — did you mean '{guess}'?" if guess else ""
                raise rule(f"unknown event '{word}'{hint} (events: {', '.join(EVENTS)})", (i,))
        return value

    @property
    def kind(self) -> str:
        """``slack``, ``webhook`` or ``command``."""
        return next(k for k in TARGET_KINDS if getattr(self, k) is not None)

    def wants(self, event: str) -> bool:
        return self.events is None or event in self.events


def target_names(specs: list[NotifySpec]) -> list[str]:
    """Each target's name: its own, or ``<kind>-<place in the list, from 1>``."""
    return [s.name or f"{s.kind}-{i + 1}" for i, s in enumerate(specs)]


def _unique_names(specs: list[NotifySpec]) -> list[NotifySpec]:
    seen: dict[str, int] = {}
    for i, name in enumerate(target_names(specs)):
        if name in seen:
            raise rule(f"notification names must be unique: {name!r} is also notify[{seen[name]}]'s "
                       "name: give one of them another name", (i, "name"))
        seen[name] = i
    return specs


# ``notify: NotifyList = Field(default_factory=list)`` in the Plan: the targets, names checked
NotifyList = Annotated[list[NotifySpec], AfterValidator(_unique_names)]


def notify_secrets(specs: Iterable[NotifySpec]) -> set[str]:
    """What in ``notify:`` is a credential even when typed into the plan rather than
    given as ``${VAR}``: a Slack webhook URL and its path (the path is the token), a
    webhook URL's query (``?token=...``) and its header values (``Bearer <token>``: the
    whole value and its last word). For the plan's secrets, so that every rendering of
    the plan (``plan``, ``diff``, the journal's plan summary) masks them. A command's
    ``env:`` values are not: they are configuration (``RAILS_ENV: production`` would
    mask every "production"), and a secret belongs in ``${VAR}``."""
    out: set[str] = set()
    for spec in specs:
        if spec.slack is not None:
            parts = urlsplit(spec.slack.url)
            out |= {spec.slack.url, parts.path + (f"?{parts.query}" if parts.query else "")}
        if spec.webhook is not None:
            out |= webhook_secrets(spec.webhook)
    return {s for s in out if len(s) >= 4 and s.strip("/")}


# --- messages --------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One notification, as every kind of target gets it (already redacted)."""

    event: str                  # a notification event (EVENTS)
    kind: str                   # the journal kind it came from
    service: str
    environment: str | None
    run_id: str | None
    percent: float | None       # the split on the new environment now (None: unknown)
    text: str                   # what happened, the split, the gate, the command, for people
    command: str | None         # the command to paste to act on it
    at: float                   # the journal event's time (epoch seconds)
    data: dict[str, Any]        # the journal event's facts

    def to_json(self) -> dict[str, Any]:
        """The generic webhook's body."""
        return {"event": self.event, "service": self.service, "environment": self.environment,
                "run_id": self.run_id, "percent": self.percent, "text": self.text,
                "command": self.command, "at": round(self.at, 3), "data": self.data}


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(msg: Message) -> dict[str, Any]:
    """An incoming webhook's body: ``text`` (what notifications and old clients show)
    and ``blocks``: the message, then the command to paste as code."""
    text = _slack_escape(msg.text)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if msg.command:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"```{_slack_escape(msg.command)}```"}})
    where = msg.service + (f" · {msg.environment}" if msg.environment else "")
    blocks.append({"type": "context", "elements": [{
        "type": "mrkdwn",
        "text": _slack_escape(f"shiftover · {where} · {msg.event}"
                              + (f" · run {msg.run_id}" if msg.run_id else ""))}]})
    return {"text": text, "blocks": blocks}


_FIELDS = ("event", "service", "environment", "run_id", "percent", "text", "command")


def _fill(body: Any, msg: Message) -> Any:
    """A webhook's own ``body:`` with ``{text}``, ``{event}``, ``{command}``, ``{service}``,
    ``{environment}``, ``{run_id}``, ``{percent}`` replaced in its strings (a chat tool
    that wants ``{"content": "{text}"}``)."""
    if isinstance(body, str):
        for name in _FIELDS:
            value = getattr(msg, name)
            body = body.replace("{" + name + "}", "" if value is None else f"{value:g}"
                                if isinstance(value, float) else str(value))
        return body
    if isinstance(body, Mapping):
        return {k: _fill(v, msg) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, msg) for v in body]
    return body


def command_env(msg: Message) -> dict[str, str]:
    """What a ``command`` target finds in its environment."""
    return {"SHIFTOVER_EVENT": msg.event, "SHIFTOVER_TEXT": msg.text,
            "SHIFTOVER_COMMAND": msg.command or "", "SHIFTOVER_SERVICE": msg.service,
            "SHIFTOVER_ENVIRONMENT": msg.environment or "", "SHIFTOVER_RUN_ID": msg.run_id or "",
            "SHIFTOVER_PERCENT": "" if msg.percent is None else f"{msg.percent:g}",
            "SHIFTOVER_MESSAGE": json.dumps(msg.to_json(), default=str)}


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | float):
        return f"{v:.4g}"
    return str(v)


def _split(w: Weights | None) -> str:
    return "an unknown split" if w is None else f"{w} on new"


def _gate_line(r: Mapping[str, Any]) -> str:
    """``errors: value 0.05, threshold <= 0.01 (5 of 100 requests failed)``."""
    parts = [f"value {_num(r.get('value'))}" if r.get("value") is not None else "no value"]
    if r.get("threshold"):
        parts.append(f"threshold {r['threshold']}")
    line = f"{r.get('gate', '?')}: {', '.join(parts)}"
    reason = str(r.get("reason") or "")
    return f"{line} ({reason})" if reason else line


# --- targets ---------------------------------------------------------------------------


def where(spec: NotifySpec) -> str:
    """A target as it may be shown: a URL's ``scheme://host`` (its path and query can
    be the credential), a command's program name."""
    if spec.command is not None:
        return spec.command.run[0]
    url = spec.slack.url if spec.slack is not None else spec.webhook.url if spec.webhook else ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


_ANY_URL = re.compile(r"(?P<base>[a-z][a-z0-9+.-]*://)(?P<rest>[^\s'\"<>]+)", re.IGNORECASE)


def _scrub_urls(text: str, url: str | None) -> str:
    """Every URL in ``text`` cut to ``scheme://host``, and the target's own path (a Slack
    webhook's path is its token) wherever it appears without its scheme."""
    if url:
        parts = urlsplit(url)
        for piece in (parts.path + (f"?{parts.query}" if parts.query else ""), parts.path,
                      parts.query):
            if len(piece) > 1:
                text = text.replace(piece, "/…")

    def host(m: re.Match[str]) -> str:
        rest = m.group("rest")
        netloc = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
        return f"{m.group('base')}{netloc}" + ("/…" if len(rest) > len(netloc) else "")

    return _ANY_URL.sub(host, text)


_RETRYABLE_4XX = frozenset({408, 425, 429})  # client errors worth retrying


def _permanent(outcome: Outcome) -> bool:
    """Retrying cannot help: a command that cannot start, a receiver refusing the request
    (400-499 but for timeouts and rate limits)."""
    if outcome.kind == "command":
        return outcome.error is not None
    return outcome.status is not None and 400 <= outcome.status < 500 \
        and outcome.status not in _RETRYABLE_4XX


def _error_line(outcome: Outcome) -> str:
    """One line: the outcome's summary, and the receiver's / command's last words."""
    line = outcome.summary()
    if not outcome.ok and not outcome.timed_out and not outcome.stopped:
        said = [x.strip() for x in outcome.output.splitlines() if x.strip()]
        if said:
            last = said[0] if outcome.kind == "webhook" else said[-1]
            line += f": {last[:200]}"
    return " ".join(line.split())


@dataclass
class _Item:
    msg: Message


class _Target:
    """One target's queue and the worker thread that delivers it, in order."""

    def __init__(self, owner: Notifier, spec: NotifySpec, name: str) -> None:
        self.owner = owner
        self.spec = spec
        self.name = name
        self.cond = threading.Condition()
        self.queue: deque[_Item] = deque()
        self.busy = False
        self.dropped = 0            # since the last delivered message (said in the next one)
        self.dropped_unreported = 0
        self.dropped_event: str | None = None
        self.failing = False        # a failure was reported and no delivery succeeded since
        self.delivered = 0
        self.thread = threading.Thread(target=self._work, name=f"notify-{name}", daemon=True)
        self.thread.start()

    # on the run's thread: an append, nothing else
    def put(self, msg: Message) -> None:
        with self.cond:
            if len(self.queue) >= self.owner.queue_size:
                oldest = self.queue.popleft()
                self.dropped += 1
                self.dropped_unreported += 1
                self.dropped_event = oldest.msg.event
            self.queue.append(_Item(msg))
            self.cond.notify_all()

    def idle(self) -> bool:
        return not self.queue and not self.busy

    # on the worker thread
    def _work(self) -> None:
        owner = self.owner
        while True:
            with self.cond:
                while not self.queue and not owner.abandoned.is_set():
                    self.cond.wait()
                if owner.abandoned.is_set():
                    return
                item = self.queue.popleft()
                self.busy = True
                dropped, self.dropped = self.dropped, 0
            try:
                msg = item.msg
                if dropped:
                    msg = replace(msg, text=f"({dropped} earlier message"
                                  f"{'s' if dropped > 1 else ''} dropped: this target was too "
                                  f"slow) {msg.text}")
                self._deliver(msg)
            except Exception as exc:  # a bug here must not silence the target for good
                owner.record(self.name, item.msg.event, f"internal error: {type(exc).__name__}: "
                             f"{exc}", attempts=1, gave_up=True)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def _deliver(self, msg: Message) -> None:
        owner = self.owner
        attempt = 0
        while True:
            attempt += 1
            outcome = self._send(msg)
            if owner.abandoned.is_set():
                return  # close() accounts for what it abandoned
            if outcome.ok:
                self.failing = False
                self.delivered += 1
                return
            error = _error_line(outcome)
            final = _permanent(outcome) or attempt > owner.retries
            if final:
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                owner.record(self.name, msg.event, f"gave up after {tries}: {error}",
                             attempts=attempt, gave_up=True)
                self.failing = True
                return
            if not self.failing:  # journalled when it starts failing, not at every retry
                self.failing = True
                owner.record(self.name, msg.event, f"{error} (retrying)", attempts=attempt,
                             gave_up=False)
            owner.sleep(min(owner.backoff[0] * 2 ** (attempt - 1), owner.backoff[1]))
            if owner.abandoned.is_set():
                return

    def _send(self, msg: Message) -> Outcome:
        spec, stopping = self.spec, self.owner.abandoned.is_set
        if spec.slack is not None:
            return call_webhook(spec.slack.url, method="POST", body=slack_payload(msg),
                                timeout=spec.slack.timeout, stopping=stopping)
        if spec.webhook is not None:
            hook = spec.webhook
            body = msg.to_json() if hook.body is None else _fill(hook.body, msg)
            return call_webhook(hook.url, method=hook.method, headers=hook.headers, body=body,
                                timeout=hook.timeout, stopping=stopping)
        assert spec.command is not None
        return run_command(spec.command.run, env={**spec.command.env, **command_env(msg)},
                           timeout=spec.command.timeout, stopping=stopping)


# --- the notifier ----------------------------------------------------------------------


class Notifier:
    """Delivers a run's notifications to the plan's ``notify:`` targets.

    ``observe(event)`` for every journal event, in order (the Runner's ``on_event``);
    ``failures()`` for what went wrong since the last call (journal them as
    ``notify_failed``); ``close(timeout)`` at the end of the run. ``prime(events)``
    folds a journal's past (a resumed run) so the first message knows the split.

    ``redact`` masks the plan's secrets (``LoadedPlan.redact``); URL credentials are
    masked besides. ``commands`` builds the commands to paste. ``sleep`` is how a
    worker waits between attempts (default: real time, cut short by ``close``);
    attempts are ``1 + retries``, ``backoff`` is (first, largest) in seconds,
    doubling in between.
    """

    def __init__(self, specs: Iterable[NotifySpec], *, redact: Callable[[str], str],
                 commands: Commands, service: str | None = None,
                 clock_sleep: Callable[[float], None] | None = None, retries: int = 5,
                 backoff: tuple[float, float] = (1.0, 30.0), queue_size: int = 100) -> None:
        specs = list(specs)
        self.commands = commands
        self.service = service
        self.retries = max(0, retries)
        self.backoff = backoff
        self.queue_size = max(1, queue_size)
        self.abandoned = threading.Event()
        self.sleep: Callable[[float], None] = self._wait if clock_sleep is None else clock_sleep
        self._redact = redact
        self._lock = threading.Lock()
        self._failures: list[dict[str, Any]] = []
        self._state = RunState()
        self._intent: str | None = None
        self._run_id: str | None = None
        self._environment: str | None = commands.env
        self._closed = False
        self._targets = [_Target(self, s, n) for s, n in zip(specs, target_names(specs),
                                                               strict=True)]

    def _wait(self, seconds: float) -> None:
        self.abandoned.wait(seconds)

    # -- what the run calls ------------------------------------------------------
    def targets(self) -> list[dict[str, Any]]:
        """Each target as it may be shown: name, kind, scheme://host (or program), events."""
        return [{"name": t.name, "kind": t.spec.kind, "where": where(t.spec),
                 "events": list(t.spec.events or EVENTS)} for t in self._targets]

    def prime(self, events: Iterable[Event]) -> None:
        """Fold events that happened before this run (not announced)."""
        for e in events:
            self._fold(e)

    def observe(self, event: Event) -> None:
        """Called by the run for each journal event, in order: formats and enqueues,
        never blocks and never raises."""
        if self._closed:
            return
        try:
            msg = self._message(event)
            if msg is None:
                return
            for t in self._targets:
                if t.spec.wants(msg.event):
                    t.put(msg)
        except Exception as exc:
            self.record("*", str(getattr(event, "kind", "?")),
                        f"could not make the notification: {type(exc).__name__}: {exc}",
                        attempts=0, gave_up=True)

    def failures(self) -> list[dict[str, Any]]:
        """What went wrong since the last call, each ``{target, error, event, attempts,
        gave_up}`` (redacted, one line): for the journal's ``notify_failed``."""
        for t in self._targets:
            with t.cond:
                n, t.dropped_unreported = t.dropped_unreported, 0
                event = t.dropped_event
            if n:
                self.record(t.name, event or "?", f"{n} message{'s' if n > 1 else ''} dropped: "
                            f"the queue of {self.queue_size} was full (the target is slow or "
                            "down; the newest messages are kept)", attempts=0, gave_up=True,
                            dropped=n)
        with self._lock:
            out, self._failures = self._failures, []
        return out

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (real time) for every queue to drain, then
        abandon what is left (said in ``failures()``). Never hangs: a call in flight is
        abandoned (a command's process group is stopped, at most ``KILL_GRACE`` + 1 s
        more) and the workers are daemon threads."""
        self._closed = True
        deadline = time.monotonic() + max(0.0, timeout)
        for t in self._targets:
            with t.cond:
                while not t.idle():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    t.cond.wait(min(left, 0.1))
        self.abandoned.set()
        for t in self._targets:
            with t.cond:
                left_over = len(t.queue) + (1 if t.busy else 0)
                t.queue.clear()
                t.cond.notify_all()
            if left_over:
                self.record(t.name, "*", f"{left_over} message{'s' if left_over > 1 else ''} "
                            f"not delivered: the run ended and shiftover stopped waiting after "
                            f"{timeout:g}s", attempts=0, gave_up=True)
        # an abandoned webhook call returns within 0.1 s; an abandoned command's group gets
        # SIGTERM, then SIGKILL after KILL_GRACE: give that a bounded moment, so that a
        # process exiting right after close() leaves no notify command behind
        grace = time.monotonic() + KILL_GRACE + 1.0
        for t in self._targets:
            t.thread.join(max(0.0, grace - time.monotonic()))

    # -- internals -----------------------------------------------------------------
    def record(self, target: str, event: str, error: str, *, attempts: int, gave_up: bool,
               **extra: Any) -> None:
        spec = next((t.spec for t in self._targets if t.name == target), None)
        url = None
        if spec is not None:
            url = spec.slack.url if spec.slack else spec.webhook.url if spec.webhook else None
            # header values are credentials (Authorization: Bearer ...) even typed inline,
            # and a receiver's error page may echo them
            for value in (spec.webhook.headers.values() if spec.webhook else ()):
                for word in {value, *value.split()[-1:]}:  # "Bearer <token>": the token
                    if len(word) >= 4:
                        error = error.replace(word, "***")
        entry = {"target": target, "error": self._clean(_scrub_urls(error, url)),
                 "event": event, "attempts": attempts, "gave_up": gave_up, **extra}
        with self._lock:
            self._failures.append(entry)

    def _clean(self, text: str) -> str:
        from shiftover.plan import mask_userinfo  # plan imports this module: not at the top

        return mask_userinfo(self._redact(text))

    def _clean_data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._clean(value)
        if isinstance(value, Mapping):
            return {str(k): self._clean_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean_data(v) for v in value]
        return value

    def _fold(self, e: Event) -> RunState:
        before = self._state
        self._state = fold(before, [e])
        if e.kind == ev.WEIGHT_INTENDED:
            self._intent = str((e.data or {}).get("reason") or "")
        elif e.kind in (ev.WEIGHT_CONFIRMED, ev.WEIGHT_FAILED):
            self._intent = None  # each write's intent is read once, by its own result
        if e.kind == ev.RUN_STARTED:
            self._run_id = (e.data or {}).get("run_id") or e.run_id
            self._environment = (e.data or {}).get("environment") or self._environment
        return before

    def _message(self, e: Event) -> Message | None:
        intent = self._intent
        before = self._fold(e)
        after = self._state
        d: dict[str, Any] = e.data if isinstance(e.data, dict) else {}
        cmd = self.commands
        service = self.service or str(getattr(e, "service", "") or "").split("@")[0]
        head = service + (f" ({self._environment})" if self._environment else "")
        now = after.confirmed
        command: str | None = cmd("status")
        data = d
        kind = e.kind
        if kind == ev.WEIGHT_CONFIRMED and intent == "step":
            w = weight_or_none(d)
            if w is None:
                return None
            was = before.confirmed
            name = "step_advanced"
            text = f"{head}: step advanced to {w} on the new environment" + (
                f" (from {was})" if was is not None else "") + "."
            now = w
        elif kind == ev.CHECK and d.get("verdict") == "fail" and not (
                before.paused or before.rolling_back or before.rollback_requested):
            # (a paused run goes on checking: its failures were said by the pause, not
            # again every interval until someone resumes)
            name = "failing_check"
            router = d.get("router")
            now = (weight_or_none(router) if isinstance(router, dict) else None) or now
            failed = [r for r in d.get("results") or [] if isinstance(r, dict)
                      and r.get("verdict") == "fail"]
            n = d.get("consecutive_failures")
            text = (f"{head}: check FAILED at {_split(now)}: "
                    + "; ".join(_gate_line(r) for r in failed)
                    + (f" ({n} failed check{'s' if n != 1 else ''} in a row)"
                       if isinstance(n, int) else "")
                    + f". Roll back now: {cmd('rollback')}")
            data = {"verdict": "fail", "consecutive_failures": n,
                    "router": router, "failed": [
                        {k: r.get(k) for k in ("gate", "value", "threshold", "samples", "reason")}
                        for r in failed]}
        elif kind == "hook_failed" or (kind == "hook_finished" and d.get("ok") is False):
            name = "failing_check"
            phase = d.get("phase", "run")
            place = str(d.get("at", ""))
            at = f" at {place}%" if place.replace(".", "", 1).isdigit() else \
                f" at {place}" if place else ""
            text = (f"{head}: hook {d.get('hook', '?')} ({phase}{at}) failed at {_split(now)}: "
                    f"{d.get('summary', '')}".rstrip(": ") + ".")
            data = {k: d.get(k) for k in ("hook", "at", "phase", "summary", "exit_code", "status")
                    if k in d}
        elif kind == ev.PAUSED and d.get("stuck"):
            name = "stuck"
            command = cmd("resume")
            why = str(d.get("reason") or "")
            why = why[len("stuck: "):] if why.startswith("stuck: ") else why
            text = (f"{head}: STUCK at {_split(now)}, paused by the run: {why}. "
                    f"Find out why ({cmd('status')}), then resume: {command}")
        elif kind == ev.PAUSED:
            name = "paused"
            command = cmd("resume")
            by = f"by {e.actor}" if e.actor else "by the run"
            reason = f": {d['reason']}" if d.get("reason") else ""
            text = f"{head}: paused {by} at {_split(now)}{reason}. To resume: {command}"
        elif kind == ev.APPROVAL_WAITING:
            name = "waiting_for_approval"
            step = d.get("step")
            step_text = f"{step:g}" if isinstance(step, int | float) else str(step)
            command = cmd("approve", "--step", step_text)
            text = (f"{head}: waiting for approval of the {step_text}% step "
                    f"(now {_split(now)}). To approve: {command}")
        elif kind == ev.ROLLBACK_STARTED:
            name = "rollback_started"
            now = before.confirmed
            stuck = " (stuck)" if d.get("stuck") else ""
            text = (f"{head}: ROLLBACK started{stuck} at {_split(now)}: "
                    f"{d.get('reason') or 'no reason recorded'}.")
            data = {k: v for k, v in d.items()}
        elif kind == ev.ROLLED_BACK:
            name = "rolled_back"
            now = Weights(0)
            secs = d.get("seconds")
            took = f" in {secs:.1f}s" if isinstance(secs, int | float) else ""
            reason = f": {d['reason']}" if d.get("reason") else ""
            text = f"{head}: rolled back to 0% on the new environment{took}{reason}."
        elif kind == ev.PROMOTED:
            name = "promoted"
            now = weight_or_none(d) or Weights(100)
            text = f"{head}: PROMOTED: {now} of the traffic on the new environment."
        else:
            return None
        return Message(event=name, kind=kind, service=service, environment=self._environment,
                       run_id=self._run_id or getattr(e, "run_id", None),
                       percent=None if now is None else float(now.new_percent),
                       text=self._clean(text), command=None if command is None
                       else self._clean(command), at=float(e.at),
                       data=self._clean_data(data))


__all__ = [
    "EVENTS",
    "Message",
    "Notifier",
    "NotifyList",
    "NotifySpec",
    "SlackSpec",
    "command_env",
    "notify_secrets",
    "slack_payload",
    "target_names",
    "where",
]
