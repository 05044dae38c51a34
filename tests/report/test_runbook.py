"""``shiftover runbook``: golden files for every router type, the CLI's behaviour, and
every command the runbook prints run as pasted against the real thing: HAProxy's
runtime API through socat, the aws CLI (Debian's ``awscli``) and jq against the moto
server, curl against a real HTTP server, and shiftover itself.

Golden files live in ``tests/report/golden/``. After a deliberate change to the
runbook, regenerate them and review the diff::

    SHIFTOVER_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/report/test_runbook.py -p no:cacheprovider
    git diff tests/report/golden/

A missing tool (haproxy, socat, aws, jq, curl) fails the tests that need it with the
package to install: the commands are what the runbook promises, never skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shiftover.cli import app
from shiftover.engine import events as ev
from shiftover.engine.build import minimum_duration
from shiftover.plan import parse_plan_text
from shiftover.report.runbook import (
    JournalFacts,
    duration_text,
    haproxy_command,
    render_runbook,
    timeline,
)
from shiftover.store import open_store
from shiftover.types import Weights
from shiftover.views import Commands

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SHIFTOVER_UPDATE_GOLDEN") == "1"
EPOCH = "1800000000"  # 2027-01-15 08:00 UTC: the runbooks' "generated on"
T0 = 1_795_000_000.0  # 2026-11-18 11:06 UTC: rehearsals in the journal
DAY = 86400.0

runner = CliRunner()

ZONE = "Z0123456789ABCDEFGHIJ"
LISTENER = ("arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shop/"
            "50dc6c495c0c9188/f2f7dc8efc522ab2")
RULE = ("arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/shop/"
        "50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee")
TG_OLD = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shop-ec2/6d0ecf831eec9f09"
TG_NEW = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shop-eks/73e2d6bc24d8a067"

CONTACTS = """\
contacts:
  operator: {name: Aiko Tanaka, role: SRE, reach: "@aiko on Slack, +81 90 0000 0001"}
  observers:
    - {name: Ben Ortiz, role: shop app team, reach: "@ben on Slack"}
  approvers:
    - {name: Dana Kim, role: product owner, reach: "@dana on Slack"}
  escalation:
    - {name: SRE on call, reach: PagerDuty service shop-sre}
    - {name: Eva Novak, role: head of infrastructure, reach: "+81 90 0000 0002"}
"""

HAPROXY_PLAN = f"""\
service: shop
description: Move the shop's web traffic from the EC2 servers to EKS behind the same HAProxy.
{CONTACTS}router:
  type: haproxy
  socket: /run/haproxy/admin.sock
  backend: web
  old: ec2
  new: eks
steps: [1, 10, 50, 100]
bake: 5m
interval: 15s
approvals: [50]
normal_state:
  - name: eks error ratio
    type: haproxy_stats
    socket: /run/haproxy/admin.sock
    backend: web
    server: eks
    max: 0.01
    min_samples: 100
    window: 1m
  - name: eks 5xx ratio (app)
    type: prometheus
    url: http://prometheus.internal:9090
    query: sum(rate(http_requests_total{{env="eks",code=~"5.."}}[1m])) / sum(rate(http_requests_total{{env="eks"}}[1m]))
    samples_query: sum(increase(http_requests_total{{env="eks"}}[1m]))
    max: 0.01
    min_samples: 200
  - name: payments API reachable from eks
    type: http
    url: http://eks-probe.internal:8081/health/payments
    expect_status: 200
    body_contains: ok
  - name: shop alerts
    type: prometheus_alerts
    url: http://prometheus.internal:9090
    labels: {{team: shop, service: shop}}
"""

ROUTE53_PLAN = f"""\
service: shop
description: Move www.example.com from the EC2 load balancer to the EKS one by DNS weights.
{CONTACTS}router:
  type: route53
  hosted_zone_id: {ZONE}
  record_name: www.example.com
  record_type: CNAME
  old: ec2
  new: eks
steps: [1, 5, 25, 50, 100]
bake: 10m
interval: 30s
approvals: [50, 100]
normal_state:
  - name: EKS healthy pods
    type: cloudwatch
    region: eu-west-1
    metric: {{namespace: AWS/ApplicationELB, name: HealthyHostCount, stat: Minimum,
             dimensions: {{TargetGroup: targetgroup/shop-eks/73e2d6bc24d8a067}}}}
    window: 2m
    min: 1
  - name: shop error ratio (APM)
    type: datadog
    query: sum:trace.rack.request.errors{{service:shop}}.as_count() / sum:trace.rack.request.hits{{service:shop}}.as_count()
    window: 5m
    max: 0.01
  - name: shop monitors
    type: datadog_monitors
    tags: [service:shop, env:production]
"""

ALB_PLAN = f"""\
service: shop
description: Move /api/* of the shop from the EC2 target group to the EKS one.
{CONTACTS}router:
  type: alb
  listener_arn: {LISTENER}
  rule_arn: {RULE}
  old: {TG_OLD}
  new: {TG_NEW}
  profile: shop-prod
steps: [1, 10, 50, 100]
bake: 5m
normal_state:
  - name: EKS failed requests
    type: cloudwatch
    region: eu-west-1
    expression: (FILL(e5xx, 0)) / requests
    metrics:
      e5xx: {{namespace: AWS/ApplicationELB, name: HTTPCode_Target_5XX_Count, dimensions: {{TargetGroup: targetgroup/shop-eks/73e2d6bc24d8a067}}}}
      requests: {{namespace: AWS/ApplicationELB, name: RequestCount, dimensions: {{TargetGroup: targetgroup/shop-eks/73e2d6bc24d8a067}}}}
    samples: requests
    window: 5m
    max: 0.01
    min_samples: 200
  - name: shop alarms
    type: cloudwatch_alarms
    region: eu-west-1
    alarm_name_prefix: shop-
"""

LOCKSTEP_PLAN = f"""\
service: shop
description: Move the public name and the internal API together, from EC2 to EKS.
{CONTACTS}routers:
  - type: route53
    hosted_zone_id: {ZONE}
    record_name: www.example.com
    record_type: A
    old: ec2
    new: eks
  - type: alb
    listener_arn: {LISTENER}
    old: {TG_OLD}
    new: {TG_NEW}
steps: [1, 5, 10, 25, 50, 75, 100]
bake: 10m
interval: 30s
approvals: [50]
normal_state:
  - name: new versus old errors
    type: compare
    source:
      type: prometheus
      url: http://prometheus.internal:9090
      old: {{requests: 'http_requests_total{{env="ec2"}}', errors: 'http_requests_total{{env="ec2",code=~"5.."}}'}}
      new: {{requests: 'http_requests_total{{env="eks"}}', errors: 'http_requests_total{{env="eks",code=~"5.."}}'}}
    tolerance: 0.2
  - name: shop alarms
    type: cloudwatch_alarms
    region: eu-west-1
    alarm_names: [shop-batch-failed, shop-queue-age]
"""

NO_CONTACTS_PLAN = """\
service: shop
router: {type: haproxy, socket: "127.0.0.1:9999", backend: web, old: ec2, new: eks}
steps: [5, 50, 100]
bake: 2m
approvals: [50]
normal_state:
  - {name: eks 5xx ratio, type: prometheus, url: "http://127.0.0.1:9090", query: "x", max: 0.01}
"""

ENVIRONMENTS_PLAN = f"""\
service: shop
description: >-
  Move the shop (Rails on EC2) to EKS with no downtime; rehearsed on staging,
  then run on production.
{CONTACTS}router:
  type: haproxy
  socket: /run/haproxy/admin.sock
  backend: web
  old: ec2
  new: eks
steps: [1, 5, 25, 50, 100]
bake: 10m
interval: 30s
approvals: [50]
normal_state:
  - name: eks 5xx ratio
    type: prometheus
    url: ${{PROMETHEUS_URL:-http://prometheus.internal:9090}}
    query: sum(rate(http_requests_total{{env="eks",code=~"5.."}}[2m])) / sum(rate(http_requests_total{{env="eks"}}[2m]))
    max: 0.01
  - name: shop alerts
    type: prometheus_alerts
    url: ${{PROMETHEUS_URL:-http://prometheus.internal:9090}}
    labels: {{service: shop}}
environments:
  integration:
    rehearsal: true
    bake: 1m
  staging:
    rehearsal: true
    steps: [5, 50, 100]
    bake: 2m
    approvals: null
  production:
    description: >-
      Move the shop (Rails on EC2) to EKS in production, with no downtime.
"""


# --- helpers ----------------------------------------------------------------------


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}: create it with SHIFTOVER_UPDATE_GOLDEN=1", pytrace=False)
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        pytest.fail(f"the runbook differs from {path}; if the change is meant, regenerate it with "
                    "SHIFTOVER_UPDATE_GOLDEN=1 and review `git diff`.\n"
                    + _first_difference(expected, text), pytrace=False)


def _first_difference(expected: str, got: str) -> str:
    for n, (a, b) in enumerate(zip(expected.splitlines(), got.splitlines(), strict=False), 1):
        if a != b:
            return f"line {n}:\n  expected: {a}\n  got:      {b}"
    return f"lengths differ: {len(expected.splitlines())} lines expected, {len(got.splitlines())} got"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory: plans and the journal are named relatively, as an operator
    would, so that the runbook's commands (and the golden files) name no temp path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    return tmp_path


def runbook(*args: str) -> Any:
    return runner.invoke(app, ["runbook", *args])


def write_plan(here: Path, text: str, name: str = "plan.yaml") -> str:
    (here / name).write_text(text, encoding="utf-8")
    return name


def journal_rehearsals(state: Path) -> None:
    """Staging rehearsed three times (the last promoted), integration once (rolled
    back), production attempted once before (rolled back at 5%)."""
    with open_store(f"sqlite:///{state}") as store:
        def campaign(key: str, run_id: str, at: float, steps: tuple[float, ...], end: str) -> None:
            env = key.split("@")[1]
            store.append(service=key, run_id=run_id, kind=ev.RUN_STARTED, at=at, data={
                "run_id": run_id, "resumed": False, "plan_hash": "abc", "environment": env,
                "rehearsal": env != "production"})
            for n, pct in enumerate(steps, 1):
                store.append(service=key, run_id=run_id, kind=ev.WEIGHT_CONFIRMED, at=at + 60 * n,
                             data={"percent": pct, "exact": str(pct), "step_index": n - 1})
            store.append(service=key, run_id=run_id, kind=end, at=at + 3600,
                         data={"percent": 100, "exact": "100"} if end == ev.PROMOTED else
                         {"seconds": 1.5, "reason": "eks 5xx ratio failed 2 checks"})
        campaign("shop@integration", "i1", T0 - 3 * DAY, (1, 5), ev.ROLLED_BACK)
        for n in range(3):
            campaign("shop@staging", f"s{n}", T0 + n * DAY, (5, 50, 100), ev.PROMOTED)
        campaign("shop@production", "p1", T0 + 4 * DAY, (1, 5), ev.ROLLED_BACK)


# --- golden files -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "plan"), [
    ("haproxy.md", HAPROXY_PLAN),
    ("route53.md", ROUTE53_PLAN),
    ("alb.md", ALB_PLAN),
    ("lockstep.md", LOCKSTEP_PLAN),
    ("no_contacts.md", NO_CONTACTS_PLAN),
])
def test_golden_per_router(here: Path, name: str, plan: str) -> None:
    r = runbook(write_plan(here, plan), "--state", "state.db")
    assert r.exit_code == 0, r.output
    check_golden(name, r.stdout)
    assert not (here / "state.db").exists()  # read-only: no journal was created


def test_golden_environment_with_contacts_and_rehearsals(here: Path) -> None:
    journal_rehearsals(here / "state.db")
    r = runbook(write_plan(here, ENVIRONMENTS_PLAN), "--env", "production", "--state", "state.db")
    assert r.exit_code == 0, r.output
    check_golden("environment_rehearsed.md", r.stdout)
    text = r.stdout
    assert "rehearsed on staging 3 times, last on 2026-11-20 12:06 UTC, outcome promoted" in text
    assert "rehearsed on integration once" in text and "rolled back after reaching 5%" in text
    assert "Earlier attempts on production: 1" in text
    assert "did not promote" not in text  # integration's old rollback: staging promoted since
    assert "--env production" in text and "--env staging" not in text.split("## 4.")[1]


def test_the_golden_files_cover_every_router_type() -> None:
    from shiftover.routers import ROUTERS

    texts = {p.name: p.read_text() for p in GOLDEN.glob("*.md")}
    for kind, marker in {"haproxy": "socat stdio", "route53": "aws route53 change-resource-record-sets",
                         "alb": "aws elbv2 modify-"}.items():
        assert kind in ROUTERS
        assert any(marker in t for t in texts.values()), f"no golden runbook shows {kind}'s rollback"
    assert any("routers[1]" in t for t in texts.values())  # a lockstep plan


# --- what the document says ---------------------------------------------------------------


def test_without_contacts_it_names_who_is_missing_and_prints_no_empty_section(here: Path) -> None:
    r = runbook(write_plan(here, NO_CONTACTS_PLAN))
    assert r.exit_code == 0, r.output
    text = r.stdout
    roles = text.split("## 2. Roles and contacts")[1].split("## 3.")[0]
    for who in ("**operator**", "**observers**", "**approvers**", "**escalation order**"):
        assert who in roles
    assert "| role |" not in roles  # no empty table
    assert "> **Missing:** no escalation order" in text.split("## 8. Escalation")[1]
    assert "> **Missing:** the plan has no `description:`" in text
    assert "*no approver named (section 2)*" in text


def test_no_journal_means_no_rehearsal_recorded_and_none_is_created(here: Path) -> None:
    r = runbook(write_plan(here, HAPROXY_PLAN), "--state", "nowhere/state.db")
    assert r.exit_code == 0, r.output
    assert "**no rehearsal recorded** (there is no journal at `nowhere/state.db`)" in r.stdout
    assert not (here / "nowhere").exists()


def test_a_journal_without_rehearsals_says_so(here: Path) -> None:
    with open_store(f"sqlite:///{here / 'state.db'}") as store:
        store.append(service="other", run_id="r", kind=ev.RUN_STARTED, at=T0, data={})
    r = runbook(write_plan(here, ENVIRONMENTS_PLAN), "--env", "production", "--state", "state.db")
    assert r.exit_code == 0, r.output
    assert ("**no rehearsal recorded** in the journal at `state.db` (integration, staging: never "
            "run)") in r.stdout


def test_a_rehearsal_that_did_not_promote_is_flagged(here: Path) -> None:
    with open_store(f"sqlite:///{here / 'state.db'}") as store:
        store.append(service="shop@staging", run_id="s", kind=ev.RUN_STARTED, at=T0,
                     data={"environment": "staging", "rehearsal": True})
        store.append(service="shop@staging", run_id="s", kind=ev.ROLLED_BACK, at=T0 + 60,
                     data={"seconds": 1})
    r = runbook(write_plan(here, ENVIRONMENTS_PLAN), "--env", "production", "--state", "state.db")
    assert "The last rehearsal (on staging) did not promote (rolled back)" in r.stdout
    assert "`shiftover history plan.yaml --env staging --state state.db`" in r.stdout


def test_output_file(here: Path) -> None:
    plan = write_plan(here, HAPROXY_PLAN)
    r = runbook(plan, "-o", "RUNBOOK.md")
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert "runbook written to RUNBOOK.md" in r.stderr
    assert (here / "RUNBOOK.md").read_text().startswith("# Runbook: shop cutover\n")


@pytest.mark.parametrize(("args", "message"), [
    (["missing.yaml"], "plan file not found"),
    (["plan.yaml", "-o", "no/such/dir/RUNBOOK.md"], "cannot write the runbook to no/such/dir/RUNBOOK.md"),
    (["env.yaml"], "environment"),                     # a plan with environments needs --env
    (["env.yaml", "--env", "prod"], "prod"),           # an environment it does not have
    (["plan.yaml", "--state", "ftp://x/y"], "--state"),
])
def test_bad_input_is_exit_2_with_a_clear_message(here: Path, args: list[str], message: str) -> None:
    write_plan(here, HAPROXY_PLAN)
    write_plan(here, ENVIRONMENTS_PLAN, "env.yaml")
    r = runbook(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output


def test_bad_source_date_epoch(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    r = runbook(write_plan(here, HAPROXY_PLAN))
    assert r.exit_code == 2 and "SOURCE_DATE_EPOCH='yesterday'" in r.stderr


def test_secrets_never_reach_the_runbook(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_TOKEN", "s3cr3t-t0ken")
    monkeypatch.setenv("PROM_PASSWORD", "hunter2-hunter2")
    plan = HAPROXY_PLAN.replace(
        "url: http://prometheus.internal:9090\n    query:",
        "url: http://ops:${PROM_PASSWORD}@prometheus.internal:9090/?token=${PROM_TOKEN}\n    query:")
    plan = plan.replace("expect_status: 200\n",
                        "expect_status: 200\n    headers: {Authorization: 'Bearer ${PROM_TOKEN}'}\n")
    r = runbook(write_plan(here, plan))
    assert r.exit_code == 0, r.output
    assert "s3cr3t-t0ken" not in r.stdout and "hunter2" not in r.stdout
    assert "ops:" not in r.stdout  # user info in URLs is masked too
    assert "***@prometheus.internal" in r.stdout
    assert "headers Authorization" in r.stdout


def test_a_harmless_variable_in_a_command_is_printed_and_other_secrets_stay_masked(
        here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the review's ALB case: a gate's region from ${AWS_REGION} masked the listener's ARN
    # and every --region; router fields from variables masked --rule-arns
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("SHOP_RULE", RULE)
    monkeypatch.setenv("PROM_TOKEN", "s3cr3t-t0ken")
    plan = (ALB_PLAN.replace("region: eu-west-1", "region: ${AWS_REGION}")
            .replace(f"rule_arn: {RULE}", "rule_arn: ${SHOP_RULE}"))
    assert "${AWS_REGION}" in plan and "${SHOP_RULE}" in plan
    plan += ("  - name: token probe\n    type: http\n    url: http://probe.internal/health\n"
             "    headers: {Authorization: 'Bearer ${PROM_TOKEN}'}\n")
    r = runbook(write_plan(here, plan))
    assert r.exit_code == 0, r.output
    assert "***" not in r.stdout.replace("s3cr3t", "")  # only the token is masked ...
    assert "s3cr3t-t0ken" not in r.stdout  # ... and it is
    assert f"--rule-arns {RULE}" in r.stdout and "--region eu-west-1" in r.stdout
    assert "arn:aws:elasticloadbalancing:***" not in r.stdout


def test_a_variable_inside_the_environments_name_is_not_masked(
        here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the review's case: url .../${STAGE}/health with STAGE=prod gave `--env ***uction`
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("PROBE_PASSWORD", "hunter2-hunter2")
    plan = ENVIRONMENTS_PLAN.replace(
        "normal_state:\n",
        "normal_state:\n  - {name: probe, type: http, "
        "url: 'http://probe:${PROBE_PASSWORD}@probe.internal/${STAGE}/health'}\n", 1)
    r = runbook(write_plan(here, plan), "--env", "production")
    assert r.exit_code == 0, r.output
    assert "uction" not in r.stdout.replace("production", "")
    assert "shiftover run plan.yaml --env production" in r.stdout
    assert "hunter2" not in r.stdout and "probe:" not in r.stdout


def test_a_journal_url_with_credentials_is_read_from_the_environment(
        here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shiftover.cli_runbook import _has_credentials

    assert _has_credentials("postgresql+psycopg://app:pw@db.internal/shiftover")
    assert _has_credentials("postgresql+psycopg://app@db.internal/shiftover")
    assert not _has_credentials("postgresql+psycopg:///shiftover")
    assert not _has_credentials("state.db") and not _has_credentials("sqlite:///state.db")
    # no PostgreSQL here: the journal reads as empty (the commands are what is tested)
    import contextlib

    from shiftover import cli as cli_module

    @contextlib.contextmanager
    def no_journal(state: str | None, quiet: bool = False) -> Iterator[tuple[None, dict[str, str]]]:
        yield None, {"where": str(state)}

    monkeypatch.setattr(cli_module, "_read_only_store", no_journal)
    url = "postgresql+psycopg://app:pw-Secret9@db.internal/shiftover"
    r = runbook(write_plan(here, NO_CONTACTS_PLAN), "--state", url)
    commands = [c for c in inline_commands(r.stdout, "shiftover ") if " plan.yaml" in c]
    assert len(commands) > 5, r.output
    for c in commands:
        if c.split()[1] == "validate":
            assert "--state" not in c
        else:
            assert '--state "$SHIFTOVER_STATE"' in c, c
    (rollback,) = blocks(section(r.stdout, "### With shiftover", "### By hand"))
    assert rollback.endswith('--state "$SHIFTOVER_STATE"'), rollback
    assert "pw-Secret9" not in r.stdout and "app:" not in r.stdout
    assert "`SHIFTOVER_STATE` exported with the journal's URL" in r.stdout
    assert "postgresql+psycopg://***@db.internal/shiftover" in r.stdout
    # a SQLite path stays as it is
    r = runbook("plan.yaml", "--state", "state.db")
    assert r.exit_code == 0, r.output
    assert "--state state.db" in r.stdout and "SHIFTOVER_STATE" not in r.stdout


def test_on_failure_pause_never_rolls_back_by_itself(here: Path) -> None:
    r = runbook(write_plan(here, NO_CONTACTS_PLAN + "on_failure: pause\n"))
    assert r.exit_code == 0, r.output
    checks = section(r.stdout, "## 5.", "## 6.")
    assert "is therefore paused" in checks and "acted on" not in checks
    rollback = section(r.stdout, "## 7.", "### With shiftover")
    assert "never rolls back by itself" in rollback and "stays on the new environment" in rollback
    assert "rolls back by itself when" not in rollback


def test_a_load_block_is_in_the_procedure(here: Path) -> None:
    r = runbook(write_plan(here, NO_CONTACTS_PLAN + "load: {url: 'http://u:pw-x1@shop.internal/items', "
                                "rate: 25}\n"))
    assert r.exit_code == 0, r.output
    procedure = section(r.stdout, "## 4.", "## 5.")
    assert "synthetic traffic, 25 requests per second to GET `http://***@shop.internal/items`" \
        in procedure
    assert "pw-x1" not in r.stdout


def test_same_inputs_same_document() -> None:
    loaded = parse_plan_text(LOCKSTEP_PLAN)
    at = dt.datetime(2027, 1, 15, tzinfo=dt.UTC)
    kw: dict[str, Any] = {"plan_path": "plan.yaml", "environment": None,
                          "commands": Commands("plan.yaml"), "journal": JournalFacts("x", False),
                          "generated_at": at}
    assert render_runbook(loaded, **kw) == render_runbook(loaded, **kw)


def test_timeline_is_minimum_duration_with_a_latency_gate() -> None:
    loaded = parse_plan_text(NO_CONTACTS_PLAN.replace("normal_state:\n", """normal_state:
  - name: latency
    type: compare_latency
    source: {type: prometheus, url: "http://127.0.0.1:9090", old: "a", new: "b"}
    min_intervals: 4
"""))
    plan = loaded.plan
    times = timeline(plan)
    assert times[-1].starts + times[-1].holds == pytest.approx(minimum_duration(plan))
    assert times[0].holds > plan.bake  # the warm-up below 100%
    assert times[-1].holds == plan.bake
    assert [t.approval for t in times] == [False, True, False]


def test_timeline_follows_plan_timeline_when_a_bake_is_not_a_whole_number_of_checks() -> None:
    from shiftover.engine.build import plan_timeline

    plan = parse_plan_text(NO_CONTACTS_PLAN.replace("bake: 2m", "bake: 100s\ninterval: 30s")).plan
    steps = plan_timeline(plan)
    assert [(t.starts, t.holds) for t in timeline(plan)] == [
        (s.earliest_start, s.earliest_end - s.earliest_start) for s in steps]


def test_durations() -> None:
    assert [duration_text(s) for s in (0.5, 45, 60, 90, 300, 3600, 5400, 3661)] == [
        "0.5 s", "45 s", "1 min", "1 min 30 s", "5 min", "1 h", "1 h 30 min", "1 h 1 min 1 s"]


# --- the commands work when pasted ---------------------------------------------------------


def need(tool: str, package: str, path: str | None = None) -> str:
    found = path if path and Path(path).exists() else shutil.which(tool)
    if found is None:
        pytest.fail(f"the runbook's commands need {tool}, which is not installed: "
                    f"apt-get install -y {package} (make system)", pytrace=False)
    return found


def aws_cli() -> str:
    """Debian's aws CLI v2 (``awscli``): the version an operator gets from the distribution."""
    found = need("aws", "awscli", "/usr/bin/aws")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60)
    if not version.stdout.startswith("aws-cli/2."):
        pytest.fail(f"{found} is {version.stdout.strip() or version.stderr.strip()}, not the aws "
                    "CLI v2: apt-get install -y awscli", pytrace=False)
    return found


def blocks(markdown: str) -> list[str]:
    """Every ```sh block, as the reader copies it (indented ones inside list items too)."""
    out = []
    for m in re.finditer(r"^(?P<indent> *)```sh\n(?P<body>.*?)^(?P=indent)```$", markdown, re.S | re.M):
        indent = len(m.group("indent"))
        out.append("\n".join(line[indent:] for line in m.group("body").rstrip("\n").split("\n")))
    return out


def section(markdown: str, start: str, end: str | None = None) -> str:
    text = markdown.split(start, 1)[1]
    return text.split(end, 1)[0] if end else text


def inline_commands(markdown: str, prefix: str) -> list[str]:
    return [c for c in re.findall(r"`([^`\n]+)`", markdown) if c.startswith(prefix)]


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Any]:
    """``shell(script, extra_env)``: bash runs a pasted script in a scratch directory, with
    the venv's ``shiftover`` and, when given, ``aws`` pointed at moto (a wrapper adds
    ``--endpoint-url``: Debian's aws CLI 2.9 does not read AWS_ENDPOINT_URL)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    work = tmp_path / "paste"
    work.mkdir()
    path = f"{bindir}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"

    def run(script: str, *, moto_url: str | None = None, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        if moto_url is not None:
            aws = aws_cli()
            wrapper = bindir / "aws"
            wrapper.write_text(f'#!/bin/sh\nexec {aws} --endpoint-url {moto_url} "$@"\n')
            wrapper.chmod(0o755)
        env = {**os.environ, "PATH": path}
        done = subprocess.run(["bash", "-c", script], cwd=cwd or work, env=env,
                              capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            assert "FAILED" not in done.stdout, f"{script}\n{done.stdout}\n{done.stderr}"
        return done

    yield run


def test_haproxy_rollback_by_hand_and_every_shiftover_command(
        here: Path, shell: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    from shiftover.demo.haproxy import find_haproxy, stub_stack
    from shiftover.routers.haproxy import HAProxyRouter

    if find_haproxy() is None:
        pytest.fail("these tests need HAProxy: apt-get install -y haproxy (make system)", pytrace=False)
    need("socat", "socat")
    need("curl", "curl")
    with stub_stack(tmp_path_factory.mktemp("haproxy"), new_weight=256) as stack:
        sock = stack.haproxy.socket_path
        plan = (HAPROXY_PLAN.replace("/run/haproxy/admin.sock", sock)
                .replace("http://eks-probe.internal:8081/health/payments", stack.haproxy.frontend_url)
                .replace("eks", "new").replace("ec2", "old")
                .replace("    body_contains: ok\n", ""))
        # gates that answer here: haproxy_stats and http (validate must pass)
        plan = re.sub(r"  - name: new 5xx ratio \(app\).*?(?=  - name: payments)", "", plan, flags=re.S)
        plan = re.sub(r"  - name: shop alerts.*", "", plan, flags=re.S)
        r = runbook(write_plan(here, plan), "--state", "state.db", "-o", "RUNBOOK.md")
        assert r.exit_code == 0, r.output
        text = (here / "RUNBOOK.md").read_text()
        router = HAProxyRouter(sock, "web", "old", "new")
        assert router.read() == Weights(50)

        # by hand: the writes, then the check; old was put in maintenance (weights alone
        # would leave every request 503 while `get weight` reads 256 / 0)
        router.runtime.command("set server web/old state maint")
        frontend = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                    stack.haproxy.frontend_url]
        write, check = blocks(section(text, "### By hand"))[:2]
        assert "set server web/old state ready" in write.splitlines()[0]
        shell(write)
        assert router.read() == Weights(0)
        assert router.runtime.servers_state("web")["old"].admin != "maint"
        lines = [line for line in shell(check).stdout.splitlines() if line.strip()]
        assert lines[0].startswith("256 (initial") and lines[1].startswith("0 (initial")
        status = dict(line.split(" ", 1) for line in lines[2:])
        assert set(status) == {"old", "new"} and status["old"] in ("UP", "no check"), lines
        assert "MAINT" not in status["old"]
        for _ in range(5):  # every request lands on old, and is served
            assert subprocess.run(frontend, capture_output=True, text=True,
                                  timeout=30).stdout == "200"
        # the maintenance command of the notes
        (maint,) = [c for c in inline_commands(text, "echo ") if "state maint" in c]
        shell(maint)
        assert router.runtime.servers_state("web")["new"].admin == "maint"
        router.runtime.command("set server web/new state ready")

        # where to look: the stats row and the probe
        stats, probe = blocks(section(text, "### Where to look", "## 6."))
        out = shell(stats).stdout
        assert out.startswith("# pxname,svname,") and "\nweb,new," in out
        assert shell(probe).stdout.strip() == "200"

        # shiftover's own commands, as printed (run and runbook excepted: no cutover here)
        router.apply(Weights(50))
        (rollback,) = blocks(section(text, "### With shiftover", "### By hand"))
        shell(rollback, cwd=here)
        assert router.read() == Weights(0)
        commands = inline_commands(text, "shiftover ")
        verbs = {c.split()[1] for c in commands}
        assert {"validate", "status", "history", "pause", "resume", "approve", "rollback",
                "run", "runbook"} <= verbs
        for c in commands:
            if c.split()[1] in ("run", "runbook"):
                continue
            done = shell(c, cwd=here, check=False)
            assert done.returncode == 0, f"{c}\n{done.stdout}\n{done.stderr}"
        with open_store(f"sqlite:///{here / 'state.db'}") as store:
            kinds = [e.kind for e in store.events(service="shop")]
        assert ev.APPROVED in kinds and ev.PAUSED in kinds and ev.RESUMED in kinds


def test_haproxy_over_tcp() -> None:
    assert haproxy_command("127.0.0.1:9999", "show stat") == \
        "echo 'show stat' | socat stdio tcp-connect:127.0.0.1:9999"
    assert haproxy_command("tcp://[::1]:9999", "x").endswith("'tcp-connect:[::1]:9999'")
    assert haproxy_command("/run/h a.sock", "x").endswith("'unix-connect:/run/h a.sock'")


def _plan_for(routers: list[dict[str, Any]], gates: list[dict[str, Any]] | None = None) -> str:
    plan: dict[str, Any] = {
        "service": "shop", "steps": [10, 50, 100], "bake": "1m",
        "normal_state": gates or [{"name": "e", "type": "prometheus", "url": "http://127.0.0.1:1",
                                   "query": "x", "max": 0.01}]}
    if len(routers) == 1:
        plan["router"] = routers[0]
    else:
        plan["routers"] = routers
    return json.dumps(plan)


def _route53_spec(setup: Any) -> dict[str, Any]:
    return {"type": "route53", "hosted_zone_id": setup.zone_id, "record_name": setup.record_name,
            "record_type": setup.record_type, "old": setup.old, "new": setup.new}


@pytest.mark.parametrize(("record_type", "name"), [
    ("CNAME", "www.example.com."), ("A", "www.example.com."), ("CNAME", "*.example.com.")])
def test_route53_rollback_by_hand_on_moto(aws: Any, here: Path, shell: Any, record_type: str,
                                          name: str) -> None:
    from routers.route53_setup import make_route53, records_at

    need("jq", "jq")
    setup = make_route53(record_type=record_type, record_name=name, ttl=300)
    setup.router.apply(Weights(50))
    before = records_at(setup.client, setup.zone_id, setup.record_name)
    r = runbook(write_plan(here, _plan_for([_route53_spec(setup)])))
    assert r.exit_code == 0, r.output
    text = r.stdout

    (ttl,) = blocks(section(text, "DNS TTL lowered", "## 4."))
    out = shell(ttl, moto_url=aws.url).stdout
    expected_ttl = "300" if record_type == "CNAME" else "None"  # alias records have no TTL
    assert sorted(out.split()) == sorted(["ec2", expected_ttl, "eks", expected_ttl])

    write, check = blocks(section(text, "### By hand"))
    out = shell(write, moto_url=aws.url).stdout
    assert "INSYNC" in out
    assert setup.router.read() == Weights(0)
    after = records_at(setup.client, setup.zone_id, setup.record_name)
    assert after["ec2"] == {**before["ec2"], "Weight": 255}
    assert after["eks"] == {**before["eks"], "Weight": 0}  # TTL, alias, health check kept
    assert sorted(shell(check, moto_url=aws.url).stdout.split()) == ["0", "255", "ec2", "eks"]


def test_route53_rollback_refuses_when_a_record_is_missing(aws: Any, here: Path, shell: Any) -> None:
    from routers.route53_setup import make_route53

    need("jq", "jq")
    setup = make_route53()
    setup.router.apply(Weights(50))
    spec = {**_route53_spec(setup), "new": "gke"}  # no such set identifier
    r = runbook(write_plan(here, _plan_for([spec])))
    write = blocks(section(r.stdout, "### By hand"))[0]
    done = shell(write, moto_url=aws.url, check=False)
    assert "expected the two records ec2 and gke, found 1" in done.stderr
    assert "FAILED" in done.stdout
    assert setup.router.read() == Weights(50)  # nothing was written


@pytest.mark.parametrize("rule", [False, True])
def test_alb_rollback_by_hand_on_moto(aws: Any, here: Path, shell: Any, rule: bool) -> None:
    from routers.alb_setup import STICKY_SECONDS, make_alb

    need("jq", "jq")
    setup = make_alb(rule=rule)
    setup.router.apply(Weights(50))
    conditions = (setup.client.describe_rules(RuleArns=[setup.rule_arn])["Rules"][0]["Conditions"]
                  if rule else None)
    r = runbook(write_plan(here, _plan_for([setup.spec()])))
    assert r.exit_code == 0, r.output
    write, check = blocks(section(r.stdout, "### By hand"))
    out = shell(write, moto_url=aws.url).stdout
    assert "999" in out
    assert setup.router.read() == Weights(0)
    (forward,) = [a for a in setup.actions() if a["Type"] == "forward"]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in forward["ForwardConfig"]["TargetGroups"]}
    assert weights == {setup.old_arn: 999, setup.new_arn: 0}
    sticky = forward["ForwardConfig"]["TargetGroupStickinessConfig"]
    assert sticky == {"Enabled": True, "DurationSeconds": STICKY_SECONDS}
    if rule:
        assert setup.client.describe_rules(RuleArns=[setup.rule_arn])["Rules"][0]["Conditions"] == conditions
    out = shell(check, moto_url=aws.url).stdout
    assert setup.new_arn in out and "999" in out


def test_lockstep_rollback_by_hand_in_the_engines_order(aws: Any, here: Path, shell: Any) -> None:
    from routers.alb_setup import make_alb
    from routers.route53_setup import make_route53

    need("jq", "jq")
    r53 = make_route53(record_type="A")
    alb = make_alb()
    for router in (r53.router, alb.router):
        router.apply(Weights(50))
    import boto3

    cloudwatch = boto3.client("cloudwatch")
    for name in ("shop-batch-failed", "shop-queue-age"):
        cloudwatch.put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="Shop",
                                    Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                    ComparisonOperator="GreaterThanThreshold")
    gates = [{"name": "shop alarms", "type": "cloudwatch_alarms",
              "alarm_names": ["shop-batch-failed", "shop-queue-age"]}]
    r = runbook(write_plan(here, _plan_for([_route53_spec(r53), alb.spec()], gates)))
    assert r.exit_code == 0, r.output
    text = r.stdout
    by_hand = section(text, "### By hand")
    assert by_hand.index("#### 1. Route53") < by_hand.index("#### 2. ALB") < by_hand.index(
        "#### 3. Wait for Route53")
    write_r53, check_r53, write_alb, check_alb, wait = blocks(by_hand)
    # one shell, as an operator pastes them one after another
    out = shell("\n".join([write_r53, write_alb, wait]), moto_url=aws.url).stdout
    assert "(submitted)" in out and "INSYNC" in out
    assert r53.router.read() == Weights(0) and alb.router.read() == Weights(0)
    shell(check_r53, moto_url=aws.url)
    shell(check_alb, moto_url=aws.url)

    (alarms,) = blocks(section(text, "### Where to look", "## 6."))
    out = shell(alarms, moto_url=aws.url).stdout
    assert "shop-batch-failed" in out and "shop-queue-age" in out

    # and shiftover's own rollback, as printed (boto3 reaches moto through AWS_ENDPOINT_URL)
    for router in (r53.router, alb.router):
        router.apply(Weights(50))
    (rollback,) = blocks(section(text, "### With shiftover", "### By hand"))
    shell(rollback, cwd=here)
    assert r53.router.read() == Weights(0) and alb.router.read() == Weights(0)


# --- hooks ----------------------------------------------------------------------------

HOOKS_BLOCK = """\
hooks:
  - name: workers
    at: 10
    run: [./bin/workers, scale, --new, "4", --old, "0"]
    undo: {run: [./bin/workers, scale, --new, "0", --old, "4"]}
    idempotent: true
  - name: batch
    at: 50
    run: ./bin/batch move --to new
    undo: {run: ./bin/batch move --to old, env: {BATCH_NOTE: rolled back}}
  - name: smoke
    at: every_step
    run: [./bin/smoke]
    timeout: 2m
    retries: 1
  - name: announce
    at: promoted
    webhook:
      url: https://hooks.example.com/cutover
      headers: {Authorization: "Bearer ${ANNOUNCE_TOKEN}"}
      body: {text: shop is on EKS}
"""


def test_golden_hooks(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNOUNCE_TOKEN", "tok-s3cret-1234")
    r = runbook(write_plan(here, HAPROXY_PLAN + HOOKS_BLOCK), "--state", "state.db")
    assert r.exit_code == 0, r.output
    assert "tok-s3cret-1234" not in r.stdout
    check_golden("hooks.md", r.stdout)


def test_the_hand_undo_commands_run_as_pasted(here: Path) -> None:
    """The rollback section's "Then undo the hooks" block, pasted into a shell in the
    plan's directory, runs every undo, last hook first."""
    bin_dir = here / "bin"
    bin_dir.mkdir()
    for name in ("workers", "batch"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $* ${{BATCH_NOTE:-}}" >> "$(dirname "$0")/../undo.log"\n')
        script.chmod(0o755)
    r = runbook(write_plan(here, HAPROXY_PLAN + HOOKS_BLOCK.split("  - name: announce")[0]),
                "--state", "state.db")
    assert r.exit_code == 0, r.output
    section = r.stdout.split("#### Then undo the hooks")[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=here, check=True, timeout=30)
    assert (here / "undo.log").read_text().splitlines() == [
        "batch move --to old rolled back", "workers scale --new 0 --old 4 "]
