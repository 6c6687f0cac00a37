"""Absorb's ``_filter`` / ``_sort`` OData subset, compiled to a parameterised SQL fragment.

Parsing uses the maintained ``odata-query`` grammar. It speaks OData v4, while Absorb documents
v2/v3 forms, so the text is pre-processed outside string literals first:
``guid'…'`` → a bare GUID, ``datetime'…'`` / ``datetimeoffset'…'`` → a bare ISO date-time, and
``substringof(`` → ``contains(`` (argument order is detected when compiling). The resulting AST
is compiled here (not with the library's SQL visitor) so every literal is a bound parameter and
only fields the resource whitelists can be referenced. Any problem raises ``FilterError``,
which the API turns into a 422 error body.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from odata_query import ast
from odata_query.grammar import ODataLexer, ODataParser

from absorb_sandbox.timeutil import normalise_datetime

MAX_FILTER_LENGTH = 4000
SQLITE_MAX_INT = 2**63 - 1


class FilterError(ValueError):
    """A ``_filter`` or ``_sort`` expression that cannot be applied (bad syntax, unknown field...)."""


@dataclass(frozen=True)
class Field:
    """A filterable/sortable API field: its SQL expression and value kind."""

    sql: str
    kind: str  # string | guid | datetime | number | int | bool


_PREFIXED_LITERAL = re.compile(r"(?i)\b(guid|datetimeoffset|datetime)'")
_SUBSTRINGOF = re.compile(r"(?i)\bsubstringof\s*\(")
_LEXER = ODataLexer()
_PARSER = ODataParser()

_COMPARATORS = {ast.Eq: "=", ast.NotEq: "!=", ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<="}
_STRING_FUNCTIONS = {"tolower": "LOWER", "toupper": "UPPER"}
_MATCH_FUNCTIONS = {"startswith", "endswith", "contains"}


def preprocess(text: str) -> str:
    """Rewrite Absorb's v2-style literals and ``substringof`` into the v4 forms the parser reads."""
    out: list[str] = []
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char == "'":
            end = _end_of_string(text, position)
            out.append(text[position:end])
            position = end
            continue
        prefixed = _PREFIXED_LITERAL.match(text, position)
        if prefixed and (position == 0 or not (text[position - 1].isalnum() or text[position - 1] == "_")):
            end = _end_of_string(text, prefixed.end() - 1)
            value = text[prefixed.end() : end - 1].replace("''", "'")
            out.append(_bare_literal(prefixed.group(1).lower(), value))
            position = end
            continue
        function = _SUBSTRINGOF.match(text, position)
        if function and (position == 0 or not text[position - 1].isalnum()):
            out.append("contains(")
            position = function.end()
            continue
        out.append(char)
        position += 1
    return "".join(out)


def _end_of_string(text: str, start: int) -> int:
    """Index just past the quoted literal starting at ``start`` (``''`` escapes a quote)."""
    position = start + 1
    while position < len(text):
        if text[position] == "'":
            if position + 1 < len(text) and text[position + 1] == "'":
                position += 2
                continue
            return position + 1
        position += 1
    raise FilterError("Unterminated string literal in _filter.")


def _bare_literal(prefix: str, value: str) -> str:
    if prefix == "guid":
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise FilterError(f"Invalid guid literal: {value!r}.") from None
    try:
        return normalise_datetime(value)
    except ValueError:
        raise FilterError(f"Invalid datetime literal: {value!r}.") from None


def parse(text: str) -> ast._Node:
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"_filter is longer than {MAX_FILTER_LENGTH} characters.")
    try:
        return _PARSER.parse(_LEXER.tokenize(preprocess(text)))
    except FilterError:
        raise
    except RecursionError:
        raise FilterError("_filter is nested too deeply.") from None
    except Exception as exc:
        raise FilterError(f"Invalid _filter expression: {exc}") from None


def compile_filter(text: str, fields: dict[str, Field]) -> tuple[str, list]:
    """``_filter`` text → (SQL boolean expression, parameters) over the given fields."""
    compiler = _Compiler(fields)
    try:
        sql = compiler.boolean(parse(text))
    except RecursionError:
        raise FilterError("_filter is nested too deeply.") from None
    return sql, compiler.params


def compile_sort(text: str, fields: dict[str, Field]) -> str:
    """``_sort`` text (``a,-b``) → an SQL ORDER BY list; unknown fields raise FilterError."""
    terms = []
    for raw in text.split(","):
        name = raw.strip()
        descending = name.startswith("-")
        name = name.lstrip("-+").strip()
        if not name:
            raise FilterError("Empty field name in _sort.")
        field = _lookup(fields, name, "_sort")
        terms.append(f"{field.sql} {'DESC' if descending else 'ASC'}")
    return ", ".join(terms)


def _lookup(fields: dict[str, Field], name: str, where: str) -> Field:
    field = fields.get(name) or fields.get(_case_insensitive(fields, name))
    if field is None:
        raise FilterError(f"Unknown field '{name}' in {where}; allowed fields: {', '.join(sorted(fields))}.")
    return field


def _case_insensitive(fields: dict[str, Field], name: str) -> str:
    lowered = name.lower()
    return next((key for key in fields if key.lower() == lowered), "")


class _Compiler:
    """Walks the odata-query AST, emitting SQL with ``?`` placeholders."""

    def __init__(self, fields: dict[str, Field]):
        self.fields = fields
        self.params: list = []

    def boolean(self, node: ast._Node) -> str:
        if isinstance(node, ast.BoolOp):
            op = "AND" if isinstance(node.op, ast.And) else "OR"
            return f"({self.boolean(node.left)} {op} {self.boolean(node.right)})"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return f"(NOT {self.boolean(node.operand)})"
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call) and self._function_name(node) in _MATCH_FUNCTIONS:
            return self.match(node)
        if isinstance(node, ast.Identifier):
            field = _lookup(self.fields, node.name, "_filter")
            if field.kind == "bool":
                return f"({field.sql} = 1)"
        raise FilterError(f"Expected a condition in _filter, got {type(node).__name__}.")

    def compare(self, node: ast.Compare) -> str:
        op = _COMPARATORS.get(type(node.comparator))
        if op is None:
            raise FilterError(f"Unsupported operator {type(node.comparator).__name__} in _filter.")
        left, right = node.left, node.right
        if _is_literal(left) and not _is_literal(right):
            left, right = right, left
            op = {">": "<", "<": ">", ">=": "<=", "<=": ">="}.get(op, op)
        if isinstance(left, ast.Call) and self._function_name(left) in _MATCH_FUNCTIONS:
            if not isinstance(right, ast.Boolean) or op not in ("=", "!="):
                raise FilterError(f"{self._function_name(left)}() can only be compared with true or false.")
            condition = self.match(left)
            wanted = (right.val.lower() == "true") == (op == "=")
            return condition if wanted else f"(NOT {condition})"
        left_sql, kind = self.value_expression(left)
        if isinstance(right, ast.Null):
            if op not in ("=", "!="):
                raise FilterError("null can only be compared with eq or ne.")
            return f"({left_sql} IS {'NOT ' if op == '!=' else ''}NULL)"
        if not _is_literal(right):
            right_sql, _ = self.value_expression(right)
            return f"({left_sql} {op} {right_sql})"
        self.params.append(self.literal(right, kind))
        return f"({left_sql} {op} ?)"

    def match(self, node: ast.Call) -> str:
        name = self._function_name(node)
        if len(node.args) != 2:
            raise FilterError(f"{name}() takes two arguments.")
        first, second = node.args
        if name == "contains" and _is_literal(first):  # substringof('value', field)
            first, second = second, first
        if not isinstance(second, ast.String):
            raise FilterError(f"{name}() needs a string literal value.")
        target, kind = self.value_expression(first)
        if kind not in ("string", "guid"):
            raise FilterError(f"{name}() applies to text fields only.")
        escaped = second.val.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = {"startswith": f"{escaped}%", "endswith": f"%{escaped}", "contains": f"%{escaped}%"}[name]
        self.params.append(pattern)
        return f"({target} LIKE ? ESCAPE '\\')"

    def value_expression(self, node: ast._Node) -> tuple[str, str]:
        if isinstance(node, ast.Identifier):
            field = _lookup(self.fields, node.name, "_filter")
            return field.sql, field.kind
        if isinstance(node, ast.Call) and self._function_name(node) in _STRING_FUNCTIONS:
            if len(node.args) != 1:
                raise FilterError(f"{self._function_name(node)}() takes one argument.")
            inner, kind = self.value_expression(node.args[0])
            if kind not in ("string", "guid"):
                raise FilterError(f"{self._function_name(node)}() applies to text fields only.")
            return f"{_STRING_FUNCTIONS[self._function_name(node)]}({inner})", "string"
        if isinstance(node, ast.Call):
            raise FilterError(f"Unsupported function '{self._function_name(node)}' in _filter.")
        raise FilterError(f"Unsupported expression {type(node).__name__} in _filter.")

    def literal(self, node: ast._Node, kind: str):
        """The bound value of a literal compared with a field of ``kind``; mismatches raise."""
        value = getattr(node, "val", None)
        if kind in ("number", "int"):
            if isinstance(node, ast.Integer | ast.Float) or (
                isinstance(node, ast.String) and _numeric(value)
            ):
                number = float(value) if ("." in value or "e" in value.lower()) else int(value)
                return float(number) if isinstance(number, int) and abs(number) > SQLITE_MAX_INT else number
        elif kind == "bool":
            if isinstance(node, ast.Boolean):
                return 1 if value.lower() == "true" else 0
        elif kind == "datetime":
            if isinstance(node, ast.DateTime | ast.Date | ast.String):
                try:
                    return normalise_datetime(value)
                except ValueError:
                    raise FilterError(f"Invalid date-time value {value!r} in _filter.") from None
        elif kind == "guid":
            if isinstance(node, ast.GUID | ast.String):
                return value.lower()
        elif kind == "string" and isinstance(node, ast.String | ast.GUID | ast.Integer | ast.Float):
            return value
        raise FilterError(f"A {type(node).__name__} literal cannot be compared with a {kind} field.")

    @staticmethod
    def _function_name(node: ast.Call) -> str:
        return node.func.name.lower() if isinstance(node.func, ast.Identifier) else "?"


def _is_literal(node: ast._Node) -> bool:
    return isinstance(
        node,
        ast.String | ast.Integer | ast.Float | ast.Boolean | ast.Null | ast.GUID | ast.DateTime | ast.Date,
    )


def _numeric(value: str | None) -> bool:
    try:
        float(value or "")
    except ValueError:
        return False
    return True
