"""AbsorbHook: one method per Absorb Integration API v2 operation, plus bulk writes.

Transport (pooled session, shared token, retries, rate limit, paging) lives in
``absorb_provider.client``; this module maps operations to paths and turns rows into outcomes.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from absorb_provider import schemas
from absorb_provider.bulk import BulkResult, run_bulk
from absorb_provider.client import MAX_PAGE_SIZE, AbsorbClient, _mask
from absorb_provider.exceptions import (
    AbsorbAlreadyEnrolledError,
    AbsorbApiError,
    AbsorbError,
    AbsorbNotFoundError,
    AbsorbRetryExhaustedError,
)
from absorb_provider.settings import AbsorbSettings
from absorb_provider.validation import (
    attempt_status,
    combine_filters,
    edited_since_filter,
    guid,
    guids,
    iso_utc,
    odata_string,
    status_value,
)

DateLike = datetime | date | str
BULK_READ_USERS = 100
USERS_PER_FILTER = 50  # ids OR-ed into one ``_filter`` when bulk_update_users reads users first


class AbsorbHook(BaseHook):
    """Talks to the Absorb LMS Integration API v2 through an ``absorb`` connection.

    :param absorb_conn_id: the Airflow connection (login, password, extra ``private_key``,
        ``region`` or a custom base URL in ``host``, ``timeout``, ``requests_per_second``,
        ``max_concurrency``).
    """

    conn_name_attr = "absorb_conn_id"
    default_conn_name = "absorb_default"
    conn_type = "absorb"
    hook_name = "Absorb LMS"

    def __init__(self, absorb_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.absorb_conn_id = absorb_conn_id
        self._client_lock = threading.Lock()

    # --- plumbing -------------------------------------------------------------------------------

    @cached_property
    def settings(self) -> AbsorbSettings:
        settings = AbsorbSettings.from_connection(self.get_connection(self.absorb_conn_id))
        _mask(settings.password)
        _mask(settings.private_key)
        return settings

    @cached_property
    def client(self) -> AbsorbClient:
        return AbsorbClient(self.settings)

    def get_conn(self) -> AbsorbClient:
        """The pooled client (one ``requests.Session`` per hook)."""
        return self.client

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def test_connection(self) -> tuple[bool, str]:
        """Authenticates and reads one page of courses."""
        try:
            self.authenticate()
            page = self.client.get("courses", {"_limit": 1, "_offset": 0})
            total = page.get("totalItems") if isinstance(page, dict) else len(page or [])
            return True, f"Connected to {self.settings.base_url}: authenticated, {total} courses visible"
        except (AbsorbError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _listing_params(
        filter: str | None, sort: str | None, modified_since: DateLike | None, status: int | None = None
    ) -> dict[str, Any]:
        since = edited_since_filter(modified_since) if modified_since is not None else None
        return {
            "_filter": combine_filters(filter, since),
            "_sort": sort,
            "status": status_value(status),
        }

    @staticmethod
    def _plain_params(status: int | None, modified_since: DateLike | None) -> dict[str, Any]:
        return {
            "status": status_value(status),
            "modifiedSince": iso_utc(modified_since, "modified_since")
            if modified_since is not None
            else None,
        }

    # --- authentication -------------------------------------------------------------------------

    def authenticate(self) -> str:
        """``POST /authenticate``: makes sure a shared token exists and returns it (masked in logs).

        Logs in only when no fresh shared token exists; use the token for nothing but API calls.
        """
        return self.client.tokens.current().value

    # --- 1-3: session enrollments (instructor-led courses) --------------------------------------

    def list_user_session_enrollments(
        self, user_id: str, course_id: str, status: int | None = None, modified_since: DateLike | None = None
    ) -> list[dict]:
        """#1 ``GET /users/{userId}/enrollments/{courseId}/sessions``: a user's session enrollments in an ILC."""
        path = f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}/sessions"
        return self.client.get(path, self._plain_params(status, modified_since)) or []

    def get_user_session_enrollment(self, user_id: str, course_id: str, session_id: str) -> dict:
        """#2 ``GET /users/{userId}/enrollments/{courseId}/sessions/{sessionId}``."""
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/sessions/{guid(session_id, 'session_id')}"
        )
        return self.client.get(path)

    def create_ilc_enrollment(
        self,
        user_id: str,
        course_id: str,
        session_id: str,
        re_enroll: bool = False,
        cancel_session: bool = False,
    ) -> dict:
        """#3 ``POST /users/{userId}/enrollments/{courseId}/session/{sessionId}``: enrolls in an ILC and its session."""
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/session/{guid(session_id, 'session_id')}"
        )
        return self.client.post(
            path, params={"reEnroll": _flag(re_enroll), "cancelSession": _flag(cancel_session)}
        )

    def list_session_enrollments(
        self,
        course_id: str,
        session_id: str,
        filter: str | None = None,
        sort: str | None = None,
        modified_since: DateLike | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict]:
        """#4 ``GET /courses/{courseId}/sessions/{sessionId}/enrollments`` (paged generator)."""
        path = f"courses/{guid(course_id, 'course_id')}/sessions/{guid(session_id, 'session_id')}/enrollments"
        return self.client.paginate(
            path, "enrollments", self._listing_params(filter, sort, modified_since), page_size
        )

    # --- 5-6, 16, 19: chapters ------------------------------------------------------------------

    def list_user_chapter_enrollments(
        self, user_id: str, course_id: str, status: int | None = None, modified_since: DateLike | None = None
    ) -> list[dict]:
        """#5 ``GET /users/{userId}/enrollments/{courseId}/chapters``."""
        path = f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}/chapters"
        return self.client.get(path, self._plain_params(status, modified_since)) or []

    def get_user_chapter_enrollment(self, user_id: str, course_id: str, chapter_id: str) -> dict:
        """#6 ``GET /users/{userId}/enrollments/{courseId}/chapters/{chapterId}``."""
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/chapters/{guid(chapter_id, 'chapter_id')}"
        )
        return self.client.get(path)

    # --- 7-13: course enrollments ---------------------------------------------------------------

    def create_enrollment(self, user_id: str, course_id: str, re_enroll: bool = False) -> dict:
        """#7 ``POST /users/{userId}/enrollments/{courseId}``: enrolls a user; returns ``enrollmentId``.

        Idempotent under retries: when an attempt that may have reached Absorb (timeout, dropped
        connection, 5xx) is retried and Absorb then says "already enrolled", the current
        enrollment is read and returned with ``"resolved": "after_retry"`` instead of failing.
        Without such an ambiguous attempt, "already enrolled" raises AbsorbAlreadyEnrolledError.
        """
        user_id, course_id = guid(user_id, "user_id"), guid(course_id, "course_id")
        path = f"users/{user_id}/enrollments/{course_id}"
        state = {"ambiguous": False}
        try:
            response = self.client.call("POST", path, params={"reEnroll": _flag(re_enroll)}, state=state)
        except AbsorbAlreadyEnrolledError:
            if not state["ambiguous"]:
                raise
            current = self.get_user_course_enrollment(user_id, course_id)
            return {
                "enrollmentId": current.get("id"),
                "courseId": course_id,
                "userId": user_id,
                "resolved": "after_retry",
            }
        return response.data

    def get_user_course_enrollment(
        self, user_id: str, course_id: str, status: int | None = None, modified_since: DateLike | None = None
    ) -> dict:
        """#8 ``GET /users/{userId}/enrollments/{courseId}``: the user's current enrollment in a course."""
        path = f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
        return self.client.get(path, self._plain_params(status, modified_since))

    def create_or_update_enrollment(self, user_id: str, enrollment: dict, re_enroll: bool = False) -> dict:
        """#9 ``POST /users/{userId}/enrollments``: creates or updates from an enrollment body.

        ``enrollment`` needs ``courseId``; settable: status, dateCompleted, dateExpires, dateDue,
        courseVersionId, acceptedTermsAndConditions, enrollmentKeyId, credits, score. Dates may be
        given as date/datetime objects. Safe to retry: a second identical call updates nothing new.
        """
        body = dict(enrollment)
        body["courseId"] = guid(body.get("courseId"), "enrollment['courseId']")
        for key in ("dateCompleted", "dateExpires", "dateDue", "dateStarted", "accessDate"):
            if isinstance(body.get(key), datetime | date):
                body[key] = iso_utc(body[key], key)
        path = f"users/{guid(user_id, 'user_id')}/enrollments"
        return self.client.post(path, params={"reEnroll": _flag(re_enroll)}, json=body)

    def list_user_enrollments(
        self,
        user_id: str,
        filter: str | None = None,
        sort: str | None = None,
        modified_since: DateLike | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict]:
        """#10 ``GET /users/{userId}/enrollments`` (paged generator)."""
        path = f"users/{guid(user_id, 'user_id')}/enrollments"
        return self.client.paginate(
            path,
            "enrollments",
            self._listing_params(filter, sort, modified_since),
            page_size,
            row_model=schemas.CourseEnrollment,
        )

    def unenroll(self, enrollment_ids: Iterable[str]) -> Any:
        """#11 ``POST /enrollments/unenroll`` with a JSON array of enrollment ids (one request)."""
        return self.client.post("enrollments/unenroll", json=guids(list(enrollment_ids), "enrollment_ids"))

    def get_enrollment(self, enrollment_id: str) -> dict:
        """#12 ``GET /enrollments/{id}``: one course enrollment by id."""
        return self.client.get(f"enrollments/{guid(enrollment_id, 'enrollment_id')}")

    def list_course_enrollments(
        self,
        course_id: str,
        filter: str | None = None,
        sort: str | None = None,
        modified_since: DateLike | None = None,
        page_size: int = MAX_PAGE_SIZE,
        prefetch: bool = False,
    ) -> Iterator[dict]:
        """#13 ``GET /courses/{courseId}/enrollments`` (paged generator; ``modified_since`` adds
        ``dateEdited ge datetime'…'`` to the filter; ``prefetch`` reads one page ahead)."""
        path = f"courses/{guid(course_id, 'course_id')}/enrollments"
        params = self._listing_params(filter, sort, modified_since)
        return self.client.paginate(
            path, "enrollments", params, page_size, prefetch, row_model=schemas.CourseEnrollment
        )

    def course_enrollment_tables(
        self,
        course_id: str,
        filter: str | None = None,
        sort: str | None = None,
        modified_since: DateLike | None = None,
        page_size: int = MAX_PAGE_SIZE,
        prefetch: bool = True,
        concurrency: int = 1,
    ) -> Iterator[Any]:
        """#13 as ``pyarrow.Table`` pages (export fields, timestamps still text): for bulk exports,
        where building a dict per row would cost more than the HTTP itself. ``concurrency``:
        pages of the course requested at once (a 100,000-learner course is 100 pages)."""
        from absorb_provider.io import COURSE_ENROLLMENT_FIELDS, raw_arrow_schema

        path = f"courses/{guid(course_id, 'course_id')}/enrollments"
        params = self._listing_params(filter, sort, modified_since)
        return self.client.paginate_tables(
            path,
            "enrollments",
            raw_arrow_schema(COURSE_ENROLLMENT_FIELDS),
            params,
            page_size,
            prefetch,
            row_model=schemas.CourseEnrollment,
            concurrency=concurrency,
        )

    # --- 14: bulk read --------------------------------------------------------------------------

    def list_bulk_student_courses(
        self, user_ids: Iterable[str], course_ids: Iterable[str] | None = None
    ) -> list[dict]:
        """#14 ``GET /bulk/studentcourses?userIds=..&courseIds=..``: enrollments of many users at once."""
        params: dict[str, Any] = {"userIds": guids(list(user_ids), "user_ids")}  # repeated keys
        if course_ids:
            params["courseIds"] = guids(list(course_ids), "course_ids")
        rows = self.client.get("bulk/studentcourses", params) or []
        schemas.validate_rows(schemas.StudentCourse, rows, "/bulk/studentcourses")
        return rows

    # --- 15-23: lessons and attempts ------------------------------------------------------------

    def list_lesson_enrollments(
        self,
        course_id: str,
        lesson_id: str,
        filter: str | None = None,
        sort: str | None = None,
        modified_since: DateLike | None = None,
        page_size: int = MAX_PAGE_SIZE,
        prefetch: bool = False,
    ) -> Iterator[dict]:
        """#15 ``GET /courses/{courseId}/lessons/{lessonId}/enrollments`` (paged generator)."""
        path = f"courses/{guid(course_id, 'course_id')}/lessons/{guid(lesson_id, 'lesson_id')}/enrollments"
        params = self._listing_params(filter, sort, modified_since)
        return self.client.paginate(path, "lessonEnrollments", params, page_size, prefetch)

    def get_lesson_enrollment(self, user_id: str, course_id: str, chapter_id: str, lesson_id: str) -> dict:
        """#16 ``GET /users/{userId}/enrollments/{courseId}/chapters/{chapterId}/lessons/{lessonId}``."""
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/chapters/{guid(chapter_id, 'chapter_id')}/lessons/{guid(lesson_id, 'lesson_id')}"
        )
        return self.client.get(path)

    def list_user_lesson_enrollments(
        self, user_id: str, course_id: str, status: int | None = None, modified_since: DateLike | None = None
    ) -> list[dict]:
        """#17 ``GET /users/{userId}/enrollments/{courseId}/lessons``."""
        path = f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}/lessons"
        return self.client.get(path, self._plain_params(status, modified_since)) or []

    def get_user_lesson_enrollment(self, user_id: str, course_id: str, lesson_id: str) -> dict:
        """#18 ``GET /users/{userId}/enrollments/{courseId}/lessons/{lessonId}``."""
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/lessons/{guid(lesson_id, 'lesson_id')}"
        )
        return self.client.get(path)

    def list_user_chapter_lesson_enrollments(
        self,
        user_id: str,
        course_id: str,
        chapter_id: str,
        status: int | None = None,
        modified_since: DateLike | None = None,
    ) -> list[dict]:
        """#19 ``GET /users/{userId}/enrollments/{courseId}/chapters/{chapterId}/lessons``."""
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/chapters/{guid(chapter_id, 'chapter_id')}/lessons"
        )
        return self.client.get(path, self._plain_params(status, modified_since)) or []

    def list_lesson_attempts(self, user_id: str, course_id: str, lesson_id: str) -> list[dict]:
        """#20 ``GET /users/{userId}/enrollments/{courseId}/lessons/{lessonId}/attempts``."""
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/lessons/{guid(lesson_id, 'lesson_id')}/attempts"
        )
        return self.client.get(path) or []

    def start_attempt(self, user_id: str, course_id: str, lesson_id: str) -> dict:
        """#21 ``POST /users/{userId}/enrollments/{courseId}/lessons/{lessonId}/startattempt``.

        Retried on 429 only: after a timeout or 5xx the attempt may exist, so it raises instead.
        """
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/lessons/{guid(lesson_id, 'lesson_id')}/startattempt"
        )
        # not idempotent (each call opens an attempt): a timed-out start is reported, not repeated
        return self.client.call("POST", path, state={"no_ambiguous_retry": True}).data

    def finish_attempt(
        self,
        attempt_id: str,
        status: int,
        score: float | None = None,
        start_date: DateLike | None = None,
        completion_date: DateLike | None = None,
    ) -> dict:
        """#22 ``POST /attempts/{attemptId}/finish`` (status 1 in progress, 3 complete, 5 failed)."""
        body = _attempt_body(status, score, start_date, completion_date)
        return self.client.post(f"attempts/{guid(attempt_id, 'attempt_id')}/finish", json=body)

    def finish_user_lesson_attempt(
        self,
        user_id: str,
        course_id: str,
        lesson_id: str,
        attempt_id: str,
        status: int,
        score: float | None = None,
        start_date: DateLike | None = None,
        completion_date: DateLike | None = None,
    ) -> dict:
        """#23 ``POST /users/{userId}/enrollments/{courseId}/lessons/{lessonId}/attempts/{attemptId}/finish``."""
        path = (
            f"users/{guid(user_id, 'user_id')}/enrollments/{guid(course_id, 'course_id')}"
            f"/lessons/{guid(lesson_id, 'lesson_id')}/attempts/{guid(attempt_id, 'attempt_id')}/finish"
        )
        return self.client.post(path, json=_attempt_body(status, score, start_date, completion_date))

    # --- 24-26: the authenticated user's own enrollments ----------------------------------------

    def get_my_enrollment(self, course_id: str) -> dict:
        """#24 ``GET /myenrollments/{courseId}``: the API user's own enrollment in a course."""
        return self.client.get(f"myenrollments/{guid(course_id, 'course_id')}")

    def enroll_me(self, course_id: str) -> dict:
        """#25 ``POST /enroll/{courseId}``: enrolls the API user itself."""
        return self.client.post(f"enroll/{guid(course_id, 'course_id')}")

    def list_my_enrollments(
        self,
        filter: str | None = None,
        sort: str | None = None,
        modified_since: DateLike | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict]:
        """#26 ``GET /myenrollments`` (paged generator)."""
        return self.client.paginate(
            "myenrollments", "enrollments", self._listing_params(filter, sort, modified_since), page_size
        )

    # --- users, courses, departments ------------------------------------------------------------

    def list_users(
        self, filter: str | None = None, sort: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict]:
        """``GET /users`` (paged generator); e.g. ``filter="externalId eq 'E000001'"``."""
        return self.client.paginate(
            "users", "users", {"_filter": filter, "_sort": sort}, page_size, row_model=schemas.User
        )

    def user_tables(
        self, columns: Mapping[str, str], filter: str | None = None, concurrency: int = 1
    ) -> Iterator[Any]:
        """``GET /users`` as ``pyarrow.Table`` pages of ``columns`` (name -> ``string`` or ``int``),
        parsed in C++ with one page read ahead (``concurrency``: pages requested at once):
        100,000 users without a dict per user."""
        import pyarrow as pa

        types = {"string": pa.string(), "int": pa.int64()}
        schema = pa.schema([(name, types[kind]) for name, kind in columns.items()])
        return self.client.paginate_tables(
            "users",
            "users",
            schema,
            {"_filter": filter},
            MAX_PAGE_SIZE,
            prefetch=True,
            row_model=schemas.User,
            concurrency=concurrency,
        )

    def get_user(self, user_id: str) -> dict:
        """``GET /users/{id}``."""
        return self.client.get(f"users/{guid(user_id, 'user_id')}")

    def find_user_by_external_id(self, external_id: str) -> dict | None:
        """The user whose ``externalId`` (the HR employee id) matches, or None."""
        matches = list(self.list_users(filter=f"externalId eq {odata_string(external_id)}", page_size=2))
        if len(matches) > 1:
            raise AbsorbApiError(200, f"{len(matches)} users share externalId {external_id!r}")
        return matches[0] if matches else None

    def upsert_user(self, user: dict) -> dict:
        """``POST /users``: creates the user, or updates the one with the same username / external id."""
        if not user.get("username"):
            raise ValueError("user['username'] is required to upsert a user")
        return self.client.post("users", json=user)

    def update_user(self, user_id: str, fields: dict) -> dict:
        """``PUT /users/{id}``: updates fields of one user (``activeStatus: 1`` deactivates)."""
        return self.client.put(f"users/{guid(user_id, 'user_id')}", json=fields)

    def upload_users(self, users: list[dict]) -> Any:
        """``POST /users/upload``: upserts up to 200 users in one request."""
        if not 1 <= len(users) <= 200:
            raise ValueError(f"users must hold 1..200 users per upload, got {len(users)}")
        return self.client.post("users/upload", json=users)

    def list_courses(
        self, filter: str | None = None, sort: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict]:
        """``GET /courses`` (paged generator)."""
        return self.client.paginate(
            "courses", "courses", {"_filter": filter, "_sort": sort}, page_size, row_model=schemas.Course
        )

    def list_departments(
        self, filter: str | None = None, sort: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict]:
        """``GET /departments`` (paged generator)."""
        return self.client.paginate(
            "departments",
            "departments",
            {"_filter": filter, "_sort": sort},
            page_size,
            row_model=schemas.Department,
        )

    def iter_departments(self, page_size: int = MAX_PAGE_SIZE) -> Iterator[dict]:
        """Every department as ``{"id", "name", "externalId"}`` (paged generator); match HR
        departments on ``externalId`` where the portal has them, names can be renamed."""
        for department in self.list_departments(page_size=page_size):
            yield {
                "id": department.get("id"),
                "name": department.get("name"),
                "externalId": department.get("externalId"),
            }

    # --- bulk writes ----------------------------------------------------------------------------

    def bulk_enroll(
        self,
        items: Iterable[dict],
        progress_interval: float = 10.0,
        on_outcomes: Callable[[list[dict]], None] | None = None,
    ) -> BulkResult:
        """Applies many enrollments concurrently (rate-limited); one outcome per item, in order.

        Each item: ``{"user_id", "course_id", "due_date": "YYYY-MM-DD" | None, "re_enroll": bool,
        "key": any}``. Outcomes: created (a new enrollment, a re-enrollment included), updated (due
        date changed), already_enrolled, failed. Current enrollments are read first in bulk
        (``/bulk/studentcourses``, 100 users a call), so a re-run of the same items sends no write
        at all.

        Writes whose answer is lost (dropped connection, timeout, 5xx after sending) converge: a
        create or a due-date write is safe to repeat (a repeated create hears "already enrolled"
        and reads the enrollment); a re-enrollment is never repeated blindly: the user's active
        enrollment is read again, and a different id than before means it was applied (so the
        learner's progress is archived once, not twice).
        """
        items = list(items)
        known = self._known_enrollments(items)
        return run_bulk(
            "bulk_enroll",
            items,
            lambda item: [self._enroll_item(item, known)],
            concurrency=self.settings.max_concurrency,
            on_error=lambda item, exc: [_outcome(item, "failed", error=_describe(exc))],
            progress_interval=progress_interval,
            on_outcomes=on_outcomes,
        )

    def bulk_update_users(
        self,
        changes: Iterable[tuple[str, dict]],
        *,
        progress_interval: float = 10.0,
        on_outcomes: Callable[[list[dict]], None] | None = None,
    ) -> BulkResult:
        """Updates many users concurrently (rate-limited); one outcome per ``(user_id, fields)``.

        ``fields`` uses Absorb's names (``USER_UPDATE_FIELDS``); dates may be date/datetime/ISO
        text, a plain date compares by day. Each user is read first: when every wanted field
        already holds its value the outcome is ``unchanged`` and nothing is sent (a re-run writes
        nothing). Otherwise ``PUT /users/{id}`` gets the current user merged with the changes (a
        full body, since a PUT may replace the user) and the outcome is ``updated``, with the
        fields that differed in ``changed``. A PUT whose answer is lost is not re-sent blindly: the
        user is read back and the PUT is sent again only if the change is not in place.
        Outcomes: updated, unchanged, failed (unknown user, a field Absorb refused, a bad field
        name or value, a user given twice (its second change would race the first): nothing is
        sent for that change).
        """
        pairs = list(changes)
        for index, pair in enumerate(pairs):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(f"changes[{index}] must be a (user_id, fields) pair, got {pair!r}")
        repeated = _repeated_users(pairs)
        known = self._current_users(pairs)

        def update(index: int) -> list[dict]:
            user_id, fields = pairs[index]
            if index in repeated:
                return [_user_outcome(user_id, "failed", error=repeated[index])]
            return [self._update_user_item(user_id, fields, known)]

        return run_bulk(
            "bulk_update_users",
            range(len(pairs)),
            update,
            concurrency=self.settings.max_concurrency,
            on_error=lambda index, exc: [_user_outcome(pairs[index][0], "failed", error=_describe(exc))],
            progress_interval=progress_interval,
            on_outcomes=on_outcomes,
        )

    def deactivate_users(
        self,
        leavers: Iterable[str | tuple[str, DateLike | None]],
        *,
        progress_interval: float = 10.0,
        on_outcomes: Callable[[list[dict]], None] | None = None,
    ) -> BulkResult:
        """Deactivates users (``activeStatus`` 1) and records their termination date when given;
        each item a user id or ``(user_id, termination date or None)``. Enrollments and history
        stay in Absorb. Outcomes as ``bulk_update_users`` (``unchanged``: already inactive)."""
        changes = []
        for item in leavers:
            user_id, terminated = _id_and_date(item, "leavers")
            fields: dict[str, Any] = {"activeStatus": 1}
            if terminated is not None:
                fields["dateTerminated"] = terminated
            changes.append((user_id, fields))
        return self.bulk_update_users(changes, progress_interval=progress_interval, on_outcomes=on_outcomes)

    def reactivate_users(
        self,
        rehires: Iterable[str | tuple[str, DateLike | None]],
        *,
        progress_interval: float = 10.0,
        on_outcomes: Callable[[list[dict]], None] | None = None,
    ) -> BulkResult:
        """Reactivates users (``activeStatus`` 0, ``dateTerminated`` cleared): the same Absorb user,
        with its enrollment history, comes back. Each item a user id or ``(user_id, new hire date
        or None)``. Reactivate before enrolling: Absorb refuses enrollments of inactive users."""
        changes = []
        for item in rehires:
            user_id, hired = _id_and_date(item, "rehires")
            fields: dict[str, Any] = {"activeStatus": 0, "dateTerminated": None}
            if hired is not None:
                fields["dateHired"] = hired
            changes.append((user_id, fields))
        return self.bulk_update_users(changes, progress_interval=progress_interval, on_outcomes=on_outcomes)

    def _current_users(self, pairs: list[Any]) -> dict[str, dict]:
        """user id -> the user as ``GET /users`` lists it, read ``USERS_PER_FILTER`` at a time
        (``id eq guid'…' or …``) instead of one GET each; ids a failed read covered (or that it did
        not find) are left out and read one by one later."""
        ids = sorted({_guid_or_none(user_id) for user_id, _ in pairs} - {None})
        chunks = [ids[i : i + USERS_PER_FILTER] for i in range(0, len(ids), USERS_PER_FILTER)]

        def read(chunk: list[str]) -> list[dict]:
            clause = " or ".join(f"id eq guid'{user_id}'" for user_id in chunk)
            try:
                # one more than asked for: the first page is short, so it is the only one read
                return list(self.list_users(filter=clause, page_size=len(chunk) + 1))
            except AbsorbError as exc:
                self.log.warning(
                    "reading %d users at once failed (%s); reading them one by one", len(chunk), exc
                )
                return []

        known: dict[str, dict] = {}
        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency) as pool:
            for users in pool.map(read, chunks):
                known.update({str(user.get("id")).lower(): user for user in users if user.get("id")})
        return known

    def _update_user_item(self, user_id: Any, fields: Any, known: dict[str, dict] | None = None) -> dict:
        try:
            user_id = guid(user_id, "user_id")
            wanted = _user_fields(fields)
        except ValueError as exc:
            return _user_outcome(user_id, "failed", error=str(exc))
        try:
            current = (known or {}).get(user_id) or self.get_user(user_id)
        except AbsorbNotFoundError as exc:
            return _user_outcome(user_id, "failed", error=_describe(exc))
        changed = sorted(
            key for key, value in wanted.items() if not _same_user_value(key, current.get(key), value)
        )
        if not changed:
            return _user_outcome(user_id, "unchanged")
        body = {key: current.get(key) for key in USER_UPDATE_FIELDS if key in current} | wanted
        path = f"users/{user_id}"

        def send(state: dict) -> dict:
            return self.client.call("PUT", path, json=body, state=state).data or {}

        def applied() -> dict | None:
            now = self.get_user(user_id)
            return now if all(_same_user_value(k, now.get(k), v) for k, v in wanted.items()) else None

        self._write_once(send, applied, f"update of user {user_id}")
        return _user_outcome(user_id, "updated", changed=changed)

    def _known_enrollments(self, items: list[dict]) -> dict[tuple[str, str], dict | None]:
        """``(user, course) -> active enrollment or None`` for every pair a bulk read covered.

        Pairs whose read failed are left out; their items fall back to per-item reads.
        """
        wanted: dict[str, set[str]] = defaultdict(set)
        for item in items:
            try:  # re-enroll items too: their current enrollment is the one a re-enroll replaces
                wanted[guid(item.get("user_id"), "user_id")].add(guid(item.get("course_id"), "course_id"))
            except ValueError:
                continue  # reported as that item's failure later
        users = sorted(wanted)
        chunks = [users[i : i + BULK_READ_USERS] for i in range(0, len(users), BULK_READ_USERS)]

        def read(chunk: list[str]) -> dict[tuple[str, str], dict | None]:
            courses = sorted(set().union(*(wanted[user] for user in chunk)))
            found: dict[tuple[str, str], dict | None] = {(u, c): None for u in chunk for c in wanted[u]}
            try:
                rows = self.list_bulk_student_courses(chunk, courses)
            except AbsorbApiError as exc:
                self.log.warning(
                    "bulk read of %d users failed (%s); reading them one by one", len(chunk), exc
                )
                return {}
            for row in rows:
                pair = (str(row.get("userId")), str(row.get("courseId")))
                if pair in found and row.get("isActive", True):
                    found[pair] = row
            return found

        known: dict[tuple[str, str], dict | None] = {}
        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency) as pool:
            for found in pool.map(read, chunks):
                known.update(found)
        return known

    def bulk_unenroll(
        self,
        enrollment_ids: Iterable[str],
        batch_size: int = 200,
        progress_interval: float = 10.0,
        on_outcomes: Callable[[list[dict]], None] | None = None,
    ) -> BulkResult:
        """Unenrolls in batches through ``POST /enrollments/unenroll``; a refused batch is split
        until the refused ids are isolated, so one bad id does not fail its neighbours.

        Outcomes per id: ``unenrolled`` (removed by this call), ``already_gone`` (Absorb answered
        "not found" (404, or 400/409/422 saying not found) and a read of ``GET /enrollments/{id}``
        confirms it no longer exists: another run got there first; Absorb cannot tell an id that
        never existed from one that is gone), ``failed`` (any other refusal, an id that is not a
        GUID, or transient errors past the retry budget). A batch whose answer is lost (dropped
        connection, timeout, 5xx after sending) is not re-sent blindly: its ids are read back, the
        ones gone count as ``unenrolled`` and only the rest are sent again.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        valid, invalid = _split_guids(list(enrollment_ids))
        batches = [valid[i : i + batch_size] for i in range(0, len(valid), batch_size)]
        result = run_bulk(
            "bulk_unenroll",
            batches,
            self._unenroll_batch,
            concurrency=self.settings.max_concurrency,
            on_error=lambda batch, exc: [_unenroll_outcome(i, "failed", _describe(exc)) for i in batch],
            weight=len,
            progress_interval=progress_interval,
            on_outcomes=on_outcomes,
        )
        result.outcomes.extend(
            _unenroll_outcome(raw, "failed", "enrollment id is not a GUID") for raw in invalid
        )
        return result

    def _enroll_item(self, item: dict, known: dict[tuple[str, str], dict | None] | None = None) -> dict:
        user_id = guid(item.get("user_id"), "user_id")
        course_id = guid(item.get("course_id"), "course_id")
        re_enroll = bool(item.get("re_enroll") or False)
        due = item.get("due_date")
        due = None if due in (None, "") else iso_utc(due, "due_date")
        pair = (user_id, course_id)
        if re_enroll:
            if known is not None and pair in known:
                replaced = known[pair]
            else:
                replaced = self._current_enrollment(user_id, course_id)
            return self._re_enroll(item, user_id, course_id, due, replaced)
        if known is not None and pair in known:
            return self._enroll_known(item, user_id, course_id, due, known[pair])
        if due is None:
            return self._enroll_without_due_date(item, user_id, course_id, False)
        current = self._current_enrollment(user_id, course_id)
        return self._enroll_with_due_date(item, user_id, course_id, False, due, current)

    def _enroll_known(
        self, item: dict, user_id: str, course_id: str, due: str | None, current: dict | None
    ) -> dict:
        """An item whose current state came from the bulk read: writes only what differs."""
        if current is not None and (due is None or _same_day(current.get("dateDue"), due)):
            return _outcome(item, "already_enrolled", enrollment_id=current.get("id"))
        if due is None:
            return self._enroll_without_due_date(item, user_id, course_id, False)
        return self._enroll_with_due_date(item, user_id, course_id, False, due, current)

    def _enroll_without_due_date(self, item: dict, user_id: str, course_id: str, re_enroll: bool) -> dict:
        try:
            created = self.create_enrollment(user_id, course_id, re_enroll=re_enroll)
        except AbsorbAlreadyEnrolledError:
            current = self.get_user_course_enrollment(user_id, course_id)
            return _outcome(item, "already_enrolled", enrollment_id=current.get("id"))
        return _outcome(item, "created", enrollment_id=created.get("enrollmentId"))

    def _enroll_with_due_date(
        self, item: dict, user_id: str, course_id: str, re_enroll: bool, due: str, current: dict | None
    ) -> dict:
        if current is not None and _same_day(current.get("dateDue"), due):
            return _outcome(item, "already_enrolled", enrollment_id=current.get("id"))
        written = self.create_or_update_enrollment(
            user_id, {"courseId": course_id, "dateDue": due}, re_enroll=re_enroll
        )
        outcome = "updated" if current is not None else "created"
        return _outcome(item, outcome, enrollment_id=(written or {}).get("enrollmentId"))

    def _re_enroll(
        self, item: dict, user_id: str, course_id: str, due: str | None, replaced: dict | None
    ) -> dict:
        """Re-enrolls once: after a lost answer the active enrollment is read again, and an id other
        than ``replaced`` (the enrollment before the write) means the re-enrollment was applied."""
        replaced_id = (replaced or {}).get("id")
        if due is None:
            path, body = f"users/{user_id}/enrollments/{course_id}", None
        else:
            path, body = f"users/{user_id}/enrollments", {"courseId": course_id, "dateDue": due}

        def send(state: dict) -> str | None:
            answer = self.client.call("POST", path, params={"reEnroll": "true"}, json=body, state=state)
            return (answer.data or {}).get("enrollmentId")

        def applied() -> str | None:
            current = self._current_enrollment(user_id, course_id)
            if current is None or current.get("id") == replaced_id:
                return None  # not applied: the old enrollment (or none) is still the active one
            if due is not None and not _same_day(current.get("dateDue"), due):
                # re-enrolled, but the due date did not come with it: set it (safe to repeat)
                self.create_or_update_enrollment(user_id, {"courseId": course_id, "dateDue": due})
            return current.get("id")

        enrollment_id = self._write_once(send, applied, f"re-enroll {user_id} in {course_id}")
        return _outcome(item, "created", enrollment_id=enrollment_id)

    def _write_once(self, send: Callable[[dict], Any], applied: Callable[[], Any], what: str) -> Any:
        """Sends a write that must not be repeated blindly.

        The client does not re-send it after an attempt that may have reached Absorb (dropped
        connection, timeout, 5xx); instead ``applied()`` reads the state back: a result other than
        None means the write took effect and is returned; None means it did not, and it is sent
        again (bounded by the client's retry policy). After a timeout the write may still be in
        flight, so the read-back waits one more request timeout first.
        """
        policy = self.client.retry
        lost: AbsorbRetryExhaustedError | None = None
        for attempt in range(1, max(1, policy.max_attempts) + 1):
            state = {"no_ambiguous_retry": True}
            try:
                return send(state)
            except AbsorbRetryExhaustedError as exc:
                if not state.get("ambiguous"):
                    raise
                lost = exc
                self.log.warning("%s: answer lost (%s); reading back whether it was applied", what, exc)
            settle = self.settings.timeout if state.get("timed_out") else 0.0
            time.sleep(max(settle, policy.delay(attempt)))
            result = applied()
            if result is not None:
                self.log.info("%s: it was applied before its answer was lost", what)
                return result
        assert lost is not None
        raise lost

    def _current_enrollment(self, user_id: str, course_id: str) -> dict | None:
        """The active enrollment of the user in the course, or None."""
        try:
            current = self.get_user_course_enrollment(user_id, course_id)
        except AbsorbNotFoundError:
            return None
        if not current or current.get("isActive") is False:
            return None
        return current

    def _unenroll_batch(self, batch: list[str]) -> list[dict]:
        rows: dict[str, dict] = {}
        remaining = list(batch)  # _send_unenroll drops the ids a read-back found gone
        try:
            self._send_unenroll(remaining, rows)
        except AbsorbApiError as exc:
            rows.update(self._refused(remaining, exc))
        except AbsorbError as exc:
            rows.update({i: _unenroll_outcome(i, "failed", _describe(exc)) for i in remaining})
        else:
            rows.update({i: _unenroll_outcome(i, "unenrolled") for i in remaining})
        return [rows[i] for i in batch]

    def _send_unenroll(self, remaining: list[str], rows: dict[str, dict]) -> None:
        """``POST /enrollments/unenroll`` for ``remaining``; after a lost answer the ids are read
        back: those gone are recorded as unenrolled in ``rows`` and removed from ``remaining``,
        the others are sent again."""

        def send(state: dict) -> bool:
            self.client.call("POST", "enrollments/unenroll", json=list(remaining), state=state)
            return True

        def applied() -> bool | None:
            gone = [i for i in remaining if self._enrollment_gone(i)]
            for enrollment_id in gone:
                rows[enrollment_id] = _unenroll_outcome(enrollment_id, "unenrolled")
            remaining[:] = [i for i in remaining if i not in set(gone)]
            return True if not remaining else None

        self._write_once(send, applied, f"unenroll of {len(remaining)} enrollments")

    def _refused(self, batch: list[str], exc: AbsorbApiError) -> dict[str, dict]:
        """Outcomes of a batch Absorb refused: split until the refused ids are isolated; a single
        id refused as not found that a read confirms gone is ``already_gone``."""
        if exc.status >= 500:
            return {i: _unenroll_outcome(i, "failed", _describe(exc)) for i in batch}
        if len(batch) > 1:
            middle = len(batch) // 2
            return {
                row["enrollment_id"]: row
                for row in self._unenroll_batch(batch[:middle]) + self._unenroll_batch(batch[middle:])
            }
        (enrollment_id,) = batch
        if _says_not_found(exc):
            try:
                gone = self._enrollment_gone(enrollment_id)
            except AbsorbError as read_error:
                self.log.warning("could not confirm that %s is gone: %s", enrollment_id, read_error)
                gone = False
            if gone:
                return {enrollment_id: _unenroll_outcome(enrollment_id, "already_gone")}
        return {enrollment_id: _unenroll_outcome(enrollment_id, "failed", _describe(exc))}

    def _enrollment_gone(self, enrollment_id: str) -> bool:
        """Whether ``GET /enrollments/{id}`` says the enrollment does not exist (404)."""
        try:
            self.get_enrollment(enrollment_id)
        except AbsorbNotFoundError:
            return True
        return False


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _attempt_body(
    status: int, score: float | None, start_date: DateLike | None, completion_date: DateLike | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": attempt_status(status)}
    if score is not None:
        body["score"] = float(score)
    if start_date is not None:
        body["startDate"] = iso_utc(start_date, "start_date")
    if completion_date is not None:
        body["completionDate"] = iso_utc(completion_date, "completion_date")
    return body


NOT_FOUND_HINTS = ("not found", "does not exist", "no longer exists")


def _says_not_found(exc: AbsorbApiError) -> bool:
    """A refusal that means "no such enrollment" (404, or a 400/409/422 saying so)."""
    return exc.status == 404 or (exc.status in (400, 409, 422) and exc.mentions(*NOT_FOUND_HINTS))


def _same_day(current: Any, wanted: str) -> bool:
    return bool(current) and str(current)[:10] == wanted[:10]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _outcome(item: dict, outcome: str, *, enrollment_id: str | None = None, error: str | None = None) -> dict:
    return {
        "key": item.get("key"),
        "user_id": item.get("user_id"),
        "course_id": item.get("course_id"),
        "enrollment_id": enrollment_id,
        "outcome": outcome,
        "error": error,
    }


def _unenroll_outcome(enrollment_id: Any, outcome: str, error: str | None = None) -> dict:
    return {
        "key": enrollment_id,
        "user_id": None,
        "course_id": None,
        "enrollment_id": enrollment_id,
        "outcome": outcome,
        "error": error,
    }


USER_UPDATE_FIELDS = (
    "username",
    "departmentId",
    "firstName",
    "lastName",
    "emailAddress",
    "externalId",
    "employeeNumber",
    "jobTitle",
    "location",
    "dateHired",
    "dateTerminated",
    "supervisorId",
    "activeStatus",
)
USER_DATE_FIELDS = ("dateHired", "dateTerminated")
USER_GUID_FIELDS = ("departmentId", "supervisorId")


def _guid_or_none(value: Any) -> str | None:
    try:
        return guid(value, "user_id")
    except ValueError:
        return None


def _repeated_users(pairs: list[Any]) -> dict[int, str]:
    """``index -> error`` for each change of a user that an earlier change already covers."""
    seen: set[str] = set()
    repeated = {}
    for index, (user_id, _fields) in enumerate(pairs):
        try:
            user_id = guid(user_id, "user_id")
        except ValueError:
            continue  # reported by the change itself
        if user_id in seen:
            repeated[index] = f"user {user_id} has more than one change; merge them into one"
        seen.add(user_id)
    return repeated


def _id_and_date(item: Any, name: str) -> tuple[Any, Any]:
    """A user id, or ``(user_id, date or None)``, as a pair."""
    if not isinstance(item, tuple):
        return item, None
    if len(item) != 2:
        raise ValueError(f"each of {name} must be a user id or (user_id, date), got {item!r}")
    return item


def _user_fields(fields: Any) -> dict[str, Any]:
    """The wanted user fields, checked and normalised; ValueError naming a bad key or value."""
    if not isinstance(fields, dict):
        raise ValueError(f"user fields must be a dict, got {type(fields).__name__}")
    unknown = sorted(str(key) for key in fields if key not in USER_UPDATE_FIELDS)
    if unknown:
        raise ValueError(f"not user fields bulk_update_users may set: {', '.join(unknown)}")
    wanted: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None or value == "":
            if key in ("username", "activeStatus"):
                raise ValueError(f"{key} cannot be empty")
            wanted[key] = None
        elif key == "activeStatus":
            if value not in (0, 1) or isinstance(value, bool):
                raise ValueError(f"activeStatus must be 0 (active) or 1 (inactive), got {value!r}")
            wanted[key] = int(value)
        elif key in USER_DATE_FIELDS:
            wanted[key] = _date_text(value, key)
        elif key in USER_GUID_FIELDS:
            wanted[key] = guid(value, key)
        else:
            wanted[key] = str(value)
    return wanted


def _date_text(value: Any, name: str) -> str:
    """A plain date stays ``YYYY-MM-DD`` (compared by day); anything else becomes ISO UTC."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and _is_plain_date(value.strip()):
        return value.strip()
    return iso_utc(value, name)


def _is_plain_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _same_user_value(key: str, current: Any, wanted: Any) -> bool:
    """Whether Absorb's ``current`` value already is ``wanted`` (GUIDs by value, dates by day or
    instant, empty text as null)."""
    if wanted is None:
        return current in (None, "")
    if current in (None, ""):
        return False
    if key in USER_DATE_FIELDS:
        if len(wanted) == 10:
            return str(current)[:10] == wanted
        try:
            return iso_utc(current, key) == iso_utc(wanted, key)
        except ValueError:
            return False
    if key in USER_GUID_FIELDS:
        return str(current).lower() == wanted.lower()
    if key == "activeStatus":
        return int(current) == wanted
    return str(current) == wanted


def _user_outcome(
    user_id: Any, outcome: str, *, changed: list[str] | None = None, error: str | None = None
) -> dict:
    """One user's row; the enrollment rows' keys too, so the write journal takes it as it is."""
    return {
        "key": user_id,
        "user_id": user_id,
        "course_id": None,
        "enrollment_id": None,
        "outcome": outcome,
        "changed": changed or [],
        "error": error,
    }


def _split_guids(values: list[Any]) -> tuple[list[str], list[Any]]:
    valid, invalid = [], []
    for value in values:
        try:
            valid.append(guid(value, "enrollment_id"))
        except ValueError:
            invalid.append(value)
    return valid, invalid
