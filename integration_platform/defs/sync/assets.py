"""``audit/sync_changes``: the audit trail every sync appends to.

The Delta table is written by the sync jobs (the engine appends each applied change: run,
record, field, old and new value, source and target system, strategy, who resolved), so it is
declared here as an asset spec whose materializations those jobs report, each with the
applied changes per strategy and the automatic conflict resolution rate over all syncs.
Delta time travel on the table gives the trail as it stood at any earlier moment.
"""

import dagster as dg

from integration_platform.components.sync_job import AUDIT_KEY, GROUP

sync_changes = dg.AssetSpec(
    key=AUDIT_KEY,
    group_name=GROUP,
    kinds={"delta"},
    description="Every change a sync applied (who changed what, from which system, by which "
    "strategy, decided by whom), appended by the sync jobs. Materializations carry "
    "changes_by_strategy and auto_resolution_rate_pct.",
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn("run_id", description="Sync run (state DB sync_runs.run_id)"),
                dg.TableColumn("sync_name", description="Declared sync"),
                dg.TableColumn("entity", description="work_order, asset or maintenance_schedule"),
                dg.TableColumn("platform_id", description="The record's id across systems"),
                dg.TableColumn("external_id", description="The record's id in the target"),
                dg.TableColumn("operation", description="create or update"),
                dg.TableColumn("field", description="Canonical field changed"),
                dg.TableColumn("old_value", description="Value before (JSON)"),
                dg.TableColumn("new_value", description="Value written (JSON)"),
                dg.TableColumn("source_system", description="Where the value came from"),
                dg.TableColumn("target_system", description="Where it was written"),
                dg.TableColumn("strategy", description="How the value was chosen"),
                dg.TableColumn("resolved_by", description="Person or policy that decided"),
                dg.TableColumn("reason", description="Why"),
                dg.TableColumn("conflict_id", description="The conflict decided, if any"),
                dg.TableColumn("applied_at", description="When it was written (UTC)"),
            ]
        )
    },
)
