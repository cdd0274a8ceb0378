"""One processing pass over the inbox: claim due events, apply them, record each outcome.

This is what the Dagster job ``maintenance_events_job`` runs; it holds no Dagster objects so
tests, the benchmark and the demo call it the same way. Order of effects for a batch: Delta
MERGE of the canonical rows, MERGE of the event rows, then the statuses in the state database.
A run killed between the lake commit and the status update leaves the events ``processing``;
after the lease another run applies them again, which the MERGE guards make a no-op.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from integration_platform.webhooks import inbox
from integration_platform.webhooks.inbox import ClaimedEvent, RetryPolicy

if TYPE_CHECKING:
    from integration_platform.lake import DeltaLake

log = logging.getLogger("integration_platform.webhooks.processing")

DEFAULT_BATCH_SIZE = 500
DEFAULT_TIME_BUDGET_SECONDS = 120.0


@dataclass
class ProcessingReport:
    """What one pass did, for run metadata and logs."""

    batches: int = 0
    claimed: int = 0
    processed: int = 0
    stale: int = 0
    failed: int = 0
    dead_lettered: int = 0
    lost_claims: int = 0
    expired_leases: int = 0
    records_written: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.claimed} claimed in {self.batches} batch(es): {self.processed} processed "
            f"({self.stale} without change), {self.failed} to retry, {self.dead_lettered} dead "
            f"letter(s), {self.expired_leases} lease(s) expired, {self.lost_claims} claim(s) lost"
        )


def process_due(
    engine: Engine,
    lake: DeltaLake,
    *,
    token: str,
    source: str,
    entity_type: str,
    up_to: datetime | None = None,
    policy: RetryPolicy | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS,
    rng: random.Random | None = None,
    after_claim: Callable[[list[ClaimedEvent]], None] | None = None,
) -> ProcessingReport:
    """Process the due events of one source and entity type, batch after batch.

    ``token`` identifies the claimant (the Dagster run id): a retried step resumes the events
    its run still holds before claiming new ones. Stops when nothing due is left (up to
    ``up_to``) or the time budget is spent; what is left is found by the next sensor tick.
    """
    from integration_platform.webhooks.apply import apply_events

    policy = policy or RetryPolicy()
    report = ProcessingReport()
    report.expired_leases = inbox.expire_leases(engine, policy)
    started = time.monotonic()
    batch = inbox.resume(engine, token, policy=policy)
    while True:
        claimed_now = not batch
        if claimed_now:
            batch = inbox.claim(
                engine,
                token,
                source=source,
                entity_type=entity_type,
                policy=policy,
                limit=batch_size,
                up_to=up_to,
            )
        if not batch:
            break
        if after_claim is not None:
            after_claim(batch)
        report.batches += 1
        report.claimed += len(batch)
        applied = apply_events(lake, batch, commit_metadata={"webhook_claim": token})
        result = inbox.record(engine, token, applied.outcomes, policy=policy, rng=rng)
        report.processed += result.processed
        report.failed += result.failed
        report.dead_lettered += result.dead_lettered
        report.lost_claims += result.lost_claims
        report.stale += applied.stale
        report.records_written += applied.records_written
        report.versions.update(applied.versions)
        report.errors.extend(o.error for o in applied.outcomes if o.error)
        if result.lost_claims:
            log.warning(
                "%d event(s) were taken over by another run before %s recorded them",
                result.lost_claims,
                token,
            )
        batch = []
        if claimed_now and len(applied.outcomes) < batch_size:
            break
        if time.monotonic() - started > time_budget_seconds:
            break
    return report
