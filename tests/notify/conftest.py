"""A local HTTP receiver for notifications: http.server on 127.0.0.1, in a thread.

``Receiver.fail_first = N`` answers 500 to the first N requests (then 200);
``Receiver.hang = True`` never answers until the test ends (the fixture releases
it, so no thread outlives the test); ``status`` is the answer after the failures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what the receiver answered (0: it never did)


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    status: int = 200
    hang: bool = False
    echo_path: bool = False      # a failing answer's body quotes the path and Authorization
    requests: list[Request] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def delivered(self) -> list[Any]:
        """Bodies of the requests answered 2xx, in the order they arrived."""
        return [r.body for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        """Until ``n`` requests have arrived (not a timing assertion: a bound on a hang)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= n, timeout), \
                f"{len(self.requests)} requests arrived, waited for {n}"


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            with rx.arrived:
                n = len(rx.requests)
                status = 0 if rx.hang else 500 if n < rx.fail_first else rx.status
                req = Request(self.command, self.path, dict(self.headers), body, status)
                rx.requests.append(req)
                rx.arrived.notify_all()
            if status == 0:  # hanging: answers only once released (the test is ending)
                rx.release.wait(60)
                req.status = status = rx.status
            text = (f"failed for {self.path} (auth {self.headers.get('Authorization')})"
                    if rx.echo_path and status >= 300 else "ok")
            out = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
    server.daemon_threads = True
    server.block_on_close = False  # type: ignore[misc]
    rx.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield rx
    finally:
        rx.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


# a second receiver, for tests that need two
receiver2 = receiver
