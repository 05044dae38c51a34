"""https targets: the certificate is verified before any load (a self-signed staging
host is refused with a hint), and --insecure loads it without checking."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shiftover.cli import app

pytestmark = pytest.mark.e2e
runner = CliRunner()


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _serve(cert: Path, key: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[str]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    yield from _serve(cert, key)


@pytest.fixture
def trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A certificate signed by a CA that this test's processes trust (SSL_CERT_FILE)."""
    ca_key, ca = tmp_path / "ca.key", tmp_path / "ca.pem"
    key, csr, cert, ext = (tmp_path / n for n in ("srv.key", "srv.csr", "srv.pem", "ext.cnf"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
             "-days", "1", "-subj", "/CN=shiftover test CA")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "1", "-extfile", str(ext))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the Locust child inherits it
    yield from _serve(cert, key)


def test_a_certificate_that_verifies_is_loaded_with_verification_on(trusted: str, tmp_path: Path) -> None:
    r = runner.invoke(app, ["load", trusted, "--rate", "20", "--duration", "2s", "--slo-p99", "2s",
                            "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["target"]["tls_verify"] is True
    s = doc["steps"][0]
    assert s["requests"] > 0 and s["failures"] == 0, s  # every request verified and answered


def test_a_self_signed_certificate_is_refused_then_loaded_with_insecure(self_signed: str, tmp_path: Path) -> None:
    r = runner.invoke(app, ["load", self_signed, "--rate", "20", "--duration", "2s", "--out", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert "does not verify" in r.output and "--insecure" in r.output
    r = runner.invoke(app, ["load", self_signed, "--rate", "20", "--duration", "2s", "--insecure",
                            "--slo-p99", "2s", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["target"]["tls_verify"] is False
    s = doc["steps"][0]
    assert s["requests"] > 0 and s["failures"] == 0, s
