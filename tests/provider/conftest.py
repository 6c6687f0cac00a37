"""Provider test fixtures: an isolated token-state directory and hooks bound to live sandboxes."""

from __future__ import annotations

import json
import logging

import pytest
from absorb_provider import token_store


@pytest.fixture(autouse=True)
def isolated_token_state(tmp_path, monkeypatch):
    """Each test gets its own lock/token directory and an empty in-process token registry."""
    state = tmp_path / "absorb-state"
    monkeypatch.setenv(token_store.STATE_DIR_ENV, str(state))
    token_store._MANAGERS.clear()
    yield state
    token_store._MANAGERS.clear()


def connection_env(
    server, conn_id: str = "absorb_default", password: str | None = None, **extra
) -> tuple[str, str]:
    data = json.loads(server.airflow_connection_json(conn_id))
    data["extra"].update(extra)
    if password is not None:
        data["password"] = password
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(data)


@pytest.fixture
def hook_for(monkeypatch):
    """Builds an AbsorbHook on a sandbox, with optional connection extras."""
    from absorb_provider.hooks.absorb import AbsorbHook

    created = []

    def build(server, conn_id: str = "absorb_default", password: str | None = None, **extra) -> AbsorbHook:
        name, value = connection_env(server, conn_id, password, **extra)
        monkeypatch.setenv(name, value)
        hook = AbsorbHook(conn_id)
        created.append(hook)
        return hook

    yield build
    for hook in created:
        hook.close()


@pytest.fixture
def hook(hook_for, sandbox):
    """A hook on the session-wide (read-mostly) sandbox."""
    return hook_for(sandbox)


@pytest.fixture
def write_hook(hook_for, fresh_sandbox):
    """A hook on a sandbox of its own, for tests that write."""
    return hook_for(fresh_sandbox)


@pytest.fixture
def captured_logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture(scope="module")
def module_sandbox(tmp_path_factory):
    """A writable sandbox shared by one test module (tests in it create their own users)."""
    from absorb_sandbox.testing import SandboxServer

    server = SandboxServer(db_path=tmp_path_factory.mktemp("absorb") / "absorb.db", seed="small").start()
    yield server
    server.stop()


@pytest.fixture
def new_user(hook_for, module_sandbox):
    """Creates a fresh learner (no enrollments) through the hook and returns its id."""
    import uuid

    hook = hook_for(module_sandbox)
    suffix = uuid.uuid4().hex[:8]
    created = hook.upsert_user(
        {
            "username": f"test.learner.{suffix}@example.com",
            "firstName": "Test",
            "lastName": f"Learner {suffix}",
            "emailAddress": f"test.learner.{suffix}@example.com",
            "externalId": f"T{suffix}",
            "password": f"Pw-{suffix}-Aa1!",
        }
    )
    user_id = created.get("id") or created.get("userId")
    assert user_id, created
    return user_id
