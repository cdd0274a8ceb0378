"""The inbox write: one transaction, committed before the sender hears anything.

``INSERT ... ON CONFLICT (cmms_system_id, event_id) DO NOTHING`` makes a redelivery harmless
without a read-then-write race: two receivers given the same event at once both answer 202, and
one row exists. The functions here block; the application runs them on worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from integration_platform.state.models import MaintenanceEventHook

_TABLE = MaintenanceEventHook.__table__
_KEY = ["cmms_system_id", "event_id"]


class InboxUnavailable(Exception):
    """The database cannot take the event now (down, unreachable, locked): try again later."""


class InboxRefused(Exception):
    """The database refused the values themselves; retrying the same message will not help."""


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    row_id: int
    duplicate: bool
    """True when the event was already in the inbox; ``row_id`` is then the original row."""


@dataclass(frozen=True)
class InboxEvent:
    """One verified, validated event, ready to be written."""

    source: str
    event_id: str
    event_type: str
    entity_type: str
    entity_external_id: str
    occurred_at: datetime | None
    received_at: datetime
    payload: Any
    signature: str
    signature_scheme: str
    message_format: str | None = None
    """How the body was read (``common``, ``maximo``, ...); the processing side maps by it."""


def _insert(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(_TABLE)
    if dialect == "sqlite":
        return sqlite.insert(_TABLE)
    raise ValueError(f"the inbox supports PostgreSQL and SQLite, not {dialect}")


def store_event(engine: Engine, event: InboxEvent) -> StoredEvent:
    """Insert ``event`` unless its (source, event id) is already stored; commit; say which.

    Raises ``InboxUnavailable`` when the database cannot be reached or stays locked, and
    ``InboxRefused`` when it rejects the data; nothing is stored in either case.
    """
    statement = (
        _insert(engine.dialect.name)
        .values(
            cmms_system_id=event.source,
            event_id=event.event_id,
            event_type=event.event_type,
            entity_type=event.entity_type,
            entity_external_id=event.entity_external_id,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            next_attempt_at=event.received_at,
            event_payload=event.payload,
            hmac_signature=event.signature,
            signature_scheme=event.signature_scheme,
            message_format=event.message_format,
        )
        .on_conflict_do_nothing(index_elements=_KEY)
        .returning(_TABLE.c.id)
    )
    original = sa.select(_TABLE.c.id).where(
        _TABLE.c.cmms_system_id == event.source, _TABLE.c.event_id == event.event_id
    )
    try:
        with engine.begin() as connection:
            row_id = connection.execute(statement).scalar_one_or_none()
            duplicate = row_id is None
            if duplicate:
                # On PostgreSQL the insert waited for a concurrent writer of the same event to
                # finish; read committed lets this statement see its row.
                row_id = connection.execute(original).scalar_one()
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        raise InboxUnavailable(_reason(exc)) from exc
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise InboxUnavailable(_reason(exc)) from exc
        if isinstance(exc, sa.exc.DataError):
            raise InboxRefused(_reason(exc)) from exc
        raise
    return StoredEvent(event.event_id, row_id, duplicate)


def _values(event: InboxEvent) -> dict[str, Any]:
    return {
        "cmms_system_id": event.source,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "entity_type": event.entity_type,
        "entity_external_id": event.entity_external_id,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "next_attempt_at": event.received_at,
        "event_payload": event.payload,
        "hmac_signature": event.signature,
        "signature_scheme": event.signature_scheme,
        "message_format": event.message_format,
    }


def store_events(engine: Engine, events: list[InboxEvent]) -> list[StoredEvent | InboxRefused]:
    """Insert many events in one transaction (group commit); one answer per event, in order.

    The same guarantees as :func:`store_event` for each of them: after this returns, every
    event is committed (or was already stored: ``duplicate``). Only the round trips are shared.
    A value the database refuses fails the whole statement, so the events are then stored one
    by one and only the offending one raises ``InboxRefused`` — returned in its place.
    """
    if len(events) == 1:
        return [store_event(engine, events[0])]
    table = _TABLE
    statement = (
        _insert(engine.dialect.name)
        .values([_values(event) for event in events])
        .on_conflict_do_nothing(index_elements=_KEY)
        .returning(table.c.id, table.c.cmms_system_id, table.c.event_id)
    )
    try:
        with engine.begin() as connection:
            inserted = {(s, e): i for i, s, e in connection.execute(statement).all()}
            missing = {(e.source, e.event_id) for e in events} - set(inserted)
            originals: dict[tuple[str, str], int] = {}
            if missing:
                keys = sa.tuple_(table.c.cmms_system_id, table.c.event_id).in_(sorted(missing))
                query = sa.select(table.c.id, table.c.cmms_system_id, table.c.event_id).where(keys)
                originals = {(s, e): i for i, s, e in connection.execute(query).all()}
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        raise InboxUnavailable(_reason(exc)) from exc
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise InboxUnavailable(_reason(exc)) from exc
        if isinstance(exc, sa.exc.DataError):
            return [_store_or_refusal(engine, event) for event in events]
        raise
    results: list[StoredEvent | InboxRefused] = []
    answered: set[tuple[str, str]] = set()
    for event in events:
        key = (event.source, event.event_id)
        if key in inserted and key not in answered:
            results.append(StoredEvent(event.event_id, inserted[key], False))
        else:  # stored before, or a second copy within this very batch
            results.append(StoredEvent(event.event_id, inserted.get(key) or originals[key], True))
        answered.add(key)
    return results


def _store_or_refusal(engine: Engine, event: InboxEvent) -> Any:
    try:
        return store_event(engine, event)
    except InboxRefused as exc:
        return exc


def ping(engine: Engine) -> None:
    """One round trip; raises ``InboxUnavailable`` when the database does not answer."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        raise InboxUnavailable(_reason(exc)) from exc
    except sa.exc.DBAPIError as exc:
        raise InboxUnavailable(_reason(exc)) from exc


def _reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    return " ".join(str(original).split())[:300]
