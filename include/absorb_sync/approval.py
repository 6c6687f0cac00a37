"""A held plan waits for a person: the approval task, its Markdown body, and who gets told.

When the sync's plan gate or the unenrollment gate holds a plan (over a threshold, a shrunken feed,
a first apply on a portal), the run does not fail: it waits at an approval task
(:class:`PlanApprovalOperator`, Airflow's human-in-the-loop operator) whose body says in Markdown
what would happen. **Approve** (a comment is required) lets the writes go ahead; **Reject**, or no
answer within ``approval_timeout_hours``, ends the run with zero writes:

- rejected: the approval task succeeds, every later task is skipped, ``summary.json`` and the
  report say "rejected by X: comment" -- the run is *success* (a person decided, nothing broke);
- no answer: the same, but the approval task fails, so the run is *failed* and the failure mail
  goes out -- nobody decided, someone must look.

A plan that needs no approval (within the thresholds, or overridden with a reason) never waits:
the approval task skips itself at once. An incomplete Absorb read is never offered for approval:
the gate fails the run (there is nothing a person could approve).

DAG files import this module at parse time: only ``airflow.sdk`` and the HITL operator at the top.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import BaseNotifier, Param
from airflow.sdk.bases.skipmixin import SkipMixin

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

APPROVE, REJECT = "Approve", "Reject"
DEFAULT_TIMEOUT_HOURS = 24.0
SAMPLE_PEOPLE = 10
TOP = 8


# ---------------------------------------------------------------- the approval record


def approval_record(event: Mapping[str, Any]) -> dict:
    """What the summary keeps of an answer: ``{"decision", "by", "at", "comment"}``.

    ``decision`` is ``approved``, ``rejected`` or ``no_answer`` (the response timeout passed and the
    default, Reject, was taken: nobody answered)."""
    chosen = list(event.get("chosen_options") or [])
    user = event.get("responded_by_user") or {}
    timed_out = bool(event.get("timedout")) or event.get("error_type") == "timeout" or not user
    at = event.get("responded_at")
    comment = str((event.get("params_input") or {}).get("comment") or "").strip() or None
    decision = "no_answer" if timed_out else "approved" if chosen == [APPROVE] else "rejected"
    return {
        "decision": decision,
        "by": None if timed_out else (user.get("name") or user.get("id")),
        "at": at.isoformat() if hasattr(at, "isoformat") else at,
        "comment": comment,
    }


def verdict_line(record: Mapping[str, Any], timeout_hours: float | None = None) -> str:
    """One sentence for logs, summary and report: who decided what (or that nobody did)."""
    if record["decision"] == "approved":
        return f"approved by {record['by']} at {record['at']}: {record['comment']}"
    if record["decision"] == "rejected":
        return f"rejected by {record['by']} at {record['at']}: {record['comment'] or '(no comment)'}; nothing was written"
    limit = f" within {timeout_hours:g} h" if timeout_hours else ""
    return f"no answer{limit}: nothing was written"


def timeout_hours(params: Mapping[str, Any]) -> float:
    value = params.get("approval_timeout_hours")
    return float(DEFAULT_TIMEOUT_HOURS if value is None else value)


def assigned_users(
    params: Mapping[str, Any], conn_extra: Mapping[str, Any] | None = None
) -> list[dict] | None:
    """``approvers`` from the Param, else from the Absorb connection's extra; ``None``: anyone may answer.

    Each entry is a user id/name string (id = name, as the simple auth manager knows users) or
    ``{"id": ..., "name": ...}``."""
    raw = params.get("approvers") or (conn_extra or {}).get("approvers") or []
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.replace("\n", ",").split(",")]
    users = []
    for entry in raw:
        if isinstance(entry, Mapping) and entry.get("id"):
            users.append({"id": str(entry["id"]), "name": str(entry.get("name") or entry["id"])})
        elif isinstance(entry, str) and entry.strip():
            users.append({"id": entry.strip(), "name": entry.strip()})
    return users or None


# ---------------------------------------------------------------- Markdown bodies


def _md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


ACTION_WORDS = {
    "enroll": "enroll",
    "re_enroll": "re-enroll",
    "update_due_date": "change due date",
    "unenroll": "remove enrollment",
}


def _person(first: Any, last: Any, employee_id: Any) -> str:
    name = " ".join(str(p) for p in (first, last) if p is not None and p == p and str(p).strip())
    return f"{name} ({employee_id})" if name else str(employee_id)


def sync_body(*, folder: Any, decision: Mapping[str, Any], timeout_h: float) -> str:
    """What the held sync plan would do, for the person deciding (Markdown)."""
    from absorb_sync.jobs.runtime import read_frame, read_json

    plan = read_frame(folder / "plan.parquet")
    names_file = folder / "rule_courses.json"
    course_names = read_json(names_file) if names_file.exists() else {}
    people = read_frame(folder / "accepted.parquet") if (folder / "accepted.parquet").exists() else None
    return _plan_markdown(
        plan=plan,
        course_names=course_names,
        people=people,
        reasons=decision.get("reasons") or [],
        files=[folder / "plan.csv", folder / "report.html", folder / "plan_decision.json"],
        timeout_h=timeout_h,
        what="the HR sync plan",
        users=read_frame(folder / "user_plan.parquet") if (folder / "user_plan.parquet").exists() else None,
    )


USER_WORDS = {
    "create_user": "create user",
    "reactivate_user": "reactivate user (rehire)",
    "update_user": "update user",
    "deactivate_user": "deactivate user (leaver)",
}


def _users_markdown(users: pd.DataFrame | None) -> list[str]:
    """The user changes of a held plan, by name (user_plan.csv has every field)."""
    if users is None or users.empty:
        return []
    words = users["action"].map(lambda a: USER_WORDS.get(a, a))
    counts = words.value_counts()
    out = ["", "**Absorb users** (" + ", ".join(f"{w}: {n}" for w, n in counts.items()) + ")", ""]
    sample = users.head(SAMPLE_PEOPLE)
    rows = [
        (
            f"{line['name']} ({line['employee_id']})",
            USER_WORDS.get(line["action"], line["action"]),
            line["reason"],
        )
        for line in sample.to_dict("records")
    ]
    out.append(_md_table(["person", "change", "why"], rows))
    if len(users) > len(sample):
        out.append(f"\n… and {len(users) - len(sample)} more in `user_plan.csv`.")
    return out


def _plan_markdown(
    *,
    plan: pd.DataFrame,
    course_names: Mapping[str, str],
    people: pd.DataFrame | None,
    reasons: list[str],
    files: list[Any],
    timeout_h: float,
    what: str,
    users: pd.DataFrame | None = None,
) -> str:
    import pandas as pd

    plan = plan.copy()
    plan["course"] = plan["course_id"].map(lambda c: course_names.get(c) or c)
    plan["what"] = plan["action"].map(lambda a: ACTION_WORDS.get(a, a))
    if people is not None and len(people):
        info = people.drop_duplicates("employee_id").set_index("employee_id")
        plan["department"] = plan["employee_id"].map(info.get("department", pd.Series(dtype=object)))
        plan["person"] = [
            _person(info["first_name"].get(e), info["last_name"].get(e), e) if e in info.index else str(e)
            for e in plan["employee_id"]
        ]
    else:
        plan["department"] = plan.get("department")
        plan["person"] = plan["employee_id"].astype(str)
    plan["department"] = plan["department"].fillna("(unknown)")
    out = [f"**Why this waits for you:** {what} was held before any write to Absorb."]
    out += [f"- {r}" for r in reasons]
    out += _users_markdown(users)
    files_line = "**Full plan:** " + ", ".join(f"`{f}`" for f in files)
    if plan.empty:
        nothing = (
            "no enrollment change" if users is not None and len(users) else "nothing: no enrollment matched"
        )
        return "\n".join([*out, "", f"**What would happen to enrollments:** {nothing}.", "", files_line])
    counts = plan.groupby("what").size().sort_values(ascending=False)
    out += ["", "**What would happen** (" + ", ".join(f"{w}: {n}" for w, n in counts.items()) + ")", ""]
    by_course = plan.groupby(["what", "course"]).size().reset_index(name="n")
    by_course = by_course.sort_values(["n", "what", "course"], ascending=[False, True, True]).head(3 * TOP)
    out.append(_md_table(["action", "course", "enrollments"], by_course[["what", "course", "n"]].values))
    depts = plan.groupby("department")["employee_id"].nunique().sort_values(ascending=False).head(TOP)
    out += ["", "**Top departments affected** (people)", ""]
    out.append(_md_table(["department", "people"], depts.items()))
    sample = plan.drop_duplicates("employee_id").head(SAMPLE_PEOPLE)
    total_people = plan["employee_id"].nunique()
    out += ["", f"**Some of the {total_people} people** (first {len(sample)})", ""]
    out.append(
        _md_table(
            ["person", "department", "action", "course"],
            sample[["person", "department", "what", "course"]].values,
        )
    )
    out += ["", files_line]
    out += [
        "",
        f"**Approve** (a comment is required: who asked, the ticket) to apply it. **Reject**, or no "
        f"answer within {timeout_h:g} h, ends the run with nothing written.",
    ]
    return "\n".join(out)


def unenroll_body(*, folder: Any, decision: Mapping[str, Any], hook: Any, timeout_h: float) -> str:
    """What the held unenrollment would remove (Markdown); names come from one read of the users."""
    import pandas as pd

    with (folder / "targets.csv").open("r", encoding="utf-8") as handle:
        targets = pd.read_csv(handle, dtype=str)
    people = None
    if len(targets):
        users = [u for u in hook.list_users() if u.get("id") in set(targets["user_id"])]
        departments = {}
        if any(u.get("departmentId") for u in users):
            departments = {d["id"]: d.get("name") for d in hook.list_departments()}
        people = pd.DataFrame(
            [
                {
                    "employee_id": u.get("externalId") or u.get("username") or u["id"],
                    "user_id": u["id"],
                    "first_name": u.get("firstName"),
                    "last_name": u.get("lastName"),
                    "department": departments.get(u.get("departmentId")),
                }
                for u in users
            ],
            columns=["employee_id", "user_id", "first_name", "last_name", "department"],
        )
        ids = dict(zip(people["user_id"], people["employee_id"], strict=True))
        targets["employee_id"] = targets["user_id"].map(ids).fillna(targets["employee_id"])
    names = dict(zip(targets.get("course_id", []), targets.get("course_name", []), strict=True))
    targets["action"] = "unenroll"
    return _plan_markdown(
        plan=targets,
        course_names={k: v for k, v in names.items() if isinstance(v, str)},
        people=people,
        reasons=decision.get("reasons") or [],
        files=[folder / "targets.csv", folder / "decision.json"],
        timeout_h=timeout_h,
        what="the unenrollment",
    )


# ---------------------------------------------------------------- notifications


def notify_emails(params: Mapping[str, Any] | None) -> list[str]:
    """Recipients: the ``notify_emails`` Param, else env ``ABSORB_NOTIFY_EMAILS``; empty: off."""
    raw = (params or {}).get("notify_emails") or os.environ.get("ABSORB_NOTIFY_EMAILS") or []
    if isinstance(raw, str):
        raw = raw.replace(";", ",").replace("\n", ",").split(",")
    return [str(e).strip() for e in raw if str(e).strip()]


def send_mail(
    *, to: list[str], subject: str, text: str, smtp_conn_id: str | None, context: Any = None
) -> None:
    """Through the SMTP provider's ``SmtpNotifier`` (connection ``smtp_conn_id``, default ``smtp_default``)."""
    from html import escape

    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(
        to=to,
        subject=subject,
        html_content=f"<pre>{escape(text)}</pre>",
        smtp_conn_id=smtp_conn_id or "smtp_default",
    )
    notifier.notify(context or {})


class RunMailNotifier(BaseNotifier):
    """Mails the run's people (``notify_emails``) when a plan waits, a task fails, or a deadline passes.

    Off unless recipients are configured. Never raises: a mail problem must not change a run."""

    template_fields = ()

    def __init__(self, event: str, reason: str | None = None):
        super().__init__()
        self.event = event
        self.reason = reason

    def notify(self, context: Any) -> None:
        params = context.get("params") or {}
        to = notify_emails(params)
        if not to:
            return
        dag_run = context.get("dag_run")
        ti = context.get("ti") or context.get("task_instance")
        dag_id = getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", "?")
        run_id = getattr(dag_run, "run_id", None) or getattr(ti, "run_id", "?")
        task_id = getattr(ti, "task_id", None)
        reason = self.reason or str(context.get("exception") or "") or self.event
        headline = {
            "held": "a plan waits for your approval",
            "failed": "run failed",
            "deadline": "has not succeeded by its deadline",
        }.get(self.event, self.event)
        subject = f"[Absorb] {dag_id}: {headline} ({run_id})"
        lines = [f"DAG: {dag_id}", f"Run: {run_id}"]
        if task_id:
            lines.append(f"Task: {task_id}")
        lines += ["", f"Reason: {reason}"]
        if self.event == "held":
            lines += ["", "Answer it in Airflow under Browse -> Required actions (Approve needs a comment)."]
        try:
            send_mail(
                to=to,
                subject=subject,
                text="\n".join(lines),
                smtp_conn_id=params.get("smtp_conn_id"),
                context=context,
            )
        except Exception:  # a notification must never fail or change the run
            log.exception("could not send the %s mail to %s", self.event, to)


def deadline_missed(
    *, dag_id: str, emails: list[str], smtp_conn_id: str | None = None, context: Any = None
) -> None:
    """``DeadlineAlert`` callback: the daily sync has not succeeded by the configured time."""
    dag_run = (context or {}).get("dag_run") or {}
    run_id = dag_run.get("run_id") if isinstance(dag_run, Mapping) else getattr(dag_run, "run_id", None)
    text = (
        f"DAG: {dag_id}\nRun: {run_id}\n\nThe run has not succeeded by its deadline: look at it in Airflow "
        "(a plan waiting for approval, a failed gate, a full pool...)."
    )
    send_mail(
        to=list(emails),
        subject=f"[Absorb] {dag_id}: has not succeeded by its deadline ({run_id})",
        text=text,
        smtp_conn_id=smtp_conn_id,
    )


# ---------------------------------------------------------------- the operator


def approval_params() -> dict[str, Param]:
    """The Params the sync and unenrollment forms share about holds, approvals and notifications."""
    return {
        "on_hold": Param(
            "wait",
            type="string",
            enum=["wait", "fail"],
            title="When the gate holds a plan",
            description="wait: the run waits at the approval task until someone approves or rejects it "
            "(Browse -> Required actions). fail: the run fails at once, nothing written (for automation).",
        ),
        "approval_timeout_hours": Param(
            DEFAULT_TIMEOUT_HOURS,
            type="number",
            exclusiveMinimum=0,
            title="Approval timeout (hours)",
            description="No answer within this time: the held plan is rejected and the run fails, nothing written.",
        ),
        "approvers": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Approvers",
            description="Airflow user ids allowed to answer (empty: the connection extra `approvers`, else anyone).",
        ),
        "notify_emails": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Notify (emails)",
            description="Who gets a mail when a plan waits, or a run fails (empty: env ABSORB_NOTIFY_EMAILS, else none).",
        ),
        "smtp_conn_id": Param(
            "smtp_default",
            type="string",
            title="SMTP connection",
            description="Airflow SMTP connection the mails go through.",
        ),
    }


class PlanApprovalOperator(HITLOperator, SkipMixin):
    """Waits for Approve/Reject when ``decision_task_id`` returned ``held``; skips itself otherwise.

    ``kind`` is ``sync`` or ``unenroll`` (which body to build and which run files to close)."""

    inherits_from_skipmixin = True

    def __init__(self, *, kind: str, decision_task_id: str, **kwargs: Any) -> None:
        # the form: only this task's own Param (the DAG's Params reach the task through its context)
        kwargs["params"] = {
            "comment": Param(
                "",
                type="string",
                title="Comment",
                description="Required to approve: why this plan is right (who asked, the ticket).",
                source="task",  # HITLOperator keeps only task-sourced params for its form
            )
        }
        super().__init__(
            subject=kwargs.pop("subject", "Approve the held plan?"),
            options=[APPROVE, REJECT],
            defaults=[REJECT],
            multiple=False,
            **kwargs,
        )
        self.kind = kind
        self.decision_task_id = decision_task_id

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from absorb_sync.jobs.runtime import current_run

        decision = context["ti"].xcom_pull(task_ids=self.decision_task_id) or {}
        if not decision.get("held"):
            raise AirflowSkipException(
                "nothing held: no approval needed (within the thresholds, or overridden)"
            )
        run = current_run()
        params = run.params
        held = "; ".join(decision.get("reasons") or [])
        if params.get("on_hold") == "fail":
            raise AirflowFailException(f"plan held, nothing was written (on_hold=fail): {held}")
        hours = timeout_hours(params)
        self.response_timeout = timedelta(hours=hours)
        hook = run.hook()
        self.assigned_users = assigned_users(params, _conn_extra(hook))
        if self.kind == "sync":
            self.subject = f"Approve the HR sync plan of {run.run_id}?"
            self.body = sync_body(folder=run.folder, decision=decision, timeout_h=hours)
        else:
            self.subject = f"Approve the unenrollment {run.run_id}?"
            self.body = unenroll_body(folder=run.folder, decision=decision, hook=hook, timeout_h=hours)
        self.notifiers = [RunMailNotifier("held", reason=f"held: {held}")]
        log.info("plan held, waiting up to %g h for a person: %s", hours, held)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from absorb_sync.jobs.runtime import current_run, write_json

        if "error" in event:  # the timeout without defaults (not ours: we set defaults); still no answer
            record = {"decision": "no_answer", "by": None, "at": None, "comment": None}
        else:
            super().execute_complete(context=context, event=event)
            record = approval_record(event)
        run = current_run()
        hours = timeout_hours(run.params)
        line = verdict_line(record, hours)
        write_json(run.folder / "approval.json", record)
        if record["decision"] == "approved":
            if not record["comment"]:
                self._close(context, run, record, "an approval needs a comment: nothing was written")
                raise AirflowFailException("approved without a comment: not accepted, nothing was written")
            log.info("plan %s", line)
            return record
        self._close(context, run, record, line)
        if record["decision"] == "no_answer":
            raise AirflowFailException(f"held plan: {line}")
        log.info("held plan %s", line)
        return record

    def _close(self, context: Any, run: Any, record: dict, line: str) -> None:
        """Zero writes: skip every later task, and leave summary.json and the report saying why."""
        close_held_run(kind=self.kind, folder=run.folder, run_id=run.run_id, record=record, line=line)
        later = [t for t in context["task"].get_flat_relatives(upstream=False) if not t.is_teardown]
        if later:
            self.skip(ti=context["ti"], tasks=later)


def _conn_extra(hook: Any) -> dict:
    try:
        from airflow.sdk import BaseHook

        extra = BaseHook.get_connection(hook.absorb_conn_id).extra_dejson
        return extra if isinstance(extra, dict) else {}
    except Exception:
        return {}


def close_held_run(*, kind: str, folder: Any, run_id: str, record: Mapping[str, Any], line: str) -> dict:
    """``summary.json`` and ``report.html`` of a held run that ends without writing."""
    from absorb_sync.jobs.runtime import read_json, write_json

    if kind == "sync":
        from absorb_sync.jobs import hr_sync

        gate = read_json(folder / "plan_decision.json")
        plan, _ = hr_sync.load_plan(folder)
        if gate.get("first_apply") and not gate.get("initial_load"):
            line = f"{line}. For the portal's first load without an approval: {hr_sync.FIRST_APPLY_HELP[3:]}"
        summary = {
            "run_id": run_id,
            "dry_run": False,
            "held": f"plan held: {'; '.join(gate.get('reasons') or [])}"
            + (
                f" ({hr_sync.FIRST_APPLY_HELP})"
                if gate.get("first_apply") and not gate.get("initial_load")
                else ""
            ),
            "outcome": line,
            "approval": dict(record),
            "written": 0,
            "plan": gate.get("plan") or plan.summary(),
            "plan_gate": {k: v for k, v in gate.items() if k != "plan"},
            "folder": str(folder),
        }
        write_json(folder / "summary.json", summary)
        hr_sync._write_report(folder, summary, plan.lines, None)
        return summary
    import pandas as pd

    from absorb_sync.report import run_report, write_html

    gate = read_json(folder / "decision.json")
    summary = {
        "run_id": run_id,
        "dry_run": False,
        "held": f"unenrollment held: {'; '.join(gate.get('reasons') or [])}",
        "outcome": line,
        "approval": dict(record),
        "written": 0,
        "gate": gate,
        "outcomes": {},
        "folder": str(folder),
    }
    write_json(folder / "summary.json", summary)
    with (folder / "targets.csv").open("r", encoding="utf-8") as handle:
        targets = pd.read_csv(handle, dtype=str)
    page = run_report(
        f"Bulk unenrollment {run_id} (held: nothing written)", summary, {"Held enrollments": targets}
    )
    write_html(folder / "report.html", page)
    return summary
