"""SQLite-file specifics of the store: persistence, sharing one file between
Store objects and processes, WAL, the busy timeout, schema versions and the
migration from version 1, a state file deleted or replaced under a live run,
``create=False``, the per-host default location, and the errors a user sees.
The backend-independent behaviour is in tests/contracts/test_store_contract.py."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from shiftover.errors import LeaseHeld, LeaseLost, StoreError
from shiftover.store import (
    SCHEMA_VERSION,
    STATE_ENV_VAR,
    Lease,
    Store,
    StoreMissing,
    default_state_url,
    open_store,
    operator_identity,
)
from shiftover.testing import FakeClock, race_in_processes

KEY = "haproxy:/run/haproxy/admin.sock#web"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state-dir" / "shiftover" / "state.db"


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
        held = first.acquire_lease(key=KEY, holder="A", ttl=60.0, meta={"service": "web"})
    with open_store(url) as second:
        assert second.events(service="web") == [e]
        assert second.lease(key=KEY) == held
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
        engine_side.acquire_lease(key=KEY, holder="run r1", ttl=60.0)
        with pytest.raises(LeaseHeld, match="run r1"):
            operator_side.acquire_lease(key=KEY, holder="run r2", ttl=60.0)


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
                impatient.acquire_lease(key=KEY, holder="A", ttl=10.0)
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
            s.acquire_lease(key=KEY, holder=holder, ttl=60.0)
            s.append(
                service="web", run_id=holder, kind="run_started", at=1000.0, fence=(KEY, holder)
            )
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
                held = s.acquire_lease(key=KEY, holder="crashed run", ttl=0.05)
                while not held.is_expired(s.now()):  # bounded: the TTL is 50 ms
                    time.sleep(0.01)
    outcomes = dict(race_in_processes(_race, [(url, f"run-{i}") for i in range(4)]))
    assert sorted(outcomes.values()) == ["refused", "refused", "refused", "won"], outcomes
    (winner,) = [h for h, o in outcomes.items() if o == "won"]
    with open_store(url) as s:
        lease = s.lease(key=KEY)
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


# --- where the state lives by default ---------------------------------------------


def test_every_test_gets_its_own_state_file_from_the_environment(
    _state_in_a_temp_file: Path,
) -> None:
    # tests/conftest.py: nobody's test writes /var/lib/shiftover or ~/.local/state
    url = default_state_url()
    assert make_url(url).database == str(_state_in_a_temp_file)
    assert not str(_state_in_a_temp_file).startswith("/var/lib/shiftover")


def test_the_environment_variable_names_the_state_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert STATE_ENV_VAR == "SHIFTOVER_STATE"
    monkeypatch.setenv(STATE_ENV_VAR, "postgresql+psycopg://ops@db.example/shiftover")
    assert default_state_url() == "postgresql+psycopg://ops@db.example/shiftover"


def test_a_bad_url_in_the_environment_is_a_store_error_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(STATE_ENV_VAR, "post gres://ops:s3cret@db/state")
    with pytest.raises(StoreError, match=STATE_ENV_VAR) as info:
        default_state_url()
    assert "s3cret" not in str(info.value)
    assert "sqlite:////" in str(info.value)


def test_root_keeps_state_in_var_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_ENV_VAR)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert make_url(default_state_url()).database == "/var/lib/shiftover/state.db"


def test_a_user_keeps_state_in_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATE_ENV_VAR)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg state"))
    url = default_state_url()
    assert make_url(url).database == str(tmp_path / "xdg state" / "shiftover" / "state.db")
    with open_store(url) as s:  # the URL survives odd characters and is usable as is
        s.append(service="web", run_id="r", kind="k", at=1.0)
    assert (tmp_path / "xdg state" / "shiftover" / "state.db").is_file()


@pytest.mark.parametrize("xdg", [None, "", "relative/dir"])
def test_without_a_usable_xdg_state_home_it_is_dot_local_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    monkeypatch.delenv(STATE_ENV_VAR)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)  # relative: invalid per the XDG spec
    assert make_url(default_state_url()).database == str(
        tmp_path / ".local" / "state" / "shiftover" / "state.db"
    )


def test_the_default_does_not_depend_on_the_plan_or_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two copies of a plan in two directories must meet in one state store (one lease)
    first = default_state_url()
    monkeypatch.chdir(tmp_path)
    assert default_state_url() == first


# --- read-only opening ---------------------------------------------------------


def test_create_false_never_creates_a_state_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "state.db"
    with pytest.raises(StoreMissing) as info:
        open_store(f"sqlite:///{missing}", create=False)
    assert isinstance(info.value, StoreError)
    assert str(missing) in str(info.value)
    assert STATE_ENV_VAR in str(info.value)  # the hint says how to point elsewhere
    assert not missing.exists() and not missing.parent.exists()


def test_create_false_opens_an_existing_file(url: str, db: Path) -> None:
    with open_store(url) as s:
        e = s.append(service="web", run_id="r", kind="k", at=1.0)
    with open_store(url, create=False) as s:
        assert s.events(service="web") == [e]


def test_a_memory_store_ignores_create_false() -> None:
    with open_store("sqlite://", create=False) as s:
        assert s.events(service="web") == []


# --- the SQLite clock ------------------------------------------------------------


def test_the_lease_clock_is_the_one_sqlite_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def julian_now() -> float:
        con = sqlite3.connect(":memory:")
        try:
            days: float = con.execute("SELECT julianday('now')").fetchone()[0]
        finally:
            con.close()
        return round((days - 2440587.5) * 86400.0, 3)

    monkeypatch.setattr(time, "time", lambda: 0.0)  # not Python's clock
    before = julian_now()
    now = store.now()
    after = julian_now()
    assert before <= now <= after


def test_an_injected_clock_decides_every_lease_question(url: str) -> None:
    clock = FakeClock(5_000.0)
    with open_store(url, clock=clock.now) as s:
        assert s.now() == 5_000.0
        assert s.acquire_lease(key=KEY, holder="A", ttl=10.0) == Lease(KEY, "A", 5_000.0, 5_010.0)
        clock.advance(10.0)
        with pytest.raises(LeaseLost, match="expired"):
            s.append(service="web", run_id="A", kind="k", at=1.0, fence=(KEY, "A"))


# --- a state file deleted or replaced under a live run ---------------------------------


def _held_store(url: str) -> Store:
    s = open_store(url)
    s.acquire_lease(key=KEY, holder="run A", ttl=600.0)
    s.append(service="web", run_id="A", kind="run_started", at=1.0, fence=(KEY, "run A"))
    return s


def _replace_with_a_fresh_state_file(db: Path, tmp_path: Path) -> None:
    """Move another state file over ``db``, as a restore from elsewhere would.

    The old file's ``-wal`` and ``-shm`` go too: left beside a different main
    file, SQLite would read the old WAL into it (SQLite's own "how to corrupt").
    """
    other = tmp_path / "elsewhere.db"
    open_store(f"sqlite:///{other}").close()  # closed: checkpointed, no -wal of its own
    for companion in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        companion.unlink(missing_ok=True)
    os.replace(other, db)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_run_whose_state_file_was_deleted_or_replaced_cannot_renew_or_append(
    db: Path, url: str, tmp_path: Path, how: str
) -> None:
    run_a = _held_store(url)
    try:
        if how == "deleted":
            for p in db.parent.glob("state.db*"):
                p.unlink()
        else:
            _replace_with_a_fresh_state_file(db, tmp_path)
        expected = f"the state file {db} was deleted or replaced while this run held a lease"
        with pytest.raises(LeaseLost, match="deleted or replaced") as info:
            run_a.renew_lease(key=KEY, holder="run A", ttl=600.0)
        assert expected in str(info.value)
        assert info.value.exit_code == 5
        with pytest.raises(LeaseLost, match="deleted or replaced"):
            run_a.append(service="web", run_id="A", kind="tick", at=2.0, fence=(KEY, "run A"))
        # other writes refuse too, instead of landing in a file nobody else can see
        with pytest.raises(StoreError, match="deleted or replaced"):
            run_a.append(service="web", run_id="op", kind="pause_requested", at=2.0)
        with pytest.raises(StoreError, match="deleted or replaced"):
            run_a.acquire_lease(key=KEY, holder="run A", ttl=600.0)
        if how == "deleted":
            assert not db.exists()  # the old store never re-creates the file behind our back
        # a second run on the path starts afresh and is the only holder
        with open_store(url) as run_b:
            run_b.acquire_lease(key=KEY, holder="run B", ttl=600.0)
            run_b.append(service="web", run_id="B", kind="run_started", at=3.0,
                         fence=(KEY, "run B"))
            with pytest.raises(LeaseLost):
                run_a.renew_lease(key=KEY, holder="run A", ttl=600.0)
            assert [e.run_id for e in run_b.events(service="web")] == ["B"]
    finally:
        run_a.close()


def test_a_state_file_moved_back_is_still_the_same_file(db: Path, url: str, tmp_path: Path) -> None:
    # identity is the file, not its name: a rename away and back keeps the lease valid
    run_a = _held_store(url)
    try:
        aside = tmp_path / "aside.db"
        os.rename(db, aside)
        with pytest.raises(LeaseLost):
            run_a.renew_lease(key=KEY, holder="run A", ttl=600.0)
        os.rename(aside, db)
        assert run_a.renew_lease(key=KEY, holder="run A", ttl=600.0).holder == "run A"
    finally:
        run_a.close()


# --- schema version 1 -> 2 ---------------------------------------------------------

# The exact DDL shiftover 0.1 (schema version 1) wrote.
V1_DDL = [
    "CREATE TABLE shiftover_schema_version (\n\tversion INTEGER NOT NULL\n)",
    "CREATE TABLE shiftover_events (\n\tid INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, \n"
    "\tservice VARCHAR(255) NOT NULL, \n\trun_id VARCHAR(255) NOT NULL, \n"
    "\tkind VARCHAR(100) NOT NULL, \n\tat DOUBLE NOT NULL, \n\tactor VARCHAR(255), \n"
    "\tdata TEXT NOT NULL\n)",
    "CREATE INDEX ix_shiftover_events_service_id ON shiftover_events (service, id)",
    "CREATE TABLE shiftover_leases (\n\tservice VARCHAR(255) NOT NULL, \n"
    "\tholder VARCHAR(500) NOT NULL, \n\tacquired_at DOUBLE NOT NULL, \n"
    "\texpires_at DOUBLE NOT NULL, \n\tPRIMARY KEY (service)\n)",
]


def _v1_file(db: Path, lease_expires_at: float) -> list[tuple[Any, ...]]:
    """A version-1 state file with events and one lease; returns its event rows."""
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        for ddl in V1_DDL:
            con.execute(ddl)
        con.execute("INSERT INTO shiftover_schema_version (version) VALUES (1)")
        rows = [
            ("web", "r1", "run_started", 1000.0, None, '{"plan":{"steps":[5,25,100]}}'),
            ("web", "r1", "weight_confirmed", 1001.5, None, '{"percent":5.0,"step_index":0}'),
            ("web", "operator", "pause_requested", 1002.0, "bob@ops1", '{"reason":"lunch"}'),
            ("billing", "r9", "run_started", 1003.0, None, "{}"),
        ]
        con.executemany(
            "INSERT INTO shiftover_events (service, run_id, kind, at, actor, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        con.execute(
            "INSERT INTO shiftover_leases VALUES ('web', 'run r1 pid 7 on ops1', 990.0, ?)",
            (lease_expires_at,),
        )
        con.commit()
        return con.execute("SELECT * FROM shiftover_events ORDER BY id").fetchall()
    finally:
        con.close()


def test_a_version_1_file_is_migrated_in_place_keeping_every_event(db: Path, url: str) -> None:
    before = _v1_file(db, lease_expires_at=1030.0)  # expired long ago
    with open_store(url) as s:
        assert [(e.id, e.service, e.run_id, e.kind, e.at, e.actor) for e in s.events(service="web")] == [
            (r[0], r[1], r[2], r[3], r[4], r[5]) for r in before if r[1] == "web"
        ]
        assert s.events(service="web")[0].data == {"plan": {"steps": [5, 25, 100]}}
        assert s.services() == ["billing", "web"]
        assert s.leases() == []  # leases keyed by service meant nothing to a version-2 run
        s.acquire_lease(key=KEY, holder="run r2", ttl=60.0, meta={"service": "web"})
        new = s.append(service="web", run_id="r2", kind="run_started", at=2000.0,
                       fence=(KEY, "run r2"))
        assert new.id > before[-1][0]  # ids keep counting: never reused
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT * FROM shiftover_events ORDER BY id").fetchall()[:4] == before
        assert con.execute("SELECT version FROM shiftover_schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        columns = [r[1] for r in con.execute("PRAGMA table_info(shiftover_leases)")]
        assert columns == ["key", "holder", "acquired_at", "expires_at", "meta"]
    finally:
        con.close()
    assert SCHEMA_VERSION == 2


def test_a_version_1_file_with_a_live_lease_is_not_migrated(db: Path, url: str) -> None:
    before = _v1_file(db, lease_expires_at=time.time() + 3600)
    with pytest.raises(StoreError, match="older shiftover") as info:
        open_store(url)
    text = str(info.value)
    assert "run r1 pid 7 on ops1" in text and "'web'" in text
    assert "keeping every event" in text  # the hint says what happens next
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT version FROM shiftover_schema_version").fetchall() == [(1,)]
        assert con.execute("SELECT * FROM shiftover_events ORDER BY id").fetchall() == before
        assert con.execute("SELECT service FROM shiftover_leases").fetchall() == [("web",)]
    finally:
        con.close()


def _open_and_report(url: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        with open_store(url) as s:
            results.put(len(s.events(service="web")))
    except BaseException as e:
        results.put(f"error {type(e).__name__}: {e}")


def test_processes_opening_a_version_1_file_at_once_migrate_it_once(db: Path, url: str) -> None:
    _v1_file(db, lease_expires_at=1030.0)
    outcomes = race_in_processes(_open_and_report, [(url,) for _ in range(4)])
    assert outcomes == [3, 3, 3, 3], outcomes
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT version FROM shiftover_schema_version").fetchall() == [(2,)]
    finally:
        con.close()


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
