"""Runs, campaigns and rehearsals summarised from a real journal (SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shiftover.engine import events as ev
from shiftover.report.runs import (
    OPEN,
    UNFINISHED,
    campaigns,
    date_text,
    environment_of,
    outcome_text,
    rehearsal_text,
    rehearsals,
    run_summaries,
)
from shiftover.store import Store, open_store

DAY = 86400.0
T0 = 1_795_000_000.0  # 2026-11-18 11:06 UTC


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as s:
        yield s


def _run(store: Store, key: str, run_id: str, at: float, *, steps: tuple[float, ...],
         end: str | None, resumed: bool = False, rehearsal: bool | None = None,
         environment: str | None = None, plan_hash: str = "h1") -> None:
    """Journal one run as the engine does: started, each step confirmed, then how it ended."""
    data: dict[str, Any] = {"run_id": run_id, "resumed": resumed, "plan_hash": plan_hash,
                            "host": "ops-1"}
    if rehearsal is not None:
        data["rehearsal"] = rehearsal
    if environment is not None:
        data["environment"] = environment
    store.append(service=key, run_id=run_id, kind=ev.RUN_STARTED, at=at, data=data)
    t = at
    for pct in steps:
        t += 60
        store.append(service=key, run_id=run_id, kind=ev.WEIGHT_CONFIRMED, at=t,
                     data={"percent": pct, "exact": str(pct), "step_index": 0, "verified": True})
    t += 60
    if end == ev.PROMOTED:
        store.append(service=key, run_id=run_id, kind=ev.PROMOTED, at=t,
                     data={"percent": 100, "exact": "100"})
    elif end == ev.ROLLED_BACK:
        store.append(service=key, run_id=run_id, kind=ev.ROLLBACK_STARTED, at=t,
                     data={"reason": "new environment 5xx ratio failed 2 checks", "gates": []})
        store.append(service=key, run_id=run_id, kind=ev.WEIGHT_CONFIRMED, at=t + 1,
                     data={"percent": 0, "exact": "0", "step_index": -1, "verified": True})
        store.append(service=key, run_id=run_id, kind=ev.ROLLED_BACK, at=t + 2,
                     data={"seconds": 1.2, "reason": "new environment 5xx ratio failed 2 checks"})
    if end in (ev.PROMOTED, ev.ROLLED_BACK, "held"):
        code = {ev.PROMOTED: 0, ev.ROLLED_BACK: 3, "held": 4}[end]
        store.append(service=key, run_id=run_id, kind=ev.RUN_STOPPED, at=t + 3,
                     data={"outcome": end, "exit_code": code, "reason": f"{end}"})


def test_run_summaries_one_per_run_with_outcome_and_highest_step(store: Store) -> None:
    _run(store, "shop@staging", "r1", T0, steps=(5, 25), end="held", rehearsal=True,
         environment="staging")
    _run(store, "shop@staging", "r2", T0 + 3600, steps=(50, 100), end=ev.PROMOTED,
         resumed=True, rehearsal=True, environment="staging", plan_hash="h2")
    runs = run_summaries(store.events(service="shop@staging"))
    assert [r.run_id for r in runs] == ["r1", "r2"]
    first, second = runs
    assert (first.outcome, first.exit_code, first.highest_percent, first.resumed) == ("held", 4, 25.0, False)
    assert (second.outcome, second.highest_percent, second.resumed, second.plan_hash) == (
        ev.PROMOTED, 100.0, True, "h2")
    assert first.environment == "staging" and first.rehearsal is True and first.host == "ops-1"
    assert first.ended is not None and first.started == T0
    assert second.to_dict()["outcome"] == "promoted"


def test_a_killed_run_is_unfinished_and_old_journals_fall_back_to_the_key(store: Store) -> None:
    # no run_stopped (SIGKILL), no environment / rehearsal in run_started (an older shiftover)
    _run(store, "shop@production", "r1", T0, steps=(1,), end=None)
    (run,) = run_summaries(store.events(service="shop@production"))
    assert run.outcome == UNFINISHED and run.ended is None
    assert run.environment == "production" and run.rehearsal is None
    assert run.highest_percent == 1.0


def test_operator_events_belong_to_no_run(store: Store) -> None:
    store.append(service="shop", run_id="operator", kind=ev.APPROVED, at=T0, data={"step": 50},
                 actor="ana@ops")
    _run(store, "shop", "r1", T0 + 1, steps=(10,), end=ev.PROMOTED)
    assert [r.run_id for r in run_summaries(store.events(service="shop"))] == ["r1"]


def test_a_resumed_run_stays_in_its_campaign(store: Store) -> None:
    key = "shop@staging"
    _run(store, key, "r1", T0, steps=(5,), end=None, rehearsal=True)          # killed
    _run(store, key, "r2", T0 + 600, steps=(25, 100), end=ev.PROMOTED, resumed=True)
    _run(store, key, "r3", T0 + DAY, steps=(5, 25), end=ev.ROLLED_BACK, rehearsal=True)
    found = campaigns(store.events(service=key))
    assert [c.run_ids for c in found] == [("r1", "r2"), ("r3",)]
    assert [c.outcome for c in found] == [ev.PROMOTED, ev.ROLLED_BACK]
    assert [c.highest_percent for c in found] == [100.0, 25.0]
    assert found[1].rollback_reason == "new environment 5xx ratio failed 2 checks"
    assert found[0].rehearsal is True and found[0].environment == "staging"
    assert outcome_text(found[1]) == "rolled back after reaching 25%"


def test_an_operators_rollback_ends_the_campaign_of_a_dead_run(store: Store) -> None:
    key = "shop@production"
    _run(store, key, "r1", T0, steps=(1, 5), end=None)
    store.append(service=key, run_id="operator", kind=ev.ROLLBACK_REQUESTED, at=T0 + 900,
                 data={"reason": "pager"}, actor="ana@ops")
    store.append(service=key, run_id="operator", kind=ev.ROLLBACK_STARTED, at=T0 + 901,
                 data={"reason": "operator requested rollback: pager", "gates": [], "direct": True})
    store.append(service=key, run_id="operator", kind=ev.ROLLED_BACK, at=T0 + 902,
                 data={"seconds": 0.4, "reason": "operator requested rollback: pager"})
    (c,) = campaigns(store.events(service=key))
    assert (c.outcome, c.ended, c.highest_percent) == (ev.ROLLED_BACK, T0 + 902, 5.0)
    assert c.rollback_reason == "operator requested rollback: pager"


def test_an_open_campaign_and_a_rollback_at_rest(store: Store) -> None:
    key = "shop"
    # a rollback with no campaign open (someone made sure of 0%) is not a campaign
    store.append(service=key, run_id="operator", kind=ev.ROLLED_BACK, at=T0, data={"seconds": 0.1})
    _run(store, key, "r1", T0 + 10, steps=(10,), end="held")
    (c,) = campaigns(store.events(service=key))
    assert c.outcome == OPEN and c.ended is None and c.last_date == T0 + 10
    assert outcome_text(c) == "not finished (reached 10%)"


def test_rehearsals_of_the_other_environments(store: Store) -> None:
    for n in range(3):
        _run(store, "shop@staging", f"s{n}", T0 + n * DAY, steps=(5, 100), end=ev.PROMOTED,
             rehearsal=True, environment="staging")
    _run(store, "shop@integration", "i0", T0 - DAY, steps=(5,), end=ev.ROLLED_BACK)
    _run(store, "shop@production", "p0", T0 + 5 * DAY, steps=(1,), end=ev.ROLLED_BACK)
    _run(store, "other@staging", "o0", T0, steps=(5, 100), end=ev.PROMOTED)  # another service
    found = rehearsals(store, "shop", exclude="production")
    assert [r.environment for r in found] == ["integration", "staging"]
    integration, staging = found
    assert (staging.count, staging.flagged, staging.last_outcome) == (3, 3, ev.PROMOTED)
    assert staging.last_date is not None and staging.last_date > T0 + 2 * DAY
    assert rehearsal_text(staging) == (
        f"rehearsed on staging 3 times, last on {date_text(staging.last_date)}, outcome promoted")
    assert rehearsal_text(integration).startswith("rehearsed on integration once, last on ")
    assert rehearsal_text(integration).endswith("outcome rolled back after reaching 5%")
    assert staging.to_dict()["count"] == 3


def test_rehearsals_of_named_environments_include_the_ones_never_run(store: Store) -> None:
    _run(store, "shop@staging", "s0", T0, steps=(5, 100), end=ev.PROMOTED)
    found = rehearsals(store, "shop", environments=["staging", "integration", "production"],
                       exclude="production")
    assert [(r.environment, r.count) for r in found] == [("integration", 0), ("staging", 1)]
    assert rehearsal_text(found[0]) == "never run on integration"
    assert rehearsal_text(found[1]).startswith("rehearsed on staging once")


def test_readers_are_total_on_odd_events(store: Store) -> None:
    key = "shop"
    store.append(service=key, run_id="r1", kind=ev.RUN_STARTED, at=T0, data={"resumed": "yes"})
    store.append(service=key, run_id="r1", kind=ev.WEIGHT_CONFIRMED, at=T0 + 1, data={"percent": "x"})
    store.append(service=key, run_id="r1", kind=ev.RUN_STOPPED, at=T0 + 2, data={"exit_code": True})
    (run,) = run_summaries(store.events(service=key))
    assert run.highest_percent is None and run.resumed is False and run.exit_code is None
    assert run.outcome == UNFINISHED  # a run_stopped without an outcome says nothing more
    assert campaigns(store.events(service=key))[0].outcome == OPEN


def test_small_helpers() -> None:
    assert environment_of("shop@staging") == "staging"
    assert environment_of("shop") is None
    assert date_text(T0) == "2026-11-18 11:06 UTC"
    assert date_text(None) == ""


def test_runs_that_were_not_rehearsals_are_not_called_so(store: Store) -> None:
    _run(store, "shop@production", "p0", T0, steps=(1, 100), end=ev.PROMOTED, rehearsal=False)
    _run(store, "shop@staging", "s0", T0 - DAY, steps=(5, 100), end=ev.PROMOTED, rehearsal=True)
    found = {r.environment: r for r in rehearsals(store, "shop", exclude="integration")}
    assert rehearsal_text(found["production"]).startswith("run on production once")
    assert rehearsal_text(found["staging"]).startswith("rehearsed on staging once")
