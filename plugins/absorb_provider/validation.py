"""Argument checks done before any request is sent, and the OData helpers for filters."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime


def guid(value: object, name: str) -> str:
    """``value`` as a canonical GUID string; ValueError naming the argument otherwise."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            pass
    raise ValueError(f"{name} must be a GUID, got {value!r}")


def guids(values: Iterable[object], name: str) -> list[str]:
    if isinstance(values, str | uuid.UUID):
        values = [values]
    result = [guid(value, f"{name}[{index}]") for index, value in enumerate(values)]
    if not result:
        raise ValueError(f"{name} must contain at least one GUID")
    return result


def as_utc(value: datetime | date | str, name: str = "value") -> datetime:
    """A timezone-aware UTC datetime from a datetime, a date or an ISO 8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name} must be an ISO 8601 date or datetime, got {value!r}") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError(f"{name} must be a date or datetime, got {value!r}")


def iso_utc(value: datetime | date | str, name: str = "value") -> str:
    return as_utc(value, name).strftime("%Y-%m-%dT%H:%M:%SZ")


def edited_since_filter(since: datetime | date | str, field: str = "dateEdited") -> str:
    """The OData clause for incremental reads: ``dateEdited ge datetime'2026-11-01T00:00:00Z'``."""
    return f"{field} ge datetime'{iso_utc(since, 'modified_since')}'"


def edited_window_filter(
    since: datetime | date | str | None, until: datetime | date | str | None, field: str = "dateEdited"
) -> str | None:
    """``since <= field < until`` as OData (either bound optional)."""
    clauses = []
    if since is not None:
        clauses.append(edited_since_filter(since, field))
    if until is not None:
        clauses.append(f"{field} lt datetime'{iso_utc(until, 'until')}'")
    return " and ".join(clauses) or None


def combine_filters(*filters: str | None) -> str | None:
    """AND-combines OData filters, parenthesising each so operator precedence cannot leak."""
    parts = [f.strip() for f in filters if f and f.strip()]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({part})" for part in parts)


def odata_string(value: str) -> str:
    """A quoted OData string literal (single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def status_value(status: int | None) -> int | None:
    if status is None:
        return None
    if not isinstance(status, int) or not 0 <= status <= 12:
        raise ValueError(f"status must be an enrollment status 0..12, got {status!r}")
    return status


def attempt_status(status: int) -> int:
    if status not in (1, 3, 5):
        raise ValueError(
            f"status must be an attempt status 1 (in progress), 3 (complete) or 5 (failed), got {status!r}"
        )
    return status
