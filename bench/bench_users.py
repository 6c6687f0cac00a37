"""User lifecycle writes against the sandbox; prints figures, exits non-zero on a missed target.

``bulk_update_users`` on movers and ``deactivate_users`` on leavers, with the sandbox limited to
100 requests/s (``medium`` seed, 10,000 people):

1. requests per user <= 1.1 (one bulk read per 50 users, one PUT per changed user) and users/s >=
   85 % of the limit, no failed user;
2. a re-run of the same changes sends no PUT and reads at most 0.05 requests per user.

Usage: ``python -m bench.bench_users [--quick]`` (``--quick``: 300 users instead of 2,000).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

RATE_LIMIT = 100
REQUESTS_PER_USER_TARGET = 1.1
USERS_RATE_TARGET = 0.85
RERUN_REQUESTS_PER_USER_TARGET = 0.05


def _hook(server):
    data = json.loads(server.airflow_connection_json())
    data["extra"].update(requests_per_second=RATE_LIMIT, max_concurrency=8)
    os.environ["AIRFLOW_CONN_ABSORB_DEFAULT"] = json.dumps(data)
    from absorb_provider.hooks.absorb import AbsorbHook

    return AbsorbHook("absorb_default")


def _measure(label: str, server, run) -> tuple[dict, float, int, int]:
    before = server.stats()
    started = time.monotonic()
    counts = run().counts
    elapsed = time.monotonic() - started
    after = server.stats()
    requests_made = after["total_requests"] - before["total_requests"]
    puts = after["by_route"].get("PUT /users/{userId}", 0) - before["by_route"].get("PUT /users/{userId}", 0)
    print(f"[{label}] {counts} in {elapsed:.1f}s, {requests_made} requests ({puts} PUT)", flush=True)
    return counts, elapsed, requests_made, puts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    count = 300 if args.quick else 2000
    from absorb_sandbox.testing import SandboxServer

    missed = []
    with tempfile.TemporaryDirectory() as workdir:
        from absorb_provider.token_store import STATE_DIR_ENV

        os.environ.setdefault(STATE_DIR_ENV, str(Path(workdir) / "state"))  # a token of its own
        with SandboxServer(
            db_path=Path(workdir) / "users.db", seed="medium", rate_limit=RATE_LIMIT
        ) as server:
            hook = _hook(server)
            people = [
                u["id"] for u in hook.list_users(filter="activeStatus eq 0 and externalId ne null", sort="id")
            ]
            movers, leavers = people[: count * 3 // 4], people[count * 3 // 4 : count]
            changes = [
                (user, {"jobTitle": f"Bench title {n % 7}", "location": "Berlin"})
                for n, user in enumerate(movers)
            ]
            hook.authenticate()
            time.sleep(1.5)  # the sandbox's bucket full again after the listing

            moved, moved_s, moved_requests, _ = _measure(
                "movers", server, lambda: hook.bulk_update_users(changes)
            )
            left, left_s, left_requests, _ = _measure(
                "leavers", server, lambda: hook.deactivate_users([(u, "2026-11-15") for u in leavers])
            )
            users_rate = count / (moved_s + left_s)
            per_user = (moved_requests + left_requests) / count
            failed = moved.get("failed", 0) + left.get("failed", 0)
            ok = (
                per_user <= REQUESTS_PER_USER_TARGET
                and users_rate >= USERS_RATE_TARGET * RATE_LIMIT
                and not failed
            )
            print(
                f"[write] {count} users: {users_rate:.1f} users/s ({100 * users_rate / RATE_LIMIT:.0f}% of the "
                f"{RATE_LIMIT}/s limit; target >= {100 * USERS_RATE_TARGET:.0f}%), {per_user:.2f} requests/user "
                f"(target <= {REQUESTS_PER_USER_TARGET}), {failed} failed -> {'OK' if ok else 'MISSED'}",
                flush=True,
            )
            if not ok:
                missed.append("write")

            again, _, again_requests, again_puts = _measure(
                "rerun", server, lambda: hook.bulk_update_users(changes)
            )
            rerun_per_user = again_requests / len(changes)
            ok = again_puts == 0 and rerun_per_user <= RERUN_REQUESTS_PER_USER_TARGET
            ok = ok and again.get("unchanged") == len(changes)
            print(
                f"[rerun] {len(changes)} unchanged users: {again_puts} PUT, {rerun_per_user:.3f} requests/user "
                f"(target 0 PUT, <= {RERUN_REQUESTS_PER_USER_TARGET}) -> {'OK' if ok else 'MISSED'}",
                flush=True,
            )
            if not ok:
                missed.append("rerun")
            hook.close()
    print(f"targets missed: {', '.join(missed) or 'none'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
