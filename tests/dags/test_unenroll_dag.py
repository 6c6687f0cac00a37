"""absorb_bulk_unenrollment by hand: people by employee id / email / user id, course filters,
last leavers, dry run, the gate, and the real removal (dag.test against the sandbox)."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import write_rows
from dagtools import Answer, run_dag, run_dag_answering

UNENROLL = "absorb_bulk_unenrollment"
COMPLETE = 3


def active(hook, user_id: str) -> list[dict]:
    return [e for e in hook.list_user_enrollments(user_id) if e.get("isActive", True)]


@pytest.fixture(scope="module")
def cast(world):
    """Four people with open enrollments, and the enrollments the DAG should remove for each."""
    hook = world.hook()
    chosen = []
    for user in hook.list_users():
        if not user.get("externalId"):
            continue
        rows = active(hook, user["id"])
        if sum(e["status"] != COMPLETE for e in rows) >= 2 and any(e["status"] == COMPLETE for e in rows):
            chosen.append((user, rows))
        if len(chosen) == 4:
            break
    assert len(chosen) == 4, "the seed has too few people with open and completed enrollments"
    (a, a_rows), (b, b_rows), (c, c_rows), (d, d_rows) = chosen
    b_course = next(e for e in b_rows if e["status"] != COMPLETE)
    people = write_rows(
        world.root / "people.csv",
        ["person", "courses"],
        [
            {"person": a["externalId"], "courses": ""},
            {"person": b["emailAddress"].upper(), "courses": b_course["courseName"]},
            {"person": c["id"], "courses": ""},
            {"person": "E999999", "courses": ""},
        ],
    )
    world.state().record_accepted_feed(row_count=1, active_count=1, run_id="seed", leavers=[d["externalId"]])
    expected = {e["id"] for rows in (a_rows, c_rows, d_rows) for e in rows if e["status"] != COMPLETE}
    expected |= {e["id"] for e in b_rows if e["courseId"] == b_course["courseId"] and e["status"] != COMPLETE}
    users = {u["id"]: u for u, _ in chosen}
    return {"file": str(people), "expected": expected, "users": users}


def test_dry_run_resolves_every_kind_of_reference(world, cast):
    writes = world.writes()
    run = run_dag(
        UNENROLL, world.output, {"people_file": cast["file"], "use_last_leavers": True, "dry_run": True}
    )
    assert run.succeeded, run.tasks
    assert world.writes() == writes
    targets = pd.read_csv(run.folder / "targets.csv", dtype=str)
    assert set(targets["enrollment_id"]) == cast["expected"]
    summary = run.json("summary.json")
    assert summary["resolved"]["unresolved"] == ["E999999"] and summary["resolved"]["kept_completed"] > 0
    assert "Enrollments to remove" in run.text("report.html")


def test_gate_holds_more_than_max_count_and_a_rejection_writes_nothing(world, cast):
    writes = world.writes()
    answer = Answer("Reject", comment="too many, check the file")
    run = run_dag_answering(
        UNENROLL,
        world.output,
        {"people_file": cast["file"], "use_last_leavers": True, "max_count": 1},
        "approve",
        answer,
        on_waiting=world.writes,
    )
    assert answer.seen["on_waiting"] == writes
    assert run.state == "success" and run.tasks["gate"] == "success", run.tasks
    assert run.tasks["unenroll"] == "skipped" and run.tasks["verify_and_report"] == "skipped"
    assert world.writes() == writes
    assert "max_count 1" in run.json("decision.json")["reasons"][0]
    summary = run.json("summary.json")
    assert (
        summary["approval"]["decision"] == "rejected"
        and summary["approval"]["comment"] == "too many, check the file"
    )


def test_on_hold_fail_keeps_the_old_fail_at_the_gate(world, cast):
    writes = world.writes()
    run = run_dag(
        UNENROLL,
        world.output,
        {"people_file": cast["file"], "use_last_leavers": True, "max_count": 1, "on_hold": "fail"},
    )
    assert run.state == "failed" and run.tasks["approve"] == "failed", run.tasks
    assert run.tasks["unenroll"] == "upstream_failed" and world.writes() == writes


def test_unenrollment_removes_only_the_open_enrollments_asked_for(world, cast):
    hook = world.hook()
    before = {uid: {e["id"]: e for e in active(hook, uid)} for uid in cast["users"]}
    run = run_dag(UNENROLL, world.output, {"people_file": cast["file"], "use_last_leavers": True})
    assert run.succeeded, run.tasks
    for uid, rows in before.items():
        remaining = {e["id"] for e in active(hook, uid)}
        assert remaining == set(rows) - cast["expected"]
        assert {i for i, e in rows.items() if e["status"] == COMPLETE} <= remaining  # history kept
    assert run.json("summary.json")["outcomes"] == {"unenrolled": len(cast["expected"])}
