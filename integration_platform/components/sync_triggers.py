"""Webhook triggers: a sensor that starts a sync when the inbox receives events for it.

The events that count are the inbox rows (``maintenance_event_hooks``) of the sync's entity
from the declared webhook sources, in the declared statuses. The sync itself reads what
changed in both systems (in full or incrementally), so an event only says *when* to run, and
what has to hold is: every event that commits is followed by a run that starts after it.

Neither the id nor ``received_at`` is a safe high-water mark: both are handed out before the
receiver's transaction commits, and transactions commit out of order (RELIABILITY.md,
"PostgreSQL as an inbox"). The cursor is therefore a *horizon* that trails the clock by
:data:`COMMIT_LAG` plus the ids of the events received after it that were already seen. Each
tick reads the events received after the horizon, starts a run if one of them is not in the
seen set, then moves the horizon to ``now - COMMIT_LAG`` and keeps the ids received after the
new horizon. An event that commits within ``COMMIT_LAG`` of its ``received_at`` (the receiver
commits before it answers, in milliseconds) is therefore seen exactly once; a status change
(pending -> processed) does not make an event new again.

A burst of events while a run of the sync is still queued requests nothing more: the queued
run has not read the systems yet and will see those changes.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from integration_platform.components.sync_resolve import SYNC_TAG, ResolvedSync
from integration_platform.state import StateDatabase

if TYPE_CHECKING:
    import sqlalchemy as sa

COMMIT_LAG = timedelta(seconds=60)
"""Longest time between an event's ``received_at`` and its commit (and clock skew between the
receiver and the daemon) the trigger tolerates."""
SCAN_LIMIT = 5000
"""Events read per tick (newest first); more than this after the horizon means a run anyway."""
TRIGGER_TAG = "integration_platform/sync_trigger"
WAITING = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
)


@dataclass(frozen=True)
class InboxEvent:
    """The part of an inbox row the trigger looks at."""

    id: int
    source: str
    received_at: datetime


@dataclass(frozen=True)
class TriggerCursor:
    """The sensor's cursor: the horizon and the ids seen after it."""

    horizon: datetime
    seen: frozenset[int]

    def dumps(self) -> str:
        return json.dumps(
            {"horizon": self.horizon.isoformat(), "seen": sorted(self.seen)}, sort_keys=True
        )

    @classmethod
    def loads(cls, text: str | None, now: datetime) -> "TriggerCursor":
        """The stored cursor; a first tick (or a cursor from another version, reset in the
        UI) starts ``COMMIT_LAG`` before now."""
        try:
            data = json.loads(text or "")
            return cls(datetime.fromisoformat(data["horizon"]), frozenset(map(int, data["seen"])))
        except (ValueError, KeyError, TypeError):
            return cls(now - COMMIT_LAG, frozenset())


def recent_events(
    engine: "sa.Engine",
    *,
    sources: Sequence[str],
    entity_type: str,
    statuses: Sequence[str],
    after: datetime,
    limit: int = SCAN_LIMIT,
) -> list[InboxEvent]:
    """Inbox events of the entity from ``sources`` received after ``after``, newest first."""
    import sqlalchemy as sa

    from integration_platform.state.models import MaintenanceEventHook

    table = MaintenanceEventHook.__table__
    query = (
        sa.select(table.c.id, table.c.cmms_system_id, table.c.received_at)
        .where(
            table.c.entity_type == entity_type,
            table.c.cmms_system_id.in_(list(sources)),
            table.c.processing_status.in_(list(statuses)),
            table.c.received_at > after,
        )
        .order_by(table.c.received_at.desc(), table.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).fetchall()
    return [InboxEvent(int(r[0]), str(r[1]), _aware(r[2])) for r in rows]


def plan_trigger(
    events: Sequence[InboxEvent], cursor: TriggerCursor, now: datetime
) -> tuple[list[InboxEvent], TriggerCursor]:
    """The events not seen before and the next cursor; pure, so it is tested directly."""
    new = [event for event in events if event.id not in cursor.seen]
    horizon = max(cursor.horizon, now - COMMIT_LAG)
    recent = [event for event in events if event.received_at > horizon]
    return new, TriggerCursor(horizon, frozenset(event.id for event in recent[:SCAN_LIMIT]))


def run_key(sync_name: str, events: Sequence[InboxEvent]) -> str:
    """One key per set of new events, so the daemon never starts two runs for the same set."""
    digest = hashlib.sha1(",".join(str(e.id) for e in sorted(events, key=lambda e: e.id)).encode())
    newest = max(event.received_at for event in events).isoformat(timespec="microseconds")
    return f"{sync_name}:webhook:{newest}:{digest.hexdigest()[:12]}"


def build_trigger_sensor(sync: ResolvedSync, job: dg.JobDefinition) -> dg.SensorDefinition:
    """The ``sync_<name>_webhook_sensor`` of a sync with triggers."""
    triggers = sync.declaration.triggers
    sources = sorted({t.webhook_source or t.system for t in triggers})
    statuses = sorted({status for t in triggers for status in t.statuses})
    entity = sync.spec.entity

    @dg.sensor(
        name=sync.sensor_name,
        job=job,
        minimum_interval_seconds=sync.declaration.trigger_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Starts {sync.job_name} when the webhook inbox receives {entity} events "
        f"from {', '.join(sources)} (statuses {', '.join(statuses)}).",
    )
    def trigger(context: dg.SensorEvaluationContext, state: StateDatabase) -> dg.SensorResult:
        import sqlalchemy as sa

        now = datetime.now(UTC)
        cursor = TriggerCursor.loads(context.cursor, now)
        try:
            events = recent_events(
                state.engine(),
                sources=sources,
                entity_type=entity,
                statuses=statuses,
                after=cursor.horizon,
            )
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            # Not migrated yet or unreachable: keep the cursor, look again next tick.
            reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
            return dg.SensorResult(skip_reason=f"the webhook inbox cannot be read: {reason}")
        new, following = plan_trigger(events, cursor, now)
        if not new:
            return dg.SensorResult(skip_reason="no new events", cursor=following.dumps())
        if _run_waiting(context, sync.job_name):
            return dg.SensorResult(
                skip_reason=f"{len(new)} new event(s); a queued run of {sync.job_name} will "
                "read their changes",
                cursor=following.dumps(),
            )
        request = dg.RunRequest(
            run_key=run_key(sync.name, new),
            tags={
                SYNC_TAG: sync.name,
                TRIGGER_TAG: "webhook",
                "integration_platform/sync_events": str(len(new)),
            },
        )
        context.log.info(
            f"{len(new)} new {entity} event(s) from {', '.join(sorted({e.source for e in new}))}"
        )
        return dg.SensorResult(run_requests=[request], cursor=following.dumps())

    return trigger


def _run_waiting(context: dg.SensorEvaluationContext, job_name: str) -> bool:
    """A run of the job that has not started reading yet (queued or starting)."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:  # evaluated without an instance (a test)
        return False
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=job_name, statuses=list(WAITING)), limit=1
    )
    return bool(runs)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
