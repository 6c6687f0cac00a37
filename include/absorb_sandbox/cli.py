"""``absorb-sandbox``: serve the offline Absorb API, seed a database, or export an HR feed.

    absorb-sandbox serve --host 127.0.0.1 --port 8765 --db absorb.db [--seed none|small|medium|large]
        [--api-key GUID --username U --password P] [--rate-limit RPS] [--faults SPEC] [--token-ttl SECONDS]
    absorb-sandbox seed --db absorb.db --seed large
    absorb-sandbox hr-feed --db absorb.db --out feed.csv [--changes N] [--seed S]

Fault SPEC: ``seed=7,error=0.1,429=0.05,drop=0.02,latency=0.05:200ms,lost=0.1,lost5xx=0.1``
(see absorb_sandbox.faults).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from absorb_sandbox.testing import DEFAULT_API_KEY, DEFAULT_PASSWORD, DEFAULT_USERNAME

FAULT_HELP = (
    "fault injection spec, e.g. 'seed=7,error=0.1,429=0.05,drop=0.02,latency=0.05:200ms': "
    "error = probability of 500/502/503, 429 = probability of 429, drop = close the connection "
    "without answering, latency = PROB:DURATION; on API writes only: lost = apply, then close "
    "without answering, lost5xx = apply, then answer 502/503, writelatency = PROB:DURATION; "
    "same seed, same sequence"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="absorb-sandbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the Absorb Integration API v2 simulator")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed at start-up)")
    serve.add_argument(
        "--db", default=":memory:", help="SQLite file (WAL); ':memory:' for a throw-away store"
    )
    serve.add_argument(
        "--seed",
        default="small",
        choices=["none", "small", "medium", "large"],
        help="organisation to seed when the db is empty (an existing db is never re-seeded)",
    )
    serve.add_argument("--api-key", default=DEFAULT_API_KEY, help="x-api-key / privateKey GUID")
    serve.add_argument("--username", default=DEFAULT_USERNAME)
    serve.add_argument("--password", default=DEFAULT_PASSWORD)
    serve.add_argument(
        "--rate-limit", type=float, default=None, help="requests/s per API key (token bucket); 429 above"
    )
    serve.add_argument("--faults", default=None, help=FAULT_HELP)
    serve.add_argument(
        "--token-ttl", type=float, default=4 * 3600, help="token lifetime in seconds (default 4 h)"
    )
    serve.add_argument("--log-level", default="warning")

    seed = commands.add_parser("seed", help="create and seed a database without serving it")
    seed.add_argument("--db", required=True)
    seed.add_argument("--seed", default="small", choices=["none", "small", "medium", "large"])
    seed.add_argument("--username", default=DEFAULT_USERNAME)

    feed = commands.add_parser("hr-feed", help="export the people as an HR feed CSV (reads the db read-only)")
    feed.add_argument("--db", required=True)
    feed.add_argument("--out", required=True)
    feed.add_argument("--changes", type=int, default=0, help="number of hires/movers/leavers to mix in")
    feed.add_argument("--seed", type=int, default=0, help="RNG seed for the changes")
    return parser


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from absorb_sandbox.app import SandboxConfig, create_app, open_store
    from absorb_sandbox.faults import FaultSpecError, parse_spec
    from absorb_sandbox.server import DroppableHttpToolsProtocol

    try:
        parse_spec(args.faults)
    except FaultSpecError as exc:
        print(f"absorb-sandbox: invalid --faults: {exc}", file=sys.stderr)
        return 2
    config = SandboxConfig(
        db_path=args.db,
        seed=args.seed,
        api_key=args.api_key,
        username=args.username,
        password=args.password,
        rate_limit=args.rate_limit,
        faults=args.faults,
        token_ttl=args.token_ttl,
    )
    started = time.perf_counter()
    conn = open_store(config)
    load_seconds = time.perf_counter() - started
    app = create_app(config, conn)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"absorb-sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    base_url = f"http://{args.host}:{port}"
    print(
        json.dumps(
            {
                "base_url": base_url,
                "api_key": args.api_key,
                "username": args.username,
                "password": args.password,
                "db": args.db,
                "seed": args.seed,
                "store_ready_seconds": round(load_seconds, 2),
            }
        ),
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=DroppableHttpToolsProtocol,
            loop="uvloop",
            log_level=args.log_level,
            access_log=False,
            lifespan="off",
        )
    )
    server.run(sockets=[sock])
    return 0


def seed_only(args: argparse.Namespace) -> int:
    from absorb_sandbox import seed as seeding
    from absorb_sandbox import store

    conn = store.connect(args.db)
    store.create_schema(conn)
    if store.is_seeded(conn):
        print(f"{args.db} already holds a seeded organisation; not re-seeding", file=sys.stderr)
        return 1
    started = time.perf_counter()
    counts = seeding.seed_database(conn, args.seed, api_username=args.username)
    print(
        json.dumps({"seed": args.seed, "seconds": round(time.perf_counter() - started, 2), "counts": counts})
    )
    return 0


def hr_feed(args: argparse.Namespace) -> int:
    from absorb_sandbox.hr_feed import export_hr_feed

    summary = export_hr_feed(args.db, args.out, changes=args.changes, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"serve": serve, "seed": seed_only, "hr-feed": hr_feed}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
