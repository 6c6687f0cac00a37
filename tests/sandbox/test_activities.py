"""Sessions, chapters, lessons and attempts (#1-#6, #15-#23)."""

from __future__ import annotations

import uuid

from absorb_sandbox.seed import MULTI_SESSION_ILC, NEW_HIRE_ILC, course_id, session_id
from sandbox_helpers import assert_error, unenrolled_pair

SAFETY = course_id("Workplace Safety")
CONDUCT = course_id("Code of Conduct")
ORIENTATION = course_id(NEW_HIRE_ILC)
NOBODY = str(uuid.UUID(int=999))


def test_chapters_and_lessons_of_a_new_online_enrollment(module_api):
    user = unenrolled_pair(module_api, SAFETY)
    enrollment_id = module_api.post(f"/users/{user}/enrollments/{SAFETY}").json()["enrollmentId"]
    chapters = module_api.get(f"/users/{user}/enrollments/{SAFETY}/chapters").json()
    assert len(chapters) == 2 and all(c["courseEnrollmentId"] == enrollment_id for c in chapters)
    chapter = chapters[0]
    assert len(chapter["lessonEnrollmentIds"]) == 2
    assert (
        module_api.get(f"/users/{user}/enrollments/{SAFETY}/chapters/{chapter['chapterId']}").json()["id"]
        == chapter["id"]
    )
    in_chapter = module_api.get(
        f"/users/{user}/enrollments/{SAFETY}/chapters/{chapter['chapterId']}/lessons"
    ).json()
    assert sorted(lesson["id"] for lesson in in_chapter) == sorted(chapter["lessonEnrollmentIds"])
    lesson = in_chapter[0]
    by_chapter = module_api.get(
        f"/users/{user}/enrollments/{SAFETY}/chapters/{chapter['chapterId']}/lessons/{lesson['lessonId']}"
    ).json()
    direct = module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons/{lesson['lessonId']}").json()
    assert by_chapter == direct == lesson
    assert lesson["chapterEnrollmentId"] == chapter["id"] and lesson["type"]
    assert_error(module_api.get(f"/users/{user}/enrollments/{SAFETY}/chapters/{NOBODY}"), 404)
    assert_error(module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons/{NOBODY}"), 404)
    assert_error(
        module_api.get(f"/users/{user}/enrollments/{SAFETY}/chapters/bad"), 422, contains="chapterId"
    )


def test_seeded_enrollments_get_their_activities_on_demand(module_api):
    complete = module_api.get(
        f"/courses/{CONDUCT}/enrollments", params={"_filter": "status eq 3 and isActive eq true", "_limit": 1}
    ).json()["enrollments"][0]
    lessons = module_api.get(f"/users/{complete['userId']}/enrollments/{CONDUCT}/lessons").json()
    assert lessons and {lesson["status"] for lesson in lessons} == {3}
    attempts = module_api.get(
        f"/users/{complete['userId']}/enrollments/{CONDUCT}/lessons/{lessons[0]['lessonId']}/attempts"
    ).json()
    assert [a["status"] for a in attempts] == [3]


def test_attempts_roll_up_to_lesson_chapter_and_course(module_api):
    user = unenrolled_pair(module_api, SAFETY, start=45)
    enrollment_id = module_api.post(f"/users/{user}/enrollments/{SAFETY}").json()["enrollmentId"]
    lessons = module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons").json()
    first = lessons[0]["lessonId"]
    started = module_api.post(f"/users/{user}/enrollments/{SAFETY}/lessons/{first}/startattempt")
    assert started.status_code == 200 and started.json()["userId"] == user
    attempt_id = started.json()["attemptId"]
    assert module_api.get(f"/enrollments/{enrollment_id}").json()["status"] == 1
    failed = module_api.post(f"/attempts/{attempt_id}/finish", json={"status": 5, "score": 20})
    assert failed.status_code == 200 and failed.json() == {"attemptId": attempt_id}
    assert_error(
        module_api.post(f"/attempts/{attempt_id}/finish", json={"status": 3}),
        422,
        contains="already finished",
    )
    lesson = module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons/{first}").json()
    assert lesson["failures"] == 1 and lesson["attempts"] == 1 and lesson["status"] == 5
    for item in lessons:
        attempt = module_api.post(
            f"/users/{user}/enrollments/{SAFETY}/lessons/{item['lessonId']}/startattempt"
        ).json()
        finished = module_api.post(
            f"/users/{user}/enrollments/{SAFETY}/lessons/{item['lessonId']}/attempts/{attempt['attemptId']}/finish",
            json={
                "status": 3,
                "score": 90,
                "startDate": "2026-01-01T10:00:00Z",
                "completionDate": "2026-01-01T10:30:00Z",
            },
        )
        assert finished.status_code == 200, finished.text
    attempts = module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons/{first}/attempts").json()
    assert [a["status"] for a in attempts] == [5, 3] and attempts[1]["timeSpentTicks"] == 30 * 60 * 10_000_000
    enrollment = module_api.get(f"/enrollments/{enrollment_id}").json()
    assert enrollment["status"] == 3 and enrollment["progress"] == 100 and enrollment["dateCompleted"]
    assert enrollment["timeSpent"].startswith("02:00:00")  # four lessons x 30 minutes
    chapters = module_api.get(f"/users/{user}/enrollments/{SAFETY}/chapters").json()
    assert {c["status"] for c in chapters} == {3}


def test_attempt_errors(module_api):
    user = unenrolled_pair(module_api, SAFETY, start=55)
    module_api.post(f"/users/{user}/enrollments/{SAFETY}")
    lesson = module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons").json()[0]["lessonId"]
    attempt = module_api.post(f"/users/{user}/enrollments/{SAFETY}/lessons/{lesson}/startattempt").json()[
        "attemptId"
    ]
    assert_error(module_api.post(f"/attempts/{attempt}/finish", json={}), 422, contains="status")
    assert_error(module_api.post(f"/attempts/{attempt}/finish", json={"status": 2}), 422, contains="status")
    assert_error(module_api.post(f"/attempts/{attempt}/finish", json={"status": 3, "score": 101}), 422)
    assert_error(module_api.post(f"/attempts/{attempt}/finish", json={"status": 3, "startDate": "soon"}), 422)
    assert_error(module_api.post(f"/attempts/{attempt}/finish"), 400)
    assert_error(module_api.post(f"/attempts/{NOBODY}/finish", json={"status": 3}), 404)
    assert_error(module_api.post(f"/users/{user}/enrollments/{SAFETY}/lessons/{NOBODY}/startattempt"), 404)
    other_lesson = module_api.get(f"/users/{user}/enrollments/{SAFETY}/lessons").json()[1]["lessonId"]
    assert_error(
        module_api.post(
            f"/users/{user}/enrollments/{SAFETY}/lessons/{other_lesson}/attempts/{attempt}/finish",
            json={"status": 3},
        ),
        404,
    )


def test_course_lesson_enrollments_are_paged(module_api):
    any_user = module_api.get(
        f"/courses/{CONDUCT}/enrollments", params={"_filter": "isActive eq true"}
    ).json()
    every_enrollment = module_api.get(f"/courses/{CONDUCT}/enrollments").json()["totalItems"]
    user = any_user["enrollments"][0]["userId"]
    lesson_id = module_api.get(f"/users/{user}/enrollments/{CONDUCT}/lessons").json()[0]["lessonId"]
    page = module_api.get(f"/courses/{CONDUCT}/lessons/{lesson_id}/enrollments", params={"_limit": 5}).json()
    assert set(page) == {"totalItems", "returnedItems", "limit", "offset", "lessonEnrollments"}
    assert page["totalItems"] == every_enrollment and page["returnedItems"] == 5  # history included
    assert all(e["lessonId"] == lesson_id for e in page["lessonEnrollments"])
    done = module_api.get(
        f"/courses/{CONDUCT}/lessons/{lesson_id}/enrollments",
        params={"_filter": "status eq 3", "_limit": 1000},
    ).json()
    assert {e["status"] for e in done["lessonEnrollments"]} == {3}
    assert_error(module_api.get(f"/courses/{CONDUCT}/lessons/{NOBODY}/enrollments"), 404)


def test_ilc_enrollment_with_session_cancel_and_re_enroll(module_api):
    user = unenrolled_pair(module_api, ORIENTATION, start=20)
    session = session_id(NEW_HIRE_ILC, 1)
    created = module_api.post(f"/users/{user}/enrollments/{ORIENTATION}/session/{session}")
    assert created.status_code == 201
    body = created.json()
    assert body["sessionId"] == session and body["userId"] == user
    assert_error(
        module_api.post(f"/users/{user}/enrollments/{ORIENTATION}/sessions/{session}"),
        422,
        contains="already enrolled",
    )
    moved = module_api.post(
        f"/users/{user}/enrollments/{ORIENTATION}/sessions/{session}", params={"cancelSession": True}
    )
    assert moved.status_code == 201 and moved.json()["enrollmentId"] == body["enrollmentId"]
    again = module_api.post(
        f"/users/{user}/enrollments/{ORIENTATION}/session/{session}", params={"reEnroll": True}
    )
    assert again.status_code == 201 and again.json()["enrollmentId"] != body["enrollmentId"]
    one = module_api.get(f"/users/{user}/enrollments/{ORIENTATION}/sessions/{session}").json()
    assert one["id"] == again.json()["sessionEnrollmentId"] and one["name"] == "Session 1"
    listed = module_api.get(
        f"/courses/{ORIENTATION}/sessions/{session}/enrollments",
        params={"_filter": f"userId eq guid'{user}'"},
    ).json()
    # the re-enrolled (now historical) enrollment keeps its session enrollment
    assert listed["totalItems"] == 2 and one["id"] in {e["id"] for e in listed["enrollments"]}


def test_ilc_errors(module_api):
    user = unenrolled_pair(module_api, ORIENTATION, start=25)
    multi = course_id(MULTI_SESSION_ILC)
    assert_error(
        module_api.post(f"/users/{user}/enrollments/{multi}/session/{session_id(MULTI_SESSION_ILC, 1)}"),
        422,
        contains="Multi-Session",
    )
    assert_error(module_api.post(f"/users/{user}/enrollments/{ORIENTATION}/session/{NOBODY}"), 404)
    assert_error(
        module_api.post(f"/users/{user}/enrollments/{SAFETY}/session/{session_id(NEW_HIRE_ILC, 1)}"), 422
    )
    assert_error(
        module_api.post(f"/users/{user}/enrollments/{ORIENTATION}/session/bad"), 422, contains="sessionId"
    )
    assert_error(module_api.get(f"/courses/{ORIENTATION}/sessions/{NOBODY}/enrollments"), 404)
    assert_error(module_api.get(f"/users/{user}/enrollments/{ORIENTATION}/sessions"), 404)
