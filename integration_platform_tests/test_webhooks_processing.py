"""Processing the webhook inbox against real SQLite and PostgreSQL and a real Delta lake.

Claims, per-record order, retries with backoff, dead letters, replay, and a run killed in the
middle of a batch (claimed, half applied, abandoned): after its lease passes, the next run
applies the events again and the silver tables show each of them exactly once in effect.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from integration_platform.lake import DeltaLake
from integration_platform.state import MaintenanceEventHook, make_engine, upgrade
from integration_platform.webhooks import inbox, store
from integration_platform.webhooks.adapters import normalize
from integration_platform.webhooks.apply import apply_events
from integration_platform.webhooks.inbox import RetryPolicy
from integration_platform.webhooks.processing import process_due
from integration_platform.webhooks.samples import sample_document

T = MaintenanceEventHook.__table__
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=3, base_delay_seconds=0.05, max_delay_seconds=0.1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def lake(tmp_path: Path) -> DeltaLake:
    return DeltaLake(uri=str(tmp_path / "lake"))


def put(
    engine: sa.Engine,
    document: dict[str, Any],
    *,
    source: str = "maximo",
    message_format: str = "maximo",
    event_id: str | None = None,
    received_at: datetime | None = None,
) -> str:
    """Store an event as the receiver would (normalized, with its format)."""
    normalized = normalize(message_format, document)
    received = received_at or datetime.now(UTC)
    event_id = event_id or normalized.event_id or uuid.uuid4().hex
    store.store_event(
        engine,
        store.InboxEvent(
            source=source,
            event_id=event_id,
            event_type=normalized.event_type,
            entity_type=normalized.entity_type,
            entity_external_id=normalized.entity_external_id,
            occurred_at=normalized.occurred_at or received,
            received_at=received,
            payload=document,
            signature="v1,test",
            signature_scheme="standard",
            message_format=message_format,
        ),
    )
    return event_id


def maximo(number: str, status: str, at: datetime, **extra: Any) -> dict[str, Any]:
    """A full Maximo work-order record as a publish channel sends it."""
    record = {
        "wonum": number,
        "siteid": "BEDFORD",
        "assetnum": "P-101",
        "description": f"Work order {number}",
        "worktype": "CM",
        "wopriority": 2,
        "status": status,
        "reportdate": (T0 - timedelta(days=1)).isoformat(),
        "changedate": at.isoformat(),
        "_rowstamp": str(int(at.timestamp() * 1000)),
    }
    if status == "COMP":
        record["actstart"] = (at - timedelta(hours=1)).isoformat()
        record["actfinish"] = at.isoformat()
    record.update(extra)
    return record


def statuses(engine: sa.Engine) -> dict[str, tuple[str, int]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(T.c.event_id, T.c.processing_status, T.c.retry_count))
        return {event_id: (status, retries) for event_id, status, retries in rows}


def silver(lake: DeltaLake, table: str = "work_orders") -> Any:
    return lake.read(["silver", table]).sort_values(lake.read(["silver", table]).columns[0])


def run(engine: sa.Engine, lake: DeltaLake, **kwargs: Any) -> Any:
    kwargs.setdefault("source", "maximo")
    kwargs.setdefault("entity_type", "work_order")
    kwargs.setdefault("policy", FAST)
    return process_due(engine, lake, token=kwargs.pop("token", uuid.uuid4().hex), **kwargs)


# ---- claiming --------------------------------------------------------------------------------


def test_claims_are_exclusive_and_in_per_record_order(engine: sa.Engine) -> None:
    # Received in the opposite order of their change times.
    put(engine, maximo("1", "INPRG", T0 + timedelta(minutes=2)), event_id="late")
    put(engine, maximo("1", "WAPPR", T0), event_id="early")
    put(engine, maximo("2", "WAPPR", T0), event_id="other")
    first = inbox.claim(engine, "a", source="maximo", entity_type="work_order", policy=FAST)
    second = inbox.claim(engine, "b", source="maximo", entity_type="work_order", policy=FAST)
    assert [e.event_id for e in first] == ["early", "other", "late"]
    assert second == []
    assert {s for s, _ in statuses(engine).values()} == {"processing"}


def test_a_later_event_waits_while_an_earlier_one_of_the_record_is_retrying(
    engine: sa.Engine,
) -> None:
    put(engine, maximo("1", "WAPPR", T0), event_id="early")
    claimed = inbox.claim(engine, "a", source="maximo", entity_type="work_order", policy=FAST)
    inbox.record(engine, "a", [inbox.Outcome(claimed[0], error="target down")], policy=FAST)
    put(engine, maximo("1", "INPRG", T0 + timedelta(minutes=1)), event_id="late")
    put(engine, maximo("2", "WAPPR", T0), event_id="unrelated")
    again = inbox.claim(engine, "b", source="maximo", entity_type="work_order", policy=FAST)
    assert [e.event_id for e in again] == ["unrelated"]
    time.sleep(0.15)  # the backoff of "early" passes
    last = inbox.claim(engine, "c", source="maximo", entity_type="work_order", policy=FAST)
    assert [e.event_id for e in last] == ["early", "late"]


@pytest.mark.postgres
def test_concurrent_claims_on_postgresql_never_share_an_event(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        for number in range(200):
            put(engine, maximo(str(number), "WAPPR", T0), event_id=f"e{number}")
        results: dict[str, list[str]] = {}

        def claimer(name: str) -> None:
            got: list[str] = []
            while batch := inbox.claim(
                engine, name, source="maximo", entity_type="work_order", policy=FAST, limit=7
            ):
                got += [event.event_id for event in batch]
            results[name] = got

        threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        claimed = [event_id for got in results.values() for event_id in got]
        assert sorted(claimed) == sorted(f"e{n}" for n in range(200))
        assert len(set(claimed)) == len(claimed)
    finally:
        engine.dispose()


def test_backoff_grows_exponentially_with_jitter() -> None:
    policy = RetryPolicy(base_delay_seconds=10, max_delay_seconds=100)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delays = {policy.delay(attempt, rng).total_seconds() for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


# ---- applying --------------------------------------------------------------------------------


def test_events_update_silver_in_order_and_are_logged_once(
    engine: sa.Engine, lake: DeltaLake
) -> None:
    put(engine, maximo("1001", "WAPPR", T0), event_id="created")
    # A partial status message: only the attributes that changed.
    status_change = {
        "wonum": "1001",
        "siteid": "BEDFORD",
        "status": "INPRG",
        "changedate": (T0 + timedelta(minutes=5)).isoformat(),
    }
    put(engine, status_change, event_id="started")
    report = run(engine, lake)
    assert report.processed == 2 and report.failed == 0, report.errors
    row = silver(lake).iloc[0]
    assert row["work_order_id"] == "maximo:BEDFORD:1001"
    assert row["status"] == "in_progress"
    assert row["title"] == "Work order 1001"  # kept: the status message did not carry it
    assert row["updated_at"] == T0 + timedelta(minutes=5)
    events = lake.read(["silver", "maintenance_events"])
    assert sorted(events["event_id"]) == ["created", "started"]
    assert set(events["source_system"]) == {"maximo"}


def test_an_older_event_never_overwrites_a_newer_one(engine: sa.Engine, lake: DeltaLake) -> None:
    put(engine, maximo("7", "COMP", T0 + timedelta(hours=1)), event_id="done")
    run(engine, lake)
    put(engine, maximo("7", "INPRG", T0), event_id="delayed")  # arrives late
    report = run(engine, lake)
    assert report.processed == 1 and report.stale == 1
    assert silver(lake).iloc[0]["status"] == "completed"
    assert statuses(engine)["delayed"] == ("processed", 0)
    assert len(lake.read(["silver", "maintenance_events"])) == 2


def test_applying_the_same_events_twice_changes_nothing(engine: sa.Engine, lake: DeltaLake) -> None:
    for number in range(5):
        put(engine, maximo(str(number), "INPRG", T0), event_id=f"e{number}")
    claimed = inbox.claim(engine, "a", source="maximo", entity_type="work_order", policy=FAST)
    apply_events(lake, claimed)
    before = (silver(lake), lake.read(["silver", "maintenance_events"]))
    report = apply_events(lake, claimed)
    assert report.stale == 5 and report.records_written == 0
    after = (silver(lake), lake.read(["silver", "maintenance_events"]))
    assert before[0].equals(after[0])
    assert len(after[1]) == 5


def test_common_format_events_use_the_canonical_fields(engine: sa.Engine, lake: DeltaLake) -> None:
    created = sample_document("common", "work_order.created", "A-1", now=T0)
    put(engine, created, source="acme", message_format="common", event_id="c1")
    changed = sample_document(
        "common", "work_order.status_changed", "A-1", now=T0 + timedelta(minutes=1)
    )
    put(engine, changed, source="acme", message_format="common", event_id="c2")
    report = run(engine, lake, source="acme")
    assert report.processed == 2, report.errors
    row = silver(lake).iloc[0]
    assert (row["work_order_id"], row["status"]) == ("acme:A-1", "completed")
    # A completion announced without its time happened when it was announced.
    assert row["completed_at"] == T0 + timedelta(minutes=1)


# ---- failures, dead letters, replay ----------------------------------------------------------


def test_failures_back_off_then_dead_letter_then_replay_processes(
    engine: sa.Engine, lake: DeltaLake
) -> None:
    # A status change for a work order silver does not know: it cannot become a valid row.
    orphan = {"wonum": "55", "siteid": "BEDFORD", "status": "INPRG"}
    orphan["changedate"] = (T0 + timedelta(minutes=10)).isoformat()
    put(engine, orphan, event_id="orphan")
    report = run(engine, lake)
    assert report.failed == 1 and "created_at: missing" in report.errors[0]
    with engine.connect() as connection:
        waits = connection.execute(
            sa.select(T.c.next_attempt_at, T.c.retry_count, T.c.error_message)
        ).one()
    assert waits.retry_count == 1 and waits.next_attempt_at > datetime.now(UTC)
    assert run(engine, lake).claimed == 0  # still backing off
    for _ in range(2):
        time.sleep(0.12)
        run(engine, lake)
    assert statuses(engine)["orphan"] == ("dead_letter", 3)
    time.sleep(0.12)
    assert run(engine, lake).claimed == 0  # dead letters are not retried

    # The record arrives (its creation happened before the orphaned change), then a replay.
    put(engine, maximo("55", "WAPPR", T0), event_id="creation")
    assert run(engine, lake).processed == 1
    assert inbox.replay(engine, source="other") == 0
    assert inbox.replay(engine, source="maximo", event_ids=["orphan"]) == 1
    assert statuses(engine)["orphan"] == ("pending", 0)
    assert run(engine, lake).processed == 1
    assert silver(lake).iloc[0]["status"] == "in_progress"
    assert statuses(engine)["orphan"] == ("processed", 0)


def test_a_run_killed_mid_batch_is_taken_over_after_its_lease(
    engine: sa.Engine, lake: DeltaLake
) -> None:
    # Long enough that the takeover attempt below falls inside the lease on a busy machine.
    policy = RetryPolicy(max_attempts=3, base_delay_seconds=0.05, lease_seconds=3.0)
    for number in range(10):
        put(engine, maximo(str(number), "INPRG", T0), event_id=f"start-{number}")
        put(
            engine,
            maximo(str(number), "COMP", T0 + timedelta(hours=1)),
            event_id=f"done-{number}",
        )
    claimed = inbox.claim(
        engine, "killed", source="maximo", entity_type="work_order", policy=policy
    )
    assert len(claimed) == 20
    # The run applied the first half to the lake, then died before recording anything.
    apply_events(lake, claimed[:10])
    assert run(engine, lake, policy=policy).claimed == 0  # the lease still holds
    time.sleep(3.05)
    report = run(engine, lake, policy=policy)
    assert report.expired_leases == 20 and report.processed == 20, report.errors
    rows = silver(lake)
    assert len(rows) == 10 and set(rows["status"]) == {"completed"}
    events = lake.read(["silver", "maintenance_events"])
    assert len(events) == 20 and events["event_id"].is_unique
    assert set(statuses(engine).values()) == {("processed", 1)}
    # The killed run cannot record outcomes for events it no longer holds.
    late = inbox.record(engine, "killed", [inbox.Outcome(claimed[0])], policy=policy)
    assert late.lost_claims == 1 and late.processed == 0


def test_due_groups_see_sources_and_entity_types_apart(engine: sa.Engine) -> None:
    put(engine, maximo("1", "WAPPR", T0))
    put(engine, maximo("2", "WAPPR", T0))
    put(engine, {"assetnum": "P-1", "siteid": "BEDFORD", "changedate": T0.isoformat()})
    put(
        engine,
        sample_document("common", "work_order.updated", "X"),
        source="acme",
        message_format="common",
    )
    groups = inbox.due_groups(engine)
    assert [(g.source, g.entity_type, g.count) for g in groups] == [
        ("acme", "work_order", 1),
        ("maximo", "asset", 1),
        ("maximo", "work_order", 2),
    ]
    assert all(g.window_end.tzinfo is not None for g in groups)


def test_replay_command_requeues_dead_letters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from integration_platform.cli import main

    url = f"sqlite:///{tmp_path / 'cli-state.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        for event_id, source in [("x1", "maximo"), ("x2", "maximo"), ("y1", "upkeep")]:
            put(engine, maximo(event_id, "WAPPR", T0), source=source, event_id=event_id)
        with engine.begin() as connection:
            connection.execute(sa.update(T).values(processing_status="dead_letter", retry_count=5))
        monkeypatch.setenv("INTEGRATION_PLATFORM_DB_URL", url)
        assert main(["webhooks", "replay", "--source", "maximo", "--event-id", "x1"]) == 0
        assert "1 dead-lettered event(s) of maximo queued again" in capsys.readouterr().out
        assert main(["webhooks", "replay"]) == 0
        assert "2 dead-lettered event(s) queued again" in capsys.readouterr().out
        assert set(statuses(engine).values()) == {("pending", 0)}
    finally:
        engine.dispose()


# ---- group commit ------------------------------------------------------------------------------


def test_group_commit_answers_each_event_and_spots_duplicates(engine: sa.Engine) -> None:
    first = put(engine, maximo("1", "WAPPR", T0), event_id="old")
    assert first == "old"

    def event(event_id: str) -> store.InboxEvent:
        return store.InboxEvent(
            source="maximo",
            event_id=event_id,
            event_type="work_order.updated",
            entity_type="work_order",
            entity_external_id="BEDFORD:1",
            occurred_at=T0,
            received_at=datetime.now(UTC),
            payload=maximo("1", "WAPPR", T0),
            signature="v1,test",
            signature_scheme="standard",
            message_format="maximo",
        )

    answers = store.store_events(engine, [event("n1"), event("old"), event("n2"), event("n1")])
    assert [(a.event_id, a.duplicate) for a in answers] == [
        ("n1", False),
        ("old", True),
        ("n2", False),
        ("n1", True),
    ]
    assert answers[0].row_id == answers[3].row_id
    assert sorted(statuses(engine)) == ["n1", "n2", "old"]
