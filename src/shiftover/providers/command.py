"""Command gates: a command whose exit code is the verdict.

For the parts of a normal state no metrics backend covers: the last batch run
succeeded, the worker queue drains, a contract test suite passes. The gate runs
``run:`` (argv, no shell: see :mod:`shiftover.external`) at every check, and
the judge (:mod:`shiftover.analysis.judge`, ``JUDGE = "command"``) reads its exit
code:

- ``0`` PASS, ``1`` FAIL (counts toward ``failure_limit``);
- any other code (``2``..``125``) INCONCLUSIVE: the command says it cannot tell,
  which holds the step like no data;
- a command that cannot work at all is INCONCLUSIVE *and an error* (counted
  toward ``error_limit``, and ``validate`` fails on it): it could not start, it
  timed out, it was killed by a signal, or it exited 126/127 (a shell's "not
  executable" / "not found"). A gate that cannot work must never let traffic move.

A command may also report a figure: the *last* line of its stdout that is a JSON
object with a ``"value"`` (and optionally ``"samples"``, a count) becomes the
measurement's value and sample size, shown in the journal and the views, and
``min_samples`` applies to it (fewer samples is INCONCLUSIVE, whatever the exit
code). The verdict is still the exit code's: a command that wants a threshold
applies it itself.

The command's environment is shiftover's own plus the gate's ``env:``, plus
``SHIFTOVER_GATE`` (the gate's name) and, when the router's split was read this
tick, ``SHIFTOVER_PERCENT`` (percent on new, e.g. ``25`` or ``12.5``): the
provider is split-aware (see :class:`~shiftover.providers.base.SplitAwareProvider`).

Decisions:

- Could not start and timed out raise :class:`~shiftover.errors.ProviderError`
  (with a hint), like any provider that could not answer; everything else, even
  a death by signal, is a measurement the judge reads (``details["exit_code"]``),
  so its output reaches the journal.
- On a timeout the command's process group gets SIGTERM and, 0.5 s later, SIGKILL
  (shorter than the 2 s of hooks: the engine gives a gate one second past its own
  timeout before it stops waiting).
- ``details`` carry ``exit_code``, ``summary`` (``exit 1 in 0.31s``), ``message``
  (the last line of output that is not the JSON line, for the verdict's reason)
  and ``output`` (the tail of stdout and stderr together). The engine redacts the
  plan's secrets from everything it journals; this module does not.
"""

from __future__ import annotations

import json
import math
import shlex
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from shiftover.errors import ProviderError
from shiftover.external import Argv, EnvVars, run_command
from shiftover.spec import GateSpecBase, MinSamples, Timeout
from shiftover.types import Measurement, Weights

KILL_GRACE = 0.5
OUTPUT_TAIL = 4000   # characters of output kept in a measurement's details
MESSAGE_CAP = 200    # characters of the last output line quoted in a reason


class CommandGate(GateSpecBase):
    """A command whose exit code is the verdict: 0 PASS, 1 FAIL, anything else
    INCONCLUSIVE; not startable, timed out, killed, 126 or 127 INCONCLUSIVE as an
    error. An optional last stdout line ``{"value": ..., "samples": ...}`` reports
    a figure, and ``min_samples`` applies to its samples."""

    JUDGE: ClassVar[str] = "command"

    type: Literal["command"]
    run: Argv
    env: EnvVars = Field(default_factory=dict)
    timeout: Timeout = 60.0
    min_samples: MinSamples = 0


def _value_line(stdout: str) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(the last JSON object line with a "value", its raw line, what is wrong with it)."""
    for raw in reversed(stdout.splitlines()):
        line = raw.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "value" in data:
            return data, line, _check_value(data)
    return None, None, None


def _check_value(data: dict[str, Any]) -> str | None:
    value, samples = data.get("value"), data.get("samples")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not math.isfinite(value)):
        return f'"value" must be a number or null, not {json.dumps(value)}'
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int | float)
                                or not math.isfinite(samples) or samples < 0
                                or samples != int(samples)):
        return f'"samples" must be a count (an integer >= 0), not {json.dumps(samples)}'
    return None


def _last_line(output: str, skip: str | None) -> str | None:
    for raw in reversed(output.splitlines()):
        line = raw.strip()
        if line and line != skip and not line.startswith("[... "):
            return line if len(line) <= MESSAGE_CAP else line[:MESSAGE_CAP - 3] + "..."
    return None


def percent_text(split: Weights) -> str:
    """``SHIFTOVER_PERCENT``: the percent on new as a plain decimal (25, 12.5, 1.98413)."""
    return f"{float(split.new_percent):.6g}"


@dataclass
class CommandProvider:
    """Runs the gate's command once per ``measure`` (see the module docstring)."""

    Spec: ClassVar[type[CommandGate]] = CommandGate
    SPLIT_AWARE: ClassVar[bool] = True  # the engine passes the router's split

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 60.0
    _closing: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def from_spec(cls, spec: CommandGate) -> CommandProvider:
        return cls(name=spec.name, argv=list(spec.run), env=dict(spec.env),
                   timeout=spec.timeout)

    def describe(self) -> str:
        return f"command {shlex.join(self.argv)}"

    def close(self) -> None:
        """Stop a command that is running now (the run is ending); later checks are
        not run."""
        self._closing.set()

    def measure(self, *, now: float, split: Weights | None = None) -> Measurement:
        env = {**self.env, "SHIFTOVER_GATE": self.name}
        if split is not None:
            env["SHIFTOVER_PERCENT"] = percent_text(split)
        shown = shlex.join(self.argv)
        if self._closing.is_set():
            raise ProviderError(f"{shown} not run: the run is ending")
        out = run_command(self.argv, env=env, timeout=self.timeout,
                          stopping=self._closing.is_set, kill_grace=KILL_GRACE)
        data, json_line, json_error = _value_line(out.stdout)
        message = _last_line(out.output, json_line)
        said = f"; it said: {message}" if message else ""
        if out.error is not None:
            raise ProviderError(
                f"{shown} could not start: {out.error}",
                hint="the command must exist and be executable on the host that runs "
                     "shiftover: give its full path or put it on shiftover's PATH; for shell "
                     "syntax write run: [sh, -c, \"...\"]")
        if out.timed_out:
            raise ProviderError(
                f"{shown} {out.summary()}{said}",
                hint="the command did not finish within the gate's timeout: make the "
                     "check faster or raise the gate's timeout")
        if out.stopped:
            raise ProviderError(f"{shown} {out.summary()}: the run is ending")
        details: dict[str, Any] = {
            "exit_code": out.exit_code,
            "summary": out.summary(),
            "message": message,
            "output": out.output[-OUTPUT_TAIL:],
        }
        value: float | None = None
        samples: int | None = None
        if json_error is not None:
            details["json_error"] = f"{json_error} (in the line {json_line})"
        elif data is not None:
            raw_value, raw_samples = data.get("value"), data.get("samples")
            value = None if raw_value is None else float(raw_value)
            samples = None if raw_samples is None else int(raw_samples)
        return Measurement(value=value, at=now, samples=samples, details=details)


__all__ = ["CommandGate", "CommandProvider", "percent_text"]
