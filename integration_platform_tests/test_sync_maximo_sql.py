"""Two real systems kept in step: a work-order table on the real PostgreSQL and the Maximo
contract server, both edited between runs, with conflicts, failures, crashes and the queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from integration_platform.connectors.cmms.maximo import MaximoConnector
from integration_platform.connectors.errors import ServerError
from integration_platform.state import SyncJournalEntry, SyncRun, dispose_engines
from integration_platform.sync import (
    FieldMap,
    FieldPolicy,
    SideSpec,
    Strategy,
    SyncEngine,
    SyncSpec,
    list_conflicts,
    list_pending_keys,
    list_runs,
    platform_id_of,
    record_history,
    resolution_counts,
    resolve_conflict,
    show_conflict,
)
from integration_platform.sync.adapters.maximo import MaximoWorkOrderAdapter
from integration_platform.sync.adapters.sql import SqlTableAdapter
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.maximo import MaximoContractServer
from integration_platform_tests.sync_rig import (
    assert_stale_write_became_conflict,
    failing_second_create,
    first_run,
    maximo_connector,
    maximo_side,
    open_state_and_lake,
    plant_side,
)

pytestmark = pytest.mark.postgres

STATUS_CODES = {
    "WAPPR": "scheduled",
    "APPR": "scheduled",
    "WSCH": "scheduled",
    "WMATL": "on_hold",
    "INPRG": "in_progress",
    "COMP": "completed",
    "CLOSE": "completed",
    "CAN": "cancelled",
}
FIELDS = ("title", "status", "priority", "labor_hours", "cost_amount", "assigned_to")
SQL_COLUMNS = ("wonum", "title", "status", "priority", "labor_hours", "cost_amount", "assigned_to")
MAXIMO_FIELDS = ("description", "status", "wopriority", "actlabhrs", "acttotalcost", "lead")


def make_spec(**policies: FieldPolicy) -> SyncSpec:
    return SyncSpec(
        name="maximo_plant_work_orders",
        entity="work_order",
        left=maximo_side(
            "wonum",
            {
                "title": "description",
                "status": FieldMap(
                    "status", values=STATUS_CODES, write_values={"scheduled": "APPR"}
                ),
                "priority": FieldMap(
                    "wopriority", values={"1": "critical", "2": "high", "3": "medium", "4": "low"}
                ),
                "labor_hours": "actlabhrs",
                "cost_amount": "acttotalcost",
                "assigned_to": "lead",
            },
        ),
        right=plant_side(FIELDS, number_column="wonum"),
        fields=FIELDS,
        match_field="external_id",
        policies={
            "status": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="maximo"),
            "cost_amount": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="plant_db"),
            "labor_hours": FieldPolicy(Strategy.MAX),
            "assigned_to": FieldPolicy(Strategy.MANUAL),
            **policies,
        },
    )


class Systems:
    """Maximo (contract server) and the plant database, with helpers to edit and compare."""

    def __init__(self, tmp_path: Path, sql_url: str, state_url: str) -> None:
        self.tmp_path = tmp_path
        self.server = MaximoContractServer(tmp_path / "maximo.db").start()
        for order in seed.work_orders():
            if order["siteid"] == "BEDFORD" and int(str(order["wonum"])) <= 1008:
                self.server.put_work_order(order)
        self.sql = sa.create_engine(sql_url)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE TABLE plant_work_orders (id serial PRIMARY KEY, wonum text UNIQUE,"
                    " title text NOT NULL, status text NOT NULL, priority text,"
                    " labor_hours double precision, cost_amount double precision,"
                    " assigned_to text, updated_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            # 1001 and 1002 exist in both systems already (same values); 2001 only here.
            connection.execute(
                sa.text(
                    "INSERT INTO plant_work_orders (wonum, title, status, priority, labor_hours,"
                    " cost_amount, assigned_to, updated_at) VALUES"
                    " ('1001', 'Replace mechanical seal, cooling water pump P-101',"
                    "  'in_progress', 'high', NULL, NULL, 'JONES', '2026-01-05T12:00:00Z'),"
                    " ('1002', 'Quarterly lubrication, boiler feed pump P-204', 'scheduled',"
                    "  'medium', NULL, NULL, 'SMITH', '2026-01-05T12:00:00Z'),"
                    " ('2001', 'Inspect fire pump FP-1 packing', 'scheduled', 'low', 1.5, 80.0,"
                    "  'WILSON', '2026-01-05T12:00:00Z')"
                )
            )
        self.state, self.lake = open_state_and_lake(state_url, tmp_path)

    def connector(self) -> MaximoConnector:
        return maximo_connector(self.server)

    def maximo_adapter(self) -> MaximoWorkOrderAdapter:
        return MaximoWorkOrderAdapter(self.connector(), create_defaults={"siteid": "BEDFORD"})

    def engine(
        self, *, spec: SyncSpec | None = None, maximo: Any = None, sql: Any = None
    ) -> SyncEngine:
        return SyncEngine(
            spec or make_spec(),
            maximo or self.maximo_adapter(),
            sql or SqlTableAdapter(self.sql, "plant_work_orders"),
            self.state,
            lake=self.lake,
        )

    # -- edits as users of each system would make them -----------------------------------------

    def edit_maximo(self, wonum: str, *, at: datetime | None = None, **changes: Any) -> None:
        record = self.server.store.get("workorder", _rest_id(wonum))
        assert record is not None
        record = {k: v for k, v in record.items() if not k.startswith("_")}
        record.update(changes)
        record["changedate"] = seed.maximo_date(at or datetime.now(UTC))
        self.server.put_work_order(record)

    def edit_sql(self, wonum: str, *, at: datetime | None = None, **changes: Any) -> None:
        sets = ", ".join(f"{name} = :{name}" for name in changes)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE plant_work_orders SET {sets}, updated_at = :at WHERE wonum = :w"),
                {**changes, "at": at or datetime.now(UTC), "w": wonum},
            )

    def edit_sql_row(self, row_id: int, **changes: Any) -> None:
        """Edit a plant row by its id (rows without a work-order number)."""
        sets = ", ".join(f"{name} = :{name}" for name in changes)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE plant_work_orders SET {sets}, updated_at = now() WHERE id = :i"),
                {**changes, "i": row_id},
            )

    # -- looking at both systems ---------------------------------------------------------------

    def maximo_rows(self) -> dict[str, dict[str, Any]]:
        rows = {}
        for record in self.server.store.all("workorder"):
            rows[str(record["wonum"])] = {f: _plain(record.get(f)) for f in MAXIMO_FIELDS}
        return rows

    def maximo_stamps(self) -> dict[str, str]:
        return {str(r["wonum"]): r["_rowstamp"] for r in self.server.store.all("workorder")}

    def sql_rows(self, *, with_times: bool = False) -> dict[str, dict[str, Any]]:
        columns = [*SQL_COLUMNS, *(["updated_at", "id"] if with_times else [])]
        with self.sql.connect() as connection:
            rows = connection.execute(
                sa.text(f"SELECT {', '.join(columns)} FROM plant_work_orders")
            ).fetchall()
        return {row[0]: dict(zip(columns[1:], row[1:], strict=True)) for row in rows}

    def close(self) -> None:
        self.server.stop()
        self.sql.dispose()
        dispose_engines()


def _rest_id(wonum: str) -> str:
    from integration_platform_tests.contract_servers.maximo import rest_id

    return rest_id([wonum, "BEDFORD"])


def _plain(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


@pytest.fixture(params=["postgresql", "sqlite"])
def systems(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> Iterator[Systems]:
    """Both systems; the state database on PostgreSQL or on SQLite (the SQL side is always
    the real PostgreSQL)."""
    state_url = postgres_url if request.param == "postgresql" else f"sqlite:///{tmp_path}/s.db"
    found = Systems(tmp_path, postgres_url, state_url)
    yield found
    found.close()


@pytest.fixture
def pg_systems(tmp_path: Path, postgres_url: str) -> Iterator[Systems]:
    found = Systems(tmp_path, postgres_url, postgres_url)
    yield found
    found.close()


def synced(systems: Systems) -> SyncEngine:
    """Run the first sync, which pairs 1001/1002, creates the rest both ways, and check it."""
    return synced_with(systems, make_spec())


def synced_with(systems: Systems, spec: SyncSpec) -> SyncEngine:
    return first_run(systems.engine(spec=spec))


def test_first_run_pairs_by_number_and_creates_missing_records_both_ways(
    systems: Systems,
) -> None:
    engine = systems.engine()
    report = engine.run()
    assert report.status == "succeeded", report.cause
    sql, maximo = systems.sql_rows(), systems.maximo_rows()
    # Every Maximo work order of the site is now in the plant database and vice versa.
    assert set(sql) == set(maximo) == {str(n) for n in range(1001, 1009)} - {"1006"} | {"2001"}
    assert sql["1005"] == {
        "title": "Vibration route, cooling water pumps",
        "status": "completed",
        "priority": "medium",
        "labor_hours": 4.0,
        "cost_amount": 465.5,
        "assigned_to": "WILSON",
    }
    assert maximo["2001"]["description"] == "Inspect fire pump FP-1 packing"
    assert maximo["2001"]["status"] == "APPR" and maximo["2001"]["wopriority"] == "4"
    # 1001/1002 were paired by number, not duplicated.
    assert len(systems.sql_rows()) == 8
    runs = list_runs(systems.state, sync_name="maximo_plant_work_orders")
    assert (
        runs.loc[0, "status"] == "succeeded" and runs.loc[0, "applied"] == report.counts["applied"]
    )


def test_concurrent_edits_merge_and_conflicts_follow_each_fields_policy(
    pg_systems: Systems,
) -> None:
    systems = pg_systems
    engine = synced(systems)
    early = datetime.now(UTC) - timedelta(minutes=5)
    late = datetime.now(UTC) - timedelta(minutes=1)
    # Different fields on each side: both merge.
    systems.edit_maximo("1003", description="Replace filters and belts, AHU-3", at=early)
    systems.edit_sql("1003", priority="critical", at=early)
    # The same fields on both sides, to different values: conflicts.
    systems.edit_maximo(
        "1004", status="COMP", acttotalcost=900.0, description="C-2 trips", actlabhrs=6.0, at=late
    )
    systems.edit_sql(
        "1004",
        status="on_hold",
        cost_amount=1200.0,
        title="Compressor C-2 trips",
        labor_hours=7.5,
        at=early,
    )
    # The same new value on both sides: agreement, not a conflict.
    systems.edit_maximo("1005", lead="GARCIA", at=late)
    systems.edit_sql("1005", assigned_to="GARCIA", at=early)

    report = engine.run()
    assert report.status == "succeeded", report.cause
    decided = report.conflicts.set_index("field")
    assert set(decided.index) == {"status", "cost_amount", "title", "labor_hours"}
    assert decided["resolved"].all() and report.counts["auto_resolved"] == 4

    sql, maximo = systems.sql_rows(), systems.maximo_rows()
    assert (
        maximo["1003"]["description"] == sql["1003"]["title"] == "Replace filters and belts, AHU-3"
    )
    assert maximo["1003"]["wopriority"] == "1" and sql["1003"]["priority"] == "critical"
    assert sql["1004"]["status"] == "completed" and maximo["1004"]["status"] == "COMP"  # CMMS owns
    assert sql["1004"]["cost_amount"] == maximo["1004"]["acttotalcost"] == 1200.0  # ERP owns
    assert sql["1004"]["title"] == maximo["1004"]["description"] == "C-2 trips"  # last writer
    assert sql["1004"]["labor_hours"] == maximo["1004"]["actlabhrs"] == 7.5  # max
    assert sql["1005"]["assigned_to"] == maximo["1005"]["lead"] == "GARCIA"
    assert list_conflicts(systems.state).empty

    pid = platform_id_of(systems.state, "work_order", "maximo", "BEDFORD/1004")
    history = record_history(systems.state, entity="work_order", platform_id=pid)
    cost = history[history["field"] == "cost_amount"].iloc[-1]
    assert (cost["old_value"], cost["new_value"]) == (900.0, 1200.0)
    assert (cost["source_system"], cost["target_system"]) == ("plant_db", "maximo")
    assert cost["strategy"] == "source_priority(plant_db)"
    assert cost["conflict_reason"] == "plant_db owns the field"
    assert (cost["conflict_left_value"], cost["conflict_right_value"]) == (900.0, 1200.0)
    title = history[history["field"] == "title"].iloc[-1]
    assert title["reason"] == "maximo changed it last" and title["target_system"] == "plant_db"

    # The same lines are in the Delta audit table.
    lake = systems.lake.read(["audit", "sync_changes"])
    mine = lake[(lake["run_id"] == report.run_id) & (lake["platform_id"] == pid)]
    assert set(mine["field"]) == {"status", "cost_amount", "title", "labor_hours"}
    assert json.loads(mine.set_index("field").loc["cost_amount", "new_value"]) == 1200.0


def test_no_echo_over_ten_consecutive_syncs(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    systems.edit_maximo("1007", status="INPRG")
    systems.edit_sql("1002", title="Quarterly lubrication and oil sample, P-204")
    assert engine.run().counts["applied"] == 2
    stamps, sql = systems.maximo_stamps(), systems.sql_rows(with_times=True)
    for _ in range(10):
        report = systems.engine().run()  # a new engine each time: nothing kept in memory
        assert report.status == "succeeded"
        assert report.counts["records_changed"] == 0 and report.planned.empty
    # Neither system was written to: rowstamps and modification times are unchanged.
    assert systems.maximo_stamps() == stamps
    assert systems.sql_rows(with_times=True) == sql


def test_failure_on_the_nth_write_rolls_both_systems_back(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    for number in ("1001", "1002", "1003", "1004", "1005"):
        systems.edit_sql(number, assigned_to=None, title=f"Work order {number} revised")
    systems.edit_maximo("1007", status="INPRG")
    before_maximo, before_sql = systems.maximo_rows(), systems.sql_rows(with_times=True)

    class FailingMaximo(MaximoWorkOrderAdapter):
        """Maximo answers 503 (every retry) from the third write on."""

        writes = 0

        def update(self, *args: Any, **kwargs: Any) -> Any:
            FailingMaximo.writes += 1
            if FailingMaximo.writes == 3:
                systems.server.fail_next(3, status=503)  # every attempt of this write
            return super().update(*args, **kwargs)

    adapter = FailingMaximo(systems.connector(), create_defaults={"siteid": "BEDFORD"})
    report = systems.engine(maximo=adapter).run()
    assert report.status == "rolled_back"
    assert "write" in report.cause and "503" in report.cause
    # A transient cause: the job may run it again (the rollback restored both systems).
    assert (report.cause_type, report.retryable) == ("ServerError", True)
    # Three records were written: one in the SQL transaction, two in Maximo (compensated).
    assert report.counts["rolled_back"] == 3
    # Both systems hold exactly what they held before the run.
    assert systems.maximo_rows() == before_maximo
    assert systems.sql_rows(with_times=True) == before_sql
    with systems.state.session() as session:
        run = session.scalars(sa.select(SyncRun).where(SyncRun.run_id == report.run_id)).one()
        assert (run.status, run.rolled_back) == ("rolled_back", 3)
        states = session.scalars(
            sa.select(SyncJournalEntry.state).where(SyncJournalEntry.run_id == report.run_id)
        ).all()
        assert sorted(states) == ["compensated", "compensated", "failed", "pending", "pending"]

    # The next run (Maximo healthy again) applies everything.
    report = engine.run()
    assert report.status == "succeeded" and report.counts["applied"] == 6
    assert systems.maximo_rows()["1003"]["description"] == "Work order 1003 revised"
    assert systems.sql_rows()["1007"]["status"] == "in_progress"


class Crash(BaseException):
    """Stands in for the process dying: not an ``Exception``, so nothing handles it."""


def test_crash_between_writes_then_a_fresh_engine_converges(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    for number in ("1001", "1003", "1004", "1005"):
        systems.edit_sql(number, title=f"Work order {number} after shutdown")
    systems.edit_maximo("1008", lead="BROWN")

    class CrashingMaximo(MaximoWorkOrderAdapter):
        writes = 0

        def update(self, *args: Any, **kwargs: Any) -> Any:
            if CrashingMaximo.writes == 2:
                raise Crash
            CrashingMaximo.writes += 1
            return super().update(*args, **kwargs)

    crashing = CrashingMaximo(systems.connector(), create_defaults={"siteid": "BEDFORD"})
    with pytest.raises(Crash):
        systems.engine(maximo=crashing).run()
    partly = systems.maximo_rows()
    assert sum("after shutdown" in str(r["description"]) for r in partly.values()) == 2
    assert systems.sql_rows()["1008"]["assigned_to"] == "SMITH"  # transaction never committed

    report = systems.engine().run()  # a new process: fresh engine and adapters
    assert report.status == "succeeded", report.cause
    runs = list_runs(systems.state)
    crashed = runs[runs["run_id"] != report.run_id].iloc[0]
    assert crashed["status"] == "rolled_back" and "stopped before it finished" in crashed["cause"]
    sql, maximo = systems.sql_rows(), systems.maximo_rows()
    for number in ("1001", "1003", "1004", "1005"):
        assert maximo[number]["description"] == sql[number]["title"]
        assert sql[number]["title"] == f"Work order {number} after shutdown"
    assert sql["1008"]["assigned_to"] == maximo["1008"]["lead"] == "BROWN"
    assert engine.run().counts["applied"] == 0


def test_manual_conflict_waits_in_the_queue_and_is_applied_next_run(systems: Systems) -> None:
    engine = synced(systems)
    systems.edit_maximo("1002", lead="GARCIA")
    systems.edit_sql("1002", assigned_to="BROWN")
    report = engine.run()
    assert report.counts["conflicts"] == 1 and report.counts["auto_resolved"] == 0
    queue = list_conflicts(systems.state, sync_name="maximo_plant_work_orders")
    assert len(queue) == 1
    conflict = show_conflict(systems.state, int(queue.loc[0, "id"]))
    assert (conflict.field, conflict.left_value, conflict.right_value) == (
        "assigned_to",
        "GARCIA",
        "BROWN",
    )
    assert conflict.base_value == "SMITH" and conflict.status == "open"
    # Waiting conflicts do not flow, and do not come back as new conflicts.
    again = engine.run()
    assert again.counts["applied"] == 0 and len(list_conflicts(systems.state)) == 1
    assert systems.maximo_rows()["1002"]["lead"] == "GARCIA"

    resolve_conflict(
        systems.state,
        conflict.id,
        choice="value",
        value="GARCIA/BROWN",
        resolved_by="maria.lopez",
        note="two-person job",
    )
    applied = engine.run()
    assert applied.counts["applied"] == 2 and applied.counts["resolved_manually"] == 1
    assert systems.maximo_rows()["1002"]["lead"] == "GARCIA/BROWN"
    assert systems.sql_rows()["1002"]["assigned_to"] == "GARCIA/BROWN"
    done = show_conflict(systems.state, conflict.id)
    assert (done.status, done.applied_run_id) == ("applied", applied.run_id)
    history = record_history(
        systems.state,
        entity="work_order",
        system="plant_db",
        external_id=str(_sql_id(systems, "1002")),
    )
    line = history.iloc[-1]
    assert (line["resolved_by"], line["strategy"]) == ("maria.lopez", "manual")
    assert line["conflict_note"] == "two-person job"
    after = engine.run()
    assert after.counts["applied"] == after.counts["resolved_manually"] == 0
    runs = list_runs(systems.state, sync_name="maximo_plant_work_orders")
    assert list(runs["resolved_manually"]) == [0, 1, 0, 0, 0, 0]  # newest first
    # One conflict found, none decided by policy, one decided by a person.
    counts = resolution_counts(systems.state, sync_name="maximo_plant_work_orders")
    assert (counts.conflicts_found, counts.auto_resolved, counts.resolved_manually) == (1, 0, 1)
    assert counts.auto_resolution_rate_pct == 0.0 and counts.by_strategy["manual"] == 2
    assert resolution_counts(systems.state, sync_name="other").auto_resolution_rate_pct == 100.0


def _sql_id(systems: Systems, wonum: str) -> int:
    with systems.sql.connect() as connection:
        return connection.execute(
            sa.text("SELECT id FROM plant_work_orders WHERE wonum = :w"), {"w": wonum}
        ).scalar_one()


def test_dry_run_reports_the_plan_and_writes_nothing(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    systems.edit_maximo("1003", description="Replace filters, AHU-3 (both banks)")
    systems.edit_sql("1002", assigned_to="BROWN")
    systems.edit_maximo("1002", lead="GARCIA")
    maximo, sql = systems.maximo_stamps(), systems.sql_rows(with_times=True)
    runs = len(list_runs(systems.state))

    report = engine.run(dry_run=True)
    assert report.status == "dry_run"
    plan = report.planned
    assert plan[["system", "field", "new_value"]].values.tolist() == [
        ["plant_db", "title", "Replace filters, AHU-3 (both banks)"]
    ]
    assert report.conflicts[["field", "left", "right"]].values.tolist() == [
        ["assigned_to", "GARCIA", "BROWN"]
    ]
    assert systems.maximo_stamps() == maximo and systems.sql_rows(with_times=True) == sql
    assert len(list_runs(systems.state)) == runs and list_conflicts(systems.state).empty


def test_write_refused_as_stale_becomes_a_conflict_not_a_failure(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    systems.edit_sql("1003", title="AHU-3 filters, new spec")

    class Meanwhile(MaximoWorkOrderAdapter):
        """Someone saves the work order in Maximo between our read and our write."""

        def update(self, *args: Any, **kwargs: Any) -> Any:
            systems.edit_maximo("1003", lead="JONES")
            return super().update(*args, **kwargs)

    adapter = Meanwhile(systems.connector(), create_defaults={"siteid": "BEDFORD"})
    report = systems.engine(maximo=adapter).run()
    assert_stale_write_became_conflict(report, systems.state, "title")
    assert systems.maximo_rows()["1003"]["lead"] == "JONES"

    # Next run: the title only changed in the plant database, the lead only in Maximo: both flow.
    report = engine.run()
    assert report.status == "succeeded"
    assert systems.maximo_rows()["1003"]["description"] == "AHU-3 filters, new spec"
    assert systems.sql_rows()["1003"]["assigned_to"] == "JONES"
    assert list_conflicts(systems.state).empty
    assert engine.run().counts["applied"] == 0


def test_record_failing_validation_is_quarantined_and_the_rest_syncs(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    systems.edit_maximo("1004", status="WHATEVER")
    systems.edit_maximo("1005", description="Vibration route, all pumps")
    systems.edit_sql("1001", labor_hours=-3.0)
    report = engine.run()
    assert report.status == "succeeded" and report.counts["quarantined"] == 2
    reasons = report.quarantine.set_index("external_id")["reject_reason"]
    assert "'WHATEVER' has no canonical value" in reasons["BEDFORD/1004"]
    assert "labor_hours: -3.0 is negative" in reasons[str(_sql_id(systems, "1001"))]
    assert systems.sql_rows()["1005"]["title"] == "Vibration route, all pumps"
    assert systems.sql_rows()["1004"]["status"] == "in_progress"  # not touched
    stored = systems.lake.read(["quarantine", "sync", "maximo_plant_work_orders"])
    assert set(stored["external_id"]) == set(reasons.index)
    assert (
        json.loads(stored.set_index("external_id").loc["BEDFORD/1004", "record"])["status"]
        == "WHATEVER"
    )


def test_read_failure_marks_the_run_failed_with_its_cause(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    systems.server.fail_next(10, status=503)
    with pytest.raises(ServerError):
        engine.run()
    runs = list_runs(systems.state)
    assert runs.loc[0, "status"] == "failed" and "503" in runs.loc[0, "cause"]


def test_sql_row_changed_during_the_run_becomes_a_conflict(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    systems.edit_maximo("1005", description="Vibration route, all cooling water pumps")

    class Meanwhile(SqlTableAdapter):
        """An operator saves the row between the sync's read and its write."""

        def update(self, *args: Any, **kwargs: Any) -> Any:
            systems.edit_sql("1005", title="Vibration route (operator)")
            return super().update(*args, **kwargs)

    report = systems.engine(sql=Meanwhile(systems.sql, "plant_work_orders")).run()
    assert report.status == "succeeded" and report.counts["applied"] == 0
    queue = list_conflicts(systems.state)
    assert queue[["field", "left_value"]].values.tolist() == [
        ["title", "Vibration route, all cooling water pumps"]
    ]
    assert systems.sql_rows()["1005"]["title"] == "Vibration route (operator)"
    # Both sides changed the title since the base: decided again by last writer wins.
    engine.run()
    assert systems.maximo_rows()["1005"]["description"] == "Vibration route (operator)"
    assert list_conflicts(systems.state).empty


def test_a_created_work_order_is_cancelled_on_rollback_and_reused_by_the_next_run(
    pg_systems: Systems,
) -> None:
    systems = pg_systems
    engine = synced(systems)
    with systems.sql.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO plant_work_orders (wonum, title, status, priority) VALUES"
                " ('3001', 'Replace gland packing, pump P-7', 'scheduled', 'high'),"
                " ('3002', 'Align coupling, pump P-7', 'scheduled', 'medium')"
            )
        )

    failing = failing_second_create(MaximoWorkOrderAdapter, systems.server)
    adapter = failing(systems.connector(), create_defaults={"siteid": "BEDFORD"})
    report = systems.engine(maximo=adapter).run()
    assert report.status == "rolled_back" and "503" in str(report.cause)
    # Maximo cannot delete through the API: the work order created is cancelled instead.
    maximo = systems.maximo_rows()
    created = [number for number in ("3001", "3002") if number in maximo]
    assert len(created) == 1 and maximo[created[0]]["status"] == "CAN"

    report = engine.run()
    assert report.status == "succeeded", report.cause
    maximo = systems.maximo_rows()
    assert maximo["3001"]["status"] == "APPR" and maximo["3001"]["wopriority"] == "2"
    assert maximo["3002"]["description"] == "Align coupling, pump P-7"
    assert len(maximo) == len(systems.sql_rows())
    history = record_history(
        systems.state, entity="work_order", system="maximo", external_id=f"BEDFORD/{created[0]}"
    )
    assert "rolled-back run had created and cancelled" in history.iloc[-1]["reason"]
    assert engine.run().counts["applied"] == 0


def _insert_unnumbered(systems: Systems, *titles: str) -> list[int]:
    """Plant rows without a work-order number, as a planner entering a request would."""
    with systems.sql.begin() as connection:
        return [
            connection.execute(
                sa.text(
                    "INSERT INTO plant_work_orders (title, status, priority) VALUES"
                    " (:t, 'scheduled', 'high') RETURNING id"
                ),
                {"t": title},
            ).scalar_one()
            for title in titles
        ]


def test_a_number_maximo_assigns_on_create_is_written_back_in_the_same_run(
    systems: Systems,
) -> None:
    engine = synced(systems)
    numbers_before = set(systems.maximo_rows())
    first, second = _insert_unnumbered(
        systems, "Check vibration, pump P-9", "Replace V-belts, fan F-2"
    )
    report = engine.run()
    assert report.status == "succeeded", report.cause
    # Two creates in Maximo (numbered there) and two updates of the plant rows.
    assert report.counts["applied"] == 4
    maximo, plant = systems.maximo_rows(), systems.sql_rows(with_times=True)
    new = set(maximo) - numbers_before
    assert len(new) == 2 and set(plant) == set(maximo)  # both carry the same numbers
    by_id = {row["id"]: number for number, row in plant.items()}
    assert maximo[by_id[first]]["description"] == "Check vibration, pump P-9"
    assert maximo[by_id[second]]["description"] == "Replace V-belts, fan F-2"
    # The audit says where the number came from.
    history = record_history(
        systems.state, entity="work_order", system="plant_db", external_id=str(first)
    )
    line = history[history["strategy"] == "assigned_key"].iloc[-1]
    assert (line["field"], line["old_value"], line["new_value"]) == (
        "external_id",
        None,
        by_id[first],
    )
    assert (line["source_system"], line["target_system"]) == ("maximo", "plant_db")
    assert "maximo assigned external_id" in line["reason"]
    # Written back, nothing echoes: the next runs change nothing.
    plant = systems.sql_rows(with_times=True)
    assert engine.run().counts["applied"] == 0
    assert engine.run().counts["applied"] == 0
    assert systems.sql_rows(with_times=True) == plant


def test_a_written_back_number_is_rolled_back_with_the_run(pg_systems: Systems) -> None:
    systems = pg_systems
    engine = synced(systems)
    (row_id,) = _insert_unnumbered(systems, "Check vibration, pump P-9")
    systems.edit_maximo("1005", lead="GARCIA")  # written first, in the same transaction

    class FailingPlant(SqlTableAdapter):
        """The plant database fails the write-back of the number."""

        def update(self, external_id: str, changes: Any, **kwargs: Any) -> Any:
            if "wonum" in changes:
                raise ServerError(system="plant_db", status=503, detail="injected")
            return super().update(external_id, changes, **kwargs)

    report = systems.engine(sql=FailingPlant(systems.sql, "plant_work_orders")).run()
    assert report.status == "rolled_back"
    plant = systems.sql_rows(with_times=True)
    # The plant row is as it was (no number); the work order Maximo made is cancelled.
    assert [n for n, row in plant.items() if row["id"] == row_id] == [None]
    cancelled = [r for r in systems.maximo_rows().values() if r["status"] == "CAN"]
    assert [r["description"] for r in cancelled] == ["Check vibration, pump P-9"]
    assert plant["1005"]["assigned_to"] != "GARCIA"  # rolled back with the transaction

    report = engine.run()
    assert report.status == "succeeded", report.cause
    plant = systems.sql_rows(with_times=True)
    (number,) = [n for n, row in plant.items() if row["id"] == row_id]
    assert number is not None and systems.maximo_rows()[number]["status"] == "APPR"
    assert plant["1005"]["assigned_to"] == "GARCIA"
    assert engine.run().counts["applied"] == 0


def _pending_keys(systems: Systems) -> list[dict[str, Any]]:
    return list_pending_keys(systems.state, status=None).to_dict("records")


def test_a_refused_number_write_back_is_kept_and_made_by_a_later_run(systems: Systems) -> None:
    """Maximo numbers a work order created from a plant row; writing the number back is
    refused because an operator saved the row meanwhile (its row version moved on). The
    number waits in the state database, is tried again before the next runs read, and is
    written once the row holds still; the records stay paired all along."""
    import dataclasses

    with systems.sql.begin() as connection:
        connection.execute(
            sa.text(
                "ALTER TABLE plant_work_orders ADD COLUMN row_version integer NOT NULL DEFAULT 1"
            )
        )
    base = make_spec()
    spec = dataclasses.replace(
        base, right=dataclasses.replace(base.right, version_field="row_version")
    )
    synced_with(systems, spec)
    (row_id,) = _insert_unnumbered(systems, "Check vibration, pump P-9")
    numbers_before = set(systems.maximo_rows())

    class Operator(SqlTableAdapter):
        """An operator saves the plant row just before each of the next ``races`` writes of
        its work-order number."""

        races = 0

        def update(self, external_id: str, changes: Any, **kwargs: Any) -> Any:
            if "wonum" in changes and Operator.races:
                Operator.races -= 1
                systems.edit_sql_row(row_id, title=f"Check vibration, pump P-9 ({Operator.races})")
                with systems.sql.begin() as connection:
                    connection.execute(
                        sa.text("UPDATE plant_work_orders SET row_version = row_version + 1"
                                " WHERE id = :id"),
                        {"id": row_id},
                    )  # fmt: skip
            return super().update(external_id, changes, **kwargs)

    def run() -> Any:
        report = systems.engine(spec=spec, sql=Operator(systems.sql, "plant_work_orders")).run()
        assert report.status == "succeeded", report.cause
        return report

    def paired() -> tuple[str | None, str | None]:
        plant = platform_id_of(systems.state, "work_order", "plant_db", str(row_id))
        (number,) = set(systems.maximo_rows()) - numbers_before
        return plant, platform_id_of(systems.state, "work_order", "maximo", f"BEDFORD/{number}")

    # Run 1: created in Maximo, the write-back refused; kept, the records paired.
    Operator.races = 1
    first = run()
    (number,) = set(systems.maximo_rows()) - numbers_before
    assert [n for n, row in systems.sql_rows(with_times=True).items() if row["id"] == row_id] == [
        None
    ]
    (pending,) = _pending_keys(systems)
    assert (pending["status"], pending["attempts"], pending["value"]) == ("pending", 1, number)
    assert (pending["system"], pending["external_id"]) == ("plant_db", str(row_id))
    assert pending["assigned_external_id"] == f"BEDFORD/{number}"
    assert pending["run_id"] == first.run_id and "row_version" in pending["last_error"]
    pid, partner = paired()
    assert pid is not None and pid == partner

    # Run 2: tried again before reading, refused again; the operator's title still flows.
    Operator.races = 1
    second = run()
    (pending,) = _pending_keys(systems)
    assert (pending["status"], pending["attempts"]) == ("pending", 2)
    assert systems.maximo_rows()[number]["description"] == "Check vibration, pump P-9 (0)"
    assert paired() == (pid, pid)
    assert "assigned_key" not in set(second.planned["strategy"])

    # Run 3: the row holds still; the number is written, audited and the entry closed.
    third = run()
    assert third.counts["applied"] == 1
    plant = systems.sql_rows(with_times=True)
    assert [n for n, row in plant.items() if row["id"] == row_id] == [number]
    (pending,) = _pending_keys(systems)
    assert (pending["status"], pending["attempts"]) == ("applied", 3)
    assert pending["applied_run_id"] == third.run_id
    history = record_history(
        systems.state, entity="work_order", system="plant_db", external_id=str(row_id)
    )
    line = history[history["strategy"] == "assigned_key"].iloc[-1]
    assert (line["run_id"], line["old_value"], line["new_value"]) == (third.run_id, None, number)
    assert (line["source_system"], line["target_system"]) == ("maximo", "plant_db")
    assert f"as run {first.run_id} was refused" in line["reason"]
    lake = systems.lake.read(["audit", "sync_changes"])
    assert "assigned_key" in set(lake.loc[lake["run_id"] == third.run_id, "strategy"])
    assert paired() == (pid, pid)

    # Nothing echoes afterwards, in either system.
    stamps, plant = systems.maximo_stamps(), systems.sql_rows(with_times=True)
    for _ in range(2):
        assert run().counts["applied"] == 0
    assert systems.maximo_stamps() == stamps and systems.sql_rows(with_times=True) == plant


def test_a_pending_number_is_dropped_when_the_record_gets_its_own(pg_systems: Systems) -> None:
    """A planner types a number into the row before the sync could write Maximo's: the
    sync leaves the planner's number and closes the entry, saying why."""
    systems = pg_systems
    engine = synced(systems)
    (row_id,) = _insert_unnumbered(systems, "Replace V-belts, fan F-2")

    class Planner(SqlTableAdapter):
        def update(self, external_id: str, changes: Any, **kwargs: Any) -> Any:
            if "wonum" in changes:
                systems.edit_sql_row(row_id, wonum="7001")
            return super().update(external_id, changes, **kwargs)

    report = systems.engine(sql=Planner(systems.sql, "plant_work_orders")).run()
    assert report.status == "succeeded", report.cause
    assert _pending_keys(systems)[0]["status"] == "pending"
    report = engine.run()
    assert report.status == "succeeded", report.cause
    (pending,) = _pending_keys(systems)
    assert pending["status"] == "superseded" and "now holds external_id '7001'" in pending["note"]
    assert pending["attempts"] == 1
    assert [n for n, row in systems.sql_rows(with_times=True).items() if row["id"] == row_id] == [
        "7001"
    ]
    assert engine.run().counts["applied"] == 0


def test_a_number_an_identity_column_assigns_is_written_back(pg_systems: Systems) -> None:
    """A system without numbers of its own (in memory, REST-like) and a plant table whose
    work-order number is an identity column: the number the database assigns on insert is
    written back to the record it came from."""
    from integration_platform.sync.adapters.memory import MemoryAdapter

    systems = pg_systems
    with systems.sql.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE numbered_orders (id serial PRIMARY KEY, wonum integer GENERATED"
                " BY DEFAULT AS IDENTITY (START WITH 5000) UNIQUE, title text NOT NULL,"
                " status text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
            )
        )
    fields = {"external_id": "number", "title": "title", "status": "status"}
    spec = SyncSpec(
        name="requests_to_plant",
        entity="work_order",
        left=SideSpec(
            system="requests", connection="requests", key_field="id", version_field="rev",
            modified_field="changed", fields=fields,
        ),
        right=SideSpec(
            system="plant_db", connection="plant_sql", key_field="id",
            modified_field="updated_at", fields=fields | {"external_id": "wonum"},
        ),
        fields=("title", "status"),
        match_field="external_id",
    )  # fmt: skip
    requests = MemoryAdapter(
        pd.DataFrame(
            [
                {
                    "id": "R1",
                    "number": None,
                    "title": "Leaking valve V-3",
                    "status": "scheduled",
                    "rev": "r0",
                    "changed": "2026-03-01T08:00:00Z",
                },
            ]
        )
    )
    engine = SyncEngine(
        spec, requests, SqlTableAdapter(systems.sql, "numbered_orders"), systems.state
    )
    report = engine.run()
    assert report.status == "succeeded", report.cause
    with systems.sql.connect() as connection:
        (row,) = connection.execute(sa.text("SELECT wonum, title FROM numbered_orders")).all()
    assert tuple(row) == (5000, "Leaking valve V-3")
    assert requests.fetch("R1")["number"] == "5000"
    written = report.planned.set_index("strategy")
    assert written.loc["assigned_key", ["system", "new_value"]].tolist() == ["requests", "5000"]
    history = record_history(
        systems.state, entity="work_order", system="requests", external_id="R1"
    )
    assert list(history["strategy"]) == ["created", "created", "assigned_key"]
    assert engine.run().counts["applied"] == 0


def test_incremental_runs_ask_both_systems_only_for_what_changed(pg_systems: Systems) -> None:
    import dataclasses

    from integration_platform.sync import ReadPolicy

    systems = pg_systems
    reads = ReadPolicy(
        incremental=True, overlap_seconds=2, full_every_runs=None, full_every_hours=None
    )
    engine = systems.engine(spec=dataclasses.replace(make_spec(), reads=reads))
    first = engine.run()
    assert (first.status, first.read_mode) == ("succeeded", "full")
    # Everything the first run wrote is newer than what it read: read once more, unchanged.
    assert engine.run().counts["applied"] == 0
    # Both systems as after a quiet month, so that the window holds only today's edits.
    long_ago = datetime(2026, 1, 5, 12, tzinfo=UTC)
    for record in systems.server.store.all("workorder"):
        plain = {k: v for k, v in record.items() if not k.startswith("_") and k != "href"}
        systems.server.put_work_order(plain | {"changedate": seed.maximo_date(long_ago)})
    with systems.sql.begin() as connection:
        connection.execute(sa.text("UPDATE plant_work_orders SET updated_at = :t"), {"t": long_ago})
    rebased = engine.run(full=True)
    assert (rebased.read_mode, rebased.counts["applied"]) == ("full", 0)
    total = rebased.counts["records_read"]

    systems.server.requests.clear()
    systems.edit_maximo("1003", description="Replace filters and belts, AHU-3")
    systems.edit_sql("1004", title="Chiller CH-1 tube cleaning, both bundles")
    report = engine.run()
    assert (report.status, report.read_mode) == ("succeeded", "incremental")
    # 1003 and 1004 in each system: the changed ones and their partners, read by id.
    assert report.counts["records_read"] == 4 and total == 2 * len(systems.sql_rows())
    assert report.counts["applied"] == 2
    assert systems.sql_rows()["1003"]["title"] == "Replace filters and belts, AHU-3"
    assert (
        systems.maximo_rows()["1004"]["description"] == "Chiller CH-1 tube cleaning, both bundles"
    )
    wheres = [r.query.get("oslc.where", "") for r in systems.server.requests if r.method == "GET"]
    assert any("changedate>=" in where for where in wheres)  # the changed ones
    assert any("wonum in [" in where for where in wheres)  # the partner of plant 1004
    assert engine.run().counts["applied"] == 0

    # A work order Maximo has had for long, entered in the plant database today: found by
    # its number although not in the window, paired and not created a second time.
    old = dict(systems.server.store.get("workorder", _rest_id("1003")) or {})
    old = {k: v for k, v in old.items() if not k.startswith("_") and k != "href"}
    systems.server.put_work_order(
        old | {"wonum": "1090", "changedate": seed.maximo_date(datetime(2026, 1, 2, tzinfo=UTC))}
    )
    with systems.sql.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO plant_work_orders (wonum, title, status, priority) VALUES"
                " ('1090', :t, 'scheduled', 'high')"
            ),
            {"t": old["description"]},
        )
    report = engine.run()
    assert report.status == "succeeded", report.cause
    assert "create" not in set(report.planned["operation"])
    assert platform_id_of(systems.state, "work_order", "maximo", "BEDFORD/1090") is not None
    engine.run()  # the new pair's lead (a manual field) settles from the queue

    # An edit stamped before the window is seen only by a full read.
    systems.edit_sql("1005", title="Backdated edit", at=datetime(2026, 1, 3, tzinfo=UTC))
    assert engine.run().counts["applied"] == 0
    report = engine.run(full=True)
    assert (report.read_mode, report.counts["applied"]) == ("full", 1)
    assert systems.maximo_rows()["1005"]["description"] == "Backdated edit"
