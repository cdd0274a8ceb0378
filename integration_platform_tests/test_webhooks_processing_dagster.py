"""The webhook processing as Dagster runs it: sensor, job, status asset and check, end to end.

The sensor is evaluated with ``build_sensor_context`` (run requests, run keys, cursor); run-key
de-duplication itself is the daemon's, so here the keys are asserted to be stable for one
window and new for the next. The job runs with ``execute_in_process`` against a temporary lake
and a migrated state database; the end-to-end test goes through the real receiver over HTTP.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_platform.defs.webhooks import sensors
from integration_platform.defs.webhooks.assets import webhook_status
from integration_platform.defs.webhooks.checks import webhook_inbox_healthy
from integration_platform.defs.webhooks.jobs import (
    LAKE_WRITER,
    LAKE_WRITER_TAG,
    PROCESS_OP,
    maintenance_events_job,
)
from integration_platform.defs.webhooks.sensors import maintenance_events_pending_sensor
from integration_platform.lake import DeltaIOManager, DeltaLake
from integration_platform.state import MaintenanceEventHook, StateDatabase, make_engine, upgrade
from integration_platform.webhooks.app import create_app
from integration_platform.webhooks.cli import send_test_event
from integration_platform.webhooks.sources import WebhookSources
from integration_platform.webhooks.testing import running_server
from integration_platform_tests.test_webhooks_processing import T0, maximo, put

T = MaintenanceEventHook.__table__
SECRET = "whsec_" + base64.b64encode(b"processing-test-secret-0123").decode()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    return url


@pytest.fixture
def engine(state_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(state_url)
    yield engine
    engine.dispose()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def resources(state_url: str, data_dir: Path) -> dict[str, Any]:
    lake = DeltaLake(uri=str(data_dir / "lake"))
    return {
        "state": StateDatabase(url=state_url),
        "lake": lake,
        "io_manager": DeltaIOManager(lake=lake),
    }


def tick(
    instance: dg.DagsterInstance, state_url: str, cursor: str | None = None
) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"state": StateDatabase(url=state_url)}
    )
    return maintenance_events_pending_sensor(context)


def test_sensor_requests_one_run_per_group_and_keeps_keys_stable(
    engine: sa.Engine, state_url: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(tick(instance, state_url), dg.SkipReason)
    for number in range(30):
        put(engine, maximo(str(number), "WAPPR", T0))
    put(engine, {"assetnum": "P-1", "siteid": "BEDFORD", "changedate": T0.isoformat()})
    first = tick(instance, state_url)
    assert isinstance(first, dg.SensorResult)
    keys = sorted(request.run_key for request in first.run_requests)
    assert len(keys) == 2  # 31 events, two groups, two runs
    assert keys[0].startswith("maximo/asset@") and keys[1].startswith("maximo/work_order@")
    request = next(r for r in first.run_requests if "work_order" in r.run_key)
    config = request.run_config["ops"][PROCESS_OP]["config"]
    assert (config["source"], config["entity_type"]) == ("maximo", "work_order")
    assert request.run_key.endswith(config["up_to"])
    cursor = json.loads(first.cursor)
    assert set(cursor) == {"maximo/asset", "maximo/work_order"}

    # Same events, run not started yet: nothing new is requested.
    second = tick(instance, state_url, first.cursor)
    assert isinstance(second, dg.SensorResult) and not second.run_requests
    # A new event widens the window of its group only.
    put(engine, maximo("new", "WAPPR", T0))
    third = tick(instance, state_url, second.cursor)
    assert [r.run_key.split("@")[0] for r in third.run_requests] == ["maximo/work_order"]
    assert third.run_requests[0].run_key not in keys
    # Still due long after the request (the run failed before claiming): asked again.
    monkeypatch.setattr(sensors, "REREQUEST_AFTER", timedelta(0))
    fourth = tick(instance, state_url, third.cursor)
    again = {r.run_key for r in fourth.run_requests}
    assert any(key.endswith("#1") for key in again)


def test_job_applies_the_events_and_reports_materializations(
    engine: sa.Engine, state_url: str, data_dir: Path, instance: dg.DagsterInstance
) -> None:
    put(engine, maximo("1001", "INPRG", T0), event_id="a")
    put(engine, maximo("1001", "COMP", T0 + timedelta(hours=2)), event_id="b")
    request = tick(instance, state_url).run_requests[0]
    result = maintenance_events_job.execute_in_process(
        run_config=request.run_config,
        resources=resources(state_url, data_dir),
        instance=instance,
        tags=request.tags,
    )
    assert result.success
    assert maintenance_events_job.tags[LAKE_WRITER_TAG] == LAKE_WRITER
    materialized = {
        event.asset_key.to_user_string()
        for event in result.get_asset_materialization_events()
        if event.asset_key
    }
    assert materialized == {"silver/work_orders", "silver/maintenance_events"}
    lake = DeltaLake(uri=str(data_dir / "lake"))
    row = lake.read(["silver", "work_orders"]).iloc[0]
    assert row["status"] == "completed"
    with engine.connect() as connection:
        assert set(connection.execute(sa.select(T.c.processing_status)).scalars()) == {"processed"}
    # The next tick finds nothing due.
    assert isinstance(tick(instance, state_url), dg.SkipReason)


def test_status_asset_counts_and_check_flags_dead_letters(
    engine: sa.Engine, state_url: str, data_dir: Path, instance: dg.DagsterInstance
) -> None:
    put(engine, maximo("1", "WAPPR", T0), event_id="fine")
    put(engine, maximo("2", "WAPPR", T0), event_id="bad")
    with engine.begin() as connection:
        connection.execute(
            sa.update(T).where(T.c.event_id == "bad").values(processing_status="dead_letter")
        )
    result = dg.materialize(
        [webhook_status, webhook_inbox_healthy],
        resources=resources(state_url, data_dir),
        instance=instance,
    )
    assert result.success
    table = DeltaLake(uri=str(data_dir / "lake")).read(["gold", "webhook_status"])
    assert dict(zip(table["processing_status"], table["events"], strict=True)) == {
        "dead_letter": 1,
        "pending": 1,
    }
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and "1 dead letter" in (check.description or "")


@pytest.mark.postgres
def test_end_to_end_receiver_sensor_job_silver(
    postgres_url: str,
    data_dir: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upgrade(postgres_url)
    monkeypatch.setenv("WEBHOOK_SOURCES", "maximo")
    monkeypatch.setenv("WEBHOOK_MAXIMO_SECRETS", SECRET)
    engine = make_engine(postgres_url)
    try:
        app = create_app(sources=WebhookSources.from_env(), engine=engine)
        with running_server(app) as url:
            created = send_test_event(
                "maximo", url, event_type="work_order.created", entity_id="WO-9"
            )
            changed = send_test_event(
                "maximo",
                url,
                entity_id="WO-9",
                record={"changedate": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()},
            )
        assert created.status == changed.status == 202, (created.text, changed.text)
        request = tick(instance, postgres_url).run_requests[0]
        result = maintenance_events_job.execute_in_process(
            run_config=request.run_config,
            resources=resources(postgres_url, data_dir),
            instance=instance,
        )
        assert result.success
        row = DeltaLake(uri=str(data_dir / "lake")).read(["silver", "work_orders"]).iloc[0]
        assert (row["work_order_id"], row["status"]) == ("maximo:BEDFORD:WO-9", "completed")
        event_id = json.loads(changed.text)["event_id"]
        events = DeltaLake(uri=str(data_dir / "lake")).read(["silver", "maintenance_events"])
        assert event_id in set(events["event_id"])
    finally:
        engine.dispose()


def test_demo_receives_and_processes_one_status_change(
    data_dir: Path, instance: dg.DagsterInstance
) -> None:
    from integration_platform.webhooks.demo import run_webhook_demo

    summary = run_webhook_demo(instance, str(data_dir / "lake"), f"sqlite:///{data_dir / 'd.db'}")
    assert "-> 202" in summary and "event status: processed" in summary, summary
    assert "sample_cmms:BEDFORD:WO-DEMO-1: status (new record) -> completed" in summary
