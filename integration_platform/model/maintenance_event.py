"""The canonical maintenance event (a webhook notification)."""

from __future__ import annotations

import json

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from integration_platform.model.base import (
    CanonicalModel,
    Str,
    UtcTimestamp,
    enum_field,
    id_field,
    timestamp_field,
)
from integration_platform.model.enums import EntityType, EventType


def _is_json(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class MaintenanceEvent(CanonicalModel):
    """A change announced by a source system's webhook: "work order 1001 in Maximo was
    completed".

    Events are stored before they are acknowledged and trigger the syncs that fetch and apply
    the change. ``event_id`` is the sender's delivery id (Standard Webhooks ``webhook-id``), so
    a redelivered event is recognised and stored once.
    """

    event_id: Series[Str] = id_field(
        "Delivery id from the sender (webhook-id), unique per event.", unique=True
    )
    source_system: Series[Str] = id_field("Configured name of the system that sent the event.")
    event_type: Series[Str] = enum_field(
        EventType, "What happened: created, updated, deleted or status_changed."
    )
    entity: Series[Str] = enum_field(
        EntityType, "Kind of record concerned, e.g. work_order, asset, purchase_order."
    )
    entity_external_id: Series[Str] = id_field(
        "Identifier of the record concerned in the sending system."
    )
    occurred_at: Series[UtcTimestamp] = timestamp_field(
        "When the change happened in the source system (UTC).", nullable=False
    )
    received_at: Series[UtcTimestamp] = timestamp_field(
        "When the platform received the event (UTC).", nullable=False
    )
    payload: Series[Str] = pa.Field(
        description="The event body exactly as received, as a JSON string.",
    )

    @pa.check("payload", element_wise=False, error="is not valid JSON")
    def payload_is_json(cls, payload: pd.Series) -> Series[bool]:
        return payload.map(_is_json, na_action="ignore").fillna(False).astype(bool)
