"""Files the operators read and write: enrollment inputs, per-row outcomes, streamed exports.

Paths are ``ObjectStoragePath`` (local ``file://`` or any fsspec store behind an Airflow
connection). Exports are written in row-group batches with pyarrow so memory stays flat.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from typing import Any

from airflow.sdk import ObjectStoragePath

from absorb_provider.csv_safety import escape_arrow_table, escape_row
from absorb_provider.validation import as_utc, guid, iso_utc

ENROLL_COLUMNS = ("user_id", "course_id", "due_date", "re_enroll", "key")
OUTCOME_COLUMNS = ("key", "user_id", "course_id", "enrollment_id", "outcome", "error")
TRUE_WORDS = {"true", "1", "yes", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "n", "f", ""}
MAX_LISTED_PROBLEMS = 20


class InputError(ValueError):
    """The input file or rows are unusable; nothing was written to Absorb."""


def as_path(value: str | ObjectStoragePath) -> ObjectStoragePath:
    if isinstance(value, ObjectStoragePath):
        return value
    text = str(value)
    return ObjectStoragePath(text if "://" in text else f"file://{text}")


def file_format(path: ObjectStoragePath, explicit: str | None = None) -> str:
    fmt = (explicit or path.suffix.lstrip(".")).lower()
    fmt = {"jsonl": "json", "ndjson": "json", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in ("csv", "json", "parquet"):
        raise InputError(f"{path}: unsupported format {fmt!r}; use .csv, .json/.jsonl or .parquet")
    return fmt


def read_records(path: str | ObjectStoragePath, fmt: str | None = None) -> list[dict[str, Any]]:
    """All rows of a CSV, JSON (array or JSON lines) or Parquet file as dicts."""
    path = as_path(path)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    kind = file_format(path, fmt)
    if kind == "parquet":
        import pyarrow.parquet as pq

        with path.open("rb") as handle:
            return pq.read_table(handle).to_pylist()
    text = path.read_text(encoding="utf-8-sig")
    if kind == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("["):
        data = json.loads(stripped)
    else:
        data = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    if not all(isinstance(row, dict) for row in data):
        raise InputError(f"{path}: every JSON record must be an object")
    return data


def _bool(value: Any, row: int) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"re_enroll must be true/false, got {value!r}")


def _due(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas-written files
        return None
    if isinstance(value, datetime | date):
        return iso_utc(value, "due_date")[:10]
    return iso_utc(str(value), "due_date")[:10]


def enrollment_items(records: Iterable[dict[str, Any]], source: str = "input") -> list[dict[str, Any]]:
    """Validates rows into ``bulk_enroll`` items; raises InputError naming every bad row (1-based).

    Nothing is written when any row is bad, so a fixed file can simply be re-run.
    """
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, record in enumerate(records, start=1):
        try:
            items.append(
                {
                    "user_id": guid(record.get("user_id"), "user_id"),
                    "course_id": guid(record.get("course_id"), "course_id"),
                    "due_date": _due(record.get("due_date")),
                    "re_enroll": _bool(record.get("re_enroll"), number),
                    "key": record.get("key") if record.get("key") not in (None, "") else number,
                }
            )
        except (ValueError, AttributeError) as exc:
            problems.append(f"row {number}: {exc}")
    if problems:
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = (
            f" (and {len(problems) - MAX_LISTED_PROBLEMS} more)"
            if len(problems) > MAX_LISTED_PROBLEMS
            else ""
        )
        raise InputError(f"{source}: {len(problems)} invalid row(s), nothing was applied: {listed}{more}")
    return items


def write_outcomes(path: str | ObjectStoragePath, outcomes: list[dict[str, Any]]) -> ObjectStoragePath:
    """Writes per-row outcomes as CSV (or JSON lines / Parquet by suffix); returns the path."""
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = file_format(path) if path.suffix else "csv"
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(name, pa.string()) for name in OUTCOME_COLUMNS])
        rows = [{name: _text(row.get(name)) for name in OUTCOME_COLUMNS} for row in outcomes]
        with path.open("wb") as handle:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), handle)
    elif kind == "json":
        with path.open("w") as handle:
            for row in outcomes:
                handle.write(
                    json.dumps({name: row.get(name) for name in OUTCOME_COLUMNS}, default=str) + "\n"
                )
    else:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=OUTCOME_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(escape_row(row) for row in outcomes)
    return path


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --- streamed exports ---------------------------------------------------------------------------

COURSE_ENROLLMENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("courseId", "string"),
    ("courseName", "string"),
    ("userId", "string"),
    ("fullName", "string"),
    ("jobTitle", "string"),
    ("status", "int"),
    ("progress", "float"),
    ("score", "float"),
    ("isActive", "bool"),
    ("dateAdded", "timestamp"),
    ("dateStarted", "timestamp"),
    ("dateCompleted", "timestamp"),
    ("dateDue", "timestamp"),
    ("dateExpires", "timestamp"),
    ("dateEdited", "timestamp"),
    ("timeSpent", "string"),
    ("timeSpentTicks", "int"),
    ("credits", "float"),
    ("courseVersionId", "string"),
    ("enrollmentKeyId", "string"),
    ("certificateId", "string"),
    ("acceptedTermsAndConditions", "bool"),
    ("courseCollectionId", "string"),
)

LESSON_ENROLLMENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("courseEnrollmentId", "string"),
    ("chapterEnrollmentId", "string"),
    ("chapterId", "string"),
    ("lessonId", "string"),
    ("name", "string"),
    ("type", "string"),
    ("userId", "string"),
    ("fullName", "string"),
    ("status", "int"),
    ("progress", "float"),
    ("score", "float"),
    ("attempts", "int"),
    ("failures", "int"),
    ("lastAttempt", "timestamp"),
    ("timeSpent", "string"),
    ("dateEnrolled", "timestamp"),
    ("dateStarted", "timestamp"),
    ("dateCompleted", "timestamp"),
    ("dateEdited", "timestamp"),
    ("dateAdded", "timestamp"),
)


def _arrow_types() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }


def raw_arrow_schema(fields: tuple[tuple[str, str], ...]):
    """The schema rows are read with: timestamps still as text (parsed column-wise later)."""
    import pyarrow as pa

    types = _arrow_types()
    return pa.schema([(name, pa.string() if kind == "timestamp" else types[kind]) for name, kind in fields])


class BatchedTableWriter:
    """Streams dict rows to Parquet (one row group per batch) or CSV with a fixed schema."""

    def __init__(
        self,
        path: str | ObjectStoragePath,
        fields: tuple[tuple[str, str], ...],
        fmt: str | None = None,
        batch_rows: int = 20_000,
    ) -> None:
        import pyarrow as pa

        self.path = as_path(path)
        self.format = file_format(self.path, fmt)
        if self.format == "json":
            raise InputError("exports are written as parquet or csv")
        self.fields = fields
        self.batch_rows = batch_rows
        arrow_types = _arrow_types()
        self.schema = pa.schema([(name, arrow_types[kind]) for name, kind in fields])
        # rows are first read with timestamps as text, then parsed column-wise in C++
        self._raw_schema = raw_arrow_schema(fields)
        self.rows_written = 0
        self._rows: list[dict[str, Any]] = []
        self._tables: list[Any] = []
        self._table_rows = 0
        self._handle = None
        self._writer = None

    def __enter__(self) -> BatchedTableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("wb")
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._handle, self.schema, compression="snappy")
        else:
            import pyarrow.csv as pacsv

            self._writer = pacsv.CSVWriter(self._handle, self.schema)
        return self

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        pending = self._rows
        for row in rows:
            pending.append(row)
            if len(pending) >= self.batch_rows:
                self._flush()

    def write_tables(self, tables: Iterable[Any]) -> None:
        """Appends pages already parsed into Arrow (``raw_arrow_schema`` columns)."""
        for table in tables:
            self._tables.append(table)
            self._table_rows += table.num_rows
            if self._table_rows >= self.batch_rows:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._tables.append(pa.Table.from_pylist(self._rows, schema=self._raw_schema))
            self._rows.clear()
        if not self._tables:
            return
        raw = pa.concat_tables(self._tables).select([name for name, _ in self.fields])
        columns = [
            _timestamps(raw.column(name)) if kind == "timestamp" else raw.column(name)
            for name, kind in self.fields
        ]
        table = pa.Table.from_arrays(columns, schema=self.schema)
        self._writer.write_table(escape_arrow_table(table) if self.format == "csv" else table)
        self.rows_written += raw.num_rows
        self._tables.clear()
        self._table_rows = 0

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._flush()
            if self._writer is not None:
                self._writer.close()
        finally:
            if self._handle is not None:
                self._handle.close()
        if exc_type is not None:
            self.path.unlink(missing_ok=True)  # never leave a half export that looks complete


def _timestamps(raw, errors: str = "raise"):
    """ISO 8601 text (``Z``, ``+00:00``, 7-digit .NET fractions, bare dates) to UTC timestamps.

    Vectorised for the usual UTC forms; falls back to per-value parsing for other offsets.
    ``errors="null"`` turns unreadable values into nulls instead of raising.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(raw, pa.Array | pa.ChunkedArray):
        raw = pa.array(raw, type=pa.string())
    try:
        naive = pc.replace_substring_regex(raw, r"(Z|[+-]00:?00)$", "")
        naive = pc.replace_substring_regex(naive, r"(\.\d{6})\d+", r"\1")
        return pc.assume_timezone(pc.cast(naive, pa.timestamp("us")), "UTC")
    except pa.ArrowInvalid:
        parse = _timestamp_or_none if errors == "null" else _timestamp
        parsed = [None if v is None else parse(v) for v in raw.to_pylist()]
        return pa.array(parsed, type=pa.timestamp("us", tz="UTC"))


def parse_timestamps(raw):
    """ISO 8601 text to UTC timestamps (``timestamp[us, UTC]``); unreadable values become null."""
    return _timestamps(raw, errors="null")


def _timestamp(value: str):
    return as_utc(_six_digit_fraction(value), "timestamp")


def _timestamp_or_none(value: str):
    try:
        return _timestamp(value)
    except ValueError:
        return None


def _six_digit_fraction(value: str) -> str:
    import re

    return re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))


def stream_to_file(
    rows: Iterator[dict[str, Any]],
    path: str | ObjectStoragePath,
    fields: tuple[tuple[str, str], ...],
    fmt: str | None = None,
    batch_rows: int = 20_000,
) -> int:
    """Writes dict rows; returns the row count (the file is removed if the stream fails)."""
    with BatchedTableWriter(path, fields, fmt, batch_rows) as writer:
        writer.write_rows(rows)
    return writer.rows_written


def stream_tables_to_file(
    tables: Iterator[Any],
    path: str | ObjectStoragePath,
    fields: tuple[tuple[str, str], ...],
    fmt: str | None = None,
    batch_rows: int = 20_000,
) -> int:
    """Writes Arrow pages (see ``AbsorbHook.course_enrollment_tables``); returns the row count."""
    with BatchedTableWriter(path, fields, fmt, batch_rows) as writer:
        writer.write_tables(tables)
    return writer.rows_written


def use_system_allocator() -> None:
    """Take this process's later Arrow allocations from the system allocator, in at most two
    malloc arenas.

    pyarrow's default pool (mimalloc) keeps freed pages for reuse. A task that streams pages
    allocates and frees Arrow buffers per HTTP page, and mimalloc then holds them resident: at
    the large seed the export's extract peaked at 434 MB with it and 377-380 MB after this call,
    and was no faster. glibc gives each new thread an arena of its own (up to 8 per core), whose
    freed memory the other threads cannot reuse: with the extract's page readers and write-behind
    thread that was 411-414 MB, and 379 MB with two arenas, at the same speed. The tasks that
    stream call this first.
    """
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    _limit_malloc_arenas(2)


def _limit_malloc_arenas(count: int) -> None:
    """glibc's ``mallopt(M_ARENA_MAX, count)``; nothing where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_arena_max = -8
    mallopt(m_arena_max, count)


def tables_by_course(
    fetch: Any,
    course_ids: Iterable[str],
    *,
    concurrency: int = 4,
    depth: int = 2,
    on_error: Callable[[str, BaseException], bool] | None = None,
) -> Iterator[tuple[str, Any]]:
    """``(course_id, page)`` for every page of every course, course after course, in order.

    ``fetch(course_id)`` yields a course's pages (e.g. ``AbsorbHook.course_enrollment_tables``
    with ``prefetch=False``). Up to ``concurrency`` courses are read at once in background
    threads, each at most ``depth`` pages ahead of the consumer, so memory stays bounded
    (``concurrency * (depth + 1)`` pages) while the consumer still sees one course at a time.
    The client's rate limiter is shared, so the requests per second stay within its limit.
    An error in any read is raised in the consumer; stopping early stops the readers.

    ``on_error(course_id, error)``, when given, is called in the consumer instead (after the pages
    of that course yielded before the error); returning True skips the rest of that course and
    goes on with the next one (the caller drops its pages: a partial course is no read), False
    raises the error as without it.
    """
    import queue
    import threading

    courses = list(course_ids)
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    stop = threading.Event()
    slots = threading.Semaphore(concurrency)
    queues = [queue.Queue(maxsize=depth) for _ in courses]
    end = object()

    def put(target: queue.Queue, item: tuple) -> bool:
        while not stop.is_set():
            try:
                target.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(index: int) -> None:
        target = queues[index]
        try:
            for page in fetch(courses[index]):
                if not put(target, (None, page)):
                    return
            put(target, (None, end))
        except BaseException as exc:  # handed to the consumer, raised there
            put(target, (exc, None))

    def dispatch() -> None:
        for index in range(len(courses)):
            while not slots.acquire(timeout=0.1):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            threading.Thread(target=read, args=(index,), name="absorb-course-reader", daemon=True).start()

    threading.Thread(target=dispatch, name="absorb-course-dispatch", daemon=True).start()
    try:
        for index, course_id in enumerate(courses):
            while True:
                error, page = queues[index].get()
                if error is not None:
                    if on_error is not None and on_error(course_id, error):
                        break
                    raise error
                if page is end:
                    break
                yield course_id, page
            queues[index] = None  # type: ignore[call-overload]
            slots.release()
    finally:
        stop.set()


class WriteBehind:
    """Runs ``write(item)`` for every item ``put`` here, in order, in one background thread, at
    most ``depth`` items behind the producer: a stream's encoding and writing (Parquet, CSV, all
    C++ that lets go of the GIL) overlaps the producer's next batch instead of following it.

    ``close()`` waits for the writes and raises the first error of one; ``put`` raises it too,
    as soon as it is known, so the producer stops early. ``abort()`` (after an error of the
    producer's own) drops what is queued and waits for the write under way, so no file is
    written to after the caller moves on. Use as a context manager: a clean exit closes, an
    exception aborts.
    """

    def __init__(self, write: Callable[[Any], None], depth: int = 2) -> None:
        import queue
        import threading

        self._write = write
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="absorb-write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._items.get()
            if item is _STOP or self._stop.is_set():
                return
            try:
                self._write(item)
            except BaseException as exc:  # handed to the producer
                self._error = exc
                self._stop.set()
                return

    def put(self, item: Any) -> None:
        import queue

        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise()

    def close(self) -> None:
        """Waits for every write; raises the first error of one."""
        self.put(_STOP)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stops after the write under way; queued items are dropped."""
        import queue

        self._stop.set()
        try:
            while True:
                self._items.get_nowait()
        except queue.Empty:
            pass
        self._items.put(_STOP)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
        if self._stop.is_set():
            raise RuntimeError("write-behind stopped")

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


_STOP = object()
