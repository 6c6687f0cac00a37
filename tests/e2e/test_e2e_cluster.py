"""The cluster itself: DAGs load, the pool exists, tasks spread over both workers sharing one token,
and the scheduler starts runs on its own."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from .harness import WORKER_NAMES

pytestmark = pytest.mark.e2e

PROJECT_DAGS = {"absorb_hr_enrollment_sync", "absorb_bulk_unenrollment", "absorb_completion_export"}
E2E_DAGS = {"e2e_parallel_absorb", "e2e_scheduled_heartbeat"}


@pytest.fixture(scope="module")
def loaded(airflow_api):
    airflow_api.wait_for_dags(PROJECT_DAGS | E2E_DAGS)
    return airflow_api


def test_every_dag_loads_with_its_docs(loaded):
    assert loaded.import_errors() == []
    for dag_id in PROJECT_DAGS:
        details = loaded.dag_details(dag_id)
        assert details["doc_md"] and len(details["doc_md"]) > 200, f"{dag_id} has no documentation"


def test_sync_dag_exposes_its_params(loaded):
    params = loaded.dag_details("absorb_hr_enrollment_sync")["params"]
    for name in ("feed_path", "dry_run", "max_removal_pct", "override_thresholds", "override_reason"):
        assert name in params, f"sync DAG lacks Param {name}: {sorted(params)}"


def test_pool_was_created_by_bootstrap(loaded):
    pool = loaded.pool("absorb_api")
    assert pool["slots"] >= 2


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_mapped_api_tasks_run_on_both_workers_with_one_token(loaded, e2e_sandbox):
    loaded.set_paused("e2e_parallel_absorb", False)
    run, states = loaded.trigger_and_wait("e2e_parallel_absorb", timeout=240)
    assert run["state"] == "success", states

    tis = [
        ti
        for ti in loaded.task_instances("e2e_parallel_absorb", run["dag_run_id"])
        if ti["task_id"] == "read_absorb"
    ]
    assert len(tis) == 8 and all(ti["state"] == "success" for ti in tis)
    hosts = {ti["hostname"] for ti in tis}
    assert hosts == set(WORKER_NAMES), f"mapped tasks ran on {hosts}, expected both workers"

    # "at once": some task on one worker overlapped in time with a task on the other
    by_host = {
        h: [(_parse(t["start_date"]), _parse(t["end_date"])) for t in tis if t["hostname"] == h]
        for h in hosts
    }
    first, second = (by_host[name] for name in WORKER_NAMES)
    assert any(a0 < b1 and b0 < a1 for a0, a1 in first for b0, b1 in second), "workers never ran concurrently"

    summary = loaded.xcom("e2e_parallel_absorb", run["dag_run_id"], "check")
    assert summary["tasks"] == 8 and summary["departments"] >= 8

    # One shared token for the whole deployment: every API task so far (these 8, and any earlier
    # test's) logged in at most twice in total.
    authenticate_calls = e2e_sandbox.stats()["authenticate_calls"]
    assert 1 <= authenticate_calls <= 2, f"{authenticate_calls} /authenticate calls from the cluster's tasks"


def test_scheduler_starts_a_scheduled_run_that_appears_in_history(loaded, cluster):
    dag_id = "e2e_scheduled_heartbeat"
    for project_dag in PROJECT_DAGS:  # only the heartbeat may run on its timetable
        loaded.set_paused(project_dag, True)
    cluster.restart("scheduler", {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True"})
    loaded.set_paused(dag_id, False)
    runs: list[dict] = []
    try:
        deadline = time.monotonic() + 120
        finished: list[dict] = []
        while time.monotonic() < deadline and not finished:
            runs = loaded.runs(dag_id, run_type=["scheduled"])
            finished = [r for r in runs if r["state"] in ("success", "failed")]
            time.sleep(1)
    finally:
        loaded.set_paused(dag_id, True)
        cluster.restart("scheduler", {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
    assert finished, f"no scheduled run finished: {runs}"
    run = finished[0]
    assert run["run_type"] == "scheduled" and run["triggered_by"] == "timetable"
    assert run["state"] == "success"
    assert loaded.task_states(dag_id, run["dag_run_id"]) == {"beat": "success"}
    history = {r["dag_run_id"] for r in loaded.runs(dag_id)}
    assert run["dag_run_id"] in history
