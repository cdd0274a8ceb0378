"""The gold KPI mart over canonical work orders.

Silver work orders and assets come from the declared mappings in ``defs/sample_cmms/``.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from integration_platform.lake import Layer
from integration_platform.marts.work_order_kpis import KPI_COLUMNS, work_order_kpis

SILVER_WORK_ORDERS = dg.AssetKey([Layer.SILVER, "work_orders"])
SILVER_ASSETS = dg.AssetKey([Layer.SILVER, "assets"])
QUARANTINE_WORK_ORDERS = dg.AssetKey([Layer.QUARANTINE, "work_orders"])
QUARANTINE_ASSETS = dg.AssetKey([Layer.QUARANTINE, "assets"])
GOLD_WORK_ORDER_KPIS = dg.AssetKey([Layer.GOLD, "work_order_kpis"])


@dg.asset(
    key=GOLD_WORK_ORDER_KPIS,
    ins={"work_orders": dg.AssetIn(key=SILVER_WORK_ORDERS)},
    group_name="kpis",
    kinds={"delta", "pandas"},
    description="Backlog by priority, MTTR and PM compliance per site and for the whole plant.",
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name=name, description=text) for name, text in KPI_COLUMNS.items()
            ]
        )
    },
)
def work_order_kpis_mart(
    context: dg.AssetExecutionContext, work_orders: pd.DataFrame
) -> pd.DataFrame:
    as_of = pd.Timestamp(datetime.now(UTC))
    kpis = work_order_kpis(work_orders, as_of=as_of)
    plant = kpis[kpis["site_id"] == "ALL"].iloc[0]
    context.add_output_metadata(
        {
            "backlog_open": int(plant["backlog_open"]),
            "backlog_overdue": int(plant["backlog_overdue"]),
            "mttr_hours": float(plant["mttr_hours"]),
            "pm_compliance_pct": float(plant["pm_compliance_pct"]),
            "kpis": dg.MetadataValue.md(kpis.drop(columns="as_of").to_markdown(index=False)),
        }
    )
    return kpis
