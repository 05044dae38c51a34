"""Fixtures for the whole suite.

- Every test runs with ``$SHIFTOVER_STATE`` pointing at a state file of its own
  (autouse), so no test ever writes the per-host default location
  (``/var/lib/shiftover`` as root, ``~/.local/state/shiftover`` otherwise) or
  shares state with another test. A test that needs the default unsets it.
- ``postgres_url``: a real PostgreSQL for the whole session. Debian's
  PostgreSQL 15 is started once, as the ``postgres`` user in a temporary
  directory (:class:`shiftover.demo.postgres.PostgresServer`), and stopped at
  the end of the session. ``SHIFTOVER_TEST_POSTGRES_URL`` (a SQLAlchemy URL)
  uses an existing server instead. If neither works the tests that need it
  **fail** with the reason: the PostgreSQL backend is part of what ``make
  test`` proves, so it is never skipped quietly.
- ``postgres_database``: a fresh, empty database on that server for one test
  (dropped afterwards), for tests that change the schema. With an external
  server the URL's user needs CREATEDB.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shiftover.store import STATE_ENV_VAR

POSTGRES_URL_ENV = "SHIFTOVER_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _state_in_a_temp_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    state = tmp_path_factory.mktemp("state") / "state.db"
    monkeypatch.setenv(STATE_ENV_VAR, f"sqlite:///{state}")
    return state


def _require_driver() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        pytest.fail(
            f"the PostgreSQL tests need the psycopg driver, which is not installed ({e}); "
            "install it: .venv/bin/pip install 'psycopg[binary]>=3.1' (the 'postgres' extra)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a live PostgreSQL (see the module docstring)."""
    _require_driver()
    external = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if external:
        yield external
        return
    from shiftover.demo.postgres import PostgresServer
    from shiftover.errors import ShiftoverError

    try:
        server = PostgresServer().start()
    except ShiftoverError as e:
        pytest.fail(
            f"could not start PostgreSQL for the tests: {e}\n"
            f"(or set {POSTGRES_URL_ENV} to a server the tests may use)",
            pytrace=False,
        )
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database on the session's PostgreSQL; dropped after the test."""
    name = f"shiftover_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Any]:
    """A moto server on 127.0.0.1 for the whole session (the local AWS double)."""
    from shiftover.demo.moto import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture
def aws(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """boto3 (in this process and in the children it starts) talks to a freshly reset
    moto server: the standard endpoint and credential variables point there."""
    moto_server.reset()
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.aws_env().items():
        monkeypatch.setenv(name, value)
    yield moto_server
