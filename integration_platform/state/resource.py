"""The state database as a Dagster resource: one engine per process, sessions per unit of work."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from integration_platform.state import migrate
from integration_platform.state.engine import database_url, make_engine, parse_database_url

# Keyed by process id as well as URL: a forked child must not reuse its parent's pooled
# connections, so it gets an engine of its own.
_ENGINES: dict[tuple[int, str], tuple[Engine, sessionmaker[Session]]] = {}
_LOCK = threading.Lock()


def _cached(url: URL) -> tuple[Engine, sessionmaker[Session]]:
    key = (os.getpid(), url.render_as_string(hide_password=False))
    with _LOCK:
        found = _ENGINES.get(key)
        if found is None:
            engine = make_engine(url)
            # Objects stay readable after the session block commits and closes.
            found = (engine, sessionmaker(engine, expire_on_commit=False))
            _ENGINES[key] = found
        return found


def dispose_engines() -> None:
    """Close every pooled connection this process holds (tests, shutdown)."""
    with _LOCK:
        for engine, _ in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


class StateDatabase(dg.ConfigurableResource):
    """Operational state (webhook inbox, sync state): embedded SQLite or PostgreSQL.

    Leave ``url`` unset to follow ``INTEGRATION_PLATFORM_DB_URL`` (unset: the SQLite file under
    the data folder). If you set it, pass ``dg.EnvVar(...)`` so the password is not shown in the
    Dagster UI. Nothing connects until ``engine()`` or ``session()`` is first used.
    """

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state database; unset: INTEGRATION_PLATFORM_DB_URL.",
    )

    def database_url(self) -> URL:
        return database_url() if self.url is None else parse_database_url(self.url)

    def engine(self) -> Engine:
        """The process-wide engine for this URL, created on first use."""
        return _cached(self.database_url())[0]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises."""
        factory = _cached(self.database_url())[1]
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ensure_schema(self) -> str | None:
        """Migrate the database to the newest revision; returns the revision it is at."""
        url = self.database_url()
        migrate.upgrade(url)
        return migrate.current(url)
