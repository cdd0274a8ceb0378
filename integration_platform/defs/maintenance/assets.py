"""Silver work orders and assets from the sample CMMS export, and the gold KPI mart.

Each silver asset maps bronze rows to the canonical model, validates them with pandera, and
writes the rows it cannot accept to the matching quarantine table with the reason. A blocking
check stops the gold layer when the share of rejected rows passes ``MAX_REJECT_RATIO``.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from integration_platform.lake import Layer
from integration_platform.lake.quarantine import QUARANTINE_COLUMNS, quarantine_records
from integration_platform.mapping.cmms_export import (
    ASSET_FIELDS,
    WORK_ORDER_FIELDS,
    MappedFrame,
    map_assets,
    map_work_orders,
)
from integration_platform.marts.work_order_kpis import KPI_COLUMNS, work_order_kpis
from integration_platform.model import Asset, WorkOrder
from integration_platform.model.validation import table_schema, validate_rows

SOURCE_SYSTEM = "sample_cmms"
MAX_REJECT_RATIO = 0.05
REJECT_RATIO_CHECK = "reject_ratio_within_limit"

BRONZE_SITES = dg.AssetKey([Layer.BRONZE, SOURCE_SYSTEM, "sites"])
SILVER_WORK_ORDERS = dg.AssetKey([Layer.SILVER, "work_orders"])
SILVER_ASSETS = dg.AssetKey([Layer.SILVER, "assets"])
QUARANTINE_WORK_ORDERS = dg.AssetKey([Layer.QUARANTINE, "work_orders"])
QUARANTINE_ASSETS = dg.AssetKey([Layer.QUARANTINE, "assets"])
GOLD_WORK_ORDER_KPIS = dg.AssetKey([Layer.GOLD, "work_order_kpis"])

Mapper = Callable[..., MappedFrame]
BRONZE_ROW = "_bronze_row"


def _described_schema(columns: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=name, description=text) for name, text in columns.items()]
    )


def mapping_table(fields: dict[str, tuple[list[str], str]]) -> str:
    """The mapping as markdown (target <- source, transform): the UI's mapping view."""
    lines = ["| target | source | transform |", "| --- | --- | --- |"]
    for target, (sources, transform) in fields.items():
        lines.append(f"| {target} | {', '.join(sources) or '-'} | {transform} |")
    return "\n".join(lines)


def column_lineage(
    fields: dict[str, tuple[list[str], str]], source: dg.AssetKey
) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            target: [dg.TableColumnDep(asset_key=source, column_name=column) for column in sources]
            for target, (sources, _) in fields.items()
            if sources
        }
    )


def build_silver_asset(
    *,
    entity: str,
    model: type[pa.DataFrameModel],
    mapper: Mapper,
    fields: dict[str, tuple[list[str], str]],
    key_column: str,
) -> dg.AssetsDefinition:
    """``silver/<entity>`` plus ``quarantine/<entity>`` from ``bronze/<system>/<entity>``."""
    bronze_key = dg.AssetKey([Layer.BRONZE, SOURCE_SYSTEM, entity])
    silver_key = dg.AssetKey([Layer.SILVER, entity])
    quarantine_key = dg.AssetKey([Layer.QUARANTINE, entity])

    @dg.multi_asset(
        name=f"silver_{entity}",
        group_name="canonical",
        ins={
            "bronze": dg.AssetIn(key=bronze_key),
            "sites": dg.AssetIn(key=BRONZE_SITES),
        },
        outs={
            "silver": dg.AssetOut(
                key=silver_key,
                description=f"Canonical {entity}, validated against {model.__name__}.",
                kinds={"delta", "pandas", "pandera"},
                metadata={
                    "dagster/column_schema": table_schema(model),
                    "dagster/column_lineage": column_lineage(fields, bronze_key),
                    "mapping": dg.MetadataValue.md(mapping_table(fields)),
                },
            ),
            "quarantine": dg.AssetOut(
                key=quarantine_key,
                description=f"{entity} rows that could not be accepted, with the reason.",
                kinds={"delta", "pandas"},
                metadata={"dagster/column_schema": _described_schema(QUARANTINE_COLUMNS)},
            ),
        },
        check_specs=[
            dg.AssetCheckSpec(
                REJECT_RATIO_CHECK,
                asset=silver_key,
                blocking=True,
                description=f"At most {MAX_REJECT_RATIO:.0%} of the input rows are rejected.",
            )
        ],
    )
    def silver_entity(
        context: dg.AssetExecutionContext, bronze: pd.DataFrame, sites: pd.DataFrame
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        mapped = mapper(bronze, sites, source_system=SOURCE_SYSTEM)
        candidates = mapped.mapped.assign(**{BRONZE_ROW: mapped.mapped.index})
        validation = validate_rows(candidates, model)
        failed_model = validation.rejected.set_index(BRONZE_ROW)[["reject_field", "reject_reason"]]
        rejects = pd.concat([mapped.rejected, failed_model]).sort_index()
        quarantine = quarantine_records(
            bronze,
            rejects,
            entity=entity,
            source_system=SOURCE_SYSTEM,
            key_column=key_column,
            run_id=context.run.run_id,
        )
        model_columns = list(model.to_schema().columns)
        valid = validation.valid[model_columns]
        considered = len(valid) + len(quarantine)
        ratio = len(quarantine) / considered if considered else 0.0
        context.log.info(
            f"{entity}: {len(bronze)} bronze rows, {considered} after de-duplication, "
            f"{len(valid)} valid, {len(quarantine)} quarantined ({ratio:.2%})"
        )
        yield dg.Output(
            valid,
            output_name="silver",
            metadata={
                "rows_valid": len(valid),
                "rows_rejected": len(quarantine),
                "rows_superseded": len(bronze) - considered,
            },
        )
        yield dg.Output(
            quarantine,
            output_name="quarantine",
            metadata={
                "rejects_by_field": dg.MetadataValue.json(
                    quarantine["reject_field"].value_counts().to_dict()
                ),
                "sample": dg.MetadataValue.md(
                    quarantine[["external_id", "source_line", "reject_reason"]]
                    .head(10)
                    .to_markdown(index=False)
                ),
            },
        )
        yield dg.AssetCheckResult(
            check_name=REJECT_RATIO_CHECK,
            asset_key=silver_key,
            passed=ratio <= MAX_REJECT_RATIO,
            metadata={
                "rows_valid": len(valid),
                "rows_rejected": len(quarantine),
                "reject_ratio": round(ratio, 4),
                "max_reject_ratio": MAX_REJECT_RATIO,
            },
        )

    return silver_entity


silver_work_orders = build_silver_asset(
    entity="work_orders",
    model=WorkOrder,
    mapper=map_work_orders,
    fields=WORK_ORDER_FIELDS,
    key_column="wonum",
)
silver_assets = build_silver_asset(
    entity="assets", model=Asset, mapper=map_assets, fields=ASSET_FIELDS, key_column="assetnum"
)


@dg.asset(
    key=GOLD_WORK_ORDER_KPIS,
    ins={"work_orders": dg.AssetIn(key=SILVER_WORK_ORDERS)},
    group_name="kpis",
    kinds={"delta", "pandas"},
    description="Backlog by priority, MTTR and PM compliance per site and for the whole plant.",
    metadata={"dagster/column_schema": _described_schema(KPI_COLUMNS)},
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
