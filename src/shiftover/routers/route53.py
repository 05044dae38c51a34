"""Route53 router: two weighted records of one name and type, relative weights 0-255.

The plan names a hosted zone, a record name and type (A or AAAA, alias or not, or
CNAME) and the ``SetIdentifier`` of the old and the new environment's record. Both
records must already exist: shiftover changes their ``Weight`` and nothing else.

Why relative weights 0-255 map exactly: Route53 sends each record
``weight / sum of weights`` of the answers, so a split is exact when some pair of
integers on 0..255 has exactly its ratio: 1% is old 198 / new 2, 12.5% is 252/36,
50% is 255/255. ``apply`` writes ``Weights.to_backend(255)`` (the largest such
pair, for resolution) and refuses a split the scale cannot express (33.3%):
plans are mapped onto the scale when they are loaded.

Why never both 0: when every record of a weighted set has weight 0, Route53 does
not send nothing, it splits *equally*. 0% on new is therefore new 0 / old 255,
and ``read`` treats both at 0 as an error (the split is not what the weights
say), as it does a third weighted record of the same name and type with a
weight above 0 (it takes its share too).

Why ONE ChangeBatch: a ChangeBatch is applied atomically, so the two UPSERTs land
together; resolvers never see a half-written step (old lowered, new not yet
raised), and a step costs one write against the rate limit. Each UPSERT sends
back the record exactly as ListResourceRecordSets returned it (alias target
with EvaluateTargetHealth, HealthCheckId, TTL, values, any routing field) with
only ``Weight`` changed, so nothing else is ever rewritten. A split already in
place (the same ratio, e.g. a hand-set 99/1 for 1%) writes nothing.

INSYNC: Route53 answers a change with PENDING and propagates it to its name
servers within about a minute. ``apply`` returns only once GetChange says
INSYNC (polling every 0.5 s, then 1 s, then 2 s), reporting each poll through
``on_progress`` for the live view, and raises RouterError naming the change id
when ``insync_timeout`` passes first: the change *was* submitted and will still
propagate. ``last_change`` keeps the id of the last change for the journal, and
``wait_insync(change_id)`` resumes waiting on one (after a crash, say). An
``apply`` retried after such an error finds the records already at its weights
(ListResourceRecordSets shows a change at once, PENDING or not): it waits for
its own change to be INSYNC again instead of calling the split in place, and
when the change's answer was lost (a read timeout) it writes the same weights
again for a change id to wait on. A retried rollback is thus confirmed at
INSYNC, never before. (A new process cannot know an earlier process's change:
that id has to come from the journal.)

The DNS tail: INSYNC means Route53's name servers answer with the new weights;
resolvers keep the old answers for up to the record's TTL. Rollback is
therefore confirmed by the router at INSYNC, and complete for clients a TTL
later. ``tail_seconds()`` gives that TTL (60 s for alias records: their TTL is
the alias target's, which AWS sets), ``warnings()`` says when it is above 60 s.

Rate limit: Route53 allows 5 requests a second per account. Every call goes
through ``shiftover.aws.call`` with the process-wide ``ROUTE53_RATE`` limiter,
so GetChange polls never starve a rollback's write; Throttling and
``PriorRequestNotComplete`` are retried with jittered backoff.

What the local AWS double (moto) accepts and AWS refuses, checked here instead:
weights above 255 (``read`` raises RouterError), a set identifier that is
missing, a record without Weight (another routing policy), the same set
identifier twice, two records whose types differ, weighted and non-weighted
records mixed at one name and type (RouterConfigError, naming the record and
listing the set identifiers that exist). moto also reports every change INSYNC
at once; the tests script PENDING.

Not seen: a record whose health check fails (``HealthCheckId``, or an alias with
``EvaluateTargetHealth``) gets no answers whatever its weight. ``details()``
shows the health checks; the split ``read`` returns assumes both are healthy.

Beyond the Router protocol, for the CLI's ``plan`` / ``validate``:

- ``tail_seconds() -> float``: the larger TTL of the two records (60 for alias).
- ``details() -> list[str]``: one line per record: set identifier, weight, TTL,
  target (alias DNS name, or the values), health check.
- ``warnings() -> list[str]``: a TTL above 60 s delays what a rollback achieves;
  weighted records of the other address family (AAAA beside A, dual stack) with
  the same set identifiers are not moved by this router.

Each of those reads the records afresh (one ListResourceRecordSets call).
``on_progress`` (attribute, default None) receives one line per INSYNC poll.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from shiftover import aws
from shiftover.errors import RouterConfigError, RouterError, UnknownSplit
from shiftover.routers.base import backend_pair
from shiftover.spec import RouterSpecBase, Timeout, rule
from shiftover.types import Weights

ALIAS_TAIL_SECONDS = 60.0  # an alias record's TTL is its target's, set by AWS
TTL_WARNING_SECONDS = 60
MAX_PAGES = 20  # 300 records a page: 6,000 records at one name is not a plan's record
_POLICY_FIELDS = ("Failover", "Region", "GeoLocation", "GeoProximityLocation",
                  "MultiValueAnswer", "CidrRoutingConfig")
_ZONE_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_OTHER_FAMILY = {"A": "AAAA", "AAAA": "A"}


def canonical_zone_id(value: str) -> str:
    """``/hostedzone/Z123`` or ``Z123`` -> ``Z123``."""
    zone = value.strip()
    for prefix in ("/hostedzone/", "hostedzone/"):
        if zone.startswith(prefix):
            zone = zone[len(prefix):]
    return zone


def canonical_name(value: str) -> str:
    """Lowercase with the trailing dot, ``*`` for Route53's ``\\052``: how two
    spellings of one record name compare equal."""
    name = value.strip().lower().replace("\\052", "*")
    return name if name.endswith(".") else name + "."


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


RecordType = Annotated[Literal["A", "AAAA", "CNAME"], BeforeValidator(_upper)]


class Route53RouterSpec(RouterSpecBase):
    """Route53: two weighted records of one name and type, relative weights 0-255."""

    SCALE: ClassVar[int] = 255
    LABEL: ClassVar[str] = "Route53's relative weights 0-255"

    type: Literal["route53"]
    hosted_zone_id: str = Field(min_length=1, description="Z123..., with or without /hostedzone/")
    record_name: str = Field(min_length=1, description="e.g. www.example.com (the trailing dot is added)")
    record_type: RecordType = Field(description="A or AAAA (alias or not), or CNAME")
    old: str = Field(min_length=1, max_length=128, description="SetIdentifier of the old environment's record")
    new: str = Field(min_length=1, max_length=128, description="SetIdentifier of the new environment's record")
    profile: str | None = Field(default=None, min_length=1, description="AWS profile (default: the usual chain)")
    timeout: Timeout = Field(default=5.0, description="per API call")
    insync_timeout: Timeout = Field(default=300.0, description="how long a change may take to be INSYNC")

    @field_validator("hosted_zone_id")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone = canonical_zone_id(value)
        if not _ZONE_ID.match(zone):
            raise rule(f"{value!r} is not a hosted zone id: write it like Z0123456789ABCDEFGHIJ "
                       "(aws route53 list-hosted-zones shows them)")
        return zone

    @field_validator("record_name")
    @classmethod
    def _name(cls, value: str) -> str:
        name = canonical_name(value)
        if name == "." or ".." in name or any(c.isspace() for c in name) or len(name) > 255:
            raise rule(f"{value!r} is not a DNS name: write the record's name, e.g. www.example.com")
        return name

    @model_validator(mode="after")
    def _two_records(self) -> Route53RouterSpec:
        if self.old == self.new:
            raise rule(
                f"old and new are the same set identifier {self.new!r}: they must name the two "
                "environments' weighted records",
                ("new",),
            )
        return self

    def rollback_note(self) -> str | None:
        return (f"{self.record_name} reaches 0% on new when Route53 reports the change "
                f"INSYNC (usually within a minute; at most insync_timeout {self.insync_timeout:g}s "
                "before the write is retried), then resolvers may keep the old answer for the "
                "records' TTL: `shiftover validate` reads it and warns above 60s")

    def lease_target(self) -> str:
        """The lease key, known without I/O (see ``Route53Router.lease_key``)."""
        return f"route53:{self.hosted_zone_id}/{self.record_name}/{self.record_type}"


SCALE = Route53RouterSpec.SCALE


@dataclass
class _Found:
    """What ListResourceRecordSets holds at the record's name (every type)."""

    at_name: list[dict[str, Any]] = field(default_factory=list)

    def of(self, record_type: str, set_id: str) -> list[dict[str, Any]]:
        return [r for r in self.at_name if r.get("Type") == record_type and r.get("SetIdentifier") == set_id]

    def set_ids(self) -> list[str]:
        return sorted({f"{r.get('SetIdentifier', '(none)')} ({r.get('Type')})" for r in self.at_name})


class Route53Router:
    """Split traffic between weighted records ``old`` and ``new`` (see the module docstring)."""

    Spec: ClassVar[type[Route53RouterSpec]] = Route53RouterSpec
    scale = SCALE

    def __init__(
        self,
        hosted_zone_id: str,
        record_name: str,
        record_type: str,
        old: str,
        new: str,
        *,
        profile: str | None = None,
        timeout: float = 5.0,
        insync_timeout: float = 300.0,
        client: Any = None,
        limiter: aws.RateLimiter | None = aws.ROUTE53_RATE,
        sleep: Callable[[float], None] = time.sleep,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.zone = canonical_zone_id(hosted_zone_id)
        self.name = canonical_name(record_name)
        self.type = record_type.strip().upper()
        if old == new:
            raise RouterConfigError(
                f"Route53 router for {self.name} {self.type} names the same set identifier {old!r} as old and new",
                hint="set router.old and router.new to the two weighted records' set identifiers",
            )
        self.old = old
        self.new = new
        self.profile = profile
        self.timeout = timeout
        self.insync_timeout = insync_timeout
        self.limiter = limiter
        self.sleep = sleep
        self.on_progress = on_progress
        self.last_change: dict[str, Any] | None = None
        self._client = client

    @classmethod
    def from_spec(cls, spec: Route53RouterSpec) -> Route53Router:
        return cls(spec.hosted_zone_id, spec.record_name, spec.record_type, spec.old, spec.new,
                   profile=spec.profile, timeout=spec.timeout, insync_timeout=spec.insync_timeout)

    # --- protocol ----------------------------------------------------------

    def describe(self) -> str:
        return f"route53 {self.zone} {self.name} {self.type} {self.old}/{self.new}"

    def lease_key(self) -> str:
        """``route53:<zone id>/<name with trailing dot, lowercase>/<type>``."""
        return f"route53:{self.zone}/{self.name}/{self.type}"

    def read(self) -> Weights:
        found = self._find()
        old, new = self._pair(found)
        ow, nw = self._weight(old), self._weight(new)
        for rec, w in ((old, ow), (new, nw)):
            if not 0 <= w <= SCALE:
                raise UnknownSplit(
                    f"{self._where(rec)} has weight {w}: Route53 weights are 0-{SCALE}, so the split "
                    "is not known (AWS would have refused this weight)",
                    hint="apply a step with shiftover (e.g. `shiftover rollback PLAN` writes old 255 / new 0)",
                )
        others = [r for r in found.at_name
                  if r.get("Type") == self.type and r.get("SetIdentifier") not in (self.old, self.new)
                  and isinstance(r.get("Weight"), int) and r["Weight"] > 0]
        if others:
            listed = ", ".join(f"{r.get('SetIdentifier')!r} (weight {r['Weight']})" for r in others)
            raise UnknownSplit(
                f"Route53 {self.name} {self.type} in zone {self.zone} has other weighted records taking "
                f"traffic: {listed}; shiftover splits traffic only between {self.old!r} and {self.new!r}",
                hint="set their weight to 0 or delete them, then run again",
            )
        weights = Weights.from_backend(ow, nw)
        if weights is None:
            raise UnknownSplit(
                f"Route53 {self.name} {self.type} in zone {self.zone} has weight 0 on both {self.old!r} and "
                f"{self.new!r}: Route53 then splits traffic EQUALLY, not what the weights say",
                hint="send the new environment back to 0% (`shiftover rollback PLAN` writes old 255 / new 0)",
            )
        return weights

    def apply(self, weights: Weights) -> None:
        self.submit(weights)
        self.settle()

    def settle(self) -> None:
        """Wait until this router's last change is INSYNC (a no-op when there is none
        pending). ``apply`` is ``submit`` then ``settle``; a lockstep group submits to
        every member first and settles after, so that one member's propagation never
        delays another member's write (a rollback reaches the ALB at once)."""
        mine = self.last_change
        if mine is not None and mine.get("id") and mine.get("status") != "INSYNC":
            self.wait_insync(str(mine["id"]))

    def submit(self, weights: Weights) -> None:
        """Write ``weights`` (one ChangeBatch) without waiting for INSYNC; see ``settle``."""
        target_old, target_new = backend_pair(self, weights, SCALE, f"Route53 {self.name} {self.type}")
        old, new = self._pair(self._find())
        ow, nw = old.get("Weight"), new.get("Weight")
        # our own last write to exactly these weights, not yet seen INSYNC (its wait
        # timed out, GetChange failed, the run was stopped, the answer was lost)
        mine = self.last_change
        unconfirmed = (mine is not None and mine.get("status") != "INSYNC"
                       and (mine.get("old_weight"), mine.get("new_weight")) == (ow, nw))
        if (isinstance(ow, int) and isinstance(nw, int) and 0 <= ow <= SCALE and 0 <= nw <= SCALE
                and ow + nw > 0 and Weights.from_backend(ow, nw) == weights):
            if mine is None and weights.new_percent == 0:
                # 0% found, but not written by this process: a run killed during its
                # rollback's wait (or another process) may have left the change PENDING,
                # and only a change of our own can be awaited. The same weights are
                # written again: once that change is INSYNC, every earlier one is too,
                # so a rollback is confirmed only when Route53's name servers serve it.
                pass
            elif not unconfirmed:
                return  # already this split: nothing to write, nothing to wait for
            elif mine is not None and mine.get("id"):
                # the records already say it, Route53's name servers may not yet: a
                # retried rollback is confirmed at INSYNC (``settle``), never before
                return
            # else the write's answer was lost: write it again (the same weights) for a
            # change id to wait on
        changes = []
        for rec, w in ((old, target_old), (new, target_new)):
            upsert = copy.deepcopy(rec)
            upsert["Weight"] = w
            changes.append({"Action": "UPSERT", "ResourceRecordSet": upsert})
        # until AWS answers, whether the change went in is not known (a read timeout
        # after the request arrived): a retry that finds these weights writes again
        self.last_change = {"id": None, "status": "UNKNOWN",
                            "old_weight": target_old, "new_weight": target_new}
        answer = self._api(
            "change_resource_record_sets", "ChangeResourceRecordSets",
            HostedZoneId=self.zone,
            ChangeBatch={
                # AWS takes at most 256 characters of comment
                "Comment": f"shiftover: {weights} on new ({target_old}/{target_new}) {self.old}/{self.new}"[:256],
                "Changes": changes,
            },
        )
        info = answer.get("ChangeInfo", {})
        change_id = _short_change_id(str(info.get("Id", "")))
        self.last_change = {"id": change_id, "status": info.get("Status"),
                            "old_weight": target_old, "new_weight": target_new}

    def verify(self, weights: Weights) -> bool:
        """True when Route53 serves exactly ``weights``. 0% needs only the new record at
        weight 0 and the old one above 0 (whatever else is odd: a third record, a
        weight out of range); any other split needs ``read`` to show it exactly."""
        if weights.new_percent == 0:
            found = self._find()
            old, new = found.of(self.type, self.old), found.of(self.type, self.new)
            if len(new) != 1 or len(old) != 1:
                self._pair(found)  # the error that names what is missing
            nw, ow = new[0].get("Weight"), old[0].get("Weight")
            return nw == 0 and isinstance(ow, int) and ow > 0
        return self.read() == weights

    # --- beyond the protocol (CLI: plan / validate) --------------------------

    def wait_insync(self, change_id: str, timeout: float | None = None) -> None:
        """Poll GetChange until ``change_id`` is INSYNC, at most ``timeout`` seconds
        (default ``insync_timeout``); RouterError when it is not by then."""
        change_id = _short_change_id(change_id)
        limit = self.insync_timeout if timeout is None else timeout
        start = time.monotonic()
        deadline = start + limit
        polls = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self.last_change is not None and self.last_change.get("id") == change_id:
                    self.last_change["status"] = "PENDING"
                raise RouterError(
                    f"Route53 change {change_id} on {self.name} {self.type} in zone {self.zone} was submitted "
                    f"but is not INSYNC after {limit:g} s: Route53 will still apply it",
                    hint=f"check it with `aws route53 get-change --id {change_id} --region us-east-1`; raise router.insync_timeout "
                    "if Route53 is slow today",
                )
            self.sleep(min(remaining, 0.5 * 2 ** min(polls, 2)))
            polls += 1
            try:
                answer = self._api("get_change", "GetChange", deadline=deadline, Id=change_id)
            except RouterError as exc:
                raise RouterError(
                    f"Route53 change {change_id} was submitted, then asking whether it is INSYNC "
                    f"failed: {exc.message}",
                    hint=exc.hint or f"check it with `aws route53 get-change --id {change_id} --region us-east-1`",
                ) from None
            info = answer.get("ChangeInfo", {})
            if self.last_change is not None and self.last_change.get("id") == change_id:
                self.last_change["status"] = info.get("Status")
            if info.get("Status") == "INSYNC":
                return
            if self.on_progress is not None:
                elapsed = time.monotonic() - start
                self.on_progress(f"waiting for Route53 change {change_id} to be INSYNC ({elapsed:.0f}s)")

    def tail_seconds(self) -> float:
        """How long resolvers may keep old answers after a change is INSYNC: the larger
        TTL of the two records; 60 s for an alias record (its target's TTL is AWS's)."""
        old, new = self._pair(self._find())
        return max(_ttl(old), _ttl(new))

    def details(self) -> list[str]:
        """One line per record: set identifier, weight, TTL, target, health check."""
        old, new = self._pair(self._find())
        lines = []
        for role, rec in (("old", old), ("new", new)):
            alias = rec.get("AliasTarget")
            if alias:
                ttl = f"TTL the alias target's ({ALIAS_TAIL_SECONDS:g} s assumed)"
                evaluate = "evaluates target health" if alias.get("EvaluateTargetHealth") else "no target health"
                target = f"alias to {alias.get('DNSName')} ({evaluate})"
            else:
                ttl = f"TTL {rec.get('TTL')} s"
                values = [v.get("Value", "") for v in rec.get("ResourceRecords", [])]
                target = ", ".join(values) or "no values"
            check = rec.get("HealthCheckId") or "none"
            lines.append(f"{role} {rec.get('SetIdentifier')}: weight {rec.get('Weight')}, {ttl}, "
                         f"{target}, health check {check}")
        return lines

    def warnings(self) -> list[str]:
        """Things that make this router slower or riskier than the plan suggests."""
        found = self._find()
        old, new = self._pair(found)
        out = []
        for rec in (old, new):
            ttl = rec.get("TTL")
            if not rec.get("AliasTarget") and isinstance(ttl, int) and ttl > TTL_WARNING_SECONDS:
                out.append(
                    f"{self._where(rec)} has TTL {ttl} s: resolvers keep old answers up to {ttl} s "
                    "after a rollback: lower it before the cutover"
                )
        # dual stack: IPv6 clients follow the AAAA records' weights (IPv4 clients the A
        # records'), and this router moves one type only
        other = _OTHER_FAMILY.get(self.type)
        twin = [r for r in found.at_name if r.get("Type") == other
                and r.get("SetIdentifier") in (self.old, self.new) and "Weight" in r]
        if twin:
            weights = ", ".join(f"{r.get('SetIdentifier')} {r.get('Weight')}" for r in twin)
            out.append(
                f"Route53 {self.name} also has weighted {other} records ({weights}) that this "
                f"router does not move: {'IPv6' if other == 'AAAA' else 'IPv4'} clients follow "
                f"those weights, before and after a rollback; unless another router of this plan "
                f"drives them, list both under routers: (a route53 router with record_type "
                f"{self.type} and one with record_type {other})"
            )
        return out

    # --- internals -----------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("route53", profile=self.profile, timeout=self.timeout, error=RouterError)
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    def _where(self, rec: dict[str, Any]) -> str:
        return (f"Route53 record {self.name} {rec.get('Type', self.type)} set {rec.get('SetIdentifier')!r} "
                f"in zone {self.zone}")

    def _api(self, method: str, action: str, *, deadline: float | None = None, **kwargs: Any) -> Any:
        fn = getattr(self.client, method)
        zone, name = self.zone, self.name

        def attempt(**kw: Any) -> Any:
            import botocore.exceptions

            try:
                return fn(**kw)
            except botocore.exceptions.ClientError as exc:
                if aws.error_code(exc) == "NoSuchHostedZone":
                    raise RouterConfigError(
                        f"Route53 hosted zone {zone} does not exist (looking for {name} {self.type})",
                        hint="check router.hosted_zone_id: `aws route53 list-hosted-zones "
                        "--query 'HostedZones[].[Id,Name]' --output text --region us-east-1` "
                        "lists the zones",
                    ) from None
                raise

        return aws.call(attempt, f"Route53 {action} on {name} {self.type} in zone {zone}",
                        error=RouterError, deadline=deadline, limiter=self.limiter, sleep=self.sleep, **kwargs)

    def _find(self) -> _Found:
        """Every record at the record's name, all types (they sort together)."""
        found = _Found()
        kwargs: dict[str, Any] = {"HostedZoneId": self.zone, "StartRecordName": self.name}
        seen: set[tuple[Any, ...]] = set()
        for _ in range(MAX_PAGES):
            page = self._api("list_resource_record_sets", "ListResourceRecordSets", **kwargs)
            past = False
            for rec in page.get("ResourceRecordSets", []):
                if canonical_name(str(rec.get("Name", ""))) != self.name:
                    past = True
                    break
                if rec not in found.at_name:  # a page restarted without NextRecordIdentifier
                    found.at_name.append(rec)
            token = (page.get("NextRecordName"), page.get("NextRecordType"), page.get("NextRecordIdentifier"))
            if past or not page.get("IsTruncated") or token in seen:
                break
            seen.add(token)
            kwargs = {"HostedZoneId": self.zone, "StartRecordName": token[0]}
            if token[1]:
                kwargs["StartRecordType"] = token[1]
            if token[2]:
                kwargs["StartRecordIdentifier"] = token[2]
        return found

    def _pair(self, found: _Found) -> tuple[dict[str, Any], dict[str, Any]]:
        """The old and new records, checked for what AWS would refuse and moto does not."""
        # (Route53 is global: --region only satisfies aws-cli v1, which wants one)
        listing = (f"aws route53 list-resource-record-sets --hosted-zone-id {self.zone} "
                   f"--query \"ResourceRecordSets[?Name=='{self.name}']\" --region us-east-1")
        exists = ", ".join(found.set_ids()) or "none"
        pair = []
        for role, sid in (("old", self.old), ("new", self.new)):
            matches = found.of(self.type, sid)
            if not matches:
                elsewhere = [r for r in found.at_name if r.get("SetIdentifier") == sid]
                if elsewhere:
                    other = elsewhere[0].get("Type")
                    raise RouterConfigError(
                        f"Route53 record {self.name} set {sid!r} ({role}) in zone {self.zone} is {other}, "
                        f"not {self.type}: the two records' types differ, and Route53 weighs only records "
                        "of one name and type together",
                        hint=f"make both records {self.type} (or set router.record_type); records at "
                        f"{self.name}: {exists}",
                    )
                raise RouterConfigError(
                    f"Route53 has no {self.type} record {self.name} with set identifier {sid!r} ({role}) "
                    f"in zone {self.zone}; set identifiers at that name: {exists}",
                    hint=f"fix router.{role} in the plan, or create the record; list them: {listing}",
                )
            if len(matches) > 1:
                raise RouterConfigError(
                    f"Route53 zone {self.zone} has {len(matches)} {self.type} records {self.name} with set "
                    f"identifier {sid!r} ({role}): AWS allows one",
                    hint=f"delete the duplicates; list them: {listing}",
                )
            rec = matches[0]
            if rec.get("TrafficPolicyInstanceId"):
                raise RouterConfigError(
                    f"{self._where(rec)} is managed by traffic policy instance "
                    f"{rec['TrafficPolicyInstanceId']}: Route53 refuses direct changes to it",
                    hint="drive weighted records that are not created by a traffic policy",
                )
            if "Weight" not in rec:
                policy = next((f for f in _POLICY_FIELDS if f in rec), None)
                what = f"a {policy} record" if policy else "not a weighted record"
                raise RouterConfigError(
                    f"{self._where(rec)} has no Weight: it is {what}, so shiftover cannot split by weight",
                    hint="point router.old / router.new at weighted records (routing policy: weighted)",
                )
            pair.append(rec)
        plain = [r for r in found.at_name if r.get("Type") == self.type and "Weight" not in r]
        if plain:
            ids = ", ".join(repr(r.get("SetIdentifier", "(none)")) for r in plain)
            raise RouterConfigError(
                f"Route53 {self.name} {self.type} in zone {self.zone} mixes weighted records with records "
                f"of another routing policy ({ids}): AWS does not allow that, and the split is not known",
                hint=f"delete or rename the non-weighted records; list them: {listing}",
            )
        return pair[0], pair[1]

    def _weight(self, rec: dict[str, Any]) -> int:
        w = rec.get("Weight")
        if not isinstance(w, int) or isinstance(w, bool):
            raise RouterError(f"{self._where(rec)} has weight {w!r}, not an integer")
        return w


def _ttl(rec: dict[str, Any]) -> float:
    if rec.get("AliasTarget"):
        return ALIAS_TAIL_SECONDS
    ttl = rec.get("TTL")
    return float(ttl) if isinstance(ttl, int) else ALIAS_TAIL_SECONDS


def _short_change_id(change_id: str) -> str:
    """``/change/C123`` -> ``C123``."""
    return change_id.rsplit("/", 1)[-1]


__all__ = ["SCALE", "Route53Router", "Route53RouterSpec", "canonical_name", "canonical_zone_id"]
