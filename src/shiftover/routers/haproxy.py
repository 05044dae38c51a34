"""HAProxy router: two servers in one backend, split by absolute weights 0-256.

Why absolute weights: HAProxy's ``weight N%`` is relative to the server's
*initial* config weight, so a server configured at weight 0 stays at 0 whatever
percent is sent (see FIELD-NOTES). We always send integers from
``Weights.to_backend(256)``: 1% is (198, 2), 50% is (256, 256), 100% is (0, 256).
A split the 0-256 scale cannot express exactly (33.3%) is refused, not rounded:
plans are mapped onto the scale when they are loaded, so the engine only ever
asks for splits that exist, and ``verify`` compares what HAProxy serves with
exactly what was asked.

Why read from ``show servers state``: it gives the user weight we wrote, the
admin state bits (READY / MAINT / DRAIN) and the operational state (UP, or DOWN
by health check) of *every* server of the backend. ``read`` returns the split
only when the weights alone decide it: both servers READY and UP, and no other
server of the backend taking traffic. With old DOWN, HAProxy sends 100% to new
whatever the weights say; with a third server at weight 256, old and new share
what is left. Those are errors naming the server and the command that fixes
it, never a guess.

Ordering of writes: HAProxy has no transaction over two servers, so between two
writes only one has landed. ``types.write_path`` orders them (adding
intermediate pairs when two writes cannot do it) so that every split HAProxy
serves on the way lies between the current and the target split: lowering the
new share never passes through a higher one (50% -> 13% once passed through
59.5% when the second write failed), and raising it never overshoots.

``apply`` writes weights even when a server is in MAINT or DRAIN (a rollback must
get as far as it can); ``read`` then raises. ``verify(0%)`` needs only the new
server's weight to be 0, so a rollback ends even when someone put a server in
maintenance, except where clients can be pinned to the new server: HAProxy
still sends persistent requests (a ``cookie``, a stick table) to a server at
weight 0 or in DRAIN. There a rollback also puts the new server in MAINT, and
``verify(0%)`` asks for it; shiftover never takes it out of MAINT by itself
(``apply`` above 0% refuses, naming the command that does).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from shiftover.errors import RouterError
from shiftover.haproxy_api import HAProxyRuntime, ServerState
from shiftover.routers.base import backend_pair
from shiftover.spec import RouterSpecBase, Timeout, rule
from shiftover.types import Weights, write_path


class HAProxyRouterSpec(RouterSpecBase):
    """HAProxy runtime API: two servers in one backend, absolute weights 0-256."""

    SCALE: ClassVar[int] = 256  # integer weights 0..SCALE: which splits are exact
    LABEL: ClassVar[str] = "HAProxy's absolute weights 0-256"

    type: Literal["haproxy"]
    socket: str = Field(min_length=1, description="Runtime API: a unix socket path, or host:port / tcp://host:port")
    backend: str = Field(min_length=1)
    old: str = Field(min_length=1, description="HAProxy server name of the old environment")
    new: str = Field(min_length=1, description="HAProxy server name of the new environment")
    timeout: Timeout = 2.0

    @model_validator(mode="after")
    def _two_servers(self) -> HAProxyRouterSpec:
        if self.old == self.new:
            raise rule(
                f"old and new are the same server {self.new!r}: they must name the two environments' servers",
                ("new",),
            )
        return self

    def lease_target(self) -> str:
        return f"haproxy:{self.socket}#{self.backend}"


SCALE = HAProxyRouterSpec.SCALE  # HAProxy's absolute weight range is 0..256


class HAProxyRouter:
    """Split traffic between servers ``old`` and ``new`` of one HAProxy backend."""

    Spec: ClassVar[type[HAProxyRouterSpec]] = HAProxyRouterSpec
    scale = SCALE

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
        self.timeout = timeout

    @classmethod
    def from_spec(cls, spec: HAProxyRouterSpec) -> HAProxyRouter:
        return cls(spec.socket, spec.backend, spec.old, spec.new, spec.timeout)

    def describe(self) -> str:
        return f"haproxy {self.backend}/{self.old},{self.new} via {self.address}"

    def lease_key(self) -> str:
        """``haproxy:<endpoint>#<backend>``: a unix socket by its real path, a TCP
        address by its resolved IP, so that two spellings of one socket (a symlink,
        a relative path, ``localhost`` for ``127.0.0.1``) are one key. A unix
        socket and a TCP socket of the *same* HAProxy cannot be told to be one:
        every plan driving a backend must name the same socket (README)."""
        return f"haproxy:{self.runtime.canonical}#{self.backend}"

    def _servers(self) -> dict[str, ServerState]:
        servers = self.runtime.servers_state(self.backend)
        missing = [s for s in (self.old, self.new) if s not in servers]
        if missing:
            raise RouterError(
                f"HAProxy at {self.address} has no server {' or '.join(repr(m) for m in missing)} in backend {self.backend!r}",
                hint=f"servers in {self.backend}: {', '.join(sorted(servers)) or 'none'}; fix router.old / router.new in the plan",
            )
        return servers

    def _persistent(self) -> str | None:
        """Why clients may stick to the new server whatever its weight (HAProxy still
        sends persistent requests to a server at weight 0, or in DRAIN), or None.
        Seen: a ``cookie`` on the new server, a stick table named after the backend.
        A table declared elsewhere and used with ``stick ... table NAME`` is not
        seen (README)."""
        try:
            row = self.runtime.stat_row(self.backend, self.new)
        except RouterError:
            row = {}
        if row.get("cookie"):
            return f"cookie persistence (server {self.new} has cookie {row['cookie']!r})"
        try:
            tables = self.runtime.command("show table")
        except RouterError:
            return None
        for line in tables.splitlines():
            if line.startswith("# table:") and line[len("# table:"):].split(",")[0].strip() == self.backend:
                return f"a stick table on backend {self.backend}"
        return None

    def read(self) -> Weights:
        servers = self._servers()
        old, new = servers[self.old], servers[self.new]
        for st in (old, new):
            if st.admin == "maint" and st.weight == 0:
                continue  # gets nothing, persistent clients included: the split holds
            if st.admin != "ready":
                raise RouterError(
                    f"HAProxy server {self.backend}/{st.server} is in {st.admin.upper()} at {self.address}: "
                    f"it gets no new traffic whatever its weight ({st.weight}), so the split is not what the weights say",
                    hint=f"if that is not deliberate, run `set server {self.backend}/{st.server} state ready` on the runtime API",
                )
            if st.operational != "running" and st.weight > 0:
                raise RouterError(
                    f"HAProxy server {self.backend}/{st.server} is {_op_word(st.operational)} at {self.address} "
                    f"(health check): it gets no traffic whatever its weight ({st.weight}), so the split "
                    "is not what the weights say",
                    hint=f"look at why {st.server} fails its health check (`show servers state {self.backend}`, "
                    "the server's logs); shiftover holds until the split is known again",
                )
        others = [
            st for name, st in sorted(servers.items())
            if name not in (self.old, self.new) and st.weight > 0 and st.admin == "ready"
            and st.operational == "running"
        ]
        if others:
            listed = ", ".join(f"{st.server} (weight {st.weight})" for st in others)
            raise RouterError(
                f"HAProxy backend {self.backend} at {self.address} has other servers taking traffic: {listed}; "
                f"shiftover splits traffic only between {self.old} and {self.new}",
                hint=f"set their weight to 0 (`set server {self.backend}/{others[0].server} weight 0`) "
                "or put them in maintenance, or drive a backend with only the two servers",
            )
        weights = Weights.from_backend(old.weight, new.weight)
        if weights is None:
            raise RouterError(
                f"HAProxy backend {self.backend} at {self.address} has weight 0 on both {self.old} and {self.new}: it serves no traffic",
                hint=f"set a weight, e.g. `set server {self.backend}/{self.old} weight {SCALE}`, or apply a step with shiftover",
            )
        return weights

    def apply(self, weights: Weights) -> None:
        target = backend_pair(self, weights, SCALE, f"HAProxy backend {self.backend}")
        servers = self._servers()
        new = servers[self.new]
        if target[1] > 0 and new.admin == "maint" and new.weight == 0:
            raise RouterError(
                f"HAProxy server {self.backend}/{self.new} is in MAINT at {self.address}: shiftover "
                "does not take a server out of maintenance (it puts one there itself when a "
                "rollback must also move clients pinned by persistence)",
                hint=f"when the new environment is fixed: `set server {self.backend}/{self.new} "
                "state ready` on the runtime API, then run again",
            )
        current = (servers[self.old].weight, new.weight)
        previous = current
        for pair in write_path(current, target):
            if pair[0] != previous[0]:
                self.runtime.set_weight(self.backend, self.old, pair[0])
            if pair[1] != previous[1]:
                self.runtime.set_weight(self.backend, self.new, pair[1])
            previous = pair
        if target[1] == 0 and new.admin != "maint" and self._persistent() is not None:
            # weight 0 still takes persistent clients: maintenance moves them too
            self.runtime.command(f"set server {self.backend}/{self.new} state maint")

    def verify(self, weights: Weights) -> bool:
        """True when the backend serves exactly ``weights``.

        0% verifies without ``read``: the new server's weight is 0 and the old
        one's is not, and, when clients can be pinned to the new server (cookie or
        stick table), the new server is in MAINT: weight 0 alone still lets
        persistent clients in. Any other split needs ``read`` to show exactly that
        split (both servers READY and UP, nobody else taking traffic).
        """
        if weights.new_percent == 0:
            servers = self._servers()
            new = servers[self.new]
            if new.weight != 0 or servers[self.old].weight == 0:
                return False
            return new.admin == "maint" or self._persistent() is None
        return self.read() == weights


def _op_word(operational: str) -> str:
    return {"stopped": "DOWN", "starting": "starting (slow start)",
            "stopping": "stopping"}.get(operational, operational)


__all__ = ["SCALE", "HAProxyRouter"]
