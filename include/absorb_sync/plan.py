"""Desired vs current enrollments -> a plan of changes, each with a reason; and the plan gate.

The plan is the only place that decides writes, so its safety rules live here:
- people are keyed on the HR employee id (Absorb ``externalId``), never on email;
- completed enrollments are never removed; the sync removes only incomplete enrollments of people
  who are *active in the feed* and no longer wanted by any rule (people on leave, pending leavers,
  rejected rows and people absent from the feed are left alone), and by default only enrollments
  this integration created;
- leavers' open enrollments are planned for the ``absorb_bulk_unenrollment`` hand-over and count
  towards the removal threshold;
- due dates are computed from stable inputs (hire date, or the enrollment's ``dateAdded``), so
  re-running on the same input plans nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from absorb_sync.rules import leavers as effective_leavers
from absorb_sync.vector import in_set

ACTIONS = ("enroll", "re_enroll", "update_due_date", "unenroll")
HANDLED_BY_SYNC = "sync"
HANDLED_BY_UNENROLL_DAG = "absorb_bulk_unenrollment"
LINE_COLUMNS = [
    "action",
    "employee_id",
    "user_id",
    "course_id",
    "enrollment_id",
    "rule",
    "reason",
    "due_date",
    "handled_by",
]
CURRENT_COLUMNS = ["id", "userId", "courseId", "status", "isActive", "dateAdded", "dateDue", "dateCompleted"]
COMPLETE = 3
EPOCH = date(1970, 1, 1)


@dataclass
class Plan:
    """Plan lines (see ``LINE_COLUMNS``) plus what the plan gate needs."""

    lines: pd.DataFrame
    missing_people: list[str] = field(default_factory=list)
    active_in_scope: int = 0

    def summary(self) -> dict:
        """Counts per action, removals (sync + leavers), missing people, scope; JSON-safe."""
        lines = self.lines
        counts = {action: int((lines["action"] == action).sum()) for action in ACTIONS}
        removals = lines["action"] == "unenroll"
        by_sync = removals & (lines["handled_by"] == HANDLED_BY_SYNC)
        total_removals = int(removals.sum())
        return {
            "counts": counts,
            "enroll": counts["enroll"],
            "re_enroll": counts["re_enroll"],
            "update_due_date": counts["update_due_date"],
            "unenroll_by_sync": int(by_sync.sum()),
            "unenroll_leavers": int((removals & ~by_sync).sum()),
            "additions": counts["enroll"] + counts["re_enroll"],
            "removals": total_removals,
            "removal_pct": removal_pct(total_removals, self.active_in_scope),
            "missing_people": len(self.missing_people),
            "missing_people_sample": list(self.missing_people[:10]),
            "active_in_scope": int(self.active_in_scope),
            "total_lines": len(lines),
        }


@dataclass
class PlanDecision:
    allowed: bool
    reasons: list[str]
    overridden: bool
    override_reason: str | None


def removal_pct(removals: int, active_in_scope: int) -> float:
    if not removals:
        return 0.0
    if not active_in_scope:
        return 100.0
    return round(100 * removals / active_in_scope, 2)


# ----------------------------------------------------------------------------------- build


def build_plan(
    desired: pd.DataFrame,
    people: pd.DataFrame,
    users_by_employee_id: dict[str, str],
    current: pd.DataFrame | Any,
    created_by_us: set[str],
    today: date,
    *,
    unenroll_only_ours: bool = True,
) -> Plan:
    """Diff the rules' desired enrollments against Absorb's current ones (see the module docstring).

    ``current`` is a DataFrame or an Arrow table of ``CURRENT_COLUMNS``. Memory stays proportional
    to the rows, not to Python objects per row: users and courses become integer codes, dates
    ``datetime64`` days, and every rule is first applied with vector operations; only the rows
    that become plan lines are turned into Python values.
    """
    current = _normalise_current(current)
    active = _latest_active(current)
    del current
    created_by_us = {str(i).lower() for i in created_by_us}
    employee_by_user = {str(u).lower(): str(e) for e, u in users_by_employee_id.items() if u is not None}
    hire_dates = _hire_dates(people)

    wanted = desired.assign(user_id=desired["employee_id"].map(users_by_employee_id))
    missing = sorted(wanted.loc[wanted["user_id"].isna(), "employee_id"].astype(str).unique())
    wanted = wanted.loc[wanted["user_id"].notna()].reset_index(drop=True)
    match = _match_active(wanted, active)
    matched = Matched(wanted, active, match)

    lines: list[dict] = []
    lines += _enroll_lines(wanted.loc[match < 0], hire_dates, today)
    lines += _re_enroll_lines(matched, today)
    lines += _due_date_lines(matched, hire_dates, created_by_us)
    still_wanted = np.zeros(len(active), dtype=bool)
    still_wanted[match[match >= 0]] = True
    lines += _sync_unenroll_lines(
        active,
        still_wanted,
        employee_by_user,
        _settled_active(people, today),
        created_by_us,
        unenroll_only_ours,
    )
    lines += _leaver_lines(active, people, users_by_employee_id, today)
    return Plan(lines=_lines_frame(lines), missing_people=missing, active_in_scope=len(active))


@dataclass
class Current:
    """Enrollments with parsed columns: ``frame`` (``id``, ``userId``, ``courseId``, ``user_code``,
    ``course_code``, ``cur_*``) and the lower-case keys the codes index (``users``, ``courses``)."""

    frame: pd.DataFrame
    users: pd.Index
    courses: pd.Index

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, positions: Any) -> Current:
        return Current(self.frame.iloc[positions].reset_index(drop=True), self.users, self.courses)

    def with_user_key(self, positions: Any) -> pd.DataFrame:
        """Rows at ``positions`` with their lower-case ``user_key`` text (for per-row lookups)."""
        rows = self.frame.iloc[positions].reset_index(drop=True)
        return rows.assign(user_key=_decode(self.users, rows["user_code"].to_numpy()))


@dataclass
class Matched:
    """Wanted rows that have an active enrollment, and that enrollment (row ``i`` of both)."""

    wanted: pd.DataFrame
    active: Current
    match: Any

    def __post_init__(self) -> None:
        self.rows = np.flatnonzero(self.match >= 0)
        self.enrollments = self.active.frame.iloc[self.match[self.rows]].reset_index(drop=True)

    def column(self, name: str) -> Any:
        """A column of the matched enrollments as numpy (dates as float days, NaN when missing)."""
        values = self.enrollments[name]
        return _days(values) if name.startswith("cur_") and name != "cur_complete" else values.to_numpy()

    def wanted_column(self, name: str) -> Any:
        return self.wanted[name].to_numpy()[self.rows]

    def frame(self, selected: Any) -> pd.DataFrame:
        """The merged rows (wanted + enrollment columns) where ``selected`` (over matched rows)."""
        selected = np.asarray(selected, dtype=bool)
        wanted = self.wanted.iloc[self.rows[selected]].reset_index(drop=True)
        return pd.concat([wanted, self.enrollments.loc[selected].reset_index(drop=True)], axis=1)


def _normalise_current(current: pd.DataFrame | Any) -> Current:
    if current is None:
        current = pd.DataFrame()
    if not isinstance(current, pd.DataFrame):  # an Arrow table: its own columns, strings stay Arrow
        current = current.select([c for c in CURRENT_COLUMNS if c in current.column_names]).to_pandas()
    frame = current.reindex(columns=CURRENT_COLUMNS)
    frame = frame.loc[frame["id"].notna()].reset_index(drop=True)
    user_codes, users = _lower_codes(frame["userId"])
    course_codes, courses = _lower_codes(frame["courseId"])
    completed_on = _dates(frame["dateCompleted"])
    status = pd.to_numeric(frame["status"], errors="coerce")
    parsed = pd.DataFrame(
        {
            "id": frame["id"].astype(str),
            "userId": frame["userId"],
            "courseId": frame["courseId"].astype("category"),
            "user_code": user_codes,
            "course_code": course_codes,
            # A row without isActive is taken as active: treating it as history would plan a duplicate.
            "cur_active": _flags_missing_true(frame["isActive"]),
            "cur_status": status,
            "cur_added": _dates(frame["dateAdded"]),
            "cur_due": _dates(frame["dateDue"]),
            "cur_completed_on": completed_on,
            "cur_complete": (status.eq(COMPLETE).fillna(False) | completed_on.notna()).to_numpy(dtype=bool),
        }
    )
    return Current(parsed, users, courses)


def _lower_codes(values: pd.Series) -> tuple[Any, pd.Index]:
    """Integer codes of the lower-case text of ``values`` (-1 where missing), and the texts."""
    codes, uniques = pd.factorize(values)
    lowered = pd.Index(uniques).astype(str).str.lower()
    folded, keys = pd.factorize(lowered)  # two spellings of one id share a code
    return np.where(codes >= 0, folded[np.maximum(codes, 0)], -1), pd.Index(keys)


def _decode(keys: pd.Index, codes: Any) -> Any:
    """Texts of ``codes`` (None for -1)."""
    texts = np.asarray(keys, dtype=object)
    return np.where(codes >= 0, texts[np.maximum(codes, 0)] if len(texts) else None, None)


def _flags_missing_true(series: pd.Series) -> Any:
    if pd.api.types.is_bool_dtype(series):
        return series.fillna(True).to_numpy(dtype=bool)
    return _flags(series.astype("object").where(series.notna(), True)).to_numpy(dtype=bool)


def _flags(series: pd.Series) -> pd.Series:
    """Booleans from bools or "true"/"1"/"yes" text; missing is False."""
    if pd.api.types.is_bool_dtype(series):
        return series.fillna(False).astype("bool")
    text = series.astype("object").map(lambda v: str(v).strip().lower() if v is not None and v == v else "")
    return text.isin(["true", "1", "yes", "1.0"]).astype("bool")


def _dates(series: pd.Series) -> pd.Series:
    """Calendar dates (UTC) as ``datetime64`` midnights, NaT when missing, from ISO strings or timestamps."""
    parsed = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
    return parsed.dt.tz_localize(None).dt.floor("D")


def _days(values: pd.Series) -> Any:
    """Days since 1970-01-01 as floats (NaN when missing): vector date arithmetic without objects."""
    days = values.to_numpy(dtype="datetime64[D]").astype("int64").astype("float64")
    days[values.isna().to_numpy()] = np.nan
    return days


def _day_number(day: date) -> int:
    return (day - EPOCH).days


ROW_COLUMNS = (
    "id",
    "userId",
    "courseId",
    "user_id",
    "course_id",
    "user_key",
    "employee_id",
    "rule",
    "due_days",
    "due_from",
    "recur_every_days",
    "cur_added",
    "cur_due",
    "cur_completed_on",
)


def _rows(frame: pd.DataFrame) -> list:
    """Rows as named tuples of plain Python values (dates as ``date``), NA as None.

    Only the columns the line builders read: callers filter with vector operations first, so
    this per-row step sees the few rows that may become plan lines, not the whole portal.
    """
    from collections import namedtuple

    frame = frame[[c for c in ROW_COLUMNS if c in frame.columns]]
    Row = namedtuple("Row", list(frame.columns), rename=True)
    columns = []
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_datetime64_any_dtype(values):
            values = pd.Series(values.dt.date, index=values.index, dtype="object")
        values = values.astype("object")
        columns.append(values.where(values.notna(), None).tolist())
    return [Row(*values) for values in zip(*columns, strict=True)]


def _latest_active(current: Current) -> Current:
    """One active enrollment per (user, course): the most recently added if Absorb has several.

    In (date added, id) order, as the sync and leaver removals are listed."""
    frame = current.frame
    live = np.flatnonzero(frame["cur_active"].to_numpy(dtype=bool))
    added = frame["cur_added"].to_numpy(dtype="datetime64[D]")[live].astype("int64")
    added[frame["cur_added"].isna().to_numpy()[live]] = np.iinfo(np.int64).min
    id_rank = pd.factorize(frame["id"].iloc[live], sort=True)[0]
    ordered = live[np.lexsort((id_rank, added))]
    keys = pd.DataFrame(
        {"user": frame["user_code"].to_numpy()[ordered], "course": frame["course_code"].to_numpy()[ordered]}
    )
    return current.take(ordered[~keys.duplicated(keep="last").to_numpy()])


def _match_active(wanted: pd.DataFrame, active: Current) -> Any:
    """For each wanted row, the row of its active enrollment in ``active`` (-1: none)."""
    users = active.users.get_indexer(wanted["user_id"].astype(str).str.lower())
    courses = active.courses.get_indexer(wanted["course_id"].astype(str).str.lower())
    width = max(len(active.courses), 1)
    active_keys = active.frame["user_code"].to_numpy() * width + active.frame["course_code"].to_numpy()
    found = pd.Index(active_keys).get_indexer(users * width + courses)
    return np.where((users >= 0) & (courses >= 0), found, -1)


def _hire_dates(people: pd.DataFrame) -> dict[str, date]:
    result = {}
    for employee_id, hire in zip(people["employee_id"], people["hire_date"], strict=True):
        if isinstance(hire, str) and employee_id is not None:
            try:
                result[str(employee_id)] = date.fromisoformat(hire)
            except ValueError:
                continue
    return result


def _hire_days(employee_ids: Any, hire_dates: dict[str, date]) -> Any:
    """Hire dates of ``employee_ids`` as float days (NaN when unknown), as ``_hire_dates`` reads them."""
    days = pd.Series({e: _day_number(d) for e, d in hire_dates.items()}, dtype="float64")
    return pd.Series(employee_ids, dtype=object).astype(str).map(days).to_numpy(dtype="float64")


def _settled_active(people: pd.DataFrame, today: date) -> set[str]:
    """Employee ids that are active and already hired: the only people the sync may unenroll."""
    hire = pd.to_datetime(people["hire_date"], format="%Y-%m-%d", errors="coerce")
    mask = people["status"].eq("active").fillna(False) & hire.le(pd.Timestamp(today)).fillna(False)
    return set(people.loc[mask, "employee_id"].astype(str))


def due_date(due_days: Any, due_from: str, hire: date | None, assigned: date) -> date | None:
    """``hire + due_days`` (due_from hire) or ``assigned + due_days``; never before the assignment.

    A hire-relative date that is already past when the enrollment is assigned (existing staff, a
    new rule, re-enrollments) falls back to ``assigned + due_days`` so nobody starts overdue.
    Both inputs are stable (hire date, the enrollment's ``dateAdded``), so re-runs agree.
    """
    if due_days is None or due_days is pd.NA or (isinstance(due_days, float) and due_days != due_days):
        return None
    days = timedelta(days=int(due_days))
    if due_from == "hire" and hire is not None and hire + days >= assigned:
        return hire + days
    return assigned + days


def _due(due_days: Any, due_from: str, hire: date | None, assigned: date) -> tuple[date | None, str]:
    """The due date and a phrase saying how it was computed (for plan reasons)."""
    due = due_date(due_days, due_from, hire, assigned)
    if due is None:
        return None, "no due date"
    days = int(due_days)
    if due_from == "hire" and hire is not None and due == hire + timedelta(days=days):
        basis = f"hire {hire.isoformat()} + {days} days"
    elif due_from == "hire":
        basis = f"assigned {assigned.isoformat()} + {days} days, as hire + {days} days had passed"
    else:
        basis = f"assigned {assigned.isoformat()} + {days} days"
    return due, f"due {due.isoformat()} ({basis})"


def _enroll_lines(unmatched: pd.DataFrame, hire_dates: dict[str, date], today: date) -> list[dict]:
    lines = []
    for row in _rows(unmatched):
        due, how = _due(row.due_days, row.due_from, hire_dates.get(str(row.employee_id)), today)
        lines.append(
            _line(
                "enroll",
                row,
                None,
                due,
                f"rule {row.rule!r} requires this course and there is no active enrollment; {how}",
            )
        )
    return lines


def _re_enroll_lines(matched: Matched, today: date) -> list[dict]:
    lines = []
    completed = matched.column("cur_completed_on")
    completed_on = np.where(np.isnan(completed), matched.column("cur_added"), completed)
    recur = pd.array(matched.wanted_column("recur_every_days"), dtype="Int64")
    recur = recur.to_numpy(dtype="float64", na_value=np.nan)
    due_again = completed_on + recur
    with np.errstate(invalid="ignore"):
        selected = matched.column("cur_complete") & (due_again <= _day_number(today))
    for row in _rows(matched.frame(selected)):
        completed_on = row.cur_completed_on or row.cur_added
        if completed_on is None:
            continue
        due_again = completed_on + timedelta(days=int(row.recur_every_days))
        if due_again > today:
            continue
        due, how = _due(row.due_days, "assignment", None, today)
        lines.append(
            _line(
                "re_enroll",
                row,
                row.id,
                due,
                f"rule {row.rule!r} recurs every {int(row.recur_every_days)} days: completed "
                f"{completed_on.isoformat()}, due again {due_again.isoformat()}; {how}",
            )
        )
    return lines


def _due_date_lines(matched: Matched, hire_dates: dict[str, date], created_by_us: set[str]) -> list[dict]:
    """Our open enrollments whose due date is not the rule's (computed for all of them at once)."""
    lines = []
    added, current_due = matched.column("cur_added"), matched.column("cur_due")
    due_days = pd.array(matched.wanted_column("due_days"), dtype="Int64").to_numpy("float64", na_value=np.nan)
    candidates = ~matched.column("cur_complete") & ~np.isnan(due_days) & ~np.isnan(added)
    ids = matched.enrollments["id"].astype(str).str.lower()
    candidates &= in_set(ids, created_by_us).to_numpy(dtype=bool)
    hire = _hire_days(matched.wanted_column("employee_id")[candidates], hire_dates)
    from_hire = pd.Series(matched.wanted_column("due_from")[candidates]).eq("hire").to_numpy(dtype=bool)
    days, assigned, seen_due = due_days[candidates], added[candidates], current_due[candidates]
    with np.errstate(invalid="ignore"):
        as_planned = (seen_due == _due_days(days, from_hire, hire, assigned)) | (
            seen_due == _due_days(days, from_hire, hire, assigned - 1)
        )
    selected = candidates.copy()
    selected[candidates] = ~as_planned
    for row in _rows(matched.frame(selected)):
        if row.id.lower() not in created_by_us or row.due_days is None:
            continue
        if row.cur_added is None:
            continue
        hire = hire_dates.get(str(row.employee_id))
        expected = due_date(row.due_days, row.due_from, hire, row.cur_added)
        if row.cur_due == expected:
            continue
        # dateAdded is a UTC timestamp: a run just before midnight may see its own enrollment dated
        # the next day, so the due date computed from the day before is accepted too.
        if row.cur_due == due_date(row.due_days, row.due_from, hire, row.cur_added - timedelta(days=1)):
            continue
        expected, how = _due(row.due_days, row.due_from, hire, row.cur_added)
        current = row.cur_due.isoformat() if row.cur_due else "none"
        lines.append(
            _line(
                "update_due_date",
                row,
                row.id,
                expected,
                f"rule {row.rule!r}: due date {current} differs from the rule's; {how}",
            )
        )
    return lines


def _due_days(days: Any, from_hire: Any, hire: Any, assigned: Any) -> Any:
    """:func:`due_date` over arrays of float days (NaN hire: unknown)."""
    by_hire = hire + days
    with np.errstate(invalid="ignore"):
        use_hire = from_hire & ~np.isnan(hire) & (by_hire >= assigned)
    return np.where(use_hire, by_hire, assigned + days)


def _sync_unenroll_lines(
    active: Current,
    still_wanted: Any,
    employee_by_user: dict[str, str],
    settled_active: set[str],
    created_by_us: set[str],
    only_ours: bool,
) -> list[dict]:
    lines = []
    frame = active.frame
    employees = active.users.map(employee_by_user)
    settled = in_set(pd.Series(employees), settled_active).to_numpy(dtype=bool)
    codes = frame["user_code"].to_numpy()
    keep = ~frame["cur_complete"].to_numpy(dtype=bool) & ~still_wanted & (codes >= 0)
    keep[keep] = settled[codes[keep]]
    if only_ours:
        keep[keep] = in_set(frame["id"].iloc[np.flatnonzero(keep)].str.lower(), created_by_us).to_numpy(
            dtype=bool
        )
    for row in _rows(active.with_user_key(np.flatnonzero(keep))):
        employee = employee_by_user.get(row.user_key)
        if employee is None or employee not in settled_active:
            continue
        ours = row.id.lower() in created_by_us
        if only_ours and not ours:
            continue
        origin = (
            "created by this integration"
            if ours
            else "not created by this integration (unenroll_only_ours off)"
        )
        lines.append(
            {
                "action": "unenroll",
                "employee_id": employee,
                "user_id": row.userId,
                "course_id": row.courseId,
                "enrollment_id": row.id,
                "rule": None,
                "reason": f"no rule assigns this course to {employee} any more; the enrollment is incomplete and {origin}",
                "due_date": None,
                "handled_by": HANDLED_BY_SYNC,
            }
        )
    return lines


def _leaver_lines(
    active: Current, people: pd.DataFrame, users_by_employee_id: dict[str, str], today: date
) -> list[dict]:
    gone = effective_leavers(people, today)
    if gone.empty:
        return []
    term_by_user = {}
    for employee_id, term in zip(gone["employee_id"], gone["termination_date"], strict=True):
        user_id = users_by_employee_id.get(employee_id)
        if user_id is not None:
            term_by_user[str(user_id).lower()] = (str(employee_id), term)
    lines = []
    frame = active.frame
    leaving = np.asarray(active.users.isin(list(term_by_user)), dtype=bool)
    codes = frame["user_code"].to_numpy()
    keep = ~frame["cur_complete"].to_numpy(dtype=bool) & (codes >= 0)
    keep[keep] = leaving[codes[keep]]
    for row in _rows(active.with_user_key(np.flatnonzero(keep))):
        if row.user_key not in term_by_user:
            continue
        employee, term = term_by_user[row.user_key]
        when = f"terminated {term}" if isinstance(term, str) else "terminated (no termination date given)"
        lines.append(
            {
                "action": "unenroll",
                "employee_id": employee,
                "user_id": row.userId,
                "course_id": row.courseId,
                "enrollment_id": row.id,
                "rule": None,
                "reason": f"leaver: {when}; incomplete enrollment dropped, completed history kept",
                "due_date": None,
                "handled_by": HANDLED_BY_UNENROLL_DAG,
            }
        )
    return lines


def _line(action: str, row: Any, enrollment_id: str | None, due: date | None, reason: str) -> dict:
    return {
        "action": action,
        "employee_id": str(row.employee_id),
        "user_id": row.user_id,
        "course_id": row.course_id,
        "enrollment_id": enrollment_id,
        "rule": row.rule,
        "reason": reason,
        "due_date": due.isoformat() if due else None,
        "handled_by": HANDLED_BY_SYNC,
    }


def _lines_frame(lines: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(lines, columns=LINE_COLUMNS)
    order = {action: i for i, action in enumerate(ACTIONS)}
    frame["_order"] = frame["action"].map(order)
    frame = frame.sort_values(
        ["_order", "employee_id", "course_id", "enrollment_id"], kind="stable", na_position="first"
    )
    frame = frame.drop(columns="_order").reset_index(drop=True)
    return frame.astype({c: "object" for c in LINE_COLUMNS}).where(frame.notna(), None)


# ----------------------------------------------------------------------------------- gate


def check_plan(
    plan: Plan,
    *,
    max_removal_pct: float = 10.0,
    max_additions: int | None = None,
    reads_complete: bool,
    feed_shrank: bool,
    override: bool = False,
    override_reason: str | None = None,
    holds: Iterable[str] = (),
    users: Mapping[str, Any] | None = None,
    max_deactivation_pct: float = 5.0,
) -> PlanDecision:
    """Refuse a risky plan unless a person overrides it with a reason.

    An incomplete read cannot be overridden: acting on a partial picture of Absorb is the failure
    that deprovisions thousands, and a re-run once the API answers fully repairs it. ``holds`` are
    other refusals that a threshold override does not lift (e.g. a first apply on a portal).
    ``users`` (the user plan's summary) brings user deactivations under the same gate, counted
    against the portal's active users (``max_deactivation_pct``).
    """
    reason_text = (override_reason or "").strip()
    if override and not reason_text:
        raise ValueError("an override needs a non-empty override_reason")
    summary = plan.summary()
    reasons, hard = [], []
    if not reads_complete:
        hard.append("an Absorb read was incomplete (a failed or short page): no changes on a partial read")
    hard += list(holds)
    if summary["removals"] and summary["removal_pct"] > max_removal_pct:
        reasons.append(
            f"{summary['removals']} removals are {summary['removal_pct']}% of the {summary['active_in_scope']} "
            f"active enrollments in scope, above max_removal_pct {max_removal_pct:g}%"
        )
    deactivations = int((users or {}).get("deactivations") or 0)
    if deactivations and users["deactivation_pct"] > max_deactivation_pct:
        reasons.append(
            f"{deactivations} user deactivations are {users['deactivation_pct']}% of the "
            f"{users['active_users']} active users, above max_deactivation_pct {max_deactivation_pct:g}%"
        )
    if max_additions is not None and summary["additions"] > max_additions:
        reasons.append(f"{summary['additions']} additions exceed max_additions {max_additions}")
    if feed_shrank:
        reasons.append("the HR feed shrank suspiciously compared with the last accepted feed")
    if hard:
        return PlanDecision(allowed=False, reasons=hard + reasons, overridden=False, override_reason=None)
    if reasons and override:
        return PlanDecision(allowed=True, reasons=reasons, overridden=True, override_reason=reason_text)
    return PlanDecision(allowed=not reasons, reasons=reasons, overridden=False, override_reason=None)
