"""Wire formats (.NET TimeSpan, date-times, enums) and the command line."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime

from absorb_sandbox.seed import course_id

TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{2}):(\d{2}):(\d{2})(?:\.(\d{7}))?$")


def timespan_ticks(text: str) -> int:
    days, hours, minutes, seconds, fraction = TIMESPAN.match(text).groups()
    whole = ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + int(seconds)
    return whole * 10_000_000 + int(fraction or 0)


def test_time_spent_is_a_timespan_matching_the_ticks(api):
    rows = api.get(f"/courses/{course_id('Code of Conduct')}/enrollments", params={"_limit": 1000}).json()[
        "enrollments"
    ]
    assert any(r["timeSpentTicks"] for r in rows)
    for row in rows:
        assert TIMESPAN.match(row["timeSpent"]), row["timeSpent"]
        assert timespan_ticks(row["timeSpent"]) == row["timeSpentTicks"]


def test_dates_are_iso_utc_and_statuses_in_the_enum(api):
    rows = api.get(
        f"/courses/{course_id('Information Security Awareness')}/enrollments", params={"_limit": 1000}
    ).json()["enrollments"]
    now = datetime.now().astimezone()
    for row in rows:
        assert 0 <= row["status"] <= 12
        for key in ("dateAdded", "dateEdited", "dateStarted", "dateCompleted", "dateDue"):
            if row[key]:
                parsed = datetime.fromisoformat(row[key])
                assert parsed.tzinfo is not None
                if key != "dateDue":
                    assert parsed <= now
        assert (row["dateCompleted"] is not None) == (row["status"] == 3)


def test_help_documents_the_fault_spec():
    result = subprocess.run(
        [sys.executable, "-m", "absorb_sandbox.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "seed=7,error=0.1,429=0.05,drop=0.02,latency=0.05:200ms" in "".join(result.stdout.split())
    assert "--token-ttl" in result.stdout and "--rate-limit" in result.stdout


def test_bad_faults_on_the_command_line_stop_the_server(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "absorb_sandbox.cli",
            "serve",
            "--db",
            str(tmp_path / "x.db"),
            "--port",
            "0",
            "--faults",
            "error=7",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "invalid --faults" in result.stderr


def test_paged_rows_equal_the_single_enrollment_shape(api):
    """Pages are rendered to JSON by SQLite, single enrollments by Python: the two must agree."""
    page = api.get(
        f"/courses/{course_id('Code of Conduct')}/enrollments",
        params={"_limit": 1000, "_filter": "timeSpentTicks gt 0 or status eq 3 or isActive eq false"},
    ).json()
    sample = page["enrollments"][:: max(1, len(page["enrollments"]) // 15)]
    assert len(sample) >= 10
    for row in sample:
        assert api.get(f"/enrollments/{row['id']}").json() == row
