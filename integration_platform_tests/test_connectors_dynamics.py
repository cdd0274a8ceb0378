"""Dynamics 365 / Dataverse specifics beyond the shared contract: OData headers and
preferences, formatted values, change tracking with delta links, conditional updates and
OAuth2 token refresh; customer assets (change tracking, conditional updates, creates) and
agreement booking setups as maintenance schedules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.errors import Conflict, NotFound
from integration_platform_tests.contract_servers.vendor_harnesses import DynamicsHarness

FORMATTED = "@OData.Community.Display.V1.FormattedValue"


@pytest.fixture
def dynamics(tmp_path: Path) -> Iterator[DynamicsHarness]:
    harness = DynamicsHarness(tmp_path)
    yield harness
    harness.close()


def all_rows(pages: Iterator) -> pd.DataFrame:  # type: ignore[type-arg]
    return pd.concat([page.frame for page in pages], ignore_index=True)


def test_reads_send_odata_headers_and_preferences(dynamics: DynamicsHarness) -> None:
    connector = dynamics.connector()
    first = next(iter(connector.read_work_orders(page_size=5)))
    list(connector.read_work_orders(since=first.cursor, page_size=5))
    seen = dynamics.server.data_requests()[-1]
    assert seen.headers["odata-maxversion"] == "4.0" and seen.headers["odata-version"] == "4.0"
    assert "odata.maxpagesize=5" in seen.headers["prefer"]
    assert (
        'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
        in (seen.headers["prefer"])
    )
    assert "$skiptoken" in seen.query and "$skip" not in seen.query
    first_query = dynamics.server.data_requests()[1].query
    assert first_query["$filter"] == "modifiedon ge 2026-01-05T13:30:00Z"
    assert first_query["$orderby"] == "modifiedon asc,msdyn_workorderid asc"


def test_formatted_values_arrive_as_annotated_columns(dynamics: DynamicsHarness) -> None:
    rows = all_rows(dynamics.connector().read_work_orders())
    assert set(rows[f"_msdyn_priority_value{FORMATTED}"]) <= {"Urgent", "High", "Normal", "Low"}
    assert rows["@odata.etag"].str.startswith('W/"').all()
    plain = all_rows(dynamics.connector(formatted_values=False).read_work_orders())
    assert not [c for c in plain.columns if c.endswith(FORMATTED)]


def test_change_tracking_reads_changes_since_the_delta_link(dynamics: DynamicsHarness) -> None:
    connector = dynamics.connector(change_tracking=True)
    pages = list(connector.read_work_orders(page_size=10))
    assert [len(p) for p in pages] == [10, 10, 3]
    assert pages[0].cursor is None and pages[1].cursor is None
    cursor = Cursor.from_json(pages[-1].cursor.to_json())  # type: ignore[union-attr]
    assert cursor.kind == "text" and "$deltatoken=" in cursor.high_water_mark
    assert "odata.track-changes" in dynamics.server.data_requests()[0].headers["prefer"]

    changed = dynamics.server.store.all("workorder")[4]
    connector.update_work_order(changed["msdyn_workorderid"], {"msdyn_instructions": "Torque"})
    dynamics.server.delete_order("BEDFORD/1002")
    delta = list(dynamics.connector().read_work_orders(since=cursor))
    frame = all_rows(iter(delta))
    assert frame["msdyn_workorderid"].dropna().tolist() == [changed["msdyn_workorderid"]]
    assert frame["reason"].dropna().tolist() == ["deleted"]
    assert "$deltatoken" in dynamics.server.data_requests()[-1].query
    again = list(dynamics.connector().read_work_orders(since=delta[-1].cursor))
    # Nothing changed: at most one empty page, carrying a newer delta link.
    assert all(page.frame.empty for page in again) and len(again) <= 1


def test_change_tracking_refuses_filters_like_dataverse(dynamics: DynamicsHarness) -> None:
    import requests

    token = dynamics.connector().client.auth.token(dynamics.connector().client)  # type: ignore[attr-defined]
    answer = requests.get(
        f"{dynamics.server.api_url}/msdyn_workorders?$filter=modifiedon ge 2026-01-01T00:00:00Z",
        headers={"Authorization": f"Bearer {token}", "Prefer": "odata.track-changes"},
        timeout=5,
    )
    assert answer.status_code == 400 and "Change tracking" in answer.json()["error"]["message"]


def test_a_stale_etag_is_a_conflict_and_patch_never_upserts(dynamics: DynamicsHarness) -> None:
    connector = dynamics.connector()
    row = connector.create_work_order({"msdyn_workordersummary": "Inspect gearbox"})
    updated = connector.update_work_order(
        row["msdyn_workorderid"], {"msdyn_systemstatus": 690970001}, etag=row["@odata.etag"]
    )
    assert updated["@odata.etag"] != row["@odata.etag"]
    with pytest.raises(Conflict) as caught:
        connector.update_work_order(
            row["msdyn_workorderid"], {"msdyn_systemstatus": 690970002}, etag=row["@odata.etag"]
        )
    assert "HTTP 412" in str(caught.value) and "RowVersion" in str(caught.value)
    with pytest.raises(NotFound):
        connector.update_work_order("00000000-0000-0000-0000-000000000001", {"msdyn_name": "x"})
    assert dynamics.server.requests[-1].headers["if-match"] == "*"


def test_an_expired_token_is_fetched_again_once(dynamics: DynamicsHarness) -> None:
    connector = dynamics.connector()
    assert connector.health_check().ok
    dynamics.server.revoke_tokens()
    rows = all_rows(connector.read_work_orders())
    assert len(rows) == 23
    tokens = [r for r in dynamics.server.requests if r.path.endswith("/token")]
    assert len(tokens) == 2


def test_customer_assets_follow_delta_links_and_include_deleted_rows(
    dynamics: DynamicsHarness,
) -> None:
    connector = dynamics.connector(change_tracking=True)
    pages = list(connector.read_assets(page_size=5))
    assert [len(p) for p in pages] == [5, 4]
    cursor = pages[-1].cursor
    assert cursor is not None and "/msdyn_customerassets?" in cursor.high_water_mark
    first = dynamics.server.data_requests()[0]
    assert first.path.endswith("/msdyn_customerassets") and "$filter" not in first.query

    pump = dynamics.dynamics.customer_asset_id("11430")
    connector.update_asset(pump, {"msdyn_name": "Pump P-101 (impeller trimmed)"})
    dynamics.server.delete("msdyn_customerassets", dynamics.dynamics.customer_asset_id("13250"))
    frame = all_rows(dynamics.connector().read_assets(since=cursor))
    assert frame["msdyn_customerassetid"].dropna().tolist() == [pump]
    assert frame["msdyn_name"].dropna().tolist() == ["Pump P-101 (impeller trimmed)"]
    assert frame["id"].dropna().tolist() == [dynamics.dynamics.customer_asset_id("13250")]


def test_customer_asset_updates_are_conditional_and_never_upsert(
    dynamics: DynamicsHarness,
) -> None:
    connector = dynamics.connector()
    rows = all_rows(connector.read_assets())
    assert set(rows[f"_msdyn_customerassetcategory_value{FORMATTED}"]) >= {"Pump", "Hvac"}
    assert rows[f"statecode{FORMATTED}"].eq("Active").all()
    query = dynamics.server.data_requests()[0].query
    assert query["$orderby"] == "modifiedon asc,msdyn_customerassetid asc"
    row = rows.iloc[0]
    updated = connector.update_asset(
        row["msdyn_customerassetid"], {"statuscode": 2}, etag=row["@odata.etag"]
    )
    assert updated["statuscode"] == 2
    with pytest.raises(Conflict, match="HTTP 412"):
        connector.update_asset(
            row["msdyn_customerassetid"], {"statuscode": 1}, etag=row["@odata.etag"]
        )
    with pytest.raises(NotFound, match="msdyn_customerasset With Id"):
        connector.update_asset("00000000-0000-0000-0000-000000000002", {"msdyn_name": "x"})
    created = connector.create_asset({"msdyn_name": "Dosing pump DP-3"})
    assert created["msdyn_customerassetid"] and created["statecode"] == 0
    assert created["@odata.etag"].startswith('W/"')


def test_agreement_booking_setups_are_the_maintenance_schedules(dynamics: DynamicsHarness) -> None:
    rows = all_rows(dynamics.connector().read_maintenance_schedules(page_size=4))
    seen = dynamics.server.data_requests()[0]
    assert seen.path.endswith("/msdyn_agreementbookingsetups")
    assert "msdyn_recurrencesettings" in seen.query["$select"].split(",")
    # Calendar PMs only: Field Service recurrences have no meter trigger.
    assert len(rows) == 6
    quarterly = rows[rows["msdyn_name"] == "Quarterly vibration route, P-101"].iloc[0]
    assert "<period>monthly</period>" in quarterly["msdyn_recurrencesettings"]
    assert "every='3'" in quarterly["msdyn_recurrencesettings"]
    assert quarterly[f"_msdyn_workordertype_value{FORMATTED}"] == "Inspection"
    assert set(rows[f"statecode{FORMATTED}"]) == {"Active", "Inactive"}
    trimmed = dynamics.connector(schedule_fields=["msdyn_name"], formatted_values=False)
    columns = list(all_rows(trimmed.read_maintenance_schedules()).columns)
    assert columns == ["msdyn_agreementbookingsetupid", "msdyn_name", "modifiedon", "@odata.etag"]
