"""Dagster IO manager that stores pandas frames as Delta tables named by their asset keys.

dagster-deltalake-pandas maps a key to ``<schema>/<table>`` from its last two parts only, so
``bronze/maximo/work_orders`` and ``silver/work_orders`` would not land where their keys say;
this one keeps the whole key as the table path and records run and row counts on each commit.

Asset definition metadata it honours:
- ``delta/partition_by``: list of partition columns (e.g. ``["date"]``);
- ``delta/write_mode``: ``overwrite`` (default) or ``append``.
For a partitioned asset, only the rows of the run's partition are replaced.
"""

import dagster as dg
import pandas as pd

from integration_platform.lake.resource import DeltaLake

PARTITION_BY_KEY = "delta/partition_by"
WRITE_MODE_KEY = "delta/write_mode"


class DeltaIOManager(dg.ConfigurableIOManager):
    """Stores each asset at ``<lake root>/<asset key path>``."""

    lake: dg.ResourceDependency[DeltaLake]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"asset {context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the Delta IO manager stores pandas DataFrames only"
            )
        definition = context.definition_metadata or {}
        partition_by = definition.get(PARTITION_BY_KEY)
        mode = definition.get(WRITE_MODE_KEY, "overwrite")
        predicate = None
        if context.has_asset_partitions and partition_by:
            column = partition_by[0]
            keys = context.asset_partition_keys
            quoted = ", ".join("'" + key.replace("'", "''") + "'" for key in keys)
            predicate = f"{column} IN ({quoted})"
            mode = "overwrite"
        parts = context.asset_key.path
        version = self.lake.write(
            obj,
            parts,
            mode=mode,
            partition_by=partition_by,
            predicate=predicate,
            commit_metadata={"dagster_run_id": context.run_id or "", "rows": str(len(obj))},
        )
        context.add_output_metadata(
            {
                "dagster/row_count": len(obj),
                "delta/table_uri": dg.MetadataValue.path(self.lake.table_uri(parts)),
                "delta/version": version,
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        parts = context.asset_key.path
        if not self.lake.exists(parts):
            raise FileNotFoundError(
                f"no Delta table for {context.asset_key.to_user_string()} at "
                f"{self.lake.table_uri(parts)}; materialize that asset first"
            )
        frame = self.lake.read(parts)
        if context.has_asset_partitions:
            definition = context.upstream_output.definition_metadata or {}
            partition_by = definition.get(PARTITION_BY_KEY)
            if partition_by:
                keys = set(context.asset_partition_keys)
                frame = frame[frame[partition_by[0]].astype(str).isin(keys)]
        return frame.reset_index(drop=True)
