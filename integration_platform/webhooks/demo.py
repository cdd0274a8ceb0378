"""The webhook part of ``make demo``: one signed Maximo status change, received and processed.

It starts the real receiver on a free loopback port, sends the sample message that
``webhooks test-send`` sends (signed with a one-off secret), runs ``maintenance_events_job``
once in-process and reports what became of the event and of the silver record.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from integration_platform.settings import environment

DEMO_SOURCE = "sample_cmms"
"""Named like the sample export's system, so the event's ids match the rows the demo's batch
mapping wrote (``sample_cmms:<site>:<wonum>``); its messages are in Maximo's format."""


def _open_work_order(lake_root: str) -> dict[str, Any] | None:
    """An open work order of the sample export in silver, if the main job wrote one."""
    from integration_platform.lake import DeltaLake

    lake = DeltaLake(uri=lake_root)
    if not lake.exists(["silver", "work_orders"]):
        return None
    rows = lake.read(["silver", "work_orders"])
    rows = rows[
        (rows["source_system"] == DEMO_SOURCE)
        & rows["status"].isin(["scheduled", "in_progress", "on_hold"])
        & rows["started_at"].isna()
    ].sort_values("work_order_id")
    return None if rows.empty else rows.iloc[0].to_dict()


def run_webhook_demo(instance: dg.DagsterInstance, lake_root: str, state_url: str) -> str:
    """Receive one signed work-order status change and process it; a short summary."""
    import sqlalchemy as sa

    from integration_platform.defs.webhooks.jobs import PROCESS_OP, maintenance_events_job
    from integration_platform.lake import DeltaLake
    from integration_platform.state import MaintenanceEventHook, StateDatabase, upgrade
    from integration_platform.state.engine import make_engine
    from integration_platform.webhooks.app import create_app
    from integration_platform.webhooks.cli import send_test_event
    from integration_platform.webhooks.sources import WebhookSources
    from integration_platform.webhooks.testing import running_server

    upgrade(state_url)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    env = {
        "WEBHOOK_SOURCES": DEMO_SOURCE,
        f"WEBHOOK_{DEMO_SOURCE.upper()}_SECRETS": secret,
        f"WEBHOOK_{DEMO_SOURCE.upper()}_FORMAT": "maximo",
    }
    existing = _open_work_order(lake_root)
    now = datetime.now(UTC).isoformat()
    if existing is not None:
        entity_id = str(existing["external_id"])
        # A status message for a record silver holds: only what changed, as Maximo sends it.
        record: dict[str, Any] = {
            "siteid": existing["site_id"],
            "assetnum": existing["asset_external_id"],
            "description": existing["title"],
            "worktype": None,
            "wopriority": None,
            "reportdate": None,
            "actstart": None,
            "changedate": now,
        }
        before = existing["status"]
    else:
        entity_id, record, before = "WO-DEMO-1", {"changedate": now}, "(new record)"
    engine = make_engine(state_url)
    try:
        with environment(env):
            app = create_app(sources=WebhookSources.from_env(), engine=engine)
            with running_server(app) as url:
                sent = send_test_event(
                    DEMO_SOURCE,
                    url,
                    event_type="work_order.status_changed",
                    entity_id=entity_id,
                    record=record,
                )
        if not sent.ok:
            return f"webhook demo: the receiver answered {sent.status}: {sent.text}"
        event_id = json.loads(sent.text)["event_id"]
        result = maintenance_events_job.execute_in_process(
            run_config={
                "ops": {
                    PROCESS_OP: {"config": {"source": DEMO_SOURCE, "entity_type": "work_order"}}
                },
                # Step progress only; every event is in the Dagster UI.
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
            resources={"state": StateDatabase(url=state_url), "lake": DeltaLake(uri=lake_root)},
            instance=instance,
            raise_on_error=False,
        )
        table = MaintenanceEventHook.__table__
        with engine.connect() as connection:
            status, error = connection.execute(
                sa.select(table.c.processing_status, table.c.error_message).where(
                    table.c.cmms_system_id == DEMO_SOURCE, table.c.event_id == event_id
                )
            ).one()
    finally:
        engine.dispose()
    lake = DeltaLake(uri=lake_root)
    rows = lake.read(["silver", "work_orders"]) if lake.exists(["silver", "work_orders"]) else None
    lines = [
        f"webhook: POST {sent.url} -> {sent.status} (event {event_id})",
        f"maintenance_events_job {'succeeded' if result.success else 'FAILED'} "
        f"(run {result.run_id}); event status: {status}" + (f" ({error})" if error else ""),
    ]
    if rows is not None:
        match = rows[rows["external_id"] == entity_id]
        if not match.empty:
            row = match.iloc[0]
            lines.append(
                f"silver/work_orders {row['work_order_id']}: status {before} -> {row['status']}"
                f" (updated_at {row['updated_at']})"
            )
    return "\n".join(lines)
