"""Completion export: Absorb enrollment rows -> one tidy, typed table, and writers for it.

`normalise_enrollments` produces the columns `absorb_sync.gates.validate_export` checks:

==================  ==========================================================================
enrollment_id       Absorb enrollment id (``id``)
user_id, course_id  Absorb ids
course_name         ``courseName`` (falls back to the course catalogue)
employee_id         the user's ``externalId`` (HR employee id), when the user is known
full_name           ``fullName``
status              int 0..12 (Absorb enrollment status enum)
status_name         NotStarted, InProgress, ..., ReadyForReview
is_completed        status == 3
progress, score     float 0..100 or NA
is_active           bool (False = re-enrollment history)
date_enrolled       ``dateAdded``          } all timezone-aware UTC timestamps,
date_started        ``dateStarted``        } NaT when absent
date_completed      ``dateCompleted``      }
date_due            ``dateDue``            }
date_expires        ``dateExpires``        }
date_edited         ``dateEdited``         }
time_spent_seconds  float; from ``timeSpentTicks`` (100 ns) or the .NET TimeSpan ``timeSpent``
is_overdue          not completed, active, and due before ``now``
department          HR feed department (last accepted feed), else Absorb department name
job_title, location HR feed attributes (else the enrollment's ``jobTitle`` / NA)
==================  ==========================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported lazily: this module is imported by task code only
    import pandas as pd

STATUS_NAMES: dict[int, str] = {
    0: "NotStarted",
    1: "InProgress",
    2: "PendingApproval",
    3: "Complete",
    4: "NotComplete",
    5: "Failed",
    6: "Declined",
    7: "PendingEvaluationRequired",
    8: "OnWaitlist",
    9: "Absent",
    10: "NotApplicable",
    11: "PendingProctor",
    12: "ReadyForReview",
}
COMPLETE = 3

EXPORT_COLUMNS = [
    "enrollment_id",
    "user_id",
    "course_id",
    "course_name",
    "employee_id",
    "full_name",
    "status",
    "status_name",
    "is_completed",
    "progress",
    "score",
    "is_active",
    "date_enrolled",
    "date_started",
    "date_completed",
    "date_due",
    "date_expires",
    "date_edited",
    "time_spent_seconds",
    "is_overdue",
    "department",
    "job_title",
    "location",
]
_DATE_FIELDS = {
    "date_enrolled": "dateAdded",
    "date_started": "dateStarted",
    "date_completed": "dateCompleted",
    "date_due": "dateDue",
    "date_expires": "dateExpires",
    "date_edited": "dateEdited",
}
_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,7}))?$"
)


def timespan_seconds(value: Any) -> float | None:
    """Seconds in a .NET TimeSpan string ``[-][d.]hh:mm:ss[.fffffff]``; None when absent or unreadable."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    match = _TIMESPAN.match(text.lstrip("-"))
    if not match:
        return None
    seconds = (
        int(match["days"] or 0) * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + int(match["s"])
    )
    fraction = match["frac"]
    if fraction:
        seconds += int(fraction.ljust(7, "0")) / 10_000_000
    return sign * float(seconds)


def _time_spent(row: Mapping[str, Any]) -> float | None:
    ticks = row.get("timeSpentTicks")
    if ticks is not None and ticks == ticks:
        return int(ticks) / 10_000_000
    return timespan_seconds(row.get("timeSpent"))


def normalise_enrollments(
    rows: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    users: Iterable[Mapping[str, Any]] = (),
    people: pd.DataFrame | None = None,
    departments: Mapping[str, str] | None = None,
    course_names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Absorb enrollment dicts -> the export table (see module doc), sorted by enrollment id.

    ``users`` are Absorb user dicts (id, externalId, departmentId...) giving the employee id;
    ``people`` is the last accepted HR feed (canonical columns), whose attributes win because
    the HR system is the source of truth for who works where.
    """
    import pandas as pd

    raw = pd.DataFrame(list(rows))
    if raw.empty:
        return _empty_export()
    frame = pd.DataFrame(
        {
            "enrollment_id": raw["id"].astype("string"),
            "user_id": raw["userId"].astype("string"),
            "course_id": raw["courseId"].astype("string"),
            "course_name": _column(raw, "courseName").astype("string"),
            "full_name": _column(raw, "fullName").astype("string"),
            "status": pd.to_numeric(raw["status"], errors="coerce").astype("Int64"),
            "progress": pd.to_numeric(_column(raw, "progress"), errors="coerce").astype("Float64"),
            "score": pd.to_numeric(_column(raw, "score"), errors="coerce").astype("Float64"),
            "is_active": _column(raw, "isActive", default=True).fillna(True).astype("boolean"),
            "time_spent_seconds": pd.Series(
                [_time_spent(r) for r in raw.to_dict("records")], dtype="Float64"
            ),
            "_job_title_lms": _column(raw, "jobTitle").astype("string"),
        }
    )
    for column, field in _DATE_FIELDS.items():
        frame[column] = _utc(_column(raw, field))
    if course_names:
        frame["course_name"] = frame["course_name"].fillna(frame["course_id"].map(course_names))
    frame["status_name"] = frame["status"].map(STATUS_NAMES).astype("string")
    frame["is_completed"] = (frame["status"] == COMPLETE).fillna(False).astype("boolean")
    now_ts = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    frame["is_overdue"] = (
        (~frame["is_completed"])
        & frame["is_active"]
        & frame["date_due"].notna()
        & (frame["date_due"] < now_ts)
    ).astype("boolean")
    frame = _attach_people(frame, users, people, departments or {})
    return frame[EXPORT_COLUMNS].sort_values("enrollment_id", ignore_index=True)


def _attach_people(
    frame: pd.DataFrame,
    users: Iterable[Mapping[str, Any]],
    people: pd.DataFrame | None,
    departments: Mapping[str, str],
) -> pd.DataFrame:
    import pandas as pd

    user_rows = pd.DataFrame(list(users))
    if user_rows.empty:
        user_rows = pd.DataFrame(columns=["id", "externalId", "departmentId", "location", "jobTitle"])
    user_rows = user_rows.reindex(columns=["id", "externalId", "departmentId", "location", "jobTitle"])
    by_user = user_rows.drop_duplicates("id").set_index("id")
    frame["employee_id"] = frame["user_id"].map(by_user["externalId"]).astype("string")
    frame["department"] = frame["user_id"].map(by_user["departmentId"].map(departments)).astype("string")
    frame["location"] = frame["user_id"].map(by_user["location"]).astype("string")
    frame["job_title"] = frame["user_id"].map(by_user["jobTitle"]).astype("string")
    frame["job_title"] = frame["job_title"].fillna(frame.pop("_job_title_lms"))
    if people is not None and not people.empty:
        hr = people.drop_duplicates("employee_id").set_index("employee_id")
        for column in ("department", "job_title", "location"):
            if column in hr.columns:
                from_hr = frame["employee_id"].map(hr[column]).astype("string")
                frame[column] = from_hr.fillna(frame[column])
    return frame


def _column(raw: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    import pandas as pd

    if name in raw.columns:
        return raw[name]
    return pd.Series([default] * len(raw), index=raw.index, dtype="object")


def _utc(values: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601").astype("datetime64[us, UTC]")


def _empty_export() -> pd.DataFrame:
    import pandas as pd

    dtypes = {column: "string" for column in EXPORT_COLUMNS}
    dtypes.update({c: "datetime64[us, UTC]" for c in _DATE_FIELDS})
    dtypes.update(
        status="Int64",
        progress="Float64",
        score="Float64",
        time_spent_seconds="Float64",
        is_active="boolean",
        is_completed="boolean",
        is_overdue="boolean",
    )
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in EXPORT_COLUMNS})


def write_partitioned_parquet(frame: pd.DataFrame, folder: Any, partition_by: str = "course_id") -> list[str]:
    """Hive-style partitions ``folder/<key>=<value>/part-0.parquet`` on any ObjectStoragePath.

    Written file by file through the path's own ``open`` so local folders, S3 and GCS behave the
    same. ``course_id`` partitions drop the column from the files (readers such as pyarrow and
    Spark restore it from the folder name); date partitions are named ``<column>_day`` and keep
    the full timestamp column.
    """
    if partition_by not in {"course_id", "date_completed", "date_edited"}:
        raise ValueError(
            f"cannot partition by {partition_by!r}: use course_id, date_completed or date_edited"
        )
    if partition_by == "course_id":
        name, keys, data = partition_by, frame[partition_by], frame.drop(columns=[partition_by])
    else:
        name, keys, data = f"{partition_by}_day", frame[partition_by].dt.strftime("%Y-%m-%d"), frame
    written = []
    for key, part in data.groupby(keys.astype("string").fillna("none"), sort=True):
        target = folder / f"{name}={key}" / "part-0.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            part.to_parquet(handle, index=False)
        written.append(str(target))
    return written


def write_csv(frame: pd.DataFrame, target: Any) -> str:
    """CSV with ISO-8601 UTC dates (``Z``-less offset form), through the path's ``open``; formula
    cells are escaped (see :mod:`absorb_provider.csv_safety`)."""
    from absorb_provider.csv_safety import escape_frame

    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="") as handle:
        escape_frame(frame).to_csv(handle, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return str(target)


SQL_COLUMN_TYPES = {
    "status": "INTEGER",
    "progress": "DOUBLE PRECISION",
    "score": "DOUBLE PRECISION",
    "time_spent_seconds": "DOUBLE PRECISION",
    "is_active": "BOOLEAN",
    "is_completed": "BOOLEAN",
    "is_overdue": "BOOLEAN",
    **{c: "TIMESTAMPTZ" for c in _DATE_FIELDS},
}
_SAFE_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def upsert_sql(frame: pd.DataFrame, conn_id: str, table: str) -> int:
    """Upsert the export into ``table`` (created if missing) keyed on ``enrollment_id``.

    Goes through the connection's common-sql hook (``insert_rows(replace=True)`` gives
    ``INSERT ... ON CONFLICT (enrollment_id) DO UPDATE`` on PostgreSQL), so re-running an export
    updates rows instead of duplicating them.
    """
    from airflow.sdk import BaseHook

    if not _SAFE_TABLE.match(table):
        raise ValueError(f"sql_table {table!r} is not a plain [schema.]table name")
    hook = BaseHook.get_connection(conn_id).get_hook()
    columns = ", ".join(
        f"{c} {SQL_COLUMN_TYPES.get(c, 'TEXT')}{' PRIMARY KEY' if c == 'enrollment_id' else ''}"
        for c in EXPORT_COLUMNS
    )
    hook.run(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    if frame.empty:
        return 0
    rows = [tuple(_sql_value(v) for v in record) for record in frame[EXPORT_COLUMNS].itertuples(index=False)]
    hook.insert_rows(
        table,
        rows,
        target_fields=EXPORT_COLUMNS,
        replace=True,
        replace_index="enrollment_id",
        commit_every=1000,
    )
    return len(rows)


def _sql_value(value: Any) -> Any:
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value
