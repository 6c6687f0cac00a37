"""``absorb-sandbox``: serve the offline Absorb API, seed a database, or export an HR feed.

    absorb-sandbox serve --host 127.0.0.1 --port 8765 --db absorb.db [--seed none|small|medium|large]
        [--api-key GUID --username U --password P] [--rate-limit RPS] [--faults SPEC] [--token-ttl SECONDS]
        [--workers N] [--paging keyset|offset] [--from-snapshot DIR]
    absorb-sandbox seed --db absorb.db --seed large
    absorb-sandbox hr-feed --db absorb.db --out feed.csv [--changes N] [--seed S]

Fault SPEC: ``seed=7,error=0.1,429=0.05,drop=0.02,latency=0.05:200ms,lost=0.1,lost5xx=0.1``
(see absorb_sandbox.faults).

``--workers N`` serves from N processes on the one SQLite (WAL) database, each with its own
listening socket on the same port (SO_REUSEPORT: the kernel spreads connections over them). The
rate limit, the one-live-token-per-user rule, ``/_sandbox/stats`` and the faults hold across the
processes (absorb_sandbox.shared); fault sequences are repeatable per process. A ``:memory:``
database cannot be shared: more than one worker needs ``--db FILE``.

``--paging keyset`` (default) serves the page after the one a process served last as a keyset
seek and caches ``totalItems`` until the next write; ``--paging offset`` is the plain
``COUNT(*)`` + ``LIMIT/OFFSET`` for every page. Both answer the same bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time

from absorb_sandbox.testing import DEFAULT_API_KEY, DEFAULT_PASSWORD, DEFAULT_USERNAME

FAULT_HELP = (
    "fault injection spec, e.g. 'seed=7,error=0.1,429=0.05,drop=0.02,latency=0.05:200ms': "
    "error = probability of 500/502/503, 429 = probability of 429, drop = close the connection "
    "without answering, latency = PROB:DURATION; on API writes only: lost = apply, then close "
    "without answering, lost5xx = apply, then answer 502/503, writelatency = PROB:DURATION; "
    "rename = OLD:NEW serves field OLD as NEW in every GET answer (repeatable); "
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
    serve.add_argument(
        "--from-snapshot",
        default=None,
        metavar="DIR",
        help="serve a portal snapshot (absorb-portal snapshot; docs/snapshot-format.md) instead of a seed: "
        "loaded into --db when it is empty, refused when --db holds anything else",
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
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the database, rate limit, tokens, stats and faults (default 1)",
    )
    serve.add_argument(
        "--paging",
        default="keyset",
        choices=["keyset", "offset"],
        help="keyset: seek after the page served before and cache totalItems until a write (default); "
        "offset: COUNT(*) and LIMIT/OFFSET for every page",
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
    from absorb_sandbox.app import SandboxConfig, open_state, open_store
    from absorb_sandbox.faults import FaultSpecError, parse_spec

    try:
        parse_spec(args.faults)
    except FaultSpecError as exc:
        print(f"absorb-sandbox: invalid --faults: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1 or (args.workers > 1 and args.db == ":memory:"):
        print("absorb-sandbox: --workers must be 1, or more with a --db file", file=sys.stderr)
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
        paging=args.paging,
    )
    started = time.perf_counter()
    try:
        conn = _open_snapshot(args) if args.from_snapshot else open_store(config)
    except ValueError as exc:  # SnapshotLoadError: names the file or count at fault
        print(f"absorb-sandbox: cannot serve {args.from_snapshot}: {exc}", file=sys.stderr)
        return 2
    state = open_state(config)
    load_seconds = time.perf_counter() - started
    if args.workers > 1:
        conn.close()  # no SQLite connection may cross a fork
        state.close()
        return _serve_workers(args, config, load_seconds)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"absorb-sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    _print_banner(args, sock.getsockname()[1], load_seconds)
    _run_uvicorn(args, config, conn, state, sock)
    return 0


def _open_snapshot(args: argparse.Namespace):
    from absorb_sandbox.snapshot_load import open_snapshot_store

    return open_snapshot_store(args.db, args.from_snapshot, args.username)


def _print_banner(args: argparse.Namespace, port: int, load_seconds: float) -> None:
    print(
        json.dumps(
            {
                "base_url": f"http://{args.host}:{port}",
                "api_key": args.api_key,
                "username": args.username,
                "password": args.password,
                "db": args.db,
                "seed": "snapshot" if args.from_snapshot else args.seed,
                "snapshot": args.from_snapshot,
                "workers": args.workers,
                "paging": args.paging,
                "store_ready_seconds": round(load_seconds, 2),
            }
        ),
        flush=True,
    )


def _run_uvicorn(args, config, conn, state, sock: socket.socket) -> None:
    import uvicorn

    from absorb_sandbox.app import create_app
    from absorb_sandbox.server import DroppableHttpToolsProtocol

    app = create_app(config, conn, state)
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


def _reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_workers(args: argparse.Namespace, config, load_seconds: float) -> int:
    """Pre-fork: the parent reserves the port (bound, never listening), forks the workers,
    prints the banner once all of them listen, forwards SIGTERM/SIGINT and waits. Each worker
    opens its own connections and app and listens on its own SO_REUSEPORT socket."""
    try:
        reserved = _reuseport_socket(args.host, args.port)
    except OSError as exc:
        print(f"absorb-sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    port = reserved.getsockname()[1]
    ready_read, ready_write = os.pipe()
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(ready_read)
                reserved.close()
                code = _worker(args, config, port, ready_write)
            except BaseException:  # report and leave, whatever it was
                import traceback

                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    os.close(ready_write)
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready = b""
    while len(ready) < args.workers:
        chunk = os.read(ready_read, args.workers)
        if not chunk:  # every worker closed the pipe: one of them failed to start
            stop(signal.SIGTERM, None)
            break
        ready += chunk
    os.close(ready_read)
    if len(ready) == args.workers:
        _print_banner(args, port, load_seconds)
    code = 0 if len(ready) == args.workers else 1
    remaining = set(children)
    while remaining:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        remaining.discard(pid)
        if not stopping:  # a worker died on its own: take the others down too
            code = code or os.waitstatus_to_exitcode(status) or 1
            stop(signal.SIGTERM, None)
    reserved.close()
    return code


def _worker(args: argparse.Namespace, config, port: int, ready_write: int) -> int:
    import ctypes

    from absorb_sandbox import store
    from absorb_sandbox.shared import SharedState, state_path

    with contextlib.suppress(OSError):  # end with the parent, even when it is killed
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    conn = store.connect(config.db_path)
    state = SharedState(state_path(config.db_path))
    sock = _reuseport_socket(args.host, port)
    sock.listen(2048)
    os.write(ready_write, b"1")
    os.close(ready_write)
    _run_uvicorn(args, config, conn, state, sock)
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
