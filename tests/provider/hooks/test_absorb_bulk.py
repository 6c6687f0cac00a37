"""Bulk enroll / unenroll: per-item outcomes, idempotent re-runs, rate limit, isolated failures."""

from __future__ import annotations

import logging
import time
import uuid

from absorb_sandbox import seed

COURSE = seed.course_id("Anti-Harassment Training")
UNKNOWN_USER = str(uuid.UUID(int=12345, version=4))


def _items(users: list[str], due: str | None) -> list[dict]:
    return [
        {"user_id": user, "course_id": COURSE, "due_date": due, "re_enroll": False, "key": f"row-{n}"}
        for n, user in enumerate(users, start=1)
    ]


def _unenrolled_users(hook, count: int) -> list[str]:
    enrolled = {e["userId"] for e in hook.list_course_enrollments(COURSE) if e.get("isActive", True)}
    # active people only: Absorb (and the sandbox) refuse to enroll an inactive user
    users = [
        u["id"] for u in hook.list_users(filter="activeStatus eq 0", sort="externalId") if u.get("externalId")
    ]
    return [u for u in users if u not in enrolled][:count]


def test_bulk_enroll_outcomes_and_idempotent_rerun(hook_for, fresh_sandbox, caplog):
    caplog.set_level(logging.INFO, logger="absorb_provider")
    hook = hook_for(fresh_sandbox)
    users = _unenrolled_users(hook, 12)
    items = _items(users[:6], None) + _items(users[6:], "2031-01-31")
    items.append(
        {"user_id": UNKNOWN_USER, "course_id": COURSE, "due_date": None, "re_enroll": False, "key": "bad"}
    )

    first = hook.bulk_enroll(items, progress_interval=0)
    assert first.counts == {"created": 12, "failed": 1, "total": 13}
    assert [o["key"] for o in first.outcomes] == [i["key"] for i in items]  # input order
    (failed,) = first.failed
    assert failed["key"] == "bad" and "404" in failed["error"] and "not found" in failed["error"].lower()
    assert all(o["enrollment_id"] for o in first.outcomes if o["outcome"] == "created")
    assert "bulk_enroll: 13/13 done" in caplog.text and "items/s" in caplog.text and "ETA" in caplog.text

    writes = fresh_sandbox.stats()["write_calls"]
    again = hook.bulk_enroll(items[:-1])
    assert again.counts == {"already_enrolled": 12, "total": 12}
    assert fresh_sandbox.stats()["write_calls"] == writes  # a re-run writes nothing
    assert {o["enrollment_id"] for o in again.outcomes} == {o["enrollment_id"] for o in first.outcomes[:-1]}

    moved = hook.bulk_enroll(_items(users[6:], "2031-06-30"))
    assert moved.counts == {"updated": 6, "total": 6}
    assert hook.get_user_course_enrollment(users[6], COURSE)["dateDue"].startswith("2031-06-30")
    active = [
        e for e in hook.list_course_enrollments(COURSE) if e["userId"] in users and e.get("isActive", True)
    ]
    assert len(active) == 12  # nothing duplicated


def test_bulk_unenroll_isolates_bad_ids(hook_for, fresh_sandbox):
    hook = hook_for(fresh_sandbox)
    users = _unenrolled_users(hook, 9)
    created = hook.bulk_enroll(_items(users, None))
    ids = [o["enrollment_id"] for o in created.outcomes]
    missing = str(uuid.UUID(int=999, version=4))
    result = hook.bulk_unenroll([*ids[:4], missing, *ids[4:], "not-a-guid"], batch_size=4)
    # an id Absorb does not know (and a read confirms absent) is done, not failed
    assert result.counts == {"unenrolled": 9, "already_gone": 1, "failed": 1, "total": 11}
    assert [o["enrollment_id"] for o in result.outcomes if o["outcome"] == "already_gone"] == [missing]
    failed = {o["enrollment_id"]: o["error"] for o in result.failed}
    assert set(failed) == {"not-a-guid"}
    assert "not a GUID" in failed["not-a-guid"]
    still_active = {e["id"] for e in hook.list_course_enrollments(COURSE) if e.get("isActive", True)}
    assert not still_active & set(ids)


def test_client_rate_limit_bounds_request_rate(hook_for, fresh_sandbox):
    hook = hook_for(fresh_sandbox, requests_per_second=20, max_concurrency=8)
    users = _unenrolled_users(hook, 20)
    hook.client.tokens.current()
    started = time.monotonic()
    result = hook.bulk_enroll(_items(users, None))
    elapsed = time.monotonic() - started
    assert result.counts == {"created": 20, "total": 20}
    requests_made = 20 + 1  # one create each, plus the bulk read of current enrollments
    assert elapsed >= (requests_made - hook.client.limiter.capacity) / 20 * 0.95
