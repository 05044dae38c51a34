"""Several routers moved in lockstep: a plan's ``routers:`` list.

A migration often moves more than one thing at once: the public DNS name
(Route53 weighted records) and the internal target groups (an ALB listener).
Every step applies to all of them; the group behaves as one router:

- ``read()`` is the HIGHEST new share among the members. The engine's rule "the
  router is never left above the last confirmed step" then holds for every
  member: a member left higher by a step that failed half-way reads as "above
  confirmed", and the next tick sends the whole group back.
  ``read_range()`` gives the lowest share too: a member someone lowered by hand
  (an operator's emergency 0% on the ALB, say) is an outside decrease the
  engine must honour, not a split to climb back from (see ``decide``).
- ``apply(w)`` writes every member, in order, and tries all of them even when
  one fails (a rollback must reach every member it can); then raises one
  RouterError naming each member that failed. A member whose write propagates
  (Route53, until INSYNC) is written with ``submit`` and waited on with
  ``settle`` after every member was written: its propagation never holds back
  another member's write. Each member's outcome is kept in
  ``last_report`` for the journal.
- ``verify(w)`` is True only when every member shows ``w``; False when any shows
  something else; None when none disagrees but one cannot tell.
- ``lease_keys()`` are the members' own keys, sorted: the run holds one lease
  per member (taken in that order), so a plan driving the ALB alone and a
  lockstep plan driving the same ALB can never run at once. ``lease_key()`` is
  the first of them: the key views and ``rollback`` look a run up by.

A member that the plan lists twice (the same lease key) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shiftover.errors import LeaseLost, RouterConfigError, RouterError, ShiftoverError
from shiftover.routers.base import Router
from shiftover.types import Weights


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ShiftoverError) else f"{type(exc).__name__}: {exc}"


class LockstepRouter:
    """Every member set to the same split at each step (see the module docstring)."""

    def __init__(self, members: Sequence[Router]) -> None:
        if len(members) < 2:
            raise RouterConfigError("a lockstep group needs at least two routers",
                                    hint="use router: for a single one")
        self.members = list(members)
        keys = [m.lease_key() for m in self.members]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise RouterConfigError(
                    f"routers[{i}] drives the same target as routers[{keys.index(key)}] ({key})",
                    hint="list each router once")
        self._keys = keys
        self.last_report: list[dict[str, Any]] = []

    def describe(self) -> str:
        return "lockstep: " + " + ".join(m.describe() for m in self.members)

    def lease_key(self) -> str:
        return sorted(self._keys)[0]

    def lease_keys(self) -> list[str]:
        return sorted(self._keys)

    def read_range(self) -> tuple[Weights, Weights]:
        """(lowest, highest) new share among the members; RouterError if any is unreadable."""
        seen: list[Weights] = []
        for i, m in enumerate(self.members):
            try:
                seen.append(m.read())
            except Exception as exc:
                # a member's misconfigured target is the group's (RouterConfigError:
                # `run` refuses it with exit 2 before anything is written)
                kind = type(exc) if isinstance(exc, RouterError) else RouterError
                raise kind(f"routers[{i}] ({m.describe()}): {_message(exc)}",
                           hint=getattr(exc, "hint", None)) from None
        return min(seen), max(seen)

    def read(self) -> Weights:
        return self.read_range()[1]

    @property
    def scales(self) -> tuple[int, ...]:
        return tuple(int(getattr(m, "scale", 0)) for m in self.members)

    def apply(self, weights: Weights) -> None:
        # a split one member cannot express moves no member (plans are mapped onto
        # every member's scale when they are loaded)
        for i, (m, scale) in enumerate(zip(self.members, self.scales, strict=True)):
            if scale and not weights.expressible(scale):
                raise RouterError(
                    f"routers[{i}] ({m.describe()}): {weights} cannot be set exactly with integer "
                    f"weights 0-{scale}; nothing was written to any router",
                    hint="use a split every router's scale expresses (plans are mapped when loaded)")
        report: list[dict[str, Any]] = []
        failed: list[str] = []
        # every member is written before any is waited on: a router whose write
        # propagates (Route53 until INSYNC) offers submit/settle, and its wait must not
        # hold back another member's write (a rollback reaches the ALB at once)
        submitted: list[int] = []
        for i, m in enumerate(self.members):
            report.append({"router": m.describe(), "ok": True})
            try:
                submit = getattr(m, "submit", None)
                if submit is not None and hasattr(m, "settle"):
                    submit(weights)
                    submitted.append(i)
                else:
                    m.apply(weights)
            except Exception as exc:
                report[i] = {"router": m.describe(), "ok": False, "error": _message(exc)}
                failed.append(f"routers[{i}] ({m.describe()}): {_message(exc)}")
        for i in submitted:
            m = self.members[i]
            try:
                m.settle()  # type: ignore[attr-defined]
            except LeaseLost:
                raise  # the run lost control: it must hear it as such, not as a refusal
            except Exception as exc:
                report[i] = {"router": m.describe(), "ok": False, "error": _message(exc)}
                failed.append(f"routers[{i}] ({m.describe()}): {_message(exc)}")
        self.last_report = report
        if failed:
            done = len(self.members) - len(failed)
            raise RouterError(
                f"{len(failed)} of {len(self.members)} routers did not take {weights} "
                f"({done} did): " + "; ".join(failed),
                hint="the next check reads every router and reconciles the group")

    def verify(self, weights: Weights) -> bool | None:
        answers = [m.verify(weights) for m in self.members]
        if any(a is False for a in answers):
            return False
        if any(a is None for a in answers):
            return None
        return True


__all__ = ["LockstepRouter"]
