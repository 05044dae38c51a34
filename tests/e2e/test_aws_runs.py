"""Real `shiftover run` processes against the local AWS double (moto, real HTTP) and
the Datadog double: Route53 weighted records, an ALB listener, and both in lockstep.

What is read back is what AWS holds (boto3 against moto), never only an exit code:
a promoted run leaves every member at 100% (Route53 old 0 / new 255, ALB 0 / 999),
a rolled-back one every member at 0% (new 0, old > 0), and a run that dies between
a Route53 change and INSYNC leaves records the journal never confirmed, which the
next run must bring back to the last confirmed split before it climbs again.

Every run is a child process (``python -m shiftover.cli``) that inherits the
``aws`` fixture's environment (boto3 pointed at moto); the Datadog gates find the
double through ``DD_HOST``. Its ``--json`` lines are read by a thread, so a test
waits on them with a deadline instead of blocking on a pipe, and every child is
killed in ``finally``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alb_setup import ALBSetup, make_alb
from cloudwatch_setup import create_alarm, set_alarm
from route53_setup import (
    NEW_LB,
    OLD_LB,
    Route53Setup,
    make_route53,
    put,
    records_at,
    route53_client,
    weighted_record,
    weights_at,
)

from shiftover.demo.datadog import DatadogDouble
from shiftover.engine import events as ev
from shiftover.store import Event, open_store

from .aws_plans import (
    ALARM,
    LEASE_TTL,
    MONITOR_TAGS,
    alarms_gate,
    alb_entry,
    monitors_gate,
    plan,
    route53_entry,
    write,
)
from .aws_proxy import PendingProxy

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 60.0  # a whole run: three 1 s bakes and a few checks take ~5 s
CLI_TIMEOUT = 30.0  # validate, rollback, a refused run


def shiftover(*args: str) -> list[str]:
    return [sys.executable, "-m", "shiftover.cli", *args]


# --- a run as a child process ------------------------------------------------------


class Run:
    """``shiftover run PLAN --json`` in a child; its stdout parsed line by line."""

    def __init__(self, plan_file: Path, state: str, stderr: Path, *,
                 env: dict[str, str] | None = None) -> None:
        self.stderr_path = stderr
        self._stderr = stderr.open("w")
        self.proc = subprocess.Popen(
            shiftover("run", str(plan_file), "--json", "--state", state, "--lease-ttl", LEASE_TTL),
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        self.lines: list[dict[str, Any]] = []
        self.closed = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"raw": raw}
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            shown = "\n".join(json.dumps(x) for x in self.lines[-30:])
        return f"{shown}\nstderr: {self.stderr_path.read_text()[-3000:]}"

    def wait_for(self, what: str, pred: Callable[[dict[str, Any]], bool],
                 timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The first line that satisfies ``pred``; fails when the run ends or time is up first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if pred(line):
                        return line
                seen = len(self.lines)
                if self.closed:
                    pytest.fail(f"the run ended before {what}:\n{self.output()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no {what} within {timeout:g}s:\n{self.output()}")
                self._cond.wait(min(remaining, 0.5))

    def confirmed(self, percent: float, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        return self.wait_for(f"weight_confirmed {percent:g}%", lambda x: x.get("kind") == ev.WEIGHT_CONFIRMED
                             and x["data"]["percent"] == percent, timeout)

    def finish(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not end within {timeout:g}s:\n{self.output()}")
        self._reader.join(10)
        return rc

    def summary(self) -> dict[str, Any]:
        found = [x for x in self.lines if x.get("summary")]
        assert found, self.output()
        return found[-1]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [x for x in self.lines if "kind" in x and (kind is None or x["kind"] == kind)]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        self._stderr.close()


@dataclass
class Children:
    """Every child a test starts, killed when it ends (pass or fail)."""

    tmp: Path
    state: str
    started: list[Run]

    def run(self, plan_file: Path, *, env: dict[str, str] | None = None) -> Run:
        r = Run(plan_file, self.state, self.tmp / f"run{len(self.started)}.stderr", env=env)
        self.started.append(r)
        return r


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    kids = Children(tmp_path, f"sqlite:///{tmp_path}/state.db", [])
    try:
        yield kids
    finally:
        for r in kids.started:
            r.kill()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(shiftover(*args), capture_output=True, text=True, timeout=CLI_TIMEOUT, env=env)


def cli_together(*commands: tuple[list[str], dict[str, str] | None]) -> list[subprocess.CompletedProcess[str]]:
    """Several read-only commands at once (each ``(args, env)``): the children start in parallel."""
    procs = [subprocess.Popen(shiftover(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for args, env in commands]
    done = []
    try:
        for (args, _), proc in zip(commands, procs, strict=True):
            out, err = proc.communicate(timeout=CLI_TIMEOUT)
            done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return done


def journal(state: str, service: str) -> list[Event]:
    with open_store(state) as store:
        return store.events(service=service)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


# --- the AWS side --------------------------------------------------------------------


@pytest.fixture
def datadog(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatadogDouble]:
    """The Datadog double, its DD_* variables exported to this process and its children."""
    with DatadogDouble() as dd:
        for name, value in dd.env().items():
            monkeypatch.setenv(name, value)
        yield dd


def without_weight(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = copy.deepcopy(records)
    for rec in out.values():
        rec.pop("Weight", None)
    return out


def forward_config(alb: ALBSetup) -> dict[str, Any]:
    """The driven forward action's config without the weights (what must be kept)."""
    action = next(a for a in alb.actions() if a["Type"] == "forward")
    config = copy.deepcopy(action["ForwardConfig"])
    config["TargetGroups"] = sorted(g["TargetGroupArn"] for g in config["TargetGroups"])
    return dict(config)


@dataclass
class Target:
    """One cutover set up in moto (and the Datadog double): its plan and how to read
    back every member's (old, new) weights."""

    service: str
    plan: dict[str, Any]
    members: dict[str, Callable[[], tuple[int, int]]]  # name -> (old, new) as AWS holds it
    full: dict[str, tuple[int, int]]  # name -> the (old, new) of 100% on new
    break_gate: Callable[[], None]  # make a gate FAIL
    route53: Route53Setup | None = None
    alb: ALBSetup | None = None

    def weights(self) -> dict[str, tuple[int, int]]:
        return {name: read() for name, read in self.members.items()}


def r53_weights(r53: Route53Setup) -> Callable[[], tuple[int, int]]:
    return lambda: weights_at(r53.client, r53.zone_id, r53.record_name, r53.old, r53.new)


def alb_weights(alb: ALBSetup) -> Callable[[], tuple[int, int]]:
    def read() -> tuple[int, int]:
        w = alb.weights()
        return w.get(alb.old_arn, 0), w.get(alb.new_arn, 0)

    return read


def setup_target(kind: str, dd: DatadogDouble) -> Target:
    """route53 (a cloudwatch_alarms gate), alb (a datadog_monitors gate) or lockstep
    (both routers, both gates; the Datadog monitor is the one ``break_gate`` fails)."""
    members: dict[str, Callable[[], tuple[int, int]]] = {}
    full: dict[str, tuple[int, int]] = {}
    entries: list[dict[str, Any]] = []
    gates: list[dict[str, Any]] = []
    r53 = alb = None
    breaks: list[Callable[[], None]] = []
    if kind in ("route53", "lockstep"):
        # alias A records to the two environments' load balancers, as in the migration
        r53 = make_route53(record_type="A")
        entries.append(route53_entry(r53.zone_id, r53.record_name, record_type="A"))
        members["route53"], full["route53"] = r53_weights(r53), (0, 255)
        create_alarm(ALARM, "OK")
        create_alarm("web-latency", "OK")
        create_alarm("billing-5xx", "ALARM")  # not the prefix's: never read by the gate
        gates.append(alarms_gate())
        breaks.append(lambda: set_alarm(ALARM, "ALARM", reason="5xx above 10 (set by the test)"))
    if kind in ("alb", "lockstep"):
        alb = make_alb()
        entries.append(alb_entry(alb.spec()))
        members["alb"], full["alb"] = alb_weights(alb), (0, 999)
        monitor = dd.add_monitor("accounting eks 5xx", "OK", tags=MONITOR_TAGS)
        dd.add_monitor("billing errors", "Alert", tags=["service:billing", "env:production"])
        gates.append(monitors_gate())
        breaks.append(lambda: dd.set_monitor_state(monitor, "Alert"))
    service = f"aws-{kind}"
    return Target(service, plan(service, entries, gates), members, full, breaks[-1], r53, alb)


# --- 1 and 2. full runs: promoted, or rolled back by a failing gate --------------------


@pytest.mark.parametrize("kind", ["route53", "alb", "lockstep"])
def test_a_healthy_run_is_promoted_with_every_member_at_100(
        kind: str, aws: Any, datadog: DatadogDouble, children: Children, tmp_path: Path) -> None:
    t = setup_target(kind, datadog)
    assert all(new == 0 and old > 0 for old, new in t.weights().values())  # 0% on new
    records = without_weight(records_at(t.route53.client, t.route53.zone_id, t.route53.record_name)) \
        if t.route53 else None
    config = forward_config(t.alb) if t.alb else None

    run = children.run(write(tmp_path / "plan.yaml", t.plan))
    rc = run.finish()
    assert rc == 0, run.output()
    assert run.summary()["outcome"] == "promoted" and run.summary()["final_weight"] == 100

    # AWS holds 100% on new for every member: exactly the pair the router writes
    assert t.weights() == t.full
    # and nothing but the weights changed (alias targets, TTLs, health checks, stickiness)
    if t.route53:
        assert without_weight(records_at(t.route53.client, t.route53.zone_id,
                                         t.route53.record_name)) == records
    if t.alb:
        assert forward_config(t.alb) == config

    events = journal(children.state, t.service)
    assert kinds(events)[-2:] == [ev.PROMOTED, ev.RUN_STOPPED]
    assert [e.data["percent"] for e in events if e.kind == ev.WEIGHT_CONFIRMED] == [10, 50, 100]
    assert all(e.data.get("verified") is True for e in events if e.kind == ev.WEIGHT_CONFIRMED)
    checks = [e for e in events if e.kind == ev.CHECK]
    assert checks and all(c.data["verdict"] == "pass" for c in checks)
    if kind == "lockstep":  # each member's intent and result is in the journal
        for e in events:
            if e.kind == ev.WEIGHT_INTENDED:
                assert [m.split()[0] for m in e.data["members"]] == ["route53", "alb"]
            if e.kind == ev.WEIGHT_CONFIRMED:
                assert [m["ok"] for m in e.data["members"]] == [True, True], e.data


@pytest.mark.parametrize("kind", ["route53", "alb", "lockstep"])
def test_a_failing_gate_rolls_every_member_back_to_0(
        kind: str, aws: Any, datadog: DatadogDouble, children: Children, tmp_path: Path) -> None:
    t = setup_target(kind, datadog)
    run = children.run(write(tmp_path / "plan.yaml", t.plan))
    run.confirmed(10)
    # traffic is on new: every member shows the first step in AWS (or the second, if
    # the 1 s bake ran out before this line was read)
    steps = [{"route53": (252, 28), "alb": (999, 111)}, {"route53": (255, 255), "alb": (999, 999)}]
    assert t.weights() in [{name: step[name] for name in t.members} for step in steps]
    t.break_gate()
    rc = run.finish()
    assert rc == 3, run.output()
    assert run.summary()["outcome"] == "rolled_back" and run.summary()["final_weight"] == 0

    # every member reads back 0% on new: new 0, old above 0 (never both 0)
    for name, (old, new) in t.weights().items():
        assert new == 0 and old > 0, (name, old, new)
    assert t.weights() == {name: (w[1], w[0]) for name, w in t.full.items()}

    events = journal(children.state, t.service)
    started = [e for e in events if e.kind == ev.ROLLBACK_STARTED]
    assert len(started) == 1
    failed_gate = "accounting monitors" if t.alb else "web alarms"
    assert [g["gate"] for g in started[0].data["gates"]] == [failed_gate]
    assert kinds(events)[-2:] == [ev.ROLLED_BACK, ev.RUN_STOPPED]
    assert events[-2].data["confirmed_by"] == "router"
    assert ev.PROMOTED not in kinds(events)
    # it never went above the step that was live when the gate broke
    assert max(e.data["percent"] for e in events if e.kind == ev.WEIGHT_INTENDED) <= 50


# --- 3. SIGKILL between a Route53 change and INSYNC, then a run that reconciles ------------


def test_sigkill_while_a_route53_change_is_pending_then_a_rerun_reconciles(
        aws: Any, children: Children, tmp_path: Path) -> None:
    r53 = make_route53()
    create_alarm(ALARM, "OK")
    service = "aws-pending"
    plan_file = write(tmp_path / "plan.yaml", plan(
        service, [route53_entry(r53.zone_id, r53.record_name)], [alarms_gate()]))
    read = r53_weights(r53)
    with PendingProxy(aws.url) as proxy:
        # Route53 (only) through the proxy; CloudWatch straight to moto
        # (botocore's variable is ..._ROUTE_53, from the service id "Route 53")
        env = {**os.environ, "AWS_ENDPOINT_URL_ROUTE_53": proxy.url}
        # the first change (the 10% step) is INSYNC at once, the next one (50%) PENDING
        proxy.hold_changes_after(1)
        mark = proxy.mark()
        first = children.run(plan_file, env=env)
        first.confirmed(10)
        alive = lambda: first.proc.poll() is None  # noqa: E731
        assert proxy.wait("POST", "/rrset", at_least=2, since=mark, timeout=RUN_TIMEOUT,
                          alive=alive), first.output()
        # (a change INSYNC at once is never polled: every GetChange is the held one's)
        assert proxy.wait("GET", "/change/", since=mark, timeout=RUN_TIMEOUT, alive=alive), \
            first.output()
        # the live progress: the wait for INSYNC is shown while it lasts
        progress = first.wait_for("a progress line", lambda x: x.get("progress") is True)
        assert progress["router"].startswith("waiting for Route53 change "), progress
        assert "INSYNC" in progress["router"]
        first.proc.send_signal(signal.SIGKILL)
        first.finish(10)
        assert first.proc.returncode == -signal.SIGKILL
        assert not [x for x in first.lines if x.get("summary")]

        # Route53 holds the 50% step, which the journal never confirmed
        assert read() == (255, 255)
        events = journal(children.state, service)
        assert [e.data["percent"] for e in events if e.kind == ev.WEIGHT_INTENDED] == [10, 50]
        assert [e.data["percent"] for e in events if e.kind == ev.WEIGHT_CONFIRMED] == [10]
        assert not set(kinds(events)) & {ev.RUN_STOPPED, ev.PROMOTED, ev.ROLLED_BACK}

        # Route53 finishes propagating; the dead run's lease expires; a new run
        proxy.release()
        time.sleep(float(LEASE_TTL.rstrip("s")) + 0.5)
        mark = proxy.mark()
        second = children.run(plan_file, env=env)
        rc = second.finish()
        assert rc == 0, second.output()
        assert second.summary()["outcome"] == "promoted"
        assert proxy.count("POST", "/rrset", since=mark) == 3  # back to 10%, then 50%, 100%

    assert read() == (0, 255)
    evs = second.events()
    assert evs[0]["kind"] == ev.RUN_STARTED and evs[0]["data"]["resumed"] is True
    intents = [x for x in evs if x["kind"] == ev.WEIGHT_INTENDED]
    # first back to the last confirmed split (10%: rule 4, never above it), then up again
    assert [x["data"]["percent"] for x in intents] == [10, 50, 100]
    # it saw the unconfirmed 50% before anything else, and wrote 10% to reconcile
    first_check = next(x for x in evs if x["kind"] == ev.CHECK)
    assert first_check["data"]["router"]["percent"] == 50 and first_check["id"] < intents[0]["id"]
    assert intents[0]["data"]["reason"] == "reconciling"
    back = next(x for x in evs if x["kind"] == ev.WEIGHT_CONFIRMED)
    assert back["data"]["percent"] == 10 and back["id"] > intents[0]["id"]
    # 10% is baked again, a whole bake with passing checks, before the 50% step
    up = intents[1]
    assert up["at"] - back["at"] >= 1.0
    assert any(x["kind"] == ev.CHECK and back["id"] < x["id"] < up["id"] for x in evs)


# --- 4. what AWS refuses and moto accepts: exit 2, a clear message, nothing changed ----------


def aws_state() -> dict[str, Any]:
    """Every record of every hosted zone and every listener's and rule's actions in moto:
    compared before and after, it shows that nothing at all was written."""
    import boto3

    r53 = route53_client()
    elb = boto3.client("elbv2")
    state: dict[str, Any] = {}
    for zone in r53.list_hosted_zones()["HostedZones"]:
        state[zone["Id"]] = r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        for listener in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
            state[listener["ListenerArn"]] = listener["DefaultActions"]
            for rule in elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]:
                state[rule["RuleArn"]] = rule["Actions"]
    return state


def zone_with(*records: dict[str, Any]) -> str:
    """A new hosted zone example.com holding these records as they are (moto checks nothing)."""
    client = route53_client()
    zone = client.create_hosted_zone(Name="example.com.", CallerReference=os.urandom(8).hex())
    zone_id: str = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    put(client, zone_id, *records)
    return zone_id


WWW = "www.example.com."


def bad_route53(case: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The routers of a plan whose Route53 target AWS would refuse, and what the error says."""
    if case == "record not found":  # a set identifier mistyped in the plan
        r53 = make_route53()
        return [route53_entry(r53.zone_id, WWW, new="eks-blue")], [
            "Route53 has no CNAME record www.example.com. with set identifier 'eks-blue' (new)",
            "set identifiers at that name: ec2 (CNAME), eks (CNAME)"]
    if case == "both weights 0":  # Route53 would split equally, not 0%
        r53 = make_route53(old_weight=0, new_weight=0)
        return [route53_entry(r53.zone_id, WWW)], [
            "has weight 0 on both 'ec2' and 'eks'", "splits traffic EQUALLY"]
    if case == "types differ":  # old is an A alias, new an AAAA alias: both may exist at one name
        zone = zone_with(
            weighted_record(WWW, "A", "ec2", 255, alias=True, target=OLD_LB, evaluate=True),
            weighted_record(WWW, "AAAA", "eks", 0, alias=True, target=NEW_LB))
        return [route53_entry(zone, WWW, record_type="A")], [
            "set 'eks' (new) in zone", "is AAAA, not A", "the two records' types differ"]
    if case == "weight out of range":  # AWS refuses 300, moto stores it
        r53 = make_route53(old_weight=300)
        return [route53_entry(r53.zone_id, WWW)], [
            "set 'ec2' in zone", "has weight 300: Route53 weights are 0-255"]
    if case == "missing set identifier":  # a weighted record without one: AWS refuses it
        zone = zone_with(
            weighted_record(WWW, "CNAME", "ec2", 255, alias=False, target="old-web.example.net"),
            {"Name": WWW, "Type": "CNAME", "Weight": 0, "TTL": 60,
             "ResourceRecords": [{"Value": "new-web.example.net"}]})
        return [route53_entry(zone, WWW)], [
            "no CNAME record www.example.com. with set identifier 'eks' (new)", "(none) (CNAME)"]
    raise AssertionError(case)


def bad_alb(case: str) -> tuple[list[dict[str, Any]], list[str]]:
    alb = make_alb()
    if case == "target group not found":
        missing = alb.new_arn.rsplit("/", 1)[0] + "/00000000deadbeef"
        return [alb_entry({**alb.spec(), "new": missing})], [
            f"target group {missing} (router.new) does not exist"]
    if case == "target group of another load balancer":
        other = make_alb(name="intranet", cidr="10.1.0.0/16")
        return [alb_entry({**alb.spec(), "new": other.new_arn})], [
            "target group intranet-eks (router.new) belongs to load balancer loadbalancer/app/intranet/",
            "an ALB target group serves one load balancer"]
    raise AssertionError(case)


def bad_lockstep(case: str) -> tuple[list[dict[str, Any]], list[str]]:
    if case == "the same target twice":
        alb = make_alb()
        return [alb_entry(alb.spec()), alb_entry(alb.spec())], [
            "routers[1] drives the same target as routers[0]", "list each router once"]
    if case == "a member's record not found":
        alb = make_alb()
        r53 = make_route53()
        return [route53_entry(r53.zone_id, WWW, new="eks-blue"), alb_entry(alb.spec())], [
            "routers[0]", "with set identifier 'eks-blue' (new)"]
    raise AssertionError(case)


BAD_TARGETS: list[tuple[Callable[[str], tuple[list[dict[str, Any]], list[str]]], str]] = [
    (bad_route53, "record not found"),
    (bad_route53, "both weights 0"),
    (bad_route53, "types differ"),
    (bad_route53, "weight out of range"),
    (bad_route53, "missing set identifier"),
    (bad_alb, "target group not found"),
    (bad_alb, "target group of another load balancer"),
    (bad_lockstep, "the same target twice"),
    (bad_lockstep, "a member's record not found"),
]


def bad_plan(make: Callable[[str], tuple[list[dict[str, Any]], list[str]]], case: str,
             tmp_path: Path) -> tuple[Path, list[str]]:
    routers, says = make(case)
    create_alarm(ALARM, "OK")
    return write(tmp_path / "plan.yaml", plan("aws-bad", routers, [alarms_gate()])), says


@pytest.mark.parametrize(("make", "case"), BAD_TARGETS, ids=[c for _, c in BAD_TARGETS])
def test_validate_says_what_aws_would_refuse_exit_2(
        make: Callable[[str], tuple[list[dict[str, Any]], list[str]]], case: str,
        aws: Any, tmp_path: Path) -> None:
    plan_file, says = bad_plan(make, case, tmp_path)
    before = aws_state()
    # --json for the exact message, and the same for a person (COLUMNS: no line is cut)
    checked, shown = cli_together((["validate", str(plan_file), "--json"], None),
                                  (["validate", str(plan_file)], {**os.environ, "COLUMNS": "1000"}))
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr
    if checked.stdout.strip():  # the preflight ran: the router's error in the report
        report = json.loads(checked.stdout)
        assert report["valid"] is False and report["weights"] is None
        text = str(report["router_error"])
    else:  # refused as a plan error, at its file:line:col (the same target twice)
        assert checked.stderr.startswith("error: ") and re.search(r"plan\.yaml:\d+:\d+: ",
                                                                   checked.stderr)
        text = checked.stderr
    for fragment in says:
        assert fragment in text, text
    assert shown.returncode == 2
    assert says[0] in shown.stdout + shown.stderr, shown.stdout + shown.stderr
    assert aws_state() == before


@pytest.mark.parametrize(("make", "case"), [pytest.param(make, case, id=case)
                                           for make, case in BAD_TARGETS])
def test_run_refuses_what_aws_would_refuse_before_the_lease_exit_2(
        make: Callable[[str], tuple[list[dict[str, Any]], list[str]]], case: str,
        aws: Any, tmp_path: Path) -> None:
    plan_file, says = bad_plan(make, case, tmp_path)
    state = f"sqlite:///{tmp_path}/state.db"
    before = aws_state()
    # --max-duration: a run that does not refuse stops by itself (and fails this test)
    refused = cli("run", str(plan_file), "--json", "--state", state, "--max-duration", "5s")
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: "), refused.stderr
    for fragment in says:
        assert fragment in refused.stderr, refused.stderr
    if case != "the same target twice":  # (that one is a plan error at its line)
        assert "hint: " in refused.stderr
        assert "(nothing was changed)" in refused.stderr, refused.stderr
    assert aws_state() == before
    # refused before it took the lease: nothing in the journal
    if (tmp_path / "state.db").exists():
        assert journal(state, "aws-bad") == []


def test_validate_keeps_the_hint_command_on_one_line_in_a_log(aws: Any, tmp_path: Path) -> None:
    plan_file, _ = bad_plan(bad_route53, "record not found", tmp_path)
    shown = cli("validate", str(plan_file), env={**os.environ, "COLUMNS": "80"})
    assert shown.returncode == 2
    command = next(line for line in shown.stdout.splitlines() if "hint: " in line)
    assert "aws route53 list-resource-record-sets --hosted-zone-id " in command, shown.stdout
    assert command.rstrip().endswith("\"ResourceRecordSets[?Name=='www.example.com.']\" --region us-east-1"), shown.stdout


# --- validate --offline: a plan error points at the file, line and column -------------------

OFFLINE_PLAN = """\
service: accounting-web
routers:
  - type: route53
    hosted_zone_id: Z0123456789ABCDEFGHIJ
    record_name: www.example.com
    record_type: CNAME
    old: ec2
    new: {new}
  - type: alb
    listener_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2
    old: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-ec2/73e2d6bc24d8a067
    new: {tg}
steps: [10, 50, 100]
bake: 1s
interval: 300ms
normal_state:
  - name: web alarms
    type: cloudwatch_alarms
    alarm_name_prefix: web-
"""
GOOD_TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-eks/0a1b2c3d4e5f6a7b"


@pytest.mark.parametrize(("new", "tg", "says"), [
    ("ec2", GOOD_TG, [":8:10: old and new are the same set identifier 'ec2'", "(field: routers[0].new)"]),
    ("''", GOOD_TG, [":8:10: routers[0].new must not be empty", "hint: for example new: eks"]),
    ("eks", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-ec2/73e2d6bc24d8a067",
     [":12:10: old and new are the same target group", "(field: routers[1].new)"]),
], ids=["route53 old == new", "route53 empty set identifier", "alb old == new"])
def test_validate_offline_points_at_the_field(new: str, tg: str, says: list[str], tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(OFFLINE_PLAN.format(new="eks", tg=GOOD_TG))
    bad = tmp_path / "bad.yaml"
    bad.write_text(OFFLINE_PLAN.format(new=new, tg=tg))
    ok, refused = cli_together((["validate", "--offline", str(good)], None),
                               (["validate", "--offline", str(bad)], None))
    assert ok.returncode == 0, ok.stdout + ok.stderr  # the same plan, right, is valid offline
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith(f"error: {bad}"), refused.stderr
    assert f"{bad}{says[0]}" in refused.stderr, refused.stderr  # file:line:col: what
    assert all(fragment in refused.stderr for fragment in says[1:]), refused.stderr
    assert "Traceback" not in refused.stderr


# --- 5. an operator's rollback of a lockstep run ------------------------------------------------


def test_operator_rollback_mid_run_sends_every_member_to_0(
        aws: Any, datadog: DatadogDouble, children: Children, tmp_path: Path) -> None:
    t = setup_target("lockstep", datadog)
    t.plan["approvals"] = [100]  # the run waits at 50%, in the middle of the cutover
    plan_file = write(tmp_path / "plan.yaml", t.plan)
    run = children.run(plan_file)
    run.wait_for("approval_waiting for 100%", lambda x: x.get("kind") == ev.APPROVAL_WAITING)
    assert t.weights() == {"route53": (255, 255), "alb": (999, 999)}

    operator = cli("rollback", str(plan_file), "--state", children.state, "--json",
                   "--reason", "p99 latency up on eks (seen by the on-call)")
    assert operator.returncode == 0, operator.stdout + operator.stderr
    answer = json.loads(operator.stdout.splitlines()[-1])
    assert answer["confirmed"] is True, answer

    rc = run.finish()
    assert rc == 3, run.output()
    assert run.summary()["outcome"] == "rolled_back"
    # every member reads back 0% on new, the exact pair each router writes for 0%
    assert t.weights() == {"route53": (255, 0), "alb": (999, 0)}

    events = journal(children.state, t.service)
    requested = [e for e in events if e.kind == ev.ROLLBACK_REQUESTED]
    assert len(requested) == 1 and requested[0].actor
    assert requested[0].data["reason"] == "p99 latency up on eks (seen by the on-call)"
    assert ev.ROLLBACK_STARTED in kinds(events) and ev.ROLLED_BACK in kinds(events)
    assert max(e.data["percent"] for e in events if e.kind == ev.WEIGHT_INTENDED) == 50
    assert ev.PROMOTED not in kinds(events)
