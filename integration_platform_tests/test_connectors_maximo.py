"""Maximo specifics beyond the shared contract: the OSLC query it sends, assets and PMs,
creates and updates of work orders, assets and PMs (read back alone by the next incremental
read with the rowstamp answered; a stale rowstamp is a Conflict), writes that must not be
repeated, proxies' host names, and use inside Dagster (a connection extracting PMs to
bronze, mapped by the built-in)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests
import yaml

from integration_platform.components.connection import ConnectionComponent
from integration_platform.connectors.cmms.maximo import MaximoConnector, record_key_from_href
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.errors import Conflict, RequestRejected, ServerError
from integration_platform.lake import DeltaLake
from integration_platform.mapping.compiler import compile_mapping, load_spec_file
from integration_platform.mapping.spec import BUILTIN_DIR
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.harness import MaximoHarness


@pytest.fixture
def maximo(tmp_path: Path) -> Iterator[MaximoHarness]:
    harness = MaximoHarness(tmp_path, context_root="/maximo/oslc", auth_method="apikey")
    yield harness
    harness.close()


def all_rows(pages: Iterator) -> pd.DataFrame:  # type: ignore[type-arg]
    return pd.concat([page.frame for page in pages], ignore_index=True)


def test_incremental_query_follows_oslc_conventions(maximo: MaximoHarness) -> None:
    connector = maximo.connector(site_ids=["BEDFORD"])
    first = next(iter(connector.read_work_orders(page_size=5)))
    rows = all_rows(connector.read_work_orders(since=first.cursor, page_size=5))
    assert set(rows["siteid"]) == {"BEDFORD"}
    query = maximo.server.requests[-1].query
    assert query["lean"] == "1"
    assert query["oslc.orderBy"] == "+changedate,+wonum"
    assert query["oslc.where"] == 'siteid="BEDFORD" and changedate>="2026-01-05T13:30:00+00:00"'
    assert "wonum" in query["oslc.select"] and "_rowstamp" not in query["oslc.select"]


def test_several_sites_are_selected_with_in(maximo: MaximoHarness) -> None:
    rows = all_rows(maximo.connector(site_ids=["BEDFORD", "NASHUA"]).read_work_orders())
    assert len(rows) == 23
    assert maximo.server.requests[-1].query["oslc.where"] == 'siteid in ["BEDFORD","NASHUA"]'


def test_server_refuses_an_unencoded_plus_in_order_by(maximo: MaximoHarness) -> None:
    """The contract server keeps Maximo's quirk: a raw ``+`` decodes to a space."""
    answer = requests.get(
        f"{maximo.server.api_url}/os/mxwo?lean=1&oslc.orderBy=+changedate",
        headers={"apikey": maximo.server.api_keys[0]},
        timeout=5,
    )
    assert answer.status_code == 400 and "must start with + or -" in answer.text


def test_assets_are_read_with_their_row_versions(maximo: MaximoHarness) -> None:
    rows = all_rows(maximo.connector().read_assets(page_size=4))
    assert len(rows) == 9
    assert rows["_rowstamp"].notna().all() and rows["href"].str.contains("/os/mxasset/_").all()
    assert maximo.server.requests[-1].path.endswith("/os/mxasset")


def test_create_echoes_the_record_and_update_uses_method_override(maximo: MaximoHarness) -> None:
    connector = maximo.connector()
    created = connector.create_work_order(
        {"siteid": "BEDFORD", "description": "Check pump P-101 alignment", "worktype": "CM"}
    )
    assert created["wonum"] == "1024" and created["status"] == "WAPPR"
    assert record_key_from_href(created["href"]) == "1024/BEDFORD"
    post = maximo.server.requests[-1]
    assert post.method == "POST" and post.headers["properties"] == "*"
    updated = connector.update_work_order(created["href"], {"status": "APPR"})
    patch = maximo.server.requests[-1]
    assert patch.method == "POST" and patch.headers["x-method-override"] == "PATCH"
    assert patch.path.endswith(created["href"].rsplit("/", 1)[-1])
    assert updated["status"] == "APPR"
    assert int(updated["_rowstamp"]) > int(created["_rowstamp"])


def test_stale_rowstamp_is_a_conflict_with_conditional_updates(maximo: MaximoHarness) -> None:
    connector = maximo.connector(conditional_updates=True)
    created = connector.create_work_order({"siteid": "BEDFORD", "description": "Leak"})
    connector.update_work_order(created["href"], {"status": "APPR"}, rowstamp=created["_rowstamp"])
    with pytest.raises(Conflict) as caught:
        connector.update_work_order(
            created["href"], {"status": "INPRG"}, rowstamp=created["_rowstamp"]
        )
    message = str(caught.value)
    assert "(record 1024/BEDFORD)" in message and "HTTP 412" in message
    assert "read the record again" in message.lower()


def test_refused_create_names_the_record(maximo: MaximoHarness) -> None:
    with pytest.raises(RequestRejected) as caught:
        maximo.connector().create_work_order({"siteid": "BEDFORD", "wonum": "1001"})
    assert "(record BEDFORD/1001)" in str(caught.value) and "BMXAA4129E" in str(caught.value)


def test_a_create_is_not_repeated_after_a_server_error(maximo: MaximoHarness) -> None:
    """The server may have stored the record before failing: a retry could duplicate it."""
    maximo.server.fail_next(1, status=503)
    with pytest.raises(ServerError):
        maximo.connector().create_work_order({"siteid": "BEDFORD", "description": "Once"})
    assert maximo.server.count("POST") == 1


def test_links_with_an_internal_host_name_stay_on_the_configured_host(
    maximo: MaximoHarness,
) -> None:
    maximo.server.public_origin = "http://maximo-internal.corp:9080"
    connector = maximo.connector()
    rows = all_rows(connector.read_work_orders(page_size=5))
    assert len(rows) == 23 and rows["href"].str.startswith("http://maximo-internal").all()
    updated = connector.update_work_order(rows["href"][0], {"description": "Rebased"})
    assert updated["description"] == "Rebased"


def test_a_missing_environment_variable_is_named(maximo: MaximoHarness) -> None:
    connector = MaximoConnector(
        base_url=maximo.server.base_url, api_key=dg.EnvVar("MAXIMO_CONTRACT_UNSET_KEY")
    )
    status = connector.health_check()
    assert not status.ok and "MAXIMO_CONTRACT_UNSET_KEY" in status.detail


def test_works_as_a_dagster_resource_with_env_var_credentials(
    maximo: MaximoHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAXIMO_API_KEY", maximo.server.api_keys[0])

    @dg.asset
    def maximo_work_orders(context, maximo: MaximoConnector) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        pages = list(maximo.read_work_orders())
        context.add_output_metadata({"cursor": pages[-1].cursor.to_json()})  # type: ignore[union-attr]
        return pd.concat([p.frame for p in pages], ignore_index=True)

    resource = MaximoConnector(
        base_url=maximo.server.base_url, api_key=dg.EnvVar("MAXIMO_API_KEY"), page_size=10
    )
    result = dg.materialize([maximo_work_orders], resources={"maximo": resource})
    assert result.success
    assert len(result.output_for_node("maximo_work_orders")) == 23


def test_pms_are_read_incrementally_on_changedate(maximo: MaximoHarness) -> None:
    connector = maximo.connector(pm_object_structure="mxapipm")
    pages = list(connector.read_maintenance_schedules(page_size=3))
    rows = pd.concat([p.frame for p in pages], ignore_index=True)
    assert rows["pmnum"].tolist() == [pm["pmnum"] for pm in seed.pms()]
    query = maximo.server.requests[-1].query
    assert maximo.server.requests[-1].path.endswith("/os/mxapipm")
    assert query["oslc.orderBy"] == "+changedate,+pmnum"
    assert "pmmeter{metername,frequency,lastpmwogenread}" in query["oslc.select"]
    # meter rows stay nested JSON text; calendar-only PMs have none
    meters = rows.set_index("pmnum")["pmmeter"]
    assert json.loads(meters["PM1005"]) == [
        {"metername": "RUNHOURS", "frequency": 4000.0, "lastpmwogenread": 16000.0}
    ]
    assert pd.isna(meters["PM1001"])
    # PM1003-PM1005 share a changedate across the first page boundary: resuming after the
    # first page repeats and skips nothing, and nothing comes after the final cursor
    first = Cursor.from_json(pages[0].cursor.to_json())  # type: ignore[union-attr]
    rest = [p.frame for p in connector.read_maintenance_schedules(since=first, page_size=3)]
    resumed = pages[0].frame["pmnum"].tolist() + pd.concat(rest)["pmnum"].tolist()
    assert resumed == rows["pmnum"].tolist()
    assert list(connector.read_maintenance_schedules(since=pages[-1].cursor)) == []


def test_a_changed_pm_is_read_back_alone(maximo: MaximoHarness) -> None:
    connector = maximo.connector()
    *_, last = connector.read_maintenance_schedules(page_size=5)
    pm = next(p for p in seed.pms() if p["pmnum"] == "PM1002")
    later = seed.maximo_date(seed.FIRST_CHANGE)
    maximo.server.put_pm({**pm, "status": "INACTIVE", "changedate": later})
    [page] = connector.read_maintenance_schedules(since=last.cursor)
    assert page.frame[["pmnum", "status"]].values.tolist() == [["PM1002", "INACTIVE"]]


def test_asset_update_posts_to_the_href_with_method_override(maximo: MaximoHarness) -> None:
    connector = maximo.connector(conditional_updates=True)
    rows = all_rows(connector.read_assets())
    row = rows[rows["assetnum"] == "12750"].iloc[0]
    updated = connector.update_asset(
        row["href"], {"description": "Chiller CH-1 (retubed)"}, rowstamp=row["_rowstamp"]
    )
    post = maximo.server.requests[-1]
    assert post.method == "POST" and post.headers["x-method-override"] == "PATCH"
    assert post.headers["if-match"] == row["_rowstamp"]
    assert post.path.endswith(row["href"].rsplit("/", 1)[-1])
    assert updated["description"] == "Chiller CH-1 (retubed)"
    with pytest.raises(Conflict, match="record 12750/BEDFORD"):
        connector.update_asset(row["href"], {"description": "stale"}, rowstamp=row["_rowstamp"])
    # by key: SITEID/ASSETNUM builds the same href; without a rowstamp, no If-Match
    again = connector.update_asset("BEDFORD/12750", {"priority": 2})
    assert again["priority"] == 2 and "if-match" not in maximo.server.requests[-1].headers
    with pytest.raises(ValueError, match="neither an href nor SITEID/ASSETNUM"):
        connector.update_asset("12750", {"priority": 2})


def test_a_connection_extracts_pms_and_the_builtin_maps_them(
    maximo: MaximoHarness, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAXIMO_BASE_URL", maximo.server.base_url)
    monkeypatch.setenv("MAXIMO_API_KEY", maximo.server.api_keys[0])
    connection = {
        "name": "maximo",
        "type": "maximo",
        "base_url_env": "MAXIMO_BASE_URL",
        "auth": {"api_key": "MAXIMO_API_KEY"},
        "options": {"requests_per_second": 0},
        "page_size": 3,
        "entities": ["maintenance_schedules"],
    }
    document = {
        "type": "integration_platform.components.ConnectionComponent",
        "requirements": {"env": ["MAXIMO_BASE_URL", "MAXIMO_API_KEY"]},
        "attributes": {"connections": [connection]},
    }
    path = tmp_path / "defs" / "maximo" / "defs.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    component = ConnectionComponent.from_yaml(path)
    key = dg.AssetKey(["bronze", "maximo", "maintenance_schedules"])
    defs = component.build_defs(None)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.key == key]
    lake = DeltaLake(uri=str(data_dir / "lake"))
    result = dg.materialize(assets, resources={**component.resources, "lake": lake})
    assert result.success
    bronze = lake.read(key.path)
    assert sorted(bronze["pmnum"]) == sorted(pm["pmnum"] for pm in seed.pms())

    spec, source_map = load_spec_file(BUILTIN_DIR / "maximo" / "maintenance_schedules.yaml")
    outcome = compile_mapping(spec, source_map=source_map).apply(bronze)
    assert outcome.rejected.empty
    schedules = outcome.valid.set_index("external_id")
    assert schedules.loc[
        "PM1001", ["trigger_type", "interval_value", "interval_unit"]
    ].tolist() == [
        "time",
        3.0,
        "months",
    ]
    # meter only: usage-based, read from the PMMETER JSON text of the bronze table
    assert schedules.loc["PM1005", ["trigger_type", "meter_name", "usage_interval"]].tolist() == [
        "usage",
        "runhours",
        4000.0,
    ]
    # calendar and meter: time-based (the canonical schedule holds one trigger)
    assert schedules.loc["PM1007", "trigger_type"] == "time"
    assert pd.isna(schedules.loc["PM1007", "meter_name"])
    assert schedules.loc["PM1004", "status"] == "paused"


# -- asset and PM writes: the same contract as work orders ------------------------------------


@dataclass(frozen=True)
class OslcWrites:
    """One object structure's writes on the connector, and what a new record holds."""

    entity: str  # read_<entity>
    create: str
    update: str
    number: str
    text: str
    record: dict[str, object]
    object_structure: str


ASSET_WRITES = OslcWrites(
    "assets",
    "create_asset",
    "update_asset",
    "assetnum",
    "description",
    {"siteid": "BEDFORD", "orgid": "EAGLENA", "description": "Dosing pump DP-3",
     "assettype": "PUMP", "status": "OPERATING"},
    "/os/mxasset",
)  # fmt: skip
PM_WRITES = OslcWrites(
    "maintenance_schedules",
    "create_maintenance_schedule",
    "update_maintenance_schedule",
    "pmnum",
    "description",
    {"siteid": "BEDFORD", "orgid": "EAGLENA", "description": "Clean strainer, pump P-9",
     "status": "ACTIVE", "frequency": 2, "frequnit": "WEEKS"},
    "/os/mxpm",
)  # fmt: skip
WRITES = [pytest.param(ASSET_WRITES, id="assets"), pytest.param(PM_WRITES, id="pms")]


def read_since(connector: MaximoConnector, writes: OslcWrites, since: Cursor | None) -> tuple:
    """The rows read (all when ``since`` is None) and the cursor after the last page."""
    pages = list(getattr(connector, f"read_{writes.entity}")(since=since, page_size=4))
    rows = pd.concat([p.frame for p in pages], ignore_index=True) if pages else pd.DataFrame()
    return rows, (pages[-1].cursor if pages else since)


@pytest.mark.parametrize("writes", WRITES)
def test_a_created_record_comes_back_with_its_number_and_rowstamp(
    maximo: MaximoHarness, writes: OslcWrites
) -> None:
    connector = maximo.connector(conditional_updates=True)
    _, cursor = read_since(connector, writes, None)
    created = getattr(connector, writes.create)(writes.record)
    post = maximo.server.requests[-1]
    assert (post.method, post.headers["properties"]) == ("POST", "*")
    assert post.path.endswith(writes.object_structure)
    number = created[writes.number]  # numbered by Maximo (autokey)
    assert record_key_from_href(created["href"]) == f"{number}/BEDFORD"
    # The write shows on the next incremental read, alone, with the version token answered.
    rows, after = read_since(connector, writes, cursor)
    assert rows[writes.number].tolist() == [number]
    assert rows["_rowstamp"].tolist() == [created["_rowstamp"]]
    assert read_since(connector, writes, after)[0].empty
    # A number given is kept; given twice, Maximo refuses it naming the record.
    given = getattr(connector, writes.create)({**writes.record, writes.number: "X-77"})
    assert given[writes.number] == "X-77"
    with pytest.raises(RequestRejected, match=r"\(record BEDFORD/X-77\).*BMXAA4129E"):
        getattr(connector, writes.create)({**writes.record, writes.number: "X-77"})


@pytest.mark.parametrize("writes", WRITES)
def test_an_update_patches_the_href_and_a_stale_rowstamp_is_a_conflict(
    maximo: MaximoHarness, writes: OslcWrites
) -> None:
    connector = maximo.connector(conditional_updates=True)
    rows, cursor = read_since(connector, writes, None)
    row = rows.iloc[1]
    update = getattr(connector, writes.update)
    updated = update(row["href"], {writes.text: "Overhauled"}, rowstamp=row["_rowstamp"])
    post = maximo.server.requests[-1]
    assert (post.method, post.headers["x-method-override"]) == ("POST", "PATCH")
    assert post.headers["if-match"] == row["_rowstamp"]
    assert post.path.endswith(row["href"].rsplit("/", 1)[-1])
    assert updated[writes.text] == "Overhauled"
    assert int(updated["_rowstamp"]) > int(row["_rowstamp"])
    changed, _ = read_since(connector, writes, cursor)
    assert changed[[writes.number, writes.text, "_rowstamp"]].values.tolist() == [
        [row[writes.number], "Overhauled", updated["_rowstamp"]]
    ]
    key = f"{row[writes.number]}/BEDFORD"
    with pytest.raises(Conflict, match=rf"\(record {key}\).*HTTP 412"):
        update(row["href"], {writes.text: "Stale"}, rowstamp=row["_rowstamp"])
    # By SITEID/NUMBER the href is built; without a rowstamp no If-Match is sent.
    again = update(f"BEDFORD/{row[writes.number]}", {writes.text: "By key"})
    assert again[writes.text] == "By key" and "if-match" not in maximo.server.requests[-1].headers
    with pytest.raises(ValueError, match="neither an href nor SITEID/"):
        update(str(row[writes.number]), {writes.text: "No site"})


@pytest.mark.parametrize("writes", WRITES)
def test_a_create_is_sent_once_and_an_update_is_retried(
    maximo: MaximoHarness, writes: OslcWrites
) -> None:
    """A create may have been stored before the server failed; a PATCH is safe to repeat."""
    connector = maximo.connector()
    maximo.server.fail_next(1, status=503)
    with pytest.raises(ServerError):
        getattr(connector, writes.create)(writes.record)
    assert maximo.server.count("POST", writes.object_structure) == 1
    href = getattr(connector, writes.create)(writes.record)["href"]
    maximo.server.fail_next(1, status=503)
    updated = getattr(connector, writes.update)(href, {writes.text: "Retried"})
    assert updated[writes.text] == "Retried"
    assert maximo.server.count("POST", href.rsplit("/", 1)[-1]) == 2


def test_a_pm_update_can_merge_its_meter_rows(maximo: MaximoHarness) -> None:
    connector = maximo.connector()
    connector.update_maintenance_schedule(
        "BEDFORD/PM1005", {"pmmeter": [{"metername": "RUNHOURS", "frequency": 3500}]},
        merge_children=True,
    )  # fmt: skip
    assert maximo.server.requests[-1].headers["patchtype"] == "MERGE"
