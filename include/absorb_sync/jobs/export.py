"""Jobs of ``absorb_completion_export``: extract -> gate -> write (Parquet, CSV, SQL) -> report.

Incremental by ``dateEdited`` in ``[since, until)``: the run's data interval for scheduled and
backfill runs; for a manual run the end of the last export up to now; a full export when asked
or when there is no previous export. The completed-count drop check compares full exports with full exports only
(an increment's completed count says nothing about a drop).

Run folder: ``export.parquet`` (the normalised table), ``export_validation.json``,
``completions/<partition>=<value>/part-0.parquet``, ``completions.csv``, ``compliance_report.html``,
``summary.json``. ``output_path`` sends the data files elsewhere (any ObjectStoragePath).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from absorb_sync.jobs.runtime import (
    SYNC_DAG_ID,
    read_frame,
    run_key,
    storage_path,
    write_frame,
    write_json,
)

if TYPE_CHECKING:
    import pandas as pd
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


def extract_enrollments(
    *,
    folder: ObjectStoragePath,
    hook: Any,
    course_ids: list[str] | None,
    window: Mapping[str, Any],
    state: Any,
    output_root: ObjectStoragePath,
    now: datetime,
) -> dict:
    """Paged reads per course, joined to users (employee id) and the last accepted HR feed."""
    from absorb_sync.export import normalise_enrollments

    catalog = {c["id"]: c.get("name") for c in hook.list_courses()}
    unknown = sorted(set(course_ids or []) - set(catalog))
    if unknown:
        raise ValueError(f"course_ids not found in Absorb: {unknown}")
    selected = sorted(course_ids) if course_ids else sorted(catalog)
    odata = window_filter(window)
    rows: list[dict] = []
    for course_id in selected:
        rows.extend(hook.list_course_enrollments(course_id, filter=odata))
    users = list(hook.list_users())
    departments = {d["id"]: d.get("name") for d in hook.list_departments()}
    people = last_feed_people(state, output_root)
    frame = normalise_enrollments(
        rows, now=now, users=users, people=people, departments=departments, course_names=catalog
    )
    write_frame(folder / "export.parquet", frame)
    return {
        "window": dict(window),
        "courses": len(selected),
        "rows": len(frame),
        "completed": int(frame["is_completed"].sum()),
        "hr_feed_attributes": people is not None,
    }


def last_feed_people(state: Any, output_root: ObjectStoragePath) -> pd.DataFrame | None:
    """The accepted people of the last accepted sync run, if its snapshot is still there."""
    accepted = state.last_accepted_feed()
    if not accepted or not accepted.get("run_id"):
        return None
    snapshot = output_root / SYNC_DAG_ID / run_key(accepted["run_id"]) / "accepted.parquet"
    return read_frame(snapshot) if snapshot.exists() else None


def gate_export(
    *,
    folder: ObjectStoragePath,
    state: Any,
    window: Mapping[str, Any],
    drop_tolerance_pct: float,
    now: datetime,
) -> dict:
    """GX export gate; the full validation result is saved next to the outputs."""
    from absorb_sync.gates import validate_export

    frame = read_frame(folder / "export.parquet")
    previous = state.last_export()
    comparable = window["full"] and previous and previous.get("full")
    result = validate_export(
        frame,
        previous_completed_count=previous.get("completed") if comparable else None,
        drop_tolerance_pct=drop_tolerance_pct,
        now=now,
    )
    result.save(folder / "export_validation.json")
    summary = result.summary()
    write_json(folder / "export_gate.json", summary)
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
    """Partitioned Parquet + one CSV (to ``output_path/<run>`` or the run folder); optional SQL upsert."""
    from absorb_sync.export import upsert_sql, write_csv, write_partitioned_parquet

    frame = read_frame(folder / "export.parquet")
    target = storage_path(output_path) / run_key(run_id) if output_path else folder
    target.mkdir(parents=True, exist_ok=True)
    parquet_files = write_partitioned_parquet(frame, target / "completions", partition_by)
    csv_file = write_csv(frame, target / "completions.csv")
    upserted = upsert_sql(frame, sql_conn_id, sql_table) if sql_conn_id else None
    return {
        "data_folder": str(target),
        "parquet_files": len(parquet_files),
        "csv": csv_file,
        "rows": len(frame),
        "sql_upserted": upserted,
        "sql_table": sql_table if sql_conn_id else None,
    }


def report_and_record(
    *,
    folder: ObjectStoragePath,
    state: Any,
    run_id: str,
    window: Mapping[str, Any],
    written: Mapping[str, Any],
    now: datetime,
) -> dict:
    """Compliance report (HTML + charts), run summary, and the export recorded in the state."""
    from absorb_sync.report import compliance_report, write_html

    frame = read_frame(folder / "export.parquet")
    scope = "full export" if window["full"] else f"enrollments edited {window['since']} .. {window['until']}"
    report = write_html(
        folder / "compliance_report.html",
        compliance_report(frame, title=f"Absorb completion export {run_id}", scope=scope, now=now),
    )
    summary = {
        "run_id": run_id,
        "full": window["full"],
        "since": window["since"],
        "until": window["until"],
        "rows": len(frame),
        "completed": int(frame["is_completed"].sum()),
        "overdue": int(frame["is_overdue"].sum()),
        "report": report,
        "data_folder": written.get("data_folder"),
        "sql_upserted": written.get("sql_upserted"),
    }
    write_json(folder / "summary.json", summary)
    state.record_export(summary)
    return summary
