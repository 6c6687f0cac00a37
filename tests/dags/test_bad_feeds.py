"""Bad HR feeds fail the sync's feed gate with a clear message and make zero writes; writes that
Absorb refuses fail the run after it reported them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conftest import read_rows, write_rows
from dagtools import run_dag

SYNC = "absorb_hr_enrollment_sync"


@pytest.fixture(scope="module")
def baseline(world):
    """Today's feed, recorded as the last accepted one (the size-drift check compares with it)."""
    feed, _ = world.feed("baseline.csv")
    _, rows = read_rows(feed)
    active = sum(r["status"] == "active" for r in rows)
    world.state().record_accepted_feed(row_count=len(rows), active_count=active, run_id="seed", leavers=[])
    return feed


def empty(src: Path, out: Path) -> dict:
    out.write_bytes(b"")
    return {}


def header_only(src: Path, out: Path) -> dict:
    out.write_text(src.read_text().splitlines()[0] + "\n")
    return {}


def missing_column(src: Path, out: Path) -> dict:
    header, rows = read_rows(src)
    header.remove("email")
    write_rows(out, header, [{k: v for k, v in r.items() if k != "email"} for r in rows])
    return {}


def duplicate_ids(src: Path, out: Path) -> dict:
    header, rows = read_rows(src)
    rows[5]["employee_id"] = rows[4]["employee_id"]
    write_rows(out, header, rows)
    return {}


def bad_emails(src: Path, out: Path) -> dict:
    header, rows = read_rows(src)
    active = [r for r in rows if r["status"] == "active"]
    for row in active[: len(active) * 3 // 10]:  # 30 % of the active people: above the reject ceiling
        row["email"] = row["email"].replace("@", " at ")
    write_rows(out, header, rows)
    return {}


def wrong_delimiter(src: Path, out: Path) -> dict:
    out.write_text(src.read_text().replace(",", ";"))
    return {"column_mapping": {"delimiter": ","}}


def non_utf8(src: Path, out: Path) -> dict:
    lines = src.read_bytes().split(b"\n")
    lines[7] = lines[7].replace(b",", b",M\xfcller-", 1)  # cp1252 u-umlaut on line 8
    out.write_bytes(b"\n".join(lines))
    return {}


def half_size(src: Path, out: Path) -> dict:
    header, rows = read_rows(src)
    write_rows(out, header, rows[: len(rows) // 2])
    return {}


CASES: dict[str, tuple[Callable, str, str]] = {
    # kind: (maker, task that fails, text the verdict must contain)
    "empty": (empty, "extract_feed", "is empty"),
    "header_only": (header_only, "extract_feed", "no data rows"),
    "missing_column": (missing_column, "extract_feed", "email"),
    "duplicate_ids": (duplicate_ids, "validate_feed", "employee_id"),
    "bad_emails": (bad_emails, "validate_feed", "reject"),
    "wrong_delimiter": (wrong_delimiter, "extract_feed", "wrong delimiter"),
    "non_utf8": (non_utf8, "extract_feed", "line 8"),
    "half_size": (half_size, "validate_feed", "row count"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_feed_fails_the_gate_and_writes_nothing(world, baseline, kind):
    maker, failing_task, message = CASES[kind]
    feed = world.root / "feeds" / f"{kind}.csv"
    conf = {"feed_path": str(feed), **maker(baseline, feed)}
    writes = world.writes()
    run = run_dag(SYNC, world.output, conf)
    assert run.state == "failed"
    assert run.tasks[failing_task] == "failed", run.tasks
    assert run.tasks["apply_plan"] == "upstream_failed"
    assert world.writes() == writes
    verdict = run.text("feed_gate.json")
    assert message.lower() in verdict.lower(), verdict[:2000]


def test_refused_writes_fail_the_run_after_reporting_and_keep_the_baseline(world, baseline):
    """Absorb refuses enrollments into a multi-session ILC (422): the run reports every refusal,
    fails at verification, and does not accept the feed as the new baseline."""
    from absorb_sandbox.seed import MULTI_SESSION_ILC

    rules = world.root / "ilc_rules.yaml"
    rules.write_text(
        "version: 1\n"
        "rules:\n"
        "  - name: legal-workshop\n"
        "    match: {department: [Legal]}\n"
        f"    courses: [{{name: {MULTI_SESSION_ILC}}}]\n"
    )
    run = run_dag(SYNC, world.output, {"feed_path": str(baseline), "rules_path": str(rules)})
    assert run.state == "failed"
    assert run.tasks["apply_plan"] == "success" and run.tasks["verify_and_report"] == "failed"
    assert run.tasks["trigger_unenrollment"] == "upstream_failed"
    summary = run.json("summary.json")
    planned = summary["plan"]["enroll"]
    assert planned > 0 and summary["failed_writes"] == planned == summary["outcomes"]["failed"]
    outcomes = pd.read_csv(run.folder / "outcomes.csv")
    assert (outcomes["outcome"] == "failed").all() and outcomes["error"].str.contains("422").all()
    assert "failed_writes" in run.text("report.html")
    assert world.state().last_accepted_feed()["run_id"] == "seed"


def test_feed_over_the_size_limit_is_refused_before_parsing(world, baseline, monkeypatch):
    monkeypatch.setenv("ABSORB_MAX_FEED_BYTES", "2000")
    assert baseline.stat().st_size > 2000
    writes = world.writes()
    run = run_dag(SYNC, world.output, {"feed_path": str(baseline)})
    assert run.state == "failed"
    assert run.tasks["extract_feed"] == "failed" and run.tasks["apply_plan"] == "upstream_failed"
    assert world.writes() == writes
    verdict = run.json("feed_gate.json")
    assert verdict["passed"] is False
    assert (
        "the limit is 2,000 bytes" in verdict["feed_error"]
        and "ABSORB_MAX_FEED_BYTES" in verdict["feed_error"]
    )


def test_formula_names_are_quarantined_and_never_reach_absorb(world, baseline):
    """A hire whose name is a spreadsheet formula lands in rejects.csv (escaped), is not created in
    Absorb, and the clean hire next to it is."""
    header, rows = read_rows(baseline)
    template = next(r for r in rows if r["status"] == "active")
    hostile = {**template, "employee_id": "HOSTILE1", "first_name": '=HYPERLINK("http://evil.example","x")'}
    hostile["email"] = "hostile.one@example.com"
    clean = {**template, "employee_id": "CLEANHIRE1", "first_name": "Zoë", "email": "zoe.clean@example.com"}
    feed = write_rows(world.root / "feeds" / "formula.csv", header, [*rows, hostile, clean])
    run = run_dag(SYNC, world.output, {"feed_path": str(feed), "create_missing_users": True})
    assert run.tasks["validate_feed"] == "success", run.tasks
    rejects = pd.read_csv(run.folder / "rejects.csv", dtype=str, keep_default_na=False)
    row = rejects[rejects["employee_id"] == "HOSTILE1"].iloc[0]
    assert row["first_name"] == "'" + hostile["first_name"]  # escaped for spreadsheets
    assert row["reject_reason"].startswith("first_name '=HYPERLINK(")
    assert "spreadsheet formula" in row["reject_reason"]
    assert int(row["_line"]) == len(rows) + 2
    users = list(world.hook().list_users())
    assert not [u for u in users if str(u.get("firstName") or "").startswith("=")]
    external_ids = {u.get("externalId") for u in users}
    assert template["employee_id"] in external_ids  # the list is real
    assert "HOSTILE1" not in external_ids
    if run.tasks.get("resolve_people") == "success":
        assert "CLEANHIRE1" in external_ids
