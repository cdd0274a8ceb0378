from pathlib import Path

import pytest

from integration_platform.components.file_extract import read_csv_with_lines


def test_rows_keep_text_and_the_line_they_start_on(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text('id,note\nA,"two\nlines"\nB,\nC,0042\n', encoding="utf-8")
    frame = read_csv_with_lines(path)
    assert frame["id"].tolist() == ["A", "B", "C"]
    assert frame["_source_line"].tolist() == [2, 4, 5]
    assert frame["note"].isna().tolist() == [False, True, False]
    # Leading zeros survive: bronze never guesses types.
    assert frame.loc[2, "note"] == "0042"
    assert set(frame["_source_file"]) == {"export.csv"}


def test_a_row_with_the_wrong_field_count_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("id,note\nA,ok\nB,too,many\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.csv, line 3: 3 fields where the header has 2"):
        read_csv_with_lines(path)


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        read_csv_with_lines(path)
