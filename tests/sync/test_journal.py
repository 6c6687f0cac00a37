"""The write journal: durable intents and outcomes, folded into provenance however the run ended."""

from __future__ import annotations

import absorb_sync.journal as journal_module
from absorb_sync.journal import (
    TAIL_BYTES,
    WriteJournal,
    fold_into_state,
    fold_records,
    last_record,
    read_records,
)
from absorb_sync.state import SyncState

U1, U2, C1 = "u-1", "u-2", "c-1"


def intent(key, action="enroll", user=U1, course=C1, enrollment_id=None, rule="r1"):
    return {
        "key": key,
        "action": action,
        "user_id": user,
        "course_id": course,
        "enrollment_id": enrollment_id,
        "rule": rule,
        "run_id": "run-1",
    }


def outcome(key, result, enrollment_id, user=U1, course=C1):
    return {
        "key": key,
        "outcome": result,
        "enrollment_id": enrollment_id,
        "user_id": user,
        "course_id": course,
    }


def journal(tmp_path, attempt="a1") -> WriteJournal:
    return WriteJournal(tmp_path / "journal", "run-1", attempt=attempt)


def test_created_outcomes_become_provenance_with_their_rule(tmp_path):
    first = journal(tmp_path)
    first.intents([intent(0), intent(1, user=U2, rule="r2")])
    first.outcomes([outcome(0, "created", "e-1"), outcome(1, "already_enrolled", "e-2", user=U2)])
    fold = fold_records(read_records(tmp_path / "journal", "run-1"))
    assert set(fold.created) == {"e-1"} and fold.created["e-1"]["rule"] == "r1"
    assert fold.adopted == 0  # an answered "already enrolled" is somebody else's enrollment


def test_a_lost_answer_is_adopted_from_the_retry_that_found_the_enrollment(tmp_path):
    crashed = journal(tmp_path, "a1")
    crashed.intents([intent(0), intent(1, user=U2)])
    crashed.outcomes([outcome(0, "created", "e-1")])  # killed before the second answer was written
    retry = journal(tmp_path, "a2")
    retry.intents([intent(0), intent(1, user=U2)])
    retry.outcomes([outcome(0, "already_enrolled", "e-1"), outcome(1, "already_enrolled", "e-2", user=U2)])
    fold = fold_records(read_records(tmp_path / "journal", "run-1"))
    assert set(fold.created) == {"e-1", "e-2"} and fold.adopted == 1


def test_a_lost_answer_is_adopted_from_a_later_read_of_absorb(tmp_path):
    crashed = journal(tmp_path)
    crashed.intents([intent(0), intent(1, user=U2), intent(2, action="re_enroll", enrollment_id="old")])
    records = read_records(tmp_path / "journal", "run-1")
    unresolved = fold_records(records)
    assert unresolved.unresolved == 3 and not unresolved.created
    current = {(U1, C1): "new"}  # U1 re-enrolled (a new id), U2 never written
    fold = fold_records(records, current)
    assert set(fold.created) == {"new"} and fold.unresolved == 0


def test_a_re_enrollment_whose_old_enrollment_is_still_active_is_not_adopted(tmp_path):
    journal(tmp_path).intents([intent(0, action="re_enroll", enrollment_id="old")])
    fold = fold_records(read_records(tmp_path / "journal", "run-1"), {(U1, C1): "old"})
    assert not fold.created


def test_a_failed_answer_may_still_have_been_applied(tmp_path):
    first = journal(tmp_path)
    first.intents([intent(0)])
    first.outcomes([outcome(0, "failed", None)])
    assert fold_records(read_records(tmp_path / "journal", "run-1"), {(U1, C1): "e-9"}).created.keys() == {
        "e-9"
    }


def test_lost_unenroll_answers_are_forgotten_when_absorb_no_longer_has_them(tmp_path):
    crashed = journal(tmp_path)
    crashed.intents([intent("e-5", action="unenroll", enrollment_id="e-5")])
    fold = fold_records(read_records(tmp_path / "journal", "run-1"), {})
    assert fold.removed == {"e-5"}


def test_a_torn_last_line_is_skipped(tmp_path):
    journal(tmp_path).intents([intent(0)])
    with open(tmp_path / "journal" / "run-1.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"type": "outc')  # the process died mid-write
    assert [r["type"] for r in read_records(tmp_path / "journal", "run-1")] == ["intent"]


def test_folding_into_state_is_idempotent_and_keeps_unresolved_journals_open(tmp_path):
    state = SyncState.for_portal(tmp_path / "state", key="k1", base_url="http://a", api_user="api")
    recorder = WriteJournal(state.location / "journal", "run-1")
    recorder.intents([intent(0), intent(1, user=U2)])
    recorder.outcomes([outcome(0, "created", "e-1")])
    first = fold_into_state(state)
    assert state.provenance_ids() == {"e-1"} and first["unresolved"] == 1
    second = fold_into_state(state, current={(U2, C1): "e-2"})  # the next planner's read
    assert state.provenance_ids() == {"e-1", "e-2"} and second["adopted"] == 1
    assert fold_into_state(state, current={})["journals"] == 0  # folded: nothing new


def test_a_folded_journal_is_recognised_from_its_tail_without_parsing_it(tmp_path, monkeypatch):
    state = SyncState.for_portal(tmp_path / "state", key="k1", base_url="http://a", api_user="api")
    directory = state.location / "journal"
    recorder = WriteJournal(directory, "run-1")
    recorder.intents([intent(n) for n in range(2000)])
    recorder.outcomes([outcome(n, "created", f"e-{n}") for n in range(2000)])
    assert (directory / "run-1.jsonl").stat().st_size > TAIL_BYTES  # a first load's journal, in small
    assert fold_into_state(state)["created"] == 2000
    assert last_record(directory, "run-1")["type"] == "folded"

    def whole_read(*args):
        raise AssertionError("a folded journal was parsed whole")

    monkeypatch.setattr(journal_module, "read_records", whole_read)
    assert fold_into_state(state)["journals"] == 0
    monkeypatch.undo()
    recorder.outcomes([outcome(2000, "created", "e-2000")])  # news after the marker: folded again
    assert last_record(directory, "run-1")["type"] == "outcome"
    assert fold_into_state(state)["journals"] == 1 and "e-2000" in state.provenance_ids()
    with open(directory / "run-1.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"type": "outc')  # torn after the marker
    assert last_record(directory, "run-1")["type"] == "folded"


def test_state_is_kept_per_portal(tmp_path):
    one = SyncState.for_portal(tmp_path, key="k1", base_url="http://a", api_user="api")
    two = SyncState.for_portal(tmp_path, key="k2", base_url="http://b", api_user="api")
    one.record_accepted_feed(row_count=3, active_count=2, run_id="r", leavers=["E3"], active_ids=["E1", "E2"])
    assert two.last_accepted_feed() is None and two.accepted_active_people() is None
    assert one.accepted_active_people() == ("r", {"E1", "E2"})
    assert (tmp_path / "portals" / "k1" / "portal.json").read_text().count("http://a") == 1


def test_a_portal_key_cannot_escape_the_state_root(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="portal key"):
        SyncState.for_portal(tmp_path, key="../other", base_url="http://a", api_user="api")


def test_a_journal_on_object_storage_puts_intents_at_once_answers_in_batches_and_folds_the_same():
    import uuid

    state = SyncState.for_portal(
        f"memory://absorb-test-{uuid.uuid4().hex}/state", key="k1", base_url="http://a", api_user="api"
    )
    recorder = WriteJournal(state.location / "journal", "run-1")
    recorder.intents([intent(0), intent(1, user=U2)])
    recorder.outcomes([outcome(0, "created", "e-1")])
    folder = state.location / "journal" / "run-1"
    assert len(list(folder.iterdir())) == 1  # the intents are put at once, answers in batches
    recorder.flush()
    parts = sorted(p.name for p in folder.iterdir())
    assert len(parts) == 2 and all(p.endswith(".jsonl") for p in parts)
    totals = fold_into_state(state, current={(U2, C1): "e-2"})
    assert totals["adopted"] == 1 and state.provenance_ids() == {"e-1", "e-2"}


def test_a_local_object_storage_path_is_kept_as_a_local_folder(tmp_path):
    """Runs hand the state root over as an ObjectStoragePath: locally it must stay one appended,
    locked file per journal, not an object per write."""
    from absorb_sync.jobs.runtime import storage_path

    state = SyncState.for_portal(
        storage_path(tmp_path / "state"), key="k1", base_url="http://a", api_user="x"
    )
    recorder = WriteJournal(state.location / "journal", "run-1")
    recorder.intents([intent(0)])
    recorder.outcomes([outcome(0, "created", "e-1")])
    assert [p.name for p in (tmp_path / "state" / "portals" / "k1" / "journal").iterdir()] == ["run-1.jsonl"]
