"""Tables the webhook processing writes or reports: canonical events and the inbox status.

``silver/maintenance_events`` is written by ``maintenance_events_job`` (a Delta MERGE per batch,
de-duplicated on source and event id), so it is declared here as an asset spec whose
materializations the job reports. ``gold/webhook_status`` is a small table for people and
dashboards: events by source and status, the oldest waiting event, the dead letters.
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from integration_platform.lake import Layer
from integration_platform.state import StateDatabase

SILVER_MAINTENANCE_EVENTS = dg.AssetKey([Layer.SILVER, "maintenance_events"])
GOLD_WEBHOOK_STATUS = dg.AssetKey([Layer.GOLD, "webhook_status"])
WEBHOOKS_GROUP = "webhooks"

STATUS_COLUMNS: dict[str, str] = {
    "source_system": "Webhook source (the configured sender name)",
    "processing_status": "pending, processing, processed, failed or dead_letter",
    "events": "Number of events in that status",
    "oldest_open_received_at": "Receipt of the oldest event still to process (all sources)",
    "as_of": "When the counts were taken (UTC)",
}

silver_maintenance_events = dg.AssetSpec(
    key=SILVER_MAINTENANCE_EVENTS,
    group_name=WEBHOOKS_GROUP,
    kinds={"delta"},
    description=(
        "Every processed webhook event as a canonical MaintenanceEvent row, one per source and "
        "event id; written by maintenance_events_job."
    ),
)


@dg.asset(
    key=GOLD_WEBHOOK_STATUS,
    group_name=WEBHOOKS_GROUP,
    kinds={"delta", "pandas"},
    description="Webhook events by source and processing status, oldest waiting event, dead "
    "letters: is processing keeping up?",
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=n, description=d) for n, d in STATUS_COLUMNS.items()]
        )
    },
)
def webhook_status(context: dg.AssetExecutionContext, state: StateDatabase) -> Any:
    import pandas as pd

    from integration_platform.webhooks.inbox import inbox_status

    status = inbox_status(state.engine(), now=datetime.now(UTC))
    rows = [
        {
            "source_system": source,
            "processing_status": name,
            "events": count,
            "oldest_open_received_at": status.oldest_pending_at,
            "as_of": status.as_of,
        }
        for (source, name), count in sorted(status.counts.items())
    ]
    frame = pd.DataFrame(rows, columns=list(STATUS_COLUMNS)).astype({"events": "int64"})
    for column in ("oldest_open_received_at", "as_of"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    context.add_output_metadata(
        {
            "dead_letters": status.dead_letters,
            "oldest_open_age_seconds": round(status.oldest_pending_age_seconds, 1),
            "open_events": sum(
                n for (_, s), n in status.counts.items() if s in ("pending", "processing", "failed")
            ),
        }
    )
    return frame
