"""The journal (append-only events) and the lease, on SQLAlchemy Core.

Why a database and not a log file: a running ``shiftover run`` and operator
commands typed in other terminals (``pause``, ``approve``, ``rollback``) must
read and write the same state at the same time, and two runs on one service
must be refused. SQLite gives that on one machine with no server; PostgreSQL
(by URL) gives it across machines. The code is portable Core: JSON is stored as
TEXT, no dialect-specific types.

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

The lease: one row per service naming the holder and when it expires. A run
acquires it before touching the router and renews it every tick; a crashed run
stops renewing and the lease expires, after which another run may take over.
Acquire is an UPDATE guarded by "expired or already mine", then an INSERT whose
primary-key conflict means "someone else holds it"; under ``BEGIN IMMEDIATE``
(SQLite) or row locks (PostgreSQL) exactly one of several racing processes wins.
Renew is strict: it succeeds only while the row still names the holder, so a
run whose lease was taken over (or released by someone else) learns it has lost
control and must stop.

Times (``at``, ``now``) are passed in by the caller from the injected clock:
the store never reads the clock, so tests need no sleeps.
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
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    union,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import StaticPool

from shiftover.errors import LeaseHeld, StoreError

SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT = 10.0  # seconds a writer waits for another writer
_PG_SCHEMA_LOCK = 0x5348494654  # advisory lock key for schema setup ("SHIFT")

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
    """Who may drive a service's cutover, until when."""

    service: str
    holder: str
    acquired_at: float
    expires_at: float

    def is_expired(self, now: float) -> bool:
        return self.expires_at <= now


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _in(seconds: float) -> str:
    if seconds <= 0:
        return "already expired"
    return f"in {seconds:.0f}s"


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


def default_state_url(plan_path: Path) -> str:
    """``sqlite:///<plan dir>/.shiftover/state.db``: state lives next to the plan."""
    db = Path(plan_path).resolve().parent / ".shiftover" / "state.db"
    return URL.create("sqlite", database=str(db)).render_as_string(hide_password=False)


def open_store(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Store:
    """Open (creating directories and tables as needed) the store at ``url``."""
    return Store(url, busy_timeout=busy_timeout)


class Store:
    """The journal and lease store, SQLAlchemy-backed.

    ``url``: ``sqlite:///path/to/state.db`` (file), ``sqlite://`` (memory, this
    Store object only), ``postgresql+psycopg://user:pw@host/db``. Opening creates
    the tables (and a SQLite file's parent directories).

    A Store may be used from several threads. After ``os.fork()`` the child
    drops the parent's connections and opens its own (so a forked in-memory
    store starts empty: memory is for tests, one process at a time).
    """

    def __init__(self, url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._busy_timeout = busy_timeout
        try:
            parsed = make_url(url)
        except sa_exc.ArgumentError:
            raise StoreError(
                f"state store URL {_redact(url)!r} is not a database URL",
                hint="use sqlite:///path/to/state.db, or postgresql+psycopg://user@host/db",
            ) from None
        self._where = self._describe(parsed)
        self._is_sqlite = parsed.get_backend_name() == "sqlite"
        self._engine = self._make_engine(parsed)
        try:
            self._init_schema()
        except BaseException:
            self._engine.dispose()
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

    def _make_engine(self, url: URL) -> Engine:
        if not self._is_sqlite:
            try:
                return create_engine(url, pool_pre_ping=True)
            except (sa_exc.NoSuchModuleError, ImportError, sa_exc.ArgumentError) as e:
                raise StoreError(
                    f"cannot open state store {self._where}: {e}",
                    hint="use sqlite:///path/to/state.db, or install the database driver the URL names",
                ) from None
        db = url.database
        memory = not db or db == ":memory:" or url.query.get("mode") == "memory"
        connect_args: dict[str, Any] = {"timeout": self._busy_timeout}
        if memory:
            # One connection shared by every thread (guarded by self._lock):
            # otherwise each thread would see its own empty database.
            connect_args["check_same_thread"] = False
            engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
        else:
            assert db is not None
            if not db.startswith("file:"):
                try:
                    Path(db).absolute().parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreError(
                        f"cannot create the directory for the state database {self._where}: "
                        f"{e.strerror or e}",
                        hint="choose a state path in a writable directory, or fix its permissions",
                    ) from None
            engine = create_engine(url, connect_args=connect_args)

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
            _metadata.create_all(conn)
            version = conn.execute(select(func.max(_schema_version.c.version))).scalar()
            if version is None:
                conn.execute(insert(_schema_version).values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise StoreError(
                    f"state store {self._where} has schema version {version}, newer than this "
                    f"shiftover understands ({SCHEMA_VERSION})",
                    hint="upgrade shiftover to the version that wrote it, or use another state store",
                )
            # version < SCHEMA_VERSION: migrations go here when there is a version 2.

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
    ) -> Event:
        """Add one event and return it with its id. Never updates anything."""
        payload = dict(data or {})
        try:
            text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StoreError(
                f"event {kind!r} for service {service!r} has data that is not JSON: {e}",
                hint="pass only str, int, float (finite), bool, None, lists and dicts with str keys",
            ) from None
        if not math.isfinite(at):
            raise StoreError(f"event {kind!r} for service {service!r} has a non-finite time {at!r}")
        with self._tx(write=True, doing=f"appending event {kind!r}") as conn:
            if conn.dialect.name == "postgresql":
                # ids must be visible in commit order (see module doc)
                conn.exec_driver_sql("LOCK TABLE shiftover_events IN SHARE ROW EXCLUSIVE MODE")
            result = conn.execute(
                insert(_events).values(
                    service=service, run_id=run_id, kind=kind, at=at, actor=actor, data=text
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
            data=json.loads(text),
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
        """Every service with events or a lease, sorted."""
        q = union(select(_events.c.service), select(_leases.c.service))
        with self._tx(write=False, doing="listing services") as conn:
            names = conn.execute(q).scalars().all()
        return sorted(set(names))

    # --- the lease ---------------------------------------------------------

    def acquire_lease(self, *, service: str, holder: str, now: float, ttl: float) -> Lease:
        """Take the lease on ``service`` until ``now + ttl``.

        Succeeds when nobody holds it, when it has expired (takeover), or when
        ``holder`` already holds it (refreshed, keeping ``acquired_at``).
        Raises :class:`LeaseHeld` when another holder's lease is still live.
        """
        _check_ttl(ttl)
        expires = now + ttl
        with self._tx(write=True, doing=f"acquiring the lease on {service!r}") as conn:
            c = _leases.c
            took = conn.execute(
                update(_leases)
                .where(c.service == service, or_(c.holder == holder, c.expires_at <= now))
                .values(
                    acquired_at=_case_same_holder(holder, now),
                    holder=holder,
                    expires_at=expires,
                )
            )
            if took.rowcount == 1:
                return _require(self._read_lease(conn, service))
            try:
                with conn.begin_nested():  # a conflict must not abort the transaction (PostgreSQL)
                    conn.execute(
                        insert(_leases).values(
                            service=service, holder=holder, acquired_at=now, expires_at=expires
                        )
                    )
            except sa_exc.IntegrityError:
                current = self._read_lease(conn, service)
                if current is None:  # released between our statements: only possible without locks
                    raise StoreError(
                        f"the lease on {service!r} changed hands while acquiring it",
                        hint="retry the command",
                    ) from None
                raise _held(current, now) from None
            return Lease(
                service=service, holder=holder, acquired_at=float(now), expires_at=float(expires)
            )

    def renew_lease(self, *, service: str, holder: str, now: float, ttl: float) -> Lease:
        """Extend ``holder``'s lease to ``now + ttl``.

        Raises :class:`LeaseHeld` when the lease no longer names ``holder``
        (taken over after expiring, or released): the caller has lost control
        and must stop acting on the service.
        """
        _check_ttl(ttl)
        with self._tx(write=True, doing=f"renewing the lease on {service!r}") as conn:
            c = _leases.c
            done = conn.execute(
                update(_leases)
                .where(c.service == service, c.holder == holder)
                .values(expires_at=now + ttl)
            )
            current = self._read_lease(conn, service)
            if done.rowcount == 1 and current is not None:
                return current
        if current is None:
            raise LeaseHeld(
                f"lost the lease on service {service!r}: it is no longer held by {holder} "
                "(it was released by someone else)",
                hint="this run is no longer in control: stop it, check the journal "
                "(shiftover status), then start a new run if needed",
            )
        raise LeaseHeld(
            f"lost the lease on service {service!r}: it is now held by {current.holder} "
            f"since {_when(current.acquired_at)} (expires {_when(current.expires_at)})",
            hint="this run's lease expired and another run took over: stop this run; "
            "the other run is in control",
        )

    def release_lease(self, *, service: str, holder: str) -> None:
        """Give the lease up. A no-op unless ``holder`` holds it."""
        with self._tx(write=True, doing=f"releasing the lease on {service!r}") as conn:
            c = _leases.c
            conn.execute(delete(_leases).where(c.service == service, c.holder == holder))

    def lease(self, *, service: str) -> Lease | None:
        """The lease row of ``service``, expired or not (compare ``expires_at``), or None."""
        with self._tx(write=False, doing=f"reading the lease on {service!r}") as conn:
            return self._read_lease(conn, service)

    @staticmethod
    def _read_lease(conn: Connection, service: str) -> Lease | None:
        row = conn.execute(select(_leases).where(_leases.c.service == service)).first()
        if row is None:
            return None
        return Lease(
            service=row.service,
            holder=row.holder,
            acquired_at=float(row.acquired_at),
            expires_at=float(row.expires_at),
        )

    # --- lifecycle ---------------------------------------------------------

    @property
    def where(self) -> str:
        """Where the state lives, for messages (passwords hidden)."""
        return self._where

    def close(self) -> None:
        self._engine.dispose()

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


def _case_same_holder(holder: str, now: float) -> Any:
    # keep acquired_at on a refresh by the same holder; reset it on takeover
    return case(
        (_leases.c.holder == holder, _leases.c.acquired_at),
        else_=literal(now, Double()),
    )


def _require(lease: Lease | None) -> Lease:
    if lease is None:  # pragma: no cover - the row was just updated in this transaction
        raise StoreError("the lease row vanished inside its own transaction")
    return lease


def _held(lease: Lease, now: float) -> LeaseHeld:
    return LeaseHeld(
        f"service {lease.service!r} is leased by {lease.holder} since {_when(lease.acquired_at)}, "
        f"expiring {_when(lease.expires_at)} ({_in(lease.expires_at - now)})",
        hint="another shiftover run is driving this service: wait for it to finish or stop it; "
        "if that process is dead, its lease expires at the time above and a new run can then take over",
    )


def _event(row: Any) -> Event:
    return Event(
        id=int(row.id),
        service=row.service,
        run_id=row.run_id,
        kind=row.kind,
        at=float(row.at),
        actor=row.actor,
        data=json.loads(row.data),
    )


__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "Event",
    "Lease",
    "Store",
    "default_state_url",
    "open_store",
    "operator_identity",
]
