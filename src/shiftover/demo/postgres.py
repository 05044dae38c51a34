"""A managed PostgreSQL for the tests (and for trying a shared state store locally).

The store's PostgreSQL backend is tested against a *real* server: table locks,
``clock_timestamp()``, row visibility between processes and a driver that
reports errors its own way are exactly what a fake would get wrong. Debian's
``postgresql`` package installs the binaries (``/usr/lib/postgresql/15/bin``)
and starts nothing; :class:`PostgresServer` runs a throwaway cluster with them:

- **Not as root.** PostgreSQL refuses to run as root. When we are root, every
  server binary (``initdb``, ``postgres``, ``pg_ctl``) runs through
  ``runuser -u postgres --`` (the ``postgres`` user comes with the package),
  in a temporary directory owned by that user. When we are not root, they run
  as us.
- **Foreground child.** The process we hold is ``postgres`` itself (through
  ``runuser``), not a daemon started by ``pg_ctl start``: it is stopped and
  reaped like every other :class:`~shiftover.demo.process.ChildProcess`.
  Stopping asks ``pg_ctl stop -m fast`` first (disconnect clients, shut down
  cleanly), then reaps; SIGTERM/SIGKILL only if that fails.
- **Ready** means ``postmaster.pid`` says ``ready`` (PostgreSQL 10+ writes its
  state there), which is exactly "accepting connections": a TCP port that
  answers can still be "the database system is starting up".
- **Reachable only locally.** TCP on 127.0.0.1 with a password (SCRAM; a random
  one per cluster, in :attr:`url`), plus a unix socket in the cluster's own
  directory (mode 0700) with trust, used by :meth:`create_database`.
- **Fast, not durable.** ``fsync``, ``synchronous_commit`` and
  ``full_page_writes`` are off by default: the data is thrown away with the
  directory. Pass ``settings`` to change any server setting.
- **Ports** as for Prometheus: a free port is picked, and the start is retried
  on a new one if the server dies at startup (another process took it).

Measured here (Debian 12, 2 cores): ``initdb`` ~0.7 s, start to ready ~0.1 s.

::

    with PostgresServer() as pg:
        store = open_store(pg.url)
        url2 = pg.create_database("other")
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from shiftover.demo.process import ChildProcess, log_tail, startup_error
from shiftover.errors import BadInput, ShiftoverError

_DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Server settings for a throwaway test cluster (see the module docstring).
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``pg_ctl``.

    ``postgres`` on PATH if it is there; else the newest of Debian's
    ``/usr/lib/postgresql/<major>/bin``. BadInput naming the package otherwise.
    """
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        (p for p in Path("/").glob(_DEBIAN_BINDIRS.lstrip("/")) if (p / "postgres").exists()),
        key=lambda p: _major(p.parent.name),
        reverse=True,
    )
    if not found:
        raise BadInput(
            f"PostgreSQL's server binaries were not found (no postgres on PATH, nothing in "
            f"{_DEBIAN_BINDIRS})",
            hint="install them: apt-get install -y postgresql (Debian 12 ships PostgreSQL 15, "
            "the version shiftover is tested with)",
        )
    return found[0]


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


class PostgresServer(ChildProcess):
    """A throwaway PostgreSQL cluster run as a child process (see the module docstring).

    ``directory``: where the cluster lives; None (the default) makes a temporary
    directory and removes it on :meth:`stop`. As root, the directory is handed to
    the ``postgres`` user, so its parents must let that user through (``/tmp``
    does; pytest's ``tmp_path``, mode 0700, does not).
    """

    poll_interval = 0.02

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        port: int | None = None,
        user: str = "shiftover",
        database: str = "shiftover",
        settings: Mapping[str, str] | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        super().__init__()
        for what, name in (("user", user), ("database", database)):
            if not _NAME.match(name):
                raise BadInput(
                    f"PostgreSQL {what} name {name!r} is not a plain lower-case identifier",
                    hint="use letters, digits and _ (e.g. shiftover_test)",
                )
        self.bindir = find_bindir()
        self.os_user = _server_os_user()
        self._owned_dir = directory is None
        self.directory = Path(directory) if directory is not None else None
        self._fixed_port = port
        self.port = port or 0
        self.user = user
        self.database = database
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.password = secrets.token_hex(16)
        self._starting = False

    # -- public ----------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._dir / "data"

    @property
    def log_path(self) -> Path:
        return self._dir / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of :attr:`database` over TCP (the password included)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return (
            f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"
        )

    def start(self) -> Self:
        if self.running():
            return self
        self._starting = True
        try:
            self._prepare()
            self._launch_on_a_free_port(self._server_argv, self.log_path, self.ready_timeout,
                                        fixed_port=bool(self._fixed_port), cwd=self._dir)
            self._createdb(self.database)
        except BaseException:
            self._starting = False
            self.stop()
            raise
        self._starting = False
        return self

    def stop(self) -> None:
        """Fast shutdown (``pg_ctl stop -m fast``), reap; remove an owned directory.

        Safe to call twice, and after a failed start.
        """
        if self.running():
            self._run(
                [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast",
                 "-w", "-t", str(int(self.stop_timeout))],
                check=False,
                timeout=self.stop_timeout + 5,
            )
        self._end(self.stop_timeout)
        if self._owned_dir and not self._starting and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def create_database(self, name: str) -> str:
        """Create database ``name`` (owned by :attr:`user`) and return its URL."""
        if not _NAME.match(name):
            raise BadInput(f"PostgreSQL database name {name!r} is not a plain lower-case identifier")
        self._createdb(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting anyone still on it."""
        self._client("dropdb", ["--force", "--if-exists", name])

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines, "\n")

    # -- internals -------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self.directory is None:
            raise ShiftoverError("PostgresServer is not started")
        return self.directory

    def _as_server_user(self, argv: Sequence[str]) -> list[str]:
        if self.os_user is None:
            return list(argv)
        return ["runuser", "-u", self.os_user, "--", *argv]

    def _run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a server binary as the server's user; its output is returned, and quoted on failure."""
        full = self._as_server_user(argv)
        try:
            done = subprocess.run(
                full, capture_output=True, text=True, timeout=timeout, check=False, cwd=self._dir,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ShiftoverError(
                f"{Path(argv[0]).name} failed for the PostgreSQL cluster in {self._dir}: {e}",
                hint="is Debian's postgresql package installed (apt-get install -y postgresql)?",
            ) from None
        if check and done.returncode != 0:
            out = (done.stdout + done.stderr).strip()
            raise ShiftoverError(
                f"{Path(argv[0]).name} exited with status {done.returncode} for the PostgreSQL "
                f"cluster in {self._dir}:\n{out[-2000:]}",
                hint="PostgreSQL refuses to run as root: as root it runs as the postgres user, "
                "which must be able to reach the directory",
            )
        return done

    def _prepare(self) -> None:
        """Make the directory (owned by the server's user) and run initdb once."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="shiftover-pg-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        if (self.data_dir / "PG_VERSION").exists():
            return
        pwfile = self._dir / "initdb.pw"
        pwfile.write_text(self.password + "\n")
        try:
            if self.os_user is not None:
                entry = pwd.getpwnam(self.os_user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            os.chmod(pwfile, 0o600)
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", self.user,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _server_argv(self) -> list[str]:
        argv = [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self._dir}",
            "-c", "unix_socket_permissions=0700",
        ]
        for name, value in sorted(self.settings.items()):
            argv += ["-c", f"{name}={value}"]
        return self._as_server_user(argv)

    def _client(self, tool: str, args: Sequence[str]) -> None:
        # over the unix socket in our directory: trust auth, no password on a command line
        self._run(
            [str(self.bindir / tool), "-h", str(self._dir), "-p", str(self.port),
             "-U", self.user, *args],
            timeout=60,
        )

    def _createdb(self, name: str) -> None:
        self._client("createdb", [name])

    def _ready(self) -> bool:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        # line 8 is the postmaster's status: "starting", "stopping", "ready", "standby"
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _not_ready(self, code: int | None) -> ShiftoverError:
        return startup_error("PostgreSQL", f"127.0.0.1:{self.port}", code, self.ready_timeout,
                             self.log_path)


def _server_os_user() -> str | None:
    """``postgres`` when we are root (PostgreSQL refuses root), else None (run as ourselves)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise BadInput(
            "PostgreSQL refuses to run as root, and there is no postgres user to run it as",
            hint="install Debian's postgresql package (it creates the user): "
            "apt-get install -y postgresql",
        ) from None
    if shutil.which("runuser") is None:
        raise BadInput(
            "PostgreSQL refuses to run as root, and runuser (util-linux) is not installed "
            "to run it as the postgres user",
            hint="apt-get install -y util-linux, or run as a non-root user",
        )
    return "postgres"


__all__ = ["FAST_SETTINGS", "PostgresServer", "find_bindir"]
