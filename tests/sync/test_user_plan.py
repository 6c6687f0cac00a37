"""plan_users: hires, movers (each managed field), leavers, rehires and the safeguards around them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from absorb_sync.rules import RulesError, load_rules
from absorb_sync.user_plan import (
    UserSettings,
    payload_of,
    plan_users,
    user_settings,
    users_frame,
)

from .helpers import TODAY, person

DEPARTMENTS = [
    {"id": "d-eng", "name": "Engineering", "externalId": "ENG"},
    {"id": "d-ops", "name": "Operations", "externalId": "OPS"},
]
ALL_FIELDS = ("department", "job_title", "location", "manager", "first_name", "last_name", "email")
SETTINGS = UserSettings(managed_fields=ALL_FIELDS, deactivate_leavers=True)


def feed(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows)).astype("string")


def user(employee_id: str, **fields) -> dict:
    """The Absorb user of ``person(employee_id)`` exactly as the feed has them."""
    row = person(employee_id)
    record = {
        "id": f"u-{employee_id}",
        "username": row["email"],
        "externalId": employee_id,
        "firstName": row["first_name"],
        "lastName": row["last_name"],
        "emailAddress": row["email"],
        "departmentId": "d-eng",
        "jobTitle": row["job_title"],
        "location": row["location"],
        "supervisorId": "u-E000001" if employee_id != "E000001" else None,
        "activeStatus": 0,
    }
    record.update(fields)
    return record


def plan(people, users, settings=SETTINGS, *, managed=None, protected=(), open_enrollments=..., **kw):
    return plan_users(
        feed(*people),
        users_frame(users),
        DEPARTMENTS,
        settings,
        today=TODAY,
        create_missing=kw.pop("create_missing", True),
        managed=set(managed if managed is not None else [p["employee_id"] for p in people]),
        protected={p.casefold() for p in protected},
        open_enrollments={} if open_enrollments is ... else open_enrollments,
        **kw,
    )


def lines(result) -> list[tuple]:
    return [
        (r["action"], r["employee_id"], json.loads(r["payload"])) for r in result.lines.to_dict("records")
    ]


def test_people_as_absorb_has_them_plan_nothing():
    people = [person("E000001"), person("E000002")]
    result = plan(people, [user("E000001"), user("E000002")])
    assert result.lines.empty and result.notes.empty


def test_a_hire_is_created_only_with_create_missing_users_and_gets_a_placeholder_id():
    people = [person("E000001"), person("E000003", department="Operations")]
    created = plan(people, [user("E000001")])
    [(action, employee, payload)] = lines(created)
    assert action == "create_user" and employee == "E000003"
    assert payload["username"] == payload["emailAddress"] == "ann.lee.000003@example.com"
    assert payload["externalId"] == "E000003" and payload["departmentId"] == "d-ops"
    assert payload["supervisorId"] == "u-E000001" and payload["activeStatus"] == 0
    assert created.user_ids["E000003"] == "new:E000003"
    assert plan(people, [user("E000001")], create_missing=False).lines.empty


@pytest.mark.parametrize(
    ("managed", "feed_change", "absorb_field", "wanted"),
    [
        ("department", {"department": "Operations"}, "departmentId", "d-ops"),
        ("job_title", {"job_title": "Staff Engineer"}, "jobTitle", "Staff Engineer"),
        ("location", {"location": "Berlin"}, "location", "Berlin"),
        ("manager", {"manager_id": "E000004"}, "supervisorId", "u-E000004"),
        ("first_name", {"first_name": "Anna"}, "firstName", "Anna"),
        ("last_name", {"last_name": "Li"}, "lastName", "Li"),
        ("email", {"email": "anna.li@example.com"}, "emailAddress", "anna.li@example.com"),
    ],
)
def test_a_mover_gets_each_managed_field_and_only_managed_ones(managed, feed_change, absorb_field, wanted):
    people = [person("E000001"), person("E000002", **feed_change), person("E000004")]
    users = [user("E000001"), user("E000002"), user("E000004")]
    [(action, employee, payload)] = lines(plan(people, users, UserSettings(managed_fields=(managed,))))
    assert (action, employee, payload) == ("update_user", "E000002", {absorb_field: wanted})
    others = tuple(f for f in ALL_FIELDS if f != managed)
    assert plan(people, users, UserSettings(managed_fields=others)).lines.empty  # unmanaged: left alone


def test_an_update_never_touches_the_username_and_a_blank_never_clears():
    people = [person("E000001"), person("E000002", email="new@example.com", job_title=None)]
    [(_, _, payload)] = lines(plan(people, [user("E000001"), user("E000002")]))
    assert payload == {"emailAddress": "new@example.com"}


def test_an_unknown_department_quarantines_the_update_and_is_reported():
    people = [person("E000001"), person("E000002", department="Narnia", job_title="Lion")]
    result = plan(people, [user("E000001"), user("E000002")])
    assert result.lines.empty  # neither the department nor the title: the person's update waits
    [note] = result.notes.to_dict("records")
    assert note["note"] == "quarantined" and "'Narnia'" in note["detail"] and "not created" in note["detail"]
    assert result.summary()["quarantined"] == 1


def test_departments_can_be_matched_by_external_id():
    people = [person("E000001", department="ENG"), person("E000002", department="OPS")]
    settings = UserSettings(managed_fields=("department",), department_match="external_id")
    [(_, employee, payload)] = lines(plan(people, [user("E000001"), user("E000002")], settings))
    assert (employee, payload) == ("E000002", {"departmentId": "d-ops"})
    by_name = plan(people, [user("E000001"), user("E000002")], UserSettings(managed_fields=("department",)))
    assert set(by_name.notes["note"]) == {"quarantined"}  # "ENG" is no department name


LEAVER = {"status": "terminated", "termination_date": "2026-06-01"}


def test_a_leaver_is_deactivated_once_their_open_enrollments_are_gone():
    people = [person("E000001"), person("E000002", **LEAVER)]
    users = [user("E000001"), user("E000002")]
    waiting = plan(people, users, open_enrollments={"u-e000002": 2})
    assert waiting.lines.empty and waiting.notes["note"].tolist() == ["waiting_handover"]
    [(action, employee, payload)] = lines(plan(people, users, open_enrollments={}))
    assert (action, employee) == ("deactivate_user", "E000002")
    assert payload == {"activeStatus": 1, "dateTerminated": "2026-06-01"}


def test_a_termination_still_ahead_or_an_unread_enrollment_list_deactivates_nobody():
    future = [person("E000001"), person("E000002", status="terminated", termination_date="2026-07-01")]
    assert plan(future, [user("E000001"), user("E000002")]).lines.empty
    past = [person("E000001"), person("E000002", **LEAVER)]
    assert plan(past, [user("E000001"), user("E000002")], open_enrollments=None).lines.empty


def test_only_managed_users_are_deactivated_never_protected_ones_nor_on_an_incomplete_read():
    people = [person("E000001"), person("E000002", **LEAVER), person("E000003", **LEAVER)]
    users = [user("E000001"), user("E000002", username="admin"), user("E000003")]
    result = plan(people, users, managed={"E000001", "E000003"}, protected=["ADMIN"])
    assert [(a, e) for a, e, _ in lines(result)] == [("deactivate_user", "E000003")]
    assert dict(zip(result.notes["employee_id"], result.notes["note"], strict=True)) == {
        "E000002": "protected"
    }
    unmanaged = plan(people, users, managed={"E000001"})
    assert unmanaged.lines.empty and set(unmanaged.notes["note"]) == {"not_managed"}
    partial = plan(people, users, users_read_complete=False)
    assert partial.lines.empty and not partial.summary()["users_read_complete"]


def test_the_connection_user_and_protected_users_get_no_update_either():
    people = [person("E000001"), person("E000002", job_title="Boss")]
    result = plan(people, [user("E000001"), user("E000002")], protected=["u-e000002"])
    assert result.lines.empty and result.notes["note"].tolist() == ["protected"]


def test_a_rehire_reactivates_the_same_account_never_a_second_one():
    people = [person("E000001"), person("E000002", job_title="Returning Engineer")]
    users = [user("E000001"), user("E000002", activeStatus=1)]
    result = plan(people, users)
    assert [(a, e) for a, e, _ in lines(result)] == [
        ("reactivate_user", "E000002"),
        ("update_user", "E000002"),
    ]
    assert result.user_ids["E000002"] == "u-E000002"


def test_deactivation_share_is_counted_against_the_active_users():
    people = [person("E000001")] + [person(f"E00001{n}", **LEAVER) for n in range(3)]
    users = (
        [user("E000001")] + [user(f"E00001{n}") for n in range(3)] + [user(f"E00009{n}") for n in range(6)]
    )
    summary = plan(people, users).summary()
    assert (
        summary["deactivations"] == 3
        and summary["active_users"] == 10
        and summary["deactivation_pct"] == 30.0
    )


def test_placeholders_in_payloads_resolve_to_the_created_ids():
    line = {"payload": json.dumps({"supervisorId": "new:E000009", "jobTitle": "X"})}
    assert payload_of(line, {"E000009": "u-9"}) == {"supervisorId": "u-9", "jobTitle": "X"}
    assert payload_of(line, {}) == {"jobTitle": "X"}


def test_the_users_section_of_the_rules_file_is_validated(tmp_path):
    rules = "version: 1\nusers:\n  managed_fields: [{}]\nrules:\n  - name: r\n    courses: [{{name: C}}]\n"
    good = tmp_path / "good.yaml"
    good.write_text(rules.format("department, email"))
    assert user_settings(load_rules(good).users).managed_fields == ("department", "email")
    bad = tmp_path / "bad.yaml"
    bad.write_text(rules.format("username"))
    with pytest.raises(RulesError, match=r"users\.managed_fields"):
        load_rules(bad)
    assert not user_settings(None).enabled


def test_a_short_read_of_the_users_keeps_the_rows_and_says_so():
    """The sync's read of /users: a short read is recorded (the plan gate refuses it), not raised."""
    from absorb_provider.exceptions import AbsorbIncompleteReadError
    from absorb_sync.jobs.hr_sync import _read_users

    class ShortUsersRead:  # stands in for the provider's paged Arrow read that came back short
        def user_tables(self, columns):
            import pyarrow as pa

            types = {"string": pa.string(), "int": pa.int64()}
            schema = pa.schema([(name, types[kind]) for name, kind in columns.items()])
            yield pa.Table.from_pylist([user("E000001")], schema=schema)
            raise AbsorbIncompleteReadError("/users", 2, 1)

    users, problem = _read_users(ShortUsersRead())
    assert users["externalId"].tolist() == ["E000001"] and problem.startswith("/users")
    people = [person("E000001"), person("E000002", **LEAVER)]
    result = plan(people, [user("E000001")], users_read_complete=problem is None)
    assert result.lines.empty and not result.summary()["users_read_complete"]
