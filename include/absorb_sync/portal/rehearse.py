"""``make rehearse``: the first sync, played on a local clone of the portal, before it runs for real.

1. a snapshot of the portal (``absorb-portal snapshot``: GET only), or the finished one in
   ``--snapshot`` (``--fresh-snapshot`` takes a new one; an unfinished one is resumed),
2. a sandbox serving it (``absorb-sandbox serve --from-snapshot``, a new clone db every time),
3. ``airflow dags test absorb_hr_enrollment_sync`` with the real feed and rules, in an Airflow home
   of its own (``var/rehearsal/airflow``) whose only Absorb connections point at the clone, with a
   fresh sync state, so the run is the portal's first and ``initial_load`` lets it through
   (``on_hold=fail``: a plan the thresholds would hold stops at the gate, plan and report written),
4. prints what the first real run would do and opens the report.

Zero calls change the portal by construction: the snapshot client refuses anything but GET and
the sync only ever knows the clone's URL.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import webbrowser
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DAG_ID = "absorb_hr_enrollment_sync"
CLONE_CONN_ID = "absorb_rehearsal"
SANDBOX_USER = "airflow.integration"
SANDBOX_PASSWORD = "sandbox-password"  # the clone's own credentials, not the portal's
SANDBOX_KEY = "0b5f4a8e-2c3d-4e5f-8a9b-1c2d3e4f5a6b"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rehearse", description=__doc__.splitlines()[0])
    parser.add_argument("--feed", required=True, help="the HR feed the first real run will read")
    parser.add_argument("--rules", default=str(ROOT / "include/rules/enrollment_rules.yaml"))
    parser.add_argument("--mapping-preset", default=None, help="canonical, workday, bamboohr, adp")
    parser.add_argument(
        "--conf", default=None, help="more sync Params as JSON, e.g. '{\"create_missing_users\": true}'"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "var/rehearsal", help="default var/rehearsal")
    parser.add_argument("--snapshot", type=Path, default=None, help="default <work>/snapshot")
    parser.add_argument(
        "--conn-id", default=None, help="the portal's Airflow connection (default absorb_default)"
    )
    parser.add_argument("--from-env", action="store_true", help="the portal from ABSORB_* variables")
    parser.add_argument(
        "--fresh-snapshot", action="store_true", help="take a new snapshot even if one is there"
    )
    parser.add_argument("--pseudonymise", action="store_true", help="snapshot without names and emails")
    parser.add_argument(
        "--dry-run", action="store_true", help="plan and report only, nothing applied to the clone"
    )
    parser.add_argument("--no-open", action="store_true", help="do not open the report in a browser")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work: Path = args.work
    snapshot = args.snapshot or work / "snapshot"
    try:
        conf = sync_conf(args)
    except ValueError as error:
        print(f"rehearse: {error}", file=sys.stderr)
        return 2
    manifest = ensure_snapshot(args, snapshot)
    if manifest is None:
        return 1
    clone = start_clone(snapshot, work)
    try:
        env = airflow_env(work, clone["base_url"])
        prepare_airflow(env, work)
        folder, succeeded = run_sync(env, work, conf)
        stats = clone_stats(clone["base_url"])
    finally:
        stop(clone["process"])
    record = write_record(folder, manifest, snapshot, clone["base_url"], conf, succeeded, stats)
    mark_report(folder, record)
    print_outcome(folder, record)
    if not args.no_open:
        open_report(folder)
    return 0 if folder.exists() else 1


def sync_conf(args: argparse.Namespace) -> dict[str, Any]:
    """The sync's Params: the real feed and rules, a first load, never a wait, the clone only."""
    feed, rules = Path(args.feed), Path(args.rules)
    for label, path in (("feed", feed), ("rules", rules)):
        if not path.is_file():
            raise ValueError(f"{label} file {path} does not exist")
    extra = json.loads(args.conf) if args.conf else {}
    if not isinstance(extra, dict):
        raise ValueError("--conf must be a JSON object of sync Params")
    if "absorb_conn_id" in extra or "output_root" in extra:
        raise ValueError("--conf may not set absorb_conn_id or output_root: the rehearsal chooses them")
    conf = {
        "feed_path": str(feed.resolve()),
        "rules_path": str(rules.resolve()),
        "initial_load": True,
        "on_hold": "fail",
        "dry_run": bool(args.dry_run),
        **extra,
        "absorb_conn_id": CLONE_CONN_ID,
    }
    if args.mapping_preset:
        conf["mapping_preset"] = args.mapping_preset
    return conf


def ensure_snapshot(args: argparse.Namespace, snapshot: Path) -> dict[str, Any] | None:
    """A finished snapshot of the portal in ``snapshot``: taken, resumed, or reused when the one
    there is finished and of the same portal (the snapshot command checks); None when it failed."""
    print(
        f"==> snapshot of the portal into {snapshot} (read-only; a finished one of the same portal is reused)"
    )
    command = [sys.executable, "-m", "absorb_sync.portal.cli", "snapshot", "--out", str(snapshot)]
    command += ["--from-env"] if args.from_env else ["--conn-id", args.conn_id or "absorb_default"]
    command += ["--pseudonymise"] * args.pseudonymise + ["--fresh"] * args.fresh_snapshot
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    manifest_path = snapshot / "manifest.json"
    if done.returncode != 0 or not manifest_path.exists():
        print("rehearse: no finished snapshot (see above); run again to resume it", file=sys.stderr)
        return None
    manifest = json.loads(manifest_path.read_text())
    reused = '"already_complete": true' in done.stdout
    print(
        f"    {'reused' if reused else 'taken'}: {manifest['portal']['base_url']}, finished "
        f"{manifest['finished_at']}, {manifest['counts']['users']:,} users, "
        f"{manifest['counts']['enrollments']:,} enrollments (FRESH=1 takes a new one)"
    )
    return manifest


def start_clone(snapshot: Path, work: Path) -> dict[str, Any]:
    """A sandbox on a new db loaded from the snapshot, on a free loopback port."""
    db = work / "clone.db"
    for suffix in ("", "-wal", "-shm", "-state.db", "-state.db-wal", "-state.db-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    log = (work / "logs" / "clone.log").resolve()
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"==> the clone: a sandbox serving {snapshot} (db {db})")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "absorb_sandbox.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--db",
            str(db),
            "--from-snapshot",
            str(snapshot),
            "--username",
            SANDBOX_USER,
            "--password",
            SANDBOX_PASSWORD,
            "--api-key",
            SANDBOX_KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise SystemExit(f"rehearse: the clone did not start; see {log}")
    banner = json.loads(line)
    base_url = banner["base_url"]
    if not base_url.startswith("http://127.0.0.1:"):  # the sync must never see another address
        stop(process)
        raise SystemExit(f"rehearse: the clone answered from {base_url}, not the loopback: stopping")
    print(f"    {base_url}, loaded in {banner['store_ready_seconds']} s")
    return {"process": process, "base_url": base_url}


def clone_connection(base_url: str) -> str:
    return json.dumps(
        {
            "conn_type": "absorb",
            "host": base_url,
            "login": SANDBOX_USER,
            "password": SANDBOX_PASSWORD,
            "extra": {"private_key": SANDBOX_KEY},
        }
    )


def airflow_env(work: Path, base_url: str) -> dict[str, str]:
    """An Airflow home of the rehearsal's own; every Absorb connection id it knows is the clone."""
    home = (work / "airflow").resolve()
    # no connection, secrets backend or portal setting of the caller's reaches the sync
    dropped = ("AIRFLOW_CONN_", "AIRFLOW__SECRETS__", "AIRFLOW_VAR_", "ABSORB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        ABSORB_OUTPUT_ROOT=str((work / "output").resolve()),
        ABSORB_STATE_ROOT=str((work / "state").resolve()),
        ABSORB_CONN_ID=CLONE_CONN_ID,
        GX_ANALYTICS_ENABLED="false",
        PYTHONWARNINGS="ignore",
    )
    env[f"AIRFLOW_CONN_{CLONE_CONN_ID.upper()}"] = clone_connection(base_url)
    env["AIRFLOW_CONN_ABSORB_DEFAULT"] = clone_connection(base_url)  # a default id reaches the clone too
    return env


def prepare_airflow(env: dict[str, str], work: Path) -> None:
    """The metadata DB (once) and the ``absorb_api`` pool; a fresh sync state every time, so the
    run is the portal's first, as the first real run will be."""
    shutil.rmtree(work / "state", ignore_errors=True)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / ".migrated").exists():
        print("==> Airflow home for rehearsals (first time only)")
        _checked([sys.executable, "-m", "airflow", "db", "migrate"], env, work / "logs" / "airflow-db.log")
        (home / ".migrated").touch()
    _checked(
        [sys.executable, str(ROOT / "scripts" / "bootstrap_airflow.py"), "--pool-only"],
        env,
        work / "logs" / "pool.log",
    )


def run_sync(env: dict[str, str], work: Path, conf: dict[str, Any]) -> tuple[Path, bool]:
    """``airflow dags test`` of the sync; returns its run folder and whether the run succeeded."""
    root = work / "output" / DAG_ID
    before = set(root.iterdir()) if root.exists() else set()
    log = work / "logs" / f"sync-{time.strftime('%Y%m%dT%H%M%S')}.log"
    print(f"==> the sync against the clone (log {log})")
    started = time.perf_counter()
    done = _run(
        [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--conf", json.dumps(conf)], env, log
    )
    created = sorted(set(root.iterdir()) - before) if root.exists() else []
    if not created:
        raise SystemExit(f"rehearse: the sync wrote no run folder; see {log}")
    print(f"    {'done' if done == 0 else 'stopped'} in {time.perf_counter() - started:.0f} s")
    return created[-1], done == 0


def clone_stats(base_url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/_sandbox/stats", timeout=10) as answer:
        return json.loads(answer.read())


def write_record(
    folder: Path,
    manifest: dict[str, Any],
    snapshot: Path,
    clone_url: str,
    conf: dict[str, Any],
    succeeded: bool,
    stats: dict[str, Any],
) -> dict[str, Any]:
    """``rehearsal.json`` beside the run's files: this run was a rehearsal, on which snapshot."""
    record = {
        "rehearsal": True,
        "note": "a rehearsal on a local clone: nothing was sent to the portal",
        "portal": manifest.get("portal"),
        "snapshot": {
            "folder": str(snapshot.resolve()),
            "checksum": manifest.get("checksum"),
            "finished_at": manifest.get("finished_at"),
            "counts": manifest.get("counts"),
            "pseudonymised": manifest.get("pseudonymised"),
        },
        "clone": clone_url,
        "clone_write_calls": stats.get("write_calls"),
        "conf": conf,
        "run_succeeded": succeeded,
    }
    (folder / "rehearsal.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def mark_report(folder: Path, record: dict[str, Any]) -> None:
    """A banner at the top of ``report.html``: whoever opens it sees it was a rehearsal."""
    import html

    report = folder / "report.html"
    if not report.exists():
        return
    portal = (record.get("portal") or {}).get("base_url")
    snapshot = record["snapshot"]
    banner = (
        '<div style="background:#fff3cd;border:2px solid #b58900;padding:8px;margin:8px 0">'
        f"<strong>REHEARSAL</strong> on a local clone ({html.escape(record['clone'])}) of "
        f"{html.escape(str(portal))}, snapshot {html.escape(str(snapshot['checksum'])[:12])} "
        f"finished {html.escape(str(snapshot['finished_at']))}: nothing was sent to the portal. "
        "The first real run plans the same lines and waits for approval before it writes.</div>"
    )
    text = report.read_text(encoding="utf-8")
    start = text.find("<body")
    end = text.find(">", start) + 1 if start >= 0 else 0
    report.write_text(text[:end] + banner + text[end:], encoding="utf-8")


def plan_counts(folder: Path) -> Counter:
    """Plan lines per (action, rule, who handles them): the shape of the run at a glance."""
    with (folder / "plan.csv").open(newline="", encoding="utf-8") as handle:
        return Counter(
            (row["action"], row["rule"] or "-", row["handled_by"]) for row in csv.DictReader(handle)
        )


def print_outcome(folder: Path, record: dict[str, Any]) -> None:
    portal = (record.get("portal") or {}).get("base_url")
    print(f"\n==> what the first real run against {portal} would do (rehearsed on {record['clone']})")
    feed_gate = _json(folder / "feed_gate.json") or {}
    if feed_gate.get("feed_error") or feed_gate.get("passed") is False:
        print(f"    the feed gate would stop it: {feed_gate.get('feed_error') or 'see feed_gate.json'}")
    if (folder / "plan.csv").exists():
        print(f"    {'lines':>8}  {'action':<16} {'rule':<32} handled by")
        for (action, rule, handled_by), count in sorted(plan_counts(folder).items()):
            print(f"    {count:>8,}  {action:<16} {rule:<32} {handled_by}")
    decision = _json(folder / "plan_decision.json")
    if decision:
        print(
            "    it waits for a person at approve_plan (a first apply does) unless triggered with initial_load"
        )
        if decision.get("reasons"):
            print(f"    the plan gate would hold it as well: {'; '.join(decision['reasons'])}")
    summary = _json(folder / "summary.json") or {}
    if summary.get("outcomes"):
        print(f"    applied to the clone: {json.dumps(summary['outcomes'])}")
    print(f"    plan:   {folder / 'plan.csv'}")
    print(f"    report: {folder / 'report.html'}")
    print(
        f"    record: {folder / 'rehearsal.json'} "
        f"(calls to the portal that change it: none; writes to the clone: {record['clone_write_calls']})"
    )


def open_report(folder: Path) -> None:
    report = folder / "report.html"
    if report.exists() and (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"
    ):
        webbrowser.open(report.resolve().as_uri())


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _run(command: list[str], env: dict[str, str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        return subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode


def _checked(command: list[str], env: dict[str, str], log: Path) -> None:
    if _run(command, env, log) != 0:
        raise SystemExit(f"rehearse: `{' '.join(command[1:4])}` failed; see {log}")


if __name__ == "__main__":
    sys.exit(main())
