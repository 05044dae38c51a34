"""A transparent HTTP proxy in front of the moto server that can hold Route53 changes
PENDING, as real Route53 does for seconds to a minute (moto answers INSYNC at once).

Point ``AWS_ENDPOINT_URL_ROUTE_53`` at it (botocore's name for Route53's endpoint
variable, from the service id "Route 53"; ``AWS_ENDPOINT_URL_ROUTE53`` is silently
ignored). Every request is forwarded to moto as is; while ``pending`` is set, the
answers of ChangeResourceRecordSets and GetChange say PENDING. To hold one given
change, not whichever comes next: ``hold_changes_after(n)`` lets the first ``n``
changes be INSYNC and holds every later one PENDING (its ChangeResourceRecordSets
answer and every GetChange of its id) until ``release()``. ``seen`` records each
request's method and path, so a test can wait for "the change was submitted and is
being polled" and SIGKILL the run exactly then: ``mark()`` notes where the record
stands, ``count(method, fragment, since=mark)`` counts what came after it, and
``wait(...)`` waits (bounded) for a count.

The change itself reaches moto at once, so while it is "PENDING" the records
already hold the new weights, as ListResourceRecordSets shows a submitted change
on real Route53 while it propagates to the name servers.
"""

from __future__ import annotations

import http.client
import http.server
import re
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from shiftover.demo.process import QuietHTTPServer

_CHANGE_ID = re.compile(rb"<Id>(?:/change/)?([^<]+)</Id>")


class PendingProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.pending = threading.Event()
        self.seen: list[tuple[str, str]] = []
        self._pass_first: int | None = None  # hold_changes_after(n)
        self._changes = 0  # ChangeResourceRecordSets seen
        self._held: set[str] = set()  # change ids answered PENDING until release()
        self._lock = threading.Lock()
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def hold_changes_after(self, n: int) -> None:
        """The first ``n`` changes from now on are INSYNC at once, every later one PENDING."""
        with self._lock:
            self._pass_first = self._changes + n

    def release(self) -> None:
        """Every change is INSYNC again (``pending`` cleared, held changes let go)."""
        self.pending.clear()
        with self._lock:
            self._pass_first = None
            self._held.clear()

    def _pending_answer(self, method: str, path: str, answer: bytes) -> bool:
        """Whether this Route53 answer must say PENDING (noting a held change's id)."""
        with self._lock:
            if method == "POST" and "/rrset" in path:
                self._changes += 1
                held = self._pass_first is not None and self._changes > self._pass_first
                found = _CHANGE_ID.search(answer)
                if held and found:
                    self._held.add(found.group(1).decode())
                return held or self.pending.is_set()
            if method == "GET" and "/change/" in path:
                change_id = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
                return change_id in self._held or self.pending.is_set()
        return False

    def mark(self) -> int:
        """Where the record of requests stands now (for ``count(..., since=)``)."""
        with self._lock:
            return len(self.seen)

    def count(self, method: str, fragment: str, *, since: int = 0) -> int:
        """Requests with this method whose path contains ``fragment`` (after ``since``)."""
        with self._lock:
            return sum(1 for m, p in self.seen[since:] if m == method and fragment in p)

    def wait(self, method: str, fragment: str, *, at_least: int = 1, since: int = 0,
             timeout: float = 30.0, alive: Callable[[], bool] = lambda: True) -> bool:
        """True once ``count(method, fragment, since=since) >= at_least``; False after
        ``timeout``, or as soon as ``alive()`` says the client is gone."""
        deadline = time.monotonic() + timeout
        while self.count(method, fragment, since=since) < at_least:
            if time.monotonic() >= deadline or not alive():
                return self.count(method, fragment, since=since) >= at_least
            time.sleep(0.02)
        return True

    def start(self) -> Self:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.seen.append((self.command, self.path))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "keep-alive")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                    # a change is answered PENDING (ChangeResourceRecordSets) and stays
                    # so (GetChange) while it is held
                    if reply.status == 200 and proxy._pending_answer(self.command, self.path, data):
                        data = data.replace(b"<Status>INSYNC</Status>", b"<Status>PENDING</Status>")
                    self.send_response(reply.status)
                    for k, v in reply.getheaders():
                        if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
