"""``shiftover report``: what one run did, from the journal, as one offline HTML page
or a Markdown summary. Parse, call, print: the work is in
:mod:`shiftover.report.run_report`.

Read-only: the journal is opened with ``create=False`` and never written; no
journal, no runs or an unknown ``--run`` are exit 2 with what to type instead.

Where it goes: ``-o FILE`` (``-o -`` for stdout). The format is ``--format``, else
``.md`` / ``.markdown`` in ``-o``'s name means Markdown, else HTML. Without ``-o``,
Markdown goes to stdout and HTML to ``./report-RUNID.html`` (an HTML page on a
terminal helps nobody). ``--json`` prints the report's data instead of the
one-line note, and writes a file only when ``-o`` is given.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from shiftover.errors import BadInput

FORMATS = ("html", "md")


def _format(fmt: str | None, output: str | None) -> str:
    if fmt is not None:
        word = fmt.strip().lower()
        word = {"markdown": "md", "htm": "html"}.get(word, word)
        if word not in FORMATS:
            raise BadInput(f"--format {fmt!r}: not a report format",
                           hint="--format html (the page with charts) or --format md (a summary "
                           "for a pull-request comment)")
        return word
    if output not in (None, "-") and Path(str(output)).suffix.lower() in (".md", ".markdown"):
        return "md"
    return "html"


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n / 1000:.0f} kB"


def report(
    plan: Annotated[Path, typer.Argument(help="The plan file (YAML): which service's journal to read.",
                                         show_default=False, metavar="PLAN")],
    env: Annotated[str | None, typer.Option(
        "--env", help="The plan's environment: its runs are journalled apart (service@NAME).",
        show_default=False)] = None,
    state: Annotated[str | None, typer.Option(
        "--state", help="The journal to read: a SQLite file or a database URL (default: "
        "$SHIFTOVER_STATE, else this host's state file). Never created.",
        show_default=False)] = None,
    run_id: Annotated[str | None, typer.Option(
        "--run", help="The run to report (its id, as `run` and `history` print it). "
        "Default: the latest run.", show_default=False)] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Write the report here ('-' for stdout). Default: Markdown to "
        "stdout, HTML to ./report-RUNID.html.", show_default=False)] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="html (one offline page with charts) or md (a pull-request summary). "
        "Default: md when -o ends in .md, else html.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report's data as JSON.")] = False,
) -> None:
    """Report one run from the journal: outcome and figures, the weight over time, every
    gate against its threshold, each step's bake, approvals, pauses and rollbacks (who
    and why), the event log. Read-only."""
    from shiftover.cli import (
        _STDOUT,
        _cmds,
        _load,
        _print_json,
        _read_only_store,
        _redact,
        _version,
        _write_text,
        err,
        out,
    )
    from shiftover.plan import load_outline, plan_environments
    from shiftover.report import run_report as rr
    from shiftover.report.runs import environment_of, rehearsals

    kind = _format(fmt, output)
    if as_json and output == "-":
        raise BadInput("--json and -o - would both write to stdout",
                       hint="write the report to a file with -o FILE, or leave --json out")
    outline = load_outline(plan, environment=env)
    try:
        # the whole plan, only to learn its secrets (the outline is enough to read the
        # journal: a report must not need the production credentials exported)
        _load(plan, env)
    except BadInput:
        pass
    key = outline.journal_key
    with _read_only_store(state, quiet=True) as (store, info):
        if store is None:
            raise BadInput(f"no runs to report: no journal yet at {info['where']}",
                           hint="pass the journal the run wrote with --state (a file or a "
                           "database URL), or set SHIFTOVER_STATE")
        events = store.events(service=key)
        runs = rr.list_runs(events)
        others = [s for s in store.services()
                  if s != key and (s == outline.service or s.startswith(outline.service + "@"))]
        rehearsed = rehearsals(store, outline.service, exclude=env)
    if not runs:
        # only commands this plan accepts: --env NAME for an environment it has, no --env
        # when it has none
        names = plan_environments(plan)
        usable = [k for k in others if (environment_of(k) in names if names
                                        else environment_of(k) is None)]
        if usable:
            hint = "its journal has runs under " + ", ".join(others) + ": " + "; ".join(
                _cmds(plan, state, environment_of(k))("report") for k in usable)
        elif others:
            hint = ("its journal has runs under " + ", ".join(others) + ", written with "
                    + ("another plan's environments" if names else "a plan with environments")
                    + ": report them with the plan that ran them")
        else:
            hint = (f"nothing has run for {key} with this journal: run it first, or pass the "
                    "journal it wrote with --state")
        raise BadInput(f"no runs of {key} in the journal at {info['where']}", hint=hint)
    if run_id is None:
        chosen = runs[-1]
    else:
        found = [r for r in runs if r.run_id == run_id]
        if not found:
            listed = "; ".join(rr.run_text(r) for r in runs[-10:])
            more = f" (the last 10 of {len(runs)})" if len(runs) > 10 else ""
            raise BadInput(f"no run {run_id!r} of {key} in the journal at {info['where']}",
                           hint=f"its runs, oldest first{more}: {listed}")
        chosen = found[0]
    data = rr.report_data(
        events, chosen.run_id, journal_key=key, fallback_steps=outline.step_weights,
        redact=_redact, journal=info, rehearsals=rehearsed, generated_at=time.time(),
        version=_version())
    # pasted elsewhere, later: the plain program name, and the journal even when it came
    # from $SHIFTOVER_STATE (the reader's shell may not have it)
    from shiftover.store import STATE_ENV_VAR

    cmd = dataclasses.replace(_cmds(plan, state or os.environ.get(STATE_ENV_VAR) or None, env),
                              program="shiftover")
    text = rr.render_html(data) if kind == "html" else rr.render_markdown(
        data, html_command=cmd("report", "--run", chosen.run_id, "-o", "report.html"))
    target = output
    if target is None and kind == "html" and not as_json:
        target = f"report-{chosen.run_id}.html"
    if target == "-" or (target is None and not as_json):
        # redacted already (the data, before rendering): the stream's own pass could mask
        # a short secret inside the inlined plotly.js and break the page
        stream = _STDOUT._target()
        stream.write(text)
        stream.flush()
    elif target is not None:
        path = Path(target)
        _write_text(path, text, "report", "give -o a file in a directory you can write to, "
                    "or -o - for stdout")
        note = _note(data, path, len(text.encode("utf-8")), kind)
        (err if as_json else out).print(note, highlight=False, markup=False, soft_wrap=True)
    if as_json:
        _print_json(data)


def _note(data: dict[str, Any], path: Path, size: int, kind: str) -> str:
    what = "page" if kind == "html" else "summary"
    return (f"wrote {path} ({_size(size)}): the {what} of run {data['run']['run_id']} of "
            f"{data['journal_key']}, {data['outcome_text']}")
