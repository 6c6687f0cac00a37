"""Completion export: Absorb enrollment pages -> one tidy, typed table, and writers for it.

Everything runs on Arrow batches, so a million enrollments never sit in memory at once:
:func:`normalise_table` turns one page batch (``absorb_provider.io.COURSE_ENROLLMENT_FIELDS``,
timestamps still text) into the export columns, vectorised; :func:`user_attributes` is the
users/HR join table (one row per Absorb user) it takes; the writers (:func:`write_partitioned_parquet`,
:func:`write_csv`, :func:`upsert_sql`) read a Parquet file (or a frame) batch by batch.
:func:`normalise_enrollments` is the same for dict rows, returning a pandas frame.

The export columns (what `absorb_sync.gates.validate_export` checks):

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

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas/pyarrow are imported lazily: this module is imported by task code only
    import pandas as pd
    import pyarrow as pa

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


BATCH_ROWS = 20_000  # rows per Arrow batch / Parquet row group while streaming
PARTITION_BUFFER_ROWS = 100_000  # rows held at most when regrouping an export by date
USER_FIELDS = ("id", "externalId", "departmentId", "location", "jobTitle")
HR_COLUMNS = ("department", "job_title", "location")
_ATTRIBUTE_COLUMNS = ("id", "employee_id", "department", "job_title", "location")


_INT_COLUMNS = ("status",)
_FLOAT_COLUMNS = ("progress", "score", "time_spent_seconds")
_BOOL_COLUMNS = ("is_completed", "is_active", "is_overdue")


@functools.cache
def export_schema(drop: tuple[str, ...] = ()) -> pa.Schema:
    """The Arrow schema of the export, with the pandas metadata a pandas-written file has (what
    ``pa.Schema.from_pandas`` gives for the export frame), so ``pd.read_parquet`` gives the same
    dtypes: string, Int64, Float64, boolean, UTC datetimes. Built without pandas (none of the
    extract's or writers' own code needs it; pyarrow itself still loads it the first time it
    converts a Python list, so the extract's process holds it all the same)."""
    import json
    from importlib import metadata

    import pyarrow as pa

    fields, described = [], []
    for name in EXPORT_COLUMNS:
        if name in drop:
            continue
        if name in _INT_COLUMNS:
            kind, pandas_type, numpy_type, extra = pa.int64(), "int64", "Int64", None
        elif name in _FLOAT_COLUMNS:
            kind, pandas_type, numpy_type, extra = pa.float64(), "float64", "Float64", None
        elif name in _BOOL_COLUMNS:
            kind, pandas_type, numpy_type, extra = pa.bool_(), "bool", "boolean", None
        elif name in _DATE_FIELDS:
            kind, pandas_type, numpy_type = pa.timestamp("us", tz="UTC"), "datetimetz", "datetime64[us]"
            extra = {"timezone": "UTC"}
        else:
            kind, pandas_type, numpy_type, extra = pa.large_string(), "object", "string", None
        fields.append(pa.field(name, kind))
        described.append(
            {
                "name": name,
                "field_name": name,
                "pandas_type": pandas_type,
                "numpy_type": numpy_type,
                "metadata": extra,
            }
        )
    try:
        pandas_version = metadata.version("pandas")
    except metadata.PackageNotFoundError:
        pandas_version = "3.0.0"
    pandas = {
        "index_columns": [],
        "column_indexes": [],
        "columns": described,
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": pandas_version,
    }
    return pa.schema(fields, metadata={b"pandas": json.dumps(pandas).encode()})


# columns whose values repeat (people, courses, names, scores): dictionary-encoded in Parquet;
# unique ids and timestamps are not (a dictionary there is built and then abandoned: wasted work)
DICTIONARY_COLUMNS = (
    "user_id",
    "course_id",
    "course_name",
    "employee_id",
    "full_name",
    "status",
    "status_name",
    "progress",
    "score",
    "time_spent_seconds",
    "department",
    "job_title",
    "location",
)


def parquet_writer(sink: Any, schema: pa.Schema) -> Any:
    """A ``ParquetWriter`` for export data: snappy, dictionaries only where values repeat."""
    import pyarrow.parquet as pq

    dictionary = [name for name in DICTIONARY_COLUMNS if name in schema.names]
    return pq.ParquetWriter(sink, schema, compression="snappy", use_dictionary=dictionary)


# --- normalising ---------------------------------------------------------------------------------


def user_attributes(
    users: Any = (),
    departments: Mapping[str, str] | None = None,
    people: Any = None,
) -> pa.Table:
    """One row per Absorb user: ``id, employee_id, department, job_title, location``.

    ``users`` are Absorb users (an Arrow table or dicts with ``USER_FIELDS``; the first row of an
    id wins); ``departments`` maps department ids to names; ``people`` (pandas or Arrow: the last
    accepted HR feed, canonical columns) wins where it has a value, because the HR system is the
    source of truth for who works where. Joined to each batch by :func:`normalise_table`.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _as_string_table(users, USER_FIELDS)
    table = _first_rows(table, "id")
    dept_ids, dept_names = _mapping_arrays(departments or {})
    employee = table.column("externalId")
    values = {
        "department": _lookup(table.column("departmentId"), dept_ids, dept_names),
        "job_title": table.column("jobTitle"),
        "location": table.column("location"),
    }
    hr = _people_table(people)
    if hr is not None and hr.num_rows:
        hr = _first_rows(hr, "employee_id")
        position = _positions(employee, hr.column("employee_id"))
        for column in HR_COLUMNS:
            if column in hr.column_names:
                values[column] = pc.coalesce(hr.column(column).take(position), values[column])
    return pa.table(
        {"id": table.column("id"), "employee_id": employee, **values},
        schema=pa.schema([(name, pa.string()) for name in _ATTRIBUTE_COLUMNS]),
    )


class KeyIndex:
    """Where strings are in a fixed array, for many look-ups: the build side of a hash join,
    hashed once. Arrow's ``index_in`` re-hashes its whole value set on every call (100,000 user
    ids for each 20,000-row batch of an export: the batch's most expensive step); here each call
    hashes only its keys, finds them by binary search among the sorted hashes and confirms them
    by comparing the strings (a hash collision falls back to ``index_in`` for its rows)."""

    def __init__(self, values: Any) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from absorb_sync.export_checks import string_hashes

        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        self.values = pc.cast(values, pa.string())
        valid = pc.is_valid(self.values).to_numpy(zero_copy_only=False)
        hashes = string_hashes(self.values.filter(valid))
        order = np.argsort(hashes, kind="stable")  # equal values: the first row first, as index_in
        self._hashes = hashes[order]
        self._rows = np.flatnonzero(valid)[order].astype(np.int32)  # index_in's type

    def positions(self, keys: Any) -> Any:
        """Each key's row in the values (the first when repeated), null when absent or null."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from absorb_sync.export_checks import string_hashes

        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        keys = pc.cast(keys, pa.string())
        if not len(self._hashes) or not len(keys):
            return pa.nulls(len(keys), pa.int32())
        valid = pc.is_valid(keys).to_numpy(zero_copy_only=False)
        hashes = string_hashes(pc.fill_null(keys, ""))
        slot = np.minimum(np.searchsorted(self._hashes, hashes), len(self._hashes) - 1)
        hit = valid & (self._hashes[slot] == hashes)
        rows = pa.array(self._rows[slot], mask=~hit)
        confirmed = pc.fill_null(pc.equal(self.values.take(rows), keys), False).to_numpy(zero_copy_only=False)
        unsure = hit & ~confirmed  # another string with the same hash (or its twin came first)
        if unsure.any():
            found = pc.index_in(keys.filter(unsure), value_set=self.values, skip_nulls=True)
            result = np.where(confirmed, self._rows[slot], np.int32(-1))
            result[unsure] = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
            return pa.array(result, mask=result < 0)
        return rows


def normalise_table(
    raw: pa.Table,
    *,
    now: datetime,
    attributes: pa.Table | None = None,
    course_names: Mapping[str, str] | None = None,
    attribute_index: KeyIndex | None = None,
) -> pa.Table:
    """One batch of raw enrollment rows (``absorb_provider.io.raw_arrow_schema``) -> export table.

    Vectorised with Arrow compute; the rows keep their order. ``attributes`` is
    :func:`user_attributes` (joined on ``user_id``; ``attribute_index``, a :class:`KeyIndex` of
    its ids, saves hashing them again for every batch), ``course_names`` fills missing course names.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    count = raw.num_rows

    def column(name: str, kind: Any = None) -> Any:
        if name in raw.column_names:
            return raw.column(name)
        return pa.nulls(count, kind or pa.string())

    status = pc.cast(column("status", pa.int64()), pa.int64())
    course_id = pc.cast(column("courseId"), pa.string())
    is_active = pc.fill_null(pc.cast(column("isActive", pa.bool_()), pa.bool_()), True)
    dates = {
        name: _utc_timestamps(pc.cast(column(field), pa.string())) for name, field in _DATE_FIELDS.items()
    }
    is_completed = pc.fill_null(pc.equal(status, COMPLETE), False)
    now_scalar = pa.scalar(_utc_datetime(now), type=pa.timestamp("us", tz="UTC"))
    due_passed = pc.fill_null(pc.less(dates["date_due"], now_scalar), False)
    is_overdue = pc.and_(pc.and_(pc.invert(is_completed), is_active), due_passed)
    course_name = pc.cast(column("courseName"), pa.string())
    if course_names:
        ids, names = _mapping_arrays(course_names)
        course_name = pc.coalesce(course_name, _lookup(course_id, ids, names))
    status_names = pa.array([STATUS_NAMES[n] for n in range(len(STATUS_NAMES))], pa.string())
    in_range = pc.and_(pc.greater_equal(status, 0), pc.less(status, len(STATUS_NAMES)))
    status_name = status_names.take(pc.if_else(in_range, status, pa.scalar(None, pa.int64())))
    user_id = pc.cast(column("userId"), pa.string())
    job_title = pc.cast(column("jobTitle"), pa.string())
    if attributes is not None:
        position = (attribute_index or KeyIndex(attributes.column("id"))).positions(user_id)
        employee_id, department, user_job, location = (
            attributes.column(name).take(position)
            for name in ("employee_id", "department", "job_title", "location")
        )
        job_title = pc.coalesce(user_job, job_title)
    else:
        employee_id = department = location = pa.nulls(count, pa.string())
    values = {
        "enrollment_id": column("id"),
        "user_id": user_id,
        "course_id": course_id,
        "course_name": course_name,
        "employee_id": employee_id,
        "full_name": column("fullName"),
        "status": status,
        "status_name": status_name,
        "is_completed": is_completed,
        "progress": column("progress", pa.float64()),
        "score": column("score", pa.float64()),
        "is_active": is_active,
        **dates,
        "time_spent_seconds": _time_spent_seconds(column("timeSpentTicks", pa.int64()), column("timeSpent")),
        "is_overdue": is_overdue,
        "department": department,
        "job_title": job_title,
        "location": location,
    }
    schema = export_schema()
    return pa.Table.from_arrays([pc.cast(values[field.name], field.type) for field in schema], schema=schema)


def normalise_enrollments(
    rows: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    users: Iterable[Mapping[str, Any]] = (),
    people: pd.DataFrame | None = None,
    departments: Mapping[str, str] | None = None,
    course_names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Absorb enrollment dicts -> the export table (see module doc) as pandas, sorted by id.

    The same computation as the streaming path (:func:`normalise_table`), for small inputs.
    """
    import pyarrow as pa
    from absorb_provider.io import COURSE_ENROLLMENT_FIELDS, raw_arrow_schema

    rows = list(rows)
    if not rows:
        return _empty_export()
    raw = pa.Table.from_pylist(rows, schema=raw_arrow_schema(COURSE_ENROLLMENT_FIELDS))
    table = normalise_table(
        raw,
        now=now,
        attributes=user_attributes(users, departments, people),
        course_names=course_names,
    )
    return table.to_pandas().sort_values("enrollment_id", ignore_index=True)


def _utc_timestamps(text: Any) -> Any:
    """ISO 8601 text to ``timestamp[us, UTC]``: Arrow's own cast (``Z`` or an offset, up to 6
    fraction digits: what Absorb sends; ~10x cheaper), else :func:`absorb_provider.io.parse_timestamps`
    (7-digit .NET fractions, bare dates, no zone; unreadable values -> null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(text, pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        from absorb_provider.io import parse_timestamps

        return parse_timestamps(text)


def _utc_datetime(moment: datetime) -> datetime:
    from datetime import UTC

    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _time_spent_seconds(ticks: Any, text: Any) -> Any:
    """``timeSpentTicks`` (100 ns) when present, else the .NET TimeSpan text, in seconds (float)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(ticks, pa.ChunkedArray):
        ticks = ticks.combine_chunks()
    from_ticks = pc.divide(pc.cast(ticks, pa.float64()), 10_000_000.0)
    if not ticks.null_count:  # Absorb sent ticks on every row: no text to parse (a regex per row)
        return from_ticks
    missing = pc.is_null(ticks)
    parsed = timespan_seconds_array(pc.filter(text, missing))
    if isinstance(parsed, pa.ChunkedArray):
        parsed = parsed.combine_chunks()
    return pc.replace_with_mask(from_ticks, missing, parsed)


def timespan_seconds_array(values: Any) -> Any:
    """:func:`timespan_seconds` over an Arrow string array (same values, vectorised)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    negative = pc.starts_with(text, "-")
    parts = pc.extract_regex(pc.utf8_ltrim(text, characters="-"), _TIMESPAN.pattern)
    try:

        def number(name: str) -> Any:
            return pc.cast(pc.utf8_lpad(pc.struct_field(parts, name), width=1, padding="0"), pa.int64())

        whole = pc.add_checked(
            pc.add_checked(pc.multiply_checked(number("days"), 86400), pc.multiply(number("h"), 3600)),
            pc.add(pc.multiply(number("m"), 60), number("s")),
        )
        fraction = pc.divide(
            pc.cast(
                pc.cast(pc.utf8_rpad(pc.struct_field(parts, "frac"), width=7, padding="0"), pa.int64()),
                pa.float64(),
            ),
            10_000_000.0,
        )
        seconds = pc.add(pc.cast(whole, pa.float64()), fraction)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. a day count beyond int64
        return pa.array([timespan_seconds(v) for v in text.to_pylist()], pa.float64())
    signed = pc.if_else(negative, pc.negate(seconds), seconds)
    return pc.if_else(pc.is_valid(parts), signed, pa.scalar(None, pa.float64()))


def _as_string_table(rows: Any, fields: tuple[str, ...]) -> pa.Table:
    """An Arrow table of ``fields`` as strings from an Arrow table or dicts (missing -> null)."""
    import pyarrow as pa

    schema = pa.schema([(name, pa.string()) for name in fields])
    if isinstance(rows, pa.Table):
        count = rows.num_rows
        return pa.table(
            {
                name: rows.column(name).cast(pa.string())
                if name in rows.column_names
                else pa.nulls(count, pa.string())
                for name in fields
            },
            schema=schema,
        )
    records = [{name: _text(row.get(name)) for name in fields} for row in rows]
    return pa.Table.from_pylist(records, schema=schema)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value if isinstance(value, str) else str(value)


def _people_table(people: Any) -> pa.Table | None:
    import pyarrow as pa

    if people is None:
        return None
    if not isinstance(people, pa.Table):
        columns = [c for c in ("employee_id", *HR_COLUMNS) if c in people.columns]
        if "employee_id" not in columns:
            return None
        people = pa.Table.from_pandas(people[columns].astype("string"), preserve_index=False)
    if "employee_id" not in people.column_names:
        return None
    present = [c for c in ("employee_id", *HR_COLUMNS) if c in people.column_names]
    return _as_string_table(people.select(present), tuple(present))


def _first_rows(table: pa.Table, key: str) -> pa.Table:
    """The first row of every non-null ``key`` value, in their original order (drop_duplicates)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numbered = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    numbered = numbered.filter(pc.is_valid(numbered.column(key)))
    firsts = numbered.group_by(key, use_threads=False).aggregate([("_row", "min")]).column("_row_min")
    return table.take(pc.take(firsts, pc.sort_indices(firsts)))


def _mapping_arrays(mapping: Mapping[str, Any]) -> tuple[Any, Any]:
    import pyarrow as pa

    keys = [str(k) for k in mapping]
    return pa.array(keys, pa.string()), pa.array([_text(v) for v in mapping.values()], pa.string())


def _positions(keys: Any, key_values: Any) -> Any:
    """Where each key is in ``key_values`` (null when absent or null): a hash join's probe side."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(key_values, pa.ChunkedArray):
        key_values = key_values.combine_chunks()
    return pc.index_in(keys, options=pc.SetLookupOptions(key_values, skip_nulls=True))


def _lookup(keys: Any, key_values: Any, values: Any) -> Any:
    return values.take(_positions(keys, key_values))


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


# --- reading an export back, batch by batch ---------------------------------------------------------


def export_batches(
    source: Any, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[Any]:
    """Record batches of an export: a Parquet file (path or ObjectStoragePath), an Arrow table or
    a pandas frame in the export columns (a frame's missing columns are null), cast to
    :func:`export_schema` (``columns``: only those)."""
    import pyarrow as pa

    schema = export_schema()
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns], metadata=None)
    if isinstance(source, pa.Table):
        table = source.select(schema.names).cast(schema)
        yield from table.to_batches(max_chunksize=batch_rows)
        return
    if hasattr(source, "columns") and hasattr(source, "iloc"):  # a pandas frame
        for start in range(0, len(source), batch_rows):
            chunk = source.iloc[start : start + batch_rows]
            count = len(chunk)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(chunk[f.name], f.type, from_pandas=True)
                    if f.name in chunk.columns
                    else pa.nulls(count, f.type)
                    for f in schema
                ],
                schema=schema,
            )
        return
    import pyarrow.parquet as pq
    from absorb_provider.io import as_path

    with as_path(source).open("rb") as handle:
        # pre_buffer=False: read a row group at a time (pre-buffering holds much more of the file)
        reader = pq.ParquetFile(handle, pre_buffer=False)
        for batch in reader.iter_batches(batch_size=batch_rows, columns=schema.names, use_threads=False):
            yield batch if batch.schema.types == schema.types else batch.cast(schema)


def count_rows(source: Any) -> int:
    import pyarrow.parquet as pq
    from absorb_provider.io import as_path

    with as_path(source).open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


# --- writers -------------------------------------------------------------------------------------


def write_partitioned_parquet(source: Any, folder: Any, partition_by: str = "course_id") -> list[str]:
    """Hive-style partitions ``folder/<key>=<value>/part-0.parquet`` on any ObjectStoragePath.

    ``source``: an export Parquet file, Arrow table or pandas frame (read batch by batch). Written
    file by file through the path's own ``open`` so local folders, S3 and GCS behave the same.
    ``course_id`` partitions drop the column from the files (readers such as pyarrow and Spark
    restore it from the folder name); date partitions are named ``<column>_day`` and keep the full
    timestamp column. An export grouped by the key (the extract writes course after course) is
    written in one pass with one file open; otherwise keys are regrouped in passes that hold at
    most ``PARTITION_BUFFER_ROWS`` rows (a key bigger than that streams on its own).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if partition_by not in {"course_id", "date_completed", "date_edited"}:
        raise ValueError(
            f"cannot partition by {partition_by!r}: use course_id, date_completed or date_edited"
        )
    name = partition_by if partition_by == "course_id" else f"{partition_by}_day"
    drop = (partition_by,) if partition_by == "course_id" else ()
    schema = export_schema(drop)

    def keys_of(batch: Any) -> Any:
        values = batch.column(partition_by)
        if partition_by != "course_id":
            values = pc.strftime(values, format="%Y-%m-%d")
        return pc.fill_null(pc.cast(values, pa.string()), "none")

    def data_of(table: Any) -> Any:
        return table.drop_columns(list(drop)) if drop else table

    counts: dict[str, int] = {}
    grouped, current, closed = True, None, set()
    for batch in export_batches(source, [partition_by]):
        keys = keys_of(batch)
        for entry in pc.value_counts(keys).to_pylist():
            counts[entry["values"]] = counts.get(entry["values"], 0) + entry["counts"]
        if not grouped:
            continue
        runs = pc.run_end_encode(keys).values.to_pylist() if len(keys) else []
        for key in runs:
            if key == current:
                continue
            if key in closed:
                grouped = False
                break
            if current is not None:
                closed.add(current)
            current = key

    written: list[str] = []
    open_files: dict[str, Any] = {}

    def writer(key: str) -> Any:
        if key not in open_files:
            target = folder / f"{name}={key}" / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = target.open("wb")
            open_files[key] = (handle, parquet_writer(handle, schema))
            written.append(str(target))
        return open_files[key][1]

    def close(key: str) -> None:
        handle, parquet_writer = open_files.pop(key)
        parquet_writer.close()
        handle.close()

    try:
        if grouped:
            for batch in export_batches(source):
                keys = keys_of(batch)
                table = data_of(pa.Table.from_batches([batch]))
                ends = pc.run_end_encode(keys)
                start = 0
                for key, end in zip(ends.values.to_pylist(), ends.run_ends.to_pylist(), strict=True):
                    for other in [k for k in open_files if k != key]:
                        close(other)
                    writer(key).write_table(table.slice(start, end - start))
                    start = end
        else:
            for group in _key_groups(counts):
                streaming = len(group) == 1
                wanted = pa.array(group, pa.string())
                held: list[Any] = []
                for batch in export_batches(source):
                    keys = keys_of(batch)
                    mask = pc.is_in(keys, value_set=wanted)
                    if not pc.any(mask).as_py():
                        continue
                    part = data_of(pa.Table.from_batches([batch]).append_column("_key", keys).filter(mask))
                    if streaming:
                        writer(group[0]).write_table(part.drop_columns(["_key"]))
                    else:
                        held.append(part)
                if held:
                    table = pa.concat_tables(held)
                    for key in group:
                        rows = table.filter(pc.equal(table.column("_key"), key)).drop_columns(["_key"])
                        writer(key).write_table(rows)
                        close(key)
                for key in list(open_files):
                    close(key)
    finally:
        for key in list(open_files):
            close(key)
    return sorted(written)


def _key_groups(counts: Mapping[str, int]) -> list[list[str]]:
    """Partition keys (sorted) in groups of at most ``PARTITION_BUFFER_ROWS`` rows; bigger keys alone."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for key in sorted(counts):
        rows = counts[key]
        if current and size + rows > PARTITION_BUFFER_ROWS:
            groups.append(current)
            current, size = [], 0
        current.append(key)
        size += rows
    if current:
        groups.append(current)
    return groups


def write_csv(source: Any, target: Any) -> str:
    """CSV with ISO-8601 UTC dates (``%Y-%m-%dT%H:%M:%SZ``), written batch by batch through the
    path's ``open``; formula cells are escaped (see :mod:`absorb_provider.csv_safety`).

    The text is what ``DataFrame.to_csv(index=False)`` writes for the export's dtypes (minimal
    quoting, ``True``/``False``, floats as Python prints them, empty cells for nulls).
    """
    with CsvWriter(target) as writer:
        for batch in export_batches(source):
            writer.write(batch)
    return str(target)


class CsvWriter:
    """:func:`write_csv` fed batch by batch (an Arrow table or record batch in the export columns),
    e.g. while the extract writes ``export.parquet``."""

    def __init__(self, target: Any) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self._handle = target.open("wb")
        self._handle.write(
            (",".join(_csv_quote_text(name) for name in EXPORT_COLUMNS) + "\n").encode("utf-8")
        )

    def write(self, batch: Any) -> None:
        from absorb_provider.csv_safety import escape_arrow_table

        if batch.num_rows:
            self._handle.write(_csv_lines(escape_arrow_table(_table(batch))))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class GroupedPartitionWriter:
    """Hive partitions (as :func:`write_partitioned_parquet`) of data that arrives grouped by the
    partition key (the extract writes course after course): one file open at a time.

    :meth:`write` returns False (and writes nothing) when a key comes back after another one:
    the data is not grouped, so the caller must partition from the finished file instead.
    """

    def __init__(self, folder: Any, partition_by: str = "course_id") -> None:
        if partition_by not in {"course_id", "date_completed", "date_edited"}:
            raise ValueError(
                f"cannot partition by {partition_by!r}: use course_id, date_completed or date_edited"
            )
        self.folder = folder
        self.partition_by = partition_by
        self.name = partition_by if partition_by == "course_id" else f"{partition_by}_day"
        self.drop = (partition_by,) if partition_by == "course_id" else ()
        self.schema = export_schema(self.drop)
        self.written: list[str] = []
        self._closed: set[str] = set()
        self._current: tuple[str, Any, Any] | None = None

    def keys(self, table: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        values = table.column(self.partition_by)
        if self.partition_by != "course_id":
            values = pc.strftime(values, format="%Y-%m-%d")
        return pc.fill_null(pc.cast(values, pa.string()), "none")

    def write(self, table: Any) -> bool:
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if not table.num_rows:
            return True
        keys = self.keys(table)
        ends = pc.run_end_encode(keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys)
        keys, run_ends = ends.values.to_pylist(), ends.run_ends.to_pylist()
        current = self._current[0] if self._current else None
        seen = set()
        for key in keys:
            if key in self._closed or key in seen or (key == current and seen):
                return False
            seen.add(key)
        data = table.drop_columns(list(self.drop)) if self.drop else table
        start = 0
        for key, end in zip(keys, run_ends, strict=True):
            self._writer(key).write_table(data.slice(start, end - start))
            start = end
        return True

    def _writer(self, key: str) -> Any:

        if self._current and self._current[0] == key:
            return self._current[2]
        self._close_current()
        target = self.folder / f"{self.name}={key}" / "part-0.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = target.open("wb")
        self._current = (key, handle, parquet_writer(handle, self.schema))
        self.written.append(str(target))
        return self._current[2]

    def _close_current(self) -> None:
        if self._current:
            key, handle, writer = self._current
            self._current = None
            self._closed.add(key)
            try:
                writer.close()
            finally:
                handle.close()

    def close(self) -> list[str]:
        self._close_current()
        return sorted(self.written)


def _table(batch: Any) -> Any:
    """A batch as a table with ``string`` (not ``large_string``) text columns, as the CSV escaper takes."""
    import pyarrow as pa

    schema = pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f for f in batch.schema]
    )
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table if table.schema.types == schema.types else table.cast(schema)


def _csv_quote_text(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in '",\n') else text


def _csv_lines(table: Any) -> bytes:
    """The CSV rows of an Arrow table as one UTF-8 buffer (vectorised, one pass per column)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = [_csv_cells(column) for column in table.columns]
    lines = pc.binary_join_element_wise(*cells, ",", null_handling="replace", null_replacement="")
    lines = pc.binary_join_element_wise(lines, "\n", "")
    combined = pa.concat_arrays(lines.chunks) if isinstance(lines, pa.ChunkedArray) else lines
    combined = combined.cast(pa.large_string())  # 64-bit offsets: any batch size
    _, offsets, data = combined.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[combined.offset : combined.offset + len(combined) + 1]
    return data[int(bounds[0]) : int(bounds[-1])].to_pybytes()


def _csv_cells(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.cast(column, pa.string())
        needs_quotes = pc.match_substring_regex(text, '[",\n]')
        if not pc.any(needs_quotes).as_py():
            return text
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
        return pc.if_else(needs_quotes, quoted, text)
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "True", "False")
    if pa.types.is_timestamp(kind):
        return _iso_seconds(column)
    if pa.types.is_floating(kind):
        return _float_text(column)
    return pc.cast(column, pa.string())


def _float_text(column: Any) -> Any:
    """Floats as Python prints them (``repr``: shortest round-trip digits, ``.0`` on whole numbers,
    exponent below 1e-4 and from 1e16), NaN and null as null. Arrow's own cast gives the same
    digits in plain notation; the few values Python writes with an exponent (or Arrow does) are
    formatted by numpy, as before."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pc.cast(column, pa.float64())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    text = pc.cast(values, pa.string())
    magnitude = pc.abs(values)
    plain = pc.and_(
        pc.invert(pc.match_substring_regex(text, "[eni]")),
        pc.or_(
            pc.equal(values, 0.0),
            pc.and_(pc.greater_equal(magnitude, 1e-4), pc.less(magnitude, 1e16)),
        ),
    )
    plain = pc.fill_null(plain, True)
    text = pc.if_else(pc.match_substring(text, "."), text, pc.binary_join_element_wise(text, ".0", ""))
    if not pc.all(plain).as_py():
        odd = pc.invert(plain)
        formatted = pc.filter(values, odd).to_numpy(zero_copy_only=False).astype(str)
        text = pc.replace_with_mask(text, odd, pa.array(formatted, pa.string()))
    return pc.if_else(pc.is_nan(pc.fill_null(values, np.nan)), pa.scalar(None, pa.string()), text)


def _iso_seconds(column: Any) -> Any:
    """``%Y-%m-%dT%H:%M:%SZ`` text of UTC timestamps (floored to the second): Arrow's cast of the
    *naive* UTC value to text (``YYYY-MM-DD HH:MM:SS``; ~25x cheaper than casting the zoned value
    or ``strftime``) with a ``T`` and a ``Z``; ``strftime`` for years outside 0001..9999 (where
    the cast's text differs)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    seconds = pc.cast(pc.floor_temporal(column, unit="second"), pa.timestamp("s", tz="UTC"))
    naive = pc.cast(seconds, pa.timestamp("s"))  # the same instants, read as UTC wall time
    text = pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)
    if pc.any(pc.not_equal(pc.utf8_length(text), 19)).as_py():
        return pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")
    return pc.binary_join_element_wise(text, "Z", "")


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
SQL_BATCH_ROWS = 5_000


def upsert_sql(source: Any, conn_id: str, table: str) -> int:
    """Upsert the export into ``table`` (created if missing) keyed on ``enrollment_id``.

    Goes through the connection's common-sql hook (``insert_rows(replace=True)`` gives
    ``INSERT ... ON CONFLICT (enrollment_id) DO UPDATE`` on PostgreSQL), so re-running an export
    updates rows instead of duplicating them. Rows are sent batch by batch.
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
    sent = 0
    for batch in export_batches(source, batch_rows=SQL_BATCH_ROWS):
        if not batch.num_rows:
            continue
        values = [[_sql_value(v) for v in batch.column(c).to_pylist()] for c in EXPORT_COLUMNS]
        rows = list(zip(*values, strict=True))
        hook.insert_rows(
            table,
            rows,
            target_fields=EXPORT_COLUMNS,
            replace=True,
            replace_index="enrollment_id",
            commit_every=1000,
        )
        sent += len(rows)
    return sent


def _sql_value(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return value
