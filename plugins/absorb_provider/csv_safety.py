"""CSV (formula) injection: cells that a spreadsheet would run as a formula are written as text.

OWASP's guidance: a cell that starts with ``=``, ``+``, ``-``, ``@``, TAB or CR (we add the
full-width forms U+FF1D, U+FF0B, U+FF0D, U+FF20, which some spreadsheet locales accept too) is prefixed with a single
quote, so ``=HYPERLINK(...)`` opens as the text ``'=HYPERLINK(...)``. Only *string* cells are
escaped, and a string that is purely a number (``-5``, ``+2.5``, ``-1e3``) is left alone: it is data,
not a formula. Every CSV this project writes goes through here (``absorb_sync`` imports it: the
provider must not import ``absorb_sync``).
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
ESCAPE = "'"
# the same characters as a regex class, for pandas / Arrow vectorised matching
FORMULA_START_REGEX = "^[=+\\-@\\t\\r\uff1d\uff0b\uff0d\uff20]"
NUMBER_REGEX = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_NUMBER = re.compile(NUMBER_REGEX)
# a value that is a formula and more than the bare operator (a lone "-" is a common "none" placeholder)
FORMULA_VALUE_REGEX = "^(?!" + NUMBER_REGEX[1:-1] + "$)[=+\\-@\\t\\r\uff1d\uff0b\uff0d\uff20]."


def is_formula(value: Any) -> bool:
    """True for a string cell a spreadsheet would evaluate (a plain signed number is not one)."""
    return isinstance(value, str) and value[:1] in FORMULA_PREFIXES and _NUMBER.match(value) is None


def escape_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is a formula; anything else unchanged."""
    return ESCAPE + value if is_formula(value) else value


def escape_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: escape_cell(value) for key, value in row.items()}


def escape_frame(frame: Any) -> Any:
    """A pandas DataFrame whose string cells are escaped (the same frame when nothing needed it)."""
    import pandas as pd

    changed: dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.StringDtype):
            text = column
        elif column.dtype == object:
            text = column.map(lambda v: v if isinstance(v, str) else None).astype("str")
        else:
            continue  # numbers, booleans, dates: never formulas
        mask = (text.str.contains(FORMULA_START_REGEX, regex=True) & ~text.str.contains(NUMBER_REGEX)).fillna(
            False
        )
        mask = mask.astype(bool)
        if mask.any():
            escaped = column.copy() if column.dtype != object else column.astype(object)
            escaped[mask] = ESCAPE + text[mask]
            changed[name] = escaped
    if not changed:
        return frame
    result = frame.copy()
    for name, column in changed.items():
        result[name] = column
    return result


def escape_arrow_table(table: Any) -> Any:
    """An Arrow table whose ``string`` / ``large_string`` columns are escaped (types kept),
    vectorised with Arrow compute: a cheap first-character test, and the number test only on the
    few cells that start like a formula."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            first = pc.utf8_slice_codeunits(column, 0, 1)
            starts = pc.is_in(first, value_set=pa.array(FORMULA_PREFIXES, column.type))
            if pc.any(starts).as_py():
                number = pc.match_substring_regex(column, NUMBER_REGEX)
                mask = pc.fill_null(pc.and_(starts, pc.invert(number)), False)
                if pc.any(mask).as_py():
                    prefix = pa.scalar(ESCAPE, column.type)
                    escaped = pc.binary_join_element_wise(prefix, column, pa.scalar("", column.type))
                    column = pc.if_else(mask, escaped, column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)
