"""Maintenance KPIs per site: backlog by priority, MTTR and PM compliance.

Definitions (stated once, here, so the numbers can be argued about):
- backlog: work orders not completed or cancelled; overdue when ``due_at`` is before ``as_of``;
- MTTR: mean hours from ``started_at`` to ``completed_at`` of completed corrective and emergency
  work (repair time; waiting before the start is backlog, not repair);
- PM compliance: of preventive work orders due on or before ``as_of``, the share completed by
  their due date.
"""

from __future__ import annotations

import pandas as pd

PRIORITIES = ("critical", "high", "medium", "low")
OPEN_STATUSES = ("scheduled", "in_progress", "on_hold", "overdue")
REPAIR_TYPES = ("corrective", "emergency")
ALL_SITES = "ALL"

KPI_COLUMNS: dict[str, str] = {
    "site_id": "Site, or ALL for the whole plant",
    "work_orders": "Work orders in silver for the site",
    "backlog_open": "Open work orders (scheduled, in progress, on hold, overdue)",
    **{f"backlog_{p}": f"Open work orders of priority {p}" for p in PRIORITIES},
    "backlog_overdue": "Open work orders past their due date",
    "mttr_hours": "Mean time to repair, hours (completed corrective and emergency work)",
    "repairs_completed": "Completed corrective and emergency work orders behind MTTR",
    "pm_due": "Preventive work orders due by as_of",
    "pm_completed_on_time": "Of those, completed by their due date",
    "pm_compliance_pct": "pm_completed_on_time / pm_due, percent",
    "as_of": "Instant the KPIs were computed for (UTC)",
}


def work_order_kpis(work_orders: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per site plus an ALL row, with the columns of ``KPI_COLUMNS``."""
    frame = work_orders.assign(site_id=work_orders["site_id"].astype(str))
    rows = [_site_kpis(site, group, as_of) for site, group in frame.groupby("site_id", sort=True)]
    rows.append(_site_kpis(ALL_SITES, frame, as_of))
    result = pd.DataFrame(rows, columns=list(KPI_COLUMNS))
    return result.astype({"mttr_hours": "float64", "pm_compliance_pct": "float64"})


def _site_kpis(site: str, frame: pd.DataFrame, as_of: pd.Timestamp) -> dict[str, object]:
    status = frame["status"].astype(str)
    is_open = status.isin(OPEN_STATUSES)
    overdue = is_open & (frame["due_at"] < as_of)
    repairs = frame[
        (status == "completed")
        & frame["work_type"].astype(str).isin(REPAIR_TYPES)
        & frame["started_at"].notna()
        & frame["completed_at"].notna()
    ]
    repair_hours = (repairs["completed_at"] - repairs["started_at"]).dt.total_seconds() / 3600
    preventive = frame[(frame["work_type"].astype(str) == "preventive") & (status != "cancelled")]
    pm_due = preventive[preventive["due_at"] <= as_of]
    on_time = pm_due["completed_at"].notna() & (pm_due["completed_at"] <= pm_due["due_at"])
    priority = frame.loc[is_open, "priority"].astype(str)
    return {
        "site_id": site,
        "work_orders": len(frame),
        "backlog_open": int(is_open.sum()),
        **{f"backlog_{p}": int((priority == p).sum()) for p in PRIORITIES},
        "backlog_overdue": int(overdue.sum()),
        "mttr_hours": round(float(repair_hours.mean()), 2) if len(repairs) else float("nan"),
        "repairs_completed": len(repairs),
        "pm_due": len(pm_due),
        "pm_completed_on_time": int(on_time.sum()),
        "pm_compliance_pct": round(100 * float(on_time.mean()), 1) if len(pm_due) else float("nan"),
        "as_of": as_of,
    }
