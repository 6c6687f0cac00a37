"""The three project DAGs on the Celery cluster, triggered and inspected through the REST API only,
with the sandbox's state and request counters as the judge.

The tests share one sandbox and run in order, each building on the state the previous one left:
first sync -> hires/movers/leavers handed to the unenrollment DAG -> a mass termination held at
the plan gate, rejected, then approved through the HITL REST API (and its hand-over approved at the
unenrollment's own gate) -> a full completion export into PostgreSQL.
"""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SYNC = "absorb_hr_enrollment_sync"
UNENROLL = "absorb_bulk_unenrollment"
EXPORT = "absorb_completion_export"
COMPLETE = 3


@pytest.fixture(scope="module")
def api(airflow_api):
    airflow_api.wait_for_dags({SYNC, UNENROLL, EXPORT})
    for dag_id in (SYNC, UNENROLL, EXPORT):
        airflow_api.set_paused(dag_id, False)
    yield airflow_api
    # every run here was triggered by a test: a scheduled one would have used default Params
    for dag_id in (SYNC, EXPORT):
        assert not airflow_api.runs(dag_id, run_type=["scheduled"]), f"{dag_id} ran on its timetable"
    for dag_id in (SYNC, UNENROLL, EXPORT):
        airflow_api.set_paused(dag_id, True)


@pytest.fixture(scope="module")
def hook(e2e_sandbox):
    """A hook on the e2e sandbox for reading its state back (used only between runs)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_CONN_ABSORB_DEFAULT", e2e_sandbox.airflow_connection_json())
    from absorb_provider.hooks.absorb import AbsorbHook

    yield AbsorbHook()
    patch.undo()


def run_folder(e2e_workdir: Path, dag_id: str, run_id: str) -> Path:
    from absorb_sync.jobs.runtime import run_key

    return e2e_workdir / "output" / dag_id / run_key(run_id)


def summary_of(e2e_workdir: Path, dag_id: str, run_id: str) -> dict:
    return json.loads((run_folder(e2e_workdir, dag_id, run_id) / "summary.json").read_text())


def active_enrollments(hook) -> dict[tuple[str, str], dict]:
    pairs = {}
    for course in hook.list_courses():
        for row in hook.list_course_enrollments(course["id"]):
            if row.get("isActive", True):
                pairs[(row["userId"], row["courseId"])] = row
    return pairs


def writes(sandbox) -> int:
    return sandbox.stats()["write_calls"]


@pytest.fixture(scope="module")
def changes(hr_feed):
    return hr_feed("changes.csv", changes=12, seed=5)


def test_sync_enrolls_people_from_the_feed(api, hook, e2e_sandbox, hr_feed, e2e_workdir):
    feed, _ = hr_feed("baseline.csv")
    before = active_enrollments(hook)
    run, states = api.trigger_and_wait(SYNC, {"feed_path": str(feed), "initial_load": True}, timeout=300)
    assert run["state"] == "success", api.explain(SYNC, run["dag_run_id"])
    assert states["apply_plan"] == "success"

    summary = summary_of(e2e_workdir, SYNC, run["dag_run_id"])
    assert summary["dry_run"] is False and summary["plan"]["enroll"] > 0
    assert summary["verification_mismatches"] == 0 and summary["outcomes"].get("failed", 0) == 0
    after = active_enrollments(hook)
    gained = set(after) - set(before)
    assert (
        len(gained) == summary["outcomes"].get("created", 0) + summary["outcomes"].get("updated", 0) or gained
    )
    assert len(gained) >= summary["plan"]["enroll"] - summary["outcomes"].get("already_enrolled", 0)

    # the XCom carries a summary, not the data set
    xcom = api.xcom(SYNC, run["dag_run_id"], "verify_and_report")
    assert len(json.dumps(xcom)) < 20_000


def test_leavers_are_handed_to_the_unenrollment_dag(api, hook, e2e_sandbox, changes, e2e_workdir):
    feed, kinds = changes
    leavers = [v if isinstance(v, str) else v["employee_id"] for v in kinds["leavers"]]
    assert leavers, kinds
    users = {u["externalId"]: u["id"] for u in hook.list_users() if u.get("externalId") in leavers}

    run, states = api.trigger_and_wait(SYNC, {"feed_path": str(feed)}, timeout=300)
    assert run["state"] == "success", api.explain(SYNC, run["dag_run_id"])
    assert states["trigger_unenrollment"] == "success"
    assert set(leavers) <= set(summary_of(e2e_workdir, SYNC, run["dag_run_id"])["leavers_handed_over"])

    handed_run_id = f"leavers__{run['dag_run_id']}"
    unenroll_run = api.wait_for_run(UNENROLL, handed_run_id, timeout=240)
    assert unenroll_run["state"] == "success", api.explain(UNENROLL, handed_run_id)
    assert unenroll_run["run_type"] == "operator_triggered" and unenroll_run["conf"]["people"]

    for user_id in users.values():
        remaining = [e for e in hook.list_user_enrollments(user_id) if e.get("isActive", True)]
        assert all(e["status"] == COMPLETE for e in remaining), (
            f"{user_id} keeps open enrollments: {remaining}"
        )

    # triggered by hand with conf, the same people again: nothing left to remove, no writes
    before = writes(e2e_sandbox)
    again, _ = api.trigger_and_wait(UNENROLL, {"people": leavers, "reason": "e2e re-run"}, timeout=240)
    assert again["state"] == "success", api.explain(UNENROLL, again["dag_run_id"])
    assert writes(e2e_sandbox) == before
    assert summary_of(e2e_workdir, UNENROLL, again["dag_run_id"])["resolved"]["targets"] == 0


def test_a_held_mass_termination_is_rejected_then_approved_through_the_rest_api(
    api, hook, e2e_sandbox, changes, e2e_workdir
):
    """Issue 9 §1 on the Celery cluster: a plan over max_removal_pct waits at approve_plan; a
    rejection (PATCH hitlDetails) ends the run with zero writes, an approval applies the plan; the
    mass hand-over then waits at the unenrollment's own approval and is approved there."""
    feed, _ = changes
    with feed.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = list(reader.fieldnames or []), list(reader)
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    active = [r for r in rows if r["status"] == "active" and r["hire_date"] <= yesterday]
    for row in active[: len(active) // 4]:
        row.update(status="terminated", termination_date=yesterday)
    mass = feed.with_name("mass_termination.csv")
    with mass.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)

    # 1. held, then rejected: nothing written
    before_writes, before_pairs = writes(e2e_sandbox), active_enrollments(hook)
    rejected_id = api.trigger(SYNC, {"feed_path": str(mass)})
    pending = api.wait_for_hitl(SYNC, rejected_id, "approve_plan")
    assert pending["options"] == ["Approve", "Reject"] and "comment" in pending["params"]
    assert "max_removal_pct" in pending["body"] and "Top departments" in pending["body"]
    assert writes(e2e_sandbox) == before_writes, "a held plan must not write while it waits"
    api.answer_hitl(SYNC, rejected_id, "approve_plan", "Reject", {"comment": "e2e: not this feed"})
    rejected = api.wait_for_run(SYNC, rejected_id, timeout=300)
    states = api.task_states(SYNC, rejected_id)
    assert rejected["state"] == "success", api.explain(SYNC, rejected_id)
    assert states["gate_plan"] == "success" and states["approve_plan"] == "success", states
    assert states["apply_plan"] == "skipped" and states["verify_and_report"] == "skipped", states
    assert writes(e2e_sandbox) == before_writes, "a rejected plan must not write to Absorb"
    assert active_enrollments(hook).keys() == before_pairs.keys()
    summary = summary_of(e2e_workdir, SYNC, rejected_id)
    assert (
        summary["approval"]["decision"] == "rejected"
        and summary["approval"]["comment"] == "e2e: not this feed"
    )
    decision = json.loads((run_folder(e2e_workdir, SYNC, rejected_id) / "plan_decision.json").read_text())
    assert decision["held"] and any("max_removal_pct" in reason for reason in decision["reasons"])

    # 2. held, then approved: the plan is applied, the approver recorded
    approved_id = api.trigger(SYNC, {"feed_path": str(mass)})
    api.wait_for_hitl(SYNC, approved_id, "approve_plan")
    assert writes(e2e_sandbox) == before_writes, "nothing is written before the approval"
    comment = "e2e: reorganisation approved in ticket HR-1234"
    answered = api.answer_hitl(SYNC, approved_id, "approve_plan", "Approve", {"comment": comment})
    assert answered["chosen_options"] == ["Approve"]
    approved = api.wait_for_run(SYNC, approved_id, timeout=300)
    assert approved["state"] == "success", api.explain(SYNC, approved_id)
    summary = summary_of(e2e_workdir, SYNC, approved_id)
    assert summary["approval"]["decision"] == "approved" and summary["approval"]["comment"] == comment
    assert summary["approval"]["by"] and summary["approval"]["at"]
    assert summary["verification_mismatches"] == 0 and summary["failed_writes"] == 0
    plan = summary["plan"]
    sync_lines = plan["enroll"] + plan["re_enroll"] + plan["update_due_date"] + plan["unenroll_by_sync"]
    assert sum(summary["outcomes"].values()) == sync_lines  # the sync applied its own lines
    # user changes (issue 12): the earlier leavers, unenrolled by now, are deactivated in this run
    user_lines = summary["users"]["total_lines"]
    assert sum(summary["users"]["outcomes"].values()) == user_lines
    assert (writes(e2e_sandbox) > before_writes) == (sync_lines + user_lines > 0)
    terminated = {row["employee_id"] for row in active[: len(active) // 4]}
    assert terminated <= set(summary["leavers_handed_over"])  # the leavers' removals are handed over
    assert api.task_states(SYNC, approved_id)["trigger_unenrollment"] == "success"

    # 3. the mass hand-over waits again at the unenrollment's own gate (an approval does not carry
    # over): nothing removed before a second approval, the leavers' open enrollments after it
    handed_run_id = f"leavers__{approved_id}"
    pending = api.wait_for_hitl(UNENROLL, handed_run_id, "approve")
    assert "max_share_pct" in pending["body"]
    before_writes = writes(e2e_sandbox)
    api.answer_hitl(UNENROLL, handed_run_id, "approve", "Approve", {"comment": "e2e: second decision"})
    api.wait_for_run(UNENROLL, handed_run_id, timeout=300)
    handed_states = api.task_states(UNENROLL, handed_run_id)
    assert handed_states["approve"] == "success" and handed_states["unenroll"] == "success", api.explain(
        UNENROLL, handed_run_id
    )
    assert writes(e2e_sandbox) > before_writes, "the approved removals were written"
    users = {u["externalId"]: u["id"] for u in hook.list_users() if u.get("externalId") in terminated}
    for user_id in users.values():
        remaining = [e for e in hook.list_user_enrollments(user_id) if e.get("isActive", True)]
        assert all(e["status"] == COMPLETE for e in remaining), f"{user_id} keeps open enrollments"


def test_full_completion_export_lands_in_files_and_postgres(api, hook, e2e_sandbox, cluster, e2e_workdir):
    e2e_sandbox.progress(fraction=0.3, seed=7)
    total = sum(1 for course in hook.list_courses() for _ in hook.list_course_enrollments(course["id"]))
    conf = {"full_export": True, "sql_conn_id": "e2e_warehouse", "sql_table": "absorb_enrollments_e2e"}
    run, _ = api.trigger_and_wait(EXPORT, conf, timeout=300)
    assert run["state"] == "success", api.explain(EXPORT, run["dag_run_id"])

    summary = summary_of(e2e_workdir, EXPORT, run["dag_run_id"])
    assert summary["full"] is True and summary["rows"] == total > 0
    assert summary["completed"] > 0 and summary["sql_upserted"] == total
    folder = run_folder(e2e_workdir, EXPORT, run["dag_run_id"])
    with (folder / "completions.csv").open(newline="", encoding="utf-8") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == total
    assert (folder / "compliance_report.html").stat().st_size > 1000
    [(rows_in_table,)] = cluster.query("SELECT count(*) FROM absorb_enrollments_e2e")
    assert rows_in_table == total
