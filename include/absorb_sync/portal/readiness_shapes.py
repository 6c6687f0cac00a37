"""Shapes: one page of every list the DAGs read, against the provider's own response schemas.

The models are :data:`absorb_provider.schemas.LISTS`, the ones the hook validates every page
with: a field they rely on that the portal does not serve fails here first, with its name,
instead of failing (or worse, reading as empty) in the middle of a sync.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from absorb_sync.portal.readiness import FAIL, PASS, SKIP, WARN

if TYPE_CHECKING:
    from absorb_provider.schemas import ListShape

    from absorb_sync.portal.readiness import Readiness
    from absorb_sync.portal.readiness_connection import TokenWatch

SECTION = "shapes"
TRIES_FOR_ROWS = 5  # parents tried to find one with rows (a course with enrollments...)
BULK_USERS = 10


def check_shapes(hook: Any, readiness: Readiness, sample_size: int, tokens: TokenWatch) -> dict[str, list]:
    """Validates one page of each list; returns the rows read, by list name."""
    from absorb_provider.schemas import LISTS

    pages: dict[str, list] = {}
    for shape in LISTS:
        if tokens.contention is not None:
            readiness.add(SECTION, shape.name, SKIP, "not read: this host stopped logging in (contention)")
            continue
        rows = _check_list(hook, readiness, shape, sample_size, pages, tokens)
        if rows is not None:
            pages[shape.name] = rows
    return pages


def _check_list(
    hook: Any, readiness: Readiness, shape: ListShape, sample_size: int, pages: dict, tokens: TokenWatch
) -> list | None:
    from absorb_provider.exceptions import AbsorbError

    try:
        path, answer = _first_page(hook, shape, sample_size, pages)
    except AbsorbError as error:
        tokens.note(error)
        readiness.add(SECTION, shape.name, FAIL, f"GET {shape.path} failed: {error}")
        return None
    if path is None:
        readiness.add(SECTION, shape.name, SKIP, answer)
        return None
    rows, envelope_problem = _rows(answer, shape)
    if rows is None:
        readiness.add(SECTION, shape.name, FAIL, f"GET {path}: {envelope_problem}")
        return None
    _verdict(readiness, shape, path, rows, envelope_problem)
    return rows


def _first_page(hook: Any, shape: ListShape, size: int, pages: dict) -> tuple[str | None, Any]:
    """(path read, its answer), or (None, why it could not be read)."""
    client = hook.client
    params = {"_limit": size, "_offset": 0}
    if shape.key is None:  # /bulk/studentcourses: a few users' enrollments at once
        users = [u["id"] for u in pages.get("users", []) if isinstance(u, dict) and u.get("id")][:BULK_USERS]
        if not users:
            return None, "not read: no user ids from GET /users to ask about"
        return shape.path, client.get("bulk/studentcourses", {"userIds": users})
    if "{" not in shape.path:
        return shape.path, client.get(shape.path.lstrip("/"), params)
    parent = "courses" if "{courseId}" in shape.path else "users"
    parents = [p["id"] for p in pages.get(parent, []) if isinstance(p, dict) and p.get("id")]
    if not parents:
        return None, f"not read: no ids from GET /{parent} to read it for"
    answer = None
    for parent_id in parents[:TRIES_FOR_ROWS]:
        path = shape.path.replace("{courseId}", parent_id).replace("{userId}", parent_id)
        answer = client.get(path.lstrip("/"), params)
        if isinstance(answer, dict) and answer.get(shape.key):
            return shape.path, answer
    return shape.path, answer


def _rows(answer: Any, shape: ListShape) -> tuple[list | None, str | None]:
    """The rows of an answer and a problem with its envelope (None when it is as expected)."""
    if shape.key is None:
        if isinstance(answer, list):
            return answer, None
        return None, "expected a JSON array"
    if isinstance(answer, list):
        return answer, "a bare array without 'totalItems': a short read could not be detected"
    if not isinstance(answer, dict) or not isinstance(answer.get(shape.key), list):
        keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
        return None, f"no '{shape.key}' list in the answer (got {keys}): the provider cannot page it"
    if not isinstance(answer.get("totalItems"), int):
        return answer[shape.key], "no 'totalItems': a short read could not be detected"
    return answer[shape.key], None


def _verdict(readiness: Readiness, shape: ListShape, path: str, rows: list, envelope: str | None) -> None:
    from absorb_provider.schemas import field_report, relied_on, row_problems

    fields = field_report(shape.row, rows)
    problems = row_problems(shape.row, rows)
    details = {
        "path": path,
        "rows_read": len(rows),
        "relied_on": relied_on(shape.row),
        "unknown_fields": fields["unknown"],
        "missing_fields": fields["missing_relied_on"],
        "missing_optional_fields": fields["missing_optional"],
        "problems": problems[:20],
    }
    extra = _field_notes(fields)
    if problems or fields["missing_relied_on"]:
        missing = fields["missing_relied_on"]
        head = f"missing field(s) {', '.join(missing)}" if missing else f"{len(problems)} problem(s)"
        readiness.add(
            SECTION,
            shape.name,
            FAIL,
            f"GET {path}: {head} the provider relies on ({'; '.join(problems[:3])}). The DAGs would fail "
            f"reading it: the portal's API differs from what the provider expects{extra}",
            **details,
        )
    elif not rows:
        readiness.add(
            SECTION, shape.name, WARN, f"GET {path}: no rows to validate (an empty list)", **details
        )
    elif envelope:
        readiness.add(SECTION, shape.name, WARN, f"GET {path}: {envelope}{extra}", **details)
    else:
        readiness.add(
            SECTION,
            shape.name,
            PASS,
            f"GET {path}: {len(rows)} rows fit the provider's schema{extra}",
            **details,
        )


def _field_notes(fields: dict[str, list[str]]) -> str:
    notes = []
    if fields["unknown"]:
        notes.append(f"unknown fields (ignored): {', '.join(fields['unknown'])}")
    if fields["missing_optional"]:
        notes.append(f"documented fields not served (not needed): {', '.join(fields['missing_optional'])}")
    return "; " + "; ".join(notes) if notes else ""
