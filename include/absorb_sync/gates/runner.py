"""Run a list of checks through Great Expectations Core 1.x and turn the result into a GateResult.

GX is imported lazily (it takes ~6 s) and one ephemeral context is kept per process; each run adds
a uniquely named data source, suite and validation definition and removes them afterwards.
Row-level checks reject rows (identified by ``index_column``, e.g. the feed's ``_line``);
table-level checks fail the gate. Every verdict comes from GX's validation result.

Large frames: with ``keys_only=True`` the frame is indexed by ``index_column`` and GX returns only
the keys of the unexpected rows (``exclude_unexpected_values``), which it lists in one pass instead
of one pandas look-up per unexpected row (minutes on a hostile 500k-row feed). The raw results
kept in :attr:`GateResult.validation` list at most ``RAW_LIST_LIMIT`` unexpected values/keys per
check (with the full count); the rows themselves are in the gate's ``rejected`` frame.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pandas as pd

from absorb_sync.gates.logging import quiet_great_expectations

SAMPLE_SIZE = 5
RAW_LIST_LIMIT = 1000
TABLE = "table"
ROW = "row"

_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()  # the shared batch definition is not meant for concurrent batches


class GateFailedError(Exception):
    """A gate's table-level checks failed; the message names them and sample rows."""

    def __init__(self, message: str, result: GateResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass
class Check:
    """One expectation and what its failure means (fail the gate, or reject the offending rows)."""

    build: Callable[[Any], Any]  # gxe module -> expectation instance
    level: str
    description: str
    column: str | None = None
    reject_reason: Callable[[dict], str] | None = None  # unexpected-row dict -> reason text


@dataclass
class CheckOutcome:
    check: Check
    success: bool
    unexpected_count: int | None
    unexpected_rows: list[dict]
    observed_value: Any
    error: str | None
    raw: dict = field(default_factory=dict)
    # the index_column values of every unexpected row (keys_only runs; else from unexpected_rows)
    unexpected_keys: list = field(default_factory=list)


@dataclass
class GateResult:
    """The verdict of a gate, the rows it accepted/rejected, and the raw GX validation results."""

    name: str
    passed: bool
    failures: list[dict]
    accepted: pd.DataFrame | None
    rejected: pd.DataFrame | None
    statistics: dict
    validation: list[dict] = field(default_factory=list, repr=False)

    @property
    def table_failures(self) -> list[dict]:
        return [f for f in self.failures if f.get("level", TABLE) == TABLE]

    @property
    def row_failures(self) -> list[dict]:
        return [f for f in self.failures if f.get("level") == ROW]

    def summary(self) -> dict:
        """A small JSON-safe digest for XCom: verdict, failed checks with a few sample rows, figures."""
        return json_safe(
            {
                "name": self.name,
                "passed": self.passed,
                "failed_checks": [_short(f) for f in self.table_failures],
                "row_checks_with_rejects": [_short(f) for f in self.row_failures],
                "accepted_rows": None if self.accepted is None else len(self.accepted),
                "rejected_rows": None if self.rejected is None else len(self.rejected),
                "statistics": self.statistics,
            }
        )

    def save(self, path: Any) -> str:
        """Write the full GX validation results plus the summary as JSON; returns the path written."""
        payload = json.dumps(
            json_safe({"summary": self.summary(), "failures": self.failures, "validation": self.validation}),
            indent=2,
            sort_keys=True,
        )
        write_text(path, payload)
        return str(path)

    def raise_if_failed(self) -> None:
        if self.passed:
            return
        parts = []
        for failure in map(_short, self.table_failures):
            text = f"{failure['description']} [{failure['expectation']}]"
            if failure.get("unexpected_count"):
                text += f": {failure['unexpected_count']} row(s)"
            if failure.get("observed_value") is not None:
                text += f" (observed {failure['observed_value']})"
            if failure.get("sample_rows"):
                text += f", e.g. {failure['sample_rows'][:SAMPLE_SIZE]}"
            parts.append(text)
        raise GateFailedError(f"gate {self.name!r} failed: " + "; ".join(parts), self)


PERSONAL_FIELDS = frozenset({"email", "first_name", "last_name", "_email_active_key"})


def _short(failure: dict) -> dict:
    """A failure without personal data (emails, names): summaries travel through XCom and logs."""
    keys = ("expectation", "column", "description", "unexpected_count", "observed_value")
    short = {k: failure.get(k) for k in keys}
    short["sample_rows"] = [
        {k: v for k, v in row.items() if k not in PERSONAL_FIELDS} for row in failure.get("sample_rows") or []
    ]
    return short


def write_text(path: Any, text: str) -> None:
    """Write ``text`` to a local path (temp file + rename) or an ObjectStoragePath (one put)."""
    from absorb_sync.state import local_path

    target = local_path(path)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        return
    if isinstance(path, str):
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """Recursively convert numpy/pandas scalars, timestamps, NaN and sets to plain JSON values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return None if pd.isna(value) else value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return json_safe(value.item())
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _batch_definition() -> Any:
    """One ephemeral GX context per process (analytics and progress bars off, INFO logs silenced)
    with one pandas data source whose whole-dataframe batch definition every gate reuses."""
    global _CONTEXT
    quiet_great_expectations()
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            import great_expectations as gx

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = {"globally": False}
            asset = context.data_sources.add_pandas("absorb_gates").add_dataframe_asset("frame")
            _CONTEXT = asset.add_batch_definition_whole_dataframe("whole")
        return _CONTEXT


def warm_up() -> None:
    """Import GX and build the shared context now (about 6 s), e.g. before timing a gate."""
    _batch_definition()


def run_checks(
    name: str, frame: pd.DataFrame, checks: list[Check], index_column: str, *, keys_only: bool = False
) -> list[CheckOutcome]:
    """Validate ``frame`` against ``checks`` with GX; one outcome per check, in order.

    ``keys_only``: ``index_column`` must be unique; unexpected rows are reported as their keys only
    (``unexpected_rows`` then holds ``{index_column: key}`` for the first few, ``unexpected_keys``
    all of them).
    """
    quiet_great_expectations()  # before the import: GX logs ~200 INFO lines as it loads
    import great_expectations as gx
    import great_expectations.expectations as gxe

    definition = _batch_definition()
    suite = gx.ExpectationSuite(name=name)
    for number, check in enumerate(checks):
        expectation = check.build(gxe)
        expectation.meta = {"check": number, "description": check.description}
        suite.add_expectation(expectation)
    result_format = {
        "result_format": "COMPLETE",
        "unexpected_index_column_names": [index_column],
        "return_unexpected_index_query": False,
    }
    if keys_only:
        frame = frame.set_index(index_column)
        result_format["exclude_unexpected_values"] = True
    with _RUN_LOCK:
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=result_format)
    return _outcomes(result, checks, index_column, keys_only)


def _outcomes(result: Any, checks: list[Check], index_column: str, keys_only: bool) -> list[CheckOutcome]:
    by_number: dict[int, CheckOutcome] = {}
    for item in result.results:
        number = item.expectation_config.meta["check"]
        details = item.result or {}
        error = None
        if item.exception_info and item.exception_info.get("raised_exception"):
            error = str(item.exception_info.get("exception_message"))
        index_list = list(details.get("unexpected_index_list") or [])
        if keys_only:
            keys = list(index_list[0].get(index_column, [])) if index_list else []
            rows = [{index_column: key} for key in keys[:SAMPLE_SIZE]]
        else:
            keys = [row.get(index_column) for row in index_list if isinstance(row, dict)]
            rows = index_list
        _truncate_lists(details, index_column)
        by_number[number] = CheckOutcome(
            check=checks[number],
            success=bool(item.success),
            unexpected_count=details.get("unexpected_count"),
            unexpected_rows=rows,
            observed_value=details.get("observed_value"),
            error=error,
            raw=item.to_json_dict(),
            unexpected_keys=keys,
        )
    missing = [n for n in range(len(checks)) if n not in by_number]
    if missing:
        raise RuntimeError(f"GX returned no result for checks {[checks[n].description for n in missing]}")
    return [by_number[n] for n in range(len(checks))]


def _truncate_lists(details: dict, index_column: str) -> None:
    """Keep at most RAW_LIST_LIMIT entries of GX's per-row lists in the raw result (in place)."""
    truncated = False
    for key in ("unexpected_list", "unexpected_index_list"):
        values = details.get(key)
        if not isinstance(values, list):
            continue
        if len(values) == 1 and isinstance(values[0], dict) and isinstance(values[0].get(index_column), list):
            keys = values[0][index_column]  # keys_only: {index_column: [every key]}
            if len(keys) > RAW_LIST_LIMIT:
                details[key] = [{index_column: keys[:RAW_LIST_LIMIT]}]
                truncated = True
        elif len(values) > RAW_LIST_LIMIT:
            details[key] = values[:RAW_LIST_LIMIT]
            truncated = True
    if truncated:
        details["lists_truncated_to"] = RAW_LIST_LIMIT


def failure_dict(outcome: CheckOutcome, index_column: str, sample_columns: tuple[str, ...]) -> dict:
    """The GateResult.failures entry for a failed check (sample rows from GX's unexpected index list)."""
    samples = []
    for row in outcome.unexpected_rows[:SAMPLE_SIZE]:
        sample = {
            ("line" if k == "_line" else k): v for k, v in row.items() if k in (index_column, *sample_columns)
        }
        samples.append(json_safe(sample))
    failure = {
        "expectation": _expectation_type(outcome),
        "column": outcome.check.column,
        "description": outcome.check.description,
        "level": outcome.check.level,
        "unexpected_count": outcome.unexpected_count,
        "observed_value": json_safe(outcome.observed_value),
        "sample_rows": samples,
    }
    if outcome.error:
        failure["error"] = outcome.error
    return failure


def _expectation_type(outcome: CheckOutcome) -> str:
    return outcome.raw.get("expectation_config", {}).get("type", "unknown")


def validation_payload(outcomes: list[CheckOutcome]) -> list[dict]:
    return [json_safe(o.raw) for o in outcomes]


def check_lines(outcomes: list[CheckOutcome], *, element_count: int | None = None) -> list[dict]:
    """The outcomes as :func:`absorb_sync.gates.logging.log_checks` entries: what was checked, what
    was observed (offending rows, the row count, the sum) and what the expectation allows.

    A row-level check with offending rows is ``REJECT`` (the rows are set aside, the gate does not
    fail on it); ``element_count`` overrides GX's row count (a gate that gave GX a sample)."""
    lines = []
    for outcome in outcomes:
        config = outcome.raw.get("expectation_config", {})
        kind, kwargs = config.get("type", ""), config.get("kwargs", {})
        details = outcome.raw.get("result") or {}
        rows = element_count if element_count is not None else details.get("element_count")
        if kind == "expect_column_to_exist":
            observed, allowed = ("present" if outcome.success else "missing"), "present"
        elif outcome.unexpected_count is not None:
            observed = (
                f"{outcome.unexpected_count} of {rows} rows" if rows is not None else outcome.unexpected_count
            )
            mostly = kwargs.get("mostly")
            allowed = f"at most {100 * (1 - mostly):g}% of rows" if mostly not in (None, 1, 1.0) else "0 rows"
            if outcome.check.level == ROW:
                allowed += " (offending rows are rejected, the gate goes on)"
        else:
            observed = json_safe(outcome.observed_value)
            allowed = _bounds(kwargs.get("min_value"), kwargs.get("max_value"))
        line = {"name": outcome.check.description, "passed": bool(outcome.success), "observed": observed}
        line["allowed"] = allowed
        if outcome.check.level == ROW and not outcome.success and outcome.unexpected_count:
            line["status"] = "REJECT"
        if outcome.error:
            line["observed"] = f"error: {outcome.error}"
        lines.append(line)
    return lines


def _bounds(low: Any, high: Any) -> str:
    low, high = json_safe(low), json_safe(high)
    if low is not None and high is not None:
        return f"{low}..{high}"
    if low is not None:
        return f">= {low}"
    if high is not None:
        return f"<= {high}"
    return "-"
