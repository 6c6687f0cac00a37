"""in_set: the Arrow look-up the planners use instead of pandas' slow ``isin`` on Arrow strings."""

from __future__ import annotations

import pandas as pd
import pytest
from absorb_sync.vector import in_set


@pytest.mark.parametrize("dtype", ["string[pyarrow]", "string[python]", "object"])
def test_in_set_agrees_with_isin_and_keeps_the_index(dtype):
    values = pd.Series(["E1", "e2", None, "E3", "E1"], index=[10, 11, 12, 13, 14], dtype=dtype)
    members = {"E1", "e2", "x"}
    found = in_set(values, members)
    assert found.tolist() == [True, True, False, False, True]
    assert found.tolist() == values.isin(members).tolist()
    assert list(found.index) == [10, 11, 12, 13, 14] and found.dtype == bool


def test_in_set_never_matches_missing_values_and_takes_any_iterable():
    values = pd.Series(["a", None, "b"], dtype="string")
    assert in_set(values, iter(["a", None, pd.NA])).tolist() == [True, False, False]
    assert in_set(values, []).tolist() == [False, False, False]
    assert in_set(values, pd.Series(["b"])).tolist() == [False, False, True]
    assert in_set(values, {"a": "user-1"}).tolist() == [True, False, False]  # a dict's keys
