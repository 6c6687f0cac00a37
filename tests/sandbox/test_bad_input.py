"""Bad input is a 4xx with Absorb's error body, never a 5xx, and never FastAPI's own 422 shape."""

from __future__ import annotations

import pytest
from absorb_sandbox.seed import course_id
from sandbox_helpers import assert_error

SAFETY = course_id("Workplace Safety")


@pytest.mark.parametrize(
    "path",
    [
        "/users/123/enrollments",
        "/users/%20/enrollments/{c}",
        "/courses/xyz/enrollments",
        "/enrollments/1",
        "/courses/{c}/lessons/zzz/enrollments",
        "/myenrollments/abc",
        "/courses/{c}/sessions/q/enrollments",
    ],
)
def test_non_guid_ids_are_422(api, path):
    assert_error(api.get(path.replace("{c}", SAFETY)), 422, contains="Invalid format provided for")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/users/{u}/enrollments"),
        ("POST", "/enrollments/unenroll"),
        ("POST", "/users"),
        ("POST", "/attempts/{u}/finish"),
        ("PUT", "/users/{u}"),
    ],
)
@pytest.mark.parametrize("payload", [b"{", b"null", b"\xff\xfe", b'"text"', b"1e999999"])
def test_malformed_bodies_are_400_or_422(module_api, method, path, payload):
    user = module_api.get("/users", params={"_limit": 1}).json()["users"][0]["id"]
    response = module_api.request(
        method, path.replace("{u}", user), content=payload, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 404, 422), response.text
    assert_error(response, response.status_code)


def test_oversized_bodies_are_refused(module_api):
    huge = b"[" + b",".join([b'"0b5f4a8e-2c3d-4e5f-8a9b-1c2d3e4f5a6b"'] * 40_000) + b"]"
    assert_error(
        module_api.post("/enrollments/unenroll", content=huge, headers={"content-type": "application/json"}),
        413,
    )

    def chunks():
        for _ in range(40):
            yield b" " * 50_000

    assert_error(
        module_api.post(
            "/enrollments/unenroll", content=chunks(), headers={"content-type": "application/json"}
        ),
        413,
    )


def test_unknown_routes_and_methods_use_the_absorb_error_body(api):
    assert_error(api.get("/nothing/here"), 404)
    assert_error(api.delete("/courses"), 405)


def test_wrong_query_types_are_422(api):
    assert_error(
        api.post(
            f"/users/{api.get('/users').json()['users'][0]['id']}/enrollments/{SAFETY}",
            params={"reEnroll": "perhaps"},
        ),
        422,
    )
    assert_error(api.get(f"/courses/{SAFETY}/enrollments", params={"status": "done"}), 422)
    assert_error(api.get(f"/courses/{SAFETY}/enrollments", params={"status": 13}), 422)
    assert_error(api.get(f"/courses/{SAFETY}/enrollments", params={"modifiedSince": "last week"}), 422)
