"""Alerts for the webhook inbox: dead letters need a person; a growing wait means a stall."""

import os

import dagster as dg

from integration_platform.defs.webhooks.assets import GOLD_WEBHOOK_STATUS
from integration_platform.state import StateDatabase

MAX_PENDING_AGE_VAR = "WEBHOOK_MAX_PENDING_AGE_SECONDS"
DEFAULT_MAX_PENDING_AGE_SECONDS = 900.0


def max_pending_age_seconds() -> float:
    raw = os.environ.get(MAX_PENDING_AGE_VAR, "").strip()
    return float(raw) if raw else DEFAULT_MAX_PENDING_AGE_SECONDS


@dg.asset_check(
    asset=GOLD_WEBHOOK_STATUS,
    name="webhook_inbox_healthy",
    description="Fails when dead letters exist (replay them: `integration-platform webhooks "
    "replay`) or the oldest event still to process waited longer than "
    f"{MAX_PENDING_AGE_VAR} (default {DEFAULT_MAX_PENDING_AGE_SECONDS:.0f} s).",
)
def webhook_inbox_healthy(state: StateDatabase) -> dg.AssetCheckResult:
    from integration_platform.webhooks.inbox import inbox_status

    status = inbox_status(state.engine())
    limit = max_pending_age_seconds()
    age = status.oldest_pending_age_seconds
    problems = []
    if status.dead_letters:
        problems.append(f"{status.dead_letters} dead letter(s)")
    if age > limit:
        problems.append(f"the oldest open event waited {age:.0f} s (limit {limit:.0f} s)")
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or "no dead letters, processing keeps up",
        metadata={
            "dead_letters": status.dead_letters,
            "oldest_open_age_seconds": round(age, 1),
            "max_pending_age_seconds": limit,
        },
    )
