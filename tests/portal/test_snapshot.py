"""``absorb-portal snapshot`` and the clone it makes: read-only, complete, resumable, and the sync's
plan against the clone is the plan against the original (same lines, same reasons)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from absorb_sandbox.testing import SandboxServer
from absorb_sync.portal import snapshot_format as fmt
from absorb_sync.portal.cli import main as portal_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dags"))
from dagtools import run_dag

SYNC = "absorb_hr_enrollment_sync"


class SnapshotServer(SandboxServer):
    """The sandbox serving a snapshot folder (``serve --from-snapshot``)."""

    def __init__(self, snapshot: Path, **options) -> None:
        super().__init__(**options)
        self.snapshot = snapshot

    def command(self) -> list[str]:
        return [*super().command(), "--from-snapshot", str(self.snapshot)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The original portal (a seeded sandbox), its connection and the run roots."""
    root = tmp_path_factory.mktemp("snapshot")
    original = SandboxServer(db_path=root / "original.db", seed="small").start()
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_CONN_ABSORB_ORIGINAL", original.airflow_connection_json())
    patch.setenv("ABSORB_OUTPUT_ROOT", str(root / "output"))
    patch.setenv("ABSORB_STATE_ROOT", str(root / "state"))
    try:
        yield {"root": root, "original": original}
    finally:
        patch.undo()
        original.stop()


def snapshot(out: Path, *options: str, conn_id: str = "absorb_original") -> int:
    return portal_main(["snapshot", "--conn-id", conn_id, "--out", str(out), *options])


@pytest.fixture(scope="module")
def plain(world):
    """A snapshot of the original and how many write calls the original saw while it was taken."""
    before = world["original"].stats()["write_calls"]
    out = world["root"] / "plain"
    assert snapshot(out) == 0
    return {"out": out, "writes": world["original"].stats()["write_calls"] - before}


def _db_count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


def test_a_snapshot_has_every_row_counts_and_checksums_and_wrote_nothing(world, plain):
    out, db = plain["out"], world["original"].db_file
    manifest = json.loads((out / fmt.MANIFEST).read_text())
    assert plain["writes"] == 0
    assert manifest["counts"]["users"] == _db_count(db, "SELECT COUNT(*) FROM users")
    assert manifest["counts"]["courses"] == _db_count(db, "SELECT COUNT(*) FROM courses")
    assert manifest["counts"]["departments"] == _db_count(db, "SELECT COUNT(*) FROM departments")
    assert manifest["counts"]["enrollments"] == _db_count(db, "SELECT COUNT(*) FROM enrollments") > 1000
    assert manifest["counts"]["sessions"] == _db_count(
        db, "SELECT COUNT(*) FROM sessions"
    )  # every ILC session seen
    assert manifest["counts"]["chapters"] > 0 and manifest["counts"]["lessons"] > 0
    assert {name: fmt.file_sha256(out / name) for name in manifest["files"]} == manifest["files"]
    assert manifest["checksum"] == fmt.overall_checksum(manifest["files"])
    assert not (out / fmt.PROGRESS).exists()
    assert manifest["portal"]["base_url"] == world["original"].base_url


def test_running_it_again_on_a_finished_snapshot_changes_nothing(world, plain, capsys):
    out = plain["out"]
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*")}
    calls = world["original"].stats()["total_requests"]
    assert snapshot(out) == 0
    assert json.loads(capsys.readouterr().out)["already_complete"] is True
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*")} == before
    assert world["original"].stats()["total_requests"] == calls


def test_the_clone_lists_what_the_original_lists(world, plain, tmp_path, monkeypatch):
    from absorb_provider.hooks.absorb import AbsorbHook

    with SnapshotServer(plain["out"], db_path=tmp_path / "clone.db", seed="none") as clone:
        monkeypatch.setenv("AIRFLOW_CONN_ABSORB_CLONE", clone.airflow_connection_json())
        original, copy = AbsorbHook("absorb_original"), AbsorbHook("absorb_clone")
        assert list(copy.list_users()) == list(original.list_users())
        assert list(copy.list_departments()) == list(original.list_departments())
        courses = list(original.list_courses())
        assert list(copy.list_courses()) == courses
        for course in courses:
            rows = list(original.list_course_enrollments(course["id"]))
            assert list(copy.list_course_enrollments(course["id"])) == rows, course["name"]


def test_the_plan_against_a_pseudonymised_clone_is_the_plan_against_the_original(
    world, airflow_db, monkeypatch
):
    from absorb_sandbox.hr_feed import export_hr_feed

    root, original = world["root"], world["original"]
    out = root / "pseudonymised"
    assert snapshot(out, "--pseudonymise") == 0
    users = pq.read_table(out / "users.parquet").to_pylist()
    with sqlite3.connect(original.db_file) as conn:
        emails = {row[0] for row in conn.execute("SELECT email FROM users WHERE email IS NOT NULL")}
        external_ids = {
            row[0] for row in conn.execute("SELECT external_id FROM users WHERE external_id IS NOT NULL")
        }
    assert (
        emails
        and not emails & {u["emailAddress"] for u in users}
        and not emails & {u["username"] for u in users}
    )
    assert {u["externalId"] for u in users if u["externalId"]} == external_ids  # joinable with the feed
    names = pq.read_table(out / "enrollments", columns=["fullName"]).column("fullName").to_pylist()
    assert all(name.startswith("Person ") for name in names)

    export_hr_feed(original.db_file, root / "feed.csv", changes=25, seed=4)
    conf = {"feed_path": str(root / "feed.csv"), "dry_run": True}
    with SnapshotServer(out, db_path=root / "pseudonymised-clone.db", seed="none") as clone:
        monkeypatch.setenv("AIRFLOW_CONN_ABSORB_CLONE", clone.airflow_connection_json())
        on_original = run_dag(SYNC, root / "output", {**conf, "absorb_conn_id": "absorb_original"})
        on_clone = run_dag(SYNC, root / "output", {**conf, "absorb_conn_id": "absorb_clone"})
        assert clone.stats()["write_calls"] == 0
    assert on_original.succeeded and on_clone.succeeded
    plan = on_original.text("plan.csv")
    actions = {line.split(",", 1)[0] for line in plan.splitlines()[1:]}
    assert {"enroll", "re_enroll", "unenroll"} <= actions  # a plan with something in it
    assert on_clone.text("plan.csv") == plan
    for key in ("reasons", "plan", "allowed"):
        assert on_clone.json("plan_decision.json")[key] == on_original.json("plan_decision.json")[key]


def test_an_interrupted_snapshot_resumes_where_it_stopped(tmp_path):
    with SandboxServer(db_path=tmp_path / "slow.db", seed="small", rate_limit=2) as portal:
        env_name = "AIRFLOW_CONN_ABSORB_SLOW"
        command = [sys.executable, "-m", "absorb_sync.portal.cli", "snapshot", "--conn-id", "absorb_slow"]
        command += ["--catalogue-sample", "0", "--out"]
        env = {**os.environ, env_name: portal.airflow_connection_json()}
        out = tmp_path / "resumed"
        process = subprocess.Popen([*command, str(out)], env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(list((out / fmt.ENROLLMENTS_DIR).glob("*.parquet"))) < 3:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert "run the same command again to resume" in process.stderr.read()
        assert (out / fmt.PROGRESS).exists() and not (out / fmt.MANIFEST).exists()
        assert not list(out.rglob("*.tmp"))  # the course in progress was dropped, not kept half-read
        kept = {p.name: p.stat().st_mtime_ns for p in (out / fmt.ENROLLMENTS_DIR).glob("*.parquet")}

        resumed = subprocess.run([*command, str(out)], env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        whole = subprocess.run(
            [*command, str(tmp_path / "whole")], env=env, capture_output=True, text=True, timeout=300
        )
        assert whole.returncode == 0, whole.stderr
    manifest = json.loads((out / fmt.MANIFEST).read_text())
    uninterrupted = json.loads((tmp_path / "whole" / fmt.MANIFEST).read_text())
    assert manifest["checksum"] == uninterrupted["checksum"]
    assert manifest["counts"] == uninterrupted["counts"]
    assert {
        name: (out / fmt.ENROLLMENTS_DIR / name).stat().st_mtime_ns for name in kept
    } == kept  # not re-read
    assert manifest["requests_this_run"] < uninterrupted["requests_this_run"]


def test_the_snapshot_client_refuses_every_write(world):
    from absorb_provider.hooks.absorb import AbsorbHook
    from absorb_sync.portal.snapshot_read import SnapshotError, guard_read_only

    hook = AbsorbHook("absorb_original")
    guard_read_only(hook.client)
    before = world["original"].stats()["write_calls"]
    with pytest.raises(SnapshotError, match="refused POST /users: a snapshot only reads"):
        hook.upsert_user({"username": "intruder@example.com", "externalId": "E999999"})
    with pytest.raises(SnapshotError, match="refused POST /enrollments/unenroll"):
        hook.unenroll(["0f070617-c74e-5bf0-aa78-ed5cbe14795d"])
    assert next(iter(hook.list_courses()))["id"]  # reads still work
    assert world["original"].stats()["write_calls"] == before


def test_an_unfinished_snapshot_of_another_portal_is_not_mixed_in(world, tmp_path, capsys):
    out = tmp_path / "other"
    out.mkdir()
    progress = {
        "format": fmt.FORMAT,
        "format_version": fmt.FORMAT_VERSION,
        "portal": {"base_url": "https://rest.myabsorb.eu", "api_user": "api.admin"},
        "pseudonymised": False,
        "started_at": "2026-01-01T00:00:00+00:00",
    }
    (out / fmt.PROGRESS).write_text(json.dumps(progress))
    assert snapshot(out) == 1
    error = capsys.readouterr().err
    assert "holds an unfinished snapshot of" in error and "rest.myabsorb.eu" in error and "--fresh" in error
    assert not (out / "users.parquet").exists()


def test_from_env_names_what_is_missing(tmp_path, monkeypatch, capsys):
    for name in (
        "ABSORB_USERNAME",
        "ABSORB_PASSWORD",
        "ABSORB_PRIVATE_KEY",
        "ABSORB_BASE_URL",
        "ABSORB_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ABSORB_USERNAME", "api.admin")
    assert portal_main(["snapshot", "--from-env", "--out", str(tmp_path / "s")]) == 1
    error = capsys.readouterr().err
    assert "ABSORB_PASSWORD, ABSORB_PRIVATE_KEY, ABSORB_BASE_URL or ABSORB_REGION" in error


def test_a_finished_snapshot_of_another_portal_is_not_reused(world, plain, tmp_path, monkeypatch, capsys):
    with SandboxServer(db_path=tmp_path / "other.db", seed="small") as other:
        monkeypatch.setenv("AIRFLOW_CONN_ABSORB_OTHER", other.airflow_connection_json())
        calls = other.stats()["total_requests"]
        assert snapshot(plain["out"], conn_id="absorb_other") == 1
        assert other.stats()["total_requests"] == calls  # refused before any call
    error = capsys.readouterr().err
    assert "holds a finished snapshot of" in error and world["original"].base_url in error
    assert snapshot(plain["out"], "--pseudonymise") == 1  # nor a plain one for a pseudonymised ask
