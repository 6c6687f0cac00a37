"""State survives a restart; reset, stats and the progress simulation of the admin surface."""

from __future__ import annotations

from absorb_sandbox.seed import course_id
from absorb_sandbox.testing import SandboxServer
from sandbox_helpers import assert_error, make_client, unenrolled_pair

SAFETY = course_id("Workplace Safety")


def test_state_survives_a_restart_without_reseeding(tmp_path):
    db = tmp_path / "absorb.db"
    with SandboxServer(db_path=db, seed="small") as server, make_client(server) as api:
        user = unenrolled_pair(api, SAFETY)
        enrollment_id = api.post(f"/users/{user}/enrollments/{SAFETY}").json()["enrollmentId"]
        removed = api.get(f"/courses/{SAFETY}/enrollments").json()["enrollments"][0]["id"]
        assert api.post("/enrollments/unenroll", json=[removed]).status_code == 200
        total = api.get("/users").json()["totalItems"]
    assert (tmp_path / "absorb.db-wal").exists() or db.stat().st_size > 0
    with SandboxServer(db_path=db, seed="small") as server, make_client(server) as api:
        assert api.get(f"/enrollments/{enrollment_id}").json()["isActive"] is True
        assert_error(api.get(f"/enrollments/{removed}"), 404)
        assert api.get("/users").json()["totalItems"] == total


def test_reset_restores_the_seed_and_zeroes_stats(fresh_sandbox, fresh_api):
    before = fresh_api.get(f"/courses/{SAFETY}/enrollments", params={"_limit": 1000}).json()
    user = unenrolled_pair(fresh_api, SAFETY)
    fresh_api.post(f"/users/{user}/enrollments/{SAFETY}")
    assert fresh_sandbox.stats()["write_calls"] == 1
    fresh_sandbox.reset()
    assert fresh_sandbox.stats()["total_requests"] == 0
    after = fresh_api.get(f"/courses/{SAFETY}/enrollments", params={"_limit": 1000}).json()
    assert after == before


def test_stats_count_requests_routes_statuses_and_writes(fresh_sandbox, fresh_api):
    fresh_api.get("/departments")  # authenticates
    fresh_sandbox.reset_stats()
    fresh_api.get("/courses")
    fresh_api.get(f"/courses/{SAFETY}/enrollments")
    fresh_api.get("/enrollments/not-a-guid")
    fresh_api.post("/enrollments/unenroll", json=[])
    stats = fresh_sandbox.stats()
    assert stats["total_requests"] == 4 and stats["write_calls"] == 1 and stats["authenticate_calls"] == 0
    assert stats["by_route"] == {
        "GET /courses": 1,
        "GET /courses/{courseId}/enrollments": 1,
        "GET /enrollments/{id}": 1,
        "POST /enrollments/unenroll": 1,
    }
    assert stats["by_status"] == {"200": 2, "422": 1, "400": 1}


def test_progress_advances_and_completes_deterministically(tmp_path):
    results = []
    for name in ("a", "b"):
        with (
            SandboxServer(db_path=tmp_path / f"{name}.db", seed="small") as server,
            make_client(server) as api,
        ):
            open_before = api.get(
                f"/courses/{SAFETY}/enrollments",
                params={"_filter": "isActive eq true and status le 1", "_limit": 1000},
            ).json()
            counts = server.progress(fraction=0.5, seed=3)
            assert counts["advanced"] > 0 and counts["completed"] > 0
            rows = api.get(f"/courses/{SAFETY}/enrollments", params={"_limit": 1000, "_sort": "id"}).json()[
                "enrollments"
            ]
            results.append((counts, [(r["id"], r["status"], r["progress"]) for r in rows]))
            completed = [
                r
                for r in rows
                if r["id"] in {e["id"] for e in open_before["enrollments"]} and r["status"] == 3
            ]
            assert all(
                r["dateCompleted"] and r["progress"] == 100 and r["score"] is not None for r in completed
            )
    assert results[0] == results[1]


def test_progress_refuses_bad_input(sandbox):
    import httpx

    with httpx.Client(base_url=sandbox.base_url) as http:
        assert_error(http.post("/_sandbox/progress", json={"fraction": 2}), 422)
        assert_error(http.post("/_sandbox/progress", json={"fraction": "half"}), 422)
