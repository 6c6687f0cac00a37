"""Chapter, lesson and attempt rows of an online course enrollment, created on demand.

Seeded enrollments (up to ~1M) are loaded without their activity rows to keep seeding fast; the
first operation that needs them calls ``ensure_activities``. The rows are derived from the
course enrollment (a complete enrollment has complete lessons; one in progress has its first
lessons done) with ids derived from the enrollment id, so they are stable. API-created
enrollments get theirs immediately.
"""

from __future__ import annotations

import hashlib
import sqlite3

COMPLETE, IN_PROGRESS, NOT_STARTED = 3, 1, 0


def _derived_id(enrollment_id: str, kind: str, item_id: str) -> str:
    """A stable GUID-shaped id for an activity row of an enrollment (blake2b: cheaper than uuid5
    when a whole course's rows are made at once)."""
    h = hashlib.blake2b(f"{enrollment_id}:{kind}:{item_id}".encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


_ENROLLMENT_SQL = (
    "SELECT e.id, e.user_id, e.course_id, e.status, e.progress, e.score, e.date_added, e.date_started, "
    "e.date_completed FROM enrollments e JOIN courses c ON c.id = e.course_id "
    "WHERE e.activities_ready = 0 AND c.course_type = 'OnlineCourse' AND "
)
_LESSONS_SQL = (
    "SELECT l.id, l.chapter_id, l.lesson_type FROM lessons l JOIN chapters ch ON ch.id = l.chapter_id "
    "WHERE l.course_id = ? ORDER BY ch.position, l.position"
)


def ensure_activities(conn: sqlite3.Connection, enrollment_id: str) -> None:
    """Create the chapter/lesson (and attempt) rows of one enrollment if they do not exist yet."""
    row = conn.execute(_ENROLLMENT_SQL + "e.id = ?", (enrollment_id,)).fetchone()
    if row is None:
        return
    lessons = conn.execute(_LESSONS_SQL, (row[2],)).fetchall()
    _insert(conn, [_activity_rows(row, lessons)])
    conn.execute("UPDATE enrollments SET activities_ready = 1 WHERE id = ?", (enrollment_id,))


def ensure_course_activities(conn: sqlite3.Connection, course_id: str) -> int:
    """Create missing activity rows for every enrollment of a course in one batch; returns how many."""
    pending = conn.execute(_ENROLLMENT_SQL + "e.course_id = ?", (course_id,)).fetchall()
    if not pending:
        return 0
    lessons = conn.execute(_LESSONS_SQL, (course_id,)).fetchall()
    conn.execute("BEGIN IMMEDIATE")
    try:
        _insert(conn, [_activity_rows(row, lessons) for row in pending])
        conn.execute(
            "UPDATE enrollments SET activities_ready = 1 WHERE course_id = ? AND activities_ready = 0",
            (course_id,),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(pending)


def _insert(conn: sqlite3.Connection, batches: list[tuple[list, list, list]]) -> None:
    conn.executemany(
        f"INSERT OR IGNORE INTO chapter_enrollments VALUES ({', '.join('?' * 13)})",
        [r for chapters, _, _ in batches for r in chapters],
    )
    conn.executemany(
        f"INSERT OR IGNORE INTO lesson_enrollments VALUES ({', '.join('?' * 20)})",
        [r for _, lessons, _ in batches for r in lessons],
    )
    conn.executemany(
        f"INSERT OR IGNORE INTO attempts VALUES ({', '.join('?' * 10)})",
        [r for _, _, attempts in batches for r in attempts],
    )


def _activity_rows(row: tuple, lessons: list[tuple]) -> tuple[list, list, list]:
    """(chapter rows, lesson rows, attempt rows) derived from one course enrollment row."""
    enrollment_id, user_id, course_id, status, progress, score, added, started, completed = row
    done = len(lessons) if status == COMPLETE else int(len(lessons) * (progress or 0) / 100)
    edited = completed or started or added
    chapter_state: dict[str, list[int]] = {}
    chapter_ids: dict[str, str] = {}
    lesson_rows, attempt_rows = [], []
    for index, (lesson_id, chapter_id, lesson_type) in enumerate(lessons):
        if chapter_id not in chapter_ids:
            chapter_ids[chapter_id] = _derived_id(enrollment_id, "chapter", chapter_id)
        if index < done:
            lesson_status = COMPLETE
        elif index == done and status == IN_PROGRESS:
            lesson_status = IN_PROGRESS
        else:
            lesson_status = NOT_STARTED
        chapter_state.setdefault(chapter_id, []).append(lesson_status)
        lesson_enrollment_id = _derived_id(enrollment_id, "lesson", lesson_id)
        is_done = lesson_status == COMPLETE
        attempts = 1 if lesson_status != NOT_STARTED else 0
        lesson_rows.append(
            (
                lesson_enrollment_id,
                enrollment_id,
                chapter_ids[chapter_id],
                chapter_id,
                lesson_id,
                user_id,
                course_id,
                lesson_type,
                lesson_status,
                100.0 if is_done else 0.0,
                score if is_done else None,
                0,
                attempts,
                0,
                started if attempts else None,
                added,
                started if attempts else None,
                completed if is_done else None,
                edited,
                added,
            )
        )
        if attempts:
            attempt_rows.append(
                (
                    _derived_id(enrollment_id, "attempt", lesson_id),
                    lesson_enrollment_id,
                    user_id,
                    course_id,
                    lesson_id,
                    lesson_status,
                    score if is_done else None,
                    0,
                    started,
                    completed if is_done else None,
                )
            )
    chapter_rows = []
    for chapter_id, statuses in chapter_state.items():
        if all(s == COMPLETE for s in statuses):
            chapter_status = COMPLETE
        elif any(s != NOT_STARTED for s in statuses):
            chapter_status = IN_PROGRESS
        else:
            chapter_status = NOT_STARTED
        share = 100.0 * sum(s == COMPLETE for s in statuses) / len(statuses)
        chapter_rows.append(
            (
                chapter_ids[chapter_id],
                enrollment_id,
                chapter_id,
                user_id,
                course_id,
                chapter_status,
                share,
                None,
                0,
                added,
                started if chapter_status != NOT_STARTED else None,
                completed if chapter_status == COMPLETE else None,
                edited,
            )
        )
    return chapter_rows, lesson_rows, attempt_rows
