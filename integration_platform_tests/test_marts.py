import math

import pandas as pd

from integration_platform.marts.work_order_kpis import work_order_kpis

AS_OF = pd.Timestamp("2026-06-30T00:00:00Z")


def ts(value: str | None) -> pd.Timestamp:
    return pd.Timestamp(value) if value else pd.NaT


def work_orders(rows: list[tuple]) -> pd.DataFrame:
    columns = ["site_id", "work_type", "priority", "status", "due_at", "started_at", "completed_at"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("due_at", "started_at", "completed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def test_backlog_mttr_and_pm_compliance_per_site_and_plant() -> None:
    frame = work_orders(
        [
            # A: two open (one overdue critical), one repair of 4 h, PMs: one on time, one late
            ("A", "corrective", "critical", "scheduled", "2026-06-01T00:00Z", None, None),
            ("A", "preventive", "low", "in_progress", "2026-07-15T00:00Z", None, None),
            (
                "A",
                "corrective",
                "high",
                "completed",
                "2026-05-01T00:00Z",
                "2026-05-01T08:00Z",
                "2026-05-01T12:00Z",
            ),
            (
                "A",
                "preventive",
                "medium",
                "completed",
                "2026-05-10T00:00Z",
                "2026-05-09T08:00Z",
                "2026-05-09T10:00Z",
            ),
            (
                "A",
                "preventive",
                "medium",
                "completed",
                "2026-05-10T00:00Z",
                "2026-05-12T08:00Z",
                "2026-05-12T10:00Z",
            ),
            # B: emergency repair of 10 h, a cancelled PM that does not count
            (
                "B",
                "emergency",
                "critical",
                "completed",
                None,
                "2026-04-01T00:00Z",
                "2026-04-01T10:00Z",
            ),
            ("B", "preventive", "low", "cancelled", "2026-05-01T00:00Z", None, None),
        ]
    )
    kpis = work_order_kpis(frame, as_of=AS_OF).set_index("site_id")

    site_a = kpis.loc["A"]
    assert site_a["backlog_open"] == 2
    assert site_a["backlog_critical"] == 1 and site_a["backlog_low"] == 1
    assert site_a["backlog_overdue"] == 1
    assert site_a["mttr_hours"] == 4.0
    # The open PM is due after as_of: only the two completed PMs count, one of them on time.
    assert site_a["pm_due"] == 2 and site_a["pm_completed_on_time"] == 1
    assert site_a["pm_compliance_pct"] == 50.0

    site_b = kpis.loc["B"]
    assert site_b["backlog_open"] == 0
    assert site_b["mttr_hours"] == 10.0
    assert site_b["pm_due"] == 0 and math.isnan(site_b["pm_compliance_pct"])

    plant = kpis.loc["ALL"]
    assert plant["work_orders"] == 7
    assert plant["mttr_hours"] == 7.0
    assert plant["repairs_completed"] == 2
