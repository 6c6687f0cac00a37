"""Rules: schema errors name the rule and key; matching (globs, hire windows, future hires); resolution."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml
from absorb_sync.rules import RulesError, evaluate_rules, leavers, load_rules, resolve_courses

from .helpers import TODAY, people_frame, person

ROOT = Path(__file__).resolve().parents[2]
CATALOG = [
    {"id": "c-coc", "name": "Code of Conduct"},
    {"id": "c-sales", "name": "Sales Compliance"},
    {"id": "c-mgr", "name": "Manager Essentials"},
    {"id": "c-new", "name": "New Hire Orientation"},
    {"id": "c-dup1", "name": "Excel Basics"},
    {"id": "c-dup2", "name": "Excel Basics"},
]


def rules_file(tmp_path, rules: list[dict]) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "rules": rules}))
    return path


def desired_pairs(people, rules, tmp_path, today=TODAY) -> set[tuple[str, str, str]]:
    ruleset = load_rules(rules_file(tmp_path, rules))
    desired = evaluate_rules(people_frame(people), ruleset, resolve_courses(ruleset, CATALOG), today)
    return set(zip(desired["employee_id"], desired["course_id"], desired["rule"], strict=True))


def test_default_rules_file_loads_and_resolves_against_sandbox_courses():
    from absorb_sandbox.seed import course_id

    ruleset = load_rules(ROOT / "include" / "rules" / "enrollment_rules.yaml")
    names = [ref["name"] for ref in ruleset.course_refs()]
    catalog = [{"id": course_id(n), "name": n} for n in names]
    resolved = resolve_courses(ruleset, catalog)
    assert resolved["name:Code of Conduct"] == course_id("Code of Conduct")
    assert len(resolved) == len(set(names)) == 8


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [{"name": "a", "courses": [{"name": "X"}], "match": {"departmnt": ["Sales"]}}],
            r"rule #1 'a' at match: unknown key\(s\) \['departmnt'\]",
        ),
        ([{"name": "a", "courses": []}], r"rule #1 'a' at courses: \[\] should be non-empty"),
        ([{"name": "a", "courses": [{"title": "X"}]}], r"rule #1 'a' at courses.0: unknown key"),
        ([{"name": "a", "courses": [{"name": "X"}], "due_days": -3}], r"rule #1 'a' at due_days: -3"),
        (
            [{"name": "a", "courses": [{"name": "X"}], "due_from": "start"}],
            r"at due_from: 'start' is not one of",
        ),
        (
            [{"name": "a", "courses": [{"name": "X"}]}, {"name": "a", "courses": [{"name": "Y"}]}],
            r"duplicate rule name\(s\) \['a'\]",
        ),
        ([{"name": "a", "courses": [{"name": "X"}], "due_from": "hire"}], "due_from 'hire' needs due_days"),
        (
            [{"name": "a", "courses": [{"name": "X"}], "match": {"status": ["fired"]}}],
            r"match.status \['fired'\]",
        ),
        (
            [
                {
                    "name": "a",
                    "courses": [{"name": "X"}],
                    "match": {"hired_before": "2020-01-01", "hired_on_or_after": "2021-01-01"},
                }
            ],
            "is not before hired_before",
        ),
        (
            [{"name": "a", "courses": [{"name": "X"}], "match": {"hired_before": "2020-13-01"}}],
            "is not a date",
        ),
        ([{"courses": [{"name": "X"}]}], "rule #1: 'name' is a required property"),
    ],
)
def test_invalid_rules_name_the_rule_and_key(tmp_path, rules, message):
    with pytest.raises(RulesError, match=message):
        load_rules(rules_file(tmp_path, rules))


def test_top_level_errors(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rulez: []\n")
    with pytest.raises(RulesError, match=r"unknown key\(s\) \['rulez'\]"):
        load_rules(path)
    path.write_text("rules: [\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(path)
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(tmp_path / "missing.yaml")


def test_unknown_and_ambiguous_course_names_fail_resolution(tmp_path):
    ruleset = load_rules(
        rules_file(
            tmp_path, [{"name": "r1", "courses": [{"name": "Excel Basics"}, {"name": "Nope"}, {"id": "c-x"}]}]
        )
    )
    with pytest.raises(RulesError) as info:
        resolve_courses(ruleset, CATALOG)
    text = str(info.value)
    assert "'Excel Basics' is ambiguous (2 courses: use its id) (used by rule(s) r1)" in text
    assert "course name 'Nope' is not in the Absorb catalogue" in text
    assert "course id 'c-x' is not in the Absorb catalogue" in text


def test_course_names_resolve_case_insensitively_and_ids_directly(tmp_path):
    ruleset = load_rules(
        rules_file(tmp_path, [{"name": "r", "courses": [{"name": "code of conduct"}, {"id": "C-SALES"}]}])
    )
    assert resolve_courses(ruleset, CATALOG) == {"name:code of conduct": "c-coc", "id:C-SALES": "c-sales"}


def test_attribute_globs_are_case_insensitive_and_missing_values_never_match(tmp_path):
    people = [
        person("E000001", job_title="Manager"),
        person("E000002", job_title="Director of Sales"),
        person("E000003", job_title="Product Marketing Manager"),
        person("E000004", job_title=None),
        person("E000005", job_title="head of legal"),
    ]
    rules = [
        {
            "name": "mgr",
            "match": {"job_title": ["manager", "Director*", "Head of *"]},
            "courses": [{"name": "Manager Essentials"}],
        }
    ]
    assert {p[0] for p in desired_pairs(people, rules, tmp_path)} == {"E000001", "E000002", "E000005"}


def test_criteria_combine_with_and_lists_with_or_and_exclude_removes(tmp_path):
    people = [
        person("E000001", department="Sales", location="London"),
        person("E000002", department="Sales", location="Sydney"),
        person("E000003", department="Marketing", location="London"),
        person("E000004", department="Sales", location="Berlin", job_title="Intern"),
        person("E000005", department="Sales", location="Berlin"),
    ]
    rules = [
        {
            "name": "emea-sales",
            "match": {"department": "Sales", "location": ["London", "Berlin"]},
            "exclude": {"job_title": ["intern*"]},
            "courses": [{"name": "Sales Compliance"}],
        }
    ]
    assert {p[0] for p in desired_pairs(people, rules, tmp_path)} == {"E000001", "E000005"}


def test_hire_windows_and_future_hires(tmp_path):
    people = [
        person("E000001", hire_date="2026-06-15"),  # today: eligible
        person("E000002", hire_date="2026-06-16"),  # tomorrow: waits
        person("E000003", hire_date="2026-03-17"),  # exactly 90 days ago
        person("E000004", hire_date="2026-03-16"),  # 91 days ago
        person("E000005", hire_date="2019-12-31"),
    ]
    rules = [
        {"name": "new", "match": {"hired_within_days": 90}, "courses": [{"name": "New Hire Orientation"}]},
        {"name": "old", "match": {"hired_before": "2020-01-01"}, "courses": [{"name": "Manager Essentials"}]},
        {
            "name": "recent",
            "match": {"hired_on_or_after": "2026-03-17"},
            "courses": [{"name": "Sales Compliance"}],
        },
        {"name": "all", "courses": [{"name": "Code of Conduct"}]},
    ]
    pairs = desired_pairs(people, rules, tmp_path)
    by_rule = {rule: sorted(e for e, _, r in pairs if r == rule) for rule in ("new", "old", "recent", "all")}
    assert by_rule == {
        "new": ["E000001", "E000003"],
        "old": ["E000005"],
        "recent": ["E000001", "E000003"],
        "all": ["E000001", "E000003", "E000004", "E000005"],
    }
    later = desired_pairs(people, rules, tmp_path, today=date(2026, 6, 16))
    assert ("E000002", "c-coc", "all") in later


def test_only_active_people_are_enrolled(tmp_path):
    people = [
        person("E000001"),
        person("E000002", status="leave"),
        person("E000003", status="terminated", termination_date="2026-07-01"),
    ]
    rules = [{"name": "all", "courses": [{"name": "Code of Conduct"}]}]
    assert desired_pairs(people, rules, tmp_path) == {("E000001", "c-coc", "all")}


def test_first_matching_rule_wins_per_course_and_output_is_deterministic(tmp_path):
    people = [person("E000002", department="Sales"), person("E000001", department="Sales")]
    rules = [
        {
            "name": "sales",
            "match": {"department": ["Sales"]},
            "courses": [{"name": "Code of Conduct"}],
            "due_days": 7,
        },
        {
            "name": "all",
            "courses": [{"name": "Code of Conduct"}, {"name": "Manager Essentials"}],
            "due_days": 30,
            "due_from": "hire",
            "recur_every_days": 365,
        },
    ]
    ruleset = load_rules(rules_file(tmp_path, rules))
    desired = evaluate_rules(people_frame(people), ruleset, resolve_courses(ruleset, CATALOG), TODAY)
    assert desired.to_dict("records") == [
        {
            "employee_id": "E000001",
            "course_id": "c-coc",
            "rule": "sales",
            "due_days": 7,
            "due_from": "assignment",
            "recur_every_days": None,
        },
        {
            "employee_id": "E000001",
            "course_id": "c-mgr",
            "rule": "all",
            "due_days": 30,
            "due_from": "hire",
            "recur_every_days": 365,
        },
        {
            "employee_id": "E000002",
            "course_id": "c-coc",
            "rule": "sales",
            "due_days": 7,
            "due_from": "assignment",
            "recur_every_days": None,
        },
        {
            "employee_id": "E000002",
            "course_id": "c-mgr",
            "rule": "all",
            "due_days": 30,
            "due_from": "hire",
            "recur_every_days": 365,
        },
    ]


def test_unresolved_course_is_an_error(tmp_path):
    ruleset = load_rules(rules_file(tmp_path, [{"name": "r", "courses": [{"name": "Code of Conduct"}]}]))
    with pytest.raises(RulesError, match="was not resolved"):
        evaluate_rules(people_frame([person("E000001")]), ruleset, {}, TODAY)


def test_leavers_take_effect_on_their_termination_date():
    people = people_frame(
        [
            person("E000001"),
            person("E000002", status="terminated", termination_date="2026-06-15"),
            person("E000003", status="terminated", termination_date="2026-06-16"),
            person("E000004", status="terminated", termination_date=None),
            person("E000005", status="leave"),
        ]
    )
    assert list(leavers(people, TODAY)["employee_id"]) == ["E000002", "E000004"]


def test_a_status_match_that_excludes_active_people_is_refused(tmp_path):
    rules = [{"name": "on-leave", "match": {"status": ["leave"]}, "courses": [{"name": "X"}]}]
    with pytest.raises(RulesError, match=r"match.status \['leave'\] never matches: only active people"):
        load_rules(rules_file(tmp_path, rules))
    ok = [
        {
            "name": "act",
            "match": {"status": ["Active"]},
            "exclude": {"status": ["leave"]},
            "courses": [{"name": "X"}],
        }
    ]
    assert load_rules(rules_file(tmp_path, ok)).rules[0].match["status"] == ["Active"]
