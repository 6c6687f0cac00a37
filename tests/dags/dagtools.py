"""Helpers for the DAG tests: run a DAG with ``dag.test`` and look at what it left behind."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


def dagbag():
    """A freshly parsed bag: ``dag.test(run_conf=...)`` leaves the conf in the DAG object's params,
    so re-using a parsed DAG would leak one run's conf (e.g. ``dry_run``) into the next."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    return bag


@dataclass
class Run:
    state: str
    run_id: str
    tasks: dict[str, str]
    folder: Path

    def json(self, name: str) -> dict:
        return json.loads((self.folder / name).read_text())

    def text(self, name: str) -> str:
        return (self.folder / name).read_text()

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


def run_dag(dag_id: str, output_root: Path, conf: dict | None = None) -> Run:
    """``dag.test(run_conf=conf)``; returns the run's state, task states and run folder."""
    from absorb_sync.jobs.runtime import run_key

    dag = dagbag().dags[dag_id]
    dag_run = dag.test(run_conf=conf or {})
    tasks = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    folder = output_root / dag_id / run_key(dag_run.run_id)
    return Run(state=str(dag_run.state), run_id=dag_run.run_id, tasks=tasks, folder=folder)


def enrollments_by_course(hook, course_ids) -> dict[str, list[dict]]:
    return {course_id: list(hook.list_course_enrollments(course_id)) for course_id in course_ids}


def all_enrollments(hook) -> list[dict]:
    """Every enrollment of every course (paged reads through the real hook)."""
    rows = []
    for course in hook.list_courses():
        rows.extend(hook.list_course_enrollments(course["id"]))
    return rows


# ---------------------------------------------------------------- answering a held plan


@dataclass
class Answer:
    """A person's answer to an approval task, given from a thread while ``dag.test`` waits."""

    option: str  # "Approve" or "Reject"
    comment: str = ""
    user: str = "hr.lead"
    seen: dict | None = None  # filled when answered: the waiting task's HITL detail and side data


def answer_hitl(dag_id: str, task_id: str, answer: Answer, on_waiting=None, timeout: float = 600):
    """Start a thread that waits for ``task_id`` of a ``dag_id`` run to await input, then records
    ``answer`` the way the HITL REST route does (``PATCH .../hitlDetails``): the response on the
    ``hitl_detail`` row and ``handle_event_submit`` to resume the task. ``on_waiting()`` runs first
    (e.g. to count writes while the run waits). Returns the thread; join it after ``dag.test``."""
    import threading
    import time

    # import and configure everything the thread touches here, in the main thread: a model import
    # racing dag.test's own imports deadlocks on the import lock
    import airflow.dag_processing.dagbag  # noqa: F401
    from airflow.models import import_all_models
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.sdk import timezone
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy.orm import configure_mappers

    import_all_models()
    configure_mappers()

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with create_session() as session:
                ti = (
                    session.query(TaskInstance)
                    .filter_by(dag_id=dag_id, task_id=task_id, state=TaskInstanceState.AWAITING_INPUT)
                    .one_or_none()
                )
                detail = ti and session.query(HITLDetail).filter_by(ti_id=ti.id).one_or_none()
                if ti is not None and detail is not None:
                    seen = {
                        "subject": detail.subject,
                        "body": detail.body,
                        "options": list(detail.options),
                        "params": dict(detail.params or {}),
                        "assigned_users": detail.assigned_users,
                        "run_id": ti.run_id,
                    }
                    if on_waiting is not None:
                        seen["on_waiting"] = on_waiting()
                    detail.responded_by = {"id": answer.user, "name": answer.user}
                    detail.responded_at = timezone.utcnow()
                    detail.chosen_options = [answer.option]
                    detail.params_input = {"comment": answer.comment}
                    session.add(detail)
                    handle_event_submit(
                        TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                    )
                    answer.seen = seen
                    return
            time.sleep(0.5)

    thread = threading.Thread(target=run, name=f"answer-{task_id}", daemon=True)
    thread.start()
    return thread


def run_dag_answering(
    dag_id: str, output_root: Path, conf: dict, task_id: str, answer: Answer, on_waiting=None
) -> Run:
    """``run_dag`` for a run that will wait at ``task_id``: answers it from a thread."""
    thread = answer_hitl(dag_id, task_id, answer, on_waiting=on_waiting)
    run = run_dag(dag_id, output_root, conf)
    thread.join(timeout=5)
    assert answer.seen is not None, f"{task_id} never waited for an answer: {run.tasks}"
    return run
