"""``serve --from-snapshot DIR``: a sandbox whose state is a portal snapshot (docs/snapshot-format.md).

The snapshot format is the only contract: this module reads the Parquet files and manifest with
its own code and imports nothing from the provider or the sync library. Before a row is loaded
the manifest's checksums are checked, so a tampered, truncated or unfinished snapshot is refused
whole; after the load the row counts are checked against the manifest.

A db that already holds this very snapshot is served as it is (a restart keeps the clone's
state, like a seeded db); a db holding anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from absorb_sandbox import store
from absorb_sandbox.seed import NAMESPACE, api_user_id, ensure_api_user
from absorb_sandbox.timeutil import normalise_datetime

FORMAT = "absorb-portal-snapshot"
FORMAT_VERSION = 1
SEED_MARK = "snapshot"  # meta "seed" of a db loaded from a snapshot
STORED_DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"
PLACEHOLDER_SESSION_NAME = "Session (not in the snapshot)"
BATCH_ROWS = 50_000


class SnapshotLoadError(ValueError):
    """The snapshot cannot be served; the message names the file or count at fault."""


# (table, snapshot file, [(sandbox column, snapshot column or None, default, is_datetime)])
USER_COLUMNS = [
    ("id", "id", None, False),
    ("username", "username", None, False),
    ("department_id", "departmentId", None, False),
    ("first_name", "firstName", None, False),
    ("last_name", "lastName", None, False),
    ("email", "emailAddress", None, False),
    ("external_id", "externalId", None, False),
    ("employee_number", "employeeNumber", None, False),
    ("job_title", "jobTitle", None, False),
    ("location", "location", None, False),
    ("date_hired", "dateHired", None, True),
    ("date_terminated", "dateTerminated", None, True),
    ("supervisor_id", "supervisorId", None, False),
    ("active_status", "activeStatus", 0, False),
    ("date_added", "dateAdded", None, True),
    ("date_edited", "dateEdited", None, True),
]
COURSE_COLUMNS = [
    ("id", "id", None, False),
    ("name", "name", "", False),
    ("course_type", "courseType", "OnlineCourse", False),
    ("active_status", "activeStatus", 0, False),
    ("description", "description", None, False),
    ("external_id", "externalId", None, False),
    ("date_added", "dateAdded", None, True),
    ("date_edited", "dateEdited", None, True),
    ("multi_session", None, 0, False),  # the API does not say; creates are allowed on a clone
]
ENROLLMENT_COLUMNS = [
    ("id", "id", None, False),
    ("user_id", "userId", None, False),
    ("course_id", "courseId", None, False),
    ("status", "status", 0, False),
    ("progress", "progress", None, False),
    ("score", "score", None, False),
    ("time_spent_ticks", "timeSpentTicks", 0, False),
    ("date_added", "dateAdded", None, True),
    ("date_started", "dateStarted", None, True),
    ("date_completed", "dateCompleted", None, True),
    ("date_expires", "dateExpires", None, True),
    ("date_due", "dateDue", None, True),
    ("date_edited", "dateEdited", None, True),
    ("access_date", "accessDate", None, True),
    ("course_version_id", "courseVersionId", None, False),
    ("accepted_terms", "acceptedTermsAndConditions", 0, False),
    ("enrollment_key_id", "enrollmentKeyId", None, False),
    ("certificate_id", "certificateId", None, False),
    ("credits", "credits", None, False),
    ("is_active", "isActive", 1, False),
    ("course_collection_id", "courseCollectionId", None, False),
]
SESSION_COLUMNS = [
    ("id", "id", None, False),
    ("course_id", "courseId", None, False),
    ("name", "name", "", False),
]
CHAPTER_COLUMNS = [
    ("id", "id", None, False),
    ("course_id", "courseId", None, False),
    ("name", "name", "", False),
    ("position", "position", 0, False),
]
LESSON_COLUMNS = [
    ("id", "id", None, False),
    ("course_id", "courseId", None, False),
    ("chapter_id", "chapterId", None, False),
    ("name", "name", "", False),
    ("lesson_type", "type", "ObjectLesson", False),
    ("position", "position", 0, False),
]
# Department columns beyond id and name are loaded when this sandbox's schema has them.
DEPARTMENT_COLUMNS = [
    ("id", "id", None, False),
    ("name", "name", "", False),
    ("external_id", "externalId", None, False),
    ("parent_id", "parentId", None, False),
]


def open_snapshot_store(db_path: str, snapshot_dir: str | Path, api_username: str) -> sqlite3.Connection:
    """The store of a clone: ``db_path`` loaded from the snapshot (or already holding it)."""
    folder = Path(snapshot_dir)
    manifest = verify_snapshot(folder)
    conn = store.connect(db_path)
    store.create_schema(conn)
    if store.is_seeded(conn):
        held = store.get_meta(conn, "snapshot_checksum")
        if held != manifest["checksum"]:
            what = f"snapshot {held[:12]}" if held else f"the seed {store.get_meta(conn, 'seed')!r}"
            conn.close()
            raise SnapshotLoadError(
                f"{db_path} already holds {what}, not snapshot {manifest['checksum'][:12]}: "
                "use a new --db (or delete this one) to serve the snapshot"
            )
    else:
        try:
            load_snapshot(conn, folder, manifest)
        except BaseException:
            conn.close()
            raise
    _ensure_api_user(conn, api_username)
    store.create_indices(conn)
    return conn


def _ensure_api_user(conn: sqlite3.Connection, username: str) -> None:
    """The clone's own API user (it logs in to the clone, not to the portal). Its usual id may be
    taken already: a pseudonymised snapshot of a sandbox renamed that user."""
    if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
        return
    if not conn.execute("SELECT 1 FROM users WHERE id = ?", (api_user_id(username),)).fetchone():
        ensure_api_user(conn, username)
        return
    conn.execute(
        "INSERT INTO users (id, username, first_name, last_name, job_title, active_status, hr_status, preprovisioned) "
        "VALUES (?, ?, 'Airflow', 'Integration', 'Integration Account', 0, 'active', 0)",
        (str(uuid.uuid5(NAMESPACE, f"snapshot-api-user:{username}")), username),
    )


def verify_snapshot(folder: Path) -> dict[str, Any]:
    """The manifest, once every file it lists is there with its SHA-256 and nothing is missing."""
    manifest_path = folder / "manifest.json"
    if not folder.is_dir():
        raise SnapshotLoadError(f"{folder} is not a folder")
    if not manifest_path.exists():
        hint = (
            " (an unfinished snapshot: run the snapshot command again to finish it)"
            if (folder / "progress.json").exists()
            else ""
        )
        raise SnapshotLoadError(f"{folder} has no manifest.json{hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as error:
        raise SnapshotLoadError(f"{manifest_path} is not JSON: {error}") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotLoadError(
            f"{manifest_path}: format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this sandbox reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    files: dict[str, str] = manifest.get("files") or {}
    problems = []
    for name, expected in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif _sha256(path) != expected:
            problems.append(f"{name} does not match its checksum")
    listed = set(files)
    for path in sorted((folder / "enrollments").glob("*.parquet")):
        if str(path.relative_to(folder)) not in listed:
            problems.append(f"{path.relative_to(folder)} is not in the manifest")
    if _overall(files) != manifest.get("checksum"):
        problems.append("the manifest's checksum does not match its file list")
    if problems:
        raise SnapshotLoadError(f"snapshot {folder} refused: " + "; ".join(problems))
    return manifest


def load_snapshot(conn: sqlite3.Connection, folder: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """Insert every table in one transaction, then check the counts; returns them."""
    store.bulk_load_mode(conn, True)
    conn.execute("BEGIN")
    try:
        counts = {
            "departments": _load(conn, "departments", DEPARTMENT_COLUMNS, [folder / "departments.parquet"]),
            "users": _load(conn, "users", USER_COLUMNS, [folder / "users.parquet"]),
            "courses": _load(conn, "courses", COURSE_COLUMNS, [folder / "courses.parquet"]),
            "sessions": _load(conn, "sessions", SESSION_COLUMNS, [folder / "sessions.parquet"]),
            "chapters": _load(conn, "chapters", CHAPTER_COLUMNS, [folder / "chapters.parquet"]),
            "lessons": _load(conn, "lessons", LESSON_COLUMNS, [folder / "lessons.parquet"]),
            "enrollments": _load(
                conn, "enrollments", ENROLLMENT_COLUMNS, sorted((folder / "enrollments").glob("*.parquet"))
            ),
        }
        _check_counts(counts, manifest.get("counts") or {})
        _placeholder_sessions(conn)
        _create_indices(conn)
        store.set_meta(conn, "seed", SEED_MARK)
        store.set_meta(conn, "snapshot_checksum", manifest["checksum"])
        store.set_meta(conn, "snapshot_portal", json.dumps(manifest.get("portal")))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        store.bulk_load_mode(conn, False)
    return counts


def _load(conn: sqlite3.Connection, table: str, columns: list, paths: list[Path]) -> int:
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    columns = [c for c in columns if c[0] in present]
    sql = f"INSERT INTO {table} ({', '.join(c[0] for c in columns)}) VALUES ({', '.join('?' * len(columns))})"
    count = 0
    for path in paths:
        if not path.exists():
            continue
        for rows in _batches(path, columns):
            conn.executemany(sql, rows)
            count += len(rows)
    return count


def _batches(path: Path, columns: list) -> Iterator[list[tuple]]:
    """Rows of a Parquet file as tuples in the sandbox's column order, dates in its stored form."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = set(parquet.schema_arrow.names)
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        values = []
        for _, source, default, is_datetime in columns:
            if source is None or source not in names:
                values.append([default] * batch.num_rows)
                continue
            column = batch.column(source)
            if is_datetime:
                values.append(_stored_datetimes(column, path, source))
            else:
                plain = column.to_pylist()
                values.append(plain if default is None else [default if v is None else v for v in plain])
        yield list(zip(*values, strict=True))


def _stored_datetimes(column, path: Path, name: str) -> list[str | None]:
    """ISO text as the sandbox stores it (fixed width, UTC); values already in that form pass as is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(column.type):
        return [None] * len(column)
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    values = column.to_pylist()
    if pc.all(pc.match_substring_regex(column, STORED_DATETIME)).as_py() in (True, None):
        return values
    try:
        return [None if v is None else normalise_datetime(v) for v in values]
    except ValueError as error:
        raise SnapshotLoadError(f"{path.name}: column {name} holds an unreadable date: {error}") from None


def _check_counts(loaded: dict[str, int], expected: dict[str, Any]) -> None:
    wrong = [
        f"{table}: {count} rows loaded, manifest says {expected.get(table)}"
        for table, count in loaded.items()
        if expected.get(table) is not None and expected[table] != count
    ]
    if wrong:
        raise SnapshotLoadError("snapshot counts do not match its manifest: " + "; ".join(wrong))


def _create_indices(conn: sqlite3.Connection) -> None:
    """The store's indices, built inside the load's transaction (and its fast journal mode): a
    duplicate id refuses the snapshot whole instead of leaving a db without its unique keys."""
    for statement in store.INDICES.split(";"):
        if not statement.strip():
            continue
        try:
            conn.execute(statement)
        except sqlite3.IntegrityError as error:
            raise SnapshotLoadError(
                f"the snapshot holds a duplicate ({error}): the portal changed while it was read; "
                "take the snapshot again (--fresh)"
            ) from None


def _placeholder_sessions(conn: sqlite3.Connection) -> None:
    """An instructor-led course needs a session to enroll into; the API shows sessions only through
    enrollments, so a course with none seen gets one marked as such."""
    courses = conn.execute(
        "SELECT id FROM courses c WHERE course_type = 'InstructorLedCourse' "
        "AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.course_id = c.id)"
    ).fetchall()
    conn.executemany(
        "INSERT INTO sessions (id, course_id, name) VALUES (?, ?, ?)",
        [
            (str(uuid.uuid5(NAMESPACE, f"snapshot-session:{cid}")), cid, PLACEHOLDER_SESSION_NAME)
            for (cid,) in courses
        ],
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _overall(files: dict[str, str]) -> str:
    """The snapshot's checksum: SHA-256 of ``"<path> <sha256>\\n"`` lines sorted by path."""
    return hashlib.sha256("".join(f"{name} {files[name]}\n" for name in sorted(files)).encode()).hexdigest()
