"""SAP specifics beyond the shared contract: the OData query sent, the CSRF handshake and its
one retry, conditional updates, equipment time segments, the sap-client header, and
maintenance plans read with their cycles and items expanded (V2 and V4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from integration_platform.connectors.errors import (
    AuthenticationError,
    Conflict,
    NotFound,
    RequestRejected,
)
from integration_platform_tests.contract_servers.vendor_harnesses import SapHarness

END_OF_TIME_V2 = "/Date(253402214400000)/"


@pytest.fixture
def sap(tmp_path: Path) -> Iterator[SapHarness]:
    harness = SapHarness(tmp_path, odata_version="v2", auth_method="basic")
    yield harness
    harness.close()


def all_rows(pages: Iterator) -> pd.DataFrame:  # type: ignore[type-arg]
    return pd.concat([page.frame for page in pages], ignore_index=True)


def writes(sap: SapHarness) -> list[str]:
    return [f"{r.method} {r.status}" for r in sap.server.requests if r.method != "GET"]


def test_v2_query_uses_typed_literals_and_server_paging(sap: SapHarness) -> None:
    connector = sap.connector()
    first = next(iter(connector.read_work_orders()))
    assert len(first.frame) == 5  # the server's page size, whatever page_size says
    assert first.frame["LastChangeDateTime"][0].startswith("/Date(")
    rows = all_rows(connector.read_work_orders(since=first.cursor))
    assert len(rows) == 18
    query = sap.server.requests[-1].query
    assert query["$filter"] == "LastChangeDateTime ge datetimeoffset'2026-01-05T13:30:00Z'"
    assert query["$orderby"] == "LastChangeDateTime asc,MaintenanceOrder asc"
    assert query["$skiptoken"] == "15"  # followed from d.__next
    assert sap.server.requests[-1].headers["sap-client"] == "100"


def test_v4_page_size_is_a_preference(tmp_path: Path) -> None:
    harness = SapHarness(tmp_path, odata_version="v4", auth_method="basic")
    try:
        pages = list(harness.connector().read_work_orders(page_size=10))
        assert [len(p) for p in pages] == [10, 10, 3]
        assert "odata.maxpagesize=10" in harness.server.requests[-1].headers["prefer"]
    finally:
        harness.close()


def test_writes_fetch_a_csrf_token_once_and_keep_the_session(sap: SapHarness) -> None:
    connector = sap.connector()
    created = connector.create_work_order(
        {"MaintenanceOrderType": "PM01", "MaintenanceOrderDesc": "Replace seal"}
    )
    connector.update_work_order(created["MaintenanceOrder"], {"MaintPriority": "1"})
    fetches = [r for r in sap.server.requests if r.headers.get("x-csrf-token") == "Fetch"]
    assert len(fetches) == 1 and connector.client.auth.fetches == 1
    post, patch = [r for r in sap.server.requests if r.method != "GET"]
    assert post.headers["x-csrf-token"] == patch.headers["x-csrf-token"] != "Fetch"
    assert "SAP_SESSIONID_S4H_100" in post.headers["cookie"]
    assert writes(sap) == ["POST 201", "PATCH 204"]


def test_a_lost_session_is_answered_with_one_new_token(sap: SapHarness) -> None:
    connector = sap.connector()
    created = connector.create_work_order({"MaintenanceOrderType": "PM01"})
    sap.server.drop_sessions_next(1)
    connector.update_work_order(created["MaintenanceOrder"], {"MaintenanceOrderDesc": "Again"})
    assert writes(sap) == ["POST 201", "PATCH 403", "PATCH 204"]
    assert connector.client.auth.fetches == 2
    rows = all_rows(connector.read_work_orders())
    assert rows["MaintenanceOrderDesc"].tolist()[-1] == "Again"


def test_a_second_refusal_is_not_retried_again(sap: SapHarness) -> None:
    connector = sap.connector()
    created = connector.create_work_order({"MaintenanceOrderType": "PM01"})
    sap.server.drop_sessions_next(2)
    with pytest.raises(AuthenticationError) as caught:
        connector.update_work_order(created["MaintenanceOrder"], {"MaintPriority": "2"})
    assert "CSRF token validation failed" in str(caught.value)
    assert writes(sap) == ["POST 201", "PATCH 403", "PATCH 403"]


def test_a_stale_etag_is_a_conflict(sap: SapHarness) -> None:
    connector = sap.connector(conditional_updates=True)
    created = connector.create_work_order({"MaintenanceOrderType": "PM01"})
    etag = created["__metadata"]["etag"]
    connector.update_work_order(created["MaintenanceOrder"], {"MaintPriority": "1"}, etag=etag)
    with pytest.raises(Conflict) as caught:
        connector.update_work_order(created["MaintenanceOrder"], {"MaintPriority": "2"}, etag=etag)
    assert f"(record {created['MaintenanceOrder']})" in str(caught.value)


def test_v2_merge_updates_when_configured(sap: SapHarness) -> None:
    connector = sap.connector(update_method="MERGE")
    created = connector.create_work_order({"MaintenanceOrderType": "PM01"})
    connector.update_work_order(created["MaintenanceOrder"], {"MaintPriority": "1"})
    assert writes(sap) == ["POST 201", "MERGE 204"]


def test_equipment_reads_only_the_current_time_segment(sap: SapHarness) -> None:
    rows = all_rows(sap.connector().read_equipment())
    assert len(rows) == 9 and rows["Equipment"].is_unique
    assert set(rows["ValidityEndDate"]) == {"/Date(253402214400000)/"}
    everything = all_rows(sap.connector(current_equipment_only=False).read_equipment())
    assert len(everything) == 18


def test_an_unknown_sap_client_is_refused(sap: SapHarness) -> None:
    status = sap.connector(sap_client="200").health_check()
    assert not status.ok and "Client 200 is not available" in status.detail
    assert sap.connector().health_check().ok


def test_equipment_updates_patch_one_time_segment_by_its_composite_key(sap: SapHarness) -> None:
    connector = sap.connector(current_equipment_only=False)
    rows = all_rows(connector.read_equipment())
    old = rows[(rows["Equipment"] == "10011430") & (rows["ValidityEndDate"] != END_OF_TIME_V2)]
    [valid_to] = old["ValidityEndDate"].tolist()
    connector.update_equipment("10011430", {"EquipmentName": "Pump P-101 (old)"}, valid_to=valid_to)
    connector.update_equipment("10011430", {"TechnicalObjectType": "PUMP-CW"})

    patches = [r for r in sap.server.requests if r.method == "PATCH"]
    assert [r.path.rsplit("/", 1)[-1] for r in patches] == [
        "Equipment(Equipment='10011430',ValidityEndDate=datetime'2024-11-01T00:00:00')",
        "Equipment(Equipment='10011430',ValidityEndDate=datetime'9999-12-31T00:00:00')",
    ]
    assert all(r.headers["x-csrf-token"] != "Fetch" for r in patches)
    assert writes(sap) == ["PATCH 204", "PATCH 204"]
    after = all_rows(connector.read_equipment()).set_index("ValidityEndDate")
    pump = after[after["Equipment"] == "10011430"]
    assert pump.loc[valid_to, "EquipmentName"] == "Pump P-101 (old)"
    assert pump.loc[END_OF_TIME_V2, "TechnicalObjectType"] == "PUMP-CW"
    assert pump.loc[END_OF_TIME_V2, "EquipmentName"].startswith("Centrifugal pump")


def test_equipment_keys_are_read_only_and_stale_etags_conflict(tmp_path: Path) -> None:
    harness = SapHarness(tmp_path, odata_version="v4", auth_method="basic")
    try:
        connector = harness.connector(conditional_updates=True)
        [row] = [
            r
            for page in connector.read_equipment()
            for r in page.frame.to_dict("records")
            if r["Equipment"] == "10011450"
        ]
        etag = row["@odata.etag"]
        connector.update_equipment("10011450", {"ABCIndicator": "B"}, etag=etag)
        with pytest.raises(Conflict, match="HTTP 412"):
            connector.update_equipment("10011450", {"ABCIndicator": "C"}, etag=etag)
        with pytest.raises(RequestRejected, match="Property Equipment is read-only"):
            connector.update_equipment("10011450", {"Equipment": "10099999"})
        path = next(r.path for r in harness.server.requests if r.method == "PATCH")
        assert path.endswith("/Equipment(Equipment='10011450',ValidityEndDate=9999-12-31)")
    finally:
        harness.close()


def test_v2_plans_select_child_attributes_and_expand_cycles_and_items(sap: SapHarness) -> None:
    connector = sap.connector()
    first, *rest = connector.read_maintenance_schedules()
    query = sap.server.data_requests()[0].query
    assert query["$expand"] == "to_MaintenanceCycle,to_Item"
    selected = query["$select"].split(",")
    assert "to_MaintenanceCycle/MaintPlanCycRcrrcIntervalQty" in selected
    assert "to_Item/Equipment" in selected and "to_Item" not in selected
    assert query["$orderby"] == "LastChangeDateTime asc,MaintenancePlan asc"
    rows = all_rows(iter([first, *rest])).set_index("MaintenancePlan")
    # V2's {"results": [...]} is unwrapped: each child list is JSON text, as in V4
    [cycle] = json.loads(rows.loc["5001001", "to_MaintenanceCycle"])
    assert (cycle["MaintPlanCycRcrrcIntervalQty"], cycle["MaintPlanCycRcrrcIntervalUnit"]) == (
        "3",
        "MON",
    )
    assert "__metadata" not in cycle and "MaintenancePlan" not in cycle
    [meter] = json.loads(rows.loc["5001005", "to_MaintenanceCycle"])
    assert (meter["MaintPlanCycRcrrcIntervalUnit"], meter["MeasuringPoint"]) == ("H", "MP-13120")
    [item] = json.loads(rows.loc["5001005", "to_Item"])
    assert item["Equipment"] == "10013120"
    assert rows.loc["5001004", "MaintenancePlanSystemStatus"] == "INAK"
    assert rows.loc["5001001", "BasicStartDate"].startswith("/Date(")

    since = rest[-1].cursor
    assert since is not None
    assert list(connector.read_maintenance_schedules(since=since)) == []
    assert sap.server.data_requests()[-1].query["$filter"] == (
        "LastChangeDateTime ge datetimeoffset'2026-01-04T17:00:00Z'"
    )


def test_v4_plans_nest_the_child_select_in_expand(tmp_path: Path) -> None:
    harness = SapHarness(tmp_path, odata_version="v4", auth_method="oauth2")
    try:
        rows = all_rows(harness.connector().read_maintenance_schedules(page_size=4))
        query = harness.server.data_requests()[0].query
        assert query["$expand"].startswith(
            "to_MaintenanceCycle($select=MaintenancePlanCycle,MaintPlanCycRcrrcIntervalQty,"
        )
        assert "to_Item($select=MaintenanceItem," in query["$expand"]
        assert "/" not in query["$select"]
        assert json.loads(rows["to_Item"][0])[0]["MaintenanceOrderType"] == "PM03"
        assert rows["BasicStartDate"][0] == "2025-12-06"
    finally:
        harness.close()


def test_plan_children_are_settings(sap: SapHarness) -> None:
    header = all_rows(sap.connector(plan_expand=[]).read_maintenance_schedules())
    assert "$expand" not in sap.server.data_requests()[-1].query
    assert "to_Item" not in header.columns and len(header) == 7
    with pytest.raises(RequestRejected, match="Property _MaintenanceCycle not found"):
        list(sap.connector(plan_expand=["_MaintenanceCycle"]).read_maintenance_schedules())
    moved = sap.connector(maintenance_plan_service="/sap/opu/odata/sap/ZAPI_MAINTPLAN")
    with pytest.raises(NotFound):
        list(moved.read_maintenance_schedules())
    assert (
        sap.server.data_requests()[-1].path == "/sap/opu/odata/sap/ZAPI_MAINTPLAN/MaintenancePlan"
    )
