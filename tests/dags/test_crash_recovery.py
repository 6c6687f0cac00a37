"""Provenance survives a crash (issue 8, item 3): ``kill -9`` of a sync in the middle of its apply.

Two identically seeded portals get the same feeds. On one, the first sync is killed (SIGKILL to the
whole ``airflow dags test`` process) after N writes and then re-run; the other runs undisturbed.
Afterwards both must hold the same provenance (which (user, course, rule) the sync created), and a
next day's feed must plan the same removals on both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dagtools import run_dag

SYNC = "absorb_hr_enrollment_sync"
pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def portals(tmp_path, airflow_db):
    from absorb_sandbox.testing import SandboxServer

    servers = {
        name: SandboxServer(db_path=tmp_path / f"{name}.db", seed="small").start()
        for name in ("crashed", "clean")
    }
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_CONN_ABSORB_DEFAULT", servers["clean"].airflow_connection_json())
    patch.setenv("ABSORB_OUTPUT_ROOT", str(tmp_path / "output"))
    patch.setenv("ABSORB_STATE_ROOT", str(tmp_path / "state"))
    try:
        yield servers, tmp_path
    finally:
        patch.undo()
        for server in servers.values():
            server.stop()


def use_portal(server) -> None:
    os.environ["AIRFLOW_CONN_ABSORB_DEFAULT"] = server.airflow_connection_json()


def ownership(server, state_root) -> set[tuple[str, str, str]]:
    from absorb_provider.hooks.absorb import AbsorbHook
    from absorb_sync.jobs.runtime import portal_state

    use_portal(server)
    provenance = portal_state(AbsorbHook(), str(state_root)).provenance()
    return {(row["user_id"], row["course_id"], row["rule"]) for row in provenance.values()}


def kill_sync_after_writes(server, feed, root, writes: int) -> int:
    """Start the sync in its own process group and SIGKILL it once Absorb has seen ``writes`` writes."""
    env = {**os.environ, "AIRFLOW_CONN_ABSORB_DEFAULT": server.airflow_connection_json()}
    conf = json.dumps({"feed_path": str(feed), "initial_load": True})
    start = server.stats()["write_calls"]
    log = (root / "killed_sync.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "dags", "test", SYNC, "--conf", conf],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    try:
        while server.stats()["write_calls"] - start < writes:
            assert process.poll() is None, f"the sync ended before {writes} writes; see {log.name}"
            assert time.monotonic() < deadline, "the sync never reached its apply"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()
    return server.stats()["write_calls"] - start


@pytest.mark.parametrize("crash_after", [3, 39])
def test_a_sync_killed_mid_apply_and_re_run_owns_what_a_clean_run_owns(portals, crash_after):
    from absorb_sandbox.hr_feed import export_hr_feed

    servers, root = portals
    crashed, clean = servers["crashed"], servers["clean"]
    feed = root / "day1.csv"
    export_hr_feed(clean.db_path, feed)

    written = kill_sync_after_writes(crashed, feed, root, crash_after)
    assert written < 150, f"the kill came too late to be mid-apply ({written} writes)"
    for server in (crashed, clean):
        use_portal(server)
        run = run_dag(SYNC, root / "output", {"feed_path": str(feed), "initial_load": True})
        assert run.succeeded, run.tasks
    assert ownership(crashed, root / "state") == ownership(clean, root / "state")
    assert len(ownership(clean, root / "state")) > crash_after

    movers = root / "day2.csv"
    export_hr_feed(clean.db_path, movers, changes=12, seed=3)
    plans = {}
    for name, server in servers.items():
        use_portal(server)
        run = run_dag(SYNC, root / "output", {"feed_path": str(movers), "dry_run": True})
        assert run.succeeded, run.tasks
        plans[name] = run.json("summary.json")["plan"]
    assert plans["crashed"] == plans["clean"]
    assert plans["clean"]["unenroll_by_sync"] > 0, (
        "the movers' feed should remove some of the sync's enrollments"
    )
