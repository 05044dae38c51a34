"""Child processes and in-thread servers for the demo stack and the tests, run one way.

The demo and the tests start four kinds of child process (HAProxy, Prometheus
and Alertmanager, the sample app, the Locust traffic generator) and two kinds of
in-thread HTTP server (the stub backend, the metrics target). Each used to carry
its own copy of the same lifecycle; :class:`ChildProcess` and the helpers here
are that lifecycle once:

- **Spawn** with stdin closed and output to a log *file*, not a pipe: a chatty
  child can never block on a full pipe, and the log tail goes into the error
  when startup fails. Only a child whose stdout *is* its result (the traffic
  generator prints a summary) keeps stdout on a pipe, read when it ends.
- **Wait until ready, bounded.** The subclass says what "ready" means (the
  runtime API answers, ``/-/ready`` is 200, a ready line is in the log, the
  first bucket is written); the loop checks it every ``poll_interval`` and
  fails with the subclass's message when the child exits first or the time is
  up. A child counts as ready as soon as the check passes, so a short-lived
  child that did its job is not reported as a crash.
- **Never leak a child.** If waiting fails for any reason, Ctrl-C included, the
  child is stopped before the error propagates.
- **Stop** is SIGTERM, wait, SIGKILL after the timeout, wait again: the child
  is reaped (no zombie), and stopping twice is a no-op.
- ``with X(...) as x:`` starts and always stops (:class:`StartStop`).

Ports: :func:`free_port` binds port 0 and closes it, so another process can
take the port before the child binds it. Callers that care either let the child
pick its port and read it back (the sample app) or retry on a new port (the
Prometheus processes).
"""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from shiftover.errors import ShiftoverError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def answers_200(port: int, path: str, host: str = "127.0.0.1") -> bool:
    """True when ``GET path`` on the port answers 200: a server child's readiness probe.
    The stdlib, not httpx: a new httpx client per probe costs ~40 ms, this < 1 ms."""
    conn = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def read_log(path: Path | None) -> str:
    """A child's log as text; ``""`` when there is none (yet)."""
    if path is None:
        return ""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def log_tail(path: Path | None, lines: int = 3, sep: str = " | ") -> str:
    """The last ``lines`` lines of a log (blank ends trimmed), joined by ``sep``; ``""`` if none."""
    return sep.join(read_log(path).strip().splitlines()[-lines:])


def start_error(
    what: str, code: int | None, log: Path | None, *, exited: str, missing: str, timeout: float
) -> ShiftoverError:
    """The error for a Python child (the sample app, the traffic generator) that did not start.

    With an exit ``code``: "<what> exited with code <code> <exited>: <last log
    lines>"; with ``code`` None (time is up): "<what> <missing> within <timeout>s".
    """
    if code is not None:
        tail = log_tail(log)
        return ShiftoverError(
            f"{what} exited with code {code} {exited}" + (f": {tail}" if tail else ""),
            hint=f"see {log}",
        )
    return ShiftoverError(
        f"{what} {missing} within {timeout:g}s",
        hint=f"see {log}; the machine may be overloaded: raise startup_timeout",
    )


class StartStop:
    """``with x:`` calls ``x.start()`` and, on the way out (errors included), ``x.stop()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        """Stop; safe to call twice. Subclasses narrow what it returns."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def startup_error(what: str, where: str, code: int | None, timeout: float,
                  log_path: Path) -> ShiftoverError:
    """A server child that did not come up: it exited with ``code``, or (None) it
    was not ready within ``timeout``; the hint is the end of its log."""
    hint = f"its log ({log_path}) ends with:\n{log_tail(log_path, 20, chr(10))}"
    if code is not None:
        return ShiftoverError(f"{what} exited with status {code} while starting on {where}",
                              hint=hint)
    return ShiftoverError(f"{what} on {where} was not ready within {timeout:g}s", hint=hint)


class ChildProcess(StartStop):
    """One child process we own. See the module docstring for the lifecycle.

    ``port`` is the port a server child listens on (0 until it is known).

    A subclass implements ``start()`` (prepare, then :meth:`_launch`), ``stop()``
    (:meth:`_end`, plus its own cleanup or result), :meth:`_ready` and
    :meth:`_not_ready`.
    """

    #: Seconds between two readiness checks.
    poll_interval = 0.05

    port: int = 0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    # -- subclass hooks ----------------------------------------------------

    def _ready(self) -> bool:
        """True once the child serves (may record what it learned, e.g. its port)."""
        raise NotImplementedError

    def _not_ready(self, code: int | None) -> ShiftoverError:
        """The error for a start that failed: the child exited with ``code``, or
        (``code`` is None) it is still not ready when the time is up."""
        raise NotImplementedError

    # -- state -------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _refuse_second_start(self, what: str) -> None:
        if self._proc is not None:
            raise ShiftoverError(f"{what} is already started (pid {self._proc.pid})")

    # -- lifecycle -----------------------------------------------------------

    def _launch(
        self,
        argv: Sequence[str],
        log_path: Path,
        timeout: float,
        *,
        fresh_log: bool = False,
        pipe_stdout: bool = False,
        python: bool = False,
        cwd: Path | None = None,
    ) -> None:
        """Spawn ``argv`` and return once :meth:`_ready`; on any failure stop it and re-raise.

        Output is appended to ``log_path`` (``fresh_log``: truncated first). With
        ``pipe_stdout`` only stderr goes there and stdout is returned by
        :meth:`_end`. ``python`` sets ``PYTHONUNBUFFERED=1`` so a Python child's
        lines reach the log as it prints them.
        """
        env = dict(os.environ, PYTHONUNBUFFERED="1") if python else None
        with open(log_path, "wb" if fresh_log else "ab") as log:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe_stdout else log,
                stderr=log if pipe_stdout else subprocess.STDOUT,
                env=env,
                cwd=cwd,
            )
        try:
            self._wait_ready(self._proc, timeout)
        except BaseException:
            self.stop()
            raise

    def _launch_on_a_free_port(
        self,
        argv: Callable[[], Sequence[str]],
        log_path: Path,
        timeout: float,
        *,
        fixed_port: bool,
        cwd: Path | None = None,
    ) -> None:
        """:meth:`_launch` with ``self.port`` picked free (unless ``fixed_port``), tried
        three times: another process can take a free port between the pick and the bind.
        ``argv`` is called per attempt, since the command line names the port."""
        last: ShiftoverError | None = None
        for _ in range(1 if fixed_port else 3):
            if not fixed_port:
                self.port = free_port()
            try:
                self._launch(argv(), log_path, timeout, cwd=cwd)
                return
            except ShiftoverError as exc:  # the port raced away, or a real failure
                last = exc
        assert last is not None
        raise last

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._ready():
                return
            code = proc.poll()
            if code is not None:
                raise self._not_ready(code)
            if time.monotonic() >= deadline:
                raise self._not_ready(None)
            time.sleep(self.poll_interval)

    def _end(self, timeout: float) -> tuple[int | None, bytes]:
        """Let go of the child: SIGTERM it if it still runs, wait up to ``timeout``,
        then SIGKILL and wait again. Returns its exit code and its stdout (with
        ``pipe_stdout``, else ``b""``); ``(None, b"")`` when there is no child."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None, b""
        if proc.poll() is None:
            proc.terminate()
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out or b""


# --- HTTP servers in a thread --------------------------------------------------


class QuietHTTPServer(http.server.ThreadingHTTPServer):
    """A threaded stdlib server for tests and demos: daemon threads, no join on
    close, and no traceback when a client hangs up mid-response (a probe that
    stops reading at its body cap, Prometheus shutting down mid-scrape)."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def serve_in_thread(server: socketserver.BaseServer, name: str) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread (it checks for shutdown every 50 ms)."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return thread


def stop_serving(server: socketserver.BaseServer, thread: threading.Thread | None) -> None:
    """Stop a server started by :func:`serve_in_thread` (if it was) and close its socket."""
    if thread is not None:
        server.shutdown()
        thread.join(5)
    server.server_close()


__all__ = [
    "ChildProcess",
    "QuietHTTPServer",
    "StartStop",
    "free_port",
    "log_tail",
    "read_log",
    "serve_in_thread",
    "start_error",
    "stop_serving",
]
