"""CSV injection: every CSV the project writes escapes formula cells and leaves numbers alone."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pyarrow as pa
import pytest

HOSTILE = [
    '=HYPERLINK("http://evil.example","x")',
    "+SUM(A1:A9)",
    "-2+3",
    "@cmd",
    "\t=1+1",
    "\r=1+1",
    "\uff1d1+1",  # full-width =
    "\uff0bSUM(A1)",
    "\uff0d2+3",
    "\uff20cmd",
]
SAFE = ["Ann", "O'Neil", "-5", "-2.5", "+3", "1e3", "-1E-3", "", "a=b", " =x"]


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("value", HOSTILE)
def test_formula_cells_get_a_leading_quote(value):
    from absorb_provider.csv_safety import escape_cell, is_formula

    assert is_formula(value)
    assert escape_cell(value) == "'" + value


@pytest.mark.parametrize("value", SAFE)
def test_text_and_plain_numbers_are_left_alone(value):
    from absorb_provider.csv_safety import escape_cell, is_formula

    assert not is_formula(value)
    assert escape_cell(value) == value


def test_non_strings_are_never_escaped():
    from absorb_provider.csv_safety import escape_cell

    assert escape_cell(-5) == -5 and escape_cell(None) is None and escape_cell(-2.5) == -2.5


def test_escape_frame_escapes_string_and_object_columns_only():
    from absorb_provider.csv_safety import escape_frame

    frame = pd.DataFrame(
        {
            "name": pd.Series(["=cmd", "Ann", None, "-5"], dtype="str"),
            "mixed": ["@x", 3, None, "+SUM(1)"],
            "delta": [-5, 2, 3, -1],
        }
    )
    out = escape_frame(frame)
    assert out["name"].tolist()[:2] == ["'=cmd", "Ann"] and out["name"].tolist()[3] == "-5"
    assert out["mixed"].tolist() == ["'@x", 3, None, "'+SUM(1)"]
    assert out["delta"].tolist() == [-5, 2, 3, -1] and out["delta"].dtype == "int64"
    assert frame["name"].iloc[0] == "=cmd"  # the caller's frame is not modified
    clean = frame[["delta"]]
    assert escape_frame(clean) is clean


def test_escape_arrow_table():
    from absorb_provider.csv_safety import escape_arrow_table

    table = pa.table({"s": ["=x", "-5", None, "ok", "\uff20x"], "n": [1, -2, 3, 4, 5]})
    out = escape_arrow_table(table)
    assert out.column("s").to_pylist() == ["'=x", "-5", None, "ok", "'\uff20x"]
    assert out.column("n").to_pylist() == [1, -2, 3, 4, 5] and out.schema == table.schema


def test_runtime_write_csv_escapes_rejects_and_plans(tmp_path):
    from absorb_sync.jobs.runtime import storage_path, write_csv

    frame = pd.DataFrame({"first_name": pd.Series(['=HYPERLINK("x")', "Ann"], dtype="str"), "delta": [-2, 3]})
    write_csv(storage_path(tmp_path / "rejects.csv"), frame)
    rows = read_csv((tmp_path / "rejects.csv").read_text(encoding="utf-8"))
    assert rows == [
        {"first_name": '\'=HYPERLINK("x")', "delta": "-2"},
        {"first_name": "Ann", "delta": "3"},
    ]


def test_export_write_csv_escapes(tmp_path):
    from absorb_sync.export import write_csv
    from absorb_sync.jobs.runtime import storage_path

    frame = pd.DataFrame({"course_name": ["+SUM(A1)", "Safety"], "score": [-1.5, 90.0]})
    write_csv(frame, storage_path(tmp_path / "completions.csv"))
    rows = read_csv((tmp_path / "completions.csv").read_text(encoding="utf-8"))
    assert [r["course_name"] for r in rows] == ["'+SUM(A1)", "Safety"]
    assert [r["score"] for r in rows] == ["-1.5", "90.0"]


def test_provider_outcomes_csv_escapes(tmp_path):
    from absorb_provider.io import write_outcomes

    write_outcomes(
        tmp_path / "outcomes.csv",
        [{"key": "@cmd", "user_id": "u", "course_id": "c", "outcome": "failed", "error": "-2+3"}],
    )
    [row] = read_csv((tmp_path / "outcomes.csv").read_text())
    assert row["key"] == "'@cmd" and row["error"] == "'-2+3" and row["outcome"] == "failed"


def test_streamed_csv_export_escapes(tmp_path):
    from absorb_provider.io import COURSE_ENROLLMENT_FIELDS, raw_arrow_schema, stream_tables_to_file

    schema = raw_arrow_schema(COURSE_ENROLLMENT_FIELDS)
    values = {name: [None, None] for name in schema.names}
    values.update(id=["e1", "e2"], courseName=['=HYPERLINK("x")', "Safety"], fullName=["Ann", "@x"])
    values.update(progress=[-5.0, 50.0], dateAdded=["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"])
    table = pa.Table.from_pydict(values, schema=schema)
    rows = stream_tables_to_file(iter([table]), tmp_path / "e.csv", COURSE_ENROLLMENT_FIELDS)
    assert rows == 2
    out = read_csv((tmp_path / "e.csv").read_text())
    assert [r["courseName"] for r in out] == ['\'=HYPERLINK("x")', "Safety"]
    assert [r["fullName"] for r in out] == ["Ann", "'@x"]
    assert [r["progress"] for r in out] == ["-5", "50"]


def test_runtime_write_csv_of_many_rows_equals_pandas_own_csv(tmp_path):
    """write_csv gathers pandas' per-row writes into large ones (each write on an ObjectStoragePath
    handle records lineage): the file is byte for byte what ``to_csv`` writes."""
    from absorb_sync.jobs.runtime import storage_path, write_csv

    frame = pd.DataFrame(
        {"employee_id": [f"E{i:06d}" for i in range(60_000)], "name": 'Zoë, "the" lead', "n": 1.5}
    )
    write_csv(storage_path(tmp_path / "many.csv"), frame)
    assert (tmp_path / "many.csv").read_text(encoding="utf-8") == frame.to_csv(index=False)
