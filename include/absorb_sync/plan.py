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

import pandas as pd

from absorb_sync.rules import leavers as effective_leavers

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
    current: pd.DataFrame,
    created_by_us: set[str],
    today: date,
    *,
    unenroll_only_ours: bool = True,
) -> Plan:
    """Diff the rules' desired enrollments against Absorb's current ones (see the module docstring)."""
    current = _normalise_current(current)
    active = _latest_active(current)
    created_by_us = {str(i).lower() for i in created_by_us}
    employee_by_user = {str(u).lower(): str(e) for e, u in users_by_employee_id.items() if u is not None}
    hire_dates = _hire_dates(people)

    wanted = desired.copy()
    wanted["user_id"] = wanted["employee_id"].map(users_by_employee_id)
    missing = sorted(wanted.loc[wanted["user_id"].isna(), "employee_id"].astype(str).unique())
    wanted = wanted.loc[wanted["user_id"].notna()]
    wanted["user_key"] = wanted["user_id"].astype(str).str.lower()
    wanted["course_key"] = wanted["course_id"].astype(str).str.lower()
    merged = wanted.merge(active, how="left", on=["user_key", "course_key"], suffixes=("", "_cur"))

    lines: list[dict] = []
    lines += _enroll_lines(merged, hire_dates, today)
    lines += _re_enroll_lines(merged, today)
    lines += _due_date_lines(merged, hire_dates, created_by_us)
    lines += _sync_unenroll_lines(
        active,
        wanted[["user_key", "course_key"]],
        employee_by_user,
        _settled_active(people, today),
        created_by_us,
        unenroll_only_ours,
    )
    lines += _leaver_lines(active, people, users_by_employee_id, today)
    return Plan(lines=_lines_frame(lines), missing_people=missing, active_in_scope=len(active))


def _normalise_current(current: pd.DataFrame) -> pd.DataFrame:
    frame = (current if current is not None else pd.DataFrame()).reindex(columns=CURRENT_COLUMNS)
    frame = frame.loc[frame["id"].notna()].copy()
    frame["id"] = frame["id"].astype(str)
    frame["user_key"] = frame["userId"].astype(str).str.lower()
    frame["course_key"] = frame["courseId"].astype(str).str.lower()
    # A row without isActive is taken as active: treating it as history would plan a duplicate.
    frame["cur_active"] = _flags(frame["isActive"].astype("object").where(frame["isActive"].notna(), True))
    frame["cur_status"] = pd.to_numeric(frame["status"], errors="coerce")
    frame["cur_added"] = _dates(frame["dateAdded"])
    frame["cur_due"] = _dates(frame["dateDue"])
    frame["cur_completed_on"] = _dates(frame["dateCompleted"])
    frame["cur_complete"] = frame["cur_status"].eq(COMPLETE).fillna(False) | frame["cur_completed_on"].notna()
    return frame.drop(columns=["status", "dateAdded", "dateDue", "dateCompleted"])  # parsed into cur_*


def _flags(series: pd.Series) -> pd.Series:
    """Booleans from bools or "true"/"1"/"yes" text; missing is False."""
    if pd.api.types.is_bool_dtype(series):
        return series.fillna(False).astype("bool")
    text = series.astype("object").map(lambda v: str(v).strip().lower() if v is not None and v == v else "")
    return text.isin(["true", "1", "yes", "1.0"]).astype("bool")


def _dates(series: pd.Series) -> pd.Series:
    """Calendar dates (``datetime.date`` or None) from ISO strings or timestamps."""
    parsed = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
    dates = pd.Series(parsed.dt.date, index=series.index, dtype="object")
    return dates.where(parsed.notna(), None)


ROW_COLUMNS = (
    "id",
    "userId",
    "courseId",
    "user_id",
    "course_id",
    "user_key",
    "course_key",
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
    """Rows as named tuples of plain Python values, NA as None (itertuples on Arrow strings is slow).

    Only the columns the line builders read: callers filter with vector operations first, so
    this per-row step sees the few rows that may become plan lines, not the whole portal.
    """
    from collections import namedtuple

    frame = frame[[c for c in ROW_COLUMNS if c in frame.columns]]
    Row = namedtuple("Row", list(frame.columns), rename=True)
    columns = []
    for name in frame.columns:
        values = frame[name].astype("object")
        columns.append(values.where(values.notna(), None).tolist())
    return [Row(*values) for values in zip(*columns, strict=True)]


def _latest_active(current: pd.DataFrame) -> pd.DataFrame:
    """One active enrollment per (user, course): the most recently added if Absorb has several."""
    narrow = current.loc[
        current["cur_active"].to_numpy(dtype=bool), ["cur_added", "id", "user_key", "course_key"]
    ]
    narrow = narrow.assign(
        added=pd.to_datetime(narrow["cur_added"], errors="coerce").fillna(pd.Timestamp.min)
    )
    order = narrow.sort_values(["added", "id"]).drop_duplicates(["user_key", "course_key"], keep="last")
    return current.loc[order.index]  # one copy of the wide frame, in the same order as before


def _hire_dates(people: pd.DataFrame) -> dict[str, date]:
    result = {}
    for employee_id, hire in zip(people["employee_id"], people["hire_date"], strict=True):
        if isinstance(hire, str) and employee_id is not None:
            try:
                result[str(employee_id)] = date.fromisoformat(hire)
            except ValueError:
                continue
    return result


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


def _enroll_lines(merged: pd.DataFrame, hire_dates: dict[str, date], today: date) -> list[dict]:
    lines = []
    for row in _rows(merged.loc[merged["id"].isna()]):
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


def _re_enroll_lines(merged: pd.DataFrame, today: date) -> list[dict]:
    lines = []
    complete = merged["cur_complete"].fillna(False).astype(bool)
    candidates = merged.loc[merged["id"].notna() & complete & merged["recur_every_days"].notna()]
    completed_on = candidates["cur_completed_on"].where(
        candidates["cur_completed_on"].notna(), candidates["cur_added"]
    )
    due_again = pd.to_datetime(completed_on, errors="coerce") + pd.to_timedelta(
        candidates["recur_every_days"].astype("float64"), unit="D"
    )
    candidates = candidates.loc[due_again.le(pd.Timestamp(today)).fillna(False).to_numpy(dtype=bool)]
    for row in _rows(candidates):
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


def _due_date_lines(merged: pd.DataFrame, hire_dates: dict[str, date], created_by_us: set[str]) -> list[dict]:
    lines = []
    candidates = merged.loc[
        merged["id"].notna()
        & ~merged["cur_complete"].fillna(False).astype(bool)
        & merged["due_days"].notna()
        & merged["cur_added"].notna()
    ]
    candidates = candidates.loc[
        candidates["id"].astype(str).str.lower().isin(created_by_us).to_numpy(dtype=bool)
    ]
    for row in _rows(candidates):
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


def _sync_unenroll_lines(
    active: pd.DataFrame,
    wanted_keys: pd.DataFrame,
    employee_by_user: dict[str, str],
    settled_active: set[str],
    created_by_us: set[str],
    only_ours: bool,
) -> list[dict]:
    lines = []
    open_rows = active.loc[~active["cur_complete"]]
    employees = open_rows["user_key"].map(employee_by_user)
    keep = employees.isin(settled_active)
    if only_ours:
        keep &= open_rows["id"].astype(str).str.lower().isin(created_by_us)
    open_rows = open_rows.loc[keep.to_numpy(dtype=bool)]
    still_wanted = (
        open_rows[["user_key", "course_key"]]
        .merge(wanted_keys.drop_duplicates(), how="left", on=["user_key", "course_key"], indicator=True)[
            "_merge"
        ]
        .eq("both")
    )
    open_rows = open_rows.loc[~still_wanted.to_numpy(dtype=bool)]
    for row in _rows(open_rows):
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
    active: pd.DataFrame, people: pd.DataFrame, users_by_employee_id: dict[str, str], today: date
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
    open_rows = active.loc[~active["cur_complete"]]
    for row in _rows(open_rows.loc[open_rows["user_key"].isin(term_by_user).to_numpy(dtype=bool)]):
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
