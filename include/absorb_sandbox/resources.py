"""The API's resources as SQL: selected columns, filterable fields and row → JSON shapes.

Field names, types and shapes follow the seed document (v2). Each resource lists the fields
``_filter`` / ``_sort`` may reference; everything runs in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from absorb_sandbox.odata import Field
from absorb_sandbox.timeutil import ticks_to_timespan

FULL_NAME_SQL = "TRIM(COALESCE(u.first_name, '') || ' ' || COALESCE(u.last_name, ''))"


@dataclass(frozen=True)
class Resource:
    """A listable resource: envelope key, FROM clause, columns, fields and serialiser."""

    key: str
    columns: str
    from_sql: str
    fields: dict[str, Field]
    default_order: str
    serialize: Callable[[tuple], dict]
    status_sql: str | None = None
    edited_sql: str | None = None
    json_sql: str | None = None  # json_object(...) over c0..cN (the columns aliased), built by SQLite
    # The main table alone (``from_sql`` minus its LEFT JOINs on unique keys, which never add or
    # drop a row) and the aliases those joins bring: counts skip the joins when the WHERE clause
    # does not reference them.
    base_from: str | None = None
    joined: tuple[str, ...] = ()

    def select(self) -> str:
        return f"SELECT {self.columns} FROM {self.from_sql}"

    @property
    def keyset_column(self) -> str | None:
        """The unique, ascending key of the default order (``x.rowid``), for keyset paging."""
        return self.default_order if self.default_order.endswith(".rowid") else None

    def count_from(self, where: str) -> str:
        """The FROM clause a COUNT(*) with ``where`` needs (the joins only when referenced)."""
        if self.base_from and not (self.joined and re.search(rf"\b(?:{'|'.join(self.joined)})\.", where)):
            return self.base_from
        return self.from_sql


def _bool(value) -> bool | None:
    return None if value is None else bool(value)


# --- users -----------------------------------------------------------------------------------------

USER_COLUMNS = (
    "u.id, u.username, u.department_id, u.first_name, u.last_name, u.email, u.external_id, "
    "u.employee_number, u.job_title, u.location, u.date_hired, u.date_terminated, u.supervisor_id, "
    "u.active_status, u.date_added, u.date_edited"
)


def serialize_user(r: tuple) -> dict:
    return {
        "id": r[0],
        "username": r[1],
        "departmentId": r[2],
        "firstName": r[3],
        "lastName": r[4],
        "emailAddress": r[5],
        "externalId": r[6],
        "employeeNumber": r[7],
        "jobTitle": r[8],
        "location": r[9],
        "dateHired": r[10],
        "dateTerminated": r[11],
        "supervisorId": r[12],
        "activeStatus": r[13],
        "dateAdded": r[14],
        "dateEdited": r[15],
    }


USERS = Resource(
    key="users",
    columns=USER_COLUMNS,
    from_sql="users u",
    default_order="u.rowid",
    serialize=serialize_user,
    edited_sql="u.date_edited",
    fields={
        "id": Field("u.id", "guid"),
        "username": Field("u.username", "string"),
        "departmentId": Field("u.department_id", "guid"),
        "firstName": Field("u.first_name", "string"),
        "lastName": Field("u.last_name", "string"),
        "emailAddress": Field("u.email", "string"),
        "externalId": Field("u.external_id", "string"),
        "employeeNumber": Field("u.employee_number", "string"),
        "jobTitle": Field("u.job_title", "string"),
        "location": Field("u.location", "string"),
        "dateHired": Field("u.date_hired", "datetime"),
        "dateTerminated": Field("u.date_terminated", "datetime"),
        "supervisorId": Field("u.supervisor_id", "guid"),
        "activeStatus": Field("u.active_status", "int"),
        "dateAdded": Field("u.date_added", "datetime"),
        "dateEdited": Field("u.date_edited", "datetime"),
    },
)

# --- courses and departments -------------------------------------------------------------------------


def serialize_course(r: tuple) -> dict:
    return {
        "id": r[0],
        "name": r[1],
        "courseType": r[2],
        "activeStatus": r[3],
        "description": r[4],
        "externalId": r[5],
        "dateAdded": r[6],
        "dateEdited": r[7],
    }


COURSES = Resource(
    key="courses",
    columns="c.id, c.name, c.course_type, c.active_status, c.description, c.external_id, c.date_added, c.date_edited",
    from_sql="courses c",
    default_order="c.rowid",
    serialize=serialize_course,
    edited_sql="c.date_edited",
    fields={
        "id": Field("c.id", "guid"),
        "name": Field("c.name", "string"),
        "courseType": Field("c.course_type", "string"),
        "activeStatus": Field("c.active_status", "int"),
        "description": Field("c.description", "string"),
        "externalId": Field("c.external_id", "string"),
        "dateAdded": Field("c.date_added", "datetime"),
        "dateEdited": Field("c.date_edited", "datetime"),
    },
)

DEPARTMENTS = Resource(
    key="departments",
    columns="d.id, d.name, d.external_id",
    from_sql="departments d",
    default_order="d.rowid",
    serialize=lambda r: {"id": r[0], "name": r[1], "externalId": r[2]},
    fields={
        "id": Field("d.id", "guid"),
        "name": Field("d.name", "string"),
        "externalId": Field("d.external_id", "string"),
    },
)

# --- course enrollments --------------------------------------------------------------------------------

ENROLLMENT_EXPRESSIONS = (
    "e.id",
    "e.course_id",
    "c.name",
    "e.progress",
    "e.score",
    "e.status",
    "e.date_completed",
    "e.date_expires",
    "e.date_edited",
    "e.date_added",
    FULL_NAME_SQL,
    "e.course_version_id",
    "e.user_id",
    "e.accepted_terms",
    "e.time_spent_ticks",
    "e.date_started",
    "e.enrollment_key_id",
    "e.certificate_id",
    "e.credits",
    "e.is_active",
    "e.date_due",
    "e.access_date",
    "u.job_title",
    "e.course_collection_id",
)
ENROLLMENT_COLUMNS = ", ".join(f"{expr} AS c{i}" for i, expr in enumerate(ENROLLMENT_EXPRESSIONS))


def timespan_sql(ticks: str) -> str:
    """SQL twin of ``ticks_to_timespan``: ticks → ``[d.]hh:mm:ss[.fffffff]``."""
    return (
        f"CASE WHEN {ticks} IS NULL THEN NULL ELSE "
        f"(CASE WHEN {ticks} >= 864000000000 THEN ({ticks} / 864000000000) || '.' ELSE '' END) || "
        f"printf('%02d:%02d:%02d', ({ticks} / 36000000000) % 24, ({ticks} / 600000000) % 60, "
        f"({ticks} / 10000000) % 60) || "
        f"(CASE WHEN {ticks} % 10000000 > 0 THEN printf('.%07d', {ticks} % 10000000) ELSE '' END) END"
    )


def _json_bool(column: str) -> str:
    return f"json(CASE WHEN {column} THEN 'true' ELSE 'false' END)"


ENROLLMENT_JSON = (
    "json_object('id', c0, 'courseId', c1, 'courseName', c2, 'progress', c3, 'score', c4, 'status', c5, "
    "'dateCompleted', c6, 'dateExpires', c7, 'dateEdited', c8, 'dateAdded', c9, 'fullName', c10, "
    f"'courseVersionId', c11, 'userId', c12, 'acceptedTermsAndConditions', {_json_bool('c13')}, "
    f"'timeSpentTicks', c14, 'timeSpent', {timespan_sql('c14')}, 'dateStarted', c15, 'enrollmentKeyId', c16, "
    f"'certificateId', c17, 'credits', c18, 'isActive', {_json_bool('c19')}, 'dateDue', c20, 'accessDate', c21, "
    "'jobTitle', c22, 'courseCollectionId', c23, 'avatar', NULL)"
)


def serialize_enrollment(r: tuple) -> dict:
    return {
        "id": r[0],
        "courseId": r[1],
        "courseName": r[2],
        "progress": r[3],
        "score": r[4],
        "status": r[5],
        "dateCompleted": r[6],
        "dateExpires": r[7],
        "dateEdited": r[8],
        "dateAdded": r[9],
        "fullName": r[10],
        "courseVersionId": r[11],
        "userId": r[12],
        "acceptedTermsAndConditions": bool(r[13]),
        "timeSpentTicks": r[14],
        "timeSpent": ticks_to_timespan(r[14]),
        "dateStarted": r[15],
        "enrollmentKeyId": r[16],
        "certificateId": r[17],
        "credits": r[18],
        "isActive": bool(r[19]),
        "dateDue": r[20],
        "accessDate": r[21],
        "jobTitle": r[22],
        "courseCollectionId": r[23],
        "avatar": None,
    }


ENROLLMENTS = Resource(
    key="enrollments",
    columns=ENROLLMENT_COLUMNS,
    from_sql="enrollments e LEFT JOIN users u ON u.id = e.user_id LEFT JOIN courses c ON c.id = e.course_id",
    base_from="enrollments e",
    joined=("u", "c"),
    default_order="e.rowid",
    serialize=serialize_enrollment,
    status_sql="e.status",
    edited_sql="e.date_edited",
    json_sql=ENROLLMENT_JSON,
    fields={
        "id": Field("e.id", "guid"),
        "courseId": Field("e.course_id", "guid"),
        "courseName": Field("c.name", "string"),
        "progress": Field("e.progress", "number"),
        "score": Field("e.score", "number"),
        "status": Field("e.status", "int"),
        "dateCompleted": Field("e.date_completed", "datetime"),
        "dateExpires": Field("e.date_expires", "datetime"),
        "dateEdited": Field("e.date_edited", "datetime"),
        "dateAdded": Field("e.date_added", "datetime"),
        "fullName": Field(FULL_NAME_SQL, "string"),
        "courseVersionId": Field("e.course_version_id", "guid"),
        "userId": Field("e.user_id", "guid"),
        "acceptedTermsAndConditions": Field("e.accepted_terms", "bool"),
        "timeSpentTicks": Field("e.time_spent_ticks", "int"),
        "dateStarted": Field("e.date_started", "datetime"),
        "enrollmentKeyId": Field("e.enrollment_key_id", "guid"),
        "certificateId": Field("e.certificate_id", "guid"),
        "credits": Field("e.credits", "number"),
        "isActive": Field("e.is_active", "bool"),
        "dateDue": Field("e.date_due", "datetime"),
        "accessDate": Field("e.access_date", "datetime"),
        "jobTitle": Field("u.job_title", "string"),
        "courseCollectionId": Field("e.course_collection_id", "guid"),
    },
)

# --- activity enrollments ------------------------------------------------------------------------------

_ACTIVITY_FIELDS = {
    "status": "int",
    "progress": "number",
    "score": "number",
    "dateEnrolled": "datetime",
    "dateStarted": "datetime",
    "dateCompleted": "datetime",
    "dateEdited": "datetime",
    "userId": "guid",
    "fullName": "string",
    "name": "string",
    "id": "guid",
}


def _activity_fields(alias: str, name_sql: str, extra: dict[str, Field]) -> dict[str, Field]:
    columns = {
        "status": "status",
        "progress": "progress",
        "score": "score",
        "dateEnrolled": "date_enrolled",
        "dateStarted": "date_started",
        "dateCompleted": "date_completed",
        "dateEdited": "date_edited",
        "userId": "user_id",
        "id": "id",
    }
    fields = {api: Field(f"{alias}.{col}", _ACTIVITY_FIELDS[api]) for api, col in columns.items()}
    fields["fullName"] = Field(FULL_NAME_SQL, "string")
    fields["name"] = Field(name_sql, "string")
    fields.update(extra)
    return fields


def serialize_session_enrollment(r: tuple) -> dict:
    return {
        "id": r[0],
        "sessionId": r[1],
        "courseEnrollmentId": r[2],
        "name": r[3],
        "userId": r[4],
        "fullName": r[5],
        "status": r[6],
        "progress": r[7],
        "score": r[8],
        "timeSpent": ticks_to_timespan(r[9]),
        "dateEnrolled": r[10],
        "dateStarted": r[11],
        "dateCompleted": r[12],
        "dateEdited": r[13],
    }


SESSION_ENROLLMENTS = Resource(
    key="enrollments",
    columns=(
        f"se.id, se.session_id, se.enrollment_id, s.name, se.user_id, {FULL_NAME_SQL}, se.status, "
        "se.progress, se.score, se.time_spent_ticks, se.date_enrolled, se.date_started, "
        "se.date_completed, se.date_edited"
    ),
    from_sql=(
        "session_enrollments se LEFT JOIN sessions s ON s.id = se.session_id "
        "LEFT JOIN users u ON u.id = se.user_id"
    ),
    base_from="session_enrollments se",
    joined=("s", "u"),
    default_order="se.rowid",
    serialize=serialize_session_enrollment,
    status_sql="se.status",
    edited_sql="se.date_edited",
    fields=_activity_fields(
        "se",
        "s.name",
        {
            "sessionId": Field("se.session_id", "guid"),
            "courseEnrollmentId": Field("se.enrollment_id", "guid"),
        },
    ),
)


def serialize_chapter_enrollment(r: tuple) -> dict:
    return {
        "id": r[0],
        "courseEnrollmentId": r[1],
        "chapterId": r[2],
        "sessionId": None,
        "lessonId": None,
        "name": r[3],
        "userId": r[4],
        "fullName": r[5],
        "status": r[6],
        "progress": r[7],
        "score": r[8],
        "timeSpent": ticks_to_timespan(r[9]),
        "dateEnrolled": r[10],
        "dateStarted": r[11],
        "dateCompleted": r[12],
        "lessonEnrollmentIds": r[13].split(",") if r[13] else [],
    }


CHAPTER_ENROLLMENTS = Resource(
    key="chapterEnrollments",
    columns=(
        f"ce.id, ce.enrollment_id, ce.chapter_id, ch.name, ce.user_id, {FULL_NAME_SQL}, ce.status, "
        "ce.progress, ce.score, ce.time_spent_ticks, ce.date_enrolled, ce.date_started, ce.date_completed, "
        "(SELECT GROUP_CONCAT(le.id) FROM lesson_enrollments le WHERE le.chapter_enrollment_id = ce.id)"
    ),
    from_sql=(
        "chapter_enrollments ce LEFT JOIN chapters ch ON ch.id = ce.chapter_id "
        "LEFT JOIN users u ON u.id = ce.user_id"
    ),
    default_order="ch.position",
    serialize=serialize_chapter_enrollment,
    status_sql="ce.status",
    edited_sql="ce.date_edited",
    fields=_activity_fields("ce", "ch.name", {"chapterId": Field("ce.chapter_id", "guid")}),
)


def serialize_lesson_enrollment(r: tuple) -> dict:
    return {
        "id": r[0],
        "chapterEnrollmentId": r[1],
        "type": r[2],
        "attempts": r[3],
        "failures": r[4],
        "lastAttempt": r[5],
        "courseEnrollmentId": r[6],
        "chapterId": r[7],
        "lessonId": r[8],
        "name": r[9],
        "userId": r[10],
        "fullName": r[11],
        "status": r[12],
        "progress": r[13],
        "score": r[14],
        "timeSpent": ticks_to_timespan(r[15]),
        "dateEnrolled": r[16],
        "dateStarted": r[17],
        "dateCompleted": r[18],
        "dateEdited": r[19],
        "dateAdded": r[20],
    }


LESSON_ENROLLMENTS = Resource(
    key="lessonEnrollments",
    columns=(
        f"le.id, le.chapter_enrollment_id, le.lesson_type, le.attempts, le.failures, le.last_attempt, "
        f"le.enrollment_id, le.chapter_id, le.lesson_id, l.name, le.user_id, {FULL_NAME_SQL}, le.status, "
        "le.progress, le.score, le.time_spent_ticks, le.date_enrolled, le.date_started, le.date_completed, "
        "le.date_edited, le.date_added"
    ),
    from_sql=(
        "lesson_enrollments le LEFT JOIN lessons l ON l.id = le.lesson_id "
        "LEFT JOIN users u ON u.id = le.user_id"
    ),
    base_from="lesson_enrollments le",
    joined=("l", "u"),
    default_order="le.rowid",
    serialize=serialize_lesson_enrollment,
    status_sql="le.status",
    edited_sql="le.date_edited",
    fields=_activity_fields(
        "le",
        "l.name",
        {
            "chapterId": Field("le.chapter_id", "guid"),
            "lessonId": Field("le.lesson_id", "guid"),
            "courseEnrollmentId": Field("le.enrollment_id", "guid"),
            "chapterEnrollmentId": Field("le.chapter_enrollment_id", "guid"),
            "type": Field("le.lesson_type", "string"),
            "attempts": Field("le.attempts", "int"),
            "failures": Field("le.failures", "int"),
            "lastAttempt": Field("le.last_attempt", "datetime"),
            "dateAdded": Field("le.date_added", "datetime"),
        },
    ),
)


def serialize_attempt(r: tuple) -> dict:
    return {
        "id": r[0],
        "timeSpentTicks": r[1],
        "status": r[2],
        "score": r[3],
        "startDate": r[4],
        "completionDate": r[5],
    }


ATTEMPT_COLUMNS = "a.id, a.time_spent_ticks, a.status, a.score, a.start_date, a.completion_date"
