"""read_feed / load_mapping: every kind of unreadable file fails with a message naming the problem."""

from __future__ import annotations

import pytest
from absorb_sync.feed import FeedError, MappingError, load_mapping, read_feed

from .helpers import csv_text, person

CANONICAL = load_mapping(None)


def test_canonical_feed_is_read_with_stripped_values_and_na(write_feed, staff):
    staff[1]["job_title"] = "  Senior Engineer  "
    staff[2]["location"] = ""
    feed = read_feed(write_feed(csv_text(staff)), CANONICAL)
    frame = feed.frame
    assert len(frame) == 10
    assert feed.delimiter == "," and feed.encoding == "utf-8"
    assert frame.loc[1, "job_title"] == "Senior Engineer"
    assert frame.loc[2, "location"] != frame.loc[2, "location"]  # NA
    assert list(frame["_line"]) == list(range(2, 12))
    assert frame["employee_id"].iloc[0] == "E000001"


def test_line_numbers_count_quoted_multiline_fields_and_blank_lines(write_feed):
    text = (
        "employee_id,first_name,last_name,email,department,job_title,location,manager_id,hire_date,"
        "termination_date,status\n"
        'E000001,Ann,"Lee\nSmith\nJones",ann@example.com,Sales,Rep,London,,2020-01-01,,active\n'
        "\n"
        "E000002,Bob,Ray,bob@example.com,Sales,Rep,London,E000001,2020-01-01,,active\n"
        'E000003,Cy,Day,cy@example.com,Sales,"Rep, ""senior""",London,E000001,2020-01-01,,active\n'
    )
    frame = read_feed(write_feed(text), CANONICAL).frame
    assert list(frame["_line"]) == [2, 6, 7]
    assert frame.loc[0, "last_name"] == "Lee\nSmith\nJones"
    assert frame.loc[2, "job_title"] == 'Rep, "senior"'


def test_record_with_wrong_field_count_is_kept_with_a_parse_error(write_feed, staff):
    text = csv_text(staff[:3]).replace("Software Engineer,London", "Software Engineer,London,extra", 1)
    frame = read_feed(write_feed(text), CANONICAL).frame
    assert frame.loc[0, "_parse_error"] == "record has 12 fields, the header has 11"
    assert frame["_parse_error"].iloc[1:].isna().all()


@pytest.mark.parametrize("delimiter", [";", "|", "\t"])
def test_delimiter_is_sniffed(write_feed, staff, delimiter):
    feed = read_feed(write_feed(csv_text(staff, delimiter)), CANONICAL)
    assert feed.delimiter == delimiter
    assert len(feed.frame) == 10 and feed.frame["email"].notna().all()


def test_wrong_configured_delimiter_names_the_likely_one(write_feed, staff):
    mapping = load_mapping({"delimiter": ","})
    with pytest.raises(FeedError, match=r"single column.*wrong delimiter.*try delimiter ';'"):
        read_feed(write_feed(csv_text(staff, ";")), mapping)


def test_single_column_file_fails(write_feed):
    with pytest.raises(FeedError, match="single column"):
        read_feed(write_feed("employee_id\nE000001\n"), CANONICAL)


@pytest.mark.parametrize("content", ["", "   \n\n", b""])
def test_empty_file_fails(write_feed, content):
    with pytest.raises(FeedError, match="is empty"):
        read_feed(write_feed(content), CANONICAL)


def test_header_only_fails(write_feed):
    with pytest.raises(FeedError, match=r"has a header \(line 1\) but no data rows"):
        read_feed(write_feed(csv_text([])), CANONICAL)


def test_missing_mapped_columns_are_named(write_feed, staff):
    text = csv_text(staff).replace("hire_date", "start_date").replace(",email,", ",mail,")
    with pytest.raises(
        FeedError, match=r"missing mapped column\(s\) 'email' \(for email\), 'hire_date'"
    ) as info:
        read_feed(write_feed(text), CANONICAL)
    assert "start_date" in str(info.value)  # lists what the file has


def test_duplicate_headers_fail(write_feed):
    with pytest.raises(FeedError, match=r"duplicate header\(s\) \['email'\]"):
        read_feed(write_feed(csv_text([person("E000001")]).replace("location", "email")), CANONICAL)


def test_non_utf8_bytes_name_the_line(write_feed, staff):
    text = csv_text(staff[:4]).replace("Lee000003", "Ren\u00e9e")
    data = text.encode("cp1252")
    with pytest.raises(FeedError, match=r"line 4 is not valid utf-8: byte 0xe9.*set 'encoding'"):
        read_feed(write_feed(data), CANONICAL)


def test_configured_encoding_reads_cp1252(write_feed, staff):
    text = csv_text(staff[:4]).replace("Lee000003", "Ren\u00e9e")
    feed = read_feed(write_feed(text.encode("cp1252")), load_mapping({"encoding": "cp1252"}))
    assert feed.encoding == "cp1252"
    assert feed.frame.loc[2, "last_name"] == "Ren\u00e9e"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_bom_encodings_are_detected(write_feed, staff, encoding):
    text = csv_text(staff[:3]).replace("Lee000002", "M\u00fcller")
    feed = read_feed(write_feed(text.encode(encoding)), CANONICAL)
    assert feed.encoding == encoding
    assert feed.frame.columns[0] == "employee_id"
    assert feed.frame.loc[1, "last_name"] == "M\u00fcller"


def test_dates_are_normalised_and_bad_ones_kept_raw(write_feed, staff):
    staff[0]["hire_date"] = "2021/03/04"
    staff[1]["hire_date"] = "2021-02-30"
    staff[2]["hire_date"] = "2021-05-06T00:00:00Z"
    frame = read_feed(write_feed(csv_text(staff[:3])), CANONICAL).frame
    assert list(frame["hire_date"]) == ["2021-03-04", "2021-02-30", "2021-05-06"]


def test_configured_date_format(write_feed, staff):
    staff[0]["hire_date"] = "03/04/2021"
    staff[1]["hire_date"] = "13/01/2021"
    mapping = load_mapping({"date_format": "%m/%d/%Y"})
    frame = read_feed(write_feed(csv_text(staff[:2])), mapping).frame
    assert frame.loc[0, "hire_date"] == "2021-03-04"
    assert frame.loc[1, "hire_date"] == "13/01/2021"  # kept raw for the gate to reject


def test_status_values_are_mapped_case_insensitively_and_unknown_kept(write_feed, staff):
    staff[0]["status"] = "ACTIVE"
    staff[1]["status"] = "Retired"
    frame = read_feed(write_feed(csv_text(staff[:2])), CANONICAL).frame
    assert list(frame["status"]) == ["active", "Retired"]


WORKDAY = (
    "Worker_ID,Legal_First_Name,Legal_Last_Name,Work_Email,Supervisory_Organization,Business_Title,"
    "Location,Manager_ID,Hire_Date,Termination_Date,Worker_Status\n"
    "1001,Ann,Lee,ann@example.com,Sales,Account Executive,London,,2020-01-01,,Active\n"
    "1002,Bob,Ray,bob@example.com,Sales,Account Executive,London,1001,2020-01-01,,On Leave\n"
    "1003,Cy,Day,cy@example.com,Sales,Account Executive,London,1001,2020-01-01,2024-02-01,Terminated\n"
)
BAMBOOHR = (
    "employeeNumber,firstName,lastName,workEmail,department,division,jobTitle,location,supervisorEId,"
    "hireDate,terminationDate,status\n"
    "E1,Ann,Lee,ann@example.com,Sales,EMEA,Rep,London,,2020-01-01,,Active\n"
    "E2,Bob,Ray,bob@example.com,Sales,EMEA,Rep,London,E1,2020-01-01,2024-01-01,Inactive\n"
)
ADP = (
    "associateOID|workerID|givenName|familyName|workEmail|homeDepartment|jobTitle|homeWorkLocation|"
    "reportsToWorkerID|originalHireDate|rehireDate|terminationDate|workerStatus\n"
    "G1|A1|Ann|Lee|ann@example.com|Sales|Rep|London||2020-01-01|||Active\n"
    "G2|A2|Bob|Ray|bob@example.com|Sales|Rep|London|A1|2020-01-01|||Inactive\n"
    "G3|A3|Cy|Day|cy@example.com|Sales|Rep|London|A1|2020-01-01||2023-05-01|Terminated\n"
    "G4|A4|Di|Fox|di@example.com|Sales|Rep|London|A1|2020-01-01|||Leave\n"
)


@pytest.mark.parametrize(
    ("preset", "text", "ids", "statuses"),
    [
        ("workday", WORKDAY, ["1001", "1002", "1003"], ["active", "leave", "terminated"]),
        ("bamboohr", BAMBOOHR, ["E1", "E2"], ["active", "terminated"]),
        ("adp", ADP, ["A1", "A2", "A3", "A4"], ["active", "leave", "terminated", "leave"]),
    ],
)
def test_presets_map_vendor_exports(write_feed, preset, text, ids, statuses):
    frame = read_feed(write_feed(text), load_mapping(preset)).frame
    assert list(frame["employee_id"]) == ids
    assert list(frame["status"]) == statuses
    assert frame["email"].notna().all()
    assert frame.loc[1, "manager_id"] == ids[0]


def test_mapping_from_yaml_file_and_dict_override(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("preset: workday\ncolumns:\n  email: Email_Address\ndate_format: '%d.%m.%Y'\n")
    mapping = load_mapping(path)
    assert mapping.columns["email"] == "Email_Address"
    assert mapping.columns["employee_id"] == "Worker_ID"
    assert mapping.date_format == "%d.%m.%Y"
    assert load_mapping({"preset": "adp", "encoding": "cp1252"}).encoding == "cp1252"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("peoplesoft", "not a preset"),
        ({"columns": {"employee_number": "x"}}, r"unknown canonical column\(s\) \['employee_number'\]"),
        ({"status_values": {"Gone": "deleted"}}, "'Gone' maps to 'deleted'"),
        ({"colums": {}}, r"unknown key\(s\) \['colums'\]"),
        ({"encoding": "klingon"}, "unknown encoding"),
        ({"delimiter": ";;"}, "single character"),
        ({"columns": {"email": None}}, r"must name a source header for \['email'\]"),
    ],
)
def test_bad_mappings_are_named(spec, message):
    with pytest.raises(MappingError, match=message):
        load_mapping(spec)


def test_missing_file_fails(tmp_path):
    with pytest.raises(FeedError, match="does not exist"):
        read_feed(tmp_path / "nope.csv", CANONICAL)


def test_feed_from_object_storage(staff):
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath("memory://absorb-feeds/hr/feed.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_text(staff, ";").encode("utf-8"))
    feed = read_feed(path, CANONICAL)
    assert feed.delimiter == ";" and len(feed.frame) == 10
    assert feed.source == "memory://absorb-feeds/hr/feed.csv"
    with pytest.raises(FeedError, match="does not exist"):
        read_feed(ObjectStoragePath("memory://absorb-feeds/hr/missing.csv"), CANONICAL)


def _render(fields: list[str], delimiter: str) -> str:
    import csv as csv_module
    import io

    buffer = io.StringIO()
    csv_module.writer(buffer, delimiter=delimiter, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def test_line_numbers_match_the_physical_lines_for_random_multiline_records(tmp_path):
    """Property: each row's _line is where its record starts, whatever quoting and newlines precede it."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from .helpers import HEADER

    columns = HEADER.split(",")
    text_value = st.text(alphabet="ab ,;\n\"'", min_size=0, max_size=8)

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(st.tuples(text_value, text_value), min_size=1, max_size=8), st.sampled_from([",", ";", "|"])
    )
    def check(pairs, delimiter):
        chunks, starts, line = [_render(columns, delimiter)], [], 2
        for number, (last_name, job_title) in enumerate(pairs, start=1):
            row = person(f"E{number:06d}", last_name=f"L{last_name}", job_title=f"T{job_title}")
            rendered = _render(["" if row[c] is None else row[c] for c in columns], delimiter)
            starts.append(line)
            line += rendered.count("\n")
            chunks.append(rendered)
        path = tmp_path / "random.csv"
        path.write_text("".join(chunks), encoding="utf-8")
        frame = read_feed(path, load_mapping({"delimiter": delimiter})).frame
        assert list(frame["_line"]) == starts
        assert list(frame["last_name"]) == [f"L{a}".strip() for a, _ in pairs]

    check()


def test_utf16_without_bom_is_named_and_readable_when_configured(write_feed, staff):
    data = csv_text(staff[:3]).encode("utf-16-le")
    with pytest.raises(FeedError, match="looks like UTF-16 without a byte-order mark"):
        read_feed(write_feed(data), CANONICAL)
    feed = read_feed(write_feed(data), load_mapping({"encoding": "utf-16-le"}))
    assert list(feed.frame["employee_id"]) == ["E000001", "E000002", "E000003"]


def test_feed_over_the_byte_limit_is_refused_before_parsing(write_feed, staff):
    path = write_feed(csv_text(staff))
    size = path.stat().st_size
    with pytest.raises(
        FeedError, match=rf"is {size:,} bytes: the limit is {size - 1:,} bytes.*ABSORB_MAX_FEED_BYTES"
    ):
        read_feed(path, CANONICAL, max_bytes=size - 1)
    assert len(read_feed(path, CANONICAL, max_bytes=size).frame) == 10


def test_byte_limit_from_the_environment(write_feed, staff, monkeypatch):
    path = write_feed(csv_text(staff))
    monkeypatch.setenv("ABSORB_MAX_FEED_BYTES", "100")
    with pytest.raises(FeedError, match="the limit is 100 bytes"):
        read_feed(path, CANONICAL)
    monkeypatch.setenv("ABSORB_MAX_FEED_BYTES", "lots")
    with pytest.raises(FeedError, match="ABSORB_MAX_FEED_BYTES='lots' is not a whole number"):
        read_feed(path, CANONICAL)


def test_default_byte_limit_refuses_a_sparse_200_mb_file_at_once(tmp_path):
    import time

    path = tmp_path / "huge.csv"
    with path.open("wb") as handle:  # a sparse file: 200 MB on paper, nothing to read
        handle.truncate(200 * 1024 * 1024)
    started = time.perf_counter()
    with pytest.raises(FeedError, match=r"209,715,200 bytes: the limit is 104,857,600 bytes \(100 MiB\)"):
        read_feed(path, CANONICAL)
    assert time.perf_counter() - started < 1.0


def test_object_storage_feed_over_the_limit_is_refused(staff):
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath("memory://absorb-feeds/hr/big.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_text(staff).encode("utf-8"))
    with pytest.raises(FeedError, match="the limit is 50 bytes"):
        read_feed(path, CANONICAL, max_bytes=50)


def test_feed_over_the_row_limit_is_refused_naming_the_line(write_feed, monkeypatch):
    staff = [person(f"E{n:06d}") for n in range(1, 251)]
    path = write_feed(csv_text(staff))
    with pytest.raises(FeedError, match=r"more than 200 data rows \(line 202\).*ABSORB_MAX_FEED_ROWS"):
        read_feed(path, CANONICAL, max_rows=200)
    monkeypatch.setenv("ABSORB_MAX_FEED_ROWS", "249")
    with pytest.raises(FeedError, match="more than 249 data rows"):
        read_feed(path, CANONICAL)
    monkeypatch.setenv("ABSORB_MAX_FEED_ROWS", "250")
    assert len(read_feed(path, CANONICAL).frame) == 250


def test_large_feed_is_read_in_chunks_with_the_same_result(write_feed, monkeypatch):
    import absorb_sync.feed as feed_module

    staff = [person(f"E{n:06d}", hire_date=f"2020-01-{n % 28 + 1:02d}") for n in range(1, 26)]
    staff[7]["hire_date"] = "2021-02-30"
    path = write_feed(csv_text(staff))
    whole = read_feed(path, CANONICAL).frame
    monkeypatch.setattr(feed_module, "_CHUNK_ROWS", 4)
    chunked = read_feed(path, CANONICAL).frame
    assert chunked.equals(whole)
    assert list(chunked["_line"]) == list(range(2, 27))
    assert chunked.loc[7, "hire_date"] == "2021-02-30" and chunked.loc[8, "hire_date"] == "2020-01-10"
