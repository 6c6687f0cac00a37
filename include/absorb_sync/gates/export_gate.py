"""The completion-export gate: every check is table-level (a bad export is never published).

Works on the columns of :func:`absorb_sync.export.normalise_enrollments`; dates may be timestamps
or ISO strings. Helper columns (parsed UTC dates, numeric status, completion flags, active
(user, course) keys) are pre-computed with pandas, one batch at a time.

An export may hold millions of rows, so the whole set is never in memory: every check is counted
exactly over all rows as the batches go by (nulls, ranges, date order, the completed count; the
two uniqueness checks through 64-bit hashes of every key, with a second pass over the few
colliding keys to count the real duplicates), and Great Expectations evaluates the same
expectations on a bounded sample - the first ``SAMPLE_ROWS`` rows plus up to
``UNEXPECTED_ROWS_KEPT`` offending rows per check (whole groups of duplicates) - and the
completed-count expectation on the exact total. A check passes only when both the exact count
and GX say so; failures report the exact number of offending rows and GX's sample rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

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

COMPLETE = 3
STATUS_RANGE = list(range(13))
REQUIRED = ("enrollment_id", "user_id", "course_id", "status", "is_active", "date_enrolled", "date_completed")
INDEX_COLUMN = "_row_key"
_INVALID = -1.0  # numeric stand-in for a non-numeric value, so range checks reject it


SAMPLE_ROWS = 1_000  # first rows GX always sees
UNEXPECTED_ROWS_KEPT = 1_000  # offending rows per check handed to GX (all of them are counted)
BATCH_ROWS = 5_000  # rows per pandas batch (the scan's transient memory: GX is already loaded)
GATE_COLUMNS = (*REQUIRED, "progress", "score")
_ROW = "_row"  # position in the whole export, to assemble the sample without repeating a row


@dataclass
class _Exact:
    """How a check is counted over every row: offending-row mask, duplicate keys, or the total."""

    kind: str  # "rows" | "unique" | "sum" | "schema"
    mask: Callable[[pd.DataFrame], pd.Series] | None = None
    column: str | None = None


def validate_export(
    frame: pd.DataFrame,
    *,
    previous_completed_count: int | None,
    drop_tolerance_pct: float = 0.0,
    now: datetime,
) -> GateResult:
    """Validate a normalised enrollment export held as a frame; all failures fail the gate."""

    def chunks() -> Iterator[pd.DataFrame]:
        for start in range(0, len(frame), BATCH_ROWS):
            yield frame.iloc[start : start + BATCH_ROWS]

    return _validate(list(frame.columns), chunks, previous_completed_count, drop_tolerance_pct, now)


def validate_export_file(
    path: Any,
    *,
    previous_completed_count: int | None,
    drop_tolerance_pct: float = 0.0,
    now: datetime,
) -> GateResult:
    """Validate an export Parquet file (local path or ObjectStoragePath) batch by batch: only the
    checked columns are read, ``BATCH_ROWS`` at a time."""
    import pyarrow.parquet as pq
    from absorb_provider.io import as_path

    source = as_path(path)
    with source.open("rb") as handle:
        columns = pq.ParquetFile(handle).schema_arrow.names
    wanted = [c for c in GATE_COLUMNS if c in columns]

    def chunks() -> Iterator[pd.DataFrame]:
        with source.open("rb") as handle:
            reader = pq.ParquetFile(handle, pre_buffer=False)  # a row group at a time
            for batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=wanted, use_threads=False):
                yield batch.to_pandas()

    return _validate(columns, chunks, previous_completed_count, drop_tolerance_pct, now)


def _validate(
    columns: list[str],
    chunks: Callable[[], Iterator[pd.DataFrame]],
    previous_completed_count: int | None,
    drop_tolerance_pct: float,
    now: datetime,
) -> GateResult:
    missing = [c for c in REQUIRED if c not in columns]
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
    present = [c for c in GATE_COLUMNS if c in columns]
    scan = _scan(chunks, missing, [exact for _, exact in pairs], present)
    row_checks = [n for n, (_, exact) in enumerate(pairs) if exact.kind != "sum"]
    total_checks = [n for n, (_, exact) in enumerate(pairs) if exact.kind == "sum"]
    outcomes: dict[int, Any] = {}
    if row_checks:
        sample = scan.sample()
        found = run_checks("completion_export", sample, [checks[n] for n in row_checks], INDEX_COLUMN)
        outcomes.update(zip(row_checks, found, strict=True))
    if total_checks:
        totals = pd.DataFrame({INDEX_COLUMN: ["(all rows)"], "_completed_int": [scan.completed or 0]})
        found = run_checks(
            "completion_export_totals", totals, [checks[n] for n in total_checks], INDEX_COLUMN
        )
        outcomes.update(zip(total_checks, found, strict=True))
    ordered = [outcomes[n] for n in range(len(checks))]
    for number, outcome in enumerate(ordered):
        exact = scan.unexpected.get(number)
        outcome.raw["exact_over_all_rows"] = {"element_count": scan.rows, "unexpected_count": exact}
        outcome.raw["gx_rows_validated"] = scan.sample_size if number in row_checks else 1
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
        "completed_count": scan.completed,
        "previous_completed_count": previous_completed_count,
        "active_count": scan.active,
        "evaluated_checks": len(ordered),
        "failed_checks": len(failures),
        "gx_sample_rows": scan.sample_size,
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


class _Scan:
    """One pass over the batches: exact counts per check, the GX sample, duplicate candidates."""

    def __init__(self, exacts: list[_Exact]) -> None:
        self.exacts = exacts
        self.rows = 0
        self.completed: int | None = None
        self.active: int | None = None
        self.unexpected: dict[int, int] = {}
        self.kept: list[pd.DataFrame] = []
        self._kept_rows: dict[int, int] = {}
        self._hashes: dict[int, list] = {}
        self.sample_size = 0
        self._sample: pd.DataFrame | None = None

    def add(self, work: pd.DataFrame, first_rows: int) -> None:
        if first_rows > 0:
            self.kept.append(work.head(first_rows))
        if "_completed" in work.columns:
            self.completed = (self.completed or 0) + int(work["_completed"].sum())
            self.active = (self.active or 0) + int(work["_active"].sum())
        for number, exact in enumerate(self.exacts):
            if exact.kind == "rows":
                mask = exact.mask(work).fillna(False).astype(bool)
                count = int(mask.sum())
                self.unexpected[number] = self.unexpected.get(number, 0) + count
                room = UNEXPECTED_ROWS_KEPT - self._kept_rows.get(number, 0)
                if count and room > 0:
                    offending = work[mask].head(room)
                    self.kept.append(offending)
                    self._kept_rows[number] = self._kept_rows.get(number, 0) + len(offending)
            elif exact.kind == "unique":
                self._hashes.setdefault(number, []).append(_key_hashes(work[exact.column])[0])
        self.rows += len(work)

    def duplicate_candidates(self) -> dict[int, Any]:
        """Per uniqueness check, the hashes seen more than once (real duplicates or collisions)."""
        import numpy as np

        candidates = {}
        for number, parts in self._hashes.items():
            hashes = np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)
            repeated = hashes[1:][hashes[1:] == hashes[:-1]]
            candidates[number] = np.unique(repeated)
            self.unexpected[number] = 0
        self._hashes.clear()
        return candidates

    def add_duplicates(self, number: int, rows: pd.DataFrame, column: str) -> None:
        """Exact duplicates among the candidate rows of one check: counted, and whole groups
        (ordered by key) handed to GX up to ``UNEXPECTED_ROWS_KEPT`` rows."""
        duplicated = rows[rows[column].duplicated(keep=False)]
        self.unexpected[number] = len(duplicated)
        if len(duplicated):
            ordered = duplicated.sort_values([column, _ROW], kind="stable")
            self.kept.append(ordered.head(max(2, UNEXPECTED_ROWS_KEPT)))

    def sample(self) -> pd.DataFrame:
        if self._sample is None:
            frames = [f for f in self.kept if len(f)]
            if frames:
                sample = pd.concat(frames, ignore_index=True)
                sample = sample.drop_duplicates(_ROW).sort_values(_ROW, kind="stable")
            else:
                sample = self.kept[0] if self.kept else pd.DataFrame({INDEX_COLUMN: pd.Series(dtype="str")})
            self._sample = sample.drop(columns=[_ROW], errors="ignore").reset_index(drop=True)
            self.sample_size = len(self._sample)
        return self._sample


def _scan(
    chunks: Callable[[], Iterator[pd.DataFrame]], missing: list[str], exacts: list[_Exact], present: list[str]
) -> _Scan:
    """Pass 1 counts everything and keeps the sample; pass 2 (only when some key hash repeats)
    settles the uniqueness checks exactly."""
    import numpy as np

    scan = _Scan(exacts)
    for chunk in chunks():
        work = _prepare(chunk, missing)
        work[_ROW] = np.arange(scan.rows, scan.rows + len(work), dtype="int64")
        scan.add(work, SAMPLE_ROWS - scan.rows)
    if not scan.kept:  # no rows: GX still sees the columns
        empty = _prepare(pd.DataFrame({c: pd.Series(dtype="object") for c in present}), missing)
        empty[_ROW] = pd.Series(dtype="int64")
        scan.kept.append(empty)
    candidates = scan.duplicate_candidates()
    pending = {n: hashes for n, hashes in candidates.items() if len(hashes)}
    if pending:
        collected: dict[int, list[pd.DataFrame]] = {n: [] for n in pending}
        offset = 0
        for chunk in chunks():
            work = _prepare(chunk, missing)
            work[_ROW] = np.arange(offset, offset + len(work), dtype="int64")
            offset += len(work)
            for number, hashes in pending.items():
                column = exacts[number].column
                keys, valid = _key_hashes(work[column])
                rows = work[valid]
                collected[number].append(rows[np.isin(keys, hashes)])
        for number, frames in collected.items():
            scan.add_duplicates(number, pd.concat(frames, ignore_index=True), exacts[number].column)
    return scan


def _key_hashes(values: pd.Series) -> tuple[Any, Any]:
    """64-bit hashes of the non-null keys, and the mask of those keys."""
    import numpy as np

    valid = values.notna().to_numpy(dtype=bool)
    present = values[valid].astype("str").to_numpy(dtype=object)
    hashes = pd.util.hash_array(present) if len(present) else np.empty(0, dtype=np.uint64)
    return np.asarray(hashes, dtype=np.uint64), valid


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
    """The checks and how each is counted over every row (masks of offending rows)."""
    checks = [
        (
            Check(
                lambda x: x.ExpectColumnValuesToNotBeNull(column="enrollment_id"),
                TABLE,
                "enrollment_id is present",
                "enrollment_id",
            ),
            _Exact("rows", lambda w: w["enrollment_id"].isna()),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToBeUnique(column="enrollment_id"),
                TABLE,
                "enrollment_id is unique",
                "enrollment_id",
            ),
            _Exact("unique", column="enrollment_id"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToBeUnique(column="_active_user_course"),
                TABLE,
                "at most one active enrollment per (user, course)",
                "_active_user_course",
            ),
            _Exact("unique", column="_active_user_course"),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToNotBeNull(column="_status_num"),
                TABLE,
                "status is present",
                "status",
            ),
            _Exact("rows", lambda w: w["_status_num"].isna()),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToBeInSet(column="_status_num", value_set=STATUS_RANGE),
                TABLE,
                "status is an Absorb enrollment status (0..12)",
                "status",
            ),
            _Exact("rows", lambda w: w["_status_num"].notna() & ~w["_status_num"].isin(STATUS_RANGE)),
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
            _Exact("rows", lambda w: w["_completed"] != w["_has_date_completed"]),
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
            _Exact(
                "rows",
                lambda w: (
                    w["_date_completed"].notna()
                    & w["_date_enrolled"].notna()
                    & (w["_date_completed"] < w["_date_enrolled"])
                ),
            ),
        ),
        (
            Check(
                lambda x: x.ExpectColumnValuesToBeBetween(column="_date_completed", max_value=now),
                TABLE,
                f"completion date not in the future (now = {now.isoformat()}Z)",
                "date_completed",
            ),
            _Exact("rows", lambda w: w["_date_completed"].notna() & (w["_date_completed"] > now)),
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
                _Exact(
                    "rows",
                    lambda w, c=column: (
                        w[f"_{c}_num"].notna() & ((w[f"_{c}_num"] < 0) | (w[f"_{c}_num"] > 100))
                    ),
                ),
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
