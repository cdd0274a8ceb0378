"""Alembic environment for the operational-state database.

The URL comes from ``config.attributes["url"]`` (set by ``integration_platform.state.migrate``),
else ``sqlalchemy.url`` in the ini file if someone set it, else ``INTEGRATION_PLATFORM_DB_URL``
(unset: the embedded SQLite file). A caller may also hand over an open connection in
``config.attributes["connection"]``.
"""

from __future__ import annotations

import logging.config

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import URL

from integration_platform.state.engine import (
    check_connection,
    database_url,
    make_engine,
    parse_database_url,
)
from integration_platform.state.models import Base

# Held for the duration of a migration on PostgreSQL, so processes starting together (webhook
# receiver, code server, run workers) upgrade one after another instead of racing on DDL.
MIGRATION_LOCK_KEY = 7_305_626_011_042_017

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> URL:
    given = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    return parse_database_url(given) if given else database_url()


def _configure(**kwargs: object) -> None:
    # Batch mode: SQLite cannot ALTER most things, so Alembic rebuilds the table instead.
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: sa.Connection, **kwargs: object) -> None:
    _configure(connection=connection, **kwargs)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    # Foreign keys off on SQLite while batch mode copies and drops tables; checked afterwards.
    engine = make_engine(_url(), sqlite_foreign_keys=False)
    try:
        check_connection(engine)
        with engine.connect() as connection:
            # make_engine's SQLite connections run DDL inside BEGIN IMMEDIATE: a migration that
            # fails part-way leaves the schema as it was, as on PostgreSQL.
            _run(connection, transactional_ddl=True)
            if connection.dialect.name == "sqlite":
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                connection.rollback()
                if broken:
                    raise RuntimeError(f"migration left rows violating foreign keys: {broken}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
