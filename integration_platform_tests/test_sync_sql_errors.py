"""Which database errors of the SQL sync side the job may retry: a lost connection only."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from integration_platform.connectors.errors import ConnectionFailed
from integration_platform.sync.adapters.sql import SqlTableAdapter
from integration_platform.sync.spec import SideSpec
from integration_platform_tests.tcp_relay import tcp_relay

pytestmark = pytest.mark.postgres


def test_a_lost_connection_is_retryable_and_a_rejected_row_is_not(postgres_url: str) -> None:
    target = sa.engine.make_url(postgres_url)
    with tcp_relay((target.host or "127.0.0.1", target.port or 5432)) as relay:
        engine = sa.create_engine(target.set(host="127.0.0.1", port=relay.port))
        adapter = SqlTableAdapter(engine, "plant_work_orders")
        adapter.bind(SideSpec(system="plant_db", connection="plant_sql", key_field="id", fields={}))
        with engine.connect() as connection:
            connection.execute(sa.text("CREATE TABLE plant_work_orders (id int PRIMARY KEY)"))
            connection.execute(sa.text("INSERT INTO plant_work_orders VALUES (1)"))
            with pytest.raises(sa.exc.IntegrityError) as rejected:
                connection.execute(sa.text("INSERT INTO plant_work_orders VALUES (1)"))
            connection.rollback()
            relay.cut()
            with pytest.raises(sa.exc.DBAPIError) as lost:
                connection.execute(sa.text("SELECT 1"))
        engine.dispose()

    lost_error = adapter._error(lost.value, "updating record 1")
    assert isinstance(lost_error, ConnectionFailed) and lost_error.retryable
    rejected_error = adapter._error(rejected.value, "inserting a record")
    assert not isinstance(rejected_error, ConnectionFailed)
    assert not rejected_error.retryable
    assert "plant_work_orders: inserting a record" in str(rejected_error)
