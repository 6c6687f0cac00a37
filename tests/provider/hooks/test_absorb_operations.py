"""Every API operation of the hook against the sandbox running as a real HTTP server."""

from __future__ import annotations

from datetime import date

import pytest
from absorb_provider.exceptions import AbsorbAlreadyEnrolledError, AbsorbApiError, AbsorbNotFoundError
from absorb_sandbox import seed

CODE_OF_CONDUCT = seed.course_id("Code of Conduct")
SECURITY = seed.course_id("Information Security Awareness")
PRIVACY = seed.course_id("Data Privacy (GDPR)")
NEW_HIRE = seed.course_id("New Hire Orientation")
NEW_HIRE_SESSION = seed.session_id("New Hire Orientation", 1)


@pytest.fixture
def hook(hook_for, module_sandbox):
    return hook_for(module_sandbox)


def test_users_courses_departments(hook):
    users = list(hook.list_users(page_size=50))
    assert len(users) > 50  # several pages
    assert len({u["id"] for u in users}) == len(users)
    first = next(u for u in users if u.get("externalId") == "E000001")
    assert hook.get_user(first["id"])["externalId"] == "E000001"
    assert hook.find_user_by_external_id("E000001")["id"] == first["id"]
    assert hook.find_user_by_external_id("E999999") is None
    courses = {c["name"]: c["id"] for c in hook.list_courses()}
    assert courses["Code of Conduct"] == CODE_OF_CONDUCT
    departments = {d["name"]: d["id"] for d in hook.list_departments(sort="name")}
    assert {"Engineering", "Sales", "Legal"} <= set(departments)
    assert departments["Sales"] == seed.department_id("Sales")


def test_update_user_and_upsert_by_username(hook, new_user):
    hook.update_user(new_user, {"jobTitle": "Analyst"})
    assert hook.get_user(new_user)["jobTitle"] == "Analyst"
    user = hook.get_user(new_user)
    again = hook.upsert_user(
        {"username": user["username"], "firstName": "Renamed", "lastName": user["lastName"]}
    )
    assert (again.get("id") or again.get("userId")) == new_user
    assert hook.get_user(new_user)["firstName"] == "Renamed"


def test_course_enrollment_lifecycle(hook, new_user):
    created = hook.create_enrollment(new_user, CODE_OF_CONDUCT)
    enrollment_id = created["enrollmentId"]
    with pytest.raises(AbsorbAlreadyEnrolledError) as refused:
        hook.create_enrollment(new_user, CODE_OF_CONDUCT)
    assert refused.value.message  # Absorb's own words, not a bare status
    current = hook.get_user_course_enrollment(new_user, CODE_OF_CONDUCT)
    assert current["id"] == enrollment_id
    assert hook.get_enrollment(enrollment_id)["userId"] == new_user
    assert enrollment_id in {e["id"] for e in hook.list_user_enrollments(new_user)}
    in_course = hook.list_course_enrollments(CODE_OF_CONDUCT, filter=f"userId eq guid'{new_user}'")
    assert [e["id"] for e in in_course] == [enrollment_id]
    bulk = hook.list_bulk_student_courses([new_user], [CODE_OF_CONDUCT, SECURITY])
    assert [e["id"] for e in bulk] == [enrollment_id]

    due = date(2031, 3, 4)
    written = hook.create_or_update_enrollment(new_user, {"courseId": SECURITY, "dateDue": due})
    assert hook.get_enrollment(written["enrollmentId"])["dateDue"].startswith("2031-03-04")

    hook.unenroll([enrollment_id])
    remaining = {e["id"] for e in hook.list_user_enrollments(new_user) if e.get("isActive", True)}
    assert enrollment_id not in remaining


def test_chapters_lessons_and_attempts(hook, new_user):
    hook.create_enrollment(new_user, PRIVACY)
    chapters = hook.list_user_chapter_enrollments(new_user, PRIVACY)
    assert chapters
    chapter_id = chapters[0]["chapterId"]
    assert hook.get_user_chapter_enrollment(new_user, PRIVACY, chapter_id)["chapterId"] == chapter_id

    lessons = hook.list_user_lesson_enrollments(new_user, PRIVACY)
    assert lessons
    lesson = next(lesson for lesson in lessons if lesson["chapterId"] == chapter_id)
    lesson_id = lesson["lessonId"]
    assert hook.get_user_lesson_enrollment(new_user, PRIVACY, lesson_id)["id"] == lesson["id"]
    assert hook.get_lesson_enrollment(new_user, PRIVACY, chapter_id, lesson_id)["id"] == lesson["id"]
    in_chapter = hook.list_user_chapter_lesson_enrollments(new_user, PRIVACY, chapter_id)
    assert lesson["id"] in {row["id"] for row in in_chapter}
    in_lesson = list(hook.list_lesson_enrollments(PRIVACY, lesson_id, page_size=5))
    assert lesson["id"] in {row["id"] for row in in_lesson}

    attempt = hook.start_attempt(new_user, PRIVACY, lesson_id)
    hook.finish_user_lesson_attempt(new_user, PRIVACY, lesson_id, attempt["attemptId"], status=3, score=90)
    second = hook.start_attempt(new_user, PRIVACY, lesson_id)
    hook.finish_attempt(second["attemptId"], status=5, score=10)
    attempts = {a["id"]: a for a in hook.list_lesson_attempts(new_user, PRIVACY, lesson_id)}
    assert attempts[attempt["attemptId"]]["status"] == 3
    assert attempts[second["attemptId"]]["status"] == 5
    with pytest.raises(ValueError, match="attempt status"):
        hook.finish_attempt(second["attemptId"], status=2)


def test_instructor_led_sessions(hook, new_user):
    created = hook.create_ilc_enrollment(new_user, NEW_HIRE, NEW_HIRE_SESSION)
    assert created["sessionId"] == NEW_HIRE_SESSION
    sessions = hook.list_user_session_enrollments(new_user, NEW_HIRE)
    assert [s["sessionId"] for s in sessions] == [NEW_HIRE_SESSION]
    one = hook.get_user_session_enrollment(new_user, NEW_HIRE, NEW_HIRE_SESSION)
    assert one["id"] == created["sessionEnrollmentId"]
    roster = list(hook.list_session_enrollments(NEW_HIRE, NEW_HIRE_SESSION, page_size=3))
    assert created["sessionEnrollmentId"] in {row["id"] for row in roster}


def test_my_enrollments(hook):
    before = {e["courseId"] for e in hook.list_my_enrollments()}
    target = next(
        course["id"]
        for course in hook.list_courses()
        if course["id"] not in before
        and course["name"] in ("Workplace Safety", "Sales Compliance", "Manager Essentials")
    )
    created = hook.enroll_me(target)
    assert hook.get_my_enrollment(target)["id"] == created["enrollmentId"]
    assert target in {e["courseId"] for e in hook.list_my_enrollments()}


def test_errors_carry_absorbs_message(hook, module_sandbox):
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(AbsorbNotFoundError) as not_found:
        hook.get_enrollment(missing)
    assert not_found.value.status == 404 and not_found.value.message
    with pytest.raises(AbsorbApiError) as bad_filter:
        list(hook.list_users(filter="noSuchField eq 'x'"))
    assert bad_filter.value.status == 422
    assert "422" in str(bad_filter.value) and bad_filter.value.message in str(bad_filter.value)
    assert "Unprocessable Entity" not in str(bad_filter.value)


def test_guids_are_checked_before_any_request(hook, module_sandbox):
    hook.get_user(seed.user_id("E000001"))  # warm up: token exists
    before = module_sandbox.stats()["total_requests"]
    with pytest.raises(ValueError, match="user_id must be a GUID, got 'bob'"):
        hook.get_user_course_enrollment("bob", CODE_OF_CONDUCT)
    with pytest.raises(ValueError, match=r"enrollment_ids\[1\] must be a GUID"):
        hook.unenroll([CODE_OF_CONDUCT, "nope"])
    with pytest.raises(ValueError, match="page_size must be between 1 and 1000"):
        list(hook.list_users(page_size=5000))
    assert module_sandbox.stats()["total_requests"] == before


def test_incremental_read_filters_on_date_edited(hook, new_user):
    hook.create_enrollment(new_user, SECURITY)
    edited = hook.get_user_course_enrollment(new_user, SECURITY)["dateEdited"]
    recent = list(hook.list_course_enrollments(SECURITY, modified_since=edited))
    assert new_user in {row["userId"] for row in recent}
    assert all(row["dateEdited"] >= edited[:19] for row in recent)
    everything = list(hook.list_course_enrollments(SECURITY))
    assert len(recent) < len(everything)
