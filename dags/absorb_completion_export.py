"""
### Absorb completion export

Exports course enrollments (progress, completion, scores, time spent) for reporting, daily and on
demand, and updates the `absorb://completions` asset.

1. **extract** — enrollments edited in the run's data interval (`dateEdited`; scheduled runs
   cover the previous UTC day, a manual run takes what changed since the last export), or all of them with `full_export`, for every course or
   `course_ids`; paged reads as Arrow pages, several courses (and pages of a long course) at once within
   the connection's rate limit and `max_concurrency`. Normalised batch by batch (status names, time spent in seconds, UTC dates, employee id,
   department/job/location from the last accepted HR feed, else Absorb) into `export.parquet`;
   in the same pass the CSV and (for `course_id`) the partitioned Parquet go to `_staging/` in the
   run folder, unpublished.
2. **validate_export** — Great Expectations gate (unique ids, one active enrollment per person and
   course, enums and ranges, completion dates coherent, completed count not dropping): every
   check counted exactly over all rows (by the extract's pass, kept with the file; the gate
   recounts a file they do not describe), GX on a bounded sample of them.
3. **write_outputs** — Parquet partitioned by `partition_by` and a CSV under `output_path` (any
   ObjectStoragePath; default: the run folder); optional upsert into `sql_table` through a
   common-sql connection `sql_conn_id` (e.g. PostgreSQL). Publishes the staged files (a rename
   locally, a copy to object storage); date partitions are written here from `export.parquet`.
   A failed gate deletes the staging folder: nothing is published before the gate passes.
4. **compliance_report** — HTML with inline SVG charts: completion rate and overdue by course and
   department, from the counts the extract kept (not the rows).

Memory stays flat whatever the export's size; only the gate imports Great Expectations, and no
task imports a plotting library.

Outputs: `{output_root}/absorb_completion_export/{run_id}/`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from absorb_sync.dag_defaults import API_TASK, DEFAULT_ARGS, connection_and_output_params
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

COMPLETIONS = Asset("absorb://completions")

PARAMS = {
    "full_export": Param(
        False,
        type="boolean",
        title="Full export",
        description="Export every enrollment, not just the edited ones.",
    ),
    "course_ids": Param(
        [],
        type="array",
        items={"type": "string"},
        title="Course ids",
        description="Only these courses (empty: all courses).",
    ),
    "output_path": Param(
        None,
        type=["null", "string"],
        title="Output path",
        description="Where the Parquet/CSV files go (ObjectStoragePath URL; a folder per run). Empty: the run folder.",
    ),
    "partition_by": Param(
        "course_id",
        enum=["course_id", "date_completed", "date_edited"],
        title="Partition by",
        description="Parquet partition column.",
    ),
    "sql_conn_id": Param(
        None,
        type=["null", "string"],
        title="SQL connection",
        description="A common-sql connection (e.g. postgres) to upsert the rows into; empty: no SQL.",
    ),
    "sql_table": Param(
        "absorb_enrollments",
        type="string",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
        title="SQL table",
        description="Target table, created if missing, keyed on enrollment_id.",
    ),
    "drop_tolerance_pct": Param(
        0.0,
        type="number",
        minimum=0,
        maximum=100,
        title="Completed drop tolerance (%)",
        description="Full exports fail when the completed count drops more than this versus the last full export.",
    ),
    **connection_and_output_params(),
}


@dag(
    dag_id="absorb_completion_export",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),  # daily runs own their interval
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["absorb", "completions", "export"],
    params=PARAMS,
    default_args=DEFAULT_ARGS,
)
def absorb_completion_export():
    @task(**API_TASK)
    def extract() -> dict:
        from absorb_sync.jobs import export
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        state = run.state()
        window = export.export_window(
            full_export=run.params["full_export"],
            scheduled=run.scheduled,
            interval_start=run.interval_start,
            interval_end=run.interval_end,
            last_export=state.last_export(),
            now=run.now,
        )
        return export.extract_enrollments(
            folder=run.folder,
            hook=run.hook(),
            course_ids=run.params["course_ids"] or None,
            window=window,
            state=state,
            output_root=run.output_root,
            now=run.now,
            partition_by=run.params["partition_by"],
        )

    @task(retries=0)
    def validate_export(extracted: dict) -> dict:
        from absorb_sync.jobs import export
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return export.gate_export(
            folder=run.folder,
            state=run.state(),
            window=extracted["window"],
            drop_tolerance_pct=run.params["drop_tolerance_pct"],
            now=run.now,
        )

    @task(outlets=[COMPLETIONS])
    def write_outputs(gate: dict) -> dict:
        from absorb_sync.jobs import export
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        return export.write_outputs(
            folder=run.folder,
            output_path=run.params["output_path"],
            run_id=run.run_id,
            partition_by=run.params["partition_by"],
            sql_conn_id=run.params["sql_conn_id"],
            sql_table=run.params["sql_table"],
        )

    @task
    def compliance_report(extracted: dict, written: dict) -> dict:
        import logging

        from absorb_sync.jobs import export
        from absorb_sync.jobs.runtime import current_run

        run = current_run()
        summary = export.report_and_record(
            folder=run.folder,
            state=run.state(),
            run_id=run.run_id,
            window=extracted["window"],
            written=written,
            now=run.now,
        )
        logging.getLogger(__name__).info("export summary: %s", summary)
        return summary

    extracted = extract()
    compliance_report(extracted, write_outputs(validate_export(extracted)))


absorb_completion_export()
