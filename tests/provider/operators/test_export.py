"""Export operator inside a DAG run: Parquet/CSV files, window filter, lessons, Asset outlet."""

from __future__ import annotations

import csv
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
from absorb_provider.operators.export import AbsorbExportEnrollmentsOperator
from absorb_sandbox import seed
from airflow.sdk import DAG, Asset

COURSES = [seed.course_id("Code of Conduct"), seed.course_id("Data Privacy (GDPR)")]
PRIVACY_LESSON = seed.lesson_id("Data Privacy (GDPR)", 1, 1)


def test_export_parquet_csv_and_lessons(absorb_connection, hook_for, run_dag, xcom_value, tmp_path):
    hook = hook_for(absorb_connection)
    expected = sum(len(list(hook.list_course_enrollments(c))) for c in COURSES)
    since = "2000-01-01T00:00:00Z"
    in_window = sum(
        len(list(hook.list_course_enrollments(c, filter="status eq 3", modified_since=since)))
        for c in COURSES
    )
    lesson_rows = len(list(hook.list_lesson_enrollments(COURSES[1], PRIVACY_LESSON)))
    asset = Asset(f"file://{tmp_path}/all.parquet", name="absorb_enrollments_test")

    with DAG(
        "absorb_provider_test_export", schedule=None, start_date=datetime(2026, 1, 1), catchup=False
    ) as dag:
        AbsorbExportEnrollmentsOperator(
            task_id="all_to_parquet",
            course_ids=COURSES,
            output_path=str(tmp_path / "all.parquet"),
            lessons={COURSES[1]: [PRIVACY_LESSON]},
            lesson_output_path=str(tmp_path / "lessons.parquet"),
            batch_rows=7,
            page_size=9,
            outlets=[asset],
        )
        AbsorbExportEnrollmentsOperator(
            task_id="completed_to_csv",
            course_ids=COURSES,
            output_path=str(tmp_path / "completed.csv"),
            filter="status eq 3",
            modified_since="{{ macros.ds_add(ds, -36500) }}",
        )

    dag_run, states = run_dag(dag)
    assert dag_run.state == "success", states
    summary = xcom_value(dag_run, "all_to_parquet")
    assert summary["row_count"] == expected > 0
    assert summary["lesson_row_count"] == lesson_rows > 0
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.num_rows == expected
    assert pq.ParquetFile(tmp_path / "all.parquet").metadata.num_row_groups >= expected // 7
    assert table.schema.field("dateEdited").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("status").type == pa.int64()
    assert set(table.column("courseId").to_pylist()) == set(COURSES)
    assert len(set(table.column("id").to_pylist())) == expected
    assert pq.read_table(tmp_path / "lessons.parquet").num_rows == lesson_rows

    with (tmp_path / "completed.csv").open() as handle:
        completed = list(csv.DictReader(handle))
    assert len(completed) == in_window == xcom_value(dag_run, "completed_to_csv")["row_count"]
    assert {row["status"] for row in completed} == {"3"}
