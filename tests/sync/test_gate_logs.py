"""What the gates write to the task log: one line per check (status, observed, allowed), one verdict
line, and nothing from Great Expectations below WARNING. Real validation runs, captured by caplog."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

from absorb_sync.gates import validate_export, validate_feed
from absorb_sync.gates.logging import log_checks

from .helpers import TODAY, people_frame
from .test_gates_export import clean_rows, export_frame

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _gate_lines(caplog, gate: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(f"gate {gate}:")]


def _gx_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("great_expectations")]


def test_feed_gate_logs_one_line_per_check_and_its_verdict(caplog, staff):
    staff[3]["email"] = "not-an-email"
    caplog.set_level(logging.INFO)
    result = validate_feed(people_frame(staff), previous_row_count=10, today=TODAY)

    lines = _gate_lines(caplog, "hr_feed")
    evaluated = result.statistics["evaluated_checks"]
    assert len(lines) == evaluated + 1  # every check, then the verdict
    checks, verdict = [r.getMessage() for r in lines[:-1]], lines[-1].getMessage()
    assert all(" | observed: " in m and " | allowed: " in m for m in checks)
    assert "gate hr_feed: PASS   column email is present | observed: present | allowed: present" in checks
    drift = next(m for m in checks if "row count within ±20%" in m)
    assert drift.startswith("gate hr_feed: PASS") and "observed: 10 | allowed: 8..12" in drift
    email = next(m for m in checks if "active people have a valid email" in m)
    assert email.startswith("gate hr_feed: REJECT") and "observed: 1 of 10 rows" in email
    assert verdict.startswith(f"gate hr_feed: verdict PASSED - {evaluated} checks: ")
    assert "1 rejecting rows" in verdict
    assert "row_count=10" in verdict and "rejected_count=1" in verdict
    assert lines[-1].levelno == logging.INFO
    assert not _gx_records(caplog), [r.getMessage() for r in _gx_records(caplog)][:5]


def test_feed_gate_failure_is_logged_as_a_warning_with_observed_and_allowed(caplog, staff):
    caplog.set_level(logging.INFO)
    result = validate_feed(people_frame(staff), previous_row_count=20, today=TODAY)
    assert not result.passed

    lines = _gate_lines(caplog, "hr_feed")
    failed = [r for r in lines if " FAIL " in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert "observed: 10 | allowed: 16..24" in failed[0].getMessage()
    assert lines[-1].getMessage().startswith("gate hr_feed: verdict FAILED")
    assert lines[-1].levelno == logging.WARNING
    assert "1 failed" in lines[-1].getMessage()


def test_export_gate_logs_exact_counts_over_all_rows(caplog):
    rows = clean_rows()
    rows[1]["progress"] = 140.0
    caplog.set_level(logging.INFO)
    result = validate_export(export_frame(rows), previous_completed_count=1, now=NOW)
    assert not result.passed

    lines = _gate_lines(caplog, "completion_export")
    assert len(lines) == result.statistics["evaluated_checks"] + 1
    progress = next(r.getMessage() for r in lines if "progress is empty or within 0..100" in r.getMessage())
    assert progress.startswith("gate completion_export: FAIL")
    assert f"observed: 1 of {len(rows)} rows | allowed: 0 rows" in progress
    completed = next(r.getMessage() for r in lines if "completed count does not drop" in r.getMessage())
    assert "allowed: >= 1" in completed
    assert lines[-1].getMessage().startswith("gate completion_export: verdict FAILED")
    assert not _gx_records(caplog)


def test_gx_import_and_first_run_log_nothing_below_warning():
    """In a fresh process (as a task is), importing GX through a gate logs none of its INFO lines."""
    script = textwrap.dedent(
        """
        import logging, sys
        sys.path.insert(0, sys.argv[1])
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record)
        logging.basicConfig(level=logging.INFO)
        logging.getLogger().addHandler(Keep())
        from sync.helpers import TODAY, people_frame, person
        from absorb_sync.gates import validate_feed
        validate_feed(people_frame([person("E000001")]), previous_row_count=None, today=TODAY)
        gx = [r for r in records if r.name.startswith("great_expectations") and r.levelno < logging.WARNING]
        gate = [r for r in records if r.getMessage().startswith("gate hr_feed:")]
        print(len(gx), len(gate))
        """
    )
    tests_dir = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", script, tests_dir], capture_output=True, text=True, timeout=300, check=True
    )
    gx_lines, gate_lines = map(int, out.stdout.split()[-2:])
    assert gx_lines == 0
    assert gate_lines > 10


def test_log_checks_for_other_gates(caplog):
    logger = logging.getLogger("absorb_sync.test_gate")
    caplog.set_level(logging.INFO, logger="absorb_sync.test_gate")
    log_checks(
        logger,
        "plan",
        [
            {"name": "removals", "passed": False, "observed": "12.5% (25 of 200)", "allowed": "<= 10%"},
            {"name": "additions", "passed": True, "observed": 4, "allowed": None},
        ],
        "held",
        counts={"enroll": 4, "unenroll": 25},
    )
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "gate plan: FAIL   removals | observed: 12.5% (25 of 200) | allowed: <= 10%",
        "gate plan: PASS   additions | observed: 4 | allowed: -",
        "gate plan: verdict HELD - 2 checks: 1 failed, 1 passed | enroll=4 unenroll=25",
    ]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO, logging.WARNING]


def test_the_unenrollment_gate_logs_one_line_per_check_and_its_verdict(tmp_path):
    from absorb_sync.jobs.runtime import storage_path
    from absorb_sync.jobs.unenroll import gate_targets

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):  # Airflow's logging set-up replaces caplog's root handler
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    resolved = {
        "people_requested": 4,
        "people_resolved": 1,
        "unresolved": ["E1", "E2", "E3"],
        "targets": 7,
        "people_affected": 1,
        "active_users": 100,
    }
    logger, keep = logging.getLogger("absorb_sync.jobs.unenroll"), Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        decision = gate_targets(
            folder=storage_path(tmp_path),
            resolved=resolved,
            max_count=5,
            max_share_pct=10.0,
            override=False,
            override_reason=None,
        )
    finally:
        logger.removeHandler(keep)
    lines = [r.getMessage() for r in records if r.getMessage().startswith("gate unenrollment:")]
    assert decision["held"] and len(lines) == 4
    assert "FAIL" in lines[0] and "3 of 4 unmatched (75%)" in lines[0]
    assert "FAIL" in lines[1] and "observed: 7" in lines[1] and "allowed: <= 5" in lines[1]
    assert "PASS" in lines[2] and lines[3].startswith("gate unenrollment: verdict HELD")
