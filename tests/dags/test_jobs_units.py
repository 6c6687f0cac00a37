"""Unit tests of the small pure pieces of the job modules (no server, no Airflow run)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from absorb_sync.jobs.export import export_window, last_feed_people, window_filter
from absorb_sync.jobs.runtime import run_key, storage_path, write_frame
from absorb_sync.jobs.unenroll import collect_requests, parse_requests

NOW = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
DAY_START, DAY_END = datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC)


def window(**overrides):
    args = dict(
        full_export=False,
        scheduled=True,
        interval_start=DAY_START,
        interval_end=DAY_END,
        last_export=None,
        now=NOW,
    )
    args.update(overrides)
    return export_window(**args)


def test_scheduled_runs_export_their_data_interval():
    assert window() == {"full": False, "since": DAY_START.isoformat(), "until": DAY_END.isoformat()}
    assert window_filter(window()) == (
        "dateEdited ge datetime'2026-11-26T00:00:00Z' and dateEdited lt datetime'2026-11-27T00:00:00Z'"
    )


def test_manual_runs_continue_from_the_last_export_or_go_full():
    last = {"until": "2026-11-25T10:00:00+00:00"}
    assert window(scheduled=False, last_export=last) == {
        "full": False,
        "since": last["until"],
        "until": NOW.isoformat(),
    }
    ragged = window(scheduled=False, last_export=last, now=NOW.replace(microsecond=999_999))
    assert ragged["until"] == NOW.isoformat()  # whole seconds: the next window starts exactly there
    first = window(scheduled=False)
    assert first["full"] is True and window_filter(first) is None
    assert window(full_export=True, last_export=last)["full"] is True


def test_run_key_is_a_safe_folder_name():
    assert run_key("manual__2026-11-27T15:56:03.581965+00:00") == "manual__2026-11-27T15_56_03.581965_00_00"


def test_last_feed_people_finds_the_accepted_snapshot(tmp_path):
    from absorb_sync.state import SyncState

    state = SyncState(str(tmp_path / "state"))
    root = storage_path(tmp_path / "out")
    assert last_feed_people(state, root) is None
    people = pd.DataFrame({"employee_id": ["E000001"], "department": ["Legal"]})
    write_frame(root / "absorb_hr_enrollment_sync" / run_key("scheduled__x:1") / "accepted.parquet", people)
    state.record_accepted_feed(row_count=1, active_count=1, run_id="scheduled__x:1", leavers=["E000009"])
    assert last_feed_people(state, root).to_pylist() == people.to_dict("records")  # an Arrow table


def test_unenrollment_requests_merge_per_person():
    requests, skipped = collect_requests(
        people=["E000001", {"person": "e000002", "courses": ["Code of Conduct"]}],
        people_file=None,
        use_last_leavers=False,
        state=None,
    )
    assert skipped == []
    assert requests == [
        {"person": "E000001", "courses": []},
        {"person": "e000002", "courses": ["Code of Conduct"]},
    ]
    merged, _ = collect_requests(
        people=[
            {"person": "E1", "courses": ["A"]},
            {"person": "e1", "courses": "B;C"},
            "E2",
            {"person": "E2", "courses": ["A"]},
        ],
        people_file=None,
        use_last_leavers=False,
        state=None,
    )
    assert merged == [{"person": "E1", "courses": ["A", "B", "C"]}, {"person": "E2", "courses": []}]


@pytest.mark.parametrize("bad", ["", {"courses": ["A"]}, 42])
def test_unenrollment_rejects_unreadable_people(bad):
    with pytest.raises(ValueError, match="people item 1"):
        parse_requests([bad])
