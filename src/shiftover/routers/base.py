"""The Router contract: how traffic is split between the old and new environment.

A router is the source of truth for weights. The engine reads it on every tick
before deciding, and trusts nothing it wrote earlier until ``read`` or ``verify``
shows it.

- ``read()`` returns the split the backend really serves now, exactly (a
  ``Weights`` built from the backend's own integers). It raises RouterError when
  the backend cannot be reached or when the split is not what the weights say
  (a server in maintenance or down by health check, a third server taking
  traffic, both weights 0): a split that is not known is an error, never a guess.
- ``apply(weights)`` sets the split. Idempotent: applying the weights the backend
  already has is a no-op that succeeds. It validates ranges itself and raises
  RouterError on refusal, including a split its integer scale cannot express
  exactly (plans are mapped onto the scale when they are loaded). When a change
  takes several writes, every intermediate split lies between the current and
  the target one.
- ``verify(weights)`` returns True when the backend serves exactly ``weights``,
  False when it serves something else, None when the backend cannot tell (e.g.
  a DNS provider that only accepts changes). ``verify(0%)`` must not need
  ``read()``: a rollback ends on "the new environment gets nothing", whatever
  state someone put the servers in.
- ``lease_key()`` names what the router drives (HAProxy socket + backend), so
  that two plans, or two copies of one plan, can never drive it at once.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from shiftover.errors import RouterError
from shiftover.types import Weights


@runtime_checkable
class Router(Protocol):
    def describe(self) -> str:
        """One line naming the backend, e.g. 'haproxy web/ec2,eks via /run/haproxy.sock'."""
        ...

    def lease_key(self) -> str:
        """What this router drives, canonical: the key of the one-writer lease."""
        ...

    def read(self) -> Weights: ...

    def apply(self, weights: Weights) -> None: ...

    def verify(self, weights: Weights) -> bool | None: ...


def backend_pair(router: object, weights: Any, scale: int, where: str) -> tuple[int, int]:
    """The integer ``(old, new)`` weights a router writes for ``weights`` on its
    ``0..scale``: a RouterError, before anything is written, for a value that is not
    a :class:`Weights` or a split the scale cannot express exactly (``where`` names
    the target in the message)."""
    if not isinstance(weights, Weights):
        raise RouterError(
            f"{type(router).__name__}.apply needs a Weights value, got {type(weights).__name__}")
    try:
        return weights.to_backend(scale)
    except ValueError as exc:
        raise RouterError(
            f"{where}: {exc}",
            hint=f"use a split the 0-{scale} scale expresses exactly (plans are mapped when loaded)",
        ) from None

