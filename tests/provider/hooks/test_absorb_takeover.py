"""Another client logging in as the same API user: back off, then fail with a named cause.

Absorb keeps one live token per user. Two "hosts" with separate token stores (separate state
directories, as two machines without shared storage or two deployments) cannot both work; each
login knocks the other out. The provider must not storm: at most one login per host per 5 s, and
every call that fails carries AbsorbTokenContentionError naming the API user and the remedy.
Each host is a forked process with its own ``ABSORB_PROVIDER_STATE_DIR``, on one live sandbox.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import threading
import time
from itertools import pairwise

from absorb_provider import token_store
from absorb_provider.hooks.absorb import AbsorbHook  # imported before the fork, as in a worker
from absorb_sandbox.testing import DEFAULT_API_KEY, DEFAULT_PASSWORD, DEFAULT_USERNAME

REMEDY = (
    f"another client is using API user '{DEFAULT_USERNAME}': give each deployment its own API user, "
    "or share the token store"
)
MIN_LOGIN_INTERVAL = 5.0
DURATION = 12.0
THREADS_PER_HOST = 2
EXPIRED_AFTER = 6.5  # the expiry test's sandbox token lives 6 s
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-]{40,}")  # sandbox tokens are 64 url-safe characters


def _host(state_dir: str, duration: float, barrier, results) -> None:
    """One host: its own token store, a few threads calling the API until ``duration`` is over."""
    os.environ[token_store.STATE_DIR_ENV] = state_dir
    token_store._MANAGERS.clear()
    hook = AbsorbHook("absorb_default")
    _ = hook.client  # resolve the connection before the race starts
    barrier.wait(timeout=60)
    deadline = time.monotonic() + duration
    calls: list[tuple[float, float, str | None, str | None]] = []
    lock = threading.Lock()

    def worker() -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                hook.client.get("courses", {"_limit": 1, "_offset": 0})
                outcome = (started, time.monotonic() - started, None, None)
            except Exception as exc:  # reported to the parent, which asserts
                outcome = (started, time.monotonic() - started, type(exc).__name__, str(exc))
            with lock:
                calls.append(outcome)
            if outcome[2] is not None:
                time.sleep(0.05)

    workers = [threading.Thread(target=worker) for _ in range(THREADS_PER_HOST)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    tokens = hook.client.tokens
    results.put(
        {
            "state_dir": state_dir,
            "calls": calls,
            "logins": tokens.login_count,
            "login_times": list(getattr(tokens, "login_times", [])),
        }
    )


def _one_call(state_dir: str, results) -> None:
    """A new task process on a host: one call."""
    os.environ[token_store.STATE_DIR_ENV] = state_dir
    token_store._MANAGERS.clear()
    hook = AbsorbHook("absorb_default")
    started = time.monotonic()
    try:
        hook.client.get("courses", {"_limit": 1, "_offset": 0})
        results.put({"error": None, "message": None, "elapsed": time.monotonic() - started})
    except Exception as exc:
        results.put({"error": type(exc).__name__, "message": str(exc), "elapsed": time.monotonic() - started})


def _run(context, target, args_list):
    results = context.Queue()
    processes = [context.Process(target=target, args=(*args, results)) for args in args_list]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return outcomes


def test_two_hosts_with_separate_stores_back_off_and_fail_with_the_cause(
    sandbox_factory, monkeypatch, tmp_path
):
    server = sandbox_factory("takeover")
    conn = json.loads(server.airflow_connection_json())
    conn["extra"]["max_token_takeovers"] = 2
    monkeypatch.setenv("AIRFLOW_CONN_ABSORB_DEFAULT", json.dumps(conn))
    context = multiprocessing.get_context("fork")
    dirs = [str(tmp_path / "host-a"), str(tmp_path / "host-b")]
    barrier = context.Barrier(len(dirs))
    hosts = _run(context, _host, [(d, DURATION, barrier) for d in dirs])

    stats = server.stats()
    # no storm: at most one login per host per 5 s (plus the first), few 401s
    per_host_bound = 1 + math.ceil(DURATION / MIN_LOGIN_INTERVAL)
    assert stats["authenticate_calls"] <= len(dirs) * per_host_bound, stats
    assert stats["by_status"].get("401", 0) <= 3 * stats["authenticate_calls"], stats
    for host in hosts:
        assert 1 <= host["logins"] <= per_host_bound, host["logins"]
        times = host["login_times"]
        assert len(times) == host["logins"]
        gaps = [later - earlier for earlier, later in pairwise(times)]
        assert all(gap >= MIN_LOGIN_INTERVAL - 0.01 for gap in gaps), gaps

    # somebody gave up, and every failed call says why - nothing else, nothing secret
    failures = [call for host in hosts for call in host["calls"] if call[2] is not None]
    assert failures, "neither host declared contention"
    for _, _, error, message in failures:
        assert error == "AbsorbTokenContentionError", (error, message)
        assert REMEDY in message, message
        assert DEFAULT_PASSWORD not in message and DEFAULT_API_KEY not in message
        assert not TOKEN_LIKE.search(message), message
    # once a host declared contention, its calls fail fast and keep failing (no random share)
    for host in hosts:
        calls = sorted(host["calls"], key=lambda call: call[0] + call[1])  # by the time each ended
        first = next((i for i, call in enumerate(calls) if call[2] is not None), None)
        if first is None:
            continue
        after = calls[first + THREADS_PER_HOST :]  # calls in flight at that moment may end either way
        assert all(call[2] is not None for call in after), [c for c in after if c[2] is None][:3]
        assert all(call[1] < 0.5 for call in after), max(call[1] for call in after)
    assert sum(1 for host in hosts for call in host["calls"] if call[2] is None) > 0

    # a new task process on a host that gave up fails at once too, without logging in
    losers = [host["state_dir"] for host in hosts if any(call[2] for call in host["calls"])]
    before = server.stats()["authenticate_calls"]
    (late,) = _run(context, _one_call, [(losers[0],)])
    assert late["error"] == "AbsorbTokenContentionError" and REMEDY in late["message"], late
    assert late["elapsed"] < 1.0
    assert server.stats()["authenticate_calls"] == before


def _after_expiry(barrier, results) -> None:
    """A task process of the one host: logs in or adopts, waits past the token's expiry, calls."""
    hook = AbsorbHook("absorb_default")
    hook.client.get("courses", {"_limit": 1, "_offset": 0})
    barrier.wait(timeout=60)
    issued_at = hook.client.tokens.current().issued_at  # the one shared token of the host
    time.sleep(max(0.0, issued_at + EXPIRED_AFTER - time.time()))
    started = time.monotonic()
    try:
        hook.client.get("courses", {"_limit": 1, "_offset": 1})
        results.put({"error": None, "elapsed": time.monotonic() - started})
    except Exception as exc:
        results.put({"error": f"{type(exc).__name__}: {exc}", "elapsed": time.monotonic() - started})


def test_expired_token_is_refreshed_at_once_by_one_host_sharing_its_store(sandbox_factory, monkeypatch):
    """Ordinary expiry is no take-over: processes sharing one store renew with one login, no wait."""
    server = sandbox_factory("expiry", token_ttl=6)
    monkeypatch.setenv("AIRFLOW_CONN_ABSORB_DEFAULT", server.airflow_connection_json())
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(3)
    outcomes = _run(context, _after_expiry, [(barrier,)] * 3)
    assert [o["error"] for o in outcomes] == [None] * 3
    assert max(o["elapsed"] for o in outcomes) < 2.0, outcomes
    stats = server.stats()
    assert stats["authenticate_calls"] == 2, stats
    assert stats["by_status"].get("401", 0) <= 3, stats
