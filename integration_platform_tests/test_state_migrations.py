"""Migrations against real SQLite and PostgreSQL: up, down, no drift from the models, data."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from integration_platform.state import (
    PROCESSING_STATUSES,
    Base,
    MaintenanceEventHook,
    StateDatabase,
    SyncConfiguration,
    current,
    dispose_engines,
    downgrade,
    head,
    make_engine,
    upgrade,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_TABLES = {
    "maintenance_event_hooks",
    "sync_configurations",
    "connection_health_checks",
    "devices",
    "device_sensors",
    "sensor_alerts",
    "sensor_alert_states",
    "cbm_work_orders",
    "sync_xrefs",
    "sync_bases",
    "sync_runs",
    "sync_journal",
    "sync_conflicts",
    "sync_audit",
    "sync_pending_keys",
}
POLL_INDEX = "ix_maintenance_event_hooks_processing_status_created_at"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty state database: a temporary SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    yield url
    dispose_engines()


def _table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _diff(url: str, metadata: sa.MetaData) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def _event(**overrides: object) -> MaintenanceEventHook:
    fields: dict[str, object] = {
        "cmms_system_id": "maximo",
        "event_type": "workorder.updated",
        "event_payload": {"wonum": "WO-1"},
        "hmac_signature": "sha256=00",
        "event_id": f"evt-{uuid.uuid4().hex}",
    }
    fields.update(overrides)
    return MaintenanceEventHook(**fields)


def test_upgrade_to_head_then_down_to_base_and_up_again(state_url: str) -> None:
    assert current(state_url) is None
    upgrade(state_url)
    assert current(state_url) == head()
    assert _table_names(state_url) == STATE_TABLES | {"alembic_version"}

    downgrade(state_url, "base")
    assert current(state_url) is None
    assert _table_names(state_url) == {"alembic_version"}

    upgrade(state_url)
    upgrade(state_url)  # already at head: nothing to do, no error
    assert current(state_url) == head()


def test_models_and_migrations_do_not_drift(state_url: str) -> None:
    upgrade(state_url)
    assert _diff(state_url, Base.metadata) == []


def test_drift_check_notices_a_difference(state_url: str) -> None:
    """Guards the test above: a changed model must show up as a difference."""
    upgrade(state_url)
    drifted = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    hooks = drifted.tables["maintenance_event_hooks"]
    hooks.append_column(sa.Column("not_in_any_migration", sa.String(200), nullable=True))
    hooks.c.cmms_system_id.type = sa.String(20)
    # Column-level changes arrive grouped in lists, table-level ones as tuples.
    kinds = {
        entry[0][0] if isinstance(entry, list) else entry[0] for entry in _diff(state_url, drifted)
    }
    assert {"add_column", "modify_type"} <= kinds


def test_event_round_trips_json_and_utc_timestamps(state_url: str) -> None:
    state = StateDatabase(url=state_url)
    assert state.ensure_schema() == head()
    payload = {
        "wonum": "WO-1001",
        "description": "Pumpe P-101 überhitzt — Lager prüfen",
        "priority": 1,
        "measurements": [71.5, 72.25, None],
        "asset": {"id": "P-101", "site": "BEDFORD", "tags": ["pump", "critical"]},
        "approved": False,
    }
    processed = datetime(2026, 3, 1, 14, 0, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    before = datetime.now(UTC) - timedelta(seconds=5)
    with state.session() as session:
        event = _event(event_payload=payload, processed_at=processed)
        session.add(event)
        session.flush()
        event_id = event.id
    assert isinstance(event_id, int)

    with state.session() as session:
        stored = session.get(MaintenanceEventHook, event_id)
        assert stored is not None
        assert stored.event_payload == payload
        assert stored.processing_status == "pending"
        assert stored.retry_count == 0
        assert stored.error_message is None
        assert stored.processed_at == processed
        assert stored.processed_at.utcoffset() == timedelta(0)
        assert stored.processed_at.hour == 12
        assert stored.created_at.utcoffset() == timedelta(0)
        assert before <= stored.created_at <= datetime.now(UTC) + timedelta(seconds=5)


def test_server_defaults_fill_rows_written_in_plain_sql(state_url: str) -> None:
    """Other tools (psql, the seed scripts) insert without the ORM; the database fills in."""
    upgrade(state_url)
    state = StateDatabase(url=state_url)
    with state.session() as session:
        session.execute(
            sa.text(
                "INSERT INTO maintenance_event_hooks "
                "(cmms_system_id, event_type, event_payload, hmac_signature, event_id) "
                "VALUES ('fiix', 'asset.created', :payload, 'sha256=ab', 'evt-1')"
            ),
            {"payload": '{"id": 7}'},
        )
        session.execute(
            sa.text(
                "INSERT INTO sync_configurations "
                "(name, sync_type, source_system, target_system, configuration) "
                "VALUES ('maximo-to-sap', 'one_way', 'maximo', 'sap_pm', :configuration)"
            ),
            {"configuration": '{"entities": ["work_orders"]}'},
        )
    with state.session() as session:
        event = session.scalars(sa.select(MaintenanceEventHook)).one()
        assert (event.processing_status, event.retry_count) == ("pending", 0)
        assert event.event_payload == {"id": 7}
        assert event.created_at.tzinfo is not None
        assert abs(event.created_at - datetime.now(UTC)) < timedelta(minutes=1)
        sync = session.scalars(sa.select(SyncConfiguration)).one()
        assert sync.is_active is True
        assert sync.configuration == {"entities": ["work_orders"]}
        assert abs(sync.updated_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_timestamp_is_refused(state_url: str) -> None:
    state = StateDatabase(url=state_url)
    state.ensure_schema()
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), state.session() as s:
        s.add(_event(processed_at=datetime(2026, 3, 1, 12, 0)))
        s.flush()


def test_check_constraints_reject_unknown_values(state_url: str) -> None:
    state = StateDatabase(url=state_url)
    state.ensure_schema()
    with state.session() as session:
        session.add_all([_event(processing_status=status) for status in PROCESSING_STATUSES])
    with pytest.raises(sa.exc.IntegrityError), state.session() as session:
        session.add(_event(processing_status="archived"))
    with pytest.raises(sa.exc.IntegrityError), state.session() as session:
        session.add(
            SyncConfiguration(name="x", sync_type="three_way", source_system="a", target_system="b")
        )
    with state.session() as session:
        session.add(
            SyncConfiguration(name="dup", sync_type="two_way", source_system="a", target_system="b")
        )
    with pytest.raises(sa.exc.IntegrityError), state.session() as session:
        session.add(
            SyncConfiguration(name="dup", sync_type="one_way", source_system="c", target_system="d")
        )
    with state.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(MaintenanceEventHook)) == 5
        assert session.scalar(sa.select(sa.func.count()).select_from(SyncConfiguration)) == 1


def test_polling_query_uses_the_status_index(state_url: str) -> None:
    upgrade(state_url)
    query = (
        "SELECT id FROM maintenance_event_hooks WHERE processing_status = 'pending' "
        "ORDER BY created_at LIMIT 10"
    )
    engine = make_engine(state_url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}").fetchall()
            else:
                # An empty table is cheapest to scan; forbid that to see which index fits.
                connection.exec_driver_sql("SET enable_seqscan = off")
                plan = connection.exec_driver_sql(f"EXPLAIN {query}").fetchall()
    finally:
        engine.dispose()
    assert POLL_INDEX in str(plan)


def test_alembic_cli_with_the_shipped_ini(state_url: str, tmp_path: Path) -> None:
    """``alembic -c .../alembic.ini`` works from any folder and takes the URL from the env."""
    env = {**os.environ, "INTEGRATION_PLATFORM_DB_URL": state_url}
    ini = REPO_ROOT / "integration_platform" / "state" / "alembic.ini"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert current(state_url) == head()


def test_concurrent_upgrades_in_threads_do_not_collide(state_url: str) -> None:
    """Threads of one service may all call ensure_schema(); one migrates, the rest wait."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            upgrade(state_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert current(state_url) == head()


def test_concurrent_upgrades_in_processes_do_not_collide(state_url: str) -> None:
    """Services starting together each migrate; the database lock makes them take turns."""
    code = (
        "import sys, time\n"
        "from integration_platform.state import upgrade\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "upgrade(sys.argv[1])\n"
    )
    start_at = time.time() + 4  # after every process has imported: they migrate together
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, state_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(process.wait(timeout=120), process.stderr.read()) for process in processes]
    for process in processes:
        process.stdout.close()
        process.stderr.close()
    for code, stderr in outcomes:  # each failure whole: its last line says why
        assert code == 0, stderr
    assert current(state_url) == head()
