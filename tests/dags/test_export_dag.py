"""absorb_completion_export end to end: full export matches the sandbox, SQL upsert, increments."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid

import pandas as pd
import pytest
from dagtools import all_enrollments, run_dag

EXPORT = "absorb_completion_export"
PG_URI = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def sql_table(world):
    """A throw-away table in the local PostgreSQL, reached through an env-var Airflow connection."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        psycopg2.connect(PG_URI).close()
    except psycopg2.OperationalError as error:
        pytest.skip(f"local PostgreSQL not reachable: {error}")
    os.environ["AIRFLOW_CONN_EXPORT_PG"] = PG_URI
    table = f"absorb_export_{uuid.uuid4().hex[:8]}"
    yield table
    with psycopg2.connect(PG_URI) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    os.environ.pop("AIRFLOW_CONN_EXPORT_PG", None)


def edit_sandbox(world, *statements: str) -> None:
    """Change the sandbox's data behind the API (server stopped, SQLite edited, server restarted)."""
    world.server.stop()
    with sqlite3.connect(world.db_path) as connection:
        for statement in statements:
            connection.execute(statement)
    world.server.start()
    os.environ["AIRFLOW_CONN_ABSORB_DEFAULT"] = world.server.airflow_connection_json()


def asset_events(run_id: str) -> list[str]:
    """Tasks of ``run_id`` that emitted an event for the ``absorb://completions`` asset."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent.source_task_id)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "absorb://completions", AssetEvent.source_run_id == run_id)
            .all()
        )
    return [r[0] for r in rows]


def sql_rows(table: str) -> pd.DataFrame:
    import psycopg2

    with psycopg2.connect(PG_URI) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT enrollment_id, status, is_completed FROM {table}")
        return pd.DataFrame(cursor.fetchall(), columns=["enrollment_id", "status", "is_completed"])


def test_incoherent_data_fails_the_export_gate_and_publishes_nothing(world):
    bad = "(SELECT id FROM enrollments WHERE status = 1 AND is_active = 1 ORDER BY id LIMIT 1)"
    edit_sandbox(world, f"UPDATE enrollments SET date_completed = date_added WHERE id = {bad}")
    try:
        run = run_dag(EXPORT, world.output, {"full_export": True})
    finally:
        edit_sandbox(world, "UPDATE enrollments SET date_completed = NULL WHERE status = 1")
    assert run.state == "failed"
    assert run.tasks["validate_export"] == "failed" and run.tasks["write_outputs"] == "upstream_failed"
    assert not (run.folder / "completions").exists() and not (run.folder / "completions.csv").exists()
    assert not (run.folder / "_staging").exists()  # the extract's staged files were deleted too
    gate = run.json("export_gate.json")
    assert gate["statistics"]["exact_counts_by"] == "extract"  # counted in the extract's pass
    failed = gate["failed_checks"]
    assert [f["description"] for f in failed] == [
        "completed (status 3) if and only if a completion date is set"
    ]
    assert failed[0]["unexpected_count"] == 1
    assert (run.folder / "export_validation.json").exists()
    assert world.state().last_export() is None
    assert asset_events(run.run_id) == []  # a refused export does not tell consumers there is news


def test_full_export_matches_the_sandbox(world, sql_table, tmp_path):
    out = tmp_path / "lake"
    conf = {"full_export": True, "sql_conn_id": "export_pg", "sql_table": sql_table, "output_path": str(out)}
    run = run_dag(EXPORT, world.output, conf)
    assert run.succeeded, run.tasks
    truth = {r["id"]: r for r in all_enrollments(world.hook())}
    summary = run.json("summary.json")
    data = pd.read_parquet(summary["data_folder"] + "/completions")
    assert set(data["enrollment_id"]) == set(truth)
    assert len(data) == len(truth) == summary["rows"]
    for row in data.head(50).to_dict("records"):
        source = truth[row["enrollment_id"]]
        assert (row["user_id"], row["status"]) == (source["userId"], source["status"])
        assert str(row["course_id"]) == source["courseId"]
    assert summary["completed"] == sum(r["status"] == 3 for r in truth.values())
    assert len(pd.read_csv(summary["data_folder"] + "/completions.csv")) == len(truth)
    assert not (run.folder / "_staging").exists()  # the staged files were moved to output_path
    written = pd.read_parquet(run.folder / "export.parquet")
    assert (
        data.sort_values("enrollment_id", ignore_index=True)
        .drop(columns="course_id")
        .equals(written.sort_values("enrollment_id", ignore_index=True).drop(columns="course_id"))
    )  # the partitions written during the extract hold exactly the export's rows and values
    stored = sql_rows(sql_table)
    assert len(stored) == len(truth) and stored["enrollment_id"].is_unique
    report = run.text("compliance_report.html")
    assert report.count('<svg class="chart"') >= 2 and "Completion rate by course" in report
    assert run.json("export_validation.json")["summary"]["passed"] is True
    assert asset_events(run.run_id) == ["write_outputs"]  # the absorb://completions asset was updated
    assert world.state().last_export()["rows"] == len(truth)


def test_incremental_export_takes_only_what_changed_and_upserts(world, sql_table):
    before = len(sql_rows(sql_table))
    progressed = world.server.progress(fraction=0.2, seed=4)
    time.sleep(1.1)  # windows end on whole seconds: edits of the run's own starting second go to the next
    run = run_dag(EXPORT, world.output, {"sql_conn_id": "export_pg", "sql_table": sql_table})
    assert run.succeeded, run.tasks
    summary = run.json("summary.json")
    assert summary["full"] is False and summary["since"]
    exported = pd.read_parquet(run.folder / "export.parquet")
    edited_since = {
        r["id"]
        for r in all_enrollments(world.hook())
        if pd.Timestamp(r["dateEdited"]) >= pd.Timestamp(summary["since"])
    }
    assert edited_since and set(exported["enrollment_id"]) == edited_since, progressed
    stored = sql_rows(sql_table).set_index("enrollment_id")
    assert len(stored) == before  # upserted in place, never duplicated
    for row in exported.to_dict("records"):
        assert stored.loc[row["enrollment_id"], "status"] == row["status"]


def test_full_export_by_completion_day_streams_every_row_once(world, tmp_path):
    """Date partitions regroup the course-ordered export; every row lands in exactly one file."""
    import pyarrow.parquet as pq
    from absorb_sync.export import BATCH_ROWS

    run = run_dag(EXPORT, world.output, {"full_export": True, "partition_by": "date_completed"})
    assert run.succeeded, run.tasks
    exported = pq.ParquetFile(run.folder / "export.parquet")
    assert all(exported.metadata.row_group(i).num_rows <= BATCH_ROWS for i in range(exported.num_row_groups))
    table = exported.read(columns=["enrollment_id", "course_id", "date_completed", "is_completed"])
    courses = table.column("course_id").to_pylist()
    assert courses == sorted(courses)  # grouped course after course, as the extract read them
    parts = sorted((run.folder / "completions").glob("date_completed_day=*/part-0.parquet"))
    ids = [i for part in parts for i in pq.read_table(part, columns=["enrollment_id"]).column(0).to_pylist()]
    assert sorted(ids) == sorted(table.column("enrollment_id").to_pylist())
    undated = pq.read_table(run.folder / "completions" / "date_completed_day=none" / "part-0.parquet")
    assert undated.column("date_completed").null_count == undated.num_rows > 0
    summary, counts = run.json("summary.json"), run.json("export_aggregates.json")
    assert summary["rows"] == counts["rows"] == table.num_rows
    assert summary["completed"] == sum(table.column("is_completed").to_pylist())
    report = run.text("compliance_report.html")  # a later full export: the trend has earlier points
    assert "One point per export run" in report and "appears here from the second export" not in report
