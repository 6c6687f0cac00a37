"""Sandbox benchmark: seeding ``large``, 1000-row enrollment pages, and authenticated GETs per second.

Run as ``python -m bench.bench_sandbox``. Targets: seeding < 60 s, a 1000-row page of course
enrollments < 250 ms (median and p95), >= 300 simple authenticated GETs/s. Prints the figures and
exits non-zero when a target is missed. ``--seed medium`` gives a quicker, smaller run.

Then deep paging: the largest course walked page by page (``--page-size``, default 1000) with
``--paging offset`` (COUNT + LIMIT/OFFSET for every page: the sandbox before keyset paging) and
``keyset`` (the default), each with ``--workers`` 1 and 2: page 0 and deep-page latency of one
walk, pages/s of one walk and of ``--walkers`` concurrent walks, and GET /users/{id} per second
per worker count. ``--no-paging`` skips this part.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from absorb_sandbox import seed as seeding
from absorb_sandbox import store
from absorb_sandbox.testing import DEFAULT_USERNAME, SandboxServer

SEED_TARGET_S = 60.0
PAGE_TARGET_MS = 250.0
RATE_TARGET = 300.0


def seed_db(path: Path, size: str) -> float:
    conn = store.connect(path)
    started, cpu_started = time.perf_counter(), time.process_time()
    counts = seeding.seed_database(conn, size, api_username=DEFAULT_USERNAME)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    conn.close()
    print(
        f"seeded {size}: {counts} in {elapsed:.1f} s wall, {cpu:.1f} s CPU (target < {SEED_TARGET_S:.0f} s)",
        flush=True,
    )
    return elapsed


def authenticate(server: SandboxServer, client: httpx.Client) -> str:
    response = client.post(
        "/authenticate",
        headers=server.headers(),
        json={"username": server.username, "password": server.password, "privateKey": server.api_key},
    )
    response.raise_for_status()
    return response.json()


def page_latencies(server: SandboxServer, token: str, pages: int = 40) -> list[float]:
    """Wall time of 1000-row pages of course enrollments across the biggest courses (ms)."""
    timings = []
    with httpx.Client(base_url=server.base_url, headers=server.headers(token), timeout=60) as client:
        courses = client.get("/courses", params={"_limit": 1000}).json()["courses"]
        sized = []
        for course in courses:
            total = client.get(f"/courses/{course['id']}/enrollments", params={"_limit": 1}).json()[
                "totalItems"
            ]
            if total >= 1000:
                sized.append((course["id"], total))
        rng = random.Random(1)
        for _ in range(pages):
            course_id, total = rng.choice(sized)
            page = rng.randrange(total // 1000)
            started = time.perf_counter()
            response = client.get(
                f"/courses/{course_id}/enrollments", params={"_limit": 1000, "_offset": page}
            )
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and response.json()["returnedItems"] == 1000, response.text[
                :200
            ]
    return timings


async def _raw_get_loop(host: str, port: int, requests: list[bytes], deadline: float) -> tuple[int, int]:
    """One keep-alive connection sending GETs back to back; returns (ok, errors).

    A bare asyncio socket client: on this 2-core machine the client shares the CPU with the
    server, and a full HTTP client library would measure itself more than the server."""
    reader, writer = await asyncio.open_connection(host, port)
    ok = errors = 0
    index = 0
    try:
        while time.perf_counter() < deadline:
            writer.write(requests[index % len(requests)])
            index += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if status == 200:
                ok += 1
            else:
                errors += 1
    finally:
        writer.close()
    return ok, errors


async def get_rate(
    server: SandboxServer, token: str, user_ids: list[str], seconds: float, concurrency: int
) -> tuple[float, int]:
    """Authenticated ``GET /users/{id}`` per second over ``concurrency`` keep-alive connections."""
    host, port = server.host, server.port
    requests = [
        (
            f"GET /users/{user_id} HTTP/1.1\r\nHost: {host}:{port}\r\nx-api-key: {server.api_key}\r\n"
            f"x-api-version: 2\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        for user_id in user_ids
    ]
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            _raw_get_loop(host, port, requests[i::concurrency] or requests, started + seconds)
            for i in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results)


async def _walk(host: str, port: int, path: str, headers: str, pages: int, size: int) -> list[float]:
    """One keep-alive connection reading pages 0..pages-1 in order; each page's latency (ms)."""
    reader, writer = await asyncio.open_connection(host, port)
    timings = []
    try:
        for page in range(pages):
            started = time.perf_counter()
            writer.write(
                f"GET {path}?_limit={size}&_offset={page} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200":
                raise RuntimeError(f"page {page}: {head[:200]!r}")
            length = next(
                int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"
            )
            await reader.readexactly(length)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    return timings


async def walks(server: SandboxServer, token: str, path: str, pages: int, size: int, walkers: int):
    headers = f"x-api-key: {server.api_key}\r\nx-api-version: 2\r\nAuthorization: Bearer {token}\r\n"
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_walk(server.host, server.port, path, headers, pages, size) for _ in range(walkers))
    )
    return results, time.perf_counter() - started


def largest_course(server: SandboxServer, token: str) -> tuple[str, int]:
    with httpx.Client(base_url=server.base_url, headers=server.headers(token), timeout=120) as client:
        courses = client.get("/courses", params={"_limit": 1000}).json()["courses"]
        totals = {
            c["id"]: client.get(f"/courses/{c['id']}/enrollments", params={"_limit": 1}).json()["totalItems"]
            for c in courses
        }
    course = max(totals, key=totals.get)
    return course, totals[course]


def deep_paging(db: Path, size: str, page_size: int, walkers: int, seconds: float) -> None:
    """Walks the largest course with each paging mode and worker count; prints one line each."""
    print(f"deep paging, seed {size}, page size {page_size}, {walkers} concurrent walkers:", flush=True)
    for paging in ("offset", "keyset"):
        for workers in (1, 2):
            with SandboxServer(db_path=db, seed=size, workers=workers, paging=paging) as server:
                with httpx.Client(base_url=server.base_url) as client:
                    token = authenticate(server, client)
                course, total = largest_course(server, token)
                path = f"/courses/{course}/enrollments"
                pages = -(-total // page_size)
                with httpx.Client(base_url=server.base_url) as client:
                    # Authenticating writes its token: every cache (the count the scan above
                    # made) is dropped, so page 0 below pays for its COUNT like a first visit.
                    token = authenticate(server, client)
                (single,), single_wall = asyncio.run(walks(server, token, path, pages, page_size, 1))
                multi, multi_wall = asyncio.run(walks(server, token, path, pages, page_size, walkers))
                deep = single[-min(10, pages - 1) :]
                line = (
                    f"  {paging:6} workers={workers}: {total} rows, {pages} pages; page 0 {single[0]:.0f} ms, "
                    f"deep pages {statistics.mean(deep):.0f} ms (last {len(deep)}); one walk "
                    f"{pages / single_wall:.0f} pages/s; {walkers} walks {walkers * pages / multi_wall:.0f} pages/s "
                    f"(p95 {percentile([t for w in multi for t in w], 0.95):.0f} ms)"
                )
                if paging == "keyset":
                    users = httpx.get(
                        f"{server.base_url}/users", params={"_limit": 1000}, headers=server.headers(token)
                    ).json()["users"]
                    rate, errors = asyncio.run(get_rate(server, token, [u["id"] for u in users], seconds, 8))
                    line += f"; GET /users/{{id}} {rate:.0f}/s ({errors} errors)"
                print(line, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", default="large", choices=["small", "medium", "large"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--page-size", type=int, default=1000, help="deep paging: rows per page")
    parser.add_argument("--walkers", type=int, default=4, help="deep paging: concurrent walks")
    parser.add_argument("--no-paging", action="store_true", help="skip the deep paging comparison")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}", flush=True)
    missed = []
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        db = Path(tmp) / "absorb.db"
        seed_seconds = seed_db(db, args.seed)
        if args.seed == "large" and seed_seconds > SEED_TARGET_S:
            missed.append("seeding")
        with (
            SandboxServer(db_path=db, seed=args.seed) as server,
            httpx.Client(base_url=server.base_url) as client,
        ):
            token = authenticate(server, client)
            timings = page_latencies(server, token)
            median, p95 = statistics.median(timings), percentile(timings, 0.95)
            print(
                f"1000-row course enrollment page: median {median:.0f} ms, p95 {p95:.0f} ms over {len(timings)} "
                f"pages (target < {PAGE_TARGET_MS:.0f} ms)",
                flush=True,
            )
            if p95 > PAGE_TARGET_MS:
                missed.append("page latency")
            users = client.get("/users", params={"_limit": 1000}, headers=server.headers(token)).json()[
                "users"
            ]
            rate, errors = asyncio.run(
                get_rate(server, token, [u["id"] for u in users], args.seconds, args.concurrency)
            )
            print(
                f"GET /users/{{id}}: {rate:.0f} requests/s over {args.seconds:.0f} s with {args.concurrency} "
                f"connections, {errors} errors (target >= {RATE_TARGET:.0f}/s)",
                flush=True,
            )
            if rate < RATE_TARGET or errors:
                missed.append("GET rate")
        if not args.no_paging:
            deep_paging(db, args.seed, args.page_size, args.walkers, min(args.seconds, 3.0))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"targets missed: {', '.join(missed) or 'none'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
