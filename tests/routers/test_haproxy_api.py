"""HAProxyRuntime: address forms, parsing, and error mapping (some without HAProxy)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shiftover.errors import RouterError
from shiftover.haproxy_api import HAProxyRuntime

if TYPE_CHECKING:
    from conftest import Stack


@pytest.mark.parametrize(
    ("address", "tcp", "path"),
    [
        ("/run/haproxy/admin.sock", None, "/run/haproxy/admin.sock"),
        ("unix:///run/haproxy/admin.sock", None, "/run/haproxy/admin.sock"),
        ("./admin.sock", None, "./admin.sock"),
        ("127.0.0.1:9999", ("127.0.0.1", 9999), None),
        ("tcp://127.0.0.1:9999", ("127.0.0.1", 9999), None),
        ("localhost:9999", ("localhost", 9999), None),
        ("tcp://[::1]:9999", ("::1", 9999), None),
    ],
)
def test_address_forms(address: str, tcp: tuple[str, int] | None, path: str | None) -> None:
    rt = HAProxyRuntime(address, 1.0)
    assert rt._tcp == tcp
    assert rt._path == path


def test_bad_construction() -> None:
    with pytest.raises(RouterError, match="no HAProxy runtime API address"):
        HAProxyRuntime("", 1.0)
    with pytest.raises(RouterError, match="timeout must be > 0"):
        HAProxyRuntime("/x.sock", 0)


def test_permission_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(
        RouterError, match=r"permission denied opening the HAProxy runtime API at /x\.sock"
    ) as e:
        HAProxyRuntime("/x.sock", 1.0).command("show info")
    assert "`stats socket` line" in str(e.value)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts a connection and never answers."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        srv.close()


def test_timeout(silent_server: int) -> None:
    rt = HAProxyRuntime(f"127.0.0.1:{silent_server}", 0.2)
    with pytest.raises(RouterError, match=r"did not answer `show info` within 0.2s"):
        rt.command("show info")


def test_stale_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: like a crashed HAProxy
    with pytest.raises(RouterError, match="no HAProxy runtime API at"):
        HAProxyRuntime(str(path), 1.0).command("show info")


def test_show_stat_parses_csv(fresh: Stack) -> None:
    rows = fresh.haproxy.runtime().show_stat()
    new = next(r for r in rows if r["pxname"] == "web" and r["svname"] == "new")
    assert new["hrsp_5xx"] == "0"
    assert new["uweight"] == "0"
    row = fresh.haproxy.runtime().stat_row("web", "old")
    assert row["weight"] == "256"


def test_stat_row_errors(fresh: Stack) -> None:
    rt = fresh.haproxy.runtime()
    with pytest.raises(RouterError, match="no backend 'nope'") as e:
        rt.stat_row("nope", "old")
    assert "web" in str(e.value)
    with pytest.raises(RouterError, match="no server 'eks' in backend 'web'"):
        rt.stat_row("web", "eks")


def test_server_state(fresh: Stack) -> None:
    rt = fresh.haproxy.runtime()
    st = rt.server_state("web", "old")
    assert (st.weight, st.initial_weight, st.admin, st.operational) == (
        256,
        256,
        "ready",
        "running",
    )
    rt.command("set server web/old state maint")
    assert rt.server_state("web", "old").admin == "maint"
    rt.command("set server web/old state drain")
    assert rt.server_state("web", "old").admin == "drain"


def test_haproxy_error_replies(fresh: Stack) -> None:
    rt = fresh.haproxy.runtime()
    with pytest.raises(
        RouterError, match=r"refused `set server nope/new weight 1`: No such backend"
    ):
        rt.set_weight("nope", "new", 1)
    with pytest.raises(RouterError, match="No such server"):
        rt.set_weight("web", "eks", 1)
    with pytest.raises(RouterError, match="Unknown command"):
        rt.command("frobnicate")


def test_user_level_socket_is_refused_writes(tmp_path: Path) -> None:
    """A `level user` socket answers reads but refuses weight changes."""
    from shiftover.demo.haproxy import HAProxyProcess, find_haproxy, free_port

    if find_haproxy() is None:
        pytest.skip("haproxy is not installed")
    proc = HAProxyProcess(
        tmp_path, old_address=f"127.0.0.1:{free_port()}", new_address=f"127.0.0.1:{free_port()}"
    )
    cfg = proc.config().replace("mode 600 level admin", "mode 600 level user")
    proc.config = lambda: cfg  # type: ignore[method-assign]
    with proc:
        rt = proc.runtime()
        assert rt.server_state("web", "old").weight == 256
        with pytest.raises(RouterError, match="Permission denied") as e:
            rt.set_weight("web", "new", 10)
        assert "level admin" in str(e.value)


def test_timeout_caps_the_whole_reply_not_each_read(tmp_path: Path) -> None:
    """A peer that trickles one byte at a time cannot hold a call past its timeout."""
    import socket as _socket
    import threading
    import time as _time

    path = str(tmp_path / "trickle.sock")
    server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    done = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            for _ in range(50):  # 50 x 0.1 s = 5 s if nobody stops listening
                if done.is_set():
                    return
                try:
                    conn.sendall(b"#")
                except OSError:
                    return
                _time.sleep(0.1)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        rt = HAProxyRuntime(path, timeout=0.5)
        with pytest.raises(RouterError, match="did not answer"):
            rt.command("show stat")
        # the call gave up while the peer was still trickling (it would go on for 5 s)
        assert t.is_alive()
    finally:
        done.set()
        t.join(5)
        server.close()
