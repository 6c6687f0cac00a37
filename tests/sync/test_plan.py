"""build_plan / check_plan: actions, reasons, safety rules and the removal gate."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from absorb_sync.plan import LINE_COLUMNS, Plan, build_plan, check_plan, due_date

from .helpers import TODAY, people_frame, person

USERS = {f"E{n:06d}": f"u{n}" for n in range(1, 10)}


def desired(*rows) -> pd.DataFrame:
    """rows: (employee_id, course_id, rule, due_days, due_from, recur_every_days)."""
    frame = pd.DataFrame(
        rows, columns=["employee_id", "course_id", "rule", "due_days", "due_from", "recur_every_days"]
    )
    return frame.astype({"due_days": "Int64", "recur_every_days": "Int64"})


def enrollment(
    eid, user, course, *, status=1, active=True, added="2026-01-10T09:30:00", due=None, completed=None
):
    return {
        "id": eid,
        "userId": user,
        "courseId": course,
        "status": status,
        "isActive": active,
        "dateAdded": added,
        "dateDue": due,
        "dateCompleted": completed,
    }


def plan_for(wanted, people, current, ours=(), **kwargs) -> Plan:
    frame = pd.DataFrame(
        current,
        columns=["id", "userId", "courseId", "status", "isActive", "dateAdded", "dateDue", "dateCompleted"],
    )
    return build_plan(wanted, people_frame(people), USERS, frame, set(ours), TODAY, **kwargs)


def actions(plan: Plan) -> list[tuple]:
    return [
        (r["action"], r["employee_id"], r["course_id"], r["enrollment_id"], r["due_date"], r["handled_by"])
        for r in plan.lines.to_dict("records")
    ]


def test_enroll_with_due_dates_from_hire_or_assignment():
    people = [person("E000001", hire_date="2026-06-01"), person("E000002", hire_date="2020-01-01")]
    wanted = desired(
        ("E000001", "c1", "r", 30, "hire", None),
        ("E000002", "c1", "r", 30, "hire", None),  # hire + 30 days long past -> today + 30
        ("E000002", "c2", "r2", 14, "assignment", 365),
        ("E000002", "c3", "r3", None, "assignment", None),
    )
    plan = plan_for(wanted, people, [])
    assert actions(plan) == [
        ("enroll", "E000001", "c1", None, "2026-07-01", "sync"),
        ("enroll", "E000002", "c1", None, "2026-07-15", "sync"),
        ("enroll", "E000002", "c2", None, "2026-06-29", "sync"),
        ("enroll", "E000002", "c3", None, None, "sync"),
    ]
    reasons = list(plan.lines["reason"])
    assert reasons[0] == (
        "rule 'r' requires this course and there is no active enrollment; "
        "due 2026-07-01 (hire 2026-06-01 + 30 days)"
    )
    assert "as hire + 30 days had passed" in reasons[1]
    assert list(plan.lines.columns) == LINE_COLUMNS


def test_people_missing_in_absorb_are_reported_not_planned():
    people = [person("E000001"), person("E000042")]
    plan = plan_for(
        desired(
            ("E000001", "c1", "r", None, "assignment", None), ("E000042", "c1", "r", None, "assignment", None)
        ),
        people,
        [],
    )
    assert plan.missing_people == ["E000042"]
    assert [a[1] for a in actions(plan)] == ["E000001"]
    assert plan.summary()["missing_people"] == 1


def test_existing_active_enrollment_history_and_ids_case():
    people = [person("E000001")]
    current = [
        enrollment("old", "U1", "C1", status=3, active=False, completed="2024-01-01T00:00:00"),
        enrollment("now", "u1", "c1", status=1),
    ]
    plan = plan_for(desired(("E000001", "c1", "r", None, "assignment", None)), people, current)
    assert plan.lines.empty
    assert plan.active_in_scope == 1


def test_only_history_means_enroll_again():
    current = [enrollment("old", "u1", "c1", status=3, active=False, completed="2024-01-01T00:00:00")]
    plan = plan_for(desired(("E000001", "c1", "r", None, "assignment", None)), [person("E000001")], current)
    assert [a[0] for a in actions(plan)] == ["enroll"]


def test_re_enroll_when_completion_is_older_than_the_recurrence():
    people = [person("E000001"), person("E000002"), person("E000003")]
    current = [
        enrollment("a", "u1", "c1", status=3, completed="2025-06-15T10:00:00Z"),  # 365 days ago today
        enrollment("b", "u2", "c1", status=3, completed="2025-06-16T10:00:00Z"),  # due tomorrow
        enrollment("c", "u3", "c1", status=3, completed="2020-01-01T10:00:00Z"),  # no recurrence rule
    ]
    wanted = desired(
        ("E000001", "c1", "annual", 30, "hire", 365),
        ("E000002", "c1", "annual", 30, "hire", 365),
        ("E000003", "c1", "once", None, "assignment", None),
    )
    plan = plan_for(wanted, people, current)
    assert actions(plan) == [("re_enroll", "E000001", "c1", "a", "2026-07-15", "sync")]
    assert plan.lines.loc[0, "reason"].startswith(
        "rule 'annual' recurs every 365 days: completed 2025-06-15, due again 2026-06-15"
    )


def test_due_date_updates_only_for_our_incomplete_enrollments():
    people = [person(f"E00000{n}", hire_date="2026-05-01") for n in range(1, 6)]
    current = [
        enrollment("ours-wrong", "u1", "c1", added="2026-05-02T10:00:00Z", due="2026-05-20T00:00:00"),
        enrollment("ours-right", "u2", "c1", added="2026-05-02T10:00:00Z", due="2026-05-31T00:00:00"),
        enrollment("ours-midnight", "u3", "c2", added="2026-05-03T00:00:10Z", due="2026-05-16T00:00:00"),
        enrollment("theirs", "u4", "c1", added="2026-05-02T10:00:00Z", due="2026-09-01T00:00:00"),
        enrollment(
            "ours-done",
            "u5",
            "c1",
            status=3,
            added="2026-05-02T10:00:00Z",
            due="2026-09-01",
            completed="2026-05-05T00:00:00",
        ),
    ]
    wanted = desired(
        *[(f"E00000{n}", "c1", "r", 30, "hire", None) for n in (1, 2, 4, 5)],
        ("E000003", "c2", "r2", 14, "assignment", None),
    )
    plan = plan_for(wanted, people, current, ours={"ours-wrong", "ours-right", "ours-midnight", "ours-done"})
    assert actions(plan) == [("update_due_date", "E000001", "c1", "ours-wrong", "2026-05-31", "sync")]
    assert plan.lines.loc[0, "reason"] == (
        "rule 'r': due date 2026-05-20 differs from the rule's; due 2026-05-31 (hire 2026-05-01 + 30 days)"
    )


def test_sync_unenrolls_only_our_incomplete_enrollments_of_active_people():
    people = [
        person("E000001"),
        person("E000002"),
        person("E000003"),
        person("E000004", status="leave"),
        person("E000005", status="terminated", termination_date="2026-12-31"),  # not effective yet
        person("E000006", hire_date="2026-07-01"),  # future (re)hire
    ]
    current = [
        enrollment("ours", "u1", "c1"),
        enrollment("theirs", "u2", "c1"),
        enrollment("done", "u3", "c1", status=3, completed="2026-02-01T00:00:00"),
        enrollment("leave", "u4", "c1"),
        enrollment("pending-leaver", "u5", "c1"),
        enrollment("future", "u6", "c1"),
        enrollment("not-in-feed", "u7", "c1"),
    ]
    ours = {"ours", "done", "leave", "pending-leaver", "future", "not-in-feed"}
    plan = plan_for(desired(), people, current, ours=ours)
    assert actions(plan) == [("unenroll", "E000001", "c1", "ours", None, "sync")]
    assert "no rule assigns this course to E000001 any more" in plan.lines.loc[0, "reason"]
    wider = plan_for(desired(), people, current, ours=ours, unenroll_only_ours=False)
    assert [a[3] for a in actions(wider)] == ["ours", "theirs"]
    assert "not created by this integration" in wider.lines.loc[1, "reason"]


def test_leavers_open_enrollments_go_to_the_unenrollment_dag_and_history_is_kept():
    people = [person("E000001", status="terminated", termination_date="2026-06-01"), person("E000002")]
    current = [
        enrollment("open", "u1", "c1", status=1),
        enrollment("done", "u1", "c2", status=3, completed="2026-05-01T00:00:00"),
        enrollment("kept", "u2", "c1", status=1),
    ]
    plan = plan_for(desired(("E000002", "c1", "r", None, "assignment", None)), people, current)
    assert actions(plan) == [("unenroll", "E000001", "c1", "open", None, "absorb_bulk_unenrollment")]
    assert plan.lines.loc[0, "reason"].startswith("leaver: terminated 2026-06-01")
    summary = plan.summary()
    assert (summary["unenroll_leavers"], summary["unenroll_by_sync"], summary["removals"]) == (1, 0, 1)
    assert summary["active_in_scope"] == 3 and summary["removal_pct"] == pytest.approx(33.33)


def test_every_line_has_a_reason_and_summary_is_json_safe():
    import json

    people = [person("E000001"), person("E000002", status="terminated", termination_date="2026-01-01")]
    current = [enrollment("x", "u2", "c1"), enrollment("y", "u1", "c9")]
    plan = plan_for(desired(("E000001", "c1", "r", 5, "assignment", None)), people, current, ours={"y"})
    assert plan.lines["reason"].map(bool).all()
    assert sorted(plan.lines["action"]) == ["enroll", "unenroll", "unenroll"]
    json.dumps(plan.summary())


@pytest.mark.parametrize(
    ("due_days", "due_from", "hire", "assigned", "expected"),
    [
        (30, "hire", date(2026, 6, 1), date(2026, 6, 2), date(2026, 7, 1)),
        (30, "hire", date(2026, 1, 1), date(2026, 6, 2), date(2026, 7, 2)),
        (30, "assignment", date(2026, 6, 1), date(2026, 6, 2), date(2026, 7, 2)),
        (None, "hire", date(2026, 6, 1), date(2026, 6, 2), None),
    ],
)
def test_due_date_rule(due_days, due_from, hire, assigned, expected):
    assert due_date(due_days, due_from, hire, assigned) == expected


def removal_plan(removals: int, in_scope: int, additions: int = 0) -> Plan:
    rows = [{"action": "unenroll", "handled_by": "sync"}] * removals + [
        {"action": "enroll", "handled_by": "sync"}
    ] * additions
    return Plan(lines=pd.DataFrame(rows, columns=LINE_COLUMNS), missing_people=[], active_in_scope=in_scope)


def test_check_plan_allows_small_plans():
    decision = check_plan(removal_plan(10, 100), reads_complete=True, feed_shrank=False)
    assert decision.allowed and not decision.reasons and not decision.overridden


def test_check_plan_refuses_removals_over_threshold_and_override_needs_reason():
    plan = removal_plan(11, 100)
    decision = check_plan(plan, reads_complete=True, feed_shrank=False)
    assert not decision.allowed
    assert decision.reasons == [
        "11 removals are 11.0% of the 100 active enrollments in scope, above max_removal_pct 10%"
    ]
    with pytest.raises(ValueError, match="non-empty override_reason"):
        check_plan(plan, reads_complete=True, feed_shrank=False, override=True, override_reason="  ")
    decision = check_plan(
        plan,
        reads_complete=True,
        feed_shrank=False,
        override=True,
        override_reason="re-org approved by HR (ticket 42)",
    )
    assert decision.allowed and decision.overridden
    assert decision.override_reason == "re-org approved by HR (ticket 42)"
    assert check_plan(plan, max_removal_pct=20, reads_complete=True, feed_shrank=False).allowed


def test_check_plan_refuses_additions_and_shrunk_feed():
    decision = check_plan(
        removal_plan(0, 10, additions=6), max_additions=5, reads_complete=True, feed_shrank=True
    )
    assert not decision.allowed
    assert decision.reasons == [
        "6 additions exceed max_additions 5",
        "the HR feed shrank suspiciously compared with the last accepted feed",
    ]


def test_incomplete_reads_cannot_be_overridden():
    decision = check_plan(
        removal_plan(0, 10), reads_complete=False, feed_shrank=False, override=True, override_reason="please"
    )
    assert not decision.allowed and not decision.overridden
    assert "incomplete" in decision.reasons[0]


def test_removals_with_nothing_in_scope_count_as_everything():
    assert not check_plan(removal_plan(1, 0), reads_complete=True, feed_shrank=False).allowed


def test_rows_without_is_active_count_as_active_so_nothing_is_duplicated():
    current = [enrollment("e1", "u1", "c1")]
    current[0]["isActive"] = None
    plan = plan_for(desired(("E000001", "c1", "r", None, "assignment", None)), [person("E000001")], current)
    assert plan.lines.empty and plan.active_in_scope == 1


def test_leaver_removals_count_towards_the_threshold():
    people = [person("E000001", status="terminated", termination_date="2026-06-01")]
    people += [person(f"E00000{n}") for n in range(2, 10)]
    current = [enrollment("gone", "u1", "c1")] + [enrollment(f"k{n}", f"u{n}", "c1") for n in range(2, 10)]
    wanted = desired(*[(f"E00000{n}", "c1", "r", None, "assignment", None) for n in range(2, 10)])
    plan = plan_for(wanted, people, current)
    assert plan.summary()["removals"] == 1 and plan.summary()["removal_pct"] == pytest.approx(11.11)
    decision = check_plan(plan, reads_complete=True, feed_shrank=False)
    assert not decision.allowed and "1 removals are 11.11%" in decision.reasons[0]
