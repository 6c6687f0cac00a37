"""Enroll / unenroll operators inside real DAG runs against the sandbox."""

from __future__ import annotations

import csv
import json
import uuid
from datetime import datetime

from absorb_provider.operators.enrollments import AbsorbEnrollUsersOperator, AbsorbUnenrollOperator
from absorb_sandbox import seed
from airflow.sdk import DAG, task

COURSE = seed.course_id("Workplace Safety")
UNKNOWN_USER = str(uuid.UUID(int=777, version=4))


def _free_users(hook, count: int) -> list[str]:
    enrolled = {e["userId"] for e in hook.list_course_enrollments(COURSE) if e.get("isActive", True)}
    return [
        u["id"] for u in hook.list_users(sort="externalId") if u.get("externalId") and u["id"] not in enrolled
    ][:count]


def test_enroll_from_csv_then_unenroll_from_xcom(absorb_connection, hook_for, run_dag, xcom_value, tmp_path):
    hook = hook_for(absorb_connection)
    users = _free_users(hook, 5)
    source = tmp_path / "enroll.csv"
    with source.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["user_id", "course_id", "due_date", "re_enroll"])
        writer.writeheader()
        for n, user in enumerate(users):
            writer.writerow(
                {
                    "user_id": user,
                    "course_id": COURSE,
                    "due_date": "2031-05-01" if n % 2 else "",
                    "re_enroll": "false",
                }
            )
    outcomes = tmp_path / "out" / "enroll.outcomes.csv"

    with DAG(
        "absorb_provider_test_enroll", schedule=None, start_date=datetime(2026, 1, 1), catchup=False
    ) as dag:
        enroll = AbsorbEnrollUsersOperator(
            task_id="enroll", source_path=str(source), outcome_path=str(outcomes)
        )

        @task
        def pick_ids(summary: dict) -> list[str]:
            with open(summary["outcome_path"].removeprefix("file://")) as handle:
                return [row["enrollment_id"] for row in csv.DictReader(handle)][:3]

        unenroll = AbsorbUnenrollOperator(
            task_id="unenroll",
            enrollment_ids=pick_ids(enroll.output),
            batch_size=2,
            outcome_path=str(tmp_path / "out" / "unenroll.parquet"),
        )

    dag_run, states = run_dag(dag)
    assert dag_run.state == "success", states
    summary = xcom_value(dag_run, "enroll")
    assert summary["counts"] == {"created": 5, "total": 5}
    assert summary["outcome_path"].endswith("enroll.outcomes.csv")
    with outcomes.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["key"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert {row["outcome"] for row in rows} == {"created"}
    assert xcom_value(dag_run, "unenroll")["counts"] == {"unenrolled": 3, "total": 3}
    active = {e["userId"] for e in hook.list_course_enrollments(COURSE) if e.get("isActive", True)}
    assert len(set(users) & active) == 2
    assert unenroll.template_fields and "enrollment_ids" in unenroll.template_fields

    # the three tasks shared one token through the Airflow Variable store
    assert absorb_connection.stats()["authenticate_calls"] <= 2
    from airflow.models import Variable as VariableModel

    key = f"absorb_token_secret__{hook.settings.identity}"
    sealed = VariableModel.get(key)
    assert sealed and hook.client.tokens.current().value not in sealed


def test_failed_items_fail_the_task_after_writing_outcomes(absorb_connection, hook_for, run_dag, tmp_path):
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

    with DAG(
        "absorb_provider_test_failures", schedule=None, start_date=datetime(2026, 1, 1), catchup=False
    ) as dag:
        AbsorbEnrollUsersOperator(task_id="strict", items=items, outcome_path=str(tmp_path / "strict.csv"))
        AbsorbEnrollUsersOperator(
            task_id="tolerant",
            items=items,
            outcome_path=str(tmp_path / "tolerant.jsonl"),
            fail_on_item_error=False,
        )
        AbsorbEnrollUsersOperator(
            task_id="bad_input", source_path=str(bad_file), outcome_path=str(tmp_path / "x.csv")
        )

    writes_before = absorb_connection.stats()["write_calls"]
    _, states = run_dag(dag)
    assert states == {"strict": "failed", "tolerant": "success", "bad_input": "failed"}
    with (tmp_path / "strict.csv").open() as handle:
        strict = {row["key"]: row for row in csv.DictReader(handle)}
    assert strict["ghost"]["outcome"] == "failed" and "not found" in strict["ghost"]["error"].lower()
    assert strict["good"]["outcome"] in ("created", "already_enrolled")
    tolerant = [json.loads(line) for line in (tmp_path / "tolerant.jsonl").read_text().splitlines()]
    assert [row["outcome"] for row in tolerant][1] == "failed"
    assert not (tmp_path / "x.csv").exists()  # invalid input: nothing applied, no outcomes
    # one good row created once (the other task found it enrolled); the ghost is refused by Absorb
    assert absorb_connection.stats()["write_calls"] - writes_before <= 3
