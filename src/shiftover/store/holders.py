"""Who holds a router target's lease, and whether that run is really running.

A lease is judged live by the database's clock; its holder's process is judged
alive only on the host it ran on (``os.kill(pid, 0)``): on another host the
lease alone decides. ``status`` uses this to say "running" only when both hold,
and ``shiftover rollback`` not to wait for a run that is already dead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunHolder:
    """The holder of a lease on this service (or on its router target), as seen now."""

    holder: str
    key: str
    service: str | None
    run_id: str | None
    pid: int | None
    host: str | None
    expires_in: float          # seconds, by the database's clock (<= 0: expired)
    pid_alive: bool | None     # None: another host, or no pid recorded (cannot tell)

    @property
    def lease_live(self) -> bool:
        return self.expires_in > 0

    @property
    def running(self) -> bool:
        """Live lease and, on this host, a live process."""
        return self.lease_live and self.pid_alive is not False

    def to_dict(self) -> dict[str, Any]:
        return {"holder": self.holder, "service": self.service, "run_id": self.run_id,
                "pid": self.pid, "host": self.host, "lease_live": self.lease_live,
                "lease_expires_in": round(self.expires_in, 1), "pid_alive": self.pid_alive,
                "running": self.running}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def find_run(store: Any, service: str, lease_key: str | None = None) -> RunHolder | None:
    """The live lease of a run of ``service`` (or of any run driving ``lease_key``),
    judged by the store's clock, with whether its process is alive on this host."""
    now = store.now()
    live = [lease for lease in store.leases() if not lease.is_expired(now)]
    lease = next((x for x in live if lease_key is not None and x.key == lease_key), None) or \
        next((x for x in live if x.meta.get("service") == service), None)
    if lease is None:
        return None
    pid, host = lease.meta.get("pid"), lease.meta.get("host")
    alive: bool | None = None
    if isinstance(pid, int) and host == socket.gethostname():
        alive = pid_alive(pid)
    return RunHolder(holder=str(lease.holder), key=str(lease.key),
                     service=lease.meta.get("service"), run_id=lease.meta.get("run_id"),
                     pid=pid if isinstance(pid, int) else None,
                     host=host if isinstance(host, str) else None,
                     expires_in=lease.expires_at - now, pid_alive=alive)


def live_lease(store: Any, service: str) -> RunHolder | None:
    """A run of ``service`` that is running (live lease, live process), or None."""
    run = find_run(store, service)
    return run if run is not None and run.running else None


__all__ = ["RunHolder", "find_run", "live_lease", "pid_alive"]
