"""The Store contract, run over every backend.

Backends: ``sqlite-file`` and ``sqlite-memory`` always; ``postgresql`` when
``SHIFTOVER_TEST_POSTGRES_URL`` is set (e.g.
``postgresql+psycopg://shiftover@127.0.0.1/shiftover_test``), skipped otherwise.
To add a backend, add a ``pytest.param`` to ``BACKENDS`` and a branch to the
``store`` fixture.

Every test works on its own service names (a random suffix), so a shared
PostgreSQL database needs no cleanup between tests and the suite never assumes
it is alone in the store. Times are passed in explicitly: no sleeps.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shiftover.errors import LeaseHeld, StoreError
from shiftover.store import Event, Lease, Store, open_store
from shiftover.testing import race_in_processes

POSTGRES_URL = os.environ.get("SHIFTOVER_TEST_POSTGRES_URL", "")

BACKENDS = [
    pytest.param("sqlite-file", id="sqlite-file"),
    pytest.param("sqlite-memory", id="sqlite-memory"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(
            not POSTGRES_URL, reason="set SHIFTOVER_TEST_POSTGRES_URL to run against PostgreSQL"
        ),
    ),
]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend: str = request.param
    if backend == "sqlite-file":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    if backend == "sqlite-memory":
        return "sqlite://"
    if backend == "postgresql":
        return POSTGRES_URL
    raise AssertionError(backend)  # pragma: no cover


@pytest.fixture
def shared_url(store_url: str) -> str:
    """The URL, for tests where several Store objects or processes share one store."""
    if store_url == "sqlite://":
        pytest.skip("an in-memory store is private to its Store object")
    return store_url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def svc() -> str:
    return f"web-{uuid.uuid4().hex[:8]}"


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


def test_services_lists_services_with_events_or_a_lease(store: Store, svc: str) -> None:
    store.append(service=svc + "-b", run_id="r", kind="k", at=1.0)
    store.append(service=svc + "-a", run_id="r", kind="k", at=1.0)
    store.append(service=svc + "-a", run_id="r", kind="k", at=2.0)
    store.acquire_lease(service=svc + "-c", holder="h", now=0.0, ttl=30.0)
    mine = [s for s in store.services() if s.startswith(svc)]
    assert mine == [svc + "-a", svc + "-b", svc + "-c"]


def test_the_api_offers_no_way_to_change_or_remove_events(store: Store) -> None:
    public = {n for n in dir(store) if not n.startswith("_")}
    assert not {n for n in public if any(w in n for w in ("update", "delete", "remove", "edit"))}


# --- the lease -----------------------------------------------------------------


def test_acquire_a_free_lease(store: Store, svc: str) -> None:
    assert store.lease(service=svc) is None
    got = store.acquire_lease(service=svc, holder="run A", now=100.0, ttl=30.0)
    assert got == Lease(service=svc, holder="run A", acquired_at=100.0, expires_at=130.0)
    assert store.lease(service=svc) == got
    assert not got.is_expired(129.9)
    assert got.is_expired(130.0)


def test_a_live_lease_refuses_another_holder_and_names_the_holder(store: Store, svc: str) -> None:
    store.acquire_lease(service=svc, holder="run A pid 1 on ops1", now=100.0, ttl=30.0)
    with pytest.raises(LeaseHeld) as info:
        store.acquire_lease(service=svc, holder="run B", now=129.0, ttl=30.0)
    text = str(info.value)
    assert "run A pid 1 on ops1" in text
    assert svc in text
    assert "expir" in text
    assert info.value.exit_code == 5
    assert store.lease(service=svc) == Lease(svc, "run A pid 1 on ops1", 100.0, 130.0)


def test_the_holder_may_acquire_again_keeping_acquired_at(store: Store, svc: str) -> None:
    store.acquire_lease(service=svc, holder="A", now=100.0, ttl=30.0)
    again = store.acquire_lease(service=svc, holder="A", now=110.0, ttl=30.0)
    assert again == Lease(svc, "A", 100.0, 140.0)


def test_an_expired_lease_is_taken_over(store: Store, svc: str) -> None:
    store.acquire_lease(service=svc, holder="A", now=100.0, ttl=30.0)
    taken = store.acquire_lease(service=svc, holder="B", now=130.0, ttl=30.0)
    assert taken == Lease(svc, "B", 130.0, 160.0)
    assert store.lease(service=svc) == taken


def test_renew_extends_the_lease(store: Store, svc: str) -> None:
    store.acquire_lease(service=svc, holder="A", now=100.0, ttl=30.0)
    renewed = store.renew_lease(service=svc, holder="A", now=120.0, ttl=30.0)
    assert renewed == Lease(svc, "A", 100.0, 150.0)
    assert store.lease(service=svc) == renewed
    with pytest.raises(LeaseHeld):
        store.acquire_lease(service=svc, holder="B", now=140.0, ttl=30.0)


def test_renew_after_expiry_works_while_nobody_took_over(store: Store, svc: str) -> None:
    store.acquire_lease(service=svc, holder="A", now=100.0, ttl=30.0)
    assert store.renew_lease(service=svc, holder="A", now=200.0, ttl=30.0).expires_at == 230.0


def test_renew_of_a_lost_lease_raises_lease_held(store: Store, svc: str) -> None:
    store.acquire_lease(service=svc, holder="A", now=100.0, ttl=30.0)
    store.acquire_lease(service=svc, holder="B", now=131.0, ttl=30.0)
    with pytest.raises(LeaseHeld, match="B"):
        store.renew_lease(service=svc, holder="A", now=132.0, ttl=30.0)
    assert store.lease(service=svc) == Lease(svc, "B", 131.0, 161.0)


def test_renew_of_a_released_lease_raises_lease_held(store: Store, svc: str) -> None:
    with pytest.raises(LeaseHeld, match="no longer held"):
        store.renew_lease(service=svc, holder="A", now=1.0, ttl=30.0)
    assert store.lease(service=svc) is None


def test_release_frees_the_lease_for_another_holder(store: Store, svc: str) -> None:
    store.acquire_lease(service=svc, holder="A", now=100.0, ttl=30.0)
    store.release_lease(service=svc, holder="A")
    assert store.lease(service=svc) is None
    assert store.acquire_lease(service=svc, holder="B", now=101.0, ttl=30.0).holder == "B"


def test_release_by_someone_else_is_a_no_op(store: Store, svc: str) -> None:
    held = store.acquire_lease(service=svc, holder="A", now=100.0, ttl=30.0)
    store.release_lease(service=svc, holder="B")
    store.release_lease(service=svc + "-unknown", holder="A")
    assert store.lease(service=svc) == held


def test_leases_are_per_service(store: Store, svc: str) -> None:
    store.acquire_lease(service=svc + "-1", holder="A", now=100.0, ttl=30.0)
    assert store.acquire_lease(service=svc + "-2", holder="B", now=100.0, ttl=30.0).holder == "B"


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("inf"), float("nan")])
def test_a_ttl_must_be_positive_and_finite(store: Store, svc: str, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        store.acquire_lease(service=svc, holder="A", now=1.0, ttl=ttl)


# --- sharing one store -----------------------------------------------------------


def test_two_store_objects_on_one_url_share_events_and_leases(shared_url: str, svc: str) -> None:
    with open_store(shared_url) as engine_side, open_store(shared_url) as operator_side:
        started = engine_side.append(service=svc, run_id="r1", kind="run_started", at=1.0)
        paused = operator_side.append(
            service=svc, run_id="r1", kind="pause_requested", at=2.0, actor="bob@ops1"
        )
        assert engine_side.events(service=svc) == [started, paused]
        assert operator_side.last_event(service=svc) == paused
        engine_side.acquire_lease(service=svc, holder="run r1", now=10.0, ttl=30.0)
        with pytest.raises(LeaseHeld, match="run r1"):
            operator_side.acquire_lease(service=svc, holder="run r2", now=11.0, ttl=30.0)


def _race(url: str, svc: str, holder: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=30)
        with open_store(url) as s:
            s.acquire_lease(service=svc, holder=holder, now=1000.0, ttl=60.0)
        results.put((holder, "won"))
    except LeaseHeld:
        results.put((holder, "refused"))
    except BaseException as e:  # report it; never leave the parent waiting
        results.put((holder, f"error {type(e).__name__}: {e}"))


@pytest.mark.parametrize("previous", ["none", "expired"])
def test_processes_racing_for_a_lease_exactly_one_wins(
    shared_url: str, svc: str, previous: str
) -> None:
    with open_store(shared_url) as s:
        if previous == "expired":
            s.acquire_lease(service=svc, holder="crashed run", now=0.0, ttl=10.0)
    outcomes = dict(race_in_processes(_race, [(shared_url, svc, f"run-{i}") for i in range(4)]))
    assert sorted(outcomes.values()) == ["refused", "refused", "refused", "won"], outcomes
    (winner,) = [h for h, o in outcomes.items() if o == "won"]
    with open_store(shared_url) as s:
        assert s.lease(service=svc) == Lease(svc, winner, 1000.0, 1060.0)
