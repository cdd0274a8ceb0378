"""UpKeep specifics beyond the shared contract: the session life cycle, the client-side
incremental filter (work orders, assets, preventive maintenance), asset writes, and the
unconfirmed paths and attribute names as settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from integration_platform.connectors.errors import NotFound, RequestRejected
from integration_platform_tests.contract_servers.vendor_harnesses import UpKeepHarness


@pytest.fixture
def upkeep(tmp_path: Path) -> Iterator[UpKeepHarness]:
    harness = UpKeepHarness(tmp_path)
    yield harness
    harness.close()


def test_session_is_opened_once_renewed_on_401_and_closed(upkeep: UpKeepHarness) -> None:
    connector = upkeep.connector()
    assert len([r for p in connector.read_work_orders(page_size=10) for r in p.frame["id"]]) == 23
    logins = [r for r in upkeep.server.requests if r.path.endswith("/auth")]
    assert len(logins) == 1
    assert upkeep.server.data_requests()[0].headers["session-token"].startswith("r:session")
    upkeep.server.sessions.clear()  # the session expired on UpKeep's side
    list(connector.read_work_orders(page_size=10))  # logs in again, once
    assert len([r for r in upkeep.server.requests if r.path.endswith("/auth")]) == 2
    assert connector.health_check().ok
    connector.close()
    assert upkeep.server.logouts == 1 and not upkeep.server.sessions
    assert upkeep.server.requests[-1].method == "DELETE"


def test_incremental_reads_filter_on_updated_at_in_the_client(upkeep: UpKeepHarness) -> None:
    connector = upkeep.connector()
    pages = list(connector.read_work_orders(page_size=5))
    # UpKeep lists newest-created first; the pages come out in updatedAt order regardless.
    stamps = [s for p in pages for s in p.frame["updatedAt"]]
    assert stamps == sorted(stamps)
    assert all("updatedAt" not in "".join(r.query) for r in upkeep.server.data_requests())
    assert list(connector.read_work_orders(since=pages[-1].cursor, page_size=5)) == []


def test_assets_and_preventive_maintenance_are_scanned_and_ordered_in_the_client(
    upkeep: UpKeepHarness,
) -> None:
    connector = upkeep.connector()
    for read, path, count in (
        (connector.read_assets, "/api/v2/assets", 9),
        (connector.read_maintenance_schedules, "/api/v2/preventative-maintenance", 7),
    ):
        pages = list(read(page_size=4))
        stamps = [s for p in pages for s in p.frame["updatedAt"]]
        assert stamps == sorted(stamps) and len(stamps) == count
        seen = [r for r in upkeep.server.data_requests() if r.path == path]
        assert [r.query["offset"] for r in seen] == ["0", "4", "8"][: len(seen)]
        assert all("updatedAt" not in "".join(r.query) for r in seen)
        assert list(read(since=pages[-1].cursor, page_size=4)) == []


def test_asset_creates_and_updates_answer_the_stored_record(upkeep: UpKeepHarness) -> None:
    connector = upkeep.connector()
    created = connector.create_asset({"name": "Dosing pump DP-3", "location": "locBEDFORD"})
    assert created["id"] and created["createdAt"] == created["updatedAt"]
    updated = connector.update_asset(created["id"], {"serial": "DP3-2026-001"})
    assert updated["serial"] == "DP3-2026-001" and updated["name"] == "Dosing pump DP-3"
    assert [r.method for r in upkeep.server.data_requests()] == ["POST", "PATCH"]
    with pytest.raises(RequestRejected, match="name is required"):
        connector.create_asset({"serial": "no-name"})
    with pytest.raises(NotFound, match="record asMISSING"):
        connector.update_asset("asMISSING", {"name": "x"})


def test_paths_and_attribute_names_are_settings(upkeep: UpKeepHarness) -> None:
    connector = upkeep.connector(asset_fields=["name", "serial"], schedule_path="/pm-triggers")
    rows = pd.concat([p.frame for p in connector.read_assets()])
    assert list(rows.columns)[:4] == ["id", "name", "serial", "updatedAt"]
    with pytest.raises(NotFound):
        list(connector.read_maintenance_schedules())
    assert upkeep.server.requests[-1].path == "/api/v2/pm-triggers"
