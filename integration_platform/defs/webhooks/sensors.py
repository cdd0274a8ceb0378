"""``maintenance_events_pending_sensor``: launch processing runs for due webhook events.

Each tick runs one bounded, indexed query (due events by source and entity type) and requests
one run per group, so a thousand events a minute are a handful of runs, not a thousand. The
run key names the group and its window (the latest ``next_attempt_at`` seen): the daemon never
launches two runs for one window. The cursor remembers the window requested per group, so a
tick that sees the same events while their run is still queued requests nothing; if they are
still due ``REREQUEST_AFTER`` later (the run failed before claiming them), the group is
requested again under a new key.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from integration_platform.defs.webhooks.jobs import (
    GROUP_TAG,
    PROCESS_OP,
    maintenance_events_job,
    webhook_status_job,
)
from integration_platform.state import StateDatabase

SENSOR_NAME = "maintenance_events_pending_sensor"
MINIMUM_INTERVAL_SECONDS = 5
REREQUEST_AFTER = timedelta(minutes=5)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def plan_runs(
    groups: list[Any], cursor: dict[str, Any], now: datetime
) -> tuple[list[dg.RunRequest], dict[str, Any]]:
    """Run requests for due groups and the new cursor; pure, so it is tested directly."""
    requests = []
    cursor = dict(cursor)
    for group in groups:
        key = f"{group.source}/{group.entity_type}"
        window = _iso(group.window_end)
        previous = cursor.get(key)
        generation = 0
        if previous is not None and previous["window_end"] >= window:
            requested_at = datetime.fromisoformat(previous["requested_at"])
            if now - requested_at < REREQUEST_AFTER:
                continue
            generation = int(previous.get("generation", 0)) + 1
        run_key = f"{key}@{window}" + (f"#{generation}" if generation else "")
        requests.append(
            dg.RunRequest(
                run_key=run_key,
                run_config={
                    "ops": {
                        PROCESS_OP: {
                            "config": {
                                "source": group.source,
                                "entity_type": group.entity_type,
                                "up_to": window,
                            }
                        }
                    }
                },
                tags={GROUP_TAG: key},
            )
        )
        cursor[key] = {
            "window_end": max(window, previous["window_end"]) if previous else window,
            "requested_at": _iso(now),
            "generation": generation,
        }
    return requests, cursor


@dg.sensor(
    name=SENSOR_NAME,
    job=maintenance_events_job,
    minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Finds due webhook events (by status and next_attempt_at, never by id) and "
    "launches one maintenance_events_job run per source and entity type.",
)
def maintenance_events_pending_sensor(
    context: dg.SensorEvaluationContext, state: StateDatabase
) -> dg.SensorResult | dg.SkipReason:
    import sqlalchemy as sa

    from integration_platform.webhooks.inbox import due_groups

    now = datetime.now(UTC)
    try:
        groups = due_groups(state.engine(), now=now)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        # Not migrated yet (no inbox table) or unreachable: nothing to launch this tick.
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        return dg.SkipReason(f"the webhook inbox cannot be read: {reason}")
    if not groups:
        return dg.SkipReason("no webhook events due")
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests, cursor = plan_runs(groups, cursor, now)
    if not requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason("due events already have runs requested"),
            cursor=json.dumps(cursor, sort_keys=True),
        )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))


webhook_status_schedule = dg.ScheduleDefinition(
    name="webhook_status_schedule",
    job=webhook_status_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refresh gold/webhook_status and run its check every five minutes.",
)
