"""Maximo assets and PMs kept in step with plant-database tables: the Maximo contract server
on one side, tables on the real PostgreSQL on the other, edited between runs, with conflicts
decided by policy, refused stale writes, failures rolled back and repeated runs that echo
nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from integration_platform.connectors.cmms.maximo import MaximoConnector
from integration_platform.state import dispose_engines
from integration_platform.sync import (
    FieldMap,
    FieldPolicy,
    Strategy,
    SyncEngine,
    SyncSpec,
    list_conflicts,
    platform_id_of,
    record_history,
)
from integration_platform.sync.adapters.maximo import MaximoAssetAdapter, MaximoPmAdapter
from integration_platform.sync.adapters.sql import SqlTableAdapter
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.maximo import MaximoContractServer, rest_id
from integration_platform_tests.sync_rig import (
    assert_repeated_runs_write_nothing,
    assert_stale_write_became_conflict,
    failing_second_create,
    first_run,
    maximo_connector,
    maximo_side,
    open_state_and_lake,
    plant_side,
)

pytestmark = pytest.mark.postgres

ASSET_FIELDS = ("name", "asset_type", "manufacturer", "serial_number", "status", "criticality")
ASSET_TYPES = {
    "PUMP": "pump",
    "HVAC": "hvac",
    "CHILLER": "chiller",
    "COMPRESSOR": "compressor",
    "CONVEYOR": "conveyor",
    "MOTOR": "motor",
    "ELECTRICAL": "electrical",
}
ASSET_STATUSES = {
    "OPERATING": "operating",
    "NOT READY": "standby",
    "BROKEN": "out_of_service",
    "DECOMMISSIONED": "decommissioned",
}
PRIORITIES = {"1": "critical", "2": "high", "3": "medium", "4": "low"}
MAXIMO_ASSET = ("description", "assettype", "manufacturer", "serialnum", "status", "priority")
PLANT_ASSET = ("name", "asset_type", "manufacturer", "serial_number", "status", "criticality")
PM_FIELDS = ("title", "status", "work_type", "priority", "interval_value", "interval_unit")
MAXIMO_PM = ("description", "status", "worktype", "wopriority", "frequency", "frequnit")


def asset_spec(**policies: FieldPolicy) -> SyncSpec:
    return SyncSpec(
        name="maximo_plant_assets",
        entity="asset",
        left=maximo_side(
            "assetnum",
            {
                "name": "description",
                "asset_type": FieldMap("assettype", values=ASSET_TYPES),
                "manufacturer": "manufacturer",
                "serial_number": "serialnum",
                "status": FieldMap("status", values=ASSET_STATUSES),
                "criticality": FieldMap("priority", values=PRIORITIES),
            },
        ),
        right=plant_side(ASSET_FIELDS, number_column="assetnum"),
        fields=ASSET_FIELDS,
        match_field="external_id",
        policies={
            "status": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="maximo"),
            "criticality": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="plant_db"),
            "manufacturer": FieldPolicy(Strategy.MANUAL),
            **policies,
        },
    )


def pm_spec() -> SyncSpec:
    return SyncSpec(
        name="maximo_plant_pms",
        entity="maintenance_schedule",
        left=maximo_side(
            "pmnum",
            {
                "title": "description",
                "status": FieldMap("status", values={"ACTIVE": "active", "INACTIVE": "paused"}),
                "work_type": FieldMap(
                    "worktype",
                    values={"PM": "preventive", "INSP": "inspection", "LUB": "lubrication"},
                ),
                "priority": FieldMap("wopriority", values=PRIORITIES),
                "interval_value": "frequency",
                "interval_unit": FieldMap(
                    "frequnit",
                    values={"DAYS": "days", "WEEKS": "weeks", "MONTHS": "months", "YEARS": "years"},
                ),
            },
        ),
        right=plant_side(PM_FIELDS, number_column="pmnum"),
        fields=PM_FIELDS,
        match_field="external_id",
        policies={"interval_value": FieldPolicy(Strategy.MIN)},
    )


class Plant:
    """The Maximo contract server (assets and PMs) and two plant tables on PostgreSQL."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.server = MaximoContractServer(tmp_path / "maximo.db").start()
        for asset in seed.assets():
            self.server.put_asset(asset)
        for pm in seed.pms():
            self.server.put_pm(pm)
        self.sql = sa.create_engine(url)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE TABLE plant_assets (id serial PRIMARY KEY, assetnum text UNIQUE,"
                    " name text NOT NULL, asset_type text, manufacturer text, serial_number text,"
                    " status text, criticality text,"
                    " updated_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            connection.execute(
                sa.text(
                    "CREATE TABLE plant_pms (id serial PRIMARY KEY, pmnum text UNIQUE,"
                    " title text NOT NULL, status text, work_type text, priority text,"
                    " interval_value double precision, interval_unit text,"
                    " updated_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            # 11430 is in both already, with the same values; 'P-102' only here, unnumbered.
            connection.execute(
                sa.text(
                    "INSERT INTO plant_assets (assetnum, name, asset_type, manufacturer,"
                    " serial_number, status, criticality, updated_at) VALUES"
                    " ('11430', 'Centrifugal pump P-101, cooling water', 'pump', 'Goulds',"
                    "  'SN-11430-2019', 'operating', 'critical', '2026-01-05T12:00:00Z'),"
                    " (NULL, 'Cooling water pump P-102 (standby)', 'pump', 'Goulds',"
                    "  'SN-P102', 'standby', 'high', '2026-01-05T12:00:00Z')"
                )
            )
        self.state, self.lake = open_state_and_lake(url, tmp_path)

    def connector(self) -> MaximoConnector:
        return maximo_connector(self.server)

    def assets(self, *, maximo: Any = None, spec: SyncSpec | None = None) -> SyncEngine:
        adapter = maximo or MaximoAssetAdapter(
            self.connector(), create_defaults={"siteid": "BEDFORD", "orgid": "EAGLENA"}
        )
        return SyncEngine(
            spec or asset_spec(),
            adapter,
            SqlTableAdapter(self.sql, "plant_assets"),
            self.state,
            lake=self.lake,
        )

    def pms(self, *, maximo: Any = None) -> SyncEngine:
        adapter = maximo or MaximoPmAdapter(self.connector(), create_defaults={"siteid": "BEDFORD"})
        return SyncEngine(
            pm_spec(), adapter, SqlTableAdapter(self.sql, "plant_pms"), self.state, lake=self.lake
        )

    # -- edits as users of each system would make them -----------------------------------------

    def edit_maximo(self, table: str, number: str, *, at: datetime, **changes: Any) -> None:
        record = self.server.store.get(table, rest_id([number, "BEDFORD"]))
        assert record is not None
        record = {k: v for k, v in record.items() if not k.startswith("_")} | changes
        self.server.store.put(
            table,
            ("assetnum" if table == "asset" else "pmnum", "siteid"),
            record | {"changedate": seed.maximo_date(at)},
        )

    def edit_sql(self, table: str, key: str, number: str, *, at: datetime, **changes: Any) -> None:
        sets = ", ".join(f"{name} = :{name}" for name in changes)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE {table} SET {sets}, updated_at = :at WHERE {key} = :n"),
                {**changes, "at": at, "n": number},
            )

    # -- looking at both systems ---------------------------------------------------------------

    def maximo(self, table: str, fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        key = "assetnum" if table == "asset" else "pmnum"
        return {
            str(r[key]): {f: _plain(r.get(f)) for f in fields} for r in self.server.store.all(table)
        }

    def stamps(self, table: str) -> dict[str, str]:
        return {r["_restid"]: r["_rowstamp"] for r in self.server.store.all(table)}

    def plant(self, table: str, key: str, fields: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
        columns = [key, *fields, "id", "updated_at"]
        with self.sql.connect() as connection:
            rows = connection.execute(sa.text(f"SELECT {', '.join(columns)} FROM {table}"))
            return {row[0]: dict(zip(columns[1:], row[1:], strict=True)) for row in rows}

    def close(self) -> None:
        self.server.stop()
        self.sql.dispose()
        dispose_engines()


def _plain(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


@pytest.fixture
def plant(tmp_path: Path, postgres_url: str) -> Iterator[Plant]:
    found = Plant(tmp_path, postgres_url)
    yield found
    found.close()


def test_assets_pair_by_number_and_are_created_both_ways(plant: Plant) -> None:
    first_run(plant.assets())
    maximo = plant.maximo("asset", MAXIMO_ASSET)
    rows = plant.plant("plant_assets", "assetnum", PLANT_ASSET)
    assert set(rows) == set(maximo) and len(rows) == 10  # nine from Maximo, one from here
    assert rows["12750"] == {
        "name": "Water-cooled chiller CH-1",
        "asset_type": "chiller",
        "manufacturer": "Carrier",
        "serial_number": "SN-12750-2022",
        "status": "operating",
        "criticality": "critical",
        "id": rows["12750"]["id"],
        "updated_at": rows["12750"]["updated_at"],
    }
    # The plant's unnumbered pump was created in Maximo, which numbered it (autokey); the
    # number was written back, so both carry it.
    (new,) = [n for n, r in maximo.items() if r["description"].startswith("Cooling water pump")]
    assert maximo[new]["status"] == "NOT READY" and maximo[new]["priority"] == "2"
    assert rows[new]["name"] == "Cooling water pump P-102 (standby)"
    pid = platform_id_of(plant.state, "asset", "maximo", f"BEDFORD/{new}")
    assert pid == platform_id_of(plant.state, "asset", "plant_db", str(rows[new]["id"]))
    # 11430 was paired by its number, not created twice.
    assert platform_id_of(plant.state, "asset", "maximo", "BEDFORD/11430") is not None
    # The create reached Maximo through the connector's create_asset, as OSLC asks.
    (create,) = [r for r in plant.server.requests if r.method == "POST" and r.path.endswith(
        "/os/mxasset")]  # fmt: skip
    assert create.headers["properties"] == "*"


def test_asset_conflicts_follow_each_fields_policy_and_nothing_echoes(plant: Plant) -> None:
    engine = first_run(plant.assets())
    early = datetime.now(UTC) - timedelta(minutes=5)
    late = datetime.now(UTC) - timedelta(minutes=1)
    # Both changed name, status and criticality of the chiller, to different values.
    plant.edit_maximo(
        "asset", "12750", description="Chiller CH-1 (water-cooled)", status="BROKEN",
        priority=2, at=late,
    )  # fmt: skip
    plant.edit_sql(
        "plant_assets", "assetnum", "12750", name="Chiller CH-1", status="standby",
        criticality="medium", at=early,
    )  # fmt: skip
    # Different fields on each side merge; the manufacturer is decided by a person.
    plant.edit_maximo("asset", "13120", serialnum="SN-13120-NEW", at=late)
    plant.edit_sql("plant_assets", "assetnum", "13120", name="Screw compressor C-2", at=early)
    plant.edit_maximo("asset", "13200", manufacturer="ABB Motors", at=late)
    plant.edit_sql("plant_assets", "assetnum", "13200", manufacturer="ABB Ltd", at=early)

    report = engine.run()
    assert report.status == "succeeded", report.cause
    decided = report.conflicts.set_index("field")
    assert set(decided.index) == {"name", "status", "criticality", "manufacturer"}
    assert report.counts["auto_resolved"] == 3
    maximo = plant.maximo("asset", MAXIMO_ASSET)
    rows = plant.plant("plant_assets", "assetnum", PLANT_ASSET)
    assert maximo["12750"]["description"] == rows["12750"]["name"] == "Chiller CH-1 (water-cooled)"
    assert (maximo["12750"]["status"], rows["12750"]["status"]) == ("BROKEN", "out_of_service")
    assert (maximo["12750"]["priority"], rows["12750"]["criticality"]) == ("3", "medium")
    assert maximo["13120"]["description"] == rows["13120"]["name"] == "Screw compressor C-2"
    assert maximo["13120"]["serialnum"] == rows["13120"]["serial_number"] == "SN-13120-NEW"
    (waiting,) = list_conflicts(plant.state, sync_name="maximo_plant_assets").itertuples()
    assert (waiting.field, waiting.left_value, waiting.right_value) == (
        "manufacturer",
        "ABB Motors",
        "ABB Ltd",
    )
    pid = platform_id_of(plant.state, "asset", "maximo", "BEDFORD/12750")
    history = record_history(plant.state, entity="asset", platform_id=pid)
    criticality = history[history["field"] == "criticality"].iloc[-1]
    assert criticality["strategy"] == "source_priority(plant_db)"
    assert (criticality["source_system"], criticality["target_system"]) == ("plant_db", "maximo")

    # Ten more runs, each with new adapters: neither system is written to.
    assert_repeated_runs_write_nothing(
        plant.assets,
        lambda: (plant.stamps("asset"), plant.plant("plant_assets", "assetnum", PLANT_ASSET)),
        runs=10,
    )


def test_an_asset_saved_in_maximo_during_the_run_becomes_a_conflict(plant: Plant) -> None:
    engine = first_run(plant.assets())
    plant.edit_sql(
        "plant_assets", "assetnum", "12800", name="Cooling tower CT-1, cell A",
        at=datetime.now(UTC),
    )  # fmt: skip

    class Meanwhile(MaximoAssetAdapter):
        """Someone saves the asset in Maximo between the sync's read and its write."""

        def update(self, *args: Any, **kwargs: Any) -> Any:
            plant.edit_maximo("asset", "12800", serialnum="SN-CT1-B", at=datetime.now(UTC))
            return super().update(*args, **kwargs)

    adapter = Meanwhile(plant.connector(), create_defaults={"siteid": "BEDFORD"})
    report = plant.assets(maximo=adapter).run()
    assert_stale_write_became_conflict(report, plant.state, "name", sync_name="maximo_plant_assets")
    assert any(r.status == 412 for r in plant.server.requests)

    report = engine.run()
    maximo = plant.maximo("asset", MAXIMO_ASSET)
    rows = plant.plant("plant_assets", "assetnum", PLANT_ASSET)
    assert maximo["12800"]["description"] == "Cooling tower CT-1, cell A"
    assert rows["12800"]["serial_number"] == "SN-CT1-B"
    assert list_conflicts(plant.state).empty and engine.run().counts["applied"] == 0


def test_a_failed_asset_write_rolls_both_systems_back(plant: Plant) -> None:
    engine = first_run(plant.assets())
    now = datetime.now(UTC)
    for number in ("11450", "12700", "12800"):
        plant.edit_sql("plant_assets", "assetnum", number, name=f"Asset {number}, renamed", at=now)
    plant.edit_maximo("asset", "13170", serialnum="SN-CV7-2", at=now)
    with plant.sql.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO plant_assets (assetnum, name, asset_type, status, criticality)"
                " VALUES ('14001', 'Dosing pump DP-1', 'pump', 'operating', 'low'),"
                " ('14002', 'Dosing pump DP-2', 'pump', 'operating', 'low')"
            )
        )
    before_maximo = plant.maximo("asset", MAXIMO_ASSET)
    before_plant = plant.plant("plant_assets", "assetnum", PLANT_ASSET)

    failing = failing_second_create(MaximoAssetAdapter, plant.server)
    adapter = failing(plant.connector(), create_defaults={"siteid": "BEDFORD"})
    report = plant.assets(maximo=adapter).run()
    assert report.status == "rolled_back" and "503" in str(report.cause)
    assert (report.cause_type, report.retryable) == ("ServerError", True)
    # Three renames and one create in Maximo, one update in the plant's transaction.
    assert report.counts["rolled_back"] == 5
    maximo = plant.maximo("asset", MAXIMO_ASSET)
    created = [n for n in ("14001", "14002") if n in maximo]
    # Maximo cannot delete through the API: the asset created is decommissioned instead.
    assert len(created) == 1 and maximo.pop(created[0])["status"] == "DECOMMISSIONED"
    assert maximo == before_maximo
    assert plant.plant("plant_assets", "assetnum", PLANT_ASSET) == before_plant

    report = engine.run()
    assert report.status == "succeeded", report.cause
    maximo = plant.maximo("asset", MAXIMO_ASSET)
    assert maximo["12700"]["description"] == "Asset 12700, renamed"
    assert maximo["14001"]["status"] == maximo["14002"]["status"] == "OPERATING"
    rows = plant.plant("plant_assets", "assetnum", PLANT_ASSET)
    assert rows["13170"]["serial_number"] == "SN-CV7-2"
    assert engine.run().counts["applied"] == 0


def test_pms_sync_both_ways_with_numbers_maximo_assigns(plant: Plant) -> None:
    engine = plant.pms()
    with plant.sql.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO plant_pms (pmnum, title, status, work_type, priority,"
                " interval_value, interval_unit) VALUES (NULL, 'Clean strainer, pump P-9',"
                " 'active', 'preventive', 'medium', 2, 'weeks')"
            )
        )
    report = engine.run()
    assert report.status == "succeeded", report.cause
    maximo = plant.maximo("pm", MAXIMO_PM)
    rows = plant.plant("plant_pms", "pmnum", PM_FIELDS)
    assert set(rows) == set(maximo) and len(rows) == 8
    assert rows["PM1002"]["interval_value"] == 6.0 and rows["PM1002"]["interval_unit"] == "weeks"
    assert rows["PM1004"]["status"] == "paused" and rows["PM1005"]["interval_value"] is None
    (new,) = set(rows) - {f"PM100{n}" for n in range(1, 8)}
    assert maximo[new]["description"] == "Clean strainer, pump P-9"
    assert (maximo[new]["frequency"], maximo[new]["frequnit"]) == ("2", "WEEKS")
    assert engine.run().counts["applied"] == 0

    # Both shorten the interval of PM1003: the policy keeps the shorter one.
    plant.edit_maximo("pm", "PM1003", frequency=60, status="INACTIVE", at=datetime.now(UTC))
    plant.edit_sql(
        "plant_pms", "pmnum", "PM1003", interval_value=45, title="Replace filters, AHU-3 (G4)",
        at=datetime.now(UTC),
    )  # fmt: skip
    report = engine.run()
    assert report.status == "succeeded" and report.counts["auto_resolved"] == 1
    maximo, rows = plant.maximo("pm", MAXIMO_PM), plant.plant("plant_pms", "pmnum", PM_FIELDS)
    assert maximo["PM1003"]["frequency"] == "45" and rows["PM1003"]["interval_value"] == 45.0
    assert maximo["PM1003"]["description"] == "Replace filters, AHU-3 (G4)"
    assert rows["PM1003"]["status"] == "paused"
    stamps = plant.stamps("pm")
    for _ in range(3):
        assert plant.pms().run().planned.empty
    assert plant.stamps("pm") == stamps
