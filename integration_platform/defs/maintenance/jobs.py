"""The main job: sample CMMS export -> bronze -> silver (+ quarantine) -> gold KPIs."""

import dagster as dg

from integration_platform.defs.maintenance.assets import (
    GOLD_WORK_ORDER_KPIS,
    QUARANTINE_ASSETS,
    QUARANTINE_WORK_ORDERS,
    SILVER_ASSETS,
)

MAINTENANCE_KPIS_JOB = "maintenance_kpis_job"

# In-process: on two cores a process per step costs more than the steps themselves.
maintenance_kpis_job = dg.define_asset_job(
    MAINTENANCE_KPIS_JOB,
    selection=dg.AssetSelection.assets(
        GOLD_WORK_ORDER_KPIS, SILVER_ASSETS, QUARANTINE_WORK_ORDERS, QUARANTINE_ASSETS
    ).upstream(),
    executor_def=dg.in_process_executor,
    description="Refresh the CMMS extract, the canonical tables and the maintenance KPIs.",
)
