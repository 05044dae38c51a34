"""The Store contract, run over every backend.

Backends: ``sqlite-file``, ``sqlite-memory`` and ``postgresql`` (a real
PostgreSQL 15 started for the session by ``tests/conftest.py``, or the server
named by ``SHIFTOVER_TEST_POSTGRES_URL``; never skipped). To add a backend, add
a ``pytest.param`` to ``BACKENDS`` and a branch to the ``store_url`` fixture.

Every test works on its own service names and lease keys (a random suffix),
so the shared PostgreSQL database needs no cleanup between tests and the suite
never assumes it is alone in the store.

Two kinds of lease test:

- the rules (who may acquire, renew, append) run on an injected test clock
  (``clock=``), so expiry is exact and needs no waiting;
- the guarantees that depend on the real clock (the database's clock decides;
  exactly one of several racing processes wins; a holder that was taken over
  cannot write) run on the database clock with short TTLs, waiting in bounded
  loops until the database says the lease has expired. Nothing asserts on
  durations.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from shiftover.errors import LeaseHeld, LeaseLost, StoreError
from shiftover.store import Event, Lease, Store, open_store
from shiftover.testing import FakeClock, race_in_processes

BACKENDS = [
    pytest.param("sqlite-file", id="sqlite-file"),
    pytest.param("sqlite-memory", id="sqlite-memory"),
    pytest.param("postgresql", id="postgresql"),
]

T0 = 1_800_000_000.0  # the injected clock's start


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend: str = request.param
    if backend == "sqlite-file":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    if backend == "sqlite-memory":
        return "sqlite://"
    if backend == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    raise AssertionError(backend)  # pragma: no cover


@pytest.fixture
def shared_url(store_url: str) -> str:
    """The URL, for tests where several Store objects or processes share one store."""
    if store_url == "sqlite://":
        pytest.skip("an in-memory store is private to its Store object")
    return store_url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on the database clock."""
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def clocked(store_url: str, clock: FakeClock) -> Iterator[Store]:
    """A store whose lease decisions use the injected ``clock``."""
    s = open_store(store_url, clock=clock.now)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def svc() -> str:
    return f"web-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def key() -> str:
    return f"haproxy:/run/haproxy-{uuid.uuid4().hex[:8]}.sock#web"


def _fill(store: Store, svc: str) -> list[Event]:
    spec = [
        ("r1", "run_started", None),
        ("r1", "weight_intended", None),
        ("r1", "weight_confirmed", None),
        ("r1", "pause_requested", "alice@ops1"),
        ("r2", "run_started", None),
        ("r2", "gate_verdict", None),
    ]
    return [
        store.append(service=svc, run_id=run, kind=kind, at=1000.0 + i, actor=actor, data={"i": i})
        for i, (run, kind, actor) in enumerate(spec)
    ]


def _wait_expired(store: Store, lease: Lease, limit: float = 30.0) -> None:
    """Wait (bounded) until the store's own clock has passed ``lease``'s expiry."""
    deadline = time.monotonic() + limit
    while not lease.is_expired(store.now()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the database clock never reached {lease.expires_at}")
        time.sleep(0.01)


# --- the journal ---------------------------------------------------------------


def test_append_returns_the_event_with_increasing_ids(store: Store, svc: str) -> None:
    a = store.append(service=svc, run_id="r1", kind="run_started", at=10.5)
    b = store.append(service=svc, run_id="r1", kind="weight_intended", at=11.0, data={"to": 5})
    assert isinstance(a, Event)
    assert b.id > a.id
    assert (a.service, a.run_id, a.kind, a.at, a.actor, a.data) == (
        svc,
        "r1",
        "run_started",
        10.5,
        None,
        {},
    )
    assert b.data == {"to": 5}


def test_events_come_back_in_id_order_with_every_field(store: Store, svc: str) -> None:
    written = _fill(store, svc)
    assert store.events(service=svc) == written
    assert [e.id for e in written] == sorted(e.id for e in written)
    assert written[3].actor == "alice@ops1"


def test_events_of_other_services_stay_apart(store: Store, svc: str) -> None:
    _fill(store, svc)
    other = store.append(service=svc + "-other", run_id="x", kind="run_started", at=1.0)
    assert other not in store.events(service=svc)
    assert store.events(service=svc + "-other") == [other]
    assert store.events(service=svc + "-never") == []


def test_filters_after_id_run_kinds_limit(store: Store, svc: str) -> None:
    w = _fill(store, svc)
    assert store.events(service=svc, after_id=w[2].id) == w[3:]
    assert store.events(service=svc, after_id=w[-1].id) == []
    assert store.events(service=svc, run_id="r2") == w[4:]
    assert store.events(service=svc, kinds={"run_started"}) == [w[0], w[4]]
    assert store.events(service=svc, kinds="gate_verdict") == [w[5]]  # a lone str is one kind
    assert store.events(service=svc, kinds=[]) == []
    assert store.events(service=svc, limit=2) == w[:2]
    assert store.events(service=svc, limit=0) == []
    assert store.events(
        service=svc,
        after_id=w[0].id,
        run_id="r1",
        kinds=["run_started", "weight_confirmed", "pause_requested"],
        limit=1,
    ) == [w[2]]


def test_negative_limit_is_refused(store: Store, svc: str) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.events(service=svc, limit=-1)


def test_following_a_run_with_after_id_sees_every_event_once(store: Store, svc: str) -> None:
    seen: list[Event] = []
    last = 0
    for i in range(5):
        store.append(service=svc, run_id="r", kind="tick", at=float(i), data={"i": i})
        if i % 2 == 0:
            batch = store.events(service=svc, after_id=last)
            seen += batch
            last = batch[-1].id
    seen += store.events(service=svc, after_id=last)
    assert [e.data["i"] for e in seen] == [0, 1, 2, 3, 4]


def test_last_event(store: Store, svc: str) -> None:
    assert store.last_event(service=svc) is None
    w = _fill(store, svc)
    assert store.last_event(service=svc) == w[-1]
    assert store.last_event(service=svc, kinds={"run_started"}) == w[4]
    assert store.last_event(service=svc, kinds={"pause_requested", "weight_intended"}) == w[3]
    assert store.last_event(service=svc, kinds={"nothing_like_it"}) is None
    assert store.last_event(service=svc, kinds=[]) is None


def test_json_data_round_trips(store: Store, svc: str) -> None:
    data = {
        "weights": {"old": 198, "new": 2},
        "percent": 1.0,
        "tiny": 1e-12,
        "big": 2**53,
        "ok": True,
        "nothing": None,
        "gates": [{"gate": "errors", "verdict": "pass", "value": 0.001}],
        "text": 'ünïcode ✓ "quoted" \n newline',
    }
    written = store.append(service=svc, run_id="r", kind="gate_verdict", at=1.25, data=data)
    assert written.data == data
    (read,) = store.events(service=svc)
    assert read.data == data
    assert read == written


def test_tuples_come_back_as_lists(store: Store, svc: str) -> None:
    store.append(service=svc, run_id="r", kind="k", at=1.0, data={"pair": (1, 2)})
    assert store.events(service=svc)[0].data == {"pair": [1, 2]}


@pytest.mark.parametrize("bad", [{"x": object()}, {"x": float("nan")}, {"x": {1, 2}}])
def test_non_json_data_is_refused_and_nothing_is_written(
    store: Store, svc: str, bad: dict[str, object]
) -> None:
    with pytest.raises(StoreError, match="not JSON"):
        store.append(service=svc, run_id="r", kind="k", at=1.0, data=bad)
    assert store.events(service=svc) == []


def test_services_lists_services_with_events(store: Store, svc: str, key: str) -> None:
    store.append(service=svc + "-b", run_id="r", kind="k", at=1.0)
    store.append(service=svc + "-a", run_id="r", kind="k", at=1.0)
    store.append(service=svc + "-a", run_id="r", kind="k", at=2.0)
    store.acquire_lease(key=key, holder="h", ttl=30.0, meta={"service": svc + "-c"})
    mine = [s for s in store.services() if s.startswith(svc)]
    assert mine == [svc + "-a", svc + "-b"]


def test_the_api_offers_no_way_to_change_or_remove_events(store: Store) -> None:
    public = {n for n in dir(store) if not n.startswith("_")}
    assert not {n for n in public if any(w in n for w in ("update", "delete", "remove", "edit"))}


# --- the lease: the rules, on an injected clock ------------------------------------


def test_acquire_a_free_lease(clocked: Store, key: str) -> None:
    assert clocked.lease(key=key) is None
    meta = {"service": "web", "run_id": "r1", "pid": 4242, "host": "ops1"}
    got = clocked.acquire_lease(key=key, holder="run A", ttl=30.0, meta=meta)
    assert got == Lease(key=key, holder="run A", acquired_at=T0, expires_at=T0 + 30, meta=meta)
    assert clocked.lease(key=key) == got
    assert not got.is_expired(T0 + 29.9)
    assert got.is_expired(T0 + 30.0)


def test_a_live_lease_refuses_another_holder_and_names_it(
    clocked: Store, clock: FakeClock, key: str
) -> None:
    clocked.acquire_lease(
        key=key, holder="run A", ttl=30.0, meta={"service": "billing", "pid": 1, "host": "ops1"}
    )
    clock.advance(29.0)
    with pytest.raises(LeaseHeld) as info:
        clocked.acquire_lease(key=key, holder="run B", ttl=30.0)
    assert not isinstance(info.value, LeaseLost)
    text_ = str(info.value)
    assert "run A" in text_ and "billing" in text_ and "ops1" in text_
    assert key in text_
    assert "in 1s" in text_  # the remaining time, by the store's clock
    assert info.value.exit_code == 5
    assert clocked.lease(key=key) == Lease(
        key, "run A", T0, T0 + 30, {"service": "billing", "pid": 1, "host": "ops1"}
    )


def test_the_holder_may_acquire_again_keeping_acquired_at(
    clocked: Store, clock: FakeClock, key: str
) -> None:
    clocked.acquire_lease(key=key, holder="A", ttl=30.0, meta={"pid": 1})
    clock.advance(10)
    again = clocked.acquire_lease(key=key, holder="A", ttl=30.0, meta={"pid": 2})
    assert again == Lease(key, "A", T0, T0 + 40, {"pid": 2})
    assert clocked.lease(key=key) == again


def test_an_expired_lease_is_taken_over(clocked: Store, clock: FakeClock, key: str) -> None:
    clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    clock.advance(30)
    taken = clocked.acquire_lease(key=key, holder="B", ttl=30.0, meta={"run_id": "rB"})
    assert taken == Lease(key, "B", T0 + 30, T0 + 60, {"run_id": "rB"})
    assert clocked.lease(key=key) == taken


def test_acquiring_ones_own_expired_lease_is_a_fresh_start(
    clocked: Store, clock: FakeClock, key: str
) -> None:
    clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    clock.advance(45)
    assert clocked.acquire_lease(key=key, holder="A", ttl=30.0) == Lease(
        key, "A", T0 + 45, T0 + 75
    )


def test_renew_extends_a_live_lease(clocked: Store, clock: FakeClock, key: str) -> None:
    clocked.acquire_lease(key=key, holder="A", ttl=30.0, meta={"pid": 7})
    clock.advance(20)
    renewed = clocked.renew_lease(key=key, holder="A", ttl=30.0)
    assert renewed == Lease(key, "A", T0, T0 + 50, {"pid": 7})
    assert clocked.lease(key=key) == renewed
    clock.advance(20)
    with pytest.raises(LeaseHeld):
        clocked.acquire_lease(key=key, holder="B", ttl=30.0)


def test_renew_never_revives_an_expired_lease(
    clocked: Store, clock: FakeClock, key: str
) -> None:
    held = clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    clock.advance(30.5)  # nobody took over, but while expired anyone could have acted
    with pytest.raises(LeaseLost, match="expired") as info:
        clocked.renew_lease(key=key, holder="A", ttl=30.0)
    assert "0.500s" in str(info.value)
    assert "never revived" in str(info.value)
    assert info.value.exit_code == 5
    assert clocked.lease(key=key) == held  # unchanged: still expired, takeable


def test_renew_after_a_takeover_names_the_new_holder(
    clocked: Store, clock: FakeClock, key: str
) -> None:
    clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    clock.advance(31)
    taken = clocked.acquire_lease(key=key, holder="B", ttl=30.0, meta={"host": "ops2"})
    with pytest.raises(LeaseLost, match="taken over by B") as info:
        clocked.renew_lease(key=key, holder="A", ttl=30.0)
    assert "ops2" in str(info.value)
    assert clocked.lease(key=key) == taken


def test_renew_of_a_released_lease_raises_lease_lost(clocked: Store, key: str) -> None:
    with pytest.raises(LeaseLost, match="nobody holds it"):
        clocked.renew_lease(key=key, holder="A", ttl=30.0)
    clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    clocked.release_lease(key=key, holder="A")
    with pytest.raises(LeaseLost, match="released"):
        clocked.renew_lease(key=key, holder="A", ttl=30.0)
    assert clocked.lease(key=key) is None


def test_release_frees_the_lease_for_another_holder(clocked: Store, key: str) -> None:
    clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    clocked.release_lease(key=key, holder="A")
    assert clocked.lease(key=key) is None
    assert clocked.acquire_lease(key=key, holder="B", ttl=30.0).holder == "B"


def test_release_by_someone_else_is_a_no_op(clocked: Store, key: str) -> None:
    held = clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    clocked.release_lease(key=key, holder="B")
    clocked.release_lease(key=key + "-unknown", holder="A")
    assert clocked.lease(key=key) == held


def test_leases_are_per_router_target_and_listed(clocked: Store, key: str) -> None:
    a = clocked.acquire_lease(key=key + "-2", holder="A", ttl=30.0, meta={"service": "web"})
    b = clocked.acquire_lease(key=key + "-1", holder="B", ttl=30.0, meta={"service": "web"})
    assert [x for x in clocked.leases() if x.key.startswith(key)] == [b, a]


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("inf"), float("nan")])
def test_a_ttl_must_be_positive_and_finite(clocked: Store, key: str, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        clocked.acquire_lease(key=key, holder="A", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        clocked.renew_lease(key=key, holder="A", ttl=ttl)


def test_lease_meta_must_be_json(clocked: Store, key: str) -> None:
    with pytest.raises(StoreError, match="not JSON"):
        clocked.acquire_lease(key=key, holder="A", ttl=30.0, meta={"x": object()})
    assert clocked.lease(key=key) is None


# --- fenced appends ----------------------------------------------------------------


def test_a_fenced_append_lands_while_the_lease_is_held(
    clocked: Store, clock: FakeClock, key: str, svc: str
) -> None:
    clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    clock.advance(29.9)
    e = clocked.append(service=svc, run_id="rA", kind="weight_intended", at=1.0, fence=(key, "A"))
    assert clocked.events(service=svc) == [e]


@pytest.mark.parametrize("how", ["expired", "taken over", "released", "never held"])
def test_a_fenced_append_without_the_lease_appends_nothing(
    clocked: Store, clock: FakeClock, key: str, svc: str, how: str
) -> None:
    if how != "never held":
        clocked.acquire_lease(key=key, holder="A", ttl=30.0)
    if how in ("expired", "taken over"):
        clock.advance(30)
    if how == "taken over":
        clocked.acquire_lease(key=key, holder="B", ttl=30.0)
    if how == "released":
        clocked.release_lease(key=key, holder="A")
    with pytest.raises(LeaseLost):
        clocked.append(service=svc, run_id="rA", kind="weight_intended", at=1.0, fence=(key, "A"))
    assert clocked.events(service=svc) == []


def test_operator_events_need_no_lease(
    clocked: Store, clock: FakeClock, key: str, svc: str
) -> None:
    clocked.acquire_lease(key=key, holder="run A", ttl=30.0)
    e = clocked.append(service=svc, run_id="operator", kind="pause_requested", at=1.0,
                       actor="bob@ops1")
    assert clocked.events(service=svc) == [e]
    assert clocked.lease(key=key) is not None and clocked.lease(key=key).holder == "run A"  # type: ignore[union-attr]


# --- the database clock --------------------------------------------------------------


def _db_clock(store_url: str, store: Store) -> float:
    """The database's clock read with plain SQL, beside the store."""
    if store_url.startswith("postgresql"):
        engine = create_engine(store_url)
        try:
            with engine.connect() as conn:
                return float(
                    conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one()
                )
        finally:
            engine.dispose()
    # SQLite's clock is the host's as SQLite reads it (julianday('now'), ms resolution)
    import sqlite3

    con = sqlite3.connect(":memory:")
    try:
        days = con.execute("SELECT julianday('now')").fetchone()[0]
    finally:
        con.close()
    return round((days - 2440587.5) * 86400.0, 3)


def test_the_lease_clock_is_the_databases(
    store_url: str, store: Store, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    skewed = time.time() + 3600.0  # the caller's clock, an hour ahead
    monkeypatch.setattr(time, "time", lambda: skewed)
    before = _db_clock(store_url, store)
    now = store.now()
    lease = store.acquire_lease(key=key, holder="A", ttl=30.0)
    after = _db_clock(store_url, store)
    assert before - 0.001 <= now <= lease.acquired_at <= after + 0.001
    assert lease.expires_at == pytest.approx(lease.acquired_at + 30.0)
    assert not lease.is_expired(store.now())
    # the skewed caller's own view would call it expired; the store does not
    assert lease.is_expired(skewed)
    with pytest.raises(LeaseHeld):
        store.acquire_lease(key=key, holder="B (clock an hour ahead)", ttl=30.0)


def test_expiry_is_judged_by_the_database_clock(store: Store, key: str, svc: str) -> None:
    held = store.acquire_lease(key=key, holder="A", ttl=0.05)
    _wait_expired(store, held)
    with pytest.raises(LeaseLost, match="expired"):
        store.renew_lease(key=key, holder="A", ttl=30.0)
    with pytest.raises(LeaseLost, match="expired"):
        store.append(service=svc, run_id="rA", kind="k", at=1.0, fence=(key, "A"))
    assert store.events(service=svc) == []
    taken = store.acquire_lease(key=key, holder="B", ttl=30.0)
    assert taken.holder == "B" and taken.acquired_at >= held.expires_at


# --- sharing one store -----------------------------------------------------------


def test_two_store_objects_on_one_url_share_events_and_leases(
    shared_url: str, svc: str, key: str
) -> None:
    with open_store(shared_url) as engine_side, open_store(shared_url) as operator_side:
        started = engine_side.append(service=svc, run_id="r1", kind="run_started", at=1.0)
        paused = operator_side.append(
            service=svc, run_id="r1", kind="pause_requested", at=2.0, actor="bob@ops1"
        )
        assert engine_side.events(service=svc) == [started, paused]
        assert operator_side.last_event(service=svc) == paused
        engine_side.acquire_lease(key=key, holder="run r1", ttl=30.0)
        with pytest.raises(LeaseHeld, match="run r1"):
            operator_side.acquire_lease(key=key, holder="run r2", ttl=30.0)


def test_a_holder_taken_over_from_another_store_cannot_renew_or_append(
    shared_url: str, svc: str, key: str, clock: FakeClock
) -> None:
    with open_store(shared_url, clock=clock.now) as first, open_store(
        shared_url, clock=clock.now
    ) as second:
        first.acquire_lease(key=key, holder="run A", ttl=30.0)
        first.append(service=svc, run_id="rA", kind="weight_confirmed", at=1.0, fence=(key, "run A"))
        clock.advance(30.0)
        second.acquire_lease(key=key, holder="run B", ttl=30.0, meta={"host": "ops2"})
        with pytest.raises(LeaseLost, match="taken over by run B"):
            first.renew_lease(key=key, holder="run A", ttl=30.0)
        with pytest.raises(LeaseLost, match="taken over by run B"):
            first.append(service=svc, run_id="rA", kind="weight_intended", at=2.0,
                         fence=(key, "run A"))
        assert [e.kind for e in second.events(service=svc)] == ["weight_confirmed"]


# --- several processes (spawned: a real second process, its own connections) -----------


def _race(url: str, key: str, holder: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        with open_store(url) as s:
            s.acquire_lease(key=key, holder=holder, ttl=60.0, meta={"run_id": holder})
        results.put((holder, "won"))
    except LeaseHeld:
        results.put((holder, "refused"))
    except BaseException as e:  # report it; never leave the parent waiting
        results.put((holder, f"error {type(e).__name__}: {e}"))


@pytest.mark.parametrize("previous", ["none", "expired"])
def test_processes_racing_for_a_lease_exactly_one_wins(
    shared_url: str, key: str, previous: str
) -> None:
    if previous == "expired":
        with open_store(shared_url) as s:
            _wait_expired(s, s.acquire_lease(key=key, holder="crashed run", ttl=0.05))
    n = 6
    outcomes = dict(race_in_processes(_race, [(shared_url, key, f"run-{i}") for i in range(n)]))
    assert sorted(outcomes.values()) == ["refused"] * (n - 1) + ["won"], outcomes
    (winner,) = [h for h, o in outcomes.items() if o == "won"]
    with open_store(shared_url) as s:
        lease = s.lease(key=key)
        assert lease is not None and lease.holder == winner
        assert lease.meta == {"run_id": winner}
        assert lease.expires_at == pytest.approx(lease.acquired_at + 60.0)


def _skewed_acquire(url: str, key: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        ahead = time.time() + 31.0  # this "host" runs 31 s ahead: past the holder's 30 s TTL
        time.time = lambda: ahead  # type: ignore[assignment]
        time.time_ns = lambda: int(ahead * 1e9)  # type: ignore[assignment]
        with open_store(url) as s:
            s.acquire_lease(key=key, holder="skewed host", ttl=30.0)
        results.put("took the lease")
    except LeaseHeld as e:
        results.put(f"refused: {e}")
    except BaseException as e:
        results.put(f"error {type(e).__name__}: {e}")


def test_a_host_with_its_clock_ahead_cannot_take_a_live_lease(shared_url: str, key: str) -> None:
    with open_store(shared_url) as s:
        s.acquire_lease(key=key, holder="live run", ttl=30.0)
        (outcome,) = race_in_processes(_skewed_acquire, [(shared_url, key)])
        assert outcome.startswith("refused: "), outcome
        assert "live run" in outcome
        lease = s.lease(key=key)
        assert lease is not None and lease.holder == "live run"


def _fenced_writer(url: str, key: str, svc: str, barrier: Any, results: Any) -> None:
    """Take the lease for a moment, then keep appending (fenced, never renewing) until refused."""
    try:
        with open_store(url) as s:
            barrier.wait(timeout=30)
            s.acquire_lease(key=key, holder="A", ttl=0.5)
            deadline = time.monotonic() + 60
            n = 0
            while time.monotonic() < deadline:
                try:
                    s.append(service=svc, run_id="A", kind="tick", at=float(n), fence=(key, "A"))
                except LeaseLost as e:
                    results.put(("A", n, str(e)))
                    return
                n += 1
                time.sleep(0.002)
            results.put(("A", n, "never lost the lease"))
    except BaseException as e:
        results.put(("A", -1, f"error {type(e).__name__}: {e}"))


def _taker(url: str, key: str, svc: str, barrier: Any, results: Any) -> None:
    """Wait until A holds the lease, then take it as soon as the database says it expired."""
    try:
        with open_store(url) as s:
            barrier.wait(timeout=30)
            deadline = time.monotonic() + 60
            while (lease := s.lease(key=key)) is None or lease.holder != "A":
                if time.monotonic() > deadline:
                    raise AssertionError("A never took the lease")
                time.sleep(0.005)
            while True:
                try:
                    s.acquire_lease(key=key, holder="B", ttl=60.0)
                    break
                except LeaseHeld:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            s.append(service=svc, run_id="B", kind="took_over", at=0.0, fence=(key, "B"))
            results.put(("B", 1, "took over"))
    except BaseException as e:
        results.put(("B", -1, f"error {type(e).__name__}: {e}"))


def _both(url: str, key: str, svc: str, role: str, barrier: Any, results: Any) -> None:
    (_fenced_writer if role == "A" else _taker)(url, key, svc, barrier, results)


def test_a_run_whose_lease_was_taken_over_appends_nothing_after_the_takeover(
    shared_url: str, key: str, svc: str
) -> None:
    outcomes = race_in_processes(_both, [(shared_url, key, svc, "A"), (shared_url, key, svc, "B")])
    by_role = {role: (n, msg) for role, n, msg in outcomes}
    assert by_role["B"] == (1, "took over"), outcomes
    n_a, why = by_role["A"]
    # A stops on its own expiry or on B's takeover, whichever it sees first. (How many
    # appends A made first depends on scheduling; on an idle machine, dozens.)
    assert n_a >= 0 and ("expired" in why or "taken over by B" in why), outcomes
    with open_store(shared_url) as s:
        events = s.events(service=svc)
        a_ids = [e.id for e in events if e.run_id == "A"]
        b_ids = [e.id for e in events if e.run_id == "B"]
        assert len(a_ids) == n_a and len(b_ids) == 1
        assert max(a_ids) < min(b_ids)  # ids follow commit order: nothing of A's after B took over
        # and from here on, A can neither renew nor append
        with pytest.raises(LeaseLost, match="taken over by B"):
            s.renew_lease(key=key, holder="A", ttl=30.0)
        with pytest.raises(LeaseLost, match="taken over by B"):
            s.append(service=svc, run_id="A", kind="tick", at=0.0, fence=(key, "A"))
        assert len(s.events(service=svc)) == n_a + 1
