"""Absorb users from the HR feed: hires, movers, leavers and rehires, planned with reasons.

Pure functions over the accepted feed, one read of Absorb's users and departments, and what the
sync state knows; :mod:`absorb_sync.jobs.hr_sync` reads and writes, this module decides. Why each
safety rule is here (the HRIS connectors have none of them):

- only the fields the rules file names as *managed* are compared and written, never the
  username or a password; a blank in the feed never clears a field in Absorb;
- a department the portal does not know quarantines that person's user change (reported, never
  created): a typo in HR must not invent departments;
- deactivation (never deletion: history stays) only for effective leavers whose open
  enrollments are gone (the unenrollment hand-over ran), only for users the sync manages (active
  in a feed it accepted), never protected users, and never on an incomplete read of the users;
- a rehire is the same employee id active again: the inactive user is reactivated, with its
  completed history, never a second account.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from absorb_sync.rules import leavers as effective_leavers
from absorb_sync.vector import in_set

# managed field (rules file) -> (feed column, Absorb user field)
MANAGED_FIELDS: dict[str, tuple[str, str]] = {
    "department": ("department", "departmentId"),
    "job_title": ("job_title", "jobTitle"),
    "location": ("location", "location"),
    "manager": ("manager_id", "supervisorId"),
    "first_name": ("first_name", "firstName"),
    "last_name": ("last_name", "lastName"),
    "email": ("email", "emailAddress"),
}
ID_FIELDS = ("departmentId", "supervisorId")
DEPARTMENT_MATCH = ("name", "external_id")
USER_ACTIONS = ("create_user", "reactivate_user", "update_user", "deactivate_user")
USER_COLUMNS = [
    "id",
    "username",
    "externalId",
    "firstName",
    "lastName",
    "emailAddress",
    "departmentId",
    "jobTitle",
    "location",
    "supervisorId",
    "activeStatus",
]
USER_COLUMN_TYPES = {name: "int" if name == "activeStatus" else "string" for name in USER_COLUMNS}
USER_LINE_COLUMNS = ["action", "employee_id", "user_id", "name", "changes", "payload", "reason"]
NOTE_COLUMNS = ["employee_id", "user_id", "name", "note", "detail"]
PLACEHOLDER = "new:"  # user id of a person the apply creates (enrollments are planned for it)
ACTIVE, INACTIVE = 0, 1
DEFAULT_MAX_DEACTIVATION_PCT = 5.0


@dataclass(frozen=True)
class UserSettings:
    """The ``users:`` section of the rules file (docs/rules.md); absent: users are not managed."""

    managed_fields: tuple[str, ...] = ()
    department_match: str = "name"
    deactivate_leavers: bool = False
    protected_users: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.managed_fields) or self.deactivate_leavers


@dataclass
class UserPlan:
    """User lines (``USER_LINE_COLUMNS``), notes on people left alone and why, and the scope."""

    lines: pd.DataFrame
    notes: pd.DataFrame
    active_users: int = 0
    read_complete: bool = True
    user_ids: dict[str, str] = field(default_factory=dict)  # employee id -> user id or placeholder

    def summary(self) -> dict:
        counts = {a: int((self.lines["action"] == a).sum()) for a in USER_ACTIONS}
        notes = self.notes["note"].value_counts()
        return {
            "counts": counts,
            "deactivations": counts["deactivate_user"],
            "deactivation_pct": deactivation_pct(counts["deactivate_user"], self.active_users),
            "active_users": int(self.active_users),
            "users_read_complete": bool(self.read_complete),
            "quarantined": int(notes.get("quarantined", 0)),
            "notes": {str(k): int(v) for k, v in notes.items()},
            "total_lines": len(self.lines),
        }


def deactivation_pct(deactivations: int, active_users: int) -> float:
    if not deactivations:
        return 0.0
    if not active_users:
        return 100.0
    return round(100 * deactivations / active_users, 2)


def placeholder(employee_id: str) -> str:
    return f"{PLACEHOLDER}{employee_id}"


def is_placeholder(user_id: Any) -> bool:
    return isinstance(user_id, str) and user_id.startswith(PLACEHOLDER)


# ----------------------------------------------------------------------------- settings


def user_settings(section: Mapping[str, Any] | None) -> UserSettings:
    """Settings from a validated ``users:`` mapping (the rules schema checked names and types)."""
    if not section:
        return UserSettings()
    return UserSettings(
        managed_fields=tuple(dict.fromkeys(section.get("managed_fields") or ())),
        department_match=section.get("department_match", "name"),
        deactivate_leavers=bool(section.get("deactivate_leavers", False)),
        protected_users=tuple(str(p).strip() for p in section.get("protected_users") or ()),
    )


# ----------------------------------------------------------------------------- reads


def users_frame(users: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The users read, only the columns the planner needs (strings; activeStatus an int)."""
    return users_table([tuple(u.get(c) for c in USER_COLUMNS) for u in users])


def users_table(rows: list[tuple]) -> pd.DataFrame:
    """``users_frame`` from rows already cut to ``USER_COLUMNS`` (no dict per user kept)."""
    return _typed_users(pd.DataFrame.from_records(rows, columns=USER_COLUMNS))


def users_from_arrow(pages: list[Any]) -> pd.DataFrame:
    """``users_frame`` from Arrow pages of ``USER_COLUMNS`` (the provider's ``user_tables``)."""
    if not pages:
        return users_table([])
    import pyarrow as pa

    return _typed_users(pa.concat_tables(pages).select(USER_COLUMNS).to_pandas())


def _typed_users(frame: pd.DataFrame) -> pd.DataFrame:
    frame["activeStatus"] = pd.to_numeric(frame["activeStatus"], errors="coerce").fillna(ACTIVE).astype(int)
    text = [c for c in USER_COLUMNS if c != "activeStatus"]
    frame[text] = frame[text].astype("string")
    return frame


def department_index(departments: Iterable[Mapping[str, Any]], match: str) -> dict[str, str | None]:
    """Folded name (or external id) -> department id; None marks a key two departments share."""
    key = "name" if match == "name" else "externalId"
    index: dict[str, str | None] = {}
    for department in departments:
        value = _fold(department.get(key))
        if not value or not department.get("id"):
            continue
        found = str(department["id"])
        index[value] = found if index.get(value, found) == found else None
    return index


def protected_keys(settings: UserSettings, connection_user: str | None) -> set[str]:
    """Folded usernames, user ids or employee ids never written to (the connection's own user always)."""
    keys = {_fold(p) for p in settings.protected_users}
    if connection_user:
        keys.add(_fold(connection_user))
    return {k for k in keys if k}


def leaver_user_ids(people: pd.DataFrame, users: pd.DataFrame, today: date) -> list[str]:
    """Active Absorb users of effective leavers: whose enrollments the deactivation check reads."""
    gone = set(effective_leavers(people, today)["employee_id"].astype(str))
    active = users[(users["activeStatus"] == ACTIVE) & in_set(users["externalId"], gone)]
    return sorted(active["id"].dropna().astype(str))


# ----------------------------------------------------------------------------- plan


def plan_users(
    people: pd.DataFrame,
    users: pd.DataFrame,
    departments: Iterable[Mapping[str, Any]],
    settings: UserSettings,
    *,
    today: date,
    create_missing: bool,
    managed: set[str],
    protected: set[str],
    open_enrollments: Mapping[str, int] | None,
    users_read_complete: bool = True,
) -> UserPlan:
    """The user lines for this feed (see the module docstring for the rules).

    ``managed``: employee ids active in a feed the sync accepted; ``open_enrollments``: user id ->
    open (incomplete, active) enrollments of the leavers' users, None when that read failed.
    """
    planner = _Planner(people, users, departments, settings, today, managed, protected)
    for person in planner.people:
        planner.person(person, create_missing, open_enrollments, users_read_complete)
    lines = pd.DataFrame(planner.lines, columns=USER_LINE_COLUMNS)
    order = {a: i for i, a in enumerate(USER_ACTIONS)}
    lines = lines.sort_values(
        ["action", "employee_id"], key=lambda s: s.map(order) if s.name == "action" else s
    )
    return UserPlan(
        lines=lines.reset_index(drop=True).astype(object),
        notes=pd.DataFrame(planner.notes, columns=NOTE_COLUMNS).astype(object),
        active_users=int((users["activeStatus"] == ACTIVE).sum()),
        read_complete=users_read_complete,
        user_ids=planner.user_ids,
    )


class _Planner:
    """One pass over the feed's people; indexes built once."""

    def __init__(
        self,
        people: pd.DataFrame,
        users: pd.DataFrame,
        departments: Iterable[Mapping[str, Any]],
        settings: UserSettings,
        today: date,
        managed: set[str],
        protected: set[str],
    ) -> None:
        self.settings, self.today = settings, today
        self.managed, self.protected = {str(m) for m in managed}, protected
        counts = users["externalId"].dropna().value_counts()
        self.ambiguous = set(counts[counts > 1].index)
        keyed = users[users["externalId"].notna() & ~in_set(users["externalId"], self.ambiguous)]
        self.user_ids = dict(zip(keyed["externalId"].tolist(), keyed["id"].astype(str).tolist(), strict=True))
        departments = list(departments)
        self.departments = department_index(departments, settings.department_match)
        self.department_names = {str(d["id"]).lower(): d.get("name") for d in departments if d.get("id")}
        self.employee_of = {str(u).lower(): e for e, u in self.user_ids.items()}
        self.leavers = set(effective_leavers(people, today)["employee_id"].astype(str))
        self.keyed = keyed.set_index("externalId")
        chosen = people.loc[self._needs_a_look(people).to_numpy(dtype=bool)]
        looked_at = keyed[in_set(keyed["externalId"], chosen["employee_id"])]
        self.by_employee = {r["externalId"]: r for r in _records(looked_at)}  # only those looked at
        self.people = _records(chosen)
        self.lines: list[dict] = []
        self.notes: list[dict] = []

    def _needs_a_look(self, people: pd.DataFrame) -> pd.Series:
        """People who may get a line or a note; the rest (active, user active, every managed field
        as the feed has it) are skipped with vector operations before the per-person pass."""
        employees = people["employee_id"].astype("string")
        user = self.keyed.reindex(employees)
        user.index = people.index
        look = user["id"].isna() | in_set(employees, self.ambiguous) | in_set(employees, self.leavers)
        look |= people["status"].eq("terminated").fillna(False) | user["activeStatus"].ne(ACTIVE)
        if not self.settings.enabled:
            return look
        for name in self.settings.managed_fields:
            column, absorb = MANAGED_FIELDS[name]
            wanted = _cleaned(people[column])
            if name == "department":
                mapped = wanted.str.casefold().map(self.departments).astype("string")
                look |= (wanted.notna() & mapped.isna()).fillna(False)  # unknown or ambiguous
                wanted = mapped
            elif name == "manager":
                wanted = wanted.map(self.user_ids).astype("string")  # unknown managers are skipped
            current = _cleaned(user[absorb])
            if absorb in ID_FIELDS or absorb == "emailAddress":
                wanted, current = wanted.str.casefold(), current.str.casefold()
            look |= (wanted.notna() & wanted.ne(current).fillna(True)).fillna(False)
        return look

    # ---------------------------------------------------------------- per person
    def person(
        self,
        person: dict,
        create_missing: bool,
        open_enrollments: Mapping[str, int] | None,
        read_complete: bool,
    ) -> None:
        employee = str(person["employee_id"])
        user = self.by_employee.get(employee)
        status = person.get("status")
        if employee in self.ambiguous:
            self._note(
                person,
                None,
                "ambiguous",
                "several Absorb users hold this employee id: a person must merge them",
            )
            return
        if employee in self.leavers:
            if user is not None:
                self._leaver(person, user, open_enrollments, read_complete)
            return
        if status == "terminated":
            return  # termination date still ahead: nothing to do yet
        if user is None:
            self._create(person, create_missing)
        elif self.settings.enabled:
            self._existing(person, user)

    def _create(self, person: dict, create_missing: bool) -> None:
        if not create_missing:
            return  # reported with the missing people, as before
        values, problem = self._wanted(person, all_fields=True)
        if problem:
            self._note(person, None, "quarantined", problem)
            return
        email = person.get("email")
        payload = {
            "username": email,
            "externalId": person["employee_id"],
            "employeeNumber": person["employee_id"],
            "dateHired": _value(person.get("hire_date")),
            "activeStatus": ACTIVE,
            **values,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        changes = {k: [None, self._shown(k, v)] for k, v in payload.items() if k != "activeStatus"}
        employee = str(person["employee_id"])
        self.user_ids[employee] = placeholder(employee)
        self._line(
            "create_user",
            person,
            None,
            changes,
            payload,
            "active in the HR feed without an Absorb user (create_missing_users on)",
        )

    def _existing(self, person: dict, user: dict) -> None:
        """A rehire comes back (reactivated), a mover gets the feed's managed fields."""
        rehire = person.get("status") == "active" and _hired(person, self.today)
        rehire = rehire and user["activeStatus"] == INACTIVE
        values, problem = self._wanted(person, all_fields=False)
        changed = [k for k, v in values.items() if not same_value(k, user.get(k), v)]
        changes = {k: [self._shown(k, user.get(k)), self._shown(k, values[k])] for k in changed}
        if not (rehire or changes or problem):
            return
        if self._protected(user):
            self._note(
                person, user, "protected", "in the protected users: the sync never writes to this user"
            )
            return
        if rehire:
            self._line(
                "reactivate_user",
                person,
                user["id"],
                {"activeStatus": [INACTIVE, ACTIVE]},
                {"activeStatus": ACTIVE},
                "rehire: active in the HR feed again; the same account comes back with its history",
            )
        if problem:
            self._note(person, user, "quarantined", problem)
        elif changes:
            fields = ", ".join(_FIELD_WORDS.get(k, k) for k in changes)
            self._line(
                "update_user",
                person,
                user["id"],
                changes,
                {k: values[k] for k in changed},
                f"mover: {fields} differ{'s' if len(changes) == 1 else ''} from the HR feed",
            )

    def _leaver(
        self, person: dict, user: dict, open_enrollments: Mapping[str, int] | None, read_complete: bool
    ) -> None:
        if user["activeStatus"] != ACTIVE or not self.settings.deactivate_leavers:
            return
        term = _value(person.get("termination_date")) or "no termination date given"
        if self._protected(user):
            self._note(person, user, "protected", "leaver in the protected users: never deactivated")
        elif not read_complete:
            self._note(
                person,
                user,
                "not_deactivated",
                "the read of Absorb users was incomplete: nobody is deactivated",
            )
        elif str(person["employee_id"]) not in self.managed:
            self._note(
                person,
                user,
                "not_managed",
                "never active in a feed the sync accepted: not deactivated by the sync",
            )
        elif open_enrollments is None:
            self._note(person, user, "not_deactivated", "their enrollments could not be read: kept active")
        elif open_enrollments.get(str(user["id"]).lower(), 0):
            n = open_enrollments[str(user["id"]).lower()]
            self._note(
                person,
                user,
                "waiting_handover",
                f"{n} open enrollment(s) left: deactivated once the unenrollment hand-over removed them",
            )
        else:
            self._line(
                "deactivate_user",
                person,
                user["id"],
                {"activeStatus": [ACTIVE, INACTIVE]},
                {"activeStatus": INACTIVE, "dateTerminated": _value(person.get("termination_date"))},
                f"leaver: terminated {term}, open enrollments gone; deactivated (not deleted), history kept",
            )

    # ---------------------------------------------------------------- values
    def _wanted(self, person: dict, *, all_fields: bool) -> tuple[dict, str | None]:
        """Absorb field -> the feed's value for the managed fields (all fields for a creation)."""
        names = MANAGED_FIELDS if all_fields else self.settings.managed_fields
        values: dict[str, Any] = {}
        for name in names:
            column, absorb = MANAGED_FIELDS[name]
            raw = _value(person.get(column))
            if raw is None:
                continue  # a blank in the feed never clears Absorb
            if name == "department":
                found = self.departments.get(_fold(raw), "")
                if not found:
                    how = "name" if self.settings.department_match == "name" else "external id"
                    what = "is not" if found == "" else "is ambiguous"
                    return (
                        {},
                        f"department {raw!r} {what} an Absorb department {how}: not created, user left as is",
                    )
                values[absorb] = found
            elif name == "manager":
                manager = self.user_ids.get(raw)
                if manager and not is_placeholder(manager):
                    values[absorb] = manager
            else:
                values[absorb] = raw
        return values, None

    def _shown(self, absorb_field: str, value: Any) -> Any:
        """A value as people read it: department names, the manager's employee id."""
        value = _value(value)
        if value and absorb_field == "departmentId":
            return self.department_names.get(value.lower(), value)
        if value and absorb_field == "supervisorId":
            return self.employee_of.get(value.lower(), value)
        return value

    def _protected(self, user: Mapping[str, Any]) -> bool:
        keys = {_fold(user.get(k)) for k in ("id", "username", "externalId")}
        return bool(keys & self.protected)

    def _line(
        self, action: str, person: dict, user_id: Any, changes: dict, payload: dict, reason: str
    ) -> None:
        self.lines.append(
            {
                "action": action,
                "employee_id": str(person["employee_id"]),
                "user_id": None if user_id is None else str(user_id),
                "name": _name(person),
                "changes": json.dumps(changes, sort_keys=True, default=str),
                "payload": json.dumps(payload, sort_keys=True, default=str),
                "reason": reason,
            }
        )

    def _note(self, person: dict, user: Mapping[str, Any] | None, note: str, detail: str) -> None:
        self.notes.append(
            {
                "employee_id": str(person["employee_id"]),
                "user_id": None if user is None else str(user["id"]),
                "name": _name(person),
                "note": note,
                "detail": detail,
            }
        )


_FIELD_WORDS = {
    "departmentId": "department",
    "jobTitle": "job title",
    "location": "location",
    "supervisorId": "manager",
    "firstName": "first name",
    "lastName": "last name",
    "emailAddress": "email",
}


def _cleaned(values: pd.Series) -> pd.Series:
    """Stripped text, blank as NA (how the planner reads a feed or Absorb value)."""
    text = values.astype("string").str.strip()
    return text.mask(text.eq("").fillna(False))


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain values, NA as None."""
    plain = frame.astype(object).where(frame.notna(), None)
    return plain.to_dict("records")


def _value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def _fold(value: Any) -> str:
    text = _value(value)
    return text.casefold() if text else ""


def same_value(field_name: str, current: Any, wanted: Any) -> bool:
    """Absorb's value equals the wanted one (ids and emails case-insensitive, dates by day)."""
    if field_name.startswith("date"):
        return (_value(current) or "")[:10] == (_value(wanted) or "")[:10]
    if field_name in ID_FIELDS or field_name == "emailAddress":
        return _fold(current) == _fold(wanted)
    return _value(current) == _value(wanted)


def _hired(person: Mapping[str, Any], today: date) -> bool:
    hire = _value(person.get("hire_date"))
    try:
        return hire is not None and date.fromisoformat(hire) <= today
    except ValueError:
        return False


def _name(person: Mapping[str, Any]) -> str:
    name = " ".join(p for p in (_value(person.get("first_name")), _value(person.get("last_name"))) if p)
    return name or str(person["employee_id"])


def changed_fields(line: Mapping[str, Any]) -> dict[str, list]:
    """A line's changes as {Absorb field: [from, to]}."""
    return json.loads(line["changes"]) if line.get("changes") else {}


def payload_of(line: Mapping[str, Any], created_ids: Mapping[str, str] | None = None) -> dict:
    """A line's API body, with the placeholders of users created earlier in the apply resolved."""
    payload = json.loads(line["payload"]) if line.get("payload") else {}
    for key, value in list(payload.items()):
        if is_placeholder(value):
            payload[key] = (created_ids or {}).get(value[len(PLACEHOLDER) :])
    return {k: v for k, v in payload.items() if v is not None}
