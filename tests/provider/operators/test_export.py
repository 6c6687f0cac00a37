"""Export operator inside a DAG run: Parquet/CSV files, window filter, lessons, Asset outlet."""

from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.parquet as pq
from absorb_sandbox import seed

COURSES = [seed.course_id("Code of Conduct"), seed.course_id("Data Privacy (GDPR)")]
PRIVACY_LESSON = seed.lesson_id("Data Privacy (GDPR)", 1, 1)


def test_export_parquet_csv_and_lessons(
    absorb_connection, hook_for, provider_dag, run_dag, xcom_value, tmp_path
):
    hook = hook_for(absorb_connection)
    expected = sum(len(list(hook.list_course_enrollments(c))) for c in COURSES)
    completed = sum(
        len(list(hook.list_course_enrollments(c, filter="status eq 3", modified_since="2000-01-01")))
        for c in COURSES
    )
    lesson_rows = len(list(hook.list_lesson_enrollments(COURSES[1], PRIVACY_LESSON)))
    conf = {"course_ids": COURSES, "lessons": {COURSES[1]: [PRIVACY_LESSON]}, "out": str(tmp_path)}

    dag_run, states = run_dag(provider_dag("absorb_provider_test_export"), conf)

    assert dag_run.state == "success", states
    summary = xcom_value(dag_run, "all_to_parquet")
    assert summary["row_count"] == expected > 0
    assert summary["lesson_row_count"] == lesson_rows > 0
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.num_rows == expected
    metadata = pq.ParquetFile(tmp_path / "all.parquet").metadata
    group_sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert len(group_sizes) > 1 and max(group_sizes) <= 9  # flushed every page of 9 (batch_rows=7)
    assert table.schema.field("dateEdited").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("status").type == pa.int64()
    assert set(table.column("courseId").to_pylist()) == set(COURSES)
    assert len(set(table.column("id").to_pylist())) == expected
    assert pq.read_table(tmp_path / "lessons.parquet").num_rows == lesson_rows

    with (tmp_path / "completed.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == completed == xcom_value(dag_run, "completed_to_csv")["row_count"]
    assert {row["status"] for row in rows} == {"3"}

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        event = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(
                AssetModel.name == "absorb_provider_test_export", AssetEvent.source_run_id == dag_run.run_id
            )
        ).one()
        assert event.extra["row_count"] == expected
