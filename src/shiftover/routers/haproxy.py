"""HAProxy router: two servers in one backend, split by absolute weights 0-256.

Why absolute weights: HAProxy's ``weight N%`` is relative to the server's
*initial* config weight, so a server configured at weight 0 stays at 0 whatever
percent is sent (see FIELD-NOTES). We always send integers from
``Weights.to_backend(256)``: 1% is (198, 2), 50% is (256, 256), 100% is (0, 256).

Why read from ``show servers state``: it gives the user weight we wrote and the
admin state bits, so ``read`` can tell "weights say 10%" apart from "weights say
10% but the new server is in maintenance, so it really gets 0%". A split that is
not what the weights say is an error, never a guess.

Ordering of writes: HAProxy has no transaction over two servers, so for a moment
only one of the two writes has landed. We write the side that grows first, so
the backend's total weight never drops to 0 in between (which would 503 every
request). A side already at its target is not written: ``apply`` is idempotent.

``apply`` writes weights even when a server is in MAINT or DRAIN (a rollback must
get as far as it can); ``read`` and ``verify`` then raise, naming the server and
the command that fixes it.
"""

from __future__ import annotations

from shiftover.errors import RouterError
from shiftover.haproxy_api import HAProxyRuntime, ServerState
from shiftover.plan import HAProxyRouterSpec
from shiftover.types import Weights

SCALE = 256  # HAProxy's absolute weight range is 0..256


class HAProxyRouter:
    """Split traffic between servers ``old`` and ``new`` of one HAProxy backend."""

    def __init__(
        self, address: str, backend: str, old: str, new: str, timeout: float = 2.0
    ) -> None:
        if old == new:
            raise RouterError(
                f"HAProxy router for backend {backend!r} names the same server {old!r} as old and new",
                hint="set router.old and router.new to two different servers of the backend",
            )
        self.runtime = HAProxyRuntime(address, timeout)
        self.address = address
        self.backend = backend
        self.old = old
        self.new = new

    @classmethod
    def from_spec(cls, spec: HAProxyRouterSpec) -> HAProxyRouter:
        return cls(spec.socket, spec.backend, spec.old, spec.new, spec.timeout)

    def describe(self) -> str:
        return f"haproxy {self.backend}/{self.old},{self.new} via {self.address}"

    def _states(self) -> tuple[ServerState, ServerState]:
        servers = self.runtime.servers_state(self.backend)
        missing = [s for s in (self.old, self.new) if s not in servers]
        if missing:
            raise RouterError(
                f"HAProxy at {self.address} has no server {' or '.join(repr(m) for m in missing)} in backend {self.backend!r}",
                hint=f"servers in {self.backend}: {', '.join(sorted(servers)) or 'none'}; fix router.old / router.new in the plan",
            )
        return servers[self.old], servers[self.new]

    def read(self) -> Weights:
        old, new = self._states()
        for st in (old, new):
            if st.admin != "ready":
                raise RouterError(
                    f"HAProxy server {self.backend}/{st.server} is in {st.admin.upper()} at {self.address}: "
                    f"it gets no new traffic whatever its weight ({st.weight}), so the split is not what the weights say",
                    hint=f"if that is not deliberate, run `set server {self.backend}/{st.server} state ready` on the runtime API",
                )
        weights = Weights.from_backend(old.weight, new.weight)
        if weights is None:
            raise RouterError(
                f"HAProxy backend {self.backend} at {self.address} has weight 0 on both {self.old} and {self.new}: it serves no traffic",
                hint=f"set a weight, e.g. `set server {self.backend}/{self.old} weight {SCALE}`, or apply a step with shiftover",
            )
        return weights

    def apply(self, weights: Weights) -> None:
        if not isinstance(weights, Weights):
            raise RouterError(
                f"HAProxyRouter.apply needs a Weights value, got {type(weights).__name__}"
            )
        target_old, target_new = weights.to_backend(SCALE)
        old, new = self._states()
        writes = [
            (server, current, target)
            for server, current, target in (
                (self.old, old.weight, target_old),
                (self.new, new.weight, target_new),
            )
            if current != target
        ]
        # growing side first: the total weight never passes through 0
        writes.sort(key=lambda w: w[2] <= w[1])
        for server, _current, target in writes:
            self.runtime.set_weight(self.backend, server, target)

    def verify(self, weights: Weights) -> bool:
        """True when the backend serves exactly the split ``apply(weights)`` writes.

        Compared as split fractions, not integers: a percent the 0-256 scale
        cannot express (33.3%) verifies against the closest split it maps to.
        0% verifies on weights alone (see below); any other split also needs both
        servers in READY state, as ``read`` does.
        """
        wanted = Weights.from_backend(*weights.to_backend(SCALE))
        if wanted == Weights(0):
            # 0% is reached when the new server's weight is 0, whatever its admin
            # state: a rollback must not wait on a server someone put in MAINT or
            # DRAIN (it gets no traffic either way)
            old, new = self._states()
            return new.weight == 0 and old.weight > 0
        return self.read() == wanted


__all__ = ["SCALE", "HAProxyRouter"]
