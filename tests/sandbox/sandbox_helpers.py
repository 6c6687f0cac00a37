"""Helpers for the sandbox tests: authentication, clients and error-body assertions."""

from __future__ import annotations

import httpx


def authenticate(server, client: httpx.Client | None = None) -> str:
    """A fresh token for the server's API user."""
    http = client or httpx.Client(base_url=server.base_url)
    response = http.post(
        "/authenticate",
        headers=server.headers(),
        json={"username": server.username, "password": server.password, "privateKey": server.api_key},
    )
    assert response.status_code == 200, response.text
    token = response.json()
    assert isinstance(token, str) and token
    return token


class ReauthenticatingAuth(httpx.Auth):
    """Bearer auth that authenticates again once on a 401 (another test may have replaced the
    shared sandbox's token: one live token per user, as in Absorb)."""

    def __init__(self, server):
        self.server = server
        self.token: str | None = None

    def auth_flow(self, request):
        if self.token is None:
            self.token = authenticate(self.server)
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            self.token = authenticate(self.server)
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request


def make_client(server) -> httpx.Client:
    client = httpx.Client(base_url=server.base_url, timeout=30, auth=ReauthenticatingAuth(server))
    client.headers.update(server.headers())
    return client


def raw_client(server) -> httpx.Client:
    """A client without any credentials (tests of the auth rules add their own headers)."""
    return httpx.Client(base_url=server.base_url, timeout=30)


def assert_error(response: httpx.Response, status: int, *, contains: str | None = None) -> dict:
    """The response is ``status`` with Absorb's error body (and the message mentions ``contains``)."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"validations", "code", "message", "term", "_meta"}, body
    assert isinstance(body["validations"], list) and isinstance(body["_meta"], dict)
    if contains:
        assert contains.lower() in (body["message"] + " ".join(body["validations"])).lower(), body
    return body


def person(api, external_id: str) -> dict:
    """The seeded user with this HR employee id."""
    [user] = api.get("/users", params={"_filter": f"externalId eq '{external_id}'"}).json()["users"]
    return user


def unenrolled_pair(api, course_id: str, *, start: int = 30) -> str:
    """The id of an active seeded user with no enrollment (of any kind) in ``course_id``."""
    taken = {
        e["userId"]
        for e in api.get(f"/courses/{course_id}/enrollments", params={"_limit": 1000}).json()["enrollments"]
    }
    users = api.get(
        "/users", params={"_filter": "activeStatus eq 0 and externalId ne null", "_limit": 1000}
    ).json()["users"]
    for user in users[start:]:
        if user["id"] not in taken:
            return user["id"]
    raise AssertionError("no unenrolled user left")
