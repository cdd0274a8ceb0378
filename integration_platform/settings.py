"""Where the platform keeps its files and state, read from the environment when asked.

Nothing here runs at import time: Dagster imports the code location in every process, and a
bad variable must fail the process that uses it, with the variable's name in the message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

DATA_DIR_VAR = "INTEGRATION_PLATFORM_DATA_DIR"
DB_URL_VAR = "INTEGRATION_PLATFORM_DB_URL"
LAKE_URI_VAR = "INTEGRATION_PLATFORM_LAKE_URI"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder for embedded state and the local lake (default: ``./data``)."""
    env = os.environ if env is None else env
    raw = env.get(DATA_DIR_VAR, "").strip()
    return Path(raw).expanduser().resolve() if raw else (Path.cwd() / "data").resolve()


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for a block, then put back what was there (or unset).

    For code run in-process that reads its settings from the environment, as the CLI does
    (the demos, the deploy test).
    """
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
