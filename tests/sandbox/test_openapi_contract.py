"""Property-based run of every documented operation (schemathesis over the live /openapi.json),
authenticated, with real ids from the seed mixed into the generated ones so that the cases reach
the handlers (not only the id checks): no 5xx, no internal error, and every response conforms to
its documented status, content type, headers and schema."""

from __future__ import annotations

from collections import defaultdict

import httpx
import pytest
import schemathesis
from absorb_sandbox.seed import NEW_HIRE_ILC, course_id, lesson_id, session_id
from absorb_sandbox.testing import SandboxServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox_helpers import authenticate, make_client
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
ONLINE = "Workplace Safety"


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory):
    server = SandboxServer(db_path=tmp_path_factory.mktemp("contract") / "absorb.db", seed="small").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(contract_server):
    return schemathesis.openapi.from_url(f"{contract_server.base_url}/openapi.json")


@pytest.fixture(scope="module")
def real_ids(contract_server) -> list[dict[str, str]]:
    """Coherent sets of path ids from the seed: a user, a course they are enrolled in, that
    enrollment, one of its chapters/lessons/sessions and an attempt."""
    found: list[dict[str, str]] = []
    with make_client(contract_server) as api:
        for name in (ONLINE, NEW_HIRE_ILC):
            course = course_id(name)
            rows = api.get(
                f"/courses/{course}/enrollments", params={"_filter": "status eq 1", "_limit": 3}
            ).json()["enrollments"]
            for row in rows:
                ids = {"userId": row["userId"], "courseId": course, "id": row["id"]}
                if name == NEW_HIRE_ILC:
                    ids["sessionId"] = session_id(name, 1)
                else:
                    lesson = lesson_id(name, 1, 1)
                    lessons = api.get(f"/users/{row['userId']}/enrollments/{course}/lessons").json()
                    ids["chapterId"] = next(le["chapterId"] for le in lessons if le["lessonId"] == lesson)
                    ids["lessonId"] = lesson
                    started = api.post(
                        f"/users/{row['userId']}/enrollments/{course}/lessons/{lesson}/startattempt"
                    )
                    assert started.status_code == 200, started.text
                    ids["attemptId"] = started.json()["attemptId"]
                found.append(ids)
    assert len(found) == 6
    return found


@pytest.fixture(scope="module")
def auth_headers(contract_server, real_ids) -> dict:
    # after real_ids: one live token per user, so a later login would void this one
    return contract_server.headers(authenticate(contract_server))


def test_every_operation_conforms_to_its_schema(api_schema, auth_headers, contract_server, real_ids):
    """Each operation gets up to 25 generated cases (derandomized, so repeatable), three in four of
    them with the seed's ids in their path (and body courseId). schemathesis' pytest plugin does not
    run on pytest 9, so the Hypothesis loop is driven here."""
    failures: list[str] = []
    statuses: dict[str, set[int]] = defaultdict(set)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 32
    contract_server.reset_stats()
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        try:
            _exercise(operation, real_ids, auth_headers, statuses[label])
        except Exception as exc:
            failures.append(f"{label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    stats = contract_server.stats()
    assert stats["total_requests"] >= 15 * len(operations)  # the run really exercised the server
    assert stats["internal_errors"] == 0, stats
    assert not [status for status in stats["by_status"] if status.startswith("5") or status == "dropped"]
    assert stats["by_status"].get("401", 0) < stats["total_requests"] / 20, stats[
        "by_status"
    ]  # authenticated
    reached = {label for label, seen in statuses.items() if any(200 <= s < 300 for s in seen)}
    unreached = sorted(set(statuses) - reached)
    assert len(reached) >= 0.75 * len(operations), f"operations never answered 2xx: {unreached}"


def _exercise(operation, real_ids: list[dict], headers: dict, seen: set[int]) -> None:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy(), use_real=st.integers(0, 3), ids=st.sampled_from(real_ids))
    def run(case, use_real, ids):
        if use_real:
            for name in list(case.path_parameters or {}):
                if name in ids:
                    case.path_parameters[name] = ids[name]
            if isinstance(case.body, dict) and "courseId" in case.body:
                case.body["courseId"] = ids["courseId"]
        seen.add(case.call_and_validate(headers=headers, checks=CHECKS).status_code)

    run()


def test_the_document_lists_every_operation(api_schema, contract_server):
    document = httpx.get(f"{contract_server.base_url}/openapi.json").json()
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert (
        len(operations) >= 26 + 6
    )  # the 26 seed operations (plus alternative paths) and the user/course reads
    assert ("POST", "/enrollments/unenroll") in operations and ("GET", "/bulk/studentcourses") in operations
    enrollment = document["components"]["schemas"]["Enrollment"]["properties"]
    assert {"timeSpentTicks", "timeSpent", "isActive", "dateDue", "courseCollectionId"} <= set(enrollment)
    assert "429" in document["paths"]["/users"]["get"]["responses"]
    assert "Retry-After" in document["paths"]["/users"]["get"]["responses"]["429"]["headers"]


def test_the_document_declares_the_limits(contract_server):
    """The limits the sandbox enforces are declared, so generated requests stay inside them."""
    document = httpx.get(f"{contract_server.base_url}/openapi.json").json()
    paged = {p["name"]: p for p in document["paths"]["/courses/{courseId}/enrollments"]["get"]["parameters"]}
    assert paged["_limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert paged["_offset"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 65535}
    bulk = {p["name"]: p for p in document["paths"]["/bulk/studentcourses"]["get"]["parameters"]}
    assert bulk["userIds"]["required"] is True
    assert bulk["userIds"]["schema"]["minItems"] == 1 and bulk["userIds"]["schema"]["maxItems"] == 1000
    assert bulk["courseIds"]["required"] is False and bulk["courseIds"]["schema"]["maxItems"] == 1000
