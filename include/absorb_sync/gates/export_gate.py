"""The completion-export gate: every check is table-level (a bad export is never published).

Works on the columns of :func:`absorb_sync.export.normalise_enrollments`; dates may be timestamps
or ISO strings. Helper columns (parsed UTC dates, numeric status, completion flags, active
(user, course) keys) are pre-computed with pandas; GX evaluates the expectations on them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pandas as pd

from absorb_sync.gates.runner import TABLE, Check, GateResult, failure_dict, run_checks, validation_payload

COMPLETE = 3
STATUS_RANGE = list(range(13))
REQUIRED = ("enrollment_id", "user_id", "course_id", "status", "is_active", "date_enrolled", "date_completed")
INDEX_COLUMN = "_row_key"
_INVALID = -1.0  # numeric stand-in for a non-numeric value, so range checks reject it


def validate_export(
    frame: pd.DataFrame,
    *,
    previous_completed_count: int | None,
    drop_tolerance_pct: float = 0.0,
    now: datetime,
) -> GateResult:
    """Validate a normalised enrollment export; all failures fail the gate."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    work = _prepare(frame, missing)
    checks = [
        Check(lambda x, c=c: x.ExpectColumnToExist(column=c), TABLE, f"column {c} is present", c)
        for c in REQUIRED
    ]
    if not missing:
        ranged = [c for c in ("progress", "score") if c in work.columns]
        checks += _checks(_naive_utc(now), previous_completed_count, drop_tolerance_pct, ranged)
    outcomes = run_checks("completion_export", work, checks, INDEX_COLUMN)
    failures = [failure_dict(o, INDEX_COLUMN, (o.check.column or "",)) for o in outcomes if not o.success]
    for failure in failures:
        failure["sample_rows"] = [
            {("enrollment_id" if k == INDEX_COLUMN else k): v for k, v in row.items()}
            for row in failure["sample_rows"]
        ]
    completed = int(work["_completed"].sum()) if "_completed" in work.columns else None
    statistics = {
        "row_count": len(work),
        "completed_count": completed,
        "previous_completed_count": previous_completed_count,
        "active_count": int(work["_active"].sum()) if "_active" in work.columns else None,
        "evaluated_checks": len(outcomes),
        "failed_checks": len(failures),
    }
    return GateResult(
        name="completion_export",
        passed=not failures,
        failures=failures,
        accepted=None,
        rejected=None,
        statistics=statistics,
        validation=validation_payload(outcomes),
    )


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


def _checks(now: pd.Timestamp, previous: int | None, tolerance_pct: float, ranged: list[str]) -> list[Check]:
    checks = [
        Check(
            lambda x: x.ExpectColumnValuesToNotBeNull(column="enrollment_id"),
            TABLE,
            "enrollment_id is present",
            "enrollment_id",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToBeUnique(column="enrollment_id"),
            TABLE,
            "enrollment_id is unique",
            "enrollment_id",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToBeUnique(column="_active_user_course"),
            TABLE,
            "at most one active enrollment per (user, course)",
            "_active_user_course",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToNotBeNull(column="_status_num"),
            TABLE,
            "status is present",
            "status",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToBeInSet(column="_status_num", value_set=STATUS_RANGE),
            TABLE,
            "status is an Absorb enrollment status (0..12)",
            "status",
        ),
        Check(
            lambda x: x.ExpectColumnPairValuesToBeEqual(
                column_A="_completed", column_B="_has_date_completed"
            ),
            TABLE,
            "completed (status 3) if and only if a completion date is set",
            None,
        ),
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
        Check(
            lambda x: x.ExpectColumnValuesToBeBetween(column="_date_completed", max_value=now),
            TABLE,
            f"completion date not in the future (now = {now.isoformat()}Z)",
            "date_completed",
        ),
    ]
    for column in ranged:
        checks.append(
            Check(
                lambda x, c=column: x.ExpectColumnValuesToBeBetween(
                    column=f"_{c}_num", min_value=0, max_value=100
                ),
                TABLE,
                f"{column} is empty or within 0..100",
                column,
            )
        )
    if previous:
        minimum = math.ceil(round(previous * (1 - tolerance_pct / 100), 6))
        checks.append(
            Check(
                lambda x: x.ExpectColumnSumToBeBetween(column="_completed_int", min_value=minimum),
                TABLE,
                f"completed count does not drop below {minimum} (previous {previous}, "
                f"tolerance {tolerance_pct:g}%)",
                "status",
            )
        )
    return checks
