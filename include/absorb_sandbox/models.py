"""Pydantic models that document the API shapes in ``/openapi.json`` (v2 field names and types).

Handlers answer pre-serialised JSON, so these models describe rather than validate responses;
the schemathesis test checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

GuidStr = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
DateTimeStr = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Status = Annotated[
    int,
    Field(
        ge=0,
        le=12,
        description="0 NotStarted, 1 InProgress, 2 PendingApproval, "
        "3 Complete, 4 NotComplete, 5 Failed, 6 Declined, "
        "7 PendingEvaluationRequired, 8 OnWaitlist, 9 Absent, "
        "10 NotApplicable, 11 PendingProctor, 12 ReadyForReview",
    ),
]
AttemptStatus = Annotated[
    int,
    Field(
        ge=1, le=5, json_schema_extra={"enum": [1, 3, 5]}, description="1 InProgress, 3 Complete, 5 Failed"
    ),
]
TimeSpan = Annotated[
    str,
    Field(
        pattern=r"^(\d+\.)?\d{2}:\d{2}:\d{2}(\.\d{7})?$", description=".NET TimeSpan [d.]hh:mm:ss[.fffffff]"
    ),
]


class ErrorBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    validations: list[str]
    code: int
    message: str
    term: str
    meta: dict[str, str] = Field(alias="_meta")


class User(BaseModel):
    id: GuidStr
    username: str
    departmentId: GuidStr | None
    firstName: str | None
    lastName: str | None
    emailAddress: str | None
    externalId: str | None
    employeeNumber: str | None
    jobTitle: str | None
    location: str | None
    dateHired: datetime | None
    dateTerminated: datetime | None
    supervisorId: GuidStr | None
    activeStatus: int = Field(ge=0, le=1, description="0 active, 1 inactive")
    dateAdded: datetime | None
    dateEdited: datetime | None


class UserInput(BaseModel):
    """Fields of ``POST /users`` / ``PUT /users/{id}``; upsert matches externalId, then username.
    A PUT changes the fields present; ``password`` is accepted, never stored or returned."""

    username: str | None = None
    password: str | None = Field(None, min_length=1, max_length=255)
    departmentId: GuidStr | None = None
    firstName: str | None = None
    lastName: str | None = None
    emailAddress: str | None = None
    externalId: str | None = None
    employeeNumber: str | None = None
    jobTitle: str | None = None
    location: str | None = None
    dateHired: DateTimeStr | None = None
    dateTerminated: DateTimeStr | None = None
    supervisorId: GuidStr | None = None
    activeStatus: int | None = Field(None, ge=0, le=1)


class UserUploadResult(BaseModel):
    index: int
    id: GuidStr | None
    status: int
    error: str | None


class Course(BaseModel):
    id: GuidStr
    name: str
    courseType: str = Field(json_schema_extra={"enum": ["OnlineCourse", "InstructorLedCourse"]})
    activeStatus: int
    description: str | None
    externalId: str | None
    dateAdded: datetime | None
    dateEdited: datetime | None


class Department(BaseModel):
    id: GuidStr
    name: str
    externalId: str | None


class Enrollment(BaseModel):
    """UserCourseEnrollmentResource (v2)."""

    id: GuidStr
    courseId: GuidStr
    courseName: str | None
    progress: float | None
    score: float | None
    status: Status
    dateCompleted: datetime | None
    dateExpires: datetime | None
    dateEdited: datetime | None
    dateAdded: datetime | None
    fullName: str | None
    courseVersionId: GuidStr | None
    userId: GuidStr
    acceptedTermsAndConditions: bool
    timeSpentTicks: int | None
    timeSpent: TimeSpan | None
    dateStarted: datetime | None
    enrollmentKeyId: GuidStr | None
    certificateId: GuidStr | None
    credits: float | None
    isActive: bool
    dateDue: datetime | None
    accessDate: datetime | None
    jobTitle: str | None
    courseCollectionId: GuidStr | None
    avatar: str | None


class EnrollmentInput(BaseModel):
    """Create-or-update body. Settable: status, dateCompleted, dateExpires, courseVersionId,
    acceptedTermsAndConditions, enrollmentKeyId, credits, score, and dateDue (sandbox deviation)."""

    id: GuidStr | None = None
    courseId: GuidStr
    status: Status | None = None
    score: float | None = None
    dateCompleted: DateTimeStr | None = None
    dateExpires: DateTimeStr | None = None
    dateDue: DateTimeStr | None = None
    courseVersionId: GuidStr | None = None
    acceptedTermsAndConditions: bool | None = None
    enrollmentKeyId: GuidStr | None = None
    credits: float | None = None


class EnrollmentCreated(BaseModel):
    enrollmentId: GuidStr
    courseId: GuidStr
    userId: GuidStr


class IlcEnrollmentCreated(BaseModel):
    userId: GuidStr
    courseId: GuidStr
    sessionId: GuidStr
    enrollmentId: GuidStr
    sessionEnrollmentId: GuidStr


class SessionEnrollment(BaseModel):
    id: GuidStr
    sessionId: GuidStr
    courseEnrollmentId: GuidStr
    name: str | None
    userId: GuidStr
    fullName: str | None
    status: Status
    progress: float | None
    score: float | None
    timeSpent: TimeSpan | None
    dateEnrolled: datetime | None
    dateStarted: datetime | None
    dateCompleted: datetime | None
    dateEdited: datetime | None


class ChapterEnrollment(BaseModel):
    id: GuidStr
    courseEnrollmentId: GuidStr
    chapterId: GuidStr
    sessionId: GuidStr | None
    lessonId: GuidStr | None
    name: str | None
    userId: GuidStr
    fullName: str | None
    status: Status
    progress: float | None
    score: float | None
    timeSpent: TimeSpan | None
    dateEnrolled: datetime | None
    dateStarted: datetime | None
    dateCompleted: datetime | None
    lessonEnrollmentIds: list[GuidStr]


class LessonEnrollment(BaseModel):
    id: GuidStr
    chapterEnrollmentId: GuidStr
    type: str
    attempts: int
    failures: int
    lastAttempt: datetime | None
    courseEnrollmentId: GuidStr
    chapterId: GuidStr
    lessonId: GuidStr
    name: str | None
    userId: GuidStr
    fullName: str | None
    status: Status
    progress: float | None
    score: float | None
    timeSpent: TimeSpan | None
    dateEnrolled: datetime | None
    dateStarted: datetime | None
    dateCompleted: datetime | None
    dateEdited: datetime | None
    dateAdded: datetime | None


class Attempt(BaseModel):
    id: GuidStr
    timeSpentTicks: int
    status: AttemptStatus
    score: float | None
    startDate: datetime | None
    completionDate: datetime | None


class AttemptStarted(BaseModel):
    attemptId: GuidStr
    courseId: GuidStr
    userId: GuidStr


class FinishAttempt(BaseModel):
    status: AttemptStatus
    score: float | None = Field(None, ge=0, le=100)
    startDate: DateTimeStr | None = None
    completionDate: DateTimeStr | None = None


class AttemptFinished(BaseModel):
    attemptId: GuidStr


class AuthenticateRequest(BaseModel):
    username: str
    password: str
    privateKey: GuidStr


@cache
def page_model(key: str, item: type[BaseModel]) -> type[BaseModel]:
    """The paged envelope ``{totalItems, returnedItems, limit, offset, <key>: [item]}``."""
    return create_model(
        f"{item.__name__}Page",
        totalItems=(int, ...),
        returnedItems=(int, ...),
        limit=(int, ...),
        offset=(int, ...),
        **{key: (list[item], ...)},
    )


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed or missing body",
        401: "Missing/invalid x-api-key or token",
        404: "Unknown id",
        422: "Validation failed",
        413: "Body too large",
    }
    return {code: {"model": ErrorBody, "description": descriptions.get(code, "Error")} for code in codes}


def _schema(annotation: Any) -> dict:
    schema = TypeAdapter(annotation).json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def body_doc(annotation: Any, required: bool = True) -> dict:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": _schema(annotation)}},
        }
    }


def _param(name: str, schema: dict, description: str, deprecated: bool = False) -> dict:
    param = {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    if deprecated:
        param["deprecated"] = True
    return param


def status_doc() -> dict:
    return {
        "parameters": [
            _param(
                "status",
                {"type": "integer", "minimum": 0, "maximum": 12},
                "The enrollment status to filter by.",
            ),
            _param(
                "modifiedSince",
                {"type": "string", "format": "date-time"},
                "Only rows edited at or after this date.",
            ),
        ]
    }


LIMIT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 1000}
OFFSET_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 65535}
GUID_LIST_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "format": "uuid"},
    "minItems": 1,
    "maxItems": 1000,
}


def bulk_student_courses_doc() -> dict:
    """``/bulk/studentcourses``: 1-1000 user ids (required) and up to 1000 course ids; repeated
    keys or comma-separated lists."""
    return {
        "parameters": [
            {
                "name": "userIds",
                "in": "query",
                "required": True,
                "schema": GUID_LIST_SCHEMA,
                "style": "form",
                "explode": True,
                "description": "User ids (1-1000): repeated keys or a comma-separated list.",
            },
            {
                "name": "courseIds",
                "in": "query",
                "required": False,
                "schema": GUID_LIST_SCHEMA,
                "style": "form",
                "explode": True,
                "description": "Course ids (up to 1000) to narrow the result.",
            },
        ]
    }


def paging_doc(deprecated: bool = False, status: bool = True) -> dict:
    params = [
        _param(
            "_filter",
            {"type": "string"},
            "OData subset: eq ne gt ge lt le and or not (); substringof, "
            "startswith, endswith, tolower, toupper; literals 'text', guid'…', datetime'…', numbers, "
            "true/false, null.",
        ),
        _param("_sort", {"type": "string"}, "Comma-separated fields; prefix '-' for descending."),
        _param("_limit", LIMIT_SCHEMA, "Page size, 1-1000 (default 20); outside: 422."),
        _param("_offset", OFFSET_SCHEMA, "Page index (0 = first page), 0-65535; outside: 422."),
    ]
    if status:
        params += status_doc()["parameters"]
    if deprecated:
        params += [
            _param("limit", LIMIT_SCHEMA, "(Deprecated) Page size, 1-1000.", True),
            _param("offset", OFFSET_SCHEMA, "(Deprecated) Page index, 0-65535.", True),
        ]
    return {"parameters": params}


def departments_doc() -> dict:
    """``GET /departments``: the paging parameters plus v2's ``externalId`` / ``departmentName``."""
    doc = paging_doc(status=False)
    doc["parameters"] += [
        _param("externalId", {"type": "string"}, "Only the department with this external id."),
        _param("departmentName", {"type": "string"}, "Only departments with this name."),
    ]
    return doc
