"""Paging edges and the ``_filter`` / ``_sort`` grammar, against the shared small sandbox."""

from __future__ import annotations

import itertools

import pytest
from absorb_sandbox.seed import course_id, user_id
from sandbox_helpers import assert_error

CODE_OF_CONDUCT = course_id("Code of Conduct")


def all_users(api) -> list[dict]:
    return api.get("/users", params={"_limit": 1000}).json()["users"]


def test_default_page_and_envelope(api):
    body = api.get("/users").json()
    assert set(body) == {"totalItems", "returnedItems", "limit", "offset", "users"}
    assert body["limit"] == 20 and body["offset"] == 0 and body["returnedItems"] == 20
    assert body["totalItems"] >= 200


def test_offset_is_a_page_index_and_pages_do_not_overlap(api):
    first = api.get("/users", params={"_limit": 7, "_offset": 0}).json()["users"]
    second = api.get("/users", params={"_limit": 7, "_offset": 1}).json()["users"]
    everyone = all_users(api)
    assert [u["id"] for u in first + second] == [u["id"] for u in everyone[:14]]


def test_last_page_is_short_and_the_next_is_empty(api):
    total = api.get("/users", params={"_limit": 1}).json()["totalItems"]
    size = 30
    last_index = (total - 1) // size
    last = api.get("/users", params={"_limit": size, "_offset": last_index}).json()
    assert last["returnedItems"] == total - last_index * size == len(last["users"])
    beyond = api.get("/users", params={"_limit": size, "_offset": last_index + 1}).json()
    assert beyond["returnedItems"] == 0 and beyond["users"] == [] and beyond["totalItems"] == total


def test_limit_bounds(api):
    assert api.get("/users", params={"_limit": 1000}).status_code == 200
    assert_error(api.get("/users", params={"_limit": 1001}), 422, contains="_limit")
    assert_error(api.get("/users", params={"_limit": 0}), 422)
    assert_error(api.get("/users", params={"_limit": "ten"}), 422)


def test_offset_bounds(api):
    assert api.get("/users", params={"_offset": 65535}).json()["returnedItems"] == 0
    assert_error(api.get("/users", params={"_offset": 65536}), 422, contains="_offset")
    assert_error(api.get("/users", params={"_offset": -1}), 422)


def test_deprecated_limit_offset_status_and_modified_since(api):
    page = api.get(f"/courses/{CODE_OF_CONDUCT}/enrollments", params={"limit": 5, "offset": 1}).json()
    assert page["limit"] == 5 and page["offset"] == 1 and page["returnedItems"] == 5
    complete = api.get(f"/courses/{CODE_OF_CONDUCT}/enrollments", params={"status": 3, "_limit": 1000}).json()
    assert complete["totalItems"] > 0 and {e["status"] for e in complete["enrollments"]} == {3}
    everything = api.get(f"/courses/{CODE_OF_CONDUCT}/enrollments", params={"_limit": 1000}).json()[
        "enrollments"
    ]
    cutoff = sorted(e["dateEdited"] for e in everything)[len(everything) // 2]
    recent = api.get(
        f"/courses/{CODE_OF_CONDUCT}/enrollments", params={"modifiedSince": cutoff, "_limit": 1000}
    ).json()["enrollments"]
    assert recent and all(e["dateEdited"] >= cutoff for e in recent)
    assert len(recent) == sum(e["dateEdited"] >= cutoff for e in everything)


def filtered(api, expression: str, path: str = "/users", key: str = "users") -> list[dict]:
    response = api.get(path, params={"_filter": expression, "_limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()[key]


def test_filter_comparisons_on_strings_numbers_and_guids(api):
    [person] = filtered(api, "externalId eq 'E000042'")
    assert person["id"] == user_id("E000042")
    assert all(u["externalId"] != "E000042" for u in filtered(api, "externalId ne 'E000042'"))
    [same] = filtered(api, f"id eq guid'{user_id('E000042').upper()}'")
    assert same["externalId"] == "E000042"
    later = filtered(api, "externalId gt 'E000190'")
    assert later and all(u["externalId"] > "E000190" for u in later)
    assert all(u["externalId"] >= "E000190" for u in filtered(api, "externalId ge 'E000190'"))
    assert all(u["externalId"] < "E000003" for u in filtered(api, "externalId lt 'E000003'"))
    assert len(filtered(api, "externalId le 'E000003'")) == 3
    assert all(u["activeStatus"] == 1 for u in filtered(api, "activeStatus eq 1"))


def test_filter_booleans_null_and_numbers_on_enrollments(api):
    path, key = f"/courses/{CODE_OF_CONDUCT}/enrollments", "enrollments"
    inactive = filtered(api, "isActive eq false", path, key)
    active = filtered(api, "isActive eq true", path, key)
    everything = filtered(api, "status ge 0", path, key)
    assert len(inactive) + len(active) == len(everything) and active
    assert all(e["dateCompleted"] is None for e in filtered(api, "dateCompleted eq null", path, key))
    assert all(e["dateCompleted"] is not None for e in filtered(api, "dateCompleted ne null", path, key))
    assert all(e["score"] >= 90.5 for e in filtered(api, "score ge 90.5", path, key))


def test_filter_datetime_literals(api):
    path, key = f"/courses/{CODE_OF_CONDUCT}/enrollments", "enrollments"
    everything = filtered(api, "status ge 0", path, key)
    cutoff = sorted(e["dateEdited"] for e in everything)[len(everything) // 3][:19] + "Z"
    for expression in (f"dateEdited ge datetime'{cutoff}'", f"dateEdited ge {cutoff}"):
        recent = filtered(api, expression, path, key)
        assert recent and len(recent) == sum(e["dateEdited"][:19] >= cutoff[:19] for e in everything)
    by_day = filtered(api, f"dateEdited lt datetime'{cutoff[:10]}'", path, key)
    assert all(e["dateEdited"][:10] < cutoff[:10] for e in by_day)


def test_filter_and_or_not_and_parentheses(api):
    both = filtered(
        api, "department eq 'x'".replace("department", "jobTitle") + " or externalId eq 'E000001'"
    )
    assert [u["externalId"] for u in both] == ["E000001"]
    combined = filtered(
        api, "(externalId eq 'E000001' or externalId eq 'E000002') and not (externalId eq 'E000002')"
    )
    assert [u["externalId"] for u in combined] == ["E000001"]


def test_filter_string_functions(api):
    everyone = all_users(api)
    managers = [u for u in everyone if u["jobTitle"] == "Manager"]
    assert len(filtered(api, "substringof('anag',jobTitle)")) == len(
        [u for u in everyone if u["jobTitle"] and "anag" in u["jobTitle"].lower()]
    )
    assert len(filtered(api, "startswith(jobTitle,'Mana')")) == len(
        [u for u in everyone if (u["jobTitle"] or "").lower().startswith("mana")]
    )
    assert len(filtered(api, "endswith(username,'@example.com')")) == len(
        [u for u in everyone if u["username"].endswith("@example.com")]
    )
    assert len(filtered(api, "tolower(jobTitle) eq 'manager'")) == len(managers)
    assert len(filtered(api, "toupper(jobTitle) eq 'MANAGER'")) == len(managers)
    assert filtered(api, "startswith(jobTitle,'Mana') eq false") == [
        u for u in everyone if not (u["jobTitle"] or "").lower().startswith("mana")
    ]


def test_filter_escapes_quotes_and_like_wildcards(api):
    assert filtered(api, "substringof('%',lastName)") == []
    assert filtered(api, "lastName eq 'O''Brien'") == []


def test_sort_ascending_descending_and_multiple(api):
    names = [
        u["lastName"] for u in api.get("/users", params={"_sort": "lastName", "_limit": 1000}).json()["users"]
    ]
    assert names == sorted(names)
    people = api.get("/users", params={"_sort": "-lastName,externalId", "_limit": 1000}).json()["users"]
    keys = [(p["lastName"], p["externalId"] or "") for p in people]
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)
    for before, after in itertools.pairwise(keys):
        if before[0] == after[0] and before[1] and after[1]:
            assert before[1] <= after[1]


@pytest.mark.parametrize(
    "expression",
    [
        "externalId eq",
        "externalId eq 'unterminated",
        "(externalId eq 'E1'",
        "nosuchfield eq 1",
        "externalId eq guid'not-a-guid'",
        "dateHired ge datetime'yesterday'",
        "activeStatus eq 'abc'",
        "length(username) eq 3",
        "substringof(1, username)",
        "externalId in ('a','b')",
        "x" * 5000,
    ],
)
def test_bad_filters_are_422_never_500(api, expression):
    assert_error(api.get("/users", params={"_filter": expression}), 422)


@pytest.mark.parametrize("sort", ["nosuchfield", "-", "lastName,,id"])
def test_bad_sorts_are_422(api, sort):
    assert_error(api.get("/users", params={"_sort": sort}), 422, contains="_sort")


def test_courses_and_departments_are_paged(api):
    courses = api.get("/courses", params={"_limit": 1000}).json()
    names = {c["name"] for c in courses["courses"]}
    assert {"Code of Conduct", "New Hire Orientation", "Data Privacy (GDPR)"} <= names
    assert {c["courseType"] for c in courses["courses"]} == {"OnlineCourse", "InstructorLedCourse"}
    [ilc] = filtered(api, "name eq 'New Hire Orientation'", "/courses", "courses")
    assert ilc["id"] == course_id("New Hire Orientation") and ilc["courseType"] == "InstructorLedCourse"
    departments = api.get("/departments").json()
    assert departments["totalItems"] == 8
    assert {d["name"] for d in departments["departments"]} >= {"Engineering", "Legal", "Human Resources"}
