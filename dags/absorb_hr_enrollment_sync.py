"""
### Absorb HR enrollment sync

Keeps Absorb LMS enrollments in line with the HR system, every day and on demand.

1. **extract_feed** — copies the HR feed (`feed_path`, any ObjectStoragePath: local, `s3://`...)
   into the run folder and maps its columns (`column_mapping`: `canonical`, `workday`,
   `bamboohr`, `adp`, a YAML path or a dict).
2. **validate_feed** — Great Expectations gate. Bad rows go to `rejects.csv` with their line
   numbers; a table-level failure (schema, duplicates, size drift...) stops the run before any write.
3. **resolve_people** — employee id = Absorb `externalId`, one paged read of the users.
4. **plan_enrollments** — user changes (the rules file's `users:` section: `create_user` with
   `create_missing_users`, `update_user` of the managed fields, `deactivate_user` of leavers whose
   open enrollments are gone, `reactivate_user` of rehires) in `user_plan.csv`, then rules
   (`rules_path`) + current enrollments of the rule courses (paged) → a plan of enroll / re_enroll /
   update_due_date / unenroll lines, each with a reason.
5. **gate_plan** — holds a plan removing over `max_removal_pct`, deactivating over
   `max_deactivation_pct` of the active users, adding over `max_additions`, on
   a feed that shrank, or the **first apply against a portal** (no feed accepted for it yet,
   without `initial_load`) — unless `override_thresholds` with an `override_reason` (recorded; an
   override never stands in for `initial_load`). An incomplete Absorb read fails the run here:
   nothing to approve.
5b. **approve_plan** — only when the gate held the plan (otherwise skipped at once): the run
   waits under *Browse → Required actions* with what the plan would do. **Approve** (comment
   required) → apply; **Reject** → everything after is skipped, nothing written, the run succeeds
   and says who rejected it; **no answer** within `approval_timeout_hours` (24) → the same, but the
   run fails. `on_hold: fail` fails at once instead of waiting.
6. **apply_plan** — users created, reactivated and updated first, then the bulk enrollment
   writes, then the leavers' deactivations (skipped on `dry_run`); every write journalled as it
   happens, so provenance survives a crash.
7. **verify_and_report** — reads Absorb back, writes `report.html`, `summary.json`, CSVs.
8. **trigger_unenrollment** — hands leavers to `absorb_bulk_unenrollment`, with what the
   hand-over was computed from (sync run, feed checksum, portal) so a late run re-checks it.

**Unpausing** this DAG starts the daily schedule (and, with "Unpause on trigger", a scheduled run
with the default Params right away). Such a run never makes a portal's first load by itself: with
no feed accepted for the portal it plans, reports and waits at **approve_plan** — approve it, or
reject it and re-trigger with `initial_load`.

Outputs: `{output_root}/absorb_hr_enrollment_sync/{run_id}/`. State (baseline, provenance,
journal) is kept per portal. The feed becomes the baseline only after a successful apply (a dry
run moves nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from absorb_sync.approval import PlanApprovalOperator, approval_params
from absorb_sync.dag_defaults import (
    API_TASK,
    DEFAULT_ARGS,
    GATE_TASK,
    MAPPING_PRESETS,
    connection_and_output_params,
    effective_mapping,
    sync_deadline,
)
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

PROJECT = Path(__file__).resolve().parents[1]
DAG_ID = "absorb_hr_enrollment_sync"

PARAMS = {
    "feed_path": Param(
        str(PROJECT / "include" / "sample_data" / "hr_feed.csv"),
        type="string",
        minLength=1,
        title="HR feed",
        description="Path or URL (ObjectStoragePath: local, s3://, gs://...) of the HR feed CSV.",
    ),
    "mapping_preset": Param(
        "canonical",
        type="string",
        enum=[*MAPPING_PRESETS, "custom"],
        values_display={
            "canonical": "canonical (our column names)",
            "workday": "Workday report",
            "bamboohr": "BambooHR report",
            "adp": "ADP report",
            "custom": "custom: the Custom column mapping below",
        },
        title="Column mapping preset",
        description="How the feed's headers map to ours (docs/feed-mapping.md). Pick custom to use the field below.",
    ),
    "column_mapping": Param(
        None,
        type=["null", "string", "object"],
        title="Custom column mapping",
        description="A mapping YAML path, or a mapping object (JSON). When set, it wins over the preset.",
    ),
    "rules_path": Param(
        str(PROJECT / "include" / "rules" / "enrollment_rules.yaml"),
        type="string",
        minLength=1,
        title="Rules file",
        description="YAML enrollment rules (see docs/rules.md).",
    ),
    "dry_run": Param(
        False, type="boolean", title="Dry run", description="Plan and report only: write nothing to Absorb."
    ),
    "max_removal_pct": Param(
        10.0,
        type="number",
        minimum=0,
        maximum=100,
        title="Max removals (%)",
        description="Refuse a plan removing more than this share of the active enrollments in the rule courses.",
    ),
    "max_deactivation_pct": Param(
        5.0,
        type="number",
        minimum=0,
        maximum=100,
        title="Max user deactivations (%)",
        description="Hold a plan deactivating more than this share of the portal's active users.",
    ),
    "max_additions": Param(
        None,
        type=["null", "integer"],
        minimum=0,
        title="Max additions",
        description="Refuse a plan with more enrollments to create than this (empty: no limit).",
    ),
    "max_row_drift_pct": Param(
        20.0,
        type="number",
        minimum=0,
        title="Max feed size drift (%)",
        description="Fail the feed gate when the row count moves more than this versus the last accepted feed.",
    ),
    "override_thresholds": Param(
        False,
        type="boolean",
        title="Override plan thresholds",
        description="Apply a plan the gate refused. Needs an override reason; recorded in the report.",
    ),
    "override_reason": Param(
        None,
        type=["null", "string"],
        title="Override reason",
        description="Why the thresholds are overridden for this run (who asked, ticket...).",
    ),
    "initial_load": Param(
        False,
        type="boolean",
        title="Initial load",
        description="Allow the first apply against a portal that has no accepted feed yet. Without it, "
        "a first run plans, reports and stops (so unpausing never loads a portal by itself).",
    ),
    "create_missing_users": Param(
        False,
        type="boolean",
        title="Create missing users",
        description="Plan a user for active people not found by employee id (created at apply, before "
        "their enrollments; off: only reported).",
    ),
    **approval_params(),
    **connection_and_output_params(),
}


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["absorb", "hr", "enrollments"],
    params=PARAMS,
    default_args=DEFAULT_ARGS,
    deadline=sync_deadline(DAG_ID),
)
def absorb_hr_enrollment_sync():
    @task(
        task_display_name="Read HR feed",
        doc_md="Checks the run's inputs (rules, mapping, Params), copies the feed into the run folder and maps its columns.",
        **GATE_TASK,
    )
    def extract_feed() -> dict:
        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        hr_sync.validate_inputs(
            rules_path=run.params["rules_path"],
            column_mapping=effective_mapping(run.params),
            override=run.params["override_thresholds"],
            override_reason=run.params["override_reason"],
        )
        return hr_sync.extract_feed(
            feed_path=run.params["feed_path"], column_mapping=effective_mapping(run.params), folder=run.folder
        )

    @task(
        task_display_name="GATE · feed checks",
        doc_md="**Gate.** Great Expectations on the feed: bad rows go to rejects.csv; a table-level "
        "failure (schema, duplicates, row-count drift) stops the run before any read or write.",
        **GATE_TASK,
    )
    def validate_feed(extracted: dict) -> dict:
        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return hr_sync.gate_feed(
            folder=run.folder,
            state=run.state(),
            today=run.today,
            max_row_drift_pct=run.params["max_row_drift_pct"],
        )

    @task(
        task_display_name="Match people in Absorb",
        doc_md="Employee id = Absorb externalId, one paged read of the users (kept for the user plan; nothing written).",
        **API_TASK,
    )
    def resolve_people(feed_gate: dict) -> dict:
        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return hr_sync.resolve_people(
            folder=run.folder,
            hook=run.hook(),
            create_missing_users=run.params["create_missing_users"],
            dry_run=run.params["dry_run"],
            rules_path=run.params["rules_path"],
        )

    @task(
        task_display_name="Plan enrollments",
        doc_md="User changes (user_plan.csv) and rules + current enrollments → plan.csv: enroll, re-enroll, "
        "due-date and unenroll lines with reasons.",
        **API_TASK,
    )
    def plan_enrollments(people: dict) -> dict:
        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return hr_sync.plan_changes(
            folder=run.folder,
            hook=run.hook(),
            rules_path=run.params["rules_path"],
            state=run.state(),
            today=run.today,
            create_missing_users=run.params["create_missing_users"],
        )

    @task(
        task_display_name="GATE · plan thresholds",
        doc_md="**Gate.** Holds a plan over `max_removal_pct` / `max_additions`, on a shrunken feed, or a first "
        "apply on a portal (without `initial_load`) for approval; fails on an incomplete Absorb read. "
        "Verdict in plan_decision.json.",
        **GATE_TASK,
    )
    def gate_plan(planned: dict, feed_gate: dict) -> dict:
        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return hr_sync.gate_plan(
            folder=run.folder,
            state=run.state(),
            run_id=run.run_id,
            feed_gate=feed_gate,
            initial_load=run.params["initial_load"],
            dry_run=run.params["dry_run"],
            max_removal_pct=run.params["max_removal_pct"],
            max_deactivation_pct=run.params["max_deactivation_pct"],
            max_additions=run.params["max_additions"],
            override=run.params["override_thresholds"],
            override_reason=run.params["override_reason"],
        )

    @task(
        task_display_name="Apply plan to Absorb",
        doc_md="Bulk writes, each journalled as it happens. Runs when the gate passed, or a person approved.",
        trigger_rule="none_failed_min_one_success",
        **API_TASK,
    )
    def apply_plan(decision: dict) -> dict:
        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return hr_sync.apply_plan(
            folder=run.folder,
            hook=run.hook(),
            state=run.state(),
            run_id=run.run_id,
            dry_run=run.params["dry_run"],
        )

    @task(
        task_display_name="Verify and report",
        doc_md="Reads Absorb back, writes report.html and summary.json (with who approved a held plan).",
        **API_TASK,
    )
    def verify_and_report(feed_gate: dict, decision: dict, applied: dict) -> dict:
        import logging

        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run
        from airflow.sdk import get_current_context

        run = current_run()
        approval = get_current_context()["ti"].xcom_pull(task_ids="approve_plan")
        summary = hr_sync.verify_and_report(
            folder=run.folder,
            hook=run.hook(),
            state=run.state(),
            run_id=run.run_id,
            dry_run=run.params["dry_run"],
            summaries={"feed_gate": feed_gate, "plan_gate": decision, "apply": applied, "approval": approval},
        )
        logging.getLogger(__name__).info("sync summary: %s", summary)
        return summary

    @task.short_circuit(task_display_name="Leavers to hand over?")
    def leavers_to_hand_over(summary: dict) -> dict | None:
        """The unenrollment conf, or nothing (dry run, or no new leavers): then the trigger is skipped."""
        people = summary.get("leavers_handed_over") or []
        if summary.get("dry_run") or not people:
            return None
        return {
            "people": people,
            "reason": f"leavers from {summary['run_id']}",
            "handover": summary["handover"],
        }

    feed_gate = validate_feed(extract_feed())
    decision = gate_plan(plan_enrollments(resolve_people(feed_gate)), feed_gate)
    approval = PlanApprovalOperator(
        task_id="approve_plan",
        kind="sync",
        decision_task_id="gate_plan",
        task_display_name="APPROVAL · held plan",
        doc_md="**Human decision**, only when the gate held the plan (skipped otherwise). Approve (comment "
        "required) → apply; Reject or no answer within `approval_timeout_hours` → nothing written.",
        retries=0,
    )
    applied = apply_plan(decision)
    decision >> approval >> applied
    summary = verify_and_report(feed_gate, decision, applied)
    TriggerDagRunOperator(
        task_id="trigger_unenrollment",
        task_display_name="Hand leavers to unenrollment",
        trigger_dag_id="absorb_bulk_unenrollment",
        conf=leavers_to_hand_over(summary),
        trigger_run_id="leavers__{{ run_id }}",
        skip_when_already_exists=True,
        wait_for_completion=False,
    )


absorb_hr_enrollment_sync()
