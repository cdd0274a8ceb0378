"""Run the state-database migrations from code, without an ``alembic.ini``.

Services call ``upgrade()`` at start-up; operators can use the same functions from the
command line, or the Alembic CLI with ``integration_platform/state/alembic.ini``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from integration_platform.state.engine import (
    check_connection,
    database_url,
    make_engine,
    parse_database_url,
)

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
# Alembic keeps the running migration context in module globals, so two threads of one process
# must not migrate at once; across processes the database itself serialises them (env.py).
_ALEMBIC_LOCK = threading.Lock()


def _resolve(url: str | URL | None) -> URL:
    return database_url() if url is None else parse_database_url(url)


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic ``Config`` built in code, pointing at the migrations inside the package.

    The URL travels in ``config.attributes`` rather than ``sqlalchemy.url``: the ini parser
    would treat a ``%`` in a password as interpolation, and the password stays out of text.
    """
    config = _script_config()
    config.attributes["url"] = _resolve(url)
    return config


def _script_config() -> Config:
    config = Config()
    # ConfigParser interpolation: a literal "%" in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def upgrade(url: str | URL | None = None, revision: str = "head") -> None:
    """Migrate up to ``revision`` (default: the newest). Safe to call on an up-to-date database."""
    config = alembic_config(url)
    with _ALEMBIC_LOCK:
        command.upgrade(config, revision)


def downgrade(url: str | URL | None, revision: str) -> None:
    """Migrate down to ``revision`` (``"base"`` removes every table); no default on purpose."""
    config = alembic_config(url)
    with _ALEMBIC_LOCK:
        command.downgrade(config, revision)


def head() -> str:
    """The newest revision the package ships."""
    revision = ScriptDirectory.from_config(_script_config()).get_current_head()
    assert revision is not None
    return revision


def current(url: str | URL | None = None) -> str | None:
    """The revision the database is at, or ``None`` when it has never been migrated."""
    engine = make_engine(_resolve(url))
    try:
        check_connection(engine)
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
