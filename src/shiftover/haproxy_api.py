"""A small client for HAProxy's runtime API (the "stats socket"), shared by the
HAProxy router and the haproxy_stats provider.

Why our own and not a library: the protocol is one text command per connection
(send ``cmd\\n``, read until HAProxy closes), the few commands we need are
stable since HAProxy 1.8, and the errors must speak shiftover's language (what,
where, how to fix) rather than leak socket errnos.

One command per connection keeps the client stateless: no interactive-mode
prompt parsing, no half-read replies after a timeout, and each call sees
HAProxy's current state (after a reload the next call reaches the new process).

HAProxy answers errors in-band with a 200-less plain text line ("No such
backend.", "Permission denied", ...). :meth:`HAProxyRuntime.command` recognises
the ones that mean "this command failed" and raises :class:`RouterError`; the
provider side re-raises them as :class:`ProviderError`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import time
from dataclasses import dataclass

from shiftover.errors import RouterError

# Replies (first line) that mean the command failed, with how to fix it.
_ERROR_REPLIES: tuple[tuple[str, str], ...] = (
    ("No such backend", "check the backend name against `show servers state` or the config"),
    ("Can't find backend", "check the backend name against `show servers state` or the config"),
    ("No such server", "check the server name against `show servers state BACKEND`"),
    (
        "Permission denied",
        "the stats socket's level is too low: set `stats socket PATH mode 600 level admin` in the global section",
    ),
    ("Unknown command", "this HAProxy does not know the command: shiftover needs HAProxy >= 2.0"),
    ("Absolute weight", "send an absolute weight between 0 and 256"),
    ("Require 'backend/server'", "name the server as BACKEND/SERVER"),
    (
        "Backend is using a static LB algorithm",
        "use a dynamic algorithm: `balance roundrobin` or `balance leastconn`",
    ),
)

# srv_admin_state bits (HAProxy include/haproxy/server-t.h)
_ADMF_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, resolution, hostname
_ADMF_DRAIN = 0x08 | 0x10  # forced, inherited

_TCP = re.compile(r"^(?:tcp://|ipv4@|ipv6@)?(?P<host>\[[^\]]+\]|[^/:\[\]@]+):(?P<port>\d+)$")


@dataclass(frozen=True)
class ServerState:
    """One server as HAProxy holds it at runtime.

    ``weight`` is the user weight (0-256) that ``set server ... weight`` writes;
    ``initial_weight`` is the config's. ``admin`` is "ready", "maint" or
    "drain"; ``operational`` is "stopped", "starting", "running" or "stopping".
    """

    backend: str
    server: str
    weight: int
    initial_weight: int
    admin: str
    operational: str
    admin_bits: int


_OPERATIONAL = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


@dataclass(frozen=True)
class BackendStat:
    """One ``show stat`` snapshot: a server's row, its backend's ``BACKEND`` row,
    and every server row of that backend (the server's included). Rows map the
    CSV header's column names to their raw text."""

    server: dict[str, str]
    backend: dict[str, str]
    servers: tuple[dict[str, str], ...]


def _admin_name(bits: int) -> str:
    if bits & _ADMF_MAINT:
        return "maint"
    if bits & _ADMF_DRAIN:
        return "drain"
    return "ready"


class HAProxyRuntime:
    """HAProxy's runtime API at ``address``: a unix socket path, ``host:port``
    or ``tcp://host:port`` (also ``unix:///path``)."""

    def __init__(self, address: str, timeout: float = 2.0) -> None:
        if not address:
            raise RouterError(
                "no HAProxy runtime API address given",
                hint="set the socket: a unix socket path or host:port",
            )
        if timeout <= 0:
            raise RouterError(
                f"HAProxy runtime API timeout must be > 0, got {timeout}",
                hint="set a timeout such as 2s",
            )
        self.address = address
        self.timeout = timeout
        self._tcp: tuple[str, int] | None = None
        self._path: str | None = None
        # every spelling HAProxy's own `stats socket` line and shiftover's hints use
        path = address.removeprefix("unix://").removeprefix("unix@")
        m = None if path.startswith(("/", ".")) else _TCP.match(address)
        if m:
            self._tcp = (m.group("host").strip("[]"), int(m.group("port")))
        else:
            self._path = path

    def __repr__(self) -> str:
        return f"HAProxyRuntime({self.address!r})"

    @property
    def canonical(self) -> str:
        """One spelling of this endpoint, so that two spellings of one socket are
        one lease key: a unix socket by its real path (symlinks resolved), a TCP
        address by its resolved IP (``localhost:9999`` is ``tcp:127.0.0.1:9999``)."""
        if self._tcp is None:
            return "unix:" + os.path.realpath(self._path or "")
        host, port = self._tcp
        try:  # getaddrinfo also normalises literals: 127.000.000.001 is 127.0.0.1
            ip = min(str(i[4][0]) for i in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError):
            ip = host.lower()
        return f"tcp:{ip}:{port}"

    # --- transport ---------------------------------------------------------

    def _connect(self) -> socket.socket:
        where = self.address
        if self._tcp is not None:
            fix = f"is HAProxy running and does its config have `stats socket ipv4@{self._tcp[0]}:{self._tcp[1]} level admin`?"
        else:
            fix = f"is HAProxy running and does its config have `stats socket {self._path} level admin`?"
        try:
            if self._tcp is not None:
                return socket.create_connection(self._tcp, timeout=self.timeout)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._path or "")
            except BaseException:
                sock.close()
                raise
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            raise RouterError(
                f"no HAProxy runtime API at {where}: nothing accepts connections there", hint=fix
            ) from None
        except PermissionError:
            raise RouterError(
                f"permission denied opening the HAProxy runtime API at {where}",
                hint="run shiftover as the socket's owner, or set `mode`, `user`, `group` on the `stats socket` line",
            ) from None
        except TimeoutError:
            raise RouterError(
                f"HAProxy runtime API at {where} did not accept a connection within {self.timeout:g}s",
                hint="check that HAProxy is not overloaded or stopped, or raise the router timeout",
            ) from None
        except OSError as e:
            raise RouterError(
                f"cannot reach the HAProxy runtime API at {where}: {e.strerror or e}", hint=fix
            ) from None

    def command(self, cmd: str) -> str:
        """Send one command, return HAProxy's full reply; RouterError on failure."""
        if "\n" in cmd or ";" in cmd:
            raise RouterError(
                f"refusing to send {cmd!r}: one command per call, no newlines or ';'",
                hint="send each command on its own",
            )
        with self._connect() as sock:
            chunks: list[bytes] = []
            # the timeout caps the whole reply, not each recv: a peer that trickles
            # a byte at a time must not hold a check (or a rollback) for longer
            deadline = time.monotonic() + self.timeout
            try:
                sock.sendall(cmd.encode() + b"\n")
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                    data = sock.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
            except TimeoutError:
                raise RouterError(
                    f"HAProxy runtime API at {self.address} did not answer `{cmd}` within {self.timeout:g}s",
                    hint="check that HAProxy is not overloaded, or raise the router timeout",
                ) from None
            except OSError as e:
                raise RouterError(
                    f"HAProxy runtime API at {self.address} broke off while answering `{cmd}`: {e.strerror or e}",
                    hint="HAProxy may be restarting; the next call asks again",
                ) from None
        reply = b"".join(chunks).decode("utf-8", "replace")
        first = reply.strip().splitlines()[0] if reply.strip() else ""
        for prefix, fix in _ERROR_REPLIES:
            if first.startswith(prefix):
                raise RouterError(f"HAProxy at {self.address} refused `{cmd}`: {first}", hint=fix)
        return reply

    # --- commands ----------------------------------------------------------

    def show_stat(self) -> list[dict[str, str]]:
        """``show stat`` as one dict per row (keys are the CSV header's names)."""
        reply = self.command("show stat")
        if not reply:
            raise RouterError(
                f"HAProxy at {self.address} closed the connection without answering `show stat`",
                hint="HAProxy may be restarting; the next check asks again",
            )
        if not reply.startswith("# ") or not reply[2:].strip():
            raise RouterError(
                f"HAProxy at {self.address} answered `show stat` with something that is not CSV: {reply[:80]!r}",
                hint="check that the address is HAProxy's `stats socket` (not another service), "
                "and that HAProxy is not being restarted",
            )
        rows = list(csv.reader(io.StringIO(reply[2:])))
        header = rows[0]
        return [dict(zip(header, row, strict=False)) for row in rows[1:] if row]

    def stat_row(self, backend: str, server: str) -> dict[str, str]:
        """The ``show stat`` row of one server; RouterError when it is not there."""
        return self.backend_stat(backend, server).server

    def backend_stat(self, backend: str, server: str) -> BackendStat:
        """One ``show stat`` snapshot of a server, its backend's aggregate row and
        its sibling servers; RouterError when the backend or server is not there.

        One command, so every counter comes from the same instant: a server's
        counters and the BACKEND row's can be compared (HAProxy's own 503/504s
        are counted on the BACKEND row only)."""
        rows = self.show_stat()
        mine = [r for r in rows if r.get("pxname") == backend]
        total = next((r for r in mine if r.get("svname") == "BACKEND"), None)
        if total is None:  # the lists below are for the error's hint only
            backends = sorted({r.get("pxname", "") for r in rows if r.get("svname") == "BACKEND"})
            if mine:
                raise RouterError(
                    f"HAProxy at {self.address} has a proxy {backend!r}, but it is a frontend, not a backend",
                    hint=f"name the backend its servers are in; known backends: {', '.join(backends) or 'none'}",
                )
            raise RouterError(
                f"HAProxy at {self.address} has no backend {backend!r}",
                hint=f"known backends: {', '.join(backends) or 'none'}",
            )
        servers = [r for r in mine if r.get("svname") not in ("BACKEND", "FRONTEND")]
        row = next((r for r in servers if r.get("svname") == server), None)
        if row is None:
            known = ", ".join(sorted(r.get("svname", "") for r in servers)) or "none"
            if server in ("BACKEND", "FRONTEND"):
                raise RouterError(
                    f"{server!r} is HAProxy's aggregate row of {backend!r}, not a server",
                    hint=f"name one server of {backend}: {known}",
                )
            raise RouterError(
                f"HAProxy at {self.address} has no server {server!r} in backend {backend!r}",
                hint=f"servers in {backend}: {known}",
            )
        return BackendStat(server=row, backend=total, servers=tuple(servers))

    def servers_state(self, backend: str) -> dict[str, ServerState]:
        """``show servers state BACKEND``: every server of the backend by name."""
        reply = self.command(f"show servers state {backend}")
        lines = [ln for ln in reply.splitlines() if ln.strip()]
        header: list[str] = []
        out: dict[str, ServerState] = {}
        for ln in lines:
            if ln.startswith("#"):
                header = ln[1:].split()
                continue
            if not header:
                continue  # the format version line ("1")
            row = dict(zip(header, ln.split(), strict=False))
            try:
                bits = int(row["srv_admin_state"])
                st = ServerState(
                    backend=row["be_name"],
                    server=row["srv_name"],
                    weight=int(row["srv_uweight"]),
                    initial_weight=int(row["srv_iweight"]),
                    admin=_admin_name(bits),
                    operational=_OPERATIONAL.get(int(row["srv_op_state"]), "unknown"),
                    admin_bits=bits,
                )
            except (KeyError, ValueError):
                raise RouterError(
                    f"HAProxy at {self.address} answered `show servers state {backend}` in a format shiftover does not know: {ln[:80]!r}",
                    hint="shiftover reads the format of HAProxy 2.0 and later; check the address is HAProxy's stats socket",
                ) from None
            out[st.server] = st
        return out

    def server_state(self, backend: str, server: str) -> ServerState:
        """One server's weight and states; RouterError when it is not there."""
        servers = self.servers_state(backend)
        try:
            return servers[server]
        except KeyError:
            raise RouterError(
                f"HAProxy at {self.address} has no server {server!r} in backend {backend!r}",
                hint=f"servers in {backend}: {', '.join(sorted(servers)) or 'none'}",
            ) from None

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        """Set an absolute weight (0-256). Never a ``%`` weight: those are relative
        to the config's initial weight, and 0 stays 0."""
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 256:
            raise RouterError(
                f"HAProxy weight for {backend}/{server} must be an integer 0-256, got {weight!r}",
                hint="HAProxy's absolute weights are 0-256",
            )
        reply = self.command(f"set server {backend}/{server} weight {weight}")
        if reply.strip():
            raise RouterError(
                f"HAProxy at {self.address} refused `set server {backend}/{server} weight {weight}`: {reply.strip()}",
                hint="HAProxy's own words are above; check the server with `show servers state`",
            )


__all__ = ["BackendStat", "HAProxyRuntime", "ServerState"]
