"""Dynamics 365 customer assets kept in step with a plant-database table: the Dataverse
contract server on one side, a table on the real PostgreSQL on the other, edited between
runs. ETags as version tokens, a 412 becoming a conflict, a name conflict decided by policy,
a failed run rolled back (the asset it created deactivated, not deleted), repeated runs that
echo nothing, and the YAML declaration that builds the Dynamics asset adapter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from integration_platform.components import SyncComponent
from integration_platform.state import dispose_engines
from integration_platform.sync import (
    FieldMap,
    FieldPolicy,
    SideSpec,
    Strategy,
    SyncEngine,
    SyncSpec,
    list_conflicts,
    platform_id_of,
    record_history,
)
from integration_platform.sync.adapters.dynamics import DynamicsAssetAdapter
from integration_platform.sync.adapters.sql import SqlTableAdapter
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.dynamics import TOKEN_PATH, customer_asset_id
from integration_platform_tests.contract_servers.harness import FAST_RETRIES
from integration_platform_tests.contract_servers.odata import v4_date
from integration_platform_tests.contract_servers.vendor_harnesses import DynamicsHarness
from integration_platform_tests.sync_rig import (
    assert_repeated_runs_write_nothing,
    assert_stale_write_became_conflict,
    declared_plant_side,
    failing_second_create,
    first_run,
    load_declared_sync,
    open_state_and_lake,
    plant_side,
    plant_sql_connection,
    write_sync_declaration,
)

pytestmark = pytest.mark.postgres

ASSETS = "msdyn_customerassets"
STATES = {"0": "operating", "1": "decommissioned"}
SEED_NAMES = {str(a["assetnum"]): str(a["description"]) for a in seed.assets()}
PLANT_ONLY = "Cooling water pump P-102 (standby)"
DATAVERSE_ONLY = SEED_NAMES["13250"]  # the plant table starts without the switchboard


def asset_spec() -> SyncSpec:
    return SyncSpec(
        name="plant_dataverse_assets",
        entity="asset",
        left=plant_side(("name", "status")),
        right=SideSpec(
            system="dataverse",
            connection="dynamics",
            key_field="msdyn_customerassetid",
            version_field="@odata.etag",
            modified_field="modifiedon",
            fields={"name": "msdyn_name", "status": FieldMap("statecode", values=STATES)},
        ),
        fields=("name", "status"),
        # Customer assets carry no number: their primary name pairs them.
        match_field="name",
        default_policy=FieldPolicy(Strategy.LAST_WRITER_WINS),
        policies={"status": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="dataverse")},
    )


class Rig:
    """The Dataverse contract server, the ``plant_assets`` table and the state database."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.dataverse = DynamicsHarness(tmp_path)
        self.server = self.dataverse.server
        self.sql = sa.create_engine(url)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE TABLE plant_assets (id serial PRIMARY KEY, name text NOT NULL,"
                    " status text, updated_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            names = [n for n in SEED_NAMES.values() if n != DATAVERSE_ONLY] + [PLANT_ONLY]
            connection.execute(
                sa.text(
                    "INSERT INTO plant_assets (name, status, updated_at)"
                    " VALUES (:name, 'operating', '2025-12-01T12:00:00Z')"
                ),
                [{"name": name} for name in names],
            )
        self.state, self.lake = open_state_and_lake(url, tmp_path)

    def adapter(self) -> DynamicsAssetAdapter:
        return DynamicsAssetAdapter(self.dataverse.connector())

    def engine(self, dataverse: DynamicsAssetAdapter | None = None) -> SyncEngine:
        return SyncEngine(
            asset_spec(),
            SqlTableAdapter(self.sql, "plant_assets"),
            dataverse or self.adapter(),
            self.state,
            lake=self.lake,
        )

    # -- edits as users of each system would make them -----------------------------------------

    def edit_dataverse(self, current: str, /, *, at: datetime, **changes: Any) -> None:
        """Change the customer asset named ``current``, as saved in Dynamics at ``at``."""
        (row,) = [r for r in self.rows() if r["msdyn_name"] == current]
        kept = {k: v for k, v in row.items() if not k.startswith("_") or k.endswith("_value")}
        self.server.put(ASSETS, kept | changes | {"modifiedon": v4_date(at)})

    def edit_sql(self, current: str, /, *, at: datetime, **changes: Any) -> None:
        """Change the plant row named ``current``, as saved at ``at``."""
        sets = ", ".join(f"{column} = :{column}" for column in changes)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE plant_assets SET {sets}, updated_at = :at WHERE name = :n"),
                {**changes, "at": at, "n": current},
            )

    def add_sql(self, *names: str) -> None:
        with self.sql.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO plant_assets (name, status) VALUES (:name, 'operating')"),
                [{"name": name} for name in names],
            )

    # -- looking at both systems ---------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        return self.server.store.all("customerasset")

    def dataverse_assets(self) -> dict[str, tuple[Any, Any]]:
        """Name -> (statecode, statuscode) of every customer asset."""
        found: dict[str, tuple[Any, Any]] = {}
        for row in self.rows():
            assert row["msdyn_name"] not in found, f"two customer assets {row['msdyn_name']!r}"
            found[row["msdyn_name"]] = (row.get("statecode"), row.get("statuscode"))
        return found

    def etags(self) -> dict[str, int]:
        return {row["msdyn_customerassetid"]: row["_version"] for row in self.rows()}

    def plant(self) -> dict[str, str]:
        """Name -> status of every row of the plant table."""
        with self.sql.connect() as connection:
            rows = connection.execute(sa.text("SELECT name, status FROM plant_assets")).all()
        assert len(rows) == len({name for name, _ in rows})
        return dict(rows)

    def close(self) -> None:
        self.dataverse.close()
        self.sql.dispose()
        dispose_engines()


@pytest.fixture
def rig(tmp_path: Path, postgres_url: str) -> Iterator[Rig]:
    found = Rig(tmp_path, postgres_url)
    yield found
    found.close()


def test_assets_pair_by_name_and_are_created_both_ways(rig: Rig) -> None:
    first_run(rig.engine())
    dataverse, plant = rig.dataverse_assets(), rig.plant()
    assert set(dataverse) == set(plant) and len(plant) == 10
    assert plant[DATAVERSE_ONLY] == "operating"
    # Created in Dataverse by POST, the state code sent as the integer an option set takes.
    assert dataverse[PLANT_ONLY][0] == 0
    (create,) = [r for r in rig.server.requests if r.method == "POST" and ASSETS in r.path]
    assert "return=representation" in create.headers["prefer"]
    (created,) = [r for r in rig.rows() if r["msdyn_name"] == PLANT_ONLY]
    pid = platform_id_of(rig.state, "asset", "dataverse", created["msdyn_customerassetid"])
    assert pid is not None
    # Assets known to both were paired by name, not created a second time.
    chiller = customer_asset_id("12750")
    assert platform_id_of(rig.state, "asset", "dataverse", chiller) is not None


def test_a_name_conflict_goes_to_the_later_writer_and_nothing_echoes(rig: Rig) -> None:
    engine = first_run(rig.engine())
    early = datetime.now(UTC) - timedelta(minutes=5)
    late = datetime.now(UTC) - timedelta(minutes=1)
    # Both renamed the chiller, to different names: the later edit (Dataverse) wins.
    rig.edit_dataverse(SEED_NAMES["12750"], at=late, msdyn_name="Chiller CH-1 (WC)")
    rig.edit_sql(SEED_NAMES["12750"], name="Chiller CH-1", at=early)
    # Different assets changed on each side simply flow.
    rig.edit_sql(SEED_NAMES["13170"], name="Belt conveyor CV-7 (extended)", at=early)
    rig.edit_dataverse(SEED_NAMES["12800"], at=late, statecode=1, statuscode=2)

    report = engine.run()
    assert report.status == "succeeded", report.cause
    assert report.conflicts["field"].tolist() == ["name"]
    assert report.counts["auto_resolved"] == 1
    dataverse, plant = rig.dataverse_assets(), rig.plant()
    assert "Chiller CH-1 (WC)" in dataverse and "Chiller CH-1 (WC)" in plant
    assert dataverse["Belt conveyor CV-7 (extended)"] == (0, 1)
    assert plant[SEED_NAMES["12800"]] == "decommissioned"
    assert list_conflicts(rig.state, sync_name="plant_dataverse_assets").empty
    # Every update carried the ETag read with the row, never If-Match: *.
    patches = [r for r in rig.server.requests if r.method == "PATCH"]
    assert len(patches) == 1 and patches[0].headers["if-match"].startswith('W/"')
    pid = platform_id_of(rig.state, "asset", "dataverse", customer_asset_id("12750"))
    history = record_history(rig.state, entity="asset", platform_id=pid)
    (name,) = history[history["field"] == "name"].itertuples()
    assert (name.strategy, name.source_system, name.target_system) == (
        "last_writer_wins",
        "dataverse",
        "plant_db",
    )

    # Ten more runs, each with new adapters: neither system is written to.
    assert_repeated_runs_write_nothing(rig.engine, lambda: (rig.etags(), rig.plant()), runs=10)


def test_an_asset_saved_in_dataverse_during_the_run_becomes_a_conflict(rig: Rig) -> None:
    engine = first_run(rig.engine())
    rig.edit_sql(SEED_NAMES["12700"], name="Air handling unit AHU-3 (roof)", at=datetime.now(UTC))

    class Meanwhile(DynamicsAssetAdapter):
        """Someone saves the asset in Dynamics between the sync's read and its write."""

        def update(self, external_id: str, changes: Any, **kwargs: Any) -> Any:
            (row,) = [r for r in rig.rows() if r["msdyn_customerassetid"] == external_id]
            etag = f'W/"{row["_version"]}"'
            self.connector.update_asset(external_id, {"statuscode": 1}, etag=etag)
            return super().update(external_id, changes, **kwargs)

    report = rig.engine(Meanwhile(rig.dataverse.connector())).run()
    assert_stale_write_became_conflict(
        report, rig.state, "name", sync_name="plant_dataverse_assets"
    )
    assert any(r.status == 412 for r in rig.server.requests)

    report = engine.run()  # only the plant renamed it: the name flows now
    assert report.status == "succeeded", report.cause
    assert "Air handling unit AHU-3 (roof)" in rig.dataverse_assets()
    assert list_conflicts(rig.state).empty and engine.run().counts["applied"] == 0


def test_a_failed_write_rolls_back_and_the_created_asset_is_deactivated(rig: Rig) -> None:
    engine = first_run(rig.engine())
    now = datetime.now(UTC)
    for number in ("11450", "12700", "12800"):
        rig.edit_sql(SEED_NAMES[number], name=f"{SEED_NAMES[number]} (renamed)", at=now)
    rig.edit_dataverse(SEED_NAMES["13120"], at=now, statecode=1, statuscode=2)
    rig.add_sql("Dosing pump DP-1", "Dosing pump DP-2")
    before_dataverse, before_plant = rig.dataverse_assets(), rig.plant()

    failing = failing_second_create(DynamicsAssetAdapter, rig.server)
    report = rig.engine(failing(rig.dataverse.connector())).run()
    assert report.status == "rolled_back" and "503" in str(report.cause)
    assert (report.cause_type, report.retryable) == ("ServerError", True)
    # Three renames and one create in Dataverse, one update in the plant's transaction.
    assert report.counts["rolled_back"] == 5
    dataverse = rig.dataverse_assets()
    created = [name for name in ("Dosing pump DP-1", "Dosing pump DP-2") if name in dataverse]
    # The asset created is deactivated (Inactive / Inactive), not deleted.
    assert len(created) == 1 and dataverse.pop(created[0]) == (1, 2)
    assert dataverse == before_dataverse
    assert rig.plant() == before_plant

    report = engine.run()
    assert report.status == "succeeded", report.cause
    dataverse, plant = rig.dataverse_assets(), rig.plant()
    # The retired asset was written over (reactivated), not created a second time.
    assert dataverse["Dosing pump DP-1"][0] == dataverse["Dosing pump DP-2"][0] == 0
    assert f"{SEED_NAMES['12700']} (renamed)" in dataverse
    assert plant[SEED_NAMES["13120"]] == "decommissioned"
    assert engine.run().counts["applied"] == 0


# -- the YAML declaration --------------------------------------------------------------------


def declare(tmp_path: Path, rig: Rig, postgres_url: str, entity: str = "asset") -> Path:
    connections = [
        {
            "name": "d365",
            "type": "dynamics",
            "base_url": rig.server.base_url,
            "auth": {"client_id": "D365_CLIENT_ID", "client_secret": "D365_CLIENT_SECRET"},
            "options": {"token_url": TOKEN_PATH, **FAST_RETRIES},
            "entities": [],
        },
        plant_sql_connection(postgres_url),
    ]
    spec = asset_spec()
    sync = {
        "name": spec.name,
        "entity": entity,
        "left": declared_plant_side({"name": "name", "status": "status"}, "plant_assets"),
        "right": {
            "system": "dataverse",
            "connection": "d365",
            "key_field": "msdyn_customerassetid",
            "version_field": "@odata.etag",
            "modified_field": "modifiedon",
            "fields": {"name": "msdyn_name", "status": {"field": "statecode", "values": STATES}},
        },
        "fields": ["name", "status"],
        "match_field": "name",
        "policies": {"status": {"owner": "dataverse"}},
    }
    if entity != "asset":
        sync["left"]["fields"] = sync["right"]["fields"] = {"title": "name"}
        sync["fields"], sync["match_field"], sync["policies"] = ["title"], None, {}
    return write_sync_declaration(tmp_path, connections, sync)


@pytest.fixture
def credentials(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D365_CLIENT_ID", rig.server.client_id)
    monkeypatch.setenv("D365_CLIENT_SECRET", rig.server.client_secret)


@pytest.mark.usefixtures("credentials")
def test_a_yaml_asset_sync_over_a_dynamics_connection_builds_and_runs(
    rig: Rig, tmp_path: Path, postgres_url: str
) -> None:
    path = declare(tmp_path, rig, postgres_url)
    sync, left, right = load_declared_sync(path, "plant_dataverse_assets")
    assert type(right) is DynamicsAssetAdapter and right.entity_set == ASSETS
    report = SyncEngine(sync.spec, left, right, rig.state).run()
    assert report.status == "succeeded", report.cause
    assert set(rig.dataverse_assets()) == set(rig.plant())


@pytest.mark.usefixtures("credentials")
def test_a_dynamics_side_for_schedules_is_still_refused_at_load(
    rig: Rig, tmp_path: Path, postgres_url: str
) -> None:
    path = declare(tmp_path, rig, postgres_url, entity="maintenance_schedule")
    with pytest.raises(ValueError) as error:
        SyncComponent.from_yaml(path, defs_root=None)
    assert (
        "syncs[0].entity: right connection 'd365' (dynamics) can sync work_order, asset, "
        "not 'maintenance_schedule'" in str(error.value)
    )


def test_a_key_other_than_the_row_id_is_refused(rig: Rig) -> None:
    spec = asset_spec()
    right = SideSpec(
        system="dataverse", connection="dynamics", key_field="msdyn_name",
        fields=dict(spec.right.fields),
    )  # fmt: skip
    with pytest.raises(ValueError, match="addressed by msdyn_customerassetid; set key_field"):
        SyncEngine(
            SyncSpec(**{**vars(spec), "right": right}),
            SqlTableAdapter(rig.sql, "plant_assets"),
            rig.adapter(),
            rig.state,
        )
