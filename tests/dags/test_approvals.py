"""Held plans wait for a person (issue 9 §1): dag.test against the sandbox, answered from a thread
the way the HITL REST route records an answer.

In order on one sandbox: a first sync without initial_load waits, is rejected (zero writes,
run success, summary says who), then approved (the plan is applied, summary/report name the
approver); a held unenrollment is approved; a held unenrollment with ``on_hold: fail`` fails at
once; the waiting approval and a failed run send mails to an SMTP sink.
"""

from __future__ import annotations

import json
import os
import socket
import threading

import pandas as pd
import pytest
from dagtools import Answer, all_enrollments, run_dag, run_dag_answering

SYNC = "absorb_hr_enrollment_sync"
UNENROLL = "absorb_bulk_unenrollment"
COMPLETE = 3
pytestmark = pytest.mark.timeout(900)


class MailSink:
    """A local SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                from email import message_from_bytes

                with sink.lock:
                    sink.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
                return "250 OK"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    def connection_json(self) -> str:
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": self.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.com"},
            }
        )

    def texts(self) -> list[str]:
        with self.lock:
            out = []
            for _, msg in self.messages:
                body = msg.get_payload(decode=True) if not msg.is_multipart() else None
                if body is None:
                    body = b"".join(
                        p.get_payload(decode=True) or b"" for p in msg.walk() if not p.is_multipart()
                    )
                out.append(f"{msg['Subject']}\n{body.decode('utf-8', 'replace')}")
            return out


@pytest.fixture(scope="module")
def mail(world):
    with MailSink() as sink:
        patch = pytest.MonkeyPatch()
        patch.setenv("AIRFLOW_CONN_SMTP_SINK", sink.connection_json())
        yield sink
        patch.undo()


@pytest.fixture(scope="module")
def baseline(world):
    return world.feed("baseline.csv")[0]


NOTIFY = {"notify_emails": ["hr-lead@example.com"], "smtp_conn_id": "smtp_sink"}


def test_a_held_first_apply_waits_and_a_rejection_writes_nothing(world, baseline, mail):
    writes = world.writes()
    answer = Answer("Reject", comment="wrong feed, HR-77", user="hr.lead")
    run = run_dag_answering(
        SYNC, world.output, {"feed_path": str(baseline), **NOTIFY}, "approve_plan", answer, world.writes
    )
    assert answer.seen["on_waiting"] == writes, "a write happened while the plan waited"
    assert world.writes() == writes
    assert run.state == "success", run.tasks  # a person decided: the run ends cleanly
    assert run.tasks["gate_plan"] == "success" and run.tasks["approve_plan"] == "success"
    for later in ("apply_plan", "verify_and_report", "leavers_to_hand_over", "trigger_unenrollment"):
        assert run.tasks[later] == "skipped", run.tasks
    body = answer.seen["body"]
    assert answer.seen["options"] == ["Approve", "Reject"] and "comment" in answer.seen["params"]
    assert "first apply against portal" in body and "enroll" in body and "plan.csv" in body
    assert "Top departments" in body and "(E" in body  # named people with their employee id
    summary = run.json("summary.json")
    assert summary["approval"]["decision"] == "rejected" and summary["approval"]["by"] == "hr.lead"
    assert summary["approval"]["comment"] == "wrong feed, HR-77" and summary["written"] == 0
    assert "rejected by hr.lead" in summary["outcome"] and "nothing was written" in summary["outcome"]
    assert "rejected by hr.lead" in run.text("report.html")
    assert world.state().last_accepted_feed() is None
    waiting = [t for t in mail.texts() if "waits for your approval" in t]
    assert waiting and run.run_id in waiting[-1] and "first apply against portal" in waiting[-1]


def test_an_approved_first_apply_is_applied_and_names_the_approver(world, baseline):
    before = {r["id"] for r in all_enrollments(world.hook())}
    writes = world.writes()
    answer = Answer("Approve", comment="first load, ticket HR-78", user="hr.lead")
    run = run_dag_answering(
        SYNC, world.output, {"feed_path": str(baseline)}, "approve_plan", answer, world.writes
    )
    assert answer.seen["on_waiting"] == writes, "a write happened before the approval"
    assert run.succeeded, run.tasks
    assert run.tasks["approve_plan"] == "success" and run.tasks["apply_plan"] == "success"
    created = {r["id"] for r in all_enrollments(world.hook())} - before
    summary = run.json("summary.json")
    assert created and summary["plan"]["enroll"] > 0 and summary["verification_mismatches"] == 0
    assert summary["approval"] == {
        "decision": "approved",
        "by": "hr.lead",
        "at": summary["approval"]["at"],
        "comment": "first load, ticket HR-78",
    }
    assert summary["approval"]["at"]
    assert world.state().last_accepted_feed() is not None  # the approval stood in for initial_load


def test_a_plan_within_the_thresholds_never_waits(world, baseline):
    run = run_dag(SYNC, world.output, {"feed_path": str(baseline)})
    assert run.succeeded, run.tasks
    assert run.tasks["approve_plan"] == "skipped" and run.tasks["apply_plan"] == "success"
    assert run.json("summary.json")["approval"] is None


def _people_with_open_enrollments(hook, count: int) -> list[str]:
    found = []
    for user in hook.list_users():
        if user.get("externalId") and any(
            e.get("isActive", True) and e["status"] != COMPLETE
            for e in hook.list_user_enrollments(user["id"])
        ):
            found.append(user["externalId"])
        if len(found) == count:
            break
    return found


def test_a_held_unenrollment_is_approved_from_a_one_per_line_list(world):
    hook = world.hook()
    people = _people_with_open_enrollments(hook, 2)
    writes = world.writes()
    answer = Answer("Approve", comment="leavers confirmed by HR, HR-80", user="hr.lead")
    run = run_dag_answering(
        UNENROLL,
        world.output,
        {"people": "\n".join(people) + "\n", "max_count": 1, "reason": "leavers"},
        "approve",
        answer,
        world.writes,
    )
    assert answer.seen["on_waiting"] == writes
    assert run.succeeded, run.tasks
    assert run.tasks["gate"] == "success" and run.tasks["approve"] == "success"
    assert "max_count 1" in answer.seen["body"] and "(E" in answer.seen["body"]
    targets = pd.read_csv(run.folder / "targets.csv", dtype=str)
    assert len(targets) > 1 and set(targets["employee_id"]) == set(people)
    summary = run.json("summary.json")
    assert summary["outcomes"]["unenrolled"] == len(targets)
    assert summary["approval"]["decision"] == "approved" and summary["approval"]["by"] == "hr.lead"
    for person in people:
        uid = next(u["id"] for u in hook.list_users() if u.get("externalId") == person)
        assert not [
            e for e in hook.list_user_enrollments(uid) if e.get("isActive", True) and e["status"] != COMPLETE
        ]


def test_on_hold_fail_fails_at_once_and_the_failure_is_mailed(world, mail):
    people = _people_with_open_enrollments(world.hook(), 2)
    writes = world.writes()
    before = len(mail.texts())
    run = run_dag(UNENROLL, world.output, {"people": people, "max_count": 0, "on_hold": "fail", **NOTIFY})
    assert run.state == "failed" and run.tasks["approve"] == "failed", run.tasks
    assert run.tasks["unenroll"] == "upstream_failed" and world.writes() == writes
    failed = [t for t in mail.texts()[before:] if "run failed" in t]
    assert failed and run.run_id in failed[0] and "on_hold=fail" in failed[0] and "max_count 0" in failed[0]


def test_notifications_are_off_without_recipients(world, mail):
    assert not os.environ.get("ABSORB_NOTIFY_EMAILS")
    people = _people_with_open_enrollments(world.hook(), 1)
    before = len(mail.texts())
    run = run_dag(UNENROLL, world.output, {"people": people, "max_count": 0, "on_hold": "fail"})
    assert run.state == "failed"
    assert len(mail.texts()) == before


def test_a_deadline_alert_mails_when_configured(mail, monkeypatch):
    """The daily sync carries a DeadlineAlert only when ABSORB_DEADLINE_HOURS and recipients are
    set; its callback mails them through the SMTP connection."""
    import subprocess
    import sys

    from absorb_sync.approval import deadline_missed
    from dagtools import DAGS_FOLDER

    probe = (
        "import sys; from airflow.dag_processing.dagbag import DagBag\n"
        "d = DagBag(dag_folder=sys.argv[1]).dags['absorb_hr_enrollment_sync']\n"
        "print(repr([(a.interval.total_seconds(), a.callback.path, a.callback.kwargs) for a in d.deadline or []]))"
    )
    env = {**os.environ, "ABSORB_DEADLINE_HOURS": "6", "ABSORB_NOTIFY_EMAILS": "ops@example.com"}
    on = subprocess.run(
        [sys.executable, "-c", probe, str(DAGS_FOLDER)], env=env, capture_output=True, text=True
    )
    assert on.returncode == 0, on.stderr[-2000:]
    assert "21600.0" in on.stdout and "absorb_sync.approval.deadline_missed" in on.stdout
    assert "ops@example.com" in on.stdout
    env.pop("ABSORB_DEADLINE_HOURS")
    off = subprocess.run(
        [sys.executable, "-c", probe, str(DAGS_FOLDER)], env=env, capture_output=True, text=True
    )
    assert off.returncode == 0 and off.stdout.strip().endswith("[]"), off.stdout

    before = len(mail.texts())
    deadline_missed(
        dag_id=SYNC,
        emails=["ops@example.com"],
        smtp_conn_id="smtp_sink",
        context={"dag_run": {"run_id": "r1"}},
    )
    sent = mail.texts()[before:]
    assert len(sent) == 1 and "has not succeeded by its deadline" in sent[0] and "r1" in sent[0]


def test_people_lines_and_mapping_presets():
    from absorb_sync.dag_defaults import effective_mapping, people_list
    from absorb_sync.jobs.runtime import InputError

    text = 'E000001\n\n# a comment\nann@example.com, E000002\n{"person": "E000003", "courses": ["Code of Conduct"]}\n'
    assert people_list(text) == [
        "E000001",
        "ann@example.com",
        "E000002",
        {"person": "E000003", "courses": ["Code of Conduct"]},
    ]
    assert (
        people_list('["E1", "E2"]') == ["E1", "E2"]
        and people_list(["E1"]) == ["E1"]
        and people_list(None) == []
    )
    assert effective_mapping({"mapping_preset": "workday", "column_mapping": None}) == "workday"
    assert effective_mapping({"mapping_preset": "canonical", "column_mapping": {"delimiter": ";"}}) == {
        "delimiter": ";"
    }
    with pytest.raises(InputError):
        effective_mapping({"mapping_preset": "custom", "column_mapping": None})


def test_the_approval_body_of_an_empty_plan_says_nothing_would_happen():
    from absorb_sync.approval import _plan_markdown

    body = _plan_markdown(
        plan=pd.DataFrame(columns=["action", "employee_id", "course_id"]),
        course_names={},
        people=None,
        reasons=["2 of 2 people match no Absorb user"],
        files=["/runs/x/targets.csv"],
        timeout_h=24,
        what="the unenrollment",
    )
    assert "nothing: no enrollment matched" in body and "2 of 2 people" in body and "targets.csv" in body
    assert "Top departments" not in body
