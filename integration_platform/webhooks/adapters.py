"""Vendor messages to one event shape: event type, the record concerned, when it changed.

Each adapter reads one format and returns a :class:`NormalizedEvent` whose ``payload`` is the
record in the sender's own field names — the built-in field mappings (``mapping/builtin``) turn
it into canonical rows when the event is processed. Adapters are pure functions of the parsed
body, so the processing side can call :func:`normalize` again on a stored ``event_payload``.

Message shapes (see docs/webhooks.md for examples):

- ``common``: the platform's own ``{"type", "timestamp", "data", "id"?}``, validated field by
  field against the event-type registry.
- ``maximo``: the JSON a publish channel sends for an object structure (lower-case attribute
  names as in the JSON API, optionally wrapped in ``{"<OBJECT STRUCTURE>": ...}``). Maximo
  does not sign; a gateway in front of it does.
- ``upkeep``: ``{"event": "WORK_ORDER_UPDATED", "triggeredAt", "data": {<record>}, "id"?}``.
- ``fiix``: ``{"eventId", "className": "WorkOrder", "action", "object": {<record>}}``.

The UpKeep and Fiix envelopes are not confirmed against the vendors' documentation (our notes
mark their webhooks as unconfirmed); their record fields follow the REST APIs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from integration_platform.webhooks.events import (
    PayloadError,
    get_event_type,
    validate_common,
)


@dataclass(frozen=True)
class NormalizedEvent:
    """The common event shape every format is reduced to."""

    event_id: str | None
    """An id the message itself carries (None: the receiver derives one)."""
    event_type: str
    entity_type: str
    entity_external_id: str
    occurred_at: datetime | None
    payload: dict[str, Any]


Adapter = Callable[[Any], NormalizedEvent]


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(field, "must be a JSON object")
    return value


def _text(record: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric record ids, as Fiix uses
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise PayloadError(path, "must be a non-empty string of at most 200 characters")
    return value.strip()


def _moment(value: Any, field: str) -> datetime | None:
    """ISO 8601 with an offset (UTC when it has none), or epoch milliseconds."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, tz=UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            raise TypeError
    except (TypeError, ValueError, OverflowError, OSError):
        raise PayloadError(field, "must be an ISO 8601 date-time or epoch milliseconds") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _registered(event_type: str, field: str) -> str:
    spec = get_event_type(event_type)
    if spec is None:
        raise PayloadError(field, f"event type {event_type!r} is not accepted")
    return spec.entity_type


def adapt_common(document: Any) -> NormalizedEvent:
    event = validate_common(document)
    return NormalizedEvent(
        event_id=event.event_id,
        event_type=event.spec.name,
        entity_type=event.spec.entity_type,
        entity_external_id=str(event.data["external_id"]),
        occurred_at=event.occurred_at,
        payload=event.data,
    )


# Attribute that identifies the record, in the order to look for them: a work order also has
# an assetnum, a PM record an assetnum too.
_MAXIMO_KEYS = (("wonum", "work_order"), ("pmnum", "maintenance_schedule"), ("assetnum", "asset"))


def adapt_maximo(document: Any) -> NormalizedEvent:
    record = _object(document, "(body)")
    if len(record) == 1:
        ((root, inner),) = record.items()
        if root.isupper() and isinstance(inner, list) and len(inner) == 1:
            inner = inner[0]
        if root.isupper() and isinstance(inner, dict):
            record = inner
    found = next(((k, e) for k, e in _MAXIMO_KEYS if k in record), None)
    if found is None:
        raise PayloadError(
            "wonum", "a Maximo message needs wonum (work order), pmnum (PM) or assetnum (asset)"
        )
    key, entity_type = found
    number = _text(record, key, key)
    site = _text(record, "siteid", "siteid", required=False)
    # Numbers are unique within a site only.
    external_id = f"{site}:{number}" if site else str(number)
    action = record.get("_action", "Update")
    if not isinstance(action, str):
        raise PayloadError("_action", "must be a string such as Add, Update or Replace")
    if action.lower() == "delete":
        raise PayloadError("_action", "Delete messages are not accepted")
    created = f"{entity_type}.created"
    if action.lower() in ("add", "create") and get_event_type(created):
        event_type = created
    else:
        event_type = f"{entity_type}.updated"
    _registered(event_type, "_action")
    occurred = _moment(record.get("changedate") or record.get("statusdate"), "changedate")
    rowstamp = record.get("_rowstamp")
    event_id = None
    if isinstance(rowstamp, str | int) and not isinstance(rowstamp, bool) and str(rowstamp):
        event_id = f"{entity_type}:{external_id}:{rowstamp}"[:200]
    return NormalizedEvent(event_id, event_type, entity_type, external_id, occurred, record)


_UPKEEP_EVENTS = {
    "WORK_ORDER_CREATED": "work_order.created",
    "WORK_ORDER_UPDATED": "work_order.updated",
    "WORK_ORDER_STATUS_UPDATED": "work_order.status_changed",
    "ASSET_UPDATED": "asset.updated",
    "PREVENTIVE_MAINTENANCE_UPDATED": "maintenance_schedule.updated",
}


def adapt_upkeep(document: Any) -> NormalizedEvent:
    message = _object(document, "(body)")
    name = _text(message, "event", "event")
    assert name is not None
    event_type = _UPKEEP_EVENTS.get(name.upper(), name)
    entity_type = _registered(event_type, "event")
    record = _object(message.get("data"), "data")
    external_id = _text(record, "id", "data.id")
    assert external_id is not None
    occurred = _moment(message.get("triggeredAt"), "triggeredAt") or _moment(
        record.get("updatedAt"), "data.updatedAt"
    )
    event_id = _text(message, "id", "id", required=False)
    return NormalizedEvent(event_id, event_type, entity_type, external_id, occurred, record)


_FIIX_CLASSES = {
    "WorkOrder": "work_order",
    "Asset": "asset",
    "ScheduledMaintenance": "maintenance_schedule",
}


def adapt_fiix(document: Any) -> NormalizedEvent:
    message = _object(document, "(body)")
    class_name = _text(message, "className", "className")
    entity_type = _FIIX_CLASSES.get(str(class_name))
    if entity_type is None:
        known = ", ".join(_FIIX_CLASSES)
        raise PayloadError("className", f"{class_name!r} is not accepted; known: {known}")
    action = _text(message, "action", "action", required=False) or "updated"
    event_type = f"{entity_type}.{action.lower()}"
    _registered(event_type, "action")
    record = _object(message.get("object"), "object")
    external_id = _text(record, "id", "object.id")
    occurred = _moment(record.get("dtmDateLastModified"), "object.dtmDateLastModified")
    event_id = _text(message, "eventId", "eventId", required=False)
    if event_id is None and occurred is not None:
        stamp = record["dtmDateLastModified"]
        event_id = f"{entity_type}:{external_id}:{stamp}"
    assert external_id is not None
    return NormalizedEvent(event_id, event_type, entity_type, external_id, occurred, record)


ADAPTERS: dict[str, Adapter] = {
    "common": adapt_common,
    "maximo": adapt_maximo,
    "upkeep": adapt_upkeep,
    "fiix": adapt_fiix,
}


def normalize(message_format: str, document: Any) -> NormalizedEvent:
    """The common shape of ``document``; raises ``PayloadError`` naming the field at fault."""
    return ADAPTERS[message_format](document)
