"""Rate limiting (429 + Retry-After) and fault injection (repeatable by seed, never on /_sandbox)."""

from __future__ import annotations

import httpx
import pytest
from sandbox_helpers import assert_error, authenticate, raw_client


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


@pytest.mark.parametrize("spec", ["error=2", "bogus=0.1", "latency=0.1:fast", "error=0.6,drop=0.6", "seed=x"])
def test_bad_fault_specs_are_refused(sandbox, spec):
    with raw_client(sandbox) as http:
        assert_error(http.post("/_sandbox/faults", json={"spec": spec}), 422)
