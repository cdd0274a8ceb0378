"""Maximo specifics beyond the shared contract: the OSLC query it sends, assets, conditional
updates, writes that must not be repeated, proxies' host names, and use inside Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests

from integration_platform.connectors.cmms.maximo import MaximoConnector, record_key_from_href
from integration_platform.connectors.errors import Conflict, RequestRejected, ServerError
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
