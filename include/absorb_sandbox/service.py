"""What the sandbox does, independent of HTTP: reads, paging and the enrollment rules.

Every method raises ``ApiError`` for a client mistake. Writes run in one transaction each, so a
refused request (e.g. an unenroll naming an unknown id) changes nothing.
"""

from __future__ import annotations

import random
import re
import sqlite3
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from absorb_sandbox import resources as res
from absorb_sandbox.errors import ApiError, invalid_guid, not_found
from absorb_sandbox.odata import FilterError, compile_filter, compile_sort
from absorb_sandbox.timeutil import normalise_datetime, now_iso

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_OFFSET = 65535
ENROLLMENT_STATUSES = frozenset(range(13))
ATTEMPT_STATUSES = frozenset({1, 3, 5})
COMPLETE, IN_PROGRESS, NOT_STARTED, FAILED = 3, 1, 0, 5
ALREADY_ENROLLED = "User is already enrolled in this course (an active enrollment exists); use reEnroll=true."
INACTIVE_USER = "The user is inactive (activeStatus 1) and cannot be enrolled; reactivate the user first."
MULTI_SESSION = "Multi-Session ILCs are not supported."

# Settable fields of create-or-update (seed) plus dateDue (documented deviation).
SETTABLE_FIELDS = {
    "status": ("status", "status"),
    "dateCompleted": ("date_completed", "datetime"),
    "dateExpires": ("date_expires", "datetime"),
    "courseVersionId": ("course_version_id", "guid"),
    "acceptedTermsAndConditions": ("accepted_terms", "bool"),
    "enrollmentKeyId": ("enrollment_key_id", "guid"),
    "credits": ("credits", "number"),
    "score": ("score", "number"),
    "dateDue": ("date_due", "datetime"),
}
# Settable fields whose column is NOT NULL: a JSON null means "not given" (the create default,
# or unchanged on update) rather than a NULL that the store would refuse.
NULL_MEANS_ABSENT = frozenset({"acceptedTermsAndConditions"})


def check_guid(value: str, name: str) -> str:
    """The lower-case GUID, or a 422 'Invalid format provided for <name>'."""
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise invalid_guid(name)
    return value.lower()


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class PageRequest:
    limit: int
    page: int
    filter: str | None
    sort: str | None
    status: int | None
    modified_since: str | None


def _int_param(value: str, name: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except (ValueError, AttributeError):
        raise ApiError(
            422, f"Invalid value provided for {name}: must be an integer.", meta={"field": name}
        ) from None
    if number < low or number > high:
        raise ApiError(422, f"{name} must be between {low} and {high}.", meta={"field": name})
    return number


def page_request(params: Mapping[str, str], *, paged: bool = True) -> PageRequest:
    """Reads ``_limit``/``_offset`` (or deprecated ``limit``/``offset``), ``_filter``, ``_sort``,
    ``status`` and ``modifiedSince``; bad values are a 422."""
    limit, page = DEFAULT_LIMIT, 0
    if paged:
        raw_limit = params.get("_limit", params.get("limit"))
        raw_page = params.get("_offset", params.get("offset"))
        if raw_limit is not None:
            limit = _int_param(raw_limit, "_limit", 1, MAX_LIMIT)
        if raw_page is not None:
            page = _int_param(raw_page, "_offset", 0, MAX_OFFSET)
    status = params.get("status")
    status_value = _int_param(status, "status", 0, 12) if status not in (None, "") else None
    since = params.get("modifiedSince")
    since_value = None
    if since not in (None, ""):
        try:
            since_value = normalise_datetime(since)
        except ValueError:
            raise ApiError(
                422, "Invalid format provided for modifiedSince", meta={"field": "modifiedSince"}
            ) from None
    text_filter = params.get("_filter") if paged else None
    text_sort = params.get("_sort") if paged else None
    return PageRequest(limit, page, text_filter or None, text_sort or None, status_value, since_value)


PAGING_MODES = ("keyset", "offset")


@dataclass
class QueryMemo:
    """What one process remembers about one listing query (resource, WHERE, ORDER BY)."""

    total: int | None = None
    # (page size, page index) -> key (rowid) of the last row of that page: the seek point of
    # the page after it. A small LRU: a walk needs only the page before.
    ends: OrderedDict[tuple[int, int], int] = field(default_factory=OrderedDict)

    MAX_ENDS = 64

    def remember_end(self, limit: int, page: int, key: int) -> None:
        self.ends[(limit, page)] = key
        self.ends.move_to_end((limit, page))
        while len(self.ends) > self.MAX_ENDS:
            self.ends.popitem(last=False)


class PageCache:
    """Counts and page boundaries of recent listing queries, valid for one database generation.

    The generation is ``(PRAGMA data_version, total_changes)`` of the process's connection:
    the first changes whenever *another* connection (another worker process, an hr-feed
    export...) commits to the database, the second whenever this one writes. Any write anywhere
    therefore empties the cache before the next page is served, so a cached count or seek point
    is only ever used on the data it was computed from, and pages stay identical to
    ``LIMIT/OFFSET`` ones.
    """

    MAX_QUERIES = 256

    def __init__(self) -> None:
        self.generation: tuple[int, int] | None = None
        self.queries: OrderedDict[tuple, QueryMemo] = OrderedDict()

    def memo(self, generation: tuple[int, int], key: tuple) -> QueryMemo:
        if generation != self.generation:
            self.queries.clear()
            self.generation = generation
        memo = self.queries.get(key)
        if memo is None:
            memo = self.queries[key] = QueryMemo()
            while len(self.queries) > self.MAX_QUERIES:
                self.queries.popitem(last=False)
        else:
            self.queries.move_to_end(key)
        return memo


class Sandbox:
    """The simulated portal over one SQLite connection (used from the event loop thread only).

    ``paging="keyset"`` (default) serves the page after a page it served last as a keyset seek
    (``WHERE key > last ORDER BY key LIMIT n``), other pages with ``LIMIT/OFFSET`` (walking only
    the key index when the filter allows), and caches ``totalItems`` per query; ``"offset"``
    is the plain ``COUNT(*)`` + ``LIMIT/OFFSET`` of every page (for comparisons). Both give the
    same bytes. ``on_paging(kind)`` is told how each page was served (stats).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        paging: str = "keyset",
        on_paging: Callable[[str], None] | None = None,
    ):
        if paging not in PAGING_MODES:
            raise ValueError(f"paging must be one of {', '.join(PAGING_MODES)}, got {paging!r}")
        self.conn = conn
        self.paging = paging
        self.cache = PageCache()
        self._on_paging = on_paging or (lambda _kind: None)

    # --- plumbing -----------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[tuple[int, int]]:
        """A read transaction (one consistent view of the data) and the data's generation."""
        self.conn.execute("BEGIN")
        try:
            version = self.conn.execute("PRAGMA data_version").fetchone()[0]
            yield version, self.conn.total_changes
        finally:
            self.conn.execute("COMMIT")

    def _one(self, sql: str, params: Iterable = ()) -> tuple | None:
        return self.conn.execute(sql, tuple(params)).fetchone()

    # --- generic reads ------------------------------------------------------------------------------

    def _where(
        self, resource: res.Resource, base: list[str], params: list, request: PageRequest
    ) -> tuple[str, list]:
        clauses, values = list(base), list(params)
        if request.status is not None and resource.status_sql:
            clauses.append(f"{resource.status_sql} = ?")
            values.append(request.status)
        if request.modified_since and resource.edited_sql:
            clauses.append(f"{resource.edited_sql} >= ?")
            values.append(request.modified_since)
        if request.filter:
            try:
                sql, filter_params = compile_filter(request.filter, resource.fields)
            except FilterError as exc:
                raise ApiError(422, str(exc), meta={"field": "_filter"}) from None
            clauses.append(sql)
            values.extend(filter_params)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", values

    def _order(self, resource: res.Resource, request: PageRequest) -> str:
        if not request.sort:
            return resource.default_order
        try:
            return f"{compile_sort(request.sort, resource.fields)}, {resource.default_order}"
        except FilterError as exc:
            raise ApiError(422, str(exc), meta={"field": "_sort"}) from None

    def page(
        self,
        resource: res.Resource,
        request: PageRequest,
        base: list[str] | None = None,
        params: list | None = None,
    ) -> dict | bytes:
        """The paged envelope ``{totalItems, returnedItems, limit, offset, <key>}``; as ready JSON
        bytes when the resource lets SQLite build its JSON (the large enrollment pages)."""
        where, values = self._where(resource, base or [], params or [], request)
        order = self._order(resource, request)
        if self.paging == "offset":
            total = self.conn.execute(f"SELECT COUNT(*) FROM {resource.from_sql}{where}", values).fetchone()[
                0
            ]
            page_sql = f"{resource.select()}{where} ORDER BY {order} LIMIT ? OFFSET ?"
            page_values = [*values, request.limit, request.page * request.limit]
            return self._envelope(resource, request, total, page_sql, page_values, None)[0]
        with self.snapshot() as generation:
            memo = self.cache.memo(generation, (resource.key, resource.from_sql, where, tuple(values), order))
            if memo.total is None:
                count_sql = f"SELECT COUNT(*) FROM {resource.count_from(where)}{where}"
                memo.total = self.conn.execute(count_sql, values).fetchone()[0]
                self._on_paging("count_computed")
            else:
                self._on_paging("count_cached")
            key = resource.keyset_column if not request.sort else None
            page_sql, page_values, kind = self._page_query(resource, request, where, values, order, key, memo)
            body, last_key = self._envelope(resource, request, memo.total, page_sql, page_values, key)
            if last_key is not None:
                memo.remember_end(request.limit, request.page, last_key)
        if kind:
            self._on_paging(kind)
        return body

    def _page_query(
        self,
        resource: res.Resource,
        request: PageRequest,
        where: str,
        values: list,
        order: str,
        key: str | None,
        memo: QueryMemo,
    ) -> tuple[str, list, str | None]:
        """(SQL, parameters, how) of one page: a keyset seek when the page before was served
        (or for page 0), else LIMIT/OFFSET; ``how`` is None when the page is out of range."""
        if request.page * request.limit >= memo.total:
            return "", [], None
        columns = resource.columns if key is None else f"{resource.columns}, {key} AS k_"
        select = f"SELECT {columns} FROM {resource.from_sql}"
        after = memo.ends.get((request.limit, request.page - 1)) if key and request.page else None
        if key and (request.page == 0 or after is not None):
            seek = "" if after is None else f"{' AND' if where else ' WHERE'} {key} > ?"
            sql = f"{select}{where}{seek} ORDER BY {order} LIMIT ?"
            return (
                sql,
                [*values, *([] if after is None else [after]), request.limit],
                ("first" if after is None else "keyset"),
            )
        offset = request.page * request.limit
        if key and resource.count_from(where) != resource.from_sql:
            # A jump: walk only the main table's index to the page, then join its rows.
            inner = f"SELECT {key} FROM {resource.base_from}{where} ORDER BY {order} LIMIT ? OFFSET ?"
            sql = f"{select} WHERE {key} IN ({inner}) ORDER BY {order}"
        else:
            sql = f"{select}{where} ORDER BY {order} LIMIT ? OFFSET ?"
        return sql, [*values, request.limit, offset], "offset"

    def _envelope(
        self,
        resource: res.Resource,
        request: PageRequest,
        total: int,
        page_sql: str,
        page_values: list,
        key: str | None,
    ) -> tuple[dict | bytes, int | None]:
        """The page's envelope and the key of its last row (None without a key or rows)."""
        in_range = bool(page_sql) and request.page * request.limit < total
        last_key = None
        if resource.json_sql:
            items, returned = "[]", 0
            if in_range:
                last = ", MAX(k_)" if key else ""
                items, returned, *rest = self.conn.execute(
                    f"SELECT json_group_array({resource.json_sql}), COUNT(*){last} FROM ({page_sql})",
                    page_values,
                ).fetchone()
                last_key = rest[0] if rest else None
            head = (
                f'{{"totalItems":{total},"returnedItems":{returned},"limit":{request.limit},'
                f'"offset":{request.page},"{resource.key}":'
            )
            return head.encode() + items.encode() + b"}", last_key
        rows = self.conn.execute(page_sql, page_values).fetchall() if in_range else []
        if key and rows:
            last_key = rows[-1][-1]
        serialize = resource.serialize
        return {
            "totalItems": total,
            "returnedItems": len(rows),
            "limit": request.limit,
            "offset": request.page,
            resource.key: [serialize(r) for r in rows],
        }, last_key

    def rows(self, resource: res.Resource, request: PageRequest, base: list[str], params: list) -> list[dict]:
        """Every matching row as a bare array (for the operations the seed shows as arrays)."""
        where, values = self._where(resource, base, params, request)
        rows = self.conn.execute(f"{resource.select()}{where} ORDER BY {resource.default_order}", values)
        return [resource.serialize(r) for r in rows]

    def one(
        self,
        resource: res.Resource,
        base: list[str],
        params: list,
        what: str,
        request: PageRequest | None = None,
    ) -> dict:
        where, values = self._where(
            resource, base, params, request or PageRequest(1, 0, None, None, None, None)
        )
        row = self._one(f"{resource.select()}{where} ORDER BY {resource.default_order} LIMIT 1", values)
        if row is None:
            raise not_found(what)
        return resource.serialize(row)

    # --- existence checks ---------------------------------------------------------------------------

    def require_user(self, user_id: str) -> str:
        user_id = check_guid(user_id, "userId")
        if self._one("SELECT 1 FROM users WHERE id = ?", (user_id,)) is None:
            raise not_found("User", user_id)
        return user_id

    def require_course(self, course_id: str) -> tuple[str, str, bool]:
        """(id, courseType, multi_session) of an existing course."""
        course_id = check_guid(course_id, "courseId")
        row = self._one("SELECT id, course_type, multi_session FROM courses WHERE id = ?", (course_id,))
        if row is None:
            raise not_found("Course", course_id)
        return row[0], row[1], bool(row[2])

    def user_id_for(self, username: str) -> str:
        row = self._one("SELECT id FROM users WHERE username = ?", (username,))
        if row is None:
            raise ApiError(401, "The authenticated user no longer exists.")
        return row[0]

    def active_enrollment_id(self, user_id: str, course_id: str) -> str | None:
        row = self._one(
            "SELECT id FROM enrollments WHERE user_id = ? AND course_id = ? AND is_active = 1 "
            "ORDER BY rowid DESC LIMIT 1",
            (user_id, course_id),
        )
        return row[0] if row else None

    def require_active_enrollment(self, user_id: str, course_id: str) -> str:
        user_id = self.require_user(user_id)
        course_id = self.require_course(course_id)[0]
        enrollment_id = self.active_enrollment_id(user_id, course_id)
        if enrollment_id is None:
            raise not_found("Enrollment")
        return enrollment_id

    # --- course enrollments: reads ------------------------------------------------------------------

    def get_enrollment(self, enrollment_id: str) -> dict:
        enrollment_id = check_guid(enrollment_id, "id")
        return self.one(res.ENROLLMENTS, ["e.id = ?"], [enrollment_id], "Enrollment")

    def user_course_enrollment(self, user_id: str, course_id: str, request: PageRequest) -> dict:
        user_id = self.require_user(user_id)
        course_id = self.require_course(course_id)[0]
        where = ["e.user_id = ?", "e.course_id = ?", "e.is_active = 1"]
        return self.one(res.ENROLLMENTS, where, [user_id, course_id], "Enrollment", request)

    def bulk_student_courses(self, user_ids: list[str], course_ids: list[str]) -> list[dict]:
        if not user_ids:
            raise ApiError(400, "Request requires at least 1 user ID (userIds).", meta={"field": "userIds"})
        if len(user_ids) > 1000 or len(course_ids) > 1000:
            raise ApiError(422, "At most 1000 userIds and 1000 courseIds per request.")
        users = [check_guid(u, "userIds") for u in user_ids]
        courses = [check_guid(c, "courseIds") for c in course_ids]
        base, params = [], []
        if users:
            base.append(f"e.user_id IN ({', '.join('?' * len(users))})")
            params += users
        if courses:
            base.append(f"e.course_id IN ({', '.join('?' * len(courses))})")
            params += courses
        return self.rows(res.ENROLLMENTS, PageRequest(0, 0, None, None, None, None), base, params)

    # --- course enrollments: writes -----------------------------------------------------------------

    def create_enrollment(
        self,
        user_id: str,
        course_id: str,
        *,
        re_enroll: bool = False,
        session_id: str | None = None,
        cancel_session: bool = False,
        fields: dict | None = None,
    ) -> dict:
        """#7/#3/#25: enroll a user; an active enrollment is a 422 unless ``re_enroll``; an inactive
        user is a 422 (sandbox choice: the API reference does not say, docs/sandbox-users.md)."""
        user_id = self.require_user(user_id)
        if self._one("SELECT active_status FROM users WHERE id = ?", (user_id,))[0] == 1:
            raise ApiError(422, INACTIVE_USER, meta={"userId": user_id})
        course_id, course_type, multi_session = self.require_course(course_id)
        if multi_session:
            raise ApiError(422, MULTI_SESSION, meta={"courseId": course_id})
        if session_id is not None:
            session_id = check_guid(session_id, "sessionId")
            if course_type != "InstructorLedCourse":
                raise ApiError(
                    422, "The course is not an instructor led course.", meta={"courseId": course_id}
                )
            if (
                self._one("SELECT 1 FROM sessions WHERE id = ? AND course_id = ?", (session_id, course_id))
                is None
            ):
                raise not_found("Session", session_id)
        with self.transaction():
            existing = self.active_enrollment_id(user_id, course_id)
            if existing and cancel_session and session_id:
                return self._move_session(existing, user_id, course_id, session_id)
            if existing and not re_enroll:
                raise ApiError(422, ALREADY_ENROLLED, meta={"enrollmentId": existing})
            now = now_iso()
            if existing:
                self.conn.execute(
                    "UPDATE enrollments SET is_active = 0, date_edited = ? WHERE id = ?", (now, existing)
                )
            enrollment_id = new_id()
            values = dict(fields or {})
            self.conn.execute(
                "INSERT INTO enrollments (id, user_id, course_id, status, progress, score, time_spent_ticks, "
                "date_added, date_edited, is_active, activities_ready) VALUES (?, ?, ?, 0, 0, NULL, 0, ?, ?, 1, 0)",
                (enrollment_id, user_id, course_id, now, now),
            )
            if values:
                self._apply_settable(enrollment_id, values, now)
            result = {"enrollmentId": enrollment_id, "courseId": course_id, "userId": user_id}
            if course_type == "InstructorLedCourse":
                result["sessionEnrollmentId"] = self._create_session_enrollment(
                    enrollment_id, user_id, course_id, session_id, now
                )
                result["sessionId"] = (
                    session_id
                    or self._one(
                        "SELECT session_id FROM session_enrollments WHERE id = ?",
                        (result["sessionEnrollmentId"],),
                    )[0]
                )
            else:
                from absorb_sandbox.activities import ensure_activities

                ensure_activities(self.conn, enrollment_id)
        return result

    def _create_session_enrollment(
        self, enrollment_id: str, user_id: str, course_id: str, session_id: str | None, now: str
    ) -> str:
        if session_id is None:
            row = self._one(
                "SELECT id FROM sessions WHERE course_id = ? ORDER BY rowid LIMIT 1", (course_id,)
            )
            if row is None:
                raise ApiError(422, "The instructor led course has no session to enroll into.")
            session_id = row[0]
        session_enrollment_id = new_id()
        self.conn.execute(
            "INSERT INTO session_enrollments VALUES (?, ?, ?, ?, ?, 0, 0, NULL, 0, ?, NULL, NULL, ?)",
            (session_enrollment_id, enrollment_id, session_id, user_id, course_id, now, now),
        )
        return session_enrollment_id

    def _move_session(self, enrollment_id: str, user_id: str, course_id: str, session_id: str) -> dict:
        now = now_iso()
        current = self._one(
            "SELECT id, session_id FROM session_enrollments WHERE enrollment_id = ?", (enrollment_id,)
        )
        if current and current[1] == session_id:
            session_enrollment_id = current[0]
        else:
            self.conn.execute("DELETE FROM session_enrollments WHERE enrollment_id = ?", (enrollment_id,))
            session_enrollment_id = self._create_session_enrollment(
                enrollment_id, user_id, course_id, session_id, now
            )
            self.conn.execute("UPDATE enrollments SET date_edited = ? WHERE id = ?", (now, enrollment_id))
        return {
            "userId": user_id,
            "courseId": course_id,
            "sessionId": session_id,
            "enrollmentId": enrollment_id,
            "sessionEnrollmentId": session_enrollment_id,
        }

    def create_or_update_enrollment(
        self, user_id: str, body: dict, *, re_enroll: bool = False
    ) -> tuple[int, dict]:
        """#9: update the settable fields of the active enrollment, or create one. (status, body)."""
        user_id = self.require_user(user_id)
        course_raw = body.get("courseId")
        if not course_raw:
            raise ApiError(422, "courseId is required.", meta={"field": "courseId"})
        course_id, _, multi_session = self.require_course(course_raw)
        if multi_session:
            raise ApiError(422, MULTI_SESSION, meta={"courseId": course_id})
        values = validate_settable(body)
        existing = self.active_enrollment_id(user_id, course_id)
        if existing is None or re_enroll:
            return 201, self.create_enrollment(user_id, course_id, re_enroll=re_enroll, fields=values)
        with self.transaction():
            self._apply_settable(existing, values, now_iso())
        return 200, {"enrollmentId": existing, "courseId": course_id, "userId": user_id}

    def _apply_settable(self, enrollment_id: str, values: dict, now: str) -> bool:
        """Write only the fields that differ (so a repeated call changes nothing, not even dateEdited)."""
        columns = [SETTABLE_FIELDS[k][0] for k in values]
        if not columns:
            return False
        current = self._one(
            f"SELECT {', '.join(columns)}, status, date_completed FROM enrollments WHERE id = ?",
            (enrollment_id,),
        )
        changes = {
            col: values[key]
            for col, key, old in zip(columns, values, current, strict=False)
            if old != values[key]
        }
        if not changes:
            return False
        if changes.get("status") == COMPLETE:
            changes.setdefault("progress", 100.0)
            if not current[-1] and "date_completed" not in changes:
                changes["date_completed"] = now
        changes["date_edited"] = now
        assignments = ", ".join(f"{col} = ?" for col in changes)
        self.conn.execute(
            f"UPDATE enrollments SET {assignments} WHERE id = ?", [*changes.values(), enrollment_id]
        )
        return True

    def unenroll(self, body: object) -> int:
        """#11: remove the enrollments; any bad or unknown id refuses the whole request."""
        if not isinstance(body, list):
            raise ApiError(400, "Request body must be a JSON array of enrollment IDs.")
        if not body:
            raise ApiError(400, "Request requires at least 1 enrollment ID.")
        if len(body) > 1000:
            raise ApiError(422, "At most 1000 enrollment IDs per request.")
        bad = [str(v) for v in body if not isinstance(v, str) or not GUID_RE.match(v)]
        if bad:
            raise ApiError(
                422,
                "Invalid format provided for enrollmentIds",
                validations=[f"Invalid format provided for enrollment ID '{v}'" for v in bad[:50]],
            )
        ids = list(dict.fromkeys(v.lower() for v in body))
        placeholders = ", ".join("?" * len(ids))
        with self.transaction():
            found = {
                r[0]
                for r in self.conn.execute(f"SELECT id FROM enrollments WHERE id IN ({placeholders})", ids)
            }
            missing = [i for i in ids if i not in found]
            if missing:
                raise ApiError(
                    422,
                    "Enrollment IDs not found; nothing was unenrolled.",
                    validations=[f"Enrollment '{i}' was not found." for i in missing[:50]],
                    meta={"missing": str(len(missing))},
                )
            for table in ("attempts", "lesson_enrollments", "chapter_enrollments", "session_enrollments"):
                column = (
                    "lesson_enrollment_id IN (SELECT id FROM lesson_enrollments WHERE enrollment_id IN "
                    f"({placeholders}))"
                    if table == "attempts"
                    else f"enrollment_id IN ({placeholders})"
                )
                self.conn.execute(f"DELETE FROM {table} WHERE {column}", ids)
            self.conn.execute(f"DELETE FROM enrollments WHERE id IN ({placeholders})", ids)
        return len(ids)

    # --- simulation -----------------------------------------------------------------------------------

    def progress(self, fraction: float, seed: int) -> dict:
        """Advance a deterministic ``fraction`` of incomplete active enrollments; about a third complete."""
        if not 0 <= fraction <= 1:
            raise ApiError(422, "fraction must be between 0 and 1.")
        rng = random.Random(seed)
        rows = self.conn.execute(
            "SELECT id, status, progress, date_started FROM enrollments "
            "WHERE is_active = 1 AND status IN (0, 1) ORDER BY rowid"
        ).fetchall()
        chosen = [r for r in rows if rng.random() < fraction]
        advanced = completed = 0
        with self.transaction():
            for enrollment_id, status, progress, _started in chosen:
                now = now_iso()
                ticks = rng.randint(300, 7200) * 10_000_000
                if (status == IN_PROGRESS and rng.random() < 0.5) or rng.random() < 0.25:
                    self.conn.execute(
                        "UPDATE enrollments SET status = 3, progress = 100, score = ?, date_started = COALESCE("
                        "date_started, ?), date_completed = ?, time_spent_ticks = time_spent_ticks + ?, "
                        "date_edited = ? WHERE id = ?",
                        (float(rng.randint(70, 100)), now, now, ticks, now, enrollment_id),
                    )
                    self.conn.execute(
                        "UPDATE lesson_enrollments SET status = 3, progress = 100, date_completed = ?, date_edited = ?, "
                        "date_started = COALESCE(date_started, ?) WHERE enrollment_id = ? AND status != 3",
                        (now, now, now, enrollment_id),
                    )
                    self.conn.execute(
                        "UPDATE chapter_enrollments SET status = 3, progress = 100, date_completed = ?, "
                        "date_edited = ?, date_started = COALESCE(date_started, ?) WHERE enrollment_id = ? "
                        "AND status != 3",
                        (now, now, now, enrollment_id),
                    )
                    completed += 1
                else:
                    new_progress = min(95.0, float(progress or 0) + rng.randint(10, 40))
                    self.conn.execute(
                        "UPDATE enrollments SET status = 1, progress = ?, date_started = COALESCE(date_started, ?), "
                        "time_spent_ticks = time_spent_ticks + ?, date_edited = ? WHERE id = ?",
                        (new_progress, now, ticks, now, enrollment_id),
                    )
                    advanced += 1
        return {"eligible": len(rows), "advanced": advanced, "completed": completed}


def validate_settable(body: dict) -> dict:
    """The settable fields present in a create-or-update body, normalised; bad values are a 422."""
    values, problems = {}, []
    for key, (_, kind) in SETTABLE_FIELDS.items():
        if key not in body:
            continue
        value = body[key]
        if value is None:
            if key == "status":
                problems.append("status cannot be null.")
            elif key not in NULL_MEANS_ABSENT:
                values[key] = None
            continue
        try:
            values[key] = _coerce(value, kind)
        except (TypeError, ValueError):
            problems.append(f"Invalid value provided for {key}.")
    if problems:
        raise ApiError(422, problems[0], validations=problems)
    return values


def _coerce(value, kind: str):
    if kind == "status":
        if isinstance(value, bool) or not isinstance(value, int) or value not in ENROLLMENT_STATUSES:
            raise ValueError("status")
        return value
    if kind == "datetime":
        if not isinstance(value, str):
            raise TypeError("datetime")
        return normalise_datetime(value)
    if kind == "guid":
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise ValueError("guid")
        return value.lower()
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError("bool")
        return int(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("number")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("number")
        return float(value)
    raise TypeError(kind)
