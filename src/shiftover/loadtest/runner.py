"""The parent side of ``shiftover load``: the target, the job, and the Locust processes.

The CLI never imports locust or gevent: it writes a job file (mode 600: headers
may carry tokens) and starts :mod:`shiftover.loadtest.child` in a subprocess
(locust imported first, see FIELD-NOTES), plus ``--workers N`` local Locust
worker processes that connect to it over Locust's own master/worker protocol
on 127.0.0.1. The child prints one JSON event per line; :meth:`LoadRun.run`
hands each to a callback (the progress display, the ``--watch`` checks) and
returns the final ``result`` event.

Ctrl-C: the children run in their own session, so the terminal's SIGINT
reaches only the parent, which sends them SIGTERM. The child then ends the
current step early, lets what is in flight finish (bounded by the request
timeout) and still prints its result, which :class:`Interrupted` carries so
the CLI can print what was measured.

The target is checked before anything starts: a URL that is not http(s), a
host that does not resolve or a port that refuses connections is bad input
(exit 2), never a load test of connection errors.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from shiftover.demo.process import free_port
from shiftover.errors import BadInput, ShiftoverError
from shiftover.loadtest.schedule import Schedule

_BOOTSTRAP = (
    "import locust, runpy; "
    "runpy.run_module('shiftover.loadtest.child', run_name='__main__', alter_sys=True)"
)

#: Header names whose values never reach output, the journal or reports.
_SECRET_HEADER_WORDS = ("auth", "token", "key", "secret", "cookie", "session", "password")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Target:
    """What the load goes to: one URL (method, headers, body) or a locustfile."""

    base_url: str | None
    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    locustfile: str | None = None
    user_classes: tuple[str, ...] = ()
    insecure: bool = False  # do not verify the target's TLS certificate (--insecure)

    @property
    def url(self) -> str | None:
        return None if self.base_url is None else self.base_url + self.path

    @property
    def public_url(self) -> str | None:
        """:attr:`url` fit to print: user info and secret query values redacted."""
        return None if self.url is None else public_url(self.url)

    def to_job(self) -> dict[str, Any]:
        """For the child only (the job file is mode 600): headers in full."""
        return {"base_url": self.base_url, "path": self.path, "method": self.method,
                "headers": dict(self.headers), "body": self.body, "locustfile": self.locustfile,
                "user_classes": list(self.user_classes), "insecure": self.insecure}

    def to_public(self) -> dict[str, Any]:
        """For output and reports: secret header values redacted, the body's size only."""
        return {
            "url": self.public_url, "method": self.method,
            "headers": {k: ("<redacted>" if _secret_header(k) else v) for k, v in self.headers.items()},
            "body_bytes": None if self.body is None else len(self.body.encode()),
            "locustfile": self.locustfile, "user_classes": list(self.user_classes),
            "tls_verify": not self.insecure,
        }

    def describe(self) -> str:
        if self.locustfile:
            return f"{self.locustfile}" + (f" on {public_url(self.base_url)}" if self.base_url else "")
        return f"{self.method} {self.public_url}"


def _secret_header(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _SECRET_HEADER_WORDS)


def _secret_param(name: str) -> bool:
    return _secret_header(name) or name.lower() in ("sig", "signature", "pw", "pass", "passwd")


def public_url(url: str) -> str:
    """``url`` fit for output, load.json and reports: the user info (``user:password@``,
    or a bare token) and the values of secret-looking query parameters (``api_key``,
    ``token``, ``sig`` ...) are ``<redacted>``; the rest is kept as given."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "<redacted>@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, "<redacted>" if _secret_param(k) else v) for k, v in pairs], safe="<>")
    return parts._replace(netloc=netloc, query=query).geturl()


def parse_target(
    url: str | None,
    *,
    method: str = "GET",
    headers: Sequence[str] = (),
    body: str | None = None,
    locustfile: Path | None = None,
    user_classes: Sequence[str] = (),
    insecure: bool = False,
) -> Target:
    """The target from the command line; :class:`BadInput` for what cannot work."""
    base_url, path = None, "/"
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(f"{url!r} is not an http(s) URL",
                           hint="give the full URL, e.g. shiftover load http://127.0.0.1:8080/api/items --rate 50:500:50 --step 30s")
        try:
            parts.port  # noqa: B018  # raises ValueError on a bad port
        except ValueError:
            raise BadInput(f"{url!r} has a bad port", hint="e.g. http://127.0.0.1:8080/") from None
        base_url = f"{parts.scheme}://{parts.netloc}"
        # "http://h:80//x" (a base URL ending in / plus a path) is "/x": an HTTP client
        # refuses the protocol-relative "//x" on every request
        path = "/" + (parts.path or "/").lstrip("/") + (f"?{parts.query}" if parts.query else "")
    m = method.upper()
    if m not in METHODS:
        raise BadInput(f"--method {method!r} is not an HTTP method", hint=f"one of {', '.join(METHODS)}")
    hdrs: dict[str, str] = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise BadInput(f"--header {h!r} is not 'Name: value'",
                           hint="e.g. --header 'Authorization: Bearer $TOKEN' (the value is redacted in every output)")
        hdrs[name.strip()] = value.strip()
    if body is not None and body.startswith("@"):
        p = Path(body[1:])
        try:
            body = p.read_text(encoding="utf-8")
        except OSError as e:
            raise BadInput(f"--data {body}: cannot read {p}: {e.strerror or e}",
                           hint="give the body inline (--data '{\"a\": 1}') or a readable file (--data @body.json)") from None
    if locustfile is not None:
        if not locustfile.is_file():
            raise BadInput(f"locustfile {locustfile} does not exist",
                           hint="give the path of a Python file with a Locust HttpUser/FastHttpUser class (-f locustfile.py)")
        if body is not None or hdrs or m != "GET":
            raise BadInput("--method, --header and --data describe one URL; with --locustfile the "
                           "file's tasks say what to send",
                           hint="drop them, or drop --locustfile to load one URL")
        return Target(base_url, path, m, {}, None, str(locustfile.resolve()), tuple(user_classes), insecure)
    if base_url is None:
        raise BadInput("no target: give a URL or --locustfile",
                       hint="e.g. shiftover load http://127.0.0.1:8080/ --rate 50:500:50 --step 30s")
    return Target(base_url, path, m, hdrs, body, insecure=insecure)


def check_reachable(base_url: str, timeout: float = 3.0, *, verify_tls: bool = True) -> None:
    """Resolve the host, open one TCP connection and, for https, shake hands (verifying
    the certificate unless told not to); :class:`BadInput` if any of it fails."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if parts.scheme == "https":
                ctx = ssl.create_default_context()
                if not verify_tls:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                with ctx.wrap_socket(sock, server_hostname=host):
                    pass
    except ssl.SSLCertVerificationError as e:
        raise BadInput(f"{public_url(base_url)}: its TLS certificate does not verify ({e.verify_message})",
                       hint="fix the certificate, or add --insecure to load a staging host with a "
                            "self-signed one (its certificate is then not checked)") from None
    except socket.gaierror as e:
        raise BadInput(f"{public_url(base_url)}: cannot resolve {host!r} ({e.strerror or e})",
                       hint="check the host name in the URL") from None
    except OSError as e:
        bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no credentials
        raise BadInput(f"{public_url(base_url)} is unreachable: {e.strerror or e}",
                       hint=f"is the service listening on {host}:{port}? try: curl -sS -o /dev/null -w '%{{http_code}}\\n' {bare}/") from None


def probe(target: Target, timeout: float = 5.0) -> str | None:
    """One request before the test, for a safe method only (GET, HEAD, OPTIONS): a 4xx
    answer is a mistake in the URL or headers that would fail every request of the
    test (BadInput); a 5xx is returned as a warning (the target may be struggling, which
    the test will measure). Other methods are never sent twice on the user's behalf."""
    import httpx

    if target.locustfile or target.url is None or target.method not in ("GET", "HEAD", "OPTIONS"):
        return None
    shown = target.public_url
    try:
        r = httpx.request(target.method, target.url, headers=dict(target.headers), timeout=timeout,
                          verify=not target.insecure)
    except httpx.HTTPError as e:
        raise BadInput(f"{shown}: one {target.method} before the test failed: {type(e).__name__}",
                       hint="check that the service answers HTTP at that URL") from None
    if 400 <= r.status_code < 500:
        raise BadInput(f"{shown} answered {r.status_code} to one {target.method}: every request of the "
                       "test would fail the same way",
                       hint="check the path, the method and the headers (e.g. --header 'Authorization: Bearer $TOKEN')")
    if r.status_code >= 500:
        return f"{shown} answered {r.status_code} to one {target.method} before the test"
    return None


def default_users(peak_rate: float, slo_seconds: float) -> int:
    """Locust users (concurrent requests in flight) to start: enough to hold the peak
    rate with every request taking twice the SLO, at least 10. More users never
    change the arrival rate (the dispatcher sets it); they only bound how many
    requests can be in flight before arrivals queue on the client (and that wait is
    counted as latency)."""
    return max(10, math.ceil(peak_rate * max(2.0 * slo_seconds, 0.2)) + 10)


@dataclass(frozen=True)
class LoadJob:
    target: Target
    schedule: Schedule
    users: int
    timeout: float = 10.0
    workers: int = 0  # local Locust worker processes (0: one process does it all)
    master: bool = False  # accept workers from other machines
    expect_workers: int = 0
    bind_host: str = "127.0.0.1"
    bind_port: int = 5557
    worker_wait: float = 60.0

    def to_job(self) -> dict[str, Any]:
        distributed = self.master or self.workers > 0
        return {
            "mode": "master" if distributed else "local",
            "users": self.users,
            "timeout": self.timeout,
            "schedule": self.schedule.to_dict(),
            "target": self.target.to_job(),
            "bind_host": self.bind_host,
            "bind_port": self.bind_port,
            "expect_workers": self.expect_workers if self.master else self.workers,
            "worker_wait": self.worker_wait,
            "advertise_host": advertise_host(self.bind_host),
        }


def advertise_host(bind_host: str) -> str:
    """The address workers should dial: the bind address, or this machine's name when
    the master listens on every interface."""
    if bind_host in ("0.0.0.0", "*", "::", ""):
        return socket.getfqdn() or socket.gethostname()
    return bind_host


class Interrupted(ShiftoverError):
    """Ctrl-C during a load test; ``result`` is what was measured (None if nothing)."""

    exit_code = 130

    def __init__(self, result: dict[str, Any] | None) -> None:
        super().__init__("load test interrupted")
        self.result = result


def child_command(*args: str) -> list[str]:
    return [sys.executable, "-c", _BOOTSTRAP, *args]


def worker_command(master_host: str, master_port: int, *, locustfile: str | None = None,
                   host: str | None = None, timeout: float = 10.0, worker_wait: float = 60.0) -> list[str]:
    extra = ["--locustfile", locustfile] if locustfile else []
    extra += ["--host", host] if host else []
    return child_command("--worker", "--master-host", master_host, "--master-port", str(master_port),
                         "--timeout", repr(float(timeout)), "--worker-wait", repr(float(worker_wait)), *extra)


def _stop(proc: subprocess.Popen[Any], timeout: float) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5.0)


class LoadRun:
    """Runs a :class:`LoadJob`: the child (local runner or master), its local workers,
    and the event stream. One use per instance."""

    def __init__(self, job: LoadJob, *, on_event: Callable[[dict[str, Any]], None] = lambda e: None,
                 workdir: Path | None = None) -> None:
        self.job = job
        self.on_event = on_event
        self._workdir = workdir
        self.log_path: Path | None = None
        self._main: subprocess.Popen[Any] | None = None
        self._stopping = False

    def stop(self) -> None:
        """End the test early from another thread: the child ends the current step,
        drains, and :meth:`run` returns its result as usual (``stopped_early``)."""
        self._stopping = True
        if self._main is not None:
            _signal(self._main, signal.SIGTERM)

    def run(self) -> dict[str, Any]:
        """Blocks until the child prints its result; returns that event.
        Raises :class:`Interrupted` on Ctrl-C (with what was measured), BadInput for a
        target the child refused (locustfile errors), ShiftoverError if it crashed."""
        workdir = self._workdir or Path(tempfile.mkdtemp(prefix="shiftover-load-"))
        workdir.mkdir(parents=True, exist_ok=True)
        job = self.job
        if job.workers > 0 and not job.master:
            job = LoadJob(**{**job.__dict__, "bind_port": free_port(), "bind_host": "127.0.0.1"})
        job_file = workdir / "job.json"
        fd = os.open(job_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(job.to_job(), f)
        self.log_path = workdir / "locust.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        procs: list[subprocess.Popen[Any]] = []
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        interrupted = False
        with open(self.log_path, "ab") as log:
            main = subprocess.Popen(child_command("--job", str(job_file)), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
            procs.append(main)
            self._main = main
            if self._stopping:  # stop() came before the child existed
                _signal(main, signal.SIGTERM)
            try:
                if job.workers > 0 and not job.master:
                    t = job.target
                    for _ in range(job.workers):
                        procs.append(subprocess.Popen(
                            worker_command("127.0.0.1", job.bind_port, locustfile=t.locustfile,
                                           host=t.base_url if t.locustfile else None, timeout=job.timeout),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True))
                assert main.stdout is not None
                while True:
                    try:
                        line = main.stdout.readline()
                    except KeyboardInterrupt:
                        if interrupted:
                            raise
                        interrupted = True
                        _signal(main, signal.SIGTERM)
                        continue
                    if not line:
                        break
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    kind = event.get("event")
                    if kind == "result":
                        result = event
                    elif kind == "error":
                        error = event
                    try:
                        self.on_event(event)
                    except KeyboardInterrupt:
                        interrupted = True
                        _signal(main, signal.SIGTERM)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                for p in procs:
                    _stop(p, 15.0 if p is main else 5.0)
        if self._workdir is None:  # ours: kept only when the error below points at its log
            job_file.unlink(missing_ok=True)
            if result is not None or error is not None or interrupted:
                shutil.rmtree(workdir, ignore_errors=True)
        if error is not None:
            raise BadInput(str(error.get("message")), hint=str(error.get("hint") or "") or None)
        if interrupted:
            raise Interrupted(result)
        if result is None:
            code = main.returncode
            raise ShiftoverError(f"the Locust process ended (exit {code}) without a result",
                                 hint=f"its log: {self.log_path}: {_tail(self.log_path)}")
        return result


def _signal(proc: subprocess.Popen[Any], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _tail(path: Path | None, lines: int = 3) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def run_worker(master_host: str, master_port: int, *, locustfile: Path | None, timeout: float,
               worker_wait: float = 60.0) -> int:
    """``shiftover load --worker``: one Locust worker in the foreground until the master
    ends the test (or Ctrl-C)."""
    if locustfile is not None and not locustfile.is_file():
        raise BadInput(f"locustfile {locustfile} does not exist",
                       hint="a worker needs the same locustfile as the master: copy it here and pass -f FILE")
    argv = worker_command(master_host, master_port,
                          locustfile=None if locustfile is None else str(locustfile.resolve()), timeout=timeout,
                          worker_wait=worker_wait)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        while proc.poll() is None:
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(proc, 15.0)
        return 130
    return int(proc.returncode or 0)


__all__ = [
    "Interrupted", "LoadJob", "LoadRun", "Target", "check_reachable", "default_users",
    "parse_target", "public_url", "run_worker", "worker_command",
]
