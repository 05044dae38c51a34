"""PostgreSQL specifics of the store: schema setup and the version 1 -> 2
migration in a database of their own, the server's clock, errors, and the
managed server the tests run on (:class:`shiftover.demo.postgres.PostgresServer`).

The backend-independent behaviour (journal, lease rules, races across
processes, fencing) runs on PostgreSQL in tests/contracts/test_store_contract.py.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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
    inspect,
    text,
)
from sqlalchemy.engine import make_url

from shiftover.errors import LeaseHeld, ShiftoverError, StoreError
from shiftover.store import SCHEMA_VERSION, open_store
from shiftover.testing import race_in_processes

KEY = "haproxy:/run/haproxy/admin.sock#web"


@pytest.fixture
def admin(postgres_database: str) -> Iterator[Engine]:
    """Plain SQLAlchemy on the test's own database, to build and inspect what the store sees."""
    engine = create_engine(postgres_database)
    try:
        yield engine
    finally:
        engine.dispose()


def _v1_schema() -> MetaData:
    """The tables shiftover 0.1 (schema version 1) created, as it declared them."""
    md = MetaData()
    Table("shiftover_schema_version", md, Column("version", Integer, nullable=False))
    Table(
        "shiftover_events",
        md,
        Column("id", BigInteger(), primary_key=True, autoincrement=True),
        Column("service", String(255), nullable=False),
        Column("run_id", String(255), nullable=False),
        Column("kind", String(100), nullable=False),
        Column("at", Double(), nullable=False),
        Column("actor", String(255), nullable=True),
        Column("data", Text(), nullable=False),
        Index("ix_shiftover_events_service_id", "service", "id"),
    )
    Table(
        "shiftover_leases",
        md,
        Column("service", String(255), primary_key=True),
        Column("holder", String(500), nullable=False),
        Column("acquired_at", Double(), nullable=False),
        Column("expires_at", Double(), nullable=False),
    )
    return md


def _v1_database(admin: Engine, *, lease_expires_in: float) -> list[tuple[Any, ...]]:
    """Fill the database as version 1 would have; ``lease_expires_in`` by the server's clock."""
    _v1_schema().create_all(admin)
    with admin.begin() as conn:
        conn.execute(text("INSERT INTO shiftover_schema_version (version) VALUES (1)"))
        conn.execute(
            text(
                "INSERT INTO shiftover_events (service, run_id, kind, at, actor, data)"
                " VALUES (:service, :run_id, :kind, :at, :actor, :data)"
            ),
            [
                {"service": "web", "run_id": "r1", "kind": "run_started", "at": 1000.0,
                 "actor": None, "data": '{"plan":{"steps":[5,100]}}'},
                {"service": "web", "run_id": "r1", "kind": "weight_confirmed", "at": 1001.5,
                 "actor": None, "data": '{"percent":5.0}'},
                {"service": "web", "run_id": "operator", "kind": "pause_requested", "at": 1002.0,
                 "actor": "bob@ops1", "data": "{}"},
            ],
        )
        conn.execute(
            text(
                "INSERT INTO shiftover_leases VALUES ('web', 'run r1 pid 7 on ops1', 0.0,"
                " EXTRACT(EPOCH FROM clock_timestamp()) + :ahead)"
            ),
            {"ahead": lease_expires_in},
        )
        return [tuple(r) for r in conn.execute(text("SELECT * FROM shiftover_events ORDER BY id"))]


def test_a_version_1_database_is_migrated_in_place_keeping_every_event(
    postgres_database: str, admin: Engine
) -> None:
    before = _v1_database(admin, lease_expires_in=-60.0)  # expired a minute ago
    with open_store(postgres_database) as s:
        assert [(e.id, e.kind, e.actor) for e in s.events(service="web")] == [
            (r[0], r[3], r[5]) for r in before
        ]
        assert s.events(service="web")[0].data == {"plan": {"steps": [5, 100]}}
        assert s.leases() == []
        s.acquire_lease(key=KEY, holder="run r2", ttl=60.0, meta={"service": "web"})
        new = s.append(service="web", run_id="r2", kind="run_started", at=2.0,
                       fence=(KEY, "run r2"))
        assert new.id > before[-1][0]
    with admin.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM shiftover_events ORDER BY id"))]
        assert rows[: len(before)] == before
        assert conn.execute(text("SELECT version FROM shiftover_schema_version")).all() == [
            (SCHEMA_VERSION,)
        ]
    columns = [c["name"] for c in inspect(admin).get_columns("shiftover_leases")]
    assert columns == ["key", "holder", "acquired_at", "expires_at", "meta"]


def test_a_version_1_database_with_a_live_lease_is_not_migrated(
    postgres_database: str, admin: Engine
) -> None:
    before = _v1_database(admin, lease_expires_in=3600.0)
    with pytest.raises(StoreError, match="older shiftover") as info:
        open_store(postgres_database)
    assert "run r1 pid 7 on ops1" in str(info.value)
    with admin.connect() as conn:
        assert conn.execute(text("SELECT version FROM shiftover_schema_version")).all() == [(1,)]
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM shiftover_events ORDER BY id"))]
        assert rows == before
        assert conn.execute(text("SELECT service FROM shiftover_leases")).all() == [("web",)]


def test_a_schema_from_a_newer_shiftover_is_refused(postgres_database: str, admin: Engine) -> None:
    open_store(postgres_database).close()
    with admin.begin() as conn:
        conn.execute(text("UPDATE shiftover_schema_version SET version = :v"),
                     {"v": SCHEMA_VERSION + 1})
    with pytest.raises(StoreError, match="newer") as info:
        open_store(postgres_database)
    assert "upgrade shiftover" in str(info.value)
    assert "@" in str(info.value) and make_url(postgres_database).password not in str(info.value)


def _open_and_lease(url: str, holder: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        with open_store(url) as s:
            s.acquire_lease(key=KEY, holder=holder, ttl=60.0)
        results.put("won")
    except LeaseHeld:
        results.put("refused")
    except BaseException as e:
        results.put(f"error {type(e).__name__}: {e}")


def test_processes_creating_the_tables_at_once_all_open_it_and_one_leases(
    postgres_database: str, admin: Engine
) -> None:
    outcomes = race_in_processes(
        _open_and_lease, [(postgres_database, f"run-{i}") for i in range(4)]
    )
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"], outcomes
    with admin.connect() as conn:
        assert conn.execute(text("SELECT version FROM shiftover_schema_version")).all() == [
            (SCHEMA_VERSION,)
        ]


def test_a_wrong_password_is_a_store_error_that_hides_it(postgres_url: str) -> None:
    wrong = make_url(postgres_url).set(password="n0t-the-pw")
    with pytest.raises(StoreError) as info:
        open_store(wrong.render_as_string(hide_password=False))
    assert "n0t-the-pw" not in str(info.value)
    assert "hint:" in str(info.value)


def test_create_false_still_opens_a_database(postgres_database: str) -> None:
    # only a SQLite *file* can be missing; a database must exist before its URL works
    with open_store(postgres_database, create=False) as s:
        assert s.events(service="web") == []


# --- the managed server ---------------------------------------------------------------


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_managed_server_runs_unprivileged_and_leaves_nothing_behind() -> None:
    from shiftover.demo.postgres import PostgresServer, find_bindir

    try:
        find_bindir()
    except ShiftoverError:
        if os.environ.get("SHIFTOVER_TEST_POSTGRES_URL"):
            pytest.skip("no local PostgreSQL binaries; the tests use SHIFTOVER_TEST_POSTGRES_URL")
        raise
    server = PostgresServer(database="lifecycle")
    with server:
        assert server.directory is not None
        directory = server.directory
        pid = _postmaster_pid(server.data_dir)
        uid = os.stat(f"/proc/{pid}").st_uid
        if os.geteuid() == 0:
            assert uid == pwd.getpwnam("postgres").pw_uid  # PostgreSQL refuses root
        else:
            assert uid == os.geteuid()
        assert make_url(server.url).host == "127.0.0.1"
        with open_store(server.url) as s:
            s.append(service="web", run_id="r", kind="k", at=1.0)
        other = server.create_database("another_one")
        with open_store(other) as s:
            assert s.events(service="web") == []
        server.drop_database("another_one")
    assert not server.running()
    assert not _alive(pid)
    assert not directory.exists()
    server.stop()  # twice: a no-op
