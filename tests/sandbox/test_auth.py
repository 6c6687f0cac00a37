"""The auth rules: x-api-key on every call, credentials, one live token per user, expiry."""

from __future__ import annotations

import time

import pytest
from sandbox_helpers import assert_error, authenticate, raw_client


def credentials(server, **override) -> dict:
    return {
        "username": server.username,
        "password": server.password,
        "privateKey": server.api_key,
        **override,
    }


@pytest.fixture(scope="module")
def auth_server(sandbox_factory_module):
    return sandbox_factory_module("auth", seed="none")


@pytest.fixture(scope="module")
def sandbox_factory_module(tmp_path_factory):
    from absorb_sandbox.testing import SandboxServer

    started = []

    def start(name: str, **options):
        server = SandboxServer(db_path=tmp_path_factory.mktemp(name) / "absorb.db", **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_authenticate_returns_a_json_string_token(auth_server):
    with raw_client(auth_server) as http:
        response = http.post("/authenticate", headers=auth_server.headers(), json=credentials(auth_server))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.text.startswith('"') and len(response.json()) >= 32


@pytest.mark.parametrize(
    "override",
    [
        {"password": "wrong"},
        {"username": "someone.else"},
        {"privateKey": "11111111-2222-3333-4444-555555555555"},
    ],
)
def test_wrong_credentials_are_refused(auth_server, override):
    with raw_client(auth_server) as http:
        response = http.post(
            "/authenticate", headers=auth_server.headers(), json=credentials(auth_server, **override)
        )
    assert_error(response, 401)


def test_authenticate_needs_a_body_with_all_three_fields(auth_server):
    with raw_client(auth_server) as http:
        assert_error(http.post("/authenticate", headers=auth_server.headers()), 400)
        assert_error(
            http.post(
                "/authenticate",
                headers={**auth_server.headers(), "content-type": "application/json"},
                content=b"{not json",
            ),
            400,
            contains="malformed",
        )
        assert_error(http.post("/authenticate", headers=auth_server.headers(), json={"username": "x"}), 400)
        assert_error(http.post("/authenticate", headers=auth_server.headers(), json=["a"]), 400)


@pytest.mark.parametrize("api_key", [None, "wrong-key", "11111111-2222-3333-4444-555555555555"])
def test_every_call_needs_the_api_key(auth_server, api_key):
    token = authenticate(auth_server)
    headers = {"Authorization": f"Bearer {token}"}
    if api_key:
        headers["x-api-key"] = api_key
    with raw_client(auth_server) as http:
        assert_error(http.get("/courses", headers=headers), 401, contains="x-api-key")
        assert_error(http.post("/authenticate", headers=headers, json=credentials(auth_server)), 401)


def test_calls_need_a_live_token_bearer_or_raw(auth_server):
    token = authenticate(auth_server)
    with raw_client(auth_server) as http:
        assert_error(http.get("/courses", headers=auth_server.headers()), 401, contains="token")
        assert_error(
            http.get("/courses", headers={**auth_server.headers(), "Authorization": "Bearer nope"}), 401
        )
        assert http.get("/courses", headers=auth_server.headers(token)).status_code == 200
        assert (
            http.get("/courses", headers={**auth_server.headers(), "Authorization": token}).status_code == 200
        )


def test_a_new_token_invalidates_the_previous_one(auth_server):
    first = authenticate(auth_server)
    second = authenticate(auth_server)
    assert first != second
    with raw_client(auth_server) as http:
        assert_error(http.get("/courses", headers=auth_server.headers(first)), 401)
        assert http.get("/courses", headers=auth_server.headers(second)).status_code == 200


def test_tokens_expire_after_the_token_ttl(sandbox_factory_module):
    server = sandbox_factory_module("ttl", seed="none", token_ttl=1)
    token = authenticate(server)
    with raw_client(server) as http:
        assert http.get("/courses", headers=server.headers(token)).status_code == 200
        time.sleep(1.3)
        assert_error(http.get("/courses", headers=server.headers(token)), 401)


def test_only_api_version_2_is_spoken(auth_server):
    token = authenticate(auth_server)
    with raw_client(auth_server) as http:
        response = http.get("/courses", headers={**auth_server.headers(token), "x-api-version": "1"})
    assert_error(response, 400, contains="x-api-version")


def test_docs_and_admin_need_no_key(auth_server):
    with raw_client(auth_server) as http:
        assert http.get("/openapi.json").status_code == 200
        assert http.get("/_sandbox/stats").status_code == 200
