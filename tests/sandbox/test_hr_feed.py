"""The HR feed export: baseline rows, changes mixed in, read-only while the server runs."""

from __future__ import annotations

import csv
import subprocess
import sys

from absorb_sandbox.hr_feed import COLUMNS, export_hr_feed


def read(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def test_baseline_excludes_preprovisioned_and_the_api_user(sandbox, api, tmp_path):
    summary = export_hr_feed(sandbox.db_path, tmp_path / "feed.csv")
    rows = read(tmp_path / "feed.csv")
    users = api.get("/users", params={"_limit": 1000, "_filter": "externalId ne null"}).json()["users"]
    assert summary["rows"] == len(rows) == summary["baseline_rows"]
    share_missing = 1 - len(rows) / len(users)
    assert 0.05 <= share_missing <= 0.10, share_missing  # the pre-provisioned people
    ids = {row["employee_id"] for row in rows}
    assert len(ids) == len(rows) and all(i.startswith("E") for i in ids)
    by_id = {u["externalId"]: u for u in users}
    sample = rows[5]
    assert sample["email"] == by_id[sample["employee_id"]]["emailAddress"]
    assert {row["status"] for row in rows} == {"active", "leave", "terminated"}
    assert {row["department"] for row in rows} <= {
        "Engineering",
        "Sales",
        "Marketing",
        "Finance",
        "Human Resources",
        "Operations",
        "Customer Support",
        "Legal",
    }
    assert all(row["manager_id"] in ids or row["manager_id"] == "" for row in rows)
    assert all(len(row["hire_date"]) == 10 for row in rows)
    assert all(row["termination_date"] for row in rows if row["status"] == "terminated")


def test_changes_mix_hires_movers_and_leavers(sandbox, tmp_path):
    base = {r["employee_id"]: r for r in read_feed(sandbox, tmp_path / "base.csv", 0)}
    summary = export_hr_feed(sandbox.db_path, tmp_path / "changed.csv", changes=12, seed=4)
    changed = {r["employee_id"]: r for r in read(tmp_path / "changed.csv")}
    assert (len(summary["hires"]), len(summary["movers"]), len(summary["leavers"])) == (4, 4, 4)
    assert 1 <= len(summary["new_people"]) <= 2 and set(summary["new_people"]) <= set(summary["hires"])
    assert all(h not in base and h in changed for h in summary["hires"])
    for mover in summary["movers"]:
        assert (changed[mover]["department"], changed[mover]["location"]) != (
            base[mover]["department"],
            base[mover]["location"],
        )
    for leaver in summary["leavers"]:
        assert changed[leaver]["status"] == "terminated" and changed[leaver]["termination_date"]
    again = export_hr_feed(sandbox.db_path, tmp_path / "again.csv", changes=12, seed=4)
    assert again == {**summary, "path": str(tmp_path / "again.csv")}
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "changed.csv").read_text()


def read_feed(sandbox, path, changes):
    export_hr_feed(sandbox.db_path, path, changes=changes)
    return read(path)


def test_cli_writes_the_feed(sandbox, tmp_path):
    out = tmp_path / "cli.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "absorb_sandbox.cli",
            "hr-feed",
            "--db",
            sandbox.db_path,
            "--out",
            str(out),
            "--changes",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"hires"' in result.stdout and len(read(out)) > 150
