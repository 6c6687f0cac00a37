"""
### Absorb bulk unenrollment

Removes open enrollments of named people — by hand, or triggered by `absorb_hr_enrollment_sync`
for its leavers (conf `{"people": [...], "reason": ..., "handover": {...}}`).

A sync's **hand-over is re-checked when it runs**, however late: it is refused whole when it was
computed against another portal (gateway URL + API user) or is older than
`max_handover_age_hours`, and people active in the latest accepted HR feed (rehired, a corrected
typo) are skipped and listed with the reason. Hand-typed runs are not affected. One run at a time.

1. **resolve_targets** — people (`people` list, `people_file`, or `use_last_leavers`) are matched
   by employee id, email/username or Absorb user id with one paged read of the users; their
   active enrollments are read (paged), optionally only some `courses` per person. Completed
   enrollments are kept unless `include_completed`.
2. **gate** — refuses more than `max_count` enrollments, people over `max_share_pct` % of the
   active users, or a people list of which more than `max_unresolved_pct` % match nobody, unless
   `override_thresholds` with an `override_reason`.
3. **unenroll** — `bulk_unenroll` in batches (skipped on `dry_run`); an enrollment that another
   run removed first counts as done.
4. **verify_and_report** — reads the people's enrollments back (the targets must be gone) and
   writes `report.html`, `summary.json`, `targets.csv`, `outcomes.csv`.

Idempotent: a second run finds nothing to remove. Outputs:
`{output_root}/absorb_bulk_unenrollment/{run_id}/`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from absorb_sync.dag_defaults import API_TASK, DEFAULT_ARGS, connection_and_output_params
from airflow.sdk import Param, dag, task

PARAMS = {
    "people": Param(
        [],
        type="array",
        items={"type": ["string", "object"]},
        title="People",
        description='Employee ids, emails or user ids; or objects {"person": "E000123", "courses": [ids or names]}.',
    ),
    "people_file": Param(
        None,
        type=["null", "string"],
        title="People file",
        description="CSV (column person/employee_id/email/user_id, optional courses `;`-separated), JSON list or text file.",
    ),
    "use_last_leavers": Param(
        False,
        type="boolean",
        title="Leavers of the last accepted feed",
        description="Add the leavers recorded by the last successful HR sync.",
    ),
    "reason": Param(None, type=["null", "string"], title="Reason", description="Why (shown in the report)."),
    "include_completed": Param(
        False,
        type="boolean",
        title="Include completed",
        description="Also remove completed enrollments (erases compliance history: normally off).",
    ),
    "dry_run": Param(False, type="boolean", title="Dry run", description="Resolve and report only."),
    "max_count": Param(
        500,
        type="integer",
        minimum=0,
        title="Max enrollments",
        description="Refuse to remove more than this.",
    ),
    "max_share_pct": Param(
        10.0,
        type="number",
        minimum=0,
        maximum=100,
        title="Max people share (%)",
        description="Refuse when the people affected exceed this share of the active Absorb users.",
    ),
    "max_unresolved_pct": Param(
        50.0,
        type="number",
        minimum=0,
        maximum=100,
        title="Max unmatched people (%)",
        description="Refuse when more than this share of the named people match no Absorb user (a wrong file or portal).",
    ),
    "max_handover_age_hours": Param(
        72,
        type="number",
        minimum=0,
        title="Max hand-over age (hours)",
        description="A sync's leavers hand-over older than this is refused when it finally runs.",
    ),
    "handover": Param(
        None,
        type=["null", "object"],
        title="Hand-over (set by the sync)",
        description="What a sync's hand-over was computed from; leave empty for a hand-typed run.",
    ),
    "override_thresholds": Param(
        False,
        type="boolean",
        title="Override thresholds",
        description="Go ahead despite the gate (needs a reason).",
    ),
    "override_reason": Param(
        None, type=["null", "string"], title="Override reason", description="Recorded in the report."
    ),
    **connection_and_output_params(),
}


@dag(
    dag_id="absorb_bulk_unenrollment",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["absorb", "enrollments", "unenrollment"],
    params=PARAMS,
    default_args=DEFAULT_ARGS,
)
def absorb_bulk_unenrollment():
    @task(**API_TASK)
    def resolve_targets() -> dict:
        from absorb_sync.jobs import unenroll
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        hook, state = run.hook(), run.state()
        handover = unenroll.check_handover(
            run.params["handover"],
            run_id=run.run_id,
            portal=state.portal,
            now=datetime.now(UTC),  # not the run's logical date: a queued run may start days later
            max_age_hours=run.params["max_handover_age_hours"],
        )
        requests, skipped = unenroll.collect_requests(
            people=run.params["people"],
            people_file=run.params["people_file"],
            use_last_leavers=run.params["use_last_leavers"],
            state=state,
            screen_people=handover is not None,
        )
        return unenroll.resolve_targets(
            folder=run.folder,
            hook=hook,
            requests=requests,
            include_completed=run.params["include_completed"],
            skipped=skipped,
            handover=handover,
        )

    @task(retries=0)
    def gate(resolved: dict) -> dict:
        from absorb_sync.jobs import unenroll
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return unenroll.gate_targets(
            folder=run.folder,
            resolved=resolved,
            max_count=run.params["max_count"],
            max_share_pct=run.params["max_share_pct"],
            max_unresolved_pct=run.params["max_unresolved_pct"],
            override=run.params["override_thresholds"],
            override_reason=run.params["override_reason"],
        )

    @task(**API_TASK)
    def unenroll(decision: dict) -> dict:
        from absorb_sync.jobs import unenroll as jobs
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return jobs.unenroll_targets(
            folder=run.folder, hook=run.hook(), state=run.state(), dry_run=run.params["dry_run"]
        )

    @task(**API_TASK)
    def verify_and_report(resolved: dict, decision: dict, applied: dict) -> dict:
        import logging

        from absorb_sync.jobs import unenroll as jobs
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        summary = jobs.verify_and_report(
            folder=run.folder,
            hook=run.hook(),
            run_id=run.run_id,
            dry_run=run.params["dry_run"],
            summaries={
                "resolve": resolved,
                "gate": decision,
                "unenroll": applied,
                "reason": run.params["reason"],
            },
        )
        logging.getLogger(__name__).info("unenrollment summary: %s", summary)
        return summary

    resolved = resolve_targets()
    decision = gate(resolved)
    verify_and_report(resolved, decision, unenroll(decision))


absorb_bulk_unenrollment()
