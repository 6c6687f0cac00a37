"""The completion-export gate's checks counted exactly over every row, batch by batch, in Arrow.

Used by the extract while it writes ``export.parquet`` (one pass, no second read) and by the
gate itself when it has no counts for the file (a frame, another file). Neither pandas nor
Great Expectations is imported here: the extract task stays light. What it keeps:

* the exact number of offending rows per check (:data:`CHECKS`), the row / completed / active
  counts, the latest completion date (so a gate with another ``now`` can reuse the counts);
* 64-bit hashes of every key of the two uniqueness checks (8 bytes a row); repeated hashes are
  settled exactly by :meth:`ExportChecks.finish`, which re-reads only when a hash repeats;
* the sample the gate hands to Great Expectations: the first ``SAMPLE_ROWS`` rows plus up to
  ``UNEXPECTED_ROWS_KEPT`` offending rows per check (whole groups of duplicates), in the
  source's own columns and types, with their position in the export (``_row``).

Values are read as the gate reads them: status, progress and score may be numbers or text
(non-numeric text counts as out of range), dates timestamps or ISO text, ``is_active`` booleans
or ``true``/``1``/``yes`` text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

COMPLETE = 3
STATUS_COUNT = 13  # Absorb enrollment statuses 0..12
REQUIRED = ("enrollment_id", "user_id", "course_id", "status", "is_active", "date_enrolled", "date_completed")
RANGED = ("progress", "score")
GATE_COLUMNS = (*REQUIRED, *RANGED)
SAMPLE_ROWS = 1_000  # first rows GX always sees
UNEXPECTED_ROWS_KEPT = 1_000  # offending rows per check handed to GX (all of them are counted)
ROW = "_row"  # position in the whole export (orders the sample, never repeats a row)
INVALID = -1.0  # numeric stand-in for non-numeric text, so range checks reject it
FILE_NAME = "export_checks.json"
SAMPLE_NAME = "export_sample.parquet"

# check key -> what it counts (offending rows); the uniqueness checks count every row of a repeated key
ROW_CHECKS = (
    "enrollment_id_present",
    "status_present",
    "status_in_range",
    "completed_iff_date",
    "completed_after_enrolled",
    "completed_not_future",
    "progress_in_range",
    "score_in_range",
)
UNIQUE_CHECKS = ("enrollment_id_unique", "active_user_course_unique")
CHECKS = (*ROW_CHECKS, *UNIQUE_CHECKS)


class ExportChecks:
    """Exact counts of the export checks over batches of one source (see the module doc)."""

    def __init__(self, columns: Iterable[str], now: datetime) -> None:
        self.columns = list(columns)
        self.missing = [c for c in REQUIRED if c not in self.columns]
        self.ranged = [c for c in RANGED if c in self.columns]
        self.now = _utc(now)
        self.rows = 0
        self.completed = 0
        self.active = 0
        self.latest_completion: datetime | None = None
        self.unexpected = {key: 0 for key in CHECKS}
        self.settled = False
        self._kept: list[Any] = []
        self._kept_rows = {key: 0 for key in CHECKS}
        self._hashes: dict[str, list[Any]] = {key: [] for key in UNIQUE_CHECKS}
        self._sample: Any = None

    # --- counting -----------------------------------------------------------------------------

    def add(self, batch: Any) -> None:
        """Count one Arrow table or record batch (any columns; the gate's are used)."""
        import numpy as np
        import pyarrow as pa

        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        present = [c for c in GATE_COLUMNS if c in table.column_names]
        table = table.select(present)
        start, count = self.rows, table.num_rows
        table = table.append_column(ROW, pa.array(np.arange(start, start + count, dtype=np.int64)))
        if start < SAMPLE_ROWS:
            self._kept.append(table.slice(0, SAMPLE_ROWS - start))
        self.rows += count
        if self.missing or not count:
            return
        values = derived(table, self.ranged)
        self.completed += _true_count(values["completed"])
        self.active += _true_count(values["active"])
        latest = _max(values["date_completed"])
        if latest is not None and (self.latest_completion is None or latest > self.latest_completion):
            self.latest_completion = latest
        for key, mask in offending(values, self.now).items():
            found = _true_count(mask)
            if not found:
                continue
            self.unexpected[key] += found
            room = UNEXPECTED_ROWS_KEPT - self._kept_rows[key]
            if room > 0:
                rows = table.filter(mask).slice(0, room)
                self._kept.append(rows)
                self._kept_rows[key] += rows.num_rows
        for key, keys in unique_keys(table, values).items():
            self._hashes[key].append(string_hashes(keys))

    def finish(self, reread: Callable[[], Iterator[Any]]) -> None:
        """Settles the uniqueness checks: rows whose key hash repeats are read again from
        ``reread()`` (the same batches, in order) and their real duplicates counted and kept.
        Nothing is read when no hash repeats (no duplicate and no collision)."""
        import numpy as np
        import pyarrow as pa

        candidates = {}
        for key in UNIQUE_CHECKS:
            parts = self._hashes[key]
            hashes = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
            self._hashes[key] = []  # one copy of the hashes at a time (sorted in place)
            parts.clear()
            hashes.sort()
            candidates[key] = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
            del hashes
        pending = {key: found for key, found in candidates.items() if len(found)}
        self.settled = True
        if not pending or self.missing:
            return
        collected: dict[str, list[Any]] = {key: [] for key in pending}
        offset = 0
        for batch in reread():
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            table = table.select([c for c in GATE_COLUMNS if c in table.column_names])
            table = table.append_column(
                ROW, pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64))
            )
            offset += table.num_rows
            values = derived(table, self.ranged)
            for key, keys in unique_keys(table, values, keep_positions=True).items():
                keys, positions = keys
                hit = np.isin(string_hashes(keys), pending.get(key, []))
                if key in pending and hit.any():
                    rows = table.take(pa.array(positions[hit]))
                    collected[key].append(rows.append_column("_key", keys.filter(pa.array(hit))))
        for key, parts in collected.items():
            self._add_duplicates(key, pa.concat_tables(parts, promote_options="permissive"))

    def _add_duplicates(self, key: str, rows: Any) -> None:
        import pyarrow.compute as pc

        counts = rows.group_by("_key", use_threads=False).aggregate([("_key", "count")])
        repeated = counts.filter(pc.greater(counts.column("_key_count"), 1)).column("_key")
        duplicated = rows.filter(pc.is_in(rows.column("_key"), value_set=repeated.combine_chunks()))
        self.unexpected[key] = duplicated.num_rows
        if duplicated.num_rows:
            ordered = duplicated.sort_by([("_key", "ascending"), (ROW, "ascending")])
            self._kept.append(ordered.slice(0, max(2, UNEXPECTED_ROWS_KEPT)).drop_columns(["_key"]))

    # --- results ------------------------------------------------------------------------------

    def future_completions(self, now: datetime) -> int | None:
        """Rows completed after ``now`` (None when only a recount can tell: another, earlier
        ``now`` than the one counted with, and completions after it)."""
        now = _utc(now)
        if now == self.now:
            return self.unexpected["completed_not_future"]
        if self.latest_completion is None or self.latest_completion <= now:
            return 0
        return None

    def sample(self) -> Any:
        """The rows for GX (Arrow): first rows and kept offending rows, each once, in export order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self._sample is None:
            parts = [t for t in self._kept if t.num_rows] or self._kept[:1]
            if not parts:
                self._sample = pa.table({ROW: pa.array([], pa.int64())})
            else:
                table = pa.concat_tables(parts, promote_options="permissive")
                order = pc.sort_indices(table.column(ROW))
                table = table.take(order)
                rows = table.column(ROW).to_numpy()
                first = [0, *[i for i in range(1, len(rows)) if rows[i] != rows[i - 1]]] if len(rows) else []
                self._sample = table.take(pa.array(first, pa.int64())) if len(rows) else table
        return self._sample

    def to_json(self, source: Mapping | None = None) -> dict:
        return {
            "columns": self.columns,
            "now": self.now.isoformat(),
            "rows": self.rows,
            "completed": self.completed,
            "active": self.active,
            "latest_completion": self.latest_completion.isoformat() if self.latest_completion else None,
            "unexpected": dict(self.unexpected),
            "settled": self.settled,
            "source": dict(source or {}),
        }

    def save(self, folder: Any, source: Mapping) -> None:
        """``export_checks.json`` and the GX sample ``export_sample.parquet`` in ``folder``;
        ``source`` describes the file counted (rows, bytes) so a reader can tell it is the same."""
        import pyarrow.parquet as pq

        with (folder / SAMPLE_NAME).open("wb") as handle:
            pq.write_table(self.sample(), handle)
        with (folder / FILE_NAME).open("w", encoding="utf-8") as handle:
            json.dump(self.to_json(source), handle, indent=2)

    @classmethod
    def load(cls, folder: Any) -> tuple[ExportChecks, dict] | None:
        """The counts saved by :meth:`save` and the source they describe (None when absent)."""
        import pyarrow.parquet as pq

        if not (folder / FILE_NAME).exists() or not (folder / SAMPLE_NAME).exists():
            return None
        with (folder / FILE_NAME).open("r", encoding="utf-8") as handle:
            data = json.load(handle)
        checks = cls(data["columns"], datetime.fromisoformat(data["now"]))
        checks.rows, checks.completed, checks.active = data["rows"], data["completed"], data["active"]
        latest = data.get("latest_completion")
        checks.latest_completion = datetime.fromisoformat(latest) if latest else None
        checks.unexpected = {key: int(data["unexpected"][key]) for key in CHECKS}
        checks.settled = bool(data["settled"])
        with (folder / SAMPLE_NAME).open("rb") as handle:
            checks._sample = pq.read_table(handle)
        return checks, data["source"]


# --- vectorised helpers --------------------------------------------------------------------------


def derived(table: Any, ranged: Iterable[str] = RANGED) -> dict[str, Any]:
    """The values the checks look at, typed: numbers (float, null, or INVALID), UTC dates, flags."""
    import pyarrow.compute as pc

    status = numbers(table.column("status"))
    values = {
        "status": status,
        "completed": pc.fill_null(pc.equal(status, float(COMPLETE)), False),
        "active": flags(table.column("is_active")),
        "date_enrolled": dates(table.column("date_enrolled")),
        "date_completed": dates(table.column("date_completed")),
        "enrollment_id": table.column("enrollment_id"),
    }
    for column in ranged:
        if column in table.column_names:
            values[column] = numbers(table.column(column))
    return values


def offending(values: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Per row check, the mask of offending rows (never null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    status, completed = values["status"], values["date_completed"]
    enrolled = values["date_enrolled"]
    both = pc.and_(pc.is_valid(completed), pc.is_valid(enrolled))
    statuses = pa.array([float(n) for n in range(STATUS_COUNT)], pa.float64())
    masks = {
        "enrollment_id_present": pc.is_null(values["enrollment_id"]),
        "status_present": pc.is_null(status),
        "status_in_range": pc.and_(pc.is_valid(status), pc.invert(pc.is_in(status, value_set=statuses))),
        "completed_iff_date": pc.not_equal(values["completed"], pc.is_valid(completed)),
        "completed_after_enrolled": pc.and_(both, pc.fill_null(pc.less(completed, enrolled), False)),
        "completed_not_future": pc.fill_null(
            pc.greater(completed, pa.scalar(now, pa.timestamp("us", tz="UTC"))), False
        ),
    }
    for column in RANGED:
        if column in values:
            number = values[column]
            outside = pc.or_(pc.less(number, 0.0), pc.greater(number, 100.0))
            masks[f"{column}_in_range"] = pc.fill_null(outside, False)
    return masks


def unique_keys(table: Any, values: dict[str, Any], keep_positions: bool = False) -> dict[str, Any]:
    """The non-null keys of the uniqueness checks (enrollment id; ``user|course`` of active rows),
    with their row positions in ``table`` when asked."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pc.cast(values["enrollment_id"], pa.string())
    pair = pc.binary_join_element_wise(
        pc.fill_null(pc.cast(table.column("user_id"), pa.string()), "None"),
        pc.fill_null(pc.cast(table.column("course_id"), pa.string()), "None"),
        "|",
    )
    keys = {}
    for key, array, wanted in (
        ("enrollment_id_unique", ids, pc.is_valid(ids)),
        ("active_user_course_unique", pair, values["active"]),
    ):
        array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
        wanted = wanted.combine_chunks() if isinstance(wanted, pa.ChunkedArray) else wanted
        chosen = array.filter(wanted)
        if keep_positions:
            keys[key] = (chosen, np.flatnonzero(wanted.to_numpy(zero_copy_only=False)))
        else:
            keys[key] = chosen
    return keys


_BASE = 0x100000001B3  # polynomial base (the FNV-1 prime); mixed by splitmix64 afterwards


def string_hashes(values: Any) -> Any:
    """64-bit hashes (numpy ``uint64``) of the strings of an Arrow array without nulls: a
    polynomial over the bytes, vectorised with numpy, then mixed (splitmix64). Strings all of
    one length (ids, id pairs) take a matrix product, ~10x cheaper, with the same values."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = pc.cast(values, pa.large_string())
    count = len(values)
    if not count:
        return np.empty(0, dtype=np.uint64)
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[values.offset : values.offset + count + 1]
    lengths = np.diff(offsets)
    total = int(offsets[-1] - offsets[0])
    sums = np.zeros(count, dtype=np.uint64)
    width = int(lengths[0])
    if total and total == width * count:  # every string as long (ids): one matrix product
        data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(count, width)
        powers = np.cumprod(np.full(width, _BASE, dtype=np.uint64))
        with np.errstate(over="ignore"):
            sums = np.dot(data, powers)  # uint64, wrapping like the general path
    elif total:
        data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]].astype(np.uint64)
        starts = offsets[:-1] - offsets[0]
        position = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
        powers = np.cumprod(np.full(int(lengths.max()), _BASE, dtype=np.uint64))
        nonempty = lengths > 0
        sums[nonempty] = np.add.reduceat(data * powers[position], starts[nonempty])
    with np.errstate(over="ignore"):
        mixed = sums ^ (lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        mixed ^= mixed >> np.uint64(30)
        mixed *= np.uint64(0xBF58476D1CE4E5B9)
        mixed ^= mixed >> np.uint64(27)
        mixed *= np.uint64(0x94D049BB133111EB)
        mixed ^= mixed >> np.uint64(31)
    return mixed


_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def numbers(column: Any) -> Any:
    """float64; text that is not a number becomes ``INVALID`` (nulls stay null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pc.cast(column, pa.float64())
    if pa.types.is_boolean(kind):
        return pc.cast(pc.cast(column, pa.int64()), pa.float64())
    if pa.types.is_null(kind):
        return pc.cast(column, pa.float64())
    text = pc.cast(column, pa.string())
    readable = pc.match_substring_regex(text, _NUMBER)
    cleaned = pc.if_else(readable, pc.utf8_trim_whitespace(text), str(INVALID))
    return pc.cast(cleaned, pa.float64())


def flags(column: Any) -> Any:
    """Booleans (null -> False); text is true when it reads true / 1 / yes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_boolean(column.type):
        return pc.fill_null(column, False)
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(column, pa.string())))
    return pc.fill_null(pc.is_in(text, value_set=pa.array(["true", "1", "yes"])), False)


def dates(column: Any) -> Any:
    """UTC timestamps (``timestamp[us, UTC]``) from timestamps (naive = UTC) or ISO text
    (unreadable -> null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            column = pc.assume_timezone(column, "UTC")
        return pc.cast(column, pa.timestamp("us", tz="UTC"))
    if pa.types.is_null(kind):
        return pc.cast(column, pa.timestamp("us", tz="UTC"))
    from absorb_provider.io import parse_timestamps

    return parse_timestamps(pc.cast(column, pa.string()))


def _true_count(mask: Any) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(mask).as_py() or 0)


def _max(column: Any) -> datetime | None:
    import pyarrow.compute as pc

    return pc.max(column).as_py()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
