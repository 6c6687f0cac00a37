"""Users beyond the seed document: upsert by externalId/username, update, bulk upload.

Only fields that actually change are written, so repeating a call leaves ``dateEdited`` alone.
``PUT /users/{id}`` changes the fields present in its body (a merged full body works the same);
``activeStatus`` 1 deactivates and keeps every enrollment, 0 reactivates the same user (and
clears ``dateTerminated`` unless the body sets it). A ``password`` is accepted (a string) and never
stored or echoed. See docs/sandbox-users.md.
"""

from __future__ import annotations

import sqlite3
import uuid

from absorb_sandbox import resources as res
from absorb_sandbox import seed as seeding
from absorb_sandbox.errors import ApiError, not_found
from absorb_sandbox.service import GUID_RE, check_guid
from absorb_sandbox.timeutil import normalise_datetime, now_iso

MAX_UPLOAD = 200
# API field -> (column, kind)
USER_FIELDS = {
    "username": ("username", "string"),
    "departmentId": ("department_id", "guid"),
    "firstName": ("first_name", "string"),
    "lastName": ("last_name", "string"),
    "emailAddress": ("email", "string"),
    "externalId": ("external_id", "string"),
    "employeeNumber": ("employee_number", "string"),
    "jobTitle": ("job_title", "string"),
    "location": ("location", "string"),
    "dateHired": ("date_hired", "datetime"),
    "dateTerminated": ("date_terminated", "datetime"),
    "supervisorId": ("supervisor_id", "guid"),
    "activeStatus": ("active_status", "status"),
}
REQUIRED_ON_CREATE = ("username", "firstName", "lastName")
MAX_TEXT = 255
REFERENCES = {  # column -> (field, table it refers to, what)
    "department_id": ("departmentId", "departments", "department"),
    "supervisor_id": ("supervisorId", "users", "user"),
}


class UserService:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def ensure_api_user(self, username: str) -> str:
        return seeding.ensure_api_user(self.conn, username)

    def get(self, user_id: str) -> dict:
        row = self.conn.execute(
            f"SELECT {res.USER_COLUMNS} FROM users u WHERE u.id = ?", (user_id,)
        ).fetchone()
        if row is None:
            raise not_found("User", user_id)
        return res.serialize_user(row)

    def validate(self, body: dict) -> dict:
        """Column → value for the known fields present in ``body``; a bad value is a 422 whose
        ``_meta.field`` names the first bad field."""
        values, problems = {}, []  # problems: (field, message)
        for key, (column, kind) in USER_FIELDS.items():
            if key not in body:
                continue
            value = body[key]
            if value is None:
                if key in REQUIRED_ON_CREATE or key == "activeStatus":
                    problems.append((key, f"{key} cannot be null."))
                else:
                    values[column] = None
                continue
            problem = self._check(key, kind, value)
            if problem:
                problems.append((key, problem))
                continue
            values[column] = (
                normalise_datetime(value)
                if kind == "datetime"
                else value.lower()
                if kind == "guid"
                else value
            )
        password = body.get("password")
        if password is not None and (not isinstance(password, str) or not 1 <= len(password) <= MAX_TEXT):
            problems.append(("password", f"password must be a string of 1 to {MAX_TEXT} characters."))
        if not problems:
            problems = self._check_references(values)
        if problems:
            messages = [message for _, message in problems]
            raise ApiError(422, messages[0], validations=messages, meta={"field": problems[0][0]})
        return values

    @staticmethod
    def _check(key: str, kind: str, value) -> str | None:
        if kind == "status":
            return (
                None
                if value in (0, 1) and not isinstance(value, bool)
                else f"{key} must be 0 (active) or 1 (inactive)."
            )
        if not isinstance(value, str):
            return f"{key} must be a string."
        if kind == "guid" and not GUID_RE.match(value):
            return f"Invalid format provided for {key}"
        if kind == "datetime":
            try:
                normalise_datetime(value)
            except ValueError:
                return f"Invalid format provided for {key}"
        if len(value) > MAX_TEXT:
            return f"{key} is longer than {MAX_TEXT} characters."
        if key == "username" and not value.strip():
            return "username cannot be empty."
        return None

    def _check_references(self, values: dict) -> list[tuple[str, str]]:
        """(field, message) for each id that refers to no department / user."""
        problems = []
        for column, (field, table, what) in REFERENCES.items():
            wanted = values.get(column)
            if wanted and not self.conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (wanted,)).fetchone():
                problems.append((field, f"{field} does not refer to an existing {what} ({wanted})."))
        return problems

    def _find(self, values: dict) -> str | None:
        if values.get("external_id"):
            row = self.conn.execute(
                "SELECT id FROM users WHERE external_id = ? ORDER BY rowid LIMIT 1", (values["external_id"],)
            ).fetchone()
            if row:
                return row[0]
        if values.get("username"):
            row = self.conn.execute(
                "SELECT id FROM users WHERE username = ?", (values["username"],)
            ).fetchone()
            if row:
                return row[0]
        return None

    def upsert(self, body: dict) -> tuple[int, dict]:
        """(201, user) when created, (200, user) when an existing user matched by externalId/username."""
        values = self.validate(body)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            existing = self._find(values)
            if existing:
                self._write_changes(existing, values)
                status, user_id = 200, existing
            else:
                user_id, status = self._create(values), 201
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return status, self.get(user_id)

    def update(self, user_id: str, body: dict) -> dict:
        user_id = check_guid(user_id, "userId")
        if not self.conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone():
            raise not_found("User", user_id)
        body_id = body.get("id")
        if body_id is not None and (not isinstance(body_id, str) or body_id.lower() != user_id):
            raise ApiError(422, "id in the body does not match the userId of the path.", meta={"field": "id"})
        values = self.validate(body)
        if values.get("supervisor_id") == user_id:
            raise ApiError(422, "A user cannot be their own supervisor.", meta={"field": "supervisorId"})
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._write_changes(user_id, values)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return self.get(user_id)

    def upload(self, body) -> list[dict]:
        """``POST /users/upload``: up to 200 users, each upserted on its own; one result per line."""
        if not isinstance(body, list):
            raise ApiError(400, "Request body must be a JSON array of users.")
        if not body:
            raise ApiError(400, "Request requires at least 1 user.")
        if len(body) > MAX_UPLOAD:
            raise ApiError(422, f"At most {MAX_UPLOAD} users per upload.")
        results = []
        for index, item in enumerate(body):
            try:
                if not isinstance(item, dict):
                    raise ApiError(422, "Each user must be a JSON object.")
                status, user = self.upsert(item)
                results.append({"index": index, "id": user["id"], "status": status, "error": None})
            except ApiError as exc:
                results.append({"index": index, "id": None, "status": exc.status, "error": exc.message})
        return results

    def _write_changes(self, user_id: str, values: dict) -> None:
        if "username" in values:
            clash = self.conn.execute(
                "SELECT id FROM users WHERE username = ? AND id != ?", (values["username"], user_id)
            ).fetchone()
            if clash:
                raise ApiError(422, "username is already used by another user.", meta={"field": "username"})
        if not values:
            return
        current = self.conn.execute(
            f"SELECT {', '.join(values)} FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        changes = {
            col: value for (col, value), old in zip(values.items(), current, strict=True) if old != value
        }
        if not changes:
            return
        if changes.get("active_status") == 0 and "date_terminated" not in values:
            changes["date_terminated"] = None
        changes["date_edited"] = now_iso()
        assignments = ", ".join(f"{col} = ?" for col in changes)
        self.conn.execute(f"UPDATE users SET {assignments} WHERE id = ?", [*changes.values(), user_id])

    def _create(self, values: dict) -> str:
        missing = [key for key in REQUIRED_ON_CREATE if not values.get(USER_FIELDS[key][0])]
        if missing:
            raise ApiError(
                422,
                f"{missing[0]} is required to create a user.",
                validations=[f"{m} is required to create a user." for m in missing],
            )
        if self.conn.execute("SELECT 1 FROM users WHERE username = ?", (values["username"],)).fetchone():
            raise ApiError(422, "username is already used by another user.", meta={"field": "username"})
        user_id = str(uuid.uuid4())
        now = now_iso()
        row = {
            "id": user_id,
            "active_status": 0,
            **values,
            "date_added": now,
            "date_edited": now,
            "hr_status": "active",
            "preprovisioned": 0,
        }
        self.conn.execute(
            f"INSERT INTO users ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )
        return user_id
