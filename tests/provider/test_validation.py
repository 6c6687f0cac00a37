"""Argument checks and OData helpers (pure functions)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from absorb_provider.validation import (
    combine_filters,
    edited_since_filter,
    edited_window_filter,
    guid,
    guids,
    odata_string,
)


def test_guid_normalises_and_names_the_argument():
    assert guid("6F9619FF-8B86-D011-B42D-00C04FC964FF", "user_id") == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    with pytest.raises(ValueError, match="course_id must be a GUID, got 'abc'"):
        guid("abc", "course_id")
    with pytest.raises(ValueError, match=r"ids\[1\] must be a GUID"):
        guids(["6f9619ff-8b86-d011-b42d-00c04fc964ff", 42], "ids")
    with pytest.raises(ValueError, match="at least one"):
        guids([], "ids")


def test_incremental_filter_formats_utc():
    since = datetime(2026, 11, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert edited_since_filter(since) == "dateEdited ge datetime'2026-11-01T00:00:00Z'"
    assert edited_since_filter(date(2026, 1, 2)) == "dateEdited ge datetime'2026-01-02T00:00:00Z'"
    assert edited_since_filter("2026-01-02T03:04:05Z") == "dateEdited ge datetime'2026-01-02T03:04:05Z'"
    with pytest.raises(ValueError, match="modified_since must be an ISO 8601"):
        edited_since_filter("yesterday")


def test_window_and_combination_parenthesise():
    window = edited_window_filter(datetime(2026, 1, 1, tzinfo=UTC), "2026-02-01")
    assert (
        window
        == "dateEdited ge datetime'2026-01-01T00:00:00Z' and dateEdited lt datetime'2026-02-01T00:00:00Z'"
    )
    assert combine_filters("status eq 3 or status eq 1", None, "isActive eq true") == (
        "(status eq 3 or status eq 1) and (isActive eq true)"
    )
    assert combine_filters(None, "") is None
    assert odata_string("O'Brien") == "'O''Brien'"
