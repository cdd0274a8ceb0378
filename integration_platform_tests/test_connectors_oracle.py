"""Oracle Fusion specifics beyond the shared contract: the query sent, OAuth2, and
conditional updates with the item's ETag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_platform.connectors.errors import Conflict, RequestRejected
from integration_platform_tests.contract_servers.vendor_harnesses import OracleHarness


@pytest.fixture
def oracle(tmp_path: Path) -> Iterator[OracleHarness]:
    harness = OracleHarness(tmp_path)
    yield harness
    harness.close()


def test_query_uses_q_order_by_and_offset_paging(oracle: OracleHarness) -> None:
    connector = oracle.connector()
    first = next(iter(connector.read_work_orders(page_size=5)))
    pages = list(connector.read_work_orders(since=first.cursor, page_size=5))
    assert sum(len(p) for p in pages) == 18
    query = oracle.server.requests[-1].query
    assert query["q"] == "LastUpdateDate>='2026-01-05T13:30:00.000+00:00'"
    assert query["orderBy"] == "LastUpdateDate:asc,WorkOrderId:asc"
    assert query["onlyData"] == "true" and query["limit"] == "5"
    assert "links" not in pages[0].frame.columns


def test_oauth2_client_credentials(tmp_path: Path) -> None:
    harness = OracleHarness(tmp_path, auth_method="oauth2")
    try:
        rows = [
            r for p in harness.connector().read_work_orders(page_size=10) for r in p.frame.index
        ]
        assert len(rows) == 23
        assert harness.server.data_requests()[0].headers["authorization"].startswith("Bearer ")
    finally:
        harness.close()


def test_a_stale_etag_is_a_conflict_with_conditional_updates(oracle: OracleHarness) -> None:
    connector = oracle.connector(conditional_updates=True)
    item = connector.create_work_order({"WorkOrderDescription": "Leak", "OrganizationCode": "BED"})
    etag = f'"{oracle.server.store.version()}"'  # the ETag of the item just created
    connector.update_work_order(item["WorkOrderId"], {"WorkOrderPriority": 1}, etag=etag)
    with pytest.raises(Conflict, match="HTTP 412"):
        connector.update_work_order(item["WorkOrderId"], {"WorkOrderPriority": 2}, etag=etag)


def test_assets_are_read_from_installed_base_assets_and_patched_by_asset_id(
    oracle: OracleHarness,
) -> None:
    connector = oracle.connector()
    pages = list(connector.read_assets(page_size=4))
    assert [len(p) for p in pages] == [4, 4, 1]
    query = oracle.server.requests[-1]
    assert query.path == "/fscmRestApi/resources/11.13.18.05/installedBaseAssets"
    assert query.query["orderBy"] == "LastUpdateDate:asc,AssetId:asc"
    assert query.query["offset"] == "8" and query.query["onlyData"] == "true"
    assert "AssetNumber" in query.query["fields"].split(",")

    pump = pages[0].frame.iloc[0]
    item = connector.update_asset(pump["AssetId"], {"SerialNumber": "SN-REPLACED"})
    assert item["SerialNumber"] == "SN-REPLACED" and item["AssetNumber"] == pump["AssetNumber"]
    patch = oracle.server.data_requests("PATCH")[-1]
    assert patch.path.endswith(f"/installedBaseAssets/{pump['AssetId']}")
    assert patch.headers["content-type"] == "application/vnd.oracle.adf.resourceitem+json"
    changed = list(connector.read_assets(since=pages[-1].cursor, page_size=4))
    assert [p.frame["SerialNumber"].tolist() for p in changed] == [["SN-REPLACED"]]
    with pytest.raises(RequestRejected, match="AssetId is read-only"):
        connector.update_asset(pump["AssetId"], {"AssetId": 1})
