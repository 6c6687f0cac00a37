"""validate_feed: GX decides; table-level problems fail the gate, row-level ones quarantine rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from absorb_sync.feed import load_mapping, read_feed
from absorb_sync.gates import GateFailedError, validate_feed

from .helpers import TODAY, csv_text, people_frame, person


def gate(frame, previous=None, **kwargs):
    return validate_feed(frame, previous_row_count=previous, today=TODAY, **kwargs)


def test_clean_feed_passes_with_everyone_accepted(staff):
    result = gate(people_frame(staff), previous=10)
    assert result.passed, result.failures
    assert result.failures == []
    assert len(result.accepted) == 10 and result.rejected.empty
    assert result.statistics["active_count"] == 10
    result.raise_if_failed()  # no exception


def test_verdicts_come_from_the_gx_validation_result(staff):
    staff[3]["email"] = "not-an-email"
    result = gate(people_frame(staff))
    types = {item["expectation_config"]["type"] for item in result.validation}
    assert {"expect_column_values_to_match_regex", "expect_column_values_to_be_unique"} <= types
    regex = [
        i
        for i in result.validation
        if i["expectation_config"]["type"] == "expect_column_values_to_match_regex"
    ]
    assert regex[0]["success"] is False
    # GX reports the unexpected rows as their source lines (keys only: fast on large feeds)
    assert regex[0]["result"]["unexpected_index_list"] == [{"_line": [5]}]
    assert list(result.rejected["_line"]) == [5]


def test_row_rejects_carry_physical_line_numbers_and_reasons(write_feed, staff):
    staff[0]["last_name"] = '"Lee\nSmith"'  # a quoted two-line field shifts every later line by one
    staff[2]["email"] = "bob@nowhere"
    staff[3]["email"] = staff[4]["email"].upper()
    staff[5]["status"] = "Retired"
    staff[6]["hire_date"] = "2021-02-30"
    staff[7]["termination_date"] = "2019-01-01"
    staff[7]["status"] = "terminated"
    staff[8]["manager_id"] = "E999999"
    staff[9]["manager_id"] = "E000010"
    feed = read_feed(write_feed(csv_text(staff)), load_mapping(None))
    result = gate(feed.frame, max_reject_pct=100)
    assert result.passed  # row-level problems never fail the gate on their own
    reasons = dict(zip(result.rejected["_line"], result.rejected["reject_reason"], strict=True))
    assert reasons == {
        5: "email 'bob@nowhere' is not a valid address",
        6: "email 'ann.lee.000005@example.com' is used by more than one active person",
        7: "email 'ann.lee.000005@example.com' is used by more than one active person",
        8: "status 'Retired' is not one of active|leave|terminated (add it to status_values?)",
        9: "hire_date '2021-02-30' is not a date (YYYY-MM-DD or the mapping's date_format)",
        10: "termination_date is before hire_date",
        11: "manager_id 'E999999' is not an employee in the feed",
        12: "manager_id is the person themselves",
    }
    assert sorted(result.accepted["employee_id"]) == ["E000001", "E000002"]
    assert list(result.accepted["_line"]) == [2, 4]


def test_inactive_people_need_no_valid_email_but_required_fields_are_checked(staff):
    staff[1].update(status="terminated", termination_date="2026-01-01", email=None)
    staff[2].update(status="leave", email="x")
    staff[3].update(first_name=None)
    staff[4].update(email=None)
    result = gate(people_frame(staff))
    reasons = dict(zip(result.rejected["employee_id"], result.rejected["reject_reason"], strict=True))
    assert reasons == {"E000004": "first_name is missing", "E000005": "email is missing for an active person"}


def test_malformed_record_is_rejected_with_its_line(write_feed, staff):
    text = csv_text(staff).replace("Software Engineer,London", "Software, Engineer,London", 1)
    result = gate(read_feed(write_feed(text), load_mapping(None)).frame)
    assert list(result.rejected["_line"]) == [2]
    assert "malformed record: record has 12 fields, the header has 11" in result.rejected["reject_reason"][0]


def test_duplicate_employee_ids_fail_the_gate_naming_lines(staff):
    staff[5]["employee_id"] = "E000003"
    result = gate(people_frame(staff))
    assert not result.passed
    failure = next(f for f in result.failures if f["description"] == "employee_id is unique")
    assert failure["unexpected_count"] == 2
    assert [s["line"] for s in failure["sample_rows"]] == [4, 7]
    with pytest.raises(GateFailedError, match=r"employee_id is unique.*2 row\(s\).*'line': 4.*'line': 7"):
        result.raise_if_failed()


def test_missing_employee_id_fails_the_gate(staff):
    staff[2]["employee_id"] = None
    result = gate(people_frame(staff))
    assert not result.passed
    assert "employee_id is present on every row" in [f["description"] for f in result.table_failures]


def test_half_the_size_of_the_last_feed_fails(staff):
    result = gate(people_frame(staff), previous=20)
    assert not result.passed
    [failure] = result.table_failures
    assert failure["description"] == "row count within ±20% of the last accepted feed (20 rows: 16..24)"
    assert failure["observed_value"] == 10
    with pytest.raises(GateFailedError, match=r"±20%.*observed 10"):
        result.raise_if_failed()


@pytest.mark.parametrize(
    ("previous", "passed"),
    # 10 rows now; ±20 %: 12 -> 10..14, 8 -> 7..9, 13 -> 11..15, 9 -> 8..10 (a growing feed fails too)
    [(12, True), (8, False), (13, False), (9, True), (100, False)],
)
def test_row_drift_bounds(staff, previous, passed):
    result = gate(people_frame(staff), previous=previous)
    assert result.passed is passed


def test_too_many_rejects_fail_the_gate(staff):
    for row in staff[:3]:
        row["email"] = "broken"
    result = gate(people_frame(staff))
    assert not result.passed
    assert [f["description"] for f in result.table_failures] == ["at most 20% of the rows are rejected"]
    assert gate(people_frame(staff), max_reject_pct=30).passed


def test_missing_columns_fail_the_gate_by_name(staff):
    frame = people_frame(staff).drop(columns=["hire_date", "status"])
    result = gate(frame)
    assert not result.passed
    names = sorted(f["column"] for f in result.table_failures)
    assert names == ["hire_date", "status"]


def test_empty_frame_fails(staff):
    frame = people_frame(staff).iloc[0:0]
    result = gate(frame)
    assert not result.passed
    assert "the feed has at least one row" in [f["description"] for f in result.table_failures]


def test_summary_is_small_json_and_save_writes_the_full_result(tmp_path, staff):
    staff[3]["email"] = "nope"
    result = gate(pd.concat([people_frame(staff)]))
    summary = result.summary()
    text = json.dumps(summary)
    assert len(text) < 5000
    assert summary["rejected_rows"] == 1 and summary["passed"] is True
    # personal data stays out of the summary (it travels through XCom); the saved file has it
    assert summary["row_checks_with_rejects"][0]["sample_rows"] == [{"line": 5, "employee_id": "E000004"}]
    assert "nope" not in text
    path = result.save(tmp_path / "out" / "feed_gate.json")
    saved = json.loads((tmp_path / "out" / "feed_gate.json").read_text())
    assert path.endswith("feed_gate.json")
    assert len(saved["validation"]) == summary["statistics"]["evaluated_checks"]
    assert {"line": 5, "employee_id": "E000004", "email": "nope"} in saved["failures"][0]["sample_rows"]


def test_statistics_count_future_hires_and_pending_terminations(staff):
    staff[1]["hire_date"] = "2026-07-01"
    staff[2].update(status="terminated", termination_date="2026-12-31")
    staff[3].update(status="leave")
    stats = gate(people_frame(staff)).statistics
    assert stats["future_hires"] == 1
    assert stats["pending_terminations"] == 1
    assert (stats["active_count"], stats["leave_count"], stats["terminated_count"]) == (8, 1, 1)


def test_case_insensitive_duplicate_email_among_active_only(staff):
    staff[1]["email"] = "SAME@example.com"
    staff[2]["email"] = "same@example.com"
    staff[3].update(email="same@example.com", status="terminated", termination_date="2025-01-01")
    result = gate(people_frame(staff))
    assert sorted(result.rejected["employee_id"]) == ["E000002", "E000003"]


def test_person_helper_is_canonical():
    assert set(person("E000002")) == {
        "employee_id",
        "first_name",
        "last_name",
        "email",
        "department",
        "job_title",
        "location",
        "manager_id",
        "hire_date",
        "termination_date",
        "status",
    }


def test_save_accepts_object_storage_paths(tmp_path, staff):
    from airflow.sdk import ObjectStoragePath

    result = gate(people_frame(staff))
    result.save(ObjectStoragePath(f"file://{tmp_path}/deep/dir/feed.json"))
    assert json.loads((tmp_path / "deep" / "dir" / "feed.json").read_text())["summary"]["passed"] is True
    remote = ObjectStoragePath("memory://absorb-gates/run-1/feed.json")
    result.save(remote)
    assert json.loads(remote.read_text())["summary"]["name"] == "hr_feed"


def test_frames_read_back_from_parquet_validate_the_same(tmp_path, staff):
    staff[2]["email"] = None
    frame = people_frame(staff)
    frame.to_parquet(tmp_path / "feed.parquet")
    again = pd.read_parquet(tmp_path / "feed.parquet")
    assert list(gate(again).rejected["_line"]) == list(gate(frame).rejected["_line"]) == [4]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("first_name", '=HYPERLINK("http://evil.example","click")'),
        ("last_name", "+SUM(A1:A9)"),
        ("last_name", "-2+3"),
        ("job_title", "@cmd"),
        ("location", "\uff1dcmd"),  # full-width =
        ("department", "\uff20SUM(1)"),  # full-width @
        ("email", "=cmd@example.com"),
    ],
)
def test_formula_values_are_quarantined_naming_the_column(write_feed, staff, column, value):
    staff[4][column] = value
    feed = read_feed(
        write_feed(csv_text(staff).replace(value, '"' + value.replace('"', '""') + '"')), load_mapping(None)
    )
    result = gate(feed.frame)
    assert result.passed
    assert list(result.rejected["_line"]) == [6]
    [reason] = result.rejected["reject_reason"]
    assert reason.startswith(f"{column} {value!r} starts with {value[0]!r}: a spreadsheet formula")
    assert "E000005" not in set(result.accepted["employee_id"])


def test_formula_check_leaves_numbers_placeholders_and_inner_signs_alone(staff):
    staff[1]["department"] = "-"
    staff[2]["job_title"] = "R&D - Level 2"
    staff[3]["location"] = "-5"
    staff[4]["last_name"] = "Smith-Jones"
    staff[5]["email"] = "ann+lms@example.com"
    result = gate(people_frame(staff))
    assert result.rejected.empty, list(result.rejected["reject_reason"])


@pytest.mark.parametrize(
    "email",
    [
        "josé@bücher.de",
        "用户@例子.广告",
        "δοκιμή@παράδειγμα.ελ",
        "x@xn--bcher-kva.de",
    ],
)
def test_internationalised_emails_are_accepted(staff, email):
    staff[3]["email"] = email
    result = gate(people_frame(staff))
    assert result.rejected.empty, list(result.rejected["reject_reason"])


@pytest.mark.parametrize(
    ("email", "why"),
    [
        ("ann\u200b.lee@example.com", "invisible character (U+200B ZERO WIDTH SPACE)"),
        ("ann.lee@exam\u200dple.com", "invisible character (U+200D ZERO WIDTH JOINER)"),
        ("\ufeffann.lee@example.com", "invisible character (U+FEFF ZERO WIDTH NO-BREAK SPACE)"),
        ("ann.lee@exa\u00admple.com", "invisible character (U+00AD SOFT HYPHEN)"),
        ("ann\u2060lee@example.com", "invisible character (U+2060 WORD JOINER)"),
        ("ann.lee\uff20example.com", "look-alike at-sign (U+FF20 FULLWIDTH COMMERCIAL AT) instead of '@'"),
        ("ann.lee\ufe6bexample.com", "look-alike at-sign (U+FE6B SMALL COMMERCIAL AT) instead of '@'"),
        ("ann\uff20x@example.com", "look-alike at-sign (U+FF20"),
        ("ann.lee@example", "is not a valid address"),
        ("ann.lee@exa_mple.com", "is not a valid address"),
    ],
)
def test_invisible_characters_and_look_alike_at_signs_are_refused(staff, email, why):
    staff[3]["email"] = email
    result = gate(people_frame(staff))
    [reason] = result.rejected["reject_reason"]
    assert why in reason and reason.startswith(f"email {email!r}")
    assert list(result.rejected["_line"]) == [5]


def test_every_row_bad_still_gets_a_verdict_with_every_reason(monkeypatch):
    import absorb_sync.gates.runner as runner

    monkeypatch.setattr(runner, "RAW_LIST_LIMIT", 3)
    staff = [person(f"E{n:06d}", email=f"bad{n}") for n in range(1, 41)]
    result = gate(people_frame(staff), max_reject_pct=100)
    assert result.passed and len(result.rejected) == 40 and result.accepted.empty
    assert set(result.rejected["reject_reason"]) == {
        f"email 'bad{n}' is not a valid address" for n in range(1, 41)
    }
    regex = next(i for i in result.validation if i["expectation_config"]["type"].endswith("match_regex"))
    assert regex["result"]["unexpected_count"] == 40
    assert regex["result"]["unexpected_index_list"] == [{"_line": [2, 3, 4]}]
    assert regex["result"]["lists_truncated_to"] == 3
