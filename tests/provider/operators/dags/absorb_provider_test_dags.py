"""DAGs that exercise the provider's operators in real ``dag.test()`` runs.

They live in a bundle of their own (``tests/provider/operators/conftest.py`` registers it):
``dag.test()`` serialises a DAG by re-parsing its bundle, so a DAG built inside a test function
cannot run. Paths and inputs arrive as run conf; the DAGs render templates as native objects.
"""

from __future__ import annotations

import csv
from datetime import datetime

from absorb_provider.operators.enrollments import AbsorbEnrollUsersOperator, AbsorbUnenrollOperator
from absorb_provider.operators.export import AbsorbExportEnrollmentsOperator
from airflow.sdk import DAG, Asset, task

COMMON = {
    "schedule": None,
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "render_template_as_native_obj": True,
}
EXPORT_ASSET = Asset(name="absorb_provider_test_export", uri="file:///tmp/absorb-provider-test/all.parquet")

with DAG("absorb_provider_test_enroll", params={"source_path": "", "out": ""}, **COMMON):
    enroll = AbsorbEnrollUsersOperator(
        task_id="enroll",
        source_path="{{ params.source_path }}",
        outcome_path="{{ params.out }}/enroll.outcomes.csv",
    )

    @task
    def pick_ids(summary: dict) -> list[str]:
        """Three enrollment ids from the outcome file (XCom carries ids, never rows)."""
        with open(summary["outcome_path"].removeprefix("file://")) as handle:
            return [row["enrollment_id"] for row in csv.DictReader(handle)][:3]

    AbsorbUnenrollOperator(
        task_id="unenroll",
        enrollment_ids=pick_ids(enroll.output),
        batch_size=2,
        outcome_path="{{ params.out }}/unenroll.parquet",
    )

with DAG("absorb_provider_test_failures", params={"rows": [], "bad_path": "", "out": ""}, **COMMON):
    AbsorbEnrollUsersOperator(
        task_id="strict", items="{{ params.rows }}", outcome_path="{{ params.out }}/strict.csv"
    )
    AbsorbEnrollUsersOperator(
        task_id="tolerant",
        items="{{ params.rows }}",
        outcome_path="{{ params.out }}/tolerant.jsonl",
        fail_on_item_error=False,
    )
    AbsorbEnrollUsersOperator(
        task_id="bad_input", source_path="{{ params.bad_path }}", outcome_path="{{ params.out }}/bad.csv"
    )

with DAG("absorb_provider_test_export", params={"course_ids": [], "lessons": {}, "out": ""}, **COMMON):
    AbsorbExportEnrollmentsOperator(
        task_id="all_to_parquet",
        course_ids="{{ params.course_ids }}",
        output_path="{{ params.out }}/all.parquet",
        lessons="{{ params.lessons }}",
        lesson_output_path="{{ params.out }}/lessons.parquet",
        batch_rows=7,
        page_size=9,
        outlets=[EXPORT_ASSET],
    )
    AbsorbExportEnrollmentsOperator(
        task_id="completed_to_csv",
        course_ids="{{ params.course_ids }}",
        output_path="{{ params.out }}/completed.csv",
        filter="status eq 3",
        modified_since="{{ macros.ds_add(ds, -36500) if ds else '2000-01-01' }}",
    )
