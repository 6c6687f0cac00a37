"""Date and duration formats shared by the store, the API and the seed.

Every date-time is stored as one fixed-width UTC string (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) so that
SQL string comparison orders them correctly and OData ``datetime`` literals can be compared in SQL.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

TICKS_PER_SECOND = 10_000_000

_clock_lock = threading.Lock()
_last_now: datetime | None = None


def to_iso(value: datetime | date | None) -> str | None:
    """Format a date or datetime in the stored fixed-width UTC form."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return _format(value)


def _format(value: datetime) -> str:
    """Fixed-width form; ``strftime('%Y')`` would not zero-pad years before 1000 on glibc."""
    return value.isoformat(timespec="microseconds") + "Z"


def now_iso() -> str:
    """The current time, strictly increasing between calls so ``dateEdited`` always moves."""
    global _last_now
    with _clock_lock:
        current = datetime.now(UTC).replace(tzinfo=None)
        if _last_now is not None and current <= _last_now:
            current = _last_now + timedelta(microseconds=1)
        _last_now = current
    return _format(current)


def parse_datetime(text: str) -> datetime:
    """Parse ISO 8601 input (``yyyy-MM-dd`` or a full date-time); raises ValueError when invalid."""
    text = text.strip()
    if not text:
        raise ValueError("empty date")
    if len(text) == 10:
        parsed_date = date.fromisoformat(text)
        return datetime(parsed_date.year, parsed_date.month, parsed_date.day)
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(_trim_fraction(text))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def normalise_datetime(text: str) -> str:
    """Input date text in the stored form; raises ValueError when invalid."""
    return _format(parse_datetime(text))


def _trim_fraction(text: str) -> str:
    """Cut fractional seconds to 6 digits (.NET sends 7) so ``fromisoformat`` accepts them."""
    if "." not in text:
        return text
    head, _, rest = text.partition(".")
    digits = ""
    while rest and rest[0].isdigit():
        digits, rest = digits + rest[0], rest[1:]
    return f"{head}.{digits[:6].ljust(6, '0')}{rest}"


def ticks_to_timespan(ticks: int | None) -> str | None:
    """Format 100-ns ticks as a .NET TimeSpan string ``[d.]hh:mm:ss[.fffffff]``."""
    if ticks is None:
        return None
    total_seconds, fraction = divmod(int(ticks), TICKS_PER_SECOND)
    days, remainder = divmod(total_seconds, 86_400)
    hours, remainder = divmod(remainder, 3600)
    minutes, seconds = divmod(remainder, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if days:
        text = f"{days}.{text}"
    if fraction:
        text = f"{text}.{fraction:07d}"
    return text
