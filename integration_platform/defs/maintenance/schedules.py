"""When the main job runs on its own: every morning before the maintenance meeting."""

import dagster as dg

from integration_platform.defs.maintenance.jobs import maintenance_kpis_job

maintenance_kpis_job_schedule = dg.ScheduleDefinition(
    job=maintenance_kpis_job,
    cron_schedule="30 5 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
