#!/usr/bin/env python
"""``make demo``: the three DAGs against a fresh, seeded offline Absorb, in a few minutes.

1. starts a sandbox (seed ``small``, a fresh db under ``var/demo/`` every time),
2. initialises its own Airflow home ``var/demo/airflow`` (SQLite; not ``make airflow``'s
   ``var/airflow``, so the hand-over runs the demo's syncs queue never reach that UI) and, through
   ``scripts/bootstrap_airflow.py``, the ``absorb_default`` connection and ``absorb_api`` pool,
3. runs with ``airflow dags test``: the HR sync on today's feed, learners make progress, the sync
   on a feed with new hires, movers, leavers and one bad row, the unenrollment of the leavers it
   handed over, and a full completion export,
4. prints what happened and where the reports are.

Demo outputs, sync state and Airflow home live under ``var/demo/`` (wiped at start), apart from
``make airflow``'s.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
DEMO = VAR / "demo"
AIRFLOW_HOME = DEMO / "airflow"  # never make airflow's var/airflow: its queued runs stay here
PYTHON = sys.executable


def airflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(AIRFLOW_HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        ABSORB_OUTPUT_ROOT=str(DEMO / "output"),
        ABSORB_STATE_ROOT=str(DEMO / "state"),
        GX_ANALYTICS_ENABLED="false",
        PYTHONWARNINGS="ignore",
    )
    env.pop("AIRFLOW_CONN_ABSORB_DEFAULT", None)  # the demo's connection lives in its Airflow home
    return env


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def airflow(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    log = DEMO / "logs" / f"{int(time.time() * 1000)}-{'-'.join(args[:2])}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        done = subprocess.run(
            [PYTHON, "-m", "airflow", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    if check and done.returncode != 0:
        raise SystemExit(f"`airflow {' '.join(args[:3])}` failed (exit {done.returncode}); log: {log}")
    return done


def dag_test(env: dict, dag_id: str, conf: dict) -> tuple[Path, bool]:
    """``airflow dags test`` with conf; returns the run folder the run wrote and whether it succeeded."""
    root = DEMO / "output" / dag_id
    before = set(root.iterdir()) if root.exists() else set()
    started = time.perf_counter()
    done = airflow(env, "dags", "test", dag_id, "--conf", json.dumps(conf), check=False)
    created = sorted(set(root.iterdir()) - before) if root.exists() else []
    if not created:
        raise SystemExit(f"{dag_id} wrote no run folder under {root}; logs: {DEMO / 'logs'}")
    verdict = "done" if done.returncode == 0 else "FAILED"
    print(f"    {dag_id}: {verdict} in {time.perf_counter() - started:.0f} s")
    return created[-1], done.returncode == 0


def explain_failure(folder: Path) -> None:
    """Print the gate verdicts a failed run left in its folder."""
    for name in ("feed_gate.json", "plan_decision.json", "decision.json", "export_gate.json"):
        target = folder / name
        if target.exists():
            verdict = json.loads(target.read_text())
            reasons = verdict.get("reasons") or [
                f"{f['description']} ({f.get('unexpected_count')} rows)"
                for f in verdict.get("failed_checks", [])
            ]
            if verdict.get("feed_error"):
                reasons = [verdict["feed_error"]]
            if reasons and not verdict.get("allowed", False):
                print(f"    {name}: " + "; ".join(str(r) for r in reasons))
    print(f"    details: {folder} and {DEMO / 'logs'}")


def summary_of(folder: Path) -> dict:
    target = folder / "summary.json"
    if not target.exists():
        raise SystemExit(f"the run failed before its summary; see {folder} and {DEMO / 'logs'}")
    return json.loads(target.read_text())


def break_one_email(feed: Path) -> str:
    """Give one active person an invalid email, so the demo shows a quarantined row."""
    with feed.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = list(reader.fieldnames or []), list(reader)
    victim = next(r for r in rows if r["status"] == "active")
    victim["email"] = "not-an-email"
    with feed.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return victim["employee_id"]


def show_sync(label: str, summary: dict, folder: Path) -> None:
    plan, outcomes = summary["plan"], summary["outcomes"]
    print(
        f"    {label}: enroll {plan['enroll']}, re-enroll {plan['re_enroll']}, due dates {plan['update_due_date']}, "
        f"unenroll (sync) {plan['unenroll_by_sync']}, leavers' open enrollments {plan['unenroll_leavers']}"
    )
    print(
        f"    outcomes {outcomes}; rejected rows {summary['rejected_rows']}; people missing in Absorb "
        f"{summary['missing_people']}; leavers handed over {len(summary['leavers_handed_over'])}"
    )
    users = summary.get("users") or {}
    if users:
        changes = {action: count for action, count in users.get("counts", {}).items() if count}
        print(
            f"    Absorb users: {changes or 'no change'}; outcomes {users.get('outcomes', {})}; "
            f"left alone {users.get('notes', {})}"
        )
    print(f"    report: {folder / 'report.html'}")


def main() -> int:
    started = time.perf_counter()
    shutil.rmtree(DEMO, ignore_errors=True)
    (DEMO / "feeds").mkdir(parents=True)
    env = airflow_env()
    os.environ.update(
        {k: env[k] for k in ("ABSORB_OUTPUT_ROOT", "ABSORB_STATE_ROOT", "GX_ANALYTICS_ENABLED")}
    )
    from absorb_sandbox.hr_feed import export_hr_feed
    from absorb_sandbox.testing import SandboxServer

    step("starting a seeded Absorb sandbox (small)")
    with SandboxServer(db_path=DEMO / "sandbox.db", seed="small") as sandbox:
        print(f"    {sandbox.base_url}")
        step(f"initialising Airflow in {AIRFLOW_HOME} (SQLite), connection absorb_default, pool absorb_api")
        airflow(env, "db", "migrate")
        bootstrap = subprocess.run(
            [PYTHON, str(ROOT / "scripts" / "bootstrap_airflow.py")],
            env={**env, "ABSORB_BASE_URL": sandbox.base_url},
            capture_output=True,
            text=True,
        )
        if bootstrap.returncode != 0:
            raise SystemExit(f"bootstrap_airflow.py failed: {bootstrap.stderr[-2000:]}")

        step("HR sync on today's feed: the portal's first load (initial_load=true, a deliberate act)")
        baseline = DEMO / "feeds" / "hr_feed_day1.csv"
        export_hr_feed(DEMO / "sandbox.db", baseline)
        folder, ok = dag_test(
            env, "absorb_hr_enrollment_sync", {"feed_path": str(baseline), "initial_load": True}
        )
        if not ok:
            explain_failure(folder)
            return 1
        show_sync("day 1", summary_of(folder), folder)

        step("learners make progress (sandbox simulation)")
        print(f"    {sandbox.progress(fraction=0.3, seed=1)}")

        step("HR sync on tomorrow's feed: new hires, movers, leavers and one bad row")
        changed = DEMO / "feeds" / "hr_feed_day2.csv"
        changes = export_hr_feed(DEMO / "sandbox.db", changed, changes=12, seed=1)
        broken = break_one_email(changed)
        print(f"    feed changes: { {k: len(v) for k, v in changes.items() if isinstance(v, list)} }")
        print(f"    {broken} gets an invalid email: expect one rejected row")
        # on_hold=fail: `airflow dags test` would wait forever at an unanswered approval
        folder, ok = dag_test(
            env, "absorb_hr_enrollment_sync", {"feed_path": str(changed), "on_hold": "fail"}
        )
        if not ok:
            explain_failure(folder)
            return 1
        day2 = summary_of(folder)
        show_sync("day 2", day2, folder)
        print(f"    rejects: {folder / 'rejects.csv'}")

        leavers = day2["leavers_handed_over"]
        step(f"bulk unenrollment of the {len(leavers)} leavers (what the sync triggers)")
        folder, ok = dag_test(
            env,
            "absorb_bulk_unenrollment",
            {"people": leavers, "reason": "leavers (demo)", "handover": day2["handover"], "on_hold": "fail"},
        )
        if not ok:
            explain_failure(folder)
            return 1
        result = summary_of(folder)
        print(
            f"    unenrolled {result['outcomes'].get('unenrolled', 0)}, completed kept "
            f"{result['resolved']['kept_completed']}, unresolved {result['resolved']['unresolved']}"
        )
        print(f"    report: {folder / 'report.html'}")

        step("completion export (full)")
        folder, ok = dag_test(env, "absorb_completion_export", {"full_export": True})
        if not ok:
            print("    the export's data-quality gate refused the sandbox's data; nothing was published:")
            explain_failure(folder)
            return 1
        export = summary_of(folder)
        print(
            f"    exported {export['rows']} enrollments ({export['completed']} completed, "
            f"{export['overdue']} overdue) to {export['data_folder']}"
        )
        print(f"    compliance report: {export['report']}")

    step(f"done in {time.perf_counter() - started:.0f} s; everything is under {DEMO}")
    print(
        f"    the demo used its own Airflow home ({AIRFLOW_HOME}): `make airflow` (var/airflow) "
        "inherits none of its runs, queued hand-overs included"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
