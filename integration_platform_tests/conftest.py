"""Shared fixtures: real services on 127.0.0.1, skipped only outside CI when absent."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def service_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip on a laptop without the service; in CI (``CI`` set) a missing service fails."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must provide it (see DEVELOPERS.md for the start command)")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    yield from postgres_database()


def postgres_database() -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (for fixtures)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"ip_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder (lake + embedded state) used by everything the test runs."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("INTEGRATION_PLATFORM_DATA_DIR", str(folder))
    monkeypatch.delenv("INTEGRATION_PLATFORM_DB_URL", raising=False)
    monkeypatch.delenv("INTEGRATION_PLATFORM_LAKE_URI", raising=False)
    return folder
