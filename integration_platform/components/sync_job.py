"""The Dagster side of one declared sync: its job, its conflicts asset and its schedule.

``sync_<name>_job`` has one op that builds the two adapters from the connection resources,
runs :class:`SyncEngine` and reports the run's counts (read, changed, conflicts, decided by
policy or by a person, applied, rolled back, quarantined) as output metadata. Only a
transient cause asks Dagster to retry the step, with a growing delay: a retryable connector
error (timeout, 429, 5xx, connection refused) during the reads, another run of the same sync
holding its lock, or a run the engine rolled back because a write hit such an error (the
rollback left both systems as they were, so a retry is safe). A mapping, validation or
rejected write would fail the same way again, so it fails the step at once with the cause.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from integration_platform.components.sync_resolve import SYNC_TAG, ResolvedSync
from integration_platform.components.sync_status import audit_metadata, conflict_metadata

GROUP = "sync"
AUDIT_KEY = dg.AssetKey(["audit", "sync_changes"])
PLANNED_PREVIEW_ROWS = 50
COUNTS = (
    "records_read",
    "records_changed",
    "conflicts",
    "auto_resolved",
    "resolved_manually",
    "applied",
    "rolled_back",
    "quarantined",
)


class SyncRunConfig(dg.Config):
    """Run configuration of a sync job."""

    dry_run: bool | None = Field(
        default=None,
        description="Only plan and report, write nothing; unset: the declaration's dry_run.",
    )
    full: bool = Field(
        default=False,
        description="Read both systems in full, also when the sync reads incrementally "
        "(finds deletions and changes whose modified time went backwards).",
    )


def build_sync_job(sync: ResolvedSync) -> dg.JobDefinition:
    keys = {sync.left.resource_key, sync.right.resource_key, "state", "lake"}
    spec = sync.spec

    @dg.op(
        name=sync.op_name,
        out=dg.Out(dg.Nothing),
        required_resource_keys=keys,
        description=f"Sync {spec.entity} between {spec.left.system} and {spec.right.system} "
        f"({spec.direction}): read both, decide conflicts, apply as one unit, record the audit.",
    )
    def run_sync(context: dg.OpExecutionContext, config: SyncRunConfig) -> Iterator[Any]:
        yield from execute_sync(context, sync, config)

    @dg.job(
        name=sync.job_name,
        # One step: a process of its own would cost more than it isolates.
        executor_def=dg.in_process_executor,
        tags={SYNC_TAG: sync.name},
        description=sync.declaration.description
        or f"Keep {spec.entity} in step between {spec.left.system} and {spec.right.system}.",
    )
    def job() -> None:
        run_sync()

    return job


def execute_sync(
    context: dg.OpExecutionContext, sync: ResolvedSync, config: SyncRunConfig
) -> Iterator[Any]:
    import sqlalchemy as sa

    from integration_platform.connectors.errors import ConnectorError
    from integration_platform.sync import SyncBusy, SyncEngine

    dry_run = sync.declaration.dry_run if config.dry_run is None else config.dry_run
    resources = context.resources
    state, lake = resources.state, resources.lake
    left = sync.left.build_adapter(getattr(resources, sync.left.resource_key))
    right = sync.right.build_adapter(getattr(resources, sync.right.resource_key))
    engine = SyncEngine(sync.spec, left, right, state, lake=lake)
    try:
        report = engine.run(dry_run=dry_run, triggered_by=triggered_by(context), full=config.full)
    except SyncBusy as exc:
        context.log.warning(str(exc))
        raise _retry(context, sync, None) from exc
    except ConnectorError as exc:
        if exc.retryable:
            context.log.warning(f"sync {sync.name}: {exc}; retrying")
            raise _retry(context, sync, getattr(exc, "retry_after", None)) from exc
        raise dg.Failure(description=f"sync {sync.name}: {exc}") from exc
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:300]
        raise dg.Failure(
            description=f"sync {sync.name}: the state database cannot be used ({reason}); "
            "is it migrated? run `integration-platform db upgrade`"
        ) from exc
    metadata = report_metadata(report)
    context.log.info(report.summary())
    for problem in report.problems[:20]:
        context.log.warning(problem)
    if not report.ok:
        description = f"sync {sync.name} {report.status.replace('_', ' ')}: {report.cause}"
        if report.retryable:
            if context.retry_number < sync.declaration.retry.max_retries:
                context.log.warning(
                    f"{description}; retrying (the rollback left both as they were)"
                )
                raise _retry(context, sync, report.retry_after)
            description += f" (still failing after {context.retry_number} retries)"
        raise dg.Failure(description=description, metadata=metadata)
    if not report.dry_run:
        yield dg.AssetMaterialization(
            asset_key=sync.conflicts_key,
            description=f"conflict queue after run {report.run_id}",
            metadata=conflict_metadata(state, sync.name),
        )
        if report.counts.get("applied"):
            yield dg.AssetMaterialization(
                asset_key=AUDIT_KEY,
                description=f"{sync.name} run {report.run_id} appended its changes",
                metadata={"sync": sync.name, "sync_run_id": report.run_id}
                | audit_metadata(state, lake),
            )
    yield dg.Output(None, metadata=metadata)


def report_metadata(report: Any) -> dict[str, Any]:
    """A run's counts and outcome as metadata (the planned writes too, for a dry run)."""
    metadata: dict[str, Any] = {name: int(report.counts.get(name, 0)) for name in COUNTS}
    metadata |= {
        "status": report.status,
        "sync_run_id": report.run_id,
        "dry_run": report.dry_run,
        "planned_writes": len(report.planned),
        "auto_resolved_pct": round(float(report.auto_resolved_pct), 2),
        "read_mode": report.read_mode,
    }
    metadata["resolved"] = metadata["auto_resolved"] + metadata["resolved_manually"]
    if report.cause:
        metadata["cause"] = report.cause
        metadata["cause_type"] = report.cause_type or ""
        metadata["cause_retryable"] = report.retryable
    if report.problems:
        metadata["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in report.problems))
    if report.dry_run and len(report.planned):
        preview = report.planned.head(PLANNED_PREVIEW_ROWS).astype(str)
        metadata["planned"] = dg.MetadataValue.md(preview.to_markdown(index=False))
    return metadata


def triggered_by(context: dg.OpExecutionContext) -> str:
    """``dagster <run id>`` and the schedule or sensor that started it, if any."""
    tags = context.run.tags
    origin = tags.get("dagster/schedule_name") or tags.get("dagster/sensor_name")
    return f"dagster {context.run_id}" + (f" ({origin})" if origin else "")


def _retry(context: dg.OpExecutionContext, sync: ResolvedSync, after: float | None) -> Exception:
    policy = sync.declaration.retry
    delay = policy.delay_seconds * 2 ** max(0, context.retry_number)
    return dg.RetryRequested(
        max_retries=policy.max_retries, seconds_to_wait=max(delay, float(after or 0.0))
    )


def build_conflicts_asset(sync: ResolvedSync) -> dg.AssetsDefinition:
    """``sync/<name>/conflicts``: the sync's conflict queue, refreshed by every run."""

    @dg.asset(
        key=sync.conflicts_key,
        group_name=GROUP,
        kinds={"sql"},
        required_resource_keys={"state"},
        description=f"Conflicts of sync {sync.name} waiting for a person (open), decided and "
        "waiting for the next run (resolved), applied. Work them with `integration-platform "
        "conflicts list|show|resolve`.",
        metadata={"sync": sync.name, "declared_in": dg.MetadataValue.path(sync.where)},
    )
    def conflicts(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=conflict_metadata(context.resources.state, sync.name))

    return conflicts


def build_schedule(sync: ResolvedSync, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    declaration = sync.declaration
    assert declaration.schedule is not None
    return dg.ScheduleDefinition(
        name=sync.schedule_name,
        job=job,
        cron_schedule=declaration.schedule,
        execution_timezone=declaration.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Run sync {sync.name} on '{declaration.schedule}' "
        f"({declaration.schedule_timezone}).",
    )
