"""absorb_hr_enrollment_sync and absorb_bulk_unenrollment end to end (dag.test against the sandbox).

One sandbox for the module; the tests run in order and each builds on the state the previous
one left: dry run -> first sync -> idempotent re-run -> hires/movers/leavers -> leavers'
unenrollment (twice) -> a mass-termination feed refused, then overridden.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from absorb_sync.jobs.runtime import DEFAULT_RULES_PATH
from conftest import read_rows, write_rows
from dagtools import Answer, all_enrollments, run_dag, run_dag_answering

SYNC = "absorb_hr_enrollment_sync"
UNENROLL = "absorb_bulk_unenrollment"
COMPLETE = 3
pytestmark = pytest.mark.timeout(900)


def active_pairs(rows) -> dict[tuple[str, str], dict]:
    return {(r["userId"], r["courseId"]): r for r in rows if r.get("isActive", True)}


def desired_pairs(feed_path, hook, today: date) -> set[tuple[str, str]]:
    """What the rules want for the feed's people who exist in Absorb, as (user id, course id)."""
    from absorb_sync.feed import load_mapping, read_feed
    from absorb_sync.rules import evaluate_rules, load_rules, resolve_courses

    people = read_feed(feed_path, load_mapping(None)).frame
    ruleset = load_rules(DEFAULT_RULES_PATH)
    desired = evaluate_rules(people, ruleset, resolve_courses(ruleset, hook.list_courses()), today)
    users = {u["externalId"]: u["id"] for u in hook.list_users() if u.get("externalId")}
    return {
        (users[e], c) for e, c in zip(desired["employee_id"], desired["course_id"], strict=True) if e in users
    }


@pytest.fixture(scope="module")
def baseline(world):
    return world.feed("baseline.csv")[0]


def test_dry_run_plans_and_writes_nothing(world, baseline):
    writes = world.writes()
    run = run_dag(SYNC, world.output, {"feed_path": str(baseline), "dry_run": True})
    assert run.succeeded, run.tasks
    assert world.writes() == writes
    summary = run.json("summary.json")
    assert summary["dry_run"] is True and summary["plan"]["enroll"] > 0
    assert run.tasks["trigger_unenrollment"] == "skipped"
    assert len(pd.read_csv(run.folder / "plan.csv")) == summary["plan"]["total_lines"]
    assert "dry run" in run.text("report.html")
    assert world.state().last_accepted_feed() is None  # a dry run never moves the baseline


def test_first_sync_enrolls_exactly_what_the_rules_want(world, baseline):
    hook = world.hook()
    before = {r["id"] for r in all_enrollments(hook)}
    run = run_dag(SYNC, world.output, {"feed_path": str(baseline), "initial_load": True})
    assert run.succeeded, run.tasks
    after = all_enrollments(hook)
    held = active_pairs(after)
    wanted = desired_pairs(baseline, hook, date.today())
    assert wanted and wanted <= set(held), f"missing: {sorted(wanted - set(held))[:5]}"
    gained = {
        (r["userId"], r["courseId"]) for r in after if r["id"] not in before and r.get("isActive", True)
    }
    assert gained, "the first sync created nothing"
    assert gained <= wanted, f"unwanted enrollments: {sorted(gained - wanted)[:5]}"
    summary = run.json("summary.json")
    assert summary["verification_mismatches"] == 0 and summary["outcomes"].get("failed", 0) == 0
    created = {r["id"] for r in after if r["id"] not in before}
    assert created <= world.state().provenance_ids()
    assert world.state().last_accepted_feed()["row_count"] == len(read_rows(baseline)[1])


def test_second_run_on_the_same_feed_makes_zero_writes(world, baseline):
    writes = world.writes()
    run = run_dag(SYNC, world.output, {"feed_path": str(baseline)})
    assert run.succeeded, run.tasks
    assert world.writes() == writes
    plan = run.json("summary.json")["plan"]
    assert plan["enroll"] == plan["re_enroll"] == plan["update_due_date"] == plan["unenroll_by_sync"] == 0


WORKDAY = {
    "employee_id": "Worker_ID",
    "first_name": "Legal_First_Name",
    "last_name": "Legal_Last_Name",
    "email": "Work_Email",
    "department": "Supervisory_Organization",
    "job_title": "Business_Title",
    "location": "Location",
    "manager_id": "Manager_ID",
    "hire_date": "Hire_Date",
    "termination_date": "Termination_Date",
    "status": "Worker_Status",
}


def test_the_same_people_as_a_workday_report_change_nothing(world, baseline):
    """Column mapping end to end: Workday headers, `;` delimiter, Workday status words."""
    _, rows = read_rows(baseline)
    words = {"active": "Active", "leave": "On Leave", "terminated": "Terminated"}
    report = [{WORKDAY[k]: (words[v] if k == "status" else v) for k, v in row.items()} for row in rows]
    target = write_rows(world.root / "feeds" / "workday.csv", list(WORKDAY.values()), report)
    target.write_text(target.read_text().replace(",", ";"))
    writes = world.writes()
    run = run_dag(
        SYNC, world.output, {"feed_path": str(target), "column_mapping": "workday", "dry_run": True}
    )
    assert run.succeeded, run.tasks
    assert world.writes() == writes
    assert run.json("feed_gate.json")["accepted"] == len(rows)
    plan = run.json("summary.json")["plan"]
    assert plan["enroll"] == plan["re_enroll"] == plan["update_due_date"] == plan["unenroll_by_sync"] == 0


@pytest.fixture(scope="module")
def changes(world):
    return world.feed("changes.csv", changes=12, seed=3)


def test_hires_movers_and_leavers(world, changes):
    feed, kinds = changes
    hook = world.hook()
    run = run_dag(SYNC, world.output, {"feed_path": str(feed)})
    assert run.succeeded, run.tasks
    held = active_pairs(all_enrollments(hook))
    wanted = desired_pairs(feed, hook, date.today())
    assert wanted <= set(held)
    summary = run.json("summary.json")
    leavers = set(_ids(kinds, "leavers"))
    assert leavers and leavers <= set(summary["leavers_handed_over"])
    assert run.tasks["trigger_unenrollment"] == "success"
    triggered = _triggered_run(f"leavers__{run.run_id}")
    assert triggered.conf["people"] == summary["leavers_handed_over"] and triggered.state == "queued"


def _triggered_run(run_id: str):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.query(DagRun).filter(DagRun.dag_id == UNENROLL, DagRun.run_id == run_id).one()
        session.expunge(found)
        return found


def _ids(kinds: dict, kind: str) -> list[str]:
    value = kinds.get(kind) or kinds.get(kind.rstrip("s")) or []
    return [v if isinstance(v, str) else v["employee_id"] for v in value]


def test_leavers_lose_only_incomplete_enrollments(world, changes):
    _, kinds = changes
    hook = world.hook()
    leavers = _ids(kinds, "leavers")
    users = {u["externalId"]: u["id"] for u in hook.list_users() if u.get("externalId") in leavers}
    before = {
        uid: [e for e in hook.list_user_enrollments(uid) if e.get("isActive", True)] for uid in users.values()
    }
    assert any(e["status"] != COMPLETE for rows in before.values() for e in rows), (
        "no open enrollment to remove"
    )
    run = run_dag(UNENROLL, world.output, {"people": leavers, "reason": "leavers"})
    assert run.succeeded, run.tasks
    for uid, rows in before.items():
        remaining = {e["id"] for e in hook.list_user_enrollments(uid) if e.get("isActive", True)}
        assert remaining == {e["id"] for e in rows if e["status"] == COMPLETE}
    assert run.json("summary.json")["outcomes"]["unenrolled"] == sum(
        e["status"] != COMPLETE for rows in before.values() for e in rows
    )
    writes = world.writes()
    again = run_dag(UNENROLL, world.output, {"people": leavers})
    assert again.succeeded and world.writes() == writes
    assert again.json("summary.json")["resolved"]["targets"] == 0


def test_a_mass_termination_is_refused_then_applied_with_an_override(world, changes):
    feed, _ = changes
    header, rows = read_rows(feed)
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    active = [r for r in rows if r["status"] == "active" and r["hire_date"] <= yesterday]
    for row in active[: len(active) // 4]:
        row.update(status="terminated", termination_date=yesterday)
    mass = write_rows(world.root / "feeds" / "mass_termination.csv", header, rows)
    writes = world.writes()
    answer = Answer("Reject", comment="not before the works council signs, HR-1234")
    refused = run_dag_answering(
        SYNC, world.output, {"feed_path": str(mass)}, "approve_plan", answer, on_waiting=world.writes
    )
    assert answer.seen["on_waiting"] == writes  # held: nothing written while it waited
    assert refused.state == "success", refused.tasks  # a person rejected it: a clean end
    assert refused.tasks["gate_plan"] == "success" and refused.tasks["apply_plan"] == "skipped"
    assert world.writes() == writes
    decision = refused.json("plan_decision.json")
    assert not decision["allowed"] and any("max_removal_pct" in r for r in decision["reasons"])
    assert "max_removal_pct" in answer.seen["body"]
    assert refused.json("summary.json")["approval"]["decision"] == "rejected"

    reason = "reorganisation approved in ticket HR-1234"
    applied = run_dag(
        SYNC, world.output, {"feed_path": str(mass), "override_thresholds": True, "override_reason": reason}
    )
    assert applied.succeeded, applied.tasks
    gate = applied.json("summary.json")["plan_gate"]
    assert gate["overridden"] and gate["override_reason"] == reason
    assert applied.tasks["approve_plan"] == "skipped"  # an override never waits
    assert reason in applied.text("report.html")


def test_missing_people_are_created_when_asked(world, changes):
    feed, kinds = changes
    newcomers = _ids(kinds, "new_people")
    assert newcomers, kinds
    hook = world.hook()
    assert not [u for u in hook.list_users() if u.get("externalId") in newcomers]
    reason = "re-run of the last feed to create the missing people"
    run = run_dag(
        SYNC,
        world.output,
        {
            "feed_path": str(feed),
            "create_missing_users": True,
            "override_thresholds": True,
            "override_reason": reason,
        },
    )
    assert run.succeeded, run.tasks
    created = {u["externalId"]: u for u in hook.list_users() if u.get("externalId") in newcomers}
    assert set(created) == set(newcomers)
    _, rows = read_rows(feed)
    emails = {r["employee_id"]: r["email"] for r in rows}
    assert all(created[e]["username"] == emails[e] for e in newcomers)


def test_export_takes_people_attributes_from_the_last_accepted_feed(world, changes):
    """After the syncs, the export labels enrollments with the HR feed's department (movers too)."""
    feed, kinds = changes
    _, rows = read_rows(feed)
    department = {r["employee_id"]: r["department"] for r in rows}
    hook = world.hook()
    movers = set(_ids(kinds, "movers"))
    mover_users = {u["id"] for u in hook.list_users() if u.get("externalId") in movers}
    course_id = next(
        e["courseId"]
        for uid in sorted(mover_users)
        for e in hook.list_user_enrollments(uid)
        if e.get("isActive", True)
    )
    run = run_dag("absorb_completion_export", world.output, {"full_export": True, "course_ids": [course_id]})
    assert run.succeeded, run.tasks
    exported = pd.read_parquet(run.folder / "export.parquet")
    assert set(exported["course_id"]) == {course_id}
    assert len(exported) == len(list(hook.list_course_enrollments(course_id)))
    in_feed = exported[exported["employee_id"].isin(department)]
    wrong = in_feed[in_feed["employee_id"].map(department) != in_feed["department"]]
    assert len(in_feed) and wrong.empty, wrong[["employee_id", "department"]].head()
    assert movers & set(in_feed["employee_id"])
