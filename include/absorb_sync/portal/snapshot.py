"""``absorb-portal snapshot``: a read-only copy of a portal (Parquet) to rehearse the first sync on.

    absorb-portal snapshot --conn-id absorb_default --out var/rehearsal/snapshot [--pseudonymise]

Reads departments, users, courses and every course's enrollments (plus the sessions, chapters
and lessons a few enrollments per course show) with the provider's paged reads, GET only. An
interrupted snapshot resumes when the same command runs again; ``--fresh`` starts over. The
files and ``manifest.json`` (counts, checksums) are described in docs/snapshot-format.md;
``absorb-sandbox serve --from-snapshot DIR`` serves them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ENV_CONN_ID = "absorb_portal_from_env"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "snapshot",
        help="read-only snapshot of a portal (Parquet) for a rehearsal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--conn-id",
        default=None,
        help="the Airflow connection of the portal (AIRFLOW_CONN_* or the metadata DB; default absorb_default)",
    )
    source.add_argument(
        "--from-env",
        action="store_true",
        help="no Airflow connection: ABSORB_BASE_URL or ABSORB_REGION, ABSORB_USERNAME, ABSORB_PASSWORD, "
        "ABSORB_PRIVATE_KEY",
    )
    parser.add_argument("--out", required=True, type=Path, help="the snapshot folder")
    parser.add_argument(
        "--pseudonymise",
        action="store_true",
        help="replace names, usernames and emails by tags derived from user ids (employee ids kept)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="discard a finished or unfinished snapshot in --out"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="courses read at once (default 4)")
    parser.add_argument(
        "--catalogue-sample",
        type=int,
        default=3,
        help="enrollments per course whose sessions/chapters/lessons are read (default 3; 0: none)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from absorb_sync.portal.snapshot_read import Progress, SnapshotError, SnapshotOptions, take_snapshot

    if args.concurrency < 1 or args.catalogue_sample < 0:
        print(
            "absorb-portal snapshot: --concurrency must be >= 1 and --catalogue-sample >= 0", file=sys.stderr
        )
        return 2
    options = SnapshotOptions(
        out=args.out,
        pseudonymise=args.pseudonymise,
        concurrency=args.concurrency,
        catalogue_sample=args.catalogue_sample,
        fresh=args.fresh,
    )
    stop = _stop_on_interrupt()
    try:
        hook = _hook(args)
        print(
            f"snapshot of {hook.settings.base_url} as {hook.settings.username} into {args.out}",
            file=sys.stderr,
        )
        manifest = take_snapshot(hook, options, Progress(stop=stop))
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command again to resume ({args.out})", file=sys.stderr)
        return 130
    except (SnapshotError, ValueError) as error:
        print(f"absorb-portal snapshot: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # the provider's errors (auth, retries exhausted, short reads)
        print(
            f"absorb-portal snapshot: {type(error).__name__}: {error}\n"
            f"what was read is kept: run the same command again to resume ({args.out})",
            file=sys.stderr,
        )
        return 1
    summary = {key: manifest.get(key) for key in ("counts", "checksum", "seconds_this_run", "pseudonymised")}
    summary["already_complete"] = bool(manifest.get("already_complete"))
    summary["out"] = str(args.out)
    print(json.dumps(summary, indent=2))
    return 0


def _stop_on_interrupt() -> Any:
    """Ctrl-C raises KeyboardInterrupt as usual and also sets the returned event, which the
    progress line checks on every page: a KeyboardInterrupt that lands inside a finaliser (where
    Python only prints it) cannot let the snapshot run on to the end."""
    import signal
    import threading

    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop

    def interrupt(signum: int, frame: Any) -> None:
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    return stop


def _hook(args: argparse.Namespace):
    """The provider's hook on the named connection, or on one built from ``ABSORB_*``."""
    from absorb_provider.hooks.absorb import AbsorbHook

    conn_id = args.conn_id or "absorb_default"
    if args.from_env:
        os.environ[f"AIRFLOW_CONN_{ENV_CONN_ID.upper()}"] = _env_connection()
        conn_id = ENV_CONN_ID
    hook = AbsorbHook(absorb_conn_id=conn_id)
    try:
        hook.settings  # noqa: B018 - resolve now, so a missing connection is one clear line
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(
            f"cannot use the Absorb connection {conn_id!r}: {type(error).__name__}: {error}"
        ) from None
    return hook


def _env_connection() -> str:
    missing = [
        name
        for name in ("ABSORB_USERNAME", "ABSORB_PASSWORD", "ABSORB_PRIVATE_KEY")
        if not os.environ.get(name)
    ]
    region = os.environ.get("ABSORB_REGION", "").strip()
    base_url = os.environ.get("ABSORB_BASE_URL", "").strip().rstrip("/")
    if not (region or base_url):
        missing.append("ABSORB_BASE_URL or ABSORB_REGION")
    if missing:
        raise ValueError(f"--from-env needs {', '.join(missing)}")
    extra = {"private_key": os.environ["ABSORB_PRIVATE_KEY"]}
    if region:
        extra["region"] = region
    return json.dumps(
        {
            "conn_type": "absorb",
            "host": base_url or None,
            "login": os.environ["ABSORB_USERNAME"],
            "password": os.environ["ABSORB_PASSWORD"],
            "extra": extra,
        }
    )
