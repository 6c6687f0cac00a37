"""
### Absorb HR enrollment sync

Keeps Absorb LMS enrollments in line with the HR system, every day and on demand.

1. **extract_feed** — copies the HR feed (`feed_path`, any ObjectStoragePath: local, `s3://`...)
   into the run folder and maps its columns (`column_mapping`: `canonical`, `workday`,
   `bamboohr`, `adp`, a YAML path or a dict).
2. **validate_feed** — Great Expectations gate. Bad rows go to `rejects.csv` with their line
   numbers; a table-level failure (schema, duplicates, size drift...) stops the run before any write.
3. **resolve_people** — employee id = Absorb `externalId`, one paged read of the users.
4. **plan_enrollments** — rules (`rules_path`) + current enrollments of the rule courses (paged)
   → a plan of enroll / re_enroll / update_due_date / unenroll lines, each with a reason.
5. **gate_plan** — refuses removals over `max_removal_pct`, additions over `max_additions`,
   a short or failed read, or a feed that shrank — unless `override_thresholds` with an
   `override_reason` (recorded in the report). It also holds the **first apply against a portal**
   (no feed accepted for that portal yet) unless the run has `initial_load` ticked.
6. **apply_plan** — bulk writes (skipped on `dry_run`); every write journalled as it happens, so
   provenance survives a crash.
7. **verify_and_report** — reads Absorb back, writes `report.html`, `summary.json`, CSVs.
8. **trigger_unenrollment** — hands leavers to `absorb_bulk_unenrollment`, with what the
   hand-over was computed from (sync run, feed checksum, portal) so a late run re-checks it.

**Unpausing** this DAG starts the daily schedule (and, with "Unpause on trigger", a scheduled run
with the default Params right away). Such a run never makes a portal's first load: with no feed
accepted for the portal it plans, reports and stops, and says to re-trigger with `initial_load`.

Outputs: `{output_root}/absorb_hr_enrollment_sync/{run_id}/`. State (baseline, provenance,
journal) is kept per portal. The feed becomes the baseline only after a successful apply (a dry
run moves nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from absorb_sync.dag_defaults import API_TASK, DEFAULT_ARGS, connection_and_output_params
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

PROJECT = Path(__file__).resolve().parents[1]
GATE_TASK = {"retries": 0}  # a gate's verdict does not change on retry

PARAMS = {
    "feed_path": Param(
        str(PROJECT / "include" / "sample_data" / "hr_feed.csv"),
        type="string",
        minLength=1,
        title="HR feed",
        description="Path or URL (ObjectStoragePath: local, s3://, gs://...) of the HR feed CSV.",
    ),
    "column_mapping": Param(
        "canonical",
        type=["string", "object"],
        title="Column mapping",
        description="Preset (canonical, workday, bamboohr, adp), path to a mapping YAML, or a mapping object.",
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
        description="Create Absorb users for active people not found by employee id (off: only reported).",
    ),
    **connection_and_output_params(),
}


@dag(
    dag_id="absorb_hr_enrollment_sync",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["absorb", "hr", "enrollments"],
    params=PARAMS,
    default_args=DEFAULT_ARGS,
)
def absorb_hr_enrollment_sync():
    @task(**GATE_TASK)
    def extract_feed() -> dict:
        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        hr_sync.validate_inputs(
            rules_path=run.params["rules_path"],
            column_mapping=run.params["column_mapping"],
            override=run.params["override_thresholds"],
            override_reason=run.params["override_reason"],
        )
        return hr_sync.extract_feed(
            feed_path=run.params["feed_path"], column_mapping=run.params["column_mapping"], folder=run.folder
        )

    @task(**GATE_TASK)
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

    @task(**API_TASK)
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

    @task(**API_TASK)
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
        )

    @task(**GATE_TASK)
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
            max_additions=run.params["max_additions"],
            override=run.params["override_thresholds"],
            override_reason=run.params["override_reason"],
        )

    @task(**API_TASK)
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

    @task(**API_TASK)
    def verify_and_report(feed_gate: dict, decision: dict, applied: dict) -> dict:
        import logging

        from absorb_sync.jobs import hr_sync
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        summary = hr_sync.verify_and_report(
            folder=run.folder,
            hook=run.hook(),
            state=run.state(),
            run_id=run.run_id,
            dry_run=run.params["dry_run"],
            summaries={"feed_gate": feed_gate, "plan_gate": decision, "apply": applied},
        )
        logging.getLogger(__name__).info("sync summary: %s", summary)
        return summary

    @task.short_circuit
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
    summary = verify_and_report(feed_gate, decision, apply_plan(decision))
    TriggerDagRunOperator(
        task_id="trigger_unenrollment",
        trigger_dag_id="absorb_bulk_unenrollment",
        conf=leavers_to_hand_over(summary),
        trigger_run_id="leavers__{{ run_id }}",
        skip_when_already_exists=True,
        wait_for_completion=False,
    )


absorb_hr_enrollment_sync()
