"""validate_export: every failure is table-level; sample rows name enrollment ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from absorb_sync.gates import GateFailedError, validate_export

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def export_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows in the normalise_enrollments shape (UTC timestamps, ints, bools)."""
    base = {
        "user_id": "u1",
        "course_id": "c1",
        "course_name": "Code of Conduct",
        "employee_id": "E000001",
        "status": 1,
        "progress": 50.0,
        "score": None,
        "is_active": True,
        "date_enrolled": "2026-01-10T08:00:00Z",
        "date_completed": None,
    }
    frame = pd.DataFrame([{**base, "enrollment_id": f"e{i}", **row} for i, row in enumerate(rows)])
    for column in ("date_enrolled", "date_completed"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def clean_rows() -> list[dict]:
    return [
        {
            "user_id": "u1",
            "status": 3,
            "progress": 100.0,
            "score": 90.0,
            "date_completed": "2026-02-01T09:00:00Z",
        },
        {"user_id": "u2", "status": 1},
        {"user_id": "u3", "status": 0, "progress": None},
        {
            "user_id": "u1",
            "status": 3,
            "is_active": False,
            "date_completed": "2025-02-01T09:00:00Z",
            "date_enrolled": "2025-01-01T00:00:00Z",
        },
    ]


def check(frame, previous=None, tolerance=0.0):
    return validate_export(frame, previous_completed_count=previous, drop_tolerance_pct=tolerance, now=NOW)


def test_clean_export_passes():
    result = check(export_frame(clean_rows()), previous=2)
    assert result.passed, result.failures
    assert result.statistics["completed_count"] == 2
    assert result.statistics["active_count"] == 3


@pytest.mark.parametrize(
    ("change", "description"),
    [
        ({"enrollment_id": "e0"}, "enrollment_id is unique"),
        ({"user_id": "u2"}, "at most one active enrollment per (user, course)"),
        ({"status": 13}, "status is an Absorb enrollment status (0..12)"),
        ({"status": 3}, "completed (status 3) if and only if a completion date is set"),
        (
            {"date_completed": "2026-03-01T00:00:00Z"},
            "completed (status 3) if and only if a completion date is set",
        ),
        ({"progress": 101.0}, "progress is empty or within 0..100"),
        ({"score": -1.0}, "score is empty or within 0..100"),
        (
            {"status": 3, "date_completed": "2025-12-31T00:00:00Z"},
            "completion date on or after the enrollment date",
        ),
        (
            {"status": 3, "date_completed": "2026-06-16T00:00:00Z"},
            "completion date not in the future (now = 2026-06-15T12:00:00Z)",
        ),
    ],
)
def test_each_violation_fails_the_gate(change, description):
    rows = [*clean_rows(), {"user_id": "u4", "status": 1, **change}]
    result = check(export_frame(rows))
    assert not result.passed
    assert [f["description"] for f in result.failures] == [description]
    assert all(f["level"] == "table" for f in result.failures)
    with pytest.raises(GateFailedError, match=description.replace("(", r"\(").replace(")", r"\)")):
        result.raise_if_failed()


def test_failure_samples_name_enrollment_ids():
    rows = [*clean_rows(), {"user_id": "u9", "status": 99}]
    [failure] = check(export_frame(rows)).failures
    assert failure["sample_rows"] == [{"enrollment_id": "e4"}]


def test_completed_count_drop_beyond_tolerance_fails():
    frame = export_frame(clean_rows())  # 2 completed
    assert not check(frame, previous=3).passed
    assert check(frame, previous=3, tolerance=40).passed
    [failure] = check(frame, previous=3).failures
    assert failure["observed_value"] == 2


def test_iso_string_dates_and_text_flags_are_understood():
    frame = export_frame(clean_rows())
    frame["date_completed"] = frame["date_completed"].map(lambda v: None if pd.isna(v) else v.isoformat())
    frame["is_active"] = frame["is_active"].map(str)
    assert check(frame).passed


def test_missing_columns_fail_by_name():
    frame = export_frame(clean_rows()).drop(columns=["is_active"])
    result = check(frame)
    assert not result.passed
    assert [f["column"] for f in result.failures] == ["is_active"]


def big_frame(rows: int) -> pd.DataFrame:
    """``rows`` clean enrollments (one user each), spread over several gate batches."""
    frame = pd.DataFrame(
        {
            "enrollment_id": [f"e{i}" for i in range(rows)],
            "user_id": [f"u{i}" for i in range(rows)],
            "course_id": "c1",
            "status": 1,
            "progress": 50.0,
            "score": None,
            "is_active": True,
            "date_enrolled": pd.Timestamp("2026-01-10T08:00:00Z"),
            "date_completed": pd.Series(pd.NaT, index=range(rows), dtype="datetime64[us, UTC]"),
        }
    )
    return frame


def test_file_gate_counts_every_row_and_validates_a_bounded_sample_with_gx(tmp_path):
    from absorb_sync.gates.export_gate import (
        BATCH_ROWS,
        SAMPLE_ROWS,
        UNEXPECTED_ROWS_KEPT,
        validate_export_file,
    )

    rows = 3 * BATCH_ROWS + 123
    frame = big_frame(rows)
    # 1,500 ids used twice, each pair in different batches; 1,200 unknown statuses
    twins = range(0, 3000, 2)
    frame.loc[[i + 1 for i in twins], "enrollment_id"] = [f"e{i + 2 * BATCH_ROWS}" for i in twins]
    frame.loc[list(range(BATCH_ROWS, BATCH_ROWS + 1200)), "status"] = 13
    path = tmp_path / "export.parquet"
    frame.to_parquet(path, index=False)
    result = validate_export_file(path, previous_completed_count=None, now=NOW)
    from_frame = check(frame)
    assert not result.passed
    counts = {f["description"]: f["unexpected_count"] for f in result.failures}
    assert counts == {
        "enrollment_id is unique": 3000,  # every row of a duplicated id, across batches
        "status is an Absorb enrollment status (0..12)": 1200,
    }
    assert {f["description"]: f["unexpected_count"] for f in from_frame.failures} == counts
    assert result.statistics["row_count"] == rows and result.statistics["active_count"] == rows
    assert result.statistics["gx_sample_rows"] <= SAMPLE_ROWS + 2 * UNEXPECTED_ROWS_KEPT
    unique = next(f for f in result.failures if f["description"] == "enrollment_id is unique")
    assert unique["sample_rows"][0]["enrollment_id"] in {f"e{i + 2 * BATCH_ROWS}" for i in twins}


def test_file_gate_passes_a_clean_large_export_and_an_empty_one(tmp_path):
    from absorb_sync.gates.export_gate import BATCH_ROWS, validate_export_file

    frame = big_frame(2 * BATCH_ROWS + 5)
    frame.loc[7, ["status", "date_completed"]] = [3, pd.Timestamp("2026-02-01T00:00:00Z")]
    frame.to_parquet(tmp_path / "export.parquet", index=False)
    result = validate_export_file(tmp_path / "export.parquet", previous_completed_count=1, now=NOW)
    assert result.passed, result.failures
    assert result.statistics["completed_count"] == 1
    frame.iloc[:0].to_parquet(tmp_path / "empty.parquet", index=False)
    empty = validate_export_file(tmp_path / "empty.parquet", previous_completed_count=None, now=NOW)
    assert empty.passed, empty.failures
    assert empty.statistics["row_count"] == 0


def counted_file(frame: pd.DataFrame, path, folder) -> None:
    """``frame`` written to ``path`` and counted as the extract counts it (saved in ``folder``)."""
    import pyarrow.parquet as pq
    from absorb_sync.export_checks import ExportChecks

    frame.to_parquet(path, index=False)
    checks = ExportChecks(list(frame.columns), NOW)
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4_000):
        checks.add(batch)
    checks.finish(lambda: pq.ParquetFile(path).iter_batches(batch_size=4_000))
    checks.save(folder, {"rows": len(frame), "bytes": path.stat().st_size})


def test_file_gate_takes_the_extracts_counts_only_for_the_same_file(tmp_path, caplog):
    from absorb_sync.export_checks import ExportChecks
    from absorb_sync.gates.export_gate import validate_export_file
    from airflow.sdk import ObjectStoragePath

    folder, path = ObjectStoragePath(f"file://{tmp_path}"), tmp_path / "export.parquet"
    bad = big_frame(9_000)
    bad.loc[[5, 8_500], "status"] = 13
    bad.loc[8_999, "enrollment_id"] = "e7"  # a duplicate in another batch
    counted_file(bad, path, folder)
    with caplog.at_level("INFO", logger="absorb_sync.gates.export_gate"):
        result = validate_export_file(
            path, previous_completed_count=None, now=NOW, counted=ExportChecks.load(folder)
        )
    assert "exact counts from the extract's pass" in caplog.text
    assert result.statistics["exact_counts_by"] == "extract"
    assert {f["description"]: f["unexpected_count"] for f in result.failures} == {
        "enrollment_id is unique": 2,
        "status is an Absorb enrollment status (0..12)": 2,
    }
    assert result.statistics["row_count"] == 9_000
    # counts of another file (the clean one is smaller) are not taken: the gate counts this file
    counted_file(big_frame(9_000), path, folder)
    bad.to_parquet(path, index=False)
    caplog.clear()
    with caplog.at_level("INFO", logger="absorb_sync.gates.export_gate"):
        again = validate_export_file(
            path, previous_completed_count=None, now=NOW, counted=ExportChecks.load(folder)
        )
    assert "counting it again" in caplog.text and again.statistics["exact_counts_by"] == "gate"
    assert again.failures == result.failures


def test_counts_settle_hash_collisions_exactly(monkeypatch):
    """Every key hash colliding: the repeated hashes are re-read and no real duplicate is counted."""
    import numpy as np
    from absorb_sync import export_checks

    monkeypatch.setattr(export_checks, "string_hashes", lambda values: np.zeros(len(values), np.uint64))
    frame = big_frame(12_000)
    assert check(frame).passed
    frame.loc[11_000, "enrollment_id"] = "e3"
    failures = check(frame).failures
    assert [(f["description"], f["unexpected_count"]) for f in failures] == [("enrollment_id is unique", 2)]


def test_string_hashes_tell_strings_apart_and_repeat_for_equal_ones():
    import pyarrow as pa
    from absorb_sync.export_checks import string_hashes

    values = ["", "a", "b", "ab", "ba", "a" * 300, "é", "e3", "e3", "", "x" * 299 + "y"]
    hashes = string_hashes(pa.array(values).slice(0))
    assert len(set(hashes.tolist())) == len(set(values))
    assert hashes[7] == hashes[8] and hashes[0] == hashes[9]
    assert (string_hashes(pa.array(values).slice(3, 4)) == hashes[3:7]).all()  # offsets honoured
    ids = ["6f9619ff-8b86-d011-b42d-00c04fc964ff", "0e984725-c51c-4bf4-9960-e1c80e27aba0", "e3" * 18]
    same_length = string_hashes(pa.array(ids).slice(1))  # the fixed-width path
    assert (same_length == string_hashes(pa.array([*ids, "x"]))[1:3]).all()  # = the general one


def test_counts_reused_at_a_later_time_only_when_nothing_completes_after_it():
    from datetime import timedelta

    from absorb_sync.export_checks import ExportChecks

    checks = ExportChecks(list(export_frame(clean_rows()).columns), NOW)
    checks.add(__import__("pyarrow").Table.from_pandas(export_frame(clean_rows()), preserve_index=False))
    assert checks.future_completions(NOW) == 0
    assert checks.future_completions(NOW + timedelta(days=1)) == 0  # latest completion 2026-02-01
    assert checks.future_completions(datetime(2026, 1, 1, tzinfo=UTC)) is None  # recount needed
