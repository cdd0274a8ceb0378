"""``cbm_work_orders_critical_alert_sensor``: critical alerts -> work orders -> completion.

Each tick does bounded, short work (claims in the state DB, a few CMMS calls), no long polls:
it opens at most ``max_per_tick`` work orders for critical episodes that have none, then reads
linked work orders back and records status and completion on their episodes. The claim and
lookup protocol in ``streams/cbm.py`` makes a repeated or crashed tick harmless.
"""

from __future__ import annotations

import dagster as dg

from integration_platform.defs.alerts.resources import CbmCmms
from integration_platform.lake import DeltaLake, Layer
from integration_platform.state import StateDatabase

SENSOR_NAME = "cbm_work_orders_critical_alert_sensor"
SCHEDULES = (Layer.SILVER, "maintenance_schedules")


def _schedules(lake: DeltaLake, log: object) -> object:
    """Active condition schedules from the lake, or None when there are none yet."""
    try:
        if not lake.exists(SCHEDULES):
            return None
        return lake.read(SCHEDULES)
    except Exception as exc:
        log.warning(f"silver/maintenance_schedules unreadable, no schedule link: {exc}")  # type: ignore[attr-defined]
        return None


@dg.sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Opens one work order in the configured CMMS (or the local outbox) per critical "
    "sensor alert episode, linked to the asset's condition-based schedule, and records the work "
    "order's completion on the episode.",
)
def cbm_work_orders_critical_alert_sensor(
    context: dg.SensorEvaluationContext,
    state: StateDatabase,
    cbm_cmms: CbmCmms,
    lake: DeltaLake,
) -> dg.SkipReason:
    import sqlalchemy as sa

    from integration_platform.streams.cbm import follow_work_orders, open_work_orders

    engine = state.engine()
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1 FROM sensor_alerts WHERE 1 = 0"))
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        return dg.SkipReason(f"sensor_alerts cannot be read (run `db upgrade`?): {reason}")
    gateway = cbm_cmms.gateway(engine)
    report = open_work_orders(
        engine,
        gateway,
        claimant=f"dagster:{SENSOR_NAME}",
        schedules=lambda: _schedules(lake, context.log),
        lease_s=cbm_cmms.claim_lease_seconds,
        limit=cbm_cmms.max_per_tick,
    )
    follow_work_orders(engine, gateway, report=report)
    for key in report.created:
        context.log.info(f"{gateway.system} work order opened for alert {key}")
    for key in report.failed:
        context.log.error(f"work order for alert {key} failed (see sensor_alerts.work_order_error)")
    return dg.SkipReason(f"{gateway.system}: {report.summary()}")
