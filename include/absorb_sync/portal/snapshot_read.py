"""Reads a portal into a snapshot folder: paged, read-only, resumable, with counts and checksums.

Every read goes through the provider (``AbsorbHook``: shared token, retries, rate limit, paging,
Arrow pages); the client is fenced so that anything but a GET raises before it leaves. Each table
and each course's enrollments is written to ``<file>.tmp`` and renamed when complete, so after an
interruption the same command skips what is on disk and reads the rest. ``manifest.json`` comes
last: counts, a SHA-256 per file and one checksum for the whole snapshot.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from absorb_sync.portal import snapshot_format as fmt


class SnapshotError(RuntimeError):
    """The snapshot cannot be taken or resumed as asked; the message says why and what to do."""


@dataclass(frozen=True)
class SnapshotOptions:
    out: Path
    pseudonymise: bool = False
    concurrency: int = 4
    catalogue_sample: int = 3
    fresh: bool = False


class Progress:
    """One status line on the terminal (rewritten in place on a TTY, a line every few seconds
    otherwise), so a long read shows it is alive without flooding a log."""

    def __init__(self, stream: TextIO | None = None, interval: float = 1.0, stop: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.stop = stop  # a threading.Event set on Ctrl-C: every update re-raises it
        self.tty = self.stream.isatty()
        self.interval = interval if self.tty else max(interval, 5.0)
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, text: str, *, force: bool = False) -> None:
        if self.stop is not None and self.stop.is_set():
            raise KeyboardInterrupt  # asked before, but lost (e.g. raised inside a finaliser)
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        line = f"[{now - self.started:6.0f}s] {text}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        self.update(text, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------- pseudonyms


def pseudonym(user_id: str | None) -> str | None:
    """A stable tag derived from the (opaque) user id, never from the person: the same person
    gets the same tag in users and enrollments, and nothing in it leads back to a name."""
    if not user_id:
        return None
    return hashlib.blake2b(user_id.strip().lower().encode(), digest_size=8).hexdigest()


def pseudonymise_user(row: dict[str, Any]) -> dict[str, Any]:
    """Names, username and email replaced; ids (the employee id included) kept, so the HR feed
    still joins on ``externalId`` and the sync matches the same people."""
    tag = pseudonym(row.get("id")) or "unknown"
    return {
        **row,
        "username": f"user-{tag}@example.invalid",
        "emailAddress": f"user-{tag}@example.invalid",
        "firstName": "Person",
        "lastName": tag,
    }


def pseudonymise_enrollments(table):
    """``fullName`` as the user's pseudonym (the other columns hold no names)."""
    import pyarrow as pa

    names = [
        None if uid is None else f"Person {pseudonym(uid)}" for uid in table.column("userId").to_pylist()
    ]
    index = table.schema.get_field_index("fullName")
    return table.set_column(index, "fullName", pa.array(names, type=pa.string()))


# ---------------------------------------------------------------- the read


def guard_read_only(client: Any) -> None:
    """Make the client refuse every call but GET before it is sent (login is not a ``call``)."""
    send = client.call

    def read_only_call(method: str, path: str, **kwargs: Any) -> Any:
        if method.upper() != "GET":
            raise SnapshotError(f"refused {method} /{path.lstrip('/')}: a snapshot only reads")
        return send(method, path, **kwargs)

    client.call = read_only_call


def take_snapshot(hook: Any, options: SnapshotOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Read the portal behind ``hook`` into ``options.out``; returns the manifest."""
    progress = progress or Progress()
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    if options.fresh:
        clear_snapshot(out)
    identity = _identity(hook, options)
    existing = fmt.read_json(out / fmt.MANIFEST)
    if existing is not None:
        _check_same_source(out, existing, identity, "a finished")
        existing["already_complete"] = True
        return existing
    started_at = _resume_or_start(out, identity)
    guard_read_only(hook.client)
    started = time.perf_counter()
    _write_table(out / "departments.parquet", fmt.DEPARTMENT_FIELDS, hook.list_departments(), progress)
    users = hook.list_users()
    if options.pseudonymise:
        users = map(pseudonymise_user, users)
    _write_table(out / "users.parquet", fmt.USER_FIELDS, users, progress)
    _write_table(out / "courses.parquet", fmt.COURSE_FIELDS, hook.list_courses(), progress)
    courses = _read_parquet(out / "courses.parquet").to_pylist()
    read_enrollments(hook, out, [c["id"] for c in courses], options, progress)
    read_catalogue(hook, out, courses, options.catalogue_sample, progress)
    manifest = write_manifest(out, identity, started_at, time.perf_counter() - started, hook, options)
    (out / fmt.PROGRESS).unlink(missing_ok=True)
    return manifest


def clear_snapshot(out: Path) -> None:
    """Remove a snapshot's own files (and nothing else) so a fresh one starts from zero."""
    for name in (fmt.MANIFEST, fmt.PROGRESS, *fmt.TABLE_FILES):
        (out / name).unlink(missing_ok=True)
        (out / f"{name}.tmp").unlink(missing_ok=True)
    shutil.rmtree(out / fmt.ENROLLMENTS_DIR, ignore_errors=True)


def _identity(hook: Any, options: SnapshotOptions) -> dict[str, Any]:
    return {
        "format": fmt.FORMAT,
        "format_version": fmt.FORMAT_VERSION,
        "portal": {"base_url": hook.settings.base_url, "api_user": hook.settings.username},
        "pseudonymised": options.pseudonymise,
    }


def _resume_or_start(out: Path, identity: dict[str, Any]) -> str:
    """The start time of the snapshot being (re)taken; refuses to mix two portals or settings."""
    previous = fmt.read_json(out / fmt.PROGRESS)
    if previous is not None:
        _check_same_source(out, previous, identity, "an unfinished")
        return previous["started_at"]
    leftovers = [p.name for p in fmt.data_files(out)]
    if leftovers:
        raise SnapshotError(
            f"{out} holds snapshot files ({', '.join(leftovers[:3])}...) but no {fmt.PROGRESS}: "
            "pass --fresh to start over, or another --out"
        )
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    fmt.write_json(out / fmt.PROGRESS, {**identity, "started_at": started_at})
    return started_at


def _check_same_source(out: Path, found: dict[str, Any], identity: dict[str, Any], what: str) -> None:
    """Never mix two portals (or a plain and a pseudonymised read) in one folder."""
    if {key: found.get(key) for key in identity} != identity:
        raise SnapshotError(
            f"{out} holds {what} snapshot of {found.get('portal')} "
            f"(pseudonymised={found.get('pseudonymised')}), not of {identity['portal']} "
            f"(pseudonymised={identity['pseudonymised']}): pass --fresh to start over, or another --out"
        )


def _write_table(path: Path, fields, rows: Iterable[dict], progress: Progress) -> int:
    """Stream dict rows into ``path`` (via ``path.tmp``); a file already there is complete: skip."""
    from absorb_provider.io import stream_to_file

    if path.exists():
        progress.done(f"{path.stem}: done before, kept")
        return _rows_in(path)
    tmp = path.with_name(path.name + ".tmp")
    count = stream_to_file(_counting(rows, path.stem, progress), str(tmp), fields, fmt="parquet")
    tmp.replace(path)
    progress.done(f"{path.stem}: {count:,} rows")
    return count


def _counting(rows: Iterable[dict], label: str, progress: Progress) -> Iterator[dict]:
    for number, row in enumerate(rows, start=1):
        if number % 1000 == 0:
            progress.update(f"{label}: {number:,} rows")
        yield row


def read_enrollments(
    hook: Any, out: Path, course_ids: list[str], options: SnapshotOptions, progress: Progress
) -> None:
    """Every course's enrollments into ``enrollments/<courseId>.parquet``, a few courses at once
    (the provider's ``tables_by_course``: bounded read-ahead, one rate limit)."""
    from absorb_provider import schemas
    from absorb_provider.io import tables_by_course
    from absorb_provider.validation import guid

    folder = out / fmt.ENROLLMENTS_DIR
    folder.mkdir(exist_ok=True)
    ids = [guid(course_id, "course id") for course_id in course_ids]  # safe as file names
    pending = [course_id for course_id in ids if not (folder / f"{course_id}.parquet").exists()]
    schema = fmt.arrow_schema(fmt.ENROLLMENT_FIELDS)

    def pages(course_id: str):
        return hook.client.paginate_tables(
            f"courses/{course_id}/enrollments",
            "enrollments",
            schema,
            {},
            prefetch=False,
            row_model=schemas.CourseEnrollment,  # the provider's shape check, as for every read
        )

    writer = _CourseWriter(folder, options.pseudonymise)
    done_before = len(ids) - len(pending)
    try:
        for course_id, page in tables_by_course(pages, pending, concurrency=options.concurrency):
            writer.add(course_id, page)
            progress.update(
                f"enrollments: course {done_before + writer.courses_done + 1}/{len(ids)}, "
                f"{writer.rows:,} rows this run"
            )
        writer.finish()
    finally:
        writer.abandon()
    progress.done(
        f"enrollments: {len(ids)} courses ({done_before} done before), {writer.rows:,} rows read this run"
    )


class _CourseWriter:
    """Pages of one course after another into their own files; a course's file appears only when
    its last page is written."""

    def __init__(self, folder: Path, pseudonymise: bool) -> None:
        self.folder = folder
        self.pseudonymise = pseudonymise
        self.course_id: str | None = None
        self.writer = None
        self.rows = 0
        self.courses_done = 0

    def add(self, course_id: str, page) -> None:
        import pyarrow.parquet as pq

        if course_id != self.course_id:
            self.finish()
            self.course_id = course_id
            self.writer = pq.ParquetWriter(self._tmp(course_id), page.schema, compression="snappy")
        if self.pseudonymise:
            page = pseudonymise_enrollments(page)
        self.writer.write_table(page)
        self.rows += page.num_rows

    def finish(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self._tmp(self.course_id).replace(self.folder / f"{self.course_id}.parquet")
        self.writer, self.course_id = None, None
        self.courses_done += 1

    def abandon(self) -> None:
        """After an error or interruption: drop the course in progress (it is read again on resume)."""
        if self.writer is not None:
            self.writer.close()
        if self.course_id is not None:
            self._tmp(self.course_id).unlink(missing_ok=True)
        self.writer, self.course_id = None, None

    def _tmp(self, course_id: str) -> Path:
        return self.folder / f"{course_id}.parquet.tmp"


def read_catalogue(hook: Any, out: Path, courses: list[dict], sample: int, progress: Progress) -> None:
    """Sessions, chapters and lessons as seen through up to ``sample`` active enrollments per
    course (the API lists them only per enrollment); skipped when already on disk."""
    targets = [out / name for name in ("sessions.parquet", "chapters.parquet", "lessons.parquet")]
    if all(path.exists() for path in targets):
        progress.done("catalogue: done before, kept")
        return
    sessions: dict[str, dict] = {}
    chapters: dict[str, dict] = {}
    lessons: dict[str, dict] = {}
    for number, course in enumerate(courses, start=1):
        progress.update(f"catalogue: course {number}/{len(courses)}")
        for user_id in _sample_users(out, course["id"], sample):
            if course.get("courseType") == "InstructorLedCourse":
                _add_sessions(hook, user_id, course["id"], sessions)
            else:
                _add_chapters_and_lessons(hook, user_id, course["id"], chapters, lessons)
    for path, rows, fields in zip(
        targets,
        (sessions, chapters, lessons),
        (fmt.SESSION_FIELDS, fmt.CHAPTER_FIELDS, fmt.LESSON_FIELDS),
        strict=True,
    ):
        _write_rows(path, fields, list(rows.values()))
    progress.done(
        f"catalogue: {len(sessions)} sessions, {len(chapters)} chapters, {len(lessons)} lessons seen"
    )


def _sample_users(out: Path, course_id: str, sample: int) -> list[str]:
    """Users of up to ``sample`` active enrollments spread over the course's list."""
    table = _read_parquet(out / fmt.ENROLLMENTS_DIR / f"{course_id}.parquet", columns=["userId", "isActive"])
    active = [row["userId"] for row in table.to_pylist() if row["isActive"] is not False and row["userId"]]
    if not active or sample < 1:
        return []
    step = max(1, len(active) // sample)
    return list(dict.fromkeys(active[::step][:sample]))


def _add_sessions(hook: Any, user_id: str, course_id: str, sessions: dict[str, dict]) -> None:
    for row in _quietly(lambda: hook.list_user_session_enrollments(user_id, course_id)):
        if row.get("sessionId"):
            sessions.setdefault(
                row["sessionId"], {"id": row["sessionId"], "courseId": course_id, "name": row.get("name")}
            )


def _add_chapters_and_lessons(
    hook: Any, user_id: str, course_id: str, chapters: dict[str, dict], lessons: dict[str, dict]
) -> None:
    for row in _quietly(lambda: hook.list_user_chapter_enrollments(user_id, course_id)):
        if row.get("chapterId") and row["chapterId"] not in chapters:
            position = 1 + sum(1 for c in chapters.values() if c["courseId"] == course_id)
            chapters[row["chapterId"]] = {
                "id": row["chapterId"],
                "courseId": course_id,
                "name": row.get("name"),
                "position": position,
            }
    for row in _quietly(lambda: hook.list_user_lesson_enrollments(user_id, course_id)):
        if row.get("lessonId") and row["lessonId"] not in lessons:
            position = 1 + sum(1 for lesson in lessons.values() if lesson["courseId"] == course_id)
            lessons[row["lessonId"]] = {
                "id": row["lessonId"],
                "courseId": course_id,
                "chapterId": row.get("chapterId"),
                "name": row.get("name"),
                "type": row.get("type"),
                "position": position,
            }


def _quietly(read: Callable[[], list[dict]]) -> list[dict]:
    """A sample enrollment that vanished or answers 404 is no reason to stop a snapshot."""
    from absorb_provider.exceptions import AbsorbNotFoundError

    try:
        rows = read()
    except AbsorbNotFoundError:
        return []
    return [row for row in rows if isinstance(row, dict)]


def _write_rows(path: Path, fields, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=fmt.arrow_schema(fields)), tmp, compression="snappy")
    tmp.replace(path)


def _read_parquet(path: Path, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns)


def _rows_in(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


# ---------------------------------------------------------------- the manifest


def write_manifest(
    out: Path,
    identity: dict[str, Any],
    started_at: str,
    seconds: float,
    hook: Any,
    options: SnapshotOptions,
) -> dict[str, Any]:
    files = {str(path.relative_to(out)): fmt.file_sha256(path) for path in fmt.data_files(out)}
    counts = {name.removesuffix(".parquet"): _rows_in(out / name) for name in fmt.TABLE_FILES}
    enrollment_files = sorted((out / fmt.ENROLLMENTS_DIR).glob("*.parquet"))
    counts["enrollments"] = sum(_rows_in(path) for path in enrollment_files)
    counts["enrollment_files"] = len(enrollment_files)
    manifest = {
        **identity,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds_this_run": round(seconds, 1),
        "requests_this_run": hook.client.request_count,
        "counts": counts,
        "files": files,
        "checksum": fmt.overall_checksum(files),
        "catalogue_sample": options.catalogue_sample,
        "notes": [
            "sessions, chapters and lessons are those seen through up to "
            f"{options.catalogue_sample} active enrollments per course (the API lists no catalogue)",
            "not read: session, chapter and lesson enrollments, attempts",
            "a resumed snapshot joins reads made at different times (started_at .. finished_at)",
        ],
    }
    fmt.write_json(out / fmt.MANIFEST, manifest)
    return manifest
