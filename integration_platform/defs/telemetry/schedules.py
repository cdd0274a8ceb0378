"""When the telemetry jobs run on their own."""

import dagster as dg

from integration_platform.defs.telemetry.jobs import telemetry_health_job, telemetry_maintenance_job

# Nightly, after the day's last micro-batches; compaction of yesterday's files is final then.
telemetry_maintenance_job_schedule = dg.ScheduleDefinition(
    job=telemetry_maintenance_job,
    cron_schedule="15 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

telemetry_health_job_schedule = dg.ScheduleDefinition(
    job=telemetry_health_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
