"""A real HAProxy over two stub backends, for the CLI tests a new user would run,
and steady traffic through it (so the ``haproxy_stats`` gate has something to judge).

Everything binds 127.0.0.1 and is stopped when the test ends."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shiftover.demo.haproxy import find_haproxy


def need_haproxy() -> None:
    if find_haproxy() is None:
        pytest.fail("these tests need HAProxy: apt-get install haproxy (see FIELD-NOTES)",
                    pytrace=False)


@contextmanager
def traffic(url: str, period: float = 0.01) -> Iterator[None]:
    """GET ``url`` every ``period`` s in a thread until the block ends (bounded, joined)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    r.read()
            except OSError:
                pass
            stop.wait(period)

    t = threading.Thread(target=loop, name="traffic", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=5)
