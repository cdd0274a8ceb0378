"""Fiix specifics beyond the shared contract: the signed RPC request, epoch-millisecond
cursors, errors inside HTTP 200 answers, reading without a server-side order, and scheduled
maintenance on its own change stamp."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from integration_platform.connectors.cmms.fiix import FiixFind
from integration_platform.connectors.errors import RequestRejected
from integration_platform.connectors.pagination import PaginatorError
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.vendor_harnesses import FiixHarness


@pytest.fixture
def fiix(tmp_path: Path) -> Iterator[FiixHarness]:
    harness = FiixHarness(tmp_path)
    yield harness
    harness.close()


def test_find_requests_are_signed_rpc_calls(fiix: FiixHarness) -> None:
    connector = fiix.connector()
    first = next(iter(connector.read_work_orders(page_size=5)))
    list(connector.read_work_orders(since=first.cursor, page_size=5))
    seen = fiix.server.requests[-1]
    assert seen.method == "POST" and seen.path == "/api/"
    assert seen.headers["content-type"] == "text/plain"
    assert seen.query["service"] == "cmms" and seen.query["signatureVersion"] == "1"
    url = f"{seen.headers['host']}/api/?" + "&".join(f"{k}={v}" for k, v in seen.query.items())
    signed = hmac.new(fiix.server.secret.encode(), url.encode(), hashlib.sha256).hexdigest()
    assert seen.headers["authorization"] == signed
    cursor = first.cursor
    assert cursor is not None and cursor.kind == "epoch_ms"
    assert cursor.high_water_mark == pd.Timestamp("2026-01-05T13:30:00Z")
    assert json.loads(cursor.to_json())["high_water_mark"].startswith("2026-01-05T13:30:00")


def test_find_body_filters_on_epoch_milliseconds(fiix: FiixHarness) -> None:
    connector = fiix.connector()
    first = next(iter(connector.read_work_orders(page_size=5)))
    bodies: list[dict] = []  # type: ignore[type-arg]
    real = connector.client.transport

    def recording(request):  # type: ignore[no-untyped-def]
        bodies.append(json.loads(request.body))
        return real(request)

    connector.client.transport = recording
    list(connector.read_work_orders(since=first.cursor, page_size=5))
    body = bodies[0]
    assert body["_maCn"] == "FindRequest" and body["className"] == "WorkOrder"
    assert body["filters"] == [{"ql": "dtmDateLastModified >= ?", "parameters": [1767619800000]}]
    assert body["maxObjects"] == 5 and body["startObjectIndex"] == 0
    assert [b["startObjectIndex"] for b in bodies] == [0, 5, 10, 15]


def test_errors_inside_a_200_answer_are_reported(fiix: FiixHarness) -> None:
    connector = fiix.connector()
    with pytest.raises(RequestRejected, match="intSiteID is required"):
        connector.create_work_order({"strDescription": "No site"})
    with pytest.raises(RequestRejected, match="No WorkOrder with id 99999"):
        connector.update_work_order(99999, {"strDescription": "x"})
    with pytest.raises(PaginatorError, match="Fiix refused the request: Unknown className"):
        FiixFind().records({"_maCn": "FindResponse", "error": {"message": "Unknown className"}})


def test_without_order_by_the_class_is_scanned_and_ordered_in_the_client(
    fiix: FiixHarness,
) -> None:
    connector = fiix.connector(order_by=None)
    pages = list(connector.read_work_orders(page_size=5))
    stamps = [int(s) for p in pages for s in p.frame["dtmDateLastModified"]]
    assert stamps == sorted(stamps) and len(stamps) == 23
    assert list(connector.read_work_orders(since=pages[-1].cursor, page_size=5)) == []


def test_assets(fiix: FiixHarness) -> None:
    rows = pd.concat([p.frame for p in fiix.connector().read_assets(page_size=4)])
    assert len(rows) == 9 and rows["strCode"].str.startswith("1").all()


def test_assets_are_changed_with_a_change_request_on_asset(fiix: FiixHarness) -> None:
    connector = fiix.connector()
    bodies: list[dict] = []  # type: ignore[type-arg]
    real = connector.client.transport

    def recording(request):  # type: ignore[no-untyped-def]
        bodies.append(json.loads(request.body))
        return real(request)

    connector.client.transport = recording
    changed = connector.update_asset(503, {"strName": "Chiller CH-1 (retubed)", "intSiteID": 2})
    assert changed["strName"] == "Chiller CH-1 (retubed)" and changed["id"] == 503
    [body] = bodies
    assert (body["_maCn"], body["className"]) == ("ChangeRequest", "Asset")
    assert body["changeFields"] == "strName, intSiteID"
    assert body["object"] == {
        "_maCn": "Asset",
        "id": 503,
        "strName": "Chiller CH-1 (retubed)",
        "intSiteID": 2,
    }
    with pytest.raises(RequestRejected, match="No Asset with id 99999"):
        connector.update_asset(99999, {"strName": "x"})


def test_scheduled_maintenance_is_read_incrementally_on_its_change_stamp(
    fiix: FiixHarness,
) -> None:
    connector = fiix.connector()
    bodies: list[dict] = []  # type: ignore[type-arg]
    real = connector.client.transport

    def recording(request):  # type: ignore[no-untyped-def]
        bodies.append(json.loads(request.body))
        return real(request)

    connector.client.transport = recording
    pages = list(connector.read_maintenance_schedules(page_size=3))
    rows = pd.concat([p.frame for p in pages], ignore_index=True)
    assert rows["strCode"].tolist() == [pm["pmnum"] for pm in seed.pms()]
    assert (bodies[0]["_maCn"], bodies[0]["className"]) == ("FindRequest", "ScheduledMaintenance")
    assert bodies[0]["orderBy"] == "dtmUpdatedDate, id"
    assert "intScheduledMaintenanceStatusID" in bodies[0]["fields"]
    cursor = pages[-1].cursor
    assert cursor is not None and cursor.kind == "epoch_ms"

    # a schedule changed in Fiix gets a new dtmUpdatedDate; the next read returns it alone
    stored = fiix.server.store.get("scheduledmaintenance", "901")
    assert stored is not None
    later = int(stored["dtmUpdatedDate"]) + 86_400_000 * 30
    fiix.server.put(
        "scheduledmaintenance",
        {k: v for k, v in stored.items() if not k.startswith("_")}
        | {"intScheduledMaintenanceStatusID": 2, "dtmUpdatedDate": later},
    )
    [page] = connector.read_maintenance_schedules(since=cursor)
    assert page.frame["strCode"].tolist() == ["PM1002"]
    assert bodies[-1]["filters"][0]["ql"] == "dtmUpdatedDate >= ?"


def test_scheduled_maintenance_field_names_are_settings(fiix: FiixHarness) -> None:
    connector = fiix.connector(
        schedule_fields=["strCode", "strDescription"], schedule_cursor_field="dtmUpdatedDate"
    )
    rows = pd.concat([p.frame for p in connector.read_maintenance_schedules()])
    assert list(rows.columns)[:4] == ["id", "strCode", "strDescription", "dtmUpdatedDate"]
    assert "intScheduledMaintenanceStatusID" not in rows.columns
    scanned = fiix.connector(order_by=None)
    stamps = [
        int(s)
        for p in scanned.read_maintenance_schedules(page_size=2)
        for s in p.frame["dtmUpdatedDate"]
    ]
    assert stamps == sorted(stamps) and len(stamps) == len(seed.pms())
