"""The core promise, end to end against the sandbox as a real HTTP server through the real hook:
feed -> gate -> rules -> plan -> apply, and the same feed again plans nothing for the sync.
A person who changes department loses only the open enrollment this integration created."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from absorb_sync.feed import CANONICAL_COLUMNS, load_mapping, read_feed
from absorb_sync.gates import validate_feed
from absorb_sync.plan import build_plan, check_plan
from absorb_sync.rules import evaluate_rules, load_rules, resolve_courses
from absorb_sync.state import SyncState

RULES = Path(__file__).resolve().parents[2] / "include" / "rules" / "enrollment_rules.yaml"
FEED_SIZE = 60  # people taken from the seeded organisation (keeps the test to a few seconds)


def feed_rows_from_absorb(hook) -> list[dict]:
    """An HR feed shaped like the seeded organisation (the sandbox seeds users from an HR roster)."""
    departments = {d["id"]: d["name"] for d in hook.list_departments()}
    users = [u for u in hook.list_users() if u.get("externalId")]
    external_by_id = {u["id"]: u["externalId"] for u in users}
    users = sorted(users, key=lambda u: u["externalId"])[:FEED_SIZE]
    kept = {u["externalId"] for u in users}
    rows = []
    for user in users:
        manager = external_by_id.get(user.get("supervisorId"))
        terminated = user.get("dateTerminated")
        rows.append(
            {
                "employee_id": user["externalId"],
                "first_name": user["firstName"],
                "last_name": user["lastName"],
                "email": user["emailAddress"],
                "department": departments.get(user.get("departmentId"), ""),
                "job_title": user.get("jobTitle") or "",
                "location": user.get("location") or "",
                "manager_id": manager if manager in kept else "",
                "hire_date": (user.get("dateHired") or "")[:10],
                "termination_date": (terminated or "")[:10],
                "status": "terminated" if terminated else "active",
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CANONICAL_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plan_once(hook, feed_path: Path, state: SyncState, today):
    feed = read_feed(feed_path, load_mapping(None))
    previous = state.last_accepted_feed()
    gate = validate_feed(feed.frame, previous_row_count=previous and previous["row_count"], today=today)
    gate.raise_if_failed()
    people = gate.accepted
    ruleset = load_rules(RULES)
    course_ids = resolve_courses(ruleset, hook.list_courses())
    desired = evaluate_rules(people, ruleset, course_ids, today)
    users = {u["externalId"]: u["id"] for u in hook.list_users() if u.get("externalId")}
    rows = [
        row for course in sorted(set(course_ids.values())) for row in hook.list_course_enrollments(course)
    ]
    current = pd.DataFrame(rows)
    plan = build_plan(desired, people, users, current, state.provenance_ids(), today)
    return plan, people


def apply(hook, plan, state: SyncState, run_id: str) -> dict:
    ours = plan.lines[plan.lines["handled_by"] == "sync"]
    writes = ours[ours["action"].isin(["enroll", "re_enroll", "update_due_date"])]
    items = [
        {
            "user_id": r.user_id,
            "course_id": r.course_id,
            "due_date": r.due_date,
            "re_enroll": r.action == "re_enroll",
            "key": i,
        }
        for i, r in enumerate(writes.itertuples())
    ]
    result = hook.bulk_enroll(items)
    assert result.counts.get("failed", 0) == 0, [o for o in result.outcomes if o["outcome"] == "failed"][:3]
    state.record_created(
        {
            "enrollment_id": o["enrollment_id"],
            "user_id": o["user_id"],
            "course_id": o["course_id"],
            "run_id": run_id,
        }
        for o in result.outcomes
        if o["outcome"] == "created"
    )
    removals = ours.loc[ours["action"] == "unenroll", "enrollment_id"].tolist()
    if removals:
        removed = hook.bulk_unenroll(removals)
        assert removed.counts.get("unenrolled") == len(removals), removed.outcomes
        state.forget(removals)
    return result.counts


@pytest.mark.timeout(300)
def test_same_feed_twice_plans_nothing_and_a_move_removes_only_our_open_enrollment(
    absorb_connection, tmp_path
):
    from absorb_provider.hooks.absorb import AbsorbHook

    hook = AbsorbHook()
    today = datetime.now(UTC).date()
    state = SyncState(tmp_path / "state")
    rows = feed_rows_from_absorb(hook)
    feed_path = write_csv(tmp_path / "feed.csv", rows)

    first, people = plan_once(hook, feed_path, state, today)
    counts = first.summary()["counts"]
    assert counts["enroll"] > 0
    assert check_plan(first, reads_complete=True, feed_shrank=False, max_removal_pct=100).allowed
    applied = apply(hook, first, state, "run-1")
    assert applied.get("created", 0) == counts["enroll"] + counts["re_enroll"]
    state.record_accepted_feed(
        row_count=len(rows),
        active_count=int((people["status"] == "active").sum()),
        run_id="run-1",
        leavers=[],
    )

    second, _ = plan_once(hook, feed_path, state, today)
    sync_lines = second.lines[second.lines["handled_by"] == "sync"]
    assert sync_lines.empty, sync_lines.head().to_dict("records")
    leaver_lines = first.lines[first.lines["handled_by"] != "sync"]
    assert second.lines.reset_index(drop=True).equals(leaver_lines.reset_index(drop=True))

    # Someone in Sales moves to Marketing: their Sales Compliance enrollment (ours, open) goes.
    sales_course = resolve_courses(load_rules(RULES), hook.list_courses())["name:Sales Compliance"]
    ours_in_sales = first.lines[
        (first.lines["course_id"] == sales_course) & (first.lines["action"] == "enroll")
    ]
    assert not ours_in_sales.empty
    mover = ours_in_sales["employee_id"].iloc[0]
    moved = [{**r, "department": "Marketing"} if r["employee_id"] == mover else r for r in rows]
    third, _ = plan_once(hook, write_csv(tmp_path / "feed2.csv", moved), state, today)
    sync_lines = third.lines[third.lines["handled_by"] == "sync"]
    assert list(
        zip(sync_lines["action"], sync_lines["employee_id"], sync_lines["course_id"], strict=True)
    ) == [("unenroll", mover, sales_course)]
    apply(hook, third, state, "run-3")
    fourth, _ = plan_once(hook, tmp_path / "feed2.csv", state, today)
    assert fourth.lines[fourth.lines["handled_by"] == "sync"].empty
