"""Nothing is removed that should stay (issue 8, items 1, 2 and 6): dag.test against live sandboxes.

The module's tests run in order on one sandbox (the "portal") plus a second, identically seeded
sandbox (another portal behind another connection): a first apply is held without
``initial_load``; a leavers hand-over is refused against another portal, when stale, or for people
rehired since; a people list that matches nobody and broken rules stop before any write.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from conftest import read_rows, write_rows
from dagtools import Answer, dagbag, run_dag, run_dag_answering

SYNC = "absorb_hr_enrollment_sync"
UNENROLL = "absorb_bulk_unenrollment"
COMPLETE = 3
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def other_portal(world, tmp_path_factory):
    """A second portal with the same people (same seed), reachable as connection ``absorb_other``."""
    from absorb_sandbox.testing import SandboxServer

    server = SandboxServer(db_path=tmp_path_factory.mktemp("other") / "absorb.db", seed="small").start()
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_CONN_ABSORB_OTHER", server.airflow_connection_json())
    yield server
    patch.undo()
    server.stop()


@pytest.fixture(scope="module")
def baseline(world):
    return world.feed("baseline.csv")[0]


@pytest.fixture(scope="module")
def changes(world):
    return world.feed("changes.csv", changes=12, seed=3)


@pytest.fixture(scope="module")
def handover(world, baseline, changes):
    """The first load, then a day with leavers: the hand-over conf the sync queued."""
    first = run_dag(SYNC, world.output, {"feed_path": str(baseline), "initial_load": True})
    assert first.succeeded, first.tasks
    run = run_dag(SYNC, world.output, {"feed_path": str(changes[0])})
    assert run.succeeded, run.tasks
    summary = run.json("summary.json")
    assert summary["leavers_handed_over"]
    return {
        "people": summary["leavers_handed_over"],
        "reason": f"leavers from {run.run_id}",
        "handover": summary.get("handover"),
    }


def open_enrollments(hook, employee_ids) -> dict[str, set[str]]:
    users = {u["externalId"]: u["id"] for u in hook.list_users() if u.get("externalId") in set(employee_ids)}
    return {
        employee: {
            e["id"]
            for e in hook.list_user_enrollments(user_id)
            if e.get("isActive", True) and e["status"] != COMPLETE
        }
        for employee, user_id in users.items()
    }


# ----------------------------------------------------------------------- item 2: first apply


def test_a_first_apply_without_initial_load_plans_reports_and_writes_nothing(world, baseline):
    writes = world.writes()
    answer = Answer("Reject", comment="look at the plan first")
    run = run_dag_answering(
        SYNC, world.output, {"feed_path": str(baseline)}, "approve_plan", answer, on_waiting=world.writes
    )
    assert answer.seen["on_waiting"] == writes  # it waited for a person with nothing written
    assert run.tasks["gate_plan"] == "success" and run.tasks["approve_plan"] == "success", run.tasks
    assert run.tasks["apply_plan"] == "skipped"
    assert world.writes() == writes
    decision = run.json("plan_decision.json")
    assert decision["first_apply"] and not decision["allowed"]
    assert decision["plan"]["enroll"] > 0  # it planned
    report = run.text("report.html")
    assert "held" in report and "initial_load" in report and "first apply against portal" in report
    assert world.state().last_accepted_feed() is None


def test_a_threshold_override_does_not_stand_in_for_initial_load(world, baseline):
    writes = world.writes()
    run = run_dag(
        SYNC,
        world.output,
        {
            "feed_path": str(baseline),
            "override_thresholds": True,
            "override_reason": "ticket HR-1",
            "on_hold": "fail",  # still held (only a person or initial_load lifts it): fail, don't wait
        },
    )
    assert run.state == "failed" and run.tasks["approve_plan"] == "failed", run.tasks
    assert run.tasks["apply_plan"] == "upstream_failed"
    assert world.writes() == writes
    assert run.json("plan_decision.json")["held"] is True


# ----------------------------------------------------------------------- item 1: hand-overs


def test_the_hand_over_names_its_sync_run_feed_and_portal(world, handover):
    detail = handover["handover"]
    portal = world.state().portal
    assert detail["portal"] == {"base_url": portal["base_url"], "api_user": portal["api_user"]}
    assert len(detail["feed_sha256"]) == 64 and detail["sync_run_id"] in handover["reason"]
    assert "password" not in str(detail).lower() and world.server.password not in str(detail)


def test_a_hand_over_against_another_portal_is_refused_whole(world, handover, other_portal):
    assert open_enrollments(world.hook(), handover["people"])  # the same people exist there too
    writes = other_portal.stats()["write_calls"]
    run = run_dag(UNENROLL, world.output, {**handover, "absorb_conn_id": "absorb_other"})
    assert run.state == "failed" and run.tasks["resolve_targets"] == "failed", run.tasks
    assert other_portal.stats()["write_calls"] == writes


def test_a_stale_hand_over_is_refused_whole(world, handover):
    old = (datetime.now(UTC) - timedelta(days=4)).isoformat(timespec="seconds")
    writes = world.writes()
    run = run_dag(
        UNENROLL, world.output, {**handover, "handover": {**handover["handover"], "computed_at": old}}
    )
    assert run.state == "failed" and run.tasks["resolve_targets"] == "failed", run.tasks
    assert world.writes() == writes
    younger = run_dag(
        UNENROLL,
        world.output,
        {
            **handover,
            "handover": {**handover["handover"], "computed_at": old},
            "max_handover_age_hours": 200,
            "dry_run": True,
        },
    )
    assert younger.succeeded, younger.tasks  # the age limit is the Param's
    assert younger.json("summary.json")["resolved"]["targets"] > 0 and world.writes() == writes


def test_a_leaver_rehired_before_the_hand_over_runs_keeps_everything(world, handover, changes):
    feed, _ = changes
    hook = world.hook()
    before = open_enrollments(hook, handover["people"])
    # a leaver still active in Absorb: enrolling a deactivated user is refused until it is reactivated
    active = {u["externalId"] for u in hook.list_users(filter="activeStatus eq 0")}
    rehired = next(p for p in handover["people"] if before.get(p) and p in active)
    others = [p for p in handover["people"] if p != rehired and before.get(p)]
    header, rows = read_rows(feed)
    for row in rows:
        if row["employee_id"] == rehired:
            row.update(status="active", termination_date="")
    corrected = write_rows(world.root / "feeds" / "rehired.csv", header, rows)
    sync = run_dag(SYNC, world.output, {"feed_path": str(corrected)})
    assert sync.succeeded, sync.tasks

    run = run_dag(UNENROLL, world.output, handover)  # the hand-over queued before the correction
    assert run.succeeded, run.tasks
    after = open_enrollments(hook, handover["people"])
    # kept every open enrollment (the sync may add one, e.g. a recurring course due again today)
    assert before[rehired] <= after[rehired], "a rehired person lost enrollments"
    assert others and all(not after[p] for p in others)
    skipped = pd.read_csv(run.folder / "skipped.csv", dtype=str)
    assert skipped["person"].tolist() == [rehired]
    assert "active in the latest accepted HR feed" in skipped["reason"][0]
    assert run.json("summary.json")["resolved"]["skipped_count"] == 1
    assert "Skipped people" in run.text("report.html")

    writes = world.writes()
    again = run_dag(UNENROLL, world.output, handover)
    assert again.succeeded and world.writes() == writes


def test_the_unenrollment_runs_one_at_a_time():
    assert dagbag().dags[UNENROLL].max_active_runs == 1


def test_a_people_list_that_matches_almost_nobody_is_refused(world, handover):
    people = ["E990001", "E990002", "E990003", handover["people"][0]]
    writes = world.writes()
    run = run_dag(UNENROLL, world.output, {"people": people, "on_hold": "fail"})
    assert run.state == "failed" and run.tasks["approve"] == "failed", run.tasks
    assert run.tasks["unenroll"] == "upstream_failed"
    assert world.writes() == writes
    reason = run.json("decision.json")["reasons"][0]
    assert "3 of 4 people match no Absorb user" in reason and "E990001" in reason


# ----------------------------------------------------------------------- item 6: inputs first


def test_a_malformed_rules_file_stops_the_run_before_any_user_is_created(world, changes):
    feed, _ = changes
    rules = world.root / "broken_rules.yaml"
    rules.write_text("rules:\n  - name: x\n    courses: [\n")
    writes = world.writes()
    run = run_dag(
        SYNC,
        world.output,
        {"feed_path": str(feed), "rules_path": str(rules), "create_missing_users": True},
    )
    assert run.state == "failed" and run.tasks["extract_feed"] == "failed", run.tasks
    assert world.writes() == writes


def test_rules_naming_a_missing_course_stop_before_any_user_is_created(world, changes):
    feed, _ = changes
    rules = world.root / "unknown_course_rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: ghost\n    courses:\n      - name: No Such Course Anywhere\n"
    )
    writes = world.writes()
    run = run_dag(
        SYNC,
        world.output,
        {"feed_path": str(feed), "rules_path": str(rules), "create_missing_users": True},
    )
    assert run.state == "failed", run.tasks
    assert run.tasks["resolve_people"] == "failed" or run.tasks["extract_feed"] == "failed", run.tasks
    assert world.writes() == writes


def test_an_enrollment_another_run_removed_first_counts_as_done(world, handover, tmp_path):
    """Two unenrollments resolved the same targets; the second finds them gone: done, not failed."""
    from absorb_sync.jobs import unenroll
    from absorb_sync.jobs.runtime import storage_path

    hook, folder = world.hook(), storage_path(tmp_path / "race")
    folder.mkdir(parents=True, exist_ok=True)
    person = next(p for p, ids in open_enrollments(hook, world_people(hook)).items() if ids)
    resolved = unenroll.resolve_targets(
        folder=folder, hook=hook, requests=[{"person": person, "courses": []}], include_completed=False
    )
    targets = pd.read_csv(tmp_path / "race" / "targets.csv", dtype=str)["enrollment_id"].tolist()
    assert resolved["targets"] == len(targets) > 0
    assert hook.bulk_unenroll(targets).counts.get("unenrolled") == len(targets)  # the other run

    applied = unenroll.unenroll_targets(folder=folder, hook=hook, state=world.state(), dry_run=False)
    assert applied["failed"] == 0 and applied["counts"] == {"already_gone": len(targets)}
    summary = unenroll.verify_and_report(
        folder=folder, hook=hook, run_id="race", dry_run=False, summaries={"unenroll": applied}
    )
    assert summary["still_enrolled"] == 0


def world_people(hook) -> list[str]:
    return [u["externalId"] for u in hook.list_users() if u.get("externalId")][:40]


def test_an_unreadable_people_list_fails_at_once_and_is_not_retried(world):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    writes = world.writes()
    run = run_dag(UNENROLL, world.output, {"people": ["E000001", {"courses": ["Code of Conduct"]}]})
    assert run.state == "failed" and run.tasks["resolve_targets"] == "failed", run.tasks
    assert world.writes() == writes
    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id=UNENROLL, run_id=run.run_id, task_id="resolve_targets")
            .one()
        )
        assert ti.try_number == 1, "a deterministic input error must not be retried"
