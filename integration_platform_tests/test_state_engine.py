"""Choosing and reaching the state database: URLs, errors that help, engines, the resource."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_platform.settings import DB_URL_VAR, ConfigError
from integration_platform.state import (
    StateDatabase,
    SyncConfiguration,
    check_connection,
    current,
    database_url,
    dispose_engines,
    head,
    make_engine,
    upgrade,
)


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    dispose_engines()


def _sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'state.db'}"


def test_default_is_an_sqlite_file_under_the_data_dir(data_dir: Path) -> None:
    url = database_url()
    assert url.get_backend_name() == "sqlite"
    assert Path(url.database or "") == data_dir / "state" / "integration_platform.db"
    assert (data_dir / "state").is_dir()


def test_env_url_wins_over_the_default(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DB_URL_VAR, "postgresql+psycopg2://ops:pw@db.plant.local:6432/state")
    url = database_url()
    assert (url.drivername, url.host, url.port, url.database, url.password) == (
        "postgresql+psycopg2",
        "db.plant.local",
        6432,
        "state",
        "pw",
    )
    assert not (data_dir / "state").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgres_url_is_pointed_at_psycopg2(scheme: str) -> None:
    url = database_url({DB_URL_VAR: f"{scheme}://ops:p%40ss@db:5432/state"})
    assert url.drivername == "postgresql+psycopg2"
    assert url.password == "p@ss"
    assert make_engine(url).dialect.driver == "psycopg2"


def test_malformed_url_names_the_variable_and_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        database_url({DB_URL_VAR: "not a url"})
    message = str(caught.value)
    assert DB_URL_VAR in message
    assert "'not a url'" in message
    assert "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DBNAME" in message


def test_malformed_url_does_not_show_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        database_url({DB_URL_VAR: "postgresql://ops:secret@db:notaport/state"})
    assert DB_URL_VAR in str(caught.value)
    assert "secret" not in str(caught.value)
    assert "ops:***@db" in str(caught.value)


def test_unsupported_dialect_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        database_url({DB_URL_VAR: "mysql://ops:secret@db/state"})
    message = str(caught.value)
    assert DB_URL_VAR in message
    assert "'mysql'" in message
    assert "secret" not in message
    assert "postgresql+psycopg2://" in message


@pytest.mark.parametrize(
    "raw", ["postgresql+asyncpg://ops@db/state", "postgresql+psycopg://ops@db/state"]
)
def test_other_postgres_drivers_are_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="psycopg2"):
        database_url({DB_URL_VAR: raw})


@pytest.mark.parametrize("raw", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        database_url({DB_URL_VAR: raw})


def test_unreachable_server_fails_with_the_variable_and_host() -> None:
    engine = make_engine("postgresql+psycopg2://u:secret@127.0.0.1:1/x")
    with pytest.raises(ConfigError) as caught:
        check_connection(engine)
    message = str(caught.value)
    assert DB_URL_VAR in message
    assert "127.0.0.1:1" in message
    assert "secret" not in message
    assert caught.value.__cause__ is None  # the driver error (with its details) is not chained


def test_unreachable_server_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DB_URL_VAR, "postgresql://u:secret@127.0.0.1:1/x")
    for call in (current, upgrade, StateDatabase().ensure_schema):
        with pytest.raises(ConfigError) as caught:
            call()
        assert DB_URL_VAR in str(caught.value)
        assert "secret" not in str(caught.value)


def test_silent_server_times_out_instead_of_hanging() -> None:
    """A host that accepts TCP but never answers (firewall, hung server) must not block forever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nothing ever replies
        port = listener.getsockname()[1]
        engine = make_engine(f"postgresql+psycopg2://u:secret@127.0.0.1:{port}/x")
        started = time.monotonic()
        with pytest.raises(ConfigError) as caught:
            check_connection(engine)
        elapsed = time.monotonic() - started
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert elapsed < 30


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'folder' / 'state.db'}")
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() >= 5000
    migrations = make_engine(_sqlite_url(tmp_path), sqlite_foreign_keys=False)
    with migrations.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    engine.dispose()
    migrations.dispose()


def test_sqlite_read_then_write_waits_for_another_writer(tmp_path: Path) -> None:
    """The inbox claim pattern (read pending rows, then update them) across two processes.

    With SQLite's default deferred transactions the poller's write fails at once with
    "database is locked" when another writer committed after its read; the engine starts every
    transaction with the write lock so the second writer waits its turn instead.
    """
    url = _sqlite_url(tmp_path)
    setup = make_engine(url)
    with setup.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE inbox (id INTEGER PRIMARY KEY, note TEXT)")
    poller, receiver = make_engine(url), make_engine(url)
    polled = threading.Event()
    received = threading.Event()
    errors: list[BaseException] = []

    def poll_then_claim() -> None:
        try:
            with poller.begin() as connection:
                connection.exec_driver_sql("SELECT count(*) FROM inbox").scalar()
                polled.set()
                received.wait(timeout=1.5)  # the receiver tries to commit meanwhile
                connection.exec_driver_sql("INSERT INTO inbox (note) VALUES ('claim')")
        except BaseException as exc:
            errors.append(exc)

    def receive() -> None:
        try:
            with receiver.begin() as connection:
                connection.exec_driver_sql("INSERT INTO inbox (note) VALUES ('event')")
            received.set()
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=poll_then_claim)
    first.start()
    assert polled.wait(timeout=10)
    second = threading.Thread(target=receive)
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)
    assert errors == []
    with setup.connect() as connection:
        notes = connection.exec_driver_sql("SELECT note FROM inbox ORDER BY id").scalars().all()
    assert notes == ["claim", "event"]
    for engine in (setup, poller, receiver):
        engine.dispose()


def test_resource_caches_one_engine_per_url(tmp_path: Path) -> None:
    url = _sqlite_url(tmp_path)
    engine = StateDatabase(url=url).engine()
    assert StateDatabase(url=url).engine() is engine
    assert StateDatabase(url=_sqlite_url(tmp_path / "other")).engine() is not engine


def test_resource_follows_the_environment_when_url_is_unset(data_dir: Path) -> None:
    state = StateDatabase()
    assert state.engine().url.database == str(data_dir / "state" / "integration_platform.db")


def test_session_commits_on_success_and_rolls_back_on_error(tmp_path: Path) -> None:
    state = StateDatabase(url=_sqlite_url(tmp_path))
    assert state.ensure_schema() == head()
    with state.session() as session:
        session.add(
            SyncConfiguration(
                name="kept", sync_type="one_way", source_system="maximo", target_system="sap_pm"
            )
        )
    with pytest.raises(RuntimeError, match="boom"), state.session() as session:
        session.add(
            SyncConfiguration(
                name="lost", sync_type="one_way", source_system="fiix", target_system="sap_pm"
            )
        )
        session.flush()
        raise RuntimeError("boom")
    with state.session() as session:
        names = session.scalars(sa.select(SyncConfiguration.name)).all()
    assert names == ["kept"]


def test_resource_works_inside_a_dagster_run(tmp_path: Path) -> None:
    @dg.asset
    def registered_syncs(state: StateDatabase) -> int:
        state.ensure_schema()
        with state.session() as session:
            session.add(
                SyncConfiguration(
                    name="wo-sync",
                    sync_type="two_way",
                    source_system="maximo",
                    target_system="sap_pm",
                    configuration={"entities": ["work_orders"], "interval_minutes": 15},
                )
            )
        with state.session() as session:
            return len(session.scalars(sa.select(SyncConfiguration)).all())

    url = _sqlite_url(tmp_path)
    result = dg.materialize([registered_syncs], resources={"state": StateDatabase(url=url)})
    assert result.success
    assert result.output_for_node("registered_syncs") == 1
    with StateDatabase(url=url).session() as session:
        stored = session.scalars(sa.select(SyncConfiguration)).one()
    assert stored.configuration == {"entities": ["work_orders"], "interval_minutes": 15}
    assert stored.is_active is True


def test_import_reads_no_settings_and_opens_nothing(tmp_path: Path) -> None:
    """Dagster imports the code location everywhere; a bad URL must not break the import."""
    never = tmp_path / "never-created"
    env = {**os.environ, DB_URL_VAR: "not a url", "INTEGRATION_PLATFORM_DATA_DIR": str(never)}
    code = (
        "import integration_platform.state as state\n"
        "state.StateDatabase()\n"
        "state.StateDatabase(url='postgresql://u:p@127.0.0.1:1/x')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert not never.exists()
