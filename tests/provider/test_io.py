"""Operator file I/O: input validation naming rows, formats, batched export with flat row groups."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from absorb_provider.io import (
    COURSE_ENROLLMENT_FIELDS,
    InputError,
    enrollment_items,
    read_records,
    stream_to_file,
    write_outcomes,
)

USER = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
COURSE = "0e984725-c51c-4bf4-9960-e1c80e27aba0"


def test_enrollment_items_normalise_and_name_bad_rows():
    items = enrollment_items(
        [
            {
                "user_id": USER.upper(),
                "course_id": COURSE,
                "due_date": "2030-01-02T10:00:00Z",
                "re_enroll": "yes",
            },
            {"user_id": USER, "course_id": COURSE, "due_date": "", "re_enroll": None, "key": "emp-7"},
        ]
    )
    assert items[0] == {
        "user_id": USER,
        "course_id": COURSE,
        "due_date": "2030-01-02",
        "re_enroll": True,
        "key": 1,
    }
    assert items[1]["key"] == "emp-7" and items[1]["due_date"] is None and items[1]["re_enroll"] is False
    with pytest.raises(InputError) as bad:
        enrollment_items(
            [
                {"user_id": USER, "course_id": COURSE},
                {"user_id": "x", "course_id": COURSE},
                {"user_id": USER, "course_id": COURSE, "due_date": "soon"},
                {"user_id": USER, "course_id": COURSE, "re_enroll": "maybe"},
            ],
            "feed.csv",
        )
    message = str(bad.value)
    assert "feed.csv: 3 invalid row(s), nothing was applied" in message
    assert "row 2: user_id must be a GUID" in message and "row 3: due_date" in message and "row 4:" in message


def test_read_records_csv_json_lines_and_parquet(tmp_path):
    (tmp_path / "a.csv").write_text(f"user_id,course_id\n{USER},{COURSE}\n")
    (tmp_path / "a.json").write_text(json.dumps([{"user_id": USER, "course_id": COURSE}]))
    (tmp_path / "a.jsonl").write_text(json.dumps({"user_id": USER, "course_id": COURSE}) + "\n")
    pq.write_table(pa.Table.from_pylist([{"user_id": USER, "course_id": COURSE}]), tmp_path / "a.parquet")
    for name in ("a.csv", "a.json", "a.jsonl", "a.parquet"):
        assert read_records(tmp_path / name) == [{"user_id": USER, "course_id": COURSE}], name
    with pytest.raises(InputError, match="does not exist"):
        read_records(tmp_path / "missing.csv")
    (tmp_path / "a.xlsx").write_text("")
    with pytest.raises(InputError, match="unsupported format"):
        read_records(tmp_path / "a.xlsx")


def test_stream_to_file_writes_every_batch_as_a_row_group(tmp_path):
    rows = (
        {"id": str(n), "status": n % 13, "score": n / 2, "isActive": n % 2 == 0, "dateEdited": edited}
        for n, edited in enumerate(
            ["2026-01-02T03:04:05.1234567Z", "2026-01-02", None, "2026-01-02T05:04:05+02:00"] * 25
        )
    )
    count = stream_to_file(rows, tmp_path / "e.parquet", COURSE_ENROLLMENT_FIELDS, batch_rows=7)
    parquet = pq.ParquetFile(tmp_path / "e.parquet")
    assert count == parquet.metadata.num_rows == 100
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [7] * 14 + [2]
    edited = parquet.read().column("dateEdited").to_pylist()[:4]
    assert [e.isoformat() if e else None for e in edited] == [
        "2026-01-02T03:04:05.123456+00:00",
        "2026-01-02T00:00:00+00:00",
        None,
        "2026-01-02T03:04:05+00:00",
    ]


def test_failed_stream_leaves_no_partial_file(tmp_path):
    def rows():
        yield {"id": "1"}
        raise RuntimeError("read failed midway")

    with pytest.raises(RuntimeError):
        stream_to_file(rows(), tmp_path / "e.csv", COURSE_ENROLLMENT_FIELDS, batch_rows=1)
    assert not (tmp_path / "e.csv").exists()


def test_outcome_file_formats(tmp_path):
    outcomes = [
        {
            "key": 1,
            "user_id": USER,
            "course_id": COURSE,
            "enrollment_id": None,
            "outcome": "failed",
            "error": "x",
        }
    ]
    assert "failed" in write_outcomes(tmp_path / "o" / "a.csv", outcomes).read_text()
    assert json.loads(write_outcomes(tmp_path / "a.jsonl", outcomes).read_text())["error"] == "x"
    assert (
        pq.read_table(
            tmp_path / "a.parquet" if write_outcomes(tmp_path / "a.parquet", outcomes) else ""
        ).num_rows
        == 1
    )


def test_tables_by_course_reads_courses_concurrently_in_course_order(hook):
    from absorb_provider.io import tables_by_course

    courses = sorted(c["id"] for c in hook.list_courses())
    seen: list[str] = []
    by_course: dict[str, list[str]] = {}
    for course_id, page in tables_by_course(
        lambda c: hook.course_enrollment_tables(c, page_size=7, prefetch=False), courses, concurrency=3
    ):
        if not seen or seen[-1] != course_id:
            seen.append(course_id)
        by_course.setdefault(course_id, []).extend(page.column("id").to_pylist())
    assert seen == courses  # course after course, each once, in the order given
    for course_id in courses:
        assert by_course[course_id] == [e["id"] for e in hook.list_course_enrollments(course_id)]


def test_tables_by_course_raises_a_failed_read_in_the_consumer(hook):
    from absorb_provider.exceptions import AbsorbApiError
    from absorb_provider.io import tables_by_course

    courses = sorted(c["id"] for c in hook.list_courses())[:2]
    missing = "00000000-0000-0000-0000-0000000000ff"
    got = []
    with pytest.raises(AbsorbApiError):
        for course_id, _ in tables_by_course(
            lambda c: hook.course_enrollment_tables(c, prefetch=False), [*courses, missing], concurrency=2
        ):
            got.append(course_id)
    assert set(got) == set(courses)  # the courses before it were delivered first


def test_tables_by_course_on_error_skips_a_failed_course_and_goes_on(hook):
    from absorb_provider.exceptions import AbsorbIncompleteReadError
    from absorb_provider.io import tables_by_course

    courses = sorted(c["id"] for c in hook.list_courses())[:3]
    failing = courses[1]

    def fetch(course_id):
        pages = hook.course_enrollment_tables(course_id, page_size=5, prefetch=False)
        if course_id != failing:
            yield from pages
            return
        yield next(iter(pages))  # one page, then the short read the client reports
        raise AbsorbIncompleteReadError(f"/courses/{course_id}/enrollments", 10, 5)

    failed: dict[str, BaseException] = {}

    def skip_short_reads(course_id: str, error: BaseException) -> bool:
        failed[course_id] = error
        return isinstance(error, AbsorbIncompleteReadError)

    delivered = [c for c, _ in tables_by_course(fetch, courses, concurrency=2, on_error=skip_short_reads)]
    assert list(failed) == [failing]
    assert delivered.count(failing) == 1  # the page before the error, for the caller to drop
    assert [c for c in dict.fromkeys(delivered) if c != failing] == [courses[0], courses[2]]
    with pytest.raises(AbsorbIncompleteReadError):  # a handler that declines re-raises
        for _ in tables_by_course(fetch, courses, concurrency=2, on_error=lambda c, e: False):
            pass


def test_parse_timestamps_turns_unreadable_values_into_nulls():
    from absorb_provider.io import parse_timestamps

    parsed = parse_timestamps(pa.array(["2026-01-02T03:04:05+02:00", "not a date", None, "2026-01-02"]))
    assert [v.isoformat() if v else None for v in parsed.to_pylist()] == [
        "2026-01-02T01:04:05+00:00",
        None,
        None,
        "2026-01-02T00:00:00+00:00",
    ]


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_escape_arrow_table_escapes_string_and_large_string_columns(kind):
    from absorb_provider.csv_safety import escape_arrow_table

    cells = ["=HYPERLINK(1)", "Safety", None, "-5", "-", "\uff1dA", "+1e3", "@cmd", "a=b"]
    table = pa.table({"text": pa.array(cells, kind), "n": pa.array(range(len(cells)), pa.int64())})
    escaped = escape_arrow_table(table)
    assert escaped.schema == table.schema  # large_string stays large_string
    assert escaped.column("text").to_pylist() == [
        "'=HYPERLINK(1)",
        "Safety",
        None,
        "-5",
        "'-",
        "'\uff1dA",
        "+1e3",
        "'@cmd",
        "a=b",
    ]
    assert escaped.column("n").equals(table.column("n"))


def test_concurrent_page_reads_give_the_serial_read_with_the_same_requests(hook):
    """Pages requested several at a time come back in order, each row once, and cost no extra request."""
    for course_id in sorted(c["id"] for c in hook.list_courses()):
        before = hook.client.request_count
        serial = [
            p.column("id").to_pylist()
            for p in hook.course_enrollment_tables(course_id, page_size=3, prefetch=False)
        ]
        middle = hook.client.request_count
        concurrent = [
            p.column("id").to_pylist()
            for p in hook.course_enrollment_tables(course_id, page_size=3, prefetch=False, concurrency=4)
        ]
        assert concurrent == serial
        assert hook.client.request_count - middle == middle - before


@pytest.mark.parametrize("change", ["grows", "shrinks"])
def test_concurrent_page_reads_report_a_course_that_changed_mid_read(write_hook, change):
    """Rows added or removed after the first page: the read ends in AbsorbIncompleteReadError, as a
    serial read does, and is never cut silently at the pages the first total promised."""
    from absorb_provider.exceptions import AbsorbIncompleteReadError

    course_id, enrollments = max(
        ((c["id"], list(write_hook.list_course_enrollments(c["id"]))) for c in write_hook.list_courses()),
        key=lambda pair: len(pair[1]),
    )
    count = len(enrollments)
    # whole pages only: the pages the total promises are all full, so a grown course needs a read
    # past them to be noticed
    page_size = max(size for size in range(2, count // 3 + 1) if count % size == 0)
    pages = write_hook.course_enrollment_tables(course_id, page_size=page_size, prefetch=False, concurrency=3)
    next(pages)  # the first page (and its total) is read; the other pages are not asked for yet
    if change == "grows":
        enrolled = {e["userId"] for e in enrollments}
        newcomer = next(u["id"] for u in write_hook.list_users() if u["id"] not in enrolled)
        write_hook.create_enrollment(newcomer, course_id)
    else:
        write_hook.unenroll([enrollments[-1]["id"]])
    with pytest.raises(AbsorbIncompleteReadError):
        list(pages)


def test_concurrent_page_reads_stop_when_the_reader_stops(hook):
    """Abandoning a read part-way cancels the pages not yet requested."""
    course_id = max(
        (c["id"] for c in hook.list_courses()), key=lambda c: len(list(hook.list_course_enrollments(c)))
    )
    total = len(list(hook.list_course_enrollments(course_id)))
    before = hook.client.request_count
    pages = hook.course_enrollment_tables(course_id, page_size=1, prefetch=False, concurrency=2)
    next(pages)
    next(pages)
    pages.close()
    assert hook.client.request_count - before <= 4 < total


def test_write_behind_writes_in_order_and_hands_a_write_error_to_the_producer():
    import threading

    from absorb_provider.io import WriteBehind

    written: list[int] = []
    with WriteBehind(written.append) as behind:
        for item in range(50):
            behind.put(item)
    assert written == list(range(50))

    def fail_on_three(item: int) -> None:
        if item == 3:
            raise OSError("disk full")
        written.append(item)

    written.clear()
    behind = WriteBehind(fail_on_three)
    with pytest.raises(OSError, match="disk full"):  # raised by put or at the latest by close
        for item in range(1000):
            behind.put(item)
        behind.close()
    assert written == [0, 1, 2]  # nothing written after the failed write
    assert not any(t.name == "absorb-write-behind" and t.is_alive() for t in threading.enumerate())


def test_write_behind_abort_waits_for_the_write_under_way_and_drops_the_rest():
    """After a producer's own error nothing is written any more, so the caller may delete the files."""
    import threading

    from absorb_provider.io import WriteBehind

    started, release, written = threading.Event(), threading.Event(), []

    def slow(item: int) -> None:
        started.set()
        release.wait(5)
        written.append(item)

    with pytest.raises(ValueError, match="feed broke"), WriteBehind(slow, depth=2) as behind:
        behind.put(1)
        behind.put(2)
        behind.put(3)
        started.wait(5)
        threading.Timer(0.2, release.set).start()
        raise ValueError("feed broke")
    assert written == [1]  # the write under way finished; the queued ones were dropped
