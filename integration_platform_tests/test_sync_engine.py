"""The engine on in-memory systems: merging, direction, deletions, matching and rollback of
created records. State lives in a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_platform.connectors.errors import ServerError
from integration_platform.state import StateDatabase, dispose_engines
from integration_platform.sync import (
    Direction,
    FieldPolicy,
    ReadPolicy,
    SideSpec,
    Strategy,
    SyncEngine,
    SyncSpec,
    list_conflicts,
    list_runs,
    resolve_conflict,
)
from integration_platform.sync.adapters.memory import MemoryAdapter

FIELDS = {"external_id": "number", "title": "title", "status": "status", "cost_amount": "cost"}


def make_spec(**overrides: Any) -> SyncSpec:
    options: dict[str, Any] = {
        "name": "cmms_erp",
        "entity": "work_order",
        "left": SideSpec(
            system="cmms", connection="cmms", key_field="id", version_field="rev",
            modified_field="changed", fields=FIELDS,
        ),
        "right": SideSpec(
            system="erp", connection="erp", key_field="id", modified_field="changed",
            fields=FIELDS,
        ),
        "fields": ("title", "status", "cost_amount"),
        "match_field": "external_id",
        "policies": {"status": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="cmms")},
    }  # fmt: skip
    options.update(overrides)
    return SyncSpec(**options)


def records(prefix: str, *rows: tuple[str, str, str, float | None]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": f"{prefix}{position}",
                "number": number,
                "title": title,
                "status": status,
                "cost": cost,
                "rev": "r0",
                "changed": "2026-03-01T08:00:00Z",
            }
            for position, (number, title, status, cost) in enumerate(rows, start=1)
        ]
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDatabase]:
    database = StateDatabase(url=f"sqlite:///{tmp_path / 'state.db'}")
    database.ensure_schema()
    yield database
    dispose_engines()


def pair(state: StateDatabase, **overrides: Any) -> tuple[SyncEngine, MemoryAdapter, MemoryAdapter]:
    cmms = MemoryAdapter(
        records("c", ("W1", "Pump seal", "scheduled", 10.0), ("W2", "Fan belt", "scheduled", None))
    )
    erp = MemoryAdapter(records("e", ("W1", "Pump seal", "scheduled", 10.0)))
    engine = SyncEngine(make_spec(**overrides), cmms, erp, state)
    assert engine.run().status == "succeeded"
    return engine, cmms, erp


def by_number(adapter: MemoryAdapter) -> dict[str, dict[str, Any]]:
    return {row["number"]: row for row in adapter.read().to_dict("records")}


def test_changes_to_different_fields_merge_and_equal_changes_are_no_conflict(
    state: StateDatabase,
) -> None:
    engine, cmms, erp = pair(state)
    assert by_number(erp)["W2"]["title"] == "Fan belt"  # created in the ERP
    cmms.edit("c1", title="Pump seal and bearing", changed="2026-03-02T08:00:00Z")
    erp.edit("e1", cost=12.5, changed="2026-03-02T09:00:00Z")
    cmms.edit("c2", status="completed", changed="2026-03-02T08:00:00Z")
    erp_id = by_number(erp)["W2"]["id"]
    erp.edit(erp_id, status="completed", changed="2026-03-02T09:00:00Z")

    report = engine.run()
    assert report.counts["conflicts"] == 0
    assert sorted(report.planned["field"]) == ["cost_amount", "title"]
    assert by_number(erp)["W1"]["title"] == "Pump seal and bearing"
    assert by_number(cmms)["W1"]["cost"] == 12.5
    assert engine.run().planned.empty


def test_one_way_sync_ignores_target_edits_and_the_source_wins_conflicts(
    state: StateDatabase,
) -> None:
    engine, cmms, erp = pair(state, direction=Direction.LEFT_TO_RIGHT)
    erp.edit("e1", cost=99.0)  # only the target changed: nothing flows back
    cmms.edit("c2", title="Fan belt, replace")
    erp_w2 = by_number(erp)["W2"]["id"]
    erp.edit(erp_w2, title="Fan belt (ERP)")
    report = engine.run()
    assert report.counts["conflicts"] == 0
    assert by_number(erp)["W2"]["title"] == "Fan belt, replace"
    assert by_number(cmms)["W1"]["cost"] == 10.0
    assert report.planned["system"].unique().tolist() == ["erp"]


def test_a_deletion_is_reported_and_not_propagated(state: StateDatabase) -> None:
    engine, cmms, erp = pair(state)
    erp.delete("e1")
    report = engine.run()
    assert report.deletions[["system", "still_in"]].values.tolist() == [["erp", "cmms"]]
    assert "W1" in by_number(cmms) and "W1" not in by_number(erp)
    assert report.planned.empty  # neither re-created nor deleted on the other side


def test_a_number_used_twice_is_reported_instead_of_paired_or_created(
    state: StateDatabase,
) -> None:
    cmms = MemoryAdapter(
        records("c", ("W7", "Motor check", "scheduled", None), ("W8", "Belt", "scheduled", None))
    )
    erp = MemoryAdapter(
        records("e", ("W7", "Motor check", "scheduled", None), ("W7", "Motor", "scheduled", None))
    )
    report = SyncEngine(make_spec(), cmms, erp, state).run()
    assert report.planned["operation"].unique().tolist() == ["create"]
    assert set(report.planned["external_id"].isna()) == {True}
    assert sorted(erp.read()["number"]) == ["W7", "W7", "W8"]
    assert len(cmms.read()) == 2  # the ambiguous W7 was not created a second time
    assert sorted(p.split(":")[1] for p in report.problems) == ["c1", "e1", "e2"]
    assert "neither paired nor created" in report.problems[0]


def test_a_failed_write_deletes_records_created_earlier_in_the_run(state: StateDatabase) -> None:
    cmms = MemoryAdapter(
        records("c", *[(f"W{n}", f"Job {n}", "scheduled", None) for n in range(5)])
    )

    class Flaky(MemoryAdapter):
        def create(self, values: Any) -> Any:
            if self.writes == 3:
                raise ServerError(system="erp", status=503, detail="maintenance window")
            return super().create(values)

    erp = Flaky(records("e"))
    report = SyncEngine(make_spec(), cmms, erp, state).run()
    assert report.status == "rolled_back" and "write 4 of 5 failed" in str(report.cause)
    assert report.counts["rolled_back"] == 3
    assert erp.read().empty


def test_a_stale_version_sends_the_record_to_the_queue(state: StateDatabase) -> None:
    _, cmms, erp = pair(state)
    erp.edit("e1", title="Pump seal (ERP)")

    class Busy(MemoryAdapter):
        """A user saves the record between the sync's read and its write."""

        def update(self, external_id: str, changes: Any, **kwargs: Any) -> Any:
            self.edit(external_id, status="in_progress")
            return super().update(external_id, changes, **kwargs)

    busy = Busy(cmms.read())
    report = SyncEngine(make_spec(), busy, erp, state).run()
    assert report.status == "succeeded" and report.counts["applied"] == 0
    assert list_conflicts(state)["field"].tolist() == ["title"]


# -- incremental reads ---------------------------------------------------------------------


def many(prefix: str, count: int) -> pd.DataFrame:
    return records(
        prefix, *((f"W{i}", f"Job {i}", "scheduled", float(i)) for i in range(1, count + 1))
    )


def incremental(
    state: StateDatabase, **reads: Any
) -> tuple[SyncEngine, MemoryAdapter, MemoryAdapter]:
    """20 paired work orders, all last changed 2026-03-01 08:00, after a first (full) run."""
    policy = ReadPolicy(incremental=True, overlap_seconds=60, full_every_runs=None,
                        full_every_hours=None) if not reads else ReadPolicy(**reads)  # fmt: skip
    cmms, erp = MemoryAdapter(many("c", 20)), MemoryAdapter(many("e", 20))
    engine = SyncEngine(make_spec(reads=policy), cmms, erp, state)
    first = engine.run()
    assert (first.status, first.read_mode, first.counts["applied"]) == ("succeeded", "full", 0)
    return engine, cmms, erp


def test_incremental_runs_read_what_changed_and_its_partners(state: StateDatabase) -> None:
    engine, cmms, erp = incremental(state, incremental=True, overlap_seconds=60,
                                    full_every_runs=3, full_every_hours=None)  # fmt: skip
    cmms.edit("c3", title="Job 3, revised", changed="2026-03-05T08:00:00Z")
    erp.edit("e4", cost=40.5, changed="2026-03-05T08:00:00Z")
    second = engine.run()  # from 2026-03-01 07:59: everything is still in the window
    assert (second.read_mode, second.counts["records_read"]) == ("incremental", 40)
    assert by_number(erp)["W3"]["title"] == "Job 3, revised"

    cmms.edit("c7", title="Job 7, revised", changed="2026-03-06T08:00:00Z")
    third = engine.run()  # from 2026-03-05 07:59 on both sides
    assert third.read_mode == "incremental"
    # c3, c7 and e4 changed since; e3, e7 and c4 are read by id as their partners.
    assert third.counts["records_read"] == 6
    assert by_number(erp)["W7"]["title"] == "Job 7, revised"
    assert third.counts["applied"] == 1 and third.deletions.empty

    # Every third run reads in full (full_every_runs=3: full, incremental, incremental).
    fourth = engine.run()
    assert (fourth.read_mode, fourth.counts["records_read"]) == ("full", 40)
    runs = list_runs(state, sync_name="cmms_erp")
    assert list(runs["read_mode"]) == ["full", "incremental", "incremental", "full"]


def test_a_backdated_edit_waits_for_a_full_read(state: StateDatabase) -> None:
    engine, cmms, erp = incremental(state)
    cmms.edit("c2", title="Job 2, revised", changed="2026-03-05T08:00:00Z")
    engine.run()
    erp.edit("e9", cost=77.0, changed="2026-02-01T00:00:00Z")  # a clock far behind
    missed = engine.run()
    assert (missed.read_mode, missed.counts["applied"]) == ("incremental", 0)
    assert by_number(cmms)["W9"]["cost"] == 9.0
    found = engine.run(full=True)
    assert (found.read_mode, found.counts["applied"]) == ("full", 1)
    assert by_number(cmms)["W9"]["cost"] == 77.0


def test_a_full_read_runs_when_the_last_one_is_old(state: StateDatabase) -> None:
    import sqlalchemy as sa

    from integration_platform.state import SyncRun

    engine, _, _ = incremental(state, incremental=True, full_every_runs=None,
                                  full_every_hours=6.0)  # fmt: skip
    assert engine.run().read_mode == "incremental"
    with state.engine().begin() as connection:
        table = SyncRun.__table__
        connection.execute(
            sa.update(table)
            .where(table.c.read_mode == "full")
            .values(started_at=(pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=7)).to_pydatetime())
        )
    assert engine.run().read_mode == "full"
    assert engine.run().read_mode == "incremental"


def test_an_incremental_run_applies_a_decision_on_records_it_did_not_read(
    state: StateDatabase,
) -> None:
    engine, cmms, erp = incremental(state)
    spec = make_spec(reads=engine.spec.reads, policies={"title": FieldPolicy(Strategy.MANUAL)})
    engine = SyncEngine(spec, cmms, erp, state)
    cmms.edit("c2", title="Job 2 (CMMS)", changed="2026-03-05T08:00:00Z")
    erp.edit("e2", title="Job 2 (ERP)", changed="2026-03-05T08:00:00Z")
    assert engine.run().counts["conflicts"] == 1
    cmms.edit("c5", status="completed", changed="2026-03-09T08:00:00Z")
    assert engine.run().counts["conflicts"] == 0  # still waiting, not found again
    (conflict_id,) = list_conflicts(state, sync_name="cmms_erp")["id"]
    resolve_conflict(state, int(conflict_id), choice="right", resolved_by="ops")
    report = engine.run()  # from 2026-03-09 07:59: W2 changed before that
    assert report.read_mode == "incremental"
    assert report.counts["records_read"] == 4  # W5 on both sides, W2 on both (queue)
    assert (report.counts["applied"], report.counts["resolved_manually"]) == (1, 1)
    assert by_number(cmms)["W2"]["title"] == "Job 2 (ERP)"


def test_a_new_record_is_paired_with_an_unread_one_holding_its_number(
    state: StateDatabase,
) -> None:
    engine, cmms, erp = incremental(state)
    cmms.edit("c1", title="Job 1, revised", changed="2026-03-05T08:00:00Z")
    engine.run()
    # The ERP got W30 long ago (not in the window); the CMMS enters it now.
    erp.create({"id": "e30", "number": "W30", "title": "Job 30", "status": "scheduled",
                "cost": None, "changed": "2026-02-01T00:00:00Z"})  # fmt: skip
    cmms.create({"id": "c30", "number": "W30", "title": "Job 30", "status": "scheduled",
                 "cost": None, "changed": "2026-03-09T08:00:00Z"})  # fmt: skip
    report = engine.run()
    assert report.read_mode == "incremental" and report.status == "succeeded"
    assert "create" not in set(report.planned["operation"])
    assert [row["id"] for row in by_number(erp).values() if row["number"] == "W30"] == ["e30"]
    assert engine.run(full=True).counts["applied"] == 0  # paired: nothing to create later
