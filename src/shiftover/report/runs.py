"""Runs, campaigns and rehearsals, summarised from journal events (pure: no I/O
except :func:`rehearsals`, which reads a store it is given).

Three levels, in the words an operator uses:

- a **run** is one ``shiftover run`` process: the events journalled under its
  ``run_id``, from ``run_started`` to ``run_stopped`` (a run that was killed has
  no ``run_stopped``: its outcome is ``unfinished``);
- a **campaign** is one attempt to move the service to 100%: it begins with a
  run that is not a resumption and ends with ``promoted`` or ``rolled_back``
  (whoever journalled it: the run, or an operator's ``shiftover rollback``,
  whose events carry ``run_id="operator"``). A run that dies and is resumed
  stays in the same campaign, so a crash is not counted as a second rehearsal;
- **rehearsals** are the campaigns of the plan's *other* environments (journal
  keys ``service@staging``, ``service@integration``...): "rehearsed on staging
  3 times, last on 2026-11-28, outcome promoted".

Why campaigns are counted and not runs: the team in the story counts how many
times it went through the whole procedure; a run resumed after a reboot of the
operator's laptop is the same rehearsal.

Every reader is total: an event with missing or malformed data is skipped or
read with a default, never raised on (journals are written by several versions
of shiftover, and sometimes edited by hand).

Public API (also used by ``shiftover history``): :class:`RunSummary`,
:func:`run_summaries`, :class:`Campaign`, :func:`campaigns`,
:class:`Rehearsals`, :func:`rehearsals`, :func:`rehearsal_text`,
:func:`environment_of`, :func:`date_text`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shiftover.engine import events as ev

UNFINISHED = "unfinished"  # a run without run_stopped (still running, or killed)
OPEN = "open"              # a campaign not ended by promoted / rolled_back


class _EventLike(Protocol):
    """What is read of a journal event (:class:`shiftover.store.Event` is one)."""

    @property
    def service(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def at(self) -> float: ...

    @property
    def data(self) -> dict[str, Any]: ...


class _Journal(Protocol):
    def services(self) -> list[str]: ...

    def events(self, *, service: str) -> list[Any]: ...


def environment_of(journal_key: str) -> str | None:
    """The environment part of a journal key: ``shop@staging`` -> ``staging``;
    ``shop`` (a plan without environments) -> None."""
    return journal_key.split("@", 1)[1] if "@" in journal_key else None


def date_text(at: float | None) -> str:
    """A journal time as a UTC date and minute, ``2026-11-28 14:03 UTC`` ("" for None)."""
    if at is None:
        return ""
    try:
        return dt.datetime.fromtimestamp(float(at), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _data(e: _EventLike) -> dict[str, Any]:
    return e.data if isinstance(e.data, dict) else {}


def _percent(e: _EventLike) -> float | None:
    """The split an event says the router confirmed (or was found at), as a percent."""
    d = _data(e)
    if e.kind == ev.WEIGHT_CONFIRMED:
        w = ev.weight_or_none(d)
    elif e.kind == ev.RECONCILED:
        w = ev.weight_or_none(d, "router_percent")
    elif e.kind == ev.PROMOTED:
        w = ev.weight_or_none(d)
    else:
        return None
    return None if w is None else float(w.new_percent)


def _higher(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


# --- runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One ``shiftover run`` process, from its events.

    ``outcome`` is what its ``run_stopped`` says (``promoted``, ``rolled_back``,
    ``held``, ``lease_lost``...), or ``unfinished`` when it journalled none (it is
    still running, or it was killed). ``highest_percent`` is the highest split the
    router confirmed during the run (None: it never confirmed one). ``rehearsal``
    and ``environment`` come from ``run_started`` (None in journals written
    before they were recorded; the environment then falls back to the key's).
    """

    run_id: str
    service: str                  # the journal key: service or service@environment
    environment: str | None
    rehearsal: bool | None
    started: float
    ended: float | None           # run_stopped's time (None: unfinished)
    outcome: str
    highest_percent: float | None
    plan_hash: str | None
    resumed: bool
    exit_code: int | None = None
    reason: str | None = None
    host: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for ``--json`` outputs)."""
        return {
            "run_id": self.run_id, "service": self.service, "environment": self.environment,
            "rehearsal": self.rehearsal, "started": self.started, "ended": self.ended,
            "outcome": self.outcome, "highest_percent": self.highest_percent,
            "plan_hash": self.plan_hash, "resumed": self.resumed, "exit_code": self.exit_code,
            "reason": self.reason, "host": self.host,
        }


def run_summaries(events: Iterable[_EventLike]) -> list[RunSummary]:
    """One summary per run (in the order the runs started) from one journal key's
    events in ascending id. Events of ``run_id="operator"`` (approvals, an
    operator's rollback) belong to no run and are left out."""
    started: dict[str, _EventLike] = {}
    stopped: dict[str, _EventLike] = {}
    highest: dict[str, float | None] = {}
    for e in events:
        if e.kind == ev.RUN_STARTED and e.run_id not in started:
            started[e.run_id] = e
        elif e.kind == ev.RUN_STOPPED and e.run_id in started:
            stopped[e.run_id] = e
        pct = _percent(e)
        if pct is not None and e.run_id in started:
            highest[e.run_id] = _higher(highest.get(e.run_id), pct)
    out = []
    for run_id, first in started.items():
        d = _data(first)
        stop = stopped.get(run_id)
        sd = _data(stop) if stop is not None else {}
        env = d.get("environment")
        exit_code = sd.get("exit_code")
        out.append(RunSummary(
            run_id=run_id,
            service=first.service,
            environment=env if isinstance(env, str) else environment_of(first.service),
            rehearsal=_flag(d.get("rehearsal")),
            started=first.at,
            ended=None if stop is None else stop.at,
            outcome=str(sd.get("outcome") or UNFINISHED) if stop is not None else UNFINISHED,
            highest_percent=highest.get(run_id),
            plan_hash=d.get("plan_hash") if isinstance(d.get("plan_hash"), str) else None,
            resumed=d.get("resumed") is True,
            exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool)
            else None,
            reason=sd.get("reason") if isinstance(sd.get("reason"), str) else None,
            host=d.get("host") if isinstance(d.get("host"), str) else None,
        ))
    return out


# --- campaigns ------------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    """One attempt to move the service to 100% (see the module docstring).

    ``outcome``: ``promoted``, ``rolled_back``, or ``open`` (not ended yet, or its
    last run died). ``ended`` is the time of the terminal event. ``rehearsal`` is
    the first run's flag. ``rollback_reason`` says why a rolled-back campaign was
    rolled back (already redacted by the engine when it journalled it).
    """

    service: str
    environment: str | None
    run_ids: tuple[str, ...]
    started: float
    ended: float | None
    outcome: str
    highest_percent: float | None
    rehearsal: bool | None
    plan_hash: str | None
    rollback_reason: str | None = None

    @property
    def last_date(self) -> float:
        """When it ended, or when it started while it is still open."""
        return self.ended if self.ended is not None else self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "environment": self.environment,
            "run_ids": list(self.run_ids), "started": self.started, "ended": self.ended,
            "outcome": self.outcome, "highest_percent": self.highest_percent,
            "rehearsal": self.rehearsal, "plan_hash": self.plan_hash,
            "rollback_reason": self.rollback_reason,
        }


def campaigns(events: Iterable[_EventLike]) -> list[Campaign]:
    """The campaigns of one journal key's events (ascending id), oldest first.

    A campaign opens at the first ``run_started`` after the previous one ended (a
    ``resumed`` flag is not needed for that: a run started while a campaign is open
    resumes it), collects every run started before it ends, and ends at the first
    ``promoted`` or ``rolled_back``, whoever journalled it. A terminal event with no
    campaign open (an operator's rollback at rest) is not a campaign."""
    out: list[Campaign] = []
    cur: dict[str, Any] | None = None
    reason: str | None = None
    for e in events:
        d = _data(e)
        if e.kind == ev.RUN_STARTED:
            if cur is None:
                env = d.get("environment")
                cur = {"service": e.service, "started": e.at, "runs": [e.run_id],
                       "environment": env if isinstance(env, str) else environment_of(e.service),
                       "rehearsal": _flag(d.get("rehearsal")), "highest": None,
                       "plan_hash": d.get("plan_hash") if isinstance(d.get("plan_hash"), str)
                       else None}
                reason = None
            elif e.run_id not in cur["runs"]:
                cur["runs"].append(e.run_id)
                if isinstance(d.get("plan_hash"), str):
                    cur["plan_hash"] = d["plan_hash"]
            continue
        if cur is None:
            continue
        pct = _percent(e)
        if pct is not None:
            cur["highest"] = _higher(cur["highest"], pct)
        if e.kind == ev.ROLLBACK_STARTED and reason is None and isinstance(d.get("reason"), str):
            reason = d["reason"]
        if e.kind in ev.TERMINAL:
            if e.kind == ev.ROLLED_BACK and reason is None and isinstance(d.get("reason"), str):
                reason = d["reason"]
            out.append(_campaign(cur, ended=e.at, outcome=e.kind,
                                 reason=reason if e.kind == ev.ROLLED_BACK else None))
            cur = None
    if cur is not None:
        out.append(_campaign(cur, ended=None, outcome=OPEN, reason=None))
    return out


def _campaign(cur: dict[str, Any], *, ended: float | None, outcome: str,
              reason: str | None) -> Campaign:
    return Campaign(service=cur["service"], environment=cur["environment"],
                    run_ids=tuple(cur["runs"]), started=cur["started"], ended=ended,
                    outcome=outcome, highest_percent=cur["highest"],
                    rehearsal=cur["rehearsal"], plan_hash=cur["plan_hash"],
                    rollback_reason=reason)


# --- rehearsals -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rehearsals:
    """The campaigns of one environment of the service: how many, and the last one.

    ``count`` 0 means the environment is named (in the plan) but has nothing in the
    journal. ``flagged`` counts the campaigns whose first run said ``rehearsal:
    true`` (the plan's flag for that environment)."""

    environment: str
    journal_key: str
    count: int
    flagged: int
    last: Campaign | None

    @property
    def last_date(self) -> float | None:
        return None if self.last is None else self.last.last_date

    @property
    def last_outcome(self) -> str | None:
        return None if self.last is None else self.last.outcome

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "journal_key": self.journal_key,
                "count": self.count, "flagged": self.flagged,
                "last_date": self.last_date, "last_outcome": self.last_outcome,
                "last": None if self.last is None else self.last.to_dict()}


def rehearsals(journal: _Journal, service: str, *, environments: Sequence[str] | None = None,
               exclude: str | None = None) -> list[Rehearsals]:
    """Per environment of ``service`` other than ``exclude``: its campaigns, read from
    the journal key ``service@environment``.

    ``environments``: the plan's environment names (each gets an entry, with count 0
    when it has never run); None to take every ``service@...`` key the journal has.
    Sorted by environment name. ``journal`` is a :class:`shiftover.store.Store`
    (anything with ``services()`` and ``events(service=)``)."""
    prefix = f"{service}@"
    if environments is None:
        names = sorted({environment_of(k) or "" for k in journal.services() if k.startswith(prefix)})
    else:
        names = sorted(set(environments))
    out = []
    for name in names:
        if not name or name == exclude:
            continue
        key = prefix + name
        found = campaigns(journal.events(service=key))
        out.append(Rehearsals(environment=name, journal_key=key, count=len(found),
                              flagged=sum(1 for c in found if c.rehearsal),
                              last=found[-1] if found else None))
    return out


OUTCOME_WORDS = {ev.PROMOTED: "promoted", ev.ROLLED_BACK: "rolled back", OPEN: "not finished"}


def outcome_text(campaign: Campaign) -> str:
    """``promoted``, ``rolled back at 25%``, ``not finished (reached 10%)``."""
    word = OUTCOME_WORDS.get(campaign.outcome, campaign.outcome.replace("_", " "))
    pct = campaign.highest_percent
    if campaign.outcome == ev.ROLLED_BACK and pct:
        return f"{word} after reaching {pct:.4g}%"
    if campaign.outcome == OPEN and pct is not None:
        return f"{word} (reached {pct:.4g}%)"
    return word


def rehearsal_text(r: Rehearsals) -> str:
    """One line: ``rehearsed on staging 3 times, last on 2026-11-28 14:03 UTC, outcome
    promoted``; ``run on production ...`` when the environment's runs say they were not
    rehearsals (``rehearsal: false`` journalled); ``never run on integration``."""
    if r.count == 0 or r.last is None:
        return f"never run on {r.environment}"
    verb = "run" if r.flagged == 0 and r.last.rehearsal is False else "rehearsed"
    times = "once" if r.count == 1 else "twice" if r.count == 2 else f"{r.count} times"
    return (f"{verb} on {r.environment} {times}, last on {date_text(r.last_date)}, "
            f"outcome {outcome_text(r.last)}")


__all__ = [
    "OPEN",
    "OUTCOME_WORDS",
    "UNFINISHED",
    "Campaign",
    "Rehearsals",
    "RunSummary",
    "campaigns",
    "date_text",
    "environment_of",
    "outcome_text",
    "rehearsal_text",
    "rehearsals",
    "run_summaries",
]
