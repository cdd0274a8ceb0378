"""Asset writes every connector that writes assets meets, against its contract server.

A connector joins with one name in ``ASSET_HARNESSES`` (``contract_servers/asset_harnesses.py``);
its reads are checked with the other entities in ``test_connectors_entities.py``. Where the
vendor's API allows updates (Maximo ``mxasset`` PATCH by href, SAP equipment, Fiix
``ChangeRequest`` on ``Asset``, Oracle ``installedBaseAssets``, UpKeep ``/assets``, Dynamics
``msdyn_customerassets`` with ``If-Match``), an update must show up, alone and once, on the next
incremental read; where it allows creates (Maximo, UpKeep, Dynamics), so must a created
asset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_platform_tests.contract_servers.asset_harnesses import (
    ASSET_HARNESSES,
    CREATED_TEXT,
    UPDATED_ASSET,
    AssetContract,
    build,
)
from integration_platform_tests.contract_servers.entity_harnesses import read_all

PAGE = 4  # records per page of the asset reads


@pytest.fixture(params=ASSET_HARNESSES)
def assets(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AssetContract]:
    built = build(request.param, tmp_path)
    yield built
    built.close()


def test_an_update_is_read_back_alone_on_the_next_incremental_read(
    assets: AssetContract,
) -> None:
    if not assets.writes:
        pytest.skip(f"{assets.name}: assets are read-only")
    connector = assets.connector()
    numbers, rows, cursor = read_all(assets, connector, page_size=PAGE)
    row = rows.iloc[numbers.index(UPDATED_ASSET)].to_dict()
    expected = assets.update(connector, row)
    changed, changed_rows, _ = read_all(assets, connector, since=cursor, page_size=PAGE)
    assert changed == [UPDATED_ASSET]
    assert changed_rows[assets.text_column].tolist() == [expected]


def test_a_created_asset_is_read_back_alone_on_the_next_incremental_read(
    assets: AssetContract,
) -> None:
    if not assets.creates:
        pytest.skip(f"{assets.name}: assets are created in the system itself")
    connector = assets.connector()
    _, _, cursor = read_all(assets, connector, page_size=PAGE)
    number = assets.create(connector, CREATED_TEXT)
    created, rows, after = read_all(assets, connector, since=cursor, page_size=PAGE)
    assert created == [number]
    assert rows[assets.text_column].tolist() == [CREATED_TEXT]
    assert read_all(assets, connector, since=after, page_size=PAGE)[0] == []
