"""Keyset paging and cached counts give the same bytes as COUNT(*) + LIMIT/OFFSET.

Two servers on one ``medium`` database: ``keyset`` (the default) and ``--paging offset`` (every
page a plain COUNT + LIMIT/OFFSET, the behaviour before keyset paging). Every page is compared
byte for byte; ``/_sandbox/stats`` shows the keyset server really seeked.
"""

from __future__ import annotations

import httpx
import pytest
from absorb_sandbox.testing import SandboxServer
from sandbox_helpers import make_client


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    db = tmp_path_factory.mktemp("keyset") / "absorb.db"
    keyset = SandboxServer(db_path=db, seed="medium").start()
    # Its own API user: both servers keep their tokens in the one database (one per user).
    offset = SandboxServer(db_path=db, seed="medium", paging="offset", username="offset.integration").start()
    yield keyset, offset
    offset.stop()
    keyset.stop()


@pytest.fixture(scope="module")
def clients(servers):
    keyset, offset = servers
    with make_client(keyset) as a, make_client(offset) as b:
        yield a, b


@pytest.fixture(scope="module")
def largest_course(clients) -> tuple[str, int]:
    api = clients[0]
    courses = api.get("/courses", params={"_limit": 1000}).json()["courses"]
    totals = {
        c["id"]: api.get(f"/courses/{c['id']}/enrollments", params={"_limit": 1}).json()["totalItems"]
        for c in courses
    }
    course = max(totals, key=totals.get)
    return course, totals[course]


def paging_stats(server) -> dict:
    return server.stats()["paging"]


def walk(client: httpx.Client, path: str, params: dict, pages) -> list[bytes]:
    bodies = []
    for page in pages:
        response = client.get(path, params={**params, "_offset": page})
        assert response.status_code == 200, response.text
        bodies.append(response.content)
    return bodies


def test_walking_the_largest_course_gives_the_offset_pages(servers, clients, largest_course):
    keyset_server, _ = servers
    keyset, offset = clients
    course, total = largest_course
    assert total > 8000  # a big course: 80+ pages of 100
    path, params = f"/courses/{course}/enrollments", {"_limit": 100}
    pages = range(total // 100 + 2)  # through the short last page and one empty page
    keyset_server.reset_stats()
    seeked = walk(keyset, path, params, pages)
    stats = paging_stats(keyset_server)
    assert seeked == walk(offset, path, params, pages)
    ids = [e["id"] for body in seeked for e in httpx.Response(200, content=body).json()["enrollments"]]
    assert len(ids) == len(set(ids)) == total
    # Page 0 first, every later page in range a seek after the one before; the count at most
    # once (the fixture's page may have cached it already).
    assert stats["first"] == 1 and stats["keyset"] == len(pages) - 2 and "offset" not in stats
    assert stats.get("count_computed", 0) <= 1 and stats["count_cached"] >= len(pages) - 1


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/courses/{course}/enrollments", {"_limit": 250, "_filter": "isActive eq true"}),
        ("/courses/{course}/enrollments", {"_limit": 300, "status": 0}),
        ("/courses/{course}/enrollments", {"_limit": 400, "_filter": "startswith(fullName, 'A')"}),
        ("/users", {"_limit": 500}),
        ("/users", {"_limit": 700, "_filter": "activeStatus eq 0"}),
        ("/courses", {"_limit": 7}),
    ],
)
def test_filtered_walks_give_the_offset_pages(servers, clients, largest_course, path, params):
    keyset, offset = clients
    path = path.format(course=largest_course[0])
    total, limit = keyset.get(path, params={**params, "_offset": 0}).json()["totalItems"], params["_limit"]
    in_range = -(-total // limit)
    assert in_range >= 3
    servers[0].reset_stats()
    pages = range(in_range + 1)  # and one empty page
    assert walk(keyset, path, params, pages) == walk(offset, path, params, pages)
    assert paging_stats(servers[0])["keyset"] == in_range - 1


def test_page_jumps_and_repeats_give_the_offset_pages(servers, clients, largest_course):
    keyset, offset = clients
    path, params = f"/courses/{largest_course[0]}/enrollments", {"_limit": 90}  # a size of its own
    order = [0, 1, 40, 41, 41, 7, 3, 4, 12, 2, 86, 87, 1000, 5, 6]
    servers[0].reset_stats()
    assert walk(keyset, path, params, order) == walk(offset, path, params, order)
    stats = paging_stats(servers[0])
    # Jumps (40, 7, 3, 12, 86) fall back to OFFSET; a page whose page before was served (1, 41,
    # 41 again, 4, 2, 87, 5, 6) is a seek; 1000 is past the end.
    assert stats["offset"] == 5 and stats["keyset"] == 8 and stats["first"] == 1


def test_a_sort_falls_back_to_offset_with_the_same_pages(servers, clients, largest_course):
    keyset, offset = clients
    path = f"/courses/{largest_course[0]}/enrollments"
    params = {"_limit": 500, "_sort": "-dateEdited,fullName"}
    servers[0].reset_stats()
    assert walk(keyset, path, params, range(5)) == walk(offset, path, params, range(5))
    stats = paging_stats(servers[0])
    assert stats["offset"] == 5 and "keyset" not in stats and stats["count_cached"] == 4


def test_a_write_in_another_process_between_pages_is_seen(servers, clients, largest_course):
    """A cached count or seek point never outlives a write, even one another process made."""
    keyset, offset = clients
    course = largest_course[0]
    path, params = f"/courses/{course}/enrollments", {"_limit": 100}
    before = [httpx.Response(200, content=b).json() for b in walk(keyset, path, params, range(3))]
    # Remove a row of page 1 through the *other* server process; page 3 shifts by one row.
    victim = before[1]["enrollments"][10]["id"]
    assert offset.post("/enrollments/unenroll", json=[victim]).status_code == 200
    after = walk(keyset, path, params, [3, 4])
    assert after == walk(offset, path, params, [3, 4])
    page3 = httpx.Response(200, content=after[0]).json()
    assert page3["totalItems"] == before[0]["totalItems"] - 1
    # And a write through the keyset server itself (its own connection) invalidates too.
    user = next(
        u["id"]
        for u in keyset.get("/users", params={"_limit": 1000}).json()["users"]
        if keyset.get(f"/users/{u['id']}/enrollments/{course}").status_code == 404
    )
    assert keyset.post(f"/users/{user}/enrollments/{course}").status_code == 201
    last = page3["totalItems"] // 100
    tail = walk(keyset, path, params, [last - 1, last])
    assert tail == walk(offset, path, params, [last - 1, last])
    assert httpx.Response(200, content=tail[1]).json()["totalItems"] == page3["totalItems"] + 1
