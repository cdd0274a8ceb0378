"""The processing side of the inbox: find due events, claim them, record each outcome.

Events are found by status and ``next_attempt_at``, never by id: ids are handed out when a
transaction starts and can commit out of order, so a poller that remembered "the last id" would
skip an event that committed late. The life of an event::

    pending --claim--> processing --applied--> processed
                           |  \\--failed--> failed --(next_attempt_at)--> processing ...
                           |                   \\--(max attempts)--> dead_letter --replay--> pending
                           \\--lease passed (run killed)--> failed (counts as an attempt)

A claim is exclusive: on PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``
(two runs claiming at once take different events without waiting for each other); on SQLite
every write transaction holds the database lock (``BEGIN IMMEDIATE``) and the update is guarded
by the old status. While an event is ``processing``, ``next_attempt_at`` is the end of the
claiming run's lease, so the same "due" index finds events whose run died. Outcomes are written
only by the run that holds the claim (``claimed_by``).

Events of one record are claimed in ``occurred_at`` order (then receipt): an event is not
claimed while an earlier open event of the same record waits for its retry or is held by
another run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from integration_platform.state.models import MaintenanceEventHook

_T = MaintenanceEventHook.__table__
DUE_STATUSES = ("pending", "failed")
OPEN_STATUSES = ("pending", "processing", "failed")
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed event is tried again, and how long a claim holds.

    The delay before retry ``n`` (1-based) is ``base * 2**(n-1)`` capped at ``max_delay``, half
    of it fixed and half random ("equal jitter"): retries of events that failed together (a
    target that was down) spread out instead of arriving together, and never come back at once.
    """

    max_attempts: int = 5
    base_delay_seconds: float = 10.0
    max_delay_seconds: float = 3600.0
    lease_seconds: float = 300.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1 for the first failure)."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** max(0, attempt - 1))
        jitter = (rng or random).uniform(0, ceiling / 2)
        return timedelta(seconds=ceiling / 2 + jitter)


@dataclass(frozen=True)
class ClaimedEvent:
    """One event held by a processing run."""

    id: int
    source: str
    event_id: str
    event_type: str
    entity_type: str
    entity_external_id: str
    occurred_at: datetime
    received_at: datetime
    payload: Any
    message_format: str | None
    retry_count: int

    @property
    def order_key(self) -> tuple[datetime, datetime, int]:
        return (self.occurred_at, self.received_at, self.id)


@dataclass(frozen=True)
class DueGroup:
    """Due events of one source and entity type, as the sensor sees them."""

    source: str
    entity_type: str
    count: int
    window_end: datetime
    """The latest ``next_attempt_at`` among them: a run for this group claims up to it."""


@dataclass
class RecordResult:
    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    lost_claims: int = 0
    """Outcomes not written because another run took the claim over (lease passed)."""
    dead_letter_ids: list[int] = field(default_factory=list)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _claim_columns() -> list[Any]:
    return [
        _T.c.id,
        _T.c.cmms_system_id,
        _T.c.event_id,
        _T.c.event_type,
        _T.c.entity_type,
        _T.c.entity_external_id,
        _T.c.occurred_at,
        _T.c.received_at,
        _T.c.event_payload,
        _T.c.message_format,
        _T.c.retry_count,
    ]


def _to_event(row: Any) -> ClaimedEvent:
    return ClaimedEvent(
        id=row.id,
        source=row.cmms_system_id,
        event_id=row.event_id,
        event_type=row.event_type,
        entity_type=row.entity_type or "",
        entity_external_id=row.entity_external_id or "",
        occurred_at=row.occurred_at or row.received_at,
        received_at=row.received_at,
        payload=row.event_payload,
        message_format=row.message_format,
        retry_count=row.retry_count,
    )


def expire_leases(engine: Engine, policy: RetryPolicy, *, now: datetime | None = None) -> int:
    """Hand back events whose run held them past the lease (killed, hung); counts an attempt.

    Counting it keeps an event that kills its worker every time (memory, a crash in a library)
    from looping forever: after ``max_attempts`` it goes to ``dead_letter`` like any failure.
    """
    now = now or utcnow()
    attempts = _T.c.retry_count + 1
    statement = (
        sa.update(_T)
        .where(_T.c.processing_status == "processing", _T.c.next_attempt_at <= now)
        .values(
            processing_status=sa.case(
                (attempts >= policy.max_attempts, "dead_letter"), else_="failed"
            ),
            retry_count=attempts,
            error_message=sa.literal("lease expired: the run ")
            + sa.func.coalesce(_T.c.claimed_by, "?")
            + sa.literal(" did not finish the event"),
            # next_attempt_at stays the end of the lease: already due, and inside the window
            # of the sensor tick that saw it.
            claimed_by=None,
        )
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount or 0


def claim(
    engine: Engine,
    token: str,
    *,
    source: str,
    entity_type: str,
    policy: RetryPolicy,
    limit: int = 500,
    up_to: datetime | None = None,
    now: datetime | None = None,
) -> list[ClaimedEvent]:
    """Move up to ``limit`` due events of one source and entity type to ``processing``.

    Due means ``pending`` or ``failed`` with ``next_attempt_at`` at or before ``up_to`` (the
    sensor's window; default now). Returns them in per-record order (``occurred_at``, receipt).
    """
    now = now or utcnow()
    cutoff = min(up_to, now) if up_to is not None else now
    earlier = _T.alias("earlier")
    blocked_by_earlier = sa.exists().where(
        earlier.c.cmms_system_id == _T.c.cmms_system_id,
        earlier.c.entity_type == _T.c.entity_type,
        earlier.c.entity_external_id == _T.c.entity_external_id,
        earlier.c.processing_status.in_(OPEN_STATUSES),
        sa.tuple_(earlier.c.occurred_at, earlier.c.received_at, earlier.c.id)
        < sa.tuple_(_T.c.occurred_at, _T.c.received_at, _T.c.id),
        sa.or_(earlier.c.processing_status == "processing", earlier.c.next_attempt_at > cutoff),
    )
    candidates = (
        sa.select(_T.c.id)
        .where(
            _T.c.processing_status.in_(DUE_STATUSES),
            _T.c.next_attempt_at <= cutoff,
            _T.c.cmms_system_id == source,
            _T.c.entity_type == entity_type,
            ~blocked_by_earlier,
        )
        .order_by(_T.c.occurred_at, _T.c.received_at, _T.c.id)
        .limit(limit)
    )
    if engine.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        sa.update(_T)
        # The old status is part of the guard: on SQLite it is what makes the claim exclusive.
        .where(_T.c.id.in_(candidates.scalar_subquery()), _T.c.processing_status.in_(DUE_STATUSES))
        .values(
            processing_status="processing",
            claimed_by=token,
            claimed_at=now,
            next_attempt_at=now + timedelta(seconds=policy.lease_seconds),
        )
        .returning(*_claim_columns())
    )
    with engine.begin() as connection:
        rows = connection.execute(statement).all()
    return sorted((_to_event(row) for row in rows), key=lambda event: event.order_key)


def resume(
    engine: Engine, token: str, *, policy: RetryPolicy, now: datetime | None = None
) -> list[ClaimedEvent]:
    """Events this run claimed but has not finished (a retried step): renew the lease, return."""
    now = now or utcnow()
    statement = (
        sa.update(_T)
        .where(_T.c.processing_status == "processing", _T.c.claimed_by == token)
        .values(claimed_at=now, next_attempt_at=now + timedelta(seconds=policy.lease_seconds))
        .returning(*_claim_columns())
    )
    with engine.begin() as connection:
        rows = connection.execute(statement).all()
    return sorted((_to_event(row) for row in rows), key=lambda event: event.order_key)


@dataclass(frozen=True)
class Outcome:
    """What applying one event came to: ``error`` None means processed."""

    event: ClaimedEvent
    error: str | None = None
    note: str | None = None


def record(
    engine: Engine,
    token: str,
    outcomes: Iterable[Outcome],
    *,
    policy: RetryPolicy,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> RecordResult:
    """Write each outcome in one transaction, only for events this run still holds."""
    now = now or utcnow()
    result = RecordResult()
    done = [o for o in outcomes]
    held = sa.and_(_T.c.processing_status == "processing", _T.c.claimed_by == token)
    with engine.begin() as connection:
        processed = [o for o in done if o.error is None]
        plain = [o.event.id for o in processed if o.note is None]
        if plain:
            count = connection.execute(
                sa.update(_T)
                .where(held, _T.c.id.in_(plain))
                .values(
                    processing_status="processed",
                    processed_at=now,
                    error_message=None,
                    claimed_by=None,
                )
            ).rowcount
            result.processed += count
            result.lost_claims += len(plain) - count
        for outcome in processed:
            if outcome.note is None:
                continue
            count = connection.execute(
                sa.update(_T)
                .where(held, _T.c.id == outcome.event.id)
                .values(
                    processing_status="processed",
                    processed_at=now,
                    error_message=outcome.note[:MAX_ERROR_CHARS],
                    claimed_by=None,
                )
            ).rowcount
            result.processed += count
            result.lost_claims += 1 - count
        for outcome in done:
            if outcome.error is None:
                continue
            attempts = outcome.event.retry_count + 1
            dead = attempts >= policy.max_attempts
            count = connection.execute(
                sa.update(_T)
                .where(held, _T.c.id == outcome.event.id)
                .values(
                    processing_status="dead_letter" if dead else "failed",
                    retry_count=attempts,
                    error_message=outcome.error[:MAX_ERROR_CHARS],
                    claimed_by=None,
                    next_attempt_at=now if dead else now + policy.delay(attempts, rng),
                )
            ).rowcount
            if not count:
                result.lost_claims += 1
            elif dead:
                result.dead_lettered += 1
                result.dead_letter_ids.append(outcome.event.id)
            else:
                result.failed += 1
    return result


def due_groups(
    engine: Engine, *, now: datetime | None = None, scan_limit: int = 10_000
) -> list[DueGroup]:
    """Due events (including expired leases) by source and entity type; one bounded query.

    At most ``scan_limit`` due rows are looked at, soonest first, so a large backlog cannot
    make a sensor tick slow; the rest is seen on later ticks.
    """
    now = now or utcnow()
    due = (
        sa.select(_T.c.cmms_system_id, _T.c.entity_type, _T.c.next_attempt_at)
        .where(_T.c.processing_status.in_(OPEN_STATUSES), _T.c.next_attempt_at <= now)
        .order_by(_T.c.next_attempt_at)
        .limit(scan_limit)
        .subquery()
    )
    statement = sa.select(
        due.c.cmms_system_id,
        due.c.entity_type,
        sa.func.count(),
        sa.func.max(due.c.next_attempt_at),
    ).group_by(due.c.cmms_system_id, due.c.entity_type)
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    groups = []
    for source, entity_type, count, window_end in rows:
        if isinstance(window_end, str):  # SQLite's max() returns text, not the column type
            window_end = datetime.fromisoformat(window_end)
        if window_end.tzinfo is None:
            window_end = window_end.replace(tzinfo=UTC)
        groups.append(DueGroup(source, entity_type or "", int(count), window_end))
    return sorted(groups, key=lambda group: (group.source, group.entity_type))


def replay(
    engine: Engine,
    *,
    source: str | None = None,
    event_ids: Sequence[str] = (),
    now: datetime | None = None,
) -> int:
    """Queue dead letters again with a fresh attempt count; returns how many."""
    now = now or utcnow()
    conditions = [_T.c.processing_status == "dead_letter"]
    if source:
        conditions.append(_T.c.cmms_system_id == source)
    if event_ids:
        conditions.append(_T.c.event_id.in_(list(event_ids)))
    statement = (
        sa.update(_T)
        .where(*conditions)
        .values(
            processing_status="pending",
            retry_count=0,
            next_attempt_at=now,
            claimed_by=None,
            error_message=sa.literal("replayed after: ") + sa.func.coalesce(_T.c.error_message, ""),
        )
    )
    with engine.begin() as connection:
        return connection.execute(statement).rowcount or 0


@dataclass(frozen=True)
class InboxStatus:
    """Counts by source and status, the oldest waiting event and the dead letters."""

    counts: dict[tuple[str, str], int]
    oldest_pending_at: datetime | None
    dead_letters: int
    as_of: datetime

    @property
    def oldest_pending_age_seconds(self) -> float:
        if self.oldest_pending_at is None:
            return 0.0
        return max(0.0, (self.as_of - self.oldest_pending_at).total_seconds())


def inbox_status(engine: Engine, *, now: datetime | None = None) -> InboxStatus:
    """Two grouped queries; the open-status ones use the partial index on PostgreSQL."""
    now = now or utcnow()
    counts_query = sa.select(_T.c.cmms_system_id, _T.c.processing_status, sa.func.count()).group_by(
        _T.c.cmms_system_id, _T.c.processing_status
    )
    oldest_query = sa.select(sa.func.min(_T.c.received_at)).where(
        _T.c.processing_status.in_(OPEN_STATUSES)
    )
    with engine.connect() as connection:
        counts = {(s, st): int(n) for s, st, n in connection.execute(counts_query).all()}
        oldest = connection.execute(oldest_query).scalar()
    if isinstance(oldest, str):
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    dead = sum(n for (_, status), n in counts.items() if status == "dead_letter")
    return InboxStatus(counts=counts, oldest_pending_at=oldest, dead_letters=dead, as_of=now)
