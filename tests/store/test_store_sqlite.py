"""SQLite-file specifics of the store: persistence, sharing one file between
Store objects and processes, WAL, the busy timeout, schema versions, and the
errors a user sees. The backend-independent behaviour is in
tests/contracts/test_store_contract.py."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from shiftover.errors import LeaseHeld, StoreError
from shiftover.store import (
    SCHEMA_VERSION,
    Store,
    default_state_url,
    open_store,
    operator_identity,
)
from shiftover.testing import race_in_processes


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "plan-dir" / ".shiftover" / "state.db"


@pytest.fixture
def url(db: Path) -> str:
    return f"sqlite:///{db}"


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(url)
    try:
        yield s
    finally:
        s.close()


def test_open_creates_parent_directories_and_the_file(db: Path, store: Store) -> None:
    assert db.is_file()
    assert store.where == str(db)


def test_events_and_leases_survive_reopening(url: str) -> None:
    with open_store(url) as first:
        e = first.append(service="web", run_id="r1", kind="run_started", at=1.0, data={"a": 1})
        first.acquire_lease(service="web", holder="A", now=0.0, ttl=60.0)
    with open_store(url) as second:
        assert second.events(service="web") == [e]
        assert second.lease(service="web") is not None
        later = second.append(service="web", run_id="r1", kind="step_done", at=2.0)
        assert later.id > e.id


def test_two_stores_on_one_file_see_each_others_writes(url: str) -> None:
    with open_store(url) as engine_side, open_store(url) as operator_side:
        engine_side.append(service="web", run_id="r1", kind="run_started", at=1.0)
        operator_side.append(
            service="web", run_id="r1", kind="pause_requested", at=2.0, actor="bob@ops"
        )
        kinds = [e.kind for e in engine_side.events(service="web")]
        assert kinds == ["run_started", "pause_requested"]
        assert operator_side.events(service="web") == engine_side.events(service="web")
        engine_side.acquire_lease(service="web", holder="run r1", now=0.0, ttl=60.0)
        with pytest.raises(LeaseHeld, match="run r1"):
            operator_side.acquire_lease(service="web", holder="run r2", now=1.0, ttl=60.0)


def test_the_file_is_in_wal_mode(db: Path, store: Store) -> None:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


def test_a_reader_is_not_blocked_by_a_writer(db: Path, store: Store) -> None:
    store.append(service="web", run_id="r", kind="a", at=1.0)
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute(
            "INSERT INTO shiftover_events (service, run_id, kind, at, actor, data)"
            " VALUES ('web', 'r', 'uncommitted', 2.0, NULL, '{}')"
        )
        assert [e.kind for e in store.events(service="web")] == ["a"]
        con.execute("COMMIT")
    finally:
        con.close()
    assert [e.kind for e in store.events(service="web")] == ["a", "uncommitted"]


def test_a_write_lock_held_beyond_the_busy_timeout_is_a_store_error(db: Path, url: str) -> None:
    with open_store(url, busy_timeout=0.05) as impatient:
        con = sqlite3.connect(db, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked") as info:
                impatient.append(service="web", run_id="r", kind="k", at=1.0)
            assert str(db) in str(info.value)
            with pytest.raises(StoreError, match="locked"):
                impatient.acquire_lease(service="web", holder="A", now=0.0, ttl=10.0)
        finally:
            con.execute("ROLLBACK")
            con.close()
        assert impatient.append(service="web", run_id="r", kind="k", at=1.0).kind == "k"


def test_an_unwritable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:///{blocker / 'sub' / 'state.db'}")
    text = str(info.value)
    assert "not-a-dir" in text
    assert "hint:" in text


def test_a_directory_as_the_database_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StoreError, match=r"state\.db"):
        open_store(f"sqlite:///{tmp_path / 'state.db'}")


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("service: web\n" * 200)
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_store(f"sqlite:///{path}")


@pytest.mark.parametrize("bad", ["not a url", "nosuchdb://x/y"])
def test_a_bad_url_is_a_store_error(bad: str) -> None:
    with pytest.raises(StoreError) as info:
        open_store(bad)
    assert "sqlite:///" in str(info.value)  # the hint shows a good one


@pytest.mark.parametrize(
    "bad",
    [
        "postgresql+psycopg://shiftover:s3cret@127.0.0.1:1/state",  # nothing listens on port 1
        "postgresql+nosuchdriver://shiftover:s3cret@127.0.0.1:1/state",
        "post gres://shiftover:s3cret@host/state",
    ],
)
def test_errors_never_show_the_database_password(bad: str) -> None:
    with pytest.raises(StoreError) as info:
        open_store(bad)
    assert "s3cret" not in str(info.value)
    assert "shiftover" in str(info.value)


def test_a_schema_from_a_newer_shiftover_is_refused(db: Path, url: str) -> None:
    open_store(url).close()
    con = sqlite3.connect(db)
    try:
        con.execute("UPDATE shiftover_schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        con.commit()
    finally:
        con.close()
    with pytest.raises(StoreError, match="newer") as info:
        open_store(url)
    assert "upgrade shiftover" in str(info.value)


def test_the_schema_version_is_written_once(db: Path, url: str) -> None:
    open_store(url).close()
    open_store(url).close()
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT version FROM shiftover_schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
    finally:
        con.close()


def test_memory_stores_are_private_to_their_object() -> None:
    with open_store("sqlite://") as a, open_store("sqlite://") as b:
        a.append(service="web", run_id="r", kind="k", at=1.0)
        assert b.events(service="web") == []
        assert a.where == "in-memory SQLite"


def test_a_memory_store_is_shared_by_threads() -> None:
    import threading

    with open_store("sqlite://") as s:
        threads = [
            threading.Thread(
                target=lambda i=i: s.append(service="web", run_id="r", kind="k", at=float(i))
            )
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(s.events(service="web")) == 4


def test_store_is_also_constructible_directly(url: str) -> None:
    s = Store(url)
    try:
        assert s.events(service="web") == []
    finally:
        s.close()


# --- several processes -------------------------------------------------------


def _race(url: str, holder: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        with open_store(url) as s:
            s.acquire_lease(service="web", holder=holder, now=1000.0, ttl=60.0)
            s.append(service="web", run_id=holder, kind="run_started", at=1000.0)
        results.put((holder, "won"))
    except LeaseHeld:
        results.put((holder, "refused"))
    except BaseException as e:  # report, never hang the parent
        results.put((holder, f"error {type(e).__name__}: {e}"))


@pytest.mark.parametrize("prepared", ["fresh-file", "existing-file", "expired-lease"])
def test_processes_racing_for_one_lease_exactly_one_wins(url: str, prepared: str) -> None:
    # a fresh file also races on creating the tables and switching to WAL
    if prepared != "fresh-file":
        with open_store(url) as s:
            if prepared == "expired-lease":
                s.acquire_lease(service="web", holder="crashed run", now=0.0, ttl=10.0)
    outcomes = dict(race_in_processes(_race, [(url, f"run-{i}") for i in range(4)]))
    assert sorted(outcomes.values()) == ["refused", "refused", "refused", "won"], outcomes
    (winner,) = [h for h, o in outcomes.items() if o == "won"]
    with open_store(url) as s:
        lease = s.lease(service="web")
        assert lease is not None and lease.holder == winner
        assert [e.run_id for e in s.events(service="web")] == [winner]


def _append_many(url: str, name: str, n: int, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        with open_store(url) as s:
            for i in range(n):
                s.append(service="web", run_id=name, kind="tick", at=float(i), data={"i": i})
        results.put((name, "ok"))
    except BaseException as e:
        results.put((name, f"error {type(e).__name__}: {e}"))


def test_concurrent_appends_from_processes_all_land_with_unique_ordered_ids(url: str) -> None:
    open_store(url).close()
    outcomes = dict(race_in_processes(_append_many, [(url, f"p{i}", 25) for i in range(3)]))
    assert set(outcomes.values()) == {"ok"}, outcomes
    with open_store(url) as s:
        events = s.events(service="web")
    assert len(events) == 75
    assert len({e.id for e in events}) == 75
    for name in ("p0", "p1", "p2"):
        assert [e.data["i"] for e in events if e.run_id == name] == list(range(25))


def test_a_store_opened_before_fork_works_in_the_child(url: str, store: Store) -> None:
    store.append(service="web", run_id="parent", kind="k", at=1.0)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def child() -> None:
        try:
            store.append(service="web", run_id="child", kind="k", at=2.0)
            results.put(len(store.events(service="web")))
        except BaseException as e:
            results.put(f"error {e}")

    p = ctx.Process(target=child)
    p.start()
    try:
        assert results.get(timeout=60) == 2
    finally:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()
    assert [e.run_id for e in store.events(service="web")] == ["parent", "child"]


# --- helpers -------------------------------------------------------------------


def test_default_state_url_is_next_to_the_plan(tmp_path: Path) -> None:
    plan = tmp_path / "we ird?#%dir" / "cutover.yaml"
    url = default_state_url(plan)
    assert url.startswith("sqlite:///")
    assert make_url(url).database == str(
        tmp_path.resolve() / "we ird?#%dir" / ".shiftover" / "state.db"
    )
    with open_store(url) as s:
        s.append(service="web", run_id="r", kind="k", at=1.0)
    assert (tmp_path / "we ird?#%dir" / ".shiftover" / "state.db").is_file()


def test_default_state_url_of_a_relative_plan_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = make_url(default_state_url(Path("plan.yaml"))).database
    assert database == str(tmp_path.resolve() / ".shiftover" / "state.db")


def test_operator_identity_is_user_at_host() -> None:
    user, _, host = operator_identity().partition("@")
    assert user and host


def test_operator_identity_without_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass
    import socket

    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found: 12345")

    def no_host() -> str:
        raise OSError("no hostname")

    monkeypatch.setattr(getpass, "getuser", no_user)
    monkeypatch.setattr(socket, "gethostname", no_host)
    assert operator_identity() == f"uid{os.getuid()}@unknown-host"
