"""The user's plan file: what to shift, in which steps, and what "normal" means.

Models are pydantic v2 (the plan is the one boundary where pydantic is used).
Loading lives below the models; ``load_plan(path)`` is the entry point.

Why the loader is more than ``yaml.safe_load`` + ``model_validate``:

- The plan is written by an SRE under pressure, often the night before a
  cutover. Every problem must say *where* (``file:line:col``, 1-based), *which
  field* (``normal_state[1].expect_status``), *what* and *how to fix it*, and all
  problems are reported at once rather than one per attempt. So the YAML is
  *composed* into ruamel nodes (which carry marks), turned into plain Python data
  by hand while recording the mark of every key and value, and each pydantic
  error's ``loc`` is mapped back to a mark. A missing field points at the mapping
  that lacks it; an unknown field at its key; everything else at the value.
- Duplicate keys are an error (YAML says so; PyYAML silently keeps the last).
- YAML 1.2 is used (ruamel's default): ``on``/``no`` stay strings.
- ``${VAR}`` / ``${VAR:-default}`` are expanded in string values on the parsed
  tree, *before* validation, so an expanded value is validated like a literal
  one and a bad one is reported at the node that used it. ``$${VAR}`` is a
  literal ``${VAR}``; any other ``$`` is left alone (PromQL and regexes use it).
  Interpolation never re-parses YAML: ``steps: ${STEPS}`` stays a string.
- Values that came from the environment are secrets as far as shiftover is
  concerned (tokens in headers, passwords in URLs): ``LoadedPlan.secrets`` holds
  them and ``LoadedPlan.redact`` masks them before anything is logged, journalled
  or reported. Defaults written in the plan are not secrets: they are in the file.

Durations accept ``500ms``, ``90s``, ``5m``, ``1h`` (or a bare number of seconds)
and are held as float seconds.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import shlex
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from shiftover._registry import by_type
from shiftover.analysis.latency import figures_to_pass
from shiftover.errors import PlanError
from shiftover.hooks import HookSpec, check_hooks, hook_secrets
from shiftover.loadtest.synthetic import LoadSpec
from shiftover.notify import NotifyList, notify_secrets
from shiftover.providers import gate_specs
from shiftover.routers import router_specs
from shiftover.spec import (
    MAX_DURATION,
    Duration,
    FiniteFloat,
    GateSpecBase,
    RouterSpecBase,
    SpecModel,
    parse_duration,
)
from shiftover.spec import rule as _rule
from shiftover.types import Weights

# Every router's and gate's model lives beside its implementation; the registries
# assemble the unions the plan validates against (one import of each backend
# module: their SDKs are imported lazily, on first use).
ROUTER_MODELS: dict[str, type[RouterSpecBase]] = router_specs()
GATE_MODELS: dict[str, type[GateSpecBase]] = gate_specs()
ROUTER_TYPES = tuple(ROUTER_MODELS)
GATE_TYPES = tuple(GATE_MODELS)

if TYPE_CHECKING:
    RouterSpec = RouterSpecBase
    GateSpec = GateSpecBase
else:
    RouterSpec = by_type(ROUTER_MODELS.values())
    GateSpec = by_type(GATE_MODELS.values())


# --- the plan ----------------------------------------------------------------


class Contact(SpecModel):
    """A person (or a rota) the runbook names, and how to reach them."""

    name: str = Field(min_length=1)
    role: str | None = Field(default=None, description="e.g. SRE on call, app team lead")
    reach: str | None = Field(default=None, description="how to reach them: Slack handle, phone, PagerDuty service")


class Contacts(SpecModel):
    """Who does what during the cutover (the runbook's roles and escalation)."""

    operator: Contact | None = Field(default=None, description="the one person who runs shiftover and changes weights")
    observers: list[Contact] = Field(default_factory=list, description="who watches dashboards and alerts")
    approvers: list[Contact] = Field(default_factory=list, description="who gives the plan's approvals")
    escalation: list[Contact] = Field(default_factory=list, description="who to call, in this order")


class Plan(SpecModel):
    service: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str | None = Field(
        default=None, description="purpose and scope of the cutover, in a sentence or two (the runbook opens with it)")
    contacts: Contacts | None = Field(default=None, description="operator, observers, approvers and escalation order (the runbook's roles)")
    rehearsal: bool = Field(
        default=False,
        description="runs of this plan are rehearsals (set it in a staging or integration environment): "
        "history and the runbook count them as rehearsals of the production cutover")
    router: RouterSpec | None = Field(default=None, description="the router that splits traffic")
    routers: list[RouterSpec] | None = Field(
        default=None, min_length=2,
        description="several routers moved in lockstep (e.g. Route53 and an ALB): every step "
        "applies to all of them; use instead of router",
    )
    steps: list[FiniteFloat] = Field(min_length=1, description="percent of traffic on the new environment")
    bake: Duration = Field(description="each step must stay normal this long")
    interval: Duration = Field(default=15.0, description="how often the normal state is checked")
    normal_state: list[GateSpec] = Field(min_length=1)
    failure_limit: int = Field(default=2, ge=1, description="consecutive failed checks before on_failure")
    error_limit: int = Field(
        default=4, ge=1,
        description="consecutive checks in which a gate could not be evaluated at all (its "
        "provider errored) or the router could not be read, before the run is stuck and "
        "on_failure runs",
    )
    inconclusive_limit: int = Field(
        default=20, ge=1,
        description="consecutive checks without a verdict (no data, too few samples, errors) "
        "at a step above 0%, before the run is stuck and on_failure runs",
    )
    on_failure: Literal["rollback", "pause"] = "rollback"
    load: LoadSpec | None = Field(
        default=None,
        description="synthetic traffic sent for the whole run (a rehearsal on staging, which has no users)",
    )
    approvals: list[FiniteFloat] = Field(
        default_factory=list, description="steps that wait for `shiftover approve`"
    )
    hooks: list[HookSpec] = Field(
        default_factory=list,
        description="commands or webhooks run at a step, at start or once promoted, each with "
        "an optional undo run on rollback (batches, workers, smoke tests)")
    notify: NotifyList = Field(
        default_factory=list,
        description="who hears what the run does: Slack incoming webhooks, JSON webhooks, "
        "commands, each with an event filter (docs/notifications.md)")
    # the environment (``--env``) whose overlay was merged in: set by the loader, not a field
    _environment: str | None = PrivateAttr(default=None)

    @property
    def environment(self) -> str | None:
        """The environment this plan was loaded for (``--env``), or None for the base plan."""
        return self._environment

    @property
    def journal_key(self) -> str:
        """Whose events these are in the journal: the service, per environment (a
        staging campaign must never count as production's)."""
        return journal_key(self.service, self._environment)

    @field_validator("steps")
    @classmethod
    def _steps_shape(cls, steps: list[float]) -> list[float]:
        for i, s in enumerate(steps):
            if s <= 0 or s > 100:
                raise _rule(
                    f"step {s:g} is outside 0-100: steps are percent of traffic on the new environment, each > 0 and <= 100",
                    (i,),
                )
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                raise _rule(
                    f"steps must be strictly increasing: {steps[i]:g} comes after {steps[i - 1]:g}",
                    (i,),
                )
        if steps[-1] != 100:
            raise _rule(
                f"steps must end at 100 (the last is {steps[-1]:g}): add 100 to finish the cutover",
                (len(steps) - 1,),
            )
        return steps

    @field_validator("interval")
    @classmethod
    def _interval_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("interval must be greater than 0, e.g. 15s")
        return v

    @field_validator("approvals")
    @classmethod
    def _approvals_are_steps(cls, approvals: list[float], info: ValidationInfo) -> list[float]:
        steps = info.data.get("steps")
        if steps is None:  # steps itself is invalid and already reported
            return approvals
        for i, a in enumerate(approvals):
            if a not in steps:
                listed = ", ".join(f"{s:g}" for s in steps)
                raise _rule(
                    f"approval {a:g} is not one of the steps ({listed}): an approval holds a step, so name a step",
                    (i,),
                )
        return approvals

    @model_validator(mode="before")
    @classmethod
    def _one_router_field(cls, data: Any) -> Any:
        if isinstance(data, dict):
            has_one, has_many = data.get("router") is not None, data.get("routers") is not None
            if has_one and has_many:
                raise _rule("set router (one) or routers (several in lockstep), not both",
                            ("routers",))
            if not has_one and not has_many:
                raise _rule("the plan has no router: add router: (or routers: for several in lockstep)",
                            ("router",))
        return data

    @property
    def members(self) -> tuple[RouterSpec, ...]:
        """The routers this plan moves: one, or several in lockstep."""
        if self.routers is not None:
            return tuple(self.routers)
        assert self.router is not None
        return (self.router,)

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(m.SCALE for m in self.members)

    @property
    def scale_label(self) -> str:
        """How errors name the weight scale(s) every step must be exact on."""
        labels = list(dict.fromkeys(m.LABEL for m in self.members))
        return labels[0] if len(labels) == 1 else "every router of the group (" + "; ".join(labels) + ")"

    @model_validator(mode="after")
    def _steps_on_the_routers_scale(self) -> Plan:
        """Each step becomes the largest split at or below it that every router sets
        exactly; a step that maps to 0% or onto the previous step is an error."""
        previous: Weights | None = None
        for i, (s, mapped) in enumerate(zip(self.steps, self.step_weights, strict=True)):
            if mapped.new_percent == 0:
                smallest = ", ".join(
                    f"{Weights.from_backend(scale, 1)} with weights {scale}/1" for scale in
                    dict.fromkeys(self.scales))
                raise _rule(
                    f"step {s:g}% is below the smallest split {self.scale_label} can set "
                    f"({smallest})",
                    ("steps", i),
                )
            if previous is not None and mapped == previous:
                raise _rule(
                    f"steps {self.steps[i - 1]:g} and {s:g} are the same split on "
                    f"{self.scale_label} ({mapped}): drop one of them",
                    ("steps", i),
                )
            previous = mapped
        return self

    @functools.cached_property
    def step_weights(self) -> tuple[Weights, ...]:
        """The steps as every router sets them exactly (see :meth:`Weights.at_or_below`);
        computed once: the engine asks for them at every tick."""
        return step_weights(self.steps, self.scales)

    @model_validator(mode="after")
    def _cross_checks(self) -> Plan:
        targets: dict[str, int] = {}
        for i, member in enumerate(self.routers or ()):
            target = member.lease_target()
            if target is None:
                continue
            if target in targets:
                raise _rule(f"routers[{i}] drives the same target as routers[{targets[target]}] "
                            f"({target}): list each router once", ("routers", i))
            targets[target] = i
        seen: set[str] = set()
        for i, gate in enumerate(self.normal_state):
            if gate.name in seen:
                raise _rule(
                    f"gate names must be unique: {gate.name!r} appears more than once",
                    ("normal_state", i, "name"),
                )
            seen.add(gate.name)
        _check_compare_gates(self)
        check_hooks(self.hooks, self.steps)
        return self


def journal_key(service: str, environment: str | None) -> str:
    """``service`` for a plan without environments, ``service@environment`` otherwise
    ('@' cannot appear in a service name, so keys never collide)."""
    return service if environment is None else f"{service}@{environment}"


def _check_compare_gates(plan: Plan) -> None:
    """Plan rules of the gates that judge new against old."""
    routers: list[Any] = [m for m in plan.members if m.type == "haproxy"]
    gates: list[Any] = list(plan.normal_state)
    comparing = [i for i, g in enumerate(gates) if g.JUDGE.startswith("compare")]
    # what judges new on its own: a value held to a threshold, or alerts on it (a
    # probe of /health says it answers, not how often it fails)
    if comparing and not any(g.JUDGE in ("threshold", "alerts") for g in gates):
        raise _rule(
            f"normal_state[{comparing[0]}] is a {gates[comparing[0]].type} gate "
            "and no gate judges the new environment's errors on its own: at 100% the old one "
            "serves nothing to compare with, and a fault both share (a common database) is "
            "invisible to a comparison; add a gate with an absolute threshold (e.g. a "
            "prometheus error ratio with max) or an alerts gate",
            ("normal_state", comparing[0], "type"))
    for i, gate in enumerate(gates):
        source: Any = getattr(gate, "source", None)
        if gate.JUDGE == "compare" and getattr(source, "type", None) == "haproxy_stats":
            for r in routers:
                same = (r.socket, r.backend) == (source.socket, source.backend)
                if same and (source.old, source.new) == (r.new, r.old):
                    raise _rule(
                        f"the source's old and new are swapped against the router's (old "
                        f"{r.old!r}, new {r.new!r}): the comparison would judge old against "
                        f"new; write old: {r.old}, new: {r.new}",
                        ("normal_state", i, "source", "old"))
        if gate.JUDGE == "compare_latency":
            needed = latency_warm_up(gate)
            if needed >= plan.inconclusive_limit:
                raise _rule(
                    f"this gate needs {needed} checks of each step before it can pass "
                    f"(min_intervals {gate.min_intervals}, and enough figures for its test to be "
                    f"able to fail at alpha {gate.alpha:g}), but inconclusive_limit "
                    f"{plan.inconclusive_limit} checks without a verdict end the run: raise "
                    f"inconclusive_limit above {needed}, e.g. inconclusive_limit: {needed + 10}",
                    ("normal_state", i, "min_intervals"))


def latency_warm_up(gate: Any) -> int:
    """Checks a compare_latency gate needs in a step before it can PASS."""
    return figures_to_pass(gate.alpha, gate.min_intervals)


def step_weights(steps: list[float], scales: tuple[int, ...] | int | None) -> tuple[Weights, ...]:
    """Steps (percent, as written) as exact splits on every router's integer scale:
    the largest split at or below each step that all of the scales express."""
    if isinstance(scales, int):
        scales = (scales,)
    out = []
    for s in steps:
        w = Weights(str(s))
        while scales and not all(w.expressible(scale) for scale in scales):
            for scale in scales:  # each pass only lowers w; it ends at a common split
                w = w.at_or_below(scale)
        out.append(w)
    return tuple(out)


def plan_hash(plan: Plan, redact_: Any = None) -> str:
    """A short hash of what the plan means (not how it is written: comments and
    layout do not change it). Journalled by every run, so a resumed campaign
    knows when its plan was edited. Secrets are masked before hashing. Fields left
    at their defaults are left out, so that a release adding a field (with a default
    that changes nothing) does not make every open campaign's plan look edited."""
    text = plan.model_dump_json(exclude_defaults=True)
    if redact_ is not None:
        text = redact_(text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a plan file, for editors and ``shiftover schema``."""
    schema = Plan.model_json_schema()
    schema["properties"][ENVIRONMENTS_KEY] = {
        "type": "object",
        "description": "named overlays (integration, staging, production) merged over the base "
        "plan with --env NAME: mappings merge, null removes a key, lists and values replace, "
        "normal_state gates merge by name (remove: true drops one), a router or gate whose type "
        "changes is replaced whole; service cannot change",
        "additionalProperties": {"type": ["object", "null"]},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "shiftover plan",
    }


# --- loading -----------------------------------------------------------------

_PathKey = tuple[str | int, ...]
_Pos = tuple[int, int]  # 1-based (line, column)


@dataclass(frozen=True)
class LoadedPlan:
    """A validated plan, where it came from, and the secrets to keep out of output."""

    plan: Plan
    path: Path
    source_text: str
    secrets: frozenset[str] = frozenset()

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)


MIN_SECRET_LENGTH = 4


def _escaped_forms(secret: str) -> set[str]:
    """A secret as it can appear in text: raw, as Python's ``repr`` escapes it (a
    reason quoting ``body_contains`` with ``!r``), as JSON escapes it, and both."""
    forms = {secret}
    for quoted in (repr(secret), json.dumps(secret)):
        inner = quoted[1:-1]
        forms.add(inner)
        forms.add(json.dumps(inner)[1:-1])
    return {f for f in forms if f}


def redact(text: str, secrets: frozenset[str] | set[str]) -> str:
    """Replace every secret value in ``text`` by ``***``.

    One pass, longest secret first: a secret that contains another is masked
    whole, and a mask is never rescanned. Values shorter than
    :data:`MIN_SECRET_LENGTH` characters are not masked: ``${REPLICAS}=1`` would
    otherwise turn every "1" of every message into "***" while hiding nothing.
    """
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            forms |= _escaped_forms(secret)
    ordered = sorted(forms, key=len, reverse=True)
    if not ordered:
        return text
    return re.sub("|".join(re.escape(s) for s in ordered), "***", text)


_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@'\"`]+@", re.IGNORECASE)


def mask_userinfo(text: str) -> str:
    """``http://user:pass@host`` -> ``http://***@host`` anywhere in ``text`` (credentials
    typed into a URL are secrets whether or not they came from ``${VAR}``)."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def redact_values(value: Any, redact_: Any) -> Any:
    """Redact every string inside a JSON-like value *before* it is serialised (escaping
    could otherwise hide a secret from the redactor). ``redact_`` maps str -> str."""
    if isinstance(value, str):
        return redact_(value)
    if isinstance(value, Mapping):
        return {str(k): redact_values(v, redact_) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(v, redact_) for v in value]
    return value


def load_plan(path: str | Path, *, env: Mapping[str, str] | None = None,
              environment: str | None = None) -> LoadedPlan:
    """Read, interpolate and validate a plan file; raise PlanError naming file:line:col."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PlanError(
            "plan file not found", file=str(p), hint="check the path, or start from examples/plan.yaml"
        ) from None
    except IsADirectoryError:
        raise PlanError("is a directory, not a plan file", file=str(p), hint="give the path of the YAML file") from None
    except OSError as e:
        raise PlanError(f"cannot read the plan file: {e.strerror}", file=str(p), hint="check permissions") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, col = _offset_to_pos(raw[: e.start].decode("utf-8", errors="replace"))
        raise PlanError(
            "the file is not UTF-8 text",
            file=str(p),
            line=line,
            column=col,
            hint="save the plan as UTF-8",
        ) from None
    return parse_plan_text(text, filename=str(p), env=env, environment=environment)


def parse_plan_text(
    text: str, *, filename: str = "<plan>", env: Mapping[str, str] | None = None,
    environment: str | None = None,
) -> LoadedPlan:
    """Like :func:`load_plan` for text in memory (tests, stdin)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    root = _compose(text, filename)
    if root is None:
        raise PlanError(
            "the plan file is empty",
            file=filename,
            line=1,
            column=1,
            hint="start from examples/plan.yaml, or see `shiftover schema`",
        )
    tree = _Tree(filename)
    data = tree.build(root)
    if not isinstance(root, MappingNode):
        raise PlanError(
            f"the top level of a plan must be a mapping of fields (service:, router:, steps:, ...), found {_describe(data)}",
            file=filename,
            line=root.start_mark.line + 1,
            column=root.start_mark.column + 1,
            hint="start from examples/plan.yaml",
        )
    data = _select_environment(data, tree, environment)
    interp = _Interpolator(environ, tree)
    data = interp.walk(data, ())
    problems = tree.problems
    plan: Plan | None = None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        problems.extend(_explain(e, data, tree))
    if problems:
        raise _combine(problems, filename, interp.secrets, environment)
    assert plan is not None
    plan._environment = environment
    # credentials typed into the plan (a webhook's token, a Slack URL) are secrets too
    typed = hook_secrets(plan.hooks) | notify_secrets(plan.notify)
    return LoadedPlan(plan=plan, path=Path(filename), source_text=text,
                      secrets=frozenset(interp.secrets | typed))


def plan_environments(path: str | Path) -> list[str]:
    """The names under the plan's ``environments:`` (file order); [] when it has none
    or the file does not parse (loading it reports why)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        root = _compose(text, str(path))
    except (OSError, UnicodeDecodeError, PlanError):
        return []
    if not isinstance(root, MappingNode):
        return []
    return environment_names(_Tree(str(path)).build(root))


def _lenient_duration(value: Any) -> float | None:
    """A duration, or None when it is not one (an unset ``${VAR}`` in an outline)."""
    try:
        return None if value is None else parse_duration(value)
    except ValueError:
        return None


_LenientDuration = Annotated[float | None, BeforeValidator(_lenient_duration)]


class PlanOutline(BaseModel):
    """What operator commands need of a plan: which service, which steps.

    ``pause``, ``resume``, ``approve``, ``rollback``, ``status`` and ``history`` read
    only this, so an operator can act from any terminal without the run's secrets
    exported (an unset ``${VAR}`` elsewhere in the plan is not an error here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    steps: list[float] = Field(min_length=1)
    approvals: list[float] = Field(default_factory=list)
    failure_limit: int = 2
    error_limit: int = 4
    inconclusive_limit: int = 20
    on_failure: str = "rollback"
    bake: _LenientDuration = None
    interval: _LenientDuration = 15.0
    router_types: tuple[str, ...] = ()
    environment: str | None = None
    rehearsal: bool = False

    @property
    def journal_key(self) -> str:
        return journal_key(self.service, self.environment)

    @model_validator(mode="before")
    @classmethod
    def _router_types(cls, data: Any) -> Any:
        if isinstance(data, dict):
            many = data.get("routers")
            members: list[Any] = many if isinstance(many, list) else [data.get("router")]
            types = tuple(m.get("type") for m in members if isinstance(m, dict))
            data = {**data, "router_types": tuple(t for t in types if isinstance(t, str))}
        return data

    @functools.cached_property
    def step_weights(self) -> tuple[Weights, ...]:
        scales = tuple(ROUTER_MODELS[t].SCALE for t in self.router_types if t in ROUTER_MODELS)
        return step_weights(self.steps, scales)


def load_outline(path: str | Path, *, env: Mapping[str, str] | None = None,
                 environment: str | None = None) -> PlanOutline:
    """Read a plan's outline (service, steps, approvals); PlanError with file:line:col."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PlanError("plan file not found", file=str(p), hint="check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlanError(f"cannot read the plan file: {e}", file=str(p)) from None
    filename = str(p)
    root = _compose(text, filename)
    if root is None or not isinstance(root, MappingNode):
        raise PlanError("the plan file has no fields", file=filename, line=1, column=1,
                        hint="start from examples/plan.yaml")
    tree = _Tree(filename)
    data = _select_environment(tree.build(root), tree, environment)
    data = _Interpolator(os.environ if env is None else env, tree, lenient=True).walk(data, ())
    if tree.problems:
        raise _combine(tree.problems, filename, set())
    try:
        return PlanOutline.model_validate({**data, "environment": environment})
    except ValidationError as e:
        first = e.errors()[0]
        path_ = tuple(first["loc"])
        line, col = tree.pos(path_)
        raise PlanError(first["msg"], file=filename, line=line, column=col,
                        field=".".join(str(x) for x in path_)) from None


# --- YAML to plain data, keeping marks ---------------------------------------


@dataclass(frozen=True)
class _Problem:
    pos: _Pos
    message: str
    field: str | None = None
    hint: str | None = None


def _offset_to_pos(text_before: str) -> _Pos:
    return (text_before.count("\n") + 1, len(text_before) - (text_before.rfind("\n") + 1) + 1)


def _compose(text: str, filename: str) -> Node | None:
    yaml = YAML(typ="safe", pure=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a reused anchor: legal YAML
            node: Node | None = yaml.compose(text)
            return node
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = e.problem or e.context or "invalid YAML"
        if e.context and e.problem:
            what = f"{e.problem} ({e.context})"
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        hint = "check indentation and quoting: values containing ': ', '#', '{' or '[' must be quoted"
        if "'\\t'" in what:
            hint = "YAML indents with spaces, not tabs"
        raise PlanError(f"invalid YAML: {what}", file=filename, line=line, column=col, hint=hint) from None
    except ReaderError as e:
        line, col = _offset_to_pos(text[: e.position])
        raise PlanError(
            f"invalid character in YAML: {e.reason}",
            file=filename,
            line=line,
            column=col,
            hint="remove control characters from the file",
        ) from None
    except YAMLError as e:
        raise PlanError(f"invalid YAML: {e}", file=filename, hint="check the file's YAML syntax") from None


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")
)
_MAX_NODES = 100_000  # alias bombs


@dataclass
class _Marks:
    value: _Pos
    key: _Pos | None = None


class _Tree:
    """Plain data from ruamel nodes, with the 1-based position of every key and value."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.marks: dict[_PathKey, _Marks] = {}
        self.problems: list[_Problem] = []
        # paths already reported (bad tag, bad ${}): validation errors there are noise
        self.reported: set[_PathKey] = set()
        self._constructor = YAML(typ="safe", pure=True).constructor
        self._active: set[int] = set()
        self._count = 0

    @staticmethod
    def _pos(node: Node) -> _Pos:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def problem(
        self, path: _PathKey, pos: _Pos, message: str, hint: str | None = None, *, suppress: bool = True
    ) -> None:
        """Record a problem; ``suppress`` hides validation errors at and under ``path``."""
        self.problems.append(_Problem(pos, message, _field_path(path) or None, hint))
        if suppress:
            self.reported.add(path)

    def build(self, node: Node, path: _PathKey = (), key_pos: _Pos | None = None) -> Any:
        pos = self._pos(node)
        if key_pos is not None and isinstance(node, ScalarNode) and node.value == "" and node.style is None:
            pos = key_pos  # an empty value's mark is wherever the next token is
        self.marks[path] = _Marks(pos, key_pos)
        self._count += 1
        if self._count > _MAX_NODES:
            raise PlanError(
                f"the plan expands to more than {_MAX_NODES} YAML nodes",
                file=self.filename,
                line=pos[0],
                column=pos[1],
                hint="check anchors and aliases (*name): one of them expands too much",
            )
        if id(node) in self._active:
            self.problem(path, pos, "a YAML alias refers to a node that contains it", "remove the recursive alias")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, ScalarNode):
                return self._scalar(node, path, pos)
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    self._bad_tag(node, path, pos)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                if node.tag != _MAP_TAG:
                    self._bad_tag(node, path, pos)
                return self._mapping(node, path)
            self.problem(path, pos, f"unsupported YAML node {type(node).__name__}")
            return None
        finally:
            self._active.discard(id(node))

    def _bad_tag(self, node: Node, path: _PathKey, pos: _Pos) -> None:
        self.problem(
            path,
            pos,
            f"unsupported YAML tag {node.tag!r}",
            "remove the tag; to read an environment variable write ${NAME}",
        )

    def _scalar(self, node: ScalarNode, path: _PathKey, pos: _Pos) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self._bad_tag(node, path, pos)
            return None
        try:
            return self._constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, TypeError) as e:
            self.problem(path, pos, f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}: {e}")
            return None

    def _entries(self, node: MappingNode, path: _PathKey, depth: int = 0) -> list[tuple[Node, Node, bool]]:
        """(key, value, merged) in file order, ``<<`` merges expanded (explicit keys win)."""
        out: list[tuple[Node, Node, bool]] = []
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag == _MERGE_TAG and depth < 32:
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for src in sources:
                    if isinstance(src, MappingNode):
                        out.extend((k, v, True) for k, v, _ in self._entries(src, path, depth + 1))
                    else:
                        self.problem(
                            path,
                            self._pos(src),
                            "'<<' merges only mappings",
                            "merge a mapping: <<: *anchor",
                            suppress=False,
                        )
            else:
                out.append((key, value, depth > 0))
        return out

    def _mapping(self, node: MappingNode, path: _PathKey) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        explicit: dict[Any, _Pos] = {}
        for key_node, value_node, merged in self._entries(node, path):
            key_pos = self._pos(key_node)
            if not isinstance(key_node, ScalarNode):
                self.problem(path, key_pos, "a key must be a plain name, not a list or mapping", suppress=False)
                continue
            key = self._scalar(key_node, path, key_pos)
            if key in explicit and not merged:
                first = explicit[key]
                self.problem(
                    (*path, key),
                    key_pos,
                    f"duplicate key {key!r} (first set at line {first[0]}, column {first[1]})",
                    "keep one of them: YAML keys must be unique in a mapping",
                    suppress=False,
                )
                continue
            if key in result and merged:
                continue  # explicit keys override merged ones; first merge wins
            if not merged:
                explicit[key] = key_pos
            result[key] = self.build(value_node, (*path, key), key_pos)
        return result

    def pos(self, path: _PathKey, *, key: bool = False) -> _Pos:
        """Position of the node at ``path``, or of its nearest existing ancestor."""
        for n in range(len(path), -1, -1):
            marks = self.marks.get(path[:n])
            if marks is not None:
                if key and n == len(path) and marks.key is not None:
                    return marks.key
                return marks.value
        return (1, 1)


# --- ${VAR} interpolation ----------------------------------------------------

_VAR_START = re.compile(r"\$\$\{|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Interpolator:
    def __init__(self, env: Mapping[str, str], tree: _Tree, *, lenient: bool = False) -> None:
        self.env = env
        self.tree = tree
        self.lenient = lenient  # unset variables stay as written (outline reads only)
        self.secrets: set[str] = set()

    def walk(self, data: Any, path: _PathKey) -> Any:
        if isinstance(data, str):
            return self.expand(data, path)
        if isinstance(data, list):
            return [self.walk(v, (*path, i)) for i, v in enumerate(data)]
        if isinstance(data, dict):
            return {k: self.walk(v, (*path, k)) for k, v in data.items()}
        return data

    def expand(self, text: str, path: _PathKey) -> str:
        if "${" not in text:
            return text
        out: list[str] = []
        pos = 0
        while (m := _VAR_START.search(text, pos)) is not None:
            out.append(text[pos : m.start()])
            if m.group() == "$${":
                out.append("${")
                pos = m.end()
                continue
            close = text.find("}", m.end())
            if close < 0:
                return self._fail(path, text, "has '${' without a closing '}'", "write ${NAME}, or $${ for a literal ${")
            body = text[m.end() : close]
            name, sep, default = body.partition(":-")
            if not _VAR_NAME.fullmatch(name):
                return self._fail(
                    path,
                    text,
                    f"has '${{{body}}}', which is not a variable reference",
                    "write ${NAME} or ${NAME:-default}; NAME is letters, digits and _; $${ gives a literal ${",
                )
            if "${" in default:
                return self._fail(path, text, f"nests ${{...}} inside the default of ${{{name}}}", "nesting is not supported")
            value = self.env.get(name)
            if value is None or (sep and value == ""):
                if not sep and self.lenient:
                    out.append(text[m.start() : close + 1])
                    pos = close + 1
                    continue
                if not sep:
                    pos_ = self.tree.pos(path)
                    self.tree.problem(
                        path,
                        pos_,
                        f"environment variable {name} is not set (used as ${{{name}}})",
                        f"export {name}=... before running shiftover, or give a default: ${{{name}:-value}}",
                    )
                    return text
                value = default
            elif value:
                self.secrets.add(value)
            out.append(value)
            pos = close + 1
        out.append(text[pos:])
        return "".join(out)

    def _fail(self, path: _PathKey, text: str, what: str, hint: str) -> str:
        self.tree.problem(path, self.tree.pos(path), f"the value {what}", hint)
        return text


# --- pydantic errors to human messages ---------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_EXAMPLES: dict[str, str] = {
    "service": "accounting-web",
    "router": "{type: haproxy, socket: /run/haproxy/admin.sock, backend: web, old: ec2, new: eks}",
    "routers": "[{type: route53, ...}, {type: alb, ...}]",
    "steps": "[1, 5, 25, 50, 100]",
    "bake": "5m",
    "normal_state": "[{name: health, type: http, url: 'http://127.0.0.1:8081/health'}]",
    "name": "new environment 5xx ratio",
    "url": "http://127.0.0.1:9090",
    "query": "sum(rate(http_requests_total{code=~'5..'}[1m]))",
    "socket": "/run/haproxy/admin.sock",
    "backend": "web",
    "server": "eks",
    "old": "ec2",
    "new": "eks",
    "max": "0.01",
    "type": "one of the known types",
}


def _field_path(path: _PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _IDENT.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _describe(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the text {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _data_path(loc: tuple[Any, ...], data: Any) -> _PathKey:
    """Pydantic's loc -> a path in the data (drops discriminator tags, keeps '[key]')."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if part == "[key]":
            path.append(part)
            node = None
            continue
        if isinstance(node, dict):
            if part not in node and part == node.get("type") and part in GATE_TYPES + ROUTER_TYPES:
                continue  # the discriminator's tag, not a key
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        path.append(part)
    return tuple(path)


def _get(data: Any, path: _PathKey) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _is_router(path: _PathKey) -> bool:
    return path == ("router",) or (len(path) == 2 and path[0] == "routers" and isinstance(path[1], int))


def _model_at(path: _PathKey, data: Any) -> type[BaseModel] | None:
    if path == ():
        return Plan
    node = _get(data, path)
    kind = node.get("type") if isinstance(node, dict) else None
    if _is_router(path):
        return ROUTER_MODELS.get(kind) if isinstance(kind, str) else None
    if len(path) == 2 and path[0] == "normal_state" and isinstance(path[1], int):
        return GATE_MODELS.get(kind) if isinstance(kind, str) else None
    if len(path) > 2 and path[0] == "normal_state":  # inside a gate: a source, its old/new
        parent = _model_at(path[:-1], data)
        field = parent.model_fields.get(str(path[-1])) if parent is not None else None
        if field is None:
            return None
        models = _models_in(field.annotation)
        if len(models) > 1:  # a union of sources: the one its type names
            models = [m for m in models if kind in _literal_tags(m)]
        return models[0] if len(models) == 1 else None
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _missing_hint(name: str, path: _PathKey, data: Any) -> str:
    """How to add a missing field: the plan's usual example, or inside a gate what the
    field's own model asks for (a source's ``new: {requests: ..., errors: ...}``)."""
    model = _model_at(path[:-1], data) if path[:1] == ("normal_state",) else None
    field = model.model_fields.get(name) if model is not None else None
    if field is not None and len(path) > 3:
        inner = _models_in(field.annotation)
        if len(inner) == 1:
            required = [k for k, f in inner[0].model_fields.items() if f.is_required()]
            return f"add {name}: {{{', '.join(f'{k}: ...' for k in required)}}}"
        if field.description:
            return f"add {name}: ... ({field.description})"
    example = _EXAMPLES.get(name)
    return f"add {name}: {example}" if example else f"add {name}: to this mapping"


def _suggest(word: Any, choices: list[str] | tuple[str, ...]) -> str | None:
    if not isinstance(word, str):
        return None
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def _type_kind(path: _PathKey, data: Any) -> tuple[str, tuple[str, ...]]:
    """What a ``type`` at ``path`` names, and the known ones: a router's, a gate's, or
    a compare gate's source (its gate's own registry)."""
    if path[:1] in (("router",), ("routers",)):
        return "router", ROUTER_TYPES
    if path and path[-1] == "source":
        model = _model_at(path[:-1], data)
        field = model.model_fields.get("source") if model is not None else None
        return "source", tuple(sorted(_literal_tags(field.annotation))) if field else ()
    return "gate", GATE_TYPES


def _literal_tags(annotation: Any) -> set[str]:
    """The ``type`` literals of a (possibly Annotated) union of spec models."""
    return {str(t) for m in _models_in(annotation) if "type" in m.model_fields
            for t in typing.get_args(m.model_fields["type"].annotation)}


def _explain(error: ValidationError, data: Any, tree: _Tree) -> list[_Problem]:
    problems: list[_Problem] = []
    seen: set[tuple[_Pos, str]] = set()
    for e in error.errors(include_url=False):
        problem = _explain_one(e, data, tree)
        if problem is None or (problem.pos, problem.message) in seen:
            continue
        seen.add((problem.pos, problem.message))
        problems.append(problem)
    return problems


def _explain_one(e: Any, data: Any, tree: _Tree) -> _Problem | None:
    kind: str = e["type"]
    ctx: dict[str, Any] = e.get("ctx") or {}
    path = _data_path(tuple(e["loc"]), data)
    if kind == "plan_rule":
        path = path + tuple(ctx.get("at", ()))
    if any(path[:n] in tree.reported for n in range(len(path) + 1)):
        return None  # already explained (unset ${VAR}, bad YAML tag)
    value = e.get("input")
    name = path[-1] if path else None

    def at(p: _PathKey, message: str, hint: str | None = None, *, key: bool = False) -> _Problem:
        if p[-1:] == ("[key]",):  # the error is about a mapping key, not its value
            p, key, message = p[:-1], True, f"key: {message}"
        return _Problem(tree.pos(p, key=key), message, _field_path(p) or None, hint)

    if kind == "missing":
        hint = _missing_hint(str(name), path, data)
        if name == "type":
            _, types = _type_kind(path[:-1], data)
            hint = f"add type: one of {', '.join(sorted(types))}"
        return _Problem(tree.pos(path[:-1]), f"missing required field '{name}'", _field_path(path), hint)
    if kind == "extra_forbidden":
        model = _model_at(path[:-1], data)
        known = sorted(model.model_fields) if model is not None else []
        if model is Plan:  # read by the loader before validation, allowed all the same
            known = sorted([*known, ENVIRONMENTS_KEY])
        message = f"unknown field '{name}'"
        guess = _suggest(name, known)
        if guess:
            message += f" — did you mean '{guess}'?"
        if path[:1] == ("normal_state",) and isinstance(name, str):
            owners = sorted(t for t, m in GATE_MODELS.items() if name in m.model_fields)
            if owners:
                message += f" ('{name}' belongs to gate type {', '.join(owners)})"
        return at(path, message, f"fields allowed here: {', '.join(known)}" if known else None, key=True)
    if kind == "union_tag_invalid":
        what, types = _type_kind(path, data)
        tag = ctx.get("tag", value)
        type_path = (*path, "type")
        guess = _suggest(tag, types)
        return at(
            type_path,
            f"unknown {what} type {tag!r} at {_field_path(type_path)}; known types: {', '.join(sorted(types))}",
            f"did you mean '{guess}'?" if guess else None,
        )
    if kind == "union_tag_not_found":
        what, types = _type_kind(path, data)
        return _Problem(
            tree.pos(path),
            "missing required field 'type'",
            _field_path((*path, "type")),
            f"add type: one of {', '.join(sorted(types))}",
        )
    if kind in ("model_attributes_type", "model_type", "dict_type"):
        return at(path, f"expected a mapping (name: value lines), got {_describe(value)}",
                  _mapping_hint(path, data))
    if kind == "list_type":
        example = _EXAMPLES.get(str(name))
        return at(
            path,
            f"expected a list, got {_describe(value)}",
            f"write {name}: {example}" if name == "steps" and example else "write [a, b] or one '- item' per line",
        )
    if kind == "too_short" and path == ("routers",):
        return at(path, f"routers moves several routers in lockstep; this list has {len(value or [])}",
                  "for one router write router: {type: ..., ...} instead of routers:")
    if kind in ("too_short", "string_too_short"):
        example = _EXAMPLES.get(str(name))
        return at(path, f"{_field_path(path)} must not be empty", f"for example {name}: {example}" if example else None)
    if kind == "string_type":
        quote = 'quote it to make it text, e.g. "500"'
        if value is None:
            quote = "give it a value"
        elif not isinstance(value, int | float | bool):
            quote = "write it as text"
        return at(path, f"expected text, got {_describe(value)}", quote)
    if kind in ("float_parsing", "float_type"):
        return at(path, f"expected a number, got {_describe(value)}")
    if kind == "finite_number":
        return at(path, f"expected a finite number, got {_describe(value)}", "remove .nan/.inf")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return at(path, f"expected a whole number, got {_describe(value)}")
    if kind in ("bool_type", "bool_parsing"):
        return at(path, f"expected true or false, got {_describe(value)}")
    if kind == "literal_error":
        guess = _suggest(value, re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return at(
            path,
            f"{value!r} is not allowed here; expected {ctx.get('expected')}",
            f"did you mean '{guess}'?" if guess else None,
        )
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return at(path, f"{_field_path(path)} must be {words} {ctx.get(key)}, got {_describe(value)}",
                  _default_hint(path, data))
    if kind == "string_pattern_mismatch" and path == ("service",):
        return at(
            path,
            f"service name {value!r} may only contain letters, digits, '.', '_' and '-', and must start with a letter or digit",
            "e.g. service: accounting-web",
        )
    if kind == "value_error" and "error" in ctx:
        return at(path, str(ctx["error"]))
    return at(path, str(ctx.get("message", e.get("msg", "invalid value"))))


def _default_hint(path: _PathKey, data: Any) -> str | None:
    """A value out of range: what the field means and its default, when it has one."""
    model = _model_at(path[:-1], data) if path else None
    field = model.model_fields.get(str(path[-1])) if model is not None else None
    if field is None or field.is_required() or field.default is None:
        return None
    text = f"e.g. {path[-1]}: {field.default:g}" if isinstance(field.default, int | float) \
        else None
    if text and field.description:
        text += f" (the default: {field.description})"
    return text


def _mapping_hint(path: _PathKey, data: Any = None) -> str | None:
    if _is_router(path):
        return f"for example router: {_EXAMPLES['router']}"
    if path[:1] == ("normal_state",) and len(path) > 3:  # inside a gate: a source's part
        return _missing_hint(str(path[-1]), path, data).replace("add ", "write ", 1)
    if path[:1] == ("normal_state",):
        return "each gate is a mapping: - name: ..., type: ..., followed by the type's fields"
    return None


def _combine(problems: list[_Problem], filename: str, secrets: set[str],
             environment: str | None = None, what: str = "plan") -> PlanError:
    """One PlanError for every problem; ``what`` names the file's kind ("script")."""
    hide = frozenset(secrets)
    ordered = sorted(problems, key=lambda p: p.pos)
    first = ordered[0]
    context = f" (environment {environment})" if environment is not None else ""
    if len(ordered) == 1:
        return PlanError(
            redact(first.message, hide) + context,
            file=filename,
            line=first.pos[0],
            column=first.pos[1],
            field=first.field,
            hint=redact(first.hint, hide) if first.hint else None,
        )
    lines = [f"{len(ordered)} problems in the {what}{context}:"]
    for p in ordered:
        text = f"  {filename}:{p.pos[0]}:{p.pos[1]}: {redact(p.message, hide)}"
        if p.field:
            text += f" (field: {p.field})"
        lines.append(text)
        if p.hint:
            lines.append(f"      hint: {redact(p.hint, hide)}")
    error = PlanError("\n".join(lines), file=filename)
    # the first problem's place, for callers that show one location
    error.line, error.column, error.field = first.pos[0], first.pos[1], first.field
    return error


__all__ = [
    "GATE_MODELS",
    "GATE_TYPES",
    "MAX_DURATION",
    "ROUTER_MODELS",
    "ROUTER_TYPES",
    "Duration",
    "GateSpec",
    "LoadedPlan",
    "Plan",
    "RouterSpec",
    "load_plan",
    "parse_duration",
    "parse_plan_text",
    "plan_hash",
    "plan_json_schema",
    "redact",
    "redact_values",
    "step_weights",
]


# --- environments: named overlays over the base plan --------------------------

ENVIRONMENTS_KEY = "environments"
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REMOVE_KEY = "remove"  # `- {name: X, remove: true}` in an overlay's normal_state drops gate X


def environment_names(data: Any) -> list[str]:
    """The environments a plan's parsed data defines, in file order."""
    envs = data.get(ENVIRONMENTS_KEY) if isinstance(data, dict) else None
    return [str(k) for k in envs] if isinstance(envs, dict) else []


def _select_environment(data: dict[Any, Any], tree: _Tree, environment: str | None) -> dict[Any, Any]:
    """The effective plan's data: the base with ``environments[environment]`` merged over it.

    Merge rules (those of JSON Merge Patch, RFC 7386, plus gates by name):
    a mapping merges into a mapping key by key, recursively; ``null`` removes the
    key; a list or a scalar replaces what the base has -- except ``normal_state``,
    whose gates merge by ``name`` (an overlay gate named like a base gate is merged
    into it; a new name is appended; ``remove: true`` drops the base gate). A
    mapping whose ``type`` changes (a router or gate of another kind) replaces the
    base's whole: an HAProxy router's socket means nothing to a Route53 one.

    The marks of every value taken from the overlay are moved to its place in the
    effective plan, so an error in a value the overlay set names the overlay's line.
    """
    envs = data.get(ENVIRONMENTS_KEY)
    base = {k: v for k, v in data.items() if k != ENVIRONMENTS_KEY}
    names = environment_names(data)
    key_path: _PathKey = (ENVIRONMENTS_KEY,)
    if envs is not None and not isinstance(envs, dict):
        raise _plan_error(tree, key_path, "environments: must be a mapping of environment names to overlays",
                          "e.g. environments: {staging: {steps: [50, 100]}, production: {}}")
    if environment is None:
        if names:
            line, col = tree.pos(key_path, key=True)
            raise PlanError(
                f"this plan defines environments ({', '.join(names)}): say which one with --env",
                file=tree.filename, line=line, column=col,
                hint="add one of: " + ", ".join(f"--env {shlex.quote(n)}" for n in names))
        return base
    if not names:
        raise PlanError(
            f"--env {environment}: this plan defines no environments",
            file=tree.filename, line=1, column=1,
            hint="leave --env out, or add environments: {" + f"{environment}: " + "{...}} to the plan")
    assert isinstance(envs, dict)
    if environment not in envs:
        guess = next((n for n in names if n.startswith(environment)), None) or _suggest(environment, names)
        line, col = tree.pos(key_path, key=True)
        raise PlanError(
            f"--env {environment}: no such environment in the plan (it defines {', '.join(names)})",
            file=tree.filename, line=line, column=col,
            hint=f"did you mean --env {shlex.quote(guess)}?" if guess else
            f"use one of: {', '.join('--env ' + shlex.quote(n) for n in names)}")
    for name in names:  # every overlay is checked, not only the chosen one
        where: _PathKey = (ENVIRONMENTS_KEY, name)
        if not _ENV_NAME.match(name):
            tree.problem(where, tree.pos(where, key=True),
                         f"environment name {name!r} must be letters, digits, '.', '_' or '-'",
                         "e.g. staging, production, eu-prod", suppress=False)
        overlay = envs[name]
        if overlay is not None and not isinstance(overlay, dict):
            tree.problem(where, tree.pos(where),
                         f"environment {name!r} must be a mapping of plan fields, found {_describe(overlay)}",
                         "e.g. staging: {steps: [50, 100], bake: 1m}", suppress=False)
            continue
        for key in (overlay or {}):
            if key in (ENVIRONMENTS_KEY, "service"):
                tree.problem((*where, key), tree.pos((*where, key), key=True),
                             f"environment {name!r} cannot set {key}: "
                             + ("environments do not nest" if key == ENVIRONMENTS_KEY else
                                "the service is the same in every environment (the journal keeps "
                                "each environment's runs apart as service@environment)"),
                             f"move {key} to the top level of the plan", suppress=False)
    overlay = envs[environment] or {}
    if not isinstance(overlay, dict):
        return base  # reported above
    overlay = {k: v for k, v in overlay.items() if k not in (ENVIRONMENTS_KEY, "service")}
    merged: dict[Any, Any] = _Overlay(tree).merge(base, overlay, (), (ENVIRONMENTS_KEY, environment))
    return merged


class _Overlay:
    """One merge of an overlay into the base data, moving marks as values move."""

    def __init__(self, tree: _Tree) -> None:
        self.tree = tree

    def _move_marks(self, src: _PathKey, dst: _PathKey) -> None:
        n = len(src)
        marks = self.tree.marks
        for p in [p for p in marks if p[:len(dst)] == dst and p != dst]:
            del marks[p]  # what the base had under dst is gone
        for p in [p for p in marks if p[:n] == src]:
            marks[(*dst, *p[n:])] = marks[p]
        for p in [p for p in self.tree.reported if p[:n] == src]:
            self.tree.reported.add((*dst, *p[n:]))

    def merge(self, base: Any, over: Any, dst: _PathKey, src: _PathKey) -> Any:
        retyped = isinstance(base, dict) and isinstance(over, dict) and \
            "type" in over and over["type"] != base.get("type")
        if isinstance(base, dict) and isinstance(over, dict) and not retyped:
            out = dict(base)
            for k, v in over.items():
                if v is None:
                    out.pop(k, None)
                elif dst == () and k == "normal_state" and isinstance(base.get(k), list) and isinstance(v, list):
                    out[k] = self._gates(base[k], v, (k,), (*src, k))
                else:
                    out[k] = self.merge(out.get(k), v, (*dst, k), (*src, k))
                    key_marks = self.tree.marks.get((*src, k))
                    if k not in base and key_marks is not None:
                        self.tree.marks[(*dst, k)] = key_marks
            return out
        self._move_marks(src, dst)
        return over

    def _gates(self, base: list[Any], over: list[Any], dst: _PathKey, src: _PathKey) -> list[Any]:
        out = list(base)
        index = {g.get("name"): i for i, g in enumerate(base) if isinstance(g, dict)}
        names = [str(n) for n in index if n is not None]
        dropped: set[int] = set()
        seen: dict[Any, int] = {}
        for j, gate in enumerate(over):
            name = gate.get("name") if isinstance(gate, dict) else None
            i = index.get(name) if name is not None else None
            if name is not None and name in seen:
                self.tree.problem((*src, j, "name"), self.tree.pos((*src, j, "name")),
                                  f"gate {name!r} is listed twice in this environment's "
                                  f"normal_state (first as item {seen[name] + 1})",
                                  "say everything about a gate in one item (to replace a base "
                                  "gate, change its fields, or give it another name)", suppress=False)
                continue
            if name is not None:
                seen[name] = j
            if isinstance(gate, dict) and gate.get(REMOVE_KEY) is True:
                extra = [k for k in gate if k not in ("name", REMOVE_KEY)]
                if i is None:
                    guess = _suggest(name, names)
                    self.tree.problem((*src, j), self.tree.pos((*src, j, "name")),
                                      f"remove: no gate named {name!r} in the base plan's normal_state"
                                      + (f" — did you mean {guess!r}?" if guess else ""),
                                      "name a gate of the base plan", suppress=False)
                elif extra:
                    self.tree.problem((*src, j, extra[0]), self.tree.pos((*src, j, extra[0]), key=True),
                                      f"a gate removed with remove: true takes no other field "
                                      f"({', '.join(map(str, extra))})",
                                      "drop the other fields, or drop remove: true to change the gate",
                                      suppress=False)
                else:
                    dropped.add(i)
                continue
            if i is not None:
                out[i] = self.merge(base[i], gate, (*dst, i), (*src, j))
            elif isinstance(gate, dict) and "type" not in gate and isinstance(name, str):
                # no such base gate, and not a whole new gate either: a misspelt name
                guess = _suggest(name, names)
                self.tree.problem(
                    (*src, j, "name"), self.tree.pos((*src, j, "name")),
                    f"no gate named {name!r} in the base plan's normal_state"
                    + (f" — did you mean {guess!r}?" if guess else ""),
                    "to change a base gate, give its exact name; to add a gate, give it a "
                    "type: and its fields", suppress=False)
            else:
                out.append(gate)
                self._move_marks((*src, j), (*dst, len(out) - 1))
        if not dropped:
            return out
        kept = [i for i in range(len(out)) if i not in dropped]
        self._renumber(dst, {old: new for new, old in enumerate(kept)})
        return [out[i] for i in kept]

    def _renumber(self, dst: _PathKey, moves: dict[int, int]) -> None:
        """Items of the list at ``dst`` move (old index -> new; absent: dropped): their
        marks and their already-reported problems move with them."""
        n = len(dst)

        def moved(p: _PathKey) -> _PathKey | None:
            if p[:n] != dst or len(p) <= n:
                return p
            old = p[n]
            new = moves.get(old) if isinstance(old, int) else None
            return None if new is None else (*dst, new, *p[n + 1:])

        marks = {}
        for p, m in self.tree.marks.items():
            q = moved(p)
            if q is not None:
                marks[q] = m
        self.tree.marks = marks
        self.tree.reported = {q for q in map(moved, self.tree.reported) if q is not None}


def _plan_error(tree: _Tree, path: _PathKey, message: str, hint: str) -> PlanError:
    line, col = tree.pos(path)
    return PlanError(message, file=tree.filename, line=line, column=col, hint=hint)
