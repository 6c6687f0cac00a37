"""Rate limiting (429 + Retry-After) and fault injection (repeatable by seed, never on /_sandbox)."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import httpx
import pytest
from absorb_sandbox.seed import course_id
from sandbox_helpers import assert_error, authenticate, raw_client, unenrolled_pair

SAFETY = course_id("Workplace Safety")


def statuses(server, token: str, count: int) -> list:
    """Status of ``count`` sequential GET /departments calls; 'drop' when the connection closed."""
    seen = []
    with raw_client(server) as http:
        for _ in range(count):
            try:
                seen.append(http.get("/departments", headers=server.headers(token)).status_code)
            except httpx.TransportError:
                seen.append("drop")
    return seen


def test_rate_limit_answers_429_with_retry_after(sandbox_factory):
    server = sandbox_factory("limited", seed="none", rate_limit=5)
    token = authenticate(server)
    with raw_client(server) as http:
        responses = [http.get("/departments", headers=server.headers(token)) for _ in range(12)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited and any(r.status_code == 200 for r in responses)
    for response in limited:
        assert_error(response, 429)
        assert int(response.headers["Retry-After"]) >= 1
    assert server.stats()["by_status"]["429"] == len(limited)


def test_faults_are_repeatable_for_the_same_seed(sandbox_factory):
    spec = "seed=7,error=0.2,429=0.1,drop=0.1"
    first = sandbox_factory("faults_a", seed="none", faults=spec)
    second = sandbox_factory("faults_b", seed="none")
    token_a = _token_despite_faults(first)
    first.set_faults(spec)  # restart the sequence after authenticating
    run_a = statuses(first, token_a, 40)
    token_b = authenticate(second)
    second.set_faults(spec)
    run_b = statuses(second, token_b, 40)
    assert run_a == run_b
    assert {500, 502, 503} & set(run_a) and 429 in run_a and "drop" in run_a and 200 in run_a
    second.set_faults({"seed": 8, "error": 0.2, "429": 0.1, "drop": 0.1})
    assert statuses(second, token_b, 40) != run_a
    second.set_faults("off")
    assert set(statuses(second, token_b, 10)) == {200}


def _token_despite_faults(server) -> str:
    for _ in range(50):
        try:
            return authenticate(server)
        except (AssertionError, httpx.TransportError):
            continue
    raise AssertionError("could not authenticate through the faults")


def test_latency_fault_and_admin_calls_unaffected(sandbox_factory):
    server = sandbox_factory("slow", seed="none")
    token = authenticate(server)
    server.set_faults("seed=1,latency=1.0:300ms")
    with raw_client(server) as http:
        response = http.get("/departments", headers=server.headers(token))
        assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.3
        server.set_faults({"spec": "error=1.0"})
        assert http.get("/departments", headers=server.headers(token)).status_code in (500, 502, 503)
        assert http.get("/_sandbox/stats").status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        "error=2",
        "bogus=0.1",
        "latency=0.1:fast",
        "error=0.6,drop=0.6",
        "seed=x",
        "lost=0.7,lost5xx=0.4",
        "lost=x",
    ],
)
def test_bad_fault_specs_are_refused(sandbox, spec):
    with raw_client(sandbox) as http:
        assert_error(http.post("/_sandbox/faults", json={"spec": spec}), 422)


def _active_enrollment(http, server, token, user: str) -> int:
    return http.get(f"/users/{user}/enrollments/{SAFETY}", headers=server.headers(token)).status_code


def test_lost_write_is_applied_then_its_connection_dropped(sandbox_factory):
    server = sandbox_factory("lost")
    token = authenticate(server)
    with raw_client(server) as http:
        http.headers.update(server.headers(token))
        user = unenrolled_pair(http, SAFETY)
        server.set_faults("seed=3,lost=1.0")
        assert authenticate(server)  # /authenticate is never lost
        token = authenticate(server)
        http.headers.update(server.headers(token))
        assert http.get("/departments").status_code == 200  # reads are never lost
        with pytest.raises(httpx.TransportError):
            http.post(f"/users/{user}/enrollments/{SAFETY}")
        server.set_faults("off")
        current = http.get(f"/users/{user}/enrollments/{SAFETY}")
        assert current.status_code == 200 and current.json()["isActive"] is True  # it was applied
    stats = server.stats()
    assert stats["injected"] == {"lost": 1} and stats["by_status"]["dropped"] == 1
    assert stats["internal_errors"] == 0


def test_lost5xx_write_is_applied_then_answered_502_or_503(sandbox_factory):
    server = sandbox_factory("lost5xx")
    token = authenticate(server)
    with raw_client(server) as http:
        http.headers.update(server.headers(token))
        user = unenrolled_pair(http, SAFETY)
        server.set_faults({"seed": 4, "lost5xx": 1.0})
        answer = http.post(f"/users/{user}/enrollments/{SAFETY}")
        assert_error(answer, answer.status_code)
        assert answer.status_code in (502, 503)
        server.set_faults("off")
        enrollment = http.get(f"/users/{user}/enrollments/{SAFETY}").json()
        assert enrollment["userId"] == user and enrollment["isActive"] is True
        retried = http.post(f"/users/{user}/enrollments/{SAFETY}")  # what a blind retry hears
        assert_error(retried, 422, contains="already enrolled")
    stats = server.stats()
    assert stats["injected"] == {"lost5xx": 1}
    assert stats["by_status"][str(answer.status_code)] == 1 and "dropped" not in stats["by_status"]


def _write_statuses(server, token: str, count: int) -> list:
    """Status of ``count`` writes (an unenroll of an unknown id, a 422 that changes nothing),
    each after a read; 'drop' when the connection closed."""
    seen = []
    unknown = [str(uuid.UUID(int=77))]
    with raw_client(server) as http:
        for _ in range(count):
            assert http.get("/departments", headers=server.headers(token)).status_code == 200
            try:
                seen.append(
                    http.post(
                        "/enrollments/unenroll", json=unknown, headers=server.headers(token)
                    ).status_code
                )
            except httpx.TransportError:
                seen.append("drop")
    return seen


def test_lost_faults_are_repeatable_and_only_on_writes(sandbox_factory):
    spec = "seed=9,lost=0.3,lost5xx=0.3"
    first = sandbox_factory("lost_a", seed="none")
    second = sandbox_factory("lost_b", seed="none")
    token_a, token_b = authenticate(first), authenticate(second)
    first.set_faults(spec)
    second.set_faults(spec)
    run_a = _write_statuses(first, token_a, 30)
    run_b = _write_statuses(second, token_b, 30)
    assert run_a == run_b
    assert {"drop", 422} <= set(run_a) and {502, 503} & set(run_a)
    stats = first.stats()
    assert stats["injected"]["lost"] == run_a.count("drop")
    assert stats["injected"]["lost5xx"] == sum(1 for s in run_a if s in (502, 503))
    assert stats["by_route"]["GET /departments"] == 30  # every read answered 200: reads untouched
    assert stats["by_status"]["200"] == 30 + 1  # and the authentication
    # adding lost faults leaves the sequence of the other (read) faults unchanged
    first.set_faults("seed=7,error=0.2,429=0.1,drop=0.1")
    plain = statuses(first, token_a, 30)
    first.set_faults("seed=7,error=0.2,429=0.1,drop=0.1,lost=0.5,lost5xx=0.5")
    assert statuses(first, token_a, 30) == plain


def test_an_uncaught_exception_counts_as_an_internal_error_not_a_drop(tmp_path):
    """A sandbox defect (an exception no handler maps) answers 500 with Absorb's error body and
    counts under ``internal_errors``, apart from injected drops. Served over real HTTP by the
    sandbox's own app and protocol, plus one route that fails."""
    import uvicorn
    from absorb_sandbox.app import SandboxConfig, create_app
    from absorb_sandbox.server import DroppableHttpToolsProtocol

    config = SandboxConfig(db_path=str(tmp_path / "defect.db"), seed="none")
    app = create_app(config)

    @app.get("/defect")
    async def defect():
        raise RuntimeError("a sandbox bug")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, http=DroppableHttpToolsProtocol, log_level="critical", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            headers = {"x-api-key": config.api_key, "x-api-version": "2"}
            token = http.post(
                "/authenticate",
                headers=headers,
                json={"username": config.username, "password": config.password, "privateKey": config.api_key},
            ).json()
            answer = http.get("/defect", headers={**headers, "Authorization": f"Bearer {token}"})
            assert_error(answer, 500, contains="internal error")
            stats = http.get("/_sandbox/stats").json()
    finally:
        server.should_exit = True
        thread.join(10)
    assert stats["internal_errors"] == 1
    assert stats["by_status"] == {"200": 1, "500": 1} and stats["injected"] == {}


def test_writelatency_delays_writes_only(sandbox_factory):
    server = sandbox_factory("slow_writes", seed="none")
    token = authenticate(server)
    server.set_faults("seed=2,writelatency=1.0:400ms")
    with raw_client(server) as http:
        http.headers.update(server.headers(token))
        read = http.get("/departments")
        write = http.post("/enrollments/unenroll", json=[str(uuid.UUID(int=78))])
    assert read.status_code == 200 and read.elapsed.total_seconds() < 0.3
    assert_error(write, 422)
    assert write.elapsed.total_seconds() >= 0.4
    assert server.stats()["injected"] == {}  # a delay is not a failure


def test_rename_fault_renames_a_field_in_get_answers_only(sandbox_factory):
    server = sandbox_factory("renamed", seed="small")
    token = authenticate(server)
    server.set_faults({"rename": ["externalId:employeeKey"]})
    with raw_client(server) as http:
        http.headers.update(server.headers(token))
        page = http.get("/users", params={"_limit": 3})
        assert page.status_code == 200
        users = page.json()["users"]
        assert users and all("employeeKey" in u and "externalId" not in u for u in users)
        assert int(page.headers["content-length"]) == len(page.content)
        assert "externalId" not in http.get(f"/users/{users[0]['id']}").json()
        departments = http.get("/departments").json()["departments"]  # departments carry externalId too
        assert departments and all("employeeKey" in d and "externalId" not in d for d in departments)
        server.set_faults("off")
        assert "externalId" in http.get("/users", params={"_limit": 1}).json()["users"][0]
    assert server.stats()["injected"] == {"rename": 3}


@pytest.mark.parametrize("spec", ["rename=externalId", "rename=:x", "rename=a:"])
def test_bad_rename_specs_are_refused(sandbox, spec):
    with raw_client(sandbox) as http:
        assert_error(http.post("/_sandbox/faults", json={"spec": spec}), 422)
