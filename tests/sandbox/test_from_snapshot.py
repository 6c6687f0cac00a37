"""``absorb-sandbox serve --from-snapshot``: a sandbox whose state is a snapshot folder.

The snapshots here are written by hand from docs/snapshot-format.md (Parquet files, a manifest
with SHA-256 checksums): the sandbox's side of the contract, without the portal's writer.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from absorb_sandbox import store
from absorb_sandbox.snapshot_load import PLACEHOLDER_SESSION_NAME, SnapshotLoadError, open_snapshot_store
from absorb_sandbox.testing import SandboxServer
from sandbox_helpers import make_client

DEPT = "11111111-1111-4111-8111-111111111111"
ALICE = "22222222-2222-4222-8222-222222222201"
BOB = "22222222-2222-4222-8222-222222222202"
ONLINE = "33333333-3333-4333-8333-333333333301"
ILC = "33333333-3333-4333-8333-333333333302"
SESSION = "44444444-4444-4444-8444-444444444401"
STAMP = "2026-01-05T10:00:00.000000Z"


def _user(user_id: str, external_id: str, first: str, **changes) -> dict:
    row = {
        "id": user_id,
        "username": f"{first.lower()}@example.com",
        "departmentId": DEPT,
        "firstName": first,
        "lastName": "Tester",
        "emailAddress": f"{first.lower()}@example.com",
        "externalId": external_id,
        "employeeNumber": external_id[1:],
        "jobTitle": "Analyst",
        "location": "Berlin",
        "dateHired": "2024-03-01T00:00:00.000000Z",
        "dateTerminated": None,
        "supervisorId": None,
        "activeStatus": 0,
        "dateAdded": STAMP,
        "dateEdited": STAMP,
    }
    return {**row, **changes}


def _enrollment(number: int, user_id: str, course_id: str, status: int, **changes) -> dict:
    row = {
        "id": f"55555555-5555-4555-8555-5555555555{number:02d}",
        "courseId": course_id,
        "userId": user_id,
        "status": status,
        "progress": 100.0 if status == 3 else 0.0,
        "score": None,
        "isActive": True,
        "dateAdded": STAMP,
        "dateStarted": None,
        "dateCompleted": STAMP if status == 3 else None,
        "dateDue": "2026-02-05T00:00:00.000000Z",
        "dateExpires": None,
        "dateEdited": STAMP,
        "accessDate": None,
        "timeSpentTicks": 0,
        "credits": None,
        "acceptedTermsAndConditions": False,
    }
    return {**row, **changes}


TABLES = {
    "departments.parquet": [{"id": DEPT, "name": "Finance"}],
    "users.parquet": [
        _user(ALICE, "E000101", "Alice"),
        # a .NET-style 7-digit fraction with an offset: stored in the sandbox's UTC form
        _user(BOB, "E000102", "Bob", dateHired="2023-07-01T02:00:00.1234567+02:00"),
    ],
    "courses.parquet": [
        {"id": ONLINE, "name": "Code of Conduct", "courseType": "OnlineCourse", "activeStatus": 0},
        {"id": ILC, "name": "Orientation Day", "courseType": "InstructorLedCourse", "activeStatus": 0},
    ],
    "sessions.parquet": [],
    "chapters.parquet": [],
    "lessons.parquet": [],
}
ENROLLMENTS = {
    ONLINE: [_enrollment(1, ALICE, ONLINE, 3), _enrollment(2, BOB, ONLINE, 1)],
    ILC: [],
}


def write_snapshot(folder: Path, *, tables=TABLES, enrollments=ENROLLMENTS) -> dict:
    """A snapshot folder as the format document describes it; returns the manifest."""
    (folder / "enrollments").mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in tables.items():
        pq.write_table(
            pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())}), folder / name
        )
    for course_id, rows in enrollments.items():
        table = pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())})
        pq.write_table(table, folder / "enrollments" / f"{course_id}.parquet")
    for path in sorted(folder.rglob("*.parquet")):
        files[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    lines = "".join(f"{name} {files[name]}\n" for name in sorted(files))
    counts = {name.removesuffix(".parquet"): len(rows) for name, rows in tables.items()}
    counts["enrollments"] = sum(len(rows) for rows in enrollments.values())
    manifest = {
        "format": "absorb-portal-snapshot",
        "format_version": 1,
        "portal": {"base_url": "https://rest.myabsorb.eu", "api_user": "api.admin"},
        "pseudonymised": False,
        "counts": counts,
        "files": files,
        "checksum": hashlib.sha256(lines.encode()).hexdigest(),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


class SnapshotServer(SandboxServer):
    def __init__(self, snapshot: Path, **options) -> None:
        super().__init__(**options)
        self.snapshot = snapshot

    def command(self) -> list[str]:
        return [*super().command(), "--from-snapshot", str(self.snapshot)]


@pytest.fixture
def clone(tmp_path):
    write_snapshot(tmp_path / "snapshot")
    server = SnapshotServer(tmp_path / "snapshot", db_path=tmp_path / "clone.db", seed="none").start()
    yield server
    server.stop()


def _all(client: httpx.Client, path: str, key: str) -> list[dict]:
    page = client.get(path, params={"_limit": 1000})
    assert page.status_code == 200, page.text
    return page.json()[key]


def test_the_clone_serves_the_snapshot_rows(clone):
    with make_client(clone) as client:
        users = {u["id"]: u for u in _all(client, "/users", "users")}
        courses = _all(client, "/courses", "courses")
        enrollments = _all(client, f"/courses/{ONLINE}/enrollments", "enrollments")
        departments = _all(client, "/departments", "departments")
    alice = TABLES["users.parquet"][0]
    assert {key: users[ALICE][key] for key in alice} == alice
    assert users[BOB]["dateHired"] == "2023-07-01T00:00:00.123456Z"
    assert len(users) == 3  # and the sandbox's own API user
    assert [c["id"] for c in courses] == [ONLINE, ILC]
    assert [(d["id"], d["name"]) for d in departments] == [(DEPT, "Finance")]
    assert [(e["id"], e["userId"], e["status"], e["dateDue"]) for e in enrollments] == [
        (row["id"], row["userId"], row["status"], row["dateDue"]) for row in ENROLLMENTS[ONLINE]
    ]
    assert enrollments[0]["courseName"] == "Code of Conduct"
    assert enrollments[0]["fullName"] == "Alice Tester"


def test_an_instructor_led_course_without_a_session_in_the_snapshot_can_be_enrolled(clone):
    with make_client(clone) as client:
        created = client.post(f"/users/{ALICE}/enrollments/{ILC}")
        assert created.status_code in (200, 201), created.text
        sessions = client.get(f"/users/{ALICE}/enrollments/{ILC}/sessions").json()
    assert [s["name"] for s in sessions] == [PLACEHOLDER_SESSION_NAME]
    assert clone.stats()["write_calls"] == 1


def test_a_restart_keeps_the_clone_and_another_db_is_refused(tmp_path):
    folder = tmp_path / "snapshot"
    write_snapshot(folder)
    db = tmp_path / "clone.db"
    conn = open_snapshot_store(str(db), folder, "airflow.integration")
    conn.execute("UPDATE enrollments SET status = 5 WHERE id = ?", (ENROLLMENTS[ONLINE][1]["id"],))
    conn.close()
    again = open_snapshot_store(str(db), folder, "airflow.integration")
    status = again.execute("SELECT status FROM enrollments WHERE id = ?", (ENROLLMENTS[ONLINE][1]["id"],))
    assert status.fetchone()[0] == 5  # served as it was left, not reloaded
    again.close()

    seeded = tmp_path / "seeded.db"
    conn = store.connect(seeded)
    store.create_schema(conn)
    store.set_meta(conn, "seed", "small")
    conn.close()
    with pytest.raises(SnapshotLoadError, match="already holds the seed 'small'"):
        open_snapshot_store(str(seeded), folder, "airflow.integration")


def _tamper(folder: Path) -> None:
    path = folder / "users.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[0]["externalId"] = "E999999"
    pq.write_table(pa.Table.from_pylist(rows), path)


def _extra_file(folder: Path) -> None:
    pq.write_table(
        pa.Table.from_pylist([_enrollment(9, ALICE, ONLINE, 0)]), folder / "enrollments" / "x.parquet"
    )


def _unfinished(folder: Path) -> None:
    (folder / "manifest.json").unlink()
    (folder / "progress.json").write_text("{}")


def _other_version(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))


def _wrong_counts(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["counts"]["enrollments"] = 3
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_tamper, "users.parquet does not match its checksum"),
        (_extra_file, "enrollments/x.parquet is not in the manifest"),
        (_unfinished, "no manifest.json .an unfinished snapshot"),
        (_other_version, "version 2; this sandbox reads"),
        (_wrong_counts, "enrollments: 2 rows loaded, manifest says 3"),
    ],
)
def test_a_bad_snapshot_is_refused_whole(tmp_path, spoil, message):
    folder = tmp_path / "snapshot"
    write_snapshot(folder)
    spoil(folder)
    db = tmp_path / "clone.db"
    with pytest.raises(SnapshotLoadError, match=message):
        open_snapshot_store(str(db), folder, "airflow.integration")
    conn = store.connect(db)
    store.create_schema(conn)
    assert not store.is_seeded(conn)  # nothing half-loaded: a fixed snapshot loads into the same db
    assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
    conn.close()


def test_serve_names_the_problem_and_exits_2(tmp_path):
    folder = tmp_path / "snapshot"
    write_snapshot(folder)
    _tamper(folder)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "absorb_sandbox.cli",
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "c.db"),
            "--from-snapshot",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot serve" in done.stderr and "users.parquet does not match its checksum" in done.stderr


def test_a_snapshot_with_a_duplicate_id_is_refused_whole(tmp_path):
    """A portal that changed while it was paged can list a row twice: no clone without its keys."""
    folder = tmp_path / "snapshot"
    alice = TABLES["users.parquet"][0]
    write_snapshot(folder, tables={**TABLES, "users.parquet": [alice, {**alice, "username": "alice2"}]})
    db = tmp_path / "clone.db"
    with pytest.raises(SnapshotLoadError, match=r"holds a duplicate \(UNIQUE constraint failed: users.id\)"):
        open_snapshot_store(str(db), folder, "airflow.integration")
    conn = store.connect(db)
    store.create_schema(conn)
    assert not store.is_seeded(conn) and conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
    conn.close()
