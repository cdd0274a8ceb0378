"""What every connector hands back: pages of rows with the cursor after them, and health."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from integration_platform.settings import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from integration_platform.connectors.cursor import Cursor

TEXT_DTYPE = "string[pyarrow]"


@dataclass(frozen=True)
class Page:
    """One page of rows as the source sent them, and the cursor that covers them.

    Persist ``cursor`` only after ``frame`` is stored: a crash in between then re-reads the
    page instead of losing it.
    """

    frame: pd.DataFrame
    cursor: Cursor | None
    number: int
    url: str = ""

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class HealthStatus:
    """The answer of ``health_check()``: never raises, so a schedule can record it."""

    ok: bool
    latency_ms: float
    detail: str


def records_to_frame(
    records: Sequence[Mapping[str, Any]], columns: Iterable[str] = ()
) -> pd.DataFrame:
    """JSON records as a frame of Arrow-backed text, exactly as sent.

    Bronze keeps the source's values; typing happens in the mapping. Text for every column
    also keeps the schema stable across pages (a number missing on one page would otherwise
    turn a column into floats). Declared ``columns`` come first and are always present, because
    systems such as Maximo leave out null attributes.
    """
    import pandas as pd

    names: dict[str, None] = dict.fromkeys(columns)
    for record in records:
        names.update(dict.fromkeys(record))
    data = {
        name: pd.array([_as_text(record.get(name)) for record in records], dtype=TEXT_DTYPE)
        for name in names
    }
    return pd.DataFrame(data, index=pd.RangeIndex(len(records)))


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def resolve_secret(value: str | None, *, field: str, system: str, required: bool = True) -> str:
    """The value of a credential field, resolving a ``dg.EnvVar`` when used outside a run.

    Inside Dagster the framework has already replaced the EnvVar with its value; a script or
    the CLI constructing a resource directly gets the EnvVar itself.
    """
    if isinstance(value, dg.EnvVar):
        resolved = value.get_value()
        if not resolved and required:
            raise ConfigError(
                f"{system}: field {field!r} reads environment variable {value.env_var_name}, "
                "which is not set; set it (see .env.example)"
            )
        return resolved or ""
    if not value and required:
        raise ConfigError(
            f"{system}: field {field!r} is required for this connection; set it with "
            f"dg.EnvVar (by convention {system.upper()}_{field.upper()})"
        )
    return value or ""
