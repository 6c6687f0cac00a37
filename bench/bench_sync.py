"""Benchmark: a sync of the ``medium`` sandbox (~10k people) whose feed changes nothing.

Target: the unchanged-feed run makes no more than 1.2x the minimum read calls (pages of users
plus pages of each rule course's enrollments) and zero writes. A first run brings Absorb in
line with the rules (override on: it is set-up, not the measured run). Prints the figures and
exits non-zero on a miss. Run with ``python -m bench.bench_sync``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_READ_RATIO = 1.2
PAGE = 1000


def prepare_airflow(home: Path) -> None:
    """A private Airflow home (SQLite) so the benchmark never touches a developer's Airflow."""
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        GX_ANALYTICS_ENABLED="false",
    )
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def reads(stats: dict) -> int:
    return sum(n for route, n in stats["by_route"].items() if route.startswith("GET "))


def minimum_reads(hook, feed: Path) -> tuple[int, dict]:
    """Pages of users + pages of each rule course's enrollments (at least one page each)."""
    from absorb_sync.jobs.runtime import DEFAULT_RULES_PATH
    from absorb_sync.rules import load_rules, resolve_courses

    users = sum(1 for _ in hook.list_users())
    ruleset = load_rules(DEFAULT_RULES_PATH)
    course_ids = sorted(set(resolve_courses(ruleset, hook.list_courses()).values()))
    enrollments = {c: sum(1 for _ in hook.list_course_enrollments(c)) for c in course_ids}
    pages = max(1, math.ceil(users / PAGE)) + sum(max(1, math.ceil(n / PAGE)) for n in enrollments.values())
    return pages, {"users": users, "rule_courses": len(course_ids), "enrollments": sum(enrollments.values())}


def run_sync(conf: dict) -> tuple[str, float]:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["absorb_hr_enrollment_sync"]
    started = time.perf_counter()
    dag_run = dag.test(run_conf=conf)
    return str(dag_run.state), time.perf_counter() - started


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    prepare_airflow(work / "airflow")
    os.environ.update(ABSORB_OUTPUT_ROOT=str(work / "output"), ABSORB_STATE_ROOT=str(work / "state"))
    from absorb_sandbox.hr_feed import export_hr_feed
    from absorb_sandbox.testing import SandboxServer

    started = time.perf_counter()
    with SandboxServer(db_path=work / "absorb.db", seed="medium") as server:
        print(f"medium sandbox ready in {time.perf_counter() - started:.1f} s")
        os.environ["AIRFLOW_CONN_ABSORB_DEFAULT"] = server.airflow_connection_json()
        feed = work / "feed.csv"
        export_hr_feed(work / "absorb.db", feed)
        conf = {"feed_path": str(feed)}
        state, seconds = run_sync(
            {**conf, "override_thresholds": True, "override_reason": "benchmark set-up: first sync"}
        )
        first = server.stats()
        print(f"set-up sync: {state} in {seconds:.1f} s, {first['write_calls']} writes")
        if state != "success":
            return 1
        from absorb_provider.hooks.absorb import AbsorbHook

        minimum, sizes = minimum_reads(AbsorbHook(), feed)
        before = server.stats()
        state, seconds = run_sync(conf)
        after = server.stats()
    made = reads(after) - reads(before)
    writes = after["write_calls"] - before["write_calls"]
    ratio = made / minimum
    print(
        f"unchanged-feed sync: {state} in {seconds:.1f} s; people in Absorb {sizes['users']}, "
        f"rule courses {sizes['rule_courses']}, their enrollments {sizes['enrollments']}"
    )
    print(f"read calls {made} vs minimum {minimum} pages: ratio {ratio:.2f} (target <= {MAX_READ_RATIO})")
    print(f"write calls {writes} (target 0)")
    ok = state == "success" and ratio <= MAX_READ_RATIO and writes == 0
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
