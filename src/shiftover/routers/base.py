"""The Router contract: how traffic is split between the old and new environment.

A router is the source of truth for weights. The engine reads it on every tick
before deciding, and trusts nothing it wrote earlier until ``read`` or ``verify``
shows it.

- ``read()`` returns what the backend really has now. It raises RouterError when
  the backend cannot be reached or is in a state where the split is undefined
  (both weights 0, a server in maintenance).
- ``apply(weights)`` sets the split. Idempotent: applying the weights the backend
  already has is a no-op that succeeds. It validates ranges itself and raises
  RouterError on refusal.
- ``verify(weights)`` returns True when the backend serves ``weights``, False when
  it serves something else, None when the backend cannot tell (e.g. a DNS
  provider that only accepts changes).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shiftover.types import Weights


@runtime_checkable
class Router(Protocol):
    def describe(self) -> str:
        """One line naming the backend, e.g. 'haproxy web/ec2,eks via /run/haproxy.sock'."""
        ...

    def read(self) -> Weights: ...

    def apply(self, weights: Weights) -> None: ...

    def verify(self, weights: Weights) -> bool | None: ...
