"""Lesson attempts: start, finish, and the roll-up of a finished attempt to lesson, chapter and course."""

from __future__ import annotations

import uuid

from absorb_sandbox import resources as res
from absorb_sandbox.errors import ApiError, not_found
from absorb_sandbox.service import ATTEMPT_STATUSES, COMPLETE, FAILED, IN_PROGRESS, Sandbox
from absorb_sandbox.timeutil import TICKS_PER_SECOND, normalise_datetime, now_iso, parse_datetime


class AttemptService:
    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.conn = sandbox.conn

    def _lesson_enrollment(self, enrollment_id: str, lesson_id: str) -> tuple:
        row = self.conn.execute(
            "SELECT id, user_id, course_id, status, chapter_enrollment_id FROM lesson_enrollments "
            "WHERE enrollment_id = ? AND lesson_id = ?",
            (enrollment_id, lesson_id),
        ).fetchone()
        if row is None:
            raise not_found("Lesson enrollment", lesson_id)
        return row

    def list(self, enrollment_id: str, lesson_id: str) -> list[dict]:
        lesson_enrollment_id = self._lesson_enrollment(enrollment_id, lesson_id)[0]
        rows = self.conn.execute(
            f"SELECT {res.ATTEMPT_COLUMNS} FROM attempts a WHERE a.lesson_enrollment_id = ? ORDER BY a.rowid",
            (lesson_enrollment_id,),
        )
        return [res.serialize_attempt(r) for r in rows]

    def start(self, enrollment_id: str, lesson_id: str) -> dict:
        """#21: a new in-progress attempt; the lesson (and course) move to InProgress if not started."""
        lesson_enrollment_id, user_id, course_id, _status, chapter_enrollment_id = self._lesson_enrollment(
            enrollment_id, lesson_id
        )
        attempt_id = str(uuid.uuid4())
        now = now_iso()
        with self.sandbox.transaction():
            self.conn.execute(
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, 1, NULL, 0, ?, NULL)",
                (attempt_id, lesson_enrollment_id, user_id, course_id, lesson_id, now),
            )
            self.conn.execute(
                "UPDATE lesson_enrollments SET attempts = attempts + 1, last_attempt = ?, date_edited = ?, "
                "status = CASE WHEN status = 0 THEN 1 ELSE status END, date_started = COALESCE(date_started, ?) "
                "WHERE id = ?",
                (now, now, now, lesson_enrollment_id),
            )
            for table, key in (
                ("chapter_enrollments", chapter_enrollment_id),
                ("enrollments", enrollment_id),
            ):
                self.conn.execute(
                    f"UPDATE {table} SET status = 1, date_started = COALESCE(date_started, ?), date_edited = ? "
                    "WHERE id = ? AND status = 0",
                    (now, now, key),
                )
        return {"attemptId": attempt_id, "courseId": course_id, "userId": user_id}

    def finish(
        self, attempt_id: str, body: dict, *, enrollment_id: str | None = None, lesson_id: str | None = None
    ) -> dict:
        """#22/#23: close an attempt with status 1/3/5; 3 completes the lesson, 5 counts a failure."""
        status, score, start, completion = _finish_fields(body)
        row = self.conn.execute(
            "SELECT a.id, a.lesson_enrollment_id, a.status, a.start_date, le.enrollment_id, le.lesson_id, "
            "le.chapter_enrollment_id FROM attempts a JOIN lesson_enrollments le ON le.id = a.lesson_enrollment_id "
            "WHERE a.id = ?",
            (attempt_id,),
        ).fetchone()
        if row is None or (enrollment_id and (row[4] != enrollment_id or row[5] != lesson_id)):
            raise not_found("Attempt", attempt_id)
        _, lesson_enrollment_id, current_status, started, course_enrollment_id, _, chapter_enrollment_id = row
        if current_status != IN_PROGRESS:
            raise ApiError(422, "The attempt is already finished.", meta={"attemptId": attempt_id})
        now = now_iso()
        start = start or started or now
        completion = completion or (now if status != IN_PROGRESS else None)
        ticks = _ticks_between(start, completion)
        with self.sandbox.transaction():
            self.conn.execute(
                "UPDATE attempts SET status = ?, score = ?, start_date = ?, completion_date = ?, time_spent_ticks = ? "
                "WHERE id = ?",
                (status, score, start, completion, ticks, attempt_id),
            )
            if status != IN_PROGRESS:
                self._roll_up(
                    lesson_enrollment_id,
                    chapter_enrollment_id,
                    course_enrollment_id,
                    status,
                    score,
                    completion,
                    ticks,
                    now,
                )
        return {"attemptId": attempt_id}

    def _roll_up(
        self,
        lesson_enrollment_id: str,
        chapter_enrollment_id: str,
        enrollment_id: str,
        status: int,
        score: float | None,
        completion: str,
        ticks: int,
        now: str,
    ) -> None:
        if status == COMPLETE:
            self.conn.execute(
                "UPDATE lesson_enrollments SET status = 3, progress = 100, score = COALESCE(?, score), "
                "date_completed = ?, time_spent_ticks = time_spent_ticks + ?, date_edited = ? WHERE id = ?",
                (score, completion, ticks, now, lesson_enrollment_id),
            )
        else:
            self.conn.execute(
                "UPDATE lesson_enrollments SET status = ?, failures = failures + 1, score = COALESCE(?, score), "
                "time_spent_ticks = time_spent_ticks + ?, date_edited = ? WHERE id = ?",
                (FAILED, score, ticks, now, lesson_enrollment_id),
            )
        self._recompute(
            "chapter_enrollments", "chapter_enrollment_id", chapter_enrollment_id, completion, now
        )
        self._recompute("enrollments", "enrollment_id", enrollment_id, completion, now, ticks)

    def _recompute(
        self, table: str, key: str, row_id: str, completion: str, now: str, ticks: int = 0
    ) -> None:
        done, total, average = self.conn.execute(
            f"SELECT SUM(status = 3), COUNT(*), AVG(score) FROM lesson_enrollments WHERE {key} = ?", (row_id,)
        ).fetchone()
        progress = round(100.0 * (done or 0) / total, 2) if total else 0.0
        extra = ", time_spent_ticks = time_spent_ticks + ?" if table == "enrollments" else ""
        params = [progress, now] + ([ticks] if extra else [])
        if total and done == total:
            self.conn.execute(
                f"UPDATE {table} SET status = 3, progress = 100, score = ?, date_completed = ?, date_edited = ?{extra} "
                "WHERE id = ?",
                [average, completion, now, *([ticks] if extra else []), row_id],
            )
        else:
            self.conn.execute(
                f"UPDATE {table} SET status = 1, progress = ?, date_edited = ?{extra} WHERE id = ?",
                [*params, row_id],
            )


def _finish_fields(body: dict) -> tuple[int, float | None, str | None, str | None]:
    status = body.get("status")
    if status is None:
        raise ApiError(422, "status is required.", meta={"field": "status"})
    if isinstance(status, bool) or not isinstance(status, int) or status not in ATTEMPT_STATUSES:
        raise ApiError(422, "Invalid value provided for status: must be 1, 3 or 5.", meta={"field": "status"})
    score = body.get("score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 100
    ):
        raise ApiError(422, "score must be a number between 0 and 100.", meta={"field": "score"})
    dates = []
    for key in ("startDate", "completionDate"):
        value = body.get(key)
        if value is None:
            dates.append(None)
            continue
        try:
            dates.append(normalise_datetime(value) if isinstance(value, str) else _raise())
        except (ValueError, TypeError):
            raise ApiError(422, f"Invalid format provided for {key}", meta={"field": key}) from None
    if dates[0] and dates[1] and dates[1] < dates[0]:
        raise ApiError(422, "completionDate is before startDate.")
    return status, None if score is None else float(score), dates[0], dates[1]


def _raise():
    raise TypeError("not a string")


def _ticks_between(start: str, end: str | None) -> int:
    if not end:
        return 0
    seconds = (parse_datetime(end) - parse_datetime(start)).total_seconds()
    return max(0, int(seconds * TICKS_PER_SECOND))
