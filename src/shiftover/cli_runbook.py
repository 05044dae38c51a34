"""``shiftover runbook``: the Markdown runbook of a plan's environment. Parse, call, print.

The document is rendered by :mod:`shiftover.report.runbook` from the effective plan
(``--env``'s overlay merged in) and what the journal says about rehearsals
(:mod:`shiftover.report.runs`). The journal is only read: ``--state`` pointing
nowhere yet is "no rehearsal recorded", never a new state file. Output goes to
stdout (``> RUNBOOK.md``) or ``-o FILE``.

``SOURCE_DATE_EPOCH`` (the reproducible-builds convention), when set, is the
"generated on" time: a runbook regenerated in CI from an unchanged plan and
journal is then byte-identical.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from shiftover.errors import BadInput

# The options are declared here (cli.py mounts this module at its end, so its own
# PlanArg/StateOpt/EnvOpt cannot be imported at this module's top); same flags and
# meaning as cli.py's.
_Plan = Annotated[Path, typer.Argument(help="The plan file (YAML).", show_default=False, metavar="PLAN")]
_Env = Annotated[str | None, typer.Option(
    "--env", help="The plan's environment to write the runbook for (a name under its "
    "environments:, merged over the base plan): production, staging...", show_default=False)]
_State = Annotated[str | None, typer.Option(
    "--state", help="The journal to read rehearsals from (read-only, never created): a SQLite "
    "file or a database URL; also put into the runbook's commands. Default: $SHIFTOVER_STATE, "
    "else this host's state file.", show_default=False)]
_Output = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write the runbook to this file instead of stdout.", show_default=False)]


def _generated_at() -> dt.datetime:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if raw:
        try:
            return dt.datetime.fromtimestamp(int(raw), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise BadInput(f"SOURCE_DATE_EPOCH={raw!r} is not a Unix time in seconds",
                           hint="unset it, or set it to e.g. $(git log -1 --format=%ct)") from None
    return dt.datetime.now(dt.UTC)


def _has_credentials(state: str | None) -> bool:
    """Whether the journal is a database URL with a user or a password in it."""
    if not state or "://" not in state:
        return False
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(state)
    except ArgumentError:
        return False
    return bool(url.username or url.password)


def runbook(plan: _Plan, env: _Env = None, state: _State = None, output: _Output = None) -> None:
    """Write the runbook (Markdown) of a plan's environment: scope, roles and contacts,
    prerequisites (TTL, alerts, rehearsals from the journal), the procedure with
    durations and the commands to type, what is checked at each step, approvals,
    the rollback (with shiftover, then by hand for every router) and escalation.

    Read-only: never creates a state file; without a journal it says that no
    rehearsal is recorded. Exit 2 for a plan, environment or output problem."""
    from shiftover.cli import _cmds, _load, _read_only_store, _write_text
    from shiftover.plan import plan_environments, plan_hash
    from shiftover.report.runbook import (
        STATE_FROM_ENV,
        JournalFacts,
        RunbookCommands,
        render_runbook,
    )
    from shiftover.report.runs import campaigns, rehearsals
    from shiftover.store import STATE_ENV_VAR

    generated_at = _generated_at()
    loaded = _load(plan, env)
    p = loaded.plan
    names = plan_environments(plan)
    # a runbook is read elsewhere, later: its commands name the journal even when it
    # came from $SHIFTOVER_STATE (the operator's shell may not have it)
    named = state or os.environ.get(STATE_ENV_VAR) or None
    shown = _cmds(plan, named)
    # a URL with a user or password: the commands read "$SHIFTOVER_STATE" (section 3 says
    # to export it); pasted with the masked URL they would fail
    cmd = RunbookCommands(str(plan), STATE_FROM_ENV if _has_credentials(named) else shown.state,
                          "shiftover", env)
    with _read_only_store(state, quiet=True) as (store, info):
        # the journal as the user named it (its password hidden), else where the default is
        where = shown.state or str(info["where"])
        if store is None:
            journal = JournalFacts(where=where, exists=False)
        else:
            journal = JournalFacts(
                where=where, exists=True,
                rehearsals=tuple(rehearsals(store, p.service, environments=names or None,
                                            exclude=env)),
                here=tuple(campaigns(store.events(service=p.journal_key))))
    text = render_runbook(loaded, plan_path=str(plan), environment=env, commands=cmd,
                          journal=journal, generated_at=generated_at,
                          plan_hash=plan_hash(p, loaded.redact))
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    _write_text(output, text, "runbook", "check that the directory exists and is writable, "
                "or leave out -o and redirect stdout")
    print(f"runbook written to {output} ({len(text.splitlines())} lines)", file=sys.stderr)
