"""Run reports people read: report_data's words, names and charts, and the rendered pages.

Plans come from the real ``build_plan`` (so the reasons are the ones the sync writes); run folders
are written in the files and formats the jobs write.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pandas as pd
import pytest
from absorb_sync.plan import build_plan
from absorb_sync.report import run_report, sync_report, unenrollment_report
from absorb_sync.report_data import (
    People,
    general_reason,
    human,
    human_date,
    label,
    plain_error,
    plain_reason,
    svg_lines,
    svg_stacked_bars,
)

from .helpers import TODAY, people_frame, person

NOW = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
GUID_A = "a0000000-0000-4000-8000-00000000000a"
GUID_B = "b0000000-0000-4000-8000-00000000000b"
USERS = {"E000001": "u-guid-1", "E000002": GUID_A, "E000003": "u-guid-3", "E000004": "u-guid-4"}
GUIDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def desired(*rows) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["employee_id", "course_id", "rule", "due_days", "due_from", "recur_every_days"]
    )
    return frame.astype({"due_days": "Int64", "recur_every_days": "Int64"})


def people_rows() -> list[dict]:
    return [
        person("E000001", first_name="Ann", last_name="Lee", department="Sales", hire_date="2026-06-10"),
        person("E000002", first_name="Bo", last_name="Chen", department="Legal"),
        person("E000003", first_name="Cy", last_name="Diaz", department="Legal"),
        person(
            "E000004",
            first_name="Di",
            last_name="Ng",
            department="Finance",
            status="terminated",
            termination_date="2026-06-01",
        ),
    ]


def real_plan():
    """enroll (Ann, hire-based), re-enroll (Bo: completed 2025-01-02, yearly), a leaver (Di)."""
    wanted = desired(
        ("E000001", GUID_B, "all-staff-compliance", 30, "hire", None),
        ("E000002", GUID_A, "all-staff-compliance", 30, "assignment", 365),
    )
    current = pd.DataFrame(
        [
            {
                "id": "e-old",
                "userId": GUID_A,
                "courseId": GUID_A,
                "status": 3,
                "isActive": True,
                "dateAdded": "2024-12-01T00:00:00Z",
                "dateDue": None,
                "dateCompleted": "2025-01-02T00:00:00Z",
            },
            {
                "id": "e-leaver",
                "userId": "u-guid-4",
                "courseId": GUID_B,
                "status": 1,
                "isActive": True,
                "dateAdded": "2026-01-01T00:00:00Z",
                "dateDue": None,
                "dateCompleted": None,
            },
        ]
    )
    return build_plan(wanted, people_frame(people_rows()), USERS, current, set(), TODAY)


def run_folder(tmp_path, lines: pd.DataFrame, *, failed: bool = False):
    """A sync run folder with the files the jobs write (parquet, CSV, JSON)."""
    folder = tmp_path / "run"
    folder.mkdir()
    people = people_frame(people_rows())
    people.to_parquet(folder / "accepted.parquet")
    pd.DataFrame({"employee_id": list(USERS), "user_id": list(USERS.values())}, dtype="string").to_parquet(
        folder / "users.parquet"
    )
    (folder / "rule_courses.json").write_text(json.dumps({GUID_A: "Code of Conduct", GUID_B: "Data Privacy"}))
    (folder / "plan_meta.json").write_text(
        json.dumps({"leavers": ["E000004", "E000009"], "missing_people": []})
    )
    rejects = people.head(0).assign(reject_reason=pd.Series(dtype=str))
    bad = person("E000007", first_name="Eve", last_name="Ray", department="Ops", email="not-an-email")
    rejects = pd.DataFrame(
        [{**bad, "_line": 9, "reject_reason": "email 'not-an-email' is not a valid address"}]
    )
    rejects.to_csv(folder / "rejects.csv", index=False)
    pd.DataFrame(columns=["_line", "employee_id", "first_name", "last_name", "department", "status"]).to_csv(
        folder / "missing_people.csv", index=False
    )
    outcomes = lines.reset_index().rename(columns={"index": "key"})
    outcomes["outcome"] = "created"
    outcomes["error"] = None
    if failed:
        outcomes.loc[0, "outcome"] = "failed"
        outcomes.loc[0, "error"] = "AbsorbAPIError: HTTP 422 Unprocessable Entity: dueDate invalid"
    outcomes.to_csv(folder / "outcomes.csv", index=False)
    return folder


def sync_summary(plan, **extra) -> dict:
    summary = {
        "run_id": "manual__2026-06-15T09:30:00+00:00",
        "dry_run": False,
        "plan": plan.summary(),
        "outcomes": {"created": 2},
        "failed_writes": 0,
        "verification_mismatches": 0,
        "rejected_rows": 1,
        "missing_people": 0,
        "leavers_handed_over": ["E000004", "E000009"],
        "plan_gate": {"allowed": True, "reasons": [], "overridden": False, "max_removal_pct": 10.0},
        "approval": None,
        "folder": "/x",
    }
    summary.update(extra)
    return summary


# ---------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("re_enroll", "Re-enroll"),
        ("update_due_date", "Change due date"),
        ("people_requested", "People requested"),
        ("max_removal_pct", "Max removal %"),
        ("sql_upserted", "SQL upserted"),
    ],
)
def test_labels_are_words(key, text):
    assert label(key) == text


def test_values_read_as_words_never_none_false_or_iso():
    assert [human(v) for v in (None, False, True, float("nan"), pd.NA, "", "None")] == [
        "—",
        "no",
        "yes",
        "—",
        "—",
        "—",
        "—",
    ]
    assert human(1819) == "1,819" and human(3.33) == "3.3"
    assert human("2026-11-30") == "30 Nov 2026"
    assert human_date("2026-11-30T08:07:02+00:00", with_time=True) == "30 Nov 2026, 08:07 UTC"
    assert human({"enroll": 3, "re_enroll": 0}) == "Enroll: 3; Re-enroll: 0"


def test_reasons_from_the_real_plan_in_plain_words():
    lines = real_plan().lines.set_index("action")
    enroll, re_enroll, leaver = lines.loc["enroll"], lines.loc["re_enroll"], lines.loc["unenroll"]
    assert plain_reason("enroll", enroll["reason"], enroll["rule"]) == (
        "Required by the rule “All staff compliance”; not enrolled yet; due 10 Jul 2026, 30 days after the hire date."
    )
    assert plain_reason("re_enroll", re_enroll["reason"]) == (
        "Must be retaken every 365 days: last completed 2 Jan 2025, so due again since 2 Jan 2026."
    )
    assert plain_reason("unenroll_leaver", leaver["reason"]) == (
        "Left the company on 1 Jun 2026; the open enrollment goes, completed history stays."
    )
    # the grouping reason drops the person's dates, so people of a course share one row
    assert "2025" not in general_reason("re_enroll", re_enroll["reason"], re_enroll["rule"])
    assert general_reason("enroll", enroll["reason"], enroll["rule"]).endswith(
        "due 30 days after the hire date."
    )


def test_absorb_errors_in_words():
    assert plain_error("AbsorbAPIError: HTTP 422 Unprocessable Entity") == (
        "Absorb refused the values sent (for example a due date or a course setting) (HTTP 422)"
    )
    assert plain_error("HTTPError: 503 Server Error") == "Absorb had a server error (HTTP 503)"
    assert plain_error(None) == "no error text"


def test_people_are_named_from_user_ids_and_guids_are_never_names():
    people = People.from_frames(
        people_frame(people_rows()), users=pd.DataFrame({"employee_id": ["E000002"], "user_id": [GUID_A]})
    )
    assert people.row(user_id=GUID_A.upper()) == {
        "name": "Bo Chen",
        "employee_id": "E000002",
        "department": "Legal",
    }
    assert people.row(user_id=GUID_B, fallback=GUID_B)["name"] == "(name not in the feed)"


def test_svg_charts_are_inline_escaped_and_proportional():
    svg = svg_stacked_bars(
        [("A <b>", {"enroll": 30, "unenroll": 10}), ("B", {"enroll": 20})],
        {"enroll": ("Enroll", "#0a0"), "unenroll": ("Remove", "#a00")},
        title="Changes",
    )
    assert svg.startswith("<svg") and "A &lt;b&gt;" in svg and "<b>" not in svg
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)" height="18"', svg)]
    assert widths[0] == pytest.approx(3 * widths[1]) and widths[0] == pytest.approx(1.5 * widths[2])
    assert svg_lines({"Sales": [40.0, 50.0]}, ["1 Jan", "2 Jan"], title="t").count("<circle") == 2
    assert svg_lines({"Sales": [40.0]}, ["1 Jan"], title="t") == ""  # one point is not a trend


# ---------------------------------------------------------------- pages


def test_sync_report_names_people_groups_by_action_and_course_and_explains(tmp_path):
    plan = real_plan()
    folder = run_folder(tmp_path, plan.lines)
    page = sync_report(folder, sync_summary(plan), plan.lines, None, now=NOW)
    body = page.split("<body>")[1]
    assert "Bo Chen" in body and "E000002" in body and "Legal" in body
    assert "Code of Conduct" in body and "Data Privacy" in body
    assert not GUIDS.search(body), GUIDS.search(body)  # no GUID on the page
    for bad in ("None", "False", "nan", "re_enroll", "handled_by"):
        assert re.search(rf">[^<]*\b{bad}\b", body) is None, bad
    assert "Why 1 re-enrollment?" in body and "completion has expired" in body
    # 2 handed over vs 1 with open enrollments: the page says why
    assert "Why 2 leavers handed over?" in body and "1 new leaver without open enrollments" in body
    assert "Line" in body and ">9<" in body and "Email &#39;not-an-email&#39; is not a valid address" in body
    assert 'data-key="failed_writes"' in body and '<svg class="chart"' in body
    assert "<script" not in page and "http" not in body.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "@media print" in page
    assert "Done: 1 new enrollment, 1 re-enrollment." in body


def test_sync_report_of_a_held_plan_and_of_failures(tmp_path):
    plan = real_plan()
    folder = run_folder(tmp_path, plan.lines, failed=True)
    held = {
        "run_id": "r1",
        "dry_run": False,
        "held": "plan held for approval, nothing written yet: 2 removals are 50% ... (re-trigger with initial_load=true)",
        "plan": plan.summary(),
        "plan_gate": {"reasons": ["first apply against portal http://x as API user y"], "held": True},
        "folder": "/x",
    }
    page = sync_report(folder, held, plan.lines, None, now=NOW)
    assert "Held: nothing was written to Absorb" in page and "initial_load=true" in page
    assert "First apply against portal" in page and "Why the plan was held" in page
    assert "tone-held" in page
    approved = sync_summary(
        plan,
        failed_writes=1,
        outcomes={"created": 1, "failed": 1},
        approval={
            "decision": "approved",
            "by": "hr.lead",
            "at": "2026-06-15T10:00:00+00:00",
            "comment": "HR-9",
        },
    )
    page = sync_report(folder, approved, plan.lines, None, now=NOW)
    assert "Plan approved by hr.lead on 15 Jun 2026, 10:00 UTC." in page and "HR-9" in page
    assert "Failed writes" in page and "Absorb refused the values sent" in page and "tone-bad" in page


def test_unenrollment_report_names_people_and_lists_skipped_and_unresolved(tmp_path):
    folder = tmp_path / "u"
    folder.mkdir()
    targets = pd.DataFrame(
        [
            {
                "person": "E000002",
                "employee_id": "E000002",
                "user_id": GUID_A,
                "enrollment_id": "x1",
                "course_id": GUID_B,
                "course_name": "Data Privacy",
                "status": "1",
                "first_name": "Bo",
                "last_name": "Chen",
                "department": "Legal",
            },
        ]
    )
    targets.to_csv(folder / "targets.csv", index=False)
    targets.assign(outcome="unenrolled", error=None).to_csv(folder / "outcomes.csv", index=False)
    pd.DataFrame(
        [{"person": "E000005", "reason": "active in the latest accepted HR feed (sync run s1)"}]
    ).to_csv(folder / "skipped.csv", index=False)
    pd.DataFrame([{"person": "E999999", "problem": "no Absorb user with this employee id"}]).to_csv(
        folder / "unresolved.csv", index=False
    )
    summary = {
        "run_id": "leavers__s1",
        "dry_run": False,
        "reason": "leavers",
        "resolved": {
            "people_requested": 3,
            "people_resolved": 2,
            "targets": 1,
            "people_affected": 1,
            "kept_completed": 2,
            "skipped_count": 1,
            "unresolved": ["E999999"],
            "handover": None,
        },
        "gate": {"allowed": True, "reasons": [], "share_pct": 0.5},
        "approval": None,
        "outcomes": {"unenrolled": 1},
        "still_enrolled": 0,
    }
    page = unenrollment_report(folder, summary, pd.read_csv(folder / "targets.csv", dtype=str), None, now=NOW)
    body = page.split("<body>")[1]
    assert "Done: removed 1 open enrollment of 1 person." in body
    assert "Bo Chen" in body and "Legal" in body and "In progress" in body and "Removed" in body
    assert "Skipped people" in body and "Active in the latest accepted HR feed" in body
    assert "E999999" in body and "No Absorb user with this employee id" in body
    assert "2 completed enrollments kept as compliance history." in body
    assert not GUIDS.search(body)


def test_generic_report_keeps_outcome_and_approval_and_drops_guid_columns():
    summary = {
        "run_id": "r",
        "outcome": "rejected by hr.lead: wrong feed; nothing was written",
        "approval": {"decision": "rejected", "by": "hr.lead", "at": None, "comment": "wrong feed"},
        "written": 0,
        "gate": {"reasons": ["<too many>", "b"]},
    }
    page = run_report("Run <1>", summary, {"Held": pd.DataFrame({"user_id": [GUID_A], "person": ["<i>"]})})
    assert "Rejected by hr.lead: wrong feed" in page and "Plan rejected by hr.lead." in page
    assert "&lt;i&gt;" in page and "<i>" not in page.split("<body>")[1] and GUID_A not in page
    assert "&lt;too many&gt;, b" in page and 'data-key="written"' in page
