"""Event types the receiver accepts and the checks a payload must pass before it is stored.

The registry maps an event type (``work_order.status_changed``) to the entity it concerns and
a pydantic model of its ``data`` in the platform's own (``common``) message format; add types
with :func:`register_event_type`. Vendor formats are translated by ``adapters`` and only need
their event type to be registered here.

Errors say which field is wrong: a sender's integration engineer reads them in a delivery log.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

MAX_DEPTH = 32
EVENT_ID_PATTERN = r"^[\x21-\x7e]{1,200}$"


class MalformedBody(Exception):
    """The body is not JSON at all (answered 400)."""


class PayloadError(Exception):
    """The body is JSON but not an acceptable event (answered 422); ``field`` names the culprit."""

    def __init__(self, field: str, detail: str, errors: list[dict[str, str]] | None = None):
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
        self.errors = errors or [{"field": field, "detail": detail}]


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no numbers that overflow a float.

    Python's parser would accept those, and PostgreSQL's JSONB would then refuse the row —
    after the sender was told its message is malformed or, worse, with a 500.
    """
    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise MalformedBody(
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise MalformedBody("the body is nested too deeply") from None
    except ValueError as exc:  # from the hooks above, or an integer with too many digits
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_storable(value: Any, path: str = "", depth: int = 0) -> None:
    """Refuse what JSONB cannot hold: NUL characters, lone surrogates, extreme nesting."""
    if depth > MAX_DEPTH:
        raise PayloadError(path or "(body)", f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, _child(path, "(key)"))
            check_storable(item, _child(path, key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, _child(path, index), depth + 1)


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise PayloadError(path or "(body)", "contains a NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(path or "(body)", "contains an unpaired surrogate escape") from None


@dataclass(frozen=True)
class EventTypeSpec:
    """An accepted event type: the entity it concerns and its ``data`` in the common format."""

    name: str
    entity_type: str
    data_model: type[BaseModel]
    description: str = ""


_REGISTRY: dict[str, EventTypeSpec] = {}
_LOCK = threading.Lock()


def register_event_type(spec: EventTypeSpec) -> None:
    """Accept another event type (or replace a built-in one) from now on, in this process."""
    with _LOCK:
        _load_builtins()
        _REGISTRY[spec.name] = spec


def event_types() -> Mapping[str, EventTypeSpec]:
    """Every accepted event type by name (built-ins are defined on first use)."""
    with _LOCK:
        _load_builtins()
        return dict(_REGISTRY)


def get_event_type(name: str) -> EventTypeSpec | None:
    return event_types().get(name)


def _load_builtins() -> None:
    # The canonical enumerations live in integration_platform.model, whose package imports
    # pandas and pandera: defined on first use so importing this module stays cheap.
    if _REGISTRY:
        return
    from integration_platform.model.enums import (
        AssetCondition,
        AssetStatus,
        IntervalUnit,
        Priority,
        ScheduleStatus,
        WorkOrderStatus,
        WorkType,
    )

    def _id() -> Any:  # a fresh FieldInfo per field: pydantic may adjust the one it is given
        return Field(min_length=1, max_length=200)

    class _Data(BaseModel):
        # Senders may add fields; the record is kept whole for the sync that processes it.
        model_config = ConfigDict(extra="allow")

    class WorkOrderData(_Data):
        external_id: str = _id()
        site_id: str | None = None
        asset_external_id: str | None = None
        title: str | None = None
        description: str | None = None
        work_type: WorkType | None = None
        priority: Priority | None = None
        status: WorkOrderStatus | None = None
        scheduled_start: AwareDatetime | None = None
        due_at: AwareDatetime | None = None
        updated_at: AwareDatetime | None = None

    class WorkOrderStatusData(WorkOrderData):
        status: WorkOrderStatus
        previous_status: WorkOrderStatus | None = None

    class AssetData(_Data):
        external_id: str = _id()
        site_id: str | None = None
        name: str | None = None
        status: AssetStatus | None = None
        condition: AssetCondition | None = None
        location: str | None = None
        updated_at: AwareDatetime | None = None

    class ScheduleData(_Data):
        external_id: str = _id()
        site_id: str | None = None
        asset_external_id: str | None = None
        title: str | None = None
        status: ScheduleStatus | None = None
        interval_value: float | None = Field(default=None, gt=0)
        interval_unit: IntervalUnit | None = None
        next_due_at: AwareDatetime | None = None
        updated_at: AwareDatetime | None = None

    for spec in (
        EventTypeSpec(
            "work_order.created", "work_order", WorkOrderData, "A work order was created."
        ),
        EventTypeSpec("work_order.updated", "work_order", WorkOrderData, "A work order changed."),
        EventTypeSpec(
            "work_order.status_changed",
            "work_order",
            WorkOrderStatusData,
            "A work order moved to another status.",
        ),
        EventTypeSpec("asset.updated", "asset", AssetData, "An asset changed."),
        EventTypeSpec(
            "maintenance_schedule.updated",
            "maintenance_schedule",
            ScheduleData,
            "A preventive maintenance schedule changed.",
        ),
    ):
        _REGISTRY[spec.name] = spec


class CommonEnvelope(BaseModel):
    """The platform's own message: ``{"type", "timestamp", "data", "id"?}``.

    It follows the payload structure Standard Webhooks recommends; ``id`` is needed only with
    the body-only signature scheme, where no signed ``webhook-id`` header carries it.
    """

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, pattern=EVENT_ID_PATTERN)
    type: str = Field(min_length=1, max_length=200)
    timestamp: AwareDatetime
    data: dict[str, Any]


def _field(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path = _child(path, part)
    return path or "(body)"


def pydantic_error(exc: ValidationError, prefix: str = "") -> PayloadError:
    """The first problem as ``field``/``detail``; all of them in ``errors``."""
    errors = [
        {"field": _field(prefix, tuple(error["loc"])), "detail": error["msg"]}
        for error in exc.errors(include_url=False)
    ]
    first = errors[0]
    return PayloadError(first["field"], first["detail"], errors)


@dataclass(frozen=True)
class CommonEvent:
    event_id: str | None
    spec: EventTypeSpec
    occurred_at: datetime
    data: dict[str, Any]


def validate_common(document: Any) -> CommonEvent:
    """Check a common-format message against the registry; raises ``PayloadError``."""
    if not isinstance(document, dict):
        raise PayloadError("(body)", "must be a JSON object")
    try:
        envelope = CommonEnvelope.model_validate(document)
    except ValidationError as exc:
        raise pydantic_error(exc) from None
    spec = get_event_type(envelope.type)
    if spec is None:
        known = ", ".join(sorted(event_types()))
        raise PayloadError("type", f"unknown event type {envelope.type!r}; known: {known}")
    try:
        spec.data_model.model_validate(envelope.data)
    except ValidationError as exc:
        raise pydantic_error(exc, "data") from None
    return CommonEvent(envelope.id, spec, envelope.timestamp, envelope.data)
