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
