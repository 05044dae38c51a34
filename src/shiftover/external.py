"""The one way shiftover runs an outside command or calls a webhook.

Hooks, command gates and notifications all reach outside the process; they do it
through :func:`run_command` and :func:`call_webhook`, which answer with an
:class:`Outcome` (what happened, never an exception) so that each caller decides
what a failure means to it (a hook holds the step, a gate is INCONCLUSIVE, a
notifier retries).

Decisions, and why:

- **argv, not a shell.** ``run:`` is a list of arguments, or a string split the way
  a shell splits words (``shlex``) with no shell behind it: no globbing, no
  ``$VAR``, no pipes. A plan that needs shell syntax says so with
  ``["sh", "-c", "..."]``. Quoting mistakes then fail at load, not at 3 a.m.
- **The command runs in its own session** (``start_new_session``), so on a timeout
  or a stop the whole process *group* gets SIGTERM and, 2 s later if anything of
  it is left, SIGKILL: ``sh -c 'worker & sleep 60'`` leaves no orphan behind.
  Background processes that outlive a command which exited by itself are left
  alone (a hook may start a daemon on purpose); we only stop listening to them.
- **No threads for commands.** Both pipes are read in the calling thread with a
  selector, in slices of at most 0.1 s, so a stop is heard at once, output is
  captured in the order it arrived (stdout and stderr interleaved as the child
  wrote them), and nothing is left behind: the child is always reaped, both pipes
  always closed.
- **Output keeps the tail**, capped: the end of a failing smoke test says why it
  failed. What was cut is said at the top (``[... 1234 bytes cut]``).
- **stdin is /dev/null**: a command that prompts fails at once instead of hanging.
- **Webhooks** go through httpx with a deadline on the whole call (a server that
  trickles a byte a second cannot hold it past ``timeout``), on a daemon thread the
  caller waits for in slices, so a stop abandons the call at once; the thread
  ends by itself within the timeout. Header values never appear in an outcome.
- **No redaction here**: callers own the plan's secrets (``LoadedPlan.redact``).
  The one exception is a URL's password, scrubbed from connection errors.

Real time (``time.monotonic``) is used here: this is I/O at the edge, like the
providers; the engine's injected clock is for its decisions, not for the length of
a child process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import shlex
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BeforeValidator, Field, WithJsonSchema

from shiftover.spec import SpecModel, Timeout, Url, rule

POLL = 0.1          # the longest a wait goes without looking at stopping() and the deadline
KILL_GRACE = 2.0    # SIGTERM to the group, then SIGKILL this long after if anything is left
DRAIN = 0.5         # after the command exits, how long background holders of its pipes are read
CAP = 16384


# --- plan models ---------------------------------------------------------------------


def _split_run(value: Any) -> Any:
    """``run:`` as argv: a string is split like shell words (no shell runs it)."""
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise rule(f"cannot split {value!r} into arguments: {exc}; write run: as a list, "
                       "e.g. [smoke-test, --env, production]") from None
    if isinstance(value, list | tuple):
        if not value:
            raise rule("run: is empty: give the command and its arguments, e.g. "
                       "[smoke-test, --env, production] (for shell syntax: "
                       "[sh, -c, \"...\"])")
        if not all(isinstance(a, str) for a in value):
            bad = next(a for a in value if not isinstance(a, str))
            raise rule(f"run: argument {bad!r} is not a string: quote it in the plan, "
                       f"e.g. \"{bad}\"")
        if not value[0].strip():
            raise rule("run: the command (first argument) is empty")
        return list(value)
    return value


_RUN_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {"type": "string", "minLength": 1},
    ],
    "description": "a command and its arguments: a list (argv), or a string split like "
                   "shell words with no shell (use [sh, -c, \"...\"] for shell syntax)",
}

Argv = Annotated[list[str], BeforeValidator(_split_run), WithJsonSchema(_RUN_SCHEMA)]


def _string_values(value: Any) -> Any:
    """env: values as strings (``PORT: 8080`` in YAML is an int; the environment is text)."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, int | float):
                v = str(v)
            out[k] = v
        return out
    return value


EnvVars = Annotated[dict[str, str], BeforeValidator(_string_values)]


class CommandSpec(SpecModel):
    """A command to run: argv (``run:``), extra environment, a timeout."""

    run: Argv
    env: EnvVars = Field(default_factory=dict)  # added to the inherited environment
    timeout: Timeout = 60.0


class WebhookSpec(SpecModel):
    """An HTTP call: url, method, headers, body (None: the caller's default JSON body)."""

    url: Url
    method: Literal["POST", "PUT", "PATCH", "GET", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    timeout: Timeout = 10.0


def webhook_secrets(spec: WebhookSpec) -> set[str]:
    """What in a webhook is a credential even when typed into the plan rather than
    given as ``${VAR}``: the URL's query (``?token=...``) and its header values
    (``Bearer <token>``: the whole value and its last word)."""
    out: set[str] = set()
    query = urlsplit(spec.url).query
    if query:
        out.add(query)
    for value in spec.headers.values():
        out |= {value, *value.split()[-1:]}
    return {s for s in out if len(s) >= 4}


# --- outcome -------------------------------------------------------------------------


def _secs(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 10:
        return f"{seconds:.1f}s"
    return f"{seconds:.0f}s"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class Outcome:
    """What one command run or webhook call gave (see the module docstring)."""

    ok: bool                 # exit 0 / HTTP 2xx
    exit_code: int | None    # command: exit code, negative = killed by that signal; webhook: None
    status: int | None       # webhook: HTTP status; command: None
    timed_out: bool
    stopped: bool            # stopping() became true and it was killed / abandoned
    error: str | None        # could not start (not found, not executable) / connection error
    output: str              # command: stdout+stderr as they came, tail; webhook: response body
    stdout: str              # command: stdout only, tail (webhook: "")
    seconds: float
    kind: Literal["command", "webhook"] = "command"
    timeout: float | None = None  # the limit it was given (for the summary)

    def summary(self) -> str:
        """One line: ``exit 0 in 0.31s``, ``timed out after 30s (killed)``, ``HTTP 503 in
        0.10s``, ``could not start: [Errno 2] No such file or directory: 'smoke'``."""
        took = _secs(self.seconds)
        limit = f"{self.timeout:g}s" if self.timeout is not None else took
        if self.kind == "command":
            if self.error is not None:
                return f"could not start: {self.error}"
            if self.timed_out:
                return f"timed out after {limit} (killed)"
            if self.stopped:
                return f"stopped after {took} (killed)"
            if self.exit_code is not None and self.exit_code < 0:
                return f"killed by {signal_name(-self.exit_code)} in {took}"
            return f"exit {self.exit_code} in {took}"
        if self.timed_out:
            return f"timed out after {limit}"
        if self.stopped:
            return f"abandoned after {took} (stopping)"
        if self.error is not None:
            return f"request failed: {self.error}"
        return f"HTTP {self.status} in {took}"


# --- capped buffers ------------------------------------------------------------------


class _Tail:
    """The last ``cap`` bytes written, and how many were cut before them."""

    def __init__(self, cap: int) -> None:
        self.cap = max(0, cap)
        self.data = bytearray()
        self.cut = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.cap
        if excess > self.cap:  # trim in batches: amortised O(1) per byte
            del self.data[:excess]
            self.cut += excess

    def text(self) -> str:
        excess = len(self.data) - self.cap
        data, cut = self.data, self.cut
        if excess > 0:
            data, cut = data[excess:], cut + excess
        body = bytes(data).decode("utf-8", errors="replace")
        return f"[... {cut} bytes cut]\n{body}" if cut else body


# --- commands ------------------------------------------------------------------------


def _never() -> bool:
    return False


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs. Zombies do not count: an orphan
    killed with its group waits for PID 1 to reap it, which in a container may be
    never, and must not hold the kill sequence for its whole grace."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a member changed its uid: it exists
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - no procfs: trust kill(0)
        return True
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def tagged_processes(name: str, prefix: str) -> list[int]:
    """The live processes of this host whose environment has ``name`` starting with
    ``prefix`` (zombies left out). A process started with a tag in its environment is
    found again by it after the one that started it died (SIGKILL): its children
    inherit the tag, even those that left its process group (``setsid``)."""
    want = f"{name}={prefix}".encode()
    me = os.getpid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - no procfs: nothing can be found
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z" and any(v.startswith(want) for v in environ.split(b"\0")):
            found.append(int(entry))
    return found


def kill_tagged(name: str, prefix: str, *, grace: float = KILL_GRACE) -> list[int]:
    """Stop every process :func:`tagged_processes` finds (SIGTERM, then SIGKILL after
    ``grace``), and wait until none is left (bounded). Returns the pids found."""
    pids = tagged_processes(name, prefix)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while pids and time.monotonic() < end and tagged_processes(name, prefix):
        time.sleep(POLL)
    for pid in tagged_processes(name, prefix):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 2.0
    while time.monotonic() < end and tagged_processes(name, prefix):
        time.sleep(POLL)
    return pids


def run_command(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float,
                stopping: Callable[[], bool] = _never, cap: int = CAP,
                kill_grace: float = KILL_GRACE) -> Outcome:
    """Run ``argv`` (no shell) with ``env`` added to this process's environment, for at
    most ``timeout`` seconds, stopping it early when ``stopping()`` becomes true. Never
    raises for the command's sake: everything that happened is in the :class:`Outcome`.
    ``kill_grace`` is how long SIGTERM has before SIGKILL (callers with a deadline of
    their own, like a gate's check, shorten it)."""
    start = time.monotonic()
    args = [str(a) for a in argv]
    full_env = dict(os.environ)
    full_env.update({str(k): str(v) for k, v in (env or {}).items()})

    def done(**kw: Any) -> Outcome:
        fields: dict[str, Any] = {"ok": False, "exit_code": None, "status": None,
                                  "timed_out": False, "stopped": False, "error": None,
                                  "output": "", "stdout": "",
                                  "seconds": time.monotonic() - start, "kind": "command",
                                  "timeout": timeout}
        fields.update(kw)
        return Outcome(**fields)

    if not args or not args[0]:
        return done(error="no command given")
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=full_env, start_new_session=True,
                                close_fds=True)
    except (OSError, ValueError) as exc:
        return done(error=str(exc) or type(exc).__name__)

    combined, stdout = _Tail(cap), _Tail(cap)
    assert proc.stdout is not None and proc.stderr is not None
    pipes = {proc.stdout.fileno(): proc.stdout, proc.stderr.fileno(): proc.stderr}
    out_fd = proc.stdout.fileno()
    pgid = proc.pid  # start_new_session: the child leads its own session and group
    deadline = start + timeout
    timed_out = stopped = False
    term_at: float | None = None      # when SIGTERM went to the group
    killed = False                    # SIGKILL sent
    exited_at: float | None = None
    sel = selectors.DefaultSelector()
    try:
        for fd in pipes:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while True:
            if sel.get_map():
                for key, _ in sel.select(timeout=POLL):
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:  # pragma: no cover - spurious wake-up
                        continue
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    combined.add(chunk)
                    if key.fd == out_fd:
                        stdout.add(chunk)
            else:
                time.sleep(POLL)
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if term_at is None and exited_at is None:
                if stopping():
                    stopped = True
                elif now >= deadline:
                    timed_out = True
                if stopped or timed_out:
                    term_at = now
                    _signal_group(pgid, signal.SIGTERM)
            if term_at is not None and not killed and now >= term_at + kill_grace:
                killed = True
                _signal_group(pgid, signal.SIGKILL)
            if exited_at is None:
                continue
            if term_at is not None and not killed and _group_alive(pgid):
                # the leader died on SIGTERM; the rest of its group gets the grace too
                continue
            if not sel.get_map() or now >= exited_at + DRAIN:
                break
    finally:
        sel.close()
        for f in pipes.values():
            f.close()
        if proc.poll() is None:  # only reached on an exception of our own: never leak it
            _signal_group(pgid, signal.SIGKILL)
        proc.wait()
    return done(ok=proc.returncode == 0 and not (timed_out or stopped),
                exit_code=proc.returncode, timed_out=timed_out, stopped=stopped,
                output=combined.text(), stdout=stdout.text())


# --- webhooks ------------------------------------------------------------------------


def _scrub(text: str, url: str) -> str:
    """A URL's password out of an error message (httpx may quote the URL)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    if password:
        for secret in {password, unquote(password)}:
            text = text.replace(secret, "***")
    return text


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once (building it reads the CA bundle, ~85 ms:
    a notifier retrying with backoff would pay it on every attempt)."""
    return httpx.create_ssl_context()


def call_webhook(url: str, *, method: str = "POST", headers: Mapping[str, str] | None = None,
                 body: Any = None, timeout: float, stopping: Callable[[], bool] = _never,
                 cap: int = CAP, transport: httpx.BaseTransport | None = None) -> Outcome:
    """One HTTP call; ``body`` as JSON when a dict or list, sent as is when a str or
    bytes, none when None. 2xx is ok. At most ``timeout`` seconds, abandoned early when
    ``stopping()`` becomes true. Never raises: everything is in the :class:`Outcome`."""
    start = time.monotonic()
    deadline = start + timeout
    send_headers = dict(headers or {})
    content: bytes | None = None
    if isinstance(body, dict | list):
        content = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k in send_headers):
            send_headers["Content-Type"] = "application/json"
    elif isinstance(body, str):
        content = body.encode()
    elif isinstance(body, bytes):
        content = body
    elif body is not None:
        content = json.dumps(body).encode()
        send_headers.setdefault("Content-Type", "application/json")

    result: dict[str, Any] = {}

    def call() -> None:
        tail = _Tail(cap)
        try:
            with (httpx.Client(timeout=timeout, transport=transport, verify=_ssl_context(),
                               follow_redirects=False) as client,
                  client.stream(method, url, headers=send_headers, content=content) as resp):
                for chunk in resp.iter_bytes():
                    tail.add(chunk)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("response not read within the timeout")
                result["status"] = resp.status_code
        except httpx.TimeoutException:
            result["timed_out"] = True
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, OSError) as exc:
            result["error"] = _scrub(str(exc) or type(exc).__name__, url)
        except Exception as exc:  # never let the worker die silently
            result["error"] = _scrub(f"{type(exc).__name__}: {exc}", url)
        result["output"] = tail.text()

    worker = threading.Thread(target=call, name="shiftover-webhook", daemon=True)
    worker.start()
    timed_out = stopped = False
    while True:
        worker.join(POLL)
        if not worker.is_alive():
            break
        if stopping():
            stopped = True
            break
        if time.monotonic() >= deadline + POLL:  # httpx's own timeout normally comes first
            timed_out = True
            break
    seconds = time.monotonic() - start
    if stopped or timed_out:
        return Outcome(ok=False, exit_code=None, status=None, timed_out=timed_out,
                       stopped=stopped, error=None, output="", stdout="", seconds=seconds,
                       kind="webhook", timeout=timeout)
    status = result.get("status")
    return Outcome(ok=status is not None and 200 <= status < 300, exit_code=None,
                   status=status, timed_out=bool(result.get("timed_out")), stopped=False,
                   error=result.get("error"), output=result.get("output", ""), stdout="",
                   seconds=seconds, kind="webhook", timeout=timeout)


__all__ = [
    "CAP",
    "KILL_GRACE",
    "Argv",
    "CommandSpec",
    "EnvVars",
    "Outcome",
    "WebhookSpec",
    "call_webhook",
    "run_command",
    "signal_name",
]
