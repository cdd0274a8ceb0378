"""Where the platform keeps its files and state, read from the environment when asked.

Nothing here runs at import time: Dagster imports the code location in every process, and a
bad variable must fail the process that uses it, with the variable's name in the message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
