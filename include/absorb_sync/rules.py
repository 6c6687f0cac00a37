"""Enrollment rules: a YAML file (schema in docs/rules.md), validated, resolved and evaluated.

Why explicit semantics: "rule surprises" are a top complaint about LMS auto-enrollment. Here a rule
matches when every criterion it names matches (values in a list are alternatives, glob patterns and
case-insensitive), only active people whose hire date has arrived are enrolled, and when several
rules want the same course for a person the first rule in the file wins.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ATTRIBUTE_KEYS = ("department", "job_title", "location", "status")
HIRE_KEYS = ("hired_on_or_after", "hired_before", "hired_within_days")
DUE_FROM = ("hire", "assignment")
DESIRED_COLUMNS = ["employee_id", "course_id", "rule", "due_days", "due_from", "recur_every_days"]
_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_PATTERNS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
_CRITERIA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{key: {"anyOf": [_PATTERNS, {"type": "string", "minLength": 1}]} for key in ATTRIBUTE_KEYS},
        "hired_on_or_after": {"type": "string", "pattern": _DATE_PATTERN},
        "hired_before": {"type": "string", "pattern": _DATE_PATTERN},
        "hired_within_days": {"type": "integer", "minimum": 0},
    },
}
USER_FIELDS = ("department", "job_title", "location", "manager", "first_name", "last_name", "email")
_USERS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "managed_fields": {"type": "array", "items": {"enum": list(USER_FIELDS)}, "uniqueItems": True},
        "department_match": {"enum": ["name", "external_id"]},
        "deactivate_leavers": {"type": "boolean"},
        "protected_users": {"type": "array", "items": {"type": "string", "minLength": 1}},
    },
}
RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rules"],
    "properties": {
        "version": {"const": 1},
        "description": {"type": "string"},
        "users": _USERS,
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "courses"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "description": {"type": "string"},
                    "match": _CRITERIA,
                    "exclude": _CRITERIA,
                    "courses": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "minProperties": 1,
                            "maxProperties": 1,
                            "properties": {
                                "id": {"type": "string", "minLength": 1},
                                "name": {"type": "string", "minLength": 1},
                            },
                        },
                    },
                    "due_days": {"type": ["integer", "null"], "minimum": 0},
                    "due_from": {"enum": list(DUE_FROM)},
                    "recur_every_days": {"type": ["integer", "null"], "minimum": 1},
                },
            },
        },
    },
}


class RulesError(ValueError):
    """The rules file is invalid or does not fit the course catalogue (names the rule and key)."""


@dataclass
class Rule:
    """One rule: who (match/exclude), which courses, and when they are due / recur."""

    name: str
    match: dict[str, Any]
    courses: list[dict[str, str]]
    due_days: int | None = None
    due_from: str = "assignment"
    recur_every_days: int | None = None
    exclude: dict[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass
class RuleSet:
    rules: list[Rule]
    source: str | None = None
    users: dict[str, Any] = field(default_factory=dict)  # the ``users:`` section (absorb_sync.user_plan)

    def course_refs(self) -> list[dict]:
        """Every course reference the rules use, once, in file order."""
        seen: dict[str, dict] = {}
        for rule in self.rules:
            for course in rule.courses:
                seen.setdefault(course_ref_key(course), dict(course))
        return list(seen.values())


def course_ref_key(course: dict) -> str:
    """``id:<id>`` or ``name:<name>``: the key of :func:`resolve_courses`' result."""
    if course.get("id"):
        return f"id:{course['id']}"
    return f"name:{course['name']}"


# ----------------------------------------------------------------------------------- loading


def load_rules(path: str | os.PathLike | dict) -> RuleSet:
    """Load and validate a rules YAML file (or an already-parsed dict)."""
    if isinstance(path, dict):
        data, source = path, "rules dict"
    else:
        source = os.fspath(path)
        try:
            data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise RulesError(f"rules file {source} does not exist") from exc
        except yaml.YAMLError as exc:
            raise RulesError(f"rules file {source} is not valid YAML: {exc}") from exc
    data = _dates_to_text(data)
    _validate_schema(data, source)
    rules = [_rule(item) for item in data["rules"]]
    _check_semantics(rules, source)
    return RuleSet(rules=rules, source=source, users=dict(data.get("users") or {}))


def _dates_to_text(value: Any) -> Any:
    """YAML turns 2024-01-01 into a date; the schema wants text."""
    if isinstance(value, dict):
        return {k: _dates_to_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_to_text(v) for v in value]
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _validate_schema(data: Any, source: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(RULES_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    messages = [_describe_error(error, data) for error in errors[:5]]
    raise RulesError(f"rules {source} are invalid: " + "; ".join(messages))


def _describe_error(error: Any, data: Any) -> str:
    path = list(error.absolute_path)
    where = "top level"
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        rule = data["rules"][path[1]]
        name = rule.get("name") if isinstance(rule, dict) else None
        where = f"rule #{path[1] + 1}" + (f" {name!r}" if name else "")
        if len(path) > 2:
            where += " at " + ".".join(str(p) for p in path[2:])
    elif path:
        where = ".".join(str(p) for p in path)
    message = error.message
    if error.validator == "additionalProperties":
        extra = set(error.instance) - set(error.schema.get("properties", {}))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        message = f"unknown key(s) {sorted(extra)} (allowed: {allowed})"
    return f"{where}: {message}"


def _rule(item: dict) -> Rule:
    return Rule(
        name=item["name"],
        match=_normalise_criteria(item.get("match") or {}),
        courses=[{k: str(v).strip() for k, v in course.items()} for course in item["courses"]],
        due_days=item.get("due_days"),
        due_from=item.get("due_from", "assignment"),
        recur_every_days=item.get("recur_every_days"),
        exclude=_normalise_criteria(item.get("exclude") or {}),
        description=item.get("description"),
    )


def _normalise_criteria(criteria: dict) -> dict:
    result = dict(criteria)
    for key in ATTRIBUTE_KEYS:
        if isinstance(result.get(key), str):
            result[key] = [result[key]]
    return result


def _check_semantics(rules: list[Rule], source: str) -> None:
    names = [r.name for r in rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RulesError(f"rules {source}: duplicate rule name(s) {duplicated}")
    for rule in rules:
        for criteria, label in ((rule.match, "match"), (rule.exclude, "exclude")):
            statuses = [s.lower() for s in criteria.get("status", [])]
            bad = [
                s
                for s in statuses
                if not any(fnmatch.fnmatchcase(v, s) for v in ("active", "leave", "terminated"))
            ]
            if bad:
                raise RulesError(
                    f"rule {rule.name!r}: {label}.status {bad} matches no status (active|leave|terminated)"
                )
            if label == "match" and statuses and not any(fnmatch.fnmatchcase("active", s) for s in statuses):
                raise RulesError(
                    f"rule {rule.name!r}: match.status {statuses} never matches: only active people are enrolled"
                )
            low, high = criteria.get("hired_on_or_after"), criteria.get("hired_before")
            for key in ("hired_on_or_after", "hired_before"):
                if criteria.get(key):
                    try:
                        date.fromisoformat(criteria[key])
                    except ValueError as exc:
                        raise RulesError(
                            f"rule {rule.name!r}: {label}.{key} {criteria[key]!r} is not a date"
                        ) from exc
            if low and high and low >= high:
                raise RulesError(
                    f"rule {rule.name!r}: {label}.hired_on_or_after {low} is not before hired_before {high}"
                )
        if rule.due_from == "hire" and rule.due_days is None:
            raise RulesError(f"rule {rule.name!r}: due_from 'hire' needs due_days")


# ----------------------------------------------------------------------------------- courses


def resolve_courses(ruleset: RuleSet, catalog: Iterable[dict]) -> dict[str, str]:
    """Map every course reference to an Absorb course id; unknown or ambiguous names fail loudly."""
    rows = [c for c in catalog if c.get("id")]
    ids = {str(c["id"]).lower(): str(c["id"]) for c in rows}
    by_name: dict[str, list[str]] = {}
    for course in rows:
        by_name.setdefault(str(course.get("name") or "").strip(), []).append(str(course["id"]))
    by_folded: dict[str, list[str]] = {}
    for name, course_ids in by_name.items():
        by_folded.setdefault(name.casefold(), []).extend(course_ids)
    users = _rules_using(ruleset)
    resolved, problems = {}, []
    for ref in ruleset.course_refs():
        key = course_ref_key(ref)
        if ref.get("id"):
            found = ids.get(ref["id"].lower())
            problem = None if found else f"course id {ref['id']!r} is not in the Absorb catalogue"
        else:
            name = ref["name"].strip()
            matches = sorted(set(by_name.get(name) or by_folded.get(name.casefold()) or []))
            found = matches[0] if len(matches) == 1 else None
            problem = None
            if not matches:
                problem = f"course name {name!r} is not in the Absorb catalogue"
            elif len(matches) > 1:
                problem = f"course name {name!r} is ambiguous ({len(matches)} courses: use its id)"
        if problem:
            problems.append(f"{problem} (used by rule(s) {', '.join(users[key])})")
        else:
            resolved[key] = found
    if problems:
        raise RulesError("cannot resolve the rules' courses: " + "; ".join(problems))
    return resolved


def _rules_using(ruleset: RuleSet) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for rule in ruleset.rules:
        for course in rule.courses:
            users.setdefault(course_ref_key(course), []).append(rule.name)
    return users


# ----------------------------------------------------------------------------------- evaluation


def evaluate_rules(
    people: pd.DataFrame, ruleset: RuleSet, course_ids: dict[str, str], today: date
) -> pd.DataFrame:
    """Desired enrollments, one row per (employee, course), for active people already hired.

    Built from integer positions (who x which rule course), so the result's text columns are
    categoricals (a few courses and rules over hundreds of thousands of rows), not a string per row.
    """
    import numpy as np

    hire = pd.to_datetime(people["hire_date"], format="%Y-%m-%d", errors="coerce")
    eligible = people["status"].eq("active").fillna(False) & hire.le(pd.Timestamp(today)).fillna(False)
    pool = people.loc[eligible, [*ATTRIBUTE_KEYS, "employee_id"]].assign(_hire=hire[eligible])
    employee_codes, employees = pd.factorize(pool["employee_id"], use_na_sentinel=False)
    who, part = [], []  # row positions in the pool, and the (rule, course) part they came from
    parts: list[tuple[Rule, str]] = []
    for rule in ruleset.rules:
        mask = _matches(pool, rule.match, today)
        if rule.exclude:
            mask &= ~_matches(pool, rule.exclude, today)
        chosen = np.flatnonzero(mask.to_numpy(dtype=bool))
        for course in rule.courses:
            key = course_ref_key(course)
            if key not in course_ids:
                raise RulesError(
                    f"rule {rule.name!r}: course {key!r} was not resolved (call resolve_courses)"
                )
            who.append(chosen)
            part.append(np.full(len(chosen), len(parts)))
            parts.append((rule, course_ids[key]))
    if not parts or not sum(len(w) for w in who):
        return _empty_desired()
    return _desired_frame(np.concatenate(who), np.concatenate(part), parts, employee_codes, employees)


def _desired_frame(
    who: Any, part: Any, parts: list[tuple[Rule, str]], employee_codes: Any, employees: pd.Index
) -> pd.DataFrame:
    """One row per (employee, course), the first rule in the file winning, sorted by employee and course."""
    import numpy as np

    courses = sorted({course for _, course in parts})
    course_of_part = np.array([courses.index(course) for _, course in parts])
    employee, course = employee_codes[who], course_of_part[part]
    _, first = np.unique(employee * len(courses) + course, return_index=True)
    first.sort()  # the first (employee, course) in rule order wins
    rank = np.empty(len(employees), dtype=np.int64)
    rank[employees.argsort()] = np.arange(len(employees))
    kept = first[np.lexsort((course[first], rank[employee[first]]))]  # by employee id, then course id
    part = part[kept]
    rules = [rule for rule, _ in parts]
    return pd.DataFrame(
        {
            "employee_id": employees.take(employee[kept]),
            "course_id": pd.Categorical.from_codes(course[kept], categories=courses),
            "rule": _labels([rule.name for rule in rules], part),
            "due_days": pd.array([rule.due_days for rule in rules], dtype="Int64").take(part),
            "due_from": _labels([rule.due_from for rule in rules], part),
            "recur_every_days": pd.array([rule.recur_every_days for rule in rules], dtype="Int64").take(part),
        }
    )


def _labels(per_part: list[str], part: Any) -> pd.Categorical:
    """A categorical of each row's part's text (categories in file order)."""
    import numpy as np

    categories = list(dict.fromkeys(per_part))
    codes = np.array([categories.index(value) for value in per_part])
    return pd.Categorical.from_codes(codes[part], categories=categories)


def _empty_desired() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in DESIRED_COLUMNS})
    return frame.astype({"due_days": "Int64", "recur_every_days": "Int64"})


def _matches(pool: pd.DataFrame, criteria: dict, today: date) -> pd.Series:
    mask = pd.Series(True, index=pool.index)
    for key in ATTRIBUTE_KEYS:
        patterns = criteria.get(key)
        if patterns:
            mask &= _glob_mask(pool[key], patterns)
    hire = pool["_hire"]
    if criteria.get("hired_on_or_after"):
        mask &= hire.ge(pd.Timestamp(criteria["hired_on_or_after"])).fillna(False)
    if criteria.get("hired_before"):
        mask &= hire.lt(pd.Timestamp(criteria["hired_before"])).fillna(False)
    if criteria.get("hired_within_days") is not None:
        since = pd.Timestamp(today - timedelta(days=criteria["hired_within_days"]))
        mask &= hire.ge(since).fillna(False)
    return mask


def _glob_mask(values: pd.Series, patterns: list[str]) -> pd.Series:
    """Case-insensitive glob match; a missing value matches no pattern."""
    folded = [p.strip().casefold() for p in patterns]
    verdicts = {
        value: any(fnmatch.fnmatchcase(str(value).strip().casefold(), p) for p in folded)
        for value in values.dropna().unique()
    }
    return values.map(verdicts).fillna(False).astype("bool")


def leavers(people: pd.DataFrame, today: date) -> pd.DataFrame:
    """People whose termination is effective: status terminated and termination date on/before today.

    A terminated row without a termination date counts as effective now (HR says they are gone).
    """
    term = pd.to_datetime(people["termination_date"], format="%Y-%m-%d", errors="coerce")
    terminated = people["status"].eq("terminated").fillna(False)
    effective = term.le(pd.Timestamp(today)).fillna(False) | people["termination_date"].isna()
    return people.loc[terminated & effective].reset_index(drop=True)
