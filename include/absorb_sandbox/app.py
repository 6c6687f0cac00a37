"""The FastAPI app: Absorb Integration API v2 routes plus the ``/_sandbox`` admin surface.

Handlers are thin: they read the request, call ``Sandbox`` (service.py) and answer JSON bytes
directly (response models document the shapes in ``/openapi.json`` without re-validating every
row at run time). Every error, FastAPI's own validation errors included, uses Absorb's body.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from absorb_sandbox import models, store
from absorb_sandbox import resources as res
from absorb_sandbox import seed as seeding
from absorb_sandbox.activities import ensure_activities, ensure_course_activities
from absorb_sandbox.auth import DEFAULT_TOKEN_TTL, TokenStore
from absorb_sandbox.errors import ApiError, error_body, not_found
from absorb_sandbox.faults import FaultInjector, FaultSpecError, RateLimiter, parse_spec
from absorb_sandbox.middleware import BodyTooLarge, SandboxMiddleware, Stats, json_bytes
from absorb_sandbox.openapi_doc import customise_openapi
from absorb_sandbox.service import Sandbox, check_guid, page_request
from absorb_sandbox.shared import SharedState, state_path
from absorb_sandbox.users import UserService


@dataclass
class SandboxConfig:
    db_path: str = ":memory:"
    seed: str = "small"
    api_key: str = "0b5f4a8e-2c3d-4e5f-8a9b-1c2d3e4f5a6b"
    username: str = "airflow.integration"
    password: str = "sandbox-password"
    rate_limit: float | None = None
    faults: str | None = None
    token_ttl: float = DEFAULT_TOKEN_TTL
    paging: str = "keyset"  # or "offset": plain COUNT + LIMIT/OFFSET (comparisons, benchmarks)


def open_store(config: SandboxConfig):
    """Open the db and seed it unless it already holds data (a restart keeps the state)."""
    conn = store.connect(config.db_path)
    store.create_schema(conn)
    if not store.is_seeded(conn):
        seeding.seed_database(conn, config.seed, api_username=config.username)
    else:
        seeding.ensure_api_user(conn, config.username)
        seeding.ensure_department_external_ids(conn)
        store.create_indices(conn)
    return conn


def _json(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = data if isinstance(data, bytes) else json_bytes(data)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


GuidPath = Annotated[str, "GUID path parameter"]
ReEnroll = Annotated[bool, Query(description="Re-enroll when an active enrollment exists.")]


def open_state(config: SandboxConfig) -> SharedState:
    """The shared state of a server that starts now: stats zeroed, buckets full, faults from
    the config. Called once per server, before its worker processes (if any) start."""
    state = SharedState(state_path(config.db_path))
    state.initialise(parse_spec(config.faults).describe())
    return state


def create_app(config: SandboxConfig, conn=None, state: SharedState | None = None) -> FastAPI:
    """The app of one server process; ``state``: the shared state opened by this process (a
    worker of ``--workers N``), else it is opened and initialised here."""
    conn = conn or open_store(config)
    state = state or open_state(config)
    stats = Stats(state)
    sandbox = Sandbox(conn, paging=config.paging, on_paging=stats.record_paging)
    users = UserService(conn)
    tokens = TokenStore(conn, config.token_ttl)
    faults = FaultInjector(state=state)
    limiter = RateLimiter(config.rate_limit, state)
    app = FastAPI(
        title="Absorb Integration API v2 (offline sandbox)",
        version="2",
        description="A simulator of the Absorb LMS Integration API v2 for tests and demos.",
    )
    app.state.sandbox = sandbox
    app.state.config = config
    app.state.shared = state

    def route_template(scope) -> str:
        for route in app.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path_format", route.path)
        return "<unmatched>"

    app.add_middleware(
        SandboxMiddleware,
        api_key=config.api_key,
        tokens=tokens,
        stats=stats,
        faults=faults,
        limiter=limiter,
        route_template=route_template,
    )
    _install_error_handlers(app)
    _add_auth_routes(app, config, tokens, users)
    _add_user_routes(app, users)
    _add_enrollment_routes(app, sandbox)
    _add_activity_routes(app, sandbox)
    _add_admin_routes(app, config, sandbox, tokens, stats, faults)
    customise_openapi(app)
    return app


# --- errors -----------------------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return _json(exc.body(), exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        problems, status = [], 422
        for error in exc.errors():
            location = [str(p) for p in error.get("loc", ()) if p != "body"]
            if error.get("type") == "json_invalid":
                return _json(error_body(400, "Malformed JSON in the request body."), 400)
            if (
                error.get("loc", ())[:1] == ("body",)
                and error.get("type") == "missing"
                and len(error["loc"]) == 1
            ):
                return _json(error_body(400, "The request requires a body."), 400)
            problems.append(f"{'.'.join(location) or 'body'}: {error.get('msg', 'invalid')}")
        message = problems[0] if problems else "Validation failed."
        return _json(error_body(status, message, problems), status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        message = {404: "Resource not found.", 405: "Method not allowed."}.get(
            exc.status_code, str(exc.detail)
        )
        return _json(error_body(exc.status_code, message), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(BodyTooLarge)
    async def too_large(_: Request, __: BodyTooLarge):
        return _json(error_body(413, "Request body too large."), 413)


async def _json_body(request: Request) -> Any:
    """The parsed JSON body; missing → 400, malformed → 400."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "The request requires a body.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Malformed JSON in the request body.") from None


def _object_body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


ERRORS = models.error_responses


# --- authentication -----------------------------------------------------------------------------------


def _add_auth_routes(app: FastAPI, config: SandboxConfig, tokens: TokenStore, users: UserService) -> None:
    @app.post(
        "/authenticate",
        tags=["Authentication"],
        response_model=str,
        summary="Authenticate",
        responses=ERRORS(400, 401),
        openapi_extra=models.body_doc(models.AuthenticateRequest),
    )
    async def authenticate(request: Request):
        """Returns a token (a JSON string). A new token replaces the user's previous one."""
        body = _object_body(await _json_body(request))
        username, password, key = body.get("username"), body.get("password"), body.get("privateKey")
        if not all(isinstance(v, str) and v for v in (username, password, key)):
            raise ApiError(400, "username, password and privateKey are required strings.")
        if username != config.username or password != config.password or key != config.api_key:
            raise ApiError(401, "Invalid username, password or private key.")
        users.ensure_api_user(config.username)
        return _json(tokens.issue(username))


# --- users, courses, departments ---------------------------------------------------------------------


def _add_user_routes(app: FastAPI, users: UserService) -> None:
    sandbox = app.state.sandbox

    @app.get(
        "/users",
        tags=["Users"],
        response_model=models.page_model("users", models.User),
        responses=ERRORS(401, 422),
        openapi_extra=models.paging_doc(status=False),
    )
    async def list_users(request: Request):
        return _json(sandbox.page(res.USERS, page_request(request.query_params)))

    @app.get("/users/{userId}", tags=["Users"], response_model=models.User, responses=ERRORS(401, 404, 422))
    async def get_user(userId: GuidPath):
        user_id = check_guid(userId, "userId")
        return _json(sandbox.one(res.USERS, ["u.id = ?"], [user_id], "User"))

    @app.post(
        "/users",
        tags=["Users"],
        response_model=models.User,
        status_code=201,
        responses={
            200: {"model": models.User, "description": "Existing user updated"},
            **ERRORS(400, 401, 404, 422),
        },
        openapi_extra=models.body_doc(models.UserInput),
    )
    async def upsert_user(request: Request):
        """Creates the user, or updates the one whose externalId (or username) matches."""
        status, user = users.upsert(_object_body(await _json_body(request)))
        return _json(user, status)

    @app.post(
        "/users/upload",
        tags=["Users"],
        response_model=list[models.UserUploadResult],
        responses=ERRORS(400, 401, 422),
        openapi_extra=models.body_doc(list[models.UserInput]),
    )
    async def upload_users(request: Request):
        """Upserts up to 200 users; each gets its own result line."""
        return _json(users.upload(await _json_body(request)))

    @app.put(
        "/users/{userId}",
        tags=["Users"],
        response_model=models.User,
        responses=ERRORS(400, 401, 404, 422),
        openapi_extra=models.body_doc(models.UserInput),
    )
    async def update_user(userId: GuidPath, request: Request):
        return _json(users.update(userId, _object_body(await _json_body(request))))

    @app.get(
        "/courses",
        tags=["Courses"],
        response_model=models.page_model("courses", models.Course),
        responses=ERRORS(401, 422),
        openapi_extra=models.paging_doc(status=False),
    )
    async def list_courses(request: Request):
        return _json(sandbox.page(res.COURSES, page_request(request.query_params)))

    @app.get(
        "/departments",
        tags=["Departments"],
        response_model=models.page_model("departments", models.Department),
        responses=ERRORS(401, 422),
        openapi_extra=models.departments_doc(),
    )
    async def list_departments(request: Request):
        """Also filters by the v2 query parameters ``externalId`` and ``departmentName`` (exact)."""
        base, params = [], []
        for name, column in (("externalId", "d.external_id"), ("departmentName", "d.name")):
            if request.query_params.get(name) is not None:
                base.append(f"{column} = ?")
                params.append(request.query_params[name])
        return _json(sandbox.page(res.DEPARTMENTS, page_request(request.query_params), base, params))


# --- course enrollments --------------------------------------------------------------------------------


def _add_enrollment_routes(app: FastAPI, sandbox: Sandbox) -> None:
    page_of_enrollments = models.page_model("enrollments", models.Enrollment)

    @app.get(
        "/courses/{courseId}/enrollments",
        tags=["Enrollments"],
        response_model=page_of_enrollments,
        responses=ERRORS(401, 404, 422),
        openapi_extra=models.paging_doc(deprecated=True),
    )
    async def list_course_enrollments(courseId: GuidPath, request: Request):
        """#13 List enrollments for specific course."""
        course_id = sandbox.require_course(courseId)[0]
        return _json(
            sandbox.page(
                res.ENROLLMENTS, page_request(request.query_params), ["e.course_id = ?"], [course_id]
            )
        )

    @app.get(
        "/users/{userId}/enrollments",
        tags=["Enrollments"],
        response_model=page_of_enrollments,
        responses=ERRORS(401, 404, 422),
        openapi_extra=models.paging_doc(deprecated=True),
    )
    async def list_user_enrollments(userId: GuidPath, request: Request):
        """#10 List course enrollments for specific user."""
        user_id = sandbox.require_user(userId)
        return _json(
            sandbox.page(res.ENROLLMENTS, page_request(request.query_params), ["e.user_id = ?"], [user_id])
        )

    @app.get(
        "/users/{userId}/enrollments/{courseId}",
        tags=["Enrollments"],
        response_model=models.Enrollment,
        responses=ERRORS(401, 404, 422),
        openapi_extra=models.status_doc(),
    )
    async def get_user_course_enrollment(userId: GuidPath, courseId: GuidPath, request: Request):
        """#8 Get user's enrollment for specific course (the active one)."""
        request_params = page_request(request.query_params, paged=False)
        return _json(sandbox.user_course_enrollment(userId, courseId, request_params))

    @app.post(
        "/users/{userId}/enrollments/{courseId}",
        tags=["Enrollments"],
        status_code=201,
        response_model=models.EnrollmentCreated,
        responses=ERRORS(400, 401, 404, 422),
    )
    async def create_enrollment(userId: GuidPath, courseId: GuidPath, reEnroll: ReEnroll = False):
        """#7 Create enrollment for user and course. Multi-Session ILCs are not supported."""
        created = sandbox.create_enrollment(userId, courseId, re_enroll=reEnroll)
        return _json({k: created[k] for k in ("enrollmentId", "courseId", "userId")}, 201)

    @app.post(
        "/users/{userId}/enrollments",
        tags=["Enrollments"],
        status_code=201,
        response_model=models.EnrollmentCreated,
        responses={
            200: {"model": models.EnrollmentCreated, "description": "Existing enrollment updated"},
            **ERRORS(400, 401, 404, 422),
        },
        openapi_extra=models.body_doc(models.EnrollmentInput, required=True),
    )
    async def create_or_update_enrollment(userId: GuidPath, request: Request, reEnroll: ReEnroll = False):
        """#9 Create or update course enrollment. Settable: Status, DateCompleted, DateExpires,
        CourseVersionId, AcceptedTermsAndConditions, EnrollmentKeyId, Credits, Score (+ dateDue)."""
        status, result = sandbox.create_or_update_enrollment(
            userId, _object_body(await _json_body(request)), re_enroll=reEnroll
        )
        return _json({k: result[k] for k in ("enrollmentId", "courseId", "userId")}, status)

    @app.post(
        "/enrollments/unenroll",
        tags=["Enrollments"],
        responses={200: {"description": "Unenrolled"}, **ERRORS(400, 401, 422)},
        openapi_extra=models.body_doc(list[models.GuidStr], required=True),
    )
    async def unenroll(request: Request):
        """#11 Un-enroll users from courses (all or nothing)."""
        sandbox.unenroll(await _json_body(request))
        return Response(status_code=200)

    @app.get(
        "/enrollments/{id}",
        tags=["Enrollments"],
        response_model=models.Enrollment,
        responses=ERRORS(401, 404, 422),
    )
    async def get_enrollment(id: GuidPath):
        """#12 Get course enrollment."""
        return _json(sandbox.get_enrollment(id))

    @app.get(
        "/bulk/studentcourses",
        tags=["Enrollments"],
        response_model=list[models.Enrollment],
        responses=ERRORS(400, 401, 422),
        openapi_extra=models.bulk_student_courses_doc(),
    )
    async def bulk_student_courses(request: Request):
        """#14 List course enrollments for bulk user list (repeated keys or comma lists)."""

        def split(name: str) -> list[str]:
            values = request.query_params.getlist(name)
            return [v.strip() for raw in values for v in raw.split(",") if v.strip()]

        return _json(sandbox.bulk_student_courses(split("userIds"), split("courseIds")))

    @app.get(
        "/myenrollments",
        tags=["My enrollments"],
        response_model=page_of_enrollments,
        responses=ERRORS(401, 404, 422),
        openapi_extra=models.paging_doc(),
    )
    async def my_enrollments(request: Request):
        """#26 List currently authenticated user's course enrollments."""
        user_id = sandbox.user_id_for(request.scope["state"]["username"])
        return _json(
            sandbox.page(res.ENROLLMENTS, page_request(request.query_params), ["e.user_id = ?"], [user_id])
        )

    @app.get(
        "/myenrollments/{courseId}",
        tags=["My enrollments"],
        response_model=models.Enrollment,
        responses=ERRORS(401, 404, 422),
        openapi_extra=models.status_doc(),
    )
    async def my_enrollment(courseId: GuidPath, request: Request):
        """#24 Get currently authenticated user's course enrollment."""
        user_id = sandbox.user_id_for(request.scope["state"]["username"])
        return _json(
            sandbox.user_course_enrollment(user_id, courseId, page_request(request.query_params, paged=False))
        )

    async def enroll_me(courseId: GuidPath, request: Request):
        """#25 Create course enrollment for the currently authenticated user."""
        user_id = sandbox.user_id_for(request.scope["state"]["username"])
        created = sandbox.create_enrollment(user_id, courseId)
        return _json({k: created[k] for k in ("enrollmentId", "courseId", "userId")}, 201)

    for path in ("/enroll/{courseId}", "/myenrollments/{courseId}"):
        app.post(
            path,
            tags=["My enrollments"],
            status_code=201,
            response_model=models.EnrollmentCreated,
            responses=ERRORS(400, 401, 404, 422),
            operation_id=f"enroll_me_{path.split('/')[1]}",
        )(enroll_me)


# --- sessions, chapters, lessons, attempts --------------------------------------------------------------


def _add_activity_routes(app: FastAPI, sandbox: Sandbox) -> None:
    conn = sandbox.conn

    def user_enrollment(user_id: str, course_id: str) -> str:
        enrollment_id = sandbox.require_active_enrollment(user_id, course_id)
        if not conn.execute(
            "SELECT activities_ready FROM enrollments WHERE id = ?", (enrollment_id,)
        ).fetchone()[0]:
            with sandbox.transaction():
                ensure_activities(conn, enrollment_id)
        return enrollment_id

    def session_route(path: str, **kw):
        return app.get(path, tags=["Sessions"], responses=ERRORS(401, 404, 422), **kw)

    @session_route(
        "/users/{userId}/enrollments/{courseId}/sessions",
        response_model=list[models.SessionEnrollment],
        openapi_extra=models.status_doc(),
    )
    async def list_user_session_enrollments(userId: GuidPath, courseId: GuidPath, request: Request):
        """#1 List user's session enrollments for specific course."""
        enrollment_id = sandbox.require_active_enrollment(userId, courseId)
        return _json(
            sandbox.rows(
                res.SESSION_ENROLLMENTS,
                page_request(request.query_params, paged=False),
                ["se.enrollment_id = ?"],
                [enrollment_id],
            )
        )

    @session_route(
        "/users/{userId}/enrollments/{courseId}/sessions/{sessionId}",
        response_model=models.SessionEnrollment,
        openapi_extra=models.status_doc(),
    )
    async def get_user_session_enrollment(
        userId: GuidPath, courseId: GuidPath, sessionId: GuidPath, request: Request
    ):
        """#2 Get user's session enrollment for specific course."""
        session_id = check_guid(sessionId, "sessionId")
        enrollment_id = sandbox.require_active_enrollment(userId, courseId)
        return _json(
            sandbox.one(
                res.SESSION_ENROLLMENTS,
                ["se.enrollment_id = ?", "se.session_id = ?"],
                [enrollment_id, session_id],
                "Session enrollment",
                page_request(request.query_params, paged=False),
            )
        )

    async def create_ilc_enrollment(
        userId: GuidPath,
        courseId: GuidPath,
        sessionId: GuidPath,
        reEnroll: ReEnroll = False,
        cancelSession: Annotated[bool, Query()] = False,
    ):
        """#3 Create ILC enrollment for user (with reEnroll / cancelSession)."""
        created = sandbox.create_enrollment(
            userId, courseId, re_enroll=reEnroll, session_id=sessionId, cancel_session=cancelSession
        )
        keys = ("userId", "courseId", "sessionId", "enrollmentId", "sessionEnrollmentId")
        return _json({k: created[k] for k in keys}, 201)

    for path in (
        "/users/{userId}/enrollments/{courseId}/session/{sessionId}",
        "/users/{userId}/enrollments/{courseId}/sessions/{sessionId}",
    ):
        app.post(
            path,
            tags=["Sessions"],
            status_code=201,
            response_model=models.IlcEnrollmentCreated,
            responses=ERRORS(400, 401, 404, 422),
            operation_id=f"create_ilc_enrollment_{path.split('/')[-2]}",
        )(create_ilc_enrollment)

    @session_route(
        "/courses/{courseId}/sessions/{sessionId}/enrollments",
        response_model=models.page_model("enrollments", models.SessionEnrollment),
        openapi_extra=models.paging_doc(),
    )
    async def list_session_enrollments(courseId: GuidPath, sessionId: GuidPath, request: Request):
        """#4 List an ILC's session enrollments."""
        course_id = sandbox.require_course(courseId)[0]
        session_id = check_guid(sessionId, "sessionId")
        if (
            conn.execute(
                "SELECT 1 FROM sessions WHERE id = ? AND course_id = ?", (session_id, course_id)
            ).fetchone()
            is None
        ):
            raise not_found("Session", session_id)
        return _json(
            sandbox.page(
                res.SESSION_ENROLLMENTS,
                page_request(request.query_params),
                ["se.session_id = ?"],
                [session_id],
            )
        )

    def activity_route(path: str, **kw):
        return app.get(path, tags=["Chapters and lessons"], responses=ERRORS(401, 404, 422), **kw)

    @activity_route(
        "/users/{userId}/enrollments/{courseId}/chapters",
        response_model=list[models.ChapterEnrollment],
        openapi_extra=models.status_doc(),
    )
    async def list_chapter_enrollments(userId: GuidPath, courseId: GuidPath, request: Request):
        """#5 List chapter enrollments for a specified course."""
        enrollment_id = user_enrollment(userId, courseId)
        return _json(
            sandbox.rows(
                res.CHAPTER_ENROLLMENTS,
                page_request(request.query_params, paged=False),
                ["ce.enrollment_id = ?"],
                [enrollment_id],
            )
        )

    @activity_route(
        "/users/{userId}/enrollments/{courseId}/chapters/{chapterId}",
        response_model=models.ChapterEnrollment,
        openapi_extra=models.status_doc(),
    )
    async def get_chapter_enrollment(
        userId: GuidPath, courseId: GuidPath, chapterId: GuidPath, request: Request
    ):
        """#6 Get chapter enrollment for a specified course."""
        chapter_id = check_guid(chapterId, "chapterId")
        enrollment_id = user_enrollment(userId, courseId)
        return _json(
            sandbox.one(
                res.CHAPTER_ENROLLMENTS,
                ["ce.enrollment_id = ?", "ce.chapter_id = ?"],
                [enrollment_id, chapter_id],
                "Chapter enrollment",
                page_request(request.query_params, paged=False),
            )
        )

    @activity_route(
        "/users/{userId}/enrollments/{courseId}/chapters/{chapterId}/lessons",
        response_model=list[models.LessonEnrollment],
        openapi_extra=models.status_doc(),
    )
    async def list_chapter_lesson_enrollments(
        userId: GuidPath, courseId: GuidPath, chapterId: GuidPath, request: Request
    ):
        """#19 List user's lesson enrollments from specific chapter."""
        chapter_id = check_guid(chapterId, "chapterId")
        enrollment_id = user_enrollment(userId, courseId)
        if (
            conn.execute(
                "SELECT 1 FROM chapter_enrollments WHERE enrollment_id = ? AND chapter_id = ?",
                (enrollment_id, chapter_id),
            ).fetchone()
            is None
        ):
            raise not_found("Chapter enrollment", chapter_id)
        return _json(
            sandbox.rows(
                res.LESSON_ENROLLMENTS,
                page_request(request.query_params, paged=False),
                ["le.enrollment_id = ?", "le.chapter_id = ?"],
                [enrollment_id, chapter_id],
            )
        )

    @activity_route(
        "/users/{userId}/enrollments/{courseId}/chapters/{chapterId}/lessons/{lessonId}",
        response_model=models.LessonEnrollment,
        openapi_extra=models.status_doc(),
    )
    async def get_chapter_lesson_enrollment(
        userId: GuidPath, courseId: GuidPath, chapterId: GuidPath, lessonId: GuidPath, request: Request
    ):
        """#16 Get lesson enrollment."""
        chapter_id, lesson_id = check_guid(chapterId, "chapterId"), check_guid(lessonId, "lessonId")
        enrollment_id = user_enrollment(userId, courseId)
        return _json(
            sandbox.one(
                res.LESSON_ENROLLMENTS,
                ["le.enrollment_id = ?", "le.chapter_id = ?", "le.lesson_id = ?"],
                [enrollment_id, chapter_id, lesson_id],
                "Lesson enrollment",
                page_request(request.query_params, paged=False),
            )
        )

    @activity_route(
        "/users/{userId}/enrollments/{courseId}/lessons",
        response_model=list[models.LessonEnrollment],
        openapi_extra=models.status_doc(),
    )
    async def list_lesson_enrollments(userId: GuidPath, courseId: GuidPath, request: Request):
        """#17 List user's lesson enrollments from specific course."""
        enrollment_id = user_enrollment(userId, courseId)
        return _json(
            sandbox.rows(
                res.LESSON_ENROLLMENTS,
                page_request(request.query_params, paged=False),
                ["le.enrollment_id = ?"],
                [enrollment_id],
            )
        )

    @activity_route(
        "/users/{userId}/enrollments/{courseId}/lessons/{lessonId}",
        response_model=models.LessonEnrollment,
        openapi_extra=models.status_doc(),
    )
    async def get_lesson_enrollment(
        userId: GuidPath, courseId: GuidPath, lessonId: GuidPath, request: Request
    ):
        """#18 Get user's lesson enrollment."""
        lesson_id = check_guid(lessonId, "lessonId")
        enrollment_id = user_enrollment(userId, courseId)
        return _json(
            sandbox.one(
                res.LESSON_ENROLLMENTS,
                ["le.enrollment_id = ?", "le.lesson_id = ?"],
                [enrollment_id, lesson_id],
                "Lesson enrollment",
                page_request(request.query_params, paged=False),
            )
        )

    @activity_route(
        "/courses/{courseId}/lessons/{lessonId}/enrollments",
        response_model=models.page_model("lessonEnrollments", models.LessonEnrollment),
        openapi_extra=models.paging_doc(deprecated=True),
    )
    async def list_course_lesson_enrollments(courseId: GuidPath, lessonId: GuidPath, request: Request):
        """#15 Lists enrollments for a lesson."""
        course_id = sandbox.require_course(courseId)[0]
        lesson_id = check_guid(lessonId, "lessonId")
        if (
            conn.execute(
                "SELECT 1 FROM lessons WHERE id = ? AND course_id = ?", (lesson_id, course_id)
            ).fetchone()
            is None
        ):
            raise not_found("Lesson", lesson_id)
        ensure_course_activities(conn, course_id)
        return _json(
            sandbox.page(
                res.LESSON_ENROLLMENTS, page_request(request.query_params), ["le.lesson_id = ?"], [lesson_id]
            )
        )

    attempts = app.state.attempts = _attempt_routes(app, sandbox, user_enrollment)
    return attempts


def _attempt_routes(app: FastAPI, sandbox: Sandbox, user_enrollment):
    from absorb_sandbox.attempts import AttemptService

    attempts = AttemptService(sandbox)

    @app.get(
        "/users/{userId}/enrollments/{courseId}/lessons/{lessonId}/attempts",
        tags=["Attempts"],
        response_model=list[models.Attempt],
        responses=ERRORS(401, 404, 422),
    )
    async def list_attempts(userId: GuidPath, courseId: GuidPath, lessonId: GuidPath):
        """#20 List user's attempts for specific lesson."""
        enrollment_id = user_enrollment(userId, courseId)
        return _json(attempts.list(enrollment_id, check_guid(lessonId, "lessonId")))

    @app.post(
        "/users/{userId}/enrollments/{courseId}/lessons/{lessonId}/startattempt",
        tags=["Attempts"],
        response_model=models.AttemptStarted,
        responses=ERRORS(401, 404, 422),
    )
    async def start_attempt(userId: GuidPath, courseId: GuidPath, lessonId: GuidPath):
        """#21 Start attempt for active lesson enrollment."""
        enrollment_id = user_enrollment(userId, courseId)
        return _json(attempts.start(enrollment_id, check_guid(lessonId, "lessonId")))

    @app.post(
        "/attempts/{attemptId}/finish",
        tags=["Attempts"],
        response_model=models.AttemptFinished,
        responses=ERRORS(400, 401, 404, 422),
        openapi_extra=models.body_doc(models.FinishAttempt, required=True),
    )
    async def finish_attempt(attemptId: GuidPath, request: Request):
        """#22 Finish attempt."""
        body = _object_body(await _json_body(request))
        return _json(attempts.finish(check_guid(attemptId, "attemptId"), body))

    @app.post(
        "/users/{userId}/enrollments/{courseId}/lessons/{lessonId}/attempts/{attemptId}/finish",
        tags=["Attempts"],
        response_model=models.AttemptFinished,
        responses=ERRORS(400, 401, 404, 422),
        openapi_extra=models.body_doc(models.FinishAttempt, required=True),
    )
    async def finish_user_attempt(
        userId: GuidPath, courseId: GuidPath, lessonId: GuidPath, attemptId: GuidPath, request: Request
    ):
        """#23 Finish a specific user's lesson attempt."""
        enrollment_id = user_enrollment(userId, courseId)
        body = _object_body(await _json_body(request))
        return _json(
            attempts.finish(
                check_guid(attemptId, "attemptId"),
                body,
                enrollment_id=enrollment_id,
                lesson_id=check_guid(lessonId, "lessonId"),
            )
        )

    return attempts


# --- admin ------------------------------------------------------------------------------------------------


def _add_admin_routes(
    app: FastAPI,
    config: SandboxConfig,
    sandbox: Sandbox,
    tokens: TokenStore,
    stats: Stats,
    faults: FaultInjector,
) -> None:
    admin = {"include_in_schema": False}

    @app.get("/_sandbox/health", **admin)
    async def health():
        return _json({"status": "ok", "worker": os.getpid()})

    @app.get("/_sandbox/stats", **admin)
    async def get_stats():
        return _json(stats.snapshot())

    @app.post("/_sandbox/stats/reset", **admin)
    async def reset_stats():
        stats.reset()
        return _json(stats.snapshot())

    @app.post("/_sandbox/reset", **admin)
    async def reset():
        """Back to the seeded state (same seed, same ids), stats zeroed, tokens dropped."""
        seed_name = store.get_meta(sandbox.conn, "seed") or config.seed
        anchor_text = store.get_meta(sandbox.conn, "anchor")
        anchor = datetime.fromisoformat(anchor_text) if anchor_text else None
        store.wipe(sandbox.conn)
        counts = seeding.seed_database(sandbox.conn, seed_name, api_username=config.username, anchor=anchor)
        tokens.reload()
        stats.reset()
        return _json({"seed": seed_name, "counts": counts})

    @app.post("/_sandbox/faults", **admin)
    async def set_faults(body: Annotated[Any, Body()] = None):
        try:
            spec = parse_spec(body)
        except FaultSpecError as exc:
            raise ApiError(422, str(exc)) from None
        faults.configure(spec)
        return _json(spec.describe())

    @app.get("/_sandbox/faults", **admin)
    async def get_faults():
        return _json(faults.current().describe())

    @app.post("/_sandbox/progress", **admin)
    async def progress(body: Annotated[dict | None, Body()] = None):
        body = body or {}
        fraction, seed_value = body.get("fraction", 0.2), body.get("seed", 0)
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not isinstance(seed_value, int)
        ):
            raise ApiError(422, "fraction must be a number and seed an integer.")
        return _json(sandbox.progress(float(fraction), seed_value))
