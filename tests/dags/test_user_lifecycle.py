"""The HR lifecycle of Absorb users through absorb_hr_enrollment_sync (dag.test against the sandbox).

One sandbox for the module; the tests run in order, each on what the previous one left:
first load -> hire, mover (every managed field) and an unknown department in one run -> the same
feed again writes nothing -> leavers wait for the hand-over, a mass deactivation is held, the
rest are deactivated, a protected leaver never is -> a rehire comes back with their history.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from absorb_sync.jobs.runtime import DEFAULT_RULES_PATH
from conftest import read_rows, write_rows
from dagtools import Answer, run_dag, run_dag_answering

SYNC = "absorb_hr_enrollment_sync"
UNENROLL = "absorb_bulk_unenrollment"
COMPLETE = 3
YESTERDAY = (date.today() - timedelta(days=1)).isoformat()
pytestmark = pytest.mark.timeout(1200)


def users_by_employee(hook) -> dict[str, dict]:
    return {u["externalId"]: u for u in hook.list_users() if u.get("externalId")}


def department_ids(hook) -> dict[str, str]:
    return {d["name"]: d["id"] for d in hook.list_departments()}


def active_enrollments(hook, user_id: str) -> list[dict]:
    return [e for e in hook.list_user_enrollments(user_id) if e.get("isActive", True)]


def course_id(hook, name: str) -> str:
    return next(c["id"] for c in hook.list_courses() if c["name"] == name)


def user_lines(run) -> list[dict]:
    return pd.read_csv(run.folder / "user_plan.csv", dtype=str).to_dict("records")


def user_notes(run) -> list[dict]:
    return pd.read_csv(run.folder / "user_notes.csv", dtype=str).to_dict("records")


@pytest.fixture(scope="module")
def lifecycle(world):
    """The baseline feed, a rules file protecting one user, and the people the scenario moves."""
    feed, _ = world.feed("baseline.csv")
    header, rows = read_rows(feed)
    hook = world.hook()
    users = users_by_employee(hook)
    sales = course_id(hook, "Sales Compliance")
    settled = [
        r
        for r in rows
        if r["status"] == "active" and r["hire_date"] <= YESTERDAY and r["employee_id"] in users
    ]
    history = {}
    for row in settled:
        enrollments = active_enrollments(hook, users[row["employee_id"]]["id"])
        done = any(e["status"] == COMPLETE for e in enrollments)
        still_open = any(e["status"] != COMPLETE for e in enrollments)
        history[row["employee_id"]] = done and still_open
    with_history = [r["employee_id"] for r in settled if history[r["employee_id"]]]
    mover = next(
        r
        for r in settled
        if r["department"] == "Sales" and r["location"] not in ("London", "Berlin") and r["manager_id"]
    )
    manager = next(r for r in settled if r["employee_id"] not in (mover["employee_id"], mover["manager_id"]))
    leavers = [e for e in with_history if e not in (mover["employee_id"], manager["employee_id"])][:4]
    lost = next(
        r for r in settled if r["employee_id"] not in {mover["employee_id"], manager["employee_id"], *leavers}
    )
    rules = yaml.safe_load(Path(DEFAULT_RULES_PATH).read_text())
    protected = leavers[-1]
    rules["users"]["protected_users"] = [users[protected]["username"]]
    rules_path = world.root / "rules_protecting_one.yaml"
    rules_path.write_text(yaml.safe_dump(rules))
    return {
        "feed": feed,
        "header": header,
        "rows": rows,
        "mover": mover["employee_id"],
        "manager": manager["employee_id"],
        "lost": lost["employee_id"],
        "leavers": leavers[:3],
        "protected": protected,
        "rules": str(rules_path),
        "sales_course": sales,
    }


def sync(world, lifecycle, feed, **conf):
    return run_dag(SYNC, world.output, {"feed_path": str(feed), "rules_path": lifecycle["rules"], **conf})


def feed_with(world, lifecycle, name: str, changes: dict[str, dict], extra: list[dict] = ()) -> Path:
    rows = [{**r, **changes.get(r["employee_id"], {})} for r in lifecycle["rows"]]
    return write_rows(world.root / "feeds" / name, lifecycle["header"], [*rows, *extra])


def test_first_load_and_a_rerun_change_no_user(world, lifecycle):
    first = sync(world, lifecycle, lifecycle["feed"], initial_load=True)
    assert first.succeeded, first.tasks
    assert not user_lines(first)  # the baseline is what Absorb has: nothing to update
    writes = world.writes()
    again = sync(world, lifecycle, lifecycle["feed"])
    assert again.succeeded, again.tasks
    assert world.writes() == writes
    assert again.json("summary.json")["users"]["total_lines"] == 0


def hire_row(lifecycle) -> dict:
    row = dict(lifecycle["rows"][0])
    row.update(
        employee_id="H900001",
        first_name="Noor",
        last_name="Haddad",
        email="noor.haddad@example.com",
        department="Operations",
        job_title="Operations Analyst",
        location="Dublin",
        manager_id=lifecycle["manager"],
        hire_date=YESTERDAY,
        termination_date="",
        status="active",
    )
    return row


MOVE = {
    "department": "Operations",
    "job_title": "Operations Lead",
    "location": "Berlin",
    "first_name": "Mina",
    "last_name": "Moved",
    "email": "mina.moved@example.com",
}


def movers_feed(world, lifecycle) -> Path:
    changes = {
        lifecycle["mover"]: {**MOVE, "manager_id": lifecycle["manager"]},
        lifecycle["lost"]: {"department": "Narnia", "job_title": "Wardrobe Keeper"},
    }
    return feed_with(world, lifecycle, "movers.csv", changes, [hire_row(lifecycle)])


def test_a_hire_is_created_and_a_mover_updated_before_their_enrollments(world, lifecycle):
    hook = world.hook()
    before = users_by_employee(hook)
    departments_before = department_ids(hook)
    feed = movers_feed(world, lifecycle)
    run = sync(world, lifecycle, feed, create_missing_users=True)
    assert run.succeeded, run.tasks
    after = users_by_employee(hook)
    departments = department_ids(hook)
    safety = course_id(hook, "Workplace Safety")

    hire = after["H900001"]  # created, with its fields, and enrolled in the same run
    assert (hire["firstName"], hire["departmentId"], hire["jobTitle"]) == (
        "Noor",
        departments["Operations"],
        "Operations Analyst",
    )
    assert hire["supervisorId"] == before[lifecycle["manager"]]["id"]
    assert safety in {e["courseId"] for e in active_enrollments(hook, hire["id"])}

    mover = after[lifecycle["mover"]]  # every managed field, never the username
    old = before[lifecycle["mover"]]
    assert mover["id"] == old["id"] and mover["username"] == old["username"]
    assert mover["departmentId"] == departments["Operations"]
    assert (mover["jobTitle"], mover["location"]) == (MOVE["job_title"], MOVE["location"])
    assert (mover["firstName"], mover["lastName"], mover["emailAddress"]) == (
        MOVE["first_name"],
        MOVE["last_name"],
        MOVE["email"],
    )
    assert mover["supervisorId"] == before[lifecycle["manager"]]["id"]
    courses = {e["courseId"] for e in active_enrollments(hook, mover["id"])}
    assert safety in courses  # the Operations rule, in the same run as the update
    assert course_id(hook, "Data Privacy (GDPR)") in courses  # Berlin

    lost = after[lifecycle["lost"]]  # unknown department: quarantined, nothing written, nothing created
    assert lost == before[lifecycle["lost"]]
    assert departments == departments_before
    [note] = [n for n in user_notes(run) if n["employee_id"] == lifecycle["lost"]]
    assert note["note"] == "quarantined" and "'Narnia'" in note["detail"]

    actions = {(line["action"], line["employee_id"]) for line in user_lines(run)}
    assert actions == {("create_user", "H900001"), ("update_user", lifecycle["mover"])}
    report = run.text("report.html")
    assert "Noor Haddad" in report and "Mina Moved" in report and "Narnia" in report
    assert run.json("summary.json")["users"]["outcomes"] == {"created": 1, "updated": 1}
    journal_files = (world.state().location / "journal").glob("*.jsonl")
    journal = [json.loads(line) for path in journal_files for line in path.read_text().splitlines()]
    written = {(r["type"], r["action"]) for r in journal if str(r.get("key", "")).startswith("user:")}
    assert {("intent", "create_user"), ("outcome", "create_user")} <= written  # intent before, outcome after
    assert {("intent", "update_user"), ("outcome", "update_user")} <= written
    provenance = world.state().user_provenance()
    assert provenance[hire["id"]]["created_by_sync"] and provenance[mover["id"]]["action"] == "update_user"


def test_the_same_feed_again_changes_no_user(world, lifecycle):
    writes = world.writes()
    run = sync(world, lifecycle, movers_feed(world, lifecycle), create_missing_users=True)
    assert run.succeeded, run.tasks
    assert world.writes() == writes
    assert not user_lines(run)


def leavers_feed(world, lifecycle) -> Path:
    gone = {"status": "terminated", "termination_date": YESTERDAY}
    changes = {e: gone for e in [*lifecycle["leavers"], lifecycle["protected"]]}
    changes[lifecycle["mover"]] = {**MOVE, "manager_id": lifecycle["manager"]}
    changes[lifecycle["lost"]] = {"department": "Narnia", "job_title": "Wardrobe Keeper"}
    return feed_with(world, lifecycle, "leavers.csv", changes, [hire_row(lifecycle)])


def test_leavers_wait_for_the_hand_over_then_a_mass_deactivation_is_held(world, lifecycle):
    hook = world.hook()
    leavers = [*lifecycle["leavers"], lifecycle["protected"]]
    feed = leavers_feed(world, lifecycle)
    first = sync(world, lifecycle, feed, max_removal_pct=100)
    assert first.succeeded, first.tasks
    assert not [line for line in user_lines(first) if line["action"] == "deactivate_user"]
    waiting = {n["employee_id"] for n in user_notes(first) if n["note"] == "waiting_handover"}
    assert set(lifecycle["leavers"]) <= waiting  # open enrollments left: not deactivated yet
    assert set(leavers) <= set(first.json("summary.json")["leavers_handed_over"])
    handover = run_dag(UNENROLL, world.output, {"people": leavers, "reason": "leavers"})
    assert handover.succeeded, handover.tasks

    writes = world.writes()  # 3 of the active users is over a 1% limit: held, nothing written
    answer = Answer("Reject", comment="not before HR confirms, HR-77")
    held = run_dag_answering(
        SYNC,
        world.output,
        {"feed_path": str(feed), "rules_path": lifecycle["rules"], "max_deactivation_pct": 1},
        "approve_plan",
        answer,
        on_waiting=world.writes,
    )
    assert held.succeeded and held.tasks["apply_plan"] == "skipped", held.tasks
    assert world.writes() == writes
    reasons = held.json("plan_decision.json")["reasons"]
    assert any("3 user deactivations" in r and "max_deactivation_pct 1%" in r for r in reasons), reasons
    assert "max_deactivation_pct" in answer.seen["body"]
    users = users_by_employee(hook)
    assert all(users[e]["activeStatus"] == 0 for e in leavers)


def test_leavers_are_deactivated_with_history_kept_and_a_protected_one_never(world, lifecycle):
    hook = world.hook()
    before = users_by_employee(hook)
    completed = {
        e: {x["id"] for x in active_enrollments(hook, before[e]["id"]) if x["status"] == COMPLETE}
        for e in lifecycle["leavers"]
    }
    run = sync(world, lifecycle, leavers_feed(world, lifecycle))
    assert run.succeeded, run.tasks
    users = users_by_employee(hook)
    assert all(users[e]["activeStatus"] == 1 for e in lifecycle["leavers"])
    for employee, ids in completed.items():  # deactivated, not deleted: the history stays
        assert ids and ids <= {x["id"] for x in active_enrollments(hook, users[employee]["id"])}
    assert users[lifecycle["protected"]]["activeStatus"] == 0
    notes = {n["employee_id"]: n["note"] for n in user_notes(run)}
    assert notes[lifecycle["protected"]] == "protected"
    assert run.json("summary.json")["users"]["outcomes"] == {"deactivated": 3}
    writes = world.writes()
    again = sync(world, lifecycle, leavers_feed(world, lifecycle))
    assert again.succeeded and world.writes() == writes


def test_a_rehire_gets_the_same_account_back_with_their_history(world, lifecycle):
    hook = world.hook()
    rehired = lifecycle["leavers"][0]
    before = users_by_employee(hook)[rehired]
    history = {x["id"] for x in active_enrollments(hook, before["id"]) if x["status"] == COMPLETE}
    feed = leavers_feed(world, lifecycle)
    header, rows = read_rows(feed)
    for row in rows:
        if row["employee_id"] == rehired:
            row.update(status="active", termination_date="")
    back = write_rows(world.root / "feeds" / "rehire.csv", header, rows)
    run = sync(world, lifecycle, back, create_missing_users=True)
    assert run.succeeded, run.tasks
    accounts = [u for u in hook.list_users() if u.get("externalId") == rehired]
    assert [u["id"] for u in accounts] == [before["id"]] and accounts[0]["activeStatus"] == 0
    assert history <= {x["id"] for x in active_enrollments(hook, before["id"])}
    assert [(line["action"], line["employee_id"]) for line in user_lines(run)] == [
        ("reactivate_user", rehired)
    ]
    writes = world.writes()
    again = sync(world, lifecycle, back, create_missing_users=True)
    assert again.succeeded and world.writes() == writes
