"""The completion-export gate: every check is table-level (a bad export is never published).

Works on the columns of :func:`absorb_sync.export.normalise_enrollments`; dates may be timestamps
or ISO strings.

An export may hold millions of rows, so the whole set is never in memory, nor in pandas: every
check is counted exactly over all rows by :class:`absorb_sync.export_checks.ExportChecks` (Arrow,
batch by batch; the uniqueness checks through 64-bit hashes of every key, settled exactly when a
hash repeats). The extract counts them while it writes the file, so the gate normally reads its
counts and sample instead of the rows (only when they describe this very file: same row count
and size); otherwise the gate streams the file itself. Great Expectations evaluates the same
expectations on a bounded sample - the first ``SAMPLE_ROWS`` rows plus up to
``UNEXPECTED_ROWS_KEPT`` offending rows per check (whole groups of duplicates) - and the
completed-count expectation on the exact total. A check passes only when both the exact count
and GX say so; failures report the exact number of offending rows and GX's sample rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from absorb_sync.export_checks import (
    GATE_COLUMNS,
    REQUIRED,
    ROW,
    SAMPLE_ROWS,
    UNEXPECTED_ROWS_KEPT,
    ExportChecks,
)
from absorb_sync.gates.logging import log_checks
from absorb_sync.gates.runner import (
    TABLE,
    Check,
    GateResult,
    check_lines,
    failure_dict,
    run_checks,
    validation_payload,
)

log = logging.getLogger(__name__)

__all__ = ["SAMPLE_ROWS", "UNEXPECTED_ROWS_KEPT", "validate_export", "validate_export_file"]

COMPLETE = 3
STATUS_RANGE = list(range(13))
INDEX_COLUMN = "_row_key"
_INVALID = -1.0  # numeric stand-in for a non-numeric value, so range checks reject it
BATCH_ROWS = 5_000  # rows per Arrow batch when the gate counts a file itself


@dataclass
class _Exact:
    """How a check is counted over every row: an ``ExportChecks`` key, or the schema / the total."""

    kind: str  # "count" | "sum" | "schema"
    key: str | None = None


def validate_export(
    frame: pd.DataFrame,
    *,
    previous_completed_count: int | None,
    drop_tolerance_pct: float = 0.0,
    now: datetime,
) -> GateResult:
    """Validate a normalised enrollment export held as a frame; all failures fail the gate."""
    columns = list(frame.columns)

    def batches() -> Iterator[Any]:
        for start in range(0, len(frame), BATCH_ROWS):
            yield _arrow(frame.iloc[start : start + BATCH_ROWS])

    checks = _count(columns, batches, now)
    return _validate(checks, previous_completed_count, drop_tolerance_pct, now, "gate")


def validate_export_file(
    path: Any,
    *,
    previous_completed_count: int | None,
    drop_tolerance_pct: float = 0.0,
    now: datetime,
    counted: tuple[ExportChecks, dict] | None = None,
) -> GateResult:
    """Validate an export Parquet file (local path or ObjectStoragePath).

    ``counted``: the extract's :meth:`ExportChecks.load` for this file - used when it describes
    this very file (row count and size) and was settled; else the file is counted here, batch by
    batch (only the checked columns, ``BATCH_ROWS`` at a time)."""
    import pyarrow.parquet as pq
    from absorb_provider.io import as_path

    source = as_path(path)
    with source.open("rb") as handle:
        metadata = pq.ParquetFile(handle).metadata
    columns = metadata.schema.to_arrow_schema().names
    described = {"rows": metadata.num_rows, "bytes": source.stat().st_size}
    if counted is not None:
        checks, counted_source = counted
        if _reusable(checks, counted_source, described, columns, now):
            log.info("export gate: exact counts from the extract's pass over the same file %s", described)
            return _validate(checks, previous_completed_count, drop_tolerance_pct, now, "extract")
        log.info("export gate: the extract's counts do not describe this file or time; counting it again")
    wanted = [c for c in GATE_COLUMNS if c in columns]

    def batches() -> Iterator[Any]:
        with source.open("rb") as handle:
            reader = pq.ParquetFile(handle, pre_buffer=False)  # a row group at a time
            yield from reader.iter_batches(batch_size=BATCH_ROWS, columns=wanted, use_threads=False)

    checks = _count(columns, batches, now)
    return _validate(checks, previous_completed_count, drop_tolerance_pct, now, "gate")


def _reusable(checks: ExportChecks, source: dict, described: dict, columns: list[str], now: datetime) -> bool:
    return (
        checks.settled
        and {k: source.get(k) for k in described} == described
        and checks.rows == described["rows"]
        and checks.columns == columns
        and checks.future_completions(now) is not None
    )


def _count(columns: list[str], batches: Any, now: datetime) -> ExportChecks:
    """One pass counting every check; a second only when a uniqueness key hash repeats."""
    checks = ExportChecks(columns, now)
    for batch in batches():
        checks.add(batch)
    checks.finish(batches)
    return checks


def _arrow(chunk: pd.DataFrame) -> Any:
    """A frame chunk as Arrow; a column of mixed values goes as text (numbers/dates read later)."""
    import pyarrow as pa

    arrays, names = [], []
    for name in chunk.columns:
        series = chunk[name]
        try:
            array = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            array = pa.array([None if pd.isna(v) else str(v) for v in series], pa.string())
        arrays.append(array)
        names.append(str(name))
    return pa.table(arrays, names=names)


def _validate(
    scan: ExportChecks,
    previous_completed_count: int | None,
    drop_tolerance_pct: float,
    now: datetime,
    counted_by: str,
) -> GateResult:
    """GX on the sample, the exact counts over every row (``counted_by``: the extract or the gate)."""
    columns, missing = scan.columns, scan.missing
    pairs = [
        (
            Check(lambda x, c=c: x.ExpectColumnToExist(column=c), TABLE, f"column {c} is present", c),
            _Exact("schema"),
        )
        for c in REQUIRED
    ]
    if not missing:
        ranged = [c for c in ("progress", "score") if c in columns]
        pairs += _checks(_naive_utc(now), previous_completed_count, drop_tolerance_pct, ranged)
    checks = [check for check, _ in pairs]
    row_checks = [n for n, (_, exact) in enumerate(pairs) if exact.kind != "sum"]
    total_checks = [n for n, (_, exact) in enumerate(pairs) if exact.kind == "sum"]
    completed = None if missing else scan.completed
    outcomes: dict[int, Any] = {}
    sample = _sample_frame(scan, missing)
    if row_checks:
        found = run_checks("completion_export", sample, [checks[n] for n in row_checks], INDEX_COLUMN)
        outcomes.update(zip(row_checks, found, strict=True))
    if total_checks:
        totals = pd.DataFrame({INDEX_COLUMN: ["(all rows)"], "_completed_int": [completed or 0]})
        found = run_checks(
            "completion_export_totals", totals, [checks[n] for n in total_checks], INDEX_COLUMN
        )
        outcomes.update(zip(total_checks, found, strict=True))
    ordered = [outcomes[n] for n in range(len(checks))]
    for number, outcome in enumerate(ordered):
        exact = _exact_count(scan, pairs[number][1], now)
        outcome.raw["exact_over_all_rows"] = {"element_count": scan.rows, "unexpected_count": exact}
        outcome.raw["gx_rows_validated"] = len(sample) if number in row_checks else 1
        if exact is not None:
            outcome.success = bool(outcome.success) and exact == 0
            outcome.unexpected_count = exact
    failures = [failure_dict(o, INDEX_COLUMN, (o.check.column or "",)) for o in ordered if not o.success]
    for failure in failures:
        failure["sample_rows"] = [
            {("enrollment_id" if k == INDEX_COLUMN else k): v for k, v in row.items()}
            for row in failure["sample_rows"]
        ]
    statistics = {
        "row_count": scan.rows,
        "completed_count": completed,
        "previous_completed_count": previous_completed_count,
        "active_count": None if missing else scan.active,
        "evaluated_checks": len(ordered),
        "failed_checks": len(failures),
        "gx_sample_rows": len(sample),
        "exact_counts_by": counted_by,
    }
    # counted over every row (the exact counts replaced GX's sample counts above)
    log_checks(
        log,
        "completion_export",
        check_lines(ordered, element_count=scan.rows),
        "passed" if not failures else "failed",
        counts={k: statistics[k] for k in ("row_count", "completed_count", "previous_completed_count")},
    )
    return GateResult(
        name="completion_export",
        passed=not failures,
        failures=failures,
        accepted=None,
        rejected=None,
        statistics=statistics,
        validation=validation_payload(ordered),
    )


def _exact_count(scan: ExportChecks, exact: _Exact, now: datetime) -> int | None:
    if exact.kind != "count" or scan.missing:
        return None
    if exact.key == "completed_not_future":
        return scan.future_completions(now)
    return scan.unexpected[exact.key]


def _sample_frame(scan: ExportChecks, missing: list[str]) -> pd.DataFrame:
    """The GX sample as pandas with the helper columns the expectations look at."""
    frame = scan.sample().to_pandas().drop(columns=[ROW], errors="ignore")
    for column in GATE_COLUMNS:  # no rows at all: GX still sees the columns
        if column in scan.columns and column not in frame.columns:
            frame[column] = pd.Series(dtype="object")
    return _prepare(frame, missing)


def _naive_utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        return stamp
    return stamp.tz_convert(UTC).tz_localize(None)


def _dates(series: pd.Series) -> pd.Series:
    """UTC-naive timestamps from timestamps or ISO strings (unparseable -> NaT)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        parsed = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(UTC).dt.tz_localize(None)
    return parsed


def _numbers(series: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(series, errors="coerce")
    return numeric.where(numeric.notna() | series.isna(), _INVALID).astype("float64")


def _flags(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.fillna(False).astype("bool")
    text = series.astype("str").str.strip().str.lower()
    return text.isin(["true", "1", "yes"]).fillna(False).astype("bool")


def _prepare(frame: pd.DataFrame, missing: list[str]) -> pd.DataFrame:
    work = frame.copy().reset_index(drop=True)
    key = work["enrollment_id"].astype("str") if "enrollment_id" in work.columns else None
    work[INDEX_COLUMN] = key if key is not None else pd.Series(range(len(work)), dtype="int64").astype("str")
    if missing:
        return work
    status = _numbers(work["status"])
    work["_status_num"] = status
    work["_completed"] = status.eq(COMPLETE)
    work["_date_enrolled"] = _dates(work["date_enrolled"])
    work["_date_completed"] = _dates(work["date_completed"])
    work["_has_date_completed"] = work["_date_completed"].notna()
    work["_active"] = _flags(work["is_active"])
    pair = work["user_id"].astype("str") + "|" + work["course_id"].astype("str")
    work["_active_user_course"] = pair.where(work["_active"])
    work["_completed_int"] = work["_completed"].astype("int64")
    for column in ("progress", "score"):
        if column in work.columns:
            work[f"_{column}_num"] = _numbers(work[column])
    return work


def _checks(
    now: pd.Timestamp, previous: int | None, tolerance_pct: float, ranged: list[str]
) -> list[tuple[Check, _Exact]]:
    """The checks and which exact count (``ExportChecks``) each takes over every row."""
    checks = [
        (
            Check(
                lambda x: x.ExpectColumnValuesToNotBeNull(column="enrollment_id"),
                TABLE,
                "enrollment_id is present",
                "enrollment_id",
            ),
            _Exact("count", "enrollment_id_present"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToBeUnique(column="enrollment_id"),
                TABLE,
                "enrollment_id is unique",
                "enrollment_id",
            ),
            _Exact("count", "enrollment_id_unique"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToBeUnique(column="_active_user_course"),
                TABLE,
                "at most one active enrollment per (user, course)",
                "_active_user_course",
            ),
            _Exact("count", "active_user_course_unique"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToNotBeNull(column="_status_num"),
                TABLE,
                "status is present",
                "status",
            ),
            _Exact("count", "status_present"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToBeInSet(column="_status_num", value_set=STATUS_RANGE),
                TABLE,
                "status is an Absorb enrollment status (0..12)",
                "status",
            ),
            _Exact("count", "status_in_range"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnPairValuesToBeEqual(
                    column_A="_completed", column_B="_has_date_completed"
                ),
                TABLE,
                "completed (status 3) if and only if a completion date is set",
                None,
            ),
            _Exact("count", "completed_iff_date"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="_date_completed",
                    column_B="_date_enrolled",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                ),
                TABLE,
                "completion date on or after the enrollment date",
                None,
            ),
            _Exact("count", "completed_after_enrolled"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToBeBetween(column="_date_completed", max_value=now),
                TABLE,
                f"completion date not in the future (now = {now.isoformat()}Z)",
                "date_completed",
            ),
            _Exact("count", "completed_not_future"),
        ),
    ]
    for column in ranged:
        checks.append(
            (
                Check(
                    lambda x, c=column: x.ExpectColumnValuesToBeBetween(
                        column=f"_{c}_num", min_value=0, max_value=100
                    ),
                    TABLE,
                    f"{column} is empty or within 0..100",
                    column,
                ),
                _Exact("count", f"{column}_in_range"),
            )
        )
    if previous:
        minimum = math.ceil(round(previous * (1 - tolerance_pct / 100), 6))
        checks.append(
            (
                Check(
                    lambda x: x.ExpectColumnSumToBeBetween(column="_completed_int", min_value=minimum),
                    TABLE,
                    f"completed count does not drop below {minimum} (previous {previous}, "
                    f"tolerance {tolerance_pct:g}%)",
                    "status",
                ),
                _Exact("sum"),
            )
        )
    return checks
