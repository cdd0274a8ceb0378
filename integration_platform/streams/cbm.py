"""Condition-based maintenance: critical alert episodes become work orders, and back.

Exactly one work order per episode, even across crashes and repeated sensor ticks:

1. *claim* the alert row (``work_order_claimed_by/at``, a lease) in its own committed
   transaction before any call to the CMMS; a row claimed by someone else within the lease is
   left alone;
2. if the row was claimed before (``work_order_attempts`` > 0: a crash or error may have left a
   work order without its link), *look it up* in the CMMS by the reference this platform puts
   in every work order it opens (``work_order_reference``, derived from the episode key:
   Maximo ``externalrefid``), and link that one;
3. otherwise *create* it, then *link* it (``work_order_id``, system, status), guarded by the
   claim.

:func:`follow_work_orders` reads linked work orders back and records their status, and the
completion (Maximo ``COMP``/``CLOSE``) on the episode: the loop from detection to repair.

Gateways are the seam to the CMMS: :class:`MaximoGateway` over ``MaximoConnector``, and
:class:`OutboxGateway`, the state DB's own ``cbm_work_orders`` table, used when no CMMS is
configured so the embedded platform still shows the whole loop.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from integration_platform.state.devices import CbmWorkOrder, SensorAlert

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 300.0
MAXIMO_DONE = frozenset({"COMP", "CLOSE"})


def work_order_reference(episode_key: str) -> str:
    """A 10-character reference (``CB`` + 8 base32 of SHA-256): fits Maximo's EXTERNALREFID."""
    digest = hashlib.sha256(episode_key.encode()).digest()
    return "CB" + base64.b32encode(digest).decode()[:8]


@dataclass(frozen=True)
class WorkOrderRequest:
    reference: str
    episode_key: str
    asset_id: str | None
    title: str
    description: str
    schedule: Mapping[str, Any] | None = None  # the condition-based MaintenanceSchedule


@dataclass(frozen=True)
class WorkOrderLink:
    id: str
    system: str
    href: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class WorkOrderState:
    status: str
    completed: bool
    finished_at: datetime | None = None


class WorkOrderGateway(Protocol):
    system: str

    def find(self, reference: str) -> WorkOrderLink | None: ...

    def create(self, request: WorkOrderRequest) -> WorkOrderLink: ...

    def state(self, link: WorkOrderLink) -> WorkOrderState | None: ...


# -- gateways ------------------------------------------------------------------------------


class MaximoGateway:
    """Work orders in Maximo through ``MaximoConnector`` (OSLC ``mxwo``)."""

    system = "maximo"

    def __init__(self, connector: Any, *, site_id: str, work_type: str = "CM") -> None:
        self.connector = connector
        self.site_id = site_id
        self.work_type = work_type

    def create(self, request: WorkOrderRequest) -> WorkOrderLink:
        record: dict[str, Any] = {
            "siteid": self.site_id,
            "description": request.title[:100],
            "description_longdescription": request.description,
            "worktype": self.work_type,
            "wopriority": 1,
            "externalrefid": request.reference,
        }
        if request.asset_id:
            record["assetnum"] = request.asset_id
        schedule = request.schedule or {}
        if schedule.get("source_system") == "maximo" and schedule.get("external_id"):
            record["pmnum"] = schedule["external_id"]
        body = self.connector.create_work_order(record)
        return self._link(body)

    def find(self, reference: str) -> WorkOrderLink | None:
        client = self.connector.client
        response = client.request(
            "GET",
            self.connector.work_orders_stream().path,
            params={
                "lean": 1,
                "oslc.select": "wonum,siteid,status,externalrefid",
                "oslc.where": f'externalrefid="{reference}" and siteid="{self.site_id}"',
            },
            record_id=reference,
        )
        members = (client.json(response) or {}).get("member") or []
        return self._link(members[0]) if members else None

    def state(self, link: WorkOrderLink) -> WorkOrderState | None:
        if not link.href:
            return None
        client = self.connector.client
        response = client.request(
            "GET",
            client.on_our_host(link.href),
            params={"lean": 1, "oslc.select": "wonum,status,actfinish"},
            record_id=link.id,
        )
        body = client.json(response) or {}
        status = str(body.get("status") or "")
        finished = body.get("actfinish")
        return WorkOrderState(
            status=status,
            completed=status in MAXIMO_DONE,
            finished_at=_parse_time(finished) if finished else None,
        )

    def _link(self, body: Mapping[str, Any]) -> WorkOrderLink:
        return WorkOrderLink(
            id=f"{body.get('siteid', self.site_id)}/{body['wonum']}",
            system=self.system,
            href=body.get("href"),
            status=body.get("status"),
        )


class OutboxGateway:
    """Work orders kept in the state DB (``cbm_work_orders``) when no CMMS is configured."""

    system = "outbox"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, request: WorkOrderRequest) -> WorkOrderLink:
        with Session(self.engine) as session, session.begin():
            found = session.scalar(
                sa.select(CbmWorkOrder).where(CbmWorkOrder.reference == request.reference)
            )
            if found is None:
                found = CbmWorkOrder(
                    reference=request.reference,
                    episode_key=request.episode_key,
                    asset_id=request.asset_id,
                    schedule_id=(request.schedule or {}).get("schedule_id"),
                    title=request.title,
                    description=request.description,
                    work_type="predictive",
                    priority="critical",
                )
                session.add(found)
                session.flush()
            return WorkOrderLink(found.reference, self.system, None, found.status)

    def find(self, reference: str) -> WorkOrderLink | None:
        with Session(self.engine) as session:
            found = session.scalar(
                sa.select(CbmWorkOrder).where(CbmWorkOrder.reference == reference)
            )
            return (
                WorkOrderLink(found.reference, self.system, None, found.status) if found else None
            )

    def state(self, link: WorkOrderLink) -> WorkOrderState | None:
        with Session(self.engine) as session:
            found = session.scalar(sa.select(CbmWorkOrder).where(CbmWorkOrder.reference == link.id))
            if found is None:
                return None
            return WorkOrderState(found.status, found.status == "completed", found.completed_at)

    @staticmethod
    def complete(session: Session, reference: str, *, now: datetime | None = None) -> bool:
        """Mark an outbox work order done (what a technician would do in a CMMS)."""
        found = session.scalar(sa.select(CbmWorkOrder).where(CbmWorkOrder.reference == reference))
        if found is None:
            return False
        found.status, found.completed_at = "completed", now or datetime.now(UTC)
        return True


def list_outbox(session: Session, limit: int = 100) -> list[CbmWorkOrder]:
    query = sa.select(CbmWorkOrder).order_by(CbmWorkOrder.created_at.desc()).limit(limit)
    return list(session.scalars(query))


# -- schedules -----------------------------------------------------------------------------


def condition_schedule(
    schedules: Any, *, asset_id: str | None, sensor_type: str | None
) -> dict[str, Any] | None:
    """The active condition-based schedule of the asset, preferring one that watches this
    sensor type (``condition_metric``); ``None`` when the asset has none."""
    if schedules is None or asset_id is None or len(schedules) == 0:
        return None
    frame = schedules
    mask = (frame["trigger_type"] == "condition") & (frame["status"] == "active")
    mask &= (frame["asset_id"] == asset_id) | (frame.get("asset_external_id") == asset_id)
    found = frame[mask.fillna(False).astype(bool)]
    if found.empty:
        return None
    if sensor_type is not None and "condition_metric" in found:
        same = found[(found["condition_metric"] == sensor_type).fillna(False).astype(bool)]
        if not same.empty:
            found = same
    row = found.sort_values("schedule_id").iloc[0]
    return {
        key: (None if _missing(row.get(key)) else row.get(key))
        for key in ("schedule_id", "source_system", "external_id", "title", "condition_metric")
    }


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return False


# -- the loop ------------------------------------------------------------------------------


@dataclass
class TickReport:
    created: list[str] = field(default_factory=list)
    found_existing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped_claimed: int = 0
    status_changed: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} work orders created, {len(self.found_existing)} re-linked "
            f"after an interrupted attempt, {len(self.failed)} failed, "
            f"{len(self.completed)} completed, {len(self.status_changed)} status changes"
        )


def critical_crossing(alert: SensorAlert) -> tuple[float | None, float | None, str]:
    """Value, limit and reading time that made the episode critical.

    An episode that opened as a warning and escalated keeps its first value in ``value``;
    the work order quotes the escalation instead.
    """
    for step in alert.severity_history or []:
        if step.get("severity") == "critical":
            return step.get("value"), step.get("threshold"), str(step.get("reading_ts"))
    return alert.value, alert.threshold, alert.reading_ts.isoformat()


def request_for(alert: SensorAlert, schedule: Mapping[str, Any] | None) -> WorkOrderRequest:
    reference = alert.work_order_reference or work_order_reference(alert.episode_key)
    what = alert.sensor_type or alert.sensor_id
    value, limit, reading_ts = critical_crossing(alert)
    shown = "?" if value is None else f"{value:g}"
    title = (
        f"CBM: {what} critical on {alert.asset_id or alert.device_id} "
        f"({shown}{' ' + alert.unit if alert.unit else ''})"
    )
    relation = "at or above" if alert.direction == "above" else "at or below"
    description = (
        f"Raised by the platform's condition monitoring. Sensor {alert.device_id}/"
        f"{alert.sensor_id} read {shown} {alert.unit or ''}, {relation} the critical "
        f"limit {'?' if limit is None else f'{limit:g}'}, at {reading_ts}. Alert episode "
        f"{alert.episode_key}, reference {reference}."
    )
    if schedule:
        description += f" Condition-based schedule {schedule.get('schedule_id')}."
    return WorkOrderRequest(
        reference=reference,
        episode_key=alert.episode_key,
        asset_id=alert.asset_id,
        title=title,
        description=description,
        schedule=schedule,
    )


def _claim(engine: Engine, alert_id: int, *, claimant: str, now: datetime, lease_s: float) -> bool:
    expired = now - timedelta(seconds=lease_s)
    with engine.begin() as connection:
        result = connection.execute(
            sa.update(SensorAlert)
            .where(
                SensorAlert.id == alert_id,
                SensorAlert.work_order_id.is_(None),
                sa.or_(
                    SensorAlert.work_order_claimed_at.is_(None),
                    SensorAlert.work_order_claimed_at <= expired,
                ),
            )
            .values(
                work_order_claimed_by=claimant,
                work_order_claimed_at=now,
                work_order_attempts=SensorAlert.work_order_attempts + 1,
            )
        )
        return result.rowcount == 1


def _link(
    engine: Engine,
    alert_id: int,
    link: WorkOrderLink,
    *,
    claimant: str,
    reference: str,
    schedule_id: str | None,
) -> bool:
    with engine.begin() as connection:
        result = connection.execute(
            sa.update(SensorAlert)
            .where(
                SensorAlert.id == alert_id,
                SensorAlert.work_order_claimed_by == claimant,
                SensorAlert.work_order_id.is_(None),
            )
            .values(
                work_order_id=link.id,
                work_order_system=link.system,
                work_order_href=link.href,
                work_order_status=link.status,
                work_order_reference=reference,
                work_order_linked_at=datetime.now(UTC),
                work_order_error=None,
                schedule_id=schedule_id,
            )
        )
        return result.rowcount == 1


def open_work_orders(
    engine: Engine,
    gateway: WorkOrderGateway,
    *,
    claimant: str,
    schedules: Any = None,
    lease_s: float = DEFAULT_LEASE_S,
    limit: int = 20,
    now: datetime | None = None,
) -> TickReport:
    """One work order for each critical episode that has none (at most ``limit`` a call).

    ``schedules`` is the ``silver/maintenance_schedules`` frame, or a function returning it
    (called only when there is an episode to open a work order for).
    """
    now = now or datetime.now(UTC)
    report = TickReport()
    with Session(engine, expire_on_commit=False) as session:
        candidates = list(
            session.scalars(
                sa.select(SensorAlert)
                .where(SensorAlert.severity == "critical", SensorAlert.work_order_id.is_(None))
                .order_by(SensorAlert.raised_at, SensorAlert.id)
                .limit(limit)
            )
        )
    for alert in candidates:
        if not _claim(engine, alert.id, claimant=claimant, now=now, lease_s=lease_s):
            report.skipped_claimed += 1
            continue
        if callable(schedules):
            schedules = schedules()
        schedule = condition_schedule(
            schedules, asset_id=alert.asset_id, sensor_type=alert.sensor_type
        )
        request = request_for(alert, schedule)
        with engine.begin() as connection:  # the reference is known before the call
            connection.execute(
                sa.update(SensorAlert)
                .where(SensorAlert.id == alert.id)
                .values(work_order_reference=request.reference)
            )
        try:
            link = gateway.find(request.reference) if alert.work_order_attempts > 0 else None
            if link is not None:
                report.found_existing.append(alert.episode_key)
            else:
                link = gateway.create(request)
                report.created.append(alert.episode_key)
        except Exception as exc:
            message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:1000]
            log.error("work order for alert %s failed: %s", alert.episode_key, message)
            with engine.begin() as connection:
                connection.execute(
                    sa.update(SensorAlert)
                    .where(SensorAlert.id == alert.id)
                    .values(work_order_error=message)
                )
            report.failed.append(alert.episode_key)
            continue
        schedule_id = schedule.get("schedule_id") if schedule else None
        if not _link(
            engine,
            alert.id,
            link,
            claimant=claimant,
            reference=request.reference,
            schedule_id=schedule_id,
        ):
            log.warning(
                "alert %s: claim lost before linking work order %s (reference %s)",
                alert.episode_key,
                link.id,
                request.reference,
            )
        else:
            log.info("alert %s -> %s work order %s", alert.episode_key, link.system, link.id)
    return report


def follow_work_orders(
    engine: Engine, gateway: WorkOrderGateway, *, limit: int = 50, report: TickReport | None = None
) -> TickReport:
    """Read linked, not yet completed work orders back; record status and completion."""
    report = report or TickReport()
    with Session(engine, expire_on_commit=False) as session:
        linked = list(
            session.scalars(
                sa.select(SensorAlert)
                .where(
                    SensorAlert.work_order_id.is_not(None),
                    SensorAlert.work_order_system == gateway.system,
                    SensorAlert.work_order_completed_at.is_(None),
                )
                .order_by(SensorAlert.work_order_linked_at)
                .limit(limit)
            )
        )
    for alert in linked:
        link = WorkOrderLink(alert.work_order_id or "", gateway.system, alert.work_order_href, None)
        try:
            state = gateway.state(link)
        except Exception as exc:
            log.warning("work order %s of alert %s unreadable: %s", link.id, alert.id, exc)
            continue
        if state is None:
            continue
        values: dict[str, Any] = {}
        if state.status != alert.work_order_status:
            values["work_order_status"] = state.status
            report.status_changed.append(alert.episode_key)
        if state.completed:
            values["work_order_completed_at"] = state.finished_at or datetime.now(UTC)
            report.completed.append(alert.episode_key)
        if values:
            with engine.begin() as connection:
                connection.execute(
                    sa.update(SensorAlert).where(SensorAlert.id == alert.id).values(**values)
                )
    return report


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
