"""
### Absorb portal readiness check

A **read-only** check of an Absorb portal before the first sync: only GET calls and
`/authenticate` (anything else is refused before it is sent). Trigger it by hand after creating
the connection; it needs no schedule. The same check runs from a shell with
`absorb-portal check --conn-id ...` (no scheduler needed).

1. **check_portal** — three sections, a verdict per check (pass, look, FAIL, skipped):
   - *connection*: gateway (region or base URL) reachable, authentication, Integration API v2,
     latency per call, the rate-limit headroom seen (429s, `Retry-After`), and whether another
     client logs in as the same API user (its token taken over during the check);
   - *shapes*: one page of every list the DAGs read (users, courses, departments, course and
     user enrollments, bulk student courses), validated against the provider's own response
     schemas; unknown and missing fields listed;
   - *data fit*: the HR feed (`feed_path`, `column_mapping`) through the feed gate, the rules'
     courses (`rules_path`) found by id or name (ambiguous names flagged), the feed's
     departments, how many feed employee ids match an Absorb `externalId`, duplicated and empty
     `externalId`s, Absorb users with no feed row, and the first sync's plan (the planner run on
     the check's own reads).

The task fails when any check fails (no-go), after writing the report. Outputs:
`{output_root}/absorb_portal_check/{run_id}/readiness.html`, `readiness.json` and
`first_sync_plan.csv`. No password, key or token is ever written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from absorb_sync.dag_defaults import API_TASK, DEFAULT_ARGS, connection_and_output_params
from airflow.sdk import Param, dag, task

PROJECT = Path(__file__).resolve().parents[1]

PARAMS = {
    "feed_path": Param(
        str(PROJECT / "include" / "sample_data" / "hr_feed.csv"),
        type=["null", "string"],
        title="HR feed",
        description="Path or URL of the HR feed to compare with the portal (empty: people are not compared).",
    ),
    "column_mapping": Param(
        None,
        type=["null", "string", "object"],
        title="Column mapping",
        description="canonical (empty), workday, bamboohr, adp, a mapping YAML path, or a mapping object.",
    ),
    "rules_path": Param(
        str(PROJECT / "include" / "rules" / "enrollment_rules.yaml"),
        type="string",
        minLength=1,
        title="Rules file",
        description="YAML enrollment rules whose courses must exist in the portal.",
    ),
    "token_watch_seconds": Param(
        0,
        type="number",
        minimum=0,
        maximum=600,
        title="Token watch (s)",
        description="Keep reading this long after the checks, to catch another client logging in as the API user.",
    ),
    **connection_and_output_params(),
}


@dag(
    dag_id="absorb_portal_check",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["absorb", "readiness"],
    params=PARAMS,
    default_args={**DEFAULT_ARGS, "retries": 0},
)
def absorb_portal_check():
    @task(
        **API_TASK,
        task_display_name="GATE · portal readiness",
        doc_md="Read-only: connection, response shapes and data fit; writes readiness.html/json, "
        "fails when any check fails.",
    )
    def check_portal() -> dict:
        from absorb_sync.jobs.runtime import current_run
        from absorb_sync.portal import check

        run = current_run()
        return check.run_in_task(run)

    check_portal()


absorb_portal_check()
