"""A CMMS (in memory) kept in step with Dataverse work orders on the Dynamics contract server:
ETags as version tokens, option-set codes, and 412 answers becoming conflicts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_platform.state import StateDatabase, dispose_engines
from integration_platform.sync import FieldMap, SideSpec, SyncEngine, SyncSpec, list_conflicts
from integration_platform.sync.adapters.dynamics import DynamicsWorkOrderAdapter
from integration_platform.sync.adapters.memory import MemoryAdapter
from integration_platform_tests.contract_servers.vendor_harnesses import DynamicsHarness

SYSTEM_STATUS = {
    "690970000": "scheduled",
    "690970001": "scheduled",
    "690970002": "in_progress",
    "690970003": "completed",
    "690970004": "completed",
    "690970005": "cancelled",
}
SPEC = SyncSpec(
    name="cmms_dataverse",
    entity="work_order",
    left=SideSpec(
        system="cmms", connection="cmms", key_field="id", version_field="rev",
        modified_field="changed",
        fields={"external_id": "number", "title": "title", "status": "status"},
    ),
    right=SideSpec(
        system="dataverse", connection="dynamics", key_field="msdyn_workorderid",
        version_field="@odata.etag", modified_field="modifiedon",
        fields={
            "external_id": "msdyn_name",
            "title": "msdyn_workordersummary",
            "status": FieldMap("msdyn_systemstatus", values=SYSTEM_STATUS,
                               write_values={"scheduled": "690970001"}),
        },
    ),
    fields=("title", "status"),
    match_field="external_id",
)  # fmt: skip


@pytest.fixture
def dataverse(tmp_path: Path) -> Iterator[DynamicsHarness]:
    harness = DynamicsHarness(tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDatabase]:
    database = StateDatabase(url=f"sqlite:///{tmp_path / 'state.db'}")
    database.ensure_schema()
    yield database
    dispose_engines()


def rows(dataverse: DynamicsHarness) -> dict[str, dict[str, Any]]:
    frame = pd.concat([p.frame for p in dataverse.connector().read_work_orders()])
    return {r["msdyn_name"]: r for r in frame.to_dict("records")}


def cmms() -> MemoryAdapter:
    return MemoryAdapter(
        pd.DataFrame(
            {
                "id": ["c1", "c2"],
                "number": ["WO-1001", "WO-9001"],
                "title": ["Replace mechanical seal, cooling water pump P-101", "Clean strainer"],
                "status": ["in_progress", "scheduled"],
                "rev": ["1", "1"],
                "changed": ["2026-01-05T12:00:00Z", "2026-01-05T12:00:00Z"],
            }
        )
    )


def test_etags_carry_changes_both_ways_without_echo(
    dataverse: DynamicsHarness, state: StateDatabase
) -> None:
    local = cmms()
    engine = SyncEngine(SPEC, local, DynamicsWorkOrderAdapter(dataverse.connector()), state)
    first = engine.run()
    assert first.status == "succeeded", first.cause
    created = rows(dataverse)["WO-9001"]
    assert created["msdyn_workordersummary"] == "Clean strainer"
    assert created["msdyn_systemstatus"] == "690970001"  # option set code, sent as a number
    assert len(local.read()) == len(rows(dataverse))  # Dataverse-only orders came across

    local.edit("c1", status="completed", changed="2026-03-01T08:00:00Z")
    report = engine.run()
    assert report.counts["applied"] == 1
    assert rows(dataverse)["WO-1001"]["msdyn_systemstatus"] == "690970003"
    etags = {name: row["@odata.etag"] for name, row in rows(dataverse).items()}
    for _ in range(3):
        assert engine.run().counts["applied"] == 0
    assert {name: row["@odata.etag"] for name, row in rows(dataverse).items()} == etags


def test_a_412_from_dataverse_becomes_a_conflict(
    dataverse: DynamicsHarness, state: StateDatabase
) -> None:
    local = cmms()
    engine = SyncEngine(SPEC, local, DynamicsWorkOrderAdapter(dataverse.connector()), state)
    engine.run()
    local.edit("c1", title="Replace seal and sleeve, P-101", changed="2026-03-01T08:00:00Z")

    class Meanwhile(DynamicsWorkOrderAdapter):
        def update(self, external_id: str, changes: Any, **kwargs: Any) -> Any:
            etag = rows(dataverse)["WO-1001"]["@odata.etag"]
            self.connector.update_work_order(external_id, {"msdyn_instructions": "x"}, etag=etag)
            return super().update(external_id, changes, **kwargs)

    report = SyncEngine(SPEC, local, Meanwhile(dataverse.connector()), state).run()
    assert report.status == "succeeded" and report.counts["applied"] == 0
    queue = list_conflicts(state)
    assert queue["field"].tolist() == ["title"] and "412" in queue.loc[0, "reason"]
    engine.run()  # only the CMMS changed the title: it flows now
    assert rows(dataverse)["WO-1001"]["msdyn_workordersummary"] == "Replace seal and sleeve, P-101"
    assert list_conflicts(state).empty
