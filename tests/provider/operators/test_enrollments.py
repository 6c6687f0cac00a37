"""Enroll / unenroll operators inside real DAG runs against the sandbox."""

from __future__ import annotations

import csv
import json
import uuid

from absorb_provider import token_store
from absorb_sandbox import seed

COURSE = seed.course_id("Workplace Safety")
UNKNOWN_USER = str(uuid.UUID(int=777, version=4))


def _free_users(hook, count: int) -> list[str]:
    enrolled = {e["userId"] for e in hook.list_course_enrollments(COURSE) if e.get("isActive", True)}
    users = [u["id"] for u in hook.list_users(sort="externalId") if u.get("externalId")]
    return [u for u in users if u not in enrolled][:count]


def test_enroll_from_csv_then_unenroll_from_xcom(
    absorb_connection, hook_for, provider_dag, run_dag, xcom_value, tmp_path
):
    hook = hook_for(absorb_connection)
    users = _free_users(hook, 5)
    source = tmp_path / "enroll.csv"
    with source.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["user_id", "course_id", "due_date", "re_enroll"])
        writer.writeheader()
        for n, user in enumerate(users):
            due = "2031-05-01" if n % 2 else ""
            writer.writerow({"user_id": user, "course_id": COURSE, "due_date": due, "re_enroll": "false"})
    out = tmp_path / "out"
    token_store._MANAGERS.clear()  # the tasks start without this process's token, as task processes do

    dag_run, states = run_dag(
        provider_dag("absorb_provider_test_enroll"), {"source_path": str(source), "out": str(out)}
    )

    assert dag_run.state == "success", states
    summary = xcom_value(dag_run, "enroll")
    assert summary["counts"] == {"created": 5, "total": 5}
    assert summary["outcome_path"].endswith("enroll.outcomes.csv")
    with (out / "enroll.outcomes.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["key"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert {row["outcome"] for row in rows} == {"created"}
    assert xcom_value(dag_run, "unenroll")["counts"] == {"unenrolled": 3, "total": 3}
    assert (out / "unenroll.parquet").exists()
    active = {e["userId"] for e in hook.list_course_enrollments(COURSE) if e.get("isActive", True)}
    assert len(set(users) & active) == 2

    # the tasks shared one token through the Airflow Variable store, sealed (no token in clear)
    assert absorb_connection.stats()["authenticate_calls"] <= 2
    from airflow.models import Variable as VariableModel

    sealed = VariableModel.get(f"absorb_token_secret__{hook.settings.identity}")
    assert sealed and hook.client.tokens.current().value not in sealed


def test_failed_items_fail_the_task_after_writing_outcomes(
    absorb_connection, hook_for, provider_dag, run_dag, tmp_path
):
    hook = hook_for(absorb_connection)
    (user,) = _free_users(hook, 1)
    items = [
        {"user_id": user, "course_id": COURSE, "key": "good"},
        {"user_id": UNKNOWN_USER, "course_id": COURSE, "key": "ghost"},
    ]
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(
        json.dumps([{"user_id": "nobody", "course_id": COURSE}, {"user_id": user, "course_id": "x"}])
    )
    writes_before = absorb_connection.stats()["write_calls"]

    _, states = run_dag(
        provider_dag("absorb_provider_test_failures"),
        {"rows": items, "bad_path": str(bad_file), "out": str(tmp_path)},
    )

    assert states == {"strict": "failed", "tolerant": "success", "bad_input": "failed"}
    with (tmp_path / "strict.csv").open() as handle:
        strict = {row["key"]: row for row in csv.DictReader(handle)}
    assert strict["ghost"]["outcome"] == "failed" and "not found" in strict["ghost"]["error"].lower()
    assert strict["good"]["outcome"] in ("created", "already_enrolled")
    tolerant = [json.loads(line) for line in (tmp_path / "tolerant.jsonl").read_text().splitlines()]
    assert [row["outcome"] for row in tolerant][1] == "failed"
    assert not (tmp_path / "bad.csv").exists()  # invalid input: nothing applied, no outcome file
    # the good row was written once (the other task found it enrolled); the ghost refused twice
    assert absorb_connection.stats()["write_calls"] - writes_before <= 3
