"""The chaos harness: real processes, recorders, and the fault injectors.

Everything here observes the product from the outside, the way an operator
would, so that the suite needs no hook in ``src/``:

- :class:`SocketProxy` sits in front of HAProxy's admin socket. The plan's
  ``router.socket`` points at it; it forwards each one-command connection to
  the real socket and logs every command with the client's pid (``SO_PEERCRED``),
  so every router write is attributed to the process that made it. A *trap*
  SIGKILLs a run at an exact point of a weight change: right after HAProxy has
  applied the first ``set server ... weight`` of a change (the window between
  the two writes), or after the last write and before the read-back; or it
  SIGSTOPs a run on the read that follows a passing check, before it writes.
- :class:`SplitPoller` reads the real split from the runtime API every ~10 ms
  (directly, not through the proxy) and keeps every distinct state with the
  wall-clock interval in which it was seen.
- :class:`Traffic` sends live requests through HAProxy's frontend and counts
  answers per second, per server and status.
- :class:`GateServer` is an HTTP endpoint a plan's gate probes: it can delay,
  hang, fail, or fire a trap when a check arrives (to kill a run mid-check).
- :class:`BackendProcess` runs a ``StubBackend`` in its own process, so that
  "the new server died" is a SIGKILL (connections reset), not a thread that
  keeps serving its keep-alive connections.
- :class:`RunProcess` is ``python -m shiftover.cli run PLAN --json`` with a
  reader thread that parses its event lines as they come.
- :class:`JournalLock` is another process holding ``BEGIN EXCLUSIVE`` on the
  journal's SQLite file.

Every process is started through :class:`Reaper`, which stops it (SIGKILL if it
must) when the stack is torn down, even when a test fails half-way.
Times are wall-clock seconds (``time.time()``), the clock the journal uses.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from shiftover.demo.haproxy import HAProxyProcess
from shiftover.haproxy_api import HAProxyRuntime

PYTHON = sys.executable
SET_WEIGHT = re.compile(r"^set server (?P<backend>[^/\s]+)/(?P<server>\S+) weight (?P<weight>\d+)\s*$")


def split_percent(old: int, new: int) -> Fraction | None:
    """Percent of traffic on new, exact; None when both weights are 0."""
    if old + new == 0:
        return None
    return Fraction(100 * new, old + new)


def fmt(p: Fraction | float | None) -> str:
    return "none" if p is None else f"{float(p):.4g}%"


# --- processes -----------------------------------------------------------------


class Reaper:
    """Every child process a test starts; :meth:`reap` stops them all (by pid)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, **kw)
        with self._lock:
            self._procs.append(proc)
        return proc

    def reap(self) -> list[int]:
        """Stop every child still running; return the pids that needed it."""
        stopped = []
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                stopped.append(proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        return stopped


_BACKEND_SCRIPT = """
import sys
from shiftover.demo.haproxy import StubBackend
b = StubBackend(sys.argv[1], port=int(sys.argv[2])).start()
print(b.port, flush=True)
for line in sys.stdin:  # control: "fail RATIO"; EOF (the harness died) stops us
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "fail":
        b.fail_ratio = float(arg)
    print("ok", flush=True)
b.stop()
"""


class BackendProcess:
    """A ``StubBackend`` (answers "<name> <status>", X-Served-By) in its own process."""

    def __init__(self, reaper: Reaper, name: str, port: int = 0) -> None:
        self.reaper = reaper
        self.name = name
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> BackendProcess:
        self.proc = self.reaper.popen(
            [PYTHON, "-c", _BACKEND_SCRIPT, self.name, str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded: the child prints its port or dies
        if not line.strip().isdigit():
            raise RuntimeError(f"backend {self.name} did not start (got {line!r})")
        self.port = int(line)
        return self

    def fail(self, ratio: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"fail {ratio}\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


_LOCK_SCRIPT = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # hold until told (or until the harness dies: EOF)
con.execute("ROLLBACK")
con.close()
"""


class JournalLock:
    """Another process holding ``BEGIN EXCLUSIVE`` on the journal's SQLite file."""

    def __init__(self, reaper: Reaper, db_path: Path) -> None:
        self.reaper = reaper
        self.db_path = db_path
        self.proc: subprocess.Popen[str] | None = None
        self.locked_at: float | None = None
        self.released_at: float | None = None

    def acquire(self) -> None:
        self.proc = self.reaper.popen([PYTHON, "-c", _LOCK_SCRIPT, str(self.db_path)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "locked":
            raise RuntimeError(f"could not lock {self.db_path}: {line!r}")
        self.locked_at = time.time()

    def release(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.released_at = time.time()


# --- the admin-socket proxy -------------------------------------------------------


@dataclass
class ProxyRecord:
    sent: float        # when the command was forwarded (or refused by a trap)
    done: float        # when HAProxy's reply was complete
    pid: int           # the client process
    cmd: str
    reply: str
    forwarded: bool = True


@dataclass
class Trap:
    """Act on ``pid`` at a point of its ``change``-th weight change (1-based).

    ``when``: ``"after_first_write"`` fires once HAProxy has applied the first
    ``set server ... weight`` of the change (before the client sees the reply, so
    it cannot send the second write); ``"before_verify"`` fires on the first
    command that follows the change's writes, without forwarding it;
    ``"hold_read"`` fires on the first ``show servers state`` for which
    ``predicate(now)`` is true, then holds that command until ``release`` is set
    (``change`` is ignored): a process frozen there has decided, and not yet written.
    """

    pid: int
    when: str
    change: int
    fire: Callable[[], None]
    predicate: Callable[[float], bool] | None = None
    release: threading.Event = field(default_factory=threading.Event)
    fired_at: float | None = None
    fired_cmd: str = ""


class SocketProxy:
    """A unix-socket proxy for HAProxy's runtime API, one command per connection."""

    def __init__(self, path: Path, upstream: str, timeout: float = 3.0) -> None:
        self.path = str(path)
        self.upstream = upstream
        self.timeout = timeout
        self.log: list[ProxyRecord] = []
        self._lock = threading.Lock()
        self._trap: Trap | None = None
        self._changes: Counter[int] = Counter()
        self._last_was_set: dict[int, bool] = {}
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._handlers: list[threading.Thread] = []
        self._held: list[Trap] = []
        self.errors: list[str] = []

    def start(self) -> SocketProxy:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.path)
        srv.listen(64)
        srv.settimeout(0.1)
        self._server = srv
        self._thread = threading.Thread(target=self._accept, name="chaos-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for trap in self._held:
            trap.release.set()
        if self._thread is not None:
            self._thread.join(5)
        for t in list(self._handlers):
            t.join(5)
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def arm(self, trap: Trap) -> None:
        with self._lock:
            self._trap = trap

    def disarm(self) -> Trap | None:
        with self._lock:
            trap, self._trap = self._trap, None
            return trap

    def changes_by(self, pid: int) -> int:
        with self._lock:
            return self._changes[pid]

    def records(self, pid: int | None = None) -> list[ProxyRecord]:
        with self._lock:
            return [r for r in self.log if pid is None or r.pid == pid]

    def writes(self, pid: int | None = None) -> list[ProxyRecord]:
        return [r for r in self.records(pid) if r.forwarded and SET_WEIGHT.match(r.cmd)]

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle_safely, args=(conn,), daemon=True)
            self._handlers = [h for h in self._handlers if h.is_alive()] + [t]
            t.start()

    def _handle_safely(self, conn: socket.socket) -> None:
        # an exception in a thread would surface as a pytest warning (an error here)
        try:
            self._handle(conn)
        except Exception as exc:
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self.timeout)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid = struct.unpack("3i", creds)[0]
            data = b""
            deadline = time.monotonic() + self.timeout
            try:
                while b"\n" not in data and time.monotonic() < deadline:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                return
            if not data:
                return
            cmd = data.decode("utf-8", "replace").strip()
            commands = [c.strip() for c in cmd.split(";")]
            is_set = any(SET_WEIGHT.match(c) for c in commands)
            action = None
            with self._lock:
                first = is_set and not self._last_was_set.get(pid, False)
                after_writes = not is_set and self._last_was_set.get(pid, False)
                if first:
                    self._changes[pid] += 1
                self._last_was_set[pid] = is_set
                trap = self._trap
                if trap is not None and trap.pid == pid:
                    if trap.when == "hold_read":
                        if (cmd.startswith("show servers state") and trap.predicate is not None
                                and trap.predicate(time.time())):
                            action = "hold"
                    elif self._changes[pid] == trap.change:
                        if trap.when == "after_first_write" and first:
                            action = "kill_after"
                        elif trap.when == "before_verify" and after_writes:
                            action = "kill_before"
                if action is not None:
                    self._trap = None
            if action == "hold":
                assert trap is not None
                self._held.append(trap)
                self._fire(trap, cmd)
                trap.release.wait(120)
            sent = time.time()
            if action == "kill_before":
                assert trap is not None
                self._fire(trap, cmd)
                with self._lock:
                    self.log.append(ProxyRecord(sent, time.time(), pid, cmd, "", forwarded=False))
                return
            reply = self._forward(data)
            with self._lock:
                self.log.append(ProxyRecord(sent, time.time(), pid, cmd, reply[:300]))
            if action == "kill_after":
                assert trap is not None
                self._fire(trap, cmd)
            with contextlib.suppress(OSError):
                conn.sendall(reply.encode())

    def _fire(self, trap: Trap, cmd: str) -> None:
        trap.fired_at = time.time()
        trap.fired_cmd = cmd
        trap.fire()

    def _forward(self, data: bytes) -> str:
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.settimeout(self.timeout)
        chunks = []
        try:
            up.connect(self.upstream)
            up.sendall(data)
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                chunk = up.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            pass  # HAProxy down or restarting: the client sees an empty reply
        finally:
            up.close()
        return b"".join(chunks).decode("utf-8", "replace")


# --- the split poller --------------------------------------------------------------


@dataclass
class SplitState:
    """One distinct state of the backend, and when the poller saw it."""

    first: float
    last: float
    old: int | None      # None: HAProxy could not be read
    new: int | None
    admin: str = ""      # "old:ready new:ready"
    samples: int = 1

    @property
    def split(self) -> Fraction | None:
        if self.old is None or self.new is None:
            return None
        return split_percent(self.old, self.new)


class SplitPoller:
    """Reads ``show servers state web`` every ``period`` s; keeps each distinct state."""

    def __init__(self, socket_path: str, backend: str = "web", period: float = 0.01) -> None:
        self.runtime = HAProxyRuntime(socket_path, timeout=0.5)
        self.backend = backend
        self.period = period
        self.states: list[SplitState] = []
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SplitPoller:
        self._thread = threading.Thread(target=self._loop, name="chaos-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def read(self) -> tuple[int, int] | None:
        try:
            st = self.runtime.servers_state(self.backend)
            return st["old"].weight, st["new"].weight
        except Exception:
            return None

    def _loop(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            old = new = None
            admin = ""
            try:
                st = self.runtime.servers_state(self.backend)
                old, new = st["old"].weight, st["new"].weight
                admin = f"old:{st['old'].admin} new:{st['new'].admin}"
            except Exception:
                pass
            now = time.time()
            with self._lock:
                self.samples += 1
                last = self.states[-1] if self.states else None
                if last is not None and (last.old, last.new, last.admin) == (old, new, admin):
                    last.last = now
                    last.samples += 1
                else:
                    self.states.append(SplitState(now, now, old, new, admin))
            nxt += self.period
            self._stop.wait(max(0.0, nxt - time.monotonic()))
            nxt = max(nxt, time.monotonic() - self.period)

    def snapshot(self) -> list[SplitState]:
        with self._lock:
            return [SplitState(s.first, s.last, s.old, s.new, s.admin, s.samples) for s in self.states]

    def between(self, t0: float, t1: float) -> list[SplitState]:
        return [s for s in self.snapshot() if s.last >= t0 and s.first <= t1]

    def wait_for(self, pred: Callable[[Fraction | None], bool], timeout: float,
                 since: float = 0.0) -> float | None:
        """Wall time of the first state since ``since`` whose split satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        while True:
            for s in self.snapshot():
                if s.last >= since and s.old is not None and pred(s.split):
                    return max(s.first, since)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


# --- live traffic -------------------------------------------------------------------


class Traffic:
    """Keep-alive GETs through HAProxy's frontend at about ``rate`` req/s in total."""

    def __init__(self, port: int, rate: float = 80.0, threads: int = 2) -> None:
        self.port = port
        self.rate = rate
        self.n = threads
        self.buckets: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Traffic:
        for i in range(self.n):
            t = threading.Thread(target=self._loop, name=f"chaos-traffic-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def _loop(self) -> None:
        period = self.n / self.rate
        conn: http.client.HTTPConnection | None = None
        nxt = time.monotonic()
        while not self._stop.is_set():
            key: tuple[str, str]
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                key = (resp.getheader("X-Served-By") or "haproxy", str(resp.status))
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                key = ("-", "error")
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.buckets[int(time.time())][key] += 1
            nxt += period
            self._stop.wait(max(0.0, nxt - time.monotonic()))
            nxt = max(nxt, time.monotonic() - 1.0)
        if conn is not None:
            conn.close()

    def totals(self, t0: float = 0.0, t1: float = float("inf")) -> Counter[tuple[str, str]]:
        out: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for sec, c in self.buckets.items():
                if t0 <= sec + 1 and sec <= t1:
                    out.update(c)
        return out

    @staticmethod
    def failed(c: Counter[tuple[str, str]]) -> int:
        return sum(n for (_, status), n in c.items() if status == "error" or status.startswith("5"))


# --- the gate endpoint ----------------------------------------------------------------


class GateServer:
    """``GET /gate`` for a plan's http gate: answers ``status`` after ``delay`` s.

    ``hang(seconds)`` makes the next checks wait that long before answering;
    ``trap(nth, fire)`` calls ``fire`` when the nth next check arrives (and
    answers after it, to a client that is most likely dead by then).
    """

    def __init__(self) -> None:
        self.delay = 0.03
        self.status = 200
        self.hang_seconds = 0.0
        self.hang_from = float("inf")
        self.requests: list[float] = []
        self.last_answered: float | None = None
        self.held: list[tuple[float, float]] = []  # (arrived, answered) of held checks
        self._hold: tuple[int, float] | None = None
        self._release = threading.Event()
        self._trap: tuple[int, Callable[[], None]] | None = None
        self.trap_fired_at: float | None = None
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/gate"

    def start(self) -> GateServer:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def trap(self, nth: int, fire: Callable[[], None]) -> None:
        with self._lock:
            self._trap = (nth, fire)
            self.trap_fired_at = None

    def disarm(self) -> None:
        with self._lock:
            self._trap = None

    def hang(self, seconds: float) -> None:
        with self._lock:
            self.hang_seconds = seconds
            self.hang_from = time.time()

    def hold_next(self, count: int = 1, at_most: float = 30.0) -> None:
        """The next ``count`` checks wait until :meth:`release` (or ``at_most`` s)."""
        with self._lock:
            self._release.clear()
            self._hold = (count, at_most)

    def release(self) -> None:
        self._release.set()

    def wait_held(self, timeout: float) -> bool:
        """True once a held check has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.held or (self._hold is not None and self._hold[0] <= 0):
                    return True
            time.sleep(0.02)
        return False

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        now = time.time()
        fire = None
        with self._lock:
            self.requests.append(now)
            if self._trap is not None:
                nth, f = self._trap
                if nth <= 1:
                    fire, self._trap = f, None
                    self.trap_fired_at = now
                else:
                    self._trap = (nth - 1, f)
            wait = self.hang_seconds if now >= self.hang_from else self.delay
            status = self.status
            hold = None
            if self._hold is not None and self._hold[0] > 0:
                hold = self._hold[1]
                self._hold = (self._hold[0] - 1, self._hold[1])
        if fire is not None:
            fire()
        if hold is not None:
            with self._lock:
                self.held.append((now, 0.0))
            self._release.wait(hold)
            with self._lock:
                self.held[-1] = (now, time.time())
        else:
            time.sleep(wait)
        body = b"ok\n" if status == 200 else b"failing\n"
        with contextlib.suppress(OSError):
            h.send_response(status)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        with self._lock:
            self.last_answered = time.time()


# --- a shiftover run ----------------------------------------------------------------------


class RunProcess:
    """``shiftover run PLAN --json --state URL`` as a child; its event lines parsed live."""

    def __init__(self, reaper: Reaper, argv: list[str], log_path: Path, label: str) -> None:
        self.reaper = reaper
        self.argv = argv
        self.label = label
        self.log_path = log_path
        self.lines: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None
        self.started = 0.0
        self.ended: float | None = None
        self.killed_at: float | None = None
        self.kill_point = ""
        self.router_before: Fraction | None = None  # the split this run found at its start
        self.router_after: Fraction | None = None   # the split it left when it ended
        self.rc: int | None = None
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> RunProcess:
        self.started = time.time()
        self._stderr = open(self.log_path, "w")
        self.proc = self.reaper.popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                      stdin=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, name=f"chaos-{self.label}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            with self._cond:
                if obj.get("summary"):
                    self.summary = obj
                else:
                    self.lines.append(obj)
                self._cond.notify_all()
        rc = self.proc.wait()
        with self._cond:
            self.rc = rc
            self.ended = self.ended or time.time()
            self._cond.notify_all()
        self._stderr.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_line(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
                  start: int = 0) -> dict[str, Any] | None:
        """The first event line (from index ``start``) matching ``pred``; None if the
        run ended or the time ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for obj in self.lines[start:]:
                    if pred(obj):
                        return obj
                left = deadline - time.monotonic()
                if self.rc is not None or left <= 0:
                    return None
                self._cond.wait(min(left, 0.2))

    def kill(self, point: str = "") -> None:
        """SIGKILL now and wait until the process is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.killed_at = time.time()
        self.kill_point = point or self.kill_point
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.ended = self.killed_at

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None when still running at the deadline."""
        try:
            assert self.proc is not None
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:
            self._reader.join(5)
        return self.rc if self.rc is not None else self.proc.returncode

    def stderr(self) -> str:
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return ""


# --- the journal, read from outside ---------------------------------------------------------


@dataclass(frozen=True)
class JEvent:
    id: int
    run_id: str
    kind: str
    at: float
    data: dict[str, Any]
    actor: str | None = None


def read_journal(db_path: Path, service: str) -> list[JEvent]:
    """Every event of ``service``, oldest first, read with sqlite3 (no product code:
    the store is being rewritten, the file is what survives a SIGKILL)."""
    if not db_path.exists():
        return []
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT id, run_id, kind, at, data, actor FROM shiftover_events "
            "WHERE service = ? ORDER BY id", (service,)).fetchall()
    except sqlite3.OperationalError:
        return _journal_via_cli(db_path, service)
    finally:
        con.close()
    out = []
    for id_, run_id, kind, at, data, actor in rows:
        try:
            d = json.loads(data) if data else {}
        except ValueError:
            d = {"_raw": data}
        out.append(JEvent(int(id_), str(run_id), str(kind), float(at), d, actor))
    return out


def _journal_via_cli(db_path: Path, service: str) -> list[JEvent]:
    raise RuntimeError(f"journal {db_path} has no shiftover_events table: the store's schema "
                       "changed; update tests/chaos/harness.py:read_journal")


def lease_expiry(db_path: Path) -> float | None:
    """When the latest lease in the journal file expires (None: no lease table/row)."""
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        row = con.execute("SELECT max(expires_at) FROM shiftover_leases").fetchone()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return None if row is None or row[0] is None else float(row[0])


# --- the whole stack ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    pid: int
    rc: int
    stdout: str
    stderr: str
    started: float
    ended: float


@dataclass
class StackOptions:
    traffic_rate: float = 80.0
    poll_period: float = 0.01


@dataclass
class ChaosStack:
    """HAProxy over two backend processes, the proxy, the poller, traffic and a gate
    endpoint; runs of ``shiftover``; all of it stopped by :meth:`close`."""

    directory: Path
    options: StackOptions = field(default_factory=StackOptions)
    reaper: Reaper = field(default_factory=Reaper)
    runs: list[RunProcess] = field(default_factory=list)
    notes: list[tuple[float, str]] = field(default_factory=list)
    lease_ttl: float | None = None      # the TTL the product accepted, once it refused ours
    refused_ttl: str | None = None      # what it said

    def open(self) -> ChaosStack:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._closers: list[Callable[[], Any]] = []
        self.old = BackendProcess(self.reaper, "old").start()
        self._closers.append(self.old.stop)
        self.new = BackendProcess(self.reaper, "new").start()
        self._closers.append(lambda: self.new.stop())
        self.haproxy = HAProxyProcess(self.directory / "haproxy", old_address=self.old.address,
                                      new_address=self.new.address).start()
        self._closers.append(lambda: self.haproxy.stop())
        self.proxy = SocketProxy(self.directory / "proxy.sock", self.haproxy.socket_path).start()
        self._closers.append(self.proxy.stop)
        self.poller = SplitPoller(self.haproxy.socket_path, period=self.options.poll_period).start()
        self._closers.append(self.poller.stop)
        self.gate = GateServer().start()
        self._closers.append(self.gate.stop)
        self.traffic = Traffic(self.haproxy.frontend_port, rate=self.options.traffic_rate).start()
        self._closers.append(self.traffic.stop)
        self.db_path = self.directory / "state.db"
        self.state_url = f"sqlite:///{self.db_path}"
        return self

    def own(self, closer: Callable[[], Any]) -> None:
        """Run ``closer`` when the stack is torn down (before the stack's own parts)."""
        self._closers.append(closer)

    def close(self) -> list[int]:
        """Stop everything; returns pids that were still running and had to be killed."""
        leftovers = self.reaper.reap()
        for closer in reversed(getattr(self, "_closers", [])):
            with contextlib.suppress(Exception):
                closer()
        return leftovers

    def __enter__(self) -> ChaosStack:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plan and runs -------------------------------------------------------------------

    def write_plan(self, text: str, name: str = "plan.yaml") -> Path:
        path = self.directory / name
        path.write_text(text)
        return path

    def cli(self, *args: str, timeout: float = 60.0) -> Cli:
        """A one-shot ``shiftover`` command (status, resume, rollback, ...), to its end."""
        started = time.time()
        proc = self.reaper.popen([PYTHON, "-m", "shiftover.cli", *args], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        self.note(f"`shiftover {args[0]}` (pid {proc.pid}) exited {proc.returncode}")
        return Cli(proc.pid, proc.returncode, out, err, started, time.time())

    def note(self, text: str) -> None:
        """A harness action, for the timeline."""
        self.notes.append((time.time(), text))

    def start_run(self, plan: Path, *, lease_ttl: float | None, extra: tuple[str, ...] = (),
                  label: str = "") -> RunProcess:
        """Start a run and return once it has printed its first event, or has exited.

        A product that refuses the requested ``--lease-ttl`` as too short for the plan
        (exit 2, "--lease-ttl ... or more" in its hint) is asked again with the TTL it
        names, and that TTL is kept for the rest of the stack's runs (``self.lease_ttl``).
        """
        for _ in range(3):
            ttl = self.lease_ttl if self.lease_ttl is not None else lease_ttl
            run = self._spawn(plan, ttl, extra, label)
            deadline = time.monotonic() + 15
            while run.alive() and time.monotonic() < deadline:
                if run.wait_line(lambda e: True, 0.1) is not None:
                    return run
            rc = run.wait(5)
            err = run.stderr()
            m = re.search(r"--lease-ttl\s+([0-9.]+)\S*\s+or more", err)
            if rc == 2 and m:
                self.runs.remove(run)
                self.lease_ttl = float(m.group(1).rstrip("."))
                self.refused_ttl = err.strip().splitlines()[0][:300]
                self.note(f"the product refused --lease-ttl {ttl:g}; using {self.lease_ttl:g}")
                continue
            return run
        return run

    def _spawn(self, plan: Path, lease_ttl: float | None, extra: tuple[str, ...],
               label: str) -> RunProcess:
        argv = [PYTHON, "-m", "shiftover.cli", "run", str(plan), "--json", "--state",
                self.state_url]
        if lease_ttl is not None:
            argv += ["--lease-ttl", f"{lease_ttl:g}"]
        argv += list(extra)
        label = label or f"run{len(self.runs)}"
        run = RunProcess(self.reaper, argv, self.directory / f"{label}.stderr", label)
        run.router_before = self.router_split()
        run.start()
        self.runs.append(run)
        return run

    def start_run_when_free(self, plan: Path, *, lease_ttl: float | None, deadline: float,
                            extra: tuple[str, ...] = (), label: str = "") -> RunProcess:
        """Wait out a dead run's lease (read from the journal file), then start a run;
        a run refused with exit 5 (lease held) is retried until ``deadline``."""
        while True:
            expires = lease_expiry(self.db_path)
            if expires is not None:
                pause = expires - time.time() + 0.05
                if 0 < pause < 120:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            run = self.start_run(plan, lease_ttl=lease_ttl, extra=extra, label=label)
            if run.alive() or run.rc != 5 or time.monotonic() >= deadline:
                return run
            self.runs.remove(run)  # refused: the lease is still live
            time.sleep(0.3)

    def journal(self, service: str) -> list[JEvent]:
        return read_journal(self.db_path, service)

    def router_split(self) -> Fraction | None:
        w = self.poller.read()
        return None if w is None else split_percent(*w)

    def restart_haproxy(self) -> tuple[float, float]:
        """Stop HAProxy and start it again on the same config (runtime weights reset
        to it); returns (stopped_at, started_at)."""
        t0 = time.time()
        self.haproxy.stop()
        self.haproxy.start()
        self.note("HAProxy restarted: runtime weights back to the config's")
        return t0, time.time()

    def restart_new(self) -> None:
        port = self.new.port
        self.new.kill()
        self.new = BackendProcess(self.reaper, "new", port=port).start()
        self.note("new backend restarted")


@contextlib.contextmanager
def chaos_stack(directory: Path, options: StackOptions | None = None) -> Iterator[ChaosStack]:
    stack = ChaosStack(directory, options or StackOptions())
    with stack:
        yield stack


def own_children() -> list[str]:
    """Processes whose parent is this process (``ps``), for the no-leftovers check."""
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())],
                         capture_output=True, text=True, check=False).stdout
    return [ln.strip() for ln in out.splitlines() if ln.strip() and " ps " not in f" {ln} "]
