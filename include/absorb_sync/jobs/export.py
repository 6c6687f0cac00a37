"""Jobs of ``absorb_completion_export``: extract -> gate -> write (Parquet, CSV, SQL) -> report.

Incremental by ``dateEdited`` in ``[since, until)``: the run's data interval for scheduled and
backfill runs; for a manual run the end of the last export up to now; a full export when asked
or when there is no previous export. The completed-count drop check compares full exports with full exports only
(an increment's completed count says nothing about a drop).

Run folder: ``export.parquet`` (the normalised table), ``export_aggregates.json`` (the report's
counts), ``export_checks.json`` + ``export_sample.parquet`` (the gate's exact counts and GX
sample, counted by the extract), ``export_validation.json``, ``completions/<partition>=<value>/part-0.parquet``,
``completions.csv``, ``compliance_report.html``, ``summary.json``. ``output_path`` sends the data
files elsewhere (any ObjectStoragePath). The extract writes the CSV and the ``course_id``
partitions into ``_staging/`` as it goes; ``write_outputs`` (after the gate) moves them into place,
and a failed gate deletes them.

The data never sits in memory whole: the extract streams Arrow pages (several courses read at
once, and a long course several pages at a time, within the connection's ``max_concurrency``;
delivered in course order) through the vectorised normaliser; one write-behind thread writes
``export.parquet``, the staged CSV and partitions and counts the report's aggregates and the
gate's checks while the next batch is normalised; the gate reads those counts and a sample,
the writers read batches, the report reads aggregates.
Rows are grouped by course (course ids ascending), in Absorb's order within a course.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from absorb_sync.jobs.runtime import SYNC_DAG_ID, read_json, run_key, storage_path, write_json

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def export_window(
    *,
    full_export: bool,
    scheduled: bool,
    interval_start: datetime | None,
    interval_end: datetime | None,
    last_export: Mapping | None,
    now: datetime,
) -> dict:
    """The ``dateEdited`` window of this run: ``{"full": bool, "since": iso|None, "until": iso}``.

    Scheduled (and backfill) runs take their data interval, so each day is exported exactly once
    and a cleared run re-exports its own day. Manual runs take what changed since the last export
    (or everything when there was none). Bounds are whole seconds (the OData datetime literal's
    precision), so consecutive windows neither overlap nor leave gaps.
    """
    now = now.replace(microsecond=0)
    if full_export:
        return {
            "full": True,
            "since": None,
            "until": (interval_end if scheduled and interval_end else now).isoformat(),
        }
    if (
        scheduled
        and interval_start is not None
        and interval_end is not None
        and interval_start < interval_end
    ):
        return {"full": False, "since": interval_start.isoformat(), "until": interval_end.isoformat()}
    if last_export and last_export.get("until"):
        return {"full": False, "since": last_export["until"], "until": now.isoformat()}
    return {"full": True, "since": None, "until": now.isoformat()}


def _odata_datetime(value: str) -> str:
    from datetime import UTC

    moment = datetime.fromisoformat(value).astimezone(UTC)
    return f"datetime'{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}'"


def window_filter(window: Mapping[str, Any]) -> str | None:
    """OData filter for the window (``until`` is exclusive so consecutive windows never overlap)."""
    if window["full"]:
        return None
    return f"dateEdited ge {_odata_datetime(window['since'])} and dateEdited lt {_odata_datetime(window['until'])}"


EXTRACT_CONCURRENCY = 4  # courses read at once (bounded by the connection's max concurrency)
READ_AHEAD_PAGES = 2  # pages each course reader may hold ahead of the writer
STAGING = "_staging"  # files written by the extract, published by write_outputs after the gate


def extract_enrollments(
    *,
    folder: ObjectStoragePath,
    hook: Any,
    course_ids: list[str] | None,
    window: Mapping[str, Any],
    state: Any,
    output_root: ObjectStoragePath,
    now: datetime,
    concurrency: int | None = None,
    partition_by: str | None = "course_id",
) -> dict:
    """Paged Arrow reads per course, joined to users (employee id) and the last accepted HR feed,
    normalised and written to ``export.parquet`` batch by batch; the report's aggregates too.

    The published files are written in the same pass into ``_staging/`` of the run folder (the
    CSV, and the ``course_id`` partitions, which the course-ordered stream gives in one pass);
    ``write_outputs`` only moves them into place once the gate has passed."""
    from absorb_provider.io import WriteBehind, tables_by_course, use_system_allocator

    from absorb_sync.export import (
        BATCH_ROWS,
        CsvWriter,
        GroupedPartitionWriter,
        KeyIndex,
        export_batches,
        export_schema,
        normalise_table,
        parquet_writer,
        user_attributes,
    )
    from absorb_sync.export_checks import GATE_COLUMNS, ExportChecks
    from absorb_sync.export_report import ComplianceAggregates

    use_system_allocator()
    catalog = {c["id"]: c.get("name") for c in hook.list_courses()}
    unknown = sorted(set(course_ids or []) - set(catalog))
    if unknown:
        raise ValueError(f"course_ids not found in Absorb: {unknown}")
    selected = sorted(course_ids) if course_ids else sorted(catalog)
    odata = window_filter(window)
    departments = {d["id"]: d.get("name") for d in hook.list_departments()}
    people = last_feed_people(state, output_root)
    budget = max(1, hook.settings.max_concurrency or 1)  # requests in flight at most
    attributes = user_attributes(
        user_table(hook, concurrency=min(budget, EXTRACT_CONCURRENCY)), departments, people
    )
    attribute_index = KeyIndex(attributes.column("id"))
    workers = max(1, min(concurrency or EXTRACT_CONCURRENCY, budget))
    per_course = max(1, budget // workers)  # a long course's pages are read several at a time too
    pages = tables_by_course(
        lambda course_id: hook.course_enrollment_tables(
            course_id, filter=odata, prefetch=False, concurrency=per_course
        ),
        selected,
        concurrency=workers,
        depth=READ_AHEAD_PAGES,
    )
    aggregates = ComplianceAggregates()
    checks = ExportChecks(export_schema().names, now)  # the gate's exact counts, in the same pass
    target = folder / "export.parquet"
    staging = folder / STAGING
    _remove(staging)
    csv = CsvWriter(staging / "completions.csv")
    parts = (
        GroupedPartitionWriter(staging / "completions", "course_id") if partition_by == "course_id" else None
    )

    def write(writer: Any, table: Any) -> None:  # in the write-behind thread, batch after batch
        nonlocal parts
        writer.write_table(table)
        aggregates.add(table)
        checks.add(table)
        csv.write(table)
        if parts is not None and not parts.write(table):  # not grouped: write_outputs partitions
            parts.close()
            _remove(staging / "completions")
            parts = None

    try:
        with (
            target.open("wb") as handle,
            parquet_writer(handle, export_schema()) as writer,
            WriteBehind(lambda table: write(writer, table), depth=1) as behind,
        ):
            for batch in _batches(pages, BATCH_ROWS):
                behind.put(
                    normalise_table(
                        batch,
                        now=now,
                        attributes=attributes,
                        course_names=catalog,
                        attribute_index=attribute_index,
                    )
                )
        csv.close()
        staged_files = parts.close() if parts is not None else None
        checks.finish(lambda: export_batches(target, list(GATE_COLUMNS)))  # reads only on a repeated key hash
        checks.save(folder, {"rows": checks.rows, "bytes": target.stat().st_size})
    except BaseException:
        target.unlink(missing_ok=True)  # never leave a half export that looks complete
        csv.close()
        if parts is not None:
            parts.close()
        _remove(staging)
        raise
    write_json(
        staging / "manifest.json",
        {
            "csv": "completions.csv",
            "partition_by": "course_id" if staged_files is not None else None,
            "parquet_files": len(staged_files) if staged_files is not None else None,
            "rows": aggregates.rows,
        },
    )
    write_json(folder / "export_aggregates.json", aggregates.to_json())
    return {
        "window": dict(window),
        "courses": len(selected),
        "rows": aggregates.rows,
        "completed": aggregates.completed,
        "hr_feed_attributes": people is not None,
        "read_concurrency": workers,
    }


def _batches(pages: Any, rows: int) -> Any:
    """The pages of ``(course_id, page)`` joined into tables of at least ``rows`` rows (the last
    may be smaller)."""
    import pyarrow as pa

    pending: list[Any] = []
    size = 0
    for _course_id, page in pages:
        pending.append(page)
        size += page.num_rows
        if size >= rows:
            yield pa.concat_tables(pending)
            pending, size = [], 0
    if pending:
        yield pa.concat_tables(pending)


USER_COLUMNS = ("id", "externalId", "departmentId", "location", "jobTitle")


def user_table(hook: Any, concurrency: int = 1) -> Any:
    """Every Absorb user's id, external id, department, location and job title, as Arrow pages
    parsed in C++ (100,000 users is a few MB, not 100,000 dicts)."""
    import pyarrow as pa

    columns = dict.fromkeys(USER_COLUMNS, "string")
    pages = list(hook.user_tables(columns, concurrency=concurrency))
    return pa.concat_tables(pages) if pages else pa.schema([(c, pa.string()) for c in columns]).empty_table()


def last_feed_people(state: Any, output_root: ObjectStoragePath) -> Any:
    """The accepted people of the last accepted sync run (employee id and HR attributes, as an
    Arrow table), if its snapshot is still there."""
    import pyarrow.parquet as pq

    from absorb_sync.export import HR_COLUMNS

    accepted = state.last_accepted_feed()
    if not accepted or not accepted.get("run_id"):
        return None
    snapshot = output_root / SYNC_DAG_ID / run_key(accepted["run_id"]) / "accepted.parquet"
    if not snapshot.exists():
        return None
    with snapshot.open("rb") as handle:
        present = pq.ParquetFile(handle).schema_arrow.names
    with snapshot.open("rb") as handle:
        return pq.read_table(handle, columns=[c for c in ("employee_id", *HR_COLUMNS) if c in present])


def gate_export(
    *,
    folder: ObjectStoragePath,
    state: Any,
    window: Mapping[str, Any],
    drop_tolerance_pct: float,
    now: datetime,
) -> dict:
    """GX export gate: exact counts over every row (the extract's, kept with the file, when they
    describe this very file; else counted here), GX on a bounded sample; the full validation
    result is saved next to the outputs."""
    from absorb_sync.export_checks import ExportChecks
    from absorb_sync.gates.export_gate import validate_export_file

    previous = state.last_export()
    comparable = window["full"] and previous and previous.get("full")
    result = validate_export_file(
        folder / "export.parquet",
        previous_completed_count=previous.get("completed") if comparable else None,
        drop_tolerance_pct=drop_tolerance_pct,
        now=now,
        counted=ExportChecks.load(folder),
    )
    result.save(folder / "export_validation.json")
    summary = result.summary()
    write_json(folder / "export_gate.json", summary)
    if not result.passed:
        _remove(folder / STAGING)  # a refused export is never published, not even from staging
    result.raise_if_failed()
    return summary


def write_outputs(
    *,
    folder: ObjectStoragePath,
    output_path: str | None,
    run_id: str,
    partition_by: str,
    sql_conn_id: str | None,
    sql_table: str,
) -> dict:
    """Partitioned Parquet + one CSV (to ``output_path/<run>`` or the run folder); optional SQL
    upsert. Each reads ``export.parquet`` batch by batch."""
    from absorb_sync.export import count_rows, upsert_sql, write_csv, write_partitioned_parquet

    source = folder / "export.parquet"
    target = storage_path(output_path) / run_key(run_id) if output_path else folder
    target.mkdir(parents=True, exist_ok=True)
    staging = folder / STAGING
    manifest = read_json(staging / "manifest.json") if (staging / "manifest.json").exists() else {}
    if manifest.get("partition_by") == partition_by and (staging / "completions").exists():
        parquet_count = _publish(staging / "completions", target / "completions")
    else:
        parquet_count = len(write_partitioned_parquet(source, target / "completions", partition_by))
    if manifest.get("csv") and (staging / "completions.csv").exists():
        _publish(staging / "completions.csv", target / "completions.csv")
        csv_file = str(target / "completions.csv")
    else:
        csv_file = write_csv(source, target / "completions.csv")
    _remove(staging)
    upserted = upsert_sql(source, sql_conn_id, sql_table) if sql_conn_id else None
    return {
        "data_folder": str(target),
        "parquet_files": parquet_count,
        "csv": csv_file,
        "rows": count_rows(source),
        "sql_upserted": upserted,
        "sql_table": sql_table if sql_conn_id else None,
    }


def _remove(path: Any) -> None:
    """Deletes a file or folder tree if it is there."""
    if path.exists():
        path.fs.rm(path.path, recursive=True)


def _publish(staged: Any, target: Any) -> int:
    """Moves a staged file or folder to ``target`` (replacing it): a rename on the local file
    system, else a copy file by file. Returns the number of files."""
    import os
    import shutil

    if target.exists():
        _remove(target)
    files = [staged] if staged.is_file() else [p for p in staged.rglob("*") if p.is_file()]
    if staged.protocol in ("file", "local") and target.protocol in ("file", "local"):
        os.makedirs(os.path.dirname(target.path), exist_ok=True)
        os.replace(staged.path, target.path)
        return len(files)
    for path in files:
        destination = target if path == staged else target / str(path.relative_to(staged))
        destination.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as source, destination.open("wb") as sink:
            shutil.copyfileobj(source, sink, 8 << 20)
    return len(files)


def report_and_record(
    *,
    folder: ObjectStoragePath,
    state: Any,
    run_id: str,
    window: Mapping[str, Any],
    written: Mapping[str, Any],
    now: datetime,
) -> dict:
    """Compliance report (HTML + charts) from the extract's aggregates, run summary, and the
    export recorded in the state."""
    from absorb_sync.export_report import ComplianceAggregates, compliance_html, load_history
    from absorb_sync.report import write_html

    aggregates = ComplianceAggregates.from_json(read_json(folder / "export_aggregates.json"))
    scope = "full export" if window["full"] else f"enrollments edited {window['since']} .. {window['until']}"
    history = load_history(folder) if window["full"] else ()  # earlier full exports' aggregates
    html = compliance_html(
        aggregates, title=f"Absorb completion export {run_id}", scope=scope, now=now, history=history
    )
    report = write_html(folder / "compliance_report.html", html)
    summary = {
        "run_id": run_id,
        "full": window["full"],
        "since": window["since"],
        "until": window["until"],
        "rows": aggregates.rows,
        "completed": aggregates.completed,
        "overdue": aggregates.overdue,
        "report": report,
        "data_folder": written.get("data_folder"),
        "sql_upserted": written.get("sql_upserted"),
    }
    write_json(folder / "summary.json", summary)
    state.record_export(summary)
    return summary
