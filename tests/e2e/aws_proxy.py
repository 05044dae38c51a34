"""A transparent HTTP proxy in front of the moto server that can hold Route53 changes
PENDING, as real Route53 does for seconds to a minute (moto answers INSYNC at once).

Point ``AWS_ENDPOINT_URL_ROUTE53`` at it; every request is forwarded to moto as is;
while ``pending`` is set, GetChange answers say PENDING. ``seen`` records each
request's method and path, so a test can wait for "the change was submitted and is
being polled" and SIGKILL the run exactly then.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from shiftover.demo.prometheus import QuietHTTPServer


class PendingProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.pending = threading.Event()
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, method: str, fragment: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.seen if m == method and fragment in p)

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
                    if (proxy.pending.is_set() and self.command == "GET"
                            and "/change/" in self.path):
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
