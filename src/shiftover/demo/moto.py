"""A local AWS double: ``moto_server`` (moto[server]) on 127.0.0.1, as a child process.

Tests and benchmarks reach it the way users reach AWS: boto3 clients built the
standard way, with ``AWS_ENDPOINT_URL`` pointing here (:meth:`MotoServer.aws_env`).
Nothing in shiftover knows it is talking to moto.

moto accepts much that AWS refuses (weights out of range, unknown target
groups, ...) and reports Route53 changes INSYNC at once; see
../shared/FIELD-NOTES.md. Our routers validate what AWS would refuse themselves.
"""

from __future__ import annotations

import http.client
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Self

from shiftover.demo.process import ChildProcess, answers_200, startup_error
from shiftover.errors import ShiftoverError

REGION = "us-east-1"


def _binary() -> str:
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if found is None:
        raise ShiftoverError("moto_server is not installed",
                             hint="install the dev extras: .venv/bin/pip install -e '.[dev]'")
    return found


class MotoServer(ChildProcess):
    """``with MotoServer() as moto: os.environ.update(moto.aws_env())``."""

    def __init__(self, directory: Path | str | None = None, *, ready_timeout: float = 30.0,
                 stop_timeout: float = 5.0) -> None:
        super().__init__()
        self._own_directory = directory is None  # a temporary one, removed on stop
        self.directory = Path(directory or tempfile.mkdtemp(prefix="shiftover-moto-"))
        self.log_path = self.directory / "moto.log"
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def aws_env(self) -> dict[str, str]:
        """Environment variables that point boto3 here, with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def reset(self) -> None:
        """Forget every resource (``POST /moto-api/reset``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
        try:
            conn.request("POST", "/moto-api/reset")
            conn.getresponse().read()
        finally:
            conn.close()

    def start(self) -> Self:
        if self.running():
            return self
        self._launch_on_a_free_port(
            lambda: [_binary(), "-H", "127.0.0.1", "-p", str(self.port)],
            self.log_path, self.ready_timeout, fixed_port=False, cwd=self.directory)
        return self

    def stop(self) -> None:
        self._end(self.stop_timeout)
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _ready(self) -> bool:
        return answers_200(self.port, "/moto-api/data.json")

    def _not_ready(self, code: int | None) -> ShiftoverError:
        return startup_error("moto_server", self.url, code, self.ready_timeout, self.log_path)


__all__ = ["REGION", "MotoServer"]
