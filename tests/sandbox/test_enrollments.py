"""Course enrollment operations (#7-#14, #24-#26): happy paths, the enrollment rules, error paths."""

from __future__ import annotations

import uuid

import pytest
from absorb_sandbox.seed import MULTI_SESSION_ILC, course_id
from sandbox_helpers import assert_error, unenrolled_pair

SAFETY = course_id("Workplace Safety")
PRIVACY = course_id("Data Privacy (GDPR)")
ORIENTATION = course_id("New Hire Orientation")
NOBODY = str(uuid.UUID(int=12345))


def test_create_get_and_refuse_duplicate(module_api):
    user = unenrolled_pair(module_api, SAFETY)
    created = module_api.post(f"/users/{user}/enrollments/{SAFETY}")
    assert created.status_code == 201
    body = created.json()
    assert body["userId"] == user and body["courseId"] == SAFETY and uuid.UUID(body["enrollmentId"])
    enrollment = module_api.get(f"/enrollments/{body['enrollmentId']}").json()
    assert (
        enrollment["status"] == 0
        and enrollment["isActive"] is True
        and enrollment["courseName"] == "Workplace Safety"
    )
    assert enrollment["timeSpent"] == "00:00:00" and enrollment["timeSpentTicks"] == 0
    assert enrollment["dateAdded"] and enrollment["dateEdited"]
    assert module_api.get(f"/users/{user}/enrollments/{SAFETY}").json()["id"] == body["enrollmentId"]
    lessons = module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons").json()
    assert len(lessons) == 4 and {lesson["status"] for lesson in lessons} == {0}
    again = module_api.post(f"/users/{user}/enrollments/{SAFETY}")
    assert_error(again, 422, contains="already enrolled")
    listed = module_api.get(
        f"/users/{user}/enrollments", params={"_filter": f"courseId eq guid'{SAFETY}'"}
    ).json()
    assert listed["totalItems"] == 1


def test_re_enroll_keeps_history(module_api):
    user = unenrolled_pair(module_api, SAFETY, start=40)
    first = module_api.post(f"/users/{user}/enrollments/{SAFETY}").json()["enrollmentId"]
    second = module_api.post(f"/users/{user}/enrollments/{SAFETY}", params={"reEnroll": "true"})
    assert second.status_code == 201
    new_id = second.json()["enrollmentId"]
    assert new_id != first
    assert module_api.get(f"/enrollments/{first}").json()["isActive"] is False
    assert module_api.get(f"/enrollments/{new_id}").json()["isActive"] is True
    assert module_api.get(f"/users/{user}/enrollments/{SAFETY}").json()["id"] == new_id


def test_create_errors(module_api):
    user = unenrolled_pair(module_api, SAFETY, start=50)
    assert_error(
        module_api.post(f"/users/not-a-guid/enrollments/{SAFETY}"),
        422,
        contains="Invalid format provided for userId",
    )
    assert_error(
        module_api.post(f"/users/{user}/enrollments/123"),
        422,
        contains="Invalid format provided for courseId",
    )
    assert_error(module_api.post(f"/users/{NOBODY}/enrollments/{SAFETY}"), 404)
    assert_error(module_api.post(f"/users/{user}/enrollments/{NOBODY}"), 404)
    assert_error(
        module_api.post(f"/users/{user}/enrollments/{course_id(MULTI_SESSION_ILC)}"),
        422,
        contains="Multi-Session ILCs are not supported",
    )
    assert_error(module_api.post(f"/users/{user}/enrollments/{SAFETY}", params={"reEnroll": "maybe"}), 422)


def test_single_session_ilc_enrollment_creates_the_session_enrollment(module_api):
    user = unenrolled_pair(module_api, ORIENTATION)
    created = module_api.post(f"/users/{user}/enrollments/{ORIENTATION}")
    assert created.status_code == 201
    [session] = module_api.get(f"/users/{user}/enrollments/{ORIENTATION}/sessions").json()
    assert session["courseEnrollmentId"] == created.json()["enrollmentId"] and session["status"] == 0


def test_create_or_update_sets_only_settable_fields(module_api):
    user = unenrolled_pair(module_api, PRIVACY)
    body = {"courseId": PRIVACY, "dateDue": "2027-03-01", "progress": 55, "courseName": "ignored"}
    created = module_api.post(f"/users/{user}/enrollments", json=body)
    assert created.status_code == 201
    enrollment_id = created.json()["enrollmentId"]
    enrollment = module_api.get(f"/enrollments/{enrollment_id}").json()
    assert enrollment["dateDue"].startswith("2027-03-01") and enrollment["progress"] == 0
    update = {
        "courseId": PRIVACY,
        "status": 3,
        "score": 88.5,
        "credits": 2,
        "acceptedTermsAndConditions": True,
        "dateCompleted": "2026-01-02T03:04:05Z",
    }
    updated = module_api.post(f"/users/{user}/enrollments", json=update)
    assert updated.status_code == 200 and updated.json()["enrollmentId"] == enrollment_id
    after = module_api.get(f"/enrollments/{enrollment_id}").json()
    assert (after["status"], after["score"], after["credits"], after["acceptedTermsAndConditions"]) == (
        3,
        88.5,
        2,
        True,
    )
    assert (
        after["dateCompleted"].startswith("2026-01-02T03:04:05")
        and after["dateEdited"] > enrollment["dateEdited"]
    )
    repeated = module_api.post(f"/users/{user}/enrollments", json=update)
    assert repeated.status_code == 200
    assert module_api.get(f"/enrollments/{enrollment_id}").json()["dateEdited"] == after["dateEdited"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 422, "courseId"),
        ({"courseId": "nope"}, 422, "Invalid format provided for courseId"),
        ({"courseId": PRIVACY, "status": 13}, 422, "status"),
        ({"courseId": PRIVACY, "status": "3"}, 422, "status"),
        ({"courseId": PRIVACY, "score": "high"}, 422, "score"),
        ({"courseId": PRIVACY, "dateDue": "next week"}, 422, "dateDue"),
        ({"courseId": PRIVACY, "acceptedTermsAndConditions": "yes"}, 422, "acceptedTermsAndConditions"),
        ({"courseId": course_id(MULTI_SESSION_ILC)}, 422, "Multi-Session"),
        ({"courseId": NOBODY}, 404, None),
    ],
)
def test_create_or_update_errors(module_api, body, status, fragment):
    user = unenrolled_pair(module_api, PRIVACY, start=60)
    before = module_api.get(f"/users/{user}/enrollments").json()["totalItems"]
    assert_error(module_api.post(f"/users/{user}/enrollments", json=body), status, contains=fragment)
    assert module_api.get(f"/users/{user}/enrollments").json()["totalItems"] == before


def test_create_or_update_needs_a_json_object(module_api):
    user = unenrolled_pair(module_api, PRIVACY, start=70)
    assert_error(module_api.post(f"/users/{user}/enrollments"), 400)
    assert_error(
        module_api.post(
            f"/users/{user}/enrollments", content=b"{oops", headers={"content-type": "application/json"}
        ),
        400,
        contains="malformed",
    )
    assert_error(module_api.post(f"/users/{user}/enrollments", json=[PRIVACY]), 400)


def test_unenroll_removes_and_refuses_unknown_ids_atomically(module_api):
    user = unenrolled_pair(module_api, SAFETY, start=80)
    enrollment_id = module_api.post(f"/users/{user}/enrollments/{SAFETY}").json()["enrollmentId"]
    refused = module_api.post("/enrollments/unenroll", json=[enrollment_id, NOBODY])
    assert_error(refused, 422, contains="not found")
    assert module_api.get(f"/enrollments/{enrollment_id}").status_code == 200
    assert module_api.post("/enrollments/unenroll", json=[enrollment_id]).status_code == 200
    assert_error(module_api.get(f"/enrollments/{enrollment_id}"), 404)
    assert_error(module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons"), 404)


def test_unenroll_body_errors(module_api):
    assert_error(
        module_api.post("/enrollments/unenroll", json=[]),
        400,
        contains="Request requires at least 1 enrollment ID.",
    )
    assert_error(module_api.post("/enrollments/unenroll", json={"ids": []}), 400)
    assert_error(module_api.post("/enrollments/unenroll"), 400)
    assert_error(module_api.post("/enrollments/unenroll", json=["nope"]), 422, contains="Invalid format")


def test_get_enrollment_errors(module_api):
    assert_error(module_api.get("/enrollments/nope"), 422, contains="Invalid format provided for id")
    assert_error(module_api.get(f"/enrollments/{NOBODY}"), 404)
    user = unenrolled_pair(module_api, SAFETY, start=90)
    assert_error(module_api.get(f"/users/{user}/enrollments/{SAFETY}"), 404)


def test_user_enrollments_are_paged_and_filterable(module_api):
    user = module_api.get(f"/courses/{SAFETY}/enrollments").json()["enrollments"][0]["userId"]
    page = module_api.get(f"/users/{user}/enrollments", params={"_limit": 2}).json()
    assert page["totalItems"] >= 1 and page["returnedItems"] <= 2
    assert all(e["userId"] == user for e in page["enrollments"])
    assert_error(module_api.get(f"/users/{NOBODY}/enrollments"), 404)


def test_bulk_student_courses_accepts_repeated_keys_and_comma_lists(module_api):
    rows = module_api.get(f"/courses/{SAFETY}/enrollments", params={"_limit": 3}).json()["enrollments"]
    users = [r["userId"] for r in rows]
    repeated = module_api.get(
        "/bulk/studentcourses", params=[("userIds", u) for u in users] + [("courseIds", SAFETY)]
    )
    comma = module_api.get("/bulk/studentcourses", params={"userIds": ",".join(users), "courseIds": SAFETY})
    assert repeated.status_code == comma.status_code == 200
    assert isinstance(repeated.json(), list)
    assert {r["id"] for r in rows} <= {e["id"] for e in repeated.json()} == {e["id"] for e in comma.json()}
    assert_error(module_api.get("/bulk/studentcourses"), 400)
    assert_error(
        module_api.get("/bulk/studentcourses", params={"courseIds": SAFETY}), 400, contains="userIds"
    )
    assert_error(module_api.get("/bulk/studentcourses", params={"userIds": "x"}), 422)


def test_null_accepted_terms_is_not_a_server_error(module_api, module_server):
    """acceptedTermsAndConditions is nullable in the JSON but NOT NULL in the store: a null
    means "not given" (false on create, unchanged on update), never a 500."""
    user = unenrolled_pair(module_api, SAFETY, start=60)
    body = {"courseId": SAFETY, "acceptedTermsAndConditions": None}
    created = module_api.post(f"/users/{user}/enrollments", json=body)
    assert created.status_code == 201, created.text
    enrollment_id = created.json()["enrollmentId"]
    assert module_api.get(f"/enrollments/{enrollment_id}").json()["acceptedTermsAndConditions"] is False
    accepted = {"courseId": SAFETY, "acceptedTermsAndConditions": True}
    assert module_api.post(f"/users/{user}/enrollments", json=accepted).status_code == 200
    updated = module_api.post(f"/users/{user}/enrollments", json=body)
    assert updated.status_code == 200 and updated.json()["enrollmentId"] == enrollment_id
    assert module_api.get(f"/enrollments/{enrollment_id}").json()["acceptedTermsAndConditions"] is True
    stats = module_server.stats()
    assert stats["internal_errors"] == 0 and "500" not in stats["by_status"], stats


def test_my_enrollments_act_for_the_authenticated_user(module_api):
    assert module_api.get("/myenrollments").json()["totalItems"] == 0
    assert_error(module_api.get(f"/myenrollments/{SAFETY}"), 404)
    created = module_api.post(f"/enroll/{SAFETY}")
    assert created.status_code == 201
    mine = module_api.get(f"/myenrollments/{SAFETY}").json()
    assert mine["id"] == created.json()["enrollmentId"] and mine["fullName"] == "Airflow Integration"
    assert_error(module_api.post(f"/myenrollments/{SAFETY}"), 422, contains="already enrolled")
    assert module_api.post(f"/myenrollments/{PRIVACY}").status_code == 201
    assert module_api.get("/myenrollments", params={"_sort": "courseName"}).json()["totalItems"] == 2
