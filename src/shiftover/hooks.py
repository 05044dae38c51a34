"""Hooks: what the plan does besides moving traffic, at its places, with an undo.

Moving web traffic is half of a migration: a cron batch must run in exactly one
environment, workers must move from the old queue consumers to the new ones,
smoke tests must run after a step. ``hooks:`` in the plan says what runs where::

    hooks:
      - name: batch-scheduler
        at: 50                       # a step's percent, start, promoted, or every_step
        run: [./bin/batch, move, --to, new]
        undo: {run: [./bin/batch, move, --to, old]}
        timeout: 2m
        retries: 1
        idempotent: true             # running it twice does no harm

Why it is shaped like this:

- A hook is a command (argv, no shell) or a webhook, because those are the two
  things every team already has: a script in the repository, or an endpoint of
  a job runner. Both go through :mod:`shiftover.external`, the one place that
  spawns processes or posts webhooks for the plan.
- ``undo`` is the hook's counterpart, run when the campaign is rolled back, in
  reverse order, after the router confirms 0% (traffic first: nothing delays
  the rollback of traffic). It runs for every hook that *started*, failed ones
  included: a hook that failed half-way may have done half its work, so an undo
  must be written to be safe on a half-done hook.
- ``idempotent`` is the plan's answer to the one question a crash leaves open:
  a run killed while a hook ran cannot know whether the hook did its work. An
  idempotent hook simply runs again; any other holds the run until an operator
  checks and says so with ``shiftover ack``.
- The rules (when hooks run, what a failure counts as) live in
  ``engine/decide.py``; the intent/result journalling and the undo in
  ``engine/run.py``. This module is the model and the execution of one hook.

The hook's environment carries the run's facts (``SHIFTOVER_SERVICE``,
``SHIFTOVER_ENVIRONMENT``, ``SHIFTOVER_RUN_ID``, ``SHIFTOVER_HOOK``,
``SHIFTOVER_PHASE`` (``run``/``undo``), ``SHIFTOVER_AT``, ``SHIFTOVER_STEP``,
``SHIFTOVER_PERCENT``, ``SHIFTOVER_ATTEMPT``); a webhook without a ``body``
gets them as JSON.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from shiftover.external import (
    Argv,
    EnvVars,
    Outcome,
    WebhookSpec,
    call_webhook,
    kill_tagged,
    run_command,
    tagged_processes,
    webhook_secrets,
)
from shiftover.spec import FiniteFloat, SpecModel, Timeout, rule

START, PROMOTED, EVERY_STEP = "start", "promoted", "every_step"
PLACES = (START, PROMOTED, EVERY_STEP)
OUTPUT_CAP = 4096          # of a hook's output kept in the journal (the tail)
RETRY_FIRST, RETRY_MAX = 1.0, 30.0


class _Action(SpecModel):
    """A command (``run:``) or an HTTP call (``webhook:``): exactly one of them."""

    run: Argv | None = Field(default=None, description="a command and its arguments (no shell)")
    webhook: WebhookSpec | None = Field(default=None, description="an HTTP call instead of a command")
    env: EnvVars = Field(default_factory=dict, description="added to the command's environment")

    @model_validator(mode="after")
    def _one_action(self) -> Any:
        if (self.run is None) == (self.webhook is None):
            raise rule("give run: (a command) or webhook: (an HTTP call), one of them",
                       ("run",))
        return self

    def describe(self) -> str:
        """``run ./bin/batch move`` or ``POST https://host/path`` (the URL without
        credentials or query: it may carry a token)."""
        if self.run is not None:
            return "run " + " ".join(self.run)
        assert self.webhook is not None
        from shiftover.providers.http import redact_url

        return f"{self.webhook.method} {redact_url(self.webhook.url).split('?')[0]}"


class HookUndo(_Action):
    """What undoes a hook: its counterpart, run on rollback."""


class HookSpec(_Action):
    """A hook of the plan (``hooks:``): what runs at one place of the cutover."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="how the journal, status and `shiftover ack` name it")
    at: Literal["start", "promoted", "every_step"] | FiniteFloat = Field(
        description="where it runs: a step's percent (as soon as the router confirms the step), "
        "start (before the first step), promoted (once 100% has baked), or every_step")
    undo: HookUndo | None = Field(default=None, description="its counterpart, run on rollback in reverse order")
    timeout: Timeout = Field(default=300.0, description="a command's limit (a webhook has its own timeout)")
    retries: int = Field(default=0, ge=0, le=10,
                         description="attempts after a failed one, 1s, 2s, 4s ... apart, before the hook counts as failed")
    idempotent: bool = Field(
        default=False,
        description="running it twice does no harm: after a crash while it ran it simply runs "
        "again; otherwise the run holds until `shiftover ack`")

    @property
    def place(self) -> str:
        return self.at if isinstance(self.at, str) else f"{self.at:g}"

    def runs_at(self, place: str) -> bool:
        if self.at == EVERY_STEP:
            return place not in (START, PROMOTED)
        return self.place == place


@dataclass(frozen=True)
class HookOutcome:
    """One execution of a hook (all its tries): the last try's outcome."""

    outcome: Outcome
    tries: int
    simulated: bool = False  # `shiftover simulate` runs no hook: it says so

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    def summary(self) -> str:
        if self.simulated:
            return "simulated (not run)"
        more = f" (try {self.tries} of {self.tries})" if self.tries > 1 else ""
        return self.outcome.summary() + more

    def to_data(self, redact: Callable[[str], str]) -> dict[str, Any]:
        """For ``hook_finished``: what happened, the output's tail, redacted."""
        o = self.outcome
        out = o.output[-OUTPUT_CAP:]
        if len(o.output) > OUTPUT_CAP:
            out = f"[... {len(o.output) - OUTPUT_CAP} characters cut]\n" + out
        return {"ok": o.ok, "summary": redact(self.summary()), "exit_code": o.exit_code,
                "status": o.status, "timed_out": o.timed_out, "stopped": o.stopped,
                "tries": self.tries, "seconds": round(o.seconds, 3), "output": redact(out)}


TAG = "SHIFTOVER_HOOK_TAG"  # in every hook's environment: who it is, to find it after a crash


def hook_tag(journal_key: str, campaign: int, hook: str, at: str) -> str:
    """The tag of one hook at one place of one campaign (its run and its undo: the
    undo must never run beside a leftover of its hook, nor the hook beside itself)."""
    return f"{journal_key}/{campaign}/{hook}/{at}/"


def leftovers(tag: str) -> list[int]:
    """Processes of this host still running for the hook ``tag`` names (a run that
    started them was killed: they run on, in their own session)."""
    return tagged_processes(TAG, tag)


def stop_leftovers(tag: str) -> list[int]:
    """Stop what :func:`leftovers` finds before the hook runs again or is undone."""
    return kill_tagged(TAG, tag)


def facts_env(facts: Mapping[str, Any]) -> dict[str, str]:
    """The run's facts as ``SHIFTOVER_*`` variables (None values left out)."""
    return {f"SHIFTOVER_{k.upper()}": str(v) for k, v in facts.items() if v is not None}


def execute(action: _Action, *, timeout: float, retries: int, facts: Mapping[str, Any],
            stopping: Callable[[], bool] = lambda: False, tag: str = "") -> HookOutcome:
    """Run a hook's (or an undo's) action, trying ``1 + retries`` times with a doubling
    pause between tries, until it succeeds, ``stopping()``, or the tries run out.
    Never raises: what happened is in the outcome. ``tag`` goes into the command's
    environment (:data:`TAG`): what finds it again if the run dies under it."""
    env = {**facts_env(facts), **action.env, **({TAG: tag} if tag else {})}
    tries = 0
    pause = RETRY_FIRST
    while True:
        tries += 1
        if action.run is not None:
            outcome = run_command(action.run, env=env, timeout=timeout, stopping=stopping)
        else:
            assert action.webhook is not None
            hook = action.webhook
            body = hook.body if hook.body is not None else {**facts, "tries": tries}
            outcome = call_webhook(hook.url, method=hook.method, headers=hook.headers, body=body,
                                   timeout=hook.timeout, stopping=stopping)
        if outcome.ok or outcome.stopped or tries > retries or stopping():
            return HookOutcome(outcome, tries)
        end = time.monotonic() + pause
        while time.monotonic() < end and not stopping():
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        pause = min(pause * 2, RETRY_MAX)


def hook_secrets(hooks: list[HookSpec]) -> set[str]:
    """Credentials typed into the plan's hooks (a webhook's query and header values):
    masked like ``${VAR}`` values wherever the plan is shown or journalled."""
    out: set[str] = set()
    for h in hooks:
        for action in (h, h.undo):
            if action is not None and action.webhook is not None:
                out |= webhook_secrets(action.webhook)
    return out


def command_problems(hooks: list[HookSpec]) -> list[str]:
    """Each hook (and undo) command that could not start from here: not found on the
    PATH, or a path that is not an executable file (relative paths are from the working
    directory, where `shiftover run` starts them). Found before the run, not at 50%."""
    problems = []
    for h in hooks:
        for phase, action in (("hook", h), ("undo of hook", h.undo)):
            if action is None or action.run is None:
                continue
            program = action.run[0]
            if "/" in program:
                ok = os.path.isfile(program) and os.access(program, os.X_OK)
                why = "is not an executable file (from the working directory " \
                      f"{os.getcwd()})" if not ok else ""
            else:
                ok = shutil.which(program) is not None
                why = "is not found on the PATH"
            if not ok:
                problems.append(f"{phase} {h.name!r}: {program!r} {why}")
    return problems


def check_hooks(hooks: list[HookSpec], steps: list[float]) -> None:
    """Plan-level rules: unique names; a numeric ``at`` must be one of the steps.
    Raised as the plan's rule errors (the loader points at the field)."""
    seen: set[str] = set()
    for i, h in enumerate(hooks):
        if h.name in seen:
            raise rule(f"hook names must be unique: {h.name!r} appears more than once",
                       ("hooks", i, "name"))
        seen.add(h.name)
        if not isinstance(h.at, str) and h.at not in steps:
            listed = ", ".join(f"{s:g}" for s in steps)
            raise rule(f"hook {h.name!r} is at {h.at:g}, which is not one of the steps "
                       f"({listed}): name a step, or start, promoted, every_step",
                       ("hooks", i, "at"))


__all__ = ["EVERY_STEP", "PLACES", "PROMOTED", "START", "TAG", "HookOutcome", "HookSpec",
           "HookUndo", "check_hooks", "execute", "facts_env", "hook_secrets", "hook_tag",
           "leftovers", "stop_leftovers"]
