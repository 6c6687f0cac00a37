"""Unit tests of the export normaliser and the report writers (plain data, no server)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pandas as pd
import pytest
from absorb_sync.export import (
    EXPORT_COLUMNS,
    normalise_enrollments,
    timespan_seconds,
    write_csv,
    write_partitioned_parquet,
)
from absorb_sync.report import compliance_report, compliance_tables, run_report
from airflow.sdk import ObjectStoragePath

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
COURSE_A, COURSE_B = "a0000000-0000-0000-0000-00000000000a", "b0000000-0000-0000-0000-00000000000b"
USER_1, USER_2 = "10000000-0000-0000-0000-000000000001", "20000000-0000-0000-0000-000000000002"


def enrollment(eid: str, user: str, course: str, status: int, **extra) -> dict:
    row = {
        "id": eid,
        "userId": user,
        "courseId": course,
        "courseName": "Course A" if course == COURSE_A else "Course B",
        "status": status,
        "progress": 100 if status == 3 else 40,
        "score": 90 if status == 3 else None,
        "isActive": True,
        "dateAdded": "2026-10-01T08:00:00Z",
        "dateEdited": "2026-11-20T08:00:00+01:00",
        "timeSpent": "1.02:03:04.5000000",
        "dateCompleted": "2026-11-01T00:00:00Z" if status == 3 else None,
        "dateDue": None,
    }
    row.update(extra)
    return row


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:00", 0.0),
        ("01:02:03", 3723.0),
        ("1.13:02:39.9878697", 86400 + 13 * 3600 + 2 * 60 + 39.9878697),
        ("-00:00:10", -10.0),
        ("garbage", None),
        (None, None),
    ],
)
def test_timespan_seconds_reads_dotnet_timespans(text, seconds):
    result = timespan_seconds(text)
    assert result == pytest.approx(seconds) if seconds is not None else result is None


def test_normalise_types_names_people_and_overdue():
    rows = [
        enrollment("e1", USER_1, COURSE_A, 3),
        enrollment("e2", USER_2, COURSE_A, 1, dateDue="2026-11-01T00:00:00Z", timeSpentTicks=600_000_000),
        enrollment("e3", USER_2, COURSE_B, 0, isActive=False),
    ]
    users = [
        {
            "id": USER_1,
            "externalId": "E000001",
            "departmentId": "d1",
            "location": "Berlin",
            "jobTitle": "Dev",
        },
        {
            "id": USER_2,
            "externalId": "E000002",
            "departmentId": "d2",
            "location": "Sydney",
            "jobTitle": "Rep",
        },
    ]
    people = pd.DataFrame(
        {"employee_id": ["E000002"], "department": ["Sales"], "job_title": ["Senior Rep"], "location": [None]}
    )
    frame = normalise_enrollments(
        rows, now=NOW, users=users, people=people, departments={"d1": "Engineering", "d2": "Marketing"}
    )
    assert list(frame.columns) == EXPORT_COLUMNS
    by_id = frame.set_index("enrollment_id")
    assert by_id.loc["e1", "status_name"] == "Complete" and bool(by_id.loc["e1", "is_completed"])
    assert by_id.loc["e1", "time_spent_seconds"] == pytest.approx(93784.5)
    assert by_id.loc["e2", "time_spent_seconds"] == pytest.approx(60.0)  # ticks win over the string
    assert by_id.loc["e1", "date_edited"] == pd.Timestamp("2026-11-20T07:00:00Z")  # converted to UTC
    assert str(frame["date_edited"].dt.tz) == "UTC"
    assert bool(by_id.loc["e2", "is_overdue"]) and not bool(by_id.loc["e1", "is_overdue"])
    assert not bool(by_id.loc["e3", "is_overdue"])  # history rows are never overdue
    # HR feed attributes win over Absorb's; gaps fall back to Absorb
    assert by_id.loc["e2", "department"] == "Sales" and by_id.loc["e2", "job_title"] == "Senior Rep"
    assert by_id.loc["e2", "location"] == "Sydney"
    assert by_id.loc["e1", "department"] == "Engineering" and by_id.loc["e1", "employee_id"] == "E000001"


def test_normalise_empty_input_has_the_columns_and_types():
    frame = normalise_enrollments([], now=NOW)
    assert list(frame.columns) == EXPORT_COLUMNS and frame.empty
    assert str(frame["date_completed"].dtype) == "datetime64[us, UTC]"


def test_partitioned_parquet_and_csv_round_trip(tmp_path):
    frame = normalise_enrollments(
        [enrollment("e1", USER_1, COURSE_A, 3), enrollment("e2", USER_2, COURSE_B, 1)], now=NOW
    )
    root = ObjectStoragePath(f"file://{tmp_path}")
    files = write_partitioned_parquet(frame, root / "completions", "course_id")
    assert sorted(p.split("/")[-2] for p in files) == [f"course_id={COURSE_A}", f"course_id={COURSE_B}"]
    back = pd.read_parquet(tmp_path / "completions").sort_values("enrollment_id")
    assert back["enrollment_id"].tolist() == ["e1", "e2"]
    write_csv(frame, root / "completions.csv")
    csv = pd.read_csv(tmp_path / "completions.csv")
    assert csv.loc[0, "date_completed"] == "2026-11-01T00:00:00Z" and len(csv) == 2
    with pytest.raises(ValueError, match="cannot partition by 'score'"):
        write_partitioned_parquet(frame, root / "x", "score")


def test_compliance_report_has_rates_and_embedded_charts():
    rows = [
        enrollment("e1", USER_1, COURSE_A, 3),
        enrollment("e2", USER_2, COURSE_A, 1, dateDue="2026-11-01T00:00:00Z"),
        enrollment("e3", USER_2, COURSE_B, 1),
    ]
    users = [{"id": USER_1, "departmentId": "d1"}, {"id": USER_2, "departmentId": "d1"}]
    frame = normalise_enrollments(rows, now=NOW, users=users, departments={"d1": "Engineering"})
    tables = compliance_tables(frame)
    course_a = tables["course"].set_index("course").loc["Course A"]
    assert (course_a["enrollments"], course_a["completed"], course_a["overdue"]) == (2, 1, 1)
    assert course_a["completion_rate_pct"] == 50.0
    assert tables["department"].set_index("department").loc["Engineering", "enrollments"] == 3
    html = compliance_report(frame, title="T", scope="full export", now=NOW)
    charts = re.findall(r'<svg class="chart" role="img" aria-label="([^"]+)"', html)
    assert charts == [  # rate + overdue, by course and by department, inline SVG
        "Completion rate by course",
        "Overdue enrollments by course",
        "Completion rate by department",
        "Overdue enrollments by department",
    ]
    assert "<title>Course A: 50%</title>" in html and "<title>Course A: 1</title>" in html
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # offline
    body = html.split("<body>")[1]
    assert "Completion rate by course" in body and "33.3%" in body  # Engineering: 1 of 3 completed
    text = re.sub(r"<[^>]+>", " ", body)  # what a reader sees
    assert "completion_rate_pct" not in text and "None" not in text  # readable labels
    assert "@media print" in html


def test_compliance_report_explains_rows_vs_active_and_charts_departments_over_time(tmp_path):
    import json

    from absorb_sync.export_report import ComplianceAggregates, compliance_html, load_history

    rows = [
        enrollment("e1", USER_1, COURSE_A, 3),
        enrollment("e2", USER_1, COURSE_A, 3, isActive=False),  # history of a re-enrollment
        enrollment("e3", USER_2, COURSE_B, 1),
    ]
    users = [{"id": USER_1, "departmentId": "d1"}, {"id": USER_2, "departmentId": "d2"}]
    frame = normalise_enrollments(rows, now=NOW, users=users, departments={"d1": "Sales", "d2": "Legal"})
    aggregates = ComplianceAggregates.of(frame)
    page = compliance_html(aggregates, title="T", scope="full export", now=NOW)
    assert "Why 3 rows but 2 active enrollments?" in page and "1 row of them inactive history" in page
    assert "<polyline" not in page  # one run: no trend yet
    earlier = ComplianceAggregates.from_json(
        {
            **aggregates.to_json(),
            "groups": {"course": {}, "department": {"Sales": [2, 0, 0], "Legal": [1, 0, 0]}},
        }
    )
    for name, when, data, full in (
        ("r1", "2026-11-20T00:00:00+00:00", earlier, True),
        ("r2", "2026-11-25T00:00:00+00:00", earlier, False),  # incremental: not comparable, left out
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"full": full, "until": when}))
        (tmp_path / name / "export_aggregates.json").write_text(json.dumps(data.to_json()))
    history = load_history(tmp_path / "r3")
    assert [when.day for when, _ in history] == [20]
    page = compliance_html(aggregates, title="T", scope="full export", now=NOW, history=history)
    assert page.count("<polyline") == 2 and "20 Nov 2026" in page and "27 Nov 2026" in page


def test_run_report_escapes_values_and_nests_summaries():
    summary = {"note": "<b>x</b>", "plan": {"enroll": 3, "gate": {"reasons": ["<too many>", "b"]}}}
    page = run_report("Run <1>", summary, {"Plan": pd.DataFrame({"a": ["<i>"]})})
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "&lt;i&gt;" in page
    assert '<dt data-key="plan.enroll">Plan: Enroll</dt><dd>3</dd>' in page  # nested mapping, labelled
    assert "&lt;too many&gt;, b" in page


TRICKY = ["Alice", "=HYPERLINK(1)", 'He said "hi"', "a,b", "line1\nline2", "", None, "-5", "@x", "cr\rlf"]


def tricky_rows(count: int = 200) -> list[dict]:
    rows = []
    for n in range(count):
        status = [0, 1, 3, 4, 12][n % 5]
        rows.append(
            enrollment(
                f"e{n:04d}",
                USER_1 if n % 2 else USER_2,
                COURSE_A if n % 3 else COURSE_B,
                status,
                fullName=TRICKY[n % len(TRICKY)],
                jobTitle=TRICKY[(n + 3) % len(TRICKY)],
                progress=[None, 0, 12.5, 100, 1e-05, 33.333333333333336, 12345678901234567.0][n % 7],
                isActive=[True, False, None][n % 3],
                dateDue=[None, "2026-11-01T00:00:00Z", "2027-01-01T10:11:12.9999999+01:00"][n % 3],
                timeSpent=["00:00:01", "1.02:03:04.5", "-00:00:10", "garbage", None][n % 5],
                timeSpentTicks=None if n % 4 else n * 12345,
            )
        )
    return rows


def test_csv_is_what_pandas_writes_for_the_export_frame(tmp_path):
    from absorb_provider.csv_safety import escape_frame

    frame = normalise_enrollments(tricky_rows(), now=NOW)
    root = ObjectStoragePath(f"file://{tmp_path}")
    write_csv(frame, root / "streamed.csv")
    expected = escape_frame(frame).to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ", lineterminator="\n")
    assert (tmp_path / "streamed.csv").read_bytes().decode("utf-8") == expected  # byte for byte
    assert "'=HYPERLINK(1)" in expected and '"He said ""hi"""' in expected


def test_streaming_normaliser_matches_the_frame_normaliser_page_by_page():
    import pyarrow as pa
    from absorb_provider.io import COURSE_ENROLLMENT_FIELDS, raw_arrow_schema
    from absorb_sync.export import normalise_table, timespan_seconds_array, user_attributes

    rows = tricky_rows(90)
    users = [{"id": USER_1, "externalId": "E1", "departmentId": "d1"}, {"id": USER_2, "externalId": "E2"}]
    people = pd.DataFrame(
        {"employee_id": ["E2"], "department": ["Sales"], "job_title": [None], "location": ["Rome"]}
    )
    whole = normalise_enrollments(rows, now=NOW, users=users, people=people, departments={"d1": "Eng"})
    attributes = user_attributes(users, {"d1": "Eng"}, pa.Table.from_pandas(people, preserve_index=False))
    pages = [
        normalise_table(
            pa.Table.from_pylist(rows[i : i + 7], schema=raw_arrow_schema(COURSE_ENROLLMENT_FIELDS)),
            now=NOW,
            attributes=attributes,
        )
        for i in range(0, len(rows), 7)
    ]
    streamed = pa.concat_tables(pages).to_pandas().sort_values("enrollment_id", ignore_index=True)
    pd.testing.assert_frame_equal(streamed, whole)
    assert set(whole.loc[whole["user_id"] == USER_2, "department"]) == {"Sales"}
    texts = ["1.13:02:39.9878697", "01:02:03", "-00:00:10", " 00:01:00 ", "garbage", None]
    assert timespan_seconds_array(pa.array(texts)).to_pylist() == [timespan_seconds(t) for t in texts]


def test_compliance_aggregates_survive_json_and_match_the_frame():
    import pyarrow as pa
    from absorb_sync.export_report import ComplianceAggregates

    frame = normalise_enrollments(tricky_rows(), now=NOW)
    direct = compliance_tables(frame)
    batches = [frame.iloc[i : i + 33] for i in range(0, len(frame), 33)]
    aggregates = ComplianceAggregates()
    for batch in batches:
        aggregates.add(pa.Table.from_pandas(batch, preserve_index=False))
    restored = ComplianceAggregates.from_json(aggregates.to_json())
    for label, table in restored.tables().items():
        pd.testing.assert_frame_equal(table, direct[label])
    active = frame["is_active"].fillna(True).astype(bool)
    assert restored.active == int(active.sum()) and restored.rows == len(frame)
    assert restored.completed == int(frame["is_completed"].sum())


def test_export_schema_is_what_pandas_gives_for_the_export_frame():
    """Built in Arrow (the extract never imports pandas), with the same pandas metadata."""
    import pyarrow as pa
    from absorb_sync.export import _empty_export, export_schema

    for drop in ((), ("course_id",)):
        frame = _empty_export().drop(columns=list(drop))
        assert export_schema(drop).equals(
            pa.Schema.from_pandas(frame, preserve_index=False), check_metadata=True
        )


def test_iso_text_with_a_zone_and_other_forms_give_the_same_instants():
    """Arrow's direct cast (what Absorb sends) and the fallback parser agree."""
    import pyarrow as pa
    from absorb_provider.io import parse_timestamps
    from absorb_sync.export import _utc_timestamps

    absorb = pa.array(["2024-07-12T05:02:20.000000Z", None, "2024-07-12T05:02:20+05:00"])
    assert _utc_timestamps(absorb).equals(parse_timestamps(absorb))
    other = pa.array(["2024-07-12T05:02:20.1234567Z", "2024-07-12", "2024-07-12T05:02:20", "garbage"])
    assert _utc_timestamps(other).equals(parse_timestamps(other))
    assert _utc_timestamps(other).null_count == 1


def test_key_index_finds_what_index_in_finds_even_when_every_hash_collides(monkeypatch):
    """The user look-up of the export join: first row of a repeated id, null for absent or null
    keys; a hash shared by different ids (forced here) falls back to comparing the strings."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from absorb_sync import export_checks
    from absorb_sync.export import KeyIndex

    values = pa.array(["u3", None, "u1", "u2", "u1", "u10"])
    keys = pa.chunked_array([["u1", "u2", None], ["nobody", "u10", "u3", "u1"]])
    expected = pc.index_in(keys.combine_chunks(), value_set=values, skip_nulls=True)
    assert KeyIndex(values).positions(keys).equals(expected)
    monkeypatch.setattr(export_checks, "string_hashes", lambda v: np.zeros(len(v), np.uint64))
    assert KeyIndex(values).positions(keys).equals(expected)
    assert KeyIndex(pa.array([], pa.string())).positions(keys).null_count == len(keys)


def test_time_spent_takes_ticks_and_reads_text_only_where_ticks_are_missing():
    import pyarrow as pa
    from absorb_sync.export import _time_spent_seconds

    ticks = pa.chunked_array([[10_000_000, None, 25_000_000], [None, None]], pa.int64())
    text = pa.chunked_array([["99:00:00", "00:01:00", None], ["1.00:00:00", "garbage"]])
    assert _time_spent_seconds(ticks, text).to_pylist() == [1.0, 60.0, 2.5, 86400.0, None]
    assert _time_spent_seconds(pa.array([5], pa.int64()), pa.nulls(1, pa.string())).to_pylist() == [5e-07]
