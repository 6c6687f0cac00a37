"""The SQLite store: schema, connection settings and the seed-once rule.

Plain ``sqlite3`` (no ORM): the seed bulk-loads hundreds of thousands of rows and the API serves
pages straight from SQL. Indices are created after a seed's bulk load.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS departments (id TEXT PRIMARY KEY, name TEXT NOT NULL, external_id TEXT);
CREATE TABLE IF NOT EXISTS users (
    id TEXT NOT NULL, username TEXT NOT NULL, department_id TEXT, first_name TEXT, last_name TEXT,
    email TEXT, external_id TEXT, employee_number TEXT, job_title TEXT, location TEXT,
    date_hired TEXT, date_terminated TEXT, supervisor_id TEXT, active_status INTEGER NOT NULL DEFAULT 0,
    date_added TEXT, date_edited TEXT,
    hr_status TEXT NOT NULL DEFAULT 'active',   -- active|leave|terminated (feeds hr-feed only)
    preprovisioned INTEGER NOT NULL DEFAULT 0     -- exists in Absorb but not yet in the HR feed
);
CREATE TABLE IF NOT EXISTS courses (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, course_type TEXT NOT NULL, active_status INTEGER NOT NULL,
    description TEXT, external_id TEXT, date_added TEXT, date_edited TEXT, multi_session INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chapters (
    id TEXT PRIMARY KEY, course_id TEXT NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lessons (
    id TEXT PRIMARY KEY, course_id TEXT NOT NULL, chapter_id TEXT NOT NULL, name TEXT NOT NULL,
    lesson_type TEXT NOT NULL, position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, course_id TEXT NOT NULL, name TEXT NOT NULL, start_date TEXT
);
CREATE TABLE IF NOT EXISTS enrollments (
    id TEXT NOT NULL, user_id TEXT NOT NULL, course_id TEXT NOT NULL, status INTEGER NOT NULL,
    progress REAL, score REAL, time_spent_ticks INTEGER NOT NULL DEFAULT 0,
    date_added TEXT, date_started TEXT, date_completed TEXT, date_expires TEXT, date_due TEXT,
    date_edited TEXT, access_date TEXT, course_version_id TEXT,
    accepted_terms INTEGER NOT NULL DEFAULT 0, enrollment_key_id TEXT, certificate_id TEXT,
    credits REAL, is_active INTEGER NOT NULL DEFAULT 1, course_collection_id TEXT,
    activities_ready INTEGER NOT NULL DEFAULT 0   -- chapter/lesson rows exist (made lazily)
);
CREATE TABLE IF NOT EXISTS chapter_enrollments (
    id TEXT NOT NULL, enrollment_id TEXT NOT NULL, chapter_id TEXT NOT NULL, user_id TEXT NOT NULL,
    course_id TEXT NOT NULL, status INTEGER NOT NULL, progress REAL, score REAL,
    time_spent_ticks INTEGER NOT NULL DEFAULT 0, date_enrolled TEXT, date_started TEXT,
    date_completed TEXT, date_edited TEXT
);
CREATE TABLE IF NOT EXISTS lesson_enrollments (
    id TEXT NOT NULL, enrollment_id TEXT NOT NULL, chapter_enrollment_id TEXT NOT NULL,
    chapter_id TEXT NOT NULL, lesson_id TEXT NOT NULL, user_id TEXT NOT NULL, course_id TEXT NOT NULL,
    lesson_type TEXT NOT NULL, status INTEGER NOT NULL, progress REAL, score REAL,
    time_spent_ticks INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0, last_attempt TEXT, date_enrolled TEXT, date_started TEXT,
    date_completed TEXT, date_edited TEXT, date_added TEXT
);
CREATE TABLE IF NOT EXISTS session_enrollments (
    id TEXT NOT NULL, enrollment_id TEXT NOT NULL, session_id TEXT NOT NULL, user_id TEXT NOT NULL,
    course_id TEXT NOT NULL, status INTEGER NOT NULL, progress REAL, score REAL,
    time_spent_ticks INTEGER NOT NULL DEFAULT 0, date_enrolled TEXT, date_started TEXT,
    date_completed TEXT, date_edited TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT NOT NULL, lesson_enrollment_id TEXT NOT NULL, user_id TEXT NOT NULL,
    course_id TEXT NOT NULL, lesson_id TEXT NOT NULL, status INTEGER NOT NULL, score REAL,
    time_spent_ticks INTEGER NOT NULL DEFAULT 0, start_date TEXT, completion_date TEXT
);
CREATE TABLE IF NOT EXISTS tokens (username TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS ix_tokens_token ON tokens (token);
"""

# Bulk-loaded tables have no PRIMARY KEY during the load (random GUID keys make B-tree inserts
# slow); their unique id indices are built afterwards, sorted, which is much faster.
INDICES = """
CREATE UNIQUE INDEX IF NOT EXISTS ux_users_id ON users (id);
CREATE UNIQUE INDEX IF NOT EXISTS ux_enrollments_id ON enrollments (id);
CREATE UNIQUE INDEX IF NOT EXISTS ux_chapter_enrollments_id ON chapter_enrollments (id);
CREATE UNIQUE INDEX IF NOT EXISTS ux_lesson_enrollments_id ON lesson_enrollments (id);
CREATE UNIQUE INDEX IF NOT EXISTS ux_session_enrollments_id ON session_enrollments (id);
CREATE UNIQUE INDEX IF NOT EXISTS ux_attempts_id ON attempts (id);
CREATE UNIQUE INDEX IF NOT EXISTS ix_users_username ON users (username);
CREATE INDEX IF NOT EXISTS ix_users_external_id ON users (external_id);
CREATE INDEX IF NOT EXISTS ix_users_email ON users (email);
CREATE INDEX IF NOT EXISTS ix_users_date_edited ON users (date_edited);
CREATE INDEX IF NOT EXISTS ix_enrollments_course ON enrollments (course_id);
CREATE INDEX IF NOT EXISTS ix_enrollments_user_course ON enrollments (user_id, course_id);
CREATE INDEX IF NOT EXISTS ix_enrollments_date_edited ON enrollments (date_edited);
CREATE INDEX IF NOT EXISTS ix_enrollments_status ON enrollments (status);
CREATE INDEX IF NOT EXISTS ix_chapters_course ON chapters (course_id, position);
CREATE INDEX IF NOT EXISTS ix_lessons_course ON lessons (course_id, position);
CREATE INDEX IF NOT EXISTS ix_sessions_course ON sessions (course_id);
CREATE INDEX IF NOT EXISTS ix_chapter_enrollments_enrollment ON chapter_enrollments (enrollment_id);
CREATE INDEX IF NOT EXISTS ix_lesson_enrollments_enrollment ON lesson_enrollments (enrollment_id);
CREATE INDEX IF NOT EXISTS ix_lesson_enrollments_lesson ON lesson_enrollments (lesson_id);
CREATE INDEX IF NOT EXISTS ix_session_enrollments_enrollment ON session_enrollments (enrollment_id);
CREATE INDEX IF NOT EXISTS ix_session_enrollments_session ON session_enrollments (session_id);
CREATE INDEX IF NOT EXISTS ix_attempts_lesson_enrollment ON attempts (lesson_enrollment_id);
"""

DATA_TABLES = (
    "departments",
    "users",
    "courses",
    "chapters",
    "lessons",
    "sessions",
    "enrollments",
    "chapter_enrollments",
    "lesson_enrollments",
    "session_enrollments",
    "attempts",
    "tokens",
)


def connect(db_path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open the store with WAL and the pragmas the server relies on."""
    if read_only:
        uri = f"file:{Path(db_path).resolve()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn
    conn = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
    if str(db_path) != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -131072")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def create_indices(conn: sqlite3.Connection) -> None:
    conn.executescript(INDICES)
    conn.execute("PRAGMA analysis_limit = 1000")  # sampled statistics: enough for the planner, cheap
    conn.execute("ANALYZE")


def bulk_load_mode(conn: sqlite3.Connection, on: bool) -> None:
    """Fast, unsafe journaling while a seed loads (a crash mid-seed leaves a db to delete anyway);
    back to WAL afterwards. Ignored when another connection holds the db (e.g. a reset while an
    hr-feed export reads it)."""
    try:
        if on:
            conn.execute("PRAGMA journal_mode = MEMORY")
            conn.execute("PRAGMA synchronous = OFF")
        else:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.OperationalError:
        pass


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def is_seeded(conn: sqlite3.Connection) -> bool:
    """True when the db already holds a seeded (or deliberately empty) organisation."""
    return get_meta(conn, "seed") is not None


def wipe(conn: sqlite3.Connection) -> None:
    """Drop every seeded table (tokens survive: a reset does not log clients out) and recreate the
    empty schema, so the re-seed loads without indices like a fresh one."""
    conn.execute("BEGIN")
    for table in DATA_TABLES:
        if table != "tokens":
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("DELETE FROM meta")
    conn.execute("COMMIT")
    create_schema(conn)
