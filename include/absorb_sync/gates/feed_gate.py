"""The HR feed gate: table-level checks fail the run (zero writes), row-level checks quarantine rows.

pandas pre-computes a few helper columns (case-folded email of active people, parsed dates, manager
look-ups); GX evaluates every expectation and its unexpected-row list (keyed on ``_line``) decides
which rows are rejected, so reject line numbers are the source file's physical lines.

Scale: GX reports the unexpected rows as ``_line`` keys only (``run_checks(keys_only=True)``) and
the reject reasons are built from one vectorised look-up of the rejected rows, so a 500k-row feed,
even one where every row is bad, gets its verdict in seconds (``bench/bench_feed_gate.py``).

Hostile values: a name, email, department, job title or location that a spreadsheet would run as
a formula (``=HYPERLINK(...)``, ``+SUM(...)``, ``@cmd``, ``-2+3``; plain numbers are fine) is
quarantined before it can reach Absorb or a report. Emails may be internationalised
(``josé@bücher.de``) but may not contain invisible characters or a look-alike at-sign.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from absorb_provider.csv_safety import FORMULA_VALUE_REGEX

from absorb_sync.feed import CANONICAL_COLUMNS, LINE_COLUMN, PARSE_ERROR_COLUMN, STATUSES
from absorb_sync.gates.logging import log_checks
from absorb_sync.gates.runner import (
    ROW,
    SAMPLE_SIZE,
    TABLE,
    Check,
    CheckOutcome,
    GateResult,
    check_lines,
    failure_dict,
    json_safe,
    run_checks,
    validation_payload,
)

log = logging.getLogger(__name__)

# zero-width space/non-joiner/joiner, word joiner, BOM / zero-width no-break space, soft hyphen,
# Mongolian vowel separator, invisible math operators: they make two addresses look identical
INVISIBLE_CHARACTERS = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064"
# full-width and small commercial at: look like "@" but are not the separator
LOOKALIKE_AT_SIGNS = "\uff20\ufe6b"
_LOCAL = rf"[^@\s,;:<>()\[\]\"'\\{INVISIBLE_CHARACTERS}{LOOKALIKE_AT_SIGNS}]+"
_LABEL = r"[^\W_](?:(?:[^\W_]|-)*[^\W_])?"  # letters/digits of any script, inner hyphens (IDN labels)
_TLD = r"(?:[^\W\d_]{2,}|xn--[A-Za-z0-9-]+)"
# internationalised addresses (josé@bücher.de) are valid; see docs/feed-mapping.md
EMAIL_PATTERN = rf"^{_LOCAL}@(?:{_LABEL}\.)+{_TLD}$"
ISO_DATE = "%Y-%m-%d"
REQUIRED_VALUES = ("first_name", "last_name", "status", "hire_date")
# free-text fields that reach Absorb user records and the CSV reports: no spreadsheet formulas
FORMULA_CHECKED = ("first_name", "last_name", "email", "department", "job_title", "location")
_CONTEXT_COLUMNS = (*CANONICAL_COLUMNS, PARSE_ERROR_COLUMN, "_email_active_key")


def validate_feed(
    frame: pd.DataFrame,
    *,
    previous_row_count: int | None,
    max_row_drift_pct: float = 20.0,
    today: date,
    max_reject_pct: float = 20.0,
) -> GateResult:
    """Validate a canonical feed frame (see :func:`absorb_sync.feed.read_feed`).

    Fails (table level) on missing columns, no rows, a row count outside ±``max_row_drift_pct`` %
    of ``previous_row_count``, null or duplicate employee ids, or more than ``max_reject_pct`` %
    rejected rows. Rejects (row level) rows with an invalid/duplicate active email, missing
    required values, unknown status, unparseable dates, termination before hire, an unknown or
    self manager, or a malformed record.
    """
    work = _prepare(frame)
    missing = [c for c in CANONICAL_COLUMNS if c not in frame.columns]
    checks = _table_checks(missing, previous_row_count, max_row_drift_pct)
    if not missing:
        checks += _row_checks()
    outcomes = run_checks("hr_feed", work, checks, LINE_COLUMN, keys_only=True)
    lines = pd.Index(work[LINE_COLUMN])
    reasons = _reject_reasons(outcomes, work, lines)
    rejected_mask = work[LINE_COLUMN].isin(list(reasons))
    reject_check = _reject_rate_check(work, rejected_mask, max_reject_pct)
    if reject_check is not None:
        outcomes += run_checks(
            "hr_feed_rejects", reject_check[0], [reject_check[1]], LINE_COLUMN, keys_only=True
        )
    failures = [
        _with_samples(failure_dict(o, LINE_COLUMN, ()), o, work, lines)
        for o in outcomes
        if not o.success or (o.check.level == ROW and o.unexpected_count)
    ]
    keep = [c for c in (*CANONICAL_COLUMNS, LINE_COLUMN) if c in work.columns]
    accepted = work.loc[~rejected_mask, keep].reset_index(drop=True)
    rejected = work.loc[rejected_mask, keep].reset_index(drop=True)
    rejected["reject_reason"] = pd.Series(
        ["; ".join(reasons[line]) for line in rejected[LINE_COLUMN]], dtype="str"
    )
    passed = all(o.success for o in outcomes if o.check.level == TABLE)
    statistics = _statistics(work, accepted, rejected, outcomes, previous_row_count, today)
    log_checks(
        log,
        "hr_feed",
        check_lines(outcomes),
        "passed" if passed else "failed",
        counts={
            k: statistics[k] for k in ("row_count", "previous_row_count", "accepted_count", "rejected_count")
        },
    )
    return GateResult(
        name="hr_feed",
        passed=passed,
        failures=failures,
        accepted=accepted,
        rejected=rejected,
        statistics=statistics,
        validation=validation_payload(outcomes),
    )


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``_line``/``_parse_error`` ensured and the helper columns GX checks."""
    work = frame.copy().reset_index(drop=True)
    if LINE_COLUMN not in work.columns:
        work[LINE_COLUMN] = pd.Series(range(2, len(work) + 2), dtype="int64")
    if PARSE_ERROR_COLUMN not in work.columns:
        work[PARSE_ERROR_COLUMN] = pd.Series([None] * len(work), dtype="str")
    if not work[LINE_COLUMN].is_unique:
        raise ValueError(f"{LINE_COLUMN} must identify each row (it is the source line of the record)")
    if not all(c in work.columns for c in CANONICAL_COLUMNS):
        return work
    status = work["status"].astype("str")
    active = status.eq("active").fillna(False)
    work["_email_active_key"] = work["email"].astype("str").str.strip().str.casefold().where(active)
    work["_status_active"] = status.where(active)
    work["_hire_dt"] = pd.to_datetime(work["hire_date"], format=ISO_DATE, errors="coerce")
    work["_term_dt"] = pd.to_datetime(work["termination_date"], format=ISO_DATE, errors="coerce")
    ids = set(work["employee_id"].dropna())
    manager = work["manager_id"]
    has_manager = manager.notna()
    work["_manager_in_feed"] = pd.Series(manager.isin(ids), dtype="boolean").where(has_manager)
    work["_manager_not_self"] = pd.Series(manager.ne(work["employee_id"]), dtype="boolean").where(has_manager)
    return work


def _table_checks(missing: list[str], previous: int | None, drift_pct: float) -> list[Check]:
    checks = [
        Check(lambda x, c=c: x.ExpectColumnToExist(column=c), TABLE, f"column {c} is present", c)
        for c in CANONICAL_COLUMNS
    ]
    checks.append(
        Check(lambda x: x.ExpectTableRowCountToBeBetween(min_value=1), TABLE, "the feed has at least one row")
    )
    if previous:
        low, high = _drift_bounds(previous, drift_pct)
        checks.append(
            Check(
                lambda x: x.ExpectTableRowCountToBeBetween(min_value=low, max_value=high),
                TABLE,
                f"row count within ±{drift_pct:g}% of the last accepted feed ({previous} rows: {low}..{high})",
            )
        )
    if "employee_id" not in missing:
        checks += [
            Check(
                lambda x: x.ExpectColumnValuesToNotBeNull(column="employee_id"),
                TABLE,
                "employee_id is present on every row",
                "employee_id",
                lambda row: "employee_id is missing",
            ),
            Check(
                lambda x: x.ExpectColumnValuesToBeUnique(column="employee_id"),
                TABLE,
                "employee_id is unique",
                "employee_id",
                lambda row: f"employee_id {row.get('employee_id')!r} appears on more than one row",
            ),
        ]
    return checks


def _drift_bounds(previous: int, drift_pct: float) -> tuple[int, int]:
    low = math.ceil(round(previous * (1 - drift_pct / 100), 6))
    high = math.floor(round(previous * (1 + drift_pct / 100), 6))
    return max(low, 1), max(high, 1)


def _row_checks() -> list[Check]:
    statuses = "|".join(STATUSES)
    checks = [
        Check(
            lambda x, c=c: x.ExpectColumnValuesToNotBeNull(column=c),
            ROW,
            f"{c} is present",
            c,
            lambda row, c=c: f"{c} is missing",
        )
        for c in REQUIRED_VALUES
    ]
    checks += [
        Check(
            lambda x: x.ExpectColumnValuesToBeNull(column=PARSE_ERROR_COLUMN),
            ROW,
            "every record has as many fields as the header",
            PARSE_ERROR_COLUMN,
            lambda row: f"malformed record: {row.get(PARSE_ERROR_COLUMN)}",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToNotBeNull(
                column="_email_active_key", row_condition=_active_only()
            ),
            ROW,
            "active people have an email",
            "email",
            lambda row: "email is missing for an active person",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToMatchRegex(
                column="email", regex=EMAIL_PATTERN, row_condition=_active_only()
            ),
            ROW,
            "active people have a valid email",
            "email",
            lambda row: _email_problem(row.get("email")),
        ),
        Check(
            lambda x: x.ExpectColumnValuesToBeUnique(column="_email_active_key"),
            ROW,
            "email is unique among active people (case-insensitive)",
            "email",
            lambda row: f"email {row.get('_email_active_key')!r} is used by more than one active person",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES)),
            ROW,
            f"status is one of {statuses} (after the mapping's status_values)",
            "status",
            lambda row: f"status {row.get('status')!r} is not one of {statuses} (add it to status_values?)",
        ),
    ]
    checks += [
        Check(
            lambda x, c=c: x.ExpectColumnValuesToNotMatchRegex(column=c, regex=FORMULA_VALUE_REGEX),
            ROW,
            f"{c} is not a spreadsheet formula",
            c,
            lambda row, c=c: (
                f"{c} {row.get(c)!r} starts with {str(row.get(c))[:1]!r}: a spreadsheet formula "
                "(CSV injection) is not accepted"
            ),
        )
        for c in FORMULA_CHECKED
    ]
    for column in ("hire_date", "termination_date"):
        checks.append(
            Check(
                lambda x, c=column: x.ExpectColumnValuesToMatchStrftimeFormat(
                    column=c, strftime_format=ISO_DATE
                ),
                ROW,
                f"{column} is a date",
                column,
                lambda row, c=column: (
                    f"{c} {row.get(c)!r} is not a date (YYYY-MM-DD or the mapping's date_format)"
                ),
            )
        )
    checks += [
        Check(
            lambda x: x.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="_term_dt",
                column_B="_hire_dt",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
            ROW,
            "termination_date is on or after hire_date",
            None,
            lambda row: "termination_date is before hire_date",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToBeInSet(column="_manager_in_feed", value_set=[True]),
            ROW,
            "manager_id is an employee in the feed",
            "manager_id",
            lambda row: f"manager_id {row.get('manager_id')!r} is not an employee in the feed",
        ),
        Check(
            lambda x: x.ExpectColumnValuesToBeInSet(column="_manager_not_self", value_set=[True]),
            ROW,
            "manager_id is not the person themselves",
            "manager_id",
            lambda row: "manager_id is the person themselves",
        ),
    ]
    return checks


def _active_only() -> Any:
    from great_expectations.expectations.row_conditions import Column

    return Column("_status_active") == "active"


def _email_problem(value: Any) -> str:
    """Why an active person's email failed the pattern, naming an invisible or look-alike character."""
    text = str(value)
    for char in text:
        if char in INVISIBLE_CHARACTERS:
            return f"email {text!r} contains an invisible character ({_char_name(char)})"
    for char in text:
        if char in LOOKALIKE_AT_SIGNS:
            return f"email {text!r} uses a look-alike at-sign ({_char_name(char)}) instead of '@'"
    return f"email {text!r} is not a valid address"


def _char_name(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"


def _reject_reasons(
    outcomes: list[CheckOutcome], work: pd.DataFrame, lines: pd.Index
) -> dict[int, list[str]]:
    """line -> reasons, from the unexpected rows GX reported for row-level and per-row table checks.

    The rejected rows are read once, vectorised, whatever their number."""
    wanted = [o for o in outcomes if o.check.reject_reason is not None and o.unexpected_keys]
    if not wanted:
        return {}
    keys = pd.unique(np.concatenate([np.asarray(o.unexpected_keys, dtype="int64") for o in wanted]))
    columns = [c for c in _CONTEXT_COLUMNS if c in work.columns]
    rows = work.iloc[lines.get_indexer(keys)][columns].astype(object)
    rows = rows.where(rows.notna(), None)
    contexts = dict(zip(keys.tolist(), rows.to_dict("records"), strict=True))
    reasons: dict[int, list[str]] = {}
    for outcome in wanted:
        reason = outcome.check.reject_reason
        for line in outcome.unexpected_keys:
            line = int(line)
            reasons.setdefault(line, []).append(reason(contexts[line]))
    return reasons


def _with_samples(failure: dict, outcome: CheckOutcome, work: pd.DataFrame, lines: pd.Index) -> dict:
    """Sample rows as {line, employee_id, <checked source column>} read back from the feed rows."""
    sample_lines = [int(row[LINE_COLUMN]) for row in outcome.unexpected_rows[:SAMPLE_SIZE]]
    column = outcome.check.column if outcome.check.column in CANONICAL_COLUMNS else None
    if column == "employee_id":
        column = None
    samples = []
    for line, position in zip(sample_lines, lines.get_indexer(sample_lines), strict=True):
        row = work.iloc[position]
        sample = {"line": line, "employee_id": row.get("employee_id")}
        if column:
            sample[column] = row.get(column)
        samples.append(json_safe(sample))
    failure["sample_rows"] = samples
    return failure


def _reject_rate_check(
    work: pd.DataFrame, rejected_mask: pd.Series, max_reject_pct: float
) -> tuple[pd.DataFrame, Check] | None:
    if work.empty:
        return None
    rates = pd.DataFrame({LINE_COLUMN: work[LINE_COLUMN], "_rejected": rejected_mask.astype("bool")})
    mostly = max(0.0, min(1.0, 1 - max_reject_pct / 100))
    check = Check(
        lambda x: x.ExpectColumnValuesToBeInSet(column="_rejected", value_set=[False], mostly=mostly),
        TABLE,
        f"at most {max_reject_pct:g}% of the rows are rejected",
        None,
    )
    return rates, check


def _statistics(
    work: pd.DataFrame,
    accepted: pd.DataFrame,
    rejected: pd.DataFrame,
    outcomes: list[CheckOutcome],
    previous: int | None,
    today: date,
) -> dict:
    rows = len(work)
    stats: dict[str, Any] = {
        "row_count": rows,
        "accepted_count": len(accepted),
        "rejected_count": len(rejected),
        "reject_pct": round(100 * len(rejected) / rows, 2) if rows else 0.0,
        "previous_row_count": previous,
        "row_drift_pct": round(100 * (rows - previous) / previous, 2) if previous else None,
        "evaluated_checks": len(outcomes),
        "failed_checks": sum(1 for o in outcomes if not o.success),
        "rejects_by_check": {
            o.check.description: o.unexpected_count
            for o in outcomes
            if o.check.level == ROW and o.unexpected_count
        },
    }
    if "status" in accepted.columns and "hire_date" in accepted.columns:
        status = accepted["status"]
        hire = pd.to_datetime(accepted["hire_date"], format=ISO_DATE, errors="coerce")
        term = pd.to_datetime(accepted.get("termination_date"), format=ISO_DATE, errors="coerce")
        now = pd.Timestamp(today)
        stats.update(
            active_count=int(status.eq("active").sum()),
            leave_count=int(status.eq("leave").sum()),
            terminated_count=int(status.eq("terminated").sum()),
            future_hires=int((status.eq("active") & (hire > now)).sum()),
            pending_terminations=int((status.eq("terminated") & (term > now)).sum()),
        )
    return stats
