"""``maintenance_events_job``: apply due webhook events of one source and entity type.

The sensor launches one run per source and entity type with the window it saw; the run claims
the due events up to that window (batch after batch), applies them to silver and records each
outcome. Failures of one event are the event's own retries (``retry_count``, backoff, dead
letter); failures of the database or the lake fail the step, whose RetryPolicy tries again —
the events stay claimed by the run and are resumed, not claimed twice.
"""

from collections.abc import Iterator
from datetime import datetime

import dagster as dg
from pydantic import Field

from integration_platform.defs.webhooks.assets import (
    GOLD_WEBHOOK_STATUS,
    SILVER_MAINTENANCE_EVENTS,
)
from integration_platform.lake import DeltaLake
from integration_platform.state import StateDatabase

MAINTENANCE_EVENTS_JOB = "maintenance_events_job"
WEBHOOK_STATUS_JOB = "webhook_status_job"
PROCESS_OP = "process_maintenance_events"
# One writer per lake table (deploy/dagster.yaml): every processing run appends to
# silver/maintenance_events, so all of them share this value and run one at a time.
LAKE_WRITER_TAG = "integration_platform/lake_writer"
LAKE_WRITER = "/".join(SILVER_MAINTENANCE_EVENTS.path)
GROUP_TAG = "integration_platform/webhook_group"


class ProcessingConfig(dg.Config):
    """Which events a run processes and how failed ones are retried."""

    source: str = Field(description="Webhook source (cmms_system_id) whose events to process.")
    entity_type: str = Field(description="work_order, asset or maintenance_schedule.")
    up_to: str | None = Field(
        default=None,
        description="ISO time: claim events due at or before it (the sensor's window); "
        "unset: everything due now.",
    )
    batch_size: int = Field(default=500, ge=1, le=10_000)
    time_budget_seconds: float = Field(
        default=120.0, description="Stop claiming new batches after this long."
    )
    max_attempts: int = Field(default=5, ge=1, description="Attempts before dead_letter.")
    base_delay_seconds: float = Field(default=10.0, description="Backoff after the 1st failure.")
    max_delay_seconds: float = Field(default=3600.0, description="Longest backoff.")
    lease_seconds: float = Field(
        default=300.0, description="How long a claim holds before another run may take it."
    )


@dg.op(
    name=PROCESS_OP,
    out={},
    description="Claim due webhook events, apply them to silver, record each outcome.",
    # Infrastructure failures (database or object store briefly unavailable, a Delta commit
    # conflict): try the step again; its claims are resumed.
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL
    ),
    tags={"kind": "delta"},
)
def process_maintenance_events(
    context: dg.OpExecutionContext,
    config: ProcessingConfig,
    state: StateDatabase,
    lake: DeltaLake,
) -> Iterator[dg.AssetMaterialization]:
    from integration_platform.webhooks.inbox import RetryPolicy
    from integration_platform.webhooks.processing import process_due

    policy = RetryPolicy(
        max_attempts=config.max_attempts,
        base_delay_seconds=config.base_delay_seconds,
        max_delay_seconds=config.max_delay_seconds,
        lease_seconds=config.lease_seconds,
    )
    report = process_due(
        state.engine(),
        lake,
        token=context.run_id,
        source=config.source,
        entity_type=config.entity_type,
        up_to=datetime.fromisoformat(config.up_to) if config.up_to else None,
        policy=policy,
        batch_size=config.batch_size,
        time_budget_seconds=config.time_budget_seconds,
    )
    context.log.info(f"{config.source}/{config.entity_type}: {report.summary()}")
    for error in sorted(set(report.errors))[:10]:
        context.log.warning(f"event failed: {error}")
    for table, version in sorted(report.versions.items()):
        yield dg.AssetMaterialization(
            asset_key=dg.AssetKey(table.split("/")),
            description=f"webhook events of {config.source}/{config.entity_type}",
            metadata={"delta/version": version, "webhook/events_processed": report.processed},
        )
    if report.lost_claims:
        context.log.warning(
            f"{report.lost_claims} outcome(s) not recorded: the lease passed and another run "
            "took the events over (raise lease_seconds if batches take this long)"
        )


@dg.job(
    name=MAINTENANCE_EVENTS_JOB,
    # In-process: one step; a process per step would cost more than the batch.
    executor_def=dg.in_process_executor,
    tags={LAKE_WRITER_TAG: LAKE_WRITER},
    description="Apply due webhook events of one source and entity type to the silver tables.",
)
def maintenance_events_job() -> None:
    process_maintenance_events()


webhook_status_job = dg.define_asset_job(
    WEBHOOK_STATUS_JOB,
    selection=dg.AssetSelection.assets(GOLD_WEBHOOK_STATUS),
    executor_def=dg.in_process_executor,
    description="Refresh the webhook inbox status and check it.",
)
