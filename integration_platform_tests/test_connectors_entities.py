"""The contract every connector meets for its entities beyond work orders: assets (equipment,
customer assets) and maintenance schedules (PMs, maintenance plans, scheduled maintenance,
preventive maintenance, agreement booking setups), each against its vendor's contract server.

A connector's entity joins with one name in ``ASSET_HARNESSES``
(``contract_servers/asset_harnesses.py``) or ``SCHEDULE_HARNESSES``
(``contract_servers/schedule_harnesses.py``). Every one is read completely and once, leaves
nothing after its final cursor, resumes exactly after a page, is retried on throttling and
server errors within bounds, names the system, the resource and what to check when it fails,
and shares the connector's health check. A connection listing these entities extracts each to
its bronze table. Writes are checked per entity in ``test_connectors_assets.py`` and
``test_connectors_schedules.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from integration_platform.components.connection import ConnectionComponent
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.errors import AuthenticationError, ServerError
from integration_platform.lake import DeltaLake
from integration_platform_tests.contract_servers import asset_harnesses, schedule_harnesses
from integration_platform_tests.contract_servers.entity_harnesses import (
    PAGE,
    EntityContract,
    read_all,
)
from integration_platform_tests.contract_servers.vendor_harnesses import (
    DynamicsHarness,
    SapHarness,
    UpKeepHarness,
)

# What a connection of each type may list beyond work orders.
ENTITIES = {
    "sap": ["equipment", "maintenance_schedules"],
    "upkeep": ["assets", "maintenance_schedules"],
    "dynamics": ["assets", "maintenance_schedules"],
}
KINDS = [
    *(
        pytest.param(f"assets:{name}", id=f"assets-{name}")
        for name in asset_harnesses.ASSET_HARNESSES
    ),
    *(
        pytest.param(f"schedules:{name}", id=f"schedules-{name}")
        for name in schedule_harnesses.SCHEDULE_HARNESSES
    ),
]


def build(kind: str, tmp_path: Path) -> EntityContract:
    entity, _, name = kind.partition(":")
    if entity == "assets":
        return asset_harnesses.build(name, tmp_path)
    return schedule_harnesses.build(name, tmp_path)


@pytest.fixture(params=KINDS)
def contract(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EntityContract]:
    built = build(request.param, tmp_path)
    yield built
    built.close()


def test_every_record_is_read_once_and_nothing_after_the_cursor(
    contract: EntityContract,
) -> None:
    connector = contract.connector()
    numbers, rows, cursor = read_all(contract, connector)
    assert sorted(numbers) == sorted(contract.seeded_numbers())
    assert len(numbers) == len(set(numbers))
    assert rows[contract.text_column].dtype == pd.StringDtype("pyarrow")
    assert cursor is not None
    again, _, after = read_all(contract, connector, since=cursor)
    assert again == [] and after == cursor


def test_resuming_after_the_first_page_repeats_and_skips_nothing(
    contract: EntityContract,
) -> None:
    connector = contract.connector()
    first = next(iter(contract.read(connector, since=None, page_size=PAGE)))
    assert first.cursor is not None
    rest, _, _ = read_all(contract, connector, since=Cursor.from_json(first.cursor.to_json()))
    combined = contract.numbers(first) + rest
    assert sorted(combined) == sorted(contract.seeded_numbers())
    assert len(combined) == len(set(combined))


def test_throttling_and_server_errors_are_retried(contract: EntityContract) -> None:
    harness = contract.harness
    harness.server.throttle_next(1, retry_after="0")
    harness.server.fail_next(1, status=503)
    numbers, _, _ = read_all(contract, contract.connector())
    assert sorted(numbers) == sorted(contract.seeded_numbers())
    assert harness.data_statuses()[:3] == [429, 503, 200]


def test_persistent_server_errors_name_the_system_and_the_resource(
    contract: EntityContract,
) -> None:
    contract.harness.server.fail_next(10, status=503)
    with pytest.raises(ServerError) as caught:
        read_all(contract, contract.connector(max_attempts=3))
    message = str(caught.value)
    assert message.startswith(f"{contract.name}: {contract.harness.read_method} http://127.0.0.1")
    assert contract.resource in message
    assert "HTTP 503" in message and "gave up after 3 attempts" in message


def test_refused_credentials_name_the_system_and_what_to_check(contract: EntityContract) -> None:
    harness = contract.harness
    connector = contract.connector(**harness.wrong_credentials())
    with pytest.raises(AuthenticationError) as caught:
        read_all(contract, connector)
    message = str(caught.value)
    assert message.startswith(f"{contract.name}:") and "HTTP 401" in message
    assert harness.auth_marker in message and "Check " in message
    assert not any(secret in message for secret in harness.wrong_secrets())
    assert harness.refused() == 1  # not retried, not logged in again


def test_health_check_covers_the_connection_of_the_entity(contract: EntityContract) -> None:
    status = contract.connector().health_check()
    assert status.ok, status.detail
    down = contract.harness.unreachable().health_check()
    assert not down.ok and down.detail.startswith(contract.name)


def test_connections_extract_the_entities_each_connector_reads(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entities are offered by a connector's ``read_<entity>`` methods: a connection lists
    them and gets one bronze asset each, which extracts every record."""
    sap = SapHarness(tmp_path, odata_version="v2", auth_method="basic")
    upkeep = UpKeepHarness(tmp_path)
    dynamics = DynamicsHarness(tmp_path)
    try:
        for prefix, harness in (("SAP", sap), ("UPKEEP", upkeep), ("DYNAMICS", dynamics)):
            monkeypatch.setenv(f"{prefix}_BASE_URL", harness.server.base_url)
        monkeypatch.setenv("SAP_PASSWORD", "Welcome1")
        monkeypatch.setenv("UPKEEP_PASSWORD", upkeep.server.password)
        monkeypatch.setenv("DYNAMICS_CLIENT_SECRET", dynamics.server.client_secret)
        connections = [
            connection("sap", {"password": "SAP_PASSWORD"}, {"username": "INTEGRATION"}),
            connection("upkeep", {"password": "UPKEEP_PASSWORD"}, {"email": upkeep.server.email}),
            connection(
                "dynamics",
                {"client_secret": "DYNAMICS_CLIENT_SECRET"},
                {"client_id": dynamics.server.client_id, "token_url": dynamics.dynamics.TOKEN_PATH},
            ),
        ]
        counts = materialize_connections(connections, tmp_path, data_dir)
    finally:
        for harness in (sap, upkeep, dynamics):
            harness.close()
    assert counts == {
        "sap/equipment": 9,
        "sap/maintenance_schedules": 7,
        "upkeep/assets": 9,
        "upkeep/maintenance_schedules": 7,
        "dynamics/assets": 9,
        "dynamics/maintenance_schedules": 6,
    }


def connection(kind: str, auth: dict[str, str], options: dict[str, str]) -> dict[str, object]:
    return {
        "name": kind,
        "type": kind,
        "base_url_env": f"{kind.upper()}_BASE_URL",
        "auth": auth,
        "options": {**options, "requests_per_second": 0},
        "page_size": 4,
        "entities": ENTITIES[kind],
    }


def materialize_connections(
    connections: list[dict[str, object]], tmp_path: Path, data_dir: Path
) -> dict[str, int]:
    """Build the connections' definitions from YAML, materialize every bronze asset, and
    count the rows of each table."""
    variables = [str(c["base_url_env"]) for c in connections]
    variables += [v for c in connections for v in c["auth"].values()]  # type: ignore[attr-defined]
    document = {
        "type": "integration_platform.components.ConnectionComponent",
        "requirements": {"env": variables},
        "attributes": {"connections": connections},
    }
    path = tmp_path / "defs" / "connections" / "defs.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    component = ConnectionComponent.from_yaml(path)
    defs = component.build_defs(None)
    bronze = [
        a
        for a in defs.assets or []
        if isinstance(a, dg.AssetsDefinition) and a.key.path[0] == "bronze"
    ]
    lake = DeltaLake(uri=str(data_dir / "lake"))
    result = dg.materialize(bronze, resources={**component.resources, "lake": lake})
    assert result.success
    return {"/".join(a.key.path[1:]): len(lake.read(a.key.path)) for a in bronze}
