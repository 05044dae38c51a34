"""``shiftover diff``: what differs between two environments' effective plans.

The question it answers is the one a team asks before production: *would the
procedure we rehearsed on staging apply to production?* So it compares what the
run does, not how the file is written: the effective plans (overlay merged) as
the engine sees them, with the steps as the routers set them exactly and the
minimum duration the plan implies. Gates are matched by name (the overlay merges
them by name too), so a gate present in one environment only shows as such
instead of shifting every later gate by one.

Values are shown as written in the plan (durations in seconds, as the engine
holds them); secrets (values that came from ``${VAR}``) are masked by the
caller's redactor before anything is compared or printed, so two different
tokens show as ``***`` on both sides and never leak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from shiftover.engine.build import minimum_duration
from shiftover.plan import Plan, redact_values
from shiftover.types import Weights

# the groups a difference is filed under, in the order a reader checks a procedure
GROUPS = ("router", "steps", "timing", "gates", "limits", "approvals", "load", "contacts", "other")
_GROUP_OF = {
    "router": "router", "routers": "router", "steps": "steps", "step_splits": "steps",
    "bake": "timing", "interval": "timing", "minimum_duration": "timing",
    "normal_state": "gates", "failure_limit": "limits", "error_limit": "limits",
    "inconclusive_limit": "limits", "on_failure": "limits", "approvals": "approvals",
    "load": "load", "contacts": "contacts",
}


@dataclass(frozen=True)
class Difference:
    group: str
    field: str          # e.g. normal_state[errors].max
    a: Any              # the first environment's value (None: not set there)
    b: Any
    a_has: bool = True  # the field exists in the first environment's plan
    b_has: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "field": self.field, "a": self.a, "b": self.b,
                "in_a": self.a_has, "in_b": self.b_has}


def effective(plan: Plan) -> dict[str, Any]:
    """The plan as the run uses it: fields, the exact splits, the minimum duration."""
    data = plan.model_dump(mode="json", exclude={"service", "router", "routers"})
    members = [m.model_dump(mode="json") for m in plan.members]
    data = {"router": members[0] if len(members) == 1 else members, **data}
    data["step_splits"] = [w.exact for w in plan.step_weights]
    data["minimum_duration"] = minimum_duration(plan)
    return data


def _flatten(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        if not value:
            yield path, {}
        for k, v in value.items():
            yield from _flatten(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list) and path == "normal_state":
        for gate in value:
            name = gate.get("name", "?") if isinstance(gate, dict) else "?"
            yield from _flatten({k: v for k, v in gate.items() if k != "name"},
                                f"normal_state[{name}]")
            yield f"normal_state[{name}]", f"{gate.get('type', '?')} gate"
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{path}[{i}]")
    else:
        yield path, value


def diff_plans(a: Plan, b: Plan, *, redact: Callable[[str], str] = lambda s: s) -> list[Difference]:
    """Every field whose value differs between ``a`` and ``b``, in reading order.

    Values are compared as loaded (two different secrets differ) and shown redacted: a
    secret on either side reads ``***``, and ``*** (differs)`` when only secrets differ."""
    ea, eb = effective(a), effective(b)
    out: list[Difference] = []
    if _kinds(a) != _kinds(b):  # routers of other kinds: their fields do not compare
        out.append(Difference("router", "router", _routers(a, redact), _routers(b, redact)))
        del ea["router"], eb["router"]
    # a field set to nothing and a field absent read the same
    fa = {k: v for k, v in _flatten(ea, "") if v is not None}
    fb = {k: v for k, v in _flatten(eb, "") if v is not None}
    gates = {f"normal_state[{g.name}]" for p in (a, b) for g in p.normal_state}
    for field in list(dict.fromkeys([*fa, *fb])):
        va, vb = fa.get(field), fb.get(field)
        if field in fa and field in fb and va == vb:
            continue
        gate = _gate_of(field, gates)
        if gate == field:
            if field in fa and field in fb:
                continue
            # a gate in one environment only: one row says so, its fields are not listed
        elif gate is not None and (gate not in fa or gate not in fb):
            continue
        shown_a, shown_b = redact_values(va, redact), redact_values(vb, redact)
        if field in fa and field in fb and shown_a == shown_b:
            shown_b = f"{show(shown_b, True, field)} (differs)"  # secrets that differ
        top = field.split(".", 1)[0].split("[", 1)[0]
        out.append(Difference(_GROUP_OF.get(top, "other"), redact(field), shown_a, shown_b,
                              field in fa, field in fb))
    steps_differ = any(d.field == "steps" for d in out)
    if steps_differ and all([str(Fraction(str(s))) for s in p.steps] == [w.exact for w in p.step_weights]
                            for p in (a, b)):
        out = [d for d in out if d.field != "step_splits"]  # the same news twice
    out.sort(key=lambda d: GROUPS.index(d.group))
    return out


def _kinds(plan: Plan) -> list[str]:
    return [m.type for m in plan.members]


def _routers(plan: Plan, redact: Callable[[str], str]) -> str:
    """The routers in one line: kind and target of each (lockstep members joined by +)."""
    return " + ".join(redact(m.lease_target() or m.type) for m in plan.members)


def _gate_of(field: str, gates: set[str]) -> str | None:
    """The gate a field belongs to (``normal_state[NAME]``), matched against the plans'
    gate names: a name may itself hold ``]`` or ``.``."""
    for gate in sorted(gates, key=len, reverse=True):
        if field == gate or field.startswith(gate + "."):
            return gate
    return None


# fields held in seconds: shown with their unit
_SECONDS = ("bake", "interval", "minimum_duration", "timeout", "window", "lookback", "for",
            "offset", "duration", "warm_up")


def show(value: Any, present: bool, field: str = "") -> str:
    """A value for the table: '-' when the field is not in that environment's plan."""
    if not present:
        return "-"
    if field == "step_splits" and isinstance(value, list):
        return "[" + ", ".join(str(Weights(Fraction(str(v)))) for v in value) + "]"
    leaf = field.rsplit(".", 1)[-1]
    if leaf in _SECONDS and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}s"
    if isinstance(value, list):
        return "[" + ", ".join(show(v, True) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


__all__ = ["GROUPS", "Difference", "diff_plans", "effective", "show"]
