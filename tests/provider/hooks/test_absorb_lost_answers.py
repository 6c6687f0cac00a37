"""Writes whose answer is lost: Absorb applied them, then the connection dropped or a 5xx came back.

The sandbox's ``lost``/``lost5xx`` faults apply a write and then lose its answer. Under them the
bulk writes must converge: every write done once (no duplicate enrollment, no second
re-enrollment archiving the learner's progress again, no unenroll reported failed because the
first, lost attempt already removed the enrollment) and none missing.
"""

from __future__ import annotations

import pytest
from absorb_provider.client import RetryPolicy
from absorb_sandbox import seed

COURSE = seed.course_id("Anti-Harassment Training")
LOST = "seed=5,lost=0.3,lost5xx=0.3"  # 60% of the API writes are applied and their answer lost
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=8)


@pytest.fixture
def server(sandbox_factory):
    return sandbox_factory("lost")


@pytest.fixture
def hook(hook_for, server):
    # one write at a time: the same seed loses the same writes on every run
    hook = hook_for(server, max_concurrency=1, requests_per_second=0)
    hook.client.retry = FAST
    return hook


def _unenrolled_users(hook, count: int) -> list[str]:
    enrolled = {e["userId"] for e in hook.list_course_enrollments(COURSE)}
    # active people only: Absorb (and the sandbox) refuse to enroll an inactive user
    users = [
        u["id"] for u in hook.list_users(filter="activeStatus eq 0", sort="externalId") if u.get("externalId")
    ]
    return [u for u in users if u not in enrolled][:count]


def _items(users: list[str], due: str | None, re_enroll: bool = False) -> list[dict]:
    return [
        {"user_id": u, "course_id": COURSE, "due_date": due, "re_enroll": re_enroll, "key": u} for u in users
    ]


def _rows(hook, user: str) -> list[dict]:
    """Every enrollment row of ``user`` in COURSE, archived (re-enrolled) ones included."""
    return [e for e in hook.list_user_enrollments(user) if e["courseId"] == COURSE]


def _lost_writes(server) -> int:
    injected = server.stats()["injected"]
    return injected.get("lost", 0) + injected.get("lost5xx", 0)


def test_creates_converge_without_duplicates(hook, server):
    users = _unenrolled_users(hook, 16)
    items = _items(users[:8], None) + _items(users[8:], "2031-03-31")
    hook.client.tokens.current()
    server.set_faults(LOST)

    result = hook.bulk_enroll(items)

    server.set_faults("off")
    assert _lost_writes(server) >= 4, server.stats()
    assert result.counts == {"created": 16, "total": 16}, result.failed
    for outcome, user in zip(result.outcomes, users, strict=True):
        rows = _rows(hook, user)
        assert [r["id"] for r in rows] == [outcome["enrollment_id"]]  # one enrollment, the reported one
        assert rows[0]["isActive"]
    for user in users[8:]:
        assert hook.get_user_course_enrollment(user, COURSE)["dateDue"].startswith("2031-03-31")


def test_due_date_updates_converge(hook, server):
    users = _unenrolled_users(hook, 10)
    created = hook.bulk_enroll(_items(users, "2031-01-31"))
    assert created.counts == {"created": 10, "total": 10}
    server.reset_stats()
    server.set_faults(LOST)

    result = hook.bulk_enroll(_items(users, "2031-09-30"))

    server.set_faults("off")
    assert _lost_writes(server) >= 2, server.stats()
    assert result.counts == {"updated": 10, "total": 10}, result.failed
    for outcome, user in zip(created.outcomes, users, strict=True):
        rows = _rows(hook, user)
        assert [r["id"] for r in rows] == [outcome["enrollment_id"]]
        assert rows[0]["dateDue"].startswith("2031-09-30")


@pytest.mark.parametrize("due", [None, "2031-05-31"], ids=["no_due_date", "with_due_date"])
def test_a_lost_re_enrollment_is_not_repeated(hook, server, due):
    """The re-enroll POST is applied and its answer lost; the retry must see that the active
    enrollment is already a new one instead of re-enrolling (archiving the progress) again."""
    users = _unenrolled_users(hook, 12)
    first = hook.bulk_enroll(_items(users, None))
    old_ids = [o["enrollment_id"] for o in first.outcomes]
    assert first.counts == {"created": 12, "total": 12}
    server.progress(fraction=1.0, seed=1)  # learners made progress a re-enrollment archives
    server.reset_stats()
    server.set_faults(LOST)

    result = hook.bulk_enroll(_items(users, due, re_enroll=True))

    server.set_faults("off")
    assert _lost_writes(server) >= 3, server.stats()
    assert result.counts == {"created": 12, "total": 12}, result.failed
    for outcome, user, old_id in zip(result.outcomes, users, old_ids, strict=True):
        rows = _rows(hook, user)
        active = [r for r in rows if r["isActive"]]
        assert len(rows) == 2, f"{user}: {len(rows)} rows: re-enrolled more than once"
        assert [r["id"] for r in active] == [outcome["enrollment_id"]]
        assert outcome["enrollment_id"] != old_id
        assert [r["id"] for r in rows if not r["isActive"]] == [old_id]
        if due:
            assert active[0]["dateDue"].startswith(due)


def test_a_lost_unenroll_is_not_reported_failed(hook, server):
    users = _unenrolled_users(hook, 12)
    created = hook.bulk_enroll(_items(users, None))
    ids = [o["enrollment_id"] for o in created.outcomes]
    server.reset_stats()
    server.set_faults(LOST)

    result = hook.bulk_unenroll(ids, batch_size=3)

    server.set_faults("off")
    assert _lost_writes(server) >= 1, server.stats()
    assert result.counts == {"unenrolled": 12, "total": 12}, result.failed
    assert [o["enrollment_id"] for o in result.outcomes] == ids
    for user in users:
        assert _rows(hook, user) == []  # every enrollment removed, none left behind


def test_an_enrollment_removed_by_another_run_is_already_gone(hook, server):
    users = _unenrolled_users(hook, 3)
    ids = [o["enrollment_id"] for o in hook.bulk_enroll(_items(users, None)).outcomes]
    assert hook.bulk_unenroll(ids[:2]).counts == {"unenrolled": 2, "total": 2}

    result = hook.bulk_unenroll(ids)  # the first two went in the earlier run

    assert [o["outcome"] for o in result.outcomes] == ["already_gone", "already_gone", "unenrolled"]
    assert result.failed == []
    assert all(_rows(hook, user) == [] for user in users)


def test_an_unenroll_that_cannot_be_confirmed_stays_failed(hook, server):
    """Absorb keeps failing (5xx on the write and on the read-back): nothing confirms the
    enrollment is gone, so the outcome is failed, never unenrolled or already_gone."""
    users = _unenrolled_users(hook, 2)
    ids = [o["enrollment_id"] for o in hook.bulk_enroll(_items(users, None)).outcomes]
    hook.client.retry = RetryPolicy(base_delay=0.01, max_delay=0.02, max_attempts=3)
    server.set_faults("503=1.0")

    result = hook.bulk_unenroll(ids)

    server.set_faults("off")
    assert result.counts == {"failed": 2, "total": 2}
    assert all("503" in o["error"] for o in result.outcomes)
    assert [hook.get_enrollment(i)["id"] for i in ids] == ids  # still there
