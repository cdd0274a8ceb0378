"""What the sync tests against real systems share.

:class:`SyncRig` is the example sync (``sync/examples/maximo_plant_db``) for the component, job
and CLI tests: the Maximo contract server and a ``plant_work_orders`` table on the real
PostgreSQL, with the state database there too and a temporary lake. The example's declaration
is copied unchanged except for what a test needs: fast connector retries and retry delays, so a
test exercises the file a user copies.

The functions below are the pieces the two-system tests (Maximo or Dataverse against plant
tables) build their syncs and their failures from: the usual Maximo and plant-table sides, a
connector to the Maximo contract server, a first run that must settle, and an adapter whose
second create fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
import yaml

from integration_platform.components import SyncComponent
from integration_platform.connectors.cmms.maximo import MaximoConnector
from integration_platform.lake import DeltaLake
from integration_platform.state import StateDatabase, dispose_engines
from integration_platform.sync import FieldMap, SideSpec, SyncEngine, SyncReport, list_conflicts
from integration_platform.sync.adapters.base import SyncAdapter
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.harness import FAST_RETRIES
from integration_platform_tests.contract_servers.maximo import MaximoContractServer, rest_id

EXAMPLE = (
    Path(__file__).resolve().parents[1] / "integration_platform" / "sync" / "examples"
) / "maximo_plant_db"
SYNC = "maximo_plant_work_orders"
JOB = f"sync_{SYNC}_job"
OP = f"sync_{SYNC}"
SQL_COLUMNS = ("wonum", "title", "status", "priority", "labor_hours", "cost_amount", "assigned_to")
MAXIMO_FIELDS = ("description", "status", "wopriority", "actlabhrs", "acttotalcost", "lead")

AdapterT = TypeVar("AdapterT", bound=SyncAdapter)


class SyncRig:
    """Both systems, the state database, the lake and the example declaration in tmp_path."""

    def __init__(self, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server = MaximoContractServer(tmp_path / "maximo.db").start()
        for order in seed.work_orders():
            if order["siteid"] == "BEDFORD" and int(str(order["wonum"])) <= 1008:
                self.server.put_work_order(order)
        self.sql = sa.create_engine(postgres_url)
        with self.sql.begin() as connection:
            connection.execute(sa.text((EXAMPLE / "plant_work_orders.sql").read_text()))
            connection.execute(
                sa.text(
                    "INSERT INTO plant_work_orders (wonum, title, status, priority, labor_hours,"
                    " cost_amount, assigned_to, updated_at) VALUES ('2001', 'Inspect fire pump"
                    " FP-1 packing', 'scheduled', 'low', 1.5, 80.0, 'WILSON',"
                    " '2026-01-05T12:00:00Z')"
                )
            )
        self.state = StateDatabase(url=postgres_url)
        self.state.ensure_schema()
        self.lake = DeltaLake(uri=str(tmp_path / "data" / "lake"))
        self.defs_file = self._copy_example(tmp_path / "example")
        monkeypatch.setenv("MAXIMO_BASE_URL", self.server.base_url)
        monkeypatch.setenv("MAXIMO_API_KEY", self.server.api_keys[0])
        monkeypatch.setenv("PLANT_DB_URL", postgres_url)
        monkeypatch.setenv("INTEGRATION_PLATFORM_DB_URL", postgres_url)
        monkeypatch.setenv("INTEGRATION_PLATFORM_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.delenv("INTEGRATION_PLATFORM_LAKE_URI", raising=False)

    @staticmethod
    def _copy_example(folder: Path) -> Path:
        shutil.copytree(EXAMPLE, folder)
        connections_file = folder / "connections.yaml"
        connections = yaml.safe_load(connections_file.read_text())
        for connection in connections["attributes"]["connections"]:
            if connection["type"] == "maximo":
                connection["options"].update(FAST_RETRIES)
        connections_file.write_text(yaml.safe_dump(connections, sort_keys=False))
        defs_file = folder / "defs.yaml"
        document = yaml.safe_load(defs_file.read_text())
        document["attributes"]["syncs"][0]["retry"] = {"max_retries": 2, "delay_seconds": 0}
        defs_file.write_text(yaml.safe_dump(document, sort_keys=False))
        return defs_file

    # -- edits as users of each system would make them -----------------------------------------

    def edit_maximo(self, wonum: str, **changes: Any) -> None:
        record = self.server.store.get("workorder", rest_id([wonum, "BEDFORD"]))
        assert record is not None
        record = {k: v for k, v in record.items() if not k.startswith("_")}
        record.update(changes)
        record["changedate"] = seed.maximo_date(datetime.now(UTC))
        self.server.put_work_order(record)

    def edit_sql(self, wonum: str, **changes: Any) -> None:
        sets = ", ".join(f"{name} = :{name}" for name in changes)
        with self.sql.begin() as connection:
            connection.execute(
                sa.text(
                    f"UPDATE plant_work_orders SET {sets}, updated_at = now() WHERE wonum = :w"
                ),
                {**changes, "w": wonum},
            )

    # -- looking at both systems ---------------------------------------------------------------

    def maximo_rows(self) -> dict[str, dict[str, Any]]:
        return {
            str(record["wonum"]): {
                **{name: record.get(name) for name in MAXIMO_FIELDS},
                "_rowstamp": record.get("_rowstamp"),
            }
            for record in self.server.store.all("workorder")
        }

    def sql_rows(self) -> dict[str, dict[str, Any]]:
        columns = [*SQL_COLUMNS, "updated_at"]
        with self.sql.connect() as connection:
            rows = connection.execute(
                sa.text(f"SELECT {', '.join(columns)} FROM plant_work_orders")
            ).fetchall()
        return {row[0]: dict(zip(columns[1:], row[1:], strict=True)) for row in rows}

    def state_counts(self) -> dict[str, int]:
        """Rows in each sync table of the state database."""
        tables = ("sync_runs", "sync_xrefs", "sync_bases", "sync_conflicts", "sync_audit")
        with self.state.engine().connect() as connection:
            return {
                table: int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar())
                for table in (*tables, "sync_journal")
            }

    def close(self) -> None:
        self.server.stop()
        self.sql.dispose()
        dispose_engines()


# -- pieces of the two-system sync tests -----------------------------------------------------


def maximo_side(number_field: str, fields: Mapping[str, str | FieldMap]) -> SideSpec:
    """A Maximo object structure as a sync side: a record by site and number (the number is
    also its ``external_id``), its version by ``_rowstamp``, its changes by ``changedate``."""
    return SideSpec(
        system="maximo",
        connection="maximo",
        key_field=("siteid", number_field),
        version_field="_rowstamp",
        modified_field="changedate",
        fields={"external_id": number_field, **fields},
    )


def plant_side(fields: Iterable[str], *, number_column: str | None = None) -> SideSpec:
    """A plant-database table as a sync side: a row by its serial ``id``, its changes by
    ``updated_at``, each canonical field in a column of its name; the record's number (its
    ``external_id``), where it has one, in ``number_column``."""
    numbered = {} if number_column is None else {"external_id": number_column}
    return SideSpec(
        system="plant_db",
        connection="plant_sql",
        key_field="id",
        modified_field="updated_at",
        fields={**numbered, **{name: name for name in fields}},
    )


def maximo_connector(server: MaximoContractServer) -> MaximoConnector:
    """The contract server's BEDFORD site, updates sent with the ``_rowstamp`` read as
    ``If-Match`` (a record changed meanwhile is refused), retries fast."""
    return MaximoConnector(
        base_url=server.base_url,
        api_key=server.api_keys[0],
        site_ids=["BEDFORD"],
        conditional_updates=True,
        **FAST_RETRIES,
    )


def first_run(engine: SyncEngine) -> SyncEngine:
    """Run the sync once, which must succeed, then again, which must find nothing to apply."""
    report = engine.run()
    assert report.status == "succeeded", report.cause
    assert engine.run().counts["applied"] == 0
    return engine


def failing_second_create(adapter: type[AdapterT], server: Any) -> type[AdapterT]:
    """``adapter`` whose second create meets a 503 from its contract ``server``: a create is
    never retried, so the run fails with some of its writes made."""

    class FailSecondCreate(adapter):
        creates = 0

        def create(self, values: Any) -> Any:
            FailSecondCreate.creates += 1
            if FailSecondCreate.creates == 2:
                server.fail_next(1, status=503)
            return super().create(values)

    return FailSecondCreate


def open_state_and_lake(state_url: str, tmp_path: Path) -> tuple[StateDatabase, DeltaLake]:
    """The state database at ``state_url``, its schema made, and a lake in ``tmp_path``."""
    state = StateDatabase(url=state_url)
    state.ensure_schema()
    return state, DeltaLake(uri=str(tmp_path / "lake"))


def assert_stale_write_became_conflict(
    report: SyncReport, state: StateDatabase, field: str, *, sync_name: str | None = None
) -> None:
    """The run succeeded but applied nothing: its one write met a record changed since the
    read, refused, and the change of ``field`` waits in the conflict queue."""
    assert report.status == "succeeded" and report.counts["applied"] == 0
    queue = list_conflicts(state, sync_name=sync_name)
    assert queue["field"].tolist() == [field]
    assert "refused the write because the record changed" in queue.loc[0, "reason"]


def assert_repeated_runs_write_nothing(
    new_engine: Callable[[], SyncEngine], snapshot: Callable[[], Any], runs: int
) -> None:
    """Run ``runs`` times, each with a ``new_engine()``: every run succeeds with nothing
    planned, and what ``snapshot()`` reads of both systems is unchanged."""
    before = snapshot()
    for _ in range(runs):
        again = new_engine().run()
        assert again.status == "succeeded" and again.planned.empty
    assert snapshot() == before


# -- pieces of the YAML declarations ---------------------------------------------------------


def plant_sql_connection(postgres_url: str) -> dict[str, Any]:
    """The declared ``plant_sql`` connection to the plant database."""
    return {
        "name": "plant_sql",
        "type": "sql",
        "base_url": postgres_url,
        "options": {"system_name": "plant_db"},
        "entities": [],
    }


def declared_plant_side(fields: Mapping[str, str], table: str) -> dict[str, Any]:
    """A declared plant-table side over ``plant_sql``: rows by ``id``, changes by
    ``updated_at``."""
    return {
        "system": "plant_db",
        "connection": "plant_sql",
        "key_field": "id",
        "modified_field": "updated_at",
        "fields": dict(fields),
        "options": {"table": table},
    }


def write_sync_declaration(
    tmp_path: Path, connections: list[dict[str, Any]], sync: dict[str, Any]
) -> Path:
    """Write ``connections.yaml`` and a ``defs.yaml`` declaring the one ``sync`` into
    ``tmp_path / "syncs"``; the path of ``defs.yaml``."""
    folder = tmp_path / "syncs"
    folder.mkdir()
    (folder / "connections.yaml").write_text(
        yaml.safe_dump(
            {
                "type": "integration_platform.components.ConnectionComponent",
                "attributes": {"connections": connections},
            }
        )
    )
    path = folder / "defs.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "type": "integration_platform.components.SyncComponent",
                "attributes": {"connections_file": "connections.yaml", "syncs": [sync]},
            },
            sort_keys=False,
        )
    )
    return path


def load_declared_sync(path: Path, name: str) -> tuple[Any, SyncAdapter, SyncAdapter]:
    """The sync ``name`` declared in ``path``, with the adapters its sides build."""
    component = SyncComponent.from_yaml(path, defs_root=None)
    sync = component.sync(name)
    left = sync.left.build_adapter(component.resources[sync.left.resource_key])
    right = sync.right.build_adapter(component.resources[sync.right.resource_key])
    return sync, left, right
