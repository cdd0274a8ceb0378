"""Reading and acknowledging alert episodes in the state DB (the operator's side).

Collectors write episodes through ``streams/alert_arbiter.py``: ``threshold`` episodes of a
sensor and ``silence`` episodes of a device (sensor id ``*``, with the reason in words). An
acknowledgement changes only who acknowledged and ``open`` to ``acknowledged`` (both count as
live for the arbiter), with conditional updates, so operators and collectors can work on one
episode at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from integration_platform.state.devices import ALERT_STATUSES, SensorAlert


class AlertNotFound(LookupError):
    """No alert with that id or episode key."""


def list_alerts(
    session: Session,
    *,
    statuses: Sequence[str] = ("open", "acknowledged"),
    device_id: str | None = None,
    severity: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[SensorAlert]:
    """Newest first."""
    query = sa.select(SensorAlert).order_by(SensorAlert.raised_at.desc(), SensorAlert.id.desc())
    if statuses and set(statuses) != set(ALERT_STATUSES):
        query = query.where(SensorAlert.status.in_(list(statuses)))
    if device_id:
        query = query.where(SensorAlert.device_id == device_id)
    if severity:
        query = query.where(SensorAlert.severity == severity)
    if kind:
        query = query.where(SensorAlert.kind == kind)
    return list(session.scalars(query.limit(limit)))


def get_alert(session: Session, ref: str) -> SensorAlert:
    """By numeric id or by episode key."""
    alert = None
    if ref.isdigit():
        alert = session.get(SensorAlert, int(ref))
    if alert is None:
        alert = session.scalar(sa.select(SensorAlert).where(SensorAlert.episode_key == ref))
    if alert is None:
        raise AlertNotFound(f"no alert with id or episode key {ref!r}")
    return alert


def acknowledge(
    session: Session, ref: str, *, by: str, note: str | None = None, now: datetime | None = None
) -> SensorAlert:
    """A person took note: ``open`` becomes ``acknowledged``; a resolved episode keeps its
    status but records who acknowledged it. Acknowledging twice keeps the first person.

    Both are conditional updates: a collector may resolve the episode at the same moment, and
    an acknowledgement must never turn a resolved episode back into a live one (the state DB
    allows one live episode per sensor)."""
    if not by.strip():
        raise ValueError("say who acknowledges (--by NAME)")
    alert = get_alert(session, ref)
    stamp = now or datetime.now(UTC)
    session.execute(
        sa.update(SensorAlert)
        .where(SensorAlert.id == alert.id, SensorAlert.acknowledged_at.is_(None))
        .values(acknowledged_by=by.strip(), acknowledged_at=stamp, acknowledge_note=note)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.update(SensorAlert)
        .where(SensorAlert.id == alert.id, SensorAlert.status == "open")
        .values(status="acknowledged", updated_at=stamp)
        .execution_options(synchronize_session=False)
    )
    session.refresh(alert)
    return alert


def latency_ms(alert: SensorAlert) -> float:
    """``raised_at - reading_ts`` in ms: alert latency when readings carry their publish time."""
    return (alert.raised_at - alert.reading_ts).total_seconds() * 1000.0


def describe(alert: SensorAlert) -> str:
    """Why the episode was raised, in words: the stored reason (silence), else the crossing."""
    if alert.reason:
        return alert.reason
    relation = "at or above" if alert.direction == "above" else "at or below"
    limit = "?" if alert.threshold is None else f"{alert.threshold:g}"
    unit = f" {alert.unit}" if alert.unit else ""
    text = f"{alert.sensor_id} {relation} the {alert.severity} limit {limit}{unit}"
    return text if alert.peak_value is None else f"{text}, peak {alert.peak_value:g}"
