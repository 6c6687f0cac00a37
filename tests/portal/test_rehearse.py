"""``make rehearse``'s script end to end: snapshot, clone, the sync on the clone, the plan shown;
the portal sees reads only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from absorb_sandbox.testing import SandboxServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_rehearsal_applies_the_first_sync_to_a_clone_and_never_writes_to_the_portal(tmp_path):
    from absorb_sandbox.hr_feed import export_hr_feed

    with SandboxServer(db_path=tmp_path / "portal.db", seed="small") as portal:
        feed = tmp_path / "feed.csv"
        export_hr_feed(portal.db_file, feed, changes=20, seed=2)
        env = {**os.environ, "AIRFLOW_CONN_ABSORB_DEFAULT": portal.airflow_connection_json()}
        work = tmp_path / "work"
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "rehearse.py"),
                "--feed",
                str(feed),
                "--work",
                str(work),
                "--no-open",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert portal.stats()["write_calls"] == 0
    assert f"what the first real run against {portal.base_url} would do" in done.stdout
    (folder,) = (work / "output" / "absorb_hr_enrollment_sync").iterdir()
    record = json.loads((folder / "rehearsal.json").read_text())
    assert record["rehearsal"] is True and record["portal"]["base_url"] == portal.base_url
    assert record["clone"] != portal.base_url and record["clone"].startswith("http://127.0.0.1:")
    assert record["conf"]["initial_load"] is True and record["run_succeeded"] is True
    summary = json.loads((folder / "summary.json").read_text())
    created = summary["outcomes"].get("created", 0)
    assert created > 0 and record["clone_write_calls"] >= created  # applied, to the clone only
    plan_lines = (folder / "plan.csv").read_text().splitlines()
    assert len(plan_lines) > created  # header + the enroll lines and the leavers' lines
    assert str(folder / "report.html") in done.stdout
    report = (folder / "report.html").read_text()
    assert "<strong>REHEARSAL</strong> on a local clone" in report and portal.base_url in report


def test_the_sync_of_a_rehearsal_knows_no_connection_but_the_clone(tmp_path, monkeypatch):
    from absorb_sync.portal.rehearse import airflow_env

    monkeypatch.setenv(
        "AIRFLOW_CONN_ABSORB_DEFAULT", '{"conn_type": "absorb", "host": "https://rest.myabsorb.eu"}'
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_ABSORB_PROD", '{"conn_type": "absorb", "host": "https://rest.myabsorb.eu"}'
    )
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "airflow.providers.hashicorp.secrets.vault.VaultBackend")
    monkeypatch.setenv("ABSORB_BASE_URL", "https://rest.myabsorb.eu")
    env = airflow_env(tmp_path, "http://127.0.0.1:40001")
    assert "rest.myabsorb.eu" not in json.dumps(env)
    assert not [k for k in env if k.startswith("AIRFLOW__SECRETS__")]
    connections = {k: json.loads(v) for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
    assert set(connections) == {"AIRFLOW_CONN_ABSORB_REHEARSAL", "AIRFLOW_CONN_ABSORB_DEFAULT"}
    assert {c["host"] for c in connections.values()} == {"http://127.0.0.1:40001"}
    assert env["AIRFLOW_HOME"] == str((tmp_path / "airflow").resolve())
