"""Where operational state lives and how to connect to it.

The URL is read when asked for, never at import: Dagster imports the code location in every
process, and a bad ``INTEGRATION_PLATFORM_DB_URL`` must fail the process that uses it with a
message naming the variable, not break every import.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import tenacity
from sqlalchemy.engine import URL, Engine

from integration_platform.settings import DB_URL_VAR, ConfigError, data_dir

SQLITE_FILE_NAME = "integration_platform.db"
CONNECT_TIMEOUT_SECONDS = 5
SQLITE_BUSY_TIMEOUT_MS = 30_000

# psycopg2 is the project's one PostgreSQL driver. Since SQLAlchemy 2.1 a bare
# ``postgresql://`` means psycopg 3, which is not installed; the common spellings of a
# PostgreSQL URL (as printed by hosting providers and ``psql`` docs) are therefore pointed at
# psycopg2 instead of failing with ``ModuleNotFoundError: psycopg`` deep inside a run.
_PG_ALIASES = {"postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg2cffi"}
_PG_DRIVERNAME = "postgresql+psycopg2"
_SQLITE_DRIVERNAMES = {"sqlite", "sqlite+pysqlite"}

URL_EXAMPLES = (
    "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DBNAME, "
    "or sqlite:////absolute/path/state.db; "
    f"unset it to use the embedded SQLite file under <data dir>/state/{SQLITE_FILE_NAME}"
)

_USERINFO_PASSWORD = re.compile(r"(?P<head>://[^/?#@]*?:)(?P<password>.*)@")


def mask_password(raw: str | URL) -> str:
    """The URL as text with its password replaced by ``***``, safe for messages and logs."""
    if isinstance(raw, URL):
        return raw.render_as_string(hide_password=True)
    # Unparseable text is masked by shape: everything between "user:" and the last "@".
    return _USERINFO_PASSWORD.sub(r"\g<head>***@", raw)


def _bad_url(raw: str | URL, problem: str) -> ConfigError:
    return ConfigError(
        f"{DB_URL_VAR}={mask_password(raw)!r} {problem}. A correct value looks like {URL_EXAMPLES}."
    )


def parse_database_url(raw: str | URL) -> URL:
    """Validate a state-database URL and point PostgreSQL at psycopg2.

    Raises ``ConfigError`` naming ``INTEGRATION_PLATFORM_DB_URL`` for anything that is not a
    file-backed SQLite database or a PostgreSQL database reachable through psycopg2.
    """
    if isinstance(raw, URL):
        url = raw
    else:
        text = raw.strip()
        try:
            url = sa.make_url(text)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise _bad_url(text, f"is not a valid database URL ({exc})") from None
    backend = url.get_backend_name()
    if url.drivername in _PG_ALIASES:
        url = url.set(drivername=_PG_DRIVERNAME)
    elif backend in {"postgresql", "postgres"}:
        raise _bad_url(
            url,
            f"uses the driver {url.get_driver_name()!r}; the platform talks to PostgreSQL "
            "only through psycopg2 (postgresql+psycopg2://)",
        )
    elif url.drivername in _SQLITE_DRIVERNAMES:
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise _bad_url(
                url,
                "is an in-memory SQLite database; operational state must outlive the process "
                "(webhook events, sync state), so give a file path",
            )
    elif backend == "sqlite":
        raise _bad_url(url, f"uses the unsupported SQLite driver {url.get_driver_name()!r}")
    else:
        raise _bad_url(
            url, f"uses the unsupported database {backend!r}; only PostgreSQL and SQLite work"
        )
    if url.drivername == _PG_DRIVERNAME and not url.host and "host" not in url.query:
        raise _bad_url(url, "names no host")
    return url


def database_url(env: Mapping[str, str] | None = None) -> URL:
    """The state database: ``INTEGRATION_PLATFORM_DB_URL`` if set, else the embedded SQLite file.

    The SQLite default lives in ``<data dir>/state/``; the folder is created so a fresh checkout
    works without set-up.
    """
    env = os.environ if env is None else env
    raw = env.get(DB_URL_VAR, "").strip()
    if raw:
        return parse_database_url(raw)
    folder = data_dir(env) / "state"
    folder.mkdir(parents=True, exist_ok=True)
    return URL.create("sqlite+pysqlite", database=str(folder / SQLITE_FILE_NAME))


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def make_engine(url: str | URL, *, sqlite_foreign_keys: bool = True) -> Engine:
    """An engine tuned for the backend; nothing connects until first use.

    SQLite: WAL so readers never block the writer, a busy timeout so concurrent writers wait
    instead of failing, foreign keys enforced, and ``BEGIN IMMEDIATE`` for every transaction.
    The last one matters for an inbox: a deferred transaction that reads (poll) and then writes
    (claim) fails at once with "database is locked" when another process committed in between,
    without honouring the busy timeout; taking the write lock up front makes it wait instead.
    It also makes SQLite DDL transactional, so a failed migration leaves nothing half-done.
    ``sqlite_foreign_keys=False`` is for migrations, where batch mode rebuilds tables.

    PostgreSQL: ``pool_pre_ping`` so connections dropped by a restart are replaced, a connect
    timeout so an unreachable server fails fast, and UTC as the session time zone.
    """
    url = parse_database_url(url)
    if is_sqlite(url):
        return _sqlite_engine(url, foreign_keys=sqlite_foreign_keys)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if "application_name" not in url.query:
        connect_args["application_name"] = "integration_platform"
    if "options" not in url.query:
        connect_args["options"] = "-c timezone=UTC"
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_engine(url: URL, *, foreign_keys: bool) -> Engine:
    assert url.database is not None  # parse_database_url refuses in-memory databases
    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (see the "begin" hook below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _is_locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL. Several processes opening a new file at once (services
    starting together) can get "database is locked" from this switch without the busy
    timeout being applied, so it is retried for as long as that timeout."""
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_locked),
        stop=tenacity.stop_after_delay(SQLITE_BUSY_TIMEOUT_MS / 1000),
        wait=tenacity.wait_random(0.01, 0.1),
        reraise=True,
    ):
        with attempt:
            cursor.execute("PRAGMA journal_mode=WAL")


def _where(url: URL) -> str:
    if is_sqlite(url):
        return f"the SQLite file {url.database}"
    return f"the PostgreSQL server at {url.host or 'localhost'}:{url.port or 5432}"


def check_connection(engine: Engine) -> None:
    """Connect once and fail fast with a ``ConfigError`` that says which server and variable.

    Call it at start-up so a wrong host shows up as a configuration problem, not as a run
    failing later with a driver traceback.
    """
    url = engine.url
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as exc:
        reason = " ".join(str(exc.orig).split())
        if url.password:
            reason = reason.replace(str(url.password), "***")
        if not reason.endswith((".", "?", "!")):
            reason += "."
        raise ConfigError(
            f"Cannot reach the state database, {_where(url)}, set by {DB_URL_VAR}="
            f"{mask_password(url)!r}: {reason} Check that the server is running and the "
            f"host, port, user and database name are right (a correct value looks like "
            f"{URL_EXAMPLES})."
        ) from None
