"""The journal (append-only events) and the lease, on SQLAlchemy Core.

Why a database and not a log file: a running ``shiftover run`` and operator
commands typed in other terminals (``pause``, ``approve``, ``rollback``) must
read and write the same state at the same time, and two runs driving one
router target must be refused. SQLite gives that on one machine with no server;
PostgreSQL (by URL) gives it across machines. The code is portable Core: JSON is
stored as TEXT, no dialect-specific types. Only ``sqlite`` and ``postgresql``
URLs are accepted: the lease clock and the locks below are written for those two.

The API
=======

::

    Store(url, *, busy_timeout=10.0, create=True, clock=None)
    open_store(url, *, busy_timeout=10.0, create=True, clock=None) -> Store
    default_state_url() -> str                 # per host; STATE_ENV_VAR overrides
    STATE_ENV_VAR = "SHIFTOVER_STATE"

    Store.append(*, service, run_id, kind, at, data=None, actor=None,
                 fence: tuple[key, holder] | None = None) -> Event
    Store.events(*, service, after_id=0, run_id=None, kinds=None, limit=None) -> list[Event]
    Store.last_event(*, service, kinds=None) -> Event | None
    Store.services() -> list[str]              # services with events

    Store.now() -> float                       # the lease clock (the database's)
    Store.acquire_lease(*, key, holder, ttl, meta=None) -> Lease   # LeaseHeld
    Store.renew_lease(*, key, holder, ttl) -> Lease                # LeaseLost
    Store.release_lease(*, key, holder) -> None
    Store.lease(*, key) -> Lease | None
    Store.leases() -> list[Lease]

    Lease(key, holder, acquired_at, expires_at, meta); Lease.is_expired(now)
    StoreMissing(StoreError)                   # create=False and no SQLite file

Events
======

Events are the truth. Nothing in this API updates or deletes an event: state
("which step are we on", "is the run paused") is a fold over them, done by the
engine and the views. Event ids come from one counter per store and increase
with commit order, so ``events(after_id=last_seen)`` is a safe way to follow a
run from another process:

- SQLite: every write runs in ``BEGIN IMMEDIATE``, so writers are serialised
  and ids are handed out in commit order. WAL mode lets readers run while a
  writer works; a busy timeout makes writers queue instead of failing at once.
- PostgreSQL: an append takes a table lock for the length of its (tiny)
  transaction for the same reason; sequences alone can commit out of order.

SQLite and Python 3.11: the ``sqlite3`` driver's legacy transaction control
does not emit BEGIN before SELECT or DDL, and emits it lazily before DML. We
switch it off (``isolation_level = None``) and emit BEGIN ourselves from
SQLAlchemy's ``begin`` event, as SQLAlchemy's SQLite documentation recommends.
That is what makes "read the lease row, then write it" one atomic step.

The lease: one writer per router target
=======================================

A lease is keyed by **what the router drives** (an HAProxy socket + backend; a
Route53 zone + record; an ALB listener rule), not by the service name: two
plans, or two copies of one plan, that name the same HAProxy backend must
contend for one lease, whatever their ``service`` says. The key is an opaque
string built by the engine; ``meta`` is free JSON beside it (the engine puts
service, run_id, pid and host there, for ``status`` and for error messages).

A run acquires the lease before touching the router, renews it every tick, and
**fences** every journal append with it: ``append(..., fence=(key, holder))``
checks, inside the insert's own transaction, that the lease row still names
``holder`` and has not expired, else raises :class:`LeaseLost` and appends
nothing. Operator events (pause, approve, rollback) are appended without a
fence: an operator never holds the lease.

- ``acquire_lease`` succeeds when nobody holds the key, when the lease has
  expired (takeover: ``acquired_at`` restarts), or when ``holder`` already holds
  it live (refreshed, keeping ``acquired_at``). Otherwise :class:`LeaseHeld`
  naming the holder and its expiry.
- ``renew_lease`` succeeds only while the row names ``holder`` **and** has not
  expired. An expired lease is never revived, even when nobody took it over in
  the meantime: while it was expired another process may have acted (a
  ``shiftover rollback`` going straight to the router, a run that came and
  went), so the run must start over and re-read everything. It raises
  :class:`LeaseLost` saying which of the three happened: expired (when, by how
  much), taken over (by whom, since when), or released.
- ``release_lease`` deletes the row only if it names ``holder``.

**The lease clock is the database's clock.** Every expiry is judged by
:meth:`Store.now` inside the deciding transaction, never by the caller's clock,
so a host whose clock runs 31 s ahead cannot take over a live lease held from
another host. PostgreSQL: ``extract(epoch from clock_timestamp())`` (not
``now()``, which is the transaction's start and would be stale after waiting
for a lock). SQLite: the clock SQLite itself reads, ``julianday('now')``
converted to Unix seconds (``unixepoch('subsec')`` needs SQLite 3.42; Debian 12
ships 3.40), rounded to the millisecond SQLite resolves. A SQLite file is only
shared on one host (SQLite's locking is not safe over network filesystems), so
its clock is that host's. ``clock=`` injects a clock for tests only: the Store
then uses it for every lease decision.

Lease decisions are serialised, then judged: SQLite by ``BEGIN IMMEDIATE``;
PostgreSQL by ``LOCK TABLE shiftover_leases IN SHARE ROW EXCLUSIVE MODE`` for
acquire/renew/release (lease writes are rare: one per tick per run) and ``IN
SHARE MODE`` for a fenced append, which lets fenced appends run side by side
but makes a takeover wait until the append has committed. The clock is read
*after* the lock is granted. Lock order is always leases, then events, so no
cycle can form.

A deleted or replaced SQLite file
=================================

An open SQLite connection keeps writing to the file it opened even after the
path was deleted or a new file was moved over it; a second run would then
create a fresh file at the path and take "the" lease there, and both would
think they hold it. So a Store on a SQLite file remembers the file's identity
(device + inode) when it opens it, and keeps a descriptor on it so the inode
cannot be reused while the Store lives. Every write checks that the path still
names that file: ``renew_lease`` and a fenced ``append`` raise :class:`LeaseLost`
("the state file PATH was deleted or replaced while this run held a lease in
it"); any other write raises :class:`StoreError`. Connections opened after the
first use SQLite's ``mode=rw``, so a later connection never re-creates a
deleted file behind the Store's back.

``create=False`` opens a SQLite file only if it exists (:class:`StoreMissing`
otherwise): read-only commands (``status``, ``history``, ``plan``) must never
create a state file. On PostgreSQL the database must exist anyway; the tables
are created if missing either way.

Where the state lives by default
================================

:func:`default_state_url` is one location per host, not per plan: the state
used to live beside each plan, which let two copies of a plan in two
directories take two leases and both drive one HAProxy. ``$SHIFTOVER_STATE``
(a URL) overrides it, for a shared PostgreSQL or a team's file; otherwise root
uses ``/var/lib/shiftover/state.db`` (the FHS place for a service's state) and
anyone else ``$XDG_STATE_HOME/shiftover/state.db`` (default
``~/.local/state/shiftover/state.db``, the XDG base-directory place for state
that should survive restarts but is not configuration).

Schema versions
===============

Version 2 (this one) keys leases by router target and adds ``meta``. A version
1 file or database is migrated in place when opened: the events table is not
touched; the lease table (keyed by service, which no version-2 run would ever
look up) is dropped and recreated. If a version-1 lease is still live by the
database clock, a run of the previous shiftover is driving that service: the
migration refuses (StoreError naming it) instead of pulling its lease away.
A schema newer than this code is refused.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import StaticPool

from shiftover.errors import LeaseHeld, LeaseLost, StoreError, StoreMissing

SCHEMA_VERSION = 2
DEFAULT_BUSY_TIMEOUT = 10.0  # seconds a writer waits for another writer
STATE_ENV_VAR = "SHIFTOVER_STATE"
_PG_SCHEMA_LOCK = 0x5348494654  # advisory lock key for schema setup ("SHIFT")
_SUPPORTED = ("sqlite", "postgresql")
_URL_HINT = "use sqlite:////path/to/state.db, or postgresql+psycopg://user@host/db"

_NOW_SQL = {
    # julianday('now') is SQLite's own clock, in days; 2440587.5 is 1970-01-01T00:00Z.
    "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
    "postgresql": "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS double precision)",
}


_metadata = MetaData()

_schema_version = Table(
    "shiftover_schema_version",
    _metadata,
    Column("version", Integer, nullable=False),
)

_events = Table(
    "shiftover_events",
    _metadata,
    # BIGINT on servers, INTEGER on SQLite (so it is the rowid alias).
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("service", String(255), nullable=False),
    Column("run_id", String(255), nullable=False),
    Column("kind", String(100), nullable=False),
    Column("at", Double(), nullable=False),
    Column("actor", String(255), nullable=True),
    Column("data", Text(), nullable=False),
    Index("ix_shiftover_events_service_id", "service", "id"),
    sqlite_autoincrement=True,  # ids are never reused
)

_leases = Table(
    "shiftover_leases",
    _metadata,
    Column("key", String(500), primary_key=True),  # what the router drives
    Column("holder", String(500), nullable=False),
    Column("acquired_at", Double(), nullable=False),
    Column("expires_at", Double(), nullable=False),
    Column("meta", Text(), nullable=False),  # JSON object
)

# The version-1 lease table, for the migration only.
_v1_leases = Table(
    "shiftover_leases",
    MetaData(),
    Column("service", String(255), primary_key=True),
    Column("holder", String(500), nullable=False),
    Column("acquired_at", Double(), nullable=False),
    Column("expires_at", Double(), nullable=False),
)


@dataclass(frozen=True)
class Event:
    """One journal entry. ``actor`` is ``user@host`` for operator actions, None for the engine."""

    id: int
    service: str
    run_id: str
    kind: str
    at: float
    actor: str | None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json`` output and reports)."""
        return {
            "id": self.id,
            "service": self.service,
            "run_id": self.run_id,
            "kind": self.kind,
            "at": self.at,
            "actor": self.actor,
            "data": self.data,
        }


@dataclass(frozen=True)
class Lease:
    """Who may drive a router target (``key``), until when (database clock).

    ``meta`` is what the holder said about itself when it acquired the lease
    (the engine: service, run_id, pid, host).
    """

    key: str
    holder: str
    acquired_at: float
    expires_at: float
    meta: dict[str, Any] = field(default_factory=dict)

    def is_expired(self, now: float) -> bool:
        """True once ``now`` (from :meth:`Store.now`) has reached ``expires_at``."""
        return self.expires_at <= now

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json`` output)."""
        return {
            "key": self.key,
            "holder": self.holder,
            "acquired_at": self.acquired_at,
            "expires_at": self.expires_at,
            "meta": self.meta,
        }


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _in(seconds: float) -> str:
    if seconds <= 0:
        return "already expired"
    return f"in {seconds:.0f}s by the database clock"


def _seconds(seconds: float) -> str:
    return f"{seconds:.3f}s" if seconds < 10 else f"{seconds:.0f}s"


def operator_identity() -> str:
    """``user@host`` for the journal's ``actor``; never fails (containers may have no user)."""
    try:
        user = getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry for the uid
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    try:
        host = socket.gethostname() or "unknown-host"
    except OSError:
        host = "unknown-host"
    return f"{user or 'unknown'}@{host}"


def state_url(value: str, *, source: str = "--state") -> str:
    """A state store given by a person: a database URL, or the path of a SQLite file
    (``./state.db``, ``/srv/shiftover/state.db``, ``~/cutover.db``). ``source``
    names where it came from (``--state``, ``SHIFTOVER_STATE``) for the errors. An
    in-memory SQLite URL is refused: other terminals and the next run could not
    see it."""
    value = value.strip()
    if not value:
        raise StoreError(f"{source} is empty", hint=f"give a file path such as ./state.db, or {_URL_HINT}")
    pathlike = "/" in value or value.endswith((".db", ".sqlite", ".sqlite3")) or value.startswith("~")
    if "://" not in value and pathlike:
        if value.endswith("/") or Path(value).expanduser().is_dir():
            raise StoreError(f"{source} {value!r} is a directory",
                             hint=f"name the file: {source} {value.rstrip('/')}/state.db")
        return URL.create("sqlite", database=str(Path(value).expanduser().absolute())) \
            .render_as_string(hide_password=False)
    try:
        url = make_url(value)
    except sa_exc.ArgumentError:
        raise StoreError(
            f"{source} {_redact(value)!r} is neither a database URL nor a file path",
            hint=f"{_URL_HINT} (four slashes before an absolute path), or a file path "
            f"such as ./{_redact(value)}.db",
        ) from None
    if url.get_backend_name() not in _SUPPORTED:
        raise StoreError(
            f"{source} {_redact(value)!r} is a {url.get_backend_name()} URL: shiftover keeps its "
            "journal and leases in SQLite or PostgreSQL only",
            hint=f"{_URL_HINT}, or a file path such as ./state.db")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise StoreError(
            f"{source} {_redact(value)!r} is an in-memory journal: other terminals (pause, "
            "approve, rollback) and the next run could not see it",
            hint="give a file: ./state.db or sqlite:////path/to/state.db")
    return value


def default_state_url() -> str:
    """The state store for this host (see the module docstring for why per host).

    ``$SHIFTOVER_STATE`` (a URL or a file path) if set; else
    ``sqlite:////var/lib/shiftover/state.db`` for root; else
    ``$XDG_STATE_HOME/shiftover/state.db`` (XDG default ``~/.local/state``).
    Nothing is created here: :class:`Store` does that.
    """
    configured = os.environ.get(STATE_ENV_VAR, "").strip()
    if configured:
        return state_url(configured, source=STATE_ENV_VAR)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        db = Path("/var/lib/shiftover/state.db")
    else:
        xdg = os.environ.get("XDG_STATE_HOME", "")
        # the XDG spec: a relative path is invalid and must be ignored
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "state"
        db = base / "shiftover" / "state.db"
    return URL.create("sqlite", database=str(db)).render_as_string(hide_password=False)


def open_store(
    url: str,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    create: bool = True,
    clock: Callable[[], float] | None = None,
) -> Store:
    """Open the store at ``url`` (see :class:`Store`)."""
    return Store(url, busy_timeout=busy_timeout, create=create, clock=clock)


class Store:
    """The journal and lease store, SQLAlchemy-backed.

    ``url``: ``sqlite:////path/to/state.db`` (file), ``sqlite://`` (memory, this
    Store object only), ``postgresql+psycopg://user:pw@host/db``. Opening creates
    the tables, and with ``create=True`` a SQLite file and its parent
    directories; with ``create=False`` a missing SQLite file is
    :class:`StoreMissing`. ``clock`` replaces the database clock (tests only).

    A Store may be used from several threads. After ``os.fork()`` the child
    drops the parent's connections and opens its own (so a forked in-memory
    store starts empty: memory is for tests, one process at a time).
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._file: Path | None = None  # a SQLite file we can check the identity of
        self._file_fd: int | None = None
        self._file_id: tuple[int, int] | None = None
        self._may_create = create
        try:
            parsed = make_url(url)
        except sa_exc.ArgumentError:
            raise StoreError(
                f"state store URL {_redact(url)!r} is not a database URL", hint=_URL_HINT
            ) from None
        self._where = self._describe(parsed)
        backend = parsed.get_backend_name()
        if backend not in _SUPPORTED:
            raise StoreError(
                f"state store {self._where}: shiftover keeps state in SQLite or PostgreSQL, "
                f"not {backend!r}",
                hint=_URL_HINT,
            )
        self._is_sqlite = backend == "sqlite"
        self._engine = self._make_engine(parsed, create=create)
        try:
            self._init_schema()
            self._may_create = False  # from now on a connection never creates the file
            self._pin_file()
        except BaseException:
            self.close()
            raise

    # --- setup -------------------------------------------------------------

    @staticmethod
    def _describe(url: URL) -> str:
        if url.get_backend_name() == "sqlite":
            db = url.database
            if not db or db == ":memory:" or url.query.get("mode") == "memory":
                return "in-memory SQLite"
            return str(Path(db).absolute()) if not db.startswith("file:") else db
        return url.render_as_string(hide_password=True)

    def _make_engine(self, url: URL, *, create: bool) -> Engine:
        if not self._is_sqlite:
            try:
                return create_engine(url, pool_pre_ping=True)
            except (sa_exc.NoSuchModuleError, ImportError, sa_exc.ArgumentError) as e:
                raise StoreError(
                    f"cannot open state store {self._where}: {e}",
                    hint=f"{_URL_HINT}; for PostgreSQL install the driver: "
                    "pip install 'shiftover[postgres]'",
                ) from None
        db = url.database
        memory = not db or db == ":memory:" or url.query.get("mode") == "memory"
        connect_args: dict[str, Any] = {"timeout": self._busy_timeout}
        if memory:
            # One connection shared by every thread (guarded by self._lock):
            # otherwise each thread would see its own empty database.
            connect_args["check_same_thread"] = False
            engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
        elif db is not None and db.startswith("file:"):
            # a SQLite URI: the caller chose the open mode; no identity tracking
            engine = create_engine(url, connect_args=connect_args)
        else:
            assert db is not None
            path = Path(db).absolute()
            if not path.exists():
                if not create:
                    raise StoreMissing(
                        f"there is no state file at {path}: nothing has been journalled there",
                        hint="`shiftover run` creates it; if the runs use another state store, "
                        f"pass --state URL or set {STATE_ENV_VAR}",
                    )
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreError(
                        f"cannot create the directory for the state database {self._where}: "
                        f"{e.strerror or e}",
                        hint="choose a state path in a writable directory, or fix its permissions",
                    ) from None
            self._file = path
            timeout = self._busy_timeout

            def connect() -> sqlite3.Connection:
                # mode=rw once the Store is open: a later connection must fail on a
                # deleted file, not silently create an empty one (see module doc)
                mode = "rwc" if self._may_create else "rw"
                return sqlite3.connect(
                    f"file:{quote(str(path))}?mode={mode}",
                    uri=True,
                    timeout=timeout,
                    check_same_thread=False,
                )

            # the URL picks the pool (a queue of file connections); ``creator`` opens them
            engine = create_engine(url, creator=connect)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control away from the sqlite3 driver (see module doc).
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
                if not memory:
                    _use_wal(cur, self._busy_timeout)
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("shiftover_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _init_schema(self) -> None:
        with self._tx(write=True, doing="opening it (creating tables if needed)") as conn:
            if conn.dialect.name == "postgresql":
                # concurrent CREATE TABLEs collide in pg_type; SQLite is serialised already
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_SCHEMA_LOCK})")
            version: int | None = None
            if inspect(conn).has_table(_schema_version.name):
                version = conn.execute(select(func.max(_schema_version.c.version))).scalar()
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(
                    f"state store {self._where} has schema version {version}, newer than this "
                    f"shiftover understands ({SCHEMA_VERSION})",
                    hint="upgrade shiftover to the version that wrote it, or use another state store",
                )
            if version == 1:
                self._migrate_from_v1(conn)
            _metadata.create_all(conn)
            if version is None:
                conn.execute(insert(_schema_version).values(version=SCHEMA_VERSION))
            elif version < SCHEMA_VERSION:
                conn.execute(update(_schema_version).values(version=SCHEMA_VERSION))

    def _migrate_from_v1(self, conn: Connection) -> None:
        """Version 1 -> 2: leases keyed by router target, with ``meta``. Events untouched."""
        now = self._now(conn)
        live = conn.execute(
            select(_v1_leases).where(_v1_leases.c.expires_at > now).order_by(_v1_leases.c.service)
        ).first()
        if live is not None:
            raise StoreError(
                f"state store {self._where} was written by an older shiftover (schema 1) and "
                f"a run of it still holds a live lease on service {live.service!r} "
                f"({live.holder}, expiring {_when(float(live.expires_at))}, "
                f"{_in(float(live.expires_at) - now)}); upgrading the store now would pull "
                "that lease from under it",
                hint="let that run finish (or stop it and wait for its lease to expire), "
                "then run this shiftover again: it upgrades the store in place, keeping every event",
            )
        _v1_leases.drop(conn)

    def _pin_file(self) -> None:
        """Remember which file the path names now, and keep its inode from being reused."""
        if self._file is None:
            return
        try:
            fd = os.open(self._file, os.O_RDONLY)
        except OSError as e:
            raise StoreError(
                f"cannot open the state database {self._where}: {e.strerror or e}",
                hint="check that the file exists and is readable",
            ) from None
        self._file_fd = fd
        st = os.fstat(fd)
        self._file_id = (st.st_dev, st.st_ino)

    def _file_replaced(self) -> bool:
        """True when the SQLite path no longer names the file this Store opened."""
        if self._file is None or self._file_id is None:
            return False
        try:
            st = os.stat(self._file)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._file_id

    def _check_file(self, *, holding: str | None) -> None:
        """Refuse a write when the state file was deleted or replaced (see module doc).

        ``holding``: the lease key this write is fenced by (LeaseLost), or None (StoreError).
        """
        if not self._file_replaced():
            return
        if holding is not None:
            raise LeaseLost(
                f"the state file {self._file} was deleted or replaced while this run held a "
                f"lease in it (on {holding!r}): another run may have started on the new file",
                hint="this run is no longer in control: stop it; find out who deleted or "
                "replaced the file, then start a new run, which re-reads the router",
            )
        raise StoreError(
            f"the state file {self._file} was deleted or replaced after this store opened it",
            hint="open the store again (run the command again); keep the state file in place "
            "while shiftover uses it",
        )

    # --- transactions and errors -------------------------------------------

    @contextmanager
    def _tx(self, *, write: bool, doing: str) -> Iterator[Connection]:
        if os.getpid() != self._pid:  # forked: never share the parent's sockets/files
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        with self._lock:
            try:
                with self._engine.connect() as conn:
                    if write:
                        conn.execution_options(shiftover_write=True)
                    with conn.begin():
                        yield conn
            except sa_exc.SQLAlchemyError as e:
                raise self._error(e, doing) from e

    def _error(self, e: sa_exc.SQLAlchemyError, doing: str) -> StoreError:
        orig = getattr(e, "orig", None)
        detail = str(orig if orig is not None else e).strip().splitlines()[0]
        low = detail.lower()
        where = self._where
        if "database is locked" in low or "database table is locked" in low:
            return StoreError(
                f"state database {where} was locked by another process while {doing} "
                f"(waited up to {self._busy_timeout:g}s): it holds a write transaction",
                hint="retry; if it persists, find the process holding the file (fuser or lsof on it)",
            )
        if self._file_replaced() and "unable to open" in low:
            return StoreError(
                f"the state file {where} was deleted or replaced while {doing}",
                hint="open the store again (run the command again); keep the state file in "
                "place while shiftover uses it",
            )
        if "unable to open database file" in low or "readonly" in low or "read-only" in low:
            return StoreError(
                f"cannot write the state database {where} while {doing}: {detail}",
                hint="check that the file and its directory exist and are writable, "
                "or choose another state path",
            )
        if "not a database" in low:
            return StoreError(
                f"{where} is not a SQLite database ({detail})",
                hint="point the state store at another file; do not reuse a file written by another program",
            )
        return StoreError(
            f"state store {where} failed while {doing}: {detail}",
            hint="check that the database is reachable and writable, then retry",
        )

    def _now(self, conn: Connection) -> float:
        """The lease clock, read inside ``conn``'s transaction (after any lock it took)."""
        if self._clock is not None:
            return float(self._clock())
        value = conn.exec_driver_sql(_NOW_SQL[conn.dialect.name]).scalar()
        if value is None:  # pragma: no cover - both expressions always return a number
            raise StoreError(f"state store {self._where} did not return its clock")
        now = float(value)
        return round(now, 3) if conn.dialect.name == "sqlite" else now

    # --- the journal -------------------------------------------------------

    def append(
        self,
        *,
        service: str,
        run_id: str,
        kind: str,
        at: float,
        data: Mapping[str, Any] | None = None,
        actor: str | None = None,
        fence: tuple[str, str] | None = None,
    ) -> Event:
        """Add one event and return it with its id. Never updates anything.

        ``fence=(key, holder)``: append only if, in this same transaction, the
        lease on ``key`` names ``holder`` and has not expired by the database
        clock; otherwise raise :class:`LeaseLost` and append nothing. The
        engine fences every append it makes; operators append without one.
        """
        encoded = _json_object(data, f"event {kind!r} for service {service!r} has data that")
        if not math.isfinite(at):
            raise StoreError(f"event {kind!r} for service {service!r} has a non-finite time {at!r}")
        with self._tx(write=True, doing=f"appending event {kind!r}") as conn:
            pg = conn.dialect.name == "postgresql"
            self._check_file(holding=fence[0] if fence is not None else None)
            if fence is not None:
                key, holder = fence
                if pg:  # a takeover waits until this append has committed
                    conn.exec_driver_sql("LOCK TABLE shiftover_leases IN SHARE MODE")
                now = self._now(conn)
                _require_held(self._read_lease(conn, key), key=key, holder=holder, now=now)
            if pg:
                # ids must be visible in commit order (see module doc)
                conn.exec_driver_sql("LOCK TABLE shiftover_events IN SHARE ROW EXCLUSIVE MODE")
            result = conn.execute(
                insert(_events).values(
                    service=service, run_id=run_id, kind=kind, at=at, actor=actor, data=encoded
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            new_id = int(pk[0])
        return Event(
            id=new_id,
            service=service,
            run_id=run_id,
            kind=kind,
            at=at,
            actor=actor,
            data=json.loads(encoded),
        )

    def events(
        self,
        *,
        service: str,
        after_id: int = 0,
        run_id: str | None = None,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events of ``service`` with id > ``after_id``, ascending id, optionally filtered."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        kind_list = _kinds(kinds)
        if kind_list == [] or limit == 0:
            return []
        q = select(_events).where(_events.c.service == service, _events.c.id > after_id)
        if run_id is not None:
            q = q.where(_events.c.run_id == run_id)
        if kind_list is not None:
            q = q.where(_events.c.kind.in_(kind_list))
        q = q.order_by(_events.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self._tx(write=False, doing="reading events") as conn:
            rows = conn.execute(q).all()
        return [_event(r) for r in rows]

    def last_event(self, *, service: str, kinds: Collection[str] | None = None) -> Event | None:
        """The newest event of ``service`` (of one of ``kinds``), or None."""
        kind_list = _kinds(kinds)
        if kind_list == []:
            return None
        q = select(_events).where(_events.c.service == service)
        if kind_list is not None:
            q = q.where(_events.c.kind.in_(kind_list))
        q = q.order_by(_events.c.id.desc()).limit(1)
        with self._tx(write=False, doing="reading the last event") as conn:
            row = conn.execute(q).first()
        return None if row is None else _event(row)

    def services(self) -> list[str]:
        """Every service with events, sorted. (Leases are keyed by router target;
        the service that holds one is in its ``meta``.)"""
        q = select(_events.c.service).distinct()
        with self._tx(write=False, doing="listing services") as conn:
            names = conn.execute(q).scalars().all()
        return sorted(names)

    # --- the lease ---------------------------------------------------------

    def now(self) -> float:
        """The lease clock in Unix seconds: the database's (or the injected test clock)."""
        with self._tx(write=False, doing="reading the database clock") as conn:
            return self._now(conn)

    @contextmanager
    def _lease_tx(self, doing: str, *, holding: str | None = None
                  ) -> Iterator[tuple[Connection, float]]:
        """A write transaction that owns every lease decision, and the clock read after
        the lock; the state file is checked first (``holding``: see :meth:`_check_file`)."""
        with self._tx(write=True, doing=doing) as conn:
            self._check_file(holding=holding)
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE shiftover_leases IN SHARE ROW EXCLUSIVE MODE")
            yield conn, self._now(conn)

    def acquire_lease(
        self, *, key: str, holder: str, ttl: float, meta: Mapping[str, Any] | None = None
    ) -> Lease:
        """Take the lease on router target ``key`` for ``ttl`` seconds of database clock.

        Succeeds when nobody holds it, when it has expired (takeover), or when
        ``holder`` already holds it live (refreshed, keeping ``acquired_at``;
        ``meta`` replaced). Raises :class:`LeaseHeld` when another holder's
        lease is still live.
        """
        _check_ttl(ttl)
        encoded = _json_object(meta, f"the lease meta for {key!r}")
        with self._lease_tx(f"acquiring the lease on {key!r}") as (conn, now):
            current = self._read_lease(conn, key)
            c = _leases.c
            if current is None:
                conn.execute(
                    insert(_leases).values(
                        key=key, holder=holder, acquired_at=now, expires_at=now + ttl, meta=encoded
                    )
                )
                acquired_at = now
            elif current.is_expired(now) or current.holder == holder:
                refresh = current.holder == holder and not current.is_expired(now)
                acquired_at = current.acquired_at if refresh else now
                conn.execute(
                    update(_leases)
                    .where(c.key == key)
                    .values(
                        holder=holder,
                        acquired_at=acquired_at,
                        expires_at=now + ttl,
                        meta=encoded,
                    )
                )
            else:
                raise _held(current, now)
        return Lease(
            key=key,
            holder=holder,
            acquired_at=acquired_at,
            expires_at=now + ttl,
            meta=json.loads(encoded),
        )

    def renew_lease(self, *, key: str, holder: str, ttl: float) -> Lease:
        """Extend ``holder``'s live lease on ``key`` to ``ttl`` seconds from now (database clock).

        Raises :class:`LeaseLost` when the lease has expired (it is never
        revived), names another holder (taken over), is gone (released), or
        lives in a SQLite file that was deleted or replaced: the caller has
        lost control and must stop writing to the router.
        """
        _check_ttl(ttl)
        with self._lease_tx(f"renewing the lease on {key!r}", holding=key) as (conn, now):
            current = _require_held(self._read_lease(conn, key), key=key, holder=holder, now=now)
            conn.execute(
                update(_leases)
                .where(_leases.c.key == key, _leases.c.holder == holder)
                .values(expires_at=now + ttl)
            )
        return Lease(
            key=key,
            holder=holder,
            acquired_at=current.acquired_at,
            expires_at=now + ttl,
            meta=current.meta,
        )

    def release_lease(self, *, key: str, holder: str) -> None:
        """Give the lease up. A no-op unless ``holder`` holds it (live or expired)."""
        with self._lease_tx(f"releasing the lease on {key!r}") as (conn, _now):
            c = _leases.c
            conn.execute(delete(_leases).where(c.key == key, c.holder == holder))

    def lease(self, *, key: str) -> Lease | None:
        """The lease row of ``key``, expired or not (compare with :meth:`now`), or None."""
        with self._tx(write=False, doing=f"reading the lease on {key!r}") as conn:
            return self._read_lease(conn, key)

    def leases(self) -> list[Lease]:
        """Every lease row, expired or not, sorted by key."""
        with self._tx(write=False, doing="listing leases") as conn:
            rows = conn.execute(select(_leases).order_by(_leases.c.key)).all()
        return [_lease(r) for r in rows]

    @staticmethod
    def _read_lease(conn: Connection, key: str) -> Lease | None:
        row = conn.execute(select(_leases).where(_leases.c.key == key)).first()
        return None if row is None else _lease(row)

    # --- lifecycle ---------------------------------------------------------

    @property
    def where(self) -> str:
        """Where the state lives, for messages (passwords hidden)."""
        return self._where

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.dispose()
        fd, self._file_fd = self._file_fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._where!r})"


def _redact(url: str) -> str:
    """Hide a password in a URL SQLAlchemy could not parse (it may still carry one)."""
    return re.sub(r"(://[^/@]*?:)[^/@]*@", r"\1***@", url)


def _use_wal(cur: Any, busy_timeout: float) -> None:
    """Switch the file to WAL (persistent: done once per file, then a no-op).

    The switch needs an exclusive lock and SQLite returns "database is locked"
    at once, without the busy handler, when another connection is doing the
    same (several processes opening a fresh file). Retry, bounded by the busy
    timeout; once one succeeds the others find the file already in WAL mode.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.002
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _kinds(kinds: Collection[str] | None) -> list[str] | None:
    if kinds is None:
        return None
    if isinstance(kinds, str):  # a lone kind, not its characters
        return [kinds]
    return list(kinds)


def _check_ttl(ttl: float) -> None:
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"lease ttl must be a positive number of seconds, got {ttl!r}")


def _json_object(value: Mapping[str, Any] | None, what: str) -> str:
    """A mapping as compact JSON text (event data, lease meta); StoreError naming ``what``."""
    try:
        return json.dumps(dict(value or {}), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StoreError(
            f"{what} is not JSON: {e}",
            hint="pass only str, int, float (finite), bool, None, lists and dicts with str keys",
        ) from None


def _who(lease: Lease) -> str:
    """``holder`` plus what its meta says (service, run, pid, host), for messages."""
    facts = ", ".join(
        f"{k} {lease.meta[k]}" for k in ("service", "run_id", "pid", "host") if k in lease.meta
    )
    return f"{lease.holder} ({facts})" if facts else lease.holder


def _held(lease: Lease, now: float) -> LeaseHeld:
    return LeaseHeld(
        f"router target {lease.key!r} is leased by {_who(lease)} since "
        f"{_when(lease.acquired_at)}, expiring {_when(lease.expires_at)} "
        f"({_in(lease.expires_at - now)})",
        hint="another shiftover run is driving this router target: wait for it to finish or "
        "stop it; if that process is dead, its lease expires at the time above and a new run "
        "can then take over",
    )


def _require_held(current: Lease | None, *, key: str, holder: str, now: float) -> Lease:
    """``current`` if it names ``holder`` and is live at ``now``; else the LeaseLost saying why."""
    stop = (
        "this run is no longer in control: it must stop writing to the router "
        "(moving to 0% stays allowed); check `shiftover status`, then start a new run if needed"
    )
    if current is None:
        raise LeaseLost(
            f"lost the lease on {key!r}: nobody holds it now, so {holder} no longer does "
            "(it was released, or never taken)",
            hint=stop,
        )
    if current.holder != holder:
        raise LeaseLost(
            f"lost the lease on {key!r}: it was taken over by {_who(current)} since "
            f"{_when(current.acquired_at)} (expires {_when(current.expires_at)})",
            hint=f"{holder}'s lease expired and another run took over: stop this run; "
            "the other run is in control",
        )
    if current.is_expired(now):
        raise LeaseLost(
            f"lost the lease on {key!r}: {holder}'s lease expired at "
            f"{_when(current.expires_at)}, {_seconds(now - current.expires_at)} before this "
            "check by the database clock; an expired lease is never revived",
            hint=f"{stop}; a new run re-reads the router and the journal. If a check or the "
            "router takes longer than the lease TTL, raise the TTL",
        )
    return current


def _lease(row: Any) -> Lease:
    try:  # a row edited by hand must not break status or a rollback
        meta = json.loads(row.meta)
    except (TypeError, ValueError):
        meta = {}
    return Lease(
        key=row.key,
        holder=row.holder,
        acquired_at=float(row.acquired_at),
        expires_at=float(row.expires_at),
        meta=meta if isinstance(meta, dict) else {},
    )


def _event(row: Any) -> Event:
    """A row as an Event. A row someone wrote by hand with data that is not a JSON
    object keeps its text under ``_unreadable``: one odd row must not stop a live
    run (or ``status``) from reading the journal."""
    try:
        data = json.loads(row.data)
    except (TypeError, ValueError):
        data = {"_unreadable": str(row.data)[:200]}
    if not isinstance(data, dict):
        data = {"_unreadable": str(row.data)[:200]}
    return Event(
        id=int(row.id),
        service=row.service,
        run_id=row.run_id,
        kind=row.kind,
        at=float(row.at) if row.at is not None else 0.0,
        actor=row.actor,
        data=data,
    )


__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "STATE_ENV_VAR",
    "Event",
    "Lease",
    "Store",
    "StoreMissing",
    "default_state_url",
    "open_store",
    "operator_identity",
    "state_url",
]
