"""The webhook trigger of a sync: a run when inbox events for its entity and system arrive,
none again for the same events, and none for other entities or sources."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_platform.components import SyncComponent
from integration_platform.components.sync_resolve import SYNC_TAG
from integration_platform.components.sync_triggers import (
    COMMIT_LAG,
    InboxEvent,
    TriggerCursor,
    plan_trigger,
)
from integration_platform.state import MaintenanceEventHook, StateDatabase, dispose_engines
from integration_platform.webhooks.store import InboxEvent as StoredInboxEvent
from integration_platform.webhooks.store import store_event
from integration_platform_tests.test_sync_component import sync_declaration, write_declaration

SENSOR = "sync_wo_sync_webhook_sensor"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAXIMO_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MAXIMO_API_KEY", "key")
    monkeypatch.setenv("PLANT_DB_URL", "sqlite:///plant.db")


@pytest.fixture
def state(tmp_path: Path) -> StateDatabase:
    database = StateDatabase(url=f"sqlite:///{tmp_path / 'state.db'}")
    database.ensure_schema()
    yield database
    dispose_engines()


@pytest.fixture
def sensor(tmp_path: Path) -> dg.SensorDefinition:
    path = write_declaration(
        tmp_path, sync_declaration(triggers=[{"system": "maximo", "webhook_source": "mx"}])
    )
    defs = SyncComponent.from_yaml(path, defs_root=None).build_defs(None)
    (found,) = defs.sensors or []
    assert found.name == SENSOR
    return found


def receive(
    state: StateDatabase,
    event_id: str,
    *,
    source: str = "mx",
    entity: str = "work_order",
    received_at: datetime | None = None,
) -> None:
    """An event as the receiver stores it (committed now, stamped ``received_at``)."""
    store_event(
        state.engine(),
        StoredInboxEvent(
            source=source,
            event_id=event_id,
            event_type=f"{entity}.updated",
            entity_type=entity,
            entity_external_id="BEDFORD/1001",
            occurred_at=None,
            received_at=received_at or datetime.now(UTC),
            payload={"wonum": "1001"},
            signature="sig",
            signature_scheme="standard",
        ),
    )


def tick(
    sensor: dg.SensorDefinition, state: StateDatabase, cursor: str | None
) -> tuple[list[dg.RunRequest], str | None]:
    context = dg.build_sensor_context(cursor=cursor, resources={"state": state})
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return list(result.run_requests or []), result.cursor or cursor


def test_an_event_starts_one_run_and_the_same_events_start_none(
    sensor: dg.SensorDefinition, state: StateDatabase
) -> None:
    requests, cursor = tick(sensor, state, None)
    assert requests == []

    receive(state, "evt-1")
    requests, cursor = tick(sensor, state, cursor)
    (request,) = requests
    assert request.job_name in (None, "sync_wo_sync_job")
    assert request.tags[SYNC_TAG] == "wo_sync"
    assert request.tags["integration_platform/sync_events"] == "1"
    first_key = request.run_key

    # The same event again, also once processed: no new run.
    requests, cursor = tick(sensor, state, cursor)
    assert requests == []
    with state.engine().begin() as connection:
        table = MaintenanceEventHook.__table__
        connection.execute(sa.update(table).values(processing_status="processed"))
    requests, cursor = tick(sensor, state, cursor)
    assert requests == []

    # Events of another entity or another webhook source are not this sync's.
    receive(state, "evt-asset", entity="asset")
    receive(state, "evt-other", source="upkeep")
    requests, cursor = tick(sensor, state, cursor)
    assert requests == []

    # A new event for the entity: a new run, under a new key.
    receive(state, "evt-2")
    (request,) = tick(sensor, state, cursor)[0]
    assert request.run_key != first_key


def test_an_event_that_commits_late_still_starts_a_run(
    sensor: dg.SensorDefinition, state: StateDatabase
) -> None:
    """Ids and receipt times are handed out before commit: an event stamped before one already
    seen can commit after it. It must not be skipped by the cursor."""
    receive(state, "evt-late-neighbour")
    requests, cursor = tick(sensor, state, None)
    assert len(requests) == 1
    receive(state, "evt-late", received_at=datetime.now(UTC) - timedelta(seconds=20))
    requests, cursor = tick(sensor, state, cursor)
    assert len(requests) == 1
    assert tick(sensor, state, cursor)[0] == []


def test_the_cursor_forgets_events_behind_the_horizon() -> None:
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    old = InboxEvent(1, "mx", now - COMMIT_LAG - timedelta(seconds=1))
    recent = InboxEvent(2, "mx", now - timedelta(seconds=5))
    cursor = TriggerCursor(now - timedelta(minutes=5), frozenset())
    new, following = plan_trigger([recent, old], cursor, now)
    assert [e.id for e in new] == [2, 1]
    assert following.horizon == now - COMMIT_LAG
    assert following.seen == {2}  # id 1 is behind the horizon: never read again
    loaded = TriggerCursor.loads(following.dumps(), now)
    assert loaded == following and json.loads(following.dumps())["seen"] == [2]
    # A later tick sees only what is new.
    new, _ = plan_trigger([recent], loaded, now + timedelta(seconds=5))
    assert new == []


def test_a_run_still_queued_takes_the_new_events_along(
    sensor: dg.SensorDefinition, state: StateDatabase
) -> None:
    with dg.instance_for_test() as instance:
        instance.add_run(
            dg.DagsterRun(
                job_name="sync_wo_sync_job",
                run_id="queued-run",
                status=dg.DagsterRunStatus.NOT_STARTED,
            )
        )
        receive(state, "evt-1")
        context = dg.build_sensor_context(instance=instance, resources={"state": state})
        result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        assert not result.run_requests
        assert result.skip_reason and "queued run" in result.skip_reason.skip_message
        # The events are taken along by that run: they do not start another one later.
        context = dg.build_sensor_context(
            instance=instance, resources={"state": state}, cursor=result.cursor
        )
        instance.delete_run("queued-run")
        later = sensor(context)
        assert isinstance(later, dg.SensorResult) and not later.run_requests
