"""User lifecycle in the sandbox: PUT of every user field, leavers deactivated with their history
kept, rehires reactivated with it, departments found by their external id."""

from __future__ import annotations

import uuid

from absorb_sandbox import app as sandbox_app
from absorb_sandbox import seed
from absorb_sandbox.seed import department_external_id, department_id
from sandbox_helpers import assert_error, person, unenrolled_pair

COURSE = seed.course_id("Anti-Harassment Training")


def _enrollments(api, user_id: str) -> list[dict]:
    return api.get(f"/users/{user_id}/enrollments", params={"_limit": 1000}).json()["enrollments"]


def _enrolled_person(api) -> dict:
    """An active seeded person with at least one enrollment."""
    users = api.get(
        "/users", params={"_filter": "activeStatus eq 0 and externalId ne null", "_limit": 50}
    ).json()["users"]
    return next(u for u in users if _enrollments(api, u["id"]))


def test_put_sets_every_user_field_and_a_repeat_writes_nothing(fresh_api, fresh_sandbox):
    user = person(fresh_api, "E000040")
    supervisor = person(fresh_api, "E000041")
    body = {
        "username": "renamed.e000040@example.com",
        "password": "New-Passw0rd!",
        "departmentId": department_id("Legal").upper(),
        "firstName": "Renée",
        "lastName": "Moved",
        "emailAddress": "renee.moved@example.com",
        "externalId": "E000040",
        "employeeNumber": "000040",
        "jobTitle": "Paralegal",
        "location": "Toronto",
        "dateHired": "2019-04-01",
        "dateTerminated": None,
        "supervisorId": supervisor["id"],
        "activeStatus": 0,
    }
    fresh_sandbox.reset_stats()

    updated = fresh_api.put(f"/users/{user['id']}", json=body)

    assert updated.status_code == 200, updated.text
    got = fresh_api.get(f"/users/{user['id']}").json()
    assert updated.json() == got and "password" not in got
    expected = {k: v for k, v in body.items() if k not in ("password", "dateHired")}
    expected["departmentId"] = department_id("Legal")
    assert {k: got[k] for k in expected} == expected
    assert got["dateHired"].startswith("2019-04-01") and got["dateEdited"] != user["dateEdited"]
    stats = fresh_sandbox.stats()
    assert stats["write_calls"] == 1 and stats["by_route"]["PUT /users/{userId}"] == 1

    again = fresh_api.put(f"/users/{user['id']}", json=body).json()
    assert again["dateEdited"] == got["dateEdited"]  # nothing changed, nothing written
    assert fresh_sandbox.stats()["write_calls"] == 2  # but the write is counted


def test_unknown_department_or_supervisor_is_refused_naming_the_field(fresh_api):
    user = person(fresh_api, "E000042")
    for field in ("departmentId", "supervisorId"):
        unknown = str(uuid.UUID(int=42))
        body = assert_error(
            fresh_api.put(f"/users/{user['id']}", json={"jobTitle": "Changed", field: unknown}),
            422,
            contains=field,
        )
        assert body["_meta"]["field"] == field and unknown in body["message"]
    assert fresh_api.get(f"/users/{user['id']}").json() == user  # no partial write
    refused = assert_error(fresh_api.put(f"/users/{user['id']}", json={"password": 7}), 422)
    assert refused["_meta"]["field"] == "password" and "7" not in refused["message"]
    assert_error(
        fresh_api.put(f"/users/{user['id']}", json={"id": person(fresh_api, "E000043")["id"]}),
        422,
        contains="id in the body",
    )
    assert_error(
        fresh_api.put(f"/users/{user['id']}", json={"supervisorId": user["id"]}), 422, contains="supervisor"
    )


def test_deactivation_keeps_history_and_refuses_new_enrollments(fresh_api):
    user = _enrolled_person(fresh_api)
    history = _enrollments(fresh_api, user["id"])
    other_course = next(
        c["id"]
        for c in fresh_api.get("/courses", params={"_limit": 100}).json()["courses"]
        if c["id"] not in {e["courseId"] for e in history} and c["courseType"] == "OnlineCourse"
    )

    left = fresh_api.put(f"/users/{user['id']}", json={"activeStatus": 1, "dateTerminated": "2026-11-20"})

    assert left.status_code == 200 and left.json()["activeStatus"] == 1
    assert left.json()["dateTerminated"].startswith("2026-11-20")
    assert _enrollments(fresh_api, user["id"]) == history
    assert fresh_api.get(f"/enrollments/{history[0]['id']}").json() == history[0]
    inactive = fresh_api.get(
        "/users", params={"_filter": f"activeStatus eq 1 and id eq guid'{user['id']}'"}
    ).json()
    assert inactive["totalItems"] == 1
    for response in (
        fresh_api.post(f"/users/{user['id']}/enrollments/{other_course}"),
        fresh_api.post(f"/users/{user['id']}/enrollments", json={"courseId": other_course}),
        fresh_api.post(
            f"/users/{user['id']}/enrollments/{history[0]['courseId']}", params={"reEnroll": "true"}
        ),
    ):
        body = assert_error(response, 422, contains="inactive")
        assert body["_meta"]["userId"] == user["id"]
    assert _enrollments(fresh_api, user["id"]) == history


def test_reactivation_brings_the_same_user_back_with_history(fresh_api):
    user = _enrolled_person(fresh_api)
    history = _enrollments(fresh_api, user["id"])
    fresh_api.put(f"/users/{user['id']}", json={"activeStatus": 1, "dateTerminated": "2026-10-01"})

    back = fresh_api.put(f"/users/{user['id']}", json={"activeStatus": 0, "dateHired": "2026-11-25"})

    assert back.status_code == 200
    rehired = back.json()
    assert rehired["id"] == user["id"] and rehired["externalId"] == user["externalId"]
    assert rehired["activeStatus"] == 0 and rehired["dateTerminated"] is None  # cleared by reactivation
    assert rehired["dateHired"].startswith("2026-11-25")
    assert _enrollments(fresh_api, user["id"]) == history
    course = next(
        c["id"]
        for c in fresh_api.get("/courses", params={"_limit": 100}).json()["courses"]
        if c["id"] not in {e["courseId"] for e in history} and c["courseType"] == "OnlineCourse"
    )
    assert fresh_api.post(f"/users/{user['id']}/enrollments/{course}").status_code == 201


def test_an_active_user_can_still_be_enrolled(fresh_api):
    """The inactive-user refusal must not catch active users (control for the test above)."""
    user_id = unenrolled_pair(fresh_api, COURSE)
    assert fresh_api.post(f"/users/{user_id}/enrollments/{COURSE}").status_code == 201


def test_departments_have_stable_filterable_external_ids(api):
    departments = api.get("/departments", params={"_limit": 100}).json()["departments"]
    assert {d["name"] for d in departments} == set(seed.DEPARTMENTS)
    assert all(d["externalId"] == department_external_id(d["name"]) for d in departments)
    assert len({d["externalId"] for d in departments}) == len(departments)
    assert department_external_id("Human Resources") == "DEP-HUMAN-RESOURCES"

    by_filter = api.get("/departments", params={"_filter": "externalId eq 'DEP-LEGAL'"}).json()
    assert [d["id"] for d in by_filter["departments"]] == [department_id("Legal")]
    by_param = api.get("/departments", params={"externalId": "DEP-LEGAL"}).json()
    assert by_param["departments"] == by_filter["departments"]
    by_name = api.get("/departments", params={"departmentName": "Legal"}).json()
    assert by_name["departments"] == by_filter["departments"]
    assert api.get("/departments", params={"externalId": "DEP-NONE"}).json()["totalItems"] == 0


def test_a_db_seeded_before_department_external_ids_gets_them_on_open(tmp_path):
    config = sandbox_app.SandboxConfig(db_path=str(tmp_path / "old.db"), seed="none")
    conn = sandbox_app.open_store(config)
    conn.execute("ALTER TABLE departments DROP COLUMN external_id")  # the schema before issue 12
    conn.close()

    conn = sandbox_app.open_store(config)

    rows = dict(conn.execute("SELECT name, external_id FROM departments").fetchall())
    conn.close()
    assert rows == {name: department_external_id(name) for name in seed.DEPARTMENTS}
