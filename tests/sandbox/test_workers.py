"""``serve --workers 2``: tokens, rate limit, stats and faults hold across the server processes.

Every request here goes over a new connection, so the kernel spreads them over both workers
(SO_REUSEPORT); ``/_sandbox/stats`` ``by_worker`` shows that both really answered.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from absorb_sandbox.testing import SandboxServer
from sandbox_helpers import assert_error, authenticate

REQUESTS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = SandboxServer(db_path=tmp_path_factory.mktemp("workers") / "absorb.db", seed="small", workers=2)
    server.start()
    yield server
    server.stop()


def fresh_get(server, path: str, token: str | None) -> httpx.Response:
    """One GET on a connection of its own."""
    return httpx.get(f"{server.base_url}{path}", headers=server.headers(token), timeout=30)


def test_two_worker_processes_answer(server):
    workers = {httpx.get(f"{server.base_url}/_sandbox/health").json()["worker"] for _ in range(REQUESTS)}
    assert len(workers) == 2


def test_a_new_token_replaces_the_old_one_in_every_worker(server):
    old = authenticate(server)
    assert fresh_get(server, "/departments", old).status_code == 200
    new = authenticate(server)
    server.reset_stats()
    old_answers = [fresh_get(server, "/departments", old) for _ in range(REQUESTS)]
    new_answers = [fresh_get(server, "/departments", new) for _ in range(REQUESTS)]
    for answer in old_answers:
        assert_error(answer, 401, contains="token")
    assert {a.status_code for a in new_answers} == {200}
    # The stats are global: every request counted once, whichever process answered it.
    stats = server.stats()
    assert stats["total_requests"] == 2 * REQUESTS
    assert stats["by_status"] == {"401": REQUESTS, "200": REQUESTS}
    assert stats["by_route"] == {"GET /departments": 2 * REQUESTS}
    assert len(stats["by_worker"]) == 2 and sum(stats["by_worker"].values()) == 2 * REQUESTS
    assert min(stats["by_worker"].values()) > 0


def test_faults_set_through_one_worker_apply_in_all(server):
    token = authenticate(server)
    try:
        server.set_faults("seed=3,503=1.0")
        server.reset_stats()
        answers = [fresh_get(server, "/departments", token).status_code for _ in range(REQUESTS)]
        assert answers == [503] * REQUESTS
        stats = server.stats()
        assert stats["injected"] == {"error": REQUESTS} and len(stats["by_worker"]) == 2
        assert server._admin("GET", "faults")["status_probabilities"] == {"503": 1.0}
    finally:
        server.set_faults("off")
    assert {fresh_get(server, "/departments", token).status_code for _ in range(REQUESTS)} == {200}


def test_the_rate_limit_holds_across_workers(tmp_path):
    rate = 5
    with SandboxServer(db_path=tmp_path / "limited.db", seed="none", rate_limit=rate, workers=2) as server:
        token = authenticate(server)
        time.sleep(1.5)  # a full bucket again
        server.reset_stats()
        started = time.monotonic()
        # A burst from several threads: on a loaded machine, one request after another can be slow
        # enough for the bucket to refill between them, and then nothing is ever limited.
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: fresh_get(server, "/departments", token), range(REQUESTS)))
        elapsed = time.monotonic() - started
        stats = server.stats()
    granted = [a for a in answers if a.status_code == 200]
    limited = [a for a in answers if a.status_code == 429]
    assert len(granted) + len(limited) == REQUESTS
    # One bucket for both processes: the burst plus what refilled during the run, not twice that.
    assert rate <= len(granted) <= rate + rate * elapsed + 1, (len(granted), elapsed)
    assert all(int(a.headers["Retry-After"]) >= 1 for a in limited)
    assert len(stats["by_worker"]) == 2 and min(stats["by_worker"].values()) >= rate
    assert limited and stats["by_status"].get("429", 0) == len(limited)


def test_more_than_one_worker_needs_a_database_file():
    with pytest.raises(RuntimeError, match="did not start"):
        SandboxServer(db_path=":memory:", seed="none", workers=2).start()
