"""What ``integration-platform demo`` prints after the main job: figures and where to look."""

from __future__ import annotations

import dagster as dg

from integration_platform.lake import DeltaLake


def summarize(result: dg.ExecuteInProcessResult, lake_root: str) -> str:
    lake = DeltaLake(uri=lake_root)
    status = "succeeded" if result.success else "FAILED"
    lines = [f"maintenance_kpis_job {status} (run {result.run_id})", ""]
    for parts in (
        ["bronze", "sample_cmms", "work_orders"],
        ["silver", "work_orders"],
        ["quarantine", "work_orders"],
        ["silver", "assets"],
        ["quarantine", "assets"],
        ["gold", "work_order_kpis"],
    ):
        if lake.exists(parts):
            rows = len(lake.read(parts, columns=[]))
            lines.append(f"  {'/'.join(parts):34} {rows:>6} rows  {lake.table_uri(parts)}")
        else:
            lines.append(f"  {'/'.join(parts):34}  (not written)")
    if lake.exists(["quarantine", "work_orders"]):
        rejects = lake.read(["quarantine", "work_orders"])
        lines += ["", "Quarantined work orders by reason (first 5):"]
        for row in rejects.head(5).itertuples():
            lines.append(f"  {row.external_id} (line {row.source_line}): {row.reject_reason}")
    if lake.exists(["gold", "work_order_kpis"]):
        kpis = lake.read(["gold", "work_order_kpis"]).drop(columns="as_of")
        lines += ["", "Work-order KPIs:", kpis.to_string(index=False)]
    if not result.success:
        failed = [event.step_key for event in result.get_step_failure_events()]
        lines += ["", f"failed steps: {', '.join(str(step) for step in failed)}"]
    lines += [
        "",
        "Next: `make dev` opens the Dagster UI (http://127.0.0.1:3000) with this run, the",
        "lineage bronze -> silver -> gold, column metadata and the quarantine tables.",
    ]
    return "\n".join(lines)
