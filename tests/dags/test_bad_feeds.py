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
