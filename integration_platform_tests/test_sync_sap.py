"""SAP maintenance orders kept in step with a plant-database table: the SAP contract server
(OData V2 and V4) on one side, a table on the real PostgreSQL on the other, edited between
runs. ETags as version tokens (V2 ``__metadata.etag``, V4 ``@odata.etag``), a 412 becoming a
conflict, a title conflict decided by policy, order numbers SAP assigns written back, a
failed run rolled back (the order it created flagged for deletion, not deleted), repeated
runs that echo nothing, and the YAML declaration that builds the SAP adapter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

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
    record_history,
)
from integration_platform.sync.adapters.sap import VERSION_COLUMNS, SapMaintenanceOrderAdapter
from integration_platform.sync.adapters.sql import SqlTableAdapter
from integration_platform_tests.contract_servers import sap, seed
from integration_platform_tests.contract_servers.harness import FAST_RETRIES
from integration_platform_tests.contract_servers.vendor_harnesses import SapHarness
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

STATUS = {
    "CRTD": "scheduled", "REL": "scheduled", "REL MSPT": "on_hold",
    "REL PCNF": "in_progress", "REL CNF": "completed", "TECO": "completed",
    "DLFL": "cancelled",
}  # fmt: skip
PLANT_NUMBERS = [sap.order_number(n) for n in range(1001, 1009)]
PLANT_ONLY = ("Replace V-belts, supply fan SF-2", "Clean cooling tower basin CT-1")
CREATE_DEFAULTS = {"MaintenanceOrderType": "PM01", "MaintenancePlanningPlant": "1010"}


def order_spec(version: str) -> SyncSpec:
    return SyncSpec(
        name="plant_sap_orders",
        entity="work_order",
        left=plant_side(("title", "status"), number_column="number"),
        right=SideSpec(
            system="sap",
            connection="s4",
            key_field="MaintenanceOrder",
            version_field=VERSION_COLUMNS[version],
            modified_field="LastChangeDateTime",
            fields={
                "external_id": "MaintenanceOrder",
                "title": "MaintenanceOrderDesc",
                "status": FieldMap("SystemStatusText", values=STATUS,
                                   write_values={"scheduled": "REL"}),
            },
        ),
        fields=("title", "status"),
        match_field="external_id",
        default_policy=FieldPolicy(Strategy.LAST_WRITER_WINS),
        # Status changes are made in SAP (release, confirmation); the plant follows.
        policies={"status": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="sap")},
    )  # fmt: skip


class Rig:
    """The SAP contract server, the ``plant_orders`` table and the state database."""

    def __init__(self, tmp_path: Path, url: str, version: str) -> None:
        self.version = version
        self.sap = SapHarness(tmp_path, odata_version=version, auth_method="basic")
        self.server = self.sap.server
        self.sql = sa.create_engine(url)
        orders = {o["MaintenanceOrder"]: o for o in self.server.store.all("order")}
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE TABLE plant_orders (id serial PRIMARY KEY, number text UNIQUE,"
                    " title text NOT NULL, status text,"
                    " updated_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO plant_orders (number, title, status, updated_at)"
                    " VALUES (:number, :title, :status, '2025-12-01T12:00:00Z')"
                ),
                [
                    {
                        "number": n,
                        "title": orders[n]["MaintenanceOrderDesc"],
                        "status": STATUS[orders[n]["SystemStatusText"]],
                    }
                    for n in PLANT_NUMBERS
                ]
                + [{"number": None, "title": t, "status": "scheduled"} for t in PLANT_ONLY],
            )
        self.state, self.lake = open_state_and_lake(url, tmp_path)

    def connector(self) -> Any:
        return self.sap.connector(conditional_updates=True)

    def adapter(self) -> SapMaintenanceOrderAdapter:
        return SapMaintenanceOrderAdapter(self.connector(), create_defaults=CREATE_DEFAULTS)

    def engine(self, sap_side: SapMaintenanceOrderAdapter | None = None) -> SyncEngine:
        return SyncEngine(
            order_spec(self.version),
            SqlTableAdapter(self.sql, "plant_orders"),
            sap_side or self.adapter(),
            self.state,
            lake=self.lake,
        )

    # -- edits as users of each system would make them -----------------------------------------

    def edit_sap(self, number: str, /, *, at: datetime, **changes: Any) -> None:
        """Change maintenance order ``number``, as saved in SAP at ``at``."""
        record = self.server.store.get("order", number)
        assert record is not None
        kept = {k: v for k, v in record.items() if not k.startswith("_")}
        self.server.put_order(kept | changes | {"LastChangeDateTime": at.isoformat()})

    def edit_sql(self, number: str, /, *, at: datetime, **changes: Any) -> None:
        sets = ", ".join(f"{column} = :{column}" for column in changes)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE plant_orders SET {sets}, updated_at = :at WHERE number = :n"),
                {**changes, "at": at, "n": number},
            )

    def add_sql(self, *titles: str) -> None:
        with self.sql.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO plant_orders (title, status) VALUES (:t, 'scheduled')"),
                [{"t": title} for title in titles],
            )

    # -- looking at both systems ---------------------------------------------------------------

    def orders(self) -> dict[str, dict[str, Any]]:
        """Number -> stored order (with its ``_version``, the ETag's number)."""
        return {o["MaintenanceOrder"]: o for o in self.server.store.all("order")}

    def titles(self) -> dict[str, str]:
        """Title -> number of every order in SAP (titles are unique in these tests)."""
        found = {o["MaintenanceOrderDesc"]: n for n, o in self.orders().items()}
        assert len(found) == len(self.orders())
        return found

    def etags(self) -> dict[str, int]:
        return {number: order["_version"] for number, order in self.orders().items()}

    def plant(self) -> dict[str, tuple[Any, Any, Any]]:
        """Title -> (number, status, updated_at) of every plant row."""
        with self.sql.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT title, number, status, updated_at FROM plant_orders")
            ).all()
        assert len(rows) == len({row[0] for row in rows})
        return {row[0]: tuple(row[1:]) for row in rows}

    def writes(self) -> list[Any]:
        return [r for r in self.server.requests if r.method in ("POST", "PATCH", "MERGE")]

    def close(self) -> None:
        self.sap.close()
        self.sql.dispose()
        dispose_engines()


@pytest.fixture(params=["v2", "v4"])
def rig(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> Iterator[Rig]:
    found = Rig(tmp_path, postgres_url, request.param)
    yield found
    found.close()


def test_orders_pair_by_number_and_are_created_both_ways(rig: Rig) -> None:
    first_run(rig.engine())
    plant, titles = rig.plant(), rig.titles()
    assert len(plant) == len(titles) == len(seed.work_orders()) + len(PLANT_ONLY)
    # Plant-only orders were created in SAP (with the order type SAP requires), and the
    # numbers SAP assigned were written back to the plant rows.
    for title in PLANT_ONLY:
        number = titles[title]
        assert plant[title][0] == number
        assert rig.orders()[number]["MaintenanceOrderType"] == "PM01"
    # SAP's statuses came across, through the code table.
    assert plant[rig.orders()[sap.order_number(1005)]["MaintenanceOrderDesc"]][1] == "completed"
    # Orders known to both were paired by number, not created a second time.
    creates = [r for r in rig.writes() if r.method == "POST"]
    assert len(creates) == len(PLANT_ONLY)


def test_a_title_conflict_goes_to_the_later_writer_and_nothing_echoes(rig: Rig) -> None:
    engine = first_run(rig.engine())
    early = datetime.now(UTC) - timedelta(minutes=5)
    late = datetime.now(UTC) - timedelta(minutes=1)
    seal, lube, filters = (sap.order_number(n) for n in (1001, 1002, 1003))
    # Both retitled the seal order, differently: the later edit (SAP) wins.
    rig.edit_sap(seal, at=late, MaintenanceOrderDesc="Replace seal, P-101 (SAP)")
    rig.edit_sql(seal, at=early, title="Replace seal, P-101 (plant)")
    # Different orders changed on each side simply flow.
    rig.edit_sql(lube, at=early, title="Quarterly lubrication, BFP P-204")
    rig.edit_sap(filters, at=late, SystemStatusText="REL PCNF")

    report = engine.run()
    assert report.status == "succeeded", report.cause
    assert report.conflicts["field"].tolist() == ["title"]
    assert report.counts["auto_resolved"] == 1
    orders, plant = rig.orders(), rig.plant()
    assert orders[seal]["MaintenanceOrderDesc"] == "Replace seal, P-101 (SAP)"
    assert "Replace seal, P-101 (SAP)" in plant
    assert orders[lube]["MaintenanceOrderDesc"] == "Quarterly lubrication, BFP P-204"
    assert plant[orders[filters]["MaintenanceOrderDesc"]][1] == "in_progress"
    assert list_conflicts(rig.state, sync_name="plant_sap_orders").empty
    # The one update carried the ETag read with the order, never If-Match: *.
    (patch,) = [r for r in rig.writes() if r.method in ("PATCH", "MERGE")]
    assert patch.headers["if-match"].startswith('W/"') and patch.headers["x-csrf-token"]
    history = record_history(rig.state, entity="work_order", system="sap", external_id=seal)
    (title,) = history[history["field"] == "title"].itertuples()
    assert (title.strategy, title.source_system, title.target_system) == (
        "last_writer_wins",
        "sap",
        "plant_db",
    )

    # Repeated runs, each with new adapters: neither system is written to.
    assert_repeated_runs_write_nothing(rig.engine, lambda: (rig.etags(), rig.plant()), runs=5)


def test_an_order_saved_in_sap_during_the_run_becomes_a_conflict(rig: Rig) -> None:
    engine = first_run(rig.engine())
    seal = sap.order_number(1001)
    rig.edit_sql(seal, at=datetime.now(UTC), title="Replace seal and sleeve, P-101")

    class Meanwhile(SapMaintenanceOrderAdapter):
        """Someone saves the order in SAP between the sync's read and its write."""

        def update(self, external_id: str, changes: Any, **kwargs: Any) -> Any:
            etag = f'W/"{rig.orders()[external_id]["_version"]}"'
            self.connector.update_work_order(external_id, {"MaintPriority": "1"}, etag=etag)
            return super().update(external_id, changes, **kwargs)

    report = rig.engine(Meanwhile(rig.connector(), create_defaults=CREATE_DEFAULTS)).run()
    assert_stale_write_became_conflict(report, rig.state, "title", sync_name="plant_sap_orders")
    assert any(r.status == 412 for r in rig.server.requests)

    report = engine.run()  # only the plant retitled it: the title flows now
    assert report.status == "succeeded", report.cause
    assert rig.orders()[seal]["MaintenanceOrderDesc"] == "Replace seal and sleeve, P-101"
    assert list_conflicts(rig.state).empty and engine.run().counts["applied"] == 0


def test_a_failed_write_rolls_back_and_the_created_order_is_flagged_for_deletion(
    rig: Rig,
) -> None:
    engine = first_run(rig.engine())
    now = datetime.now(UTC)
    numbers = [sap.order_number(n) for n in (1001, 1002, 1003)]
    for number in numbers:
        rig.edit_sql(number, at=now, title=f"{rig.orders()[number]['MaintenanceOrderDesc']} !")
    rig.edit_sap(sap.order_number(1004), at=now, SystemStatusText="REL CNF")
    rig.add_sql("Inspect dosing pump DP-1", "Inspect dosing pump DP-2")
    before_sap = {n: o["MaintenanceOrderDesc"] for n, o in rig.orders().items()}
    before_plant = rig.plant()

    failing = failing_second_create(SapMaintenanceOrderAdapter, rig.server)
    report = rig.engine(failing(rig.connector(), create_defaults=CREATE_DEFAULTS)).run()
    assert report.status == "rolled_back" and "503" in str(report.cause)
    # Three retitles and one create in SAP; in the plant's transaction the status update and
    # the number SAP assigned, written back.
    assert report.counts["rolled_back"] == 6
    orders = rig.orders()
    created = [n for n, o in orders.items() if o["MaintenanceOrderDesc"].startswith("Inspect")]
    # The order created stays in SAP with the deletion flag: SAP deletes no order.
    assert len(created) == 1 and orders[created[0]]["SystemStatusText"] == "DLFL"
    assert before_sap == {
        n: o["MaintenanceOrderDesc"] for n, o in orders.items() if n not in created
    }
    assert rig.plant() == before_plant

    report = engine.run()
    assert report.status == "succeeded", report.cause
    plant, orders = rig.plant(), rig.orders()
    # The plant rows had no number, so nothing pairs them with the flagged order: both are
    # created anew and carry the numbers of live orders; the flagged order stays as it is.
    dosing = {plant[t][0] for t in ("Inspect dosing pump DP-1", "Inspect dosing pump DP-2")}
    assert created[0] not in dosing and len(dosing) == 2
    assert all(orders[n]["SystemStatusText"] == "CRTD" for n in dosing)
    assert orders[created[0]]["SystemStatusText"] == "DLFL"
    assert orders[numbers[0]]["MaintenanceOrderDesc"].endswith(" !")
    assert plant[orders[sap.order_number(1004)]["MaintenanceOrderDesc"]][1] == "completed"
    assert engine.run().counts["applied"] == 0


# -- the YAML declaration --------------------------------------------------------------------


def declare(tmp_path: Path, rig: Rig, postgres_url: str, **right: Any) -> Path:
    connections = [
        {
            "name": "s4",
            "type": "sap",
            "base_url": rig.server.base_url,
            "auth": {"username": "SAP_USERNAME", "password": "SAP_PASSWORD"},
            "options": {
                "odata_version": rig.version,
                "sap_client": "100",
                "conditional_updates": True,
                **FAST_RETRIES,
            },
            "entities": [],
        },
        plant_sql_connection(postgres_url),
    ]
    sync = {
        "name": "plant_sap_orders",
        "entity": "work_order",
        "left": declared_plant_side(
            {"external_id": "number", "title": "title", "status": "status"}, "plant_orders"
        ),
        "right": {
            "system": "sap",
            "connection": "s4",
            "key_field": "MaintenanceOrder",
            "version_field": VERSION_COLUMNS[rig.version],
            "modified_field": "LastChangeDateTime",
            "fields": {
                "external_id": "MaintenanceOrder",
                "title": "MaintenanceOrderDesc",
                "status": {
                    "field": "SystemStatusText",
                    "values": STATUS,
                    "write_values": {"scheduled": "REL"},
                },
            },
            "options": {"create_defaults": CREATE_DEFAULTS},
            **right,
        },
        "fields": ["title", "status"],
        "match_field": "external_id",
        "policies": {"status": {"owner": "sap"}},
    }
    return write_sync_declaration(tmp_path, connections, sync)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAP_USERNAME", "INTEGRATION")
    monkeypatch.setenv("SAP_PASSWORD", "Welcome1")


@pytest.mark.usefixtures("credentials")
def test_a_yaml_order_sync_over_an_sap_connection_builds_and_runs(
    rig: Rig, tmp_path: Path, postgres_url: str
) -> None:
    path = declare(tmp_path, rig, postgres_url)
    sync, left, right = load_declared_sync(path, "plant_sap_orders")
    assert type(right) is SapMaintenanceOrderAdapter
    assert right.create_defaults == CREATE_DEFAULTS
    report = SyncEngine(sync.spec, left, right, rig.state).run()
    assert report.status == "succeeded", report.cause
    assert set(rig.titles()) == set(rig.plant())


@pytest.mark.usefixtures("credentials")
def test_an_sap_side_for_assets_is_refused_at_load(
    rig: Rig, tmp_path: Path, postgres_url: str
) -> None:
    path = declare(tmp_path, rig, postgres_url)
    document = yaml.safe_load(path.read_text())
    document["attributes"]["syncs"][0]["entity"] = "asset"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ValueError) as error:
        SyncComponent.from_yaml(path, defs_root=None)
    assert "right connection 's4' (sap) can sync work_order, not 'asset'" in str(error.value)


def test_a_wrong_key_or_version_column_is_refused(rig: Rig) -> None:
    spec = order_spec(rig.version)
    other = "@odata.etag" if rig.version == "v2" else "__metadata.etag"
    for right, message in (
        (SideSpec(system="sap", connection="s4", key_field="MaintenanceOrderDesc",
                  fields=dict(spec.right.fields)), "addressed by MaintenanceOrder"),
        (SideSpec(system="sap", connection="s4", key_field="MaintenanceOrder",
                  version_field=other, fields=dict(spec.right.fields)),
         f"carry their ETag in {VERSION_COLUMNS[rig.version]!r}"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            SyncEngine(
                SyncSpec(**{**vars(spec), "right": right}),
                SqlTableAdapter(rig.sql, "plant_orders"),
                rig.adapter(),
                rig.state,
            )
    unguarded = SapMaintenanceOrderAdapter(rig.sap.connector())
    with pytest.raises(ValueError, match="conditional_updates: true"):
        SyncEngine(spec, SqlTableAdapter(rig.sql, "plant_orders"), unguarded, rig.state)
