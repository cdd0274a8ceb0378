"""The generic REST connector: a system declared by fields only, as from YAML."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from integration_platform.settings import ConfigError
from integration_platform_tests.contract_servers.vendor_harnesses import GenericRestHarness


@pytest.fixture
def generic(tmp_path: Path) -> Iterator[GenericRestHarness]:
    harness = GenericRestHarness(tmp_path)
    yield harness
    harness.close()


def test_declared_fields_are_columns_and_messages_carry_the_name(
    generic: GenericRestHarness,
) -> None:
    page = next(iter(generic.connector().read_records(page_size=30)))
    assert list(page.frame.columns[:5]) == ["id", "workOrderNo", "title", "status", "updatedAt"]
    assert generic.connector().health_check().detail.startswith("upkeep_generic answered")


def test_a_cursor_parameter_is_sent_when_declared(generic: GenericRestHarness) -> None:
    connector = generic.connector(cursor_param="updated_after")
    first = next(iter(connector.read_records(page_size=5)))
    list(connector.read_records(since=first.cursor, page_size=5))
    assert generic.server.requests[-1].query["updated_after"] == "2026-01-05T13:30:00+00:00"


def test_credentials_come_from_environment_variables(
    generic: GenericRestHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_PASSWORD", generic.server.password)
    connector = generic.connector(password=dg.EnvVar("ACME_PASSWORD"))
    assert connector.health_check().ok
    unset = generic.connector(password=dg.EnvVar("ACME_UNSET_PASSWORD"))
    assert "ACME_UNSET_PASSWORD" in unset.health_check().detail


def test_an_unknown_cursor_kind_is_a_config_error(generic: GenericRestHarness) -> None:
    with pytest.raises(ConfigError, match="cursor_kind"):
        generic.connector(cursor_kind="date").stream()
