"""Token life cycle: one shared token across processes, expiry, re-login rules, no secret leaks."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time

import pytest
from absorb_provider import token_store
from absorb_provider.exceptions import AbsorbAuthError
from absorb_provider.hooks.absorb import AbsorbHook  # imported before the fork, as in a worker
from absorb_sandbox import seed
from absorb_sandbox.testing import DEFAULT_API_KEY, DEFAULT_PASSWORD

PROCESSES = 16


def _statuses(server) -> dict[str, int]:
    return server.stats()["by_status"]


def _task_process(barrier, results) -> None:
    """One simulated task process: its own hook, released together with the others."""
    hook = AbsorbHook("absorb_default")
    _ = hook.client  # resolve the connection before the race starts
    barrier.wait(timeout=60)
    ok, errors = 0, []
    for call in (
        lambda: hook.client.get("courses", {"_limit": 5, "_offset": 0}),
        lambda: list(hook.list_departments()),
        lambda: hook.client.get("users", {"_limit": 5, "_offset": 1}),
    ):
        try:
            call()
            ok += 1
        except Exception as exc:  # reported to the parent, which asserts
            errors.append(f"{type(exc).__name__}: {exc}")
    results.put({"ok": ok, "errors": errors, "logins": hook.client.tokens.login_count, "t": time.time()})


def test_sixteen_processes_share_one_token(sandbox_factory, monkeypatch):
    """16 forked processes (as executors fork task processes) hit Absorb at the same instant."""
    server = sandbox_factory("race")
    monkeypatch.setenv("AIRFLOW_CONN_ABSORB_DEFAULT", server.airflow_connection_json())
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [context.Process(target=_task_process, args=(barrier, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    started = time.time()
    outcomes = [results.get(timeout=120) for _ in processes]
    assert max(o["t"] for o in outcomes) - started < 60
    for process in processes:
        process.join(timeout=30)
    assert [o["errors"] for o in outcomes] == [[]] * PROCESSES
    assert sum(o["ok"] for o in outcomes) == 3 * PROCESSES
    assert sum(o["logins"] for o in outcomes) <= 2
    stats = server.stats()
    assert stats["authenticate_calls"] <= 2, stats
    assert all(code.startswith("2") for code in stats["by_status"]), stats["by_status"]


def test_expired_token_is_renewed_once(hook_for, sandbox_factory):
    """An expiry (401 on a token older than the take-over threshold) is renewed at once, no wait."""
    server = sandbox_factory("ttl", token_ttl=token_store.MIN_RELOGIN_INTERVAL_SECONDS + 1)
    hook = hook_for(server)
    hook.get_user(seed.user_id("E000001"))
    time.sleep(token_store.MIN_RELOGIN_INTERVAL_SECONDS + 1.5)
    started = time.monotonic()
    hook.get_user(seed.user_id("E000002"))
    assert time.monotonic() - started < 2.0
    hook.get_user(seed.user_id("E000003"))
    stats = server.stats()
    assert stats["authenticate_calls"] == 2
    assert _statuses(server).get("401") == 1
    assert hook.client.tokens.takeover_count == 0


def test_401_adopts_a_newer_shared_token_instead_of_logging_in(hook_for, sandbox_factory):
    server = sandbox_factory("adopt")
    first = hook_for(server)
    first.get_user(seed.user_id("E000001"))
    old = first.client.tokens.current()
    # another process of this host logs in after its 401 on the (by then expired) token, so its
    # token is now the shared one and ours is dead at Absorb; an hour-old token is an expiry,
    # not a take-over, so it logs in at once
    token_store._MANAGERS.clear()
    other = hook_for(server, conn_id="absorb_other")
    started = time.monotonic()
    other.client.tokens.replace_rejected(dataclasses.replace(old, issued_at=old.issued_at - 3600))
    assert time.monotonic() - started < 2.0
    assert server.stats()["authenticate_calls"] == 2
    first.get_user(seed.user_id("E000002"))  # 401 -> adopts the stored token, no third login
    assert server.stats()["authenticate_calls"] == 2
    assert first.client.tokens.current().value == other.client.tokens.current().value


def test_test_connection_success_and_failure(hook_for, sandbox):
    ok, message = hook_for(sandbox).test_connection()
    assert ok, message
    assert "authenticated" in message
    ok, message = hook_for(sandbox, conn_id="absorb_bad", password="wrong-Password-123").test_connection()
    assert not ok
    assert "AbsorbAuthError" in message and "wrong-Password-123" not in message


def test_no_secret_in_logs_exceptions_or_files(
    hook_for, sandbox_factory, captured_logs, isolated_token_state
):
    server = sandbox_factory("secrets")
    wrong = "Wr0ng-Secret-Passw0rd"
    bad = hook_for(server, conn_id="absorb_wrong", password=wrong)
    with pytest.raises(AbsorbAuthError) as failure:
        bad.get_user(seed.user_id("E000001"))
    assert server.stats()["authenticate_calls"] == 1  # a refused login is not retried
    text = f"{failure.value!s} {failure.value!r} {failure.value.__cause__!r}"
    assert failure.value.status in (400, 401)

    good = hook_for(server)
    good.get_user(seed.user_id("E000001"))
    token = good.client.tokens.current().value
    secrets = [wrong, DEFAULT_PASSWORD, DEFAULT_API_KEY, token]
    for secret in secrets:
        assert secret not in text
        assert secret not in captured_logs.text
    for path in isolated_token_state.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(secret.encode() in content for secret in secrets), path
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    assert token not in str(redact(f"Authorization: Bearer {token}"))
    assert DEFAULT_API_KEY not in str(redact(f"key {DEFAULT_API_KEY}"))
