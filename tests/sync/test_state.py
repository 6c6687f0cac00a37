"""SyncState: round trips, atomic replacement, corruption is loud, concurrent writers lose nothing."""

from __future__ import annotations

import json
import os
import threading

import pytest
from absorb_sync.state import StateError, SyncState


def test_empty_state(tmp_path):
    state = SyncState(tmp_path / "state")
    assert state.last_accepted_feed() is None
    assert state.last_leavers() == []
    assert state.provenance_ids() == set()
    assert state.last_export() is None


def test_round_trip(tmp_path):
    state = SyncState(str(tmp_path / "state"))
    state.record_accepted_feed(row_count=120, active_count=100, run_id="run-1", leavers=["E2", "E1", "E2"])
    state.record_created(
        [
            {"enrollment_id": "e1", "user_id": "u1", "course_id": "c1", "rule": "r", "run_id": "run-1"},
            {"enrollment_id": "e2", "user_id": "u2", "course_id": "c1", "rule": None, "run_id": "run-1"},
        ]
    )
    state.record_export({"completed_count": 7, "rows": 40})
    again = SyncState(tmp_path / "state")
    feed = again.last_accepted_feed()
    assert {k: feed[k] for k in ("row_count", "active_count", "run_id")} == {
        "row_count": 120,
        "active_count": 100,
        "run_id": "run-1",
    }
    assert feed["accepted_at"].endswith("+00:00")
    assert again.last_leavers() == ["E1", "E2"]
    assert again.provenance_ids() == {"e1", "e2"}
    assert again.provenance()["e1"]["rule"] == "r"
    assert again.last_export() == {"completed_count": 7, "rows": 40}


def test_second_feed_replaces_the_first_and_keeps_history(tmp_path):
    state = SyncState(tmp_path)
    state.record_accepted_feed(row_count=1, active_count=1, run_id="a", leavers=[])
    state.record_accepted_feed(row_count=2, active_count=2, run_id="b", leavers=["E9"])
    assert state.last_accepted_feed()["run_id"] == "b"
    document = json.loads((tmp_path / "accepted_feed.json").read_text())
    assert [h["run_id"] for h in document["history"]] == ["a"]


def test_forget_removes_only_named_ids(tmp_path):
    state = SyncState(tmp_path)
    state.record_created([{"enrollment_id": f"e{i}"} for i in range(5)])
    state.forget(["e1", "e3", "unknown"])
    assert state.provenance_ids() == {"e0", "e2", "e4"}
    with pytest.raises(ValueError, match=r"rows \[0\] have no enrollment_id"):
        state.record_created([{"user_id": "u"}])


def test_a_crash_during_a_write_leaves_the_previous_state(tmp_path, monkeypatch):
    state = SyncState(tmp_path)
    state.record_created([{"enrollment_id": "e1"}])

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        state.record_created([{"enrollment_id": "e2"}])
    monkeypatch.undo()
    assert state.provenance_ids() == {"e1"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_corrupt_document_is_an_error_not_an_empty_state(tmp_path):
    (tmp_path / "provenance.json").write_text('{"enrollments": {"e1": ')
    with pytest.raises(StateError, match=r"provenance.json .* is not valid JSON"):
        SyncState(tmp_path).provenance_ids()


def test_concurrent_writers_lose_nothing(tmp_path):
    def writer(n):
        state = SyncState(tmp_path)
        for i in range(15):
            state.record_created([{"enrollment_id": f"w{n}-{i}"}])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(SyncState(tmp_path).provenance_ids()) == 90


def test_object_storage_roots(tmp_path):
    from airflow.sdk import ObjectStoragePath

    local = SyncState(ObjectStoragePath(f"file://{tmp_path}/obj"))
    local.record_created([{"enrollment_id": "e1"}])
    assert (tmp_path / "obj" / "provenance.json").exists()

    remote = SyncState("memory://absorb-tests/state")
    remote.record_accepted_feed(row_count=3, active_count=2, run_id="r", leavers=["E1"])
    remote.record_created([{"enrollment_id": "e1"}])
    remote.forget(["e1"])
    again = SyncState(ObjectStoragePath("memory://absorb-tests/state"))
    assert again.last_accepted_feed()["row_count"] == 3
    assert again.last_leavers() == ["E1"]
    assert again.provenance_ids() == set()


def test_export_summary_keeps_numbers_numeric(tmp_path):
    import numpy as np

    state = SyncState(tmp_path)
    state.record_export(
        {"completed": np.int64(7), "rate": np.float64(0.5), "tags": {"b", "a"}, "nan": np.nan}
    )
    assert SyncState(tmp_path).last_export() == {"completed": 7, "rate": 0.5, "tags": ["a", "b"], "nan": None}
    with pytest.raises(StateError, match=r"cannot store last_export\.json"):
        state.record_export({"bad": object()})
    assert SyncState(tmp_path).last_export()["completed"] == 7
