"""The run report from real journals: the engine's Runner on a FakeClock writes them
(tests/report/journals.py), the report reads them back. The model (what ``--json``
prints), the HTML page and the Markdown summary are checked against what the run
did; then the CLI against a real SQLite journal, read-only, with its errors.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.tmpdir import TempPathFactory
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.engine import events as ev
from shiftover.plan import load_plan
from shiftover.report import run_report as rr
from shiftover.store import Store, open_store
from shiftover.testing import FakeClock, InMemoryRouter
from shiftover.types import Weights

from .journals import (
    ALICE,
    BOB,
    HOSTILE,
    SECRET,
    SERVICE,
    Operators,
    Switch,
    gates_plan,
    held_then_resumed,
    promoted_run,
    rolled_back_run,
    run_once,
)

cli = CliRunner()


def mask(text: str) -> str:
    return text.replace(SECRET, "***")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


def _built(factory: TempPathFactory, build: Any) -> Iterator[Store]:
    s = open_store(f"sqlite:///{factory.mktemp('journal')}/state.db")
    build(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: TempPathFactory) -> Iterator[Store]:
    """Read-only for the tests: one rolled-back run (rolled_back_run)."""
    yield from _built(tmp_path_factory, rolled_back_run)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: TempPathFactory) -> Iterator[Store]:
    yield from _built(tmp_path_factory, held_then_resumed)


def data_of(store: Store, run_id: str | None = None, **kw: Any) -> dict[str, Any]:
    events = store.events(service=SERVICE)
    runs = rr.list_runs(events)
    return rr.report_data(events, run_id or runs[-1].run_id, journal_key=SERVICE,
                          redact=mask, **kw)


# --- the model -----------------------------------------------------------------------------


def test_a_rolled_back_run_in_figures(rolled: Store) -> None:
    store = rolled
    run_id = rr.list_runs(store.events(service=SERVICE))[-1].run_id
    d = data_of(store)
    events = store.events(service=SERVICE)
    checks = [e for e in events if e.kind == ev.CHECK]
    assert d["run"]["run_id"] == run_id and d["outcome"] == "rolled_back"
    assert d["outcome_text"] == "rolled back" and d["exit_code"] == 3
    assert d["reason"].startswith("rolled back: 2 consecutive failed checks: new 5xx ratio")
    f = d["figures"]
    assert f["checks"] == len(checks) and f["checks_failed"] == 2
    assert f["checks_inconclusive"] == sum(1 for e in checks if e.data["verdict"] == "inconclusive") > 0
    assert f["highest_percent"] == 50.0 and f["highest_step"] == 4 and f["steps"] == 5
    assert f["final_percent"] == 0.0
    assert f["approvals"] == 1 and f["pauses"] == 1
    started = next(e for e in events if e.kind == ev.RUN_STARTED)
    stopped = next(e for e in events if e.kind == ev.RUN_STOPPED)
    assert f["duration_seconds"] == round(stopped.at - started.at, 3)
    # time to rollback: the engine's figure, and from the first of the two failed checks
    rb = d["rollback"]
    done = next(e for e in events if e.kind == ev.ROLLED_BACK)
    assert rb["seconds"] == done.data["seconds"]
    first_fail = next(e for e in checks if e.data["verdict"] == "fail")
    zero = [e for e in events if e.kind == ev.WEIGHT_CONFIRMED][-1]
    assert rb["first_failed_check_at"] == first_fail.at
    assert rb["from_first_failed_check_seconds"] == round(zero.at - first_fail.at, 3)
    assert rb["gates"][0]["gate"] == "new 5xx ratio"


def test_the_weight_over_time_is_every_split_the_router_confirmed(rolled: Store) -> None:
    store = rolled
    d = data_of(store)
    confirmed = [(e.at, float(Weights.parse(e.data["exact"]).new_percent))
                 for e in store.events(service=SERVICE, kinds=[ev.WEIGHT_CONFIRMED])]
    reconciled = [e for e in store.events(service=SERVICE, kinds=[ev.RECONCILED])]
    assert [(p["at"], p["percent"]) for p in d["weights"] if p["source"] == "confirmed"] == confirmed
    assert [p["percent"] for p in d["weights"]] == [0.0, 1.0, 5.0, 25.0, 50.0, 0.0]
    assert len(reconciled) == 1 and d["weights"][0]["source"] == "reconciled"


def test_each_step_its_bake_checks_approval_and_end(rolled: Store) -> None:
    store = rolled
    d = data_of(store)
    rows = {s["label"]: s for s in d["steps"]}
    assert list(rows) == ["0% (before the first step)", "1% (step 1/5)", "5% (step 2/5)",
                          "25% (step 3/5)", "50% (step 4/5)"]
    assert rows["0% (before the first step)"]["baked_seconds"] is None
    for label in ("1% (step 1/5)", "5% (step 2/5)", "25% (step 3/5)"):
        s = rows[label]
        assert s["ended"].startswith("advanced to") and s["bake_complete"], s
        assert s["baked_seconds"] >= 30 and s["bake_required"] == 30
    # the 5% step waited for the approval of 25%, given by alice 45 s later
    five = rows["5% (step 2/5)"]
    assert five["approval"]["actor"] == ALICE and five["approval"]["step"] == 25.0
    assert five["waited_for_approval_at"] is not None
    assert five["seconds"] > 30 + 45
    fifty = rows["50% (step 4/5)"]
    assert fifty["ended"].startswith("rolled back: 2 consecutive failed checks")
    assert fifty["checks"] == {"pass": 0, "fail": 2, "inconclusive": 0}
    assert not fifty["bake_complete"] and fifty["bake_restarts"] == 1
    # every check of the run is in exactly one row
    assert sum(sum(s["checks"].values()) for s in d["steps"]) == d["figures"]["checks"]


def test_every_gate_at_every_check_against_its_threshold(rolled: Store) -> None:
    store = rolled
    d = data_of(store)
    n = d["figures"]["checks"]
    names = [g["name"] for g in d["gates"]]
    assert names == ["new 5xx ratio", HOSTILE, "alerts for the service"]  # the plan's order
    errors, rps, alerts = d["gates"]
    assert all(len(g["points"]) == n for g in d["gates"])
    assert errors["threshold"] == "<= 0.01" and errors["lines"] == [
        {"y": 0.01, "side": "max", "label": "max 0.01"}]
    assert rps["lines"] == [{"y": 5.0, "side": "min", "label": "min 5"}]
    assert alerts["lines"] == [{"y": 0.0, "side": "max", "label": "0 firing"}]
    assert errors["checks"]["fail"] == 2 and errors["points"][-1]["value"] == 0.05
    # the throughput gate had no data at first: no value, inconclusive, the reason kept
    assert rps["points"][0] == {**rps["points"][0], "value": None, "verdict": "inconclusive"}
    assert "no data" in rps["points"][0]["reason"]
    assert d["failing_gates"] == [{
        "gate": "new 5xx ratio", "fails": 2, "first_at": errors["first_fail_at"],
        "last_at": errors["points"][-1]["at"], "value": 0.05, "threshold": "<= 0.01",
        "reason": "0.05 is above max 0.01", "caused_rollback": True}]


def test_approvals_pauses_and_rollbacks_with_who_and_why(rolled: Store) -> None:
    store = rolled
    d = data_of(store)
    acts = [(a["kind"], a["who"]) for a in d["actions"]]
    assert acts == [(ev.PAUSED, BOB), (ev.RESUMED, BOB), (ev.APPROVAL_WAITING, "the run"),
                    (ev.APPROVED, ALICE), (ev.ROLLBACK_STARTED, "the run"),
                    (ev.ROLLED_BACK, "the run")]
    why = {a["kind"]: a["why"] for a in d["actions"]}
    assert why[ev.PAUSED] == "database failover in progress"
    assert why[ev.APPROVED] == "dashboards green, token ***, see https://grafana.example.com/d/shop"
    assert why[ev.ROLLBACK_STARTED].startswith("2 consecutive failed checks")
    # the full log: every event of the run, operators' included, in journal order
    ids = [e["id"] for e in d["events"]]
    assert ids == [e.id for e in store.events(service=SERVICE)]
    assert all(e["text"] for e in d["events"])


def test_no_secret_in_any_rendering(rolled: Store) -> None:
    store = rolled
    d = data_of(store)
    for text in (json.dumps(d), rr.render_html(d), rr.render_markdown(d)):
        assert SECRET not in text
        assert "token ***" in text


def test_a_promoted_run(store: Store) -> None:
    promoted_run(store)
    d = data_of(store)
    assert d["outcome"] == "promoted" and d["rollback"] is None and d["failing_gates"] == []
    assert d["figures"]["highest_percent"] == 100.0 and d["figures"]["highest_step"] == 5
    assert d["steps"][-1]["ended"] == "promoted"
    md = rr.render_markdown(d)
    assert "### shiftover: `shop` promoted" in md and "No gate failed." in md


def test_runs_default_to_the_latest_and_each_has_its_own_events(resumed: Store) -> None:
    store = resumed
    first, second = (r.run_id for r in rr.list_runs(store.events(service=SERVICE)))
    runs = rr.list_runs(store.events(service=SERVICE))
    assert [r.run_id for r in runs] == [first, second]
    assert [r.outcome for r in runs] == ["held", "promoted"]
    latest = data_of(store)
    assert latest["run"]["run_id"] == second and latest["run"]["resumed"] is True
    assert {e["run_id"] for e in latest["events"]} == {second}
    earlier = data_of(store, first)
    assert earlier["outcome"] == "held" and earlier["run"]["resumed"] is False
    assert {e["run_id"] for e in earlier["events"]} == {first}
    # the resumed run starts where the first left the router (from the journal)
    assert latest["weights"][0]["source"] == "journal"
    assert latest["weights"][0]["percent"] == earlier["figures"]["final_percent"] > 0
    assert [r["run_id"] for r in latest["runs"]] == [first, second]
    with pytest.raises(KeyError):
        rr.report_data(store.events(service=SERVICE), "nope", journal_key=SERVICE)


def test_an_approval_given_ahead_of_time_is_found(store: Store) -> None:
    clock = FakeClock()
    store.append(service=SERVICE, run_id="operator", kind=ev.APPROVED, at=clock.now(),
                 data={"step": 25.0, "reason": "approved in the change review"}, actor=ALICE)
    run_once(store, gates_plan(), clock=clock)
    d = data_of(store)
    approval = next(s["approval"] for s in d["steps"] if s["approval"])
    assert approval["actor"] == ALICE and approval["step"] == 25.0
    # before the first run, operators' events go with it
    assert d["events"][0]["kind"] == ev.APPROVED


def test_environment_and_rehearsal_in_the_header(store: Store) -> None:
    plan = gates_plan(rehearsal=True, approvals=[])
    run_once(store, plan, environment="staging")
    d = data_of(store)
    assert d["environment"] == "staging" and d["rehearsal"] is True
    page = rr.render_html(d)
    assert 'class="badge env">environment: staging<' in page
    assert 'class="badge rehearsal">rehearsal<' in page
    assert "· environment `staging` · rehearsal" in rr.render_markdown(d)


def test_a_hand_edited_journal_still_renders(store: Store) -> None:
    """Missing fields, wrong types, unknown kinds: described with what they carry."""
    at = 1_800_000_000.0
    for kind, data in [
        (ev.RUN_STARTED, {"run_id": "odd", "plan": "not a dict"}),
        (ev.CHECK, {"verdict": "fail", "results": "nope"}),
        (ev.CHECK, {"results": [{"gate": "g", "value": "high", "threshold": 3}, "x"]}),
        (ev.WEIGHT_CONFIRMED, {"percent": "lots"}),
        (ev.WEIGHT_CONFIRMED, {"exact": "25"}),
        ("something_new", {"x": [1, 2]}),
        (ev.ROLLED_BACK, {"seconds": "slow"}),
    ]:
        at += 5
        store.append(service=SERVICE, run_id="odd", kind=kind, at=at, data=data)
    d = data_of(store)
    assert d["outcome"] == "rolled_back" and d["figures"]["highest_percent"] == 25.0
    assert d["gates"][0]["name"] == "g" and d["gates"][0]["points"][0]["value"] is None
    assert len(d["events"]) == 7
    assert "<html" in rr.render_html(d) and rr.render_markdown(d)


def test_url_credentials_in_what_operators_typed_are_masked(store: Store) -> None:
    """A journal written before the CLI masked operators' reasons: the plan's secret and
    a URL's user:password, in every rendering (and in the footer's command)."""
    clock = FakeClock()
    reason = f"token {SECRET}; see http://bob:pa55word@wiki.internal/x and HTTPS://u:p@h/y"
    store.append(service=SERVICE, run_id="operator", kind=ev.APPROVED, at=clock.now(),
                 data={"step": 25.0, "reason": reason}, actor=ALICE)
    run_once(store, gates_plan(), clock=clock)
    d = data_of(store)
    md = rr.render_markdown(d, html_command="shiftover report p.yaml --state "
                            "postgresql://shift:dbpa55@db.internal/j -o report.html")
    for text in (json.dumps(d), rr.render_html(d), md):
        assert SECRET not in text and "pa55word" not in text and "u:p@" not in text
        assert "dbpa55" not in text
        assert "http://***@wiki.internal/x" in text and "HTTPS://***@h/y" in text
    assert "postgresql://***@db.internal/j" in md


def _rollback_by_hand(store: Store, at: float) -> None:
    """What `shiftover rollback` journals when no run is running: operator events."""
    for n, (kind, data) in enumerate([
        (ev.ROLLBACK_REQUESTED, {"reason": "checkout errors on the dashboard"}),
        (ev.ROLLBACK_STARTED, {"reason": "checkout errors on the dashboard"}),
        (ev.WEIGHT_CONFIRMED, {"exact": "0", "percent": 0.0}),
        (ev.ROLLED_BACK, {"seconds": 0.2, "reason": "checkout errors on the dashboard"}),
    ]):
        store.append(service=SERVICE, run_id="operator", kind=kind, at=at + n * 0.1, data=data,
                     actor=BOB)


def test_an_operator_rollback_after_the_run_ended_is_no_part_of_it(store: Store) -> None:
    clock = FakeClock()
    promoted_run(store, clock=clock)
    alone = data_of(store)
    _rollback_by_hand(store, clock.now() + 120)
    d = data_of(store)
    assert d["outcome"] == "promoted" and d["rollback"] is None
    assert d["figures"] == alone["figures"] and d["steps"] == alone["steps"]
    assert d["figures"]["final_percent"] == 100.0 and d["steps"][-1]["ended"] == "promoted"
    assert [e["id"] for e in d["events"]] == [e["id"] for e in alone["events"]]
    after = d["afterwards"]
    assert [a["kind"] for a in after] == [ev.ROLLBACK_REQUESTED, ev.ROLLBACK_STARTED,
                                          ev.WEIGHT_CONFIRMED, ev.ROLLED_BACK]
    assert after[0]["who"] == BOB and after[0]["why"] == "checkout errors on the dashboard"
    page, md = rr.render_html(d), rr.render_markdown(d)
    assert 'id="afterwards"' in page and "rollback requested by bob@ops-laptop" in page
    assert "#### Afterwards" in md and "time to rollback 243" not in md
    assert "| time to rollback | **-** — no rollback |" in md


def test_a_killed_run_ends_at_its_last_event_and_the_next_run_gets_its_approval(
        store: Store) -> None:
    """A run killed while it waited for the 25% approval (no run_stopped), an approval
    given after the kill, and the resumed run that used it."""
    clock = FakeClock()
    router = InMemoryRouter()
    plan = gates_plan()
    run_once(store, plan, clock=clock, router=router, max_duration=120, run_id="killed",
             operators=Operators(store, clock, pause_at_check=None, approve=False))
    clock.advance(600)
    store.append(service=SERVICE, run_id="operator", kind=ev.APPROVED, at=clock.now(),
                 data={"step": 25.0, "reason": "go on"}, actor=ALICE)
    clock.advance(60)
    run_once(store, plan, clock=clock, router=router, run_id="resumed")
    # SIGKILL: the first run journalled no run_stopped
    events = [e for e in store.events(service=SERVICE)
              if not (e.kind == ev.RUN_STOPPED and e.run_id == "killed")]
    killed = rr.report_data(events, "killed", journal_key=SERVICE)
    own = [e for e in events if e.run_id == "killed"]
    assert killed["run"]["stopped_at"] is None and killed["run"]["ended_at"] == own[-1].at
    assert killed["figures"]["duration_seconds"] == round(own[-1].at - own[0].at, 3) < 130
    assert killed["figures"]["approvals"] == 0 and killed["approvals"] == []
    assert {e["run_id"] for e in killed["events"]} == {"killed"}
    assert killed["steps"][-1]["left_at"] == own[-1].at
    resumed = rr.report_data(events, "resumed", journal_key=SERVICE)
    assert resumed["figures"]["approvals"] == 1 and resumed["approvals"][0]["who"] == ALICE
    assert resumed["outcome"] == "promoted"
    assert "by alice@ops-laptop" in rr.render_markdown(resumed)


def test_a_bake_completed_before_waiting_for_approval_stays_complete(store: Store) -> None:
    """The 5% step baked, waited for the 25% approval, and a failure then rolled it back:
    its bake was complete (the restart was the failure's)."""
    clock = FakeClock()
    errors = Switch()

    def operators(st: Any, obs: Any, d: Any) -> None:
        if d.status == "waiting_approval":
            errors.broken = True

    run_once(store, gates_plan(), clock=clock, operators=operators, errors=errors)
    d = data_of(store)
    assert d["outcome"] == "rolled_back"
    five = next(s for s in d["steps"] if s["label"] == "5% (step 2/5)")
    assert five["waited_for_approval_at"] is not None
    assert five["ended"].startswith("rolled back")
    assert five["bake_complete"] and five["baked_seconds"] >= 30
    page = rr.render_html(d)
    assert "baked, then waited for approval" in page
    assert "baked, then waited for approval" in rr.render_markdown(d)
    fills = [t for t in rr.weight_figure(d)["data"] if t.get("fill") == "toself"]
    assert all(t["legendgroup"] == "bake-done" for t in fills)


@pytest.mark.parametrize(("text", "lines"), [
    ("<= 0.01", [(0.01, "max")]),
    (">= 5 and <= 100", [(5.0, "min"), (100.0, "max")]),
    ("always-valid p > 0.01 (new's error rate <= old's)", [(0.01, "min")]),
    ("always-valid p > 0.05 (new's error rate <= 1.5x old's)", [(0.05, "min")]),
    ("new <= 1.5x old's latency (alpha 0.01)", []),
    ("new <= 1.5x old's latency (alpha 0.01); new <= SLO 0.5s", [(0.5, "max")]),
    ("status 200", [(200.0, "target")]),
    ("status 200, body contains 'ok'", [(200.0, "target")]),
    ("0 firing", [(0.0, "max")]),
    ("<= 1e-05", [(1e-05, "max")]),
    (None, []),
])
def test_threshold_lines(text: str | None, lines: list[tuple[float, str]]) -> None:
    assert [(x["y"], x["side"]) for x in rr.threshold_lines(text)] == lines


def test_the_page_is_self_contained_and_escapes_what_it_quotes(rolled: Store) -> None:
    store = rolled
    d = data_of(store)
    page = rr.render_html(d)
    assert "<script src" not in page and "<link" not in page and 'src="http' not in page
    assert len(re.findall(r"plotly\.js v\d", page)) == 1  # inlined once
    assert page.count("Plotly.newPlot") == 1 + len(d["gates"]) == 4
    for div in ("weight-chart", "gate-chart-1", "gate-chart-2", "gate-chart-3"):
        assert f'id="{div}"' in page
    assert "<script><script>alert(1)" not in page and "<b>bold</b>" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold" in page
    for table in ('id="steps"', 'id="failing"', 'id="actions"', 'id="events"', 'id="facts"'):
        assert table in page
    events = page[page.index('id="events"'):]
    assert events.count("<tr") == len(d["events"]) + 1


def test_figures_say_what_the_model_says(rolled: Store) -> None:
    store = rolled
    d = data_of(store)
    figs = rr.figures(d)
    assert list(figs) == ["weight-chart", "gate-chart-1", "gate-chart-2", "gate-chart-3"]
    line = next(t for t in figs["weight-chart"]["data"] if t["name"] == "on new (router)")
    assert line["y"][:-1] == [p["percent"] for p in d["weights"]] and line["line"]["shape"] == "hv"
    names = {t["name"] for t in figs["weight-chart"]["data"]}
    assert {"bake counted (complete)", "approvals", "pauses / resumes", "rollback"} <= names
    g1 = figs["gate-chart-1"]
    fail = next(t for t in g1["data"] if t["name"] == "fail")
    assert fail["y"] == [0.05, 0.05]
    assert any(t["name"] == "max 0.01" and t["y"] == [0.01, 0.01] for t in g1["data"])
    # no value: on the strip (second axis), not at 0 on the value axis
    strip = next(t for t in figs["gate-chart-2"]["data"] if t["name"] == "inconclusive (no value)")
    assert strip["yaxis"] == "y2" and len(strip["x"]) == 2
    # plotly's pseudo-HTML gets the hostile name as text
    assert all("<script>" not in json.dumps(f) for f in figs.values())


def test_markdown_is_compact_and_link_free(rolled: Store) -> None:
    store = rolled
    md = rr.render_markdown(data_of(store))
    assert md.startswith("### shiftover: `shop` rolled back\n")
    assert "| highest step | **50%** — step 4 of 5; ended at 0% |" in md
    assert "| 50% (step 4/5) |" in md and "| 25% (step 3/5) |" in md
    assert "#### Failing gates" in md and "`new 5xx ratio` (caused the rollback) | 2 | 0.05 |" in md
    # URLs and user@host only inside code spans: nothing a renderer would turn into a link
    outside = re.sub(r"(`+)(?:(?!\1).)*?\1", "", md)
    assert "http" not in outside and "@" not in outside and "](" not in md
    assert f"approved by `{ALICE}`: `dashboards green, token ***, see https://" in md
    assert len(md.splitlines()) < 40


# --- the CLI against a real SQLite journal ------------------------------------------------------

PLAN = """\
service: shop
router:
  type: haproxy
  socket: /tmp/shiftover-report-test.sock
  backend: web
  old: ec2
  new: eks
steps: [1, 5, 25, 50, 100]
bake: 30s
interval: 5s
approvals: [25]
normal_state:
  - name: new 5xx ratio
    type: prometheus
    url: http://reader:${PROM_TOKEN}@127.0.0.1:1
    query: errors
    max: 0.01
  - name: throughput
    type: prometheus
    url: http://127.0.0.1:1
    query: rps
    min: 5
  - name: alerts for the service
    type: prometheus_alerts
    url: http://127.0.0.1:1
    labels: {service: shop}
environments:
  staging:
    rehearsal: true
    steps: [10, 100]
    approvals: []
  production: {}
"""
TOKEN = "prom-token-81273"


@pytest.fixture(scope="module")
def journal(tmp_path_factory: TempPathFactory) -> Iterator[dict[str, Any]]:
    """A staging rehearsal and a production run (rolled back at 50%), each with the real
    plan loader, in a SQLite file; an operator's note quotes the plan's secret. The
    plan's ${PROM_TOKEN} stays exported while the module's tests run (the CLI loads
    the plan to learn its secrets)."""
    tmp = tmp_path_factory.mktemp("cli")
    plan = tmp / "plan.yaml"
    plan.write_text(PLAN)
    state = tmp / "journal.db"
    ids: dict[str, Any] = {"plan": plan, "state": state}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROM_TOKEN", TOKEN)
        with open_store(f"sqlite:///{state}") as store:
            staging = load_plan(plan, environment="staging").plan
            runner, out = run_once(store, staging)
            assert out.outcome == "promoted"
            ids["staging"] = runner.run_id
            prod = load_plan(plan, environment="production").plan
            clock = FakeClock(1_800_100_000.0)
            store.append(service=prod.journal_key, run_id="operator", kind=ev.PAUSED,
                         at=clock.now(), data={"reason": f"curl with {TOKEN} said 503"},
                         actor=BOB)
            store.append(service=prod.journal_key, run_id="operator", kind=ev.RESUMED,
                         at=clock.now() + 1, data={}, actor=BOB)
            store.append(service=prod.journal_key, run_id="operator", kind=ev.APPROVED,
                         at=clock.now() + 2, data={"step": 25.0}, actor=ALICE)
            clock.advance(5)
            runner, out = run_once(store, prod, clock=clock, breaks_at=50,
                                   router=InMemoryRouter())
            assert out.outcome == "rolled_back"
            ids["production"] = runner.run_id
        assert os.environ["PROM_TOKEN"] == TOKEN
        yield ids


def test_cli_writes_the_html_page(journal: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    before = journal["state"].read_bytes()
    r = cli.invoke(app, ["report", str(journal["plan"]), "--env", "production", "--state",
                         str(journal["state"]), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert journal["state"].read_bytes() == before  # read-only
    run_id = journal["production"]
    assert re.match(rf"wrote {re.escape(str(out))} \(\d\.\d MB\): the page of run {run_id} of "
                    r"shop@production, rolled back", " ".join(r.output.split()))
    page = out.read_text()
    assert TOKEN not in page and TOKEN not in r.output
    assert "curl with *** said 503" in page
    assert "environment: production" in page
    # the staging rehearsal is named in the production run's report
    assert "rehearsed on staging once" in page and "outcome promoted" in page
    assert page.count("Plotly.newPlot") == 4


def test_cli_markdown_to_stdout_and_by_suffix(journal: dict[str, Any], tmp_path: Path) -> None:
    args = ["report", str(journal["plan"]), "--env", "production", "--state", str(journal["state"])]
    r = cli.invoke(app, [*args, "--format", "md"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("### shiftover: `shop@production` rolled back")
    assert TOKEN not in r.output and "#### Failing gates" in r.output
    # the footer's command writes this run's page: the plain program name, the journal
    assert (f"`shiftover report {journal['plan']} --env production --run "
            f"{journal['production']} -o report.html --state {journal['state']}`"
            in " ".join(r.output.split()))
    md = tmp_path / "summary.md"
    r = cli.invoke(app, [*args, "-o", str(md)])
    assert r.exit_code == 0, r.output
    assert md.read_text().startswith("### shiftover:") and "the summary of run" in r.output


def test_cli_default_html_file_and_json(journal: dict[str, Any], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["report", str(journal["plan"]), "--env", "staging", "--state", str(journal["state"])]
    r = cli.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / f"report-{journal['staging']}.html").exists()
    r = cli.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["schema"] == "shiftover.report/v1" and data["outcome"] == "promoted"
    assert data["journal_key"] == "shop@staging" and data["rehearsal"] is True
    assert data["environment"] == "staging"


def test_cli_run_selection_and_errors(journal: dict[str, Any], tmp_path: Path) -> None:
    state = ["--state", str(journal["state"])]
    plan = str(journal["plan"])
    r = cli.invoke(app, ["report", plan, "--env", "production", *state, "--run", "nope",
                         "--format", "md"])
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "no run 'nope' of shop@production in the journal at" in text
    assert f"its runs, oldest first: {journal['production']} (" in text
    r = cli.invoke(app, ["report", plan, "--env", "production", *state, "--run",
                         journal["production"], "--format", "md"])
    assert r.exit_code == 0 and journal["production"] in r.output
    # a staging run id is not a production run
    r = cli.invoke(app, ["report", plan, "--env", "production", *state, "--run",
                         journal["staging"], "--format", "md"])
    assert r.exit_code == 2
    # environments in the plan: --env is required, and says which
    r = cli.invoke(app, ["report", plan, *state])
    assert r.exit_code == 2 and "--env" in r.output
    # an environment that never ran
    other = tmp_path / "other.yaml"
    other.write_text(PLAN.replace("  production: {}", "  production: {}\n  dr: {}"))
    r = cli.invoke(app, ["report", str(other), "--env", "dr", *state])
    assert r.exit_code == 2
    assert "no runs of shop@dr in the journal" in " ".join(r.output.split())
    assert "shop@production" in r.output
    # a plan without environments whose journal has only another plan's environments:
    # no --env in the hint (this plan refuses it)
    plain = tmp_path / "plain.yaml"
    plain.write_text(PLAN.split("environments:")[0])
    r = cli.invoke(app, ["report", str(plain), *state])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "no runs of shop in the journal" in text and "shop@production" in text
    assert "--env" not in text and "report them with the plan that ran them" in text
    # bad --format; -o in a directory that does not exist
    r = cli.invoke(app, ["report", plan, "--env", "production", *state, "--format", "pdf"])
    assert r.exit_code == 2 and "--format 'pdf'" in r.output
    r = cli.invoke(app, ["report", plan, "--env", "production", *state, "-o",
                         str(tmp_path / "missing" / "r.html")])
    assert r.exit_code == 2 and "cannot write the report" in r.output
    assert "Traceback" not in r.output


def test_cli_never_creates_a_journal(journal: dict[str, Any], tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    r = cli.invoke(app, ["report", str(journal["plan"]), "--env", "staging", "--state",
                         str(missing)])
    assert r.exit_code == 2
    assert "no runs to report: no journal yet at" in " ".join(r.output.split())
    assert not missing.exists()


def test_the_demo_prints_a_report_command_that_works(tmp_path: Path) -> None:
    """`shiftover demo --workdir DIR` ends with this command: pasted, it writes the page."""
    import shlex

    from shiftover.demo.scenario import report_command

    work = tmp_path / "demo dir"  # a space: the command must quote
    work.mkdir()
    plan = work / "plan.yaml"
    plan.write_text(PLAN.split("environments:")[0].replace("${PROM_TOKEN}", "x")
                    .replace("approvals: [25]", "approvals: []"))
    with open_store(f"sqlite:///{work}/state.db") as store:
        runner, out = run_once(store, load_plan(plan).plan)
    assert out.outcome == "promoted"
    command = report_command(plan, work, runner.run_id)
    assert command == (f"shiftover report '{plan}' --run {runner.run_id} -o "
                       f"'{work / 'report.html'}' --state 'sqlite:///{work}/state.db'")
    args = shlex.split(command)
    r = cli.invoke(app, args[1:])
    assert r.exit_code == 0, r.output
    assert (work / "report.html").stat().st_size > 1_000_000


def test_cli_html_to_stdout(journal: dict[str, Any]) -> None:
    args = ["report", str(journal["plan"]), "--env", "production", "--state",
            str(journal["state"]), "-o", "-"]
    r = cli.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("<!doctype html>") and r.stdout.rstrip().endswith("</html>")
    assert TOKEN not in r.stdout
    r = cli.invoke(app, [*args, "--json"])
    assert r.exit_code == 2 and "both write to stdout" in r.output


def test_hooks_and_their_undos_with_how_each_ended(store: Store) -> None:
    """A run whose hook at 50% fails twice (rolled back), then the undos."""
    at = 1_800_000_000.0

    def add(kind: str, data: dict[str, Any], actor: str | None = None) -> None:
        nonlocal at
        at += 10
        store.append(service=SERVICE, run_id="r1", kind=kind, at=at, data=data, actor=actor)

    add(ev.RUN_STARTED, {"run_id": "r1", "resumed": False})
    for attempt in (1, 2):
        add(ev.HOOK_STARTED, {"hook": "batch", "at": "50", "phase": "run", "attempt": attempt})
        add(ev.HOOK_FINISHED, {"hook": "batch", "at": "50", "phase": "run", "ok": False,
                               "summary": "exit 1 in 0.10s"})
    add(ev.ROLLBACK_STARTED, {"reason": "2 consecutive failed checks: hook batch"})
    add(ev.ROLLED_BACK, {"seconds": 0.1, "reason": "hook batch"})
    add(ev.HOOK_STARTED, {"hook": "batch", "at": "50", "phase": "undo", "attempt": 1})
    add(ev.HOOK_FINISHED, {"hook": "batch", "at": "50", "phase": "undo", "ok": True,
                           "summary": "exit 0 in 0.05s"})
    add(ev.HOOK_STARTED, {"hook": "warm", "at": "start", "phase": "undo", "attempt": 1})
    add(ev.RUN_STOPPED, {"outcome": "rolled_back", "exit_code": 3, "reason": "hook batch"})
    d = data_of(store)
    assert [(h["hook"], h["phase"], h["summary"]) for h in d["hooks"]] == [
        ("batch", "run", "FAILED: exit 1 in 0.10s"), ("batch", "run", "FAILED: exit 1 in 0.10s"),
        ("batch", "undo", "done: exit 0 in 0.05s"),
        ("warm", "undo", "started, no result recorded")]
    html = rr.render_html(d)
    assert 'id="hooks"' in html and "undo batch" in html
    md = rr.render_markdown(d)
    assert "#### Hooks" in md and "- " in md.split("#### Hooks")[1]
