"""Harness check: a scheduled DAG with no API calls, so a scheduled run shows up in the run history."""

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="e2e_scheduled_heartbeat",
    schedule=timedelta(minutes=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["e2e"],
    doc_md="End-to-end harness: runs every minute so the tests can find a *scheduled* run.",
)
def e2e_scheduled_heartbeat():
    @task
    def beat() -> str:
        from airflow.sdk import get_current_context

        return get_current_context()["run_id"]

    beat()


e2e_scheduled_heartbeat()
