"""Retries, backoff and idempotent writes under injected 429s, 5xx, drops and latency."""

from __future__ import annotations

import pytest
from absorb_provider.client import RetryPolicy
from absorb_provider.exceptions import AbsorbAlreadyEnrolledError, AbsorbRetryExhaustedError
from absorb_sandbox import seed
from absorb_sandbox.faults import FaultInjector, parse_spec

FAULTS = "seed=11,error=0.15,429=0.1,drop=0.05,latency=0.1:150ms"


def test_paged_read_is_complete_under_faults(hook_for, sandbox_factory):
    server = sandbox_factory("faulty")
    clean = sorted(u["id"] for u in hook_for(server).list_users(page_size=40))
    server.set_faults(FAULTS)
    faulty_hook = hook_for(server, conn_id="absorb_faulty")
    faulty_hook.client.retry = RetryPolicy(base_delay=0.05, max_delay=0.5, max_attempts=12)
    assert sorted(u["id"] for u in faulty_hook.list_users(page_size=40)) == clean
    statuses = server.stats()["by_status"]
    assert any(code in statuses for code in ("429", "500", "502", "503")), statuses
    assert faulty_hook.client.retry_count > 0


def test_retry_budget_is_bounded(hook_for, sandbox_factory):
    server = sandbox_factory("down")
    hook = hook_for(server)
    hook.get_user(seed.user_id("E000001"))
    server.set_faults("error=1.0")
    hook.client.retry = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=4)
    with pytest.raises(AbsorbRetryExhaustedError, match="gave up after 4 attempts"):
        hook.get_user(seed.user_id("E000001"))


def test_429_honours_retry_after(hook_for, sandbox_factory):
    server = sandbox_factory("limited", rate_limit=5)
    hook = hook_for(server, requests_per_second=0)  # no client limit: let the server push back
    users = list(hook.list_users(page_size=20))
    assert len(users) > 100
    assert server.stats()["by_status"].get("429", 0) > 0
    assert hook.client.retry_count > 0


def _seed_where_only_the_first_request_is_slow(latency: str) -> int:
    """A fault seed whose first decision delays and the next two do not (uses the sandbox's RNG)."""
    for candidate in range(10_000):
        injector = FaultInjector(parse_spec(f"seed={candidate},latency={latency}"))
        delays = [injector.decide().delay_seconds for _ in range(3)]
        if delays[0] > 0 and delays[1] == 0 and delays[2] == 0:
            return candidate
    raise AssertionError("no suitable seed")


def test_create_retried_after_a_timeout_is_resolved_not_duplicated(hook_for, sandbox_factory):
    """The first attempt reaches Absorb but its answer comes too late; the retry hears
    "already enrolled" and the hook reads the enrollment it created instead of failing."""
    server = sandbox_factory("slow")
    hook = hook_for(server, timeout=0.5)
    user, course = seed.user_id("E000010"), seed.course_id("Sales Compliance")
    hook.client.tokens.current()
    before = [e for e in hook.list_user_enrollments(user) if e["courseId"] == course and e.get("isActive")]
    if before:
        hook.unenroll([e["id"] for e in before])
    hook.client.retry = RetryPolicy(min_delay=1.2, base_delay=1.2, max_delay=1.5, max_attempts=4)
    server.set_faults(f"seed={_seed_where_only_the_first_request_is_slow('0.5:1000ms')},latency=0.5:1000ms")

    created = hook.create_enrollment(user, course)

    server.set_faults("off")
    assert created["resolved"] == "after_retry"
    active = [e for e in hook.list_user_enrollments(user) if e["courseId"] == course and e.get("isActive")]
    assert [e["id"] for e in active] == [created["enrollmentId"]]
    assert server.stats()["by_route"].get("POST /users/{userId}/enrollments/{courseId}") == 2


def test_already_enrolled_without_ambiguity_is_reported(hook_for, sandbox):
    hook = hook_for(sandbox)
    user, course = seed.user_id("E000011"), seed.course_id("Workplace Safety")
    item = {"user_id": user, "course_id": course, "due_date": None, "re_enroll": False, "key": "k"}
    hook.bulk_enroll([item])  # created or already there
    with pytest.raises(AbsorbAlreadyEnrolledError, match="already enrolled"):
        hook.create_enrollment(user, course)
    assert hook.bulk_enroll([item]).outcomes[0]["outcome"] == "already_enrolled"


def test_non_idempotent_start_attempt_is_not_repeated_after_a_5xx(hook_for, sandbox_factory):
    server = sandbox_factory("attempts")
    hook = hook_for(server)
    user, course = seed.user_id("E000012"), seed.course_id("Data Privacy (GDPR)")
    lesson = seed.lesson_id("Data Privacy (GDPR)", 1, 1)
    hook.bulk_enroll([{"user_id": user, "course_id": course, "due_date": None, "re_enroll": False, "key": 1}])
    server.set_faults("error=1.0")
    with pytest.raises(AbsorbRetryExhaustedError, match="not retried"):
        hook.start_attempt(user, course, lesson)
    server.set_faults("off")
    route = "POST /users/{userId}/enrollments/{courseId}/lessons/{lessonId}/startattempt"
    assert server.stats()["by_route"][route] == 1


def test_a_re_enrollment_whose_answer_times_out_is_not_repeated(hook_for, sandbox_factory):
    """The re-enroll POST reaches Absorb but answers after the client's timeout (it is applied
    late). The hook must wait for it and read back, not re-send: re-sending would re-enroll twice
    and archive the learner's progress a second time."""
    server = sandbox_factory("slow_re_enroll")
    hook = hook_for(server, timeout=0.5, max_concurrency=1)
    user, course = seed.user_id("E000020"), seed.course_id("Sales Compliance")
    item = {"user_id": user, "course_id": course, "due_date": None, "re_enroll": False, "key": "k"}
    old_id = hook.bulk_enroll([item]).outcomes[0]["enrollment_id"]
    rows_before = [e["id"] for e in hook.list_user_enrollments(user) if e["courseId"] == course]
    hook.client.retry = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=4)
    server.reset_stats()
    server.set_faults("seed=1,writelatency=1.0:700ms")  # every write answers after 0.7 s (> 0.5 s)

    result = hook.bulk_enroll([{**item, "re_enroll": True}])

    server.set_faults("off")
    (outcome,) = result.outcomes
    assert outcome["outcome"] == "created" and outcome["enrollment_id"] not in (None, old_id)
    rows = [e for e in hook.list_user_enrollments(user) if e["courseId"] == course]
    assert len(rows) == len(rows_before) + 1  # one re-enrollment, not two
    assert [e["id"] for e in rows if e["isActive"]] == [outcome["enrollment_id"]]
    stats = server.stats()
    assert stats["by_route"]["POST /users/{userId}/enrollments/{courseId}"] == 1
