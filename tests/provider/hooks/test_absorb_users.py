"""bulk_update_users / deactivate_users / reactivate_users / iter_departments against a live sandbox.

Movers get their managed fields updated, leavers deactivated (history kept), rehires reactivated;
a re-run writes nothing, and under the ``lost``/``lost5xx`` faults every PUT is applied once: a
lost answer is followed by a read-back, not by a blind re-send.
"""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from absorb_provider.client import RetryPolicy
from absorb_sandbox.seed import department_external_id, department_id

LOST = "seed=11,lost=0.3,lost5xx=0.3"  # 60% of the API writes are applied and their answer lost
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=8)
PUT_ROUTE = "PUT /users/{userId}"


@pytest.fixture
def server(sandbox_factory):
    return sandbox_factory("users")


@pytest.fixture
def hook(hook_for, server):
    hook = hook_for(server, requests_per_second=0)
    hook.client.retry = FAST
    return hook


def _people(hook, count: int, *, active: int = 0, start: int = 20) -> list[dict]:
    """Seeded non-manager people with the given activeStatus (ordered by employee id)."""
    users = hook.list_users(filter=f"activeStatus eq {active} and externalId ne null", sort="externalId")
    return [u for u in users if u["jobTitle"] != "Manager"][start : start + count]


def _puts(server) -> int:
    return server.stats()["by_route"].get(PUT_ROUTE, 0)


def test_movers_are_updated_once_and_a_rerun_writes_nothing(hook, server):
    departments = {d["externalId"]: d["id"] for d in hook.iter_departments()}
    people = _people(hook, 4)
    supervisor = _people(hook, 1, start=0)[0]["id"]
    changes = [
        (u["id"], {"departmentId": departments["DEP-LEGAL"], "jobTitle": "Paralegal", "location": "Berlin"})
        for u in people[:3]
    ] + [(people[3]["id"], {"supervisorId": supervisor, "dateHired": people[3]["dateHired"][:10]})]
    seen: list[dict] = []
    server.reset_stats()

    result = hook.bulk_update_users(changes, on_outcomes=seen.extend)

    routes = server.stats()["by_route"]
    assert routes["GET /users"] == 1 and "GET /users/{userId}" not in routes  # one read for all four
    assert result.counts == {"updated": 4, "total": 4}, result.failed
    assert sorted(seen, key=lambda o: o["key"]) == sorted(result.outcomes, key=lambda o: o["key"])
    assert [o["user_id"] for o in result.outcomes] == [u["id"] for u in people]
    assert result.outcomes[0]["changed"] == sorted(
        k for k in ("departmentId", "jobTitle", "location") if people[0][k] != changes[0][1][k]
    )
    assert result.outcomes[3]["changed"] == ["supervisorId"]  # same hire date: not a change
    for user, (_, fields) in zip(people, changes, strict=True):
        now = hook.get_user(user["id"])
        assert {k: now[k] for k in fields if k != "dateHired"} == {
            k: v for k, v in fields.items() if k != "dateHired"
        }
        untouched = ("username", "firstName", "lastName", "emailAddress", "externalId", "activeStatus")
        assert {k: now[k] for k in untouched} == {k: user[k] for k in untouched}  # the merge kept them
    assert _puts(server) == 4

    again = hook.bulk_update_users(changes)

    assert again.counts == {"unchanged": 4, "total": 4}
    assert all(o["changed"] == [] for o in again.outcomes)
    assert _puts(server) == 4  # the re-run sent no PUT at all


def test_bad_changes_fail_alone_with_a_clear_error(hook, server):
    people = _people(hook, 5)
    secret = "Sup3r-Secret-Pw!"
    changes = [
        (people[0]["id"], {"jobTitle": "Analyst"}),
        (people[1]["id"], {"departmentId": str(uuid.UUID(int=99)), "jobTitle": "Nope"}),
        (str(uuid.UUID(int=98)), {"jobTitle": "Ghost"}),
        ("E000001", {"jobTitle": "Not a GUID"}),
        (people[2]["id"], {"password": secret, "jobTitle": "X"}),
        (people[3]["id"], {"activeStatus": 2}),
        (people[4]["id"], {"jobTitle": "First change"}),
        (people[4]["id"].upper(), {"location": "Second change of the same user"}),
    ]
    server.reset_stats()

    result = hook.bulk_update_users(changes)

    outcomes = [o["outcome"] for o in result.outcomes]
    assert outcomes == ["updated", "failed", "failed", "failed", "failed", "failed", "updated", "failed"]
    errors = [o["error"] for o in result.outcomes]
    assert "departmentId" in errors[1] and "does not refer to an existing department" in errors[1]
    assert "404" in errors[2] or "not found" in errors[2].lower()
    assert "user_id must be a GUID" in errors[3]
    assert "password" in errors[4] and secret not in errors[4]
    assert "activeStatus" in errors[5]
    assert "more than one change" in errors[7]
    for user in people[1:4]:
        assert hook.get_user(user["id"]) == user  # refused: nothing changed
    assert hook.get_user(people[4]["id"])["location"] == people[4]["location"]
    assert _puts(server) == 3  # two updates and the refused department; the rest were never sent


def test_leavers_are_deactivated_with_history_and_rehires_come_back(hook, server):
    people = _people(hook, 3)
    history = {u["id"]: sorted(e["id"] for e in hook.list_user_enrollments(u["id"])) for u in people}
    assert any(history.values())

    left = hook.deactivate_users(
        [(people[0]["id"], date(2026, 11, 20)), (people[1]["id"], None), people[2]["id"]]
    )

    assert left.counts == {"updated": 3, "total": 3}, left.failed
    first = hook.get_user(people[0]["id"])
    assert first["activeStatus"] == 1 and first["dateTerminated"].startswith("2026-11-20")
    assert all(hook.get_user(u["id"])["activeStatus"] == 1 for u in people)
    assert hook.deactivate_users([people[0]["id"]]).counts == {"unchanged": 1, "total": 1}
    for user in people:
        assert sorted(e["id"] for e in hook.list_user_enrollments(user["id"])) == history[user["id"]]

    back = hook.reactivate_users([(people[0]["id"], "2026-12-01"), people[1]["id"]])

    assert back.counts == {"updated": 2, "total": 2}, back.failed
    rehired = hook.get_user(people[0]["id"])
    assert rehired["id"] == people[0]["id"] and rehired["activeStatus"] == 0
    assert rehired["dateTerminated"] is None and rehired["dateHired"].startswith("2026-12-01")
    assert sorted(e["id"] for e in hook.list_user_enrollments(rehired["id"])) == history[rehired["id"]]
    assert hook.get_user(people[2]["id"])["activeStatus"] == 1  # not in the rehire list
    assert hook.reactivate_users([people[1]["id"]]).counts == {"unchanged": 1, "total": 1}


def test_lost_answers_apply_each_put_once(hook_for, server):
    """The sandbox applies the PUT and loses its answer; the hook must read back and not re-send."""
    hook = hook_for(server, max_concurrency=1, requests_per_second=0)  # same seed → same lost writes
    hook.client.retry = FAST
    people = _people(hook, 12, start=40)
    changes = [(u["id"], {"jobTitle": f"Title {i}", "location": "Sydney"}) for i, u in enumerate(people)]
    hook.client.tokens.current()
    server.reset_stats()
    server.set_faults(LOST)

    result = hook.bulk_update_users(changes[:8])
    leavers = hook.deactivate_users([(u["id"], "2026-11-15") for u in people[8:]])

    server.set_faults("off")
    injected = server.stats()["injected"]
    assert injected.get("lost", 0) + injected.get("lost5xx", 0) >= 3, injected
    assert result.counts == {"updated": 8, "total": 8}, result.failed
    assert leavers.counts == {"updated": 4, "total": 4}, leavers.failed
    assert _puts(server) == 12  # one PUT per user: lost answers were read back, not re-sent
    for user, (_, fields) in zip(people[:8], changes[:8], strict=True):
        now = hook.get_user(user["id"])
        assert (now["jobTitle"], now["location"]) == (fields["jobTitle"], "Sydney")
    assert all(hook.get_user(u["id"])["activeStatus"] == 1 for u in people[8:])


def test_iter_departments_gives_ids_names_and_external_ids(hook):
    departments = list(hook.iter_departments())
    assert departments and all(set(d) == {"id", "name", "externalId"} for d in departments)
    assert all(d["id"] == department_id(d["name"]) for d in departments)
    assert all(d["externalId"] == department_external_id(d["name"]) for d in departments)
