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
