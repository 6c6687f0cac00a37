"""``absorb-portal check``: the read-only readiness check of a portal, from a shell (no scheduler).

    absorb-portal check --conn-id absorb_default --feed hr_feed.csv [--mapping workday]
                        [--rules include/rules/enrollment_rules.yaml] [--output DIR]

The connection is Airflow's (``AIRFLOW_CONN_<ID>`` in the environment, a secrets backend, or the
metadata database). Only GETs and ``/authenticate`` are sent. Writes ``readiness.json``,
``readiness.html`` and ``first_sync_plan.csv`` and exits 0 for go, 1 for no-go. The same runs as
the ``absorb_portal_check`` DAG (:func:`check_portal`).
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, date, datetime
from typing import Any

DAG_ID = "absorb_portal_check"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="read-only readiness check of a portal: connection, response shapes, data fit",
        description=(
            "Checks an Absorb portal before the first sync, with GET calls and /authenticate only, "
            "and writes readiness.json, readiness.html and first_sync_plan.csv. Exit 0: go, 1: no-go."
        ),
    )
    parser.add_argument(
        "--conn-id", default="absorb_default", help="Airflow connection id (default absorb_default)"
    )
    parser.add_argument(
        "--feed", dest="feed_path", help="the HR feed (path or URL); without it, people are not compared"
    )
    parser.add_argument(
        "--mapping",
        dest="column_mapping",
        default=None,
        help="column mapping: canonical (default), workday, bamboohr, adp, or a mapping YAML path",
    )
    parser.add_argument(
        "--rules", dest="rules_path", default=None, help="rules file (default: the project's rules)"
    )
    parser.add_argument(
        "--output", help="folder for the report (default: <output root>/absorb_portal_check/cli__<time>)"
    )
    parser.add_argument(
        "--sample-size", type=int, default=100, help="rows per list in the shape checks (1-1000)"
    )
    parser.add_argument(
        "--watch-seconds",
        type=float,
        default=0.0,
        help="keep reading for this long after the checks, to catch another client taking the token over",
    )
    parser.add_argument(
        "--today", type=date.fromisoformat, default=None, help="plan as of this date (YYYY-MM-DD)"
    )
    parser.add_argument("--verbose", action="store_true", help="also log the feed gate's checks one by one")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from absorb_sync.jobs.runtime import DEFAULT_RULES_PATH, output_root, storage_path

    if not 1 <= args.sample_size <= 1000:
        raise SystemExit("absorb-portal check: --sample-size must be between 1 and 1000")
    if not args.verbose:  # the feed gate logs a line per check: right for a task log, noise here
        logging.getLogger("absorb_sync.gates").setLevel(logging.WARNING)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = storage_path(args.output) if args.output else output_root() / DAG_ID / f"cli__{stamp}"
    inputs = _inputs(
        feed_path=args.feed_path,
        column_mapping=args.column_mapping,
        rules_path=args.rules_path or str(DEFAULT_RULES_PATH),
        today=args.today,
        sample_size=args.sample_size,
        watch_seconds=args.watch_seconds,
    )
    readiness, files = check_portal(
        args.conn_id, inputs, folder, progress=lambda m: print(f"… {m}", flush=True)
    )
    print(summary_text(readiness))
    for path in files.values():
        print(f"  {path}")
    return 0 if readiness.verdict == "go" else 1


def _inputs(**values: Any):
    from absorb_sync.portal.readiness import Inputs

    return Inputs(**values)


def check_portal(conn_id: str, inputs: Any, folder: Any, progress: Any = None) -> tuple[Any, dict[str, str]]:
    """Runs the check with the connection ``conn_id`` and writes the report into ``folder``."""
    from absorb_sync.portal.readiness import run_check
    from absorb_sync.portal.readiness_report import write_report

    hook = make_hook(conn_id)
    try:
        readiness = run_check(hook, inputs, progress)
        files = write_report(readiness, folder, secrets=_secrets(hook))
    finally:
        hook.close()
    return readiness, files


def make_hook(conn_id: str) -> Any:
    """The hook for ``conn_id``. Outside a task the Task SDK sees only the environment and secrets
    backends, so a connection kept in Airflow's metadata database is read from there (a shell with
    the deployment's ``AIRFLOW_HOME`` is enough: no scheduler or API server needed)."""
    from absorb_provider.hooks.absorb import AbsorbHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    class StoredConnectionHook(AbsorbHook):
        """An AbsorbHook on a connection already read from the metadata database."""

        def __init__(self, connection: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._connection = connection

        def get_connection(self, conn_id: str) -> Any:  # type: ignore[override]
            return self._connection

    hook = AbsorbHook(absorb_conn_id=conn_id)
    try:
        hook.get_connection(conn_id)
    except AirflowNotFoundException:
        connection = _metadata_connection(conn_id)
        if connection is not None:
            hook = StoredConnectionHook(connection, absorb_conn_id=conn_id)
    return hook


def _metadata_connection(conn_id: str) -> Any:
    try:
        from airflow.models.connection import Connection

        return Connection.get_connection_from_secrets(conn_id)
    except Exception:  # not in the metadata database either: the hook reports it as not found
        return None


def _secrets(hook: Any) -> list[str]:
    """What must never reach the report: the password, the private key, the live token."""
    found = []
    try:
        settings = hook.settings
    except Exception:  # no settings: nothing of theirs can be in the report
        return found
    found += [settings.password or "", settings.private_key or ""]
    memory = getattr(hook.client.tokens, "_memory", None) if "client" in hook.__dict__ else None
    if memory is not None:
        found.append(memory.value)
    return found


def summary_text(readiness: Any) -> str:
    """One line per check and the verdict, for a terminal or a task log."""
    marks = {"pass": "ok  ", "warn": "look", "fail": "FAIL", "skip": "skip"}
    lines = [
        f"Absorb portal readiness of {readiness.portal.get('base_url', '?')}: {readiness.verdict.upper()}"
    ]
    for check in readiness.checks:
        lines.append(
            f"  [{marks.get(check.verdict, check.verdict)}] {check.section} · {check.name}: {check.message}"
        )
    return "\n".join(lines)


def run_in_task(run: Any) -> dict:
    """The DAG's task: the check with the run's Params into its run folder; fails on no-go.

    Returns a small summary for XCom (the verdict, counts, failed checks, the report's paths)."""
    import logging

    from airflow.sdk.exceptions import AirflowFailException

    from absorb_sync.portal.readiness import Inputs

    log = logging.getLogger(__name__)
    params = run.params
    inputs = Inputs(
        feed_path=params.get("feed_path") or None,
        column_mapping=params.get("column_mapping") or None,
        rules_path=params.get("rules_path") or None,
        today=run.today,
        watch_seconds=float(params.get("token_watch_seconds") or 0),
    )
    readiness, files = check_portal(
        params.get("absorb_conn_id") or "absorb_default", inputs, run.folder, log.info
    )
    for line in summary_text(readiness).splitlines():
        log.info("%s", line)
    data = readiness.to_json()
    summary = {
        "verdict": readiness.verdict,
        "counts": data["counts"],
        "failed": [f"{c.section} · {c.name}" for c in readiness.failed()],
        "files": files,
    }
    if readiness.verdict != "go":
        raise AirflowFailException(
            f"portal not ready (no-go): {'; '.join(f'{c.name}: {c.message}' for c in readiness.failed())[:2000]}"
            f" — report: {files['html']}"
        )
    return summary
