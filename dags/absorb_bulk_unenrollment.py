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
2. **gate** — holds more than `max_count` enrollments, people over `max_share_pct` % of the
   active users, or a people list of which more than `max_unresolved_pct` % match nobody, unless
   `override_thresholds` with an `override_reason`.
2b. **approve** — only when the gate held the run (otherwise skipped at once): it waits under
   *Browse → Required actions* with what would be removed. **Approve** (comment required) →
   unenroll; **Reject** → nothing written, the run succeeds and says who rejected it; **no answer**
   within `approval_timeout_hours` (24) → nothing written, the run fails. `on_hold: fail` fails at once.
3. **unenroll** — `bulk_unenroll` in batches (skipped on `dry_run`); an enrollment that another
   run removed first counts as done.
4. **verify_and_report** — reads the people's enrollments back (the targets must be gone) and
   writes `report.html`, `summary.json`, `targets.csv`, `outcomes.csv`.

Idempotent: a second run finds nothing to remove. Outputs:
`{output_root}/absorb_bulk_unenrollment/{run_id}/`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from absorb_sync.approval import PlanApprovalOperator, approval_params
from absorb_sync.dag_defaults import API_TASK, DEFAULT_ARGS, connection_and_output_params, people_list
from airflow.sdk import Param, dag, task

PARAMS = {
    "people": Param(
        None,
        type=["null", "string", "array"],
        items={"type": ["string", "object"]},
        title="People",
        description="One per line: employee id, email or Absorb user id (commas also separate). A JSON list "
        'works too, and a line may be {"person": "E000123", "courses": ["course id or exact name"]}. '
        "Their open enrollments are REMOVED when you trigger: tick Dry run first to only see the list.",
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
    "dry_run": Param(
        False,
        type="boolean",
        title="Dry run",
        description="Off by default: a run REMOVES the enrollments it finds (within the gate's limits). "
        "Tick to resolve and report only.",
    ),
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
    **approval_params(),
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
    @task(
        task_display_name="Find people and enrollments",
        doc_md="Matches the people (employee id, email, user id), re-checks a sync's hand-over, reads their "
        "open enrollments into targets.csv.",
        **API_TASK,
    )
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
            people=people_list(run.params["people"]),
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

    @task(
        task_display_name="GATE · removal limits",
        doc_md="**Gate.** Holds more than `max_count` enrollments, people over `max_share_pct` % of active users, "
        "or a list most of whose people match nobody, for approval. Verdict in decision.json.",
        retries=0,
    )
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
            dry_run=run.params["dry_run"],
        )

    @task(
        task_display_name="Remove enrollments",
        doc_md="bulk_unenroll in batches (nothing on a dry run). Runs when the gate passed, or a person approved.",
        trigger_rule="none_failed_min_one_success",
        **API_TASK,
    )
    def unenroll(decision: dict) -> dict:
        from absorb_sync.jobs import unenroll as jobs
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return jobs.unenroll_targets(
            folder=run.folder, hook=run.hook(), state=run.state(), dry_run=run.params["dry_run"]
        )

    @task(
        task_display_name="Verify and report",
        doc_md="Reads the people's enrollments back (the targets must be gone); report.html, summary.json.",
        **API_TASK,
    )
    def verify_and_report(resolved: dict, decision: dict, applied: dict) -> dict:
        import logging

        from absorb_sync.jobs import unenroll as jobs
        from absorb_sync.jobs.runtime import current_run
        from airflow.sdk import get_current_context

        run = current_run()
        approval = get_current_context()["ti"].xcom_pull(task_ids="approve")
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
                "approval": approval,
            },
        )
        logging.getLogger(__name__).info("unenrollment summary: %s", summary)
        return summary

    resolved = resolve_targets()
    decision = gate(resolved)
    approval = PlanApprovalOperator(
        task_id="approve",
        kind="unenroll",
        decision_task_id="gate",
        task_display_name="APPROVAL · held removal",
        doc_md="**Human decision**, only when the gate held the run (skipped otherwise). Approve (comment "
        "required) → unenroll; Reject or no answer within `approval_timeout_hours` → nothing written.",
        retries=0,
    )
    removed = unenroll(decision)
    decision >> approval >> removed
    verify_and_report(resolved, decision, removed)


absorb_bulk_unenrollment()
