"""Users beyond the seed: get, upsert by externalId/username, update, upload; the seeded organisation."""

from __future__ import annotations

import uuid

from absorb_sandbox.seed import department_id, user_id
from sandbox_helpers import assert_error, person


def test_seeded_organisation_matches_the_contract(api):
    users = api.get("/users", params={"_limit": 1000}).json()["users"]
    people = [u for u in users if u["externalId"]]
    assert 180 <= len(people) <= 230
    assert all(
        u["externalId"][0] == "E" and len(u["externalId"]) == 7 and u["externalId"][1:].isdigit()
        for u in people
    )
    assert all(u["id"] == user_id(u["externalId"]) for u in people)
    assert len({u["username"] for u in users}) == len(users)
    assert all(u["username"].endswith("@example.com") for u in people)
    api_user = [u for u in users if u["username"] == "airflow.integration"]
    assert len(api_user) == 1
    assert {u["activeStatus"] for u in people} == {0, 1}
    assert sum(1 for u in people if u["supervisorId"]) >= len(people) - 1
    locations = {u["location"] for u in people}
    assert locations <= {"New York", "San Francisco", "Toronto", "London", "Berlin", "Sydney"}


def test_get_user_and_errors(api):
    user = person(api, "E000010")
    assert api.get(f"/users/{user['id']}").json() == user
    assert_error(api.get("/users/E000010"), 422, contains="Invalid format provided for userId")
    assert_error(api.get(f"/users/{uuid.UUID(int=7)}"), 404)


def test_upsert_creates_then_matches_on_external_id(fresh_api):
    body = {
        "username": "new.person@example.com",
        "firstName": "New",
        "lastName": "Person",
        "externalId": "E900001",
        "departmentId": department_id("Legal"),
        "jobTitle": "Paralegal",
        "dateHired": "2026-12-01",
    }
    created = fresh_api.post("/users", json=body)
    assert created.status_code == 201
    user = created.json()
    assert (
        user["externalId"] == "E900001"
        and user["activeStatus"] == 0
        and user["dateHired"].startswith("2026-12-01")
    )
    renamed = fresh_api.post(
        "/users", json={**body, "username": "renamed@example.com", "jobTitle": "Counsel"}
    )
    assert renamed.status_code == 200 and renamed.json()["id"] == user["id"]
    assert renamed.json()["username"] == "renamed@example.com" and renamed.json()["jobTitle"] == "Counsel"
    same = fresh_api.post("/users", json={**body, "username": "renamed@example.com", "jobTitle": "Counsel"})
    assert same.json()["dateEdited"] == renamed.json()["dateEdited"]
    found = fresh_api.get("/users", params={"_filter": "externalId eq 'E900001'"}).json()
    assert found["totalItems"] == 1


def test_update_deactivates_and_validates(fresh_api):
    user = person(fresh_api, "E000020")
    updated = fresh_api.put(f"/users/{user['id']}", json={"activeStatus": 1, "dateTerminated": "2026-11-01"})
    assert updated.status_code == 200 and updated.json()["activeStatus"] == 1
    assert fresh_api.get(f"/users/{user['id']}").json()["activeStatus"] == 1
    assert_error(
        fresh_api.put(f"/users/{user['id']}", json={"activeStatus": 2}), 422, contains="activeStatus"
    )
    assert_error(fresh_api.put(f"/users/{user['id']}", json={"departmentId": str(uuid.UUID(int=3))}), 422)
    assert_error(fresh_api.put(f"/users/{user['id']}", json={"supervisorId": user["id"]}), 422)
    assert_error(
        fresh_api.put(f"/users/{user['id']}", json={"username": person(fresh_api, "E000021")["username"]}),
        422,
        contains="username",
    )
    assert_error(fresh_api.put(f"/users/{uuid.UUID(int=3)}", json={"activeStatus": 1}), 404)
    assert_error(
        fresh_api.put(f"/users/{user['id']}", content=b"[", headers={"content-type": "application/json"}), 400
    )


def test_upsert_errors(fresh_api):
    assert_error(fresh_api.post("/users", json={"username": "x@example.com"}), 422, contains="firstName")
    assert_error(fresh_api.post("/users", json={"username": 5, "firstName": "a", "lastName": "b"}), 422)
    assert_error(
        fresh_api.post("/users", json={"username": "y", "firstName": "a", "lastName": "b", "dateHired": "x"}),
        422,
    )
    assert_error(fresh_api.post("/users", json=[]), 400)


def test_upload_reports_each_line(fresh_api):
    rows = [
        {"username": "u1@example.com", "firstName": "U", "lastName": "One", "externalId": "E900101"},
        {"username": "u2@example.com"},
        {"externalId": "E000030", "jobTitle": "Controller"},
    ]
    results = fresh_api.post("/users/upload", json=rows).json()
    assert [r["status"] for r in results] == [201, 422, 200]
    assert results[1]["error"] and results[2]["id"] == user_id("E000030")
    assert_error(fresh_api.post("/users/upload", json=[{}] * 201), 422)
    assert_error(fresh_api.post("/users/upload", json=[]), 400)


def test_dates_before_year_1000_keep_their_four_digit_year(fresh_api):
    """Found by the schemathesis run: glibc's strftime does not zero-pad such years."""
    body = {
        "username": "ancient.date@example.com",
        "firstName": "Old",
        "lastName": "Date",
        "externalId": "E900751",
        "dateHired": "0751-09-11T07:50:33Z",
    }
    created = fresh_api.post("/users", json=body)
    assert created.status_code == 201
    assert created.json()["dateHired"] == "0751-09-11T07:50:33.000000Z"
