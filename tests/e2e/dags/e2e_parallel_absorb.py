"""Harness check: eight mapped Absorb API tasks spread over both Celery workers.

Each task builds its own ``AbsorbHook`` in its own process, so together they exercise the shared
token store across processes and workers: the sandbox should see one ``/authenticate``, not eight.
"""

from datetime import datetime

from airflow.sdk import dag, task

FAN_OUT = 8


@dag(
    dag_id="e2e_parallel_absorb",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["e2e"],
    doc_md=__doc__,
)
def e2e_parallel_absorb():
    @task
    def shards() -> list[int]:
        return list(range(FAN_OUT))

    @task(pool="absorb_api", retries=0)
    def read_absorb(shard: int) -> dict:
        import time

        from absorb_provider.hooks.absorb import AbsorbHook

        hook = AbsorbHook()
        departments = sum(1 for _ in hook.list_departments())
        courses = sum(1 for _ in hook.list_courses())
        time.sleep(2)  # hold the slot so tasks overlap and land on both workers
        return {"shard": shard, "departments": departments, "courses": courses}

    @task
    def check(results: list[dict]) -> dict:
        counts = {(r["departments"], r["courses"]) for r in results}
        if len(results) != FAN_OUT or len(counts) != 1:
            raise ValueError(f"mapped reads disagree or are missing: {results}")
        departments, courses = counts.pop()
        return {"tasks": len(results), "departments": departments, "courses": courses}

    check(read_absorb.expand(shard=shards()))


e2e_parallel_absorb()
