"""Bulk enrollment and unenrollment operators: thin wrappers over ``AbsorbHook`` bulk writes.

Both write a per-row outcome file, return counts and the file's path (never rows), and fail
after writing that file when an item failed, naming the failed rows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from absorb_provider.bulk import BulkResult
from absorb_provider.io import InputError, as_path, enrollment_items, read_records, write_outcomes

MAX_NAMED_FAILURES = 20


class AbsorbItemsFailedError(Exception):
    """Some items failed; the outcome file lists every one with Absorb's message."""


def default_outcome_path(context: Any, task_id: str) -> ObjectStoragePath:
    """``<tmp>/absorb/<dag_id>/<run_id>/<task_id>.outcomes.csv`` when no outcome path is given."""
    dag_id = getattr(context.get("dag"), "dag_id", "adhoc")
    run_id = str(context.get("run_id") or "manual").replace(":", "_").replace("+", "_")
    return as_path(f"{tempfile.gettempdir()}/absorb/{dag_id}/{run_id}/{task_id}.outcomes.csv")


def summarise(result: BulkResult, outcome_path: ObjectStoragePath, fail_on_item_error: bool) -> dict:
    """The XCom summary; raises AbsorbItemsFailedError (after the file exists) when asked to."""
    summary = {
        "counts": result.counts,
        "outcome_path": str(outcome_path),
        "elapsed_seconds": round(result.elapsed_seconds, 3),
    }
    failed = result.failed
    if failed and fail_on_item_error:
        named = ", ".join(f"{row['key']} ({row['error']})" for row in failed[:MAX_NAMED_FAILURES])
        more = f" and {len(failed) - MAX_NAMED_FAILURES} more" if len(failed) > MAX_NAMED_FAILURES else ""
        raise AbsorbItemsFailedError(
            f"{len(failed)} of {len(result.outcomes)} item(s) failed: {named}{more}. Outcomes: {outcome_path}"
        )
    return summary


class AbsorbEnrollUsersOperator(BaseOperator):
    """Applies (user, course, due date, re-enroll) enrollments from a file or from XCom.

    :param source_path: CSV / JSON / Parquet file (local path or ObjectStoragePath URL) with
        columns ``user_id, course_id[, due_date, re_enroll, key]``.
    :param items: the same rows given directly (e.g. an upstream task's XCom); exclusive with
        ``source_path``.
    :param outcome_path: where the per-row outcomes go (CSV, ``.jsonl`` or ``.parquet``);
        defaults to a per-run file in the temp directory.
    :param fail_on_item_error: fail the task (after writing outcomes) when any item failed.
    """

    template_fields: Sequence[str] = ("source_path", "items", "outcome_path", "absorb_conn_id")
    ui_color = "#b3e5fc"

    def __init__(
        self,
        *,
        source_path: str | ObjectStoragePath | None = None,
        items: list[dict] | None = None,
        outcome_path: str | ObjectStoragePath | None = None,
        absorb_conn_id: str = "absorb_default",
        fail_on_item_error: bool = True,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (source_path is None) == (items is None):
            raise ValueError("give exactly one of source_path or items")
        self.source_path = source_path
        self.items = items
        self.outcome_path = outcome_path
        self.absorb_conn_id = absorb_conn_id
        self.fail_on_item_error = fail_on_item_error
        self.progress_interval = progress_interval

    def execute(self, context: Any) -> dict:
        from absorb_provider.hooks.absorb import AbsorbHook

        if self.source_path is not None:
            records, source = read_records(self.source_path), str(self.source_path)
        else:
            records, source = _records_from_xcom(self.items), "items"
        items = enrollment_items(records, source)
        self.log.info("Applying %d enrollment(s) from %s", len(items), source)
        result = AbsorbHook(self.absorb_conn_id).bulk_enroll(items, progress_interval=self.progress_interval)
        outcome_path = write_outcomes(
            self.outcome_path or default_outcome_path(context, self.task_id), result.outcomes
        )
        self.log.info("Enrollment outcomes %s written to %s", result.counts, outcome_path)
        return summarise(result, outcome_path, self.fail_on_item_error)


class AbsorbUnenrollOperator(BaseOperator):
    """Unenrolls enrollment ids in batches through ``POST /enrollments/unenroll``.

    :param enrollment_ids: ids (or an XCom of them); exclusive with ``source_path``.
    :param source_path: a file with an ``enrollment_id`` column (CSV / JSON / Parquet).
    :param batch_size: ids per request (Absorb takes a JSON array per call).
    """

    template_fields: Sequence[str] = ("enrollment_ids", "source_path", "outcome_path", "absorb_conn_id")
    ui_color = "#ffccbc"

    def __init__(
        self,
        *,
        enrollment_ids: list[str] | None = None,
        source_path: str | ObjectStoragePath | None = None,
        outcome_path: str | ObjectStoragePath | None = None,
        batch_size: int = 200,
        absorb_conn_id: str = "absorb_default",
        fail_on_item_error: bool = True,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (source_path is None) == (enrollment_ids is None):
            raise ValueError("give exactly one of source_path or enrollment_ids")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.enrollment_ids = enrollment_ids
        self.source_path = source_path
        self.outcome_path = outcome_path
        self.batch_size = batch_size
        self.absorb_conn_id = absorb_conn_id
        self.fail_on_item_error = fail_on_item_error
        self.progress_interval = progress_interval

    def _ids(self) -> list[str]:
        if self.source_path is None:
            return [str(i) for i in _records_from_xcom(self.enrollment_ids, scalar_ok=True)]
        records = read_records(self.source_path)
        missing = [n for n, row in enumerate(records, start=1) if not row.get("enrollment_id")]
        if missing:
            raise InputError(
                f"{self.source_path}: rows without enrollment_id, nothing was applied: {missing[:20]}"
            )
        return [str(row["enrollment_id"]) for row in records]

    def execute(self, context: Any) -> dict:
        from absorb_provider.hooks.absorb import AbsorbHook

        ids = self._ids()
        self.log.info("Unenrolling %d enrollment(s) in batches of %d", len(ids), self.batch_size)
        result = AbsorbHook(self.absorb_conn_id).bulk_unenroll(
            ids, batch_size=self.batch_size, progress_interval=self.progress_interval
        )
        outcome_path = write_outcomes(
            self.outcome_path or default_outcome_path(context, self.task_id), result.outcomes
        )
        self.log.info("Unenrollment outcomes %s written to %s", result.counts, outcome_path)
        return summarise(result, outcome_path, self.fail_on_item_error)


def _records_from_xcom(value: Any, scalar_ok: bool = False) -> list:
    """XCom values arrive as lists (or a lazy XCom sequence); a JSON string is accepted too."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise InputError("items/enrollment_ids must be a list (or its JSON text)") from None
    if isinstance(value, dict):
        value = [value]
    rows = list(value or [])
    if not scalar_ok and not all(isinstance(row, dict) for row in rows):
        raise InputError("items must be a list of objects with user_id and course_id")
    return rows
