"""The runbook: a Markdown document for the people doing the cutover, generated
from the effective plan (one environment's) and the journal.

``shiftover runbook plan.yaml --env production > RUNBOOK.md``. It says, in order:
purpose and scope, roles and contacts, prerequisites (DNS TTL, alerts,
rehearsals, from the journal), the procedure step by step with expected
durations and the exact commands to type, what is checked at each step (the
normal state as a table), approvals and who gives them, the rollback procedure
(``shiftover rollback`` first, then the commands that set 0% by hand for every
router of the plan, in case shiftover itself is unavailable), and escalation.

Why it is generated and not written: a runbook written by hand drifts from the
plan (a step added, a threshold changed, a gate renamed); this one is rebuilt
from the same plan the run reads, so what the observers watch is what the run
judges. Why the rollback commands are spelled out: when shiftover cannot run
(its host is down, a Python dependency broke), the operator still has the
router's own tools; each command does what the router's ``apply(0%)`` does,
and nothing else:

- **HAProxy**: the runtime API through ``socat``: the old server to its full
  weight *first*, then the new one to 0 (in that order every split on the way
  has less on new, as ``types.write_path`` guarantees for the router; the other
  order passes through "both 0", which serves nothing).
- **Route53**: the plan names the zone, the record and the set identifiers, not
  the records' TTL, values or alias targets, so the command reads the two
  records with ``list-resource-record-sets`` and ``jq`` rewrites only their
  ``Weight`` (old 255, new 0, never both 0: Route53 then splits equally) into
  one ChangeBatch of two UPSERTs, as the router does; then it waits for INSYNC.
- **ALB**: the listener's (or rule's) actions are read with ``describe-*`` and
  ``jq`` rewrites only the two target groups' weights (old 999, new 0), keeping
  every other action, stickiness and other target groups, as the router does.

A lockstep plan (``routers:``) lists the members in the engine's order: every
member is written first, then the Route53 changes are waited on (a record's
propagation never holds back the ALB's write).

The rendering is pure: :func:`render_runbook` takes the loaded plan, what the
journal says (:class:`JournalFacts`) and the time it was generated, and returns
text; it never reads the clock, the network or the journal itself (the CLI does).
Items are in the plan's order (steps, gates, contacts, routers) or sorted
(labels, environments), so the same inputs always give the same document: the
golden-file tests rely on it. Secrets (values the plan took from ``${VAR}``) are
masked over the whole document, except the values its commands need (the routers'
identifiers, the gates' regions and profiles, the environment's name: see
:func:`command_values`), which are printed as they are even when they came from a
``${VAR}``, because a runbook must work when shiftover cannot run; user:password in
URLs is masked too (a runbook is shared more widely than a plan file). A journal
URL with credentials is never printed: the commands read ``"$SHIFTOVER_STATE"``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from shiftover.engine.build import minimum_duration, plan_timeline
from shiftover.plan import Contact, LoadedPlan, Plan, mask_userinfo, redact
from shiftover.report.runs import Campaign, Rehearsals, date_text, outcome_text, rehearsal_text
from shiftover.types import Weights
from shiftover.views import Commands

TTL_TARGET_SECONDS = 60  # what `validate` warns above (routers/route53.py)


@dataclass(frozen=True)
class JournalFacts:
    """What the journal says, for the runbook (read by the caller; read-only).

    ``exists`` False: there is no journal at ``where`` (nothing recorded yet).
    ``rehearsals``: the other environments' campaigns (:func:`runs.rehearsals`);
    ``here``: this environment's own campaigns (earlier attempts)."""

    where: str
    exists: bool
    rehearsals: tuple[Rehearsals, ...] = ()
    here: tuple[Campaign, ...] = ()


# --- small text helpers ---------------------------------------------------------------


def duration_text(seconds: float) -> str:
    """``90`` -> ``1 min 30 s``, ``300`` -> ``5 min``, ``5400`` -> ``1 h 30 min``."""
    total = round(seconds)
    if total < 60:
        return f"{seconds:g} s" if seconds != total else f"{total} s"
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h} h"] if h else []
    if m:
        parts.append(f"{m} min")
    if s:
        parts.append(f"{s} s")
    return " ".join(parts)


def _pct(value: float | Weights) -> str:
    number = float(value.new_percent) if isinstance(value, Weights) else float(value)
    return f"{number:.4g}%"


def _code(text: str) -> str:
    """Inline code that survives any backticks in ``text``."""
    text = " ".join(str(text).split())
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped (GFM keeps ``\\|`` in code too)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _who(c: Contact) -> str:
    if not c.role:
        return c.name
    return f"{c.name}, {c.role}" if "(" in c.role else f"{c.name} ({c.role})"


def _reach(c: Contact) -> str:
    return c.reach or "*not given*"


class _Doc:
    """Markdown, line by line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def heading(self, level: int, text: str) -> None:
        self.blank()
        self.lines.append("#" * level + " " + text)
        self.lines.append("")

    def para(self, text: str) -> None:
        self.blank()
        self.lines.append(text)
        self.lines.append("")

    def bullets(self, items: Iterable[str], *, prefix: str = "- ") -> None:
        self.blank()
        self.lines.extend(prefix + i for i in items)
        self.lines.append("")

    def numbered(self, items: Iterable[str]) -> None:
        self.blank()
        self.lines.extend(f"{n}. {i}" for n, i in enumerate(items, 1))
        self.lines.append("")

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        self.blank()
        self.lines.append("| " + " | ".join(_cell(h) for h in header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
        self.lines.append("")

    def code(self, text: str, lang: str = "sh") -> None:
        self.blank()
        fence = "````" if "```" in text else "```"
        self.lines.append(fence + lang)
        self.lines.extend(text.rstrip("\n").split("\n"))
        self.lines.append(fence)
        self.lines.append("")

    def item_code(self, text: str, lang: str = "sh") -> None:
        """A code block inside the list item above (indented two spaces: GFM)."""
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.lines.append("")
        self.lines.append(f"  ```{lang}")
        self.lines.extend("  " + line for line in text.rstrip("\n").split("\n"))
        self.lines.append("  ```")
        self.lines.append("")

    def warning(self, text: str) -> None:
        self.blank()
        self.lines.append(f"> **Warning:** {text}")
        self.lines.append("")

    def missing(self, text: str) -> None:
        self.blank()
        self.lines.append(f"> **Missing:** {text}")
        self.lines.append("")

    def text(self) -> str:
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n"


# --- gates: what each checks, its threshold, where to look ------------------------------


@dataclass(frozen=True)
class GateDoc:
    """One gate as the runbook shows it: a table row and its details."""

    name: str
    type: str
    what: str            # one line for the table
    threshold: str
    where: str           # one line for the table
    details: tuple[str, ...] = ()               # Markdown paragraphs
    blocks: tuple[tuple[str, str], ...] = ()    # (language, text) code blocks
    alert: bool = False  # an alert-like gate: listed under "alerts in place"


def _limits(gate: Any) -> str:
    parts = []
    if getattr(gate, "min", None) is not None:
        parts.append(f"min {gate.min:g}")
    if getattr(gate, "max", None) is not None:
        parts.append(f"max {gate.max:g}")
    text = " and ".join(parts)
    samples = getattr(gate, "min_samples", 0) or 0
    if samples:
        text += f", at least {samples} samples"
    return text


def _short(text: str, limit: int = 70) -> str | None:
    """``text`` as one line when it is short enough for a table cell, else None."""
    one = " ".join(text.split())
    return one if len(one) <= limit else None


def _socat_address(socket: str) -> str:
    """How ``socat`` reaches a runtime API given as the plan gives it (see
    ``haproxy_api.HAProxyRuntime``): a unix socket path, or host:port."""
    path = socket.removeprefix("unix://").removeprefix("unix@")
    if not path.startswith(("/", ".")):
        m = re.match(r"^(?:tcp://|ipv4@|ipv6@)?(?P<host>\[[^\]]+\]|[^/:\[\]@]+):(?P<port>\d+)$", socket)
        if m:
            return f"tcp-connect:{m.group('host')}:{m.group('port')}"
    return f"unix-connect:{path}"


def haproxy_command(socket: str, command: str) -> str:
    """One runtime API command through socat, as it works when pasted."""
    return f"echo {shlex.quote(command)} | socat stdio {shlex.quote(_socat_address(socket))}"


def gate_doc(gate: Any) -> GateDoc:
    """The runbook's view of one gate (any type; an unknown one is described by its
    provider's ``describe()``)."""
    kind = str(getattr(gate, "type", "?"))
    name = str(gate.name)
    if kind == "prometheus":
        url = _url(gate.url)
        link = f"{url.rstrip('/')}/graph?g0.expr={quote(gate.query, safe='')}&g0.tab=0"
        details = [f"Prometheus at <{url}> ([open the query as a graph]({link})):"]
        blocks = [("promql", gate.query)]
        if gate.samples_query:
            details.append("Samples counted with the second query.")
            blocks.append(("promql", gate.samples_query))
        what = _short(gate.query)
        return GateDoc(name, kind, _code(what) if what else "PromQL query (below)",
                       _limits(gate), f"Prometheus {url}", tuple(details), tuple(blocks))
    if kind == "prometheus_alerts":
        url = _url(gate.url)
        labels = ", ".join(f"{k}={v}" for k, v in sorted(gate.labels.items())) or "any labels"
        return GateDoc(name, kind, f"alerts matching {labels}", "none firing (pending ones do not count)",
                       f"{url.rstrip('/')}/alerts",
                       (f"The alerts page of <{url}> (Prometheus: `/alerts`; Alertmanager: "
                        f"`/#/alerts`), alerts with labels {labels}.",), alert=True)
    if kind == "http":
        url = _url(gate.url)
        expect = f"status {gate.expect_status}"
        if gate.body_contains:
            expect += f", body contains {_code(gate.body_contains)}"
        method = ["--head"] if gate.method == "HEAD" else ["-X", gate.method] if gate.method != "GET" else []
        cmd = shlex.join(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\\n", "--max-time",
                          f"{gate.timeout:g}", *method, url])
        details = [f"Ask it yourself (prints the status; the gate expects {gate.expect_status}"
                   + (" and checks the body" if gate.body_contains else "") + "):"]
        if gate.headers:
            names = ", ".join(sorted(gate.headers))
            details.append(f"The gate also sends the headers {names} (their values are not "
                           "printed here: they may be secrets); add them with `-H`.")
        return GateDoc(name, kind, f"{gate.method} {url}", expect, "curl (below)",
                       tuple(details), (("sh", cmd),))
    if kind == "haproxy_stats":
        cmd = haproxy_command(gate.socket, "show stat") + \
            f" | grep -E {shlex.quote('^# |^' + re.escape(gate.backend) + ',' + re.escape(gate.server) + ',')}"
        window = f" over {duration_text(gate.window)}" if gate.window else " since the previous check"
        return GateDoc(name, kind, f"error ratio of HAProxy server {gate.backend}/{gate.server}{window}",
                       _limits(gate), f"HAProxy stats at {gate.socket}",
                       ("The server's counters (`hrsp_5xx`, `econ`, `eresp`, `wretr`, `wredis` "
                        "against `req_tot`/`hrsp_*`), from the runtime API:",), (("sh", cmd),))
    if kind == "datadog":
        details = [f"Datadog metrics explorer, {gate.reduce} over {duration_text(gate.window)}:"]
        blocks = [("text", gate.query)]
        if gate.samples_query:
            details.append("Samples counted with the second query.")
            blocks.append(("text", gate.samples_query))
        what = _short(gate.query)
        return GateDoc(name, kind, _code(what) if what else "Datadog query (below)", _limits(gate),
                       "Datadog: Metrics, Explorer", tuple(details), tuple(blocks))
    if kind == "datadog_monitors":
        selection = []
        if gate.tags:
            selection.append("tags " + ", ".join(sorted(gate.tags)))
        if gate.names:
            selection.append("names " + ", ".join(gate.names))
        if gate.ids:
            selection.append("ids " + ", ".join(str(i) for i in gate.ids))
        threshold = "none in Alert" + (" or Warn" if gate.warn_fails else "") + "; No Data holds the step"
        return GateDoc(name, kind, "Datadog monitors with " + "; ".join(selection), threshold,
                       "Datadog: Monitors, Manage Monitors", alert=True)
    if kind == "cloudwatch":
        region = f" ({gate.region})" if gate.region else ""
        if gate.metric is not None:
            what = gate.metric.text()
            if gate.per is not None:
                what += f" per {gate.per.name}"
        else:
            what = f"expression {gate.expression}"
        details = [f"CloudWatch{region}, Metrics: {_code(what)} over {duration_text(gate.window)}."]
        if gate.metrics:
            details.append("Where the expression's metrics are: " + "; ".join(
                f"{_code(k)} = {_code(m.text())}" for k, m in sorted(gate.metrics.items())) + ".")
        return GateDoc(name, kind, what if len(what) <= 70 else "CloudWatch metric (below)",
                       _limits(gate), f"CloudWatch console{region}", tuple(details))
    if kind == "cloudwatch_alarms":
        args = ["aws", "cloudwatch", "describe-alarms"]
        if gate.alarm_names is not None:
            args += ["--alarm-names", *gate.alarm_names]
            what = "CloudWatch alarms " + ", ".join(gate.alarm_names)
        else:
            args += ["--alarm-name-prefix", str(gate.alarm_name_prefix)]
            what = f"CloudWatch alarms named {gate.alarm_name_prefix}*"
        args += ["--alarm-types", "MetricAlarm", "CompositeAlarm", "--query",
                 "[MetricAlarms,CompositeAlarms][].[AlarmName,StateValue]", "--output", "table"]
        if gate.region:
            args += ["--region", gate.region]
        if gate.profile:
            args += ["--profile", gate.profile]
        return GateDoc(name, kind, what, "none in ALARM; INSUFFICIENT_DATA holds the step",
                       "aws cloudwatch (below)", ("Their states now:",),
                       (("sh", shlex.join(args)),), alert=True)
    if kind == "compare":
        tolerance = 1 + gate.tolerance
        threshold = (f"new fails at most {tolerance:g}x as often as old (sequential test, alpha "
                     f"{gate.alpha:g}); at least {gate.min_requests} requests on new per step")
        return GateDoc(name, kind, "new's error ratio against old's", threshold,
                       _source_text(gate), ())
    if kind == "compare_latency":
        threshold = (f"new's latency at most {gate.effect_size:g}x old's (sequential test, alpha "
                     f"{gate.alpha:g})")
        if gate.slo is not None:
            threshold += f", and at most {gate.slo:g} s"
        return GateDoc(name, kind, "new's latency against old's", threshold, _source_text(gate), ())
    if kind == "command":
        cmd = shlex.join(gate.run)
        what = _short(cmd)
        threshold = "exit 0 (1 fails; any other code holds the step)"
        if gate.min_samples:
            threshold += f"; at least {gate.min_samples} samples"
        details = ["Run it yourself, on the host that runs shiftover, as the same user "
                   "(it prints the exit code: 0 passes, 1 fails, any other holds):"]
        if gate.env:
            details.append(f"The gate also sets {', '.join(sorted(gate.env))} in its environment "
                           "(their values are not printed here: they may be secrets).")
        return GateDoc(name, kind, _code(what) if what else "a command (below)", threshold,
                       "the command (below)", tuple(details),
                       (("sh", f'{cmd}; echo "exit $?"'),))
    described = _described(gate)
    return GateDoc(name, kind, described or kind, _limits(gate) or "see the plan", "see the plan")


def _source_text(gate: Any) -> str:
    described = _described(gate)
    prefix = f"{gate.type} "
    return (described[len(prefix):] if described and described.startswith(prefix) else described) \
        or str(getattr(gate.source, "type", "the source"))


def _described(gate: Any) -> str | None:
    """The provider's own one-line description (offline: building a provider does no I/O)."""
    try:
        from shiftover.providers import build_provider

        provider: Any = build_provider(gate)
        return " ".join(str(provider.describe()).split())
    except Exception:  # a plugin that cannot be built offline: the table says "see the plan"
        return None


# --- routers: scope lines and the rollback by hand ---------------------------------------


@dataclass(frozen=True)
class RouterDoc:
    """One router of the plan: how the scope names it, and its rollback by hand."""

    scope: str                    # one line: what it moves
    title: str                    # the rollback subsection's title
    intro: str                    # what the commands do
    write: str                    # the commands that set 0% (a block that works when pasted)
    check: str | None = None      # a command that shows the result
    notes: tuple[str, ...] = ()
    wait: str | None = None       # lockstep: the wait that follows every member's write


def _aws_options(region: str | None, profile: str | None) -> list[str]:
    out = []
    if region:
        out += ["--region", region]
    if profile:
        out += ["--profile", profile]
    return out


def _haproxy_doc(m: Any, index: int | None) -> RouterDoc:
    old_full, _ = Weights(0).to_backend(m.SCALE)
    write = "\n".join([
        haproxy_command(m.socket, f"set server {m.backend}/{m.old} state ready"),
        haproxy_command(m.socket, f"set server {m.backend}/{m.old} weight {old_full}"),
        haproxy_command(m.socket, f"set server {m.backend}/{m.new} weight 0"),
    ])
    check = "\n".join([
        haproxy_command(m.socket, f"get weight {m.backend}/{m.old}"),
        haproxy_command(m.socket, f"get weight {m.backend}/{m.new}"),
        haproxy_command(m.socket, "show stat") + " | " + shlex.join([
            "awk", "-F,", f"$1 == {_awk_string(m.backend)} && ($2 == {_awk_string(m.old)} "
            f"|| $2 == {_awk_string(m.new)}) {{print $2, $18}}"]),
    ])
    return RouterDoc(
        scope=(f"HAProxy backend {_code(m.backend)} (runtime API at {_code(m.socket)}): "
               f"server {_code(m.old)} (old) to {_code(m.new)} (new), absolute weights 0-{m.SCALE}"),
        title=f"HAProxy {m.backend}/{m.new}" + (f" (routers[{index}])" if index is not None else ""),
        intro=(f"On the HAProxy host (the runtime API socket must be reachable), old server "
               f"{_code(m.old)} out of maintenance or drain (`state ready`: with weight alone a "
               f"server in MAINT takes no request) and to its full weight {old_full} **first**, "
               f"then new server {_code(m.new)} to 0 (in this order the new share only goes down):"),
        write=write,
        check=check,
        notes=(f"Expect `{old_full} (initial ...)` for {m.old} and `0 (initial ...)` for {m.new}, "
               f"then each server's status: {m.old} must be `UP` (or `no check`), not `MAINT`, "
               "`DRAIN` or `DOWN` (DOWN: its health check fails, the old environment itself is "
               "broken: escalate).",
               "If clients can be pinned to the new server (a `cookie` on it, or a stick "
               "table), weight 0 still lets them in: put it in maintenance too with "
               f"{_code(haproxy_command(m.socket, f'set server {m.backend}/{m.new} state maint'))} "
               "(and `state ready` when it is fixed)."),
    )


def _awk_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


ROUTE53_JQ = (
    "[.[] | select(.SetIdentifier == $old or .SetIdentifier == $new)] as $records\n"
    "  | if ($records | length) != 2\n"
    "    then error(\"expected the two records \\($old) and \\($new), found \\($records | length)\")\n"
    "    else {Comment: \"manual rollback: \\($new) to 0%\", Changes: [$records[] | {Action: \"UPSERT\",\n"
    "      ResourceRecordSet: (.Weight = (if .SetIdentifier == $new then 0 else $full end))}]}\n"
    "    end"
)


def _route53_match(name: str, record_type: str) -> str:
    """The JMESPath filter for the records of ``name`` and ``record_type`` in a
    ListResourceRecordSets answer. AWS returns a wildcard's ``*`` as ``\\052``; both
    spellings are matched (the local double returns ``*``)."""
    names = [name] if "*" not in name else [name, name.replace("*", "\\052")]
    which = " || ".join(f"Name == '{n}'" for n in names)
    if len(names) > 1:
        which = f"({which})"
    return f"ResourceRecordSets[?{which} && Type == '{record_type}']"


def _route53_list(m: Any, query: str, output: str) -> str:
    """``list-resource-record-sets`` from the record's name (one page holds both records)."""
    opts = " " + shlex.join(_aws_options("us-east-1", m.profile))
    return (f"aws route53 list-resource-record-sets --hosted-zone-id {shlex.quote(m.hosted_zone_id)} "
            f"--start-record-name {shlex.quote(m.record_name)} --start-record-type {m.record_type} "
            f"--query \"{query}\" --output {output}{opts}")


def _route53_doc(m: Any, index: int | None, lockstep: bool) -> RouterDoc:
    n = index + 1 if index is not None else 1
    records, batch = f"rollback-{n}-route53-records.json", f"rollback-{n}-route53-change.json"
    opts = " " + shlex.join(_aws_options("us-east-1", m.profile))
    zone = shlex.quote(m.hosted_zone_id)
    full, _ = Weights(0).to_backend(m.SCALE)
    match = _route53_match(m.record_name, m.record_type)
    listing = _route53_list(m, match, "json") + f" > {records}"
    rewrite = (f"jq --arg old {shlex.quote(m.old)} --arg new {shlex.quote(m.new)} --argjson full {full} "
               f"{shlex.quote(ROUTE53_JQ)} {records} > {batch}")
    var = f"change_{n}" if lockstep else "change"
    change = (f"{var}=$(aws route53 change-resource-record-sets --hosted-zone-id {zone} "
              f"--change-batch file://{batch} --query ChangeInfo.Id --output text{opts})")
    wait = f"aws route53 wait resource-record-sets-changed --id \"${var}\"{opts}"
    done = f"echo \"Route53 {m.record_name} {m.record_type}: {m.new} 0, {m.old} {full}"
    if lockstep:
        write = " &&\n".join([listing, rewrite, change]) + f" &&\n{done} (submitted)\" ||\n" \
            f"echo 'FAILED: see the error above'"
        wait_block = f"{wait} &&\n{done}, INSYNC\""
    else:
        write = " &&\n".join([listing, rewrite, change, wait]) + f" &&\n{done}, INSYNC\" ||\n" \
            "echo 'FAILED: see the error above'"
        wait_block = None
    check = _route53_list(m, match + ".[SetIdentifier,Weight]", "text")
    return RouterDoc(
        scope=(f"Route53 {_code(m.record_name)} {m.record_type} in hosted zone "
               f"{_code(m.hosted_zone_id)}: weighted record {_code(m.old)} (old) to "
               f"{_code(m.new)} (new), relative weights 0-{m.SCALE}"),
        title=f"Route53 {m.record_name} {m.record_type}" + (f" (routers[{index}])" if index is not None else ""),
        intro=("With the aws CLI and jq: read the two weighted records, rewrite only their "
               f"`Weight` ({m.old} {full}, {m.new} 0: never both 0, Route53 then splits equally), "
               "send both in one change batch"
               + (" (the wait for INSYNC comes after every router is written)" if lockstep
                  else ", and wait until Route53 says INSYNC (about a minute)") + ":"),
        write=write,
        check=check,
        notes=(f"Expect {m.old} {full} and {m.new} 0. Resolvers keep the old answer for the "
               "records' TTL after INSYNC.",),
        wait=wait_block,
    )


ALB_JQ = (
    "map(if .Type == \"forward\" then\n"
    "    ((.ForwardConfig.TargetGroups // (if .TargetGroupArn then [{TargetGroupArn: .TargetGroupArn}] else [] end))\n"
    "      | map(.Weight //= 1)) as $groups\n"
    "    | del(.TargetGroupArn)\n"
    "    | .ForwardConfig.TargetGroups = ([$groups[]\n"
    "        | if .TargetGroupArn == $old then .Weight = $full elif .TargetGroupArn == $new then .Weight = 0 else . end]\n"
    "      + (if any($groups[]; .TargetGroupArn == $old) then [] else [{TargetGroupArn: $old, Weight: $full}] end)\n"
    "      + (if any($groups[]; .TargetGroupArn == $new) then [] else [{TargetGroupArn: $new, Weight: 0}] end))\n"
    "  else . end\n"
    "  | if (.AuthenticateOidcConfig | type) == \"object\" and .AuthenticateOidcConfig.ClientSecret == null\n"
    "    then .AuthenticateOidcConfig.UseExistingClientSecret = true else . end)"
)


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None


def _tg_name(arn: str) -> str:
    m = re.search(r":targetgroup/([^/]+)/", arn)
    return m.group(1) if m else arn


def _alb_doc(m: Any, index: int | None) -> RouterDoc:
    n = index + 1 if index is not None else 1
    read, written = f"rollback-{n}-alb-actions.json", f"rollback-{n}-alb-change.json"
    opts = " " + shlex.join(_aws_options(_arn_region(m.listener_arn), m.profile))
    full, _ = Weights(0).to_backend(m.SCALE)
    shown = "[?Type=='forward'].ForwardConfig.TargetGroups[]"
    if m.rule_arn:
        what = f"rule {_code(m.rule_arn)}"
        describe = (f"aws elbv2 describe-rules --rule-arns {shlex.quote(m.rule_arn)} "
                    f"--query 'Rules[0].Actions' --output json{opts} > {read}")
        modify = (f"aws elbv2 modify-rule --rule-arn {shlex.quote(m.rule_arn)} --actions file://{written} "
                  f"--query \"Rules[0].Actions{shown}\" --output table{opts}")
        check = (f"aws elbv2 describe-rules --rule-arns {shlex.quote(m.rule_arn)} "
                 f"--query \"Rules[0].Actions{shown}\" --output table{opts}")
    else:
        what = f"listener {_code(m.listener_arn)} (its default action)"
        describe = (f"aws elbv2 describe-listeners --listener-arns {shlex.quote(m.listener_arn)} "
                    f"--query 'Listeners[0].DefaultActions' --output json{opts} > {read}")
        modify = (f"aws elbv2 modify-listener --listener-arn {shlex.quote(m.listener_arn)} "
                  f"--default-actions file://{written} "
                  f"--query \"Listeners[0].DefaultActions{shown}\" --output table{opts}")
        check = (f"aws elbv2 describe-listeners --listener-arns {shlex.quote(m.listener_arn)} "
                 f"--query \"Listeners[0].DefaultActions{shown}\" --output table{opts}")
    rewrite = (f"jq --arg old {shlex.quote(m.old)} --arg new {shlex.quote(m.new)} --argjson full {full} "
               f"{shlex.quote(ALB_JQ)} {read} > {written}")
    write = " &&\n".join([describe, rewrite, modify]) + " ||\necho 'FAILED: see the error above'"
    target = ("rule " + m.rule_arn.split(":", 5)[-1]) if m.rule_arn else \
        ("listener " + m.listener_arn.split(":", 5)[-1])
    return RouterDoc(
        scope=(f"ALB {what}: target group {_code(_tg_name(m.old))} (old) to "
               f"{_code(_tg_name(m.new))} (new), weights 0-{m.SCALE}"),
        title=f"ALB {target}" + (f" (routers[{index}])" if index is not None else ""),
        intro=("With the aws CLI and jq: read the actions, rewrite only the forward action's two "
               f"target-group weights ({_tg_name(m.old)} {full}, {_tg_name(m.new)} 0; every other "
               "action, target group and the stickiness stay as they are), write them back:"),
        write=write,
        check=check,
        notes=(f"The table shows {_tg_name(m.old)}'s ARN with weight {full} and "
               f"{_tg_name(m.new)}'s with weight 0. With "
               "target-group stickiness on, clients pinned to the new target group stay there "
               "until their cookie expires.",),
    )


def router_doc(member: Any, index: int | None = None, *, lockstep: bool = False) -> RouterDoc:
    """The runbook's view of one router (``index``: its place in a lockstep group)."""
    kind = str(getattr(member, "type", "?"))
    if kind == "haproxy":
        return _haproxy_doc(member, index)
    if kind == "route53":
        return _route53_doc(member, index, lockstep)
    if kind == "alb":
        return _alb_doc(member, index)
    target = member.lease_target() or kind
    return RouterDoc(scope=f"{kind} router {_code(target)}", title=f"{kind} {target}",
                     intro=(f"shiftover has no manual procedure for the {kind} router: set the new "
                            f"environment to 0% with the tools of {target}."), write="")


# --- the procedure's timeline ---------------------------------------------------------


@dataclass(frozen=True)
class StepTime:
    """When a step can be reached at the earliest, and how long it holds."""

    index: int
    percent: Weights
    starts: float        # seconds after the run starts (the first check at 0% passed)
    holds: float         # bake (+ a compare_latency gate's warm-up below 100%)
    approval: bool


def timeline(plan: Plan) -> list[StepTime]:
    """Each step's earliest start and hold, from
    :func:`shiftover.engine.build.plan_timeline` (approvals not counted): the last
    step's start plus its hold is :func:`~shiftover.engine.build.minimum_duration`."""
    return [StepTime(i, t.split, t.earliest_start, t.earliest_end - t.earliest_start, t.approval)
            for i, t in enumerate(plan_timeline(plan))]


# --- the document ---------------------------------------------------------------------


_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def plan_variables(source_text: str) -> list[str]:
    """The ``${VAR}`` names a plan file uses (sorted), so the runbook can say what to export."""
    return sorted(set(_VAR.findall(source_text)))


@dataclass
class _Context:
    loaded: LoadedPlan
    cmd: Commands
    environment: str | None
    journal: JournalFacts | None
    plan_path: str
    gates: list[GateDoc] = field(default_factory=list)
    routers: list[RouterDoc] = field(default_factory=list)

    @property
    def plan(self) -> Plan:
        return self.loaded.plan


# a router member's fields that its commands (and the rollback by hand) name
_MEMBER_FIELDS = ("socket", "backend", "old", "new", "hosted_zone_id", "record_name",
                  "record_type", "listener_arn", "rule_arn", "region", "profile")


def command_values(plan: Plan, environment: str | None = None) -> set[str]:
    """The values the runbook's commands need verbatim: the routers' identifiers,
    the gates' ``region`` and ``profile``, the environment's name."""
    values: set[str] = set()
    for m in plan.members:
        for name in _MEMBER_FIELDS:
            value = getattr(m, name, None)
            if isinstance(value, str) and value:
                values.add(value)
    for g in plan.normal_state:
        for name in ("region", "profile"):
            value = getattr(g, name, None)
            if isinstance(value, str) and value:
                values.add(value)
    for env in (environment, plan.environment):
        if env:
            values.add(env)
    return values


def runbook_secrets(loaded: LoadedPlan, environment: str | None = None) -> frozenset[str]:
    """The secrets the runbook masks: the plan's, less the values its commands need
    (:func:`command_values`) and any secret inside one of them (``STAGE=prod`` and
    an environment named ``production``): a ``${AWS_REGION}`` is no secret, and a
    masked one breaks every command that names it."""
    needed = command_values(loaded.plan, environment)
    return frozenset(s for s in loaded.secrets if not any(s in v for v in needed))


# what the commands give --state when the journal's URL has credentials: the reader
# exports it (section 3 says so); the URL itself is never printed
STATE_FROM_ENV = "$SHIFTOVER_STATE"


@dataclass(frozen=True)
class RunbookCommands(Commands):
    """:class:`Commands` whose ``--state`` may be ``"$SHIFTOVER_STATE"``, expanded by
    the reader's shell (shlex would quote it into a literal)."""

    def __call__(self, verb: str, *args: str) -> str:
        text = super().__call__(verb, *args)
        if self.state == STATE_FROM_ENV:
            text = text.replace(shlex.quote(STATE_FROM_ENV), f'"{STATE_FROM_ENV}"')
        return text


def render_runbook(loaded: LoadedPlan, *, plan_path: str, environment: str | None,
                   commands: Commands, journal: JournalFacts | None,
                   generated_at: dt.datetime, plan_hash: str | None = None) -> str:
    """The runbook as Markdown (see the module docstring).

    ``plan_path``: the plan as the commands name it; ``commands``: builds the
    shiftover commands to paste (with ``--env`` and ``--state`` when given);
    ``journal``: None when no journal could be read at all; ``generated_at``: the
    time printed in the header (a parameter, so that golden files are stable)."""
    plan = loaded.plan
    lockstep = len(plan.members) > 1
    ctx = _Context(loaded, commands, environment, journal, plan_path,
                   gates=[gate_doc(g) for g in plan.normal_state],
                   routers=[router_doc(m, i if lockstep else None, lockstep=lockstep)
                            for i, m in enumerate(plan.members)])
    doc = _Doc()
    where = f" ({environment})" if environment else ""
    doc.add(f"# Runbook: {plan.service} cutover{where}")
    doc.blank()
    stamp = generated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    hash_text = f" (plan hash {plan_hash})" if plan_hash else ""
    doc.add(f"Generated by `shiftover runbook` from {_code(plan_path)}{hash_text} on {stamp}. "
            "Regenerate it after any change to the plan: "
            f"{_code(commands('runbook') + ' > RUNBOOK.md')}.")
    _purpose(doc, ctx)
    _roles(doc, ctx)
    _prerequisites(doc, ctx)
    _procedure(doc, ctx)
    _checks(doc, ctx)
    _approvals(doc, ctx)
    _rollback(doc, ctx)
    _escalation(doc, ctx)
    return redact(mask_userinfo(doc.text()), runbook_secrets(loaded, environment))


def _purpose(doc: _Doc, ctx: _Context) -> None:
    plan = ctx.plan
    doc.heading(2, "1. Purpose and scope")
    if plan.description:
        doc.para(" ".join(plan.description.split()))
    else:
        doc.missing("the plan has no `description:`: say in a sentence or two what moves where "
                    "and why (it opens this runbook).")
    env = (f"{ctx.environment} (the plan's `environments.{ctx.environment}` merged over its base)"
           if ctx.environment else "the plan's base (no `--env`)")
    items = [f"Service: {_code(plan.service)}", f"Environment: {env}"]
    if len(ctx.routers) == 1:
        items.append("Traffic moves through " + ctx.routers[0].scope)
    else:
        items.append(f"Traffic moves through {len(ctx.routers)} routers in lockstep (every step "
                     "applies to all of them):")
    doc.bullets(items)
    if len(ctx.routers) > 1:
        doc.lines.pop()  # the nested list continues the one above
        doc.add(*(f"  {n}. {r.scope}" for n, r in enumerate(ctx.routers, 1)), "")
    steps = ", ".join(_pct(w) for w in plan.step_weights)
    doc.para(f"Steps (share of traffic on the new environment): {steps}. Each step must stay "
             f"normal for {duration_text(plan.bake)} (checked every {duration_text(plan.interval)}) "
             f"before the next; {plan.failure_limit} failed checks in a row "
             + ("roll back to 0% automatically." if plan.on_failure == "rollback"
                else "pause the run (`on_failure: pause`): the operator decides."))
    if plan.rehearsal:
        doc.para("This environment's runs are **rehearsals** (`rehearsal: true`).")


def _contact_rows(ctx: _Context) -> tuple[list[tuple[str, str, str]], list[str]]:
    contacts = ctx.plan.contacts
    rows: list[tuple[str, str, str]] = []
    missing: list[str] = []
    if contacts is None or contacts.operator is None:
        missing.append("the **operator** (`contacts.operator`): the one person who runs shiftover "
                       "and changes weights")
    else:
        c = contacts.operator
        rows.append(("Operator: runs shiftover, the only one who changes weights", _who(c), _reach(c)))
    if contacts is None or not contacts.observers:
        missing.append("**observers** (`contacts.observers`): who watches the dashboards and "
                       "alerts of the table in section 5")
    else:
        rows += [("Observer: watches dashboards and alerts", _who(c), _reach(c))
                 for c in contacts.observers]
    if ctx.plan.approvals:
        if contacts is None or not contacts.approvers:
            steps = ", ".join(f"{a:g}%" for a in ctx.plan.approvals)
            missing.append(f"**approvers** (`contacts.approvers`): who approves the {steps} "
                           f"step{'s' if len(ctx.plan.approvals) > 1 else ''}")
        else:
            rows += [("Approver: gives the plan's approvals", _who(c), _reach(c))
                     for c in contacts.approvers]
    elif contacts is not None:
        rows += [("Approver", _who(c), _reach(c)) for c in contacts.approvers]
    if contacts is None or not contacts.escalation:
        missing.append("the **escalation order** (`contacts.escalation`): who to call, in order, "
                       "when something goes wrong")
    return rows, missing


CONTACTS_EXAMPLE = """\
contacts:
  operator: {name: Jane Doe, role: SRE on call, reach: "@jane on Slack, +1 555 0100"}
  observers:
    - {name: Ali Khan, role: app team, reach: "@ali on Slack"}
  approvers:
    - {name: Sam Lee, role: engineering manager, reach: "@sam on Slack"}
  escalation:
    - {name: SRE on call, reach: PagerDuty service sre-primary}
    - {name: Head of infrastructure, reach: "+1 555 0199"}"""


def _roles(doc: _Doc, ctx: _Context) -> None:
    doc.heading(2, "2. Roles and contacts")
    rows, missing = _contact_rows(ctx)
    if rows:
        doc.table(["role", "who", "how to reach"], rows)
    if missing:
        doc.missing("the plan does not name " + "; ".join(missing) + ". Add them under "
                    "`contacts:` in the plan" + (f" (or in `environments.{ctx.environment}`)"
                                                 if ctx.environment else "") + ", e.g.:")
        doc.code(CONTACTS_EXAMPLE, "yaml")
    if ctx.plan.contacts is not None and ctx.plan.contacts.escalation:
        doc.para("The escalation order is in section 8.")


def _prerequisites(doc: _Doc, ctx: _Context) -> None:
    plan, cmd = ctx.plan, ctx.cmd
    doc.heading(2, "3. Prerequisites")
    doc.para("Check each one before the cutover:")
    setup = "shiftover installed on the operator's machine"
    if plan_variables(ctx.loaded.source_text):
        setup += ", the plan's `${VAR}`s exported (`validate` names any that is missing)"
    if any(m.type in ("route53", "alb") for m in plan.members):
        setup += ", AWS credentials the standard way (`AWS_PROFILE`, a role)"
    doc.add(f"- [ ] {setup}.")
    if cmd.state == STATE_FROM_ENV:
        where = f" ({_code(ctx.journal.where)})" if ctx.journal is not None else ""
        doc.add(f"- [ ] `SHIFTOVER_STATE` exported with the journal's URL{where}, its user and "
                "password included, in every shell that runs the commands below: they give "
                '`--state "$SHIFTOVER_STATE"` (the password is never printed here).')
    doc.add(# validate reads no journal: it takes no --state
            f"- [ ] The plan works against the real router and gates: {_code(replace(cmd, state=None)('validate'))} "
            "(it reads the router's split and asks every gate once; it moves nothing).")
    for i, m in enumerate(plan.members):
        if m.type == "route53":
            _ttl(doc, m, i if len(plan.members) > 1 else None)
    alerts = [g for g in ctx.gates if g.alert]
    if alerts:
        doc.add("- [ ] Alerts in place: the plan watches " + "; ".join(
            f"{_code(g.name)} ({g.what})" for g in alerts) + ". Check that they exist, are not "
            "silenced, and notify the observers.")
    else:
        doc.add("- [ ] Alerts in place: **the plan watches no alerts** (no `prometheus_alerts`, "
                "`cloudwatch_alarms` or `datadog_monitors` gate), so an alert that fires during "
                "the cutover does not stop it: add one, or have the observers watch them.")
    _rehearsed(doc, ctx)
    doc.add("- [ ] The people of section 2 know the time of the cutover and are reachable.")
    doc.add("")


def _ttl(doc: _Doc, m: Any, index: int | None) -> None:
    cmd = _route53_list(m, _route53_match(m.record_name, m.record_type) + ".[SetIdentifier,TTL]",
                        "text")
    doc.add(f"- [ ] DNS TTL lowered on {_code(m.record_name)} {m.record_type}"
            + (f" (routers[{index}])" if index is not None else "")
            + f": the plan does not hold the records' TTL. It should be {TTL_TARGET_SECONDS} s "
            "or less, lowered at least one old TTL before the cutover (resolvers keep an answer "
            "that long, also after a rollback). Check it (alias records show `None`: their TTL "
            f"is the alias target's, {TTL_TARGET_SECONDS} s):")
    doc.item_code(cmd)


def _rehearsed(doc: _Doc, ctx: _Context) -> None:
    journal = ctx.journal
    if journal is None or not journal.exists:
        where = f" (there is no journal at {_code(journal.where)})" if journal is not None else ""
        doc.add(f"- [ ] Rehearsals: **no rehearsal recorded**{where}. Rehearse on staging "
                "first, or give `--state` the journal the rehearsals used.")
        return
    done = [r for r in journal.rehearsals if r.count]
    never = [r.environment for r in journal.rehearsals if not r.count]
    if not done:
        doc.add("- [ ] Rehearsals: **no rehearsal recorded** in the journal at "
                + _code(journal.where)
                + (f" ({', '.join(never)}: never run)" if never else "")
                + ". Rehearse on staging first.")
    else:
        doc.add(f"- [x] Rehearsals, from the journal at {_code(journal.where)}:")
        doc.add(*(f"  - {rehearsal_text(r)}" for r in done))
        if never:
            doc.add(f"  - never run on {', '.join(never)}")
        # the latest rehearsal is the one that counts: an old failure fixed since is history
        latest = max(done, key=lambda r: r.last_date or 0.0)
        if latest.last is not None and latest.last.outcome != "promoted":
            other = replace(ctx.cmd, env=latest.environment)
            doc.add(f"- [ ] The last rehearsal (on {latest.environment}) did not promote "
                    f"({outcome_text(latest.last)}): find out why before going on "
                    f"({_code(other('history'))}).")
    if journal.here:
        last = journal.here[-1]
        env = ctx.environment or "this plan"
        doc.add(f"- [ ] Earlier attempts on {env}: {len(journal.here)}, the last on "
                f"{date_text(last.last_date)}: {outcome_text(last)}. Know why it ended so.")


def _procedure(doc: _Doc, ctx: _Context) -> None:
    plan, cmd = ctx.plan, ctx.cmd
    doc.heading(2, "4. Procedure")
    doc.numbered([
        "Announce the start to the observers and the escalation contacts (sections 2 and 8).",
        f"Start the run in a terminal that stays open (tmux, screen): {_code(cmd('run'))}. "
        "It shows each step, bake and check live. Exit codes: 0 promoted, 3 rolled back, "
        "4 paused or held (run it again to resume), 5 another run holds the router, 2 bad "
        "input.",
        f"From another terminal, anyone can look: {_code(cmd('status'))}, and the journal: "
        f"{_code(cmd('history'))}.",
        f"To hold at the current step: {_code(cmd('pause', '-m', 'what you saw'))}; to go on: "
        f"{_code(cmd('resume'))}.",
    ])
    load = plan.load
    if load is not None:
        target = (f"{load.method} {_code(_url(load.url))}" if load.url is not None
                  else f"the tasks of {_code(load.locustfile or '')}")
        doc.para(f"The plan has a `load:` block: the run itself sends synthetic traffic, "
                 f"{load.rate:g} requests per second to {target}, for its whole duration. "
                 "Tell the observers: it shows "
                 "in the dashboards and counts in the gates; the real users' traffic comes on top.")
    times = timeline(plan)
    header = ["step", "new env share", *(
        f"{m.type} weights old/new" if len(plan.members) > 1 else "weights old/new"
        for m in plan.members), "earliest start", "holds", "approval"]
    rows = []
    approved_before = False
    for t in times:
        weights = [f"{o}/{n}" for o, n in (t.percent.to_backend(m.SCALE) for m in plan.members)]
        approved_before = approved_before or t.approval
        start = ("T" if t.starts == 0 else f"T + {duration_text(t.starts)}")
        if approved_before:
            start += " + approvals"
        rows.append([str(t.index + 1), _pct(t.percent), *weights, start, duration_text(t.holds),
                     "yes: waits before this step" if t.approval else ""])
    doc.para("The steps, at the earliest (T is when the run starts and its first check at 0% "
             "passes; a step starts over its bake whenever a check is not all-pass):")
    doc.table(header, rows)
    total = minimum_duration(plan)
    doc.para(f"Earliest finish: T + {duration_text(total)}"
             + (" plus the time the approvals take" if plan.approvals else "")
             + ". The run promotes once the last step has held (100% on the new environment).")
    mapped = [f"{s:g}% is set as {_pct(w)}" for s, w in zip(plan.steps, plan.step_weights, strict=True)
              if float(w.new_percent) != s]
    if mapped:
        doc.para("Mapped onto the routers' integer weights: " + "; ".join(mapped) + ".")
    _hooks(doc, ctx)


def hook_command(action: Any) -> str:
    """A hook's (or an undo's) action as a shell command to paste: the argv quoted,
    or the webhook as curl (-f: an HTTP error is a failure, as for the run)."""
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(action.env.items())]
    if action.run is not None:
        return " ".join([*env, shlex.join(action.run)])
    hook = action.webhook
    parts = ["curl", "-fsS", "-X", hook.method, "--max-time", f"{hook.timeout:g}"]
    for name, value in hook.headers.items():
        parts += ["-H", f"{name}: {value}"]
    if hook.body is not None:
        body = hook.body if isinstance(hook.body, str) else json.dumps(hook.body, sort_keys=True)
        parts += ["-H", "Content-Type: application/json", "--data", body] if not isinstance(
            hook.body, str) else ["--data", body]
    parts.append(hook.url)
    return shlex.join(parts)


def _hooks(doc: _Doc, ctx: _Context) -> None:
    plan, cmd = ctx.plan, ctx.cmd
    if not plan.hooks:
        return
    doc.heading(3, "What runs besides the traffic (hooks)")
    doc.para("The run runs these at their place, one at a time in this order, while it goes on "
             "checking; it moves on from a place only once every hook there has succeeded. A "
             "step's hooks start as soon as the router confirms the step, and the step's bake "
             "starts over when they are done. A hook that fails counts as one failed check and "
             "runs again at the next check (the failure limit and `on_failure` apply to it).")
    rows = []
    for h in plan.hooks:
        where = {"start": "before the first step", "promoted": "once 100% has baked",
                 "every_step": "every step"}.get(h.place, f"at {h.place}%")
        rows.append([_cell(h.name), where, _code(hook_command(h)),
                     _code(hook_command(h.undo)) if h.undo is not None else "none",
                     "yes" if h.idempotent else "no", duration_text(h.timeout)
                     + (f", {h.retries} retries" if h.retries else "")])
    doc.table(["hook", "when", "does", "undo (on rollback)", "idempotent", "limit"], rows)
    held = [h for h in plan.hooks if not h.idempotent]
    if held:
        h = held[0]
        place = f"{plan.steps[0]:g}" if h.place == "every_step" else h.place
        doc.para("If a run stops while a hook runs (killed, host lost), nobody knows whether the "
                 "hook did its work: the next run runs an idempotent hook again; for any other it "
                 "holds, and the operator checks by hand, then says what they found, e.g. for "
                 f"{_cell(h.name)}: {_code(cmd('ack', '--hook', h.name, '--at', place, '--done'))} "
                 "(or `--not-done`: it runs again). `shiftover status` prints the exact command.")


def _checks(doc: _Doc, ctx: _Context) -> None:
    plan = ctx.plan
    doc.heading(2, "5. What is checked at each step (the normal state)")
    doc.para(f"Every {duration_text(plan.interval)} the run checks every gate. A step moves on only "
             f"after {duration_text(plan.bake)} in which every check passed. {plan.failure_limit} "
             f"failed checks in a row: {plan.on_failure}. No data never passes: it holds the step; "
             f"{plan.inconclusive_limit} checks in a row without a verdict, or "
             f"{plan.error_limit} in which a gate or the router could not be read at all, and the "
             f"run is stuck: {plan.on_failure} too. A broken new environment is therefore "
             + ("acted on" if plan.on_failure == "rollback" else "paused (traffic stays where "
                "it is until the operator acts)")
             + f" about {duration_text(plan.failure_limit * plan.interval)} after its gates see it "
             "(plus each gate's own window).")
    doc.table(["gate", "what", "threshold (passes when)", "where to look"],
              [[g.name, g.what, g.threshold or "-", g.where] for g in ctx.gates])
    detailed = [g for g in ctx.gates if g.details or g.blocks]
    if detailed:
        doc.heading(3, "Where to look, gate by gate")
        for g in detailed:
            doc.para(f"**{g.name}** ({g.type}). " + " ".join(g.details))
            for lang, text in g.blocks:
                doc.code(text, lang)


def _approvals(doc: _Doc, ctx: _Context) -> None:
    plan, cmd = ctx.plan, ctx.cmd
    doc.heading(2, "6. Approvals")
    if not plan.approvals:
        doc.para("The plan asks for no approval: the run moves from step to step on its own.")
        return
    approvers = (ctx.plan.contacts.approvers if ctx.plan.contacts is not None else [])
    who = ", ".join(_who(c) for c in approvers) if approvers else "*no approver named (section 2)*"
    doc.para(f"The run waits before each of these steps until someone approves it ({who}); "
             "an approval may also be given ahead of time. The approver says yes; the operator "
             "(or the approver, with access to the journal) types:")
    doc.table(["step", "approve with"],
              [[f"{a:g}%", _code(cmd('approve', '--step', f'{a:g}'))] for a in plan.approvals])


def _rollback(doc: _Doc, ctx: _Context) -> None:
    plan, cmd = ctx.plan, ctx.cmd
    doc.heading(2, "7. Rollback")
    if plan.on_failure == "rollback":
        doc.para("The run rolls back by itself when the normal state breaks, or when it is stuck "
                 "(`on_failure: rollback`). Anyone who sees a problem the gates do not: tell the "
                 "operator, who rolls back **at once**, then investigates.")
    else:
        doc.para("The run **never rolls back by itself** (`on_failure: pause`): when the normal "
                 "state breaks, or the run is stuck, it pauses and the traffic stays on the new "
                 "environment at the current step. The operator decides: roll back with the "
                 "command below (at once if the service is degraded), or resume. Anyone who sees "
                 "a problem the gates do not: tell the operator, who rolls back **at once**, then "
                 "investigates.")
    doc.heading(3, "With shiftover (first)")
    doc.code(cmd("rollback", "-m", "what you saw"))
    doc.para("It reaches a running `shiftover run` through the journal, or writes 0% through the "
             "router directly when no run answers, and returns once the router confirms 0% "
             "(exit 0; 4 if it could not within `--timeout`, 60 s by default: then use the "
             "commands below).")
    if any(h.undo is not None for h in plan.hooks):
        doc.para("Once the router confirms 0%, the undo of every hook that ran is run, last "
                 "started first (the traffic first: nothing delays it). An undo that fails stops "
                 "the ones after it (their order matters) and the command exits 4 saying which: "
                 "fix the cause and run the same command again; it runs what is left.")
    notes = [n for n in (m.rollback_note() for m in plan.members) if n]
    if notes:
        doc.bullets(notes)
    doc.heading(3, "By hand, if shiftover itself is unavailable")
    if len(ctx.routers) > 1:
        doc.para("Every router, in this order (the order the engine writes them), then the "
                 "Route53 waits at the end (a record's propagation must not hold back the other "
                 "routers):" if any(r.wait for r in ctx.routers) else
                 "Every router, in this order (the order the engine writes them):")
    for n, r in enumerate(ctx.routers, 1):
        if len(ctx.routers) > 1:
            doc.heading(4, f"{n}. {r.title}")
        doc.para(r.intro)
        if r.write:
            doc.code(r.write)
        if r.check:
            doc.para("Check:")
            doc.code(r.check)
        if r.notes:
            doc.bullets(r.notes)
    waits = [r.wait for r in ctx.routers if r.wait]
    if waits:
        doc.heading(4, f"{len(ctx.routers) + 1}. Wait for Route53 (INSYNC)")
        doc.para("In the same shell (it uses the change ids saved above):")
        doc.code("\n".join(waits))
    undos = [h for h in reversed(plan.hooks) if h.undo is not None]
    if undos:
        doc.heading(4, "Then undo the hooks")
        doc.para("Only those that ran (the journal lists them: `hook ... started`), last started "
                 "first. In the plan's order reversed:")
        doc.code("\n".join(f"# {h.name} (at {h.place})\n{hook_command(h.undo)}" for h in undos
                           if h.undo is not None))
        h = undos[0]
        place = f"{plan.steps[0]:g}" if h.place == "every_step" else h.place
        doc.para("When shiftover works again, tell the journal about each undo done by hand "
                 "first (or the next `shiftover rollback` runs it again), e.g. "
                 f"{_code(cmd('ack', '--hook', h.name, '--at', place, '--undo', '--done'))}.")
    doc.para("A run that is still alive sees 0% set outside shiftover as an operator's "
             "emergency drain: it pauses and does not climb back. When shiftover works again, "
             f"record the rollback in the journal: {_code(cmd('rollback', '-m', 'rolled back by hand'))} "
             "(it finds 0% in place and confirms it).")


def _escalation(doc: _Doc, ctx: _Context) -> None:
    doc.heading(2, "8. Escalation")
    contacts = ctx.plan.contacts
    if contacts is None or not contacts.escalation:
        doc.missing("no escalation order in the plan (`contacts.escalation`): decide who to call, "
                    "in order, before the cutover, and add them to the plan (section 2).")
        return
    doc.para("When the rollback does not confirm, or the service is degraded after it, call in "
             "this order until someone answers:")
    doc.numbered(f"{_who(c)}: {_reach(c)}" for c in contacts.escalation)


__all__ = [
    "ALB_JQ",
    "ROUTE53_JQ",
    "GateDoc",
    "JournalFacts",
    "RouterDoc",
    "StepTime",
    "duration_text",
    "gate_doc",
    "haproxy_command",
    "plan_variables",
    "render_runbook",
    "router_doc",
    "timeline",
]
