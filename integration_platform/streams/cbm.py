"""Condition-based maintenance: critical alert episodes become work orders, and back.

Exactly one work order per episode, even across crashes and repeated sensor ticks:

1. *claim* the alert row (``work_order_claimed_by/at``, a lease) in its own committed
   transaction before any call to the CMMS; a row claimed by someone else within the lease is
   left alone;
2. if the row was claimed before (``work_order_attempts`` > 0: a crash or error may have left a
   work order without its link), *look it up* in the CMMS by the reference this platform puts
   in every work order it opens (``work_order_reference``, derived from the episode key), and
   link that one;
3. otherwise *create* it, then *link* it (``work_order_id``, system, status), guarded by the
   claim.

:func:`follow_work_orders` reads linked work orders back and records their status, and the
completion on the episode: the loop from detection to repair.

Gateways are the seam to the CMMS. :class:`ConnectorGateway` holds what the connectors'
gateways share (create, find by reference, read status); each vendor declares where the
reference goes and how it is found again:

========  ==============================================  ====================================
system    reference in                                    done at
========  ==============================================  ====================================
maximo    ``externalrefid`` (``oslc.where``)              ``COMP``, ``CLOSE``
fiix      ``strCode``, the work order code (FindRequest)  status id 6 (Closed)
upkeep    start of ``title`` (list paged, no filter)      ``complete``
sap       start of ``MaintenanceOrderDesc`` (startswith)  ``CNF``, ``TECO``, ``CLSD``
dynamics  the row id, a UUID of the reference (by key)    Completed, Posted
========  ==============================================  ====================================

:class:`OutboxGateway`, the state DB's own ``cbm_work_orders`` table, is used when no CMMS is
configured so the embedded platform still shows the whole loop.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from integration_platform.settings import ConfigError
from integration_platform.state.devices import CbmWorkOrder, SensorAlert

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 300.0
MAXIMO_DONE = frozenset({"COMP", "CLOSE"})
V2_DATE = re.compile(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/")


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


class GatewaySettingError(ConfigError):
    """A gateway setting is missing or malformed; ``setting`` names it (``site_id``...), the
    message says what it must hold, so the caller can name its own variable."""

    def __init__(self, setting: str, what: str) -> None:
        super().__init__(what)
        self.setting = setting


class ConnectorGateway:
    """A CMMS reached through its connector: create, find by reference, read status.

    What is shared lives here: creating through the connector's ``create_work_order``,
    choosing among the work orders a lookup found, and deciding completion from the status
    (done when any of its space-separated codes is a done code, so SAP's status line and
    single codes read alike). A vendor subclass declares the rest: the record (with the
    reference in a field its API can filter on), the filtered read that finds work orders by
    that reference, the read of one linked work order and where its status and finish are.

    ``site_id``, ``work_type`` and ``priority`` are the vendor's own codes; unset, the
    subclass's defaults apply. ``done_statuses`` replaces the subclass's done codes where a
    tenant customises its statuses (Fiix status ids).
    """

    system: ClassVar[str]
    done: ClassVar[frozenset[str]]
    default_work_type: ClassVar[str | None] = None
    default_priority: ClassVar[str | None] = None

    def __init__(
        self,
        connector: Any,
        *,
        site_id: str | None = None,
        work_type: str | None = None,
        priority: str | None = None,
        done_statuses: Iterable[str] | None = None,
    ) -> None:
        self.connector = connector
        self.site_id = _text(site_id)
        self.work_type = _text(work_type) or self.default_work_type
        self.priority = _text(priority) or self.default_priority
        statuses = frozenset(str(code).strip() for code in done_statuses or () if str(code).strip())
        self.done_statuses = statuses or self.done

    # -- what a vendor declares -----------------------------------------------------------

    def record(self, request: WorkOrderRequest) -> dict[str, Any]:
        """The vendor record a work order is created from, carrying ``request.reference``."""
        raise NotImplementedError

    def matches(self, reference: str) -> list[Mapping[str, Any]]:
        """The work orders carrying ``reference`` (a filtered read), oldest first."""
        raise NotImplementedError

    def read(self, link: WorkOrderLink) -> Mapping[str, Any] | None:
        """The linked work order as the vendor has it now; None when unreadable or gone."""
        raise NotImplementedError

    def link_id(self, row: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def status(self, row: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def finished(self, row: Mapping[str, Any]) -> datetime | None:
        """When the work was finished, where the vendor records it."""
        return None

    def href(self, row: Mapping[str, Any]) -> str | None:
        return None

    # -- shared ---------------------------------------------------------------------------

    def create(self, request: WorkOrderRequest) -> WorkOrderLink:
        return self._link(self.connector.create_work_order(self.record(request)))

    def find(self, reference: str) -> WorkOrderLink | None:
        rows = self.matches(reference)
        if len(rows) > 1:
            log.warning(
                "%s: %d work orders carry reference %s (%s); linking the oldest",
                self.system,
                len(rows),
                reference,
                ", ".join(self.link_id(row) for row in rows),
            )
        return self._link(rows[0]) if rows else None

    def state(self, link: WorkOrderLink) -> WorkOrderState | None:
        row = self.read(link)
        if row is None:
            return None
        status = self.status(row)
        return WorkOrderState(status, self.completed(status), self.finished(row))

    def completed(self, status: str) -> bool:
        return not self.done_statuses.isdisjoint(status.split())

    def asset(self, request: WorkOrderRequest) -> str | None:
        """The vendor's key of the maintained asset: the device's ``asset_id``, without this
        system's ``<system>:`` prefix when it is given in the canonical form."""
        return _text((request.asset_id or "").removeprefix(f"{self.system}:"))

    def _link(self, row: Mapping[str, Any]) -> WorkOrderLink:
        return WorkOrderLink(self.link_id(row), self.system, self.href(row), self.status(row))


class MaximoGateway(ConnectorGateway):
    """Work orders in Maximo through ``MaximoConnector`` (OSLC ``mxwo``): the reference in
    ``externalrefid``, found with ``oslc.where``; done at ``COMP`` or ``CLOSE``."""

    system = "maximo"
    done = MAXIMO_DONE
    default_work_type = "CM"
    default_priority = "1"

    def __init__(self, connector: Any, **settings: Any) -> None:
        super().__init__(connector, **settings)
        self.site_id = self.site_id or next(iter(getattr(connector, "site_ids", None) or ()), None)
        if not self.site_id:
            raise GatewaySettingError(
                "site_id",
                "the Maximo site condition-based work orders are opened in (or declare "
                "options.site_ids on the connection)",
            )

    def record(self, request: WorkOrderRequest) -> dict[str, Any]:
        record: dict[str, Any] = {
            "siteid": self.site_id,
            "description": request.title[:100],
            "description_longdescription": request.description,
            "worktype": self.work_type,
            "wopriority": _number_or_text(self.priority),
            "externalrefid": request.reference,
        }
        asset = self.asset(request)
        if asset:
            record["assetnum"] = asset
        schedule = request.schedule or {}
        if schedule.get("source_system") == "maximo" and schedule.get("external_id"):
            record["pmnum"] = schedule["external_id"]
        return record

    def matches(self, reference: str) -> list[Mapping[str, Any]]:
        client = self.connector.client
        response = client.request(
            "GET",
            self.connector.work_orders_stream().path,
            params={
                "lean": 1,
                "oslc.select": "wonum,siteid,status,externalrefid",
                "oslc.where": f'externalrefid="{reference}" and siteid="{self.site_id}"',
                "oslc.orderBy": "+wonum",
            },
            record_id=reference,
        )
        return list((client.json(response) or {}).get("member") or [])

    def read(self, link: WorkOrderLink) -> Mapping[str, Any] | None:
        if not link.href:
            return None
        client = self.connector.client
        response = client.request(
            "GET",
            client.on_our_host(link.href),
            params={"lean": 1, "oslc.select": "wonum,status,actfinish"},
            record_id=link.id,
        )
        return client.json(response) or {}

    def link_id(self, row: Mapping[str, Any]) -> str:
        return f"{row.get('siteid', self.site_id)}/{row['wonum']}"

    def status(self, row: Mapping[str, Any]) -> str:
        return str(row.get("status") or "")

    def finished(self, row: Mapping[str, Any]) -> datetime | None:
        return _parse_time(row.get("actfinish"))

    def href(self, row: Mapping[str, Any]) -> str | None:
        return row.get("href")


class FiixGateway(ConnectorGateway):
    """Work orders in Fiix through ``FiixConnector``: the reference is the work order's code
    (``strCode``, the number people see), found with a ``FindRequest`` filtered on it.

    ``site_id`` (required) is the ``intSiteID``; work type and priority are the ids of the
    tenant's MaintenanceType and Priority records (defaults: 2 Corrective, 1 Highest), and a
    work order is done at WorkOrderStatus 6 (Closed) - the default records of a new tenant,
    as in the built-in mapping ``fiix/work_orders``; set ``done_statuses`` for others. The
    asset goes in ``strAssetIds`` (the asset's record id).
    """

    system = "fiix"
    done = frozenset({"6"})
    default_work_type = "2"
    default_priority = "1"

    def __init__(self, connector: Any, **settings: Any) -> None:
        super().__init__(connector, **settings)
        for setting, value, what in (
            ("site_id", self.site_id, "the id (intSiteID) of the Fiix site work orders go to"),
            ("work_type", self.work_type, "the id of a Fiix MaintenanceType record"),
            ("priority", self.priority, "the id of a Fiix Priority record"),
        ):
            if not (value or "").isdigit():
                got = f"got {value!r}" if value else "unset"
                raise GatewaySettingError(setting, f"{what}, a number ({got})")

    def record(self, request: WorkOrderRequest) -> dict[str, Any]:
        record: dict[str, Any] = {
            "strCode": request.reference,
            "strDescription": f"{request.title}\n{request.description}",
            "intSiteID": int(self.site_id or 0),
            "intMaintenanceTypeID": int(self.work_type or 0),
            "intPriorityID": int(self.priority or 0),
        }
        asset = self.asset(request)
        if asset:
            record["strAssetIds"] = asset
        return record

    def matches(self, reference: str) -> list[Mapping[str, Any]]:
        return self.connector.find_work_orders(where={"strCode": reference})

    def read(self, link: WorkOrderLink) -> Mapping[str, Any] | None:
        if not link.id.isdigit():
            return None
        rows = self.connector.find_work_orders(where={"id": int(link.id)})
        return rows[0] if rows else None

    def link_id(self, row: Mapping[str, Any]) -> str:
        return str(row["id"])

    def status(self, row: Mapping[str, Any]) -> str:
        return _text(row.get("intWorkOrderStatusID")) or ""

    def finished(self, row: Mapping[str, Any]) -> datetime | None:
        return _parse_time(row.get("dtmDateCompleted"))


class UpKeepGateway(ConnectorGateway):
    """Work orders in UpKeep through ``UpKeepConnector``.

    UpKeep's work orders have no field for another system's reference and its list filters
    are not confirmed, so the reference opens the title (``CB7QK2M4XA CBM: vibration
    critical on ...``) and the lookup pages the list and keeps the titles starting with it:
    the weaker choice, taken for want of a better field. Done at status ``complete``.
    ``site_id`` is the location id, ``work_type`` the category (both optional), ``priority``
    0-3 (default 3, high); the asset goes in ``asset`` (UpKeep's asset id).
    """

    system = "upkeep"
    done = frozenset({"complete"})
    default_priority = "3"

    def record(self, request: WorkOrderRequest) -> dict[str, Any]:
        record: dict[str, Any] = {
            "title": f"{request.reference} {request.title}",
            "description": request.description,
            "priority": _number_or_text(self.priority),
        }
        for name, value in (
            ("category", self.work_type),
            ("location", self.site_id),
            ("asset", self.asset(request)),
        ):
            if value:
                record[name] = value
        return record

    def matches(self, reference: str) -> list[Mapping[str, Any]]:
        return self.connector.find_work_orders(title_prefix=f"{reference} ")

    def read(self, link: WorkOrderLink) -> Mapping[str, Any] | None:
        return self.connector.get_work_order(link.id) or None

    def link_id(self, row: Mapping[str, Any]) -> str:
        return str(row["id"])

    def status(self, row: Mapping[str, Any]) -> str:
        return str(row.get("status") or "")

    def finished(self, row: Mapping[str, Any]) -> datetime | None:
        return _parse_time(row.get("completedDate"))


class SapGateway(ConnectorGateway):
    """Maintenance orders in SAP S/4HANA through ``SapConnector`` (API_MAINTENANCEORDER).

    The order header has no field for another system's reference (its free fields, such as
    the sort field, describe the technical object and are copied from it), so the reference
    opens the 40-character description (``CB7QK2M4XA CBM: vibration critical ...``), found
    with ``startswith`` in ``$filter``. Done when the system status line holds ``CNF``
    (finally confirmed), ``TECO`` or ``CLSD``, as in the built-in mapping
    ``sap/maintenance_orders``; finished at ``MainWorkCompletedDateTime``, else the reference
    date of technical completion. ``work_type`` is the order type (default PM01),
    ``priority`` the priority (default 1, very high), ``site_id`` the planning plant
    (optional: SAP derives it from the equipment); the asset is the ``Equipment`` number.
    """

    system = "sap"
    done = frozenset({"CNF", "TECO", "CLSD"})
    default_work_type = "PM01"
    default_priority = "1"

    def record(self, request: WorkOrderRequest) -> dict[str, Any]:
        record: dict[str, Any] = {
            "MaintenanceOrderType": self.work_type,
            "MaintenanceOrderDesc": f"{request.reference} {request.title}"[:40],
            "MaintPriority": self.priority,
        }
        if self.site_id:
            record["MaintenancePlanningPlant"] = self.site_id
        asset = self.asset(request)
        if asset:
            record["Equipment"] = asset
        return record

    def matches(self, reference: str) -> list[Mapping[str, Any]]:
        return self.connector.find_work_orders(description_prefix=f"{reference} ")

    def read(self, link: WorkOrderLink) -> Mapping[str, Any] | None:
        return self.connector.get_work_order(link.id)

    def link_id(self, row: Mapping[str, Any]) -> str:
        return str(row["MaintenanceOrder"])

    def status(self, row: Mapping[str, Any]) -> str:
        return " ".join(str(row.get("SystemStatusText") or "").split())

    def finished(self, row: Mapping[str, Any]) -> datetime | None:
        return _parse_time(row.get("MainWorkCompletedDateTime")) or _parse_time(
            row.get("MaintOrderReferenceDateTime")
        )


class DynamicsGateway(ConnectorGateway):
    """Field Service work orders (``msdyn_workorders``) through ``DynamicsConnector``.

    Dataverse takes a row's id on create, so the reference becomes the id: a UUID derived
    from it (:func:`dynamics_work_order_id`). The lookup is a read by that key, and Dataverse
    refuses a second create with it, so even two creators racing make one row. The summary
    holds the title and the description, which quotes the reference. Done at system status
    690970003 (Completed) or 690970004 (Posted), finished at ``msdyn_completedon``.
    Lookups are bound by id (GUID): ``site_id`` the service account, ``work_type`` the work
    order type, ``priority`` the priority (Field Service requires the first two); the asset
    is the customer asset, bound only when the device's asset id is a GUID.
    """

    system = "dynamics"
    done = frozenset({"690970003", "690970004"})

    def __init__(self, connector: Any, **settings: Any) -> None:
        super().__init__(connector, **settings)
        for setting, value, what in (
            ("site_id", self.site_id, "the id (GUID) of the service account"),
            ("work_type", self.work_type, "the id (GUID) of the work order type"),
            ("priority", self.priority, "the id (GUID) of the priority"),
        ):
            if value and not _is_guid(value):
                raise GatewaySettingError(setting, f"{what} (got {value!r})")

    def record(self, request: WorkOrderRequest) -> dict[str, Any]:
        record: dict[str, Any] = {
            "msdyn_workorderid": dynamics_work_order_id(request.reference),
            "msdyn_workordersummary": f"{request.title}\n{request.description}",
        }
        asset = self.asset(request)
        if asset and not _is_guid(asset):
            log.warning(
                "dynamics: asset %r of alert %s is not a customer asset id (GUID); the work "
                "order is opened without the asset",
                asset,
                request.episode_key,
            )
            asset = None
        for lookup, entity_set, value in (
            ("msdyn_serviceaccount", "accounts", self.site_id),
            ("msdyn_workordertype", "msdyn_workordertypes", self.work_type),
            ("msdyn_priority", "msdyn_priorities", self.priority),
            ("msdyn_customerasset", "msdyn_customerassets", asset),
        ):
            if value:
                record[f"{lookup}@odata.bind"] = f"/{entity_set}({value})"
        return record

    def matches(self, reference: str) -> list[Mapping[str, Any]]:
        row = self.connector.get_work_order(dynamics_work_order_id(reference))
        return [row] if row else []

    def read(self, link: WorkOrderLink) -> Mapping[str, Any] | None:
        return self.connector.get_work_order(link.id) if _is_guid(link.id) else None

    def link_id(self, row: Mapping[str, Any]) -> str:
        return str(row["msdyn_workorderid"])

    def status(self, row: Mapping[str, Any]) -> str:
        return _text(row.get("msdyn_systemstatus")) or ""

    def finished(self, row: Mapping[str, Any]) -> datetime | None:
        return _parse_time(row.get("msdyn_completedon"))


# The id space of work orders this platform creates in Dataverse.
DYNAMICS_NAMESPACE = uuid.UUID("5b0e1f4a-8c3d-5e7a-9b21-c6d04f8e2a17")


def dynamics_work_order_id(reference: str) -> str:
    """The id (GUID) of the Dataverse work order carrying ``reference``: the same on every
    attempt, so the work order can be read back by key."""
    return str(uuid.uuid5(DYNAMICS_NAMESPACE, reference))


GATEWAYS: dict[str, type[ConnectorGateway]] = {
    gateway.system: gateway
    for gateway in (MaximoGateway, FiixGateway, UpKeepGateway, SapGateway, DynamicsGateway)
}
"""The gateway for each connector type that can take work orders."""


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
    if alert.kind == "silence":  # a critical silence (opt-in: silence_alert: critical)
        return WorkOrderRequest(
            reference=reference,
            episode_key=alert.episode_key,
            asset_id=alert.asset_id,
            title=f"CBM: {alert.device_id} silent on {alert.asset_id or alert.device_id}",
            description=(
                f"Raised by the platform's condition monitoring: {alert.reason or 'no readings'}."
                f" Alert episode {alert.episode_key}, reference {reference}."
            ),
            schedule=schedule,
        )
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
                # Least recently followed first, so no linked work order waits forever
                # behind `limit` others (cancelled ones are never completed).
                .order_by(SensorAlert.updated_at, SensorAlert.work_order_linked_at)
                .limit(limit)
            )
        )
    for alert in linked:
        link = WorkOrderLink(alert.work_order_id or "", gateway.system, alert.work_order_href, None)
        try:
            state = gateway.state(link)
        except Exception as exc:
            log.warning("work order %s of alert %s unreadable: %s", link.id, alert.id, exc)
            _update_alert(engine, alert.id, {"updated_at": datetime.now(UTC)})
            continue
        values: dict[str, Any] = {"updated_at": datetime.now(UTC)}  # followed: to the back
        if state is None:
            _update_alert(engine, alert.id, values)
            continue
        if state.status != alert.work_order_status:
            values["work_order_status"] = state.status
            report.status_changed.append(alert.episode_key)
        if state.completed:
            values["work_order_completed_at"] = state.finished_at or datetime.now(UTC)
            report.completed.append(alert.episode_key)
        _update_alert(engine, alert.id, values)
    return report


def _update_alert(engine: Engine, alert_id: int, values: Mapping[str, Any]) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.update(SensorAlert).where(SensorAlert.id == alert_id).values(**values)
        )


def _parse_time(value: Any) -> datetime | None:
    """A vendor's time: ISO-8601 (naive read as UTC), epoch milliseconds (Fiix ``dtm*``) or
    OData V2 ``/Date(ms)/``; None when absent or unreadable (logged: the caller then records
    the time it saw the work order done)."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    epoch = re.fullmatch(r"(-?\d+)", text) or re.fullmatch(V2_DATE, text)
    if epoch:
        return datetime.fromtimestamp(int(epoch[1]) / 1000, UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        log.warning("work order time %r is not ISO-8601, epoch ms or /Date(ms)/: ignored", text)
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    """A setting or code as stripped text; None when empty."""
    text = "" if value is None else str(value).strip()
    return text or None


def _number_or_text(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else value


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
