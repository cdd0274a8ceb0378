"""The vectorized screen in ``validate_rows`` must not change any outcome.

For every canonical model, randomized dirty frames are validated twice: with the screen (pandera
checks only the flagged rows) and with pandera checking every row. Valid rows, rejected rows,
reasons and failure cases must be identical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from integration_platform.model import CANONICAL_MODELS, validation
from integration_platform.model.base import CURRENCY_VALUES, UtcTimestamp

ROWS = 400


DIRTY = [None, "", "   ", "\t", "\u00a0", " x", "Pump 1", "bad-Code", "zz", "ÄÖ", "\u3000t"]


def _clean_text(column: object) -> list[object]:
    stats = {check.name: check.statistics or {} for check in column.checks}
    if "isin" in stats:
        return list(stats["isin"]["allowed_values"])[:6]
    pattern = stats.get("str_matches", {}).get("pattern", "")
    if pattern.startswith("^[a-z]"):
        return ["pump", "cooling_tower", "vibration"]
    if pattern.startswith("^[A-Z]{2}"):
        return ["DE", "US"]
    if "payload_is_json" in stats:
        return ['{"a": 1}', "[]"]
    return ["ok", "Pump P-101", "id-7"]


def _text_values(rng: np.random.Generator, column: object, size: int) -> list[object]:
    clean = _clean_text(column)
    if column.unique:
        # Mostly distinct ids with a few repeats, as duplicated source keys are.
        values = [f"id-{i}" for i in rng.integers(0, size * 20, size=size)]
    else:
        values = [clean[i] for i in rng.integers(0, len(clean), size=size)]
    return [DIRTY[rng.integers(len(DIRTY))] if rng.random() < 0.03 else v for v in values]


def _frame(model: type, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    schema = model.to_schema()
    data: dict[str, object] = {}
    for position, (name, column) in enumerate(schema.columns.items()):
        if column.nullable and rng.random() < 0.2:
            continue  # absent: added as nulls
        if isinstance(column.dtype, UtcTimestamp):
            stamps = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
                position * 86_400 + rng.integers(0, 3_600, size=ROWS), unit="s"
            )
            values = pd.Series(stamps).astype(object)
            values[rng.random(ROWS) < 0.03] = pd.Timestamp("2020-01-01", tz="UTC")
            values[rng.random(ROWS) < 0.05] = None
            values[rng.random(ROWS) < 0.02] = "2024-03-01T10:00:00"  # no zone
            data[name] = values
        elif str(column.dtype) in ("float64", "Int64"):
            numbers = rng.uniform(1, 50, size=ROWS).round(1)
            numbers[rng.random(ROWS) < 0.03] = -1.0
            numbers[rng.random(ROWS) < 0.05] = np.nan
            data[name] = numbers
        else:
            values = _text_values(rng, column, ROWS)
            if name == "currency":
                values = [rng.choice([*CURRENCY_VALUES[:5], "XXZ"]) for _ in range(ROWS)]
            data[name] = pd.Series(values, dtype="string[pyarrow]")
    return pd.DataFrame(data)


@pytest.mark.parametrize("entity", sorted(CANONICAL_MODELS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_screen_agrees_with_pandera(
    entity: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = CANONICAL_MODELS[entity]
    frame = _frame(model, seed)
    assert validation._screen(model) is not None, "every canonical model is screened"
    screened = validation.validate_rows(frame, model)
    monkeypatch.setattr(validation, "_suspect_rows", lambda work, model: None)
    plain = validation.validate_rows(frame, model)
    assert len(plain.rejected), "the frame is dirty"
    assert len(plain.valid), "some rows pass"
    pd.testing.assert_frame_equal(screened.valid, plain.valid)
    pd.testing.assert_frame_equal(screened.rejected, plain.rejected)
    pd.testing.assert_frame_equal(screened.failures, plain.failures)
