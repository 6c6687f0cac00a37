"""Read an HR feed file into canonical columns, keeping every row's physical line number.

Why this module is strict: a mis-decoded or mis-split file read "successfully" is how syncs end up
deprovisioning people. Table-level problems (empty file, wrong delimiter, missing columns,
undecodable bytes) raise :class:`FeedError`; row-level problems (a record with the wrong number of
fields, unparseable dates, unknown status values) are kept in the frame for the feed gate to reject
with the row's line number.

Size: a feed over ``max_bytes`` (default 100 MiB, env ``ABSORB_MAX_FEED_BYTES``) is refused before
it is read, one with more than ``max_rows`` data rows (default 1,000,000, env
``ABSORB_MAX_FEED_ROWS``) as soon as the parser gets there. Records are streamed into the frame in
chunks, so only the decoded text and the canonical columns are held, never a list of every record.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

CANONICAL_COLUMNS: tuple[str, ...] = (
    "employee_id",
    "first_name",
    "last_name",
    "email",
    "department",
    "job_title",
    "location",
    "manager_id",
    "hire_date",
    "termination_date",
    "status",
)
# A mapping must name these; the others are optional (filled with NA when the mapping omits them).
REQUIRED_COLUMNS: tuple[str, ...] = ("employee_id", "first_name", "last_name", "email", "hire_date", "status")
DATE_COLUMNS: tuple[str, ...] = ("hire_date", "termination_date")
STATUSES: tuple[str, ...] = ("active", "leave", "terminated")
DELIMITERS: tuple[str, ...] = (",", ";", "|", "\t")
DEFAULT_MAX_FEED_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_FEED_ROWS = 1_000_000
MAX_BYTES_ENV = "ABSORB_MAX_FEED_BYTES"
MAX_ROWS_ENV = "ABSORB_MAX_FEED_ROWS"
_CHUNK_ROWS = 100_000
LINE_COLUMN = "_line"
PARSE_ERROR_COLUMN = "_parse_error"
MAPPINGS_DIR = Path(__file__).resolve().parents[1] / "mappings"
PRESETS: tuple[str, ...] = ("workday", "bamboohr", "adp")
_AUTO_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")
_MAPPING_KEYS = {
    "name",
    "description",
    "preset",
    "columns",
    "status_values",
    "date_format",
    "encoding",
    "delimiter",
}


class FeedError(ValueError):
    """The feed file cannot be read as a whole (the message names the problem and the lines)."""


class MappingError(FeedError):
    """The column mapping itself is invalid (unknown canonical column, bad status target...)."""


@dataclass(frozen=True)
class ColumnMapping:
    """How a source file's headers and values map onto the canonical HR feed."""

    columns: dict[str, str]
    status_values: dict[str, str]
    date_format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None


@dataclass
class Feed:
    """A parsed feed.

    ``frame`` holds the canonical columns as strings (stripped, "" -> NA; dates normalised to
    ``YYYY-MM-DD`` when they parse, left raw otherwise so the gate can reject them), ``_line`` (the
    physical line where the record starts, header = line 1) and ``_parse_error`` (NA, or why the
    record is malformed, e.g. a wrong number of fields).
    """

    frame: pd.DataFrame
    encoding: str
    delimiter: str
    source: str
    headers: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- mappings


def canonical_mapping() -> ColumnMapping:
    """The identity mapping: headers are the canonical column names, statuses the canonical values."""
    return ColumnMapping(columns={c: c for c in CANONICAL_COLUMNS}, status_values={s: s for s in STATUSES})


def load_mapping(spec: str | os.PathLike | dict | None) -> ColumnMapping:
    """A mapping from None/"canonical", a preset name, a YAML file path, or a dict (e.g. a DAG Param).

    A dict or file may say ``preset: workday`` and override only some keys; without a preset,
    unlisted columns keep their canonical header names.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "canonical")):
        return canonical_mapping()
    if isinstance(spec, Mapping):
        return _mapping_from_dict(dict(spec), origin="mapping dict")
    text = os.fspath(spec)
    if isinstance(spec, str) and text.strip().lower() in PRESETS:
        return _mapping_from_file(MAPPINGS_DIR / f"{text.strip().lower()}.yaml")
    path = Path(text)
    if not path.exists():
        raise MappingError(
            f"unknown column mapping {text!r}: not a preset ({', '.join(('canonical', *PRESETS))}) "
            "and no such YAML file"
        )
    return _mapping_from_file(path)


def _mapping_from_file(path: Path) -> ColumnMapping:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError(f"column mapping {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise MappingError(f"column mapping {path} must be a YAML mapping with a 'columns' key")
    return _mapping_from_dict(data, origin=str(path))


def _mapping_from_dict(data: dict[str, Any], *, origin: str) -> ColumnMapping:
    unknown = set(data) - _MAPPING_KEYS
    if unknown:
        raise MappingError(f"{origin}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_MAPPING_KEYS)}")
    base = load_mapping(data["preset"]) if data.get("preset") else None
    columns = dict(base.columns) if base else {c: c for c in CANONICAL_COLUMNS}
    columns.update(_check_columns(data.get("columns") or {}, origin))
    missing = [c for c in REQUIRED_COLUMNS if not columns.get(c)]
    if missing:
        raise MappingError(f"{origin}: the mapping must name a source header for {missing}")
    status_values = dict(base.status_values) if base else {}
    status_values.update(_check_status_values(data.get("status_values") or {}, origin))
    if not status_values:
        status_values = {s: s for s in STATUSES}
    encoding = _pick(data, base, "encoding")
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise MappingError(f"{origin}: unknown encoding {encoding!r}") from exc
    delimiter = _pick(data, base, "delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise MappingError(f"{origin}: delimiter must be a single character, got {delimiter!r}")
    return ColumnMapping(
        columns={k: v for k, v in columns.items() if v},
        status_values=status_values,
        date_format=_pick(data, base, "date_format"),
        encoding=encoding,
        delimiter=delimiter,
    )


def _pick(data: dict, base: ColumnMapping | None, key: str) -> Any:
    if key in data:
        return data[key]
    return getattr(base, key) if base else None


def _check_columns(columns: Any, origin: str) -> dict[str, str]:
    if not isinstance(columns, Mapping):
        raise MappingError(f"{origin}: 'columns' must map canonical column -> source header")
    unknown = [c for c in columns if c not in CANONICAL_COLUMNS]
    if unknown:
        raise MappingError(
            f"{origin}: unknown canonical column(s) {unknown}; known: {list(CANONICAL_COLUMNS)}"
        )
    bad = [c for c, header in columns.items() if header is not None and not isinstance(header, str)]
    if bad:
        raise MappingError(f"{origin}: the source header for {bad} must be a string")
    return {c: (h.strip() if h else None) for c, h in columns.items()}


def _check_status_values(values: Any, origin: str) -> dict[str, str]:
    if not isinstance(values, Mapping):
        raise MappingError(f"{origin}: 'status_values' must map source value -> {'|'.join(STATUSES)}")
    result = {}
    for source, target in values.items():
        target_norm = str(target).strip().lower()
        if target_norm not in STATUSES:
            raise MappingError(
                f"{origin}: status value {source!r} maps to {target!r}, expected one of {list(STATUSES)}"
            )
        result[str(source).strip()] = target_norm
    return result


# ----------------------------------------------------------------------------------- reading


def read_feed(
    path: Any, mapping: ColumnMapping, *, max_bytes: int | None = None, max_rows: int | None = None
) -> Feed:
    """Read ``path`` (local path or ObjectStoragePath) with ``mapping`` into a canonical :class:`Feed`.

    ``max_bytes`` / ``max_rows``: the size limits (None: env ``ABSORB_MAX_FEED_BYTES`` /
    ``ABSORB_MAX_FEED_ROWS``, else 100 MiB / 1,000,000 rows); a larger feed is a :class:`FeedError`.
    """
    source = str(path)
    byte_limit = feed_limit(max_bytes, MAX_BYTES_ENV, DEFAULT_MAX_FEED_BYTES)
    row_limit = feed_limit(max_rows, MAX_ROWS_ENV, DEFAULT_MAX_FEED_ROWS)
    data = _read_bytes(path, byte_limit, source)
    if not data.strip():
        raise FeedError(f"feed {source} is empty")
    text, encoding = _decode(data, mapping.encoding, source)
    del data  # the decoded text is all we keep
    if not text.strip():
        raise FeedError(f"feed {source} is empty")
    delimiter = mapping.delimiter or _sniff_delimiter(text)
    records = _records(text, delimiter)
    first = next(records, None)
    if first is None:
        raise FeedError(f"feed {source} is empty")
    header_line, header = first
    headers = [h.strip().lstrip("\ufeff").strip() for h in header]
    _check_header(headers, delimiter, mapping, source, text)
    frame = _to_frame(records, headers, mapping, row_limit, source)
    if frame.empty:
        raise FeedError(f"feed {source} has a header (line {header_line}) but no data rows")
    return Feed(frame=frame, encoding=encoding, delimiter=delimiter, source=source, headers=headers)


def feed_limit(value: int | None, env: str, default: int) -> int:
    """``value``, else the positive integer in env ``env``, else ``default``."""
    if value is None:
        raw = os.environ.get(env, "").strip().replace("_", "")
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise FeedError(f"{env}={os.environ[env]!r} is not a whole number") from exc
    if value <= 0:
        raise FeedError(f"the feed size limit must be positive, got {value} ({env})")
    return int(value)


def feed_too_big(source: str, size: str, limit: int) -> FeedError:
    return FeedError(
        f"feed {source} is {size}: the limit is {limit:,} bytes ({limit / 2**20:g} MiB), so it was "
        f"not parsed. Split the feed, or raise the limit with {MAX_BYTES_ENV}"
    )


def _read_bytes(path: Any, limit: int, source: str) -> bytes:
    """The file's bytes, refusing one over ``limit`` bytes before reading it (stat), or as soon as a
    bounded read passes the limit when the store cannot tell the size."""
    if isinstance(path, (str, os.PathLike)) and "://" not in os.fspath(path):
        local = Path(path)
        try:
            size = local.stat().st_size
        except FileNotFoundError as exc:
            raise FeedError(f"feed file {os.fspath(path)} does not exist") from exc
        if size > limit:
            raise feed_too_big(source, f"{size:,} bytes", limit)
    else:
        if isinstance(path, str):
            from airflow.sdk import ObjectStoragePath

            path = ObjectStoragePath(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise FeedError(f"feed file {path} does not exist") from exc
        except Exception:  # a store that cannot stat: the length check below still enforces it
            size = None
        if size is not None and size > limit:
            raise feed_too_big(source, f"{size:,} bytes", limit)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise FeedError(f"feed file {path} does not exist") from exc
        if len(data) > limit:
            raise feed_too_big(source, f"{len(data):,} bytes", limit)
        return data
    with local.open("rb") as handle:
        data = handle.read(limit + 1)  # bounded: the file may have grown since the stat
    if len(data) > limit:
        raise feed_too_big(source, f"over {limit:,} bytes", limit)
    return data


def _decode(data: bytes, configured: str | None, source: str) -> tuple[str, str]:
    """Decode with the configured encoding, else a BOM's, else strict UTF-8 (never a silent guess)."""
    if configured:
        encoding = configured
    elif data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in data[:4096]:
        raise FeedError(
            f"feed {source} contains NUL bytes: it looks like UTF-16 without a byte-order mark; "
            "set 'encoding' in the mapping (e.g. utf-16-le)"
        )
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        line = _line_of_offset(data, exc.start, encoding)
        hint = "" if configured else "; if the file is not UTF-8, set 'encoding' in the mapping (e.g. cp1252)"
        raise FeedError(
            f"feed {source} line {line} is not valid {encoding}: byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start}{hint}"
        ) from exc


def _line_of_offset(data: bytes, offset: int, encoding: str) -> int:
    if encoding.lower().replace("-", "").startswith("utf16"):
        return data[:offset].decode(encoding, errors="replace").count("\n") + 1
    return data[:offset].count(b"\n") + 1


def _sniff_delimiter(text: str) -> str:
    """The candidate delimiter that splits the header into the most fields (quotes respected)."""
    sample = "\n".join(text[:65536].splitlines()[:20])
    best, best_count = ",", 1
    for candidate in DELIMITERS:
        try:
            header = next(csv.reader(io.StringIO(sample), delimiter=candidate), [])
        except csv.Error:
            continue
        if len(header) > best_count:
            best, best_count = candidate, len(header)
    return best


def _records(text: str, delimiter: str):
    """Yield (start line, fields) per non-blank record; a quoted multi-line field spans lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    previous_end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FeedError(f"line {previous_end + 1}: cannot parse the CSV record: {exc}") from exc
        start = previous_end + 1
        previous_end = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        yield start, row


def _check_header(headers: list[str], delimiter: str, mapping: ColumnMapping, source: str, text: str) -> None:
    if len(headers) == 1:
        others = [d for d in DELIMITERS if d != delimiter and d in text[:65536].splitlines()[0]]
        hint = f"; the header contains {others[0]!r}, try delimiter {others[0]!r}" if others else ""
        raise FeedError(
            f"feed {source}: the header has a single column with delimiter {delimiter!r} "
            f"(wrong delimiter?){hint}"
        )
    duplicated = sorted({h for h in headers if h and headers.count(h) > 1})
    if duplicated:
        raise FeedError(f"feed {source}: duplicate header(s) {duplicated}")
    lookup = _header_lookup(headers)
    missing = {c: h for c, h in mapping.columns.items() if _find_header(h, headers, lookup) is None}
    if missing:
        wanted = ", ".join(f"{h!r} (for {c})" for c, h in missing.items())
        raise FeedError(f"feed {source}: missing mapped column(s) {wanted}; the file has {headers}")


def _header_lookup(headers: list[str]) -> dict[str, int]:
    return {h.casefold(): i for i, h in enumerate(headers)}


def _find_header(wanted: str, headers: list[str], lookup: dict[str, int]) -> int | None:
    if wanted in headers:
        return headers.index(wanted)
    return lookup.get(wanted.strip().casefold())


def _to_frame(
    records: Iterator[tuple[int, list[str]]],
    headers: list[str],
    mapping: ColumnMapping,
    max_rows: int,
    source: str,
) -> pd.DataFrame:
    """The canonical frame, built in chunks of ``_CHUNK_ROWS`` records (strings, not lists, kept)."""
    lookup = _header_lookup(headers)
    positions = {c: _find_header(h, headers, lookup) for c, h in mapping.columns.items()}
    wanted = [(c, positions.get(c)) for c in CANONICAL_COLUMNS]
    width = len(headers)
    status_lookup = {k.casefold(): v for k, v in mapping.status_values.items()}
    date_cache: dict[str | None, str | None] = {None: None}
    chunks: list[pd.DataFrame] = []
    columns: dict[str, list] = {c: [] for c in CANONICAL_COLUMNS}
    lines: list[int] = []
    problems: list[str | None] = []
    for count, (line, fields) in enumerate(records, start=1):
        if count > max_rows:
            raise FeedError(
                f"feed {source} has more than {max_rows:,} data rows (line {line}); split the feed, "
                f"or raise the limit with {MAX_ROWS_ENV}"
            )
        lines.append(line)
        size = len(fields)
        problems.append(None if size == width else f"record has {size} fields, the header has {width}")
        for column, index in wanted:
            value = fields[index].strip() if index is not None and index < size else ""
            columns[column].append(value or None)
        if len(lines) >= _CHUNK_ROWS:
            chunks.append(_chunk(columns, lines, problems, status_lookup, mapping.date_format, date_cache))
            columns = {c: [] for c in CANONICAL_COLUMNS}
            lines, problems = [], []
    if lines or not chunks:
        chunks.append(_chunk(columns, lines, problems, status_lookup, mapping.date_format, date_cache))
    if len(chunks) == 1:
        return chunks[0]
    return pd.concat(chunks, ignore_index=True)


def _chunk(
    columns: dict[str, list],
    lines: list[int],
    problems: list[str | None],
    status_lookup: dict[str, str],
    date_format: str | None,
    date_cache: dict[str | None, str | None],
) -> pd.DataFrame:
    columns["status"] = [_map_status(v, status_lookup) for v in columns["status"]]
    for column in DATE_COLUMNS:
        values = columns[column]
        for value in set(values) - date_cache.keys():  # each distinct date string is parsed once
            date_cache[value] = _normalise_date(value, date_format)
        columns[column] = [date_cache[v] for v in values]
    frame = pd.DataFrame({c: pd.Series(v, dtype="str") for c, v in columns.items()})
    frame[LINE_COLUMN] = pd.Series(lines, dtype="int64")
    frame[PARSE_ERROR_COLUMN] = pd.Series(problems, dtype="str")
    return frame


def _map_status(value: str | None, lookup: dict[str, str]) -> str | None:
    if value is None:
        return None
    mapped = lookup.get(value.casefold())
    if mapped:
        return mapped
    return value.lower() if value.lower() in STATUSES else value


def _normalise_date(value: str | None, date_format: str | None) -> str | None:
    """``YYYY-MM-DD`` when the value parses; the raw value otherwise (the gate rejects it)."""
    if value is None:
        return None
    parsed = parse_date(value, date_format)
    return parsed.isoformat() if parsed else value


def parse_date(value: Any, date_format: str | None = None) -> date | None:
    """A date from ``value`` with ``date_format``, or ISO date/datetime when no format is set."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    formats = (date_format,) if date_format else _AUTO_DATE_FORMATS
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    if not date_format:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None
