"""Migration 0002 on real SQLite and PostgreSQL: existing events survive, the new keys hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_platform.state import (
    MaintenanceEventHook,
    current,
    dispose_engines,
    downgrade,
    head,
    make_engine,
    upgrade,
)

POLL_INDEX = "ix_maintenance_event_hooks_processing_status_next_attempt_at"
ENTITY_INDEX = "ix_maintenance_event_hooks_entity"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    yield url
    dispose_engines()


def _insert_legacy(url: str, count: int) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            for number in range(count):
                connection.execute(
                    sa.text(
                        "INSERT INTO maintenance_event_hooks "
                        "(cmms_system_id, event_type, event_payload, hmac_signature, created_at) "
                        "VALUES ('maximo', 'workorder.updated', :payload, 'sha256=00', :created)"
                    ),
                    {
                        "payload": f'{{"wonum": "{number}"}}',
                        "created": datetime(2026, 1, 1, 8, number, tzinfo=UTC),
                    },
                )
    finally:
        engine.dispose()


def test_upgrade_keeps_existing_events_and_fills_the_new_columns(state_url: str) -> None:
    upgrade(state_url, "0001")
    _insert_legacy(state_url, 3)
    upgrade(state_url)
    assert current(state_url) == head()
    engine = make_engine(state_url)
    table = MaintenanceEventHook.__table__
    try:
        with engine.connect() as connection:
            found = connection.execute(sa.select(table).order_by(table.c.id)).mappings().all()
    finally:
        engine.dispose()
    assert [row["event_id"] for row in found] == [f"legacy:{row['id']}" for row in found]
    for row in found:
        assert row["received_at"] == row["created_at"] == row["next_attempt_at"]
        assert row["received_at"].tzinfo is not None
        assert row["entity_type"] is None and row["signature_scheme"] is None

    downgrade(state_url, "0001")
    engine = make_engine(state_url)
    try:
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns(table.name)}
            left = connection.execute(sa.text(f"SELECT count(*) FROM {table.name}")).scalar()
    finally:
        engine.dispose()
    assert "event_id" not in columns and "next_attempt_at" not in columns
    assert left == 3
    upgrade(state_url)
    assert current(state_url) == head()


def test_event_id_is_unique_per_source(state_url: str) -> None:
    upgrade(state_url)
    engine = make_engine(state_url)

    def add(source: str, event_id: str) -> None:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(MaintenanceEventHook.__table__).values(
                    cmms_system_id=source,
                    event_id=event_id,
                    event_type="work_order.updated",
                    event_payload={},
                    hmac_signature="v1,x",
                )
            )

    try:
        add("maximo", "evt-1")
        add("upkeep", "evt-1")
        with pytest.raises(sa.exc.IntegrityError):
            add("maximo", "evt-1")
        # NOT NULL: every row must be de-duplicable.
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO maintenance_event_hooks "
                    "(cmms_system_id, event_type, event_payload, hmac_signature) "
                    "VALUES ('maximo', 'x', '{}', 's')"
                )
            )
    finally:
        engine.dispose()


def test_due_events_query_uses_the_polling_index(state_url: str) -> None:
    upgrade(state_url)
    query = (
        "SELECT id FROM maintenance_event_hooks WHERE processing_status = 'pending' "
        "AND next_attempt_at <= CURRENT_TIMESTAMP ORDER BY next_attempt_at LIMIT 10"
    )
    record_query = (
        "SELECT id FROM maintenance_event_hooks WHERE cmms_system_id = 'maximo' "
        "AND entity_type = 'work_order' AND entity_external_id = 'BEDFORD:1001' "
        "ORDER BY occurred_at"
    )
    engine = make_engine(state_url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                plans = [
                    connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {q}").fetchall()
                    for q in (query, record_query)
                ]
            else:
                connection.exec_driver_sql("SET enable_seqscan = off")
                plans = [
                    connection.exec_driver_sql(f"EXPLAIN {q}").fetchall()
                    for q in (query, record_query)
                ]
    finally:
        engine.dispose()
    assert POLL_INDEX in str(plans[0])
    assert ENTITY_INDEX in str(plans[1])


def test_orm_defaults_set_receipt_and_first_attempt(state_url: str) -> None:
    upgrade(state_url)
    engine = make_engine(state_url)
    try:
        with sa.orm.Session(engine) as session:
            session.add(
                MaintenanceEventHook(
                    cmms_system_id="fiix",
                    event_id="evt-9",
                    event_type="asset.updated",
                    event_payload={"id": 9},
                    hmac_signature="sha256=ab",
                )
            )
            session.commit()
            row = session.scalars(sa.select(MaintenanceEventHook)).one()
            assert abs(row.received_at - datetime.now(UTC)) < timedelta(minutes=1)
            assert row.next_attempt_at.tzinfo is not None
    finally:
        engine.dispose()
