"""Operator tests run real DAGs with ``dag.test()`` on the session's SQLite metadata DB."""

from __future__ import annotations

import pytest


@pytest.fixture
def run_dag(airflow_db):
    """Runs a DAG with ``dag.test()`` and returns (dag_run, {task_id: state})."""

    def run(dag):
        dag_run = dag.test()
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        return dag_run, states

    return run


@pytest.fixture
def xcom_value():
    """The return value a task pushed in a run (read from the metadata DB)."""

    def read(dag_run, task_id: str):
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.scalar(
                select(XComModel).where(
                    XComModel.dag_id == dag_run.dag_id,
                    XComModel.run_id == dag_run.run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == "return_value",
                )
            )
            return None if row is None else XComModel.deserialize_value(row)

    return read
