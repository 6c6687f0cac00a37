"""The shapes of the Absorb answers this integration relies on: one definition (pydantic v2).

The provider validates every list page it reads against these models, so a portal whose API
renamed or dropped a field the DAGs depend on fails loudly (:class:`AbsorbSchemaError`, naming
the field) instead of being read as "every user has no externalId". ``absorb-portal check``
validates one page of each list against the same models and lists the unknown and missing fields.

Fields without a default are *relied on*: the key must be there (the value may be null when the
type allows it). Fields with a default are documented by Absorb but not needed; rows may lack them.
Unknown fields are allowed (Absorb adds fields over time) and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from absorb_provider.exceptions import AbsorbApiError

MAX_PROBLEMS_SHOWN = 5


class AbsorbSchemaError(AbsorbApiError):
    """Absorb answered rows that lack (or mistype) a field the integration relies on."""

    def __init__(self, path: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(self.problems[:MAX_PROBLEMS_SHOWN])
        more = (
            f" (and {len(self.problems) - MAX_PROBLEMS_SHOWN} more)"
            if len(problems) > MAX_PROBLEMS_SHOWN
            else ""
        )
        super().__init__(
            200,
            f"{path} answered rows this integration cannot use: {shown}{more}. The portal's API shape "
            "differs from what the provider relies on; run `absorb-portal check` for the full list",
            method="GET",
            path=path,
        )


class AbsorbRow(BaseModel):
    """Base of the row models: unknown fields allowed (and ignored), rows are read-only."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class User(AbsorbRow):
    """A row of ``GET /users``: the sync matches ``externalId`` (the HR employee id) to users."""

    id: str
    username: str | None
    externalId: str | None
    emailAddress: str | None
    firstName: str | None
    lastName: str | None
    departmentId: str | None
    activeStatus: int | None
    employeeNumber: Any = None
    jobTitle: Any = None
    location: Any = None
    dateHired: Any = None
    dateTerminated: Any = None
    supervisorId: Any = None
    dateAdded: Any = None
    dateEdited: Any = None


class Course(AbsorbRow):
    """A row of ``GET /courses``: rules name courses by id or by name."""

    id: str
    name: str | None
    courseType: Any = None
    activeStatus: Any = None
    description: Any = None
    externalId: Any = None
    dateAdded: Any = None
    dateEdited: Any = None


class Department(AbsorbRow):
    """A row of ``GET /departments``."""

    id: str
    name: str | None


class _EnrollmentRow(AbsorbRow):
    """Every field Absorb documents on a course enrollment (none relied on by itself)."""

    status: Any = None
    isActive: Any = None
    dateAdded: Any = None
    dateDue: Any = None
    dateCompleted: Any = None
    courseName: Any = None
    fullName: Any = None
    jobTitle: Any = None
    progress: Any = None
    score: Any = None
    dateStarted: Any = None
    dateExpires: Any = None
    dateEdited: Any = None
    timeSpent: Any = None
    timeSpentTicks: Any = None
    credits: Any = None
    courseVersionId: Any = None
    enrollmentKeyId: Any = None
    certificateId: Any = None
    acceptedTermsAndConditions: Any = None
    courseCollectionId: Any = None
    accessDate: Any = None
    avatar: Any = None


class CourseEnrollment(_EnrollmentRow):
    """A row of ``GET /courses/{id}/enrollments`` and ``GET /users/{id}/enrollments``: what the
    plan compares (user, course, status, active, dates) plus the export's columns."""

    id: str
    courseId: str
    userId: str
    status: int | None
    isActive: bool | None
    dateAdded: str | None
    dateDue: str | None
    dateCompleted: str | None


class StudentCourse(_EnrollmentRow):
    """A row of ``GET /bulk/studentcourses``: the bulk writes read current enrollments with it."""

    id: str
    userId: str
    courseId: str
    isActive: bool | None
    dateDue: str | None


@dataclass(frozen=True)
class ListShape:
    """One list the DAGs read: its path, the envelope key (None: a bare array) and its row model."""

    name: str
    path: str
    key: str | None
    row: type[AbsorbRow]


LISTS: tuple[ListShape, ...] = (
    ListShape("users", "/users", "users", User),
    ListShape("courses", "/courses", "courses", Course),
    ListShape("departments", "/departments", "departments", Department),
    ListShape("course enrollments", "/courses/{courseId}/enrollments", "enrollments", CourseEnrollment),
    ListShape("user enrollments", "/users/{userId}/enrollments", "enrollments", CourseEnrollment),
    ListShape("bulk student courses", "/bulk/studentcourses", None, StudentCourse),
)


@cache
def _rows_adapter(model: type[AbsorbRow]) -> TypeAdapter:
    return TypeAdapter(list[model])


def relied_on(model: type[AbsorbRow]) -> list[str]:
    """Fields every row must carry (the key; the value may be null when the type allows it)."""
    return [name for name, info in model.model_fields.items() if info.is_required()]


def never_null(model: type[AbsorbRow]) -> list[str]:
    """Relied-on fields whose value may not be null (ids): what a columnar read can check."""
    return [
        name
        for name, info in model.model_fields.items()
        if info.is_required() and not _admits_none(info.annotation)
    ]


def _admits_none(annotation: Any) -> bool:
    return annotation is Any or type(None) in getattr(annotation, "__args__", ())


def row_problems(model: type[AbsorbRow], rows: Sequence[Any], limit: int = 50) -> list[str]:
    """What makes ``rows`` unusable, one line per problem (``row 3: field 'externalId' is missing``)."""
    try:
        _rows_adapter(model).validate_python(rows)
    except ValidationError as error:
        return [_describe(item) for item in error.errors()[:limit]]
    return []


def validate_rows(model: type[AbsorbRow], rows: Sequence[Any], path: str) -> None:
    """Raises AbsorbSchemaError when ``rows`` (one page read from ``path``) do not fit ``model``."""
    problems = row_problems(model, rows)
    if problems:
        raise AbsorbSchemaError(path, problems)


def field_report(model: type[AbsorbRow], rows: Iterable[Any]) -> dict[str, list[str]]:
    """Which fields the rows carry beyond the model (``unknown``), and which model fields none or
    only some of them carry (``missing_relied_on``, ``missing_optional``)."""
    rows = [row for row in rows if isinstance(row, dict)]
    seen: set[str] = set()
    in_every: set[str] | None = None
    for row in rows:
        keys = set(row)
        seen |= keys
        in_every = keys if in_every is None else in_every & keys
    in_every = in_every or set()
    known = set(model.model_fields)
    required = set(relied_on(model))
    return {
        "unknown": sorted(seen - known),
        "missing_relied_on": sorted(required - in_every) if rows else [],
        "missing_optional": sorted(known - required - in_every) if rows else [],
    }


def _describe(item: dict) -> str:
    where = list(item.get("loc") or ())
    row = where.pop(0) if where and isinstance(where[0], int) else None
    field = ".".join(str(part) for part in where) or "(row)"
    prefix = f"row {row}: " if row is not None else ""
    if item.get("type") == "missing":
        return f"{prefix}field '{field}' is missing"
    return f"{prefix}field '{field}': {item.get('msg')} (got {type(item.get('input')).__name__})"
